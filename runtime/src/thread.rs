//! Threads for apps: spawn with a name, priority, stack size, affinity and time slice; join,
//! sleep, yield, suspend and resume.
//!
//! Priorities: `rhea::thread::Priority`, where **a larger number is more important**
//! (1..=63; 0 is the idle threads'). A thread runs until it blocks, yields, or a more
//! important thread becomes ready; equal priorities take turns only if they have a time slice.

use crate::kthread::{self, SpawnError, SpawnRequest};
use crate::time::{Duration, Instant};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
pub use rhea_hal::{InvalidPriority, Priority};
pub use rhea_sched::{CpuSet, RunState, SchedError, ThreadId, ThreadState};
use rhea_sched::{SpawnParams, Thread};

/// Stack size when none is asked for.
pub const DEFAULT_STACK_BYTES: u64 = 64 << 10;

/// Configures a new thread.
#[derive(Debug, Clone)]
pub struct Builder {
    name: String,
    priority: Priority,
    stack_bytes: u64,
    affinity: CpuSet,
    slice: Option<Duration>,
    kernel: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: name "thread", [`Priority::NORMAL`], 64 KiB stack, any CPU, no time slice.
    pub fn new() -> Self {
        Self {
            name: String::from("thread"),
            priority: Priority::NORMAL,
            stack_bytes: DEFAULT_STACK_BYTES,
            affinity: CpuSet::ALL,
            slice: None,
            kernel: false,
        }
    }

    /// The name fault reports and statistics show.
    pub fn name(mut self, name: &str) -> Self {
        self.name = String::from(name);
        self
    }

    /// The base priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Stack size in bytes (rounded up to pages; a guard page is always added below).
    pub fn stack_size(mut self, bytes: u64) -> Self {
        self.stack_bytes = bytes;
        self
    }

    /// The CPUs it may run on.
    pub fn affinity(mut self, cpus: CpuSet) -> Self {
        self.affinity = cpus;
        self
    }

    /// Round-robin among equal priorities with this slice (none: FIFO).
    pub fn time_slice(mut self, slice: Duration) -> Self {
        self.slice = Some(slice);
        self
    }

    /// Marks it a kernel service thread (an interrupt's, a driver's, the network's): tools
    /// that operate the kernel (the shell's `prio`, `suspend`, `affinity`) refuse to change it,
    /// since the service depends on how it runs. Apps' own threads are never marked.
    pub fn kernel(mut self) -> Self {
        self.kernel = true;
        self
    }

    /// Starts the thread.
    pub fn spawn<F: FnOnce() + Send + 'static>(self, f: F) -> Result<JoinHandle, SpawnError> {
        self.spawn_inner(f, false)
    }

    /// Creates the thread suspended: it first runs when [`resume`]d, so its creator can change
    /// its priority or affinity, or hand its id to others, before it runs at all.
    pub fn spawn_suspended<F: FnOnce() + Send + 'static>(
        self,
        f: F,
    ) -> Result<JoinHandle, SpawnError> {
        self.spawn_inner(f, true)
    }

    fn spawn_inner<F: FnOnce() + Send + 'static>(
        self,
        f: F,
        suspended: bool,
    ) -> Result<JoinHandle, SpawnError> {
        let req = SpawnRequest {
            name: self.name,
            params: SpawnParams {
                priority: self.priority,
                affinity: self.affinity,
                slice_ns: self
                    .slice
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)),
            },
            stack_bytes: self.stack_bytes,
            kernel: self.kernel,
        };
        let (id, thread) = kthread::spawn(
            req,
            Box::new(move || {
                f();
                0
            }),
            suspended,
        )?;
        Ok(JoinHandle {
            id,
            thread: Some(thread),
        })
    }
}

/// Starts a thread with the default configuration.
pub fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Result<JoinHandle, SpawnError> {
    Builder::new().spawn(f)
}

/// Owns a thread's right to be joined. Dropping it detaches the thread.
#[derive(Debug)]
pub struct JoinHandle {
    id: ThreadId,
    thread: Option<Arc<Thread>>,
}

impl JoinHandle {
    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// Waits for the thread to finish and frees its stack.
    pub fn join(mut self) -> Result<(), SchedError> {
        let id = self.id;
        loop {
            let r =
                kthread::block_on(|s, cpu| s.join(cpu, id).map(|(code, d)| (code.is_some(), d)))?;
            if r.is_none() {
                break;
            }
        }
        let reaped = kthread::with_sched(|s, _| (s.reap(id), Default::default()));
        if let Some(t) = reaped {
            crate::memory::free_stack_at(t.stack.end);
        }
        self.thread = None;
        Ok(())
    }
}

