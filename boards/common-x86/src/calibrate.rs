//! Finding out how fast a counter runs.
//!
//! [`calibrate_tsc`] decides the TSC frequency in this order, and says where it came from:
//!
//! 1. **Stated by CPUID** — the caller reads the hypervisor timing leaf 0x40000010, the
//!    crystal leaf 0x15 or the nominal frequency of leaf 0x16 (this crate executes no
//!    instructions) and passes `(hz, "which leaf")`. KVM and QEMU fill 0x40000010 where they
//!    can; QEMU TCG with `-cpu max` states nothing.
//! 2. **Measured against the HPET** ([`crate::hpet`]): its main counter, at the period its
//!    capabilities state, found through the ACPI HPET table.
//! 3. **Measured against the ACPI PM timer** ([`crate::pm_timer`]): 3.579545 MHz at the port
//!    the FADT names.
//! 4. **Measured against the 8254 PIT** ([`crate::pit`]), which a modern PC may lack.
//!
//! A reference the machine does not have is skipped; one that fails (a counter that does not
//! move, every window disturbed) is skipped too, and its failure kept for the boot log. When
//! none works the error, [`TscError::NoWay`], names what each one lacked. `rhea.tsc_ref`
//! ([`TscRef`]) forces one source: absent or failing, that is an error, never a fallback.
//!
//! Every measurement is several windows, the median kept; a window whose ends are uncertain by
//! more than 1/64 of it (an SMI, the vCPU descheduled) is measured again, longer. The HPET and
//! the PM timer are free-running up-counters read at the edges of each window (the instant
//! the count changes, bracketed by TSC reads); their wrap (24 or 32 bits) is handled by
//! summing the count's steps modulo its width, and a window with a gap between two reads long
//! enough to hide a whole wrap is refused.
//!
//! When the caller asks for it (`rhea.tsc_check`), the frequency used is cross-checked against
//! the best other source — a stated frequency, else the first other reference that measures —
//! and the disagreement reported in ppm (for the boot log; the chosen value is still used —
//! CPUID is exact where it is right, and a measurement is only good to tens or hundreds of ppm
//! under virtualisation).
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

/// A disturbed window is measured again at twice the length, up to this (the PIT's 16-bit
/// count lasts 54.9 ms at 1.193 MHz).
pub const MAX_ESCALATED_WINDOW_US: u32 = 40_000;

/// Femtoseconds in a second (the HPET states its period in femtoseconds).
pub const FS_PER_S: u64 = 1_000_000_000_000_000;

/// How to measure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CalibrationConfig {
    /// Length of one measured window, 1 000..=50 000 µs (the PIT's 16-bit count lasts 54.9 ms).
    pub window_us: u32,
    /// Windows to measure, 1..=9; the median is kept.
    pub samples: u8,
    /// Whether to cross-check the frequency used against another source (see the module
    /// documentation). Costs `samples × window_us` of boot time when that means measuring.
    pub cross_check: bool,
}

impl CalibrationConfig {
    /// 3 windows of 10 ms, cross-check on: 30 ms of boot time when a reference is measured.
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

/// Why one measurement failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CalibrationError {
    /// [`CalibrationConfig`] out of range.
    InvalidConfig,
    /// The PIT's ports show no counter behind them.
    PitAbsent,
    /// The PIT did not end its window within the bound.
    PitTimeout,
    /// The reference counter (the HPET's, the PM timer, or the calibrated counter of
    /// [`measure_rate`]) did not advance.
    ReferenceStuck,
    /// The reference counter advanced, but did not finish its window within the bound (it runs
    /// far slower than it states).
    ReferenceTimeout,
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
            CalibrationError::ReferenceTimeout => {
                f.write_str("the reference counter did not finish its window in time")
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

/// A counter rate, ticks per second as a fraction `numerator / denominator` (the HPET states
/// a period in femtoseconds, which is rarely a whole number of hertz).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rate {
    numerator: u64,
    denominator: u64,
}

impl Rate {
    /// `hz` ticks per second; `None` for 0.
    pub const fn from_hz(hz: u64) -> Option<Rate> {
        if hz == 0 {
            None
        } else {
            Some(Rate {
                numerator: hz,
                denominator: 1,
            })
        }
    }

