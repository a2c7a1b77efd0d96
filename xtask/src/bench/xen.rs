//! `cargo xtask bench xen [--board xen-x86_64|xen-arm64] [--loops N]`: what running under Xen
//! costs Rhea's scheduler — the same app, `apps/bench-sched`, booted on plain QEMU and then as
//! a Xen guest in the same run, with the figures side by side and the ratios Xen/plain.
//!
//! The pairs, one per architecture (default: both, x86_64 first):
//!
//! | arch    | plain QEMU (the baseline)        | under Xen 4.17                             |
//! |---------|----------------------------------|--------------------------------------------|
//! | x86_64  | `qemu-x86_64` q35                | `xen-x86_64` pvh-dom0 (the PVH hardware domain) |
//! | aarch64 | `qemu-aarch64` virt-gicv3 (v2)   | `xen-arm64` dom0less (dom0less-gicv2): a domU |
//!
//! `--machine` names the Xen board's machine (with `--board`); the baseline's machine follows
//! it (`dom0less-gicv2` is compared with `virt-gicv2`). Both sides get the same image source,
//! the same kernel command line (`loops=N` and `--append`), the same guest memory (`--mem`:
//! the plain machine's `-m`; Xen's `dom0_mem=` or the domU's `memory`) and the same vCPUs
//! (`--smp`), and both run under TCG: this host's `/dev/kvm` cannot run Xen, so the baseline is
//! TCG too (`--accel kvm` is refused). Under TCG the absolute figures are emulation time; the
//! ratios are the result.
//!
//! The parsing is `bench sched`'s ([`crate::bench::parse_sched_console`]). Before a ratio is
//! printed both sides' figures are checked ([`problems`]): every measure present, the counter
//! frequency known, `loops` as asked, every sample taken, min ≤ p50 ≤ p99 ≤ max, and nothing
//! negative, non-finite or above a second. When a side fails a check its figures are still
//! printed, the ratio column stays empty and the reasons are given.

use std::path::Path;
use std::time::Duration;

use crate::bench::linux_guest;
use crate::bench::{
    CYCLIC_RUNS, RheaSched, TableLine, figure, host_cpu_model, parse_sched_console, ratio_of,
    render_table_columns, rhea_version, sched_cmdline, sched_timeout, show_ratio,
};
use crate::qemu::{self, Accel, AccelChoice, Verdict};
use crate::{Error, Options, Result, Workspace, apps, boards, describe, fail, image, setup, usage};

/// One comparison: a plain QEMU board/machine and a Xen board/machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair {
    arch: &'static str,
    plain_board: &'static str,
    plain_machine: &'static str,
    xen_board: &'static str,
    xen_machine: &'static str,
}

/// The pairs: (Xen board, Xen machine, plain board, plain machine). The first of each Xen
/// board is its default.
const PAIRS: &[Pair] = &[
    Pair {
        arch: "x86_64",
        plain_board: "qemu-x86_64",
        plain_machine: "q35",
        xen_board: "xen-x86_64",
        xen_machine: "pvh-dom0",
    },
    Pair {
        arch: "aarch64",
        plain_board: "qemu-aarch64",
        plain_machine: "virt-gicv3",
        xen_board: "xen-arm64",
        xen_machine: "dom0less",
    },
    Pair {
        arch: "aarch64",
        plain_board: "qemu-aarch64",
        plain_machine: "virt-gicv2",
        xen_board: "xen-arm64",
        xen_machine: "dom0less-gicv2",
    },
];

/// Any figure above this (ns) is taken for a broken measurement, not a slow one.
const ABSURD_NS: f64 = 1e9;

