//! Input formats other than syslog, chosen per section (`format`):
//!
//! - `json`: one JSON object per line, fields found by a mapping (column →
//!   dotted path, or a list of paths of which the first present wins):
//!   `mapping = "journald"` (`journalctl -o json`), `"eve"` (Suricata
//!   `eve.json`), or a table of the section's own;
//! - `regex`: a `pattern` whose named groups map to columns.
//!
//! In both, names that are not columns go to `extra`; `ts` is read as
//! epoch seconds/ms/µs/ns, RFC 3339 or ISO 8601 (with an offset: exact;
//! without: wall-clock time in the section's zone) or a syslog time (year
//! inferred). A line that is not an object, or does not match the pattern,
//! is stored whole with `parsed = 0`, as any line without a header is.
//! Decoders then fill the columns that the format did not, from `process`
//! and `message`.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::config::Format;
use crate::decode::{Column, DECODED_COLUMNS};

/// A field of an event that a format can fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Ts,
    Host,
    Process,
    Pid,
    Facility,
    Severity,
    Message,
    Column(Column),
    Extra(String),
}

impl Slot {
    fn of(name: &str) -> Result<Slot, String> {
        Ok(match name {
            "ts" => Slot::Ts,
            "host" => Slot::Host,
            "process" => Slot::Process,
            "pid" => Slot::Pid,
            "facility" => Slot::Facility,
            "severity" => Slot::Severity,
            "message" => Slot::Message,
            n => match DECODED_COLUMNS.iter().find(|c| c.name() == n) {
                Some(c) => Slot::Column(*c),
                None if crate::event::ROW_COLUMNS.contains(&n) => {
                    return Err(format!("{n:?} is not a column a format can fill"));
                }
                None => match crate::parse::own_extra_key(n) {
                    Some(why) => return Err(why),
                    None => Slot::Extra(n.to_owned()),
                },
            },
        })
    }
}

/// `mapping` of a json section as written: a built-in name or a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MappingSpec {
    Named(String),
    Fields(BTreeMap<String, Paths>),
}

/// One dotted path or several (the first present wins).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

/// The values of one structured line, before time and decoders.
#[derive(Debug, Default)]
pub struct Parts {
    pub values: Vec<(Slot, String)>,
}

impl Parts {
    /// The value of `slot`, if the line had one.
    pub fn get(&self, slot: &Slot) -> Option<&str> {
        self.values
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, v)| v.as_str())
    }
}

/// A compiled non-syslog format.
#[derive(Debug)]
pub enum Structured {
    Json {
        fields: Vec<(Slot, Vec<Vec<String>>)>,
        /// journald: PRIORITY and SYSLOG_FACILITY are numbers.
        numeric_priority: bool,
        /// A process name for formats whose lines do not carry one (eve).
        process: Option<&'static str>,
    },
    Regex {
        regex: Regex,
        slots: Vec<Option<Slot>>,
    },
}

/// `journalctl -o json`.
const JOURNALD: &[(&str, &[&str])] = &[
    ("ts", &["__REALTIME_TIMESTAMP"]),
    ("host", &["_HOSTNAME"]),
    ("process", &["SYSLOG_IDENTIFIER", "_COMM"]),
    ("pid", &["SYSLOG_PID", "_PID"]),
    ("facility", &["SYSLOG_FACILITY"]),
    ("severity", &["PRIORITY"]),
    ("message", &["MESSAGE"]),
    ("unit", &["_SYSTEMD_UNIT"]),
];

/// Suricata `eve.json` (alerts and the other event types).
const EVE: &[(&str, &[&str])] = &[
    ("ts", &["timestamp"]),
    ("host", &["host"]),
    ("message", &["alert.signature", "event_type"]),
    ("source_host", &["src_ip"]),
    ("source_port", &["src_port"]),
    ("dest_host", &["dest_ip"]),
    ("dest_port", &["dest_port"]),
    ("protocol", &["proto"]),
    ("event_type", &["event_type"]),
    ("sid", &["alert.signature_id"]),
    ("gid", &["alert.gid"]),
    ("rev", &["alert.rev"]),
    ("signature", &["alert.signature"]),
    ("classification", &["alert.category"]),
    ("priority", &["alert.severity"]),
    ("action", &["alert.action"]),
    ("flow_id", &["flow_id"]),
    ("in_iface", &["in_iface"]),
];

