//! A monotonic clock from a free-running counter: [`TscClock`].

use crate::conversion::ClockConversion;
use rhea_hal::{Clock, Instant};

/// A free-running, constant-rate counter: the TSC on x86 (`rdtsc`), the generic counter
/// (`CNTVCT_EL0`) on Arm. The kernel implements it; reading must have no side effects.
pub trait CycleCounter: Sync {
    /// The current count. Touches hardware.
    fn read(&self) -> u64;
}

impl<T: CycleCounter + ?Sized> CycleCounter for &T {
    fn read(&self) -> u64 {
        (**self).read()
    }
}

/// Where a counter's time starts and how fast it runs: maps counter values to [`Instant`]s and
/// back. `Copy`, so the clock and a deadline timer can share one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timebase {
    origin_ticks: u64,
    conversion: ClockConversion,
}

impl Timebase {
    /// Counter value `origin_ticks` is [`Instant::ZERO`].
    pub const fn new(origin_ticks: u64, conversion: ClockConversion) -> Timebase {
        Timebase {
            origin_ticks,
            conversion,
        }
    }

    /// The counter value that reads as [`Instant::ZERO`].
    pub const fn origin_ticks(&self) -> u64 {
        self.origin_ticks
    }

    /// The counter's rate.
    pub const fn conversion(&self) -> ClockConversion {
        self.conversion
    }

    /// The instant the counter reads `counter` at. A value before the origin (another CPU's
    /// counter a few ticks behind, within its skew) reads as [`Instant::ZERO`] rather than
    /// wrapping to the far future.
    pub const fn instant_at(&self, counter: u64) -> Instant {
        Instant::from_nanos(
            self.conversion
                .ticks_to_ns(counter.saturating_sub(self.origin_ticks)),
        )
    }

    /// The first counter value at which [`instant_at`](Self::instant_at) reads `deadline` or
    /// later: what a deadline timer (TSC-deadline) is programmed with. Saturates at
    /// `u64::MAX` (never) for deadlines beyond the counter's range, including
    /// [`Instant::NEVER`].
    pub fn counter_at(&self, deadline: Instant) -> u64 {
        if deadline == Instant::NEVER {
            return u64::MAX;
        }
        self.origin_ticks
            .saturating_add(self.conversion.deadline_ticks(deadline.as_nanos()))
    }
}

/// The kernel's monotonic clock read from a counter (the TSC): ticks since an origin, converted
/// to nanoseconds.
///
/// Monotonic on one CPU because the counter is; across CPUs within the counter's
/// synchronisation (invariant TSC, written equal by firmware or the hypervisor).
#[derive(Debug)]
pub struct TscClock<C> {
    counter: C,
    timebase: Timebase,
}

impl<C: CycleCounter> TscClock<C> {
    /// A clock that reads zero now.
    pub fn start_now(counter: C, conversion: ClockConversion) -> TscClock<C> {
        let origin = counter.read();
        TscClock {
            counter,
            timebase: Timebase::new(origin, conversion),
        }
    }

    /// A clock that read zero when the counter read `origin_ticks` (e.g. the TSC the board's
    /// entry code saved, so instants count from boot).
    pub const fn with_origin(
        counter: C,
        conversion: ClockConversion,
        origin_ticks: u64,
    ) -> TscClock<C> {
        TscClock {
            counter,
            timebase: Timebase::new(origin_ticks, conversion),
        }
    }

    /// The origin and rate, for a deadline timer that must agree with this clock.
    pub const fn timebase(&self) -> Timebase {
        self.timebase
    }

    /// The counter this clock reads.
    pub const fn counter(&self) -> &C {
        &self.counter
    }
}

impl<C: CycleCounter> Clock for TscClock<C> {
    fn now(&self) -> Instant {
        self.timebase.instant_at(self.counter.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    struct FakeTsc(AtomicU64);
    impl CycleCounter for FakeTsc {
        fn read(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn now_counts_from_the_origin() {
        let tsc = FakeTsc(AtomicU64::new(1_000_000));
        let clock = TscClock::start_now(&tsc, ClockConversion::from_hz(2_000_000_000).unwrap());
        assert_eq!(clock.now(), Instant::ZERO);
        tsc.0.store(1_000_000 + 2_000_000_000, Ordering::Relaxed);
        assert_eq!(clock.now(), Instant::from_nanos(1_000_000_000));
        tsc.0.store(1_000_000 + 3, Ordering::Relaxed);
        assert_eq!(clock.now(), Instant::from_nanos(1));
    }

    #[test]
    fn a_counter_behind_the_origin_reads_zero_not_the_far_future() {
        let tsc = FakeTsc(AtomicU64::new(10));
        let clock =
            TscClock::with_origin(&tsc, ClockConversion::from_hz(3_000_000_000).unwrap(), 500);
        assert_eq!(clock.now(), Instant::ZERO);
    }

    #[test]
    fn counter_at_inverts_instant_at() {
        let tb = Timebase::new(12_345, ClockConversion::from_hz(3_579_545).unwrap());
        for ns in [0, 1, 279, 280, 1_000_000, 123_456_789_012] {
            let d = Instant::from_nanos(ns);
            let c = tb.counter_at(d);
            assert!(tb.instant_at(c) >= d);
            assert!(tb.instant_at(c - 1) < d || c == tb.origin_ticks());
        }
        assert_eq!(tb.counter_at(Instant::NEVER), u64::MAX);
        let near_end = Timebase::new(
            u64::MAX - 10,
            ClockConversion::from_hz(1_000_000_000).unwrap(),
        );
        assert_eq!(
            near_end.counter_at(Instant::from_nanos(100)),
            u64::MAX,
            "saturates"
        );
    }
}
