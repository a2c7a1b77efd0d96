//! OVMF, the UEFI firmware for QEMU's PCs, and the QEMU arguments that boot the pc-uefi
//! board's disk (`uefi_disk.rs`) with it the way a real PC boots a USB stick.
//!
//! OVMF comes from Debian's `ovmf` package, installed with apt when missing and running as
//! root on Debian/Ubuntu (as `setup.rs` does for QEMU); elsewhere the error names the package.
//! It is two flash images: the firmware code (read-only) and its variable store (NVRAM),
//! which OVMF writes as it boots (boot options, the boot order); every run opens the pristine
//! variables with `snapshot=on` (its writes go to a temporary overlay QEMU deletes), so runs
//! never see each other's and the package's file is never written.
use std::path::{Path, PathBuf};

use super::setup::{self, OsRelease};
use crate::{Result, fail};

/// The package holding OVMF on Debian and Ubuntu.
const PACKAGE: &str = "ovmf";
/// Where that package puts the firmware.
const DIR: &str = "/usr/share/OVMF";
/// Code and variable files, in order of preference. The 4 MiB build (Debian ≥ 11, Ubuntu ≥
/// 20.04) has room for more variables; the 2 MiB one is what older releases ship. A code file
/// only ever goes with the variables of its own build: their sizes and layouts differ.
/// (The `.secboot`/`.ms` variants are for Secure Boot, which needs SMM and signed loaders.)
const PAIRS: &[(&str, &str)] = &[
    ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    ("OVMF_CODE.fd", "OVMF_VARS.fd"),
];

/// The two OVMF flash images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ovmf {
    /// The firmware, mapped read-only.
    pub(crate) code: PathBuf,
    /// The pristine variable store: opened with `snapshot=on`, never written.
    pub(crate) vars: PathBuf,
}

/// Finds OVMF, installing Debian's `ovmf` package first when it is missing and this is a
/// Debian/Ubuntu machine where we run as root.
pub(crate) fn ensure_ovmf() -> Result<Ovmf> {
    if let Some(ovmf) = find() {
        return Ok(ovmf);
    }
    let missing = format!("OVMF (UEFI firmware for QEMU) not found in {DIR}");
    println!("setup: {missing}");
    match install_plan(&setup::host_os(), setup::running_as_root()) {
        Plan::Manual(how) => return fail(format!("{missing}; {how}")),
        Plan::Apt => {
            setup::apt(&["update"]);
            setup::apt(&["install", "-y", "--no-install-recommends", PACKAGE]);
        }
    }
    match find() {
        Some(ovmf) => {
            println!("setup: OVMF is {}", ovmf.code.display());
            Ok(ovmf)
        }
        None => fail(format!(
            "{missing}, and installing the `{PACKAGE}` package did not fix it (see the apt \
             output above; expected {})",
            expected()
        )),
    }
}

/// OVMF's files on this machine, if there.
pub(crate) fn find() -> Option<Ovmf> {
    choose(Path::new(DIR), |p| p.is_file())
}

/// The preferred pair of [`PAIRS`] in `dir` whose two files both exist.
fn choose(dir: &Path, exists: impl Fn(&Path) -> bool) -> Option<Ovmf> {
    PAIRS.iter().find_map(|(code, vars)| {
        let ovmf = Ovmf {
            code: dir.join(code),
            vars: dir.join(vars),
        };
        (exists(&ovmf.code) && exists(&ovmf.vars)).then_some(ovmf)
    })
}

