/*!
The kernel's netfilter log regex (`netfilter-log` in
`config/decoders/netfilter.toml`) matched by hand, with the captures the
regex gives.

The regex is neither one-pass nor of the split shape: its lazy
`(?P<log_prefix>.*?)` and the lazy run of `KEY=VALUE` words before `PROTO=`
left its captures to the bounded backtracker, ~29k instructions a line of
the ~48k such a line cost (callgrind, docs/performance.md). The regex's
choices are few and decided left to right:

1. the optional kernel timestamp `[ SECS.USECS] ` is taken when it is there
   (its text holds no `IN=`, so not taking it cannot give another match);
2. the shortest log prefix: the first `IN=` (at or after the timestamp) from
   which the rest matches; ` ?` takes the space before it;
3. from `IN=` to `DST=ADDR `, each part is decided by its first byte and
   ends at a fixed delimiter: one way to match, or none;
4. the lazy run of words (`[A-Z]+=\S* ` or `[A-Z]+ `) stops at the first
   word `PROTO=` followed by a non-space: `(?P<protocol>\S+)` then takes the
   whole word, the optional ` SPT=N DPT=N` follows when it is there, and
   `.*$` takes the rest.

Used only for a regex whose text is exactly [`REGEX`]; a message with a line
feed (`.` and `$` then matter) or with more than [`MAX_TRIES`] `IN=`
candidates (forged text: the regex engine's time is linear, this search
would not be) is left to the regex. The captures are compared with the
regex's on every built-in example cut, glued and forged, and on mutations
(tests below).
*/

use super::split::Outcome;

/// The regex this search stands for (the `regex` of `netfilter-log`).
pub const REGEX: &str = r"^(?:\[\s*\d+\.\d+\] )?(?P<log_prefix>.*?) ?IN=(?P<in>\S*) OUT=(?P<out>\S*) (?:PHYSIN=\S* )?(?:PHYSOUT=\S* )?(?:MAC=\S* )?SRC=(?P<source_host>[0-9A-Fa-f.:]+) DST=(?P<dest_host>[0-9A-Fa-f.:]+) (?:[A-Z]+=\S* |[A-Z]+ )*?PROTO=(?P<protocol>\S+)(?: SPT=(?P<source_port>\d+) DPT=(?P<dest_port>\d+))?.*$";

/// Capture groups of [`REGEX`] (the whole match included).
pub const GROUPS: usize = 9;

/// `IN=` candidates tried before the search leaves the message to the regex.
pub const MAX_TRIES: usize = 8;

type Span = Option<(usize, usize)>;

/// Searches `hay` as [`REGEX`] would; on [`Outcome::Match`], `spans` holds
/// the span of each of its [`GROUPS`] capture groups by index.
pub fn search(hay: &[u8], spans: &mut Vec<Span>) -> Outcome {
    if memchr::memchr(b'\n', hay).is_some() {
        return Outcome::Fallback;
    }
    let start = timestamp_len(hay);
    let mut from = start;
    for _ in 0..MAX_TRIES {
        let Some(at) = memchr::memmem::find(&hay[from..], b"IN=") else {
            return Outcome::NoMatch;
        };
        let j = from + at;
        match after_in(hay, j + 3) {
            Ok(t) => {
                let prefix_end = if j > start && hay[j - 1] == b' ' {
                    j - 1
                } else {
                    j
                };
                let groups: [Span; GROUPS] = [
                    Some((0, hay.len())),
                    Some((start, prefix_end)),
                    Some(t.in_),
                    Some(t.out),
                    Some(t.src),
                    Some(t.dst),
                    Some(t.proto),
                    t.ports.map(|p| p.0),
                    t.ports.map(|p| p.1),
                ];
                spans.clear();
                spans.extend(groups);
                return Outcome::Match;
            }
            // Every `IN=` up to the end of this one's word has the same
            // `in` end, hence the same rest: none of them matches either.
            Err(word_end) => from = word_end.max(j + 3),
        }
    }
    Outcome::Fallback
}

/// The captures after the log prefix.
struct Tail {
    in_: (usize, usize),
    out: (usize, usize),
    src: (usize, usize),
    dst: (usize, usize),
    proto: (usize, usize),
    ports: Option<((usize, usize), (usize, usize))>,
}

/// `\s` without Unicode: `[\t\n\v\f\r ]`.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// End of the run of bytes from `i` that satisfy `f`.
fn run(hay: &[u8], i: usize, f: impl Fn(u8) -> bool) -> usize {
    i + hay[i..].iter().take_while(|&&b| f(b)).count()
}

fn non_space(hay: &[u8], i: usize) -> usize {
    run(hay, i, |b| !is_space(b))
}

fn at(hay: &[u8], i: usize, lit: &[u8]) -> bool {
    hay.get(i..).is_some_and(|h| h.starts_with(lit))
}

