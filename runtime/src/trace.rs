//! Event tracing: what the kernel did, in time, per CPU; and the apps' own events.
//!
//! Each CPU records into its own fixed buffer (`rhea_trace::CpuBuf`, lock-free, allocated
//! once at boot: `rhea.trace_kib` KiB per CPU, 32 bytes an event). Recording an event whose
//! category is off costs one relaxed load and a branch; one that is on costs a clock read and
//! a push with interrupts off (so a dump waits for a bounded time, see `rhea_trace::buf`).
//!
//! - Categories (`rhea.trace=sched,irq,net,app`, `all`, `off`; at run time [`set_categories`]):
//!   which events are recorded. `sched`: switches, wake-ups, blocking, priorities and
//!   inheritance, thread create/exit, scheduler-lock contention. `irq`: interrupt entry/exit,
//!   timer programming and expiry, IPIs, cross-CPU calls. `net`: frames per NIC, drops.
//!   `app`: [`instant!`], [`span!`], [`counter!`](crate::trace::counter).
//! - Modes (`rhea.trace_mode=ring|full|freeze`, [`set_mode`]): a flight recorder (default),
//!   keep-the-first, or a ring that [`freeze`] stops on a trigger so the events leading up to
//!   it are kept. What is not recorded is counted (dropped, or overwritten), never silent.
//! - Out of the guest: [`dump`] prints the buffers on the console as framed, checksummed lines
//!   (`rhea_trace::frame`), which survive other output; [`dump_to`] hands the same lines to an
//!   app (the appliance's `/trace`). With `rhea.trace` given, the runtime dumps when main
//!   returns. `cargo xtask trace` turns a dump into a Perfetto trace and a report.
//!
//! Locks: [`NAMES`] (the app-string table, an IRQ-safe spin lock, a leaf) is taken only to
//! intern a name the first time a call site records; never on the event path after that.

use crate::kthread;
use crate::sync::{IrqGuard, SpinLock};
use crate::time;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use rhea_sched::{MAX_CPUS, Thread};
use rhea_trace::frame::{Header, RECORDS_PER_FRAME, Writer};
pub use rhea_trace::{Category, CategoryError, Counts, Mode};
use rhea_trace::{Kind, Record};

/// The categories on, as `rhea_trace::Category` bits.
static MASK: AtomicU32 = AtomicU32::new(0);
/// The mode's code.
static MODE: AtomicU8 = AtomicU8::new(Mode::Ring as u8);
/// Per CPU: its buffer, once allocated.
static BUFS: [rhea_sync::Once<rhea_trace::CpuBuf>; MAX_CPUS] =
    [const { rhea_sync::Once::new() }; MAX_CPUS];
/// Records per CPU buffer.
static CAPACITY: AtomicU64 = AtomicU64::new(0);
/// Set by [`freeze`] (mode freeze): the trigger has fired.
static TRIGGERED: AtomicBool = AtomicBool::new(false);

/// The buffer size when `rhea.trace_kib` does not say: 8192 events a CPU.
pub const DEFAULT_KIB: u64 = 256;

/// Sets tracing up at boot (after the heap, before the scheduler): `mask` the categories on,
/// `kib` each CPU's buffer, for `ncpus` CPUs. Allocates the buffers now, so nothing allocates
/// later. An allocation that fails leaves tracing off and says so.
pub(crate) fn init(mask: u32, mode: Mode, kib: u64, ncpus: usize) {
    let records = (kib << 10) as usize / rhea_trace::RECORD_BYTES;
    for buf in BUFS.iter().take(ncpus.min(MAX_CPUS)) {
        let mut words = Vec::new();
        if words.try_reserve_exact(records * 4).is_err() {
            crate::println!(
                "rhea: trace: cannot allocate {kib} KiB per CPU for {ncpus} CPUs: tracing is off"
            );
            return;
        }
        words.resize_with(records * 4, || AtomicU64::new(0));
        let words: &'static [AtomicU64] = Box::leak(words.into_boxed_slice());
        buf.call_once(|| rhea_trace::CpuBuf::new(words));
    }
    CAPACITY.store(records as u64, Ordering::Relaxed);
    MODE.store(mode as u8, Ordering::Relaxed);
    MASK.store(mask, Ordering::Release);
}

