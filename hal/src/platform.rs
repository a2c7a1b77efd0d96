//! What a board hands the runtime: a console and a way to end the machine.

/// How a run of the kernel ends. A test harness reads it from the hypervisor (QEMU's
/// `isa-debug-exit`, PSCI `SYSTEM_OFF` plus semihosting, Xen `SCHEDOP_shutdown`, a process exit
/// code on LinuxU).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitStatus {
    /// The application returned successfully from `main`.
    Success,
    /// The application reported an error, or the kernel hit a fatal fault or a panic.
    Failure,
}

/// A byte sink for kernel output.
///
/// `write_bytes` must be callable from any context — including a fault handler that interrupted
/// another `write_bytes` on the same CPU — so implementations keep no state that such nesting
/// could corrupt (a polled UART qualifies). Serialising whole messages is the caller's job.
pub trait Console: Sync {
    /// Writes `bytes` as they are; no newline translation.
    fn write_bytes(&self, bytes: &[u8]);
}

/// The board-level services the runtime needs from the first instruction of Rust code on.
pub trait Platform: Sync {
    /// The board's name as xtask knows it, e.g. `qemu-x86_64`.
    fn name(&self) -> &'static str;

    /// The early, always-available console.
    fn console(&self) -> &dyn Console;

    /// Ends the machine with `status`. On hardware without a way to report a status this stops
    /// the CPU for good.
    fn exit(&self, status: ExitStatus) -> !;

    /// Resets the machine: a new boot of the same image, with the same command line.
    /// Returns only where the board has no way to, with why.
    fn reboot(&self) -> &'static str {
        "this board has no reset path"
    }

    /// How many CPUs the machine has (or the command line asked for), at most the scheduler's
    /// limit. Boards without multi-CPU bring-up keep the default, 1.
    fn cpu_count(&self) -> usize {
        1
    }

    /// Starts CPUs `1..cpu_count()`; each runs `entry(cpu)` once its own per-CPU state is set
    /// up, on a stack the board took from `stacks`. Returns how many CPUs are online afterwards
    /// (a CPU that does not come up within the board's timeout is reported and left out). The
    /// default has no secondary CPUs.
    fn start_secondary_cpus(
        &self,
        entry: extern "C" fn(usize) -> !,
        stacks: &dyn StackSource,
    ) -> usize {
        let _ = (entry, stacks);
        1
    }

    /// A file for a trace dump (`rhea.trace_to=file`), created or emptied, and its name; `None`
    /// where the board has no files (the default) or it cannot be created.
    fn trace_file(&self) -> Option<(&dyn Console, &'static str)> {
        None
    }
}

/// Where a board gets the stacks of the CPUs it starts: guarded kernel stacks, registered so
/// that fault reports name them (`cpu1 idle`, `cpu1 #DF`…).
pub trait StackSource {
    /// A new stack of at least `bytes` for CPU `cpu`, used for `purpose`; its address range
    /// (the top is 16-byte aligned). `None` when memory is exhausted.
    fn stack(&self, cpu: usize, purpose: &'static str, bytes: u64)
    -> Option<core::ops::Range<u64>>;
}

/// What a board's interrupt and time bring-up hands the runtime.
#[derive(Clone, Copy)]
#[expect(missing_debug_implementations, reason = "holds trait objects")]
pub struct TimeAndIrq {
    /// The monotonic clock.
    pub clock: &'static dyn crate::Clock,
    /// This CPU's one-shot timer.
    pub timer: &'static dyn crate::OneShotTimer,
    /// The interrupt controller.
    pub controller: &'static dyn crate::InterruptController,
    /// The vector the timer raises.
    pub timer_vector: u8,
    /// How many cycle-counter ticks make a second.
    pub cycles_per_second: u64,
}
