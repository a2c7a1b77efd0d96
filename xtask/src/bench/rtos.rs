//! `cargo xtask bench rtos`: a Thread-Metric-style RTOS benchmark, Rhea next to a POSIX
//! implementation of the same tests, in the same run: natively on the same host for LinuxU,
//! inside the Linux guest of `bench sched` under the same QEMU flags for the QEMU boards.
//!
//! ```text
//! cargo xtask bench rtos --board linuxu [--periods N] [--period-ms M] [--verbose]
//! cargo xtask bench rtos [--board qemu-x86_64|qemu-aarch64] [--machine M] [--mem SIZE]
//!                        [--periods N] [--period-ms M] [--verbose]
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
//! | `mutex`       | one lock + unlock of an uncontended mutex (`Mutex`; a priority-         |
//! |               | inheriting `pthread_mutex_t`)                                           |
//! | `events`      | one set + satisfied wait-and-clear of a flag (`EventFlags`; a flag word |
//! |               | under a `pthread_mutex_t` with a `pthread_cond_t`, as POSIX has none)   |
//! | `alloc`       | one 128-byte allocation + free (`Vec::with_capacity`; `malloc`/`free`)  |
//! | `pool`        | one 128-byte block from a pool of 16 + back (`BlockPool`; a free list   |
//! |               | under a `pthread_mutex_t`, as POSIX has no block pool)                  |
//!
//! **LinuxU** (`--board linuxu`): one after the other, both pinned to CPU 0 (`taskset -c 0`)
//! and, when xtask runs as root and `chrt` exists, both started as `chrt -f 50` (SCHED_FIFO
//! 50); the conditions say which:
//!
//! 1. **Rhea**: `apps/bench-rtos` built for `linuxu`, a process with the arguments
//!    `periods=N period_ms=M` (LinuxU runs its threads on one vCPU thread);
//! 2. **POSIX**: `xtask/guest/rtos.c`, built here with the host's gcc (`-O2 -static
//!    -pthread`, into `target/bench-rtos/`), with its threads at SCHED_FIFO priorities
//!    mirroring Rhea's when permitted (else SCHED_OTHER, printed).
//!
//! The conditions: host CPU model (`/proc/cpuinfo`), `/proc/loadavg` before and after,
//! pinning, policy, the POSIX side's message transport.
//!
//! **QEMU** (`--board qemu-x86_64`, the default, machine q35 or microvm; `--board
//! qemu-aarch64`, machine virt-gicv3 or virt-gicv2): always TCG, one vCPU, and the same `-m`
//! for both sides (`--mem`, default the Linux guest's 256M: Linux needs more than Rhea's
//! default 128M), one after the other:
//!
//! 1. **Rhea**: `apps/bench-rtos` built for the board, booted with `-append "periods=N
//!    period_ms=M"`. Its `irq` raises a real interrupt through the interrupt controller
//!    (`rhea::irq::raise_self`: an IPI to its own local APIC on q35, an SGI to its own CPU on
//!    the GIC);
//! 2. **Linux**: the guest of `bench sched` (`linux_guest.rs`: Debian's cloud kernel on
//!    x86_64; on aarch64 Debian's arm64 kernel with busybox) with `rtos.c` built statically
//!    (`gcc`, or `aarch64-linux-gnu-gcc`, installed with apt-get when missing and root) in its
//!    initramfs, booted with exactly Rhea's QEMU flags plus `-initrd` and `-append`; `/init`
//!    runs it as root with RT throttling off (`rhea.mode=rtos`), so its threads get SCHED_FIFO
//!    (its conditions line says `policy=fifo`, or `other` if refused). Its `irq` is a signal
//!    (SIGUSR1 to itself): a program has no interrupt of its own to raise. The arm64 guest
//!    boots with `nokaslr` (`linux_guest::ARM64_RTOS_APPEND`: KASLR forces KPTI there, which
//!    TCG makes very costly; the x86_64 guest has no page-table isolation either).
//!
//! The conditions: QEMU's version, both full QEMU command lines, host CPU, `/proc/loadavg`
//! before and after, the Linux kernel, its preemption model and clocksource, the compiler,
//! both conditions lines. Under TCG the guests' clocks follow the host's, so the absolute
//! figures are emulation speed; the ratios in the same run are what compare. A benchmark, not
//! a test: it fails only when a side does not run or prints no figures, never on the figures
//! themselves.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bench::linux_guest;
use crate::qemu::{self, Accel, AccelChoice, Captured, Verdict};
use crate::{
    Context, Error, Options, Result, Workspace, apps, bench, boards, capture, describe, fail,
    image, setup, usage,
};

