//! Xen paravirtual (PV) drivers: a guest's side of Xen's split-driver model, hardware-free.
//!
//! Under Xen a guest's devices are *front ends* talking to *back ends* in another domain
//! (usually dom0) through memory the guest shares and event channels (Xen's interrupts):
//!
//! - [`xenstore`]: the configuration database both ends meet in, reached through one shared
//!   page and one event channel the toolstack set up for the domain;
//! - [`xenbus`]: devices as xenstore directories (`device/<kind>/<id>`), the state handshake
//!   (`XenbusState`) and [`XenbusBus`](xenbus::XenbusBus), a [`Bus`](crate::bus::Bus) of them;
//! - [`grant`]: the grant table, through which the guest lets a back end map or copy one of its
//!   pages;
//! - [`ring`]: Xen's generic request/response ring in a shared page (`io/ring.h`);
//! - [`netfront`]: the network front end, a [`NetDevice`](crate::net::NetDevice), bound by
//!   [`XenNetDriver`](netfront::XenNetDriver).
//!
//! What the board provides is [`XenHost`]: event channels, shared pages, the mapped grant table,
//! a clock and a way to wait. It also finds the xenstore page and its event channel (HVM
//! parameters `HVM_PARAM_STORE_PFN`/`HVM_PARAM_STORE_EVTCHN`, or the start info) and creates
//! the one [`XenStore`](xenstore::XenStore) client the bus and drivers share.
//!
//! The protocols are Xen's public headers (`io/xs_wire.h`, `io/xenbus.h`, `io/ring.h`,
//! `io/netif.h`, `grant_table.h`), implemented here from their specification. Everything the
//! other side writes is untrusted: indices, lengths, ids and states are validated and a
//! violation is an error naming it, never a panic, a hang or an access outside shared memory.
//! The only `unsafe` code is in [`shared`].
//!
//! Waits (for xenstored's replies, for a back end's state) poll with a deadline: they loop on
//! [`XenHost::now_ns`] and [`XenHost::relax`]. A back end's state is watched (a xenstore watch),
//! not re-read at every relax. Waits happen while devices are bound, in thread context; the
//! data path (netfront's `receive`/`transmit`) never waits.

pub mod console;
pub mod grant;
pub mod netfront;
pub mod ring;
pub mod shared;
pub mod xenbus;
pub mod xenstore;

use alloc::string::String;
pub use grant::{GrantRef, GrantTable};
pub use shared::SharedMem;
pub use xenstore::XsErrno;

/// Why a Xen operation failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum XenError {
    /// An access of `len` bytes at `offset` does not fit shared memory of `size` bytes.
    OutOfBounds {
        /// Byte offset of the access.
        offset: usize,
        /// Bytes accessed.
        len: usize,
        /// Bytes of the region.
        size: usize,
    },
    /// An access at `offset` is not aligned to `align` bytes.
    Misaligned {
        /// Byte offset of the access.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// The board could not provide memory (named).
    NoMemory(&'static str),
    /// Every grant reference is in use.
    GrantsExhausted {
        /// Usable references of the table.
        capacity: usize,
    },
    /// The other domain still has the granted page mapped or is copying it (`GTF_reading` or
    /// `GTF_writing` set): access cannot end yet.
    GrantInUse(GrantRef),
    /// A grant reference that is reserved, outside the table or not allocated.
    BadGrant(u32),
    /// A hypercall the board made failed (operation name and Xen's negative errno).
    Hypercall {
        /// The operation (`EVTCHNOP_alloc_unbound`, …).
        op: &'static str,
        /// Xen's return code.
        code: i64,
    },
    /// xenstored answered an operation on `path` with an error.
    Store {
        /// The operation (`read`, `write`, …).
        op: &'static str,
        /// The path it was about (empty for path-less operations).
        path: String,
        /// The error xenstored named.
        errno: XsErrno,
    },
    /// A deadline passed; the message names what was awaited.
    Timeout(String),
    /// The other side broke the protocol (malformed message, ring index out of range, …).
    Protocol(String),
    /// A request we refuse to send (path or value too long, NUL in a path, …).
    Invalid(String),
    /// A xenbus handshake failed: the back end reached a state we cannot continue from.
    Handshake(String),
}

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "shared memory access of {len} bytes at {offset:#x} outside {size:#x} bytes"
            ),
            Self::Misaligned { offset, align } => {
                write!(
                    f,
                    "shared memory access at {offset:#x} not {align}-byte aligned"
                )
            }
            Self::NoMemory(what) => write!(f, "out of memory for {what}"),
            Self::GrantsExhausted { capacity } => {
                write!(
                    f,
                    "grant table exhausted (all {capacity} references in use)"
                )
            }
            Self::GrantInUse(r) => {
                write!(
                    f,
                    "grant {} still mapped or being copied by the other domain",
                    r.0
                )
            }
            Self::BadGrant(r) => write!(f, "grant reference {r} is not an allocated grant"),
            Self::Hypercall { op, code } => write!(f, "hypercall {op} failed: {code}"),
            Self::Store { op, path, errno } => write!(f, "xenstore {op} {path:?}: {errno}"),
            Self::Timeout(what) => write!(f, "timed out: {what}"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::Invalid(what) => write!(f, "invalid request: {what}"),
            Self::Handshake(what) => write!(f, "xenbus handshake failed: {what}"),
        }
    }
}

