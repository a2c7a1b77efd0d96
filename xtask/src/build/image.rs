//! Building an app image for a board (`cargo xtask build`).
//!
//! Runs `cargo build --release -p <package> --target <target>` with the board's flags, in a
//! per-board target directory, then iterates the embedded symbol table to a fixed point (see
//! `symtab.rs`): the kernel crate `rhea-symtab` includes the file named by `RHEA_SYMTAB`; after
//! each build xtask encodes the image's function symbols and, if they differ from the file,
//! writes them and builds again (at most [`MAX_BUILDS`] builds). The result is copied to
//! `target/images/<board>/<app>.elf`, with a stripped copy `<app>.stripped.elf` next to it, and
//! for boards that boot a raw binary (the Arm boards' Linux `Image`, the Pi's `kernel8.img`)
//! that binary, `llvm-objcopy -O binary` of the ELF (`<app>.img`, `<app>.kernel8.img`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::apps::App;
use crate::boards::{Board, ImageFormat};
use crate::{Context, Result, Workspace, capture, fail, run_checked, symtab};

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

/// Builds `app` for `board`, iterating the symbol table to a fixed point.
pub(crate) fn build(ws: &Workspace, board: &Board, app: &App) -> Result<Image> {
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
    let (elf, functions) = build_settled(ws, board, app, &symtab_path, &output)?;
    install(ws, board, app, &elf, functions)
}

/// Builds until the embedded symbol table matches the functions of the image it is in: the
/// ELF and its number of functions.
fn build_settled(
    ws: &Workspace,
    board: &Board,
    app: &App,
    symtab_path: &Path,
    output: &Path,
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
        println!(
            "build: {} for {} (package {}, round {round})",
            app.name, board.name, app.package
        );
        run_checked(&mut cmd)?;

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
        println!(
            "build: symbol table changed ({} functions, {} bytes); rebuilding",
            symbols.len(),
            table.len()
        );
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
            "{} does not embed the symbol table from {} ({} bytes): does the app link \
             rhea-symtab, and does its build script include RHEA_SYMTAB and declare \
             `cargo:rerun-if-env-changed=RHEA_SYMTAB` and `cargo:rerun-if-changed=<file>`?",
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
    run_checked(
        ws.command(&objcopy)
            .arg("--strip-all")
            .arg(&elf_path)
            .arg(&stripped),
    )?;
    let boot = match board.image {
        ImageFormat::Elf => elf_path.clone(),
        ImageFormat::Binary { suffix } => {
            let binary = image_dir.join(format!("{}{suffix}", app.name));
            run_checked(
                ws.command(&objcopy)
                    .args(["-O", "binary"])
                    .arg(&elf_path)
                    .arg(&binary),
            )?;
            binary
        }
        ImageFormat::UefiDisk => {
            let efi = build_uefi_loader(ws, app, &stripped)?;
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
fn build_uefi_loader(ws: &Workspace, app: &App, kernel: &Path) -> Result<PathBuf> {
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
    println!("build: UEFI loader carrying {}", kernel.display());
    run_checked(&mut cmd)?;
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
