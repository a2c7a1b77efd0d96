//! The record: one event, four 64-bit words, the same in the buffer, in the dump and in every
//! tool that reads a dump (`cargo xtask trace`).
//!
//! ```text
//! word 0  time, ns on the kernel clock
//! word 1  kind (bits 0..8) | x (8..16) | y (16..32) | z (32..64)
//! word 2  a
//! word 3  b
//! ```
//!
//! What `x`, `y`, `z`, `a` and `b` mean depends on the kind ([`Kind`]'s variants say). Thread
//! ids are the kernel's raw `ThreadId` values (slot index in the low 32 bits, generation
//! above); [`NO_THREAD`] stands for "no thread" (an interrupt, a timer, the boot path).

/// "No thread": the waker of a wake-up that came from an interrupt handler or a timer.
pub const NO_THREAD: u64 = u64::MAX;

/// Categories: which events are recorded. A kind belongs to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Category {
    /// Switches, wake-ups, blocking, priorities and inheritance, thread create/exit, the
    /// scheduler lock's contention.
    Sched = 1 << 0,
    /// Interrupt entry/exit, timer programming and expiry, IPIs, cross-CPU calls.
    Irq = 1 << 1,
    /// Frames in and out per NIC, drops by reason.
    Net = 1 << 2,
    /// What apps record: instants, spans, counters.
    App = 1 << 3,
}

/// Every category, in the order of [`CATEGORY_NAMES`].
pub const CATEGORIES: [Category; 4] =
    [Category::Sched, Category::Irq, Category::Net, Category::App];

/// The categories' names on the command line (`rhea.trace=sched,irq,net,app`).
pub const CATEGORY_NAMES: [&str; 4] = ["sched", "irq", "net", "app"];

/// All categories' bits.
pub const ALL: u32 = 0b1111;

/// Parses a comma-separated category list (`sched,irq`, `all`, or `off`/`0` for none) into
/// a mask. An unknown name is an error that names it and the valid ones.
pub fn parse_categories(list: &str) -> Result<u32, CategoryError<'_>> {
    if list == "off" || list == "0" {
        return Ok(0);
    }
    let mut mask = 0;
    for name in list.split(',') {
        if name == "all" || name == "1" {
            mask |= ALL;
            continue;
        }
        match CATEGORY_NAMES.iter().position(|&n| n == name) {
            Some(i) => mask |= CATEGORIES[i] as u32,
            None => return Err(CategoryError { name }),
        }
    }
    Ok(mask)
}

/// A category name that does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CategoryError<'a> {
    /// The name given.
    pub name: &'a str,
}

impl core::fmt::Display for CategoryError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "unknown trace category '{}': the categories are sched, irq, net, app (or all, off)",
            self.name
        )
    }
}

macro_rules! kinds {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $cat:ident; )*) => {
        /// What happened. The code is the record's low byte; the fields' meanings are given
        /// per variant as `x`, `y`, `z`, `a`, `b`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Kind {
            $( $(#[$doc])* $name = $code, )*
        }

        impl Kind {
            /// The kind with this code, if any.
            pub fn from_code(code: u8) -> Option<Kind> {
                match code {
                    $( $code => Some(Kind::$name), )*
                    _ => None,
                }
            }

            /// Its category.
            pub fn category(self) -> Category {
                match self {
                    $( Kind::$name => Category::$cat, )*
                }
            }

            /// Its name, for reports.
            pub fn name(self) -> &'static str {
                match self {
                    $( Kind::$name => stringify!($name), )*
                }
            }
        }
    };
}

