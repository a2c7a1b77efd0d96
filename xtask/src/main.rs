//! `cargo xtask`: the build, run, test, lint and benchmark driver for Rhea.
//!
//! This file holds the command-line parsing and the dispatch to the other modules, plus the
//! few helpers they all share (the error type, the workspace paths, running a child process).
//! Arguments are parsed by hand to keep the tool quick to build.
//!
//! ```text
//! cargo xtask build | run | test | lint | bench boot|sched|linux-sched|xen|...  [options]
//! ```
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (unknown command, board, app or option).

mod abuse;
mod apps;
mod bench;
mod bench_arm;
mod bench_net;
mod bench_queue;
mod bench_rtos;
mod bench_smp;
mod bench_xen;
mod boards;
mod cmdline_test;
mod firmware;
mod fuzz;
mod guest;
mod host_baseline;
mod image;
mod layers;
mod lint;
mod linux_guest;
mod net_test;
mod qemu;
mod setup;
mod symtab;
mod test;
mod xen;
mod xen_dom0;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::qemu::AccelChoice;

/// Why a command did not succeed; decides the process exit code.
#[derive(Debug)]
pub(crate) enum Error {
    /// Bad command line or unknown name: exit code 2.
    Usage(String),
    /// Something went wrong: exit code 1.
    Failed(String),
    /// Already reported (e.g. a test summary was printed): exit with this code, print nothing.
    Quiet(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Failed(msg) => f.write_str(msg),
            Error::Quiet(code) => write!(f, "exit code {code}"),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for `Err(Error::Failed(..))`.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Failed(msg.into()))
}

/// Shorthand for `Err(Error::Usage(..))`.
pub(crate) fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Usage(msg.into()))
}

/// Attaches a description of what was being done to an error.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Failed(format!("{}: {e}", what())))
    }
}

/// The Cargo workspace xtask lives in, and the paths derived from it.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
}

impl Workspace {
    /// The workspace root: the parent of this crate's directory.
    fn locate() -> Workspace {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        Workspace { root }
    }

    /// The Cargo target directory of one board (one per board, so RUSTFLAGS never thrash).
    pub(crate) fn board_target_dir(&self, board: &boards::Board) -> PathBuf {
        self.root
            .join("target")
            .join(format!("board-{}", board.name))
    }

    /// Where finished images of one board are copied.
    pub(crate) fn image_dir(&self, board: &boards::Board) -> PathBuf {
        self.root.join("target").join("images").join(board.name)
    }

    /// A `cargo` command (the rustup proxy, so `rust-toolchain.toml` applies) run in the root.
    pub(crate) fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root);
        // Flags meant for a board build must never leak into host builds.
        cmd.env_remove("CARGO_ENCODED_RUSTFLAGS");
        cmd.env_remove("RHEA_SYMTAB");
        cmd
    }

    /// Any command run in the workspace root.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        cmd
    }
}

/// Renders a command line for messages (arguments with spaces are quoted).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        out.push(' ');
        if arg.is_empty() || arg.contains([' ', '"', '\'']) {
            out.push_str(&format!("{arg:?}"));
        } else {
            out.push_str(&arg);
        }
    }
    out
}

/// Runs a command with inherited stdio; fails unless it exits with status 0.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .context(|| format!("cannot run `{}`", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        fail(format!("`{}` failed ({status})", describe(cmd)))
    }
}

/// Runs a command and returns its stdout; fails (quoting stderr) unless it exits with 0.
pub(crate) fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context(|| format!("cannot run `{}`", describe(cmd)))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        fail(format!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    Build,
    Run,
    Test,
    Lint,
    /// `bench [NAME]`; `None` lists the benches.
    Bench(Option<String>),
    /// `xen-dom0 ...`: Xen with a Linux dom0 creating a domU (xen_dom0.rs parses the rest).
    XenDom0(Vec<String>),
    /// `fuzz [TARGET] [--time S]`: libFuzzer on the parsers (fuzz.rs parses the rest).
    Fuzz(Vec<String>),
    Help,
}

