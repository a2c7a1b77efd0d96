//! The EL1 virtual timer of the Generic Timer (Arm ARM D12.8: `CNTV_CTL_EL0`, `CNTV_CVAL_EL0`)
//! and the counter frequency: the primitives the boards' one-shot timer is built from.
//!
//! The timer's output is *level*: it stays asserted while enabled, unmasked and `CNTVCT_EL0 ≥
//! CNTV_CVAL_EL0`. A one-shot use therefore disables it when it fires ([`disarm`]) or moves the
//! compare value ([`arm`]); [`has_fired`] tells a real expiry from a stale acknowledge.

use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, MPIDR_EL1, Readable, Writeable,
};

/// `CNTFRQ_EL0`: the counter's frequency as firmware programmed it (0 if it did not).
pub fn frequency_hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// Fires the virtual timer's interrupt once `CNTVCT_EL0` reaches `compare` (at once if it has).
pub fn arm(compare: u64) {
    CNTV_CVAL_EL0.set(compare);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    // SAFETY: ISB only synchronises the context (the new compare value takes effect, Arm ARM
    // D12.8.4: writes to the timer registers need one to be ordered with what follows).
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Disables the virtual timer, which drops its interrupt output.
pub fn disarm() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR);
    // SAFETY: as in `arm`.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// Whether the timer is enabled and its condition met (`ENABLE` and `ISTATUS`).
pub fn has_fired() -> bool {
    CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ENABLE) && CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS)
}

/// `MPIDR_EL1`: this CPU's affinity (Aff3 in bits 39:32, Aff2..Aff0 in 23:0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get()
}
