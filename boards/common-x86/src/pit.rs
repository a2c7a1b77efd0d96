//! The 8254 programmable interval timer as a frequency reference (Intel 82C54 CHMOS
//! Programmable Interval Timer datasheet, order 231244; PC wiring per the IBM PC/AT Technical
//! Reference: channel 0 → IRQ0, channel 2 gated and read through port 0x61).
//!
//! The PIT counts down at 1.193182 MHz on every PC and every x86 hypervisor that emulates one,
//! which makes it the reference a counter of unknown rate (the TSC) is timed against. Two ways
//! of timing a window, tried in this order:
//!
//! 1. **Channel 2, gated** (the classic method): gate on through port 0x61 bit 0, mode 0 with
//!    an initial count of one window; the channel's output (port 0x61 bit 5) goes high at
//!    terminal count. Channel 2 drives only the speaker, so nothing else notices.
//! 2. **Channel 0, read back**, for machines with a PIT but no port 0x61 (QEMU `microvm` has no
//!    PC speaker device, so 0x61 reads as all ones): channel 0's gate is wired high, so it is
//!    programmed in mode 0 from 0xffff and its count read with the counter-latch command until
//!    one window has elapsed. Its output is IRQ0, which must be masked at the PIC and the
//!    IOAPIC (it is, at boot) — mode 0 raises it once, at terminal count, ~55 ms later.
//!
//! Every wait is bounded twice: by the counter (no plausible counter runs faster than
//! [`MAX_PLAUSIBLE_HZ`], so a window that has not ended after twice that many ticks never
//! will) and by a poll count (no port read completes in under a nanosecond), which ends the
//! wait even if the counter itself is stuck. A missing PIT is an error, never a hang.

use crate::calibrate::CalibrationError;
use core::fmt;
use rhea_timers::CycleCounter;

/// Port I/O: `in`/`out` on x86. The kernel implements it; this crate only uses the legacy PIT
/// ports (0x40, 0x42, 0x43, 0x61) and the 8259 PIC's with bytes, and reads the ACPI PM timer
/// (at the port the FADT names) with [`PortIo::inl`].
pub trait PortIo: Sync {
    /// Reads the byte at `port`. Touches hardware.
    fn inb(&self, port: u16) -> u8;
    /// Writes `value` to `port`. Touches hardware.
    fn outb(&self, port: u16, value: u8);
    /// Reads 32 bits at `port` with one `in` (the ACPI PM timer must be read whole: ACPI 6.5
    /// §4.8.3.3). Touches hardware.
    fn inl(&self, port: u16) -> u32;
}

impl<T: PortIo + ?Sized> PortIo for &T {
    fn inb(&self, port: u16) -> u8 {
        (**self).inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        (**self).outb(port, value)
    }
    fn inl(&self, port: u16) -> u32 {
        (**self).inl(port)
    }
}

/// The PIT's input clock, in Hz: 14.31818 MHz / 12, as QEMU and KVM model it (`PIT_FREQ`).
pub const PIT_HZ: u64 = 1_193_182;

/// Counters faster than this are taken as a measurement error (and bound the waits).
pub const MAX_PLAUSIBLE_HZ: u64 = 20_000_000_000;

/// I/O ports (PC/AT wiring).
pub(crate) mod port {
    /// Channel 0 count (IRQ0).
    pub(crate) const CHANNEL0: u16 = 0x40;
    /// Channel 2 count (speaker).
    pub(crate) const CHANNEL2: u16 = 0x42;
    /// Mode/command register (write only).
    pub(crate) const COMMAND: u16 = 0x43;
    /// System control port B: bit 0 channel-2 gate, bit 1 speaker data enable, bit 5 channel-2
    /// output (read only).
    pub(crate) const PORT_B: u16 = 0x61;
}

pub(crate) const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;

