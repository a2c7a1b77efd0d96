//! Event channels as an interrupt controller's bookkeeping (the 2-level ABI, `xen.h` and
//! `event_channel.h`): which port raises which vector on which vCPU, and the scan an upcall
//! runs over the shared-info page's pending and mask bitmaps.
//!
//! Xen marks a port pending in `evtchn_pending`; if it is not masked it also sets the port's
//! word in the bound vCPU's `pending_sel` and that vCPU's `upcall_pending`, and raises the
//! upcall (x86: the callback vector; arm64: the event-channel PPI). [`EventChannels::demux`]
//! is the upcall: clear `upcall_pending`, take `pending_sel`, and for each selected word hand
//! every pending, unmasked port *owned by this vCPU* to the runtime as its vector, clearing
//! its pending bit first (edge semantics: an event arriving during the handler pends again).
//! Words hold ports of several vCPUs, hence the owner check.
//!
//! Software vectors — reschedule and call IPIs, `raise_self` — ride on one IPI port per vCPU:
//! the sender sets the vector's bit in the target's soft bitmap, then notifies the port
//! (`EVTCHNOP_send`); the target's demux delivers every set bit.
//!
//! Every table is atomics, written at bind time and read in the upcall: no lock, so the
//! upcall path is interrupt-safe and bounded ([`MAX_PASSES`] scans per upcall; a port still
//! pending after that is left for the next upcall, so an event storm cannot hold a vCPU).
//!
//! The atomics come from `crate::sync`, so the same code is model-checked with loom
//! (`tests/loom.rs`: the demux racing raises, mask/unmask and [`EventChannels::set_affinity`]
//! on other vCPUs, against a simulated Xen).

use crate::shared::{EVTCHN_WORDS, NR_PORTS, SharedInfo, VcpuInfo};
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The most vCPUs the tables track.
#[cfg(not(loom))]
pub const MAX_VCPUS: usize = 64;
/// Under loom: the models' vCPUs (see [`EVTCHN_WORDS`](crate::shared::EVTCHN_WORDS)).
#[cfg(loom)]
pub const MAX_VCPUS: usize = 4;
/// Scans of `pending_sel` per upcall before the rest is left pending.
pub const MAX_PASSES: usize = 4;
/// An `owner` entry for a port no vCPU handles.
const NO_OWNER: u8 = u8::MAX;

/// The port → (vector, vCPU) tables and per-vCPU software vectors.
#[derive(Debug)]
pub struct EventChannels {
    /// Per port: the vector it raises; 0 when unrouted.
    vector: [AtomicU8; NR_PORTS],
    /// Per port: the vCPU that handles it.
    owner: [AtomicU8; NR_PORTS],
    /// Per vCPU: its IPI port (0 = none; Xen never allocates port 0).
    ipi_port: [AtomicU32; MAX_VCPUS],
    /// Per vCPU: software vectors raised and not yet delivered (256 bits).
    soft: [[AtomicU64; 4]; MAX_VCPUS],
    /// Pending ports that had no vector (masked when seen).
    unrouted: AtomicU64,
}

/// Why a port could not be bound.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BindError {
    /// The port is beyond the 2-level ABI's 4,096.
    NoSuchPort(u32),
    /// The vCPU is beyond [`MAX_VCPUS`].
    NoSuchVcpu(usize),
    /// Vector 0 means "unrouted".
    BadVector(u8),
}

impl core::fmt::Display for BindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchPort(p) => write!(f, "event channel {p} is beyond the 2-level ABI's 4096"),
            Self::NoSuchVcpu(c) => write!(f, "vCPU {c} is beyond the {MAX_VCPUS} supported"),
            Self::BadVector(v) => write!(f, "vector {v} cannot be bound"),
        }
    }
}

