//! Kernel modules for an initramfs: which to load and in what order.
//!
//! A module's dependencies are the `depends=` entry of its `.modinfo` section (NUL-terminated
//! `key=value` strings; what `depmod` reads). Names are the kernel's: `-` and `_` are the
//! same, written `_`. Modules the kernel has built in (listed in `modules.builtin`) are left
//! out. The guest's `/init` loads the files in the order their names sort, so users number
//! them (`01-virtio.ko`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection};

use super::read;
use crate::{Context, Error, Result};

/// A module's name from its file name (`xen-netback.ko` → `xen_netback`).
pub(crate) fn name(file: &str) -> String {
    file.trim_end_matches(".ko").replace('-', "_")
}

/// The `depends=` list of a kernel module (a relocatable ELF64); empty when it depends on
/// nothing.
pub(crate) fn depends(ko: &[u8]) -> Result<Vec<String>, String> {
    let file = ElfFile64::<Endianness>::parse(ko).map_err(|e| format!("not a module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    Ok(parse_depends(data))
}

/// The `depends=` entry of a `.modinfo` section's contents.
pub(crate) fn parse_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(|d| name(d.trim()))
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The modules to load for `roots`, every one after those it depends on (`deps`: each
/// module's dependencies), each once; those in `builtin` are skipped. `Err` names a missing
/// module (and which one needs it) or the cycle.
pub(crate) fn load_order(
    roots: &[&str],
    deps: &BTreeMap<String, Vec<String>>,
    builtin: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    struct Walk<'a> {
        deps: &'a BTreeMap<String, Vec<String>>,
        builtin: &'a BTreeSet<String>,
        path: Vec<String>,
        order: Vec<String>,
    }
    impl Walk<'_> {
        fn visit(&mut self, name: &str) -> Result<(), String> {
            if self.order.iter().any(|m| m == name) || self.builtin.contains(name) {
                return Ok(());
            }
            if self.path.iter().any(|m| m == name) {
                return Err(format!(
                    "module dependency cycle: {} -> {name}",
                    self.path.join(" -> ")
                ));
            }
            let Some(needs) = self.deps.get(name) else {
                return Err(match self.path.last() {
                    Some(by) => format!("module {name} (needed by {by}) not found"),
                    None => format!("module {name} not found"),
                });
            };
            self.path.push(name.to_string());
            for dep in needs {
                self.visit(dep)?;
            }
            self.path.pop();
            self.order.push(name.to_string());
            Ok(())
        }
    }
    let mut walk = Walk {
        deps,
        builtin,
        path: Vec::new(),
        order: Vec::new(),
    };
    for root in roots {
        walk.visit(&name(root))?;
    }
    Ok(walk.order)
}

/// Every `.ko` under `dir`, recursively.
fn ko_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            ko_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}

/// The modules `wanted` and those they depend on, in load order, as (name, file), from the
/// `.ko` files under `dir`; those its `modules.builtin` lists (if it has one) are left out.
pub(crate) fn in_order(dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let builtin: BTreeSet<String> = fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(name)
        .collect();
    let mut files = Vec::new();
    ko_files(dir, &mut files)?;
    let mut found: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    for file in files {
        let module = file
            .file_name()
            .map(|n| name(&n.to_string_lossy()))
            .unwrap_or_default();
        let deps = depends(&read(&file)?)
            .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
        found.insert(module, (file, deps));
    }
    let deps = found
        .iter()
        .map(|(module, (_, d))| (module.clone(), d.clone()))
        .collect();
    let order = load_order(wanted, &deps, &builtin).map_err(|e| {
        Error::Failed(format!(
            "{e} (among the {} modules under {}, {} built in)",
            found.len(),
            dir.display(),
            builtin.len()
        ))
    })?;
    Ok(order
        .into_iter()
        .map(|module| {
            let file = found[&module].0.clone();
            (module, file)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(m, d)| (m.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn modinfo() {
        let modinfo = b"license=GPL\0depends=virtio,virtio_ring,net-failover\0name=virtio_net\0";
        assert_eq!(
            parse_depends(modinfo),
            ["virtio", "virtio_ring", "net_failover"]
        );
        assert!(parse_depends(b"depends=\0name=virtio\0").is_empty());
        assert!(parse_depends(b"").is_empty());
        assert!(depends(b"not an ELF").is_err());
        assert_eq!(name("xen-netback.ko"), "xen_netback");
    }

    #[test]
    fn load_orders() {
        let deps = graph(&[
            ("virtio_net", &["net_failover", "virtio", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio", &[]),
            ("virtio_ring", &[]),
            (
                "virtio_pci",
                &["virtio_pci_modern_dev", "virtio", "virtio_ring"],
            ),
            ("virtio_pci_modern_dev", &[]),
        ]);
        let none = BTreeSet::new();
        assert_eq!(
            load_order(&["virtio_pci", "virtio-net"], &deps, &none).unwrap(),
            [
                "virtio_pci_modern_dev",
                "virtio",
                "virtio_ring",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        // Built-in modules are neither loaded nor looked for.
        let builtin: BTreeSet<String> = ["virtio".to_string(), "absent".to_string()].into();
        let mut with_builtin = deps.clone();
        with_builtin.remove("virtio");
        assert_eq!(
            load_order(&["virtio_pci", "absent"], &with_builtin, &builtin).unwrap(),
            ["virtio_pci_modern_dev", "virtio_ring", "virtio_pci"]
        );
    }

    #[test]
    fn missing_modules_and_cycles() {
        let none = BTreeSet::new();
        let mut broken = graph(&[
            ("virtio_net", &["net_failover"]),
            ("net_failover", &["failover"]),
        ]);
        assert_eq!(
            load_order(&["virtio_net"], &broken, &none).unwrap_err(),
            "module failover (needed by net_failover) not found"
        );
        assert_eq!(
            load_order(&["nope"], &broken, &none).unwrap_err(),
            "module nope not found"
        );
        broken.insert("failover".into(), vec!["virtio_net".into()]);
        assert_eq!(
            load_order(&["virtio_net"], &broken, &none).unwrap_err(),
            "module dependency cycle: virtio_net -> net_failover -> failover -> virtio_net"
        );
        let self_loop = graph(&[("a", &["a"])]);
        assert_eq!(
            load_order(&["a"], &self_loop, &none).unwrap_err(),
            "module dependency cycle: a -> a"
        );
    }

    #[test]
    fn modules_on_disk() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("kernel/net")).unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/drivers/xen/xenfs.ko\n").unwrap();
        // Not a module: the error names the file.
        fs::write(dir.join("kernel/net/bad.ko"), b"junk").unwrap();
        let err = in_order(&dir, &["xenfs"]).unwrap_err().to_string();
        assert!(err.contains("bad.ko: not a module"), "{err}");
        fs::remove_file(dir.join("kernel/net/bad.ko")).unwrap();
        assert!(in_order(&dir, &["xenfs"]).unwrap().is_empty());
        let err = in_order(&dir, &["xen-netback"]).unwrap_err().to_string();
        assert!(
            err.starts_with("module xen_netback not found (among the 0 modules under"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
