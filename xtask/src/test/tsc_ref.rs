//! `cargo xtask test`'s TSC-reference cases: qemu-x86_64 boots `hello` under TCG, where CPUID
//! states no TSC frequency, so every source is a measurement. Each reference is forced in turn
//! (`rhea.tsc_ref`) and cross-checked against another (`rhea.tsc_check=1`); references the
//! machine lacks are forced and must end the boot with their clear message; and a machine
//! with none must say so.
//!
//! The machines: q35 has an HPET, an ACPI PM timer (port 0x608, 24 bits) and a PIT; with
//! `hpet=off` it has no HPET table. microvm has only the PIT (no HPET table, a hardware-reduced
//! FADT); with `pit=off` it has nothing at all.
//!
//! A case passes iff the run ends as expected (a refused source: the failure status, before
//! the app starts), its console fragments appear in order, and, for a cross-checked boot, the
//! `rhea: time: tsc` line names the expected source and reference and their disagreement is
//! within the case's margin. The margins come from the spread measured under TCG on this
//! 2-core machine (40 boots of each forced reference, idle and with two busy loops at QEMU's
//! priority; `--repeat 10` reruns these cases): the HPET and the PM timer agreed within
//! ±20 ppm ([`MARGIN_FINE_PPM`] = 200); the PIT disagreed with them by −1107 to +1343 ppm,
//! mostly about −350 (its terminal count is seen through port 0x61, one slow emulated read,
//! with no choice of edge; [`MARGIN_PIT_PPM`] = 3000).
//!
//! Case names: `qemu-x86_64/<machine>/tcg tsc-ref <what>` (`--filter tsc-ref`).

use std::time::Duration;

use crate::apps::{self, App, Expect};
use crate::qemu::{self, Accel, Serial, Spec};
use crate::{Options, Workspace, boards, image, setup};

/// The app every case boots.
const APP: &str = "hello";

/// The board.
const BOARD: &str = "qemu-x86_64";

/// Largest disagreement between the HPET and the ACPI PM timer.
pub(crate) const MARGIN_FINE_PPM: i64 = 200;
/// Largest disagreement of the PIT with another reference.
pub(crate) const MARGIN_PIT_PPM: i64 = 3000;

/// What the cross-checked `rhea: time: tsc` line must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agreement {
    /// The source in its parentheses (`measured against the HPET`, ...).
    source: &'static str,
    /// The reference of its cross-check (`ACPI PM timer`, ...).
    against: &'static str,
    /// The largest disagreement allowed either way.
    margin_ppm: i64,
}

/// One boot.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    /// `q35` or `microvm`.
    pub(crate) machine: &'static str,
    /// Added to QEMU's `-M` value for this machine.
    properties: &'static str,
    /// The kernel command line (after `rhea.checker=1`).
    args: &'static str,
    expect: Expect,
    /// Console fragments, in order.
    console: Vec<String>,
    agreement: Option<Agreement>,
}

fn case(machine: &'static str, properties: &'static str, what: &str, args: &'static str) -> Case {
    Case {
        name: format!("{BOARD}/{machine}/tcg tsc-ref {what}"),
        machine,
        properties,
        args,
        expect: Expect::Success,
        console: Vec::new(),
        agreement: None,
    }
}

/// A case whose boot measures `source` and cross-checks it against `against`.
fn checked(
    machine: &'static str,
    properties: &'static str,
    what: &str,
    args: &'static str,
    agreement: Agreement,
) -> Case {
    Case {
        console: vec![
            "rhea: time: references: ".to_string(),
            "rhea: time: tsc ".to_string(),
            format!("({}); measured ", agreement.source),
            "Hello from Rhea!".to_string(),
        ],
        agreement: Some(agreement),
        ..case(machine, properties, what, args)
    }
}

/// A case whose boot must end with `message` (the TSC calibration's error).
fn refused(
    machine: &'static str,
    properties: &'static str,
    what: &str,
    args: &'static str,
    message: &str,
) -> Case {
    Case {
        expect: Expect::Failure,
        console: vec![
            "rhea: time: references: ".to_string(),
            format!("TSC calibration failed: {message}"),
        ],
        ..case(machine, properties, what, args)
    }
}

