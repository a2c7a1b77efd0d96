//! The LAPIC timer as Rhea's per-CPU one-shot timer ([`rhea_hal::OneShotTimer`]), and the
//! calibration of its rate.
//!
//! Two modes (SDM Vol. 3A §11.5.4), chosen once at boot:
//! - **TSC-deadline** (CPUID.01H:ECX[24]): the deadline is a TSC value written to
//!   `IA32_TSC_DEADLINE`; no rate to calibrate, no range limit, the interrupt comes when the
//!   TSC passes it. Preferred.
//! - **One-shot**: a count of timer ticks (the bus clock through a divider) written to the
//!   initial-count register. The fallback when TSC-deadline is absent — which is the case
//!   under QEMU TCG. Its rate is measured against the calibrated TSC
//!   ([`calibrate_lapic_timer`]); the count is 32 bits, so a deadline further away than
//!   `u32::MAX` ticks (68 s at 62.5 MHz) fires early, and the kernel re-arms.
//!
//! Both read "now" from the same counter and [`Timebase`] as the kernel's clock
//! ([`rhea_timers::TscClock`]), so a deadline means the same instant to the timer as to the
//! clock. A timer interrupt can come early (one-shot mode: by the calibration error; either
//! mode: after a re-arm races an expiry, §11.5.4.1 notes spurious TSC-deadline interrupts), so
//! the handler must compare the clock with its deadlines and re-arm, never assume.
//!
//! Per CPU, interrupts disabled: [`LapicTimer::init_this_cpu`] once, after
//! [`Lapic::init`](crate::lapic::Lapic::init), then `arm`/`disarm` at will.

use crate::access::{ApicMsr, Msr};
use crate::calibrate::{CalibrationConfig, CalibrationError, measure_rate};
use crate::lapic::{Lapic, LapicAccess, TimerDivide};
use rhea_hal::{Instant, OneShotTimer};
use rhea_irq::vectors::Vector;
use rhea_timers::{ClockConversion, CycleCounter, Timebase};

/// The LAPIC timer's measured rate at one divider setting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LapicTimerRate {
    divide: TimerDivide,
    conversion: ClockConversion,
}

impl LapicTimerRate {
    /// `hz` timer ticks per second with `divide` (0 is refused).
    pub const fn new(divide: TimerDivide, hz: u64) -> Option<LapicTimerRate> {
        match ClockConversion::from_hz(hz) {
            Ok(conversion) => Some(LapicTimerRate { divide, conversion }),
            Err(_) => None,
        }
    }

    /// The rate from a stated bus frequency instead of a measurement: the timer counts at
    /// `bus_hz / divide`. Hypervisors state it in CPUID leaf 0x40000010 EBX (kHz; 1 GHz on
    /// QEMU and KVM), which saves [`calibrate_lapic_timer`]'s boot time where it is filled.
    pub const fn from_bus_hz(divide: TimerDivide, bus_hz: u64) -> Option<LapicTimerRate> {
        LapicTimerRate::new(divide, bus_hz / divide.divisor() as u64)
    }

    /// Ticks per second, after the divider.
    pub const fn hz(&self) -> u64 {
        self.conversion.hz()
    }

    /// The divider the rate was measured with.
    pub const fn divide(&self) -> TimerDivide {
        self.divide
    }

    /// The initial count that fires no earlier than `ns` from now: at least 1 (a count of 0
    /// would stop the timer; 1 fires at once), at most `u32::MAX` (then it fires early).
    pub fn count_for(&self, ns: u64) -> u32 {
        self.conversion
            .deadline_ticks(ns)
            .clamp(1, u64::from(u32::MAX)) as u32
    }
}

