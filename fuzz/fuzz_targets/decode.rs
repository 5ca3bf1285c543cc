#![no_main]
//! `cargo +nightly fuzz run decode`: see `siemstress_common::fuzzing::decode`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siemstress_common::fuzzing::decode(data));