impl Drop for JoinHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let id = self.id;
            kthread::with_sched(|s, _| (s.detach(id), Default::default())).ok();
        }
    }
}

/// Gives the CPU to the next ready thread of the same priority, if any.
pub fn yield_now() {
    kthread::with_sched(|s, cpu| ((), s.yield_current(cpu)));
}

/// Sleeps at least `d`.
pub fn sleep(d: Duration) {
    sleep_until(crate::time::now().saturating_add(d));
}

/// Sleeps until the clock reads at least `deadline`.
pub fn sleep_until(deadline: Instant) {
    // A thread woken early (it cannot be, but resume or a spurious wake must not cut a sleep
    // short) sleeps again for the rest.
    loop {
        let now = crate::time::now();
        if now >= deadline {
            return;
        }
        let _ = kthread::block_on(|s, cpu| {
            s.sleep_until(cpu, deadline, now)
                .map(|d| (d.resched.is_empty(), d))
        });
    }
}

/// The running thread's id.
pub fn current() -> ThreadId {
    kthread::with_sched(|s, cpu| (s.current(cpu), Default::default()))
}

/// Changes a thread's base priority (its effective priority follows, and what it passes on
/// through priority inheritance). Takes effect at once on this CPU; a thread running on
/// another CPU is preempted there within a reschedule IPI if it is no longer the most
/// important. Errors: an unknown or exited thread, an idle thread, priority 0.
pub fn set_priority(id: ThreadId, priority: Priority) -> Result<(), SchedError> {
    kthread::control(id, kthread::Control::Priority(priority))
}

/// A thread's effective priority (its base raised by priority inheritance).
pub fn effective_priority(id: ThreadId) -> Option<Priority> {
    kthread::with_sched(|s, _| (s.effective_priority(id), Default::default()))
}

/// Stops a thread from running until [`resume`] (suspensions do not nest).
///
/// - A ready thread stops at once; the caller itself stops at once (refused with
///   `AtomicContext` while it holds an interrupt-disabling spin lock).
/// - A thread running on another CPU is switched out there by a reschedule IPI; from thread
///   context this call returns only once it has been (so on return it is not running), or
///   once a [`resume`] from elsewhere cancelled the suspension. From an interrupt handler it
///   returns at once and the suspension takes effect at that CPU's next switch.
/// - A blocked or sleeping thread finishes its wait — a mutex, semaphore unit, event or
///   timeout that arrives meanwhile stays its own — and is parked instead of running; a
///   resume before then cancels the suspension.
///
/// Errors: an unknown or exited thread (`NoSuchThread`), an idle thread (`IdleThread`).
pub fn suspend(id: ThreadId) -> Result<(), SchedError> {
    kthread::control(id, kthread::Control::Suspend)
}

/// Lets a suspended thread run again (it returns from whatever it was doing with the outcome
/// it got meanwhile), or cancels a suspension not yet in effect; a thread not suspended is
/// left alone. Errors as for [`suspend`].
pub fn resume(id: ThreadId) -> Result<(), SchedError> {
    kthread::control(id, kthread::Control::Resume)
}

/// The CPU the calling thread is running on (it may move between calls unless its affinity
/// pins it).
pub fn current_cpu() -> usize {
    kthread::cpu()
}

/// The CPUs online.
pub fn online_cpus() -> CpuSet {
    kthread::with_sched(|s, _| (s.online(), Default::default()))
}

/// Changes the CPUs a thread may run on (CPUs named that are offline are ignored; a mask
/// naming no online CPU is refused with `NoUsableCpu`, changing nothing). A ready thread moves
/// at once; one running on a CPU it may no longer use is moved by a reschedule IPI, and from
/// thread context this call returns only once it has left that CPU. A blocked thread moves
/// when it wakes.
pub fn set_affinity(id: ThreadId, cpus: CpuSet) -> Result<(), SchedError> {
    kthread::control(id, kthread::Control::Affinity(cpus))
}

/// Nanoseconds CPU `cpu` has spent idle since it came up (for load figures: busy is the rest
/// of [`crate::time::now`]).
pub fn cpu_idle_ns(cpu: usize) -> u64 {
    kthread::idle_ns(cpu)
}

/// Nanoseconds the hypervisor has kept CPU `cpu` from running while it was runnable (steal
/// time), since the CPU came up; `None` where the machine does not say (no hypervisor, or one
/// without steal time: TCG, LinuxU, bare metal).
pub fn cpu_stolen_ns(cpu: usize) -> Option<u64> {
    kthread::stolen_ns(cpu)
}

