//! What an Arm board learns from its devicetree, validated: RAM (minus reservations), the GIC,
//! the generic timer's interrupt, the PL011 console and its interrupt, the PSCI conduit, the
//! CPUs and how to start them, the command line, and the virtio-mmio transports
//! ([`virtio_mmio`], read when devices are bound: a bad transport is left out, not a panic).
//! Every refusal names what is wrong, for the early console.
//!
//! Bindings followed (Linux `Documentation/devicetree/bindings`): `arm,gic` and `arm,gic-v3`
//! (`interrupt-controller/`), `arm,arch_timer` (`timer/`), `arm,pl011` (`serial/`),
//! `arm,psci` (`arm/psci.yaml`), `virtio,mmio` (`virtio/mmio.yaml`), and the Devicetree
//! Specification for `memory`, `reserved-memory`, `ranges` and `interrupts`.

use crate::fdt::{Fdt, FdtError, Node, read_cells};
use core::fmt;
use rhea_hal::PhysAddr;
use rhea_hal::cmdline::{Cmdline, CmdlineError, keys};
use rhea_mm::{MemoryMap, MemoryMapError, RegionKind};

/// Which GIC, and where its register frames are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gic {
    /// GICv2 (`arm,gic-400`, `arm,cortex-a15-gic`, ...): distributor and CPU interface.
    V2 {
        distributor: MmioRange,
        cpu_interface: MmioRange,
    },
    /// GICv3 (`arm,gic-v3`): distributor and the first redistributor region.
    V3 {
        distributor: MmioRange,
        redistributors: MmioRange,
    },
}

/// A range of device registers, CPU physical addresses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// How an interrupt signals (the devicetree's `IRQ_TYPE_*` flags).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trigger {
    /// Edge (rising or falling).
    Edge,
    /// Level (high or low).
    Level,
}

/// One GIC interrupt as a device's `interrupts` property names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Interrupt {
    /// The GIC interrupt ID: 16 + n for PPI n, 32 + n for SPI n.
    pub intid: u32,
    /// How it signals.
    pub trigger: Trigger,
}

/// The console UART.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Uart {
    /// Its registers.
    pub regs: MmioRange,
    /// Its interrupt.
    pub interrupt: Interrupt,
    /// Its reference clock, when the tree gives a fixed one (for the baud-rate divisor).
    pub clock_hz: Option<u32>,
}

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PsciConduit {
    /// `hvc #0` (a hypervisor implements PSCI, e.g. QEMU at EL1).
    Hvc,
    /// `smc #0` (EL3 firmware).
    Smc,
}

/// The most RAM ranges and reservations kept.
const MAX_RANGES: usize = 24;

/// Everything the Arm boards need from the devicetree.
#[derive(Clone, Debug)]
pub struct ArmPlatform<'a> {
    /// RAM minus the reserved ranges (which appear as `Reserved` regions).
    pub memory_map: MemoryMap,
    /// The GIC.
    pub gic: Gic,
    /// The virtual timer's interrupt (the third of the timer node's four).
    pub virtual_timer: Interrupt,
    /// The timer node's `clock-frequency`, when firmware could not program `CNTFRQ_EL0`.
    pub timer_hz: Option<u32>,
    /// The first enabled PL011 (always present from [`ArmPlatform::from_fdt`]; `None` only
    /// from [`ArmPlatform::from_fdt_with`] for a board with its own console).
    pub uart: Option<Uart>,
    /// The PSCI conduit, if the tree has a PSCI node.
    pub psci: Option<PsciConduit>,
    /// `/chosen/bootargs` (empty if absent).
    pub bootargs: &'a str,
    /// `/chosen/linux,initrd-start` .. `linux,initrd-end` as (address, bytes), inside one
    /// usable region of [`ArmPlatform::memory_map`]; `None` if absent or empty.
    pub initrd: Option<(u64, u64)>,
    /// `model` of the root node, if any.
    pub model: Option<&'a str>,
    /// The CPUs of `/cpus`, in devicetree order.
    pub cpus: Cpus,
}

/// The most CPUs kept from `/cpus` (the scheduler's limit, `rhea_sched::MAX_CPUS`).
pub const MAX_CPUS: usize = 64;

/// The MPIDR affinity fields (Aff3 in bits 39:32, Aff2..Aff0 in 23:0): what a CPU node's `reg`
/// may contain (`arm/cpus.yaml`).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// How a CPU is started (`enable-method`, Linux `Documentation/arch/arm64/booting.rst` and
/// `arm/cpus.yaml`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EnableMethod {
    /// None given: only the CPU the kernel was entered on can run.
    None,
    /// PSCI `CPU_ON` through the `/psci` node's conduit.
    Psci,
    /// The CPU polls `release_addr` and jumps to the address written there.
    SpinTable {
        /// The `cpu-release-addr`.
        release_addr: u64,
    },
}

