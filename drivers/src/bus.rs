//! The device model: buses enumerate devices, drivers claim them.
//!
//! A [`Bus`] (PCI, virtio-mmio, Xenbus, the LinuxU host) reports each device it finds as a
//! [`DeviceInfo`]; [`bind_all`] offers every device to every [`Driver`] in order and keeps the
//! first that binds, logging refusals with their reason (a device with features or queue sizes
//! a driver cannot use is refused, never half-used). A bound device is a [`Bound`]: what it is
//! (for now: a network device) and how it interrupts. The network stack then gives each bound
//! NIC its driver thread.
//!
//! Hardware-free: buses and drivers that touch registers live with their hardware (boards for
//! the platform's buses, `drivers` modules for device registers); this module only matches.

use crate::net::NetDevice;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// How a bound device interrupts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceIrq {
    /// An interrupt-controller line (I/O APIC GSI, GIC SPI) with its trigger; level-triggered
    /// lines are masked by the top half until the driver thread has acknowledged the device.
    Line(rhea_hal::IrqLine, rhea_hal::Trigger),
    /// A CPU vector the bus already programmed the device to send (MSI/MSI-X).
    Vector(u8),
    /// No interrupt: the driver thread polls (with the given period in microseconds).
    Poll(u32),
}

/// What a bus knows about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The bus's name for it (`pci 0000:00:02.0`, `virtio-mmio@0xfeb00e00`).
    pub location: String,
    /// Bus-specific identity: PCI vendor/device, virtio device type, …
    pub id: DeviceId,
}

/// Bus-specific identity a driver matches on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceId {
    /// A PCI function.
    Pci {
        /// Where it is (segment 0).
        address: crate::pci::Address,
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
        /// Class, subclass, programming interface.
        class: [u8; 3],
    },
    /// A virtio-mmio device (`device_id` register: 1 = network).
    VirtioMmio {
        /// The virtio device type.
        device_id: u32,
        /// Physical address of its register window.
        base: u64,
        /// Bytes of the window (registers and device configuration).
        size: u64,
        /// The interrupt-controller line it raises.
        irq: u32,
    },
    /// A Xen paravirtual device: the front-end node `device/<kind>/<id>` in xenstore.
    Xenbus {
        /// The device class (`vif` network, `vbd` disk, …).
        kind: String,
        /// The device's number under its kind.
        id: u32,
        /// The back end's xenstore node (its `backend` key).
        backend: String,
        /// The back end's domain (its `backend-id` key).
        backend_id: u16,
    },
    /// A host resource the command line named (LinuxU's tap): a driver refusing it is a
    /// configuration error, which ends the run.
    Host,
}

impl DeviceId {
    /// Whether this is a network interface (PCI class 02, virtio type 1, a Xen `vif`, the
    /// LinuxU tap).
    pub fn is_network(&self) -> bool {
        match self {
            Self::Pci { class, .. } => class[0] == 0x02,
            Self::VirtioMmio { device_id, .. } => *device_id == 1,
            Self::Xenbus { kind, .. } => kind == "vif",
            Self::Host => true,
        }
    }
}

/// Short, for the boot log: `8086:2922 SATA controller (AHCI)` (vendor:device, then the
/// class's name, [`crate::pci::ClassName`]), `virtio type 1`, `xen vif 0`, `host`.
impl core::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Pci {
                vendor,
                device,
                class,
                ..
            } => write!(
                f,
                "{vendor:04x}:{device:04x} {}",
                crate::pci::ClassName(*class)
            ),
            Self::VirtioMmio { device_id, .. } => write!(f, "virtio type {device_id}"),
            Self::Xenbus { kind, id, .. } => write!(f, "xen {kind} {id}"),
            Self::Host => f.write_str("host"),
        }
    }
}

/// A device a driver took.
pub enum Bound {
    /// A network interface and how it interrupts.
    Net(Box<dyn NetDevice>, DeviceIrq),
    /// A 9P transport (virtio-9p), polled by its callers.
    P9(Box<dyn crate::virtio::p9::P9Channel>),
    /// A block device (virtio-blk), polled by its callers.
    Block(Box<dyn crate::virtio::blk::BlockChannel>),
}

impl core::fmt::Debug for Bound {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Net(d, irq) => write!(f, "Net({}, {irq:?})", d.name()),
            Self::P9(c) => write!(f, "P9({})", c.tag()),
            Self::Block(b) => write!(f, "Block({})", b.name()),
        }
    }
}

