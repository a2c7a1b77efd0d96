//! Host tests of the scheduling policy: directed scenarios, then property tests over random
//! operation sequences with the invariant checker run after every step.

use crate::*;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

fn p(level: u32) -> Priority {
    Priority::new(level).unwrap()
}

/// A simulated kernel: applies decisions the way the real one does (pick_next on every CPU
/// named), and checks invariants after each step.
struct Sim {
    s: Sched,
    now: u64,
    switches: Vec<(ThreadId, ThreadId)>,
}

impl Sim {
    fn new() -> Self {
        let mut s = Sched::new(1);
        s.add_cpu(
            0,
            Arc::new(Thread::new(String::from("idle"), 0..0)),
            Instant::ZERO,
        )
        .unwrap();
        Self {
            s,
            now: 0,
            switches: Vec::new(),
        }
    }

    fn apply(&mut self, d: Decision) {
        // Reschedule every CPU named, and every CPU those decisions name in turn (IPIs), until
        // none is pending; the bound catches a livelock.
        let mut pending = d.resched;
        for _ in 0..64 {
            let Some(cpu) = pending.first() else { break };
            pending = CpuSet::from_bits(pending.bits() & !(1 << cpu));
            let (switch, more) = self.s.pick_next(cpu, Instant::from_nanos(self.now));
            if let Some((from, to)) = switch {
                self.switches.push((from.id(), to.id()));
            }
            pending = CpuSet::from_bits(pending.bits() | more.resched.bits());
        }
        assert!(pending.is_empty(), "rescheduling did not settle");
        self.s.check().unwrap();
    }

    fn spawn(&mut self, level: u32, slice_ns: Option<u64>) -> ThreadId {
        let t = Arc::new(Thread::new(String::from("t"), 0..0));
        let (id, d) = self
            .s
            .spawn(
                t,
                SpawnParams {
                    priority: p(level),
                    affinity: CpuSet::ALL,
                    slice_ns,
                },
            )
            .unwrap();
        self.apply(d);
        id
    }

    fn cur(&self) -> ThreadId {
        self.s.current(0)
    }

    fn advance(&mut self, ns: u64) {
        self.now += ns;
        let d = self.s.expire(0, Instant::from_nanos(self.now));
        self.apply(d);
    }

    fn exit(&mut self) {
        let d = self.s.exit_current(0, 0);
        self.apply(d);
    }

    fn lock(&mut self, m: ObjectId) -> bool {
        let (got, d) = self.s.mutex_lock(0, m, None, false).unwrap();
        self.apply(d);
        got
    }

    fn unlock(&mut self, m: ObjectId) {
        let d = self.s.mutex_unlock(0, m).unwrap();
        self.apply(d);
    }
}

#[test]
fn a_more_important_thread_preempts_at_once() {
    let mut sim = Sim::new();
    let low = sim.spawn(5, None);
    assert_eq!(sim.cur(), low);
    let high = sim.spawn(9, None);
    assert_eq!(sim.cur(), high);
    sim.exit();
    assert_eq!(sim.cur(), low, "the preempted thread resumes");
}

#[test]
fn equal_priorities_run_fifo() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, None);
    let b = sim.spawn(7, None);
    let c = sim.spawn(7, None);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(sim.cur());
        sim.exit();
    }
    assert_eq!(order, [a, b, c]);
}

#[test]
fn a_preempted_thread_keeps_its_place_at_the_head() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, None);
    let b = sim.spawn(7, None);
    let h = sim.spawn(9, None);
    assert_eq!(sim.cur(), h);
    sim.exit();
    assert_eq!(
        sim.cur(),
        a,
        "a was running when preempted: it goes back to the head, before b"
    );
    sim.exit();
    assert_eq!(sim.cur(), b);
}

#[test]
fn round_robin_rotates_equal_priorities_each_slice() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, Some(MS));
    let b = sim.spawn(7, Some(MS));
    assert_eq!(sim.s.next_deadline(0), Some(Instant::from_nanos(MS)));
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(sim.cur());
        sim.advance(MS);
    }
    assert_eq!(order, [a, b, a, b]);
}

#[test]
fn fifo_threads_are_not_sliced() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, None);
    let _b = sim.spawn(7, None);
    assert_eq!(
        sim.s.next_deadline(0),
        None,
        "tickless: nothing to wake for"
    );
    sim.advance(100 * MS);
    assert_eq!(sim.cur(), a);
}

#[test]
fn yield_hands_over_to_an_equal_and_only_an_equal() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, None);
    let b = sim.spawn(7, None);
    let _low = sim.spawn(3, None);
    let d = sim.s.yield_current(0);
    sim.apply(d);
    assert_eq!(sim.cur(), b);
    let d = sim.s.yield_current(0);
    sim.apply(d);
    assert_eq!(sim.cur(), a);
    sim.exit();
    let d = sim.s.yield_current(0);
    sim.apply(d);
    assert_eq!(
        sim.cur(),
        b,
        "alone at its level, yielding keeps it running"
    );
}

#[test]
fn sleeps_wake_exactly_at_their_deadline_never_before() {
    let mut sim = Sim::new();
    let a = sim.spawn(7, None);
    let d = sim
        .s
        .sleep_until(0, Instant::from_nanos(5 * MS), Instant::from_nanos(sim.now))
        .unwrap();
    sim.apply(d);
    assert_ne!(sim.cur(), a);
    assert_eq!(sim.s.next_deadline(0), Some(Instant::from_nanos(5 * MS)));
    sim.advance(5 * MS - 1);
    assert_ne!(sim.cur(), a, "woke early");
    sim.advance(1);
    assert_eq!(sim.cur(), a);
    assert_eq!(sim.s.take_wake_reason(a), WakeReason::Timeout);
}

#[test]
fn classic_inversion_is_bounded_by_inheritance() {
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let low = sim.spawn(2, None);
    assert!(sim.lock(m));
    let high = sim.spawn(9, None);
    assert!(!sim.lock(m), "high blocks on the mutex low holds");
    assert_eq!(
        sim.s.effective_priority(low),
        Some(p(9)),
        "low inherits high's priority"
    );
    let medium = sim.spawn(5, None);
    assert_eq!(sim.cur(), low, "medium must not preempt the boosted low");
    sim.unlock(m);
    assert_eq!(
        sim.cur(),
        high,
        "the unlock hands the mutex to high, which runs"
    );
    assert_eq!(sim.s.take_wake_reason(high), WakeReason::Acquired);
    assert_eq!(sim.s.effective_priority(low), Some(p(2)), "low is restored");
    sim.unlock(m);
    sim.exit();
    assert_eq!(sim.cur(), medium, "medium runs only after high is done");
}

#[test]
fn inheritance_is_transitive_and_restored_on_timeout() {
    let mut sim = Sim::new();
    let (m1, m2) = (sim.s.create_mutex(), sim.s.create_mutex());
    let t1 = sim.spawn(2, None);
    assert!(sim.lock(m1));
    let t2 = sim.spawn(4, None);
    assert!(sim.lock(m2));
    assert!(!sim.lock(m1), "t2 waits for t1");
    assert_eq!(sim.s.effective_priority(t1), Some(p(4)));
    // t3 waits on m2 with a deadline; t2 (blocked on m1) and then t1 both inherit.
    let t3 = sim.spawn(8, None);
    let (got, d) = sim
        .s
        .mutex_lock(0, m2, Some(Instant::from_nanos(sim.now + 3 * MS)), false)
        .unwrap();
    assert!(!got);
    sim.apply(d);
    assert_eq!(sim.s.effective_priority(t2), Some(p(8)));
    assert_eq!(
        sim.s.effective_priority(t1),
        Some(p(8)),
        "through the chain t3 -> m2 -> t2 -> m1 -> t1"
    );
    assert_eq!(sim.cur(), t1);
    sim.advance(3 * MS);
    assert_eq!(sim.s.take_wake_reason(t3), WakeReason::Timeout);
    assert_eq!(
        sim.s.effective_priority(t2),
        Some(p(4)),
        "t3 gave up: the chain falls back"
    );
    assert_eq!(sim.s.effective_priority(t1), Some(p(4)));
}

