//! Model checks of the cross-CPU call mailboxes ([`CallBoard`]): every interleaving (within the
//! stated preemption bound) of two and three "CPUs" — loom threads — posting calls to one
//! another while draining their own mailboxes.
//!
//! What each model asserts: every call runs exactly once, on a CPU it was aimed at, with the
//! argument it was posted with (the k-th call from a sender to a target runs when that pair's
//! count is k, so a stale or rewritten slot is caught); and a sender sees its call done only
//! after every target ran it — the sender reads the targets' counters with `Relaxed` loads, so
//! the assertion holds only if the protocol itself orders the call before the wait's end (loom
//! offers every value the memory model allows). The function pointer travels through the
//! slot's `AtomicUsize` like in the kernel.
//!
//! Two kinds of CPU loop. With two threads, CPUs spin as the kernel does (a waiting sender
//! drains its own mailbox until its call is done; a target drains until its calls ran), so
//! loom also shows the waits end (a livelock would exceed loom's branch limit). With three,
//! two spinning threads could take turns forever while the third never runs, which loom
//! explores up to its branch limit; so there each CPU *polls* a fixed number of times (its IPI
//! handler running at arbitrary points, or its wait loop), a sender checks its targets' work
//! whenever a poll sees its call done, and after the join every mailbox is drained once more
//! (the later IPIs) before the final counts are checked.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rhea-smp --release` (`cargo xtask test` does,
//! into `target/loom`). `LOOM_MAX_PREEMPTIONS=N` overrides the bounds for a deeper run.
#![cfg(loom)]

use std::cell::Cell;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use rhea_smp::CallBoard;

/// CPUs the models use.
const CPUS: usize = 3;

/// Polls per CPU in the three-thread models.
const POLLS: usize = 3;

loom::lazy_static! {
    /// Per (sender, target): calls that ran. Fresh in each execution (loom's statics are).
    static ref RAN: [[AtomicUsize; CPUS]; CPUS] =
        core::array::from_fn(|_| core::array::from_fn(|_| AtomicUsize::new(0)));
}

loom::thread_local! {
    /// The "CPU" a loom thread plays.
    static CPU: Cell<usize> = Cell::new(usize::MAX);
}

/// The argument of `sender`'s `seq`-th call to the CPUs in `mask`.
fn packed(sender: usize, mask: u64, seq: usize) -> usize {
    (seq << 16) | ((mask as usize) << 8) | sender
}

/// The called function: checks it runs on a CPU the call was aimed at, as the sender's
/// `seq`-th call there, then counts itself.
fn record(arg: usize) {
    let (seq, mask, sender) = (arg >> 16, (arg >> 8) & 0xff, arg & 0xff);
    let me = CPU.with(Cell::get);
    assert_ne!(
        mask & (1 << me),
        0,
        "call ran on CPU {me}, not one it was aimed at"
    );
    let before = RAN[sender][me].fetch_add(1, Ordering::Relaxed);
    assert_eq!(
        before, seq,
        "call ran twice, or ran a stale or rewritten slot"
    );
}

/// Spawns a loom thread playing CPU `me`.
fn cpu(
    board: &Arc<CallBoard>,
    me: usize,
    f: impl FnOnce(&CallBoard) + Send + 'static,
) -> thread::JoinHandle<()> {
    let board = Arc::clone(board);
    thread::spawn(move || {
        CPU.with(|c| c.set(me));
        f(&board);
    })
}

/// Checks the final counts: `expected[s][t]` calls from `s` ran on `t`.
fn assert_ran(expected: [[usize; CPUS]; CPUS]) {
    for (s, row) in expected.iter().enumerate() {
        for (t, &n) in row.iter().enumerate() {
            assert_eq!(RAN[s][t].load(Ordering::Relaxed), n, "calls {s} -> {t}");
        }
    }
}

/// The two-thread models' sender: CPU `me`'s `seq`-th call to `target`, then the kernel's
/// wait, draining its own mailbox meanwhile. Returns how many calls it ran while waiting.
fn call_and_spin(board: &CallBoard, me: usize, target: usize, seq: usize) -> usize {
    board
        .post(me, 1 << target, record, packed(me, 1 << target, seq))
        .expect("one call in flight per sender");
    let mut ran = 0;
    while board.outstanding(me) != 0 {
        ran += board.run_pending(me);
        thread::yield_now();
    }
    assert_eq!(
        RAN[me][target].load(Ordering::Relaxed),
        seq + 1,
        "the wait returned before CPU {target} ran the call"
    );
    ran
}