/// Every option, after parsing. Which ones a command accepts is in [`OPTIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) board: Option<String>,
    pub(crate) app: Option<String>,
    pub(crate) accel: AccelChoice,
    pub(crate) smp: u32,
    pub(crate) mem: String,
    pub(crate) machine: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) no_host: bool,
    pub(crate) verbose: bool,
    /// `--loops`: iterations of the scheduler measurements (`bench sched`, `bench linux-sched`).
    pub(crate) loops: Option<u32>,
    /// `--periods`: periods per test of `bench rtos`.
    pub(crate) periods: Option<u32>,
    /// `--rounds`: rounds of `bench net`, each measuring Rhea and the Linux guest.
    pub(crate) rounds: Option<u32>,
    /// `--period-ms`: the period of `bench rtos`, in ms.
    pub(crate) period_ms: Option<u32>,
    /// `--append`: extra kernel command line (`run`, `bench`: all of it besides what a bench
    /// needs; `test`: after `rhea.checker=1` and the app's `cmdline`).
    pub(crate) append: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            board: None,
            app: None,
            accel: AccelChoice::Auto,
            smp: 1,
            mem: "128M".to_string(),
            machine: None,
            filter: None,
            no_host: false,
            verbose: false,
            loops: None,
            periods: None,
            rounds: None,
            period_ms: None,
            append: None,
        }
    }
}

impl Options {
    /// The selected board name (default `qemu-x86_64`).
    pub(crate) fn board_name(&self) -> &str {
        self.board.as_deref().unwrap_or(boards::DEFAULT_BOARD)
    }

    /// The selected app name (default `hello`).
    pub(crate) fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or(apps::DEFAULT_APP)
    }

    /// The `--append` text (empty if not given).
    pub(crate) fn append(&self) -> &str {
        self.append.as_deref().unwrap_or("")
    }
}

/// One option: its name, whether it takes a value, its help line, and the commands taking it.
struct OptSpec {
    name: &'static str,
    value: Option<&'static str>,
    help: &'static str,
    commands: &'static [&'static str],
}

const OPTIONS: &[OptSpec] = &[
    OptSpec {
        name: "--board",
        value: Some("B"),
        help: "board (default qemu-x86_64; `test`: all boards; `lint`: all boards; `bench`: sched only, qemu-x86_64, linuxu, \
               qemu-aarch64 or rpi4; xen: xen-x86_64 or xen-arm64, default both)",
        commands: &["build", "run", "test", "lint", "bench"],
    },
    OptSpec {
        name: "--app",
        value: Some("A"),
        help: "app under apps/ or tests/ (default hello; `test`: all apps)",
        commands: &["build", "run", "test"],
    },
    OptSpec {
        name: "--accel",
        value: Some("kvm|tcg|auto"),
        help: "accelerator (default auto: KVM only when hardware KVM is usable)",
        commands: &["run", "test", "bench"],
    },
    OptSpec {
        name: "--smp",
        value: Some("N"),
        help: "number of vCPUs (default 1)",
        commands: &["run", "test", "bench"],
    },
    OptSpec {
        name: "--mem",
        value: Some("SIZE"),
        help: "guest memory, passed to QEMU -m (default 128M)",
        commands: &["run", "test", "bench"],
    },
    OptSpec {
        name: "--machine",
        value: Some("M"),
        help: "QEMU machine of the board, e.g. microvm|q35 (default: q35 for run and bench \
               sched/linux-sched; all for test and bench boot)",
        commands: &["run", "test", "bench"],
    },
    OptSpec {
        name: "--filter",
        value: Some("SUBSTR"),
        help: "only run cases whose `board/machine/accel app` (or `host unit tests`) contains SUBSTR",
        commands: &["test"],
    },
    OptSpec {
        name: "--no-host",
        value: None,
        help: "skip the host unit tests",
        commands: &["test"],
    },
    OptSpec {
        name: "--loops",
        value: Some("N"),
        help: "iterations of each scheduler measure, Rhea's and Linux's (default 10000)",
        commands: &["bench"],
    },
    OptSpec {
        name: "--periods",
        value: Some("N"),
        help: "bench rtos: periods counted per test, Rhea's and POSIX's (default 5)",
        commands: &["bench"],
    },
    OptSpec {
        name: "--rounds",
        value: Some("N"),
        help: "bench net: rounds of Rhea and Linux, alternating which runs first, medians reported (default 3)",
        commands: &["bench"],
    },
    OptSpec {
        name: "--period-ms",
        value: Some("M"),
        help: "bench rtos: the length of a period in ms (default 200)",
        commands: &["bench"],
    },
    OptSpec {
        name: "--append",
        value: Some("STR"),
        help: "extra kernel command line (run, bench: all of it, after bench sched's loops=N; \
               test: added to every boot after rhea.checker=1 and the app's cmdline; \
               build: put in the QEMU line printed)",
        commands: &["build", "run", "test", "bench"],
    },
    OptSpec {
        name: "--verbose",
        value: None,
        help: "echo the guest console live and show QEMU command lines",
        commands: &["run", "test", "bench"],
    },
];