#[test]
fn mutex_misuse_is_an_error_not_corruption() {
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let _a = sim.spawn(5, None);
    assert!(sim.lock(m));
    assert_eq!(
        sim.s.mutex_lock(0, m, None, false),
        Err(SchedError::AlreadyOwner)
    );
    let _b = sim.spawn(6, None);
    assert_eq!(sim.s.mutex_unlock(0, m), Err(SchedError::NotOwner));
    assert!(!sim.lock(m));
    assert_eq!(sim.s.destroy_object(m), Err(SchedError::Busy));
    sim.s.check().unwrap();
}

#[test]
fn a_cycle_of_mutex_waits_is_refused() {
    let mut sim = Sim::new();
    let (m1, m2) = (sim.s.create_mutex(), sim.s.create_mutex());
    let a = sim.spawn(5, None);
    assert!(sim.lock(m1));
    let b = sim.spawn(6, None);
    assert!(sim.lock(m2));
    assert!(!sim.lock(m1), "b waits for a");
    assert_eq!(sim.cur(), a);
    assert_eq!(
        sim.s.mutex_lock(0, m2, None, false),
        Err(SchedError::Deadlock)
    );
    let _ = b;
}

#[test]
fn a_dying_owner_hands_its_mutex_on_as_abandoned() {
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let _a = sim.spawn(5, None);
    assert!(sim.lock(m));
    let b = sim.spawn(6, None);
    assert!(!sim.lock(m));
    sim.exit();
    assert_eq!(sim.cur(), b);
    assert_eq!(sim.s.take_wake_reason(b), WakeReason::Abandoned);
    sim.unlock(m);
}

#[test]
fn an_adopted_fast_owner_inherits_and_hands_over() {
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let a = sim.spawn(5, None);
    // `a` took `m` on a lock-free fast path: the scheduler knows nothing of it.
    let tag = a.fast_tag();
    assert_ne!(tag, 0);
    assert_eq!(tag & (1 << 63), 0);
    assert!(sim.s.mutex_is_idle(m));
    let b = sim.spawn(6, None);
    assert_eq!(sim.cur(), b);
    assert_eq!(sim.s.thread_of_tag(tag), Some(a));
    assert_eq!(sim.s.thread_of_tag(0), None);
    sim.s.mutex_adopt(m, a).unwrap();
    assert_eq!(sim.s.mutex_adopt(m, b), Err(SchedError::Busy));
    assert!(!sim.s.mutex_is_idle(m));
    assert!(!sim.lock(m));
    assert_eq!(sim.cur(), a);
    assert_eq!(
        sim.s.effective_priority(a),
        Some(p(6)),
        "the adopted owner inherits"
    );
    sim.unlock(m);
    assert_eq!(sim.cur(), b);
    assert_eq!(sim.s.effective_priority(a), Some(p(5)));
    assert_eq!(sim.s.mutex_holder(m), Some(b));
    sim.unlock(m);
    assert!(sim.s.mutex_is_idle(m));
    sim.exit();
    assert_eq!(sim.cur(), a);
    sim.exit();
    assert_eq!(
        sim.s.thread_of_tag(tag),
        None,
        "an exited owner: the mutex was abandoned"
    );
}

#[test]
fn semaphores_hand_units_to_the_most_important_waiter() {
    let mut sim = Sim::new();
    let s = sim.s.create_semaphore(0, 2);
    let lo = sim.spawn(3, None);
    let (got, d) = sim.s.sem_take(0, s, None, false).unwrap();
    assert!(!got);
    sim.apply(d);
    let hi = sim.spawn(6, None);
    let (got, d) = sim.s.sem_take(0, s, None, false).unwrap();
    assert!(!got);
    sim.apply(d);
    // Given from "interrupt context": no current-thread argument.
    let d = sim.s.sem_give(s).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), hi);
    let d = sim.s.sem_give(s).unwrap();
    sim.apply(d);
    assert_eq!(sim.s.take_wake_reason(lo), WakeReason::Acquired);
    for _ in 0..2 {
        let d = sim.s.sem_give(s).unwrap();
        sim.apply(d);
    }
    assert_eq!(sim.s.sem_give(s), Err(SchedError::Overflow));
    assert_eq!(sim.s.sem_count(s), Some(2));
}

#[test]
fn event_flags_deposit_and_withdraw_only_while_idle() {
    let mut sim = Sim::new();
    let e = sim.s.create_events();
    sim.s.events_deposit(e, 0b100).unwrap();
    assert_eq!(sim.s.events_withdraw_if_idle(e), Some(0b100));
    assert_eq!(
        sim.s.events_clear(e, 0).unwrap(),
        0,
        "withdrawn flags leave the object"
    );
    let a = sim.spawn(5, None);
    let wait = EventWait {
        mask: 0b1,
        all: false,
        clear: false,
    };
    let (bits, d) = sim.s.events_wait(0, e, wait, None, false).unwrap();
    assert_eq!(bits, None);
    sim.apply(d);
    sim.s.events_deposit(e, 0b10).unwrap();
    assert_eq!(
        sim.s.events_withdraw_if_idle(e),
        None,
        "a waiter keeps the flags here"
    );
    let d = sim.s.events_set(e, 0b1).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), a);
    assert_eq!(sim.s.take_event_bits(a), 0b11);
    assert_eq!(sim.s.events_withdraw_if_idle(e), Some(0b11));
    let q = sim.s.create_queue();
    assert_eq!(sim.s.events_deposit(q, 1), Err(SchedError::NoSuchObject));
    assert_eq!(sim.s.events_withdraw_if_idle(q), None);
}

#[test]
fn event_flags_any_all_and_clear() {
    let mut sim = Sim::new();
    let e = sim.s.create_events();
    let a = sim.spawn(5, None);
    let (bits, d) = sim
        .s
        .events_wait(
            0,
            e,
            EventWait {
                mask: 0b11,
                all: true,
                clear: true,
            },
            None,
            false,
        )
        .unwrap();
    assert_eq!(bits, None);
    sim.apply(d);
    let b = sim.spawn(4, None);
    let (bits, d) = sim
        .s
        .events_wait(
            0,
            e,
            EventWait {
                mask: 0b10,
                all: false,
                clear: false,
            },
            None,
            false,
        )
        .unwrap();
    assert_eq!(bits, None);
    sim.apply(d);
    let d = sim.s.events_set(e, 0b01).unwrap();
    sim.apply(d);
    assert_ne!(sim.cur(), a, "all of 0b11 needed");
    let d = sim.s.events_set(e, 0b10).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), a);
    assert_eq!(sim.s.take_event_bits(a), 0b11);
    // a cleared both bits, so b (any of 0b10) is not satisfied.
    assert_eq!(sim.s.events_clear(e, 0).unwrap(), 0);
    sim.exit();
    assert_ne!(sim.cur(), b);
}

#[test]
fn suspend_and_resume_in_every_state() {
    let mut sim = Sim::new();
    let a = sim.spawn(5, None);
    let b = sim.spawn(4, None);
    let d = sim.s.suspend(b).unwrap(); // ready
    sim.apply(d);
    let d = sim.s.suspend(a).unwrap(); // running
    sim.apply(d);
    assert_ne!(sim.cur(), a);
    assert_ne!(sim.cur(), b);
    let d = sim.s.resume(b).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), b);
    let d = sim
        .s
        .sleep_until(0, Instant::from_nanos(MS), Instant::ZERO)
        .unwrap();
    sim.apply(d);
    let d = sim.s.suspend(b).unwrap(); // blocked: parked when the sleep ends
    sim.apply(d);
    sim.advance(MS);
    assert_ne!(sim.cur(), b);
    let d = sim.s.resume(a).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), a);
}

