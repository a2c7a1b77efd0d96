//! App discovery: every `apps/*/` and `tests/*/` directory holding a `Cargo.toml`.
//!
//! The app name is the directory name; the package name comes from `[package] name`. What a
//! boot of the app must look like comes from `[package.metadata.rhea]`:
//!
//! ```toml
//! [package.metadata.rhea]
//! expect = "success"                 # or "failure": how QEMU must end
//! console = ["fragment 1", "frag 2"] # must appear in the console output, in this order
//! timeout-secs = 60                  # optional, default 60
//! cmdline = "key=value ..."          # optional: kernel command line of test boots (-append)
//! stdin = "text\n"                   # optional: written to the guest's serial input ...
//! stdin-after = "marker"             # ... once console output contains this (default: at once)
//! test = false                       # optional, default true: `cargo xtask test` skips it
//! boards = ["qemu-x86_64"]           # optional: boot only on these boards (default: all)
//! smp = [2, 4]                       # optional: boot once per CPU count (QEMU -smp N, LinuxU
//!                                    # rhea.cpus=N) instead of once with --smp (default 1)
//! sim-seeds = [1, 2, 3]              # optional: on LinuxU's `sim` machine, boot once per
//!                                    # seed (rhea.seed=N; default: seed 1 only), one vCPU
//! net = "user"                       # optional: a virtio-net NIC on QEMU user networking
//!                                    # (q35: virtio-net-pci, microvm: virtio-net-device)
//!
//! [package.metadata.rhea.arch.aarch64]
//! console = ["data abort"]           # optional: replaces `console` on this architecture
//! ```
//!
//! Apps under `apps/` without metadata are expected to return from main (success).
//! `cargo xtask test` boots with `rhea.checker=1`, then `cmdline`, then `--append` on the
//! kernel command line. `stdin` is written as given (TOML has already decoded escapes such
//! as `\n`); without it QEMU's stdin is /dev/null. `stdin-after` without `stdin` is an
//! error. `test = false` is for benchmarks; `--app` naming such an app still boots it.
//!
//! The manifest is read with serde into [`Rhea`]: a key under `[package.metadata.rhea]` (or
//! `[...rhea.arch.<arch>]`) that is not listed above is an error, and so is a value of the
//! wrong type or range; the error names the line and what was wanted. The rest of
//! `Cargo.toml`, other tools' `[package.metadata.*]` included, is Cargo's and is ignored.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::qemu::StdinFeed;
use crate::{Context, Result, fail, usage};

/// The app used when `--app` is not given.
pub(crate) const DEFAULT_APP: &str = "appliance";

/// The boot timeout when `timeout-secs` is not given.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The directories searched for apps, relative to the workspace root.
const APP_DIRS: &[&str] = &["apps", "tests"];

/// How a boot must end (`expect = "success"` or `"failure"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum Expect {
    /// The kernel reports success through the debug-exit port.
    Success,
    /// The kernel reports failure through the debug-exit port.
    Failure,
}

/// The network a QEMU boot of the app gets (`net = "user"` or `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum Net {
    /// No NIC (the default).
    None,
    /// A virtio-net NIC on QEMU's user networking (slirp: gateway 10.0.2.2, guest 10.0.2.15).
    User,
}

impl TryFrom<String> for Expect {
    type Error = String;

    fn try_from(value: String) -> Result<Expect, String> {
        match value.as_str() {
            "success" => Ok(Expect::Success),
            "failure" => Ok(Expect::Failure),
            _ => Err(format!(
                "metadata.rhea.expect must be \"success\" or \"failure\", got {value:?}"
            )),
        }
    }
}

impl TryFrom<String> for Net {
    type Error = String;

    fn try_from(value: String) -> Result<Net, String> {
        match value.as_str() {
            "user" => Ok(Net::User),
            "none" => Ok(Net::None),
            _ => Err(format!(
                "metadata.rhea.net must be \"user\" or \"none\", got {value:?}"
            )),
        }
    }
}

