//! A regex that is one literal text, checked without the regex engine
//! (issue 13). Sigma's `contains`, `startswith`, `endswith` and plain values
//! compile to regexes such as `(?is)^Failed password for ` or `(?is)^root$`;
//! hundreds of rules run them on most rows, and the regex engine's fixed
//! cost per search was the largest share of a row's CPU. Such a regex is
//! read (from its syntax tree, so flags written inline and escapes count as
//! the regex engine counts them) into a [`Literal`]: a text, where it must
//! occur (anywhere, at the start, at the end, or the whole value), and
//! whether letters match in either ASCII case.
//!
//! The answer is the regex's, exactly. Under `(?i)` a letter's class may
//! hold characters beyond ASCII (`k` also accepts the Kelvin sign, `s` the
//! long s): then only a value in ASCII is decided here, and any other value
//! goes to the regex. Anything else (classes, repetitions, alternations,
//! line anchors) is no literal: the regex runs.

use std::sync::OnceLock;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Where a literal must occur in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Anywhere,
    Start,
    End,
    Whole,
}

/// A regex read as one literal text (see the module docs).
#[derive(Debug, Clone)]
pub struct Literal {
    place: Place,
    /// The text; ASCII letters in lower case when `fold`.
    text: Box<[u8]>,
    /// ASCII letters match in either case.
    fold: bool,
    /// Some position also accepts characters beyond ASCII: only a value in
    /// ASCII is decided here.
    ascii_values_only: bool,
    /// The search of a case-sensitive `Anywhere` text.
    finder: Option<memchr::memmem::Finder<'static>>,
}

/// One position of the literal while it is read.
#[derive(Clone, Copy)]
enum Unit {
    /// This byte exactly.
    Byte(u8),
    /// This ASCII letter (lower case) in either case; `wide`: the class
    /// holds characters beyond ASCII too.
    Fold { lower: u8, wide: bool },
}

impl Literal {
    /// The literal the regex `src` is, if it is one (the regex crate's
    /// syntax and defaults).
    pub fn parse(src: &str) -> Option<Literal> {
        let hir = regex_syntax::ParserBuilder::new().build().parse(src).ok()?;
        let mut items = Vec::new();
        flatten(&hir, &mut items);
        let mut start = false;
        let mut end = false;
        let mut lo = 0;
        let mut hi = items.len();
        // Leading `^`s (the text's start) and `.*`s of every character: the
        // literal is anchored if the last of them is a `^` (`^.*` is none).
        while lo < hi {
            match items[lo].kind() {
                HirKind::Look(Look::Start) => start = true,
                _ if any_text(items[lo]) => start = false,
                _ => break,
            }
            lo += 1;
        }
        while hi > lo {
            match items[hi - 1].kind() {
                HirKind::Look(Look::End) => end = true,
                _ if any_text(items[hi - 1]) => end = false,
                _ => break,
            }
            hi -= 1;
        }
        let mut units = Vec::new();
        for h in &items[lo..hi] {
            match h.kind() {
                HirKind::Literal(l) => units.extend(l.0.iter().map(|&b| Unit::Byte(b))),
                HirKind::Class(c) => units.push(fold_unit(c)?),
                HirKind::Empty => {}
                _ => return None,
            }
        }
        let fold = units.iter().any(|u| matches!(u, Unit::Fold { .. }));
        if fold
            && units
                .iter()
                .any(|u| matches!(u, Unit::Byte(b) if b.is_ascii_alphabetic()))
        {
            // Some letters cased, some not: left to the regex.
            return None;
        }
        let ascii_values_only = units
            .iter()
            .any(|u| matches!(u, Unit::Fold { wide: true, .. }));
        let text: Box<[u8]> = units
            .iter()
            .map(|u| match *u {
                Unit::Byte(b) => b,
                Unit::Fold { lower, .. } => lower,
            })
            .collect();
        let place = match (start, end) {
            (false, false) => Place::Anywhere,
            (true, false) => Place::Start,
            (false, true) => Place::End,
            (true, true) => Place::Whole,
        };
        let finder = (place == Place::Anywhere && !fold)
            .then(|| memchr::memmem::Finder::new(&text).into_owned());
        Some(Literal {
            place,
            text,
            fold,
            ascii_values_only,
            finder,
        })
    }

