//! `siemstress.toml`: lookup order, parsing with errors that name key and
//! line, and the settings every tool reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::ident::Ident;
use crate::time::Zone;

pub mod actions;
pub mod gather;
pub mod listen;
pub mod retention;

/// The whole configuration file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub section: BTreeMap<String, SectionConfig>,
    #[serde(default)]
    pub rules: RulesConfig,
    /// `[[rule]]` tables: siemtrigger's rule model reads them from [`Config::text`]
    /// (with the line of every key).
    #[serde(default)]
    pub rule: Option<toml::Value>,
    /// `[actions.NAME]`, checked by [`actions::ActionConfig::resolve`].
    #[serde(default)]
    pub actions: BTreeMap<String, actions::ActionConfig>,
    #[serde(default)]
    pub gather: gather::GatherConfig,
    /// `[sigma]`: how Sigma rules map to sections and columns (over the
    /// shipped mapping, `config/sigma/mapping.toml`).
    #[serde(default)]
    pub sigma: SigmaConfig,
    #[serde(default)]
    pub decoders: DecodersConfig,
    #[serde(default)]
    pub listen: listen::ListenConfig,
    #[serde(default)]
    pub retention: retention::RetentionConfig,
    #[serde(default)]
    pub trigger: TriggerConfig,
    /// Where the config came from, for messages; not a key.
    #[serde(skip)]
    pub origin: Option<PathBuf>,
    /// The config's text (empty when none was read); not a key.
    #[serde(skip)]
    pub text: String,
}

/// `[rules]`: siemtrigger's rule files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Files or globs, relative to the config file's directory.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The shipped rule pack (compiled into siemtrigger); default: on when
    /// the config names no rules (no `paths`, no inline `[[rule]]`).
    pub builtin: Option<bool>,
    /// Built-in rules left out, by name.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Default cap on the keys holding a window per rule (a rule's own
    /// `max_keys` wins); siemtrigger's default when unset: 50,000.
    pub max_keys: Option<i64>,
}

/// `[sigma]`: the Sigma mapping, over siemtrigger's shipped one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigmaConfig {
    /// A mapping file (same form as the shipped `config/sigma/mapping.toml`),
    /// relative to the config's directory, read over the shipped mapping.
    pub mapping: Option<String>,
    /// Logsource (`product`, `product/service` or `product/category`) to a
    /// section; `""` makes a logsource run over every event table.
    #[serde(default)]
    pub logsource: BTreeMap<String, String>,
    /// Sigma field name to a column (`user`, `source_host`, ...) or an
    /// `extra` key (`extra.command`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// `[trigger]`: siemtrigger's watermark (issue 16). Rows are evaluated
/// up to the slowest active ingest source's latest event time less
/// `allowed_lateness`; a source that has committed nothing for
/// `idle_timeout` stops holding it back.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Default 2s.
    pub allowed_lateness: Option<String>,
    /// Default 30s.
    pub idle_timeout: Option<String>,
}

/// Default of `[trigger] allowed_lateness`.
pub const ALLOWED_LATENESS: std::time::Duration = std::time::Duration::from_secs(2);
/// Default of `[trigger] idle_timeout`.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl TriggerConfig {
    /// (allowed lateness, idle timeout), with their defaults; an error names the key.
    pub fn watermark(&self) -> Result<(std::time::Duration, std::time::Duration), Error> {
        let get = |v: &Option<String>, key: &str, default| match v {
            None => Ok(default),
            Some(s) => crate::time::parse_duration(s).map_err(|e| Error::ConfigValue {
                key: format!("trigger.{key}"),
                message: e.to_string(),
            }),
        };
        Ok((
            get(&self.allowed_lateness, "allowed_lateness", ALLOWED_LATENESS)?,
            get(&self.idle_timeout, "idle_timeout", IDLE_TIMEOUT)?,
        ))
    }
}

/// `[database]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS to MariaDB: `disabled`, `preferred` (the default), `required`,
    /// `verify-ca` or `verify-identity`; `ssl-mode` in the URL wins.
    pub ssl_mode: Option<String>,
    /// The CA certificate (PEM) that verifies the server's; relative to the
    /// config file's directory; `ssl-ca` in the URL wins.
    pub ssl_ca: Option<PathBuf>,
}

