//! A Sigma correlation to a `threshold` rule:
//!
//! | Sigma | threshold rule |
//! | --- | --- |
//! | `event_count` | events (`threshold = N`) |
//! | `value_count` (`field`) | `distinct = FIELD` |
//! | `value_sum`, `value_avg` (`field`) | `sum = FIELD`, `avg = FIELD` |
//! | `value_percentile` (`field`, `percentile`) | `percentile = FIELD`, `percent = P` |
//! | `value_median` | `percentile = FIELD`, `percent = 50` |
//! | `temporal` | `steps` (each rule's detection), how many occurred |
//! | `temporal_ordered` | `steps`, `ordered = true` |
//!
//! The referenced rules' detections are OR'ed into `match` (or are the
//! `steps`); `group-by` (through `aliases`) is the key; `timespan` the window;
//! `condition` the threshold (`gte: 5` → `5`; `gt: 100, lte: 200` →
//! `"> 100, <= 200"`).

use yaml_rust2::Yaml;

use super::parse::{get, scalar, strings, text};
use super::{
    Detection, Mapping, Refused, Translated, describe, key_template, rule_name, rule_toml,
    severity, template_text, where_table,
};
use crate::rules::expr::Ast;

/// The rule, the indexes of the detections it references, and `generate`.
pub(crate) fn translate(
    doc: &Yaml,
    detections: &[Detection],
    mapping: &Mapping,
    line: usize,
) -> Result<(Translated, Vec<usize>, bool), Refused> {
    let title = text(doc, "title").unwrap_or_else(|| "(no title)".into());
    let id = text(doc, "id");
    let refuse = |reason: String| Refused {
        title: title.clone(),
        id: id.clone(),
        reason,
    };
    let corr = get(doc, "correlation").expect("a correlation");
    let kind = text(corr, "type").ok_or_else(|| refuse("correlation.type is missing".into()))?;
    let refs = strings(corr, "rules").map_err(|e| refuse(format!("correlation.{e}")))?;
    if refs.is_empty() {
        return Err(refuse("correlation.rules is missing".into()));
    }
    let mut picked: Vec<usize> = Vec::new();
    for r in &refs {
        let i = detections
            .iter()
            .position(|d| d.sigma_name.as_deref() == Some(r) || d.id.as_deref() == Some(r))
            .ok_or_else(|| {
                refuse(format!(
                    "correlation.rules: {r} is not a detection rule of this file (rules are referenced \
                     by name or id within the file; chained correlations are not supported)"
                ))
            })?;
        picked.push(i);
    }
    let exprs: Vec<Ast> = picked
        .iter()
        .map(|i| {
            detections[*i]
                .expr
                .clone()
                .map_err(|e| refuse(format!("referenced rule {}: {e}", detections[*i].title)))
        })
        .collect::<Result<_, _>>()?;
    let table = detections[picked[0]].table.clone();
    if picked.iter().any(|i| detections[*i].table != table) {
        return Err(refuse(
            "the referenced rules read different tables (their logsources map to different \
             sections); siemtrigger correlates events of one table"
                .into(),
        ));
    }
    let window =
        text(corr, "timespan").ok_or_else(|| refuse("correlation.timespan is missing".into()))?;
    let ok_span = window.len() > 1
        && window[..window.len() - 1]
            .chars()
            .all(|c| c.is_ascii_digit())
        && window.ends_with(['s', 'm', 'h', 'd', 'w']);
    if !ok_span {
        return Err(refuse(format!(
            "correlation.timespan {window:?}: expected a number and s, m, h, d or w"
        )));
    }
    // group-by, through aliases.
    let aliases = get(corr, "aliases");
    let mut group = Vec::new();
    for g in strings(corr, "group-by").map_err(|e| refuse(format!("correlation.{e}")))? {
        let target = match aliases.and_then(|a| get(a, &g)) {
            Some(per_rule) => {
                let mut targets = Vec::new();
                for i in &picked {
                    let d = &detections[*i];
                    let src = d
                        .sigma_name
                        .as_deref()
                        .and_then(|n| text(per_rule, n))
                        .ok_or_else(|| {
                            refuse(format!(
                                "aliases.{g}: no field for referenced rule {} (aliases name rules by their name)",
                                d.title
                            ))
                        })?;
                    targets.push(
                        mapping
                            .field(&src)
                            .map_err(|e| refuse(format!("aliases.{g}: {e}")))?
                            .to_owned(),
                    );
                }
                targets.dedup();
                if targets.len() != 1 {
                    return Err(refuse(format!(
                        "aliases.{g}: the rules' fields map to different columns ({}); a key is \
                         built from one column per rule set",
                        targets.join(", ")
                    )));
                }
                targets.remove(0)
            }
            None => mapping
                .field(&g)
                .map_err(|e| refuse(format!("group-by: {e}")))?
                .to_owned(),
        };
        group.push(target);
    }
    // The condition.
    let cond = get(corr, "condition");
    let mut field: Option<String> = None;
    let mut percent: Option<f64> = None;
    let mut bounds: Vec<(String, f64)> = Vec::new();
    if let Some(c) = cond {
        let Yaml::Hash(h) = c else {
            return Err(refuse(
                "correlation.condition: expected a map (gte: 5)".into(),
            ));
        };
        for (k, v) in h {
            let k = k.as_str().unwrap_or("");
            match k {
                "gt" | "gte" | "lt" | "lte" | "eq" => {
                    let n = match v {
                        Yaml::Integer(i) => *i as f64,
                        Yaml::Real(r) => r
                            .parse::<f64>()
                            .map_err(|_| refuse(format!("condition.{k}: not a number")))?,
                        _ => return Err(refuse(format!("condition.{k}: not a number"))),
                    };
                    bounds.push((k.to_owned(), n));
                }
                "field" => {
                    let f = match v {
                        Yaml::Array(l) if l.len() == 1 => scalar(&l[0]),
                        Yaml::Array(_) => {
                            return Err(refuse(
                                "condition.field: a list of several fields is not supported".into(),
                            ));
                        }
                        v => scalar(v),
                    }
                    .ok_or_else(|| refuse("condition.field: not a field name".into()))?;
                    field = Some(
                        mapping
                            .field(&f)
                            .map_err(|e| refuse(format!("condition.field: {e}")))?
                            .to_owned(),
                    );
                }
                "percentile" => {
                    percent = match v {
                        Yaml::Integer(i) => Some(*i as f64),
                        Yaml::Real(r) => r.parse().ok(),
                        _ => None,
                    };
                    if percent.is_none_or(|p| p <= 0.0 || p > 100.0) {
                        return Err(refuse(
                            "condition.percentile: a number in 0 < p <= 100".into(),
                        ));
                    }
                }
                other => return Err(refuse(format!("condition.{other}: not supported"))),
            }
        }
    }
    let mut t = toml::Table::new();
    let name = rule_name(text(doc, "name").as_deref(), &title, id.as_deref());
    t.insert("name".into(), name.clone().into());
    t.insert("type".into(), "threshold".into());
    if let Some(table) = &table {
        t.insert("table".into(), table.clone().into());
    }
    t.insert(
        "severity".into(),
        severity(text(doc, "level").as_deref()).into(),
    );
    t.insert(
        "description".into(),
        describe(&title, id.as_deref(), text(doc, "description").as_deref()).into(),
    );
    t.insert("window".into(), window.into());
    let needs_field = |what: &str| -> Result<String, Refused> {
        field
            .clone()
            .ok_or_else(|| refuse(format!("{what} needs condition.field")))
    };
    let temporal = matches!(kind.as_str(), "temporal" | "temporal_ordered");
    match kind.as_str() {
        "event_count" => {}
        "value_count" => {
            t.insert("distinct".into(), needs_field("value_count")?.into());
        }
        "value_sum" => {
            t.insert("sum".into(), needs_field("value_sum")?.into());
        }
        "value_avg" => {
            t.insert("avg".into(), needs_field("value_avg")?.into());
        }
        "value_percentile" | "value_median" => {
            t.insert("percentile".into(), needs_field(&kind)?.into());
            let p = if kind == "value_median" {
                50.0
            } else {
                percent.ok_or_else(|| {
                    refuse(
                        "value_percentile needs condition.percentile (which percentile, e.g. 95)"
                            .into(),
                    )
                })?
            };
            t.insert("percent".into(), toml::Value::Float(p));
        }
        "temporal" | "temporal_ordered" => {
            if exprs.len() < 2 {
                return Err(refuse(format!("{kind} needs at least two rules")));
            }
            t.insert(
                "steps".into(),
                toml::Value::Array(exprs.iter().map(|e| e.to_string().into()).collect()),
            );
            if kind == "temporal_ordered" {
                t.insert("ordered".into(), true.into());
            }
        }
        other => return Err(refuse(format!("correlation.type {other} is not supported"))),
    }
    if field.is_some() && (kind == "event_count" || temporal) {
        return Err(refuse(format!("condition.field is not used by {kind}")));
    }
    if percent.is_some() && kind != "value_percentile" {
        return Err(refuse(
            "condition.percentile is only used by value_percentile".into(),
        ));
    }
    // The threshold: N for a lower bound alone (gt N on a count is N + 1),
    // else the condition's text.
    let counted = matches!(kind.as_str(), "event_count" | "value_count") || temporal;
    let threshold: toml::Value = match bounds.as_slice() {
        [] if temporal => toml::Value::Integer(exprs.len() as i64),
        [] => return Err(refuse("correlation.condition is missing".into())),
        [(op, n)] if counted && n.fract() == 0.0 && (op == "gte" || op == "gt") => {
            let n = *n as i64 + i64::from(op == "gt");
            if n < 1 {
                return Err(refuse(format!("condition {op}: {n} is always true")));
            }
            toml::Value::Integer(n)
        }
        list => {
            let parts: Vec<String> = list
                .iter()
                .map(|(op, n)| {
                    let sym = match op.as_str() {
                        "gt" => ">",
                        "gte" => ">=",
                        "lt" => "<",
                        "lte" => "<=",
                        _ => "==",
                    };
                    format!("{sym} {n}")
                })
                .collect();
            toml::Value::String(parts.join(", "))
        }
    };
    t.insert("threshold".into(), threshold);
    if !temporal {
        let m = if exprs.len() == 1 {
            exprs[0].clone()
        } else {
            Ast::Or(exprs.clone())
        };
        t.insert("match".into(), where_table(&m));
    }
    t.insert("key".into(), key_template(&group).into());
    t.insert(
        "message".into(),
        format!("{}: {{key}} ({{count}})", template_text(&title)).into(),
    );
    let generate = matches!(get(doc, "generate"), Some(Yaml::Boolean(true)))
        || matches!(get(corr, "generate"), Some(Yaml::Boolean(true)));
    Ok((
        Translated {
            title: title.clone(),
            id: id.clone(),
            name,
            toml: rule_toml(&title, id.as_deref(), t),
            line,
        },
        picked,
        generate,
    ))
}