/// The board of this step.
const BOARD: &str = "linuxu";
/// The QEMU boards, each next to the Linux guest of `bench sched` under the same flags.
const QEMU_BOARDS: [&str; 2] = ["qemu-x86_64", "qemu-aarch64"];
/// The Rhea app.
const APP: &str = "bench-rtos";
/// The POSIX side's source.
const SRC: &str = "xtask/guest/rtos.c";
/// The CPU both sides run on.
const CPU: &str = "0";
/// The SCHED_FIFO priority both processes start at (as root).
const FIFO_PRIORITY: &str = "50";
/// The tests, in the order both sides run them.
const TESTS: [&str; 11] = [
    "basic",
    "coop",
    "preempt",
    "irq",
    "irq_preempt",
    "msg",
    "sem",
    "mutex",
    "events",
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

/// The ratios divided by `basic`'s: what each side did per unit of the CPU it got. Under TCG
/// the two runs may get different shares of a loaded host (the other programs, or the
/// compilers, may favour one); `basic` measures that share. `None` without `basic` figures.
fn normalised(rhea: &Figures, posix: &Figures) -> Option<String> {
    let value = |f: &Figures, t: &str| match f.tests.get(t) {
        Some(Ok((med, _, _))) if *med > 0 => Some(*med as f64),
        _ => None,
    };
    let basic = value(rhea, "basic")? / value(posix, "basic")?;
    let parts: Vec<String> = TESTS[1..]
        .iter()
        .map(|t| match (value(rhea, t), value(posix, t)) {
            (Some(r), Some(p)) => format!("{t} {:.2}", r / p / basic),
            _ => format!("{t} -"),
        })
        .collect();
    Some(format!(
        "ratios ÷ basic's {basic:.2} (per unit of the CPU each side got): {}",
        parts.join(", ")
    ))
}

/// The table; `other` names the comparison side in the header (`POSIX`, `Linux guest POSIX`).
fn table(rhea: &Figures, posix: &Figures, other: &str) -> String {
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
    let other_head = format!("{other} ops/period (min..max)");
    let ratio_head = if other == "POSIX" {
        "Rhea/POSIX"
    } else {
        "Rhea/Linux"
    };
    let head = [
        "test",
        "Rhea ops/period (min..max)",
        other_head.as_str(),
        ratio_head,
    ];
    let mut w = head.map(|h| h.chars().count());
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

/// `cargo xtask bench rtos`: LinuxU against the host, or a QEMU board against the Linux
/// guest.
pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    match opts.board_name() {
        BOARD => bench_linuxu(ws, opts),
        name if QEMU_BOARDS.contains(&name) => bench_qemu(ws, opts, boards::find(name)?),
        other => usage(format!(
            "`bench rtos` runs on boards {BOARD}, {}, not {other}",
            QEMU_BOARDS.join(", ")
        )),
    }
}

/// The timeout of one side: the tests of `periods` periods each, plus `slack`.
fn side_timeout(periods: u32, period_ms: u32, slack: Duration) -> Duration {
    Duration::from_millis(u64::from(periods) * u64::from(period_ms) * TESTS.len() as u64) + slack
}

/// The lines of a failed side, for the reader.
fn show_tail(lines: &[&str], stderr: &str) {
    let start = lines.len().saturating_sub(30);
    println!("--- last lines ---\n{}", lines[start..].join("\n"));
    if !stderr.trim().is_empty() {
        println!("--- stderr ---\n{}", stderr.trim_end());
    }
}

fn bench_linuxu(ws: &Workspace, opts: &Options) -> Result<()> {
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
    let timeout = side_timeout(periods, period_ms, Duration::from_secs(60));

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
    print!("{}", table(&rhea, &posix, "POSIX"));
    if let Some(line) = normalised(&rhea, &posix) {
        println!("{line}");
    }
    Ok(())
}

/// `cargo xtask bench rtos --board qemu-x86_64|qemu-aarch64`: Rhea under TCG, then the Linux
/// guest running `rtos.c` under the same QEMU flags, in the same run.
fn bench_qemu(ws: &Workspace, opts: &Options, board: &'static boards::Board) -> Result<()> {
    check_qemu_options(opts, board)?;
    let machine = board.machine(opts.machine.as_deref())?;
    // Linux needs more than Rhea's default; both sides get the same -m.
    let mem = if opts.mem == Options::default().mem {
        linux_guest::LINUX_MEM
    } else {
        opts.mem.as_str()
    };
    let periods = opts.periods.unwrap_or(DEFAULT_PERIODS);
    let period_ms = opts.period_ms.unwrap_or(DEFAULT_PERIOD_MS);
    let args = format!("periods={periods} period_ms={period_ms}");

    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, APP)?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let guest = linux_guest::rtos_guest(ws, board)?;
    let spec = qemu::Spec {
        board,
        machine,
        accel: Accel::Tcg,
        smp: 1,
        mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &args,
    };
    let rhea_command = describe(&qemu::command(&qemu, &spec)?);

    let load_before = loadavg();
    let (rhea, rhea_wall) = rtos_rhea(&qemu, &spec, (periods, period_ms), opts.verbose)?;
    println!("== Linux guest: {SRC} on {}/{machine}/tcg", board.name);
    let run = guest.run(
        &qemu,
        machine,
        mem,
        (periods, period_ms),
        side_timeout(periods, period_ms, Duration::from_secs(300)),
        opts.verbose,
    )?;
    let linux_lines: Vec<&str> = run.lines.iter().map(String::as_str).collect();
    let linux = parse(linux_lines.iter().copied());
    if !linux.done {
        show_tail(&linux_lines, &run.stderr);
        return fail(format!(
            "the Linux guest's rtos did not finish (QEMU {}; no `RESULT done` line)",
            run.end.describe()
        ));
    }
    println!("Linux guest done in {:.1} s", run.wall_total.as_secs_f64());
    let report = QemuReport {
        ws,
        qemu: &qemu,
        spec: &spec,
        periods: (periods, period_ms),
        loads: (load_before, loadavg()),
        rhea_command: &rhea_command,
        rhea: &rhea,
        rhea_wall,
        guest: &guest,
        run: &run,
        linux: &linux,
    };
    report.print_conditions();
    report.print_figures();
    Ok(())
}

