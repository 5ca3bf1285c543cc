//! `siemtrigger` rules: loading from `[rules] paths` globs and inline
//! `[[rule]]` tables, and validation with errors that name the file, the
//! rule and the key.
//!
//! A rule's `match` (and `reset`, `first`, `second`) takes the siemquery
//! filter vocabulary. Everything but the regexes becomes a shared
//! [`Filter`] (SQL with bound values); the regexes run in Rust, where their
//! named captures become `{name}` values for `key` and `message`.
//!
//! ```
//! use siemstress_common::rules::RuleSet;
//! let text = r#"
//! [[rule]]
//! name = "ssh-bruteforce"
//! type = "threshold"
//! table = "auth"
//! match = { process = ["sshd"], regex = 'Failed password for (?P<user>\S+) from (?P<ip>\S+)' }
//! key = "{ip}"
//! window = "60s"
//! threshold = 5
//! message = "SSH brute force from {ip} ({count} failures)"
//! "#;
//! let rules = RuleSet::from_file_text(text, "example.toml", &[]).unwrap();
//! assert_eq!(rules.rules[0].window_ms, Some(60_000));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::event::ROW_COLUMNS;
use crate::filter::{Field, Filter};
use crate::ident::Ident;
use crate::paths::{expand_glob, has_glob_chars};
use crate::snapshot::diff::{ChangeKind, Excludes};

/// A rule that failed to load: where, which rule, which key, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}{}{}: {message}", rule.as_ref().map(|r| format!(": rule {r:?}")).unwrap_or_default(), key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default())]
pub struct RuleError {
    /// File (or `siemstress.toml [[rule]]`) the rule came from.
    pub origin: String,
    pub rule: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

/// The event column `name` (or its alias) names, if it may be used as
/// `{name}` in templates and as `distinct`: every column but `parsed` and `extra`.
pub fn template_column(name: &str) -> Option<&'static str> {
    let name = column_alias(name);
    ROW_COLUMNS
        .iter()
        .copied()
        .find(|c| *c == name && !matches!(*c, "parsed" | "extra"))
}

/// siemquery's short names for columns, accepted in templates too.
pub fn column_alias(name: &str) -> &str {
    match name {
        "shost" => "source_host",
        "sport" => "source_port",
        "dhost" => "dest_host",
        "dport" => "dest_port",
        other => other,
    }
}

/// True if `name` (or its alias) is an event column.
pub fn is_column(name: &str) -> bool {
    template_column(name).is_some()
}

/// Values a `message` may use besides captures and columns.
pub const MESSAGE_BUILTINS: [&str; 5] = ["count", "key", "rule", "first_ts", "window"];

/// `{name}`s of a `snapshot_change` rule's `key` and `message`, from the
/// diff record: `snapshot`, `change`, `key` (the record's key), `column`,
/// `old`, `new`, `row`, `host`, `run` and `base_run` (run ids), `ts` (the
/// run's time), `detail` (`" COLUMN: OLD -> NEW"` for a changed column, else
/// empty); a `message` also `rule`, `count` and `first_ts` (the base run's time).
pub const SNAPSHOT_VARS: [&str; 11] = [
    "snapshot", "change", "key", "column", "old", "new", "row", "host", "run", "base_run", "ts",
];

/// The `{name}`s a `snapshot_change` message may use besides [`SNAPSHOT_VARS`].
pub const SNAPSHOT_MESSAGE_BUILTINS: [&str; 4] = ["detail", "rule", "count", "first_ts"];

/// Default `key` of a `snapshot_change` rule: the diff record's key.
pub const SNAPSHOT_DEFAULT_KEY: &str = "{key}";

/// Default `message` of a `snapshot_change` rule.
pub const SNAPSHOT_DEFAULT_MESSAGE: &str = "{snapshot} on {host}: {change} {key}{detail}";

/// Rule types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Single,
    Threshold,
    Pair,
    Absence,
    SnapshotChange,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "single" => Kind::Single,
            "threshold" => Kind::Threshold,
            "pair" => Kind::Pair,
            "absence" => Kind::Absence,
            "snapshot_change" => Kind::SnapshotChange,
            _ => return None,
        })
    }

    /// The name used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Single => "single",
            Kind::Threshold => "threshold",
            Kind::Pair => "pair",
            Kind::Absence => "absence",
            Kind::SnapshotChange => "snapshot_change",
        }
    }
}

/// Alert severities, lowest first.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// A piece of a `{name}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(String),
}