// Control word (82C54 datasheet, "Control Word Format"): SC1 SC0 | RW1 RW0 | M2 M1 M0 | BCD.
const CW_SELECT_CHANNEL0: u8 = 0b00 << 6;
const CW_SELECT_CHANNEL2: u8 = 0b10 << 6;
/// RW = 00: counter latch command (the other bits of a latch command are zero).
pub(crate) const CW_LATCH: u8 = 0b00 << 4;
/// RW = 11: read/write the least significant byte, then the most significant byte.
pub(crate) const CW_ACCESS_LOHI: u8 = 0b11 << 4;
/// Mode 0, interrupt on terminal count: OUT goes low when the mode is written and high when
/// the count reaches zero; the count keeps decrementing (and wraps) afterwards.
pub(crate) const CW_MODE0: u8 = 0b000 << 1;
pub(crate) const CW_BINARY: u8 = 0;

/// Which PIT channel timed the windows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PitChannel {
    /// Channel 2, gated through port 0x61, terminal count seen on port 0x61 bit 5.
    Channel2,
    /// Channel 0, count read back with the latch command (no port 0x61).
    Channel0,
}

impl fmt::Display for PitChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PitChannel::Channel2 => "8254 PIT channel 2",
            PitChannel::Channel0 => "8254 PIT channel 0 (read back)",
        })
    }
}

/// How long waits may run before the reference is declared dead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitBound {
    /// Polls of the reference (one poll takes at least 1 ns).
    pub(crate) max_polls: u64,
    /// Counter ticks (twice the window at [`MAX_PLAUSIBLE_HZ`]).
    pub(crate) max_counter_ticks: u64,
}

impl WaitBound {
    pub(crate) fn for_window(window_us: u32) -> WaitBound {
        let window_ns = u64::from(window_us) * 1000;
        WaitBound {
            max_polls: window_ns,
            max_counter_ticks: (u128::from(window_ns) * u128::from(MAX_PLAUSIBLE_HZ) * 2
                / 1_000_000_000) as u64,
        }
    }
}

/// One timed window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Sample {
    /// Counter ticks between the window's start and end (midpoints of their brackets).
    pub(crate) counter_ticks: u64,
    /// PIT ticks in the window.
    pub(crate) pit_ticks: u64,
    /// How far either end may be from the truth, in counter ticks (half of each bracket).
    pub(crate) uncertainty_ticks: u64,
}

impl Sample {
    /// The counter's frequency this window implies.
    pub(crate) fn counter_hz(&self) -> u64 {
        (u128::from(self.counter_ticks) * u128::from(PIT_HZ) / u128::from(self.pit_ticks.max(1)))
            as u64
    }
}

/// The middle of `[a, b]` and half its width (a counter read before and after an event).
fn bracket(a: u64, b: u64) -> (u64, u64) {
    let half = b.saturating_sub(a) / 2;
    (a + half, half)
}

/// Times `pit_ticks` of the PIT with the counter, by the channel's method.
pub(crate) fn sample(
    io: &dyn PortIo,
    counter: &dyn CycleCounter,
    channel: PitChannel,
    pit_ticks: u16,
    bound: WaitBound,
) -> Result<Sample, CalibrationError> {
    match channel {
        PitChannel::Channel2 => sample_channel2(io, counter, pit_ticks, bound),
        PitChannel::Channel0 => sample_channel0(io, counter, pit_ticks, bound),
    }
}

fn sample_channel2(
    io: &dyn PortIo,
    counter: &dyn CycleCounter,
    pit_ticks: u16,
    bound: WaitBound,
) -> Result<Sample, CalibrationError> {
    let port_b = io.inb(port::PORT_B);
    io.outb(port::PORT_B, (port_b & !PORT_B_SPEAKER) | PORT_B_GATE2);
    io.outb(
        port::COMMAND,
        CW_SELECT_CHANNEL2 | CW_ACCESS_LOHI | CW_MODE0 | CW_BINARY,
    );
    io.outb(port::CHANNEL2, pit_ticks as u8);
    // Counting starts with the most significant byte (on the next input clock).
    let before_start = counter.read();
    io.outb(port::CHANNEL2, (pit_ticks >> 8) as u8);
    let after_start = counter.read();
    let result = wait_for_out2(io, counter, after_start, bound).map(|(end_low, end_high)| {
        let (start, start_err) = bracket(before_start, after_start);
        let (end, end_err) = bracket(end_low, end_high);
        Sample {
            counter_ticks: end.saturating_sub(start),
            pit_ticks: u64::from(pit_ticks),
            uncertainty_ticks: start_err + end_err,
        }
    });
    // Gate back as it was, speaker off.
    io.outb(port::PORT_B, port_b & !PORT_B_SPEAKER);
    result
}

