//! Test app: a thread spawned with a 16 KiB stack recurses without end; its guard page must
//! stop it and the report must name that thread, not the main one.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
#[expect(unconditional_recursion, reason = "the point of the test")]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 256];
    frame[depth as usize % 256] = depth as u8;
    let frame = core::hint::black_box(frame);
    recurse(depth + 1) + u64::from(frame[0])
}

fn main() {
    let h = rhea::thread::Builder::new()
        .name("deep-worker")
        .stack_size(16 * 1024)
        .spawn(|| {
            recurse(core::hint::black_box(0));
        })
        .expect("spawn");
    let _ = h.join();
    rhea::println!("unreachable: the worker's overflow went unnoticed");
}
