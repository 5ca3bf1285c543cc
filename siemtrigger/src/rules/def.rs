//! Rules as written. The keys every rule has are [`Common`]; the others
//! belong to the rule's `type`, one struct per type ([`KindDef`]), each
//! with only its own keys (`deny_unknown_fields`).
//!
//! The `type` is read first and the table deserialized straight into that
//! type's struct: serde's `#[serde(tag = "type")]` buffers the whole table
//! before it looks at the tag, which drops toml's spans, so every error would
//! point at the `[[rule]]` line instead of the key.

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{Lines, RuleError};
use super::matcher::RawMatch;
use siemstress_common::config::line_of;

/// Rule types as written in `type`.
pub const TYPES: [&str; 5] = ["single", "threshold", "pair", "absence", "snapshot_change"];

/// Keys of every rule (besides `type`).
const COMMON_KEYS: [&str; 6] = [
    "name",
    "severity",
    "key",
    "message",
    "actions",
    "description",
];

/// Keys that only some types have: such a key in another type's rule is
/// "not used by" that type rather than unknown.
const TYPE_KEYS: [&str; 20] = [
    "sum",
    "avg",
    "percentile",
    "percent",
    "steps",
    "ordered",
    "table",
    "match",
    "reset",
    "first",
    "second",
    "window",
    "threshold",
    "distinct",
    "snapshot",
    "exclude",
    "include",
    "change",
    "row",
    "max_keys",
];

/// A rule as written: the common keys and the type's own.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub common: Common,
    pub kind: KindDef,
}

/// The keys every rule has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// Checked to be present before the table is read.
    pub name: String,
    pub severity: Option<String>,
    pub key: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    /// For the reader of the rule file; not used.
    pub description: Option<String>,
}

/// The keys of each rule type.
#[derive(Debug, Clone)]
pub enum KindDef {
    Single(SingleDef),
    Threshold(ThresholdDef),
    Pair(PairDef),
    Absence(PairDef),
    SnapshotChange(SnapshotDef),
}

/// `type = "single"`: every matching event raises an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleDef {
    pub table: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
}

/// `type = "threshold"`: `threshold` matching events (or distinct values)
/// of a key within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdDef {
    pub table: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub reset: Option<RawMatch>,
    pub window: Option<String>,
    pub threshold: Option<ThresholdValue>,
    pub distinct: Option<String>,
    /// Cap on keys holding a window (not in the fingerprint: a changed
    /// cap keeps the windows, trimmed to it).
    pub max_keys: Option<i64>,
    pub sum: Option<String>,
    pub avg: Option<String>,
    pub percentile: Option<String>,
    pub percent: Option<f64>,
    /// `where` expressions (Sigma `temporal`): the rule's events are those
    /// matching one; the measure is how many of them occurred.
    pub steps: Option<Vec<String>>,
    /// With `steps`: in the order written (Sigma `temporal_ordered`).
    pub ordered: Option<bool>,
}

/// `threshold = 5` (at least 5) or a condition: `"> 100, <= 200"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ThresholdValue {
    Int(i64),
    Text(String),
}

/// `type = "pair"` (a `second` within `window` of a `first`) and
/// `type = "absence"` (no `second` within `window`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairDef {
    pub table: Option<String>,
    pub first: Option<RawMatch>,
    pub second: Option<RawMatch>,
    pub window: Option<String>,
    pub max_keys: Option<i64>,
}

/// `type = "snapshot_change"`: records of the diff between a snapshot run
/// and the previous one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDef {
    pub snapshot: Option<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
    pub change: Option<OneOrMany>,
    pub row: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(l) => l.clone(),
        }
    }
}

impl KindDef {
    /// `max_keys` as written (threshold, pair, absence).
    pub fn max_keys(&self) -> Option<i64> {
        match self {
            KindDef::Threshold(d) => d.max_keys,
            KindDef::Pair(d) | KindDef::Absence(d) => d.max_keys,
            KindDef::Single(_) | KindDef::SnapshotChange(_) => None,
        }
    }

    /// The name used in `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            KindDef::Single(_) => "single",
            KindDef::Threshold(_) => "threshold",
            KindDef::Pair(_) => "pair",
            KindDef::Absence(_) => "absence",
            KindDef::SnapshotChange(_) => "snapshot_change",
        }
    }
}

