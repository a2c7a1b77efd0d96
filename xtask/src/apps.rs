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

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::qemu::StdinFeed;
use crate::{Context, Result, fail, usage};

/// The app used when `--app` is not given.
pub(crate) const DEFAULT_APP: &str = "appliance";

/// The boot timeout when `timeout-secs` is not given.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The directories searched for apps, relative to the workspace root.
const APP_DIRS: &[&str] = &["apps", "tests"];

/// How a boot must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The kernel reports success through the debug-exit port.
    Success,
    /// The kernel reports failure through the debug-exit port.
    Failure,
}

/// The network a QEMU boot of the app gets (`net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    /// No NIC (the default).
    None,
    /// A virtio-net NIC on QEMU's user networking (slirp: gateway 10.0.2.2, guest 10.0.2.15).
    User,
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
    /// The Cargo package name.
    pub(crate) package: String,
    /// The app's directory.
    pub(crate) dir: PathBuf,
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
    /// `board/machine` pairs `cargo xtask test` skips this app on (`skip-on`).
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
}

impl App {
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
    pub(crate) package: String,
    pub(crate) expect: Expect,
    pub(crate) console: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) cmdline: String,
    pub(crate) stdin: Option<StdinFeed>,
    pub(crate) test: bool,
    pub(crate) skip_on: Vec<String>,
    pub(crate) signal_storm: Option<u32>,
    pub(crate) boards: Vec<String>,
    pub(crate) smp: Vec<u32>,
    pub(crate) sim_seeds: Vec<u64>,
    pub(crate) arch_console: Vec<(String, Vec<String>)>,
    pub(crate) net: Net,
}

