//! The boot sequence: one top-down path from the board's entry code to the app's `main`.
//!
//! Each stage returns a value that proves it ran and that the next stage needs, instead of
//! setting global "initialised" flags.

use crate::selected::B;
use crate::selected::{A, Arch as _};
use crate::{fault, irq, kthread, memory, println, time};
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_hal::Board as _;
use rhea_hal::Priority;
use rhea_hal::cmdline::{Cmdline, keys};
use rhea_hal::{ExitStatus, Platform};

/// Size of the app's main stack (guard pages below it) when the app declares none.
const DEFAULT_MAIN_STACK_BYTES: u64 = 256 << 10;
/// The smallest main stack an app may declare: boot's own calls into the app run on it.
const MIN_MAIN_STACK_BYTES: u64 = 16 << 10;

/// The app's main stack: its `rhea::main!` `stack_kib` (at least 16 KiB, at most what a stack
/// slot maps, so boot's memory reserve counts what is mapped), else 256 KiB.
pub(crate) fn main_stack_bytes() -> u64 {
    match __rhea_app_stack_kib {
        0 => DEFAULT_MAIN_STACK_BYTES,
        kib => (u64::from(kib) << 10).clamp(MIN_MAIN_STACK_BYTES, memory::MAX_STACK_BYTES),
    }
}

#[allow(
    unsafe_code,
    reason = "the app entry is bound by symbol name, like C's main"
)]
unsafe extern "Rust" {
    /// Defined by the app through `rhea::main!`.
    safe fn __rhea_app_main() -> ExitStatus;
    /// The app's declared heap need in KiB (0: none), defined by `rhea::main!`.
    safe static __rhea_app_heap_kib: u32;
    /// The app's declared main stack in KiB (0: the default), defined by `rhea::main!`.
    safe static __rhea_app_stack_kib: u32;
    /// The image's function symbol table (`rhea-symtab`'s format; empty when built without
    /// one), defined by `rhea::main!`.
    safe static __rhea_symtab: &'static [u8];
}

/// The image's symbol table, hidden from the optimiser: were its (possibly empty) contents
/// visible, the first link would drop the lookup code, the second would keep it, and functions
/// would move between the two, costing xtask an extra link to reach its fixed point.
pub(crate) fn symtab() -> &'static [u8] {
    core::hint::black_box(__rhea_symtab)
}

