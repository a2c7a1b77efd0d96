//! `rings`: what Rhea's NIC drivers read from memory a device or back end writes.
//!
//! - Xen netfront (`drivers/src/xen/netfront.rs`): connected through the real xenbus handshake
//!   against an honest xenstored, then the fuzzer is netback: it writes RX and TX response
//!   slots (ids, offsets, flags, statuses) and moves the response producers anywhere, and the
//!   driver is driven through `receive`, `transmit`, `handle_interrupt` and `rearm`.
//! - virtio-net (`drivers/src/virtio/hw.rs`, over the `virtio-drivers` queues): `NetQueues`
//!   over an in-memory transport whose offered features and queue sizes come from the input
//!   (checked first with `check_features`/`check_queue_size`, as `bind` does); then the
//!   fuzzer is the device: it writes used-ring entries (descriptor ids, lengths) and the used
//!   index, and the driver receives, transmits and acknowledges interrupts.
//!
//! Invariant: an error or a dropped frame, never a panic or an access outside the buffers.
//!
//! Input: `[which (bit 0: virtio), then operations...]`.

use crate::Input;
use crate::xen::{HOME, Host, Server};
use rhea_drivers::net::{MAX_FRAME, NetDevice};
use rhea_drivers::virtio::hw::{NetQueues, QUEUE_SIZE};
use rhea_drivers::virtio::{check_features, check_queue_size, feature};
use rhea_drivers::xen::grant::GrantRef;
use rhea_drivers::xen::netfront::{Netfront, NetfrontConfig};
use rhea_drivers::xen::xenbus::XenbusDevice;
use rhea_drivers::xen::xenstore::XenStore;
use rhea_drivers::xen::{SharedMem, XenHost};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error as VirtioError, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Operations per input at most.
const MAX_OPS: usize = 96;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.u8() & 1 == 0 {
        netfront(&mut input);
    } else {
        virtio(&mut input);
    }
}

// ---- Xen netfront -------------------------------------------------------------------------

const FE: &str = "device/vif/0";
const BE: &str = "/local/domain/0/backend/vif/1/0";
/// Ring header bytes and the producer index of responses (`io/ring.h`).
const RING_HEADER: usize = 64;
const RSP_PROD: usize = 8;
const RING_SLOTS: u32 = 256;
const RX_SLOT: usize = 8;
const TX_SLOT: usize = 12;

/// The back end's view of one ring: the page and the next response index it writes.
struct BackRing {
    page: SharedMem,
    slot_bytes: usize,
    rsp_prod: u32,
}

impl BackRing {
    fn slot(&self, index: u32) -> usize {
        RING_HEADER + (index % RING_SLOTS) as usize * self.slot_bytes
    }
}

fn ring_page(host: &Host, server_key: &str) -> Option<SharedMem> {
    let gref: u32 = host
        .server
        .lock()
        .ok()?
        .get(&format!("{FE}/{server_key}"))?
        .parse()
        .ok()?;
    let entry = host.grant_table().entry(GrantRef(gref)).ok()?;
    host.lookup(u64::from(entry.frame))
}

