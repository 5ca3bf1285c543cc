//! The Sigma mapping: logsource → section (→ its table), field → column or
//! `extra` key. The shipped `config/sigma/mapping.toml` is compiled in; a
//! config's `[sigma] mapping = FILE`, then `[sigma.logsource]` and
//! `[sigma.fields]`, are read over it.

use std::collections::BTreeMap;

use serde::Deserialize;
use siemstress_common::config::{Config, toml_key};

use crate::rules::expr::FieldRef;

/// The shipped mapping.
pub const DEFAULT: &str = include_str!("../../../config/sigma/mapping.toml");

/// A mapping file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    #[serde(default)]
    pub logsource: BTreeMap<String, String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// The mapping in force, with sections resolved to tables.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// Logsource key → table (`None`: every event table).
    pub logsource: BTreeMap<String, Option<String>>,
    /// Sigma field → `user`, `extra.command`, ...
    pub fields: BTreeMap<String, String>,
}

/// Why the mapping did not load: the config key at fault (`None`: the
/// shipped mapping or the `[sigma] mapping` file as a whole), and why.
#[derive(Debug)]
pub struct MappingError {
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "key {k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for MappingError {}

impl Mapping {
    /// The shipped mapping with `config`'s over it; errors name the key of
    /// the config (or the mapping file).
    pub fn load(config: &Config) -> Result<Self, MappingError> {
        let whole = |message: String| MappingError { key: None, message };
        let mut m: MappingFile =
            toml::from_str(DEFAULT).map_err(|e| whole(format!("shipped Sigma mapping: {e}")))?;
        let sc = &config.sigma;
        if let Some(path) = &sc.mapping {
            let p = config.base_dir().join(path);
            let text = siemstress_common::files::read_text(&p).map_err(|e| MappingError {
                key: Some("sigma.mapping".into()),
                message: format!("{}: {e}", p.display()),
            })?;
            let f: MappingFile = toml::from_str(&text)
                .map_err(|e| whole(format!("[sigma] mapping {}: {e}", p.display())))?;
            m.logsource.extend(f.logsource);
            m.fields.extend(f.fields);
        }
        // An entry of the config names its key; one of a mapping file, the
        // entry as that file writes it.
        let at = |table: &str, k: &str, v: &str, message: String| {
            let own = match table {
                "logsource" => sc.logsource.get(k),
                _ => sc.fields.get(k),
            };
            match own.filter(|o| *o == v) {
                Some(_) => MappingError {
                    key: Some(toml_key(&["sigma", table, k])),
                    message,
                },
                None => whole(format!("[sigma.{table}] {k:?} = {v:?}: {message}")),
            }
        };
        m.logsource
            .extend(sc.logsource.iter().map(|(k, v)| (k.clone(), v.clone())));
        m.fields
            .extend(sc.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut out = Mapping::default();
        for (k, section) in m.logsource {
            let table = if section.is_empty() {
                None
            } else {
                let s = config
                    .section(&section, None)
                    .map_err(|e| at("logsource", &k, &section, e.to_string()))?;
                Some(s.table.as_str().to_owned())
            };
            out.logsource.insert(k, table);
        }
        for (k, v) in m.fields {
            FieldRef::parse(&v).map_err(|e| at("fields", &k, &v, e.to_string()))?;
            out.fields.insert(k, v);
        }
        Ok(out)
    }

    /// The table of a logsource (`None`: every event table).
    pub fn table(
        &self,
        product: Option<&str>,
        service: Option<&str>,
        category: Option<&str>,
    ) -> Option<String> {
        let p = product.unwrap_or("");
        let mut keys = Vec::new();
        if let Some(s) = service {
            keys.push(format!("{p}/{s}"));
        }
        if let Some(c) = category {
            keys.push(format!("{p}/{c}"));
        }
        if product.is_some() {
            keys.push(p.to_owned());
        }
        keys.iter()
            .find_map(|k| self.logsource.get(k))
            .cloned()
            .flatten()
    }

    /// The siemstress field of a Sigma field.
    pub fn field(&self, sigma: &str) -> Result<&str, String> {
        self.fields.get(sigma).map(String::as_str).ok_or_else(|| {
            format!("field {sigma} is not mapped (add it under [sigma.fields], e.g. {sigma} = \"extra.{}\")", sigma.to_lowercase())
        })
    }
}
