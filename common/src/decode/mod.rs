/*!
Field extraction at ingest by decoders: data, not code. A decoder names the
programs it applies to, literals of which one must occur in the message (the
prefilter), one or more regexes whose named captures fill the columns
(`user`, `source_host`, `source_port`, `dest_host`, `dest_port`,
`protocol`; any other name goes to `extra`), and its own examples.

- [`model`]: the TOML form and its compilation (errors name file, decoder, key);
- [`builtin`]: the TOML files of `config/decoders`, compiled into the binary;
- [`check`]: runs every decoder's examples (`siemparse --check-decoders`);
- this module: the compiled set and its dispatch. A line is looked up by its
  program, one Aho-Corasick scan finds which prefilters occur, and only the
  decoders whose literal occurred run their regexes, in order; the first
  match wins.

An address is never taken from text that a user controls: a regex that
captures a user and an address is refused unless it ends in `$` (anchored
on the daemon's fixed text after the user name), and every decoder that
captures a user carries forged examples.
*/

pub mod builtin;
pub mod check;
pub mod model;
mod netfilter;
mod split;

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use foldhash::HashMap;

pub use crate::event::Column;
pub use model::{Decoder, Example, ExampleInput, RegexScratch};

/// The columns decoders (and input formats) fill; every other name goes to `extra`.
pub const DECODED_COLUMNS: [Column; 6] = [
    Column::User,
    Column::SourceHost,
    Column::SourcePort,
    Column::DestHost,
    Column::DestPort,
    Column::Protocol,
];

use crate::config::Config;
use crate::normalize;

/// A decoder file or decoder that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The file (or `builtin:NAME.toml`).
    pub origin: String,
    pub decoder: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A bad `[decoders] paths` entry is the config's fault, not a decoder file's.
        let what = if self.key.as_deref() == Some("decoders.paths") {
            "config"
        } else {
            "decoder file"
        };
        write!(f, "{what} {}", self.origin)?;
        if let Some(d) = &self.decoder {
            write!(f, ": decoder {d:?}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Where a capture goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Column(Column),
    /// A key of `extra`.
    Extra(Box<str>),
}

/// Fields one decoder found in a message. Everything is optional.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields<'d> {
    pub user: Option<String>,
    pub source_host: Option<String>,
    pub source_port: Option<i64>,
    pub dest_host: Option<String>,
    pub dest_port: Option<i64>,
    pub protocol: Option<String>,
    /// Further named values for `extra`, in capture order.
    pub extra: Vec<(&'d str, String)>,
}

impl Fields<'_> {
    /// Every field as (name, text), columns first: for examples and `--explain`.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut col = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((name.to_owned(), v));
            }
        };
        col("user", self.user.clone());
        col("source_host", self.source_host.clone());
        col("source_port", self.source_port.map(|p| p.to_string()));
        col("dest_host", self.dest_host.clone());
        col("dest_port", self.dest_port.map(|p| p.to_string()));
        col("protocol", self.protocol.clone());
        for (k, v) in &self.extra {
            out.push(((*k).to_owned(), v.clone()));
        }
        out
    }

    /// True when column `c` has a value.
    pub fn has(&self, c: Column) -> bool {
        match c {
            Column::User => self.user.is_some(),
            Column::SourceHost => self.source_host.is_some(),
            Column::SourcePort => self.source_port.is_some(),
            Column::DestHost => self.dest_host.is_some(),
            Column::DestPort => self.dest_port.is_some(),
            Column::Protocol => self.protocol.is_some(),
            _ => false,
        }
    }

    /// Stores `text` in column `c`, normalised; empty or invalid values are dropped.
    pub fn put(&mut self, c: Column, text: &str) {
        match c {
            Column::User => {
                let u = text.trim();
                if !u.is_empty() {
                    self.user = Some(u.to_owned());
                }
            }
            Column::SourceHost => self.source_host = normalize::host(text),
            Column::DestHost => self.dest_host = normalize::host(text),
            Column::SourcePort => self.source_port = normalize::port(text),
            Column::DestPort => self.dest_port = normalize::port(text),
            Column::Protocol if !text.trim().is_empty() => {
                self.protocol = Some(normalize::protocol(text));
            }
            // An empty protocol, or not a decoded column (DECODED_COLUMNS).
            _ => {}
        }
    }
}

