//! Thread context switch with full FPU/SSE/AVX state (SDM Vol. 1 ch. 13, "Managing State Using
//! the XSAVE Feature Set"; Vol. 2 FXSAVE).
//!
//! A switch saves the callee-saved registers (RBX, RBP, R12–R15; the System V ABI lets the
//! compiler assume the rest are clobbered by a call) and the extended state on the outgoing
//! thread's own stack, stores its stack pointer, loads the incoming one and restores the same
//! in reverse. A thread preempted by an interrupt also has its full trap frame below that on
//! its stack, so nothing per thread lives outside its stack but the saved stack pointer.
//!
//! Extended state: XSAVE/XRSTOR with XCR0 = x87 | SSE | AVX (as supported) when the CPU has
//! XSAVE, else FXSAVE/FXRSTOR. The area is a fixed [`FPU_AREA_BYTES`] (x87+SSE+AVX need 832;
//! `init_fpu` checks CPUID.(EAX=0DH,ECX=0):EBX against it). Rhea's own code is built soft-float,
//! so only application code using SIMD through `#[target_feature]` touches these registers;
//! saving them on every switch keeps that correct without lazy-FPU traps.

use core::sync::atomic::{AtomicBool, Ordering};

/// Bytes reserved for extended state on each switch.
pub const FPU_AREA_BYTES: usize = 1024;

/// Whether switches use XSAVE (else FXSAVE). Read by the switch assembly.
#[unsafe(no_mangle)]
static RHEA_USE_XSAVE: AtomicBool = AtomicBool::new(false);

/// Why the FPU could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum FpuError {
    /// The XSAVE area for the enabled features exceeds [`FPU_AREA_BYTES`].
    AreaTooLarge(u32),
}

/// How extended state is switched, for the boot report.
#[derive(Clone, Copy, Debug)]
pub struct FpuMode {
    /// XSAVE (true) or FXSAVE.
    pub xsave: bool,
    /// XCR0 as set (0 with FXSAVE).
    pub xcr0: u64,
    /// Bytes of state saved per switch.
    pub area_bytes: u32,
}

impl core::fmt::Display for FpuMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} ({} bytes per switch, xcr0 {:#x})",
            if self.xsave { "xsave" } else { "fxsave" },
            self.area_bytes,
            self.xcr0
        )
    }
}

/// The extended-state components switched: x87 (bit 0), SSE (bit 1), AVX (bit 2). Read by the
/// switch assembly as the XSAVE/XRSTOR request mask, so state beyond these (AVX-512, AMX) is
/// never written into the fixed-size area even where the OS enabled it (LinuxU).
#[unsafe(no_mangle)]
static RHEA_XSAVE_MASK: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0b111);

/// Enables the FPU, SSE and (when present) AVX for this CPU and chooses XSAVE or FXSAVE.
/// Call on every CPU before its first context switch.
///
/// On bare metal this programs CR0, CR4 and XCR0. As a Linux process (LinuxU) the OS has done
/// that; this only reads XCR0 and picks the mode.
pub fn init_fpu() -> Result<FpuMode, FpuError> {
    let cpuid = raw_cpuid::CpuId::new();
    let xsave = cpuid.get_feature_info().is_some_and(|f| f.has_xsave());
    #[cfg(target_os = "none")]
    enable_fpu_bare_metal(xsave, &cpuid);
    let mut mode = FpuMode {
        xsave,
        xcr0: 0,
        area_bytes: 512,
    };
    if xsave {
        let xcr0: u64;
        // SAFETY: XGETBV with ECX = 0 reads XCR0; CR4.OSXSAVE is set (above on bare metal, by
        // the OS under LinuxU), so it does not fault.
        unsafe {
            let (lo, hi): (u32, u32);
            core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack));
            xcr0 = u64::from(lo) | u64::from(hi) << 32;
        }
        let switched = xcr0 & 0b111;
        RHEA_XSAVE_MASK.store(switched as u32, Ordering::Relaxed);
        // CPUID.(EAX=0DH,ECX=0):EBX is the area size for everything enabled in XCR0, an upper
        // bound for what the mask saves; x87+SSE+AVX need 832 bytes.
        let size = if switched & 0b100 != 0 { 832 } else { 576 };
        if size > FPU_AREA_BYTES as u32 {
            return Err(FpuError::AreaTooLarge(size));
        }
        mode = FpuMode {
            xsave,
            xcr0: switched,
            area_bytes: size,
        };
    }
    // SAFETY: FNINIT resets the x87 unit to its default state; nothing depends on it yet.
    unsafe { core::arch::asm!("fninit", options(nomem, nostack)) };
    RHEA_USE_XSAVE.store(xsave, Ordering::Relaxed);
    Ok(mode)
}

