//! Trap frames and fatal faults, shared by the bare-metal trap entry (`trap.rs`) and the LinuxU
//! signal entry (`../linux/signals.rs`), which builds the same frame from a `ucontext`.

use core::fmt;
use rhea_sync::Once;

/// Registers saved on trap entry, lowest address first (the order the common path pushes them
/// in reverse), then the stub's two words, then the CPU's interrupt frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrapFrame {
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) r11: u64,
    pub(crate) r10: u64,
    pub(crate) r9: u64,
    pub(crate) r8: u64,
    pub(crate) rbp: u64,
    pub(crate) rdi: u64,
    pub(crate) rsi: u64,
    pub(crate) rdx: u64,
    pub(crate) rcx: u64,
    pub(crate) rbx: u64,
    pub(crate) rax: u64,
    pub(crate) vector: u64,
    pub(crate) error_code: u64,
    pub(crate) rip: u64,
    pub(crate) cs: u64,
    pub(crate) rflags: u64,
    pub(crate) rsp: u64,
    pub(crate) ss: u64,
}

/// Exception vectors (SDM Vol. 3A table 6-1).
pub(crate) const DOUBLE_FAULT: u8 = 8;
pub(crate) const PAGE_FAULT: u8 = 14;
pub(crate) const GENERAL_PROTECTION: u8 = 13;

static HANDLER: Once<fn(&Fault<'_>) -> !> = Once::new();
static INTERRUPT: Once<fn(u8)> = Once::new();

/// Registers where interrupt vectors (32–255) go. The handler runs with interrupts disabled
/// on the interrupted thread's stack; it may switch threads (the interrupted context is saved
/// in the trap frame and resumes when the thread is switched back in).
pub(crate) fn set_interrupt_handler(handler: fn(u8)) {
    INTERRUPT.call_once(|| handler);
}

/// Registers where fatal exceptions go. The first registration wins; call it before anything
/// can fault.
pub(crate) fn set_fault_handler(handler: fn(&Fault<'_>) -> !) {
    HANDLER.call_once(|| handler);
}

/// Delivers interrupt `vector` to the registered handler; `false` if none is registered.
pub(crate) fn deliver_interrupt(vector: u8) -> bool {
    match INTERRUPT.get() {
        Some(handler) => {
            handler(vector);
            true
        }
        None => false,
    }
}

/// Routes a trap: interrupts to the interrupt handler, everything else to the fault report.
pub(crate) fn dispatch(frame: &mut TrapFrame, cr2: u64) {
    if frame.vector >= 32 && deliver_interrupt(frame.vector as u8) {
        return;
    }
    let fault = Fault { frame, cr2 };
    match HANDLER.get() {
        Some(handler) => handler(&fault),
        None => super::halt_forever(),
    }
}

/// A fatal exception, as the trap stub saw it.
pub struct Fault<'a> {
    frame: &'a TrapFrame,
    cr2: u64,
}

impl fmt::Debug for Fault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault")
            .field("vector", &self.frame.vector)
            .field("rip", &self.frame.rip)
            .finish()
    }
}

