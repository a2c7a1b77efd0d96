//! The Perfetto trace: a `Trace` of `TracePacket`s in the TrackEvent format, encoded by hand
//! (a varint and length-delimited writer; no codegen). Field numbers and wire types are
//! those of Perfetto's protos (`protos/perfetto/trace/...`), cited at each constant below.
//!
//! Tracks: a process track `rhea`; one thread track per thread (ThreadDescriptor, the name
//! with the priority) with its states as slices (`running`, `ready`, `blocked (mutex)`,
//! `suspended`); one track per CPU (`cpuN`, slices named by the running thread; idle is a
//! gap) with a child `cpuN irq` for interrupt handlers; counter tracks for app counters and
//! each thread's effective priority; a child track `<thread> app` for its app spans (its
//! scheduling slices would not nest with spans that outlive a block). Wake-ups are instants
//! with a flow to the woken thread's next `running` slice. Every packet carries the same
//! `trusted_packet_sequence_id`; timestamps are the kernel clock's ns; packets are sorted by
//! time (a slice's end before a begin at the same time).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rhea_trace::{IpiKind, Kind, LeftAs};

use super::model::{Timeline, left_as_name, obj_name, prio_why_name, wake_name};

/// Wire types (protobuf encoding): varint, 64-bit, length-delimited.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

/// `message Trace { repeated TracePacket packet = 1; }` (trace.proto).
const TRACE_PACKET: u32 = 1;

/// `TracePacket` (trace_packet.proto).
mod packet {
    /// `optional uint64 timestamp = 8;`
    pub(super) const TIMESTAMP: u32 = 8;
    /// `uint32 trusted_packet_sequence_id = 10;` (oneof optional_trusted_packet_sequence_id)
    pub(super) const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
    /// `TrackEvent track_event = 11;` (oneof data)
    pub(super) const TRACK_EVENT: u32 = 11;
    /// `optional uint32 sequence_flags = 13;`
    pub(super) const SEQUENCE_FLAGS: u32 = 13;
    /// `SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED = 1`
    pub(super) const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
    /// `TrackDescriptor track_descriptor = 60;` (oneof data)
    pub(super) const TRACK_DESCRIPTOR: u32 = 60;
}

/// `TrackDescriptor` (track_event/track_descriptor.proto).
mod track {
    /// `optional uint64 uuid = 1;`
    pub(super) const UUID: u32 = 1;
    /// `optional string name = 2;`
    pub(super) const NAME: u32 = 2;
    /// `optional ProcessDescriptor process = 3;`
    pub(super) const PROCESS: u32 = 3;
    /// `optional ThreadDescriptor thread = 4;`
    pub(super) const THREAD: u32 = 4;
    /// `optional uint64 parent_uuid = 5;`
    pub(super) const PARENT_UUID: u32 = 5;
    /// `optional CounterDescriptor counter = 8;`
    pub(super) const COUNTER: u32 = 8;
}

/// `ProcessDescriptor` (track_event/process_descriptor.proto).
mod process {
    /// `optional int32 pid = 1;`
    pub(super) const PID: u32 = 1;
    /// `optional string process_name = 6;`
    pub(super) const PROCESS_NAME: u32 = 6;
}

/// `ThreadDescriptor` (track_event/thread_descriptor.proto).
mod thread {
    /// `optional int32 pid = 1;`
    pub(super) const PID: u32 = 1;
    /// `optional int32 tid = 2;`
    pub(super) const TID: u32 = 2;
    /// `optional string thread_name = 5;`
    pub(super) const THREAD_NAME: u32 = 5;
}

/// `CounterDescriptor` (track_event/counter_descriptor.proto).
mod counter {
    /// `optional Unit unit = 3;`
    pub(super) const UNIT: u32 = 3;
    /// `Unit.UNIT_COUNT = 2`
    pub(super) const UNIT_COUNT: u64 = 2;
}