/// Length of `\[\s*\d+\.\d+\] ` at the start, or 0.
fn timestamp_len(hay: &[u8]) -> usize {
    if !at(hay, 0, b"[") {
        return 0;
    }
    let i = run(hay, 1, is_space);
    let d = run(hay, i, |b| b.is_ascii_digit());
    if d == i || !at(hay, d, b".") {
        return 0;
    }
    let f = run(hay, d + 1, |b| b.is_ascii_digit());
    if f == d + 1 || !at(hay, f, b"] ") {
        return 0;
    }
    f + 2
}

/// The rest of the regex from just after `IN=` at `i`; `Err` with the end of
/// the `in` word when it does not match.
fn after_in(hay: &[u8], i: usize) -> Result<Tail, usize> {
    let in_end = non_space(hay, i);
    tail(hay, i, in_end).ok_or(in_end)
}

fn tail(hay: &[u8], in_start: usize, in_end: usize) -> Option<Tail> {
    if !at(hay, in_end, b" OUT=") {
        return None;
    }
    let out_start = in_end + 5;
    let out_end = non_space(hay, out_start);
    if !at(hay, out_end, b" ") {
        return None;
    }
    let mut i = out_end + 1;
    // `(?:PHYSIN=\S* )?(?:PHYSOUT=\S* )?(?:MAC=\S* )?`: each is there or not
    // (none starts like the next part); one that starts but does not end in
    // a space leaves text that nothing after it matches.
    for key in [&b"PHYSIN="[..], b"PHYSOUT=", b"MAC="] {
        if at(hay, i, key) {
            let end = non_space(hay, i + key.len());
            if !at(hay, end, b" ") {
                return None;
            }
            i = end + 1;
        }
    }
    let addr = |b: u8| b.is_ascii_hexdigit() || b == b'.' || b == b':';
    if !at(hay, i, b"SRC=") {
        return None;
    }
    let src = (i + 4, run(hay, i + 4, addr));
    if src.0 == src.1 || !at(hay, src.1, b" DST=") {
        return None;
    }
    let dst = (src.1 + 5, run(hay, src.1 + 5, addr));
    if dst.0 == dst.1 || !at(hay, dst.1, b" ") {
        return None;
    }
    // The lazy run of words, each tried as `PROTO=\S+` first.
    let mut w = dst.1 + 1;
    loop {
        if at(hay, w, b"PROTO=") && hay.get(w + 6).is_some_and(|&b| !is_space(b)) {
            let proto = (w + 6, non_space(hay, w + 6));
            return Some(Tail {
                in_: (in_start, in_end),
                out: (out_start, out_end),
                src,
                dst,
                proto,
                ports: ports(hay, proto.1),
            });
        }
        let upper = run(hay, w, |b| b.is_ascii_uppercase());
        if upper == w {
            return None;
        }
        w = match hay.get(upper) {
            Some(b' ') => upper + 1,
            Some(b'=') => {
                let end = non_space(hay, upper + 1);
                if !at(hay, end, b" ") {
                    return None;
                }
                end + 1
            }
            _ => return None,
        };
    }
}

