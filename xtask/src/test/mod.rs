//! `cargo xtask test`: host unit tests, then every app booted on every board/machine/accel.
//!
//! 1. `cargo test` with no `-p` (the workspace's `default-members` are the host-testable
//!    crates); a failure counts as one failed item, "host unit tests". Skipped with
//!    `--no-host`, or when `--filter` is given and does not match "host unit tests".
//!    Then the loom model checks of every crate in [`LOOM_CRATES`] (`--cfg loom`, release,
//!    into `target/loom` so the normal host build is not redone), one item per crate
//!    ("host/loom rhea-queue", "host/loom rhea-smp", ...), each skipped likewise.
//!    Then every fuzz target for [`fuzz::TEST_SECONDS`] (`cargo xtask fuzz`, libFuzzer), one
//!    item per target ("host/fuzz/net_frame", ...), after one build of them all; skipped
//!    likewise. A crash fails its item, naming the saved input.
//! 2. For each board, each app (`apps/*`, `tests/*`) is built once and booted on each of the
//!    board's machines under TCG, and under KVM too when hardware KVM is usable (only for
//!    boards of the host's instruction set). The images are built by a background thread in
//!    boot order while the ones before are booting (`builder.rs`); a build prints one line,
//!    `build: <board> <app> ready (<secs> s)`, and its output only if it fails. A case passes iff QEMU ends as the app's `expect`
//!    says and every `console` fragment (or its architecture's `arch.<arch>.console`) appears,
//!    in order. Apps with `test = false` (benchmarks) are skipped unless `--app` names them;
//!    apps with `boards = [...]` boot only on those boards.
//!
//! Every boot gets the kernel command line `rhea.checker=1` (the kernel checks its scheduler
//! invariants at every scheduling decision and panics on a violation), then the app's
//! `cmdline`, then `--append`; the app's `stdin` is written to the guest's serial input.
//!
//! 3. The special cases: the strict command line, the TSC's frequency sources on qemu-x86_64
//!    (`tsc_ref.rs`), the appliance's network tests, its status page screenshotted by
//!    headless Chromium (`status_page.rs`), its abuse tests, Xen netfront.
//! 4. Without `--accel` (auto), the boots of step 2 once more, each under a real Linux KVM
//!    inside a Linux guest under TCG (`nested/`; qemu-x86_64 and qemu-aarch64), all of a board's
//!    in one such guest per L1 machine: cases `<board>/<machine>/nested-kvm <app>`, judged as
//!    above (on qemu-aarch64 the exit status is Rhea's console line, KVM serving no
//!    semihosting). `--accel nested-kvm` runs only these. A host without the means (QEMU,
//!    packages) reports them `NOT RUN` with the reason, and the summary then says
//!    `N passed, N failed, N not run` (and fails).
//!
//! The steps are the methods of `TestRun`, called in this order by [`run`].
//!
//! One line per case (`PASS qemu-x86_64/q35/tcg hello (0.42 s)`), then exactly one summary
//! line `N passed, N failed`; the exit code is non-zero if anything failed.

pub(crate) mod abuse;
mod builder;
pub(crate) mod cmdline;
pub(crate) mod fs;
mod fs_disk;
pub(crate) mod nested_net;
pub(crate) mod net;
pub(crate) mod screen;
pub(crate) mod shell;
pub(crate) mod ssh;
pub(crate) mod status_page;
pub(crate) mod trace_pi;
pub(crate) mod tsc_ref;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::apps::{self, App, Expect};
use crate::boards::Runner;
use crate::boards::{self, Board};
use crate::qemu::{self, Accel, NicModel, Qemu, Verdict};
use crate::xen::dom0::{self, Dom0Outcome, Dom0Spec};
use crate::{Error, Options, Result, Workspace, describe, fuzz, image, nested, setup};

/// The name of the host unit test item (`--filter` applies to it too).
const HOST_TESTS: &str = "host unit tests";

/// The prefix of the loom model-check items, one per crate: "host/loom <crate>" (`--filter`
/// applies to each).
const LOOM_TESTS: &str = "host/loom";

/// The crates whose lock-free code has loom model checks (`tests/loom.rs`, under `--cfg loom`):
/// the queues, the cross-CPU call mailboxes, the IRQ registry, the Xen event-channel demux, the
/// fixed-block pool's free stack.
const LOOM_CRATES: &[&str] = &[
    "rhea-queue",
    "rhea-trace",
    "rhea-mm",
    "rhea-smp",
    "rhea-irq",
    "rhea-board-xen-common",
];

/// The prefix of the fuzz items, one per target: "host/fuzz/<target>" (`--filter` applies).
const FUZZ_TESTS: &str = "host/fuzz";

/// Console lines shown when a case fails.
const TAIL_LINES: usize = 40;

/// What every test boot starts its kernel command line with.
pub(crate) const TEST_CMDLINE: &str = "rhea.checker=1";

/// The kernel command line of a test boot: [`TEST_CMDLINE`], the app's `cmdline`, then
/// `--append`, space-separated (empty parts left out).
pub(crate) fn boot_cmdline(app_cmdline: &str, append: &str) -> String {
    [TEST_CMDLINE, app_cmdline.trim(), append.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the first fragment that is missing (in order) is, if any.
pub(crate) fn missing_fragment(console: &str, fragments: &[String]) -> Option<usize> {
    let mut rest = console;
    for (i, fragment) in fragments.iter().enumerate() {
        match rest.find(fragment.as_str()) {
            Some(at) => rest = &rest[at + fragment.len()..],
            None => return Some(i),
        }
    }
    None
}

/// Decides a case: `Ok` if QEMU ended as expected and every fragment appeared in order.
pub(crate) fn judge(
    expect: Expect,
    verdict: &Verdict,
    console: &str,
    fragments: &[String],
) -> Result<(), String> {
    match (expect, verdict) {
        (Expect::Success, Verdict::Success) | (Expect::Failure, Verdict::KernelFailure) => {}
        (Expect::Success, Verdict::KernelFailure) => {
            return Err("kernel reported failure, expected success".to_string());
        }
        (Expect::Failure, Verdict::Success) => {
            return Err("kernel reported success, expected failure".to_string());
        }
        (_, Verdict::Other(why)) => return Err(why.clone()),
    }
    match missing_fragment(console, fragments) {
        None => Ok(()),
        Some(0) => Err(format!("console lacks {:?}", fragments[0])),
        Some(i) => Err(format!(
            "console lacks {:?} after {:?}",
            fragments[i],
            fragments[i - 1]
        )),
    }
}

/// The name of a case, which `--filter` matches against; `accel` is the accelerator's name
/// (`tcg`, `kvm`) or `nested-kvm`.
pub(crate) fn case_name(board: &str, machine: &str, accel: &str, app: &str) -> String {
    format!("{board}/{machine}/{accel} {app}")
}

/// Pass/fail counts, and the cases that could not run.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Cases the host lacks the means for (e.g. the nested-KVM L1's QEMU or packages):
    /// neither passed nor failed, but the run is not a success.
    not_run: usize,
    /// Per case name, (passed, booted): what `--repeat` reports.
    counts: std::collections::BTreeMap<String, (u32, u32)>,
}

impl Tally {
    fn pass(&mut self, name: &str, took: Duration) {
        self.passed += 1;
        self.count(name, true);
        println!("PASS {name} ({:.2} s)", took.as_secs_f64());
    }

    fn count(&mut self, name: &str, passed: bool) {
        let c = self.counts.entry(name.to_string()).or_default();
        c.0 += u32::from(passed);
        c.1 += 1;
    }

    /// The pass counts of the cases booted more than once (`--repeat`), one a line.
    fn repeat_report(&self) -> Vec<String> {
        self.counts
            .iter()
            .filter(|(_, c)| c.1 > 1)
            .map(|(name, &(p, n))| format!("{p}/{n} passed: {name}"))
            .collect()
    }

    fn fail(&mut self, name: &str, took: Option<Duration>, reason: &str) {
        self.failed += 1;
        self.count(name, false);
        match took {
            Some(t) => println!("FAIL {name} ({:.2} s): {reason}", t.as_secs_f64()),
            None => println!("FAIL {name}: {reason}"),
        }
    }

    fn not_run(&mut self, name: &str, reason: &str) {
        self.not_run += 1;
        println!("NOT RUN {name}: {reason}");
    }

    /// Counts a case that took from `start` to now as passed or failed.
    fn record(&mut self, name: &str, start: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => self.pass(name, start.elapsed()),
            Err(e) => self.fail(name, Some(start.elapsed()), &e),
        }
    }

    /// The summary line (`, N not run` only when some could not run); an error (already
    /// reported) if anything failed, could not run, or nothing ran.
    fn finish(self) -> Result<()> {
        let repeats = self.repeat_report();
        if !repeats.is_empty() {
            println!("pass counts (--repeat):");
            for line in repeats {
                println!("  {line}");
            }
        }
        if self.passed + self.failed + self.not_run == 0 {
            eprintln!("warning: no test case ran (check --filter/--board/--app/--machine)");
            println!("0 passed, 0 failed");
            return Err(Error::Quiet(1));
        }
        if self.not_run > 0 {
            println!(
                "{} passed, {} failed, {} not run",
                self.passed, self.failed, self.not_run
            );
        } else {
            println!("{} passed, {} failed", self.passed, self.failed);
        }
        if self.failed > 0 || self.not_run > 0 {
            Err(Error::Quiet(1))
        } else {
            Ok(())
        }
    }
}

/// Says which apps boards with [`Board::kernel_only_apps_on`] leave to another board.
fn announce_kernel_only(boards: &[&Board], apps: &[&App]) {
    let names: Vec<&str> = apps
        .iter()
        .filter(|a| a.kernel_only)
        .map(|a| a.name.as_str())
        .collect();
    if names.is_empty() {
        return;
    }
    for b in boards {
        if let Some(other) = b.kernel_only_apps_on {
            println!(
                "not booted on {} (kernel-only, booted on {other}, whose kernel it runs): {}",
                b.name,
                names.join(", ")
            );
        }
    }
}

/// One boot of an app on a board: a machine, accelerator and CPU count (or simulation seed).
#[derive(Clone)]
struct Case {
    machine: &'static str,
    accel: Accel,
    smp: u32,
    /// The simulation seed (`sim-seeds`, on LinuxU's `sim` machine only).
    seed: Option<u64>,
    /// What `PASS`/`FAIL` lines and `--filter` name it by.
    name: String,
}

