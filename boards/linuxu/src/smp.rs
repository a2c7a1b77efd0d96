//! Secondary vCPUs: one Linux thread each (`rhea_arch::vcpu`), started by the boot vCPU, each
//! setting up its own per-CPU block, alternate signal stack and POSIX timer before entering the
//! kernel. A vCPU that has not started within [`START_TIMEOUT_NS`] is reported and left out.
#![allow(
    unsafe_code,
    reason = "starting threads and calling the entry through a stored pointer; each use has a SAFETY note"
)]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use rhea_arch::{sys, vcpu};

/// How long the boot vCPU waits for each secondary to start.
const START_TIMEOUT_NS: u64 = 1_000_000_000;
/// Each vCPU thread's own stack (its idle context), with an unmapped guard below.
const VCPU_STACK_BYTES: u64 = 256 * 1024;
/// Where vCPU stacks are mapped: 1 MiB slots from 48 GiB.
const VCPU_STACK_BASE: u64 = 0xc_0000_0000;

static ENTRY: AtomicUsize = AtomicUsize::new(0);
static STARTED: [AtomicBool; vcpu::MAX_VCPUS] = [const { AtomicBool::new(false) }; vcpu::MAX_VCPUS];

extern "C" fn vcpu_main(cpu: usize) -> ! {
    vcpu::become_cpu(cpu);
    // Interrupts are disabled (each vCPU starts so); the signals are unblocked.
    rhea_arch::signals::init_vcpu_thread(cpu);
    if let Err(e) = crate::machine::create_timer(cpu) {
        use core::fmt::Write;
        let _ = writeln!(crate::machine::ConsoleWriter, "rhea: smp: cpu{cpu}: {e}");
        sys::exit_group(1);
    }
    STARTED[cpu].store(true, Ordering::Release);
    let entry = ENTRY.load(Ordering::Acquire);
    // SAFETY: `start` stored a valid `extern "C" fn(usize) -> !` before creating any thread.
    let entry: extern "C" fn(usize) -> ! = unsafe { core::mem::transmute(entry) };
    entry(cpu)
}

/// Starts vCPUs `1..n`; returns how many are online (counting the boot vCPU).
pub(crate) fn start(n: usize, entry: extern "C" fn(usize) -> !) -> usize {
    use core::fmt::Write;
    ENTRY.store(entry as usize, Ordering::Release);
    let mut online = 1;
    for (cpu, started) in STARTED.iter().enumerate().take(n).skip(1) {
        let slot = VCPU_STACK_BASE + cpu as u64 * (1 << 20);
        let top = slot + (1 << 20);
        if !sys::map_fixed(top - VCPU_STACK_BYTES, VCPU_STACK_BYTES, true) {
            let _ = writeln!(
                crate::machine::ConsoleWriter,
                "rhea: smp: no stack for cpu{cpu}; continuing without it"
            );
            continue;
        }
        // SAFETY: the stack was just mapped for this thread alone and is never unmapped.
        if let Err(e) = unsafe { vcpu::spawn_thread(top, vcpu_main, cpu) } {
            let _ = writeln!(
                crate::machine::ConsoleWriter,
                "rhea: smp: clone failed for cpu{cpu} (errno {}); continuing without it",
                -e
            );
            continue;
        }
        let start = sys::monotonic_ns();
        while !started.load(Ordering::Acquire) && sys::monotonic_ns() - start < START_TIMEOUT_NS {
            core::hint::spin_loop();
        }
        if started.load(Ordering::Acquire) {
            online += 1;
        } else {
            let _ = writeln!(
                crate::machine::ConsoleWriter,
                "rhea: smp: cpu{cpu} did not start within 1 s; continuing without it"
            );
        }
    }
    online
}
