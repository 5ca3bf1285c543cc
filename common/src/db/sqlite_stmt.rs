//! A prepared statement at the SQLite C API, shared by the fast paths that
//! bypass rusqlite/sqlx per-value work: the ingest insert
//! (`sqlite_insert.rs`), snapshot rows (`snapshot/sqlite_store.rs`) and
//! siemquery's reads (`sqlite_read.rs`). It owns the prepare/finalize pair
//! and the error text; texts are bound as static pointers, read in place.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use rusqlite::ffi;

/// A prepared statement, finalized on drop.
pub(crate) struct RawStmt {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
}

impl RawStmt {
    /// Prepares `sql` on `db`.
    ///
    /// # Safety
    /// `db` is a valid connection handle that outlives the returned value
    /// and is used by one thread at a time.
    pub(crate) unsafe fn prepare(db: *mut ffi::sqlite3, sql: &str) -> Result<Self, String> {
        let len = c_int::try_from(sql.len()).map_err(|_| "statement too long".to_owned())?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: valid handle (caller), SQL buffer with its exact length, out-pointer.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                sql.as_ptr().cast(),
                len,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(stmt) {
            Some(stmt) if rc == ffi::SQLITE_OK => Ok(Self { stmt, db }),
            // SAFETY: valid handle.
            _ => Err(unsafe { errmsg(db) }),
        }
    }

    /// Prepares `sql` on a rusqlite connection that outlives the statement.
    pub(crate) fn prepare_on(conn: &rusqlite::Connection, sql: &str) -> Result<Self, String> {
        // SAFETY: the handle is valid while `conn` lives, and the callers keep
        // the statement in a struct field declared (so dropped) before `conn`.
        unsafe { Self::prepare(conn.handle(), sql) }
    }

    /// The raw statement, for column access.
    pub(crate) fn as_ptr(&self) -> *mut ffi::sqlite3_stmt {
        self.stmt.as_ptr()
    }

    /// The connection's last error message.
    pub(crate) fn errmsg(&self) -> String {
        // SAFETY: valid handle while the statement lives.
        unsafe { errmsg(self.db) }
    }

    /// Binds an integer or NULL to parameter `col` (1-based); returns SQLite's code.
    pub(crate) fn bind_int(&self, col: c_int, v: Option<i64>) -> c_int {
        let s = self.as_ptr();
        // SAFETY: valid statement; SQLite checks the index.
        unsafe {
            match v {
                Some(v) => ffi::sqlite3_bind_int64(s, col, v),
                None => ffi::sqlite3_bind_null(s, col),
            }
        }
    }

    /// Binds a text or NULL to parameter `col` as a static pointer: the text
    /// must stay alive and unchanged until the statement is reset or rebound.
    pub(crate) fn bind_text(&self, col: c_int, v: Option<&str>) -> c_int {
        let s = self.as_ptr();
        // SAFETY: valid statement; SQLite checks the index; the lifetime of
        // the text is the caller's contract above (SQLITE_STATIC).
        unsafe {
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
        }
    }

    /// Runs a statement that returns no rows (after `binds` bound every
    /// parameter, `SQLITE_OK` or the first error code), then resets it so the
    /// bound texts are no longer read.
    pub(crate) fn execute(&mut self, binds: c_int) -> Result<(), String> {
        let s = self.as_ptr();
        let step = if binds == ffi::SQLITE_OK {
            // SAFETY: valid statement with every parameter bound.
            unsafe { ffi::sqlite3_step(s) }
        } else {
            ffi::SQLITE_ERROR
        };
        let result = if step == ffi::SQLITE_DONE {
            Ok(())
        } else {
            Err(self.errmsg())
        };
        // SAFETY: valid statement.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
        result
    }
}

impl Drop for RawStmt {
    fn drop(&mut self) {
        // SAFETY: prepared by us, finalized once, before its connection closes.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

// SAFETY: a statement is used by the one thread that owns its writer or
// reader at a time; rusqlite and sqlx open connections in serialized mode.
unsafe impl Send for RawStmt {}

/// The last error message of connection `db`.
///
/// # Safety
/// `db` is a valid connection handle.
unsafe fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: valid handle (caller); SQLite returns a NUL-terminated string it owns.
    unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned()
}
