//! See `rhea_fuzz::rings`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::rings::run(data));
