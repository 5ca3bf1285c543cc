//! Snapshot rows on SQLite through rusqlite and the C API, for the big runs
//! of `files` and `suid` (100,000 rows and more): the current rows are
//! read in place (no `String` per value, no channel hop per row as
//! through sqlx), and a run's delta is stored by one prepared INSERT with
//! bind/step/reset and the texts bound in place (as the ingest writer,
//! `insert.rs`). Through a multi-row sqlx INSERT a row
//! cost ~10,000 instructions; here about a third of that.

use std::ffi::c_int;
use std::path::Path;

use super::stmt::{Handle, Stmt};
use crate::Error;
use crate::db::options::open_sqlite;
use crate::db::snapshots::{CURRENT_ROWS_SQL, LATEST_OK_SQL, NewRun};
use crate::snapshot::current::{CurrentRows, Delta, RowId};
use crate::snapshot::{RawRow, STATUS_OK};

/// Ends a stored row: `until_run = ?1` for the row `(run_id, seq) = (?2, ?3)`.
const END_ROW_SQL: &str = "UPDATE snapshot_rows SET until_run = ? WHERE run_id = ? AND seq = ?";

fn open(path: &Path) -> Result<rusqlite::Connection, Error> {
    let conn = open_sqlite(path)?;
    // A run's pages stay in memory until the commit writes each once.
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(|e| Error::db("open", &path.display().to_string(), e))?;
    Ok(conn)
}

/// The current rows of `name` on `host` (see [`super::current`]), read in
/// one read transaction so that they belong to the run read with them.
pub fn current_rows(path: &Path, name: &str, host: &str) -> Result<CurrentRows, Error> {
    let mut conn = open(path)?;
    // Pages read through a memory map: no copy into SQLite's cache (the
    // rows are copied once, into the map of current rows).
    conn.pragma_update(None, "mmap_size", 1i64 << 30)
        .and_then(|_| conn.pragma_update(None, "cache_size", -2048))
        .map_err(|e| Error::db("open", &path.display().to_string(), e))?;
    let tx = conn
        .transaction()
        .map_err(|e| Error::db("read snapshot", name, e))?;
    read_current(&tx, name, host)
}

fn read_current(conn: &rusqlite::Connection, name: &str, host: &str) -> Result<CurrentRows, Error> {
    let err = |e: rusqlite::Error| Error::db("read snapshot", name, e);
    let latest: Option<i64> = conn
        .query_row(LATEST_OK_SQL, [name, host], |r| r.get(0))
        .map_err(err)?;
    let mut current = CurrentRows::with_capacity(latest, 0);
    if latest.is_none() {
        return Ok(current);
    }
    let mut st = conn.prepare(CURRENT_ROWS_SQL).map_err(err)?;
    let mut rows = st.query([name, host]).map_err(err)?;
    while let Some(r) = rows.next().map_err(err)? {
        // The texts are read in place; values are kept as bytes (the
        // gatherers read a few fields of them, the store compares them).
        let key = r.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(err)?;
        let json = r.get_ref(1).and_then(|v| Ok(v.as_bytes()?)).map_err(err)?;
        let id = RowId {
            run_id: r.get(2).map_err(err)?,
            seq: r.get(3).map_err(err)?,
        };
        current.add(key, json, id);
    }
    Ok(current)
}

/// Stores an `ok` run and its delta from `current` in one transaction;
/// returns the run id. The transaction takes the write lock first, so no
/// other run of the series can be stored between the check of
/// `current.latest_run` and the commit.
pub fn store_run(path: &Path, run: &NewRun<'_>, mut current: CurrentRows) -> Result<i64, Error> {
    let (name, host) = (run.name, run.host);
    let err = |e: rusqlite::Error| Error::db("store snapshot", name, e);
    let mut conn = open(path)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let latest: Option<i64> = tx
        .query_row(LATEST_OK_SQL, [name, host], |r| r.get(0))
        .map_err(err)?;
    if latest != current.latest_run {
        current = read_current(&tx, name, host)?;
    }
    tx.execute(
        "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        rusqlite::params![
            name,
            host,
            run.taken,
            STATUS_OK,
            crate::time::now_ms(),
            run.rows.len() as i64,
            run.message
        ],
    )
    .map_err(err)?;
    let id = tx.last_insert_rowid();
    let delta = Delta::between(current, run.rows);
    {
        let fail = |m| Error::db("store snapshot", name, m);
        let mut many = RowInsert::prepare(&*tx, ROWS_PER_INSERT).map_err(fail)?;
        let mut one = RowInsert::prepare(&*tx, 1).map_err(fail)?;
        let mut chunks = delta.insert.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            many.insert(id, chunk).map_err(fail)?;
        }
        for row in chunks.remainder() {
            one.insert(id, std::slice::from_ref(row)).map_err(fail)?;
        }
        let mut end = tx.prepare(END_ROW_SQL).map_err(err)?;
        for r in &delta.end {
            end.execute([id, r.run_id, r.seq]).map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    Ok(id)
}

