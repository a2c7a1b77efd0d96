//! Fixed-point conversion between counter ticks and nanoseconds.
//!
//! A conversion is `value × mult >> shift` with the product taken in 128 bits, the way Linux's
//! clocksource `mult`/`shift` works but without its overflow horizon: a `u64` times a `u64`
//! always fits in a `u128`, so any tick count converts, and only results beyond `u64::MAX`
//! (584 years of nanoseconds) saturate. On x86_64 this is one `mul` and a shift; no division
//! is left on the hot path.
//!
//! `shift` is chosen as large as `mult` allows, so `mult` has at least 62 significant bits and
//! the relative error of a conversion is below 2⁻⁶² — under a nanosecond over ten years at any
//! frequency. Conversions truncate (whole results are exact; a fraction within that
//! error of the next unit may round up); [`ClockConversion::deadline_ticks`] finds the exact
//! first tick for programming timers, so a timer never fires before its deadline reads as
//! reached on the clock.

use core::fmt;

/// `value × mult >> shift`, saturating.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Scale {
    mult: u64,
    shift: u32,
}

impl Scale {
    /// The most precise scale for `num / den` (both > 0): the largest `shift` for which
    /// `mult = ⌈num · 2^shift / den⌉` fits in 64 bits (and `num · 2^shift` in 128), so `mult`
    /// has at least 62 significant bits whatever the ratio. Rounding `mult` up makes whole results
    /// exact (a second of ticks reads as 1 000 000 000 ns, not 999 999 999); the price is that
    /// a fractional result may round up instead of down, by less than one unit.
    const fn ratio(num: u64, den: u64) -> Scale {
        let mut shift = 127 - (64 - num.leading_zeros());
        // Terminates: at shift 0, mult = ⌈num / den⌉ ≤ num ≤ u64::MAX. At most 127 steps, at
        // construction only.
        loop {
            let mult = ((num as u128) << shift).div_ceil(den as u128);
            if mult <= u64::MAX as u128 {
                return Scale {
                    mult: mult as u64,
                    shift,
                };
            }
            shift -= 1;
        }
    }

    const fn apply(self, value: u64) -> u64 {
        let r = (value as u128 * self.mult as u128) >> self.shift;
        if r > u64::MAX as u128 {
            u64::MAX
        } else {
            r as u64
        }
    }
}

/// A frequency of zero was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvalidFrequency;

impl fmt::Display for InvalidFrequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a counter frequency must be at least 1 Hz")
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// Converts between ticks of a counter running at a fixed frequency and nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockConversion {
    hz: u64,
    to_ns: Scale,
    to_ticks: Scale,
}

/// How far [`ClockConversion::deadline_ticks`] may have to step from its first estimate. Both
/// scales are exact to 2⁻⁶² relative, so over the whole `u64` range the estimate is off by at
/// most a couple of ticks; in practice by at most one.
const DEADLINE_ADJUST_STEPS: u32 = 8;

impl ClockConversion {
    /// The conversion for a counter running at `hz` ticks per second.
    pub const fn from_hz(hz: u64) -> Result<ClockConversion, InvalidFrequency> {
        if hz == 0 {
            return Err(InvalidFrequency);
        }
        Ok(ClockConversion {
            hz,
            to_ns: Scale::ratio(NS_PER_S, hz),
            to_ticks: Scale::ratio(hz, NS_PER_S),
        })
    }

    /// The counter frequency, in ticks per second.
    pub const fn hz(&self) -> u64 {
        self.hz
    }

    /// Nanoseconds in `ticks`, rounded down; saturates at `u64::MAX`. Monotonic in `ticks`.
    pub const fn ticks_to_ns(&self, ticks: u64) -> u64 {
        self.to_ns.apply(ticks)
    }

    /// Ticks in `ns` nanoseconds, rounded down; saturates at `u64::MAX`. Monotonic in `ns`.
    pub const fn ns_to_ticks(&self, ns: u64) -> u64 {
        self.to_ticks.apply(ns)
    }

