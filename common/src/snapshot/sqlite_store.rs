//! Snapshot rows on SQLite through rusqlite and the C API, for the big runs
//! of `files` and `suid` (100,000 rows and more): the previous run's rows
//! are read in place (no `String` per value, no channel hop per row as
//! through sqlx), and a run's rows are stored by one prepared INSERT with
//! bind/step/reset and the texts bound as static pointers (as the ingest
//! writer, `db/sqlite_insert.rs`). Through a multi-row sqlx INSERT a row
//! cost ~10,000 instructions; here about a third of that.

use std::ffi::c_int;
use std::path::Path;
use std::time::Duration;

use rusqlite::ffi;

use super::{RawRow, STATUS_OK};
use crate::Error;
use crate::db::sqlite_stmt::RawStmt;

fn open(path: &Path) -> Result<rusqlite::Connection, Error> {
    let what = path.display().to_string();
    let conn = rusqlite::Connection::open(path).map_err(|e| Error::db("open", &what, e))?;
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
        // A run's pages stay in memory until the commit writes each once.
        .and_then(|_| conn.pragma_update(None, "cache_size", -65536))
        .map_err(|e| Error::db("open", &what, e))?;
    Ok(conn)
}

/// Calls `f(key, json)` for every row of run `run_id`, in `seq` order.
/// The JSON is passed as bytes, not checked for UTF-8 (the caller reads a
/// few fields of it).
pub fn each_row(path: &Path, run_id: i64, f: &mut dyn FnMut(&str, &[u8])) -> Result<(), Error> {
    let err = |e: rusqlite::Error| Error::db("read rows of snapshot run", &run_id.to_string(), e);
    let conn = open(path)?;
    let mut st = conn
        .prepare("SELECT row_key, value FROM snapshot_rows WHERE run_id = ? ORDER BY seq")
        .map_err(err)?;
    let mut rows = st.query([run_id]).map_err(err)?;
    while let Some(r) = rows.next().map_err(err)? {
        let (Ok(key), Ok(value)) = (
            r.get_ref(0).and_then(|v| Ok(v.as_str()?)),
            r.get_ref(1).and_then(|v| Ok(v.as_bytes()?)),
        ) else {
            continue;
        };
        f(key, value);
    }
    Ok(())
}

/// Stores an `ok` run and its rows in one transaction; returns the run id.
pub fn store_run(
    path: &Path,
    name: &str,
    host: &str,
    taken: i64,
    rows: &[RawRow],
    message: Option<&str>,
) -> Result<i64, Error> {
    let err = |e: rusqlite::Error| Error::db("store snapshot", name, e);
    let mut conn = open(path)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute(
        "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        rusqlite::params![
            name,
            host,
            taken,
            STATUS_OK,
            crate::time::now_ms(),
            rows.len() as i64,
            message
        ],
    )
    .map_err(err)?;
    let id = tx.last_insert_rowid();
    {
        let fail = |m| Error::db("store snapshot", name, m);
        let mut many = RowInsert::prepare(&tx, ROWS_PER_INSERT).map_err(fail)?;
        let mut one = RowInsert::prepare(&tx, 1).map_err(fail)?;
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        let mut seq = 0;
        for chunk in &mut chunks {
            many.insert(id, seq, chunk).map_err(fail)?;
            seq += chunk.len() as i64;
        }
        for row in chunks.remainder() {
            one.insert(id, seq, std::slice::from_ref(row))
                .map_err(fail)?;
            seq += 1;
        }
    }
    tx.commit().map_err(err)?;
    Ok(id)
}

/// Rows per INSERT statement: one statement run per 64 rows instead of
/// per row (-15% instructions per row stored).
const ROWS_PER_INSERT: usize = 64;

/// A prepared `INSERT INTO snapshot_rows` of `n` rows.
struct RowInsert {
    stmt: RawStmt,
    n: usize,
}

impl RowInsert {
    /// Prepares the insert on `conn`, which outlives the returned value.
    fn prepare(conn: &rusqlite::Connection, n: usize) -> Result<Self, String> {
        let sql = format!(
            "INSERT INTO snapshot_rows (run_id, seq, row_key, value) VALUES {}",
            vec!["(?, ?, ?, ?)"; n].join(", ")
        );
        Ok(Self {
            stmt: RawStmt::prepare_on(conn, &sql)?,
            n,
        })
    }

    /// Inserts `rows` (exactly `n`) as seq `first`, `first + 1`, ...
    fn insert(&mut self, run_id: i64, first: i64, rows: &[RawRow]) -> Result<(), String> {
        debug_assert_eq!(rows.len(), self.n);
        let s = &self.stmt;
        let mut rc = ffi::SQLITE_OK;
        for (i, row) in rows.iter().take(self.n).enumerate() {
            let col = 4 * i as c_int;
            // The texts borrow `rows`, alive until `execute` resets the statement.
            rc |= s.bind_int(col + 1, Some(run_id))
                | s.bind_int(col + 2, Some(first + i as i64))
                | s.bind_text(col + 3, Some(&row.key))
                | s.bind_text(col + 4, Some(&row.json));
        }
        self.stmt.execute(rc)
    }
}
