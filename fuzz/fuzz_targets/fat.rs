//! See `rhea_fuzz::fat`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::fat::run(data));
