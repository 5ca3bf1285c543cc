//! `where`: a boolean expression over an event's columns, its `extra` keys
//! and its raw line, checked in Rust. Sigma detections compile to it (so
//! `siemtrigger --import-sigma` can print them as TOML), and TOML rules may
//! use it directly:
//!
//! ```toml
//! match = { where = "process re '(?i)^sshd$' and not extra.command re '(?i)/dev/tcp/'" }
//! ```
//!
//! ```text
//! expr  := term ('or' term)*
//! term  := factor ('and' factor)*
//! factor:= 'not' factor | '(' expr ')' | 'true' | 'false' | pred
//! pred  := FIELD 're' 'REGEX'          Rust regex on the value (flags inline: (?i), (?s), ...)
//!        | FIELD 'cidr' 'NET'          an IPv4/IPv6 address within NET
//!        | FIELD 'exists'              the value is present (not NULL; for extra: the key is set)
//!        | FIELD ('gt'|'ge'|'lt'|'le') NUMBER   numeric comparison (a value that is no number: false)
//!        | FIELD ('same'|'same_cased') FIELD    equal values (case-insensitive | exact)
//! FIELD := a column (user, source_host, dport, raw, ...) | extra.KEY
//! ```
//!
//! Strings are in single quotes; `''` is one quote, nothing else is escaped.
//! A missing value (NULL column, absent extra key) matches no predicate but
//! `exists`, so `not user re 'x'` is true for an event without a user.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::literal::TextRegex;
use super::template::template_column;

/// An event's values, as the expression reads them.
pub trait Fields {
    /// A column by canonical name (`None`: NULL or not read).
    fn column(&self, name: &str) -> Option<&str>;
    /// An `extra` key (`None`: absent).
    fn extra(&self, key: &str) -> Option<String>;
}

/// The values of an `extra` JSON object, as strings.
pub fn extra_map(json: Option<&str>) -> BTreeMap<String, String> {
    let Some(j) = json.filter(|j| !j.is_empty()) else {
        return BTreeMap::new();
    };
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(j) {
        Ok(m) => m
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// A field as written: a column or an `extra` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    Column(&'static str),
    Extra(String),
}

impl FieldRef {
    /// `user`, `dport` (an alias), `raw`, `extra.KEY`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if let Some(k) = name.strip_prefix("extra.") {
            if k.is_empty() {
                return Err("extra. needs a key (extra.KEY)".into());
            }
            return Ok(FieldRef::Extra(k.to_owned()));
        }
        match name {
            "raw" => Ok(FieldRef::Column("raw")),
            "message" => Ok(FieldRef::Column("message")),
            _ => template_column(name)
                .filter(|c| !matches!(*c, "id" | "ts" | "received"))
                .map(FieldRef::Column)
                .ok_or_else(|| {
                    format!("{name:?} is not a column (host, process, pid, user, source_host, ...) or extra.KEY")
                }),
        }
    }

    fn get(&self, ev: &dyn Fields) -> Option<String> {
        match self {
            FieldRef::Column(c) => ev.column(c).map(str::to_owned),
            FieldRef::Extra(k) => ev.extra(k),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Column(c) => f.write_str(c),
            FieldRef::Extra(k) => write!(f, "extra.{k}"),
        }
    }
}

/// Comparison of a numeric predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    pub fn name(self) -> &'static str {
        match self {
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
        }
    }

    pub fn holds(self, v: f64, n: f64) -> bool {
        match self {
            Cmp::Gt => v > n,
            Cmp::Ge => v >= n,
            Cmp::Lt => v < n,
            Cmp::Le => v <= n,
        }
    }
}

/// What a predicate checks, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Re(String),
    Cidr(String),
    Exists,
    Num(Cmp, f64),
    Same { other: String, cased: bool },
}

/// An expression as written (text form: [`Ast::parse`], `Display`).
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Bool(bool),
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Not(Box<Ast>),
    Pred { field: String, op: Op },
}

