//! Snapshots: the state of something (users, listening ports, watched files,
//! any JSON a third-party tool prints) taken at one moment, stored as a run
//! (`snapshot_runs`) with its rows (`snapshot_rows`), and diffed against the
//! previous successful run of the same name and host.
//!
//! - [`Row`]: one row, a natural key and a JSON value;
//! - [`input`]: a JSON document (array of objects, or object of objects) to rows;
//! - [`current`]: a series' current rows and the delta a new run writes;
//! - runs and rows in the database: [`crate::db::snapshots`];
//! - [`diff`]: added / removed / changed records with exclusion globs, and
//!   the AIDE-style exit bitmask in [`exit`].

pub mod current;
pub mod diff;
pub mod input;
pub mod unified;

use serde_json::Value;

use crate::Error;

/// One row of a snapshot: its natural key (unique within a run) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub value: Value,
}

impl Row {
    /// A row from a key and a JSON value.
    pub fn new(key: impl Into<String>, value: Value) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// A row as stored: its key and its value as JSON text. Gatherers that
/// write their JSON directly (`files`, `suid`) hand these to
/// [`crate::db::snapshots::store_raw_run`], skipping a `serde_json::Value` per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub key: String,
    /// A JSON value (not checked).
    pub json: String,
}

impl RawRow {
    /// The stored form of `row` (canonical JSON, object keys sorted).
    pub fn from_row(row: Row) -> Self {
        Self {
            json: serde_json::to_string(&row.value).unwrap_or_else(|_| "null".into()),
            key: row.key,
        }
    }
}

/// Status of a run: only `ok` runs are diffed.
pub const STATUS_OK: &str = "ok";
/// Status of a run whose gatherer failed; it has no rows.
pub const STATUS_FAILED: &str = "failed";
/// Status of a run removed by retention that still holds rows later runs
/// read (rows are stored once per value): never listed or diffed as a run.
pub const STATUS_PRUNED: &str = "pruned";

/// One stored run.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Run {
    pub id: i64,
    pub name: String,
    pub host: String,
    /// Start of the run, UTC epoch ms.
    pub taken: i64,
    pub status: String,
    pub finished: Option<i64>,
    pub row_count: i64,
    pub message: Option<String>,
}

/// Exit status of a diff, as AIDE: a bitmask of what changed; 16 and above
/// are errors. Kept in one place for `siemquery` and the docs.
pub mod exit {
    /// Nothing changed (or a first run: the baseline).
    pub const NONE: u8 = 0;
    /// At least one row was added.
    pub const ADDED: u8 = 1;
    /// At least one row was removed.
    pub const REMOVED: u8 = 2;
    /// At least one column of a row changed.
    pub const CHANGED: u8 = 4;
    /// The diff could not be computed (bad arguments, database, no such snapshot).
    pub const ERROR: u8 = 16;
}

/// Checks a snapshot name: 1-64 of letters, digits, `_` and `-`, not
/// starting with `-`. Names have no dots so that exclusion globs
/// (`NAME.KEY.COLUMN`) stay unambiguous.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadIdentifier {
            what: "snapshot name".into(),
            name: name.to_owned(),
        })
    }
}

/// This machine's host name, as recorded in `snapshot_runs.host`.
pub fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Makes keys unique within a run: the second row with key `k` becomes
/// `k #2`, the third `k #3`, and so on. Returns how many were renamed.
pub fn dedupe_keys(rows: &mut [Row]) -> usize {
    dedupe(rows.iter_mut().map(|r| &mut r.key))
}

/// [`dedupe_keys`] of raw rows.
pub fn dedupe_raw_keys(rows: &mut [RawRow]) -> usize {
    dedupe(rows.iter_mut().map(|r| &mut r.key))
}

fn dedupe<'a>(keys: impl Iterator<Item = &'a mut String>) -> usize {
    let mut keys: Vec<&mut String> = keys.collect();
    {
        // Most runs have no duplicate: find that out without copying keys.
        let mut distinct = std::collections::HashSet::with_capacity(keys.len());
        if keys.iter().all(|k| distinct.insert(k.as_str())) {
            return 0;
        }
    }
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut renamed = 0;
    for key in keys.iter_mut() {
        let key: &mut String = key;
        let n = seen.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            let mut i = *n;
            let mut candidate = format!("{key} #{i}");
            while seen.contains_key(&candidate) {
                i += 1;
                candidate = format!("{key} #{i}");
            }
            seen.insert(candidate.clone(), 1);
            *key = candidate;
            renamed += 1;
        }
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["users", "mysql_users", "etc-files", "A1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "-x", "a b", "é", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_keys_get_a_suffix() {
        let mut rows = vec![
            Row::new("a", Value::Null),
            Row::new("a", Value::Null),
            Row::new("b", Value::Null),
            Row::new("a", Value::Null),
        ];
        assert_eq!(dedupe_keys(&mut rows), 2);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "a #2", "b", "a #3"]);
    }
}
