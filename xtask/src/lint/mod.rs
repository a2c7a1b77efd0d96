//! `cargo xtask lint`: clippy with `-D warnings` everywhere it applies.
//!
//! 1. The host crates (the workspace's `default-members`): `cargo clippy --all-targets`.
//! 2. The fuzz targets (`fuzz/`, a workspace of its own): `cargo clippy --all-targets` there,
//!    into `target/fuzz` (an ordinary build: no instrumentation, no unstable flags).
//! 3. Per board, every app package: `cargo clippy --release --target <t> -p ...` with the
//!    same environment as a board build (so `rhea_board` cfgs match), sharing the board's
//!    target directory. `RHEA_SYMTAB` points at an empty `lint.symtab` there.
//!
//! 4. pc-uefi's UEFI loader (`boards/pc-uefi/loader`) for `x86_64-unknown-uefi`.
//!
//! 5. The layer table (`layers.rs`): dependency edges point down, `target_arch` only in arch/
//!    and boards/, boards named only in boards/.
//!
//! Every step runs even if an earlier one failed; the exit code is non-zero if any failed.

pub(crate) mod layers;

use crate::boards::{self, Board};
use crate::{Error, Options, Result, Workspace, apps, describe, fail, image, run_checked, setup};

pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let mut failed: Vec<String> = Vec::new();

    let mut host = ws.cargo();
    host.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    println!("lint: host crates: {}", describe(&host));
    if let Err(e) = run_checked(&mut host) {
        failed.push(format!("host crates: {e}"));
    }

    let mut fuzz = ws.cargo();
    fuzz.args([
        "clippy",
        "--all-targets",
        "--manifest-path",
        "fuzz/Cargo.toml",
    ])
    .arg("--target-dir")
    .arg(ws.root.join("target/fuzz"))
    .args(["--", "-D", "warnings"]);
    println!("lint: fuzz targets: {}", describe(&fuzz));
    if let Err(e) = run_checked(&mut fuzz) {
        failed.push(format!("fuzz targets: {e}"));
    }

    println!("lint: layers: cargo metadata --no-deps, checked against xtask/src/lint/layers.rs");
    match layer_findings(ws) {
        Ok(found) if found.is_empty() => {}
        Ok(found) => {
            for f in &found {
                println!("lint: layers: {f}");
            }
            failed.push(format!("layers: {} finding(s)", found.len()));
        }
        Err(e) => failed.push(format!("layers: {e}")),
    }

    let board_list: Vec<&Board> = match &opts.board {
        Some(name) => vec![boards::find(name)?],
        None => boards::BOARDS.iter().collect(),
    };
    let all_apps = apps::discover(&ws.root)?;
    for board in board_list {
        if all_apps.is_empty() {
            println!("lint: board {}: no apps to lint", board.name);
            continue;
        }
        if let Err(e) = setup::ensure_toolchain(ws, board) {
            failed.push(format!("board {}: {e}", board.name));
            continue;
        }
        let symtab = ws.board_target_dir(board).join("lint.symtab");
        image::ensure_symtab_file(&symtab)?;
        let mut cmd = ws.cargo();
        cmd.args(["clippy", "--release", "--target", board.target]);
        // Apps needing what the board lacks (the network stack) do not build for it.
        for app in all_apps.iter().filter(|a| board.builds(a)) {
            cmd.args(["-p", &app.package]);
        }
        cmd.args(["--", "-D", "warnings"])
            .envs(image::board_env(ws, board, &symtab));
        println!("lint: board {}: {}", board.name, describe(&cmd));
        if let Err(e) = run_checked(&mut cmd) {
            failed.push(format!("board {}: {e}", board.name));
        }
    }

    // pc-uefi's UEFI loader, for its own target; the kernel it carries is an empty file here
    // (`include_bytes!` needs one to exist).
    if let Err(e) = lint_uefi_loader(ws) {
        failed.push(format!("UEFI loader: {e}"));
    }

    if failed.is_empty() {
        println!("lint: clean");
        Ok(())
    } else {
        fail(format!("lint failed:\n  {}", failed.join("\n  ")))
    }
}

/// Clippy on `rhea-uefi-loader` for the UEFI target.
fn lint_uefi_loader(ws: &Workspace) -> Result<()> {
    let pc = boards::find("pc-uefi")?;
    setup::ensure_toolchain(ws, pc)?;
    let target_dir = ws.root.join("target").join("uefi-loader");
    let kernel = target_dir.join("lint-kernel.elf");
    std::fs::create_dir_all(&target_dir)
        .and_then(|()| std::fs::write(&kernel, b""))
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", kernel.display())))?;
    let mut cmd = ws.cargo();
    cmd.args([
        "clippy",
        "--release",
        "--target",
        image::UEFI_TARGET,
        "-p",
        "rhea-uefi-loader",
        "--",
        "-D",
        "warnings",
    ])
    .env("CARGO_TARGET_DIR", &target_dir)
    .env("RHEA_KERNEL_ELF", &kernel);
    println!("lint: UEFI loader: {}", describe(&cmd));
    run_checked(&mut cmd)
}

/// The layer check's findings for the workspace.
fn layer_findings(ws: &Workspace) -> Result<Vec<String>> {
    let out = ws
        .cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| Error::Failed(format!("cargo metadata: {e}")))?;
    if !out.status.success() {
        return fail(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    layers::check(&ws.root, &String::from_utf8_lossy(&out.stdout)).map_err(Error::Failed)
}
