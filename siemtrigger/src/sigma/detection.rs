//! A Sigma `detection` to a `where` expression ([`Ast`]): search
//! identifiers (field maps, lists of maps, keyword lists), value modifiers,
//! and the condition (`and`, `or`, `not`, parentheses, `1 of x*`,
//! `all of x*`, `1 of them`, `all of them`). Anything else is refused.

use base64::Engine;
use siemstress_common::display::cut;
use yaml_rust2::Yaml;

use super::mapping::Mapping;
use super::parse::scalar;
use crate::rules::expr::{Ast, Cmp, Op};

/// A detection's expression, or why it cannot be translated.
pub fn compile(detection: &Yaml, mapping: &Mapping) -> Result<Ast, String> {
    let Yaml::Hash(map) = detection else {
        return Err("detection is not a map".into());
    };
    let mut searches: Vec<(String, Ast)> = Vec::new();
    let mut condition: Option<&Yaml> = None;
    for (k, v) in map {
        let Some(k) = k.as_str() else {
            return Err("detection: a key that is not a string".into());
        };
        match k {
            "condition" => condition = Some(v),
            "timeframe" => {
                return Err(
                    "detection.timeframe (Sigma 1 aggregation) is not supported: use a correlation rule"
                        .into(),
                );
            }
            _ => searches.push((
                k.to_owned(),
                search(v, mapping).map_err(|e| format!("detection.{k}: {e}"))?,
            )),
        }
    }
    let conds: Vec<String> = match condition {
        None => return Err("detection.condition is missing".into()),
        Some(Yaml::String(s)) => vec![s.clone()],
        Some(Yaml::Array(l)) => l
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("detection.condition: not a string")?,
        Some(_) => return Err("detection.condition: not a string".into()),
    };
    let mut out = Vec::new();
    for c in &conds {
        if c.contains('|') {
            return Err(format!(
                "condition \"{}\": a pipe aggregation (Sigma 1: count() by ...) is not supported: use a correlation rule",
                cut(c, 200)
            ));
        }
        out.push(
            condition_expr(c, &searches)
                .map_err(|e| format!("condition \"{}\": {e}", cut(c, 200)))?,
        );
    }
    Ok(if out.len() == 1 {
        out.remove(0)
    } else {
        Ast::Or(out)
    })
}

/// A search identifier's value.
fn search(v: &Yaml, mapping: &Mapping) -> Result<Ast, String> {
    match v {
        Yaml::Hash(m) => {
            let mut all = Vec::new();
            for (k, val) in m {
                let Some(k) = k.as_str() else {
                    return Err("a field name that is not a string".into());
                };
                all.push(field(k, val, mapping)?);
            }
            Ok(and(all))
        }
        Yaml::Array(items) if items.iter().all(|i| matches!(i, Yaml::Hash(_))) => Ok(or(items
            .iter()
            .map(|i| search(i, mapping))
            .collect::<Result<_, _>>()?)),
        Yaml::Array(items) => {
            let mut any = Vec::new();
            for i in items {
                any.push(keyword(i)?);
            }
            Ok(or(any))
        }
        other => keyword(other),
    }
}

/// A keyword (a value without a field): a case-insensitive substring of the
/// raw line, with wildcards.
fn keyword(v: &Yaml) -> Result<Ast, String> {
    let s = scalar(v).ok_or("a keyword that is not a string or number")?;
    Ok(Ast::Pred {
        field: "raw".into(),
        op: Op::Re(format!("(?is){}", wildcard(&s))),
    })
}

fn and(mut v: Vec<Ast>) -> Ast {
    if v.len() == 1 {
        v.remove(0)
    } else {
        Ast::And(v)
    }
}

fn or(mut v: Vec<Ast>) -> Ast {
    if v.len() == 1 {
        v.remove(0)
    } else {
        Ast::Or(v)
    }
}

/// How a value is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    Re,
    Cidr,
    Exists,
    Num(Cmp),
    FieldRef,
}