/// The `net` key of the app whose image is `image` (`target/images/<board>/<app>.<ext>`, as
/// `image.rs` names them): QEMU's command line names its app only through the image. An image
/// that is not an app's (or an unreadable manifest) has no network.
pub(crate) fn net_of_image(image: &Path) -> Net {
    let Some(name) = image
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
    else {
        return Net::None;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    APP_DIRS
        .iter()
        .map(|d| root.join(d).join(name).join("Cargo.toml"))
        .find(|p| p.is_file())
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|text| parse_manifest(&text).ok())
        .map_or(Net::None, |m| m.net)
}

/// One bootable app (or test app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct App {
    /// The directory name, used on the command line.
    pub(crate) name: String,
    /// The app's directory.
    pub(crate) dir: PathBuf,
    /// What its manifest says; an `App` reads as its manifest (`app.expect`, `app.console`,
    /// ...) through `Deref`.
    pub(crate) manifest: Manifest,
}

impl std::ops::Deref for App {
    type Target = Manifest;

    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

impl App {
    /// The app in directory `dir`, named `name`, with what its manifest says.
    pub(crate) fn new(name: String, dir: PathBuf, manifest: Manifest) -> App {
        App {
            name,
            dir,
            manifest,
        }
    }

    /// Whether `cargo xtask test` boots it on `board`.
    pub(crate) fn runs_on(&self, board: &str) -> bool {
        self.boards.is_empty() || self.boards.iter().any(|b| b == board)
    }

    /// The console fragments a boot on `arch` (`x86_64`, `aarch64`) must show.
    pub(crate) fn console_for(&self, arch: &str) -> &[String] {
        self.arch_console
            .iter()
            .find(|(a, _)| a == arch)
            .map_or(&self.console[..], |(_, c)| &c[..])
    }
}

/// What a manifest says, before the directory is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The Cargo package name.
    pub(crate) package: String,
    pub(crate) expect: Expect,
    /// Console fragments that must appear, in order.
    pub(crate) console: Vec<String>,
    pub(crate) timeout: Duration,
    /// Extra kernel command line of test boots (may be empty).
    pub(crate) cmdline: String,
    /// What to write to the guest's serial input during test boots.
    pub(crate) stdin: Option<StdinFeed>,
    /// Whether `cargo xtask test` boots it (without `--app`).
    pub(crate) test: bool,
    /// Where `cargo xtask test` skips this app (`skip-on`): `board/machine` (every accelerator
    /// there) or `board/machine/label` (`tcg`, `kvm`, `nested-kvm`: one of them).
    pub(crate) skip_on: Vec<String>,
    /// SIGIO signals a second sent to the process while it runs (process boards only).
    pub(crate) signal_storm: Option<u32>,
    /// The boards `cargo xtask test` boots it on (`boards`); empty: every board.
    pub(crate) boards: Vec<String>,
    /// The CPU counts `cargo xtask test` boots it with (`smp`); empty: `--smp` only.
    pub(crate) smp: Vec<u32>,
    /// The seeds its simulation-mode boots use (`sim-seeds`); empty: seed 1 only.
    pub(crate) sim_seeds: Vec<u64>,
    /// Console fragments replacing `console` on one architecture (`[....rhea.arch.<arch>]`),
    /// for reports whose wording is the architecture's (exception names, register names).
    pub(crate) arch_console: Vec<(String, Vec<String>)>,
    /// The network QEMU boots of it get (`net`).
    pub(crate) net: Net,
    /// Whether it exercises only kernel code that runs the same however the machine came up
    /// (`kernel-only = true`: scheduler, synchronisation, threads, fault reports) — so a board
    /// that differs from another only in its firmware and boot path
    /// ([`Board::kernel_only_apps_on`](crate::boards::Board)) leaves it to that one.
    pub(crate) kernel_only: bool,
}

/// `Cargo.toml`, as far as an app's manifest matters: other tables (`[dependencies]`, ...)
/// are ignored.
#[derive(Deserialize)]
struct CargoToml {
    #[serde(default)]
    package: Option<Package>,
}

/// `[package]`: its name and `metadata` (its other keys are Cargo's business).
#[derive(Deserialize)]
#[serde(expecting = "a [package] table")]
struct Package {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

/// `[package.metadata]`: only `rhea` is read. Cargo leaves metadata free-form, so other tools'
/// tables, and a `metadata` that is not a table at all, are ignored.
#[derive(Default)]
struct Metadata {
    rhea: Option<Rhea>,
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
        d.deserialize_any(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = Metadata;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("package metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut rhea = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "rhea" {
                rhea = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Metadata { rhea })
    }

