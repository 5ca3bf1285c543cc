//! Sigma rules, translated to siemtrigger's own rule types (TOML `[[rule]]`
//! tables), so they run on the same engine: event time, durable state,
//! exactly-once alerts, `--explain`. What cannot be translated exactly is
//! refused with its reason, never approximated (docs/sigma.md).
//!
//! ```text
//! parse.rs        YAML documents (multi-document files) and helpers
//! detection.rs    detection → a `where` expression: modifiers, wildcards, keywords, the condition
//! correlation.rs  correlation → a threshold rule (count, distinct, sum, avg, percentile, steps)
//! mapping.rs      logsource → section/table, field → column or extra key (config/sigma/mapping.toml)
//! mod.rs          a file's documents → TOML rules or refusals (compile)
//! ```
//!
//! A detection rule becomes a `single` rule. A correlation becomes a
//! `threshold` rule over the union of its rules' detections; the rules it
//! references are not run on their own unless it says `generate: true`.

mod correlation;
mod detection;
pub mod mapping;
mod parse;

use siemstress_common::display::escape;
use yaml_rust2::Yaml;

use crate::rules::expr::Ast;
pub use mapping::Mapping;
use parse::{get, text};

/// A translated Sigma rule.
#[derive(Debug, Clone)]
pub struct Translated {
    pub title: String,
    pub id: Option<String>,
    pub name: String,
    /// The equivalent `[[rule]]` table.
    pub toml: String,
    /// The line of its `title` (or its document's first line) in the file.
    pub line: usize,
}

/// A Sigma rule that was not translated, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub title: String,
    pub id: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id and the reason quote the rule file's text: escaped, so that
        // a hostile file cannot write to the terminal (the title's Debug
        // form escapes already).
        // Each cut, so that a hostile file's 300 KB title, id or regex
        // cannot make one log line of 300 KB per rule at every start.
        use siemstress_common::display::{cut, escape};
        write!(f, "rule {:?}", cut(&self.title, 200))?;
        if let Some(id) = &self.id {
            write!(f, " ({})", escape(&cut(id, 200)))?;
        }
        write!(f, ": {}", escape(&cut(&self.reason, 1_000)))
    }
}

/// What became of one Sigma document.
pub type Outcome = Result<Translated, Refused>;

/// A detection document, translated as far as it goes.
#[derive(Debug, Clone)]
pub(crate) struct Detection {
    pub title: String,
    pub id: Option<String>,
    /// Its `name` attribute (what correlations and aliases refer to).
    pub sigma_name: Option<String>,
    pub name: String,
    pub severity: String,
    pub table: Option<String>,
    pub expr: Result<Ast, String>,
    pub description: Option<String>,
    pub line: usize,
}

/// Translates the documents of one Sigma file.
pub fn translate(text_: &str, mapping: &Mapping) -> Vec<Outcome> {
    translate_with(text_, mapping, false)
}

/// As [`translate`]; with `every_detection`, the detections a correlation
/// refers to also become rules of their own (`--test-sigma`).
fn translate_with(text_: &str, mapping: &Mapping, every_detection: bool) -> Vec<Outcome> {
    let docs = match parse::documents(text_) {
        Ok(d) => d,
        Err(reason) => {
            return vec![Err(Refused {
                title: "(file)".into(),
                id: None,
                reason,
            })];
        }
    };
    let lines = doc_lines(text_);
    let mut detections: Vec<Detection> = Vec::new();
    let mut correlations: Vec<(&Yaml, usize)> = Vec::new();
    let mut out: Vec<Outcome> = Vec::new();
    for (n, doc) in docs.iter().enumerate() {
        let line = lines.get(n).copied().unwrap_or(1);
        if matches!(doc, Yaml::Null) {
            continue;
        }
        let title = text(doc, "title").unwrap_or_else(|| "(no title)".into());
        let id = text(doc, "id");
        let refuse = |reason: String| {
            Err(Refused {
                title: title.clone(),
                id: id.clone(),
                reason,
            })
        };
        if get(doc, "action").is_some() {
            out.push(refuse(
                "action: global/reset/repeat (Sigma 1 rule collections) is not supported".into(),
            ));
        } else if get(doc, "filter").is_some() {
            out.push(refuse(
                "Sigma filters (meta filters) are not supported".into(),
            ));
        } else if get(doc, "correlation").is_some() {
            correlations.push((doc, line));
        } else if let Some(det) = get(doc, "detection") {
            detections.push(detection(doc, det, title, id, mapping, line));
        } else {
            out.push(refuse("neither a detection nor a correlation".into()));
        }
    }
    let mut referenced = vec![false; detections.len()];
    let mut generate = vec![false; detections.len()];
    for (doc, line) in &correlations {
        let r = correlation::translate(doc, &detections, mapping, *line);
        if let Ok((_, refs, gen_)) = &r {
            for i in refs {
                referenced[*i] = true;
                generate[*i] |= *gen_;
            }
        }
        out.push(r.map(|(t, _, _)| t));
    }
    for (i, d) in detections.iter().enumerate() {
        if referenced[i] && !generate[i] && !every_detection {
            continue;
        }
        out.push(single(d));
    }
    out
}

