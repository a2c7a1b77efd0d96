//! The driver against a model of the 82574: registers with the behaviour the driver relies on
//! (self-clearing reset, write-one-to-clear ICR, IMS/IMC, clear-on-read MPC, transmission at
//! a TDT write), and memory the model reads descriptors from and writes completions into,
//! honestly or not.

use super::regs::{self, icr, reg, rx_desc, status, tx_desc};
use super::ring::{self, Dma, IrqMode, Nic, Rx, RxDrop, layout};
use super::*;
use crate::net::MAX_FRAME;
use crate::pci::{BarAllocator, ConfigAccess};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

const BASE: u64 = 0x4000_0000;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[derive(Debug)]
struct Mem {
    bytes: Mutex<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct ModelDma(Arc<Mem>);

impl Dma for ModelDma {
    fn bus_address(&self) -> u64 {
        BASE
    }
    fn len(&self) -> usize {
        self.0.bytes.lock().unwrap().len()
    }
    fn read_u64(&self, offset: usize) -> u64 {
        assert!(offset.is_multiple_of(8));
        let b = self.0.bytes.lock().unwrap();
        u64::from_le_bytes(b[offset..offset + 8].try_into().unwrap())
    }
    fn write_u64(&self, offset: usize, value: u64) {
        assert!(offset.is_multiple_of(8));
        self.0.bytes.lock().unwrap()[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.0.bytes.lock().unwrap()[offset..offset + out.len()]);
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.0.bytes.lock().unwrap()[offset..offset + data.len()].copy_from_slice(data);
    }
}

/// The device: its registers and what it does with the shared memory.
#[derive(Debug)]
struct Device {
    regs: Mutex<Vec<u32>>,
    mem: Arc<Mem>,
    /// Never writes DD back (receive or transmit).
    never_dd: AtomicBool,
    /// CTRL.RST never clears.
    reset_stuck: AtomicBool,
    /// Frames the device sent.
    sent: Mutex<Vec<Vec<u8>>>,
}

#[derive(Clone, Debug)]
struct ModelRegs(Arc<Device>);

impl Mmio32 for ModelRegs {
    fn read32(&self, offset: usize) -> u32 {
        let d = &self.0;
        let v = d.regs.lock().unwrap()[offset / 4];
        if offset == reg::MPC {
            d.regs.lock().unwrap()[offset / 4] = 0;
        }
        v
    }

