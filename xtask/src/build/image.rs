//! Building an app image for a board (`cargo xtask build`).
//!
//! Runs `cargo build --release -p <package> --target <target>` with the board's flags, in a
//! per-board target directory, then iterates the embedded symbol table to a fixed point (see
//! `symtab.rs`): the app crate includes the file named by `RHEA_SYMTAB` (through `rhea::main!`,
//! so a new table recompiles that crate alone); after each build xtask encodes the image's function symbols and, if they differ from the file,
//! writes them and builds again (at most [`MAX_BUILDS`] builds). The result is copied to
//! `target/images/<board>/<app>.elf`, with a stripped copy `<app>.stripped.elf` next to it, and
//! for boards that boot a raw binary (the Arm boards' Linux `Image`, the Pi's `kernel8.img`)
//! that binary, `llvm-objcopy -O binary` of the ELF (`<app>.img`, `<app>.kernel8.img`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::apps::App;
use crate::boards::{Board, ImageFormat};
use crate::{Context, Result, Workspace, capture, describe, fail, run_checked, symtab};

/// Builds per image, at most, while the symbol table settles.
pub(crate) const MAX_BUILDS: usize = 3;

/// A built image.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) elf: PathBuf,
    /// The file the machine boots: the ELF, or the raw binary made from it
    /// ([`ImageFormat::Binary`]).
    pub(crate) boot: PathBuf,
    pub(crate) stripped: PathBuf,
    pub(crate) size: u64,
    pub(crate) stripped_size: u64,
    pub(crate) functions: usize,
}

impl Image {
    pub(crate) fn print_summary(&self) {
        println!(
            "image: {} ({} bytes, {} functions in symtab)",
            self.elf.display(),
            self.size,
            self.functions
        );
        println!(
            "stripped: {} ({} bytes)",
            self.stripped.display(),
            self.stripped_size
        );
        if self.boot != self.elf {
            println!("boot image: {}", self.boot.display());
        }
    }
}

/// The rustc flags of a board build, one flag per element.
pub(crate) fn rustflags(root: &Path, board: &Board) -> Vec<String> {
    // `rhea_board` selects the board (boards/select); `rhea_kernel` says "a kernel image" to
    // crates with a kernel side that must not name boards (net).
    let mut flags = vec![
        "--cfg".to_string(),
        format!("rhea_board=\"{}\"", board.cfg),
        "--cfg".to_string(),
        "rhea_kernel".to_string(),
        // `getrandom` draws from the runtime's entropy module (`rhea::entropy`).
        "--cfg".to_string(),
        "getrandom_backend=\"custom\"".to_string(),
    ];
    if !board.linker_script.is_empty() {
        flags.push("-C".to_string());
        flags.push(format!(
            "link-arg=-T{}",
            root.join(board.linker_script).display()
        ));
        // Segments' file offsets need at most 4 KiB congruence (the scripts align sections to
        // 4 KiB; nothing maps the ELF by larger pages). lld's aarch64 default of 64 KiB put
        // 60 KiB of zeros before `.text` in every Arm ELF; addresses and raw images are the
        // same. The x86 script needs none: its loaders copy segments, so a few bytes do.
        flags.push("-C".to_string());
        flags.push(format!("link-arg=-zmax-page-size={}", board.max_page_size));
    }
    flags.extend(
        [
            "-C",
            "relocation-model=static",
            "-C",
            "force-frame-pointers=yes",
        ]
        .map(str::to_string),
    );
    // Panic locations name their file: a dependency's would carry the registry's absolute
    // path (`/root/.cargo/registry/src/index.crates.io-<hash>/spin-0.10.1/src/once.rs`), so
    // that prefix is cut to the crate's own directory (`spin-0.10.1/src/once.rs`). Workspace
    // crates' paths are already relative to the root.
    for dir in registry_sources() {
        flags.push(format!("--remap-path-prefix={}/=", dir.display()));
    }
    flags
}

/// The directories Cargo unpacks registry crates into (`$CARGO_HOME/registry/src/*`), sorted.
fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = fs::read_dir(&src)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The environment of a board build (`cargo build`/`cargo clippy --target ...`).
pub(crate) fn board_env(
    ws: &Workspace,
    board: &Board,
    symtab: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "CARGO_TARGET_DIR",
            ws.board_target_dir(board).display().to_string(),
        ),
        (
            "CARGO_ENCODED_RUSTFLAGS",
            rustflags(&ws.root, board).join("\x1f"),
        ),
        ("RHEA_SYMTAB", symtab.display().to_string()),
    ]
}

/// Creates `path` empty if it does not exist yet (the first build sees an empty table).
pub(crate) fn ensure_symtab_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    }
    if !path.exists() {
        fs::write(path, b"").context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}

