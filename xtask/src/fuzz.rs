//! `cargo xtask fuzz [TARGET] [--time S]`: coverage-guided fuzzing of every parser that reads
//! untrusted bytes, with libFuzzer through `cargo-fuzz`.
//!
//! The targets are the `fuzz/` crate (cargo-fuzz's layout: `fuzz/fuzz_targets/<name>.rs`, each
//! a thin wrapper over a harness in `fuzz/src/<name>.rs`), a workspace of its own that the main
//! one excludes, built into `target/fuzz`. Without a name every target in [`TARGETS`] runs for
//! [`DEFAULT_SECONDS`]; with one, that target for `--time` seconds. Each prints its executions,
//! executions per second, coverage (libFuzzer's `cov:` — edges — and `ft:` — features — from
//! its last status line), the corpus size, and whether it crashed; a crash fails the command,
//! naming the input libFuzzer saved under `fuzz/artifacts/<target>/` and the command that
//! replays it.
//!
//! Corpus: the committed seeds in `fuzz/corpus/<target>/` (small, minimized) are read; what the
//! fuzzer finds is kept in `target/fuzz/corpus/<target>/`, so later runs start from it without
//! growing the repository. `cargo xtask test` runs every target for [`TEST_SECONDS`] as the
//! items `host/fuzz/<target>` (see `test/mod.rs`).
//!
//! ## Toolchain: why `RUSTC_BOOTSTRAP=1`
//!
//! libFuzzer needs the code instrumented for coverage (`-Cpasses=sancov-module` and the
//! `-Cllvm-args=-sanitizer-coverage-*` options) and AddressSanitizer (`-Zsanitizer=address`);
//! cargo-fuzz passes these, and the `-Z` flag is accepted only by a nightly compiler. The
//! project pins stable Rust (`rust-toolchain.toml`) and its machines and CI can fetch no other
//! toolchain (only crate registries are reachable), so there is no nightly to use. The pinned
//! stable compiler has the same code and ships the sanitizer runtimes in `rust-std`
//! (`librustc-stable_rt.asan.a`); `RUSTC_BOOTSTRAP=1` tells it to accept unstable flags. It is
//! set only on the `cargo fuzz` commands here, never on an ordinary build, and it is the
//! documented escape hatch of the compiler's own build rather than a supported interface: a
//! future stable release could change a flag's behaviour, which would show as a build failure
//! of these targets, not as a silent change of Rhea's kernel builds.
//!
//! cargo-fuzz is installed with `cargo install` (version [`CARGO_FUZZ_VERSION`], `--locked`)
//! when `cargo fuzz` is missing.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cli::FuzzArgs;
use crate::{Error, Result, Workspace, describe, fail, usage};

/// The fuzz targets, each with what it feeds to which parser.
pub(crate) const TARGETS: &[(&str, &str)] = &[
    (
        "net_frame",
        "rhea-net's frame check, then smoltcp (TCP/UDP/DHCP sockets) behind it",
    ),
    (
        "fdt",
        "the devicetree reader and the Arm platform facts derived from it",
    ),
    (
        "pvh",
        "the PVH start info, its memory map and command line in guest memory",
    ),
    (
        "uefi",
        "pc-uefi's hand-off page, raw UEFI memory map, kernel ELF and command line",
    ),
    (
        "acpi",
        "the MADT entry walk and the MCFG, found through RSDP and XSDT",
    ),
    (
        "xenstore",
        "xenstored's replies and watch events, and the xenbus state/number parsing",
    ),
    (
        "rings",
        "netfront's RX/TX responses and virtio-net's used rings, as a hostile back end writes them",
    ),
    (
        "http",
        "the appliance's HTTP request heads (rhea-net's head_end and parse_head)",
    ),
    (
        "cmdline",
        "the kernel command line: rhea.* keys, rhea.net.* keys, the Arm boards' rhea.cpus=",
    ),
    (
        "cpio",
        "the initramfs: the cpio newc reader, the index, the tree walked and read",
    ),
    (
        "p9",
        "a 9P2000.L server's replies to the client: mount, walk, attributes, read, list, write, create",
    ),
    (
        "fat",
        "a FAT16/FAT32 disk image (bare or MBR): mount, walk and read the tree, write, truncate, create, remove",
    ),
];

