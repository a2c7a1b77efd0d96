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

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    fault::dispatch(frame, cr2);
}