/// A message-signalled interrupt: what to program into the device (MSI/MSI-X address and
/// data) and the CPU vector it will raise.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Msi {
    /// The message address.
    pub address: u64,
    /// The message data.
    pub data: u32,
    /// The vector the message raises (give it back as [`DeviceIrq::Vector`]).
    pub vector: u8,
}

/// What the kernel lends a driver while it binds a device.
pub trait BindContext {
    /// Maps device registers at `[phys, phys + len)` uncached; returns the address to use.
    fn map_mmio(&self, phys: u64, len: u64) -> Option<u64>;
    /// Allocates a message-signalled interrupt, if the platform has them.
    fn alloc_msi(&self) -> Option<Msi>;
    /// Bytes of kernel heap free now: a driver sizes optional buffers (offloads) by it. By
    /// default unbounded.
    fn heap_free(&self) -> usize {
        usize::MAX
    }
}

/// A driver: decides whether a device is its, then binds it.
pub trait Driver {
    /// The driver's name for logs.
    fn name(&self) -> &'static str;
    /// Whether this driver handles `dev` (cheap; no device access).
    fn matches(&self, dev: &DeviceInfo) -> bool;
    /// Takes the device: resets it, negotiates, sets up queues and its interrupt. `Err` is the
    /// logged reason it was refused.
    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String>;
}

/// A bus: enumerates its devices.
pub trait Bus {
    /// The bus's name for logs.
    fn name(&self) -> &'static str;
    /// Every device on the bus.
    fn devices(&mut self) -> Vec<DeviceInfo>;
    /// Every device on the bus, for buses that must map registers to find them (ECAM windows,
    /// virtio-mmio headers); [`bind_all`] calls this. By default [`devices`](Self::devices).
    fn enumerate(&mut self, ctx: &dyn BindContext) -> Vec<DeviceInfo> {
        let _ = ctx;
        self.devices()
    }
}

/// A file system and where to mount it (an absolute path).
pub type Mount = (String, Arc<dyn rhea_vfs::FileSystem>);

/// A board's side of the device model (the rest of its contract is `rhea_hal::Board`): the
/// buses to enumerate and the NIC drivers to offer their devices to.
pub trait BoardDevices {
    /// The buses to enumerate, in order.
    fn buses() -> Vec<Box<dyn Bus>>;
    /// The NIC drivers (called, hence linked, only when the runtime has its `net` feature).
    fn net_drivers() -> Vec<&'static dyn Driver>;
    /// The 9P transport drivers (virtio-9p over PCI or MMIO; linked only when the runtime has
    /// its `p9` feature). None by default.
    fn p9_drivers() -> Vec<&'static dyn Driver> {
        Vec::new()
    }
    /// The block device drivers (virtio-blk over PCI or MMIO; linked only when the runtime
    /// has its `blk` feature). None by default.
    fn blk_drivers() -> Vec<&'static dyn Driver> {
        Vec::new()
    }
    /// File systems the board's command line asks for (LinuxU's `rhea.fs.host`), each with
    /// its mount point, or why one cannot be had (the configuration's error, with its key).
    /// Called once, by `rhea::fs` on the first file operation. None by default.
    fn file_systems() -> Vec<Result<Mount, String>> {
        Vec::new()
    }
}

/// What happened to one device during [`bind_all`].
#[derive(Debug)]
pub enum Outcome {
    /// `driver` bound it.
    Bound {
        /// The device.
        device: DeviceInfo,
        /// The driver's name.
        driver: &'static str,
    },
    /// A matching driver refused it, with the reason.
    Refused {
        /// The device.
        device: DeviceInfo,
        /// The driver's name.
        driver: &'static str,
        /// Why.
        reason: String,
    },
    /// No driver matched.
    Unclaimed(DeviceInfo),
}