/// Every case, in order: q35's references, then what q35 without an HPET and microvm lack.
pub(crate) fn cases() -> Vec<Case> {
    let hpet = |source| Agreement {
        source,
        against: "HPET",
        margin_ppm: MARGIN_FINE_PPM,
    };
    let q35_refs = "rhea: time: references: no frequency stated by CPUID; HPET at 0xfed00000 \
                    (100000 kHz, 64-bit";
    let microvm_refs = "rhea: time: references: no frequency stated by CPUID; no HPET (no ACPI \
                        HPET table); no ACPI PM timer (hardware-reduced ACPI";
    let mut auto = checked(
        "q35",
        "",
        "auto",
        "rhea.tsc_check=1",
        Agreement {
            source: "measured against the HPET",
            against: "ACPI PM timer",
            margin_ppm: MARGIN_FINE_PPM,
        },
    );
    auto.console[0] = q35_refs.to_string();
    auto.console
        .insert(1, "ACPI PM timer at port 0x608 (24-bit)".to_string());
    let mut no_hpet = checked(
        "q35",
        "hpet=off",
        "auto, hpet=off",
        "rhea.tsc_check=1",
        Agreement {
            source: "measured against the ACPI PM timer",
            against: "8254 PIT channel 2",
            margin_ppm: MARGIN_PIT_PPM,
        },
    );
    no_hpet.console[0] = "no HPET (no ACPI HPET table); ACPI PM timer at port 0x608".to_string();
    let mut microvm_pit = case("microvm", "", "pit", "rhea.tsc_ref=pit rhea.tsc_check=1");
    microvm_pit.console = vec![
        microvm_refs.to_string(),
        "rhea: time: tsc ".to_string(),
        " kHz (measured against the 8254 PIT channel 0 (read back), forced by rhea.tsc_ref); no \
         other source to cross-check against"
            .to_string(),
        "Hello from Rhea!".to_string(),
    ];
    vec![
        auto,
        checked(
            "q35",
            "",
            "hpet",
            "rhea.tsc_ref=hpet rhea.tsc_check=1",
            Agreement {
                source: "measured against the HPET, forced by rhea.tsc_ref",
                against: "ACPI PM timer",
                margin_ppm: MARGIN_FINE_PPM,
            },
        ),
        checked(
            "q35",
            "",
            "pmtimer",
            "rhea.tsc_ref=pmtimer rhea.tsc_check=1",
            hpet("measured against the ACPI PM timer, forced by rhea.tsc_ref"),
        ),
        checked(
            "q35",
            "",
            "pit",
            "rhea.tsc_ref=pit rhea.tsc_check=1",
            Agreement {
                margin_ppm: MARGIN_PIT_PPM,
                ..hpet("measured against the 8254 PIT channel 2, forced by rhea.tsc_ref")
            },
        ),
        refused(
            "q35",
            "",
            "cpuid absent",
            "rhea.tsc_ref=cpuid",
            "rhea.tsc_ref=cpuid asks for the TSC frequency stated by CPUID, but CPUID states no \
             TSC frequency on this machine",
        ),
        no_hpet,
        refused(
            "q35",
            "hpet=off",
            "hpet absent, hpet=off",
            "rhea.tsc_ref=hpet",
            "rhea.tsc_ref=hpet asks for the HPET, but there is no ACPI HPET table on this machine",
        ),
        microvm_pit,
        refused(
            "microvm",
            "",
            "pmtimer absent",
            "rhea.tsc_ref=pmtimer",
            "rhea.tsc_ref=pmtimer asks for the ACPI PM timer, but there is no ACPI PM timer on \
             this machine",
        ),
        refused(
            "microvm",
            "pit=off",
            "none, pit=off",
            "",
            "no way to measure the TSC: CPUID states no frequency, no HPET table, no ACPI PM \
             timer, and the PIT does not count",
        ),
        refused(
            "microvm",
            "pit=off",
            "pit absent, pit=off",
            "rhea.tsc_ref=pit",
            "rhea.tsc_ref=pit asks for the 8254 PIT, but the PIT does not count",
        ),
    ]
}