/// Seconds each target runs by default (`cargo xtask fuzz` without `--time`).
pub(crate) const DEFAULT_SECONDS: u32 = 60;
/// Seconds each target runs in `cargo xtask test`.
pub(crate) const TEST_SECONDS: u32 = 10;
/// The cargo-fuzz release installed when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// Seconds one input may run before libFuzzer calls it a hang.
const INPUT_TIMEOUT_SECONDS: u32 = 10;

/// What one run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) execs: u64,
    pub(crate) execs_per_sec: u64,
    pub(crate) cov: u64,
    pub(crate) ft: u64,
    pub(crate) corpus_units: u64,
    pub(crate) corpus_bytes: u64,
    /// The input libFuzzer saved for a crash, leak or timeout.
    pub(crate) artifact: Option<String>,
    /// The first line of the sanitizer's or panic's report.
    pub(crate) crash: Option<String>,
}

impl Report {
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} execs ({}/s), cov {} ft {}, corpus {} inputs ({} bytes)",
            self.execs, self.execs_per_sec, self.cov, self.ft, self.corpus_units, self.corpus_bytes
        )
    }

    /// Reads one line of libFuzzer's output into the report.
    fn take_line(&mut self, line: &str) {
        let field = |key: &str| -> Option<&str> {
            let at = line.find(key)? + key.len();
            line[at..].split_whitespace().next()
        };
        if line.starts_with('#') && line.contains(" cov: ") {
            // `#4096 pulse  cov: 312 ft: 901 corp: 57/2030b lim: 43 exec/s: 2048 rss: 40Mb`
            if let Some(n) = line[1..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
            {
                self.execs = n;
            }
            if let Some(n) = field("cov: ").and_then(|n| n.parse().ok()) {
                self.cov = n;
            }
            if let Some(n) = field("ft: ").and_then(|n| n.parse().ok()) {
                self.ft = n;
            }
            if let Some((units, bytes)) = field("corp: ").and_then(|c| c.split_once('/')) {
                self.corpus_units = units.parse().unwrap_or(self.corpus_units);
                self.corpus_bytes = parse_size(bytes).unwrap_or(self.corpus_bytes);
            }
            if let Some(n) = field("exec/s: ").and_then(|n| n.parse().ok()) {
                self.execs_per_sec = n;
            }
        } else if let Some(n) = field("stat::number_of_executed_units: ") {
            self.execs = n.parse().unwrap_or(self.execs);
        } else if let Some(n) = field("stat::average_exec_per_sec: ") {
            self.execs_per_sec = n.parse().unwrap_or(self.execs_per_sec);
        } else if let Some(path) = field("Test unit written to ") {
            self.artifact = Some(path.to_string());
        } else if self.crash.is_none()
            && (line.starts_with("==") && line.contains("ERROR: ")
                || line.contains("panicked at")
                || line.contains("ERROR: libFuzzer"))
        {
            self.crash = Some(line.trim().to_string());
        }
    }
}

/// `2030b`, `12Kb`, `3Mb` in libFuzzer's status line, as bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, scale) = if let Some(d) = s.strip_suffix("Mb") {
        (d, 1 << 20)
    } else if let Some(d) = s.strip_suffix("Kb") {
        (d, 1 << 10)
    } else {
        (s.strip_suffix('b')?, 1)
    };
    digits.parse::<u64>().ok().map(|n| n * scale)
}

/// Whether `name` is a target; a usage error listing them if not.
pub(crate) fn check_target(name: &str) -> Result<()> {
    if TARGETS.iter().any(|(t, _)| *t == name) {
        Ok(())
    } else {
        let names: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
        usage(format!(
            "unknown fuzz target `{name}`; targets: {}",
            names.join(", ")
        ))
    }
}