/// The pairs `--board`/`--machine` select.
fn select(board: Option<&str>, machine: Option<&str>) -> Result<Vec<Pair>> {
    let Some(board) = board else {
        if machine.is_some() {
            return usage("`bench xen`: --machine needs --board xen-x86_64 or xen-arm64");
        }
        return Ok(PAIRS
            .iter()
            .filter(|p| {
                p.xen_machine == boards::find(p.xen_board).map_or("", |b| b.default_machine)
            })
            .copied()
            .collect());
    };
    let xen = boards::find(board)?;
    if !PAIRS.iter().any(|p| p.xen_board == board) {
        return usage(format!(
            "`bench xen` compares the Xen boards with plain QEMU: --board xen-x86_64 or \
             xen-arm64, not {board}"
        ));
    }
    let machine = xen.machine(machine)?;
    Ok(PAIRS
        .iter()
        .filter(|p| p.xen_board == board && p.xen_machine == machine)
        .copied()
        .collect())
}

/// One side's run.
#[derive(Debug, Default)]
struct Side {
    figures: RheaSched,
    /// Why the run did not end as it should (its figures may still be partial).
    failure: Option<String>,
    /// The QEMU command line.
    command: String,
    wall: Duration,
    /// The console, for the conditions Xen prints (version, command line, scheduler).
    console: Vec<String>,
    /// Xen's command line when Xen does not print it (Arm): from the devicetree source
    /// xen.rs wrote next to the `-dtb` of this run (`xen,xen-bootargs`).
    dts_bootargs: Option<String>,
    /// The host's 1-minute load average before and after the run.
    load: (String, String),
}

/// The host's 1-minute load average (`/proc/loadavg`), or `?`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

impl Side {
    /// The first console line containing `needle`, from just after it.
    fn console_after(&self, needle: &str) -> Option<&str> {
        self.console
            .iter()
            .find_map(|l| l.find(needle).map(|at| l[at + needle.len()..].trim()))
    }
}

/// Boots bench-sched once on `board`/`machine` and collects what it printed.
fn run_side(
    ws: &Workspace,
    board: &'static boards::Board,
    machine: &str,
    opts: &Options,
    cmdline: &str,
    timeout: Duration,
) -> Result<Side> {
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, crate::bench::SCHED_APP)?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let spec = qemu::Spec {
        board,
        machine,
        accel: Accel::Tcg,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: cmdline,
    };
    let command = qemu::command(&qemu, &spec)?;
    let dts_bootargs = command
        .get_args()
        .skip_while(|a| *a != "-dtb")
        .nth(1)
        .and_then(|dtb| std::fs::read_to_string(Path::new(dtb).with_extension("dts")).ok())
        .and_then(|dts| dts_bootargs(&dts));
    let command = describe(&command);
    println!(
        "== {}/{machine}/tcg: {} -append {cmdline:?} (timeout {} s)",
        board.name,
        crate::bench::SCHED_APP,
        timeout.as_secs()
    );
    let load_before = loadavg();
    let captured = qemu::run_captured(&qemu, &spec, None, timeout, opts.verbose)?;
    let load = (load_before, loadavg());
    let console: Vec<String> = captured.lines.iter().map(|(_, l)| l.clone()).collect();
    let figures = parse_sched_console(console.iter().map(String::as_str));
    let verdict = qemu::classify(&captured.end);
    let failure = match verdict {
        Verdict::Success if figures.done => None,
        Verdict::Success => Some("no `RESULT done` line".to_string()),
        other => Some(other.describe()),
    };
    if let Some(why) = &failure {
        let from = console.len().saturating_sub(30);
        println!("--- console (last {} lines) ---", console.len() - from);
        for line in &console[from..] {
            println!("| {line}");
        }
        if !captured.stderr.trim().is_empty() {
            println!("--- QEMU stderr ---\n{}", captured.stderr.trim_end());
        }
        println!("{}/{machine}: FAILED: {why}", board.name);
    } else {
        println!(
            "{}/{machine}: done in {:.1} s",
            board.name,
            captured.elapsed.as_secs_f64()
        );
    }
    Ok(Side {
        figures,
        failure,
        command,
        wall: captured.elapsed,
        console,
        dts_bootargs,
        load,
    })
}

