//! `cargo xtask bench sched --board qemu-aarch64|rpi4`: the scheduler benchmark on the Arm
//! boards.
//!
//! The same app (`apps/bench-sched`) as on x86_64, booted twice on the board's machine (default
//! `virt-gicv3`, or `raspi4b`; `--machine` chooses):
//!
//! 1. **TCG, real time**: the figures as the guest measures them with `CNTVCT_EL0`, which under
//!    TCG follows the host's clock. On these machines (no Arm host) that time is emulation time:
//!    it varies from run to run with the host's load and says little about hardware.
//! 2. **TCG with `-icount shift=0,sleep=off`**: QEMU's virtual clock advances exactly 1 ns per
//!    executed instruction (shift 0: 2^0 ns) and jumps over idle periods instead of waiting
//!    (`sleep=off`), so every figure the app prints in ns is a count of guest instructions, and
//!    the same build gives the same counts run after run. `shift=auto` would tie the clock to
//!    host speed again, which is what this run exists to avoid. It is booted twice and the two
//!    runs compared, so determinism is checked, not assumed.
//!
//! The Linux-guest comparison of `bench sched --board qemu-x86_64` is x86_64-only for now (no
//! arm64 Linux guest baseline yet); the output says so.

use std::time::Duration;

use crate::bench::linux_guest;
use crate::bench::{CYCLIC_RUNS, RheaSched, parse_sched_console, sched_cmdline, sched_timeout};
use crate::qemu::{self, Accel, Verdict};
use crate::{Options, Result, Workspace, apps, boards, fail, image, setup};

/// QEMU's deterministic-clock options (see the module documentation).
const ICOUNT: &[&str] = qemu::DETERMINISTIC_ICOUNT;

/// One boot of bench-sched; its figures.
fn boot(
    qemu: &qemu::Qemu,
    spec: &qemu::Spec<'_>,
    extra: &[&str],
    timeout: Duration,
    verbose: bool,
) -> Result<(RheaSched, Duration)> {
    let captured = qemu::run_captured_with(qemu, spec, extra, timeout, verbose)?;
    let rhea = parse_sched_console(captured.lines.iter().map(|(_, l)| l.as_str()));
    let verdict = qemu::classify(&captured.end);
    if verdict != Verdict::Success || !rhea.done {
        let from = captured.lines.len().saturating_sub(30);
        for (_, line) in &captured.lines[from..] {
            println!("| {line}");
        }
        if !captured.stderr.trim().is_empty() {
            println!("--- QEMU stderr ---\n{}", captured.stderr.trim_end());
        }
        let why = match verdict {
            Verdict::Success => "no `RESULT done` line".to_string(),
            other => other.describe(),
        };
        return fail(format!("bench-sched did not finish ({why})"));
    }
    Ok((rhea, captured.elapsed))
}

fn f(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "missing".to_string(), |v| format!("{v:.decimals$}"))
}

/// The rows of the report: measure, TCG figure, icount figure (instructions).
fn rows(tcg: &RheaSched, icount: &RheaSched) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for (name, t, i) in [
        (
            "yield switch, one way",
            tcg.yield_switch,
            icount.yield_switch,
        ),
        (
            "semaphore ping-pong, one way",
            tcg.sem_pingpong,
            icount.sem_pingpong,
        ),
    ] {
        rows.push((
            name.to_string(),
            format!(
                "{} ns ({} counter ticks)",
                f(t.map(|s| s.ns), 0),
                f(t.map(|s| s.cycles), 1)
            ),
            format!("{} instructions", f(i.map(|s| s.ns), 0)),
        ));
    }
    let stats = |s: &RheaSched, k: usize| {
        s.irq_to_thread
            .map(|i| [i.min_ns, i.avg_ns, i.p99_ns, i.max_ns][k])
    };
    for (k, stat) in ["min", "avg", "p99", "max"].into_iter().enumerate() {
        rows.push((
            format!("interrupt→thread, {stat}"),
            format!("{} ns", f(stats(tcg, k), 0)),
            format!("{} instructions", f(stats(icount, k), 0)),
        ));
    }
    for (period, hog) in CYCLIC_RUNS {
        let load = if hog { "hog" } else { "idle" };
        let c = |s: &RheaSched| s.cyclic_run(period, hog).map(|c| (c.p99_us, c.max_us));
        let (tp99, tmax) = c(tcg).map_or((None, None), |(p, m)| (p, Some(m)));
        let (ip99, imax) = c(icount).map_or((None, None), |(p, m)| (p, Some(m)));
        rows.push((
            format!("cyclictest {period} µs {load}, p99 / max lateness"),
            format!("{} / {} µs", f(tp99, 1), f(tmax, 1)),
            format!("{} / {} thousand instructions", f(ip99, 1), f(imax, 1)),
        ));
    }
    rows
}

