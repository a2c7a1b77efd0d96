//! The boot sequence: one top-down path from the board's entry code to the app's `main`.
//!
//! Each stage returns a value that proves it ran and that the next stage needs, instead of
//! setting global "initialised" flags.

use crate::boards::board;
use crate::{fault, memory, println};
use rhea_hal::{ExitStatus, Platform};

/// Size of the app's main stack (guard pages below it).
const MAIN_STACK_BYTES: u64 = 256 << 10;

#[allow(
    unsafe_code,
    reason = "the app entry is bound by symbol name, like C's main"
)]
unsafe extern "Rust" {
    /// Defined by the app through `rhea::main!`.
    safe fn __rhea_app_main() -> ExitStatus;
}

/// The kernel's entry from every board's assembly: one machine-word argument, whose meaning
/// the board defines (the `hvm_start_info` address for PVH boards).
#[allow(unsafe_code, reason = "the boards' entry code calls this by name")]
#[unsafe(no_mangle)]
extern "C" fn rhea_entry(boot_arg: usize) -> ! {
    // 1. Faults: from here on every exception is reported, not silent.
    rhea_arch::set_fault_handler(fault::on_fault);
    fault::set_boot_stack(board::boot_stack());

    // 2. Board: console, descriptor tables, the validated memory map.
    let boot = board::early_init(boot_arg);
    let features = rhea_arch::features::report();
    println!(
        "rhea: booting on {} ({})",
        board::PLATFORM.name(),
        rhea_arch::cpu_id()
    );
    println!("rhea: cpu: {features}");
    if !boot.cmdline.is_empty() {
        println!("rhea: command line: {}", boot.cmdline);
    }
    for r in boot.memory_map.regions() {
        println!(
            "rhea: memory {:#014x}-{:#014x} {:?}",
            r.start.as_u64(),
            r.end().as_u64(),
            r.kind
        );
    }

    // 3. Memory: frames, kernel page tables (W^X, page 0 unmapped), heap.
    let mem = match memory::init(&boot) {
        Ok(m) => m,
        Err(e) => panic!("memory bring-up failed: {e}"),
    };
    println!(
        "rhea: memory: {} KiB usable, {} KiB heap, {} KiB free frames, {} symbols",
        mem.usable_bytes >> 10,
        mem.heap_bytes >> 10,
        mem.free_bytes >> 10,
        rhea_symtab::len()
    );

    // 4. The app's main thread, on a guarded stack.
    let stack = match memory::new_stack("main", MAIN_STACK_BYTES) {
        Ok(s) => s,
        Err(e) => panic!("cannot map the main stack: {e}"),
    };
    let cycles = rhea_arch::read_cycle_counter().wrapping_sub(boot.boot_cycles);
    match features.tsc_hz {
        Some((hz, _)) => println!(
            "rhea: boot entry->main {cycles} cycles, {} ns",
            u128::from(cycles) * 1_000_000_000 / u128::from(hz)
        ),
        None => println!("rhea: boot entry->main {cycles} cycles, unknown ns"),
    }
    // SAFETY: `stack.top` is the 16-byte-aligned top of a stack just mapped for this purpose.
    #[allow(unsafe_code, reason = "switching to the main thread's stack")]
    unsafe {
        rhea_arch::run_on_stack(stack.range().end, main_thread, 0)
    }
}

extern "C" fn main_thread(_: usize) -> ! {
    println!("rhea: app main");
    let status = __rhea_app_main();
    println!("rhea: app main returned ({status:?})");
    exit(status)
}

/// Ends the run.
pub(crate) fn exit(status: ExitStatus) -> ! {
    board::PLATFORM.exit(status)
}
