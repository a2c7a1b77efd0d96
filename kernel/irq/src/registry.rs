//! The IRQ registry: which handler runs for which vector, and dispatch.
//!
//! A fixed table with one slot per interrupt vector (`32..=255`), no allocation, no locks on
//! the dispatch path. Two kinds of handler:
//!
//! - **fast** ([`IrqHandler::Fast`]): a function run in interrupt context — interrupts
//!   disabled, on the interrupted thread's stack or the CPU's interrupt stack — that does all
//!   the work (the LAPIC timer, IPIs). It returns whether the interrupted CPU must reschedule.
//! - **threaded** ([`IrqHandler::Threaded`]): a *top half* run in interrupt context that only
//!   acknowledges the device (so a level-triggered line drops) and says whether the device's
//!   thread must be woken; the registry then wakes it through the [`IrqThreadWaker`] the
//!   scheduler registered, by an opaque token. The device's real work runs in that thread, at
//!   the thread's priority.
//!
//! **Interrupts do not nest in Rhea.** Every interrupt gate clears IF and handlers never set
//! it, so a handler is never interrupted on its own CPU; it may run concurrently with any
//! handler (including itself) on another CPU.
//!
//! **Concurrency.** Registration may happen at any time on any CPU (a driver thread registers
//! its interrupt when it starts) while other CPUs dispatch. Each slot's handler is a
//! [`rhea_sync::Once`]: registering completes it once, with release ordering; dispatch reads it
//! with one acquire load ([`Once::get`], which never waits). An interrupt that races with the
//! registration of its own vector sees the slot empty and is counted as unhandled — it cannot
//! see a half-written handler. Registrations are permanent (there is no unregister): a slot
//! never changes once set, which is what makes lock-free dispatch sound without reclamation.
//! Two registrations of one vector racing each other: exactly one wins, the other gets
//! [`RegistryError::AlreadyRegistered`] (the loser spins until the winner's write completes —
//! a few instructions, on the registration path only).
//!
//! **Real time.** [`IrqRegistry::dispatch`] is O(1): one table index, one acquire load, one
//! handler call, at most one wake call, and relaxed counter increments.
//!
//! Statistics are per vector ([`VectorStats`]): interrupts handled, interrupts that found no
//! handler ("spurious/unhandled", which includes the LAPIC spurious vector), and threads woken.
//!
//! The atomics and `Once` come from `crate::sync`, so the same code is model-checked with loom
//! (`tests/loom.rs`: registration racing dispatch, racing registrations, the waker set while a
//! threaded vector dispatches).

use crate::sync::{AtomicU64, Once, Ordering};
use crate::vectors::{DEVICE_FIRST, DEVICE_LAST, Vector};
use core::fmt;

/// Whether the interrupted CPU must reschedule before returning from the interrupt.
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reschedule {
    /// Return to the interrupted thread.
    NotNeeded,
    /// A more important thread may be ready: call the scheduler on the way out.
    Needed,
}

impl Reschedule {
    /// `Needed` if either is.
    pub const fn or(self, other: Reschedule) -> Reschedule {
        match (self, other) {
            (Reschedule::NotNeeded, Reschedule::NotNeeded) => Reschedule::NotNeeded,
            _ => Reschedule::Needed,
        }
    }

    /// Whether this is [`Reschedule::Needed`].
    pub const fn is_needed(self) -> bool {
        matches!(self, Reschedule::Needed)
    }
}

/// What a threaded handler's top half decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TopHalf {
    /// Nothing for the thread to do (not this device's interrupt, or fully handled).
    Done,
    /// The device has work: wake its thread.
    WakeThread,
}

/// Wakes the thread behind a threaded handler. The scheduler implements it and registers it
/// once at boot ([`IrqRegistry::set_thread_waker`]).
///
/// Called in interrupt context with interrupts disabled: it must be bounded, must not
/// allocate, and must not take a lock that is ever held with interrupts enabled.
pub trait IrqThreadWaker: Sync {
    /// Makes the thread named by `token` ready. Returns [`Reschedule::Needed`] when that
    /// thread should preempt the one this CPU was running (or an IPI was sent for another CPU
    /// and nothing is needed here: then `NotNeeded`).
    fn wake(&self, token: usize) -> Reschedule;
}

