//! `cargo xtask bench sched --board linuxu`: LinuxU's scheduler figures next to Linux's own,
//! measured on the same host in the same run.
//!
//! ```text
//! cargo xtask bench sched --board linuxu [--loops N] [--append STR] [--verbose]
//! ```
//!
//! One after the other, all natively on this host:
//!
//! 1. **Rhea**: `apps/bench-sched` built for `linuxu` runs as a process with the arguments
//!    `loops=N` (then `--append`); it prints the `RESULT` lines of the QEMU bench, read with
//!    [`bench::parse_sched_console`].
//! 2. **Linux**: the ping-pong of the Linux guest (`xtask/guest/pingpong.c`, built by
//!    `linux_guest::pingpong`) for the yield and semaphore hand-offs, then Debian's
//!    `cyclictest` (`rt-tests`, as `linux_guest::unpack_cyclictest` unpacks it for the guest)
//!    as `cyclictest -m -p 90 -a 0 -i <period> -l <N> -h 20000 -q` at 200 and 1000 µs, idle
//!    and with a CPU hog: a busy `sh` loop at nice 19 on the same CPU, a child of xtask killed
//!    after the run.
//!
//! Then the conditions and one table ([`bench::comparison_table`]): per measure Rhea's figure,
//! Linux's and the ratio Rhea/Linux (lower is better), with the design goals.
//!
//! What keeps the two sides comparable, and what does not:
//!
//! * Everything runs on CPU 0: cyclictest (`-a 0`), the hog, pingpong's two threads, and
//!   Rhea's process (`taskset -c 0`; LinuxU has one vCPU thread, and bench-sched's own hog is
//!   a Rhea thread inside it).
//! * cyclictest holds `/dev/cpu_dma_latency` at 0 µs while it runs, which keeps the CPU out of
//!   deep idle states; xtask holds it for the whole bench (when it may open it), so Rhea's
//!   process wakes from the same idle states.
//! * Rhea's process is an ordinary one (xtask's policy, normally SCHED_OTHER nice 0) while
//!   cyclictest runs SCHED_FIFO 90 when allowed; other work on the host can delay Rhea, not
//!   cyclictest. The conditions print both policies and the host's load. Rhea's process
//!   inherits xtask's policy: `chrt -f 90 cargo xtask bench sched --board linuxu` (root) runs
//!   it SCHED_FIFO like cyclictest (the hog stays SCHED_OTHER), but then bench-sched's own hog
//!   makes the whole process a real-time CPU hog, which the kernel throttles (RT bandwidth,
//!   `sched_rt_runtime_us`): expect maxima of tens of ms in the hog runs.
//!
//! cyclictest's SCHED_FIFO and `mlockall` (`-m`) need root or `RLIMIT_RTPRIO`: when refused,
//! it runs again without `-p`/`-m` and the conditions say so. (rt-tests 2.4 checks at start
//! that it may use SCHED_FIFO and refuses to run at all otherwise; then Linux's cyclictest
//! figures are missing and the reason is printed.) The unpacked cyclictest is dynamically
//! linked: it runs with the host's loader and libraries; if the host lacks one (Debian hosts
//! without `libnuma1`), `LD_LIBRARY_PATH` names the library directories of the unpacked
//! packages, libc6's excepted (the host's libc must stay with the host's loader).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::linux_guest::{self, CyclicResult};
use crate::bench::{self, Baseline, Platform, SCHED_APP};
use crate::qemu::{self, Captured, Verdict};
use crate::{
    Options, Result, Workspace, apps, boards, capture, describe, fail, image, setup, usage,
};

/// The board this bench runs Rhea on.
pub(crate) const BOARD: &str = "linuxu";
/// The CPU everything runs on.
pub(crate) const CPU: &str = "0";
/// cyclictest's SCHED_FIFO priority (as in the Linux guest).
const FIFO_PRIORITY: &str = "90";
/// The hog's nice value.
const HOG_NICE: &str = "19";
/// The hog: a shell busy loop (no fork per iteration).
const HOG_LOOP: &str = "while :; do :; done";
/// How long the hog runs before cyclictest starts.
const HOG_SETTLE: Duration = Duration::from_millis(100);
/// What the dynamic loader prints when a library is missing.
const LOADER_ERROR: &str = "error while loading shared libraries";
/// The PM QoS file cyclictest writes 0 into.
const DMA_LATENCY: &str = "/dev/cpu_dma_latency";
/// cyclictest loops of the probe that checks whether and how it runs.
const PROBE_LOOPS: u32 = 10;
/// Console lines shown when Rhea's run fails.
const TAIL_LINES: usize = 40;

/// Checks the options `bench sched --board linuxu` does not take: QEMU's.
fn check_options(opts: &Options) -> Result<()> {
    let defaults = Options::default();
    if opts.accel != defaults.accel || opts.smp != defaults.smp || opts.mem != defaults.mem {
        return usage(
            "--accel, --smp and --mem are QEMU's; LinuxU runs natively with one vCPU \
             (its memory: --append rhea.mem_mib=N)",
        );
    }
    match opts.machine.as_deref() {
        None | Some("realtime") => Ok(()),
        Some("sim") => usage(
            "`bench sched --board linuxu` measures real time; the simulation mode (sim) has \
             virtual time",
        ),
        Some(other) => usage(format!(
            "unknown machine `{other}` for board {BOARD}; `bench sched` runs on realtime"
        )),
    }
}

