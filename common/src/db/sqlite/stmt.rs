//! A prepared statement at the SQLite C API, for the fast paths that bypass
//! rusqlite's and sqlx's per-value work: the ingest insert (`insert.rs`),
//! snapshot rows (`snapshots.rs`) and siemquery's reads (`search.rs`). Texts
//! are bound without a copy (`SQLITE_STATIC`) and read in place.
//!
//! Sound by construction, the compiler checks what SQLite needs:
//! - a [`Stmt`] borrows its connection, so it cannot outlive it;
//! - values are bound through a [`Bound`], which borrows them (and the
//!   statement, mutably) until it is dropped, and its drop resets the
//!   statement and clears the bindings: SQLite never reads a text after it
//!   is gone, and nothing can rebind while a step is under way;
//! - a [`Row`] borrows the [`Bound`] it was stepped from, so its in-place
//!   texts are gone before the next step.
//!
//! With [`utf8`] (the text check of both backends' row reads), this module
//! holds the only `unsafe` code of siemstress.

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::ffi;

use crate::db::sql::Value;

/// A SQLite connection whose raw handle a statement may use.
pub(crate) trait Handle {
    /// The connection handle, valid while `self` is borrowed.
    fn raw(&self) -> *mut ffi::sqlite3;
}

impl Handle for rusqlite::Connection {
    fn raw(&self) -> *mut ffi::sqlite3 {
        // SAFETY: the handle is valid while the connection lives; every use
        // of it goes through a `Stmt` that borrows the connection.
        unsafe { self.handle() }
    }
}

/// A connection of the sqlx pool, locked for this thread (borrowed for `'h`).
pub(crate) struct LockedHandle<'h>(NonNull<ffi::sqlite3>, PhantomData<&'h mut ()>);

impl<'h> LockedHandle<'h> {
    /// The raw handle of `locked`, which stays borrowed while it is used.
    pub(crate) fn new(locked: &'h mut sqlx::sqlite::LockedSqliteHandle<'_>) -> Self {
        Self(locked.as_raw_handle().cast(), PhantomData)
    }
}

impl Handle for LockedHandle<'_> {
    fn raw(&self) -> *mut ffi::sqlite3 {
        self.0.as_ptr()
    }
}

/// Keeps the `-wal` and `-shm` files when the last connection closes
/// (`SQLITE_FCNTL_PERSIST_WAL`), so that a user who may read the database
/// but not write its directory can open it while no writer runs: SQLite
/// reads a WAL database read-only only through an existing `-shm`. Every
/// connection of every tool sets it (the last one to close decides).
pub(crate) fn persist_wal<H: Handle>(conn: &H) {
    let mut on: c_int = 1;
    // SAFETY: a valid handle (Handle), used by this thread while `conn` is
    // borrowed; the opcode takes a pointer to an int. A VFS without the
    // opcode (an in-memory database) returns NOTFOUND: nothing to keep.
    unsafe {
        ffi::sqlite3_file_control(
            conn.raw(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        );
    }
}

/// A prepared statement on a connection it borrows; finalized on drop.
pub(crate) struct Stmt<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
    _conn: PhantomData<&'c ()>,
}

impl<'c> Stmt<'c> {
    /// Prepares `sql` on `conn`.
    pub(crate) fn prepare<H: Handle>(conn: &'c H, sql: &str) -> Result<Self, String> {
        let db = conn.raw();
        let len = c_int::try_from(sql.len()).map_err(|_| "statement too long".to_owned())?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: valid handle (borrowed for 'c), SQL buffer with its exact
        // length, out-pointer.
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
            Some(stmt) if rc == ffi::SQLITE_OK => Ok(Self {
                stmt,
                db,
                _conn: PhantomData,
            }),
            // SAFETY: valid handle.
            _ => Err(unsafe { errmsg(db) }),
        }
    }

