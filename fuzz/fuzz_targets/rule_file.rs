#![no_main]
//! `cargo +nightly fuzz run rule_file`: a rule file's text through
//! siemtrigger's rule loading (its `rules` module, included by path:
//! siemtrigger is a binary crate).

#[allow(dead_code, unused_imports)]
#[path = "../../siemtrigger/src/rules/mod.rs"]
mod rules;

#[allow(dead_code, unused_imports)]
#[path = "../../siemtrigger/src/sigma/mod.rs"]
mod sigma;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rules::fuzzing::rule_file(data));