/// The boot log's line for each outcome (the caller puts `rhea: ` in front). A PCI function
/// is named as `lspci` would, address, IDs and class, then what happened to it:
/// `pci 0000:00:1f.2 8086:2922 SATA controller (AHCI): no driver`,
/// `pci 0000:00:01.0 1af4:1000 Ethernet controller: bound by virtio-net-pci`,
/// `pci 0000:00:02.0 8086:10d3 Ethernet controller: refused by e1000e: <reason>`. Other buses'
/// devices: `device virtio-mmio@0xfeb00e00: bound by virtio-net-mmio`, and with no driver
/// their identity in parentheses: `device device/vif/0: no driver (xen vif 0)`.
impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let device = match self {
            Self::Bound { device, .. } | Self::Refused { device, .. } | Self::Unclaimed(device) => {
                device
            }
        };
        let pci = matches!(device.id, DeviceId::Pci { .. });
        if pci {
            write!(f, "{} {}: ", device.location, device.id)?;
        } else {
            write!(f, "device {}: ", device.location)?;
        }
        match self {
            Self::Bound { driver, .. } => write!(f, "bound by {driver}"),
            Self::Refused { driver, reason, .. } => write!(f, "refused by {driver}: {reason}"),
            Self::Unclaimed(_) if pci => f.write_str("no driver"),
            Self::Unclaimed(device) => write!(f, "no driver ({})", device.id),
        }
    }
}

