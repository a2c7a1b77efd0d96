//! PCI configuration access on this machine: **ECAM** (PCI Express enhanced configuration
//! access) where the ACPI MCFG describes a window for segment 0, else the legacy
//! **configuration ports** 0xCF8/0xCFC (PCI 3.0 §3.2.2.3.2, mechanism #1).
//!
//! Early boot ([`discover`], next to the MADT read while the boot identity map shows the
//! firmware's tables) reads the MCFG; a malformed one is refused with its reason and the ports
//! are used. The ECAM window is not mapped then: [`Ecam::open_bus`] maps one bus's 1 MiB
//! through the device model's `map_mmio` the first time enumeration reaches that bus, so only
//! the buses that exist are mapped. Before trusting ECAM, bus 0's host bridge is read both
//! ways; if ECAM disagrees with the ports (firmware did not enable the window it described),
//! the ports are used, said on the console.
#![allow(
    unsafe_code,
    reason = "configuration-port I/O and volatile ECAM accesses; each use has a SAFETY note"
)]

use crate::machine::ConsoleWriter;
use crate::madt::{Rsdp, Window};
use crate::mcfg::{self, EcamWindow};
use alloc::format;
use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_arch::sync::{IrqsOff, SpinLock};
use rhea_drivers::bus::BindContext;
use rhea_drivers::pci::{Address, ConfigAccess};
use rhea_sync::Once;

/// Segment 0's ECAM window, if the MCFG gave a usable one.
static ECAM: Once<EcamWindow> = Once::new();

/// Reads the MCFG (early boot, boot identity map active) and says what configuration access
/// PCI will use.
/// Whether the ACPI tables described a PCI Express configuration window (q35 does; microvm,
/// without its `pcie=on`, does not).
pub fn has_ecam() -> bool {
    ECAM.get().is_some()
}

pub(crate) fn discover(rsdp: Option<u64>) {
    let mut w = ConsoleWriter;
    let where_ = match rsdp {
        Some(a) => Rsdp::At(a as usize),
        None => Rsdp::SearchBios,
    };
    let window = Window {
        start: 0x400,
        end: 4 << 30,
    };
    // SAFETY: as for the MADT (`smp::discover`): the boot page tables identity-map the low
    // 4 GiB, which holds the BIOS areas and the firmware's ACPI tables; nothing writes them.
    match unsafe { mcfg::read(where_, window) } {
        Ok(info) => match info.segment0() {
            Some(e) => {
                let _ = writeln!(
                    w,
                    "rhea: pci: MCFG: ECAM at {:#x}, buses {:02x}-{:02x}",
                    e.base, e.start_bus, e.end_bus
                );
                ECAM.call_once(|| e);
            }
            None => {
                let _ = writeln!(
                    w,
                    "rhea: pci: MCFG has no window for segment 0; using configuration ports"
                );
            }
        },
        Err(e) if e.is_missing() => {
            let _ = writeln!(w, "rhea: pci: no ACPI MCFG; using configuration ports");
        }
        Err(e) => {
            let _ = writeln!(
                w,
                "rhea: pci: MCFG refused ({e}); using configuration ports"
            );
        }
    }
}

/// Configuration mechanism #1: the address register at 0xCF8, data at 0xCFC.
struct Ports {
    /// Serialises the address/data pair; interrupts off while held, so nothing on this CPU
    /// interleaves. A leaf lock.
    lock: SpinLock<(), IrqsOff>,
}

fn port_address(at: Address, offset: u16) -> u32 {
    0x8000_0000
        | (u32::from(at.bus) << 16)
        | (u32::from(at.device) << 11)
        | (u32::from(at.function) << 8)
        | u32::from(offset & 0xfc)
}

impl ConfigAccess for Ports {
    fn name(&self) -> &'static str {
        "ports"
    }

    fn read32(&self, at: Address, offset: u16) -> u32 {
        if offset >= 256 {
            return 0xffff_ffff;
        }
        let _g = self.lock.lock();
        // SAFETY: 0xCF8/0xCFC are the PCI host bridge's configuration ports on PC-class
        // machines; the address/data pair is serialised by the lock (interrupts off meanwhile,
        // so nothing on this CPU interleaves).
        unsafe {
            x86_64::instructions::port::Port::<u32>::new(0xcf8).write(port_address(at, offset));
            x86_64::instructions::port::Port::<u32>::new(0xcfc).read()
        }
    }

    fn write32(&self, at: Address, offset: u16, value: u32) {
        if offset >= 256 {
            return;
        }
        let _g = self.lock.lock();
        // SAFETY: as in `read32`.
        unsafe {
            x86_64::instructions::port::Port::<u32>::new(0xcf8).write(port_address(at, offset));
            x86_64::instructions::port::Port::<u32>::new(0xcfc).write(value);
        }
    }
}

/// ECAM over segment 0's window; buses are usable once [`open_bus`](ConfigAccess::open_bus)
/// mapped them.
struct Ecam {
    window: EcamWindow,
    /// One bit per bus: mapped.
    mapped: [AtomicU64; 4],
}

impl Ecam {
    fn is_mapped(&self, bus: u8) -> bool {
        self.mapped[usize::from(bus / 64)].load(Ordering::Acquire) & (1 << (bus % 64)) != 0
    }

