//! Runs and rows in the database (`snapshot_runs`, `snapshot_rows`).
//!
//! A successful run is written in one transaction with its delta (see
//! [`super::current`]: rows are stored once per value, with the run that
//! first had them and the run that ended them), so a reader never sees half
//! a run; a failed run is a row with status `failed`, a message and no
//! rows. Every value is a bound parameter.

use serde_json::Value;

use super::current::{CurrentRows, Delta, RowId};
use super::{RawRow, Row, Run, STATUS_FAILED, STATUS_OK};
use crate::Error;
use crate::db::Database;

/// Rows per INSERT on MariaDB (4 binds each, under its 65,535 limit).
const MYSQL_ROWS_PER_STATEMENT: usize = 1000;
/// Bytes of values per INSERT on MariaDB, under a 16 MiB max_allowed_packet.
const MYSQL_BYTES_PER_STATEMENT: usize = 4 << 20;

const RUN_COLUMNS: &str = "id, name, host, taken, status, finished, row_count, message";

type RunTuple = (
    i64,
    String,
    String,
    i64,
    String,
    Option<i64>,
    i64,
    Option<String>,
);

fn to_run(t: RunTuple) -> Run {
    Run {
        id: t.0,
        name: t.1,
        host: t.2,
        taken: t.3,
        status: t.4,
        finished: t.5,
        row_count: t.6,
        message: t.7,
    }
}

/// The latest successful run of a name and host.
pub(super) const LATEST_OK_SQL: &str =
    "SELECT MAX(id) FROM snapshot_runs WHERE name = ? AND host = ? AND status = 'ok'";

/// The current rows of a name and host: key, value, run_id, seq.
pub(super) const CURRENT_ROWS_SQL: &str = "SELECT r.row_key, r.value, r.run_id, r.seq \
     FROM snapshot_runs u JOIN snapshot_rows r ON r.run_id = u.id \
     WHERE u.name = ? AND u.host = ? AND u.status = 'ok' AND r.until_run IS NULL";

/// The rows of run `?3` (of name `?1` on host `?2`): stored by it or an
/// earlier run of the series and not ended by `?3` or before.
pub(super) const RUN_ROWS_SQL: &str = "SELECT r.row_key, r.value \
     FROM snapshot_runs u JOIN snapshot_rows r ON r.run_id = u.id \
     WHERE u.name = ? AND u.host = ? AND u.status = 'ok' AND u.id <= ? \
     AND (r.until_run IS NULL OR r.until_run > ?) ORDER BY r.run_id, r.seq";

/// Ends a stored row: `until_run = ?1` for the row `(run_id, seq) = (?2, ?3)`.
pub(super) const END_ROW_SQL: &str =
    "UPDATE snapshot_rows SET until_run = ? WHERE run_id = ? AND seq = ?";

/// Seconds a MariaDB store waits for another store of the same series.
const MYSQL_LOCK_WAIT_SECS: i64 = 60;

/// Stores a successful run with its rows; returns the run id.
/// Keys must be unique (see [`super::dedupe_keys`]).
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

/// [`store_run`] of rows whose values are JSON text already, given the
/// series' rows as read before ([`current_rows`]): only the delta is
/// written (see [`Delta`]). Stores of one name and host are serialized
/// (SQLite: the write lock; MariaDB: a named lock), and if another run was
/// stored since `current` was read, the current rows are read again first.
/// On SQLite the rows go through one prepared statement on the C API
/// (`sqlite_store.rs`), on MariaDB through multi-row INSERTs.
pub async fn store_raw_run(
    db: &Database,
    run: &NewRun<'_>,
    current: CurrentRows,
) -> Result<i64, Error> {
    let (name, host) = (run.name, run.host);
    let err = |e: sqlx::Error| Error::db("store snapshot", name, e);
    match db {
        Database::Sqlite(d) => super::sqlite_store::store_run(d.path(), run, current),
        Database::Mysql(d) => {
            let mut conn = d.pool.acquire().await.map_err(err)?;
            let lock = series_lock(name, host);
            let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
                .bind(&lock)
                .bind(MYSQL_LOCK_WAIT_SECS)
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
            if locked != Some(1) {
                return Err(Error::db(
                    "store snapshot",
                    name,
                    format!(
                        "another run of it on {host} held its lock for {MYSQL_LOCK_WAIT_SECS} s"
                    ),
                ));
            }
            let stored = store_mysql(&mut conn, run, current).await;
            let released = sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(&lock)
                .execute(&mut *conn)
                .await;
            if released.is_err() {
                // Never hand a connection that may still hold the lock back to the pool.
                drop(conn.detach());
            }
            stored.map_err(err)
        }
    }
}

