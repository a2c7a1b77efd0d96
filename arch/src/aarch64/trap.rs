//! Exception entry: the vector table, the saved frames, and the fatal-fault path (Arm ARM D1.10
//! "Exception entry", D1.10.2 "Exception vectors", D17.2.37 `ESR_EL1`).
//!
//! The kernel runs with `SPSel = 0`, so its exceptions use the "current EL with SP_EL0" quarter
//! of the table, and the CPU switches to `SP_EL1` — the exception stack — on entry:
//!
//! - **synchronous** exceptions (aborts, undefined instructions, ...) save a [`TrapFrame`] on
//!   the exception stack and go to the runtime's fault handler; they never return, except the
//!   one expected undefined instruction of the semihosting probe ([`super::semihosting`]).
//!   Because the frame is on `SP_EL1`, a stack overflow (`SP_EL0` in a guard page) is reported
//!   like any data abort, with its exact PC and `FAR`;
//! - **IRQs** switch back to `SP_EL0` (`msr spsel, #0`) and save the interrupted context — all
//!   general registers, `ELR`/`SPSR`, and all 32 vector registers with `FPCR`/`FPSR` — on the
//!   *interrupted thread's* stack, so the handler may switch threads: the frame waits on that
//!   stack until the thread is switched back in and returns through it. If that push itself
//!   overflows the stack, the data abort is taken on `SP_EL1` and reported as an overflow.
//!   The vector is the one the board's interrupt source acknowledged
//!   ([`set_interrupt_source`]);
//! - FIQ and SError, and anything arriving while already on `SP_EL1` or from a lower EL, are
//!   fatal. Those on `SP_EL1` (a fault inside a fault report) first move to a second,
//!   "nested" stack, so a damaged exception stack cannot recurse forever.
//!
//! Per CPU: `SP_EL1` (each CPU's own exception stack, set by its entry code), the nested stack
//! (`rhea_aarch64_nested_tops[cpu]`, indexed by `TPIDR_EL1`), and the scratch registers the
//! nested entry uses (`TPIDR_EL0`, `TPIDRRO_EL0`). Nothing else in this file is per CPU.
//!
//! Why all vector registers in the interrupt frame, not only the caller-saved ones: AAPCS64
//! preserves only the low 64 bits of v8–v15 across calls, and the handler's compiled code may
//! use the rest before it switches threads.

use core::fmt;
use rhea_hal::arch::Fault as _;
use spin::Once;

/// Where an exception came from: `group * 4 + type`.
mod kind {
    /// Types (the offset in a quarter of the vector table, / 0x80).
    pub(super) const SYNC: u64 = 0;
    pub(super) const IRQ: u64 = 1;
    pub(super) const FIQ: u64 = 2;
    pub(super) const SERROR: u64 = 3;
    /// Groups (quarters of the vector table).
    pub(super) const FROM_EL1T: u64 = 0;
    pub(super) const FROM_EL1H: u64 = 4;
    pub(super) const FROM_LOWER_A64: u64 = 8;
    pub(super) const FROM_LOWER_A32: u64 = 12;
}

/// Registers saved by the vector entry, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct TrapFrame {
    pub(super) x: [u64; 31],
    /// `SP_EL0` at the exception: the running thread's stack pointer.
    pub(super) sp: u64,
    pub(super) elr: u64,
    pub(super) spsr: u64,
    pub(super) esr: u64,
    pub(super) far: u64,
    pub(super) kind: u64,
    /// `SP_EL1` at the exception, for exceptions taken while already on it.
    pub(super) sp_el1: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 304);

/// Bytes of the vector-register area of an interrupt frame: q0–q31, then FPCR and FPSR.
const IRQ_FP_BYTES: usize = 32 * 16 + 16;

