//! The scheduler state machine.
//!
//! Every operation takes `&mut self` (the kernel holds the scheduler lock), the CPU it runs
//! on and, where time matters, `now`. Operations never switch threads themselves: they update
//! the state and return a [`Decision`] naming the CPUs that must call [`Sched::pick_next`].
//! A thread that an operation blocked is told why it woke through [`Sched::take_wake_reason`]
//! once it runs again.

use crate::cpuset::CpuSet;
use crate::error::SchedError;
use crate::lists::{
    RunAdapter, SleepAdapter, SleepTree, ThreadList, remove_from_list, remove_from_tree,
};
use crate::observe::{BlockOn, LeftAs, Observer, PrioCause, SchedEvent};
use crate::thread::{Thread, ThreadId};
use crate::{MAX_CPUS, MAX_HELD_MUTEXES};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;
use intrusive_collections::LinkedList;
use rhea_hal::{Instant, Priority};

/// How a new thread is scheduled.
#[derive(Clone, Copy, Debug)]
pub struct SpawnParams {
    /// Base priority.
    pub priority: Priority,
    /// CPUs it may run on.
    pub affinity: CpuSet,
    /// Round-robin time slice among equal priorities, in nanoseconds; `None` = FIFO (runs
    /// until it blocks, yields or is preempted by a more important thread).
    pub slice_ns: Option<u64>,
}

/// Why a blocked thread woke up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WakeReason {
    /// It has not blocked since the last time it asked.
    None,
    /// Its wait was satisfied (a wait-queue signal, event flags, a joined thread's exit).
    Signaled,
    /// It was handed what it waited for: a mutex's ownership or a semaphore unit.
    Acquired,
    /// Its deadline passed first.
    Timeout,
    /// The object it waited on was destroyed or its owner died holding it.
    Abandoned,
}

/// What the kernel must do after an operation: the CPUs that must run [`Sched::pick_next`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[must_use = "a decision names CPUs that must reschedule"]
pub struct Decision {
    /// CPUs whose current thread may no longer be the one that should run.
    pub resched: CpuSet,
}

impl Decision {
    fn cpu(cpu: usize) -> Self {
        Self {
            resched: CpuSet::single(cpu),
        }
    }

    pub(crate) fn merge(self, other: Decision) -> Decision {
        Decision {
            resched: CpuSet::from_bits(self.resched.bits() | other.resched.bits()),
        }
    }
}

/// A context switch the kernel must make: `(outgoing, incoming)`.
pub type Switch = (Arc<Thread>, Arc<Thread>);

/// A synchronisation object's identity (slot index and generation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ObjectId(u64);

impl ObjectId {
    /// The raw value, for storing in an atomic.
    pub const fn to_raw(self) -> u64 {
        self.0
    }

    /// Back from [`ObjectId::to_raw`]. A forged value names no object (operations on it fail
    /// with `NoSuchObject`) or another live object of the caller's: never memory unsafety.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    fn index(self) -> usize {
        self.0 as u32 as usize
    }
}

/// What an event-flags waiter waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct EventWait {
    /// The bits of interest.
    pub mask: u32,
    /// Wait for all of `mask` (otherwise any of it).
    pub all: bool,
    /// Clear the bits of `mask` that satisfied the wait.
    pub clear: bool,
}

impl EventWait {
    fn satisfied_by(self, bits: u32) -> bool {
        if self.all {
            bits & self.mask == self.mask
        } else {
            bits & self.mask != 0
        }
    }
}

#[derive(Debug)]
enum Kind {
    /// A plain wait queue (condition variables, thread join).
    Queue,
    Mutex {
        owner: Option<ThreadId>,
    },
    Semaphore {
        count: u32,
        max: u32,
    },
    Events {
        bits: u32,
    },
}

struct Object {
    id: ObjectId,
    kind: Kind,
    /// Blocked threads, most important first, FIFO within a level.
    waiters: ThreadList,
}

/// A live thread's scheduling state, as [`Sched::for_each_thread_state`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ThreadState {
    /// Where it is.
    pub state: RunState,
    /// A suspension asked for that takes effect when it next leaves its CPU.
    pub suspend_pending: bool,
    /// Its own priority.
    pub base: Priority,
    /// The priority it runs at (its own, or one inherited through a mutex).
    pub effective: Priority,
    /// The CPU that runs it or whose queue holds it.
    pub cpu: usize,
    /// The CPUs it may run on.
    pub affinity: CpuSet,
    /// The kind of object it waits on (`mutex`, `semaphore`, `queue`, `events`, `sleep`).
    pub blocked_on: Option<&'static str>,
}

/// Where a live thread is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunState {
    /// On a run queue.
    Ready,
    /// On a CPU.
    Running,
    /// Waiting for an object or a time.
    Blocked,
    /// Suspended until resumed.
    Suspended,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Ready,
    Running,
    Blocked,
    Suspended,
    Exited,
}

/// A thread's scheduling state.
struct Tcb {
    thread: Arc<Thread>,
    base: Priority,
    eff: Priority,
    state: State,
    suspend_requested: bool,
    affinity: CpuSet,
    /// The CPU whose run queue or sleep queue holds it, or that runs it.
    cpu: usize,
    /// The run-queue level it is queued at while `Ready`.
    queued_level: usize,
    slice_ns: Option<u64>,
    slice_left_ns: u64,
    yield_pending: bool,
    blocked_on: Option<ObjectId>,
    held: [Option<ObjectId>; MAX_HELD_MUTEXES],
    wake: WakeReason,
    event_wait: EventWait,
    /// The event bits that satisfied the last event wait.
    event_bits: u32,
    exit_code: i32,
    join_queue: Option<ObjectId>,
    joined: bool,
    detached: bool,
    is_idle: bool,
}

struct RunQueue {
    bitmap: u64,
    levels: [ThreadList; Priority::LEVELS],
}

impl RunQueue {
    fn new() -> Self {
        Self {
            bitmap: 0,
            levels: core::array::from_fn(|_| LinkedList::new(RunAdapter::new())),
        }
    }

    fn push(&mut self, level: usize, t: Arc<Thread>, front: bool) {
        if front {
            self.levels[level].push_front(t);
        } else {
            self.levels[level].push_back(t);
        }
        self.bitmap |= 1 << level;
    }

    /// The most important non-empty level. O(1): one bit scan.
    fn highest(&self) -> Option<usize> {
        if self.bitmap == 0 {
            None
        } else {
            Some(63 - self.bitmap.leading_zeros() as usize)
        }
    }

    fn remove(&mut self, level: usize, t: &Thread) -> Option<Arc<Thread>> {
        let removed = remove_from_list(&mut self.levels[level], t);
        if self.levels[level].is_empty() {
            self.bitmap &= !(1 << level);
        }
        removed
    }
}

struct Cpu {
    rq: RunQueue,
    sleepers: SleepTree,
    current: Option<ThreadId>,
    idle: Option<ThreadId>,
    /// When the current thread's slice ends, if it has one.
    slice_end: Option<Instant>,
    /// When the current thread was switched in (for slice accounting).
    switched_in: Instant,
    switches: u64,
    /// Set by the kernel while its caller runs with interrupts disabled (a spin lock held, or
    /// an interrupt handler): blocking is then refused with `AtomicContext`.
    atomic: bool,
    /// How the thread its last [`Sched::pick_next`] switched away from left (for traces).
    left: LeftAs,
}

impl Cpu {
    fn new() -> Self {
        Self {
            rq: RunQueue::new(),
            sleepers: SleepTree::new(SleepAdapter::new()),
            current: None,
            idle: None,
            slice_end: None,
            switched_in: Instant::ZERO,
            switches: 0,
            atomic: false,
            left: LeftAs::Idle,
        }
    }
}

/// The scheduler: all threads, run queues, sleep queues and sync objects of the machine.
pub struct Sched {
    tcbs: Vec<Option<Tcb>>,
    tcb_generations: Vec<u32>,
    free_tcbs: Vec<u32>,
    objects: Vec<Option<Object>>,
    object_generations: Vec<u32>,
    free_objects: Vec<u32>,
    cpus: Vec<Cpu>,
    online: CpuSet,
    /// CPUs told to reschedule (an IPI in flight) that have not yet: the checker allows them
    /// to lag, as the semantics do ("beyond the bounded time of an IPI").
    pending: CpuSet,
    /// Threads waiting for a thread running on another CPU to leave it (a suspend or an
    /// affinity change of a running remote thread, see [`Sched::halt_wait`]). Every switch
    /// that takes such a thread off its CPU, and every cancelled suspension, wakes them all;
    /// each re-checks its own target.
    halt_queue: ObjectId,
    /// Told of wake-ups, blocking, priority changes, creation and exit.
    observer: Option<&'static dyn Observer>,
}

impl fmt::Debug for Sched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sched")
            .field("online", &self.online)
            .field("threads", &self.thread_count())
            .finish()
    }
}

impl Sched {
    /// A scheduler for `ncpus` CPUs (clamped to [`MAX_CPUS`]), none online yet.
    pub fn new(ncpus: usize) -> Self {
        let ncpus = ncpus.clamp(1, MAX_CPUS);
        let mut s = Self {
            tcbs: Vec::new(),
            tcb_generations: Vec::new(),
            free_tcbs: Vec::new(),
            objects: Vec::new(),
            object_generations: Vec::new(),
            free_objects: Vec::new(),
            cpus: (0..ncpus).map(|_| Cpu::new()).collect(),
            online: CpuSet::EMPTY,
            pending: CpuSet::EMPTY,
            halt_queue: ObjectId(u64::MAX),
            observer: None,
        };
        s.halt_queue = s.create_object(Kind::Queue);
        s
    }

    /// Tells `observer` of every event from now on ([`SchedEvent`]).
    pub fn set_observer(&mut self, observer: &'static dyn Observer) {
        self.observer = Some(observer);
    }