/// One enabled CPU node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cpu {
    /// Its MPIDR affinity (`reg`).
    pub mpidr: u64,
    /// How to start it.
    pub enable: EnableMethod,
}

/// The enabled CPUs of `/cpus`, at most [`MAX_CPUS`] of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cpus {
    list: [Cpu; MAX_CPUS],
    len: usize,
    listed: usize,
}

impl Cpus {
    const EMPTY: Cpu = Cpu {
        mpidr: 0,
        enable: EnableMethod::None,
    };

    /// The CPUs kept, in devicetree order.
    pub fn as_slice(&self) -> &[Cpu] {
        &self.list[..self.len]
    }

    /// How many enabled CPU nodes the devicetree lists (more than kept when above
    /// [`MAX_CPUS`]).
    pub fn listed(&self) -> usize {
        self.listed
    }

    /// The CPU with affinity `mpidr`, if listed.
    pub fn find(&self, mpidr: u64) -> Option<&Cpu> {
        let mpidr = mpidr & MPIDR_AFFINITY_MASK;
        self.as_slice().iter().find(|c| c.mpidr == mpidr)
    }

    /// The CPUs in the order Rhea numbers them: the boot CPU (affinity `boot_mpidr`) is 0 —
    /// it need not be listed — and the others follow in devicetree order.
    pub fn numbered(&self, boot_mpidr: u64) -> impl Iterator<Item = Cpu> + '_ {
        let boot_mpidr = boot_mpidr & MPIDR_AFFINITY_MASK;
        let boot = self.find(boot_mpidr).copied().unwrap_or(Cpu {
            mpidr: boot_mpidr,
            enable: EnableMethod::None,
        });
        core::iter::once(boot).chain(
            self.as_slice()
                .iter()
                .copied()
                .filter(move |c| c.mpidr != boot_mpidr),
        )
    }

    /// How many CPUs Rhea numbers ([`Cpus::numbered`]).
    pub fn count(&self, boot_mpidr: u64) -> usize {
        self.len + usize::from(self.find(boot_mpidr).is_none())
    }
}

/// The enabled CPU nodes of `/cpus` (`device_type = "cpu"`; `arm/cpus.yaml`): `reg` is the
/// MPIDR affinity (one or two cells, `#size-cells` 0), `enable-method` `psci` (the tree must
/// have a `/psci` node) or `spin-table` with a 1- or 2-cell `cpu-release-addr`. Two nodes with
/// the same `reg` are refused. More than [`MAX_CPUS`] are counted but not kept.
fn cpus<'a>(fdt: &Fdt<'a>, psci: Option<PsciConduit>) -> Result<Cpus, PlatformError<'a>> {
    let mut cpus = Cpus {
        list: [Cpus::EMPTY; MAX_CPUS],
        len: 0,
        listed: 0,
    };
    let Some(parent) = fdt.find_path("/cpus") else {
        return Ok(cpus);
    };
    for cpu in parent.children() {
        if cpu.property_str("device_type") != Some("cpu") || !cpu.is_enabled() {
            continue;
        }
        if parent.size_cells() != 0 {
            return Err(bad(
                &parent,
                "#size-cells",
                "is not 0 (CPU nodes have no size)",
            ));
        }
        let reg_len = cpu.property("reg").map_or(0, <[u8]>::len);
        if reg_len != parent.address_cells() as usize * 4 {
            return Err(bad(
                &cpu,
                "reg",
                "is missing or not one MPIDR of #address-cells (1 or 2) cells",
            ));
        }
        let (mpidr, _) = reg(&cpu, 0)?;
        if mpidr & !MPIDR_AFFINITY_MASK != 0 {
            return Err(bad(
                &cpu,
                "reg",
                "has bits outside the MPIDR affinity fields (0xff00ffffff)",
            ));
        }
        let enable = match cpu.property("enable-method") {
            None => EnableMethod::None,
            Some(_) => match cpu.property_str("enable-method") {
                Some("psci") if psci.is_some() => EnableMethod::Psci,
                Some("psci") => {
                    return Err(bad(
                        &cpu,
                        "enable-method",
                        "is \"psci\" but the devicetree has no psci node",
                    ));
                }
                Some("spin-table") => {
                    let release = cpu
                        .property("cpu-release-addr")
                        .filter(|v| v.len() == 4 || v.len() == 8)
                        .and_then(|v| read_cells(v, 0, (v.len() / 4) as u32))
                        .ok_or(bad(
                            &cpu,
                            "cpu-release-addr",
                            "is missing or not 1 or 2 cells",
                        ))?;
                    if release == 0 || !release.is_multiple_of(8) {
                        return Err(bad(&cpu, "cpu-release-addr", "is 0 or not 8-byte aligned"));
                    }
                    EnableMethod::SpinTable {
                        release_addr: release,
                    }
                }
                _ => {
                    return Err(bad(
                        &cpu,
                        "enable-method",
                        "is neither \"psci\" nor \"spin-table\"",
                    ));
                }
            },
        };
        cpus.listed += 1;
        if cpus.as_slice().iter().any(|c| c.mpidr == mpidr) {
            return Err(bad(&cpu, "reg", "repeats another CPU's MPIDR"));
        }
        if let Some(slot) = cpus.list.get_mut(cpus.len) {
            *slot = Cpu { mpidr, enable };
            cpus.len += 1;
        }
    }
    Ok(cpus)
}

