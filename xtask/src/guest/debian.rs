//! Debian packages: the `.deb` cache every guest shares, the current kernel package of a
//! flavour, and unpacking.
//!
//! The cache is `target/debian/<arch>/debs/`, one per Debian architecture ([`DebArch`]).
//! Packages come from `apt-get download` (no root needed): `amd64` with the host's apt and
//! package lists, `arm64` through the private arm64 apt state of `firmware.rs`. A package
//! whose `.deb` is in the cache is never fetched again; on a host without apt, the `.deb`
//! files can be put there by hand. Unpacking is `dpkg-deb -x`, or `dpkg-deb --fsys-tarfile`
//! into `tar -x` for some members only, once per package and directory (a stamp per `.deb`
//! under `<dir>/.unpacked-debs/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::mkdir;
use crate::{Context, Error, Result, capture, describe, fail};

/// Where [`unpack`] records the packages it unpacked into a directory.
const STAMPS: &str = ".unpacked-debs";

/// A Debian architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DebArch {
    Amd64,
    Arm64,
}

impl DebArch {
    /// Debian's name (`amd64`, `arm64`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            DebArch::Amd64 => "amd64",
            DebArch::Arm64 => "arm64",
        }
    }

    /// The multiarch triple of its library directories (`lib/<triple>`).
    pub(crate) fn triple(self) -> &'static str {
        match self {
            DebArch::Amd64 => "x86_64-linux-gnu",
            DebArch::Arm64 => "aarch64-linux-gnu",
        }
    }
}

/// The `.deb` cache of one architecture.
#[derive(Debug, Clone)]
pub(crate) struct Debs {
    arch: DebArch,
    dir: PathBuf,
}

impl Debs {
    /// The cache `target/debian/<arch>/debs/`, created.
    pub(crate) fn open(arch: DebArch) -> Result<Debs> {
        let dir = super::target_dir()
            .join("debian")
            .join(arch.name())
            .join("debs");
        mkdir(&dir)?;
        Ok(Debs { arch, dir })
    }

    /// The cached `.deb` whose file name satisfies `matches`; the newest if several.
    pub(crate) fn cached(&self, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".deb") && matches(&name)
            })
            .map(|e| {
                let mtime = e.metadata().and_then(|m| m.modified());
                (mtime.unwrap_or(std::time::UNIX_EPOCH), e.path())
            })
            .collect();
        found.sort();
        found.pop().map(|(_, p)| p)
    }

    /// The `.deb` of `pkg`, downloaded when not cached.
    pub(crate) fn package(&self, pkg: &str) -> Result<PathBuf> {
        Ok(self
            .packages(&[pkg.to_string()])?
            .pop()
            .expect("one package asked for"))
    }

    /// The `.deb` of each of `pkgs`, in order, downloading those not cached (amd64: with one
    /// `apt-get download`). A package may name its release as apt does, `<pkg>/<release>`
    /// (`qemu-system-arm/bookworm-backports`); a cached `.deb` of the package is then taken
    /// as it is.
    pub(crate) fn packages(&self, pkgs: &[String]) -> Result<Vec<PathBuf>> {
        let cached = |pkg: &str| self.cached(|name| is_deb_of(name, package_base(pkg)));
        let missing: Vec<&str> = pkgs
            .iter()
            .map(String::as_str)
            .filter(|p| cached(p).is_none())
            .collect();
        if !missing.is_empty() {
            self.download(&missing)?;
        }
        pkgs.iter()
            .map(|pkg| match cached(pkg) {
                Some(deb) => Ok(deb),
                None => fail(format!(
                    "`apt-get download {pkg}` left no {pkg}_*.deb in {}",
                    self.dir.display()
                )),
            })
            .collect()
    }

    /// Fetches `pkgs` into the cache.
    fn download(&self, pkgs: &[&str]) -> Result<()> {
        let how = |pkg: &str, e: &Error| {
            Error::Failed(format!(
                "cannot download Debian's {} package {pkg}: {e}\n(this needs Debian 12 \
                 (bookworm) package lists{}; or put {pkg}_*.deb into {} by hand)",
                self.arch.name(),
                match self.arch {
                    DebArch::Arm64 => ", fetched into target/firmware/apt",
                    DebArch::Amd64 => ": run `apt-get update`",
                },
                self.dir.display()
            ))
        };
        if self.arch == DebArch::Arm64 {
            for pkg in pkgs {
                crate::firmware::download_arm64_deb(pkg, &self.dir).map_err(|e| how(pkg, &e))?;
            }
            return Ok(());
        }
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(&self.dir).arg("download").args(pkgs);
        println!("guest: $ {}", describe(&cmd));
        if let Err(e) = capture(&mut cmd) {
            // Name the package that is not there.
            for pkg in pkgs {
                let mut one = Command::new("apt-get");
                one.current_dir(&self.dir).args(["download", pkg]);
                capture(&mut one).map_err(|e| how(pkg, &e))?;
            }
            return Err(how(&pkgs.join(" "), &e));
        }
        Ok(())
    }

    /// The `.deb` of the current kernel of `flavour` (`cloud-amd64`, `amd64`, `arm64`): a
    /// cached one, else the package the metapackage `linux-image-<flavour>` depends on
    /// (amd64: from `apt-cache depends`; arm64: from the metapackage's `Depends:`).
    pub(crate) fn kernel(&self, flavour: &str) -> Result<PathBuf> {
        if let Some(deb) = self.cached(|name| is_kernel_deb(name, flavour)) {
            return Ok(deb);
        }
        let meta = format!("linux-image-{flavour}");
        let pkg = match self.arch {
            DebArch::Amd64 => {
                let depends = capture(Command::new("apt-cache").args(["depends", &meta]))?;
                depends_target(&depends).ok_or_else(|| {
                    Error::Failed(format!(
                        "`apt-cache depends {meta}` names no kernel package (is this Debian 12 \
                         with up-to-date package lists?):\n{depends}"
                    ))
                })?
            }
            DebArch::Arm64 => {
                let deb = self.package(&meta)?;
                let depends = control_field(&deb, "Depends")?;
                kernel_dependency(&depends).ok_or_else(|| {
                    Error::Failed(format!(
                        "{} depends on no linux-image-* package: {depends}",
                        deb.display()
                    ))
                })?
            }
        };
        self.package(&pkg)
    }
}