#[test]
fn join_collects_the_exit_code_and_reaps() {
    let mut sim = Sim::new();
    let parent = sim.spawn(5, None);
    let child = sim.spawn(4, None);
    let (code, d) = sim.s.join(0, child).unwrap();
    assert_eq!(code, None);
    sim.apply(d);
    assert_eq!(sim.cur(), child);
    let d = sim.s.exit_current(0, 42);
    sim.apply(d);
    assert_eq!(sim.cur(), parent);
    assert!(sim.s.reap(child).is_none(), "not joined yet");
    assert_eq!(sim.s.join(0, child).unwrap().0, Some(42));
    assert!(sim.s.reap(child).is_some());
    assert_eq!(
        sim.s.join(0, child).err(),
        Some(SchedError::NoSuchThread),
        "a stale id names nothing"
    );
    assert_eq!(
        sim.s.join(0, parent).err(),
        Some(SchedError::BadJoin),
        "no self-join"
    );
}

#[test]
fn an_affinity_mask_without_online_cpus_is_an_error() {
    let mut sim = Sim::new();
    let t = Arc::new(Thread::new(String::from("t"), 0..0));
    let r = sim.s.spawn(
        t,
        SpawnParams {
            priority: p(5),
            affinity: CpuSet::single(3),
            slice_ns: None,
        },
    );
    assert_eq!(r.err(), Some(SchedError::NoUsableCpu));
}

enum OpKind {
    Advance,
    Other,
}