fn netfront(input: &mut Input<'_>) {
    let mut server = Server::default();
    server.set(&format!("{FE}/mac"), "00:16:3e:12:34:56");
    server.set(&format!("{BE}/state"), "2");
    // netback goes Connected when the front end does.
    server.link(
        &format!("{HOME}/{FE}/state"),
        "4",
        &format!("{BE}/state"),
        "4",
    );
    let host = Arc::new(Host::new(server));
    let dyn_host: Arc<dyn XenHost> = host.clone();
    let Ok(xs) = XenStore::new(dyn_host.clone(), host.store_page.clone(), 1) else {
        return;
    };
    let xs = xs.with_timeout_ns(100_000_000);
    let dev = XenbusDevice {
        kind: "vif".into(),
        id: 0,
        node: FE.into(),
        backend: BE.into(),
        backend_id: 0,
    };
    let config = NetfrontConfig {
        rx_buffers: usize::from(input.u8() % 8) + 1,
        tx_buffers: usize::from(input.u8() % 8) + 1,
        connect_timeout_ns: 1_000_000_000,
    };
    let mut nf = match Netfront::connect(dyn_host, &xs, &dev, config) {
        Ok(nf) => nf,
        Err(e) => panic!("the honest handshake failed: {e}"),
    };
    let (Some(rx_page), Some(tx_page)) = (
        ring_page(&host, "rx-ring-ref"),
        ring_page(&host, "tx-ring-ref"),
    ) else {
        panic!("the front end's ring pages are not granted pages of the host");
    };
    let mut rx = BackRing {
        page: rx_page,
        slot_bytes: RX_SLOT,
        rsp_prod: 0,
    };
    let mut tx = BackRing {
        page: tx_page,
        slot_bytes: TX_SLOT,
        rsp_prod: 0,
    };
    let mut buf = vec![0u8; 4096];
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                // An RX response: id, offset, flags, status.
                let at = rx.slot(rx.rsp_prod);
                let _ = rx.page.write_u16(at, input.u16());
                let _ = rx.page.write_u16(at + 2, input.u16());
                let _ = rx.page.write_u16(at + 4, input.u16());
                let _ = rx.page.write_u16(at + 6, input.u16());
                rx.rsp_prod = rx.rsp_prod.wrapping_add(1);
                let _ = rx.page.write_u32(RSP_PROD, rx.rsp_prod);
            }
            1 => {
                // A TX response: id, status.
                let at = tx.slot(tx.rsp_prod);
                let _ = tx.page.write_u16(at, input.u16());
                let _ = tx.page.write_u16(at + 2, input.u16());
                tx.rsp_prod = tx.rsp_prod.wrapping_add(1);
                let _ = tx.page.write_u32(RSP_PROD, tx.rsp_prod);
            }
            2 => {
                // A producer moved anywhere.
                let ring = if input.u8() & 1 == 0 {
                    &mut rx
                } else {
                    &mut tx
                };
                ring.rsp_prod = input.u32();
                let _ = ring.page.write_u32(RSP_PROD, ring.rsp_prod);
            }
            3 | 4 => {
                let len = usize::from(input.u16()) % (buf.len() + 1);
                let _ = nf.receive(&mut buf[..len]);
            }
            5 => {
                let len = usize::from(input.u16()) % (MAX_FRAME + 64);
                let frame = vec![0x5a; len];
                let _ = nf.transmit(&frame);
            }
            6 => nf.handle_interrupt(),
            _ => {
                let _ = nf.rearm();
                let _ = (nf.stats(), nf.xen_stats(), nf.tx_free());
            }
        }
    }
    drop(nf);
}

// ---- virtio-net ---------------------------------------------------------------------------

/// A virtio transport in memory: configuration and answers from the input; the queues'
/// addresses kept so the harness can write the used rings as a device would.
#[derive(Debug)]
struct FakeTransport {
    features: u64,
    max_queue: [u32; 2],
    status: DeviceStatus,
    config: [u8; 16],
    /// What the device reports, and where the queues are: shared with the harness.
    device: Rc<RefCell<DeviceSide>>,
}