/// Whether two icount runs gave the same switch and interrupt figures.
fn same_figures(a: &RheaSched, b: &RheaSched) -> bool {
    a.yield_switch == b.yield_switch
        && a.sem_pingpong == b.sem_pingpong
        && a.irq_to_thread == b.irq_to_thread
}

pub(crate) fn sched(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(opts.board_name())?;
    let machine = board.machine(opts.machine.as_deref())?;
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, crate::bench::SCHED_APP)?;
    setup::ensure_toolchain(ws, board)?;
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let cmdline = sched_cmdline(loops, opts.append());
    let spec = qemu::Spec {
        board,
        machine,
        accel: Accel::Tcg,
        smp: 1,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &cmdline,
    };
    println!(
        "== Rhea: bench-sched on {}/{machine}/tcg, -append {cmdline:?}",
        board.name
    );
    let runs = measure(&qemu, &spec, sched_timeout(loops), opts.verbose)?;

    println!();
    println!(
        "== bench sched: Rhea on {}, machine {machine}, loops {loops}",
        board.name
    );
    print_conditions(&qemu.banner, machine, &opts.mem, &runs);
    println!();
    print_rows(&runs.tcg, &runs.icount);
    let missing: Vec<String> = runs
        .tcg
        .missing()
        .into_iter()
        .chain(runs.icount.missing())
        .collect();
    if !missing.is_empty() {
        return fail(format!(
            "bench-sched did not print every measure; missing: {}",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The three boots of [`sched`]: TCG in real time, then twice under [`ICOUNT`].
struct Runs {
    tcg: RheaSched,
    tcg_wall: Duration,
    icount: RheaSched,
    icount_wall: Duration,
    /// The two icount runs gave the same figures.
    deterministic: bool,
}

/// Boots `spec` once under TCG in real time, then twice under [`ICOUNT`], and compares the
/// two icount runs.
fn measure(
    qemu: &qemu::Qemu,
    spec: &qemu::Spec<'_>,
    timeout: Duration,
    verbose: bool,
) -> Result<Runs> {
    let (tcg, tcg_wall) = boot(qemu, spec, &[], timeout, verbose)?;
    println!("== the same under {}, twice", ICOUNT.join(" "));
    let (icount, icount_wall) = boot(qemu, spec, ICOUNT, timeout, verbose)?;
    let (again, _) = boot(qemu, spec, ICOUNT, timeout, verbose)?;
    let deterministic = same_figures(&icount, &again);
    Ok(Runs {
        tcg,
        tcg_wall,
        icount,
        icount_wall,
        deterministic,
    })
}

/// The `conditions:` block: QEMU (`qemu_banner`), host CPU, the guest `machine` with `mem`,
/// wall times, icount and its determinism, and the notes.
fn print_conditions(qemu_banner: &str, machine: &str, mem: &str, runs: &Runs) {
    println!("conditions:");
    println!("  QEMU:        {qemu_banner}");
    println!(
        "  host CPU:    {} (TCG: no hardware virtualisation for aarch64 on this host)",
        crate::bench::host_cpu_model()
    );
    println!(
        "  guest:       {}; counter {} Hz (CNTFRQ_EL0)",
        if machine == "raspi4b" {
            "raspi4b: -M raspi4b (Cortex-A72 x4, 2 GiB; CPUs 1-3 parked in wfi)".to_string()
        } else {
            let gic = machine.trim_start_matches("virt-gicv");
            format!("{machine}: -M virt,gic-version={gic} -cpu cortex-a72 -smp 1 -m {mem}")
        },
        runs.tcg
            .tsc_hz
            .map_or("unknown".to_string(), |hz| hz.to_string())
    );
    println!(
        "  wall:        TCG run {:.1} s, icount run {:.1} s",
        runs.tcg_wall.as_secs_f64(),
        runs.icount_wall.as_secs_f64()
    );
    println!(
        "  icount:      {} (1 ns of guest time = 1 instruction); two runs {}",
        ICOUNT.join(" "),
        if runs.deterministic {
            "gave identical switch and interrupt figures (deterministic)"
        } else {
            "DIFFERED (not deterministic: see the figures of each run with --verbose)"
        }
    );
    println!(
        "  note:        the Linux-guest comparison is x86_64-only for now (`cargo xtask bench \
         sched --board qemu-x86_64`); no arm64 Linux guest baseline yet"
    );
    println!(
        "  note:        TCG real-time figures are emulation time (host-dependent); the icount \
         column is the repeatable one"
    );
}

/// The figures: one row per measure, TCG's and icount's side by side.
fn print_rows(tcg: &RheaSched, icount: &RheaSched) {
    let rows = rows(tcg, icount);
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max("TCG, real time".len());
    println!(
        "  {:<w0$}  {:>w1$}  -icount shift=0",
        "measure", "TCG, real time"
    );
    for (a, b, c) in &rows {
        println!("  {a:<w0$}  {b:>w1$}  {c}");
    }
}
