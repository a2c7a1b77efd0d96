//! Making sure the tools exist: the board's Rust target and `llvm-tools` (via rustup), and
//! QEMU ≥ 9 (via apt on Debian/Ubuntu when running as root; otherwise the exact command to
//! run is printed).
//!
//! `RUSTUP_AUTO_INSTALL=0` may be set, so nothing is added behind our back: missing targets
//! and components are added here explicitly.
//!
//! The host checks (`/etc/os-release`, root) and the apt runner also serve `ovmf.rs`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::boards::Board;
use crate::image::BuildOutput;
use crate::qemu::{self, MIN_MAJOR, Probe, Qemu, Version};
use crate::{Result, Workspace, capture, describe, fail};

/// Adds the board's target and `llvm-tools` to the pinned toolchain when missing.
pub(crate) fn ensure_toolchain(ws: &Workspace, board: &Board) -> Result<()> {
    ensure_toolchain_to(ws, board, &mut BuildOutput::Terminal)
}

/// [`ensure_toolchain`], what it says and runs sent to `out` (a background build's log).
pub(crate) fn ensure_toolchain_to(
    ws: &Workspace,
    board: &Board,
    out: &mut BuildOutput,
) -> Result<()> {
    let targets = match capture(ws.command("rustup").args(["target", "list", "--installed"])) {
        Ok(targets) => targets,
        Err(e) => {
            // One line, and not a failure: said even from the background.
            eprintln!(
                "warning: cannot ask rustup for installed targets ({e}); assuming they exist"
            );
            return Ok(());
        }
    };
    // pc-uefi's disk carries a UEFI application built for the UEFI target.
    let uefi =
        (board.image == crate::boards::ImageFormat::UefiDisk).then_some(crate::image::UEFI_TARGET);
    for target in std::iter::once(board.target).chain(uefi) {
        if !targets.lines().any(|l| l.trim() == target) {
            out.line(&format!("setup: adding Rust target {target}"));
            out.run(ws.command("rustup").args(["target", "add", target]))?;
        }
    }
    let components = capture(
        ws.command("rustup")
            .args(["component", "list", "--installed"]),
    )?;
    if !has_llvm_tools(&components) {
        out.line("setup: adding rustup component llvm-tools");
        out.run(
            ws.command("rustup")
                .args(["component", "add", "llvm-tools"]),
        )?;
    }
    Ok(())
}

/// Whether `rustup component list --installed` output lists llvm-tools.
fn has_llvm_tools(components: &str) -> bool {
    components
        .lines()
        .any(|l| l.trim().starts_with("llvm-tools"))
}

/// The fields of `/etc/os-release` that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OsRelease {
    id: String,
    id_like: Vec<String>,
    version_id: String,
    codename: String,
}

pub(super) fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(['"', '\'']).to_string();
        match key.trim() {
            "ID" => os.id = value,
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" => os.codename = value,
            _ => {}
        }
    }
    os
}

impl OsRelease {
    pub(crate) fn is_debian_like(&self) -> bool {
        ["debian", "ubuntu"]
            .iter()
            .any(|d| self.id == *d || self.id_like.iter().any(|l| l == d))
    }

    fn is_bookworm(&self) -> bool {
        self.id == "debian" && (self.codename == "bookworm" || self.version_id == "12")
    }
}

/// This machine's `/etc/os-release` (empty fields when it cannot be read).
pub(crate) fn host_os() -> OsRelease {
    parse_os_release(&fs::read_to_string("/etc/os-release").unwrap_or_default())
}

/// Whether this process runs as root (effective uid 0), as apt-get install needs.
pub(crate) fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_euid(&s))
        == Some(0)
}

/// The effective uid from `/proc/self/status` (`Uid:` real, effective, saved, fs).
fn parse_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The candidate version from `apt-cache policy <pkg>` (epoch and Debian revision dropped).
fn parse_apt_candidate(policy: &str) -> Option<Version> {
    let line = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))?
        .trim();
    let upstream = line.split_once(':').map_or(line, |(_, v)| v);
    qemu::parse_version(&format!("version {upstream}"))
}

