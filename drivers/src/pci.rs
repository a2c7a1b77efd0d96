//! PCI (PCI Local Bus 3.0, PCI Express Base 4.0 ch. 7): enumeration, BARs, capabilities,
//! MSI-X, MSI and INTx facts, hardware-free.
//!
//! Configuration space is reached through [`ConfigAccess`], which boards implement (x86: ECAM
//! from the ACPI MCFG, or the legacy 0xCF8/0xCFC ports); so everything here is tested on the
//! host against a model of configuration space.
//!
//! - [`enumerate`] scans bus 0 and, through PCI-to-PCI bridges, every secondary bus once (a bus
//!   number seen twice or below its parent is ignored, so a misprogrammed bridge cannot make it
//!   loop); multi-function devices (header type bit 7) have all eight functions probed.
//! - [`bars`] decodes and sizes the base address registers (32/64-bit memory, I/O) by writing
//!   all ones and restoring, with the function's decoding disabled meanwhile. Call it only for a
//!   function no one else uses (a driver binding it).
//! - [`capabilities`] walks the capability list with bounds and loop protection: a pointer into
//!   the header, a repeated offset or more entries than fit is an error, never a hang.
//! - [`MsixCapability`] locates the MSI-X table and PBA and enables or masks the function;
//!   [`program_msix_entry`] writes one table entry through an [`Mmio32`] window.
//! - [`MsiCapability`] ([`msi`]) reads and checks plain MSI's capability and programs its one
//!   message.
//! - [`intx`] reads the interrupt pin and the line firmware wrote.
//! - [`class`] names a class code for the boot log (`SATA controller (AHCI)`).
//! - [`NicEnv::setup_irq`] chooses a PCI NIC's interrupt: MSI-X when offered and allowed, else
//!   MSI when offered and allowed, else INTx ([`PciIrq`]).
//!
//! A capability's body is read only once it is known to end inside the 256-byte header space
//! the list lives in ([`HEADER_SPACE_END`]): the walk bounds the pointers, the readers of
//! MSI-X and MSI bound the structures.

pub mod class;
pub mod msi;

pub use class::ClassName;
pub use msi::{MsiCapability, setup_msi};

use crate::bus::{BindContext, DeviceIrq, Msi};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A function's address on segment 0: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl Address {
    /// `bus:device.function`; `None` if the device or function is out of range.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Address> {
        (device < 32 && function < 8).then_some(Address {
            bus,
            device,
            function,
        })
    }
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}

/// Configuration-space access for one PCI segment.
///
/// Offsets are 4-byte aligned; reads of absent functions return all ones (as the hardware
/// does). Implementations serialise their own accesses.
pub trait ConfigAccess: Send + Sync {
    /// The mechanism's name for logs (`ECAM`, `ports`).
    fn name(&self) -> &'static str;
    /// Bytes of configuration space per function (256 for ports, 4096 for ECAM).
    fn space_len(&self) -> u16 {
        256
    }
    /// Makes `bus` reachable (ECAM maps its window), `Err` saying why it cannot be. Called
    /// before any access to the bus.
    fn open_bus(&self, bus: u8, ctx: &dyn BindContext) -> Result<(), String> {
        let _ = (bus, ctx);
        Ok(())
    }
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, at: Address, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, at: Address, offset: u16, value: u32);
}

/// Register offsets of the common header (type 0 and 1).
pub mod reg {
    /// Vendor ID (15:0), device ID (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0), status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Revision (7:0), programming interface, subclass, class (31:24).
    pub const CLASS: u16 = 0x08;
    /// Cache line, latency timer, header type (23:16), BIST.
    pub const HEADER: u16 = 0x0c;
    /// The first base address register.
    pub const BAR0: u16 = 0x10;
    /// Type 1: primary (7:0), secondary (15:8), subordinate (23:16) bus numbers.
    pub const BRIDGE_BUSES: u16 = 0x18;
    /// Capabilities pointer (7:0).
    pub const CAP_PTR: u16 = 0x34;
    /// Interrupt line (7:0), interrupt pin (15:8).
    pub const INTERRUPT: u16 = 0x3c;
}

