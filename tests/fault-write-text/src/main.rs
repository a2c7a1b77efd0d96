//! Test app: code is mapped read-only (W^X, with CR0.WP so ring 0 obeys it); a write to a
//! function's first byte must be a protection-violation page fault.
#![no_std]
#![no_main]

rhea::main!(main);

#[inline(never)]
fn write_at(addr: usize) {
    // SAFETY: deliberately unsound: this test exists to fault here.
    unsafe { core::ptr::write_volatile(addr as *mut u8, 0xcc) }
}

fn main() {
    write_at(core::hint::black_box(main as *const () as usize));
    rhea::println!("unreachable: wrote into the kernel's code");
}