const BACKPORTS_LINE: &str = "deb http://deb.debian.org/debian bookworm-backports main";
const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.list";
const QEMU_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-system-arm"];

/// How QEMU gets installed on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Debian 12, root: enable bookworm-backports, install from it.
    Backports,
    /// Another Debian/Ubuntu, root: plain apt-get install (if its QEMU is new enough).
    Plain,
    /// Not root or not Debian-like: tell the user what to run.
    Manual(String),
}

fn install_plan(os: &OsRelease, root: bool) -> Plan {
    let packages = QEMU_PACKAGES.join(" ");
    match (os.is_debian_like(), os.is_bookworm(), root) {
        (true, true, true) => Plan::Backports,
        (true, false, true) => Plan::Plain,
        (true, true, false) => Plan::Manual(format!(
            "echo '{BACKPORTS_LINE}' | sudo tee {BACKPORTS_FILE} && sudo apt-get update && \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
             -t bookworm-backports {packages}"
        )),
        (true, false, false) => Plan::Manual(format!(
            "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y \
             --no-install-recommends {packages}   (needs QEMU >= {MIN_MAJOR} in your release)"
        )),
        (false, _, _) => Plan::Manual(format!(
            "install QEMU >= {MIN_MAJOR} (qemu-system-x86_64, qemu-system-aarch64) with your \
             system's package manager"
        )),
    }
}

/// Whether some apt source already enables bookworm-backports.
fn backports_enabled() -> bool {
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "list" || ext == "sources")
        }));
    }
    files.iter().any(|f| {
        fs::read_to_string(f).is_ok_and(|text| {
            text.lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports"))
        })
    })
}

/// Runs apt-get, reporting but not failing on a bad exit status (third-party repos can make
/// `apt-get update` fail while the Debian ones are fine); success is judged afterwards.
pub(crate) fn apt(args: &[&str]) {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
    println!("setup: $ {}", describe(&cmd));
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: `{}` ended with {s}; continuing", describe(&cmd)),
        Err(e) => eprintln!("warning: cannot run `{}`: {e}", describe(&cmd)),
    }
}

fn install(plan: &Plan) -> Result<()> {
    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    match plan {
        Plan::Manual(command) => {
            return fail(format!(
                "QEMU >= {MIN_MAJOR} is needed; install it with:\n  {command}"
            ));
        }
        Plan::Backports => {
            if !backports_enabled() {
                println!("setup: enabling bookworm-backports in {BACKPORTS_FILE}");
                fs::write(BACKPORTS_FILE, format!("{BACKPORTS_LINE}\n")).map_err(|e| {
                    crate::Error::Failed(format!("cannot write {BACKPORTS_FILE}: {e}"))
                })?;
            }
            apt(&["update"]);
            install_args.extend(["-t", "bookworm-backports"]);
        }
        Plan::Plain => {
            apt(&["update"]);
            let policy = capture(Command::new("apt-cache").args(["policy", QEMU_PACKAGES[0]]))
                .unwrap_or_default();
            match parse_apt_candidate(&policy) {
                Some(v) if v.major >= MIN_MAJOR => {}
                Some(v) => {
                    return fail(format!(
                        "this release only offers QEMU {v}; Rhea needs QEMU >= {MIN_MAJOR} \
                         (install a newer QEMU by hand)"
                    ));
                }
                None => return fail(format!("apt offers no {} package", QEMU_PACKAGES[0])),
            }
        }
    }
    install_args.extend(QEMU_PACKAGES);
    apt(&install_args);
    Ok(())
}

/// Finds QEMU ≥ 9 for the board, installing it when possible, and what its machines need
/// besides (the Raspberry Pi 4's devicetree, see `firmware.rs`).
pub(crate) fn ensure_qemu(board: &Board) -> Result<Qemu> {
    let qemu = ensure_qemu_binary(board)?;
    if board.machines.contains(&"raspi4b") {
        crate::firmware::ensure_rpi4_dtb()?;
    }
    if board.image == crate::boards::ImageFormat::UefiDisk {
        crate::ovmf::ensure_ovmf()?;
    }
    Ok(qemu)
}

