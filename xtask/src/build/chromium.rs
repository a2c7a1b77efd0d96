//! Chromium, the headless browser that screenshots the appliance's status page
//! (`test/status_page.rs`), from Debian's `chromium` package: installed with apt when missing
//! and running as root on Debian/Ubuntu (as `setup.rs` does for QEMU and `ovmf.rs` for OVMF),
//! with `fonts-dejavu-core` so the page's text has a font; elsewhere the error says what to
//! install. (Ubuntu's `chromium` package is a snap wrapper, which does not install in a
//! container; there the message's command will not help, and a Chromium on `PATH` is needed.)
use std::path::{Path, PathBuf};

use super::setup::{self, OsRelease};
use crate::{Result, fail};

/// The packages installed: the browser and a font for its text.
const PACKAGES: &[&str] = &["chromium", "fonts-dejavu-core"];
/// The binary's names, in order of preference: Debian's, then other distributions'.
const NAMES: &[&str] = &["chromium", "chromium-browser"];

/// Finds Chromium on `PATH`, installing Debian's package first when it is missing and this
/// is a Debian/Ubuntu machine where we run as root.
pub(crate) fn ensure_chromium() -> Result<PathBuf> {
    if let Some(path) = find() {
        return Ok(path);
    }
    let missing = format!(
        "Chromium ({}) not found on PATH; the status-page case screenshots the page with it",
        NAMES.join(" or ")
    );
    println!("setup: {missing}");
    match install_plan(&setup::host_os(), setup::running_as_root()) {
        Plan::Manual(how) => return fail(format!("{missing}; {how}")),
        Plan::Apt => {
            setup::apt(&["update"]);
            let mut args = vec!["install", "-y", "--no-install-recommends"];
            args.extend(PACKAGES);
            setup::apt(&args);
        }
    }
    match find() {
        Some(path) => {
            println!("setup: Chromium is {}", path.display());
            Ok(path)
        }
        None => fail(format!(
            "{missing}, and installing the `{}` packages did not fix it (see the apt output \
             above)",
            PACKAGES.join(" ")
        )),
    }
}

/// The first of [`NAMES`] in a directory of `PATH`.
fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    choose(&dirs, |p| p.is_file())
}

/// The first of [`NAMES`], by preference, in the first of `dirs` that has it.
fn choose(dirs: &[PathBuf], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    NAMES
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| exists(p)))
}

/// How Chromium gets installed on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Debian/Ubuntu, root: `apt-get install chromium fonts-dejavu-core`.
    Apt,
    /// Otherwise: what to tell the user.
    Manual(String),
}

fn install_plan(os: &OsRelease, root: bool) -> Plan {
    let packages = PACKAGES.join(" ");
    match (os.is_debian_like(), root) {
        (true, true) => Plan::Apt,
        (true, false) => Plan::Manual(format!(
            "install it with:\n  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends {packages}"
        )),
        (false, _) => Plan::Manual(format!(
            "install your distribution's Chromium so that `{}` is on PATH",
            NAMES[0]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_preferred_name_on_the_path() {
        let dirs = [PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")];
        let present = |names: &'static [&'static str]| {
            move |p: &Path| names.iter().any(|n| p == Path::new(n))
        };
        assert_eq!(
            choose(&dirs, present(&["/usr/bin/chromium"])),
            Some(PathBuf::from("/usr/bin/chromium"))
        );
        assert_eq!(
            choose(
                &dirs,
                present(&["/usr/bin/chromium", "/usr/local/bin/chromium"])
            ),
            Some(PathBuf::from("/usr/local/bin/chromium"))
        );
        assert_eq!(
            choose(
                &dirs,
                present(&["/usr/local/bin/chromium-browser", "/usr/bin/chromium"])
            ),
            Some(PathBuf::from("/usr/bin/chromium"))
        );
        assert_eq!(choose(&dirs, |_| false), None);
    }

    #[test]
    fn plans() {
        let debian = setup::parse_os_release("ID=debian\nVERSION_ID=\"12\"\n");
        let fedora = setup::parse_os_release("ID=fedora\n");
        assert_eq!(install_plan(&debian, true), Plan::Apt);
        match install_plan(&debian, false) {
            Plan::Manual(how) => assert!(
                how.contains(
                    "apt-get install -y --no-install-recommends chromium fonts-dejavu-core"
                ),
                "{how}"
            ),
            p => panic!("{p:?}"),
        }
        match install_plan(&fedora, true) {
            Plan::Manual(how) => assert!(how.contains("`chromium` is on PATH"), "{how}"),
            p => panic!("{p:?}"),
        }
    }
}