/// `[decoders]`: decoder files added to (and overriding) the built-in ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodersConfig {
    /// Files or globs, relative to the config file's directory.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `e` with the file and line of its key if it is an [`Error::ConfigValue`]
/// whose key is in `text` (the line of its deepest part that is there).
fn locate(path: &Path, text: &str, e: Error) -> Error {
    match e {
        Error::ConfigValue { key, message } => match key_line(text, &key) {
            Some(line) => Error::ConfigParse {
                path: path.to_owned(),
                message: format!("line {line}: key {key}: {message}"),
            },
            None => Error::ConfigValue { key, message },
        },
        other => other,
    }
}

/// `parts` as one TOML key, each part quoted where TOML needs it:
/// `section."a.b".timezone`. Keys in messages are written so, and
/// [`key_line`] reads them back.
pub fn toml_key(parts: &[&str]) -> String {
    let bare = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    parts
        .iter()
        .map(|p| {
            if bare(p) {
                return (*p).to_owned();
            }
            // A basic string (a key cannot be a multi-line one).
            let mut q = String::from('"');
            for c in p.chars() {
                match c {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    '\n' => q.push_str("\\n"),
                    c if c.is_control() => q.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The parts of a dotted TOML key (`section."a.b".timezone`), as TOML
/// reads them; `None` if it is not one.
fn key_parts(key: &str) -> Option<Vec<String>> {
    use toml::de::{DeTable, DeValue};
    let text = format!("{key} = 0");
    let doc = DeTable::parse(&text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = Vec::new();
    loop {
        let (k, v) = table.iter().next()?;
        parts.push(k.get_ref().to_string());
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return Some(parts),
        }
    }
}

/// The line of dotted `key` (`section.auth.retention`, written as
/// [`toml_key`] writes it) in TOML `text`: of its deepest part that is
/// there; `None` if not even the first is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut line = None;
    let parts = key_parts(key)?;
    for part in &parts {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == part) else {
            break;
        };
        line = Some(line_of(text, k.span().start));
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    line
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// `[section.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionConfig {
    pub table: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// For `format = "regex"`: named groups map to columns.
    pub pattern: Option<String>,
    /// For `format = "json"`: `"journald"`, `"eve"` or { column = "dotted.path" }.
    pub mapping: Option<crate::structured::MappingSpec>,
    /// How long the section's rows are kept (`"90d"`, `"forever"`);
    /// default `[retention] default`.
    pub retention: Option<String>,
}

/// `format` of a section.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Syslog,
    Json,
    Regex,
}

/// A section with its table name validated and its zone resolved.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub table: Ident,
    pub zone: Zone,
    pub format: Format,
    /// The compiled json/regex format; `None` for syslog.
    pub structured: Option<std::sync::Arc<crate::structured::Structured>>,
    /// Its own `retention`, if set.
    pub retention: Option<retention::Keep>,
}

impl Config {
    /// Finds and loads the config: `explicit` (`-c`) > `SIEMSTRESS_CONFIG` >
    /// `./siemstress.toml` > `$XDG_CONFIG_HOME/siemstress/siemstress.toml` >
    /// `/etc/siemstress/siemstress.toml`; none at all gives the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Self, Error> {
        if let Some(p) = explicit {
            return Self::from_file(p);
        }
        if let Some(p) = std::env::var_os("SIEMSTRESS_CONFIG").filter(|p| !p.is_empty()) {
            return Self::from_file(Path::new(&p));
        }
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        let mut candidates = vec![PathBuf::from("siemstress.toml")];
        if let Some(x) = xdg {
            candidates.push(x.join("siemstress/siemstress.toml"));
        }
        candidates.push(PathBuf::from("/etc/siemstress/siemstress.toml"));
        for c in candidates {
            if c.is_file() {
                return Self::from_file(&c);
            }
        }
        Ok(Self::default())
    }

    /// Loads one file; errors name the file, and toml names key and line.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = crate::files::read_text(path).map_err(|err| Error::ConfigRead {
            path: path.to_owned(),
            err,
        })?;
        let mut cfg = Self::parse_str(&text).map_err(|e| match e {
            Error::ConfigParse { message, .. } => Error::ConfigParse {
                path: path.to_owned(),
                message,
            },
            other => locate(path, &text, other),
        })?;
        cfg.origin = Some(path.to_owned());
        Ok(cfg)
    }

    /// A [`Error::ConfigValue`] found after loading (an action's settings),
    /// with this config's file and the key's line; other errors as they are.
    pub fn locate(&self, e: Error) -> Error {
        match &self.origin {
            Some(path) => locate(path, &self.text, e),
            None => e,
        }
    }

    /// The line of dotted `key` (written as [`toml_key`] writes it) in this
    /// config's text: of its deepest part that is there.
    pub fn key_line(&self, key: &str) -> Option<usize> {
        key_line(&self.text, key)
    }

    /// Parses config text (the path in errors is `<string>`).
    pub fn parse_str(text: &str) -> Result<Self, Error> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: PathBuf::from("<string>"),
            message: e.to_string(),
        })?;
        cfg.text = text.to_owned();
        for name in cfg.section.keys() {
            cfg.section(name, None)?;
        }
        cfg.listen()?;
        cfg.retention()?;
        cfg.trigger.watermark()?;
        for (key, name) in cfg.listen.sections() {
            cfg.section(name, None).map_err(|e| Error::ConfigValue {
                key,
                message: e.to_string(),
            })?;
        }
        Ok(cfg)
    }

    /// The section `name`; `default` and any name not in the file get defaults.
    pub fn section(&self, name: &str, zone_override: Option<Zone>) -> Result<Section, Error> {
        let mut s = match self.section.get(name) {
            // A bad table name is the file's: say where.
            Some(s) => self.resolve_section_inner(name, s).map_err(|e| match e {
                Error::BadIdentifier { .. } | Error::ReservedName { .. } => Error::ConfigValue {
                    key: match s.table {
                        Some(_) => toml_key(&["section", name, "table"]),
                        None => toml_key(&["section", name]),
                    },
                    message: e.to_string(),
                },
                e => e,
            })?,
            None => self.resolve_section_inner(name, &SectionConfig::default())?,
        };
        if let Some(z) = zone_override {
            s.zone = z;
        }
        Ok(s)
    }

    fn resolve_section_inner(&self, name: &str, s: &SectionConfig) -> Result<Section, Error> {
        let table_name = s.table.as_deref().unwrap_or(name);
        let what = format!("table of [{}]", toml_key(&["section", name]));
        let table = Ident::new(table_name, &what)?;
        crate::db::events::check_event_table(&table, &what)?;
        let zone = match &s.timezone {
            Some(z) => Zone::parse(z).map_err(|_| Error::ConfigValue {
                key: toml_key(&["section", name, "timezone"]),
                message: format!("unknown time zone {z:?} (use an IANA name or +HHMM)"),
            })?,
            None => Zone::local(),
        };
        let structured = crate::structured::Structured::new(
            name,
            s.format,
            s.pattern.as_deref(),
            s.mapping.as_ref(),
        )?
        .map(std::sync::Arc::new);
        let retention = s
            .retention
            .as_deref()
            .map(|r| retention::Keep::parse(r, &toml_key(&["section", name, "retention"])))
            .transpose()?;
        Ok(Section {
            name: name.to_owned(),
            table,
            zone,
            format: s.format,
            structured,
            retention,
        })
    }

    /// The config's path for messages (`siemstress.toml` when none was read).
    pub fn origin_name(&self) -> String {
        self.origin
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "siemstress.toml".into())
    }

    /// The directory that relative paths in the config are read from.
    pub fn base_dir(&self) -> PathBuf {
        self.origin
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// `[retention]`, checked.
    pub fn retention(&self) -> Result<retention::Retention, Error> {
        self.retention.resolve()
    }

    /// The retention of everything: `[retention]`, and per event table the
    /// longest `retention` of the sections that write it (a section without
    /// one has `[retention] default`), so that no section loses rows it
    /// keeps; tables no section names have `[retention] default`.
    pub fn retention_policy(&self) -> Result<retention::Policy, Error> {
        let r = self.retention()?;
        let mut tables = BTreeMap::new();
        for name in self.section.keys() {
            let s = self.section(name, None)?;
            let k = s.retention.unwrap_or(r.default);
            tables
                .entry(s.table.as_str().to_owned())
                .and_modify(|have: &mut retention::Keep| *have = (*have).max(k))
                .or_insert(k);
        }
        Ok(retention::Policy {
            retention: r,
            tables,
            archive: self
                .retention
                .archive
                .as_ref()
                .map(|a| self.base_dir().join(a)),
        })
    }

    /// `[listen]`, checked.
    pub fn listen(&self) -> Result<listen::Listen, Error> {
        self.listen.resolve()
    }

    /// Database URL: `flag` > `SIEMSTRESS_DATABASE_URL` > `[database] url` >
    /// `sqlite://siemstress.db`; a `password_file` fills in the password.
    pub fn database_url(&self, flag: Option<&str>) -> Result<String, Error> {
        let given = flag.map(str::to_owned).or_else(|| {
            std::env::var("SIEMSTRESS_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
        });
        let from_file = given.is_none() && self.database.url.is_some();
        let url = given
            .or_else(|| self.database.url.clone())
            .unwrap_or_else(|| "sqlite://siemstress.db".to_owned());
        let backend = crate::db::Backend::of(&url).map_err(|e| match from_file {
            true => self.locate(Error::ConfigValue {
                key: "database.url".into(),
                message: e.to_string(),
            }),
            false => e,
        })?;
        if backend != crate::db::Backend::Mysql {
            return Ok(url);
        }
        if let Some(mode) = &self.database.ssl_mode {
            crate::db::options::check_ssl_mode(mode).map_err(|message| {
                self.locate(Error::ConfigValue {
                    key: "database.ssl_mode".into(),
                    message,
                })
            })?;
        }
        let ca = self
            .database
            .ssl_ca
            .as_ref()
            .map(|p| self.base_dir().join(p));
        let url =
            crate::db::options::with_tls(&url, self.database.ssl_mode.as_deref(), ca.as_deref())?;
        match &self.database.password_file {
            Some(pf) => {
                let pf = self.base_dir().join(pf);
                let pw = crate::files::read_secret(&pf, "database.password_file")
                    .map_err(|e| self.locate(e))?;
                crate::db::with_password(&url, &pw)
            }
            None => Ok(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_quote_what_toml_quotes_and_are_found_again() {
        assert_eq!(
            toml_key(&["section", "auth", "retention"]),
            "section.auth.retention"
        );
        let key = toml_key(&["section", "a.b", "timezone"]);
        assert_eq!(key, "section.\"a.b\".timezone");
        assert_eq!(
            toml_key(&["listen", "network", "10.0.0.0/8"]),
            "listen.network.\"10.0.0.0/8\""
        );
        assert_eq!(toml_key(&["x", "", "q\"\n"]), "x.\"\".\"q\\\"\\n\"");
        let text = "[section.a]\n\n[section.\"a.b\"]\ntimezone = \"x\"\n";
        assert_eq!(key_line(text, &key), Some(4));
        assert_eq!(key_line(text, "section.a.timezone"), Some(1));
        assert_eq!(
            key_parts("x.\"\".\"q\\\"\\n\""),
            Some(vec!["x".into(), "".into(), "q\"\n".into()])
        );
    }

    #[test]
    fn value_errors_name_the_line_of_their_key() {
        let text = "[database]\nurl = \"sqlite://x\"\n\n[section.auth]\ntable = \"a\"\n\
                    retention = \"9 dayz\"\n[section.b]\nretention = \"1d\"\n\
                    [retention]\nsnapshots = { keep_runs = 0 }\n";
        assert_eq!(key_line(text, "section.auth.retention"), Some(6));
        assert_eq!(key_line(text, "section.b.retention"), Some(8));
        // A key that is not there: its table's line; an inline table's key.
        assert_eq!(key_line(text, "section.b.timezone"), Some(7));
        assert_eq!(key_line(text, "retention.snapshots.keep_runs"), Some(10));
        assert_eq!(key_line(text, "listen"), None);
        let dir = std::env::temp_dir().join(format!("siemstress-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let e = Config::from_file(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.starts_with(&format!(
                "config {}: line 6: key section.auth.retention: ",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn typo_names_key_and_line() {
        let err =
            Config::parse_str("[database]\nurl = \"x\"\n\n[section.auth]\ntabel = \"auth\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("tabel"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn sigma_mapping_is_read() {
        let cfg = Config::parse_str(
            "[sigma]\nmapping = \"m.toml\"\n[sigma.logsource]\n\"linux/sshd\" = \"auth\"\n\
             [sigma.fields]\nUser = \"user\"\n",
        )
        .unwrap();
        assert_eq!(cfg.sigma.logsource["linux/sshd"], "auth");
        assert_eq!(cfg.sigma.fields["User"], "user");
        let err = Config::parse_str("[sigma]\npaths = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("paths"), "{err}");
    }

    #[test]
    fn bad_zone_and_table_are_errors() {
        let err = Config::parse_str("[section.a]\ntimezone = \"Nowhere/Land\"\n").unwrap_err();
        assert!(err.to_string().contains("section.a.timezone"), "{err}");
        let err = Config::parse_str("[section.a]\ntable = \"a;drop\"\n").unwrap_err();
        assert!(err.to_string().contains("a;drop"), "{err}");
    }

    #[test]
    fn internal_and_overlong_tables_are_refused() {
        let cfg = Config::parse_str("").unwrap();
        for name in [
            "alerts",
            "Alerts",
            "_SQLX_MIGRATIONS",
            "sqlite_master",
            "alerts_ts",
        ] {
            let err = cfg.section(name, None).unwrap_err().to_string();
            assert!(err.contains("siemstress's own"), "{name}: {err}");
        }
        let long = "a".repeat(crate::db::events::MAX_TABLE_CHARS + 1);
        let err = cfg.section(&long, None).unwrap_err().to_string();
        assert!(err.contains("at most 55 characters"), "{err}");
        let ok = "a".repeat(crate::db::events::MAX_TABLE_CHARS);
        assert!(cfg.section(&ok, None).is_ok());
        let err = Config::parse_str("[section.x]\ntable = \"Event_Tables\"\n").unwrap_err();
        assert!(err.to_string().contains("section.x"), "{err}");
    }

    #[test]
    fn retention_per_table() {
        let cfg = Config::parse_str(
            "[retention]\ndefault = \"180d\"\n[section.auth]\nretention = \"90d\"\n\
             [section.auth2]\ntable = \"auth\"\nretention = \"10d\"\n\
             [section.keep]\nretention = \"forever\"\n[section.plain]\n",
        )
        .unwrap();
        let days = |d: u64| retention::Keep::For(std::time::Duration::from_secs(d * 86400));
        let p = cfg.retention_policy().unwrap();
        assert_eq!(p.table("auth"), days(90));
        assert_eq!(p.table("keep"), retention::Keep::Forever);
        assert_eq!(p.table("plain"), days(180));
        assert_eq!(p.table("unnamed"), days(180));
        assert!(p.prunes_anything());
        let err = Config::parse_str("[section.a]\nretention = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("section.a.retention"), "{err}");
        let err = Config::parse_str("[retention]\nsnapshots = { keep = 3 }\n").unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
        let err = Config::parse_str("[retention]\nalerts = \"1 fortnight\"\n").unwrap_err();
        assert!(err.to_string().contains("retention.alerts"), "{err}");
        let none = Config::parse_str("").unwrap().retention_policy().unwrap();
        assert_eq!(none.table("x"), retention::Keep::Forever);
        assert!(!none.prunes_anything());
    }

    #[test]
    fn sections_default_to_their_name() {
        let cfg = Config::parse_str("[section.auth]\ntimezone = \"+0200\"\n").unwrap();
        let s = cfg.section("auth", None).unwrap();
        assert_eq!(s.table.as_str(), "auth");
        assert_eq!(s.zone.name(), "+0200");
        assert_eq!(cfg.section("other", None).unwrap().table.as_str(), "other");
    }
}
