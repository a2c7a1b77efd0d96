//! Devices: once at boot the board's buses are enumerated and every device is offered to the
//! board's drivers (`rhea_drivers::bus::bind_all`); what was bound waits here until a subsystem
//! takes it — the network stack takes the NICs with [`take_net`]. The NIC drivers are offered
//! (and linked) only with the `net` feature, which `rhea-net` enables: an app without the
//! network gets "no driver" lines for its NICs, saying so.
//!
//! Lock: `BOUND` (a spin lock, interrupts left on) is taken only in thread context, briefly; a
//! leaf lock.

use crate::irq::DeviceEvent;
use crate::println;
use crate::selected::B;
use crate::sync::{IrqsOff, SpinLock};
use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::BoardDevices as _;
use rhea_drivers::bus::{self, BindContext, Bound, DeviceIrq, Driver, Msi, Outcome};
use rhea_drivers::net::NetDevice;
use rhea_hal::Board as _;

/// Lock: thread context only (boot binds, drivers' threads take their device), with
/// interrupts disabled so a preempted holder is never spun against by a more important thread
/// on its CPU; held for a push or a removal. A leaf (the heap's lock nests inside).
static BOUND: SpinLock<Vec<Bound>, IrqsOff> = SpinLock::new(Vec::new());

/// What binding borrows from the kernel.
struct Ctx;

impl BindContext for Ctx {
    fn map_mmio(&self, phys: u64, len: u64) -> Option<u64> {
        crate::memory::map_mmio(phys, len).ok()
    }

    fn alloc_msi(&self) -> Option<Msi> {
        let vector = crate::irq::alloc_msi_vector().ok()?;
        let (address, data) = B::msi_message(vector)?;
        Some(Msi {
            address,
            data,
            vector,
        })
    }

    fn heap_free(&self) -> usize {
        crate::memory::stats().heap_free_bytes
    }
}

/// The drivers devices are offered to: the board's network drivers when the app uses the
/// network (the `net` feature, which `rhea-net` turns on), its 9P drivers when the app asks for
/// 9P shares (the `p9` feature), its block drivers when it asks for disks (`blk`). An image
/// without any links no driver.
fn drivers() -> Vec<&'static dyn Driver> {
    #[allow(unused_mut, reason = "empty without the features")]
    let mut d: Vec<&'static dyn Driver> = Vec::new();
    #[cfg(feature = "net")]
    d.extend(B::net_drivers());
    #[cfg(feature = "p9")]
    d.extend(B::p9_drivers());
    #[cfg(feature = "blk")]
    d.extend(B::blk_drivers());
    d
}

/// Takes out of the bound devices every one `take` returns `Ok` for (in binding order).
#[cfg(any(feature = "p9", feature = "blk"))]
fn take_bound<T>(take: fn(Bound) -> Result<T, Bound>) -> Vec<T> {
    let mut b = BOUND.lock();
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for d in b.drain(..) {
        match take(d) {
            Ok(t) => out.push(t),
            Err(d) => kept.push(d),
        }
    }
    *b = kept;
    out
}

/// Takes every bound 9P transport (virtio-9p), for `rhea::fs` to mount.
#[cfg(feature = "p9")]
pub(crate) fn take_p9() -> Vec<Box<dyn rhea_drivers::virtio::p9::P9Channel>> {
    take_bound(|d| match d {
        Bound::P9(c) => Ok(c),
        other => Err(other),
    })
}

/// Takes every bound block device (virtio-blk), for `rhea::fs` to mount.
#[cfg(feature = "blk")]
pub(crate) fn take_blk() -> Vec<Box<dyn rhea_drivers::virtio::blk::BlockChannel>> {
    take_bound(|d| match d {
        Bound::Block(c) => Ok(c),
        other => Err(other),
    })
}

/// Enumerates the board's buses and binds their devices; prints what happened to each.
pub(crate) fn init() {
    let mut buses = B::buses();
    let (bound, log) = bus::bind_all(&mut buses, &drivers(), &Ctx);
    for outcome in &log {
        // A NIC an image without the network has no driver for says why.
        let why = match outcome {
            Outcome::Unclaimed(device) if !cfg!(feature = "net") && device.id.is_network() => {
                "; this app does not use the network (rhea-net)"
            }
            _ => "",
        };
        // `pci 0000:00:1f.2 8086:2922 SATA controller (AHCI): no driver` (`Outcome`'s Display).
        println!("rhea: {outcome}{why}");
    }
    BOUND.lock().extend(bound);
    // A device the command line asked for (a host resource) that cannot be used is the
    // configuration's error: no run without it.
    let misconfigured = log
        .iter()
        .any(|o| matches!(o, Outcome::Refused { device, .. } if device.id == bus::DeviceId::Host));
    if misconfigured {
        println!("rhea: a device the command line names cannot be used, exiting with failure");
        crate::exit(crate::ExitStatus::Failure);
    }
}

/// Why a device could not be handed over.
#[derive(Debug)]
pub enum TakeError {
    /// No bound device of that kind is left.
    None,
    /// Its interrupt could not be set up.
    Irq(crate::irq::IrqError),
}

impl core::fmt::Display for TakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::None => f.write_str("no network device"),
            Self::Irq(e) => write!(f, "its interrupt: {e}"),
        }
    }
}

/// Takes the first bound network device, with the event its interrupt sets.
pub fn take_net() -> Result<(Box<dyn NetDevice>, DeviceEvent), TakeError> {
    let found = {
        let mut b = BOUND.lock();
        let at = b.iter().position(|d| matches!(d, Bound::Net(..)));
        at.map(|i| b.remove(i))
    };
    let Some(Bound::Net(dev, irq)) = found else {
        return Err(TakeError::None);
    };
    let event = match irq {
        DeviceIrq::Line(line, trigger) => {
            DeviceEvent::for_line(line, trigger).map_err(TakeError::Irq)?
        }
        DeviceIrq::Vector(v) => DeviceEvent::for_vector(v).ok_or(TakeError::Irq(
            crate::irq::IrqError::Registry(rhea_irq::RegistryError::NoFreeVector),
        ))?,
        DeviceIrq::Poll(_) => DeviceEvent::polled().map_err(TakeError::Irq)?,
    };
    Ok((dev, event))
}
