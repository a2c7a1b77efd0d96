//! `cargo xtask test`'s tracing cases: `tests/trace-pi` (a priority-inheritance chain across
//! two CPUs) booted with `rhea.trace=all` the way `cargo xtask trace` boots it, its console
//! dump converted to a Perfetto trace, and the file read back with the independent decoder
//! (`trace::readback`, which shares nothing with the encoder) and checked against what the
//! scenario must show:
//!
//! - the dump arrived whole (no damaged or missing frame, the end frame);
//! - the three threads have tracks named with their priorities;
//! - the boosts in order: low 5→10 by mid (depth 0), mid 10→30 by high (depth 0), low 10→30
//!   through mid (depth 1); then low restored to 5 and mid to 10;
//! - across CPUs: low ran on the last CPU, mid and high on CPU 0 (the CPU tracks' slices);
//! - wake-ups are linked to the runs they caused (flows), and the app's own events are there;
//! - Perfetto's own schema (its Python package's compiled protos, `trace::schema`) finds no
//!   field it does not know, no event on an undescribed track, slices balanced.
//!
//! Case names: `<board>/<machine>/<accel> trace-pi perfetto` (`--filter trace`).

use std::time::{Duration, Instant};

use crate::apps::{self, App};
use crate::cli::Options;
use crate::qemu::AccelChoice;
use crate::trace::readback::{self, V};
use crate::{Workspace, boards, trace};

/// The boards and machines booted.
pub(crate) const CASES: &[(&str, &str)] = &[
    ("linuxu", "realtime"),
    ("qemu-x86_64", "q35"),
    ("qemu-aarch64", "virt-gicv3"),
];

/// A case's name.
pub(crate) fn case_name(board: &str, machine: &str) -> String {
    super::special_case_name(board, machine, "trace-pi perfetto")
}

/// Boots the case and checks its trace: how long it took, or why it failed.
pub(crate) fn run(
    ws: &Workspace,
    all_apps: &[App],
    board: &str,
    machine: &str,
) -> Result<Duration, String> {
    let start = Instant::now();
    let board = boards::find(board).map_err(|e| e.to_string())?;
    let machine = board.machine(Some(machine)).map_err(|e| e.to_string())?;
    let app = apps::find(all_apps, "trace-pi").map_err(|e| e.to_string())?;
    let opts = Options {
        accel: match board.runner {
            boards::Runner::Process => AccelChoice::Auto,
            _ => AccelChoice::Tcg,
        },
        cpus: Some(2),
        ..Options::default()
    };
    let text = trace::boot(ws, board, machine, app, &opts).map_err(|e| e.to_string())?;
    if !text.contains("trace-pi: PASS") {
        return Err(tail("the app did not pass", &text));
    }
    let converted = trace::convert(&text).map_err(|e| e.to_string())?;
    if !converted.dump.complete || !converted.dump.problems.is_empty() {
        return Err(format!(
            "the dump did not arrive whole: {:?}",
            converted.dump.problems
        ));
    }
    let bytes = converted.perfetto;
    std::panic::catch_unwind(|| check(&bytes)).map_err(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a check panicked".to_string());
        format!("the Perfetto trace read back wrong: {what}")
    })??;
    // And Perfetto's own schema reads it the same way.
    let file = ws
        .root
        .join("target/trace")
        .join(format!("test-{}-trace-pi.perfetto-trace", board.name));
    std::fs::create_dir_all(ws.root.join("target/trace")).map_err(|e| e.to_string())?;
    std::fs::write(&file, &bytes).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let summary = trace::schema::check(
        ws,
        &file,
        &["low (prio 5)", "mid (prio 10)", "high (prio 30)"],
    )
    .map_err(|e| e.to_string())?;
    println!("  perfetto schema: {summary}");
    Ok(start.elapsed())
}

fn tail(why: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("~rt ")).collect();
    let from = lines.len().saturating_sub(15);
    format!(
        "{why}; console (without dump lines):\n{}",
        lines[from..].join("\n")
    )
}

