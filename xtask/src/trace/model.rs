//! A dump ([`rhea_trace::frame::Dump`]) turned into a timeline both outputs read: every CPU's
//! records merged in time order, each with the thread running on its CPU then; the threads
//! with their names and priorities; the run intervals (switch-in to switch-out); wake-ups
//! with the run they led to; interrupts; priority changes; app spans.

use std::collections::HashMap;

use rhea_trace::frame::Dump;
use rhea_trace::{Kind, LeftAs, NO_THREAD, ObjKind, PrioWhy, Record};

/// A thread seen in the dump.
#[derive(Debug, Clone)]
pub(crate) struct Thread {
    /// The kernel's raw id.
    pub(crate) id: u64,
    /// Its name (from `Name` records or the live-thread frames), else `thread <slot>`.
    pub(crate) name: String,
    /// Its base priority, when a `Create` record or a live-thread frame gave it.
    pub(crate) base: Option<u8>,
    /// Its first known effective priority (base, or the first switch's or change's).
    pub(crate) first_prio: Option<u8>,
    /// A CPU's idle thread (it left a CPU as [`LeftAs::Idle`]).
    pub(crate) idle: bool,
}

impl Thread {
    /// Its name with its base priority, for labels: `worker-m (prio 20)`.
    pub(crate) fn label(&self) -> String {
        match self.base.or(self.first_prio) {
            Some(p) => format!("{} (prio {p})", self.name),
            None => self.name.clone(),
        }
    }
}

/// One record with where it was recorded and what was running there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) cpu: u8,
    pub(crate) rec: Record,
    /// The thread running on `cpu` just before the record (index into [`Timeline::threads`]).
    pub(crate) running: Option<usize>,
    /// Interrupt handlers under way on `cpu` at the record (before an `IrqEnter` is counted).
    pub(crate) irq_depth: usize,
}

/// A thread on a CPU from its switch-in to its switch-out.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) thread: usize,
    pub(crate) cpu: u8,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The switch-in is not in the dump (the run was under way when the CPU's records begin).
    pub(crate) open_start: bool,
    /// How it left ([`LeftAs`]'s code); `None`: still running when the records end.
    pub(crate) left_as: Option<u8>,
    /// What it blocked on (the last `Block` record in the run): kind and object.
    pub(crate) blocked_on: Option<(u8, u64)>,
    /// Its effective priority at the switch-in and at the switch-out (when recorded).
    pub(crate) prio_in: Option<u8>,
    pub(crate) prio_out: Option<u8>,
}

/// A wake-up and the run it led to.
#[derive(Debug, Clone)]
pub(crate) struct Wake {
    pub(crate) time: u64,
    pub(crate) cpu: u8,
    pub(crate) woken: usize,
    /// `None`: an interrupt handler or a timer.
    pub(crate) waker: Option<usize>,
    pub(crate) why: u8,
    /// The woken thread's next run (index into [`Timeline::runs`]).
    pub(crate) next_run: Option<usize>,
    /// The interrupt it was raised in (index into [`Timeline::irqs`]).
    pub(crate) irq: Option<usize>,
}

/// An interrupt handler: `IrqEnter` to `IrqExit` on one CPU.
#[derive(Debug, Clone)]
pub(crate) struct Irq {
    pub(crate) cpu: u8,
    pub(crate) line: u64,
    pub(crate) start: u64,
    /// `None`: no exit in the dump.
    pub(crate) end: Option<u64>,
}

/// An effective priority change.
#[derive(Debug, Clone)]
pub(crate) struct Prio {
    pub(crate) time: u64,
    pub(crate) cpu: u8,
    pub(crate) thread: usize,
    pub(crate) new: u8,
    pub(crate) old: u8,
    /// [`PrioWhy`]'s code.
    pub(crate) why: u8,
    /// The link's depth in the inheritance chain.
    pub(crate) depth: u32,
    /// The thread whose wait caused it.
    pub(crate) cause: Option<usize>,
}

/// An app span on a thread (or on a CPU when no thread was known to run).
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) thread: Option<usize>,
    pub(crate) cpu: u8,
    pub(crate) name: u64,
    pub(crate) start: u64,
    pub(crate) end: Option<u64>,
}

