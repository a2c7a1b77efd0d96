//! Test app: recursion without end must run into the guard page below the main thread's stack
//! and be reported as a stack overflow naming the thread — never silently corrupt memory.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
#[expect(unconditional_recursion, reason = "the point of the test")]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[depth as usize % 512] = depth as u8;
    let frame = core::hint::black_box(frame);
    recurse(depth + 1) + u64::from(frame[0])
}

fn main() {
    let n = recurse(core::hint::black_box(0));
    rhea::println!("unreachable: recursion ended at {n}");
}