/// The figures of a cross-checked `rhea: time: tsc` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TscLine {
    pub(crate) khz: u64,
    /// What is in the parentheses after the frequency.
    pub(crate) source: String,
    pub(crate) measured_khz: u64,
    pub(crate) against: String,
    pub(crate) ppm: i64,
}

/// Reads `rhea: time: tsc 2600105 kHz (measured against the HPET); measured 2600123 kHz
/// against the ACPI PM timer, +6 ppm` (`boards/common-x86/src/interrupts.rs`).
pub(crate) fn parse_tsc_line(line: &str) -> Option<TscLine> {
    let rest = line.split_once("rhea: time: tsc ")?.1;
    let (khz, rest) = rest.split_once(" kHz (")?;
    let (source, rest) = rest.split_once("); measured ")?;
    let (measured_khz, rest) = rest.split_once(" kHz against the ")?;
    let (against, rest) = rest.rsplit_once(", ")?;
    let ppm = rest.strip_suffix(" ppm")?;
    Some(TscLine {
        khz: khz.parse().ok()?,
        source: source.to_string(),
        measured_khz: measured_khz.parse().ok()?,
        against: against.to_string(),
        ppm: ppm.strip_prefix('+').unwrap_or(ppm).parse().ok()?,
    })
}

/// Checks the cross-checked line against `a`.
fn check_agreement(console: &str, a: &Agreement) -> Result<TscLine, String> {
    let line = console
        .lines()
        .find(|l| l.contains("rhea: time: tsc "))
        .ok_or("console lacks the `rhea: time: tsc` line")?;
    let t = parse_tsc_line(line).ok_or_else(|| format!("cannot read {line:?}"))?;
    if t.source != a.source || t.against != a.against {
        return Err(format!(
            "expected the source {:?} cross-checked against the {}: {line:?}",
            a.source, a.against
        ));
    }
    // The printed ppm is the kernel's, from Hz; the kHz figures must say the same to within
    // their rounding.
    let from_khz = (t.measured_khz as i64 - t.khz as i64) * 1_000_000 / (t.khz.max(1) as i64);
    if (from_khz - t.ppm).abs() > 5 {
        return Err(format!("{line:?}: the kHz figures say {from_khz:+} ppm"));
    }
    if t.ppm.abs() > a.margin_ppm {
        return Err(format!(
            "the {} and the {} disagree by {:+} ppm, more than ±{} ppm: {line:?}",
            a.source, a.against, t.ppm, a.margin_ppm
        ));
    }
    Ok(t)
}

/// Whether `opts` selects these cases at all (each is then filtered by name): the board, the
/// app `hello`, and an accelerator choice that includes TCG.
pub(crate) fn wanted(opts: &Options, board_names: &[&str]) -> bool {
    board_names.contains(&BOARD)
        && opts.app.as_deref().is_none_or(|a| a == APP)
        && matches!(opts.accel, qemu::AccelChoice::Auto | qemu::AccelChoice::Tcg)
}

/// Builds `hello` for qemu-x86_64 and finds its QEMU: what every case boots.
pub(crate) fn prepare(
    ws: &Workspace,
    all_apps: &[App],
) -> Result<(qemu::Qemu, image::Image), String> {
    let board = boards::find(BOARD).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, APP).map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let qemu = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    Ok((qemu, image))
}