/// `cargo xtask bench sched --board linuxu`.
pub(crate) fn bench_sched(ws: &Workspace, opts: &Options) -> Result<()> {
    check_options(opts)?;
    let board = boards::find(BOARD)?;
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, SCHED_APP)?;
    setup::ensure_toolchain(ws, board)?;
    let image = image::build(ws, board, app)?;
    let host = host_info();
    // Held (the file open) until the end of the bench.
    let dma = hold_dma_latency();

    let cmdline = bench::sched_cmdline(loops, opts.append());
    let (rhea, rhea_wall, pinning) = sched_rhea(&image.elf, &cmdline, loops, opts.verbose)?;

    println!(
        "== Linux on this host: pingpong, then cyclictest at 200 and 1000 µs, idle and with \
         the hog (downloads nothing once cached)"
    );
    let linux = run_linux(ws, loops, opts.verbose);

    let report = SchedReport {
        ws,
        loops,
        cmdline: &cmdline,
        host: &host,
        dma: &dma,
        rhea: &rhea,
        rhea_wall,
        pinning: &pinning,
        linux: &linux,
    };
    report.print_conditions();
    report.print_figures()
}

/// Runs [`SCHED_APP`] as a LinuxU process: its measures, the run's wall time and whether it
/// was pinned, or (after its output's tail) why it did not finish.
pub(crate) fn sched_rhea(
    elf: &Path,
    cmdline: &str,
    loops: u32,
    verbose: bool,
) -> Result<(bench::RheaSched, Duration, Result<(), String>)> {
    let timeout = bench::sched_timeout(loops);
    println!(
        "== Rhea: {SCHED_APP} on {BOARD}, a process on CPU {CPU}, arguments {cmdline:?} \
         (timeout {} s)",
        timeout.as_secs()
    );
    let (captured, pinning) = run_rhea(elf, cmdline, timeout, verbose)?;
    let rhea = bench::parse_sched_console(captured.lines.iter().map(|(_, l)| l.as_str()));
    let verdict = qemu::classify_process(&captured.end);
    if verdict != Verdict::Success || !rhea.done {
        print_tail(&captured);
        let why = match verdict {
            Verdict::Success => "no `RESULT done` line".to_string(),
            other => other.describe(),
        };
        return fail(format!(
            "{SCHED_APP} did not finish ({why}); Rhea's figures are incomplete, \
             Linux's were not measured"
        ));
    }
    println!("Rhea done in {:.1} s", captured.elapsed.as_secs_f64());
    Ok((rhea, captured.elapsed, pinning))
}

/// What `bench sched --board linuxu` measured, and on what host, for its report.
struct SchedReport<'a> {
    ws: &'a Workspace,
    loops: u32,
    /// Rhea's arguments.
    cmdline: &'a str,
    host: &'a HostInfo,
    /// The held `/dev/cpu_dma_latency`, or why not.
    dma: &'a Result<fs::File, String>,
    rhea: &'a bench::RheaSched,
    rhea_wall: Duration,
    /// Whether Rhea's process was pinned to [`CPU`].
    pinning: &'a Result<(), String>,
    linux: &'a LinuxFigures,
}

