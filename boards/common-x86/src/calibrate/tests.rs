//! The calibration against models of a PC's timers (`crate::model`): every source, their
//! order, forcing one, the cross-check, wrapping counters and dead ones.

use super::*;
use crate::hpet::Hpet;
use crate::model::{HpetModel, Machine, PmTimerModel, Wiring};
use crate::pm_timer::{PmTimer, PmTimerPort};
use core::sync::atomic::{AtomicU64, Ordering};
use std::string::ToString;

fn ppm(measured: u64, truth: u64) -> i64 {
    ((i128::from(measured) - i128::from(truth)) * 1_000_000 / i128::from(truth)) as i64
}

fn elapsed_ms(m: &Machine) -> u64 {
    m.with(|s| s.now_ps) / 1_000_000_000
}

/// Only a stated frequency and the PIT's ports.
fn with_pit<'a>(stated: Option<(u64, &'static str)>, pit: Option<&'a Machine>) -> References<'a> {
    References {
        stated,
        hpet: Err(Missing::Absent),
        pm_timer: Err(Missing::Absent),
        pit: pit.map(|m| m as &dyn PortIo),
    }
}

fn pit_only(
    stated: Option<(u64, &'static str)>,
    m: &Machine,
    config: &CalibrationConfig,
) -> Result<Calibration, TscError> {
    calibrate_tsc(&with_pit(stated, Some(m)), None, m, config)
}

const NO_CHECK: CalibrationConfig = CalibrationConfig {
    cross_check: false,
    ..CalibrationConfig::DEFAULT
};

/// The PM timer where QEMU's q35 has it.
const PM_PORT: PmTimerPort = PmTimerPort {
    port: 0x608,
    bits: 24,
    extended: true,
};

fn pm_model(bits: u32, offset: u64) -> PmTimerModel {
    PmTimerModel {
        port: 0x608,
        bits,
        offset,
        dead: false,
    }
}

/// A q35-like machine: an HPET (halted, as firmware may leave it), a 24-bit PM timer and a PIT.
fn q35(tsc_hz: u64) -> Machine {
    Machine::new(tsc_hz, Wiring::Pc)
        .with_hpet(HpetModel::qemu(0))
        .with_pm_timer(pm_model(24, 0))
}

/// Calibrates on `m` with whatever it has: the HPET and PM timer drivers over the model.
fn calibrate_on(
    m: &Machine,
    stated: Option<(u64, &'static str)>,
    forced: Option<TscRef>,
    config: &CalibrationConfig,
) -> Result<Calibration, TscError> {
    let hpet = m.with(|s| s.hpet.is_some()).then(|| Hpet::new(m).unwrap());
    let pm = m
        .with(|s| s.pm_timer.map(|p| p.bits))
        .map(|bits| PmTimer::new(m, PmTimerPort { bits, ..PM_PORT }));
    let refs = References {
        stated,
        hpet: hpet
            .as_ref()
            .map(|h| h as &dyn ReferenceCounter)
            .ok_or(Missing::Absent),
        pm_timer: pm
            .as_ref()
            .map(|p| p as &dyn ReferenceCounter)
            .ok_or(Missing::Absent),
        pit: Some(m),
    };
    // Count only what the calibration touches (not the capabilities read above).
    m.with(|s| s.mmio_accesses = 0);
    calibrate_tsc(&refs, forced, m, config)
}

// --- The PIT, as before the HPET and the PM timer were added. ---

#[test]
fn stated_frequency_wins_and_is_cross_checked() {
    // The TSC really runs 500 ppm faster than CPUID says.
    let m = Machine::new(2_001_000_000, Wiring::Pc);
    let c = pit_only(
        Some((2_000_000_000, "cpuid 0x15")),
        &m,
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    assert_eq!(c.hz, 2_000_000_000);
    assert_eq!(c.source, FrequencySource::Cpuid("cpuid 0x15"));
    match c.cross_check {
        CrossCheck::Compared {
            against,
            disagreement_ppm,
            hz,
        } => {
            assert_eq!(
                against,
                FrequencySource::Measured(Reference::Pit(PitChannel::Channel2))
            );
            assert!(
                (300..700).contains(&disagreement_ppm),
                "{disagreement_ppm} ppm ({hz} Hz)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_cross_check_when_not_asked_or_no_pit() {
    let m = Machine::new(2_000_000_000, Wiring::Pc);
    let c = pit_only(Some((2_000_000_000, "cpuid 0x16")), &m, &NO_CHECK).unwrap();
    assert_eq!(c.cross_check, CrossCheck::NotRun);
    assert_eq!(m.with(|s| s.port_accesses), 0, "the PIT was not touched");
    let c = calibrate_tsc(
        &with_pit(Some((2_000_000_000, "cpuid 0x16")), None),
        None,
        &m,
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    assert_eq!(c.cross_check, CrossCheck::NoOther);
}

#[test]
fn cross_check_against_a_dead_pit_fails_but_the_stated_value_stands() {
    let m = Machine::new(2_000_000_000, Wiring::Dead { value: 0xff });
    let c = pit_only(
        Some((2_000_000_000, "cpuid 0x40000010")),
        &m,
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    assert_eq!(c.hz, 2_000_000_000);
    assert_eq!(
        c.cross_check,
        CrossCheck::Failed(TscRef::Pit, CalibrationError::PitAbsent)
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
        let c = pit_only(None, &m, &CalibrationConfig::DEFAULT).unwrap();
        assert_eq!(
            c.source,
            FrequencySource::Measured(Reference::Pit(PitChannel::Channel2))
        );
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
    let c = pit_only(None, &m, &CalibrationConfig::DEFAULT).unwrap();
    assert_eq!(
        c.source,
        FrequencySource::Measured(Reference::Pit(PitChannel::Channel0))
    );
    assert!(ppm(c.hz, 3_100_000_000).abs() < 300, "{}", c.hz);
}

#[test]
fn a_dead_pit_is_an_error_not_a_hang() {
    for value in [0xff, 0x00] {
        let m = Machine::new(3_000_000_000, Wiring::Dead { value });
        let r = pit_only(None, &m, &CalibrationConfig::DEFAULT);
        let no_way = NoWay {
            ignored_stated_hz: None,
            hpet: Tried::Missing(Missing::Absent),
            pm_timer: Tried::Missing(Missing::Absent),
            pit: Tried::Failed(CalibrationError::PitAbsent),
        };
        assert_eq!(r, Err(TscError::NoWay(no_way)), "ports read {value:#x}");
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
    assert!(pit_only(None, &m, &config).is_err());
}

#[test]
fn a_stuck_counter_with_a_live_pit_is_implausible() {
    let m = Machine::new(3_000_000_000, Wiring::Pc);
    m.with(|s| s.stuck_tsc = Some(7));
    assert_eq!(
        calibrate_tsc(
            &with_pit(None, Some(&m)),
            Some(TscRef::Pit),
            &m,
            &CalibrationConfig::DEFAULT
        ),
        Err(TscError::ForcedFailed {
            source: TscRef::Pit,
            error: CalibrationError::Implausible { hz: 0 }
        })
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
    let c = pit_only(Some((1_000, "cpuid 0x16")), &m, &CalibrationConfig::DEFAULT).unwrap();
    assert_eq!(
        c.source,
        FrequencySource::Measured(Reference::Pit(PitChannel::Channel2))
    );
    assert_eq!(c.ignored_stated_hz, Some(1_000));
}

#[test]
fn nothing_to_go_on_and_bad_configs() {
    let m = Machine::new(2_000_000_000, Wiring::Pc);
    let nothing = calibrate_tsc(&with_pit(None, None), None, &m, &CalibrationConfig::DEFAULT);
    assert_eq!(
        nothing,
        Err(TscError::NoWay(NoWay {
            ignored_stated_hz: None,
            hpet: Tried::Missing(Missing::Absent),
            pm_timer: Tried::Missing(Missing::Absent),
            pit: Tried::Missing(Missing::Absent),
        }))
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
        assert_eq!(pit_only(None, &m, &config), Err(TscError::InvalidConfig));
    }
}

// --- The HPET and the ACPI PM timer. ---

#[test]
fn the_hpet_comes_before_the_pm_timer_and_the_pit() {
    let m = q35(2_904_000_000);
    let c = calibrate_on(&m, None, None, &NO_CHECK).unwrap();
    assert_eq!(c.source, FrequencySource::Measured(Reference::Hpet));
    assert!(ppm(c.hz, 2_904_000_000).abs() < 100, "{}", c.hz);
    assert_eq!(c.skipped, [None; 3]);
    assert!(!c.forced);
    assert!(m.with(|s| s.hpet.unwrap().enabled), "started");
    assert_eq!(
        m.with(|s| s.port_accesses),
        0,
        "neither PM timer nor PIT read"
    );
    assert!(elapsed_ms(&m) < 40, "{} ms", elapsed_ms(&m));
}

#[test]
fn then_the_pm_timer_then_the_pit() {
    let m = Machine::new(2_100_000_000, Wiring::Pc).with_pm_timer(pm_model(24, 0));
    let c = calibrate_on(&m, None, None, &NO_CHECK).unwrap();
    assert_eq!(c.source, FrequencySource::Measured(Reference::PmTimer));
    assert!(ppm(c.hz, 2_100_000_000).abs() < 200, "{}", c.hz);
    let m = Machine::new(2_100_000_000, Wiring::Pc);
    let c = calibrate_on(&m, None, None, &NO_CHECK).unwrap();
    assert_eq!(
        c.source,
        FrequencySource::Measured(Reference::Pit(PitChannel::Channel2))
    );
}

#[test]
fn a_stated_frequency_still_comes_first() {
    let m = q35(2_000_000_000);
    let c = calibrate_on(&m, Some((2_000_000_000, "kvmclock")), None, &NO_CHECK).unwrap();
    assert_eq!(c.source, FrequencySource::Cpuid("kvmclock"));
    assert_eq!(m.with(|s| s.mmio_accesses + s.port_accesses), 0);
}

#[test]
fn hpet_periods_and_widths() {
    // A PC's 14.318 MHz HPET (69 841 279 fs), and a 32-bit counter that wraps within the
    // first windows; QEMU's 100 MHz one whose 64-bit count's low half wraps.
    for (caps_low, period_fs, start) in [
        (0x8086_a201, 69_841_279, 0),
        (0x8086_0201, 69_841_279, 0xffff_ffff - 150_000),
        (0x8086_a201, 10_000_000, 0x7_ffff_ffff - 1_000_000),
        (0x8086_0201, MAX_TEST_PERIOD_FS, 0xffff_fff0),
    ] {
        let m = Machine::new(3_000_000_000, Wiring::Pc).with_hpet(HpetModel {
            caps_low,
            period_fs,
            ..HpetModel::qemu(start)
        });
        let c = calibrate_on(&m, None, None, &NO_CHECK).unwrap();
        assert_eq!(c.source, FrequencySource::Measured(Reference::Hpet));
        assert!(
            ppm(c.hz, 3_000_000_000).abs() < 100,
            "{period_fs} fs from {start:#x}: {}",
            c.hz
        );
    }
}

const MAX_TEST_PERIOD_FS: u32 = crate::hpet::MAX_PERIOD_FS;

#[test]
fn pm_timer_widths_and_wraps() {
    // 24 bits wrapping in the first window (4.69 s period), and 32 bits near its end.
    for (bits, offset) in [(24, 0xff_ffff - 5_000), (24, 0), (32, 0xffff_ffff - 20_000)] {
        let m = Machine::new(2_500_000_000, Wiring::Pc).with_pm_timer(pm_model(bits, offset));
        let c = calibrate_on(&m, None, Some(TscRef::PmTimer), &NO_CHECK).unwrap();
        assert_eq!(c.source, FrequencySource::Measured(Reference::PmTimer));
        assert!(c.forced);
        assert!(
            ppm(c.hz, 2_500_000_000).abs() < 200,
            "{bits} bits from {offset:#x}: {}",
            c.hz
        );
    }
}

#[test]
fn a_gap_that_could_hide_a_wrap_is_refused() {
    // A 24-bit PM timer wraps every 4.69 s; a 5 s stall inside a window could hide one.
    let m = Machine::new(2_000_000_000, Wiring::Pc).with_pm_timer(pm_model(24, 0));
    let pm = PmTimer::new(&m, PM_PORT);
    let at = m.with(|s| s.now_ps) + 2_000_000_000;
    m.with(|s| s.stall = Some((at, 5_000_000_000_000)));
    assert_eq!(
        sample_counter(&pm, &m, 5_000).unwrap_err(),
        CalibrationError::Disturbed
    );
    // The measurement goes on with the next windows.
    let m = Machine::new(2_000_000_000, Wiring::Pc).with_pm_timer(pm_model(24, 0));
    let at = m.with(|s| s.now_ps) + 2_000_000_000;
    m.with(|s| s.stall = Some((at, 5_000_000_000_000)));
    let pm = PmTimer::new(&m, PM_PORT);
    let r = measure_against_counter(&pm, &m, &CalibrationConfig::DEFAULT).unwrap();
    assert_eq!(r.samples, 3);
    assert!(ppm(r.hz, 2_000_000_000).abs() < 200, "{}", r.hz);
}

#[test]
fn a_stall_at_a_window_end_spoils_one_edge_not_the_window() {
    let m = q35(2_000_000_000);
    // A 2 ms stall just as the first 10 ms window ends: the edge that read straddles is
    // uncertain by 1 ms, the next ones are not, and the tightest is kept.
    let hpet = Hpet::new(&m).unwrap();
    hpet.start();
    let at = m.with(|s| s.now_ps) + 10_010_000_000;
    m.with(|s| s.stall = Some((at, 2_000_000_000)));
    let w = sample_counter(&hpet, &m, 10_000).unwrap();
    assert!(w.uncertainty_ticks < 10_000, "{w:?}");
    assert!(ppm(w.hz, 2_000_000_000).abs() < 10, "{w:?}");
    let m = q35(2_000_000_000);
    m.with(|s| s.stall = Some((s.now_ps + 9_990_000_000, 2_000_000_000)));
    let hpet = Hpet::new(&m).unwrap();
    let r = measure_against_counter(&hpet, &m, &CalibrationConfig::DEFAULT).unwrap();
    assert_eq!(r.samples, 3);
    assert!(ppm(r.hz, 2_000_000_000).abs() < 20, "{}", r.hz);
    assert!(elapsed_ms(&m) < 40, "{} ms", elapsed_ms(&m));
}

#[test]
fn a_dead_hpet_falls_back_to_the_pm_timer_within_a_bound() {
    let m = q35(3_000_000_000);
    m.with(|s| s.hpet.as_mut().unwrap().dead = true);
    let c = calibrate_on(&m, None, None, &NO_CHECK).unwrap();
    assert_eq!(c.source, FrequencySource::Measured(Reference::PmTimer));
    assert_eq!(
        c.skipped,
        [
            Some((TscRef::Hpet, CalibrationError::ReferenceStuck)),
            None,
            None
        ]
    );
    // The dead counter cost one window's bound (twice 10 ms at 20 GHz: 133 ms at 3 GHz),
    // then three 10 ms windows of the PM timer.
    assert!(elapsed_ms(&m) < 200, "{} ms", elapsed_ms(&m));
}

#[test]
fn everything_dead_is_the_clear_error_within_a_bound() {
    let m = Machine::new(3_000_000_000, Wiring::Dead { value: 0xff })
        .with_hpet(HpetModel {
            dead: true,
            ..HpetModel::qemu(42)
        })
        .with_pm_timer(PmTimerModel {
            dead: true,
            ..pm_model(24, 7)
        });
    let e = calibrate_on(&m, None, None, &NO_CHECK).unwrap_err();
    assert_eq!(
        e,
        TscError::NoWay(NoWay {
            ignored_stated_hz: None,
            hpet: Tried::Failed(CalibrationError::ReferenceStuck),
            pm_timer: Tried::Failed(CalibrationError::ReferenceStuck),
            pit: Tried::Failed(CalibrationError::PitAbsent),
        })
    );
    assert!(elapsed_ms(&m) < 600, "{} ms", elapsed_ms(&m));
    assert_eq!(
        e.to_string(),
        "no way to measure the TSC: CPUID states no frequency, the HPET failed (the reference \
         counter does not advance), the ACPI PM timer failed (the reference counter does not \
         advance), and the PIT does not count"
    );
}

#[test]
fn a_machine_with_none_of_them_says_so() {
    // microvm with pit=off under TCG: no CPUID leaf, no HPET table, a hardware-reduced FADT.
    let m = Machine::new(3_000_000_000, Wiring::Dead { value: 0xff });
    let e = calibrate_on(&m, None, None, &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no way to measure the TSC: CPUID states no frequency, no HPET table, no ACPI PM timer, \
         and the PIT does not count"
    );
    let refused = References {
        stated: Some((5, "cpuid 0x16")),
        hpet: Err(Missing::Refused),
        pm_timer: Err(Missing::Refused),
        pit: None,
    };
    let e = calibrate_tsc(&refused, None, &m, &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no way to measure the TSC: CPUID states an implausible 5 Hz, the HPET was refused, the \
         ACPI PM timer was refused, and no PIT"
    );
}

#[test]
fn a_stuck_tsc_against_a_live_hpet_ends() {
    let m = q35(3_000_000_000);
    m.with(|s| s.stuck_tsc = Some(9));
    let hpet = Hpet::new(&m).unwrap();
    let config = CalibrationConfig {
        window_us: 1_000,
        ..NO_CHECK
    };
    assert_eq!(
        measure_against_counter(&hpet, &m, &config),
        Err(CalibrationError::Implausible { hz: 0 })
    );
}

#[test]
fn a_stuck_tsc_against_a_dead_hpet_ends_by_poll_count() {
    let m = q35(3_000_000_000);
    m.with(|s| {
        s.stuck_tsc = Some(9);
        s.hpet.as_mut().unwrap().dead = true;
    });
    let hpet = Hpet::new(&m).unwrap();
    let config = CalibrationConfig {
        window_us: 1_000,
        ..NO_CHECK
    };
    assert_eq!(
        measure_against_counter(&hpet, &m, &config),
        Err(CalibrationError::ReferenceStuck)
    );
    assert!(m.with(|s| s.mmio_accesses) <= WaitBound::for_window(1_000).max_polls + 10);
}

// --- Forcing a source (`rhea.tsc_ref`). ---

#[test]
fn a_forced_source_is_used_alone() {
    let m = q35(2_000_000_000);
    let c = calibrate_on(
        &m,
        Some((2_000_000_000, "cpuid 0x15")),
        Some(TscRef::Pit),
        &NO_CHECK,
    )
    .unwrap();
    assert_eq!(
        c.source,
        FrequencySource::Measured(Reference::Pit(PitChannel::Channel2))
    );
    assert!(c.forced);
    assert_eq!(m.with(|s| s.mmio_accesses), 0, "the HPET was not touched");
    let m = q35(2_000_000_000);
    let c = calibrate_on(
        &m,
        Some((1_999_000_000, "cpuid 0x15")),
        Some(TscRef::Cpuid),
        &NO_CHECK,
    )
    .unwrap();
    assert_eq!(
        (c.hz, c.source),
        (1_999_000_000, FrequencySource::Cpuid("cpuid 0x15"))
    );
}

#[test]
fn a_forced_source_that_is_missing_or_failing_is_an_error_not_a_fallback() {
    let m = Machine::new(2_000_000_000, Wiring::NoPortB);
    for (forced, missing) in [
        (TscRef::Cpuid, Missing::Absent),
        (TscRef::Hpet, Missing::Absent),
        (TscRef::PmTimer, Missing::Absent),
    ] {
        assert_eq!(
            calibrate_on(&m, None, Some(forced), &NO_CHECK),
            Err(TscError::ForcedAbsent {
                source: forced,
                missing
            })
        );
    }
    assert_eq!(
        calibrate_on(&m, Some((3, "cpuid 0x16")), Some(TscRef::Cpuid), &NO_CHECK),
        Err(TscError::ForcedAbsent {
            source: TscRef::Cpuid,
            missing: Missing::Refused
        })
    );
    let refused = References {
        stated: None,
        hpet: Err(Missing::Refused),
        pm_timer: Err(Missing::Absent),
        pit: Some(&m),
    };
    let e = calibrate_tsc(&refused, Some(TscRef::Hpet), &m, &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rhea.tsc_ref=hpet asks for the HPET, but the HPET was refused (see the references line)"
    );
    // A dead HPET, forced: its failure, and the working PM timer is not tried.
    let m = q35(2_000_000_000);
    m.with(|s| s.hpet.as_mut().unwrap().dead = true);
    assert_eq!(
        calibrate_on(&m, None, Some(TscRef::Hpet), &NO_CHECK),
        Err(TscError::ForcedFailed {
            source: TscRef::Hpet,
            error: CalibrationError::ReferenceStuck
        })
    );
    assert_eq!(m.with(|s| s.port_accesses), 0);
    // A machine without a PIT.
    let m = Machine::new(2_000_000_000, Wiring::Dead { value: 0xff });
    let e = calibrate_on(&m, None, Some(TscRef::Pit), &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rhea.tsc_ref=pit asks for the 8254 PIT, but the PIT does not count"
    );
    let e = calibrate_on(&m, None, Some(TscRef::PmTimer), &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rhea.tsc_ref=pmtimer asks for the ACPI PM timer, but there is no ACPI PM timer on this \
         machine"
    );
    let e = calibrate_on(&m, None, Some(TscRef::Cpuid), &NO_CHECK).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rhea.tsc_ref=cpuid asks for the TSC frequency stated by CPUID, but CPUID states no TSC \
         frequency on this machine"
    );
}

#[test]
fn tsc_ref_names_are_the_command_line_choices() {
    let rhea_hal::cmdline::Kind::Choice(words) = rhea_hal::cmdline::keys::TSC_REF.kind else {
        panic!("rhea.tsc_ref is a choice");
    };
    assert_eq!(words.len(), TscRef::ALL.len());
    for (word, r) in words.iter().zip(TscRef::ALL) {
        assert_eq!(TscRef::from_name(word), Some(r));
        assert_eq!(r.name(), *word);
    }
    assert_eq!(TscRef::from_name("tsc"), None);
}

// --- The cross-check. ---

#[test]
fn the_cross_check_takes_the_best_other_source() {
    // Stated: checked against the HPET.
    let m = q35(2_001_000_000);
    let c = calibrate_on(
        &m,
        Some((2_000_000_000, "cpuid 0x15")),
        None,
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    match c.cross_check {
        CrossCheck::Compared {
            against: FrequencySource::Measured(Reference::Hpet),
            disagreement_ppm,
            ..
        } => assert!((400..600).contains(&disagreement_ppm), "{disagreement_ppm}"),
        other => panic!("{other:?}"),
    }
    // Measured against the HPET: checked against the PM timer.
    let m = q35(2_000_000_000);
    let c = calibrate_on(&m, None, None, &CalibrationConfig::DEFAULT).unwrap();
    match c.cross_check {
        CrossCheck::Compared {
            against: FrequencySource::Measured(Reference::PmTimer),
            disagreement_ppm,
            ..
        } => assert!(disagreement_ppm.abs() < 200, "{disagreement_ppm}"),
        other => panic!("{other:?}"),
    }
    // Forced to the PM timer with a stated frequency: checked against that, measuring nothing
    // more.
    let m = q35(2_000_000_000);
    let c = calibrate_on(
        &m,
        Some((2_000_000_000, "cpuid 0x15")),
        Some(TscRef::PmTimer),
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    assert!(matches!(
        c.cross_check,
        CrossCheck::Compared {
            against: FrequencySource::Cpuid("cpuid 0x15"),
            ..
        }
    ));
    assert_eq!(m.with(|s| s.mmio_accesses), 0);
    // A dead HPET is passed over for the PM timer; with everything else dead, the last failure.
    let m = q35(2_000_000_000);
    m.with(|s| s.hpet.as_mut().unwrap().dead = true);
    let c = calibrate_on(&m, None, Some(TscRef::Pit), &CalibrationConfig::DEFAULT).unwrap();
    assert!(matches!(
        c.cross_check,
        CrossCheck::Compared {
            against: FrequencySource::Measured(Reference::PmTimer),
            ..
        }
    ));
    let m = Machine::new(2_000_000_000, Wiring::Dead { value: 0xff }).with_hpet(HpetModel {
        dead: true,
        ..HpetModel::qemu(0)
    });
    let c = calibrate_on(
        &m,
        Some((2_000_000_000, "cpuid 0x15")),
        None,
        &CalibrationConfig::DEFAULT,
    )
    .unwrap();
    assert_eq!(
        c.cross_check,
        CrossCheck::Failed(TscRef::Pit, CalibrationError::PitAbsent)
    );
}

// --- Pieces. ---

#[test]
fn rates_and_masks() {
    let hpet = Rate::from_period_fs(10_000_000).unwrap();
    assert_eq!(hpet.hz(), 100_000_000);
    assert_eq!(hpet.ticks_in_us(5_000), 500_000);
    assert_eq!(hpet.rate_of(14_520_000, 500_000), 2_904_000_000);
    let pm = Rate::from_hz(3_579_545).unwrap();
    assert_eq!(pm.ticks_in_us(5_000), 17_898, "rounded up");
    assert_eq!(Rate::from_hz(0), None);
    assert_eq!(Rate::from_period_fs(0), None);
    assert_eq!(width_mask(24), 0xff_ffff);
    assert_eq!(width_mask(32), 0xffff_ffff);
    assert_eq!(width_mask(64), u64::MAX);
    // Half a 24-bit PM timer wrap (4.69 s) at 10 MHz: 23.4 M ticks.
    assert_eq!(wrap_guard_ticks(pm, width_mask(24)), 23_434_844);
    // QEMU's HPET read as 32 bits: half of 42.9 s at 10 MHz.
    assert_eq!(wrap_guard_ticks(hpet, width_mask(32)), 214_748_364);
    assert_eq!(
        wrap_guard_ticks(pm, width_mask(64)),
        u64::MAX / 2,
        "saturates"
    );
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
