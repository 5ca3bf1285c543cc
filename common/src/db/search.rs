//! Reading events back: filtered, streamed in `(ts, id)` order, counted, or
//! grouped by a column. SQL comes from [`Filter::write_where`]; the part of a
//! filter SQL cannot express (regexes) is applied here, before any limit or
//! count, so callers never see the difference.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::{Pool, QueryBuilder};

use super::Database;
use super::grep_index::Narrowing;
use super::sqlite_read::Select;
use crate::Error;
use crate::filter::{BoundValue, Filter, FilterDb, SqlWriter};
use crate::ident::Ident;

use crate::event::INT_COLUMNS;
pub use crate::event::ROW_COLUMNS;

/// One stored event, owned.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub ts: i64,
    pub received: i64,
    pub host: Option<String>,
    pub process: Option<String>,
    pub pid: Option<i64>,
    pub facility: Option<String>,
    pub severity: Option<String>,
    pub user: Option<String>,
    pub source_host: Option<String>,
    pub source_port: Option<i64>,
    pub dest_host: Option<String>,
    pub dest_port: Option<i64>,
    pub protocol: Option<String>,
    pub message: String,
    pub raw: String,
    pub parsed: i64,
    pub source: String,
    pub extra: Option<String>,
}

impl EventRow {
    /// The row as borrowed values.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            id: self.id,
            ts: self.ts,
            received: self.received,
            host: self.host.as_deref(),
            process: self.process.as_deref(),
            pid: self.pid,
            facility: self.facility.as_deref(),
            severity: self.severity.as_deref(),
            user: self.user.as_deref(),
            source_host: self.source_host.as_deref(),
            source_port: self.source_port,
            dest_host: self.dest_host.as_deref(),
            dest_port: self.dest_port,
            protocol: self.protocol.as_deref(),
            message: &self.message,
            raw: &self.raw,
            parsed: self.parsed,
            source: &self.source,
            extra: self.extra.as_deref(),
        }
    }
}

/// One stored event as read, borrowing the backend's row buffer (valid for
/// one call of the [`RowSink`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventRef<'a> {
    pub id: i64,
    pub ts: i64,
    pub received: i64,
    pub host: Option<&'a str>,
    pub process: Option<&'a str>,
    pub pid: Option<i64>,
    pub facility: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub user: Option<&'a str>,
    pub source_host: Option<&'a str>,
    pub source_port: Option<i64>,
    pub dest_host: Option<&'a str>,
    pub dest_port: Option<i64>,
    pub protocol: Option<&'a str>,
    pub message: &'a str,
    pub raw: &'a str,
    pub parsed: i64,
    pub source: &'a str,
    pub extra: Option<&'a str>,
}

/// A value of a `--stats` column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatKey {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for StatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatKey::Int(i) => write!(f, "{i}"),
            StatKey::Text(s) => f.write_str(s),
        }
    }
}

/// Receives each statement with its bound values before it runs (`--verbose`).
pub type SqlLog<'a> = &'a mut dyn FnMut(&str, &[BoundValue]);

/// Receives each row; an error (e.g. a closed pipe) stops the search.
pub type RowSink<'a> = &'a mut dyn FnMut(&EventRef<'_>) -> std::io::Result<()>;

/// Validates a `--stats` column name against the event columns.
pub fn stats_column(name: &str) -> Result<&'static str, Error> {
    ROW_COLUMNS
        .iter()
        .copied()
        .find(|c| *c == name && !matches!(*c, "raw" | "message" | "extra" | "id"))
        .ok_or_else(|| Error::ConfigValue {
            key: "--stats".into(),
            message: format!(
                "unknown column {name:?}; use one of host, process, pid, user, source_host, \
                 source_port, dest_host, dest_port, protocol, facility, severity, source, parsed, ts, received"
            ),
        })
}

impl Database {
    /// Streams the rows of `table` that match `filter`, oldest first, at most
    /// `limit`; returns how many were passed to `sink`. On SQLite the rows
    /// are read at the C API on one of the pool's connections, on the
    /// calling thread (it blocks for the whole scan).
    pub async fn search_events(
        &self,
        table: &Ident,
        filter: &Filter,
        limit: Option<u64>,
        log: SqlLog<'_>,
        sink: RowSink<'_>,
    ) -> Result<u64, Error> {
        let plan = self.grep_plan(table, filter, log).await?;
        match self {
            Database::Sqlite(db) => {
                search_sqlite(&db.pool, table, plan.as_ref(), filter, limit, log, sink).await
            }
            Database::Mysql(db) => {
                search_mysql(&db.pool, table, plan.as_ref(), filter, limit, log, sink).await
            }
        }
    }

