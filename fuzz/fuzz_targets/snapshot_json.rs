#![no_main]
//! `cargo +nightly fuzz run snapshot_json`: see `siemstress_common::fuzzing::snapshot_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siemstress_common::fuzzing::snapshot_json(data));