/// A short rendering of a TOML value for error messages.
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// Parses an app's `Cargo.toml` text.
pub(crate) fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
    let package = table
        .get("package")
        .and_then(|p| p.as_table())
        .ok_or("no [package] table")?;
    let name = package
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or("no string `name` in [package]")?
        .to_string();
    let mut manifest = Manifest {
        package: name,
        expect: Expect::Success,
        console: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
        cmdline: String::new(),
        stdin: None,
        test: true,
        skip_on: Vec::new(),
        signal_storm: None,
        boards: Vec::new(),
        smp: Vec::new(),
        sim_seeds: Vec::new(),
        arch_console: Vec::new(),
        net: Net::None,
    };
    let Some(meta) = package.get("metadata").and_then(|m| m.get("rhea")) else {
        return Ok(manifest);
    };
    let meta = meta
        .as_table()
        .ok_or("[package.metadata.rhea] is not a table")?;
    let string = |key: &str, value: &toml::Value| {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("metadata.rhea.{key} must be a string, got {}", show(value)))
    };
    let (mut stdin, mut stdin_after) = (None, None);
    for (key, value) in meta {
        match key.as_str() {
            "expect" => {
                manifest.expect = match value.as_str() {
                    Some("success") => Expect::Success,
                    Some("failure") => Expect::Failure,
                    _ => {
                        return Err(format!(
                            "metadata.rhea.expect must be \"success\" or \"failure\", got {}",
                            show(value)
                        ));
                    }
                }
            }
            "console" => {
                let list = value
                    .as_array()
                    .ok_or("metadata.rhea.console must be an array of strings")?;
                manifest.console = list
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("metadata.rhea.console must be an array of strings")?;
            }
            "timeout-secs" => {
                let secs = value
                    .as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!(
                            "metadata.rhea.timeout-secs must be a positive integer, got {}",
                            show(value)
                        )
                    })?;
                manifest.timeout = Duration::from_secs(secs);
            }
            "cmdline" => {
                let line = string(key, value)?;
                if line.contains(['\n', '\r', '\0']) {
                    return Err(format!(
                        "metadata.rhea.cmdline must be one line without NUL, got {line:?}"
                    ));
                }
                manifest.cmdline = line.trim().to_string();
            }
            "stdin" => stdin = Some(string(key, value)?),
            "stdin-after" => {
                let marker = string(key, value)?;
                if marker.is_empty() {
                    return Err("metadata.rhea.stdin-after must not be empty".to_string());
                }
                stdin_after = Some(marker);
            }
            "test" => {
                manifest.test = value.as_bool().ok_or_else(|| {
                    format!(
                        "metadata.rhea.test must be true or false, got {}",
                        show(value)
                    )
                })?;
            }
            "skip-on" => {
                let list = value
                    .as_array()
                    .ok_or("metadata.rhea.skip-on must be an array of \"board/machine\" strings")?;
                manifest.skip_on = list
                    .iter()
                    .map(|v| v.as_str().filter(|s| s.contains('/')).map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("metadata.rhea.skip-on must be an array of \"board/machine\" strings")?;
            }
            "signal-storm" => {
                let rate = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("metadata.rhea.signal-storm must be a positive number of signals a second, got {}", show(value)))?;
                manifest.signal_storm = Some(rate);
            }
            "boards" => {
                let list = value
                    .as_array()
                    .ok_or("metadata.rhea.boards must be an array of board names")?;
                manifest.boards = list
                    .iter()
                    .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("metadata.rhea.boards must be an array of board names")?;
            }
            "smp" => {
                let bad = || {
                    format!(
                        "metadata.rhea.smp must be a non-empty array of CPU counts from 1 to 64, got {}",
                        show(value)
                    )
                };
                let list = value.as_array().filter(|l| !l.is_empty()).ok_or_else(bad)?;
                manifest.smp = list
                    .iter()
                    .map(|v| {
                        v.as_integer()
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| (1..=64).contains(n))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
            }
            "sim-seeds" => {
                let bad = || {
                    format!(
                        "metadata.rhea.sim-seeds must be a non-empty array of non-negative integers, got {}",
                        show(value)
                    )
                };
                let list = value.as_array().filter(|l| !l.is_empty()).ok_or_else(bad)?;
                manifest.sim_seeds = list
                    .iter()
                    .map(|v| v.as_integer().and_then(|n| u64::try_from(n).ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
            }
            "net" => {
                manifest.net = match value.as_str() {
                    Some("user") => Net::User,
                    Some("none") => Net::None,
                    _ => {
                        return Err(format!(
                            "metadata.rhea.net must be \"user\" or \"none\", got {}",
                            show(value)
                        ));
                    }
                }
            }
            "arch" => {
                let archs = value
                    .as_table()
                    .ok_or("metadata.rhea.arch must be a table of [arch.<name>] tables")?;
                for (arch, table) in archs {
                    let console = table
                        .as_table()
                        .filter(|t| t.keys().all(|k| k == "console"))
                        .and_then(|t| t.get("console"))
                        .and_then(|c| c.as_array())
                        .and_then(|c| {
                            c.iter()
                                .map(|v| v.as_str().map(str::to_string))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            format!(
                                "metadata.rhea.arch.{arch} must hold only `console`, an array of strings"
                            )
                        })?;
                    manifest.arch_console.push((arch.clone(), console));
                }
            }
            other => {
                return Err(format!(
                    "unknown key `{other}` in [package.metadata.rhea] \
                     (known: expect, console, timeout-secs, cmdline, stdin, stdin-after, test, skip-on, signal-storm, boards, smp, sim-seeds, net, arch)"
                ));
            }
        }
    }
    manifest.stdin = match (stdin, stdin_after) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err("metadata.rhea.stdin-after is given without stdin".to_string());
        }
        (Some(text), after) => Some(StdinFeed { text, after }),
    };
    Ok(manifest)
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
            found.push(App {
                name,
                package: manifest.package,
                dir: entry.path(),
                expect: manifest.expect,
                console: manifest.console,
                timeout: manifest.timeout,
                cmdline: manifest.cmdline,
                stdin: manifest.stdin,
                test: manifest.test,
                skip_on: manifest.skip_on,
                signal_storm: manifest.signal_storm,
                boards: manifest.boards,
                smp: manifest.smp,
                sim_seeds: manifest.sim_seeds,
                arch_console: manifest.arch_console,
                net: manifest.net,
            });
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
        for bad in ["\"tap\"", "true", "[\"user\"]"] {
            let e = parse_manifest(&format!("{base}net = {bad}\n")).unwrap_err();
            assert!(e.contains("metadata.rhea.net must be"), "{e}");
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
        assert!(err.contains("cmdline, stdin, stdin-after, test"), "{err}");
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
        let app = App {
            name: "t".into(),
            package: m.package,
            dir: PathBuf::new(),
            expect: m.expect,
            console: m.console,
            timeout: m.timeout,
            cmdline: m.cmdline,
            stdin: m.stdin,
            test: m.test,
            skip_on: m.skip_on,
            signal_storm: m.signal_storm,
            boards: m.boards,
            smp: m.smp,
            sim_seeds: m.sim_seeds,
            arch_console: m.arch_console,
            net: m.net,
        };
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
}
