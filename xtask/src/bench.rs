//! `cargo xtask bench <name>`: benchmarks: `boot` (below) and `linux-sched` (the Linux guest
//! baseline, in `linux_guest.rs`).
//!
//! `bench boot` builds `hello` for qemu-x86_64, reports its stripped image size, and boots it
//! [`RUNS`] times per machine and accelerator (TCG, plus KVM when usable), reporting the
//! median/min/max of:
//!
//! * the wall time from QEMU spawn until the console line containing `rhea: app main`
//!   appears (measured here with `Instant`), and
//! * the guest's own figure, from its line `rhea: boot entry->main <cycles> cycles, <ns> ns`
//!   (`<ns>` may be `unknown` when the TSC frequency is unknown).
//!
//! Reference anchors from earlier measurements are printed next to the figures, clearly
//! labelled as not measured in this run, with the Rhea/anchor ratios.

use std::time::Duration;

use crate::qemu::{self, Accel, Verdict};
use crate::{Error, Options, Result, Workspace, apps, boards, image, linux_guest, setup, usage};

/// The available benches, with a description each.
const BENCHES: &[(&str, &str)] = &[
    (
        "boot",
        "hello on qemu-x86_64: stripped image size and boot time per machine/accel",
    ),
    (
        "linux-sched",
        "Linux guest baseline: yield/semaphore switch and cyclictest latency (q35 default)",
    ),
];

/// Boots per machine and accelerator.
pub(crate) const RUNS: usize = 10;
const BOARD: &str = "qemu-x86_64";
const APP: &str = "hello";
const MAIN_MARKER: &str = "rhea: app main";
const BOOT_MARKER: &str = "rhea: boot entry->main ";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Reference anchor (not measured by this bench): Unikraft hello image size, bytes.
const ANCHOR_UNIKRAFT_IMAGE_BYTES: u64 = 246_536;
/// Reference anchor: Unikraft QEMU start → "Hello world!", TCG on q35, seconds (measured on
/// these machines earlier).
const ANCHOR_UNIKRAFT_BOOT_SECS: f64 = 0.34;
/// Reference anchor: Linux guest QEMU start → /init, TCG on q35, seconds (from notes).
const ANCHOR_LINUX_BOOT_SECS: f64 = 4.6;

pub(crate) fn run(ws: &Workspace, name: Option<&str>, opts: &Options) -> Result<()> {
    match name {
        None => {
            println!("available benches:");
            for (name, what) in BENCHES {
                println!("  cargo xtask bench {name:<11} {what}");
            }
            Ok(())
        }
        Some("boot") => boot(ws, opts),
        Some("linux-sched") => linux_guest::bench(ws, opts),
        Some(other) => {
            let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
            usage(format!(
                "unknown bench `{other}`; available benches: {}",
                names.join(", ")
            ))
        }
    }
}

/// Parses `rhea: boot entry->main <cycles> cycles, <ns> ns` into (cycles, ns).
pub(crate) fn parse_boot_line(line: &str) -> Option<(u64, Option<u64>)> {
    let rest = line.split_once(BOOT_MARKER)?.1;
    let mut words = rest.split_whitespace();
    let cycles = words.next()?.parse().ok()?;
    if words.next()?.trim_end_matches(',') != "cycles" {
        return None;
    }
    let ns = match words.next()? {
        "unknown" => None,
        n => Some(n.parse().ok()?),
    };
    Some((cycles, ns))
}

/// Median, min and max (the median of an even count is the mean of the middle two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// `246536` -> `246,536`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The host CPU model from `/proc/cpuinfo`.
fn host_cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// One machine/accel row of results.
#[derive(Debug)]
struct Row {
    machine: &'static str,
    accel: Accel,
    wall: Option<Stats>,
}

