//! The smallest Rhea app: print, allocate, return. Nothing here names a board.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

rhea::main!(main);

fn main() {
    rhea::println!("Hello from Rhea!");
    let squares: Vec<u64> = (1..=8).map(|n| n * n).collect();
    rhea::println!("squares from the heap: {squares:?}");
}
