//! See `rhea_fuzz::cpio`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::cpio::run(data));
