//! The 82574's receive and transmit rings and the device's start-up, hardware-free: registers
//! through [`Mmio32`], descriptors and buffers through [`Dma`], so all of it runs on the host
//! against a model of the device (`tests.rs`), malformed behaviour included.
//!
//! Memory: one [`Dma`] region holds both descriptor rings and every buffer, at fixed offsets
//! ([`layout`]); a buffer's bus address is the region's plus its offset.
//!
//! Receive (legacy descriptors, §7.1.4): the device owns descriptors from RDH up to RDT - 1;
//! the driver keeps one (RDT's) so a full ring is never mistaken for an empty one. The driver
//! looks only at its own next descriptor: once DD is set it trusts nothing else the device
//! wrote — a length of 0, above [`MAX_FRAME`](crate::net::MAX_FRAME), above the buffer or the
//! caller's buffer, an error bit, or a frame spread over several descriptors (no EOP: the
//! driver posts 2 KiB buffers and refuses long frames, so the device should never do that) is
//! a drop, counted, and the descriptor goes back to the device. A device that never sets DD
//! delivers nothing; it cannot make the driver loop.
//!
//! Transmit (legacy descriptors, §7.2.10.1): one descriptor per frame (EOP, IFCS, RS), copied
//! into the descriptor's own buffer; the driver reclaims descriptors whose DD is set, in
//! order. A full ring is [`NetError::Busy`]; a ring that stays full for [`TX_STALL_LIMIT`]
//! attempts in a row (a device that never sets DD) makes further frames drops
//! ([`NetError::Device`], counted) instead of holding them forever.

use super::regs::{
    self, DESC_LEN, RxWriteback, ctrl, ctrl_ext, icr, rctl, reg, rx_desc, status, tctl, tx_desc,
};
use crate::net::{MAX_FRAME, NetDeviceStats, NetError};
use crate::pci::Mmio32;
use alloc::format;
use alloc::string::String;

/// Memory shared with the device: descriptor rings and buffers at byte offsets. Reads and
/// writes of descriptor words are single volatile accesses (the device writes them too).
pub trait Dma {
    /// The bus address of byte 0 (what the device is given).
    fn bus_address(&self) -> u64;
    /// Bytes in the region.
    fn len(&self) -> usize;
    /// Whether the region is empty (never, for a usable one).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the 8-aligned 64-bit word at `offset`.
    fn read_u64(&self, offset: usize) -> u64;
    /// Writes the 8-aligned 64-bit word at `offset`.
    fn write_u64(&self, offset: usize, value: u64);
    /// Copies `out.len()` bytes from `offset`.
    fn read_bytes(&self, offset: usize, out: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write_bytes(&self, offset: usize, data: &[u8]);
}

/// Receive descriptors (a multiple of 8: the ring length must be a multiple of 128 bytes).
pub const RX_DESCS: usize = 64;
/// Transmit descriptors.
pub const TX_DESCS: usize = 64;
/// Bytes per buffer: RCTL.BSIZE 2048.
pub const BUF_LEN: usize = 2048;

/// Where everything is in the [`Dma`] region.
pub mod layout {
    use super::{BUF_LEN, DESC_LEN, RX_DESCS, TX_DESCS};
    /// The receive ring.
    pub const RX_RING: usize = 0;
    /// The transmit ring.
    pub const TX_RING: usize = RX_RING + RX_DESCS * DESC_LEN;
    /// The receive buffers (page-aligned).
    pub const RX_BUFS: usize = 4096;
    /// The transmit buffers.
    pub const TX_BUFS: usize = RX_BUFS + RX_DESCS * BUF_LEN;
    /// Bytes of the whole region.
    pub const LEN: usize = TX_BUFS + TX_DESCS * BUF_LEN;
    const _: () = assert!(TX_RING + TX_DESCS * DESC_LEN <= RX_BUFS);
}

/// Register reads a bounded wait makes before giving up (reset, DMA quiescing). QEMU finishes
/// at once; a real 82574 within a few microseconds.
pub const MAX_POLLS: u32 = 100_000;

/// Busy transmit attempts in a row, with no descriptor completed, after which the device is
/// taken to have stopped completing transmissions.
pub const TX_STALL_LIMIT: u32 = 1000;

/// What one receive found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rx {
    /// No frame waits.
    Empty,
    /// A frame of this length was copied out.
    Frame(usize),
    /// A descriptor was dropped (named reason, counted).
    Dropped(RxDrop),
}

