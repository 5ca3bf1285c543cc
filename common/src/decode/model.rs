//! Decoder files as written (`[[decoder]]` tables in TOML) and their
//! compilation into [`Decoder`]s, with errors that name the file, the
//! decoder and the key at fault.

use std::collections::BTreeMap;

use regex::bytes::{CaptureLocations, Regex, RegexBuilder};
use serde::Deserialize;

use super::split::{Outcome, Split, SplitCache};
use super::{Column, DECODED_COLUMNS, DecodeError, Target};

/// One decoder file: only `[[decoder]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecoderFile {
    #[serde(default)]
    decoder: Vec<RawDecoder>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A decoder as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecoder {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Syslog tags it applies to (`sshd`, `postfix/*`); none: every program.
    #[serde(default)]
    programs: Vec<String>,
    /// Literals of which one must occur in the message before a regex runs.
    prefilter: Option<OneOrMany>,
    /// One regex or several alternatives, tried in order.
    regex: OneOrMany,
    /// Fixed fields a match adds (`protocol = "tcp"`, `action = "deny"`).
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    example: Vec<RawExample>,
}

/// A field value in an example: text or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

/// An example as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    /// The message text (after `tag[pid]: `), decoded as from `program`.
    message: Option<String>,
    /// A whole log line, header included (parsed as siemparse does).
    line: Option<String>,
    /// Program for `message` (default: the decoder's first program).
    program: Option<String>,
    /// Every field the line must give; none given: it must give none.
    #[serde(default)]
    fields: BTreeMap<String, Scalar>,
    /// The decoder that must match (default: this one when `fields` is not empty).
    decoder: Option<String>,
    /// A line with attacker-written text meant to steer a field.
    #[serde(default)]
    forged: bool,
}

/// A compiled decoder.
#[derive(Debug)]
pub struct Decoder {
    pub name: String,
    pub description: Option<String>,
    /// Where it was defined (a file path, or `builtin:NAME.toml`).
    pub origin: String,
    pub programs: Vec<String>,
    pub prefilters: Vec<String>,
    pub regexes: Vec<CompiledRegex>,
    /// Fixed fields: (target, value).
    pub set: Vec<(Target, String)>,
    pub examples: Vec<Example>,
}

/// A regex and where each capture group goes. It runs on the message's
/// bytes with Unicode classes off (`\S`, `\d`, `\w`, `.` are ASCII or
/// byte classes; `(?u)` turns Unicode back on): a Unicode `\S` makes the
/// automaton hundreds of states larger, and the capture search then falls
/// back to the slow engine (measured: 17k instructions a line, against a
/// few hundred). Captures end at ASCII delimiters in practice, and any
/// text is taken as UTF-8, lossily.
#[derive(Debug)]
pub struct CompiledRegex {
    pub regex: Regex,
    /// Per capture group index: where its text goes (`None`: unnamed group).
    pub targets: Vec<Option<Target>>,
    /// The same regex searched in parts, when it has the forgery-safe shape
    /// `A(?P<user>.*)B$` (see [`Split`]).
    split: Option<Split>,
    /// The regex is the kernel's netfilter log regex, matched by hand
    /// (see [`super::netfilter`]).
    netfilter: bool,
}

/// One thread's search buffers for one [`CompiledRegex`], made on first use.
#[derive(Debug, Default)]
pub struct RegexScratch {
    locs: Option<CaptureLocations>,
    split: Option<SplitCache>,
}

impl CompiledRegex {
    fn new(regex: Regex, targets: Vec<Option<Target>>, src: &str) -> CompiledRegex {
        CompiledRegex {
            split: Split::new(src),
            netfilter: src == super::netfilter::REGEX,
            regex,
            targets,
        }
    }

