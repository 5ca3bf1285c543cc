//! Rule errors: the file and line, the rule, the key, and why.

/// A rule that failed to load.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{origin}{}{}{}: {message}",
    line.map(|l| format!(", line {l}")).unwrap_or_default(),
    rule.as_ref().map(|r| format!(": rule {r:?}")).unwrap_or_default(),
    key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default()
)]
pub struct RuleError {
    /// File (or `siemstress.toml [[rule]]`) the rule came from.
    pub origin: String,
    /// Line of the key (or of the rule's `[[rule]]`), 1-based.
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl RuleError {
    /// An error of the file `origin` as a whole (no rule, no key).
    pub fn file(origin: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            line: None,
            rule: None,
            key: None,
            message: message.into(),
        }
    }
}

/// Where one rule's keys are in its text, for errors that name the line.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    /// Line of the rule's table (`[[rule]]`).
    pub table: usize,
    /// Top-level keys of the rule and their lines.
    pub keys: Vec<(String, usize)>,
}

impl Lines {
    /// The line of `key` (its first segment: `match.regex` is on `match`'s
    /// line); a key the rule does not have is reported at the table's line.
    pub fn of(&self, key: &str) -> usize {
        let top = key.split('.').next().unwrap_or(key);
        self.keys
            .iter()
            .find(|(k, _)| k == top)
            .map_or(self.table, |(_, l)| *l)
    }
}