/// `cargo xtask test`, as a pipeline: select the boards and apps, run the host items (unit
/// tests, loom checks, fuzz targets), boot every app on every board, then the special cases
/// (the strict command line, the appliance's network and abuse tests, Xen netfront), and
/// print the summary.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let board_list = select_boards(opts)?;
    let all_apps = apps::discover(&ws.root)?;
    let (app_list, skipped) = select_apps(opts, &all_apps)?;
    // Validate --machine for every board before anything runs.
    for board in &board_list {
        board.machines_to_test(opts.machine.as_deref())?;
    }
    let mut t = TestRun {
        ws,
        opts,
        all_apps: &all_apps,
        tally: Tally::default(),
    };
    // Each step's wall time, printed before the summary: where CI's time goes.
    let mut clock = StepClock::new();
    t.host_unit_tests();
    clock.lap("host unit tests");
    t.loom_checks();
    clock.lap("loom");
    t.fuzz_targets();
    clock.lap("fuzz");
    let accels = announce_accels(opts);
    if !skipped.is_empty() {
        println!(
            "not booted (test = false in their Cargo.toml): {}",
            skipped.join(", ")
        );
    }
    if opts.app.is_none() {
        announce_kernel_only(&board_list, &app_list);
    }
    if opts.accel == qemu::AccelChoice::NestedKvm {
        // Only the nested boots: the special cases below are TCG runs.
        t.nested_kvm_cases(&board_list, &app_list)?;
        t.nested_net_cases(&board_list);
        clock.lap("nested KVM");
        clock.print();
        return t.tally.finish();
    }
    let board_names: Vec<&str> = board_list.iter().map(|b| b.name).collect();
    let planned = t.plan_boots(&board_list, &app_list, &accels)?;
    // The images are built by lanes of builders, in boot order, while this one boots those
    // built (builder.rs says why).
    let builds = builder::Handoff::new(planned.len(), builder::LANES);
    let toolchains = std::sync::Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            builds.make_all(
                |i| planned[i].board.name.to_string(),
                |i| {
                    let p = &planned[i];
                    build_planned(ws, p.board, p.app, &toolchains)
                },
            );
        });
        let _stop = builder::StopOnDrop(&builds);
        t.boot_apps(&planned, &builds);
    });
    clock.lap("builds and boots");
    t.cmdline_cases(&board_names);
    t.tsc_ref_cases(&board_names);
    clock.lap("cmdline and tsc cases");
    t.appliance_net_cases(&board_names);
    clock.lap("appliance net");
    t.screen_cases(&board_names);
    t.status_page_case(&board_names);
    clock.lap("screen and status page");
    t.trace_pi_cases(&board_names);
    clock.lap("trace-pi");
    t.shell_cases(&board_names);
    clock.lap("shell");
    t.fs_cases(&board_names);
    clock.lap("fs");
    t.appliance_wire_cases(&board_names, &ABUSE_CASES, Exercise::Abuse);
    clock.lap("appliance abuse");
    t.appliance_wire_cases(&board_names, &ssh::CASES, Exercise::Ssh);
    clock.lap("appliance ssh");
    t.xen_netfront_cases(&board_names);
    clock.lap("xen netfront");
    if opts.accel == qemu::AccelChoice::Auto {
        // Step 4: every app again under a real KVM, one level down (nested/), on the boards
        // that have an L1; a host without the means reports those cases as not run.
        let nested_boards: Vec<&'static Board> = board_list
            .iter()
            .copied()
            .filter(|b| nested::has_l1(b).is_ok())
            .collect();
        t.nested_kvm_cases(&nested_boards, &app_list)?;
        t.nested_net_cases(&nested_boards);
        clock.lap("nested KVM");
    }
    clock.print();
    t.tally.finish()
}

/// The name of a special case (one that boots an app its own way on a fixed board and machine,
/// TCG or a LinuxU process): `<board>/<machine>/<tcg|native> <what>`.
fn special_case_name(board: &str, machine: &str, what: &str) -> String {
    let accel = if board == "linuxu" { "native" } else { "tcg" };
    format!("{board}/{machine}/{accel} {what}")
}

/// Wall time per step of a run.
struct StepClock {
    steps: Vec<(&'static str, Duration)>,
    last: Instant,
}

impl StepClock {
    /// A clock whose first step begins now.
    fn new() -> StepClock {
        StepClock {
            steps: Vec::new(),
            last: Instant::now(),
        }
    }

    /// Ends the step `name`, begun at the previous lap (or when the clock was made).
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now - self.last));
        self.last = now;
    }

    /// One line: each step that took at least a second, and the total.
    fn print(&self) {
        let total: Duration = self.steps.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, d)| d.as_secs() >= 1)
            .map(|(n, d)| format!("{n} {:.0} s", d.as_secs_f64()))
            .collect();
        println!(
            "time: {} (total {:.0} s)",
            parts.join(", "),
            total.as_secs_f64()
        );
    }
}

/// The boards to test: `--board`, else every board tested by default.
fn select_boards(opts: &Options) -> Result<Vec<&'static Board>> {
    Ok(match &opts.board {
        Some(name) => vec![boards::find(name)?],
        None => boards::BOARDS.iter().filter(|b| b.default_test).collect(),
    })
}

/// The apps to boot (`--app`, else every app with `test = true`), and the names of those left
/// out for `test = false` (none when `--app` is given).
fn select_apps<'a>(opts: &Options, all_apps: &'a [App]) -> Result<(Vec<&'a App>, Vec<&'a str>)> {
    Ok(match &opts.app {
        Some(name) => (vec![apps::find(all_apps, name)?], Vec::new()),
        None => (
            all_apps.iter().filter(|a| a.test).collect(),
            all_apps
                .iter()
                .filter(|a| !a.test)
                .map(|a| a.name.as_str())
                .collect(),
        ),
    })
}

/// The accelerators to boot under (`--accel`, and whether hardware KVM is usable), printed
/// with the reason as the `accel:` line.
fn announce_accels(opts: &Options) -> Vec<Accel> {
    let hw_kvm = qemu::probe_hardware_kvm();
    let accels = qemu::accels_to_test(opts.accel, &hw_kvm);
    let mut accel_names: Vec<&str> = accels.iter().map(|a| a.name()).collect();
    let why = match (&hw_kvm, opts.accel) {
        (_, qemu::AccelChoice::NestedKvm) => {
            accel_names.push(qemu::NESTED_KVM);
            "set by --accel: KVM inside a Linux guest under TCG".to_string()
        }
        (_, qemu::AccelChoice::Tcg | qemu::AccelChoice::Kvm) => "set by --accel".to_string(),
        (Ok(()), _) => {
            accel_names.push(qemu::NESTED_KVM);
            "hardware KVM usable; nested-kvm: KVM inside a Linux guest under TCG".to_string()
        }
        (Err(why), _) => {
            accel_names.push(qemu::NESTED_KVM);
            format!("{why}; nested-kvm: KVM inside a Linux guest under TCG")
        }
    };
    if let (qemu::AccelChoice::Kvm, Err(why)) = (opts.accel, &hw_kvm) {
        eprintln!("warning: KVM forced by --accel kvm, but {why}");
    }
    println!("accel: {} ({why})", accel_names.join(" + "));
    accels
}

/// One `cargo xtask test`: what it was asked, and the tally of its items so far.
struct TestRun<'a> {
    ws: &'a Workspace,
    opts: &'a Options,
    /// Every app found, whether selected or not (the special cases look theirs up here).
    all_apps: &'a [App],
    tally: Tally,
}