/// `TrackEvent` (track_event/track_event.proto).
mod event {
    /// `repeated DebugAnnotation debug_annotations = 4;`
    pub(super) const DEBUG_ANNOTATIONS: u32 = 4;
    /// `optional Type type = 9;`
    pub(super) const TYPE: u32 = 9;
    /// `optional uint64 track_uuid = 11;`
    pub(super) const TRACK_UUID: u32 = 11;
    /// `repeated string categories = 22;`
    pub(super) const CATEGORIES: u32 = 22;
    /// `string name = 23;` (oneof name_field)
    pub(super) const NAME: u32 = 23;
    /// `int64 counter_value = 30;` (oneof counter_value_field)
    pub(super) const COUNTER_VALUE: u32 = 30;
    /// `repeated fixed64 flow_ids = 47;`
    pub(super) const FLOW_IDS: u32 = 47;
    /// `repeated fixed64 terminating_flow_ids = 48;`
    pub(super) const TERMINATING_FLOW_IDS: u32 = 48;
    /// `Type.TYPE_SLICE_BEGIN = 1`
    pub(super) const SLICE_BEGIN: u64 = 1;
    /// `Type.TYPE_SLICE_END = 2`
    pub(super) const SLICE_END: u64 = 2;
    /// `Type.TYPE_INSTANT = 3`
    pub(super) const INSTANT: u64 = 3;
    /// `Type.TYPE_COUNTER = 4`
    pub(super) const COUNTER: u64 = 4;
}

/// `DebugAnnotation` (track_event/debug_annotation.proto).
mod annotation {
    /// `string name = 10;` (oneof name_field)
    pub(super) const NAME: u32 = 10;
    /// `uint64 uint_value = 3;` (oneof value)
    pub(super) const UINT_VALUE: u32 = 3;
    /// `int64 int_value = 4;` (oneof value)
    pub(super) const INT_VALUE: u32 = 4;
    /// `string string_value = 6;` (oneof value)
    pub(super) const STRING_VALUE: u32 = 6;
}

/// One protobuf message being written.
#[derive(Debug, Default, Clone)]
pub(crate) struct Msg(Vec<u8>);

impl Msg {
    fn varint_raw(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u64) {
        self.varint_raw(u64::from(field) << 3 | wire);
    }

    /// A varint field (uint*, int* as two's complement, bool, enum).
    pub(crate) fn varint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, VARINT);
        self.varint_raw(v);
        self
    }

    /// A fixed64 field.
    pub(crate) fn fixed64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length-delimited field.
    pub(crate) fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, LEN);
        self.varint_raw(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A string field.
    pub(crate) fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    /// An embedded message field.
    pub(crate) fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }

    /// The encoded bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A debug annotation's value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    U(u64),
    I(i64),
    S(String),
}

fn args_msgs(e: &mut Msg, args: &[(&str, Arg)]) {
    for (name, value) in args {
        let mut a = Msg::default();
        a.string(annotation::NAME, name);
        match value {
            Arg::U(v) => a.varint(annotation::UINT_VALUE, *v),
            Arg::I(v) => a.varint(annotation::INT_VALUE, *v as u64),
            Arg::S(s) => a.string(annotation::STRING_VALUE, s),
        };
        e.msg(event::DEBUG_ANNOTATIONS, &a);
    }
}

/// Track uuids: a kind in the high 32 bits, an index below.
pub(crate) mod uuid {
    pub(crate) const PROCESS: u64 = 1 << 32;
    pub(crate) fn thread(i: usize) -> u64 {
        2 << 32 | i as u64
    }
    pub(crate) fn thread_app(i: usize) -> u64 {
        3 << 32 | i as u64
    }
    pub(crate) fn thread_prio(i: usize) -> u64 {
        4 << 32 | i as u64
    }
    pub(crate) fn cpu(c: u8) -> u64 {
        5 << 32 | u64::from(c)
    }
    pub(crate) fn cpu_irq(c: u8) -> u64 {
        6 << 32 | u64::from(c)
    }
    pub(crate) fn counter(id: u64) -> u64 {
        7 << 32 | (id & 0xffff_ffff)
    }
    pub(crate) fn cpu_app(c: u8) -> u64 {
        8 << 32 | u64::from(c)
    }
}

/// The pid of the process track; thread `i` has tid `TID_BASE + i`.
const PID: u64 = 1;
const TID_BASE: u64 = 1000;
/// The one packet sequence.
pub(crate) const SEQUENCE_ID: u64 = 1;

/// Events being collected: (time, rank, order, event). At one time, slice ends (rank 0) come
/// before begins and instants (1), and the end of a zero-length slice after its begin (2).
#[derive(Default)]
struct Events {
    list: Vec<(u64, u8, usize, Msg)>,
    used: BTreeSet<u64>,
}

