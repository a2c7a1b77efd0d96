//! The text report of a trace: per-thread run time, CPU share and switches; wake-up-to-run
//! latency per thread (a histogram); interrupt-to-handler-thread latency; the longest
//! interrupt handlers (interrupts off) and preemption delays; priority-inheritance episodes;
//! each CPU buffer's counts; and what the dump lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use rhea_trace::frame::Dump;
use rhea_trace::{CATEGORY_NAMES, Kind, LeftAs, Mode, PrioWhy};

use super::model::{Prio, Timeline, prio_why_name};

/// Latency histogram buckets' upper bounds, ns (the last is open).
const BUCKETS: [u64; 10] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
];

/// How many of the longest sections each list shows.
const TOP: usize = 5;

/// ns as µs with one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// A bucket's label: `≤2µs`, `>1000µs`.
fn bucket_label(i: usize) -> String {
    match BUCKETS.get(i) {
        Some(b) => format!("≤{}µs", b / 1000),
        None => format!(">{}µs", BUCKETS[BUCKETS.len() - 1] / 1000),
    }
}

/// min / p50 / max of `v` (sorted here), µs.
fn spread(v: &mut [u64]) -> String {
    v.sort_unstable();
    match (v.first(), v.last()) {
        (Some(min), Some(max)) => format!(
            "n={} min {} p50 {} max {} µs",
            v.len(),
            us(*min),
            us(v[(v.len() - 1) / 2]),
            us(*max)
        ),
        _ => "n=0".to_string(),
    }
}

