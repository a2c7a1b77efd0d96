//! `cargo xtask bench rtos --board linuxu`: a Thread-Metric-style RTOS benchmark, Rhea next
//! to a POSIX implementation of the same tests, natively on the same host in the same run.
//!
//! ```text
//! cargo xtask bench rtos --board linuxu [--periods N] [--period-ms M] [--verbose]
//! ```
//!
//! Each test counts operations for N periods of M ms (defaults 5 and 200) and prints
//! `RESULT rtos <test> <median> <min> <max>` in operations per period; the table shows the
//! medians and the ratio Rhea ÷ POSIX (**higher is better** for Rhea). The tests — the same on
//! both sides, described in full in `apps/bench-rtos/src/main.rs` and `xtask/guest/rtos.c`:
//!
//! | test          | one operation                                                           |
//! |---------------|-------------------------------------------------------------------------|
//! | `basic`       | 32 rounds of a serial xor-shift-multiply on a u32 (CPU calibration)     |
//! | `coop`        | one of 5 equal-priority threads: counter++ then yield                   |
//! | `preempt`     | one cycle of a 5-thread chain of rising priority woken by semaphores    |
//! | `irq`         | one self-raised interrupt (Rhea: a vector; POSIX: SIGUSR1) counted      |
//! | `irq_preempt` | the handler gives a semaphore; one wake-up of a higher-priority thread  |
//! | `msg`         | one 16-byte send + receive (Rhea `MessageQueue`; POSIX mq or a pipe)    |
//! | `sem`         | one take + give of an uncontended semaphore (`Semaphore`; `sem_t`)      |
//! | `alloc`       | one 128-byte allocation + free (`Vec::with_capacity`; `malloc`/`free`)  |
//! | `pool`        | one 128-byte block from a pool of 16 + back (`BlockPool`; a free list   |
//! |               | under a `pthread_mutex_t`, as POSIX has no block pool)                  |
//!
//! One after the other, both pinned to CPU 0 (`taskset -c 0`) and, when xtask runs as root
//! and `chrt` exists, both started as `chrt -f 50` (SCHED_FIFO 50); the conditions say which:
//!
//! 1. **Rhea**: `apps/bench-rtos` built for `linuxu`, a process with the arguments
//!    `periods=N period_ms=M` (LinuxU runs its threads on one vCPU thread);
//! 2. **POSIX**: `xtask/guest/rtos.c`, built here with the host's gcc (`-O2 -static
//!    -pthread`, into `target/bench-rtos/`), with its threads at SCHED_FIFO priorities
//!    mirroring Rhea's when permitted (else SCHED_OTHER, printed).
//!
//! The conditions: host CPU model (`/proc/cpuinfo`), `/proc/loadavg` before and after,
//! pinning, policy, the POSIX side's message transport. A benchmark, not a test: it fails
//! only when a side does not run or prints no figures, never on the figures themselves.
//!
//! LinuxU only in this step: QEMU q35 and Arm virt under TCG (next to a Linux guest running
//! `rtos.c` under the same QEMU flags) are still to come.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::qemu::{self, Captured, Verdict};
use crate::{
    Context, Error, Options, Result, Workspace, apps, bench, boards, capture, describe, fail,
    image, setup, usage,
};

/// The board of this step.
const BOARD: &str = "linuxu";
/// The Rhea app.
const APP: &str = "bench-rtos";
/// The POSIX side's source.
const SRC: &str = "xtask/guest/rtos.c";
/// The CPU both sides run on.
const CPU: &str = "0";
/// The SCHED_FIFO priority both processes start at (as root).
const FIFO_PRIORITY: &str = "50";
/// The tests, in the order both sides run them.
const TESTS: [&str; 9] = [
    "basic",
    "coop",
    "preempt",
    "irq",
    "irq_preempt",
    "msg",
    "sem",
    "alloc",
    "pool",
];
const DEFAULT_PERIODS: u32 = 5;
const DEFAULT_PERIOD_MS: u32 = 200;

/// One side's figures: per test (median, min, max) ops per period, or why it is missing.
#[derive(Debug, Default)]
struct Figures {
    tests: BTreeMap<String, Result<(u64, u64, u64), String>>,
    /// `RESULT conditions ...` without the prefix.
    conditions: Option<String>,
    done: bool,
}

/// Parses `RESULT rtos <test> <median> <min> <max>` (or `RESULT rtos <test> skipped: why`),
/// `RESULT conditions ...` and `RESULT done`.
fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Figures {
    let mut f = Figures::default();
    for line in lines {
        let Some(rest) = line.trim().strip_prefix("RESULT ") else {
            continue;
        };
        if rest == "done" {
            f.done = true;
        } else if let Some(c) = rest.strip_prefix("conditions ") {
            f.conditions = Some(c.to_string());
        } else if let Some(r) = rest.strip_prefix("rtos ") {
            let mut words = r.split_whitespace();
            let Some(test) = words.next() else { continue };
            let nums: Vec<u64> = words.clone().filter_map(|w| w.parse().ok()).collect();
            let value = match nums[..] {
                [med, min, max] => Ok((med, min, max)),
                _ => Err(words.collect::<Vec<_>>().join(" ")),
            };
            f.tests
                .insert(test.trim_end_matches(':').to_string(), value);
        }
    }
    f
}

