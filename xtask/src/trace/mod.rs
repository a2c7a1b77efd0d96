//! `cargo xtask trace`: boots an app with event tracing on (`rhea.trace=all`), takes the
//! trace dump from its console (or, for a service that does not end, from its HTTP `/trace`),
//! and converts it into a Perfetto trace (`perfetto.rs`, opened in ui.perfetto.dev) and a
//! text report (`report.rs`). `--from LOG` converts a console log or a fetched dump without
//! booting.
//!
//! The dump is parsed with `rhea_trace::frame::parse`, which keeps whatever arrived whole:
//! each of its problems (a damaged or missing frame, a cut-off end) is printed as a warning
//! naming the line, and the rest is converted.

pub(crate) mod model;
pub(crate) mod perfetto;
pub(crate) mod readback;
pub(crate) mod report;
pub(crate) mod schema;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rhea_trace::frame::{self, Dump};

use crate::apps::{self, App, Net};
use crate::boards::{self, Board, Runner};
use crate::qemu::{self, AccelChoice};
use crate::{Context, Options, Result, Workspace, fail, image, setup, usage};

/// The app `trace` boots without `--app`: the priority-inheritance scenario.
pub(crate) const DEFAULT_APP: &str = "trace-pi";

/// CPUs `trace` boots with without `--cpus` (the scenario runs across two).
pub(crate) const DEFAULT_CPUS: u32 = 2;

/// The kernel command line that turns every trace category on.
pub(crate) const TRACE_ALL: &str = "rhea.trace=all";

/// How long a service is left running after it is up before its `/trace` is fetched.
const SERVICE_SETTLE: Duration = Duration::from_secs(5);

/// How long a service may take to come up.
const SERVICE_UP_TIMEOUT: Duration = Duration::from_secs(180);

/// A dump converted: the parsed dump, the Perfetto trace's bytes and the report.
pub(crate) struct Converted {
    pub(crate) dump: Dump,
    pub(crate) perfetto: Vec<u8>,
    pub(crate) report: String,
}

/// Parses the dump in `text` and converts it; fails only when `text` holds no frame at all.
pub(crate) fn convert(text: &str) -> Result<Converted> {
    let dump = frame::parse(text);
    let frames = text.lines().filter(|l| l.contains(frame::MARKER)).count();
    if frames == 0 {
        return fail(format!(
            "no trace dump in the input: no `{}` frame lines (was the kernel booted with \
             {TRACE_ALL}, and does it dump when the app ends?)",
            frame::MARKER.trim_end()
        ));
    }
    let timeline = model::Timeline::new(&dump);
    let perfetto = perfetto::encode(&timeline);
    let report = report::report(&dump, &timeline);
    Ok(Converted {
        dump,
        perfetto,
        report,
    })
}

/// The report's path next to the Perfetto file `out`: the same with the extension `.txt`.
pub(crate) fn report_path(out: &Path) -> PathBuf {
    out.with_extension("txt")
}

/// Converts `text`, prints the warnings, writes `out` and its report, prints the report and
/// then the Perfetto file's path (the last line).
pub(crate) fn convert_to(text: &str, out: &Path) -> Result<Converted> {
    let converted = convert(text)?;
    for p in &converted.dump.problems {
        eprintln!("warning: {p}");
    }
    let txt = report_path(out);
    if txt == out {
        return usage(format!(
            "--out {}: the report is written next to it with the extension .txt; choose \
             another name",
            out.display()
        ));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, &converted.perfetto)
        .context(|| format!("cannot write {}", out.display()))?;
    std::fs::write(&txt, &converted.report)
        .context(|| format!("cannot write {}", txt.display()))?;
    print!("{}", converted.report);
    println!("report: {}", txt.display());
    println!(
        "perfetto trace (open in https://ui.perfetto.dev): {}",
        out.display()
    );
    println!("{}", out.display());
    Ok(converted)
}