/// Whether tracing was set up at boot (`rhea.trace` given).
pub fn available() -> bool {
    BUFS[0].get().is_some()
}

/// Whether events of `cat` are recorded now.
#[inline]
pub fn enabled(cat: Category) -> bool {
    MASK.load(Ordering::Relaxed) & cat as u32 != 0
}

/// The categories on, as a mask of `Category` bits.
pub fn categories() -> u32 {
    MASK.load(Ordering::Relaxed)
}

/// Turns categories on and off: `mask` of `Category` bits (`rhea_trace::ALL` for every one).
/// Without buffers (`rhea.trace` not given at boot) nothing is recorded.
pub fn set_categories(mask: u32) {
    if available() {
        MASK.store(mask & rhea_trace::ALL, Ordering::Relaxed);
    }
}

/// [`set_categories`] from a list as on the command line (`sched,irq`); an unknown name is an
/// error naming the valid ones.
pub fn set_categories_str(list: &str) -> Result<(), CategoryError<'_>> {
    let mask = rhea_trace::parse_categories(list)?;
    set_categories(mask);
    Ok(())
}

/// The mode.
pub fn mode() -> Mode {
    Mode::from_code(MODE.load(Ordering::Relaxed)).unwrap_or(Mode::Ring)
}

/// Changes the mode (takes effect for events from now on).
pub fn set_mode(mode: Mode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// Records the event `make` builds (its time filled in) on this CPU, if `cat` is on.
#[inline]
pub(crate) fn emit(cat: Category, make: impl FnOnce() -> Record) {
    if enabled(cat) {
        stamp_and_push(make());
    }
}

/// Stamps `rec` with the time and records it on this CPU, interrupts off for the push. Out
/// of line: the event path's one copy in the image.
#[inline(never)]
fn stamp_and_push(mut rec: Record) {
    let _irqs = IrqGuard::new();
    rec.time = time::now().as_nanos();
    push(rec);
}

/// Stamps `rec` with the time and records it (interrupts off already).
#[inline(never)]
fn stamp_and_push_irqs_off(mut rec: Record) {
    rec.time = time::now().as_nanos();
    push(rec);
}

/// Records `rec` (interrupts off: the caller's guard).
#[inline(never)]
fn push(rec: Record) {
    if let Some(buf) = BUFS.get(kthread::cpu()).and_then(rhea_sync::Once::get) {
        buf.push(&rec, mode());
    }
}

/// Stops recording on every CPU (mode freeze: the trigger; other modes: a pause). The
/// trigger's name is recorded first. Later events are counted as dropped until [`thaw`].
pub fn freeze(trigger: &'static str) {
    if !available() || TRIGGERED.swap(true, Ordering::AcqRel) {
        return;
    }
    let id = intern(trigger);
    {
        let _irqs = IrqGuard::new();
        push(Record::new(
            time::now().as_nanos(),
            Kind::Freeze,
            u64::from(id),
            0,
        ));
    }
    for buf in BUFS.iter().filter_map(rhea_sync::Once::get) {
        buf.freeze();
    }
}

/// Whether [`freeze`] has stopped recording.
pub fn is_frozen() -> bool {
    TRIGGERED.load(Ordering::Acquire)
}

/// Records again after [`freeze`] (keeping what the buffers hold).
pub fn thaw() {
    for buf in BUFS.iter().filter_map(rhea_sync::Once::get) {
        buf.thaw();
    }
    TRIGGERED.store(false, Ordering::Release);
}

/// Empties every buffer (and its counts).
pub fn clear() {
    with_frozen(|bufs| {
        for b in bufs {
            b.clear();
        }
    });
    for m in &MAX_HOLD_NS {
        m.store(0, Ordering::Relaxed);
    }
}

/// Each CPU's counts: held, dropped, overwritten.
pub fn counts() -> Vec<Counts> {
    let mode = mode();
    BUFS.iter()
        .filter_map(rhea_sync::Once::get)
        .map(|b| b.counts(mode))
        .collect()
}

/// Runs `f` over the buffers with recording stopped and no push under way, then records
/// again unless [`freeze`] had stopped it.
fn with_frozen<R>(f: impl FnOnce(&[&rhea_trace::CpuBuf]) -> R) -> R {
    let bufs: Vec<&rhea_trace::CpuBuf> = BUFS.iter().filter_map(rhea_sync::Once::get).collect();
    for b in &bufs {
        b.freeze();
    }
    // Pushes run with interrupts off on their own CPU: a few hundred ns at most.
    for b in &bufs {
        while !b.quiescent() {
            core::hint::spin_loop();
        }
    }
    let r = f(&bufs);
    if !TRIGGERED.load(Ordering::Acquire) {
        for b in &bufs {
            b.thaw();
        }
    }
    r
}

/// Prints every buffer on the console as a dump (`~rt` lines), with the live threads and the
/// app strings. Recording pauses meanwhile (events then are counted as dropped). Thread
/// context only.
pub fn dump() {
    dump_to(|line| crate::print!("{line}"));
}

/// Hands a dump, line by line (each ending in a newline), to `out`: what [`dump`] prints.
pub fn dump_to(mut out: impl FnMut(&str)) {
    if !available() {
        return;
    }
    // The live threads first (allocating), outside the frozen window.
    let threads = live_threads();
    let strings: Vec<&'static str> = NAMES.lock().iter().copied().collect();
    let mode = mode();
    // The frames are written while recording is paused (events meanwhile are counted as
    // dropped): copying the records out first would need a second buffer as large as the trace.
    with_frozen(|bufs| {
        let mut w = Writer::new(&mut out);
        w.header(&Header {
            cpus: bufs.len() as u8,
            mode: mode as u8,
            categories: MASK.load(Ordering::Relaxed) as u8,
            time: time::now().as_nanos(),
            capacity: CAPACITY.load(Ordering::Relaxed) as u32,
        });
        for (cpu, b) in bufs.iter().enumerate() {
            let c = b.counts(mode);
            w.cpu(cpu as u8, c.held, c.dropped, c.overwritten);
            let mut chunk = [Record::default(); RECORDS_PER_FRAME];
            let mut i = 0;
            while i < c.held {
                let n = (c.held - i).min(RECORDS_PER_FRAME as u64) as usize;
                for (k, slot) in chunk.iter_mut().take(n).enumerate() {
                    *slot = b.get(mode, i + k as u64);
                }
                w.records(cpu as u8, i as u32, &chunk[..n]);
                i += n as u64;
            }
        }
        for (t, base, eff) in &threads {
            w.thread(t.id().as_u64(), *base, *eff, t.name());
        }
        for (id, s) in strings.iter().enumerate() {
            w.string(id as u16 + 1, s);
        }
        w.end();
    });
}

/// Every live thread with its base and effective priority (collected under the scheduler
/// lock into room reserved before it).
fn live_threads() -> Vec<(Arc<Thread>, u8, u8)> {
    let mut out: Vec<(Arc<Thread>, u8, u8)> = Vec::new();
    loop {
        let want = kthread::with_sched(|s, _| (s.thread_count(), Default::default())) + 4;
        out.reserve(want);
        let fitted = kthread::with_sched(|s, _| {
            if s.thread_count() > out.capacity() {
                return (false, Default::default());
            }
            s.for_each_thread(|t| {
                let id = t.id();
                let level = |p: Option<rhea_hal::Priority>| p.map_or(0, |p| p.level() as u8);
                out.push((
                    t.clone(),
                    level(s.base_priority(id)),
                    level(s.effective_priority(id)),
                ));
            });
            (true, Default::default())
        });
        if fitted {
            return out;
        }
        out.clear();
    }
}

/// The app strings: event names, by id − 1. At most [`MAX_NAMES`]; later names share id 0
/// ("?").
static NAMES: SpinLock<Vec<&'static str>> = SpinLock::new(Vec::new());

/// How many distinct app event names a run may use.
pub const MAX_NAMES: usize = 1024;

/// The id of `name` (1..), interning it the first time; 0 when the table is full.
pub fn intern(name: &'static str) -> u16 {
    let mut names = NAMES.lock();
    if let Some(i) = names
        .iter()
        .position(|n| core::ptr::eq(*n, name) || *n == name)
    {
        return i as u16 + 1;
    }
    if names.len() >= MAX_NAMES || names.try_reserve(1).is_err() {
        return 0;
    }
    names.push(name);
    names.len() as u16
}

/// A call site's interned name: `cache` holds its id + 1 once known.
#[doc(hidden)]
pub fn __id(cache: &AtomicU32, name: &'static str) -> u64 {
    match cache.load(Ordering::Relaxed) {
        0 => {
            let id = intern(name);
            cache.store(u32::from(id) + 1, Ordering::Relaxed);
            u64::from(id)
        }
        n => u64::from(n - 1),
    }
}

/// Records an app instant event named by `id` (see [`instant!`]).
#[doc(hidden)]
pub fn __instant(id: u64) {
    emit(Category::App, || Record::new(0, Kind::Instant, id, 0));
}

/// Records an app counter's value (see [`counter!`](crate::trace::counter)).
#[doc(hidden)]
pub fn __counter(id: u64, value: i64) {
    emit(Category::App, || {
        Record::new(0, Kind::Counter, id, value as u64)
    });
}

/// An app span: begun when made, ended when dropped (see [`span!`]).
#[derive(Debug)]
#[must_use = "a span ends when this is dropped"]
pub struct Span(u64);

impl Span {
    #[doc(hidden)]
    pub fn __begin(id: u64) -> Span {
        emit(Category::App, || Record::new(0, Kind::SpanBegin, id, 0));
        Span(id)
    }

    /// A span that records nothing (tracing of apps was off when it began).
    #[doc(hidden)]
    pub const fn __none() -> Span {
        Span(u64::MAX)
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.0 != u64::MAX {
            let id = self.0;
            emit(Category::App, || Record::new(0, Kind::SpanEnd, id, 0));
        }
    }
}

/// Records an instant event: `rhea::trace::instant!("deadline-miss")`. One load and a branch
/// when the `app` category is off.
#[doc(hidden)]
#[macro_export]
macro_rules! __trace_instant {
    ($name:literal) => {
        if $crate::trace::enabled($crate::trace::Category::App) {
            static ID: ::core::sync::atomic::AtomicU32 = ::core::sync::atomic::AtomicU32::new(0);
            $crate::trace::__instant($crate::trace::__id(&ID, $name));
        }
    };
}

/// Begins a span that ends when the returned guard drops:
/// `let _s = rhea::trace::span!("control-step");`.
#[doc(hidden)]
#[macro_export]
macro_rules! __trace_span {
    ($name:literal) => {
        if $crate::trace::enabled($crate::trace::Category::App) {
            static ID: ::core::sync::atomic::AtomicU32 = ::core::sync::atomic::AtomicU32::new(0);
            $crate::trace::Span::__begin($crate::trace::__id(&ID, $name))
        } else {
            $crate::trace::Span::__none()
        }
    };
}

/// Records a counter's value: `rhea::trace::counter!("queue-depth", n as i64)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __trace_counter {
    ($name:literal, $value:expr) => {
        if $crate::trace::enabled($crate::trace::Category::App) {
            static ID: ::core::sync::atomic::AtomicU32 = ::core::sync::atomic::AtomicU32::new(0);
            $crate::trace::__counter($crate::trace::__id(&ID, $name), $value);
        }
    };
}