    /// One tick every `period_fs` femtoseconds; `None` for 0.
    pub const fn from_period_fs(period_fs: u64) -> Option<Rate> {
        if period_fs == 0 {
            None
        } else {
            Some(Rate {
                numerator: FS_PER_S,
                denominator: period_fs,
            })
        }
    }

    /// Whole ticks per second, rounded down (for reports).
    pub const fn hz(self) -> u64 {
        self.numerator / self.denominator
    }

    /// Ticks in `us` microseconds, rounded up.
    fn ticks_in_us(self, us: u32) -> u64 {
        let ticks = (u128::from(us) * u128::from(self.numerator))
            .div_ceil(1_000_000 * u128::from(self.denominator));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The rate of a counter that advanced `counter_ticks` while this one advanced `ticks`.
    fn rate_of(self, counter_ticks: u64, ticks: u64) -> u64 {
        let hz = u128::from(counter_ticks) * u128::from(self.numerator)
            / (u128::from(ticks.max(1)) * u128::from(self.denominator));
        u64::try_from(hz).unwrap_or(u64::MAX)
    }

    /// Seconds for `ticks` of this rate, as counter ticks of a counter at `hz`, rounded down.
    fn ticks_at(self, ticks: u128, hz: u64) -> u64 {
        let t = ticks * u128::from(self.denominator) * u128::from(hz) / u128::from(self.numerator);
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// A free-running up-counter of known rate the TSC can be timed against: the HPET's main
/// counter or the ACPI PM timer. The implementations are [`crate::hpet::Hpet`] and
/// [`crate::pm_timer::PmTimer`]; tests use models.
pub trait ReferenceCounter: Sync {
    /// Makes the counter run if it is halted (the HPET's ENABLE_CNF); called once before a
    /// measurement. Touches hardware.
    fn start(&self);
    /// The count now; only its low [`ReferenceCounter::width_bits`] bits are used (the count
    /// wraps to zero after all ones). Touches hardware.
    fn read_count(&self) -> u64;
    /// How many low bits of [`ReferenceCounter::read_count`] count, 1..=64.
    fn width_bits(&self) -> u32;
    /// How fast it counts.
    fn rate(&self) -> Rate;
    /// Which reference it is (for reports).
    fn reference(&self) -> Reference;
}

/// A reference the TSC was measured against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reference {
    /// The HPET's main counter.
    Hpet,
    /// The ACPI PM timer.
    PmTimer,
    /// The 8254 PIT, timed by this channel.
    Pit(PitChannel),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Hpet => f.write_str("HPET"),
            Reference::PmTimer => f.write_str("ACPI PM timer"),
            Reference::Pit(channel) => write!(f, "{channel}"),
        }
    }
}

/// A source of the TSC's frequency, as the command line names it (`rhea.tsc_ref`), in the
/// order they are tried.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TscRef {
    /// A frequency CPUID (or kvmclock) states.
    Cpuid,
    /// The HPET.
    Hpet,
    /// The ACPI PM timer.
    PmTimer,
    /// The 8254 PIT.
    Pit,
}

impl TscRef {
    /// Every source, in the order tried.
    pub const ALL: [TscRef; 4] = [TscRef::Cpuid, TscRef::Hpet, TscRef::PmTimer, TscRef::Pit];

    /// The measured references, in the order tried.
    const MEASURED: [TscRef; 3] = [TscRef::Hpet, TscRef::PmTimer, TscRef::Pit];

    /// The word `rhea.tsc_ref` takes for it.
    pub const fn name(self) -> &'static str {
        match self {
            TscRef::Cpuid => "cpuid",
            TscRef::Hpet => "hpet",
            TscRef::PmTimer => "pmtimer",
            TscRef::Pit => "pit",
        }
    }

    /// The source `rhea.tsc_ref`'s `word` names.
    pub fn from_name(word: &str) -> Option<TscRef> {
        Self::ALL.into_iter().find(|r| r.name() == word)
    }

    /// What it is, for messages.
    pub(crate) const fn describe(self) -> &'static str {
        match self {
            TscRef::Cpuid => "TSC frequency stated by CPUID",
            TscRef::Hpet => "HPET",
            TscRef::PmTimer => "ACPI PM timer",
            TscRef::Pit => "8254 PIT",
        }
    }
}

