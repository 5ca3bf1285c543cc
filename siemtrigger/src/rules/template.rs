//! `{name}` templates (`key`, `message`, back-references in `second`, the
//! actions' subjects and arguments) and the names they may use.

use std::borrow::Cow;

use siemstress_common::event::ROW_COLUMNS;

/// The event column `name` (or its alias) names, if it may be used as
/// `{name}` in templates and as `distinct`: every column but `parsed` and `extra`.
pub fn template_column(name: &str) -> Option<&'static str> {
    // `extra.KEY`: a key of the `extra` JSON.
    if name.strip_prefix("extra.").is_some_and(|k| !k.is_empty()) {
        return Some("extra");
    }
    let name = column_alias(name);
    ROW_COLUMNS
        .iter()
        .copied()
        .find(|c| *c == name && !matches!(*c, "parsed" | "extra"))
}

/// siemquery's short names for columns, accepted in templates too.
pub fn column_alias(name: &str) -> &str {
    match name {
        "shost" => "source_host",
        "sport" => "source_port",
        "dhost" => "dest_host",
        "dport" => "dest_port",
        other => other,
    }
}

/// True if `name` (or its alias) is an event column.
pub fn is_column(name: &str) -> bool {
    template_column(name).is_some()
}

/// Values a `message` may use besides captures and columns.
pub const MESSAGE_BUILTINS: [&str; 5] = ["count", "key", "rule", "first_ts", "window"];

/// `{name}`s of a `snapshot_change` rule's `key` and `message`, from the
/// diff record: `snapshot`, `change`, `key` (the record's key), `column`,
/// `old`, `new`, `row`, `host`, `run` and `base_run` (run ids), `ts` (the
/// run's time), `detail` (`" COLUMN: OLD -> NEW"` for a changed column, else
/// empty); a `message` also `rule`, `count` and `first_ts` (the base run's time).
pub const SNAPSHOT_VARS: [&str; 11] = [
    "snapshot", "change", "key", "column", "old", "new", "row", "host", "run", "base_run", "ts",
];

/// The `{name}`s a `snapshot_change` message may use besides [`SNAPSHOT_VARS`].
pub const SNAPSHOT_MESSAGE_BUILTINS: [&str; 4] = ["detail", "rule", "count", "first_ts"];

/// A piece of a `{name}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(String),
}

/// A string with `{name}` placeholders (`{{` and `}}` are literal braces).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub source: String,
    pub pieces: Vec<Piece>,
}

fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("extra.").unwrap_or(s);
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// Parses a template; a `{` that does not start `{name}` is literal.
    pub fn parse(source: &str) -> Self {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if let Some((name, after)) = tail
                .strip_prefix('{')
                .and_then(|st| st.split_once('}'))
                .filter(|(name, _)| is_ident(name))
            {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(name.to_owned()));
                rest = after;
                continue;
            }
            lit.push_str(&tail[..1]);
            rest = &tail[1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Self {
            source: source.to_owned(),
            pieces,
        }
    }

    /// Names used as `{name}`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(n) => Some(n.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// Renders with `lookup`; a name it does not know renders empty.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
        self.render_borrowed(|n| lookup(n).map(Cow::Owned))
    }

    /// As [`Template::render`], with values that may be borrowed (a key
    /// is rendered per event: no copy of each column it names).
    pub fn render_borrowed<'v>(
        &self,
        mut lookup: impl FnMut(&str) -> Option<Cow<'v, str>>,
    ) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(n) => {
                    if let Some(v) = lookup(n) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("a {x} {{b}} {1} {y}z{");
        assert_eq!(t.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(
            t.render(|n| Some(n.to_uppercase())),
            "a X {b} {1} Yz{".to_owned()
        );
    }
}
