//! See `rhea_fuzz::xenstore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::xenstore::run(data));
