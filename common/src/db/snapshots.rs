//! Snapshot runs and rows in the database (`snapshot_runs`, `snapshot_rows`).
//!
//! A successful run is written in one transaction with its delta (see
//! [`crate::snapshot::current`]: rows are stored once per value, with the
//! run that first had them and the run that ended them), so a reader never
//! sees half a run; a failed run is a row with status `failed`, a message
//! and no rows. Stores of one name and host are serialized (SQLite: the
//! write lock; MariaDB: a named lock), and if another run was stored since
//! the current rows were read, they are read again first. The rows of a big
//! run go through one prepared statement at the C API on SQLite
//! (`sqlite/snapshots.rs`) and through multi-row INSERTs on MariaDB
//! (`mysql/snapshots.rs`).

use serde_json::Value;

use super::Database;
use super::sql::{self, Sql};
use crate::Error;
use crate::snapshot::current::CurrentRows;
use crate::snapshot::{RawRow, Row, Run, STATUS_FAILED, STATUS_OK};

/// The latest successful run of a name and host: `?1` name, `?2` host.
pub(crate) const LATEST_OK_SQL: &str =
    "SELECT MAX(id) AS latest FROM snapshot_runs WHERE name = ? AND host = ? AND status = 'ok'";

/// The current rows of a name and host: key, value, run_id, seq. A row's
/// run may be `pruned` (removed by retention but holding rows later runs
/// read, see [`super::retention`]).
pub(crate) const CURRENT_ROWS_SQL: &str = "SELECT r.row_key, r.value, r.run_id, r.seq \
     FROM snapshot_runs u JOIN snapshot_rows r ON r.run_id = u.id \
     WHERE u.name = ? AND u.host = ? AND u.status IN ('ok', 'pruned') AND r.until_run IS NULL";

/// The rows of run `?3` (of name `?1` on host `?2`): stored by it or an
/// earlier run of the series and not ended by `?3` (`?4`) or before.
pub(crate) const RUN_ROWS_SQL: &str = "SELECT r.row_key, r.value \
     FROM snapshot_runs u JOIN snapshot_rows r ON r.run_id = u.id \
     WHERE u.name = ? AND u.host = ? AND u.status IN ('ok', 'pruned') AND u.id <= ? \
     AND (r.until_run IS NULL OR r.until_run > ?) ORDER BY r.run_id, r.seq";

/// The run's columns, as [`Run`] reads them by name.
const RUN_COLUMNS: &str = "SELECT id, name, host, taken, status, finished, row_count, message \
     FROM snapshot_runs";

/// A successful run to store: its series, start (UTC epoch ms), rows as
/// JSON text (keys unique) and warnings.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub taken: i64,
    pub rows: &'a [RawRow],
    pub message: Option<&'a str>,
}

/// Stores a successful run with its rows; returns the run id.
/// Keys must be unique (see [`crate::snapshot::dedupe_keys`]).
pub async fn store_run(
    db: &Database,
    name: &str,
    host: &str,
    taken: i64,
    rows: &[Row],
    message: Option<&str>,
) -> Result<i64, Error> {
    let raw: Vec<RawRow> = rows.iter().cloned().map(RawRow::from_row).collect();
    let current = current_rows(db, name, host).await?;
    let run = NewRun {
        name,
        host,
        taken,
        rows: &raw,
        message,
    };
    store_raw_run(db, &run, current).await
}

/// [`store_run`] of rows whose values are JSON text already, given the
/// series' rows as read before ([`current_rows`]): only the delta is
/// written (see [`crate::snapshot::current::Delta`]).
pub async fn store_raw_run(
    db: &Database,
    run: &NewRun<'_>,
    current: CurrentRows,
) -> Result<i64, Error> {
    match db {
        Database::Sqlite(d) => super::sqlite::snapshots::store_run(d.path(), run, current),
        Database::Mysql(d) => super::mysql::snapshots::store_run(&d.pool, run, current).await,
    }
}

/// The rows valid for the latest successful run of `name` on `host`
/// (none before the first run), for [`store_raw_run`].
pub async fn current_rows(db: &Database, name: &str, host: &str) -> Result<CurrentRows, Error> {
    match db {
        Database::Sqlite(d) => super::sqlite::snapshots::current_rows(d.path(), name, host),
        Database::Mysql(d) => super::mysql::snapshots::current_rows(&d.pool, name, host).await,
    }
}

