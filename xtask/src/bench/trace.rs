//! `cargo xtask bench trace`: what tracing costs. bench-sched runs twice in one invocation —
//! tracing off, then `rhea.trace=all` (ring mode, so the buffers never fill and every event is
//! recorded) — and each measure is printed with its ratio on/off; bench-sched's `trace_event`
//! gives the cost of one event (on) and of the check (off).
//!
//! Boards: qemu-x86_64 (default; q35, the accelerator `--accel` chooses) and linuxu (a process
//! pinned to one CPU, as `bench sched --board linuxu`).

use crate::bench::{self, RheaSched, SCHED_APP, host_baseline, linux_guest};
use crate::{Options, Result, Workspace, apps, boards, image, setup, usage};
use std::time::Duration;

/// What tracing on adds to the command line.
const TRACE_ON: &str = "rhea.trace=all rhea.trace_mode=ring";

pub(crate) fn bench(ws: &Workspace, opts: &Options) -> Result<()> {
    let loops = opts.loops.unwrap_or(linux_guest::DEFAULT_LOOPS);
    let board_name = opts.board_name();
    let off_line = bench::sched_cmdline(loops, opts.append());
    let on_line = bench::sched_cmdline(loops, &format!("{} {TRACE_ON}", opts.append()));
    let (off, on, conditions) = match board_name {
        "linuxu" => {
            let board = boards::find(board_name)?;
            let all_apps = apps::discover(&ws.root)?;
            let app = apps::find(&all_apps, SCHED_APP)?;
            setup::ensure_toolchain(ws, board)?;
            let image = image::build(ws, board, app)?;
            let (off, off_wall, pin) =
                host_baseline::sched_rhea(&image.elf, &off_line, loops, opts.verbose)?;
            let (on, on_wall, _) =
                host_baseline::sched_rhea(&image.elf, &on_line, loops, opts.verbose)?;
            let pinned = match pin {
                Ok(()) => "pinned to one host CPU (taskset)".to_string(),
                Err(why) => format!("not pinned ({why})"),
            };
            (
                off,
                on,
                format!(
                    "LinuxU process, {pinned}; walls {:.1} s off, {:.1} s on",
                    off_wall.as_secs_f64(),
                    on_wall.as_secs_f64()
                ),
            )
        }
        "qemu-x86_64" => {
            let board = boards::find(board_name)?;
            let machine = board.machine(opts.machine.as_deref())?;
            let p = bench::prepare(ws, board, SCHED_APP, opts)?;
            let run = |line: &str| -> Result<(RheaSched, Duration)> {
                bench::sched_rhea(&p.qemu, board, machine, p.accel, &p.image, line, opts)
            };
            let (off, off_wall) = run(&off_line)?;
            let (on, on_wall) = run(&on_line)?;
            (
                off,
                on,
                format!(
                    "qemu-x86_64 {machine}/{}, -smp {}; walls {:.1} s off, {:.1} s on",
                    p.accel.name(),
                    opts.smp,
                    off_wall.as_secs_f64(),
                    on_wall.as_secs_f64()
                ),
            )
        }
        other => {
            return usage(format!(
                "`bench trace` runs on qemu-x86_64 or linuxu, not {other}"
            ));
        }
    };
    println!();
    println!("== bench trace: bench-sched with tracing off, then on ({TRACE_ON}), loops {loops}");
    println!("conditions: {conditions}; the same image, run back to back");
    for line in report(&off, &on) {
        println!("{line}");
    }
    Ok(())
}

/// The report's lines: each measure off, on and on/off; then the event's cost.
fn report(off: &RheaSched, on: &RheaSched) -> Vec<String> {
    let mut rows: Vec<(String, Option<f64>, Option<f64>)> = vec![
        (
            "yield_switch ns".into(),
            off.yield_switch.map(|s| s.ns),
            on.yield_switch.map(|s| s.ns),
        ),
        (
            "sem_pingpong ns".into(),
            off.sem_pingpong.map(|s| s.ns),
            on.sem_pingpong.map(|s| s.ns),
        ),
        (
            "irq_to_thread avg ns".into(),
            off.irq_to_thread.map(|s| s.avg_ns),
            on.irq_to_thread.map(|s| s.avg_ns),
        ),
        (
            "irq_to_thread p99 ns".into(),
            off.irq_to_thread.map(|s| s.p99_ns),
            on.irq_to_thread.map(|s| s.p99_ns),
        ),
    ];
    for period in [200u32, 1000] {
        for hog in [false, true] {
            let get = |r: &RheaSched| r.cyclic_run(period, hog).map(|c| c.avg_us);
            rows.push((
                format!(
                    "cyclic {period} us{} avg us",
                    if hog { " +hog" } else { "" }
                ),
                get(off),
                get(on),
            ));
        }
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut out = vec![format!(
        "  {:<28} {:>10} {:>10} {:>8}",
        "measure", "off", "on", "on/off"
    )];
    for (name, a, b) in rows {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
            _ => "-".to_string(),
        };
        out.push(format!(
            "  {name:<28} {:>10} {:>10} {ratio:>8}",
            fmt(a),
            fmt(b)
        ));
    }
    match (off.trace_event, on.trace_event) {
        (Some((off_ns, false)), Some((on_ns, true))) => out.push(format!(
            "  one app event (instant!): {on_ns:.1} ns recorded; {off_ns:.1} ns when app tracing is off (the check)"
        )),
        (off_ev, on_ev) => out.push(format!(
            "  one app event: not measured as expected (off run: {off_ev:?}, on run: {on_ev:?})"
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_ratios_and_the_event_cost() {
        let run = |ns: f64, on: bool| {
            let text = format!(
                "RESULT conditions tsc_hz=1000000000 loops=10\n\
                 RESULT yield_switch cycles=100.0 ns={ns}\n\
                 RESULT trace_event ns={} on={}\nRESULT done\n",
                if on { 40.0 } else { 1.5 },
                u8::from(on)
            );
            bench::parse_sched_console(text.lines())
        };
        let lines = report(&run(100.0, false), &run(125.0, true));
        let yield_line = lines.iter().find(|l| l.contains("yield_switch")).unwrap();
        assert!(yield_line.contains("100.0") && yield_line.contains("125.0"));
        assert!(yield_line.trim_end().ends_with("1.25"), "{yield_line}");
        let last = lines.last().unwrap();
        assert!(
            last.contains("40.0 ns recorded") && last.contains("1.5 ns"),
            "{last}"
        );
        // A run that did not trace says so instead of a figure.
        let lines = report(&run(100.0, false), &run(100.0, false));
        assert!(lines.last().unwrap().contains("not measured"));
    }
}
