//! One CPU's trace buffer: a fixed array of records written only by its CPU, with interrupts
//! off (the kernel's rule: so a dumper waiting for writers to finish waits a bounded time),
//! read by a dumper once frozen.
//!
//! Lock-free and allocation-free: a push is one `fetch_add` on the CPU's own head, four
//! relaxed stores and two updates of the CPU's own in-flight count. An interrupt that
//! nests inside a push on the same CPU takes the next slot (the head is reserved atomically).
//! Model-checked with loom (`tests` below, `--cfg loom`).

use crate::event::Record;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// What a full buffer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Keep the first events; count the rest as dropped.
    UntilFull = 0,
    /// Flight recorder: the newest events overwrite the oldest (counted as overwritten).
    Ring = 1,
    /// A ring until something calls freeze (a trigger); then nothing more is recorded and
    /// further events are counted as dropped, so the events leading up to it are kept.
    Freeze = 2,
}

impl Mode {
    /// The modes' names on the command line, by code.
    pub const NAMES: [&'static str; 3] = ["full", "ring", "freeze"];

    /// The mode with this code.
    pub fn from_code(code: u8) -> Option<Mode> {
        match code {
            0 => Some(Mode::UntilFull),
            1 => Some(Mode::Ring),
            2 => Some(Mode::Freeze),
            _ => None,
        }
    }

    /// The mode named `name` (`full`, `ring`, `freeze`).
    pub fn from_name(name: &str) -> Option<Mode> {
        Self::NAMES
            .iter()
            .position(|&n| n == name)
            .and_then(|i| Mode::from_code(i as u8))
    }
}

/// One CPU's buffer.
#[derive(Debug)]
pub struct CpuBuf {
    /// Four words per record.
    words: &'static [AtomicU64],
    /// Records the storage holds.
    cap: u64,
    /// Slots reserved so far (monotonic: in ring mode, `head - cap` were overwritten).
    head: AtomicU64,
    /// Events not recorded: the buffer full (until-full mode) or frozen.
    dropped: AtomicU64,
    /// [`FROZEN`] (record nothing more) | the pushes under way on this CPU (interrupts nest:
    /// more than one). One word, so a push and a freeze are ordered by the word's own
    /// modification order: either the freeze sees the push in flight and waits for it, or
    /// the push sees the freeze and records nothing.
    state: AtomicU32,
}

/// [`CpuBuf`]'s frozen bit.
const FROZEN: u32 = 1 << 31;

/// What a buffer holds, as a dumper sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Records held (the oldest first when read).
    pub held: u64,
    /// Events not recorded (full or frozen).
    pub dropped: u64,
    /// Events overwritten by newer ones (ring modes).
    pub overwritten: u64,
}

impl CpuBuf {
    /// A buffer over `words` (its length a multiple of four; at least one record).
    pub fn new(words: &'static [AtomicU64]) -> Self {
        let cap = (words.len() / 4).max(1) as u64;
        assert!(words.len() >= 4, "a trace buffer holds at least one record");
        Self {
            words,
            cap,
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            state: AtomicU32::new(0),
        }
    }

    /// Records it can hold.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Records `rec` (by the buffer's own CPU, interrupts off). Returns false if it was
    /// dropped (full in until-full mode, or frozen).
    pub fn push(&self, rec: &Record, mode: Mode) -> bool {
        let kept = if self.state.fetch_add(1, Ordering::Acquire) & FROZEN != 0 {
            false
        } else {
            let idx = self.head.fetch_add(1, Ordering::Relaxed);
            if mode == Mode::UntilFull && idx >= self.cap {
                false
            } else {
                let at = (idx % self.cap) as usize * 4;
                for (i, w) in rec.to_words().into_iter().enumerate() {
                    self.words[at + i].store(w, Ordering::Relaxed);
                }
                true
            }
        };
        if !kept {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Release: the stores above happen before a dumper that sees the count drop.
        self.state.fetch_sub(1, Ordering::Release);
        kept
    }

    /// Stops recording (later pushes are counted as dropped).
    pub fn freeze(&self) {
        self.state.fetch_or(FROZEN, Ordering::AcqRel);
    }

    /// Records again (after a dump, or to leave freeze mode's trigger).
    pub fn thaw(&self) {
        self.state.fetch_and(!FROZEN, Ordering::AcqRel);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.state.load(Ordering::Relaxed) & FROZEN != 0
    }

    /// True once no push is under way: after [`CpuBuf::freeze`], the contents are final.
    pub fn quiescent(&self) -> bool {
        self.state.load(Ordering::Acquire) & !FROZEN == 0
    }

    /// What it holds.
    pub fn counts(&self, mode: Mode) -> Counts {
        let head = self.head.load(Ordering::Acquire);
        let (held, overwritten) = match mode {
            Mode::UntilFull => (head.min(self.cap), 0),
            Mode::Ring | Mode::Freeze => (head.min(self.cap), head.saturating_sub(self.cap)),
        };
        Counts {
            held,
            dropped: self.dropped.load(Ordering::Relaxed),
            overwritten,
        }
    }

    /// The `i`th record held, oldest first (`i < counts().held`). Meaningful once frozen and
    /// quiescent.
    pub fn get(&self, mode: Mode, i: u64) -> Record {
        let head = self.head.load(Ordering::Acquire);
        let first = match mode {
            Mode::UntilFull => 0,
            Mode::Ring | Mode::Freeze => head.saturating_sub(self.cap),
        };
        let at = ((first + i) % self.cap) as usize * 4;
        let mut w = [0u64; 4];
        for (k, word) in w.iter_mut().enumerate() {
            *word = self.words[at + k].load(Ordering::Relaxed);
        }
        Record::from_words(w)
    }

    /// Empties it (frozen and quiescent: no writer).
    pub fn clear(&self) {
        self.head.store(0, Ordering::Release);
        self.dropped.store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::event::Kind;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    fn storage(records: usize) -> &'static [AtomicU64] {
        let v: Vec<AtomicU64> = (0..records * 4).map(|_| AtomicU64::new(0)).collect();
        Box::leak(v.into_boxed_slice())
    }

    /// A writer pushing while a dumper freezes, waits and reads: every record read is whole
    /// (its four words from one push), and held + dropped = pushed.
    #[test]
    fn freeze_then_read_sees_whole_records() {
        loom::model(|| {
            let buf: &'static CpuBuf = Box::leak(Box::new(CpuBuf::new(storage(2))));
            let writer = loom::thread::spawn(move || {
                for n in 1..=3u64 {
                    buf.push(&Record::new(n, Kind::Instant, n, n), Mode::Ring);
                }
            });
            buf.freeze();
            while !buf.quiescent() {
                loom::thread::yield_now();
            }
            let c = buf.counts(Mode::Ring);
            for i in 0..c.held {
                let r = buf.get(Mode::Ring, i);
                assert!(r.time == r.a && r.a == r.b, "torn record {r:?}");
            }
            writer.join().unwrap();
            let c = buf.counts(Mode::Ring);
            assert_eq!(c.held + c.overwritten + c.dropped, 3);
        });
    }
}
