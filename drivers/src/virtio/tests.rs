//! The refusal policy and the command-line parser (the transports need a device: they are
//! exercised by the `net-virtio-smoke` boots on q35 and microvm).

use super::mmio::{MmioDevice, parse_cmdline, parse_entry};
use super::*;
use alloc::vec;

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
                irq: 12
            },
            MmioDevice {
                base: 0xfeb0_0c00,
                size: 512,
                irq: 11
            },
            MmioDevice {
                base: 0xfec0_1000,
                size: 4096,
                irq: 9
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