    fn write32(&self, offset: usize, value: u32) {
        let d = &self.0;
        let i = offset / 4;
        match offset {
            reg::ICR => d.regs.lock().unwrap()[i] &= !value,
            reg::IMS => d.regs.lock().unwrap()[reg::IMS / 4] |= value,
            reg::IMC => d.regs.lock().unwrap()[reg::IMS / 4] &= !value,
            reg::CTRL => {
                let stuck = d.reset_stuck.load(Relaxed);
                let v = if stuck {
                    value
                } else {
                    value & !regs::ctrl::RST
                };
                d.regs.lock().unwrap()[i] = v;
                if value & regs::ctrl::RST != 0 && !stuck {
                    let mut r = d.regs.lock().unwrap();
                    for o in [reg::RCTL, reg::TCTL, reg::RDH, reg::RDT, reg::TDH, reg::TDT] {
                        r[o / 4] = 0;
                    }
                }
            }
            reg::TDT => {
                d.regs.lock().unwrap()[i] = value;
                d.transmit();
            }
            _ => d.regs.lock().unwrap()[i] = value,
        }
    }
}

impl Device {
    fn new(ral: u32, rah: u32) -> Arc<Device> {
        let mut r = vec![0u32; (reg::WINDOW / 4) as usize];
        r[reg::RAL0 / 4] = ral;
        r[reg::RAH0 / 4] = rah;
        r[reg::STATUS / 4] = status::LU;
        Arc::new(Device {
            regs: Mutex::new(r),
            mem: Arc::new(Mem {
                bytes: Mutex::new(vec![0; layout::LEN]),
            }),
            never_dd: AtomicBool::new(false),
            reset_stuck: AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn with_mac() -> Arc<Device> {
        Device::new(
            u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
            u32::from(u16::from_le_bytes([MAC[4], MAC[5]])) | regs::RAH_AV,
        )
    }

    fn reg(&self, offset: usize) -> u32 {
        self.regs.lock().unwrap()[offset / 4]
    }

    fn set_reg(&self, offset: usize, v: u32) {
        self.regs.lock().unwrap()[offset / 4] = v;
    }

    fn raise(&self, cause: u32) {
        self.regs.lock().unwrap()[reg::ICR / 4] |= cause;
    }

    fn offset(&self, bus: u64) -> usize {
        usize::try_from(bus - BASE).unwrap()
    }

    fn desc(&self, ring_base: usize, i: usize) -> (u64, u64) {
        let m = ModelDma(Arc::clone(&self.mem));
        let d = ring_base + i * regs::DESC_LEN;
        (m.read_u64(d), m.read_u64(d + 8))
    }

    /// Sends every descriptor from TDH to TDT, writing DD back unless told not to.
    fn transmit(&self) {
        let m = ModelDma(Arc::clone(&self.mem));
        let ring =
            self.offset(u64::from(self.reg(reg::TDBAH)) << 32 | u64::from(self.reg(reg::TDBAL)));
        let n = self.reg(reg::TDLEN) as usize / regs::DESC_LEN;
        let mut head = self.reg(reg::TDH) as usize;
        let tail = self.reg(reg::TDT) as usize;
        if self.reg(reg::TCTL) & regs::tctl::EN == 0 || n == 0 {
            return;
        }
        while head != tail {
            let (addr, control) = self.desc(ring, head);
            let (len, cmd, _) = regs::tx_fields(control);
            assert_ne!(cmd & tx_desc::CMD_EOP, 0, "one descriptor per frame");
            let mut frame = vec![0; usize::from(len)];
            m.read_bytes(self.offset(addr), &mut frame);
            self.sent.lock().unwrap().push(frame);
            if !self.never_dd.load(Relaxed) {
                let d = ring + head * regs::DESC_LEN + 8;
                m.write_u64(d, control | u64::from(tx_desc::DD) << 32);
            }
            head = (head + 1) % n;
        }
        self.set_reg(reg::TDH, head as u32);
        self.raise(icr::TXDW);
    }

    /// Writes a completed receive descriptor at RDH (`len`, `status`, `errors`, `data` into
    /// its buffer); false if the ring has no descriptor for the device.
    fn deliver_raw(&self, data: &[u8], len: u16, st: u8, errors: u8) -> bool {
        let m = ModelDma(Arc::clone(&self.mem));
        let ring =
            self.offset(u64::from(self.reg(reg::RDBAH)) << 32 | u64::from(self.reg(reg::RDBAL)));
        let n = self.reg(reg::RDLEN) as usize / regs::DESC_LEN;
        let head = self.reg(reg::RDH) as usize;
        if self.reg(reg::RCTL) & regs::rctl::EN == 0 || head == self.reg(reg::RDT) as usize {
            self.set_reg(reg::MPC, self.reg(reg::MPC) + 1);
            self.raise(icr::RXO);
            return false;
        }
        let (addr, _) = self.desc(ring, head);
        m.write_bytes(self.offset(addr), data);
        if !self.never_dd.load(Relaxed) {
            let wb = regs::RxWriteback {
                len,
                status: st,
                errors,
            };
            m.write_u64(ring + head * regs::DESC_LEN + 8, wb.encode());
        }
        self.set_reg(reg::RDH, ((head + 1) % n) as u32);
        self.raise(icr::RXT0);
        true
    }

    fn deliver(&self, frame: &[u8]) -> bool {
        self.deliver_raw(frame, frame.len() as u16, rx_desc::DD | rx_desc::EOP, 0)
    }
}

fn started(dev: &Arc<Device>, mode: IrqMode) -> Result<Nic<ModelRegs, ModelDma>, String> {
    let regs = ModelRegs(Arc::clone(dev));
    ring::reset(&regs)?;
    Nic::start(regs, ModelDma(Arc::clone(&dev.mem)), mode)
}

fn frame(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn start_reads_the_mac_and_programs_the_rings() {
    let dev = Device::with_mac();
    let nic = started(&dev, IrqMode::Msix).unwrap();
    assert_eq!(nic.mac(), MAC);
    assert!(nic.link());
    assert_eq!(
        dev.reg(reg::RDLEN),
        (ring::RX_DESCS * regs::DESC_LEN) as u32
    );
    assert_eq!(dev.reg(reg::RDT), (ring::RX_DESCS - 1) as u32);
    assert_eq!(dev.reg(reg::RDBAL), BASE as u32);
    assert_ne!(dev.reg(reg::RCTL) & regs::rctl::EN, 0);
    assert_ne!(dev.reg(reg::TCTL) & regs::tctl::EN, 0);
    assert_ne!(dev.reg(reg::TARC0) & regs::TARC_ENABLE, 0);
    assert_eq!(dev.reg(reg::IVAR), regs::ivar_all_to(0));
    // Interrupts stay masked until the driver thread arms them.
    assert_eq!(dev.reg(reg::IMS), 0);
    // INTx leaves IVAR alone.
    let dev = Device::with_mac();
    let _nic = started(&dev, IrqMode::Legacy).unwrap();
    assert_eq!(dev.reg(reg::IVAR), 0);
}

#[test]
fn unusable_mac_addresses_are_refused() {
    let zero = Device::new(0, regs::RAH_AV);
    let e = started(&zero, IrqMode::Legacy).unwrap_err();
    assert!(e.contains("all zeros"), "{e}");
    let multicast = Device::new(0x0000_5e01, regs::RAH_AV);
    let e = started(&multicast, IrqMode::Legacy).unwrap_err();
    assert!(e.contains("multicast"), "{e}");
    // Refused before the rings were given to the device.
    assert_eq!(multicast.reg(reg::RCTL), 0);
}

#[test]
fn a_reset_that_never_completes_is_an_error() {
    let dev = Device::with_mac();
    dev.reset_stuck.store(true, Relaxed);
    let e = ring::reset(&ModelRegs(Arc::clone(&dev))).unwrap_err();
    assert!(e.contains("CTRL.RST"), "{e}");
}

#[test]
fn frames_are_received_in_order_across_many_ring_wraps() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Msix).unwrap();
    let mut out = [0u8; MAX_FRAME];
    let mut next = 0usize;
    for round in 0..20 {
        for i in 0..40 {
            assert!(dev.deliver(&frame(60 + i, (round * 40 + i) as u8)));
        }
        for i in 0..40 {
            assert_eq!(nic.receive(&mut out), Rx::Frame(60 + i));
            assert_eq!(out[..60 + i], frame(60 + i, next as u8)[..]);
            next += 1;
        }
        assert_eq!(nic.receive(&mut out), Rx::Empty);
        nic.flush();
        // The last descriptor looked at is the driver's spare.
        assert_eq!(
            dev.reg(reg::RDT) as usize,
            (round * 40 + 39) % ring::RX_DESCS
        );
    }
    assert_eq!(nic.stats().rx_frames, 800);
    assert_eq!(nic.stats().rx_dropped, 0);
}

#[test]
fn a_full_receive_ring_counts_missed_frames() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Legacy).unwrap();
    for i in 0..ring::RX_DESCS - 1 {
        assert!(dev.deliver(&frame(64, i as u8)));
    }
    // The driver's spare descriptor is not the device's: the 64th frame is missed.
    assert!(!dev.deliver(&frame(64, 0)));
    let causes = nic.handle_interrupt();
    assert_ne!(causes & icr::RXO, 0);
    assert_eq!(nic.counters().rx_missed, 1);
    assert_eq!(nic.stats().rx_dropped, 1);
}

#[test]
fn absurd_lengths_errors_and_fragments_are_dropped_and_counted() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Msix).unwrap();
    let good = frame(100, 7);
    let both = rx_desc::DD | rx_desc::EOP;
    dev.deliver_raw(&good, 0xffff, both, 0);
    dev.deliver_raw(&good, 0, both, 0);
    dev.deliver_raw(&good, (MAX_FRAME + 1) as u16, both, 0);
    dev.deliver_raw(&good, 100, both, 0x01); // CRC error
    dev.deliver_raw(&good, 100, rx_desc::DD, 0); // no EOP: first of two
    dev.deliver_raw(&good, 100, both, 0); // its end
    dev.deliver(&good);
    let mut out = [0u8; MAX_FRAME];
    let mut seen = Vec::new();
    loop {
        match nic.receive(&mut out) {
            Rx::Empty => break,
            r => seen.push(r),
        }
    }
    assert_eq!(
        seen,
        [
            Rx::Dropped(RxDrop::BadLength),
            Rx::Dropped(RxDrop::BadLength),
            Rx::Dropped(RxDrop::BadLength),
            Rx::Dropped(RxDrop::FrameError),
            Rx::Dropped(RxDrop::Fragmented),
            Rx::Dropped(RxDrop::Fragmented),
            Rx::Frame(100),
        ]
    );
    assert_eq!(out[..100], good[..]);
    let c = nic.counters();
    assert_eq!(
        (c.rx_bad_length, c.rx_frame_errors, c.rx_fragmented),
        (3, 1, 2)
    );
    assert_eq!(nic.stats().rx_dropped, 6);
    // A frame longer than the caller's buffer is dropped too, and the next one still arrives.
    dev.deliver(&frame(600, 1));
    dev.deliver(&frame(60, 2));
    let mut small = [0u8; 512];
    assert_eq!(nic.receive(&mut small), Rx::Dropped(RxDrop::BadLength));
    assert_eq!(nic.receive(&mut small), Rx::Frame(60));
}

