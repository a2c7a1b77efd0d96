//! Host tests of `cargo xtask trace`: a known scenario written with the dump's own writer
//! (two CPUs, a priority-inheritance chain, wake-ups, an interrupt, counters, an app span,
//! names), converted, and the Perfetto file read back with an independent protobuf
//! wire-format decoder (below; it shares nothing with the encoder) and checked against the
//! scenario; a damaged and a cut-off dump; the command's usage errors.

use std::collections::HashMap;

use rhea_trace::frame::{Header, Writer};
use rhea_trace::{
    ALL, IpiKind, Kind, LeftAs, NO_THREAD, ObjKind, PrioWhy, Record, WakeWhy, name_records,
};

use super::readback::{Ev, V, read, slices};
use super::{Converted, convert};

// ---------------------------------------------------------------------------------------
// The scenario (times in µs; the records carry ns).
// ---------------------------------------------------------------------------------------

const IDLE0: u64 = 0x1_0000_0000;
const IDLE1: u64 = 0x1_0000_0001;
const MAIN: u64 = 0x1_0000_0002;
const L: u64 = 0x1_0000_0003;
const M: u64 = 0x1_0000_0004;
const H: u64 = 0x1_0000_0005;
const W: u64 = 0x1_0000_0006;
const MUTEX_A: u64 = 0xa0;
const MUTEX_B: u64 = 0xb0;
const QUEUE_DEPTH: u64 = 1;
const CRITICAL: u64 = 2;
const DONE: u64 = 3;

fn us(t: u64) -> u64 {
    t * 1000
}

fn switch(t: u64, out: u64, inc: u64, left: LeftAs, out_prio: u8, in_prio: u8) -> Record {
    Record::new(us(t), Kind::Switch, out, inc)
        .x(left as u8)
        .y(u16::from(out_prio) | u16::from(in_prio) << 8)
}

fn wake(t: u64, woken: u64, waker: u64, why: WakeWhy, waker_cpu: u16) -> Record {
    Record::new(us(t), Kind::Wake, woken, waker)
        .x(why as u8)
        .y(waker_cpu)
}

fn prio(t: u64, th: u64, cause: u64, old: u8, new: u8, why: PrioWhy, depth: u32) -> Record {
    Record::new(us(t), Kind::Prio, th, cause)
        .x(new)
        .y(u16::from(old))
        .z(why as u32 | depth << 8)
}

fn block(t: u64, th: u64, kind: ObjKind, obj: u64) -> Record {
    Record::new(us(t), Kind::Block, th, obj).x(kind as u8)
}

fn create(t: u64, th: u64, base: u8, name: &str) -> Vec<Record> {
    let mut v = vec![Record::new(us(t), Kind::Create, th, MAIN).x(base)];
    v.extend(name_records(us(t), th, name));
    v
}

fn cpu0() -> Vec<Record> {
    let mut v = vec![switch(0, IDLE0, MAIN, LeftAs::Idle, 0, 10)];
    v.extend(create(1, L, 10, "pi-low"));
    v.extend(create(2, M, 20, "pi-mid"));
    v.extend(create(3, H, 30, "pi-high"));
    v.extend(create(4, W, 40, "irq-worker"));
    v.extend([
        wake(5, L, MAIN, WakeWhy::Resumed, 0),
        Record::new(us(6), Kind::IpiSend, 1, 0).x(IpiKind::Resched as u8),
        wake(20, M, MAIN, WakeWhy::Resumed, 0),
        switch(21, MAIN, M, LeftAs::Ready, 10, 20),
        // M holds B and blocks on A, which L holds: L inherits M's priority.
        prio(30, L, M, 10, 20, PrioWhy::Boost, 1),
        block(31, M, ObjKind::Mutex, MUTEX_A),
        switch(32, M, MAIN, LeftAs::Blocked, 20, 10),
        wake(40, H, MAIN, WakeWhy::Resumed, 0),
        switch(41, MAIN, H, LeftAs::Ready, 10, 30),
        // H blocks on B: M inherits H's priority, and through M's wait L too.
        prio(50, M, H, 20, 30, PrioWhy::Boost, 1),
        prio(51, L, H, 20, 30, PrioWhy::Boost, 2),
        block(52, H, ObjKind::Mutex, MUTEX_B),
        switch(53, H, MAIN, LeftAs::Blocked, 30, 10),
        // An interrupt wakes the worker.
        Record::new(us(60), Kind::IrqEnter, 33, 0),
        wake(61, W, NO_THREAD, WakeWhy::Signaled, 0),
        Record::new(us(63), Kind::IrqExit, 33, 0),
        switch(64, MAIN, W, LeftAs::Ready, 10, 40),
        Record::new(us(66), Kind::Counter, QUEUE_DEPTH, 7),
        block(67, W, ObjKind::Queue, 0x40),
        switch(68, W, MAIN, LeftAs::Blocked, 40, 10),
        // L handed A to M (on cpu1): M runs, releases B to H and is restored.
        switch(76, MAIN, M, LeftAs::Ready, 10, 30),
        prio(80, M, H, 30, 20, PrioWhy::Restore, 1),
        wake(81, H, M, WakeWhy::Acquired, 0),
        switch(82, M, H, LeftAs::Ready, 20, 30),
        Record::new(us(85), Kind::Instant, DONE, 0),
        Record::new(us(90), Kind::Exit, H, 0),
        switch(90, H, M, LeftAs::Exited, 30, 20),
    ]);
    v
}

