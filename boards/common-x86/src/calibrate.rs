//! Finding out how fast a counter runs.
//!
//! [`calibrate_tsc`] decides the TSC frequency in this order, and says where it came from:
//!
//! 1. **Stated by CPUID** — the caller reads the hypervisor timing leaf 0x40000010, the
//!    crystal leaf 0x15 or the nominal frequency of leaf 0x16 (this crate executes no
//!    instructions) and passes `(hz, "which leaf")`. KVM and QEMU fill 0x40000010 where they
//!    can; QEMU TCG with `-cpu max` states nothing.
//! 2. **Measured against the 8254 PIT** ([`crate::pit`]): several windows, the median kept.
//!
//! When both are available and the caller asks for it, the PIT measurement also cross-checks
//! the stated frequency and the disagreement is reported in ppm (for the boot log; the stated
//! value is still used — CPUID is exact where it is right, and the PIT measurement is only
//! good to a few hundred ppm under virtualisation).
//!
//! [`measure_rate`] measures a second counter against a calibrated one; `rhea-irq` uses it for
//! the LAPIC timer.
//!
//! None of this is on a real-time path (it runs once, at boot, for a few tens of ms), but
//! every wait is bounded: dead hardware yields an error, not a hang.

use crate::pit::{self, MAX_PLAUSIBLE_HZ, PIT_HZ, PitChannel, PortIo, WaitBound};
use core::fmt;
use rhea_timers::CycleCounter;

/// Counters slower than this are taken as a measurement error. TSCs run at hundreds of MHz at
/// the very least.
pub const MIN_PLAUSIBLE_HZ: u64 = 10_000_000;

/// A disturbed PIT window is measured again at twice the length, up to this (the 16-bit PIT
/// count lasts 54.9 ms at 1.193 MHz).
pub const MAX_ESCALATED_WINDOW_US: u32 = 40_000;

/// How to measure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CalibrationConfig {
    /// Length of one measured window, 1 000..=50 000 µs (the PIT's 16-bit count lasts 54.9 ms).
    pub window_us: u32,
    /// Windows to measure, 1..=9; the median is kept.
    pub samples: u8,
    /// Whether to measure against the PIT even when CPUID states the frequency, to report the
    /// disagreement. Costs `samples × window_us` of boot time.
    pub cross_check: bool,
}

impl CalibrationConfig {
    /// 3 windows of 10 ms, cross-check on: 30 ms of boot time when the PIT runs.
    pub const DEFAULT: CalibrationConfig = CalibrationConfig {
        window_us: 10_000,
        samples: 3,
        cross_check: true,
    };

    const MAX_SAMPLES: usize = 9;

    fn validate(&self) -> Result<(), CalibrationError> {
        if (1_000..=50_000).contains(&self.window_us)
            && (1..=Self::MAX_SAMPLES).contains(&usize::from(self.samples))
        {
            Ok(())
        } else {
            Err(CalibrationError::InvalidConfig)
        }
    }

    /// How many windows may be measured in all: a disturbed window is measured again, a
    /// bounded number of times, each time twice as long (see [`MAX_ESCALATED_WINDOW_US`]).
    fn attempts(&self) -> u32 {
        8 * u32::from(self.samples) + 1
    }
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a frequency could not be found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CalibrationError {
    /// No frequency stated and no PIT to measure against.
    NoSource,
    /// [`CalibrationConfig`] out of range.
    InvalidConfig,
    /// The PIT's ports show no counter behind them.
    PitAbsent,
    /// The PIT did not end its window within the bound.
    PitTimeout,
    /// The reference counter of [`measure_rate`] did not advance.
    ReferenceStuck,
    /// The counter measured by [`measure_rate`] did not advance.
    SubjectStuck,
    /// The counter measured by [`measure_rate`] ran out (a down-counter reached zero) during
    /// the measurement; measure it more slowly (a larger divider).
    SubjectExpired,
    /// Every window was disturbed (an SMI, the vCPU descheduled) beyond the retry budget.
    Disturbed,
    /// The measurement came out outside `MIN_PLAUSIBLE_HZ..=MAX_PLAUSIBLE_HZ`.
    Implausible {
        /// What was measured.
        hz: u64,
    },
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrationError::NoSource => {
                f.write_str("no frequency stated by CPUID and no PIT to measure against")
            }
            CalibrationError::InvalidConfig => {
                f.write_str("calibration window or sample count out of range")
            }
            CalibrationError::PitAbsent => f.write_str("no 8254 PIT answers on its ports"),
            CalibrationError::PitTimeout => {
                f.write_str("the 8254 PIT did not finish its window in time")
            }
            CalibrationError::ReferenceStuck => {
                f.write_str("the reference counter does not advance")
            }
            CalibrationError::SubjectStuck => f.write_str("the measured counter does not advance"),
            CalibrationError::SubjectExpired => {
                f.write_str("the measured counter ran out during the measurement")
            }
            CalibrationError::Disturbed => f.write_str("every measurement window was disturbed"),
            CalibrationError::Implausible { hz } => write!(f, "measured an implausible {hz} Hz"),
        }
    }
}