/// The fields of a detection document.
fn detection(
    doc: &Yaml,
    det: &Yaml,
    title: String,
    id: Option<String>,
    mapping: &Mapping,
    line: usize,
) -> Detection {
    let sigma_name = text(doc, "name");
    let name = rule_name(sigma_name.as_deref(), &title, id.as_deref());
    let ls = get(doc, "logsource");
    let f = |k: &str| ls.and_then(|l| text(l, k));
    let table = mapping.table(
        f("product").as_deref(),
        f("service").as_deref(),
        f("category").as_deref(),
    );
    let mut expr = detection::compile(det, mapping);
    if let Some(s) = text(doc, "status")
        && s == "unsupported"
    {
        expr = Err("status: unsupported".into());
    }
    if let Ok(a) = &expr {
        // The same check the rule's loading makes.
        if let Err(e) = a.compile() {
            expr = Err(e);
        }
    }
    Detection {
        title,
        id,
        sigma_name,
        name,
        severity: severity(text(doc, "level").as_deref()),
        table,
        expr,
        description: text(doc, "description"),
        line,
    }
}

/// A detection as a `single` rule.
fn single(d: &Detection) -> Outcome {
    let expr = d.expr.clone().map_err(|reason| Refused {
        title: d.title.clone(),
        id: d.id.clone(),
        reason,
    })?;
    let mut t = toml::Table::new();
    t.insert("name".into(), d.name.clone().into());
    t.insert("type".into(), "single".into());
    if let Some(table) = &d.table {
        t.insert("table".into(), table.clone().into());
    }
    t.insert("severity".into(), d.severity.clone().into());
    t.insert(
        "description".into(),
        describe(&d.title, d.id.as_deref(), d.description.as_deref()).into(),
    );
    t.insert("match".into(), where_table(&expr));
    t.insert("key".into(), "{host}".into());
    t.insert(
        "message".into(),
        format!("{} on {{host}}", template_text(&d.title)).into(),
    );
    Ok(Translated {
        title: d.title.clone(),
        id: d.id.clone(),
        name: d.name.clone(),
        toml: rule_toml(&d.title, d.id.as_deref(), t),
        line: d.line,
    })
}

/// The line of each document's `title` (else its first line), 1-based.
fn doc_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut content = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if content {
                starts.push(i + 2);
            } else {
                starts[0] = i + 2;
            }
            content = false;
        } else if !t.is_empty() && !t.starts_with('#') {
            content = true;
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len() + 1);
            (s..end)
                .find(|&i| lines.get(i - 1).is_some_and(|l| l.starts_with("title:")))
                .unwrap_or(s)
        })
        .collect()
}

/// `{ where = "..." }`.
fn where_table(a: &Ast) -> toml::Value {
    let mut m = toml::Table::new();
    m.insert("where".into(), a.to_string().into());
    toml::Value::Table(m)
}

/// One `[[rule]]` table as TOML, with a comment naming the Sigma rule.
fn rule_toml(title: &str, id: Option<&str>, t: toml::Table) -> String {
    let mut doc = toml::Table::new();
    doc.insert(
        "rule".into(),
        toml::Value::Array(vec![toml::Value::Table(t)]),
    );
    let body = toml::to_string(&doc).unwrap_or_default();
    // A control character would end the comment (a line feed: the rest is
    // TOML of the rule file's author choosing) or make it invalid TOML.
    let title = escape(title);
    match id {
        Some(id) => format!("# Sigma: {title} ({})\n{body}", escape(id)),
        None => format!("# Sigma: {title}\n{body}"),
    }
}

/// The rule's `description`.
fn describe(title: &str, id: Option<&str>, desc: Option<&str>) -> String {
    let mut s = format!("Sigma: {title}");
    if let Some(id) = id {
        s.push_str(&format!(" ({id})"));
    }
    if let Some(d) = desc {
        s.push_str(&format!(". {}", d.trim()));
    }
    s
}

/// Text for a `{name}` template: braces doubled.
fn template_text(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

/// Sigma `level` to a severity.
fn severity(level: Option<&str>) -> String {
    match level {
        Some("informational") => "info",
        Some("low") => "low",
        Some("high") => "high",
        Some("critical") => "critical",
        _ => "medium",
    }
    .into()
}

/// The rule's name: its Sigma `name` if it is a valid rule name, else its
/// title in lower case with `-` for the rest.
fn rule_name(name: Option<&str>, title: &str, id: Option<&str>) -> String {
    let ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    };
    if let Some(n) = name
        && ok(n)
    {
        return n.to_owned();
    }
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug = slug.trim_end_matches('-').to_owned();
    slug.truncate(100);
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        return id.filter(|i| ok(i)).unwrap_or("sigma-rule").to_owned();
    }
    slug
}

/// A key template for group-by fields (mapped): `{user}`, `{source_host} {user}`.
pub(crate) fn key_template(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("{{{f}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every outcome of a set of files, in order, for `--import-sigma` and the
/// loader. A file that cannot be read is an error, as a TOML rule file's
/// is, not a refused rule: its rules would be missing with exit 0.
pub fn translate_file(path: &std::path::Path, mapping: &Mapping) -> std::io::Result<Vec<Outcome>> {
    Ok(translate(
        &siemstress_common::files::read_text(path)?,
        mapping,
    ))
}

/// As [`translate_file`], with the detections correlations refer to as
/// rules of their own too (`--test-sigma`).
pub fn translate_file_every_detection(
    path: &std::path::Path,
    mapping: &Mapping,
) -> std::io::Result<Vec<Outcome>> {
    Ok(translate_with(
        &siemstress_common::files::read_text(path)?,
        mapping,
        true,
    ))
}

#[cfg(test)]
mod tests;
