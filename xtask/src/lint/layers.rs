//! The layer table, and the checks `cargo xtask lint` makes against it (docs/ARCHITECTURE.md,
//! "Layers"):
//!
//! 1. every dependency edge between workspace crates points down the table — read from
//!    `cargo metadata`, so an edge added in any `Cargo.toml` (target-specific ones included) is
//!    seen; dev-dependencies (host tests only) are checked too;
//! 2. no `cfg(target_arch ...)` outside the architecture layer (`arch/`) and the boards;
//! 3. no board named outside `boards/`: neither a dependency on a `rhea-board-*` crate nor a
//!    `rhea_board` cfg (xtask, which sets the cfg, and the workspace manifest, which declares
//!    its values, are the tooling and exempt).
//!
//! 4. a crate with no `unsafe` (and no `allow(unsafe_code)`) forbids it in its root, so none
//!    can creep in unannounced.
//!
//! A crate's layer comes from its folder, so a crate placed in the wrong folder fails too.

use serde::Deserialize;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom first: (folder prefix, layer, name). The longest matching prefix wins.
/// Crates in one layer may not depend on each other unless the layer says so (`boards/`).
const LAYERS: &[(&str, u8, &str)] = &[
    ("hal", 0, "contracts"),
    ("lib/sync", 1, "the lock family"),
    ("lib/", 2, "hardware-free libraries"),
    ("arch", 3, "CPU architectures"),
    ("kernel/timers", 4, "kernel policy: time"),
    ("kernel/irq", 4, "kernel policy: interrupt dispatch"),
    ("kernel/sched", 5, "kernel policy: scheduler"),
    ("kernel/smp", 5, "kernel policy: CPUs and cross-CPU calls"),
    ("drivers", 5, "device drivers"),
    ("boards/common-", 6, "platforms shared by boards"),
    ("boards/xen-common", 6, "platforms shared by boards"),
    ("boards/select", 8, "the board selection"),
    ("boards/", 7, "boards"),
    ("runtime", 9, "the runtime"),
    ("net", 10, "the network stack"),
    ("shell", 11, "the shell"),
    ("ssh", 12, "the SSH server"),
    ("apps/", 13, "applications"),
    ("tests/", 13, "test applications"),
];

/// Crates outside the kernel's layers: the tooling.
const TOOLS: &[&str] = &["xtask", "fuzz"];

/// The layer of the crate in `dir` (relative to the workspace root, `/`-separated), or `None`
/// for the tooling. An error for a crate in no known folder.
pub(crate) fn layer_of(dir: &str) -> Result<Option<(u8, &'static str)>, String> {
    if TOOLS
        .iter()
        .any(|t| dir == *t || dir.starts_with(&format!("{t}/")))
    {
        return Ok(None);
    }
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| {
            dir == prefix.trim_end_matches('/')
                || dir.starts_with(prefix)
                    && (prefix.ends_with('/') || prefix.ends_with('-') || {
                        dir.as_bytes().get(prefix.len()) == Some(&b'/')
                    })
        })
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, layer, name)| Some((layer, name)))
        .ok_or_else(|| {
            format!("crate folder {dir} is in no layer of the table (xtask/src/lint/layers.rs)")
        })
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    /// Set for path dependencies: the workspace's own crates.
    path: Option<PathBuf>,
}

/// One workspace crate: its name, folder (relative) and the folders of the workspace crates it
/// depends on, by name.
#[derive(Debug, PartialEq)]
pub(crate) struct Crate {
    pub(crate) name: String,
    pub(crate) dir: String,
    pub(crate) deps: Vec<(String, String)>,
}

/// The workspace's crates from `cargo metadata --no-deps` output.
pub(crate) fn crates(metadata_json: &str) -> Result<Vec<Crate>, String> {
    let m: Metadata =
        serde_json::from_str(metadata_json).map_err(|e| format!("cargo metadata: {e}"))?;
    let rel = |p: &Path| -> String {
        p.strip_prefix(&m.workspace_root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    Ok(m.packages
        .iter()
        .map(|p| Crate {
            name: p.name.clone(),
            dir: rel(p.manifest_path.parent().unwrap_or(Path::new(""))),
            deps: p
                .dependencies
                .iter()
                .filter_map(|d| Some((d.name.clone(), rel(d.path.as_deref()?))))
                .collect(),
        })
        .collect())
}

/// Every edge that does not point down the table, and every crate in no layer.
pub(crate) fn check_edges(crates: &[Crate]) -> Vec<String> {
    let mut bad = Vec::new();
    for c in crates {
        let from = match layer_of(&c.dir) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        for (dep, dir) in &c.deps {
            let to = match layer_of(dir) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    bad.push(format!(
                        "{} ({}) depends on the tooling crate {dep}",
                        c.name, c.dir
                    ));
                    continue;
                }
                Err(e) => {
                    bad.push(e);
                    continue;
                }
            };
            if to.0 >= from.0 {
                bad.push(format!(
                    "{} ({}, layer {} {}) depends on {dep} ({dir}, layer {} {}): edges must point down",
                    c.name, c.dir, from.0, from.1, to.0, to.1
                ));
            }
            if !c.dir.starts_with("boards/") && dep.starts_with("rhea-board-") {
                bad.push(format!(
                    "{} ({}) names the board crate {dep}: only boards/ may (the runtime takes \
                     the board from rhea-board)",
                    c.name, c.dir
                ));
            }
        }
    }
    bad
}