    /// The register's address, if its bus is mapped.
    fn register(&self, at: Address, offset: u16) -> Option<*mut u32> {
        if offset >= 4096 || !offset.is_multiple_of(4) || !self.is_mapped(at.bus) {
            return None;
        }
        let rel = u64::from(at.bus - self.window.start_bus) << 20
            | u64::from(at.device) << 15
            | u64::from(at.function) << 12
            | u64::from(offset);
        Some((self.window.base + rel) as *mut u32)
    }

    fn map_bus(&self, bus: u8, ctx: &dyn BindContext) -> Result<(), String> {
        if bus < self.window.start_bus || bus > self.window.end_bus {
            return Err(format!(
                "bus {bus:#04x} outside the ECAM window's buses {:02x}-{:02x}",
                self.window.start_bus, self.window.end_bus
            ));
        }
        if self.is_mapped(bus) {
            return Ok(());
        }
        let phys = self.window.base + (u64::from(bus - self.window.start_bus) << 20);
        match ctx.map_mmio(phys, 1 << 20) {
            Some(v) if v == phys => {
                self.mapped[usize::from(bus / 64)].fetch_or(1 << (bus % 64), Ordering::AcqRel);
                Ok(())
            }
            _ => Err(format!(
                "cannot map bus {bus:#04x}'s ECAM window at {phys:#x}"
            )),
        }
    }
}

impl ConfigAccess for Ecam {
    fn name(&self) -> &'static str {
        "ECAM"
    }

    fn space_len(&self) -> u16 {
        4096
    }

    fn open_bus(&self, bus: u8, ctx: &dyn BindContext) -> Result<(), String> {
        self.map_bus(bus, ctx)
    }

    fn read32(&self, at: Address, offset: u16) -> u32 {
        match self.register(at, offset) {
            // SAFETY: the register lies in a bus window `map_bus` mapped 1:1 uncached (the
            // offset is checked against the function's 4 KiB); configuration space is device
            // memory, not Rust memory, and a single aligned 32-bit access needs no lock.
            Some(p) => unsafe { p.read_volatile() },
            None => 0xffff_ffff,
        }
    }

    fn write32(&self, at: Address, offset: u16, value: u32) {
        if let Some(p) = self.register(at, offset) {
            // SAFETY: as in `read32`.
            unsafe { p.write_volatile(value) }
        }
    }
}

/// The configuration access PCI uses: ECAM if the MCFG described it and it answers like the
/// ports do for the first bus's host bridge, else the ports. Decided (and said) when
/// enumeration opens the first bus, since mapping the window needs the device model's context.
pub struct BoardConfig {
    ports: Ports,
    ecam: Option<Ecam>,
    use_ecam: Once<bool>,
}

impl core::fmt::Debug for BoardConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoardConfig")
            .field("ecam", &self.ecam.as_ref().map(|e| e.window))
            .field("use_ecam", &self.use_ecam.get())
            .finish_non_exhaustive()
    }
}

impl Default for BoardConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BoardConfig {
    /// Ports always; ECAM if early boot found an MCFG window.
    pub fn new() -> Self {
        BoardConfig {
            ports: Ports {
                lock: SpinLock::new(()),
            },
            ecam: ECAM.get().map(|&window| Ecam {
                window,
                mapped: [const { AtomicU64::new(0) }; 4],
            }),
            use_ecam: Once::new(),
        }
    }

    fn decide(&self, ctx: &dyn BindContext) -> bool {
        let mut w = ConsoleWriter;
        let Some(ecam) = &self.ecam else {
            return false;
        };
        let host = Address {
            bus: ecam.window.start_bus,
            device: 0,
            function: 0,
        };
        if let Err(e) = ecam.map_bus(host.bus, ctx) {
            let _ = writeln!(w, "rhea: pci: {e}; using configuration ports");
            return false;
        }
        let (via_ecam, via_ports) = (ecam.read32(host, 0), self.ports.read32(host, 0));
        if via_ecam != via_ports {
            let _ = writeln!(
                w,
                "rhea: pci: ECAM reads {via_ecam:#010x} at {host} where the ports read {via_ports:#010x} (window not enabled); using configuration ports"
            );
            return false;
        }
        true
    }

    fn ecam(&self) -> Option<&Ecam> {
        match self.use_ecam.get() {
            Some(true) => self.ecam.as_ref(),
            _ => None,
        }
    }
}

impl ConfigAccess for BoardConfig {
    fn name(&self) -> &'static str {
        match self.ecam() {
            Some(e) => e.name(),
            None => self.ports.name(),
        }
    }

    fn space_len(&self) -> u16 {
        match self.ecam() {
            Some(e) => e.space_len(),
            None => self.ports.space_len(),
        }
    }

    fn open_bus(&self, bus: u8, ctx: &dyn BindContext) -> Result<(), String> {
        let use_ecam = *self.use_ecam.call_once(|| self.decide(ctx));
        match (&self.ecam, use_ecam) {
            (Some(e), true) => e.map_bus(bus, ctx),
            _ => Ok(()),
        }
    }

    fn read32(&self, at: Address, offset: u16) -> u32 {
        match self.ecam() {
            Some(e) => e.read32(at, offset),
            None => self.ports.read32(at, offset),
        }
    }

    fn write32(&self, at: Address, offset: u16, value: u32) {
        match self.ecam() {
            Some(e) => e.write32(at, offset, value),
            None => self.ports.write32(at, offset, value),
        }
    }
}
