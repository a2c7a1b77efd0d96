//! MADTs built in host memory: QEMU-shaped ones, then every kind of malformation.

use super::*;
use std::vec;
use std::vec::Vec;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b))
        .wrapping_neg()
}

fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, uid, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(id: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&id.to_le_bytes());
    e
}

fn ioapic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&address.to_le_bytes());
    e.extend_from_slice(&gsi_base.to_le_bytes());
    e
}

fn source_override(bus: u8, irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, bus, irq];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn sdt_header(signature: &[u8; 4], length: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(signature);
    h.extend_from_slice(&(length as u32).to_le_bytes());
    h.push(1); // revision
    h.push(0); // checksum, filled later
    h.extend_from_slice(b"RHEA  ");
    h.extend_from_slice(b"RHEATEST");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(b"RHEA");
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// RSDP (v2) at 0, XSDT at 64, MADT at 128, in one buffer that never moves.
struct Firmware {
    buf: Vec<u8>,
}

const XSDT_AT: usize = 64;
const MADT_AT: usize = 128;

impl Firmware {
    fn new(entries: &[Vec<u8>]) -> Firmware {
        let body: Vec<u8> = entries.concat();
        let mut madt = sdt_header(b"APIC", 44 + body.len());
        madt.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        madt.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        madt.extend_from_slice(&body);
        let mut buf = vec![0u8; MADT_AT + madt.len() + 64];
        buf[MADT_AT..MADT_AT + madt.len()].copy_from_slice(&madt);
        let mut fw = Firmware { buf };
        let base = fw.base();
        let mut xsdt = sdt_header(b"XSDT", 36 + 8);
        xsdt.extend_from_slice(&((base + MADT_AT) as u64).to_le_bytes());
        fw.buf[XSDT_AT..XSDT_AT + xsdt.len()].copy_from_slice(&xsdt);
        let mut rsdp = Vec::new();
        rsdp.extend_from_slice(b"RSD PTR ");
        rsdp.push(0);
        rsdp.extend_from_slice(b"RHEA  ");
        rsdp.push(2);
        rsdp.extend_from_slice(&0u32.to_le_bytes());
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&((base + XSDT_AT) as u64).to_le_bytes());
        rsdp.extend_from_slice(&[0, 0, 0, 0]);
        fw.buf[..36].copy_from_slice(&rsdp);
        fw.fix_checksums();
        fw
    }

    fn base(&self) -> usize {
        self.buf.as_ptr() as usize
    }

    fn madt_len(&self) -> usize {
        u32::from_le_bytes(self.buf[MADT_AT + 4..MADT_AT + 8].try_into().unwrap()) as usize
    }

    fn fix_checksums(&mut self) {
        self.buf[8] = 0;
        self.buf[8] = checksum(&self.buf[..20]);
        self.buf[32] = 0;
        self.buf[32] = checksum(&self.buf[..36]);
        self.buf[XSDT_AT + 9] = 0;
        self.buf[XSDT_AT + 9] = checksum(&self.buf[XSDT_AT..XSDT_AT + 44]);
        let n = self.madt_len().min(self.buf.len() - MADT_AT);
        self.buf[MADT_AT + 9] = 0;
        self.buf[MADT_AT + 9] = checksum(&self.buf[MADT_AT..MADT_AT + n]);
    }

    fn read(&self, boot: u32, x2apic: bool, limit: usize) -> Result<MadtInfo, MadtError> {
        let window = Window {
            start: self.base(),
            end: self.base() + self.buf.len(),
        };
        // SAFETY: the window is this live buffer.
        unsafe { read(Rsdp::At(self.base()), window, boot, x2apic, limit) }
    }
}

fn qemu_q35(cpus: u8) -> Vec<Vec<u8>> {
    let mut e: Vec<Vec<u8>> = (0..cpus).map(|i| lapic(i, i, 1)).collect();
    e.push(ioapic(0, 0xfec0_0000, 0));
    e.push(source_override(0, 0, 2, 0));
    e.push(source_override(0, 5, 5, 0xd));
    e.push(source_override(0, 9, 9, 0xd));
    e.push(source_override(0, 10, 10, 0xd));
    e.push(source_override(0, 11, 11, 0xd));
    e
}

