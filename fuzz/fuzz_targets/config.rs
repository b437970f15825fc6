//! Fuzz target: `weir_fuzz_checks::config` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz_checks::config(data));