    /// Number of rows of `table` that match `filter`.
    pub async fn count_events(
        &self,
        table: &Ident,
        filter: &Filter,
        log: SqlLog<'_>,
    ) -> Result<u64, Error> {
        let plan = self.grep_plan(table, filter, log).await?;
        crate::with_pool!(self, pool => count(pool, table, plan.as_ref(), filter, log).await)
    }

    /// The `top` most frequent values of `column` (from [`stats_column`])
    /// among matching rows, most frequent first, ties by value; NULL is `None`.
    pub async fn event_stats(
        &self,
        table: &Ident,
        filter: &Filter,
        column: &'static str,
        top: Option<u64>,
        log: SqlLog<'_>,
    ) -> Result<Vec<(Option<StatKey>, u64)>, Error> {
        let plan = self.grep_plan(table, filter, log).await?;
        crate::with_pool!(self, pool => {
            stats(pool, table, plan.as_ref(), filter, column, top, log).await
        })
    }
}

/// ` FROM <table> WHERE <filter>`, narrowed by the search index when
/// there is a plan: on SQLite the table joined to the FTS5 candidates
/// (indexed rows that have every trigram of a pattern, and every row above
/// the index's mark; the candidates drive the join, CROSS JOIN fixes the
/// loop order), on MariaDB the candidate id ranges added to the WHERE. The
/// filter still decides.
fn write_from_where<DB: FilterDb>(
    w: &mut SqlWriter<'_, DB>,
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
) {
    match plan {
        Some(Narrowing::Fts(p)) => {
            debug_assert_eq!(p.fts, super::grep_index::fts_table(table));
            w.sql(" FROM (SELECT rowid AS cand FROM ")
                .table(table, "$grep")
                .sql(" WHERE ")
                .table(table, "$grep")
                .sql(" MATCH ")
                .text(&p.expr)
                .sql(" AND rowid <= ")
                .int(p.upto)
                .sql(" UNION ALL SELECT id FROM ")
                .table(table, "")
                .sql(" WHERE id > ")
                .int(p.upto)
                .sql(") AS c CROSS JOIN ")
                .table(table, "")
                .sql(" ON ")
                .table(table, "")
                .sql(".id = c.cand");
        }
        _ => {
            w.sql(" FROM ").table(table, "");
        }
    }
    filter.write_where(w);
    if let Some(Narrowing::Ranges(p)) = plan {
        w.and();
        p.write(w);
    }
}

