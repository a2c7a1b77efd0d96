//! Model checks of the IRQ registry's lock-free part: a vector's handler is published by
//! registration (a `Once` completed with release) and read by dispatch in interrupt context
//! (one acquire load), on other CPUs, at any time. Every interleaving of the small scenarios
//! below is explored (within the stated preemption bound), with loom checking the handler's
//! cell for data races.
//!
//! The contract modelled, from `src/registry.rs`: a dispatch racing the registration of its
//! vector either finds no handler (counted as unhandled) or the whole handler, never a
//! half-written one; a dispatch that happens after `register` returned (the driver enables its
//! device only then) finds the handler; two registrations of one vector have exactly one
//! winner, and the vector keeps the winner's handler; every dispatch is counted once, as
//! handled or unhandled; a threaded top half's wake goes through the waker or is counted lost,
//! never both nor neither. Registrations are permanent (there is no unregister), so there is
//! no "handler runs after unregister" race to model.
//!
//! Under loom the `Once` is the crate's model-only copy of `spin::Once`'s algorithm (see
//! `src/sync.rs`); `spin`'s own code is not what is checked here.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p rhea-irq --release` (`cargo xtask test` does,
//! into `target/loom`). `LOOM_MAX_PREEMPTIONS=N` overrides the bounds for a deeper run.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use rhea_irq::{
    Dispatch, IrqHandler, IrqRegistry, IrqThreadWaker, RegistryError, Reschedule, TopHalf, Vector,
};

/// The vector the models race on.
const V: u8 = 0x40;

loom::lazy_static! {
    /// Per handler context: how often the fast handler ran with it. Fresh in each execution.
    static ref HITS: [AtomicUsize; 3] = core::array::from_fn(|_| AtomicUsize::new(0));
    /// Wakes the waker received for [`TOKEN`].
    static ref WOKEN: AtomicUsize = AtomicUsize::new(0);
}

/// A fast handler: counts a run under its context.
fn count(ctx: usize) -> Reschedule {
    HITS[ctx].fetch_add(1, Ordering::Relaxed);
    Reschedule::NotNeeded
}

fn fast(ctx: usize) -> IrqHandler {
    IrqHandler::Fast {
        handler: count,
        ctx,
    }
}

fn vector() -> Vector {
    Vector::new(V).expect("an interrupt vector")
}

/// Bounded models: each finishes in seconds.
fn bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}

/// One CPU registers a handler and then enables its device; another CPU takes the vector
/// twice. A dispatch sees no handler or the whole one; once the device is seen enabled, the
/// handler is there. Two threads, no preemption bound.
#[test]
fn dispatch_races_registration() {
    loom::model(|| {
        let registry = Arc::new(IrqRegistry::new());
        let enabled = Arc::new(AtomicBool::new(false));
        let driver = {
            let (registry, enabled) = (Arc::clone(&registry), Arc::clone(&enabled));
            thread::spawn(move || {
                registry.register(vector(), fast(1)).unwrap();
                // The device can raise the vector only from here on (release: the line is
                // unmasked after the registration).
                enabled.store(true, Ordering::Release);
            })
        };
        let mut handled = 0;
        for _ in 0..2 {
            let is_enabled = enabled.load(Ordering::Acquire);
            match registry.dispatch(V) {
                Dispatch::Handled(_) => handled += 1,
                Dispatch::Unhandled => assert!(!is_enabled, "enabled device, no handler"),
            }
        }
        driver.join().unwrap();
        assert_eq!(
            HITS[1].load(Ordering::Relaxed),
            handled,
            "handler with its context"
        );
        let stats = registry.stats(vector());
        assert_eq!(stats.handled, handled as u64);
        assert_eq!(
            stats.handled + stats.unhandled,
            2,
            "each dispatch counted once"
        );
    });
}

