//! Trap entry: the IDT, one assembly stub per vector, and the fatal-fault path.
//!
//! Every one of the 256 vectors has a stub in `rhea_trap_stubs` ([`stub_offset`] says where).
//! A stub pushes its vector number, less 128 so that it fits a sign-extended 8-bit immediate
//! (a 2-byte push), and jumps to a common path. For the vectors whose exception comes without
//! an error code (SDM Vol. 3A §6.13, table 6-1: only 8, 10–14, 17, 21, 29 and 30 push one) the
//! path first moves the vector down a word and puts a zero error code in its place, so every
//! frame has the same shape. Then it adds the 128 back, saves every general register into a
//! [`TrapFrame`] and calls [`trap_dispatch`]. The stack is 16-byte aligned at that call: the
//! CPU aligns RSP before pushing its 5-word frame (§6.14.2) and the stub and common path push
//! 17 more words.
//!
//! The stubs are small because 256 of them are: the exceptions (0–31) have 8 bytes each (the
//! push and a jump to their path); the interrupt vectors (32–255), which all take the
//! no-error-code path, come in blocks of 16 four-byte stubs (the push and a short jump to the
//! block's end) that share one far jump — 1,208 bytes in all instead of 16 per vector.
//!
//! Why our own IDT instead of `x86_64::structures::idt`: that type cannot set the reserved
//! vectors (9, 15, 22–27, 31), and its handlers need the unstable `x86-interrupt` ABI. A gate is
//! four fields (§6.14.1); writing them is shorter than working around both.
//!
//! Exceptions are fatal in Rhea (no demand paging, no user mode): they go to the handler the
//! runtime registered with [`set_fault_handler`]. Interrupt vectors (32–255) are not in use
//! until the IRQ layer lands; one arriving now is reported as a fatal "unexpected interrupt".

use super::fault::{self, TrapFrame};
use super::gdt;
use rhea_sync::Once;

core::arch::global_asm!(
    r#"
    .section .text.rhea_trap, "ax"
    .balign 16
    .global rhea_trap_stubs
rhea_trap_stubs:
    .set rhea_vec, 0
    .rept 32
    .org rhea_trap_stubs + {exception_stub} * rhea_vec
    pushq $(rhea_vec - 128)
    .if (rhea_vec == 8) || (rhea_vec == 10) || (rhea_vec == 11) || (rhea_vec == 12) || (rhea_vec == 13) || (rhea_vec == 14) || (rhea_vec == 17) || (rhea_vec == 21) || (rhea_vec == 29) || (rhea_vec == 30)
    .byte 0xe9
    .long rhea_trap_common - (. + 4)
    .else
    .byte 0xe9
    .long rhea_trap_no_error - (. + 4)
    .endif
    .set rhea_vec, rhea_vec + 1
    .endr
    .set rhea_block, 0
    .rept (256 - 32) / {block_stubs}
    .org rhea_trap_stubs + 32 * {exception_stub} + {block} * rhea_block
    .rept {block_stubs} - 1
    pushq $(rhea_vec - 128)
    jmp 1f
    .set rhea_vec, rhea_vec + 1
    .endr
    pushq $(rhea_vec - 128)
    .set rhea_vec, rhea_vec + 1
1:
    .byte 0xe9
    .long rhea_trap_no_error - (. + 4)
    .set rhea_block, rhea_block + 1
    .endr
    // `.org` fails to assemble if a stub outgrows its place: the layout is `stub_offset`'s.
    .org rhea_trap_stubs + {stubs_len}

rhea_trap_no_error:
    pushq (%rsp)
    movq $0, 8(%rsp)
rhea_trap_common:
    subq $-128, (%rsp)
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
    exception_stub = const EXCEPTION_STUB,
    block_stubs = const BLOCK_STUBS,
    block = const BLOCK,
    stubs_len = const STUBS_LEN,
    options(att_syntax)
);

/// Bytes of an exception's stub (vectors 0–31).
const EXCEPTION_STUB: usize = 8;
/// Bytes of an interrupt vector's stub (32–255), stubs per block, and bytes per block (the
/// stubs, less the last one's short jump, plus the shared 5-byte jump, rounded up to 4).
const IRQ_STUB: usize = 4;
const BLOCK_STUBS: usize = 16;
const BLOCK: usize = (BLOCK_STUBS * IRQ_STUB - 2 + 5).next_multiple_of(4);
/// All the stubs.
const STUBS_LEN: usize = 32 * EXCEPTION_STUB + (256 - 32) / BLOCK_STUBS * BLOCK;

/// Where vector `v`'s stub starts, from `rhea_trap_stubs`.
const fn stub_offset(v: usize) -> usize {
    if v < 32 {
        v * EXCEPTION_STUB
    } else {
        let i = v - 32;
        32 * EXCEPTION_STUB + i / BLOCK_STUBS * BLOCK + i % BLOCK_STUBS * IRQ_STUB
    }
}

unsafe extern "C" {
    /// The stubs defined above ([`stub_offset`]).
    static rhea_trap_stubs: [u8; STUBS_LEN];
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
const NMI: u8 = 2;
const MACHINE_CHECK: u8 = 18;
use super::fault::{DOUBLE_FAULT, PAGE_FAULT};

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
            let handler = stubs + stub_offset(v) as u64;
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

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    fault::dispatch(frame, cr2);
}