fn cpu1() -> Vec<Record> {
    vec![
        Record::new(us(7), Kind::IpiTake, 0, 0).x(IpiKind::Resched as u8),
        switch(10, IDLE1, L, LeftAs::Idle, 0, 10),
        Record::new(us(12), Kind::SpanBegin, CRITICAL, 0),
        Record::new(us(70), Kind::SpanEnd, CRITICAL, 0),
        // L releases A: restored, and M (waiting for A) gets it.
        prio(71, L, M, 30, 10, PrioWhy::Restore, 2),
        wake(72, M, L, WakeWhy::Acquired, 1),
        Record::new(us(73), Kind::Counter, QUEUE_DEPTH, 3),
        block(74, L, ObjKind::Sleep, 0),
        switch(75, L, IDLE1, LeftAs::Blocked, 10, 0),
    ]
}

/// The scenario's dump, as console text with other output between its lines.
fn scenario() -> String {
    let mut text = String::from("rhea: booting on qemu-x86_64 (cpu0)\nrhea: app main\n");
    let mut w = Writer::new(|line: &str| text.push_str(line));
    w.header(&Header {
        cpus: 2,
        mode: rhea_trace::Mode::UntilFull as u8,
        categories: ALL as u8,
        time: us(100),
        capacity: 4096,
    });
    for (cpu, recs, dropped) in [(0u8, cpu0(), 0), (1, cpu1(), 2)] {
        w.cpu(cpu, recs.len() as u64, dropped, 0);
        for (i, chunk) in recs.chunks(4).enumerate() {
            w.records(cpu, (i * 4) as u32, chunk);
        }
    }
    w.thread(MAIN, 10, 10, "main");
    w.thread(M, 20, 20, "pi-mid");
    w.string(QUEUE_DEPTH as u16, "queue-depth");
    w.string(CRITICAL as u16, "critical");
    w.string(DONE as u16, "done");
    w.end();
    text.push_str("rhea: app main returned\n");
    text
}

