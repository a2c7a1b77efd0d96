//! x86_64 (Intel SDM / AMD APM long mode).

pub mod context;
mod fault;
mod features_impl;
mod gdt;
pub mod paging;
pub mod percpu;
mod random;
mod regs;
pub mod testing;
mod trap;

pub use fault::Fault;
pub use regs::Registers;

/// The CPU feature report printed at boot (`raw-cpuid`).
pub mod features {
    pub use super::features_impl::{Features, report};
}

use rhea_hal::CpuId;
use rhea_hal::arch::Arch;

/// The x86_64 architecture (bare metal, ring 0), as the runtime sees it.
#[derive(Debug)]
pub enum X86_64 {}

impl Arch for X86_64 {
    crate::common::arch_common_items!(fault);

    /// `pushf; cli … popf` costs as much as a `lock cmpxchg` on hardware, and under TCG each
    /// end of a translation block; a compare-and-swap is atomic against this CPU's interrupts
    /// anyway.
    const CHEAP_IRQ_MASK: bool = false;
    /// x86 has no broadcast TLB invalidation.
    const TLB_SHOOTDOWN_NEEDED: bool = true;

    #[inline]
    fn irq_save() -> bool {
        let was = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        was
    }

    #[inline]
    fn irq_restore(was_enabled: bool) {
        if was_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }

    #[inline]
    fn irq_enable() {
        x86_64::instructions::interrupts::enable();
    }

    #[inline]
    fn irq_enabled() -> bool {
        x86_64::instructions::interrupts::are_enabled()
    }

    /// `sti; hlt`: the interrupt shadow of STI means no interrupt can slip in between.
    #[inline]
    fn wait_for_interrupt() {
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }

    /// Toggles `CR4.PGE` (SDM Vol. 3A §4.10.4.1) so global pages go too.
    fn flush_tlb_all() {
        use x86_64::registers::control::{Cr4, Cr4Flags};
        let cr4 = Cr4::read();
        if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
            // SAFETY: clearing and restoring PGE changes no mapping; it only invalidates the
            // TLB.
            unsafe {
                Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
                Cr4::write(cr4);
            }
        } else {
            x86_64::instructions::tlb::flush_all();
        }
    }
}

/// Loads this CPU's GDT (with a TSS whose IST stacks take double faults, NMIs, machine checks
/// and page faults) and IDT (every exception vector, every interrupt vector), and sets the
/// control-register policy: `CR0.WP` so read-only pages bind ring 0 too.
///
/// Call once, on the boot CPU, before anything can fault. Interrupts stay disabled.
pub fn init_boot_cpu() {
    gdt::load_boot_cpu();
    trap::load_idt();
    // SAFETY: setting WP only makes the kernel obey read-only mappings; nothing relies on
    // writing through them (the page tables we build map writable data writable).
    unsafe {
        use x86_64::registers::control::{Cr0, Cr0Flags};
        Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT));
    }
}

/// The current CPU: its logical index, from its per-CPU block ([`percpu`]).
#[inline]
pub fn cpu_id() -> CpuId {
    CpuId(percpu::current() as u32)
}

/// Sets up an application processor's own descriptor tables: its GDT and TSS with
/// `ist_tops` as the tops of its IST stacks (double fault, NMI, machine check, page fault),
/// the shared IDT, and the control-register policy of [`init_boot_cpu`]. Call once on CPU
/// `cpu` itself, interrupts disabled, GS already pointing at its block.
pub fn init_secondary_cpu(cpu: usize, ist_tops: [u64; 4]) {
    gdt::load(cpu, ist_tops);
    trap::load_idt();
    // SAFETY: as in `init_boot_cpu`.
    unsafe {
        use x86_64::registers::control::{Cr0, Cr0Flags};
        Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT));
    }
}

/// The time-stamp counter (SDM Vol. 3B §18.17). Not serialising; good for intervals.
pub fn read_cycle_counter() -> u64 {
    // SAFETY: RDTSC has no side effects and is available in ring 0 on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A full memory fence (the SDM requires one between programming the LAPIC timer for
/// TSC-deadline mode and writing the deadline MSR).
#[inline]
pub fn memory_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    // SAFETY: MFENCE only orders memory accesses.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
}

/// Resets the CPU (and so the machine) by a triple fault: an empty IDT, then a breakpoint
/// whose delivery faults, and that fault's, and that one's.
pub fn triple_fault() -> ! {
    use x86_64::VirtAddr;
    use x86_64::structures::DescriptorTablePointer;
    let empty = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::zero(),
    };
    // SAFETY: loading an empty IDT is the point: the next exception cannot be delivered and
    // the CPU shuts down (a reset on every PC and hypervisor); nothing runs after it.
    unsafe {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::tables::lidt(&empty);
    }
    x86_64::instructions::interrupts::int3();
    halt_forever()
}

/// Stops this CPU for good: interrupts off, then `hlt` in a loop (an NMI would return from
/// `hlt`; the loop takes it back).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Writes one byte to an I/O port.
///
/// # Safety
/// The port and value must be what the device at that port expects; I/O ports can reset,
/// reprogram or power off the machine.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortWriteOnly::new(port).write(value) }
}

/// Reads one byte from an I/O port.
///
/// # Safety
/// Reading some ports has side effects (clearing status, popping FIFOs); the caller owns the
/// device at `port`.
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortReadOnly::new(port).read() }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::instructions::port::PortWriteOnly::new(port).write(value) }
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` exists on this CPU (reading an absent MSR raises #GP) and reading it has no side
/// effect the caller does not own.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` exists on this CPU and `value` is valid for it; MSRs control the CPU itself.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

/// Switches to the stack whose top is `stack_top` and calls `f(arg)` there. `f` must not
/// return (the old stack is abandoned).
///
/// # Safety
/// `stack_top` is 16-byte aligned, the top of a mapped, writable stack that nothing else uses.
pub unsafe fn run_on_stack(stack_top: u64, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    // SAFETY: the caller guarantees the stack; `f` never returns, so nothing after the call
    // runs on the abandoned stack. RBP is cleared so backtraces stop at `f`.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) stack_top,
            f = in(reg) f,
            in("rdi") arg,
            options(noreturn),
        )
    }
}
