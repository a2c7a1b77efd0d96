//! The I/O APIC (Intel 82093AA I/O Advanced Programmable Interrupt Controller datasheet, order
//! 290566; chipset IOAPICs and QEMU's follow it, with 8-bit physical destinations).
//!
//! The IOAPIC turns external interrupt lines (GSIs `gsi_base..gsi_base + entries`) into
//! messages to a LAPIC. Its registers are reached indirectly: the register index goes to
//! IOREGSEL, the data through IOWIN (§3.0, table 1). That select-then-access pair is why every
//! method takes `&mut self`: two CPUs interleaving pairs would corrupt each other, so the
//! kernel keeps the `IoApic` behind a lock, and since [`mask`](IoApic::mask) and
//! [`unmask`](IoApic::unmask) are called from interrupt context (a level-triggered line's top
//! half masks it, its thread unmasks), that lock must disable interrupts.
//!
//! [`route`](IoApic::route) leaves the line masked; [`unmask`](IoApic::unmask) it once its
//! handler is registered, so nothing is delivered to an empty vector.
//!
//! ISA IRQs are not GSIs: firmware's ACPI MADT lists *interrupt source overrides*
//! (ACPI 6.5 §5.2.12.5), nearly always IRQ0 → GSI2 (the PIT) and on QEMU IRQ 5, 9, 10, 11 as
//! level-triggered active-high. [`IsaIrqMap`] applies them to the identity default; parsing
//! the MADT is the caller's.

use crate::access::Mmio32;
use crate::lapic::ApicId;
use core::fmt;
use rhea_hal::{IrqLine, Trigger};
use rhea_irq::vectors::Vector;

/// Memory-mapped registers (§3.0, table 1).
mod mmio {
    /// I/O register select: the index of the register IOWIN reaches.
    pub(super) const IOREGSEL: usize = 0x00;
    /// I/O window: the selected register's data.
    pub(super) const IOWIN: usize = 0x10;
}

/// Indirect registers (§3.1, table 2).
mod index {
    /// IOAPIC ID (bits 27:24).
    pub(super) const ID: u32 = 0x00;
    /// Version (bits 7:0) and maximum redirection entry (bits 23:16).
    pub(super) const VERSION: u32 = 0x01;
    /// Redirection entry `n`: low half at `0x10 + 2n`, high half at `0x11 + 2n` (§3.2.4).
    pub(super) const REDIRECTION_TABLE: u32 = 0x10;
}

// Redirection entry fields (§3.2.4, "IOREDTBL[23:0] — I/O Redirection Table Registers").
const RTE_VECTOR: u64 = 0xff;
const RTE_DELIVERY_MODE: u64 = 0b111 << 8;
const RTE_DELIVERY_FIXED: u64 = 0b000 << 8;
const RTE_DEST_LOGICAL: u64 = 1 << 11;
const RTE_POLARITY_LOW: u64 = 1 << 13;
const RTE_TRIGGER_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DESTINATION_SHIFT: u32 = 56;

/// Largest plausible maximum-redirection-entry field: an IOAPIC with more inputs than there
/// are interrupt vectors is a bad read.
const MAX_REDIRECTION_ENTRY_LIMIT: u32 = 239;

/// Input pin polarity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Polarity {
    /// Asserted high (ISA).
    ActiveHigh,
    /// Asserted low (PCI INTx).
    ActiveLow,
}

/// Input pin trigger mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TriggerMode {
    /// Edge (ISA).
    Edge,
    /// Level (PCI INTx, ACPI SCI).
    Level,
}

/// [`Trigger`] as the IOAPIC programs it.
pub const fn pin_mode(trigger: Trigger) -> (Polarity, TriggerMode) {
    match trigger {
        Trigger::Edge => (Polarity::ActiveHigh, TriggerMode::Edge),
        Trigger::LevelLow => (Polarity::ActiveLow, TriggerMode::Level),
    }
}

/// One redirection entry, in the form Rhea uses: fixed delivery to one LAPIC by physical ID.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RedirectionEntry {
    /// Vector delivered.
    pub vector: u8,
    /// Pin polarity.
    pub polarity: Polarity,
    /// Pin trigger mode.
    pub trigger_mode: TriggerMode,
    /// Whether the pin is masked.
    pub is_masked: bool,
    /// Physical APIC ID of the destination.
    pub destination: u8,
}