/// The histogram of `v`: its non-empty buckets.
fn histogram(v: &[u64]) -> String {
    let mut counts = [0usize; BUCKETS.len() + 1];
    for &x in v {
        counts[BUCKETS
            .iter()
            .position(|&b| x <= b)
            .unwrap_or(BUCKETS.len())] += 1;
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("{}:{n}", bucket_label(i)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report of `dump` (its timeline `t`).
pub(crate) fn report(dump: &Dump, t: &Timeline) -> String {
    let mut s = String::new();
    header(&mut s, dump, t);
    threads(&mut s, t);
    irq_latency(&mut s, t);
    sections(&mut s, t);
    inheritance(&mut s, t);
    buffers(&mut s, dump);
    let problems: Vec<&String> = dump.problems.iter().chain(&t.notes).collect();
    if problems.is_empty() {
        s.push_str("\nproblems: none\n");
    } else {
        let _ = writeln!(s, "\nproblems ({}):", problems.len());
        for p in problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    s
}

fn header(s: &mut String, dump: &Dump, t: &Timeline) {
    let records: usize = dump.cpus.iter().map(|c| c.records.len()).sum();
    let (mode, cats) = match &dump.header {
        Some(h) => (
            Mode::from_code(h.mode).map_or("unknown", |m| Mode::NAMES[m as usize]),
            CATEGORY_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| h.categories & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(","),
        ),
        None => ("unknown (no header)", String::from("unknown")),
    };
    let _ = writeln!(
        s,
        "trace: {} CPUs, mode {mode}, categories {cats}, {records} records, {} threads; \
         {} to {} ns ({} µs){}",
        t.cpus.len(),
        t.threads.iter().filter(|th| !th.idle).count(),
        t.start,
        t.end,
        us(t.end - t.start),
        if dump.complete {
            ""
        } else {
            "; the dump is incomplete"
        }
    );
}

fn threads(s: &mut String, t: &Timeline) {
    let span = (t.end - t.start).max(1);
    let _ = writeln!(
        s,
        "\nthreads (share: of the traced time; in: switched in; preempted/blocked: how it \
         left):"
    );
    let _ = writeln!(
        s,
        "  {:<24} {:>5} {:>10} {:>6} {:>4} {:>9} {:>7}",
        "thread", "prio", "run µs", "share", "in", "preempted", "blocked"
    );
    let mut order: Vec<usize> = (0..t.threads.len()).collect();
    let run_of = |i: usize| -> u64 {
        t.runs
            .iter()
            .filter(|r| r.thread == i)
            .map(|r| r.end - r.start)
            .sum()
    };
    order.sort_by_key(|&i| (t.threads[i].idle, std::cmp::Reverse(run_of(i)), i));
    for i in order {
        let th = &t.threads[i];
        let runs: Vec<_> = t.runs.iter().filter(|r| r.thread == i).collect();
        if runs.is_empty() && !t.wakes.iter().any(|w| w.woken == i) {
            continue;
        }
        let run = run_of(i);
        let ins = runs.iter().filter(|r| !r.open_start).count();
        let left = |l: LeftAs| runs.iter().filter(|r| r.left_as == Some(l as u8)).count();
        let _ = writeln!(
            s,
            "  {:<24} {:>5} {:>10} {:>5.1}% {:>4} {:>9} {:>7}",
            th.name,
            th.base
                .or(th.first_prio)
                .map_or("-".to_string(), |p| p.to_string()),
            us(run),
            run as f64 * 100.0 / span as f64,
            ins,
            left(LeftAs::Ready),
            left(LeftAs::Blocked)
        );
    }
    let _ = writeln!(
        s,
        "\nwake-up to run latency (Wake record to the thread's next switch-in):"
    );
    let mut any = false;
    for (i, th) in t.threads.iter().enumerate() {
        let mut lat: Vec<u64> = t
            .wakes
            .iter()
            .filter(|w| w.woken == i)
            .filter_map(|w| w.next_run.map(|r| t.runs[r].start - w.time))
            .collect();
        if lat.is_empty() {
            continue;
        }
        any = true;
        let hist = histogram(&lat);
        let _ = writeln!(s, "  {:<24} {}  [{hist}]", th.name, spread(&mut lat));
    }
    if !any {
        s.push_str("  (no wake-up followed by a run)\n");
    }
}

fn irq_latency(s: &mut String, t: &Timeline) {
    let _ = writeln!(
        s,
        "\ninterrupt to handler thread (IrqEnter to the switch-in of the thread it woke):"
    );
    let mut by: BTreeMap<(u64, usize), Vec<u64>> = BTreeMap::new();
    for w in &t.wakes {
        if let (Some(irq), Some(run)) = (w.irq, w.next_run) {
            let irq = &t.irqs[irq];
            by.entry((irq.line, w.woken))
                .or_default()
                .push(t.runs[run].start - irq.start);
        }
    }
    if by.is_empty() {
        s.push_str("  (no interrupt woke a thread)\n");
    }
    for ((line, th), mut v) in by {
        let _ = writeln!(
            s,
            "  irq {line} -> {:<16} {}",
            t.threads[th].name,
            spread(&mut v)
        );
    }
}

fn sections(s: &mut String, t: &Timeline) {
    let _ = writeln!(
        s,
        "\nlongest interrupt handlers (interrupts off, IrqEnter..IrqExit):"
    );
    let mut irqs: Vec<_> = t
        .irqs
        .iter()
        .filter_map(|i| i.end.map(|e| (e - i.start, i)))
        .collect();
    irqs.sort_by_key(|(d, i)| (std::cmp::Reverse(*d), i.start));
    if irqs.is_empty() {
        s.push_str("  (none)\n");
    }
    for (d, i) in irqs.iter().take(TOP) {
        let _ = writeln!(
            s,
            "  {:>8} µs  cpu{} irq {} at {} ns",
            us(*d),
            i.cpu,
            i.line,
            i.start
        );
    }
    // A higher-priority thread woken while a lower one ran on the CPU it then ran on, and
    // that lower one kept the CPU until the switch to it: the time it could not be preempted
    // (the wake-up's IPI and switch included).
    let mut delays = Vec::new();
    for w in &t.wakes {
        let Some(ri) = w.next_run else { continue };
        let next = &t.runs[ri];
        let Some(before) = t
            .runs
            .iter()
            .find(|r| r.cpu == next.cpu && r.end == next.start && r.start <= w.time)
        else {
            continue;
        };
        if before.thread == w.woken || t.threads[before.thread].idle {
            continue;
        }
        if let (Some(hi), Some(lo)) = (next.prio_in, before.prio_out)
            && hi > lo
        {
            delays.push((next.start - w.time, w, before));
        }
    }
    delays.sort_by_key(|(d, w, _)| (std::cmp::Reverse(*d), w.time));
    let _ = writeln!(
        s,
        "\nlongest preemption delays (a higher-priority thread woken until the lower one \
         running on its CPU gave way):"
    );
    if delays.is_empty() {
        s.push_str("  (none)\n");
    }
    for (d, w, before) in delays.iter().take(TOP) {
        let _ = writeln!(
            s,
            "  {:>8} µs  cpu{}: {} kept it from {} (woken at {} ns)",
            us(*d),
            before.cpu,
            t.threads[before.thread].name,
            t.threads[w.woken].name,
            w.time
        );
    }
    for (kind, what) in [
        (Kind::CallRun, "cross-CPU call"),
        (Kind::LockSpin, "scheduler-lock spin"),
        (
            Kind::LockHold,
            "scheduler-lock hold (interrupts off, no preemption)",
        ),
    ] {
        let mut v: Vec<(u64, u8, u64)> = t
            .events
            .iter()
            .filter(|e| e.rec.kind() == Some(kind))
            .map(|e| (e.rec.a, e.cpu, e.rec.time))
            .collect();
        if let Some(&(ns, cpu, at)) = v
            .iter()
            .max_by_key(|(ns, _, at)| (*ns, std::cmp::Reverse(*at)))
        {
            let n = v.len();
            v.clear();
            let _ = writeln!(
                s,
                "  longest {what}: {} µs on cpu{cpu} at {at} ns ({n} recorded)",
                us(ns)
            );
        }
    }
}

/// One priority-inheritance episode: from a boost until every boosted thread is back.
struct Episode<'a> {
    steps: Vec<&'a Prio>,
    threads: BTreeSet<usize>,
    over: bool,
}

fn inheritance(s: &mut String, t: &Timeline) {
    let mut episodes: Vec<Episode<'_>> = Vec::new();
    let mut boosted: BTreeSet<usize> = BTreeSet::new();
    for p in &t.prios {
        if p.why == PrioWhy::Set as u8 {
            continue;
        }
        let open = episodes.last().is_some_and(|e| !e.over);
        if !open {
            episodes.push(Episode {
                steps: Vec::new(),
                threads: BTreeSet::new(),
                over: false,
            });
        }
        let Some(e) = episodes.last_mut() else {
            continue;
        };
        e.steps.push(p);
        e.threads.insert(p.thread);
        e.threads.extend(p.cause);
        if p.why == PrioWhy::Boost as u8 {
            boosted.insert(p.thread);
        } else if p.why == PrioWhy::Restore as u8 {
            let base = t.threads[p.thread].base;
            if base.is_none_or(|b| p.new <= b) {
                boosted.remove(&p.thread);
            }
        }
        if boosted.is_empty() {
            e.over = true;
        }
    }
    let _ = writeln!(
        s,
        "\npriority inheritance: {} episode{}",
        episodes.len(),
        if episodes.len() == 1 { "" } else { "s" }
    );
    for (n, e) in episodes.iter().enumerate() {
        let (Some(first), Some(last)) = (e.steps.first(), e.steps.last()) else {
            continue;
        };
        let depth = e.steps.iter().map(|p| p.depth).max().unwrap_or(0);
        let names: Vec<&str> = e
            .threads
            .iter()
            .map(|&i| t.threads[i].name.as_str())
            .collect();
        let _ = writeln!(
            s,
            "  #{} at {} ns, {} µs{}, chain depth {depth}, threads {}:",
            n + 1,
            first.time,
            us(last.time - first.time),
            if e.over {
                ""
            } else {
                " (not over when the records end)"
            },
            names.join(", ")
        );
        for p in &e.steps {
            let _ = writeln!(
                s,
                "    +{:>8} µs  cpu{}  {:<7} {:<16} {:>2} -> {:<2} by {} (depth {})",
                us(p.time - first.time),
                p.cpu,
                prio_why_name(p.why),
                t.threads[p.thread].name,
                p.old,
                p.new,
                t.name(p.cause),
                p.depth
            );
        }
    }
}

fn buffers(s: &mut String, dump: &Dump) {
    let _ = writeln!(s, "\nbuffers:");
    for c in &dump.cpus {
        let _ = writeln!(
            s,
            "  cpu{}: held {}, arrived {}, dropped {}, overwritten {}",
            c.cpu,
            c.held,
            c.records.len(),
            c.dropped,
            c.overwritten
        );
    }
    if dump.cpus.is_empty() {
        s.push_str("  (no CPU's records arrived)\n");
    }
}
