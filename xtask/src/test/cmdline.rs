//! `cargo xtask test`'s command-line cases: LinuxU (native, cheap) boots `hello` with one bad
//! `rhea.*` argument per run and must end with the failure status and a message naming the
//! argument and what is allowed, before the app starts; and with a command line far over the
//! old 1024-byte buffer, whose last argument must still count (good: it takes effect; bad: it
//! is refused). Case names: `linuxu/realtime/native cmdline <what>` (`--filter cmdline`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::apps::{self, App, Expect};
use crate::qemu;
use crate::{Workspace, boards, image, setup};

/// The app every case boots.
const APP: &str = "hello";

/// One boot.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    args: String,
    expect: Expect,
    /// Console fragments, in order.
    console: Vec<String>,
}

/// Arguments that fill `bytes` bytes and mean nothing to the kernel.
fn padding(bytes: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!("pad{i}=xxxxxxxxxxxxxxxxxxxxxxxx "));
        i += 1;
    }
    s
}

fn refused(args: &str, message: &str) -> Case {
    Case {
        name: format!("linuxu/realtime/native cmdline {args}"),
        args: args.to_string(),
        expect: Expect::Failure,
        console: vec![
            format!("rhea: invalid command line: {message}"),
            "rhea: refusing to boot with an invalid command line".to_string(),
        ],
    }
}

/// Every case (a handful of runs of well under a second each).
pub(crate) fn cases() -> Vec<Case> {
    let long = padding(4000);
    vec![
        refused(
            "rhea.cpus=abc",
            "rhea.cpus=abc: expected a whole number from 1 to 64",
        ),
        refused(
            "rhea.cpus=0",
            "rhea.cpus=0: expected a whole number from 1 to 64",
        ),
        refused(
            "rhea.mem_mib=999999",
            "rhea.mem_mib=999999: expected a whole number from 4 to 4096",
        ),
        refused(
            "rhea.sim=1 rhea.seed=abc",
            "rhea.seed=abc: expected a whole number from 0 to 18446744073709551615",
        ),
        refused(
            "rhea.cpu=2",
            "rhea.cpu=2: unknown key; known keys: rhea.checker",
        ),
        refused("rhea.checker=yes", "rhea.checker=yes: expected 0 or 1"),
        refused(
            "rhea.trace=sched,disk",
            "rhea.trace=sched,disk: expected a comma-separated list of sched, irq, net, app, all or off",
        ),
        Case {
            name: "linuxu/realtime/native cmdline long, last argument kept".to_string(),
            args: format!("{long}rhea.trace=sched"),
            expect: Expect::Success,
            console: vec!["Hello from Rhea!".to_string(), "rhea: trace:".to_string()],
        },
        Case {
            name: "linuxu/realtime/native cmdline long, last argument checked".to_string(),
            args: format!("{long}rhea.checker=2"),
            expect: Expect::Failure,
            console: vec![
                "rhea: invalid command line: rhea.checker=2: expected 0 or 1".to_string(),
            ],
        },
    ]
}

/// Builds `hello` for LinuxU: the executable every case runs.
pub(crate) fn prepare(ws: &Workspace, all_apps: &[App]) -> Result<PathBuf, String> {
    let board = boards::find("linuxu").map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, APP).map_err(|e| e.to_string())?;
    setup::ensure_toolchain(ws, board).map_err(|e| e.to_string())?;
    let image = image::build(ws, board, app).map_err(|e| e.to_string())?;
    Ok(image.elf)
}

/// Boots `case` with `elf` (from [`prepare`]) and judges it: the exit status, the fragments
/// in order, and for a refusal that the app never started.
pub(crate) fn run(elf: &Path, case: &Case) -> Result<Duration, (Option<Duration>, String)> {
    let no_time = |e: String| (None, e);
    let captured =
        qemu::run_process_captured(elf, &case.args, None, Duration::from_secs(20), false, None)
            .map_err(|e| no_time(e.to_string()))?;
    let console = captured.console();
    let verdict = qemu::classify_process(&captured.end);
    let tail = || {
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    | ");
        format!("\n    | {tail}")
    };
    let took = Some(captured.elapsed);
    crate::test::judge(case.expect, &verdict, &console, &case.console)
        .map_err(|e| (took, format!("{e}{}", tail())))?;
    if case.expect == Expect::Failure && console.contains("rhea: app main") {
        return Err((
            took,
            format!("the app started despite the bad argument{}", tail()),
        ));
    }
    Ok(captured.elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_distinct_and_long_ones_are_long() {
        let cases = cases();
        for (i, a) in cases.iter().enumerate() {
            assert!(
                cases[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            assert!(a.name.starts_with("linuxu/realtime/native cmdline "));
        }
        let long: Vec<&Case> = cases.iter().filter(|c| c.args.len() > 1024).collect();
        assert_eq!(long.len(), 2);
        assert!(long.iter().all(|c| c.args.len() > 4000));
    }
}