/// Measures the LAPIC timer's rate with `divide` against `tsc` running at `tsc_hz` (already
/// calibrated): the timer counts down from `u32::MAX` in one-shot mode with its LVT masked (so
/// it raises nothing), sampled as in [`crate::calibrate::measure_rate`]; then it is stopped.
/// Call on one CPU at boot, interrupts disabled, before [`LapicTimer::init_this_cpu`]; every
/// CPU's timer runs at the same rate.
///
/// Errors: the timer does not count ([`CalibrationError::SubjectStuck`]), or counted down to
/// zero within the measurement ([`CalibrationError::SubjectExpired`]; pick a larger divider).
pub fn calibrate_lapic_timer<A: LapicAccess>(
    lapic: &Lapic<A>,
    vector: Vector,
    divide: TimerDivide,
    tsc: &dyn CycleCounter,
    tsc_hz: u64,
    config: &CalibrationConfig,
) -> Result<LapicTimerRate, CalibrationError> {
    lapic.set_timer_one_shot_masked(vector, divide);
    lapic.set_timer_initial_count(u32::MAX);
    let mut elapsed = || u64::from(u32::MAX - lapic.read_timer_current_count());
    let measured = measure_rate(tsc, tsc_hz, &mut elapsed, config);
    let has_expired = lapic.read_timer_current_count() == 0;
    lapic.set_timer_initial_count(0);
    if has_expired {
        return Err(CalibrationError::SubjectExpired);
    }
    LapicTimerRate::new(divide, measured?).ok_or(CalibrationError::SubjectStuck)
}

/// How the LAPIC timer is driven.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LapicTimerMode {
    /// `IA32_TSC_DEADLINE` holds the TSC value to fire at.
    TscDeadline,
    /// The initial count is computed from the measured rate.
    OneShot(LapicTimerRate),
}

/// This CPU's LAPIC timer as a [`OneShotTimer`]. One value serves every CPU (like [`Lapic`]),
/// so the kernel keeps it in a `static`; each call acts on the calling CPU's timer.
#[derive(Debug)]
pub struct LapicTimer<A, M, C> {
    lapic: Lapic<A>,
    msr: M,
    counter: C,
    timebase: Timebase,
    vector: Vector,
    mode: LapicTimerMode,
}

impl<A: LapicAccess, M: Msr, C: CycleCounter> LapicTimer<A, M, C> {
    /// A timer raising `vector`, driven in `mode`, reading now from `counter` (the TSC) on
    /// `timebase` — the clock's ([`rhea_timers::TscClock::timebase`]). `msr` is only used in
    /// TSC-deadline mode.
    pub const fn new(
        lapic: Lapic<A>,
        msr: M,
        counter: C,
        timebase: Timebase,
        vector: Vector,
        mode: LapicTimerMode,
    ) -> Self {
        LapicTimer {
            lapic,
            msr,
            counter,
            timebase,
            vector,
            mode,
        }
    }

    /// Programs the calling CPU's timer LVT for the mode, disarmed. Once per CPU, after
    /// [`Lapic::init`](crate::lapic::Lapic::init), before the first `arm`. In TSC-deadline
    /// mode this includes the fence §11.5.4.1 requires between the LVT write and the first
    /// deadline write ([`Msr::wrmsr_fence`]).
    pub fn init_this_cpu(&self) {
        match self.mode {
            LapicTimerMode::TscDeadline => {
                self.lapic.set_timer_tsc_deadline(self.vector);
                // §11.5.4.1: the LVT store must be visible before the first deadline write.
                self.msr.wrmsr_fence();
                self.msr.write_msr(ApicMsr::TSC_DEADLINE, 0);
            }
            LapicTimerMode::OneShot(rate) => {
                self.lapic.set_timer_initial_count(0);
                self.lapic.set_timer_one_shot(self.vector, rate.divide);
            }
        }
    }

    /// The mode.
    pub const fn mode(&self) -> LapicTimerMode {
        self.mode
    }

    /// The LAPIC (for EOIs from the trap path).
    pub const fn lapic(&self) -> &Lapic<A> {
        &self.lapic
    }
}