impl Events {
    fn push(&mut self, ts: u64, rank: u8, e: Msg) {
        let n = self.list.len();
        self.list.push((ts, rank, n, e));
    }

    fn base(track: u64, kind: u64, name: Option<&str>) -> Msg {
        let mut e = Msg::default();
        e.varint(event::TRACK_UUID, track).varint(event::TYPE, kind);
        if let Some(name) = name {
            e.string(event::NAME, name);
        }
        e
    }

    /// A slice `start..end` on `track`; `flows_in` end at its begin.
    fn slice(
        &mut self,
        track: u64,
        (start, end): (u64, u64),
        name: &str,
        args: &[(&str, Arg)],
        flows_in: &[u64],
    ) {
        self.used.insert(track);
        let mut b = Self::base(track, event::SLICE_BEGIN, Some(name));
        args_msgs(&mut b, args);
        for &f in flows_in {
            b.fixed64(event::TERMINATING_FLOW_IDS, f);
        }
        self.push(start, 1, b);
        let e = Self::base(track, event::SLICE_END, None);
        self.push(end.max(start), if end > start { 0 } else { 2 }, e);
    }

    /// A thread-state slice: as [`Events::slice`], but none when it would last no time (a
    /// zero-length slice beginning with another at the same time would not nest).
    fn state(
        &mut self,
        track: u64,
        (start, end): (u64, u64),
        name: &str,
        args: &[(&str, Arg)],
        flows_in: &[u64],
    ) {
        if end > start {
            self.slice(track, (start, end), name, args, flows_in);
        }
    }

    /// An instant on `track`; `flows_out` start at it.
    fn instant(
        &mut self,
        track: u64,
        ts: u64,
        name: &str,
        cat: &str,
        args: &[(&str, Arg)],
        flows_out: &[u64],
    ) {
        self.used.insert(track);
        let mut e = Self::base(track, event::INSTANT, Some(name));
        e.string(event::CATEGORIES, cat);
        args_msgs(&mut e, args);
        for &f in flows_out {
            e.fixed64(event::FLOW_IDS, f);
        }
        self.push(ts, 1, e);
    }

    fn counter(&mut self, track: u64, ts: u64, value: i64) {
        self.used.insert(track);
        let mut e = Self::base(track, event::COUNTER, None);
        e.varint(event::COUNTER_VALUE, value as u64);
        self.push(ts, 1, e);
    }
}