impl TestRun<'_> {
    /// Whether `--filter` (if any) selects the item or case `name`.
    fn wanted(&self, name: &str) -> bool {
        self.opts
            .filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Whether the appliance's special cases are selected: by `--app` (if any) and, when
    /// `machine` is given, by `--machine`.
    fn appliance_wanted(&self, machine: Option<&str>) -> bool {
        let machine_ok = match machine {
            Some(machine) => self.opts.machine.as_deref().is_none_or(|m| m == machine),
            None => true,
        };
        machine_ok && self.opts.app.as_deref().is_none_or(|a| a == "appliance")
    }

    /// Runs a `cargo test` command as the item `item`.
    fn cargo_item(&mut self, item: &str, mut cmd: std::process::Command) {
        let start = Instant::now();
        let status = cmd.status();
        let took = start.elapsed();
        match status {
            Ok(s) if s.success() => self.tally.pass(item, took),
            Ok(s) => self
                .tally
                .fail(item, Some(took), &format!("cargo test: {s}")),
            Err(e) => self
                .tally
                .fail(item, None, &format!("cannot run cargo: {e}")),
        }
    }

    /// Step 1a: `cargo test` of the host-testable crates.
    fn host_unit_tests(&mut self) {
        if self.opts.no_host || !self.wanted(HOST_TESTS) {
            return;
        }
        let mut cmd = self.ws.cargo();
        cmd.arg("test");
        println!("== host unit tests: {}", describe(&cmd));
        self.cargo_item(HOST_TESTS, cmd);
    }

    /// Step 1b: the loom model checks, one item per crate of [`LOOM_CRATES`].
    fn loom_checks(&mut self) {
        for krate in LOOM_CRATES {
            let item = format!("{LOOM_TESTS} {krate}");
            if self.opts.no_host || !self.wanted(&item) {
                continue;
            }
            let mut cmd = self.ws.cargo();
            cmd.args(["test", "-p", krate, "--release"])
                .env("RUSTFLAGS", "--cfg loom")
                .env("CARGO_TARGET_DIR", self.ws.root.join("target/loom"))
                // A failing model panics on one of loom's 32 KiB coroutine stacks; capturing a
                // backtrace there can overflow it, and the run then hangs instead of failing.
                .env("RUST_BACKTRACE", "0");
            println!(
                "== {item}: RUSTFLAGS=\"--cfg loom\" RUST_BACKTRACE=0 {}",
                describe(&cmd)
            );
            self.cargo_item(&item, cmd);
        }
    }

    /// Step 1c: every fuzz target for [`fuzz::TEST_SECONDS`], after one build of them all.
    fn fuzz_targets(&mut self) {
        let fuzz_items: Vec<(&str, String)> = fuzz::TARGETS
            .iter()
            .map(|(t, _)| (*t, format!("{FUZZ_TESTS}/{t}")))
            .filter(|(_, item)| !self.opts.no_host && self.wanted(item))
            .collect();
        if fuzz_items.is_empty() {
            return;
        }
        // One build for every target; its time is printed on its own.
        let start = Instant::now();
        let built = fuzz::build(self.ws, self.opts.verbose);
        println!(
            "== {FUZZ_TESTS}: build {:.2} s",
            start.elapsed().as_secs_f64()
        );
        if let Err(e) = &built {
            for (_, item) in &fuzz_items {
                self.tally.fail(item, None, &e.to_string());
            }
            return;
        }
        // Two at a time, one per core: each is one single-threaded process for a fixed time,
        // so two take the time of one (CI: 9 targets, 100 s one after the other).
        for pair in fuzz_items.chunks(2) {
            let runs: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = pair
                    .iter()
                    .map(|(target, _)| {
                        s.spawn(|| {
                            let start = Instant::now();
                            let report = fuzz::run_target(
                                self.ws,
                                target,
                                fuzz::TEST_SECONDS,
                                self.opts.verbose,
                            );
                            (report, start.elapsed())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            (crate::fail("the fuzz runner panicked"), Duration::ZERO)
                        })
                    })
                    .collect()
            });
            for ((target, item), (report, took)) in pair.iter().zip(runs) {
                self.fuzz_result(target, item, report, took);
            }
        }
    }

    /// One fuzz target's run, as the item `item`; a crash names the saved input.
    fn fuzz_result(
        &mut self,
        target: &str,
        item: &str,
        report: Result<fuzz::Report>,
        took: Duration,
    ) {
        match report {
            Ok(r) if r.crash.is_none() => {
                println!("   {item}: {}", r.summary());
                self.tally.pass(item, took);
            }
            Ok(r) => {
                let artifact = r.artifact.as_deref().unwrap_or("(no input saved)");
                let reason = format!(
                    "{}; input {artifact}; {}",
                    r.crash.as_deref().unwrap_or("crash"),
                    fuzz::replay_hint(self.ws, target, artifact)
                );
                self.tally.fail(item, Some(took), &reason);
            }
            Err(e) => self.tally.fail(item, Some(took), &e.to_string()),
        }
    }

    /// Step 2's plan: the apps of `apps` to build for each board of `boards` and boot, with
    /// their cases, in boot order ([`builder::plan`]).
    fn plan_boots<'a>(
        &self,
        boards: &[&'static Board],
        apps: &[&'a App],
        accels: &[Accel],
    ) -> Result<Vec<builder::Planned<'a>>> {
        let mut machines = HashMap::new();
        for &board in boards {
            machines.insert(
                board.name,
                board.machines_to_test(self.opts.machine.as_deref())?,
            );
        }
        Ok(builder::plan(boards, apps, |board, app| {
            self.cases(board, app, &machines[board.name], accels)
        }))
    }

    /// Step 2: every planned app booted in each of its cases, its image taken from the builder
    /// (`builds`, which makes them in this order); a board's QEMU is set up at its first case.
    fn boot_apps(
        &mut self,
        planned: &[builder::Planned<'_>],
        builds: &builder::Handoff<Result<image::Image, builder::Failed>>,
    ) {
        let mut qemus: HashMap<&str, Result<Qemu, String>> = HashMap::new();
        for (i, p) in planned.iter().enumerate() {
            let (board, app) = (p.board, p.app);
            let qemu = match qemus
                .entry(board.name)
                .or_insert_with(|| prepare_qemu(board))
            {
                Ok(q) => q,
                Err(e) => {
                    self.fail_all(&p.cases, &format!("setup failed: {e}"));
                    continue;
                }
            };
            let built = builds.take(i).unwrap_or_else(|| {
                Err(builder::Failed {
                    reason: "build failed: the builder stopped before this image".to_string(),
                    output: String::new(),
                })
            });
            let image = match built {
                Ok(image) => image,
                Err(failed) => {
                    print!("{}", failed.output);
                    self.fail_all(&p.cases, &failed.reason);
                    continue;
                }
            };
            let base_cmdline = boot_cmdline(&app.cmdline, self.opts.append());
            for case in &p.cases {
                for _ in 0..self.opts.repeat {
                    self.boot_case(board, app, qemu, &image, &base_cmdline, case);
                }
            }
        }
    }

    /// Counts every case of `cases` as failed for `reason`.
    fn fail_all(&mut self, cases: &[Case], reason: &str) {
        for case in cases {
            self.tally.fail(&case.name, None, reason);
        }
    }

    /// The cases of `app` on `board` that `--filter` and the app's `skip-on` leave, in order:
    /// by machine, then accelerator, then CPU count or seed. Prints why an app or some of its
    /// CPU counts are not booted on the board.
    fn cases(
        &self,
        board: &Board,
        app: &App,
        machines: &[&'static str],
        accels: &[Accel],
    ) -> Vec<Case> {
        self.cases_as(board, app, machines, accels, None)
    }

    /// [`TestRun::cases`], the accelerator named `label` when given (the nested-KVM cases:
    /// KVM boots named `nested-kvm`).
    fn cases_as(
        &self,
        board: &Board,
        app: &App,
        machines: &[&'static str],
        accels: &[Accel],
        label: Option<&str>,
    ) -> Vec<Case> {
        // A process board has no accelerator; its cases carry TCG only as a placeholder
        // and are named "native".
        // A board of another instruction set runs under TCG only.
        let board_accels: &[Accel] = match board.runner {
            Runner::Qemu if board.kvm_possible() || label.is_some() => accels,
            Runner::Qemu | Runner::Process => &[Accel::Tcg],
        };
        if !app.runs_on(board.name) {
            return Vec::new(); // `boards = [...]` in its Cargo.toml leaves this board out
        }
        if let Some(why) = board.cannot_run(app) {
            println!("not booted on {}: {} ({why})", board.name, app.name);
            return Vec::new();
        }
        if app.kernel_only && board.kernel_only_apps_on.is_some() && self.opts.app.is_none() {
            return Vec::new(); // announced once, by `announce_kernel_only`; `--app` boots it
        }
        let smps = smp_counts(board, app, self.opts.smp);
        let mut cases = Vec::new();
        for &machine in machines {
            for &accel in board_accels {
                let label = label.unwrap_or(accel.name());
                // `board/machine` skips every accelerator there, `board/machine/label` one.
                let skipped = app.skip_on.iter().any(|s| {
                    *s == format!("{}/{machine}", board.name)
                        || *s == format!("{}/{machine}/{label}", board.name)
                });
                if skipped {
                    continue;
                }
                for (smp, seed) in boots_on_machine(app, machine, &smps) {
                    let name = case_full_name(board, app, machine, label, smp, seed);
                    cases.push(Case {
                        machine,
                        accel,
                        smp,
                        seed,
                        name,
                    });
                }
            }
        }
        cases.retain(|c| self.wanted(&c.name));
        cases
    }

    /// Boots one case of `app` from `image` and judges it.
    fn boot_case(
        &mut self,
        board: &Board,
        app: &App,
        qemu: &Qemu,
        image: &image::Image,
        base_cmdline: &str,
        case: &Case,
    ) {
        let cmdline = match case_cmdline(board, case, base_cmdline, self.opts) {
            Ok(cmdline) => cmdline,
            Err(why) => return self.tally.fail(&case.name, None, &why),
        };
        let smp_line = smp_line(board, app, case);
        if self.opts.verbose {
            println!("== {}", case.name);
        }
        let feed = app.stdin.as_ref();
        let process_cmdline = process_cmdline(case.machine, case.seed.unwrap_or(1), &cmdline);
        let run = match board.runner {
            Runner::Qemu => {
                let spec = qemu::Spec {
                    board,
                    machine: case.machine,
                    accel: case.accel,
                    smp: case.smp,
                    mem: &self.opts.mem,
                    kernel: &image.boot,
                    serial: qemu::Serial::Captured,
                    append: &cmdline,
                };
                qemu::run_captured(qemu, &spec, feed, app.timeout, self.opts.verbose)
            }
            Runner::Process => qemu::run_process_captured(
                &image.elf,
                &process_cmdline,
                feed,
                app.timeout,
                self.opts.verbose,
                app.signal_storm,
            ),
        };
        let captured = match run {
            Ok(c) => c,
            Err(e) => return self.tally.fail(&case.name, None, &e.to_string()),
        };
        let console = captured.console();
        let judged = judge_case(board, app, case, &captured, &console, smp_line.as_deref())
            .and_then(|()| check_deterministic(app, case, &console, &image.elf, &process_cmdline));
        self.record_boot(&case.name, feed, &captured, judged);
    }

    /// Counts a judged boot: a pass, or a failure with the reason (saying so when the stdin
    /// text was never written) and the console's tail.
    fn record_boot(
        &mut self,
        name: &str,
        feed: Option<&qemu::StdinFeed>,
        captured: &qemu::Captured,
        judged: Result<(), String>,
    ) {
        match judged {
            Ok(()) => self.tally.pass(name, captured.elapsed),
            Err(mut reason) => {
                if let Some(feed) = feed
                    && captured.stdin_written.is_none()
                {
                    reason.push_str(&format!(" (stdin {} was never written)", feed.describe()));
                }
                self.tally.fail(name, Some(captured.elapsed), &reason);
                print_tail(&captured.lines, &captured.stderr);
            }
        }
    }

    /// `--accel nested-kvm`: every case of `apps` on each board that has a nested-KVM L1
    /// (qemu-x86_64, qemu-aarch64), built here and booted as the L2s of one L1 (`nested::run`), then
    /// judged as a direct boot is. A host without the means gives `NOT RUN` cases; an L1 that
    /// fails, failed ones.
    fn nested_kvm_cases(&mut self, boards: &[&'static Board], apps: &[&App]) -> Result<()> {
        for &board in boards {
            if let Err(nested::NotRun(why)) = nested::has_l1(board) {
                println!("not booted on {}: {why}", board.name);
                continue;
            }
            let machines = board.machines_to_test(self.opts.machine.as_deref())?;
            // Each case with its app, the image it boots and its command line.
            let mut planned: Vec<(Case, &App, std::path::PathBuf, String)> = Vec::new();
            let mut toolchain: Option<Result<(), String>> = None;
            for &app in apps {
                let cases =
                    self.cases_as(board, app, &machines, &[Accel::Kvm], Some(qemu::NESTED_KVM));
                if cases.is_empty() {
                    continue;
                }
                let ready = toolchain.get_or_insert_with(|| {
                    setup::ensure_toolchain(self.ws, board).map_err(|e| e.to_string())
                });
                if let Err(e) = ready {
                    let why = format!("setup failed: {e}");
                    self.fail_all(&cases, &why);
                    continue;
                }
                let image = match image::build(self.ws, board, app) {
                    Ok(image) => image,
                    Err(e) => {
                        self.fail_all(&cases, &format!("build failed: {e}"));
                        continue;
                    }
                };
                let base_cmdline = boot_cmdline(&app.cmdline, self.opts.append());
                for case in cases {
                    match case_cmdline(board, &case, &base_cmdline, self.opts) {
                        Ok(cmdline) => {
                            for _ in 1..self.opts.repeat {
                                planned.push((
                                    case.clone(),
                                    app,
                                    image.boot.clone(),
                                    cmdline.clone(),
                                ));
                            }
                            planned.push((case, app, image.boot.clone(), cmdline));
                        }
                        Err(why) => self.tally.fail(&case.name, None, &why),
                    }
                }
            }
            if planned.is_empty() {
                continue;
            }
            let boots: Vec<nested::Boot<'_>> = planned
                .iter()
                .map(|(case, app, image, cmdline)| nested::Boot {
                    spec: qemu::Spec {
                        board,
                        machine: case.machine,
                        accel: case.accel,
                        smp: case.smp,
                        mem: &self.opts.mem,
                        kernel: image,
                        serial: qemu::Serial::Captured,
                        append: cmdline,
                    },
                    timeout: app.timeout,
                    stdin: app.stdin.as_ref(),
                    forward: None,
                })
                .collect();
            let outcome = match nested::run(board, &boots, self.opts.verbose) {
                Ok(outcome) => outcome,
                Err(nested::NotRun(why)) => {
                    for (case, ..) in &planned {
                        self.tally.not_run(&case.name, &why);
                    }
                    continue;
                }
            };
            for l1 in &outcome.l1s {
                println!(
                    "nested-kvm: L1 on {} ready {} after its QEMU started; {} L1 boot(s) for {} \
                     L2 boot(s), {:.1} s in all (last: {})",
                    l1.machine,
                    l1.ready
                        .map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
                    l1.boots,
                    l1.l2_boots,
                    l1.total.as_secs_f64(),
                    l1.end.describe()
                );
            }
            for ((case, app, ..), result) in planned.iter().zip(&outcome.boots) {
                let captured = match result {
                    Ok(captured) => captured,
                    Err(why) => {
                        self.tally.fail(&case.name, None, why);
                        continue;
                    }
                };
                let console = captured.console();
                let smp_line = smp_line(board, app, case);
                let judged = judge_case(board, app, case, captured, &console, smp_line.as_deref());
                self.record_boot(&case.name, app.stdin.as_ref(), captured, judged);
            }
        }
        Ok(())
    }

    /// Step 3a: the strict kernel command line (cmdline_test.rs): LinuxU boots hello with one
    /// bad `rhea.*` argument per run, and with over-long lines.
    fn cmdline_cases(&mut self, board_names: &[&str]) {
        let wanted = board_names.contains(&"linuxu")
            && self.opts.app.as_deref().is_none_or(|a| a == "hello")
            && self.opts.machine.as_deref().is_none_or(|m| m == "realtime");
        if !wanted {
            return;
        }
        let cases: Vec<_> = cmdline::cases()
            .into_iter()
            .filter(|c| self.wanted(&c.name))
            .collect();
        let elf = match cases.is_empty() {
            true => Err(String::new()),
            false => cmdline::prepare(self.ws, self.all_apps),
        };
        for case in &cases {
            let result = match &elf {
                Ok(elf) => cmdline::run(elf, case),
                Err(e) => Err((None, format!("build failed: {e}"))),
            };
            match result {
                Ok(took) => self.tally.pass(&case.name, took),
                Err((took, why)) => self.tally.fail(&case.name, took, &why),
            }
        }
    }

    /// Step 3b: the TSC's frequency sources on qemu-x86_64 (tsc_ref.rs): each forced in turn and
    /// cross-checked, and the clear errors where one, or every one, is missing.
    fn tsc_ref_cases(&mut self, board_names: &[&str]) {
        if !tsc_ref::wanted(self.opts, board_names) {
            return;
        }
        let machine_ok = |m: &str| self.opts.machine.as_deref().is_none_or(|want| want == m);
        let cases: Vec<_> = tsc_ref::cases()
            .into_iter()
            .filter(|c| machine_ok(c.machine) && self.wanted(&c.name))
            .collect();
        if cases.is_empty() {
            return;
        }
        let prepared = tsc_ref::prepare(self.ws, self.all_apps);
        // `--repeat` boots each case again: the margins are about timing under load.
        let repeated = cases
            .iter()
            .flat_map(|c| std::iter::repeat_n(c, self.opts.repeat as usize));
        for case in repeated {
            let result = match &prepared {
                Ok(p) => tsc_ref::run(p, case, self.opts),
                Err(e) => Err((None, format!("build failed: {e}"))),
            };
            match result {
                Ok((took, figures)) => {
                    if let Some(t) = figures {
                        println!(
                            "  tsc: {} kHz ({}); {} kHz against the {}, {:+} ppm",
                            t.khz, t.source, t.measured_khz, t.against, t.ppm
                        );
                    }
                    self.tally.pass(&case.name, took)
                }
                Err((took, why)) => self.tally.fail(&case.name, took, &why),
            }
        }
    }

    /// Step 3c: the appliance's network tests (net_test.rs), [`NET_CASES`].
    fn appliance_net_cases(&mut self, board_names: &[&str]) {
        for case in &NET_CASES {
            let wanted = board_names.contains(&case.board)
                && self.appliance_wanted(Some(case.machine))
                && self.wanted(case.name);
            if !wanted {
                continue;
            }
            let start = Instant::now();
            let result = appliance_net(
                self.ws,
                self.all_apps,
                case.board,
                case.machine,
                case.mem,
                (
                    case.wire,
                    NicRun {
                        model: case.nic,
                        append: case.append,
                        console: case.console,
                    },
                ),
                Exercise::Net,
            );
            self.tally.record(case.name, start, result);
        }
    }

    /// Step 3c: pc-uefi's framebuffer console read off the screen ([`screen`]).
    fn screen_cases(&mut self, board_names: &[&str]) {
        if !board_names.contains(&"pc-uefi") {
            return;
        }
        for &(case, app, consoles) in screen::CASES {
            let wanted = self.opts.app.as_deref().is_none_or(|a| a == app)
                && self.opts.machine.as_deref().is_none_or(|m| m == "q35")
                && self.wanted(case);
            if !wanted {
                continue;
            }
            let start = Instant::now();
            let result = screen::run(self.ws, self.all_apps, app, consoles);
            self.tally.record(case, start, result);
        }
    }

    /// Step 3c: the tracing cases ([`trace_pi`]): trace-pi's dump converted to a Perfetto
    /// trace and read back with the independent decoder.
    fn trace_pi_cases(&mut self, board_names: &[&str]) {
        self.app_cases(
            board_names,
            "trace-pi",
            trace_pi::CASES,
            trace_pi::case_name,
            trace_pi::run,
        );
    }

    /// The shell driven on the console as a user types ([`shell`]).
    fn shell_cases(&mut self, board_names: &[&str]) {
        self.app_cases(
            board_names,
            "shell-console",
            shell::CASES,
            shell::case_name,
            shell::run,
        );
    }

    /// Files: `tests/fs` with the initramfs packed here, whole and damaged ([`fs`]).
    fn fs_cases(&mut self, board_names: &[&str]) {
        self.app_cases(board_names, "fs", fs::CASES, fs::case_name, fs::run);
        self.app_cases(
            board_names,
            "fs",
            fs::DAMAGED_CASES,
            fs::damaged_case_name,
            fs::run_damaged,
        );
        self.app_cases(
            board_names,
            "fs",
            fs::HOST_CASES,
            fs::host_case_name,
            fs::run_host,
        );
        self.app_cases(
            board_names,
            "fs",
            fs_disk::CASES,
            fs_disk::case_name,
            fs_disk::run,
        );
    }

    /// Cases that boot `app` on each (board, machine) of `cases` (those `--board`, `--machine`,
    /// `--app` and `--filter` leave) and judge it with `run`; `name` names each.
    fn app_cases(
        &mut self,
        board_names: &[&str],
        app: &str,
        cases: &[(&'static str, &'static str)],
        name: fn(&str, &str) -> String,
        run: fn(&Workspace, &[App], &str, &str) -> std::result::Result<Duration, String>,
    ) {
        if self.opts.app.as_deref().is_some_and(|a| a != app) {
            return;
        }
        for &(board, machine) in cases {
            let name = name(board, machine);
            let machine_ok = self.opts.machine.as_deref().is_none_or(|m| m == machine);
            if !(board_names.contains(&board) && machine_ok && self.wanted(&name)) {
                continue;
            }
            let start = Instant::now();
            let result = run(self.ws, self.all_apps, board, machine);
            self.tally.record(&name, start, result.map(drop));
        }
    }

    /// Step 3c: the appliance's status page screenshotted by headless Chromium, its charts
    /// checked in the picture ([`status_page`]).
    fn status_page_case(&mut self, board_names: &[&str]) {
        let wanted = board_names.contains(&"qemu-x86_64")
            && self.appliance_wanted(Some("q35"))
            && self.wanted(status_page::CASE);
        if !wanted {
            return;
        }
        let start = Instant::now();
        let result = status_page::run(self.ws, self.all_apps);
        if let Ok(seen) = &result {
            println!("  status page: {seen}");
        }
        self.tally
            .record(status_page::CASE, start, result.map(drop));
    }

    /// Step 4b: the appliance's network case under nested KVM ([`nested_net`]), on the
    /// boards of `boards` that have one.
    fn nested_net_cases(&mut self, boards: &[&'static Board]) {
        for &(board_name, machine) in nested_net::CASES {
            let Some(&board) = boards.iter().find(|b| b.name == board_name) else {
                continue;
            };
            let case = nested_net::case_name(board_name, machine);
            if !(self.appliance_wanted(Some(machine)) && self.wanted(&case)) {
                continue;
            }
            let start = Instant::now();
            let result = nested_net::run(self.ws, self.all_apps, board, machine, self.opts);
            if let Ok(figures) = &result {
                println!("  nested net: {figures}");
            }
            match result {
                Ok(_) => self.tally.record(&case, start, Ok(())),
                Err(nested_net::Failure::Failed(why)) => self.tally.record(&case, start, Err(why)),
                Err(nested_net::Failure::NotRun(why)) => self.tally.not_run(&case, &why),
            }
        }
    }

    /// Steps 3d and 3e: the appliance on a wire of its own, `what` done to it from the
    /// host, once per case (board, machine, case name, wire, memory): under abuse (abuse.rs,
    /// [`ABUSE_CASES`]), or driven over SSH by OpenSSH's client (ssh.rs, [`ssh::CASES`]).
    fn appliance_wire_cases(
        &mut self,
        board_names: &[&str],
        cases: &[(&str, &str, &str, u8, &str)],
        what: Exercise,
    ) {
        for &(board_name, machine, case, wire, mem) in cases {
            let wanted = board_names.contains(&board_name)
                && self.appliance_wanted(Some(machine))
                && self.wanted(case);
            if !wanted {
                continue;
            }
            let start = Instant::now();
            let result = appliance_net(
                self.ws,
                self.all_apps,
                board_name,
                machine,
                mem,
                (wire, NicRun::virtio()),
                what,
            );
            self.tally.record(case, start, result);
        }
    }

    /// Step 3f: Xen netfront: a real Xen with a Linux dom0 (toolstack, netback) creates the
    /// appliance as a domU with a vif; dom0 pings it and runs UDP, TCP and HTTP against it
    /// (xen_dom0.rs).
    fn xen_netfront_cases(&mut self, board_names: &[&str]) {
        for (board_name, case) in [
            ("xen-x86_64", "xen-x86_64/dom0/tcg appliance netfront"),
            ("xen-arm64", "xen-arm64/dom0/tcg appliance netfront"),
        ] {
            let wanted = board_names.contains(&board_name)
                && self.appliance_wanted(None)
                && self.wanted(case);
            if !wanted {
                continue;
            }
            let start = Instant::now();
            let result = xen_netfront(self.ws, self.all_apps, board_name);
            self.tally.record(case, start, result);
        }
    }
}

/// One of the appliance's network tests ([`NET_CASES`]).
struct NetCase {
    board: &'static str,
    machine: &'static str,
    name: &'static str,
    mem: &'static str,
    /// The tap ([`net::Wire`]) it runs on.
    wire: u8,
    nic: NicModel,
    /// Appended to the appliance's kernel command line.
    append: &'static [&'static str],
    /// Text one console line must hold, all of it (how the NIC bound).
    console: &'static [&'static str],
}

/// The appliance's network tests, where the board has a network device: on LinuxU (tap), QEMU
/// q35 and microvm (virtio-net over PCI and MMIO on the same kind of tap) and QEMU virt on Arm
/// (virtio-net over MMIO from the devicetree); the Intel 82574L (`e1000e`) in each of its
/// interrupt modes, the console showing the mode the NIC bound with (its name in the network's
/// start line: `rhea-net: e1000e 0000:00:01.0 MSI vector 0x31 mac ...`): MSI-X by default and
/// MSI with `rhea.pci.msix=off` on qemu-x86_64 q35, INTx with `rhea.pci.msi=off` as well on
/// pc-uefi — whose firmware (OVMF) writes the interrupt line QEMU's ICH9 really routes the
/// pin to; qboot, qemu-x86_64's, writes 11 for slot 1 where ICH9 delivers INTA on ISA IRQ 10
/// (GSI 21), so INTx there gets no interrupt and the driver runs on its idle timeout. q35 also
/// in `-m 4M`, the smallest memory `bench boot` finds it runs in: serving the whole exercise
/// there shows that figure is a working appliance, not just a boot. Wires 1-5 and 8-11 (the
/// abuse cases take 6-8).
const NET_CASES: [NetCase; 9] = [
    NetCase {
        board: "linuxu",
        machine: "realtime",
        name: "linuxu/realtime/native appliance net",
        mem: "128M",
        wire: 1,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "qemu-x86_64",
        machine: "q35",
        name: "qemu-x86_64/q35/tcg appliance net",
        mem: "128M",
        wire: 2,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "qemu-x86_64",
        machine: "q35",
        name: "qemu-x86_64/q35/tcg appliance net -m 4M",
        mem: "4M",
        wire: 3,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "qemu-x86_64",
        machine: "microvm",
        name: "qemu-x86_64/microvm/tcg appliance net",
        mem: "128M",
        wire: 4,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "qemu-aarch64",
        machine: "virt-gicv3",
        name: "qemu-aarch64/virt-gicv3/tcg appliance net",
        mem: "128M",
        wire: 5,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "qemu-x86_64",
        machine: "q35",
        name: "qemu-x86_64/q35/tcg appliance net e1000e",
        mem: "128M",
        wire: 8,
        nic: NicModel::E1000e,
        append: &[],
        console: &["rhea-net: e1000e ", " MSI-X vector "],
    },
    NetCase {
        board: "qemu-x86_64",
        machine: "q35",
        name: "qemu-x86_64/q35/tcg appliance net e1000e msi",
        mem: "128M",
        wire: 10,
        nic: NicModel::E1000e,
        append: &["rhea.pci.msix=off"],
        console: &["rhea-net: e1000e ", " MSI vector "],
    },
    // A PC booted by OVMF from its disk, with the PC's NIC (e1000e is pc-uefi's own).
    NetCase {
        board: "pc-uefi",
        machine: "q35",
        name: "pc-uefi/q35/tcg appliance net",
        mem: "128M",
        wire: 9,
        nic: NicModel::Virtio,
        append: &[],
        console: &[],
    },
    NetCase {
        board: "pc-uefi",
        machine: "q35",
        name: "pc-uefi/q35/tcg appliance net e1000e intx",
        mem: "128M",
        wire: 11,
        nic: NicModel::E1000e,
        append: &["rhea.pci.msix=off", "rhea.pci.msi=off"],
        console: &["rhea-net: e1000e ", " INTx GSI "],
    },
];

/// The NIC an appliance run has: its model, what the case appends to the kernel command
/// line, and text one console line must hold (all of `console` on one line).
#[derive(Clone, Copy, Debug)]
struct NicRun {
    model: NicModel,
    append: &'static [&'static str],
    console: &'static [&'static str],
}

