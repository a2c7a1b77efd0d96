//! The crate's only unsafe code: what the virtio drivers share with devices and registers.
//!
//! - [`RheaHal`], `virtio-drivers`' [`Hal`]: DMA memory is page-aligned, zeroed heap
//!   allocations. Rhea's RAM (the heap with it) is identity-mapped, so a buffer's physical
//!   address is its address; thread stacks are not (they live in the upper half), so a buffer
//!   there is refused with a panic rather than handed to a device. There is no IOMMU: sharing
//!   is the address, unsharing nothing.
//!
//!   On AArch64 that RAM is identity-mapped Normal write-back, inner shareable: the device
//!   must snoop the CPUs' caches. QEMU's virtio devices are cache-coherent (its devicetree
//!   marks every `virtio,mmio` node `dma-coherent`, and the Arm boards refuse a device whose
//!   node is not). Real, non-coherent hardware would need what this module does not do: the
//!   virtqueue rings in a Non-cacheable mapping (both sides write them all the time), data
//!   buffers cleaned to the point of coherency (`dc cvac`) in `share` before the device reads
//!   them and invalidated (`dc ivac`, after a `dsb`) in `unshare` before the CPU reads what the
//!   device wrote, with buffers padded to whole cache lines (the CTR_EL0 writeback granule) so
//!   no unrelated data shares a line; a `dsb` (not only `dmb ish`) between the ring updates
//!   and the notify register write when the device is outside the inner shareable domain; and
//!   an SMMU mapping where the device does not see CPU physical addresses.
//! - [`MmioWindow`]: a bounds-checked, volatile window on device registers mapped through
//!   [`BindContext::map_mmio`] (identity, uncached). BAR regions the PCI transport asks for
//!   ([`Hal::mmio_phys_to_virt`]) are translated the same way: the driver maps every memory BAR
//!   of the function before it creates the transport.
//! - [`pci_transport`] and [`mmio_transport`]: the transports' constructors.
//! - [`NetQueues`]: owns the receive and transmit buffers while the device has them, so the
//!   virtqueue calls' contract (a buffer stays untouched until the device returns it, and is
//!   handed back as the same slice) holds by construction.

#![allow(unsafe_code)]

use super::tso;
use crate::bus::BindContext;
use crate::net::{MAX_FRAME, NetError};
use crate::pci::{Address, ConfigAccess, Mmio32};
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// Addresses at or above this are not identity-mapped (thread stacks, the upper half).
const IDENTITY_LIMIT: usize = 1 << 47;

/// DMA and address translation for `virtio-drivers` on Rhea (identity-mapped RAM).
#[derive(Debug)]
pub struct RheaHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory no one else references (a fresh heap
// allocation), whose physical address is its address (RAM is identity-mapped);
// `mmio_phys_to_virt` returns the identity address, which the driver mapped uncached through
// `BindContext::map_mmio` before creating the transport (see `map_memory_bars`).
unsafe impl Hal for RheaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages).filter(|l| l.size() > 0) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) if (p.as_ptr() as usize) < IDENTITY_LIMIT => (p.as_ptr() as PhysAddr, p),
            Some(p) => {
                // SAFETY: just allocated with this layout.
                unsafe { dealloc(p.as_ptr(), layout) };
                (0, NonNull::dangling())
            }
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes what `dma_alloc` returned for `pages` pages, so the pointer
        // came from `alloc_zeroed` with this layout and is freed once.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).expect("virtio: a BAR region at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let addr = buffer.as_ptr().cast::<u8>() as usize;
        assert!(
            addr < IDENTITY_LIMIT,
            "virtio: buffer at {addr:#x} is not identity-mapped (a thread stack?); DMA buffers come from the heap"
        );
        addr as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Device registers at `[base, base + len)`, mapped uncached at the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    base: usize,
    len: usize,
}