/// The two-thread models' target: drains CPU `me`'s mailbox until `n` calls in all ran here,
/// `already` of them during its own waits.
fn serve(board: &CallBoard, me: usize, n: usize, already: usize) {
    let mut ran = already;
    while ran < n {
        ran += board.run_pending(me);
        if ran < n {
            thread::yield_now();
        }
    }
    assert_eq!(ran, n, "more calls ran on CPU {me} than were posted to it");
}

/// CPU 0 calls CPU 1 twice in a row: the second post rewrites the slot the first call was read
/// from, so the target must have finished reading it. Two threads, no preemption bound.
#[test]
fn one_target_twice_reuses_the_slot() {
    loom::model(|| {
        let board = Arc::new(CallBoard::new());
        let target = cpu(&board, 1, |b| serve(b, 1, 2, 0));
        let sender = cpu(&board, 0, |b| {
            for seq in 0..2 {
                assert_eq!(
                    call_and_spin(b, 0, 1, seq),
                    0,
                    "nothing was posted to CPU 0"
                );
            }
        });
        sender.join().unwrap();
        target.join().unwrap();
        assert_eq!(board.outstanding(0), 0);
        assert_ran([[0, 2, 0], [0; 3], [0; 3]]);
    });
}

/// CPUs 0 and 1 call each other at once; each keeps draining its own mailbox while it waits,
/// so neither waits for the other forever. Two threads, no preemption bound.
#[test]
fn two_cpus_call_each_other() {
    loom::model(|| {
        let board = Arc::new(CallBoard::new());
        let cpus: Vec<_> = (0..2)
            .map(|me| {
                cpu(&board, me, move |b| {
                    let ran = call_and_spin(b, me, 1 - me, 0);
                    serve(b, me, 1, ran);
                })
            })
            .collect();
        for c in cpus {
            c.join().unwrap();
        }
        assert_ran([[0, 1, 0], [1, 0, 0], [0; 3]]);
    });
}

/// Three-thread models: bounded so each finishes in seconds.
fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// The three-thread models' CPU `me`: posts its call to `targets` (if any), then polls
/// [`POLLS`] times — drains its own mailbox and, once its call is done, checks its targets'
/// work is visible.
fn post_and_poll(board: &CallBoard, me: usize, targets: &[usize]) {
    let mask = targets.iter().fold(0, |m, &t| m | 1 << t);
    if mask != 0 {
        board
            .post(me, mask, record, packed(me, mask, 0))
            .expect("one call in flight per sender");
    }
    for _ in 0..POLLS {
        board.run_pending(me);
        if mask != 0 && board.outstanding(me) == 0 {
            for &t in targets {
                assert_eq!(
                    RAN[me][t].load(Ordering::Relaxed),
                    1,
                    "the call looked done before CPU {t} ran it"
                );
            }
            break;
        }
    }
}

/// A three-CPU scenario: CPU `i` posts to `calls[i]` and polls; after the join, every mailbox
/// is drained (as its CPU), nothing is outstanding, and exactly `expected` ran.
fn three_cpus(calls: [&'static [usize]; CPUS], expected: [[usize; CPUS]; CPUS]) {
    let board = Arc::new(CallBoard::new());
    let cpus: Vec<_> = (0..CPUS)
        .map(|me| cpu(&board, me, move |b| post_and_poll(b, me, calls[me])))
        .collect();
    for c in cpus {
        c.join().unwrap();
    }
    for me in 0..CPUS {
        CPU.with(|c| c.set(me));
        board.run_pending(me);
    }
    for me in 0..CPUS {
        assert_eq!(board.outstanding(me), 0, "CPU {me}'s call never finished");
    }
    assert_ran(expected);
}

/// CPU 0 broadcasts to CPUs 1 and 2: it may see its call done only after both ran it,
/// whichever clears its bit last. Three threads, preemption bound 3.
#[test]
fn broadcast_waits_for_every_target() {
    bounded(3, || {
        three_cpus([&[1, 2], &[], &[]], [[0, 1, 1], [0; 3], [0; 3]]);
    });
}

/// Three CPUs each call the next at once (0 → 1 → 2 → 0), each draining its own mailbox
/// while it waits. Three threads, preemption bound 3.
#[test]
fn three_cpus_call_in_a_ring() {
    bounded(3, || {
        three_cpus([&[1], &[2], &[0]], [[0, 1, 0], [0, 0, 1], [1, 0, 0]]);
    });
}

/// CPUs 0 and 1 both call CPU 2 at once: both senders' bits land in one mailbox word, and one
/// drain may take both. Three threads, preemption bound 3.
#[test]
fn two_senders_one_target() {
    bounded(3, || {
        three_cpus([&[2], &[2], &[]], [[0, 0, 1], [0, 0, 1], [0; 3]]);
    });
}