/// Why a reference is not offered to the calibration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Missing {
    /// The machine does not describe one (no ACPI table for it, no stated frequency).
    Absent,
    /// It is described but refused (a malformed table, impossible capabilities, an
    /// implausible stated frequency); the board reports why.
    Refused,
}

/// What the machine offers to measure the TSC with. Built by the board; the references are
/// only touched by [`calibrate_tsc`] when it measures against them.
#[derive(Clone, Copy)]
pub struct References<'a> {
    /// A frequency CPUID (or kvmclock) states, with the label of where (`"cpuid 0x15"`).
    pub stated: Option<(u64, &'static str)>,
    /// The HPET, if usable.
    pub hpet: Result<&'a dyn ReferenceCounter, Missing>,
    /// The ACPI PM timer, if usable.
    pub pm_timer: Result<&'a dyn ReferenceCounter, Missing>,
    /// The PIT's ports (every PC has the ports; whether a PIT counts behind them is found by
    /// measuring).
    pub pit: Option<&'a dyn PortIo>,
}

impl fmt::Debug for References<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("References")
            .field("stated", &self.stated)
            .field("hpet", &self.hpet.map(|r| r.reference()))
            .field("pm_timer", &self.pm_timer.map(|r| r.reference()))
            .field("pit", &self.pit.is_some())
            .finish()
    }
}

/// Where a frequency came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrequencySource {
    /// Stated by CPUID; the caller's label names the leaf (e.g. `"cpuid 0x40000010"`).
    Cpuid(&'static str),
    /// Measured against a reference.
    Measured(Reference),
}

impl fmt::Display for FrequencySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrequencySource::Cpuid(leaf) => f.write_str(leaf),
            FrequencySource::Measured(r) => write!(f, "measured against the {r}"),
        }
    }
}

/// The outcome of the cross-check of the frequency used against another source.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrossCheck {
    /// Not asked for.
    NotRun,
    /// Asked for, but the machine has no other source.
    NoOther,
    /// Compared; `disagreement_ppm` is (other − used) / used in parts per million.
    Compared {
        /// The other source's frequency.
        hz: u64,
        /// The other source.
        against: FrequencySource,
        /// Positive when the other source has the counter faster than the value used.
        disagreement_ppm: i64,
    },
    /// Every other source failed to measure, this one last; the frequency is used unchecked.
    Failed(TscRef, CalibrationError),
}

/// Sources tried, in order, before the one used, that failed to measure.
pub type Skipped = [Option<(TscRef, CalibrationError)>; 3];

/// A calibrated counter frequency.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Calibration {
    /// Ticks per second.
    pub hz: u64,
    /// Where `hz` came from.
    pub source: FrequencySource,
    /// Whether the command line chose the source.
    pub forced: bool,
    /// Another source's opinion of `hz`.
    pub cross_check: CrossCheck,
    /// A stated frequency outside `MIN_PLAUSIBLE_HZ..=MAX_PLAUSIBLE_HZ`, ignored (and a
    /// reference measured instead).
    pub ignored_stated_hz: Option<u64>,
    /// References that failed before the one used.
    pub skipped: Skipped,
}

/// What became of one reference when nothing worked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tried {
    /// Not offered.
    Missing(Missing),
    /// Measured, and the measurement failed.
    Failed(CalibrationError),
}

/// Why every source failed: [`TscError::NoWay`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NoWay {
    /// A stated frequency refused as implausible (else none was stated).
    pub ignored_stated_hz: Option<u64>,
    /// The HPET.
    pub hpet: Tried,
    /// The ACPI PM timer.
    pub pm_timer: Tried,
    /// The PIT.
    pub pit: Tried,
}

impl fmt::Display for NoWay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no way to measure the TSC: ")?;
        match self.ignored_stated_hz {
            Some(hz) => write!(f, "CPUID states an implausible {hz} Hz, ")?,
            None => f.write_str("CPUID states no frequency, ")?,
        }
        match self.hpet {
            Tried::Missing(Missing::Absent) => f.write_str("no HPET table, ")?,
            Tried::Missing(Missing::Refused) => f.write_str("the HPET was refused, ")?,
            Tried::Failed(e) => write!(f, "the HPET failed ({e}), ")?,
        }
        match self.pm_timer {
            Tried::Missing(Missing::Absent) => f.write_str("no ACPI PM timer, ")?,
            Tried::Missing(Missing::Refused) => f.write_str("the ACPI PM timer was refused, ")?,
            Tried::Failed(e) => write!(f, "the ACPI PM timer failed ({e}), ")?,
        }
        match self.pit {
            Tried::Missing(_) => f.write_str("and no PIT"),
            Tried::Failed(CalibrationError::PitAbsent) => f.write_str("and the PIT does not count"),
            Tried::Failed(e) => write!(f, "and the PIT failed ({e})"),
        }
    }
}