const COMMANDS: &[(&str, &str)] = &[
    ("build", "build an app image for a board"),
    (
        "run",
        "build and boot an app in QEMU with the terminal attached",
    ),
    (
        "test",
        "host unit tests, then boot every app and test on every board/machine/accel",
    ),
    (
        "lint",
        "clippy with -D warnings for the host crates and every board",
    ),
    (
        "bench",
        "benchmarks: `bench boot`, `bench sched`, `bench smp`, `bench net`, `bench queue`, \
         `bench rtos`, `bench linux-sched`, `bench xen` (`bench` alone lists them all)",
    ),
    (
        "xen-dom0",
        "Xen with a Linux dom0 that creates a domU and checks its network (--help)",
    ),
    (
        "fuzz",
        "`fuzz [TARGET] [--time S]`: coverage-guided fuzzing of the parsers (--help)",
    ),
];

fn usage_text() -> String {
    let mut s = String::from("usage: cargo xtask <command> [options]\n\ncommands:\n");
    for (name, help) in COMMANDS {
        s.push_str(&format!("  {name:<7} {help}\n"));
    }
    s.push_str("\noptions:\n");
    for opt in OPTIONS {
        let head = match opt.value {
            Some(v) => format!("{} {v}", opt.name),
            None => opt.name.to_string(),
        };
        s.push_str(&format!(
            "  {head:<22} {} [{}]\n",
            opt.help,
            opt.commands.join(", ")
        ));
    }
    s
}

