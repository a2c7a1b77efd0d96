//! The refusal policy and the command-line parser (the transports need a device: they are
//! exercised by the `net-virtio-smoke` boots on q35 and microvm).

use super::mmio::{MmioDevice, parse_cmdline, parse_entry};
use super::*;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

/// What QEMU 10's virtio-net-pci offers (modern, with MAC, event index, offloads).
const QEMU_PCI: u64 = 0x1_3079_bfe7;
/// What its legacy virtio-mmio device offers (no VERSION_1).
const QEMU_MMIO_LEGACY: u64 = 0x7179_ffe7;

#[test]
fn features_qemu_offers_are_accepted() {
    check_features(QEMU_PCI, true).unwrap();
    check_features(QEMU_MMIO_LEGACY, false).unwrap();
}

#[test]
fn unexpected_features_are_refused_with_the_reason() {
    let e = check_features(QEMU_MMIO_LEGACY, true).unwrap_err();
    assert!(e.contains("VIRTIO_F_VERSION_1"), "{e}");
    let e = check_features(QEMU_PCI | feature::ACCESS_PLATFORM, true).unwrap_err();
    assert!(e.contains("VIRTIO_F_ACCESS_PLATFORM"), "{e}");
    let e = check_features(QEMU_PCI & !feature::NET_MAC, true).unwrap_err();
    assert!(e.contains("no MAC address"), "{e}");
}

#[test]
fn queue_sizes() {
    check_queue_size(0, 256).unwrap();
    check_queue_size(1, QUEUE_SIZE as u32).unwrap();
    assert!(check_queue_size(0, 0).unwrap_err().contains("size 0"));
    assert!(
        check_queue_size(1, 100)
            .unwrap_err()
            .contains("not a power of two")
    );
    let e = check_queue_size(1, 16).unwrap_err();
    assert!(
        e.contains("transmit queue 1: size 16 is below the 64"),
        "{e}"
    );
}

#[test]
fn command_line_entries_as_microvm_writes_them() {
    let line = "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 rhea.checker=1 \
                virtio_mmio.device=512@0xfeb00c00:11:3 virtio_mmio.device=4K@4273999872:9";
    let (devs, errors) = parse_cmdline(line);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        devs,
        vec![
            MmioDevice {
                base: 0xfeb0_0e00,
                size: 512,
                irq: 12,
                refusal: None,
            },
            MmioDevice {
                base: 0xfeb0_0c00,
                size: 512,
                irq: 11,
                refusal: None,
            },
            MmioDevice {
                base: 0xfec0_1000,
                size: 4096,
                irq: 9,
                refusal: None,
            },
        ]
    );
}

#[test]
fn bad_command_line_entries_are_reported_and_skipped() {
    for (value, why) in [
        ("512", "no `@`"),
        ("512@0xfeb00e00", "no `:`"),
        ("lots@0xfeb00e00:12", "size is not a number"),
        ("512@0xzz:12", "base is not a number"),
        ("512@0xfeb00e00:twelve", "IRQ is not a decimal"),
        ("512@0xfeb00e00:12:x", "device id"),
        ("16@0xfeb00e00:12", "size 0x10 outside"),
        ("2G@0xfeb00e00:12", "outside"),
        ("512@0:12", "zero or not 4-byte aligned"),
        ("512@0xfeb00e01:12", "not 4-byte aligned"),
        ("512@0xfffffffffffffe00:12", "runs past"),
        ("512@0xfeb00e00:0", "IRQ 0 outside"),
        ("512@0xfeb00e00:300", "IRQ 300 outside"),
    ] {
        let e = parse_entry(value).unwrap_err();
        assert!(e.contains(why), "{value}: {e}");
        assert!(e.contains(value), "the message names the entry: {e}");
    }
    let (devs, errors) = parse_cmdline(
        "virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=oops \
         virtio_mmio.device=1K@0xfeb00c00:5 virtio_mmio.device=512@0xfeb00a00:6",
    );
    assert_eq!(devs.len(), 2, "{devs:?}");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[1].contains("overlaps"), "{errors:?}");
}

/// A virtio-mmio register block in ordinary memory (registers are plain words: a write to a
/// selector changes nothing else), mapped 1:1 by [`Identity`].
struct FakeMmio(Box<[u32; 128]>);

impl FakeMmio {
    /// A legacy (version 1) transport holding device type `device_id`, offering `features`
    /// (the same word for both feature selectors) and queues of `queue_max` descriptors.
    fn new(device_id: u32, features: u32, queue_max: u32) -> Self {
        let mut r = Box::new([0u32; 128]);
        r[0] = 0x7472_6976; // "virt"
        r[1] = 1;
        r[2] = device_id;
        r[3] = 0x554d_4551; // "QEMU"
        r[0x10 / 4] = features;
        r[0x34 / 4] = queue_max;
        FakeMmio(r)
    }

