//! The CPU's random-number register: `RNDR` (FEAT_RNG, Armv8.5), where the CPU has it.
//!
//! `aarch64-cpu` does not name the register, so it is read by its encoding
//! (`S3_3_C2_C4_0`) here, the one place that does.

use aarch64_cpu::registers::{ID_AA64ISAR0_EL1, Readable};

/// The register's name when this CPU has it (`ID_AA64ISAR0_EL1.RNDR`, bits 63:60, nonzero).
pub(crate) fn cpu_rng() -> Option<&'static str> {
    (ID_AA64ISAR0_EL1.get() >> 60 != 0).then_some("RNDR")
}

/// One read of `RNDR`: `None` when it reports failure (NZCV = 0b0100).
fn rndr() -> Option<u64> {
    let v: u64;
    let nzcv: u64;
    // SAFETY: reads a register that exists (checked by the caller through `cpu_rng`) and
    // the condition flags; touches no memory.
    unsafe {
        core::arch::asm!(
            "mrs {v}, s3_3_c2_c4_0",
            "mrs {f}, nzcv",
            v = out(reg) v,
            f = out(reg) nzcv,
            options(nomem, nostack),
        );
    }
    // Z (bit 30) set: the entropy source could not produce a number in time.
    (nzcv & (1 << 30) == 0).then_some(v)
}

/// Fills `buf` from `RNDR`; `false` when the CPU has none or it kept failing.
pub(crate) fn cpu_rng_fill(buf: &mut [u8]) -> bool {
    if cpu_rng().is_none() {
        return false;
    }
    for chunk in buf.chunks_mut(8) {
        let Some(v) = (0..10).find_map(|_| rndr()) else {
            return false;
        };
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    true
}