/// `Field|mod|mod: value(s)`.
fn field(key: &str, val: &Yaml, mapping: &Mapping) -> Result<Ast, String> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or("");
    let mods: Vec<&str> = parts.collect();
    let target = if name.is_empty() {
        "raw".to_owned()
    } else {
        mapping.field(name)?.to_owned()
    };
    let mut kind = Kind::Equals;
    let mut all = false;
    let mut cased = false;
    let (mut re_i, mut re_m, mut re_s) = (false, false, false);
    let mut transforms: Vec<&str> = Vec::new();
    let set = |kind: &mut Kind, k: Kind, m: &str| -> Result<(), String> {
        if *kind != Kind::Equals {
            return Err(format!(
                "{key}: modifier {m} combined with another match modifier"
            ));
        }
        *kind = k;
        Ok(())
    };
    for m in &mods {
        match *m {
            "contains" => set(&mut kind, Kind::Contains, m)?,
            "startswith" => set(&mut kind, Kind::StartsWith, m)?,
            "endswith" => set(&mut kind, Kind::EndsWith, m)?,
            "re" => set(&mut kind, Kind::Re, m)?,
            "cidr" => set(&mut kind, Kind::Cidr, m)?,
            "exists" => set(&mut kind, Kind::Exists, m)?,
            "gt" => set(&mut kind, Kind::Num(Cmp::Gt), m)?,
            "gte" => set(&mut kind, Kind::Num(Cmp::Ge), m)?,
            "lt" => set(&mut kind, Kind::Num(Cmp::Lt), m)?,
            "lte" => set(&mut kind, Kind::Num(Cmp::Le), m)?,
            "fieldref" => set(&mut kind, Kind::FieldRef, m)?,
            "all" => all = true,
            "cased" => cased = true,
            "i" | "ignorecase" => re_i = true,
            "m" | "multiline" => re_m = true,
            "s" | "dotall" => re_s = true,
            "base64" | "base64offset" | "windash" => transforms.push(m),
            other => {
                return Err(format!(
                    "{key}: modifier {other} is not supported (see docs/sigma.md)"
                ));
            }
        }
    }
    if (re_i || re_m || re_s) && kind != Kind::Re {
        return Err(format!("{key}: the i, m and s modifiers go with re"));
    }
    if kind == Kind::Re && (!transforms.is_empty() || cased) {
        return Err(format!(
            "{key}: re cannot be combined with {}",
            if cased {
                "cased".to_owned()
            } else {
                transforms.join(", ")
            }
        ));
    }
    let values: Vec<&Yaml> = match val {
        Yaml::Array(l) => l.iter().collect(),
        v => vec![v],
    };
    if values.is_empty() {
        return Err(format!("{key}: an empty list of values"));
    }
    let pred = |op: Op| Ast::Pred {
        field: target.clone(),
        op,
    };
    let mut preds: Vec<Ast> = Vec::new();
    for v in values {
        if matches!(v, Yaml::Null) {
            if kind != Kind::Equals || !transforms.is_empty() {
                return Err(format!("{key}: null with a modifier"));
            }
            preds.push(Ast::Not(Box::new(pred(Op::Exists))));
            continue;
        }
        match kind {
            Kind::Exists => {
                let Yaml::Boolean(b) = v else {
                    return Err(format!("{key}: exists takes true or false"));
                };
                let p = pred(Op::Exists);
                preds.push(if *b { p } else { Ast::Not(Box::new(p)) });
            }
            Kind::Num(c) => {
                let n = match v {
                    Yaml::Integer(i) => *i as f64,
                    Yaml::Real(r) => r
                        .parse::<f64>()
                        .map_err(|_| format!("{key}: {r} is not a number"))?,
                    _ => return Err(format!("{key}: {} takes a number", c.name())),
                };
                preds.push(pred(Op::Num(c, n)));
            }
            Kind::Cidr => {
                let s = scalar(v).ok_or_else(|| format!("{key}: cidr takes a network"))?;
                preds.push(pred(Op::Cidr(s)));
            }
            Kind::FieldRef => {
                if !transforms.is_empty() {
                    return Err(format!(
                        "{key}: fieldref cannot be combined with {}",
                        transforms.join(", ")
                    ));
                }
                let s = scalar(v).ok_or_else(|| format!("{key}: fieldref takes a field name"))?;
                preds.push(pred(Op::Same {
                    other: mapping.field(&s)?.to_owned(),
                    cased,
                }));
            }
            Kind::Re => {
                let s = scalar(v).ok_or_else(|| format!("{key}: re takes a string"))?;
                let flags: String = [(re_i, 'i'), (re_m, 'm'), (re_s, 's')]
                    .iter()
                    .filter(|f| f.0)
                    .map(|f| f.1)
                    .collect();
                let src = if flags.is_empty() {
                    s
                } else {
                    format!("(?{flags}){s}")
                };
                regex::Regex::new(&src).map_err(|e| {
                    format!(
                        "{key}: the regex is not supported by siemstress's (Rust) regex syntax: {e}"
                    )
                })?;
                preds.push(pred(Op::Re(src)));
            }
            Kind::Equals | Kind::Contains | Kind::StartsWith | Kind::EndsWith => {
                let plain = matches!(v, Yaml::String(_));
                let s = scalar(v)
                    .ok_or_else(|| format!("{key}: a value that is not a string or number"))?;
                // Value transformations, then wildcards (not in encoded values).
                let mut variants: Vec<(String, bool)> = vec![(s, plain)];
                for t in &transforms {
                    variants = variants
                        .into_iter()
                        .flat_map(|(v, _)| transform(t, &v).into_iter().map(|x| (x, false)))
                        .collect();
                }
                let mut any = Vec::new();
                for (v, wild) in variants {
                    let body = if wild {
                        wildcard(&v)
                    } else {
                        regex::escape(&v)
                    };
                    let (pre, post) = match kind {
                        Kind::Equals => ("^", "$"),
                        Kind::Contains => ("", ""),
                        Kind::StartsWith => ("^", ""),
                        _ => ("", "$"),
                    };
                    let flags = if cased { "(?s)" } else { "(?is)" };
                    any.push(pred(Op::Re(format!("{flags}{pre}{body}{post}"))));
                }
                preds.push(or(any));
            }
        }
    }
    Ok(if all { and(preds) } else { or(preds) })
}