/// Name of the MariaDB lock of a series (GET_LOCK names are at most 64
/// characters; names and hosts can be longer).
fn series_lock(name: &str, host: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update([0])
        .chain_update(host)
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("siemstress-snapshot-{hex}")
}

async fn store_mysql(
    conn: &mut sqlx::MySqlConnection,
    run: &NewRun<'_>,
    mut current: CurrentRows,
) -> Result<i64, sqlx::Error> {
    use sqlx::Connection;
    let NewRun {
        name,
        host,
        taken,
        rows,
        message,
    } = *run;
    let mut tx = conn.begin().await?;
    let latest: Option<i64> = sqlx::query_scalar(LATEST_OK_SQL)
        .bind(name)
        .bind(host)
        .fetch_one(&mut *tx)
        .await?;
    if latest != current.latest_run {
        current = read_current_mysql(&mut tx, name, host).await?;
    }
    let id = sqlx::query(
        "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(host)
    .bind(taken)
    .bind(STATUS_OK)
    .bind(crate::time::now_ms())
    .bind(rows.len() as i64)
    .bind(message)
    .execute(&mut *tx)
    .await?
    .last_insert_id() as i64;
    let delta = Delta::between(current, rows);
    let mut start = 0;
    while start < delta.insert.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < delta.insert.len()
            && end - start < MYSQL_ROWS_PER_STATEMENT
            && (end == start || bytes < MYSQL_BYTES_PER_STATEMENT)
        {
            let row = delta.insert[end].1;
            bytes += row.json.len() + row.key.len();
            end += 1;
        }
        let mut qb: sqlx::QueryBuilder<sqlx::MySql> =
            sqlx::QueryBuilder::new("INSERT INTO snapshot_rows (run_id, seq, row_key, value) ");
        qb.push_values(&delta.insert[start..end], |mut b, (seq, row)| {
            b.push_bind(id)
                .push_bind(*seq)
                .push_bind(row.key.as_str())
                .push_bind(row.json.as_str());
        });
        qb.build().execute(&mut *tx).await?;
        start = end;
    }
    for ended in delta.end.chunk_by(|a, b| a.run_id == b.run_id) {
        for chunk in ended.chunks(MYSQL_ROWS_PER_STATEMENT) {
            let mut qb: sqlx::QueryBuilder<sqlx::MySql> =
                sqlx::QueryBuilder::new("UPDATE snapshot_rows SET until_run = ");
            qb.push_bind(id)
                .push(" WHERE run_id = ")
                .push_bind(chunk[0].run_id)
                .push(" AND seq IN (");
            let mut seqs = qb.separated(", ");
            for r in chunk {
                seqs.push_bind(r.seq);
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(id)
}

/// The current rows of a series on MariaDB.
async fn read_current_mysql(
    conn: &mut sqlx::MySqlConnection,
    name: &str,
    host: &str,
) -> Result<CurrentRows, sqlx::Error> {
    let latest: Option<i64> = sqlx::query_scalar(LATEST_OK_SQL)
        .bind(name)
        .bind(host)
        .fetch_one(&mut *conn)
        .await?;
    let stored: Vec<(String, String, i64, i64)> = sqlx::query_as(CURRENT_ROWS_SQL)
        .bind(name)
        .bind(host)
        .fetch_all(&mut *conn)
        .await?;
    let mut current = CurrentRows::with_capacity(latest, stored.len());
    for (key, json, run_id, seq) in &stored {
        current.add(
            key,
            json.as_bytes(),
            RowId {
                run_id: *run_id,
                seq: *seq,
            },
        );
    }
    Ok(current)
}

/// The rows valid for the latest successful run of `name` on `host`
/// (none before the first run), for [`store_raw_run`].
pub async fn current_rows(db: &Database, name: &str, host: &str) -> Result<CurrentRows, Error> {
    match db {
        Database::Sqlite(d) => super::sqlite_store::current_rows(d.path(), name, host),
        Database::Mysql(d) => {
            let mut conn = d
                .pool
                .acquire()
                .await
                .map_err(|e| Error::db("read snapshot", name, e))?;
            read_current_mysql(&mut conn, name, host)
                .await
                .map_err(|e| Error::db("read snapshot", name, e))
        }
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
                super::sqlite_store::current_rows(&path, &name, &host)
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
    let err = |e: sqlx::Error| Error::db("store snapshot", name, e);
    let sql = "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) \
               VALUES (?, ?, ?, ?, ?, 0, ?)";
    let now = crate::time::now_ms();
    Ok(match db {
        Database::Sqlite(d) => sqlx::query(sql)
            .bind(name)
            .bind(host)
            .bind(taken)
            .bind(STATUS_FAILED)
            .bind(now)
            .bind(message)
            .execute(&d.pool)
            .await
            .map_err(err)?
            .last_insert_rowid(),
        Database::Mysql(d) => sqlx::query(sql)
            .bind(name)
            .bind(host)
            .bind(taken)
            .bind(STATUS_FAILED)
            .bind(now)
            .bind(message)
            .execute(&d.pool)
            .await
            .map_err(err)?
            .last_insert_id() as i64,
    })
}

/// The run with this id, whatever its status.
pub async fn run(db: &Database, id: i64) -> Result<Option<Run>, Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM snapshot_runs WHERE id = ?");
    let row: Option<RunTuple> = crate::with_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::db("read snapshot run", &id.to_string(), e))?);
    Ok(row.map(to_run))
}

/// The latest successful run of `name` on each host, newest first.
pub async fn latest_per_host(db: &Database, name: &str) -> Result<Vec<Run>, Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM snapshot_runs WHERE id IN \
         (SELECT MAX(id) FROM snapshot_runs WHERE name = ? AND status = ? GROUP BY host) \
         ORDER BY id DESC"
    );
    let rows: Vec<RunTuple> = crate::with_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(STATUS_OK)
        .fetch_all(pool)
        .await
        .map_err(|e| Error::db("read snapshot runs of", name, e))?);
    Ok(rows.into_iter().map(to_run).collect())
}

