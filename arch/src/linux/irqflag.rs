//! "Interrupts disabled" on LinuxU as a per-vCPU flag in memory, as the IF bit is on a CPU.
//!
//! Blocking the interrupt signals with `rt_sigprocmask` costs a system call; with every
//! scheduler-lock section, IRQ-safe spin lock and heap operation disabling and enabling
//! interrupts, that was ~4 system calls per kernel service. Instead (the scheme User-Mode
//! Linux uses for its own "interrupts"):
//!
//! - [`save`]/[`enable`] write one byte of the vCPU's block ([`super::vcpu::PerCpu`], reached
//!   through GS) with one instruction each. The interrupt signals stay unblocked.
//! - A signal handler that finds the flag set only records its vector in the vCPU's pending
//!   set ([`record`]) and returns. [`enable`] checks the pending summary right after clearing
//!   the flag and delivers what is pending ([`replay`]), highest vector first, as a local APIC
//!   would (a vector pending twice is delivered once, as in an APIC's IRR; vectors that must not
//!   coalesce — device events, cross-CPU calls — are counted by their own queues, not by their
//!   interrupts).
//! - A handler that finds the flag clear sets it and delivers the interrupt there ([`interrupt`]).
//!   The kernel blocked the interrupt signals for the handler (`sa_mask`); that is kept (no
//!   system call) unless the handler switches threads: [`before_switch`] then unblocks them,
//!   since the thread switched to must keep receiving interrupts. Such a handler blocks them
//!   again before it clears the flag and returns, so that clearing the flag and `rt_sigreturn`
//!   (which restores the interrupted context's mask: unblocked) cannot be split by a nested
//!   handler — the equivalent of IRET restoring IF atomically.
//! - Idle ([`super::signals::suspend`]) waits in `pause` with the flag set; a signal arriving
//!   between its pending check and the system call would be recorded and then slept through, so
//!   the handler moves an interrupted instruction pointer inside that window to its end (a
//!   restartable sequence, [`super::signals`]), and idle delivers what is pending after waking.
//!
//! Why the windows are safe, instruction by instruction:
//! - [`enabled`], [`save`] and [`enable`] reach the flag through GS within one instruction, never
//!   through a pointer to "this vCPU's block" computed first: a thread can be preempted between
//!   any two instructions and resume on another vCPU.
//! - [`save`] reads the flag, then sets it. A signal between the two finds the flag clear and
//!   runs to completion (possibly switching threads and back, possibly resuming the thread on
//!   another vCPU, whose flag is then clear too, as it was when interrupted); the set then
//!   applies to the vCPU the thread is on. The value returned is right either way.
//! - [`enable`] clears the flag, then reads the summary: a signal in between is handled at once
//!   (the handler also delivers everything pending); one after finds nothing to replay missed.
//! - Taking a vector from the pending set is one atomic instruction on one bit, so a handler
//!   recording into the same word cannot be lost; the summary is cleared before the set is
//!   scanned, so a vector recorded after the scan leaves the summary set for the next check.
//! - Only the vCPU's own OS thread touches its flag and pending set, and a signal interrupts
//!   that thread between instructions: single instructions are atomic against it, and the
//!   atomics are for the compiler (no lock prefix is needed for correctness, but `swap` and
//!   `fetch_and` are single instructions either way).

use super::vcpu::{self, PerCpu};
use core::sync::atomic::Ordering::Relaxed;

/// Offset of `PerCpu::irqs_off`.
pub(super) const IRQS_OFF: usize = 8;
/// Offset of `PerCpu::pending_any`.
pub(super) const PENDING_ANY: usize = 9;

/// Disables interrupts on this vCPU; returns whether they were enabled.
#[inline(always)]
pub(super) fn save() -> bool {
    let old: u8;
    // SAFETY: GS points at this vCPU's live `PerCpu` (`vcpu::become_cpu` runs before any kernel
    // code) and `IRQS_OFF` is the offset of its `irqs_off` byte (checked at compile time in
    // `vcpu`). No `nomem`: the asm is a compiler barrier, so the critical section stays after it.
    unsafe {
        core::arch::asm!(
            "mov {old}, byte ptr gs:[{off}]",
            "mov byte ptr gs:[{off}], 1",
            old = out(reg_byte) old,
            off = const IRQS_OFF,
            options(nostack, preserves_flags),
        );
    }
    old == 0
}

/// Enables interrupts on this vCPU and delivers what arrived while they were disabled.
#[inline(always)]
pub(super) fn enable() {
    if clear_and_check() {
        replay();
    }
}

/// Clears the flag; returns whether something is pending.
#[inline(always)]
fn clear_and_check() -> bool {
    let pending: u8;
    // SAFETY: as in `save`; the asm is a compiler barrier, so the critical section stays
    // before it.
    unsafe {
        core::arch::asm!(
            "mov byte ptr gs:[{off}], 0",
            "mov {p}, byte ptr gs:[{pa}]",
            p = out(reg_byte) pending,
            off = const IRQS_OFF,
            pa = const PENDING_ANY,
            options(nostack, preserves_flags),
        );
    }
    pending != 0
}

