//! # `rhea-drivers` — device drivers
//!
//! One module per device, each the only place that knows its registers. Drivers reach their
//! registers through small access traits that boards implement (port I/O on x86, MMIO on
//! ARM), so a driver compiles for every architecture and is tested on the host against a
//! model of the device.
//!
//! Now: [`uart16550`], the console of PC-class boards, and [`pl011`], the console of Arm
//! boards; [`bus`], the device model (buses enumerate, drivers match and bind); [`net`], the
//! contract of network devices; [`pci`], PCI enumeration, BARs, capabilities, MSI-X, MSI and
//! INTx over a configuration-access trait; [`virtio`], virtio-net over PCI and virtio-mmio
//! through the `virtio-drivers` crate; [`xen`], Xen's paravirtual drivers (xenstore, xenbus, grant
//! table, shared rings, netfront) over a board-provided [`xen::XenHost`]; [`e1000e`], the
//! Intel 82574L Ethernet controller (QEMU's `e1000e`); [`fbcon`], a text console on a linear
//! 32-bpp framebuffer (GOP), with its own 8x16 font.
//!
//! Unsafe code: denied everywhere except in [`e1000e::dma`] (the e1000e's descriptor rings and
//! buffers, shared with the device), [`virtio::hw`], which must touch memory the
//! compiler cannot check (DMA buffers shared with devices, volatile register windows, the
//! `virtio-drivers` transports' and queues' unsafe constructors and calls), and
//! [`xen::shared`], memory shared with other Xen domains (raw pointers, atomics on them, one
//! lock cell); each use there carries its `SAFETY` argument.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod bus;
pub mod e1000e;
pub mod fbcon;
pub mod net;
pub mod pci;
pub mod pl011;
pub mod uart16550;
pub mod virtio;
pub mod xen;