/// The code lines of Rust or TOML source `text` (comment lines dropped), numbered from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let t = l.trim_start();
        let comment = t.starts_with("//")
            || t.starts_with('#') && !t.starts_with("#[") && !t.starts_with("#!");
        (!comment).then_some((i + 1, l))
    })
}

/// Whether a code line names a board: the `rhea_board` cfg (`rhea_board = "..."`) or a board
/// crate (`rhea_board_qemu_x86_64::...`). The selection crate itself (`rhea_board::`) is not a
/// board.
fn names_a_board(line: &str) -> bool {
    line.match_indices("rhea_board").any(|(i, m)| {
        let rest = line[i + m.len()..].trim_start();
        rest.starts_with('=')
            || rest.starts_with(',')
            || rest.starts_with(')')
            || rest.starts_with('_')
    })
}

/// The `rhea_arch::` paths code outside arch/ and boards/ may use: the architecture as a type
/// (used through `rhea_hal::Arch`), the lock family, the arch-neutral frame walk, and the
/// fault triggers the test apps re-export.
const ARCH_PATHS_ALLOWED: &[&str] = &["Selected", "sync", "backtrace", "testing"];

/// Whether a code line reaches into the architecture crate past its contract: a
/// `rhea_arch::name` whose `name` is not in [`ARCH_PATHS_ALLOWED`].
fn bypasses_arch_contract(line: &str) -> bool {
    line.match_indices("rhea_arch::").any(|(i, m)| {
        let rest = &line[i + m.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| *c == '_' || c.is_alphanumeric())
            .collect();
        !ARCH_PATHS_ALLOWED.contains(&name.as_str())
    })
}

/// What file `rel` (a `.rs` or `.toml` file of crate folder `dir`) may not contain, given its
/// text: `cfg(target_arch` outside the arch layer and boards, `rhea_board` outside boards, and
/// `rhea_arch::` paths outside the contract (see [`ARCH_PATHS_ALLOWED`]) outside arch/ and
/// boards/.
pub(crate) fn check_source(dir: &str, rel: &str, text: &str) -> Vec<String> {
    let hw_allowed = dir == "arch" || dir.starts_with("boards/");
    let mut bad = Vec::new();
    for (n, line) in code_lines(text) {
        if !hw_allowed && line.contains("target_arch") {
            bad.push(format!(
                "{rel}:{n}: `target_arch` outside arch/ and boards/ (put the difference behind \
                 the arch or board contract)"
            ));
        }
        if !hw_allowed && bypasses_arch_contract(line) {
            bad.push(format!(
                "{rel}:{n}: `rhea_arch::` past the architecture contract (use \
                 `rhea_arch::Selected` through `rhea_hal::Arch`; allowed paths: {})",
                ARCH_PATHS_ALLOWED.join(", ")
            ));
        }
        if !dir.starts_with("boards/") && names_a_board(line) {
            bad.push(format!(
                "{rel}:{n}: a board named outside boards/ (the `rhea_board` cfg or a board crate; \
                 use `rhea_kernel`, or take the board from rhea-board)"
            ));
        }
    }
    bad
}

/// Whether a code line uses `unsafe` (a block, fn, impl or attribute) or allows it; the lint
/// names (`unsafe_code`, `unsafe_op_in_unsafe_fn`) alone do not count.
fn uses_unsafe(line: &str) -> bool {
    line.contains("allow(unsafe_code")
        || line.match_indices("unsafe").any(|(i, m)| {
            let next = line[i + m.len()..].chars().next();
            let prev = line[..i].chars().next_back();
            !matches!(next, Some(c) if c == '_' || c.is_alphanumeric())
                && !matches!(prev, Some(c) if c == '_' || c.is_alphanumeric())
        })
}