/// Whether interrupts are enabled on this vCPU.
///
/// One GS-relative load, like [`save`]: finding the vCPU's block and reading its flag must not
/// be two steps, or a thread preempted between them and resumed on another vCPU reads the flag
/// of the vCPU it left — which may be disabled at that moment by whatever runs there — and a
/// blocking call is refused with `AtomicContext` in thread context (found by thread-stress on
/// LinuxU with 2 vCPUs, 1 failure in 3000 rounds).
#[inline(always)]
pub(super) fn enabled() -> bool {
    let off: u8;
    // SAFETY: as in `save`; a plain load of this vCPU's flag byte.
    unsafe {
        core::arch::asm!(
            "mov {off}, byte ptr gs:[{at}]",
            off = out(reg_byte) off,
            at = const IRQS_OFF,
            options(nostack, preserves_flags, readonly),
        );
    }
    off == 0
}

/// Delivers the pending vectors with interrupts disabled, then enables them; repeats while a
/// vector arrived in between.
#[cold]
#[inline(never)]
fn replay() {
    loop {
        save();
        drain();
        if !clear_and_check() {
            return;
        }
    }
}

impl PerCpu {
    /// Records `vector` as pending. Called by this vCPU's own handlers only.
    fn record(&self, vector: u8) {
        self.pending[usize::from(vector / 64)].fetch_or(1 << (vector % 64), Relaxed);
        self.pending_any.store(1, Relaxed);
    }

    /// Takes the highest pending vector.
    fn take(&self) -> Option<u8> {
        for (w, word) in self.pending.iter().enumerate().rev() {
            let bits = word.load(Relaxed);
            if bits != 0 {
                let bit = 63 - bits.leading_zeros();
                // One instruction on one bit: a handler can only add bits in between.
                word.fetch_and(!(1 << bit), Relaxed);
                return Some((w as u32 * 64 + bit) as u8);
            }
        }
        None
    }
}

/// Records `vector` as pending on this vCPU: delivered when interrupts are next enabled here.
pub(super) fn record(vector: u8) {
    vcpu::this().record(vector);
}

/// Delivers every pending vector; interrupts are disabled. A handler may switch threads, and
/// the thread may come back on another vCPU: the block is looked up again for each vector, and
/// one vector is taken at a time, so each is delivered on the vCPU it arrived at.
pub(super) fn drain() {
    loop {
        let cpu = vcpu::this();
        cpu.pending_any.store(0, Relaxed);
        match cpu.take() {
            Some(vector) => {
                super::fault::deliver_interrupt(vector);
            }
            None => return,
        }
    }
}

/// A signal handler's work for interrupt `vector` (the interrupt signals blocked by the
/// kernel for the handler): recorded if interrupts are disabled, else delivered here with them
/// disabled, followed by whatever became pending meanwhile.
pub(super) fn interrupt(vector: u8) {
    let cpu = vcpu::this();
    if cpu.irqs_off.load(Relaxed) != 0 {
        cpu.record(vector);
        return;
    }
    cpu.irqs_off.store(1, Relaxed);
    cpu.signals_blocked.store(1, Relaxed);
    if vector >= 32 {
        super::fault::deliver_interrupt(vector);
    }
    // The handler may have switched threads (unblocking the signals, `before_switch`) and
    // been switched back, on this vCPU or another: block them again before the flag is
    // cleared, so that nothing runs between clearing it and `rt_sigreturn`.
    loop {
        drain();
        let cpu = vcpu::this();
        if cpu.signals_blocked.load(Relaxed) != 0 {
            break;
        }
        super::signals::block();
        cpu.signals_blocked.store(1, Relaxed);
    }
    let cpu = vcpu::this();
    // `rt_sigreturn` restores the interrupted context's mask, which had the interrupt signals
    // unblocked (else this handler would not have run).
    cpu.signals_blocked.store(0, Relaxed);
    cpu.irqs_off.store(0, Relaxed);
}

/// Called (with interrupts disabled) before this vCPU switches threads: the thread switched to
/// must receive interrupts whether or not the one switched from is inside a signal handler.
#[inline]
pub(super) fn before_switch() {
    let cpu = vcpu::this();
    if cpu.signals_blocked.load(Relaxed) != 0 {
        super::signals::unblock();
        cpu.signals_blocked.store(0, Relaxed);
    }
}

/// Blocks the interrupt signals for real until [`release`] (boot, before handlers exist).
pub(super) fn hold() {
    super::signals::block();
    vcpu::this().signals_blocked.store(1, Relaxed);
}

/// Unblocks the interrupt signals for real (interrupts stay disabled by the flag).
pub(super) fn release() {
    super::signals::unblock();
    vcpu::this().signals_blocked.store(0, Relaxed);
}