/// Boots `case` and judges it; on success, the cross-check's figures (if any) for the log.
pub(crate) fn run(
    (qemu, image): &(qemu::Qemu, image::Image),
    case: &Case,
    opts: &Options,
) -> Result<(Duration, Option<TscLine>), (Option<Duration>, String)> {
    let board = boards::find(BOARD).map_err(|e| (None, e.to_string()))?;
    let cmdline = crate::test::boot_cmdline(case.args, opts.append());
    let spec = Spec {
        board,
        machine: case.machine,
        accel: Accel::Tcg,
        smp: 1,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: Serial::Captured,
        append: &cmdline,
    };
    let captured = qemu::run_captured_with_properties(
        qemu,
        &spec,
        case.properties,
        Duration::from_secs(60),
        opts.verbose,
    )
    .map_err(|e| (None, e.to_string()))?;
    let took = Some(captured.elapsed);
    let console = captured.console();
    let tail = || {
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    | ");
        format!("\n    | {tail}")
    };
    let verdict = qemu::classify(&captured.end);
    crate::test::judge(case.expect, &verdict, &console, &case.console)
        .map_err(|e| (took, format!("{e}{}", tail())))?;
    if case.expect == Expect::Failure && console.contains("rhea: app main") {
        return Err((took, format!("the app started{}", tail())));
    }
    let figures = match &case.agreement {
        Some(a) => Some(check_agreement(&console, a).map_err(|e| (took, e))?),
        None => None,
    };
    Ok((captured.elapsed, figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_distinct_and_named_for_the_filter() {
        let cases = cases();
        for (i, a) in cases.iter().enumerate() {
            assert!(
                cases[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            assert!(
                a.name
                    .starts_with(&format!("qemu-x86_64/{}/tcg tsc-ref ", a.machine)),
                "{}",
                a.name
            );
            assert_eq!(
                a.agreement.is_some(),
                a.args.contains("rhea.tsc_check=1") && a.machine == "q35"
            );
        }
        // Every source forced where it is, and where it is not.
        for r in ["hpet", "pmtimer", "pit", "cpuid"] {
            let forced = format!("rhea.tsc_ref={r}");
            assert!(
                cases
                    .iter()
                    .any(|c| c.args.contains(&forced) && c.expect == Expect::Success)
                    || r == "cpuid"
            );
            assert!(
                cases
                    .iter()
                    .any(|c| c.args.contains(&forced) && c.expect == Expect::Failure),
                "{r}"
            );
        }
    }

    #[test]
    fn tsc_lines_are_read() {
        let line = "rhea: time: tsc 2600105 kHz (measured against the HPET, forced by \
                    rhea.tsc_ref); measured 2600123 kHz against the ACPI PM timer, +6 ppm";
        assert_eq!(
            parse_tsc_line(line),
            Some(TscLine {
                khz: 2_600_105,
                source: "measured against the HPET, forced by rhea.tsc_ref".to_string(),
                measured_khz: 2_600_123,
                against: "ACPI PM timer".to_string(),
                ppm: 6,
            })
        );
        let pit = "rhea: time: tsc 2601521 kHz (measured against the ACPI PM timer); measured \
                   2600871 kHz against the 8254 PIT channel 2, -249 ppm";
        let t = parse_tsc_line(pit).unwrap();
        assert_eq!((t.against.as_str(), t.ppm), ("8254 PIT channel 2", -249));
        assert_eq!(
            parse_tsc_line("rhea: time: tsc 2600000 kHz (cpuid 0x15)"),
            None
        );
    }

    #[test]
    fn agreement_is_judged() {
        let a = Agreement {
            source: "measured against the HPET",
            against: "ACPI PM timer",
            margin_ppm: MARGIN_FINE_PPM,
        };
        let ok = "rhea: time: tsc 2600000 kHz (measured against the HPET); measured 2600026 kHz \
                  against the ACPI PM timer, +10 ppm\n";
        assert!(check_agreement(ok, &a).is_ok());
        let far = "rhea: time: tsc 2600000 kHz (measured against the HPET); measured 2601300 kHz \
                   against the ACPI PM timer, +500 ppm\n";
        assert!(check_agreement(far, &a).unwrap_err().contains("+500 ppm"));
        let inconsistent = "rhea: time: tsc 2600000 kHz (measured against the HPET); measured \
                            2601300 kHz against the ACPI PM timer, +10 ppm\n";
        assert!(
            check_agreement(inconsistent, &a)
                .unwrap_err()
                .contains("kHz figures")
        );
        let other = "rhea: time: tsc 2600000 kHz (measured against the HPET); measured 2600000 \
                     kHz against the 8254 PIT channel 2, +0 ppm\n";
        assert!(check_agreement(other, &a).is_err());
        assert!(check_agreement("nothing\n", &a).is_err());
    }
}
