//! Reports of everything that ends a run badly: CPU exceptions (with stack overflows told
//! apart), and panics. Each report names what happened, where (PC with symbol), the faulting
//! address, the CPU and thread, the registers and a backtrace, then ends the machine with a
//! failure status.
//!
//! The report takes no locks (the fault may have interrupted a lock holder) and allocates
//! nothing (the heap may be what broke). A fault during a report ends the run at once.

use crate::console::raw_writer;
use crate::memory;
use crate::selected::{A, Arch};
use core::fmt::Write;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea_hal::arch::{Fault as _, Registers as ArchRegisters};
use rhea_hal::{ExitStatus, Platform};

static REPORTING: AtomicBool = AtomicBool::new(false);
/// What the architecture calls the program counter (`rip`, `pc`), for "at <pc> <symbol>".
const PC: &str = <<A as Arch>::Registers as ArchRegisters>::PC_NAME;
static BOOT_STACK_START: AtomicU64 = AtomicU64::new(0);
static BOOT_STACK_END: AtomicU64 = AtomicU64::new(0);

pub(crate) fn set_boot_stack(r: Range<u64>) {
    BOOT_STACK_START.store(r.start, Ordering::Relaxed);
    BOOT_STACK_END.store(r.end, Ordering::Relaxed);
}

fn boot_stack() -> Range<u64> {
    BOOT_STACK_START.load(Ordering::Relaxed)..BOOT_STACK_END.load(Ordering::Relaxed)
}

/// The thread owning the stack that `sp` points into, and that stack's range.
fn thread_at(sp: u64) -> (&'static str, Option<Range<u64>>, Option<memory::StackInfo>) {
    if let Some(s) = memory::stack_at(sp) {
        return ("", Some(s.range()), Some(s));
    }
    if boot_stack().contains(&sp) {
        return ("idle", Some(boot_stack()), None);
    }
    ("unknown", None, None)
}

/// Where the CPU was running: a thread, or an interrupt handler on the stack of the thread it
/// interrupted (handlers run there, so the stack alone would name that thread).
struct Context<'a> {
    thread: &'a str,
    /// The vector being handled, if in interrupt context.
    irq: Option<u8>,
}

impl Context<'_> {
    fn now(thread: &str) -> Context<'_> {
        Context {
            thread,
            irq: crate::kthread::interrupt_context(),
        }
    }
}

impl core::fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Some(vector) = self.irq else {
            return write!(f, "in thread '{}'", self.thread);
        };
        write!(f, "in interrupt context (vector {vector:#04x}")?;
        if let Some(line) = crate::irq::line_of(vector) {
            write!(f, ", IRQ line {}", line.0)?;
        }
        write!(f, ") that interrupted thread '{}'", self.thread)
    }
}

/// Enters the report, or ends the run at once if a report is already in progress.
fn begin() {
    if REPORTING.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            raw_writer(),
            "\n!!! fault while reporting a fault; stopping"
        );
        crate::selected::platform().exit(ExitStatus::Failure);
    }
}

struct Sym(u64);

impl core::fmt::Display for Sym {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)?;
        match rhea_symtab::lookup_in(crate::boot::symtab(), self.0) {
            Some(s) => write!(f, " <{}+{:#x}>", s.name, s.offset),
            None => Ok(()),
        }
    }
}

fn write_backtrace(w: &mut impl Write, fp: u64, stack: Option<Range<u64>>) {
    let _ = writeln!(w, "    backtrace:");
    let Some(range) = stack else {
        let _ = writeln!(w, "      (frame pointer outside every known stack)");
        return;
    };
    // Runs of the same frame (deep recursion) are printed once with a count.
    let (mut last, mut repeats) = (0u64, 0u32);
    let flush = |w: &mut dyn Write, repeats: u32| {
        if repeats > 1 {
            let _ = writeln!(w, "      ... the frame above {} more times", repeats - 1);
        }
    };
    rhea_arch::backtrace(fp, range, |ret| {
        // Return addresses point after the call; `- 1` symbolises the call itself.
        let pc = ret.wrapping_sub(1);
        if pc == last {
            repeats += 1;
            return;
        }
        flush(w, repeats);
        let _ = writeln!(w, "      {}", Sym(pc));
        (last, repeats) = (pc, 1);
    });
    flush(w, repeats);
}

