//! `cargo xtask`: the build, run, test, lint and benchmark driver for Rhea.
//!
//! This file holds the dispatch of a parsed command line (parsed in `cli.rs`) to the other
//! modules, plus the few helpers they all share (the error type, the workspace paths, running a
//! child process). Arguments are parsed by hand to keep the tool quick to build.
//!
//! ```text
//! cargo xtask build | run | test | lint | bench boot|sched|linux-sched|xen|... | trace  [options]
//! ```
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (unknown command, board, app or option).
#![forbid(unsafe_code)]

mod bench;
mod build;
mod cli;
mod fuzz;
mod guest;
mod hostfwd;
mod lint;
mod nested;
mod qemu;
mod qmp;
mod screendump;
mod test;
mod trace;
mod xen;

// The catalog (apps, boards) and the build steps every stage uses, by their short names.
use build::{apps, boards, chromium, firmware, image, initrd, ovmf, setup, symtab, uefi_disk};

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::cli::Cmd;
pub(crate) use crate::cli::Options;
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

fn dispatch(cmd: Cmd, opts: &Options) -> Result<()> {
    let ws = Workspace::locate();
    match cmd {
        Cmd::Help => {
            print!("{}", cli::usage_text());
            Ok(())
        }
        Cmd::Build => {
            let board = boards::find(opts.board_name())?;
            let apps = apps::discover(&ws.root)?;
            let app = app_for(&apps, board, opts)?;
            setup::ensure_toolchain(&ws, board)?;
            let image = image::build(&ws, board, app)?;
            image.print_summary();
            if let Some(path) = packed_initrd(&ws, board, app, opts)? {
                let how = match (board.runner, board.image) {
                    (boards::Runner::Process, _) => format!("rhea.initrd={}", path.display()),
                    (_, boards::ImageFormat::UefiDisk) => format!(
                        "the disk {}, which holds it as \\{}",
                        uefi_disk::with_initrd(&image.boot, &path)?.display(),
                        uefi_disk::INITRD_PATH
                    ),
                    _ => format!("-initrd {}", path.display()),
                };
                println!("boot it with: {how}");
            }
            print_boot_line(board, &image, opts)
        }
        Cmd::Image => disk_image(&ws, opts),
        Cmd::Run => run(&ws, opts),
        Cmd::Test => test::run(&ws, opts),
        Cmd::Lint => lint::run(&ws, opts),
        Cmd::Bench(name) => bench::run(&ws, name.as_deref(), opts),
        Cmd::XenDom0(None) => {
            print!("{}", cli::xen_dom0_usage());
            Ok(())
        }
        Cmd::XenDom0(Some(args)) => xen::dom0::command(args),
        Cmd::Fuzz(None) => {
            print!("{}", cli::FUZZ_USAGE);
            Ok(())
        }
        Cmd::Fuzz(Some(args)) => fuzz::command(&ws, args),
        Cmd::Trace => trace::run(&ws, opts),
    }
}

/// `build`: prints the QEMU command line `run` would use for the image (default machine,
/// accelerator as `--accel auto` picks it, `--append` as given), for booting it by hand.
/// `cargo xtask image`: builds the app for a board that boots from a disk (pc-uefi), writes
/// the command line (`--append`) into the disk's `\rhea.cfg`, reads both files back to check
/// them, and prints the image's path as the last line.
fn disk_image(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(opts.board.as_deref().unwrap_or("pc-uefi"))?;
    if board.image != boards::ImageFormat::UefiDisk {
        return usage(format!(
            "`image` writes a bootable disk: board pc-uefi, not {}",
            board.name
        ));
    }
    let apps = apps::discover(&ws.root)?;
    let app = app_for(&apps, board, opts)?;
    setup::ensure_toolchain(ws, board)?;
    let image = image::build(ws, board, app)?;
    let cmdline = opts.append.as_deref().unwrap_or("");
    uefi_disk::set_cmdline(&image.boot, cmdline)?;
    let efi = uefi_disk::read_file(&image.boot, uefi_disk::EFI_PATH)?;
    let cfg = uefi_disk::read_file(&image.boot, uefi_disk::CONFIG_PATH)?;
    if cfg != uefi_disk::config_bytes(cmdline)? {
        return fail(format!(
            "{}: \\{} does not read back as written",
            image.boot.display(),
            uefi_disk::CONFIG_PATH
        ));
    }
    let size = fs::metadata(&image.boot)
        .context(|| format!("cannot stat {}", image.boot.display()))?
        .len();
    println!(
        "image: GPT disk of {} KiB, EFI system partition with \\{} ({} bytes: the UEFI loader \
         and {}) and \\{} (command line: \"{cmdline}\")",
        size >> 10,
        uefi_disk::EFI_PATH.replace('/', "\\"),
        efi.len(),
        app.name,
        uefi_disk::CONFIG_PATH
    );
    println!(
        "write it to a USB stick with: dd if={} of=/dev/sdX bs=4M conv=fsync (every byte on \
         /dev/sdX is lost)",
        image.boot.display()
    );
    println!("{}", image.boot.display());
    Ok(())
}

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

