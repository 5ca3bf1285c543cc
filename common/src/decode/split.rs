/*!
A forgery-safe regex `A(?P<user>.*)B$` resolved without backtracking.

The greedy `.*` makes the capture engine try every end of the user name from
the end of the message back (about 13k instructions a line in the ingest
profile). The same captures come from three searches that never backtrack
over the user name, when the message has no line feed (the `.*` then spans
any text):

1. B is found from the end of the message: a reverse DFA anchored at the end,
   stopping at its first match, gives the *last* position `p` at which B
   matches up to the end (the greedy `.*` leaves B the shortest tail);
2. A runs on the message up to `p`: its leftmost-first match, ending at `q`,
   is the one the whole regex takes (every A that ends by `p` can be followed
   by `.*` up to `p`; one that ends after `p` has no B after it, and an
   earlier `p` leaves A less room, so no match exists when A fails here);
3. B runs anchored at `p` for its captures; the user name is `q..p`.

Regexes of another shape, and messages with a line feed, use the whole regex.
*/

use regex_automata::hybrid::dfa::{self, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, meta};
use regex_syntax::hir::{self, Hir, HirKind, Look};

/// The parts of a split regex.
#[derive(Debug)]
pub struct Split {
    /// Capture index of the greedy `.*` group.
    group: usize,
    /// What comes before the group (its captures keep their indices).
    prefix: meta::Regex,
    /// What comes after the group, anchored at its start by the search
    /// (its captures keep their indices: those before are empty).
    suffix: meta::Regex,
    /// The suffix reversed: its first match from the end is its last start.
    suffix_rev: DFA,
}

/// Per-thread search state of one [`Split`].
#[derive(Debug, Clone)]
pub struct SplitCache {
    prefix: meta::Cache,
    prefix_caps: Captures,
    suffix: meta::Cache,
    suffix_caps: Captures,
    suffix_rev: dfa::Cache,
}

/// How a split search ended.
pub enum Outcome {
    /// The whole regex does not match.
    NoMatch,
    /// It matches; the captures are in the cache (see [`Split::group`]).
    Match,
    /// Not decided here: run the whole regex.
    Fallback,
}

impl Split {
    /// Splits `src` (as the decoders compile it: Unicode off, bytes) when it is
    /// a concatenation of A, a group of a greedy `.*` and B ending in `$`.
    /// `None`: another shape, or a part that does not compile alone.
    pub fn new(src: &str) -> Option<Split> {
        let hir = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(src)
            .ok()?;
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let at = items.iter().position(is_greedy_any_group)?;
        let HirKind::Capture(cap) = items[at].kind() else {
            return None;
        };
        let before = &items[..at];
        let after = &items[at + 1..];
        // B ends at the end of the message (`$` without (?m)); A holds no
        // look-around but `^`: the shapes the argument above covers.
        if !matches!(after.last().map(Hir::kind), Some(HirKind::Look(Look::End))) {
            return None;
        }
        if before
            .iter()
            .any(|h| !h.properties().look_set().is_empty() && !is_start(h))
        {
            return None;
        }
        let suffix_hir = Hir::concat(after.to_vec());
        let build = |h: &Hir| {
            meta::Builder::new()
                .configure(meta::Config::new().utf8_empty(false))
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build_from_hir(h)
                .ok()
        };
        let prefix = build(&Hir::concat(before.to_vec()))?;
        let suffix = build(&suffix_hir)?;
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .reverse(true)
                    .utf8(false)
                    .which_captures(WhichCaptures::None),
            )
            .build_from_hir(&suffix_hir)
            .ok()?;
        let suffix_rev = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All))
            .build_from_nfa(nfa)
            .ok()?;
        Some(Split {
            group: cap.index as usize,
            prefix,
            suffix,
            suffix_rev,
        })
    }

    pub fn cache(&self) -> SplitCache {
        SplitCache {
            prefix: self.prefix.create_cache(),
            prefix_caps: self.prefix.create_captures(),
            suffix: self.suffix.create_cache(),
            suffix_caps: self.suffix.create_captures(),
            suffix_rev: self.suffix_rev.create_cache(),
        }
    }

    /// Searches `hay`; on [`Outcome::Match`], [`Split::group`] gives the captures.
    pub fn search(&self, cache: &mut SplitCache, hay: &[u8]) -> Outcome {
        if memchr::memchr(b'\n', hay).is_some() {
            return Outcome::Fallback;
        }
        let rev = Input::new(hay).anchored(Anchored::Yes).earliest(true);
        let p = match self.suffix_rev.try_search_rev(&mut cache.suffix_rev, &rev) {
            Ok(Some(m)) => m.offset(),
            Ok(None) => return Outcome::NoMatch,
            Err(_) => return Outcome::Fallback,
        };
        let before = Input::new(hay).range(..p);
        self.prefix
            .search_captures_with(&mut cache.prefix, &before, &mut cache.prefix_caps);
        if !cache.prefix_caps.is_match() {
            return Outcome::NoMatch;
        }
        let after = Input::new(hay).range(p..).anchored(Anchored::Yes);
        self.suffix
            .search_captures_with(&mut cache.suffix, &after, &mut cache.suffix_caps);
        if !cache.suffix_caps.is_match() {
            // The reverse DFA and the suffix disagree: not expected; be exact.
            return Outcome::Fallback;
        }
        Outcome::Match
    }

    /// After a match: the span of capture group `g` of the whole regex.
    pub fn group(&self, cache: &SplitCache, g: usize) -> Option<(usize, usize)> {
        if g == 0 {
            let start = cache.prefix_caps.get_match()?.start();
            let end = cache.suffix_caps.get_match()?.end();
            return Some((start, end));
        }
        let span = match g.cmp(&self.group) {
            std::cmp::Ordering::Less => cache.prefix_caps.get_group(g),
            std::cmp::Ordering::Equal => {
                let q = cache.prefix_caps.get_match()?.end();
                let p = cache.suffix_caps.get_match()?.start();
                return Some((q, p));
            }
            std::cmp::Ordering::Greater => cache.suffix_caps.get_group(g),
        };
        span.map(|s| (s.start, s.end))
    }
}

/// `(?P<name>.*)` with a greedy `.*` of any byte but `\n` (or any byte).
fn is_greedy_any_group(h: &Hir) -> bool {
    let HirKind::Capture(cap) = h.kind() else {
        return false;
    };
    let HirKind::Repetition(rep) = cap.sub.kind() else {
        return false;
    };
    rep.min == 0
        && rep.max.is_none()
        && rep.greedy
        && (*rep.sub == Hir::dot(hir::Dot::AnyByteExceptLF)
            || *rep.sub == Hir::dot(hir::Dot::AnyByte))
}

/// `^` (start of the message): the one look-around A may hold.
fn is_start(h: &Hir) -> bool {
    matches!(h.kind(), HirKind::Look(Look::Start))
}