/// A handler for one vector. (Not `PartialEq`: function addresses are not unique.)
#[derive(Clone, Copy, Debug)]
pub enum IrqHandler {
    /// Runs to completion in interrupt context.
    Fast {
        /// Called with `ctx`; interrupts are disabled.
        handler: fn(ctx: usize) -> Reschedule,
        /// Passed to `handler` (a device index, or an address the handler knows how to use).
        ctx: usize,
    },
    /// Acknowledges in interrupt context, works in a thread.
    Threaded {
        /// Called with `ctx`; interrupts are disabled. Acknowledges the device; must not do the
        /// device's work.
        top_half: fn(ctx: usize) -> TopHalf,
        /// Passed to `top_half`.
        ctx: usize,
        /// Passed to [`IrqThreadWaker::wake`] when the top half asks for the thread.
        wake_token: usize,
    },
}

/// What [`IrqRegistry::dispatch`] did.
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dispatch {
    /// A handler ran.
    Handled(Reschedule),
    /// No handler for this vector (or not an interrupt vector); counted.
    Unhandled,
}

impl Dispatch {
    /// Whether the CPU must reschedule on the way out of the interrupt.
    pub const fn reschedule(self) -> Reschedule {
        match self {
            Dispatch::Handled(r) => r,
            Dispatch::Unhandled => Reschedule::NotNeeded,
        }
    }
}

/// Why a registration was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegistryError {
    /// The vector already has a handler.
    AlreadyRegistered(Vector),
    /// `0..32` is not an interrupt vector.
    NotAnInterruptVector(u8),
    /// Every device vector is taken.
    NoFreeVector,
    /// The thread waker was already set.
    WakerAlreadySet,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::AlreadyRegistered(v) => write!(f, "vector {v} already has a handler"),
            RegistryError::NotAnInterruptVector(v) => {
                write!(f, "vector {v:#04x} is a CPU exception vector")
            }
            RegistryError::NoFreeVector => f.write_str("no free device vector"),
            RegistryError::WakerAlreadySet => f.write_str("the IRQ thread waker is already set"),
        }
    }
}

/// Counters of one vector.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VectorStats {
    /// Interrupts a handler ran for.
    pub handled: u64,
    /// Interrupts that found no handler (spurious or unhandled).
    pub unhandled: u64,
    /// Threads woken by this vector's top half.
    pub wakes: u64,
}

#[derive(Debug)]
struct Slot {
    handler: Once<IrqHandler>,
    handled: AtomicU64,
    unhandled: AtomicU64,
    wakes: AtomicU64,
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Slot {
        Slot {
            handler: Once::new(),
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        }
    }

    /// (Loom's atomics have no `const` constructor.)
    #[cfg(loom)]
    fn new() -> Slot {
        Slot {
            handler: Once::new(),
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        }
    }
}

/// The registry. The kernel keeps one in a `static` (`IrqRegistry::new` is `const`) and calls
/// [`dispatch`](Self::dispatch) from its trap path for every vector `32..=255`.
pub struct IrqRegistry {
    slots: [Slot; Vector::COUNT],
    waker: Once<&'static dyn IrqThreadWaker>,
    /// Top halves that asked for a thread before the waker was set.
    lost_wakes: AtomicU64,
    /// Dispatches of vectors `0..32` (a trap-path bug).
    not_interrupts: AtomicU64,
}

impl Default for IrqRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for IrqRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registered = self
            .slots
            .iter()
            .filter(|s| s.handler.is_completed())
            .count();
        f.debug_struct("IrqRegistry")
            .field("registered", &registered)
            .field("has_waker", &self.waker.is_completed())
            .field("lost_wakes", &self.lost_wakes())
            .finish_non_exhaustive()
    }
}

impl IrqRegistry {
    /// An empty registry.
    #[cfg(not(loom))]
    pub const fn new() -> IrqRegistry {
        IrqRegistry {
            slots: [const { Slot::new() }; Vector::COUNT],
            waker: Once::new(),
            lost_wakes: AtomicU64::new(0),
            not_interrupts: AtomicU64::new(0),
        }
    }

