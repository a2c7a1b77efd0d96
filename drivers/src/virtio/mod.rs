//! virtio-net (virtio 1.2 §5.1) over PCI (§4.1) and virtio-mmio (§4.2), through the
//! `virtio-drivers` crate, as drivers of the device model.
//!
//! One device type, [`VirtioNet`], is generic over the transport; two [`Driver`]s bind it:
//!
//! - [`VirtioNetPci`] (q35's `virtio-net-pci`): validates the capability list (the crate's own
//!   walk would loop forever on a cyclic one), sizes and maps the memory BARs, enables memory
//!   decoding and bus mastering, then prefers **MSI-X**: one vector from
//!   [`BindContext::alloc_msi`], table entry 0, both queues mapped to it in the common
//!   configuration (read back: a device that refuses the mapping falls back to INTx), INTx
//!   disabled. Without MSI-X (or with it turned off by the board) it uses **INTx** through the
//!   I/O APIC: the interrupt-line register firmware wrote, translated to a GSI by the board,
//!   level-triggered; a line that is unset (0, 0xff) or not an ISA IRQ is a refusal. Plain MSI
//!   is not used: virtio 1.2 §4.1.4.3 and §4.1.5.1.2 map queues to MSI-X vectors only, and
//!   QEMU's virtio-pci functions offer no MSI capability; so `rhea.pci.msix=off` means INTx
//!   here whatever `rhea.pci.msi` says (the e1000e takes MSI then).
//! - [`VirtioNetMmio`] (`virtio-net-device`): the register window from a
//!   `virtio_mmio.device=` command-line entry (x86 microvm) or a devicetree `virtio,mmio` node
//!   (Arm virt, where QEMU's transports are legacy, version 1, unless told otherwise) through
//!   [`mmio::VirtioMmioBus`]; its interrupt line edge-triggered (rising: the line is "interrupt
//!   status non-zero", and [`NetDevice::handle_interrupt`] acknowledges the status before the
//!   queues are looked at, so each later notification is a new edge). Both kinds of board
//!   describe these lines as edge-triggered.
//!
//! Refusals (the `Err` of `bind`, logged by the runtime): a malformed capability list, a BAR
//! or register window that cannot be mapped, features the driver cannot honour
//! ([`check_features`]), queue sizes it cannot use ([`check_queue_size`]), no usable interrupt.
//!
//! Frames: receive buffers of 2 KiB are posted up front; a frame longer than
//! [`MAX_FRAME`](crate::net::MAX_FRAME) or the caller's buffer is dropped and counted
//! (`rx_dropped`); a frame to send longer than `MAX_FRAME` is refused with
//! [`NetError::TooLarge`] and counted ([`VirtioNet::tx_too_large`]).
//!
//! Interrupts: [`NetDevice::handle_interrupt`] reads the ISR (which de-asserts INTx; with MSI-X
//! it is harmless), asks the device for no more used-buffer interrupts and reclaims finished
//! transmissions; [`NetDevice::rearm`] asks for them again, then looks at both used rings once
//! more, so a frame that arrived in between is reported rather than left waiting.

pub mod blk;
pub mod hw;
pub mod mmio;
pub mod p9;
pub mod tso;

use crate::bus::{BindContext, Bound, DeviceId, DeviceInfo, DeviceIrq, Driver};
use crate::net::{NetDevice, NetDeviceStats, NetError};
use crate::pci::{self, Address, Bar, cap_id, command};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use hw::{MmioWindow, NetQueues, QUEUE_SIZE, Rx};
use rhea_hal::{IrqLine, Trigger};
use virtio_drivers::transport::Transport;
use virtio_drivers::transport::mmio::MmioVersion;

/// PCI vendor ID of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-net's PCI device IDs: transitional and modern (0x1040 + 1).
pub const VIRTIO_NET_PCI_IDS: [u16; 2] = [0x1000, 0x1041];
/// virtio's device type for network cards.
pub const VIRTIO_NET_TYPE: u32 = 1;