/// Polls OUT2 until it goes high; returns the bracket of counter values the terminal count
/// lies in: from before the last poll that saw it low to after the first that saw it high.
fn wait_for_out2(
    io: &dyn PortIo,
    counter: &dyn CycleCounter,
    start: u64,
    bound: WaitBound,
) -> Result<(u64, u64), CalibrationError> {
    let mut before_last_low = start;
    // RT: not a real-time path (boot); bounded by `bound` all the same.
    for poll in 0..bound.max_polls {
        let before = counter.read();
        let is_high = io.inb(port::PORT_B) & PORT_B_OUT2 != 0;
        let after = counter.read();
        if is_high {
            // Mode 0 drives OUT low from the moment it is programmed: high on the very first
            // poll means nothing is behind port 0x61 (an absent port reads as all ones).
            return if poll == 0 {
                Err(CalibrationError::PitAbsent)
            } else {
                Ok((before_last_low, after))
            };
        }
        before_last_low = before;
        if after.saturating_sub(start) > bound.max_counter_ticks {
            return Err(CalibrationError::PitTimeout);
        }
    }
    Err(CalibrationError::PitTimeout)
}

/// One read-back of channel 0: its count and the bracket of counter values around the latch.
struct Readback {
    count: u16,
    at: u64,
    half_width: u64,
    after: u64,
}

fn read_channel0(io: &dyn PortIo, counter: &dyn CycleCounter) -> Readback {
    let before = counter.read();
    io.outb(port::COMMAND, CW_SELECT_CHANNEL0 | CW_LATCH);
    let after = counter.read();
    let lo = io.inb(port::CHANNEL0);
    let hi = io.inb(port::CHANNEL0);
    let (at, half_width) = bracket(before, after);
    Readback {
        count: u16::from_le_bytes([lo, hi]),
        at,
        half_width,
        after,
    }
}