/// Why the TSC's frequency could not be decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TscError {
    /// [`CalibrationConfig`] out of range.
    InvalidConfig,
    /// The command line forces a source the machine does not have.
    ForcedAbsent {
        /// The source forced.
        source: TscRef,
        /// Why it is not there.
        missing: Missing,
    },
    /// The command line forces a source whose measurement failed.
    ForcedFailed {
        /// The source forced.
        source: TscRef,
        /// How it failed.
        error: CalibrationError,
    },
    /// No stated frequency, and every reference absent or failing.
    NoWay(NoWay),
}

impl fmt::Display for TscError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TscError::InvalidConfig => {
                f.write_str("calibration window or sample count out of range")
            }
            TscError::ForcedAbsent { source, missing } => {
                write!(
                    f,
                    "rhea.tsc_ref={} asks for the {}, but ",
                    source.name(),
                    source.describe()
                )?;
                match (source, missing) {
                    (TscRef::Cpuid, Missing::Absent) => {
                        f.write_str("CPUID states no TSC frequency on this machine")
                    }
                    (TscRef::Cpuid, Missing::Refused) => {
                        f.write_str("the frequency CPUID states is implausible")
                    }
                    (TscRef::Hpet, Missing::Absent) => {
                        f.write_str("there is no ACPI HPET table on this machine")
                    }
                    (TscRef::PmTimer, Missing::Absent) => {
                        f.write_str("there is no ACPI PM timer on this machine")
                    }
                    (TscRef::Pit, _) => f.write_str("there is no PIT on this machine"),
                    (_, Missing::Refused) => write!(
                        f,
                        "the {} was refused (see the references line)",
                        source.describe()
                    ),
                }
            }
            TscError::ForcedFailed {
                source: TscRef::Pit,
                error: CalibrationError::PitAbsent,
            } => f.write_str("rhea.tsc_ref=pit asks for the 8254 PIT, but the PIT does not count"),
            TscError::ForcedFailed { source, error } => write!(
                f,
                "rhea.tsc_ref={}: measuring against the {} failed: {error}",
                source.name(),
                source.describe()
            ),
            TscError::NoWay(no_way) => write!(f, "{no_way}"),
        }
    }
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

/// A frequency measured against a free-running reference counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Measurement {
    /// Median of the windows, ticks per second.
    pub hz: u64,
    /// What it was measured against.
    pub reference: Reference,
    /// Windows the median was taken over (disturbed ones are left out).
    pub samples: u8,
}

fn is_plausible(hz: u64) -> bool {
    (MIN_PLAUSIBLE_HZ..=MAX_PLAUSIBLE_HZ).contains(&hz)
}

fn ppm(other: u64, used: u64) -> i64 {
    ((i128::from(other) - i128::from(used)) * 1_000_000 / i128::from(used.max(1))) as i64
}

