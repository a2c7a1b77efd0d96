//! The kernel side of scheduling: the scheduler lock, context switches, and the glue that
//! carries out what the policy (`rhea-sched`) decides.
//!
//! **The scheduler lock** (`SCHED`) guards the one [`Sched`] of the machine. It disables
//! interrupts while held (so it is taken from interrupt handlers too) and is held *across* a
//! context switch: the thread that switches away holds it, the thread switched in releases it
//! (a new thread in `thread_start`). Lock order: the scheduler lock is taken before the heap
//! lock (freeing a thread's `Arc` may free memory) and never while holding the console or
//! memory locks. Nothing under it sleeps.
//!
//! **Preemption**: interrupt handlers never switch directly; an operation whose decision
//! names the current CPU sets `NEED_RESCHED` when it runs in interrupt context, and the
//! interrupt exit path (`irq::on_interrupt`) switches after the end-of-interrupt. In thread
//! context the switch happens at once.
#![allow(
    unsafe_code,
    reason = "the scheduler lock's cell and the context switch; each use has a SAFETY note"
)]

use crate::selected::{A, Arch as _, B};
use crate::sync::IrqGuard;
use crate::time;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};
use rhea_hal::Board as _;
use rhea_sched::{Decision, Sched, SchedError, Thread, ThreadId};

struct SchedLock {
    locked: AtomicBool,
    sched: UnsafeCell<Option<Sched>>,
}

// SAFETY: `sched` is only reached through a `SchedGuard`, which exists only while `locked` is
// held by this CPU with interrupts disabled.
unsafe impl Sync for SchedLock {}

static SCHED: SchedLock = SchedLock {
    locked: AtomicBool::new(false),
    sched: UnsafeCell::new(None),
};

/// Per CPU: set when a decision made in interrupt context (or a reschedule IPI) needs the CPU
/// to reschedule at interrupt exit.
static NEED_RESCHED: [AtomicBool; rhea_sched::MAX_CPUS] =
    [const { AtomicBool::new(false) }; rhea_sched::MAX_CPUS];
/// Per CPU: whether it is handling an interrupt.
static IN_IRQ: [AtomicBool; rhea_sched::MAX_CPUS] =
    [const { AtomicBool::new(false) }; rhea_sched::MAX_CPUS];
/// Per CPU: the vector whose handler runs (meaningful while `IN_IRQ`), for fault and panic
/// reports.
static IRQ_VECTOR: [AtomicU8; rhea_sched::MAX_CPUS] =
    [const { AtomicU8::new(0) }; rhea_sched::MAX_CPUS];
/// Whether the invariant checker runs at every scheduling decision (test builds turn it on).
static CHECKER: AtomicBool = AtomicBool::new(false);
/// Checker runs and violations, for the test apps to report.
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// Proof that this CPU holds the scheduler lock, with the interrupt state to restore.
pub(crate) struct SchedGuard {
    irq_was_enabled: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

pub(crate) fn lock() -> SchedGuard {
    let irq_was_enabled = A::irq_save();
    // RT: waits only for another CPU's bounded critical section (none can exist on one CPU).
    if SCHED
        .locked
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        let start = time::now().as_nanos();
        while SCHED
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        crate::trace::lock_spin(time::now().as_nanos().saturating_sub(start));
    }
    if crate::trace::enabled(crate::trace::Category::Sched) {
        LOCKED_AT[cpu()].store(time::now().as_nanos().max(1), Ordering::Relaxed);
    }
    SchedGuard {
        irq_was_enabled,
        _not_send: core::marker::PhantomData,
    }
}

impl SchedGuard {
    /// The scheduler. Panics if called before [`init`].
    pub(crate) fn sched(&mut self) -> &mut Sched {
        self.sched_opt().expect("kthread::init ran")
    }

    /// The scheduler, if [`init`] ran.
    pub(crate) fn sched_opt(&mut self) -> Option<&mut Sched> {
        // SAFETY: the guard proves this CPU holds the lock with interrupts off, so no other
        // reference to the scheduler is live; the returned borrow is tied to the guard.
        unsafe { (*SCHED.sched.get()).as_mut() }
    }

