//! virtio-blk (virtio 1.2 §5.2): a disk of 512-byte sectors behind one request queue. A
//! request is one descriptor chain: a 16-byte header (type, reserved, sector) and, for a
//! write, the data, readable by the device; then, written by the device, the data of a read
//! and one status byte. With `VIRTIO_F_VERSION_1` any split of the chain into descriptors is
//! allowed (§2.7.4), so a chain here is two descriptors: everything the device reads, then
//! everything it writes.
//!
//! Over PCI (q35's `virtio-blk-pci`) and virtio-mmio (`virtio-blk-device`: microvm, Arm virt),
//! through `virtio-drivers`' transports and the request queue of [`hw::RequestQueue`] (where the
//! queue's unsafe calls are), shared with virtio-9p.
//!
//! **Waiting**: as virtio-9p, no interrupt yet: the caller polls the used ring and calls its
//! `wait` between looks (the kernel yields the CPU there). A device that does not answer within
//! the caller's patience is given up for good, its buffers left with it.
//!
//! **Copies**: the data is copied into the queue's own buffers (heap, identity-mapped as DMA
//! needs) and out again — simple and safe to give up, at the price of one copy each way;
//! requests are at most [`MAX_TRANSFER`] bytes, so a large read or write is several requests.

use super::hw;
use super::{VIRTIO_VENDOR, feature};
use crate::bus::{BindContext, Bound, DeviceId, DeviceInfo, Driver};
use crate::pci;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// virtio's device type for block devices.
pub const VIRTIO_BLK_TYPE: u32 = 2;
/// virtio-blk's PCI device IDs: transitional and modern (0x1040 + 2).
pub const VIRTIO_BLK_PCI_IDS: [u16; 2] = [0x1001, 0x1042];
/// Bytes of a sector: the unit of the header's sector and of the capacity.
pub const SECTOR: usize = 512;
/// The most bytes one request moves (64 KiB: 128 sectors).
pub const MAX_TRANSFER: usize = 64 << 10;

