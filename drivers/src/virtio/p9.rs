//! virtio-9p (virtio 1.2 §5.10 is the console; 9P is device type 9, specified by QEMU's and
//! Linux's `virtio_9p.h`): one request queue; the device configuration holds the mount tag.
//! A request is one descriptor chain — the T-message readable by the device, then a buffer
//! it writes the R-message into.
//!
//! Over PCI (q35's `virtio-9p-pci`) and virtio-mmio (`virtio-9p-device`: microvm, Arm virt),
//! through `virtio-drivers`' transports and queue ([`VirtQueue`]).
//!
//! **Waiting**: no interrupt is used yet: the caller of [`P9Channel::rpc`] polls the used ring,
//! calling its `wait` between looks (the kernel yields the CPU there, so the wait costs other
//! threads nothing but the polling itself). A device that does not answer within the caller's
//! patience breaks the channel for good: its buffers stay with the device (leaked, never
//! reused), so a late answer cannot write into memory given to someone else, and every later
//! request fails at once.
//!
//! **Buffers**: the channel owns its request and reply buffers (heap, identity-mapped as DMA
//! needs), sized to the largest message so far.

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

/// virtio's device type for 9P transports.
pub const VIRTIO_9P_TYPE: u32 = 9;
/// virtio-9p's PCI device IDs: transitional and modern (0x1040 + 9).
pub const VIRTIO_9P_PCI_IDS: [u16; 2] = [0x1009, 0x1049];
/// `VIRTIO_9P_MOUNT_TAG`: the configuration holds a tag.
const MOUNT_TAG: u64 = 1;
/// The longest tag accepted (QEMU's limit is 31 bytes).
pub const MAX_TAG: usize = 64;
const QUEUE: u16 = 0;

/// A 9P transport a driver bound: its tag, and one request at a time.
pub trait P9Channel: Send {
    /// The mount tag the host gave it.
    fn tag(&self) -> &str;
    /// Sends `request`, waits for the reply (calling `wait` between looks, which returns
    /// `false` to give up), copies it into `reply`; the reply's length.
    fn rpc(
        &mut self,
        request: &[u8],
        reply: &mut [u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<usize, String>;
}

/// A bound virtio-9p device: its request queue ([`hw::RequestQueue`], where the queue's unsafe
/// calls are) and its tag.
pub struct VirtioP9<T: Transport> {
    queue: hw::RequestQueue<T>,
    tag: String,
    name: String,
}

impl<T: Transport> core::fmt::Debug for VirtioP9<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioP9")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// The mount tag in the configuration: a 16-bit length, then that many bytes; refused if
/// empty, over [`MAX_TAG`], not UTF-8, or holding `/` or NUL.
pub fn parse_tag(len: u16, bytes: &[u8]) -> Result<String, String> {
    let len = usize::from(len);
    if len == 0 || len > MAX_TAG || len > bytes.len() {
        return Err(format!(
            "mount tag of {len} bytes (1 to {MAX_TAG} accepted)"
        ));
    }
    let tag = core::str::from_utf8(&bytes[..len]).map_err(|_| "a mount tag that is not UTF-8")?;
    if tag.contains(['/', '\0']) || tag == "." || tag == ".." {
        return Err(format!("mount tag {tag:?} cannot be a directory name"));
    }
    Ok(tag.to_string())
}

impl<T: Transport> VirtioP9<T> {
    /// Negotiates (the mount tag; VERSION_1 where offered), reads the tag, sets up the queue.
    pub fn new(mut transport: T, name: String) -> Result<Self, String> {
        let offered = transport.read_device_features();
        if offered & feature::ACCESS_PLATFORM != 0 {
            return Err("VIRTIO_F_ACCESS_PLATFORM (DMA through an IOMMU) is not supported".into());
        }
        if offered & MOUNT_TAG == 0 {
            return Err("no mount tag (VIRTIO_9P_MOUNT_TAG not offered)".into());
        }
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        transport.write_driver_features(offered & (MOUNT_TAG | feature::VERSION_1));
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
        let len: u16 = transport
            .read_config_space(0)
            .map_err(|e| format!("configuration: {e}"))?;
        let mut bytes = Vec::with_capacity(MAX_TAG);
        for i in 0..usize::from(len).min(MAX_TAG) {
            let b: u8 = transport
                .read_config_space(2 + i)
                .map_err(|e| format!("configuration: {e}"))?;
            bytes.push(b);
        }
        let tag = parse_tag(len, &bytes)?;
        let queue = hw::RequestQueue::new(transport, QUEUE)?;
        Ok(Self { queue, tag, name })
    }
}

impl<T: Transport> P9Channel for VirtioP9<T>
where
    hw::RequestQueue<T>: Send,
{
    fn tag(&self) -> &str {
        &self.tag
    }

    fn rpc(
        &mut self,
        request: &[u8],
        reply: &mut [u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<usize, String> {
        self.queue
            .rpc(request, reply, wait)
            .map_err(|e| format!("{}: {e}", self.name))
    }
}

/// virtio-9p over PCI: memory BARs mapped, memory decoding and bus mastering on; no interrupt.
#[derive(Debug)]
pub struct VirtioP9Pci {
    env: pci::NicEnv,
}

impl VirtioP9Pci {
    /// A driver using `env`'s configuration access and BAR window.
    pub fn new(env: pci::NicEnv) -> Self {
        VirtioP9Pci { env }
    }
}

impl Driver for VirtioP9Pci {
    fn name(&self) -> &'static str {
        "virtio-9p-pci"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(dev.id, DeviceId::Pci { vendor: VIRTIO_VENDOR, device, .. } if VIRTIO_9P_PCI_IDS.contains(&device))
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let (at, _, _) = super::pci_function(&self.env, dev, ctx)?;
        let transport: PciTransport = hw::pci_transport(Arc::clone(&self.env.access), at)?;
        let dev = VirtioP9::new(transport, format!("virtio-9p {at}"))?;
        Ok(Bound::P9(Box::new(dev)))
    }
}

/// virtio-9p over virtio-mmio; no interrupt.
#[derive(Debug, Default)]
pub struct VirtioP9Mmio;

impl Driver for VirtioP9Mmio {
    fn name(&self) -> &'static str {
        "virtio-9p-mmio"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(
            dev.id,
            DeviceId::VirtioMmio {
                device_id: VIRTIO_9P_TYPE,
                ..
            }
        )
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let (transport, base) = super::mmio_device(dev, ctx)?;
        let dev = VirtioP9::new(transport, format!("virtio-9p mmio@{base:#x}"))?;
        Ok(Bound::P9(Box::new(dev)))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_tag;

    #[test]
    fn mount_tags() {
        assert_eq!(parse_tag(5, b"share").unwrap(), "share");
        assert_eq!(parse_tag(3, b"abcdef").unwrap(), "abc");
        for (len, bytes) in [
            (0u16, &b""[..]),
            (65, &[b'a'; 65][..]),
            (9, &b"short"[..]),
            (3, &b"a/b"[..]),
            (2, &b".."[..]),
            (2, &[0xff, 0xfe][..]),
            (3, &b"a\0b"[..]),
        ] {
            assert!(parse_tag(len, bytes).is_err(), "{len} {bytes:?}");
        }
    }
}