/// The value of `xen,xen-bootargs = "...";` in a devicetree source.
fn dts_bootargs(dts: &str) -> Option<String> {
    let line = dts.lines().find(|l| l.contains("xen,xen-bootargs"))?;
    let value = line.split_once('"')?.1.rsplit_once('"')?.0;
    Some(value.replace("\\\"", "\""))
}

/// Why a side's figures cannot be compared (empty: they can).
fn problems(side: &Side, loops: u32) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &side.failure {
        out.push(format!("the run failed ({why})"));
    }
    let f = &side.figures;
    let missing = f.missing();
    if !missing.is_empty() {
        out.push(format!("missing: {}", missing.join(", ")));
    }
    if !f.unparsed.is_empty() {
        out.push(format!(
            "{} RESULT line(s) not understood",
            f.unparsed.len()
        ));
    }
    if f.tsc_hz == Some(0) {
        out.push("counter frequency unknown (tsc_hz=0): no ns figures".to_string());
    }
    if let Some(n) = f.loops
        && n != u64::from(loops)
    {
        out.push(format!("ran loops={n}, asked {loops}"));
    }
    let sane = |v: f64| v.is_finite() && (0.0..ABSURD_NS).contains(&v);
    for (name, s) in [
        ("yield_switch", f.yield_switch),
        ("sem_pingpong", f.sem_pingpong),
    ] {
        if let Some(s) = s
            && !(sane(s.ns) && s.ns > 0.0)
        {
            out.push(format!("{name} ns={} is absurd", s.ns));
        }
    }
    // (name, samples, [min, p50, p99, max] in ns; p50 may be absent).
    let mut latencies = Vec::new();
    if let Some(i) = f.irq_to_thread {
        latencies.push((
            "irq_to_thread".to_string(),
            i.samples,
            [Some(i.min_ns), i.p50_ns, Some(i.p99_ns), Some(i.max_ns)],
        ));
    }
    for (period, hog) in CYCLIC_RUNS {
        if let Some(c) = f.cyclic_run(period, hog) {
            let us = |v: f64| Some(v * 1000.0);
            latencies.push((
                format!("cyclictest period={period} hog={}", u8::from(hog)),
                c.samples,
                [
                    us(c.min_us),
                    f.cyclic_p50(period, hog).and_then(us),
                    c.p99_us.and_then(us),
                    us(c.max_us),
                ],
            ));
        }
    }
    for (name, samples, values) in latencies {
        if samples != u64::from(loops) {
            out.push(format!("{name}: {samples} samples, expected {loops}"));
        }
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        if let Some(bad) = known.iter().find(|v| !sane(**v)) {
            out.push(format!("{name}: {bad} ns is absurd"));
        } else if known.windows(2).any(|w| w[0] > w[1]) {
            out.push(format!("{name}: min ≤ p50 ≤ p99 ≤ max does not hold"));
        }
    }
    out
}

/// The rows of the table: measure, Xen's figure, plain's, Xen/plain (ratios only when
/// `ratios`).
fn table(xen: &RheaSched, plain: &RheaSched, ratios: bool) -> Vec<TableLine> {
    let mut t = Vec::new();
    let mut push = |name: String, x: Option<f64>, p: Option<f64>, decimals: usize| {
        let show =
            |v: Option<f64>| v.map_or_else(|| "missing".to_string(), |v| figure(v, decimals));
        let ratio = if ratios { ratio_of(x, p) } else { None };
        t.push(TableLine::Row(name, show(x), show(p), show_ratio(ratio)));
    };
    push(
        "yield switch, ns one way".to_string(),
        xen.yield_switch.map(|s| s.ns),
        plain.yield_switch.map(|s| s.ns),
        0,
    );
    push(
        "semaphore ping-pong, ns one way".to_string(),
        xen.sem_pingpong.map(|s| s.ns),
        plain.sem_pingpong.map(|s| s.ns),
        0,
    );
    let irq = |s: &RheaSched, k: usize| {
        s.irq_to_thread
            .and_then(|i| [i.p50_ns, Some(i.p99_ns), Some(i.max_ns)][k])
    };
    for (k, stat) in ["p50", "p99", "max"].into_iter().enumerate() {
        push(
            format!("interrupt→thread {stat}, ns"),
            irq(xen, k),
            irq(plain, k),
            0,
        );
    }
    for (period, hog) in CYCLIC_RUNS {
        let load = if hog { "hog" } else { "idle" };
        let cyc = |s: &RheaSched, k: usize| {
            let c = s.cyclic_run(period, hog)?;
            [s.cyclic_p50(period, hog), c.p99_us, Some(c.max_us)][k]
        };
        for (k, stat) in ["p50", "p99", "max"].into_iter().enumerate() {
            push(
                format!("cyclictest {period} µs {load}: lateness {stat}, µs"),
                cyc(xen, k),
                cyc(plain, k),
                1,
            );
        }
    }
    t
}