/// Rows per INSERT statement: one statement run per 64 rows instead of
/// per row (-15% instructions per row stored).
const ROWS_PER_INSERT: usize = 64;

/// A prepared `INSERT INTO snapshot_rows` of `n` rows.
struct RowInsert<'c> {
    stmt: Stmt<'c>,
    n: usize,
}

impl<'c> RowInsert<'c> {
    /// Prepares the insert on `conn`.
    fn prepare<H: Handle>(conn: &'c H, n: usize) -> Result<Self, String> {
        let sql = format!(
            "INSERT INTO snapshot_rows (run_id, seq, row_key, value) VALUES {}",
            vec!["(?, ?, ?, ?)"; n].join(", ")
        );
        Ok(Self {
            stmt: Stmt::prepare(conn, &sql)?,
            n,
        })
    }

    /// Inserts `rows` (exactly `n`, each with its `seq`) for run `run_id`.
    fn insert(&mut self, run_id: i64, rows: &[(i64, &RawRow)]) -> Result<(), String> {
        debug_assert_eq!(rows.len(), self.n);
        let mut b = self.stmt.bind();
        for (i, (seq, row)) in rows.iter().take(self.n).enumerate() {
            let col = 4 * i as c_int;
            b.int(col + 1, Some(run_id))
                .int(col + 2, Some(*seq))
                .text(col + 3, Some(&row.key))
                .text(col + 4, Some(&row.json));
        }
        b.execute()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0006 turns rows stored one copy per run into intervals
    /// that read back exactly as before, failed runs and other series aside.
    #[test]
    fn migration_0006_keeps_old_runs_readable() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let (before, after): (Vec<_>, Vec<_>) = files
            .iter()
            .partition(|p| p.file_name().unwrap().to_string_lossy().as_ref() < "0006");
        for f in before {
            conn.execute_batch(&std::fs::read_to_string(f).unwrap())
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO snapshot_runs (id, name, host, taken, status) VALUES
               (1, 'people', 'h', 0, 'ok'), (2, 'people', 'h', 0, 'failed'),
               (3, 'people', 'h', 0, 'ok'), (4, 'other', 'h', 0, 'ok'), (5, 'people', 'h2', 0, 'ok');
             INSERT INTO snapshot_rows (run_id, seq, row_key, value) VALUES
               (1, 0, 'a', '1'), (1, 1, 'b', '2'), (3, 0, 'a', '1'), (3, 1, 'c', '3'),
               (4, 0, 'z', '0'), (5, 0, 'q', '0');",
        )
        .unwrap();
        for f in after {
            conn.execute_batch(&std::fs::read_to_string(f).unwrap())
                .unwrap();
        }
        let rows_of = |name: &str, host: &str, run: i64| -> Vec<String> {
            let sql = crate::db::snapshots::RUN_ROWS_SQL;
            let mut st = conn.prepare(sql).unwrap();
            st.query_map(rusqlite::params![name, host, run, run], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(rows_of("people", "h", 1), ["a", "b"]);
        assert_eq!(rows_of("people", "h", 3), ["a", "c"]);
        assert_eq!(rows_of("other", "h", 4), ["z"]);
        assert_eq!(rows_of("people", "h2", 5), ["q"]);
        let current = read_current(&conn, "people", "h").unwrap();
        assert_eq!(current.latest_run, Some(3));
        let mut keys: Vec<&str> = current.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "c"]);
    }
}
