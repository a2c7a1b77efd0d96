//! Test app: an integer division by zero in hardware (#DE) must be reported. Safe Rust checks
//! divisors and panics instead, so `rhea::testing` issues the instruction.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
fn main() {
    let q = rhea::testing::divide_by_zero();
    rhea::println!("unreachable: quotient {q}");
}