/// A rule read from its text, with the lines of its keys.
#[derive(Debug)]
pub struct Read {
    pub def: RuleDef,
    pub lines: Lines,
}

/// Reads the `[[rule]]` tables of `text` (`origin` names it in errors). In
/// a rule file (`whole_file`) anything else is an error; in the config the
/// other tables are the config's.
pub fn read(text: &str, origin: &str, whole_file: bool) -> Result<Vec<Read>, RuleError> {
    let doc = DeTable::parse(text).map_err(|e| RuleError::file(origin, e.to_string()))?;
    let mut doc = doc.into_inner();
    let rules = doc.remove("rule");
    if whole_file && let Some((k, _)) = doc.iter().next() {
        return Err(RuleError {
            line: Some(line_of(text, k.span().start)),
            key: Some(k.get_ref().to_string()),
            message: "a rule file holds only [[rule]] tables".into(),
            ..RuleError::file(origin, "")
        });
    }
    let Some(rules) = rules else {
        return Ok(Vec::new());
    };
    let span = rules.span();
    let DeValue::Array(list) = rules.into_inner() else {
        return Err(RuleError {
            line: Some(line_of(text, span.start)),
            key: Some("rule".into()),
            message: "expected [[rule]] tables".into(),
            ..RuleError::file(origin, "")
        });
    };
    list.into_iter()
        .map(|item| read_one(text, origin, item))
        .collect()
}

/// One `[[rule]]` table.
fn read_one<'i>(
    text: &'i str,
    origin: &str,
    item: Spanned<DeValue<'i>>,
) -> Result<Read, RuleError> {
    let span = item.span();
    let mut lines = Lines {
        table: line_of(text, span.start),
        keys: Vec::new(),
    };
    let DeValue::Table(table) = item.into_inner() else {
        return Err(RuleError {
            line: Some(lines.table),
            key: Some("rule".into()),
            message: "expected [[rule]] tables".into(),
            ..RuleError::file(origin, "")
        });
    };
    for (k, _) in &table {
        lines
            .keys
            .push((k.get_ref().to_string(), line_of(text, k.span().start)));
    }
    let name = table
        .get("name")
        .and_then(|v| v.get_ref().as_str())
        .map(str::to_owned);
    let err = |key: &str, message: String| RuleError {
        origin: origin.to_owned(),
        line: Some(lines.of(key)),
        rule: name.clone(),
        key: Some(key.to_owned()),
        message,
    };
    if !table.contains_key("name") {
        return Err(err("name", "missing".into()));
    }
    let type_name = match table.get("type").map(|v| v.get_ref()) {
        None => return Err(err("type", "missing".into())),
        Some(v) => v.as_str().filter(|t| TYPES.contains(t)).ok_or_else(|| {
            let shown = match v.as_str() {
                Some(s) => format!("{s:?}"),
                None => v.type_str().to_owned(),
            };
            err(
                "type",
                format!("unknown type {shown} ({})", TYPES.join(", ")),
            )
        })?,
    }
    .to_owned();
    // The common keys and the type's own, each read on its own.
    let mut common = DeTable::new();
    let mut own = DeTable::new();
    for (k, v) in table {
        match k.get_ref().as_ref() {
            "type" => {}
            c if COMMON_KEYS.contains(&c) => {
                common.insert(k, v);
            }
            _ => {
                own.insert(k, v);
            }
        }
    }
    let de = |t: &DeTable<'i>| -> ValueDeserializer<'i> {
        ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(t.clone())))
    };
    let located = |e: toml::de::Error, t: &DeTable<'_>| locate(e, t, &type_name, &err);
    let common = Common::deserialize(de(&common)).map_err(|e| located(e, &common))?;
    let kind = match type_name.as_str() {
        "single" => SingleDef::deserialize(de(&own)).map(KindDef::Single),
        "threshold" => ThresholdDef::deserialize(de(&own)).map(KindDef::Threshold),
        "pair" => PairDef::deserialize(de(&own)).map(KindDef::Pair),
        "absence" => PairDef::deserialize(de(&own)).map(KindDef::Absence),
        _ => SnapshotDef::deserialize(de(&own)).map(KindDef::SnapshotChange),
    }
    .map_err(|e| located(e, &own))?;
    Ok(Read {
        def: RuleDef { common, kind },
        lines,
    })
}