    fn device(&self) -> MmioDevice {
        MmioDevice {
            base: self.0.as_ptr() as u64,
            size: 0x200,
            irq: 48,
            refusal: None,
        }
    }
}

/// Maps every window at its own address (as Rhea's kernel does).
struct Identity;

impl BindContext for Identity {
    fn map_mmio(&self, phys: u64, _len: u64) -> Option<u64> {
        Some(phys)
    }
    fn alloc_msi(&self) -> Option<crate::bus::Msi> {
        None
    }
}

static BUS_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn bus_log(msg: &str) {
    BUS_LOG.lock().unwrap().push(msg.to_string());
}

#[test]
fn empty_transports_are_skipped_and_devices_bound_or_refused() {
    use super::mmio::VirtioMmioBus;
    use crate::bus::{Bus, Driver, Outcome, bind_all};
    let empty = FakeMmio::new(0, 0, 0);
    let mut not_virtio = FakeMmio::new(1, 0, 0);
    not_virtio.0[0] = 0xdead_beef;
    let no_mac = FakeMmio::new(VIRTIO_NET_TYPE, 0x0001_0000, 256);
    let small_queues = FakeMmio::new(VIRTIO_NET_TYPE, feature::NET_MAC as u32, 16);
    let block = FakeMmio::new(2, 0, 256);
    let incoherent = FakeMmio::new(VIRTIO_NET_TYPE, feature::NET_MAC as u32, 256);
    let all = [
        &empty,
        &not_virtio,
        &no_mac,
        &small_queues,
        &block,
        &incoherent,
    ];
    // The board's refusal: said for a transport holding a device, not for an empty one.
    let devices = || -> Vec<MmioDevice> {
        all.iter()
            .map(|f| MmioDevice {
                refusal: [&empty, &incoherent]
                    .iter()
                    .any(|r| core::ptr::eq(*r, *f))
                    .then_some("not dma-coherent"),
                ..f.device()
            })
            .collect()
    };
    let mut bus = VirtioMmioBus::new(devices(), bus_log);
    let found = bus.enumerate(&Identity);
    let log = BUS_LOG.lock().unwrap().clone();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .all(|d| d.location.starts_with("virtio-mmio@0x"))
    );
    assert!(
        matches!(
            found[2].id,
            DeviceId::VirtioMmio {
                device_id: 2,
                irq: 48,
                size: 0x200,
                ..
            }
        ),
        "{found:?}"
    );
    // One message for the bad magic, one for the refused device, one summary; nothing for
    // the empty slot.
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].contains("magic 0xdeadbeef") && log[0].contains("skipped"),
        "{log:?}"
    );
    assert_eq!(
        log[1],
        format!(
            "virtio-mmio@{:#x}: device type 1: not dma-coherent; not offered to drivers",
            incoherent.device().base
        )
    );
    assert_eq!(
        log[2],
        "virtio-mmio: 6 transports, 1 empty, 3 offered to drivers"
    );

    let driver = VirtioNetMmio;
    assert!(driver.matches(&found[0]) && !driver.matches(&found[2]));
    let (bound, outcomes) = bind_all(
        &mut [Box::new(VirtioMmioBus::new(devices(), bus_log)) as Box<dyn Bus>],
        &[&driver as &dyn Driver],
        &Identity,
    );
    assert!(bound.is_empty());
    let reasons: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Refused { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{outcomes:?}");
    assert!(reasons[0].contains("no MAC address"), "{reasons:?}");
    assert!(
        reasons[1].contains("receive queue 0: size 16 is below the 64"),
        "{reasons:?}"
    );
    assert!(matches!(&outcomes[2], Outcome::Unclaimed(d) if d.location == found[2].location));
}

#[test]
fn large_segment_offload_only_where_the_heap_affords_its_buffers() {
    use super::hw::tso_affordable;
    // Its 8 buffers of 32 KiB + 64 B may take a sixteenth of the free heap at most.
    let needed = 16 * 8 * (32 * 1024 + 64);
    assert!(
        tso_affordable(16 << 20),
        "the default 128 MiB machine's 16 MiB heap"
    );
    assert!(tso_affordable(needed));
    assert!(!tso_affordable(needed - 1));
    assert!(!tso_affordable(2 << 20), "the appliance's heap in -m 4M");
    assert!(tso_affordable(usize::MAX));
}
