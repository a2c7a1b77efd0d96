//! See `rhea_fuzz::cmdline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::cmdline::run(data));
