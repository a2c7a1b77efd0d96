//! The x86 interrupt vector plan, and [`Vector`], a vector an interrupt may use.
//!
//! | vectors | use |
//! |---|---|
//! | `0x00..=0x1f` | CPU exceptions (reserved by Intel, SDM Vol. 3A §6.2 table 6-1); fatal in Rhea |
//! | `0x20..=0x2f` | the legacy 8259 pair, remapped here and **masked** ([`crate::pic8259`]) so a stray PIC interrupt can never look like an exception |
//! | `0x30..=0xdf` | device interrupts: IOAPIC lines and MSIs ([`DEVICE_FIRST`]..=[`DEVICE_LAST`]) |
//! | `0xe0..=0xee` | free, reserved for kernel use |
//! | `0xef` | LAPIC timer ([`LAPIC_TIMER`]) |
//! | `0xf0..=0xfb` | free, reserved for IPIs |
//! | `0xfc` | call-function IPI ([`IPI_CALL`]) |
//! | `0xfd` | reschedule IPI ([`IPI_RESCHEDULE`]) |
//! | `0xfe` | LAPIC error ([`LAPIC_ERROR`]) |
//! | `0xff` | LAPIC spurious interrupt ([`SPURIOUS`]); never acknowledged with an EOI |
//!
//! The LAPIC ranks a pending vector by its upper four bits (priority class, SDM Vol. 3A
//! §11.8.3.1 "Task and Processor Priorities"; §12.8.3.1 in later editions), so IPIs (class 15)
//! are delivered before the timer (class 14), and both before device interrupts. Interrupts do
//! not nest in Rhea (gates clear IF; handlers never set it), so classes only order what is
//! pending at the same time.

use core::fmt;

/// An interrupt vector, `32..=255`: never an exception vector.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vector(u8);

impl Vector {
    /// The first vector that is not a CPU exception.
    pub const FIRST: Vector = Vector(0x20);
    /// Number of interrupt vectors (`32..=255`).
    pub const COUNT: usize = 256 - 32;

    /// `v` as an interrupt vector, or `None` for an exception vector (`0..32`).
    pub const fn new(v: u8) -> Option<Vector> {
        if v >= Self::FIRST.0 {
            Some(Vector(v))
        } else {
            None
        }
    }

    /// The vector number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Position in a table of interrupt vectors, `0..Vector::COUNT`.
    pub const fn index(self) -> usize {
        (self.0 - Self::FIRST.0) as usize
    }
}

impl fmt::Debug for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vector({:#04x})", self.0)
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

/// Where the master 8259's IRQ 0 lands after remapping (IRQ 0–7 → `0x20..=0x27`).
pub const PIC_MASTER_BASE: Vector = Vector(0x20);
/// Where the slave 8259's IRQ 8 lands after remapping (IRQ 8–15 → `0x28..=0x2f`).
pub const PIC_SLAVE_BASE: Vector = Vector(0x28);
/// First vector handed to devices.
pub const DEVICE_FIRST: Vector = Vector(0x30);
/// Last vector handed to devices.
pub const DEVICE_LAST: Vector = Vector(0xdf);
/// The LAPIC timer (one-shot or TSC-deadline).
pub const LAPIC_TIMER: Vector = Vector(0xef);
/// Xen's event-channel upcall (`HVM_PARAM_CALLBACK_IRQ` of the vector type) on Xen boards;
/// the event-channel controller demultiplexes it into the vectors above and below.
pub const XEN_UPCALL: Vector = Vector(0xf3);
/// IPI: run a function on another CPU.
pub const IPI_CALL: Vector = Vector(0xfc);
/// IPI: the target CPU must reschedule (a more important thread became ready for it).
pub const IPI_RESCHEDULE: Vector = Vector(0xfd);
/// LAPIC internal error (LVT error entry); the handler reads the error status register.
pub const LAPIC_ERROR: Vector = Vector(0xfe);
/// LAPIC spurious-interrupt vector (spurious-interrupt vector register). Its low four bits
/// are ones, as P6-family parts require (SDM Vol. 3A §11.9 "Spurious Interrupt").
pub const SPURIOUS: Vector = Vector(0xff);

/// Whether the LAPIC must be sent an EOI after `vector` is handled: every interrupt except
/// the spurious one, which sets no in-service bit (SDM Vol. 3A §11.9) — including vectors
/// nobody registered, whose in-service bit would otherwise block every lower class.
pub const fn lapic_needs_eoi(vector: u8) -> bool {
    vector >= Vector::FIRST.0 && vector != SPURIOUS.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_vectors_are_refused() {
        assert_eq!(Vector::new(0), None);
        assert_eq!(Vector::new(31), None);
        assert_eq!(Vector::new(32).map(Vector::index), Some(0));
        assert_eq!(Vector::new(255).map(Vector::index), Some(Vector::COUNT - 1));
    }

    #[test]
    fn plan_is_consistent() {
        let plan = [
            PIC_MASTER_BASE,
            PIC_SLAVE_BASE,
            DEVICE_FIRST,
            DEVICE_LAST,
            LAPIC_TIMER,
            IPI_CALL,
            IPI_RESCHEDULE,
            LAPIC_ERROR,
            SPURIOUS,
        ];
        assert!(plan.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(PIC_SLAVE_BASE.get() - PIC_MASTER_BASE.get(), 8);
        assert_eq!(DEVICE_FIRST.get(), PIC_SLAVE_BASE.get() + 8);
        assert_eq!(SPURIOUS.get() & 0x0f, 0x0f);
        // Priority classes: IPIs above the timer above devices.
        assert!(IPI_RESCHEDULE.get() >> 4 > LAPIC_TIMER.get() >> 4);
        assert!(LAPIC_TIMER.get() >> 4 > DEVICE_LAST.get() >> 4);
        assert!(!lapic_needs_eoi(SPURIOUS.get()));
        assert!(lapic_needs_eoi(LAPIC_TIMER.get()));
        assert!(!lapic_needs_eoi(14));
    }
}
