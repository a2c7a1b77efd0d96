//! Debian-based guests and their initramfs images, built the same way for every user: the
//! Linux baseline guest of the benchmarks (`linux_guest.rs`), Xen's Linux dom0 and its Linux
//! domU (`xen_dom0.rs`) and the Xen hypervisors of the Xen boards (`xen/mod.rs`).
//!
//! * [`debian`]: one cache of `.deb` files per Debian architecture,
//!   `target/debian/<arch>/debs/` (`amd64` through the host's `apt-get download`, `arm64`
//!   through the private arm64 apt state of `firmware.rs`), shared by all of them: a package
//!   any of them fetched is never fetched again; the current kernel package of a flavour;
//!   unpacking with `dpkg-deb`, whole or only some members.
//! * [`modules`]: kernel modules in load order, from the `depends=` of each module's
//!   `.modinfo` (what `depmod` reads), with a clear error for a missing module or a cycle.
//! * [`elf`]: the dynamic loader and libraries a binary needs (`PT_INTERP`, `DT_NEEDED`,
//!   recursively), found in unpacked packages, never on the host.
//! * [`cpio`]: the initramfs, a cpio "newc" archive, and [`cpio::Tree`], the files that go
//!   into one with their parent directories.
//!
//! What a guest holds (which packages, which programs, its `/init`) stays with its user.

pub(crate) mod cpio;
pub(crate) mod debian;
pub(crate) mod elf;
pub(crate) mod modules;

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Context, Result};

/// `target/` of this workspace.
pub(crate) fn target_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).join("target")
}

/// Creates `path` and its parents.
pub(crate) fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("cannot create {}", path.display()))
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).context(|| format!("cannot read {}", path.display()))
}

/// Writes `bytes` to `path` unless it already holds them (so its timestamp means something).
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
