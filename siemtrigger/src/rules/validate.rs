//! From a rule as written ([`RuleDef`]) to a [`Rule`]: the checks of the
//! common keys, then each type's own.

use std::collections::BTreeSet;

use siemstress_common::ident::Ident;
use siemstress_common::snapshot::diff::{ChangeKind, Excludes};

use super::def::{KindDef, PairDef, RuleDef, SingleDef, SnapshotDef, ThresholdDef, ThresholdValue};
use super::error::{Lines, RuleError};
use super::matcher::{Matcher, RawMatch, RuleRegex, compile_where};
use super::template::{
    MESSAGE_BUILTINS, SNAPSHOT_MESSAGE_BUILTINS, SNAPSHOT_VARS, Template, column_alias, is_column,
};
use super::{Bound, Kind, Metric, Pair, Rule, SEVERITIES, Single, SnapshotChange, Threshold};

/// Default `key` of a `snapshot_change` rule: the diff record's key.
pub const SNAPSHOT_DEFAULT_KEY: &str = "{key}";

/// Default `message` of a `snapshot_change` rule.
pub const SNAPSHOT_DEFAULT_MESSAGE: &str = "{snapshot} on {host}: {change} {key}{detail}";

/// Default `message` of the event rules.
const DEFAULT_MESSAGE: &str = "{rule}: {key} ({count} events)";

/// What an error needs: where the rule is and what it is called.
struct Cx<'a> {
    origin: &'a str,
    lines: &'a Lines,
    name: &'a str,
}