/// Why a received descriptor was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// The device reported a frame error.
    FrameError,
    /// The length was 0 or larger than the frame limit, the buffer or the caller's buffer.
    BadLength,
    /// A frame spread over several descriptors (no EOP), or its continuation.
    Fragmented,
}

/// Counters beyond [`NetDeviceStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Received descriptors with an error bit.
    pub rx_frame_errors: u64,
    /// Received descriptors with an impossible length.
    pub rx_bad_length: u64,
    /// Received descriptors of multi-descriptor frames.
    pub rx_fragmented: u64,
    /// Frames the device missed for lack of descriptors (MPC).
    pub rx_missed: u64,
    /// Frames not sent because the link was down.
    pub tx_link_down: u64,
    /// Frames refused for being larger than [`MAX_FRAME`] (or empty).
    pub tx_bad_length: u64,
    /// Frames dropped because the transmit ring stopped completing.
    pub tx_stalled: u64,
    /// Link status changes seen.
    pub link_changes: u64,
}

/// Waits (boundedly) for `reg & mask` to read as `want`; whether it did.
fn poll<R: Mmio32>(regs: &R, offset: usize, mask: u32, want: u32) -> bool {
    (0..MAX_POLLS).any(|_| regs.read32(offset) & mask == want)
}

/// Resets the device (§14.5: quiesce DMA, CTRL.RST, interrupts masked and cleared). `Err`
/// names what did not complete.
pub fn reset<R: Mmio32>(regs: &R) -> Result<(), String> {
    regs.write32(reg::IMC, !0);
    regs.write32(reg::RCTL, 0);
    regs.write32(reg::TCTL, 0);
    let c = regs.read32(reg::CTRL);
    regs.write32(reg::CTRL, c | ctrl::GIO_MASTER_DISABLE);
    // A device whose DMA does not drain is reset anyway (as Linux does), which stops it.
    let _ = poll(regs, reg::STATUS, status::GIO_MASTER_ENABLE, 0);
    regs.write32(reg::CTRL, c | ctrl::RST);
    if !poll(regs, reg::CTRL, ctrl::RST, 0) {
        return Err(format!(
            "reset did not complete: CTRL.RST still set after {MAX_POLLS} reads"
        ));
    }
    regs.write32(reg::IMC, !0);
    let _ = regs.read32(reg::ICR);
    regs.write32(reg::ICR, !0);
    Ok(())
}

/// How the device interrupts, which decides the causes' routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// MSI-X: every cause to table entry 0.
    Msix,
    /// INTx, MSI (the function's one message) or polling: the legacy causes, one signal for
    /// all of them (nothing to route).
    Legacy,
}

/// A started 82574: registers `R`, shared memory `D`.
#[derive(Debug)]
pub struct Nic<R: Mmio32, D: Dma> {
    regs: R,
    dma: D,
    mac: [u8; 6],
    /// The next receive descriptor the driver looks at.
    rx_next: usize,
    /// The last receive descriptor given back since the last flush (the next RDT).
    rx_release: Option<usize>,
    /// Inside a multi-descriptor frame being dropped.
    rx_discarding: bool,
    /// The next transmit descriptor to fill.
    tx_tail: usize,
    /// The oldest transmit descriptor not yet reclaimed.
    tx_clean: usize,
    /// TDT as last written.
    tx_tail_written: usize,
    tx_busy_in_a_row: u32,
    /// Causes read from ICR and not yet cleared.
    unacked: u32,
    /// Whether IMS holds the driver's causes.
    armed: bool,
    link: bool,
    stats: NetDeviceStats,
    counters: Counters,
}