/// The trace of `t`, encoded.
pub(crate) fn encode(t: &Timeline) -> Vec<u8> {
    let mut ev = Events::default();
    // Wake-ups: an instant (on the waker's thread, else the CPU's interrupt or CPU track)
    // with a flow to the woken thread's next run.
    let mut flows_into_run: HashMap<usize, Vec<u64>> = HashMap::new();
    for (i, w) in t.wakes.iter().enumerate() {
        let flow = i as u64 + 1;
        let track = match (w.waker, w.irq) {
            (Some(waker), _) => uuid::thread(waker),
            (None, Some(_)) => uuid::cpu_irq(w.cpu),
            (None, None) => uuid::cpu(w.cpu),
        };
        let flows: &[u64] = if let Some(run) = w.next_run {
            flows_into_run.entry(run).or_default().push(flow);
            &[flow]
        } else {
            &[]
        };
        ev.instant(
            track,
            w.time,
            &format!("wake {}", t.threads[w.woken].name),
            "sched",
            &[
                ("woken", Arg::S(t.threads[w.woken].name.clone())),
                ("why", Arg::S(wake_name(w.why).to_string())),
                ("waker", Arg::S(t.name(w.waker).to_string())),
                ("cpu", Arg::U(u64::from(w.cpu))),
            ],
            flows,
        );
    }
    // Runs: on the CPU track (idle is a gap) and the thread track; between runs the thread's
    // other states.
    let mut by_thread: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, r) in t.runs.iter().enumerate() {
        by_thread.entry(r.thread).or_default().push(i);
        let th = &t.threads[r.thread];
        if !th.idle {
            ev.slice(
                uuid::cpu(r.cpu),
                (r.start, r.end),
                &th.name,
                &[("thread", Arg::S(th.label()))],
                &[],
            );
        }
        let flows = flows_into_run.get(&i).map_or(&[][..], Vec::as_slice);
        ev.slice(
            uuid::thread(r.thread),
            (r.start, r.end),
            "running",
            &[("cpu", Arg::U(u64::from(r.cpu)))],
            flows,
        );
    }
    let mut wakes_of: HashMap<usize, Vec<u64>> = HashMap::new();
    for w in &t.wakes {
        wakes_of.entry(w.woken).or_default().push(w.time);
    }
    for (&thread, runs) in &by_thread {
        let wakes = wakes_of.get(&thread).map_or(&[][..], Vec::as_slice);
        let track = uuid::thread(thread);
        // Before the first run: ready from its first wake-up (a spawn).
        let first = &t.runs[runs[0]];
        if !first.open_start
            && let Some(&w) = wakes.iter().find(|&&w| w <= first.start)
        {
            ev.state(track, (w, first.start), "ready", &[], &[]);
        }
        for (k, &ri) in runs.iter().enumerate() {
            let r = &t.runs[ri];
            let Some(left) = r.left_as else { continue };
            let next = runs.get(k + 1).map_or(t.end, |&n| t.runs[n].start);
            if left == LeftAs::Exited as u8 || left == LeftAs::Idle as u8 {
                continue;
            }
            let still_ready = [
                (LeftAs::Ready, "ready (preempted)"),
                (LeftAs::Yielded, "ready (yielded)"),
                (LeftAs::SliceEnded, "ready (slice ended)"),
            ];
            if let Some((_, name)) = still_ready.iter().find(|(l, _)| *l as u8 == left) {
                ev.state(track, (r.end, next), name, &[], &[]);
                continue;
            }
            let state = match (left, r.blocked_on) {
                (l, Some((kind, obj))) if l == LeftAs::Blocked as u8 => (
                    format!("blocked ({})", obj_name(kind)),
                    vec![("object", Arg::U(obj))],
                ),
                (l, _) => (left_as_name(l).to_string(), vec![]),
            };
            match wakes.iter().find(|&&w| w >= r.end && w <= next) {
                Some(&w) => {
                    ev.state(track, (r.end, w), &state.0, &state.1, &[]);
                    ev.state(track, (w, next), "ready", &[], &[]);
                }
                None => ev.state(track, (r.end, next), &state.0, &state.1, &[]),
            }
        }
    }
    // Interrupt handlers.
    for irq in &t.irqs {
        ev.slice(
            uuid::cpu_irq(irq.cpu),
            (irq.start, irq.end.unwrap_or(t.end)),
            &format!("irq {}", irq.line),
            &[("line", Arg::U(irq.line))],
            &[],
        );
    }
    // App spans.
    for s in &t.spans {
        let track = match s.thread {
            Some(th) => uuid::thread_app(th),
            None => uuid::cpu_app(s.cpu),
        };
        ev.slice(
            track,
            (s.start, s.end.unwrap_or(t.end)),
            &t.string(s.name),
            &[],
            &[],
        );
    }
    // Effective priorities: the first known, then each change.
    for (i, th) in t.threads.iter().enumerate() {
        if th.idle {
            continue;
        }
        // Before its first change it had that change's old priority.
        let first = match t.prios.iter().find(|p| p.thread == i) {
            Some(p) => Some(p.old),
            None => th.base.or(th.first_prio),
        };
        if let Some(p) = first {
            ev.counter(uuid::thread_prio(i), t.start, i64::from(p));
        }
    }
    for p in &t.prios {
        ev.counter(uuid::thread_prio(p.thread), p.time, i64::from(p.new));
    }
    // Instants of the other records, and app counters.
    let index: HashMap<u64, usize> = t
        .threads
        .iter()
        .enumerate()
        .map(|(i, th)| (th.id, i))
        .collect();
    for e in &t.events {
        let r = &e.rec;
        let cpu_track = uuid::cpu(e.cpu);
        let on_thread = |id: u64| index.get(&id).map_or(cpu_track, |&i| uuid::thread(i));
        let cpu_arg = ("cpu", Arg::U(u64::from(e.cpu)));
        match r.kind() {
            Some(Kind::Switch | Kind::Wake | Kind::Name | Kind::IrqEnter | Kind::IrqExit)
            | Some(Kind::SpanBegin | Kind::SpanEnd) => {}
            Some(Kind::Block) => {
                let track = on_thread(r.a);
                ev.instant(
                    track,
                    r.time,
                    &format!("block on {}", obj_name(r.x)),
                    "sched",
                    &[("object", Arg::U(r.b)), cpu_arg],
                    &[],
                );
            }
            Some(Kind::Prio) => {
                let track = on_thread(r.a);
                let cause = if r.b == rhea_trace::NO_THREAD {
                    "-".to_string()
                } else {
                    index
                        .get(&r.b)
                        .map_or_else(|| format!("{:#x}", r.b), |&i| t.threads[i].name.clone())
                };
                ev.instant(
                    track,
                    r.time,
                    &format!("prio {} {}→{}", prio_why_name(r.z as u8), r.y as u8, r.x),
                    "sched",
                    &[
                        ("new", Arg::U(u64::from(r.x))),
                        ("old", Arg::U(u64::from(r.y as u8))),
                        ("why", Arg::S(prio_why_name(r.z as u8).to_string())),
                        ("depth", Arg::U(u64::from(r.z >> 8))),
                        ("cause", Arg::S(cause)),
                        cpu_arg,
                    ],
                    &[],
                );
            }
            Some(Kind::Create) => {
                let track = on_thread(r.a);
                ev.instant(
                    track,
                    r.time,
                    "create",
                    "sched",
                    &[("base prio", Arg::U(u64::from(r.x))), cpu_arg],
                    &[],
                );
            }
            Some(Kind::Exit) => {
                let track = on_thread(r.a);
                ev.instant(
                    track,
                    r.time,
                    "exit",
                    "sched",
                    &[("code", Arg::I(r.b as i64)), cpu_arg],
                    &[],
                );
            }
            Some(Kind::Counter) => {
                ev.counter(uuid::counter(r.a), r.time, r.b as i64);
            }
            Some(Kind::Instant) => {
                let track = e.running.map_or(cpu_track, uuid::thread);
                ev.instant(track, r.time, &t.string(r.a), "app", &[cpu_arg], &[]);
            }
            Some(k) => {
                let (name, args): (String, Vec<(&str, Arg)>) = match k {
                    Kind::TimerArm => ("timer arm".into(), vec![("deadline", Arg::U(r.a))]),
                    Kind::TimerFire => ("timer fire".into(), vec![("late ns", Arg::U(r.a))]),
                    Kind::IpiSend => (
                        format!("ipi {} → cpu{}", ipi_name(r.x), r.a),
                        vec![("target", Arg::U(r.a))],
                    ),
                    Kind::IpiTake => (format!("ipi {} taken", ipi_name(r.x)), vec![]),
                    Kind::CallSend => (format!("call → cpu{}", r.a), vec![("target", Arg::U(r.a))]),
                    Kind::CallRun => ("call run".into(), vec![("ns", Arg::U(r.a))]),
                    Kind::LockSpin => ("sched lock spin".into(), vec![("ns", Arg::U(r.a))]),
                    Kind::LockHold => (
                        "sched lock held (longest yet)".into(),
                        vec![("ns", Arg::U(r.a))],
                    ),
                    Kind::FrameIn => (
                        "frame in".into(),
                        vec![("nic", Arg::U(r.a)), ("len", Arg::U(r.b))],
                    ),
                    Kind::FrameOut => (
                        "frame out".into(),
                        vec![("nic", Arg::U(r.a)), ("len", Arg::U(r.b))],
                    ),
                    Kind::FrameDrop => (
                        "frame drop".into(),
                        vec![
                            ("nic", Arg::U(r.a)),
                            ("drops", Arg::U(r.b)),
                            ("reason", Arg::U(u64::from(r.x))),
                        ],
                    ),
                    Kind::Freeze => (
                        format!("trace frozen: {}", t.string(r.a)),
                        vec![("trigger", Arg::S(t.string(r.a)))],
                    ),
                    _ => (k.name().to_string(), vec![]),
                };
                let track = if e.irq_depth > 0 {
                    uuid::cpu_irq(e.cpu)
                } else {
                    cpu_track
                };
                ev.instant(track, r.time, &name, k.category_name(), &args, &[]);
            }
            None => {
                ev.instant(
                    cpu_track,
                    r.time,
                    &format!("kind {}", r.kind),
                    "unknown",
                    &[("a", Arg::U(r.a)), ("b", Arg::U(r.b))],
                    &[],
                );
            }
        }
    }

    // The packets: the descriptors first, then the events in time order.
    let mut out = Msg::default();
    let mut first = true;
    let mut put = |out: &mut Msg, ts: Option<u64>, field: u32, body: &Msg| {
        let mut p = Msg::default();
        if let Some(ts) = ts {
            p.varint(packet::TIMESTAMP, ts);
        }
        p.varint(packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
        if first {
            p.varint(
                packet::SEQUENCE_FLAGS,
                packet::SEQ_INCREMENTAL_STATE_CLEARED,
            );
            first = false;
        }
        p.msg(field, body);
        out.msg(TRACE_PACKET, &p);
    };
    for d in descriptors(t, &ev.used) {
        put(&mut out, None, packet::TRACK_DESCRIPTOR, &d);
    }
    ev.list.sort_by_key(|(ts, rank, n, _)| (*ts, *rank, *n));
    for (ts, _, _, e) in &ev.list {
        put(&mut out, Some(*ts), packet::TRACK_EVENT, e);
    }
    out.into_bytes()
}