/// A string with `{name}` placeholders (`{{` and `}}` are literal braces).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub source: String,
    pub pieces: Vec<Piece>,
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// Parses a template; a `{` that does not start `{name}` is literal.
    pub fn parse(source: &str) -> Self {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if let Some((name, after)) = tail
                .strip_prefix('{')
                .and_then(|st| st.split_once('}'))
                .filter(|(name, _)| is_ident(name))
            {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(name.to_owned()));
                rest = after;
                continue;
            }
            lit.push_str(&tail[..1]);
            rest = &tail[1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Self {
            source: source.to_owned(),
            pieces,
        }
    }

    /// Names used as `{name}`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(n) => Some(n.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// Renders with `lookup`; a name it does not know renders empty.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(n) => out.push_str(&lookup(n).unwrap_or_default()),
            }
        }
        out
    }
}

/// One include regex of a match: fixed, or (in `second`) a template whose
/// `{name}`s are filled from the open `first` event, regex-escaped.
#[derive(Debug, Clone)]
pub enum RuleRegex {
    Fixed(Regex),
    BackRef {
        template: Template,
        /// Capture group names (they do not depend on the filled-in values).
        groups: BTreeSet<String>,
    },
}

impl RuleRegex {
    /// Capture group names.
    pub fn groups(&self) -> BTreeSet<String> {
        match self {
            RuleRegex::Fixed(r) => r.capture_names().flatten().map(str::to_owned).collect(),
            RuleRegex::BackRef { groups, .. } => groups.clone(),
        }
    }

    /// The regex with `{name}`s filled in from `vars` (values escaped).
    pub fn instantiate(&self, vars: &BTreeMap<String, String>) -> Result<Regex, regex::Error> {
        match self {
            RuleRegex::Fixed(r) => Ok(r.clone()),
            RuleRegex::BackRef { template, .. } => {
                let mut src = String::new();
                for p in &template.pieces {
                    match p {
                        Piece::Lit(s) => src.push_str(s),
                        Piece::Var(n) => src.push_str(&regex::escape(
                            vars.get(n).map(String::as_str).unwrap_or(""),
                        )),
                    }
                }
                Regex::new(&src)
            }
        }
    }
}

/// A rule's `match` (or `reset`, `first`, `second`): the SQL part as a
/// shared [`Filter`], the regexes applied in Rust.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Everything but the regexes (its `regex` field stays empty).
    pub filter: Filter,
    /// `regex`: an event must match one of them (none: no condition).
    pub regex: Vec<RuleRegex>,
    /// `rregex`: an event matching one of them is dropped.
    pub rregex: Vec<Regex>,
}

impl Matcher {
    /// Capture names every include regex provides (empty without regexes).
    pub fn captures(&self) -> BTreeSet<String> {
        let mut it = self.regex.iter().map(RuleRegex::groups);
        let first = it.next().unwrap_or_default();
        it.fold(first, |acc, g| acc.intersection(&g).cloned().collect())
    }

    /// True if a regex refers to the open `first` event.
    pub fn has_backrefs(&self) -> bool {
        self.regex
            .iter()
            .any(|r| matches!(r, RuleRegex::BackRef { .. }))
    }

    /// True if the rule must read `raw` to decide.
    pub fn needs_raw(&self) -> bool {
        !self.regex.is_empty() || !self.rregex.is_empty()
    }

    /// The Rust-side check on `raw` for a matcher without back-references:
    /// `None` if the event does not match, else the named captures.
    pub fn check(&self, raw: &str) -> Option<BTreeMap<String, String>> {
        if self.has_backrefs() {
            return self.check_with(raw, &BTreeMap::new());
        }
        // Fixed regexes are used as they are: a cloned `Regex` starts with an
        // empty cache, and rebuilding its lazy DFA for every event cost ~80%
        // of an evaluation.
        if self.rregex.iter().any(|r| r.is_match(raw)) {
            return None;
        }
        if self.regex.is_empty() {
            return Some(BTreeMap::new());
        }
        self.regex.iter().find_map(|r| match r {
            RuleRegex::Fixed(re) => captures_of(re, raw),
            RuleRegex::BackRef { .. } => None,
        })
    }

    /// As [`Matcher::check`], filling back-references from `first_vars`.
    pub fn check_with(
        &self,
        raw: &str,
        first_vars: &BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        self.check_instantiated(raw, &self.instantiate(first_vars))
    }

    /// The include regexes with back-references filled from `first_vars`
    /// (compile once per open window, then [`Matcher::check_instantiated`]).
    pub fn instantiate(&self, first_vars: &BTreeMap<String, String>) -> Vec<Regex> {
        self.regex
            .iter()
            .filter_map(|r| r.instantiate(first_vars).ok())
            .collect()
    }

