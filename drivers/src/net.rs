//! The network device contract: what a NIC driver (virtio-net, Xen netfront, the LinuxU tap)
//! offers the network stack's driver thread.
//!
//! A driver owns its device's queues and registers; the driver thread (in `rhea-net`) calls it
//! from one thread at a time, so the methods take `&mut self` and need no locking. Interrupts
//! reach that thread through the device's [`DeviceIrq`](crate::bus::DeviceIrq); the driver's
//! own work (acknowledging the device, reclaiming buffers) happens in these calls, in thread
//! context, never in the interrupt handler.

/// The largest Ethernet frame a device passes up or down: 1500 bytes of payload plus the
/// 14-byte header (no FCS, no VLAN tag).
pub const MAX_FRAME: usize = 1514;

/// Why a device operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NetError {
    /// The transmit queue is full: keep the frame and retry after the next interrupt.
    Busy,
    /// The frame is larger than [`MAX_FRAME`] or the device's limit.
    TooLarge,
    /// The link is down.
    LinkDown,
    /// The device reported an error (named).
    Device(&'static str),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Busy => f.write_str("transmit queue full"),
            Self::TooLarge => f.write_str("frame too large"),
            Self::LinkDown => f.write_str("link down"),
            Self::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

/// Counters every driver keeps (read by the status page and the tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NetDeviceStats {
    /// Frames received and passed up.
    pub rx_frames: u64,
    /// Frames the device delivered that were dropped (too large, malformed header, no buffer).
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Interrupts the driver handled.
    pub interrupts: u64,
    /// Notifications the driver wrote to the device ("kicks": new buffers to look at).
    pub kicks: u64,
}

/// An Ethernet device.
pub trait NetDevice: Send {
    /// A short name for logs (`virtio-net@0000:00:02.0`, `tap0`).
    fn name(&self) -> &str;

    /// The device's MAC address.
    fn mac(&self) -> [u8; 6];

    /// Whether the link is up (devices without link status say `true`).
    fn link_up(&self) -> bool {
        true
    }

    /// Copies the next received frame into `buf` and returns its length; `Ok(None)` when no
    /// frame waits. A frame longer than `buf` is dropped, counted and skipped.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError>;

    /// Queues `frame` for sending. [`NetError::Busy`] leaves it with the caller.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError>;

    /// Whether the driver fills in the TCP checksum of what it sends (the device or the
    /// driver itself): the stack then leaves it out. Fixed once the device is bound.
    fn offloads_tcp_checksum(&self) -> bool {
        false
    }

    /// Called by the driver thread after each batch of [`receive`](Self::receive) and
    /// [`transmit`](Self::transmit) calls: tell the device about the buffers given to it since
    /// the last call (drivers that notify per buffer need not do anything).
    fn flush(&mut self) {}

    /// Called by the driver thread when woken by the device's interrupt, before
    /// [`receive`](Self::receive)/[`transmit`](Self::transmit): acknowledge the interrupt at the
    /// device and reclaim finished transmissions.
    fn handle_interrupt(&mut self) {}

    /// Called when the driver thread has drained the device and is about to wait: re-enable
    /// the device's interrupts (and close the race with frames that arrived meanwhile —
    /// return `true` if there is more work, so the thread goes round again).
    fn rearm(&mut self) -> bool {
        false
    }

    /// The driver's counters.
    fn stats(&self) -> NetDeviceStats;
}