/// `cargo xtask run`'s command line: `rhea.shell=console` added (a shell on the terminal in
/// apps that link `rhea-shell`; others ignore it), unless the line says `rhea.shell=` itself.
fn with_shell(append: &str) -> String {
    if append
        .split_whitespace()
        .any(|a| a.starts_with("rhea.shell="))
    {
        return append.to_string();
    }
    format!("{append} rhea.shell=console").trim().to_string()
}

/// `cargo xtask run`'s SSH arguments, unless the line gives its own: the user's
/// `~/.ssh/id_ed25519.pub` as the authorized key, and a host key seed kept in
/// `target/run-ssh-hostkey` (made once), so the host key is the same run after run. Prints
/// how to log in; without that public key, says so and adds nothing.
fn with_ssh(ws: &Workspace, append: &str, ssh_port: u16, board: &boards::Board) -> String {
    if append.contains("rhea.ssh.keys=") {
        return append.to_string();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let key = home
        .map(|h| h.join(".ssh/id_ed25519.pub"))
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|t| t.split_whitespace().nth(1).map(str::to_string));
    let Some(key) = key else {
        println!(
            "ssh: no ~/.ssh/id_ed25519.pub, so no SSH server (make one with ssh-keygen -t \
             ed25519, or give rhea.ssh.keys=<base64 of a public key> in --append)"
        );
        return append.to_string();
    };
    let seed_file = ws.root.join("target/run-ssh-hostkey");
    let seed = fs::read_to_string(&seed_file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| {
            let s = test::ssh::random_seed_hex().ok()?;
            let _ = fs::create_dir_all(ws.root.join("target"));
            fs::write(&seed_file, &s).ok()?;
            Some(s)
        });
    let mut line = format!("{append} rhea.ssh.keys={key}");
    if let Some(seed) = seed {
        line.push_str(&format!(" rhea.ssh.hostkey={seed}"));
    }
    let at = if board.runner == boards::Runner::Process {
        "<its address>".to_string()
    } else {
        format!("-p {ssh_port} 127.0.0.1")
    };
    println!("ssh: your ~/.ssh/id_ed25519.pub may log in: ssh {at}");
    line.trim().to_string()
}

/// `--initrd DIR` (default: the app's own, [`initrd::default_dir`]) packed into
/// `target/images/<board>/<app>.initrd.cpio`: its path (absolute), or `None`. Refused on the
/// Xen boards and rpi4 (their ramdisk is not wired into xtask yet).
fn packed_initrd(
    ws: &Workspace,
    board: &boards::Board,
    app: &apps::App,
    opts: &Options,
) -> Result<Option<PathBuf>> {
    let default = initrd::default_dir(&ws.root, &app.name);
    let Some(dir) = opts.initrd.as_ref().or(default.as_ref()) else {
        return Ok(None);
    };
    if board.name.starts_with("xen-") || board.name == "rpi4" {
        if opts.initrd.is_none() {
            // The appliance's own pages: not on these boards yet, and not asked for.
            return Ok(None);
        }
        return usage(format!(
            "--initrd: not yet on {}: the initramfs is wired for QEMU's -initrd (qemu-x86_64, \
             qemu-aarch64), pc-uefi's disk and LinuxU",
            board.name
        ));
    }
    let out = ws
        .root
        .join("target/images")
        .join(board.name)
        .join(format!("{}.initrd.cpio", app.name));
    let bytes = initrd::pack_to(dir, &out)?;
    println!(
        "initrd: {} packed into {} ({bytes} bytes)",
        dir.display(),
        out.display()
    );
    Ok(Some(out))
}

