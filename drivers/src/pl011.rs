//! The Arm PrimeCell PL011 UART (Arm DDI 0183 "PrimeCell UART (PL011) Technical Reference
//! Manual"; the console of QEMU `virt` and the Raspberry Pi 4's UART0).
//!
//! Transmit is polled: the console must work before interrupts exist and from fault handlers.
//! Receive is interrupt-driven: [`Pl011::enable_rx_interrupt`] unmasks the receive and
//! receive-timeout interrupts (UARTIMSC.RXIM, RTIM), and the interrupt's top half drains the
//! receive FIFO with [`Pl011::drain_rx`], which also acknowledges it (TRM §3.4.13: the receive
//! interrupt clears when the FIFO drops below its trigger level, the timeout interrupt when the
//! FIFO empties; both are also cleared through UARTICR). A drain reads at most what its caller
//! has room for and never more than [`RX_DRAIN_LIMIT`]; what it leaves is the caller's to drain
//! again — QEMU's model raises the receive interrupt only when its FIFO goes from empty to one
//! byte, so data left behind after the acknowledge raises none.
//!
//! Registers are reached through [`Registers`] (32-bit accesses at byte offsets), which the board
//! implements over its MMIO mapping; so the driver is architecture-neutral and tested on the host
//! against a model.

/// Register offsets (TRM table 3-1).
mod reg {
    /// Data: received byte and its error bits (read), byte to send (write).
    pub(super) const DR: usize = 0x00;
    /// Flags: FIFO states, busy.
    pub(super) const FR: usize = 0x18;
    /// Integer part of the baud-rate divisor.
    pub(super) const IBRD: usize = 0x24;
    /// Fractional part of the baud-rate divisor (sixty-fourths).
    pub(super) const FBRD: usize = 0x28;
    /// Line control: word length, FIFOs; writing it latches the divisor.
    pub(super) const LCR_H: usize = 0x2c;
    /// Control: enables.
    pub(super) const CR: usize = 0x30;
    /// Interrupt FIFO level select.
    pub(super) const IFLS: usize = 0x34;
    /// Interrupt mask set/clear (1 = enabled).
    pub(super) const IMSC: usize = 0x38;
    /// Interrupt clear (write 1s).
    pub(super) const ICR: usize = 0x44;
}

const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const LCR_H_FEN: u32 = 1 << 4;
const LCR_H_WLEN_8: u32 = 0b11 << 5;
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;
const INT_RX: u32 = 1 << 4;
const INT_RT: u32 = 1 << 6;
/// Every interrupt bit of UARTICR (bits 10:0).
const INT_ALL: u32 = 0x7ff;
/// Receive FIFO trigger at 1/8 full (IFLS.RXIFLSEL = 0b000), transmit at 1/8 (unused).
const IFLS_RX_EIGHTH: u32 = 0;
/// Framing, parity, break and overrun error bits of a received DR value (bits 11:8).
const DR_ERRORS: u32 = 0xf00;

/// The receive FIFO holds 32 entries; draining more than this per interrupt means a device
/// that never empties, which must not keep the CPU in the handler.
const RX_DRAIN_LIMIT: usize = 64;
/// How many times transmit waits for FIFO room before dropping a byte: a UART that never
/// drains must not hang the kernel. At 115200 baud a byte takes ~87 µs; this bound is several
/// milliseconds on any CPU.
const TX_SPIN_LIMIT: u32 = 100_000;
/// How long [`Pl011::init`] waits for the transmitter to finish what firmware queued.
const IDLE_SPIN_LIMIT: u32 = 100_000;

/// How a board reaches the UART's registers.
pub trait Registers: Sync {
    /// Reads the 32-bit register at byte `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at byte `offset`.
    fn write(&self, offset: usize, value: u32);
}

/// A PL011 on some register window.
#[derive(Debug)]
pub struct Pl011<R> {
    regs: R,
}

/// The divisor for `baud` from `clock_hz` (TRM §3.3.6): `clock / (16 × baud)` as a 16.6 fixed
/// point number, rounded to the nearest sixty-fourth; `None` if it does not fit (IBRD is 16
/// bits and must not be 0).
pub fn divisor(clock_hz: u32, baud: u32) -> Option<(u16, u8)> {
    if baud == 0 {
        return None;
    }
    // clock × 64 / (16 × baud) = clock × 4 / baud, rounded.
    let div64 = (u64::from(clock_hz) * 4 + u64::from(baud) / 2) / u64::from(baud);
    let integer = div64 >> 6;
    if integer == 0 || integer > 0xffff {
        return None;
    }
    Some((integer as u16, (div64 & 0x3f) as u8))
}

impl<R: Registers> Pl011<R> {
    /// Wraps the registers without touching the device.
    pub const fn new(regs: R) -> Self {
        Self { regs }
    }