/// The package name of an apt request: `pkg` of `pkg/release` or `pkg=version`.
pub(crate) fn package_base(request: &str) -> &str {
    request.split(['/', '=']).next().unwrap_or(request)
}

/// Whether a `.deb` file name is of package `pkg` (`<pkg>_<version>_<arch>.deb`).
pub(crate) fn is_deb_of(file_name: &str, pkg: &str) -> bool {
    file_name
        .strip_prefix(pkg)
        .is_some_and(|rest| rest.starts_with('_'))
}

/// Whether a `.deb` file name is a versioned kernel of `flavour`, e.g.
/// `linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb` for `cloud-amd64` (not the
/// metapackage, not another flavour, not `-dbg` or `-unsigned`).
pub(crate) fn is_kernel_deb(file_name: &str, flavour: &str) -> bool {
    let pkg = file_name.split('_').next().unwrap_or_default();
    pkg.strip_prefix("linux-image-")
        .and_then(|rest| rest.strip_suffix(flavour))
        .and_then(|rest| rest.strip_suffix('-'))
        .is_some_and(|abi| {
            abi.starts_with(|c: char| c.is_ascii_digit())
                && abi
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        })
        && file_name.ends_with(".deb")
}

/// The package a metapackage depends on, from `apt-cache depends <meta>`.
pub(crate) fn depends_target(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let pkg = l.trim().strip_prefix("Depends:")?.trim();
        (!pkg.is_empty() && !pkg.starts_with('<')).then(|| pkg.to_string())
    })
}

/// The first `linux-image-*` package of a `Depends:` field.
fn kernel_dependency(depends: &str) -> Option<String> {
    depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
}

/// The shared-library packages of a `Depends:` field (first alternative of each, no
/// version): those named `lib*`, and `zlib1g` (libz), the one a QEMU needs that is not.
pub(crate) fn library_packages(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let name = first
                .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
                .next()?;
            (name.starts_with("lib") || name == "zlib1g").then(|| name.to_string())
        })
        .collect()
}

/// A control field of a `.deb` (`dpkg-deb -f`).
pub(crate) fn control_field(deb: &Path, field: &str) -> Result<String> {
    capture(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))
}

