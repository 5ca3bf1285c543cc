//! Diffs of two runs: one record per added row, removed row, and changed
//! column, with exclusion globs.
//!
//! Exclusion globs are matched against `NAME.KEY.COLUMN` for a changed
//! column and against `NAME.KEY` for a whole row (added, removed, or every
//! column of a changed row). `*` matches any text, dots and slashes
//! included: `listenports.*.pid` drops pid changes of every port,
//! `users.nobody` drops everything about that user, `files./var/log/*`
//! every file under `/var/log`.
//!
//! Columns whose name starts with `_` are a gatherer's bookkeeping (the
//! `files` gatherer's `_ctime`, `_dev` and `_hashed`, which decide when a
//! file is hashed again): they are not compared, and left out of the rows
//! of added and removed records.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use serde_json::Value;

use super::{Row, Run, exit};
use crate::Error;
use crate::db::Database;
use crate::db::snapshots;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    /// `added`, `removed` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }

    /// This kind's bit of the exit status.
    pub fn bit(self) -> u8 {
        match self {
            ChangeKind::Added => exit::ADDED,
            ChangeKind::Removed => exit::REMOVED,
            ChangeKind::Changed => exit::CHANGED,
        }
    }
}

/// One record of a diff, serialized as the contract's JSON shape:
/// `{"snapshot","change","key","column","old","new"}` for a changed column,
/// `{"snapshot","change","key","row"}` for an added or removed row; `host`
/// and `run` (the newer run's id) follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub snapshot: String,
    pub change: ChangeKind,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<Value>,
    pub host: String,
    pub run: i64,
}

/// Compiled exclusion globs.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    set: Option<GlobSet>,
}

impl Excludes {
    /// Compiles `patterns`; an invalid glob is an error naming it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
            let glob = GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|e| Error::ConfigValue {
                    key: format!("exclude {p:?}"),
                    message: e.kind().to_string(),
                })?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| Error::ConfigValue {
            key: "exclude".into(),
            message: e.to_string(),
        })?;
        Ok(Self { set: Some(set) })
    }

    /// True if `NAME.KEY` matches (the whole row is ignored).
    pub fn row(&self, name: &str, key: &str) -> bool {
        self.set
            .as_ref()
            .is_some_and(|s| s.is_match(format!("{name}.{key}")))
    }

    /// True if `NAME.KEY.COLUMN` matches (that column is ignored).
    pub fn column(&self, name: &str, key: &str, column: &str) -> bool {
        self.set
            .as_ref()
            .is_some_and(|s| s.is_match(format!("{name}.{key}.{column}")))
    }
}

/// The records that turn `old` into `new`. `snapshot`, `host` and `run`
/// label them. Order: rows of `new` in their order (added, or changed column
/// by column), then removed rows in `old`'s order.
pub fn diff_rows(
    snapshot: &str,
    host: &str,
    run: i64,
    old: &[Row],
    new: &[Row],
    excludes: &Excludes,
) -> Vec<Change> {
    let old_by_key: HashMap<&str, &Value> =
        old.iter().map(|r| (r.key.as_str(), &r.value)).collect();
    let new_keys: std::collections::HashSet<&str> = new.iter().map(|r| r.key.as_str()).collect();
    let record = |change, key: &str| Change {
        snapshot: snapshot.to_owned(),
        change,
        key: key.to_owned(),
        column: None,
        old: None,
        new: None,
        row: None,
        host: host.to_owned(),
        run,
    };
    let mut out = Vec::new();
    for r in new {
        if excludes.row(snapshot, &r.key) {
            continue;
        }
        match old_by_key.get(r.key.as_str()) {
            None => out.push(Change {
                row: Some(shown(&r.value)),
                ..record(ChangeKind::Added, &r.key)
            }),
            Some(prev) if **prev == r.value => {}
            Some(prev) => {
                for (column, o, n) in column_changes(prev, &r.value) {
                    if excludes.column(snapshot, &r.key, &column) {
                        continue;
                    }
                    out.push(Change {
                        column: Some(column),
                        old: Some(o),
                        new: Some(n),
                        ..record(ChangeKind::Changed, &r.key)
                    });
                }
            }
        }
    }
    for r in old {
        if !new_keys.contains(r.key.as_str()) && !excludes.row(snapshot, &r.key) {
            out.push(Change {
                row: Some(shown(&r.value)),
                ..record(ChangeKind::Removed, &r.key)
            });
        }
    }
    out
}

/// True for a bookkeeping column (see the module doc).
pub fn is_bookkeeping(column: &str) -> bool {
    column.starts_with('_')
}