    /// Programs 8N1 with FIFOs, interrupts masked and cleared, transmit and receive enabled.
    /// With `clock_hz` the baud rate is set to `baud`; without it the divisor firmware left is
    /// kept (QEMU ignores it either way).
    pub fn init(&self, clock_hz: Option<u32>, baud: u32) {
        // TRM §3.3.8: disable, wait for the end of the current character, flush (FEN = 0),
        // reprogram, enable.
        for _ in 0..IDLE_SPIN_LIMIT {
            if self.regs.read(reg::FR) & FR_BUSY == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.regs.write(reg::CR, 0);
        self.regs.write(reg::LCR_H, 0);
        if let Some((integer, fraction)) = clock_hz.and_then(|c| divisor(c, baud)) {
            self.regs.write(reg::IBRD, u32::from(integer));
            self.regs.write(reg::FBRD, u32::from(fraction));
        }
        self.regs.write(reg::LCR_H, LCR_H_WLEN_8 | LCR_H_FEN);
        self.regs.write(reg::IFLS, IFLS_RX_EIGHTH);
        self.regs.write(reg::IMSC, 0);
        self.regs.write(reg::ICR, INT_ALL);
        self.regs.write(reg::CR, CR_UARTEN | CR_TXE | CR_RXE);
    }

    /// Sends one byte, waiting (boundedly) for room in the transmit FIFO.
    pub fn send(&self, byte: u8) {
        for _ in 0..TX_SPIN_LIMIT {
            if self.regs.read(reg::FR) & FR_TXFF == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.regs.write(reg::DR, u32::from(byte));
    }

    /// Sends `bytes`, turning `\n` into `\r\n` for terminals.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
    }

    /// Asks for an interrupt whenever received data is available (FIFO at its trigger level,
    /// or data waiting with the line idle).
    pub fn enable_rx_interrupt(&self) {
        self.regs.write(reg::ICR, INT_RX | INT_RT);
        self.regs.write(reg::IMSC, INT_RX | INT_RT);
    }

    /// Reads one received byte if there is one.
    pub fn try_receive(&self) -> Option<u8> {
        (self.regs.read(reg::FR) & FR_RXFE == 0).then(|| self.regs.read(reg::DR) as u8)
    }

    /// Acknowledges the receive interrupts and moves received bytes, at most `max` (and at
    /// most a bounded number), to `sink`; returns how many bytes were read and how many
    /// carried an error (framing, parity, break, overrun: those bytes are still passed on).
    /// Bytes past `max` stay in the FIFO for the caller's next drain.
    ///
    /// The acknowledge comes first: a byte arriving after the last look at the FIFO then raises
    /// the interrupt again, where clearing afterwards would drop that interrupt and leave the
    /// byte waiting for the next one.
    pub fn drain_rx(&self, max: usize, mut sink: impl FnMut(u8)) -> (usize, usize) {
        self.regs.write(reg::ICR, INT_RX | INT_RT);
        let (mut bytes, mut errors) = (0, 0);
        // RT: bounded by RX_DRAIN_LIMIT.
        for _ in 0..max.min(RX_DRAIN_LIMIT) {
            if self.regs.read(reg::FR) & FR_RXFE != 0 {
                break;
            }
            let dr = self.regs.read(reg::DR);
            if dr & DR_ERRORS != 0 {
                errors += 1;
            }
            sink(dr as u8);
            bytes += 1;
        }
        (bytes, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A register-level model: a receive FIFO, a transmit FIFO that reads as full for `busy`
    /// polls, and a log of every write.
    #[derive(Default)]
    struct Model {
        writes: Mutex<Vec<(usize, u32)>>,
        busy: Mutex<u32>,
        rx: Mutex<VecDeque<u32>>,
        sent: Mutex<Vec<u8>>,
    }

    impl Registers for &Model {
        fn read(&self, offset: usize) -> u32 {
            match offset {
                reg::DR => self.rx.lock().unwrap().pop_front().unwrap_or(0),
                reg::FR => {
                    let mut fr = if self.rx.lock().unwrap().is_empty() {
                        FR_RXFE
                    } else {
                        0
                    };
                    let mut busy = self.busy.lock().unwrap();
                    if *busy > 0 {
                        *busy -= 1;
                        fr |= FR_TXFF | FR_BUSY;
                    }
                    fr
                }
                other => panic!("unexpected read of {other:#x}"),
            }
        }
        fn write(&self, offset: usize, value: u32) {
            if offset == reg::DR {
                self.sent.lock().unwrap().push(value as u8);
            }
            self.writes.lock().unwrap().push((offset, value));
        }
    }

    #[test]
    fn divisors_from_the_trm() {
        // TRM §3.3.6 example: 4 MHz, 230400 baud -> 1.085 -> IBRD 1, FBRD 5.
        assert_eq!(divisor(4_000_000, 230_400), Some((1, 5)));
        // The Raspberry Pi's 48 MHz UART clock at 115200: 26.0416 -> 26, 3.
        assert_eq!(divisor(48_000_000, 115_200), Some((26, 3)));
        // QEMU virt's 24 MHz apb-pclk at 115200: 13.02 -> 13, 1.
        assert_eq!(divisor(24_000_000, 115_200), Some((13, 1)));
        assert_eq!(divisor(48_000_000, 0), None);
        assert_eq!(divisor(1_000, 115_200), None, "IBRD would be 0");
        assert_eq!(divisor(u32::MAX, 1), None, "IBRD would not fit 16 bits");
    }

    #[test]
    fn init_disables_programs_then_enables() {
        let m = Model::default();
        Pl011::new(&m).init(Some(48_000_000), 115_200);
        let w = m.writes.lock().unwrap();
        assert_eq!(w[0], (reg::CR, 0), "disabled first");
        let pos = |r: usize| w.iter().position(|&(o, _)| o == r).unwrap();
        assert_eq!(w[pos(reg::IBRD)], (reg::IBRD, 26));
        assert_eq!(w[pos(reg::FBRD)], (reg::FBRD, 3));
        // LCR_H is written after the divisor (that write latches it) with 8 bits and FIFOs.
        let lcr = w.iter().rposition(|&(o, _)| o == reg::LCR_H).unwrap();
        assert!(lcr > pos(reg::FBRD));
        assert_eq!(w[lcr].1, LCR_H_WLEN_8 | LCR_H_FEN);
        assert_eq!(w.last(), Some(&(reg::CR, CR_UARTEN | CR_TXE | CR_RXE)));
        assert!(w.contains(&(reg::IMSC, 0)), "interrupts masked");
    }

    #[test]
    fn init_without_a_clock_keeps_the_divisor() {
        let m = Model::default();
        Pl011::new(&m).init(None, 115_200);
        let w = m.writes.lock().unwrap();
        assert!(!w.iter().any(|&(o, _)| o == reg::IBRD || o == reg::FBRD));
    }

    #[test]
    fn newline_becomes_crlf_and_waits_for_room() {
        let m = Model::default();
        *m.busy.lock().unwrap() = 5;
        Pl011::new(&m).write_bytes(b"a\n");
        assert_eq!(*m.sent.lock().unwrap(), b"a\r\n");
        assert_eq!(*m.busy.lock().unwrap(), 0, "polled until there was room");
    }

    #[test]
    fn a_stuck_uart_does_not_hang() {
        let m = Model::default();
        *m.busy.lock().unwrap() = u32::MAX;
        Pl011::new(&m).send(b'x');
        assert_eq!(
            *m.sent.lock().unwrap(),
            b"x",
            "byte written after the bound, not hung"
        );
    }

    #[test]
    fn drain_reads_everything_in_order_counts_errors_and_acknowledges() {
        let m = Model::default();
        m.rx.lock()
            .unwrap()
            .extend([u32::from(b'h'), u32::from(b'i') | 1 << 8, u32::from(b'!')]);
        let mut got = Vec::new();
        let (n, errors) = Pl011::new(&m).drain_rx(usize::MAX, |b| got.push(b));
        assert_eq!((n, errors), (3, 1), "the framing error is counted");
        assert_eq!(got, b"hi!");
        assert_eq!(
            m.writes.lock().unwrap().first(),
            Some(&(reg::ICR, INT_RX | INT_RT)),
            "acknowledged before the FIFO is read"
        );
        assert_eq!(Pl011::new(&m).try_receive(), None);
    }

    #[test]
    fn drain_is_bounded_for_a_device_that_never_empties() {
        let m = Model::default();
        m.rx.lock()
            .unwrap()
            .extend(std::iter::repeat_n(u32::from(b'x'), 10_000));
        let (n, _) = Pl011::new(&m).drain_rx(usize::MAX, |_| {});
        assert_eq!(n, RX_DRAIN_LIMIT);
    }

    #[test]
    fn drain_reads_no_more_than_the_caller_has_room_for() {
        let m = Model::default();
        m.rx.lock()
            .unwrap()
            .extend(b"abcdef".iter().map(|&b| u32::from(b)));
        let mut got = Vec::new();
        let u = Pl011::new(&m);
        assert_eq!(u.drain_rx(4, |b| got.push(b)), (4, 0));
        assert_eq!(got, b"abcd", "the first four, in order");
        assert_eq!(
            u.drain_rx(0, |b| got.push(b)),
            (0, 0),
            "no room: nothing read"
        );
        assert_eq!(u.drain_rx(10, |b| got.push(b)), (2, 0));
        assert_eq!(got, b"abcdef", "the rest waited in the FIFO");
    }

    #[test]
    fn rx_interrupt_unmasks_receive_and_timeout() {
        let m = Model::default();
        Pl011::new(&m).enable_rx_interrupt();
        assert_eq!(
            m.writes.lock().unwrap().last(),
            Some(&(reg::IMSC, INT_RX | INT_RT))
        );
    }
}