fn ipi_name(x: u8) -> &'static str {
    if x == IpiKind::Call as u8 {
        "call"
    } else {
        "resched"
    }
}

trait CategoryName {
    fn category_name(self) -> &'static str;
}

impl CategoryName for Kind {
    fn category_name(self) -> &'static str {
        match self.category() {
            rhea_trace::Category::Sched => "sched",
            rhea_trace::Category::Irq => "irq",
            rhea_trace::Category::Net => "net",
            rhea_trace::Category::App => "app",
        }
    }
}

/// The track descriptors: the process, every thread, every CPU, and the other tracks used.
fn descriptors(t: &Timeline, used: &BTreeSet<u64>) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut proc_ = Msg::default();
    proc_
        .varint(process::PID, PID)
        .string(process::PROCESS_NAME, "rhea");
    let mut d = Msg::default();
    d.varint(track::UUID, uuid::PROCESS)
        .string(track::NAME, "rhea")
        .msg(track::PROCESS, &proc_);
    out.push(d);
    for (i, th) in t.threads.iter().enumerate() {
        let mut td = Msg::default();
        td.varint(thread::PID, PID)
            .varint(thread::TID, TID_BASE + i as u64)
            .string(thread::THREAD_NAME, &th.label());
        let mut d = Msg::default();
        d.varint(track::UUID, uuid::thread(i))
            .varint(track::PARENT_UUID, uuid::PROCESS)
            .string(track::NAME, &th.label())
            .msg(track::THREAD, &td);
        out.push(d);
    }
    let named = |uuid: u64, parent: u64, name: &str| {
        let mut d = Msg::default();
        d.varint(track::UUID, uuid)
            .varint(track::PARENT_UUID, parent)
            .string(track::NAME, name);
        d
    };
    for &c in &t.cpus {
        out.push(named(uuid::cpu(c), uuid::PROCESS, &format!("cpu{c}")));
        if used.contains(&uuid::cpu_irq(c)) {
            out.push(named(
                uuid::cpu_irq(c),
                uuid::cpu(c),
                &format!("cpu{c} irq"),
            ));
        }
        if used.contains(&uuid::cpu_app(c)) {
            out.push(named(
                uuid::cpu_app(c),
                uuid::cpu(c),
                &format!("cpu{c} app"),
            ));
        }
    }
    let mut counter_desc = Msg::default();
    counter_desc.varint(counter::UNIT, counter::UNIT_COUNT);
    for (i, th) in t.threads.iter().enumerate() {
        if used.contains(&uuid::thread_app(i)) {
            out.push(named(
                uuid::thread_app(i),
                uuid::thread(i),
                &format!("{} app", th.name),
            ));
        }
        if used.contains(&uuid::thread_prio(i)) {
            let mut d = named(
                uuid::thread_prio(i),
                uuid::thread(i),
                &format!("{} prio", th.name),
            );
            d.msg(track::COUNTER, &counter_desc);
            out.push(d);
        }
    }
    let mut ids: Vec<u64> = used
        .iter()
        .filter(|&&u| u >> 32 == uuid::counter(0) >> 32)
        .map(|&u| u & 0xffff_ffff)
        .collect();
    ids.sort_unstable();
    for id in ids {
        let mut d = named(uuid::counter(id), uuid::PROCESS, &t.string(id));
        d.msg(track::COUNTER, &counter_desc);
        out.push(d);
    }
    out
}