/// `bench rtos` on a QEMU board runs under TCG with one vCPU: a usage error for the options
/// that would change that.
fn check_qemu_options(opts: &Options, board: &boards::Board) -> Result<()> {
    if !matches!(opts.accel, AccelChoice::Auto | AccelChoice::Tcg)
        || opts.smp != 1
        || opts.loops.is_some()
        || opts.append.is_some()
    {
        return usage(format!(
            "`bench rtos --board {}` runs under TCG with one vCPU and takes --machine, --mem, \
             --periods, --period-ms and --verbose only",
            board.name
        ));
    }
    Ok(())
}

/// Boots [`APP`] as `spec` says: its figures and the run's wall time, or (after its console's
/// tail) why it did not finish.
fn rtos_rhea(
    qemu: &qemu::Qemu,
    spec: &qemu::Spec<'_>,
    (periods, period_ms): (u32, u32),
    verbose: bool,
) -> Result<(Figures, Duration)> {
    println!(
        "== Rhea: {APP} on {}/{}/tcg, -append {:?}",
        spec.board.name, spec.machine, spec.append
    );
    let captured = qemu::run_captured(
        qemu,
        spec,
        None,
        side_timeout(periods, period_ms, Duration::from_secs(120)),
        verbose,
    )?;
    let rhea_lines: Vec<&str> = captured.lines.iter().map(|(_, l)| l.as_str()).collect();
    let rhea = parse(rhea_lines.iter().copied());
    let verdict = qemu::classify(&captured.end);
    if verdict != Verdict::Success || !rhea.done {
        show_tail(&rhea_lines, &captured.stderr);
        let why = match verdict {
            Verdict::Success => "no `RESULT done` line".to_string(),
            other => other.describe(),
        };
        return fail(format!("Rhea did not finish ({why})"));
    }
    println!("Rhea done in {:.1} s", captured.elapsed.as_secs_f64());
    Ok((rhea, captured.elapsed))
}