/// Feature bits the policy looks at.
pub mod feature {
    /// The device has a MAC address in its configuration.
    pub const NET_MAC: u64 = 1 << 5;
    /// The device follows virtio 1.0 or later.
    pub const VERSION_1: u64 = 1 << 32;
    /// The device's DMA goes through a platform translation (IOMMU, restricted memory).
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
}

/// A readied PCI function: its address, capabilities and BARs.
pub(crate) type PciFunction = (Address, Vec<pci::Capability>, [Option<Bar>; 6]);

/// Readies the virtio PCI function of `dev` for its transport: its capability list checked
/// (the crate's own walk does not detect loops), its memory BARs assigned from `env` and
/// mapped, memory decoding and DMA on (I/O decoding off: virtio 1.x needs no I/O BAR). Its
/// address, capabilities and BARs.
pub(crate) fn pci_function(
    env: &pci::NicEnv,
    dev: &DeviceInfo,
    ctx: &dyn BindContext,
) -> Result<PciFunction, String> {
    let DeviceId::Pci { address: at, .. } = dev.id else {
        return Err("not a PCI function".to_string());
    };
    let acc = &*env.access;
    let caps = pci::capabilities(acc, at).map_err(|e| format!("malformed capability list: {e}"))?;
    let bars = pci::assign_memory_bars(acc, at, env.bar_space)?;
    for (i, bar) in bars.iter().enumerate() {
        if let Some(Bar::Memory { address, size, .. }) = *bar {
            MmioWindow::map(ctx, address, size).map_err(|e| format!("BAR{i}: {e}"))?;
        }
    }
    env.enable_memory_and_dma(at);
    Ok((at, caps, bars))
}

/// The virtio-mmio transport of `dev`, its register window mapped; with its base address.
pub(crate) fn mmio_device(
    dev: &DeviceInfo,
    ctx: &dyn BindContext,
) -> Result<(virtio_drivers::transport::mmio::MmioTransport<'static>, u64), String> {
    let DeviceId::VirtioMmio { base, size, .. } = dev.id else {
        return Err("not a virtio-mmio device".to_string());
    };
    let window = MmioWindow::map(ctx, base, size)?;
    Ok((hw::mmio_transport(&window)?, base))
}

/// Whether the driver can use a device offering `offered` (`modern`: the transport is a virtio
/// 1.x one, which must offer `VERSION_1`). `Err` names the reason.
pub fn check_features(offered: u64, modern: bool) -> Result<(), String> {
    if modern && offered & feature::VERSION_1 == 0 {
        return Err(format!(
            "features {offered:#x}: a virtio 1.x transport without VIRTIO_F_VERSION_1"
        ));
    }
    if offered & feature::ACCESS_PLATFORM != 0 {
        return Err(format!(
            "features {offered:#x}: VIRTIO_F_ACCESS_PLATFORM (DMA through an IOMMU or restricted memory) is not supported"
        ));
    }
    if offered & feature::NET_MAC == 0 {
        return Err(format!(
            "features {offered:#x}: no MAC address (VIRTIO_NET_F_MAC not offered)"
        ));
    }
    Ok(())
}

/// Whether queue `queue`'s maximum size `max` can hold the driver's [`QUEUE_SIZE`]
/// descriptors: 0 (no such queue), not a power of two, or smaller is a refusal.
pub fn check_queue_size(queue: u16, max: u32) -> Result<(), String> {
    let name = if queue == 0 { "receive" } else { "transmit" };
    if max == 0 {
        return Err(format!(
            "{name} queue {queue}: size 0 (the queue does not exist)"
        ));
    }
    if !max.is_power_of_two() {
        return Err(format!(
            "{name} queue {queue}: size {max} is not a power of two"
        ));
    }
    if max < QUEUE_SIZE as u32 {
        return Err(format!(
            "{name} queue {queue}: size {max} is below the {QUEUE_SIZE} descriptors this driver uses"
        ));
    }
    Ok(())
}

fn check_transport(t: &mut impl Transport, modern: bool) -> Result<(), String> {
    check_features(t.read_device_features(), modern)?;
    for q in 0..2 {
        check_queue_size(q, t.max_queue_size(q))?;
    }
    Ok(())
}

