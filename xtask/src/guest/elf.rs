//! The dynamic loader and libraries a guest binary needs: its `PT_INTERP` path and
//! `DT_NEEDED` names, then theirs, recursively, found in unpacked Debian packages (never on
//! the host, whose libraries may be of another architecture or version).
//!
//! In the guest every library goes into `lib/<triple>/` (a directory Debian's dynamic loader
//! searches without an `ld.so.cache`), the loader too; when `PT_INTERP` names another path
//! (x86_64's `/lib64/ld-linux-x86-64.so.2`), a symbolic link there points to it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, elf};

use super::cpio::Tree;
use super::read;
use crate::{Error, Result, fail};

/// The `PT_INTERP` path and the `DT_NEEDED` names of a 64-bit ELF (none for a static one).
/// `Err` for anything that is not a well-formed ELF64, a truncated one included.
pub(crate) fn needs(bytes: &[u8]) -> Result<(Option<String>, Vec<String>), String> {
    let file =
        ElfFile64::<Endianness>::parse(bytes).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = file.elf_header().endian().map_err(|e| e.to_string())?;
    let mut interp = None;
    for ph in file.elf_program_headers() {
        if let Some(path) = ph.interpreter(endian, bytes).map_err(|e| e.to_string())? {
            interp = Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    let mut needed = Vec::new();
    let sections = file.elf_section_table();
    if let Some((dyns, link)) = sections.dynamic(endian, bytes).map_err(|e| e.to_string())? {
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| e.to_string())?;
        for d in dyns {
            if d.tag32(endian) == Some(elf::DT_NEEDED) {
                let name = d.string(endian, strings).map_err(|e| e.to_string())?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok((interp, needed))
}

/// Where libraries are looked for in an unpacked package, for the multiarch `triple`.
pub(crate) fn lib_dirs(triple: &str) -> [String; 6] {
    [
        format!("lib/{triple}"),
        format!("usr/lib/{triple}"),
        "lib64".to_string(),
        "usr/lib64".to_string(),
        "lib".to_string(),
        "usr/lib".to_string(),
    ]
}

/// Drops `.` and resolves `..` lexically (never above the start).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The regular file that `path` (absolute in the guest's view) names inside the unpacked
/// tree `root`, following symlinks, those with absolute targets inside `root` too.
pub(crate) fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut rel = normalize(Path::new(path));
    for _ in 0..16 {
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).ok()?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&full).ok()?;
            rel = if target.is_absolute() {
                normalize(&target)
            } else {
                normalize(&rel.parent().unwrap_or(Path::new("")).join(target))
            };
        } else if meta.is_file() {
            return Some(full);
        } else {
            return None;
        }
    }
    None
}

/// Adds to `tree` the dynamic loader and every library `binaries` need, directly or not,
/// and the libraries named in `also` (loaded with `dlopen`, so in no `DT_NEEDED`), all found
/// in the unpacked trees `roots` under [`lib_dirs`] of `triple`.
pub(crate) fn add_libraries(
    tree: &mut Tree,
    binaries: &[PathBuf],
    roots: &[PathBuf],
    triple: &str,
    also: &[&str],
) -> Result<()> {
    let guest_dir = format!("lib/{triple}");
    let dirs = lib_dirs(triple);
    let find = |name: &str| {
        roots.iter().find_map(|r| {
            dirs.iter()
                .find_map(|d| resolve_in(r, &format!("/{d}/{name}")))
        })
    };
    let missing = |file: &Path, what: String| {
        fail(format!(
            "{}: {what} not found in the unpacked packages {} (add the package that has it)",
            file.display(),
            describe_roots(roots)
        ))
    };
    let mut seen = BTreeSet::new();
    let mut queue: Vec<(PathBuf, Vec<String>)> =
        binaries.iter().map(|b| (b.clone(), Vec::new())).collect();
    if let Some(first) = queue.first_mut() {
        first.1 = also.iter().map(|s| s.to_string()).collect();
    }
    while let Some((file, extra)) = queue.pop() {
        let (interp, needed) =
            needs(&read(&file)?).map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        if let Some(interp) = interp {
            let name = Path::new(&interp)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let guest = format!("{guest_dir}/{name}");
            if seen.insert(guest.clone()) {
                let Some(host) = roots.iter().find_map(|r| resolve_in(r, &interp)) else {
                    return missing(&file, format!("dynamic loader {interp}"));
                };
                tree.files.insert(guest.clone(), host);
            }
            let link = normalize(Path::new(&interp)).to_string_lossy().into_owned();
            if link != guest {
                tree.links.insert(link, format!("/{guest}"));
            }
        }
        for name in needed.into_iter().chain(extra) {
            let guest = format!("{guest_dir}/{name}");
            if !seen.insert(guest.clone()) {
                continue;
            }
            let Some(host) = find(&name) else {
                return missing(&file, format!("library {name}"));
            };
            queue.push((host.clone(), Vec::new()));
            tree.files.insert(guest, host);
        }
    }
    Ok(())
}

