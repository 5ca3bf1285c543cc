//! Reading events back: filtered, streamed in `(ts, id)` order, counted, or
//! grouped by a column. SQL comes from [`Filter::write_where`]; the part of a
//! filter SQL cannot express (regexes) is applied here, before any limit or
//! count, so callers never see the difference.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::{Pool, QueryBuilder};

use super::Database;
use super::grep_index::{self, GrepPlan};
use crate::Error;
use crate::filter::{BoundValue, Filter, FilterDb, SqlWriter};
use crate::ident::Ident;

/// Every column of an event table, in table order, as read back.
pub const ROW_COLUMNS: [&str; 19] = [
    "id",
    "ts",
    "received",
    "host",
    "process",
    "pid",
    "facility",
    "severity",
    "user",
    "source_host",
    "source_port",
    "dest_host",
    "dest_port",
    "protocol",
    "message",
    "raw",
    "parsed",
    "source",
    "extra",
];

/// Integer columns (the others are text).
const INT_COLUMNS: [&str; 7] = [
    "id",
    "ts",
    "received",
    "pid",
    "source_port",
    "dest_port",
    "parsed",
];

/// One stored event.
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
pub type RowSink<'a> = &'a mut dyn FnMut(EventRow) -> std::io::Result<()>;

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
    /// `limit`; returns how many were passed to `sink`.
    pub async fn search_events(
        &self,
        table: &Ident,
        filter: &Filter,
        limit: Option<u64>,
        log: SqlLog<'_>,
        sink: RowSink<'_>,
    ) -> Result<u64, Error> {
        match self {
            Database::Sqlite(db) => {
                let plan = grep_index::plan(&db.pool, table, filter, log).await?;
                search(&db.pool, table, plan.as_ref(), filter, limit, log, sink).await
            }
            Database::Mysql(db) => search(&db.pool, table, None, filter, limit, log, sink).await,
        }
    }

    /// Number of rows of `table` that match `filter`.
    pub async fn count_events(
        &self,
        table: &Ident,
        filter: &Filter,
        log: SqlLog<'_>,
    ) -> Result<u64, Error> {
        match self {
            Database::Sqlite(db) => {
                let plan = grep_index::plan(&db.pool, table, filter, log).await?;
                count(&db.pool, table, plan.as_ref(), filter, log).await
            }
            Database::Mysql(db) => count(&db.pool, table, None, filter, log).await,
        }
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
        match self {
            Database::Sqlite(db) => {
                let plan = grep_index::plan(&db.pool, table, filter, log).await?;
                stats(&db.pool, table, plan.as_ref(), filter, column, top, log).await
            }
            Database::Mysql(db) => stats(&db.pool, table, None, filter, column, top, log).await,
        }
    }
}

/// `"t"` or `` `t` ``: the validated name, quoted for the backend.
fn quoted<DB: FilterDb>(t: &Ident) -> String {
    match DB::BACKEND {
        super::Backend::Sqlite => format!("\"{t}\""),
        super::Backend::Mysql => format!("`{t}`"),
    }
}

/// ` FROM <table>`, or with a [`GrepPlan`], the table joined to the
/// candidates of the search index (indexed rows that have every trigram of
/// a pattern, and every row above the index's mark). The candidates drive
/// the join (CROSS JOIN fixes the loop order); the filter still decides.
fn write_from<DB: FilterDb>(w: &mut SqlWriter<'_, DB>, table: &Ident, plan: Option<&GrepPlan>) {
    let t = quoted::<DB>(table);
    let Some(p) = plan else {
        w.sql(" FROM ").sql(&t);
        return;
    };
    let fts = format!("\"{}\"", p.fts);
    w.sql(" FROM (SELECT rowid AS cand FROM ")
        .sql(&fts)
        .sql(" WHERE ")
        .sql(&fts)
        .sql(" MATCH ")
        .text(&p.expr)
        .sql(" AND rowid <= ")
        .int(p.upto)
        .sql(" UNION ALL SELECT id FROM ")
        .sql(&t)
        .sql(" WHERE id > ")
        .int(p.upto)
        .sql(") AS c CROSS JOIN ")
        .sql(&t)
        .sql(" ON ")
        .sql(&t)
        .sql(".id = c.cand");
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

async fn search<DB>(
    pool: &Pool<DB>,
    table: &Ident,
    plan: Option<&GrepPlan>,
    filter: &Filter,
    limit: Option<u64>,
    log: SqlLog<'_>,
    sink: RowSink<'_>,
) -> Result<u64, Error>
where
    DB: FilterDb,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'r> EventRow: sqlx::FromRow<'r, DB::Row>,
{
    if limit == Some(0) {
        return Ok(0);
    }
    let mut qb = QueryBuilder::<DB>::new(format!("SELECT {}", ROW_COLUMNS.join(", ")));
    let mut w = SqlWriter::new(&mut qb);
    write_from(&mut w, table, plan);
    filter.write_where(&mut w);
    w.sql(" ORDER BY ts, id");
    let residual = filter.has_residual();
    if let (Some(n), false) = (limit, residual) {
        w.sql(" LIMIT ").int(sql_limit(n));
    }
    let bound = std::mem::take(&mut w.bound);
    log(qb.sql().as_str(), &bound);
    let mut rows = qb.build_query_as::<EventRow>().fetch(pool);
    let mut sent = 0u64;
    while let Some(row) = rows.try_next().await.map_err(|e| query_err(table, e))? {
        if residual && !filter.matches_residual(&row.raw) {
            continue;
        }
        sink(row).map_err(|source| Error::Io {
            what: "output".into(),
            source,
        })?;
        sent += 1;
        if limit.is_some_and(|n| sent >= n) {
            break;
        }
    }
    Ok(sent)
}

async fn count<DB>(
    pool: &Pool<DB>,
    table: &Ident,
    plan: Option<&GrepPlan>,
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
    write_from(&mut w, table, plan);
    filter.write_where(&mut w);
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
    plan: Option<&GrepPlan>,
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
    write_from(&mut w, table, plan);
    filter.write_where(&mut w);
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