/// `cargo xtask run`: build, then boot with the terminal attached.
fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let board = boards::find(opts.board_name())?;
    let machine = board.machine(opts.machine.as_deref())?;
    let apps = apps::discover(&ws.root)?;
    let app = app_for(&apps, board, opts)?;
    // --smp/--mem/--machine reach a board without QEMU options as kernel arguments, or are
    // refused (boards.rs).
    let append = with_shell(&boards::run_cmdline(board, machine, opts)?);
    // The appliance's SSH server (other apps ignore the keys).
    let append = if app.name == "appliance" {
        with_ssh(ws, &append, opts.host_ports.ssh, board)
    } else {
        append
    };
    setup::ensure_toolchain(ws, board)?;
    let initrd = packed_initrd(ws, board, app, opts)?;
    if board.runner == boards::Runner::Process {
        let image = image::build(ws, board, app)?;
        image.print_summary();
        let mut cmd = Command::new(&image.elf);
        cmd.args(append.split_whitespace());
        if let Some(path) = &initrd {
            cmd.arg(format!("rhea.initrd={}", path.display()));
        }
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
    if opts.accel == AccelChoice::NestedKvm {
        return run_nested(ws, board, machine, app, &append, opts);
    }
    let qemu = setup::ensure_qemu(board)?;
    let image = image::build(ws, board, app)?;
    image.print_summary();
    let decision = qemu::decide_accel(opts.accel, &qemu::probe_hardware_kvm());
    decision.print();
    // pc-uefi's loader reads the initrd off its disk, not from QEMU's -initrd.
    let (boot, initrd) = match (board.image, initrd) {
        (boards::ImageFormat::UefiDisk, Some(path)) => {
            (uefi_disk::with_initrd(&image.boot, &path)?, None)
        }
        (_, initrd) => (image.boot.clone(), initrd),
    };
    let spec = qemu::Spec {
        board,
        machine,
        accel: decision.accel,
        smp: opts.smp,
        mem: &opts.mem,
        kernel: &boot,
        serial: qemu::Serial::Interactive,
        append: &append,
    };
    let end = qemu::run_interactive(
        &qemu,
        &spec,
        opts.host_ports,
        opts.verbose,
        initrd.as_deref(),
    )?;
    if end == qemu::QemuEnd::Shutdown(qmp::ShutdownCause::Quit) {
        // The user left: a normal end of a run.
        println!("qemu: {}", end.describe());
        return Ok(());
    }
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

/// `cargo xtask run --accel nested-kvm`: the app under a real Linux KVM one level down
/// (`nested/`), the L1's console on the terminal and Rhea's on it in turn.
fn run_nested(
    ws: &Workspace,
    board: &'static boards::Board,
    machine: &'static str,
    app: &apps::App,
    append: &str,
    opts: &Options,
) -> Result<()> {
    let image = image::build(ws, board, app)?;
    image.print_summary();
    let boot = nested::Boot {
        spec: qemu::Spec {
            board,
            machine,
            accel: qemu::Accel::Kvm,
            smp: opts.smp,
            mem: &opts.mem,
            kernel: &image.boot,
            serial: qemu::Serial::Interactive,
            append,
        },
        // Not enforced for an interactive boot (its user ends it).
        timeout: std::time::Duration::from_secs(24 * 3600),
        stdin: None,
        forward: None,
    };
    let outcome = nested::run(board, std::slice::from_ref(&boot), opts.verbose).map_err(
        |nested::NotRun(why)| Error::Failed(format!("nested KVM cannot run here: {why}")),
    )?;
    match outcome.boots.into_iter().next() {
        Some(Ok(c)) if board.arch() == "aarch64" => {
            // KVM serves no semihosting: Rhea's exit status was its last console line above.
            println!(
                "L2 QEMU: {} (Rhea's exit status: its console line above)",
                c.end.describe()
            );
            Ok(())
        }
        Some(Ok(c)) => match qemu::classify(&c.end) {
            qemu::Verdict::Success => {
                println!("L2 QEMU: {}", c.end.describe());
                Ok(())
            }
            other => {
                println!("L2 QEMU: {}: {}", c.end.describe(), other.describe());
                Err(Error::Quiet(1))
            }
        },
        Some(Err(why)) => Err(Error::Failed(why)),
        None => Err(Error::Failed("the L1 ran no boot".to_string())),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = cli::parse(&args).and_then(|(cmd, opts)| dispatch(cmd, &opts));
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