impl RedirectionEntry {
    /// The 64-bit register value.
    pub const fn to_bits(self) -> u64 {
        (self.vector as u64)
            | RTE_DELIVERY_FIXED
            | match self.polarity {
                Polarity::ActiveHigh => 0,
                Polarity::ActiveLow => RTE_POLARITY_LOW,
            }
            | match self.trigger_mode {
                TriggerMode::Edge => 0,
                TriggerMode::Level => RTE_TRIGGER_LEVEL,
            }
            | if self.is_masked { RTE_MASKED } else { 0 }
            | (self.destination as u64) << RTE_DESTINATION_SHIFT
    }

    /// Decodes a register value; `None` unless it is fixed delivery in physical mode (not
    /// something Rhea programmed).
    pub const fn from_bits(bits: u64) -> Option<RedirectionEntry> {
        if bits & RTE_DELIVERY_MODE != RTE_DELIVERY_FIXED || bits & RTE_DEST_LOGICAL != 0 {
            return None;
        }
        Some(RedirectionEntry {
            vector: (bits & RTE_VECTOR) as u8,
            polarity: if bits & RTE_POLARITY_LOW != 0 {
                Polarity::ActiveLow
            } else {
                Polarity::ActiveHigh
            },
            trigger_mode: if bits & RTE_TRIGGER_LEVEL != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            is_masked: bits & RTE_MASKED != 0,
            destination: (bits >> RTE_DESTINATION_SHIFT) as u8,
        })
    }
}

/// Why an IOAPIC operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoApicError {
    /// The version register reads as no IOAPIC (all ones, or an impossible entry count).
    NotPresent {
        /// What it read.
        version_register: u32,
    },
    /// The GSIs `gsi_base..gsi_base + entries` overflow `u32`.
    GsiRangeOverflow,
    /// This IOAPIC does not have the GSI.
    GsiOutOfRange {
        /// The GSI asked for.
        gsi: u32,
        /// This IOAPIC's first GSI.
        first: u32,
        /// Its number of inputs.
        count: u32,
    },
    /// Physical destinations are 8 bits; a larger x2APIC ID needs interrupt remapping.
    DestinationOutOfRange(ApicId),
    /// The entry read back is not fixed, physical delivery.
    UnexpectedEntry(u64),
}

impl fmt::Display for IoApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoApicError::NotPresent { version_register } => {
                write!(
                    f,
                    "no IOAPIC answers (version register {version_register:#010x})"
                )
            }
            IoApicError::GsiRangeOverflow => f.write_str("IOAPIC GSI range overflows"),
            IoApicError::GsiOutOfRange { gsi, first, count } => {
                write!(
                    f,
                    "GSI {gsi} is outside this IOAPIC's {first}..{}",
                    u64::from(*first) + u64::from(*count)
                )
            }
            IoApicError::DestinationOutOfRange(id) => {
                write!(f, "APIC ID {} does not fit an IOAPIC destination", id.0)
            }
            IoApicError::UnexpectedEntry(bits) => {
                write!(f, "unexpected redirection entry {bits:#018x}")
            }
        }
    }
}

/// One I/O APIC.
#[derive(Debug)]
pub struct IoApic<M> {
    mmio: M,
    gsi_base: u32,
    entries: u32,
    id: u8,
    version: u8,
}

impl<M: Mmio32> IoApic<M> {
    /// The IOAPIC whose 0x20-byte register window is `mmio` (mapped uncached, from the MADT's
    /// IOAPIC entry, `0xfec0_0000` on PCs and QEMU) and whose first input is GSI `gsi_base`.
    /// Reads and checks its version register; touches nothing else.
    pub fn new(mmio: M, gsi_base: u32) -> Result<IoApic<M>, IoApicError> {
        let mut io = IoApic {
            mmio,
            gsi_base,
            entries: 0,
            id: 0,
            version: 0,
        };
        let raw = io.read_register(index::VERSION);
        let max_entry = (raw >> 16) & 0xff;
        if raw == u32::MAX || max_entry > MAX_REDIRECTION_ENTRY_LIMIT {
            return Err(IoApicError::NotPresent {
                version_register: raw,
            });
        }
        io.entries = max_entry + 1;
        io.version = raw as u8;
        gsi_base
            .checked_add(io.entries)
            .ok_or(IoApicError::GsiRangeOverflow)?;
        io.id = ((io.read_register(index::ID) >> 24) & 0x0f) as u8;
        Ok(io)
    }