fn ensure_qemu_binary(board: &Board) -> Result<Qemu> {
    let problem = match qemu::probe(board.qemu) {
        Probe::Found(q) => return Ok(with_firmware_note(q, board)),
        Probe::Missing => format!("{} not found", board.qemu),
        Probe::TooOld(q) => format!("{} is {} (need >= {MIN_MAJOR})", board.qemu, q.version),
        Probe::Unparsable(banner) => {
            format!("cannot read the version of {} from `{banner}`", board.qemu)
        }
    };
    println!("setup: {problem}");
    install(&install_plan(&host_os(), running_as_root()))?;
    match qemu::probe(board.qemu) {
        Probe::Found(q) => {
            println!("setup: installed {}", q.banner);
            Ok(with_firmware_note(q, board))
        }
        _ => fail(format!(
            "{problem}, and installing QEMU did not fix it (see the apt output above)"
        )),
    }
}

fn with_firmware_note(q: Qemu, board: &Board) -> Qemu {
    if q.qboot.is_none() && board.machines.contains(&"q35") {
        eprintln!(
            "note: /usr/share/qemu/qboot.rom not found (package qemu-system-data); \
             q35 boots with QEMU's default firmware"
        );
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
        VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    const NOBLE: &str = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n\
        VERSION_CODENAME=noble\n";
    const FEDORA: &str = "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=41\n";

    #[test]
    fn os_release() {
        let os = parse_os_release(BOOKWORM);
        assert_eq!(os.id, "debian");
        assert_eq!(os.codename, "bookworm");
        assert!(os.is_debian_like() && os.is_bookworm());
        let os = parse_os_release(NOBLE);
        assert!(os.is_debian_like() && !os.is_bookworm());
        let os = parse_os_release(FEDORA);
        assert!(!os.is_debian_like());
        let mint = parse_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n");
        assert!(mint.is_debian_like());
    }

    #[test]
    fn plans() {
        let bookworm = parse_os_release(BOOKWORM);
        assert_eq!(install_plan(&bookworm, true), Plan::Backports);
        match install_plan(&bookworm, false) {
            Plan::Manual(cmd) => {
                assert!(cmd.contains("sudo tee /etc/apt/sources.list.d/bookworm-backports.list"));
                assert!(cmd.contains("-t bookworm-backports qemu-system-x86 qemu-system-arm"));
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(install_plan(&parse_os_release(NOBLE), true), Plan::Plain);
        assert!(matches!(
            install_plan(&parse_os_release(NOBLE), false),
            Plan::Manual(_)
        ));
        assert!(matches!(
            install_plan(&parse_os_release(FEDORA), true),
            Plan::Manual(_)
        ));
    }

    #[test]
    fn euid() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_euid(status), Some(0));
        assert_eq!(parse_euid("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(parse_euid("Name: x\n"), None);
    }

    #[test]
    fn apt_candidate() {
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:8.2.2+ds-0ubuntu1.4\n  \
                      Version table:\n";
        assert_eq!(parse_apt_candidate(policy).unwrap().major, 8);
        let policy = "qemu-system-x86:\n  Candidate: 1:10.0.2+ds-2+deb13u1~bpo12+1\n";
        assert_eq!(parse_apt_candidate(policy).unwrap().major, 10);
        assert_eq!(
            parse_apt_candidate("qemu-system-x86:\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(parse_apt_candidate(""), None);
    }

    #[test]
    fn llvm_tools() {
        assert!(has_llvm_tools(
            "cargo-x86_64-unknown-linux-gnu\nllvm-tools-x86_64-unknown-linux-gnu\n"
        ));
        assert!(has_llvm_tools(
            "llvm-tools-preview-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_llvm_tools(
            "cargo-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n"
        ));
    }
}