    // Not a table: no Rhea metadata.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Metadata, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Metadata::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Metadata, E> {
        Ok(Metadata::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Metadata, E> {
        Ok(Metadata::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Metadata, E> {
        Ok(Metadata::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Metadata, E> {
        Ok(Metadata::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Metadata, E> {
        Ok(Metadata::default())
    }
}

/// `[package.metadata.rhea]`: the keys of the module documentation, each optional; any other
/// key is an error. Values are checked as they are read, so an error points at the value.
#[derive(Deserialize, Default)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a [package.metadata.rhea] table"
)]
struct Rhea {
    expect: Option<Expect>,
    console: Option<Vec<String>>,
    #[serde(default, deserialize_with = "timeout_secs")]
    timeout_secs: Option<Duration>,
    #[serde(default, deserialize_with = "cmdline")]
    cmdline: Option<String>,
    stdin: Option<String>,
    #[serde(default, deserialize_with = "stdin_after")]
    stdin_after: Option<String>,
    test: Option<bool>,
    #[serde(default, deserialize_with = "skip_on")]
    skip_on: Option<Vec<String>>,
    #[serde(default, deserialize_with = "signal_storm")]
    signal_storm: Option<u32>,
    #[serde(default, deserialize_with = "board_names")]
    boards: Option<Vec<String>>,
    #[serde(default, deserialize_with = "cpu_counts")]
    smp: Option<Vec<u32>>,
    #[serde(default, deserialize_with = "sim_seeds")]
    sim_seeds: Option<Vec<u64>>,
    net: Option<Net>,
    kernel_only: Option<bool>,
    arch: Option<BTreeMap<String, ArchRhea>>,
}

/// `[package.metadata.rhea.arch.<arch>]`: only `console`, which it requires.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchRhea {
    console: Vec<String>,
}

/// Reads a `T` and checks it with `check`, whose error becomes the deserializer's (so it is
/// reported with the value's position).
fn checked<'de, D, T, U>(
    d: D,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<Option<U>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    check(T::deserialize(d)?)
        .map(Some)
        .map_err(de::Error::custom)
}

fn timeout_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    checked(d, |n: u64| match n {
        0 => Err("metadata.rhea.timeout-secs must be a positive integer, got 0".to_string()),
        n => Ok(Duration::from_secs(n)),
    })
}

fn cmdline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, |line: String| {
        if line.contains(['\n', '\r', '\0']) {
            Err(format!(
                "metadata.rhea.cmdline must be one line without NUL, got {line:?}"
            ))
        } else {
            Ok(line.trim().to_string())
        }
    })
}

fn stdin_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, |marker: String| {
        if marker.is_empty() {
            Err("metadata.rhea.stdin-after must not be empty".to_string())
        } else {
            Ok(marker)
        }
    })
}

fn skip_on<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    checked(d, |list: Vec<String>| {
        match list.iter().find(|s| !s.contains('/')) {
            Some(bad) => Err(format!(
                "metadata.rhea.skip-on must be an array of \"board/machine\" or \"board/machine/accel\" strings, got {bad:?}"
            )),
            None => Ok(list),
        }
    })
}

fn signal_storm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    checked(d, |rate: u32| match rate {
        0 => Err(
            "metadata.rhea.signal-storm must be a positive number of signals a second, got 0"
                .to_string(),
        ),
        rate => Ok(rate),
    })
}

fn board_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    checked(d, |list: Vec<String>| {
        if list.iter().any(String::is_empty) {
            Err(
                "metadata.rhea.boards must be an array of board names, got an empty name"
                    .to_string(),
            )
        } else {
            Ok(list)
        }
    })
}

fn cpu_counts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
    checked(d, |list: Vec<u32>| {
        if list.is_empty() || list.iter().any(|n| !(1..=64).contains(n)) {
            Err(format!(
                "metadata.rhea.smp must be a non-empty array of CPU counts from 1 to 64, got {list:?}"
            ))
        } else {
            Ok(list)
        }
    })
}

fn sim_seeds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    checked(d, |list: Vec<u64>| {
        if list.is_empty() {
            Err("metadata.rhea.sim-seeds must be a non-empty array of non-negative integers, got []".to_string())
        } else {
            Ok(list)
        }
    })
}