/// The package name of a `.deb` file (`linux-image-6.1.0-56-amd64`).
pub(crate) fn package_name(deb: &Path) -> String {
    file_name(deb)
        .split('_')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `linux-image-6.1.0-56-cloud-amd64 6.1.192-2` from the `.deb` file name.
pub(crate) fn package_and_version(deb: &Path) -> String {
    let name = file_name(deb);
    let mut parts = name.trim_end_matches(".deb").split('_');
    let pkg = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or_default().replace("%3a", ":");
    format!("{pkg} {version}")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which files of a package [`unpack`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Members<'a> {
    /// All of them.
    All,
    /// Those matching a `tar` wildcard, `*` matching `/` too (`*/boot/vmlinuz-*`).
    Matching(&'a [&'a str]),
    /// Those matching a `tar` wildcard, `*` within one path component
    /// (`./lib/modules/*/kernel/drivers/net/*.ko`: not `drivers/net/ethernet/...`).
    MatchingInDir(&'a [&'a str]),
    /// All of them into a merged-`/usr` tree: `/lib`, `/bin`, `/sbin` and `/lib64` are links
    /// into `usr/` (made first), so what a package ships there lands under `usr/` (Debian 12's
    /// packages still ship `/lib/aarch64-linux-gnu/libc.so.6` and the like), and `usr/` alone
    /// holds everything.
    AllMergedUsr,
}

/// The top-level directories [`Members::AllMergedUsr`] makes links into `usr/`.
const MERGED_DIRS: [&str; 4] = ["lib", "bin", "sbin", "lib64"];

/// Unpacks `members` of `deb` (once) into a directory of its own, `unpacked/<file stem>/`;
/// returns that directory.
pub(crate) fn unpack_own(deb: &Path, unpacked: &Path, members: Members<'_>) -> Result<PathBuf> {
    let stem = deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = unpacked.join(stem);
    unpack(deb, &root, members)?;
    Ok(root)
}

/// Unpacks `members` of `deb` into `root`, once: a stamp per `.deb` under
/// `root/.unpacked-debs/` says it is done.
pub(crate) fn unpack(deb: &Path, root: &Path, members: Members<'_>) -> Result<()> {
    let stamps = root.join(STAMPS);
    // The members are part of the stamp: asking for more of a package unpacks it again.
    let stamp = stamps.join(match members {
        Members::Matching(p) | Members::MatchingInDir(p) => {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for b in p.join("\n").bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{}.{h:016x}", file_name(deb))
        }
        Members::All | Members::AllMergedUsr => file_name(deb),
    });
    if stamp.is_file() {
        return Ok(());
    }
    mkdir(&stamps)?;
    match members {
        Members::All => {
            crate::run_checked(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
        }
        Members::Matching(p) => extract(deb, root, p, Extract::Wildcards)?,
        Members::MatchingInDir(p) => extract(deb, root, p, Extract::WildcardsInDir)?,
        Members::AllMergedUsr => {
            merged_usr_links(root)?;
            extract(deb, root, &[], Extract::KeepDirLinks)?;
        }
    }
    fs::write(&stamp, b"").context(|| format!("cannot write {}", stamp.display()))
}

/// Makes `root/usr/<dir>` and the link `root/<dir>` -> `usr/<dir>` for each of
/// [`MERGED_DIRS`] (once).
fn merged_usr_links(root: &Path) -> Result<()> {
    for dir in MERGED_DIRS {
        mkdir(&root.join("usr").join(dir))?;
        let link = root.join(dir);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("usr/{dir}"), &link)
                .context(|| format!("cannot create the link {}", link.display()))?;
        }
    }
    Ok(())
}

/// How [`extract`] selects and writes members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extract {
    /// `--wildcards`, `*` matching `/` too.
    Wildcards,
    /// `--wildcards --no-wildcards-match-slash`.
    WildcardsInDir,
    /// Every member, through the links to directories already there
    /// (`--keep-directory-symlink`).
    KeepDirLinks,
}