/// A row without its bookkeeping columns.
fn shown(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.keys().any(|k| is_bookkeeping(k)) => Value::Object(
            m.iter()
                .filter(|(k, _)| !is_bookkeeping(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Columns whose values differ, as (column, old, new); a column missing on
/// one side is `null` there. A value that is not an object is one column,
/// `value`. Bookkeeping columns are not compared.
fn column_changes(old: &Value, new: &Value) -> Vec<(String, Value, Value)> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Vec::new();
            for (k, nv) in n.iter().filter(|(k, _)| !is_bookkeeping(k)) {
                let ov = o.get(k).unwrap_or(&Value::Null);
                if ov != nv {
                    out.push((k.clone(), ov.clone(), nv.clone()));
                }
            }
            for (k, ov) in o.iter().filter(|(k, _)| !is_bookkeeping(k)) {
                if !n.contains_key(k) && !ov.is_null() {
                    out.push((k.clone(), ov.clone(), Value::Null));
                }
            }
            out
        }
        _ => vec![("value".to_owned(), old.clone(), new.clone())],
    }
}

/// The exit status of a set of records: OR of their kinds' bits.
pub fn exit_bits(changes: &[Change]) -> u8 {
    changes
        .iter()
        .fold(exit::NONE, |acc, c| acc | c.change.bit())
}

/// A run compared with the previous successful run of its name and host.
#[derive(Debug, Clone)]
pub struct RunDiff {
    pub run: Run,
    /// `None` for a first run (a baseline: no records).
    pub previous: Option<Run>,
    pub changes: Vec<Change>,
}

/// Diffs `run` against the previous successful run of the same name and host.
pub async fn diff_run(db: &Database, run: Run, excludes: &Excludes) -> Result<RunDiff, Error> {
    let Some(previous) = snapshots::previous_ok(db, &run).await? else {
        return Ok(RunDiff {
            run,
            previous: None,
            changes: Vec::new(),
        });
    };
    let old = snapshots::rows(db, &previous).await?;
    let new = snapshots::rows(db, &run).await?;
    let changes = diff_rows(&run.name, &run.host, run.id, &old, &new, excludes);
    Ok(RunDiff {
        run,
        previous: Some(previous),
        changes,
    })
}

/// The latest diff of snapshot `name`: for each host, its latest successful
/// run against the one before.
pub async fn diff_latest(
    db: &Database,
    name: &str,
    excludes: &Excludes,
) -> Result<Vec<RunDiff>, Error> {
    let mut out = Vec::new();
    for run in snapshots::latest_per_host(db, name).await? {
        out.push(diff_run(db, run, excludes).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Row> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| Row::new(k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn added_removed_changed_and_bits() {
        let old = rows(json!({"alice": {"shell": "/bin/sh", "uid": 1000}, "bob": {"uid": 1001}}));
        let new =
            rows(json!({"alice": {"shell": "/bin/bash", "uid": 1000}, "carol": {"uid": 1002}}));
        let d = diff_rows("users", "h", 2, &old, &new, &Excludes::default());
        let j: Vec<Value> = d.iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        assert_eq!(
            j[0],
            json!({"snapshot": "users", "change": "changed", "key": "alice", "column": "shell",
                   "old": "/bin/sh", "new": "/bin/bash", "host": "h", "run": 2})
        );
        assert_eq!(j[1]["change"], "added");
        assert_eq!(j[1]["row"], json!({"uid": 1002}));
        assert_eq!(j[2]["change"], "removed");
        assert_eq!(j[2]["key"], "bob");
        assert_eq!(d.len(), 3);
        assert_eq!(exit_bits(&d), exit::ADDED | exit::REMOVED | exit::CHANGED);
        assert_eq!(exit_bits(&d[..1]), exit::CHANGED);
    }

    #[test]
    fn excludes_columns_and_rows() {
        let old = rows(json!({"tcp/0.0.0.0:22": {"pid": 1, "process": "sshd"}, "x.y": {"a": 1}}));
        let new = rows(json!({"tcp/0.0.0.0:22": {"pid": 2, "process": "sshd"}, "x.y": {"a": 2}}));
        let ex = Excludes::new(&["listenports.*.pid"]).unwrap();
        let d = diff_rows("listenports", "h", 1, &old, &new, &ex);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].key, "x.y");
        let ex = Excludes::new(&["listenports.*.pid", "listenports.x.y"]).unwrap();
        assert!(diff_rows("listenports", "h", 1, &old, &new, &ex).is_empty());
        let ex = Excludes::new(&["files./var/log/*"]).unwrap();
        let new = rows(json!({"/var/log/a/b": {}}));
        assert!(diff_rows("files", "h", 1, &[], &new, &ex).is_empty());
        assert!(Excludes::new(&["a[b"]).is_err());
    }

    #[test]
    fn bookkeeping_columns_are_not_diffed() {
        let old = rows(json!({"/a": {"_ctime": 1, "sha256": "x"}, "/b": {"_dev": 1}}));
        let new = rows(json!({"/a": {"_ctime": 2, "sha256": "x"}, "/c": {"_dev": 1, "m": 1}}));
        let d = diff_rows("files", "h", 1, &old, &new, &Excludes::default());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].row, Some(json!({"m": 1})));
        assert_eq!(d[1].row, Some(json!({})));
    }

    #[test]
    fn missing_columns_and_scalars() {
        let old = rows(json!({"a": {"x": 1}, "b": 5}));
        let new = rows(json!({"a": {"y": 1}, "b": 6}));
        let d = diff_rows("s", "h", 1, &old, &new, &Excludes::default());
        let cols: Vec<(&str, &Value, &Value)> = d
            .iter()
            .map(|c| {
                (
                    c.column.as_deref().unwrap(),
                    c.old.as_ref().unwrap(),
                    c.new.as_ref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            cols,
            [
                ("y", &Value::Null, &json!(1)),
                ("x", &json!(1), &Value::Null),
                ("value", &json!(5), &json!(6))
            ]
        );
    }
}