/// The event-channel hypercalls [`EventChannels::set_affinity`] makes: the boards' wrappers on
/// the machine, a simulated Xen in the tests.
pub trait EvtchnOps {
    /// `EVTCHNOP_bind_vcpu`: Xen notifies vCPU `cpu` of `port` from now on. `Err` carries
    /// Xen's (negative) error code.
    fn bind_vcpu(&self, port: u32, cpu: u32) -> Result<(), i64>;
    /// `EVTCHNOP_unmask`: Xen clears `port`'s mask bit and, *if the bit was set* and the port
    /// is pending, marks its word in the bound vCPU's `pending_sel` and raises the upcall
    /// (`evtchn_2l_unmask`, xen/common/event_2l.c).
    fn unmask(&self, port: u32) -> Result<(), i64>;
}

/// Why a port could not be moved to another vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AffinityError {
    /// The port or vCPU is out of range, or the port has no vector.
    Bind(BindError),
    /// Xen refused `EVTCHNOP_bind_vcpu` (its error code).
    Refused(i64),
}

impl EventChannels {
    /// Empty tables.
    #[allow(clippy::new_without_default, reason = "a static's constructor")]
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            vector: [const { AtomicU8::new(0) }; NR_PORTS],
            owner: [const { AtomicU8::new(NO_OWNER) }; NR_PORTS],
            ipi_port: [const { AtomicU32::new(0) }; MAX_VCPUS],
            soft: [const { [const { AtomicU64::new(0) }; 4] }; MAX_VCPUS],
            unrouted: AtomicU64::new(0),
        }
    }

    /// Empty tables (loom's atomics have no `const` constructor).
    #[allow(clippy::new_without_default, reason = "a static's constructor")]
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            vector: core::array::from_fn(|_| AtomicU8::new(0)),
            owner: core::array::from_fn(|_| AtomicU8::new(NO_OWNER)),
            ipi_port: core::array::from_fn(|_| AtomicU32::new(0)),
            soft: core::array::from_fn(|_| core::array::from_fn(|_| AtomicU64::new(0))),
            unrouted: AtomicU64::new(0),
        }
    }

    /// Makes `port` raise `vector` on vCPU `cpu` (the port must be bound to that vCPU at Xen:
    /// VIRQs and IPIs are bound to one, other ports to vCPU 0 unless `EVTCHNOP_bind_vcpu`).
    pub fn bind(&self, port: u32, vector: u8, cpu: usize) -> Result<(), BindError> {
        let p = port_index(port)?;
        if cpu >= MAX_VCPUS {
            return Err(BindError::NoSuchVcpu(cpu));
        }
        if vector == 0 {
            return Err(BindError::BadVector(vector));
        }
        self.owner[p].store(cpu as u8, Ordering::Relaxed);
        self.vector[p].store(vector, Ordering::Release);
        Ok(())
    }

    /// Moves `port` to vCPU `cpu`, keeping its vector (after `EVTCHNOP_bind_vcpu` told Xen);
    /// a port without a vector is refused.
    pub fn rebind(&self, port: u32, cpu: usize) -> Result<(), BindError> {
        let p = port_index(port)?;
        let vector = self.vector[p].load(Ordering::Acquire);
        self.bind(port, vector, cpu)
    }

    /// Masks `port` in the shared page (the guest sets mask bits itself, `xen.h`); returns
    /// whether it was masked already.
    pub fn mask(shared: &SharedInfo, port: u32) -> Result<bool, BindError> {
        let p = port_index(port)?;
        let bit = 1u64 << (p % 64);
        Ok(shared.evtchn_mask[p / 64].fetch_or(bit, Ordering::AcqRel) & bit != 0)
    }

    /// Moves `port` to vCPU `cpu`: Xen notifies `cpu` of it (`EVTCHNOP_bind_vcpu`), then this
    /// table hands it to `cpu`'s demux; an event pending on the old vCPU is re-raised on the
    /// new one. A masked port stays masked (its unmask re-raises it).
    ///
    /// The port is masked while it moves, and unmasked after (as Linux's `rebind_irq_to_cpu`
    /// does), because `EVTCHNOP_unmask` re-raises a pending port only if its mask bit was set
    /// (`evtchn_2l_unmask` tests and clears it). Without the mask, the loom model
    /// `set_affinity_races_the_old_vcpus_upcall` loses the event: Xen raises the port on vCPU
    /// 0 (pending, vCPU 0's `pending_sel`, upcall); vCPU 1 moves it (bind_vcpu, owner 1) and
    /// unmasks a port that was never masked — Xen does nothing; vCPU 0's upcall skips the port
    /// (no longer its own); so it stays pending with no upcall on vCPU 1, and every later send
    /// finds it pending already and raises nothing — the port is dead.
    pub fn set_affinity(
        &self,
        shared: &SharedInfo,
        port: u32,
        cpu: usize,
        xen: &impl EvtchnOps,
    ) -> Result<(), AffinityError> {
        let p = port_index(port).map_err(AffinityError::Bind)?;
        if cpu >= MAX_VCPUS {
            return Err(AffinityError::Bind(BindError::NoSuchVcpu(cpu)));
        }
        let vector = self.vector[p].load(Ordering::Acquire);
        if vector == 0 {
            return Err(AffinityError::Bind(BindError::BadVector(0)));
        }
        let was_masked = Self::mask(shared, port).map_err(AffinityError::Bind)?;
        let moved = xen
            .bind_vcpu(port, cpu as u32)
            .map_err(AffinityError::Refused)
            .and_then(|()| self.bind(port, vector, cpu).map_err(AffinityError::Bind));
        if !was_masked {
            // Cannot fail: the port is valid (bind_vcpu accepted it, or it was bound before).
            let _ = xen.unmask(port);
        }
        moved
    }

    /// Makes `port` vCPU `cpu`'s IPI port (carrying its software vectors).
    pub fn bind_ipi(&self, port: u32, cpu: usize) -> Result<(), BindError> {
        let p = port_index(port)?;
        if cpu >= MAX_VCPUS {
            return Err(BindError::NoSuchVcpu(cpu));
        }
        self.owner[p].store(cpu as u8, Ordering::Relaxed);
        self.ipi_port[cpu].store(port, Ordering::Release);
        Ok(())
    }

    /// The vCPU a port is handled on, if bound.
    pub fn owner(&self, port: u32) -> Option<usize> {
        let p = port_index(port).ok()?;
        match self.owner[p].load(Ordering::Relaxed) {
            NO_OWNER => None,
            c => Some(usize::from(c)),
        }
    }

    /// Records software `vector` for vCPU `cpu`; returns the IPI port to notify, or `None`
    /// when no notification is needed: the vector was already pending (whoever set it
    /// notifies, and the target's drain takes both — an IPI is a pending bit, as in a local
    /// APIC's IRR), or that vCPU has no IPI port yet (the vector goes with its next upcall).
    /// Each notification is a hypercall, so a burst of IPIs to one vCPU costs one.
    pub fn raise(&self, cpu: usize, vector: u8) -> Option<u32> {
        let words = self.soft.get(cpu)?;
        let bit = 1 << (vector % 64);
        if words[usize::from(vector / 64)].fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return None;
        }
        match self.ipi_port[cpu].load(Ordering::Acquire) {
            0 => None,
            port => Some(port),
        }
    }

    /// Pending ports seen without a vector so far.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// The upcall on vCPU `cpu` (whose `vcpu_info` is `vi`): delivers the vector of every
    /// pending, unmasked port of this vCPU and every software vector raised for it.
    /// Interrupts are off; no lock is taken.
    pub fn demux(
        &self,
        shared: &SharedInfo,
        vi: &VcpuInfo,
        cpu: usize,
        deliver: &mut dyn FnMut(u8),
    ) {
        let ipi = self
            .ipi_port
            .get(cpu)
            .map_or(0, |p| p.load(Ordering::Acquire));
        for _ in 0..MAX_PASSES {
            vi.upcall_pending.store(0, Ordering::SeqCst);
            let sel = vi.pending_sel.swap(0, Ordering::AcqRel);
            if sel == 0 {
                return;
            }
            for w in bits(sel) {
                if w >= EVTCHN_WORDS {
                    continue;
                }
                let ready = shared.evtchn_pending[w].load(Ordering::Acquire)
                    & !shared.evtchn_mask[w].load(Ordering::Acquire);
                for b in bits(ready) {
                    let port = w * 64 + b;
                    if usize::from(self.owner[port].load(Ordering::Relaxed)) != cpu {
                        continue;
                    }
                    let bit = 1u64 << b;
                    if shared.evtchn_pending[w].fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
                        continue;
                    }
                    if port as u32 == ipi {
                        self.deliver_soft(cpu, deliver);
                        continue;
                    }
                    match self.vector[port].load(Ordering::Acquire) {
                        0 => {
                            shared.evtchn_mask[w].fetch_or(bit, Ordering::AcqRel);
                            self.unrouted.fetch_add(1, Ordering::Relaxed);
                        }
                        v => deliver(v),
                    }
                }
            }
        }
        // Still busy after MAX_PASSES: leave the rest for the next upcall.
        if vi.pending_sel.load(Ordering::Acquire) != 0 {
            vi.upcall_pending.store(1, Ordering::SeqCst);
        }
    }

    fn deliver_soft(&self, cpu: usize, deliver: &mut dyn FnMut(u8)) {
        for (w, word) in self.soft[cpu].iter().enumerate() {
            for b in bits(word.swap(0, Ordering::AcqRel)) {
                deliver((w * 64 + b) as u8);
            }
        }
    }
}