/// The value of `rhea.cpus=N` on the command line (the last one): the most CPUs to use, from 1
/// to 64. `Ok(None)` when absent; the error names the argument and what is allowed.
pub fn cpus_from_cmdline(cmdline: &str) -> Result<Option<usize>, CmdlineError<'_>> {
    Ok(Cmdline::new(cmdline)
        .number(&keys::CPUS)?
        .map(|n| n as usize))
}

/// The name of a PSCI return code (DEN0022 §5.2.2, Table 6).
pub fn psci_error_name(code: i32) -> &'static str {
    match code {
        0 => "SUCCESS",
        -1 => "NOT_SUPPORTED",
        -2 => "INVALID_PARAMETERS",
        -3 => "DENIED",
        -4 => "ALREADY_ON",
        -5 => "ON_PENDING",
        -6 => "INTERNAL_FAILURE",
        -7 => "NOT_PRESENT",
        -8 => "DISABLED",
        -9 => "INVALID_ADDRESS",
        _ => "an unknown PSCI error",
    }
}

/// Why the devicetree cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlatformError<'a> {
    /// The blob itself is malformed.
    Fdt(FdtError),
    /// A node Rhea needs is absent.
    MissingNode(&'static str),
    /// A property is absent or malformed.
    BadProperty {
        node: &'a str,
        property: &'static str,
        why: &'static str,
    },
    /// The interrupt controller is not a GICv2 or GICv3.
    UnknownInterruptController { compatible: &'a str },
    /// A device's address cannot be translated to a CPU physical address.
    Untranslatable { node: &'a str },
    /// No memory node describes any RAM.
    NoUsableMemory,
    /// More RAM ranges or reservations than Rhea keeps.
    TooManyRanges,
    /// The resulting memory map was refused.
    MemoryMap(MemoryMapError),
}

impl fmt::Display for PlatformError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Fdt(e) => write!(f, "malformed devicetree: {e}"),
            Self::MissingNode(what) => write!(f, "the devicetree has no {what}"),
            Self::BadProperty {
                node,
                property,
                why,
            } => write!(f, "node '{node}': property '{property}' {why}"),
            Self::UnknownInterruptController { compatible } => write!(
                f,
                "unsupported interrupt controller '{compatible}' (Rhea drives GICv2: arm,gic-400, \
                 arm,cortex-a15-gic, and GICv3: arm,gic-v3)"
            ),
            Self::Untranslatable { node } => write!(
                f,
                "node '{node}': its address cannot be translated to a CPU address (missing \
                 or malformed 'ranges' on the way to the root)"
            ),
            Self::NoUsableMemory => f.write_str("the devicetree describes no usable RAM"),
            Self::TooManyRanges => write!(
                f,
                "more than {MAX_RANGES} RAM ranges or memory reservations"
            ),
            Self::MemoryMap(e) => write!(f, "bad memory map: {e}"),
        }
    }
}

impl From<FdtError> for PlatformError<'_> {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}

/// GICv2 compatibles (`arm,gic.yaml`).
const GIC_V2: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];
/// GICv3 compatibles (`arm,gic-v3.yaml`).
const GIC_V3: &[&str] = &["arm,gic-v3"];

/// The initial RAM disk `/chosen` names (Linux's `chosen.yaml`: `linux,initrd-start` and
/// `linux,initrd-end`, each one or two cells, end exclusive).
fn initrd<'a>(chosen: &Node<'a>, map: &MemoryMap) -> Result<Option<(u64, u64)>, PlatformError<'a>> {
    let cells = |name: &'static str| -> Result<Option<u64>, PlatformError<'a>> {
        match chosen.property(name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(read_cells(v, 0, 1)),
            Some(v) if v.len() == 8 => Ok(read_cells(v, 0, 2)),
            Some(_) => Err(bad(chosen, name, "is neither one nor two cells")),
        }
    };
    let (start, end) = match (cells("linux,initrd-start")?, cells("linux,initrd-end")?) {
        (None, None) => return Ok(None),
        (Some(s), Some(e)) => (s, e),
        _ => {
            return Err(bad(
                chosen,
                "linux,initrd-start",
                "comes without linux,initrd-end (or the other way)",
            ));
        }
    };
    if end < start {
        return Err(bad(
            chosen,
            "linux,initrd-end",
            "is below linux,initrd-start",
        ));
    }
    if end == start {
        return Ok(None);
    }
    match map.region_containing(PhysAddr(start), end - start) {
        Some(r) if r.kind == RegionKind::Usable => Ok(Some((start, end - start))),
        _ => Err(bad(
            chosen,
            "linux,initrd-start",
            "puts the initrd outside usable RAM",
        )),
    }
}