/// The checks on the file read back.
fn check(bytes: &[u8]) -> Result<(), String> {
    let r = readback::read(bytes);
    let thread_track = |name: &str| -> Result<u64, String> {
        let found: Vec<u64> = r
            .tracks
            .iter()
            .filter(|(_, t)| t.2.as_deref() == Some(name))
            .map(|(u, _)| *u)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!("{} thread tracks named {name:?}", found.len())),
        }
    };
    let low = thread_track("low (prio 5)")?;
    let mid = thread_track("mid (prio 10)")?;
    let high = thread_track("high (prio 30)")?;
    let who = |track: u64| match track {
        t if t == low => "low",
        t if t == mid => "mid",
        t if t == high => "high",
        _ => "other",
    };
    let num = |v: Option<&V>| match v {
        Some(V::Varint(n)) => Some(*n),
        _ => None,
    };
    let word = |v: Option<&V>| match v {
        Some(V::Len(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    };
    // The priority changes of the three, in time order.
    let mut prios = Vec::new();
    for e in &r.events {
        if !e.name.as_deref().is_some_and(|n| n.starts_with("prio ")) || who(e.track) == "other" {
            continue;
        }
        prios.push((
            who(e.track),
            word(e.args.get("why")).unwrap_or_default(),
            num(e.args.get("new")).unwrap_or(u64::MAX),
            num(e.args.get("depth")).unwrap_or(u64::MAX),
        ));
    }
    let want = [
        ("low", "boost", 10, 0),
        ("mid", "boost", 30, 0),
        ("low", "boost", 30, 1),
        ("low", "restore", 5, 0),
        ("mid", "restore", 10, 0),
    ];
    let got: Vec<(&str, &str, u64, u64)> = prios
        .iter()
        .map(|(t, w, n, d)| (*t, w.as_str(), *n, *d))
        .collect();
    if got != want {
        return Err(format!(
            "priority changes {got:?}, expected {want:?} (thread, why, new, depth)"
        ));
    }
    // Across CPUs: who ran where, from the CPU tracks' slices.
    let ran_on = |cpu: &str, thread: &str| -> bool {
        r.tracks.iter().filter(|(_, t)| t.0 == cpu).any(|(u, _)| {
            readback::slices(&r, *u)
                .iter()
                .any(|(_, name, _)| name.starts_with(thread))
        })
    };
    for (cpu, thread) in [("cpu1", "low"), ("cpu0", "mid"), ("cpu0", "high")] {
        if !ran_on(cpu, thread) {
            return Err(format!("no slice of {thread} on {cpu}'s track"));
        }
    }
    if ran_on("cpu0", "low") {
        return Err("low (pinned to cpu1) has a slice on cpu0's track".into());
    }
    // Wake-ups linked to runs: high was woken (handed mutex B) and its run ends a flow.
    let flows_to_high = r
        .events
        .iter()
        .filter(|e| e.track == high && !e.ends_flows.is_empty())
        .count();
    if flows_to_high == 0 {
        return Err("no wake-up flow ends at one of high's runs".into());
    }
    let flow_starts = r.events.iter().filter(|e| !e.flows.is_empty()).count();
    if flow_starts == 0 {
        return Err("no wake-up starts a flow".into());
    }
    // The app's counter: low's inherited level as low saw it, 10 then 30.
    let counter = r.track("low's inherited level");
    let values: Vec<i64> = r.on(counter).iter().filter_map(|e| e.counter).collect();
    if values != [10, 30] {
        return Err(format!(
            "the app's counter \"low's inherited level\" reads {values:?}, expected [10, 30]"
        ));
    }
    // The app's own events.
    let has = |name: &str| r.events.iter().any(|e| e.name.as_deref() == Some(name));
    for name in ["high wants B", "low holds A", "before the freeze", "thawed"] {
        if !has(name) {
            return Err(format!("the app's event {name:?} is missing"));
        }
    }
    // Recorded while frozen: must not be there.
    if has("after the freeze") {
        return Err("an event recorded while the trace was frozen is in the dump".into());
    }
    Ok(())
}