impl Structured {
    /// The format of section `name`, or `None` for syslog; errors name the key.
    pub fn new(
        name: &str,
        format: Format,
        pattern: Option<&str>,
        mapping: Option<&MappingSpec>,
    ) -> Result<Option<Structured>, Error> {
        // `k`: the key under the section, as TOML writes it (`mapping.raw`).
        let bad = |k: &str, message: String| Error::ConfigValue {
            key: format!("{}.{k}", crate::config::toml_key(&["section", name])),
            message,
        };
        if pattern.is_some() && format != Format::Regex {
            return Err(bad("pattern", "goes with format = \"regex\"".into()));
        }
        if mapping.is_some() && format != Format::Json {
            return Err(bad("mapping", "goes with format = \"json\"".into()));
        }
        match format {
            Format::Syslog => Ok(None),
            Format::Regex => {
                let src = pattern.ok_or_else(|| {
                    bad(
                        "pattern",
                        "format = \"regex\" needs a pattern with named groups".into(),
                    )
                })?;
                let regex = Regex::new(src).map_err(|e| bad("pattern", e.to_string()))?;
                let mut slots = Vec::new();
                for n in regex.capture_names() {
                    slots.push(match n {
                        None => None,
                        Some(n) => Some(Slot::of(n).map_err(|m| bad("pattern", m))?),
                    });
                }
                if !slots.iter().any(Option::is_some) {
                    return Err(bad(
                        "pattern",
                        "has no named group: it would fill nothing".into(),
                    ));
                }
                Ok(Some(Structured::Regex { regex, slots }))
            }
            Format::Json => {
                let (table, numeric_priority, process): (Vec<(String, Vec<String>)>, _, _) =
                    match mapping {
                        None => {
                            return Err(bad(
                                "mapping",
                                "format = \"json\" needs a mapping: \"journald\", \"eve\", or a \
                                 table such as { ts = \"time\", message = \"msg\" }"
                                    .into(),
                            ));
                        }
                        Some(MappingSpec::Named(n)) => {
                            let (builtin, numeric, process) = match n.as_str() {
                                "journald" => (JOURNALD, true, None),
                                "eve" => (EVE, false, Some("suricata")),
                                other => {
                                    return Err(bad(
                                        "mapping",
                                        format!(
                                            "unknown mapping {other:?}: use \"journald\", \"eve\" \
                                             or a table"
                                        ),
                                    ));
                                }
                            };
                            let t = builtin
                                .iter()
                                .map(|(k, ps)| {
                                    (k.to_string(), ps.iter().map(|p| p.to_string()).collect())
                                })
                                .collect();
                            (t, numeric, process)
                        }
                        Some(MappingSpec::Fields(f)) => {
                            let t = f
                                .iter()
                                .map(|(k, p)| {
                                    let paths = match p {
                                        Paths::One(s) => vec![s.clone()],
                                        Paths::Many(v) => v.clone(),
                                    };
                                    (k.clone(), paths)
                                })
                                .collect();
                            (t, false, None)
                        }
                    };
                let mut fields = Vec::new();
                for (k, paths) in table {
                    let slot = Slot::of(&k)
                        .map_err(|m| bad(&crate::config::toml_key(&["mapping", &k]), m))?;
                    if paths.is_empty() || paths.iter().any(String::is_empty) {
                        return Err(bad(
                            &crate::config::toml_key(&["mapping", &k]),
                            "an empty path".into(),
                        ));
                    }
                    let split = paths
                        .iter()
                        .map(|p| p.split('.').map(str::to_owned).collect())
                        .collect();
                    fields.push((slot, split));
                }
                Ok(Some(Structured::Json {
                    fields,
                    numeric_priority,
                    process,
                }))
            }
        }
    }

    /// The values of `raw`, or `None` when it is not of this format.
    pub fn split(&self, raw: &str) -> Option<Parts> {
        let mut parts = Parts::default();
        match self {
            Structured::Regex { regex, slots } => {
                let caps = regex.captures(raw)?;
                for (i, slot) in slots.iter().enumerate() {
                    if let (Some(slot), Some(m)) = (slot, caps.get(i))
                        && !m.as_str().is_empty()
                    {
                        parts.values.push((slot.clone(), m.as_str().to_owned()));
                    }
                }
            }
            Structured::Json {
                fields,
                numeric_priority,
                process,
            } => {
                let v: Value = serde_json::from_str(raw.trim()).ok()?;
                if !v.is_object() {
                    return None;
                }
                if let Some(p) = process {
                    parts.values.push((Slot::Process, (*p).to_owned()));
                }
                for (slot, paths) in fields {
                    let Some(found) = paths.iter().find_map(|p| lookup(&v, p)) else {
                        continue;
                    };
                    let Some(mut text) = text_of(found) else {
                        continue;
                    };
                    if *numeric_priority {
                        text = match slot {
                            Slot::Facility => facility_name(&text).unwrap_or(text),
                            Slot::Severity => severity_name(&text).unwrap_or(text),
                            _ => text,
                        };
                    }
                    parts.values.retain(|(s, _)| s != slot);
                    parts.values.push((slot.clone(), text));
                }
            }
        }
        Some(parts)
    }
}

/// The value at a dotted path of an object.
fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k.as_str()))
}

/// A scalar as text; journald's byte-array MESSAGE as lossy UTF-8; objects
/// and arrays as their JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.iter().all(|i| i.as_u64().is_some_and(|b| b < 256)) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|i| i.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        other => Some(other.to_string()),
    }
}