/// Parses an app's `Cargo.toml` text. An error names what is wrong and, for a bad value, its
/// line.
pub(crate) fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let cargo: CargoToml = toml::from_str(text)
        .map_err(|e| format!("invalid manifest: {}", e.to_string().trim_end()))?;
    let package = cargo.package.ok_or("no [package] table")?;
    let name = package.name.ok_or("no string `name` in [package]")?;
    let rhea = package.metadata.rhea.unwrap_or_default();
    let stdin = match (rhea.stdin, rhea.stdin_after) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err("metadata.rhea.stdin-after is given without stdin".to_string());
        }
        (Some(text), after) => Some(StdinFeed { text, after }),
    };
    Ok(Manifest {
        package: name,
        expect: rhea.expect.unwrap_or(Expect::Success),
        console: rhea.console.unwrap_or_default(),
        timeout: rhea.timeout_secs.unwrap_or(DEFAULT_TIMEOUT),
        cmdline: rhea.cmdline.unwrap_or_default(),
        stdin,
        test: rhea.test.unwrap_or(true),
        skip_on: rhea.skip_on.unwrap_or_default(),
        signal_storm: rhea.signal_storm,
        boards: rhea.boards.unwrap_or_default(),
        smp: rhea.smp.unwrap_or_default(),
        sim_seeds: rhea.sim_seeds.unwrap_or_default(),
        arch_console: rhea
            .arch
            .unwrap_or_default()
            .into_iter()
            .map(|(arch, a)| (arch, a.console))
            .collect(),
        net: rhea.net.unwrap_or(Net::None),
        kernel_only: rhea.kernel_only.unwrap_or(false),
    })
}

/// Finds every app under `apps/` and `tests/`, sorted by name (apps first, then tests).
pub(crate) fn discover(root: &Path) -> Result<Vec<App>> {
    let mut apps: Vec<App> = Vec::new();
    for parent in APP_DIRS {
        let dir = root.join(parent);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue; // a missing apps/ or tests/ directory just has no apps
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.context(|| format!("cannot list {}", dir.display()))?;
            let manifest_path = entry.path().join("Cargo.toml");
            if !manifest_path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = fs::read_to_string(&manifest_path)
                .context(|| format!("cannot read {}", manifest_path.display()))?;
            let manifest = parse_manifest(&text)
                .map_err(|e| crate::Error::Failed(format!("{}: {e}", manifest_path.display())))?;
            found.push(App::new(name, entry.path(), manifest));
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        for app in found {
            if let Some(other) = apps.iter().find(|a| a.name == app.name) {
                return fail(format!(
                    "two apps are named `{}`: {} and {}; rename one directory",
                    app.name,
                    other.dir.display(),
                    app.dir.display()
                ));
            }
            apps.push(app);
        }
    }
    Ok(apps)
}