fn boot(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(BOARD)?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    let machines = board.machines_to_test(opts.machine.as_deref())?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let hw_kvm = qemu::probe_hardware_kvm();
    let accels = qemu::accels_to_test(opts.accel, &hw_kvm);

    println!();
    println!("== bench boot: app {APP}, board {BOARD}, {RUNS} runs per machine/accel");
    println!("conditions:");
    println!("  QEMU:       {}", qemu.banner);
    println!("  host CPU:   {}", host_cpu_model());
    println!(
        "  host nproc: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  guest:      -smp {} -m {}", opts.smp, opts.mem);
    match &hw_kvm {
        Ok(()) => println!("  KVM:        hardware KVM usable"),
        Err(why) => println!("  KVM:        not used ({why})"),
    }
    println!(
        "image size (stripped): {} B  ({})",
        thousands(image.stripped_size),
        image.stripped.display()
    );

    let mut rows = Vec::new();
    let mut failures = 0;
    for machine in &machines {
        for accel in &accels {
            let cpu = match accel {
                Accel::Kvm => "host",
                Accel::Tcg => "max",
            };
            println!();
            println!(
                "{machine}/{} (machine {machine}, accel {}, -cpu {cpu}):",
                accel.name(),
                accel.name()
            );
            let spec = qemu::Spec {
                board,
                machine,
                accel: *accel,
                smp: opts.smp,
                mem: &opts.mem,
                kernel: &image.elf,
                serial: qemu::Serial::Captured,
            };
            let mut wall = Vec::new();
            let mut cycles = Vec::new();
            let mut nanos = Vec::new();
            let mut ns_unknown = 0;
            for run in 1..=RUNS {
                let captured = qemu::run_captured(&qemu, &spec, TIMEOUT, opts.verbose)?;
                let verdict = qemu::classify(&captured.end);
                let problem = match (&verdict, captured.time_of(MAIN_MARKER)) {
                    (Verdict::Success, Some(t)) => {
                        wall.push(t.as_secs_f64());
                        None
                    }
                    (Verdict::Success, None) => {
                        Some(format!("no console line containing {MAIN_MARKER:?}"))
                    }
                    (other, _) => Some(other.describe()),
                };
                if let Some(problem) = problem {
                    failures += 1;
                    println!("  run {run}: FAILED: {problem}");
                    continue;
                }
                match captured.lines.iter().find_map(|(_, l)| parse_boot_line(l)) {
                    Some((c, ns)) => {
                        cycles.push(c as f64);
                        match ns {
                            Some(ns) => nanos.push(ns as f64),
                            None => ns_unknown += 1,
                        }
                    }
                    None => println!("  run {run}: no `{}` line", BOOT_MARKER.trim_end()),
                }
            }
            let wall_stats = stats(&wall);
            match wall_stats {
                Some(s) => println!(
                    "  wall, QEMU spawn -> {MAIN_MARKER:?}: median {:.3} s, min {:.3} s, max {:.3} s ({} runs)",
                    s.median,
                    s.min,
                    s.max,
                    wall.len()
                ),
                None => println!("  wall: no successful run"),
            }
            if let Some(s) = stats(&cycles) {
                println!(
                    "  guest entry->main: median {:.0} cycles, min {:.0}, max {:.0}",
                    s.median, s.min, s.max
                );
            }
            match stats(&nanos) {
                Some(s) => println!(
                    "  guest entry->main: median {:.3} ms, min {:.3} ms, max {:.3} ms",
                    s.median / 1e6,
                    s.min / 1e6,
                    s.max / 1e6
                ),
                None if ns_unknown > 0 => {
                    println!(
                        "  guest entry->main time: unknown (guest does not know its TSC frequency)"
                    );
                }
                None => {}
            }
            rows.push(Row {
                machine,
                accel: *accel,
                wall: wall_stats,
            });
        }
    }

    println!();
    println!(
        "reference anchors (NOT measured in this run; figures recorded earlier, for comparison only):"
    );
    println!(
        "  Unikraft hello image size:                        {:>9} B  (measured on these machines earlier)",
        thousands(ANCHOR_UNIKRAFT_IMAGE_BYTES)
    );
    println!(
        "  Unikraft QEMU start -> \"Hello world!\" (TCG, q35): {ANCHOR_UNIKRAFT_BOOT_SECS:>9} s  \
         (measured on these machines earlier)"
    );
    println!(
        "  Linux guest QEMU start -> /init (TCG, q35):       {ANCHOR_LINUX_BOOT_SECS:>9} s  (from notes)"
    );
    println!("ratios, Rhea (this run) / anchor:");
    println!(
        "  image size: {} B / {} B = {:.3}",
        thousands(image.stripped_size),
        thousands(ANCHOR_UNIKRAFT_IMAGE_BYTES),
        image.stripped_size as f64 / ANCHOR_UNIKRAFT_IMAGE_BYTES as f64
    );
    for row in &rows {
        if let Some(s) = row.wall {
            println!(
                "  boot {}/{}: median {:.3} s / Unikraft {ANCHOR_UNIKRAFT_BOOT_SECS} s = {:.2}, \
                 / Linux {ANCHOR_LINUX_BOOT_SECS} s = {:.3}",
                row.machine,
                row.accel.name(),
                s.median,
                s.median / ANCHOR_UNIKRAFT_BOOT_SECS,
                s.median / ANCHOR_LINUX_BOOT_SECS
            );
        }
    }
    if failures > 0 {
        eprintln!("bench boot: {failures} run(s) failed");
        return Err(Error::Quiet(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_lines() {
        assert_eq!(
            parse_boot_line("rhea: boot entry->main 123456 cycles, 51234 ns"),
            Some((123_456, Some(51_234)))
        );
        assert_eq!(
            parse_boot_line("[0.1] rhea: boot entry->main 99 cycles, unknown ns"),
            Some((99, None))
        );
        assert_eq!(parse_boot_line("rhea: app main"), None);
        assert_eq!(
            parse_boot_line("rhea: boot entry->main x cycles, 1 ns"),
            None
        );
        assert_eq!(
            parse_boot_line("rhea: boot entry->main 5 ticks, 1 ns"),
            None
        );
        assert_eq!(parse_boot_line("rhea: boot entry->main 5 cycles,"), None);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(246_536), "246,536");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[]), None);
        let s = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = stats(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
    }
}