fn facility_name(n: &str) -> Option<String> {
    let f: u8 = n.parse().ok().filter(|f| *f < 24)?;
    syslog_loose::decompose_pri(f * 8)
        .0
        .map(|f| f.as_str().to_owned())
}

fn severity_name(n: &str) -> Option<String> {
    let s: u8 = n.parse().ok().filter(|s| *s < 8)?;
    syslog_loose::decompose_pri(s)
        .1
        .map(|s| s.as_str().to_owned())
}

/// A time as a format gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeText {
    /// UTC epoch ms (epoch numbers, times with an offset).
    Exact(i64),
    /// Wall-clock time in the section's zone.
    Local(chrono::NaiveDateTime),
    /// A syslog time without a year: (month, day, h, m, s).
    NoYear(u32, u32, u32, u32, u32),
}

/// Reads a timestamp: epoch s/ms/µs/ns (by its number of digits, fraction
/// allowed on seconds), RFC 3339 / ISO 8601 with or without an offset, or
/// `Mmm dd HH:MM:SS`.
pub fn read_time(s: &str) -> Option<TimeText> {
    use chrono::{DateTime, NaiveDateTime};
    let s = s.trim();
    if let Some((int, frac)) = s.split_once('.').or(Some((s, "")))
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let n: i64 = int.parse().ok()?;
        let ms = match int.len() {
            0..=11 => {
                let f: f64 = format!("0.{}", if frac.is_empty() { "0" } else { frac })
                    .parse()
                    .ok()?;
                n.checked_mul(1000)? + (f * 1000.0) as i64
            }
            12..=14 => n,
            15..=17 => n / 1000,
            _ => n / 1_000_000,
        };
        return Some(TimeText::Exact(ms));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(TimeText::Exact(t.timestamp_millis()));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(TimeText::Exact(t.timestamp_millis()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(TimeText::Local(t));
        }
    }
    // "Mar  1 18:46:11" (no year)
    let t = NaiveDateTime::parse_from_str(&format!("2000 {s}"), "%Y %b %e %H:%M:%S").ok()?;
    use chrono::{Datelike, Timelike};
    Some(TimeText::NoYear(
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            read_time("1704067200"),
            Some(TimeText::Exact(1_704_067_200_000))
        );
        assert_eq!(
            read_time("1704067200.5"),
            Some(TimeText::Exact(1_704_067_200_500))
        );
        assert_eq!(
            read_time("1704067200123"),
            Some(TimeText::Exact(1_704_067_200_123))
        );
        assert_eq!(
            read_time("1704067200123456"),
            Some(TimeText::Exact(1_704_067_200_123))
        );
        assert_eq!(
            read_time("2024-01-01T00:00:03.667372+0000"),
            Some(TimeText::Exact(1_704_067_203_667))
        );
        assert_eq!(
            read_time("2024-01-01T01:00:00+01:00"),
            Some(TimeText::Exact(1_704_067_200_000))
        );
        assert!(matches!(
            read_time("2024-01-01 00:00:00"),
            Some(TimeText::Local(_))
        ));
        assert_eq!(
            read_time("Mar  1 18:46:11"),
            Some(TimeText::NoYear(3, 1, 18, 46, 11))
        );
        assert_eq!(read_time("yesterday"), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = Structured::new("s", Format::Regex, None, None).unwrap_err();
        assert!(e.to_string().contains("section.s.pattern"), "{e}");
        let e = Structured::new("s", Format::Regex, Some("(?P<ts>a("), None).unwrap_err();
        assert!(e.to_string().contains("section.s.pattern"), "{e}");
        let e = Structured::new("s", Format::Json, None, None).unwrap_err();
        assert!(e.to_string().contains("section.s.mapping"), "{e}");
        let m = MappingSpec::Named("nope".into());
        let e = Structured::new("s", Format::Json, None, Some(&m)).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let m = MappingSpec::Fields([("raw".to_owned(), Paths::One("x".into()))].into());
        let e = Structured::new("s", Format::Json, None, Some(&m)).unwrap_err();
        assert!(e.to_string().contains("section.s.mapping.raw"), "{e}");
    }

    #[test]
    fn journald_and_eve() {
        let j = Structured::new(
            "s",
            Format::Json,
            None,
            Some(&MappingSpec::Named("journald".into())),
        )
        .unwrap()
        .unwrap();
        let p = j
            .split(r#"{"__REALTIME_TIMESTAMP":"1704067200123456","_HOSTNAME":"h","SYSLOG_IDENTIFIER":"sshd","_PID":"42","PRIORITY":"6","SYSLOG_FACILITY":"4","MESSAGE":[104,105]}"#)
            .unwrap();
        assert_eq!(p.get(&Slot::Message), Some("hi"));
        assert_eq!(p.get(&Slot::Severity), Some("info"));
        assert_eq!(p.get(&Slot::Facility), Some("auth"));
        assert_eq!(p.get(&Slot::Pid), Some("42"));
        assert!(j.split("not json").is_none());
        assert!(j.split("[1,2]").is_none());
    }
}
