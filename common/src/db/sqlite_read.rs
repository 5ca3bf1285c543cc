//! Reading rows at the SQLite C API: prepare, bind the filter's values,
//! step, and hand out each column in place (`&str` into SQLite's own row
//! buffer, valid until the next step) instead of an owned `String` per cell.
//! sqlx's row decoding (a `sqlite3_value_dup` and a `String` per cell, a
//! name lookup per column) was a third of `siemquery`'s export time.

use std::ffi::{CStr, c_int};

use rusqlite::ffi;

use super::sqlite_stmt::RawStmt;
use crate::filter::BoundValue;

/// A prepared statement with its parameters bound.
pub(super) struct Select<'a> {
    stmt: RawStmt,
    /// The bound texts are passed as static pointers: they must outlive the statement.
    _bound: &'a [BoundValue],
}

/// The current row of a [`Select`].
pub(super) struct Row<'s> {
    stmt: *mut ffi::sqlite3_stmt,
    _select: std::marker::PhantomData<&'s ()>,
}

impl<'a> Select<'a> {
    /// Prepares `sql` on `db` and binds `bound` to its `?` parameters in order.
    ///
    /// # Safety
    /// `db` is a valid connection handle that nobody else uses until the
    /// returned value is dropped.
    pub(super) unsafe fn prepare(
        db: *mut ffi::sqlite3,
        sql: &str,
        bound: &'a [BoundValue],
    ) -> Result<Self, String> {
        // SAFETY: valid handle used only by us until we are dropped (caller).
        let stmt = unsafe { RawStmt::prepare(db, sql)? };
        for (i, b) in bound.iter().enumerate() {
            let col = c_int::try_from(i + 1).map_err(|_| "too many parameters".to_owned())?;
            // A text is read in place until the statement is finalized, and
            // `bound` outlives it (the lifetime of `Select`).
            let rc = match b {
                BoundValue::Int(v) => stmt.bind_int(col, Some(*v)),
                BoundValue::Text(t) => stmt.bind_text(col, Some(t)),
            };
            if rc != ffi::SQLITE_OK {
                return Err(stmt.errmsg());
            }
        }
        Ok(Self {
            stmt,
            _bound: bound,
        })
    }

    /// The next row, or `None` when the statement is done.
    pub(super) fn next(&mut self) -> Result<Option<Row<'_>>, String> {
        // SAFETY: valid, bound statement, used by this thread only.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(Some(Row {
                stmt: self.stmt.as_ptr(),
                _select: std::marker::PhantomData,
            })),
            ffi::SQLITE_DONE => Ok(None),
            _ => Err(self.stmt.errmsg()),
        }
    }
}

impl Row<'_> {
    fn is_null(&self, i: c_int) -> bool {
        // SAFETY: valid statement positioned on a row; SQLite checks the index.
        unsafe { ffi::sqlite3_column_type(self.stmt, i) == ffi::SQLITE_NULL }
    }

    /// An integer column (NULL reads as 0, as `sqlite3_column_int64`).
    pub(super) fn int(&self, i: c_int) -> i64 {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_column_int64(self.stmt, i) }
    }

    pub(super) fn opt_int(&self, i: c_int) -> Option<i64> {
        (!self.is_null(i)).then(|| self.int(i))
    }

    /// A text column in place; NULL is `None`; invalid UTF-8 is an error.
    pub(super) fn opt_text(&self, i: c_int) -> Result<Option<&str>, String> {
        // SAFETY: valid statement on a row. Text first, then its length (the
        // order SQLite documents); the bytes stay valid until the next step,
        // which needs `&mut Select` while this row borrows it. A NULL pointer
        // is a NULL value (or an empty blob, or no memory: checked below).
        let bytes = unsafe {
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
        super::search::utf8(bytes).map(Some).map_err(|e| {
            // SAFETY: valid statement; the name is owned by SQLite.
            let name = unsafe { CStr::from_ptr(ffi::sqlite3_column_name(self.stmt, i)) };
            format!("column {}: {e}", name.to_string_lossy())
        })
    }

    /// A NOT NULL text column ("" if NULL after all).
    pub(super) fn text(&self, i: c_int) -> Result<&str, String> {
        self.opt_text(i).map(Option::unwrap_or_default)
    }
}