/// The kernel's entry from every board's assembly: one machine-word argument, whose meaning
/// the board defines (the `hvm_start_info` address for PVH boards).
#[allow(unsafe_code, reason = "the boards' entry code calls this by name")]
#[unsafe(no_mangle)]
extern "C" fn rhea_entry(boot_arg: usize) -> ! {
    // 1. Faults: from here on every exception is reported, not silent.
    A::set_fault_handler(fault::on_fault);
    fault::set_boot_stack(B::boot_stack());

    // 2. Board: console, descriptor tables, the validated memory map.
    let boot = B::early_init(boot_arg);
    let features = A::features();
    println!(
        "rhea: booting on {} ({})",
        crate::selected::platform().name(),
        A::cpu_id()
    );
    println!("rhea: cpu: {features}");
    match crate::entropy::source() {
        Some(src) => println!("rhea: entropy: {src}"),
        None => println!(
            "rhea: entropy: NONE: {}; nothing that needs keys (ssh) will start",
            crate::entropy::NoEntropy
        ),
    }
    if !boot.cmdline.is_empty() {
        println!("rhea: command line: {}", boot.cmdline);
    }
    // The command line, strictly (`rhea_hal::cmdline`): an unknown `rhea.*` key or a bad value
    // ends the run here, before anything uses it — never a default in its place. The board may
    // have read a key during early init; a bad one it skipped is refused here all the same.
    match rhea_hal::cmdline::parse(boot.cmdline) {
        Ok(c) => {
            CMDLINE.call_once(|| c);
        }
        Err(e) => {
            println!("rhea: invalid command line: {e}");
            println!("rhea: refusing to boot with an invalid command line, exiting with failure");
            exit(ExitStatus::Failure);
        }
    }
    for r in boot.memory_map.regions() {
        println!(
            "rhea: memory {:#014x}-{:#014x} {:?}",
            r.start.as_u64(),
            r.end().as_u64(),
            r.kind
        );
    }

    // 3. Memory: frames, kernel page tables (W^X, page 0 unmapped), heap sized from what is
    //    asked (`memory::init`). Too little RAM for it is a plain message, not a panic.
    let mem = match memory::init(&boot, heap_need(), main_stack_bytes()) {
        Ok(m) => m,
        Err(
            e @ (memory::MemoryError::TooSmall { .. } | memory::MemoryError::Fragmented { .. }),
        ) => {
            println!("rhea: {e}");
            println!(
                "rhea: refusing to boot without the memory the app needs, exiting with failure"
            );
            exit(ExitStatus::Failure);
        }
        Err(e) => panic!("memory bring-up failed: {e}"),
    };
    if let Some((at, len)) = boot.initrd {
        // Reserved for good by `memory::init`; `rhea::fs` mounts it at `/` on first use.
        println!("rhea: initrd: {len} bytes at {:#x}", at.as_u64());
        crate::fs::set_initrd(at.as_u64(), len);
    }
    let [text, rodata, data] = mem.image;
    println!(
        "rhea: memory: {} KiB usable, {} KiB heap, {} KiB free frames, {} symbols",
        mem.usable_bytes >> 10,
        mem.heap_bytes >> 10,
        mem.free_bytes >> 10,
        rhea_symtab::count_in(symtab())
    );
    println!(
        "rhea: memory at boot (KiB): image {} (text {} rodata {} data+bss {}) reserved {} \
         bitmap {} page-tables {} heap {} (need {} from {}) free {}",
        (text + rodata + data) >> 10,
        text >> 10,
        rodata >> 10,
        data >> 10,
        mem.reserved_bytes >> 10,
        mem.bitmap_bytes.div_ceil(1024),
        mem.page_table_bytes >> 10,
        mem.heap_bytes >> 10,
        mem.heap_need.bytes.div_ceil(1024),
        mem.heap_need.source.describe(),
        mem.free_bytes >> 10
    );

    // 4. Interrupts and time: the board's controllers, the calibrated clock, the one-shot timer.
    let cross_check = flag(&keys::TSC_CHECK);
    let it = B::init_interrupts_and_time(&boot, cross_check, &|phys, len| {
        memory::map_mmio(phys, len).is_ok()
    });
    let it = match it {
        Ok(it) => it,
        Err(e) => panic!("interrupt and time bring-up failed: {e}"),
    };
    time::install(it.clock, it.timer, it.cycles_per_second);
    if let Some(us) = CMDLINE
        .get()
        .and_then(|c| checked(c.number(&keys::TIMER_ADVANCE_US)))
    {
        time::set_max_advance_us(us);
    }
    irq::init(it.controller, it.timer_vector);

    // 5. Scheduler: this boot context becomes CPU 0's idle thread; the app's main thread is
    //    spawned on a guarded stack and, being more important than idle, runs at once.
    match A::init_fpu() {
        Ok(m) => println!("rhea: fpu: {m}"),
        Err(e) => panic!("cannot enable FPU state switching: {e:?}"),
    }
    let checker = flag(&keys::CHECKER);
    let ncpus = crate::selected::platform()
        .cpu_count()
        .clamp(1, rhea_sched::MAX_CPUS);
    init_trace(ncpus);
    irq::init_counts(ncpus);
    kthread::init(B::boot_stack(), checker, ncpus);
    if ncpus > 1 {
        let online =
            crate::selected::platform().start_secondary_cpus(secondary_main, &memory::CpuStacks);
        println!("rhea: smp: {online} of {ncpus} CPUs online");
    }
    BOOT_CYCLES.store(boot.boot_cycles, Ordering::Relaxed);
    TSC_HZ.store(it.cycles_per_second, Ordering::Relaxed);
    // Console input's bottom-half thread starts (and blocks) before the app does.
    if let Err(e) = crate::console::init_input() {
        println!("rhea: console input unavailable: {e}");
    }
    // Devices: the board's buses enumerated, their devices bound to drivers.
    crate::devices::init();
    let spawned = crate::thread::Builder::new()
        .name("main")
        .priority(Priority::NORMAL)
        .stack_size(main_stack_bytes())
        .spawn(main_thread);
    match spawned {
        // The main thread is never joined: dropping its handle detaches it.
        Ok(handle) => drop(handle),
        // Out of frames for its stack: too little RAM, said plainly (not a panic).
        Err(e) => {
            println!(
                "rhea: not enough memory: cannot start the main thread ({} KiB stack): {e}; \
                 {} KiB of frames free",
                main_stack_bytes() >> 10,
                memory::stats().free_frame_bytes >> 10
            );
            println!(
                "rhea: refusing to boot without the memory the app needs, exiting with failure"
            );
            exit(ExitStatus::Failure);
        }
    }

    // 6. Idle: wait for interrupts. Whatever an interrupt makes ready preempts this loop from
    //    the interrupt exit path.
    loop {
        A::wait_for_interrupt();
    }
}