/// Where a build's progress lines and the output of its commands go.
#[derive(Debug)]
pub(crate) enum BuildOutput {
    /// Printed as they come, the commands run as they are: a build in the foreground.
    Terminal,
    /// Written, in order, to a log file, the commands run at a lower priority (`nice`): a
    /// build in the background, beside test boots whose lines must stay readable and whose
    /// single-vCPU QEMU must keep its core (`cargo xtask test`'s builder).
    Background(fs::File),
}

/// How much lower than xtask's own a background build's commands are scheduled.
const BACKGROUND_NICENESS: &str = "10";

impl BuildOutput {
    /// A background build logging to `path` (created, or emptied).
    pub(crate) fn background(path: &Path) -> Result<BuildOutput> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
        }
        let file =
            fs::File::create(path).context(|| format!("cannot create {}", path.display()))?;
        Ok(BuildOutput::Background(file))
    }

    /// One progress line.
    pub(crate) fn line(&mut self, text: &str) {
        match self {
            BuildOutput::Terminal => println!("{text}"),
            // A log that cannot be written loses a line, not the build.
            BuildOutput::Background(log) => {
                let _ = writeln!(log, "{text}");
            }
        }
    }

    /// Runs `cmd`, failing unless it exits with status 0 (as [`run_checked`]); in the
    /// background with its stdout and stderr both appended to the log, in the order written.
    pub(crate) fn run(&mut self, cmd: &mut Command) -> Result<()> {
        let BuildOutput::Background(log) = self else {
            return run_checked(cmd);
        };
        let _ = writeln!(log, "$ {}", describe(cmd));
        let sink = || -> Result<Stdio> {
            let file = log
                .try_clone()
                .context(|| "cannot share the build log".to_string())?;
            Ok(Stdio::from(file))
        };
        let status = lowered(cmd)
            .stdin(Stdio::null())
            .stdout(sink()?)
            .stderr(sink()?)
            .status()
            .context(|| format!("cannot run `{}`", describe(cmd)))?;
        if status.success() {
            Ok(())
        } else {
            fail(format!("`{}` failed ({status})", describe(cmd)))
        }
    }
}