impl<A: LapicAccess, M: Msr, C: CycleCounter> OneShotTimer for LapicTimer<A, M, C> {
    /// RT: O(1) — at most one counter read and one register write; the only loop is
    /// [`ClockConversion::deadline_ticks`]'s bounded adjustment.
    fn arm(&self, deadline: Instant) {
        if deadline == Instant::NEVER {
            return self.disarm();
        }
        match self.mode {
            // A deadline already passed is a TSC value already passed: it fires at once. 0
            // would disarm, so the earliest value written is 1.
            LapicTimerMode::TscDeadline => self.msr.write_msr(
                ApicMsr::TSC_DEADLINE,
                self.timebase.counter_at(deadline).max(1),
            ),
            LapicTimerMode::OneShot(rate) => {
                let now = self.timebase.instant_at(self.counter.read());
                let ns = deadline.as_nanos().saturating_sub(now.as_nanos());
                self.lapic.set_timer_initial_count(rate.count_for(ns));
            }
        }
    }

    fn disarm(&self) {
        match self.mode {
            LapicTimerMode::TscDeadline => self.msr.write_msr(ApicMsr::TSC_DEADLINE, 0),
            LapicTimerMode::OneShot(_) => self.lapic.set_timer_initial_count(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lapic::model::{DEADLINE_MARK, FENCE_MARK, FakeTsc, Model, QEMU_VERSION};
    use crate::lapic::{X2Apic, XApic};
    use rhea_irq::vectors::LAPIC_TIMER;

    const TSC_HZ: u64 = 2_500_000_000;
    const INITIAL: u16 = 0x380;
    const LVT_TIMER: u16 = 0x320;

    fn timebase(origin: u64) -> Timebase {
        Timebase::new(origin, ClockConversion::from_hz(TSC_HZ).unwrap())
    }

    fn initial_counts(m: &Model<'_>) -> Vec<u32> {
        m.writes()
            .into_iter()
            .filter(|&(o, _)| o == INITIAL)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn tsc_deadline_mode_writes_the_deadline_msr() {
        let tsc = FakeTsc::new(1_000_000, 0);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let t = LapicTimer::new(
            Lapic::new(XApic::new(&m)),
            &m,
            &tsc,
            timebase(1_000),
            LAPIC_TIMER,
            LapicTimerMode::TscDeadline,
        );
        t.init_this_cpu();
        assert_eq!(
            m.writes(),
            [(LVT_TIMER, 0x4_00ef), (FENCE_MARK, 0), (DEADLINE_MARK, 0)],
            "LVT, fence, then the first deadline write"
        );
        t.arm(Instant::from_nanos(1_000));
        t.arm(Instant::ZERO);
        t.arm(Instant::NEVER);
        t.arm(Instant::from_nanos(400));
        t.disarm();
        // 1000 ns at 2.5 GHz is 2500 ticks after the origin (1000); ZERO is the origin, already
        // passed, so it fires at once; NEVER disarms; 400 ns is exactly 1000 ticks.
        assert_eq!(
            m.with(|c| c.deadline_msr.clone()),
            [0, 3_500, 1_000, 0, 2_000, 0]
        );
    }

    #[test]
    fn a_deadline_at_counter_zero_is_written_as_one_not_as_disarm() {
        let tsc = FakeTsc::new(0, 0);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let t = LapicTimer::new(
            Lapic::new(X2Apic::new(&m)),
            &m,
            &tsc,
            timebase(0),
            LAPIC_TIMER,
            LapicTimerMode::TscDeadline,
        );
        t.arm(Instant::ZERO);
        assert_eq!(m.with(|c| c.deadline_msr.clone()), [1]);
    }

    #[test]
    fn one_shot_mode_counts_from_now_and_clamps() {
        // The clock reads 1 ms; the timer runs at 62.5 MHz (16 ns a tick).
        let tsc = FakeTsc::new(2_500_000, 0);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        let rate = LapicTimerRate::new(TimerDivide::By16, 62_500_000).unwrap();
        let t = LapicTimer::new(
            Lapic::new(XApic::new(&m)),
            &m,
            &tsc,
            timebase(0),
            LAPIC_TIMER,
            LapicTimerMode::OneShot(rate),
        );
        t.init_this_cpu();
        assert_eq!(
            m.writes(),
            [(INITIAL, 0), (0x3e0, 0b0011), (LVT_TIMER, 0xef)]
        );
        let now_ns = 1_000_000;
        t.arm(Instant::from_nanos(now_ns + 1_000_000)); // 1 ms: 62 500 ticks
        t.arm(Instant::from_nanos(now_ns + 17)); // 1.06 ticks: rounded up, never early
        t.arm(Instant::from_nanos(now_ns - 5)); // passed: as soon as possible
        t.arm(Instant::from_nanos(now_ns + 3_600_000_000_000)); // an hour: clamped
        t.arm(Instant::NEVER);
        t.disarm();
        assert_eq!(initial_counts(&m), [0, 62_500, 2, 1, u32::MAX, 0, 0]);
        assert!(
            m.with(|c| c.deadline_msr.is_empty()),
            "one-shot mode never writes the MSR"
        );
    }

    #[test]
    fn calibration_measures_the_divided_bus_clock() {
        // QEMU/KVM: 1 GHz bus, divide by 16 = 62.5 MHz; TSC 2.5 GHz, 30 ticks per read.
        let tsc = FakeTsc::new(1_000, 30);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.timer_rate = Some((1_000_000_000, TSC_HZ)));
        let lapic = Lapic::new(X2Apic::new(&m));
        let rate = calibrate_lapic_timer(
            &lapic,
            LAPIC_TIMER,
            TimerDivide::By16,
            &tsc,
            TSC_HZ,
            &CalibrationConfig::DEFAULT,
        )
        .unwrap();
        let error_ppm = (i128::from(rate.hz()) - 62_500_000).abs() * 1_000_000 / 62_500_000;
        assert!(error_ppm < 50, "{} Hz", rate.hz());
        assert_eq!(rate.divide(), TimerDivide::By16);
        let w = m.writes();
        assert_eq!(w[0], (0x3e0, 0b0011));
        assert_eq!(w[1], (LVT_TIMER, 0x1_00ef), "masked while calibrating");
        assert_eq!(w[2], (INITIAL, u32::MAX));
        assert_eq!(*w.last().unwrap(), (INITIAL, 0), "stopped afterwards");
    }

    #[test]
    fn calibration_of_a_dead_timer_fails() {
        let tsc = FakeTsc::new(1_000, 30);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.timer_rate = None);
        let lapic = Lapic::new(XApic::new(&m));
        let r = calibrate_lapic_timer(
            &lapic,
            LAPIC_TIMER,
            TimerDivide::By1,
            &tsc,
            TSC_HZ,
            &CalibrationConfig::DEFAULT,
        );
        assert_eq!(r, Err(CalibrationError::SubjectStuck));
        assert_eq!(
            initial_counts(&m).last(),
            Some(&0),
            "stopped even on failure"
        );
    }

    #[test]
    fn calibration_of_a_timer_that_runs_out_fails() {
        // A 500 GHz timer runs through 2^32 ticks in 8.6 ms, inside the measurement.
        let tsc = FakeTsc::new(1_000, 30);
        let m = Model::new(0, QEMU_VERSION, &tsc);
        m.with(|c| c.timer_rate = Some((500_000_000_000, TSC_HZ)));
        let lapic = Lapic::new(XApic::new(&m));
        let r = calibrate_lapic_timer(
            &lapic,
            LAPIC_TIMER,
            TimerDivide::By1,
            &tsc,
            TSC_HZ,
            &CalibrationConfig::DEFAULT,
        );
        assert_eq!(r, Err(CalibrationError::SubjectExpired));
    }

    #[test]
    fn rate_rejects_zero_and_clamps_counts() {
        assert_eq!(LapicTimerRate::new(TimerDivide::By1, 0), None);
        let r = LapicTimerRate::new(TimerDivide::By1, 1_000_000_000).unwrap();
        assert_eq!(r.count_for(0), 1);
        assert_eq!(r.count_for(5), 5);
        assert_eq!(r.count_for(u64::MAX), u32::MAX);
        let stated = LapicTimerRate::from_bus_hz(TimerDivide::By16, 1_000_000_000).unwrap();
        assert_eq!(stated.hz(), 62_500_000);
        assert_eq!(stated.count_for(1_000_000), 62_500);
        assert_eq!(
            LapicTimerRate::from_bus_hz(TimerDivide::By128, 100),
            None,
            "rounds to 0 Hz"
        );
    }
}