impl SchedReport<'_> {
    /// The header, the host, and how Rhea ran.
    fn print_conditions(&self) {
        let (host, loops, cmdline) = (self.host, self.loops, self.cmdline);
        println!();
        println!(
            "== bench sched: Rhea on LinuxU vs Linux, natively on the same host, loops {loops}"
        );
        println!("conditions:");
        println!(
            "  host:        {}, nproc {}, Linux {} (uname -r)",
            host.cpu_model, host.nproc, host.kernel
        );
        println!("  user:        {}", host.user());
        println!(
            "  same host:   Rhea (a LinuxU process) and Linux's cyclictest and ping-pong ran \
             natively on this host, one after the other, in this run"
        );
        println!(
            "  Rhea:        {}, {SCHED_APP} for {BOARD}, arguments {cmdline:?}, TSC {} Hz",
            bench::rhea_version(self.ws),
            self.rhea
                .tsc_hz
                .map_or("unknown".to_string(), |hz| hz.to_string())
        );
        let pinned = match self.pinning {
            Ok(()) => format!("pinned to CPU {CPU} (taskset -c {CPU})"),
            Err(why) => format!("NOT pinned ({why})"),
        };
        println!(
            "               a process with xtask's policy, {}, {pinned}",
            host.policy
        );
        self.print_linux_conditions();
        self.print_host_conditions();
    }

    /// How Linux's cyclictest and ping-pong ran.
    fn print_linux_conditions(&self) {
        match &self.linux.cyclictest {
            Ok(ct) => {
                println!(
                    "  cyclictest:  {} (Debian), `{}`",
                    ct.package,
                    describe_args(
                        "cyclictest",
                        &cyclictest_args(ct.fifo, "<period>", self.loops)
                    )
                );
                if ct.fifo {
                    println!("               SCHED_FIFO {FIFO_PRIORITY} with mlockall: yes");
                }
                for note in &ct.setup_notes {
                    println!("               {note}");
                }
            }
            Err(why) => println!("  cyclictest:  did not run: {}", first_line(why)),
        }
        match &self.linux.pingpong {
            Ok(p) => println!(
                "  ping-pong:   xtask/guest/pingpong.c (gcc -O2 -static), 2 threads on CPU 0, {}",
                match p.policy.as_deref() {
                    Some("fifo") => "SCHED_FIFO 50".to_string(),
                    Some("other") => "SCHED_OTHER (SCHED_FIFO refused)".to_string(),
                    other => format!("policy {}", other.unwrap_or("unknown")),
                }
            ),
            Err(why) => println!("  ping-pong:   did not run: {}", first_line(why)),
        }
        println!(
            "  hog:         Linux: a busy `sh` loop, SCHED_OTHER nice {HOG_NICE} on CPU {CPU}, killed \
             after each run; Rhea: a priority-1 thread of {SCHED_APP} spinning"
        );
    }

    /// The host's idle states, RT limits and load, the loops, the wall times and the notes.
    fn print_host_conditions(&self) {
        let (host, loops) = (self.host, self.loops);
        match self.dma {
            Ok(_) => println!(
                "  idle states: {DMA_LATENCY} held at 0 µs by xtask for the whole bench \
                 (cyclictest also sets it itself)"
            ),
            Err(why) => println!(
                "  idle states: {DMA_LATENCY} not held ({why}): cyclictest sets it for its own \
                 runs, Rhea's process may wake from deeper idle states"
            ),
        }
        println!(
            "  RT limits:   kernel.sched_rt_runtime_us {} (left as it is)",
            host.rt_runtime_us
        );
        println!(
            "  host load:   {} at the start (/proc/loadavg; other work on the host delays \
             SCHED_OTHER processes, not SCHED_FIFO ones)",
            host.loadavg
        );
        let rhea_loops = self
            .rhea
            .loops
            .map_or("unknown".to_string(), |n| n.to_string());
        println!(
            "  loops:       {loops} per measure (Rhea reported loops={rhea_loops}; cyclictest \
             loops and ping-pong round trips of Linux)"
        );
        println!(
            "  wall:        Rhea run {:.1} s, Linux run {:.1} s",
            self.rhea_wall.as_secs_f64(),
            self.linux.wall.as_secs_f64()
        );
        if loops < linux_guest::DEFAULT_LOOPS {
            println!(
                "  note:        --loops {loops} is below {}: a quick check, not a baseline",
                linux_guest::DEFAULT_LOOPS
            );
        }
        if !self.linux.notes.is_empty() {
            println!("Linux notes:");
            for note in &self.linux.notes {
                println!("  {note}");
            }
        }
    }

    /// The table of figures; an error if Rhea left a measure out.
    fn print_figures(&self) -> Result<()> {
        let (rhea, linux) = (self.rhea, self.linux);
        println!();
        println!("figures (ratio Rhea/Linux: lower is better for every measure):");
        let table = bench::comparison_table(rhea, Some(linux.baseline()), Platform::LinuxU);
        print!("{}", bench::render_table_headed(&table, "Linux host"));
        for (what, result) in [
            ("cyclictest", linux.cyclictest.as_ref().err()),
            ("ping-pong", linux.pingpong.as_ref().err()),
        ] {
            if let Some(why) = result {
                println!();
                println!("Linux's {what} figures missing:");
                for line in why.lines() {
                    println!("  {line}");
                }
            }
        }
        if !rhea.unparsed.is_empty() {
            println!("RESULT lines of {SCHED_APP} not understood:");
            for line in &rhea.unparsed {
                println!("  {line}");
            }
        }
        let missing = rhea.missing();
        if !missing.is_empty() {
            return fail(format!(
                "{SCHED_APP} did not print every measure; missing: {}",
                missing.join(", ")
            ));
        }
        Ok(())
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn print_tail(captured: &Captured) {
    let from = captured.lines.len().saturating_sub(TAIL_LINES);
    println!(
        "--- output (last {} lines) ---",
        captured.lines.len() - from
    );
    for (_, line) in &captured.lines[from..] {
        println!("| {line}");
    }
    if !captured.stderr.trim().is_empty() {
        println!("--- stderr ---\n{}", captured.stderr.trim_end());
    }
}

/// Runs Rhea's process pinned to [`CPU`] with `taskset`, or unpinned (the reason returned)
/// when that is not possible.
fn run_rhea(
    elf: &Path,
    cmdline: &str,
    timeout: Duration,
    verbose: bool,
) -> Result<(Captured, Result<(), String>)> {
    let elf_text = elf.display().to_string();
    let why = if elf_text.contains(char::is_whitespace) {
        "the image path contains white space".to_string()
    } else {
        let args = format!("-c {CPU} {elf_text} {cmdline}");
        match qemu::run_process_captured(Path::new("taskset"), &args, None, timeout, verbose, None)
        {
            // taskset itself failed: it printed nothing but its complaint.
            Ok(c) if c.lines.is_empty() && c.stderr.contains("taskset") => {
                format!("taskset failed: {}", c.stderr.trim())
            }
            Ok(c) => return Ok((c, Ok(()))),
            Err(e) => e.to_string(),
        }
    };
    let captured = qemu::run_process_captured(elf, cmdline, None, timeout, verbose, None)?;
    Ok((captured, Err(why)))
}

// ---------------------------------------------------------------------------------------
// The host.

/// Facts about the host, for the conditions.
#[derive(Debug, Clone)]
struct HostInfo {
    cpu_model: String,
    nproc: usize,
    /// `uname -r`.
    kernel: String,
    /// The effective user id.
    euid: Option<u32>,
    /// xtask's scheduling policy and nice value, which Rhea's process inherits.
    policy: String,
    loadavg: String,
    rt_runtime_us: String,
}

impl HostInfo {
    fn user(&self) -> String {
        match self.euid {
            Some(0) => "root (euid 0)".to_string(),
            Some(uid) => format!("not root (euid {uid})"),
            None => "unknown (no /proc/self/status)".to_string(),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn host_info() -> HostInfo {
    let kernel = capture(Command::new("uname").arg("-r"))
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| read_trimmed("/proc/sys/kernel/osrelease"))
        .unwrap_or_else(|| "unknown".to_string());
    let policy = read_trimmed("/proc/self/stat")
        .and_then(|s| parse_sched_stat(&s))
        .map_or("policy unknown".to_string(), describe_policy);
    HostInfo {
        cpu_model: bench::host_cpu_model(),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel,
        euid: read_trimmed("/proc/self/status").and_then(|s| parse_euid(&s)),
        policy,
        loadavg: read_trimmed("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unknown".to_string()),
        rt_runtime_us: read_trimmed("/proc/sys/kernel/sched_rt_runtime_us")
            .unwrap_or_else(|| "unknown".to_string()),
    }
}

/// The effective user id from `/proc/self/status` (`Uid: real effective saved fs`).
fn parse_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process's scheduling, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sched {
    policy: u32,
    rt_priority: u32,
    nice: i64,
}

/// Fields 41 (policy), 40 (real-time priority) and 19 (nice) of `/proc/<pid>/stat`, counted
/// after the command name in parentheses (which may contain spaces and parentheses itself).
fn parse_sched_stat(stat: &str) -> Option<Sched> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is field 3 (the state).
    let field = |n: usize| fields.get(n - 3);
    Some(Sched {
        policy: field(41)?.parse().ok()?,
        rt_priority: field(40)?.parse().ok()?,
        nice: field(19)?.parse().ok()?,
    })
}

/// `SCHED_OTHER nice 0`, `SCHED_FIFO 90`.
fn describe_policy(s: Sched) -> String {
    match s.policy {
        1 | 2 => format!("{} {}", policy_name(s.policy), s.rt_priority),
        _ => format!("{} nice {}", policy_name(s.policy), s.nice),
    }
}

fn policy_name(policy: u32) -> &'static str {
    match policy {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "an unknown policy",
    }
}