pub use crate::__trace_counter as counter;
pub use crate::__trace_instant as instant;
pub use crate::__trace_span as span;

// ------------------------------------------------------------------------------------------
// The kernel's events

/// The scheduler's observer: keeps every thread's accounts (always) and records the
/// scheduling events (category `sched`). Runs under the scheduler lock.
pub(crate) struct KernelObserver;

impl rhea_sched::Observer for KernelObserver {
    fn event(&self, e: rhea_sched::SchedEvent<'_>) {
        use rhea_sched::SchedEvent as E;
        let now = time::now().as_nanos();
        // The accounts are kept always; a record is built only when it is wanted.
        match e {
            E::Wake { thread, .. } => thread.note_wake(now),
            E::Block { thread, on, .. } => thread.note_block(now, on),
            _ => {}
        }
        if !enabled(Category::Sched) {
            return;
        }
        let rec = match e {
            E::Wake { thread, why } => {
                let cpu = kthread::cpu();
                let waker = if kthread::interrupt_context().is_some() {
                    rhea_trace::NO_THREAD
                } else {
                    kthread::with_current(|t| t.id().as_u64()).unwrap_or(rhea_trace::NO_THREAD)
                };
                let why = match why {
                    rhea_sched::WakeReason::Signaled => rhea_trace::WakeWhy::Signaled,
                    rhea_sched::WakeReason::Acquired => rhea_trace::WakeWhy::Acquired,
                    rhea_sched::WakeReason::Timeout => rhea_trace::WakeWhy::Timeout,
                    rhea_sched::WakeReason::Abandoned => rhea_trace::WakeWhy::Abandoned,
                    rhea_sched::WakeReason::None => rhea_trace::WakeWhy::Resumed,
                };
                Record::new(now, Kind::Wake, thread.id().as_u64(), waker)
                    .x(why as u8)
                    .y(cpu as u16)
            }
            E::Block {
                thread,
                on: kind,
                object,
            } => {
                let kind = match kind {
                    rhea_sched::BlockOn::Mutex => rhea_trace::ObjKind::Mutex,
                    rhea_sched::BlockOn::Semaphore => rhea_trace::ObjKind::Semaphore,
                    rhea_sched::BlockOn::Queue => rhea_trace::ObjKind::Queue,
                    rhea_sched::BlockOn::Events => rhea_trace::ObjKind::Events,
                    rhea_sched::BlockOn::Sleep => rhea_trace::ObjKind::Sleep,
                };
                Record::new(now, Kind::Block, thread.id().as_u64(), object).x(kind as u8)
            }
            E::Prio {
                thread,
                old,
                new,
                cause,
                by,
                depth,
            } => {
                let cause = match cause {
                    rhea_sched::PrioCause::Set => rhea_trace::PrioWhy::Set,
                    rhea_sched::PrioCause::Boost => rhea_trace::PrioWhy::Boost,
                    rhea_sched::PrioCause::Restore => rhea_trace::PrioWhy::Restore,
                };
                Record::new(
                    now,
                    Kind::Prio,
                    thread.id().as_u64(),
                    by.map_or(rhea_trace::NO_THREAD, |b| b.as_u64()),
                )
                .x(new.level() as u8)
                .y(old.level() as u16)
                .z(cause as u32 | depth.min(0xff_ffff) << 8)
            }
            E::Create { thread, priority } => {
                let creator =
                    kthread::with_current(|t| t.id().as_u64()).unwrap_or(rhea_trace::NO_THREAD);
                let tid = thread.id().as_u64();
                push(Record::new(now, Kind::Create, tid, creator).x(priority.level() as u8));
                for r in rhea_trace::name_records(now, tid, thread.name()) {
                    push(r);
                }
                return;
            }
            E::Exit { thread, code } => {
                Record::new(now, Kind::Exit, thread.id().as_u64(), code as i64 as u64)
            }
        };
        push(rec);
    }
}

