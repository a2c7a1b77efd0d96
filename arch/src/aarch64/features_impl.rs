//! The CPU feature report printed at boot, from the ID registers (Arm ARM D17.2) and the
//! counter frequency.
//!
//! These are the facts later layers branch on: the counter frequency is the clock's rate,
//! the GIC system-register interface tells whether a GICv3 CPU interface exists, the physical
//! address size bounds the memory map, LSE atomics change how locks compile on SMP.

use aarch64_cpu::registers::{
    CNTFRQ_EL0, ID_AA64ISAR0_EL1, ID_AA64MMFR0_EL1, ID_AA64PFR0_EL1, MIDR_EL1, Readable,
};
use core::fmt;

/// What this CPU offers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    /// `MIDR_EL1`.
    pub midr: u64,
    /// The implementer's name (from `MIDR_EL1.Implementer`).
    pub implementer: &'static str,
    /// The part's name, when known (from `MIDR_EL1.PartNum`).
    pub part: Option<&'static str>,
    /// `CNTFRQ_EL0`: the generic counter's frequency as firmware set it, Hz.
    pub counter_hz: u64,
    /// `ID_AA64PFR0_EL1.GIC != 0`: a GICv3/v4 CPU interface reachable by system registers.
    pub gic_sysregs: bool,
    /// Physical address bits (`ID_AA64MMFR0_EL1.PARange`).
    pub pa_bits: u8,
    /// Large System Extensions atomics (`ID_AA64ISAR0_EL1.Atomic`).
    pub lse: bool,
    /// Exception level the kernel runs at.
    pub el: u8,
    /// Exception level the loader entered it at (2: it dropped to EL1 itself).
    pub entry_el: u8,
}

fn implementer(code: u64) -> &'static str {
    match code {
        0x41 => "Arm",
        0x42 => "Broadcom",
        0x43 => "Cavium",
        0x46 => "Fujitsu",
        0x48 => "HiSilicon",
        0x4e => "NVIDIA",
        0x50 => "APM",
        0x51 => "Qualcomm",
        0x61 => "Apple",
        0xc0 => "Ampere",
        0x00 => "software (no implementer)",
        _ => "unknown implementer",
    }
}

fn arm_part(part: u64) -> Option<&'static str> {
    Some(match part {
        0xd03 => "Cortex-A53",
        0xd04 => "Cortex-A35",
        0xd05 => "Cortex-A55",
        0xd07 => "Cortex-A57",
        0xd08 => "Cortex-A72",
        0xd09 => "Cortex-A73",
        0xd0a => "Cortex-A75",
        0xd0b => "Cortex-A76",
        0xd0c => "Neoverse-N1",
        0xd0d => "Cortex-A77",
        0xd40 => "Neoverse-V1",
        0xd41 => "Cortex-A78",
        0xd44 => "Cortex-X1",
        0xd46 => "Cortex-A510",
        0xd47 => "Cortex-A710",
        0xd49 => "Neoverse-N2",
        0xd4f => "Neoverse-V2",
        _ => return None,
    })
}

/// Reads the features of the CPU this runs on.
pub fn report() -> Features {
    let midr = MIDR_EL1.get();
    let imp = (midr >> 24) & 0xff;
    let part = (midr >> 4) & 0xfff;
    let pa_bits = match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    };
    Features {
        midr,
        implementer: implementer(imp),
        part: if imp == 0x41 { arm_part(part) } else { None },
        counter_hz: CNTFRQ_EL0.get(),
        // ID_AA64PFR0_EL1.GIC is bits 27:24, ID_AA64ISAR0_EL1.Atomic bits 23:20.
        gic_sysregs: (ID_AA64PFR0_EL1.get() >> 24) & 0xf != 0,
        pa_bits,
        lse: (ID_AA64ISAR0_EL1.get() >> 20) & 0xf >= 2,
        el: super::current_el(),
        entry_el: super::boot::entry_el(),
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "{} {}",
            self.implementer,
            self.part.unwrap_or("(unknown part)")
        )?;
        write!(
            f,
            " r{}p{} (MIDR {:#010x}) EL{} (entered at EL{}) counter={} kHz gic-sysregs={} pa-bits={} lse={}",
            (self.midr >> 20) & 0xf,
            self.midr & 0xf,
            self.midr,
            self.el,
            self.entry_el,
            self.counter_hz / 1000,
            yn(self.gic_sysregs),
            self.pa_bits,
            yn(self.lse),
        )
    }
}
