//! libFuzzer entry for `dolbom_fuzz::household_config` (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dolbom_fuzz::household_config(data));