/// A switch on this CPU at `now` (scheduler lock held): the accounts, and the record.
#[inline(never)]
pub(crate) fn switch(now: u64, s: &rhea_sched::Sched, from: &Thread, to: &Thread) {
    from.note_switch_out();
    to.note_switch_in(now);
    if enabled(Category::Sched) {
        let left = match s.last_left(kthread::cpu()) {
            rhea_sched::LeftAs::Preempted => rhea_trace::LeftAs::Ready,
            rhea_sched::LeftAs::Yielded => rhea_trace::LeftAs::Yielded,
            rhea_sched::LeftAs::SliceEnded => rhea_trace::LeftAs::SliceEnded,
            rhea_sched::LeftAs::Blocked => rhea_trace::LeftAs::Blocked,
            rhea_sched::LeftAs::Suspended => rhea_trace::LeftAs::Suspended,
            rhea_sched::LeftAs::Exited => rhea_trace::LeftAs::Exited,
            rhea_sched::LeftAs::Idle => rhea_trace::LeftAs::Idle,
        };
        let level = |t: &Thread| s.effective_priority(t.id()).map_or(0, |p| p.level() as u16);
        push(
            Record::new(now, Kind::Switch, from.id().as_u64(), to.id().as_u64())
                .x(left as u8)
                .y(level(from) | level(to) << 8),
        );
    }
}

