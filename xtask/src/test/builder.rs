//! The background builder of step 2 (every app booted on every board).
//!
//! Why it exists: CI time. On CI (a clean clone, 2 cores) about half of a full `cargo xtask
//! test` went into `cargo build`, one app after the other, each before its boots, while most
//! boots (TCG, one vCPU) keep only one of the two cores busy. So before the boot loop starts,
//! [`plan`] lists the (board, app) pairs it will boot, in its order, and one thread builds their
//! images in that order while the loop boots those already built: cargo runs beside QEMU
//! instead of between its runs.
//!
//! The builds run in [`LANES`] lanes, never two of one board at once (they share its target
//! directory, which cargo locks), each with its board's toolchain checked first. Measured on
//! the clean-clone CI before lanes (2026-12-07, 2 cores): 218 image builds took 1867 s one
//! after the other while the boots they fed took ~750 s, so one core idled for most of the
//! step; a second lane builds the next board's images meanwhile. A build writes what it says
//! and what its commands print to `target/board-<board>/<app>.build.log` and runs them under
//! `nice` (`image::BuildOutput::Background`), so the case lines stay readable and the boots'
//! QEMU keeps its core; the boot loop prints that log only when the build failed, before
//! failing the app's cases. The builder itself prints one line per finished build.
//!
//! The hand-over ([`Handoff`]) is a slot per planned build under a mutex, with a condition
//! variable the boot loop waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::apps::App;
use crate::boards::Board;

use super::Case;

/// How many builds run at once (see the module's comment): the host's two cores.
pub(super) const LANES: usize = 2;

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

/// Results made by one or more threads (the builder's lanes) and taken, each once, by another
/// (the boot loop), which waits for those not made yet.
pub(super) struct Handoff<T> {
    slots: Mutex<Slots<T>>,
    changed: Condvar,
    stop: AtomicBool,
}

struct Slots<T> {
    results: Vec<Option<T>>,
    /// Slots a lane has taken on (made or being made).
    claimed: Vec<bool>,
    /// The keys of the slots being made now: two slots with one key are never made at once.
    busy: Vec<String>,
    /// Lanes still making: when none is, a slot still empty will stay so.
    makers: usize,
}

