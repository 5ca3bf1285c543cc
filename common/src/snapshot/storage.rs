//! Runs and rows in the database (`snapshot_runs`, `snapshot_rows`).
//!
//! A successful run is written in one transaction with all its rows, so a
//! reader never sees half a run; a failed run is a row with status
//! `failed`, a message and no rows. Every value is a bound parameter.

use serde_json::Value;

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
    store_raw_run(db, name, host, taken, &raw, message).await
}

/// [`store_run`] of rows whose values are JSON text already. On SQLite
/// the rows go through one prepared statement on the C API
/// (`sqlite_store.rs`), on MariaDB through multi-row INSERTs.
pub async fn store_raw_run(
    db: &Database,
    name: &str,
    host: &str,
    taken: i64,
    rows: &[RawRow],
    message: Option<&str>,
) -> Result<i64, Error> {
    let err = |e: sqlx::Error| Error::db("store snapshot", name, e);
    match db {
        Database::Sqlite(d) => {
            super::sqlite_store::store_run(d.path(), name, host, taken, rows, message)
        }
        Database::Mysql(d) => {
            let insert_run = "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) \
                              VALUES (?, ?, ?, ?, ?, ?, ?)";
            let mut tx = d.pool.begin().await.map_err(err)?;
            let id = sqlx::query(insert_run)
                .bind(name)
                .bind(host)
                .bind(taken)
                .bind(STATUS_OK)
                .bind(crate::time::now_ms())
                .bind(rows.len() as i64)
                .bind(message)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .last_insert_id() as i64;
            let mut start = 0;
            while start < rows.len() {
                let mut end = start;
                let mut bytes = 0;
                while end < rows.len()
                    && end - start < MYSQL_ROWS_PER_STATEMENT
                    && (end == start || bytes < MYSQL_BYTES_PER_STATEMENT)
                {
                    bytes += rows[end].json.len() + rows[end].key.len();
                    end += 1;
                }
                let mut qb: sqlx::QueryBuilder<sqlx::MySql> = sqlx::QueryBuilder::new(
                    "INSERT INTO snapshot_rows (run_id, seq, row_key, value) ",
                );
                qb.push_values(start..end, |mut b, i| {
                    b.push_bind(id)
                        .push_bind(i as i64)
                        .push_bind(rows[i].key.as_str())
                        .push_bind(rows[i].json.as_str());
                });
                qb.build().execute(&mut *tx).await.map_err(err)?;
                start = end;
            }
            tx.commit().await.map_err(err)?;
            Ok(id)
        }
    }
}

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

/// The rows of a run, in the gatherer's order.
pub async fn rows(db: &Database, run_id: i64) -> Result<Vec<Row>, Error> {
    let sql = "SELECT row_key, value FROM snapshot_rows WHERE run_id = ? ORDER BY seq";
    let raw: Vec<(String, String)> = crate::with_pool!(db, pool => sqlx::query_as(sql)
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(|e| Error::db("read rows of snapshot run", &run_id.to_string(), e))?);
    Ok(raw
        .into_iter()
        .map(|(key, v)| {
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            Row { key, value }
        })
        .collect())
}

/// A reader of a run's rows ([`each_raw_row`]) that runs on any thread:
/// on SQLite it opens its own connection, so the caller can read the
/// previous run while it walks the file system. `None` on MariaDB.
pub fn sqlite_row_reader(db: &Database, run_id: i64) -> Option<RowReader> {
    match db {
        Database::Sqlite(d) => {
            let path = d.path().to_owned();
            Some(Box::new(move |f| {
                super::sqlite_store::each_row(&path, run_id, f)
            }))
        }
        Database::Mysql(_) => None,
    }
}

/// See [`sqlite_row_reader`].
pub type RowReader = Box<dyn FnOnce(&mut dyn FnMut(&str, &[u8])) -> Result<(), Error> + Send>;

/// Calls `f(key, JSON text as bytes)` for every row of a run, in the
/// gatherer's order, without parsing (or UTF-8 checking) the values. On
/// SQLite the texts are borrowed from the statement (no allocation per row).
pub async fn each_raw_row(
    db: &Database,
    run_id: i64,
    f: &mut dyn FnMut(&str, &[u8]),
) -> Result<(), Error> {
    match db {
        Database::Sqlite(d) => super::sqlite_store::each_row(d.path(), run_id, f),
        Database::Mysql(d) => {
            let sql = "SELECT row_key, value FROM snapshot_rows WHERE run_id = ? ORDER BY seq";
            let rows: Vec<(String, String)> = sqlx::query_as(sql)
                .bind(run_id)
                .fetch_all(&d.pool)
                .await
                .map_err(|e| Error::db("read rows of snapshot run", &run_id.to_string(), e))?;
            for (k, v) in &rows {
                f(k, v.as_bytes());
            }
            Ok(())
        }
    }
}