    /// The Rust-side check with include regexes from [`Matcher::instantiate`].
    pub fn check_instantiated(
        &self,
        raw: &str,
        regexes: &[Regex],
    ) -> Option<BTreeMap<String, String>> {
        if self.rregex.iter().any(|r| r.is_match(raw)) {
            return None;
        }
        if self.regex.is_empty() {
            return Some(BTreeMap::new());
        }
        regexes.iter().find_map(|re| captures_of(re, raw))
    }
}

/// The named captures of `re`'s first match in `raw`, if it matches.
fn captures_of(re: &Regex, raw: &str) -> Option<BTreeMap<String, String>> {
    let c = re.captures(raw)?;
    let mut out = BTreeMap::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = c.name(name) {
            out.insert(name.to_owned(), m.as_str().to_owned());
        }
    }
    Some(out)
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kind: Kind,
    /// `None`: every event table.
    pub table: Option<Ident>,
    pub severity: String,
    /// `match` (single, threshold).
    pub matcher: Option<Matcher>,
    /// `reset` (threshold).
    pub reset: Option<Matcher>,
    /// `first` and `second` (pair, absence).
    pub first: Option<Matcher>,
    pub second: Option<Matcher>,
    pub key: Template,
    pub window_ms: Option<i64>,
    pub threshold: u64,
    /// Column (canonical name) or capture counted distinctly.
    pub distinct: Option<String>,
    pub message: Template,
    pub actions: Vec<String>,
    /// `snapshot_change`: snapshot name, and exclude and include globs
    /// (matched as `siemquery --snapshot NAME --diff --exclude` does).
    pub snapshot: Option<String>,
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    /// `snapshot_change`: the kinds of diff records that raise alerts
    /// (`change`; default all three).
    pub change: Vec<ChangeKind>,
    /// `snapshot_change`: fields the record's row must have, with these
    /// values (`row = { verified = false }`); only added and removed
    /// records carry a row, so a rule with `row` sees only those.
    pub row: serde_json::Map<String, serde_json::Value>,
    /// Where the rule was defined.
    pub origin: String,
    /// Hash of the definition: state of an edited rule is not reused.
    pub fingerprint: String,
}

impl Rule {
    /// The matchers of the rule, with their role names.
    pub fn matchers(&self) -> Vec<(&'static str, &Matcher)> {
        let mut v = Vec::new();
        for (n, m) in [
            ("match", &self.matcher),
            ("reset", &self.reset),
            ("first", &self.first),
            ("second", &self.second),
        ] {
            if let Some(m) = m {
                v.push((n, m));
            }
        }
        v
    }

    /// Columns the evaluation reads (canonical names, without id and ts).
    pub fn needed_columns(&self) -> BTreeSet<&'static str> {
        let mut names: Vec<&str> = self.key.names().chain(self.message.names()).collect();
        if let Some(d) = &self.distinct {
            names.push(d);
        }
        if let Some(s) = &self.second {
            for r in &s.regex {
                if let RuleRegex::BackRef { template, .. } = r {
                    names.extend(template.names());
                }
            }
        }
        let mut out: BTreeSet<&'static str> =
            names.into_iter().filter_map(template_column).collect();
        if self.matchers().iter().any(|(_, m)| m.needs_raw()) {
            out.insert("raw");
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
}

/// `[rules]` in `siemstress.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSection {
    #[serde(default)]
    paths: Vec<String>,
}

/// A rule file: only `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

/// A scalar or a list of scalars in a match table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum MatchValue {
    One(Scalar),
    Many(Vec<Scalar>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

type RawMatch = BTreeMap<String, MatchValue>;

/// A rule as written; validated into [`Rule`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    table: Option<String>,
    severity: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<RawMatch>,
    reset: Option<RawMatch>,
    first: Option<RawMatch>,
    second: Option<RawMatch>,
    key: Option<String>,
    window: Option<String>,
    threshold: Option<i64>,
    distinct: Option<String>,
    message: Option<String>,
    #[serde(default)]
    actions: Vec<String>,
    snapshot: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    // Keys added later are left out of the canonical form when absent, so
    // that the fingerprints of existing rules (and their state) stay valid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    include: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row: Option<serde_json::Map<String, serde_json::Value>>,
    description: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(l) => l.clone(),
        }
    }
}