/// The latest successful run of `name` on `host`.
pub async fn latest_ok(db: &Database, name: &str, host: &str) -> Result<Option<Run>, Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM snapshot_runs WHERE name = ? AND host = ? AND status = ? \
         ORDER BY id DESC LIMIT 1"
    );
    let row: Option<RunTuple> = crate::with_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(host)
        .bind(STATUS_OK)
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::db("read snapshot runs of", name, e))?);
    Ok(row.map(to_run))
}

/// The successful run of the same name and host just before `run`.
pub async fn previous_ok(db: &Database, run: &Run) -> Result<Option<Run>, Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM snapshot_runs WHERE name = ? AND host = ? AND status = ? \
         AND id < ? ORDER BY id DESC LIMIT 1"
    );
    let row: Option<RunTuple> = crate::with_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&run.name)
        .bind(&run.host)
        .bind(STATUS_OK)
        .bind(run.id)
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::db("read snapshot runs of", &run.name, e))?);
    Ok(row.map(to_run))
}

/// Every run (any status) whose `taken` is in `[from, to)`, oldest first.
pub async fn runs_between(db: &Database, from: i64, to: i64) -> Result<Vec<Run>, Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM snapshot_runs WHERE taken >= ? AND taken < ? ORDER BY id"
    );
    let rows: Vec<RunTuple> = crate::with_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
        .map_err(|e| Error::db("read", "snapshot runs", e))?);
    Ok(rows.into_iter().map(to_run).collect())
}

/// The rows of `run`: none for a failed run; in the order they were
/// stored (rows unchanged since an earlier run first, in that run's order).
pub async fn rows(db: &Database, run: &Run) -> Result<Vec<Row>, Error> {
    if run.status != STATUS_OK {
        return Ok(Vec::new());
    }
    let raw: Vec<(String, String)> = crate::with_pool!(db, pool => sqlx::query_as(RUN_ROWS_SQL)
        .bind(&run.name)
        .bind(&run.host)
        .bind(run.id)
        .bind(run.id)
        .fetch_all(pool)
        .await
        .map_err(|e| Error::db("read rows of snapshot run", &run.id.to_string(), e))?);
    Ok(raw
        .into_iter()
        .map(|(key, v)| {
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            Row { key, value }
        })
        .collect())
}