/// Command register bits.
pub mod command {
    /// I/O space decoding.
    pub const IO: u16 = 1 << 0;
    /// Memory space decoding.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus mastering (DMA and MSI).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx assertion disabled.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register bit: the capability list exists.
const STATUS_CAP_LIST: u16 = 1 << 4;

/// Capability IDs.
pub mod cap_id {
    /// Message Signalled Interrupts.
    pub const MSI: u8 = 0x05;
    /// Vendor-specific (virtio's structures).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const PCIE: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// Reads the byte at `offset`.
pub fn read8(access: &dyn ConfigAccess, at: Address, offset: u16) -> u8 {
    (access.read32(at, offset & !3) >> ((offset & 3) * 8)) as u8
}

/// Reads the 16-bit register at `offset` (2-aligned).
pub fn read16(access: &dyn ConfigAccess, at: Address, offset: u16) -> u16 {
    (access.read32(at, offset & !3) >> ((offset & 2) * 8)) as u16
}

/// Reads the command register.
pub fn read_command(access: &dyn ConfigAccess, at: Address) -> u16 {
    read16(access, at, reg::COMMAND)
}

/// Writes the command register. The status half is written as zeros: its bits are read-only
/// or write-one-to-clear, so nothing there changes.
pub fn write_command(access: &dyn ConfigAccess, at: Address, value: u16) {
    access.write32(at, reg::COMMAND, u32::from(value));
}

/// What one function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub address: Address,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class, subclass, programming interface.
    pub class: [u8; 3],
    /// Header type without the multi-function bit (0: device, 1: PCI-PCI bridge, 2: CardBus).
    pub header_type: u8,
}

/// What [`enumerate`] found, and what it had to skip.
#[derive(Debug, Default)]
pub struct Enumeration {
    /// Every function found, in scan order.
    pub functions: Vec<Function>,
    /// Buses or bridges skipped, with the reason (for the boot log).
    pub problems: Vec<String>,
}

/// The most buses scanned (bus numbers are 8 bits).
const MAX_BUSES: usize = 256;

/// Scans bus 0 and every bus behind a bridge.
pub fn enumerate(access: &dyn ConfigAccess, ctx: &dyn BindContext) -> Enumeration {
    let mut out = Enumeration::default();
    let mut seen = [false; MAX_BUSES];
    let mut pending: Vec<u8> = alloc::vec![0];
    seen[0] = true;
    while let Some(bus) = pending.pop() {
        if let Err(e) = access.open_bus(bus, ctx) {
            out.problems.push(format!("bus {bus:02x} skipped: {e}"));
            continue;
        }
        let mut found_here = Vec::new();
        for device in 0..32 {
            scan_device(access, bus, device, &mut found_here);
        }
        // Bridges' secondary buses, in reverse so the stack visits them in order.
        let mut children = Vec::new();
        for f in &found_here {
            if f.header_type != 1 {
                continue;
            }
            let buses = access.read32(f.address, reg::BRIDGE_BUSES);
            let secondary = (buses >> 8) as u8;
            if secondary <= bus {
                out.problems.push(format!(
                    "bridge {} has secondary bus {secondary:#04x} not above its own bus {bus:#04x}: not scanned",
                    f.address
                ));
            } else if seen[usize::from(secondary)] {
                out.problems.push(format!(
                    "bridge {} names bus {secondary:#04x}, already scanned: not scanned again",
                    f.address
                ));
            } else {
                seen[usize::from(secondary)] = true;
                children.push(secondary);
            }
        }
        out.functions.extend(found_here);
        pending.extend(children.into_iter().rev());
    }
    out
}

fn scan_device(access: &dyn ConfigAccess, bus: u8, device: u8, out: &mut Vec<Function>) {
    let Some(at) = Address::new(bus, device, 0) else {
        return;
    };
    let Some(f0) = probe(access, at) else {
        return;
    };
    let multi = (access.read32(at, reg::HEADER) >> 16) & 0x80 != 0;
    out.push(f0);
    if multi {
        for function in 1..8 {
            if let Some(f) = Address::new(bus, device, function).and_then(|a| probe(access, a)) {
                out.push(f);
            }
        }
    }
}

fn probe(access: &dyn ConfigAccess, at: Address) -> Option<Function> {
    let id = access.read32(at, reg::ID);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = access.read32(at, reg::CLASS);
    Some(Function {
        address: at,
        vendor,
        device: (id >> 16) as u16,
        class: [(class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8],
        header_type: ((access.read32(at, reg::HEADER) >> 16) & 0x7f) as u8,
    })
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Memory space.
    Memory {
        /// Base address (0: not assigned by firmware).
        address: u64,
        /// Size in bytes (a power of two).
        size: u64,
        /// A 64-bit BAR (it takes this register and the next).
        is64: bool,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O space.
    Io {
        /// Base port.
        port: u32,
        /// Size in bytes.
        size: u32,
    },
}

/// Decodes and sizes every BAR of the function (6 for devices, 2 for bridges); the upper half
/// of a 64-bit BAR is `None`. Memory and I/O decoding are disabled while the registers hold
/// all ones and restored after.
pub fn bars(access: &dyn ConfigAccess, at: Address) -> Result<[Option<Bar>; 6], String> {
    let header_type = (access.read32(at, reg::HEADER) >> 16) & 0x7f;
    let count = match header_type {
        0 => 6,
        1 => 2,
        other => return Err(format!("header type {other} has no BARs to decode")),
    };
    let cmd = read_command(access, at);
    let quiet = cmd & !(command::IO | command::MEMORY);
    if quiet != cmd {
        write_command(access, at, quiet);
    }
    let mut out = [None; 6];
    let mut result = Ok(());
    let mut i = 0;
    while i < count {
        match size_bar(access, at, i, count) {
            Ok((bar, used)) => {
                out[i] = bar;
                i += used;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if quiet != cmd {
        write_command(access, at, cmd);
    }
    result.map(|()| out)
}

/// Sizes BAR `i`; returns it and how many registers it takes.
fn size_bar(
    access: &dyn ConfigAccess,
    at: Address,
    i: usize,
    count: usize,
) -> Result<(Option<Bar>, usize), String> {
    let offset = reg::BAR0 + 4 * i as u16;
    let orig = access.read32(at, offset);
    access.write32(at, offset, 0xffff_ffff);
    let mask = access.read32(at, offset);
    access.write32(at, offset, orig);
    if orig & 1 == 1 {
        // I/O: bits 1:0 are flags; devices decoding only 16 bits read 0 above.
        let mut m = mask & !0x3;
        if m == 0 {
            return Ok((None, 1));
        }
        if m & 0xffff_0000 == 0 {
            m |= 0xffff_0000;
        }
        let size = (!m).wrapping_add(1);
        return Ok((
            Some(Bar::Io {
                port: orig & !0x3,
                size,
            }),
            1,
        ));
    }
    let prefetchable = orig & 0x8 != 0;
    match (orig >> 1) & 0b11 {
        0b00 | 0b01 => {
            let m = mask & !0xf;
            if m == 0 {
                return Ok((None, 1));
            }
            let size = u64::from((!m).wrapping_add(1));
            Ok((
                Some(Bar::Memory {
                    address: u64::from(orig & !0xf),
                    size,
                    is64: false,
                    prefetchable,
                }),
                1,
            ))
        }
        0b10 => {
            if i + 1 >= count {
                return Err(format!(
                    "BAR{i} is 64-bit but is the last BAR (no upper half)"
                ));
            }
            let hi_offset = offset + 4;
            let orig_hi = access.read32(at, hi_offset);
            access.write32(at, hi_offset, 0xffff_ffff);
            let mask_hi = access.read32(at, hi_offset);
            access.write32(at, hi_offset, orig_hi);
            let m = (u64::from(mask_hi) << 32) | u64::from(mask & !0xf);
            if m == 0 {
                return Ok((None, 2));
            }
            Ok((
                Some(Bar::Memory {
                    address: (u64::from(orig_hi) << 32) | u64::from(orig & !0xf),
                    size: (!m).wrapping_add(1),
                    is64: true,
                    prefetchable,
                }),
                2,
            ))
        }
        _ => Err(format!(
            "BAR{i} has the reserved memory type 0b11 ({orig:#010x})"
        )),
    }
}

/// Addresses for memory BARs firmware left unassigned (qboot assigns none): a bump allocator
/// over a window of the machine's PCI memory hole, each BAR naturally aligned.
#[derive(Debug)]
pub struct BarAllocator {
    next: core::sync::atomic::AtomicU64,
    end: u64,
}

impl BarAllocator {
    /// Allocates from `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        BarAllocator {
            next: core::sync::atomic::AtomicU64::new(start),
            end,
        }
    }

    /// A `size`-aligned range of `size` bytes (a power of two), if one is left.
    pub fn alloc(&self, size: u64) -> Option<u64> {
        use core::sync::atomic::Ordering;
        if !size.is_power_of_two() {
            return None;
        }
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = cur.checked_add(size - 1)? & !(size - 1);
            let end = start.checked_add(size).filter(|&e| e <= self.end)?;
            match self
                .next
                .compare_exchange(cur, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(start),
                Err(now) => cur = now,
            }
        }
    }
}

/// Gives every memory BAR without an address one from `alloc` (decoding disabled while the
/// registers change; a 32-bit BAR only below 4 GiB); returns the BARs as now programmed.
pub fn assign_memory_bars(
    access: &dyn ConfigAccess,
    at: Address,
    alloc: &BarAllocator,
) -> Result<[Option<Bar>; 6], String> {
    let mut b = bars(access, at)?;
    let cmd = read_command(access, at);
    let quiet = cmd & !(command::IO | command::MEMORY);
    write_command(access, at, quiet);
    let mut result = Ok(());
    for (i, bar) in b.iter_mut().enumerate() {
        let Some(Bar::Memory {
            address: address @ 0,
            size,
            is64,
            ..
        }) = bar
        else {
            continue;
        };
        match alloc.alloc(*size) {
            Some(a) if *is64 || a + *size <= 1 << 32 => {
                let offset = reg::BAR0 + 4 * i as u16;
                let flags = access.read32(at, offset) & 0xf;
                access.write32(at, offset, (a as u32 & !0xf) | flags);
                if *is64 {
                    access.write32(at, offset + 4, (a >> 32) as u32);
                }
                *address = a;
            }
            _ => {
                result = Err(format!(
                    "BAR{i} ({size:#x} bytes) has no address and none is left to give it"
                ));
                break;
            }
        }
    }
    write_command(access, at, cmd);
    result.map(|()| b)
}

/// One capability: its ID and where it starts in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Offset of its header.
    pub offset: u8,
    /// Capability ID.
    pub id: u8,
}

/// The most capabilities that fit the device-specific area (0x40..0x100, 4 bytes each).
const MAX_CAPS: usize = 48;

/// Walks the capability list. A pointer into the standard header (below 0x40), an offset seen
/// before (a loop) or more entries than fit is an error naming the offset.
pub fn capabilities(access: &dyn ConfigAccess, at: Address) -> Result<Vec<Capability>, String> {
    let status = (access.read32(at, reg::COMMAND) >> 16) as u16;
    let mut out = Vec::new();
    if status & STATUS_CAP_LIST == 0 {
        return Ok(out);
    }
    let mut seen = [false; 256];
    let mut ptr = read8(access, at, reg::CAP_PTR) & 0xfc;
    while ptr != 0 {
        if ptr < 0x40 {
            return Err(format!(
                "capability pointer {ptr:#04x} points into the standard header"
            ));
        }
        if seen[usize::from(ptr)] {
            return Err(format!("capability list loops back to {ptr:#04x}"));
        }
        if out.len() == MAX_CAPS {
            return Err(format!("more than {MAX_CAPS} capabilities"));
        }
        seen[usize::from(ptr)] = true;
        let header = access.read32(at, u16::from(ptr));
        out.push(Capability {
            offset: ptr,
            id: header as u8,
        });
        ptr = ((header >> 8) as u8) & 0xfc;
    }
    Ok(out)
}

/// The end of the header space (type 0 and 1 headers and the capability list): 256 bytes, all
/// that the ports reach; ECAM's extended space above it holds extended capabilities, never a
/// part of a standard one.
pub const HEADER_SPACE_END: u16 = 0x100;

/// Whether a capability of `len_bytes` at `cap` ends inside the header space; `Err` names it.
fn check_fits(what: &str, cap: u8, len_bytes: u16) -> Result<(), String> {
    if u16::from(cap) + len_bytes > HEADER_SPACE_END {
        return Err(format!(
            "{what} capability at {cap:#04x} ({len_bytes} bytes) runs past the end of the \
             {HEADER_SPACE_END:#x}-byte header space"
        ));
    }
    Ok(())
}

/// The MSI-X capability of a function (PCI 3.0 §6.8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    /// Offset of the capability.
    pub offset: u8,
    /// Table entries (1..=2048).
    pub table_size: u16,
    /// The BAR holding the table.
    pub table_bar: u8,
    /// The table's offset in that BAR (8-aligned).
    pub table_offset: u32,
    /// The BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// The PBA's offset in that BAR.
    pub pba_offset: u32,
}

/// Message control: MSI-X enable.
const MSIX_ENABLE: u32 = 1 << 31;
/// Message control: function mask.
const MSIX_FUNCTION_MASK: u32 = 1 << 30;
/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_LEN: u32 = 16;
/// Bytes of the MSI-X capability structure.
const MSIX_CAP_LEN: u16 = 12;

impl MsixCapability {
    /// Reads the MSI-X capability at `cap` (an entry of [`capabilities`] with ID
    /// [`cap_id::MSIX`]). A BAR indicator above 5, or a structure running past the header
    /// space, is an error.
    pub fn read(access: &dyn ConfigAccess, at: Address, cap: u8) -> Result<Self, String> {
        check_fits("MSI-X", cap, MSIX_CAP_LEN)?;
        let control = access.read32(at, u16::from(cap)) >> 16;
        let table = access.read32(at, u16::from(cap) + 4);
        let pba = access.read32(at, u16::from(cap) + 8);
        let (table_bar, pba_bar) = ((table & 7) as u8, (pba & 7) as u8);
        if table_bar > 5 || pba_bar > 5 {
            return Err(format!(
                "MSI-X table BAR {table_bar} or PBA BAR {pba_bar} does not exist"
            ));
        }
        Ok(MsixCapability {
            offset: cap,
            table_size: (control & 0x7ff) as u16 + 1,
            table_bar,
            table_offset: table & !7,
            pba_bar,
            pba_offset: pba & !7,
        })
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u32 {
        u32::from(self.table_size) * MSIX_ENTRY_LEN
    }

    /// Sets MSI-X enable and the function mask.
    pub fn set(&self, access: &dyn ConfigAccess, at: Address, enable: bool, masked: bool) {
        let offset = u16::from(self.offset);
        let mut v = access.read32(at, offset);
        v &= !(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        if enable {
            v |= MSIX_ENABLE;
        }
        if masked {
            v |= MSIX_FUNCTION_MASK;
        }
        access.write32(at, offset, v);
    }

    /// Whether MSI-X is enabled and whether the function is masked.
    pub fn state(&self, access: &dyn ConfigAccess, at: Address) -> (bool, bool) {
        let v = access.read32(at, u16::from(self.offset));
        (v & MSIX_ENABLE != 0, v & MSIX_FUNCTION_MASK != 0)
    }
}

/// 32-bit register access to a mapped memory region (an MSI-X table), offsets in bytes.
pub trait Mmio32 {
    /// Reads the register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write32(&self, offset: usize, value: u32);
}

/// Writes MSI-X table entry `entry` (in the mapped `table`) with `msi`'s address and data and
/// unmasks it. The entry is masked while its address and data change.
pub fn program_msix_entry(table: &dyn Mmio32, entry: u16, msi: Msi) {
    let base = usize::from(entry) * MSIX_ENTRY_LEN as usize;
    table.write32(base + 12, 1); // vector control: masked
    table.write32(base, msi.address as u32);
    table.write32(base + 4, (msi.address >> 32) as u32);
    table.write32(base + 8, msi.data);
    table.write32(base + 12, 0); // unmasked
}

/// A function's legacy interrupt: the pin it asserts and the line firmware wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intx {
    /// 1 = INTA .. 4 = INTD.
    pub pin: u8,
    /// The interrupt line register (firmware's routing; 0xff: unknown).
    pub line: u8,
}

/// The function's INTx facts; `None` if it uses no pin (or names a pin that does not exist).
pub fn intx(access: &dyn ConfigAccess, at: Address) -> Option<Intx> {
    let v = access.read32(at, reg::INTERRUPT);
    let pin = (v >> 8) as u8;
    (1..=4)
        .contains(&pin)
        .then_some(Intx { pin, line: v as u8 })
}

/// Enables MSI-X with one fresh vector in table entry 0 (the table mapped from its BAR in
/// `bars`), INTx disabled; `Ok(None)` when the platform has no vector to give. A table outside
/// its BAR is an error. Shared by the PCI NIC drivers.
pub fn setup_msix(
    access: &dyn ConfigAccess,
    at: Address,
    msix: &MsixCapability,
    bars: &[Option<Bar>; 6],
    ctx: &dyn BindContext,
) -> Result<Option<u8>, String> {
    let Some(Bar::Memory { address, size, .. }) = bars[usize::from(msix.table_bar)] else {
        return Err(format!(
            "MSI-X table BAR{} is not a memory BAR",
            msix.table_bar
        ));
    };
    let end = u64::from(msix.table_offset) + u64::from(msix.table_len());
    if address == 0 || end > size {
        return Err(format!(
            "MSI-X table ({} entries at {:#x}) does not fit BAR{} ({size:#x} bytes at {address:#x})",
            msix.table_size, msix.table_offset, msix.table_bar
        ));
    }
    let Some(msi) = ctx.alloc_msi() else {
        return Ok(None);
    };
    let table = crate::virtio::hw::MmioWindow::map(
        ctx,
        address + u64::from(msix.table_offset),
        u64::from(msix.table_len()),
    )?;
    msix.set(access, at, true, true);
    program_msix_entry(&table, 0, msi);
    msix.set(access, at, true, false);
    write_command(access, at, read_command(access, at) | command::INTX_DISABLE);
    Ok(Some(msi.vector))
}

/// Clears MSI-X enable in the capability at `cap` without reading the rest of it.
fn disable_msix(access: &dyn ConfigAccess, at: Address, cap: u8) {
    let offset = u16::from(cap);
    let v = access.read32(at, offset);
    if v & MSIX_ENABLE != 0 {
        access.write32(at, offset, v & !MSIX_ENABLE);
    }
}

/// How a PCI function interrupts, as [`NicEnv::setup_irq`] set it up. Its `Display` is what
/// the drivers put in the device's name for the boot log: `MSI-X vector 0x41`,
/// `MSI vector 0x41`, `INTx GSI 11`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciIrq {
    /// MSI-X: table entry 0 raises this vector.
    Msix(u8),
    /// MSI: the function's one message raises this vector.
    Msi(u8),
    /// INTx on this GSI (level-triggered, active low).
    Intx(u32),
}

impl PciIrq {
    /// The interrupt as the device model takes it.
    pub fn device_irq(self) -> DeviceIrq {
        match self {
            Self::Msix(v) | Self::Msi(v) => DeviceIrq::Vector(v),
            Self::Intx(gsi) => DeviceIrq::Line(rhea_hal::IrqLine(gsi), rhea_hal::Trigger::LevelLow),
        }
    }
}

impl core::fmt::Display for PciIrq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Msix(v) => write!(f, "MSI-X vector {v:#04x}"),
            Self::Msi(v) => write!(f, "MSI vector {v:#04x}"),
            Self::Intx(gsi) => write!(f, "INTx GSI {gsi}"),
        }
    }
}