fn query_err(table: &Ident, e: impl std::fmt::Display) -> Error {
    Error::db("search", table.as_str(), e)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Limit bound into SQL (both backends take a signed 64-bit LIMIT).
fn sql_limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `SELECT <every column> FROM ... WHERE ... ORDER BY ts, id [LIMIT n]`,
/// written by the filter, with its bound values; `LIMIT` only when no
/// residual (Rust-side) check can drop rows after the SQL.
fn select_rows<DB>(
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
    limit: Option<u64>,
) -> (QueryBuilder<DB>, Vec<BoundValue>)
where
    DB: FilterDb,
    DB::Arguments: Default,
{
    let mut qb = QueryBuilder::<DB>::new(format!("SELECT {}", ROW_COLUMNS.join(", ")));
    let mut w = SqlWriter::new(&mut qb);
    write_from_where(&mut w, table, plan, filter);
    w.sql(" ORDER BY ts, id");
    if let (Some(n), false) = (limit, filter.has_residual()) {
        w.sql(" LIMIT ").int(sql_limit(n));
    }
    let bound = std::mem::take(&mut w.bound);
    (qb, bound)
}

/// Applies the residual check and the limit to one row and passes it on;
/// `Ok(false)` when the limit is reached.
fn deliver(
    filter: &Filter,
    limit: Option<u64>,
    sent: &mut u64,
    row: &EventRef<'_>,
    sink: &mut RowSink<'_>,
) -> Result<bool, Error> {
    if filter.has_residual() && !filter.matches_residual(row.raw) {
        return Ok(true);
    }
    sink(row).map_err(|source| Error::Io {
        what: "output".into(),
        source,
    })?;
    *sent += 1;
    Ok(limit.is_none_or(|n| *sent < n))
}

async fn search_sqlite(
    pool: &sqlx::SqlitePool,
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
    limit: Option<u64>,
    log: SqlLog<'_>,
    mut sink: RowSink<'_>,
) -> Result<u64, Error> {
    if limit == Some(0) {
        return Ok(0);
    }
    let (qb, bound) = select_rows::<sqlx::Sqlite>(table, plan, filter, limit);
    let sql = qb.sql();
    let sql = sql.as_str();
    log(sql, &bound);
    let sx = |e: sqlx::Error| query_err(table, e);
    let err = |e: String| query_err(table, e);
    // Lets the connection of the statements before (returned to the pool by
    // a task of its own) become idle, so that it is reused, not a new one opened.
    tokio::task::yield_now().await;
    let mut conn = pool.acquire().await.map_err(sx)?;
    let mut handle = conn.lock_handle().await.map_err(sx)?;
    let db = handle
        .as_raw_handle()
        .as_ptr()
        .cast::<rusqlite::ffi::sqlite3>();
    // SAFETY: the locked handle gives this thread the connection alone until
    // it is dropped, after `select`.
    let mut select = unsafe { Select::prepare(db, sql, &bound) }.map_err(err)?;
    let mut sent = 0u64;
    while let Some(r) = select.next().map_err(err)? {
        let row = EventRef {
            id: r.int(0),
            ts: r.int(1),
            received: r.int(2),
            host: r.opt_text(3).map_err(err)?,
            process: r.opt_text(4).map_err(err)?,
            pid: r.opt_int(5),
            facility: r.opt_text(6).map_err(err)?,
            severity: r.opt_text(7).map_err(err)?,
            user: r.opt_text(8).map_err(err)?,
            source_host: r.opt_text(9).map_err(err)?,
            source_port: r.opt_int(10),
            dest_host: r.opt_text(11).map_err(err)?,
            dest_port: r.opt_int(12),
            protocol: r.opt_text(13).map_err(err)?,
            message: r.text(14).map_err(err)?,
            raw: r.text(15).map_err(err)?,
            parsed: r.int(16),
            source: r.text(17).map_err(err)?,
            extra: r.opt_text(18).map_err(err)?,
        };
        if !deliver(filter, limit, &mut sent, &row, &mut sink)? {
            break;
        }
    }
    Ok(sent)
}

/// `bytes` as text: ASCII checked first (about half the cost of `from_utf8`
/// on log lines), then UTF-8.
pub(super) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

async fn search_mysql(
    pool: &sqlx::MySqlPool,
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
    limit: Option<u64>,
    log: SqlLog<'_>,
    mut sink: RowSink<'_>,
) -> Result<u64, Error> {
    use sqlx::Row;
    if limit == Some(0) {
        return Ok(0);
    }
    let (mut qb, bound) = select_rows::<sqlx::MySql>(table, plan, filter, limit);
    log(qb.sql().as_str(), &bound);
    let err = |e: sqlx::Error| query_err(table, e);
    let mut rows = qb.build().fetch(pool);
    let mut sent = 0u64;
    // Columns by position (the SELECT lists ROW_COLUMNS), decoded unchecked
    // (the types are the event table's) and borrowed from the row: integers
    // of any width, text as bytes with our own UTF-8 check.
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let int = |i: usize| r.try_get_unchecked::<Option<i64>, _>(i).map_err(err);
        let text = |i: usize| -> Result<Option<&str>, Error> {
            match r.try_get_unchecked::<Option<&[u8]>, _>(i).map_err(err)? {
                None => Ok(None),
                Some(b) => utf8(b)
                    .map(Some)
                    .map_err(|e| query_err(table, format!("column {}: {e}", ROW_COLUMNS[i]))),
            }
        };
        let row = EventRef {
            id: int(0)?.unwrap_or_default(),
            ts: int(1)?.unwrap_or_default(),
            received: int(2)?.unwrap_or_default(),
            host: text(3)?,
            process: text(4)?,
            pid: int(5)?,
            facility: text(6)?,
            severity: text(7)?,
            user: text(8)?,
            source_host: text(9)?,
            source_port: int(10)?,
            dest_host: text(11)?,
            dest_port: int(12)?,
            protocol: text(13)?,
            message: text(14)?.unwrap_or_default(),
            raw: text(15)?.unwrap_or_default(),
            parsed: int(16)?.unwrap_or_default(),
            source: text(17)?.unwrap_or_default(),
            extra: text(18)?,
        };
        if !deliver(filter, limit, &mut sent, &row, &mut sink)? {
            break;
        }
    }
    Ok(sent)
}