impl Cx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            origin: self.origin.to_owned(),
            line: Some(self.lines.of(key)),
            rule: Some(self.name.to_owned()),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    fn table(&self, t: &Option<String>) -> Result<Option<Ident>, RuleError> {
        t.as_deref()
            .map(|t| Ident::new(t, "table").map_err(|x| self.err("table", x.to_string())))
            .transpose()
    }

    fn window(&self, w: &Option<String>) -> Result<i64, RuleError> {
        let Some(w) = w else {
            return Err(self.err("window", "missing (e.g. window = \"60s\")"));
        };
        let d = siemstress_common::time::parse_duration(w)
            .map_err(|x| self.err("window", x.to_string()))?;
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 {
            return Err(self.err("window", "must be longer than 0"));
        }
        Ok(ms)
    }

    /// The matcher of `key`; `None` (not written) is "missing".
    fn matcher(
        &self,
        key: &str,
        m: &Option<RawMatch>,
        backrefs: bool,
    ) -> Result<Matcher, RuleError> {
        let m = m.as_ref().ok_or_else(|| self.err(key, "missing"))?;
        Matcher::build(m, backrefs).map_err(|(k, msg)| self.err(&format!("{key}.{k}"), msg))
    }

    /// Every `{name}` of `t` is a column, a capture in `caps`, or (a
    /// message) a built-in value.
    fn names(
        &self,
        what: &str,
        t: &Template,
        caps: &BTreeSet<String>,
        builtins: bool,
        whose: &str,
    ) -> Result<(), RuleError> {
        for n in t.names() {
            if is_column(n) || caps.contains(n) || (builtins && MESSAGE_BUILTINS.contains(&n)) {
                continue;
            }
            return Err(self.err(
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
    }
}

/// Validates a rule read from `origin`; `actions` are the configured
/// action names (`[actions.NAME]`).
pub fn validate(
    def: RuleDef,
    origin: &str,
    lines: &Lines,
    actions: &[String],
) -> Result<Rule, RuleError> {
    let fingerprint = def.fingerprint();
    let c = &def.common;
    let cx = Cx {
        origin,
        lines,
        name: &c.name,
    };
    let name = &c.name;
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    {
        return Err(cx.err("name", "use letters, digits and _ - . : (at most 128)"));
    }
    let severity = c.severity.clone().unwrap_or_else(|| "medium".into());
    if !SEVERITIES.contains(&severity.as_str()) {
        return Err(cx.err(
            "severity",
            format!("unknown severity {severity:?} (info, low, medium, high, critical)"),
        ));
    }
    for a in &c.actions {
        if !actions.contains(a) {
            return Err(cx.err(
                "actions",
                format!("no action {a:?} is configured (add [actions.{a}] to siemstress.toml)"),
            ));
        }
    }
    let snapshot_rule = matches!(def.kind, KindDef::SnapshotChange(_));
    let key = Template::parse(c.key.as_deref().unwrap_or(if snapshot_rule {
        SNAPSHOT_DEFAULT_KEY
    } else {
        ""
    }));
    let message = Template::parse(c.message.as_deref().unwrap_or(if snapshot_rule {
        SNAPSHOT_DEFAULT_MESSAGE
    } else {
        DEFAULT_MESSAGE
    }));
    let kind = match &def.kind {
        KindDef::Single(d) => Kind::Single(d.validate(&cx, &key, &message)?),
        KindDef::Threshold(d) => Kind::Threshold(d.validate(&cx, &key, &message)?),
        KindDef::Pair(d) => Kind::Pair(d.validate(&cx, &key, &message, true)?),
        KindDef::Absence(d) => Kind::Absence(d.validate(&cx, &key, &message, false)?),
        KindDef::SnapshotChange(d) => Kind::SnapshotChange(d.validate(&cx, &key, &message)?),
    };
    let max_keys = match def.kind.max_keys() {
        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => return Err(cx.err("max_keys", format!("must be at least 1, not {n}"))),
        None => None,
    };
    Ok(Rule {
        max_keys,
        name: name.clone(),
        severity,
        key,
        message,
        actions: c.actions.clone(),
        origin: origin.to_owned(),
        line: 0,
        builtin: false,
        fingerprint,
        kind,
    })
}

impl SingleDef {
    fn validate(&self, cx: &Cx, key: &Template, message: &Template) -> Result<Single, RuleError> {
        let table = cx.table(&self.table)?;
        let matcher = cx.matcher("match", &self.matcher, false)?;
        let caps = matcher.captures();
        cx.names("key", key, &caps, false, "match.regex")?;
        cx.names("message", message, &caps, true, "match.regex")?;
        Ok(Single { table, matcher })
    }
}

impl ThresholdDef {
    fn validate(
        &self,
        cx: &Cx,
        key: &Template,
        message: &Template,
    ) -> Result<Threshold, RuleError> {
        let table = cx.table(&self.table)?;
        let window_ms = cx.window(&self.window)?;
        let steps = match &self.steps {
            Some(list) => {
                if self.matcher.is_some() {
                    return Err(cx.err(
                        "match",
                        "not used with steps (each step is a where expression)",
                    ));
                }
                if list.len() < 2 {
                    return Err(cx.err("steps", "needs at least two where expressions"));
                }
                let mut out = Vec::new();
                for (i, src) in list.iter().enumerate() {
                    out.push(
                        compile_where(src)
                            .map_err(|e| cx.err("steps", format!("step {}: {e}", i + 1)))?,
                    );
                }
                Some(out)
            }
            None => {
                if self.ordered.is_some() {
                    return Err(cx.err("ordered", "only used with steps"));
                }
                None
            }
        };
        let bound = match &self.threshold {
            Some(ThresholdValue::Int(t)) if *t >= 1 => Bound::at_least(*t as u64),
            Some(ThresholdValue::Int(t)) => {
                return Err(cx.err("threshold", format!("must be at least 1, not {t}")));
            }
            Some(ThresholdValue::Text(t)) => {
                let b = Bound::parse(t).map_err(|e| cx.err("threshold", e))?;
                if b.lo.is_none() && b.hi.is_none() {
                    return Err(cx.err("threshold", "empty condition"));
                }
                b
            }
            None => match &steps {
                Some(st) => Bound::at_least(st.len() as u64),
                None => return Err(cx.err("threshold", "missing (e.g. threshold = 5)")),
            },
        };
        let threshold = bound
            .lo
            .map(|(n, inc)| {
                let c = n.ceil();
                if !inc && c == n { c + 1.0 } else { c }
            })
            .map_or(1, |n| n.max(1.0) as u64);
        let matcher = match &steps {
            Some(st) => Matcher {
                steps: st.clone(),
                ..Matcher::default()
            },
            None => cx.matcher("match", &self.matcher, false)?,
        };
        let reset = match &self.reset {
            Some(_) => Some(cx.matcher("reset", &self.reset, false)?),
            None => None,
        };
        let caps = matcher.captures();
        cx.names("key", key, &caps, false, "match.regex")?;
        cx.names("message", message, &caps, true, "match.regex")?;
        if let Some(r) = &reset {
            cx.names("reset", key, &r.captures(), false, "reset.regex")?;
        }
        let measured: Vec<(&str, &String)> = [
            ("distinct", &self.distinct),
            ("sum", &self.sum),
            ("avg", &self.avg),
            ("percentile", &self.percentile),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        if measured.len() > 1 || (steps.is_some() && !measured.is_empty()) {
            let k = measured.last().map_or("steps", |m| m.0);
            return Err(cx.err(k, "use one of distinct, sum, avg, percentile and steps"));
        }
        let distinct = match measured.first() {
            Some((_, d)) if is_column(d) => Some(column_alias(d).to_owned()),
            Some((_, d)) if caps.contains(*d) => Some((*d).clone()),
            Some((k, d)) => {
                return Err(cx.err(
                    k,
                    format!("{d:?} is neither a column nor a named capture of match.regex"),
                ));
            }
            None => None,
        };
        if self.percent.is_some() && self.percentile.is_none() {
            return Err(cx.err("percent", "only used with percentile"));
        }
        let metric = match (measured.first().map(|m| m.0), &steps) {
            (_, Some(st)) => Metric::Steps {
                count: st.len(),
                ordered: self.ordered.unwrap_or(false),
            },
            (Some("distinct"), _) => Metric::Distinct,
            (Some("sum"), _) => Metric::Sum,
            (Some("avg"), _) => Metric::Avg,
            (Some(_), _) => match self.percent {
                Some(p) if p > 0.0 && p <= 100.0 => Metric::Percentile(p),
                Some(p) => {
                    return Err(
                        cx.err("percent", format!("must be in 0 < percent <= 100, not {p}"))
                    );
                }
                None => return Err(cx.err("percent", "missing (e.g. percent = 95)")),
            },
            (None, None) => Metric::Count,
        };
        Ok(Threshold {
            table,
            matcher,
            reset,
            window_ms,
            threshold,
            distinct,
            metric,
            bound,
        })
    }
}

impl PairDef {
    /// A `pair` rule (`fires_on_second`) or an `absence` rule.
    fn validate(
        &self,
        cx: &Cx,
        key: &Template,
        message: &Template,
        fires_on_second: bool,
    ) -> Result<Pair, RuleError> {
        let table = cx.table(&self.table)?;
        let window_ms = cx.window(&self.window)?;
        let first = cx.matcher("first", &self.first, false)?;
        let second = cx.matcher("second", &self.second, true)?;
        if second.has_backrefs() && second.expr.is_some() {
            return Err(cx.err(
                "second.where",
                "cannot be combined with {name} back-references in second.regex",
            ));
        }
        let first_caps = first.captures();
        cx.names("key", key, &first_caps, false, "first.regex")?;
        let mut both = second.captures();
        both.extend(first_caps.iter().cloned());
        cx.names("second", key, &both, false, "second.regex or first.regex")?;
        // An absence fires without a second: its message has only the first's captures.
        let msg_caps = if fires_on_second { &both } else { &first_caps };
        cx.names("message", message, msg_caps, true, "the rule's regexes")?;
        for rr in &second.regex {
            if let RuleRegex::BackRef { template, .. } = rr {
                cx.names("second.regex", template, &first_caps, false, "first.regex")?;
            }
        }
        Ok(Pair {
            table,
            first,
            second,
            window_ms,
        })
    }
}

impl SnapshotDef {
    fn validate(
        &self,
        cx: &Cx,
        key: &Template,
        message: &Template,
    ) -> Result<SnapshotChange, RuleError> {
        let snapshot = match &self.snapshot {
            Some(name) => {
                siemstress_common::snapshot::validate_name(name).map_err(|_| {
                    cx.err(
                        "snapshot",
                        format!(
                            "{name:?} is not a snapshot name (1-64 letters, digits, _ and -, as \
                             siemparse --snapshot NAME / --gather KIND stores it)"
                        ),
                    )
                })?;
                name.clone()
            }
            None => {
                return Err(cx.err(
                    "snapshot",
                    "missing (the snapshot name, e.g. snapshot = \"listenports\")",
                ));
            }
        };
        let change = match &self.change {
            None => vec![ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed],
            Some(v) => {
                let mut out = Vec::new();
                for c in v.list() {
                    let k = match c.as_str() {
                        "added" => ChangeKind::Added,
                        "removed" => ChangeKind::Removed,
                        "changed" => ChangeKind::Changed,
                        other => {
                            return Err(cx.err(
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
                    return Err(cx.err(
                        "change",
                        "empty (leave it out for added, removed and changed)",
                    ));
                }
                out
            }
        };
        // Event columns mean nothing here: only the diff record's names.
        let vars = |what: &str, t: &Template, extra: &[&str]| {
            for n in t.names() {
                if !SNAPSHOT_VARS.contains(&n) && !extra.contains(&n) {
                    let known: Vec<String> = SNAPSHOT_VARS
                        .iter()
                        .chain(extra)
                        .map(|k| format!("{{{k}}}"))
                        .collect();
                    return Err(cx.err(
                        what,
                        format!(
                            "{{{n}}} is not a field of a snapshot diff record (use {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        vars("key", key, &[])?;
        vars("message", message, &SNAPSHOT_MESSAGE_BUILTINS)?;
        for (what, globs) in [("exclude", &self.exclude), ("include", &self.include)] {
            for x in globs {
                Excludes::new(std::slice::from_ref(x))
                    .map_err(|g| cx.err(what, format!("bad glob {x:?}: {g}")))?;
            }
        }
        Ok(SnapshotChange {
            snapshot,
            exclude: self.exclude.clone(),
            include: self.include.clone(),
            change,
            row: self.row.clone().unwrap_or_default(),
        })
    }
}