fn target_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("target").join("fuzz")
}

/// Where `cargo fuzz build` puts a target's binary.
fn binary(ws: &Workspace, target: &str) -> PathBuf {
    target_dir(ws)
        .join(host_triple())
        .join("release")
        .join(target)
}

/// cargo-fuzz builds for the host triple explicitly; Rhea's host is x86_64 Linux.
fn host_triple() -> &'static str {
    "x86_64-unknown-linux-gnu"
}

/// A `cargo fuzz` command in the workspace root (the fuzz crate is `./fuzz`).
fn cargo_fuzz(ws: &Workspace) -> Command {
    let mut cmd = ws.cargo();
    // See the module documentation: stable rustc with unstable flags, no nightly needed.
    cmd.env("RUSTC_BOOTSTRAP", "1");
    cmd.arg("fuzz");
    cmd
}

/// Installs cargo-fuzz when `cargo fuzz` does not run.
pub(crate) fn ensure_cargo_fuzz(ws: &Workspace) -> Result<()> {
    let works = cargo_fuzz(ws)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    let mut install = ws.cargo();
    install.args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]);
    println!("setup: installing cargo-fuzz: {}", describe(&install));
    match install.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => fail(format!(
            "`{}` failed ({s}); cargo fuzz is needed to build the fuzz targets — install it \
             by hand with that command (it needs crates.io and a C++ compiler for nothing else \
             than its own build), then run again",
            describe(&install)
        )),
        Err(e) => fail(format!("cannot run `{}`: {e}", describe(&install))),
    }
}

/// Builds every fuzz target (instrumented, AddressSanitizer, release with debug assertions
/// and overflow checks: `fuzz/Cargo.toml`'s profile).
pub(crate) fn build(ws: &Workspace, verbose: bool) -> Result<()> {
    ensure_cargo_fuzz(ws)?;
    let mut cmd = cargo_fuzz(ws);
    cmd.args(["build", "--sanitizer", "address", "--debug-assertions"])
        .arg("--target-dir")
        .arg(target_dir(ws));
    println!("== fuzz: RUSTC_BOOTSTRAP=1 {}", describe(&cmd));
    if !verbose {
        cmd.stdout(Stdio::null());
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => fail(format!("building the fuzz targets failed ({s})")),
        Err(e) => fail(format!("cannot run `{}`: {e}", describe(&cmd))),
    }
}

/// Runs one built target for `seconds`; `Err` only when it could not run at all. A crash is
/// a report with `artifact`/`crash` set.
pub(crate) fn run_target(
    ws: &Workspace,
    target: &str,
    seconds: u32,
    verbose: bool,
) -> Result<Report> {
    let kept = target_dir(ws).join("corpus").join(target);
    let seeds = ws.root.join("fuzz").join("corpus").join(target);
    let artifacts = ws.root.join("fuzz").join("artifacts").join(target);
    for dir in [&kept, &seeds, &artifacts] {
        fs::create_dir_all(dir)
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let bin = binary(ws, target);
    let mut cmd = ws.command(&bin);
    // New inputs go to the first directory: the kept corpus, not the committed seeds.
    cmd.arg(&kept)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if verbose {
        println!("== {}", describe(&cmd));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run {}: {e}", bin.display())))?;
    let mut report = Report::default();
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if verbose {
                eprintln!("{line}");
            }
            report.take_line(&line);
            tail.push(line);
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Failed(format!("waiting for {}: {e}", bin.display())))?;
    if !status.success() && report.artifact.is_none() && report.crash.is_none() {
        return fail(format!(
            "{} ended with {status} without a crash report:\n{}",
            bin.display(),
            tail.join("\n")
        ));
    }
    if !status.success() && report.crash.is_none() {
        report.crash = Some(format!("{status}"));
    }
    if report.crash.is_some() && !verbose {
        // The sanitizer's or panic's report, for the reader of the failure.
        for line in &tail {
            eprintln!("  {line}");
        }
    }
    Ok(report)
}

/// How to replay a saved input.
pub(crate) fn replay_hint(ws: &Workspace, target: &str, artifact: &str) -> String {
    format!(
        "replay: {} {artifact} (after `cargo xtask fuzz {target} --time 1` built it); then add \
         the input as a unit test next to the parser",
        binary(ws, target).display()
    )
}

fn relative<'a>(ws: &Workspace, p: &'a Path) -> &'a Path {
    p.strip_prefix(&ws.root).unwrap_or(p)
}