fn bad<'a>(node: &Node<'a>, property: &'static str, why: &'static str) -> PlatformError<'a> {
    PlatformError::BadProperty {
        node: node.name(),
        property,
        why,
    }
}

/// The `index`th `(address, size)` of `node`'s `reg`, in the parent's address space.
fn reg<'a>(node: &Node<'a>, index: usize) -> Result<(u64, u64), PlatformError<'a>> {
    let parent = node
        .parent()
        .ok_or(bad(node, "reg", "is on the root node"))?;
    let (ac, sc) = (parent.address_cells(), parent.size_cells());
    if !(1..=2).contains(&ac) || sc > 2 {
        return Err(bad(node, "reg", "uses more than 2 address or size cells"));
    }
    let value = node.property("reg").ok_or(bad(node, "reg", "is missing"))?;
    let entry = (ac + sc) as usize;
    if value.is_empty() || !value.len().is_multiple_of(entry * 4) {
        return Err(bad(
            node,
            "reg",
            "has a length that is not a whole number of entries",
        ));
    }
    let at = index * entry;
    let addr = read_cells(value, at, ac).ok_or(bad(node, "reg", "has too few entries"))?;
    let size = if sc == 0 {
        0
    } else {
        read_cells(value, at + ac as usize, sc).ok_or(bad(node, "reg", "has too few entries"))?
    };
    Ok((addr, size))
}

/// Translates a bus address of `node`'s children (`node` being the bus) up to the root through
/// every ancestor's `ranges` (Devicetree Specification §2.3.8).
fn translate<'a>(
    bus: &Node<'a>,
    mut addr: u64,
    device: &Node<'a>,
) -> Result<u64, PlatformError<'a>> {
    let mut child = *bus;
    // RT: bounded by the tree depth.
    while let Some(parent) = child.parent() {
        let ranges = child
            .property("ranges")
            .ok_or(PlatformError::Untranslatable {
                node: device.name(),
            })?;
        if !ranges.is_empty() {
            let (cac, pac, sc) = (
                child.address_cells(),
                parent.address_cells(),
                child.size_cells(),
            );
            if !(1..=2).contains(&cac) || !(1..=2).contains(&pac) || !(1..=2).contains(&sc) {
                return Err(PlatformError::Untranslatable {
                    node: device.name(),
                });
            }
            let entry = (cac + pac + sc) as usize;
            if !ranges.len().is_multiple_of(entry * 4) {
                return Err(bad(
                    &child,
                    "ranges",
                    "has a length that is not a whole number of entries",
                ));
            }
            let mut mapped = None;
            for i in 0..ranges.len() / (entry * 4) {
                let at = i * entry;
                let (Some(c), Some(p), Some(len)) = (
                    read_cells(ranges, at, cac),
                    read_cells(ranges, at + cac as usize, pac),
                    read_cells(ranges, at + (cac + pac) as usize, sc),
                ) else {
                    continue;
                };
                if addr >= c && addr - c < len {
                    mapped = p.checked_add(addr - c);
                    break;
                }
            }
            addr = mapped.ok_or(PlatformError::Untranslatable {
                node: device.name(),
            })?;
        }
        child = parent;
    }
    Ok(addr)
}

/// `node`'s `index`th `reg` entry as a CPU physical range.
fn mmio<'a>(node: &Node<'a>, index: usize) -> Result<MmioRange, PlatformError<'a>> {
    let (addr, len) = reg(node, index)?;
    if len == 0 {
        return Err(bad(node, "reg", "gives a zero-length register range"));
    }
    let parent = node
        .parent()
        .ok_or(bad(node, "reg", "is on the root node"))?;
    let base = translate(&parent, addr, node)?;
    if base.checked_add(len).is_none() {
        return Err(bad(node, "reg", "wraps past 2^64"));
    }
    Ok(MmioRange { base, len })
}

/// The interrupt controller `node`'s interrupts go to.
fn interrupt_parent<'a>(fdt: &Fdt<'a>, node: &Node<'a>) -> Option<Node<'a>> {
    let mut n = Some(*node);
    // RT: bounded by the tree depth.
    while let Some(cur) = n {
        if let Some(phandle) = cur.property_u32("interrupt-parent") {
            return fdt.find_phandle(phandle);
        }
        n = cur.parent();
    }
    None
}