/// Two CPUs register different handlers on one vector while a third takes it: one
/// registration wins, the loser is told so (after waiting out the winner's write), and any
/// handled dispatch ran the winner's handler. Three threads, preemption bound 4 (~10 s in
/// release; 5 takes ~30 s).
#[test]
fn racing_registrations_have_one_winner() {
    bounded(4, || {
        let registry = Arc::new(IrqRegistry::new());
        let drivers: Vec<_> = [1, 2]
            .into_iter()
            .map(|ctx| {
                let registry = Arc::clone(&registry);
                thread::spawn(move || registry.register(vector(), fast(ctx)))
            })
            .collect();
        let dispatched = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || registry.dispatch(V))
        };
        let results: Vec<_> = drivers.into_iter().map(|d| d.join().unwrap()).collect();
        let dispatched = dispatched.join().unwrap();
        let winners: Vec<usize> = [1, 2]
            .into_iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(ctx, _)| ctx)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one registration wins: {results:?}"
        );
        let (winner, loser) = (winners[0], 3 - winners[0]);
        assert_eq!(
            results[loser - 1],
            Err(RegistryError::AlreadyRegistered(vector()))
        );
        assert!(matches!(
            registry.handler(vector()),
            Some(IrqHandler::Fast { ctx, .. }) if ctx == winner
        ));
        let handled = usize::from(matches!(dispatched, Dispatch::Handled(_)));
        assert_eq!(HITS[winner].load(Ordering::Relaxed), handled);
        assert_eq!(
            HITS[loser].load(Ordering::Relaxed),
            0,
            "the loser's handler ran"
        );
    });
}

/// Two drivers ask for a device vector at once: they get different vectors (the first two
/// free ones), each with its own handler. Two threads, no preemption bound.
#[test]
fn racing_device_registrations_get_different_vectors() {
    loom::model(|| {
        let registry = Arc::new(IrqRegistry::new());
        let other = {
            let registry = Arc::clone(&registry);
            thread::spawn(move || registry.register_device(fast(2)).unwrap())
        };
        let mine = registry.register_device(fast(1)).unwrap();
        let other = other.join().unwrap();
        assert_ne!(mine, other);
        let mut got = [mine.get(), other.get()];
        got.sort_unstable();
        assert_eq!(got, [0x30, 0x31], "the first two device vectors");
        for (v, ctx) in [(mine, 1), (other, 2)] {
            assert!(
                matches!(registry.handler(v), Some(IrqHandler::Fast { ctx: c, .. }) if c == ctx)
            );
        }
    });
}

/// The thread token the threaded handler wakes.
const TOKEN: usize = 42;

/// The scheduler's waker: counts wakes of [`TOKEN`].
#[derive(Debug)]
struct CountingWaker;

impl IrqThreadWaker for CountingWaker {
    fn wake(&self, token: usize) -> Reschedule {
        assert_eq!(token, TOKEN, "woke the wrong thread");
        WOKEN.fetch_add(1, Ordering::Relaxed);
        Reschedule::Needed
    }
}

static WAKER: CountingWaker = CountingWaker;

/// A top half that always has work for its thread.
fn always_wake(_: usize) -> TopHalf {
    TopHalf::WakeThread
}

/// The scheduler sets its waker (then says so) while another CPU takes a threaded vector: the
/// wake goes through the waker or is counted lost, exactly one of the two; once the waker is
/// seen set, the wake goes through it. Two threads, no preemption bound.
#[test]
fn waker_set_while_a_threaded_vector_dispatches() {
    loom::model(|| {
        let registry = Arc::new(IrqRegistry::new());
        registry
            .register(
                vector(),
                IrqHandler::Threaded {
                    top_half: always_wake,
                    ctx: 0,
                    wake_token: TOKEN,
                },
            )
            .unwrap();
        let is_set = Arc::new(AtomicBool::new(false));
        let scheduler = {
            let (registry, is_set) = (Arc::clone(&registry), Arc::clone(&is_set));
            thread::spawn(move || {
                registry.set_thread_waker(&WAKER).unwrap();
                is_set.store(true, Ordering::Release);
            })
        };
        let was_set = is_set.load(Ordering::Acquire);
        let dispatched = registry.dispatch(V);
        scheduler.join().unwrap();
        let (woken, wakes, lost) = (
            WOKEN.load(Ordering::Relaxed) as u64,
            registry.stats(vector()).wakes,
            registry.lost_wakes(),
        );
        assert_eq!(woken, wakes, "every wake counted, once");
        assert_eq!(
            wakes + lost,
            1,
            "a wake went through the waker or was counted lost"
        );
        assert!(!was_set || wakes == 1, "waker set, wake lost");
        let expect = if wakes == 1 {
            Reschedule::Needed
        } else {
            Reschedule::NotNeeded
        };
        assert_eq!(dispatched, Dispatch::Handled(expect));
    });
}
