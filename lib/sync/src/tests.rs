use super::*;
use std::cell::Cell;
use std::sync::Arc;
use std::vec::Vec;

std::thread_local! {
    /// The model CPU's interrupt flag (one per test thread).
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// A model mask over the thread-local flag.
struct Model;

impl InterruptMask for Model {
    fn save() -> bool {
        ENABLED.with(|e| e.replace(false))
    }
    fn restore(was_enabled: bool) {
        if was_enabled {
            ENABLED.with(|e| e.set(true));
        }
    }
}

fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

#[test]
fn irqs_off_lock_disables_while_held_and_restores_after() {
    let lock: SpinLock<u32, IrqsOff<Model>> = SpinLock::new(1);
    assert!(enabled());
    {
        let mut g = lock.lock();
        assert!(!enabled(), "interrupts are off while the lock is held");
        *g += 1;
        // Nested in another IrqsOff lock: leaving the inner one keeps them off.
        let inner: SpinLock<(), IrqsOff<Model>> = SpinLock::new(());
        drop(inner.lock());
        assert!(
            !enabled(),
            "an inner lock's release does not enable interrupts"
        );
    }
    assert!(enabled(), "the outer release restores them");
    assert_eq!(*lock.lock(), 2);
}

#[test]
fn irqs_off_lock_taken_with_interrupts_off_leaves_them_off() {
    let lock: SpinLock<(), IrqsOff<Model>> = SpinLock::new(());
    let outer = IrqGuard::<Model>::new();
    assert!(outer.were_enabled());
    drop(lock.lock());
    assert!(!enabled());
    drop(outer);
    assert!(enabled());
}

#[test]
fn nothing_off_lock_touches_no_interrupt_state() {
    let lock: SpinLock<u8, NothingOff> = SpinLock::new(0);
    let g = lock.lock();
    assert!(enabled());
    drop(g);
    assert!(enabled());
}

#[test]
fn try_lock_fails_while_held_and_leaves_the_mode_again() {
    let lock: SpinLock<(), IrqsOff<Model>> = SpinLock::new(());
    let g = lock.lock();
    // A second attempt on the same "CPU" (as an interrupt handler would) fails without
    // spinning, and its failed attempt does not re-enable interrupts.
    assert!(lock.try_lock().is_none());
    assert!(!enabled());
    drop(g);
    assert!(enabled());
    assert!(lock.try_lock().is_some());
    assert!(enabled());
}

#[test]
fn irq_guards_nest() {
    let a = IrqGuard::<Model>::new();
    let b = IrqGuard::<Model>::new();
    assert!(a.were_enabled());
    assert!(!b.were_enabled());
    drop(b);
    assert!(!enabled(), "the inner guard restores 'off'");
    drop(a);
    assert!(enabled());
}

#[test]
fn excludes_across_threads() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 20_000;
    let lock: Arc<SpinLock<(u64, u64), IrqsOff<Model>>> = Arc::new(SpinLock::new((0, 0)));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let mut g = lock.lock();
                    // Two fields updated apart: a second holder would see them differ.
                    g.0 += 1;
                    std::hint::spin_loop();
                    assert_eq!(g.0, g.1 + 1, "another holder got in");
                    g.1 += 1;
                }
                assert!(enabled());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let g = lock.lock();
    assert_eq!(g.0, (THREADS * ROUNDS) as u64);
    assert_eq!(g.0, g.1);
}

#[test]
fn once_stores_the_first_value_only() {
    let once = Once::new();
    assert_eq!(once.get(), None);
    assert!(!once.is_completed());
    assert_eq!(*once.call_once(|| 7), 7);
    assert_eq!(*once.call_once(|| 8), 7);
    assert_eq!(once.get(), Some(&7));
    assert!(once.is_completed());
    assert_eq!(std::format!("{once:?}"), "Once(7)");
    assert_eq!(std::format!("{:?}", Once::<u8>::new()), "Once(<uninit>)");
}

#[test]
fn once_in_a_static() {
    static NAME: Once<&str> = Once::new();
    assert_eq!(*NAME.call_once(|| "first"), "first");
    assert_eq!(*NAME.call_once(|| "second"), "first");
}

#[test]
fn once_drops_its_value_and_an_unused_initialiser() {
    let value = Arc::new(());
    let once = Once::new();
    once.call_once(|| Arc::clone(&value));
    let unused = Arc::clone(&value);
    once.call_once(move || unused);
    assert_eq!(Arc::strong_count(&value), 2);
    drop(once);
    assert_eq!(Arc::strong_count(&value), 1);
    drop(Once::<Arc<()>>::new());
}

#[test]
fn once_racing_threads_run_one_initialiser_and_see_its_value() {
    use std::sync::atomic::AtomicUsize;
    for _ in 0..50 {
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (once, runs) = (Arc::clone(&once), Arc::clone(&runs));
                std::thread::spawn(move || {
                    *once.call_once(|| {
                        runs.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                        i
                    })
                })
            })
            .collect();
        let seen: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert!(seen.iter().all(|&v| v == seen[0]));
        assert_eq!(once.get(), Some(&seen[0]));
    }
}

#[test]
fn once_poisoned_by_a_panicking_initialiser() {
    let once = Arc::new(Once::<u32>::new());
    let o = Arc::clone(&once);
    assert!(
        std::thread::spawn(move || *o.call_once(|| panic!("init fails")))
            .join()
            .is_err()
    );
    assert_eq!(once.get(), None);
    let o = Arc::clone(&once);
    assert!(
        std::thread::spawn(move || *o.call_once(|| 1))
            .join()
            .is_err()
    );
}