/// The dump as a timeline.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    pub(crate) threads: Vec<Thread>,
    /// The CPUs, in the dump's order.
    pub(crate) cpus: Vec<u8>,
    /// Every record, in time order (ties: the dump's order).
    pub(crate) events: Vec<Event>,
    /// The first and last time recorded (and the dump's time when later).
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) runs: Vec<Run>,
    pub(crate) wakes: Vec<Wake>,
    pub(crate) irqs: Vec<Irq>,
    pub(crate) prios: Vec<Prio>,
    pub(crate) spans: Vec<Span>,
    /// App strings by id.
    pub(crate) strings: HashMap<u64, String>,
    /// Inconsistencies met (a switch away from a thread not running there: records lost).
    pub(crate) notes: Vec<String>,
}

impl Timeline {
    /// A thread's name, or `-` for none.
    pub(crate) fn name(&self, thread: Option<usize>) -> &str {
        thread.map_or("-", |t| self.threads[t].name.as_str())
    }

    /// An app string's text, or `#id`.
    pub(crate) fn string(&self, id: u64) -> String {
        self.strings
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// Builds the timeline of `dump`.
    pub(crate) fn new(dump: &Dump) -> Timeline {
        let mut t = Timeline {
            cpus: dump.cpus.iter().map(|c| c.cpu).collect(),
            strings: dump
                .strings
                .iter()
                .map(|(id, s)| (u64::from(*id), s.clone()))
                .collect(),
            ..Timeline::default()
        };
        let mut merged: Vec<(u8, Record)> = dump
            .cpus
            .iter()
            .flat_map(|c| c.records.iter().map(move |r| (c.cpu, *r)))
            .collect();
        merged.sort_by_key(|(_, r)| r.time);
        t.start = merged.first().map_or(0, |(_, r)| r.time);
        t.end = merged.last().map_or(0, |(_, r)| r.time);
        if let Some(h) = &dump.header
            && h.time > t.end
            && !merged.is_empty()
        {
            t.end = h.time;
        }
        let mut ids: HashMap<u64, usize> = HashMap::new();
        let mut names = Names::default();
        for live in &dump.threads {
            let i = t.thread(&mut ids, live.id);
            t.threads[i].base = Some(live.base);
            names.by_id.insert(live.id, live.name.clone());
        }
        // Idle threads first: they are known by how they leave a CPU.
        for (_, r) in &merged {
            if r.kind() == Some(Kind::Switch) && r.x == LeftAs::Idle as u8 {
                let i = t.thread(&mut ids, r.a);
                t.threads[i].idle = true;
            }
        }
        let mut running: HashMap<u8, Current> = HashMap::new();
        let mut first_time: HashMap<u8, u64> = HashMap::new();
        let mut blocked_on: HashMap<usize, (u8, u64)> = HashMap::new();
        let mut irq_stack: HashMap<u8, Vec<usize>> = HashMap::new();
        let mut span_stack: HashMap<(Option<usize>, u8, u64), Vec<usize>> = HashMap::new();
        for (cpu, r) in merged {
            first_time.entry(cpu).or_insert(r.time);
            let cur = running.get(&cpu).map(|&(i, ..)| i);
            let depth = irq_stack.get(&cpu).map_or(0, Vec::len);
            t.events.push(Event {
                cpu,
                rec: r,
                running: cur,
                irq_depth: depth,
            });
            match r.kind() {
                Some(Kind::Switch) => {
                    let out = t.thread(&mut ids, r.a);
                    let inc = t.thread(&mut ids, r.b);
                    let (out_prio, in_prio) = (r.y as u8, (r.y >> 8) as u8);
                    t.threads[out].first_prio.get_or_insert(out_prio);
                    t.threads[inc].first_prio.get_or_insert(in_prio);
                    let (from, start, open, prio_in) = match running.remove(&cpu) {
                        Some(run) => run,
                        None => (out, first_time[&cpu], true, None),
                    };
                    if from != out {
                        t.notes.push(format!(
                            "cpu{cpu} at {} ns: switch away from {} but {} was running there \
                             (records lost?)",
                            r.time, t.threads[out].name, t.threads[from].name
                        ));
                    }
                    t.runs.push(Run {
                        thread: from,
                        cpu,
                        start,
                        end: r.time,
                        open_start: open,
                        left_as: Some(r.x),
                        blocked_on: blocked_on.remove(&from),
                        prio_in,
                        prio_out: Some(out_prio),
                    });
                    running.insert(cpu, (inc, r.time, false, Some(in_prio)));
                }
                Some(Kind::Wake) => {
                    let woken = t.thread(&mut ids, r.a);
                    let waker = (r.b != NO_THREAD).then(|| t.thread(&mut ids, r.b));
                    let irq = irq_stack.get(&cpu).and_then(|s| s.last().copied());
                    t.wakes.push(Wake {
                        time: r.time,
                        cpu,
                        woken,
                        waker,
                        why: r.x,
                        next_run: None,
                        irq: if waker.is_none() { irq } else { None },
                    });
                }
                Some(Kind::Block) => {
                    let th = t.thread(&mut ids, r.a);
                    blocked_on.insert(th, (r.x, r.b));
                }
                Some(Kind::Prio) => {
                    let th = t.thread(&mut ids, r.a);
                    let cause = (r.b != NO_THREAD).then(|| t.thread(&mut ids, r.b));
                    t.threads[th].first_prio.get_or_insert(r.y as u8);
                    if r.z & 0xff == PrioWhy::Set as u32 {
                        t.threads[th].base = Some(r.x);
                    }
                    t.prios.push(Prio {
                        time: r.time,
                        cpu,
                        thread: th,
                        new: r.x,
                        old: r.y as u8,
                        why: r.z as u8,
                        depth: r.z >> 8,
                        cause,
                    });
                }
                Some(Kind::Create) => {
                    let th = t.thread(&mut ids, r.a);
                    t.threads[th].base = Some(r.x);
                    t.threads[th].first_prio.get_or_insert(r.x);
                    names.created.insert(r.a as u32, r.a);
                }
                Some(Kind::Name) => names.part(&r),
                Some(Kind::IrqEnter) => {
                    t.irqs.push(Irq {
                        cpu,
                        line: r.a,
                        start: r.time,
                        end: None,
                    });
                    irq_stack.entry(cpu).or_default().push(t.irqs.len() - 1);
                }
                Some(Kind::IrqExit) => {
                    if let Some(i) = irq_stack.get_mut(&cpu).and_then(Vec::pop) {
                        t.irqs[i].end = Some(r.time);
                    }
                }
                Some(Kind::SpanBegin) => {
                    t.spans.push(Span {
                        thread: cur,
                        cpu,
                        name: r.a,
                        start: r.time,
                        end: None,
                    });
                    span_stack
                        .entry((cur, if cur.is_some() { 0 } else { cpu }, r.a))
                        .or_default()
                        .push(t.spans.len() - 1);
                }
                Some(Kind::SpanEnd) => {
                    let key = (cur, if cur.is_some() { 0 } else { cpu }, r.a);
                    if let Some(i) = span_stack.get_mut(&key).and_then(Vec::pop) {
                        t.spans[i].end = Some(r.time);
                    }
                }
                _ => {}
            }
        }
        // Runs still under way when the records end.
        let mut open: Vec<(u8, Current)> = running.into_iter().collect();
        open.sort_by_key(|(cpu, _)| *cpu);
        for (cpu, (thread, start, open_start, prio_in)) in open {
            t.runs.push(Run {
                thread,
                cpu,
                start,
                end: t.end,
                open_start,
                left_as: None,
                blocked_on: None,
                prio_in,
                prio_out: None,
            });
        }
        t.runs.sort_by_key(|r| (r.start, r.cpu));
        // Each wake-up's next run of the woken thread.
        let mut starts: HashMap<usize, Vec<(u64, usize)>> = HashMap::new();
        for (i, run) in t.runs.iter().enumerate() {
            if !run.open_start {
                starts.entry(run.thread).or_default().push((run.start, i));
            }
        }
        for w in &mut t.wakes {
            if let Some(list) = starts.get(&w.woken) {
                let at = list.partition_point(|&(s, _)| s < w.time);
                w.next_run = list.get(at).map(|&(_, i)| i);
            }
        }
        // Names: the live-thread frames', else the Name records' (by the id created with
        // that slot, else by slot).
        for th in &mut t.threads {
            let slot = th.id as u32;
            th.name = names
                .by_id
                .get(&th.id)
                .or_else(|| names.by_slot.get(&slot))
                .cloned()
                .unwrap_or_else(|| {
                    if th.id == NO_THREAD {
                        "(none)".to_string()
                    } else if th.idle {
                        format!("idle #{slot}")
                    } else {
                        format!("thread #{slot}")
                    }
                });
        }
        t
    }

    fn thread(&mut self, ids: &mut HashMap<u64, usize>, id: u64) -> usize {
        *ids.entry(id).or_insert_with(|| {
            self.threads.push(Thread {
                id,
                name: String::new(),
                base: None,
                first_prio: None,
                idle: false,
            });
            self.threads.len() - 1
        })
    }
}

/// A CPU's current run: the thread, since when, whether its switch-in is missing, its
/// effective priority at the switch-in.
type Current = (usize, u64, bool, Option<u8>);

/// Thread names as `Name` records carry them, part by part.
#[derive(Default)]
struct Names {
    /// Parts so far per slot: (length, bytes per part index).
    parts: HashMap<u32, (usize, HashMap<u8, [u8; 16]>)>,
    by_id: HashMap<u64, String>,
    by_slot: HashMap<u32, String>,
    /// The last thread created in each slot.
    created: HashMap<u32, u64>,
}

impl Names {
    fn part(&mut self, r: &Record) {
        let slot = r.z;
        let len = usize::from(r.y);
        let entry = self
            .parts
            .entry(slot)
            .or_insert_with(|| (len, HashMap::new()));
        if entry.0 != len || r.x == 0 {
            *entry = (len, HashMap::new());
        }
        let mut chunk = [0u8; 16];
        chunk[..8].copy_from_slice(&r.a.to_le_bytes());
        chunk[8..].copy_from_slice(&r.b.to_le_bytes());
        entry.1.insert(r.x, chunk);
        let need = len.div_ceil(16).max(1);
        if (0..need).all(|i| entry.1.contains_key(&(i as u8))) {
            let mut bytes: Vec<u8> = (0..need).flat_map(|i| entry.1[&(i as u8)]).collect();
            bytes.truncate(len);
            let name = String::from_utf8_lossy(&bytes).into_owned();
            self.parts.remove(&slot);
            match self.created.get(&slot) {
                Some(&id) if !self.by_id.contains_key(&id) => {
                    self.by_id.insert(id, name);
                }
                Some(_) => {}
                None => {
                    self.by_slot.insert(slot, name);
                }
            }
        }
    }
}

/// [`LeftAs`]'s name.
pub(crate) fn left_as_name(code: u8) -> &'static str {
    match code {
        c if c == LeftAs::Ready as u8 => "preempted",
        c if c == LeftAs::Yielded as u8 => "yielded",
        c if c == LeftAs::SliceEnded as u8 => "slice ended",
        c if c == LeftAs::Blocked as u8 => "blocked",
        c if c == LeftAs::Suspended as u8 => "suspended",
        c if c == LeftAs::Exited as u8 => "exited",
        c if c == LeftAs::Idle as u8 => "idle",
        _ => "left",
    }
}

/// [`ObjKind`]'s name.
pub(crate) fn obj_name(code: u8) -> &'static str {
    match code {
        c if c == ObjKind::Mutex as u8 => "mutex",
        c if c == ObjKind::Semaphore as u8 => "semaphore",
        c if c == ObjKind::Queue as u8 => "queue",
        c if c == ObjKind::Events as u8 => "event flags",
        c if c == ObjKind::Sleep as u8 => "sleep",
        _ => "object",
    }
}

/// [`rhea_trace::WakeWhy`]'s name.
pub(crate) fn wake_name(code: u8) -> &'static str {
    match code {
        1 => "signaled",
        2 => "acquired",
        3 => "timeout",
        4 => "abandoned",
        5 => "resumed",
        _ => "woken",
    }
}

/// [`PrioWhy`]'s name.
pub(crate) fn prio_why_name(code: u8) -> &'static str {
    match code {
        c if c == PrioWhy::Set as u8 => "set",
        c if c == PrioWhy::Boost as u8 => "boost",
        c if c == PrioWhy::Restore as u8 => "restore",
        _ => "change",
    }
}