/// `dpkg-deb --fsys-tarfile deb | tar -x -C root [options] patterns`.
fn extract(deb: &Path, root: &Path, patterns: &[&str], how: Extract) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped());
    let mut dpkg_child = dpkg
        .spawn()
        .context(|| format!("cannot run `{}`", describe(&dpkg)))?;
    let mut tar = Command::new("tar");
    tar.args(["-x", "-f", "-", "-C"]).arg(root);
    match how {
        Extract::Wildcards => {
            tar.arg("--wildcards");
        }
        Extract::WildcardsInDir => {
            tar.args(["--wildcards", "--no-wildcards-match-slash"]);
        }
        Extract::KeepDirLinks => {
            tar.arg("--keep-directory-symlink");
        }
    }
    tar.args(patterns);
    if let Some(out) = dpkg_child.stdout.take() {
        tar.stdin(out);
    }
    let tar_status = tar
        .status()
        .context(|| format!("cannot run `{}`", describe(&tar)));
    let dpkg_status = dpkg_child
        .wait()
        .context(|| format!("`{}` did not end", describe(&dpkg)))?;
    let tar_status = tar_status?;
    if !tar_status.success() || !dpkg_status.success() {
        return fail(format!(
            "`{} | {}` failed ({dpkg_status}, {tar_status})",
            describe(&dpkg),
            describe(&tar)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_file_names() {
        assert_eq!(
            package_base("qemu-system-arm/bookworm-backports"),
            "qemu-system-arm"
        );
        assert_eq!(package_base("libc6=2.36-9"), "libc6");
        assert_eq!(package_base("libc6"), "libc6");
        assert!(is_deb_of("rt-tests_2.4-1_amd64.deb", "rt-tests"));
        assert!(!is_deb_of("rt-tests-extra_2.4-1_amd64.deb", "rt-tests"));
        assert_eq!(
            package_and_version(Path::new(
                "/x/busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
            )),
            "busybox-static 1:1.35.0-4+deb12u1+b1"
        );
        assert_eq!(
            package_name(Path::new(
                "/x/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"
            )),
            "linux-image-6.1.0-56-amd64"
        );
    }

    #[test]
    fn kernel_debs() {
        let cloud = "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb";
        let generic = "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb";
        assert!(is_kernel_deb(cloud, "cloud-amd64"));
        assert!(!is_kernel_deb(cloud, "amd64"));
        assert!(is_kernel_deb(generic, "amd64"));
        assert!(!is_kernel_deb(generic, "cloud-amd64"));
        assert!(!is_kernel_deb(
            "linux-image-cloud-amd64_6.1.192-2_amd64.deb",
            "cloud-amd64"
        ));
        assert!(!is_kernel_deb(
            "linux-image-amd64_6.1.192-2_amd64.deb",
            "amd64"
        ));
        assert!(is_kernel_deb(
            "linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb",
            "arm64"
        ));
        for not in [
            "linux-image-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-rt-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-cloud-arm64_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-arm64-dbg_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-arm64-unsigned_6.1.192-3_arm64.deb",
            "linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb",
            "linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb.part",
        ] {
            assert!(!is_kernel_deb(not, "arm64"), "{not}");
        }
    }

    #[test]
    fn dependencies() {
        assert_eq!(
            depends_target(
                "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"
            )
            .as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(depends_target("x\n  Depends: <virtual>\n"), None);
        assert_eq!(
            kernel_dependency("linux-image-6.1.0-57-arm64 (= 6.1.192-3), foo").as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(kernel_dependency("foo, bar (>= 1)"), None);
        assert_eq!(
            library_packages("libc6 (>= 2.33), libnuma1 (>= 2.0.11), python3"),
            ["libc6", "libnuma1"]
        );
        assert_eq!(library_packages("libfoo1:any | libbar2, perl"), ["libfoo1"]);
        assert_eq!(
            library_packages("zlib1g (>= 1:1.2.0), zlib1g-dev, qemu-system-common (= 1)"),
            ["zlib1g"]
        );
    }

    #[test]
    fn the_cache_picks_the_newest() {
        let dir = std::env::temp_dir().join(format!("xtask-debs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let debs = Debs {
            arch: DebArch::Amd64,
            dir: dir.clone(),
        };
        assert_eq!(debs.cached(|n| is_deb_of(n, "busybox-static")), None);
        let old = dir.join("busybox-static_1_amd64.deb");
        let new = dir.join("busybox-static_2_amd64.deb");
        fs::write(&old, b"").unwrap();
        fs::write(dir.join("busybox-static_3_amd64.deb.tmp"), b"").unwrap();
        let f = fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        fs::write(&new, b"").unwrap();
        assert_eq!(debs.cached(|n| is_deb_of(n, "busybox-static")), Some(new));
        assert_eq!(debs.cached(|n| is_deb_of(n, "busybox")), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