impl RuleSet {
    /// Loads the rules a config names: files matched by `[rules] paths`
    /// (relative to the config file's directory), then inline `[[rule]]`s.
    pub fn load(config: &Config) -> Result<Self, RuleError> {
        let cfg_origin = config.origin_name();
        let base = config.base_dir();
        let actions = action_names(config);
        let mut set = RuleSet::default();
        if let Some(v) = &config.rules {
            let section: RulesSection = v.clone().try_into().map_err(|e: toml::de::Error| {
                err(&cfg_origin, None, Some("rules"), e.message().to_owned())
            })?;
            for pattern in &section.paths {
                let full = if Path::new(pattern).is_absolute() {
                    PathBuf::from(pattern)
                } else {
                    base.join(pattern)
                };
                let paths = expand_glob(&full).map_err(|m| {
                    err(
                        &cfg_origin,
                        None,
                        Some("rules.paths"),
                        format!("bad glob {pattern:?}: {m}"),
                    )
                })?;
                let mut found = paths;
                found.sort();
                if found.is_empty() && !has_glob_chars(pattern) {
                    return Err(err(
                        &cfg_origin,
                        None,
                        Some("rules.paths"),
                        format!("rule file {} does not exist", full.display()),
                    ));
                }
                for path in found {
                    if path.is_dir() {
                        continue;
                    }
                    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                    if ext == "yml" || ext == "yaml" {
                        set.skipped
                            .push((path, "Sigma rules are not supported yet".into()));
                        continue;
                    }
                    let origin = path.display().to_string();
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        err(&origin, None, None, format!("cannot read rule file: {e}"))
                    })?;
                    set.add_file_text(&text, &origin, &actions)?;
                }
            }
        }
        if let Some(v) = &config.rule {
            let origin = format!("{cfg_origin} [[rule]]");
            let raws: Vec<RawRule> = v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(&origin, None, None, e.message().to_owned()))?;
            for raw in raws {
                set.push(validate(raw, &origin, &actions)?)?;
            }
        }
        Ok(set)
    }

    /// Parses the text of one rule file (`origin` names it in errors);
    /// `actions` are the action names configured (`[actions.NAME]`).
    pub fn from_file_text(text: &str, origin: &str, actions: &[String]) -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        set.add_file_text(text, origin, actions)?;
        Ok(set)
    }

    fn add_file_text(
        &mut self,
        text: &str,
        origin: &str,
        actions: &[String],
    ) -> Result<(), RuleError> {
        let file: RuleFile =
            toml::from_str(text).map_err(|e| err(origin, None, None, e.to_string()))?;
        for raw in file.rule {
            self.push(validate(raw, origin, actions)?)?;
        }
        Ok(())
    }

    fn push(&mut self, rule: Rule) -> Result<(), RuleError> {
        if let Some(other) = self.rules.iter().find(|r| r.name == rule.name) {
            return Err(err(
                &rule.origin,
                Some(&rule.name),
                Some("name"),
                format!("a rule of that name is already defined in {}", other.origin),
            ));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// The rule called `name`.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Names under `[actions]` in the config.
pub fn action_names(config: &Config) -> Vec<String> {
    match &config.actions {
        Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn err(origin: &str, rule: Option<&str>, key: Option<&str>, message: String) -> RuleError {
    RuleError {
        origin: origin.to_owned(),
        rule: rule.map(str::to_owned),
        key: key.map(str::to_owned),
        message,
    }
}

fn validate(raw: RawRule, origin: &str, actions: &[String]) -> Result<Rule, RuleError> {
    let fingerprint = {
        use sha2::Digest;
        let canon = serde_json::to_string(&raw).unwrap_or_default();
        let d = sha2::Sha256::digest(canon.as_bytes());
        d[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let name = raw
        .name
        .clone()
        .ok_or_else(|| err(origin, None, Some("name"), "missing".into()))?;
    let e = |key: &str, message: String| err(origin, Some(&name), Some(key), message);
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    {
        return Err(e(
            "name",
            "use letters, digits and _ - . : (at most 128)".into(),
        ));
    }
    let kind_s = raw
        .kind
        .as_deref()
        .ok_or_else(|| e("type", "missing".into()))?;
    let kind = Kind::parse(kind_s).ok_or_else(|| {
        e(
            "type",
            format!("unknown type {kind_s:?} (single, threshold, pair, absence, snapshot_change)"),
        )
    })?;
    let table = raw
        .table
        .as_deref()
        .map(|t| Ident::new(t, "table").map_err(|x| e("table", x.to_string())))
        .transpose()?;
    let severity = raw.severity.clone().unwrap_or_else(|| "medium".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(e(
            "severity",
            format!("unknown severity {severity:?} (info, low, medium, high, critical)"),
        ));
    }
    for a in &raw.actions {
        if !actions.contains(a) {
            return Err(e(
                "actions",
                format!("no action {a:?} is configured (add [actions.{a}] to siemstress.toml)"),
            ));
        }
    }
    let allowed = |key: &str, present: bool, ok: bool| -> Result<(), RuleError> {
        if present && !ok {
            Err(e(key, format!("not used by {} rules", kind.as_str())))
        } else {
            Ok(())
        }
    };
    let windowed = matches!(kind, Kind::Threshold | Kind::Pair | Kind::Absence);
    let paired = matches!(kind, Kind::Pair | Kind::Absence);
    let matching = matches!(kind, Kind::Single | Kind::Threshold);
    allowed("window", raw.window.is_some(), windowed)?;
    allowed(
        "threshold",
        raw.threshold.is_some(),
        kind == Kind::Threshold,
    )?;
    allowed("distinct", raw.distinct.is_some(), kind == Kind::Threshold)?;
    allowed("reset", raw.reset.is_some(), kind == Kind::Threshold)?;
    allowed("match", raw.matcher.is_some(), matching)?;
    allowed("first", raw.first.is_some(), paired)?;
    allowed("second", raw.second.is_some(), paired)?;
    allowed(
        "snapshot",
        raw.snapshot.is_some(),
        kind == Kind::SnapshotChange,
    )?;
    allowed(
        "exclude",
        !raw.exclude.is_empty(),
        kind == Kind::SnapshotChange,
    )?;
    allowed(
        "include",
        !raw.include.is_empty(),
        kind == Kind::SnapshotChange,
    )?;
    allowed("change", raw.change.is_some(), kind == Kind::SnapshotChange)?;
    allowed("row", raw.row.is_some(), kind == Kind::SnapshotChange)?;
    if kind == Kind::SnapshotChange {
        allowed("table", raw.table.is_some(), false)?;
    }

    let window_ms = match &raw.window {
        Some(w) => {
            let d = crate::time::parse_duration(w).map_err(|x| e("window", x.to_string()))?;
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if ms <= 0 {
                return Err(e("window", "must be longer than 0".into()));
            }
            Some(ms)
        }
        None if windowed => return Err(e("window", "missing (e.g. window = \"60s\")".into())),
        None => None,
    };
    let threshold = match raw.threshold {
        Some(t) if t >= 1 => t as u64,
        Some(t) => return Err(e("threshold", format!("must be at least 1, not {t}"))),
        None if kind == Kind::Threshold => {
            return Err(e("threshold", "missing (e.g. threshold = 5)".into()));
        }
        None => 1,
    };

    let build = |key: &str, m: &Option<RawMatch>, backrefs: bool| {
        m.as_ref()
            .map(|m| build_matcher(m, backrefs).map_err(|(k, msg)| e(&format!("{key}.{k}"), msg)))
            .transpose()
    };
    let matcher = build("match", &raw.matcher, false)?;
    let reset = build("reset", &raw.reset, false)?;
    let first = build("first", &raw.first, false)?;
    let second = build("second", &raw.second, true)?;
    if matching && matcher.is_none() {
        return Err(e("match", "missing".into()));
    }
    if paired && first.is_none() {
        return Err(e("first", "missing".into()));
    }
    if paired && second.is_none() {
        return Err(e("second", "missing".into()));
    }
    if let Some(name) = &raw.snapshot {
        crate::snapshot::validate_name(name).map_err(|_| {
            e(
                "snapshot",
                format!(
                    "{name:?} is not a snapshot name (1-64 letters, digits, _ and -, as \
                     siemparse --snapshot NAME / --gather KIND stores it)"
                ),
            )
        })?;
    } else if kind == Kind::SnapshotChange {
        return Err(e(
            "snapshot",
            "missing (the snapshot name, e.g. snapshot = \"listenports\")".into(),
        ));
    }
    let change = match &raw.change {
        None => vec![ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed],
        Some(v) => {
            let mut out = Vec::new();
            for c in v.list() {
                let k = match c.as_str() {
                    "added" => ChangeKind::Added,
                    "removed" => ChangeKind::Removed,
                    "changed" => ChangeKind::Changed,
                    other => {
                        return Err(e(
                            "change",
                            format!("unknown change {other:?} (added, removed, changed)"),
                        ));
                    }
                };
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            if out.is_empty() {
                return Err(e(
                    "change",
                    "empty (leave it out for added, removed and changed)".into(),
                ));
            }
            out
        }
    };

    let snapshot_rule = kind == Kind::SnapshotChange;
    let key = Template::parse(raw.key.as_deref().unwrap_or(if snapshot_rule {
        SNAPSHOT_DEFAULT_KEY
    } else {
        ""
    }));
    let message = Template::parse(raw.message.as_deref().unwrap_or(if snapshot_rule {
        SNAPSHOT_DEFAULT_MESSAGE
    } else {
        "{rule}: {key} ({count} events)"
    }));
    let provides = |m: &Option<Matcher>, extra: &BTreeSet<String>| -> BTreeSet<String> {
        let mut s: BTreeSet<String> = m.as_ref().map(Matcher::captures).unwrap_or_default();
        s.extend(extra.iter().cloned());
        s
    };
    let none = BTreeSet::new();
    let check = |what: &str, t: &Template, caps: &BTreeSet<String>, builtins: bool, whose: &str| {
        for n in t.names() {
            if is_column(n) || caps.contains(n) || (builtins && MESSAGE_BUILTINS.contains(&n)) {
                continue;
            }
            return Err(e(
                what,
                format!(
                    "{{{n}}} is neither a column nor a named capture of {whose} (captures: {})",
                    if caps.is_empty() {
                        "none".to_owned()
                    } else {
                        caps.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        }
        Ok(())
    };
    match kind {
        Kind::Single | Kind::Threshold => {
            let caps = provides(&matcher, &none);
            check("key", &key, &caps, false, "match.regex")?;
            check("message", &message, &caps, true, "match.regex")?;
            if reset.is_some() {
                check(
                    "reset",
                    &key,
                    &provides(&reset, &none),
                    false,
                    "reset.regex",
                )?;
            }
        }
        Kind::Pair | Kind::Absence => {
            let first_caps = provides(&first, &none);
            check("key", &key, &first_caps, false, "first.regex")?;
            let both = provides(&second, &first_caps);
            check("second", &key, &both, false, "second.regex or first.regex")?;
            let msg_caps = if kind == Kind::Pair {
                &both
            } else {
                &first_caps
            };
            check("message", &message, msg_caps, true, "the rule's regexes")?;
            for rr in second.iter().flat_map(|s| &s.regex) {
                if let RuleRegex::BackRef { template, .. } = rr {
                    check("second.regex", template, &first_caps, false, "first.regex")?;
                }
            }
        }
        Kind::SnapshotChange => {
            // Event columns mean nothing here: only the diff record's names.
            let vars = |what: &str, t: &Template, extra: &[&str]| {
                for n in t.names() {
                    if !SNAPSHOT_VARS.contains(&n) && !extra.contains(&n) {
                        let mut known: Vec<&str> = SNAPSHOT_VARS.to_vec();
                        known.extend(extra);
                        return Err(e(
                            what,
                            format!(
                                "{{{n}}} is not a field of a snapshot diff record (use {})",
                                known
                                    .iter()
                                    .map(|k| format!("{{{k}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
                Ok(())
            };
            vars("key", &key, &[])?;
            vars("message", &message, &SNAPSHOT_MESSAGE_BUILTINS)?;
        }
    }
    let distinct = match &raw.distinct {
        Some(d) => {
            let caps = provides(&matcher, &none);
            if is_column(d) {
                Some(column_alias(d).to_owned())
            } else if caps.contains(d) {
                Some(d.clone())
            } else {
                return Err(e(
                    "distinct",
                    format!("{d:?} is neither a column nor a named capture of match.regex"),
                ));
            }
        }
        None => None,
    };
    for (what, globs) in [("exclude", &raw.exclude), ("include", &raw.include)] {
        for x in globs {
            Excludes::new(std::slice::from_ref(x))
                .map_err(|g| e(what, format!("bad glob {x:?}: {g}")))?;
        }
    }
    let _ = &raw.description;
    Ok(Rule {
        name: name.clone(),
        kind,
        table,
        severity,
        matcher,
        reset,
        first,
        second,
        key,
        window_ms,
        threshold,
        distinct,
        message,
        actions: raw.actions.clone(),
        snapshot: raw.snapshot.clone(),
        exclude: raw.exclude.clone(),
        include: raw.include.clone(),
        change,
        row: raw.row.clone().unwrap_or_default(),
        origin: origin.to_owned(),
        fingerprint,
    })
}

fn texts(_key: &str, v: &MatchValue) -> Result<Vec<String>, (String, String)> {
    let list = match v {
        MatchValue::One(s) => vec![s.clone()],
        MatchValue::Many(l) => l.clone(),
    };
    Ok(list
        .into_iter()
        .map(|s| match s {
            Scalar::Text(t) => t,
            Scalar::Int(i) => i.to_string(),
        })
        .collect())
}

fn ints(key: &str, v: &MatchValue) -> Result<Vec<i64>, (String, String)> {
    texts(key, v)?
        .into_iter()
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| (key.to_owned(), format!("{s:?} is not a number")))
        })
        .collect()
}

/// Builds a matcher from a `match` table; errors carry the sub-key.
fn build_matcher(m: &RawMatch, backrefs: bool) -> Result<Matcher, (String, String)> {
    let mut out = Matcher::default();
    let f = &mut out.filter;
    for (key, v) in m {
        let (negated, base) = match key.strip_prefix('r') {
            // `rhost`, `rshost`, ...: but `raw` is not a key, and `regex` is not `egex`.
            Some(rest) if key != "regex" && !rest.is_empty() => (true, rest),
            _ => (false, key.as_str()),
        };
        let text_field: Option<&mut Field<String>> = match base {
            "host" => Some(&mut f.host),
            "process" => Some(&mut f.process),
            "user" => Some(&mut f.user),
            "shost" | "source_host" => Some(&mut f.source_host),
            "dhost" | "dest_host" => Some(&mut f.dest_host),
            "protocol" => Some(&mut f.protocol),
            "grep" => Some(&mut f.grep),
            _ => None,
        };
        if let Some(field) = text_field {
            let vals = texts(key, v)?;
            if negated {
                field.exclude.extend(vals);
            } else {
                field.include.extend(vals);
            }
            continue;
        }
        let int_field: Option<&mut Field<i64>> = match base {
            "pid" => Some(&mut f.pid),
            "sport" | "source_port" => Some(&mut f.source_port),
            "dport" | "dest_port" => Some(&mut f.dest_port),
            _ => None,
        };
        if let Some(field) = int_field {
            let vals = ints(key, v)?;
            if negated {
                field.exclude.extend(vals);
            } else {
                field.include.extend(vals);
            }
            continue;
        }
        match base {
            "regex" if !negated => {
                for src in texts(key, v)? {
                    out.regex.push(compile(key, &src, backrefs)?);
                }
            }
            "regex" => {
                for src in texts(key, v)? {
                    out.rregex.push(
                        Regex::new(&src)
                            .map_err(|x| (key.to_owned(), format!("bad regex {src:?}: {x}")))?,
                    );
                }
            }
            _ => {
                return Err((
                    key.to_owned(),
                    "unknown match key (use host, process, user, shost, dhost, protocol, pid, \
                     sport, dport, grep, regex, or an r-prefixed exclusion such as rshost)"
                        .into(),
                ));
            }
        }
    }
    Ok(out)
}

fn compile(key: &str, src: &str, backrefs: bool) -> Result<RuleRegex, (String, String)> {
    let bad = |x: regex::Error| (key.to_owned(), format!("bad regex {src:?}: {x}"));
    if backrefs {
        let t = Template::parse(src);
        if t.names().next().is_some() {
            // Group names do not depend on the values filled in later.
            let probe = t.render(|_| Some("x".into()));
            let re = Regex::new(&probe).map_err(bad)?;
            let groups = re.capture_names().flatten().map(str::to_owned).collect();
            return Ok(RuleRegex::BackRef {
                template: t,
                groups,
            });
        }
    }
    Regex::new(src).map(RuleRegex::Fixed).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Rule, RuleError> {
        RuleSet::from_file_text(text, "r.toml", &["mail".into()]).map(|s| s.rules[0].clone())
    }

    #[test]
    fn templates() {
        let t = Template::parse("a {x} {{b}} {1} {y}z{");
        assert_eq!(t.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(
            t.render(|n| Some(n.to_uppercase())),
            "a X {b} {1} Yz{".to_owned()
        );
    }

    #[test]
    fn errors_name_file_rule_and_key() {
        let e = one("[[rule]]\nname = \"a\"\ntype = \"thresh\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("type"));
        let s = e.to_string();
        assert!(
            s.contains("r.toml") && s.contains("\"a\"") && s.contains("thresh"),
            "{s}"
        );

        let e = one("[[rule]]\nname = \"a\"\ntype = \"threshold\"\nthreshold = 2\nmatch = { process = \"sshd\" }\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("window"));

        let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { regex = '(?P<x' }\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("match.regex"), "{e}");

        let e = one(
            "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { regex = '(?P<ip>\\S+)' }\nkey = \"{ipp}\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("key"));
        assert!(e.to_string().contains("{ipp}"), "{e}");

        let e = one(
            "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = \"x\" }\nmessage = \"{nope}\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("message"));

        let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { proces = \"x\" }\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("match.proces"));

        let e =
            one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nactions = [\"pager\"]\n")
                .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("actions"));

        // Unknown rule keys come from toml with the line.
        let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nwindw = \"5s\"\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("windw") && e.to_string().contains("line 5"),
            "{e}"
        );
    }

    #[test]
    fn match_vocabulary_builds_filter() {
        let r = one(
            "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = [\"sshd\", \"su\"], rshost = \"10.0.0.1\", dport = [22, \"80\"], grep = \"x\", rregex = 'y' }\n",
        )
        .unwrap();
        let m = r.matcher.unwrap();
        assert_eq!(m.filter.process.include, ["sshd", "su"]);
        assert_eq!(m.filter.source_host.exclude, ["10.0.0.1"]);
        assert_eq!(m.filter.dest_port.include, [22, 80]);
        assert_eq!(m.filter.grep.include, ["x"]);
        assert_eq!(m.rregex.len(), 1);
    }

    #[test]
    fn pair_backrefs() {
        let r = one("[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"1m\"\n\
             first = { regex = 'opened for (?P<u>\\w+)' }\n\
             second = { regex = 'closed for {u}$' }\nkey = \"{u}\"\n")
        .unwrap();
        let s = r.second.unwrap();
        assert!(s.has_backrefs());
        let vars = BTreeMap::from([("u".to_owned(), "a.b".to_owned())]);
        assert!(s.check_with("closed for a.b", &vars).is_some());
        assert!(s.check_with("closed for axb", &vars).is_none());
        // A back-reference to a name `first` does not capture is an error.
        let e = one("[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"1m\"\n\
             first = { regex = 'opened for (?P<u>\\w+)' }\n\
             second = { regex = 'closed for {v}' }\n")
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("second.regex"), "{e}");
    }

    #[test]
    fn fingerprints_of_existing_rules_do_not_change() {
        // Keys added for snapshot_change rules stay out of the canonical
        // form when absent: an upgrade must not drop every rule's windows.
        let r = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = \"sshd\" }\nkey = \"{host}\"\n")
            .unwrap();
        assert_eq!(r.fingerprint, "152c83dfb4ed3f83");
    }

    #[test]
    fn snapshot_change_rules() {
        let base = "[[rule]]\nname = \"s\"\ntype = \"snapshot_change\"\n";
        let r = one(&format!("{base}snapshot = \"listenports\"\n")).unwrap();
        assert_eq!(r.snapshot.as_deref(), Some("listenports"));
        assert_eq!(
            r.change,
            [ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed]
        );
        assert_eq!(r.key.source, SNAPSHOT_DEFAULT_KEY);
        assert_eq!(r.message.source, SNAPSHOT_DEFAULT_MESSAGE);
        let r = one(&format!(
            "{base}snapshot = \"users\"\nchange = \"added\"\nexclude = [\"users.*.last_change\"]\n\
             include = [\"users.*\"]\nkey = \"{{host}}:{{key}}\"\n\
             message = \"{{snapshot}}: {{change}} {{key}} {{column}} {{old}} -> {{new}} ({{count}}, {{first_ts}})\"\n"
        ))
        .unwrap();
        assert_eq!(r.change, [ChangeKind::Added]);
        assert_eq!(r.include, ["users.*"]);
        for (body, key) in [
            ("", "snapshot"),
            ("snapshot = \"a.b\"", "snapshot"),
            ("snapshot = \"u\"\nchange = [\"added\", \"gone\"]", "change"),
            ("snapshot = \"u\"\nchange = []", "change"),
            ("snapshot = \"u\"\nexclude = [\"a[b\"]", "exclude"),
            ("snapshot = \"u\"\ninclude = [\"a[b\"]", "include"),
            ("snapshot = \"u\"\ntable = \"auth\"", "table"),
            ("snapshot = \"u\"\nwindow = \"1m\"", "window"),
            ("snapshot = \"u\"\nmatch = {}", "match"),
            ("snapshot = \"u\"\nmessage = \"{process}\"", "message"),
            ("snapshot = \"u\"\nkey = \"{count}\"", "key"),
        ] {
            let e = one(&format!("{base}{body}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{body}: {e}");
            assert!(e.to_string().contains("r.toml") && e.to_string().contains("\"s\""));
        }
        // change/include only for snapshot_change rules.
        let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nchange = \"added\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("change"));
    }
}
