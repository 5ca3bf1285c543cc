//! siemtrigger's rules: the model the engine runs, loaded from
//! `[rules] paths` files and inline `[[rule]]` tables, with errors that name
//! the file, the line, the rule and the key.
//!
//! ```text
//! def.rs       rules as written: the common keys, one struct per type
//!              (deny_unknown_fields), read with the line of every key;
//!              the fingerprint of a definition
//! validate.rs  written → Rule: the common checks, then each type's own
//! matcher.rs   match/reset/first/second: a shared Filter + the regexes
//! prefilter.rs which of many matchers an event may match (one pass per field)
//! template.rs  {name} templates and the names they may use
//! load.rs      RuleSet: files, globs, inline rules, duplicate names
//! builtin.rs   the shipped pack (config/rules/), compiled in
//! error.rs     RuleError (file, line, rule, key) and key lines
//! ```
//!
//! A rule file:
//!
//! ```toml
//! [[rule]]
//! name = "ssh-bruteforce"
//! type = "threshold"
//! table = "auth"
//! match = { process = ["sshd"], regex = 'Failed password for (?P<user>\S+) from (?P<ip>\S+)' }
//! key = "{ip}"
//! window = "60s"
//! threshold = 5
//! message = "SSH brute force from {ip} ({count} failures)"
//! ```

pub mod builtin;
mod def;
mod error;
pub mod expr;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod literal;
mod load;
mod matcher;
pub mod prefilter;
mod template;
mod validate;

use std::collections::BTreeSet;
use std::path::PathBuf;

use siemstress_common::ident::Ident;
use siemstress_common::snapshot::diff::ChangeKind;

pub use matcher::{Matcher, RuleRegex, STEP_CAPTURE};
pub use template::{Piece, Template, column_alias, is_column, template_column};

/// Alert severities, lowest first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub severity: String,
    pub key: Template,
    pub message: Template,
    pub actions: Vec<String>,
    /// Where the rule was defined.
    pub origin: String,
    /// The line of its `name` in `origin`.
    pub line: usize,
    /// One of the shipped pack's, compiled in (`origin` is its path in
    /// the repository).
    pub builtin: bool,
    /// Hash of the definition: state of an edited rule is not reused.
    pub fingerprint: String,
    /// The type, with its own settings.
    pub kind: Kind,
    /// At most this many keys hold a window (threshold, pair, absence):
    /// the rule's `max_keys`, else `[rules] max_keys` (filled in when the
    /// config's rules load), else [`crate::engine::DEFAULT_MAX_KEYS`].
    pub max_keys: Option<usize>,
}

/// A rule's type and what only that type has.
#[derive(Debug, Clone)]
pub enum Kind {
    Single(Single),
    Threshold(Threshold),
    Pair(Pair),
    Absence(Pair),
    SnapshotChange(SnapshotChange),
}

/// `single`: every event that matches raises an alert.
#[derive(Debug, Clone)]
pub struct Single {
    /// `None`: every event table.
    pub table: Option<Ident>,
    pub matcher: Matcher,
}

/// `threshold`: `threshold` events (or distinct values) of a key within `window`.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub table: Option<Ident>,
    pub matcher: Matcher,
    /// An event matching `reset` clears its key's count.
    pub reset: Option<Matcher>,
    pub window_ms: i64,
    /// The count needed to fire (the lower bound of `bound`, rounded up; 1
    /// without one): what `--explain-rule` shows as needed.
    pub threshold: u64,
    /// Column (canonical name) or capture counted distinctly, or (sum, avg,
    /// percentile) whose numbers are measured.
    pub distinct: Option<String>,
    /// What is measured over the window's events.
    pub metric: Metric,
    /// When the measure fires: with only a lower bound, as soon as it holds
    /// (SEC's sliding window); with an upper bound, at the window's end.
    pub bound: Bound,
}

/// What a `threshold` rule measures over the events of a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Events (`threshold = N`).
    Count,
    /// Distinct values of `distinct`.
    Distinct,
    /// `sum = FIELD`, `avg = FIELD`, `percentile = FIELD` (with `percent`):
    /// events without a number there are not counted.
    Sum,
    Avg,
    Percentile(f64),
    /// `steps`: how many of the steps occurred (Sigma `temporal`), or how
    /// long a prefix of them occurred in order (`ordered`, `temporal_ordered`).
    Steps {
        count: usize,
        ordered: bool,
    },
}

/// A condition on a measure: lower and upper bounds, each `(value, inclusive)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bound {
    pub lo: Option<(f64, bool)>,
    pub hi: Option<(f64, bool)>,
}

impl Bound {
    /// `>= n`.
    pub fn at_least(n: u64) -> Self {
        Bound {
            lo: Some((n as f64, true)),
            hi: None,
        }
    }

    pub fn holds(&self, v: f64) -> bool {
        self.lo
            .is_none_or(|(n, inc)| if inc { v >= n } else { v > n })
            && self
                .hi
                .is_none_or(|(n, inc)| if inc { v <= n } else { v < n })
    }