fn valid_options(command: &str) -> String {
    OPTIONS
        .iter()
        .filter(|o| o.commands.contains(&command))
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks `--mem` loosely: digits with an optional K/M/G/T suffix, as QEMU's `-m` takes.
fn valid_mem(mem: &str) -> bool {
    let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix_len = mem.len() - digits.len();
    !digits.is_empty() && suffix_len <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Parses the arguments after `cargo xtask`.
fn parse_args(args: &[String]) -> Result<(Cmd, Options)> {
    let mut opts = Options::default();
    let Some(first) = args.first() else {
        return Ok((Cmd::Help, opts));
    };
    let name = first.as_str();
    let mut cmd = match name {
        "build" => Cmd::Build,
        "run" => Cmd::Run,
        "test" => Cmd::Test,
        "lint" => Cmd::Lint,
        "bench" => Cmd::Bench(None),
        // Its own options (xen_dom0.rs): `cargo xtask xen-dom0 --help`.
        "xen-dom0" => return Ok((Cmd::XenDom0(args[1..].to_vec()), opts)),
        // Its own arguments (fuzz.rs): `cargo xtask fuzz --help`.
        "fuzz" => return Ok((Cmd::Fuzz(args[1..].to_vec()), opts)),
        "help" | "-h" | "--help" => return Ok((Cmd::Help, opts)),
        other => {
            let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
            return usage(format!(
                "unknown command `{other}`; valid commands: {}",
                names.join(", ")
            ));
        }
    };

    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "-h" || arg == "--help" {
            return Ok((Cmd::Help, opts));
        }
        if !arg.starts_with('-') {
            match &mut cmd {
                Cmd::Bench(bench @ None) => {
                    *bench = Some(arg.clone());
                    continue;
                }
                _ => {
                    return usage(format!(
                        "unexpected argument `{arg}` for `{name}`; valid options: {}",
                        valid_options(name)
                    ));
                }
            }
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let Some(spec) = OPTIONS
            .iter()
            .find(|o| o.name == key && o.commands.contains(&name))
        else {
            return usage(format!(
                "unknown option `{key}` for `{name}`; valid options: {}",
                valid_options(name)
            ));
        };
        let value = match (spec.value, inline) {
            (None, None) => String::new(),
            (None, Some(_)) => return usage(format!("option `{key}` takes no value")),
            (Some(_), Some(v)) => v,
            (Some(meta), None) => match rest.next() {
                Some(v) => v.clone(),
                None => return usage(format!("option `{key}` needs a value ({key} {meta})")),
            },
        };
        match key {
            "--board" => opts.board = Some(value),
            "--app" => opts.app = Some(value),
            "--accel" => {
                opts.accel = match value.as_str() {
                    "kvm" => AccelChoice::Kvm,
                    "tcg" => AccelChoice::Tcg,
                    "auto" => AccelChoice::Auto,
                    other => {
                        return usage(format!("unknown accel `{other}`; valid: kvm, tcg, auto"));
                    }
                }
            }
            "--smp" => {
                opts.smp = match value.parse::<u32>() {
                    Ok(n) if (1..=255).contains(&n) => n,
                    _ => {
                        return usage(format!("--smp wants a number from 1 to 255, got `{value}`"));
                    }
                }
            }
            "--mem" => {
                if !valid_mem(&value) {
                    return usage(format!(
                        "--mem wants a size such as 128M or 1G, got `{value}`"
                    ));
                }
                opts.mem = value;
            }
            "--machine" => opts.machine = Some(value),
            "--filter" => opts.filter = Some(value),
            "--loops" => {
                opts.loops = match value.parse::<u32>() {
                    Ok(n) if (100..=10_000_000).contains(&n) => Some(n),
                    _ => {
                        return usage(format!(
                            "--loops wants a number from 100 to 10000000, got `{value}`"
                        ));
                    }
                }
            }
            "--periods" => {
                opts.periods = match value.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => Some(n),
                    _ => return usage(format!("--periods wants 1 to 1000, got `{value}`")),
                }
            }
            "--rounds" => {
                opts.rounds = match value.parse::<u32>() {
                    Ok(n) if (1..=20).contains(&n) => Some(n),
                    _ => return usage(format!("--rounds wants 1 to 20, got `{value}`")),
                }
            }
            "--period-ms" => {
                opts.period_ms = match value.parse::<u32>() {
                    Ok(n) if (1..=60_000).contains(&n) => Some(n),
                    _ => return usage(format!("--period-ms wants 1 to 60000, got `{value}`")),
                }
            }
            "--append" => {
                if value.contains(['\n', '\r', '\0']) {
                    return usage("--append wants one line without NUL".to_string());
                }
                opts.append = Some(value.trim().to_string());
            }
            "--no-host" => opts.no_host = true,
            "--verbose" => opts.verbose = true,
            _ => unreachable!("option `{key}` is in OPTIONS but not handled"),
        }
    }
    Ok((cmd, opts))
}

fn dispatch(cmd: Cmd, opts: &Options) -> Result<()> {
    let ws = Workspace::locate();
    match cmd {
        Cmd::Help => {
            print!("{}", usage_text());
            Ok(())
        }
        Cmd::Build => {
            let board = boards::find(opts.board_name())?;
            let apps = apps::discover(&ws.root)?;
            let app = app_for(&apps, board, opts)?;
            setup::ensure_toolchain(&ws, board)?;
            let image = image::build(&ws, board, app)?;
            image.print_summary();
            print_boot_line(board, &image, opts)
        }
        Cmd::Run => run(&ws, opts),
        Cmd::Test => test::run(&ws, opts),
        Cmd::Lint => lint::run(&ws, opts),
        Cmd::Bench(name) => bench::run(&ws, name.as_deref(), opts),
        Cmd::XenDom0(args) => xen_dom0::command(&args),
        Cmd::Fuzz(args) => fuzz::command(&ws, &args),
    }
}

/// `build`: prints the QEMU command line `run` would use for the image (default machine,
/// accelerator as `--accel auto` picks it, `--append` as given), for booting it by hand.
fn print_boot_line(board: &boards::Board, image: &image::Image, opts: &Options) -> Result<()> {
    let machine = board.machine(None)?;
    let append = boards::run_cmdline(board, machine, opts)?;
    if board.runner == boards::Runner::Process {
        let mut cmd = Command::new(&image.elf);
        cmd.args(append.split_whitespace());
        println!("run it: {}", describe(&cmd));
        return Ok(());
    }
    let decision = qemu::decide_accel(AccelChoice::Auto, &qemu::probe_hardware_kvm());
    let spec = qemu::Spec {
        board,
        machine,
        accel: decision.accel,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Interactive,
        append: &append,
    };
    let mut cmd = Command::new(board.qemu);
    cmd.args(qemu::args(&spec, qemu::find_qboot().as_deref())?);
    println!("boot it: {}", describe(&cmd));
    Ok(())
}

/// The app of `build`/`run`: `--app`, else the default app, or `hello` on a board the default
/// app does not build for (the appliance needs the network stack; xen-arm64 has none yet).
fn app_for<'a>(
    apps: &'a [apps::App],
    board: &boards::Board,
    opts: &Options,
) -> Result<&'a apps::App> {
    let app = apps::find(apps, opts.app_name())?;
    if board.builds(app) {
        return Ok(app);
    }
    if opts.app.is_some() {
        return usage(format!(
            "app {} needs the network stack, which has no build for board {} yet",
            app.name, board.name
        ));
    }
    println!(
        "app: {} needs the network stack, which has no build for board {} yet: booting hello",
        app.name, board.name
    );
    apps::find(apps, "hello")
}

