//! Thread context switch with the FP/SIMD state (AAPCS64 §6.1.1: x19–x29, x30 and SP are
//! callee-saved; of the vector registers only the low 64 bits of v8–v15).
//!
//! A switch saves x19–x30, all 32 128-bit vector registers and `FPCR`/`FPSR` on the outgoing
//! thread's own stack, stores its stack pointer, loads the incoming one and restores the same.
//! The ABI would allow saving only d8–d15, but a thread preempted by an interrupt reaches the
//! switch through compiled code that may already have used the other vector registers: its
//! interrupt frame (`trap.rs`) holds the interrupted values of all of them, and saving all of
//! them here too keeps each thread's vector state whole however it got here, for 528 bytes of
//! stores. A thread preempted by an interrupt has that frame on its stack below this one, so
//! nothing per thread lives outside its stack but the saved stack pointer.
//!
//! FP/SIMD is enabled (`CPACR_EL1.FPEN`) by the entry code before any Rust code runs, since
//! compiled code for `aarch64-unknown-none` uses these registers anywhere; there is no lazy
//! switching.

use core::fmt;

/// Bytes of the switch frame: x19–x30 (96), q0–q31 (512), FPCR and FPSR (16).
const SWITCH_FRAME_BYTES: usize = 96 + 512 + 16;
/// Offset of q0 in the switch frame.
const Q_OFFSET: usize = 96;

/// Why the FPU could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum FpuError {
    /// `ID_AA64PFR0_EL1` says the CPU has no floating point or no Advanced SIMD.
    NoFpSimd,
}

/// How vector state is switched, for the boot report.
#[derive(Clone, Copy, Debug)]
pub struct FpuMode {
    /// Bytes of FP/SIMD state saved per switch (and per interrupt).
    pub area_bytes: u32,
}

impl fmt::Display for FpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "q0-q31, fpcr, fpsr ({} bytes per switch and per interrupt, eager)",
            self.area_bytes
        )
    }
}

/// Checks that the CPU has FP and Advanced SIMD (the entry code enabled them; compiled code
/// already relies on them). Call on every CPU before its first context switch.
pub fn init_fpu() -> Result<FpuMode, FpuError> {
    use aarch64_cpu::registers::{ID_AA64PFR0_EL1, Readable};
    // ID_AA64PFR0_EL1.FP and .AdvSIMD: 0b1111 means not implemented (Arm ARM D17.2.64).
    let pfr0 = ID_AA64PFR0_EL1.get();
    let (fp, simd) = ((pfr0 >> 16) & 0xf, (pfr0 >> 20) & 0xf);
    if fp == 0xf || simd == 0xf {
        return Err(FpuError::NoFpSimd);
    }
    Ok(FpuMode {
        area_bytes: (SWITCH_FRAME_BYTES - Q_OFFSET) as u32,
    })
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_switch, "ax"
    .balign 16
    .global rhea_context_switch
    /* rhea_context_switch(from_sp: *mut usize [x0], to_sp: usize [x1]) */
rhea_context_switch:
    sub sp, sp, #{frame}
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    add x9, sp, #{q}
    "#,
    vector_state_asm!(save, "x9", "x10", "x11", "x12"),
    r#"    mov x9, sp
    str x9, [x0]

    mov sp, x1
    add x9, sp, #{q}
    "#,
    vector_state_asm!(restore, "x9", "x10", "x11", "x12"),
    r#"    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    add sp, sp, #{frame}
    ret

    .global rhea_thread_trampoline
    /* First code of every thread: the initial frame left the entry in x19 and its argument in
     * x20; x29 = 0 ends backtraces. */
rhea_thread_trampoline:
    mov x0, x20
    mov x29, #0
    blr x19
    brk #1
    "#,
    frame = const SWITCH_FRAME_BYTES,
    q = const Q_OFFSET,
);

unsafe extern "C" {
    fn rhea_context_switch(from_sp: *mut usize, to_sp: usize);
    fn rhea_thread_trampoline();
}

/// Saves the running context, storing its stack pointer into `*from_sp`, and resumes the one
/// saved at `to_sp`. Returns when some later switch resumes the saved context.
///
/// # Safety
/// 1. IRQs are masked (a switch is not reentrant on one CPU).
/// 2. `from_sp` is valid for writes and belongs to the running thread.
/// 3. `to_sp` was stored by a previous switch or built by [`init_stack`], and that context is
///    not running anywhere.
pub unsafe fn switch(from_sp: *mut usize, to_sp: usize) {
    // SAFETY: conditions 1–3 are the caller's; the assembly keeps the AAPCS64 contract
    // (callee-saved registers restored, SP balanced on return).
    unsafe { rhea_context_switch(from_sp, to_sp) }
}

/// Builds the initial context of a thread on the stack ending at `top` so that switching to it
/// calls `entry(arg)` with zeroed vector registers and default `FPCR` (round to nearest, no
/// traps). Returns its saved stack pointer.
///
/// # Safety
/// `[top - 4096, top)` is mapped, writable, and unused.
pub unsafe fn init_stack(top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> usize {
    let top = top & !15;
    let frame = top - 16 - SWITCH_FRAME_BYTES as u64;
    // SAFETY: `[frame, top)` is 640 bytes inside the 4 KiB below `top` the caller vouches for.
    unsafe {
        core::ptr::write_bytes(frame as *mut u8, 0, SWITCH_FRAME_BYTES + 16);
        let words = frame as *mut u64;
        words.add(0).write(entry as usize as u64); // x19: the entry
        words.add(1).write(arg as u64); // x20: its argument
        words.add(10).write(0); // x29: ends backtraces
        words
            .add(11)
            .write(rhea_thread_trampoline as *const () as u64); // x30: where the switch returns
    }
    frame as usize
}
