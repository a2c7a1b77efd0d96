//! The Intel 82574L Gigabit Ethernet controller (PCI 8086:10d3, QEMU's `-device e1000e`): a
//! NIC a PC has, as a driver of the device model, behind the same [`NetDevice`] contract as
//! virtio-net.
//!
//! - [`regs`]: the hardware knowledge — register offsets, bits, descriptor layouts, the MAC
//!   address check — pure data, cited to the 82574 datasheet.
//! - [`ring`]: the device's start-up and the receive and transmit rings, hardware-free (registers
//!   through [`Mmio32`](crate::pci::Mmio32), memory through [`ring::Dma`]) and host-tested
//!   against a model of the device (`tests.rs`), including a device that never completes a
//!   descriptor, one that writes absurd lengths, and a link that stays down.
//! - [`dma`]: the only unsafe code, the memory shared with the device.
//!
//! [`E1000ePci`] binds the function: sizes and maps BAR0 (the 128 KiB register window; memory
//! BARs firmware left unassigned get addresses from the board's window), turns on memory
//! decoding and bus mastering (I/O decoding off: the I/O BAR is not used), resets the device,
//! then sets up its interrupt ([`pci::NicEnv::setup_irq`]): **MSI-X** where the board allows
//! it (one vector, table entry 0, every cause routed to it through IVAR), else **MSI** where
//! allowed (the 82574's MSI capability, one message that every cause shares, as under INTx:
//! ICR says which), else **INTx** (the line firmware routed, level-triggered). The device's
//! name in the log says which (`e1000e 0000:00:02.0 MSI vector 0x41`). The MAC address is the
//! one the EEPROM loaded into receive address 0 (RAL0/RAH0); an all-zero, a multicast or an
//! invalid one is a refusal naming it.
//!
//! Locking: none. The driver thread owns the device (`&mut self`); its interrupt reaches that
//! thread as an event, and all acknowledging (IMC, ICR) happens in
//! [`NetDevice::handle_interrupt`], in thread context.
//!
//! Link: a link that is down refuses frames to send ([`NetError::LinkDown`], counted: nothing
//! waits for it), and the state is read again at every link-change interrupt and whenever a
//! frame is sent while it is down.

pub mod dma;
pub mod regs;
pub mod ring;

use crate::bus::{BindContext, Bound, DeviceId, DeviceInfo, Driver};
use crate::net::{NetDevice, NetDeviceStats, NetError};
use crate::pci::{self, Bar, Mmio32, PciIrq};
use crate::virtio::hw::MmioWindow;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use dma::DmaRegion;
use ring::{Dma, IrqMode, Nic, Rx};

/// A started 82574 as a network device.
#[derive(Debug)]
pub struct E1000e<R: Mmio32, D: Dma> {
    name: String,
    nic: Nic<R, D>,
}

impl<R: Mmio32, D: Dma> E1000e<R, D> {
    /// A device named `name` over a started `nic`.
    pub fn new(name: String, nic: Nic<R, D>) -> Self {
        E1000e { name, nic }
    }

    /// The driver's own counters (drops by kind, link changes).
    pub fn counters(&self) -> ring::Counters {
        self.nic.counters()
    }
}

impl<R: Mmio32 + Send, D: Dma + Send> NetDevice for E1000e<R, D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.nic.mac()
    }

    fn link_up(&self) -> bool {
        self.nic.link()
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        // RT: each round consumes a descriptor, and none is given back before `flush`.
        for _ in 0..ring::RX_DESCS {
            match self.nic.receive(buf) {
                Rx::Empty => return Ok(None),
                Rx::Frame(n) => return Ok(Some(n)),
                Rx::Dropped(_) => {}
            }
        }
        Ok(None)
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        self.nic.transmit(frame)
    }

    fn flush(&mut self) {
        self.nic.flush();
    }

    fn handle_interrupt(&mut self) {
        self.nic.handle_interrupt();
    }

    fn rearm(&mut self) -> bool {
        self.nic.rearm()
    }

    fn stats(&self) -> NetDeviceStats {
        self.nic.stats()
    }
}

/// The 82574L over PCI (see the module documentation).
#[derive(Debug)]
pub struct E1000ePci {
    env: pci::NicEnv,
}

impl E1000ePci {
    /// A driver with the board's PCI environment (`env.bar_space` gives addresses to memory
    /// BARs firmware left unassigned, as for virtio-net-pci).
    pub fn new(env: pci::NicEnv) -> Self {
        E1000ePci { env }
    }
}

impl Driver for E1000ePci {
    fn name(&self) -> &'static str {
        "e1000e"
    }

    fn matches(&self, dev: &DeviceInfo) -> bool {
        matches!(
            dev.id,
            DeviceId::Pci {
                vendor: regs::VENDOR_INTEL,
                device: regs::DEVICE_82574L,
                ..
            }
        )
    }

    fn bind(&self, dev: &DeviceInfo, ctx: &dyn BindContext) -> Result<Bound, String> {
        let DeviceId::Pci { address: at, .. } = dev.id else {
            return Err("not a PCI function".to_string());
        };
        let acc = &*self.env.access;
        let caps =
            pci::capabilities(acc, at).map_err(|e| format!("malformed capability list: {e}"))?;
        let bars = pci::assign_memory_bars(acc, at, self.env.bar_space)?;
        let Some(Bar::Memory { address, size, .. }) = bars[0] else {
            return Err("BAR0 is not a memory BAR (the registers)".to_string());
        };
        if size < regs::reg::WINDOW {
            return Err(format!(
                "BAR0 has {size:#x} bytes, below the {:#x} of the register window",
                regs::reg::WINDOW
            ));
        }
        let regs =
            MmioWindow::map(ctx, address, regs::reg::WINDOW).map_err(|e| format!("BAR0: {e}"))?;
        self.env.enable_memory_and_dma(at);
        ring::reset(&regs)?;

        // MSI-X (every cause routed to table entry 0 through IVAR), else MSI (one message for
        // every cause, as with INTx: ICR says which), else INTx.
        let irq = self.env.setup_irq(at, &caps, &bars, ctx)?;
        let mode = match irq {
            PciIrq::Msix(_) => IrqMode::Msix,
            PciIrq::Msi(_) | PciIrq::Intx(_) => IrqMode::Legacy,
        };
        let dma = DmaRegion::new(ring::layout::LEN)?;
        let nic = Nic::start(regs, dma, mode)?;
        let name = format!("e1000e {at} {irq}");
        Ok(Bound::Net(
            Box::new(E1000e::new(name, nic)),
            irq.device_irq(),
        ))
    }
}

#[cfg(test)]
mod tests;