#[derive(Clone, Debug)]
enum Op {
    Spawn(u32, bool),
    Exit,
    Yield,
    Sleep(u64),
    Advance(u64),
    Lock(usize, Option<u64>),
    Unlock(usize),
    SemTake(Option<u64>),
    SemGive,
    SetPriority(usize, u32),
    Suspend(usize),
    Resume(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u32..64, any::<bool>()).prop_map(|(p, rr)| Op::Spawn(p, rr)),
        Just(Op::Exit),
        Just(Op::Yield),
        (1u64..5).prop_map(|ms| Op::Sleep(ms * MS)),
        (0u64..3_000_000).prop_map(Op::Advance),
        (0usize..3, proptest::option::of(1u64..4))
            .prop_map(|(m, t)| Op::Lock(m, t.map(|x| x * MS))),
        (0usize..3).prop_map(Op::Unlock),
        proptest::option::of(1u64..4).prop_map(|t| Op::SemTake(t.map(|x| x * MS))),
        Just(Op::SemGive),
        (0usize..16, 1u32..64).prop_map(|(t, p)| Op::SetPriority(t, p)),
        (0usize..16).prop_map(Op::Suspend),
        (0usize..16).prop_map(Op::Resume),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Whatever the sequence, after every step: the running thread is the most important
    /// ready one, queues and states agree, and every effective priority is exactly what
    /// inheritance says (so chains raise and restore correctly).
    #[test]
    fn invariants_hold_under_random_operations(ops in proptest::collection::vec(op(), 1..120)) {
        let mut sim = Sim::new();
        let mutexes = [sim.s.create_mutex(), sim.s.create_mutex(), sim.s.create_mutex()];
        let sem = sim.s.create_semaphore(1, 4);
        let mut threads: Vec<ThreadId> = Vec::new();
        // (thread, deadline) of every timed wait started.
        let mut deadlines: Vec<(ThreadId, u64)> = Vec::new();
        for op in ops {
            let now = Instant::from_nanos(sim.now);
            let op_kind = if matches!(op, Op::Advance(_)) { OpKind::Advance } else { OpKind::Other };
            if let Op::Sleep(ns) | Op::Lock(_, Some(ns)) | Op::SemTake(Some(ns)) = op {
                deadlines.push((sim.cur(), sim.now + ns));
            }
            match op {
                Op::Spawn(level, rr) => {
                    if threads.len() < 16 {
                        let id = sim.spawn(level, rr.then_some(MS));
                        threads.push(id);
                    }
                }
                Op::Exit => {
                    if sim.cur() != sim.s.current(0) || !threads.contains(&sim.cur()) { continue; }
                    sim.exit();
                }
                Op::Yield => { let d = sim.s.yield_current(0); sim.apply(d); }
                Op::Sleep(ns) => {
                    if threads.contains(&sim.cur()) {
                        let d = sim.s.sleep_until(0, Instant::from_nanos(sim.now + ns), now).unwrap();
                        sim.apply(d);
                    }
                }
                Op::Advance(ns) => sim.advance(ns),
                Op::Lock(m, timeout) => {
                    if threads.contains(&sim.cur()) {
                        match sim.s.mutex_lock(0, mutexes[m], timeout.map(|t| Instant::from_nanos(sim.now + t)), false) {
                            Ok((_, d)) => sim.apply(d),
                            Err(SchedError::AlreadyOwner | SchedError::Deadlock | SchedError::TooManyMutexes) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                }
                Op::Unlock(m) => {
                    match sim.s.mutex_unlock(0, mutexes[m]) {
                        Ok(d) => sim.apply(d),
                        Err(SchedError::NotOwner) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                Op::SemTake(timeout) => {
                    if threads.contains(&sim.cur()) {
                        let (_, d) = sim.s.sem_take(0, sem, timeout.map(|t| Instant::from_nanos(sim.now + t)), false).unwrap();
                        sim.apply(d);
                    }
                }
                Op::SemGive => {
                    match sim.s.sem_give(sem) {
                        Ok(d) => sim.apply(d),
                        Err(SchedError::Overflow) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                Op::SetPriority(i, level) => {
                    if let Some(&t) = threads.get(i) {
                        match sim.s.set_priority(t, p(level)) {
                            Ok(d) => sim.apply(d),
                            Err(SchedError::NoSuchThread) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                }
                Op::Suspend(i) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.suspend(t)) {
                        sim.apply(d);
                    }
                }
                Op::Resume(i) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.resume(t)) {
                        sim.apply(d);
                    }
                }
            }
            prop_assert!(sim.s.check().is_ok(), "{:?}", sim.s.check());
            // After the timer is handled nothing overdue is left asleep...
            if matches!(op_kind, OpKind::Advance) {
                prop_assert!(sim.s.next_deadline(0).is_none_or(|d| d.as_nanos() > sim.now));
            }
            // ...and no sleeper woke before its deadline.
            let cur = sim.cur();
            if sim.s.take_wake_reason(cur) == WakeReason::Timeout {
                let deadline = deadlines.iter().rev().find(|(t, _)| *t == cur).map(|&(_, d)| d);
                prop_assert!(deadline.is_some_and(|d| d <= sim.now), "{cur:?} woke at {} before {deadline:?}", sim.now);
            }
        }
    }

    /// Threads made ready at one level, in any order of arrival, run in exactly that order.
    #[test]
    fn fifo_within_a_priority(delays in proptest::collection::vec(1u64..50, 2..12)) {
        let mut sim = Sim::new();
        // A more important starter holds the CPU while the others are spawned.
        sim.spawn(10, None);
        let mut ids = Vec::new();
        for _ in &delays {
            ids.push(sim.spawn(5, None));
        }
        sim.exit();
        // Each level-5 thread runs in spawn order, then sleeps a random time, so they become
        // ready again in a random order.
        for (i, &d) in delays.iter().enumerate() {
            let cur = sim.cur();
            prop_assert_eq!(cur, ids[i]);
            let dd = sim.s.sleep_until(0, Instant::from_nanos(sim.now + d * MS), Instant::from_nanos(sim.now)).unwrap();
            sim.apply(dd);
        }
        let mut woke = Vec::new();
        for _ in 0..200 {
            sim.advance(MS / 2);
            let c = sim.cur();
            if let Some(i) = ids.iter().position(|&x| x == c) {
                woke.push(i);
                sim.exit();
            }
            if woke.len() == ids.len() { break; }
        }
        // Ready order = deadline order (ties broken by id = spawn order).
        let mut by_deadline: Vec<usize> = (0..ids.len()).collect();
        by_deadline.sort_by_key(|&i| (delays[i] * MS, ids[i]));
        prop_assert_eq!(woke.len(), ids.len());
        // Threads waking at the same expiry are queued in deadline order and run FIFO.
        prop_assert_eq!(woke, by_deadline);
    }
}

/// A simulated multi-CPU kernel.
struct SimN {
    s: Sched,
    n: usize,
    now: u64,
    /// (cpu, thread) of every switch, to check affinity afterwards.
    ran: Vec<(usize, ThreadId)>,
}

impl SimN {
    fn new(n: usize) -> Self {
        let mut s = Sched::new(n);
        for cpu in 0..n {
            s.add_cpu(
                cpu,
                Arc::new(Thread::new(String::from("idle"), 0..0)),
                Instant::ZERO,
            )
            .unwrap();
        }
        Self {
            s,
            n,
            now: 0,
            ran: Vec::new(),
        }
    }

    fn apply(&mut self, d: Decision) {
        // Like the kernel: every CPU named is told (an IPI: pending), then CPUs reschedule one
        // at a time, and the checker runs after every single decision — with the others'
        // IPIs still in flight.
        for cpu in d.resched.iter() {
            self.s.note_resched_sent(cpu);
        }
        let mut pending = d.resched;
        for _ in 0..256 {
            // The CPU whose thread just blocked or exited switches before the lock is
            // released (the kernel's `apply` on the deciding CPU): it goes first.
            let Some(cpu) = pending
                .iter()
                .find(|&c| self.s.is_switching_out(c))
                .or(pending.first())
            else {
                break;
            };
            pending = CpuSet::from_bits(pending.bits() & !(1 << cpu));
            let (switch, more) = self.s.pick_next(cpu, Instant::from_nanos(self.now));
            if let Some((_, to)) = switch {
                self.ran.push((cpu, to.id()));
            }
            for c in more.resched.iter() {
                self.s.note_resched_sent(c);
            }
            if let Err(e) = self.s.check() {
                panic!("after cpu{cpu} rescheduled: {e}");
            }
            pending = CpuSet::from_bits(pending.bits() | more.resched.bits());
        }
        assert!(pending.is_empty(), "rescheduling did not settle");
        if let Err(e) = self.s.check() {
            panic!("{e}");
        }
    }

    fn spawn(&mut self, level: u32, affinity: CpuSet) -> ThreadId {
        let t = Arc::new(Thread::new(String::from("t"), 0..0));
        let (id, d) = self
            .s
            .spawn(
                t,
                SpawnParams {
                    priority: p(level),
                    affinity,
                    slice_ns: None,
                },
            )
            .unwrap();
        self.apply(d);
        id
    }

    fn cur(&self, cpu: usize) -> ThreadId {
        self.s.current(cpu)
    }
}

#[test]
fn a_woken_thread_goes_to_the_cpu_running_the_least_important_thread() {
    let mut sim = SimN::new(2);
    let a = sim.spawn(10, CpuSet::ALL);
    let b = sim.spawn(5, CpuSet::ALL);
    assert_eq!((sim.cur(0), sim.cur(1)), (a, b), "each CPU took one");
    let c = sim.spawn(8, CpuSet::ALL);
    assert_eq!(
        sim.cur(1),
        c,
        "cpu1 ran the less important thread (5), so 8 preempts it there"
    );
    assert_eq!(sim.cur(0), a);
    let _ = b;
}

#[test]
fn a_cpu_that_frees_up_pulls_the_best_ready_thread() {
    let mut sim = SimN::new(2);
    let a = sim.spawn(10, CpuSet::ALL);
    let b = sim.spawn(9, CpuSet::ALL);
    let c = sim.spawn(7, CpuSet::ALL); // both CPUs busy with more important threads: queued
    let d = sim
        .s
        .sleep_until(0, Instant::from_nanos(MS), Instant::ZERO)
        .unwrap(); // a sleeps
    sim.apply(d);
    assert_eq!(sim.cur(0), c, "cpu0 pulled c");
    assert_eq!(sim.cur(1), b);
    sim.now = MS;
    let d = sim.s.expire(0, Instant::from_nanos(MS));
    sim.apply(d);
    assert_eq!(sim.cur(0), a, "a is back, more important than c");
    assert!(sim.ran.iter().all(|&(cpu, t)| t != b || cpu == 1));
}

#[test]
fn pinned_threads_run_only_where_pinned() {
    let mut sim = SimN::new(3);
    let pinned = sim.spawn(20, CpuSet::single(2));
    let _others: Vec<_> = (0..4).map(|i| sim.spawn(10 + i, CpuSet::ALL)).collect();
    assert_eq!(sim.cur(2), pinned);
    // It may not move even when its CPU is needed by nothing else and others are busy.
    let d = sim.s.yield_current(2);
    sim.apply(d);
    assert!(
        sim.ran
            .iter()
            .filter(|&&(_, t)| t == pinned)
            .all(|&(cpu, _)| cpu == 2)
    );
    // Re-pinning it moves it.
    let d = sim.s.set_affinity(pinned, CpuSet::single(0)).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(0), pinned);
    assert_eq!(
        sim.s.set_affinity(pinned, CpuSet::single(5)),
        Err(SchedError::NoUsableCpu),
        "no such CPU online"
    );
    assert_eq!(
        sim.s.set_affinity(pinned, CpuSet::EMPTY),
        Err(SchedError::NoUsableCpu)
    );
}

#[test]
fn inheritance_works_across_cpus() {
    let mut sim = SimN::new(2);
    let m = sim.s.create_mutex();
    let low = sim.spawn(2, CpuSet::single(0));
    let (got, d) = sim.s.mutex_lock(0, m, None, false).unwrap();
    assert!(got);
    sim.apply(d);
    let _medium = sim.spawn(5, CpuSet::single(0)); // would starve low on cpu0
    assert_ne!(sim.cur(0), low);
    let high = sim.spawn(9, CpuSet::single(1));
    assert_eq!(sim.cur(1), high);
    let (got, d) = sim.s.mutex_lock(1, m, None, false).unwrap();
    assert!(!got);
    sim.apply(d);
    assert_eq!(sim.s.effective_priority(low), Some(p(9)));
    assert_eq!(
        sim.cur(0),
        low,
        "boosted on its own CPU, it preempts medium there"
    );
    let d = sim.s.mutex_unlock(0, m).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(1), high, "high got the mutex on cpu1");
    assert_eq!(sim.s.effective_priority(low), Some(p(2)));
}

#[derive(Clone, Debug)]
enum OpN {
    Spawn(u32, u64),
    Exit(usize),
    Yield(usize),
    Sleep(usize, u64),
    Advance(u64),
    Lock(usize, usize, Option<u64>),
    Unlock(usize, usize),
    SetPriority(usize, u32),
    SetAffinity(usize, u64),
    Suspend(usize),
    Resume(usize),
}

fn op_n() -> impl Strategy<Value = OpN> {
    prop_oneof![
        (1u32..64, 1u64..16).prop_map(|(p, a)| OpN::Spawn(p, a)),
        (0usize..4).prop_map(OpN::Exit),
        (0usize..4).prop_map(OpN::Yield),
        (0usize..4, 1u64..5).prop_map(|(c, ms)| OpN::Sleep(c, ms * MS)),
        (0u64..3_000_000).prop_map(OpN::Advance),
        (0usize..4, 0usize..3, proptest::option::of(1u64..4)).prop_map(|(c, m, t)| OpN::Lock(
            c,
            m,
            t.map(|x| x * MS)
        )),
        (0usize..4, 0usize..3).prop_map(|(c, m)| OpN::Unlock(c, m)),
        (0usize..16, 1u32..64).prop_map(|(t, p)| OpN::SetPriority(t, p)),
        (0usize..16, 1u64..16).prop_map(|(t, a)| OpN::SetAffinity(t, a)),
        (0usize..16).prop_map(OpN::Suspend),
        (0usize..16).prop_map(OpN::Resume),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// With 2–4 CPUs, random priorities, affinities, sleeps and mutexes: after every step
    /// (and the reschedules it causes settle) no ready thread is more important than what
    /// runs on a CPU it may use, every thread runs only inside its affinity, inheritance is
    /// exact, and nothing asleep is left past its deadline after the timers fire.
    #[test]
    fn global_priority_semantics_across_cpus(ncpus in 2usize..=4, ops in proptest::collection::vec(op_n(), 1..120)) {
        let mut sim = SimN::new(ncpus);
        let mutexes = [sim.s.create_mutex(), sim.s.create_mutex(), sim.s.create_mutex()];
        let mut threads: Vec<ThreadId> = Vec::new();
        let mask = |bits: u64| CpuSet::from_bits(bits & ((1 << ncpus) - 1)).intersect(CpuSet::first_n(ncpus));
        for op in ops {
            let now = Instant::from_nanos(sim.now);
            let is_thread = |sim: &SimN, cpu: usize| threads.contains(&sim.cur(cpu % sim.n));
            match op {
                OpN::Spawn(level, bits) => {
                    let m = mask(bits);
                    if threads.len() < 16 && !m.is_empty() {
                        threads.push(sim.spawn(level, m));
                    }
                }
                OpN::Exit(c) => {
                    if is_thread(&sim, c) {
                        let d = sim.s.exit_current(c % sim.n, 0);
                        sim.apply(d);
                    }
                }
                OpN::Yield(c) => {
                    let d = sim.s.yield_current(c % sim.n);
                    sim.apply(d);
                }
                OpN::Sleep(c, ns) => {
                    if is_thread(&sim, c) {
                        let d = sim.s.sleep_until(c % sim.n, Instant::from_nanos(sim.now + ns), now).unwrap();
                        sim.apply(d);
                    }
                }
                OpN::Advance(ns) => {
                    sim.now += ns;
                    for cpu in 0..sim.n {
                        let d = sim.s.expire(cpu, Instant::from_nanos(sim.now));
                        sim.apply(d);
                    }
                    for cpu in 0..sim.n {
                        prop_assert!(sim.s.next_deadline(cpu).is_none_or(|d| d.as_nanos() > sim.now), "a wake-up was lost on cpu{}", cpu);
                    }
                }
                OpN::Lock(c, m, timeout) => {
                    if is_thread(&sim, c) {
                        match sim.s.mutex_lock(c % sim.n, mutexes[m], timeout.map(|t| Instant::from_nanos(sim.now + t)), false) {
                            Ok((_, d)) => sim.apply(d),
                            Err(SchedError::AlreadyOwner | SchedError::Deadlock | SchedError::TooManyMutexes) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                }
                OpN::Unlock(c, m) => match sim.s.mutex_unlock(c % sim.n, mutexes[m]) {
                    Ok(d) => sim.apply(d),
                    Err(SchedError::NotOwner) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                },
                OpN::SetPriority(i, level) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.set_priority(t, p(level))) {
                        sim.apply(d);
                    }
                }
                OpN::SetAffinity(i, bits) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.set_affinity(t, mask(bits))) {
                        sim.apply(d);
                    }
                }
                OpN::Suspend(i) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.suspend(t)) {
                        sim.apply(d);
                    }
                }
                OpN::Resume(i) => {
                    if let Some(Ok(d)) = threads.get(i).map(|&t| sim.s.resume(t)) {
                        sim.apply(d);
                    }
                }
            }
        }
    }
}

