//! Sigma YAML: every document of a file (`---` separated), and the small
//! helpers the translation reads them with.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Deepest nesting of maps and lists a rule file may have (Sigma rules
/// need about 6). The tree is walked and dropped recursively.
pub const MAX_DEPTH: usize = 64;

/// Most YAML nodes a rule file may have, aliases counted as the nodes they
/// copy: yaml-rust2 copies the anchored tree for every alias, so nine
/// levels of ten aliases ("billion laughs", 600 bytes) would be 10^10
/// nodes. Each value costs about 14 KB to translate (10,000 values: 150 MB).
pub const MAX_NODES: u64 = 50_000;

/// The documents of a file.
pub fn documents(text: &str) -> Result<Vec<Yaml>, String> {
    check_size(text)?;
    YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))
}

/// Refuses a file whose tree would be deeper than [`MAX_DEPTH`] or larger
/// than [`MAX_NODES`], from the parser's events, before any tree is built.
fn check_size(text: &str) -> Result<(), String> {
    /// An open map or list: its anchor, the node count at its start, and
    /// the depth below it.
    struct Open {
        anchor: usize,
        start: u64,
        below: usize,
    }
    // Per anchor id: (nodes, depth) of the anchored node.
    let mut anchors: std::collections::HashMap<usize, (u64, usize)> = Default::default();
    let mut open: Vec<Open> = Vec::new();
    let mut nodes: u64 = 0;
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| format!("not YAML: {e}"))?;
        // A node of `size` nodes, `depth` levels deep, in the innermost open one.
        let (size, depth) = match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                if anchor > 0 {
                    anchors.insert(anchor, (1, 0));
                }
                (1, 0)
            }
            Event::Alias(id) => anchors.get(&id).copied().unwrap_or((1, 0)),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push(Open {
                    anchor,
                    start: nodes,
                    below: 0,
                });
                (1, 0)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(o) = open.pop() {
                    if let Some(parent) = open.last_mut() {
                        parent.below = parent.below.max(o.below + 1);
                    }
                    if o.anchor > 0 {
                        anchors.insert(o.anchor, (nodes - o.start, o.below + 1));
                    }
                }
                continue;
            }
            _ => continue,
        };
        nodes = nodes.saturating_add(size);
        if let Some(o) = open.last_mut() {
            o.below = o.below.max(depth);
        }
        if open.len() + depth > MAX_DEPTH {
            return Err(format!(
                "line {}: nested deeper than {MAX_DEPTH} levels",
                mark.line()
            ));
        }
        if nodes > MAX_NODES {
            return Err(format!(
                "line {}: more than {MAX_NODES} YAML nodes (an alias counts as the nodes it \
                 copies)",
                mark.line()
            ));
        }
    }
}

/// `y[k]`, if `y` is a map that has `k`.
pub fn get<'a>(y: &'a Yaml, k: &str) -> Option<&'a Yaml> {
    match y {
        Yaml::Hash(h) => h.get(&Yaml::String(k.to_owned())),
        _ => None,
    }
}

/// A string, number or boolean as text.
pub fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `y[k]` as text.
pub fn text(y: &Yaml, k: &str) -> Option<String> {
    get(y, k).and_then(scalar)
}

/// `y[k]` as a list of strings (a single string is a list of one).
pub fn strings(y: &Yaml, k: &str) -> Result<Vec<String>, String> {
    match get(y, k) {
        None | Some(Yaml::Null) => Ok(Vec::new()),
        Some(Yaml::Array(l)) => l
            .iter()
            .map(|v| scalar(v).ok_or_else(|| format!("{k}: a list of strings")))
            .collect(),
        Some(v) => scalar(v)
            .map(|s| vec![s])
            .ok_or_else(|| format!("{k}: a string or a list of strings")),
    }
}