    /// Carries out a decision: other CPUs named get a reschedule IPI; this CPU reschedules
    /// now (thread context) or at interrupt exit.
    pub(crate) fn apply(&mut self, d: Decision) {
        let cpu = cpu();
        for other in d.resched.iter().filter(|&c| c != cpu) {
            self.sched().note_resched_sent(other);
            defer_ipi(cpu, other);
        }
        if d.resched.contains(cpu) {
            if IN_IRQ[cpu].load(Ordering::Relaxed) {
                // Deferred to interrupt exit: other CPUs' checkers must allow the lag.
                self.sched().note_resched_sent(cpu);
                NEED_RESCHED[cpu].store(true, Ordering::Relaxed);
            } else {
                self.schedule();
            }
        }
    }

    /// Runs the policy's choice for this CPU, switching threads if it changed, and re-arms the
    /// CPU's one-shot timer for its next deadline. Returns once this thread runs again.
    /// RT: pick_next is O(1); the switch is a fixed sequence.
    pub(crate) fn schedule(&mut self) {
        let cpu = cpu();
        let now = time::now();
        let s = self.sched();
        let (switch, others) = s.pick_next(cpu, now);
        for other in others.resched.iter().filter(|&c| c != cpu) {
            s.note_resched_sent(other);
        }
        let deadline = s.next_deadline(cpu);
        if CHECKER.load(Ordering::Relaxed) {
            CHECKS.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = s.check() {
                panic!(
                    "scheduler invariant violated on cpu{cpu}'s decision (it told {:?} to reschedule): {e}",
                    others.resched
                );
            }
        }
        time::arm(deadline);
        // Other CPUs that should now run a thread left ready here.
        for other in others.resched.iter().filter(|&c| c != cpu) {
            defer_ipi(cpu, other);
        }
        if let Some((from, to)) = switch {
            let from_sp = from.context.as_ptr();
            let to_sp = to.context.load(Ordering::Relaxed);
            // Our clones are dropped before switching: an exiting thread never comes back to
            // drop them. The scheduler keeps both threads alive (until `reap`, which needs the
            // lock this CPU holds until the switch is complete), so `from_sp` stays valid.
            trace_switch(now, from.id().as_u64(), to.id().as_u64());
            crate::trace::switch(now.as_nanos(), s, &from, &to);
            account_idle(cpu, now.as_nanos(), from.id().as_u64(), to.id().as_u64());
            account_slice(cpu, now.as_nanos(), &from);
            set_current(cpu, &to);
            drop((from, to));
            // SAFETY: interrupts are off (the guard); `from_sp` is the running thread's own
            // slot (the policy's current thread was `from`) and its `Thread` outlives the
            // switch (above); `to_sp` was saved by its last switch or built by `init_stack`,
            // and `to` runs nowhere else (the policy makes a thread current on one CPU only).
            // No borrow of the scheduler is held across the switch.
            unsafe { A::switch(from_sp, to_sp) };
        }
    }
}

/// Per CPU: the kernel clock (ns; virtual time in the simulation, so traces stay
/// deterministic) when it took the scheduler lock, while sched tracing is on (0: not
/// measured). The lock is held across a switch, so the thread that releases it may not be
/// the one that took it; the CPU is the same, and the time is what that CPU spent with
/// interrupts off and no preemption.
static LOCKED_AT: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];

/// Ends the measurement of CPU `cpu`'s (this CPU's) hold of the scheduler lock (just before
/// its release).
#[inline]
fn end_hold(cpu: usize) {
    if LOCKED_AT[cpu].load(Ordering::Relaxed) != 0 {
        let since = LOCKED_AT[cpu].swap(0, Ordering::Relaxed);
        crate::trace::lock_held(cpu, time::now().as_nanos().saturating_sub(since));
    }
}

impl Drop for SchedGuard {
    fn drop(&mut self) {
        let cpu = cpu();
        end_hold(cpu);
        SCHED.locked.store(false, Ordering::Release);
        flush_ipis(cpu);
        A::irq_restore(self.irq_was_enabled);
    }
}

/// Per CPU: the reschedule IPIs its decisions called for, sent once it has released the
/// scheduler lock. Sent under the lock, a target that wakes at once spins on the lock its
/// sender still holds — and where vCPUs share host CPUs (LinuxU, an overcommitted hypervisor)
/// the host may run the target in the sender's place: lock-holder preemption on every
/// cross-CPU wake-up (measured: periodic threads late by ~3 ms every other period on LinuxU).
static DEFERRED_IPIS: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];

fn defer_ipi(from: usize, to: usize) {
    DEFERRED_IPIS[from].fetch_or(1 << to, Ordering::Relaxed);
}