/// The architecture's fatal-exception hook.
pub(crate) fn on_fault(fault: &<A as Arch>::Fault<'_>) -> ! {
    begin();
    let w = &mut raw_writer();
    let (name, stack, info) = thread_at(fault.stack_pointer());
    let thread = info.as_ref().map_or(name, |s| s.name());
    let ctx = Context::now(thread);
    let cpu = A::cpu_id();
    let in_guard = |a: u64| {
        memory::stack_at(a)
            .filter(|s| s.guard_contains(a))
            .map(|s| (a, s))
    };
    // The fault address names the guard page. Where it reads 0 (CR2 is 0 in x86 guests of Xen
    // under QEMU TCG's nested SVM), the stack pointer does when it, or the slot a push below
    // it would write, is inside a guard page.
    let sp = fault.stack_pointer();
    let overflow = fault.address().and_then(|a| {
        in_guard(a).or_else(|| {
            (a == 0)
                .then(|| in_guard(sp).or_else(|| in_guard(sp.wrapping_sub(8))))
                .flatten()
        })
    });
    let _ = writeln!(w);
    match &overflow {
        Some((addr, s)) => {
            let _ = writeln!(
                w,
                "!!! KERNEL FAULT on {cpu} {ctx}: kernel stack overflow (guard page hit at {addr:#x}, below the {} KiB stack of thread '{}')",
                (s.range().end - s.range().start) >> 10,
                s.name()
            );
            let _ = writeln!(w, "    caught as: {}", fault.name());
        }
        None => {
            let _ = writeln!(w, "!!! KERNEL FAULT on {cpu} {ctx}: {}", fault.name());
        }
    }
    if let Some(detail) = fault.detail() {
        let _ = writeln!(w, "    cause: {detail}");
    }
    if fault.is_pc_valid() {
        let _ = writeln!(w, "    at {PC} {}", Sym(fault.pc()));
    } else {
        let _ = writeln!(
            w,
            "    at {PC} {} (undefined for this exception)",
            Sym(fault.pc())
        );
    }
    if let Some(addr) = fault.address() {
        let _ = writeln!(w, "    fault address {addr:#x}");
    }
    let _ = writeln!(w, "    registers:\n{fault}");
    // A stack overflow's frame pointer lies in the guard; walk from the last valid frame.
    write_backtrace(w, fault.frame_pointer(), stack);
    let _ = writeln!(w, "rhea: fatal fault, exiting with failure");
    crate::selected::platform().exit(ExitStatus::Failure)
}

#[panic_handler]
fn on_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let regs = <<A as Arch>::Registers as ArchRegisters>::capture();
    begin();
    let w = &mut raw_writer();
    let (name, stack, stack_info) = thread_at(regs.stack_pointer());
    let thread = stack_info.as_ref().map_or(name, |s| s.name());
    let _ = writeln!(w);
    let _ = write!(
        w,
        "!!! KERNEL PANIC on {} {}: panicked at ",
        A::cpu_id(),
        Context::now(thread)
    );
    match info.location() {
        Some(l) => {
            let _ = writeln!(w, "{}:{}:{}:", l.file(), l.line(), l.column());
        }
        None => {
            let _ = writeln!(w, "an unknown location:");
        }
    }
    let _ = writeln!(w, "    {}", info.message());
    let _ = writeln!(w, "    at {PC} {}", Sym(regs.pc()));
    let _ = writeln!(w, "    registers:\n{regs}");
    write_backtrace(w, regs.frame_pointer(), stack);
    let _ = writeln!(w, "rhea: panic, exiting with failure");
    crate::selected::platform().exit(ExitStatus::Failure)
}
