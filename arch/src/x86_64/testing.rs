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

/// Executes `ud2`, the architecturally undefined instruction: an invalid-opcode exception
/// (#UD), which the fault handler reports. Never returns.
#[inline(never)]
pub fn undefined_instruction() -> ! {
    // SAFETY: UD2 raises #UD, which the fault handler reports; it never returns here.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Loads `v + i` into the low half of xmm_i (i = 0..16), spins `spins` iterations touching no
/// memory, and checks every register still holds its value: whether all 16 survived. One asm
/// block, so no compiled code runs between the load and the check (under LinuxU the kernel's
/// own code is not soft-float and may use these registers); only the kernel's interrupt and
/// switch paths could disturb them.
#[inline(never)]
pub fn simd_load_spin_check(v: u64, spins: u64) -> bool {
    let sum: u64;
    // SAFETY: writes only SIMD registers (declared clobbered) and general registers given to
    // the asm; no memory is touched.
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}", "inc {v}", "movq xmm1, {v}", "inc {v}", "movq xmm2, {v}", "inc {v}", "movq xmm3, {v}", "inc {v}",
            "movq xmm4, {v}", "inc {v}", "movq xmm5, {v}", "inc {v}", "movq xmm6, {v}", "inc {v}", "movq xmm7, {v}", "inc {v}",
            "movq xmm8, {v}", "inc {v}", "movq xmm9, {v}", "inc {v}", "movq xmm10, {v}", "inc {v}", "movq xmm11, {v}", "inc {v}",
            "movq xmm12, {v}", "inc {v}", "movq xmm13, {v}", "inc {v}", "movq xmm14, {v}", "inc {v}", "movq xmm15, {v}",
            "2:",
            "dec {n}",
            "jnz 2b",
            "xor {v:e}, {v:e}",
            "movq {t}, xmm0", "add {v}, {t}", "movq {t}, xmm1", "add {v}, {t}", "movq {t}, xmm2", "add {v}, {t}", "movq {t}, xmm3", "add {v}, {t}",
            "movq {t}, xmm4", "add {v}, {t}", "movq {t}, xmm5", "add {v}, {t}", "movq {t}, xmm6", "add {v}, {t}", "movq {t}, xmm7", "add {v}, {t}",
            "movq {t}, xmm8", "add {v}, {t}", "movq {t}, xmm9", "add {v}, {t}", "movq {t}, xmm10", "add {v}, {t}", "movq {t}, xmm11", "add {v}, {t}",
            "movq {t}, xmm12", "add {v}, {t}", "movq {t}, xmm13", "add {v}, {t}", "movq {t}, xmm14", "add {v}, {t}", "movq {t}, xmm15", "add {v}, {t}",
            v = inout(reg) v => sum,
            n = inout(reg) spins.max(1) => _,
            t = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nomem, nostack),
        );
    }
    sum.wrapping_sub((0..16).sum::<u64>()) == v.wrapping_mul(16)
}
