//! `cargo xtask bench smp [--board linuxu|qemu-x86_64] [--machine q35|microvm] [--loops N]`:
//! Rhea's `bench-smp` app with two CPUs next to the same measures by Linux
//! (`xtask/guest/xcpu_wake.c`): the wake-up of a thread on the same CPU and on the other CPU
//! (per-sample p50/p99/max), and Rhea's 1 → 2 CPU speed-up of independent CPU-bound work.
//!
//! - `linuxu` (default): both sides are ordinary SCHED_OTHER processes of this host, one after
//!   the other in the same run; Linux's threads are pinned to host CPUs 0 and 1, Rhea's two
//!   vCPUs are host threads the host places.
//! - `qemu-x86_64`: Rhea boots with `-smp 2` and the Linux guest of `bench linux-sched`
//!   (`linux_guest.rs`, `rhea.mode=xcpu`) boots with the same QEMU flags (machine, accelerator,
//!   `-smp 2`; `-m` differs) and runs `xcpu_wake` pinned to its vCPUs 0 and 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bench::Fields;
use crate::qemu::{self, Verdict};
use crate::{
    Options, Result, Workspace, apps, boards, capture, describe, fail, image, setup, usage,
};

const BOARD: &str = "linuxu";
const APP: &str = "bench-smp";
const SRC: &str = "xtask/guest/xcpu_wake.c";
const DEFAULT_LOOPS: u32 = 20_000;
const QEMU_BOARD: &str = "qemu-x86_64";
/// Under TCG every sample costs far more: fewer by default.
const QEMU_DEFAULT_LOOPS: u32 = 2_000;

/// `bench smp --board qemu-x86_64`: Rhea and a Linux guest under the same QEMU flags.
fn bench_qemu(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(QEMU_BOARD)?;
    let machine = board.machine(opts.machine.as_deref())?;
    let loops = opts.loops.unwrap_or(QEMU_DEFAULT_LOOPS);
    let super::Prepared {
        qemu, image, accel, ..
    } = super::prepare(ws, board, APP, opts)?;
    let cmdline = format!("loops={loops} {}", opts.append())
        .trim()
        .to_string();
    let spec = qemu::Spec {
        board,
        machine,
        accel,
        smp: 2,
        mem: &opts.mem,
        kernel: &image.elf,
        serial: qemu::Serial::Captured,
        append: &cmdline,
    };
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "== conditions: {}; {machine}/{} -smp 2 (multi-threaded TCG when TCG) for both; \
         {nproc} host CPUs; loops {loops}; Rhea -m {}, Linux -m {}",
        qemu.banner,
        accel.name(),
        opts.mem,
        crate::bench::linux_guest::LINUX_MEM
    );
    let timeout = Duration::from_secs(120 + u64::from(loops) / 20);
    let captured = qemu::run_captured(&qemu, &spec, None, timeout, opts.verbose)?;
    let (rhea, same, cross) = rhea_figures(&captured, &qemu::classify(&captured.end), "")?;
    println!("== Linux guest: xcpu_wake, same QEMU flags (downloads nothing once cached)");
    let (linux_same, linux_cross) = crate::bench::linux_guest::run_xcpu_baseline(
        ws,
        &qemu,
        machine,
        accel,
        2,
        loops,
        opts.verbose,
    )?;
    let (Some(linux_same), Some(linux_cross)) = (wake_of(&linux_same), wake_of(&linux_cross))
    else {
        return fail(format!(
            "cannot read the guest's figures: `{linux_same}` / `{linux_cross}`"
        ));
    };
    if linux_same.p50 <= 0.0 || linux_cross.p50 <= 0.0 {
        return fail(format!(
            "the Linux guest's figures are not usable on {machine} (p50 {} / {} ns, max {} ns: \
             its clock ticks in whole jiffies there — no TSC clocksource); Rhea's: same CPU \
             p50 {:.0} p99 {:.0} ns, other CPU p50 {:.0} p99 {:.0} ns",
            linux_same.p50,
            linux_cross.p50,
            linux_cross.max,
            same.p50,
            same.p99,
            cross.p50,
            cross.p99
        ));
    }
    println!("== wake-up latency (semaphore give -> waiter running), per sample:");
    row("same CPU", same, linux_same);
    row("other CPU", cross, linux_cross);
    if let Some((one, two, s)) = rhea.speedup {
        println!(
            "== Rhea speed-up of independent CPU-bound work: 1 CPU {one:.1} ms, 2 CPUs {two:.1} ms, {s:.2}x (ideal 2.00; bounded by the host CPUs QEMU's vCPU threads get)"
        );
    }
    println!(
        "(TCG: both guests pay QEMU's emulation and its cross-vCPU kick; compare ratios within \
         one run, on a quiet host)"
    );
    Ok(())
}