/// The finding for a crate whose sources (`files`: path, text) have no `unsafe` but whose root
/// (`root_text`) does not forbid it.
pub(crate) fn check_forbid(
    name: &str,
    files: &[(String, String)],
    root_text: &str,
) -> Option<String> {
    let any = files
        .iter()
        .filter(|(path, _)| path.ends_with(".rs"))
        .any(|(_, text)| code_lines(text).any(|(_, l)| uses_unsafe(l)));
    (!any && !root_text.contains("forbid(unsafe_code)"))
        .then(|| format!("{name} has no `unsafe`: its root should say `#![forbid(unsafe_code)]`"))
}

/// Runs every check on the workspace at `root`; returns the findings (empty: clean).
pub(crate) fn check(root: &Path, metadata_json: &str) -> Result<Vec<String>, String> {
    let crates = crates(metadata_json)?;
    let mut bad = check_edges(&crates);
    for c in &crates {
        if matches!(layer_of(&c.dir), Ok(None)) {
            continue;
        }
        let mut files = Vec::new();
        collect(&root.join(&c.dir), &mut files);
        let mut texts = Vec::new();
        for f in files {
            let Ok(text) = fs::read_to_string(&f) else {
                continue;
            };
            let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            bad.extend(check_source(&c.dir, &rel, &text));
            texts.push((rel, text));
        }
        // The crate's own sources (not its tests or examples) decide; the root is lib.rs or
        // main.rs.
        let src = format!("{}/src/", c.dir);
        let own: Vec<(String, String)> = texts
            .into_iter()
            .filter(|(p, _)| p.starts_with(&src))
            .collect();
        let root_text = own
            .iter()
            .find(|(p, _)| *p == format!("{src}lib.rs") || *p == format!("{src}main.rs"))
            .map_or("", |(_, t)| t.as_str());
        bad.extend(check_forbid(&c.name, &own, root_text));
    }
    Ok(bad)
}