/// A decoder's match: which decoder, and what it found.
#[derive(Debug, Clone)]
pub struct Decoded<'d> {
    pub decoder: &'d Decoder,
    pub fields: Fields<'d>,
}

/// Words of the per-line set of decoders whose prefilter occurred.
const FOUND_WORDS: usize = 4;

/// The decoders tried for one program (or for every program), in order,
/// with one automaton over their prefilters.
#[derive(Debug, Default)]
struct Group {
    /// Indices into `Decoders::list`, in the order they are tried.
    order: Vec<usize>,
    /// Per position in `order`: true when it has no prefilter (always runs).
    always: Vec<bool>,
    /// Over every prefilter of the group; pattern id → position in `order`.
    automaton: Option<AhoCorasick>,
    owner: Vec<usize>,
}

/// Capture buffers for decoding line after line on one thread, one per
/// regex of one decoder set, made on first use: a line's regex search then
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The set the buffers belong to ([`Decoders`]' id); another set starts afresh.
    set: u64,
    regexes: Vec<RegexScratch>,
    /// The capture spans of the last match.
    spans: Vec<Option<(usize, usize)>>,
}

/// A compiled set of decoders, ready to decode lines.
#[derive(Debug, Default)]
pub struct Decoders {
    /// Unique per set built (not an address, which a later set may reuse):
    /// the buffers of a [`Scratch`] belong to one set's regexes.
    id: u64,
    list: Vec<Decoder>,
    /// Per decoder: the number of its first regex among all regexes (for [`Scratch`]).
    first_regex: Vec<usize>,
    regexes: usize,
    by_program: HashMap<String, Group>,
    /// Prefix entries (`postfix` followed by `/` and `*`): (prefix, group), longest prefix first.
    by_prefix: Vec<(String, Group)>,
    /// Decoders for every program, for lines of other programs.
    generic: Group,
}

impl Decoders {
    /// The built-in set (`config/decoders/*.toml`), compiled once.
    pub fn builtin() -> Result<Arc<Decoders>, DecodeError> {
        static BUILTIN: std::sync::LazyLock<Result<Arc<Decoders>, DecodeError>> =
            std::sync::LazyLock::new(|| Ok(Arc::new(Decoders::new(builtin::decoders()?)?)));
        BUILTIN.clone()
    }

    /// The decoders a config asks for: the files of `[decoders] paths`
    /// (globs, relative to the config's directory) before the built-in ones;
    /// a decoder with the name of a built-in replaces it.
    pub fn load(config: &Config) -> Result<Arc<Decoders>, DecodeError> {
        if config.decoders.paths.is_empty() {
            return Decoders::builtin();
        }
        let origin = config.origin_name();
        let base = config.base_dir();
        let mut user: Vec<Decoder> = Vec::new();
        for pattern in &config.decoders.paths {
            let files = crate::paths::expand(&base, pattern).map_err(|message| DecodeError {
                origin: match config.key_line("decoders.paths") {
                    Some(line) => format!("{origin}: line {line}"),
                    None => origin.clone(),
                },
                decoder: None,
                key: Some("decoders.paths".into()),
                message,
            })?;
            for path in files {
                let file = path.display().to_string();
                let text = crate::files::read_text(&path).map_err(|e| DecodeError {
                    origin: file.clone(),
                    decoder: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })?;
                for d in model::compile_file(&text, &file)? {
                    if let Some(other) = user.iter().find(|o| o.name == d.name) {
                        return Err(DecodeError {
                            origin: file,
                            decoder: Some(d.name),
                            key: Some("name".into()),
                            message: format!("already defined in {}", other.origin),
                        });
                    }
                    user.push(d);
                }
            }
        }
        let mut list = Vec::new();
        let mut builtins = builtin::decoders()?;
        // Same name: the user's decoder takes the built-in's place in the order.
        let mut fresh = Vec::new();
        for d in user {
            match builtins.iter_mut().find(|b| b.name == d.name) {
                Some(slot) => *slot = d,
                None => fresh.push(d),
            }
        }
        list.extend(fresh);
        list.extend(builtins);
        Ok(Arc::new(Decoders::new(list)?))
    }