/// `taskset -c 0`, then `chrt -f 50` when root and chrt exist; and the description.
fn launcher() -> (Vec<String>, String) {
    let mut prefix = vec!["-c".to_string(), CPU.to_string()];
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .is_some_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
                .unwrap_or(false)
        });
    let chrt = Command::new("chrt").arg("--version").output().is_ok();
    let policy = if root && chrt {
        prefix.extend(["chrt", "-f", FIFO_PRIORITY].map(String::from));
        format!("both started SCHED_FIFO {FIFO_PRIORITY} (chrt -f {FIFO_PRIORITY})")
    } else {
        let why = if root { "no chrt" } else { "not root" };
        format!("both started with xtask's policy ({why}: no chrt -f)")
    };
    (prefix, policy)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Builds `rtos.c` statically with the host's gcc when the source is newer than the binary.
fn ensure_posix(ws: &Workspace) -> Result<PathBuf> {
    let dir = ws.root.join("target").join("bench-rtos");
    fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
    let src = ws.root.join(SRC);
    let out = dir.join("rtos");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let src_time =
        mtime(&src).ok_or_else(|| Error::Failed(format!("{} missing", src.display())))?;
    if mtime(&out).is_some_and(|t| t >= src_time) {
        return Ok(out);
    }
    let tmp = dir.join("rtos.tmp");
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-static", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(&tmp)
        .arg(&src);
    println!("$ {}", describe(&cmd));
    capture(&mut cmd).map_err(|e| {
        Error::Failed(format!(
            "{e}\n(rtos.c needs gcc and the static C library: apt-get install gcc libc6-dev)"
        ))
    })?;
    fs::rename(&tmp, &out).context(|| format!("cannot rename to {}", out.display()))?;
    Ok(out)
}

/// Runs `program args` under the launcher prefix; fails unless it exits 0 with `RESULT done`.
fn run_side(
    side: &str,
    program: &Path,
    args: &str,
    prefix: &[String],
    timeout: Duration,
    verbose: bool,
) -> Result<Figures> {
    let program_text = program.display().to_string();
    if program_text.contains(char::is_whitespace) {
        return fail(format!(
            "{side}: the path {program_text:?} contains white space"
        ));
    }
    let cmdline = format!("{} {program_text} {args}", prefix.join(" "));
    println!("== {side}: taskset {cmdline}");
    let captured: Captured =
        qemu::run_process_captured(Path::new("taskset"), &cmdline, None, timeout, verbose, None)?;
    let figures = parse(captured.lines.iter().map(|(_, l)| l.as_str()));
    let verdict = qemu::classify_process(&captured.end);
    if verdict != Verdict::Success || !figures.done {
        let tail: Vec<&str> = captured.lines.iter().map(|(_, l)| l.as_str()).collect();
        let start = tail.len().saturating_sub(30);
        println!("--- last lines ---\n{}", tail[start..].join("\n"));
        if !captured.stderr.trim().is_empty() {
            println!("--- stderr ---\n{}", captured.stderr.trim_end());
        }
        let why = match verdict {
            Verdict::Success => "no `RESULT done` line".to_string(),
            other => other.describe(),
        };
        return fail(format!("{side} did not finish ({why})"));
    }
    println!("{side} done in {:.1} s", captured.elapsed.as_secs_f64());
    Ok(figures)
}

fn cell(f: &Figures, test: &str) -> String {
    match f.tests.get(test) {
        Some(Ok((med, min, max))) => format!("{med} ({min}..{max})"),
        Some(Err(why)) => why.clone(),
        None => "missing".to_string(),
    }
}

/// Rhea ÷ POSIX of the medians, when both are there and POSIX's is not 0.
fn ratio(rhea: &Figures, posix: &Figures, test: &str) -> String {
    match (rhea.tests.get(test), posix.tests.get(test)) {
        (Some(Ok((r, _, _))), Some(Ok((p, _, _)))) if *p > 0 => {
            format!("{:.2}", *r as f64 / *p as f64)
        }
        _ => "-".to_string(),
    }
}

