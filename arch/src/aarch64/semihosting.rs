//! Arm semihosting (Arm IHI 0093 "Semihosting for AArch32 and AArch64"): the debugger- or
//! emulator-provided calls a test run ends with. On AArch64 a call is `hlt #0xf000` with the
//! operation in `w0` and a parameter block's address in `x1`.
//!
//! Without a debugger or an emulator that implements it (QEMU without `-semihosting-config`),
//! `hlt` is an undefined instruction. So before relying on it the board probes once with a
//! harmless call ([`probe`]): the exception that the probe's `hlt` raises where semihosting is
//! absent is recognised by its address and skipped (`trap.rs`), and the answer is remembered.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// `SYS_ERRNO`: returns the host's errno; has no effect. The probe.
const SYS_ERRNO: u64 = 0x13;
/// `SYS_EXIT_EXTENDED`: ends the run with a reason and a subcode (the exit status).
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// `ADP_Stopped_ApplicationExit`: "the application exited", with the subcode as its status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Set while the probe runs, so only its `hlt` is ever skipped.
static PROBING: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// The probe's `hlt` instruction, defined below.
    static rhea_semihosting_probe_insn: u8;
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_semihosting, "ax"
    .balign 4
    .global rhea_semihosting_probe
    /* u64 rhea_semihosting_probe(u64 op [x0], u64 arg [x1]): the call as is. If the hlt is
     * undefined, the exception handler skips it and x0 comes back unchanged. */
rhea_semihosting_probe:
    .global rhea_semihosting_probe_insn
rhea_semihosting_probe_insn:
    hlt #0xf000
    ret
    "#
);

unsafe extern "C" {
    fn rhea_semihosting_probe(op: u64, arg: u64) -> u64;
}

/// Whether an undefined-instruction exception at `pc` is the probe's (and should be skipped).
pub(super) fn is_probe_fault(pc: u64, ec: u8) -> bool {
    if ec != 0 || !PROBING.load(Ordering::Relaxed) {
        return false;
    }
    if pc == core::ptr::addr_of!(rhea_semihosting_probe_insn) as u64 {
        STATE.store(ABSENT, Ordering::Relaxed);
        return true;
    }
    false
}

/// Finds out, once, whether semihosting calls are served (the fault handler must be able to
/// return from the probe: call after the exception vectors are installed).
pub fn probe() -> bool {
    if STATE.load(Ordering::Relaxed) == UNKNOWN {
        PROBING.store(true, Ordering::Relaxed);
        // SAFETY: SYS_ERRNO takes no parameter block and changes nothing; if `hlt` is undefined
        // the exception handler skips exactly this instruction (`is_probe_fault`).
        let _ = unsafe { rhea_semihosting_probe(SYS_ERRNO, 0) };
        PROBING.store(false, Ordering::Relaxed);
        if STATE.load(Ordering::Relaxed) == UNKNOWN {
            STATE.store(PRESENT, Ordering::Relaxed);
        }
    }
    STATE.load(Ordering::Relaxed) == PRESENT
}

/// Whether [`probe`] found semihosting.
pub fn is_present() -> bool {
    STATE.load(Ordering::Relaxed) == PRESENT
}

/// Ends the run with exit status `code` through `SYS_EXIT_EXTENDED` (QEMU exits with `code`).
/// Returns only if semihosting is absent.
pub fn exit(code: u32) {
    if !is_present() {
        return;
    }
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: semihosting is present (probed), so `hlt #0xf000` is a semihosting call; the
    // parameter block lives on this stack for the duration of the call; the call does not
    // return when the host honours it.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT_EXTENDED => _,
            in("x1") block.as_ptr(),
            options(nostack)
        )
    };
}