async fn count<DB>(
    pool: &Pool<DB>,
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
    log: SqlLog<'_>,
) -> Result<u64, Error>
where
    DB: FilterDb,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let residual = filter.has_residual();
    let select = if residual { "raw" } else { "COUNT(*)" };
    let mut qb = QueryBuilder::<DB>::new(format!("SELECT {select}"));
    let mut w = SqlWriter::new(&mut qb);
    write_from_where(&mut w, table, plan, filter);
    let bound = std::mem::take(&mut w.bound);
    log(qb.sql().as_str(), &bound);
    if !residual {
        let (n,): (i64,) = qb
            .build_query_as()
            .fetch_one(pool)
            .await
            .map_err(|e| query_err(table, e))?;
        return Ok(to_u64(n));
    }
    let mut rows = qb.build_query_as::<(String,)>().fetch(pool);
    let mut n = 0u64;
    while let Some((raw,)) = rows.try_next().await.map_err(|e| query_err(table, e))? {
        n += u64::from(filter.matches_residual(&raw));
    }
    Ok(n)
}

async fn stats<DB>(
    pool: &Pool<DB>,
    table: &Ident,
    plan: Option<&Narrowing>,
    filter: &Filter,
    column: &'static str,
    top: Option<u64>,
    log: SqlLog<'_>,
) -> Result<Vec<(Option<StatKey>, u64)>, Error>
where
    DB: FilterDb,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'r> (Option<i64>, i64): sqlx::FromRow<'r, DB::Row>,
    for<'r> (Option<String>, i64): sqlx::FromRow<'r, DB::Row>,
    for<'r> (Option<i64>, String): sqlx::FromRow<'r, DB::Row>,
    for<'r> (Option<String>, String): sqlx::FromRow<'r, DB::Row>,
{
    let int = INT_COLUMNS.contains(&column);
    let residual = filter.has_residual();
    let head = if residual {
        format!("SELECT {column}, raw")
    } else {
        format!("SELECT {column}, COUNT(*) AS n")
    };
    let mut qb = QueryBuilder::<DB>::new(head);
    let mut w = SqlWriter::new(&mut qb);
    write_from_where(&mut w, table, plan, filter);
    if !residual {
        w.sql(" GROUP BY ").sql(column);
        w.sql(" ORDER BY n DESC, ").sql(column);
        if let Some(n) = top {
            w.sql(" LIMIT ").int(sql_limit(n));
        }
    }
    let bound = std::mem::take(&mut w.bound);
    log(qb.sql().as_str(), &bound);
    let e = |e| query_err(table, e);
    if !residual {
        return Ok(if int {
            qb.build_query_as::<(Option<i64>, i64)>()
                .fetch_all(pool)
                .await
                .map_err(e)?
                .into_iter()
                .map(|(k, n)| (k.map(StatKey::Int), to_u64(n)))
                .collect()
        } else {
            qb.build_query_as::<(Option<String>, i64)>()
                .fetch_all(pool)
                .await
                .map_err(e)?
                .into_iter()
                .map(|(k, n)| (k.map(StatKey::Text), to_u64(n)))
                .collect()
        });
    }
    let mut counts: HashMap<Option<StatKey>, u64> = HashMap::new();
    if int {
        let mut rows = qb.build_query_as::<(Option<i64>, String)>().fetch(pool);
        while let Some((k, raw)) = rows.try_next().await.map_err(e)? {
            if filter.matches_residual(&raw) {
                *counts.entry(k.map(StatKey::Int)).or_default() += 1;
            }
        }
    } else {
        let mut rows = qb.build_query_as::<(Option<String>, String)>().fetch(pool);
        while let Some((k, raw)) = rows.try_next().await.map_err(e)? {
            if filter.matches_residual(&raw) {
                *counts.entry(k.map(StatKey::Text)).or_default() += 1;
            }
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if let Some(n) = top {
        v.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(v)
}