/// `cargo xtask run`: build, then boot with the terminal attached.
fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(opts.board_name())?;
    let machine = board.machine(opts.machine.as_deref())?;
    let apps = apps::discover(&ws.root)?;
    let app = app_for(&apps, board, opts)?;
    // --smp/--mem/--machine reach a board without QEMU options as kernel arguments, or are
    // refused (boards.rs).
    let append = boards::run_cmdline(board, machine, opts)?;
    setup::ensure_toolchain(ws, board)?;
    if board.runner == boards::Runner::Process {
        let image = image::build(ws, board, app)?;
        image.print_summary();
        let mut cmd = Command::new(&image.elf);
        cmd.args(append.split_whitespace());
        println!("$ {}", describe(&cmd));
        let status = cmd
            .status()
            .context(|| format!("cannot start {}", image.elf.display()))?;
        return match status.code() {
            Some(0) => Ok(()),
            _ => {
                println!("{}: {status}", board.name);
                Err(Error::Quiet(1))
            }
        };
    }
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    image.print_summary();
    let decision = qemu::decide_accel(opts.accel, &qemu::probe_hardware_kvm());
    decision.print();
    let spec = qemu::Spec {
        board,
        machine,
        accel: decision.accel,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &image.boot,
        serial: qemu::Serial::Interactive,
        append: &append,
    };
    let end = qemu::run_interactive(&qemu, &spec, opts.verbose)?;
    match qemu::classify(&end) {
        qemu::Verdict::Success => {
            println!("QEMU: {}", end.describe());
            Ok(())
        }
        other => {
            println!("QEMU: {}: {}", end.describe(), other.describe());
            Err(Error::Quiet(1))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|(cmd, opts)| dispatch(cmd, &opts));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(msg)) => {
            eprintln!("xtask: error: {msg}");
            eprintln!("(run `cargo xtask help` for usage)");
            ExitCode::from(2)
        }
        Err(Error::Failed(msg)) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::from(1)
        }
        Err(Error::Quiet(code)) => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Cmd, Options)> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_args(&args)
    }

    fn is_usage<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn no_args_is_help() {
        assert_eq!(parse(&[]).unwrap().0, Cmd::Help);
        assert_eq!(parse(&["build", "--help"]).unwrap().0, Cmd::Help);
    }

    #[test]
    fn defaults() {
        let (cmd, opts) = parse(&["run"]).unwrap();
        assert_eq!(cmd, Cmd::Run);
        assert_eq!(opts, Options::default());
        assert_eq!(opts.board_name(), "qemu-x86_64");
        assert_eq!(opts.app_name(), "appliance");
        assert_eq!(opts.mem, "128M");
        assert_eq!(opts.smp, 1);
        assert_eq!(opts.accel, AccelChoice::Auto);
    }

    #[test]
    fn all_run_options() {
        let (_, opts) = parse(&[
            "run",
            "--board",
            "qemu-x86_64",
            "--app=panic",
            "--accel",
            "tcg",
            "--smp",
            "4",
            "--mem=1G",
            "--machine",
            "microvm",
            "--verbose",
        ])
        .unwrap();
        assert_eq!(opts.board.as_deref(), Some("qemu-x86_64"));
        assert_eq!(opts.app.as_deref(), Some("panic"));
        assert_eq!(opts.accel, AccelChoice::Tcg);
        assert_eq!(opts.smp, 4);
        assert_eq!(opts.mem, "1G");
        assert_eq!(opts.machine.as_deref(), Some("microvm"));
        assert!(opts.verbose);
    }

    #[test]
    fn test_options() {
        let (cmd, opts) = parse(&["test", "--filter", "q35/tcg", "--no-host"]).unwrap();
        assert_eq!(cmd, Cmd::Test);
        assert_eq!(opts.filter.as_deref(), Some("q35/tcg"));
        assert!(opts.no_host);
    }

    #[test]
    fn bench_names() {
        assert_eq!(parse(&["bench"]).unwrap().0, Cmd::Bench(None));
        assert_eq!(
            parse(&["bench", "boot", "--verbose"]).unwrap().0,
            Cmd::Bench(Some("boot".into()))
        );
        // Only one bench name.
        is_usage(parse(&["bench", "boot", "boot"]));
        let (cmd, opts) = parse(&["bench", "linux-sched", "--loops", "2000"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("linux-sched".into())));
        assert_eq!(opts.loops, Some(2000));
        is_usage(parse(&["bench", "--loops", "10"]));
        let (cmd, opts) = parse(&[
            "bench",
            "rtos",
            "--board",
            "linuxu",
            "--periods",
            "3",
            "--period-ms=50",
        ])
        .unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("rtos".to_string())));
        assert_eq!((opts.periods, opts.period_ms), (Some(3), Some(50)));
        is_usage(parse(&["bench", "rtos", "--periods", "0"]));
        is_usage(parse(&["run", "--period-ms", "10"]));
        is_usage(parse(&["run", "--loops", "1000"]));
        let (cmd, opts) = parse(&["bench", "sched", "--board", "linuxu", "--loops=500"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("sched".into())));
        assert_eq!((opts.board_name(), opts.loops), ("linuxu", Some(500)));
        let (cmd, opts) =
            parse(&["bench", "sched", "--machine=microvm", "--append", "a=1"]).unwrap();
        assert_eq!(cmd, Cmd::Bench(Some("sched".into())));
        assert_eq!(opts.machine.as_deref(), Some("microvm"));
        assert_eq!(opts.append(), "a=1");
    }

    #[test]
    fn append_option() {
        assert_eq!(parse(&["run"]).unwrap().1.append(), "");
        for cmd in ["build", "run", "test", "bench"] {
            let (_, opts) = parse(&[cmd, "--append", "loops=5 x=y"]).unwrap();
            assert_eq!(opts.append.as_deref(), Some("loops=5 x=y"));
        }
        let (_, opts) = parse(&["test", "--append=rhea.trace=1"]).unwrap();
        assert_eq!(opts.append(), "rhea.trace=1");
        is_usage(parse(&["lint", "--append", "x"]));
        is_usage(parse(&["run", "--append"]));
        is_usage(parse(&["run", "--append", "a\nb"]));
    }

    #[test]
    fn usage_errors_list_valid_choices() {
        let msg = is_usage(parse(&["frobnicate"]));
        assert!(msg.contains("build, run, test, lint, bench"), "{msg}");
        let msg = is_usage(parse(&["build", "--smp", "2"]));
        assert!(
            msg.ends_with("valid options: --board, --app, --append"),
            "{msg}"
        );
        let msg = is_usage(parse(&["run", "--accel", "hvf"]));
        assert!(msg.contains("kvm, tcg, auto"), "{msg}");
        is_usage(parse(&["run", "--smp", "0"]));
        is_usage(parse(&["run", "--smp", "x"]));
        is_usage(parse(&["run", "--mem", "lots"]));
        is_usage(parse(&["run", "--board"]));
        is_usage(parse(&["test", "--no-host=yes"]));
        is_usage(parse(&["run", "extra"]));
    }

    #[test]
    fn mem_sizes() {
        assert!(valid_mem("128M"));
        assert!(valid_mem("1G"));
        assert!(valid_mem("512"));
        assert!(!valid_mem("M"));
        assert!(!valid_mem("12MM"));
        assert!(!valid_mem("1.5G"));
        assert!(!valid_mem(""));
    }

    #[test]
    fn usage_text_mentions_every_command_and_option() {
        let text = usage_text();
        for (name, _) in COMMANDS {
            assert!(text.contains(name));
        }
        for opt in OPTIONS {
            assert!(text.contains(opt.name));
        }
    }
}
