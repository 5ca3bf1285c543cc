//! The SQLite insert loop at the C API: one prepared statement, values bound
//! as static pointers into the [`Event`] (no copies, no per-value dispatch),
//! step, reset. rusqlite's `execute` spent a quarter of the write path on
//! binding; this is the "bind/step/reset loop" of the storage measurements.

use super::short;
use super::sqlite_stmt::RawStmt;
use crate::event::{COLUMNS, Event};

/// A prepared `INSERT INTO table (COLUMNS) VALUES (?, ...)`.
pub struct EventInsert(RawStmt);

impl EventInsert {
    /// Prepares the insert on `conn`, which must outlive the returned value
    /// (the writer declares this field before its connection, so it drops first).
    pub fn prepare(conn: &rusqlite::Connection, table: &str) -> Result<Self, String> {
        let sql = format!(
            r#"INSERT INTO "{table}" ({}) VALUES ({})"#,
            COLUMNS.join(", "),
            vec!["?"; COLUMNS.len()].join(", ")
        );
        RawStmt::prepare_on(conn, &sql).map(Self)
    }

    /// Inserts one event. Parameter numbers follow [`COLUMNS`].
    pub fn insert(&mut self, e: &Event) -> Result<(), String> {
        let s = &self.0;
        let texts = |first: i32, values: &[Option<&str>]| {
            values
                .iter()
                .zip(first..)
                .map(|(v, col)| s.bind_text(col, *v))
                .fold(0, i32::max)
        };
        // The texts borrow `e`, which outlives `execute` (it resets the statement).
        let binds = [
            s.bind_int(1, Some(e.ts)),
            s.bind_int(2, Some(e.received)),
            texts(3, &[short(&e.host), short(&e.process)]),
            s.bind_int(5, e.pid),
            texts(
                6,
                &[
                    e.facility,
                    e.severity,
                    short(&e.user),
                    short(&e.source_host),
                ],
            ),
            s.bind_int(10, e.source_port),
            texts(11, &[short(&e.dest_host)]),
            s.bind_int(12, e.dest_port),
            texts(13, &[short(&e.protocol), Some(&e.message), Some(&e.raw)]),
            s.bind_int(16, Some(i64::from(e.parsed))),
            texts(17, &[Some(&e.source), e.extra.as_deref()]),
        ]
        .into_iter()
        .find(|&rc| rc != rusqlite::ffi::SQLITE_OK)
        .unwrap_or(rusqlite::ffi::SQLITE_OK);
        self.0.execute(binds)
    }
}