/// A serde error of one rule as a [`RuleError`] on its key: an unknown key
/// names itself (a key of another type is "not used by" this one), any
/// other error the key whose text holds the error's position.
fn locate(
    e: toml::de::Error,
    table: &DeTable<'_>,
    type_name: &str,
    err: &dyn Fn(&str, String) -> RuleError,
) -> RuleError {
    let msg = e.message();
    if let Some(key) = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(k, _)| k)
    {
        return if TYPE_KEYS.contains(&key) {
            err(key, format!("not used by {type_name} rules"))
        } else {
            err(
                key,
                format!(
                    "{msg}; every rule also takes type, {}",
                    COMMON_KEYS.join(", ")
                ),
            )
        };
    }
    let at = e.span().map(|s| s.start);
    let key = at.and_then(|at| {
        table
            .iter()
            .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at) || v.span().start == at)
            .map(|(k, _)| k.get_ref().to_string())
    });
    match key {
        Some(k) => err(&k, msg.to_owned()),
        None => RuleError {
            key: None,
            ..err("", msg.to_owned())
        },
    }
}

/// The rule's canonical form as the bag-of-options model serialized it:
/// hashed into the fingerprint that keeps a rule's stored windows, so the
/// field order and the `null`s must not change (an upgrade would drop every
/// rule's windows). Keys added later are left out when absent.
#[derive(Serialize)]
struct Canonical<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    table: Option<&'a str>,
    severity: Option<&'a str>,
    #[serde(rename = "match")]
    matcher: Option<&'a RawMatch>,
    reset: Option<&'a RawMatch>,
    first: Option<&'a RawMatch>,
    second: Option<&'a RawMatch>,
    key: Option<&'a str>,
    window: Option<&'a str>,
    threshold: Option<&'a ThresholdValue>,
    distinct: Option<&'a str>,
    message: Option<&'a str>,
    actions: &'a [String],
    snapshot: Option<&'a str>,
    exclude: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    include: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<&'a OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<&'a serde_json::Map<String, serde_json::Value>>,
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    percentile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ordered: Option<bool>,
}

impl RuleDef {
    /// Hash of the definition: the state of an edited rule is not reused.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let c = &self.common;
        let mut canon = Canonical {
            name: &c.name,
            kind: self.kind.type_name(),
            table: None,
            severity: c.severity.as_deref(),
            matcher: None,
            reset: None,
            first: None,
            second: None,
            key: c.key.as_deref(),
            window: None,
            threshold: None,
            distinct: None,
            message: c.message.as_deref(),
            actions: &c.actions,
            snapshot: None,
            exclude: &[],
            include: &[],
            change: None,
            row: None,
            description: c.description.as_deref(),
            sum: None,
            avg: None,
            percentile: None,
            percent: None,
            steps: None,
            ordered: None,
        };
        match &self.kind {
            KindDef::Single(d) => {
                canon.table = d.table.as_deref();
                canon.matcher = d.matcher.as_ref();
            }
            KindDef::Threshold(d) => {
                canon.table = d.table.as_deref();
                canon.matcher = d.matcher.as_ref();
                canon.reset = d.reset.as_ref();
                canon.window = d.window.as_deref();
                canon.threshold = d.threshold.as_ref();
                canon.distinct = d.distinct.as_deref();
                canon.sum = d.sum.as_deref();
                canon.avg = d.avg.as_deref();
                canon.percentile = d.percentile.as_deref();
                canon.percent = d.percent;
                canon.steps = d.steps.as_deref();
                canon.ordered = d.ordered;
            }
            KindDef::Pair(d) | KindDef::Absence(d) => {
                canon.table = d.table.as_deref();
                canon.first = d.first.as_ref();
                canon.second = d.second.as_ref();
                canon.window = d.window.as_deref();
            }
            KindDef::SnapshotChange(d) => {
                canon.snapshot = d.snapshot.as_deref();
                canon.exclude = &d.exclude;
                canon.include = &d.include;
                canon.change = d.change.as_ref();
                canon.row = d.row.as_ref();
            }
        }
        let json = serde_json::to_string(&canon).unwrap_or_default();
        let d = sha2::Sha256::digest(json.as_bytes());
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