    fn notify(&self, e: SchedEvent<'_>) {
        if let Some(o) = self.observer {
            o.event(e);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Threads

    /// Brings `cpu` online with `idle` as its idle thread, which is taken to be running there
    /// now (the boot context of that CPU becomes its idle thread).
    pub fn add_cpu(
        &mut self,
        cpu: usize,
        idle: Arc<Thread>,
        now: Instant,
    ) -> Result<ThreadId, SchedError> {
        if cpu >= self.cpus.len() {
            return Err(SchedError::NoUsableCpu);
        }
        let id = self.insert_tcb(
            idle,
            Priority::IDLE,
            CpuSet::single(cpu),
            None,
            cpu,
            State::Running,
            true,
        );
        let c = &mut self.cpus[cpu];
        c.idle = Some(id);
        c.current = Some(id);
        c.switched_in = now;
        self.online = CpuSet::from_bits(self.online.bits() | 1 << cpu);
        Ok(id)
    }

    /// Makes `thread` known and ready to run.
    pub fn spawn(
        &mut self,
        thread: Arc<Thread>,
        params: SpawnParams,
    ) -> Result<(ThreadId, Decision), SchedError> {
        self.spawn_inner(thread, params, false)
    }

    /// Makes `thread` known but suspended: it first runs after [`Sched::resume`], so its
    /// creator can set its priority and affinity (or hand out its id) before it runs.
    pub fn spawn_suspended(
        &mut self,
        thread: Arc<Thread>,
        params: SpawnParams,
    ) -> Result<ThreadId, SchedError> {
        self.spawn_inner(thread, params, true).map(|(id, _)| id)
    }

    fn spawn_inner(
        &mut self,
        thread: Arc<Thread>,
        params: SpawnParams,
        suspended: bool,
    ) -> Result<(ThreadId, Decision), SchedError> {
        let cpu = self.select_cpu(params.affinity)?;
        if params.priority == Priority::IDLE {
            return Err(SchedError::BadPriority);
        }
        let id = self.insert_tcb(
            thread,
            params.priority,
            params.affinity,
            params.slice_ns,
            cpu,
            State::Blocked,
            false,
        );
        let join = self.create_object(Kind::Queue);
        self.tcb_mut(id).join_queue = Some(join);
        if suspended {
            self.tcb_mut(id).state = State::Suspended;
            return Ok((id, Decision::default()));
        }
        let d = self.make_ready(id, WakeReason::None);
        Ok((id, d))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private constructor for both thread kinds"
    )]
    fn insert_tcb(
        &mut self,
        thread: Arc<Thread>,
        prio: Priority,
        affinity: CpuSet,
        slice_ns: Option<u64>,
        cpu: usize,
        state: State,
        is_idle: bool,
    ) -> ThreadId {
        let index = match self.free_tcbs.pop() {
            Some(i) => i as usize,
            None => {
                self.tcbs.push(None);
                self.tcb_generations.push(0);
                self.tcbs.len() - 1
            }
        };
        let id = ThreadId::new(index as u32, self.tcb_generations[index]);
        thread.set_id(id);
        self.tcbs[index] = Some(Tcb {
            thread,
            base: prio,
            eff: prio,
            state,
            suspend_requested: false,
            affinity,
            cpu,
            queued_level: 0,
            slice_ns,
            slice_left_ns: slice_ns.unwrap_or(0),
            yield_pending: false,
            blocked_on: None,
            held: [None; MAX_HELD_MUTEXES],
            wake: WakeReason::None,
            event_wait: EventWait::default(),
            event_bits: 0,
            exit_code: 0,
            join_queue: None,
            joined: false,
            detached: false,
            is_idle,
        });
        if let Some(t) = &self.tcbs[index] {
            self.notify(SchedEvent::Create {
                thread: &t.thread,
                priority: prio,
            });
        }
        id
    }

    /// The first online CPU in `affinity`. (SMP placement — push to the CPU running the least
    /// important thread — extends this.)
    fn select_cpu(&self, affinity: CpuSet) -> Result<usize, SchedError> {
        affinity
            .intersect(self.online)
            .first()
            .ok_or(SchedError::NoUsableCpu)
    }

    fn tcb(&self, id: ThreadId) -> Option<&Tcb> {
        self.tcbs
            .get(id.index())?
            .as_ref()
            .filter(|t| t.thread.id() == id)
    }

    fn tcb_mut(&mut self, id: ThreadId) -> &mut Tcb {
        self.tcbs[id.index()]
            .as_mut()
            .expect("ids held by the scheduler name live threads")
    }

    fn try_tcb_mut(&mut self, id: ThreadId) -> Result<&mut Tcb, SchedError> {
        match self.tcbs.get_mut(id.index()) {
            Some(Some(t)) if t.thread.id() == id => Ok(t),
            _ => Err(SchedError::NoSuchThread),
        }
    }

    /// The thread running on `cpu`.
    pub fn current(&self, cpu: usize) -> ThreadId {
        self.cpus[cpu]
            .current
            .expect("an online CPU always runs a thread")
    }

    /// The thread object of `id`.
    pub fn thread(&self, id: ThreadId) -> Option<&Arc<Thread>> {
        self.tcb(id).map(|t| &t.thread)
    }

    /// How the thread that `cpu`'s last [`Sched::pick_next`] switched away from left it (for
    /// traces; meaningful right after a switch).
    pub fn last_left(&self, cpu: usize) -> LeftAs {
        self.cpus.get(cpu).map_or(LeftAs::Idle, |c| c.left)
    }

    /// Effective priority (base raised by priority inheritance).
    pub fn effective_priority(&self, id: ThreadId) -> Option<Priority> {
        self.tcb(id).map(|t| t.eff)
    }

    /// Base priority.
    pub fn base_priority(&self, id: ThreadId) -> Option<Priority> {
        self.tcb(id).map(|t| t.base)
    }

    /// Whether the thread has exited.
    pub fn has_exited(&self, id: ThreadId) -> bool {
        self.tcb(id).is_some_and(|t| t.state == State::Exited)
    }

    /// Number of threads known (including idle and exited-unreaped).
    pub fn thread_count(&self) -> usize {
        self.tcbs.iter().flatten().count()
    }

    /// Context switches `cpu` has made.
    pub fn switches(&self, cpu: usize) -> u64 {
        self.cpus[cpu].switches
    }

    /// Why the thread last woke, and resets it.
    pub fn take_wake_reason(&mut self, id: ThreadId) -> WakeReason {
        match self.try_tcb_mut(id) {
            Ok(t) => core::mem::replace(&mut t.wake, WakeReason::None),
            Err(_) => WakeReason::None,
        }
    }

    /// The event bits that satisfied the thread's last event wait.
    pub fn take_event_bits(&mut self, id: ThreadId) -> u32 {
        self.try_tcb_mut(id)
            .map_or(0, |t| core::mem::take(&mut t.event_bits))
    }

    /// Puts a blocked or new thread on its CPU's run queue (or parks it if suspended).
    /// RT: O(1) plus priority-inheritance propagation when it left a mutex's wait queue.
    fn make_ready(&mut self, id: ThreadId, reason: WakeReason) -> Decision {
        let (cpu, left_mutex) = {
            let t = self.tcb_mut(id);
            debug_assert_eq!(t.state, State::Blocked);
            (t.cpu, t.blocked_on.take())
        };
        let thread = self.tcb(id).expect("live").thread.clone();
        let mut d = Decision::default();
        if let Some(obj) = left_mutex {
            if let Some(o) = self.obj_mut(obj) {
                remove_from_list(&mut o.waiters, &thread);
            }
            // Leaving a mutex's queue may lower what its owner inherits.
            if let Some(owner) = self.mutex_owner(obj) {
                d = d.merge(self.update_priority(owner));
            }
        }
        remove_from_tree(&mut self.cpus[cpu].sleepers, &thread);
        self.notify(SchedEvent::Wake {
            thread: &thread,
            why: reason,
        });
        let t = self.tcb_mut(id);
        t.wake = reason;
        if t.suspend_requested {
            t.suspend_requested = false;
            t.state = State::Suspended;
            return d;
        }
        t.state = State::Ready;
        d.merge(self.enqueue_ready(id, false, cpu))
    }

    /// The online CPU in `affinity` running the least important thread (idle counts as least
    /// important of all); ties go to `prefer`, then to the lowest number. RT: O(CPUs).
    fn least_important_cpu(&self, affinity: CpuSet, prefer: usize) -> Option<usize> {
        self.least_important_cpu_except(affinity, prefer, CpuSet::EMPTY)
    }

    /// [`Sched::least_important_cpu`] among the CPUs not in `except`.
    fn least_important_cpu_except(
        &self,
        affinity: CpuSet,
        prefer: usize,
        except: CpuSet,
    ) -> Option<usize> {
        let mut best: Option<(usize, Priority)> = None;
        let candidates = CpuSet::from_bits(affinity.intersect(self.online).bits() & !except.bits());
        for cpu in candidates.iter() {
            let eff = self.eff_of(self.current(cpu));
            let better = match best {
                None => true,
                Some((b, beff)) => {
                    beff.is_more_important_than(eff)
                        || (eff == beff && cpu == prefer && b != prefer)
                }
            };
            if better {
                best = Some((cpu, eff));
            }
        }
        best.map(|(c, _)| c)
    }

    /// Queues a `Ready` thread for running (SMP placement, "push"): on the allowed CPU running
    /// the least important thread if it is less important than this one — which must then
    /// reschedule — else on `home` (its last CPU) when allowed. `front` keeps a preempted
    /// thread's place at the head of its level.
    fn enqueue_ready(&mut self, id: ThreadId, front: bool, home: usize) -> Decision {
        let t = self.tcb(id).expect("live");
        let (affinity, eff, thread) = (t.affinity, t.eff, t.thread.clone());
        let home_ok = affinity.contains(home) && self.online.contains(home);
        // CPUs already told to reschedule will take the best ready thread they may run; a
        // second thread is aimed at another CPU, or waits at home for the next pass.
        let free = self.least_important_cpu_except(affinity, home, self.pending);
        let preempts =
            free.is_some_and(|c| eff.is_more_important_than(self.eff_of(self.current(c))));
        let target = match free {
            Some(c) if preempts => c,
            _ => self.least_important_cpu(affinity, home).unwrap_or(home),
        };
        let cpu = if preempts || !home_ok { target } else { home };
        let t = self.tcb_mut(id);
        t.cpu = cpu;
        t.queued_level = eff.level();
        self.cpus[cpu].rq.push(eff.level(), thread, front);
        let d = if preempts {
            Decision::cpu(target)
        } else {
            Decision::default()
        };
        // A thread queued where a CPU is already on its way may displace a less important one
        // that CPU was going to take: give the displaced ones other CPUs now.
        let claimed = CpuSet::from_bits(self.pending.bits() | d.resched.bits());
        d.merge(self.push_check_claimed(claimed))
    }

    fn eff_of(&self, id: ThreadId) -> Priority {
        self.tcb(id).expect("live").eff
    }

    /// Chooses the thread `cpu` runs next, updating slice accounting. Returns the outgoing and
    /// incoming threads when they differ (the kernel then switches contexts), and the other
    /// CPUs that must now reschedule (SMP: a thread left ready here that one of them should
    /// run instead of what it runs).
    ///
    /// With several CPUs the choice is global within affinity: the most important ready
    /// thread that may run here, from this CPU's queue or — if more important — pulled from
    /// another's. RT: O(1) on one CPU; with n CPUs, O(n × levels) for the pull plus O(queued
    /// threads × n) for the push check.
    pub fn pick_next(&mut self, cpu: usize, now: Instant) -> (Option<Switch>, Decision) {
        let cur = self.current(cpu);
        let switched_in = self.cpus[cpu].switched_in;
        let mut d = Decision::default();
        self.pending = CpuSet::from_bits(self.pending.bits() & !(1 << cpu));
        let c = self.tcb_mut(cur);
        let cur_thread = c.thread.clone();
        // The outgoing thread was asked to leave this CPU by another (a suspension, or an
        // affinity without this CPU): whoever waits for that in `halt_wait` re-checks below.
        // Whatever its state now — it may have blocked, slept or exited before this CPU took
        // the request — it leaves: a waiter must hear of it (thread-stress on 4 vCPUs hung a
        // controller on a worker that blocked first).
        let leaving = !c.is_idle && (c.suspend_requested || !c.affinity.contains(cpu));
        let mut left = match c.state {
            _ if c.is_idle => LeftAs::Idle,
            State::Blocked => LeftAs::Blocked,
            State::Suspended => LeftAs::Suspended,
            State::Exited => LeftAs::Exited,
            State::Ready | State::Running => LeftAs::Preempted,
        };
        if c.state == State::Running && c.suspend_requested && !c.is_idle {
            left = LeftAs::Suspended;
            // A suspension asked while it ran takes effect now that it is switched out (and,
            // being `leaving`, it stops counting as this CPU's current thread below).
            c.suspend_requested = false;
            c.state = State::Suspended;
        } else if c.state == State::Running && !c.is_idle {
            let mut at_back = core::mem::take(&mut c.yield_pending);
            if at_back {
                left = LeftAs::Yielded;
            }
            if let Some(slice) = c.slice_ns {
                let used = now.saturating_duration_since(switched_in).as_nanos() as u64;
                c.slice_left_ns = c.slice_left_ns.saturating_sub(used);
                if c.slice_left_ns == 0 {
                    c.slice_left_ns = slice;
                    at_back = true;
                    left = LeftAs::SliceEnded;
                }
            }
            c.state = State::Ready;
            // A preempted thread keeps its place at the head of its level (POSIX SCHED_FIFO);
            // one that yielded or used up its slice goes to the back. It is made current-less
            // first so placement does not count it as running here.
            self.cpus[cpu].current = self.cpus[cpu].idle;
            d = d.merge(self.enqueue_ready(cur, !at_back, cpu));
            d.resched = CpuSet::from_bits(d.resched.bits() & !(1 << cpu));
        } else if c.state == State::Running {
            c.state = State::Ready; // idle: never queued
        } else if c.state == State::Exited {
            c.suspend_requested = false;
        }
        if leaving {
            // Placement must not count the outgoing thread as running here.
            self.cpus[cpu].current = self.cpus[cpu].idle;
            let q = self.halt_queue;
            d = d.merge(self.wake_all(q, WakeReason::Signaled));
            d.resched = CpuSet::from_bits(d.resched.bits() & !(1 << cpu));
        }
        let next = match self.best_ready_for(cpu) {
            Some((from, level, id)) => {
                let t = self.tcb(id).expect("live").thread.clone();
                self.cpus[from].rq.remove(level, &t);
                id
            }
            None => self.cpus[cpu]
                .idle
                .expect("an online CPU has an idle thread"),
        };
        let n = self.tcb_mut(next);
        n.state = State::Running;
        n.cpu = cpu;
        let slice_end = n.slice_ns.map(|_| {
            if n.slice_left_ns == 0 {
                n.slice_left_ns = n.slice_ns.unwrap_or(0);
            }
            now.saturating_add(core::time::Duration::from_nanos(n.slice_left_ns))
        });
        let next_thread = n.thread.clone();
        let c = &mut self.cpus[cpu];
        c.left = left;
        c.current = Some(next);
        c.slice_end = slice_end;
        c.switched_in = now;
        let switched = next != cur;
        if switched {
            c.switches += 1;
        }
        d = d.merge(self.push_check(cpu));
        (switched.then_some((cur_thread, next_thread)), d)
    }

    /// The most important ready thread allowed on `cpu`: the head of this CPU's best level,
    /// or a more important one queued on another CPU. `(queue's CPU, level, thread)`.
    fn best_ready_for(&self, cpu: usize) -> Option<(usize, usize, ThreadId)> {
        let mut best = self.cpus[cpu].rq.highest().and_then(|l| {
            self.cpus[cpu].rq.levels[l]
                .front()
                .get()
                .map(|t| (cpu, l, t.id()))
        });
        if self.online.bits().count_ones() == 1 {
            return best;
        }
        for x in self.online.iter().filter(|&x| x != cpu) {
            let rq = &self.cpus[x].rq;
            let floor = best.map_or(0, |(_, l, _)| l + 1);
            // RT: at most LEVELS levels, each scanned until the first thread allowed here.
            for level in (floor..Priority::LEVELS).rev() {
                if rq.bitmap & (1 << level) == 0 {
                    continue;
                }
                let mut c = rq.levels[level].front();
                let mut found = None;
                while let Some(t) = c.get() {
                    if self
                        .tcb(t.id())
                        .is_some_and(|tcb| tcb.affinity.contains(cpu))
                    {
                        found = Some(t.id());
                        break;
                    }
                    c.move_next();
                }
                if let Some(id) = found {
                    best = Some((x, level, id));
                    break;
                }
            }
        }
        best
    }

    /// After `cpu` chose what to run: the CPUs running something less important than a thread
    /// still queued here that may run there must reschedule (they will pull it).
    fn push_check(&self, cpu: usize) -> Decision {
        self.push_check_claimed(CpuSet::from_bits(self.pending.bits() | 1 << cpu))
    }

    /// [`Sched::push_check`] with `claimed` CPUs already spoken for.
    fn push_check_claimed(&self, claimed: CpuSet) -> Decision {
        let mut d = Decision::default();
        if self.online.bits().count_ones() == 1 {
            return d;
        }
        // Every queue, most important level first: each ready thread that some CPU not yet
        // claimed (by this pass, an earlier IPI, or `cpu` itself) should run instead of what it
        // runs claims that CPU. RT: O(occupied levels × CPUs + queued threads × CPUs).
        let mut claimed = claimed;
        // Only the levels some online CPU has a queued thread at, most important first.
        let mut levels = self
            .online
            .iter()
            .fold(0u64, |acc, x| acc | self.cpus[x].rq.bitmap);
        while levels != 0 {
            let level = 63 - levels.leading_zeros() as usize;
            levels &= !(1u64 << level);
            for x in self.online.iter() {
                let rq = &self.cpus[x].rq;
                if rq.bitmap & (1 << level) == 0 {
                    continue;
                }
                let mut c = rq.levels[level].front();
                while let Some(t) = c.get() {
                    if let Some(tcb) = self.tcb(t.id())
                        && let Some(target) =
                            self.least_important_cpu_except(tcb.affinity, x, claimed)
                        && tcb
                            .eff
                            .is_more_important_than(self.eff_of(self.current(target)))
                    {
                        d = d.merge(Decision::cpu(target));
                        claimed = CpuSet::from_bits(claimed.bits() | 1 << target);
                    }
                    c.move_next();
                }
            }
        }
        d
    }

    /// The earliest time `cpu` must be interrupted: its first sleeper's deadline or the end of
    /// the current thread's slice. The kernel arms the CPU's one-shot timer for it (tickless).
    pub fn next_deadline(&self, cpu: usize) -> Option<Instant> {
        let c = &self.cpus[cpu];
        let sleeper = c
            .sleepers
            .front()
            .get()
            .map(|t| Instant::from_nanos(t.sleep_deadline.load(Ordering::Relaxed)));
        match (sleeper, c.slice_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles `cpu`'s timer interrupt: wakes every sleeper whose deadline has passed and ends
    /// an expired slice. RT: O(k log n) for k expired sleepers.
    pub fn expire(&mut self, cpu: usize, now: Instant) -> Decision {
        let mut d = Decision::default();
        loop {
            let front = self.cpus[cpu]
                .sleepers
                .front()
                .get()
                .map(|t| (t.sleep_deadline.load(Ordering::Relaxed), t.id()));
            match front {
                Some((deadline, id)) if deadline <= now.as_nanos() => {
                    d = d.merge(self.make_ready(id, WakeReason::Timeout));
                }
                _ => break,
            }
        }
        if self.cpus[cpu].slice_end.is_some_and(|end| end <= now) {
            d = d.merge(Decision::cpu(cpu));
        }
        d
    }

    /// The running thread gives up the CPU to the next thread of the same priority, if any.
    pub fn yield_current(&mut self, cpu: usize) -> Decision {
        let cur = self.current(cpu);
        self.tcb_mut(cur).yield_pending = true;
        Decision::cpu(cpu)
    }

    /// Blocks the running thread of `cpu`, optionally on `obj`'s wait queue (priority-ordered)
    /// and optionally until `deadline`.
    fn block_current(
        &mut self,
        cpu: usize,
        obj: Option<ObjectId>,
        deadline: Option<Instant>,
    ) -> Result<Decision, SchedError> {
        let cur = self.current(cpu);
        let atomic = self.cpus[cpu].atomic;
        let t = self.tcb_mut(cur);
        if t.is_idle {
            return Err(SchedError::WouldBlockIdle);
        }
        if atomic {
            return Err(SchedError::AtomicContext);
        }
        t.state = State::Blocked;
        t.blocked_on = obj;
        t.wake = WakeReason::None;
        let thread = t.thread.clone();
        let eff = t.eff;
        let on = match obj.and_then(|o| self.obj(o)).map(|o| &o.kind) {
            Some(Kind::Mutex { .. }) => BlockOn::Mutex,
            Some(Kind::Semaphore { .. }) => BlockOn::Semaphore,
            Some(Kind::Events { .. }) => BlockOn::Events,
            Some(Kind::Queue) | None if obj.is_some() => BlockOn::Queue,
            _ => BlockOn::Sleep,
        };
        self.notify(SchedEvent::Block {
            thread: &thread,
            on,
            object: obj.map_or(0, ObjectId::to_raw),
        });
        if let Some(obj) = obj {
            self.enqueue_waiter(obj, thread.clone(), eff);
        }
        if let Some(deadline) = deadline {
            thread
                .sleep_deadline
                .store(deadline.as_nanos(), Ordering::Relaxed);
            self.cpus[cpu].sleepers.insert(thread);
        }
        Ok(Decision::cpu(cpu))
    }

    /// Inserts `thread` into `obj`'s waiters after every waiter at least as important.
    /// RT: O(waiters).
    fn enqueue_waiter(&mut self, obj: ObjectId, thread: Arc<Thread>, eff: Priority) {
        // Collect the priority of each waiter first (tcbs and the list are separate borrows).
        let Some(o) = self.obj(obj) else { return };
        let mut position = 0usize;
        let mut cursor = o.waiters.front();
        while let Some(w) = cursor.get() {
            if eff.is_more_important_than(self.eff_of(w.id())) {
                break;
            }
            position += 1;
            cursor.move_next();
        }
        let o = self.obj_mut(obj).expect("checked above");
        let mut cursor = o.waiters.front_mut();
        for _ in 0..position {
            cursor.move_next();
        }
        if cursor.is_null() {
            o.waiters.push_back(thread);
        } else {
            cursor.insert_before(thread);
        }
    }

    /// Puts the running thread to sleep until `deadline`. A deadline already passed blocks
    /// nothing.
    pub fn sleep_until(
        &mut self,
        cpu: usize,
        deadline: Instant,
        now: Instant,
    ) -> Result<Decision, SchedError> {
        if deadline <= now {
            return Ok(Decision::default());
        }
        self.block_current(cpu, None, Some(deadline))
    }

    /// Suspends a thread: it does not run until [`Sched::resume`].
    ///
    /// - ready: taken off its run queue at once;
    /// - running (here or on another CPU): it stays `Running` with the suspension pending,
    ///   and its CPU (named in the decision) parks it when it switches it out; a resume before
    ///   then cancels the suspension. The kernel makes the caller wait for that with
    ///   [`Sched::halt_wait`];
    /// - blocked or sleeping: it finishes its wait (keeping why it woke) and is parked
    ///   instead of becoming ready; a resume before then cancels the suspension;
    /// - suspended already: nothing (suspensions do not nest).
    ///
    /// Errors: an unknown or exited thread (`NoSuchThread`), an idle thread (`IdleThread`);
    /// the state is then unchanged.
    pub fn suspend(&mut self, id: ThreadId) -> Result<Decision, SchedError> {
        let t = self.try_tcb_mut(id)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        match t.state {
            State::Ready => {
                let (cpu, level, thread) = (t.cpu, t.queued_level, t.thread.clone());
                t.state = State::Suspended;
                self.cpus[cpu].rq.remove(level, &thread);
                Ok(Decision::default())
            }
            State::Running if t.suspend_requested => Ok(Decision::default()),
            State::Running => {
                t.suspend_requested = true;
                Ok(Decision::cpu(t.cpu))
            }
            State::Blocked => {
                t.suspend_requested = true;
                Ok(Decision::default())
            }
            State::Suspended => Ok(Decision::default()),
            State::Exited => Err(SchedError::NoSuchThread),
        }
    }

    /// Undoes [`Sched::suspend`]: a parked thread becomes ready (a thread parked on waking
    /// keeps its wake reason: a mutex or semaphore unit handed to it while it was suspended
    /// stays its own); a pending suspension of a running or blocked thread is cancelled. A
    /// thread that is not suspended is left alone. Errors as for [`Sched::suspend`].
    pub fn resume(&mut self, id: ThreadId) -> Result<Decision, SchedError> {
        let t = self.try_tcb_mut(id)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        match t.state {
            State::Suspended => {
                t.state = State::Ready;
                let home = t.cpu;
                Ok(self.enqueue_ready(id, false, home))
            }
            State::Blocked => {
                t.suspend_requested = false;
                Ok(Decision::default())
            }
            State::Running if t.suspend_requested => {
                // Cancelled before its CPU switched it out: it keeps running there, and
                // whoever waits for it to stop learns it will not.
                t.suspend_requested = false;
                let q = self.halt_queue;
                Ok(self.wake_all(q, WakeReason::Signaled))
            }
            State::Exited => Err(SchedError::NoSuchThread),
            State::Ready | State::Running => Ok(Decision::default()),
        }
    }

    /// Whether `id` is running on a CPU it was asked to leave (a pending suspension, or an
    /// affinity without that CPU) — i.e. its CPU has yet to switch it out.
    pub fn is_leaving_cpu(&self, id: ThreadId) -> bool {
        self.tcb(id).is_some_and(|t| {
            t.state == State::Running
                && self.cpus[t.cpu].current == Some(id)
                && (t.suspend_requested || !t.affinity.contains(t.cpu))
        })
    }

    /// Makes the running thread of `cpu` wait until `target` has left the CPU it runs on
    /// elsewhere (after [`Sched::suspend`] or [`Sched::set_affinity`] of a thread running on
    /// another CPU). `Ok((true, _))`: nothing to wait for (it already left, or the suspension
    /// was cancelled, or it is the caller). `Ok((false, d))`: blocked; ask again on waking
    /// (every wake-up of this queue is a hint, not a promise).
    pub fn halt_wait(
        &mut self,
        cpu: usize,
        target: ThreadId,
    ) -> Result<(bool, Decision), SchedError> {
        let cur = self.current(cpu);
        // An idle thread (boot code) cannot wait: for it the change takes effect on its own.
        if target == cur || !self.is_leaving_cpu(target) || self.tcb(cur).is_some_and(|t| t.is_idle)
        {
            return Ok((true, Decision::default()));
        }
        let q = self.halt_queue;
        Ok((false, self.block_current(cpu, Some(q), None)?))
    }

    /// Changes a thread's base priority; its effective priority follows, and so does what it
    /// passes on through priority inheritance.
    pub fn set_priority(&mut self, id: ThreadId, prio: Priority) -> Result<Decision, SchedError> {
        let t = self.try_tcb_mut(id)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        if prio == Priority::IDLE {
            return Err(SchedError::BadPriority);
        }
        if t.state == State::Exited {
            return Err(SchedError::NoSuchThread);
        }
        t.base = prio;
        Ok(self.update_priority_for(id, PrioCause::Set))
    }

    /// Changes the CPUs a thread may run on. An empty mask, or one naming no online CPU, is an
    /// error. A thread running or queued on a CPU it may no longer use moves.
    pub fn set_affinity(&mut self, id: ThreadId, affinity: CpuSet) -> Result<Decision, SchedError> {
        if affinity.intersect(self.online).is_empty() {
            return Err(SchedError::NoUsableCpu);
        }
        let online = self.online;
        let t = self.try_tcb_mut(id)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        if t.state == State::Exited {
            return Err(SchedError::NoSuchThread);
        }
        let was_leaving = t.state == State::Running && !t.affinity.contains(t.cpu);
        t.affinity = affinity;
        let (state, cpu, level, thread) = (t.state, t.cpu, t.queued_level, t.thread.clone());
        if was_leaving && affinity.contains(cpu) && !self.is_leaving_cpu(id) {
            // Given its CPU back before it left: it stays, and whoever waits for it to leave
            // learns it will not.
            let q = self.halt_queue;
            return Ok(self.wake_all(q, WakeReason::Signaled));
        }
        match state {
            State::Ready => {
                // Re-placed even when its queue's CPU is still allowed: a newly allowed CPU may
                // be running something less important.
                self.cpus[cpu].rq.remove(level, &thread);
                let home = if affinity.contains(cpu) {
                    cpu
                } else {
                    affinity.intersect(online).first().expect("checked above")
                };
                Ok(self.enqueue_ready(id, false, home))
            }
            State::Running if !affinity.contains(cpu) => Ok(Decision::cpu(cpu)),
            State::Blocked if !affinity.contains(cpu) => {
                // It wakes on its sleep queue's CPU and is then placed within the new mask.
                Ok(Decision::default())
            }
            _ => Ok(Decision::default()),
        }
    }

    /// Whether `cpu`'s current thread has just blocked, exited or been suspended by itself:
    /// the kernel reschedules such a CPU before it releases the scheduler lock (test
    /// harnesses do the same).
    #[cfg(test)]
    pub(crate) fn is_switching_out(&self, cpu: usize) -> bool {
        self.tcb(self.current(cpu))
            .is_some_and(|t| t.state != State::Running)
    }

    /// The CPUs that are online.
    pub fn online(&self) -> CpuSet {
        self.online
    }

    /// Tells the scheduler whether the caller on `cpu` runs with interrupts disabled (the
    /// kernel sets it around each operation): while set, any operation that would block the
    /// running thread fails with `AtomicContext` and changes nothing.
    pub fn set_atomic(&mut self, cpu: usize, atomic: bool) {
        self.cpus[cpu].atomic = atomic;
    }

    /// Records that `cpu` was told to reschedule (the kernel sent it an IPI); cleared when it
    /// runs [`Sched::pick_next`].
    pub fn note_resched_sent(&mut self, cpu: usize) {
        self.pending = CpuSet::from_bits(self.pending.bits() | 1 << cpu);
    }

    /// Recomputes `id`'s effective priority from its base and the waiters of the mutexes it
    /// holds, moves it in whatever queue it is on, and follows the chain of mutex owners while
    /// priorities keep changing. RT: bounded by the number of threads (the chain is acyclic:
    /// `mutex_lock` refuses to close a cycle).
    fn update_priority(&mut self, id: ThreadId) -> Decision {
        self.update_priority_for(id, PrioCause::Restore)
    }

    /// [`Sched::update_priority`], telling the observer the first link's change was for
    /// `first` when it is not an inheritance boost (a base priority set, or a restore).
    fn update_priority_for(&mut self, mut id: ThreadId, first: PrioCause) -> Decision {
        let mut d = Decision::default();
        for depth in 0..=self.tcbs.len() {
            let t = self.tcb(id).expect("live");
            // An idle thread (a CPU's boot context, which may take a mutex during boot) is
            // never boosted: it is never queued, and runs only when its CPU has nothing else.
            if t.is_idle {
                return d;
            }
            let mut eff = t.base;
            let mut by = None;
            for m in t.held.iter().flatten() {
                if let Some(top) = self
                    .obj(*m)
                    .and_then(|o| o.waiters.front().get().map(|w| w.id()))
                {
                    let p = self.eff_of(top);
                    if p.is_more_important_than(eff) {
                        eff = p;
                        by = Some(top);
                    }
                }
            }
            let t = self.tcb_mut(id);
            if t.eff == eff {
                return d;
            }
            let old = t.eff;
            t.eff = eff;
            let cause = if by.is_some() && eff.is_more_important_than(old) {
                PrioCause::Boost
            } else if depth == 0 {
                first
            } else {
                PrioCause::Restore
            };
            if let Some(t) = self.tcb(id) {
                self.notify(SchedEvent::Prio {
                    thread: &t.thread,
                    old,
                    new: eff,
                    cause,
                    by,
                    depth: depth as u32,
                });
            }
            let t = self.tcb_mut(id);
            let (state, cpu, thread, blocked_on, level) = (
                t.state,
                t.cpu,
                t.thread.clone(),
                t.blocked_on,
                t.queued_level,
            );
            match state {
                State::Ready => {
                    self.cpus[cpu].rq.remove(level, &thread);
                    d = d.merge(self.enqueue_ready(id, false, cpu));
                }
                State::Running => {
                    // Lowered: something ready may now be more important.
                    if old.is_more_important_than(eff) {
                        d = d.merge(Decision::cpu(cpu));
                    }
                }
                State::Blocked => {
                    if let Some(obj) = blocked_on {
                        if let Some(o) = self.obj_mut(obj) {
                            remove_from_list(&mut o.waiters, &thread);
                        }
                        self.enqueue_waiter(obj, thread, eff);
                        if let Some(owner) = self.mutex_owner(obj) {
                            id = owner;
                            continue;
                        }
                    }
                }
                State::Suspended | State::Exited => {}
            }
            return d;
        }
        d
    }

    /// Ends the running thread of `cpu` with `code`: mutexes it still holds are handed on
    /// (their next owner learns they were abandoned), joiners are woken.
    pub fn exit_current(&mut self, cpu: usize, code: i32) -> Decision {
        let cur = self.current(cpu);
        let mut d = Decision::cpu(cpu);
        let held: Vec<ObjectId> = self
            .tcb(cur)
            .expect("live")
            .held
            .iter()
            .flatten()
            .copied()
            .collect();
        for m in held {
            d = d.merge(self.release_mutex(cur, m, WakeReason::Abandoned));
        }
        if let Some(t) = self.tcb(cur) {
            self.notify(SchedEvent::Exit {
                thread: &t.thread,
                code,
            });
        }
        let t = self.tcb_mut(cur);
        t.state = State::Exited;
        t.exit_code = code;
        if let Some(q) = t.join_queue {
            d = d.merge(self.wake_all(q, WakeReason::Signaled));
        }
        d
    }

    /// Collects `target`'s exit code, or blocks the running thread until it exits.
    /// `Ok(Some(code))`: exited (the thread may now be reaped). `Ok(None)`: blocked; ask again
    /// after waking.
    pub fn join(
        &mut self,
        cpu: usize,
        target: ThreadId,
    ) -> Result<(Option<i32>, Decision), SchedError> {
        let cur = self.current(cpu);
        let t = self.try_tcb_mut(target)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        if target == cur || t.detached || t.joined {
            return Err(SchedError::BadJoin);
        }
        if t.state == State::Exited {
            t.joined = true;
            return Ok((Some(t.exit_code), Decision::default()));
        }
        let q = t.join_queue.expect("spawned threads have a join queue");
        Ok((None, self.block_current(cpu, Some(q), None)?))
    }

    /// Marks a thread as never to be joined: it is reapable as soon as it exits.
    pub fn detach(&mut self, id: ThreadId) -> Result<(), SchedError> {
        let t = self.try_tcb_mut(id)?;
        if t.is_idle {
            return Err(SchedError::IdleThread);
        }
        if t.joined {
            return Err(SchedError::BadJoin);
        }
        t.detached = true;
        Ok(())
    }

    /// Removes an exited thread that was joined or detached and is not running anywhere, and
    /// returns it (its stack may now be freed). `None` if it is not reapable yet.
    pub fn reap(&mut self, id: ThreadId) -> Option<Arc<Thread>> {
        let t = self.tcb(id)?;
        if t.state != State::Exited
            || !(t.joined || t.detached)
            || self.cpus.iter().any(|c| c.current == Some(id))
        {
            return None;
        }
        let join = t.join_queue;
        let tcb = self.tcbs[id.index()].take().expect("checked");
        self.tcb_generations[id.index()] = self.tcb_generations[id.index()].wrapping_add(1);
        self.free_tcbs.push(id.index() as u32);
        if let Some(q) = join {
            let _ = self.destroy_object(q);
        }
        Some(tcb.thread)
    }

    /// Reaps every exited detached thread that no CPU still runs, handing each to `f`.
    pub fn reap_all(&mut self, mut f: impl FnMut(Arc<Thread>)) {
        let ids: Vec<ThreadId> = self
            .tcbs
            .iter()
            .flatten()
            .filter(|t| t.state == State::Exited && t.detached)
            .map(|t| t.thread.id())
            .collect();
        for id in ids {
            if let Some(t) = self.reap(id) {
                f(t);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sync objects

    fn create_object(&mut self, kind: Kind) -> ObjectId {
        let index = match self.free_objects.pop() {
            Some(i) => i as usize,
            None => {
                self.objects.push(None);
                self.object_generations.push(0);
                self.objects.len() - 1
            }
        };
        let id = ObjectId(u64::from(self.object_generations[index]) << 32 | index as u64);
        self.objects[index] = Some(Object {
            id,
            kind,
            waiters: LinkedList::new(RunAdapter::new()),
        });
        id
    }

    fn obj(&self, id: ObjectId) -> Option<&Object> {
        self.objects
            .get(id.index())?
            .as_ref()
            .filter(|o| o.id == id)
    }

    fn obj_mut(&mut self, id: ObjectId) -> Option<&mut Object> {
        self.objects
            .get_mut(id.index())?
            .as_mut()
            .filter(|o| o.id == id)
    }

    /// The thread holding mutex `id`, if any.
    pub fn mutex_holder(&self, id: ObjectId) -> Option<ThreadId> {
        self.mutex_owner(id)
    }

    fn mutex_owner(&self, id: ObjectId) -> Option<ThreadId> {
        match self.obj(id)?.kind {
            Kind::Mutex { owner } => owner,
            _ => None,
        }
    }

    /// A new wait queue (for condition variables).
    pub fn create_queue(&mut self) -> ObjectId {
        self.create_object(Kind::Queue)
    }

    /// A new, unlocked mutex with priority inheritance.
    pub fn create_mutex(&mut self) -> ObjectId {
        self.create_object(Kind::Mutex { owner: None })
    }

    /// A new counting semaphore holding `initial` units, at most `max`.
    pub fn create_semaphore(&mut self, initial: u32, max: u32) -> ObjectId {
        self.create_object(Kind::Semaphore {
            count: initial.min(max),
            max,
        })
    }

    /// A new set of 32 event flags, all clear.
    pub fn create_events(&mut self) -> ObjectId {
        self.create_object(Kind::Events { bits: 0 })
    }

    /// Destroys an object. Refused while threads wait on it or a mutex is owned.
    pub fn destroy_object(&mut self, id: ObjectId) -> Result<(), SchedError> {
        let o = self.obj(id).ok_or(SchedError::NoSuchObject)?;
        if !o.waiters.is_empty() || matches!(o.kind, Kind::Mutex { owner: Some(_) }) {
            return Err(SchedError::Busy);
        }
        self.objects[id.index()] = None;
        self.object_generations[id.index()] = self.object_generations[id.index()].wrapping_add(1);
        self.free_objects.push(id.index() as u32);
        Ok(())
    }

    /// Locks mutex `m` for the running thread of `cpu`. `Ok((true, _))`: acquired.
    /// `Ok((false, d))`: blocked (until `deadline` if given); on waking,
    /// [`Sched::take_wake_reason`] says `Acquired` (ownership was handed over) or `Timeout`.
    /// `try_only` refuses to block and returns `Ok((false, no decision))` instead.
    pub fn mutex_lock(
        &mut self,
        cpu: usize,
        m: ObjectId,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> Result<(bool, Decision), SchedError> {
        let cur = self.current(cpu);
        let owner = match self.obj(m).ok_or(SchedError::NoSuchObject)?.kind {
            Kind::Mutex { owner } => owner,
            _ => return Err(SchedError::NoSuchObject),
        };
        match owner {
            None => {
                self.add_held(cur, m)?;
                if let Some(Kind::Mutex { owner }) = self.obj_mut(m).map(|o| &mut o.kind) {
                    *owner = Some(cur);
                }
                Ok((true, Decision::default()))
            }
            Some(o) if o == cur => Err(SchedError::AlreadyOwner),
            Some(o) => {
                if try_only {
                    return Ok((false, Decision::default()));
                }
                // Refuse to close a cycle: follow owner -> the mutex it waits on -> its owner.
                let mut t = o;
                for _ in 0..=self.tcbs.len() {
                    if t == cur {
                        return Err(SchedError::Deadlock);
                    }
                    match self
                        .tcb(t)
                        .and_then(|x| x.blocked_on)
                        .and_then(|b| self.mutex_owner(b))
                    {
                        Some(next) => t = next,
                        None => break,
                    }
                }
                if self
                    .tcb(cur)
                    .expect("live")
                    .held
                    .iter()
                    .all(Option::is_some)
                {
                    return Err(SchedError::TooManyMutexes);
                }
                let d = self.block_current(cpu, Some(m), deadline)?;
                Ok((false, d.merge(self.update_priority(o))))
            }
        }
    }

    fn add_held(&mut self, id: ThreadId, m: ObjectId) -> Result<(), SchedError> {
        let t = self.tcb_mut(id);
        let slot = t
            .held
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(SchedError::TooManyMutexes)?;
        *slot = Some(m);
        Ok(())
    }

    /// The live (not exited) thread whose [`ThreadId::fast_tag`] is `tag`, if any: the owner a
    /// mutex's lock-free fast path recorded, looked up when a second thread arrives.
    pub fn thread_of_tag(&self, tag: u64) -> Option<ThreadId> {
        let index = (tag as u32).checked_sub(1)? as usize;
        let t = self.tcbs.get(index)?.as_ref()?;
        let id = t.thread.id();
        (id.fast_tag() == tag && t.state != State::Exited).then_some(id)
    }

    /// Records `owner` as the owner of the free, unwaited mutex `m`: a mutex taken on a
    /// lock-free fast path, handed to the scheduler when a second thread arrives so that it
    /// can block with priority inheritance. Refused if `m` is owned or waited on, or if `owner`
    /// holds [`crate::MAX_HELD_MUTEXES`] mutexes in the scheduler's record already.
    pub fn mutex_adopt(&mut self, m: ObjectId, owner: ThreadId) -> Result<(), SchedError> {
        let o = self.obj(m).ok_or(SchedError::NoSuchObject)?;
        match o.kind {
            Kind::Mutex { owner: None } if o.waiters.is_empty() => {}
            Kind::Mutex { .. } => return Err(SchedError::Busy),
            _ => return Err(SchedError::NoSuchObject),
        }
        self.try_tcb_mut(owner)?;
        self.add_held(owner, m)?;
        if let Some(Kind::Mutex { owner: slot }) = self.obj_mut(m).map(|o| &mut o.kind) {
            *slot = Some(owner);
        }
        Ok(())
    }

    /// Whether mutex `m` is free with nobody waiting (so a lock-free fast path may take it
    /// over again).
    pub fn mutex_is_idle(&self, m: ObjectId) -> bool {
        self.obj(m)
            .is_some_and(|o| matches!(o.kind, Kind::Mutex { owner: None }) && o.waiters.is_empty())
    }

    /// Unlocks mutex `m`, held by the running thread of `cpu`, handing it to its most important
    /// waiter.
    pub fn mutex_unlock(&mut self, cpu: usize, m: ObjectId) -> Result<Decision, SchedError> {
        let cur = self.current(cpu);
        match self.obj(m).ok_or(SchedError::NoSuchObject)?.kind {
            Kind::Mutex { owner } if owner == Some(cur) => {}
            Kind::Mutex { .. } => return Err(SchedError::NotOwner),
            _ => return Err(SchedError::NoSuchObject),
        }
        Ok(self.release_mutex(cur, m, WakeReason::Acquired))
    }

    fn release_mutex(&mut self, holder: ThreadId, m: ObjectId, reason: WakeReason) -> Decision {
        if let Some(slot) = self
            .tcb_mut(holder)
            .held
            .iter_mut()
            .find(|s| **s == Some(m))
        {
            *slot = None;
        }
        let next = self
            .obj_mut(m)
            .and_then(|o| o.waiters.pop_front())
            .map(|t| t.id());
        if let Some(Kind::Mutex { owner }) = self.obj_mut(m).map(|o| &mut o.kind) {
            *owner = next;
        }
        let mut d = self.update_priority(holder);
        if let Some(n) = next {
            // The waiter was popped above; it holds at most MAX-1 mutexes (checked at lock).
            let _ = self.add_held(n, m);
            d = d.merge(self.wake_popped(n, reason));
            d = d.merge(self.update_priority(n));
        }
        d
    }

    /// Wakes a thread already taken off its object's wait queue.
    fn wake_popped(&mut self, id: ThreadId, reason: WakeReason) -> Decision {
        // `make_ready` would look for it on the queue and re-derive the owner's priority; the
        // caller has done both.
        self.tcb_mut(id).blocked_on = None;
        self.make_ready(id, reason)
    }

    /// Takes a unit of semaphore `s` for the running thread of `cpu`: `Ok((true, _))` taken;
    /// `Ok((false, d))` blocked (or refused when `try_only`). On waking, `Acquired` or `Timeout`.
    pub fn sem_take(
        &mut self,
        cpu: usize,
        s: ObjectId,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> Result<(bool, Decision), SchedError> {
        let o = self.obj_mut(s).ok_or(SchedError::NoSuchObject)?;
        match &mut o.kind {
            Kind::Semaphore { count, .. } if *count > 0 => {
                *count -= 1;
                Ok((true, Decision::default()))
            }
            Kind::Semaphore { .. } if try_only => Ok((false, Decision::default())),
            Kind::Semaphore { .. } => Ok((false, self.block_current(cpu, Some(s), deadline)?)),
            _ => Err(SchedError::NoSuchObject),
        }
    }

    /// Gives a unit to semaphore `s`: straight to its most important waiter if there is one.
    /// Safe from interrupt context (it never blocks).
    pub fn sem_give(&mut self, s: ObjectId) -> Result<Decision, SchedError> {
        let o = self.obj_mut(s).ok_or(SchedError::NoSuchObject)?;
        let Kind::Semaphore { count, max } = &mut o.kind else {
            return Err(SchedError::NoSuchObject);
        };
        if let Some(w) = o.waiters.pop_front() {
            return Ok(self.wake_popped(w.id(), WakeReason::Acquired));
        }
        if *count >= *max {
            return Err(SchedError::Overflow);
        }
        *count += 1;
        Ok(Decision::default())
    }

    /// Adds `units` to semaphore `s` without waking anyone: units handed back by a lock-free
    /// fast path that held them while the semaphore had no waiters. Refused past its maximum.
    pub fn sem_deposit(&mut self, s: ObjectId, units: u32) -> Result<(), SchedError> {
        let o = self.obj_mut(s).ok_or(SchedError::NoSuchObject)?;
        let Kind::Semaphore { count, max } = &mut o.kind else {
            return Err(SchedError::NoSuchObject);
        };
        match count.checked_add(units) {
            Some(n) if n <= *max => {
                *count = n;
                Ok(())
            }
            _ => Err(SchedError::Overflow),
        }
    }

    /// Takes every unit of semaphore `s` out, if no thread waits on it (for a lock-free fast
    /// path to hold them until one does). `None` while it has waiters.
    pub fn sem_withdraw_if_idle(&mut self, s: ObjectId) -> Option<u32> {
        let o = self.obj_mut(s)?;
        if !o.waiters.is_empty() {
            return None;
        }
        match &mut o.kind {
            Kind::Semaphore { count, .. } => Some(core::mem::take(count)),
            _ => None,
        }
    }

    /// The units semaphore `s` holds.
    pub fn sem_count(&self, s: ObjectId) -> Option<u32> {
        match self.obj(s)?.kind {
            Kind::Semaphore { count, .. } => Some(count),
            _ => None,
        }
    }

    /// Blocks the running thread on wait queue `q` (until `deadline` if given).
    pub fn queue_wait(
        &mut self,
        cpu: usize,
        q: ObjectId,
        deadline: Option<Instant>,
    ) -> Result<Decision, SchedError> {
        match self.obj(q).ok_or(SchedError::NoSuchObject)?.kind {
            Kind::Queue => self.block_current(cpu, Some(q), deadline),
            _ => Err(SchedError::NoSuchObject),
        }
    }

    /// Wakes the most important waiter of `q`.
    pub fn queue_wake_one(&mut self, q: ObjectId) -> Decision {
        match self.obj_mut(q).and_then(|o| o.waiters.pop_front()) {
            Some(w) => self.wake_popped(w.id(), WakeReason::Signaled),
            None => Decision::default(),
        }
    }

    /// Wakes every waiter of `q`. RT: O(waiters).
    pub fn queue_wake_all(&mut self, q: ObjectId) -> Decision {
        self.wake_all(q, WakeReason::Signaled)
    }

    fn wake_all(&mut self, q: ObjectId, reason: WakeReason) -> Decision {
        let mut d = Decision::default();
        while let Some(w) = self.obj_mut(q).and_then(|o| o.waiters.pop_front()) {
            d = d.merge(self.wake_popped(w.id(), reason));
        }
        d
    }

    /// Waits on event flags `e`: returns `Ok(Some(bits))` at once if `wait` is satisfied
    /// (clearing them if asked), else blocks (`Ok(None)`; on waking, `Signaled` with
    /// [`Sched::take_event_bits`], or `Timeout`).
    pub fn events_wait(
        &mut self,
        cpu: usize,
        e: ObjectId,
        wait: EventWait,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> Result<(Option<u32>, Decision), SchedError> {
        let cur = self.current(cpu);
        let o = self.obj_mut(e).ok_or(SchedError::NoSuchObject)?;
        let Kind::Events { bits } = &mut o.kind else {
            return Err(SchedError::NoSuchObject);
        };
        if wait.satisfied_by(*bits) {
            let seen = *bits;
            if wait.clear {
                *bits &= !wait.mask;
            }
            return Ok((Some(seen), Decision::default()));
        }
        if try_only {
            return Ok((None, Decision::default()));
        }
        self.tcb_mut(cur).event_wait = wait;
        Ok((None, self.block_current(cpu, Some(e), deadline)?))
    }

    /// Sets bits in event flags `e` and wakes every waiter now satisfied, most important
    /// first (a waiter that clears bits may leave later ones unsatisfied). Safe from interrupt
    /// context: allocates nothing. RT: O(waiters²) list steps in the worst case (each wake
    /// re-walks to its position), bounded by the thread count.
    pub fn events_set(&mut self, e: ObjectId, set: u32) -> Result<Decision, SchedError> {
        let o = self.obj_mut(e).ok_or(SchedError::NoSuchObject)?;
        let Kind::Events { bits } = &mut o.kind else {
            return Err(SchedError::NoSuchObject);
        };
        *bits |= set;
        let mut d = Decision::default();
        // Walk the waiters in priority order without allocating (this runs in interrupt
        // context): `skip` counts the unsatisfied ones already passed; a woken waiter leaves
        // the list, so the walk resumes at the same position.
        let mut skip = 0usize;
        // RT: each pass wakes one waiter or passes one, so at most 2 × waiters passes.
        while let Some(Kind::Events { bits }) = self.obj(e).map(|o| &o.kind) {
            let bits = *bits;
            let Some(o) = self.obj(e) else { break };
            let mut cursor = o.waiters.front();
            for _ in 0..skip {
                cursor.move_next();
            }
            let Some(w) = cursor.get().map(|t| t.id()) else {
                break;
            };
            let wait = self.tcb(w).expect("waiters are live threads").event_wait;
            if !wait.satisfied_by(bits) {
                skip += 1;
                continue;
            }
            if let Some(Kind::Events { bits }) = self.obj_mut(e).map(|o| &mut o.kind)
                && wait.clear
            {
                *bits &= !wait.mask;
            }
            self.tcb_mut(w).event_bits = bits;
            d = d.merge(self.make_ready(w, WakeReason::Signaled));
        }
        Ok(d)
    }

    /// Sets `bits` in event flags `e` without waking anyone: flags handed over by a lock-free
    /// fast path that held them while nobody waited (the object's flags are clear then).
    pub fn events_deposit(&mut self, e: ObjectId, set: u32) -> Result<(), SchedError> {
        match &mut self.obj_mut(e).ok_or(SchedError::NoSuchObject)?.kind {
            Kind::Events { bits } => {
                *bits |= set;
                Ok(())
            }
            _ => Err(SchedError::NoSuchObject),
        }
    }

    /// Takes every flag of event flags `e` out (clearing them), if no thread waits on it, for
    /// a lock-free fast path to hold them until one does. `None` while it has waiters.
    pub fn events_withdraw_if_idle(&mut self, e: ObjectId) -> Option<u32> {
        let o = self.obj_mut(e)?;
        if !o.waiters.is_empty() {
            return None;
        }
        match &mut o.kind {
            Kind::Events { bits } => Some(core::mem::take(bits)),
            _ => None,
        }
    }

    /// Clears bits in event flags `e`.
    pub fn events_clear(&mut self, e: ObjectId, clear: u32) -> Result<u32, SchedError> {
        match &mut self.obj_mut(e).ok_or(SchedError::NoSuchObject)?.kind {
            Kind::Events { bits } => {
                *bits &= !clear;
                Ok(*bits)
            }
            _ => Err(SchedError::NoSuchObject),
        }
    }

    /// Calls `f` with every thread not yet exited, in table order (the kernel clones what it
    /// needs; nothing here allocates).
    pub fn for_each_thread(&self, mut f: impl FnMut(&Arc<Thread>)) {
        for t in self.tcbs.iter().flatten() {
            if t.state != State::Exited {
                f(&t.thread);
            }
        }
    }

    /// Calls `f` with every thread not yet exited and its scheduling state, in table order
    /// (nothing here allocates: the caller copies what it keeps).
    pub fn for_each_thread_state(&self, mut f: impl FnMut(&Arc<Thread>, ThreadState)) {
        for t in self.tcbs.iter().flatten() {
            let state = match t.state {
                State::Exited => continue,
                State::Ready => RunState::Ready,
                State::Running => RunState::Running,
                State::Blocked => RunState::Blocked,
                State::Suspended => RunState::Suspended,
            };
            let on = t
                .blocked_on
                .and_then(|o| self.obj(o))
                .map(|obj| match obj.kind {
                    Kind::Queue => "queue",
                    Kind::Mutex { .. } => "mutex",
                    Kind::Semaphore { .. } => "semaphore",
                    Kind::Events { .. } => "events",
                });
            f(
                &t.thread,
                ThreadState {
                    state,
                    suspend_pending: t.suspend_requested,
                    base: t.base,
                    effective: t.eff,
                    cpu: t.cpu,
                    affinity: t.affinity,
                    blocked_on: match (state, on) {
                        (RunState::Blocked, None) => Some("sleep"),
                        (_, on) => on,
                    },
                },
            );
        }
    }

    /// Writes one line per live thread — id, name, state (with a pending suspension), base
    /// and effective priority, CPU, affinity, the object it waits on — and each online CPU's
    /// current thread: what a stall report prints. Reads only; formats into `out` (the kernel
    /// passes a fixed buffer, so nothing allocates under the scheduler lock).
    pub fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        for cpu in self.online.iter() {
            writeln!(out, "cpu{cpu}: running {:?}", self.current(cpu))?;
        }
        for t in self.tcbs.iter().flatten() {
            if t.state == State::Exited {
                // Exited but not reaped: someone has yet to join it (or it is detached and the
                // reaper has not run); one word is enough.
                writeln!(
                    out,
                    "{:?} '{}' Exited ({}) code {}",
                    t.thread.id(),
                    t.thread.name(),
                    if t.joined || t.detached {
                        "to reap"
                    } else {
                        "not joined"
                    },
                    t.exit_code
                )?;
                continue;
            }
            write!(
                out,
                "{:?} '{}' {:?}{} prio {}/{} cpu{} affinity {:?}",
                t.thread.id(),
                t.thread.name(),
                t.state,
                if t.suspend_requested {
                    " (suspension pending)"
                } else {
                    ""
                },
                t.base.level(),
                t.eff.level(),
                t.cpu,
                t.affinity,
            )?;
            match t.blocked_on {
                Some(o) => {
                    write!(out, " waits on {o:?}")?;
                    self.describe_object(o, out)?;
                    writeln!(out)?;
                }
                None if t.state == State::Blocked => writeln!(out, " (sleeping)")?,
                None => writeln!(out)?,
            }
        }
        Ok(())
    }

    /// What object `o` is, for [`Sched::describe`]: its kind and state, and whose join queue
    /// a queue is.
    fn describe_object(&self, o: ObjectId, out: &mut dyn fmt::Write) -> fmt::Result {
        let Some(obj) = self.obj(o) else {
            return write!(out, " (destroyed)");
        };
        match obj.kind {
            Kind::Queue => match self.tcbs.iter().flatten().find(|t| t.join_queue == Some(o)) {
                Some(t) => write!(out, " (join of {:?}, {:?})", t.thread.id(), t.state)?,
                None => write!(out, " (queue)")?,
            },
            Kind::Mutex { owner } => write!(out, " (mutex held by {owner:?})")?,
            Kind::Semaphore { count, max } => write!(out, " (semaphore {count}/{max})")?,
            Kind::Events { bits } => write!(out, " (events {bits:#x})")?,
        }
        write!(out, " with {} waiters", obj.waiters.iter().count())
    }

    // ---------------------------------------------------------------------------------------
    // The checker

    /// Verifies every invariant of the state; the kernel runs it at each scheduling decision
    /// when checking is enabled, the tests after every operation. Call it only right after
    /// [`Sched::pick_next`] on every CPU with a pending decision.
    pub fn check(&self) -> Result<(), String> {
        for (cpu, c) in self.cpus.iter().enumerate() {
            if !self.online.contains(cpu) {
                continue;
            }
            let lagging = self.pending.contains(cpu);
            let cur = c.current.ok_or_else(|| format!("cpu{cpu} runs nothing"))?;
            let ct = self
                .tcb(cur)
                .ok_or_else(|| format!("cpu{cpu} runs a dead thread"))?;
            // What a CPU runs is `Running` there, always: a thread blocks or exits only itself
            // (and its CPU switches at once), and a suspension or affinity change from another
            // CPU leaves it `Running` until its CPU switches it out.
            if ct.state != State::Running || ct.cpu != cpu {
                return Err(format!(
                    "cpu{cpu}: current {cur:?} is {:?} on cpu{}",
                    ct.state, ct.cpu
                ));
            }
            if ct.thread.run_link.is_linked() || ct.thread.sleep_link.is_linked() {
                return Err(format!("cpu{cpu}: current {cur:?} is also queued"));
            }
            if let Some(other) = (0..cpu).find(|&o| {
                self.online.contains(o) && self.cpus[o].current == Some(cur) && !ct.is_idle
            }) {
                return Err(format!("{cur:?} is current on cpu{other} and cpu{cpu}"));
            }
            // Asked to leave this CPU (suspended, or its affinity changed) from elsewhere: only
            // while this CPU is on its way to reschedule.
            if !lagging && ct.suspend_requested {
                return Err(format!(
                    "cpu{cpu}: runs {cur:?}, suspended, and is not rescheduling"
                ));
            }
            // The running thread is the most important ready one (within this CPU).
            if let Some(h) = c.rq.highest().filter(|&h| h > ct.eff.level() && !lagging) {
                return Err(format!(
                    "cpu{cpu}: runs {cur:?} at {:?} while level {h} is ready",
                    ct.eff
                ));
            }
            for (level, list) in c.rq.levels.iter().enumerate() {
                if list.is_empty() == (c.rq.bitmap & (1 << level) != 0) {
                    return Err(format!("cpu{cpu}: bitmap disagrees with level {level}"));
                }
                let mut cur = list.front();
                while let Some(t) = cur.get() {
                    let tcb = self.tcb(t.id()).ok_or("dead thread queued")?;
                    if tcb.state != State::Ready
                        || tcb.queued_level != level
                        || tcb.eff.level() != level
                        || tcb.cpu != cpu
                    {
                        return Err(format!(
                            "{:?} queued at cpu{cpu}/{level} but {:?} {:?} cpu{}",
                            t.id(),
                            tcb.state,
                            tcb.eff,
                            tcb.cpu
                        ));
                    }
                    cur.move_next();
                }
            }
            let mut s = c.sleepers.front();
            while let Some(t) = s.get() {
                let tcb = self.tcb(t.id()).ok_or("dead thread sleeping")?;
                if tcb.state != State::Blocked || tcb.cpu != cpu {
                    return Err(format!(
                        "{:?} on cpu{cpu}'s sleep queue but {:?} on cpu{}",
                        t.id(),
                        tcb.state,
                        tcb.cpu
                    ));
                }
                s.move_next();
            }
        }
        for o in self.objects.iter().flatten() {
            let mut prev: Option<Priority> = None;
            let mut w = o.waiters.front();
            while let Some(t) = w.get() {
                let tcb = self.tcb(t.id()).ok_or("dead thread waiting")?;
                if tcb.state != State::Blocked || tcb.blocked_on != Some(o.id) {
                    return Err(format!(
                        "{:?} waits on {:?} but is {:?} on {:?}",
                        t.id(),
                        o.id,
                        tcb.state,
                        tcb.blocked_on
                    ));
                }
                if prev.is_some_and(|p| tcb.eff.is_more_important_than(p)) {
                    return Err(format!("waiters of {:?} out of priority order", o.id));
                }
                prev = Some(tcb.eff);
                w.move_next();
            }
            if let Kind::Mutex { owner: Some(owner) } = o.kind {
                let t = self.tcb(owner).ok_or("mutex owned by a dead thread")?;
                if !t.held.contains(&Some(o.id)) {
                    return Err(format!("{owner:?} owns {:?} without holding it", o.id));
                }
            }
        }
        // Global fixed-priority semantics within affinity: no ready thread is more important
        // than what runs on a CPU it may use — except while a CPU told to reschedule (an IPI in
        // flight) is on its way to take it: most important threads first, each such CPU
        // covers one thread it may run.
        let mut ready: Vec<&Tcb> = self
            .tcbs
            .iter()
            .flatten()
            .filter(|t| t.state == State::Ready && !t.is_idle)
            .collect();
        // Most important first, stable. An insertion sort: the checker's lists are short, and
        // the library's stable sort would add ~3.6 KB to every image for this one call.
        for i in 1..ready.len() {
            let mut j = i;
            while j > 0 && ready[j - 1].eff.level() < ready[j].eff.level() {
                ready.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut coming = self.pending.intersect(self.online);
        for t in ready {
            // A CPU on its way covers a thread only if that thread outranks what it runs; the
            // CPU whose queue holds it first (that is the one it was sent to).
            let outranks = |c: usize| t.eff.is_more_important_than(self.eff_of(self.current(c)));
            let covering = Some(t.cpu)
                .filter(|&c| coming.contains(c) && t.affinity.contains(c) && outranks(c))
                .or_else(|| t.affinity.intersect(coming).iter().find(|&c| outranks(c)));
            if let Some(c) = covering {
                coming = CpuSet::from_bits(coming.bits() & !(1 << c));
                continue;
            }
            for cpu in t
                .affinity
                .intersect(self.online)
                .iter()
                .filter(|&c| !self.pending.contains(c))
            {
                let running = self.eff_of(self.current(cpu));
                if t.eff.is_more_important_than(running) {
                    return Err(format!(
                        "{:?} ({:?}, queued on cpu{}) is ready while cpu{cpu} runs {:?} at {running:?} (rescheduling: {:?})",
                        t.thread.id(),
                        t.eff,
                        t.cpu,
                        self.current(cpu),
                        self.pending
                    ));
                }
            }
        }
        let mut queued = 0usize;
        for t in self.tcbs.iter().flatten() {
            // A running thread whose affinity was changed from another CPU stays until its
            // CPU, told to reschedule, switches it out; a queued one is moved at once.
            let moving = t.state == State::Running && self.pending.contains(t.cpu);
            if matches!(t.state, State::Ready | State::Running)
                && !t.affinity.contains(t.cpu)
                && !moving
            {
                return Err(format!(
                    "{:?} is on cpu{} outside its affinity {:?}",
                    t.thread.id(),
                    t.cpu,
                    t.affinity
                ));
            }
            if t.is_idle {
                continue;
            }
            let id = t.thread.id();
            let (on_queue, asleep) = (
                t.thread.run_link.is_linked(),
                t.thread.sleep_link.is_linked(),
            );
            let current = self.cpus[t.cpu].current == Some(id);
            match t.state {
                State::Ready => {
                    queued += 1;
                    if !on_queue || asleep || current || t.blocked_on.is_some() {
                        return Err(format!("{id:?} is ready but not (only) on a run queue"));
                    }
                }
                State::Running if !current => {
                    return Err(format!("{id:?} is running but not current on cpu{}", t.cpu));
                }
                // Blocked: on the wait queue it names (checked with the objects) and/or a
                // sleep queue; with neither, nothing would ever wake it.
                State::Blocked if t.blocked_on.is_none() && !asleep => {
                    return Err(format!("{id:?} is blocked on nothing: it would never wake"));
                }
                State::Blocked if t.blocked_on.is_some() != on_queue => {
                    return Err(format!(
                        "{id:?} is blocked on {:?} but not its waiter",
                        t.blocked_on
                    ));
                }
                State::Suspended | State::Exited if on_queue || asleep || current => {
                    return Err(format!(
                        "{id:?} is {:?} but still queued or current",
                        t.state
                    ));
                }
                State::Suspended | State::Exited
                    if t.suspend_requested || t.blocked_on.is_some() =>
                {
                    return Err(format!(
                        "{id:?} is {:?} with a wait or suspension pending",
                        t.state
                    ));
                }
                _ => {}
            }
            let mut eff = t.base;
            for m in t.held.iter().flatten() {
                if let Some(top) = self
                    .obj(*m)
                    .and_then(|o| o.waiters.front().get().map(|w| w.id()))
                {
                    eff = eff.max_importance(self.eff_of(top));
                }
            }
            if eff != t.eff {
                return Err(format!(
                    "{:?}: effective {:?}, inheritance says {:?}",
                    t.thread.id(),
                    t.eff,
                    eff
                ));
            }
        }
        let in_queues: usize = self
            .online
            .iter()
            .map(|c| {
                self.cpus[c]
                    .rq
                    .levels
                    .iter()
                    .map(|l| l.iter().count())
                    .sum::<usize>()
            })
            .sum();
        if in_queues != queued {
            return Err(format!(
                "{queued} threads are ready but {in_queues} are queued"
            ));
        }
        // A thread waits in `halt_wait` only for a thread that is leaving its CPU, and every
        // thread that stops leaving wakes them all: waiters with nothing leaving anywhere were
        // forgotten.
        if let Some(q) = self.obj(self.halt_queue)
            && !q.waiters.is_empty()
            && !self
                .tcbs
                .iter()
                .flatten()
                .any(|t| self.is_leaving_cpu(t.thread.id()))
        {
            return Err(format!(
                "{} threads wait for a thread to leave its CPU, but none is leaving",
                q.waiters.iter().count()
            ));
        }
        Ok(())
    }
}