/// A `'...'` string (`''` for a quote).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, items: &[Ast], sep: &str) -> fmt::Result {
            for (i, a) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                match a {
                    Ast::And(_) | Ast::Or(_) => write!(f, "({a})")?,
                    _ => write!(f, "{a}")?,
                }
            }
            Ok(())
        }
        match self {
            Ast::Bool(b) => write!(f, "{b}"),
            Ast::And(v) if v.is_empty() => f.write_str("true"),
            Ast::Or(v) if v.is_empty() => f.write_str("false"),
            Ast::And(v) => list(f, v, "and"),
            Ast::Or(v) => list(f, v, "or"),
            Ast::Not(a) => match **a {
                Ast::And(_) | Ast::Or(_) => write!(f, "not ({a})"),
                _ => write!(f, "not {a}"),
            },
            Ast::Pred { field, op } => match op {
                Op::Re(r) => write!(f, "{field} re {}", quote(r)),
                Op::Cidr(c) => write!(f, "{field} cidr {}", quote(c)),
                Op::Exists => write!(f, "{field} exists"),
                Op::Num(c, n) => write!(f, "{field} {} {}", c.name(), fmt_num(*n)),
                Op::Same { other, cased } => write!(
                    f,
                    "{field} {} {other}",
                    if *cased { "same_cased" } else { "same" }
                ),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Word(String),
    Str(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            '\'' => {
                let mut v = String::new();
                loop {
                    match it.next() {
                        None => return Err(format!("unterminated string at {i}")),
                        Some((_, '\'')) => {
                            if matches!(it.peek(), Some((_, '\''))) {
                                it.next();
                                v.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some((_, c)) => v.push(c),
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_alphanumeric() || "_.-+".contains(c) => {
                let mut w = String::from(c);
                while let Some((_, c)) = it.peek() {
                    if c.is_ascii_alphanumeric() || "_.-+".contains(*c) {
                        w.push(*c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w));
            }
            other => return Err(format!("unexpected {other:?} at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    /// Parentheses and `not`s open around the current token.
    depth: usize,
}

/// Deepest nesting of parentheses and `not`s in an expression: parsing,
/// compiling, evaluating and printing recurse once per level, so a deeper
/// one would overflow the stack. A Sigma condition (at most 64 levels)
/// translates within it.
pub const MAX_DEPTH: usize = 100;

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(x)) if x == w)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expr(&mut self) -> Result<Ast, String> {
        let mut v = vec![self.term()?];
        while self.peek_word("or") {
            self.at += 1;
            v.push(self.term()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Ast::Or(v)
        })
    }

    fn term(&mut self) -> Result<Ast, String> {
        let mut v = vec![self.factor()?];
        while self.peek_word("and") {
            self.at += 1;
            v.push(self.factor()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Ast::And(v)
        })
    }

    /// `f` one level deeper, refused past [`MAX_DEPTH`].
    fn nested(&mut self, f: fn(&mut Self) -> Result<Ast, String>) -> Result<Ast, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} parentheses and nots"
            ));
        }
        self.depth += 1;
        let e = f(self);
        self.depth -= 1;
        e
    }

    fn factor(&mut self) -> Result<Ast, String> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.nested(Self::expr)?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Word(w)) if w == "not" => Ok(Ast::Not(Box::new(self.nested(Self::factor)?))),
            Some(Tok::Word(w)) if w == "true" => Ok(Ast::Bool(true)),
            Some(Tok::Word(w)) if w == "false" => Ok(Ast::Bool(false)),
            Some(Tok::Word(field)) => {
                let op = match self.next() {
                    Some(Tok::Word(op)) => op,
                    _ => {
                        return Err(format!(
                            "{field}: expected an operator (re, cidr, exists, gt, ge, lt, le, same, same_cased)"
                        ));
                    }
                };
                let op = match op.as_str() {
                    "re" | "cidr" => {
                        let Some(Tok::Str(s)) = self.next() else {
                            return Err(format!("{field} {op}: expected a '...' string"));
                        };
                        if op == "re" { Op::Re(s) } else { Op::Cidr(s) }
                    }
                    "exists" => Op::Exists,
                    "gt" | "ge" | "lt" | "le" => {
                        let n = match self.next() {
                            Some(Tok::Word(n)) | Some(Tok::Str(n)) => n,
                            _ => return Err(format!("{field} {op}: expected a number")),
                        };
                        let n: f64 = n
                            .parse()
                            .map_err(|_| format!("{field} {op}: {n:?} is not a number"))?;
                        let c = match op.as_str() {
                            "gt" => Cmp::Gt,
                            "ge" => Cmp::Ge,
                            "lt" => Cmp::Lt,
                            _ => Cmp::Le,
                        };
                        Op::Num(c, n)
                    }
                    "same" | "same_cased" => {
                        let Some(Tok::Word(other)) = self.next() else {
                            return Err(format!("{field} {op}: expected a field"));
                        };
                        Op::Same {
                            other,
                            cased: op == "same_cased",
                        }
                    }
                    other => {
                        return Err(format!(
                            "{field}: unknown operator {other:?} (re, cidr, exists, gt, ge, lt, le, same, same_cased)"
                        ));
                    }
                };
                Ok(Ast::Pred { field, op })
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end".into()),
        }
    }
}