/// The `index`th GIC interrupt of `node`'s `interrupts` property (three cells: type, number,
/// flags; `arm,gic.yaml`), for nodes the shared code does not read itself (xen-arm64: the
/// `hypervisor` node's event-channel PPI). Errors name the node and what is wrong.
pub fn node_interrupt<'a>(node: &Node<'a>, index: usize) -> Result<Interrupt, PlatformError<'a>> {
    gic_interrupt(node, index)
}

/// The `index`th GIC interrupt of `node` (three cells: type, number, flags; `arm,gic.yaml`).
fn gic_interrupt<'a>(node: &Node<'a>, index: usize) -> Result<Interrupt, PlatformError<'a>> {
    let value = node
        .property("interrupts")
        .ok_or(bad(node, "interrupts", "is missing"))?;
    if !value.len().is_multiple_of(12) {
        return Err(bad(
            node,
            "interrupts",
            "is not a list of 3-cell GIC specifiers",
        ));
    }
    let cell = |i: usize| read_cells(value, index * 3 + i, 1);
    let (Some(kind), Some(number), Some(flags)) = (cell(0), cell(1), cell(2)) else {
        return Err(bad(node, "interrupts", "has too few entries"));
    };
    let intid = match kind {
        0 if number < 988 => 32 + number as u32,
        1 if number < 16 => 16 + number as u32,
        0 | 1 => {
            return Err(bad(
                node,
                "interrupts",
                "names an interrupt number out of range",
            ));
        }
        _ => {
            return Err(bad(
                node,
                "interrupts",
                "has an interrupt type other than SPI (0) or PPI (1)",
            ));
        }
    };
    let trigger = match flags & 0xf {
        1 | 2 => Trigger::Edge,
        4 | 8 => Trigger::Level,
        // 0 (IRQ_TYPE_NONE) is common for PPIs, whose trigger is fixed: level.
        0 => Trigger::Level,
        _ => return Err(bad(node, "interrupts", "has unknown trigger flags")),
    };
    Ok(Interrupt { intid, trigger })
}

/// Appends `(start, end)` to a fixed list.
fn push_range(
    list: &mut [(u64, u64); MAX_RANGES],
    len: &mut usize,
    range: (u64, u64),
) -> Result<(), PlatformError<'static>> {
    if range.0 >= range.1 {
        return Ok(());
    }
    *list.get_mut(*len).ok_or(PlatformError::TooManyRanges)? = range;
    *len += 1;
    Ok(())
}

/// Sorts and merges overlapping or touching ranges in place; returns the new length.
fn sort_and_merge(list: &mut [(u64, u64)]) -> usize {
    list.sort_unstable();
    let mut out = 0;
    for i in 0..list.len() {
        let r = list[i];
        if out > 0 && r.0 <= list[out - 1].1 {
            list[out - 1].1 = list[out - 1].1.max(r.1);
        } else {
            list[out] = r;
            out += 1;
        }
    }
    out
}

/// Bytes of one `reg` entry of `parent`'s children: `#address-cells` + `#size-cells` cells of
/// 4 bytes. Both are firmware's numbers, so the sum is taken without overflow (two cells of
/// 0xffffffff wrapped the `u32` sum: `cargo xtask fuzz fdt`); an absurd size then matches no
/// property and `reg` refuses the cell counts by name.
fn reg_entry_bytes(parent: &Node<'_>) -> usize {
    (u64::from(parent.address_cells()) + u64::from(parent.size_cells()))
        .saturating_mul(4)
        .try_into()
        .unwrap_or(usize::MAX)
}