/// Looks an app up by name; the error lists the valid ones.
pub(crate) fn find<'a>(apps: &'a [App], name: &str) -> Result<&'a App> {
    match apps.iter().find(|a| a.name == name) {
        Some(app) => Ok(app),
        None if apps.is_empty() => usage(format!(
            "unknown app `{name}`: no apps found (directories apps/*/ and tests/*/ with a Cargo.toml)"
        )),
        None => usage(format!(
            "unknown app `{name}`; valid apps: {}",
            apps.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_key() {
        let base = "[package]\nname = \"t\"\n[package.metadata.rhea]\n";
        assert_eq!(parse_manifest(base).unwrap().net, Net::None);
        let m = parse_manifest(&format!("{base}net = \"user\"\n")).unwrap();
        assert_eq!(m.net, Net::User);
        let m = parse_manifest(&format!("{base}net = \"none\"\n")).unwrap();
        assert_eq!(m.net, Net::None);
        let e = parse_manifest(&format!("{base}net = \"tap\"\n")).unwrap_err();
        assert!(
            e.contains("metadata.rhea.net must be \"user\" or \"none\", got \"tap\""),
            "{e}"
        );
        for bad in ["true", "[\"user\"]"] {
            let e = parse_manifest(&format!("{base}net = {bad}\n")).unwrap_err();
            assert!(
                e.contains("net = ") && e.contains("expected a string"),
                "{e}"
            );
        }
    }

    #[test]
    fn net_of_images() {
        let img = Path::new("/w/target/images/qemu-x86_64/net-virtio-smoke.elf");
        assert_eq!(net_of_image(img), Net::User);
        let img = Path::new("/w/target/images/qemu-x86_64/hello.stripped.elf");
        assert_eq!(net_of_image(img), Net::None);
        assert_eq!(net_of_image(Path::new("/img/no-such-app.elf")), Net::None);
    }

    #[test]
    fn plain_app_expects_success() {
        let m = parse_manifest("[package]\nname = \"rhea-app-hello\"\nversion.workspace = true\n")
            .unwrap();
        assert_eq!(m.package, "rhea-app-hello");
        assert_eq!(m.expect, Expect::Success);
        assert!(m.console.is_empty());
        assert_eq!(m.timeout, DEFAULT_TIMEOUT);
        assert_eq!(m.cmdline, "");
        assert_eq!(m.stdin, None);
        assert!(m.test);
    }

    #[test]
    fn test_metadata() {
        let m = parse_manifest(
            r#"
            [package]
            name = "rhea-test-panic"

            [package.metadata.rhea]
            expect = "failure"
            console = ["panicked at", "backtrace:", "rhea_test_panic::main"]
            timeout-secs = 30

            [dependencies]
            rhea.workspace = true
            "#,
        )
        .unwrap();
        assert_eq!(m.package, "rhea-test-panic");
        assert_eq!(m.expect, Expect::Failure);
        assert_eq!(
            m.console,
            ["panicked at", "backtrace:", "rhea_test_panic::main"]
        );
        assert_eq!(m.timeout, Duration::from_secs(30));
        assert_eq!((m.cmdline.as_str(), &m.stdin, m.test), ("", &None, true));
    }

    #[test]
    fn boot_metadata() {
        let m = parse_manifest(
            r#"
            [package]
            name = "rhea-test-echo"

            [package.metadata.rhea]
            cmdline = " echo.count=3 verbose "
            stdin = "hi\tthere\n"
            stdin-after = "echo: ready"
            test = true
            "#,
        )
        .unwrap();
        assert_eq!(m.cmdline, "echo.count=3 verbose");
        assert_eq!(
            m.stdin,
            Some(StdinFeed {
                text: "hi\tthere\n".to_string(),
                after: Some("echo: ready".to_string()),
            })
        );
        assert!(m.test);
        // stdin alone is written at once; a benchmark opts out of `test`.
        let m = parse_manifest(
            "[package]\nname = \"b\"\n[package.metadata.rhea]\nstdin = 'x'\ntest = false\n",
        )
        .unwrap();
        assert_eq!(
            m.stdin,
            Some(StdinFeed {
                text: "x".to_string(),
                after: None
            })
        );
        assert!(!m.test);
    }

    #[test]
    fn bad_metadata_is_rejected() {
        let with = |meta: &str| parse_manifest(&format!("[package]\nname = \"x\"\n{meta}"));
        assert!(with("[package.metadata.rhea]\nexpect = \"ok\"").is_err());
        assert!(with("[package.metadata.rhea]\nconsole = \"one\"").is_err());
        assert!(with("[package.metadata.rhea]\nconsole = [1]").is_err());
        assert!(with("[package.metadata.rhea]\ntimeout-secs = 0").is_err());
        assert!(with("[package.metadata.rhea]\ntimeout-secs = \"5\"").is_err());
        let err = with("[package.metadata.rhea]\ntimeout_secs = 5").unwrap_err();
        assert!(err.contains("timeout_secs"), "{err}");
        assert!(
            err.contains("`cmdline`, `stdin`, `stdin-after`, `test`"),
            "{err}"
        );
        assert!(err.contains("line 4"), "{err}");
        let err = with("[package.metadata.rhea]\nstdin-after = \"ready\"").unwrap_err();
        assert!(err.contains("without stdin"), "{err}");
        assert!(with("[package.metadata.rhea]\nstdin = \"x\"\nstdin-after = \"\"").is_err());
        assert!(with("[package.metadata.rhea]\nstdin = 1").is_err());
        assert!(with("[package.metadata.rhea]\ncmdline = [\"a=1\"]").is_err());
        assert!(with("[package.metadata.rhea]\ncmdline = \"a=1\\nb=2\"").is_err());
        assert!(with("[package.metadata.rhea]\ntest = \"no\"").is_err());
        assert!(parse_manifest("[lib]\n").is_err());
        assert!(parse_manifest("not toml =").is_err());
    }

    #[test]
    fn discover_and_find() {
        let root = std::env::temp_dir().join(format!("xtask-apps-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let write = |dir: &str, text: &str| {
            let d = root.join(dir);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("Cargo.toml"), text).unwrap();
        };
        write("apps/hello", "[package]\nname = \"rhea-hello\"\n");
        write(
            "tests/fault",
            "[package]\nname = \"rhea-test-fault\"\n[package.metadata.rhea]\nexpect = \"failure\"\n",
        );
        fs::create_dir_all(root.join("apps/not-an-app")).unwrap();
        let apps = discover(&root).unwrap();
        let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["hello", "fault"]);
        assert_eq!(find(&apps, "fault").unwrap().expect, Expect::Failure);
        match find(&apps, "nope") {
            Err(crate::Error::Usage(msg)) => assert!(msg.contains("hello, fault"), "{msg}"),
            other => panic!("{other:?}"),
        }
        // A name clash between apps/ and tests/ is an error.
        write("tests/hello", "[package]\nname = \"rhea-test-hello\"\n");
        assert!(discover(&root).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn boards_and_arch_consoles() {
        let m = parse_manifest(
            "[package]\nname = \"t\"\n[package.metadata.rhea]\nconsole = [\"#PF\"]\n\
             boards = [\"qemu-x86_64\", \"linuxu\"]\nsmp = [2, 4]\nsim-seeds = [1, 7]\n\
             [package.metadata.rhea.arch.aarch64]\nconsole = [\"data abort\", \"far\"]\n",
        )
        .unwrap();
        assert_eq!(m.boards, ["qemu-x86_64", "linuxu"]);
        assert_eq!(m.smp, [2, 4]);
        assert_eq!(m.sim_seeds, [1, 7]);
        assert_eq!(
            m.arch_console,
            [(
                "aarch64".to_string(),
                vec!["data abort".to_string(), "far".to_string()]
            )]
        );
        let app = App::new("t".into(), PathBuf::new(), m);
        assert!(app.runs_on("linuxu") && !app.runs_on("rpi4"));
        assert_eq!(app.console_for("aarch64"), ["data abort", "far"]);
        assert_eq!(app.console_for("x86_64"), ["#PF"]);
        for bad in [
            "boards = \"rpi4\"",
            "boards = [1]",
            "smp = []",
            "smp = [0]",
            "smp = [65]",
            "smp = 2",
            "sim-seeds = []",
            "sim-seeds = [-1]",
            "sim-seeds = 3",
            "arch = 1",
            "[package.metadata.rhea.arch.aarch64]\nexpect = \"success\"",
            "[package.metadata.rhea.arch.aarch64]\nconsole = \"x\"",
        ] {
            let text = format!("[package]\nname = \"t\"\n[package.metadata.rhea]\n{bad}\n");
            assert!(parse_manifest(&text).is_err(), "{bad}");
        }
    }

    // A flat table of cases (one bad manifest each, read top to bottom): long, but not to split.
    #[test]
    fn malformed_manifests_say_what_and_where() {
        let with = |meta: &str| {
            parse_manifest(&format!(
                "[package]\nname = \"x\"\n[package.metadata.rhea]\n{meta}\n"
            ))
            .unwrap_err()
        };
        // (the metadata line, a part of the message, the line the message must name)
        let cases = [
            (
                "expect = \"ok\"",
                "must be \"success\" or \"failure\", got \"ok\"",
                4,
            ),
            ("expect = 1", "expected a string", 4),
            ("console = \"one\"", "expected a sequence", 4),
            (
                "timeout-secs = 0",
                "timeout-secs must be a positive integer",
                4,
            ),
            ("timeout-secs = -3", "expected u64", 4),
            (
                "cmdline = \"a\\u0000b\"",
                "cmdline must be one line without NUL",
                4,
            ),
            (
                "skip-on = [\"q35\"]",
                "\"board/machine/accel\" strings, got \"q35\"",
                4,
            ),
            (
                "signal-storm = 0",
                "signal-storm must be a positive number",
                4,
            ),
            ("boards = [\"\"]", "got an empty name", 4),
            ("smp = [1, 65]", "CPU counts from 1 to 64, got [1, 65]", 4),
            ("sim-seeds = []", "sim-seeds must be a non-empty array", 4),
            ("test = 1", "expected a boolean", 4),
            ("\n\nsmp = []", "smp must be", 6),
            (
                "[package.metadata.rhea.arch.aarch64]\nconsole = [\"x\"]\nexpect = \"failure\"",
                "unknown field `expect`, expected `console`",
                6,
            ),
            (
                "[package.metadata.rhea.arch.aarch64]",
                "missing field `console`",
                4,
            ),
            (
                "stdin = \"a\"\nstdin-after = \"\"",
                "stdin-after must not be empty",
                5,
            ),
        ];
        for (meta, want, line) in cases {
            let e = with(meta);
            assert!(e.contains(want), "{meta}: {e}");
            assert!(e.contains(&format!("at line {line},")), "{meta}: {e}");
        }
        // Not TOML at all, or no [package].
        let e = parse_manifest("[package\nname = \"x\"").unwrap_err();
        assert!(
            e.starts_with("invalid manifest: TOML parse error at line 1"),
            "{e}"
        );
        assert_eq!(parse_manifest("[lib]\n").unwrap_err(), "no [package] table");
        assert_eq!(
            parse_manifest("[package]\nversion = \"1\"\n").unwrap_err(),
            "no string `name` in [package]"
        );
        let e = parse_manifest("[package]\nname = 1\n").unwrap_err();
        assert!(e.contains("expected a string"), "{e}");
        let e = parse_manifest("package = 1\n").unwrap_err();
        assert!(e.contains("expected a [package] table"), "{e}");
        let e =
            parse_manifest("[package]\nname = \"x\"\n[package.metadata]\nrhea = []\n").unwrap_err();
        assert!(
            e.contains("expected a [package.metadata.rhea] table"),
            "{e}"
        );
    }

    #[test]
    fn other_metadata_and_tables_are_ignored() {
        for text in [
            // Other tools' metadata, and a `metadata` that is not a table (Cargo allows it).
            "[package]\nname = \"x\"\n[package.metadata.docs.rs]\nall-features = true\n",
            "[package]\nname = \"x\"\nmetadata = 1\n",
            "[package]\nname = \"x\"\nmetadata = [\"a\", { b = 1 }]\n",
            "[package]\nname = \"x\"\nmetadata = 1979-05-27\n",
            // Cargo's own keys and tables.
            "[package]\nname = \"x\"\nversion.workspace = true\nedition = \"2024\"\n\
             [dependencies]\nrhea.workspace = true\n[lints]\nworkspace = true\n",
        ] {
            let m = parse_manifest(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.package, "x");
            assert_eq!(
                (m.expect, m.net, m.test),
                (Expect::Success, Net::None, true)
            );
        }
    }

    /// Every manifest in the repository parses, and a few known ones say what they should.
    #[test]
    fn every_manifest_in_the_repository_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let apps = discover(&root).unwrap();
        let mut count = 0;
        for parent in APP_DIRS {
            for entry in fs::read_dir(root.join(parent)).unwrap() {
                let path = entry.unwrap().path().join("Cargo.toml");
                if path.is_file() {
                    let text = fs::read_to_string(&path).unwrap();
                    parse_manifest(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    count += 1;
                }
            }
        }
        assert_eq!(apps.len(), count);
        assert!(
            count >= 30,
            "only {count} manifests found under apps/ and tests/"
        );
        let hello = find(&apps, "hello").unwrap();
        assert_eq!((hello.expect, hello.test), (Expect::Success, true));
        assert_eq!(find(&apps, "net-virtio-smoke").unwrap().net, Net::User);
        assert_eq!(find(&apps, DEFAULT_APP).unwrap().name, DEFAULT_APP);
        assert!(apps.iter().any(|a| a.expect == Expect::Failure));
        assert!(apps.iter().any(|a| !a.smp.is_empty()));
    }
}