    /// Searches `hay`; on a match, `spans` holds the span of every capture
    /// group by index (as `Regex::captures_read` gives them).
    pub fn captures(
        &self,
        scratch: &mut RegexScratch,
        hay: &[u8],
        spans: &mut Vec<Option<(usize, usize)>>,
    ) -> bool {
        spans.clear();
        if self.netfilter {
            match super::netfilter::search(hay, spans) {
                Outcome::NoMatch => return false,
                Outcome::Match => return true,
                Outcome::Fallback => spans.clear(),
            }
        }
        if let Some(split) = &self.split {
            let cache = scratch.split.get_or_insert_with(|| split.cache());
            match split.search(cache, hay) {
                Outcome::NoMatch => return false,
                Outcome::Match => {
                    spans.extend((0..self.targets.len()).map(|g| split.group(cache, g)));
                    return true;
                }
                Outcome::Fallback => {}
            }
        }
        let locs = scratch
            .locs
            .get_or_insert_with(|| self.regex.capture_locations());
        if self.regex.captures_read(locs, hay).is_none() {
            return false;
        }
        spans.extend((0..locs.len()).map(|g| locs.get(g)));
        true
    }

    /// [`CompiledRegex::captures`] with the whole regex only (the reference
    /// the split search is checked against, in tests and fuzzing).
    pub fn captures_whole(&self, hay: &[u8]) -> Option<Vec<Option<(usize, usize)>>> {
        let mut locs = self.regex.capture_locations();
        self.regex.captures_read(&mut locs, hay)?;
        Some((0..locs.len()).map(|g| locs.get(g)).collect())
    }

    /// True when the regex is searched in parts.
    pub fn is_split(&self) -> bool {
        self.split.is_some()
    }

    /// True when the regex is searched by hand (the netfilter log regex).
    pub fn is_hand_matched(&self) -> bool {
        self.netfilter
    }
}

/// An example with its expectation.
#[derive(Debug)]
pub struct Example {
    pub input: ExampleInput,
    pub fields: BTreeMap<String, String>,
    pub decoder: Option<String>,
    pub forged: bool,
}

/// What an example feeds in.
#[derive(Debug)]
pub enum ExampleInput {
    Message {
        program: Option<String>,
        message: String,
    },
    Line(String),
}

