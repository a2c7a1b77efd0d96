//! See `rhea_fuzz::p9`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::p9::run(data));