impl NicRun {
    /// The board's own NIC, nothing added or checked.
    fn virtio() -> NicRun {
        NicRun {
            model: NicModel::Virtio,
            append: &[],
            console: &[],
        }
    }
}

/// The appliance under abuse from the host (board, machine, case name, wire, memory), on
/// LinuxU and QEMU q35: idle connection bursts, slowloris, spoofed SYNs, unreachable UDP
/// sources, 32 peers, churn.
const ABUSE_CASES: [(&str, &str, &str, u8, &str); 3] = [
    (
        "linuxu",
        "realtime",
        "linuxu/realtime/native appliance abuse",
        6,
        "128M",
    ),
    (
        "qemu-x86_64",
        "q35",
        "qemu-x86_64/q35/tcg appliance abuse",
        7,
        "128M",
    ),
    (
        "qemu-x86_64",
        "q35",
        "qemu-x86_64/q35/tcg appliance abuse -m 4M",
        8,
        "4M",
    ),
];

/// The QEMU of `board` (none for a process board), or why not; its toolchain is the
/// builder's to set up ([`build_planned`]).
fn prepare_qemu(board: &Board) -> Result<Qemu, String> {
    match board.runner {
        Runner::Qemu => setup::ensure_qemu(board).map_err(|e| e.to_string()),
        Runner::Process => Ok(Qemu::none()),
    }
}

