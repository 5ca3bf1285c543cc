//! The SQLite insert loop at the C API: one prepared statement, values bound
//! as static pointers into the [`Event`] (no copies, no per-value dispatch),
//! step, reset. rusqlite's `execute` spent a quarter of the write path on
//! binding; this is the "bind/step/reset loop" of the storage measurements.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use rusqlite::ffi;

use super::short;
use crate::event::{COLUMNS, Event};

/// A prepared `INSERT INTO table (COLUMNS) VALUES (?, ...)`.
pub struct EventInsert {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
}

impl EventInsert {
    /// Prepares the insert on `conn`, which must outlive the returned value
    /// (the writer declares this field before its connection, so it drops first).
    pub fn prepare(conn: &rusqlite::Connection, table: &str) -> Result<Self, String> {
        let sql = format!(
            r#"INSERT INTO "{table}" ({}) VALUES ({})"#,
            COLUMNS.join(", "),
            vec!["?"; COLUMNS.len()].join(", ")
        );
        // SAFETY: the handle is valid while `conn` lives; we only prepare on it.
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        // SAFETY: valid db handle, SQL buffer with its exact length, out-pointer.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                sql.as_ptr().cast(),
                sql.len() as c_int,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(stmt) {
            Some(stmt) if rc == ffi::SQLITE_OK => Ok(Self { stmt, db }),
            _ => Err(errmsg(db)),
        }
    }

    /// Inserts one event. Parameter numbers follow [`COLUMNS`].
    pub fn insert(&mut self, e: &Event) -> Result<(), String> {
        let rc = [
            self.bind_int(1, Some(e.ts)),
            self.bind_int(2, Some(e.received)),
            self.bind_texts(3, &[short(&e.host), short(&e.process)]),
            self.bind_int(5, e.pid),
            self.bind_texts(
                6,
                &[
                    e.facility,
                    e.severity,
                    short(&e.user),
                    short(&e.source_host),
                ],
            ),
            self.bind_int(10, e.source_port),
            self.bind_texts(11, &[short(&e.dest_host)]),
            self.bind_int(12, e.dest_port),
            self.bind_texts(13, &[short(&e.protocol), Some(&e.message), Some(&e.raw)]),
            self.bind_int(16, Some(i64::from(e.parsed))),
            self.bind_texts(17, &[Some(&e.source), e.extra.as_deref()]),
        ];
        let s = self.stmt.as_ptr();
        let step = if rc.iter().all(|&r| r == ffi::SQLITE_OK) {
            // SAFETY: valid statement with every parameter bound; the bound
            // pointers borrow `e` and stay valid until the reset below.
            unsafe { ffi::sqlite3_step(s) }
        } else {
            ffi::SQLITE_ERROR
        };
        let result = if step == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(errmsg(self.db))
        };
        // SAFETY: valid statement; after this SQLite no longer reads the pointers.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
        result
    }

    fn bind_int(&self, col: c_int, v: Option<i64>) -> c_int {
        let s = self.stmt.as_ptr();
        // SAFETY: valid statement, index within COLUMNS.len().
        unsafe {
            match v {
                Some(v) => ffi::sqlite3_bind_int64(s, col, v),
                None => ffi::sqlite3_bind_null(s, col),
            }
        }
    }

    /// Binds consecutive text parameters from `first` on, as static pointers.
    fn bind_texts(&self, first: c_int, values: &[Option<&str>]) -> c_int {
        let s = self.stmt.as_ptr();
        let mut rc = ffi::SQLITE_OK;
        for (i, v) in values.iter().enumerate() {
            let col = first + i as c_int;
            // SAFETY: valid statement and index; the text outlives the step
            // (SQLITE_STATIC: SQLite reads it in place until the reset).
            let r = unsafe {
                match v {
                    Some(t) => ffi::sqlite3_bind_text64(
                        s,
                        col,
                        t.as_ptr().cast(),
                        t.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    None => ffi::sqlite3_bind_null(s, col),
                }
            };
            rc = rc.max(r);
        }
        rc
    }
}

impl Drop for EventInsert {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by us and is finalized once.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

// SAFETY: the statement is only used from the thread that owns the writer;
// SQLite connections are opened in serialized (full mutex) mode by rusqlite.
unsafe impl Send for EventInsert {}

fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: valid handle; SQLite returns a NUL-terminated message it owns.
    unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned()
}