/// Multi-CPU with IPIs that take their time: a decision's own CPU reschedules at once, the
/// others only when a later step lets them, and the checker runs after every step with those
/// IPIs still in flight — the order the kernel sees.
#[derive(Clone, Debug)]
enum AsyncOp {
    Spawn(u32, u64, usize),
    Block(usize, u64),
    Advance(u64, usize),
    Ipi(usize),
    Lock(usize, usize),
    Unlock(usize, usize),
    /// From CPU `.0`: suspend thread `.1` (and wait for it to leave its CPU, as the kernel's
    /// `thread::suspend` does from thread context).
    Suspend(usize, usize),
    Resume(usize, usize),
    SetAffinity(usize, usize, u64),
    SetPriority(usize, usize, u32),
    Yield(usize),
}

fn async_op() -> impl Strategy<Value = AsyncOp> {
    prop_oneof![
        (1u32..64, 1u64..16, 0usize..4).prop_map(|(p, a, c)| AsyncOp::Spawn(p, a, c)),
        (0usize..4, 1u64..4).prop_map(|(c, ms)| AsyncOp::Block(c, ms * MS)),
        (0u64..2_000_000, 0usize..4).prop_map(|(ns, c)| AsyncOp::Advance(ns, c)),
        (0usize..4).prop_map(AsyncOp::Ipi),
        (0usize..4).prop_map(AsyncOp::Ipi),
        (0usize..4, 0usize..2).prop_map(|(c, m)| AsyncOp::Lock(c, m)),
        (0usize..4, 0usize..2).prop_map(|(c, m)| AsyncOp::Unlock(c, m)),
        (0usize..4, 0usize..16).prop_map(|(c, t)| AsyncOp::Suspend(c, t)),
        (0usize..4, 0usize..16).prop_map(|(c, t)| AsyncOp::Resume(c, t)),
        (0usize..4, 0usize..16, 1u64..16).prop_map(|(c, t, m)| AsyncOp::SetAffinity(c, t, m)),
        (0usize..4, 0usize..16, 1u32..64).prop_map(|(c, t, l)| AsyncOp::SetPriority(c, t, l)),
        (0usize..4).prop_map(AsyncOp::Yield),
    ]
}

struct AsyncSim {
    s: Sched,
    n: usize,
    now: u64,
    inflight: CpuSet,
    threads: Vec<ThreadId>,
}