/// Where a frequency came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrequencySource {
    /// Stated by CPUID; the caller's label names the leaf (e.g. `"cpuid 0x40000010"`).
    Cpuid(&'static str),
    /// Measured against the PIT.
    Pit(PitChannel),
}

impl fmt::Display for FrequencySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrequencySource::Cpuid(leaf) => f.write_str(leaf),
            FrequencySource::Pit(channel) => write!(f, "measured against the {channel}"),
        }
    }
}

/// The outcome of the cross-check of a stated frequency against the PIT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrossCheck {
    /// Not asked for, or nothing to check (no stated frequency, or no PIT).
    NotRun,
    /// Measured; `disagreement_ppm` is (measured − stated) / stated in parts per million.
    Measured {
        /// The PIT's measurement.
        measured_hz: u64,
        /// How it was measured.
        channel: PitChannel,
        /// Positive when the PIT measured a faster counter than stated.
        disagreement_ppm: i64,
    },
    /// The PIT measurement failed; the stated frequency is used unchecked.
    Failed(CalibrationError),
}

/// A calibrated counter frequency.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Calibration {
    /// Ticks per second.
    pub hz: u64,
    /// Where `hz` came from.
    pub source: FrequencySource,
    /// The PIT's opinion of a stated frequency.
    pub cross_check: CrossCheck,
    /// A stated frequency outside `MIN_PLAUSIBLE_HZ..=MAX_PLAUSIBLE_HZ`, ignored (and the PIT
    /// used instead).
    pub ignored_stated_hz: Option<u64>,
}

/// A frequency measured against the PIT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PitMeasurement {
    /// Median of the windows, ticks per second.
    pub hz: u64,
    /// How the windows were timed.
    pub channel: PitChannel,
    /// Windows the median was taken over (disturbed ones are left out).
    pub samples: u8,
}

fn is_plausible(hz: u64) -> bool {
    (MIN_PLAUSIBLE_HZ..=MAX_PLAUSIBLE_HZ).contains(&hz)
}

