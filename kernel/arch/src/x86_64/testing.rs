//! Fault triggers for the fault test apps: the exceptions safe Rust cannot raise by itself.

/// Executes `div` by zero: a hardware divide error (#DE). Rust's `/` checks for zero and
/// panics instead, so the instruction is issued directly. Never inlined, so the report names it.
#[inline(never)]
pub fn divide_by_zero() -> u64 {
    let quotient: u64;
    // SAFETY: `div` with a zero divisor raises #DE, which the fault handler reports; it never
    // returns into this code. No memory is touched.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "div {divisor}",
            divisor = in(reg) core::hint::black_box(0u64),
            inout("rax") 1u64 => quotient,
            out("rdx") _,
        );
    }
    quotient
}