/// Opens [`DMA_LATENCY`] and writes 0 (µs) into it: the kernel keeps CPUs out of idle states
/// with a longer exit latency while the file stays open.
fn hold_dma_latency() -> Result<fs::File, String> {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(DMA_LATENCY)
        .map_err(|e| format!("cannot open it: {e}"))?;
    file.write_all(&0i32.to_ne_bytes())
        .map_err(|e| format!("cannot write it: {e}"))?;
    Ok(file)
}

/// The low-priority CPU hog: a busy shell loop, SCHED_OTHER (even when xtask itself runs
/// under `chrt -f`) at nice [`HOG_NICE`] on [`CPU`], killed when dropped.
#[derive(Debug)]
struct Hog(Child);

impl Hog {
    fn start() -> Result<Hog, String> {
        let mut cmd = Command::new("chrt");
        cmd.args(["--other", "0", "nice", "-n", HOG_NICE])
            .args(["taskset", "-c", CPU, "sh", "-c", HOG_LOOP])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the hog `{}`: {e}", describe(&cmd)))?;
        let mut hog = Hog(child);
        std::thread::sleep(HOG_SETTLE);
        match hog.0.try_wait() {
            Ok(None) => Ok(hog),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut pipe) = hog.0.stderr.take() {
                    use std::io::Read as _;
                    let _ = pipe.read_to_string(&mut err);
                }
                Err(format!(
                    "the hog `{}` ended at once ({status}): {}",
                    describe(&cmd),
                    err.trim()
                ))
            }
            Err(e) => Err(format!("cannot wait for the hog: {e}")),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Linux's figures.

/// What the Linux side measured.
#[derive(Debug)]
struct LinuxFigures {
    pingpong: Result<Pingpong, String>,
    cyclictest: Result<CyclictestRunner, String>,
    cyclic: Vec<CyclicResult>,
    /// Warnings and failures of single runs.
    notes: Vec<String>,
    wall: Duration,
}

impl LinuxFigures {
    fn baseline(&self) -> Baseline<'_> {
        let pingpong = self.pingpong.as_ref().ok();
        Baseline {
            yield_switch_ns: pingpong.and_then(|p| p.yield_switch_ns),
            sem_pingpong_ns: pingpong.and_then(|p| p.sem_pingpong_ns),
            cyclic: &self.cyclic,
        }
    }
}

