//! The background builder of step 2 (every app booted on every board).
//!
//! Why it exists: CI time. On CI (a clean clone, 2 cores) about half of a full `cargo xtask
//! test` went into `cargo build`, one app after the other, each before its boots, while most
//! boots (TCG, one vCPU) keep only one of the two cores busy. So before the boot loop starts,
//! [`plan`] lists the (board, app) pairs it will boot, in its order, and one thread builds their
//! images in that order while the loop boots those already built: cargo runs beside QEMU
//! instead of between its runs.
//!
//! The builds stay one at a time (they share a board's target directory, and there are only 2
//! cores), each with its board's toolchain checked first. A build writes what it says and what
//! its commands print to `target/board-<board>/<app>.build.log` and runs them under `nice`
//! (`image::BuildOutput::Background`), so the case lines stay readable and the boots' QEMU keeps
//! its core; the boot loop prints that log only when the build failed, before failing the
//! app's cases. The builder itself prints one line per finished build.
//!
//! The hand-over ([`Handoff`]) is a slot per planned build under a mutex, with a condition
//! variable the boot loop waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::apps::App;
use crate::boards::Board;

use super::Case;

/// One app to build for one board, with the cases it will boot.
pub(super) struct Planned<'a> {
    pub(super) board: &'static Board,
    pub(super) app: &'a App,
    pub(super) cases: Vec<Case>,
}

/// What the boot loop will build and boot, in its order: board by board, app by app, the pairs
/// `cases` gives at least one case (after `--filter`, `--machine`, `skip-on`, `boards = [...]`)
/// and no others. The builder builds in this order, so the loop never waits on a build it does
/// not need yet.
pub(super) fn plan<'a>(
    boards: &[&'static Board],
    apps: &[&'a App],
    mut cases: impl FnMut(&'static Board, &'a App) -> Vec<Case>,
) -> Vec<Planned<'a>> {
    let mut planned = Vec::new();
    for &board in boards {
        for &app in apps {
            let cases = cases(board, app);
            if !cases.is_empty() {
                planned.push(Planned { board, app, cases });
            }
        }
    }
    planned
}

/// A build that failed: the reason its cases fail with (`setup failed: ...`, `build failed:
/// ...`) and what it printed.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) reason: String,
    /// The build's log, with where it is kept; empty if there is none.
    pub(super) output: String,
}

/// Results made one after the other by one thread (the builder) and taken, each once, by
/// another (the boot loop), which waits for those not made yet.
pub(super) struct Handoff<T> {
    slots: Mutex<Slots<T>>,
    changed: Condvar,
    stop: AtomicBool,
}

struct Slots<T> {
    results: Vec<Option<T>>,
    /// The maker has returned (or unwound): a slot still empty will stay so.
    finished: bool,
}