/// The command line, checked by [`rhea_hal::cmdline::parse`] (set in stage 2).
pub(crate) static CMDLINE: rhea_sync::Once<Cmdline<'static>> = rhea_sync::Once::new();

/// The heap asked for: `rhea.heap_kib` (exact), else the app's `rhea::main!` declaration,
/// else the runtime's own minimum (see `memory::init`).
fn heap_need() -> memory::HeapNeed {
    use memory::{HeapNeed, HeapSource};
    let cmdline = CMDLINE
        .get()
        .and_then(|c| checked(c.number(&keys::HEAP_KIB)));
    match (cmdline, __rhea_app_heap_kib) {
        (Some(kib), _) => HeapNeed {
            bytes: kib << 10,
            source: HeapSource::Cmdline,
        },
        (None, 0) => HeapNeed {
            bytes: memory::RUNTIME_HEAP_NEED,
            source: HeapSource::Runtime,
        },
        (None, kib) => HeapNeed {
            bytes: u64::from(kib) << 10,
            source: HeapSource::App,
        },
    }
}

/// Sets event tracing up when `rhea.trace` is given (its categories, `rhea.trace_mode`,
/// `rhea.trace_kib`): the buffers are allocated now, before the first thread exists.
fn init_trace(ncpus: usize) {
    let Some(c) = CMDLINE.get() else { return };
    let Some(words) = checked(c.set(&keys::TRACE)) else {
        return;
    };
    // The key's words: sched, irq, net, app (the categories' bits, in order), all, off.
    let mask = match words {
        w if w & 1 << 5 != 0 => 0,
        w if w & 1 << 4 != 0 => rhea_trace::ALL,
        w => (w & u64::from(rhea_trace::ALL)) as u32,
    };
    let mode = match checked(c.choice(&keys::TRACE_MODE)) {
        Some("full") => crate::trace::Mode::UntilFull,
        Some("freeze") => crate::trace::Mode::Freeze,
        _ => crate::trace::Mode::Ring,
    };
    let kib = checked(c.number(&keys::TRACE_KIB)).unwrap_or(crate::trace::DEFAULT_KIB);
    crate::trace::init(mask, mode, kib, ncpus);
}

/// A flag of the checked command line (`false` before stage 2 or when absent).
fn flag(key: &'static rhea_hal::cmdline::Key) -> bool {
    CMDLINE.get().is_some_and(|c| checked(c.flag(key)))
}

/// A value of the checked command line. `Result::expect` would link the error's `Debug` (and
/// the string escaping under it) for a panic that cannot happen.
fn checked<T>(value: Result<T, rhea_hal::cmdline::CmdlineError>) -> T {
    match value {
        Ok(v) => v,
        Err(_) => panic!("stage 2 checked every rhea.* argument of the command line"),
    }
}

