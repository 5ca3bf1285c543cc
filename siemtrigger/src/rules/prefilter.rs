//! Which of many matchers an event may match, from one pass over each field
//! (issue 13: hundreds of Sigma rules). Every matcher's regexes and `where`
//! expression are read for literal text that any match must contain (in a
//! column, or in an `extra` key); the literals of every matcher on one field
//! go into one Aho-Corasick automaton. Per event, each automaton runs once
//! over its field, and only the matchers whose literal occurs (or that have
//! none) are checked in full. The literals are a necessary condition, never
//! a sufficient one: the full check decides, so alerts are exactly those of
//! checking every matcher, at a cost that grows with the matchers that may
//! match rather than with all of them.
//!
//! Literals are compared ASCII-case-insensitively, a superset of what the
//! regex accepts: `(?i)` classes count as one letter only when they are
//! exactly an ASCII letter's two cases (`(?i)k` also accepts the Kelvin
//! sign, so it ends a literal instead). An `extra` key is searched for in the
//! `extra` column's JSON text, with only the longest run of characters that
//! no JSON encoder escapes.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

use super::Matcher;
use super::expr::{Expr, FieldRef, Fields, Pred};
use super::matcher::RuleRegex;

/// Literals shorter than this narrow too little to be worth an automaton.
const MIN_LITERAL: usize = 3;
/// A requirement with more alternatives than this is dropped (none).
const MAX_ALTERNATIVES: usize = 64;

/// One of these (column, literal) pairs occurs in every event that matches:
/// the literal, in ASCII lower case, within the column's text.
pub type Requirement = Vec<(&'static str, String)>;

/// The matchers' literals by column, and the matchers that have none.
#[derive(Debug, Default)]
pub struct Prefilter {
    fields: Vec<FieldSet>,
    /// Matchers always checked in full (no literal found).
    always: Vec<usize>,
    /// Matchers in all.
    len: usize,
}

/// The literals of one column.
#[derive(Debug)]
struct FieldSet {
    column: &'static str,
    ac: AhoCorasick,
    /// Per literal (automaton pattern id), the matchers that require it.
    matchers: Vec<Vec<usize>>,
}

/// The literals of one column while the prefilter is built.
struct Literals {
    column: &'static str,
    texts: Vec<String>,
    users: Vec<Vec<usize>>,
}

/// Per-event scratch of [`Prefilter::candidates`].
#[derive(Debug, Default)]
pub struct Scratch {
    /// The event each matcher was last picked for (no repeats in a list).
    stamp: Vec<u64>,
    event: u64,
}

impl Prefilter {
    /// The prefilter of `matchers` (indexes are positions in the slice).
    pub fn new(matchers: &[&Matcher]) -> Self {
        // Per column: its literals, and per literal the matchers requiring it.
        let mut by_column: Vec<Literals> = Vec::new();
        let mut always = Vec::new();
        for (i, m) in matchers.iter().enumerate() {
            let Some(req) = matcher_requirement(m) else {
                always.push(i);
                continue;
            };
            for (col, lit) in req {
                let at = match by_column.iter().position(|f| f.column == col) {
                    Some(at) => at,
                    None => {
                        by_column.push(Literals {
                            column: col,
                            texts: Vec::new(),
                            users: Vec::new(),
                        });
                        by_column.len() - 1
                    }
                };
                let f = &mut by_column[at];
                match f.texts.iter().position(|l| *l == lit) {
                    Some(p) => f.users[p].push(i),
                    None => {
                        f.texts.push(lit);
                        f.users.push(vec![i]);
                    }
                }
            }
        }
        let mut fields = Vec::new();
        for Literals {
            column,
            texts,
            mut users,
        } in by_column
        {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&texts);
            match ac {
                Ok(ac) => {
                    for u in &mut users {
                        u.dedup();
                    }
                    fields.push(FieldSet {
                        column,
                        ac,
                        matchers: users,
                    });
                }
                // Too large for an automaton: those matchers are always checked.
                Err(_) => always.extend(users.into_iter().flatten()),
            }
        }
        always.sort_unstable();
        always.dedup();
        // A matcher also listed under a column is then checked anyway.
        Self {
            fields,
            always,
            len: matchers.len(),
        }
    }

    /// Appends to `out` (cleared first) the matchers `ev` may match, each once.
    pub fn candidates(&self, ev: &dyn Fields, s: &mut Scratch, out: &mut Vec<usize>) {
        out.clear();
        if s.stamp.len() != self.len {
            s.stamp = vec![0; self.len];
        }
        s.event += 1;
        for &i in &self.always {
            s.stamp[i] = s.event;
            out.push(i);
        }
        for f in &self.fields {
            let Some(text) = ev.column(f.column) else {
                continue;
            };
            for m in f.ac.find_overlapping_iter(text) {
                for &i in &f.matchers[m.pattern().as_usize()] {
                    if s.stamp[i] != s.event {
                        s.stamp[i] = s.event;
                        out.push(i);
                    }
                }
            }
        }
    }
}

