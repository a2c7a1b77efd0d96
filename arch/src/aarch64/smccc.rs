//! The SMC Calling Convention (Arm DEN0028, "SMCCC"): calls to firmware or a hypervisor through
//! `hvc #0` or `smc #0` (the conduit the devicetree's `/psci` node names), function ID in `w0`,
//! arguments in `x1`..`x3`, results in `x0`..`x3`. PSCI (DEN0022) is one service on it; this
//! module also asks which hypervisor, if any, answers it.
//!
//! Discovery follows DEN0028 §7 (and Linux's `psci_init_smccc`): PSCI 1.0 or later, whose
//! `PSCI_FEATURES` says `SMCCC_VERSION` is implemented, and SMCCC 1.1 or later; only then is
//! any non-PSCI function called. QEMU's own PSCI (TCG) implements no `SMCCC_VERSION`, so there
//! the discovery stops without calling anything else. KVM implements SMCCC 1.1+ and answers the
//! vendor-specific hypervisor service's "Call UID" (function `0x8600ff01`) with its UID
//! `28b46fb6-2ec5-11e9-a9ca-4b564d003a74`, as the four words of [`KVM_UID`] (Linux
//! `include/linux/arm-smccc.h`, `ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0..3`).

/// `PSCI_VERSION` (DEN0022 §5.1.1): `major << 16 | minor`.
const PSCI_VERSION: u32 = 0x8400_0000;
/// `PSCI_FEATURES` (DEN0022 §5.1.14, PSCI 1.0+): 0 or a positive value when the function in
/// `x1` is implemented, `NOT_SUPPORTED` (-1) when it is not.
const PSCI_FEATURES: u32 = 0x8400_000a;
/// `SMCCC_VERSION` (DEN0028 §7.2, SMCCC 1.1+): `major << 16 | minor`.
const SMCCC_VERSION: u32 = 0x8000_0000;
/// "Call UID" of the vendor-specific hypervisor service (owner 6, function 0xff01; fast, SMC32).
const VENDOR_HYP_CALL_UID: u32 = 0x8600_ff01;

/// KVM's UID as the four 32-bit words "Call UID" returns in `w0`..`w3`.
pub const KVM_UID: [u32; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// Who answers the SMCCC vendor-specific hypervisor service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// No answer: SMCCC older than 1.1 (QEMU's TCG PSCI), or PSCI older than 1.0.
    Unknown,
    /// Linux KVM ([`KVM_UID`]).
    Kvm,
    /// Another hypervisor, by its UID words.
    Other([u32; 4]),
}

/// Makes an SMCCC call through `hvc #0` (or `smc #0` with `use_smc`) and returns `x0`..`x3`.
///
/// # Safety
/// The conduit exists (the devicetree's `/psci` node names it; otherwise the instruction is
/// undefined at EL1), and `function` with its arguments is a call the caller is prepared for
/// (PSCI `SYSTEM_OFF` does not return; `CPU_ON` starts another CPU at `args[1]`).
pub unsafe fn call(use_smc: bool, function: u32, args: [u64; 3]) -> [u64; 4] {
    let (mut x0, mut x1, mut x2, mut x3) = (u64::from(function), args[0], args[1], args[2]);
    // SAFETY: forwarded to the caller; the conduit clobbers x0–x17 at most (SMCCC 1.1 §2.6).
    unsafe {
        if use_smc {
            core::arch::asm!("smc #0", inout("x0") x0, inout("x1") x1, inout("x2") x2,
                inout("x3") x3, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
        } else {
            core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") x1, inout("x2") x2,
                inout("x3") x3, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
        }
    }
    [x0, x1, x2, x3]
}

/// Which hypervisor answers the conduit, by SMCCC discovery (see the module documentation).
///
/// # Safety
/// The conduit exists: the devicetree's `/psci` node names it. Every call made is a query
/// without effect.
pub unsafe fn hypervisor(use_smc: bool) -> Hypervisor {
    let query = |function: u32, arg: u64| {
        // SAFETY: the caller guarantees the conduit; every function asked only reports.
        unsafe { call(use_smc, function, [arg, 0, 0]) }
    };
    let version = |r: u64| (r as u32 as i32 > 0).then_some(r as u32);
    let psci = version(query(PSCI_VERSION, 0)[0]).unwrap_or(0);
    if psci < 0x1_0000 {
        return Hypervisor::Unknown;
    }
    // PSCI_FEATURES answers 0 or more for an implemented function, a negative error otherwise.
    if (query(PSCI_FEATURES, u64::from(SMCCC_VERSION))[0] as u32 as i32) < 0 {
        return Hypervisor::Unknown;
    }
    match version(query(SMCCC_VERSION, 0)[0]) {
        Some(v) if v >= 0x1_0001 => {}
        _ => return Hypervisor::Unknown,
    }
    let r = query(VENDOR_HYP_CALL_UID, 0);
    // NOT_SUPPORTED is -1 in w0 (0xffffffff), which no UID's first word may be (DEN0028 §6.2).
    if r[0] as u32 == u32::MAX {
        return Hypervisor::Unknown;
    }
    let words = r.map(|w| w as u32);
    if words == KVM_UID {
        Hypervisor::Kvm
    } else {
        Hypervisor::Other(words)
    }
}