    /// Starts binding the values of one execution; they stay borrowed
    /// (`'v`) until the returned [`Bound`] is dropped.
    pub(crate) fn bind<'s, 'v>(&'s mut self) -> Bound<'s, 'c, 'v> {
        Bound {
            stmt: self,
            rc: ffi::SQLITE_OK,
            _values: PhantomData,
        }
    }

    fn errmsg(&self) -> String {
        // SAFETY: valid handle while the statement lives.
        unsafe { errmsg(self.db) }
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: prepared by us, finalized once, before its connection
        // closes (the statement borrows it).
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

/// A statement with values bound, borrowed for `'v`; dropping it resets
/// the statement and clears the bindings.
pub(crate) struct Bound<'s, 'c, 'v> {
    stmt: &'s mut Stmt<'c>,
    /// The first failed bind's code, or `SQLITE_OK`.
    rc: c_int,
    _values: PhantomData<&'v str>,
}

impl<'v> Bound<'_, '_, 'v> {
    fn ptr(&self) -> *mut ffi::sqlite3_stmt {
        self.stmt.stmt.as_ptr()
    }

    fn check(&mut self, rc: c_int) {
        if self.rc == ffi::SQLITE_OK {
            self.rc = rc;
        }
    }

    /// Binds an integer or NULL to parameter `col` (1-based).
    pub(crate) fn int(&mut self, col: c_int, v: Option<i64>) -> &mut Self {
        let s = self.ptr();
        // SAFETY: valid statement; SQLite checks the index.
        let rc = unsafe {
            match v {
                Some(v) => ffi::sqlite3_bind_int64(s, col, v),
                None => ffi::sqlite3_bind_null(s, col),
            }
        };
        self.check(rc);
        self
    }

    /// Binds a text or NULL to parameter `col` (1-based), without a copy.
    pub(crate) fn text(&mut self, col: c_int, v: Option<&'v str>) -> &mut Self {
        let s = self.ptr();
        // SAFETY: valid statement; SQLite checks the index. SQLITE_STATIC:
        // SQLite reads the text in place until the statement is reset or
        // rebound, which happens in our drop, while `'v` still holds.
        let rc = unsafe {
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
        self.check(rc);
        self
    }

    /// Binds `values` to parameters 1, 2, ... in order.
    pub(crate) fn values(&mut self, values: &'v [Value<'_>]) -> &mut Self {
        for (i, v) in values.iter().enumerate() {
            let col = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            match v {
                Value::Null => self.int(col, None),
                Value::Int(n) => self.int(col, Some(*n)),
                Value::Text(t) => self.text(col, Some(t)),
            };
        }
        self
    }

    /// Runs a statement that returns no rows.
    pub(crate) fn execute(mut self) -> Result<(), String> {
        match self.step()? {
            false => Ok(()),
            true => Err("statement returned rows".to_owned()),
        }
    }

    /// Steps once: `true` on a row, `false` when done.
    fn step(&mut self) -> Result<bool, String> {
        if self.rc != ffi::SQLITE_OK {
            return Err(self.stmt.errmsg());
        }
        // SAFETY: valid statement with every parameter bound, used by this
        // thread only (we hold it mutably).
        match unsafe { ffi::sqlite3_step(self.ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(self.stmt.errmsg()),
        }
    }

    /// The next row, or `None` when the statement is done.
    pub(crate) fn next(&mut self) -> Result<Option<Row<'_>>, String> {
        Ok(self.step()?.then(|| Row {
            stmt: self.ptr(),
            _bound: PhantomData,
        }))
    }

    /// The names of the result's columns, in order.
    pub(crate) fn column_names(&self) -> Vec<String> {
        let s = self.ptr();
        // SAFETY: valid statement; names are NUL-terminated and owned by
        // SQLite (copied here).
        let n = unsafe { ffi::sqlite3_column_count(s) };
        (0..n)
            .map(|i| {
                let p = unsafe { ffi::sqlite3_column_name(s, i) };
                if p.is_null() {
                    String::new()
                } else {
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

impl Drop for Bound<'_, '_, '_> {
    fn drop(&mut self) {
        let s = self.ptr();
        // SAFETY: valid statement. After this SQLite holds no pointer into
        // the bound texts.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
    }
}

/// The current row of a [`Bound`]; its texts are read in place and live
/// until the next step, which needs the [`Bound`] this row borrows.
pub(crate) struct Row<'b> {
    stmt: *mut ffi::sqlite3_stmt,
    _bound: PhantomData<&'b ()>,
}

impl<'b> Row<'b> {
    fn is_null(&self, i: c_int) -> bool {
        // SAFETY: valid statement positioned on a row; SQLite checks the index.
        unsafe { ffi::sqlite3_column_type(self.stmt, i) == ffi::SQLITE_NULL }
    }

    /// An integer column (NULL reads as 0, as `sqlite3_column_int64`).
    pub(crate) fn int(&self, i: c_int) -> i64 {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_column_int64(self.stmt, i) }
    }

    /// An integer column, NULL as `None`.
    pub(crate) fn opt_int(&self, i: c_int) -> Option<i64> {
        (!self.is_null(i)).then(|| self.int(i))
    }

    /// A text column in place; NULL is `None`; invalid UTF-8 is an error.
    pub(crate) fn opt_text(&self, i: c_int) -> Result<Option<&'b str>, String> {
        // SAFETY: valid statement on a row. Text first, then its length (the
        // order SQLite documents); the bytes stay valid until the next step,
        // which needs the `Bound` this row borrows for 'b. A NULL pointer is
        // a NULL value (or an empty blob, or no memory: checked below).
        let bytes: &'b [u8] = unsafe {
            let p = ffi::sqlite3_column_text(self.stmt, i);
            if p.is_null() {
                return if self.is_null(i) {
                    Ok(None)
                } else {
                    Ok(Some(""))
                };
            }
            let n = ffi::sqlite3_column_bytes(self.stmt, i);
            std::slice::from_raw_parts(p, usize::try_from(n).unwrap_or(0))
        };
        utf8(bytes).map(Some).map_err(|e| {
            // SAFETY: valid statement; the name is owned by SQLite.
            let name = unsafe { CStr::from_ptr(ffi::sqlite3_column_name(self.stmt, i)) };
            format!("column {}: {e}", name.to_string_lossy())
        })
    }
}

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

/// `bytes` as text: ASCII checked first (about half the cost of `from_utf8`
/// on log lines), then UTF-8.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_step_reset_and_read_in_place() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT)")
            .unwrap();
        let mut ins = Stmt::prepare(&conn, "INSERT INTO t VALUES (?, ?)").unwrap();
        for (i, s) in ["x", "yy"].iter().enumerate() {
            let owned = s.to_string();
            let mut b = ins.bind();
            b.int(1, Some(i as i64)).text(2, Some(&owned));
            b.execute().unwrap();
        }
        let mut bad = ins.bind();
        bad.int(9, Some(1));
        assert!(bad.execute().is_err());
        let mut sel = Stmt::prepare(&conn, "SELECT a, b AS text FROM t WHERE a >= ?").unwrap();
        let mut b = sel.bind();
        b.int(1, Some(0));
        assert_eq!(b.column_names(), ["a", "text"]);
        let mut got = Vec::new();
        while let Some(r) = b.next().unwrap() {
            got.push((r.int(0), r.opt_text(1).unwrap().unwrap().to_owned()));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, "yy");
    }
}