impl<R: Mmio32, D: Dma> Nic<R, D> {
    /// Starts a device that was [`reset`]: reads its MAC address, sets up both rings in `dma`
    /// (at least [`layout::LEN`] bytes), routes interrupts for `mode` and enables receive and
    /// transmit. Interrupts stay masked until [`rearm`](Self::rearm). `Err` names the reason
    /// (an unusable MAC address, a region too small).
    pub fn start(regs: R, dma: D, mode: IrqMode) -> Result<Self, String> {
        let mac = regs::mac_from_receive_address(regs.read32(reg::RAL0), regs.read32(reg::RAH0))
            .map_err(String::from)?;
        if dma.len() < layout::LEN || !dma.bus_address().is_multiple_of(4096) {
            return Err(format!(
                "DMA region of {} bytes at {:#x}: need {} bytes, page-aligned",
                dma.len(),
                dma.bus_address(),
                layout::LEN
            ));
        }
        let c = regs.read32(reg::CTRL) & !ctrl::GIO_MASTER_DISABLE;
        regs.write32(reg::CTRL, c | ctrl::SLU | ctrl::ASDE);
        for i in 0..128 {
            regs.write32(reg::MTA + 4 * i, 0);
        }
        let base = dma.bus_address();
        // Receive: legacy descriptors, each with its buffer; RDT one short of the head.
        for i in 0..RX_DESCS {
            let d = layout::RX_RING + i * DESC_LEN;
            dma.write_u64(
                d + rx_desc::ADDR,
                base + (layout::RX_BUFS + i * BUF_LEN) as u64,
            );
            dma.write_u64(d + rx_desc::WRITEBACK, 0);
        }
        let rfctl = regs.read32(reg::RFCTL);
        regs.write32(reg::RFCTL, rfctl & !regs::RFCTL_EXSTEN);
        let rx_ring = base + layout::RX_RING as u64;
        regs.write32(reg::RDBAL, rx_ring as u32);
        regs.write32(reg::RDBAH, (rx_ring >> 32) as u32);
        regs.write32(reg::RDLEN, (RX_DESCS * DESC_LEN) as u32);
        regs.write32(reg::RDH, 0);
        regs.write32(reg::RDT, 0);
        regs.write32(reg::RDTR, 0);
        regs.write32(reg::RADV, 0);
        // Transmit: empty ring.
        for i in 0..TX_DESCS {
            let d = layout::TX_RING + i * DESC_LEN;
            dma.write_u64(
                d + tx_desc::ADDR,
                base + (layout::TX_BUFS + i * BUF_LEN) as u64,
            );
            dma.write_u64(d + tx_desc::CONTROL, 0);
        }
        let tx_ring = base + layout::TX_RING as u64;
        regs.write32(reg::TDBAL, tx_ring as u32);
        regs.write32(reg::TDBAH, (tx_ring >> 32) as u32);
        regs.write32(reg::TDLEN, (TX_DESCS * DESC_LEN) as u32);
        regs.write32(reg::TDH, 0);
        regs.write32(reg::TDT, 0);
        regs.write32(reg::TIDV, 0);
        regs.write32(reg::TADV, 0);
        let tarc = regs.read32(reg::TARC0);
        regs.write32(reg::TARC0, tarc | regs::TARC_ENABLE);
        regs.write32(reg::TIPG, regs::TIPG_COPPER);
        regs.write32(reg::ITR, 0);
        if mode == IrqMode::Msix {
            regs.write32(reg::IVAR, regs::ivar_all_to(0));
            regs.write32(reg::EIAC, 0);
            let e = regs.read32(reg::CTRL_EXT);
            regs.write32(reg::CTRL_EXT, e | ctrl_ext::PBA_CLR);
        }
        // The descriptors are in memory before the device may read them.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        regs.write32(
            reg::TCTL,
            tctl::EN | tctl::PSP | tctl::CT_15 | tctl::COLD_63 | tctl::RTLC,
        );
        regs.write32(
            reg::RCTL,
            rctl::EN | rctl::BAM | rctl::SECRC | rctl::BSIZE_2048,
        );
        regs.write32(reg::RDT, (RX_DESCS - 1) as u32);
        let link = regs.read32(reg::STATUS) & status::LU != 0;
        Ok(Nic {
            regs,
            dma,
            mac,
            rx_next: 0,
            rx_release: None,
            rx_discarding: false,
            tx_tail: 0,
            tx_clean: 0,
            tx_tail_written: 0,
            tx_busy_in_a_row: 0,
            unacked: 0,
            armed: false,
            link,
            stats: NetDeviceStats {
                kicks: 1,
                ..NetDeviceStats::default()
            },
            counters: Counters::default(),
        })
    }

    /// The MAC address read at start.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Reads the link state from the device (STATUS.LU).
    pub fn read_link(&mut self) -> bool {
        let up = self.regs.read32(reg::STATUS) & status::LU != 0;
        if up != self.link {
            self.link = up;
            self.counters.link_changes += 1;
        }
        up
    }

    /// The link state as last read.
    pub fn link(&self) -> bool {
        self.link
    }

    /// The common counters.
    pub fn stats(&self) -> NetDeviceStats {
        self.stats
    }

    /// The driver's own counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn rx_writeback(&self, i: usize) -> RxWriteback {
        let d = layout::RX_RING + i * DESC_LEN;
        RxWriteback::decode(self.dma.read_u64(d + rx_desc::WRITEBACK))
    }

    /// Copies the next received frame into `out`; every descriptor looked at goes back to the
    /// device at the next [`flush`](Self::flush).
    pub fn receive(&mut self, out: &mut [u8]) -> Rx {
        let i = self.rx_next;
        let wb = self.rx_writeback(i);
        if !wb.is_done() {
            return Rx::Empty;
        }
        // The buffer is read only after DD was seen.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let len = usize::from(wb.len);
        let eop = wb.status & rx_desc::EOP != 0;
        let result = if self.rx_discarding || !eop {
            self.rx_discarding = !eop;
            Rx::Dropped(RxDrop::Fragmented)
        } else if wb.errors & rx_desc::FRAME_ERRORS != 0 {
            Rx::Dropped(RxDrop::FrameError)
        } else if len == 0 || len > MAX_FRAME || len > BUF_LEN || len > out.len() {
            Rx::Dropped(RxDrop::BadLength)
        } else {
            self.dma
                .read_bytes(layout::RX_BUFS + i * BUF_LEN, &mut out[..len]);
            Rx::Frame(len)
        };
        match result {
            Rx::Frame(_) => self.stats.rx_frames += 1,
            Rx::Dropped(why) => {
                self.stats.rx_dropped += 1;
                match why {
                    RxDrop::FrameError => self.counters.rx_frame_errors += 1,
                    RxDrop::BadLength => self.counters.rx_bad_length += 1,
                    RxDrop::Fragmented => self.counters.rx_fragmented += 1,
                }
            }
            Rx::Empty => {}
        }
        // Back to the device: the address again (the device may have scribbled on it) and a
        // clear status.
        let d = layout::RX_RING + i * DESC_LEN;
        let buf = self.dma.bus_address() + (layout::RX_BUFS + i * BUF_LEN) as u64;
        self.dma.write_u64(d + rx_desc::ADDR, buf);
        self.dma.write_u64(d + rx_desc::WRITEBACK, 0);
        self.rx_release = Some(i);
        self.rx_next = (i + 1) % RX_DESCS;
        result
    }

    /// Reclaims finished transmissions; returns how many.
    pub fn reclaim_tx(&mut self) -> usize {
        let mut n = 0;
        // RT: at most TX_DESCS descriptors.
        while self.tx_clean != self.tx_tail {
            let d = layout::TX_RING + self.tx_clean * DESC_LEN;
            let (_, _, sta) = regs::tx_fields(self.dma.read_u64(d + tx_desc::CONTROL));
            if sta & tx_desc::DD == 0 {
                break;
            }
            self.dma.write_u64(d + tx_desc::CONTROL, 0);
            self.tx_clean = (self.tx_clean + 1) % TX_DESCS;
            n += 1;
        }
        if n > 0 {
            self.tx_busy_in_a_row = 0;
        }
        n
    }

    fn tx_in_flight(&self) -> usize {
        (self.tx_tail + TX_DESCS - self.tx_clean) % TX_DESCS
    }

    /// Queues `frame`; the device hears of it at the next [`flush`](Self::flush).
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            self.counters.tx_bad_length += 1;
            return Err(NetError::TooLarge);
        }
        if !self.link && !self.read_link() {
            self.counters.tx_link_down += 1;
            return Err(NetError::LinkDown);
        }
        self.reclaim_tx();
        if self.tx_in_flight() == TX_DESCS - 1 {
            if self.tx_busy_in_a_row >= TX_STALL_LIMIT {
                self.counters.tx_stalled += 1;
                return Err(NetError::Device(
                    "transmit ring stalled: the device completes no descriptor (DD never set)",
                ));
            }
            self.tx_busy_in_a_row += 1;
            return Err(NetError::Busy);
        }
        let i = self.tx_tail;
        self.dma.write_bytes(layout::TX_BUFS + i * BUF_LEN, frame);
        let d = layout::TX_RING + i * DESC_LEN;
        let buf = self.dma.bus_address() + (layout::TX_BUFS + i * BUF_LEN) as u64;
        self.dma.write_u64(d + tx_desc::ADDR, buf);
        self.dma
            .write_u64(d + tx_desc::CONTROL, regs::tx_control(frame.len() as u16));
        self.tx_tail = (i + 1) % TX_DESCS;
        self.stats.tx_frames += 1;
        Ok(())
    }

    /// Tells the device of the receive descriptors given back and the frames queued since the
    /// last flush: one tail write each.
    pub fn flush(&mut self) {
        if self.rx_release.is_none() && self.tx_tail == self.tx_tail_written {
            return;
        }
        // Descriptors and buffers are in memory before the device hears of them.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        if let Some(i) = self.rx_release.take() {
            self.regs.write32(reg::RDT, i as u32);
            self.stats.kicks += 1;
        }
        if self.tx_tail != self.tx_tail_written {
            self.regs.write32(reg::TDT, self.tx_tail as u32);
            self.tx_tail_written = self.tx_tail;
            self.stats.kicks += 1;
        }
    }

    /// The driver thread was woken: reads the causes, notes link changes and missed frames,
    /// and reclaims finished transmissions. Returns the causes.
    ///
    /// The causes stay set in ICR until [`rearm`](Self::rearm) clears them: the device
    /// signals a cause when it becomes set (§7.4: MSI-X messages and the INTx level follow
    /// `ICR & IMS` rising), so a set cause is the mask while the thread works, and the
    /// register accesses of a round are one read here and one write there — each access is
    /// a VM exit, and under a flood the thread goes round tens of thousands of times a second.
    /// (Without MSI-X — INTx or MSI — the read itself clears ICR, §10.2.4.1; the write is then
    /// harmless.)
    pub fn handle_interrupt(&mut self) -> u32 {
        self.stats.interrupts += 1;
        let causes = self.regs.read32(reg::ICR);
        self.unacked |= causes;
        if causes & icr::LSC != 0 {
            self.read_link();
        }
        if causes & icr::RXO != 0 {
            let missed = u64::from(self.regs.read32(reg::MPC));
            self.counters.rx_missed += missed;
            self.stats.rx_dropped += missed;
        }
        self.reclaim_tx();
        causes
    }

    /// Clears the causes [`handle_interrupt`](Self::handle_interrupt) saw (so each new event
    /// is signalled again) and, the first time, enables the causes the driver uses; whether
    /// work arrived meanwhile (a received frame, a finished transmission), so the caller goes
    /// round again instead of waiting.
    pub fn rearm(&mut self) -> bool {
        if self.unacked != 0 {
            self.regs.write32(reg::ICR, self.unacked);
            self.unacked = 0;
        }
        if !self.armed {
            self.regs.write32(reg::IMS, icr::USED);
            self.armed = true;
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.pending()
    }

    /// Whether a received frame or a finished transmission waits.
    pub fn pending(&self) -> bool {
        if self.rx_writeback(self.rx_next).is_done() {
            return true;
        }
        if self.tx_clean == self.tx_tail {
            return false;
        }
        let d = layout::TX_RING + self.tx_clean * DESC_LEN;
        let (_, _, sta) = regs::tx_fields(self.dma.read_u64(d + tx_desc::CONTROL));
        sta & tx_desc::DD != 0
    }

    /// Stops the device (masks interrupts, disables receive and transmit, resets it) so it no
    /// longer touches the memory: before the memory is given back.
    pub fn stop(&mut self) {
        self.regs.write32(reg::IMC, !0);
        self.armed = false;
        self.regs.write32(reg::RCTL, 0);
        self.regs.write32(reg::TCTL, 0);
        let c = self.regs.read32(reg::CTRL);
        self.regs.write32(reg::CTRL, c | ctrl::RST);
        let _ = poll(&self.regs, reg::CTRL, ctrl::RST, 0);
    }
}

impl<R: Mmio32, D: Dma> Drop for Nic<R, D> {
    /// The device must not write into memory that is about to be freed.
    fn drop(&mut self) {
        self.stop();
    }
}