/// One thread's accounts, as [`thread_times`] reports them.
#[derive(Clone, Debug)]
pub struct ThreadTimes {
    /// Its id.
    pub id: ThreadId,
    /// Its name.
    pub name: String,
    /// Nanoseconds it has run on a CPU, up to its last switch away.
    pub run_ns: u64,
    /// Of those, nanoseconds the hypervisor stole from the CPU it ran on.
    pub stolen_ns: u64,
    /// Times a CPU switched to it.
    pub switches_in: u64,
    /// Times a CPU switched away from it.
    pub switches_out: u64,
    /// Times it was made ready (after blocking, at its start, on resumption).
    pub wakeups: u64,
    /// The longest it waited to run once made ready (ns).
    pub max_wake_latency_ns: u64,
    /// Nanoseconds it spent blocked, per kind of object (finished waits).
    pub blocked_ns: BlockedNs,
}

pub use rhea_sched::BlockedNs;

/// Every live thread's run time and the steal within it, in thread-table order. The threads
/// are collected under the scheduler lock into room reserved before it (nothing allocates
/// under the lock); names are copied after.
pub fn thread_times() -> alloc::vec::Vec<ThreadTimes> {
    let threads = collect_live(|s, out| s.for_each_thread(|t| out.push(t.clone())));
    threads.iter().map(|t| times_of(t)).collect()
}

/// Runs `walk` under the scheduler lock to push at most one item per live thread into a
/// vector with room for all of them reserved before the lock (nothing allocates under it);
/// if threads were spawned between the two, the room grows and the walk runs again.
fn collect_live<T>(
    mut walk: impl FnMut(&rhea_sched::Sched, &mut alloc::vec::Vec<T>),
) -> alloc::vec::Vec<T> {
    let mut out = alloc::vec::Vec::new();
    loop {
        let want = kthread::with_sched(|s, _| (s.thread_count(), Default::default())) + 4;
        out.reserve(want);
        let fitted = kthread::with_sched(|s, _| {
            if s.thread_count() > out.capacity() {
                return (false, Default::default());
            }
            walk(s, &mut out);
            (true, Default::default())
        });
        if fitted {
            return out;
        }
    }
}

/// One live thread as an operator sees it: who, where, how important, and its accounts.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    /// Its accounts (id, name, run time, switches, wake-ups, blocked time).
    pub times: ThreadTimes,
    /// A kernel service thread ([`Builder::kernel`], the idle threads).
    pub kernel: bool,
    /// Its scheduling state, priorities, CPU and affinity.
    pub sched: ThreadState,
}

/// Every live thread with its scheduling state and accounts, in thread-table order (one
/// consistent snapshot of the states under the scheduler lock, into room reserved before it).
pub fn threads() -> alloc::vec::Vec<ThreadInfo> {
    collect_live(|s, out| s.for_each_thread_state(|t, st| out.push((t.clone(), st))))
        .iter()
        .map(|(t, st)| ThreadInfo {
            times: times_of(t),
            kernel: t.is_kernel(),
            sched: *st,
        })
        .collect()
}

fn times_of(t: &Thread) -> ThreadTimes {
    let a = t.accounts();
    ThreadTimes {
        id: t.id(),
        name: String::from(t.name()),
        run_ns: t.run_ns(),
        stolen_ns: t.stolen_ns(),
        switches_in: a.switches_in,
        switches_out: a.switches_out,
        wakeups: a.wakeups,
        max_wake_latency_ns: a.max_wake_latency_ns,
        blocked_ns: a.blocked_ns,
    }
}

/// Context switches CPU `cpu` has made.
pub fn cpu_switches(cpu: usize) -> u64 {
    kthread::with_sched(|s, _| {
        let n = if s.online().contains(cpu) {
            s.switches(cpu)
        } else {
            0
        };
        (n, Default::default())
    })
}

/// Prints the scheduler's view of every live thread (id, name, state, priorities, CPU,
/// affinity, the object it waits on) and what each CPU runs: what a test prints when it finds
/// itself stalled. Formats under the scheduler lock into a fixed 4 KiB buffer (truncated
/// there; nothing allocates), prints after.
pub fn print_threads() {
    struct Buf {
        bytes: [u8; 4096],
        len: usize,
    }
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let mut n = s.len().min(self.bytes.len() - self.len);
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 4096],
        len: 0,
    };
    kthread::with_sched(|s, _| {
        let _ = s.describe(&mut buf);
        ((), Default::default())
    });
    crate::print!(
        "{}",
        core::str::from_utf8(&buf.bytes[..buf.len]).unwrap_or("(not UTF-8)\n")
    );
}

/// Context switches this CPU has made.
pub fn switches() -> u64 {
    kthread::with_sched(|s, cpu| (s.switches(cpu), Default::default()))
}