/// p50/p99/max of one wake-up measure, ns.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Wake {
    p50: f64,
    p99: f64,
    max: f64,
}

/// A wake-up measure from the `key=value` fields after a `RESULT` line's name.
fn wake_of(fields: &str) -> Option<Wake> {
    let f = Fields::parse(fields)?;
    Some(Wake {
        p50: f.get("p50_ns")?,
        p99: f.get("p99_ns")?,
        max: f.get("max_ns")?,
    })
}

/// What Rhea's app printed.
#[derive(Debug, Default, PartialEq)]
struct RheaFigures {
    cpus: Option<f64>,
    same: Option<Wake>,
    cross: Option<Wake>,
    /// (one CPU ms, two CPUs ms, speed-up)
    speedup: Option<(f64, f64, f64)>,
    done: bool,
}

/// Rhea's figures and its two wake-up measures from a finished run, or an error showing the
/// console's last lines (`hint` is appended to the reason).
fn rhea_figures(
    captured: &qemu::Captured,
    verdict: &Verdict,
    hint: &str,
) -> Result<(RheaFigures, Wake, Wake)> {
    let rhea = parse_rhea(captured.lines.iter().map(|(_, l)| l.as_str()));
    match (verdict, rhea.done, rhea.same, rhea.cross) {
        (Verdict::Success, true, Some(same), Some(cross)) => Ok((rhea, same, cross)),
        _ => {
            for (_, l) in captured.lines.iter().rev().take(30).rev() {
                println!("  | {l}");
            }
            fail(format!(
                "{APP} did not finish with all its figures ({}){hint}",
                verdict.describe()
            ))
        }
    }
}

fn parse_rhea<'a>(lines: impl Iterator<Item = &'a str>) -> RheaFigures {
    let mut f = RheaFigures::default();
    for line in lines {
        let Some(rest) = line.trim().strip_prefix("RESULT ") else {
            continue;
        };
        let (name, fields) = rest.split_once(' ').unwrap_or((rest, ""));
        match name {
            "conditions" => f.cpus = Fields::parse(fields).and_then(|x| x.get("cpus")),
            "same_cpu_wake" => f.same = wake_of(fields),
            "cross_cpu_wake" => f.cross = wake_of(fields),
            "speedup" => {
                f.speedup = Fields::parse(fields).and_then(|x| {
                    Some((
                        x.get("one_cpu_ms")?,
                        x.get("two_cpus_ms")?,
                        x.get("speedup")?,
                    ))
                });
            }
            "done" => f.done = true,
            _ => {}
        }
    }
    f
}

/// Builds the Linux baseline program into `target/bench-smp/` (rebuilt when the source is
/// newer).
fn ensure_baseline(ws: &Workspace) -> Result<PathBuf> {
    let src = ws.root.join(SRC);
    let dir = ws.root.join("target/bench-smp");
    fs::create_dir_all(&dir)
        .map_err(|e| crate::Error::Failed(format!("{}: {e}", dir.display())))?;
    let out = dir.join("xcpu_wake");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let src_time =
        mtime(&src).ok_or_else(|| crate::Error::Failed(format!("{} missing", src.display())))?;
    if mtime(&out).is_some_and(|t| t >= src_time) {
        return Ok(out);
    }
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(&src);
    println!("bench smp: $ {}", describe(&cmd));
    capture(&mut cmd).map_err(|e| {
        crate::Error::Failed(format!(
            "{e}\n(the baseline needs gcc: apt-get install gcc libc6-dev)"
        ))
    })?;
    Ok(out)
}

fn run_baseline(binary: &Path, waiter_cpu: u32, loops: u32, verbose: bool) -> Result<Wake> {
    let mut cmd = Command::new(binary);
    cmd.args(["0", &waiter_cpu.to_string(), &loops.to_string()]);
    if verbose {
        println!("$ {}", describe(&cmd));
    }
    let out = capture(&mut cmd)?;
    out.lines()
        .find_map(|l| l.strip_prefix("RESULT wake ").and_then(wake_of))
        .ok_or_else(|| {
            crate::Error::Failed(format!("`{}` printed no figure:\n{out}", describe(&cmd)))
        })
}

