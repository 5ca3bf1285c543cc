#![no_main]
//! `cargo +nightly fuzz run syslog`: see `siemstress_common::fuzzing::syslog`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| siemstress_common::fuzzing::syslog(data));
