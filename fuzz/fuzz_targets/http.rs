//! See `rhea_fuzz::http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::http::run(data));
