//! The 16550 UART (TI PC16550D datasheet; the COM ports of every PC and of QEMU's `isa-serial`).
//!
//! Transmit is polled: the console must work before interrupts exist and from fault handlers.
//! Once [`Uart16550::init`] has found a working transmit FIFO (IIR says so after FCR enabled
//! it: a 16550A, as every PC and QEMU has), one wait for an empty transmitter is followed by up
//! to 16 bytes ([`Registers::write_many`]) rather than one: under a hypervisor every register
//! access is a VM exit, and polling LSR before each byte doubled them (measured under nested
//! KVM: ~140 µs per console byte, 2 KiB of boot log ~0.3 s of the boot).
//! Receive is interrupt-driven: [`Uart16550::enable_rx_interrupt`] sets IER.ERBFI, and the
//! interrupt's top half drains the receive FIFO with [`Uart16550::drain_rx`], which also
//! acknowledges it (reading RBR until LSR.DR clears ends a "received data available"
//! interrupt, datasheet table 4).
//!
//! Why not the `uart_16550` crate: it owns port I/O itself (x86 only, so not reusable for the
//! MMIO 16550 variants on ARM boards) and rewrites some bytes on send; register access through
//! [`Registers`] keeps this driver architecture-neutral and testable on the host.

/// Register offsets (datasheet table 2), relative to the base port or address.
mod reg {
    /// Transmit holding (write) / receive buffer (read); divisor latch low when DLAB=1.
    pub(super) const DATA: u8 = 0;
    /// Interrupt enable; divisor latch high when DLAB=1.
    pub(super) const IER: u8 = 1;
    /// FIFO control (write).
    pub(super) const FCR: u8 = 2;
    /// Line control: word length, parity, stop bits, DLAB.
    pub(super) const LCR: u8 = 3;
    /// Modem control: DTR, RTS, OUT2.
    pub(super) const MCR: u8 = 4;
    /// Line status.
    pub(super) const LSR: u8 = 5;
    /// Interrupt identification (read; the same offset as FCR).
    pub(super) const IIR: u8 = 2;
}

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const FCR_ENABLE_CLEAR_14: u8 = 0xc7; // enable FIFOs, clear both, 14-byte receive trigger
const MCR_DTR_RTS_OUT2: u8 = 0x0b;
const LSR_THR_EMPTY: u8 = 0x20;
/// IIR bits 7:6 both set: the FIFOs are enabled and work (a 16550A; a 16550 without working
/// FIFOs shows one bit, a 16450 none).
const IIR_FIFOS_ENABLED: u8 = 0xc0;
/// The transmit FIFO's depth: after LSR.THRE (in FIFO mode: the FIFO is empty) this many bytes
/// may be written without another wait.
const TX_FIFO_DEPTH: usize = 16;
const LSR_DATA_READY: u8 = 0x01;
/// Overrun, parity, framing errors and break (LSR bits 1–4).
const LSR_ERRORS: u8 = 0x1e;
const IER_RX_AVAILABLE: u8 = 0x01;
/// The receive FIFO holds 16 bytes; draining more than this per interrupt means a device that
/// never empties, which must not keep the CPU in the handler.
const RX_DRAIN_LIMIT: usize = 64;

/// The input clock is 1.8432 MHz, so divisor = 115200 / baud.
const BASE_BAUD: u32 = 115_200;

/// How a board reaches the UART's eight registers.
pub trait Registers: Sync {
    /// Reads register `offset`.
    fn read(&self, offset: u8) -> u8;
    /// Writes register `offset`.
    fn write(&self, offset: u8, value: u8);
    /// Writes `values` to register `offset` one after another (the transmit FIFO). A board may
    /// do better than one access per byte where its bus allows. (x86 `rep outsb` was tried on
    /// COM1 under nested KVM: no faster than single `outb`s — QEMU still handles a byte per
    /// exit.)
    fn write_many(&self, offset: u8, values: &[u8]) {
        for &v in values {
            self.write(offset, v);
        }
    }
}

/// A 16550 on some register window.
#[derive(Debug)]
pub struct Uart16550<R> {
    regs: R,
    /// Bytes transmit may write after one wait: 1 until [`Uart16550::init`] found working
    /// FIFOs, then [`TX_FIFO_DEPTH`].
    tx_burst: core::sync::atomic::AtomicU8,
}

/// How many times transmit waits for the holding register before dropping a byte: a UART
/// that never drains (absent device, stuck line) must not hang the kernel. At 115200 baud a
/// byte takes ~87 µs; this bound is several milliseconds on any CPU.
const TX_SPIN_LIMIT: u32 = 100_000;