#[test]
fn the_net_device_skips_drops_and_is_bounded() {
    let dev = Device::with_mac();
    let nic = started(&dev, IrqMode::Msix).unwrap();
    let mut d = E1000e::new("e1000e test".into(), nic);
    // A whole ring of garbage: one call returns, having looked at each descriptor once.
    for _ in 0..ring::RX_DESCS - 1 {
        dev.deliver_raw(&[0; 8], 0xffff, rx_desc::DD | rx_desc::EOP, 0);
    }
    let mut out = [0u8; MAX_FRAME];
    assert_eq!(d.receive(&mut out), Ok(None));
    d.flush();
    dev.deliver(&frame(64, 3));
    assert_eq!(d.receive(&mut out), Ok(Some(64)));
    assert_eq!(d.stats().rx_dropped, (ring::RX_DESCS - 1) as u64);
    assert_eq!(d.mac(), MAC);
}

#[test]
fn a_device_that_never_sets_dd_delivers_nothing_and_stalls_transmit_boundedly() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Msix).unwrap();
    dev.never_dd.store(true, Relaxed);
    assert!(dev.deliver(&frame(64, 1)));
    let mut out = [0u8; MAX_FRAME];
    assert_eq!(nic.receive(&mut out), Rx::Empty);
    assert!(!nic.pending());
    // Transmit: the ring fills (one descriptor stays free), then Busy, then, once the
    // device has completed nothing for long enough, frames are dropped with an error.
    let f = frame(60, 9);
    for _ in 0..ring::TX_DESCS - 1 {
        assert_eq!(nic.transmit(&f), Ok(()));
        nic.flush();
    }
    let mut busy = 0;
    let err = loop {
        match nic.transmit(&f) {
            Err(NetError::Busy) => busy += 1,
            other => break other,
        }
        assert!(busy <= ring::TX_STALL_LIMIT, "no end to Busy");
    };
    assert!(matches!(err, Err(NetError::Device(m)) if m.contains("DD never set")));
    assert_eq!(busy, ring::TX_STALL_LIMIT);
    assert_eq!(nic.counters().tx_stalled, 1);
}