/// Parses and compiles the decoders of one file; `origin` names it in errors.
pub fn compile_file(text: &str, origin: &str) -> Result<Vec<Decoder>, DecodeError> {
    let file: DecoderFile = toml::from_str(text).map_err(|e| DecodeError {
        origin: origin.to_owned(),
        decoder: None,
        key: None,
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut out: Vec<Decoder> = Vec::with_capacity(file.decoder.len());
    for raw in file.decoder {
        let d = compile(raw, origin)?;
        if out.iter().any(|o| o.name == d.name) {
            return Err(err(
                origin,
                &d.name,
                "name",
                "defined twice in this file".into(),
            ));
        }
        out.push(d);
    }
    Ok(out)
}

fn err(origin: &str, decoder: &str, key: &str, message: String) -> DecodeError {
    DecodeError {
        origin: origin.to_owned(),
        decoder: Some(decoder.to_owned()),
        key: Some(key.to_owned()),
        message,
    }
}

fn compile(raw: RawDecoder, origin: &str) -> Result<Decoder, DecodeError> {
    let name = raw.name;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            origin,
            &name,
            "name",
            "a decoder name is one word".into(),
        ));
    }
    let e = |key: &str, message: String| err(origin, &name, key, message);
    for p in &raw.programs {
        let stem = p.strip_suffix('*').unwrap_or(p);
        if stem.is_empty() || stem.contains('*') || p.chars().any(char::is_whitespace) {
            return Err(e(
                "programs",
                format!("{p:?}: a program name, or a prefix ending in * (postfix/*)"),
            ));
        }
    }
    let prefilters = raw.prefilter.map(OneOrMany::into_vec).unwrap_or_default();
    if prefilters.iter().any(String::is_empty) {
        return Err(e(
            "prefilter",
            "an empty prefilter matches every line".into(),
        ));
    }
    if raw.programs.is_empty() && prefilters.is_empty() {
        return Err(e(
            "prefilter",
            "a decoder for every program needs a prefilter (a literal of the message), \
             or every line would run its regex"
                .into(),
        ));
    }
    let sources = raw.regex.into_vec();
    if sources.is_empty() {
        return Err(e("regex", "at least one regex is needed".into()));
    }
    let mut regexes = Vec::with_capacity(sources.len());
    for src in &sources {
        let regex = RegexBuilder::new(src)
            .unicode(false)
            .build()
            .map_err(|x| e("regex", x.to_string()))?;
        let mut targets = Vec::with_capacity(regex.captures_len());
        for n in regex.capture_names() {
            targets.push(match n {
                None => None,
                Some(n) => Some(target(n).map_err(|m| e("regex", m))?),
            });
        }
        if !targets.iter().any(Option::is_some) {
            return Err(e(
                "regex",
                format!("{src:?} has no named capture: it would give no field"),
            ));
        }
        // A message written partly by an attacker is decoded from its end:
        // a regex that captures a user and an address must be anchored there.
        let has = |col: Column| targets.iter().flatten().any(|t| *t == Target::Column(col));
        if has(Column::User)
            && (has(Column::SourceHost) || has(Column::DestHost))
            && !src.ends_with('$')
        {
            return Err(e(
                "regex",
                format!(
                    "{src:?} captures a user and an address but does not end in $: anchor it \
                     on the daemon's fixed text up to the end of the message"
                ),
            ));
        }
        regexes.push(CompiledRegex::new(regex, targets, src));
    }
    let mut set = Vec::new();
    for (k, v) in raw.set {
        set.push((target(&k).map_err(|m| e("set", m))?, v));
    }
    let mut examples = Vec::with_capacity(raw.example.len());
    for (i, x) in raw.example.into_iter().enumerate() {
        let key = format!("example[{i}]");
        let input = match (x.message, x.line) {
            (Some(message), None) => ExampleInput::Message {
                program: x.program.or_else(|| {
                    raw.programs
                        .first()
                        .map(|p| p.trim_end_matches('*').to_owned())
                }),
                message,
            },
            (None, Some(line)) if x.program.is_none() => ExampleInput::Line(line),
            (None, Some(_)) => {
                return Err(e(
                    &key,
                    "`program` goes with `message`; a `line` has its own".into(),
                ));
            }
            _ => return Err(e(&key, "give `message` or `line` (one of them)".into())),
        };
        let fields = x
            .fields
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Scalar::Int(i) => i.to_string(),
                    Scalar::Text(s) => s,
                };
                (k, v)
            })
            .collect();
        examples.push(Example {
            input,
            fields,
            decoder: x.decoder,
            forged: x.forged,
        });
    }
    let captures_user = regexes.iter().any(|r| {
        r.targets
            .iter()
            .flatten()
            .any(|t| *t == Target::Column(Column::User))
    });
    if examples.is_empty() {
        return Err(e(
            "example",
            "a decoder needs examples: lines with the fields they must give".into(),
        ));
    }
    if captures_user && !examples.iter().any(|x| x.forged) {
        return Err(e(
            "example",
            "a decoder that captures a user needs a forged example (forged = true): a user \
             name written to steer the address or another field"
                .into(),
        ));
    }
    Ok(Decoder {
        name,
        description: raw.description,
        origin: origin.to_owned(),
        programs: raw.programs,
        prefilters,
        regexes,
        set,
        examples,
    })
}

/// Where a capture (or a `set` value) goes: a column or a key of `extra`.
fn target(name: &str) -> Result<Target, String> {
    match Column::named(name) {
        Some(c) if DECODED_COLUMNS.contains(&c) => Ok(Target::Column(c)),
        Some(_) => Err(format!(
            "{name:?} is a column that decoders do not fill; use user, source_host, \
             source_port, dest_host, dest_port, protocol, or another name for extra"
        )),
        None => match crate::parse::own_extra_key(name) {
            Some(why) => Err(why),
            None => Ok(Target::Extra(name.into())),
        },
    }
}
