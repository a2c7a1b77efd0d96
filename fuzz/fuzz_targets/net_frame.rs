//! See `rhea_fuzz::net_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::net_frame::run(data));
