//! See `rhea_fuzz::fdt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::fdt::run(data));
