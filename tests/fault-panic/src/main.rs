//! Test app: a panic two calls deep must be reported with its message, source location,
//! thread, CPU, registers and a symbolised backtrace, and end the run with a failure.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
fn check_answer(answer: u32) {
    assert!(answer == 42, "the answer was {answer}, not 42");
}

fn main() {
    check_answer(core::hint::black_box(41));
    rhea::println!("unreachable: the panic did not stop the app");
}