/// What every event matching `m`'s Rust-side check contains (`None`: no
/// literal known). The include regexes (one must match `raw`), the `where`
/// expression and the steps (one must hold) must all hold: any one of their
/// requirements will do, the most selective is kept. `--explain-rule`
/// shows it.
pub fn matcher_requirement(m: &Matcher) -> Option<Requirement> {
    let mut options: Vec<Requirement> = Vec::new();
    if !m.regex.is_empty() {
        let each: Option<Vec<Requirement>> = m
            .regex
            .iter()
            .map(|r| match r {
                RuleRegex::Fixed(re) => {
                    regex_literals(re.as_str()).map(|l| on(&FieldRef::Column("raw"), l))
                }
                RuleRegex::BackRef { .. } => None,
            })
            .collect();
        options.extend(each.and_then(union));
    }
    if let Some((_, e)) = &m.expr {
        options.extend(expr_requirement(e));
    }
    if !m.steps.is_empty() {
        let each: Option<Vec<Requirement>> =
            m.steps.iter().map(|(_, e)| expr_requirement(e)).collect();
        options.extend(each.and_then(union));
    }
    best(options)
}

/// The literals of a column (an `extra` key: its JSON-safe part, in `extra`).
fn on(field: &FieldRef, lits: Vec<String>) -> Requirement {
    match field {
        FieldRef::Column(c) => lits.into_iter().map(|l| (*c, l)).collect(),
        FieldRef::Extra(_) => lits
            .into_iter()
            .map(|l| ("extra", json_safe_run(&l).to_owned()))
            .collect(),
    }
}

