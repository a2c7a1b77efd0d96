//! `cargo xtask bench shell`: what the shell costs a control loop running above it.
//!
//! The appliance without a NIC (its control loop alone: a 1 ms period at priority 40) with the
//! console shell (`rhea.shell=console`, priority 5) is booted twice in one run, one CPU each
//! time. Each boot waits for the prompt, types `control reset`, then spends [`SECS`] seconds
//! at the prompt ("idle") or with `top 200` refreshing the screen every 200 ms (a snapshot of
//! every thread under the scheduler lock, formatting, console output), and types `control`
//! for the loop's periods, deadline misses and lateness. Printed: each figure for both runs
//! and the ratio top/idle.
//!
//! Boards: linuxu (default; a process on one host CPU, `taskset`-pinned when it can) and
//! qemu-x86_64 (q35 under TCG).

use std::process::Command;
use std::time::Duration;

use crate::bench::host_baseline;
use crate::test::shell::{ANSWER, Conversation, PROMPT};
use crate::{Options, Result, Workspace, apps, boards, fail, usage};

/// Seconds each phase runs.
const SECS: u64 = 10;

/// Whether `taskset` (util-linux) runs here.
fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The loop's figures after one phase.
#[derive(Debug, Clone, Copy)]
struct Figures {
    periods: u64,
    misses: u64,
    max_us: u64,
    avg_ns: u64,
}

/// Parses `control`'s first line: `period 1000 us: N periods, M deadline misses, max lateness
/// X us, avg lateness Y ns`.
fn parse(answer: &str) -> Option<Figures> {
    let line = answer.lines().find(|l| l.starts_with("period "))?;
    let num_before = |word: &str| -> Option<u64> {
        let at = line.find(word)?;
        line[..at].split_whitespace().last()?.parse().ok()
    };
    Some(Figures {
        periods: num_before(" periods")?,
        misses: num_before(" deadline misses")?,
        max_us: line
            .split("max lateness ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?,
        avg_ns: line
            .split("avg lateness ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?,
    })
}

/// One boot: `secs` seconds idle at the prompt or running `top 200`.
fn phase(cmd: Command, secs: u64, top: bool) -> std::result::Result<Figures, String> {
    let mut c = Conversation::start(cmd)?;
    c.expect(PROMPT, Duration::from_secs(120))?;
    let a = c.command("control reset")?;
    if !a.contains("figures reset") {
        return Err(format!("control reset did not answer: {a}"));
    }
    if top {
        c.send(b"top 200\r")?;
        c.expect("top: every 200 ms", ANSWER)?;
        std::thread::sleep(Duration::from_secs(secs));
        c.send(b"q")?;
        c.expect(PROMPT, ANSWER)?;
    } else {
        std::thread::sleep(Duration::from_secs(secs));
    }
    let a = c.command("control")?;
    parse(&a).ok_or_else(|| format!("control's answer did not parse: {a}"))
}

pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    let board_name = match opts.board.as_deref() {
        None => "linuxu",
        Some(b @ ("linuxu" | "qemu-x86_64")) => b,
        Some(other) => {
            return usage(format!(
                "bench shell: --board linuxu or qemu-x86_64, not {other}"
            ));
        }
    };
    let secs = SECS;
    let board = boards::find(board_name)?;
    let machine = board.machine(if board_name == "linuxu" {
        Some("realtime")
    } else {
        Some("q35")
    })?;
    let all_apps = apps::discover(&ws.root)?;
    let app = apps::find(&all_apps, "appliance")?;
    // LinuxU: one host CPU for the process, the one the other LinuxU benches use.
    let pin = board_name == "linuxu" && has_taskset();
    let make = || -> Result<Command> {
        let cmd = crate::test::shell::command(ws, board, machine, app, 1, "rhea.shell=console")
            .or_else(fail)?;
        if !pin {
            return Ok(cmd);
        }
        let mut pinned = Command::new("taskset");
        pinned
            .args(["-c", host_baseline::CPU])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        Ok(pinned)
    };
    let placed = match (board_name, pin) {
        ("linuxu", true) => format!(", pinned to host CPU {} (taskset)", host_baseline::CPU),
        ("linuxu", false) => ", not pinned (no taskset)".to_string(),
        _ => String::new(),
    };
    println!(
        "bench shell: the appliance's control loop (1 ms period, priority 40) on {board_name} \
         {machine}, one CPU{placed}, shell at priority 5; {secs} s idle at the prompt, then \
         {secs} s with top refreshing every 200 ms (two boots)"
    );
    let idle = phase(make()?, secs, false).or_else(fail)?;
    let top = phase(make()?, secs, true).or_else(fail)?;
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", a as f64 / b as f64)
        }
    };
    println!(
        "{:<22} {:>12} {:>12} {:>9}",
        "", "idle", "top 200 ms", "top/idle"
    );
    for (name, a, b) in [
        ("periods", idle.periods, top.periods),
        ("deadline misses", idle.misses, top.misses),
        ("max lateness (us)", idle.max_us, top.max_us),
        ("avg lateness (ns)", idle.avg_ns, top.avg_ns),
    ] {
        println!("{name:<22} {a:>12} {b:>12} {:>9}", ratio(b, a));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_answers_parse() {
        let f = parse(
            "period 1000 us: 9981 periods, 3 deadline misses, max lateness 1204 us, avg lateness 5230 ns\n  late < 1 us: 5\n",
        )
        .unwrap();
        assert_eq!(
            (f.periods, f.misses, f.max_us, f.avg_ns),
            (9981, 3, 1204, 5230)
        );
        assert!(parse("control: figures reset").is_none());
    }
}