/// What the Xen PV drivers need from the platform: implemented by the Xen boards with a few
/// hypercalls. Shared between the xenstore client, the bus and every front end (hence `Send +
/// Sync`; every method takes `&self` and may be called from any thread, never from an
/// interrupt handler by these drivers).
pub trait XenHost: Send + Sync {
    /// Allocates an unbound event channel whose remote end `remote_domid` may bind
    /// (`EVTCHNOP_alloc_unbound` with `dom = DOMID_SELF`); returns the local port. The board
    /// must be ready to deliver the port's events as interrupt line `IrqLine(port)` (edge:
    /// each `pending` bit set is one event) once a driver's line is registered and unmasked.
    fn evtchn_alloc_unbound(&self, remote_domid: u16) -> Result<u32, XenError>;

    /// Notifies the remote end of `port` (`EVTCHNOP_send`). Errors are the board's to log: a
    /// lost notification is recovered by the drivers' next one.
    fn evtchn_send(&self, port: u32);

    /// Closes `port` (`EVTCHNOP_close`); called when a front end is dropped or fails to bind.
    fn evtchn_close(&self, port: u32);

    /// `count` pages of memory to share with another domain: zeroed, page-aligned, physically
    /// contiguous, mapped write-back cacheable (Xen's PV protocols assume coherent memory),
    /// with [`SharedMem::gfn`] the guest frame number of the first page (its physical address
    /// `>> 12`). `None` if there is no memory. [`SharedMem::alloc`] satisfies this where the
    /// heap is identity-mapped.
    fn alloc_shared_pages(&self, count: usize) -> Option<SharedMem>;

    /// Returns pages from [`alloc_shared_pages`](Self::alloc_shared_pages). Drivers call this
    /// only after every grant on them has ended; pages a back end may still access are leaked
    /// instead. The default drops the handle (right for [`SharedMem::alloc`] memory).
    fn free_shared_pages(&self, mem: SharedMem) {
        drop(mem);
    }

    /// The domain's grant table (v1), whose frames the board mapped (`GNTTABOP_setup_table` or
    /// `XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`) and set version 1 on.
    fn grant_table(&self) -> &GrantTable;

    /// A monotonic clock in nanoseconds (any origin), for deadlines.
    fn now_ns(&self) -> u64;

    /// Lets time pass while a driver polls for the other side: a pause hint, a yield to other
    /// threads, or a wait for any event (bounded: it must return within about a millisecond
    /// even if no event comes, because the caller rechecks its deadline).
    fn relax(&self);
}

/// Runs `poll` until it returns `Some`, or until `timeout_ns` passed on `host`'s clock; then
/// `Err(XenError::Timeout(what()))`. `poll`'s errors end the wait at once.
pub fn wait_until<T>(
    host: &dyn XenHost,
    timeout_ns: u64,
    what: impl FnOnce() -> String,
    mut poll: impl FnMut() -> Result<Option<T>, XenError>,
) -> Result<T, XenError> {
    let deadline = host.now_ns().saturating_add(timeout_ns);
    loop {
        if let Some(v) = poll()? {
            return Ok(v);
        }
        if host.now_ns() >= deadline {
            return Err(XenError::Timeout(what()));
        }
        host.relax();
    }
}

#[cfg(test)]
pub(crate) mod testhost;