/// The builder's work ([`builder`]): the image of `app` for `board`, built in the background
/// after the board's toolchain (checked once per board: `toolchains`). Prints one line when
/// done; a failure carries the build's log, to be printed before the app's cases fail.
fn build_planned(
    ws: &Workspace,
    board: &'static Board,
    app: &App,
    toolchains: &std::sync::Mutex<HashMap<&'static str, Result<(), String>>>,
) -> Result<image::Image, builder::Failed> {
    let start = Instant::now();
    let log = ws
        .board_target_dir(board)
        .join(format!("{}.build.log", app.name));
    let built = image::BuildOutput::background(&log)
        .map_err(|e| format!("build failed: {e}"))
        .and_then(|mut out| {
            // One lane at a time checks (and may install) a toolchain: rustup has no lock.
            toolchains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(board.name)
                .or_insert_with(|| {
                    setup::ensure_toolchain_to(ws, board, &mut out).map_err(|e| e.to_string())
                })
                .clone()
                .map_err(|e| format!("setup failed: {e}"))?;
            image::build_to(ws, board, app, &mut out).map_err(|e| format!("build failed: {e}"))
        });
    let took = start.elapsed().as_secs_f64();
    match built {
        Ok(image) => {
            println!("build: {} {} ready ({took:.1} s)", board.name, app.name);
            Ok(image)
        }
        Err(reason) => {
            println!("build: {} {} failed ({took:.1} s)", board.name, app.name);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let mut output = format!(
                "build: {} {} failed; its output ({}):\n",
                board.name,
                app.name,
                log.display()
            );
            for line in text.lines() {
                output.push_str(&format!("  | {line}\n"));
            }
            Err(builder::Failed { reason, output })
        }
    }
}

/// The CPU counts `app` boots with on `board`: each of its `smp = [...]` the board can test
/// (printing those it cannot), else `--smp`'s.
fn smp_counts(board: &Board, app: &App, smp: u32) -> Vec<u32> {
    if app.smp.is_empty() {
        return vec![smp];
    }
    let (kept, cut): (Vec<u32>, Vec<u32>) = app.smp.iter().partition(|&&n| n <= board.max_test_smp);
    if !cut.is_empty() {
        println!(
            "not booted on {} with {cut:?} vCPUs: {} (the board tests at most {})",
            board.name, app.name, board.max_test_smp
        );
    }
    kept
}

/// The boots of `app` on `machine`, as (CPU count, seed): one per CPU count of `smps`, except
/// on the simulation machine, which runs one vCPU and differs by seed (`sim-seeds`).
fn boots_on_machine(app: &App, machine: &str, smps: &[u32]) -> Vec<(u32, Option<u64>)> {
    if machine == "sim" && !app.sim_seeds.is_empty() {
        app.sim_seeds.iter().map(|&s| (1, Some(s))).collect()
    } else {
        smps.iter().map(|&n| (n, None)).collect()
    }
}

/// The name of one case: [`case_name`] (a process board's accelerator is "native"), then the
/// seed or, for an app with `smp = [...]`, the CPU count.
fn case_full_name(
    board: &Board,
    app: &App,
    machine: &str,
    accel: &str,
    smp: u32,
    seed: Option<u64>,
) -> String {
    let mut name = match board.runner {
        Runner::Qemu => case_name(board.name, machine, accel, &app.name),
        Runner::Process => format!("{}/{machine}/native {}", board.name, app.name),
    };
    match seed {
        Some(seed) => name.push_str(&format!(" seed{seed}")),
        None if !app.smp.is_empty() => name.push_str(&format!(" smp{smp}")),
        None => {}
    }
    name
}

/// The kernel command line of one case: `base` with `rhea.cpus=N` and the board's memory
/// argument in front; an error if the machine cannot honour `--mem`.
fn case_cmdline(board: &Board, case: &Case, base: &str, opts: &Options) -> Result<String, String> {
    // `rhea.cpus=N` starts a process board's vCPUs and caps the CPUs of machines
    // whose CPU count is fixed (raspi4b: 4, so it is passed even for 1); QEMU's
    // -smp N gives the others N.
    let cmdline = if case.smp > 1 || case.machine == "raspi4b" {
        format!("rhea.cpus={} {base}", case.smp)
    } else {
        base.to_string()
    };
    // `--mem` reaches a process board as `rhea.mem_mib` (boards.rs); a fixed
    // machine that cannot honour a `--mem` given refuses it.
    let mem_given = opts.mem != Options::default().mem;
    match board.mem_arg(case.machine, &opts.mem, mem_given)? {
        Some(arg) => Ok(format!("{arg} {cmdline}")),
        None => Ok(cmdline),
    }
}

/// The line showing every CPU of a case came up, when the console must show it: for apps
/// with `smp = [...]` booted with more than one CPU (the simulation runs one vCPU), unless
/// the app expects its own count (e.g. a CPU that must fail to start).
fn smp_line(board: &Board, app: &App, case: &Case) -> Option<String> {
    let own_count = app
        .console_for(board.arch())
        .iter()
        .any(|f| f.contains("CPUs online"));
    let smp = case.smp;
    (!app.smp.is_empty() && smp > 1 && case.machine != "sim" && !own_count)
        .then(|| format!("rhea: smp: {smp} of {smp} CPUs online"))
}

/// Judges a boot: how it ended, the app's console fragments, `smp_line` if any, and the
/// kernel's steal report where the hypervisor keeps steal time ([`steal_reported`]).
fn judge_case(
    board: &Board,
    app: &App,
    case: &Case,
    captured: &qemu::Captured,
    console: &str,
    smp_line: Option<&str>,
) -> Result<(), String> {
    let verdict = match board.runner {
        Runner::Qemu => qemu::classify(&captured.end),
        Runner::Process => qemu::classify_process(&captured.end),
    };
    judge(app.expect, &verdict, console, app.console_for(board.arch()))
        .and_then(|()| match smp_line {
            Some(line) if !console.contains(line) => Err(format!("console lacks {line:?}")),
            _ => Ok(()),
        })
        .and_then(|()| check_steal_report(board.name, board.arch(), case.accel, console))
}

/// What the kernel prints after the app's main returned (`runtime/src/boot.rs`).
const MAIN_RETURNED: &str = "rhea: app main returned";
/// The kernel's steal report, printed after [`MAIN_RETURNED`] where the machine keeps steal
/// time.
const STEAL_REPORT: &str = "rhea: steal time: cpu0 ";

/// Whether the hypervisor of a boot keeps steal time for Rhea: KVM on x86 (QEMU's `-cpu host`
/// offers the steal-time MSR by default) and Xen (each vCPU's runstate area). Not TCG, not
/// KVM on Arm (its steal time, SMCCC PV_TIME, is not read), not LinuxU.
fn steal_reported(board: &str, arch: &str, accel: Accel) -> bool {
    board.starts_with("xen-") || (arch == "x86_64" && accel == Accel::Kvm)
}

/// A boot whose app returned from main on a machine that keeps steal time must show the
/// kernel's steal report ([`STEAL_REPORT`]); elsewhere it must not (nothing to report).
fn check_steal_report(board: &str, arch: &str, accel: Accel, console: &str) -> Result<(), String> {
    if !console.contains(MAIN_RETURNED) {
        return Ok(());
    }
    match (
        steal_reported(board, arch, accel),
        console.contains(STEAL_REPORT),
    ) {
        (true, false) => Err(format!(
            "console lacks the kernel's steal report {STEAL_REPORT:?} (the hypervisor keeps steal time)"
        )),
        (false, true) => Err(format!(
            "console has a steal report {STEAL_REPORT:?} where the machine keeps no steal time"
        )),
        _ => Ok(()),
    }
}

/// The simulation mode promises the same trace for the same seed: on the `sim` machine, a
/// successful boot without stdin is run again and its `rhea: trace:` line compared.
fn check_deterministic(
    app: &App,
    case: &Case,
    console: &str,
    elf: &std::path::Path,
    process_cmdline: &str,
) -> Result<(), String> {
    if case.machine != "sim" || app.stdin.is_some() || app.expect != Expect::Success {
        return Ok(());
    }
    let first = trace_line(console).ok_or("no `rhea: trace:` line in simulation mode")?;
    let again = qemu::run_process_captured(
        elf,
        process_cmdline,
        None,
        app.timeout,
        false,
        app.signal_storm,
    )
    .map_err(|e| e.to_string())?;
    let second = trace_line(&again.console()).ok_or("no `rhea: trace:` line on the second run")?;
    if first == second {
        Ok(())
    } else {
        Err(format!("not deterministic: `{first}` then `{second}`"))
    }
}

/// A process board's command line for `machine`: simulation mode adds its flags and a fixed
/// seed (1, or each of the app's `sim-seeds`), so a failure can be replayed exactly.
pub(crate) fn process_cmdline(machine: &str, seed: u64, cmdline: &str) -> String {
    if machine == "sim" {
        format!("rhea.sim=1 rhea.seed={seed} {cmdline}")
    } else {
        cmdline.to_string()
    }
}

/// The `rhea: trace:` line of a console, without its clock (which the trace hash covers).
pub(crate) fn trace_line(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.starts_with("rhea: trace:"))
        .map(str::to_string)
}

/// Prints the last console lines and QEMU's stderr of a failed case.
fn print_tail(lines: &[(Duration, String)], stderr: &str) {
    let skip = lines.len().saturating_sub(TAIL_LINES);
    println!(
        "    --- console (last {} of {} lines) ---",
        lines.len() - skip,
        lines.len()
    );
    for (_, line) in &lines[skip..] {
        println!("    | {line}");
    }
    if !stderr.trim().is_empty() {
        println!("    --- QEMU stderr ---");
        for line in stderr.lines() {
            println!("    | {line}");
        }
    }
    println!("    ---");
}

/// The appliance as a domU of Xen with a Linux dom0 (`dom0::run`): it must come up with
/// its netfront bound and answer dom0's ping, UDP and TCP echo and HTTP checks.
fn xen_netfront(
    ws: &Workspace,
    all_apps: &[App],
    board_name: &str,
) -> std::result::Result<(), String> {
    use crate::xen::dom0::{Arch, DomUKernel};
    let board = boards::find(board_name).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "appliance").map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    let arch = if board.arch() == "aarch64" {
        Arch::Aarch64
    } else {
        Arch::X86_64
    };
    let kernel = DomUKernel::Image {
        path: image.boot.clone(),
        ramdisk: None,
    };
    let (spec, cpu) = netfront_spec(arch, kernel);
    let out = dom0::run(&spec).map_err(|e| e.to_string())?;
    let problems = netfront_problems(&spec, &out, cpu);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(netfront_failure(&problems, &out))
    }
}

