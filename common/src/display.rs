//! Stored text shown to people. Log lines, file names, banners and snapshot
//! values are written by whoever an attacker is; printed raw, `ESC]2;...BEL`
//! retitles the admin's terminal and `ESC[2J` clears it. Everything a tool
//! prints for people (tables, `siemtrigger` text, explanations, warnings,
//! unified diffs) goes through [`escape`]; machine formats (JSON, NDJSON,
//! CSV) and the database keep the text exact.

use std::borrow::Cow;
use std::fmt::Write;

/// True for a character that must not reach a terminal as it is: control
/// characters (C0 but tab, DEL, C1: `\u{9b}` is a CSI on some terminals),
/// the bidirectional overrides and isolates that reorder what is shown
/// ("Trojan Source"), and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// `123456789` → `117.7 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `s` with every character of [`is_unsafe`] written as `\xNN` (below
/// U+0100) or `\u{NNNN}`, and a backslash as `\\` so that an escape cannot
/// be forged by the text itself. Borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_chars(s, |c| c == '\\' || is_unsafe(c))
}

/// A message for a terminal (stderr): as [`escape`], but backslashes stay
/// (a message is not a faithful copy of a text; a quoted value in it is
/// already escaped) and so do line feeds (a regex or TOML error spans
/// lines), each followed by two spaces: no text inside a message (a file
/// name with a line feed) can start a line that looks like a message of
/// its own.
pub fn escape_message(s: &str) -> Cow<'_, str> {
    let escaped = escape_chars(s, |c| c != '\n' && is_unsafe(c));
    if escaped.contains('\n') {
        Cow::Owned(escaped.replace('\n', "\n  "))
    } else {
        escaped
    }
}

fn escape_chars(s: &str, needs: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !needs(c) => out.push(c),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// Formats as [`escape`] of the text: `println!("{}", Escaped(&line))`.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// A text quoted (`{:?}`) in a message, cut to its first 200 characters:
/// `"first..."... (204800 bytes)`. For a value of any length that a message
/// names (a SQL value in `--verbose`, a refused Sigma condition).
pub struct Excerpt<'a>(pub &'a str);

impl std::fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match head(self.0, 200) {
            Some(h) => write!(f, "{h:?}... ({} bytes)", self.0.len()),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// `s` cut to its first `max` characters, with `... (N bytes)` after a cut:
/// for a text of any length in a message that is escaped as a whole.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match head(s, max) {
        Some(h) => Cow::Owned(format!("{h}... ({} bytes)", s.len())),
        None => Cow::Borrowed(s),
    }
}

/// The first `max` characters of `s` if it has more.
fn head(s: &str, max: usize) -> Option<&str> {
    s.char_indices().nth(max).map(|(at, _)| &s[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_quoted_and_cut() {
        assert_eq!(Excerpt("a\x1bb").to_string(), "\"a\\u{1b}b\"");
        let long = "x".repeat(300);
        let shown = Excerpt(&long).to_string();
        assert_eq!(shown, format!("\"{}\"... (300 bytes)", "x".repeat(200)));
        assert_eq!(Excerpt(&"é".repeat(200)).to_string().chars().count(), 202);
    }

    #[test]
    fn a_message_keeps_its_lines_and_backslashes_but_not_controls() {
        let m = "regex parse error:\n    \\d(\n    ^\nfile \x1b]2;x\x07.toml\r\u{202e}";
        assert_eq!(
            escape_message(m),
            "regex parse error:\n      \\d(\n      ^\n  file \\x1b]2;x\\x07.toml\\x0d\\u{202e}"
        );
        assert!(matches!(escape_message("a\\b\tc"), Cow::Borrowed(_)));
        // A name cannot start a line of its own.
        let forged = escape_message("rules/x\nsiemtrigger: 27 rules are valid\n.toml: bad");
        assert!(
            forged.lines().skip(1).all(|l| l.starts_with("  ")),
            "{forged}"
        );
    }

    #[test]
    fn terminal_controls_are_escaped_and_the_escape_cannot_be_forged() {
        assert!(matches!(escape("plain text, é 日本\tok"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]2;pwned\x07\x1b[2J\r\n\u{9b}31m\u{7f}"),
            "\\x1b]2;pwned\\x07\\x1b[2J\\x0d\\x0a\\x9b31m\\x7f"
        );
        assert_eq!(escape("a\u{202e}cba\u{2066}"), "a\\u{202e}cba\\u{2066}");
        assert_eq!(escape("C:\\x1b"), "C:\\\\x1b");
        assert_eq!(Escaped("\x00").to_string(), "\\x00");
    }
}
