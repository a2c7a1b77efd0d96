//! vCPUs as Linux threads (LinuxU SMP): one OS thread per vCPU, made with a raw `clone`, each
//! with its own per-CPU block reached through the GS segment base (user-space GS is free on
//! x86_64 Linux: glibc uses FS), its own signal mask, alternate signal stack and timer.
//! An IPI is `rt_tgsigqueueinfo` to the target vCPU's thread with the vector as the value.

use super::sys::{self, syscall6};
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

/// The most vCPUs (the scheduler's limit).
pub const MAX_VCPUS: usize = 64;

/// One vCPU's block; GS points at it. The first word must stay the vCPU index (read by
/// [`current`] with one `mov`); the interrupt flag and pending summary sit at the fixed offsets
/// [`super::irqflag`] reads and writes with single GS-relative instructions.
#[repr(C)]
pub(super) struct PerCpu {
    index: AtomicU64,
    /// Offset 8: 1 while interrupts are disabled on this vCPU (the software "IF", see
    /// [`super::irqflag`]). Every vCPU starts with interrupts disabled, as a CPU does.
    pub(super) irqs_off: AtomicU8,
    /// Offset 9: 1 when [`Self::pending`] may hold a vector.
    pub(super) pending_any: AtomicU8,
    /// Offset 10: 1 while the interrupt signals are really blocked for this vCPU's OS thread
    /// (inside an interrupt handler until it switches threads, and at boot).
    pub(super) signals_blocked: AtomicU8,
    /// Offset 16: the vectors that arrived while interrupts were disabled (one bit each, 256).
    pub(super) pending: [AtomicU64; 4],
}

static PERCPU: [PerCpu; MAX_VCPUS] = [const {
    PerCpu {
        index: AtomicU64::new(0),
        irqs_off: AtomicU8::new(1),
        pending_any: AtomicU8::new(0),
        signals_blocked: AtomicU8::new(0),
        pending: [const { AtomicU64::new(0) }; 4],
    }
}; MAX_VCPUS];

// The offsets the GS-relative instructions use.
const _: () = {
    assert!(core::mem::offset_of!(PerCpu, index) == 0);
    assert!(core::mem::offset_of!(PerCpu, irqs_off) == super::irqflag::IRQS_OFF);
    assert!(core::mem::offset_of!(PerCpu, pending_any) == super::irqflag::PENDING_ANY);
};

/// The calling vCPU's block. Stable while interrupts are disabled (the calling thread cannot
/// move to another vCPU then); with them enabled, it may describe a vCPU the thread has left.
#[inline]
pub(super) fn this() -> &'static PerCpu {
    &PERCPU[current()]
}
/// Each vCPU's thread id, for IPIs.
static TIDS: [AtomicI32; MAX_VCPUS] = [const { AtomicI32::new(0) }; MAX_VCPUS];

const ARCH_SET_GS: usize = 0x1001;
const ARCH_PRCTL: usize = 158;

/// Makes the calling thread vCPU `cpu`: points GS at its block and records its thread id.
pub fn become_cpu(cpu: usize) {
    let block = &PERCPU[cpu];
    block.index.store(cpu as u64, Ordering::Relaxed);
    TIDS[cpu].store(sys::gettid(), Ordering::Relaxed);
    // SAFETY: sets this thread's GS base to a static that lives for the process; nothing else in
    // the process uses GS.
    unsafe {
        syscall6(
            ARCH_PRCTL,
            [ARCH_SET_GS, block as *const PerCpu as usize, 0, 0, 0, 0],
        )
    };
}

/// The calling vCPU's index.
#[inline]
pub fn current() -> usize {
    let index: u64;
    // SAFETY: every thread that runs kernel code called `become_cpu` first (the boot thread in
    // `main`, vCPU threads before anything else), so GS points at a live `PerCpu` whose first
    // word is the index.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, preserves_flags, readonly))
    };
    index as usize
}

/// The thread id of vCPU `cpu` (0 before it started).
pub fn tid_of(cpu: usize) -> i32 {
    TIDS.get(cpu).map_or(0, |t| t.load(Ordering::Relaxed))
}

/// Raises `vector` on vCPU `cpu` (an IPI): real-time signal 40 with the vector as its value, to that
/// vCPU's thread.
pub fn send_ipi(cpu: usize, vector: u8) {
    let tid = tid_of(cpu);
    if tid != 0 {
        super::signals::queue_vector(tid, vector);
    }
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_clone, "ax"
    .global rhea_clone_thread
    /* rhea_clone_thread(flags [rdi], stack [rsi], entry [rdx], arg [rcx]) -> tid or -errno.
     * The child starts on `stack` and calls entry(arg), which never returns; the parent gets
     * its callee-saved R12/R13 back. */
rhea_clone_thread:
    pushq %r12
    pushq %r13
    movq %rdx, %r12
    movq %rcx, %r13
    movq ${clone}, %rax
    xorl %edx, %edx         /* parent_tid */
    xorl %r10d, %r10d       /* child_tid */
    xorl %r8d, %r8d         /* tls */
    syscall
    testq %rax, %rax
    jnz 1f
    xorl %ebp, %ebp         /* the child: a fresh stack, backtraces end here */
    andq $-16, %rsp
    movq %r13, %rdi
    call *%r12
    ud2
1:  popq %r13
    popq %r12
    ret
    "#,
    clone = const 56,
    options(att_syntax)
);

unsafe extern "C" {
    fn rhea_clone_thread(flags: usize, stack: usize, entry: usize, arg: usize) -> isize;
}

/// Starts a thread of this process on the stack ending at `stack_top`, running `entry(arg)`.
/// Returns its thread id, or the errno.
///
/// # Safety
/// `[stack_top - 64 KiB, stack_top)` is mapped, writable, used by nothing else, and lives as
/// long as the thread.
pub unsafe fn spawn_thread(
    stack_top: u64,
    entry: extern "C" fn(usize) -> !,
    arg: usize,
) -> Result<i32, isize> {
    // CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM: a thread
    // of this process sharing everything, with no TLS of its own (it never runs libc).
    const FLAGS: usize = 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000 | 0x4_0000;
    // SAFETY: the stack is the caller's promise; the child only runs `entry` on it, and the
    // asm keeps the System V contract in the parent (R12/R13 restored).
    let r = unsafe { rhea_clone_thread(FLAGS, stack_top as usize & !15, entry as usize, arg) };
    if r > 0 { Ok(r as i32) } else { Err(r) }
}
