//! Time as values: [`Instant`] on the kernel's monotonic clock, and the traits a clock source
//! and a one-shot timer implement.

use core::fmt;
use core::time::Duration;

/// A point on the kernel's monotonic clock: nanoseconds since the clock started (boot). `u64`
/// nanoseconds last 584 years, so arithmetic saturates rather than wraps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);
    /// A deadline that never comes.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// `ns` nanoseconds after the origin.
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Instant::NEVER`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Instant({}.{:09}s)",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// A monotonic clock source (TSC, ARM generic counter, Xen `vcpu_time_info`, Linux
/// `CLOCK_MONOTONIC`).
pub trait Clock: Sync {
    /// The current time. Monotonic on one CPU; across CPUs within the source's skew.
    fn now(&self) -> Instant;
}

/// A per-CPU one-shot timer that raises an interrupt at a deadline (LAPIC TSC-deadline or
/// one-shot mode, ARM generic timer, Xen singleshot, Linux POSIX timer). Tickless: the kernel
/// arms it for the earliest deadline only.
pub trait OneShotTimer: Sync {
    /// Arms this CPU's timer to fire at `deadline` (at once if it has passed), replacing any
    /// earlier arming.
    fn arm(&self, deadline: Instant);
    /// Cancels this CPU's pending timer interrupt, if any.
    fn disarm(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_wrapping() {
        assert_eq!(
            Instant::from_nanos(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Instant::NEVER
        );
        assert_eq!(
            Instant::from_nanos(5).saturating_duration_since(Instant::from_nanos(9)),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_nanos(9).saturating_duration_since(Instant::from_nanos(5)),
            Duration::from_nanos(4)
        );
    }
}