fn table(rhea: &Figures, posix: &Figures) -> String {
    let rows: Vec<[String; 4]> = TESTS
        .iter()
        .map(|t| {
            [
                t.to_string(),
                cell(rhea, t),
                cell(posix, t),
                ratio(rhea, posix, t),
            ]
        })
        .collect();
    let head = [
        "test",
        "Rhea ops/period (min..max)",
        "POSIX ops/period (min..max)",
        "Rhea/POSIX",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |c: [&str; 4]| {
        format!(
            "{:<w0$} | {:>w1$} | {:>w2$} | {:>w3$}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    let mut out = line(head);
    out.push_str(&format!(
        "{}-+-{}-+-{}-+-{}\n",
        "-".repeat(w[0]),
        "-".repeat(w[1]),
        "-".repeat(w[2]),
        "-".repeat(w[3])
    ));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

/// `cargo xtask bench rtos`.
pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    if opts.board_name() != BOARD {
        return usage(format!(
            "`bench rtos` on {}: not yet: LinuxU only in this step (--board {BOARD}); \
             QEMU q35 and Arm virt are to come",
            opts.board_name()
        ));
    }
    let defaults = Options::default();
    if opts.accel != defaults.accel
        || opts.smp != defaults.smp
        || opts.mem != defaults.mem
        || opts.machine.is_some()
        || opts.loops.is_some()
        || opts.append.is_some()
    {
        return usage(
            "`bench rtos --board linuxu` takes --periods, --period-ms and --verbose only",
        );
    }
    let periods = opts.periods.unwrap_or(DEFAULT_PERIODS);
    let period_ms = opts.period_ms.unwrap_or(DEFAULT_PERIOD_MS);
    let args = format!("periods={periods} period_ms={period_ms}");
    // The tests of `periods` periods each, plus start-up and slack.
    let timeout =
        Duration::from_millis(u64::from(periods) * u64::from(period_ms) * TESTS.len() as u64)
            + Duration::from_secs(60);

    let board = boards::find(BOARD)?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    setup::ensure_toolchain(ws, board)?;
    let image = image::build(ws, board, app)?;
    let posix_bin = ensure_posix(ws)?;
    let (prefix, policy) = launcher();

    let load_before = loadavg();
    let rhea = run_side("Rhea", &image.elf, &args, &prefix, timeout, opts.verbose)?;
    let posix = run_side("POSIX", &posix_bin, &args, &prefix, timeout, opts.verbose)?;
    let load_after = loadavg();

    println!();
    println!(
        "== bench rtos: Rhea on LinuxU vs POSIX, natively on the same host, {periods} periods \
         of {period_ms} ms per test"
    );
    println!("conditions:");
    println!(
        "  host:       {}, nproc {}",
        bench::host_cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  load:       {load_before} before, {load_after} after (/proc/loadavg, 1/5/15 min)");
    println!("  pinning:    both pinned to CPU {CPU} (taskset -c {CPU})");
    println!("  policy:     {policy}");
    let rt = |f: &str| {
        fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map_or("unknown".to_string(), |s| s.trim().to_string())
    };
    println!(
        "              RT throttling: sched_rt_runtime_us {} per sched_rt_period_us {} (a \
         SCHED_FIFO process busy for a whole period loses the rest: expect a low min)",
        rt("sched_rt_runtime_us"),
        rt("sched_rt_period_us")
    );
    println!(
        "  Rhea:       {}, {APP} for {BOARD} (one vCPU), {}",
        bench::rhea_version(ws),
        rhea.conditions.as_deref().unwrap_or("no conditions line")
    );
    println!(
        "  POSIX:      {SRC} (gcc -O2 -static -pthread), {}",
        posix.conditions.as_deref().unwrap_or("no conditions line")
    );
    println!(
        "               (policy=fifo: threads at SCHED_FIFO priorities mirroring Rhea's; \
         other: SCHED_OTHER, SCHED_FIFO refused)"
    );
    println!("  figures:    median ops per period (min..max over the periods); higher is better");
    println!();
    print!("{}", table(&rhea, &posix));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_tabulates() {
        let rhea = parse([
            "rhea: boot",
            "RESULT conditions tsc_hz=1 periods=5",
            "RESULT rtos basic 100 90 110",
            "RESULT rtos irq skipped: no vector (x)",
            "RESULT done",
        ]);
        assert!(rhea.done);
        assert_eq!(rhea.conditions.as_deref(), Some("tsc_hz=1 periods=5"));
        assert_eq!(rhea.tests["basic"], Ok((100, 90, 110)));
        assert!(rhea.tests["irq"].is_err());
        let posix = parse(["RESULT rtos basic 50 40 60", "RESULT rtos irq 0 0 0"]);
        assert!(!posix.done);
        assert_eq!(ratio(&rhea, &posix, "basic"), "2.00");
        assert_eq!(ratio(&rhea, &posix, "irq"), "-");
        assert_eq!(ratio(&rhea, &posix, "coop"), "-");
        let t = table(&rhea, &posix);
        assert!(t.contains("100 (90..110)"), "{t}");
        assert!(t.contains("skipped: no vector (x)"), "{t}");
        assert_eq!(t.lines().count(), 2 + TESTS.len());
    }
}