kinds! {
    /// A context switch. `a` the outgoing thread, `b` the incoming; `x` the outgoing thread's
    /// state ([`LeftAs`]); `y` the outgoing thread's effective priority (low byte) and the
    /// incoming's (high byte).
    Switch = 1, Sched;
    /// A thread made ready. `a` the thread woken, `b` the waker ([`NO_THREAD`] from an
    /// interrupt or timer); `x` why ([`WakeWhy`]); `y` the waker's CPU.
    Wake = 2, Sched;
    /// The running thread blocks. `a` the thread, `b` the object's raw id (0 for a sleep);
    /// `x` the object's kind ([`ObjKind`]).
    Block = 3, Sched;
    /// A thread's effective priority changed. `a` the thread, `b` the thread whose wait
    /// caused it (inheritance) or [`NO_THREAD`]; `x` the new priority, `y` the old; `z` why
    /// ([`PrioWhy`]) in the low byte and the link's depth in the inheritance chain above it.
    Prio = 4, Sched;
    /// A thread was created. `a` the thread, `b` its creator ([`NO_THREAD`] at boot); `x` its
    /// base priority. Its name follows in [`Kind::Name`] records.
    Create = 5, Sched;
    /// Part of a thread's name: 16 bytes of UTF-8 in `a` and `b` (little-endian, zero
    /// padded); `x` the part's index (0, 1, ...), `y` the name's length in bytes; `z` the
    /// thread's slot (its id's low 32 bits).
    Name = 6, Sched;
    /// A thread exited. `a` the thread, `b` its exit code (as i64).
    Exit = 7, Sched;
    /// Time spent spinning for the scheduler lock before taking it: `a` ns (only recorded
    /// when the lock was contended).
    LockSpin = 8, Sched;
    /// The CPU held the scheduler lock (interrupts off, no preemption) for `a` ns: recorded
    /// when it is the CPU's longest hold yet, so the longest such sections are kept.
    LockHold = 9, Sched;
    /// Interrupt entry. `a` the interrupt line (vector/IRQ number as the board numbers it).
    IrqEnter = 16, Irq;
    /// Interrupt exit. `a` the line.
    IrqExit = 17, Irq;
    /// The CPU's one-shot timer programmed. `a` the deadline (ns; `u64::MAX` none).
    TimerArm = 18, Irq;
    /// The CPU's timer expired. `a` how late the interrupt came (ns after the deadline).
    TimerFire = 19, Irq;
    /// An IPI sent. `a` the target CPU; `x` its kind ([`IpiKind`]).
    IpiSend = 20, Irq;
    /// An IPI taken. `x` its kind ([`IpiKind`]).
    IpiTake = 21, Irq;
    /// A cross-CPU call posted. `a` the target CPU.
    CallSend = 22, Irq;
    /// A cross-CPU call run. `a` how long it ran (ns).
    CallRun = 23, Irq;
    /// A frame received. `a` the NIC's index, `b` its length.
    FrameIn = 32, Net;
    /// A frame sent. `a` the NIC's index, `b` its length.
    FrameOut = 33, Net;
    /// A frame dropped. `a` the NIC's index, `b` the drops so far for this reason; `x` the
    /// reason ([`DropWhy`]).
    FrameDrop = 34, Net;
    /// An app's instant event. `a` its name's id ([`Kind::String`]).
    Instant = 48, App;
    /// An app's span begins. `a` its name's id.
    SpanBegin = 49, App;
    /// An app's span ends. `a` its name's id.
    SpanEnd = 50, App;
    /// An app's counter takes a value. `a` its name's id, `b` the value (as i64).
    Counter = 51, App;
    /// The trace was frozen (mode "freeze on trigger"). `a` the trigger's name id.
    Freeze = 52, App;
}

/// How the outgoing thread of a switch left the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LeftAs {
    /// Still ready: preempted by a more important thread (or moved off a CPU it may no
    /// longer use).
    Ready = 0,
    /// Blocked on an object or asleep.
    Blocked = 1,
    /// Suspended.
    Suspended = 2,
    /// Exited.
    Exited = 3,
    /// The CPU's idle thread.
    Idle = 4,
    /// Still ready: it yielded to an equal.
    Yielded = 5,
    /// Still ready: its round-robin slice ended.
    SliceEnded = 6,
}

/// Why a thread was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WakeWhy {
    /// A wait-queue signal, event flags, a joined thread's exit.
    Signaled = 1,
    /// Handed a mutex or a semaphore unit.
    Acquired = 2,
    /// Its deadline or sleep ended.
    Timeout = 3,
    /// The object it waited on went away.
    Abandoned = 4,
    /// Resumed, or made ready for another reason (spawn).
    Resumed = 5,
}

/// What a thread blocks on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjKind {
    /// A priority-inheritance mutex.
    Mutex = 1,
    /// A counting semaphore.
    Semaphore = 2,
    /// A wait queue (condition variable, join, message queue).
    Queue = 3,
    /// Event flags.
    Events = 4,
    /// A sleep (no object).
    Sleep = 5,
    /// Suspension, or anything else.
    Other = 6,
}

