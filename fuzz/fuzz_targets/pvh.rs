//! See `rhea_fuzz::pvh`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::pvh::run(data));
