//! Trap entry: the IDT, one assembly stub per vector, and the fatal-fault path.
//!
//! Every one of the 256 vectors has a 16-byte stub in `rhea_trap_stubs` (so vector `v` is at
//! `rhea_trap_stubs + 16 * v`). A stub pushes a zero error code where the CPU pushes none
//! (SDM Vol. 3A §6.13, table 6-1: only 8, 10–14, 17, 21, 29 and 30 push one), then its vector
//! number, and jumps to a common path that saves every general register into a [`TrapFrame`]
//! and calls [`trap_dispatch`]. The stack is 16-byte aligned at that call: the CPU aligns RSP
//! before pushing its 5-word frame (§6.14.2) and the stub and common path push 17 more words.
//!
//! Why our own IDT instead of `x86_64::structures::idt`: that type cannot set the reserved
//! vectors (9, 15, 22–27, 31), and its handlers need the unstable `x86-interrupt` ABI. A gate is
//! four fields (§6.14.1); writing them is shorter than working around both.
//!
//! Exceptions are fatal in Rhea (no demand paging, no user mode): they go to the handler the
//! runtime registered with [`set_fault_handler`]. Interrupt vectors (32–255) are not in use
//! until the IRQ layer lands; one arriving now is reported as a fatal "unexpected interrupt".

use super::gdt;
use core::fmt;
use spin::Once;

/// Registers saved on trap entry, lowest address first (the order the common path pushes them
/// in reverse), then the stub's two words, then the CPU's interrupt frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct TrapFrame {
    pub(super) r15: u64,
    pub(super) r14: u64,
    pub(super) r13: u64,
    pub(super) r12: u64,
    pub(super) r11: u64,
    pub(super) r10: u64,
    pub(super) r9: u64,
    pub(super) r8: u64,
    pub(super) rbp: u64,
    pub(super) rdi: u64,
    pub(super) rsi: u64,
    pub(super) rdx: u64,
    pub(super) rcx: u64,
    pub(super) rbx: u64,
    pub(super) rax: u64,
    pub(super) vector: u64,
    pub(super) error_code: u64,
    pub(super) rip: u64,
    pub(super) cs: u64,
    pub(super) rflags: u64,
    pub(super) rsp: u64,
    pub(super) ss: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.rhea_trap, "ax"
    .balign 16
    .global rhea_trap_stubs
rhea_trap_stubs:
    .set rhea_vec, 0
    .rept 256
    .balign 16
    .if (rhea_vec == 8) || (rhea_vec == 10) || (rhea_vec == 11) || (rhea_vec == 12) || (rhea_vec == 13) || (rhea_vec == 14) || (rhea_vec == 17) || (rhea_vec == 21) || (rhea_vec == 29) || (rhea_vec == 30)
    .else
    pushq $0
    .endif
    pushq $rhea_vec
    jmp rhea_trap_common
    .set rhea_vec, rhea_vec + 1
    .endr

rhea_trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call {dispatch}
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    "#,
    dispatch = sym trap_dispatch,
    options(att_syntax)
);

unsafe extern "C" {
    /// The first of 256 16-byte stubs defined above.
    static rhea_trap_stubs: [u8; 256 * 16];
}

/// An IDT gate descriptor (SDM Vol. 3A §6.14.1, figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Exception vectors (SDM Vol. 3A table 6-1).
const DOUBLE_FAULT: u8 = 8;
const NMI: u8 = 2;
const MACHINE_CHECK: u8 = 18;
const PAGE_FAULT: u8 = 14;
const GENERAL_PROTECTION: u8 = 13;

pub(super) fn load_idt() {
    use x86_64::instructions::segmentation::{CS, Segment};
    let selector = CS::get_reg().0;
    // Only the address of the stubs is taken.
    let stubs = core::ptr::addr_of!(rhea_trap_stubs) as u64;
    let idt = IDT.call_once(|| {
        let mut gates = [Gate {
            offset_low: 0,
            selector: 0,
            ist: 0,
            type_attr: 0,
            offset_mid: 0,
            offset_high: 0,
            reserved: 0,
        }; 256];
        for (v, gate) in gates.iter_mut().enumerate() {
            let handler = stubs + 16 * v as u64;
            // IST index in the gate is 1-based; 0 means "no IST".
            let ist = match v as u8 {
                DOUBLE_FAULT => gdt::IST_DOUBLE_FAULT + 1,
                NMI => gdt::IST_NMI + 1,
                MACHINE_CHECK => gdt::IST_MACHINE_CHECK + 1,
                PAGE_FAULT => gdt::IST_PAGE_FAULT + 1,
                _ => 0,
            };
            *gate = Gate {
                offset_low: handler as u16,
                selector,
                ist: ist as u8,
                type_attr: INTERRUPT_GATE,
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        Idt(gates)
    });
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT lives in a static for the rest of the run and every gate points at a stub
    // that saves state and calls `trap_dispatch` with a valid frame.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

static HANDLER: Once<fn(&Fault<'_>) -> !> = Once::new();
static INTERRUPT: Once<fn(u8)> = Once::new();

/// Registers where interrupt vectors (32–255) go. The handler runs with interrupts disabled
/// on the interrupted thread's stack; it may switch threads (the interrupted context is saved
/// in the trap frame and resumes when the thread is switched back in).
pub fn set_interrupt_handler(handler: fn(u8)) {
    INTERRUPT.call_once(|| handler);
}

/// Registers where fatal exceptions go. The first registration wins; call it before anything
/// can fault.
pub fn set_fault_handler(handler: fn(&Fault<'_>) -> !) {
    HANDLER.call_once(|| handler);
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if let Some(handler) = INTERRUPT.get().filter(|_| frame.vector >= 32) {
        handler(frame.vector as u8);
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
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

impl Fault<'_> {
    /// The exception's name.
    pub fn name(&self) -> &'static str {
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

    /// The vector number.
    pub fn vector(&self) -> u8 {
        self.frame.vector as u8
    }

    /// Where it happened. For a double fault the SDM leaves the saved RIP undefined.
    pub fn pc(&self) -> u64 {
        self.frame.rip
    }

    /// Whether [`Fault::pc`] is meaningful.
    pub fn is_pc_valid(&self) -> bool {
        self.frame.vector != u64::from(DOUBLE_FAULT)
    }

    /// The faulting data address: CR2 for a page fault, and for a double fault CR2 too — a
    /// double fault after a page fault (a stack overflow whose #PF frame could not be pushed)
    /// leaves the guard-page address there.
    pub fn address(&self) -> Option<u64> {
        match self.frame.vector as u8 {
            PAGE_FAULT | DOUBLE_FAULT => Some(self.cr2),
            _ => None,
        }
    }

    /// RBP at the fault: the head of the frame-pointer chain.
    pub fn frame_pointer(&self) -> u64 {
        self.frame.rbp
    }

    /// RSP at the fault.
    pub fn stack_pointer(&self) -> u64 {
        self.frame.rsp
    }

    /// A one-line decoding of the error code, for the exceptions that push one (SDM Vol. 3A
    /// table 6-1).
    pub fn detail(&self) -> Option<FaultDetail> {
        let has_code = matches!(self.frame.vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
        has_code.then_some(FaultDetail {
            vector: self.frame.vector as u8,
            code: self.frame.error_code,
        })
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
