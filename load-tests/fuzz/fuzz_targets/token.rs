//! libFuzzer entry for `dolbom_fuzz::token` (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dolbom_fuzz::token(data));