/// The dom0 run of [`xen_netfront`] for the appliance `kernel`, and the CPU its NIC's event
/// channel must be moved to.
fn netfront_spec(arch: dom0::Arch, kernel: dom0::DomUKernel) -> (Dom0Spec, u32) {
    use crate::xen::dom0::{Arch, Check};
    let mut spec = Dom0Spec::new(arch, kernel);
    // arm64: two vCPUs, the NIC's event channel moved to the second (EVTCHNOP_bind_vcpu).
    // x86_64: one vCPU (the bind to vCPU 0 still goes through Xen). With two, under load, the
    // nested setup itself misbehaves (measured in ~50 loaded runs: dom0's own processes crash
    // with corrupted memory in 10 of 27 2-vCPU Rhea runs and 2 of 4 2-vCPU Linux-domU runs,
    // dom0 hangs sometimes, one Rhea domU triple-faulted in its trap entry ~2 s after its
    // checks passed; never with a 1-vCPU domU) — QEMU TCG's nested SVM or Xen 4.17, not Rhea,
    // as far as measured, so not in the gating test.
    let cpu = if arch == Arch::Aarch64 { 1 } else { 0 };
    spec.vcpus = cpu + 1;
    spec.cmdline = format!(
        "rhea.checker=1 rhea.net.ip=10.0.0.2/24 rhea.net.irq_cpu={cpu} appliance.period_us=25000"
    );
    spec.with_vif = true;
    spec.checks = vec![Check::Ping, Check::UdpEcho, Check::TcpEcho, Check::Http];
    spec.ready = Some("appliance: ready".to_string());
    spec.end_wait = Duration::from_secs(1);
    (spec, cpu)
}

/// What is wrong with outcome `out` of the netfront run `spec` (event channel on `cpu`):
/// empty when the appliance came up, bound its netfront, passed every check and stayed up.
fn netfront_problems(spec: &Dom0Spec, out: &Dom0Outcome, cpu: u32) -> Vec<String> {
    let console = format!("{}{}", out.console, out.xen_console);
    let mut problems = Vec::new();
    if out.created != Some(true) {
        problems.push("the domU was not created".to_string());
    }
    if !out.ready.as_ref().is_some_and(|(seen, _)| *seen) {
        problems.push("the appliance never printed its ready line".to_string());
    }
    if !console.contains("bound by xen-netfront") {
        problems.push("no netfront bound".to_string());
    }
    if !console.contains(&format!("interrupts on cpu{cpu}")) {
        problems.push(format!("the NIC's event channel was not moved to cpu{cpu}"));
    }
    for c in out.checks.iter().filter(|c| !c.ok) {
        problems.push(format!("check {} failed: {}", c.name, c.detail));
    }
    if out.checks.len() != spec.checks.len() {
        problems.push(format!(
            "{} of {} checks reported",
            out.checks.len(),
            spec.checks.len()
        ));
    }
    if let Some(p) = &out.panic {
        problems.push(format!("panic: {p}"));
    }
    // The appliance never ends by itself: a domU that shut down, rebooted or crashed after its
    // checks passed (seen once: a 2-vCPU x86 domU triple fault) is a failure too.
    if !matches!(out.domu_end, dom0::DomUEnd::StillRunning { .. }) {
        problems.push(format!(
            "the domU did not stay up: {}",
            out.domu_end.describe()
        ));
    }
    problems
}

/// The failure message of a netfront run: its `problems`, how the domU and QEMU ended, and
/// the last lines of the domU on Xen's console and of the serial console.
fn netfront_failure(problems: &[String], out: &Dom0Outcome) -> String {
    let xen_lines: Vec<&str> = out.xen_console.lines().collect();
    let xen_tail = xen_lines[xen_lines.len().saturating_sub(40)..].join("\n");
    format!(
        "{}\n    domU: {}; QEMU: {}\n    the domU's lines on Xen's console (last 40):\n{}\n    \
         last serial lines:\n{}",
        problems.join("; "),
        out.domu_end.describe(),
        out.qemu_end.describe(),
        xen_tail,
        out.tail(25)
    )
}

/// What the host does to the appliance on its wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exercise {
    /// `net::exercise`: HTTP, ICMP, TCP and UDP echo, malformed frames, a flood.
    Net,
    /// `abuse::run`: the attacks (and on LinuxU, then the settings it must refuse).
    Abuse,
    /// `ssh::run`: the shell over SSH with keys made for the run.
    Ssh,
}

/// The appliance on a tap of its own, exercised from the host (`what`), then told to quit;
/// its console must report success and a clean scheduler checker (and, where `nic` asks, a
/// line saying how the NIC bound). LinuxU opens the tap itself; QEMU gets it as the netdev
/// of the appliance's NIC (`-smp 2`): virtio-net, or the model `nic` names, with `nic`'s
/// arguments appended to the command line.
fn appliance_net(
    ws: &Workspace,
    all_apps: &[App],
    board_name: &str,
    machine: &str,
    mem: &str,
    (wire_number, nic): (u8, NicRun),
    what: Exercise,
) -> std::result::Result<(), String> {
    let board = boards::find(board_name).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "appliance").map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    let wire = net::Wire::new(wire_number);
    wire.create()?;
    let result = serve_on_wire(ws, board, machine, mem, &image, (&wire, nic), what);
    wire.destroy();
    result
}

/// Starts the appliance on `wire`, exercises it (`what`), tells it to quit and checks how
/// it ended; with [`Exercise::Abuse`] on LinuxU, then the settings it must refuse.
fn serve_on_wire(
    ws: &Workspace,
    board: &Board,
    machine: &str,
    mem: &str,
    image: &image::Image,
    (wire, nic): (&net::Wire, NicRun),
    what: Exercise,
) -> std::result::Result<(), String> {
    use crate::test::net::{self, Guest};
    let mut args = appliance_args(wire);
    args.extend(nic.append.iter().map(|a| a.to_string()));
    let keys = match what {
        Exercise::Ssh => {
            let k = ssh::Keys::new(&ws.root.join("target").join(format!("ssh-{}", wire.tap)))?;
            args.extend(k.args()?);
            Some(k)
        }
        Exercise::Net | Exercise::Abuse => None,
    };
    // The appliance's initramfs (its pages under /www), where the board takes one.
    let root = crate::build::initrd::default_dir(&ws.root, "appliance")
        .filter(|_| matches!(board.name, "linuxu" | "qemu-x86_64" | "qemu-aarch64"));
    let archive = match &root {
        Some(dir) => {
            let out = ws
                .root
                .join(format!("target/appliance-initrd-{}.cpio", wire.tap));
            crate::build::initrd::pack_to(dir, &out).map_err(|e| e.to_string())?;
            Some(out)
        }
        None => None,
    };
    // LinuxU's net case: a host directory for the appliance's boot counter.
    // The net case (not the small-memory one): a writable shared folder for the appliance's
    // boot counter — LinuxU's host directory. (A QEMU board would give a virtio-9p share
    // tagged `state`, the branch below, once an appliance built with `p9` runs there.)
    // (The appliance is built without the runtime's `p9` feature: at `-m 4M` its frames and
    // heap have no room for the 45 KiB of code; the 9P shares are tested by `tests/fs`.)
    let share_device = match board.name {
        "linuxu" => Some(""),
        _ => None,
    };
    let state = share_device
        .filter(|_| what == Exercise::Net && mem == "128M")
        .map(|device| {
            (
                ws.root.join(format!("target/appliance-state-{}", wire.tap)),
                device,
            )
        });
    let mut share = None;
    if let Some((dir, device)) = &state {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if board.runner == Runner::Process {
            args.push(format!("rhea.fs.host={}:/state", dir.display()));
        } else {
            share = Some(qemu::Share {
                tag: "state".into(),
                path: dir.clone(),
                readonly: false,
                device,
            });
        }
        args.push("appliance.state=/state".to_string());
    }
    // Held until the appliance has ended: the host's RT throttling stays off meanwhile.
    let (cmd, _unthrottled) = match board.runner {
        Runner::Process => {
            if let Some(a) = &archive {
                args.push(format!("rhea.initrd={}", a.display()));
            }
            appliance_process(image, wire, &args, what != Exercise::Net)
        }
        Runner::Qemu => (
            appliance_qemu(
                board,
                machine,
                mem,
                image,
                (wire, nic.model),
                &args,
                (archive.as_deref(), share),
            )?,
            None,
        ),
    };
    let mut guest = Guest::spawn(cmd)?;
    let r = guest
        .wait_for("appliance: ready", Duration::from_secs(60))
        .and_then(|()| {
            // A paced flood (see `exercise`): 20,000 datagrams/s under TCG, 100,000/s for
            // LinuxU — both far above what the appliance echoes (it drops most of either),
            // without the flooding threads taking the host CPUs the guest needs.
            let pps = match board.runner {
                Runner::Qemu => Some(20_000),
                Runner::Process => Some(100_000),
            };
            match (what, &keys) {
                (Exercise::Abuse, _) => abuse::run(wire).map(drop),
                (Exercise::Ssh, Some(k)) => ssh::run(wire, &guest, k).map(|f| {
                    println!("  ssh: login and `uptime`, best of 5: {:.0} ms", f.login_ms);
                }),
                _ => {
                    let www = root.as_ref().map(|r| r.join("www"));
                    net::exercise(wire, pps, www.as_deref(), &mut |l| println!("  net: {l}"))
                        .map(drop)
                }
            }
        })
        .and_then(|_| net::quit(wire.guest));
    let status = guest.finish(Duration::from_secs(30));
    let console = guest.console();
    check_appliance_end(board, r, status, &console)?;
    check_console_line(&console, nic.console)?;
    if let Some((dir, _)) = &state {
        // The boot counter the appliance wrote through the shared folder.
        let count = std::fs::read_to_string(dir.join("appliance-boots"))
            .map_err(|e| format!("the appliance's boot counter on the host: {e}"))?;
        if count != "1\n" {
            return Err(format!("the boot counter holds {count:?}, not \"1\\n\""));
        }
        println!("  state: the appliance counted boot 1 in the shared folder");
    }
    // Settings the appliance must refuse: separate runs of the same image on the tap the
    // appliance has let go of.
    if what == Exercise::Abuse && board.runner == Runner::Process {
        for line in abuse::bad_config(&image.elf, wire)? {
            println!("  refused: {line}");
        }
    }
    Ok(())
}

/// The appliance's kernel command line on `wire`.
fn appliance_args(wire: &net::Wire) -> Vec<String> {
    vec![
        "rhea.checker=1".to_string(),
        format!("rhea.net.ip={}/24", wire.guest),
        "appliance.allow_quit=1".to_string(),
        // 25 ms (40 Hz): the hosts this runs on are shared virtual machines whose own
        // scheduling delays reach tens of milliseconds under load (measured: 41 ms on
        // LinuxU and 24 ms under TCG with two compilers running); a miss must be Rhea's —
        // network work pushing the loop past its deadline — not the host's.
        "appliance.period_us=25000".to_string(),
    ]
}

/// The LinuxU appliance's command on `wire`, and the guard keeping the host's RT throttling
/// off while it runs (when it runs SCHED_FIFO).
fn appliance_process(
    image: &image::Image,
    wire: &net::Wire,
    args: &[String],
    abuse: bool,
) -> (std::process::Command, Option<RtThrottleOff>) {
    let ncpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut unthrottled = None;
    // As root the process runs SCHED_FIFO on the host's last CPU, as a real-time
    // appliance on Linux would, with the host's RT throttling off for the run (its
    // default pauses a busy RT task for 50 ms every second — the flood keeps the
    // appliance busy): the control loop's deadlines are then Rhea's to keep, not the
    // host scheduler's. One vCPU, so the other host CPUs stay free for the harness
    // and the flood. Not for the abuse suite, which judges no deadline: a SCHED_FIFO
    // appliance kept busy by an attack can starve the host's own packet processing
    // on its CPU (seen: the host's SYNs to it unanswered for 5 s).
    let mut cmd = if has_chrt() && ncpus >= 2 && !abuse {
        unthrottled = RtThrottleOff::new();
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", &(ncpus - 1).to_string(), "chrt", "-f", "50"])
            .arg(&image.elf);
        c
    } else {
        std::process::Command::new(&image.elf)
    };
    cmd.args(args);
    cmd.arg(format!("rhea.net.tap={}", wire.tap));
    (cmd, unthrottled)
}