/// RAM from every `device_type = "memory"` node, minus the `/memreserve/` entries and the
/// `reserved-memory` children with a `reg`.
fn memory<'a>(fdt: &Fdt<'a>) -> Result<MemoryMap, PlatformError<'a>> {
    let mut ram = [(0, 0); MAX_RANGES];
    let mut n_ram = 0;
    for node in fdt.nodes() {
        if node.property_str("device_type") != Some("memory") || !node.is_enabled() {
            continue;
        }
        let parent = node
            .parent()
            .ok_or(bad(&node, "reg", "is on the root node"))?;
        let entry = reg_entry_bytes(&parent);
        let count = node.property("reg").map_or(0, |v| v.len() / entry.max(1));
        for i in 0..count {
            let (addr, size) = reg(&node, i)?;
            let end = addr
                .checked_add(size)
                .ok_or(bad(&node, "reg", "wraps past 2^64"))?;
            push_range(&mut ram, &mut n_ram, (addr, end))
                .map_err(|_| PlatformError::TooManyRanges)?;
        }
    }
    let n_ram = sort_and_merge(&mut ram[..n_ram]);
    if n_ram == 0 {
        return Err(PlatformError::NoUsableMemory);
    }
    let mut res = [(0, 0); MAX_RANGES];
    let mut n_res = 0;
    for (addr, size) in fdt.memory_reservations() {
        push_range(&mut res, &mut n_res, (addr, addr.saturating_add(size)))
            .map_err(|_| PlatformError::TooManyRanges)?;
    }
    if let Some(rm) = fdt.find_path("/reserved-memory") {
        for child in rm.children() {
            if child.property("reg").is_none() {
                continue; // dynamically placed (e.g. a CMA pool): nothing fixed to avoid
            }
            let (addr, size) = reg(&child, 0)?;
            push_range(&mut res, &mut n_res, (addr, addr.saturating_add(size)))
                .map_err(|_| PlatformError::TooManyRanges)?;
        }
    }
    let n_res = sort_and_merge(&mut res[..n_res]);

    let mut map = MemoryMap::new();
    let mut push = |start: u64, end: u64, kind| {
        if start < end {
            map.push(start, end - start, kind)
                .map_err(PlatformError::MemoryMap)
        } else {
            Ok(())
        }
    };
    for &(start, end) in &ram[..n_ram] {
        let mut at = start;
        for &(rs, re) in &res[..n_res] {
            if re <= at || rs >= end {
                continue;
            }
            push(at, rs.max(at), RegionKind::Usable)?;
            push(rs.max(at), re.min(end), RegionKind::Reserved)?;
            at = re.min(end);
        }
        push(at, end, RegionKind::Usable)?;
    }
    map.finish().map_err(|e| match e {
        MemoryMapError::NoUsableMemory => PlatformError::NoUsableMemory,
        e => PlatformError::MemoryMap(e),
    })
}

fn gic<'a>(fdt: &Fdt<'a>) -> Result<Gic, PlatformError<'a>> {
    let root = fdt.root();
    let controller = interrupt_parent(fdt, &root)
        .or_else(|| fdt.find_compatible(GIC_V3))
        .or_else(|| fdt.find_compatible(GIC_V2))
        .ok_or(PlatformError::MissingNode(
            "interrupt controller (root 'interrupt-parent')",
        ))?;
    if controller.compatible().any(|c| GIC_V3.contains(&c)) {
        Ok(Gic::V3 {
            distributor: mmio(&controller, 0)?,
            redistributors: mmio(&controller, 1)?,
        })
    } else if controller.compatible().any(|c| GIC_V2.contains(&c)) {
        Ok(Gic::V2 {
            distributor: mmio(&controller, 0)?,
            cpu_interface: mmio(&controller, 1)?,
        })
    } else {
        Err(PlatformError::UnknownInterruptController {
            compatible: controller.compatible().next().unwrap_or("(no compatible)"),
        })
    }
}

fn uart<'a>(fdt: &Fdt<'a>) -> Result<Uart, PlatformError<'a>> {
    let node = fdt
        .find_compatible(&["arm,pl011"])
        .ok_or(PlatformError::MissingNode(
            "enabled PL011 UART (compatible 'arm,pl011')",
        ))?;
    let regs = mmio(&node, 0)?;
    let interrupt = gic_interrupt(&node, 0)?;
    // A fixed clock named first in `clocks` (QEMU's 24 MHz `apb-pclk`); firmware-managed
    // clocks (the Raspberry Pi's) are left alone.
    let clock_hz = node
        .property("clocks")
        .and_then(|c| read_cells(c, 0, 1))
        .and_then(|phandle| fdt.find_phandle(phandle as u32))
        .filter(|clk| clk.compatible().any(|c| c == "fixed-clock"))
        .and_then(|clk| clk.property_u32("clock-frequency"));
    Ok(Uart {
        regs,
        interrupt,
        clock_hz,
    })
}

fn psci<'a>(fdt: &Fdt<'a>) -> Result<Option<PsciConduit>, PlatformError<'a>> {
    let Some(node) = fdt.find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]) else {
        return Ok(None);
    };
    match node.property_str("method") {
        Some("hvc") => Ok(Some(PsciConduit::Hvc)),
        Some("smc") => Ok(Some(PsciConduit::Smc)),
        _ => Err(bad(&node, "method", "is neither \"hvc\" nor \"smc\"")),
    }
}