/// A secondary CPU's first kernel code, once its board-level per-CPU state is set up: it joins
/// the scheduler with this context as its idle thread, then idles.
extern "C" fn secondary_main(cpu: usize) -> ! {
    if let Err(e) = A::init_fpu() {
        panic!("cpu{cpu}: cannot enable FPU state switching: {e:?}");
    }
    kthread::add_cpu(cpu);
    loop {
        A::wait_for_interrupt();
    }
}

/// Cycle counter at the board's first instruction, and the TSC rate, for the boot report.
static BOOT_CYCLES: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

fn main_thread() {
    let cycles = A::read_cycle_counter().wrapping_sub(BOOT_CYCLES.load(Ordering::Relaxed));
    let (bytes, console_cycles) = crate::console::output_cost();
    match TSC_HZ.load(Ordering::Relaxed) {
        0 => println!(
            "rhea: boot entry->main {cycles} cycles, unknown ns; console {bytes} bytes, {console_cycles} cycles"
        ),
        hz => {
            // Printed as u64 (584 years of ns): u128's formatting is 1 KiB of code.
            let to_ns = |c: u64| {
                u64::try_from(u128::from(c) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX)
            };
            println!(
                "rhea: boot entry->main {cycles} cycles, {} ns; console {bytes} bytes, {} ns",
                to_ns(cycles),
                to_ns(console_cycles)
            );
        }
    }
    let m = memory::stats();
    println!(
        "rhea: memory at main (KiB): heap used {} free {}, stacks {} ({} KiB), frames free {}",
        m.heap_used_bytes.div_ceil(1024),
        m.heap_free_bytes >> 10,
        m.stacks,
        m.stack_bytes >> 10,
        m.free_frame_bytes >> 10
    );
    println!("rhea: app main");
    let status = __rhea_app_main();
    println!("rhea: app main returned ({status:?})");
    if let (true, checks) = kthread::checker_runs() {
        println!("rhea: scheduler checker: {checks} decisions checked, no violation");
    }
    report_steal();
    let traced = CMDLINE
        .get()
        .is_some_and(|c| checked(c.set(&keys::TRACE)).is_some());
    if traced {
        let to_file = CMDLINE
            .get()
            .is_some_and(|c| checked(c.choice(&keys::TRACE_TO)) == Some("file"));
        match to_file.then(|| crate::selected::platform().trace_file()) {
            Some(Some((file, name))) => {
                crate::trace::dump_to(|line| file.write_bytes(line.as_bytes()));
                println!("rhea: trace: dump written to {name}");
            }
            Some(None) => {
                println!("rhea: trace: this board has no file for the dump: on the console");
                crate::trace::dump();
            }
            None => crate::trace::dump(),
        }
        let c = crate::trace::counts();
        let sum = |f: fn(&crate::trace::Counts) -> u64| c.iter().map(f).sum::<u64>();
        println!(
            "rhea: trace: dumped {} events from {} CPUs ({} dropped, {} overwritten)",
            sum(|c| c.held),
            c.len(),
            sum(|c| c.dropped),
            sum(|c| c.overwritten)
        );
    }
    if flag(&keys::SIM) || traced {
        let (switches, hash) = kthread::trace();
        println!(
            "rhea: trace: {switches} switches, hash {hash:#018x}, clock {} ns",
            time::now().as_nanos()
        );
    }
    exit(status)
}

/// Prints each online CPU's steal time where the machine keeps it (a hypervisor that counts
/// it): `rhea: steal time: cpu0 N us, cpu1 M us`. Nothing elsewhere.
fn report_steal() {
    let online = crate::thread::online_cpus();
    if online.iter().all(|cpu| kthread::stolen_ns(cpu).is_none()) {
        return;
    }
    crate::print!("rhea: steal time:");
    for (i, cpu) in online.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        match kthread::stolen_ns(cpu) {
            Some(ns) => crate::print!("{sep} cpu{cpu} {} us", ns / 1000),
            None => crate::print!("{sep} cpu{cpu} not reported"),
        }
    }
    println!();
}

/// Ends the run.
pub(crate) fn exit(status: ExitStatus) -> ! {
    crate::selected::platform().exit(status)
}