/// Sends this CPU's deferred IPIs (the scheduler lock released, interrupts still off).
fn flush_ipis(cpu: usize) {
    // Every lock release passes here: a plain load first, so the common case (nothing
    // deferred) writes nothing to a cache line the neighbouring CPUs' slots share.
    let slot = &DEFERRED_IPIS[cpu];
    if slot.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut targets = slot.swap(0, Ordering::Relaxed);
    while targets != 0 {
        let target = targets.trailing_zeros() as usize;
        targets &= targets - 1;
        crate::irq::send_reschedule(target);
    }
}

/// The scheduling trace: every switch (time, outgoing, incoming) folded into an FNV-1a hash,
/// so two runs can be compared exactly (the simulation mode's determinism check). Updated
/// under the scheduler lock.
static TRACE_HASH: AtomicU64 = AtomicU64::new(0xcbf2_9ce4_8422_2325);
static TRACE_SWITCHES: AtomicU64 = AtomicU64::new(0);

fn trace_switch(now: rhea_hal::Instant, from: u64, to: u64) {
    let mut h = TRACE_HASH.load(Ordering::Relaxed);
    for word in [now.as_nanos(), from, to] {
        for byte in word.to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    TRACE_HASH.store(h, Ordering::Relaxed);
    TRACE_SWITCHES.fetch_add(1, Ordering::Relaxed);
}

/// Per CPU: its idle thread's id, the idle time accumulated, and when the current idle
/// period began (`u64::MAX`: not idle). Updated by the CPU itself under the scheduler lock.
static IDLE_ID: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(u64::MAX) }; rhea_sched::MAX_CPUS];
static IDLE_NS: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];
static IDLE_SINCE: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(u64::MAX) }; rhea_sched::MAX_CPUS];

fn account_idle(cpu: usize, now: u64, from: u64, to: u64) {
    let idle = IDLE_ID[cpu].load(Ordering::Relaxed);
    if from == idle {
        let since = IDLE_SINCE[cpu].swap(u64::MAX, Ordering::Relaxed);
        if since != u64::MAX {
            IDLE_NS[cpu].fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }
    if to == idle {
        IDLE_SINCE[cpu].store(now, Ordering::Relaxed);
    }
}

/// Per CPU: when its current thread's slice began (ns on the kernel clock) and the CPU's steal
/// reading then. Written by the CPU itself under the scheduler lock.
static SLICE_START: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];
static SLICE_STEAL: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];

/// Starts CPU `cpu`'s first slice (its idle thread, as it joins).
fn start_slice(cpu: usize, now: u64) {
    SLICE_START[cpu].store(now, Ordering::Relaxed);
    SLICE_STEAL[cpu].store(B::stolen_ns(cpu).unwrap_or(0), Ordering::Relaxed);
}

/// Ends the slice of `from` on CPU `cpu` at `now`: its run time, and what the hypervisor stole
/// from the CPU meanwhile, go to its account; the next slice starts. RT: a few loads and
/// stores (the steal read is one version-checked record where the board has one).
fn account_slice(cpu: usize, now: u64, from: &Thread) {
    let ran = now.saturating_sub(SLICE_START[cpu].swap(now, Ordering::Relaxed));
    let stolen = match B::stolen_ns(cpu) {
        Some(total) => total.saturating_sub(SLICE_STEAL[cpu].swap(total, Ordering::Relaxed)),
        None => 0,
    };
    from.account(ran, stolen);
}

/// Nanoseconds the hypervisor has kept CPU `cpu` from running since it came up; `None` where
/// the machine does not say.
pub(crate) fn stolen_ns(cpu: usize) -> Option<u64> {
    if cpu >= rhea_sched::MAX_CPUS {
        return None;
    }
    B::stolen_ns(cpu)
}

/// Nanoseconds CPU `cpu` has spent in its idle thread since it came up (its busy time is the
/// rest).
pub(crate) fn idle_ns(cpu: usize) -> u64 {
    let Some(total) = IDLE_NS.get(cpu) else {
        return 0;
    };
    let since = IDLE_SINCE[cpu].load(Ordering::Relaxed);
    let current = if since == u64::MAX {
        0
    } else {
        time::now().as_nanos().saturating_sub(since)
    };
    total.load(Ordering::Relaxed) + current
}

/// `(switches, hash)` of the scheduling trace so far.
pub(crate) fn trace() -> (u64, u64) {
    (
        TRACE_SWITCHES.load(Ordering::Relaxed),
        TRACE_HASH.load(Ordering::Relaxed),
    )
}