/// `cmd` run by `nice` (when the host has it): the same program, arguments, directory and
/// environment, at a lower priority.
fn lowered(cmd: &Command) -> Command {
    static HAS_NICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has_nice = *HAS_NICE.get_or_init(|| {
        Command::new("nice")
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    with_nice(cmd, has_nice.then_some(BACKGROUND_NICENESS))
}

/// A copy of `cmd`, run by `nice -n <niceness>` when given.
fn with_nice(cmd: &Command, niceness: Option<&str>) -> Command {
    let mut copy = match niceness {
        Some(n) => {
            let mut c = Command::new("nice");
            c.args(["-n", n]).arg(cmd.get_program());
            c
        }
        None => Command::new(cmd.get_program()),
    };
    copy.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    copy
}

/// Builds `app` for `board`, iterating the symbol table to a fixed point.
pub(crate) fn build(ws: &Workspace, board: &Board, app: &App) -> Result<Image> {
    build_to(ws, board, app, &mut BuildOutput::Terminal)
}

/// [`build`], its progress and its commands' output sent to `out`.
pub(crate) fn build_to(
    ws: &Workspace,
    board: &Board,
    app: &App,
    out: &mut BuildOutput,
) -> Result<Image> {
    let target_dir = ws.board_target_dir(board);
    let symtab_path = target_dir.join(format!("{}.symtab", app.name));
    ensure_symtab_file(&symtab_path)?;
    let linker_script = ws.root.join(board.linker_script);
    if !board.linker_script.is_empty() && !linker_script.is_file() {
        return fail(format!(
            "board {} has no linker script at {}",
            board.name,
            linker_script.display()
        ));
    }
    let output = target_dir
        .join(board.target)
        .join("release")
        .join(&app.package);
    let (elf, functions) = build_settled(ws, board, app, &symtab_path, &output, out)?;
    install(ws, board, app, &elf, functions, out)
}

/// Builds until the embedded symbol table matches the functions of the image it is in: the
/// ELF and its number of functions.
fn build_settled(
    ws: &Workspace,
    board: &Board,
    app: &App,
    symtab_path: &Path,
    output: &Path,
    out: &mut BuildOutput,
) -> Result<(Vec<u8>, usize)> {
    let mut settled = None;
    for round in 1..=MAX_BUILDS {
        let mut cmd = ws.cargo();
        cmd.args([
            "build",
            "--release",
            "-p",
            &app.package,
            "--target",
            board.target,
        ])
        .envs(board_env(ws, board, symtab_path));
        out.line(&format!(
            "build: {} for {} (package {}, round {round})",
            app.name, board.name, app.package
        ));
        out.run(&mut cmd)?;

        let elf = fs::read(output).context(|| format!("cannot read {}", output.display()))?;
        let symbols = symtab::function_symbols(&elf)
            .map_err(|e| crate::Error::Failed(format!("{}: {e}", output.display())))?;
        let table = symtab::encode(&symbols);
        let current = fs::read(symtab_path).unwrap_or_default();
        if table == current {
            settled = Some((elf, table, symbols.len()));
            break;
        }
        fs::write(symtab_path, &table)
            .context(|| format!("cannot write {}", symtab_path.display()))?;
        out.line(&format!(
            "build: symbol table changed ({} functions, {} bytes); rebuilding",
            symbols.len(),
            table.len()
        ));
    }
    let Some((elf, table, functions)) = settled else {
        return fail(format!(
            "the symbol table of {} did not settle after {MAX_BUILDS} builds (function \
             addresses keep moving: the table must be placed after .data so its size does not \
             shift code; see {})",
            app.name,
            symtab_path.display()
        ));
    };
    if !symtab::image_contains(&elf, &table) {
        return fail(format!(
            "{} does not embed the symbol table from {} ({} bytes): does the app use \
             `rhea::main!` (which includes the file RHEA_SYMTAB names)?",
            output.display(),
            symtab_path.display(),
            table.len()
        ));
    }
    Ok((elf, functions))
}

/// Copies the built `elf` to the board's image directory (executable, for LinuxU), with its
/// stripped copy and, for a board booting a raw binary, that binary.
fn install(
    ws: &Workspace,
    board: &Board,
    app: &App,
    elf: &[u8],
    functions: usize,
    out: &mut BuildOutput,
) -> Result<Image> {
    let image_dir = ws.image_dir(board);
    fs::create_dir_all(&image_dir).context(|| format!("cannot create {}", image_dir.display()))?;
    let elf_path = image_dir.join(format!("{}.elf", app.name));
    fs::write(&elf_path, elf).context(|| format!("cannot write {}", elf_path.display()))?;
    // A LinuxU image is an executable the harness runs directly.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&elf_path, fs::Permissions::from_mode(0o755))
            .context(|| format!("cannot make {} executable", elf_path.display()))?;
    }
    let stripped = image_dir.join(format!("{}.stripped.elf", app.name));
    let objcopy = llvm_objcopy(ws)?;
    out.run(
        ws.command(&objcopy)
            .arg("--strip-all")
            .arg(&elf_path)
            .arg(&stripped),
    )?;
    let boot = match board.image {
        ImageFormat::Elf => elf_path.clone(),
        ImageFormat::Binary { suffix } => {
            let binary = image_dir.join(format!("{}{suffix}", app.name));
            out.run(
                ws.command(&objcopy)
                    .args(["-O", "binary"])
                    .arg(&elf_path)
                    .arg(&binary),
            )?;
            binary
        }
        ImageFormat::UefiDisk => {
            let efi = build_uefi_loader(ws, app, &stripped, out)?;
            let disk = image_dir.join(format!("{}.disk.img", app.name));
            let bytes = fs::read(&efi).context(|| format!("cannot read {}", efi.display()))?;
            crate::uefi_disk::write_disk(&disk, &bytes, "")?;
            disk
        }
    };
    let size_of = |p: &Path| -> Result<u64> {
        Ok(fs::metadata(p)
            .context(|| format!("cannot stat {}", p.display()))?
            .len())
    };
    Ok(Image {
        size: size_of(&elf_path)?,
        stripped_size: size_of(&stripped)?,
        elf: elf_path,
        boot,
        stripped,
        functions,
    })
}

/// The UEFI target the loader is built for.
pub(crate) const UEFI_TARGET: &str = "x86_64-unknown-uefi";

/// Builds pc-uefi's UEFI loader carrying `kernel` (the stripped ELF: the symbol table the
/// kernel needs is a loaded section, the rest is for debuggers) and copies it next to the
/// image as `<app>.efi`. Its own target directory: the kernel's flags (linker script, board
/// cfg) must not reach it.
fn build_uefi_loader(
    ws: &Workspace,
    app: &App,
    kernel: &Path,
    out: &mut BuildOutput,
) -> Result<PathBuf> {
    let target_dir = ws.root.join("target").join("uefi-loader");
    let mut cmd = ws.cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "rhea-uefi-loader",
        "--target",
        UEFI_TARGET,
    ])
    .env("CARGO_TARGET_DIR", &target_dir)
    .env("RHEA_KERNEL_ELF", kernel);
    out.line(&format!("build: UEFI loader carrying {}", kernel.display()));
    out.run(&mut cmd)?;
    let built = target_dir
        .join(UEFI_TARGET)
        .join("release")
        .join("rhea-uefi-loader.efi");
    let efi = kernel.with_file_name(format!("{}.efi", app.name));
    fs::copy(&built, &efi)
        .context(|| format!("cannot copy {} to {}", built.display(), efi.display()))?;
    Ok(efi)
}