/// The QEMU appliance's command (`-smp 2`, TCG), its user-networking NIC moved onto `wire`'s
/// tap as the model `nic`.
fn appliance_qemu(
    board: &Board,
    machine: &str,
    mem: &str,
    image: &image::Image,
    (wire, nic): (&net::Wire, NicModel),
    args: &[String],
    (initrd, share): (Option<&std::path::Path>, Option<qemu::Share>),
) -> std::result::Result<std::process::Command, String> {
    let qemu = setup::ensure_qemu(board).map_err(|e| e.to_string())?;
    let cmdline = args.join(" ");
    let spec = qemu::Spec {
        board,
        machine,
        accel: Accel::Tcg,
        smp: 2,
        mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &cmdline,
    };
    let (mut machine, on_tap) =
        qemu::machine_on_tap(&spec, qemu.qboot.as_deref(), &wire.tap).map_err(|e| e.to_string())?;
    machine.nics = vec![
        nic.apply(on_tap, board.name, spec.machine)
            .map_err(|e| e.to_string())?,
    ];
    machine.binary = qemu.binary;
    if let Some(p) = initrd {
        machine.initrd = Some(p.to_string_lossy().into_owned());
    }
    machine.shares.extend(share);
    Ok(machine.command())
}

/// Judges how the appliance ended: the exercise's result `r`, its exit status, and its
/// console (which must hold the scheduler checker's summary; its appliance and checker
/// lines are printed).
fn check_appliance_end<T>(
    board: &Board,
    r: std::result::Result<T, String>,
    status: Option<std::process::ExitStatus>,
    console: &[String],
) -> std::result::Result<(), String> {
    // Enough lines to hold a kernel panic's message above its registers and backtrace.
    let tail = || console[console.len().saturating_sub(60)..].join("\n  | ");
    r.map_err(|e| format!("{e}\n  | {}", tail()))?;
    let ok = match (board.runner, status.and_then(|s| s.code())) {
        (Runner::Process, Some(0)) => true,
        (Runner::Qemu, Some(code)) => {
            qemu::classify(&qemu::QemuEnd::Exited(code)) == Verdict::Success
        }
        _ => false,
    };
    if !ok {
        return Err(format!(
            "the appliance ended with {status:?}\n  | {}",
            tail()
        ));
    }
    for line in console
        .iter()
        .filter(|l| l.starts_with("appliance:") || l.contains("checker"))
    {
        println!("  | {line}");
    }
    if !console.iter().any(|l| l.contains("no violation")) {
        return Err("no scheduler checker summary on the console".into());
    }
    Ok(())
}

/// Whether one line of `console` holds every text of `wanted` (nothing wanted: yes); the
/// line is printed, or the error names what was missing with the network's lines.
fn check_console_line(console: &[String], wanted: &[&str]) -> std::result::Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    match console
        .iter()
        .find(|l| wanted.iter().all(|w| l.contains(w)))
    {
        Some(line) => {
            println!("  | {line}");
            Ok(())
        }
        None => Err(format!(
            "no console line holds all of {wanted:?}; the network's lines:\n  | {}",
            console
                .iter()
                .filter(|l| {
                    // The NIC drivers' lines, and the boot log's device lines (PCI functions
                    // as `rhea: pci 0000:00:02.0 8086:10d3 Ethernet controller: ...`).
                    l.starts_with("rhea-net:")
                        || l.starts_with("rhea: device")
                        || l.starts_with("rhea: pci ")
                })
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  | ")
        )),
    }
}

/// The host's RT throttling (`/proc/sys/kernel/sched_rt_runtime_us`) switched off until drop,
/// when the old value is written back.
struct RtThrottleOff(String);

const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

impl RtThrottleOff {
    fn new() -> Option<RtThrottleOff> {
        let old = std::fs::read_to_string(RT_RUNTIME).ok()?;
        std::fs::write(RT_RUNTIME, "-1").ok()?;
        Some(RtThrottleOff(old.trim().to_string()))
    }
}

impl Drop for RtThrottleOff {
    fn drop(&mut self) {
        let _ = std::fs::write(RT_RUNTIME, &self.0);
    }
}

