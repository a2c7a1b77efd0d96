//! Interrupt lines and the contract of an interrupt controller.

/// An interrupt line as the controller numbers it: a GSI on x86 (IOAPIC input), an INTID on
/// the GIC, an event channel on Xen, a signal source on LinuxU.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IrqLine(pub u32);

impl IrqLine {
    /// No line: what a board names when a source (e.g. console input) does not exist.
    pub const NONE: IrqLine = IrqLine(u32::MAX);
}

/// How a line signals.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trigger {
    /// Edge-triggered, active high (ISA IRQs).
    Edge,
    /// Level-triggered, active low (PCI INTx).
    LevelLow,
}

/// Why a line could not be routed, masked or unmasked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RouteError {
    /// The controller has no such line.
    NoSuchLine(u32),
    /// The vector is reserved or out of range.
    BadVector(u8),
    /// The controller cannot move this line to another CPU.
    Fixed(u32),
    /// No such CPU (or it is not online).
    NoSuchCpu(u32),
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchLine(l) => write!(f, "interrupt line {l} does not exist"),
            Self::BadVector(v) => write!(f, "vector {v} cannot be used for a device"),
            Self::Fixed(l) => write!(f, "interrupt line {l} cannot be moved to another CPU"),
            Self::NoSuchCpu(c) => write!(f, "CPU {c} is not online"),
        }
    }
}

/// An interrupt controller as the runtime sees it (LAPIC + IOAPIC on x86, the GIC on ARM, event
/// channels on Xen, signals on LinuxU). Vectors are the CPU-side numbers handlers are
/// registered under; lines are the device side.
pub trait InterruptController: Sync {
    /// Signals the end of handling `vector` (nothing for vectors that need no EOI).
    fn end_of_interrupt(&self, vector: u8);
    /// Routes `line` to `vector` on the boot CPU, leaving it masked.
    fn route(&self, line: IrqLine, vector: u8, trigger: Trigger) -> Result<(), RouteError>;
    /// Lets `line` interrupt.
    fn unmask(&self, line: IrqLine) -> Result<(), RouteError>;
    /// Stops `line` from interrupting.
    fn mask(&self, line: IrqLine) -> Result<(), RouteError>;
    /// Raises `vector` on the calling CPU (a self-IPI).
    fn raise_self(&self, vector: u8);

    /// Makes `line` interrupt CPU `cpu` from now on (its affinity). Controllers that deliver
    /// every line to the boot CPU keep the default, which refuses with
    /// [`RouteError::Fixed`].
    fn set_affinity(&self, line: IrqLine, cpu: crate::CpuId) -> Result<(), RouteError> {
        let _ = cpu;
        Err(RouteError::Fixed(line.0))
    }

    /// Turns the CPU-side interrupt `raw` into the vectors to handle, calling `deliver` for
    /// each. A controller that multiplexes many sources onto one CPU vector — Xen's
    /// event-channel upcall — delivers the vector of every pending source; every other
    /// controller delivers `raw` itself (the default). Runs with interrupts disabled, once
    /// per interrupt, before [`end_of_interrupt`](Self::end_of_interrupt)`(raw)`.
    fn demux(&self, raw: u8, deliver: &mut dyn FnMut(u8)) {
        deliver(raw);
    }

    /// Raises `vector` on CPU `cpu` (an IPI). Boards with one CPU keep the default, which does
    /// nothing.
    fn send_ipi(&self, cpu: crate::CpuId, vector: u8) {
        let _ = (cpu, vector);
    }
}
