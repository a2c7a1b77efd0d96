//! # `rhea` — layer 4: the runtime, and the API apps are written against
//!
//! An app is an ordinary `#![no_std]` binary crate that depends on `rhea`, names its entry
//! with [`main!`], and may use `alloc`. It never names a board: `cargo xtask build --board B
//! --app A` selects the board crate, which this crate links in (see `boards.rs`).
//!
//! This crate owns [the boot sequence](boot) — one top-down function from the board's entry to
//! the app's `main` — and the reports of everything that can end a run badly ([`fault`]):
//! CPU exceptions, stack overflows and panics each print what happened, where (with symbols),
//! the registers, the CPU and the thread, and end the machine with a failure status.
//!
//! Depends on every lower layer (`hal`, `arch`, `mm`, `symtab`) and on exactly one board.
//! Hardware-free: no `cfg(target_arch)` here.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod boot;
pub mod console;
pub mod devices;
pub mod entropy;
mod fault;
pub mod fs;
pub mod irq;
mod kthread;
mod memory;
pub mod pools;
mod selected;
pub mod smp;
pub mod sync;
pub mod thread;
pub mod time;
pub mod trace;

pub use kthread::{SpawnError, checker_runs};
pub use memory::{
    MemoryError, MemoryStats, StackUsage, stack_usage, stack_usage_here, stats as memory_stats,
};

pub use rhea_hal::ExitStatus;

/// Fault triggers for the fault test apps (exceptions safe Rust cannot raise by itself).
pub mod testing {
    pub use rhea_arch::testing::{divide_by_zero, simd_load_spin_check, undefined_instruction};
}

/// What an app's `main` returns, turned into how the run ends.
pub trait Termination {
    /// Reports the outcome, printing an error if there is one.
    fn report(self) -> ExitStatus;
}

impl Termination for () {
    fn report(self) -> ExitStatus {
        ExitStatus::Success
    }
}

impl Termination for ExitStatus {
    fn report(self) -> ExitStatus {
        self
    }
}

impl<E: core::fmt::Debug> Termination for Result<(), E> {
    fn report(self) -> ExitStatus {
        match self {
            Ok(()) => ExitStatus::Success,
            Err(e) => {
                println!("rhea: app main returned an error: {e:?}");
                ExitStatus::Failure
            }
        }
    }
}

/// The whole kernel command line (empty before boot checked it).
pub fn cmdline() -> &'static str {
    boot::CMDLINE.get().map_or("", |c| c.as_str())
}

/// The value of the last `key=value` argument of the kernel command line (a later argument
/// overrides an earlier one, as `rhea_hal::cmdline` documents). Boot has already refused any
/// unknown or invalid `rhea.*` argument; an app checks the values of its own keys.
pub fn cmdline_value(key: &str) -> Option<&'static str> {
    boot::CMDLINE.get()?.value(key)
}

/// Ends the run now with `status`, from anywhere.
pub fn exit(status: ExitStatus) -> ! {
    boot::exit(status)
}

/// Resets the machine: a new boot of the same image with the same command line (QEMU and
/// PCs: the reset register, else a triple fault; Arm: PSCI `SYSTEM_RESET`; Xen x86:
/// `SCHEDOP_shutdown(reboot)`; LinuxU: the process runs itself again). Returns only where
/// the board has no way to, with why.
pub fn reboot() -> &'static str {
    println!("rhea: rebooting");
    rhea_hal::Platform::reboot(selected::platform())
}

/// Names the app's entry function: `rhea::main!(main);` where `main` is `fn() -> T` and
/// `T: Termination` (`()`, `ExitStatus` or `Result<(), E: Debug>`).
///
/// `rhea::main!(main, heap_kib = N);` also declares that the app needs a kernel heap of at
/// least N KiB: boot gives it that much (plus headroom where RAM allows) or refuses to start,
/// saying how much memory is missing (`rhea.heap_kib` on the command line overrides it).
/// `rhea::main!(main, heap_kib = N, stack_kib = S);` also sizes the main thread's stack
/// (default 256 KiB, at least 16 KiB; a small machine keeps the difference); an overflow
/// hits its guard page and is reported as a fault.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        $crate::main!($main, heap_kib = 0, stack_kib = 0);
    };
    ($main:path, heap_kib = $kib:expr) => {
        $crate::main!($main, heap_kib = $kib, stack_kib = 0);
    };
    ($main:path, heap_kib = $kib:expr, stack_kib = $stack:expr) => {
        /// The app entry the runtime calls (see `rhea::main!`).
        #[unsafe(no_mangle)]
        fn __rhea_app_main() -> $crate::ExitStatus {
            $crate::Termination::report($main())
        }
        /// The heap the app needs, in KiB (0: none declared), read by the runtime at boot.
        #[unsafe(no_mangle)]
        static __rhea_app_heap_kib: u32 = $kib;
        /// The app's main stack, in KiB (0: the default), read by the runtime at boot.
        #[unsafe(no_mangle)]
        static __rhea_app_stack_kib: u32 = $stack;
        /// The image's function names for fault reports: the file xtask names in
        /// `RHEA_SYMTAB` (see `rhea-symtab`), in the section the linker script places after
        /// `.data`. Here, not in the runtime, so a new table recompiles only this crate.
        #[unsafe(link_section = ".rhea_symtab")]
        #[used]
        static __RHEA_SYMTAB_BYTES: [u8; include_bytes!(env!(
            "RHEA_SYMTAB",
            "build Rhea apps with `cargo xtask build` (it sets RHEA_SYMTAB)"
        ))
        .len()] = *include_bytes!(env!(
            "RHEA_SYMTAB",
            "build Rhea apps with `cargo xtask build` (it sets RHEA_SYMTAB)"
        ));
        /// The table, as the runtime reads it.
        #[unsafe(no_mangle)]
        static __rhea_symtab: &[u8] = &__RHEA_SYMTAB_BYTES;
    };
}