impl MmioWindow {
    /// Maps `[phys, phys + len)` through `ctx`. The mapping must be the identity (as Rhea's
    /// kernel maps registers); the range must be 4-aligned and below the upper half.
    pub fn map(ctx: &dyn BindContext, phys: u64, len: u64) -> Result<MmioWindow, String> {
        let end = phys
            .checked_add(len)
            .filter(|&e| e <= IDENTITY_LIMIT as u64);
        if phys == 0 || len == 0 || !phys.is_multiple_of(4) || end.is_none() {
            return Err(format!(
                "register window {phys:#x}+{len:#x} is empty, misaligned or out of range"
            ));
        }
        match ctx.map_mmio(phys, len) {
            Some(v) if v == phys => Ok(MmioWindow {
                base: phys as usize,
                len: len as usize,
            }),
            Some(v) => Err(format!(
                "registers at {phys:#x} were mapped at {v:#x}, not 1:1 as DMA and the transports need"
            )),
            None => Err(format!("cannot map registers at {phys:#x}+{len:#x}")),
        }
    }

    /// The physical (= virtual) base.
    pub fn base(&self) -> u64 {
        self.base as u64
    }

    /// Bytes in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        let size = size_of::<T>();
        assert!(
            offset.is_multiple_of(size) && offset.checked_add(size).is_some_and(|e| e <= self.len),
            "register offset {offset:#x} outside the {:#x}-byte window",
            self.len
        );
        (self.base + offset) as *mut T
    }

    /// Reads the 16-bit register at `offset`.
    pub fn read16(&self, offset: usize) -> u16 {
        // SAFETY: `at` checked the register lies inside the window, which `map` mapped
        // uncached; device registers are not Rust memory, so no reference aliases them.
        unsafe { self.at::<u16>(offset).read_volatile() }
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16(&self, offset: usize, value: u16) {
        // SAFETY: as in `read16`.
        unsafe { self.at::<u16>(offset).write_volatile(value) }
    }
}

