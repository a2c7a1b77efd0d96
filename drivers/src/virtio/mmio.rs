//! virtio-mmio devices named on the kernel command line, and the bus that reports them.
//!
//! QEMU's microvm, booting a `-kernel`, appends one `virtio_mmio.device=<size>@<base>:<irq>`
//! per virtio-mmio transport that holds a device (Linux's format, `drivers/virtio/virtio_mmio.c`:
//! size and base take `0x` hex or decimal with an optional K/M/G suffix, the IRQ is decimal, an
//! optional `:<id>` follows). [`parse_cmdline`] returns the valid entries and a message for
//! each invalid one. On Arm the transports come from the devicetree's `virtio,mmio` nodes
//! instead (the board parses them). [`VirtioMmioBus`] maps each window, checks the magic value
//! and version and reports the device type it finds; a transport with device ID 0 holds no
//! device (QEMU's virt machine lists 32, most of them empty) and is skipped without a message
//! of its own.

use super::hw::MmioWindow;
use crate::bus::{BindContext, Bus, DeviceId, DeviceInfo};
use crate::pci::Mmio32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One `virtio_mmio.device=` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    /// Physical base of the register window.
    pub base: u64,
    /// Bytes of the window.
    pub size: u64,
    /// The interrupt line (a GSI on x86, an SPI's INTID on the GIC).
    pub irq: u32,
    /// Why a device found here must not be offered to drivers (a platform fact the board
    /// knows and the drivers cannot see, such as DMA that is not cache-coherent); logged with
    /// the device only if the transport holds one.
    pub refusal: Option<&'static str>,
}

/// The smallest window: the registers up to the device configuration at 0x100.
const MIN_SIZE: u64 = 0x100;
/// The largest window accepted (virtio-mmio devices use a page at most).
const MAX_SIZE: u64 = 1 << 20;
/// Windows must lie below this (identity-mapped device space).
const MAX_END: u64 = 1 << 47;
/// The command-line key.
pub const KEY: &str = "virtio_mmio.device=";

/// A number as Linux's `memparse` reads it: decimal or `0x` hex, optional K/M/G suffix.
fn memparse(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        b'G' | b'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    n.checked_mul(1 << shift)
}

/// Parses one entry's value (after `virtio_mmio.device=`).
pub fn parse_entry(value: &str) -> Result<MmioDevice, String> {
    let bad = |why: &str| format!("`{KEY}{value}`: {why}");
    let (size, rest) = value
        .split_once('@')
        .ok_or_else(|| bad("no `@` between size and base"))?;
    let (base, rest) = rest
        .split_once(':')
        .ok_or_else(|| bad("no `:` before the IRQ"))?;
    let irq = match rest.split_once(':') {
        Some((irq, id)) => {
            id.parse::<u32>()
                .map_err(|_| bad("the device id after the IRQ is not a number"))?;
            irq
        }
        None => rest,
    };
    let size = memparse(size).ok_or_else(|| bad("the size is not a number"))?;
    let base = memparse(base).ok_or_else(|| bad("the base is not a number"))?;
    let irq: u32 = irq
        .parse()
        .map_err(|_| bad("the IRQ is not a decimal number"))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(bad(&format!(
            "size {size:#x} outside {MIN_SIZE:#x}..={MAX_SIZE:#x}"
        )));
    }
    if base == 0 || !base.is_multiple_of(4) {
        return Err(bad(&format!(
            "base {base:#x} is zero or not 4-byte aligned"
        )));
    }
    if base.checked_add(size).is_none_or(|end| end > MAX_END) {
        return Err(bad(&format!(
            "window {base:#x}+{size:#x} runs past {MAX_END:#x}"
        )));
    }
    if irq == 0 || irq > 255 {
        return Err(bad(&format!("IRQ {irq} outside 1..=255")));
    }
    Ok(MmioDevice {
        base,
        size,
        irq,
        refusal: None,
    })
}

/// Every valid `virtio_mmio.device=` entry of `cmdline`, in order, and a message for each
/// invalid one (including a window overlapping an earlier one).
pub fn parse_cmdline(cmdline: &str) -> (Vec<MmioDevice>, Vec<String>) {
    let mut devices: Vec<MmioDevice> = Vec::new();
    let mut errors = Vec::new();
    for value in cmdline
        .split_ascii_whitespace()
        .filter_map(|arg| arg.strip_prefix(KEY))
    {
        match parse_entry(value) {
            Ok(d) => {
                let overlaps = devices
                    .iter()
                    .any(|o| d.base < o.base + o.size && o.base < d.base + d.size);
                if overlaps {
                    errors.push(format!(
                        "`{KEY}{value}`: window overlaps an earlier entry's"
                    ));
                } else {
                    devices.push(d);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (devices, errors)
}

/// virtio-mmio's magic value ("virt").
const MAGIC: u32 = 0x7472_6976;

/// The virtio-mmio devices of the command line.
#[derive(Debug)]
pub struct VirtioMmioBus {
    devices: Vec<MmioDevice>,
    log: fn(&str),
}

impl VirtioMmioBus {
    /// A bus over `devices`; problems found while enumerating are passed to `log`.
    pub fn new(devices: Vec<MmioDevice>, log: fn(&str)) -> Self {
        VirtioMmioBus { devices, log }
    }
}

impl Bus for VirtioMmioBus {
    fn name(&self) -> &'static str {
        "virtio-mmio"
    }

    /// Nothing without register access: see [`enumerate`](Bus::enumerate).
    fn devices(&mut self) -> Vec<DeviceInfo> {
        Vec::new()
    }

    fn enumerate(&mut self, ctx: &dyn BindContext) -> Vec<DeviceInfo> {
        let mut out = Vec::new();
        let mut empty = 0;
        for d in &self.devices {
            let w = match MmioWindow::map(ctx, d.base, d.size) {
                Ok(w) => w,
                Err(e) => {
                    (self.log)(&format!("virtio-mmio@{:#x}: {e}", d.base));
                    continue;
                }
            };
            let (magic, version, device_id) = (w.read32(0), w.read32(4), w.read32(8));
            if magic != MAGIC || !(1..=2).contains(&version) {
                (self.log)(&format!(
                    "virtio-mmio@{:#x}: no virtio device (magic {magic:#010x}, version {version}); skipped",
                    d.base
                ));
                continue;
            }
            if device_id == 0 {
                empty += 1;
                continue;
            }
            if let Some(why) = d.refusal {
                (self.log)(&format!(
                    "virtio-mmio@{:#x}: device type {device_id}: {why}; not offered to drivers",
                    d.base
                ));
                continue;
            }
            out.push(DeviceInfo {
                location: format!("virtio-mmio@{:#x}", d.base),
                id: DeviceId::VirtioMmio {
                    device_id,
                    base: d.base,
                    size: d.size,
                    irq: d.irq,
                },
            });
        }
        if empty > 0 {
            (self.log)(&format!(
                "virtio-mmio: {} transports, {empty} empty, {} offered to drivers",
                self.devices.len(),
                out.len()
            ));
        }
        out
    }
}
