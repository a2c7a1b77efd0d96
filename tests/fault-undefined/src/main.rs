//! Test app: an undefined instruction (x86 `ud2`, Arm `udf #0`) must be reported with its
//! name, where it happened and a backtrace.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

rhea::main!(main);

#[inline(never)]
fn main() {
    rhea::testing::undefined_instruction();
}