/// The files looked for, for error messages.
fn expected() -> String {
    PAIRS
        .iter()
        .map(|(code, vars)| format!("{DIR}/{{{code},{vars}}}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// How OVMF gets installed on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Debian/Ubuntu, root: `apt-get install ovmf` (any release's OVMF will do: unlike QEMU,
    /// no minimum version, so no backports).
    Apt,
    /// Otherwise: what to tell the user.
    Manual(String),
}

fn install_plan(os: &OsRelease, root: bool) -> Plan {
    match (os.is_debian_like(), root) {
        (true, true) => Plan::Apt,
        (true, false) => Plan::Manual(format!(
            "install it with:\n  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends {PACKAGE}"
        )),
        (false, _) => Plan::Manual(format!(
            "install your distribution's OVMF package (edk2-ovmf, ovmf) and make {} exist \
             (a link will do)",
            expected()
        )),
    }
}

/// The QEMU arguments that boot `disk` (an image of `uefi_disk::write_disk`) with OVMF, for
/// `-M q35` (`-machine`, `-m`, `-serial` and the rest are the caller's):
///
/// - the two flash images as pflash units 0 and 1, the code read-only, the variables from
///   [`Ovmf::vars`] with `snapshot=on` (writes go to a temporary overlay);
/// - the disk, also `snapshot=on` (opened read-only, so runs can share one image; a SATA disk
///   cannot be `readonly=on`), as a SATA disk on q35's built-in AHCI controller (ICH9, 00:1f.2, bus `ide.0`
///   is its port 0), found by OVMF like a USB stick on a PC: no `-kernel`, no fw_cfg boot
///   entry, the firmware's own removable-media path `\EFI\BOOT\BOOTX64.EFI`;
/// - a standard VGA (`-device VGA`, since `-nodefaults` drops the default one), so OVMF
///   has a display for the Graphics Output Protocol the loader asks for.
///
/// `bootindex=0` puts the disk first in QEMU's boot order (fw_cfg `bootorder`), so it stays
/// first should a run add other bootable devices. With `-nodefaults` there is no NIC, hence no
/// PXE or HTTP boot attempt; OVMF's one other boot option is its built-in EFI shell, which it
/// starts when the disk fails (serial: `BdsDxe: failed to load Boot0001 "UEFI QEMU HARDDISK
/// ..."`, then `EFI Internal Shell`, a 5-second startup.nsh countdown and a prompt that waits
/// forever): a caller should take that line as a failed boot rather than wait for its timeout.
///
/// OVMF writes to the serial port (`-serial`): its `BdsDxe: loading/starting Boot0001 ...`
/// lines, then whatever the loader prints through ConOut, with the ANSI sequences of its
/// terminal driver (`ESC[=3h`, cursor moves, colours) mixed in.
pub(crate) fn ovmf_args(ovmf: &Ovmf, disk: &Path) -> Vec<String> {
    [
        "-drive".to_string(),
        format!(
            "if=pflash,unit=0,format=raw,readonly=on,file={}",
            option_path(&ovmf.code)
        ),
        "-drive".to_string(),
        format!(
            "if=pflash,unit=1,format=raw,snapshot=on,file={}",
            option_path(&ovmf.vars)
        ),
        "-drive".to_string(),
        format!(
            "if=none,id=esp,format=raw,snapshot=on,file={}",
            option_path(disk)
        ),
        "-device".to_string(),
        "ide-hd,drive=esp,bus=ide.0,bootindex=0".to_string(),
        "-device".to_string(),
        "VGA".to_string(),
    ]
    .into()
}

/// A path as a QEMU option value: a comma there would start the next option, unless doubled.
fn option_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_a_matching_pair() {
        let dir = Path::new("/usr/share/OVMF");
        const DEBIAN: &[&str] = &[
            "OVMF_CODE.fd",
            "OVMF_CODE_4M.fd",
            "OVMF_CODE_4M.secboot.fd",
            "OVMF_VARS.fd",
            "OVMF_VARS_4M.fd",
            "OVMF_VARS_4M.ms.fd",
        ];
        let present =
            |names: &'static [&'static str]| move |p: &Path| names.iter().any(|n| p == dir.join(n));
        assert_eq!(
            choose(dir, present(DEBIAN)),
            Some(Ovmf {
                code: dir.join("OVMF_CODE_4M.fd"),
                vars: dir.join("OVMF_VARS_4M.fd"),
            })
        );
        // An older release: only the 2 MiB build.
        assert_eq!(
            choose(dir, present(&["OVMF_CODE.fd", "OVMF_VARS.fd"])),
            Some(Ovmf {
                code: dir.join("OVMF_CODE.fd"),
                vars: dir.join("OVMF_VARS.fd"),
            })
        );
        // Never 4M code with 2M variables.
        assert_eq!(
            choose(dir, present(&["OVMF_CODE_4M.fd", "OVMF_VARS.fd"])),
            None
        );
        assert_eq!(
            choose(
                dir,
                present(&["OVMF_CODE_4M.fd", "OVMF_CODE.fd", "OVMF_VARS.fd"])
            ),
            Some(Ovmf {
                code: dir.join("OVMF_CODE.fd"),
                vars: dir.join("OVMF_VARS.fd"),
            })
        );
        // Secure Boot builds alone are not taken.
        assert_eq!(
            choose(
                dir,
                present(&["OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"])
            ),
            None
        );
        assert_eq!(choose(dir, |_| false), None);
    }

    #[test]
    fn plans() {
        let debian = setup::parse_os_release("ID=debian\nVERSION_ID=\"12\"\n");
        let ubuntu = setup::parse_os_release("ID=ubuntu\nID_LIKE=debian\n");
        let fedora = setup::parse_os_release("ID=fedora\n");
        assert_eq!(install_plan(&debian, true), Plan::Apt);
        assert_eq!(install_plan(&ubuntu, true), Plan::Apt);
        match install_plan(&debian, false) {
            Plan::Manual(how) => assert!(
                how.contains("apt-get install -y --no-install-recommends ovmf"),
                "{how}"
            ),
            p => panic!("{p:?}"),
        }
        match install_plan(&fedora, true) {
            Plan::Manual(how) => assert!(
                how.contains("/usr/share/OVMF/{OVMF_CODE_4M.fd,OVMF_VARS_4M.fd}"),
                "{how}"
            ),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn qemu_args() {
        let ovmf = Ovmf {
            code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            vars: PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
        };
        let args = ovmf_args(&ovmf, Path::new("/tmp/a,b/disk.img"));
        assert_eq!(
            args,
            [
                "-drive",
                "if=pflash,unit=0,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "-drive",
                "if=pflash,unit=1,format=raw,snapshot=on,file=/usr/share/OVMF/OVMF_VARS_4M.fd",
                "-drive",
                "if=none,id=esp,format=raw,snapshot=on,file=/tmp/a,,b/disk.img",
                "-device",
                "ide-hd,drive=esp,bus=ide.0,bootindex=0",
                "-device",
                "VGA",
            ]
        );
    }
}
