//! Test app: jumping into data must fault on the instruction fetch (W^X: data is mapped
//! never-executable) and be reported — an instruction abort on Arm, a page fault on x86 — with
//! the address and a backtrace to the caller.
#![no_std]
#![no_main]

rhea::main!(main);

/// Bytes in a writable (hence never-executable) section.
static mut NOT_CODE: [u8; 64] = [0; 64];

/// Calls `addr`. Not a tail call (the value is used after it), so this function's frame
/// record — with the return into `main` — is on the stack when the fetch faults.
#[inline(never)]
fn exec_at(addr: usize) -> usize {
    // SAFETY: deliberately unsound: this test exists to fault on the call.
    let f: extern "C" fn() = unsafe { core::mem::transmute(addr) };
    f();
    core::hint::black_box(addr)
}

#[inline(never)]
fn main() {
    let addr = core::ptr::addr_of!(NOT_CODE) as usize;
    exec_at(core::hint::black_box(addr));
    rhea::println!("unreachable: executed data at {addr:#x}");
}