/// Per CPU: the thread it runs, for the lock-free fast paths that need to know who calls
/// (a mutex's owner word). Written by the CPU itself under the scheduler lock, just before it
/// switches to the thread (and for its idle thread when it joins); null before that.
static CURRENT: [AtomicPtr<Thread>; rhea_sched::MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; rhea_sched::MAX_CPUS];

fn set_current(cpu: usize, t: &Arc<Thread>) {
    CURRENT[cpu].store(Arc::as_ptr(t).cast_mut(), Ordering::Relaxed);
}

/// Runs `f` with the calling thread, interrupts disabled and without the scheduler lock;
/// `None` before the scheduler runs this CPU. `f` must be a few instructions: it delays
/// interrupts.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Thread) -> R) -> Option<R> {
    with_current_irq(|t, _| f(t))
}

/// Like [`with_current`], also telling `f` whether interrupts were enabled at the call (for
/// a fast path that must refuse to wait with them disabled, at no extra cost).
pub(crate) fn with_current_irq<R>(f: impl FnOnce(&Thread, bool) -> R) -> Option<R> {
    // Interrupts off while the slot is used: a preemption could move the caller to another
    // CPU between reading the CPU and its slot.
    let irqs = IrqGuard::new();
    let p = CURRENT[cpu()].load(Ordering::Relaxed);
    let r = if p.is_null() {
        None
    } else {
        // SAFETY: `p` is the thread running this code: its CPU stored it before switching to
        // it, and with interrupts off nothing switches away. The scheduler holds the thread's
        // `Arc` until it is reaped, and a thread is reaped only after it exited and no CPU
        // runs it — not while it runs `f`.
        Some(f(unsafe { &*p }, irqs.were_enabled()))
    };
    drop(irqs);
    r
}

/// The current CPU's index.
pub(crate) fn cpu() -> usize {
    A::cpu_id().0 as usize
}

/// Creates the scheduler for `ncpus` CPUs with this (the boot) context as CPU 0's idle thread.
pub(crate) fn init(boot_stack: core::ops::Range<u64>, checker: bool, ncpus: usize) {
    CHECKER.store(checker, Ordering::Relaxed);
    if ncpus > 1 {
        SMP.store(true, Ordering::SeqCst);
    }
    let mut s = Sched::new(ncpus);
    s.set_observer(&crate::trace::KernelObserver);
    let idle = Arc::new(Thread::new(String::from("idle"), boot_stack));
    idle.set_kernel();
    set_current(0, &idle);
    let id = s.add_cpu(0, idle, time::now()).expect("CPU 0 exists");
    IDLE_ID[0].store(id.as_u64(), Ordering::Relaxed);
    IDLE_SINCE[0].store(time::now().as_nanos(), Ordering::Relaxed);
    start_slice(0, time::now().as_nanos());
    ONLINE.store(1, Ordering::Release);
    let g = lock();
    // SAFETY: the lock is held; nothing has seen the scheduler yet.
    unsafe { *SCHED.sched.get() = Some(s) };
    drop(g);
}

/// The CPUs that joined the scheduler, as a bit mask (read without the scheduler lock).
static ONLINE: AtomicU64 = AtomicU64::new(0);

/// Set (for good) by [`init`] when the board has more than one CPU, before a second one can
/// run kernel code.
static SMP: AtomicBool = AtomicBool::new(false);

/// Whether the kernel runs on one CPU only (so a read-modify-write with interrupts disabled
/// is atomic without a locked instruction).
#[inline]
pub(crate) fn is_uniprocessor() -> bool {
    !SMP.load(Ordering::Relaxed)
}

/// [`ONLINE`]'s current value.
pub(crate) fn online_mask() -> u64 {
    ONLINE.load(Ordering::Acquire)
}

/// Whether the checker is on, and how many decisions it checked.
pub fn checker_runs() -> (bool, u64) {
    (
        CHECKER.load(Ordering::Relaxed),
        CHECKS.load(Ordering::Relaxed),
    )
}

/// Brings CPU `cpu` online in the scheduler with the calling context (that CPU's boot
/// thread) as its idle thread.
pub(crate) fn add_cpu(cpu: usize) {
    let idle = Arc::new(Thread::new(String::from("idle"), 0..0));
    idle.set_kernel();
    set_current(cpu, &idle);
    let mut g = lock();
    let now = time::now();
    let id = g
        .sched()
        .add_cpu(cpu, idle, now)
        .expect("the board starts CPUs the scheduler was sized for");
    IDLE_ID[cpu].store(id.as_u64(), Ordering::Relaxed);
    IDLE_SINCE[cpu].store(now.as_nanos(), Ordering::Relaxed);
    start_slice(cpu, now.as_nanos());
    ONLINE.fetch_or(1 << cpu, Ordering::Release);
    // Threads already ready elsewhere may belong here now: choose at once.
    g.schedule();
}