fn run_linux(ws: &Workspace, loops: u32, verbose: bool) -> LinuxFigures {
    let start = Instant::now();
    let mut notes = Vec::new();
    let pingpong = run_pingpong(ws, loops, verbose);
    if let Ok(p) = &pingpong {
        notes.extend(p.notes.iter().map(|n| format!("pingpong: {n}")));
    }
    let cyclictest = prepare_cyclictest(ws, verbose);
    let mut cyclic = Vec::new();
    if let Ok(ct) = &cyclictest {
        for (period, hog) in bench::CYCLIC_RUNS {
            match run_cyclictest(ct, period, hog, loops, verbose, &mut notes) {
                Ok(c) => cyclic.push(c),
                Err(why) => notes.push(format!(
                    "cyclictest period={period} hog={}: {why}",
                    u8::from(hog)
                )),
            }
        }
    }
    LinuxFigures {
        pingpong,
        cyclictest: cyclictest.map_err(|e| e.to_string()),
        cyclic,
        notes,
        wall: start.elapsed(),
    }
}

/// What pingpong printed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pingpong {
    /// `fifo` or `other`.
    policy: Option<String>,
    yield_switch_ns: Option<f64>,
    sem_pingpong_ns: Option<f64>,
    notes: Vec<String>,
}

fn parse_pingpong(out: &str) -> Pingpong {
    let mut p = Pingpong::default();
    for line in out.lines() {
        if let Some(note) = line.trim().strip_prefix("NOTE ") {
            p.notes.push(note.to_string());
        }
        let Some((key, value)) = linux_guest::parse_result_line(line) else {
            continue;
        };
        match key {
            "sched_policy" => p.policy = Some(value.to_string()),
            "yield_switch_ns" => p.yield_switch_ns = value.parse().ok(),
            "sem_pingpong_ns" => p.sem_pingpong_ns = value.parse().ok(),
            _ => {}
        }
    }
    p
}

fn run_pingpong(ws: &Workspace, loops: u32, verbose: bool) -> Result<Pingpong, String> {
    let binary = linux_guest::pingpong(ws).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&binary);
    cmd.arg(loops.to_string());
    if verbose {
        println!("$ {}", describe(&cmd));
    }
    let out = capture(&mut cmd).map_err(|e| e.to_string())?;
    if verbose {
        print!("{out}");
    }
    let p = parse_pingpong(&out);
    if p.yield_switch_ns.is_none() && p.sem_pingpong_ns.is_none() {
        return Err(format!(
            "`{}` printed no figure:\n{}",
            describe(&cmd),
            out.trim()
        ));
    }
    Ok(p)
}

/// How cyclictest runs on this host (found by a short probe run).
#[derive(Debug, Clone)]
struct CyclictestRunner {
    binary: PathBuf,
    /// `LD_LIBRARY_PATH` when the host lacks a library cyclictest needs.
    library_path: Option<OsString>,
    /// SCHED_FIFO [`FIFO_PRIORITY`] and `mlockall` (`-p`, `-m`), or neither.
    fifo: bool,
    /// e.g. `rt-tests 2.4-1`.
    package: String,
    /// How it was set up, for the conditions (loader, refusals).
    setup_notes: Vec<String>,
}

/// cyclictest's arguments: one measuring thread on [`CPU`], histogram to
/// `linux_guest::HIST_US`, summary only.
fn cyclictest_args(fifo: bool, period_us: &str, loops: u32) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if fifo {
        args.extend(["-m", "-p", FIFO_PRIORITY].map(str::to_string));
    }
    args.extend([
        "-a".to_string(),
        CPU.to_string(),
        "-i".to_string(),
        period_us.to_string(),
        "-l".to_string(),
        loops.to_string(),
        "-h".to_string(),
        linux_guest::HIST_US.to_string(),
        "-q".to_string(),
    ]);
    args
}

fn describe_args(program: &str, args: &[String]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    describe(&cmd)
}

impl CyclictestRunner {
    fn command(&self, period_us: u32, loops: u32) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(cyclictest_args(self.fifo, &period_us.to_string(), loops))
            .stdin(Stdio::null());
        if let Some(path) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", path);
        }
        cmd
    }
}

/// How a cyclictest run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Ran,
    /// The dynamic loader did not find a library.
    Loader,
    /// cyclictest refused (e.g. no right to SCHED_FIFO) or failed otherwise.
    Refused,
}

fn classify_attempt(success: bool, stderr: &str) -> Attempt {
    if stderr.contains(LOADER_ERROR) {
        Attempt::Loader
    } else if success {
        Attempt::Ran
    } else {
        Attempt::Refused
    }
}

/// A short run of `runner`: how it went and its stderr.
fn probe(runner: &CyclictestRunner, verbose: bool) -> Result<(Attempt, String), String> {
    let mut cmd = runner.command(1000, PROBE_LOOPS);
    if verbose {
        println!("$ {} (probe)", describe(&cmd));
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(&cmd)))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok((classify_attempt(out.status.success(), &stderr), stderr))
}

/// The library directories of the unpacked packages `roots`, libc6's excepted, that
/// `is_dir` accepts: the fallback `LD_LIBRARY_PATH`.
fn library_dirs(roots: &[PathBuf], is_dir: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    roots
        .iter()
        .filter(|root| {
            root.file_name()
                .is_some_and(|n| !crate::guest::debian::is_deb_of(&n.to_string_lossy(), "libc6"))
        })
        .flat_map(|root| {
            crate::guest::elf::lib_dirs(linux_guest::TRIPLE).map(move |d| root.join(d))
        })
        .filter(|d| is_dir(d))
        .collect()
}

