#![no_main]
//! `cargo +nightly fuzz run timerange`: see `siemstress_common::fuzzing::timerange`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siemstress_common::fuzzing::timerange(data));
