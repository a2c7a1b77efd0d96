//! Signals as traps and interrupts (LinuxU).
//!
//! - Faults: SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP run on an alternate signal stack (so a
//!   stack overflow into a guard page can still be reported). The handler rebuilds the x86 trap
//!   frame the bare-metal kernel would have from the `ucontext` Linux saved (including the trap
//!   number, error code and CR2 it records) and hands it to the same fault report.
//! - Interrupts: SIGALRM (the per-vCPU POSIX timer) is the timer interrupt, SIGIO (descriptor
//!   readiness) device interrupts, real-time signal 40 with a value a raised vector (and, with SMP, an
//!   IPI). Their handlers run on the interrupted thread's own stack, with all three blocked
//!   (`sa_mask`): interrupts do not nest. A handler may switch threads; the interrupted
//!   context stays in the signal frame on that thread's stack and resumes, FPU state included,
//!   when the thread is switched back in and the handler returns (`rt_sigreturn`).
//! - "Interrupts disabled" is a per-vCPU flag in memory, not a signal mask: a handler that
//!   finds it set records its vector for later ([`super::irqflag`]). The kernel still blocks
//!   the three signals while a handler runs (`sa_mask`), so handlers do not nest.
//! - Idle waits in `pause` inside a restartable sequence ([`suspend`]): a signal that lands
//!   between its pending check and the system call moves the interrupted instruction pointer
//!   past the call, so a vector recorded there is never slept through.

use super::sys::{self, nr, syscall6};
use core::sync::atomic::{AtomicU8, Ordering};

const SIGILL: usize = 4;
const SIGTRAP: usize = 5;
const SIGBUS: usize = 7;
const SIGFPE: usize = 8;
const SIGSEGV: usize = 11;
/// A real-time signal carries vectors (raised vectors, IPIs): real-time signals queue, so two
/// vectors sent before the target handles the first are both delivered (standard signals
/// coalesce). 40 stays clear of glibc's internal 32 and 33.
const SIGVEC: usize = 40;
const SIGALRM: usize = 14;
const SIGIO: usize = 29;

/// The signal the per-vCPU timer raises.
pub const TIMER_SIGNAL: usize = SIGALRM;
/// The signal descriptors raise when ready.
pub const IO_SIGNAL: usize = SIGIO;

const fn bit(sig: usize) -> u64 {
    1 << (sig - 1)
}

/// The signals that are "interrupts".
const IRQ_MASK: u64 = bit(SIGALRM) | bit(SIGIO) | bit(SIGVEC);

const SA_SIGINFO: u64 = 0x4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SIG_BLOCK: usize = 0;
const SIG_UNBLOCK: usize = 1;

/// The kernel's `struct sigaction` for `rt_sigaction` (not libc's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_sigreturn, "ax"
    .global rhea_sigreturn
rhea_sigreturn:
    movq ${nr}, %rax
    syscall
    ud2
    "#,
    nr = const nr::RT_SIGRETURN,
    options(att_syntax)
);

unsafe extern "C" {
    fn rhea_sigreturn();
}

fn install(sig: usize, handler: extern "C" fn(i32, *mut u8, *mut u8), flags: u64, mask: u64) {
    let act = KernelSigaction {
        handler: handler as usize,
        flags: flags | SA_SIGINFO | SA_RESTORER,
        restorer: rhea_sigreturn as *const () as usize,
        mask,
    };
    // SAFETY: `act` is a valid kernel sigaction whose handler and restorer are functions of
    // this image with the signatures the kernel calls them with.
    unsafe {
        syscall6(
            nr::RT_SIGACTION,
            [sig, &act as *const KernelSigaction as usize, 0, 8, 0, 0],
        )
    };
}

const ALT_STACK_BYTES: usize = 64 * 1024;
#[repr(C, align(16))]
struct AltStack([u8; ALT_STACK_BYTES]);
/// The fault handlers' stacks, one per vCPU thread. `static mut` because the kernel, not Rust,
/// writes them; Rust only takes their addresses.
static mut ALT_STACKS: [AltStack; 8] = [const { AltStack([0; ALT_STACK_BYTES]) }; 8];

