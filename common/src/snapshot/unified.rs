//! Unified diffs of stored text: the `content` column that `[gather.files]
//! content` keeps of small text files (filetraq's diffs). `siemquery
//! --snapshot files --diff` shows a changed `content` as one, and so do the
//! report and the mail.
//!
//! The text was written by whoever could write the file: control
//! characters other than tab are shown escaped (`\x1b`), so a diff printed
//! on a terminal cannot drive it.

use std::fmt::Write;
use std::time::Duration;

use crate::display::escape;

/// Columns that hold text shown as a unified diff when they change.
pub fn is_text_column(column: &str) -> bool {
    column == "content"
}

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// Longest time spent looking for the smallest diff (a larger, still
/// correct diff is shown past it).
const DEADLINE: Duration = Duration::from_millis(500);

/// The unified diff (`---`/`+++` headers naming `label`, `@@` hunks) that
/// turns `old` into `new`; a side that is not there (`None`) is empty.
/// Empty when the texts are equal.
pub fn unified(label: &str, old: Option<&str>, new: Option<&str>) -> String {
    let (old, new) = (old.unwrap_or(""), new.unwrap_or(""));
    if old == new {
        return String::new();
    }
    let diff = similar::TextDiff::configure()
        .timeout(DEADLINE)
        .diff_lines(old, new);
    let mut out = String::new();
    let _ = writeln!(out, "--- {}", escape(label));
    let _ = writeln!(out, "+++ {}", escape(label));
    for hunk in diff.unified_diff().context_radius(CONTEXT).iter_hunks() {
        let _ = writeln!(out, "{}", hunk.header());
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            let line = change.value();
            let (text, newline) = match line.strip_suffix('\n') {
                Some(t) => (t, true),
                None => (line, false),
            };
            out.push(sign);
            out.push_str(&escape(text.strip_suffix('\r').unwrap_or(text)));
            out.push('\n');
            if !newline {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_as_diff_u_writes_them() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\ni";
        let d = unified("/etc/x", Some(old), Some(new));
        assert_eq!(
            d,
            "--- /etc/x\n+++ /etc/x\n@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n\\ No newline at end of file\n"
        );
        assert_eq!(unified("x", Some("same"), Some("same")), "");
        assert_eq!(
            unified("x", None, Some("new\n")),
            "--- x\n+++ x\n@@ -0,0 +1 @@\n+new\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let d = unified("x", Some(""), Some("\x1b]2;pwned\x07\x1b[2J\tok\\x1b\n"));
        assert!(
            d.contains("+\\x1b]2;pwned\\x07\\x1b[2J\tok\\\\x1b\n"),
            "{d:?}"
        );
        assert!(!d.contains('\x1b'));
    }
}