/// Unpacks cyclictest and finds how it runs here: with the host's libraries or the unpacked
/// ones, with SCHED_FIFO or without.
fn prepare_cyclictest(ws: &Workspace, verbose: bool) -> Result<CyclictestRunner, String> {
    let unpacked = linux_guest::unpack_cyclictest(ws).map_err(|e| e.to_string())?;
    find_runner(unpacked, verbose)
}

/// Probes how the unpacked cyclictest runs here (see [`prepare_cyclictest`]).
fn find_runner(
    unpacked: linux_guest::Cyclictest,
    verbose: bool,
) -> Result<CyclictestRunner, String> {
    let mut runner = CyclictestRunner {
        binary: unpacked.binary,
        library_path: None,
        fifo: true,
        package: unpacked.package,
        setup_notes: Vec::new(),
    };
    let (mut attempt, mut stderr) = probe(&runner, verbose)?;
    if attempt == Attempt::Loader {
        let dirs = library_dirs(&unpacked.lib_roots, Path::is_dir);
        let path = std::env::join_paths(&dirs).map_err(|e| e.to_string())?;
        runner.setup_notes.push(format!(
            "loader: the host's, with LD_LIBRARY_PATH={} (the host lacks a library: {})",
            path.to_string_lossy(),
            first_line(&stderr)
        ));
        runner.library_path = Some(path);
        (attempt, stderr) = probe(&runner, verbose)?;
        if attempt == Attempt::Loader {
            return Err(format!(
                "cyclictest cannot start on this host, not even with the libraries of the \
                 unpacked packages: {stderr}\n(install the libraries it needs, e.g. \
                 `apt-get install libnuma1`)"
            ));
        }
    } else {
        runner
            .setup_notes
            .push("loader: the host's, with the host's libraries".to_string());
    }
    if attempt == Attempt::Refused {
        let with_fifo = stderr;
        runner.fifo = false;
        (attempt, stderr) = probe(&runner, verbose)?;
        if attempt != Attempt::Ran {
            return Err(format!(
                "cyclictest refused to run: with -m -p {FIFO_PRIORITY}: {}; without them: {}\n\
                 (rt-tests 2.4 needs the right to SCHED_FIFO even when not asked to use it: \
                 run as root or raise RLIMIT_RTPRIO)",
                with_fifo.replace('\n', " "),
                stderr.replace('\n', " ")
            ));
        }
        runner.setup_notes.push(format!(
            "SCHED_FIFO {FIFO_PRIORITY} with mlockall: NO, refused ({}): ran SCHED_OTHER \
             without -m -p",
            with_fifo.replace('\n', " ")
        ));
    }
    Ok(runner)
}