impl AsyncSim {
    /// `cpu` made decision `d`: it reschedules now if named; the rest get IPIs in flight.
    fn decide(&mut self, cpu: usize, d: Decision) {
        let mut own = d.resched.contains(cpu);
        for c in d.resched.iter().filter(|&c| c != cpu) {
            self.s.note_resched_sent(c);
            self.inflight = CpuSet::from_bits(self.inflight.bits() | 1 << c);
        }
        while own {
            own = false;
            self.inflight = CpuSet::from_bits(self.inflight.bits() & !(1 << cpu));
            let (switch, more) = self.s.pick_next(cpu, Instant::from_nanos(self.now));
            if let Some((_, to)) = switch {
                // The context switch proper: the incoming thread must not be running anywhere
                // else (its saved context would be stale).
                for other in (0..self.n).filter(|&o| o != cpu) {
                    assert_ne!(
                        self.s.current(other),
                        to.id(),
                        "cpu{cpu} switches to {:?}, which still runs on cpu{other}",
                        to.id()
                    );
                }
            }
            for c in more.resched.iter() {
                if c == cpu {
                    own = true;
                } else {
                    self.s.note_resched_sent(c);
                    self.inflight = CpuSet::from_bits(self.inflight.bits() | 1 << c);
                }
            }
        }
        if let Err(e) = self.s.check() {
            panic!("after cpu{cpu}'s decision: {e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn global_semantics_hold_with_ipis_in_flight(ncpus in 2usize..=4, ops in proptest::collection::vec(async_op(), 1..150)) {
        let mut s = Sched::new(ncpus);
        for cpu in 0..ncpus {
            s.add_cpu(cpu, Arc::new(Thread::new(String::from("idle"), 0..0)), Instant::ZERO).unwrap();
        }
        let mut sim = AsyncSim { s, n: ncpus, now: 0, inflight: CpuSet::EMPTY, threads: Vec::new() };
        let mutexes = [sim.s.create_mutex(), sim.s.create_mutex()];
        let mut spawned = 0;
        for op in ops {
            match op {
                AsyncOp::Spawn(level, bits, c) => {
                    let m = CpuSet::from_bits(bits & ((1 << ncpus) - 1));
                    if spawned < 16 && !m.is_empty() {
                        spawned += 1;
                        let t = Arc::new(Thread::new(String::from("t"), 0..0));
                        let (id, d) = sim.s.spawn(t, SpawnParams { priority: p(level), affinity: m, slice_ns: None }).unwrap();
                        sim.threads.push(id);
                        sim.decide(c % sim.n, d);
                    }
                }
                AsyncOp::Block(c, ns) => {
                    let c = c % sim.n;
                    // A CPU with an IPI in flight still runs its thread, which may block
                    // first (the IPI then finds nothing to do).
                    if let Ok(d) = sim.s.sleep_until(c, Instant::from_nanos(sim.now + ns), Instant::from_nanos(sim.now))
                    {
                            sim.decide(c, d);
                    }
                }
                AsyncOp::Advance(ns, c) => {
                    sim.now += ns;
                    let c = c % sim.n;
                    if !sim.inflight.contains(c) {
                        let d = sim.s.expire(c, Instant::from_nanos(sim.now));
                        sim.decide(c, d);
                    }
                }
                AsyncOp::Ipi(c) => {
                    let c = c % sim.n;
                    if sim.inflight.contains(c) {
                        sim.decide(c, Decision { resched: CpuSet::single(c) });
                    }
                }
                AsyncOp::Lock(c, m) => {
                    let c = c % sim.n;
                    if let Ok((_, d)) = sim.s.mutex_lock(c, mutexes[m], Some(Instant::from_nanos(sim.now + MS)), false)
                    {
                            sim.decide(c, d);
                    }
                }
                AsyncOp::Unlock(c, m) => {
                    let c = c % sim.n;
                    if !sim.inflight.contains(c)
                        && let Ok(d) = sim.s.mutex_unlock(c, mutexes[m])
                    {
                            sim.decide(c, d);
                    }
                }
                AsyncOp::Suspend(c, i) => {
                    let c = c % sim.n;
                    if let Some(&t) = sim.threads.get(i)
                        && !sim.inflight.contains(c)
                        && let Ok(d) = sim.s.suspend(t)
                    {
                        sim.decide(c, d);
                        // Thread context (not the idle thread): wait for it to leave its CPU.
                        if !sim.inflight.contains(c)
                            && sim.s.current(c) != t
                            && let Ok((false, d)) = sim.s.halt_wait(c, t)
                        {
                            sim.decide(c, d);
                        }
                    }
                }
                AsyncOp::Resume(c, i) => {
                    let c = c % sim.n;
                    if let Some(&t) = sim.threads.get(i)
                        && !sim.inflight.contains(c)
                        && let Ok(d) = sim.s.resume(t)
                    {
                        sim.decide(c, d);
                    }
                }
                AsyncOp::SetAffinity(c, i, bits) => {
                    let c = c % sim.n;
                    let m = CpuSet::from_bits(bits & ((1 << ncpus) - 1));
                    if let Some(&t) = sim.threads.get(i)
                        && !sim.inflight.contains(c)
                        && let Ok(d) = sim.s.set_affinity(t, m)
                    {
                        sim.decide(c, d);
                        // As the kernel does: wait for it to leave a CPU it may no longer use.
                        if !sim.inflight.contains(c)
                            && sim.s.current(c) != t
                            && let Ok((false, d)) = sim.s.halt_wait(c, t)
                        {
                            sim.decide(c, d);
                        }
                    }
                }
                AsyncOp::SetPriority(c, i, level) => {
                    let c = c % sim.n;
                    if let Some(&t) = sim.threads.get(i)
                        && !sim.inflight.contains(c)
                        && let Ok(d) = sim.s.set_priority(t, p(level))
                    {
                        sim.decide(c, d);
                    }
                }
                AsyncOp::Yield(c) => {
                    let c = c % sim.n;
                    if !sim.inflight.contains(c) {
                        let d = sim.s.yield_current(c);
                        sim.decide(c, d);
                    }
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// Thread control of a thread that runs, sleeps or waits elsewhere (issue: suspend/resume,
// affinity and priority across CPUs). Each of the first three failed before the fix.

/// Two CPUs; `ctl` runs on cpu0 and `t` on cpu1, both pinned.
fn two_running() -> (SimN, ThreadId, ThreadId) {
    let mut sim = SimN::new(2);
    let ctl = sim.spawn(10, CpuSet::single(0));
    let t = sim.spawn(5, CpuSet::ALL);
    assert_eq!((sim.cur(0), sim.cur(1)), (ctl, t));
    (sim, ctl, t)
}

#[test]
fn suspend_then_resume_of_a_remote_running_thread_never_runs_it_twice() {
    let (mut sim, ctl, t) = two_running();
    // From cpu0: suspend, then resume before cpu1 has taken the IPI.
    let d = sim.s.suspend(t).unwrap();
    assert_eq!(d.resched, CpuSet::single(1), "its CPU must reschedule");
    sim.s.note_resched_sent(1);
    let d = sim.s.resume(t).unwrap();
    assert!(!d.resched.contains(0));
    // cpu0 frees up before cpu1 reschedules: it must not take `t`, which still runs on cpu1.
    let d = sim
        .s
        .sleep_until(0, Instant::from_nanos(MS), Instant::ZERO)
        .unwrap();
    assert!(d.resched.contains(0));
    let (switch, _) = sim.s.pick_next(0, Instant::ZERO);
    let to = switch.map(|(_, to)| to.id());
    assert_ne!(to, Some(t), "cpu0 started a thread that still runs on cpu1");
    sim.s.check().unwrap();
    // cpu1's IPI arrives: the suspension was cancelled, `t` keeps running there.
    let (switch, _) = sim.s.pick_next(1, Instant::ZERO);
    assert!(switch.is_none());
    assert_eq!(sim.cur(1), t);
    sim.s.check().unwrap();
    let _ = ctl;
}

#[test]
fn a_suspension_of_a_remote_running_thread_takes_effect_when_its_cpu_switches() {
    let (mut sim, ctl, t) = two_running();
    let d = sim.s.suspend(t).unwrap();
    sim.s.note_resched_sent(1);
    sim.s.check().unwrap();
    assert_eq!(sim.cur(1), t, "still running until cpu1 reschedules");
    assert!(sim.s.is_leaving_cpu(t));
    // The controller waits for it to stop.
    let (done, d2) = sim.s.halt_wait(0, t).unwrap();
    assert!(!done);
    sim.apply(d.merge(d2));
    assert_ne!(sim.cur(1), t);
    assert!(!sim.s.is_leaving_cpu(t));
    assert_eq!(sim.cur(0), ctl, "the waiter was woken when t left cpu1");
    assert!(sim.s.halt_wait(0, t).unwrap().0);
    let d = sim.s.resume(t).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(1), t);
}

#[test]
fn a_resume_cancels_a_pending_suspension_and_releases_its_waiter() {
    let (mut sim, ctl, t) = two_running();
    let d = sim.s.suspend(t).unwrap();
    sim.s.note_resched_sent(1);
    let (done, d2) = sim.s.halt_wait(0, t).unwrap();
    assert!(!done);
    // cpu0 switched away from ctl; a third thread on cpu0 resumes t before cpu1 reschedules.
    let (_, more) = sim.s.pick_next(0, Instant::ZERO);
    let _ = (d2, more);
    sim.s.check().unwrap();
    let d3 = sim.s.resume(t).unwrap();
    assert!(
        d3.resched.contains(0),
        "the controller waiting on cpu0 is woken: {d3:?}"
    );
    sim.apply(d.merge(d3));
    assert_eq!((sim.cur(0), sim.cur(1)), (ctl, t));
    assert_eq!(sim.s.take_wake_reason(ctl), WakeReason::Signaled);
}

#[test]
fn a_wake_reason_survives_suspension() {
    // Mutex: handed to a suspended waiter, it is still that waiter's when resumed.
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let owner = sim.spawn(5, None);
    assert!(sim.lock(m));
    let waiter = sim.spawn(9, None);
    assert!(!sim.lock(m), "the waiter blocks");
    assert_eq!(sim.cur(), owner);
    let d = sim.s.suspend(waiter).unwrap();
    sim.apply(d);
    sim.unlock(m);
    assert_eq!(sim.cur(), owner, "the new owner is parked, not running");
    assert_eq!(sim.s.mutex_holder(m), Some(waiter));
    let d = sim.s.resume(waiter).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), waiter);
    assert_eq!(sim.s.take_wake_reason(waiter), WakeReason::Acquired);
    sim.unlock(m);
    sim.exit();

    // Semaphore: the unit given to a suspended waiter is not lost.
    let s = sim.s.create_semaphore(0, 4);
    let waiter = sim.spawn(9, None);
    let (got, d) = sim.s.sem_take(0, s, None, false).unwrap();
    assert!(!got);
    sim.apply(d);
    let d = sim.s.suspend(waiter).unwrap();
    sim.apply(d);
    let d = sim.s.sem_give(s).unwrap();
    sim.apply(d);
    assert_eq!(sim.s.sem_count(s), Some(0), "the unit went to the waiter");
    let d = sim.s.resume(waiter).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), waiter);
    assert_eq!(sim.s.take_wake_reason(waiter), WakeReason::Acquired);

    // A timeout that passes while suspended is reported as a timeout.
    sim.exit();
    let waiter = sim.spawn(9, None);
    let (got, d) = sim
        .s
        .sem_take(0, s, Some(Instant::from_nanos(sim.now + MS)), false)
        .unwrap();
    assert!(!got);
    sim.apply(d);
    let d = sim.s.suspend(waiter).unwrap();
    sim.apply(d);
    sim.advance(2 * MS);
    let d = sim.s.sem_give(s).unwrap();
    sim.apply(d);
    let d = sim.s.resume(waiter).unwrap();
    sim.apply(d);
    assert_eq!(sim.s.take_wake_reason(waiter), WakeReason::Timeout);
    assert_eq!(
        sim.s.sem_count(s),
        Some(1),
        "the later unit stays in the semaphore"
    );
}

#[test]
fn an_affinity_change_of_a_remote_running_thread_is_legal_while_its_ipi_is_in_flight() {
    let (mut sim, _ctl, t) = two_running();
    let d = sim.s.set_affinity(t, CpuSet::single(0)).unwrap();
    assert_eq!(d.resched, CpuSet::single(1));
    sim.s.note_resched_sent(1);
    sim.s.check().unwrap();
    assert!(sim.s.is_leaving_cpu(t));
    // Without the IPI noted, the same state is a violation.
    let mut again = two_running();
    let _ = again.0.s.set_affinity(again.2, CpuSet::single(0)).unwrap();
    assert!(again.0.s.check().is_err());
    let _ = &mut again;
    sim.apply(d);
    assert_ne!(sim.cur(1), t, "moved off cpu1");
    assert!(!sim.s.is_leaving_cpu(t));
}

#[test]
fn a_thread_spawned_suspended_runs_only_once_resumed() {
    let mut sim = Sim::new();
    let main = sim.spawn(5, None);
    let t = Arc::new(Thread::new(String::from("t"), 0..0));
    let id = sim
        .s
        .spawn_suspended(
            t,
            SpawnParams {
                priority: p(9),
                affinity: CpuSet::ALL,
                slice_ns: None,
            },
        )
        .unwrap();
    sim.s.check().unwrap();
    assert_eq!(
        sim.cur(),
        main,
        "a more important suspended thread does not preempt"
    );
    let d = sim.s.set_priority(id, p(3)).unwrap();
    sim.apply(d);
    let d = sim.s.resume(id).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), main);
    let d = sim.s.set_priority(id, p(8)).unwrap();
    sim.apply(d);
    assert_eq!(sim.cur(), id);
}