/// Why an effective priority changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PrioWhy {
    /// Its base priority was set.
    Set = 0,
    /// Raised by inheritance from a waiter.
    Boost = 1,
    /// Lowered as inheritance ended (mutex released, waiter left).
    Restore = 2,
}

/// What an IPI asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IpiKind {
    /// Reschedule.
    Resched = 0,
    /// Run the cross-CPU calls posted to it.
    Call = 1,
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DropWhy {
    /// The receive queue to the stack was full.
    RxQueueFull = 1,
    /// The transmit queue to the driver was full.
    TxQueueFull = 2,
    /// Malformed or too long.
    Malformed = 3,
    /// No buffer.
    NoBuffer = 4,
    /// The device reported an error.
    DeviceError = 5,
}

/// One event. `kind` is the raw code so records of kinds newer than the reader survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// ns on the kernel clock.
    pub time: u64,
    /// [`Kind`]'s code.
    pub kind: u8,
    /// Small field (per kind).
    pub x: u8,
    /// Medium field (per kind).
    pub y: u16,
    /// Medium field (per kind).
    pub z: u32,
    /// Wide field (per kind).
    pub a: u64,
    /// Wide field (per kind).
    pub b: u64,
}

impl Record {
    /// A record of `kind` at `time` with the wide fields; the small ones zero.
    pub const fn new(time: u64, kind: Kind, a: u64, b: u64) -> Self {
        Self {
            time,
            kind: kind as u8,
            x: 0,
            y: 0,
            z: 0,
            a,
            b,
        }
    }

    /// With `x`.
    pub const fn x(mut self, x: u8) -> Self {
        self.x = x;
        self
    }

    /// With `y`.
    pub const fn y(mut self, y: u16) -> Self {
        self.y = y;
        self
    }

    /// With `z`.
    pub const fn z(mut self, z: u32) -> Self {
        self.z = z;
        self
    }

    /// Its kind, if the code is known.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_code(self.kind)
    }

    /// The four words.
    pub const fn to_words(&self) -> [u64; 4] {
        [
            self.time,
            self.kind as u64 | (self.x as u64) << 8 | (self.y as u64) << 16 | (self.z as u64) << 32,
            self.a,
            self.b,
        ]
    }

    /// Back from [`Record::to_words`].
    pub const fn from_words(w: [u64; 4]) -> Self {
        Self {
            time: w[0],
            kind: w[1] as u8,
            x: (w[1] >> 8) as u8,
            y: (w[1] >> 16) as u16,
            z: (w[1] >> 32) as u32,
            a: w[2],
            b: w[3],
        }
    }

    /// The 32 little-endian bytes of the dump.
    pub fn to_bytes(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0; RECORD_BYTES];
        for (i, w) in self.to_words().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Back from [`Record::to_bytes`].
    pub fn from_bytes(bytes: &[u8; RECORD_BYTES]) -> Self {
        let mut w = [0u64; 4];
        for (i, word) in w.iter_mut().enumerate() {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            *word = u64::from_le_bytes(b);
        }
        Self::from_words(w)
    }
}

/// A record's size in the buffer and in the dump.
pub const RECORD_BYTES: usize = 32;

/// The [`Kind::Name`] records that carry `name` for thread `tid`, at `time` (16 bytes each,
/// at most [`NAME_PARTS`] parts: longer names are cut on a character boundary).
pub fn name_records(time: u64, tid: u64, name: &str) -> impl Iterator<Item = Record> + '_ {
    let mut len = name.len().min(NAME_PARTS * 16);
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    let bytes = &name.as_bytes()[..len];
    let parts = len.div_ceil(16).max(1);
    (0..parts).map(move |i| {
        let mut chunk = [0u8; 16];
        let part = &bytes[(i * 16).min(len)..((i + 1) * 16).min(len)];
        chunk[..part.len()].copy_from_slice(part);
        let mut a = [0; 8];
        let mut b = [0; 8];
        a.copy_from_slice(&chunk[..8]);
        b.copy_from_slice(&chunk[8..]);
        Record::new(
            time,
            Kind::Name,
            u64::from_le_bytes(a),
            u64::from_le_bytes(b),
        )
        .x(i as u8)
        .y(len as u16)
        .z(tid as u32)
    })
}

/// The most [`Kind::Name`] parts a name takes (64 bytes).
pub const NAME_PARTS: usize = 4;