    /// Whether `value` matches; `None`: only the regex can tell (a value
    /// beyond ASCII where a letter's class is too).
    pub fn matches(&self, value: &str) -> Option<bool> {
        if self.ascii_values_only && !value.is_ascii() {
            return None;
        }
        let h = value.as_bytes();
        let n = &self.text[..];
        let eq = |a: &[u8]| {
            if self.fold {
                a.eq_ignore_ascii_case(n)
            } else {
                a == n
            }
        };
        Some(match self.place {
            Place::Whole => h.len() == n.len() && eq(h),
            Place::Start => h.len() >= n.len() && eq(&h[..n.len()]),
            Place::End => h.len() >= n.len() && eq(&h[h.len() - n.len()..]),
            Place::Anywhere => match &self.finder {
                Some(f) => f.find(h).is_some(),
                None => contains_folded(h, n),
            },
        })
    }
}

/// A regex with its [`Literal`], if it is one: [`TextRegex::is_match`]
/// asks the literal first. The regex of a literal is compiled only when a
/// value needs it (one beyond ASCII): compiling is most of loading hundreds
/// of Sigma rules, and a literal of ordinary size always compiles.
#[derive(Debug, Clone)]
pub struct TextRegex {
    src: String,
    lit: Option<Literal>,
    re: OnceLock<Regex>,
}

/// Literals up to this long compile later, when needed; longer ones at once
/// (so that a compile error, such as the size limit, is reported on load).
const LAZY_MAX: usize = 4096;