    /// The first GSI.
    pub const fn gsi_base(&self) -> u32 {
        self.gsi_base
    }

    /// The number of inputs (redirection entries).
    pub const fn entries(&self) -> u32 {
        self.entries
    }

    /// The version (0x11 for the 82093AA, 0x20 for chipset IOAPICs and QEMU).
    pub const fn version(&self) -> u8 {
        self.version
    }

    /// The IOAPIC ID (bits 27:24 of its ID register).
    pub const fn id(&self) -> u8 {
        self.id
    }

    /// Whether `gsi` is one of this IOAPIC's inputs.
    pub const fn has_gsi(&self, gsi: IrqLine) -> bool {
        gsi.0 >= self.gsi_base && gsi.0 - self.gsi_base < self.entries
    }

    fn read_register(&mut self, index: u32) -> u32 {
        self.mmio.write32(mmio::IOREGSEL, index);
        self.mmio.read32(mmio::IOWIN)
    }

    fn write_register(&mut self, index: u32, value: u32) {
        self.mmio.write32(mmio::IOREGSEL, index);
        self.mmio.write32(mmio::IOWIN, value);
    }

    /// The register index of the low half of `gsi`'s entry.
    fn entry_index(&self, gsi: IrqLine) -> Result<u32, IoApicError> {
        if self.has_gsi(gsi) {
            Ok(index::REDIRECTION_TABLE + 2 * (gsi.0 - self.gsi_base))
        } else {
            Err(IoApicError::GsiOutOfRange {
                gsi: gsi.0,
                first: self.gsi_base,
                count: self.entries,
            })
        }
    }

    /// Masks every input: the state to start from (reset masks them, firmware may not have
    /// left them so).
    pub fn mask_all(&mut self) {
        // RT: boot only; at most 240 entries.
        for pin in 0..self.entries {
            let low = index::REDIRECTION_TABLE + 2 * pin;
            let value = self.read_register(low);
            self.write_register(low, value | RTE_MASKED as u32);
        }
    }

    /// Routes `gsi` to `vector` on the CPU with APIC ID `dest`, fixed delivery, with the pin
    /// mode of `trigger`. Leaves the line **masked**: [`unmask`](Self::unmask) it once the
    /// vector's handler is registered.
    pub fn route(
        &mut self,
        gsi: IrqLine,
        vector: Vector,
        dest: ApicId,
        trigger: Trigger,
    ) -> Result<(), IoApicError> {
        let (polarity, trigger_mode) = pin_mode(trigger);
        self.route_with(gsi, vector, dest, polarity, trigger_mode)
    }

    /// [`route`](Self::route) with the polarity and trigger mode given separately (for MADT
    /// overrides such as QEMU's level-triggered, active-high SCI, which [`Trigger`] does not
    /// name).
    pub fn route_with(
        &mut self,
        gsi: IrqLine,
        vector: Vector,
        dest: ApicId,
        polarity: Polarity,
        trigger_mode: TriggerMode,
    ) -> Result<(), IoApicError> {
        let low = self.entry_index(gsi)?;
        let destination =
            u8::try_from(dest.0).map_err(|_| IoApicError::DestinationOutOfRange(dest))?;
        let bits = RedirectionEntry {
            vector: vector.get(),
            polarity,
            trigger_mode,
            is_masked: true,
            destination,
        }
        .to_bits();
        // Low half first: it carries the mask, so the pin is masked before its destination
        // changes and never delivers a half-written entry.
        self.write_register(low, bits as u32);
        self.write_register(low + 1, (bits >> 32) as u32);
        Ok(())
    }

    /// Masks `gsi`. Two register accesses; callable from interrupt context (under the
    /// kernel's interrupt-disabling lock).
    pub fn mask(&mut self, gsi: IrqLine) -> Result<(), IoApicError> {
        let low = self.entry_index(gsi)?;
        let value = self.read_register(low);
        self.write_register(low, value | RTE_MASKED as u32);
        Ok(())
    }

