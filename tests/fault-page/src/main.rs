//! Test app: dereferencing address 0x10 (just past null; page 0 is never mapped) must be
//! reported as a page fault with the faulting address, the function and a backtrace.
#![no_std]
#![no_main]

rhea::main!(main);

#[inline(never)]
fn read_at(addr: usize) -> u64 {
    // SAFETY: deliberately unsound: this test exists to fault here.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

#[inline(never)]
fn main() {
    let v = read_at(core::hint::black_box(0x10));
    rhea::println!("unreachable: read {v:#x} from address 0x10");
}