/// The arguments after `cargo xtask fuzz`: `[TARGET] [--time S] [--verbose]`.
/// `cargo xtask fuzz [TARGET] [--time S] [--verbose]` (parsed by `cli::parse_fuzz`).
pub(crate) fn command(ws: &Workspace, args: FuzzArgs) -> Result<()> {
    let FuzzArgs {
        target,
        seconds,
        verbose,
    } = args;
    let target = target.as_deref();
    let chosen: Vec<&str> = match target {
        Some(t) => {
            check_target(t)?;
            vec![t]
        }
        None => {
            println!("fuzz targets:");
            for (name, what) in TARGETS {
                println!("  {name:<10} {what}");
            }
            TARGETS.iter().map(|(t, _)| *t).collect()
        }
    };
    let seconds = seconds.unwrap_or(DEFAULT_SECONDS);
    build(ws, verbose)?;
    let mut crashed = Vec::new();
    for t in chosen {
        println!("== fuzz {t}: {seconds} s");
        let start = Instant::now();
        let report = run_target(ws, t, seconds, verbose)?;
        let took = start.elapsed();
        match (&report.crash, &report.artifact) {
            (None, _) => println!(
                "fuzz {t}: {} in {:.0} s, no crash",
                report.summary(),
                took.as_secs_f64()
            ),
            (Some(why), artifact) => {
                let artifact = artifact.as_deref().unwrap_or("(no input saved)");
                println!(
                    "fuzz {t}: CRASH after {} execs: {why}\n  input: {}\n  {}",
                    report.execs,
                    relative(ws, Path::new(artifact)).display(),
                    replay_hint(ws, t, artifact)
                );
                crashed.push(t);
            }
        }
    }
    if crashed.is_empty() {
        Ok(())
    } else {
        fail(format!("fuzzing found crashes in: {}", crashed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_output() {
        let mut r = Report::default();
        for line in [
            "INFO: Seed: 123",
            "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb",
            "#65536\tpulse  cov: 312 ft: 901 corp: 57/2030b lim: 43 exec/s: 21845 rss: 40Mb",
            "#70001\tDONE   cov: 315 ft: 910 corp: 58/12Kb lim: 43 exec/s: 23333 rss: 41Mb",
            "stat::number_of_executed_units: 70001",
            "stat::average_exec_per_sec:     23333",
        ] {
            r.take_line(line);
        }
        assert_eq!(r.execs, 70001);
        assert_eq!(r.execs_per_sec, 23333);
        assert_eq!((r.cov, r.ft), (315, 910));
        assert_eq!((r.corpus_units, r.corpus_bytes), (58, 12 << 10));
        assert_eq!(r.crash, None);
    }

    #[test]
    fn reads_a_crash() {
        let mut r = Report::default();
        for line in [
            "thread '<unnamed>' panicked at net/src/validate.rs:10:5:",
            "==1234== ERROR: libFuzzer: deadly signal",
            "artifact_prefix='fuzz/artifacts/net_frame/'; Test unit written to fuzz/artifacts/net_frame/crash-abc",
        ] {
            r.take_line(line);
        }
        assert_eq!(
            r.artifact.as_deref(),
            Some("fuzz/artifacts/net_frame/crash-abc")
        );
        assert!(r.crash.as_deref().unwrap().contains("panicked at"));
    }

    #[test]
    fn targets_are_known() {
        assert!(check_target("net_frame").is_ok());
        assert!(matches!(check_target("nope"), Err(Error::Usage(_))));
    }
}