#[test]
fn control_of_idle_exited_or_unknown_threads_is_an_error_and_changes_nothing() {
    let mut sim = Sim::new();
    let idle = sim.cur();
    let a = sim.spawn(5, None);
    for r in [
        sim.s.suspend(idle).err(),
        sim.s.resume(idle).err(),
        sim.s.set_priority(idle, p(3)).err(),
        sim.s.set_affinity(idle, CpuSet::ALL).err(),
        sim.s.detach(idle).err(),
    ] {
        assert_eq!(r, Some(SchedError::IdleThread));
    }
    assert_eq!(sim.s.join(0, idle).err(), Some(SchedError::IdleThread));
    assert_eq!(
        sim.s.set_priority(a, Priority::IDLE).err(),
        Some(SchedError::BadPriority)
    );
    assert_eq!(sim.s.effective_priority(a), Some(p(5)));
    let b = sim.spawn(9, None);
    sim.exit(); // b exits, unjoined
    assert_eq!(sim.cur(), a);
    for r in [
        sim.s.suspend(b).err(),
        sim.s.resume(b).err(),
        sim.s.set_priority(b, p(3)).err(),
        sim.s.set_affinity(b, CpuSet::ALL).err(),
    ] {
        assert_eq!(r, Some(SchedError::NoSuchThread));
    }
    assert_eq!(sim.s.join(0, b).unwrap().0, Some(0));
    assert!(sim.s.reap(b).is_some());
    assert_eq!(
        sim.s.suspend(b).err(),
        Some(SchedError::NoSuchThread),
        "reaped: stale id"
    );
    assert_eq!(
        sim.s.set_affinity(a, CpuSet::from_bits(0b10)).err(),
        Some(SchedError::NoUsableCpu)
    );
    sim.s.check().unwrap();
    assert_eq!(sim.cur(), a);
}

#[test]
fn describe_names_every_live_thread_its_state_and_what_it_waits_on() {
    let mut sim = Sim::new();
    let s = sim.s.create_semaphore(0, 4);
    let waiter = sim.spawn(9, None);
    let (got, d) = sim.s.sem_take(0, s, None, false).unwrap();
    assert!(!got);
    sim.apply(d);
    let runner = sim.spawn(5, None);
    assert_eq!(sim.cur(), runner);
    let mut out = String::new();
    sim.s.describe(&mut out).unwrap();
    assert!(out.contains(&format!("cpu0: running {runner:?}")), "{out}");
    let line = |id| {
        out.lines()
            .find(|l| l.starts_with(&format!("{id:?} ")))
            .unwrap_or_else(|| panic!("no line for {id:?} in {out}"))
            .to_string()
    };
    let w = line(waiter);
    assert!(
        w.contains("Blocked")
            && w.contains("prio 9/9")
            && w.contains(&format!("waits on {s:?} (semaphore 0/4) with 1 waiters")),
        "{w}"
    );
    let r = line(runner);
    assert!(
        r.contains("Running") && r.contains("prio 5/5") && !r.contains("waits on"),
        "{r}"
    );
}

#[test]
fn a_thread_moved_off_its_cpu_that_blocks_there_first_releases_its_waiter() {
    // Found by tests/thread-stress on 4 vCPUs: the controller waited for a worker to leave a
    // CPU its new affinity excludes; the worker blocked on a semaphore before its CPU took the
    // IPI, so it left as Blocked, not Running, and nobody woke the controller.
    let (mut sim, ctl, t) = two_running();
    let d = sim.s.set_affinity(t, CpuSet::single(0)).unwrap();
    sim.s.note_resched_sent(1);
    assert!(sim.s.is_leaving_cpu(t));
    let (done, d2) = sim.s.halt_wait(0, t).unwrap();
    assert!(!done);
    let _ = d;
    sim.apply(d2);
    assert_ne!(sim.cur(0), ctl, "the controller waits");
    // cpu1, before its IPI: t blocks on an empty semaphore.
    let s = sim.s.create_semaphore(0, 1);
    let (got, d3) = sim.s.sem_take(1, s, None, false).unwrap();
    assert!(!got);
    sim.apply(d3.merge(Decision {
        resched: CpuSet::single(1),
    }));
    assert!(!sim.s.is_leaving_cpu(t));
    assert_eq!(
        sim.cur(0),
        ctl,
        "the waiter was woken when t left cpu1 by blocking"
    );
    assert!(sim.s.halt_wait(0, t).unwrap().0);
}

