//! libFuzzer entry for `dolbom_fuzz::plug_reading` (see `src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dolbom_fuzz::plug_reading(data));