/// `llvm-objcopy` from the pinned toolchain's `llvm-tools` component.
fn llvm_objcopy(ws: &Workspace) -> Result<PathBuf> {
    let sysroot = capture(ws.command("rustc").args(["--print", "sysroot"]))?;
    let version = capture(ws.command("rustc").arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu")
        .trim()
        .to_string();
    let path = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    if path.is_file() {
        Ok(path)
    } else {
        fail(format!(
            "{} not found: run `rustup component add llvm-tools` in {}",
            path.display(),
            ws.root.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards;

    #[test]
    fn flags_and_env() {
        let ws = Workspace {
            root: PathBuf::from("/ws"),
        };
        let board = boards::find("qemu-x86_64").unwrap();
        let env = board_env(
            &ws,
            board,
            Path::new("/ws/target/board-qemu-x86_64/hello.symtab"),
        );
        let get = |k: &str| env.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(get("CARGO_TARGET_DIR"), "/ws/target/board-qemu-x86_64");
        let remaps: String = registry_sources()
            .iter()
            .map(|d| format!("\x1f--remap-path-prefix={}/=", d.display()))
            .collect();
        assert_eq!(
            get("CARGO_ENCODED_RUSTFLAGS"),
            "--cfg\x1frhea_board=\"qemu-x86_64\"\x1f--cfg\x1frhea_kernel\
             \x1f--cfg\x1fgetrandom_backend=\"custom\"\
             \x1f-C\x1flink-arg=-T/ws/boards/common-x86/link.ld\
             \x1f-C\x1flink-arg=-zmax-page-size=16\
             \x1f-C\x1frelocation-model=static\x1f-C\x1fforce-frame-pointers=yes"
                .to_string()
                + &remaps
        );
        assert_eq!(
            get("RHEA_SYMTAB"),
            "/ws/target/board-qemu-x86_64/hello.symtab"
        );
    }

    #[test]
    fn background_commands_are_the_same_commands_niced() {
        use std::ffi::OsStr;
        let ws = Workspace {
            root: PathBuf::from("/ws"),
        };
        let mut cmd = ws.cargo();
        cmd.args(["build", "-p", "hello"]).env("A", "1");
        let niced = with_nice(&cmd, Some("10"));
        assert_eq!(describe(&niced), "nice -n 10 cargo build -p hello");
        assert_eq!(niced.get_current_dir(), Some(Path::new("/ws")));
        let envs: Vec<_> = niced.get_envs().collect();
        assert!(envs.contains(&(OsStr::new("A"), Some(OsStr::new("1")))));
        // What `ws.cargo()` removes stays removed.
        assert!(envs.contains(&(OsStr::new("RHEA_SYMTAB"), None)));
        assert_eq!(describe(&with_nice(&cmd, None)), "cargo build -p hello");
    }

    #[test]
    fn a_background_build_logs_lines_and_output_in_order() {
        let dir = std::env::temp_dir().join(format!("xtask-buildlog-{}", std::process::id()));
        let log = dir.join("sub/app.build.log");
        let mut out = BuildOutput::background(&log).unwrap();
        out.line("build: first");
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo out; echo err >&2"]);
        out.run(&mut ok).unwrap();
        out.line("build: second");
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo broken >&2; exit 3"]);
        let e = out.run(&mut bad).unwrap_err().to_string();
        assert!(
            e.starts_with("`sh -c \"echo broken >&2; exit 3\"` failed"),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "build: first\n$ sh -c \"echo out; echo err >&2\"\nout\nerr\nbuild: second\n\
             $ sh -c \"echo broken >&2; exit 3\"\nbroken\n"
        );
        // A new build empties its log.
        drop(BuildOutput::background(&log).unwrap());
        assert_eq!(fs::read_to_string(&log).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symtab_file_created_empty_once() {
        let dir = std::env::temp_dir().join(format!("xtask-image-{}", std::process::id()));
        let path = dir.join("sub/app.symtab");
        ensure_symtab_file(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        fs::write(&path, b"RSYM").unwrap();
        ensure_symtab_file(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"RSYM");
        fs::remove_dir_all(&dir).unwrap();
    }
}