/// The scheduler lock was contended: this CPU spun `ns` for it (lock held, interrupts off).
#[cold]
#[inline(never)]
pub(crate) fn lock_spin(ns: u64) {
    if enabled(Category::Sched) {
        stamp_and_push_irqs_off(Record::new(0, Kind::LockSpin, ns, 0));
    }
}

/// Per CPU: the longest hold of the scheduler lock recorded since the last [`clear`], ns.
static MAX_HOLD_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// CPU `cpu` held the scheduler lock for `ns` (interrupts off, no preemption; called before
/// the release). Recorded only when it is the CPU's longest yet, so the longest
/// non-preemptible sections are kept without a record per lock.
#[inline(never)]
pub(crate) fn lock_held(cpu: usize, ns: u64) {
    if ns > MAX_HOLD_NS[cpu].load(Ordering::Relaxed) {
        MAX_HOLD_NS[cpu].store(ns, Ordering::Relaxed);
        stamp_and_push_irqs_off(Record::new(0, Kind::LockHold, ns, 0));
    }
}

/// Interrupt entry (`enter`) or exit on this CPU (interrupts off).
#[inline]
pub(crate) fn irq(enter: bool, vector: u8) {
    if enabled(Category::Irq) {
        let kind = if enter { Kind::IrqEnter } else { Kind::IrqExit };
        stamp_and_push_irqs_off(Record::new(0, kind, u64::from(vector), 0));
    }
}