impl<T> Handoff<T> {
    /// Room for `count` results, made by `lanes` lanes (see [`Handoff::make_all`]).
    pub(super) fn new(count: usize, lanes: usize) -> Handoff<T> {
        Handoff {
            slots: Mutex::new(Slots {
                results: (0..count).map(|_| None).collect(),
                claimed: vec![false; count],
                busy: Vec::new(),
                makers: lanes.max(1),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // The lock is never held across a build, so a panic elsewhere leaves the slots whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The makers' side: the lanes given to [`Handoff::new`], each a thread, make every slot, each result handed over as soon as it
    /// is made, until all are made or [`Handoff::stop`] is called. A lane takes the lowest slot
    /// not taken whose `key` no other lane is making now (a board's builds share its target
    /// directory, which cargo locks: a second build there would only wait), so the slots are
    /// made in about their order. Returns when every lane has.
    pub(super) fn make_all(
        &self,
        key: impl Fn(usize) -> String + Sync,
        make: impl Fn(usize) -> T + Sync,
    ) where
        T: Send,
    {
        let lanes = self.lock().makers;
        std::thread::scope(|s| {
            for _ in 0..lanes {
                s.spawn(|| self.lane(&key, &make));
            }
        });
    }

    /// One lane of [`Handoff::make_all`].
    fn lane(&self, key: &(impl Fn(usize) -> String + Sync), make: &(impl Fn(usize) -> T + Sync))
    where
        T: Send,
    {
        /// Marks this lane finished however it ends, so no taker waits forever.
        struct Finish<'h, T>(&'h Handoff<T>);
        impl<T> Drop for Finish<'_, T> {
            fn drop(&mut self) {
                let mut slots = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots.makers -= 1;
                drop(slots);
                self.0.changed.notify_all();
            }
        }
        let _finish = Finish(self);
        loop {
            let (i, k) = {
                let mut slots = self.lock();
                loop {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut any_left = false;
                    let mut pick = None;
                    for i in 0..slots.claimed.len() {
                        if slots.claimed[i] {
                            continue;
                        }
                        any_left = true;
                        let k = key(i);
                        if !slots.busy.contains(&k) {
                            pick = Some((i, k));
                            break;
                        }
                    }
                    match pick {
                        Some((i, k)) => {
                            slots.claimed[i] = true;
                            slots.busy.push(k.clone());
                            break (i, k);
                        }
                        None if !any_left => return,
                        // Every slot left has a key another lane is making: wait for it.
                        None => slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            };
            /// Frees the key however the make ends.
            struct Release<'h, T>(&'h Handoff<T>, String);
            impl<T> Drop for Release<'_, T> {
                fn drop(&mut self) {
                    let mut slots = self.0.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.busy.retain(|b| *b != self.1);
                    drop(slots);
                    self.0.changed.notify_all();
                }
            }
            let release = Release(self, k);
            let made = make(i);
            self.lock().results[i] = Some(made);
            drop(release);
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
            if slots.makers == 0 || i >= slots.results.len() {
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

    /// Every slot its own key.
    fn key_none(i: usize) -> String {
        i.to_string()
    }

    #[test]
    fn two_lanes_make_every_slot_once_never_two_of_one_key_at_once() {
        use std::sync::atomic::AtomicUsize;
        // Slots 0-2 are board "a", 3-5 board "b": the lanes may run one of each at once.
        let keys = ["a", "a", "a", "b", "b", "b"];
        let handoff = Handoff::new(keys.len(), 2);
        let running = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let most = AtomicUsize::new(0);
        let made = AtomicUsize::new(0);
        let taken = std::thread::scope(|s| {
            s.spawn(|| {
                handoff.make_all(
                    |i| keys[i].to_string(),
                    |i| {
                        let k = usize::from(keys[i] == "b");
                        let now = running[k].fetch_add(1, Ordering::SeqCst) + 1;
                        assert_eq!(now, 1, "two makes of key {} at once", keys[i]);
                        let both =
                            running[0].load(Ordering::SeqCst) + running[1].load(Ordering::SeqCst);
                        most.fetch_max(both, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running[k].fetch_sub(1, Ordering::SeqCst);
                        made.fetch_add(1, Ordering::SeqCst);
                        i * 10
                    },
                )
            });
            (0..keys.len()).map(|i| handoff.take(i)).collect::<Vec<_>>()
        });
        assert_eq!(taken, [0, 10, 20, 30, 40, 50].map(Some));
        assert_eq!(made.load(Ordering::SeqCst), keys.len());
        // The second lane worked beside the first (board "b" while "a" built).
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_taker_waits_for_each_result_in_turn() {
        let handoff = Handoff::new(3, 1);
        let taken = std::thread::scope(|s| {
            s.spawn(|| {
                handoff.make_all(key_none, |i| {
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
        let handoff = Handoff::new(3, 1);
        handoff.make_all(key_none, |i| {
            handoff.stop();
            i
        });
        assert_eq!(
            (handoff.take(0), handoff.take(1), handoff.take(2)),
            (Some(0), None, None)
        );
        // A maker that panics at the second result.
        let handoff = Handoff::new(2, 1);
        std::thread::scope(|s| {
            let maker = s.spawn(|| {
                handoff.make_all(key_none, |i| {
                    assert_eq!(i, 0, "the second build blew up");
                    i
                })
            });
            assert_eq!(handoff.take(0), Some(0));
            assert_eq!(handoff.take(1), None);
            assert!(maker.join().is_err());
        });
        // The boot loop's guard stops the maker when it goes.
        let handoff: Handoff<usize> = Handoff::new(1, 2);
        drop(StopOnDrop(&handoff));
        handoff.make_all(key_none, |i| i);
        assert_eq!(handoff.take(0), None);
    }
}