/// Marks the start and end of interrupt handling on this CPU; returns whether a reschedule
/// was requested while it ran.
pub(crate) fn enter_irq(vector: u8) {
    crate::trace::irq(true, vector);
    let cpu = cpu();
    IRQ_VECTOR[cpu].store(vector, Ordering::Relaxed);
    IN_IRQ[cpu].store(true, Ordering::Relaxed);
}

/// Names the vector being dispatched on this CPU (a controller may turn one CPU vector into
/// several: Xen's event-channel upcall).
pub(crate) fn dispatching(vector: u8) {
    IRQ_VECTOR[cpu()].store(vector, Ordering::Relaxed);
}

/// The vector this CPU is handling, if it is in interrupt context (for reports: no lock).
pub(crate) fn interrupt_context() -> Option<u8> {
    let cpu = cpu();
    let in_irq = IN_IRQ.get(cpu)?.load(Ordering::Relaxed);
    in_irq.then(|| IRQ_VECTOR[cpu].load(Ordering::Relaxed))
}

pub(crate) fn leave_irq() -> bool {
    let cpu = cpu();
    crate::trace::irq(false, IRQ_VECTOR[cpu].load(Ordering::Relaxed));
    IN_IRQ[cpu].store(false, Ordering::Relaxed);
    NEED_RESCHED[cpu].swap(false, Ordering::Relaxed)
}

/// A reschedule IPI arrived: reschedule at interrupt exit.
pub(crate) fn request_resched() {
    crate::trace::ipi_taken(rhea_trace::IpiKind::Resched);
    NEED_RESCHED[cpu()].store(true, Ordering::Relaxed);
}

/// Reschedules this CPU (interrupt exit, after the end-of-interrupt).
pub(crate) fn preempt() {
    let mut g = lock();
    g.schedule();
}

/// The timer interrupt: wake sleepers, end slices.
pub(crate) fn on_timer() {
    let mut g = lock();
    let cpu = cpu();
    let d = g.sched().expire(cpu, time::now());
    if d.resched.is_empty() {
        // Nothing to switch, but the timer must be re-armed for the next deadline.
        let deadline = g.sched().next_deadline(cpu);
        time::arm(deadline);
    }
    g.apply(d);
}

/// What a new thread runs.
type Entry = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// The first Rust code of every thread (the trampoline calls it with the boxed entry).
extern "C" fn thread_start(arg: usize) -> ! {
    // The thread that switched here held the scheduler lock; release it as that thread's
    // guard would have, with interrupts enabled (a new thread starts with them on).
    let cpu = cpu();
    end_hold(cpu);
    SCHED.locked.store(false, Ordering::Release);
    flush_ipis(cpu);
    A::irq_enable();
    // SAFETY: `arg` is the pointer `spawn` leaked from a `Box<Entry>`, passed to exactly this
    // one thread, which takes it back once.
    let entry = unsafe { Box::from_raw(arg as *mut Entry) };
    let code = entry();
    exit_current(code)
}

/// Ends the running thread.
pub(crate) fn exit_current(code: i32) -> ! {
    let mut g = lock();
    let cpu = cpu();
    let d = g.sched().exit_current(cpu, code);
    g.apply(d);
    unreachable!("an exited thread is never switched back in");
}

/// Spawn parameters the runtime's API builds.
pub(crate) struct SpawnRequest {
    pub(crate) name: String,
    pub(crate) params: rhea_sched::SpawnParams,
    pub(crate) stack_bytes: u64,
    /// A kernel service thread (`Thread::is_kernel`).
    pub(crate) kernel: bool,
}

/// Why a spawn failed.
#[derive(Debug)]
pub enum SpawnError {
    /// No memory for the stack.
    Memory(crate::memory::MemoryError),
    /// The scheduler refused (e.g. an affinity mask with no online CPU).
    Sched(SchedError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "cannot map the thread's stack: {e}"),
            Self::Sched(e) => write!(f, "{e}"),
        }
    }
}