/// One cyclictest run (with the hog if `hog`); its stderr and a non-zero exit go to `notes`.
fn run_cyclictest(
    runner: &CyclictestRunner,
    period_us: u32,
    hog: bool,
    loops: u32,
    verbose: bool,
    notes: &mut Vec<String>,
) -> Result<CyclicResult, String> {
    let hog_process = if hog { Some(Hog::start()?) } else { None };
    let mut cmd = runner.command(period_us, loops);
    if verbose {
        println!(
            "$ {}{}",
            describe(&cmd),
            if hog { " (with the hog)" } else { "" }
        );
    }
    let out = cmd.output();
    drop(hog_process);
    let out = out.map_err(|e| format!("cannot run `{}`: {e}", describe(&cmd)))?;
    let tag = format!("cyclictest period={period_us} hog={}", u8::from(hog));
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if !line.trim().is_empty() {
            notes.push(format!("{tag}: {}", line.trim()));
        }
    }
    if !out.status.success() {
        notes.push(format!("{tag}: exited with {}", out.status));
    }
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let result = linux_guest::cyclic_from_output(period_us, hog, &lines)?;
    if verbose {
        println!("  {}", result.result_line());
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::bench::TableLine;
    use crate::qemu::AccelChoice;

    #[test]
    fn options_of_qemu_are_refused() {
        assert!(check_options(&Options::default()).is_ok());
        let with = |f: fn(&mut Options)| {
            let mut o = Options::default();
            f(&mut o);
            check_options(&o)
        };
        assert!(with(|o| o.machine = Some("realtime".into())).is_ok());
        assert!(with(|o| o.loops = Some(500)).is_ok());
        assert!(with(|o| o.append = Some("rhea.mem_mib=32".into())).is_ok());
        for bad in [
            with(|o| o.machine = Some("sim".into())),
            with(|o| o.machine = Some("q35".into())),
            with(|o| o.accel = AccelChoice::Kvm),
            with(|o| o.smp = 2),
            with(|o| o.mem = "1G".into()),
        ] {
            assert!(matches!(bad, Err(Error::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn proc_files() {
        let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_euid(status), Some(0));
        assert_eq!(parse_euid("Name:\tx\n"), None);
        let stat = "21537 (cat) R 21490 21490 12521 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 \
                    432532 3133440 413 18446744073709551615 94041560076288 94041560096169 \
                    140732897601376 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94041560112176";
        let other = parse_sched_stat(stat).unwrap();
        assert_eq!(describe_policy(other), "SCHED_OTHER nice 0");
        // A command name with spaces and a parenthesis; nice 19, SCHED_FIFO (rt priority 90).
        let stat = "7 (a) b) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 39 19 1 0 1 1 1 1 1 1 1 0 0 0 0 0 0 \
                    0 0 0 17 1 90 1 0";
        let fifo = Sched {
            policy: 1,
            rt_priority: 90,
            nice: 19,
        };
        assert_eq!(parse_sched_stat(stat), Some(fifo));
        assert_eq!(describe_policy(fifo), "SCHED_FIFO 90");
        assert_eq!(parse_sched_stat("1 (x) R 0"), None);
        assert_eq!(policy_name(0), "SCHED_OTHER");
        assert_eq!(policy_name(1), "SCHED_FIFO");
        assert_eq!(policy_name(4), "an unknown policy");
    }

    #[test]
    fn cyclictest_command_lines() {
        assert_eq!(
            describe_args("cyclictest", &cyclictest_args(true, "200", 10_000)),
            "cyclictest -m -p 90 -a 0 -i 200 -l 10000 -h 20000 -q"
        );
        assert_eq!(
            cyclictest_args(false, "1000", 5).join(" "),
            "-a 0 -i 1000 -l 5 -h 20000 -q"
        );
    }

    #[test]
    fn attempts() {
        let loader = "cyclictest: error while loading shared libraries: libnuma.so.1: cannot \
                      open shared object file: No such file or directory";
        assert_eq!(classify_attempt(false, loader), Attempt::Loader);
        assert_eq!(classify_attempt(true, ""), Attempt::Ran);
        assert_eq!(
            classify_attempt(true, "WARN: stat /dev/cpu_dma_latency failed"),
            Attempt::Ran
        );
        assert_eq!(
            classify_attempt(false, "Unable to change scheduling policy!"),
            Attempt::Refused
        );
    }

    #[test]
    fn fallback_library_path() {
        let roots = [
            PathBuf::from("/c/unpacked/libc6_2.36-9+deb12u14_amd64"),
            PathBuf::from("/c/unpacked/libnuma1_2.0.16-1_amd64"),
            PathBuf::from("/c/unpacked/libc6-extra_1_amd64"),
        ];
        let dirs = library_dirs(&roots, |d| d.ends_with("usr/lib/x86_64-linux-gnu"));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/c/unpacked/libnuma1_2.0.16-1_amd64/usr/lib/x86_64-linux-gnu"),
                PathBuf::from("/c/unpacked/libc6-extra_1_amd64/usr/lib/x86_64-linux-gnu"),
            ]
        );
        assert!(library_dirs(&roots, |_| false).is_empty());
    }

    /// A fake cyclictest (a shell script) in a fresh directory, with a library package root.
    fn fake_cyclictest(name: &str, script: &str) -> (PathBuf, linux_guest::Cyclictest) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-hb-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let lib_root = dir.join("libnuma1_2.0.16-1_amd64");
        fs::create_dir_all(lib_root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(dir.join("libc6_2.36-9_amd64/lib/x86_64-linux-gnu")).unwrap();
        let binary = dir.join("cyclictest");
        fs::write(&binary, format!("#!/bin/sh\n{script}")).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        let unpacked = linux_guest::Cyclictest {
            binary,
            lib_roots: vec![dir.join("libc6_2.36-9_amd64"), lib_root],
            package: "rt-tests 2.4-1".to_string(),
        };
        (dir, unpacked)
    }

    /// (cargo test sets LD_LIBRARY_PATH: look for the unpacked package in it.)
    const NO_LIBNUMA: &str = "case \"$LD_LIBRARY_PATH\" in *libnuma1_*) ;; *) echo \"cyclictest: \
        error while loading shared libraries: libnuma.so.1: cannot open shared object file\" >&2; \
        exit 127;; esac\n";
    const NO_FIFO: &str = "case \" $* \" in *\" -p 90 \"*) echo \"Unable to change scheduling \
        policy!\" >&2; exit 1;; esac\n";

    #[test]
    fn how_cyclictest_runs() {
        // Everything there.
        let (dir, unpacked) = fake_cyclictest("fine", "exit 0\n");
        let r = find_runner(unpacked, false).unwrap();
        assert!(r.fifo && r.library_path.is_none(), "{r:?}");
        assert_eq!(
            r.setup_notes,
            ["loader: the host's, with the host's libraries"]
        );
        fs::remove_dir_all(dir).unwrap();

        // No libnuma on the host, no right to SCHED_FIFO.
        let (dir, unpacked) = fake_cyclictest("both", &format!("{NO_LIBNUMA}{NO_FIFO}exit 0\n"));
        let r = find_runner(unpacked, false).unwrap();
        assert!(!r.fifo);
        // Every library directory of the libnuma1 package that exists; none of libc6's.
        let usr_lib = dir.join("libnuma1_2.0.16-1_amd64/usr/lib");
        let expected = std::env::join_paths([usr_lib.join("x86_64-linux-gnu"), usr_lib]).unwrap();
        assert_eq!(r.library_path, Some(expected));
        assert!(r.setup_notes[0].contains("(the host lacks a library: cyclictest: error while"));
        assert_eq!(
            r.setup_notes[1],
            "SCHED_FIFO 90 with mlockall: NO, refused (Unable to change scheduling policy!): \
             ran SCHED_OTHER without -m -p"
        );
        let args: Vec<String> = r
            .command(200, 7)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.join(" "), "-a 0 -i 200 -l 7 -h 20000 -q");
        fs::remove_dir_all(dir).unwrap();

        // A library missing everywhere.
        let (dir, unpacked) = fake_cyclictest(
            "loader",
            "echo \"cyclictest: error while loading shared libraries: libx.so\" >&2; exit 127\n",
        );
        let e = find_runner(unpacked, false).unwrap_err();
        assert!(e.starts_with("cyclictest cannot start on this host"), "{e}");
        fs::remove_dir_all(dir).unwrap();

        // Refused with and without SCHED_FIFO (rt-tests 2.4 when not root).
        let (dir, unpacked) = fake_cyclictest(
            "refused",
            "echo \"Unable to change scheduling policy!\" >&2; exit 1\n",
        );
        let e = find_runner(unpacked, false).unwrap_err();
        assert!(
            e.starts_with(
                "cyclictest refused to run: with -m -p 90: Unable to change scheduling \
                 policy!; without them: Unable to change scheduling policy!"
            ),
            "{e}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    const PINGPONG_OUT: &str = "\
RESULT sched_policy fifo
NOTE yield_switch ns per hand-off, 5 rounds of 10000 round trips: min 477.9 median 479.6 max 483.5
RESULT yield_switch_ns 479.6
NOTE sem_pingpong ns per hand-off, 5 rounds of 10000 round trips: min 963.5 median 965.7 max 969.6
RESULT sem_pingpong_ns 965.7
";

    #[test]
    fn pingpong_output() {
        let p = parse_pingpong(PINGPONG_OUT);
        assert_eq!(p.policy.as_deref(), Some("fifo"));
        assert_eq!(p.yield_switch_ns, Some(479.6));
        assert_eq!(p.sem_pingpong_ns, Some(965.7));
        assert_eq!(p.notes.len(), 2);
        assert!(p.notes[1].starts_with("sem_pingpong ns per hand-off"));
        let p = parse_pingpong(
            "NOTE SCHED_FIFO refused (Operation not permitted): falling back\n\
             RESULT sched_policy other\nNOTE yield_switch failed\nRESULT sem_pingpong_ns x\n",
        );
        assert_eq!(p.policy.as_deref(), Some("other"));
        assert_eq!((p.yield_switch_ns, p.sem_pingpong_ns), (None, None));
        assert_eq!(p.notes.len(), 2);
    }

    /// bench-sched's output on LinuxU, and Linux's figures: the table of this bench.
    #[test]
    fn linuxu_table() {
        let rhea = bench::parse_sched_console(
            "RESULT conditions tsc_hz=2599909162 loops=1000
RESULT yield_switch cycles=1236.6 ns=475.4
RESULT sem_pingpong cycles=2002.3 ns=770.0
RESULT irq_to_thread min_ns=1498 avg_ns=1524 p99_ns=1548 max_ns=9099 samples=1000
RESULT cyclictest period=200 hog=0 min=16.93 avg=34.84 p99=73.89 max=164.25 samples=1000
RESULT done"
                .lines(),
        );
        let cyclic = [CyclicResult {
            period_us: 200,
            hog: false,
            min_us: 13.0,
            avg_us: 16.5,
            p99_us: Some(34.0),
            max_us: 39.0,
            samples: 1000,
            overflows: 0,
        }];
        let pingpong = parse_pingpong(PINGPONG_OUT);
        let linux = LinuxFigures {
            pingpong: Ok(pingpong),
            cyclictest: Err("not run".to_string()),
            cyclic: cyclic.to_vec(),
            notes: Vec::new(),
            wall: Duration::ZERO,
        };
        let table = bench::comparison_table(&rhea, Some(linux.baseline()), Platform::LinuxU);
        let text = bench::render_table_headed(&table, "Linux host");
        let cells = |start: &str| -> Vec<String> {
            let line = text.lines().find(|l| l.trim_start().starts_with(start));
            let line = line.unwrap_or_else(|| panic!("no line {start:?} in\n{text}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            words[words.len() - 3..]
                .iter()
                .map(|w| w.to_string())
                .collect()
        };
        assert_eq!(cells("measure"), ["Linux", "host", "Rhea/Linux"]);
        assert_eq!(cells("yield switch"), ["475.4", "479.6", "0.99"]);
        assert_eq!(cells("semaphore ping-pong"), ["770.0", "965.7", "0.80"]);
        assert!(text.contains(
            "Rhea 1237 cycles; goal: ≤ 300 cycles on KVM (not judged: LinuxU switches inside \
             a Linux process)"
        ));
        // p99 73.89/34, max 164.25/39.
        assert!(
            text.contains("goal: p99 and max ≤ ½ Linux's (p99 2.17, max 4.21 of Linux's: not met)"),
            "{text}"
        );
        assert!(text.contains("self-raised vector (synchronous: no signal)"));
        let missing_cyclic = table.iter().any(|l| {
            matches!(l, TableLine::Heading(h) if h == "cyclictest 1000 µs, hog (samples: Rhea missing, Linux missing)")
        });
        assert!(missing_cyclic, "{text}");
    }
}