/// An IPI of `kind` taken on this CPU (interrupt context).
pub(crate) fn ipi_taken(kind: rhea_trace::IpiKind) {
    if enabled(Category::Irq) {
        stamp_and_push_irqs_off(Record::new(0, Kind::IpiTake, 0, 0).x(kind as u8));
    }
}

/// An IPI of `kind` sent to `target`.
pub(crate) fn ipi_sent(kind: rhea_trace::IpiKind, target: usize) {
    emit(Category::Irq, || {
        Record::new(0, Kind::IpiSend, target as u64, 0).x(kind as u8)
    });
}

/// This CPU's timer programmed for `deadline` (ns; `u64::MAX`: disarmed).
pub(crate) fn timer_armed(deadline: u64) {
    emit(Category::Irq, || {
        Record::new(0, Kind::TimerArm, deadline, 0)
    });
}

/// This CPU's timer fired `late` ns after the deadline it was armed for.
pub(crate) fn timer_fired(late: u64) {
    emit(Category::Irq, || Record::new(0, Kind::TimerFire, late, 0));
}

/// A cross-CPU call posted to `target`.
pub(crate) fn call_sent(target: usize) {
    emit(Category::Irq, || {
        Record::new(0, Kind::CallSend, target as u64, 0)
    });
}

/// A cross-CPU call ran on this CPU for `ns`.
pub(crate) fn call_ran(ns: u64) {
    emit(Category::Irq, || Record::new(0, Kind::CallRun, ns, 0));
}

/// A frame of `len` bytes received (`out`: sent) on NIC `nic`.
pub fn frame(out: bool, nic: usize, len: usize) {
    emit(Category::Net, || {
        let kind = if out { Kind::FrameOut } else { Kind::FrameIn };
        Record::new(0, kind, nic as u64, len as u64)
    });
}

/// A frame dropped on NIC `nic` for `why`; `total` such drops so far.
pub fn frame_dropped(nic: usize, why: DropWhy, total: u64) {
    emit(Category::Net, || {
        Record::new(0, Kind::FrameDrop, nic as u64, total).x(why as u8)
    });
}

pub use rhea_trace::DropWhy;