/// Xen's version line, after `Xen version `, shortened to the version, the package and the
/// `debug=` flag: `4.17.7 (Debian 4.17.7+13-...) (pkg-xen-devel@...) (gcc ...) debug=n <date>`
/// -> `4.17.7 (Debian 4.17.7+13-...) debug=n`.
fn xen_version(text: &str) -> String {
    let head = text.find(')').map_or(text, |at| &text[..=at]);
    match text.split_whitespace().find(|w| w.starts_with("debug=")) {
        Some(debug) => format!("{head} {debug}"),
        None => head.to_string(),
    }
}

/// The Xen line of the conditions: version, scheduler and command line as Xen printed them.
fn xen_conditions(xen: &Side) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "Xen:         {}",
        xen.console_after("Xen version ")
            .map_or("version not seen on the console".to_string(), xen_version)
    ));
    if let Some(sched) = xen.console_after("Using scheduler: ") {
        out.push(format!("Xen sched:   {sched}"));
    }
    let from_dts = xen
        .dts_bootargs
        .as_deref()
        .map(|a| (a, " (xen,xen-bootargs of the devicetree)"));
    match xen
        .console_after("Command line: ")
        .map(|c| (c, ""))
        .or(from_dts)
    {
        Some((cmdline, source)) => {
            out.push(format!("Xen cmdline: {cmdline}{source}"));
            if !cmdline.contains("timer_slop=") {
                out.push(
                    "  note:      no timer_slop= on Xen's command line: Xen's default slop (50 µs) \
                     may defer the guest's one-shot timers"
                        .to_string(),
                );
            }
        }
        None => out.push("Xen cmdline: not seen on the console".to_string()),
    }
    if let Some(line) = xen.console_after("rhea: xen: ") {
        out.push(format!("Rhea on Xen: {line}"));
    }
    out
}

/// Runs and reports one pair; `Ok(false)` when a side failed or its figures were refused.
fn compare(ws: &Workspace, pair: Pair, opts: &Options, loops: u32) -> Result<bool> {
    let plain_board = boards::find(pair.plain_board)?;
    let xen_board = boards::find(pair.xen_board)?;
    let cmdline = sched_cmdline(loops, opts.append());
    let timeout = sched_timeout(loops);
    println!();
    println!(
        "=== bench xen, {}: {}/{} (plain) then {}/{} (Xen), same app, command line, -m, vCPUs",
        pair.arch, pair.plain_board, pair.plain_machine, pair.xen_board, pair.xen_machine
    );
    let plain = run_side(ws, plain_board, pair.plain_machine, opts, &cmdline, timeout)?;
    // Xen's boot, and every guest exit emulated by TCG: a longer leash.
    let xen = run_side(
        ws,
        xen_board,
        pair.xen_machine,
        opts,
        &cmdline,
        timeout * 2 + Duration::from_secs(60),
    )?;

    let xen_problems = problems(&xen, loops);
    let plain_problems = problems(&plain, loops);
    let ratios = xen_problems.is_empty() && plain_problems.is_empty();

    let qemu = setup::ensure_qemu(plain_board)?;
    println!();
    println!(
        "== bench xen, {}: Rhea on {}/{} vs on plain {}/{}, -smp {}, loops {loops}",
        pair.arch, pair.xen_board, pair.xen_machine, pair.plain_board, pair.plain_machine, opts.smp
    );
    let c = Comparison {
        pair,
        opts,
        loops,
        cmdline: &cmdline,
        plain: &plain,
        xen: &xen,
    };
    print_conditions(ws, &c, &qemu.banner);
    print_notes(&c);
    println!();
    print_figures(
        &c,
        ratios,
        [("Xen", &xen_problems), ("plain QEMU", &plain_problems)],
    );
    Ok(ratios)
}