/// What a PCI NIC driver takes from the board besides the device (virtio-net-pci, e1000e):
/// configuration access, addresses for memory BARs firmware left unassigned, which
/// message-signalled interrupts may be used (`rhea.pci.msix=off`: no MSI-X, so MSI where
/// offered; `rhea.pci.msi=off` as well: INTx), and the board's ISA IRQ → GSI translation.
#[derive(Clone)]
pub struct NicEnv {
    pub access: alloc::sync::Arc<dyn ConfigAccess>,
    pub bar_space: &'static BarAllocator,
    pub allow_msix: bool,
    pub allow_msi: bool,
    pub intx_gsi: fn(u8) -> Option<u32>,
}

impl core::fmt::Debug for NicEnv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NicEnv")
            .field("access", &self.access.name())
            .field("allow_msix", &self.allow_msix)
            .field("allow_msi", &self.allow_msi)
            .finish()
    }
}

impl NicEnv {
    /// Function `at`'s MSI-X capability among `caps`, if it has one and MSI-X is allowed.
    pub fn msix(&self, at: Address, caps: &[Capability]) -> Result<Option<MsixCapability>, String> {
        match caps.iter().find(|c| c.id == cap_id::MSIX) {
            Some(c) if self.allow_msix => {
                MsixCapability::read(&*self.access, at, c.offset).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Function `at`'s MSI capability among `caps`, if it has one and MSI is allowed.
    pub fn msi(&self, at: Address, caps: &[Capability]) -> Result<Option<MsiCapability>, String> {
        match caps.iter().find(|c| c.id == cap_id::MSI) {
            Some(c) if self.allow_msi => MsiCapability::read(&*self.access, at, c.offset).map(Some),
            _ => Ok(None),
        }
    }

    /// Sets up function `at`'s interrupt (its capabilities `caps`, its BARs as assigned in
    /// `bars`): **MSI-X** when offered and allowed, else **MSI** when offered and allowed,
    /// each with one vector from `ctx` and INTx disabled; else (or when the platform has no
    /// vector to give) **INTx**, whose line must be usable. Whatever firmware left enabled is
    /// turned off first: MSI and MSI-X must never be on together (PCI 3.0 §6.8), and neither
    /// while INTx is expected. `Err` is the refusal: the capability of the chosen kind is
    /// malformed (one of a kind not allowed is only switched off, never read), or there is no
    /// usable interrupt at all.
    pub fn setup_irq(
        &self,
        at: Address,
        caps: &[Capability],
        bars: &[Option<Bar>; 6],
        ctx: &dyn BindContext,
    ) -> Result<PciIrq, String> {
        let acc = &*self.access;
        for c in caps {
            match c.id {
                cap_id::MSIX => disable_msix(acc, at, c.offset),
                cap_id::MSI => msi::disable(acc, at, c.offset),
                _ => {}
            }
        }
        if let Some(m) = self.msix(at, caps)?
            && let Some(v) = setup_msix(acc, at, &m, bars, ctx)?
        {
            return Ok(PciIrq::Msix(v));
        }
        if let Some(m) = self.msi(at, caps)?
            && let Some(v) = setup_msi(acc, at, &m, ctx)?
        {
            return Ok(PciIrq::Msi(v));
        }
        self.intx_gsi(at).map(PciIrq::Intx)
    }

    /// Memory decoding and bus mastering (DMA) on; I/O decoding off (neither NIC needs an I/O
    /// BAR, and one firmware left at 0 must not claim legacy ports); INTx not disabled.
    pub fn enable_memory_and_dma(&self, at: Address) {
        let acc = &*self.access;
        let cmd = read_command(acc, at);
        write_command(
            acc,
            at,
            (cmd | command::MEMORY | command::BUS_MASTER) & !(command::IO | command::INTX_DISABLE),
        );
    }

    /// The GSI of function `at`'s INTx ([`intx_gsi`]).
    pub fn intx_gsi(&self, at: Address) -> Result<u32, String> {
        intx_gsi(&*self.access, at, self.intx_gsi)
    }
}

/// The GSI of the function's INTx: the interrupt-line register firmware wrote, which must be a
/// sane ISA IRQ (1, 3..=15), translated by the board's `isa_to_gsi`. `Err` says why there is
/// none (no pin, a line firmware did not route).
pub fn intx_gsi(
    access: &dyn ConfigAccess,
    at: Address,
    isa_to_gsi: fn(u8) -> Option<u32>,
) -> Result<u32, String> {
    let Some(i) = intx(access, at) else {
        return Err("no MSI-X or MSI in use, and no INTx pin".into());
    };
    match i.line {
        1 | 3..=15 => isa_to_gsi(i.line).ok_or_else(|| format!("INTx line {} has no GSI", i.line)),
        other => Err(format!(
            "no MSI-X or MSI in use, and INTx pin {} has no usable line ({other:#04x}; firmware did not route it)",
            i.pin
        )),
    }
}

#[cfg(test)]
mod tests;

/// The PCI bus of one segment, for the device model.
pub struct PciBus {
    access: alloc::sync::Arc<dyn ConfigAccess>,
    log: fn(&str),
}

impl core::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PciBus")
            .field("access", &self.access.name())
            .finish()
    }
}

impl PciBus {
    /// A bus reached through `access`; enumeration problems are passed to `log`.
    pub fn new(access: alloc::sync::Arc<dyn ConfigAccess>, log: fn(&str)) -> Self {
        PciBus { access, log }
    }
}

impl crate::bus::Bus for PciBus {
    fn name(&self) -> &'static str {
        "pci"
    }

    /// Nothing without a context to open buses with: see [`enumerate`](crate::bus::Bus::enumerate).
    fn devices(&mut self) -> Vec<crate::bus::DeviceInfo> {
        Vec::new()
    }

    fn enumerate(&mut self, ctx: &dyn BindContext) -> Vec<crate::bus::DeviceInfo> {
        let e = enumerate(&*self.access, ctx);
        for p in &e.problems {
            (self.log)(p);
        }
        e.functions
            .iter()
            .map(|f| crate::bus::DeviceInfo {
                location: format!("pci {}", f.address),
                id: crate::bus::DeviceId::Pci {
                    address: f.address,
                    vendor: f.vendor,
                    device: f.device,
                    class: f.class,
                },
            })
            .collect()
    }
}
