//! The SQLite insert loop at the C API: one prepared statement per batch,
//! values bound in place from the [`Event`] (no copies, no per-value
//! dispatch), step, reset. rusqlite's `execute` spent a quarter of the
//! write path on binding; this is the "bind/step/reset loop" of the
//! storage measurements.

use super::stmt::{Handle, Stmt};
use crate::db::short;
use crate::event::{COLUMNS, Event};

/// A prepared `INSERT INTO table (COLUMNS) VALUES (?, ...)`.
pub(crate) struct EventInsert<'c>(Stmt<'c>);

impl<'c> EventInsert<'c> {
    /// Prepares the insert into `table` on `conn`.
    pub(crate) fn prepare<H: Handle>(conn: &'c H, table: &str) -> Result<Self, String> {
        let sql = format!(
            r#"INSERT INTO "{table}" ({}) VALUES ({})"#,
            COLUMNS.join(", "),
            vec!["?"; COLUMNS.len()].join(", ")
        );
        Stmt::prepare(conn, &sql).map(Self)
    }

    /// Inserts one event. Parameter numbers follow [`COLUMNS`].
    pub(crate) fn insert(&mut self, e: &Event) -> Result<(), String> {
        let mut b = self.0.bind();
        b.int(1, Some(e.ts))
            .int(2, Some(e.received))
            .text(3, short(&e.host))
            .text(4, short(&e.process))
            .int(5, e.pid)
            .text(6, e.facility)
            .text(7, e.severity)
            .text(8, short(&e.user))
            .text(9, short(&e.source_host))
            .int(10, e.source_port)
            .text(11, short(&e.dest_host))
            .int(12, e.dest_port)
            .text(13, short(&e.protocol))
            .text(14, Some(&e.message))
            .text(15, Some(&e.raw))
            .int(16, Some(i64::from(e.parsed)))
            .text(17, Some(&e.source))
            .text(18, e.extra.as_deref());
        b.execute()
    }
}