/// `cargo xtask trace`.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    if let Some(log) = &opts.from {
        let given = [
            ("--board", opts.board.is_some()),
            ("--app", opts.app.is_some()),
            ("--cpus", opts.cpus.is_some()),
            ("--append", opts.append.is_some()),
            ("--machine", opts.machine.is_some()),
            ("--accel", opts.accel != AccelChoice::Auto),
            ("--mem", opts.mem != Options::default().mem),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            return usage(format!(
                "--from converts a log without booting: {flag} has no use with it (only --out)"
            ));
        }
        let text = std::fs::read(log).context(|| format!("cannot read {}", log.display()))?;
        let text = String::from_utf8_lossy(&text);
        let out = opts.out.clone().unwrap_or_else(|| {
            let stem = log
                .file_stem()
                .map_or("trace".into(), |s| s.to_string_lossy().into_owned());
            ws.root
                .join("target/trace")
                .join(format!("{stem}.perfetto-trace"))
        });
        convert_to(&text, &out)?;
        return Ok(());
    }
    let board = boards::find(opts.board_name())?;
    let machine = board.machine(opts.machine.as_deref())?;
    let apps = apps::discover(&ws.root)?;
    let app_name = opts.app.as_deref().unwrap_or(DEFAULT_APP);
    let app = apps::find(&apps, app_name).map_err(|e| match e {
        crate::Error::Usage(msg) if app_name == DEFAULT_APP => crate::Error::Usage(format!(
            "{msg}\n(the trace scenario tests/{DEFAULT_APP} comes with the kernel's event \
             tracing: merge main once it has landed, or name another app with --app)"
        )),
        other => other,
    })?;
    if !board.builds(app) {
        return usage(format!(
            "app {} needs the network stack, which has no build for board {} yet",
            app.name, board.name
        ));
    }
    let out = opts.out.clone().unwrap_or_else(|| {
        ws.root
            .join("target/trace")
            .join(format!("{}-{}.perfetto-trace", board.name, app.name))
    });
    let text = boot(ws, board, machine, app, opts)?;
    let log = out.with_extension("console.log");
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&log, &text).context(|| format!("cannot write {}", log.display()))?;
    println!(
        "console: {} (convert it again with cargo xtask trace --from {})",
        log.display(),
        log.display()
    );
    if let Err(e) = convert_to(&text, &out) {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("console (last lines):");
        for line in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("  | {line}");
        }
        return Err(e);
    }
    Ok(())
}