core::arch::global_asm!(
    r#"
    /* x2–x30 of a trap frame: `RHEA_X2_X30 stp, str` saves, `RHEA_X2_X30 ldp, ldr` loads. */
    .macro RHEA_X2_X30 pair, single
    \pair x2, x3, [sp, #16]
    \pair x4, x5, [sp, #32]
    \pair x6, x7, [sp, #48]
    \pair x8, x9, [sp, #64]
    \pair x10, x11, [sp, #80]
    \pair x12, x13, [sp, #96]
    \pair x14, x15, [sp, #112]
    \pair x16, x17, [sp, #128]
    \pair x18, x19, [sp, #144]
    \pair x20, x21, [sp, #160]
    \pair x22, x23, [sp, #176]
    \pair x24, x25, [sp, #192]
    \pair x26, x27, [sp, #208]
    \pair x28, x29, [sp, #224]
    \single x30, [sp, #240]
    .endm

    .macro RHEA_SAVE_X2_X30
    RHEA_X2_X30 stp, str
    .endm

    .macro RHEA_RESTORE_X0_X30
    ldp x0, x1, [sp, #0]
    RHEA_X2_X30 ldp, ldr
    .endm

    /* An exception taken on the exception stack (SP_EL1): frame there, kind in x0. */
    .macro RHEA_VEC_FATAL kind
    .balign 0x80
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b rhea_aarch64_trap_common
    .endm

    /* An exception that cannot trust SP_EL1 (taken on it, or from a lower EL): move to this
     * CPU's nested stack first (rhea_aarch64_nested_tops[TPIDR_EL1]), keeping the old SP_EL1
     * in TPIDR_EL0 for the report. Only x0 and SP are free until the frame exists, so SP
     * holds the table's address while x0 holds the index. */
    .macro RHEA_VEC_NESTED kind
    .balign 0x80
    msr tpidrro_el0, x0
    mov x0, sp
    msr tpidr_el0, x0
    adrp x0, rhea_aarch64_nested_tops
    add x0, x0, :lo12:rhea_aarch64_nested_tops
    mov sp, x0
    mrs x0, tpidr_el1
    add x0, sp, x0, lsl #3
    ldr x0, [x0]
    mov sp, x0
    mrs x0, tpidrro_el0
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b rhea_aarch64_trap_common
    .endm

    .section .text.rhea_vectors, "ax"
    .balign 2048
    .global rhea_aarch64_vectors
rhea_aarch64_vectors:
    /* Current EL with SP_EL0: the kernel's own exceptions. */
    RHEA_VEC_FATAL {el1t_sync}
    .balign 0x80
    msr spsel, #0
    sub sp, sp, #{irq_frame}
    stp x0, x1, [sp, #0]
    b rhea_aarch64_irq_common
    RHEA_VEC_FATAL {el1t_fiq}
    RHEA_VEC_FATAL {el1t_serror}
    /* Current EL with SP_ELx: an exception inside an exception handler. */
    RHEA_VEC_NESTED {el1h_sync}
    RHEA_VEC_NESTED {el1h_irq}
    RHEA_VEC_NESTED {el1h_fiq}
    RHEA_VEC_NESTED {el1h_serror}
    /* Lower EL, AArch64 and AArch32: Rhea runs nothing below EL1. */
    RHEA_VEC_NESTED {a64_sync}
    RHEA_VEC_NESTED {a64_irq}
    RHEA_VEC_NESTED {a64_fiq}
    RHEA_VEC_NESTED {a64_serror}
    RHEA_VEC_NESTED {a32_sync}
    RHEA_VEC_NESTED {a32_irq}
    RHEA_VEC_NESTED {a32_fiq}
    RHEA_VEC_NESTED {a32_serror}

    .section .text.rhea_trap, "ax"
    .balign 16
rhea_aarch64_trap_common:
    RHEA_SAVE_X2_X30
    mrs x1, sp_el0
    str x1, [sp, #248]
    mrs x1, elr_el1
    mrs x2, spsr_el1
    stp x1, x2, [sp, #256]
    mrs x1, esr_el1
    mrs x2, far_el1
    stp x1, x2, [sp, #272]
    mrs x1, tpidr_el0
    stp x0, x1, [sp, #288]
    mov x0, sp
    bl {trap_dispatch}
    /* Only the semihosting probe returns (from the kernel's own quarter): resume after it. */
    ldp x1, x2, [sp, #256]
    msr elr_el1, x1
    msr spsr_el1, x2
    RHEA_RESTORE_X0_X30
    add sp, sp, #{frame}
    eret

rhea_aarch64_irq_common:
    RHEA_SAVE_X2_X30
    mrs x1, elr_el1
    mrs x2, spsr_el1
    stp x1, x2, [sp, #256]
    /* A frame record {{x29, interrupted PC}} so backtraces from a handler reach the thread. */
    stp x29, x1, [sp, #288]
    add x29, sp, #288
    add x9, sp, #{frame}
    "#,
    vector_state_asm!(save, "x9", "x1", "x2", "x10"),
    r#"    bl {irq_dispatch}
    add x9, sp, #{frame}
    "#,
    vector_state_asm!(restore, "x9", "x1", "x2", "x10"),
    r#"    ldp x1, x2, [sp, #256]
    msr elr_el1, x1
    msr spsr_el1, x2
    RHEA_RESTORE_X0_X30
    add sp, sp, #{irq_frame}
    eret
    "#,
    frame = const size_of::<TrapFrame>(),
    irq_frame = const size_of::<TrapFrame>() + IRQ_FP_BYTES,
    el1t_sync = const kind::FROM_EL1T + kind::SYNC,
    el1t_fiq = const kind::FROM_EL1T + kind::FIQ,
    el1t_serror = const kind::FROM_EL1T + kind::SERROR,
    el1h_sync = const kind::FROM_EL1H + kind::SYNC,
    el1h_irq = const kind::FROM_EL1H + kind::IRQ,
    el1h_fiq = const kind::FROM_EL1H + kind::FIQ,
    el1h_serror = const kind::FROM_EL1H + kind::SERROR,
    a64_sync = const kind::FROM_LOWER_A64 + kind::SYNC,
    a64_irq = const kind::FROM_LOWER_A64 + kind::IRQ,
    a64_fiq = const kind::FROM_LOWER_A64 + kind::FIQ,
    a64_serror = const kind::FROM_LOWER_A64 + kind::SERROR,
    a32_sync = const kind::FROM_LOWER_A32 + kind::SYNC,
    a32_irq = const kind::FROM_LOWER_A32 + kind::IRQ,
    a32_fiq = const kind::FROM_LOWER_A32 + kind::FIQ,
    a32_serror = const kind::FROM_LOWER_A32 + kind::SERROR,
    trap_dispatch = sym trap_dispatch,
    irq_dispatch = sym irq_dispatch,
);

unsafe extern "C" {
    /// The vector table defined above.
    static rhea_aarch64_vectors: [u8; 2048];
}

/// Points `VBAR_EL1` at the vector table.
pub(super) fn install_vectors() {
    let base = core::ptr::addr_of!(rhea_aarch64_vectors) as u64;
    // SAFETY: the table is 2 KiB aligned, lives in the image for the whole run, and every entry
    // saves state and calls a dispatcher that either returns correctly or never returns.
    unsafe {
        core::arch::asm!("msr vbar_el1, {}", "isb", in(reg) base, options(nostack, preserves_flags))
    };
}

static HANDLER: Once<fn(&Fault<'_>) -> !> = Once::new();
static INTERRUPT: Once<fn(u8)> = Once::new();
static SOURCE: Once<fn() -> Option<u8>> = Once::new();

/// Registers where interrupt vectors go (the runtime's dispatcher). The handler runs with IRQs
/// masked on the interrupted thread's stack and may switch threads.
pub(crate) fn set_interrupt_handler(handler: fn(u8)) {
    INTERRUPT.call_once(|| handler);
}

/// Registers the board's interrupt source: called once per IRQ exception, it acknowledges the
/// highest-priority pending interrupt at the interrupt controller and returns its vector, or
/// `None` when there is nothing to handle (spurious, or a line nobody routed; the source
/// counts and completes those itself).
pub fn set_interrupt_source(source: fn() -> Option<u8>) {
    SOURCE.call_once(|| source);
}

/// Registers where fatal exceptions go. The first registration wins; call it before anything
/// can fault.
pub(crate) fn set_fault_handler(handler: fn(&Fault<'_>) -> !) {
    HANDLER.call_once(|| handler);
}

extern "C" fn irq_dispatch() {
    let vector = SOURCE.get().and_then(|source| source());
    if let (Some(v), Some(handler)) = (vector, INTERRUPT.get()) {
        handler(v);
    }
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.kind == kind::FROM_EL1T + kind::SYNC
        && super::semihosting::is_probe_fault(frame.elr, esr_ec(frame.esr))
    {
        // The probe's `hlt` is undefined without a debugger or emulator behind it: skip it.
        frame.elr += 4;
        return;
    }
    let fault = Fault { frame };
    match HANDLER.get() {
        Some(handler) => handler(&fault),
        None => super::halt_forever(),
    }
}

/// `ESR_ELx.EC`, the exception class (bits 31:26).
const fn esr_ec(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Exception classes (Arm ARM D17.2.37, `ESR_EL1.EC`).
mod ec {
    pub(super) const UNKNOWN: u8 = 0x00;
    pub(super) const INSTRUCTION_ABORT_LOWER: u8 = 0x20;
    pub(super) const INSTRUCTION_ABORT: u8 = 0x21;
    pub(super) const PC_ALIGNMENT: u8 = 0x22;
    pub(super) const DATA_ABORT_LOWER: u8 = 0x24;
    pub(super) const DATA_ABORT: u8 = 0x25;
    pub(super) const WATCHPOINT_LOWER: u8 = 0x34;
    pub(super) const WATCHPOINT: u8 = 0x35;
}

/// A fatal exception, as the vector entry saw it.
pub struct Fault<'a> {
    frame: &'a TrapFrame,
}

impl fmt::Debug for Fault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault")
            .field("kind", &self.frame.kind)
            .field("esr", &format_args!("{:#x}", self.frame.esr))
            .field("elr", &format_args!("{:#x}", self.frame.elr))
            .finish()
    }
}

impl rhea_hal::arch::Fault for Fault<'_> {
    type Detail = FaultDetail;

    /// The exception's name: its class for synchronous exceptions, its type otherwise.
    fn name(&self) -> &'static str {
        let k = self.frame.kind;
        match (k / 4 * 4, k % 4) {
            (kind::FROM_EL1H, kind::SYNC) => "synchronous exception inside an exception handler",
            (kind::FROM_LOWER_A64 | kind::FROM_LOWER_A32, _) => {
                "exception from a lower exception level"
            }
            (_, kind::IRQ) => "unexpected IRQ on the exception stack",
            (_, kind::FIQ) => "FIQ (unexpected: Rhea routes nothing to FIQ)",
            (_, kind::SERROR) => "SError (asynchronous external abort)",
            _ => ec_name(self.ec()),
        }
    }

    /// Where it happened (`ELR_EL1`).
    fn pc(&self) -> u64 {
        self.frame.elr
    }

    /// Whether [`Fault::pc`] is the faulting instruction: true for synchronous exceptions;
    /// an SError's `ELR` is only where it was noticed.
    fn is_pc_valid(&self) -> bool {
        self.is_sync()
    }

    /// The faulting address (`FAR_EL1`) for instruction and data aborts, PC alignment faults and
    /// watchpoints, unless `ESR.ISS.FnV` says it is not valid.
    fn address(&self) -> Option<u64> {
        if !self.is_sync() {
            return None;
        }
        let far_valid = self.frame.esr & (1 << 10) == 0;
        match self.ec() {
            ec::INSTRUCTION_ABORT
            | ec::INSTRUCTION_ABORT_LOWER
            | ec::DATA_ABORT
            | ec::DATA_ABORT_LOWER
            | ec::WATCHPOINT
            | ec::WATCHPOINT_LOWER
                if far_valid =>
            {
                Some(self.frame.far)
            }
            ec::PC_ALIGNMENT => Some(self.frame.far),
            _ => None,
        }
    }

    /// `x29` at the fault: the head of the frame-record chain.
    fn frame_pointer(&self) -> u64 {
        self.frame.x[29]
    }

    /// The stack pointer at the fault: `SP_EL0` (the thread's), or `SP_EL1` for an exception
    /// taken inside an exception handler.
    fn stack_pointer(&self) -> u64 {
        if self.frame.kind / 4 * 4 == kind::FROM_EL1H {
            self.frame.sp_el1
        } else {
            self.frame.sp
        }
    }

    /// `ESR_EL1` decoded: class, and for aborts the fault status, level and access.
    fn detail(&self) -> Option<FaultDetail> {
        self.is_sync().then_some(FaultDetail {
            esr: self.frame.esr,
        })
    }
}

impl Fault<'_> {
    fn ec(&self) -> u8 {
        esr_ec(self.frame.esr)
    }

    fn is_sync(&self) -> bool {
        self.frame.kind % 4 == kind::SYNC
    }
}

/// The name of an exception class.
fn ec_name(ec: u8) -> &'static str {
    match ec {
        ec::UNKNOWN => "undefined instruction",
        0x01 => "trapped WFI/WFE",
        0x07 => "trapped FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC instruction",
        0x18 => "trapped MSR/MRS or system instruction",
        ec::INSTRUCTION_ABORT_LOWER => "instruction abort from a lower EL",
        ec::INSTRUCTION_ABORT => "instruction abort",
        ec::PC_ALIGNMENT => "PC alignment fault",
        ec::DATA_ABORT_LOWER => "data abort from a lower EL",
        ec::DATA_ABORT => "data abort",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        ec::WATCHPOINT_LOWER | ec::WATCHPOINT => "watchpoint",
        0x3c => "BRK instruction",
        _ => "synchronous exception of an unexpected class",
    }
}

/// The decoded syndrome of a fault (see [`Fault::detail`]).
#[derive(Debug)]
pub struct FaultDetail {
    esr: u64,
}

/// The fault status code of an abort (`ISS.DFSC`/`IFSC`, bits 5:0), as (what, level).
fn fault_status(fsc: u8) -> (&'static str, Option<u8>) {
    let level = Some(fsc & 3);
    match fsc {
        0x00..=0x03 => ("address size fault", level),
        0x04..=0x07 => ("translation fault", level),
        0x09..=0x0b => ("access flag fault", level),
        0x0d..=0x0f => ("permission fault", level),
        0x10 => ("synchronous external abort", None),
        0x11 => ("synchronous tag check fault", None),
        0x14..=0x17 => ("synchronous external abort on a table walk", level),
        0x18 => ("parity or ECC error", None),
        0x21 => ("alignment fault", None),
        0x30 => ("TLB conflict abort", None),
        0x31 => ("unsupported atomic hardware update", None),
        _ => ("fault of an unknown status", None),
    }
}

impl fmt::Display for FaultDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.esr;
        let ec = esr_ec(esr);
        let iss = esr & 0x1ff_ffff;
        let fsc = (iss & 0x3f) as u8;
        match ec {
            ec::DATA_ABORT | ec::DATA_ABORT_LOWER => {
                let (what, level) = fault_status(fsc);
                let access = if iss & (1 << 8) != 0 {
                    "cache maintenance"
                } else if iss & (1 << 6) != 0 {
                    "write"
                } else {
                    "read"
                };
                write!(f, "{access}: {what}")?;
                if let Some(l) = level {
                    write!(f, " at level {l}")?;
                }
                write!(f, " (DFSC {fsc:#04x}, WnR {}", (iss >> 6) & 1)?;
                if iss & (1 << 10) != 0 {
                    f.write_str(", FAR not valid")?;
                }
                write!(f, "; ESR {esr:#010x}, EC {ec:#04x})")
            }
            ec::INSTRUCTION_ABORT | ec::INSTRUCTION_ABORT_LOWER => {
                let (what, level) = fault_status(fsc);
                write!(f, "instruction fetch: {what}")?;
                if let Some(l) = level {
                    write!(f, " at level {l}")?;
                }
                write!(f, " (IFSC {fsc:#04x}; ESR {esr:#010x}, EC {ec:#04x})")
            }
            _ => write!(
                f,
                "ESR {esr:#010x}: EC {ec:#04x} ({}), IL {}, ISS {iss:#x}",
                ec_name(ec),
                (esr >> 25) & 1
            ),
        }
    }
}

impl fmt::Display for Fault<'_> {
    /// The register dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.frame;
        let mut all = [("", 0u64); 37];
        for (i, slot) in all.iter_mut().take(31).enumerate() {
            *slot = (super::regs::X_NAMES[i], r.x[i]);
        }
        all[31] = ("sp", self.stack_pointer());
        all[32] = ("elr", r.elr);
        all[33] = ("spsr", r.spsr);
        all[34] = ("esr", r.esr);
        all[35] = ("far", r.far);
        all[36] = ("sp_el1", r.sp_el1);
        let shown = if r.kind / 4 * 4 == kind::FROM_EL1H {
            &all[..]
        } else {
            &all[..36]
        };
        super::regs::dump(f, shown)
    }
}