/// The longest run of `s` that any JSON encoder writes as it is: ASCII
/// letters, digits and punctuation that is never escaped (`"`, `\`, `/`
/// and the HTML-sensitive `<`, `>`, `&`, `'` can be).
fn json_safe_run(s: &str) -> &str {
    let safe = |c: char| c.is_ascii_graphic() && !"\"\\/<>&'".contains(c) || c == ' ';
    let mut best = (0, 0);
    let mut start = None;
    for (i, c) in s.char_indices().chain([(s.len(), '\0')]) {
        match (safe(c) && i < s.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                if i - st > best.1 - best.0 {
                    best = (st, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    &s[best.0..best.1]
}

/// One requirement from alternatives that must each hold: all of them, if
/// every alternative has one.
fn union(parts: Vec<Requirement>) -> Option<Requirement> {
    let mut out: Requirement = parts.into_iter().flatten().collect();
    out.sort();
    out.dedup();
    (out.len() <= MAX_ALTERNATIVES).then_some(out)
}

/// Of requirements that all hold, the most selective: the longest shortest
/// literal, then the fewest alternatives. Requirements with a literal too
/// short to narrow are dropped.
fn best(options: Vec<Requirement>) -> Option<Requirement> {
    options
        .into_iter()
        .filter(|r| r.iter().all(|(_, l)| l.len() >= MIN_LITERAL))
        .max_by_key(|r| {
            let shortest = r.iter().map(|(_, l)| l.len()).min().unwrap_or(usize::MAX);
            (shortest, std::cmp::Reverse(r.len()))
        })
}

/// What every event the expression holds for contains.
fn expr_requirement(e: &Expr) -> Option<Requirement> {
    match e {
        // Never true: no event needs checking.
        Expr::Bool(false) => Some(Vec::new()),
        Expr::Bool(true) | Expr::Not(_) => None,
        Expr::And(v) => best(v.iter().filter_map(expr_requirement).collect()),
        Expr::Or(v) => v
            .iter()
            .map(expr_requirement)
            .collect::<Option<Vec<_>>>()
            .and_then(union),
        Expr::Pred(f, Pred::Re(re)) => regex_literals(re.as_str()).map(|l| on(f, l)),
        Expr::Pred(..) => None,
    }
}

/// Literals (ASCII lower case) one of which every match of `src` contains.
fn regex_literals(src: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(src).ok()?;
    required(&hir).filter(|l| !l.is_empty() && l.len() <= MAX_ALTERNATIVES)
}

/// The one text (ASCII lower case) every match of `h` is, if there is one.
fn exact(h: &Hir) -> Option<String> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(String::new()),
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(str::to_ascii_lowercase),
        HirKind::Class(c) => class_char(c).map(String::from),
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Concat(v) => v.iter().map(exact).collect(),
        HirKind::Repetition(r) if Some(r.min) == r.max && r.min <= 16 => {
            exact(&r.sub).map(|s| s.repeat(r.min as usize))
        }
        HirKind::Repetition(_) | HirKind::Alternation(_) => None,
    }
}

/// The character a class stands for, ASCII-case-insensitively: a class of
/// one character, or of exactly an ASCII letter's two cases.
fn class_char(c: &Class) -> Option<char> {
    let chars: Vec<char> = match c {
        Class::Unicode(u) => {
            let mut v = Vec::new();
            for r in u.ranges() {
                if v.len() + (r.end() as usize - r.start() as usize) > 2 {
                    return None;
                }
                v.extend(r.start()..=r.end());
            }
            v
        }
        Class::Bytes(b) => {
            let mut v = Vec::new();
            for r in b.ranges() {
                if v.len() + usize::from(r.end() - r.start()) > 2 || !r.end().is_ascii() {
                    return None;
                }
                v.extend((r.start()..=r.end()).map(char::from));
            }
            v
        }
    };
    match chars.as_slice() {
        [c] => Some(c.to_ascii_lowercase()),
        [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) => {
            Some(a.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Literals one of which every match of `h` contains (`None`: unknown).
fn required(h: &Hir) -> Option<Vec<String>> {
    if let Some(s) = exact(h) {
        return (!s.is_empty()).then(|| vec![s]);
    }
    match h.kind() {
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Alternation(v) => {
            let mut out = Vec::new();
            for a in v {
                out.extend(required(a)?);
            }
            out.sort();
            out.dedup();
            (out.len() <= MAX_ALTERNATIVES).then_some(out)
        }
        HirKind::Concat(v) => {
            // Runs of adjacent exact parts are literals of their own; the
            // other parts may have some.
            let mut options: Vec<Vec<String>> = Vec::new();
            let mut run = String::new();
            for part in v {
                match exact(part) {
                    Some(s) => run.push_str(&s),
                    None => {
                        if !run.is_empty() {
                            options.push(vec![std::mem::take(&mut run)]);
                        }
                        options.extend(required(part));
                    }
                }
            }
            if !run.is_empty() {
                options.push(vec![run]);
            }
            options.into_iter().max_by_key(|o| {
                let shortest = o.iter().map(String::len).min().unwrap_or(0);
                (shortest, std::cmp::Reverse(o.len()))
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(src: &str) -> Option<Vec<String>> {
        regex_literals(src)
    }

    #[test]
    fn literals_every_match_contains() {
        assert_eq!(lits("(?is)^.*/dev/tcp/.*$"), Some(vec!["/dev/tcp/".into()]));
        assert_eq!(
            lits("Failed password"),
            Some(vec!["failed password".into()])
        );
        assert_eq!(
            lits("(useradd|adduser) x"),
            Some(vec!["adduser".into(), "useradd".into()])
        );
        // (?i)s also accepts the long s (U+017F).
        assert_eq!(
            lits("(?i)(useradd|adduser) x"),
            Some(vec!["addu".into(), "eradd".into()])
        );
        // Kelvin sign and long s fold to k and s: they end a literal.
        assert_eq!(lits("(?i)abc(k)de"), Some(vec!["abc".into()]));
        assert_eq!(lits("(?i)sshd"), Some(vec!["hd".into()]));
        assert_eq!(lits("a*"), None);
        assert_eq!(lits("a|.*"), None);
        assert_eq!(lits("(ab)+c?"), Some(vec!["ab".into()]));
        assert_eq!(json_safe_run("/bin/bash -i"), "bash -i");
        assert_eq!(json_safe_run("nc -e sh"), "nc -e sh");
        assert_eq!(json_safe_run("\"a\\b"), "a");
    }

    #[test]
    fn the_kelvin_sign_is_not_lost() {
        // `(?i)k` accepts U+212A: a literal of "k" would miss it.
        let re = regex::Regex::new("(?i)kernel panic").unwrap();
        assert!(re.is_match("\u{212A}ernel panic"));
        let l = lits("(?i)kernel panic").unwrap();
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&l)
            .unwrap();
        assert!(ac.is_match("\u{212A}ernel panic"), "{l:?}");
    }
}