impl Mmio32 for MmioWindow {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: as in `read16`.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read16`.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }
}

/// `virtio-drivers`' configuration access over ours.
struct Cam(Arc<dyn ConfigAccess>);

fn address(df: DeviceFunction) -> Address {
    Address {
        bus: df.bus,
        device: df.device,
        function: df.function,
    }
}

impl ConfigurationAccess for Cam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        self.0.read32(address(df), u16::from(offset))
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        self.0.write32(address(df), u16::from(offset), data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Cam(Arc::clone(&self.0))
    }
}

/// The virtio PCI transport of the function at `at`. Its capability list must have been
/// validated ([`crate::pci::capabilities`]: the crate's own walk does not detect loops) and its
/// memory BARs mapped.
pub fn pci_transport(access: Arc<dyn ConfigAccess>, at: Address) -> Result<PciTransport, String> {
    let mut root = PciRoot::new(Cam(access));
    let df = DeviceFunction {
        bus: at.bus,
        device: at.device,
        function: at.function,
    };
    PciTransport::new::<RheaHal, _>(&mut root, df).map_err(|e| format!("virtio PCI transport: {e}"))
}

/// The virtio-mmio transport over `window` (the device's registers and configuration).
pub fn mmio_transport(window: &MmioWindow) -> Result<MmioTransport<'static>, String> {
    let header = NonNull::new(window.base as *mut VirtIOHeader).ok_or("window at address 0")?;
    // SAFETY: the window is the device's register block mapped uncached (`MmioWindow::map`)
    // and stays mapped for the kernel's lifetime; the transport is its only user from here on.
    unsafe { MmioTransport::new(header, window.len) }
        .map_err(|e| format!("virtio-mmio transport: {e}"))
}

// SAFETY: the MMIO transport is two pointers to device registers that stay mapped forever
// (it is `Sync` already; only its pointer type is not `Send`); moving the queues to the driver
// thread moves the transport's only user with them. The transport sits in an `Rc` (not `Send`)
// whose every clone is inside this value (`notifying` and `raw`'s `Notifier`): moving the
// value moves all of them together, so no count or cell is ever touched from two threads.
unsafe impl Send for NetQueues<MmioTransport<'static>> {}

// SAFETY: every other part is `Send` (`PciTransport` and the virtqueues say so, the buffers
// are boxes); the `Rc` of the transport is as above: all its clones are in this value.
unsafe impl Send for NetQueues<PciTransport> {}

/// What [`Notifier`] and [`NetQueues`] share: the transport, and the queues whose
/// notification waits for the end of the batch.
/// Feature bits `virtio-drivers` does not know and the driver negotiates itself.
mod extra {
    /// The device completes partial checksums of what is sent.
    pub(super) const CSUM: u64 = 1 << 0;
    /// The device takes TCP/IPv4 segments larger than the MTU and cuts them (needs `CSUM`).
    pub(super) const HOST_TSO4: u64 = 1 << 11;
    /// The device's used-buffer and available-buffer event indexes.
    pub(super) const RING_EVENT_IDX: u64 = 1 << 29;
}

struct Notifying<T> {
    transport: RefCell<T>,
    /// What the device offered.
    offered: Cell<u64>,
    /// The features beyond `virtio-drivers`' that were negotiated.
    extra: Cell<u64>,
    /// Whether the heap can afford large-segment offload's buffers ([`tso_affordable`]).
    tso_affordable: bool,
    /// Bit `q`: queue `q` was given buffers since the last [`NetQueues::flush`].
    pending: Cell<u8>,
    /// Notifications written to the device.
    kicks: Cell<u64>,
}

/// The transport as `virtio-drivers` sees it: every call goes to the real one, except that a
/// queue notification ("kick", a register write: a VM exit on a hypervisor, an I/O callback
/// under TCG) is only recorded, and written once per batch by [`NetQueues::flush`].
/// `virtio-drivers` would otherwise kick once per buffer: its event-index test kicks for every
/// buffer past the device's avail_event rather than only the one that crosses it.
pub struct Notifier<T> {
    shared: Rc<Notifying<T>>,
}

impl<T> core::fmt::Debug for Notifier<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Notifier")
            .field("kicks", &self.shared.kicks.get())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Transport for Notifier<T> {
    fn device_type(&self) -> virtio_drivers::transport::DeviceType {
        self.shared.transport.borrow().device_type()
    }

    /// What the device offers, without the event index: with it, `virtio-drivers` cannot
    /// turn used-buffer interrupts off while the driver thread works (its
    /// `set_dev_notify(false)` does nothing then, and every completion moves `used_event`
    /// to the next buffer), and QEMU moves `avail_event` at every frame it receives, so every
    /// reposted receive buffer was a kick. With the flags instead (measured with `bench net`,
    /// TCP echo, per MiB: 149 kicks before, 81 after; the receive queue is kicked only when
    /// QEMU ran out of buffers) the device is told "no interrupts" between the driver
    /// thread's wake-up and its rearm, and tells the driver "no kicks" while it is busy.
    fn read_device_features(&mut self) -> u64 {
        let offered = self.shared.transport.borrow_mut().read_device_features();
        self.shared.offered.set(offered);
        offered & !extra::RING_EVENT_IDX
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let offered = self.shared.offered.get();
        let mut extra = offered & extra::CSUM;
        if extra != 0 && self.shared.tso_affordable {
            extra |= offered & extra::HOST_TSO4;
        }
        self.shared.extra.set(extra);
        self.shared
            .transport
            .borrow_mut()
            .write_driver_features(driver_features | extra);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.shared.transport.borrow_mut().max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        let s = &self.shared;
        s.pending.set(s.pending.get() | 1 << (queue & 7));
    }

    fn get_status(&self) -> virtio_drivers::transport::DeviceStatus {
        self.shared.transport.borrow().get_status()
    }

    fn set_status(&mut self, status: virtio_drivers::transport::DeviceStatus) {
        self.shared.transport.borrow_mut().set_status(status);
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.shared
            .transport
            .borrow_mut()
            .set_guest_page_size(guest_page_size);
    }

    fn requires_legacy_layout(&self) -> bool {
        self.shared.transport.borrow().requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.shared.transport.borrow_mut().queue_set(
            queue,
            size,
            descriptors,
            driver_area,
            device_area,
        );
    }

    fn queue_unset(&mut self, queue: u16) {
        self.shared.transport.borrow_mut().queue_unset(queue);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.shared.transport.borrow_mut().queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> virtio_drivers::transport::InterruptStatus {
        self.shared.transport.borrow_mut().ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.shared.transport.borrow().read_config_generation()
    }

    fn read_config_space<V: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.shared.transport.borrow().read_config_space(offset)
    }

    fn write_config_space<V: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.shared
            .transport
            .borrow_mut()
            .write_config_space(offset, value)
    }
}

/// Descriptors per virtqueue (both queues). Devices offering fewer are refused.
pub const QUEUE_SIZE: usize = 64;
/// Bytes per receive and transmit buffer: the virtio-net header (10 or 12 bytes) and a
/// full-sized frame fit; `virtio-drivers` wants at least 1526 for receive.
const BUF_LEN: usize = 2048;
/// Transmit buffers in flight at most.
const TX_BUFFERS: usize = QUEUE_SIZE / 2;

/// What one receive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// No frame waits.
    Empty,
    /// A frame of this length was copied out.
    Frame(usize),
    /// A frame was dropped: longer than [`MAX_FRAME`] or the caller's buffer, or malformed.
    Dropped,
}

/// A virtio-net device's queues with the buffers they own.
pub struct NetQueues<T: Transport> {
    raw: VirtIONetRaw<RheaHal, Notifier<T>, QUEUE_SIZE>,
    /// The transport, shared with `raw` (both here: they move together).
    notifying: Rc<Notifying<T>>,
    rx: Vec<Box<[u8]>>,
    /// Receive buffer index by descriptor token.
    rx_by_token: Vec<Option<usize>>,
    /// Transmit buffers: [`TX_SMALL`] of [`BUF_LEN`], then [`TX_LARGE`] of
    /// [`tso::TSO_BYTES`] plus a header (joined segments).
    tx: Vec<Box<[u8]>>,
    /// Transmit buffer index and the length handed to the device, by descriptor token.
    tx_by_token: Vec<Option<(usize, usize)>>,
    tx_free: Vec<usize>,
    tx_free_large: Vec<usize>,
    /// The large buffer being filled with joined segments (not yet the device's): its index,
    /// virtio-net header length and what it holds.
    joining: Option<(usize, usize, tso::Joined)>,
    /// The device completes TCP checksums (`VIRTIO_NET_F_CSUM`) / cuts large segments.
    csum: bool,
    tso: bool,
}

/// Small transmit buffers (one frame each).
const TX_SMALL: usize = TX_BUFFERS;
/// Large transmit buffers (joined segments), used when the device takes large segments.
/// With `bench net`'s TCP echo (64 KiB socket buffers) at most a few are in flight at once;
/// 8 leave room, each [`tso::TSO_BYTES`] of heap (256 KiB in all).
const TX_LARGE: usize = 8;

/// Whether a heap with `heap_free` bytes free can afford large-segment offload: its buffers
/// may take at most a sixteenth of it. A small machine's heap goes to sockets instead (the
/// appliance in `-m 4M` had 2 MiB of heap, and the 256 KiB left its HTTP port unbound); the
/// default 128 MiB gives a 16 MiB heap, which keeps the offload.
pub(super) fn tso_affordable(heap_free: usize) -> bool {
    heap_free / 16 >= TX_LARGE * (tso::TSO_BYTES + 64)
}

impl<T: Transport> core::fmt::Debug for NetQueues<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetQueues")
            .field("tx_free", &self.tx_free.len())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> NetQueues<T> {
    /// Negotiates, sets up both queues (the device is live after this) and posts every
    /// receive buffer. `heap_free`: bytes of heap free, which decides whether large-segment
    /// offload is negotiated ([`tso_affordable`]).
    pub fn new(transport: T, heap_free: usize) -> Result<Self, String> {
        let notifying = Rc::new(Notifying {
            transport: RefCell::new(transport),
            offered: Cell::new(0),
            extra: Cell::new(0),
            tso_affordable: tso_affordable(heap_free),
            pending: Cell::new(0),
            kicks: Cell::new(0),
        });
        let notifier = Notifier {
            shared: Rc::clone(&notifying),
        };
        let raw = VirtIONetRaw::<RheaHal, _, QUEUE_SIZE>::new(notifier)
            .map_err(|e| format!("device set-up failed: {e}"))?;
        let mut q = NetQueues {
            raw,
            notifying,
            rx: (0..QUEUE_SIZE)
                .map(|_| vec![0u8; BUF_LEN].into_boxed_slice())
                .collect(),
            rx_by_token: vec![None; QUEUE_SIZE],
            tx: Vec::new(),
            tx_by_token: vec![None; QUEUE_SIZE],
            tx_free: (0..TX_SMALL).rev().collect(),
            tx_free_large: Vec::new(),
            joining: None,
            csum: false,
            tso: false,
        };
        let extra = q.notifying.extra.get();
        q.csum = extra & extra::CSUM != 0;
        q.tso = q.csum && extra & extra::HOST_TSO4 != 0;
        let large = if q.tso { TX_LARGE } else { 0 };
        q.tx = (0..TX_SMALL)
            .map(|_| vec![0u8; BUF_LEN].into_boxed_slice())
            .chain((0..large).map(|_| vec![0u8; tso::TSO_BYTES + 64].into_boxed_slice()))
            .collect();
        q.tx_free_large = (TX_SMALL..TX_SMALL + large).rev().collect();
        for i in 0..QUEUE_SIZE {
            q.post_rx(i)
                .map_err(|e| format!("posting receive buffers: {e}"))?;
        }
        q.flush();
        Ok(q)
    }

    /// Notifies the device of the queues given buffers since the last flush: once per queue
    /// per batch rather than once per buffer.
    pub fn flush(&mut self) {
        self.submit_joined();
        let n = &self.notifying;
        let pending = n.pending.replace(0);
        for q in 0..2u16 {
            if pending & (1 << q) != 0 {
                n.transport.borrow_mut().notify(q);
                n.kicks.set(n.kicks.get() + 1);
            }
        }
    }

    /// Notifications written to the device so far.
    pub fn kicks(&self) -> u64 {
        self.notifying.kicks.get()
    }

    fn post_rx(&mut self, i: usize) -> Result<(), virtio_drivers::Error> {
        // SAFETY: buffer `i` is owned by `self` and not touched again until the device returns
        // its token (`receive`), which completes it with the same buffer.
        let token = unsafe { self.raw.receive_begin(&mut self.rx[i])? };
        let slot = self
            .rx_by_token
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)?;
        *slot = Some(i);
        Ok(())
    }

    /// The MAC address the device reported.
    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// Copies the next received frame into `out`, giving its buffer back to the device.
    pub fn receive(&mut self, out: &mut [u8]) -> Result<Rx, NetError> {
        let Some(token) = self.raw.poll_receive() else {
            return Ok(Rx::Empty);
        };
        let i = self
            .rx_by_token
            .get_mut(usize::from(token))
            .and_then(Option::take)
            .ok_or(NetError::Device("used receive descriptor we never posted"))?;
        // SAFETY: `token` is the one `post_rx` recorded for buffer `i`, passed back unchanged.
        let done = unsafe { self.raw.receive_complete(token, &mut self.rx[i]) };
        let result = match done {
            Ok((hdr, len)) if len <= MAX_FRAME && len <= out.len() && hdr + len <= BUF_LEN => {
                out[..len].copy_from_slice(&self.rx[i][hdr..hdr + len]);
                Rx::Frame(len)
            }
            Ok(_) | Err(virtio_drivers::Error::IoError) => Rx::Dropped,
            Err(_) => return Err(NetError::Device("receive queue out of step")),
        };
        self.post_rx(i)
            .map_err(|_| NetError::Device("cannot repost a receive buffer"))?;
        Ok(result)
    }

    /// Takes back every buffer the device finished sending; returns how many.
    pub fn reclaim_tx(&mut self) -> usize {
        let mut n = 0;
        while let Some(token) = self.raw.poll_transmit() {
            let Some((i, len)) = self
                .tx_by_token
                .get_mut(usize::from(token))
                .and_then(Option::take)
            else {
                break;
            };
            // SAFETY: `token` is the one `transmit` recorded for buffer `i` with `len` bytes;
            // the same slice goes back.
            if unsafe { self.raw.transmit_complete(token, &self.tx[i][..len]) }.is_err() {
                break;
            }
            self.free_tx(i);
            n += 1;
        }
        n
    }

    /// Whether the device completes TCP checksums: the stack need not compute them.
    pub fn offloads_tcp_checksum(&self) -> bool {
        self.csum
    }

    /// Queues `frame`; [`NetError::Busy`] when every transmit buffer is in flight. With
    /// `HOST_TSO4`, a TCP segment that continues the one before it is appended to it in a
    /// large buffer instead, which goes to the device when something else is sent or at
    /// [`flush`](Self::flush).
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLarge);
        }
        self.reclaim_tx();
        if let Some((i, hdr, mut j)) = self.joining.take() {
            let buf = &mut self.tx[i];
            if let Some(seg) = j.continues(&buf[hdr..hdr + j.len], frame) {
                let at = hdr + j.len;
                buf[at..at + seg.payload].copy_from_slice(&frame[seg.headers..seg.len]);
                let flags = j.appended(&seg);
                buf[hdr + j.flags_at()] = flags;
                self.joining = Some((i, hdr, j));
                return Ok(());
            }
            self.joining = Some((i, hdr, j));
            self.submit_joined();
        }
        if self.tso
            && let Some(j) = tso::Joined::start(frame)
            && let Some(i) = self.tx_free_large.pop()
        {
            let hdr = match self.raw.fill_buffer_header(&mut self.tx[i]) {
                Ok(h) => h,
                Err(_) => {
                    self.tx_free_large.push(i);
                    return Err(NetError::Device("cannot write the virtio-net header"));
                }
            };
            self.tx[i][hdr..hdr + frame.len()].copy_from_slice(frame);
            self.joining = Some((i, hdr, j));
            return Ok(());
        }
        let i = self.tx_free.pop().ok_or(NetError::Busy)?;
        let hdr = match self.raw.fill_buffer_header(&mut self.tx[i]) {
            Ok(h) => h,
            Err(_) => {
                self.tx_free.push(i);
                return Err(NetError::Device("cannot write the virtio-net header"));
            }
        };
        let len = hdr + frame.len();
        self.tx[i][hdr..len].copy_from_slice(frame);
        if self.csum {
            match tso::segment(frame) {
                Some(seg) => {
                    tso::finish_headers(&mut self.tx[i][hdr..hdr + seg.len]);
                    Self::offload_header(&mut self.tx[i][..hdr], &seg, None);
                }
                None => tso::software_checksum(&mut self.tx[i][hdr..len]),
            }
        }
        self.submit(i, len)
    }

    /// Fills the virtio-net header `h` for a TCP frame whose checksum the device completes,
    /// cut into `mss`-byte segments if given.
    fn offload_header(h: &mut [u8], seg: &tso::Segment, mss: Option<usize>) {
        h[0] = tso::HDR_F_NEEDS_CSUM;
        if let Some(mss) = mss {
            h[1] = tso::HDR_GSO_TCPV4;
            h[2..4].copy_from_slice(&(seg.headers as u16).to_le_bytes());
            h[4..6].copy_from_slice(&(mss as u16).to_le_bytes());
        }
        // The TCP header starts after the Ethernet and IPv4 headers; its checksum is 16 in.
        h[6..8].copy_from_slice(&34u16.to_le_bytes());
        h[8..10].copy_from_slice(&16u16.to_le_bytes());
    }

    /// Hands the joined frame being built, if any, to the device.
    fn submit_joined(&mut self) {
        let Some((i, hdr, j)) = self.joining.take() else {
            return;
        };
        let len = hdr + j.len;
        tso::finish_headers(&mut self.tx[i][hdr..len]);
        let mss = (j.segments > 1).then(|| j.mss());
        Self::offload_header(&mut self.tx[i][..hdr], &j.first, mss);
        // A refusal (the queue full, which the buffer count rules out) loses the segments;
        // TCP sends them again.
        let _ = self.submit(i, len);
    }

    /// Gives transmit buffer `i`'s first `len` bytes to the device.
    fn submit(&mut self, i: usize, len: usize) -> Result<(), NetError> {
        // SAFETY: buffer `i` is owned by `self` and left untouched until `reclaim_tx` completes
        // its token with the same `len`-byte slice.
        match unsafe { self.raw.transmit_begin(&self.tx[i][..len]) } {
            Ok(token) => {
                if let Some(slot) = self.tx_by_token.get_mut(usize::from(token)) {
                    *slot = Some((i, len));
                }
                Ok(())
            }
            Err(virtio_drivers::Error::QueueFull) => {
                self.free_tx(i);
                Err(NetError::Busy)
            }
            Err(_) => {
                self.free_tx(i);
                Err(NetError::Device("transmit refused"))
            }
        }
    }

    fn free_tx(&mut self, i: usize) {
        if i < TX_SMALL {
            self.tx_free.push(i);
        } else {
            self.tx_free_large.push(i);
        }
    }

    /// Reads and clears the device's interrupt status (virtio ISR / MMIO interrupt status).
    pub fn ack_interrupt(&mut self) -> bool {
        !self.raw.ack_interrupt().is_empty()
    }

    /// Asks the device to interrupt again for used buffers.
    pub fn enable_interrupts(&mut self) {
        self.raw.enable_interrupts();
    }

    /// Asks the device not to interrupt for used buffers.
    pub fn disable_interrupts(&mut self) {
        self.raw.disable_interrupts();
    }

    /// Whether a received frame or a finished transmission waits.
    pub fn pending(&mut self) -> bool {
        self.raw.poll_receive().is_some() || self.raw.poll_transmit().is_some()
    }
}

/// Entries of a request queue (one request is in flight at a time).
pub const REQUEST_QUEUE_SIZE: usize = 8;

/// A request queue with the buffers it lends the device — virtio-9p's (see `p9.rs`) and
/// virtio-blk's (`blk.rs`): one request at a time, a device-readable buffer out and a
/// device-writable one in, the reply polled for; a device that never answers keeps its
/// buffers for good.
pub struct RequestQueue<T: Transport> {
    transport: T,
    queue: VirtQueue<RheaHal, REQUEST_QUEUE_SIZE>,
    index: u16,
    out: Vec<u8>,
    inp: Vec<u8>,
    broken: bool,
}

impl<T: Transport> core::fmt::Debug for RequestQueue<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestQueue")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> RequestQueue<T> {
    /// Sets up queue `index` of a device whose features are negotiated, and makes it live.
    pub fn new(mut transport: T, index: u16) -> Result<Self, String> {
        let queue = VirtQueue::new(&mut transport, index, false, false)
            .map_err(|e| format!("request queue: {e}"))?;
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            index,
            out: Vec::new(),
            inp: Vec::new(),
            broken: false,
        })
    }

    /// One request: `request` out, the reply into `reply`, `wait` called between looks at
    /// the used ring (`false`: give up, which breaks the queue for good).
    pub fn rpc(
        &mut self,
        request: &[u8],
        reply: &mut [u8],
        wait: &mut dyn FnMut() -> bool,
    ) -> Result<usize, String> {
        if self.broken {
            return Err(String::from("the device stopped answering"));
        }
        self.out.clear();
        self.out.extend_from_slice(request);
        if self.inp.len() < reply.len() {
            self.inp.resize(reply.len(), 0);
        }
        let inp = &mut self.inp[..reply.len()];
        // SAFETY: both buffers are this queue's (heap, identity-mapped) and are neither touched
        // nor freed until `pop_used` gives them back — or ever, if the device does not answer
        // (`broken`, below).
        let token = unsafe { self.queue.add(&[&self.out], &mut [inp]) }
            .map_err(|e| format!("queueing the request: {e}"))?;
        if self.queue.should_notify() {
            self.transport.notify(self.index);
        }
        while !self.queue.can_pop() {
            if !wait() {
                self.broken = true;
                // The device may still write into them: never freed, never reused.
                core::mem::forget(core::mem::take(&mut self.out));
                core::mem::forget(core::mem::take(&mut self.inp));
                return Err(String::from("no answer; the device is given up"));
            }
        }
        let inp = &mut self.inp[..reply.len()];
        // SAFETY: the same buffers `add` took for this token, unchanged since.
        let n = unsafe { self.queue.pop_used(token, &[&self.out], &mut [inp]) }
            .map_err(|e| format!("taking the reply: {e}"))? as usize;
        let n = n.min(reply.len());
        reply[..n].copy_from_slice(&self.inp[..n]);
        Ok(n)
    }
}

// SAFETY: as for `NetQueues`: the MMIO transport's pointers reach registers mapped for the
// kernel's lifetime and the queue's memory is its own; moving the value moves its only user.
unsafe impl Send for RequestQueue<MmioTransport<'static>> {}

// SAFETY: the PCI transport is `Send`; the virtqueue's memory is owned by the value and used
// only through it.
unsafe impl Send for RequestQueue<PciTransport> {}