/// The kernel command line of a trace boot: tracing on, the app's own `cmdline`, `--append`.
pub(crate) fn trace_cmdline(app_cmdline: &str, append: &str) -> String {
    [TRACE_ALL, app_cmdline, append]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `app` is a service that does not end by itself (an app under `apps/` with a
/// network: the appliance), whose trace is fetched over HTTP.
fn is_service(app: &App) -> bool {
    app.net != Net::None && app.dir.parent().and_then(Path::file_name) == Some("apps".as_ref())
}

/// Builds and boots `app`, returning the text holding its dump (its console, or for a
/// service its console followed by its `/trace`).
pub(crate) fn boot(
    ws: &Workspace,
    board: &'static Board,
    machine: &'static str,
    app: &App,
    opts: &Options,
) -> Result<String> {
    let mut o = opts.clone();
    o.smp = opts.cpus.unwrap_or(DEFAULT_CPUS);
    o.append = Some(trace_cmdline(&app.cmdline, opts.append()));
    let append = boards::run_cmdline(board, machine, &o)?;
    setup::ensure_toolchain(ws, board)?;
    if board.runner == Runner::Process {
        if is_service(app) {
            return fail(format!(
                "not yet: tracing the {} on {} (a service fetched over HTTP /trace) needs a tap \
                 NIC; boot it on a QEMU board",
                app.name, board.name
            ));
        }
        let image = image::build(ws, board, app)?;
        println!("trace: {} on {}: {append}", app.name, board.name);
        let captured = qemu::run_process_captured(
            &image.elf,
            &append,
            app.stdin.as_ref(),
            app.timeout,
            opts.verbose,
            None,
        )?;
        println!("{}: {}", board.name, captured.end.describe());
        return Ok(captured.console());
    }
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    let decision = qemu::decide_accel(opts.accel, &qemu::probe_hardware_kvm());
    decision.print();
    let spec = qemu::Spec {
        board,
        machine,
        accel: decision.accel,
        smp: o.smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Captured,
        append: &append,
    };
    println!(
        "trace: {} on {} {machine}, {} CPUs: {append}",
        app.name, board.name, o.smp
    );
    if is_service(app) {
        return boot_service(&qemu, &spec, app, opts.verbose);
    }
    let captured = qemu::run_captured(&qemu, &spec, app.stdin.as_ref(), app.timeout, opts.verbose)?;
    match qemu::classify(&captured.end) {
        qemu::Verdict::Success => println!("QEMU: {}", captured.end.describe()),
        other => eprintln!(
            "warning: QEMU: {}: {} (converting what the console holds)",
            captured.end.describe(),
            other.describe()
        ),
    }
    Ok(captured.console())
}

/// A free TCP port on the host's loopback (bound and released: QEMU takes it next).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context(|| "cannot find a free port on 127.0.0.1".to_string())?;
    Ok(l.local_addr()
        .context(|| "cannot find a free port on 127.0.0.1".to_string())?
        .port())
}

/// Boots a service with its HTTP port forwarded from the host's loopback, waits until it is
/// up and [`SERVICE_SETTLE`] more, fetches `/trace`, and stops QEMU. Returns the console
/// followed by the fetched dump.
fn boot_service(
    qemu: &qemu::Qemu,
    spec: &qemu::Spec<'_>,
    app: &App,
    verbose: bool,
) -> Result<String> {
    let (http, echo) = (free_port()?, free_port()?);
    let mut m = qemu::machine(spec, qemu.qboot.as_deref())?;
    m.binary = qemu.binary.clone();
    let backend = qemu::Backend::Forwarded {
        bind: "127.0.0.1",
        http,
        echo,
    };
    m.nics = qemu::nic(spec.board.name, spec.machine, app.net, backend)
        .into_iter()
        .collect();
    if m.nics.is_empty() {
        return fail(format!(
            "{} has no NIC on {} {}: its /trace cannot be fetched",
            app.name, spec.board.name, spec.machine
        ));
    }
    let mut cmd: Command = m.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if verbose {
        println!("$ {}", crate::describe(&cmd));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .context(|| format!("cannot start `{}`", crate::describe(&cmd)))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return fail("QEMU's output is not piped".to_string());
    };
    let readers = qemu::LineReaders::spawn(stdout, stderr, start);
    let ready = if app.name == "appliance" {
        "appliance: ready"
    } else {
        "rhea: app main"
    };
    let mut lines: Vec<(Duration, String)> = Vec::new();
    let mut up_at: Option<Instant> = None;
    let fetched = loop {
        while let Ok((at, line)) = readers.lines.try_recv() {
            if verbose {
                println!("{line}");
            }
            if up_at.is_none() && line.contains(ready) {
                println!(
                    "trace: {ready:?} seen; fetching /trace in {} s",
                    SERVICE_SETTLE.as_secs()
                );
                up_at = Some(Instant::now());
            }
            lines.push((at, line));
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!(
                "QEMU ended ({}) before /trace was fetched",
                qemu::QemuEnd::from_status(status).describe()
            ));
        }
        if up_at.is_none() && start.elapsed() > SERVICE_UP_TIMEOUT {
            break Err(format!(
                "{} did not print {ready:?} within {} s",
                app.name,
                SERVICE_UP_TIMEOUT.as_secs()
            ));
        }
        if up_at.is_some_and(|t| t.elapsed() >= SERVICE_SETTLE) {
            break fetch_trace(http);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let stderr = readers.finish(&mut lines, verbose);
    let mut text = String::new();
    for (_, line) in &lines {
        text.push_str(line);
        text.push('\n');
    }
    match fetched {
        Ok(body) => {
            text.push_str(&body);
            Ok(text)
        }
        Err(why) => {
            let tail: Vec<&str> = lines
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|(_, l)| l.as_str())
                .collect();
            fail(format!(
                "{why}\n  console (last lines):\n  | {}\n  QEMU stderr: {}",
                tail.join("\n  | "),
                stderr.trim()
            ))
        }
    }
}

/// `GET /trace` from the service forwarded at 127.0.0.1:`port` (a few tries: the port may
/// open a moment after the ready line).
fn fetch_trace(port: u16) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match crate::test::net::get_at(Ipv4Addr::LOCALHOST, port, "/trace") {
            Ok((200, body)) => return Ok(body),
            Ok((404, _)) => {
                return Err(
                    "not yet: this appliance does not serve /trace (it comes with the kernel's \
                     event tracing on main)"
                        .to_string(),
                );
            }
            Ok((code, body)) => {
                return Err(format!(
                    "/trace answered {code}: {}",
                    body.chars().take(200).collect::<String>()
                ));
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err(format!("GET /trace failed: {last}"))
}