fn row(what: &str, rhea: Wake, linux: Wake) {
    println!(
        "  {what:<16} Rhea p50 {:>8.0} p99 {:>8.0} max {:>9.0} ns | Linux p50 {:>8.0} p99 {:>8.0} max {:>9.0} ns | ratio p50 {:.2} p99 {:.2}",
        rhea.p50,
        rhea.p99,
        rhea.max,
        linux.p50,
        linux.p99,
        linux.max,
        rhea.p50 / linux.p50,
        rhea.p99 / linux.p99
    );
}

/// `cargo xtask bench smp`.
pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    match opts.board.as_deref() {
        None | Some(BOARD) => {}
        Some(QEMU_BOARD) => return bench_qemu(ws, opts),
        Some(other) => {
            return usage(format!(
                "`bench smp` runs on boards {BOARD} and {QEMU_BOARD}, not {other}"
            ));
        }
    }
    if opts.machine.as_deref().is_some_and(|m| m != "realtime") {
        return usage("`bench smp` measures real time (machine realtime)");
    }
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    if nproc < 2 {
        return fail("`bench smp` needs a host with at least two CPUs");
    }
    let loops = opts.loops.unwrap_or(DEFAULT_LOOPS);
    let board = boards::find(BOARD)?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    setup::ensure_toolchain(ws, board)?;
    let image = image::build(ws, board, app)?;
    let baseline = ensure_baseline(ws)?;

    let cmdline = format!("rhea.cpus=2 loops={loops} {}", opts.append())
        .trim()
        .to_string();
    let timeout = Duration::from_secs(60 + u64::from(loops) / 100);
    println!(
        "== conditions: {nproc} host CPUs, loops {loops}, both sides SCHED_OTHER processes \
         (Linux's threads pinned to host CPUs 0 and 1); Rhea arguments {cmdline:?}"
    );
    let captured =
        qemu::run_process_captured(&image.elf, &cmdline, None, timeout, opts.verbose, None)?;
    let (rhea, same, cross) = rhea_figures(
        &captured,
        &qemu::classify_process(&captured.end),
        "; is `rhea.cpus=2` honoured?",
    )?;
    let linux_same = run_baseline(&baseline, 0, loops, opts.verbose)?;
    let linux_cross = run_baseline(&baseline, 1, loops, opts.verbose)?;
    println!("== wake-up latency (semaphore give -> waiter running), per sample:");
    row("same CPU", same, linux_same);
    row("other CPU", cross, linux_cross);
    if let Some((one, two, s)) = rhea.speedup {
        println!(
            "== Rhea speed-up of independent CPU-bound work: 1 CPU {one:.1} ms, 2 CPUs {two:.1} ms, {s:.2}x (ideal 2.00)"
        );
    }
    println!(
        "(noisy on a shared host: compare ratios within one run; LinuxU vCPUs are host threads, \
         so a descheduled vCPU shows in Rhea's tail)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_apps_output() {
        let out = "rhea: app main\n\
                   RESULT conditions tsc_hz=2600000000 loops=300 cpus=2\n\
                   RESULT same_cpu_wake p50_ns=752 p99_ns=780 max_ns=61149 samples=300\n\
                   RESULT cross_cpu_wake p50_ns=37172 p99_ns=64759 max_ns=3983838 samples=300 ratio_p50=4.91\n\
                   RESULT speedup one_cpu_ms=118.7 two_cpus_ms=60.1 speedup=1.97\n\
                   RESULT done";
        let f = parse_rhea(out.lines());
        assert_eq!(f.cpus, Some(2.0));
        assert_eq!(
            f.same,
            Some(Wake {
                p50: 752.0,
                p99: 780.0,
                max: 61149.0
            })
        );
        assert_eq!(f.cross.map(|w| w.p99), Some(64759.0));
        assert_eq!(f.speedup, Some((118.7, 60.1, 1.97)));
        assert!(f.done);
    }

    #[test]
    fn one_cpu_output_has_no_cross_figures() {
        let out = "RESULT same_cpu_wake p50_ns=1 p99_ns=2 max_ns=3 samples=3\n\
                   RESULT cross_cpu_wake skipped: one CPU online\nRESULT done";
        let f = parse_rhea(out.lines());
        assert!(f.same.is_some());
        assert_eq!(f.cross, None);
        assert_eq!(f.speedup, None);
    }
}