    /// Builds the dispatch tables over `list` (tried in this order).
    pub fn new(list: Vec<Decoder>) -> Result<Decoders, DecodeError> {
        let mut exact: Vec<String> = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        for d in &list {
            for p in &d.programs {
                match p.strip_suffix('*') {
                    Some(stem) if !prefixes.iter().any(|x| x == stem) => {
                        prefixes.push(stem.to_owned())
                    }
                    None if !exact.contains(p) => exact.push(p.clone()),
                    _ => {}
                }
            }
        }
        // An entry applies to a program named exactly, or by a prefix of it.
        let applies = |d: &Decoder, program: &str| {
            d.programs.is_empty()
                || d.programs.iter().any(|p| match p.strip_suffix('*') {
                    Some(stem) => program.starts_with(stem),
                    None => p == program,
                })
        };
        let group_for = |pick: &dyn Fn(&Decoder) -> bool| -> Result<Group, DecodeError> {
            build_group(&list, pick)
        };
        let mut by_program = HashMap::default();
        for p in &exact {
            by_program.insert(p.clone(), group_for(&|d| applies(d, p))?);
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut by_prefix = Vec::new();
        for stem in &prefixes {
            by_prefix.push((stem.clone(), group_for(&|d| applies(d, stem))?));
        }
        let generic = group_for(&|d| d.programs.is_empty())?;
        let mut first_regex = Vec::with_capacity(list.len());
        let mut regexes = 0;
        for d in &list {
            first_regex.push(regexes);
            regexes += d.regexes.len();
        }
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Decoders {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            list,
            first_regex,
            regexes,
            by_program,
            by_prefix,
            generic,
        })
    }

    /// Every decoder, in the order they are tried.
    pub fn list(&self) -> &[Decoder] {
        &self.list
    }

    /// The first decoder that matches `message` of `process`, with its fields.
    pub fn decode<'d>(&'d self, process: Option<&str>, message: &str) -> Option<Decoded<'d>> {
        self.decode_with(&mut Scratch::default(), process, message)
    }

    /// [`Decoders::decode`] with capture buffers kept from line to line.
    pub fn decode_with<'d>(
        &'d self,
        scratch: &mut Scratch,
        process: Option<&str>,
        message: &str,
    ) -> Option<Decoded<'d>> {
        if scratch.set != self.id || scratch.regexes.len() != self.regexes {
            scratch.set = self.id;
            scratch.regexes = (0..self.regexes).map(|_| RegexScratch::default()).collect();
        }
        // A Cisco device's mnemonic read as the tag ("asa1 %ASA-4-106023: Deny ...")
        // is decoded with the text, as the device wrote them.
        if let Some(tag) = process.filter(|p| p.starts_with('%')) {
            return self.decode_in(scratch, self.group(""), &format!("{tag}: {message}"));
        }
        self.decode_in(
            scratch,
            self.group(process.map(program_of).unwrap_or("")),
            message,
        )
    }

    fn decode_in<'d>(
        &'d self,
        scratch: &mut Scratch,
        group: &Group,
        message: &str,
    ) -> Option<Decoded<'d>> {
        let message = unwrap_repeated(message);
        if group.order.is_empty() {
            return None;
        }
        // Which positions of `order` had a prefilter occur: a bit each (this
        // runs for every line; no allocation). A group larger than the set
        // runs every decoder, as if every prefilter had occurred.
        let mut found = [0u64; FOUND_WORDS];
        let all = group.order.len() > FOUND_WORDS * 64;
        if let (Some(ac), false) = (&group.automaton, all) {
            for m in ac.find_overlapping_iter(message) {
                let pos = group.owner[m.pattern().as_usize()];
                found[pos / 64] |= 1 << (pos % 64);
            }
        }
        for (pos, &i) in group.order.iter().enumerate() {
            let hit = all || found[pos / 64] & (1 << (pos % 64)) != 0;
            if !hit && !group.always[pos] {
                continue;
            }
            let d = &self.list[i];
            for (n, r) in d.regexes.iter().enumerate() {
                let regex_scratch = &mut scratch.regexes[self.first_regex[i] + n];
                if !r.captures(regex_scratch, message.as_bytes(), &mut scratch.spans) {
                    continue;
                }
                let mut fields = Fields::default();
                for (g, target) in r.targets.iter().enumerate() {
                    let (Some(target), Some(Some((start, end)))) = (target, scratch.spans.get(g))
                    else {
                        continue;
                    };
                    let (start, end) = (*start, *end);
                    // A capture is text of the message, unless a byte class
                    // cut a character (then lossily, as documented).
                    let text = match message.get(start..end) {
                        Some(t) => Cow::Borrowed(t),
                        None => String::from_utf8_lossy(&message.as_bytes()[start..end]),
                    };
                    match target {
                        Target::Extra(k) => {
                            if !text.is_empty() {
                                fields.extra.push((k, text.into_owned()));
                            }
                        }
                        Target::Column(c) => fields.put(*c, &text),
                    }
                }
                for (t, v) in &d.set {
                    match t {
                        Target::Extra(k) => fields.extra.push((k, v.clone())),
                        Target::Column(c) => fields.put(*c, v),
                    }
                }
                return Some(Decoded { decoder: d, fields });
            }
        }
        None
    }

    fn group(&self, program: &str) -> &Group {
        if let Some(g) = self.by_program.get(program) {
            return g;
        }
        self.by_prefix
            .iter()
            .find(|(stem, _)| program.starts_with(stem.as_str()))
            .map_or(&self.generic, |(_, g)| g)
    }
}

