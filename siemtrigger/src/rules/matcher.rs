//! A rule's `match` (and `reset`, `first`, `second`): the siemquery filter
//! vocabulary. Everything but the regexes becomes a shared [`Filter`] (SQL
//! with bound values); the regexes run in Rust, where their named captures
//! become `{name}` values for `key` and `message`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};
use siemstress_common::filter::{Field, Filter};

use super::expr::{Ast, Expr, Fields};
use super::template::{Piece, Template};

/// The capture a matcher with `steps` gives its events: the indexes (from 0,
/// comma-separated) of the steps the event matched.
pub const STEP_CAPTURE: &str = "step";

/// A match table as written: key to a scalar or a list of scalars.
pub type RawMatch = BTreeMap<String, MatchValue>;

/// A scalar or a list of scalars in a match table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MatchValue {
    One(Scalar),
    Many(Vec<Scalar>),
}

/// A number or a string in a match table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Text(String),
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
    /// `where`: an expression over columns and `extra` keys (its text, compiled).
    pub expr: Option<(String, Arc<Expr>)>,
    /// A threshold rule's `steps` (Sigma `temporal`): `where` expressions; an
    /// event matches if it matches one, and captures [`STEP_CAPTURE`].
    pub steps: Vec<(String, Arc<Expr>)>,
}

/// Parses and compiles a `where` expression.
pub fn compile_where(src: &str) -> Result<(String, Arc<Expr>), String> {
    let e = Ast::parse(src)
        .and_then(|a| a.compile())
        .map_err(|e| format!("bad where expression: {e}"))?;
    Ok((src.to_owned(), Arc::new(e)))
}

impl Matcher {
    /// Builds a matcher from a match table; `backrefs` lets its regexes use
    /// `{name}` (a `second`). Errors carry the sub-key (`regex`, `proces`).
    pub fn build(m: &RawMatch, backrefs: bool) -> Result<Matcher, (String, String)> {
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
                let vals = texts(v);
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
                "where" if !negated => {
                    let list = texts(v);
                    if list.len() != 1 {
                        return Err((key.to_owned(), "takes one expression".into()));
                    }
                    out.expr = Some(compile_where(&list[0]).map_err(|e| (key.to_owned(), e))?);
                }
                "regex" if !negated => {
                    for src in texts(v) {
                        out.regex.push(compile(key, &src, backrefs)?);
                    }
                }
                "regex" => {
                    for src in texts(v) {
                        out.rregex
                            .push(Regex::new(&src).map_err(|x| {
                                (key.to_owned(), format!("bad regex {src:?}: {x}"))
                            })?);
                    }
                }
                _ => {
                    return Err((
                        key.to_owned(),
                        "unknown match key (use host, process, user, shost, dhost, protocol, pid, \
                         sport, dport, grep, regex, where, or an r-prefixed exclusion such as rshost)"
                            .into(),
                    ));
                }
            }
        }
        Ok(out)
    }

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

    /// Columns the `where` expression and the steps read.
    pub fn expr_columns(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (_, e) in self.expr.iter().chain(&self.steps) {
            e.columns(&mut out);
        }
        out
    }

    /// The whole Rust-side check of an event (regexes on `raw`, then the
    /// `where` expression and the steps), for a matcher without back-references.
    pub fn check_event(&self, ev: &dyn Fields) -> Option<BTreeMap<String, String>> {
        let mut caps = self.check(ev.column("raw").unwrap_or(""))?;
        if let Some((_, e)) = &self.expr
            && !e.eval(ev)
        {
            return None;
        }
        if !self.steps.is_empty() {
            let hit: Vec<String> = self
                .steps
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| e.eval(ev))
                .map(|(i, _)| i.to_string())
                .collect();
            if hit.is_empty() {
                return None;
            }
            caps.insert(STEP_CAPTURE.to_owned(), hit.join(","));
        }
        Some(caps)
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
    if re.capture_names().all(|n| n.is_none()) {
        // Nothing to capture: whether it matches is all (a cheaper search).
        return re.is_match(raw).then(BTreeMap::new);
    }
    let c = re.captures(raw)?;
    let mut out = BTreeMap::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = c.name(name) {
            out.insert(name.to_owned(), m.as_str().to_owned());
        }
    }
    Some(out)
}

fn texts(v: &MatchValue) -> Vec<String> {
    let list = match v {
        MatchValue::One(s) => std::slice::from_ref(s),
        MatchValue::Many(l) => l.as_slice(),
    };
    list.iter()
        .map(|s| match s {
            Scalar::Text(t) => t.clone(),
            Scalar::Int(i) => i.to_string(),
        })
        .collect()
}

fn ints(key: &str, v: &MatchValue) -> Result<Vec<i64>, (String, String)> {
    texts(v)
        .into_iter()
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| (key.to_owned(), format!("{s:?} is not a number")))
        })
        .collect()
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
