//! `--initrd DIR`: a host folder packed into a cpio (newc) archive, the initramfs Rhea mounts
//! at `/` — with `rhea_vfs::cpio::Writer`, the format's one writer, beside its reader.
//!
//! The walk is sorted (the same folder gives the same bytes), directories come before what
//! they hold, symbolic links are kept as links (their targets as written), permission bits
//! are kept, owners and times are not (root, 0). Anything else (a device, a socket, a FIFO)
//! is refused by name, as is a file of 4 GiB or more (newc's limit) and a name that is not
//! UTF-8.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rhea_vfs::cpio::Writer;

use crate::{Context, Result, fail};

/// The archive of `dir`'s contents (`dir` itself is `/`).
pub(crate) fn pack_dir(dir: &Path) -> Result<Vec<u8>> {
    let meta = fs::metadata(dir).context(|| format!("--initrd {}", dir.display()))?;
    if !meta.is_dir() {
        return fail(format!("--initrd {}: not a directory", dir.display()));
    }
    let mut w = Writer::new();
    w.dir(".", 0o755);
    add(&mut w, dir, "")?;
    let mut archive = w.finish();
    archive.extend_from_slice(&[0; PADDING]);
    Ok(archive)
}

/// The folder packed for `app` when no `--initrd` is given: the appliance's pages
/// (`apps/appliance/initramfs/`, its `www/` the pages); other apps get none.
pub(crate) fn default_dir(root: &Path, app: &str) -> Option<PathBuf> {
    (app == "appliance").then(|| root.join("apps/appliance/initramfs"))
}

/// Packs `dir` into `out` (its folder made), returning the archive's size.
pub(crate) fn pack_to(dir: &Path, out: &Path) -> Result<usize> {
    let archive = pack_dir(dir)?;
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).context(|| format!("cannot make {}", parent.display()))?;
    }
    fs::write(out, &archive).context(|| format!("cannot write {}", out.display()))?;
    Ok(archive.len())
}

/// Zeros after the trailer (padding, which readers skip): QEMU's microvm places the initrd
/// against the top of low RAM and its firmware (qboot) then takes that RAM's last pages, which
/// Rhea cuts off — one page, three with a virtio-blk disk attached (measured: the e820 map's
/// reserved tail grows from 0x7fff000 to 0x7ffd000 at 128 MiB); with 16 KiB of padding, what
/// is cut is padding.
pub(crate) const PADDING: usize = 16 << 10;

fn add(w: &mut Writer, dir: &Path, prefix: &str) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return fail(format!("{}: a name that is not UTF-8", path.display()));
        };
        let guest = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&path).context(|| format!("{}", path.display()))?;
        let perm = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&path).context(|| format!("{}", path.display()))?;
            let Some(target) = target.to_str() else {
                return fail(format!(
                    "{}: a link target that is not UTF-8",
                    path.display()
                ));
            };
            w.symlink(&guest, target);
        } else if kind.is_dir() {
            w.dir(&guest, perm);
            add(w, &path, &format!("{guest}/"))?;
        } else if kind.is_file() {
            if meta.len() >= 1 << 32 {
                return fail(format!(
                    "{}: 4 GiB or more, over cpio newc's limit",
                    path.display()
                ));
            }
            let data = fs::read(&path).context(|| format!("cannot read {}", path.display()))?;
            w.file(&guest, perm, &data);
        } else {
            return fail(format!(
                "{}: neither a file, a directory nor a link; an initramfs from a folder holds only those",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_vfs::cpio::{Reader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

    #[test]
    fn packs_a_folder_that_reads_back() {
        let dir = std::env::temp_dir().join(format!("rhea-initrd-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc/sub")).unwrap();
        fs::write(dir.join("etc/motd"), b"hi\n").unwrap();
        fs::write(dir.join("etc/sub/b"), vec![7u8; 5000]).unwrap();
        std::os::unix::fs::symlink("../motd", dir.join("etc/sub/link")).unwrap();
        let a = pack_dir(&dir).unwrap();
        let got: Vec<(String, u32, usize)> = Reader::new(&a)
            .map(|e| {
                let e = e.unwrap();
                (e.name.to_string(), e.mode & S_IFMT, e.data.len())
            })
            .collect();
        assert_eq!(
            got,
            [
                (".".to_string(), S_IFDIR, 0),
                ("etc".to_string(), S_IFDIR, 0),
                ("etc/motd".to_string(), S_IFREG, 3),
                ("etc/sub".to_string(), S_IFDIR, 0),
                ("etc/sub/b".to_string(), S_IFREG, 5000),
                ("etc/sub/link".to_string(), S_IFLNK, 7),
            ]
        );
        assert_eq!(
            pack_dir(&dir).unwrap(),
            a,
            "the same folder gives the same bytes"
        );
        assert!(a[a.len() - PADDING..].iter().all(|&b| b == 0));
        assert!(pack_dir(&dir.join("etc/motd")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
