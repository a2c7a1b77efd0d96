//! Fault triggers and register probes for the test apps: what safe Rust cannot do by itself.

/// Executes `udiv` by zero. AArch64 integer division does not trap: Arm defines the quotient
/// as 0 (Arm ARM C6.2 `UDIV`), so this returns 0 and raises nothing. The divide-error test is
/// x86-only; this exists so the same apps compile everywhere.
#[inline(never)]
pub fn divide_by_zero() -> u64 {
    let quotient: u64;
    // SAFETY: UDIV has no side effects; a zero divisor gives 0.
    unsafe {
        core::arch::asm!(
            "udiv {q}, {n}, {d}",
            q = out(reg) quotient,
            n = in(reg) 1u64,
            d = in(reg) core::hint::black_box(0u64),
            options(nomem, nostack, pure),
        );
    }
    quotient
}

/// Executes a permanently undefined instruction (`udf #0`, Arm ARM C6.2): an "unknown reason"
/// synchronous exception (EC 0x00), which the fault handler reports. Never returns.
#[inline(never)]
pub fn undefined_instruction() -> ! {
    // SAFETY: UDF raises an exception that the fault handler reports; it never returns here.
    unsafe { core::arch::asm!("udf #0", options(noreturn, nomem, nostack)) }
}

/// Loads `v + i` into both halves of every vector register v_i (i = 0..32), spins `spins`
/// iterations touching no memory, and checks every register still holds its value: whether
/// all 32 survived. One asm block, so no compiled code runs between the load and the check;
/// only the kernel (its interrupt entry and context switch) could disturb them.
#[inline(never)]
pub fn simd_load_spin_check(v: u64, spins: u64) -> bool {
    let sum: u64;
    // SAFETY: writes only vector registers (declared clobbered) and general registers given to
    // the asm; no memory is touched.
    unsafe {
        core::arch::asm!(
            "dup v0.2d, {v}", "add {v}, {v}, #1",
            "dup v1.2d, {v}", "add {v}, {v}, #1",
            "dup v2.2d, {v}", "add {v}, {v}, #1",
            "dup v3.2d, {v}", "add {v}, {v}, #1",
            "dup v4.2d, {v}", "add {v}, {v}, #1",
            "dup v5.2d, {v}", "add {v}, {v}, #1",
            "dup v6.2d, {v}", "add {v}, {v}, #1",
            "dup v7.2d, {v}", "add {v}, {v}, #1",
            "dup v8.2d, {v}", "add {v}, {v}, #1",
            "dup v9.2d, {v}", "add {v}, {v}, #1",
            "dup v10.2d, {v}", "add {v}, {v}, #1",
            "dup v11.2d, {v}", "add {v}, {v}, #1",
            "dup v12.2d, {v}", "add {v}, {v}, #1",
            "dup v13.2d, {v}", "add {v}, {v}, #1",
            "dup v14.2d, {v}", "add {v}, {v}, #1",
            "dup v15.2d, {v}", "add {v}, {v}, #1",
            "dup v16.2d, {v}", "add {v}, {v}, #1",
            "dup v17.2d, {v}", "add {v}, {v}, #1",
            "dup v18.2d, {v}", "add {v}, {v}, #1",
            "dup v19.2d, {v}", "add {v}, {v}, #1",
            "dup v20.2d, {v}", "add {v}, {v}, #1",
            "dup v21.2d, {v}", "add {v}, {v}, #1",
            "dup v22.2d, {v}", "add {v}, {v}, #1",
            "dup v23.2d, {v}", "add {v}, {v}, #1",
            "dup v24.2d, {v}", "add {v}, {v}, #1",
            "dup v25.2d, {v}", "add {v}, {v}, #1",
            "dup v26.2d, {v}", "add {v}, {v}, #1",
            "dup v27.2d, {v}", "add {v}, {v}, #1",
            "dup v28.2d, {v}", "add {v}, {v}, #1",
            "dup v29.2d, {v}", "add {v}, {v}, #1",
            "dup v30.2d, {v}", "add {v}, {v}, #1",
            "dup v31.2d, {v}", "add {v}, {v}, #1",
            "2:",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            "mov {s}, #0",
            "mov {t}, v0.d[0]", "add {s}, {s}, {t}", "mov {t}, v0.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v1.d[0]", "add {s}, {s}, {t}", "mov {t}, v1.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v2.d[0]", "add {s}, {s}, {t}", "mov {t}, v2.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v3.d[0]", "add {s}, {s}, {t}", "mov {t}, v3.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v4.d[0]", "add {s}, {s}, {t}", "mov {t}, v4.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v5.d[0]", "add {s}, {s}, {t}", "mov {t}, v5.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v6.d[0]", "add {s}, {s}, {t}", "mov {t}, v6.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v7.d[0]", "add {s}, {s}, {t}", "mov {t}, v7.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v8.d[0]", "add {s}, {s}, {t}", "mov {t}, v8.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v9.d[0]", "add {s}, {s}, {t}", "mov {t}, v9.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v10.d[0]", "add {s}, {s}, {t}", "mov {t}, v10.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v11.d[0]", "add {s}, {s}, {t}", "mov {t}, v11.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v12.d[0]", "add {s}, {s}, {t}", "mov {t}, v12.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v13.d[0]", "add {s}, {s}, {t}", "mov {t}, v13.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v14.d[0]", "add {s}, {s}, {t}", "mov {t}, v14.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v15.d[0]", "add {s}, {s}, {t}", "mov {t}, v15.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v16.d[0]", "add {s}, {s}, {t}", "mov {t}, v16.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v17.d[0]", "add {s}, {s}, {t}", "mov {t}, v17.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v18.d[0]", "add {s}, {s}, {t}", "mov {t}, v18.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v19.d[0]", "add {s}, {s}, {t}", "mov {t}, v19.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v20.d[0]", "add {s}, {s}, {t}", "mov {t}, v20.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v21.d[0]", "add {s}, {s}, {t}", "mov {t}, v21.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v22.d[0]", "add {s}, {s}, {t}", "mov {t}, v22.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v23.d[0]", "add {s}, {s}, {t}", "mov {t}, v23.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v24.d[0]", "add {s}, {s}, {t}", "mov {t}, v24.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v25.d[0]", "add {s}, {s}, {t}", "mov {t}, v25.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v26.d[0]", "add {s}, {s}, {t}", "mov {t}, v26.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v27.d[0]", "add {s}, {s}, {t}", "mov {t}, v27.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v28.d[0]", "add {s}, {s}, {t}", "mov {t}, v28.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v29.d[0]", "add {s}, {s}, {t}", "mov {t}, v29.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v30.d[0]", "add {s}, {s}, {t}", "mov {t}, v30.d[1]", "add {s}, {s}, {t}",
            "mov {t}, v31.d[0]", "add {s}, {s}, {t}", "mov {t}, v31.d[1]", "add {s}, {s}, {t}",
            v = inout(reg) v => _,
            n = inout(reg) spins.max(1) => _,
            s = out(reg) sum,
            t = out(reg) _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nomem, nostack),
        );
    }
    // Each register holds v + i in both halves.
    let expected = (0..32u64).fold(0u64, |acc, i| {
        acc.wrapping_add(v.wrapping_add(i).wrapping_mul(2))
    });
    sum == expected
}