/// A virtio-net device over transport `T`.
pub struct VirtioNet<T: Transport> {
    name: String,
    queues: NetQueues<T>,
    stats: NetDeviceStats,
    tx_too_large: u64,
}

impl<T: Transport> core::fmt::Debug for VirtioNet<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("name", &self.name)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> VirtioNet<T> {
    fn new(name: String, queues: NetQueues<T>) -> Self {
        VirtioNet {
            name,
            queues,
            stats: NetDeviceStats::default(),
            tx_too_large: 0,
        }
    }

    /// Frames refused for being larger than [`MAX_FRAME`](crate::net::MAX_FRAME).
    pub fn tx_too_large(&self) -> u64 {
        self.tx_too_large
    }
}

impl<T: Transport> NetDevice for VirtioNet<T>
where
    NetQueues<T>: Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.queues.mac()
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        loop {
            match self.queues.receive(buf)? {
                Rx::Empty => return Ok(None),
                Rx::Frame(n) => {
                    self.stats.rx_frames += 1;
                    return Ok(Some(n));
                }
                Rx::Dropped => self.stats.rx_dropped += 1,
            }
        }
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        match self.queues.transmit(frame) {
            Ok(()) => {
                self.stats.tx_frames += 1;
                Ok(())
            }
            Err(NetError::TooLarge) => {
                self.tx_too_large += 1;
                Err(NetError::TooLarge)
            }
            Err(e) => Err(e),
        }
    }

    fn handle_interrupt(&mut self) {
        self.stats.interrupts += 1;
        self.queues.ack_interrupt();
        self.queues.disable_interrupts();
        self.queues.reclaim_tx();
    }

    fn rearm(&mut self) -> bool {
        self.queues.enable_interrupts();
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.queues.pending()
    }

    fn flush(&mut self) {
        self.queues.flush();
    }

    fn offloads_tcp_checksum(&self) -> bool {
        self.queues.offloads_tcp_checksum()
    }

    fn stats(&self) -> NetDeviceStats {
        NetDeviceStats {
            kicks: self.queues.kicks(),
            ..self.stats
        }
    }
}

/// Offsets in virtio's PCI common configuration (§4.1.4.3).
mod common_cfg {
    pub(super) const MSIX_CONFIG: usize = 0x10;
    pub(super) const QUEUE_SELECT: usize = 0x16;
    pub(super) const QUEUE_MSIX_VECTOR: usize = 0x1a;
    /// Bytes of the structure.
    pub(super) const LEN: u64 = 0x38;
}
/// "No MSI-X vector" in the common configuration.
const NO_VECTOR: u16 = 0xffff;

/// virtio-net over PCI (see the module documentation).
#[derive(Debug)]
pub struct VirtioNetPci {
    env: pci::NicEnv,
}

impl VirtioNetPci {
    /// A driver with the board's PCI environment (`env.intx_gsi` turns a sane interrupt-line
    /// value, an ISA IRQ 1..16 but 2, into the GSI it arrives on: the board's interrupt source
    /// overrides).
    pub fn new(env: pci::NicEnv) -> Self {
        VirtioNetPci { env }
    }

    fn intx(&self, at: Address) -> Result<u32, String> {
        self.env.intx_gsi(at)
    }

    /// The common-configuration window (virtio vendor capability type 1).
    fn common_cfg(
        &self,
        at: Address,
        caps: &[pci::Capability],
        bars: &[Option<Bar>; 6],
        ctx: &dyn BindContext,
    ) -> Result<MmioWindow, String> {
        let acc = &*self.env.access;
        for c in caps.iter().filter(|c| c.id == cap_id::VENDOR) {
            let o = u16::from(c.offset);
            // virtio_pci_cap (§4.1.4): 16 bytes, read only if they end in the header space.
            if o + 16 > pci::HEADER_SPACE_END {
                return Err(format!(
                    "virtio capability at {o:#04x} runs past the end of the header space"
                ));
            }
            if pci::read8(acc, at, o + 3) != 1 {
                continue;
            }
            let bar = usize::from(pci::read8(acc, at, o + 4));
            let offset = u64::from(acc.read32(at, o + 8));
            if let Some(Some(Bar::Memory { address, size, .. })) = bars.get(bar)
                && offset + common_cfg::LEN <= *size
            {
                return MmioWindow::map(ctx, address + offset, common_cfg::LEN);
            }
            return Err(format!("virtio common configuration outside BAR{bar}"));
        }
        Err("no virtio common configuration capability".to_string())
    }
}