/// `base64`, `base64offset`, `windash` on one value.
fn transform(t: &str, v: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match t {
        "base64" => vec![b64.encode(v.as_bytes())],
        "base64offset" => (0..3)
            .map(|i| {
                let mut bytes = vec![b' '; i];
                bytes.extend_from_slice(v.as_bytes());
                let enc = b64.encode(&bytes);
                // Leading characters that depend on the padding, trailing ones
                // that depend on what follows.
                let start = [0, 2, 3][i];
                let end_trim = [0, 3, 2][(v.len() + i) % 3];
                enc[start..enc.len() - end_trim].to_owned()
            })
            .collect(),
        _ => {
            // windash: - and / at the start of a word, as every dash form.
            let re = regex::Regex::new(r"(^|\s)[-/]").expect("windash regex");
            ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"]
                .iter()
                .map(|d| re.replace_all(v, format!("${{1}}{d}")).into_owned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        }
    }
}

/// A Sigma value with wildcards as a regex body: `*` any text, `?` one
/// character, `\*` `\?` `\\` literal, any other `\` literal.
pub fn wildcard(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' => match it.peek() {
                Some(n @ ('*' | '?' | '\\')) => {
                    out.push_str(&regex::escape(&n.to_string()));
                    it.next();
                }
                _ => out.push_str(r"\\"),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out
}

// --- the condition ---

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn tokens(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut w = String::new();
    let flush = |w: &mut String, out: &mut Vec<Tok>| {
        if !w.is_empty() {
            out.push(Tok::Word(std::mem::take(w)));
        }
    };
    for c in s.chars() {
        match c {
            '(' | ')' => {
                flush(&mut w, &mut out);
                out.push(if c == '(' { Tok::Open } else { Tok::Close });
            }
            c if c.is_whitespace() => flush(&mut w, &mut out),
            c => w.push(c),
        }
    }
    flush(&mut w, &mut out);
    out
}

struct Cond<'a> {
    toks: Vec<Tok>,
    at: usize,
    searches: &'a [(String, Ast)],
    /// Parentheses and `not`s open around the current token.
    depth: usize,
}

/// Deepest nesting of parentheses and `not`s in a condition: the parser and
/// the expression it gives recurse once per level (the `where` text of the
/// translation has a few levels more, within its own limit).
const MAX_CONDITION_DEPTH: usize = 64;