/// The TSC's frequency from `refs`, by the order of the module documentation, or from the
/// source `forced` names (`rhea.tsc_ref`); `counter` is the TSC.
pub fn calibrate_tsc(
    refs: &References<'_>,
    forced: Option<TscRef>,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> Result<Calibration, TscError> {
    config.validate().map_err(|_| TscError::InvalidConfig)?;
    let (stated, ignored_stated_hz) = match refs.stated {
        Some((hz, _)) if !is_plausible(hz) => (None, Some(hz)),
        other => (other, None),
    };
    let mut skipped: Skipped = [None; 3];
    let (hz, source) = match forced {
        Some(TscRef::Cpuid) => match stated {
            Some((hz, leaf)) => (hz, FrequencySource::Cpuid(leaf)),
            None => {
                return Err(TscError::ForcedAbsent {
                    source: TscRef::Cpuid,
                    missing: match ignored_stated_hz {
                        Some(_) => Missing::Refused,
                        None => Missing::Absent,
                    },
                });
            }
        },
        Some(source) => match measure(refs, source, counter, config) {
            Err(missing) => return Err(TscError::ForcedAbsent { source, missing }),
            Ok(Err(error)) => return Err(TscError::ForcedFailed { source, error }),
            Ok(Ok(m)) => m,
        },
        None => match stated {
            Some((hz, leaf)) => (hz, FrequencySource::Cpuid(leaf)),
            None => {
                let mut tried = [Tried::Missing(Missing::Absent); 3];
                let mut found = None;
                // RT: not a real-time path; three references at most.
                for (i, r) in TscRef::MEASURED.into_iter().enumerate() {
                    match measure(refs, r, counter, config) {
                        Err(missing) => tried[i] = Tried::Missing(missing),
                        Ok(Err(e)) => {
                            tried[i] = Tried::Failed(e);
                            skipped[i] = Some((r, e));
                        }
                        Ok(Ok(m)) => {
                            found = Some(m);
                            break;
                        }
                    }
                }
                found.ok_or(TscError::NoWay(NoWay {
                    ignored_stated_hz,
                    hpet: tried[0],
                    pm_timer: tried[1],
                    pit: tried[2],
                }))?
            }
        },
    };
    let cross_check = if config.cross_check {
        cross_check(refs, stated, hz, source, counter, config)
    } else {
        CrossCheck::NotRun
    };
    Ok(Calibration {
        hz,
        source,
        forced: forced.is_some(),
        cross_check,
        ignored_stated_hz,
        skipped: compact(skipped),
    })
}

/// `skipped` with its entries first, in order.
fn compact(skipped: Skipped) -> Skipped {
    let mut out: Skipped = [None; 3];
    for (slot, entry) in out.iter_mut().zip(skipped.into_iter().flatten()) {
        *slot = Some(entry);
    }
    out
}

/// Measures the TSC against the measured reference `r`: `Err` if `refs` lacks it (a stated
/// frequency is not measured: [`TscRef::Cpuid`] is always missing here), else the
/// measurement's outcome.
fn measure(
    refs: &References<'_>,
    r: TscRef,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> Result<Result<(u64, FrequencySource), CalibrationError>, Missing> {
    let against = |reference: &dyn ReferenceCounter| {
        measure_against_counter(reference, counter, config)
            .map(|m| (m.hz, FrequencySource::Measured(m.reference)))
    };
    match r {
        TscRef::Cpuid => Err(Missing::Absent),
        TscRef::Hpet => refs.hpet.map(against),
        TscRef::PmTimer => refs.pm_timer.map(against),
        TscRef::Pit => refs.pit.ok_or(Missing::Absent).map(|io| {
            measure_against_pit(io, counter, config)
                .map(|m| (m.hz, FrequencySource::Measured(Reference::Pit(m.channel))))
        }),
    }
}

/// Compares `hz`, from `used`, with the best other source: the stated frequency if it was not
/// the one used, else the first other reference that measures.
fn cross_check(
    refs: &References<'_>,
    stated: Option<(u64, &'static str)>,
    hz: u64,
    used: FrequencySource,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> CrossCheck {
    let compared = |other: u64, against| CrossCheck::Compared {
        hz: other,
        against,
        disagreement_ppm: ppm(other, hz),
    };
    if let (Some((stated_hz, leaf)), FrequencySource::Measured(_)) = (stated, used) {
        return compared(stated_hz, FrequencySource::Cpuid(leaf));
    }
    let used_ref = match used {
        FrequencySource::Cpuid(_) => TscRef::Cpuid,
        FrequencySource::Measured(Reference::Hpet) => TscRef::Hpet,
        FrequencySource::Measured(Reference::PmTimer) => TscRef::PmTimer,
        FrequencySource::Measured(Reference::Pit(_)) => TscRef::Pit,
    };
    let mut outcome = CrossCheck::NoOther;
    // RT: not a real-time path; three references at most.
    for r in TscRef::MEASURED.into_iter().filter(|&r| r != used_ref) {
        match measure(refs, r, counter, config) {
            Err(_) => {}
            Ok(Ok((other, against))) => return compared(other, against),
            Ok(Err(e)) => outcome = CrossCheck::Failed(r, e),
        }
    }
    outcome
}

/// One timed window, whatever the reference.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// The measured counter's ticks between the window's ends.
    counter_ticks: u64,
    /// How far either end may be from the truth, in counter ticks.
    uncertainty_ticks: u64,
    /// The measured counter's frequency this window implies.
    hz: u64,
}

impl Window {
    /// A window whose ends are uncertain by more than 1/64 of it (1.5 %) was disturbed.
    fn is_disturbed(&self) -> bool {
        self.uncertainty_ticks.saturating_mul(64) > self.counter_ticks
    }
}

/// Measures windows with `sample(window_us)` until `config.samples` undisturbed ones are in
/// (the first outcome may be given, already measured at `config.window_us`); a disturbed
/// window is measured again, twice as long, up to [`MAX_ESCALATED_WINDOW_US`], at most
/// `attempts()` windows in all. Returns the median and how many windows it was taken over.
fn median_of_windows(
    config: &CalibrationConfig,
    mut first: Option<Result<Window, CalibrationError>>,
    sample: &mut dyn FnMut(u32) -> Result<Window, CalibrationError>,
) -> Result<(u64, u8), CalibrationError> {
    let mut window_us = config.window_us;
    let mut hz = [0u64; CalibrationConfig::MAX_SAMPLES];
    let mut taken = 0;
    // RT: not a real-time path; at most `attempts()` windows.
    for _ in 0..config.attempts() {
        let outcome = match first.take() {
            Some(outcome) => outcome,
            None => sample(window_us),
        };
        match outcome {
            Ok(w) if !w.is_disturbed() => {
                hz[taken] = w.hz;
                taken += 1;
                if taken == usize::from(config.samples) {
                    break;
                }
                continue;
            }
            Ok(_) | Err(CalibrationError::Disturbed) => {}
            Err(e) => return Err(e),
        }
        // Disturbed (a loaded host descheduling the vCPU for milliseconds at a time, as on a
        // shared CI machine under TCG): both tests are relative to the window, so measure the
        // next one twice as long, up to MAX_ESCALATED_WINDOW_US.
        window_us = window_us
            .saturating_mul(2)
            .min(MAX_ESCALATED_WINDOW_US.max(window_us));
    }
    if taken == 0 {
        return Err(CalibrationError::Disturbed);
    }
    let hz = median(&mut hz[..taken]);
    if !is_plausible(hz) {
        return Err(CalibrationError::Implausible { hz });
    }
    Ok((hz, taken as u8))
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
    let window = |channel, window_us: u32| {
        let pit_ticks = (u64::from(window_us) * PIT_HZ / 1_000_000) as u16;
        pit::sample(
            io,
            counter,
            channel,
            pit_ticks,
            WaitBound::for_window(window_us),
        )
        .map(|s| Window {
            counter_ticks: s.counter_ticks,
            uncertainty_ticks: s.uncertainty_ticks,
            hz: s.counter_hz(),
        })
    };
    let mut channel = PitChannel::Channel2;
    let first = match window(channel, config.window_us) {
        Err(CalibrationError::PitAbsent | CalibrationError::PitTimeout) => {
            channel = PitChannel::Channel0;
            window(channel, config.window_us)
        }
        other => other,
    };
    let (hz, samples) = median_of_windows(config, Some(first), &mut |window_us| {
        window(channel, window_us)
    })?;
    Ok(PitMeasurement {
        hz,
        channel,
        samples,
    })
}

/// Measures `counter`'s frequency against `reference` (started first): `config.samples`
/// windows of `config.window_us`, median kept.
pub fn measure_against_counter(
    reference: &dyn ReferenceCounter,
    counter: &dyn CycleCounter,
    config: &CalibrationConfig,
) -> Result<Measurement, CalibrationError> {
    config.validate()?;
    reference.start();
    let (hz, samples) = median_of_windows(config, None, &mut |window_us| {
        sample_counter(reference, counter, window_us)
    })?;
    Ok(Measurement {
        hz,
        reference: reference.reference(),
        samples,
    })
}

/// The mask of a `bits`-wide count.
fn width_mask(bits: u32) -> u64 {
    match bits {
        0 => 0,
        64.. => u64::MAX,
        n => (1 << n) - 1,
    }
}

/// The middle of `[a, b]` and half its width (a counter read before and after an event).
fn bracket(a: u64, b: u64) -> (u64, u64) {
    let half = b.saturating_sub(a) / 2;
    (a + half, half)
}

/// The longest gap between two reads of a reference (in counter ticks) that cannot hide a
/// whole wrap of its count: half the wrap period, at the slowest plausible counter (the
/// counter's own rate is what is being measured, so it cannot be used here).
fn wrap_guard_ticks(rate: Rate, mask: u64) -> u64 {
    rate.ticks_at(u128::from(mask) + 1, MIN_PLAUSIBLE_HZ) / 2
}

/// Edges looked at for each end of a window, the one read most tightly kept.
const EDGES_PER_END: u32 = 16;

/// An edge of a reference counter: the moment its count became `count`, bracketed by counter
/// reads (`at` ± `half_width`).
#[derive(Clone, Copy, Debug)]
struct Edge {
    at: u64,
    half_width: u64,
}

/// Times one window of `window_us` of `reference` with `counter`.
///
/// Both ends are edges of the reference — moments its count changes — each lying between the
/// read before (which still showed the old count) and the read that saw the new one, so its
/// uncertainty is one poll, not one reference tick (279 ns for the PM timer). Of the first
/// [`EDGES_PER_END`] edges at each end the most tightly bracketed is kept: a read that took
/// long (a VM exit that waited for a lock, an SMI) spoils one edge, not the window. The count
/// advances by its steps modulo its width, so a wrap inside the window is harmless unless a
/// single gap between reads could hold a whole wrap (then the window is
/// [`CalibrationError::Disturbed`]).
fn sample_counter(
    reference: &dyn ReferenceCounter,
    counter: &dyn CycleCounter,
    window_us: u32,
) -> Result<Window, CalibrationError> {
    let bound = WaitBound::for_window(window_us);
    let mask = width_mask(reference.width_bits());
    let rate = reference.rate();
    let window_ticks = rate.ticks_in_us(window_us).max(1);
    let read = || {
        let before = counter.read();
        let count = reference.read_count() & mask;
        (before, count, counter.read())
    };
    let (mut before_last, mut last, first_after) = read();
    let mut last_at = first_after;
    let (mut start, mut start_edges) = (None::<Edge>, 0);
    let (mut end, mut end_edges) = (None::<(Edge, u64)>, 0);
    // Reference ticks since `start`'s edge, and the longest gap between two reads.
    let (mut elapsed, mut longest_gap) = (0u64, 0u64);
    // RT: not a real-time path (boot); bounded by `bound` all the same.
    for _ in 0..bound.max_polls {
        let (before, count, after) = read();
        let (at, _) = bracket(before, after);
        longest_gap = longest_gap.max(at.saturating_sub(last_at));
        last_at = at;
        let step = count.wrapping_sub(last) & mask;
        if step != 0 {
            let (edge_at, half_width) = bracket(before_last, after);
            let edge = Edge {
                at: edge_at,
                half_width,
            };
            if start_edges < EDGES_PER_END {
                start_edges += 1;
                if start.is_none_or(|s| edge.half_width < s.half_width) {
                    (start, elapsed) = (Some(edge), 0);
                } else {
                    elapsed += step;
                }
            } else {
                elapsed = elapsed.saturating_add(step);
                if elapsed >= window_ticks {
                    end_edges += 1;
                    if end.is_none_or(|(e, _)| edge.half_width < e.half_width) {
                        end = Some((edge, elapsed));
                    }
                    if end_edges == EDGES_PER_END {
                        break;
                    }
                }
            }
        }
        (before_last, last) = (before, count);
        if after.saturating_sub(first_after) > bound.max_counter_ticks {
            break;
        }
    }
    let (Some(start), Some((end, reference_ticks))) = (start, end) else {
        return Err(if start_edges == 0 {
            CalibrationError::ReferenceStuck
        } else {
            CalibrationError::ReferenceTimeout
        });
    };
    if longest_gap >= wrap_guard_ticks(rate, mask) {
        return Err(CalibrationError::Disturbed);
    }
    let counter_ticks = end.at.saturating_sub(start.at);
    Ok(Window {
        counter_ticks,
        uncertainty_ticks: start.half_width + end.half_width,
        hz: rate.rate_of(counter_ticks, reference_ticks),
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
        let (start, start_err) = bracket(start_before, start_after);
        let (end, end_err) = bracket(end_before, end_after);
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
mod tests;