/// The `.rs` and `Cargo.toml` files below `dir`, not descending into `target`.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                collect(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs")
            || p.file_name().is_some_and(|n| n == "Cargo.toml")
        {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn krate(name: &str, dir: &str, deps: &[(&str, &str)]) -> Crate {
        Crate {
            name: name.into(),
            dir: dir.into(),
            deps: deps.iter().map(|&(n, d)| (n.into(), d.into())).collect(),
        }
    }

    #[test]
    fn folders_map_to_layers() {
        let layer = |d: &str| layer_of(d).unwrap().unwrap().0;
        assert_eq!(layer("hal"), 0);
        assert_eq!(layer("lib/sync"), 1);
        assert_eq!(layer("lib/mm"), 2);
        assert_eq!(layer("arch"), 3);
        assert_eq!(layer("kernel/irq"), 4);
        assert_eq!(layer("kernel/sched"), 5);
        assert_eq!(layer("boards/common-x86"), 6);
        assert_eq!(layer("boards/xen-common"), 6);
        assert_eq!(layer("boards/qemu-x86_64"), 7);
        assert_eq!(layer("boards/select"), 8);
        assert_eq!(layer("runtime"), 9);
        assert_eq!(layer("net"), 10);
        assert_eq!(layer("apps/hello"), 13);
        assert_eq!(layer_of("xtask").unwrap(), None);
        // A prefix is a whole folder name: `hallway` is not `hal`, `archive` not `arch`.
        assert!(layer_of("hallway").is_err());
        assert!(layer_of("archive").is_err());
        assert!(layer_of("kernel/new").is_err());
    }

    #[test]
    fn upward_and_sideways_edges_are_refused() {
        let ok = [
            krate("rhea", "runtime", &[("rhea-board", "boards/select")]),
            krate(
                "rhea-board",
                "boards/select",
                &[("b", "boards/qemu-x86_64")],
            ),
            krate("b", "boards/qemu-x86_64", &[("c", "boards/common-x86")]),
            krate("c", "boards/common-x86", &[("rhea-irq", "kernel/irq")]),
        ];
        assert_eq!(check_edges(&ok), Vec::<String>::new());
        let up = [krate("rhea-irq", "kernel/irq", &[("rhea", "runtime")])];
        assert_eq!(check_edges(&up).len(), 1);
        // A board on another board (not a shared platform crate) is sideways: refused.
        let sideways = [krate(
            "x",
            "boards/xen-x86_64",
            &[("q", "boards/qemu-x86_64")],
        )];
        assert_eq!(check_edges(&sideways).len(), 1);
        let same = [krate(
            "rhea-irq",
            "kernel/irq",
            &[("rhea-timers", "kernel/timers")],
        )];
        assert_eq!(check_edges(&same).len(), 1);
    }

    #[test]
    fn a_board_named_outside_boards_is_refused() {
        let named = [krate(
            "rhea",
            "runtime",
            &[("rhea-board-qemu-x86_64", "boards/qemu-x86_64")],
        )];
        let bad = check_edges(&named);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("names the board crate"));
        let bad = check_source(
            "net",
            "net/src/lib.rs",
            "#[cfg(rhea_board = \"rpi4\")]\nmod x;\n",
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(check_source("boards/rpi4", "b.rs", "#[cfg(rhea_board = \"rpi4\")]").is_empty());
        // Comments may say the name; the selection crate is not a board.
        assert!(check_source("net", "n.rs", "//! no `rhea_board` here\n").is_empty());
        assert!(check_source("runtime", "b.rs", "pub(crate) use rhea_board as board;").is_empty());
        assert_eq!(
            check_source("net", "n.rs", "use rhea_board_rpi4::X;\n").len(),
            1
        );
        assert_eq!(
            check_source("net", "n.rs", "#[cfg(any(rhea_board, x))]\n").len(),
            1
        );
    }

    #[test]
    fn the_runtime_reaches_the_architecture_only_through_its_contract() {
        let ok = "type A = rhea_arch::Selected;\npub use rhea_arch::sync::SpinLock;\n\
                  rhea_arch::backtrace(fp, r, f);\npub use rhea_arch::testing::x;\n";
        assert!(check_source("runtime", "r.rs", ok).is_empty());
        let bad = check_source("runtime", "r.rs", "let c = rhea_arch::cpu_id();\n");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("past the architecture contract"), "{bad:?}");
        // `Selected` is a whole name, not a prefix.
        assert_eq!(
            check_source("runtime", "r.rs", "rhea_arch::SelectedX::f()").len(),
            1
        );
        // Boards may know their architecture; comments may name anything.
        assert!(check_source("boards/rpi4", "b.rs", "rhea_arch::psci_call(..)").is_empty());
        assert!(check_source("runtime", "r.rs", "// rhea_arch::cpu_id()\n").is_empty());
    }

    #[test]
    fn target_arch_only_in_arch_and_boards() {
        let code = "#[cfg(target_arch = \"x86_64\")]\nfn f() {}\n";
        assert_eq!(check_source("kernel/sched", "s.rs", code).len(), 1);
        assert_eq!(
            check_source(
                "runtime",
                "Cargo.toml",
                "[target.'cfg(target_arch = \"x86_64\")'.dependencies]\n"
            )
            .len(),
            1
        );
        assert!(check_source("arch", "a.rs", code).is_empty());
        assert!(check_source("boards/common-arm", "b.rs", code).is_empty());
        assert!(check_source("kernel/sched", "s.rs", "//! no cfg(target_arch) here\n").is_empty());
    }

    #[test]
    fn a_crate_without_unsafe_must_forbid_it() {
        let safe = vec![(
            "a/src/lib.rs".to_string(),
            "//! no unsafe here\nfn f() {}\n".to_string(),
        )];
        assert!(check_forbid("a", &safe, &safe[0].1).is_some());
        assert!(check_forbid("a", &safe, "#![forbid(unsafe_code)]").is_none());
        let with = vec![(
            "a/src/x.rs".to_string(),
            "fn f() { unsafe { g() } }\n".to_string(),
        )];
        assert!(check_forbid("a", &with, "").is_none());
        let allowed = vec![(
            "a/src/m.rs".to_string(),
            "#![allow(unsafe_code, reason = \"asm\")]\n".to_string(),
        )];
        assert!(check_forbid("a", &allowed, "#![deny(unsafe_code)]").is_none());
        // Lint names and words that merely contain it are not `unsafe`.
        let names = vec![(
            "a/src/lib.rs".to_string(),
            "#![deny(unsafe_code)]\nlet unsafe_count = 1;\n".to_string(),
        )];
        assert!(check_forbid("a", &names, &names[0].1).is_some());
    }

    #[test]
    fn metadata_is_read() {
        let json = r#"{"workspace_root":"/ws","packages":[
            {"name":"rhea-irq","manifest_path":"/ws/kernel/irq/Cargo.toml","dependencies":[
                {"name":"rhea-hal","path":"/ws/hal"},{"name":"spin"}]}]}"#;
        assert_eq!(
            crates(json).unwrap(),
            vec![krate("rhea-irq", "kernel/irq", &[("rhea-hal", "hal")])]
        );
        assert!(crates("{").is_err());
    }
}