fn build_group(list: &[Decoder], pick: &dyn Fn(&Decoder) -> bool) -> Result<Group, DecodeError> {
    let mut g = Group::default();
    let mut patterns: Vec<&str> = Vec::new();
    // Program-specific decoders first, then those for every program.
    let specific = list
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.programs.is_empty());
    let everyone = list
        .iter()
        .enumerate()
        .filter(|(_, d)| d.programs.is_empty());
    for (i, d) in specific.chain(everyone) {
        if !pick(d) {
            continue;
        }
        let pos = g.order.len();
        g.order.push(i);
        g.always.push(d.prefilters.is_empty());
        for p in &d.prefilters {
            patterns.push(p);
            g.owner.push(pos);
        }
    }
    if !patterns.is_empty() {
        // A DFA: a few hundred states for a program's prefilters, and the
        // fastest scan for the one pass every line gets.
        let ac = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| DecodeError {
                origin: "decoders".into(),
                decoder: None,
                key: Some("prefilter".into()),
                message: e.to_string(),
            })?;
        g.automaton = Some(ac);
    }
    Ok(g)
}

/// The program a decoder is looked up by: the tag up to `(` (`sshd(pam_unix)` → `sshd`).
fn program_of(process: &str) -> &str {
    process.split('(').next().unwrap_or(process)
}

