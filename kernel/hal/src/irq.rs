//! Interrupt lines and the contract of an interrupt controller.

/// An interrupt line as the controller numbers it: a GSI on x86 (IOAPIC input), an INTID on
/// the GIC, an event channel on Xen, a signal source on LinuxU.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IrqLine(pub u32);

/// How a line signals.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trigger {
    /// Edge-triggered, active high (ISA IRQs).
    Edge,
    /// Level-triggered, active low (PCI INTx).
    LevelLow,
}