impl<R: Registers> Uart16550<R> {
    /// Wraps the registers without touching the device.
    pub const fn new(regs: R) -> Self {
        Self {
            regs,
            tx_burst: core::sync::atomic::AtomicU8::new(1),
        }
    }

    /// Programs 8N1 at `baud`, FIFOs on, interrupts off.
    pub fn init(&self, baud: u32) {
        let divisor = (BASE_BAUD / baud.clamp(1, BASE_BAUD)) as u16;
        self.regs.write(reg::IER, 0);
        self.regs.write(reg::LCR, LCR_DLAB);
        self.regs.write(reg::DATA, divisor as u8);
        self.regs.write(reg::IER, (divisor >> 8) as u8);
        self.regs.write(reg::LCR, LCR_8N1);
        self.regs.write(reg::FCR, FCR_ENABLE_CLEAR_14);
        self.regs.write(reg::MCR, MCR_DTR_RTS_OUT2);
        let fifos = self.regs.read(reg::IIR) & IIR_FIFOS_ENABLED == IIR_FIFOS_ENABLED;
        self.tx_burst.store(
            if fifos { TX_FIFO_DEPTH as u8 } else { 1 },
            core::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Waits (boundedly) until the transmitter is empty: the holding register, or in FIFO
    /// mode the whole transmit FIFO. A UART that never drains costs [`TX_SPIN_LIMIT`] polls,
    /// then the caller writes anyway (bytes may be lost; the kernel does not hang).
    fn wait_tx_empty(&self) {
        for _ in 0..TX_SPIN_LIMIT {
            if self.regs.read(reg::LSR) & LSR_THR_EMPTY != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Sends one byte, waiting (boundedly) for room.
    pub fn send(&self, byte: u8) {
        self.wait_tx_empty();
        self.regs.write(reg::DATA, byte);
    }

    /// Asks for an interrupt whenever received data is available.
    pub fn enable_rx_interrupt(&self) {
        self.regs.write(reg::IER, IER_RX_AVAILABLE);
    }

    /// Reads one received byte if there is one.
    pub fn try_receive(&self) -> Option<u8> {
        (self.regs.read(reg::LSR) & LSR_DATA_READY != 0).then(|| self.regs.read(reg::DATA))
    }

    /// Moves received bytes, at most `max` (and at most a bounded number), to `sink`; returns
    /// how many bytes were read and how many line errors (overrun, parity, framing, break)
    /// were seen. Bytes past `max` stay in the FIFO for the caller's next drain.
    pub fn drain_rx(&self, max: usize, mut sink: impl FnMut(u8)) -> (usize, usize) {
        let (mut bytes, mut errors) = (0, 0);
        // RT: bounded by RX_DRAIN_LIMIT.
        for _ in 0..max.min(RX_DRAIN_LIMIT) {
            let lsr = self.regs.read(reg::LSR);
            if lsr & LSR_ERRORS != 0 {
                errors += 1;
            }
            if lsr & LSR_DATA_READY == 0 {
                break;
            }
            sink(self.regs.read(reg::DATA));
            bytes += 1;
        }
        (bytes, errors)
    }

    /// Sends `bytes`, turning `\n` into `\r\n` for terminals: in bursts of the transmit
    /// FIFO's depth, each after one wait for an empty transmitter.
    pub fn write_bytes(&self, bytes: &[u8]) {
        let burst = usize::from(self.tx_burst.load(core::sync::atomic::Ordering::Relaxed))
            .clamp(1, TX_FIFO_DEPTH);
        let mut chunk = [0u8; TX_FIFO_DEPTH];
        let mut n = 0;
        let mut push = |b: u8, n: &mut usize| {
            chunk[*n] = b;
            *n += 1;
            if *n == burst {
                self.wait_tx_empty();
                self.regs.write_many(reg::DATA, &chunk[..*n]);
                *n = 0;
            }
        };
        for &b in bytes {
            if b == b'\n' {
                push(b'\r', &mut n);
            }
            push(b, &mut n);
        }
        if n > 0 {
            self.wait_tx_empty();
            self.regs.write_many(reg::DATA, &chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A register-level model: records writes; LSR reads as "empty" after `busy` polls.
    #[derive(Default)]
    struct Model {
        writes: Mutex<Vec<(u8, u8)>>,
        busy: Mutex<u32>,
        /// Received bytes, popped from the end.
        rx: Mutex<Vec<u8>>,
        /// What IIR reads (FIFO bits).
        iir: Mutex<u8>,
        /// LSR reads so far.
        lsr_reads: Mutex<u32>,
    }

    impl Registers for &Model {
        fn read(&self, offset: u8) -> u8 {
            if offset == reg::DATA {
                return self.rx.lock().unwrap().pop().unwrap_or(0);
            }
            if offset == reg::IIR {
                return *self.iir.lock().unwrap();
            }
            assert_eq!(offset, reg::LSR);
            *self.lsr_reads.lock().unwrap() += 1;
            let rx_ready = if self.rx.lock().unwrap().is_empty() {
                0
            } else {
                LSR_DATA_READY
            };
            let mut busy = self.busy.lock().unwrap();
            if *busy > 0 {
                *busy -= 1;
                rx_ready
            } else {
                LSR_THR_EMPTY | rx_ready
            }
        }
        fn write(&self, offset: u8, value: u8) {
            self.writes.lock().unwrap().push((offset, value));
        }
    }

    #[test]
    fn init_sets_divisor_and_8n1() {
        let m = Model::default();
        Uart16550::new(&m).init(38_400);
        let w = m.writes.lock().unwrap();
        assert_eq!(w[1], (reg::LCR, LCR_DLAB));
        assert_eq!(w[2], (reg::DATA, 3), "115200/38400");
        assert_eq!(w[4], (reg::LCR, LCR_8N1));
    }

    #[test]
    fn newline_becomes_crlf_and_waits_for_room() {
        let m = Model::default();
        *m.busy.lock().unwrap() = 5;
        Uart16550::new(&m).write_bytes(b"a\n");
        let data: Vec<u8> = m.writes.lock().unwrap().iter().map(|&(_, v)| v).collect();
        assert_eq!(data, b"a\r\n");
        assert_eq!(*m.busy.lock().unwrap(), 0, "polled until empty");
    }

    #[test]
    fn with_working_fifos_one_wait_covers_sixteen_bytes() {
        let m = Model::default();
        *m.iir.lock().unwrap() = IIR_FIFOS_ENABLED;
        let u = Uart16550::new(&m);
        u.init(115_200);
        m.writes.lock().unwrap().clear();
        let text: Vec<u8> = (0..40).map(|i| b'a' + (i % 26) as u8).collect();
        u.write_bytes(&text);
        let data: Vec<u8> = m.writes.lock().unwrap().iter().map(|&(_, v)| v).collect();
        assert_eq!(data, text, "every byte, in order");
        // 40 bytes: bursts of 16, 16, 8.
        assert_eq!(*m.lsr_reads.lock().unwrap(), 3);
        // Newlines still expand, also across a burst's end.
        m.writes.lock().unwrap().clear();
        u.write_bytes(b"0123456789abcde\nx");
        let data: Vec<u8> = m.writes.lock().unwrap().iter().map(|&(_, v)| v).collect();
        assert_eq!(data, b"0123456789abcde\r\nx");
    }

    #[test]
    fn without_working_fifos_every_byte_waits() {
        for iir in [0x00, 0x80] {
            let m = Model::default();
            *m.iir.lock().unwrap() = iir; // a 16450, or a 16550 with broken FIFOs
            let u = Uart16550::new(&m);
            u.init(115_200);
            u.write_bytes(b"abcd");
            assert_eq!(*m.lsr_reads.lock().unwrap(), 4, "IIR {iir:#x}");
        }
    }

    #[test]
    fn drain_reads_everything_received_in_order() {
        let m = Model::default();
        *m.rx.lock().unwrap() = b"olleh".to_vec();
        let mut got = Vec::new();
        let (n, errors) = Uart16550::new(&m).drain_rx(usize::MAX, |b| got.push(b));
        assert_eq!((n, errors), (5, 0));
        assert_eq!(got, b"hello");
        assert_eq!(Uart16550::new(&m).try_receive(), None);
    }

    #[test]
    fn drain_is_bounded_for_a_device_that_never_empties() {
        let m = Model::default();
        *m.rx.lock().unwrap() = vec![b'x'; 10_000];
        let (n, _) = Uart16550::new(&m).drain_rx(usize::MAX, |_| {});
        assert_eq!(n, RX_DRAIN_LIMIT);
    }

    #[test]
    fn drain_reads_no_more_than_the_caller_has_room_for() {
        let m = Model::default();
        *m.rx.lock().unwrap() = b"fedcba".to_vec();
        let mut got = Vec::new();
        let u = Uart16550::new(&m);
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
    fn a_stuck_uart_does_not_hang() {
        let m = Model::default();
        *m.busy.lock().unwrap() = u32::MAX;
        Uart16550::new(&m).send(b'x');
        assert_eq!(
            m.writes.lock().unwrap().len(),
            1,
            "byte dropped after the bound, not hung"
        );
    }
}
