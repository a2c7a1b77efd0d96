//! The legacy 8259A pair, put out of the way (Intel 8259A Programmable Interrupt Controller
//! datasheet, order 231468: initialization command words ICW1–ICW4, operation command word
//! OCW1).
//!
//! Rhea never takes interrupts from the 8259s: devices go through the IOAPIC and MSIs. But the
//! pair powers up delivering IRQ 0–7 on vectors 8–15 — exception vectors — and firmware may
//! have left it connected to the CPU (LAPIC LINT0 as ExtINT, "virtual wire"). So it is
//! re-initialised to vectors 0x20–0x2f ([`rhea_irq::vectors::PIC_MASTER_BASE`]) and every line is
//! masked: even a stray interrupt (the 8259's spurious IRQ 7/15, which masking does not
//! prevent) would land on a harmless vector. [`Lapic::init`](crate::lapic::Lapic::init) masks
//! LINT0 as well, so normally nothing arrives at all.
//!
//! On machines without 8259s (QEMU `microvm` with `pic=off`) the writes go nowhere, harmlessly.

use crate::pit::PortIo;
use rhea_irq::vectors::{PIC_MASTER_BASE, PIC_SLAVE_BASE};

/// I/O ports (PC/AT wiring).
mod port {
    pub(super) const MASTER_COMMAND: u16 = 0x20;
    pub(super) const MASTER_DATA: u16 = 0x21;
    pub(super) const SLAVE_COMMAND: u16 = 0xa0;
    pub(super) const SLAVE_DATA: u16 = 0xa1;
    /// POST diagnostic port: a write takes about a microsecond on ISA and is otherwise
    /// ignored, giving old 8259s time between initialisation words.
    pub(super) const IO_DELAY: u16 = 0x80;
}

/// ICW1: initialisation, edge-triggered, cascade, ICW4 follows.
const ICW1_INIT_WITH_ICW4: u8 = 0x11;
/// ICW3 to the master: a slave on IR2.
const ICW3_MASTER_SLAVE_ON_IR2: u8 = 1 << 2;
/// ICW3 to the slave: its cascade identity is 2.
const ICW3_SLAVE_ID_2: u8 = 2;
/// ICW4: 8086/88 mode, normal EOI, not buffered.
const ICW4_8086: u8 = 0x01;
/// OCW1: every line masked.
const OCW1_MASK_ALL: u8 = 0xff;

/// Proof that the legacy PIC was remapped and masked (the boot hands it to the stage that
/// enables the LAPIC).
#[derive(Debug)]
pub struct LegacyPicMasked(());

/// Remaps the 8259 pair to vectors 0x20–0x2f and masks every line. Boot, interrupts disabled.
pub fn remap_and_mask(io: &impl PortIo) -> LegacyPicMasked {
    let write = |port: u16, value: u8| {
        io.outb(port, value);
        io.outb(port::IO_DELAY, 0);
    };
    // Mask first: the sequence below leaves the mask register cleared (ICW1 resets it).
    write(port::MASTER_DATA, OCW1_MASK_ALL);
    write(port::SLAVE_DATA, OCW1_MASK_ALL);
    write(port::MASTER_COMMAND, ICW1_INIT_WITH_ICW4);
    write(port::SLAVE_COMMAND, ICW1_INIT_WITH_ICW4);
    write(port::MASTER_DATA, PIC_MASTER_BASE.get()); // ICW2: vector base
    write(port::SLAVE_DATA, PIC_SLAVE_BASE.get());
    write(port::MASTER_DATA, ICW3_MASTER_SLAVE_ON_IR2);
    write(port::SLAVE_DATA, ICW3_SLAVE_ID_2);
    write(port::MASTER_DATA, ICW4_8086);
    write(port::SLAVE_DATA, ICW4_8086);
    write(port::MASTER_DATA, OCW1_MASK_ALL);
    write(port::SLAVE_DATA, OCW1_MASK_ALL);
    LegacyPicMasked(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A model of the pair's initialisation state machine: it follows ICW1..ICW4 and OCW1 and
    /// keeps the resulting vector base and mask of each chip.
    #[derive(Default)]
    struct Pair {
        chips: Mutex<[Chip; 2]>,
        log: Mutex<Vec<(u16, u8)>>,
    }

    #[derive(Default, Clone, Copy, Debug)]
    struct Chip {
        /// Next initialisation word expected on the data port (2, 3, 4), or 0 when initialised.
        expecting: u8,
        base: u8,
        mask: u8,
        icw3: u8,
    }

    impl PortIo for Pair {
        fn inb(&self, port: u16) -> u8 {
            panic!("no reads needed, port {port:#x}")
        }
        fn inl(&self, port: u16) -> u32 {
            panic!("no reads needed, port {port:#x}")
        }
        fn outb(&self, port: u16, value: u8) {
            self.log.lock().unwrap().push((port, value));
            let mut chips = self.chips.lock().unwrap();
            let (chip, is_command) = match port {
                port::MASTER_COMMAND => (&mut chips[0], true),
                port::MASTER_DATA => (&mut chips[0], false),
                port::SLAVE_COMMAND => (&mut chips[1], true),
                port::SLAVE_DATA => (&mut chips[1], false),
                port::IO_DELAY => return,
                _ => panic!("port {port:#x}"),
            };
            if is_command {
                assert_eq!(
                    value & 0x10,
                    0x10,
                    "only ICW1 goes to the command port here"
                );
                assert_eq!(value & 0x01, 0x01, "ICW4 needed");
                *chip = Chip {
                    expecting: 2,
                    mask: 0,
                    ..*chip
                };
                return;
            }
            match chip.expecting {
                2 => (chip.base, chip.expecting) = (value, 3),
                3 => (chip.icw3, chip.expecting) = (value, 4),
                4 => {
                    assert_eq!(value & 0x01, 0x01, "8086 mode");
                    chip.expecting = 0;
                }
                _ => chip.mask = value,
            }
        }
    }

    #[test]
    fn remaps_to_0x20_and_masks_everything() {
        let pair = Pair::default();
        let _proof = remap_and_mask(&pair);
        let chips = *pair.chips.lock().unwrap();
        assert_eq!(chips[0].expecting, 0, "master initialised");
        assert_eq!(chips[1].expecting, 0, "slave initialised");
        assert_eq!((chips[0].base, chips[1].base), (0x20, 0x28));
        assert_eq!((chips[0].icw3, chips[1].icw3), (0x04, 0x02));
        assert_eq!(
            (chips[0].mask, chips[1].mask),
            (0xff, 0xff),
            "masked after ICW1 cleared the masks"
        );
    }

    #[test]
    fn every_write_is_followed_by_an_io_delay() {
        let pair = Pair::default();
        remap_and_mask(&pair);
        let log = pair.log.lock().unwrap();
        assert_eq!(log.len(), 24);
        assert!(
            log.chunks(2)
                .all(|w| w[1] == (port::IO_DELAY, 0) && w[0].0 != port::IO_DELAY)
        );
        assert_eq!(
            log[0],
            (port::MASTER_DATA, 0xff),
            "masked before anything else"
        );
    }
}
