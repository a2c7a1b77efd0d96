//! Kernel and app output: [`print!`](crate::print) and [`println!`](crate::println).
//!
//! Lock: `CONSOLE_LOCK` serialises whole messages so lines from different threads do not
//! interleave. It is a blocking mutex with priority inheritance, not a spin lock: a thread
//! preempted in the middle of a line by a more important one that prints would otherwise be
//! spun against, on its own CPU, by a thread that never lets it run again (every board hung
//! so in `tests/lock-preempt`). Only a thread that may block takes it: interrupt handlers,
//! sections with interrupts disabled (an IRQ-safe spin lock or the scheduler lock held), boot
//! before the scheduler runs and a nested print write without it, so their text may land
//! inside another thread's line but is never held up. It is a leaf lock: nothing is locked
//! while it is held. The fault and panic reports never take it — a fault may have interrupted
//! its holder — and write through [`raw_writer`] instead.

use crate::kthread;
use crate::selected::B;
use crate::selected::{A, Arch as _};
use crate::sync::{RawMutex, SyncError};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_hal::Board as _;
use rhea_hal::Platform;

static CONSOLE_LOCK: RawMutex = RawMutex::new();

/// Writes straight to the board console.
pub(crate) struct RawWriter;

impl Write for RawWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = A::read_cycle_counter();
        crate::selected::platform()
            .console()
            .write_bytes(s.as_bytes());
        let spent = A::read_cycle_counter().wrapping_sub(start);
        WRITTEN_BYTES.fetch_add(s.len() as u64, Ordering::Relaxed);
        WRITING_CYCLES.fetch_add(spent, Ordering::Relaxed);
        Ok(())
    }
}

/// What the kernel's console writes have cost so far: bytes, and cycles spent in the board's
/// console (a polled UART: under a hypervisor each register access is a VM exit, and the boot
/// log alone can take most of the boot — the boot report says how much).
static WRITTEN_BYTES: AtomicU64 = AtomicU64::new(0);
static WRITING_CYCLES: AtomicU64 = AtomicU64::new(0);

/// `(bytes, cycles)` the kernel's console writes have taken so far.
pub(crate) fn output_cost() -> (u64, u64) {
    (
        WRITTEN_BYTES.load(Ordering::Relaxed),
        WRITING_CYCLES.load(Ordering::Relaxed),
    )
}