#[test]
fn frames_are_sent_and_descriptors_reclaimed() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Msix).unwrap();
    for i in 0..500 {
        nic.transmit(&frame(42 + i % 1000, i as u8)).unwrap();
        if i % 7 == 6 {
            nic.flush();
        }
    }
    nic.flush();
    let sent = dev.sent.lock().unwrap();
    assert_eq!(sent.len(), 500);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(*f, frame(42 + i % 1000, i as u8));
    }
    drop(sent);
    assert!(nic.pending());
    nic.handle_interrupt();
    assert!(!nic.pending());
    assert_eq!(nic.stats().tx_frames, 500);
    // One tail write per flush, not per frame (plus the receive tail at start).
    assert!(nic.stats().kicks <= 1 + 500 / 7 + 2, "{:?}", nic.stats());
    assert_eq!(nic.transmit(&[0; MAX_FRAME + 1]), Err(NetError::TooLarge));
    assert_eq!(nic.transmit(&[]), Err(NetError::TooLarge));
    assert_eq!(nic.counters().tx_bad_length, 2);
}

#[test]
fn a_link_that_stays_down_refuses_frames_without_waiting() {
    let dev = Device::with_mac();
    dev.set_reg(reg::STATUS, 0);
    let nic = started(&dev, IrqMode::Legacy).unwrap();
    let mut d = E1000e::new("e1000e test".into(), nic);
    assert!(!d.link_up());
    for _ in 0..10 {
        assert_eq!(d.transmit(&frame(60, 0)), Err(NetError::LinkDown));
    }
    assert_eq!(d.counters().tx_link_down, 10);
    assert!(dev.sent.lock().unwrap().is_empty());
    // It comes up: a link-change interrupt (or the next frame) notices.
    dev.set_reg(reg::STATUS, status::LU);
    dev.raise(icr::LSC);
    d.handle_interrupt();
    assert!(d.link_up());
    assert_eq!(d.transmit(&frame(60, 0)), Ok(()));
    d.flush();
    assert_eq!(dev.sent.lock().unwrap().len(), 1);
    assert_eq!(d.counters().link_changes, 1);
}