/// `VIRTIO_BLK_F_SIZE_MAX`: `size_max` bounds one descriptor's bytes.
const F_SIZE_MAX: u64 = 1 << 1;
/// `VIRTIO_BLK_F_RO`: the device is read-only.
const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_FLUSH`: the device takes flush requests (else writes are durable when done).
const F_FLUSH: u64 = 1 << 9;

/// Request types (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
/// Status values the device writes last.
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

const QUEUE: u16 = 0;

/// A block device a driver bound: sectors of [`SECTOR`] bytes, one request at a time.
pub trait BlockChannel: Send {
    /// The device's name for messages (`virtio-blk 00:03.0`).
    fn name(&self) -> &str;
    /// Its size in sectors.
    fn sectors(&self) -> u64;
    /// Whether it refuses writes.
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes (a multiple of [`SECTOR`]) from `sector` on, calling `wait`
    /// between looks at the device (`false`: give up).
    fn read(
        &mut self,
        sector: u64,
        buf: &mut [u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<(), String>;
    /// Writes `buf` (a multiple of [`SECTOR`] bytes) at `sector`.
    fn write(
        &mut self,
        sector: u64,
        buf: &[u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<(), String>;
    /// Makes the writes done so far durable.
    fn flush(&mut self, wait: &mut dyn FnMut() -> bool) -> Result<(), String>;
}

/// Checks a transfer of `bytes` at `sector` against a disk of `sectors`: whole sectors, inside.
pub fn check_range(sector: u64, bytes: usize, sectors: u64) -> Result<(), String> {
    if !bytes.is_multiple_of(SECTOR) {
        return Err(format!("{bytes} bytes is not a whole number of sectors"));
    }
    let count = (bytes / SECTOR) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(format!(
            "sectors {sector}..+{count} lie past the end of the disk ({sectors} sectors)"
        )),
    }
}

/// A request's header (§5.2.6: type, reserved, sector; little-endian).
pub fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// What a status byte means.
pub fn status_result(status: u8) -> Result<(), String> {
    match status {
        S_OK => Ok(()),
        S_IOERR => Err("the device reports an I/O error".to_string()),
        S_UNSUPP => Err("the device does not support the request".to_string()),
        other => Err(format!(
            "the device wrote status {other}, which means nothing"
        )),
    }
}

/// A bound virtio-blk device.
pub struct VirtioBlk<T: Transport> {
    queue: hw::RequestQueue<T>,
    sectors: u64,
    read_only: bool,
    can_flush: bool,
    /// Bytes per request (at most [`MAX_TRANSFER`], less when `size_max` says so).
    transfer: usize,
    /// The request going out: header and, for a write, the data.
    out: Vec<u8>,
    /// What comes back: the data of a read and the status byte.
    inp: Vec<u8>,
    name: String,
}

impl<T: Transport> core::fmt::Debug for VirtioBlk<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("name", &self.name)
            .field("sectors", &self.sectors)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// The bytes one request may move: [`MAX_TRANSFER`], or less to keep a write's one readable
/// descriptor (16-byte header and data) within the device's `size_max`, in whole sectors.
pub fn transfer_size(size_max: Option<u32>) -> Result<usize, String> {
    match size_max {
        None => Ok(MAX_TRANSFER),
        Some(max) => {
            let data = (max as usize).saturating_sub(16) / SECTOR * SECTOR;
            if data == 0 {
                Err(format!(
                    "size_max {max}: a descriptor cannot hold a header and one sector"
                ))
            } else {
                Ok(data.min(MAX_TRANSFER))
            }
        }
    }
}

impl<T: Transport> VirtioBlk<T> {
    /// Negotiates (read-only, flush, size_max; VERSION_1 where offered), reads the capacity,
    /// sets up the queue.
    pub fn new(mut transport: T, name: String) -> Result<Self, String> {
        let offered = transport.read_device_features();
        if offered & feature::ACCESS_PLATFORM != 0 {
            return Err("VIRTIO_F_ACCESS_PLATFORM (DMA through an IOMMU) is not supported".into());
        }
        let wanted = offered & (F_SIZE_MAX | F_RO | F_FLUSH | feature::VERSION_1);
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        transport.write_driver_features(wanted);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err("the device refused the features".into());
        }
        transport.set_guest_page_size(virtio_drivers::PAGE_SIZE as u32);
        let max = transport.max_queue_size(QUEUE);
        if max < hw::REQUEST_QUEUE_SIZE as u32 {
            return Err(format!(
                "request queue of {max} entries (at least {})",
                hw::REQUEST_QUEUE_SIZE
            ));
        }
        let config = |offset: usize| -> Result<u32, String> {
            transport
                .read_config_space::<u32>(offset)
                .map_err(|e| format!("configuration: {e}"))
        };
        // capacity (le64 at 0, read as two halves: the transports read 32 bits at most),
        // size_max (le32 at 8).
        let sectors = u64::from(config(0)?) | u64::from(config(4)?) << 32;
        let size_max = if wanted & F_SIZE_MAX != 0 {
            Some(config(8)?)
        } else {
            None
        };
        let transfer = transfer_size(size_max)?;
        let queue = hw::RequestQueue::new(transport, QUEUE)?;
        Ok(Self {
            queue,
            sectors,
            read_only: wanted & F_RO != 0,
            can_flush: wanted & F_FLUSH != 0,
            transfer,
            out: Vec::new(),
            inp: Vec::new(),
            name,
        })
    }

    /// One request: `out` (header, data) to the device, `back` bytes (data, status) from it.
    fn request(&mut self, back: usize, wait: &mut dyn FnMut() -> bool) -> Result<(), String> {
        if self.inp.len() < back {
            self.inp.resize(back, 0);
        }
        let n = self
            .queue
            .rpc(&self.out, &mut self.inp[..back], wait)
            .map_err(|e| format!("{}: {e}", self.name))?;
        if n != back {
            return Err(format!(
                "{}: the device wrote {n} bytes of the {back} expected",
                self.name
            ));
        }
        status_result(self.inp[back - 1]).map_err(|e| format!("{}: {e}", self.name))
    }
}

impl<T: Transport> BlockChannel for VirtioBlk<T>
where
    hw::RequestQueue<T>: Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(
        &mut self,
        sector: u64,
        buf: &mut [u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<(), String> {
        check_range(sector, buf.len(), self.sectors)?;
        let step = self.transfer;
        for (i, chunk) in buf.chunks_mut(step).enumerate() {
            let at = sector + (i * step / SECTOR) as u64;
            self.out.clear();
            self.out.extend_from_slice(&header(T_IN, at));
            self.request(chunk.len() + 1, wait)?;
            chunk.copy_from_slice(&self.inp[..chunk.len()]);
        }
        Ok(())
    }

    fn write(
        &mut self,
        sector: u64,
        buf: &[u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<(), String> {
        if self.read_only {
            return Err(format!("{}: the device is read-only", self.name));
        }
        check_range(sector, buf.len(), self.sectors)?;
        let step = self.transfer;
        for (i, chunk) in buf.chunks(step).enumerate() {
            let at = sector + (i * step / SECTOR) as u64;
            self.out.clear();
            self.out.extend_from_slice(&header(T_OUT, at));
            self.out.extend_from_slice(chunk);
            self.request(1, wait)?;
        }
        Ok(())
    }

    fn flush(&mut self, wait: &mut dyn FnMut() -> bool) -> Result<(), String> {
        if !self.can_flush {
            // Without VIRTIO_BLK_F_FLUSH a write is durable once the device answers it.
            return Ok(());
        }
        self.out.clear();
        self.out.extend_from_slice(&header(T_FLUSH, 0));
        self.request(1, wait)
    }
}

/// virtio-blk over PCI: memory BARs mapped, memory decoding and bus mastering on; no interrupt.
#[derive(Debug)]
pub struct VirtioBlkPci {
    env: pci::NicEnv,
}

impl VirtioBlkPci {
    /// A driver using `env`'s configuration access and BAR window.
    pub fn new(env: pci::NicEnv) -> Self {
        VirtioBlkPci { env }
    }
}

impl Driver for VirtioBlkPci {
    fn name(&self) -> &'static str {
        "virtio-blk-pci"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(dev.id, DeviceId::Pci { vendor: VIRTIO_VENDOR, device, .. } if VIRTIO_BLK_PCI_IDS.contains(&device))
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let (at, _, _) = super::pci_function(&self.env, dev, ctx)?;
        let transport: PciTransport = hw::pci_transport(Arc::clone(&self.env.access), at)?;
        let dev = VirtioBlk::new(transport, format!("virtio-blk {at}"))?;
        Ok(Bound::Block(Box::new(dev)))
    }
}

/// virtio-blk over virtio-mmio; no interrupt.
#[derive(Debug, Default)]
pub struct VirtioBlkMmio;

impl Driver for VirtioBlkMmio {
    fn name(&self) -> &'static str {
        "virtio-blk-mmio"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(
            dev.id,
            DeviceId::VirtioMmio {
                device_id: VIRTIO_BLK_TYPE,
                ..
            }
        )
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let (transport, base) = super::mmio_device(dev, ctx)?;
        let dev = VirtioBlk::new(transport, format!("virtio-blk mmio@{base:#x}"))?;
        Ok(Bound::Block(Box::new(dev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_whole_sectors_inside_the_disk() {
        assert!(check_range(0, 512, 1).is_ok());
        assert!(check_range(7, 1024, 9).is_ok());
        assert!(check_range(0, 0, 0).is_ok());
        assert!(check_range(0, 511, 10).is_err(), "part of a sector");
        assert!(check_range(9, 1024, 10).is_err(), "past the end");
        assert!(check_range(u64::MAX, 512, u64::MAX).is_err(), "wraps");
    }

    #[test]
    fn headers_and_statuses() {
        assert_eq!(
            header(T_OUT, 0x0102_0304_0506_0708),
            [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert!(status_result(S_OK).is_ok());
        assert!(status_result(S_IOERR).unwrap_err().contains("I/O error"));
        assert!(status_result(S_UNSUPP).unwrap_err().contains("not support"));
        assert!(status_result(7).unwrap_err().contains("status 7"));
    }

    #[test]
    fn transfers_fit_size_max() {
        assert_eq!(transfer_size(None), Ok(MAX_TRANSFER));
        assert_eq!(transfer_size(Some(4096 + 16)), Ok(4096));
        assert_eq!(transfer_size(Some(4096)), Ok(3584), "the header takes room");
        assert_eq!(transfer_size(Some(1 << 30)), Ok(MAX_TRANSFER));
        assert!(transfer_size(Some(100)).is_err());
        assert!(transfer_size(Some(0)).is_err());
    }
}