fn converted() -> Converted {
    convert(&scenario()).expect("converts")
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn the_scenario_dump_is_whole() {
    let c = converted();
    assert!(c.dump.complete, "{:?}", c.dump.problems);
    assert!(c.dump.problems.is_empty(), "{:?}", c.dump.problems);
    // The same dump gives the same bytes.
    assert_eq!(converted().perfetto, c.perfetto);
}

#[test]
fn a_ring_dump_whose_first_switch_in_was_overwritten() {
    // cpu1's records begin inside a run of L: the run is taken from the first record.
    let mut text = String::new();
    let mut w = Writer::new(|line: &str| text.push_str(line));
    w.header(&Header {
        cpus: 1,
        mode: rhea_trace::Mode::Ring as u8,
        categories: ALL as u8,
        time: us(50),
        capacity: 4,
    });
    let recs = [
        Record::new(us(5), Kind::TimerFire, 300, 0),
        wake(20, M, L, WakeWhy::Signaled, 0),
        // M woken at the same ns it is switched in: no zero-length "ready" slice.
        switch(20, L, M, LeftAs::Ready, 10, 20),
        wake(30, L, M, WakeWhy::Signaled, 0),
    ];
    w.cpu(0, 4, 0, 17);
    w.records(0, 0, &recs);
    w.end();
    let c = convert(&text).unwrap();
    let r = read(&c.perfetto);
    let cpu0 = slices(&r, r.track("cpu0"));
    let names: Vec<(u64, &str, u64)> = cpu0
        .iter()
        .map(|(b, n, e)| (b / 1000, n.as_str(), e / 1000))
        .collect();
    assert_eq!(names, [(5, "thread #3", 20), (20, "thread #4", 50)]);
    let m = slices(&r, r.track("thread #4 (prio 20)"));
    assert_eq!(m, [(us(20), "running".to_string(), us(50))]);
    assert!(
        c.report
            .contains("cpu0: held 4, arrived 4, dropped 0, overwritten 17"),
        "{}",
        c.report
    );
    assert!(c.report.contains("mode ring"), "{}", c.report);
}

#[test]
fn threads_and_cpus_have_named_tracks() {
    let r = read(&converted().perfetto);
    let threads: Vec<String> = r.tracks.values().filter_map(|t| t.2.clone()).collect();
    for want in [
        "main (prio 10)",
        "pi-low (prio 10)",
        "pi-mid (prio 20)",
        "pi-high (prio 30)",
        "irq-worker (prio 40)",
    ] {
        assert!(threads.iter().any(|t| t == want), "{want} in {threads:?}");
    }
    let rhea = r.track("rhea");
    for cpu in ["cpu0", "cpu1"] {
        assert_eq!(r.tracks[&r.track(cpu)].1, Some(rhea));
    }
    assert_eq!(r.tracks[&r.track("cpu0 irq")].1, Some(r.track("cpu0")));
}

#[test]
fn cpu_tracks_hold_the_running_threads_in_time_order() {
    let r = read(&converted().perfetto);
    let cpu0: Vec<(u64, String, u64)> = slices(&r, r.track("cpu0"));
    let want0 = [
        (0, "main", 21),
        (21, "pi-mid", 32),
        (32, "main", 41),
        (41, "pi-high", 53),
        (53, "main", 64),
        (64, "irq-worker", 68),
        (68, "main", 76),
        (76, "pi-mid", 82),
        (82, "pi-high", 90),
        (90, "pi-mid", 100),
    ];
    let got0: Vec<(u64, &str, u64)> = cpu0
        .iter()
        .map(|(b, n, e)| (b / 1000, n.as_str(), e / 1000))
        .collect();
    assert_eq!(got0, want0);
    // cpu1: L, then idle (a gap).
    let cpu1 = slices(&r, r.track("cpu1"));
    assert_eq!(cpu1, [(us(10), "pi-low".to_string(), us(75))]);
    let irq = slices(&r, r.track("cpu0 irq"));
    assert_eq!(irq, [(us(60), "irq 33".to_string(), us(63))]);
}

#[test]
fn thread_tracks_show_states() {
    let r = read(&converted().perfetto);
    let m = r.track("pi-mid (prio 20)");
    let got: Vec<(u64, String)> = slices(&r, m)
        .into_iter()
        .map(|(b, n, _)| (b / 1000, n))
        .collect();
    let want = [
        (20, "ready"),
        (21, "running"),
        (32, "blocked (mutex)"),
        (72, "ready"),
        (76, "running"),
        (82, "ready (preempted)"),
        (90, "running"),
    ];
    let want: Vec<(u64, String)> = want.iter().map(|(t, n)| (*t, n.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn flows_link_each_wake_to_the_woken_threads_next_run() {
    let r = read(&converted().perfetto);
    let mut starts: HashMap<u64, (u64, u64)> = HashMap::new();
    for e in &r.events {
        for &f in &e.flows {
            assert_eq!(e.kind, 3, "a flow starts at the wake instant");
            assert!(
                starts.insert(f, (e.ts, e.track)).is_none(),
                "flow {f} twice"
            );
        }
    }
    let mut links = Vec::new();
    for e in &r.events {
        for &f in &e.ends_flows {
            assert_eq!((e.kind, e.name.as_deref()), (1, Some("running")));
            let (from_ts, from_track) = starts.remove(&f).expect("the flow starts");
            let to = r.tracks[&e.track].2.clone().expect("a thread track");
            links.push((
                from_ts / 1000,
                r.tracks[&from_track].0.clone(),
                to,
                e.ts / 1000,
            ));
        }
    }
    assert!(starts.is_empty(), "flows without an end: {starts:?}");
    links.sort();
    let want = [
        (5, "main (prio 10)", "pi-low (prio 10)", 10),
        (20, "main (prio 10)", "pi-mid (prio 20)", 21),
        (40, "main (prio 10)", "pi-high (prio 30)", 41),
        (61, "cpu0 irq", "irq-worker (prio 40)", 64),
        (72, "pi-low (prio 10)", "pi-mid (prio 20)", 76),
        (81, "pi-mid (prio 20)", "pi-high (prio 30)", 82),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c, d)| (*a, b.to_string(), c.to_string(), *d))
        .collect();
    assert_eq!(links, want);
}

#[test]
fn boosts_and_restores_come_in_order() {
    let r = read(&converted().perfetto);
    let mut got = Vec::new();
    for e in &r.events {
        let Some(name) = &e.name else { continue };
        if !name.starts_with("prio ") {
            continue;
        }
        let thread = r.tracks[&e.track].2.clone().unwrap();
        let new = match &e.args["new"] {
            V::Varint(v) => *v,
            other => panic!("{other:?}"),
        };
        let depth = match &e.args["depth"] {
            V::Varint(v) => *v,
            other => panic!("{other:?}"),
        };
        let why = match &e.args["why"] {
            V::Len(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        got.push((e.ts / 1000, thread, why, new, depth));
    }
    let want = [
        (30, "pi-low (prio 10)", "boost", 20, 1),
        (50, "pi-mid (prio 20)", "boost", 30, 1),
        (51, "pi-low (prio 10)", "boost", 30, 2),
        (71, "pi-low (prio 10)", "restore", 10, 2),
        (80, "pi-mid (prio 20)", "restore", 20, 1),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(t, th, w, n, d)| (*t, th.to_string(), w.to_string(), *n, *d))
        .collect();
    assert_eq!(got, want);
    // The effective-priority counters.
    let values = |track: &str| -> Vec<(u64, i64)> {
        r.on(r.track(track))
            .iter()
            .map(|e| (e.ts / 1000, e.counter.expect("a counter value")))
            .collect()
    };
    assert_eq!(
        values("pi-low prio"),
        [(0, 10), (30, 20), (51, 30), (71, 10)]
    );
    assert_eq!(values("pi-mid prio"), [(0, 20), (50, 30), (80, 20)]);
    assert!(r.tracks[&r.track("pi-low prio")].3, "a counter track");
}

#[test]
fn app_counters_spans_and_instants() {
    let r = read(&converted().perfetto);
    let q = r.track("queue-depth");
    assert!(r.tracks[&q].3);
    let values: Vec<(u64, i64)> = r
        .on(q)
        .iter()
        .map(|e| (e.ts / 1000, e.counter.unwrap()))
        .collect();
    assert_eq!(values, [(66, 7), (73, 3)]);
    let app = r.track("pi-low app");
    assert_eq!(r.tracks[&app].1, Some(r.track("pi-low (prio 10)")));
    assert_eq!(slices(&r, app), [(us(12), "critical".to_string(), us(70))]);
    let done: Vec<&Ev> = r
        .events
        .iter()
        .filter(|e| e.name.as_deref() == Some("done"))
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].track, r.track("pi-high (prio 30)"));
    let block = r
        .on(r.track("pi-high (prio 30)"))
        .into_iter()
        .find(|e| e.name.as_deref() == Some("block on mutex"))
        .expect("H's block instant");
    assert_eq!(block.args["object"], V::Varint(MUTEX_B));
}

#[test]
fn the_report_tells_the_story() {
    let c = converted();
    let rep = &c.report;
    println!("{rep}");
    for want in [
        "trace: 2 CPUs, mode full, categories sched,irq,net,app",
        "irq 33 -> irq-worker",
        "n=1 min 4.0 p50 4.0 max 4.0 µs",
        "priority inheritance: 1 episode",
        "chain depth 2, threads",
        "boost   pi-low           10 -> 20 by pi-mid (depth 1)",
        "boost   pi-low           20 -> 30 by pi-high (depth 2)",
        "restore pi-mid           30 -> 20 by pi-high (depth 1)",
        "cpu1: held 9, arrived 9, dropped 2, overwritten 0",
        "3.0 µs  cpu0 irq 33",
        "problems: none",
    ] {
        assert!(rep.contains(want), "{want:?} not in the report:\n{rep}");
    }
    let mid = rep
        .lines()
        .find(|l| l.trim_start().starts_with("pi-mid") && l.contains('%'))
        .unwrap();
    // M ran 21..32, 76..82, 90..100: 27 µs of 100.
    assert!(mid.contains("27.0") && mid.contains("27.0%"), "{mid}");
    // The preemption delays: M woken at 72 kept waiting for main until 76.
    assert!(
        rep.contains("4.0 µs  cpu0: main kept it from pi-mid (woken at 72000 ns)"),
        "{rep}"
    );
}

#[test]
fn a_damaged_dump_still_converts_and_says_which_line() {
    let text = scenario();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // One byte of frame #4 (cpu0's third records frame) lost on the wire.
    let at = lines
        .iter()
        .position(|l| l.contains("~rt 00000004 "))
        .unwrap();
    lines[at].remove(30);
    let damaged = lines.join("\n");
    let c = convert(&damaged).expect("converts what is whole");
    assert!(
        c.dump.problems[0].starts_with(&format!("line {}:", at + 1)),
        "{:?}",
        c.dump.problems
    );
    assert!(
        c.report.contains(&format!("line {}:", at + 1)),
        "{}",
        c.report
    );
    let r = read(&c.perfetto);
    assert!(!r.events.is_empty());
    // Cut off: the last lines never arrived and the last kept one is cut in the middle.
    let keep = lines.len() - 8;
    let mut cut = lines[..keep].join("\n");
    cut.push('\n');
    cut.push_str(&lines[keep][..25]);
    let c = convert(&cut).expect("converts what arrived");
    assert!(!c.dump.complete);
    assert!(
        c.dump.problems.iter().any(|p| p.contains("cut off")),
        "{:?}",
        c.dump.problems
    );
    let r = read(&c.perfetto);
    assert!(
        r.events
            .iter()
            .any(|e| e.name.as_deref() == Some("running"))
    );
    // Nothing at all is an error that says what was looked for.
    let e = convert("rhea: booting\nrhea: app main returned\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("no trace dump"), "{e}");
}

#[test]
fn the_command_line() {
    use crate::cli::{Cmd, parse};
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (cmd, opts) = parse(&args(&[
        "trace",
        "--board",
        "linuxu",
        "--app",
        "hello",
        "--cpus",
        "4",
        "--out",
        "x.pftrace",
        "--append",
        "rhea.trace_mode=ring",
    ]))
    .unwrap();
    assert_eq!(cmd, Cmd::Trace);
    assert_eq!(opts.cpus, Some(4));
    assert_eq!(opts.out.as_deref(), Some(std::path::Path::new("x.pftrace")));
    assert_eq!(opts.append(), "rhea.trace_mode=ring");
    let (_, opts) = parse(&args(&["trace", "--from", "log.txt"])).unwrap();
    assert_eq!(opts.from.as_deref(), Some(std::path::Path::new("log.txt")));
    let usage_of = |a: &[&str]| match parse(&args(a)) {
        Err(crate::Error::Usage(m)) => m,
        other => panic!("{a:?}: {other:?}"),
    };
    assert!(usage_of(&["trace", "--bogus"]).starts_with("unknown option `--bogus` for `trace`"));
    assert_eq!(
        usage_of(&["trace", "--cpus", "0"]),
        "--cpus wants a number from 1 to 64, got `0`"
    );
    assert!(usage_of(&["run", "--out", "x"]).starts_with("unknown option `--out` for `run`"));
    let ws = crate::Workspace::locate();
    let run = |a: &[&str]| {
        let (_, opts) = parse(&args(a)).unwrap();
        super::run(&ws, &opts).err().unwrap()
    };
    match run(&["trace", "--board", "nope"]) {
        crate::Error::Usage(m) => assert!(m.contains("unknown board `nope`"), "{m}"),
        other => panic!("{other:?}"),
    }
    match run(&["trace", "--from", "x.log", "--board", "linuxu"]) {
        crate::Error::Usage(m) => assert!(m.contains("--board has no use"), "{m}"),
        other => panic!("{other:?}"),
    }
    match run(&["trace", "--from", "/nonexistent/console.log"]) {
        crate::Error::Failed(m) => assert!(m.contains("cannot read"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn from_a_log_writes_the_trace_and_the_report() {
    let dir = std::env::temp_dir().join(format!("rhea-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("console.log");
    std::fs::write(&log, scenario()).unwrap();
    let out = dir.join("pi.perfetto-trace");
    let c = super::convert_to(&scenario(), &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), c.perfetto);
    assert_eq!(
        std::fs::read_to_string(dir.join("pi.txt")).unwrap(),
        c.report
    );
    // protoc, when installed, must read it as protobuf too.
    match std::process::Command::new("protoc")
        .arg("--decode_raw")
        .stdin(std::fs::File::open(&out).unwrap())
        .output()
    {
        Ok(o) => {
            assert!(
                o.status.success(),
                "protoc --decode_raw: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(String::from_utf8_lossy(&o.stdout).contains("pi-high"));
        }
        Err(_) => println!("note: protoc is not installed: skipped `protoc --decode_raw`"),
    }
    std::fs::remove_dir_all(&dir).ok();
}