impl TextRegex {
    pub fn new(src: &str) -> Result<Self, regex::Error> {
        let lit = (src.len() <= LAZY_MAX)
            .then(|| Literal::parse(src))
            .flatten();
        let re = OnceLock::new();
        if lit.is_none() {
            let _ = re.set(Regex::new(src)?);
        }
        Ok(Self {
            src: src.to_owned(),
            lit,
            re,
        })
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// True if the regex matches somewhere in `value`.
    pub fn is_match(&self, value: &str) -> bool {
        match self.lit.as_ref().and_then(|l| l.matches(value)) {
            Some(m) => m,
            None => self
                .re
                .get_or_init(|| Regex::new(&self.src).expect("a short literal compiles"))
                .is_match(value),
        }
    }
}

/// True if `n` (ASCII letters in lower case) occurs in `h`, ASCII letters
/// in either case.
fn contains_folded(h: &[u8], n: &[u8]) -> bool {
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let last = h.len() - n.len();
    let upper = first.to_ascii_uppercase();
    let mut from = 0;
    while from <= last {
        let Some(at) = memchr::memchr2(first, upper, &h[from..=last]) else {
            return false;
        };
        let at = from + at;
        if h[at + 1..at + n.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The parts of a concatenation, captures unwrapped (they do not change
/// whether a regex matches).
fn flatten<'h>(h: &'h Hir, out: &mut Vec<&'h Hir>) {
    match h.kind() {
        HirKind::Concat(v) => v.iter().for_each(|x| flatten(x, out)),
        HirKind::Capture(c) => flatten(&c.sub, out),
        _ => out.push(h),
    }
}

/// `.*` over every character (`(?s)`): matches any text, even none.
fn any_text(h: &Hir) -> bool {
    let HirKind::Repetition(r) = h.kind() else {
        return false;
    };
    if r.min != 0 || r.max.is_some() {
        return false;
    }
    match r.sub.kind() {
        HirKind::Class(Class::Unicode(u)) => {
            let r = u.ranges();
            r.len() == 1 && r[0].start() == '\0' && r[0].end() == char::MAX
        }
        _ => false,
    }
}

/// A class that is one ASCII letter in either case (perhaps with
/// characters beyond ASCII that fold to it), or one character.
fn fold_unit(c: &Class) -> Option<Unit> {
    let Class::Unicode(u) = c else {
        return None;
    };
    let mut ascii: Vec<u8> = Vec::new();
    let mut wide = false;
    for r in u.ranges() {
        for ch in r.start()..=r.end() {
            if ch.is_ascii() {
                ascii.push(ch as u8);
            } else {
                wide = true;
            }
            if ascii.len() > 2 {
                return None;
            }
        }
    }
    match ascii.as_slice() {
        [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) && a != b => {
            Some(Unit::Fold {
                lower: a.to_ascii_lowercase(),
                wide,
            })
        }
        [b] if !wide => Some(Unit::Byte(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(src: &str) -> Option<Literal> {
        Regex::new(src).unwrap();
        Literal::parse(src)
    }

    /// Every value gets the regex's answer (or is left to it).
    fn agrees(src: &str, values: &[&str]) {
        let re = Regex::new(src).unwrap();
        let l = Literal::parse(src).unwrap_or_else(|| panic!("{src} is a literal"));
        for v in values {
            if let Some(m) = l.matches(v) {
                assert_eq!(m, re.is_match(v), "{src} on {v:?}");
            } else {
                assert!(!v.is_ascii(), "{src} on {v:?}: ASCII left to the regex");
            }
        }
    }

    const VALUES: &[&str] = &[
        "",
        "root",
        "Root",
        "ROOT",
        "xroot",
        "rootx",
        "a root b",
        "roo",
        "r\u{212A}oot",
        "ro\u{17F}t",
        "Failed password for root",
        "failed PASSWORD for x",
        "Failed password fo",
        "x Failed password for",
        "/bin/sh -c 'id'",
        "/BIN/SH",
        "caf\u{e9} root",
        "sshd",
        "SSHD",
        "s\u{17F}hd",
        "\u{17F}shd",
    ];

    #[test]
    fn sigma_forms_answer_as_the_regex() {
        for src in [
            "(?is)^root$",
            "(?is)root",
            "(?is)^root",
            "(?is)root$",
            "(?s)^root$",
            "(?s)root",
            "(?is)^Failed password for ",
            "(?is)Failed password for",
            "(?s)Failed password for",
            "(?is)/bin/sh",
            "(?is)^sshd$",
            "(?is)sshd",
            "(?is)^.*root.*$",
            "(?is)^root.*",
            "(?is).*root$",
            "(?is)^$",
            "(?is)",
            "(?s)caf\u{e9}",
            "(?is)^.*$",
            "(?is).*^root",
            "Failed password for ",
            "(root)",
            r"(?is)a\.b\*c\?",
        ] {
            agrees(src, VALUES);
        }
    }

    #[test]
    fn kinds_and_folding() {
        let l = lit("(?is)^root$").unwrap();
        assert_eq!(
            (l.place, l.fold, &l.text[..]),
            (Place::Whole, true, &b"root"[..])
        );
        assert!(!l.ascii_values_only);
        // `s` also accepts the long s: values beyond ASCII go to the regex.
        let l = lit("(?is)sshd").unwrap();
        assert!(l.ascii_values_only);
        assert_eq!(l.matches("\u{17F}shd"), None);
        assert_eq!(l.matches("SsHd"), Some(true));
        let l = lit("(?s)Failed").unwrap();
        assert!(!l.fold && l.finder.is_some());
        assert_eq!(l.matches("x failed"), Some(false));
        assert_eq!(l.matches("caf\u{e9} Failed"), Some(true));
    }

    #[test]
    fn other_regexes_are_left_to_the_engine() {
        for src in [
            r"\d+",
            "a|b",
            "(?is)a.b",
            "(?is)a.*b",
            "(?m)^root$",
            "(?i)a(?-i)b",
            "(?i)caf\u{e9}",
            "[ab]",
            "(?i-u:a)",
            "(?-s)^.*root",
            "root$x",
        ] {
            assert!(lit(src).is_none(), "{src}");
        }
    }

    #[test]
    fn text_regex_compiles_a_literal_only_when_a_value_needs_it() {
        let t = TextRegex::new("(?is)^sshd$").unwrap();
        assert!(t.re.get().is_none());
        assert!(t.is_match("SSHD") && !t.is_match("sshd2"));
        assert!(
            t.re.get().is_none(),
            "ASCII values are decided by the literal"
        );
        assert!(t.is_match("\u{17F}shd"), "the long s is an s under (?i)");
        assert!(t.re.get().is_some());
        let t = TextRegex::new(r"\d+x").unwrap();
        assert!(t.re.get().is_some() && t.is_match("a12x") && !t.is_match("ax"));
        assert!(TextRegex::new("(").is_err());
        // A long literal compiles at once (its errors are a load's).
        let long = "a".repeat(LAZY_MAX + 1);
        assert!(TextRegex::new(&long).unwrap().re.get().is_some());
    }

    #[test]
    fn folded_search_finds_every_occurrence() {
        assert!(contains_folded(b"xxAbAbC", b"abc"));
        assert!(contains_folded(b"ABC", b"abc"));
        assert!(!contains_folded(b"ab", b"abc"));
        assert!(contains_folded(b"", b""));
        assert!(!contains_folded(b"a\xc3\xa9", b"ae"));
        assert!(contains_folded(b"1-2-3", b"-3"));
    }
}