    /// Reads `5`, `">= 5"`, `"> 100, <= 200"`, `"== 3"`, `"< 10"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut b = Bound::default();
        for part in s.split(',').map(str::trim) {
            let (op, n) = ["==", ">=", "<=", ">", "<", "="]
                .iter()
                .find_map(|op| part.strip_prefix(op).map(|n| (*op, n.trim())))
                .unwrap_or(("==", part));
            let n: f64 = n
                .parse()
                .map_err(|_| format!("{part:?}: expected >, >=, <, <= or == and a number"))?;
            let (lo, hi) = match op {
                ">" => (Some((n, false)), None),
                ">=" => (Some((n, true)), None),
                "<" => (None, Some((n, false))),
                "<=" => (None, Some((n, true))),
                _ => (Some((n, true)), Some((n, true))),
            };
            if lo.is_some() {
                if b.lo.is_some() {
                    return Err("two lower bounds".into());
                }
                b.lo = lo;
            }
            if hi.is_some() {
                if b.hi.is_some() {
                    return Err("two upper bounds".into());
                }
                b.hi = hi;
            }
        }
        Ok(b)
    }

    /// True if the measure is checked at the window's end (an upper bound).
    pub fn at_end(&self) -> bool {
        self.hi.is_some()
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((n, inc)) = self.lo {
            parts.push(format!("{}{n}", if inc { ">= " } else { "> " }));
        }
        if let Some((n, inc)) = self.hi {
            parts.push(format!("{}{n}", if inc { "<= " } else { "< " }));
        }
        f.write_str(&parts.join(", "))
    }
}

/// `pair` (a `second` within `window` of a `first` fires) and `absence` (no
/// `second` within `window` fires at the window's end).
#[derive(Debug, Clone)]
pub struct Pair {
    pub table: Option<Ident>,
    pub first: Matcher,
    pub second: Matcher,
    pub window_ms: i64,
}

/// `snapshot_change`: records of the diff of each new run of `snapshot`.
#[derive(Debug, Clone)]
pub struct SnapshotChange {
    pub snapshot: String,
    /// Globs matched as `siemquery --snapshot NAME --diff --exclude` does.
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    /// The kinds of diff records that raise alerts (default all three).
    pub change: Vec<ChangeKind>,
    /// Fields the record's row must have, with these values (`row = {
    /// verified = false }`); only added and removed records carry a row, so
    /// a rule with `row` sees only those.
    pub row: serde_json::Map<String, serde_json::Value>,
}

impl Rule {
    /// Where the rule comes from, for people: `built-in config/rules/ssh.toml:8`,
    /// `/etc/siemstress/rules.d/x.toml:3`, `siemstress.toml:12` (inline).
    pub fn origin_label(&self) -> String {
        if self.builtin {
            return format!("built-in {}:{}", self.origin, self.line);
        }
        let file = self
            .origin
            .strip_suffix(load::INLINE_SUFFIX)
            .unwrap_or(&self.origin);
        format!("{file}:{}", self.line)
    }

    /// The type's name, as in rule files.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Single(_) => "single",
            Kind::Threshold(_) => "threshold",
            Kind::Pair(_) => "pair",
            Kind::Absence(_) => "absence",
            Kind::SnapshotChange(_) => "snapshot_change",
        }
    }

    /// The event table the rule reads (`None`: every one, or none for a
    /// `snapshot_change` rule).
    pub fn table(&self) -> Option<&Ident> {
        match &self.kind {
            Kind::Single(r) => r.table.as_ref(),
            Kind::Threshold(r) => r.table.as_ref(),
            Kind::Pair(r) | Kind::Absence(r) => r.table.as_ref(),
            Kind::SnapshotChange(_) => None,
        }
    }

    /// `window` in ms (threshold, pair, absence).
    pub fn window_ms(&self) -> Option<i64> {
        match &self.kind {
            Kind::Threshold(r) => Some(r.window_ms),
            Kind::Pair(r) | Kind::Absence(r) => Some(r.window_ms),
            Kind::Single(_) | Kind::SnapshotChange(_) => None,
        }
    }

    /// The `snapshot_change` settings, if the rule is one.
    pub fn snapshot(&self) -> Option<&SnapshotChange> {
        match &self.kind {
            Kind::SnapshotChange(s) => Some(s),
            _ => None,
        }
    }

    /// The matchers of the rule, with their role names.
    pub fn matchers(&self) -> Vec<(&'static str, &Matcher)> {
        match &self.kind {
            Kind::Single(r) => vec![("match", &r.matcher)],
            Kind::Threshold(r) => {
                let mut v = vec![("match", &r.matcher)];
                v.extend(r.reset.as_ref().map(|m| ("reset", m)));
                v
            }
            Kind::Pair(r) | Kind::Absence(r) => vec![("first", &r.first), ("second", &r.second)],
            Kind::SnapshotChange(_) => Vec::new(),
        }
    }

    /// Columns the evaluation reads (canonical names, without id and ts).
    pub fn needed_columns(&self) -> BTreeSet<&'static str> {
        let mut names: Vec<&str> = self.key.names().chain(self.message.names()).collect();
        match &self.kind {
            Kind::Threshold(Threshold {
                distinct: Some(d), ..
            }) => names.push(d),
            Kind::Pair(p) | Kind::Absence(p) => {
                for r in &p.second.regex {
                    if let RuleRegex::BackRef { template, .. } = r {
                        names.extend(template.names());
                    }
                }
            }
            _ => {}
        }
        let mut out: BTreeSet<&'static str> =
            names.into_iter().filter_map(template_column).collect();
        if self.matchers().iter().any(|(_, m)| m.needs_raw()) {
            out.insert("raw");
        }
        for (_, m) in self.matchers() {
            out.extend(m.expr_columns());
        }
        out.remove("id");
        out.remove("ts");
        out
    }
}

/// Every rule of a configuration.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Files skipped with a reason (e.g. Sigma `.yml`, not supported yet).
    pub skipped: Vec<(PathBuf, String)>,
    /// How many of the rules are built-in ones.
    pub builtin: usize,
}

impl RuleSet {
    /// The rule called `name`.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests;