/// Gives the calling thread (vCPU `cpu`) its alternate signal stack for fault reports.
pub fn init_thread_altstack(cpu: usize) {
    #[repr(C)]
    struct StackT {
        sp: usize,
        flags: i32,
        size: usize,
    }
    let sp = core::ptr::addr_of!(ALT_STACKS) as usize + (cpu % 8) * ALT_STACK_BYTES;
    let ss = StackT {
        sp,
        flags: 0,
        size: ALT_STACK_BYTES,
    };
    // SAFETY: each vCPU thread gets its own static alternate stack (vCPU index modulo 8; more
    // vCPUs than 8 share one, which only matters if two fault at once, when the report is
    // garbled rather than wrong).
    unsafe {
        syscall6(
            nr::SIGALTSTACK,
            [&ss as *const StackT as usize, 0, 0, 0, 0, 0],
        )
    };
}

/// Blocks the interrupt signals for real until [`init_interrupts`] installs their handlers
/// (until then a SIGIO would end the process); interrupts start disabled either way. The boot
/// vCPU's first step after `vcpu::become_cpu`.
pub fn hold_until_handlers() {
    super::irqflag::hold();
}

/// Installs the fault handlers (on an alternate stack).
pub fn init_faults() {
    init_thread_altstack(0);
    for sig in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP] {
        install(sig, on_fault, SA_ONSTACK, u64::MAX);
    }
}

/// Installs the interrupt handlers (the timer signal raises `timer_vector`) and unblocks the
/// signals; interrupts stay disabled until the kernel enables them.
pub fn init_interrupts(timer_vector: u8) {
    TIMER_VECTOR.store(timer_vector, Ordering::Relaxed);
    for sig in [SIGALRM, SIGIO, SIGVEC] {
        install(sig, on_interrupt, SA_RESTART, IRQ_MASK);
    }
    super::irqflag::release();
}

/// A secondary vCPU thread's signal set-up: its alternate stack, and the interrupt signals
/// unblocked (a clone inherits its parent's mask) with interrupts disabled.
pub fn init_vcpu_thread(cpu: usize) {
    init_thread_altstack(cpu);
    super::irqflag::release();
}

static TIMER_VECTOR: AtomicU8 = AtomicU8::new(0);
/// The vector each descriptor's readiness raises (0 = none).
static FD_VECTOR: [AtomicU8; 64] = [const { AtomicU8::new(0) }; 64];