/// The device's state the harness and the transport share.
#[derive(Debug, Default)]
struct DeviceSide {
    interrupt: u32,
    /// The used ring (device area) of queue 0 (receive) and 1 (transmit), and its size.
    used: [Option<(PhysAddr, u32)>; 2],
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }

    fn read_device_features(&mut self) -> u64 {
        self.features
    }

    fn write_driver_features(&mut self, _driver_features: u64) {}

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.max_queue.get(usize::from(queue)).copied().unwrap_or(0)
    }

    fn notify(&mut self, _queue: u16) {}

    fn get_status(&self) -> DeviceStatus {
        self.status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.status = status;
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        _descriptors: PhysAddr,
        _driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if let Some(slot) = self.device.borrow_mut().used.get_mut(usize::from(queue)) {
            *slot = Some((device_area, size));
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        if let Some(slot) = self.device.borrow_mut().used.get_mut(usize::from(queue)) {
            *slot = None;
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.device
            .borrow()
            .used
            .get(usize::from(queue))
            .is_some_and(Option::is_some)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::from_bits_truncate(self.device.borrow().interrupt)
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, VirtioError> {
        let end = offset
            .checked_add(size_of::<T>())
            .ok_or(VirtioError::ConfigSpaceTooSmall)?;
        let bytes = self
            .config
            .get(offset..end)
            .ok_or(VirtioError::ConfigSpaceTooSmall)?;
        T::read_from_bytes(bytes).map_err(|_| VirtioError::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), VirtioError> {
        Ok(())
    }
}

/// The device's side of a used ring (virtio 1.2 §2.7.8): `flags: u16, idx: u16,
/// ring: [{id: u32, len: u32}; size]`.
struct UsedRing {
    base: usize,
    size: u32,
    idx: u16,
}

impl UsedRing {
    fn write_u16(&self, offset: usize, v: u16) {
        // SAFETY: `offset` is 0 or 2: inside the used ring the queue allocated (at least
        // 4 + 8 * size + 2 bytes, 2-aligned) and owns while the `NetQueues` lives, which it
        // does for every call of this harness. The device writes these fields by contract;
        // the driver reads them with volatile/atomic loads, and nothing runs concurrently.
        unsafe { ((self.base + offset) as *mut u16).write_volatile(v) }
    }

    fn write_elem(&self, slot: u32, id: u32, len: u32) {
        let at = self.base + 4 + (slot % self.size) as usize * 8;
        // SAFETY: as in `write_u16`: `slot % size` is an element of the ring, 4-aligned.
        unsafe {
            (at as *mut u32).write_volatile(id);
            ((at + 4) as *mut u32).write_volatile(len);
        }
    }

    fn publish(&mut self, id: u32, len: u32) {
        self.write_elem(u32::from(self.idx), id, len);
        self.idx = self.idx.wrapping_add(1);
        self.write_u16(2, self.idx);
    }
}

fn virtio(input: &mut Input<'_>) {
    let choice = input.u8();
    // Mostly what QEMU offers; sometimes anything.
    let features = if choice & 1 == 0 {
        feature::NET_MAC | feature::VERSION_1 | (u64::from(input.u8()) << 16)
    } else {
        input.u64()
    };
    let max_queue = if choice & 2 == 0 {
        [256, 256]
    } else {
        [input.u32(), input.u32()]
    };
    let mut config = [0u8; 16];
    for b in &mut config {
        *b = input.u8();
    }
    let device = Rc::new(RefCell::new(DeviceSide::default()));
    let mut transport = FakeTransport {
        features,
        max_queue,
        status: DeviceStatus::empty(),
        config,
        device: Rc::clone(&device),
    };
    // `bind`'s checks (check_transport) come before the queues are made.
    if check_features(transport.read_device_features(), true).is_err()
        || (0..2).any(|q| check_queue_size(q, transport.max_queue_size(q)).is_err())
    {
        return;
    }
    // An unbounded heap: the offloads' paths (joined segments) stay in reach of the fuzzer.
    let mut queues = match NetQueues::new(transport, usize::MAX) {
        Ok(q) => q,
        Err(_) => return,
    };
    let _ = queues.mac();
    let used = device.borrow().used;
    let mut rings = used.map(|u| {
        u.map(|(base, size)| UsedRing {
            base: base as usize,
            size: size.clamp(1, QUEUE_SIZE as u32),
            idx: 0,
        })
    });
    let mut buf = vec![0u8; 2048];
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 | 1 => {
                let q = usize::from(input.u8() & 1);
                let (id, len) = (input.u32(), input.u32());
                if let Some(r) = rings[q].as_mut() {
                    r.publish(id, len);
                }
            }
            2 => {
                let q = usize::from(input.u8() & 1);
                let idx = input.u16();
                if let Some(r) = rings[q].as_mut() {
                    r.idx = idx;
                    r.write_u16(2, idx);
                }
            }
            3 | 4 => {
                let len = usize::from(input.u16()) % (buf.len() + 1);
                let _ = queues.receive(&mut buf[..len]);
            }
            5 => {
                let len = usize::from(input.u16()) % (MAX_FRAME + 64);
                let _ = queues.transmit(&vec![0xa5; len]);
            }
            6 => {
                device.borrow_mut().interrupt = u32::from(input.u8());
                let _ = queues.reclaim_tx();
                let _ = queues.ack_interrupt();
            }
            _ => {
                queues.disable_interrupts();
                queues.enable_interrupts();
                let _ = queues.pending();
            }
        }
    }
}
