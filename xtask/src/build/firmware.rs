//! Files a machine needs besides the kernel: the Raspberry Pi 4's devicetree.
//!
//! QEMU generates a devicetree for `-M virt` but not for the raspi machines, which (like the
//! real Pi, whose firmware loads one) expect `-dtb`. The upstream `bcm2711-rpi-4-b.dtb` comes
//! from Debian's arm64 kernel package (`usr/lib/linux-image-*/broadcom/`), fetched the way
//! `linux_guest.rs` fetches packages — `apt-get download`, `dpkg-deb` — with a private apt
//! state under `target/firmware/apt/` so the host's apt configuration (which has no arm64
//! lists) is left alone. Only the devicetree is kept, in `target/firmware/`.
//!
//! The same private apt state serves other arm64 packages ([`download_arm64_deb`]: Xen for
//! board xen-arm64, see `xen/mod.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Context, Result, capture, describe, fail};

/// The Pi 4 devicetree's file name.
pub(crate) const RPI4_DTB: &str = "bcm2711-rpi-4-b.dtb";
/// The metapackage naming Debian's current arm64 kernel.
const KERNEL_META: &str = "linux-image-arm64";
/// What to do by hand when fetching fails.
pub(crate) const RPI4_DTB_HOWTO: &str = "xtask fetches it from Debian's linux-image-*-arm64 \
    package (usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb) with apt-get download and \
    dpkg-deb; without apt, copy that file, or the one from a Raspberry Pi boot partition, to \
    target/firmware/";

/// `target/firmware/` of this workspace.
fn dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("target")
        .join("firmware")
}

/// Where the Pi 4 devicetree is kept.
pub(crate) fn rpi4_dtb_path() -> PathBuf {
    dir().join(RPI4_DTB)
}

/// Whether `bytes` start like a flattened devicetree (magic 0xd00dfeed).
fn is_dtb(bytes: &[u8]) -> bool {
    bytes.len() >= 40 && bytes[..4] == [0xd0, 0x0d, 0xfe, 0xed]
}

/// The apt options of the private arm64 state.
fn apt_options(apt: &Path) -> Vec<String> {
    vec![
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oAPT::Architecture=arm64".to_string(),
        "-oAPT::Architectures::=arm64".to_string(),
        "-oDebug::NoLocking=1".to_string(),
    ]
}

/// The versioned package a metapackage depends on, from `apt-cache depends <meta>`.
fn parse_depends_target(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let pkg = l.trim().strip_prefix("Depends:")?.trim();
        (!pkg.is_empty() && !pkg.starts_with('<')).then(|| pkg.to_string())
    })
}

/// Makes sure the Pi 4 devicetree is in `target/firmware/`, fetching it when missing.
pub(crate) fn ensure_rpi4_dtb() -> Result<PathBuf> {
    let path = rpi4_dtb_path();
    if fs::read(&path).is_ok_and(|b| is_dtb(&b)) {
        return Ok(path);
    }
    println!("setup: fetching {RPI4_DTB} (Debian's arm64 kernel package) for -M raspi4b");
    fetch_rpi4_dtb(&path).map_err(|e| {
        crate::Error::Failed(format!(
            "cannot get {RPI4_DTB} for -M raspi4b: {e}\n({RPI4_DTB_HOWTO})"
        ))
    })?;
    Ok(path)
}