fn describe_roots(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .filter_map(|r| r.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_root() {
        assert_eq!(
            normalize(Path::new("/lib/../lib64/./x")),
            Path::new("lib64/x")
        );
        assert_eq!(normalize(Path::new("../../a")), Path::new("a"));
        let root = std::env::temp_dir().join(format!("xtask-elf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/ld.so"), b"ld").unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/libz.so.1.2"), b"z").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            // An absolute target must stay inside the root, not reach the host's /lib.
            symlink("/lib/x86_64-linux-gnu/ld.so", root.join("lib64/ld.so")).unwrap();
            symlink("libz.so.1.2", root.join("lib/x86_64-linux-gnu/libz.so.1")).unwrap();
            assert_eq!(
                resolve_in(&root, "/lib64/ld.so"),
                Some(root.join("lib/x86_64-linux-gnu/ld.so"))
            );
            assert_eq!(
                resolve_in(&root, "/lib/x86_64-linux-gnu/libz.so.1"),
                Some(root.join("lib/x86_64-linux-gnu/libz.so.1.2"))
            );
            symlink("loop", root.join("loop")).unwrap();
            assert_eq!(resolve_in(&root, "/loop"), None);
        }
        assert_eq!(resolve_in(&root, "/lib64"), None);
        assert_eq!(resolve_in(&root, "/missing"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn elf_needs_of_bad_files() {
        assert!(needs(b"not an ELF").is_err());
        assert!(needs(b"").is_err());
        // The header of an ELF64 (little-endian, x86_64) with nothing after it.
        let mut header = vec![0u8; 64];
        header[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        header[18] = 62;
        // Program headers said to be at 64, 10 of them, that are not there.
        header[32] = 64;
        header[54] = 56;
        header[56] = 10;
        assert!(needs(&header).is_err());
    }

    /// The test binary itself is a dynamically linked ELF on GNU/Linux hosts.
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    #[test]
    fn elf_needs_of_this_binary() {
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let (interp, needed) = needs(&exe).unwrap();
        assert!(interp.is_some_and(|i| i.contains("ld-linux")));
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
        // Cut anywhere, it is an error, never a panic.
        for len in [16, 63, 64, 200, exe.len() / 2, exe.len() - 1] {
            let _ = needs(&exe[..len]);
        }
        assert!(needs(&exe[..exe.len() / 2]).is_err());
    }

    /// The closure of this binary, found in the host's own tree as if it were unpacked.
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    #[test]
    fn library_closure() {
        let exe = std::env::current_exe().unwrap();
        let mut tree = Tree::default();
        let host = [PathBuf::from("/")];
        add_libraries(
            &mut tree,
            std::slice::from_ref(&exe),
            &host,
            "x86_64-linux-gnu",
            &[],
        )
        .unwrap();
        let names: Vec<&str> = tree.files.keys().map(String::as_str).collect();
        assert!(
            names.contains(&"lib/x86_64-linux-gnu/libc.so.6"),
            "{names:?}"
        );
        assert!(
            names.contains(&"lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            "{names:?}"
        );
        assert_eq!(
            tree.links
                .get("lib64/ld-linux-x86-64.so.2")
                .map(String::as_str),
            Some("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        // Nothing found in an empty tree: the loader is named.
        let empty = std::env::temp_dir().join(format!("xtask-elf-empty-{}", std::process::id()));
        fs::create_dir_all(&empty).unwrap();
        let err = add_libraries(
            &mut Tree::default(),
            &[exe],
            std::slice::from_ref(&empty),
            "x86_64-linux-gnu",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dynamic loader") && err.contains("not found"),
            "{err}"
        );
        fs::remove_dir_all(&empty).unwrap();
    }
}