/// The TSC's frequency: `stated` by CPUID if it is given and plausible, else measured against
/// the `pit` (if there is one) with `counter` (the TSC). See the module documentation.
pub fn calibrate_tsc(
    stated: Option<(u64, &'static str)>,
    pit: Option<&dyn PortIo>,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> Result<Calibration, CalibrationError> {
    config.validate()?;
    let (stated, ignored_stated_hz) = match stated {
        Some((hz, _)) if !is_plausible(hz) => (None, Some(hz)),
        other => (other, None),
    };
    match (stated, pit) {
        (Some((hz, leaf)), pit) => {
            let cross_check = match pit {
                Some(io) if config.cross_check => match measure_against_pit(io, counter, config) {
                    Ok(m) => CrossCheck::Measured {
                        measured_hz: m.hz,
                        channel: m.channel,
                        disagreement_ppm: ((i128::from(m.hz) - i128::from(hz)) * 1_000_000
                            / i128::from(hz)) as i64,
                    },
                    Err(e) => CrossCheck::Failed(e),
                },
                _ => CrossCheck::NotRun,
            };
            Ok(Calibration {
                hz,
                source: FrequencySource::Cpuid(leaf),
                cross_check,
                ignored_stated_hz,
            })
        }
        (None, Some(io)) => {
            let m = measure_against_pit(io, counter, config)?;
            Ok(Calibration {
                hz: m.hz,
                source: FrequencySource::Pit(m.channel),
                cross_check: CrossCheck::NotRun,
                ignored_stated_hz,
            })
        }
        (None, None) => Err(CalibrationError::NoSource),
    }
}

/// Measures `counter`'s frequency against the PIT: `config.samples` windows of
/// `config.window_us`, median kept. Channel 2 is tried first; if it is absent or never ends a
/// window, channel 0 is read back instead (see [`crate::pit`]).
pub fn measure_against_pit(
    io: &dyn PortIo,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> Result<PitMeasurement, CalibrationError> {
    config.validate()?;
    let ticks_of = |window_us: u32| (u64::from(window_us) * PIT_HZ / 1_000_000) as u16;
    let mut window_us = config.window_us;
    let (mut pit_ticks, mut bound) = (ticks_of(window_us), WaitBound::for_window(window_us));
    let mut channel = PitChannel::Channel2;
    let first = match pit::sample(io, counter, channel, pit_ticks, bound) {
        Err(CalibrationError::PitAbsent | CalibrationError::PitTimeout) => {
            channel = PitChannel::Channel0;
            pit::sample(io, counter, channel, pit_ticks, bound)
        }
        other => other,
    };
    let mut hz = [0u64; CalibrationConfig::MAX_SAMPLES];
    let mut taken = 0;
    let mut outcome = first;
    // RT: not a real-time path; at most `attempts()` windows.
    for attempt in 0..config.attempts() {
        if attempt > 0 {
            outcome = pit::sample(io, counter, channel, pit_ticks, bound);
        }
        match outcome {
            // A window whose ends are uncertain by more than 1/64 of it (1.5 %) was disturbed.
            Ok(s) if s.uncertainty_ticks.saturating_mul(64) > s.counter_ticks => {}
            Ok(s) => {
                hz[taken] = s.counter_hz();
                taken += 1;
                if taken == usize::from(config.samples) {
                    break;
                }
            }
            Err(CalibrationError::Disturbed) => {}
            Err(e) => return Err(e),
        }
        if !matches!(outcome, Ok(s) if s.uncertainty_ticks.saturating_mul(64) <= s.counter_ticks) {
            // Disturbed (a loaded host descheduling the vCPU for milliseconds at a time, as
            // on a shared CI machine under TCG): both tests are relative to the window, so
            // measure the next one twice as long, up to MAX_ESCALATED_WINDOW_US.
            window_us = window_us
                .saturating_mul(2)
                .min(MAX_ESCALATED_WINDOW_US.max(window_us));
            (pit_ticks, bound) = (ticks_of(window_us), WaitBound::for_window(window_us));
        }
    }
    if taken == 0 {
        return Err(CalibrationError::Disturbed);
    }
    let hz = median(&mut hz[..taken]);
    if !is_plausible(hz) {
        return Err(CalibrationError::Implausible { hz });
    }
    Ok(PitMeasurement {
        hz,
        channel,
        samples: taken as u8,
    })
}

/// Measures how fast `subject` counts, against `reference` running at `reference_hz` (an
/// already calibrated counter such as the TSC): `config.samples` windows of
/// `config.window_us`, median kept. `subject` returns a count that increases (for a counter
/// that counts down, return `MAX - count`). `config.cross_check` is not used.
///
/// The result is whatever the subject does, so it is only checked to be non-zero; the caller
/// judges plausibility.
pub fn measure_rate(
    reference: &dyn CycleCounter,
    reference_hz: u64,
    subject: &mut dyn FnMut() -> u64,
    config: &CalibrationConfig,
) -> Result<u64, CalibrationError> {
    config.validate()?;
    if reference_hz == 0 {
        return Err(CalibrationError::InvalidConfig);
    }
    let window_ticks =
        (u128::from(reference_hz) * u128::from(config.window_us) / 1_000_000).max(1) as u64;
    let max_polls = WaitBound::for_window(config.window_us).max_polls;
    let mut hz = [0u64; CalibrationConfig::MAX_SAMPLES];
    let mut taken = 0;
    // RT: not a real-time path; at most `attempts()` windows, each at most `max_polls` polls.
    for _ in 0..config.attempts() {
        let start_before = reference.read();
        let subject_start = subject();
        let start_after = reference.read();
        let mut ended = false;
        for _ in 0..max_polls {
            if reference.read().saturating_sub(start_after) >= window_ticks {
                ended = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !ended {
            return Err(CalibrationError::ReferenceStuck);
        }
        let end_before = reference.read();
        let subject_end = subject();
        let end_after = reference.read();
        let subject_ticks = subject_end.saturating_sub(subject_start);
        if subject_ticks == 0 {
            return Err(CalibrationError::SubjectStuck);
        }
        let (start, start_err) = (
            start_before + (start_after - start_before) / 2,
            (start_after - start_before) / 2,
        );
        let (end, end_err) = (
            end_before + (end_after - end_before) / 2,
            (end_after - end_before) / 2,
        );
        let reference_ticks = end.saturating_sub(start);
        if (start_err + end_err).saturating_mul(64) > reference_ticks {
            continue; // disturbed: measure this window again
        }
        hz[taken] = (u128::from(subject_ticks) * u128::from(reference_hz)
            / u128::from(reference_ticks)) as u64;
        taken += 1;
        if taken == usize::from(config.samples) {
            break;
        }
    }
    if taken == 0 {
        return Err(CalibrationError::Disturbed);
    }
    Ok(median(&mut hz[..taken]))
}

/// The median (the mean of the middle two for an even count). `values` is not empty.
fn median(values: &mut [u64]) -> u64 {
    // Insertion sort: a handful of samples, and no 2 KiB of the library's sort in the image.
    for i in 1..values.len() {
        let mut j = i;
        while j > 0 && values[j - 1] > values[j] {
            values.swap(j - 1, j);
            j -= 1;
        }
    }
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        values[n / 2 - 1] / 2 + values[n / 2] / 2 + (values[n / 2 - 1] % 2 + values[n / 2] % 2) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pit::model::{Machine, Wiring};
    use core::sync::atomic::{AtomicU64, Ordering};

    fn ppm(measured: u64, truth: u64) -> i64 {
        ((i128::from(measured) - i128::from(truth)) * 1_000_000 / i128::from(truth)) as i64
    }

    fn elapsed_ms(m: &Machine) -> u64 {
        m.with(|s| s.now_ps) / 1_000_000_000
    }

    #[test]
    fn stated_frequency_wins_and_is_cross_checked() {
        // The TSC really runs 500 ppm faster than CPUID says.
        let m = Machine::new(2_001_000_000, Wiring::Pc);
        let c = calibrate_tsc(
            Some((2_000_000_000, "cpuid 0x15")),
            Some(&m),
            &m,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.hz, 2_000_000_000);
        assert_eq!(c.source, FrequencySource::Cpuid("cpuid 0x15"));
        match c.cross_check {
            CrossCheck::Measured {
                channel,
                disagreement_ppm,
                measured_hz,
            } => {
                assert_eq!(channel, PitChannel::Channel2);
                assert!(
                    (300..700).contains(&disagreement_ppm),
                    "{disagreement_ppm} ppm ({measured_hz} Hz)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_cross_check_when_not_asked_or_no_pit() {
        let m = Machine::new(2_000_000_000, Wiring::Pc);
        let config = CalibrationConfig {
            cross_check: false,
            ..CalibrationConfig::DEFAULT
        };
        let c = calibrate_tsc(Some((2_000_000_000, "cpuid 0x16")), Some(&m), &m, &config).unwrap();
        assert_eq!(c.cross_check, CrossCheck::NotRun);
        assert_eq!(m.with(|s| s.port_accesses), 0, "the PIT was not touched");
        let c = calibrate_tsc(
            Some((2_000_000_000, "cpuid 0x16")),
            None,
            &m,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.cross_check, CrossCheck::NotRun);
    }

    #[test]
    fn cross_check_against_a_dead_pit_fails_but_the_stated_value_stands() {
        let m = Machine::new(2_000_000_000, Wiring::Dead { value: 0xff });
        let c = calibrate_tsc(
            Some((2_000_000_000, "cpuid 0x40000010")),
            Some(&m),
            &m,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.hz, 2_000_000_000);
        assert_eq!(
            c.cross_check,
            CrossCheck::Failed(CalibrationError::PitAbsent)
        );
    }

    #[test]
    fn pit_channel2_measures_without_cpuid() {
        // TCG-like: fast port I/O.
        for (tsc_hz, io_cost_ps) in [
            (2_904_000_000, 100_000),
            (1_000_000_000, 2_000_000),
            (4_500_000_000, 500_000),
        ] {
            let m = Machine::new(tsc_hz, Wiring::Pc);
            m.with(|s| s.io_cost_ps = io_cost_ps);
            let c = calibrate_tsc(None, Some(&m), &m, &CalibrationConfig::DEFAULT).unwrap();
            assert_eq!(c.source, FrequencySource::Pit(PitChannel::Channel2));
            assert!(ppm(c.hz, tsc_hz).abs() < 300, "{} vs {tsc_hz}", c.hz);
            assert!(
                elapsed_ms(&m) < 40,
                "3 windows of 10 ms took {} ms",
                elapsed_ms(&m)
            );
        }
    }

    #[test]
    fn without_port_b_channel0_is_read_back() {
        // QEMU microvm: a PIT but no PC speaker port.
        let m = Machine::new(3_100_000_000, Wiring::NoPortB);
        let c = calibrate_tsc(None, Some(&m), &m, &CalibrationConfig::DEFAULT).unwrap();
        assert_eq!(c.source, FrequencySource::Pit(PitChannel::Channel0));
        assert!(ppm(c.hz, 3_100_000_000).abs() < 300, "{}", c.hz);
    }

    #[test]
    fn a_dead_pit_is_an_error_not_a_hang() {
        for value in [0xff, 0x00] {
            let m = Machine::new(3_000_000_000, Wiring::Dead { value });
            let r = calibrate_tsc(None, Some(&m), &m, &CalibrationConfig::DEFAULT);
            assert_eq!(r, Err(CalibrationError::PitAbsent), "ports read {value:#x}");
            assert!(elapsed_ms(&m) < 300, "gave up after {} ms", elapsed_ms(&m));
        }
    }

    #[test]
    fn a_dead_pit_and_a_stuck_counter_still_end() {
        let m = Machine::new(3_000_000_000, Wiring::Dead { value: 0 });
        m.with(|s| s.stuck_tsc = Some(7));
        let config = CalibrationConfig {
            window_us: 1_000,
            ..CalibrationConfig::DEFAULT
        };
        assert!(calibrate_tsc(None, Some(&m), &m, &config).is_err());
    }

    #[test]
    fn a_stuck_counter_with_a_live_pit_is_implausible() {
        let m = Machine::new(3_000_000_000, Wiring::Pc);
        m.with(|s| s.stuck_tsc = Some(7));
        assert_eq!(
            calibrate_tsc(None, Some(&m), &m, &CalibrationConfig::DEFAULT),
            Err(CalibrationError::Implausible { hz: 0 })
        );
    }

    #[test]
    fn a_disturbed_window_is_measured_again() {
        let m = Machine::new(2_000_000_000, Wiring::Pc);
        // A 3 ms stall a few µs before the end of the first window (which starts ~1 ms in and
        // lasts 10 ms), so the end of that window is uncertain by 3 ms.
        m.with(|s| s.stall = Some((s.now_ps + 9_999_000_000, 3_000_000_000)));
        let r = measure_against_pit(&m, &m, &CalibrationConfig::DEFAULT).unwrap();
        assert_eq!(r.samples, 3);
        assert!(ppm(r.hz, 2_000_000_000).abs() < 300, "{}", r.hz);
        assert!(
            elapsed_ms(&m) >= 43,
            "four windows and the stall: {} ms",
            elapsed_ms(&m)
        );
    }

    #[test]
    fn a_loaded_host_that_disturbs_short_windows_still_calibrates() {
        // No port 0x61 (microvm): channel 0 is read back, and a window with a gap longer than
        // half of it is rejected (the gap could hide a wrap of the count).
        let m = Machine::new(2_000_000_000, Wiring::NoPortB);
        // The vCPU loses 4 ms in every 5 ms (an overloaded shared machine under TCG): every
        // 5 ms window holds a 4 ms gap; a 10 ms or longer one does not mind it.
        m.with(|s| s.periodic_stall = Some((5_000_000_000, 4_000_000_000)));
        for _ in 0..5 {
            let r = pit::sample(
                &m,
                &m,
                PitChannel::Channel0,
                (5_000 * PIT_HZ / 1_000_000) as u16,
                WaitBound::for_window(5_000),
            );
            assert_eq!(r, Err(CalibrationError::Disturbed), "a 5 ms window");
        }
        let short = CalibrationConfig {
            window_us: 5_000,
            samples: 3,
            cross_check: false,
        };
        let r = measure_against_pit(&m, &m, &short);
        let r = r.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.channel, PitChannel::Channel0);
        assert_eq!(r.samples, 3);
        assert!(ppm(r.hz, 2_000_000_000).abs() < 1_000, "{}", r.hz);
    }

    #[test]
    fn implausible_cpuid_values_are_ignored_and_reported() {
        let m = Machine::new(2_000_000_000, Wiring::Pc);
        let c = calibrate_tsc(
            Some((1_000, "cpuid 0x16")),
            Some(&m),
            &m,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        assert_eq!(c.source, FrequencySource::Pit(PitChannel::Channel2));
        assert_eq!(c.ignored_stated_hz, Some(1_000));
    }

    #[test]
    fn nothing_to_go_on_and_bad_configs() {
        let m = Machine::new(2_000_000_000, Wiring::Pc);
        assert_eq!(
            calibrate_tsc(None, None, &m, &CalibrationConfig::DEFAULT),
            Err(CalibrationError::NoSource)
        );
        for config in [
            CalibrationConfig {
                window_us: 999,
                ..CalibrationConfig::DEFAULT
            },
            CalibrationConfig {
                window_us: 50_001,
                ..CalibrationConfig::DEFAULT
            },
            CalibrationConfig {
                samples: 0,
                ..CalibrationConfig::DEFAULT
            },
            CalibrationConfig {
                samples: 10,
                ..CalibrationConfig::DEFAULT
            },
        ] {
            assert_eq!(
                calibrate_tsc(None, Some(&m), &m, &config),
                Err(CalibrationError::InvalidConfig)
            );
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 100]), 3);
        assert_eq!(median(&mut [u64::MAX, u64::MAX]), u64::MAX);
        assert_eq!(median(&mut [7]), 7);
    }

    /// A fake TSC that advances a fixed amount per read, and a down-counting subject that runs
    /// at a fixed fraction of it: the LAPIC timer, as `rhea-irq` measures it.
    struct Ticking {
        tsc: AtomicU64,
        per_read: u64,
    }
    impl CycleCounter for Ticking {
        fn read(&self) -> u64 {
            self.tsc.fetch_add(self.per_read, Ordering::Relaxed) + self.per_read
        }
    }

    #[test]
    fn measure_rate_against_a_calibrated_counter() {
        let tsc = Ticking {
            tsc: AtomicU64::new(1_000),
            per_read: 37,
        };
        // Subject at 62.5 MHz with a 2.5 GHz reference: 1 tick per 40 TSC ticks, counting down.
        let mut subject = || {
            let current_count = u64::from(u32::MAX) - tsc.tsc.load(Ordering::Relaxed) / 40;
            u64::from(u32::MAX) - current_count
        };
        let hz = measure_rate(
            &tsc,
            2_500_000_000,
            &mut subject,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        assert!(ppm(hz, 62_500_000).abs() < 50, "{hz}");
    }

    #[test]
    fn measure_rate_reports_stuck_counters() {
        let stuck = Ticking {
            tsc: AtomicU64::new(5),
            per_read: 0,
        };
        let mut subject = || 1;
        assert_eq!(
            measure_rate(
                &stuck,
                1_000_000_000,
                &mut subject,
                &CalibrationConfig {
                    window_us: 1_000,
                    ..CalibrationConfig::DEFAULT
                }
            ),
            Err(CalibrationError::ReferenceStuck)
        );
        let tsc = Ticking {
            tsc: AtomicU64::new(5),
            per_read: 100,
        };
        let mut subject = || 1;
        assert_eq!(
            measure_rate(
                &tsc,
                1_000_000_000,
                &mut subject,
                &CalibrationConfig::DEFAULT
            ),
            Err(CalibrationError::SubjectStuck)
        );
        assert_eq!(
            measure_rate(&tsc, 0, &mut subject, &CalibrationConfig::DEFAULT),
            Err(CalibrationError::InvalidConfig)
        );
    }
}