impl Cond<'_> {
    fn peek(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Ast, String> {
        let mut v = vec![self.and()?];
        while self.peek("or") {
            self.at += 1;
            v.push(self.and()?);
        }
        Ok(or(v))
    }

    fn and(&mut self) -> Result<Ast, String> {
        let mut v = vec![self.not()?];
        while self.peek("and") {
            self.at += 1;
            v.push(self.not()?);
        }
        Ok(and(v))
    }

    fn not(&mut self) -> Result<Ast, String> {
        if self.peek("not") {
            self.at += 1;
            let e = self.nested(Self::not)?;
            return Ok(Ast::Not(Box::new(e)));
        }
        self.atom()
    }

    /// `f` one level deeper, refused past [`MAX_CONDITION_DEPTH`].
    fn nested(&mut self, f: fn(&mut Self) -> Result<Ast, String>) -> Result<Ast, String> {
        if self.depth >= MAX_CONDITION_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_CONDITION_DEPTH} parentheses and nots"
            ));
        }
        self.depth += 1;
        let e = f(self);
        self.depth -= 1;
        e
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        match t {
            Some(Tok::Open) => {
                let e = self.nested(Self::or)?;
                match self.toks.get(self.at) {
                    Some(Tok::Close) => {
                        self.at += 1;
                        Ok(e)
                    }
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Word(w)) if w == "1" || w == "all" || w == "any" => {
                if !self.peek("of") {
                    return Err(format!("{w} without of"));
                }
                if w == "any" {
                    return Err("any of is not Sigma (use 1 of)".into());
                }
                self.at += 1;
                let Some(Tok::Word(pat)) = self.toks.get(self.at).cloned() else {
                    return Err(format!("{w} of: expected them or a name pattern"));
                };
                self.at += 1;
                let picked: Vec<Ast> = self
                    .searches
                    .iter()
                    .filter(|(n, _)| {
                        if pat == "them" {
                            !n.starts_with('_')
                        } else {
                            glob(&pat, n)
                        }
                    })
                    .map(|(_, a)| a.clone())
                    .collect();
                if picked.is_empty() {
                    return Err(format!("{w} of {pat}: no search identifier matches"));
                }
                Ok(if w == "1" { or(picked) } else { and(picked) })
            }
            Some(Tok::Word(w)) if w.parse::<u64>().is_ok() && self.peek("of") => {
                Err(format!("{w} of: only 1 of and all of are supported"))
            }
            Some(Tok::Word(w)) if ["and", "or", "not", "of", "them"].contains(&w.as_str()) => {
                Err(format!("unexpected {w}"))
            }
            Some(Tok::Word(w)) => self
                .searches
                .iter()
                .find(|(n, _)| *n == w)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| format!("no search identifier {w}")),
            Some(Tok::Close) => Err("unexpected )".into()),
            None => Err("unexpected end".into()),
        }
    }
}

/// A name pattern of `1 of x*`: `*` any text.
fn glob(pat: &str, name: &str) -> bool {
    let re = format!("^{}$", regex::escape(pat).replace(r"\*", ".*"));
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(name))
}

fn condition_expr(c: &str, searches: &[(String, Ast)]) -> Result<Ast, String> {
    let mut p = Cond {
        toks: tokens(c),
        at: 0,
        searches,
        depth: 0,
    };
    let e = p.or()?;
    if p.at < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.at]));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes() {
        assert_eq!(wildcard("a*b?c"), "a.*b.c");
        assert_eq!(wildcard(r"a\*b\?c\\d\e"), r"a\*b\?c\\d\\e");
        assert_eq!(wildcard("1.2"), r"1\.2");
    }

    #[test]
    fn base64offset_variants() {
        // The three alignments of "/bin/sh" (as pySigma computes them).
        assert_eq!(
            transform("base64offset", "/bin/sh"),
            vec!["L2Jpbi9za", "9iaW4vc2", "vYmluL3No"]
        );
        assert_eq!(transform("base64", "id"), vec!["aWQ=".to_owned()]);
    }

    #[test]
    fn windash_variants() {
        let v = transform("windash", "cmd -c /x a-b");
        assert!(v.contains(&"cmd -c -x a-b".to_owned()), "{v:?}");
        assert!(v.contains(&"cmd /c /x a-b".to_owned()), "{v:?}");
        assert!(
            v.contains(&"cmd \u{2013}c \u{2013}x a-b".to_owned()),
            "{v:?}"
        );
        assert_eq!(v.len(), 5);
    }
}