/// Makes readiness of `fd` raise `vector` (the descriptor must be set up for `SIGIO`).
pub fn bind_fd(fd: i32, vector: u8) -> bool {
    match FD_VECTOR.get(fd as usize) {
        Some(slot) => {
            slot.store(vector, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Whether any descriptor other than `except` is bound to a vector (external input can still
/// arrive through it).
pub fn any_fd_bound_except(except: i32) -> bool {
    FD_VECTOR
        .iter()
        .enumerate()
        .any(|(fd, v)| fd as i32 != except && v.load(Ordering::Relaxed) != 0)
}

/// The vector `fd`'s readiness raises, if it is bound.
pub fn fd_vector(fd: i32) -> Option<u8> {
    let v = FD_VECTOR
        .get(usize::try_from(fd).ok()?)?
        .load(Ordering::Relaxed);
    (v != 0).then_some(v)
}

/// Waits for a real signal even when an idle hook is set (the simulation mode waiting for
/// input); interrupts are disabled, and what arrived is delivered before returning.
pub fn suspend_for_real() {
    pause_unless_pending();
    super::irqflag::drain();
}

/// Raises `vector` on this vCPU, as a self-IPI: delivered at once if interrupts are enabled,
/// else when they are next enabled. No signal is needed for a vCPU interrupting itself.
pub fn raise_self(vector: u8) {
    let was = super::irqflag::save();
    super::irqflag::record(vector);
    if was {
        super::irqflag::enable();
    }
}

/// Raises `vector` on thread `tid` of this process: SIGVEC carrying the vector.
pub fn queue_vector(tid: i32, vector: u8) {
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&(SIGVEC as i32).to_le_bytes());
    info[8..12].copy_from_slice(&(-1i32).to_le_bytes()); // SI_QUEUE
    info[16..20].copy_from_slice(&sys::getpid().to_le_bytes());
    info[24..28].copy_from_slice(&i32::from(vector).to_le_bytes());
    // SAFETY: `info` is a valid siginfo for the kernel to copy; the signal is one of ours.
    unsafe {
        syscall6(
            nr::RT_TGSIGQUEUEINFO,
            [
                sys::getpid() as usize,
                tid as usize,
                SIGVEC,
                info.as_ptr() as usize,
                0,
                0,
            ],
        )
    };
}

/// `siginfo_t` offsets (include/uapi/asm-generic/siginfo.h, x86_64).
const SI_ADDR: usize = 16;
const SI_FD: usize = 24;
const SI_VALUE: usize = 24;
/// `ucontext_t.uc_mcontext.gregs` offset and register indices (sys/ucontext.h, x86_64).
const GREGS: usize = 40;
mod reg {
    pub(super) const R8: usize = 0;
    pub(super) const RDI: usize = 8;
    pub(super) const RSI: usize = 9;
    pub(super) const RBP: usize = 10;
    pub(super) const RBX: usize = 11;
    pub(super) const RDX: usize = 12;
    pub(super) const RAX: usize = 13;
    pub(super) const RCX: usize = 14;
    pub(super) const RSP: usize = 15;
    pub(super) const RIP: usize = 16;
    pub(super) const EFL: usize = 17;
    pub(super) const ERR: usize = 19;
    pub(super) const TRAPNO: usize = 20;
    pub(super) const CR2: usize = 22;
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_idle_pause, "ax"
    .global rhea_idle_pause
    .global rhea_idle_pause_syscall
    .global rhea_idle_pause_end
    /* rhea_idle_pause(): with interrupts disabled (the flag), waits in pause(2) for a signal
     * unless a vector is pending. [rhea_idle_pause, rhea_idle_pause_syscall] is a restartable
     * sequence: a handler that interrupts it there moves RIP to rhea_idle_pause_end. */
rhea_idle_pause:
    cmpb $0, %gs:{pending_any}
    jne rhea_idle_pause_end
    movl ${pause}, %eax
rhea_idle_pause_syscall:
    syscall
rhea_idle_pause_end:
    ret
    "#,
    pending_any = const super::irqflag::PENDING_ANY,
    pause = const nr::PAUSE,
    options(att_syntax)
);

unsafe extern "C" {
    fn rhea_idle_pause();
    fn rhea_idle_pause_syscall();
    fn rhea_idle_pause_end();
}

/// Waits in `pause` until a signal arrives, unless a vector is already pending.
fn pause_unless_pending() {
    // SAFETY: the routine reads this vCPU's block through GS (set up by `vcpu::become_cpu`) and
    // makes a system call that changes no memory; it clobbers only RAX, RCX and R11, all
    // caller-saved in the C ABI it is declared with.
    unsafe { rhea_idle_pause() }
}

/// Moves an instruction pointer interrupted inside the idle window past its system call: the
/// vector this handler records must not then be slept through.
fn leave_idle_window(uc: *mut u8) {
    let start = rhea_idle_pause as *const () as u64;
    let syscall = rhea_idle_pause_syscall as *const () as u64;
    let end = rhea_idle_pause_end as *const () as u64;
    // SAFETY: the kernel passes a valid ucontext (SA_SIGINFO) for the handler's duration; RIP
    // is one of its documented fields, and the kernel restores it at `rt_sigreturn`.
    unsafe {
        let rip = uc.add(GREGS + reg::RIP * 8) as *mut u64;
        let at = core::ptr::read_unaligned(rip);
        if (start..=syscall).contains(&at) {
            core::ptr::write_unaligned(rip, end);
        }
    }
}

extern "C" fn on_interrupt(sig: i32, info: *mut u8, uc: *mut u8) {
    let vector = match sig as usize {
        SIGALRM => TIMER_VECTOR.load(Ordering::Relaxed),
        // SAFETY: the kernel passes a valid siginfo (SA_SIGINFO) for the signal's lifetime.
        SIGVEC => (unsafe { core::ptr::read_unaligned(info.add(SI_VALUE) as *const i32) }) as u8,
        SIGIO => {
            // SAFETY: as above; `si_fd` is filled for SIGIO raised through F_SETSIG.
            let fd = unsafe { core::ptr::read_unaligned(info.add(SI_FD) as *const i32) };
            FD_VECTOR
                .get(fd as usize)
                .map_or(0, |v| v.load(Ordering::Relaxed))
        }
        _ => 0,
    };
    leave_idle_window(uc);
    if vector >= 32 {
        super::irqflag::interrupt(vector);
    }
}

extern "C" fn on_fault(sig: i32, info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid ucontext and siginfo (SA_SIGINFO) for the handler's
    // duration; only their documented fields are read.
    let (g, si_addr) = unsafe {
        let gregs = uc.add(GREGS) as *const u64;
        let mut g = [0u64; 23];
        for (i, r) in g.iter_mut().enumerate() {
            *r = core::ptr::read_unaligned(gregs.add(i));
        }
        (
            g,
            core::ptr::read_unaligned(info.add(SI_ADDR) as *const u64),
        )
    };
    // The trap number Linux recorded; SIGILL/SIGFPE from other sources map to #UD/#DE.
    let vector = match (sig as usize, g[reg::TRAPNO]) {
        (_, t) if t != 0 || sig as usize == SIGFPE => t,
        (SIGILL, _) => 6,
        (SIGTRAP, _) => 3,
        _ => 14,
    };
    let cr2 = if g[reg::CR2] != 0 {
        g[reg::CR2]
    } else {
        si_addr
    };
    let mut frame = super::fault::TrapFrame {
        r15: g[reg::R8 + 7],
        r14: g[reg::R8 + 6],
        r13: g[reg::R8 + 5],
        r12: g[reg::R8 + 4],
        r11: g[reg::R8 + 3],
        r10: g[reg::R8 + 2],
        r9: g[reg::R8 + 1],
        r8: g[reg::R8],
        rbp: g[reg::RBP],
        rdi: g[reg::RDI],
        rsi: g[reg::RSI],
        rdx: g[reg::RDX],
        rcx: g[reg::RCX],
        rbx: g[reg::RBX],
        rax: g[reg::RAX],
        vector,
        // The user-mode bit (2) is cleared: under LinuxU the kernel's code runs in user mode,
        // and the report describes it as the kernel it is.
        error_code: g[reg::ERR] & !4,
        rip: g[reg::RIP],
        cs: 0,
        rflags: g[reg::EFL],
        rsp: g[reg::RSP],
        ss: 0,
    };
    super::fault::dispatch(&mut frame, cr2);
}

/// Blocks the interrupt signals for real (`rt_sigprocmask`; see [`super::irqflag`] for when).
pub(super) fn block() {
    // SAFETY: a valid sigset pointer of the kernel's size (8 bytes); no old set is asked for.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            [SIG_BLOCK, &IRQ_MASK as *const u64 as usize, 0, 8, 0, 0],
        )
    };
}

/// Unblocks the interrupt signals for real.
pub(super) fn unblock() {
    // SAFETY: as in `block`.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            [SIG_UNBLOCK, &IRQ_MASK as *const u64 as usize, 0, 8, 0, 0],
        )
    };
}

/// Whether interrupts are enabled on this vCPU.
pub fn unblocked() -> bool {
    super::irqflag::enabled()
}

static IDLE_HOOK: spin::Once<fn()> = spin::Once::new();

/// Replaces waiting for a signal in the idle loop with `hook` (the simulation mode's virtual
/// time jump).
pub fn set_idle_hook(hook: fn()) {
    IDLE_HOOK.call_once(|| hook);
}

/// Delivers interrupt `vector` now, synchronously, as if it had arrived at this instruction:
/// with interrupts disabled for the handler and restored after (the handler may switch
/// threads; the rest runs when this thread is switched back in). For the simulation mode,
/// where no timer signal exists.
pub fn deliver_now(vector: u8) {
    let was = super::irqflag::save();
    super::fault::deliver_interrupt(vector);
    if was {
        super::irqflag::enable();
    }
}

/// The idle loop's wait, with interrupts disabled: waits for a signal (unless one is pending),
/// then delivers what arrived, as `sti; hlt; cli` would have — or runs the idle hook instead
/// when one is set.
pub fn suspend() {
    if let Some(hook) = IDLE_HOOK.get() {
        hook();
        return;
    }
    pause_unless_pending();
    super::irqflag::drain();
}
