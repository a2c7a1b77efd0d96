//! See `rhea_fuzz::uefi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::uefi::run(data));