impl<T> Handoff<T> {
    /// Room for `count` results.
    pub(super) fn new(count: usize) -> Handoff<T> {
        Handoff {
            slots: Mutex::new(Slots {
                results: (0..count).map(|_| None).collect(),
                finished: false,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // The lock is never held across a build, so a panic elsewhere leaves the slots whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The maker's side: `make(i)` for each slot in order, each result handed over as soon as
    /// it is made, until all are made or [`Handoff::stop`] is called.
    pub(super) fn make_all(&self, mut make: impl FnMut(usize) -> T) {
        /// Marks the maker finished however it ends, so no taker waits forever.
        struct Finish<'h, T>(&'h Handoff<T>);
        impl<T> Drop for Finish<'_, T> {
            fn drop(&mut self) {
                self.0.lock().finished = true;
                self.0.changed.notify_all();
            }
        }
        let _finish = Finish(self);
        let count = self.lock().results.len();
        for i in 0..count {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let made = make(i);
            self.lock().results[i] = Some(made);
            self.changed.notify_all();
        }
    }

    /// The taker's side: result `i`, once it is made; `None` if the maker finished without
    /// making it (stopped, or panicked), or it was taken before.
    pub(super) fn take(&self, i: usize) -> Option<T> {
        let mut slots = self.lock();
        loop {
            if let Some(made) = slots.results.get_mut(i).and_then(Option::take) {
                return Some(made);
            }
            if slots.finished || i >= slots.results.len() {
                return None;
            }
            slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Asks the maker to make nothing more (it ends the result under way first).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Calls [`Handoff::stop`] when dropped: the boot loop's side holds one, so that however it
/// ends (an error, a panic) the builder does not go on building images nobody will boot.
pub(super) struct StopOnDrop<'h, T>(pub(super) &'h Handoff<T>);

impl<T> Drop for StopOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps;
    use crate::boards;
    use crate::qemu::Accel;
    use std::time::Duration;

    fn app(name: &str, meta: &str) -> App {
        let text = format!("[package]\nname = \"{name}\"\n[package.metadata.rhea]\n{meta}\n");
        App::new(
            name.to_string(),
            std::path::PathBuf::new(),
            apps::parse_manifest(&text).unwrap(),
        )
    }

    fn case(name: &str) -> Case {
        Case {
            machine: "m",
            accel: Accel::Tcg,
            smp: 1,
            seed: None,
            name: name.to_string(),
        }
    }

    #[test]
    fn the_plan_is_the_boot_order_without_the_pairs_that_boot_nothing() {
        let x86 = boards::find("qemu-x86_64").unwrap();
        let arm = boards::find("qemu-aarch64").unwrap();
        let (a, b, c) = (app("a", ""), app("b", ""), app("c", ""));
        // `b` boots nothing on x86, `c` nothing on Arm.
        let planned = plan(&[x86, arm], &[&a, &b, &c], |board, app| {
            match (board.name, app.name.as_str()) {
                ("qemu-x86_64", "b") | ("qemu-aarch64", "c") => Vec::new(),
                (board, app) => vec![case(&format!("{board} {app} 1")), case("2")],
            }
        });
        let order: Vec<(&str, &str)> = planned
            .iter()
            .map(|p| (p.board.name, p.app.name.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("qemu-x86_64", "a"),
                ("qemu-x86_64", "c"),
                ("qemu-aarch64", "a"),
                ("qemu-aarch64", "b"),
            ]
        );
        // Each pair keeps its cases, in their order.
        assert_eq!(planned[1].cases.len(), 2);
        assert_eq!(planned[1].cases[0].name, "qemu-x86_64 c 1");
        // Nothing to boot, nothing to build.
        assert!(plan(&[x86, arm], &[&a], |_, _| Vec::new()).is_empty());
        assert!(plan(&[], &[&a], |_, _| vec![case("x")]).is_empty());
    }

    #[test]
    fn the_taker_waits_for_each_result_in_turn() {
        let handoff = Handoff::new(3);
        let taken = std::thread::scope(|s| {
            s.spawn(|| {
                handoff.make_all(|i| {
                    std::thread::sleep(Duration::from_millis(20));
                    i * 10
                })
            });
            (0..3).map(|i| handoff.take(i)).collect::<Vec<_>>()
        });
        assert_eq!(taken, [Some(0), Some(10), Some(20)]);
        // Taken once; past the end there is nothing.
        assert_eq!(handoff.take(1), None);
        assert_eq!(handoff.take(3), None);
    }

    #[test]
    fn a_stopped_or_failed_maker_leaves_no_taker_waiting() {
        // Stopped after the first result: the rest are never made.
        let handoff = Handoff::new(3);
        handoff.make_all(|i| {
            handoff.stop();
            i
        });
        assert_eq!(
            (handoff.take(0), handoff.take(1), handoff.take(2)),
            (Some(0), None, None)
        );
        // A maker that panics at the second result.
        let handoff = Handoff::new(2);
        std::thread::scope(|s| {
            let maker = s.spawn(|| {
                handoff.make_all(|i| {
                    assert_eq!(i, 0, "the second build blew up");
                    i
                })
            });
            assert_eq!(handoff.take(0), Some(0));
            assert_eq!(handoff.take(1), None);
            assert!(maker.join().is_err());
        });
        // The boot loop's guard stops the maker when it goes.
        let handoff: Handoff<usize> = Handoff::new(1);
        drop(StopOnDrop(&handoff));
        handoff.make_all(|i| i);
        assert_eq!(handoff.take(0), None);
    }
}