fn fetch_rpi4_dtb(path: &Path) -> Result<()> {
    let dir = dir();
    let debs = dir.join("debs");
    let opts = arm64_apt()?;
    let depends = capture(
        Command::new("apt-cache")
            .args(&opts)
            .args(["depends", KERNEL_META]),
    )?;
    let Some(pkg) = parse_depends_target(&depends) else {
        return fail(format!(
            "`apt-cache depends {KERNEL_META}` (arm64) names no kernel package"
        ));
    };
    let deb = download_arm64_deb(&pkg, &debs)?;
    let unpack = dir.join("unpack");
    let _ = fs::remove_dir_all(&unpack);
    fs::create_dir_all(&unpack).context(|| format!("cannot create {}", unpack.display()))?;
    // dpkg-deb --fsys-tarfile | tar -x of just the one file.
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards '*/broadcom/{RPI4_DTB}'",
        deb.display(),
        unpack.display()
    );
    crate::run_checked(Command::new("sh").args(["-c", &script]))?;
    let found = find_file(&unpack, RPI4_DTB)
        .ok_or_else(|| crate::Error::Failed(format!("{} holds no {RPI4_DTB}", deb.display())))?;
    let bytes = fs::read(&found).context(|| format!("cannot read {}", found.display()))?;
    if !is_dtb(&bytes) {
        return fail(format!("{} is not a devicetree", found.display()));
    }
    fs::write(path, &bytes).context(|| format!("cannot write {}", path.display()))?;
    // The 60 MB package and the unpacked tree are not needed any more.
    let _ = fs::remove_dir_all(&unpack);
    let _ = fs::remove_file(&deb);
    println!(
        "setup: {} ({} bytes, from {pkg})",
        path.display(),
        bytes.len()
    );
    Ok(())
}

/// The apt options of the private arm64 state under `target/firmware/apt/`, its package lists
/// fetched (`apt-get update`) on first use. The host's apt configuration is left alone.
fn arm64_apt() -> Result<Vec<String>> {
    let apt = dir().join("apt");
    for d in [
        apt.join("lists").join("partial"),
        apt.join("cache").join("archives").join("partial"),
    ] {
        fs::create_dir_all(&d).context(|| format!("cannot create {}", d.display()))?;
    }
    let opts = apt_options(&apt);
    let has_lists = fs::read_dir(apt.join("lists"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("arm64"))
        })
        .unwrap_or(false);
    if !has_lists {
        let mut update = Command::new("apt-get");
        update.args(&opts).arg("update");
        println!("setup: $ {}", describe(&update));
        // Third-party sources may fail to update while Debian's work: judged by what follows.
        let _ = capture(&mut update);
    }
    Ok(opts)
}

/// Downloads Debian's arm64 package `pkg` (`apt-get download`, no root needed; `pkg` may
/// name a release, `<pkg>/<release>`) into `debs` and returns the `.deb`'s path.
pub(crate) fn download_arm64_deb(pkg: &str, debs: &Path) -> Result<PathBuf> {
    let opts = arm64_apt()?;
    fs::create_dir_all(debs).context(|| format!("cannot create {}", debs.display()))?;
    let mut download = Command::new("apt-get");
    download
        .current_dir(debs)
        .args(&opts)
        .args(["download", pkg]);
    println!("setup: $ {}", describe(&download));
    capture(&mut download)?;
    fs::read_dir(debs)
        .context(|| format!("cannot list {}", debs.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                crate::guest::debian::is_deb_of(
                    &n.to_string_lossy(),
                    crate::guest::debian::package_base(pkg),
                )
            })
        })
        .ok_or_else(|| crate::Error::Failed(format!("`{}` left no .deb", describe(&download))))
}

/// The first file named `name` under `root` (depth-first).
pub(crate) fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(root).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(found) = find_file(&p, name) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_and_magic() {
        let out = "linux-image-arm64\n  Depends: linux-image-6.1.0-56-arm64\n";
        assert_eq!(
            parse_depends_target(out).as_deref(),
            Some("linux-image-6.1.0-56-arm64")
        );
        assert_eq!(parse_depends_target("x\n  Depends: <virtual>\n"), None);
        let mut dtb = vec![0u8; 40];
        dtb[..4].copy_from_slice(&[0xd0, 0x0d, 0xfe, 0xed]);
        assert!(is_dtb(&dtb));
        assert!(!is_dtb(&dtb[..39]));
        assert!(rpi4_dtb_path().ends_with("target/firmware/bcm2711-rpi-4-b.dtb"));
    }
}