impl Ast {
    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Ast, String> {
        let mut p = Parser {
            toks: tokenize(s)?,
            at: 0,
            depth: 0,
        };
        let e = p.expr()?;
        if p.at < p.toks.len() {
            return Err(format!(
                "unexpected {:?} after the expression",
                p.toks[p.at]
            ));
        }
        Ok(e)
    }

    /// Checks and compiles (regexes, networks, fields).
    pub fn compile(&self) -> Result<Expr, String> {
        Ok(match self {
            Ast::Bool(b) => Expr::Bool(*b),
            Ast::And(v) => Expr::And(v.iter().map(Ast::compile).collect::<Result<_, _>>()?),
            Ast::Or(v) => Expr::Or(v.iter().map(Ast::compile).collect::<Result<_, _>>()?),
            Ast::Not(a) => Expr::Not(Box::new(a.compile()?)),
            Ast::Pred { field, op } => {
                let f = FieldRef::parse(field)?;
                let op = match op {
                    Op::Re(r) => Pred::Re(Box::new(
                        TextRegex::new(r).map_err(|e| format!("{field} re {}: {e}", quote(r)))?,
                    )),
                    Op::Cidr(c) => Pred::Cidr(
                        c.trim()
                            .parse::<ipnet::IpNet>()
                            .or_else(|_| c.trim().parse::<IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| format!("{field} cidr {}: not a network", quote(c)))?,
                    ),
                    Op::Exists => Pred::Exists,
                    Op::Num(c, n) => Pred::Num(*c, *n),
                    Op::Same { other, cased } => Pred::Same {
                        other: FieldRef::parse(other)?,
                        cased: *cased,
                    },
                };
                Expr::Pred(f, op)
            }
        })
    }
}

/// A compiled predicate.
#[derive(Debug, Clone)]
pub enum Pred {
    /// A regex (one that is a literal text is matched as one: `rules::literal`).
    Re(Box<TextRegex>),
    Cidr(ipnet::IpNet),
    Exists,
    Num(Cmp, f64),
    Same {
        other: FieldRef,
        cased: bool,
    },
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Bool(bool),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Pred(FieldRef, Pred),
}