fn sample_channel0(
    io: &dyn PortIo,
    counter: &dyn CycleCounter,
    pit_ticks: u16,
    bound: WaitBound,
) -> Result<Sample, CalibrationError> {
    io.outb(
        port::COMMAND,
        CW_SELECT_CHANNEL0 | CW_ACCESS_LOHI | CW_MODE0 | CW_BINARY,
    );
    io.outb(port::CHANNEL0, 0xff);
    io.outb(port::CHANNEL0, 0xff);
    // The count is loaded on the first input clock after the write; a read-back before that is
    // undefined on real parts. One throw-away read-back takes longer than that clock (0.84 µs).
    let _ = read_channel0(io, counter);
    let first = read_channel0(io, counter);
    let mut previous_at = first.at;
    let mut longest_gap = 0;
    // RT: not a real-time path (boot); bounded by `bound` all the same.
    for _ in 0..bound.max_polls {
        let now = read_channel0(io, counter);
        longest_gap = longest_gap.max(now.at.saturating_sub(previous_at));
        previous_at = now.at;
        // Counting down; wraps below zero in mode 0.
        let elapsed = first.count.wrapping_sub(now.count);
        if elapsed >= pit_ticks {
            let counter_ticks = now.at.saturating_sub(first.at);
            // A gap longer than the rest of the window could hide a wrap of the 16-bit count
            // (55 ms): the vCPU was descheduled or an SMI hit. Reject the window.
            if longest_gap.saturating_mul(2) > counter_ticks {
                return Err(CalibrationError::Disturbed);
            }
            return Ok(Sample {
                counter_ticks,
                pit_ticks: u64::from(elapsed),
                uncertainty_ticks: first.half_width + now.half_width,
            });
        }
        if now.after.saturating_sub(first.at) > bound.max_counter_ticks {
            return Err(if elapsed == 0 {
                CalibrationError::PitAbsent
            } else {
                CalibrationError::PitTimeout
            });
        }
    }
    Err(CalibrationError::PitTimeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Machine, Wiring};

    fn ppm(measured: u64, truth: u64) -> i64 {
        ((i128::from(measured) - i128::from(truth)) * 1_000_000 / i128::from(truth)) as i64
    }

    #[test]
    fn channel2_times_one_window() {
        let m = Machine::new(2_400_000_000, Wiring::Pc);
        let s = sample(
            &m,
            &m,
            PitChannel::Channel2,
            11_932,
            WaitBound::for_window(10_000),
        )
        .unwrap();
        assert_eq!(s.pit_ticks, 11_932);
        assert!(
            ppm(s.counter_hz(), 2_400_000_000).abs() < 300,
            "{s:?} {}",
            s.counter_hz()
        );
        assert!(s.uncertainty_ticks < 10_000, "{s:?}");
    }

    #[test]
    fn channel0_read_back_times_one_window() {
        let m = Machine::new(3_000_000_000, Wiring::NoPortB);
        let s = sample(
            &m,
            &m,
            PitChannel::Channel0,
            11_932,
            WaitBound::for_window(10_000),
        )
        .unwrap();
        assert!(s.pit_ticks >= 11_932 && s.pit_ticks < 11_940, "{s:?}");
        assert!(
            ppm(s.counter_hz(), 3_000_000_000).abs() < 300,
            "{}",
            s.counter_hz()
        );
    }

    #[test]
    fn channel2_without_port_b_is_absent_at_once() {
        let m = Machine::new(3_000_000_000, Wiring::NoPortB);
        let r = sample(
            &m,
            &m,
            PitChannel::Channel2,
            11_932,
            WaitBound::for_window(10_000),
        );
        assert_eq!(r, Err(CalibrationError::PitAbsent));
        assert!(m.with(|s| s.port_accesses) < 10);
    }

    #[test]
    fn ports_reading_zero_time_out_within_the_bound() {
        let m = Machine::new(3_000_000_000, Wiring::Dead { value: 0 });
        let r = sample(
            &m,
            &m,
            PitChannel::Channel2,
            11_932,
            WaitBound::for_window(10_000),
        );
        assert_eq!(r, Err(CalibrationError::PitTimeout));
        // Twice the window at 20 GHz is 400 M ticks: 133 ms at 3 GHz.
        let elapsed_ms = m.with(|s| s.now_ps) / 1_000_000_000;
        assert!(elapsed_ms <= 140, "{elapsed_ms} ms");
        let r = sample(
            &m,
            &m,
            PitChannel::Channel0,
            11_932,
            WaitBound::for_window(10_000),
        );
        assert_eq!(r, Err(CalibrationError::PitAbsent), "the count never moves");
    }

    #[test]
    fn a_stuck_counter_ends_the_wait_by_poll_count() {
        let m = Machine::new(3_000_000_000, Wiring::Dead { value: 0 });
        m.with(|s| s.stuck_tsc = Some(42));
        let bound = WaitBound::for_window(1_000);
        let r = sample(&m, &m, PitChannel::Channel2, 1_193, bound);
        assert_eq!(r, Err(CalibrationError::PitTimeout));
        assert!(m.with(|s| s.port_accesses) <= bound.max_polls + 10);
    }

    #[test]
    fn a_long_stall_during_a_read_back_window_is_rejected() {
        let m = Machine::new(3_000_000_000, Wiring::NoPortB);
        // 50 ms stall 2 ms into the window: the 16-bit count (55 ms) nearly wraps.
        let at = m.with(|s| s.now_ps) + 2_000_000_000;
        m.with(|s| s.stall = Some((at, 50_000_000_000)));
        let r = sample(
            &m,
            &m,
            PitChannel::Channel0,
            11_932,
            WaitBound::for_window(10_000),
        );
        assert_eq!(r, Err(CalibrationError::Disturbed));
    }
}