#[test]
fn an_affinity_given_back_before_the_thread_left_releases_its_waiter() {
    let (mut sim, ctl, t) = two_running();
    let _ = sim.s.set_affinity(t, CpuSet::single(0)).unwrap();
    sim.s.note_resched_sent(1);
    let (done, d2) = sim.s.halt_wait(0, t).unwrap();
    assert!(!done);
    sim.apply(d2);
    assert_ne!(sim.cur(0), ctl);
    // Another thread gives cpu1 back before cpu1 rescheduled: t stays, and is not leaving.
    let d3 = sim.s.set_affinity(t, CpuSet::ALL).unwrap();
    assert!(!sim.s.is_leaving_cpu(t));
    assert!(
        d3.resched.contains(0),
        "the controller waiting on cpu0 is woken: {d3:?}"
    );
    sim.apply(d3.merge(Decision {
        resched: CpuSet::single(1),
    }));
    assert_eq!((sim.cur(0), sim.cur(1)), (ctl, t));
    assert!(sim.s.halt_wait(0, t).unwrap().0);
}

#[test]
fn accounts_add_up_and_steal_never_exceeds_run_time() {
    let t = Thread::new(String::from("worker"), 0..0);
    t.account(1_000, 200);
    t.account(500, 0);
    assert_eq!((t.run_ns(), t.stolen_ns()), (1_500, 200));
    // A hypervisor that reports more steal than the slice lasted (its clock and ours differ):
    // capped at the slice.
    t.account(100, 5_000);
    assert_eq!((t.run_ns(), t.stolen_ns()), (1_600, 300));
}

#[test]
fn for_each_thread_lists_the_live_threads_only() {
    let mut sim = Sim::new();
    let a = sim.spawn(10, None);
    let b = sim.spawn(5, None);
    let mut seen = Vec::new();
    sim.s.for_each_thread(|t| seen.push(t.id()));
    assert!(seen.contains(&a) && seen.contains(&b));
    assert_eq!(seen.len(), 3, "idle, a and b: {seen:?}");
    assert_eq!(sim.cur(), a);
    sim.exit(); // a exits (not yet reaped)
    let mut after = Vec::new();
    sim.s.for_each_thread(|t| after.push(t.id()));
    assert!(!after.contains(&a), "an exited thread is not listed");
    assert!(after.contains(&b));
}

/// An observer that keeps what it is told, as text.
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, e: SchedEvent<'_>) {
        let line = match e {
            SchedEvent::Wake { thread, why } => alloc::format!("wake {} {why:?}", thread.name()),
            SchedEvent::Block { thread, on, .. } => {
                alloc::format!("block {} {on:?}", thread.name())
            }
            SchedEvent::Prio {
                thread,
                old,
                new,
                cause,
                depth,
                ..
            } => alloc::format!(
                "prio {} {}->{} {cause:?} depth {depth}",
                thread.name(),
                old.level(),
                new.level()
            ),
            SchedEvent::Create { thread, priority } => {
                alloc::format!("create {} {}", thread.name(), priority.level())
            }
            SchedEvent::Exit { thread, code } => alloc::format!("exit {} {code}", thread.name()),
        };
        self.0.lock().unwrap().push(line);
    }
}

#[test]
fn the_observer_hears_an_inheritance_chain_boost_by_boost_and_its_restores() {
    let rec: &'static Recorder = Box::leak(Box::new(Recorder(std::sync::Mutex::new(Vec::new()))));
    let mut sim = Sim::new();
    sim.s.set_observer(rec);
    let (m1, m2) = (sim.s.create_mutex(), sim.s.create_mutex());
    let named = |sim: &mut Sim, name: &str, level: u32| {
        let t = Arc::new(Thread::new(String::from(name), 0..0));
        let params = SpawnParams {
            priority: p(level),
            affinity: CpuSet::ALL,
            slice_ns: None,
        };
        let (id, d) = sim.s.spawn(t, params).unwrap();
        sim.apply(d);
        id
    };
    named(&mut sim, "low", 2);
    assert!(sim.lock(m1));
    named(&mut sim, "mid", 4);
    assert!(sim.lock(m2));
    assert!(!sim.lock(m1));
    named(&mut sim, "high", 8);
    let (got, d) = sim
        .s
        .mutex_lock(0, m2, Some(Instant::from_nanos(sim.now + 3 * MS)), false)
        .unwrap();
    assert!(!got);
    sim.apply(d);
    sim.advance(3 * MS);
    sim.exit(); // high, which timed out
    sim.exit(); // low, running at 4 again, exits holding m1: mid gets it, abandoned
    let log = rec.0.lock().unwrap().clone();
    let want = [
        "create low 2",
        "wake low None",
        "create mid 4",
        "wake mid None",
        "block mid Mutex",
        "prio low 2->4 Boost depth 0",
        "create high 8",
        "wake high None",
        "block high Mutex",
        "prio mid 4->8 Boost depth 0",
        "prio low 4->8 Boost depth 1",
        "prio mid 8->4 Restore depth 0",
        "prio low 8->4 Restore depth 1",
        "wake high Timeout",
        "exit high 0",
        "prio low 4->2 Restore depth 0",
        "wake mid Abandoned",
        "exit low 0",
    ];
    assert_eq!(log, want);
}

#[test]
fn a_switch_says_how_the_outgoing_thread_left() {
    let mut sim = Sim::new();
    let a = sim.spawn(4, Some(MS));
    assert_eq!(sim.s.last_left(0), LeftAs::Idle, "idle gave way to a");
    let _b = sim.spawn(4, Some(MS));
    sim.advance(MS);
    assert_ne!(sim.cur(), a);
    assert_eq!(sim.s.last_left(0), LeftAs::SliceEnded);
    let d = sim.s.yield_current(0);
    sim.apply(d);
    assert_eq!(sim.cur(), a);
    assert_eq!(sim.s.last_left(0), LeftAs::Yielded);
    sim.spawn(9, None);
    assert_eq!(sim.s.last_left(0), LeftAs::Preempted);
    let d = sim
        .s
        .sleep_until(
            0,
            Instant::from_nanos(sim.now + MS),
            Instant::from_nanos(sim.now),
        )
        .unwrap();
    sim.apply(d);
    assert_eq!(sim.s.last_left(0), LeftAs::Blocked);
    sim.advance(MS);
    sim.exit();
    assert_eq!(sim.s.last_left(0), LeftAs::Exited);
}

#[test]
fn thread_states_are_reported_as_the_policy_holds_them() {
    let mut sim = Sim::new();
    let m = sim.s.create_mutex();
    let low = sim.spawn(2, None);
    assert!(sim.lock(m));
    let high = sim.spawn(9, None);
    assert!(!sim.lock(m), "high blocks on the mutex low holds");
    let ready = sim.spawn(1, None);
    let mut seen = Vec::new();
    sim.s.for_each_thread_state(|t, st| seen.push((t.id(), st)));
    let of = |id: ThreadId| seen.iter().find(|(t, _)| *t == id).unwrap().1;
    // The idle thread, then the three, in table order.
    assert_eq!(seen.len(), 4);
    let l = of(low);
    assert_eq!(l.state, RunState::Running);
    assert_eq!((l.base, l.effective), (p(2), p(9)), "low runs boosted");
    assert_eq!((l.cpu, l.blocked_on), (0, None));
    let h = of(high);
    assert_eq!(h.state, RunState::Blocked);
    assert_eq!(h.blocked_on, Some("mutex"));
    assert_eq!(of(ready).state, RunState::Ready);
    assert!(!of(ready).suspend_pending);
    // A suspended thread; an exited one is not reported.
    let d = sim.s.suspend(ready).unwrap();
    sim.apply(d);
    let mut states = Vec::new();
    sim.s
        .for_each_thread_state(|t, st| states.push((t.id(), st.state)));
    assert!(states.contains(&(ready, RunState::Suspended)));
    sim.unlock(m);
    sim.unlock(m);
    sim.exit();
    let mut ids = Vec::new();
    sim.s.for_each_thread_state(|t, _| ids.push(t.id()));
    assert!(!ids.contains(&high), "an exited thread is not reported");
}
