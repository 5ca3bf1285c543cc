//! Entry point of the `rule_file` fuzz target (`fuzz/`): a rule file's text
//! through loading and validation, as `[rules] paths` reads it. The
//! committed seeds of `fuzz/corpus/rule_file/` run in `cargo test` (below).

use super::RuleSet;

/// One rule file; it must load or be refused, never panic.
pub fn rule_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let actions = ["mail".to_owned(), "log".to_owned()];
    if let Ok(set) = RuleSet::from_file_text(text, "fuzz.toml", &actions) {
        for r in &set.rules {
            let _ = r.needed_columns();
            let _ = r.origin_label();
        }
    }
}

#[cfg(test)]
mod tests {
    /// The committed seeds (and every crash the fuzzer found).
    #[test]
    fn fuzz_corpus_seeds_run_clean() {
        let n = siemstress_common::fuzzing::run_corpus("rule_file", super::rule_file);
        assert!(n > 0);
    }
}