/// Creates a thread with a guarded stack and makes it ready (or leaves it suspended).
pub(crate) fn spawn(
    req: SpawnRequest,
    entry: Entry,
    suspended: bool,
) -> Result<(ThreadId, Arc<Thread>), SpawnError> {
    reap_detached();
    let stack = crate::memory::new_stack(&req.name, req.stack_bytes).map_err(SpawnError::Memory)?;
    let thread = Arc::new(Thread::new(req.name, stack.range()));
    if req.kernel {
        thread.set_kernel();
    }
    let arg = Box::into_raw(Box::new(entry)) as usize;
    // SAFETY: the stack was just mapped for this thread (at least one page, aligned top).
    let sp = unsafe { A::init_stack(stack.range().end, thread_start, arg) };
    thread.context.store(sp, Ordering::Relaxed);
    let mut g = lock();
    let spawned = if suspended {
        g.sched()
            .spawn_suspended(thread.clone(), req.params)
            .map(|id| (id, Decision::default()))
    } else {
        g.sched().spawn(thread.clone(), req.params)
    };
    match spawned {
        Ok((id, d)) => {
            g.apply(d);
            Ok((id, thread))
        }
        Err(e) => {
            drop(g);
            // SAFETY: the thread never ran, so the box was not taken back.
            drop(unsafe { Box::from_raw(arg as *mut Entry) });
            crate::memory::free_stack(stack);
            Err(SpawnError::Sched(e))
        }
    }
}

/// Frees the stacks of detached threads that have exited.
fn reap_detached() {
    let mut dead = alloc::vec::Vec::new();
    {
        let mut g = lock();
        let s = g.sched();
        s.reap_all(|t| dead.push(t));
    }
    for t in dead {
        crate::memory::free_stack_at(t.stack.end);
    }
}

/// Blocks the running thread with `op` (which returns `(done, decision)`); returns the wake
/// reason, or `None` if `op` completed without blocking.
pub(crate) fn block_on(
    op: impl FnOnce(&mut Sched, usize) -> Result<(bool, Decision), SchedError>,
) -> Result<Option<rhea_sched::WakeReason>, SchedError> {
    let mut g = lock();
    let cpu = cpu();
    // With interrupts disabled by the caller (an `IrqsOff` spin lock held, or an interrupt
    // handler), blocking would switch away holding what it disabled them for: refused.
    let atomic = !g.irq_was_enabled;
    let s = g.sched();
    s.set_atomic(cpu, atomic);
    let r = op(s, cpu);
    s.set_atomic(cpu, false);
    let (done, d) = r?;
    if done {
        g.apply(d);
        return Ok(None);
    }
    g.apply(d);
    // Switched back in — possibly on another CPU (migration): ask which thread we are there.
    let cur = g.sched().current(self::cpu());
    Ok(Some(g.sched().take_wake_reason(cur)))
}

/// What [`control`] does to another thread.
pub(crate) enum Control {
    Suspend,
    Resume,
    Affinity(rhea_sched::CpuSet),
    Priority(rhea_hal::Priority),
}

/// Suspends, resumes, re-prioritises or re-pins thread `id`. From thread context, a suspend or
/// affinity change of a thread running on another CPU returns only once that CPU has switched
/// it out (or a resume cancelled the suspension); from an interrupt handler it takes effect
/// when that CPU next switches. Suspending oneself with interrupts disabled is refused.
pub(crate) fn control(id: ThreadId, what: Control) -> Result<(), SchedError> {
    let mut g = lock();
    let cpu = cpu();
    let in_irq = IN_IRQ[cpu].load(Ordering::Relaxed);
    let irq_on = g.irq_was_enabled;
    let thread_context = irq_on && !in_irq;
    let s = g.sched();
    let d = match what {
        Control::Suspend => {
            if s.current(cpu) == id && !irq_on && !in_irq {
                return Err(SchedError::AtomicContext);
            }
            s.suspend(id)?
        }
        Control::Resume => s.resume(id)?,
        Control::Affinity(mask) => s.set_affinity(id, mask)?,
        Control::Priority(p) => s.set_priority(id, p)?,
    };
    g.apply(d);
    let waits = matches!(what, Control::Suspend | Control::Affinity(_));
    if !waits || !thread_context {
        return Ok(());
    }
    drop(g);
    // RT: each wake-up is a switch on the target's CPU (or a cancelling resume); the target
    // leaves after one reschedule IPI.
    while block_on(|s, cpu| s.halt_wait(cpu, id))?.is_some() {}
    Ok(())
}

/// Runs a non-blocking operation under the lock and carries out its decision.
pub(crate) fn with_sched<R>(op: impl FnOnce(&mut Sched, usize) -> (R, Decision)) -> R {
    let mut g = lock();
    let cpu = cpu();
    let (r, d) = op(g.sched(), cpu);
    g.apply(d);
    r
}