/// A comparison whose two sides have run.
struct Comparison<'a> {
    pair: Pair,
    opts: &'a Options,
    loops: u32,
    /// The kernel command line of both sides.
    cmdline: &'a str,
    plain: &'a Side,
    xen: &'a Side,
}

/// The `conditions:` block of a comparison: host, QEMU (`qemu_banner`), accelerator, Xen,
/// Rhea, counter, both QEMU command lines, wall times and host load.
fn print_conditions(ws: &Workspace, c: &Comparison<'_>, qemu_banner: &str) {
    let (pair, opts, plain, xen) = (c.pair, c.opts, c.plain, c.xen);
    println!("conditions:");
    println!(
        "  host CPU:    {} (nproc {})",
        host_cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  QEMU:        {qemu_banner}");
    println!(
        "  accel:       TCG on both sides (Xen needs virtualisation extensions this host's \
         /dev/kvm cannot give it; the baseline uses the same accelerator)"
    );
    for line in xen_conditions(xen) {
        println!("  {line}");
    }
    println!(
        "  Rhea:        {}, {}, command line {:?}, -smp {} and {} of guest memory on both sides",
        rhea_version(ws),
        crate::bench::SCHED_APP,
        c.cmdline,
        opts.smp,
        opts.mem
    );
    // The counter's frequency and tick: a figure is a whole number of ticks.
    let hz = |s: &Side| match s.figures.tsc_hz {
        Some(hz) if hz > 0 => format!("{hz} Hz (tick {:.2} ns)", 1e9 / hz as f64),
        _ => "unknown".to_string(),
    };
    println!(
        "  counter:     {}: Xen side {}, plain side {}",
        if pair.arch == "x86_64" {
            "TSC"
        } else {
            "CNTVCT_EL0"
        },
        hz(xen),
        hz(plain)
    );
    println!("  plain QEMU:  {}", plain.command);
    println!("  Xen QEMU:    {}", xen.command);
    println!(
        "  wall:        plain run {:.1} s, Xen run {:.1} s (Xen's boot included)",
        plain.wall.as_secs_f64(),
        xen.wall.as_secs_f64()
    );
    println!(
        "  host load:   1-min load average {} -> {} over the plain run, {} -> {} over the Xen \
         run (other work on the host lengthens the tails)",
        plain.load.0, plain.load.1, xen.load.0, xen.load.1
    );
}

/// The notes closing the conditions: how the two machines differ, and a quick `--loops`.
fn print_notes(c: &Comparison<'_>) {
    if c.pair.arch == "x86_64" {
        println!(
            "  note:        the Xen side runs on -M pc (board xen-x86_64's machine), the plain \
             side on q35; Rhea's timer there is Xen's VCPUOP_set_singleshot_timer, here the LAPIC"
        );
    } else {
        println!(
            "  note:        the Xen side runs QEMU -cpu max at EL2 (Xen) with Rhea at EL1 of a \
             domU; the plain side -cpu cortex-a72"
        );
    }
    if c.loops < linux_guest::DEFAULT_LOOPS {
        println!(
            "  note:        --loops {} is below {}: a quick check, not a baseline",
            c.loops,
            linux_guest::DEFAULT_LOOPS
        );
    }
}

/// The figures table (with ratios when both sides are usable, `ratios`), why a side's
/// figures are not (`problems`, per side), and the lines neither side's parser understood.
fn print_figures(c: &Comparison<'_>, ratios: bool, problems: [(&str, &Vec<String>); 2]) {
    println!(
        "figures (under TCG: emulation time; ratio Xen/plain, lower is better, 1.00 = no cost):"
    );
    print!(
        "{}",
        render_table_columns(
            &table(&c.xen.figures, &c.plain.figures, ratios),
            ["measure", "Xen", "plain QEMU", "Xen/plain"]
        )
    );
    for (name, problems) in problems {
        if !problems.is_empty() {
            println!("no ratios: the {name} side's figures are not usable:");
            for p in problems {
                println!("  - {p}");
            }
        }
    }
    for (name, side) in [("Xen", c.xen), ("plain QEMU", c.plain)] {
        for line in &side.figures.unparsed {
            println!("  {name}: not understood: {line}");
        }
    }
}

pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    if opts.accel == AccelChoice::Kvm {
        return usage(
            "`bench xen` runs under TCG only: Xen cannot run on this host's KVM, and the \
             baseline must use the same accelerator",
        );
    }
    let pairs = select(opts.board.as_deref(), opts.machine.as_deref())?;
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let mut failed = Vec::new();
    for pair in pairs {
        match compare(ws, pair, opts, loops) {
            Ok(true) => {}
            Ok(false) => failed.push(format!("{} (figures refused, see above)", pair.arch)),
            Err(Error::Usage(msg)) => return usage(msg),
            Err(e) => {
                println!("bench xen, {}: {e}", pair.arch);
                failed.push(format!("{} ({e})", pair.arch));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        fail(format!("bench xen: no ratios for {}", failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
RESULT conditions tsc_hz=2600000000 loops=4
RESULT yield_switch cycles=2600.0 ns=1000.0
RESULT sem_pingpong cycles=5200.0 ns=2000.0
RESULT irq_to_thread min_ns=900 avg_ns=1500 p50_ns=1200 p99_ns=4000 max_ns=9000 samples=4
RESULT cyclictest period=200 hog=0 min=1.50 avg=3.25 p50=3.00 p99=8.00 max=20.00 samples=4
RESULT cyclictest period=200 hog=1 min=1.75 avg=3.50 p50=3.25 p99=9.00 max=30.00 samples=4
RESULT cyclictest period=1000 hog=0 min=1.25 avg=3.00 p50=2.50 p99=7.00 max=15.00 samples=4
RESULT cyclictest period=1000 hog=1 min=1.00 avg=2.75 p50=2.00 p99=6.50 max=12.00 samples=4
RESULT done
";

    fn side(text: &str) -> Side {
        Side {
            figures: parse_sched_console(text.lines()),
            console: text.lines().map(str::to_string).collect(),
            ..Side::default()
        }
    }

    #[test]
    fn selection() {
        let all = select(None, None).unwrap();
        assert_eq!(
            all.iter().map(|p| p.xen_machine).collect::<Vec<_>>(),
            ["pvh-dom0", "dom0less"]
        );
        let arm = select(Some("xen-arm64"), Some("dom0less-gicv2")).unwrap();
        assert_eq!(arm.len(), 1);
        assert_eq!(arm[0].plain_machine, "virt-gicv2");
        assert_eq!(
            select(Some("xen-x86_64"), None).unwrap()[0].plain_board,
            "qemu-x86_64"
        );
        for bad in [
            select(Some("qemu-x86_64"), None),
            select(None, Some("q35")),
            select(Some("xen-x86_64"), Some("q35")),
        ] {
            assert!(matches!(bad, Err(Error::Usage(_))), "{bad:?}");
        }
    }

    #[test]
    fn sane_figures_pass() {
        assert_eq!(problems(&side(CONSOLE), 4), Vec::<String>::new());
    }

    #[test]
    fn absurd_or_missing_figures_are_named() {
        let p = problems(&side(CONSOLE), 10);
        assert!(
            p.iter().any(|p| p.contains("ran loops=4, asked 10")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("irq_to_thread: 4 samples")),
            "{p:?}"
        );

        let broken = CONSOLE
            .replace("tsc_hz=2600000000", "tsc_hz=0")
            .replace("ns=1000.0", "ns=inf")
            .replace("p50=2.50 p99=7.00", "p50=9.50 p99=7.00")
            .replace("RESULT done\n", "");
        let p = problems(&side(&broken), 4);
        assert!(p.iter().any(|p| p.contains("tsc_hz=0")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("yield_switch ns=inf")), "{p:?}");
        assert!(
            p.iter().any(|p| p.contains("period=1000 hog=0: min ≤ p50")),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.contains("missing: done")), "{p:?}");

        let mut failed = side(CONSOLE);
        failed.failure = Some("timeout".to_string());
        assert!(problems(&failed, 4)[0].contains("the run failed (timeout)"));
    }

    #[test]
    fn table_rows_and_ratios() {
        let xen = parse_sched_console(CONSOLE.replace("ns=1000.0", "ns=3000.0").lines());
        let plain = parse_sched_console(CONSOLE.lines());
        let rows: Vec<(String, String, String, String)> = table(&xen, &plain, true)
            .into_iter()
            .filter_map(|l| match l {
                TableLine::Row(a, b, c, d) => Some((a, b, c, d)),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 2 + 3 + 4 * 3);
        assert_eq!(
            rows[0],
            (
                "yield switch, ns one way".to_string(),
                "3000".to_string(),
                "1000".to_string(),
                "3.00".to_string()
            )
        );
        assert_eq!(rows[2].1, "1200");
        assert_eq!(rows[5].0, "cyclictest 200 µs idle: lateness p50, µs");
        assert_eq!((rows[5].1.as_str(), rows[5].3.as_str()), ("3.0", "1.00"));
        // Refused: figures shown, no ratio.
        for l in table(&xen, &plain, false) {
            if let TableLine::Row(_, _, _, r) = l {
                assert_eq!(r, "-");
            }
        }
        // A bench-sched without p50: `missing`, no ratio.
        let old = parse_sched_console(CONSOLE.replace(" p50_ns=1200", "").lines());
        let t = table(&old, &plain, true);
        assert!(matches!(&t[2], TableLine::Row(_, x, _, r) if x == "missing" && r == "-"));
    }

    #[test]
    fn xen_console_conditions() {
        let s = side(
            "(XEN) Xen version 4.17.7 (Debian 4.17.7) (gcc) debug=n\n\
             (XEN) Command line: console=com1 timer_slop=0\n\
             (XEN) Using scheduler: SMP Credit Scheduler rev2 (credit2)\n\
             rhea: xen: Xen 4.17 (CPUID base 0x40000000); timer: VCPUOP_set_singleshot_timer\n",
        );
        let c = xen_conditions(&s);
        assert_eq!(c[0], "Xen:         4.17.7 (Debian 4.17.7) debug=n");
        assert!(c[1].ends_with("(credit2)"), "{c:?}");
        assert!(c[2].ends_with("console=com1 timer_slop=0"), "{c:?}");
        assert!(c[3].contains("VCPUOP_set_singleshot_timer"), "{c:?}");
        assert_eq!(c.len(), 4);
        let mut arm = side("(XEN) Xen version 4.17.7 (Debian 4.17.7) debug=n\n");
        arm.dts_bootargs = dts_bootargs(
            "\t\tbootargs = \"x\";\n\t\txen,xen-bootargs = \"console=dtuart a=\\\"b\\\"\";\n",
        );
        assert_eq!(arm.dts_bootargs.as_deref(), Some("console=dtuart a=\"b\""));
        let c = xen_conditions(&arm);
        assert!(
            c[1].ends_with("a=\"b\" (xen,xen-bootargs of the devicetree)"),
            "{c:?}"
        );
        assert!(c.iter().any(|l| l.contains("no timer_slop=")), "{c:?}");
    }
}
