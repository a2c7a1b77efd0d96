//! Test app: reading a non-canonical address (bits 63:48 not a sign extension of bit 47) raises
//! a general-protection fault, which must be reported with where it happened.
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
    let v = read_at(core::hint::black_box(0x8000_0000_0000_0000));
    rhea::println!("unreachable: read {v:#x}");
}