/// A writer that takes no lock (for fault reports).
pub(crate) fn raw_writer() -> RawWriter {
    RawWriter
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let may_block = A::irq_enabled()
        && kthread::interrupt_context().is_none()
        && kthread::with_current(|_| ()).is_some();
    // Abandoned: its last holder exited mid-message; the lock is ours now all the same.
    // Refused (a nested print already holds it, or the thread holds its limit of mutexes):
    // written without it.
    let locked = may_block && matches!(CONSOLE_LOCK.lock(), Ok(()) | Err(SyncError::Abandoned));
    let _ = RawWriter.write_fmt(args);
    if locked {
        let _ = CONSOLE_LOCK.unlock();
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Console input: the console's receive interrupt is a threaded handler — the top half drains the
/// UART's FIFO into `RX_RING` (which acknowledges the interrupt), the bottom half, a thread
/// at [`INPUT_PRIORITY`], moves the bytes to the queue readers block on.
mod input {
    use crate::sync::{IrqsOff, MessageQueue, SpinLock};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use rhea_irq::TopHalf;

    /// Bytes buffered between the top half and the bottom half.
    const RING_BYTES: usize = 256;

    pub(super) struct Ring {
        buf: [u8; RING_BYTES],
        head: usize,
        len: usize,
    }

    pub(super) static RX_RING: SpinLock<Ring, IrqsOff> = SpinLock::new(Ring {
        buf: [0; RING_BYTES],
        head: 0,
        len: 0,
    });
    /// Bytes read and not yet taken by a reader.
    pub(super) static QUEUE: MessageQueue<u8, 1024> = MessageQueue::new();
    /// Bytes lost because a buffer was full, and line errors.
    pub(super) static DROPPED: AtomicU64 = AtomicU64::new(0);
    pub(super) static LINE_ERRORS: AtomicU64 = AtomicU64::new(0);

    /// Whether the top half masked the line (the ring was full) for the bottom half to
    /// unmask. Changed, and the line masked or unmasked, only under `RX_RING`'s lock (lock
    /// order: `RX_RING`, then the interrupt controller's lock).
    static MASKED: AtomicBool = AtomicBool::new(false);

    /// Moves what the device holds into the ring, as much as fits. A full ring leaves the
    /// rest in the device (its FIFO, and the host's pipe or a peer's UART behind it, wait)
    /// rather than dropping it, and masks the line: a level-triggered UART (the PL011, as the
    /// device tree says) keeps it asserted while data waits, which would storm the CPU and
    /// starve the very thread that empties the ring. The bottom half, pending whenever the
    /// ring holds bytes, drains the device itself once it has emptied the ring, then unmasks.
    pub(super) fn top_half(_: usize) -> TopHalf {
        let mut ring = RX_RING.lock();
        let room = RING_BYTES - ring.len;
        if room == 0 {
            if !MASKED.swap(true, Ordering::Relaxed) {
                let _ = crate::irq::mask(<super::B as rhea_hal::Board>::console_rx_line());
            }
            return TopHalf::WakeThread;
        }
        let (n, errors) = <super::B as rhea_hal::Board>::console_rx_drain(room, &mut |b| {
            if ring.len == RING_BYTES {
                // The board read past `room`: counted, never written over.
                DROPPED.fetch_add(1, Ordering::Relaxed);
            } else {
                let at = (ring.head + ring.len) % RING_BYTES;
                ring.buf[at] = b;
                ring.len += 1;
            }
        });
        LINE_ERRORS.fetch_add(errors as u64, Ordering::Relaxed);
        if n > 0 {
            TopHalf::WakeThread
        } else {
            TopHalf::Done
        }
    }

    /// Moves the ring's bytes to the queue; when the ring is empty, drains the device once
    /// more (a paste larger than one drain takes, or than the ring holds, left in the device,
    /// would otherwise wait for the next key's interrupt: LinuxU's stdin pipe signals only new
    /// data, and QEMU's PL011 raises its receive interrupt only when its FIFO goes from empty
    /// to not). A full queue makes this thread wait for a reader rather than drop: the ring
    /// and the device then hold the rest, and only the device can overflow (a UART's FIFO
    /// overrun, counted as a line error).
    pub(super) fn bottom_half(_: usize) {
        let q = &QUEUE;
        loop {
            let byte = {
                let mut ring = RX_RING.lock();
                if ring.len == 0 {
                    drop(ring);
                    if matches!(top_half(0), TopHalf::WakeThread) {
                        continue;
                    }
                    // The device is empty. Unmask a line the top half masked, then look once
                    // more: a byte that came while it was masked raised nothing (an
                    // edge-triggered line's edge is lost while masked).
                    let ring = RX_RING.lock();
                    if !MASKED.swap(false, Ordering::Relaxed) {
                        return;
                    }
                    let _ = crate::irq::unmask(<super::B as rhea_hal::Board>::console_rx_line());
                    drop(ring);
                    continue;
                }
                let b = ring.buf[ring.head];
                ring.head = (ring.head + 1) % RING_BYTES;
                ring.len -= 1;
                b
            };
            if q.send(byte).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Priority of the console's bottom-half thread.
pub const INPUT_PRIORITY: u32 = 40;

/// Starts interrupt-driven console input. Called once by the boot sequence, after the
/// scheduler.
pub(crate) fn init_input() -> Result<(), crate::irq::IrqError> {
    let line = B::console_rx_line();
    if line == rhea_hal::IrqLine::NONE {
        crate::println!("rhea: console: output only (this console has no input)");
        return Ok(());
    }
    let prio = rhea_hal::Priority::new(INPUT_PRIORITY).expect("a valid priority");
    let vector =
        crate::irq::register_threaded("console-rx", prio, input::top_half, input::bottom_half, 0)?;
    crate::irq::route(line, vector, rhea_hal::Trigger::Edge)?;
    B::console_rx_enable();
    crate::irq::unmask(line)?;
    // Input typed before now may wait in the device with no interrupt to come for it (a
    // LinuxU pipe signals only new data): one drain through the handler picks it up.
    crate::irq::raise_self(vector);
    Ok(())
}

/// Threads inside [`read_byte`], told to the board as they come and go.
static READERS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Reads one byte of console input, waiting for it.
pub fn read_byte() -> u8 {
    use core::sync::atomic::Ordering;
    B::console_rx_readers(READERS.fetch_add(1, Ordering::Relaxed) + 1);
    let b = loop {
        if let Ok(b) = input::QUEUE.recv() {
            break b;
        }
        crate::thread::sleep(crate::time::Duration::from_millis(10));
    };
    B::console_rx_readers(READERS.fetch_sub(1, Ordering::Relaxed) - 1);
    b
}

/// Reads one byte of console input if one comes within `timeout` (`None`: none came; a zero
/// timeout only looks). Thread context.
pub fn read_byte_timeout(timeout: crate::time::Duration) -> Option<u8> {
    use core::sync::atomic::Ordering;
    if let Ok(b) = input::QUEUE.try_recv() {
        return Some(b);
    }
    if timeout.is_zero() {
        return None;
    }
    B::console_rx_readers(READERS.fetch_add(1, Ordering::Relaxed) + 1);
    let b = input::QUEUE.recv_timeout(timeout).ok();
    B::console_rx_readers(READERS.fetch_sub(1, Ordering::Relaxed) - 1);
    b
}

/// Whether this console can read input at all (some have output only).
pub fn has_input() -> bool {
    B::console_rx_line() != rhea_hal::IrqLine::NONE
}

/// Reads console input into `buf` up to and including a newline (or until `buf` is full);
/// returns the number of bytes read.
pub fn read_line(buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let b = read_byte();
        buf[n] = b;
        n += 1;
        if b == b'\n' || b == b'\r' {
            break;
        }
    }
    n
}

/// Input bytes dropped because a buffer was full, and UART line errors seen.
pub fn input_losses() -> (u64, u64) {
    (
        input::DROPPED.load(Ordering::Relaxed),
        input::LINE_ERRORS.load(Ordering::Relaxed),
    )
}