impl Driver for VirtioNetPci {
    fn name(&self) -> &'static str {
        "virtio-net-pci"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(dev.id, DeviceId::Pci { vendor: VIRTIO_VENDOR, device, .. } if VIRTIO_NET_PCI_IDS.contains(&device))
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let (at, caps, bars) = pci_function(&self.env, dev, ctx)?;
        let acc = &*self.env.access;

        let mut transport = hw::pci_transport(Arc::clone(&self.env.access), at)?;
        check_transport(&mut transport, true)?;

        let msix = self.env.msix(at, &caps)?;
        let mut vector = match &msix {
            Some(m) => pci::setup_msix(acc, at, m, &bars, ctx)?,
            None => None,
        };
        let common = match vector {
            Some(_) => Some(self.common_cfg(at, &caps, &bars, ctx)?),
            None => None,
        };
        // Without a vector the line must work: know it before the device goes live.
        let gsi = match vector {
            Some(_) => None,
            None => Some(self.intx(at)?),
        };
        let queues = NetQueues::new(transport, ctx.heap_free())?;
        if let (Some(v), Some(cfg)) = (vector, &common) {
            cfg.write16(common_cfg::MSIX_CONFIG, NO_VECTOR);
            let mut accepted = true;
            for q in 0..2u16 {
                cfg.write16(common_cfg::QUEUE_SELECT, q);
                cfg.write16(common_cfg::QUEUE_MSIX_VECTOR, 0);
                accepted &= cfg.read16(common_cfg::QUEUE_MSIX_VECTOR) == 0;
            }
            if !accepted {
                // The device could not map the vector: back to INTx.
                if let Some(m) = &msix {
                    m.set(acc, at, false, false);
                }
                let c = pci::read_command(acc, at);
                pci::write_command(acc, at, c & !command::INTX_DISABLE);
                let _ = v;
                vector = None;
            }
        }
        let (irq, how) = match (vector, gsi) {
            (Some(v), _) => (DeviceIrq::Vector(v), format!("MSI-X vector {v:#04x}")),
            (None, Some(g)) => (
                DeviceIrq::Line(IrqLine(g), Trigger::LevelLow),
                format!("INTx GSI {g}"),
            ),
            (None, None) => {
                let g = self.intx(at)?;
                (
                    DeviceIrq::Line(IrqLine(g), Trigger::LevelLow),
                    format!("INTx GSI {g}"),
                )
            }
        };
        let name = format!("virtio-net {at} {how}");
        Ok(Bound::Net(Box::new(VirtioNet::new(name, queues)), irq))
    }
}

/// virtio-net over virtio-mmio (see the module documentation).
#[derive(Debug, Default)]
pub struct VirtioNetMmio;

impl Driver for VirtioNetMmio {
    fn name(&self) -> &'static str {
        "virtio-net-mmio"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(
            dev.id,
            DeviceId::VirtioMmio {
                device_id: VIRTIO_NET_TYPE,
                ..
            }
        )
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let DeviceId::VirtioMmio {
            base, size, irq, ..
        } = dev.id
        else {
            return Err("not a virtio-mmio device".to_string());
        };
        let window = MmioWindow::map(ctx, base, size)?;
        let mut transport = hw::mmio_transport(&window)?;
        let version = transport.version();
        check_transport(&mut transport, version == MmioVersion::Modern)?;
        let queues = NetQueues::new(transport, ctx.heap_free())?;
        let v = if version == MmioVersion::Modern { 2 } else { 1 };
        let name = format!("virtio-net mmio@{base:#x} v{v} line {irq}");
        Ok(Bound::Net(
            Box::new(VirtioNet::new(name, queues)),
            DeviceIrq::Line(IrqLine(irq), Trigger::Edge),
        ))
    }
}

#[cfg(test)]
mod tests;