/// Offers every device of every bus to the drivers in order; returns the bound devices and
/// what happened to each device (for the boot log).
pub fn bind_all(
    buses: &mut [Box<dyn Bus>],
    drivers: &[&dyn Driver],
    ctx: &dyn BindContext,
) -> (Vec<Bound>, Vec<Outcome>) {
    let mut bound = Vec::new();
    let mut log = Vec::new();
    for bus in buses.iter_mut() {
        for dev in bus.enumerate(ctx) {
            let mut outcome = Outcome::Unclaimed(dev.clone());
            for drv in drivers.iter().filter(|d| d.matches(&dev)) {
                match drv.bind(&dev, ctx) {
                    Ok(b) => {
                        bound.push(b);
                        outcome = Outcome::Bound {
                            device: dev.clone(),
                            driver: drv.name(),
                        };
                        break;
                    }
                    Err(reason) => {
                        outcome = Outcome::Refused {
                            device: dev.clone(),
                            driver: drv.name(),
                            reason,
                        };
                    }
                }
            }
            log.push(outcome);
        }
    }
    (bound, log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{NetDeviceStats, NetError};
    use alloc::string::ToString;
    use alloc::vec;

    struct FakeBus(Vec<DeviceInfo>);
    impl Bus for FakeBus {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn devices(&mut self) -> Vec<DeviceInfo> {
            self.0.clone()
        }
    }

    struct Nic;
    impl NetDevice for Nic {
        fn name(&self) -> &str {
            "nic"
        }
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 1]
        }
        fn receive(&mut self, _: &mut [u8]) -> Result<Option<usize>, NetError> {
            Ok(None)
        }
        fn transmit(&mut self, _: &[u8]) -> Result<(), NetError> {
            Ok(())
        }
        fn stats(&self) -> NetDeviceStats {
            NetDeviceStats::default()
        }
    }

    /// Binds virtio-mmio network devices, refusing those at an odd "address".
    struct VirtioNet;
    impl Driver for VirtioNet {
        fn name(&self) -> &'static str {
            "virtio-net"
        }
        fn matches(&self, dev: &DeviceInfo) -> bool {
            matches!(dev.id, DeviceId::VirtioMmio { device_id: 1, .. })
        }
        fn bind(&self, dev: &DeviceInfo, _: &dyn BindContext) -> Result<Bound, String> {
            if dev.location.ends_with('1') {
                return Err("queue size 0".to_string());
            }
            Ok(Bound::Net(Box::new(Nic), DeviceIrq::Poll(1000)))
        }
    }

    struct NoCtx;
    impl BindContext for NoCtx {
        fn map_mmio(&self, _: u64, _: u64) -> Option<u64> {
            None
        }
        fn alloc_msi(&self) -> Option<Msi> {
            None
        }
    }

    fn dev(location: &str, device_id: u32) -> DeviceInfo {
        DeviceInfo {
            location: location.to_string(),
            id: DeviceId::VirtioMmio {
                device_id,
                base: 0xfeb0_0000,
                size: 512,
                irq: 5,
            },
        }
    }

    #[test]
    fn binds_refuses_and_leaves_unclaimed() {
        let bus = FakeBus(vec![dev("mmio0", 1), dev("mmio1", 1), dev("mmio2", 2)]);
        let (bound, log) = bind_all(&mut [Box::new(bus)], &[&VirtioNet], &NoCtx);
        assert_eq!(bound.len(), 1);
        assert!(matches!(
            &log[0],
            Outcome::Bound {
                driver: "virtio-net",
                ..
            }
        ));
        assert!(matches!(&log[1], Outcome::Refused { reason, .. } if reason == "queue size 0"));
        assert!(matches!(&log[2], Outcome::Unclaimed(d) if d.location == "mmio2"));
    }

    fn pci(bus: u8, device: u8, function: u8, ids: (u16, u16), class: [u8; 3]) -> DeviceInfo {
        let address = crate::pci::Address::new(bus, device, function).unwrap();
        DeviceInfo {
            location: alloc::format!("pci {address}"),
            id: DeviceId::Pci {
                address,
                vendor: ids.0,
                device: ids.1,
                class,
            },
        }
    }

    /// Each outcome's boot-log line: PCI functions as `lspci` names them (hex address and
    /// IDs, the class in words or by code), other buses' devices as before.
    #[test]
    fn outcome_lines_for_the_boot_log() {
        let sata = pci(0, 0x1f, 2, (0x8086, 0x2922), [0x01, 0x06, 0x01]);
        assert_eq!(
            Outcome::Unclaimed(sata).to_string(),
            "pci 0000:00:1f.2 8086:2922 SATA controller (AHCI): no driver"
        );
        let nic = pci(0, 1, 0, (0x1af4, 0x1000), [0x02, 0x00, 0x00]);
        assert_eq!(
            Outcome::Bound {
                device: nic,
                driver: "virtio-net-pci",
            }
            .to_string(),
            "pci 0000:00:01.0 1af4:1000 Ethernet controller: bound by virtio-net-pci"
        );
        let e1000e = pci(0, 2, 0, (0x8086, 0x10d3), [0x02, 0x00, 0x00]);
        assert_eq!(
            Outcome::Refused {
                device: e1000e,
                driver: "e1000e",
                reason: "BAR 0 unassigned".to_string(),
            }
            .to_string(),
            "pci 0000:00:02.0 8086:10d3 Ethernet controller: refused by e1000e: BAR 0 unassigned"
        );
        // Behind a bridge, an unknown class, IDs with letters: all hex, lowercase, 4 digits.
        let odd = pci(0x1a, 0x0b, 7, (0x1b36, 0x0005), [0xff, 0x00, 0x00]);
        assert_eq!(
            Outcome::Unclaimed(odd).to_string(),
            "pci 0000:1a:0b.7 1b36:0005 class ff.00.00: no driver"
        );
        assert_eq!(
            Outcome::Unclaimed(dev("virtio-mmio@0xfeb00e00", 2)).to_string(),
            "device virtio-mmio@0xfeb00e00: no driver (virtio type 2)"
        );
        assert_eq!(
            Outcome::Bound {
                device: dev("virtio-mmio@0xfeb00e00", 1),
                driver: "virtio-net-mmio",
            }
            .to_string(),
            "device virtio-mmio@0xfeb00e00: bound by virtio-net-mmio"
        );
    }

    #[test]
    fn device_ids_for_the_boot_log() {
        let pci = DeviceId::Pci {
            address: crate::pci::Address::new(0, 1, 0).unwrap(),
            vendor: 0x1af4,
            device: 0x1000,
            class: [0x02, 0x00, 0x00],
        };
        assert_eq!(pci.to_string(), "1af4:1000 Ethernet controller");
        assert!(pci.is_network());
        let bridge = DeviceId::Pci {
            address: crate::pci::Address::new(0, 0, 0).unwrap(),
            vendor: 0x8086,
            device: 0x29c0,
            class: [0x06, 0x00, 0x00],
        };
        assert!(!bridge.is_network());
        assert_eq!(dev("m", 1).id.to_string(), "virtio type 1");
        assert!(dev("m", 1).id.is_network() && !dev("m", 2).id.is_network());
        let vif = DeviceId::Xenbus {
            kind: "vif".to_string(),
            id: 0,
            backend: "/local/domain/0/backend/vif/1/0".to_string(),
            backend_id: 0,
        };
        assert_eq!(vif.to_string(), "xen vif 0");
        assert!(vif.is_network());
        assert_eq!(DeviceId::Host.to_string(), "host");
        assert!(DeviceId::Host.is_network());
    }
}