#[test]
fn qemu_shaped_table() {
    let fw = Firmware::new(&qemu_q35(4));
    let info = fw.read(0, false, 64).unwrap();
    assert_eq!(info.cpus.len(), 4);
    assert_eq!(
        (0..4).map(|i| info.cpus.id(i).unwrap()).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(info.local_apic_address, 0xfee0_0000);
    assert_eq!(
        info.io_apics(),
        [IoApicInfo {
            id: 0,
            address: 0xfec0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(info.overrides().len(), 5);
    assert_eq!(info.overrides()[0], IsaOverride::IRQ0_TO_GSI2);
    let sci = info.overrides()[2];
    assert_eq!(
        (sci.isa_irq, sci.gsi, sci.polarity, sci.trigger_mode),
        (9, IrqLine(9), Polarity::ActiveHigh, TriggerMode::Level)
    );
    assert!(info.has_8259);
    assert_eq!((info.not_enabled, info.x2apic_skipped), (0, 0));
}

#[test]
fn boot_cpu_is_cpu0_wherever_it_is_listed() {
    let fw = Firmware::new(&qemu_q35(4));
    let info = fw.read(2, false, 64).unwrap();
    assert_eq!(
        (0..4).map(|i| info.cpus.id(i).unwrap()).collect::<Vec<_>>(),
        [2, 0, 1, 3]
    );
    assert_eq!(info.cpus.duplicates, 0);
}

#[test]
fn disabled_limited_and_x2apic_cpus() {
    let mut e = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 0),
        lapic(2, 2, 2),
        lapic(3, 0xff, 1),
    ];
    e.push(x2apic(300, 1));
    e.push(x2apic(301, 0));
    e.push(lapic(4, 4, 1));
    e.push(lapic(5, 5, 1));
    let fw = Firmware::new(&e);
    // xAPIC mode: 300 cannot be addressed.
    let info = fw.read(0, false, 64).unwrap();
    assert_eq!(info.cpus.len(), 3);
    assert_eq!((info.not_enabled, info.x2apic_skipped), (2, 1));
    // x2APIC mode: it can.
    let info = fw.read(0, true, 64).unwrap();
    assert_eq!(info.cpus.len(), 4);
    assert_eq!(info.cpus.index_of(300), Some(1));
    // A limit of 2 keeps the boot CPU and the first other one.
    let info = fw.read(0, true, 2).unwrap();
    assert_eq!((info.cpus.len(), info.cpus.over_limit), (2, 2));
}

#[test]
fn malformed_entries_are_refused() {
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![lapic(0, 0, 1), vec![0, 0]], "zero length"),
        (
            vec![lapic(0, 0, 1), vec![0, 6, 1, 1, 1, 0]],
            "local APIC too short",
        ),
        (
            vec![lapic(0, 0, 1), vec![9, 12, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]],
            "x2APIC too short",
        ),
        (
            vec![lapic(0, 0, 1), vec![1, 8, 0, 0, 0, 0, 0xc0, 0xfe]],
            "I/O APIC too short",
        ),
        (vec![lapic(0, 0, 1), vec![0x80, 1]], "length 1"),
    ];
    for (entries, what) in cases {
        let fw = Firmware::new(&entries);
        match fw.read(0, false, 64) {
            Err(MadtError::BadEntry { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // An entry running past the table's end.
    let mut e = lapic(0, 0, 1);
    e[1] = 40;
    let fw = Firmware::new(&[lapic(1, 1, 1), e]);
    assert!(matches!(
        fw.read(0, false, 64),
        Err(MadtError::BadEntry { offset: 52, .. })
    ));
    // A trailing single byte (no room for a length).
    let fw = Firmware::new(&[lapic(0, 0, 1), vec![0]]);
    assert!(matches!(
        fw.read(0, false, 64),
        Err(MadtError::BadEntry { .. })
    ));
}

#[test]
fn bad_overrides_and_too_many_ioapics() {
    for o in [source_override(1, 0, 2, 0), source_override(0, 16, 2, 0)] {
        let fw = Firmware::new(&[lapic(0, 0, 1), o]);
        assert!(matches!(
            fw.read(0, false, 64),
            Err(MadtError::BadOverride { .. })
        ));
    }
    let fw = Firmware::new(&[
        lapic(0, 0, 1),
        source_override(0, 0, 2, 0),
        source_override(0, 0, 2, 0),
    ]);
    assert!(matches!(
        fw.read(0, false, 64),
        Err(MadtError::BadOverride { irq: 0, .. })
    ));
    let mut e = vec![lapic(0, 0, 1)];
    e.extend((0..9).map(|i| ioapic(i, 0xfec0_0000 + u32::from(i) * 0x1000, u32::from(i) * 24)));
    let fw = Firmware::new(&e);
    assert!(matches!(
        fw.read(0, false, 64),
        Err(MadtError::TooManyIoApics)
    ));
}

#[test]
fn checksums_and_signatures_are_checked() {
    let mut fw = Firmware::new(&qemu_q35(2));
    fw.buf[MADT_AT + 44 + 3] ^= 1; // a CPU's APIC ID, checksum not fixed
    assert!(matches!(fw.read(0, false, 64), Err(MadtError::Acpi(_))));
    let mut fw = Firmware::new(&qemu_q35(2));
    fw.buf[MADT_AT] = b'X'; // no MADT any more
    fw.fix_checksums();
    assert!(matches!(fw.read(0, false, 64), Err(MadtError::Acpi(_))));
    let mut fw = Firmware::new(&qemu_q35(2));
    fw.buf[0] = b'X'; // no RSDP
    assert!(matches!(fw.read(0, false, 64), Err(MadtError::Acpi(_))));
    let mut fw = Firmware::new(&qemu_q35(2));
    fw.buf[20] ^= 0x55; // RSDP extended checksum wrong
    assert!(matches!(fw.read(0, false, 64), Err(MadtError::Acpi(_))));
}

/// A table shorter than its fixed part is refused by its length; it used to stop the boot
/// with a panic in the mapping hook (found by `cargo xtask fuzz acpi`: an MCFG of 41 bytes).
#[test]
fn tables_shorter_than_their_header_are_refused() {
    for length in [36u32, 40, 43] {
        let mut fw = Firmware::new(&qemu_q35(1));
        fw.buf[MADT_AT + 4..MADT_AT + 8].copy_from_slice(&length.to_le_bytes());
        fw.fix_checksums();
        assert!(
            matches!(fw.read(0, false, 64), Err(MadtError::TooShort { length: l }) if l == length),
            "MADT of {length} bytes"
        );
        // The same bytes as an MCFG (36 bytes of header, 8 reserved).
        fw.buf[MADT_AT..MADT_AT + 4].copy_from_slice(b"MCFG");
        fw.fix_checksums();
        let window = Window {
            start: fw.base(),
            end: fw.base() + fw.buf.len(),
        };
        // SAFETY: the window is this live buffer.
        let mcfg = unsafe { crate::mcfg::read(Rsdp::At(fw.base()), window) };
        assert!(
            matches!(mcfg, Err(crate::mcfg::McfgError::BadLength(l)) if l == length),
            "MCFG of {length} bytes: {mcfg:?}"
        );
    }
}

#[test]
#[should_panic(expected = "outside readable memory")]
fn pointers_outside_the_window_stop_with_a_message() {
    let mut fw = Firmware::new(&qemu_q35(1));
    let far = (fw.base() + (1 << 30)) as u64;
    fw.buf[XSDT_AT + 36..XSDT_AT + 44].copy_from_slice(&far.to_le_bytes());
    fw.fix_checksums();
    let _ = fw.read(0, false, 64);
}

#[test]
fn random_corruption_of_entries_never_panics() {
    let base = qemu_q35(4);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4000 {
        let mut fw = Firmware::new(&base);
        let len = fw.madt_len();
        for _ in 0..(seed % 4 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = MADT_AT + 44 + (seed as usize % (len - 44));
            fw.buf[at] = (seed >> 32) as u8;
        }
        fw.fix_checksums();
        if let Ok(info) = fw.read(0, seed & 1 == 1, 64) {
            assert!((1..=64).contains(&info.cpus.len()));
            assert!(info.io_apics().len() <= MAX_IOAPICS);
        }
    }
}