impl Expr {
    /// True if the event matches.
    pub fn eval(&self, ev: &dyn Fields) -> bool {
        match self {
            Expr::Bool(b) => *b,
            Expr::And(v) => v.iter().all(|e| e.eval(ev)),
            Expr::Or(v) => v.iter().any(|e| e.eval(ev)),
            Expr::Not(e) => !e.eval(ev),
            Expr::Pred(f, p) => {
                let holds = |v: &str| matches!(p, Pred::Exists) || p.holds(v, ev);
                // A column is read in place (no copy per predicate).
                match f {
                    FieldRef::Column(c) => ev.column(c).is_some_and(holds),
                    FieldRef::Extra(k) => ev.extra(k).is_some_and(|v| holds(&v)),
                }
            }
        }
    }

    /// Columns the expression reads (`extra` for extra keys).
    pub fn columns(&self, out: &mut Vec<&'static str>) {
        let f = |r: &FieldRef, out: &mut Vec<&'static str>| match r {
            FieldRef::Column(c) => out.push(c),
            FieldRef::Extra(_) => out.push("extra"),
        };
        match self {
            Expr::Bool(_) => {}
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.columns(out)),
            Expr::Not(e) => e.columns(out),
            Expr::Pred(r, p) => {
                f(r, out);
                if let Pred::Same { other, .. } = p {
                    f(other, out);
                }
            }
        }
    }
}

impl Pred {
    fn holds(&self, v: &str, ev: &dyn Fields) -> bool {
        match self {
            Pred::Re(r) => r.is_match(v),
            Pred::Cidr(n) => v.trim().parse::<IpAddr>().is_ok_and(|a| n.contains(&a)),
            Pred::Exists => true,
            Pred::Num(c, n) => v.trim().parse::<f64>().is_ok_and(|x| c.holds(x, *n)),
            Pred::Same { other, cased } => other.get(ev).is_some_and(|o| {
                if *cased {
                    o == v
                } else {
                    o.to_lowercase() == v.to_lowercase()
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ev(
        BTreeMap<&'static str, &'static str>,
        BTreeMap<String, String>,
    );
    impl Fields for Ev {
        fn column(&self, name: &str) -> Option<&str> {
            self.0.get(name).copied()
        }
        fn extra(&self, key: &str) -> Option<String> {
            self.1.get(key).cloned()
        }
    }

    fn ev() -> Ev {
        Ev(
            [
                ("user", "Alice"),
                ("source_host", "10.1.2.3"),
                ("dest_port", "22"),
                ("raw", "x"),
            ]
            .into(),
            [
                ("command".to_owned(), "/bin/sh -c 'id'".to_owned()),
                ("target_user".into(), "alice".into()),
            ]
            .into(),
        )
    }

    fn t(s: &str) -> bool {
        let a = Ast::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        // The text form reads back as the same expression.
        assert_eq!(Ast::parse(&a.to_string()).unwrap(), a, "{s} -> {a}");
        a.compile().unwrap().eval(&ev())
    }

    #[test]
    fn predicates_and_connectives() {
        assert!(t("user re '(?i)^alice$'"));
        assert!(!t("user re '^alice$'"));
        assert!(t(
            "shost cidr '10.0.0.0/8' and not shost cidr '10.1.3.0/24'"
        ));
        assert!(t(
            "dport ge 22 and dport le 22 and not dport gt 22 and dport lt 23"
        ));
        assert!(t("extra.command re 'c ''id''$'"));
        assert!(t(
            "extra.command exists and not extra.nope exists and not host exists"
        ));
        assert!(t(
            "user same extra.target_user and not user same_cased extra.target_user"
        ));
        assert!(t("(false or true) and not (true and false)"));
        assert!(!t("not extra.nope re '' and host re ''"));
        assert!(t("not host re 'x'"));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Ast::parse("user re").unwrap_err().contains("string"));
        assert!(
            Ast::parse("user is 'x'")
                .unwrap_err()
                .contains("unknown operator")
        );
        assert!(Ast::parse("(user exists").unwrap_err().contains(")"));
        assert!(
            Ast::parse("nosuch exists")
                .unwrap()
                .compile()
                .unwrap_err()
                .contains("not a column")
        );
        assert!(Ast::parse("user re '('").unwrap().compile().is_err());
    }
}