impl<'a> ArmPlatform<'a> {
    /// Reads and checks everything Rhea needs from `fdt`, a PL011 console included.
    pub fn from_fdt(fdt: &Fdt<'a>) -> Result<Self, PlatformError<'a>> {
        Self::from_fdt_with(fdt, true)
    }

    /// [`ArmPlatform::from_fdt`], the PL011 read only when `want_uart` (a board whose console
    /// is a hypervisor's — Xen's `console_io` — needs none and ignores any).
    pub fn from_fdt_with(fdt: &Fdt<'a>, want_uart: bool) -> Result<Self, PlatformError<'a>> {
        let timer = fdt
            .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
            .ok_or(PlatformError::MissingNode(
                "generic timer (compatible 'arm,armv8-timer')",
            ))?;
        // Order (arch_timer binding): secure physical, non-secure physical, virtual,
        // hypervisor.
        let virtual_timer = gic_interrupt(&timer, 2)?;
        if !(16..32).contains(&virtual_timer.intid) {
            return Err(bad(
                &timer,
                "interrupts",
                "gives the virtual timer a non-PPI interrupt",
            ));
        }
        let psci = psci(fdt)?;
        let bootargs = match fdt.find_path("/chosen") {
            Some(chosen) if chosen.property("bootargs").is_some() => {
                chosen.property_str("bootargs").ok_or(bad(
                    &chosen,
                    "bootargs",
                    "is not a NUL-terminated UTF-8 string",
                ))?
            }
            _ => "",
        };
        let memory_map = memory(fdt)?;
        let initrd = match fdt.find_path("/chosen") {
            Some(chosen) => initrd(&chosen, &memory_map)?,
            None => None,
        };
        Ok(Self {
            memory_map,
            initrd,
            gic: gic(fdt)?,
            virtual_timer,
            timer_hz: timer.property_u32("clock-frequency"),
            uart: if want_uart { Some(uart(fdt)?) } else { None },
            psci,
            bootargs,
            model: fdt.root().property_str("model"),
            cpus: cpus(fdt, psci)?,
        })
    }
}

/// How a GIC SPI signals, as a device's `interrupts` flags give it (`arm,gic.yaml`: an SPI is
/// rising-edge or active-high level; falling edges and active-low levels need an inverter the
/// GIC does not have).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpiTrigger {
    /// `IRQ_TYPE_EDGE_RISING` (1): QEMU virt's virtio-mmio transports.
    EdgeRising,
    /// `IRQ_TYPE_LEVEL_HIGH` (4).
    LevelHigh,
}

/// One `virtio,mmio` transport of the devicetree (Linux `bindings/virtio/mmio.yaml`): a
/// register window and the SPI it raises. Whether a device sits behind it is for the registers
/// to say (QEMU virt lists 32 transports, most of them empty).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VirtioMmio<'a> {
    /// The node's name (`virtio_mmio@a000000`).
    pub node: &'a str,
    /// Its register window (registers and device configuration), a CPU physical range.
    pub regs: MmioRange,
    /// Its interrupt: an SPI's INTID (32 + n).
    pub intid: u32,
    /// How the SPI signals.
    pub trigger: SpiTrigger,
    /// Whether the device's DMA is cache-coherent with the CPUs (`dma-coherent`).
    pub dma_coherent: bool,
}

/// The smallest virtio-mmio window: the registers up to the device configuration at 0x100
/// (virtio 1.2 §4.2.2).
pub const VIRTIO_MMIO_MIN_LEN: u64 = 0x100;
/// The largest window accepted (QEMU's are 0x200 bytes; a page is the most a device uses).
pub const VIRTIO_MMIO_MAX_LEN: u64 = 0x10_0000;
/// The most virtio-mmio transports kept (QEMU virt has 32).
pub const MAX_VIRTIO_MMIO: usize = 64;

/// The enabled `virtio,mmio` nodes of a devicetree, in tree order, each checked: one `reg`
/// entry of [`VIRTIO_MMIO_MIN_LEN`]..=[`VIRTIO_MMIO_MAX_LEN`] bytes at a 4-byte-aligned,
/// translatable address not overlapping an earlier transport's; one `interrupts` entry naming
/// an SPI of a GIC (the node's interrupt parent), rising-edge or active-high level. A node that
/// fails is an `Err` naming it and what is wrong; the others are still returned.
pub fn virtio_mmio<'a>(fdt: &Fdt<'a>) -> VirtioMmioNodes<'a> {
    VirtioMmioNodes {
        fdt: *fdt,
        nodes: fdt.nodes(),
        seen: [MmioRange { base: 0, len: 0 }; MAX_VIRTIO_MMIO],
        n_seen: 0,
    }
}

/// The iterator of [`virtio_mmio`].
#[derive(Debug)]
pub struct VirtioMmioNodes<'a> {
    fdt: Fdt<'a>,
    nodes: crate::fdt::Nodes<'a>,
    /// The windows accepted so far (for the overlap check).
    seen: [MmioRange; MAX_VIRTIO_MMIO],
    n_seen: usize,
}