/// CR0, CR4 and XCR0 for FPU, SSE and AVX use (bare metal only: they are privileged).
#[cfg(target_os = "none")]
fn enable_fpu_bare_metal(xsave: bool, cpuid: &raw_cpuid::CpuId<raw_cpuid::CpuIdReaderNative>) {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    // SAFETY: CR0.MP/EM/TS and CR4.OSFXSR/OSXMMEXCPT/OSXSAVE only change how FPU and SIMD
    // instructions behave: they become usable without traps. Kernel code does not use them.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            if xsave {
                f.insert(Cr4Flags::OSXSAVE);
            }
        });
    }
    if xsave {
        // x87 (bit 0) and SSE (bit 1) always; AVX (bit 2) when CPUID.0DH:EAX says so.
        let supported = cpuid.get_extended_state_info().map_or(0b11, |s| {
            u64::from(s.xcr0_supports_legacy_x87())
                | u64::from(s.xcr0_supports_sse_128()) << 1
                | u64::from(s.xcr0_supports_avx_256()) << 2
        });
        let xcr0 = supported & 0b111 | 0b11;
        // SAFETY: XCR0 is set to a subset of what CPUID reports as supported, including x87,
        // which the SDM requires; CR4.OSXSAVE was set above.
        unsafe {
            core::arch::asm!("xsetbv", in("ecx") 0, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nomem, nostack))
        };
    }
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_switch, "ax"
    .global rhea_context_switch
    /* rhea_context_switch(from_sp: *mut usize [rdi], to_sp: usize [rsi]) */
rhea_context_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rax
    subq ${area}+64, %rsp
    andq $-64, %rsp
    movq %rax, {area}(%rsp)
    xorl %edx, %edx
    cmpb $0, RHEA_USE_XSAVE(%rip)
    je 1f
    /* The 64-byte XSAVE header at offset 512 must be zeroed first: XSAVE updates only the
     * XSTATE_BV bits in RFBM and leaves the rest of the header as it finds it, and XRSTOR
     * faults on a header with stray bits (SDM Vol. 1 §13.7, §13.8.1); this stack memory
     * holds old data. */
    xorl %eax, %eax
    movq %rax, 512(%rsp)
    movq %rax, 520(%rsp)
    movq %rax, 528(%rsp)
    movq %rax, 536(%rsp)
    movq %rax, 544(%rsp)
    movq %rax, 552(%rsp)
    movq %rax, 560(%rsp)
    movq %rax, 568(%rsp)
    movl RHEA_XSAVE_MASK(%rip), %eax
    xsave64 (%rsp)
    jmp 2f
1:  fxsave64 (%rsp)
2:  movq %rsp, (%rdi)

    movq %rsi, %rsp
    movl RHEA_XSAVE_MASK(%rip), %eax
    xorl %edx, %edx
    cmpb $0, RHEA_USE_XSAVE(%rip)
    je 3f
    xrstor64 (%rsp)
    jmp 4f
3:  fxrstor64 (%rsp)
4:  movq {area}(%rsp), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    .global rhea_thread_trampoline
    /* First code of every thread: the initial frame left entry in RBX and its argument in
     * R12. */
rhea_thread_trampoline:
    andq $-16, %rsp
    movq %r12, %rdi
    call *%rbx
    ud2
    "#,
    area = const FPU_AREA_BYTES,
    options(att_syntax)
);

unsafe extern "C" {
    fn rhea_context_switch(from_sp: *mut usize, to_sp: usize);
    fn rhea_thread_trampoline();
}

/// Saves the running context, storing its stack pointer into `*from_sp`, and resumes the one
/// saved at `to_sp`. Returns when some later switch resumes the saved context.
///
/// # Safety
/// 1. Interrupts are disabled (a switch is not reentrant on one CPU).
/// 2. `from_sp` is valid for writes and belongs to the running thread.
/// 3. `to_sp` was stored by a previous switch or built by [`init_stack`], and that context is
///    not running anywhere.
pub unsafe fn switch(from_sp: *mut usize, to_sp: usize) {
    // SAFETY: conditions 1–3 are the caller's; the assembly keeps the System V contract
    // (callee-saved registers restored, RSP balanced on return).
    unsafe { rhea_context_switch(from_sp, to_sp) }
}

/// Builds the initial context of a thread on the stack ending at `top` so that switching to it
/// calls `entry(arg)` with a clean FPU state. Returns its saved stack pointer.
///
/// # Safety
/// `[top - 4096, top)` is mapped, writable, 16-byte aligned at `top`, and unused.
pub unsafe fn init_stack(top: u64, entry: extern "C" fn(usize) -> !, arg: usize) -> usize {
    let top = top & !15;
    // Frame, from high to low: 16 bytes of padding, the trampoline as the switch's return
    // address, the six callee-saved registers in pop order, then the FPU area below.
    let regs = top - 16 - 8 - 6 * 8;
    let area = (regs - FPU_AREA_BYTES as u64 - 64) & !63;
    let words: [(u64, u64); 8] = [
        (top - 24, rhea_thread_trampoline as *const () as u64),
        (regs, 0),                          // r15
        (regs + 8, 0),                      // r14
        (regs + 16, 0),                     // r13
        (regs + 24, arg as u64),            // r12: the argument
        (regs + 32, entry as usize as u64), // rbx: the entry
        (regs + 40, 0),                     // rbp: ends backtraces
        (area + FPU_AREA_BYTES as u64, regs),
    ];
    // SAFETY: everything written lies in `[area, top)`, within the 4 KiB below `top` the caller
    // vouches for (the frame and area take under 1.2 KiB).
    unsafe {
        core::ptr::write_bytes(area as *mut u8, 0, FPU_AREA_BYTES);
        for (addr, value) in words {
            core::ptr::write(addr as *mut u64, value);
        }
        // Legacy area: FCW = 0x037f (x87 default), MXCSR = 0x1f80 (SSE default, all masked).
        // XSTATE_BV in the header is zero, so XRSTOR puts every component in its init state.
        core::ptr::write(area as *mut u16, 0x037f);
        core::ptr::write((area + 24) as *mut u32, 0x1f80);
    }
    area as usize
}