    /// Unmasks `gsi`.
    pub fn unmask(&mut self, gsi: IrqLine) -> Result<(), IoApicError> {
        let low = self.entry_index(gsi)?;
        let value = self.read_register(low);
        self.write_register(low, value & !(RTE_MASKED as u32));
        Ok(())
    }

    /// Reads `gsi`'s entry back.
    pub fn read_entry(&mut self, gsi: IrqLine) -> Result<RedirectionEntry, IoApicError> {
        let low = self.entry_index(gsi)?;
        let bits =
            u64::from(self.read_register(low)) | u64::from(self.read_register(low + 1)) << 32;
        RedirectionEntry::from_bits(bits).ok_or(IoApicError::UnexpectedEntry(bits))
    }
}

/// An ACPI MADT interrupt source override: ISA `isa_irq` is wired to `gsi` with this pin mode.
/// "Conforms to the bus" flags mean ISA's default, edge and active high.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IsaOverride {
    /// The ISA IRQ, `0..16`.
    pub isa_irq: u8,
    /// Where it is wired.
    pub gsi: IrqLine,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger_mode: TriggerMode,
}

impl IsaOverride {
    /// The override nearly every PC and QEMU has: the PIT's IRQ0 on IOAPIC input 2.
    pub const IRQ0_TO_GSI2: IsaOverride = IsaOverride {
        isa_irq: 0,
        gsi: IrqLine(2),
        polarity: Polarity::ActiveHigh,
        trigger_mode: TriggerMode::Edge,
    };
}

/// Where an ISA IRQ arrives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IsaRoute {
    /// Its GSI.
    pub gsi: IrqLine,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger_mode: TriggerMode,
}

/// Why an override list was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IsaMapError {
    /// Not an ISA IRQ (`0..16`).
    NotAnIsaIrq(u8),
    /// Two overrides for one IRQ.
    DuplicateOverride(u8),
}

impl fmt::Display for IsaMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaMapError::NotAnIsaIrq(irq) => write!(f, "IRQ {irq} is not an ISA IRQ"),
            IsaMapError::DuplicateOverride(irq) => {
                write!(f, "two interrupt source overrides for ISA IRQ {irq}")
            }
        }
    }
}

/// ISA IRQ → GSI: identity, edge, active high, except where overridden.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IsaIrqMap {
    routes: [IsaRoute; 16],
}

impl IsaIrqMap {
    /// No overrides: IRQ `n` is GSI `n`, edge, active high.
    pub const IDENTITY: IsaIrqMap = {
        let mut routes = [IsaRoute {
            gsi: IrqLine(0),
            polarity: Polarity::ActiveHigh,
            trigger_mode: TriggerMode::Edge,
        }; 16];
        let mut irq = 0;
        while irq < 16 {
            routes[irq].gsi = IrqLine(irq as u32);
            irq += 1;
        }
        IsaIrqMap { routes }
    };

    /// The identity map with `overrides` applied (from the MADT, unchecked input: each IRQ
    /// must be `0..16` and overridden at most once).
    pub fn new(overrides: &[IsaOverride]) -> Result<IsaIrqMap, IsaMapError> {
        let mut map = Self::IDENTITY;
        let mut seen = 0u16;
        for o in overrides {
            let irq = usize::from(o.isa_irq);
            if irq >= 16 {
                return Err(IsaMapError::NotAnIsaIrq(o.isa_irq));
            }
            if seen & (1 << irq) != 0 {
                return Err(IsaMapError::DuplicateOverride(o.isa_irq));
            }
            seen |= 1 << irq;
            map.routes[irq] = IsaRoute {
                gsi: o.gsi,
                polarity: o.polarity,
                trigger_mode: o.trigger_mode,
            };
        }
        Ok(map)
    }

