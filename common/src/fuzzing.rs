//! Entry points of the fuzz targets (`fuzz/`, `cargo +nightly fuzz run NAME`),
//! one per parser of hostile input. The same functions run every committed
//! seed of `fuzz/corpus/NAME/` in a normal `cargo test` (the test below), so
//! a crash the fuzzer found stays fixed. Each function must never panic,
//! whatever the bytes.
//!
//! siemtrigger's rule files have their entry in `siemtrigger/src/rules/fuzzing.rs`.

use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;

use crate::decode::Decoders;
use crate::parse::LineParser;
use crate::time::Zone;

fn decoders() -> Arc<Decoders> {
    static SET: OnceLock<Arc<Decoders>> = OnceLock::new();
    SET.get_or_init(|| Decoders::builtin().expect("built-in decoders compile"))
        .clone()
}

fn zone() -> Zone {
    Zone::parse("Europe/Berlin").expect("zone")
}

/// `syslog`: one line through siemparse's line parser (RFC3164 and RFC5424
/// headers, local time to UTC in a DST zone, year inference, the decoders).
/// The input is the line; a `\n` splits it into several lines parsed in
/// order by one parser (the DST and year state carries over).
pub fn syslog(data: &[u8]) {
    let reference = NaiveDate::from_ymd_opt(2026, 3, 29)
        .and_then(|d| d.and_hms_opt(2, 30, 0))
        .expect("date");
    let mut p = LineParser::new(zone(), None, "fuzz")
        .with_decoders(decoders())
        .with_reference(reference);
    for line in data.split(|b| *b == b'\n') {
        let ev = p.parse(line, 1_774_745_400_000);
        assert!(line.is_empty() || !ev.raw.is_empty(), "a line was lost");
    }
}

/// `decode`: the decoders on one message of one program: the first line of
/// the input is the program (the syslog tag), the rest the message.
pub fn decode(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (process, message) = text.split_once('\n').unwrap_or(("sshd", &text));
    let set = decoders();
    if let Some(d) = set.decode(Some(process), message) {
        let _ = d.fields.pairs();
    }
    let _ = set.decode(None, message);
    // The split search of a forgery-safe regex, and the hand search of the
    // netfilter regex, give the whole regex's captures.
    let mut spans = Vec::new();
    for r in set.list().iter().flat_map(|d| &d.regexes) {
        let mut scratch = crate::decode::RegexScratch::default();
        let got = r.captures(&mut scratch, message.as_bytes(), &mut spans);
        let whole = r.captures_whole(message.as_bytes());
        assert_eq!(
            got.then_some(&spans),
            whole.as_ref(),
            "regex {}",
            r.regex.as_str()
        );
    }
}

/// `timerange`: durations (`parse_duration`), time points and ranges
/// (`--range`, `--from/--to`) in a DST zone and in UTC.
pub fn timerange(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::time::parse_duration(s);
    for z in [zone(), Zone::parse("UTC").expect("UTC")] {
        if let Ok((a, b)) = crate::timerange::parse_range(s, &z) {
            assert!(a <= b, "range {s:?} gave start {a} after end {b}");
        }
        let _ = crate::timerange::parse_point(s, &z);
    }
}

/// `snapshot_json`: the JSON snapshot reader (`siemparse --snapshot NAME
/// --json FILE`), without and with a `--key` field.
pub fn snapshot_json(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::snapshot::input::rows_from_json(s, &[]);
    let _ = crate::snapshot::input::rows_from_json(s, &["name".to_owned()]);
}

/// Runs every file of `fuzz/corpus/NAME/` (from the repository root) through `f`.
#[doc(hidden)]
pub fn run_corpus(name: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "fuzz seed {} panics", path.display());
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds (and every crash the fuzzers found) of each target.
    #[test]
    fn fuzz_corpus_seeds_run_clean() {
        for (name, f) in [
            ("syslog", syslog as fn(&[u8])),
            ("decode", decode),
            ("timerange", timerange),
            ("snapshot_json", snapshot_json),
        ] {
            assert!(run_corpus(name, f) > 0, "no seeds for {name}");
        }
    }
}