impl rhea_hal::arch::Fault for Fault<'_> {
    type Detail = FaultDetail;

    /// The exception's name.
    fn name(&self) -> &'static str {
        match self.frame.vector {
            0 => "divide error (#DE)",
            1 => "debug exception (#DB)",
            2 => "non-maskable interrupt (NMI)",
            3 => "breakpoint (#BP)",
            4 => "overflow (#OF)",
            5 => "bound range exceeded (#BR)",
            6 => "invalid opcode (#UD)",
            7 => "device not available (#NM)",
            8 => "double fault (#DF)",
            9 => "coprocessor segment overrun",
            10 => "invalid TSS (#TS)",
            11 => "segment not present (#NP)",
            12 => "stack-segment fault (#SS)",
            13 => "general-protection fault (#GP)",
            14 => "page fault (#PF)",
            16 => "x87 floating-point error (#MF)",
            17 => "alignment check (#AC)",
            18 => "machine check (#MC)",
            19 => "SIMD floating-point exception (#XM)",
            20 => "virtualization exception (#VE)",
            21 => "control-protection exception (#CP)",
            28 => "hypervisor injection exception (#HV)",
            29 => "VMM communication exception (#VC)",
            30 => "security exception (#SX)",
            15 | 22..=27 | 31 => "reserved exception vector",
            _ => "unexpected interrupt",
        }
    }

    /// Where it happened. For a double fault the SDM leaves the saved RIP undefined.
    fn pc(&self) -> u64 {
        self.frame.rip
    }

    /// Whether [`Fault::pc`] is meaningful.
    fn is_pc_valid(&self) -> bool {
        self.frame.vector != u64::from(DOUBLE_FAULT)
    }

    /// The faulting data address: CR2 for a page fault, and for a double fault CR2 too — a
    /// double fault after a page fault (a stack overflow whose #PF frame could not be pushed)
    /// leaves the guard-page address there.
    fn address(&self) -> Option<u64> {
        match self.frame.vector as u8 {
            PAGE_FAULT | DOUBLE_FAULT => Some(self.cr2),
            _ => None,
        }
    }

    /// RBP at the fault: the head of the frame-pointer chain.
    fn frame_pointer(&self) -> u64 {
        self.frame.rbp
    }

    /// RSP at the fault.
    fn stack_pointer(&self) -> u64 {
        self.frame.rsp
    }

    /// A one-line decoding of the error code, for the exceptions that push one (SDM Vol. 3A
    /// table 6-1).
    fn detail(&self) -> Option<FaultDetail> {
        let has_code = matches!(self.frame.vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
        has_code.then_some(FaultDetail {
            vector: self.frame.vector as u8,
            code: self.frame.error_code,
        })
    }
}

impl Fault<'_> {
    /// The vector number.
    pub fn vector(&self) -> u8 {
        self.frame.vector as u8
    }
}

/// The decoded error code of a fault (see [`Fault::detail`]).
#[derive(Debug)]
pub struct FaultDetail {
    vector: u8,
    code: u64,
}

impl fmt::Display for FaultDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.code;
        match self.vector {
            // SDM Vol. 3A §4.7, figure 4-12.
            PAGE_FAULT => write!(
                f,
                "{} {} a {} page in {} mode{}",
                if c & (1 << 4) != 0 {
                    "instruction fetch"
                } else if c & 2 != 0 {
                    "write"
                } else {
                    "read"
                },
                if c & (1 << 4) != 0 {
                    "from"
                } else if c & 2 != 0 {
                    "to"
                } else {
                    "from"
                },
                if c & 1 != 0 {
                    "present (protection violation)"
                } else {
                    "not-present"
                },
                if c & 4 != 0 { "user" } else { "kernel" },
                if c & 8 != 0 { ", reserved bit set" } else { "" },
            ),
            // §6.13: a segment-selector error code; zero for most #GPs (non-canonical address,
            // privileged instruction, ...).
            GENERAL_PROTECTION | 10 | 11 | 12 if c != 0 => {
                write!(
                    f,
                    "error code {c:#x} (selector index {}, {})",
                    c >> 3,
                    if c & 2 != 0 {
                        "IDT"
                    } else if c & 4 != 0 {
                        "LDT"
                    } else {
                        "GDT"
                    }
                )
            }
            GENERAL_PROTECTION => write!(
                f,
                "error code 0 (e.g. a non-canonical address or a privileged operation)"
            ),
            _ => write!(f, "error code {c:#x}"),
        }
    }
}

impl fmt::Display for Fault<'_> {
    /// The register dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.frame;
        super::regs::dump(
            f,
            &[
                ("rax", r.rax),
                ("rbx", r.rbx),
                ("rcx", r.rcx),
                ("rdx", r.rdx),
                ("rsi", r.rsi),
                ("rdi", r.rdi),
                ("rbp", r.rbp),
                ("rsp", r.rsp),
                ("r8", r.r8),
                ("r9", r.r9),
                ("r10", r.r10),
                ("r11", r.r11),
                ("r12", r.r12),
                ("r13", r.r13),
                ("r14", r.r14),
                ("r15", r.r15),
                ("rip", r.rip),
                ("rflags", r.rflags),
                ("cs", r.cs),
                ("ss", r.ss),
                ("error", r.error_code),
                ("cr2", self.cr2),
            ],
        )
    }
}