#[test]
fn interrupts_are_masked_cleared_and_rearmed_without_losing_work() {
    let dev = Device::with_mac();
    let mut nic = started(&dev, IrqMode::Msix).unwrap();
    assert!(!nic.rearm());
    assert_eq!(dev.reg(reg::IMS), icr::USED);
    dev.deliver(&frame(64, 0));
    let causes = nic.handle_interrupt();
    assert_ne!(causes & icr::RXT0, 0);
    // The cause stays set while the thread works (no new signal for it), then the rearm
    // clears it (ICR written back: it is not clear-on-read under MSI-X); IMS is written once.
    assert_eq!(dev.reg(reg::ICR) & icr::RXT0, icr::RXT0);
    let mut out = [0u8; MAX_FRAME];
    assert_eq!(nic.receive(&mut out), Rx::Frame(64));
    nic.flush();
    dev.deliver(&frame(64, 1));
    // A frame that arrived before the rearm is reported by it.
    assert!(nic.rearm());
    assert_eq!(dev.reg(reg::ICR), 0);
    assert_eq!(dev.reg(reg::IMS), icr::USED);
    dev.set_reg(reg::IMS, 0);
    nic.handle_interrupt();
    assert_eq!(nic.receive(&mut out), Rx::Frame(64));
    nic.flush();
    assert!(!nic.rearm());
    assert_eq!(dev.reg(reg::IMS), 0, "IMS is written once, not every round");
    assert_eq!(nic.stats().interrupts, 2);
}

#[test]
fn dropping_the_driver_stops_the_device() {
    let dev = Device::with_mac();
    let nic = started(&dev, IrqMode::Msix).unwrap();
    drop(nic);
    assert_eq!(dev.reg(reg::RCTL), 0);
    assert_eq!(dev.reg(reg::TCTL), 0);
    assert_eq!(dev.reg(reg::IMS), 0);
}

#[test]
fn matches_only_the_82574l() {
    struct NoAccess;
    impl ConfigAccess for NoAccess {
        fn name(&self) -> &'static str {
            "none"
        }
        fn read32(&self, _: pci::Address, _: u16) -> u32 {
            !0
        }
        fn write32(&self, _: pci::Address, _: u16, _: u32) {}
    }
    static SPACE: BarAllocator = BarAllocator::new(0xc000_0000, 0xd000_0000);
    let drv = E1000ePci::new(pci::NicEnv {
        access: Arc::new(NoAccess),
        bar_space: &SPACE,
        allow_msix: true,
        allow_msi: true,
        intx_gsi: |_| None,
    });
    let dev = |vendor, device| DeviceInfo {
        location: "pci 0000:00:02.0".into(),
        id: DeviceId::Pci {
            address: pci::Address::new(0, 2, 0).unwrap(),
            vendor,
            device,
            class: [2, 0, 0],
        },
    };
    assert!(drv.matches(&dev(0x8086, 0x10d3)));
    assert!(!drv.matches(&dev(0x8086, 0x100e)));
    assert!(!drv.matches(&dev(0x1af4, 0x1000)));
    // A function whose BAR0 is absent (all ones: nothing there) is refused, not half-bound.
    assert!(drv.bind(&dev(0x8086, 0x10d3), &NoCtx).is_err());
}

struct NoCtx;
impl BindContext for NoCtx {
    fn map_mmio(&self, _: u64, _: u64) -> Option<u64> {
        None
    }
    fn alloc_msi(&self) -> Option<crate::bus::Msi> {
        None
    }
}