/// What `bench rtos` measured on a QEMU board, and how, for its report.
struct QemuReport<'a> {
    ws: &'a Workspace,
    qemu: &'a qemu::Qemu,
    /// Rhea's QEMU run (the board, machine, memory and arguments both sides share).
    spec: &'a qemu::Spec<'a>,
    /// Periods per test, and the period in ms.
    periods: (u32, u32),
    /// The host's load average before and after.
    loads: (String, String),
    rhea_command: &'a str,
    rhea: &'a Figures,
    rhea_wall: Duration,
    guest: &'a linux_guest::RtosGuest,
    run: &'a linux_guest::RtosRun,
    linux: &'a Figures,
}

impl QemuReport<'_> {
    /// The header, the host and the QEMU flags of both sides.
    fn print_conditions(&self) {
        let (board, machine, mem, args) = (
            self.spec.board,
            self.spec.machine,
            self.spec.mem,
            self.spec.append,
        );
        let (periods, period_ms) = self.periods;
        let (load_before, load_after) = &self.loads;
        println!();
        println!(
            "== bench rtos: Rhea on {}/{machine} vs POSIX in a Linux guest, same QEMU flags \
             (TCG), {periods} periods of {period_ms} ms per test",
            board.name
        );
        println!("conditions:");
        println!("  QEMU:       {}", self.qemu.banner);
        println!(
            "  host:       {}, nproc {}",
            bench::host_cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  load:       {load_before} before, {load_after} after (/proc/loadavg, 1/5/15 min)"
        );
        println!(
            "  flags:      the same for both: machine {machine}, -accel tcg, {}-smp 1 -m {mem}; \
             Rhea adds -append {args:?}, Linux -initrd and its -append",
            if board.arch() == "x86_64" {
                "-cpu max, "
            } else {
                "-cpu cortex-a72 (the board's CPU), "
            }
        );
        println!("              Rhea:  {}", self.rhea_command);
        println!("              Linux: {}", self.run.qemu_command);
        self.print_sides();
    }

    /// Each side's version and conditions, and how an interrupt is raised on each.
    fn print_sides(&self) {
        let (board, run) = (self.spec.board, self.run);
        println!(
            "  Rhea:       {}, {APP} for {} (one vCPU), {}; run {:.1} s",
            bench::rhea_version(self.ws),
            board.name,
            self.rhea
                .conditions
                .as_deref()
                .unwrap_or("no conditions line"),
            self.rhea_wall.as_secs_f64()
        );
        println!(
            "  Linux:      {} ({}), preempt {}, clocksource {}",
            run.kernel_version, run.kernel_package, run.preempt, run.clocksource
        );
        if board.arch() == "aarch64" {
            println!(
                "              booted with {}: with KASLR Debian's arm64 kernel forces page-table \
                 isolation (KPTI; no E0PD on a Cortex-A72), which under TCG flushes QEMU's TLB at \
                 every kernel entry (sched_yield ~4x slower); the x86_64 guest runs without it",
                linux_guest::ARM64_RTOS_APPEND
            );
        }
        println!(
            "  POSIX:      {SRC} ({}), as root in the initramfs, RT throttling off; {}; run {:.1} s{}",
            self.guest.compiler,
            self.linux
                .conditions
                .as_deref()
                .unwrap_or("no conditions line"),
            run.wall_total.as_secs_f64(),
            run.wall_to_init.map_or(String::new(), |t| format!(
                " (QEMU spawn -> /init {:.1} s)",
                t.as_secs_f64()
            ))
        );
        println!(
            "               (policy=fifo: threads at SCHED_FIFO priorities mirroring Rhea's; \
             other: SCHED_OTHER, SCHED_FIFO refused)"
        );
        println!(
            "  irq:        Rhea raises a self-interrupt through the interrupt controller \
             (rhea::irq::raise_self: {}); POSIX has no interrupts for a program: SIGUSR1 sent to \
             itself (pthread_kill), a signal through the kernel",
            if board.arch() == "x86_64" {
                "an IPI to its own local APIC"
            } else {
                "an SGI to its own CPU through the GIC"
            }
        );
    }

    /// The note on TCG, then the table.
    fn print_figures(&self) {
        println!(
            "  note:       under TCG the guests' clocks follow the host's: absolute figures are \
             emulation speed; compare the ratios (same run, same flags)"
        );
        println!(
            "  figures:    median ops per period (min..max over the periods); higher is better"
        );
        println!();
        print!("{}", table(self.rhea, self.linux, "Linux guest POSIX"));
        if let Some(line) = normalised(self.rhea, self.linux) {
            println!("{line}");
        }
    }
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
        let t = table(&rhea, &posix, "POSIX");
        assert!(t.contains("100 (90..110)"), "{t}");
        assert!(t.contains("skipped: no vector (x)"), "{t}");
        assert_eq!(t.lines().count(), 2 + TESTS.len());
        assert!(t.starts_with("test "), "{t}");
        assert!(t.lines().next().unwrap().ends_with("| Rhea/POSIX"), "{t}");
        assert_eq!(
            normalised(&rhea, &posix).unwrap(),
            "ratios ÷ basic's 2.00 (per unit of the CPU each side got): coop -, preempt -, \
             irq -, irq_preempt -, msg -, sem -, mutex -, events -, alloc -, pool -"
        );
        let r = parse(["RESULT rtos basic 100 1 1", "RESULT rtos coop 30 1 1"]);
        let p = parse(["RESULT rtos basic 50 1 1", "RESULT rtos coop 10 1 1"]);
        // coop: 30/10 = 3, ÷ basic's 2.
        assert!(
            normalised(&r, &p)
                .unwrap()
                .contains(": coop 1.50, preempt -,"),
            "{:?}",
            normalised(&r, &p)
        );
        assert!(normalised(&posix, &rhea).is_some());
        assert!(normalised(&parse(["RESULT rtos coop 1 1 1"]), &posix).is_none());
        let t = table(&rhea, &posix, "Linux guest POSIX");
        assert!(t.contains("Linux guest POSIX ops/period (min..max)"), "{t}");
        assert!(t.lines().next().unwrap().ends_with("| Rhea/Linux"), "{t}");
    }

    #[test]
    fn timeouts() {
        let tests = TESTS.len() as u64;
        assert_eq!(
            side_timeout(5, 200, Duration::from_secs(60)),
            Duration::from_secs(60 + tests)
        );
        assert_eq!(
            side_timeout(2, 20, Duration::ZERO),
            Duration::from_millis(40 * tests)
        );
    }
}
