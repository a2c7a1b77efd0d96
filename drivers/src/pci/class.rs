//! What a PCI function is, in words: its class code (class, subclass, programming interface;
//! PCI Code and ID Assignment Specification 1.x) as the name people read in `lspci`, for the
//! boot log. The one table of class names in the tree; pure, host-tested.

/// The name of the class code `[class, subclass, prog-if]`, if it is one of the common ones
/// (bridges, storage, network, display, USB, SMBus, audio).
pub fn known_name(class: [u8; 3]) -> Option<&'static str> {
    let [base, sub, prog_if] = class;
    Some(match (base, sub, prog_if) {
        // Mass storage.
        (0x01, 0x00, _) => "SCSI controller",
        (0x01, 0x01, _) => "IDE controller",
        (0x01, 0x06, 0x01) => "SATA controller (AHCI)",
        (0x01, 0x06, _) => "SATA controller",
        (0x01, 0x08, 0x02) => "NVMe controller",
        (0x01, 0x08, _) => "non-volatile memory controller",
        // Network.
        (0x02, 0x00, _) => "Ethernet controller",
        (0x02, _, _) => "network controller",
        // Display.
        (0x03, 0x00, _) => "VGA controller",
        (0x03, _, _) => "display controller",
        // Multimedia: audio (0x01) and High Definition Audio (0x03).
        (0x04, 0x01, _) => "audio controller",
        (0x04, 0x03, _) => "audio controller (HD Audio)",
        // Bridges.
        (0x06, 0x00, _) => "host bridge",
        (0x06, 0x01, _) => "ISA bridge",
        (0x06, 0x04, _) => "PCI bridge",
        // Serial bus: USB by its host controller interface, SMBus.
        (0x0c, 0x03, 0x00) => "USB controller (UHCI)",
        (0x0c, 0x03, 0x10) => "USB controller (OHCI)",
        (0x0c, 0x03, 0x20) => "USB controller (EHCI)",
        (0x0c, 0x03, 0x30) => "USB controller (xHCI)",
        (0x0c, 0x03, _) => "USB controller",
        (0x0c, 0x05, _) => "SMBus controller",
        _ => return None,
    })
}

/// A class code for the boot log: its name ([`known_name`]), else `class XX.YY.ZZ` (class,
/// subclass, programming interface in hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassName(pub [u8; 3]);

impl core::fmt::Display for ClassName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match known_name(self.0) {
            Some(name) => f.write_str(name),
            None => {
                let [base, sub, prog_if] = self.0;
                write!(f, "class {base:02x}.{sub:02x}.{prog_if:02x}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn name(class: [u8; 3]) -> String {
        ClassName(class).to_string()
    }

    /// What QEMU's q35 and pc machines and their common devices report.
    #[test]
    fn the_common_classes() {
        let cases: &[([u8; 3], &str)] = &[
            ([0x06, 0x00, 0x00], "host bridge"), // q35 MCH 8086:29c0
            ([0x06, 0x01, 0x00], "ISA bridge"),  // ICH9 LPC 8086:2918
            ([0x06, 0x04, 0x00], "PCI bridge"),  // pci-bridge, pcie-root-port
            ([0x06, 0x04, 0x01], "PCI bridge"),  // subtractive decode
            ([0x01, 0x06, 0x01], "SATA controller (AHCI)"), // ICH9 AHCI 8086:2922
            ([0x01, 0x06, 0x00], "SATA controller"), // vendor-specific interface
            ([0x01, 0x01, 0x80], "IDE controller"), // PIIX3 IDE 8086:7010
            ([0x01, 0x08, 0x02], "NVMe controller"), // -device nvme
            ([0x01, 0x00, 0x00], "SCSI controller"), // virtio-blk-pci
            ([0x02, 0x00, 0x00], "Ethernet controller"), // virtio-net-pci, e1000e
            ([0x03, 0x00, 0x00], "VGA controller"), // -vga std
            ([0x03, 0x80, 0x00], "display controller"), // virtio-gpu-pci
            ([0x0c, 0x03, 0x00], "USB controller (UHCI)"), // ich9-usb-uhci1
            ([0x0c, 0x03, 0x10], "USB controller (OHCI)"), // pci-ohci
            ([0x0c, 0x03, 0x20], "USB controller (EHCI)"), // ich9-usb-ehci1
            ([0x0c, 0x03, 0x30], "USB controller (xHCI)"), // qemu-xhci
            ([0x0c, 0x05, 0x00], "SMBus controller"), // ICH9 SMBus 8086:2930
            ([0x04, 0x03, 0x00], "audio controller (HD Audio)"), // intel-hda
            ([0x04, 0x01, 0x00], "audio controller"), // AC97
        ];
        for (class, want) in cases {
            assert_eq!(name(*class), *want, "{class:02x?}");
            assert_eq!(known_name(*class), Some(*want));
        }
    }

    /// Anything else is named by its code, class.subclass.prog-if, in hex.
    #[test]
    fn unknown_classes_by_code() {
        assert_eq!(name([0x00, 0xff, 0x00]), "class 00.ff.00"); // virtio-balloon, virtio-rng
        assert_eq!(name([0x08, 0x80, 0x00]), "class 08.80.00");
        assert_eq!(name([0xff, 0x00, 0x00]), "class ff.00.00");
        assert_eq!(name([0x06, 0x80, 0x00]), "class 06.80.00"); // "other" bridge
        assert_eq!(name([0x0c, 0x00, 0x10]), "class 0c.00.10"); // FireWire (OHCI): not USB
        assert_eq!(known_name([0x0c, 0x00, 0x10]), None);
    }
}
