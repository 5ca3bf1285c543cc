//! Sigma YAML: every document of a file (`---` separated), and the small
//! helpers the translation reads them with.

use yaml_rust2::{Yaml, YamlLoader};

/// The documents of a file.
pub fn documents(text: &str) -> Result<Vec<Yaml>, String> {
    YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))
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
