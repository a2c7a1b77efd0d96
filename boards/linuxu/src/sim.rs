//! The deterministic simulation mode (`rhea.sim=1`, optionally `rhea.seed=N`).
//!
//! Time is virtual: the clock advances by a fixed quantum at every read (so a thread that
//! polls the clock makes progress) and jumps straight to the next armed deadline when every
//! thread is blocked, so sleep-heavy code runs much faster than real time. There is no timer
//! signal: a timer "interrupt" is delivered synchronously at the next clock read with
//! interrupts enabled, or at once when the machine idles. With the same app, command line and
//! seed, every scheduling decision happens at the same virtual time in the same order, so the
//! scheduling trace is identical run after run. The seed perturbs when each timer interrupt
//! lands (a jitter of up to [`JITTER_NS`]) to explore other interleavings.
//!
//! What stays real: console input (SIGIO) and `rhea::irq::raise_self` (real-time signal 40) are still
//! signals, so apps that read input are not deterministic. A thread that spins without ever
//! calling into the kernel is never preempted (there is no instruction counter). An idle machine
//! with no timer armed waits for real input, as a real machine would — from a tap, or from
//! standard input while it is open (not at end of file) and a thread waits in
//! `rhea::console::read_byte`; with no such source it is a deadlock, reported as a failure.

use core::sync::atomic::{AtomicU64, Ordering};
use rhea_arch::signals;
use rhea_hal::{Clock, Instant, OneShotTimer};

/// Standard input, the console's receive line.
const CONSOLE_FD: i32 = 0;

/// Virtual nanoseconds each clock read takes.
const QUANTUM_NS: u64 = 1_000;
/// The most a seeded timer delivery is delayed.
pub(crate) const JITTER_NS: u64 = 20_000;

#[derive(Debug)]
pub(crate) struct SimTime {
    now_ns: AtomicU64,
    armed_ns: AtomicU64,
    rng: AtomicU64,
    vector: AtomicU64,
}

pub(crate) static SIM: SimTime = SimTime {
    now_ns: AtomicU64::new(0),
    armed_ns: AtomicU64::new(u64::MAX),
    rng: AtomicU64::new(0),
    vector: AtomicU64::new(0),
};

impl SimTime {
    pub(crate) fn start(&self, seed: u64, timer_vector: u8) {
        self.rng.store(seed, Ordering::Relaxed);
        self.vector
            .store(u64::from(timer_vector), Ordering::Relaxed);
        signals::set_idle_hook(idle);
    }

    /// The next jitter (0 without a seed): xorshift64, deterministic per seed.
    fn jitter(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        if x == 0 {
            return 0;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x % (JITTER_NS + 1)
    }

    fn deliver(&self) {
        signals::deliver_now(self.vector.load(Ordering::Relaxed) as u8);
    }
}

impl Clock for SimTime {
    fn now(&self) -> Instant {
        let t = self.now_ns.fetch_add(QUANTUM_NS, Ordering::Relaxed) + QUANTUM_NS;
        // A due timer interrupts at this read, if interrupts are enabled here. It is disarmed
        // first, so the handler's own clock reads do not deliver it again.
        if t >= self.armed_ns.load(Ordering::Relaxed) && signals::unblocked() {
            self.armed_ns.store(u64::MAX, Ordering::Relaxed);
            self.deliver();
        }
        Instant::from_nanos(t)
    }
}

impl OneShotTimer for SimTime {
    fn arm(&self, deadline: Instant) {
        self.armed_ns.store(
            deadline.as_nanos().saturating_add(self.jitter()),
            Ordering::Relaxed,
        );
    }

    fn disarm(&self) {
        self.armed_ns.store(u64::MAX, Ordering::Relaxed);
    }
}

/// The idle loop's wait: jump to the armed deadline and deliver the timer interrupt.
fn idle() {
    let armed = SIM.armed_ns.swap(u64::MAX, Ordering::Relaxed);
    if armed == u64::MAX {
        // Nothing timed is pending: only outside input can wake anyone — or nothing can.
        // A device other than the console (a tap) may always bring some.
        if signals::any_fd_bound_except(CONSOLE_FD) {
            signals::suspend_for_real();
            return;
        }
        // Standard input counts only while it can still bring bytes and a thread waits for
        // them: at end of file (/dev/null, a closed pipe) or with no reader, nothing that
        // arrives can wake a blocked thread.
        let why = match crate::machine::stdin_state() {
            crate::machine::Stdin::Ready => {
                // Bytes are there (their SIGIO may be pending or lost): take them now.
                if let Some(v) = signals::fd_vector(CONSOLE_FD) {
                    signals::deliver_now(v);
                }
                return;
            }
            crate::machine::Stdin::Open if crate::machine::console_readers() > 0 => {
                signals::suspend_for_real();
                return;
            }
            crate::machine::Stdin::Open => "no thread reads console input",
            crate::machine::Stdin::Ended => "standard input is at its end or closed",
        };
        use core::fmt::Write;
        let _ = writeln!(
            crate::machine::ConsoleWriter,
            "rhea: sim: every thread is blocked, no timer is armed and no input can arrive ({why}): deadlock"
        );
        crate::machine::fatal("rhea: sim: deadlock, exiting with failure");
    }
    SIM.now_ns.fetch_max(armed, Ordering::Relaxed);
    SIM.deliver();
}