    /// Where ISA `isa_irq` arrives; `None` if it is not `0..16`.
    pub fn route(&self, isa_irq: u8) -> Option<IsaRoute> {
        self.routes.get(usize::from(isa_irq)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The IOAPIC as QEMU models it: 24 inputs, version 0x20, every entry masked at reset.
    struct Model {
        state: Mutex<ModelState>,
    }
    struct ModelState {
        select: u32,
        regs: Vec<u32>,
        /// Every (index, value) written through IOWIN.
        writes: Vec<(u32, u32)>,
        is_absent: bool,
    }

    impl Model {
        fn new(id: u8) -> Model {
            let mut regs = vec![0; 0x40];
            regs[0] = u32::from(id) << 24;
            regs[1] = 0x0017_0020;
            for pin in 0..24 {
                regs[0x10 + 2 * pin] = RTE_MASKED as u32;
            }
            Model {
                state: Mutex::new(ModelState {
                    select: 0,
                    regs,
                    writes: Vec::new(),
                    is_absent: false,
                }),
            }
        }
        fn absent() -> Model {
            let m = Model::new(0);
            m.state.lock().unwrap().is_absent = true;
            m
        }
        fn entry(&self, pin: usize) -> u64 {
            let s = self.state.lock().unwrap();
            u64::from(s.regs[0x10 + 2 * pin]) | u64::from(s.regs[0x11 + 2 * pin]) << 32
        }
        fn writes(&self) -> Vec<(u32, u32)> {
            self.state.lock().unwrap().writes.clone()
        }
    }

    impl Mmio32 for Model {
        fn read32(&self, offset: usize) -> u32 {
            let s = self.state.lock().unwrap();
            if s.is_absent {
                return u32::MAX;
            }
            assert_eq!(offset, mmio::IOWIN, "only IOWIN is read");
            s.regs.get(s.select as usize).copied().unwrap_or(0)
        }
        fn write32(&self, offset: usize, value: u32) {
            let mut s = self.state.lock().unwrap();
            match offset {
                mmio::IOREGSEL => s.select = value & 0xff,
                mmio::IOWIN => {
                    let i = s.select as usize;
                    assert!(
                        (0x10..0x40).contains(&i),
                        "only redirection entries are written, not {i:#x}"
                    );
                    let select = s.select;
                    s.writes.push((select, value));
                    // Delivery status (12) and remote IRR (14) are read-only.
                    let ro = if i.is_multiple_of(2) {
                        (1 << 12) | (1 << 14)
                    } else {
                        0
                    };
                    s.regs[i] = (s.regs[i] & ro) | (value & !ro);
                }
                _ => panic!("no register at {offset:#x}"),
            }
        }
    }

    fn v(n: u8) -> Vector {
        Vector::new(n).unwrap()
    }

    #[test]
    fn version_and_id_are_read_and_checked() {
        let m = Model::new(5);
        let io = IoApic::new(&m, 0).unwrap();
        assert_eq!(
            (io.entries(), io.version(), io.id(), io.gsi_base()),
            (24, 0x20, 5, 0)
        );
        assert!(matches!(
            IoApic::new(Model::absent(), 0),
            Err(IoApicError::NotPresent {
                version_register: u32::MAX
            })
        ));
        assert_eq!(
            IoApic::new(&m, u32::MAX - 10).err(),
            Some(IoApicError::GsiRangeOverflow)
        );
    }

    #[test]
    fn route_programs_a_masked_entry_low_half_first() {
        let m = Model::new(0);
        let mut io = IoApic::new(&m, 0).unwrap();
        io.route(IrqLine(4), v(0x31), ApicId(3), Trigger::Edge)
            .unwrap();
        assert_eq!(m.writes(), [(0x18, 0x1_0031), (0x19, 3 << 24)]);
        assert_eq!(m.entry(4), 0x0300_0000_0001_0031);
        io.unmask(IrqLine(4)).unwrap();
        assert_eq!(m.entry(4), 0x0300_0000_0000_0031);
        let e = io.read_entry(IrqLine(4)).unwrap();
        assert_eq!(
            e,
            RedirectionEntry {
                vector: 0x31,
                polarity: Polarity::ActiveHigh,
                trigger_mode: TriggerMode::Edge,
                is_masked: false,
                destination: 3
            }
        );
        io.mask(IrqLine(4)).unwrap();
        assert!(io.read_entry(IrqLine(4)).unwrap().is_masked);
        assert_eq!(m.entry(4) & 0xff, 0x31, "masking keeps the vector");
    }

    #[test]
    fn pci_lines_are_level_triggered_active_low() {
        let m = Model::new(0);
        let mut io = IoApic::new(&m, 0).unwrap();
        io.route(IrqLine(16), v(0x40), ApicId(0), Trigger::LevelLow)
            .unwrap();
        assert_eq!(m.entry(16), 0x1_a040, "mask | level | active low | vector");
        io.route_with(
            IrqLine(9),
            v(0x41),
            ApicId(1),
            Polarity::ActiveHigh,
            TriggerMode::Level,
        )
        .unwrap();
        assert_eq!(m.entry(9), 0x0100_0000_0001_8041);
    }

    #[test]
    fn gsis_outside_the_ioapic_are_refused() {
        let m = Model::new(0);
        // A second IOAPIC, inputs 24..48.
        let mut io = IoApic::new(&m, 24).unwrap();
        let out = |gsi| {
            Err(IoApicError::GsiOutOfRange {
                gsi,
                first: 24,
                count: 24,
            })
        };
        assert_eq!(
            io.route(IrqLine(23), v(0x30), ApicId(0), Trigger::Edge),
            out(23)
        );
        assert_eq!(io.unmask(IrqLine(48)), out(48));
        assert_eq!(io.mask(IrqLine(u32::MAX)), out(u32::MAX));
        assert_eq!(io.read_entry(IrqLine(100)).err(), out(100).err());
        assert!(m.writes().is_empty(), "nothing written");
        io.route(IrqLine(24), v(0x30), ApicId(0), Trigger::Edge)
            .unwrap();
        io.route(IrqLine(47), v(0x30), ApicId(0), Trigger::Edge)
            .unwrap();
        assert_eq!(m.writes()[0].0, 0x10);
        assert_eq!(m.writes()[2].0, 0x10 + 2 * 23);
        assert!(io.has_gsi(IrqLine(24)) && !io.has_gsi(IrqLine(48)));
    }

    #[test]
    fn destinations_beyond_eight_bits_are_refused() {
        let m = Model::new(0);
        let mut io = IoApic::new(&m, 0).unwrap();
        assert_eq!(
            io.route(IrqLine(1), v(0x30), ApicId(256), Trigger::Edge),
            Err(IoApicError::DestinationOutOfRange(ApicId(256)))
        );
    }

    #[test]
    fn mask_all_masks_every_entry_and_keeps_the_rest() {
        let m = Model::new(0);
        m.state.lock().unwrap().regs[0x10 + 2 * 7] = 0x8035;
        let mut io = IoApic::new(&m, 0).unwrap();
        io.mask_all();
        for pin in 0..24 {
            assert_ne!(m.entry(pin) & RTE_MASKED, 0, "pin {pin}");
        }
        assert_eq!(m.entry(7), 0x1_8035);
    }

    #[test]
    fn entries_not_written_by_rhea_are_reported() {
        let m = Model::new(0);
        m.state.lock().unwrap().regs[0x10 + 2 * 3] = 0x1_0730; // ExtINT delivery
        let mut io = IoApic::new(&m, 0).unwrap();
        assert_eq!(
            io.read_entry(IrqLine(3)),
            Err(IoApicError::UnexpectedEntry(0x1_0730))
        );
    }

    #[test]
    fn isa_map_applies_overrides() {
        let sci = IsaOverride {
            isa_irq: 9,
            gsi: IrqLine(9),
            polarity: Polarity::ActiveHigh,
            trigger_mode: TriggerMode::Level,
        };
        let map = IsaIrqMap::new(&[IsaOverride::IRQ0_TO_GSI2, sci]).unwrap();
        assert_eq!(map.route(0).unwrap().gsi, IrqLine(2));
        assert_eq!(map.route(9).unwrap().trigger_mode, TriggerMode::Level);
        assert_eq!(
            map.route(4),
            Some(IsaRoute {
                gsi: IrqLine(4),
                polarity: Polarity::ActiveHigh,
                trigger_mode: TriggerMode::Edge
            })
        );
        assert_eq!(map.route(16), None);
        assert_eq!(IsaIrqMap::IDENTITY.route(15).unwrap().gsi, IrqLine(15));
    }

    #[test]
    fn bad_override_lists_are_refused() {
        let bad = IsaOverride {
            isa_irq: 16,
            ..IsaOverride::IRQ0_TO_GSI2
        };
        assert_eq!(IsaIrqMap::new(&[bad]), Err(IsaMapError::NotAnIsaIrq(16)));
        assert_eq!(
            IsaIrqMap::new(&[IsaOverride::IRQ0_TO_GSI2, IsaOverride::IRQ0_TO_GSI2]),
            Err(IsaMapError::DuplicateOverride(0))
        );
    }
}