/// Whether this process may run others SCHED_FIFO (root, with `chrt` from util-linux).
fn has_chrt() -> bool {
    net::is_root()
        && std::process::Command::new("chrt")
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e1000e_cases_tell_the_interrupt_modes_apart() {
        let console = |how: &str| {
            vec![
                "rhea: pci 0000:00:02.0 8086:10d3 Ethernet controller: bound by e1000e".to_string(),
                format!(
                    "rhea-net: e1000e 0000:00:02.0 {how} mac 52:54:00:12:34:56, ip 10.77.10.2/24"
                ),
            ]
        };
        let wants = |name: &str| {
            NET_CASES
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.console)
                .unwrap()
        };
        let (msix, msi, intx) = (
            wants("qemu-x86_64/q35/tcg appliance net e1000e"),
            wants("qemu-x86_64/q35/tcg appliance net e1000e msi"),
            wants("pc-uefi/q35/tcg appliance net e1000e intx"),
        );
        let modes = [
            (msix, "MSI-X vector 0x41"),
            (msi, "MSI vector 0x41"),
            (intx, "INTx GSI 11"),
        ];
        for (i, (want, _)) in modes.iter().enumerate() {
            for (j, (_, how)) in modes.iter().enumerate() {
                assert_eq!(
                    check_console_line(&console(how), want).is_ok(),
                    i == j,
                    "{want:?} against {how}"
                );
            }
        }
        let e = check_console_line(&console("MSI-X vector 0x41"), msi).unwrap_err();
        assert!(e.contains("rhea-net: e1000e 0000:00:02.0 MSI-X"), "{e}");
        // The device's boot-log line is shown too.
        assert!(
            e.contains("rhea: pci 0000:00:02.0 8086:10d3 Ethernet controller: bound by e1000e"),
            "{e}"
        );
        assert!(check_console_line(&[], &[]).is_ok());
        // Each case has a wire of its own among the network cases.
        let mut wires: Vec<u8> = NET_CASES.iter().map(|c| c.wire).collect();
        wires.sort_unstable();
        wires.dedup();
        assert_eq!(wires.len(), NET_CASES.len());
    }

    #[test]
    fn repeated_cases_report_their_pass_counts() {
        let mut t = Tally::default();
        t.pass("a", Duration::ZERO);
        t.fail("a", None, "late");
        t.pass("a", Duration::ZERO);
        t.pass("b", Duration::ZERO);
        assert_eq!(t.repeat_report(), ["2/3 passed: a"]);
        assert_eq!((t.passed, t.failed), (3, 1));
    }

    #[test]
    fn the_steal_report_is_required_exactly_where_steal_is_kept() {
        let done = "rhea: app main returned (Success)\n";
        let with = "rhea: app main returned (Success)\nrhea: steal time: cpu0 12 us\n";
        let check = |b, a, acc, c| check_steal_report(b, a, acc, c);
        assert!(check("qemu-x86_64", "x86_64", Accel::Kvm, done).is_err());
        assert!(check("qemu-x86_64", "x86_64", Accel::Kvm, with).is_ok());
        assert!(check("xen-arm64", "aarch64", Accel::Tcg, done).is_err());
        assert!(check("xen-x86_64", "x86_64", Accel::Tcg, with).is_ok());
        assert!(check("qemu-x86_64", "x86_64", Accel::Tcg, done).is_ok());
        assert!(check("qemu-x86_64", "x86_64", Accel::Tcg, with).is_err());
        assert!(check("qemu-aarch64", "aarch64", Accel::Kvm, done).is_ok());
        // A run that never returned from main (a fault test) is not asked for it.
        assert!(check("xen-x86_64", "x86_64", Accel::Tcg, "rhea: app main\n").is_ok());
    }

    fn frags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fragments_in_order() {
        let console = "rhea: boot\nhello from rhea\npanicked at src/main.rs:3\nbacktrace:\n";
        assert_eq!(missing_fragment(console, &[]), None);
        assert_eq!(
            missing_fragment(console, &frags(&["hello", "panicked at", "backtrace"])),
            None
        );
        // Out of order.
        assert_eq!(
            missing_fragment(console, &frags(&["panicked at", "hello"])),
            Some(1)
        );
        assert_eq!(missing_fragment(console, &frags(&["nope"])), Some(0));
        // A fragment is consumed: the same text twice needs two occurrences.
        assert_eq!(missing_fragment("ab", &frags(&["a", "a"])), Some(1));
        assert_eq!(missing_fragment("a a", &frags(&["a", "a"])), None);
        // Fragments may span lines.
        assert_eq!(missing_fragment(console, &frags(&["boot\nhello"])), None);
    }

    #[test]
    fn netfront_runs_are_judged() {
        use crate::xen::dom0::{Arch, CheckResult, DomUEnd, DomUKernel, parse_serial};
        let kernel = DomUKernel::Image {
            path: "/img/appliance".into(),
            ramdisk: None,
        };
        let (spec, cpu) = netfront_spec(Arch::Aarch64, kernel.clone());
        assert_eq!((cpu, spec.vcpus, spec.checks.len()), (1, 2, 4));
        assert!(
            spec.cmdline.contains("rhea.net.irq_cpu=1"),
            "{}",
            spec.cmdline
        );
        let (x86, cpu) = netfront_spec(Arch::X86_64, kernel);
        assert_eq!((cpu, x86.vcpus), (0, 1));
        // A run that passed everything.
        let mut out = parse_serial(&[]);
        out.created = Some(true);
        out.ready = Some((true, "xen".into()));
        out.xen_console = "net: bound by xen-netfront\nnet: interrupts on cpu1\n".into();
        out.checks = ["ping", "udp", "tcp", "http"]
            .map(|name| CheckResult {
                name: name.into(),
                ok: true,
                detail: String::new(),
            })
            .to_vec();
        out.domu_end = DomUEnd::StillRunning {
            state: "-b----".into(),
            destroyed: true,
        };
        assert_eq!(netfront_problems(&spec, &out, 1), Vec::<String>::new());
        // The same on the wrong CPU, with a failed check, and a domU that ended.
        out.checks[1].ok = false;
        out.checks[1].detail = "sent=a got=".into();
        out.domu_end = DomUEnd::Gone;
        assert_eq!(
            netfront_problems(&spec, &out, 0),
            [
                "the NIC's event channel was not moved to cpu0",
                "check udp failed: sent=a got=",
                "the domU did not stay up: gone (xl no longer lists it)",
            ]
        );
        // Nothing reached.
        let none = netfront_problems(&spec, &parse_serial(&[]), 1);
        assert_eq!(none.len(), 6, "{none:?}");
        assert!(
            netfront_failure(&none, &parse_serial(&[])).starts_with("the domU was not created; ")
        );
    }

    #[test]
    fn judging() {
        let console = "hello\nworld\n";
        let ok = judge(
            Expect::Success,
            &Verdict::Success,
            console,
            &frags(&["hello", "world"]),
        );
        assert_eq!(ok, Ok(()));
        let err = judge(
            Expect::Success,
            &Verdict::Success,
            console,
            &frags(&["world", "hello"]),
        );
        assert_eq!(err.unwrap_err(), "console lacks \"hello\" after \"world\"");
        let err = judge(
            Expect::Success,
            &Verdict::Success,
            console,
            &frags(&["bye"]),
        );
        assert_eq!(err.unwrap_err(), "console lacks \"bye\"");
        assert_eq!(
            judge(Expect::Failure, &Verdict::KernelFailure, console, &[]),
            Ok(())
        );
        assert!(
            judge(Expect::Failure, &Verdict::Success, console, &[])
                .unwrap_err()
                .contains("expected failure")
        );
        assert!(
            judge(Expect::Success, &Verdict::KernelFailure, console, &[])
                .unwrap_err()
                .contains("expected success")
        );
        let timeout = Verdict::Other("TIMEOUT after 60s".to_string());
        assert_eq!(
            judge(Expect::Failure, &timeout, console, &[]).unwrap_err(),
            "TIMEOUT after 60s"
        );
    }

    #[test]
    fn test_cmdlines() {
        assert_eq!(boot_cmdline("", ""), "rhea.checker=1");
        assert_eq!(boot_cmdline(" a=1 b ", ""), "rhea.checker=1 a=1 b");
        assert_eq!(boot_cmdline("", "x=2"), "rhea.checker=1 x=2");
        assert_eq!(boot_cmdline("a=1", "x=2 y"), "rhea.checker=1 a=1 x=2 y");
    }

    #[test]
    fn case_names() {
        assert_eq!(
            case_name("qemu-x86_64", "q35", "tcg", "hello"),
            "qemu-x86_64/q35/tcg hello"
        );
    }

    /// An app from a manifest's `[package.metadata.rhea]` lines.
    fn app(name: &str, meta: &str) -> App {
        let text = format!("[package]\nname = \"{name}\"\n[package.metadata.rhea]\n{meta}\n");
        let m = apps::parse_manifest(&text).unwrap();
        App::new(name.to_string(), std::path::PathBuf::new(), m)
    }

    #[test]
    fn kernel_only_apps_boot_on_the_board_that_covers_them_and_not_on_pc_uefi() {
        let opts = Options::default();
        let k = app("k", "kernel-only = true");
        assert!(names_of_cases(&opts, "pc-uefi", &k, &[Accel::Tcg]).is_empty());
        assert_eq!(
            names_of_cases(&opts, "qemu-x86_64", &k, &[Accel::Tcg]),
            ["qemu-x86_64/microvm/tcg k", "qemu-x86_64/q35/tcg k"]
        );
        let named = Options {
            app: Some("k".to_string()),
            ..Options::default()
        };
        assert_eq!(
            names_of_cases(&named, "pc-uefi", &k, &[Accel::Tcg]),
            ["pc-uefi/q35/tcg k"],
            "--app boots it all the same"
        );
        let m = app("m", "kernel-only = false");
        assert_eq!(
            names_of_cases(&opts, "pc-uefi", &m, &[Accel::Tcg]),
            ["pc-uefi/q35/tcg m"]
        );
        let covering = boards::find("pc-uefi").unwrap().kernel_only_apps_on;
        assert!(
            covering.is_some_and(|b| boards::find(b).is_ok()),
            "pc-uefi names a board that exists"
        );
    }

    fn names_of_cases(opts: &Options, board: &str, app: &App, accels: &[Accel]) -> Vec<String> {
        let ws = Workspace {
            root: std::path::PathBuf::from("/nonexistent"),
        };
        let t = TestRun {
            ws: &ws,
            opts,
            all_apps: &[],
            tally: Tally::default(),
        };
        let board = boards::find(board).unwrap();
        let machines = board.machines_to_test(opts.machine.as_deref()).unwrap();
        let cases = t.cases(board, app, &machines, accels);
        cases.into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn cases_by_machine_then_accel_then_cpus() {
        let opts = Options::default();
        let a = app("a", "smp = [2, 4]");
        assert_eq!(
            names_of_cases(&opts, "linuxu", &a, &[Accel::Tcg, Accel::Kvm]),
            [
                "linuxu/realtime/native a smp2",
                "linuxu/realtime/native a smp4",
                "linuxu/sim/native a smp2",
                "linuxu/sim/native a smp4",
            ]
        );
        // Seeds replace CPU counts on the simulation machine only.
        let a = app("a", "sim-seeds = [3, 9]");
        assert_eq!(
            names_of_cases(&opts, "linuxu", &a, &[Accel::Tcg]),
            [
                "linuxu/realtime/native a",
                "linuxu/sim/native a seed3",
                "linuxu/sim/native a seed9",
            ]
        );
        // Another instruction set: TCG only, whatever the accelerators.
        let a = app("a", "");
        let names = names_of_cases(&opts, "qemu-aarch64", &a, &[Accel::Tcg, Accel::Kvm]);
        assert!(
            !names.is_empty() && names.iter().all(|n| n.contains("/tcg a")),
            "{names:?}"
        );
    }

    #[test]
    fn nested_kvm_cases_are_named_so() {
        let mut opts = Options::default();
        let ws = Workspace {
            root: std::path::PathBuf::from("/nonexistent"),
        };
        let names_on = |board: &str, opts: &Options, a: &App| {
            let t = TestRun {
                ws: &ws,
                opts,
                all_apps: &[],
                tally: Tally::default(),
            };
            let board = boards::find(board).unwrap();
            let machines = board.machines_to_test(opts.machine.as_deref()).unwrap();
            t.cases_as(board, a, &machines, &[Accel::Kvm], Some(qemu::NESTED_KVM))
                .into_iter()
                .map(|c| (c.name, c.accel))
                .collect::<Vec<_>>()
        };
        let names = |opts: &Options, a: &App| names_on("qemu-x86_64", opts, a);
        let a = app("hello", "smp = [1, 2]");
        let got = names(&opts, &a);
        assert_eq!(
            got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            [
                "qemu-x86_64/microvm/nested-kvm hello smp1",
                "qemu-x86_64/microvm/nested-kvm hello smp2",
                "qemu-x86_64/q35/nested-kvm hello smp1",
                "qemu-x86_64/q35/nested-kvm hello smp2",
            ]
        );
        // The L2s boot under KVM.
        assert!(got.iter().all(|(_, accel)| *accel == Accel::Kvm));
        // `--filter nested-kvm` selects them; a TCG filter does not.
        opts.filter = Some("q35/nested-kvm".to_string());
        assert_eq!(names(&opts, &app("hello", "")).len(), 1);
        opts.filter = Some("tcg".to_string());
        assert!(names(&opts, &app("hello", "")).is_empty());
        // The Arm board's, on both GICs, under KVM too (an Arm board's direct cases are TCG's).
        opts.filter = None;
        let arm = names_on("qemu-aarch64", &opts, &app("hello", ""));
        assert_eq!(
            arm.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            [
                "qemu-aarch64/virt-gicv2/nested-kvm hello",
                "qemu-aarch64/virt-gicv3/nested-kvm hello",
            ]
        );
        assert!(arm.iter().all(|(_, accel)| *accel == Accel::Kvm));
        opts.filter = Some("virt-gicv3/nested-kvm".to_string());
        assert_eq!(names_on("qemu-aarch64", &opts, &app("hello", "")).len(), 1);
        assert!(nested::has_l1(boards::find("rpi4").unwrap()).is_err());
        assert!(nested::has_l1(boards::find("qemu-aarch64").unwrap()).is_ok());
        // `skip-on` with an accelerator skips that one only; without, every one on the machine.
        opts.filter = None;
        let one = app("s", "skip-on = [\"qemu-x86_64/microvm/nested-kvm\"]");
        assert_eq!(
            names(&opts, &one)
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["qemu-x86_64/q35/nested-kvm s"]
        );
        let tcg_only = app("s", "skip-on = [\"qemu-x86_64/microvm/tcg\"]");
        assert_eq!(names(&opts, &tcg_only).len(), 2);
        let all = app("s", "skip-on = [\"qemu-x86_64/microvm\"]");
        assert_eq!(names(&opts, &all).len(), 1);
    }

    #[test]
    fn the_build_plan_is_what_the_boot_loop_boots() {
        let mut opts = Options::default();
        let ws = Workspace {
            root: std::path::PathBuf::from("/nonexistent"),
        };
        let x86 = boards::find("qemu-x86_64").unwrap();
        let arm = boards::find("qemu-aarch64").unwrap();
        let only_x86 = app("only-x86", "boards = [\"qemu-x86_64\"]");
        let anywhere = app("anywhere", "");
        let not_arm = app(
            "not-arm",
            "skip-on = [\"qemu-aarch64/virt-gicv2\", \"qemu-aarch64/virt-gicv3\"]",
        );
        let apps = [&only_x86, &anywhere, &not_arm];
        let order = |opts: &Options| {
            let t = TestRun {
                ws: &ws,
                opts,
                all_apps: &[],
                tally: Tally::default(),
            };
            let planned = t.plan_boots(&[x86, arm], &apps, &[Accel::Tcg])?;
            Ok::<_, Error>(
                planned
                    .iter()
                    .map(|p| (p.board.name, p.app.name.as_str(), p.cases.len()))
                    .collect::<Vec<_>>(),
            )
        };
        // Board by board, app by app; `boards = [...]` and `skip-on` leave pairs out.
        assert_eq!(
            order(&opts).unwrap(),
            [
                ("qemu-x86_64", "only-x86", 2),
                ("qemu-x86_64", "anywhere", 2),
                ("qemu-x86_64", "not-arm", 2),
                ("qemu-aarch64", "anywhere", 2),
            ]
        );
        // `--filter` too: nothing is built that boots no case.
        opts.filter = Some("virt-gicv3/tcg anywhere".to_string());
        assert_eq!(order(&opts).unwrap(), [("qemu-aarch64", "anywhere", 1)]);
        opts.filter = Some("no such case".to_string());
        assert!(order(&opts).unwrap().is_empty());
        // `--machine`: a board without it is an error, as in the boot loop before.
        opts.filter = None;
        opts.machine = Some("q35".to_string());
        assert!(order(&opts).is_err());
    }

    #[test]
    fn not_run_is_not_a_pass() {
        let mut tally = Tally::default();
        tally.not_run("qemu-x86_64/q35/nested-kvm hello", "no QEMU");
        assert!(matches!(tally.finish(), Err(Error::Quiet(1))));
        let mut tally = Tally::default();
        tally.pass("a", Duration::ZERO);
        assert!(tally.finish().is_ok());
    }

    #[test]
    fn cases_left_out() {
        let mut opts = Options::default();
        // `skip-on` and `boards`.
        let a = app("a", "skip-on = [\"linuxu/sim\"]");
        assert_eq!(
            names_of_cases(&opts, "linuxu", &a, &[Accel::Tcg]),
            ["linuxu/realtime/native a"]
        );
        let a = app("a", "boards = [\"qemu-x86_64\"]");
        assert!(names_of_cases(&opts, "linuxu", &a, &[Accel::Tcg]).is_empty());
        // `--filter` on the case name.
        opts.filter = Some("sim/native a smp4".to_string());
        let a = app("a", "smp = [2, 4]");
        assert_eq!(
            names_of_cases(&opts, "linuxu", &a, &[Accel::Tcg]),
            ["linuxu/sim/native a smp4"]
        );
    }

    #[test]
    fn case_command_lines() {
        let opts = Options::default();
        let linuxu = boards::find("linuxu").unwrap();
        let case = |machine, smp| Case {
            machine,
            accel: Accel::Tcg,
            smp,
            seed: None,
            name: String::new(),
        };
        let base = boot_cmdline("x=1", "");
        let one = case_cmdline(linuxu, &case("realtime", 1), &base, &opts).unwrap();
        assert!(
            one.ends_with("rhea.checker=1 x=1") && !one.contains("rhea.cpus"),
            "{one}"
        );
        let four = case_cmdline(linuxu, &case("realtime", 4), &base, &opts).unwrap();
        assert!(four.ends_with("rhea.cpus=4 rhea.checker=1 x=1"), "{four}");
        // The CPU-count line is looked for with more than one CPU, not on `sim`.
        let a = app("a", "smp = [1, 2]");
        assert_eq!(
            smp_line(linuxu, &a, &case("realtime", 2)).as_deref(),
            Some("rhea: smp: 2 of 2 CPUs online")
        );
        assert_eq!(smp_line(linuxu, &a, &case("realtime", 1)), None);
        assert_eq!(smp_line(linuxu, &a, &case("sim", 2)), None);
        let own = app("a", "smp = [2]\nconsole = [\"1 of 2 CPUs online\"]");
        assert_eq!(smp_line(linuxu, &own, &case("realtime", 2)), None);
    }
}
