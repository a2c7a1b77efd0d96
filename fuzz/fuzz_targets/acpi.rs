//! See `rhea_fuzz::acpi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rhea_fuzz::acpi::run(data));