/// `(?: SPT=(\d+) DPT=(\d+))?` at `i` (greedy digits: `.*$` follows).
fn ports(hay: &[u8], i: usize) -> Option<((usize, usize), (usize, usize))> {
    let digits = |i: usize| run(hay, i, |b| b.is_ascii_digit());
    if !at(hay, i, b" SPT=") {
        return None;
    }
    let spt = (i + 5, digits(i + 5));
    if spt.0 == spt.1 || !at(hay, spt.1, b" DPT=") {
        return None;
    }
    let dpt = (spt.1 + 5, digits(spt.1 + 5));
    (dpt.0 != dpt.1).then_some((spt, dpt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex() -> regex::bytes::Regex {
        regex::bytes::RegexBuilder::new(REGEX)
            .unicode(false)
            .build()
            .unwrap()
    }

    /// The regex's captures, or `None`.
    fn want(r: &regex::bytes::Regex, hay: &[u8]) -> Option<Vec<Span>> {
        let mut locs = r.capture_locations();
        r.captures_read(&mut locs, hay)?;
        Some((0..locs.len()).map(|g| locs.get(g)).collect())
    }

    /// Checks `hay`; true when the search decided it (no fallback).
    fn check(r: &regex::bytes::Regex, hay: &[u8]) -> bool {
        let mut spans = Vec::new();
        let got = match search(hay, &mut spans) {
            Outcome::Match => Some(spans),
            Outcome::NoMatch => None,
            Outcome::Fallback => return false,
        };
        assert_eq!(got, want(r, hay), "on {:?}", String::from_utf8_lossy(hay));
        true
    }

    #[test]
    fn groups_are_the_regex_groups() {
        let r = regex();
        assert_eq!(r.captures_len(), GROUPS);
        let names: Vec<_> = r.capture_names().collect();
        assert_eq!(
            names,
            [
                None,
                Some("log_prefix"),
                Some("in"),
                Some("out"),
                Some("source_host"),
                Some("dest_host"),
                Some("protocol"),
                Some("source_port"),
                Some("dest_port")
            ]
        );
    }

    /// The built-in decoder's examples, and variants of each kernel line
    /// that probe every choice of the regex.
    fn seeds() -> Vec<String> {
        let mut out: Vec<String> = crate::decode::builtin::decoders()
            .unwrap()
            .into_iter()
            .flat_map(|d| d.examples)
            .filter_map(|x| match x.input {
                crate::decode::ExampleInput::Message { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        let kernel = "[UFW BLOCK] IN=eth0 OUT= MAC=aa:bb SRC=203.0.113.9 DST=198.51.100.2 LEN=44 TOS=0x00 PREC=0x00 TTL=243 ID=1 PROTO=TCP SPT=51234 DPT=23 WINDOW=1024 RES=0x00 SYN URGP=0";
        out.extend(
            [
                kernel,
                "IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=UDP SPT=1 DPT=2",
                " IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=UDP",
                "[ 12.5] IN= OUT=eth1 PHYSIN=br0 PHYSOUT=br1 MAC=x SRC=::1 DST=fe80::1 PROTO=ICMPv6",
                "[  12.5] [x] IN=a OUT=b PHYSOUT=p SRC=1.1.1.1 DST=2.2.2.2 DF PROTO=TCP SPT=1 DPT=",
                "[12.5]IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "[12.] IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "pre IN=x IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=5",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 LEN=1 PROTO= PROTO=UDP SPT=1 DPT=2 x",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 LEN=1 PROTO=  PROTO=UDP",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 len=1 PROTO=UDP",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 LEN=1\tPROTO=UDP",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=12x DPT=3",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP  SPT=1 DPT=3",
                "pre IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=1 DPT=3\r",
                "PHYSIN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "xIN=IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "IN=a OUT=b MAC=m PHYSIN=p SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=T\u{e4}CP SPT=1 DPT=2",
                "IN=\u{e4} OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
                "IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2  PROTO=TCP",
                "IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP SPT=1 DPT=2 IN=c OUT=d SRC=3.3.3.3 DST=4.4.4.4 PROTO=UDP",
                "IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 A B=C D PROTO=TCP",
                "IN=a OUT=b SRC=g DST=2.2.2.2 PROTO=TCP IN=c OUT=d SRC=3.3.3.3 DST=4.4.4.4 PROTO=UDP",
            ]
            .map(str::to_owned),
        );
        out
    }

    #[test]
    fn same_captures_as_the_regex_on_examples_cut_glued_and_forged() {
        let r = regex();
        let seeds = seeds();
        let (mut decided, mut matched) = (0, 0);
        for (i, m) in seeds.iter().enumerate() {
            let next = &seeds[(i + 1) % seeds.len()];
            let mut probes = vec![
                m.clone(),
                format!("{m} {next}"),
                format!("{next} {m}"),
                format!("{m}\n{m}"),
                format!("[ 1.2] {m}"),
            ];
            for (at, _) in m.char_indices() {
                probes.push(m[..at].to_owned());
                probes.push(m[at..].to_owned());
                probes.push(format!("{}{}", m, &m[at..]));
                probes.push(format!("{}{}", &m[..at], m));
                for ins in [" ", "  ", "\t", "IN=", "PROTO=", "=", "A ", "\r"] {
                    probes.push(format!("{}{ins}{}", &m[..at], &m[at..]));
                }
            }
            for p in &probes {
                if check(&r, p.as_bytes()) {
                    decided += 1;
                    matched += usize::from(want(&r, p.as_bytes()).is_some());
                }
            }
        }
        assert!(decided > 50_000, "only {decided} probes decided");
        assert!(matched > 10_000, "only {matched} probes matched");
    }

    /// Random edits of the kernel lines (a fixed seed, bytes from the
    /// regex's own alphabet): the same captures, or the regex decides.
    #[test]
    fn same_captures_as_the_regex_on_mutations() {
        let r = regex();
        let seeds: Vec<Vec<u8>> = seeds()
            .into_iter()
            .filter(|s| s.contains("IN="))
            .map(String::into_bytes)
            .collect();
        let alphabet = b" \t\r\n=[].:0123456789abfABFINOUTPRSCDMHYXZ\xc3\xa4";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut decided = 0;
        for round in 0..60_000 {
            let mut m = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(4) {
                let at = next(m.len() + 1);
                match next(3) {
                    0 => m.insert(at, alphabet[next(alphabet.len())]),
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    _ if at < m.len() => m[at] = alphabet[next(alphabet.len())],
                    _ => {}
                }
            }
            decided += usize::from(check(&r, &m));
        }
        assert!(decided > 50_000, "only {decided} mutations decided");
    }

    /// Forged text with many `IN=` is left to the regex (linear time).
    #[test]
    fn many_candidates_fall_back() {
        let mut spans = Vec::new();
        let hay = "IN=x ".repeat(10_000);
        assert!(matches!(
            search(hay.as_bytes(), &mut spans),
            Outcome::Fallback
        ));
        let hay = format!(
            "{}IN=a OUT=b SRC=1.1.1.1 DST=2.2.2.2 PROTO=TCP",
            "IN=".repeat(1000)
        );
        // One word of `IN=`s: one candidate, then the real one.
        assert!(check(&regex(), hay.as_bytes()));
    }
}