/// A reader of [`current_rows`] that runs on any thread: on SQLite it opens
/// its own connection, so the caller can read while it walks the file
/// system. `None` on MariaDB.
pub fn sqlite_current_reader(db: &Database, name: &str, host: &str) -> Option<CurrentReader> {
    match db {
        Database::Sqlite(d) => {
            let (path, name, host) = (d.path().to_owned(), name.to_owned(), host.to_owned());
            Some(Box::new(move || {
                super::sqlite::snapshots::current_rows(&path, &name, &host)
            }))
        }
        Database::Mysql(_) => None,
    }
}

/// See [`sqlite_current_reader`].
pub type CurrentReader = Box<dyn FnOnce() -> Result<CurrentRows, Error> + Send>;

/// Records a run whose gatherer failed (no rows); returns its id.
pub async fn store_failed(
    db: &Database,
    name: &str,
    host: &str,
    taken: i64,
    message: &str,
) -> Result<i64, Error> {
    let mut q = db.sql(
        "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) ",
    );
    q.values([()], |()| {
        [
            name.into(),
            host.into(),
            taken.into(),
            STATUS_FAILED.into(),
            crate::time::now_ms().into(),
            0i64.into(),
            message.into(),
        ]
    });
    let done = db
        .execute(&q)
        .await
        .map_err(|e| Error::db("store snapshot", name, e))?;
    Ok(done.last_id)
}

/// Runs of the statement `q` (which selects [`RUN_COLUMNS`]).
async fn runs(db: &Database, q: &Sql<'_>, what: &str) -> Result<Vec<Run>, Error> {
    db.fetch_all(q)
        .await
        .map_err(|e| Error::db("read snapshot runs of", what, e))
}

/// The run with this id, whatever its status.
pub async fn run(db: &Database, id: i64) -> Result<Option<Run>, Error> {
    let mut q = db.sql(RUN_COLUMNS);
    q.and().push("id = ").bind(id);
    Ok(runs(db, &q, &id.to_string()).await?.pop())
}

/// The latest successful run of `name` on each host, newest first.
pub async fn latest_per_host(db: &Database, name: &str) -> Result<Vec<Run>, Error> {
    let mut q = db.sql(RUN_COLUMNS);
    q.and()
        .push("id IN (SELECT MAX(id) FROM snapshot_runs WHERE name = ")
        .bind(name)
        .push(" AND status = ")
        .bind(STATUS_OK)
        .push(" GROUP BY host)");
    q.push(" ORDER BY id DESC");
    runs(db, &q, name).await
}

/// The latest successful run of `name` on `host`.
pub async fn latest_ok(db: &Database, name: &str, host: &str) -> Result<Option<Run>, Error> {
    let mut q = db.sql(RUN_COLUMNS);
    q.and().push("name = ").bind(name);
    q.and().push("host = ").bind(host);
    q.and().push("status = ").bind(STATUS_OK);
    q.push(" ORDER BY id DESC LIMIT 1");
    Ok(runs(db, &q, name).await?.pop())
}

/// The successful run of the same name and host just before `run`.
pub async fn previous_ok(db: &Database, run: &Run) -> Result<Option<Run>, Error> {
    let mut q = db.sql(RUN_COLUMNS);
    q.and().push("name = ").bind(&run.name);
    q.and().push("host = ").bind(&run.host);
    q.and().push("status = ").bind(STATUS_OK);
    q.and().push("id < ").bind(run.id);
    q.push(" ORDER BY id DESC LIMIT 1");
    Ok(runs(db, &q, &run.name).await?.pop())
}

/// Every run (any status) whose `taken` is in `[from, to)`, oldest first.
pub async fn runs_between(db: &Database, from: i64, to: i64) -> Result<Vec<Run>, Error> {
    let mut q = db.sql(RUN_COLUMNS);
    q.and().push("taken >= ").bind(from);
    q.and().push("taken < ").bind(to);
    q.push(" ORDER BY id");
    runs(db, &q, "the period").await
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    row_key: String,
    value: String,
}

/// The rows of `run`: none for a failed run; in the order they were
/// stored (rows unchanged since an earlier run first, in that run's order).
pub async fn rows(db: &Database, run: &Run) -> Result<Vec<Row>, Error> {
    if run.status != STATUS_OK {
        return Ok(Vec::new());
    }
    let q = Sql::with_args(
        db.backend(),
        RUN_ROWS_SQL,
        [
            sql::Value::from(run.name.as_str()),
            run.host.as_str().into(),
            run.id.into(),
            run.id.into(),
        ],
    );
    let raw: Vec<StoredRow> = db
        .fetch_all(&q)
        .await
        .map_err(|e| Error::db("read rows of snapshot run", &run.id.to_string(), e))?;
    Ok(raw
        .into_iter()
        .map(|r| {
            let value = serde_json::from_str(&r.value).unwrap_or(Value::String(r.value));
            Row {
                key: r.row_key,
                value,
            }
        })
        .collect())
}