impl<'a> Iterator for VirtioMmioNodes<'a> {
    type Item = Result<VirtioMmio<'a>, PlatformError<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        // RT: bounded by the number of nodes.
        let node = self
            .nodes
            .by_ref()
            .find(|n| n.is_enabled() && n.compatible().any(|c| c == "virtio,mmio"))?;
        let parsed = virtio_mmio_node(&self.fdt, &node).and_then(|v| {
            let r = v.regs;
            let seen = &self.seen[..self.n_seen];
            if seen
                .iter()
                .any(|o| r.base < o.base + o.len && o.base < r.base + r.len)
            {
                return Err(bad(
                    &node,
                    "reg",
                    "overlaps an earlier virtio-mmio transport",
                ));
            }
            let slot = self.seen.get_mut(self.n_seen).ok_or(bad(
                &node,
                "compatible",
                "is one virtio-mmio transport more than the 64 Rhea keeps",
            ))?;
            *slot = r;
            self.n_seen += 1;
            Ok(v)
        });
        Some(parsed)
    }
}

/// Checks one `virtio,mmio` node (see [`virtio_mmio`]).
fn virtio_mmio_node<'a>(
    fdt: &Fdt<'a>,
    node: &Node<'a>,
) -> Result<VirtioMmio<'a>, PlatformError<'a>> {
    let parent = node
        .parent()
        .ok_or(bad(node, "reg", "is on the root node"))?;
    let entry = reg_entry_bytes(&parent);
    let reg_len = node.property("reg").map_or(0, <[u8]>::len);
    if entry != 0 && reg_len > entry {
        return Err(bad(node, "reg", "has more than one register range"));
    }
    let regs = mmio(node, 0)?;
    if !(VIRTIO_MMIO_MIN_LEN..=VIRTIO_MMIO_MAX_LEN).contains(&regs.len) {
        return Err(bad(
            node,
            "reg",
            "gives a window outside 0x100..=0x100000 bytes (the virtio-mmio registers need 0x100)",
        ));
    }
    if !regs.base.is_multiple_of(4) {
        return Err(bad(
            node,
            "reg",
            "gives a window that is not 4-byte aligned",
        ));
    }
    let gic = interrupt_parent(fdt, node).ok_or(bad(
        node,
        "interrupts",
        "has no interrupt parent (interrupt-parent missing or naming no node)",
    ))?;
    if !gic
        .compatible()
        .any(|c| GIC_V2.contains(&c) || GIC_V3.contains(&c))
    {
        return Err(bad(
            node,
            "interrupts",
            "goes to an interrupt controller that is not the GIC",
        ));
    }
    let value = node
        .property("interrupts")
        .ok_or(bad(node, "interrupts", "is missing"))?;
    if value.len() != 12 {
        return Err(bad(
            node,
            "interrupts",
            "is not exactly one 3-cell GIC specifier",
        ));
    }
    let cell = |i| read_cells(value, i, 1).unwrap_or(u64::MAX);
    let (kind, number, flags) = (cell(0), cell(1), cell(2));
    let intid = match kind {
        0 if number < 988 => 32 + number as u32,
        0 => {
            return Err(bad(
                node,
                "interrupts",
                "names an SPI number out of range (0..988)",
            ));
        }
        1 => {
            return Err(bad(
                node,
                "interrupts",
                "names a PPI (a per-CPU interrupt), not an SPI",
            ));
        }
        _ => {
            return Err(bad(
                node,
                "interrupts",
                "has an interrupt type other than SPI (0)",
            ));
        }
    };
    let trigger = match flags & 0xf {
        1 => SpiTrigger::EdgeRising,
        4 => SpiTrigger::LevelHigh,
        0 => return Err(bad(node, "interrupts", "gives no trigger type (flags 0)")),
        2 | 8 => {
            return Err(bad(
                node,
                "interrupts",
                "asks for a falling edge or an active-low level, which a GIC SPI cannot be",
            ));
        }
        _ => return Err(bad(node, "interrupts", "has unknown trigger flags")),
    };
    Ok(VirtioMmio {
        node: node.name(),
        regs,
        intid,
        trigger,
        dma_coherent: node.property("dma-coherent").is_some(),
    })
}

impl VirtioMmio<'_> {
    /// Why Rhea cannot drive this (well-formed) transport, if it cannot: its DMA is not
    /// cache-coherent (Rhea's DMA buffers are cached, Normal write-back, and the virtio drivers
    /// do no cache maintenance), or its SPI is level-triggered (the runtime's device events mask
    /// a line in the top half only for `rhea_hal::Trigger::LevelLow`, which names an
    /// active-low line; an active-high SPI has no trigger of its own there yet).
    pub fn unsupported(&self) -> Option<&'static str> {
        if !self.dma_coherent {
            return Some(
                "not dma-coherent: DMA buffers are cached memory and the driver does no cache \
                 maintenance",
            );
        }
        if self.trigger == SpiTrigger::LevelHigh {
            return Some(
                "level-triggered (active-high) SPI: device events mask only active-low lines \
                 in the top half; only rising-edge SPIs are driven",
            );
        }
        None
    }
}