fn port_index(port: u32) -> Result<usize, BindError> {
    let p = port as usize;
    if p == 0 || p >= NR_PORTS {
        Err(BindError::NoSuchPort(port))
    } else {
        Ok(p)
    }
}

/// The indices of the set bits of `x`, lowest first.
fn bits(mut x: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if x == 0 {
            None
        } else {
            let b = x.trailing_zeros() as usize;
            x &= x - 1;
            Some(b)
        }
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// What Xen does when `port` (bound to `vi`'s vCPU) fires (`evtchn_2l_set_pending`).
    fn xen_raise(shared: &SharedInfo, vi: &VcpuInfo, port: usize) {
        let (w, bit) = (port / 64, 1u64 << (port % 64));
        if shared.evtchn_pending[w].fetch_or(bit, Ordering::SeqCst) & bit != 0 {
            return;
        }
        if shared.evtchn_mask[w].load(Ordering::SeqCst) & bit == 0
            && vi.pending_sel.fetch_or(1 << w, Ordering::SeqCst) & (1 << w) == 0
        {
            vi.upcall_pending.store(1, Ordering::SeqCst);
        }
    }

    fn setup() -> (Box<SharedInfo>, Box<EventChannels>) {
        (Box::new(SharedInfo::new()), Box::new(EventChannels::new()))
    }

    fn run(ec: &EventChannels, s: &SharedInfo, cpu: usize) -> Vec<u8> {
        let mut got = Vec::new();
        ec.demux(s, &s.vcpu_info[cpu], cpu, &mut |v| got.push(v));
        got
    }

    #[test]
    fn delivers_each_pending_port_once_as_its_vector() {
        let (s, ec) = setup();
        ec.bind(3, 0xef, 0).unwrap();
        ec.bind(70, 0x40, 0).unwrap();
        xen_raise(&s, &s.vcpu_info[0], 3);
        xen_raise(&s, &s.vcpu_info[0], 70);
        assert_eq!(s.vcpu_info[0].upcall_pending.load(Ordering::SeqCst), 1);
        assert_eq!(run(&ec, &s, 0), [0xef, 0x40]);
        assert_eq!(s.vcpu_info[0].upcall_pending.load(Ordering::SeqCst), 0);
        assert_eq!(s.evtchn_pending[0].load(Ordering::SeqCst), 0);
        assert!(run(&ec, &s, 0).is_empty(), "nothing twice");
    }

    #[test]
    fn a_vcpu_leaves_other_vcpus_ports_in_the_same_word() {
        let (s, ec) = setup();
        ec.bind(5, 0xef, 0).unwrap();
        ec.bind(6, 0xef, 1).unwrap();
        xen_raise(&s, &s.vcpu_info[0], 5);
        xen_raise(&s, &s.vcpu_info[1], 6);
        assert_eq!(run(&ec, &s, 0), [0xef]);
        assert_ne!(s.evtchn_pending[0].load(Ordering::SeqCst) & (1 << 6), 0);
        assert_eq!(run(&ec, &s, 1), [0xef]);
        assert_eq!(s.evtchn_pending[0].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn masked_ports_wait_and_unrouted_ones_are_masked_and_counted() {
        let (s, ec) = setup();
        ec.bind(9, 0x41, 0).unwrap();
        s.evtchn_mask[0].fetch_or(1 << 9, Ordering::SeqCst);
        xen_raise(&s, &s.vcpu_info[0], 9);
        assert!(run(&ec, &s, 0).is_empty());
        // Unmasking by hand (EVTCHNOP_unmask re-raises the pending port).
        s.evtchn_mask[0].fetch_and(!(1 << 9), Ordering::SeqCst);
        s.vcpu_info[0].pending_sel.fetch_or(1, Ordering::SeqCst);
        assert_eq!(run(&ec, &s, 0), [0x41]);

        // A port nobody routed, owned by vCPU 0: masked so it cannot storm.
        ec.owner[12].store(0, Ordering::SeqCst);
        xen_raise(&s, &s.vcpu_info[0], 12);
        assert!(run(&ec, &s, 0).is_empty());
        assert_eq!(ec.unrouted(), 1);
        assert_ne!(s.evtchn_mask[0].load(Ordering::SeqCst) & (1 << 12), 0);
    }

    #[test]
    fn software_vectors_ride_on_the_ipi_port() {
        let (s, ec) = setup();
        assert_eq!(ec.raise(1, 0xfd), None, "no IPI port yet: recorded only");
        ec.bind_ipi(33, 1).unwrap();
        assert_eq!(ec.raise(1, 0xfc), Some(33));
        xen_raise(&s, &s.vcpu_info[1], 33);
        let mut got = run(&ec, &s, 1);
        got.sort_unstable();
        assert_eq!(got, [0xfc, 0xfd]);
        assert!(run(&ec, &s, 1).is_empty());
    }

    #[test]
    fn a_vector_already_pending_needs_no_second_notification() {
        let (s, ec) = setup();
        ec.bind_ipi(40, 0).unwrap();
        assert_eq!(ec.raise(0, 0xfd), Some(40));
        assert_eq!(
            ec.raise(0, 0xfd),
            None,
            "still pending: the first notification covers it"
        );
        assert_eq!(ec.raise(0, 0xfc), Some(40), "another vector notifies");
        xen_raise(&s, &s.vcpu_info[0], 40);
        let mut got = run(&ec, &s, 0);
        got.sort_unstable();
        assert_eq!(got, [0xfc, 0xfd]);
        assert_eq!(
            ec.raise(0, 0xfd),
            Some(40),
            "delivered: the next raise notifies again"
        );
    }

    #[test]
    fn an_event_storm_is_bounded_per_upcall() {
        let (s, ec) = setup();
        ec.bind(2, 0x42, 0).unwrap();
        xen_raise(&s, &s.vcpu_info[0], 2);
        let mut calls = 0;
        let (sh, vi) = (&*s, &s.vcpu_info[0]);
        ec.demux(sh, vi, 0, &mut |_| {
            calls += 1;
            // The device fires again while it is being handled, every time.
            xen_raise(sh, vi, 2);
        });
        assert_eq!(calls, MAX_PASSES);
        assert_eq!(
            vi.upcall_pending.load(Ordering::SeqCst),
            1,
            "left pending for the next upcall"
        );
    }

    #[test]
    fn a_rebound_port_keeps_its_vector_on_its_new_vcpu() {
        let (s, ec) = setup();
        ec.bind(7, 0x44, 0).unwrap();
        ec.rebind(7, 1).unwrap();
        assert_eq!(ec.owner(7), Some(1));
        xen_raise(&s, &s.vcpu_info[1], 7);
        assert!(run(&ec, &s, 0).is_empty(), "no longer vCPU 0's");
        assert_eq!(run(&ec, &s, 1), [0x44]);
        assert_eq!(
            ec.rebind(8, 1),
            Err(BindError::BadVector(0)),
            "never routed"
        );
    }

    /// Xen's side of `set_affinity`, for one vCPU's worth of ports: `evtchn_2l_unmask` re-raises
    /// a pending port only if its mask bit was set.
    struct TestXen<'a> {
        shared: &'a SharedInfo,
        notify: std::cell::Cell<usize>,
        refuse: bool,
    }

    impl EvtchnOps for TestXen<'_> {
        fn bind_vcpu(&self, _port: u32, cpu: u32) -> Result<(), i64> {
            if self.refuse {
                return Err(-22);
            }
            self.notify.set(cpu as usize);
            Ok(())
        }

        fn unmask(&self, port: u32) -> Result<(), i64> {
            let (w, bit) = (port as usize / 64, 1u64 << (port % 64));
            let vi = &self.shared.vcpu_info[self.notify.get()];
            if self.shared.evtchn_mask[w].fetch_and(!bit, Ordering::SeqCst) & bit != 0
                && self.shared.evtchn_pending[w].load(Ordering::SeqCst) & bit != 0
                && vi.pending_sel.fetch_or(1 << w, Ordering::SeqCst) & (1 << w) == 0
            {
                vi.upcall_pending.store(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    /// Regression (found by the loom model `set_affinity_races_the_old_vcpus_upcall`): an event
    /// pending on the old vCPU when its port moves is re-raised on the new one. Unmasking a
    /// port that was never masked re-raises nothing, so `set_affinity` masks it first.
    #[test]
    fn an_event_pending_when_its_port_moves_is_raised_on_the_new_vcpu() {
        let (s, ec) = setup();
        ec.bind(7, 0x44, 0).unwrap();
        xen_raise(&s, &s.vcpu_info[0], 7);
        let xen = TestXen {
            shared: &s,
            notify: std::cell::Cell::new(0),
            refuse: false,
        };
        ec.set_affinity(&s, 7, 1, &xen).unwrap();
        assert_eq!(xen.notify.get(), 1);
        assert!(run(&ec, &s, 0).is_empty(), "no longer vCPU 0's");
        assert_eq!(s.vcpu_info[1].upcall_pending.load(Ordering::SeqCst), 1);
        assert_eq!(run(&ec, &s, 1), [0x44]);
        assert_eq!(s.evtchn_mask[0].load(Ordering::SeqCst), 0, "unmasked again");
    }

    #[test]
    fn set_affinity_keeps_a_masked_port_masked_and_restores_the_mask_on_failure() {
        let (s, ec) = setup();
        ec.bind(7, 0x44, 0).unwrap();
        let mut xen = TestXen {
            shared: &s,
            notify: std::cell::Cell::new(0),
            refuse: true,
        };
        assert_eq!(
            ec.set_affinity(&s, 7, 1, &xen),
            Err(AffinityError::Refused(-22))
        );
        assert_eq!(ec.owner(7), Some(0));
        assert_eq!(s.evtchn_mask[0].load(Ordering::SeqCst), 0, "mask restored");
        xen.refuse = false;
        assert_eq!(EventChannels::mask(&s, 7), Ok(false));
        ec.set_affinity(&s, 7, 1, &xen).unwrap();
        assert_eq!(ec.owner(7), Some(1));
        assert_eq!(EventChannels::mask(&s, 7), Ok(true), "still masked");
        assert_eq!(
            ec.set_affinity(&s, 8, 1, &xen),
            Err(AffinityError::Bind(BindError::BadVector(0))),
            "never routed"
        );
        assert_eq!(
            ec.set_affinity(&s, 7, MAX_VCPUS, &xen),
            Err(AffinityError::Bind(BindError::NoSuchVcpu(MAX_VCPUS)))
        );
    }

    #[test]
    fn bad_binds_are_refused() {
        let ec = EventChannels::new();
        assert_eq!(ec.bind(0, 1, 0), Err(BindError::NoSuchPort(0)));
        assert_eq!(ec.bind(4096, 1, 0), Err(BindError::NoSuchPort(4096)));
        assert_eq!(ec.bind(1, 1, 64), Err(BindError::NoSuchVcpu(64)));
        assert_eq!(ec.bind(1, 0, 0), Err(BindError::BadVector(0)));
        assert_eq!(ec.owner(1), None);
    }
}