    /// The first tick count that [`ticks_to_ns`](Self::ticks_to_ns) reads as at least `ns`:
    /// what to program into a timer so that it fires no earlier than the clock says `ns` has
    /// passed (and no later than one tick after). Saturates at `u64::MAX` for `ns` beyond the
    /// counter's range.
    pub fn deadline_ticks(&self, ns: u64) -> u64 {
        let mut t = self.ns_to_ticks(ns);
        // RT: at most DEADLINE_ADJUST_STEPS steps each way (see its comment).
        for _ in 0..DEADLINE_ADJUST_STEPS {
            if t == u64::MAX || self.ticks_to_ns(t) >= ns {
                break;
            }
            t += 1;
        }
        for _ in 0..DEADLINE_ADJUST_STEPS {
            if t == 0 || self.ticks_to_ns(t - 1) < ns {
                break;
            }
            t -= 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic pseudo-random inputs for the property tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// A value with a random magnitude, so small and large values are both common.
        fn any(&mut self) -> u64 {
            let bits = self.next() % 65;
            if bits == 64 {
                self.next()
            } else {
                self.next() & ((1u64 << bits) - 1)
            }
        }
    }

    const FREQUENCIES: [u64; 10] = [
        1,
        32_768,
        1_193_182,
        19_200_000,
        62_500_000,
        999_999_999,
        1_000_000_000,
        2_904_000_000,
        5_000_000_000,
        u64::MAX,
    ];

    #[test]
    fn zero_hz_is_refused() {
        assert_eq!(ClockConversion::from_hz(0), Err(InvalidFrequency));
    }

    #[test]
    fn exact_at_one_ghz() {
        let c = ClockConversion::from_hz(1_000_000_000).unwrap();
        for v in [0, 1, 999, 1_000_000_007, u64::MAX] {
            assert_eq!(c.ticks_to_ns(v), v);
            assert_eq!(c.ns_to_ticks(v), v);
            assert_eq!(c.deadline_ticks(v), v);
        }
    }

    #[test]
    fn known_values() {
        let c = ClockConversion::from_hz(2_500_000_000).unwrap();
        assert_eq!(c.ticks_to_ns(2_500_000_000), 1_000_000_000);
        assert_eq!(c.ticks_to_ns(5), 2);
        assert_eq!(c.ns_to_ticks(2), 5);
        assert_eq!(c.ns_to_ticks(1), 2, "2.5 ticks rounds down");
        let pit = ClockConversion::from_hz(1_193_182).unwrap();
        assert_eq!(pit.ticks_to_ns(1_193_182), 1_000_000_000);
        assert_eq!(pit.ns_to_ticks(10_000_000), 11_931);
    }

    #[test]
    fn ten_years_at_five_ghz_does_not_overflow_or_drift() {
        let c = ClockConversion::from_hz(5_000_000_000).unwrap();
        let ten_years_s: u64 = 10 * 365 * 86_400 + 2 * 86_400;
        let ticks = ten_years_s * 5_000_000_000;
        assert_eq!(
            c.ticks_to_ns(ticks),
            ten_years_s * NS_PER_S,
            "exact, no drift"
        );
        assert_eq!(c.ns_to_ticks(ten_years_s * NS_PER_S), ticks);
        // The whole counter range converts; 2^64 ticks at 5 GHz is 117 years.
        assert_eq!(c.ticks_to_ns(u64::MAX), u64::MAX / 5);
        // Beyond 584 years of nanoseconds the result saturates instead of wrapping.
        let slow = ClockConversion::from_hz(1).unwrap();
        assert_eq!(slow.ticks_to_ns(u64::MAX), u64::MAX);
        assert_eq!(c.ns_to_ticks(u64::MAX), u64::MAX);
        assert_eq!(c.deadline_ticks(u64::MAX), u64::MAX);
    }

    #[test]
    fn monotonic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for hz in FREQUENCIES {
            let c = ClockConversion::from_hz(hz).unwrap();
            for _ in 0..2_000 {
                let a = rng.any();
                let b = a.saturating_add(rng.any() % 1000);
                assert!(
                    c.ticks_to_ns(a) <= c.ticks_to_ns(b),
                    "hz {hz} ticks {a} {b}"
                );
                assert!(c.ns_to_ticks(a) <= c.ns_to_ticks(b), "hz {hz} ns {a} {b}");
                assert!(
                    c.deadline_ticks(a) <= c.deadline_ticks(b),
                    "hz {hz} deadline {a} {b}"
                );
            }
        }
    }

    #[test]
    fn round_trips_lose_at_most_one_unit_of_the_coarser_side() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for hz in FREQUENCIES {
            let c = ClockConversion::from_hz(hz).unwrap();
            // One tick in ns, one ns in ticks, rounded up; plus one for each rounding down.
            let tick_ns = NS_PER_S.div_ceil(hz);
            let ns_ticks = hz.div_ceil(NS_PER_S);
            for _ in 0..2_000 {
                let t = rng.any();
                let ns = c.ticks_to_ns(t);
                if ns < u64::MAX {
                    let back = c.ns_to_ticks(ns);
                    assert!(
                        t.abs_diff(back) <= ns_ticks + 1,
                        "hz {hz}: {t} -> {ns} -> {back}"
                    );
                }
                let ns = rng.any();
                let t = c.ns_to_ticks(ns);
                if t < u64::MAX {
                    let back = c.ticks_to_ns(t);
                    assert!(
                        ns.abs_diff(back) <= tick_ns + 1,
                        "hz {hz}: {ns} -> {t} -> {back}"
                    );
                }
            }
        }
    }

    #[test]
    fn deadline_ticks_is_the_first_tick_reading_at_or_after_the_deadline() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for hz in FREQUENCIES {
            let c = ClockConversion::from_hz(hz).unwrap();
            for _ in 0..5_000 {
                let ns = rng.any();
                let t = c.deadline_ticks(ns);
                if t == u64::MAX {
                    // Only when the counter cannot reach `ns` within its range (or just does).
                    assert!(c.ticks_to_ns(u64::MAX - 1) < ns, "hz {hz} ns {ns}");
                    continue;
                }
                assert!(
                    c.ticks_to_ns(t) >= ns,
                    "hz {hz} ns {ns}: tick {t} reads early"
                );
                assert!(
                    t == 0 || c.ticks_to_ns(t - 1) < ns,
                    "hz {hz} ns {ns}: tick {t} is late"
                );
            }
        }
    }
}