    /// An empty registry (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> IrqRegistry {
        IrqRegistry {
            slots: core::array::from_fn(|_| Slot::new()),
            waker: Once::new(),
            lost_wakes: AtomicU64::new(0),
            not_interrupts: AtomicU64::new(0),
        }
    }

    /// Sets the scheduler's thread waker; once.
    pub fn set_thread_waker(
        &self,
        waker: &'static dyn IrqThreadWaker,
    ) -> Result<(), RegistryError> {
        let mut is_ours = false;
        self.waker.call_once(|| {
            is_ours = true;
            waker
        });
        if is_ours {
            Ok(())
        } else {
            Err(RegistryError::WakerAlreadySet)
        }
    }

    /// Installs `handler` for `vector`, permanently. Safe to call while other CPUs dispatch.
    pub fn register(&self, vector: Vector, handler: IrqHandler) -> Result<(), RegistryError> {
        let mut is_ours = false;
        self.slots[vector.index()].handler.call_once(|| {
            is_ours = true;
            handler
        });
        if is_ours {
            Ok(())
        } else {
            Err(RegistryError::AlreadyRegistered(vector))
        }
    }

    /// [`register`](Self::register) for a raw vector number, refusing exception vectors.
    pub fn register_raw(&self, vector: u8, handler: IrqHandler) -> Result<Vector, RegistryError> {
        let v = Vector::new(vector).ok_or(RegistryError::NotAnInterruptVector(vector))?;
        self.register(v, handler).map(|()| v)
    }

    /// Installs `handler` on the first free device vector ([`DEVICE_FIRST`]..=[`DEVICE_LAST`])
    /// and returns it: for MSIs and IOAPIC lines, whose vector is the kernel's choice.
    pub fn register_device(&self, handler: IrqHandler) -> Result<Vector, RegistryError> {
        // RT: registration path, not dispatch; at most 176 slots.
        for v in DEVICE_FIRST.get()..=DEVICE_LAST.get() {
            let Some(vector) = Vector::new(v) else {
                continue;
            };
            if self.register(vector, handler).is_ok() {
                return Ok(vector);
            }
        }
        Err(RegistryError::NoFreeVector)
    }

    /// The handler of `vector`, if one is registered.
    pub fn handler(&self, vector: Vector) -> Option<IrqHandler> {
        self.slots[vector.index()].handler.get().copied()
    }

    /// Runs the handler of `vector` (the number the trap stub pushed). Interrupt context:
    /// call with interrupts disabled. Bounded (see the module documentation).
    ///
    /// The caller then sends the controller's end-of-interrupt (on the LAPIC, for every
    /// vector except [`SPURIOUS`](crate::vectors::SPURIOUS), handled or not — see
    /// [`lapic_needs_eoi`](crate::vectors::lapic_needs_eoi)) and reschedules if the result
    /// says so.
    pub fn dispatch(&self, vector: u8) -> Dispatch {
        let Some(v) = Vector::new(vector) else {
            self.not_interrupts.fetch_add(1, Ordering::Relaxed);
            return Dispatch::Unhandled;
        };
        let slot = &self.slots[v.index()];
        match slot.handler.get() {
            None => {
                slot.unhandled.fetch_add(1, Ordering::Relaxed);
                Dispatch::Unhandled
            }
            Some(&IrqHandler::Fast { handler, ctx }) => {
                slot.handled.fetch_add(1, Ordering::Relaxed);
                Dispatch::Handled(handler(ctx))
            }
            Some(&IrqHandler::Threaded {
                top_half,
                ctx,
                wake_token,
            }) => {
                slot.handled.fetch_add(1, Ordering::Relaxed);
                match top_half(ctx) {
                    TopHalf::Done => Dispatch::Handled(Reschedule::NotNeeded),
                    TopHalf::WakeThread => match self.waker.get() {
                        Some(waker) => {
                            slot.wakes.fetch_add(1, Ordering::Relaxed);
                            Dispatch::Handled(waker.wake(wake_token))
                        }
                        None => {
                            self.lost_wakes.fetch_add(1, Ordering::Relaxed);
                            Dispatch::Handled(Reschedule::NotNeeded)
                        }
                    },
                }
            }
        }
    }

    /// The counters of `vector`.
    pub fn stats(&self, vector: Vector) -> VectorStats {
        let s = &self.slots[vector.index()];
        VectorStats {
            handled: s.handled.load(Ordering::Relaxed),
            unhandled: s.unhandled.load(Ordering::Relaxed),
            wakes: s.wakes.load(Ordering::Relaxed),
        }
    }

    /// Wake-ups requested before the scheduler set its waker (dropped).
    pub fn lost_wakes(&self) -> u64 {
        self.lost_wakes.load(Ordering::Relaxed)
    }

    /// Dispatches of exception vectors (`0..32`), which the trap path should never make.
    pub fn not_interrupt_dispatches(&self) -> u64 {
        self.not_interrupts.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::vectors::{LAPIC_TIMER, SPURIOUS};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn v(n: u8) -> Vector {
        Vector::new(n).unwrap()
    }

    static FAST_CALLS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

    fn fast(ctx: usize) -> Reschedule {
        FAST_CALLS[ctx].fetch_add(1, Ordering::Relaxed);
        if ctx == 1 {
            Reschedule::Needed
        } else {
            Reschedule::NotNeeded
        }
    }

    fn quiet(_: usize) -> Reschedule {
        Reschedule::NotNeeded
    }

    /// Top half: odd contexts ask for their thread.
    fn top(ctx: usize) -> TopHalf {
        if ctx % 2 == 1 {
            TopHalf::WakeThread
        } else {
            TopHalf::Done
        }
    }

    #[derive(Default)]
    struct Waker {
        woken: std::sync::Mutex<Vec<usize>>,
    }
    impl IrqThreadWaker for Waker {
        fn wake(&self, token: usize) -> Reschedule {
            self.woken.lock().unwrap().push(token);
            if token >= 100 {
                Reschedule::Needed
            } else {
                Reschedule::NotNeeded
            }
        }
    }

    #[test]
    fn fast_handler_runs_and_asks_for_reschedule() {
        let r = IrqRegistry::new();
        r.register(
            LAPIC_TIMER,
            IrqHandler::Fast {
                handler: fast,
                ctx: 1,
            },
        )
        .unwrap();
        let before = FAST_CALLS[1].load(Ordering::Relaxed);
        assert_eq!(
            r.dispatch(LAPIC_TIMER.get()),
            Dispatch::Handled(Reschedule::Needed)
        );
        assert_eq!(FAST_CALLS[1].load(Ordering::Relaxed), before + 1);
        assert_eq!(
            r.stats(LAPIC_TIMER),
            VectorStats {
                handled: 1,
                unhandled: 0,
                wakes: 0
            }
        );
        assert!(r.dispatch(LAPIC_TIMER.get()).reschedule().is_needed());
    }

    #[test]
    fn double_registration_is_refused_and_keeps_the_first() {
        let r = IrqRegistry::new();
        r.register(
            v(0x40),
            IrqHandler::Fast {
                handler: fast,
                ctx: 2,
            },
        )
        .unwrap();
        assert_eq!(
            r.register(
                v(0x40),
                IrqHandler::Fast {
                    handler: quiet,
                    ctx: 0
                }
            ),
            Err(RegistryError::AlreadyRegistered(v(0x40)))
        );
        assert!(matches!(
            r.handler(v(0x40)),
            Some(IrqHandler::Fast { ctx: 2, .. })
        ));
    }

    #[test]
    fn exception_vectors_cannot_be_registered_or_dispatched() {
        let r = IrqRegistry::new();
        let h = IrqHandler::Fast {
            handler: quiet,
            ctx: 0,
        };
        assert_eq!(
            r.register_raw(14, h),
            Err(RegistryError::NotAnInterruptVector(14))
        );
        assert_eq!(r.register_raw(0x31, h), Ok(v(0x31)));
        assert_eq!(r.dispatch(13), Dispatch::Unhandled);
        assert_eq!(r.not_interrupt_dispatches(), 1);
    }

    #[test]
    fn unhandled_and_spurious_vectors_are_counted_per_vector() {
        let r = IrqRegistry::new();
        for _ in 0..3 {
            assert_eq!(r.dispatch(SPURIOUS.get()), Dispatch::Unhandled);
        }
        assert_eq!(r.dispatch(0x77), Dispatch::Unhandled);
        assert_eq!(r.stats(SPURIOUS).unhandled, 3);
        assert_eq!(r.stats(v(0x77)).unhandled, 1);
        assert_eq!(r.stats(v(0x78)), VectorStats::default());
        assert_eq!(Dispatch::Unhandled.reschedule(), Reschedule::NotNeeded);
    }

    #[test]
    fn threaded_handler_wakes_its_thread_through_the_waker() {
        let r = IrqRegistry::new();
        r.register(
            v(0x50),
            IrqHandler::Threaded {
                top_half: top,
                ctx: 1,
                wake_token: 100,
            },
        )
        .unwrap();
        r.register(
            v(0x51),
            IrqHandler::Threaded {
                top_half: top,
                ctx: 2,
                wake_token: 7,
            },
        )
        .unwrap();
        r.register(
            v(0x52),
            IrqHandler::Threaded {
                top_half: top,
                ctx: 3,
                wake_token: 7,
            },
        )
        .unwrap();
        // Before the scheduler exists: the wake is dropped and counted.
        assert_eq!(r.dispatch(0x50), Dispatch::Handled(Reschedule::NotNeeded));
        assert_eq!(r.lost_wakes(), 1);
        let waker: &'static Waker = Box::leak(Box::default());
        r.set_thread_waker(waker).unwrap();
        assert_eq!(
            r.set_thread_waker(waker),
            Err(RegistryError::WakerAlreadySet)
        );
        assert_eq!(r.dispatch(0x50), Dispatch::Handled(Reschedule::Needed));
        assert_eq!(
            r.dispatch(0x51),
            Dispatch::Handled(Reschedule::NotNeeded),
            "top half said Done"
        );
        assert_eq!(r.dispatch(0x52), Dispatch::Handled(Reschedule::NotNeeded));
        assert_eq!(*waker.woken.lock().unwrap(), [100, 7]);
        assert_eq!(
            r.stats(v(0x50)),
            VectorStats {
                handled: 2,
                unhandled: 0,
                wakes: 1
            }
        );
        assert_eq!(r.stats(v(0x51)).wakes, 0);
    }

    #[test]
    fn device_vectors_are_handed_out_in_order_until_none_is_left() {
        let r = IrqRegistry::new();
        let h = IrqHandler::Fast {
            handler: quiet,
            ctx: 0,
        };
        r.register(v(0x31), h).unwrap();
        assert_eq!(r.register_device(h), Ok(v(0x30)));
        assert_eq!(r.register_device(h), Ok(v(0x32)), "0x31 was taken");
        let free = usize::from(DEVICE_LAST.get() - DEVICE_FIRST.get() + 1) - 3;
        for _ in 0..free {
            r.register_device(h).unwrap();
        }
        assert_eq!(r.register_device(h), Err(RegistryError::NoFreeVector));
        assert!(
            r.handler(LAPIC_TIMER).is_none(),
            "kernel vectors are not handed to devices"
        );
    }

    #[test]
    fn racing_registrations_of_one_vector_have_one_winner() {
        let r = Arc::new(IrqRegistry::new());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    r.register(
                        v(0x60),
                        IrqHandler::Fast {
                            handler: quiet,
                            ctx: i,
                        },
                    )
                    .is_ok()
                })
            })
            .collect();
        let winners = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(winners, 1);
    }

    #[test]
    fn registration_while_other_cpus_dispatch() {
        let r = Arc::new(IrqRegistry::new());
        let dispatchers: Vec<_> = (0..3)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    let mut dispatched = [0u64; 16];
                    for round in 0..20_000 {
                        let i = round % 16;
                        let _ = r.dispatch(0x80 + i as u8);
                        dispatched[i] += 1;
                    }
                    dispatched
                })
            })
            .collect();
        for i in 0..16u8 {
            r.register(
                v(0x80 + i),
                IrqHandler::Fast {
                    handler: quiet,
                    ctx: 0,
                },
            )
            .unwrap();
            std::thread::yield_now();
        }
        let mut total = [0u64; 16];
        for d in dispatchers {
            for (t, n) in total.iter_mut().zip(d.join().unwrap()) {
                *t += n;
            }
        }
        for (i, &n) in total.iter().enumerate() {
            let s = r.stats(v(0x80 + i as u8));
            assert_eq!(s.handled + s.unhandled, n, "every dispatch counted once");
        }
    }
}