/// rsyslog's `message repeated N times: [ TEXT]` is decoded as TEXT.
fn unwrap_repeated(message: &str) -> &str {
    let Some(rest) = message.strip_prefix("message repeated ") else {
        return message;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[digits..]
        .strip_prefix(" times: [")
        .and_then(|inner| inner.strip_suffix(']'))
        .map_or(message, |inner| inner.strip_prefix(' ').unwrap_or(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_messages_are_unwrapped() {
        assert_eq!(
            unwrap_repeated(
                "message repeated 2 times: [ Failed password for root from 5.6.7.8 port 1 ssh2]"
            ),
            "Failed password for root from 5.6.7.8 port 1 ssh2"
        );
        assert_eq!(unwrap_repeated("message repeated x"), "message repeated x");
    }

    /// Texts around every built-in example that probe the split search's
    /// edges: the example cut at each character, glued to other examples,
    /// its fixed text repeated (forged), a line feed inside.
    fn probes() -> Vec<String> {
        let mut messages: Vec<String> = Vec::new();
        for d in builtin::decoders().unwrap() {
            for x in d.examples {
                if let ExampleInput::Message { message, .. } = x.input {
                    messages.push(message);
                }
            }
        }
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let next = &messages[(i + 1) % messages.len()];
            for (at, _) in m.char_indices() {
                out.push(m[..at].to_owned());
                out.push(m[at..].to_owned());
                // The tail repeated: the real suffix follows a forged one.
                out.push(format!("{}{}", m, &m[at..]));
                out.push(format!("{}{}", &m[..at], m));
            }
            out.push(format!("{m} {next}"));
            out.push(format!("{m}\n{m}"));
            out.push(format!("{m}\n"));
            out.push(format!("{m} "));
            out.push(format!(" {m}"));
        }
        out
    }

    /// Built-in decoders whose regexes were rewritten for speed, with the
    /// regexes they had before.
    const REWRITTEN: &[(&str, &[&str])] = &[(
        "sshd-connection-by",
        &[
            r"^(?:fatal: |error: )?(?:Connection closed by|Connection reset by|Disconnected from|Connection from) (?:(?:authenticating |invalid )?user (?P<user>.*) )?(?P<source_host>\S+) port (?P<source_port>\d+)(?: timed out)?(?: \[preauth\])?$",
            r"^(?:fatal: |error: )?(?:Connection closed by|Connection reset by) (?P<source_host>[0-9A-Fa-f.:]+)(?: \[preauth\])?$",
        ],
    )];

    /// The named captures that took part in the match of the first of
    /// `regexes` that matches.
    fn named_captures<'r>(
        regexes: impl Iterator<Item = (&'r regex::bytes::Regex, Option<Vec<Option<(usize, usize)>>>)>,
    ) -> Option<Vec<(String, (usize, usize))>> {
        regexes
            .filter_map(|(r, spans)| Some((r, spans?)))
            .map(|(r, spans)| {
                let mut named: Vec<(String, (usize, usize))> = r
                    .capture_names()
                    .zip(spans)
                    .filter_map(|(n, s)| Some((n?.to_owned(), s?)))
                    .collect();
                named.sort();
                named
            })
            .next()
    }

    #[test]
    fn rewritten_regexes_give_the_old_captures() {
        let set = Decoders::builtin().unwrap();
        let mut probes = probes();
        // Real sshd messages: every line of the fixtures after its tag.
        let fixture = include_str!("../../../tests/fixtures/sample-auth.log");
        probes.extend(
            fixture
                .lines()
                .filter_map(|l| Some(l.split_once("]: ")?.1.to_owned())),
        );
        let mut matched = 0;
        for (name, old) in REWRITTEN {
            let d = set.list().iter().find(|d| d.name == *name).unwrap();
            let old: Vec<regex::bytes::Regex> = old
                .iter()
                .map(|s| {
                    regex::bytes::RegexBuilder::new(s)
                        .unicode(false)
                        .build()
                        .unwrap()
                })
                .collect();
            let mut scratch: Vec<RegexScratch> =
                d.regexes.iter().map(|_| RegexScratch::default()).collect();
            let mut spans = Vec::new();
            for p in &probes {
                let hay = p.as_bytes();
                let want = named_captures(old.iter().map(|r| {
                    let mut locs = r.capture_locations();
                    let found = r.captures_read(&mut locs, hay).is_some();
                    (
                        r,
                        found.then(|| (0..locs.len()).map(|g| locs.get(g)).collect()),
                    )
                }));
                let got = named_captures(d.regexes.iter().zip(&mut scratch).map(|(r, s)| {
                    let found = r.captures(s, hay, &mut spans);
                    (&r.regex, found.then(|| spans.clone()))
                }));
                assert_eq!(got, want, "{name} on {p:?}");
                matched += usize::from(want.is_some());
            }
        }
        assert!(matched > 100, "only {matched} probes matched");
    }

    /// The netfilter decoder's regex is the one its hand search stands for:
    /// an edit of the regex in `config/decoders/netfilter.toml` must come
    /// with one of `netfilter.rs` (or the slower regex engine decodes the
    /// lines).
    #[test]
    fn netfilter_regex_is_hand_matched() {
        let set = Decoders::builtin().unwrap();
        let d = set
            .list()
            .iter()
            .find(|d| d.name == "netfilter-log")
            .unwrap();
        assert!(d.regexes.iter().all(model::CompiledRegex::is_hand_matched));
    }

    #[test]
    fn split_search_gives_the_whole_regex_captures() {
        let set = Decoders::builtin().unwrap();
        let split: Vec<&model::CompiledRegex> = set
            .list()
            .iter()
            .flat_map(|d| &d.regexes)
            .filter(|r| r.is_split())
            .collect();
        // The forgery-safe `(?P<user>.*)` regexes of sshd, dropbear, PAM, FTP, mail...
        assert!(split.len() >= 20, "only {} regexes split", split.len());
        let probes = probes();
        let mut matched = 0;
        for r in &split {
            let mut scratch = RegexScratch::default();
            let mut spans = Vec::new();
            for p in &probes {
                let whole = r.captures_whole(p.as_bytes());
                let got = r.captures(&mut scratch, p.as_bytes(), &mut spans);
                assert_eq!(
                    got.then(|| spans.clone()),
                    whole,
                    "regex {:?} on {p:?}",
                    r.regex.as_str()
                );
                matched += usize::from(got);
            }
        }
        assert!(matched > 1000, "only {matched} probes matched");
    }
}
