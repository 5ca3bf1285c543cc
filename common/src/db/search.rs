//! Reading events back: filtered, streamed in `(ts, id)` order, counted, or
//! grouped by a column. SQL comes from [`Filter::write_where`]; the part of a
//! filter SQL cannot express (regexes) is applied here, before any limit or
//! count, so callers never see the difference.
//!
//! Rows are read by name into an [`EventRef`]: the position of each column
//! in the result is looked up once per statement ([`Positions`]), then every
//! row is read through it, in place (texts borrow the backend's row buffer).

use std::collections::HashMap;

use super::grep_index::Narrowing;
use super::sql::{Sql, Value};
use super::{Backend, Database};
use crate::Error;
use crate::event::{Column, INT_COLUMNS};
use crate::filter::Filter;
use crate::ident::Ident;

pub use crate::event::ROW_COLUMNS;

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
    /// The section the row was read under (a search of several tables).
    pub section: Option<&'a str>,
}

/// The value of one column of an [`EventRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Null,
    Int(i64),
    /// An event time (`ts`, `received`), UTC epoch ms.
    Time(i64),
    Text(&'a str),
    /// JSON text (`extra`).
    Json(&'a str),
}

impl<'a> EventRef<'a> {
    /// The value of column `c`.
    pub fn get(&self, c: Column) -> FieldValue<'a> {
        let text = |v: Option<&'a str>| v.map_or(FieldValue::Null, FieldValue::Text);
        let int = |v: Option<i64>| v.map_or(FieldValue::Null, FieldValue::Int);
        match c {
            Column::Id => FieldValue::Int(self.id),
            Column::Ts => FieldValue::Time(self.ts),
            Column::Received => FieldValue::Time(self.received),
            Column::Host => text(self.host),
            Column::Process => text(self.process),
            Column::Pid => int(self.pid),
            Column::Facility => text(self.facility),
            Column::Severity => text(self.severity),
            Column::User => text(self.user),
            Column::SourceHost => text(self.source_host),
            Column::SourcePort => int(self.source_port),
            Column::DestHost => text(self.dest_host),
            Column::DestPort => int(self.dest_port),
            Column::Protocol => text(self.protocol),
            Column::Message => FieldValue::Text(self.message),
            Column::Raw => FieldValue::Text(self.raw),
            Column::Parsed => FieldValue::Int(self.parsed),
            Column::Source => FieldValue::Text(self.source),
            Column::Extra => self.extra.map_or(FieldValue::Null, FieldValue::Json),
        }
    }
}

/// Where each event column is in a result, found by name once (and the
/// `section` column, when the result has one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positions([usize; 19], Option<usize>);

impl Positions {
    /// The positions of the event columns among `names` (a result's
    /// column names, in order).
    pub(crate) fn of<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut at = [0; 19];
        for (slot, c) in at.iter_mut().zip(Column::ALL) {
            *slot = names
                .iter()
                .position(|n| n.as_ref() == c.name())
                .ok_or_else(|| format!("the result has no column {}", c.name()))?;
        }
        let section = names.iter().position(|n| n.as_ref() == SECTION);
        Ok(Self(at, section))
    }

    fn at(&self, c: Column) -> usize {
        self.0[c as usize]
    }
}

/// A row of either backend, read by position (from [`Positions`]).
pub(crate) trait RowValues<'r> {
    fn int(&self, i: usize) -> Result<Option<i64>, String>;
    fn text(&self, i: usize) -> Result<Option<&'r str>, String>;
}

impl<'a> EventRef<'a> {
    /// Reads a row by the column names of `at`.
    pub(crate) fn read(r: &impl RowValues<'a>, at: &Positions) -> Result<Self, String> {
        let int = |c: Column| r.int(at.at(c));
        let text = |c: Column| r.text(at.at(c));
        Ok(EventRef {
            id: int(Column::Id)?.unwrap_or_default(),
            ts: int(Column::Ts)?.unwrap_or_default(),
            received: int(Column::Received)?.unwrap_or_default(),
            host: text(Column::Host)?,
            process: text(Column::Process)?,
            pid: int(Column::Pid)?,
            facility: text(Column::Facility)?,
            severity: text(Column::Severity)?,
            user: text(Column::User)?,
            source_host: text(Column::SourceHost)?,
            source_port: int(Column::SourcePort)?,
            dest_host: text(Column::DestHost)?,
            dest_port: int(Column::DestPort)?,
            protocol: text(Column::Protocol)?,
            message: text(Column::Message)?.unwrap_or_default(),
            raw: text(Column::Raw)?.unwrap_or_default(),
            parsed: int(Column::Parsed)?.unwrap_or_default(),
            source: text(Column::Source)?.unwrap_or_default(),
            extra: text(Column::Extra)?,
            section: match at.1 {
                Some(i) => r.text(i)?,
                None => None,
            },
        })
    }
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
pub type SqlLog<'a> = &'a mut dyn FnMut(&str, &[Value<'_>]);

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
    /// Streams the rows of the event tables `from` that match `filter`,
    /// merged oldest first (by `ts`, then section, then id), each with its
    /// section in [`EventRef::section`], at most `limit`; returns how many
    /// were passed to `sink`. On SQLite the rows are read at the C API on
    /// one of the pool's connections, on the calling thread (it blocks for
    /// the whole scan).
    pub async fn search_events(
        &self,
        from: &[SectionTable],
        filter: &Filter,
        limit: Option<u64>,
        log: SqlLog<'_>,
        sink: RowSink<'_>,
    ) -> Result<u64, Error> {
        if limit == Some(0) || from.is_empty() {
            return Ok(0);
        }
        check_union(from)?;
        let mut plans = Vec::with_capacity(from.len());
        for t in from {
            // The rows after a resume point are few: no index probes.
            plans.push(match t.after {
                Some(_) => None,
                None => self.grep_plan(&t.table, filter, log).await?,
            });
        }
        let q = select_rows(self, from, &plans, filter, limit);
        log(q.text(), q.binds());
        let mut sent = 0u64;
        let mut deliver = |row: &EventRef<'_>| -> Result<bool, Error> {
            if filter.has_residual() && !filter.matches_residual(row.raw) {
                return Ok(true);
            }
            sink(row).map_err(|err| Error::Io {
                what: "output".into(),
                err,
            })?;
            sent += 1;
            Ok(limit.is_none_or(|n| sent < n))
        };
        let what = describe(from);
        match self {
            Database::Sqlite(db) => super::sqlite::search(&db.pool, &q, &what, &mut deliver).await,
            Database::Mysql(db) => super::mysql::search(&db.pool, &q, &what, &mut deliver).await,
        }?;
        Ok(sent)
    }

    /// Number of rows of `table` that match `filter`.
    pub async fn count_events(
        &self,
        table: &Ident,
        filter: &Filter,
        log: SqlLog<'_>,
    ) -> Result<u64, Error> {
        let plan = self.grep_plan(table, filter, log).await?;
        let residual = filter.has_residual();
        let mut q = self.sql(if residual {
            "SELECT raw"
        } else {
            "SELECT COUNT(*) AS n"
        });
        write_from_where(&mut q, table, plan.as_ref(), filter);
        log(q.text(), q.binds());
        let e = |e| query_err(table, e);
        if !residual {
            let n: N = self.fetch_one(&q).await.map_err(e)?;
            return Ok(to_u64(n.n));
        }
        let mut n = 0u64;
        self.for_each(&q, |r: Raw| n += u64::from(filter.matches_residual(&r.raw)))
            .await
            .map_err(e)?;
        Ok(n)
    }

    /// The `top` most frequent values of `column` (from [`stats_column`])
    /// among the matching rows of the tables `from` together, most frequent
    /// first, ties by value; NULL is `None`.
    pub async fn event_stats(
        &self,
        from: &[SectionTable],
        filter: &Filter,
        column: &'static str,
        top: Option<u64>,
        log: SqlLog<'_>,
    ) -> Result<Vec<(Option<StatKey>, u64)>, Error> {
        check_union(from)?;
        let int = INT_COLUMNS.contains(&column);
        let what = describe(from);
        let e = |e| Error::db("search", &what, e);
        if filter.has_residual() {
            // The regexes are checked here: every matching row's value is counted.
            let mut counts: HashMap<Option<StatKey>, u64> = HashMap::new();
            for t in from {
                let plan = self.grep_plan(&t.table, filter, log).await?;
                let mut q = self.sql("SELECT ");
                q.push(column).push(" AS v, raw");
                write_from_where(&mut q, &t.table, plan.as_ref(), filter);
                log(q.text(), q.binds());
                let e = |e| query_err(&t.table, e);
                if int {
                    self.for_each(&q, |r: IntRaw| {
                        if filter.matches_residual(&r.raw) {
                            *counts.entry(r.v.map(StatKey::Int)).or_default() += 1;
                        }
                    })
                    .await
                    .map_err(e)?;
                } else {
                    self.for_each(&q, |r: TextRaw| {
                        if filter.matches_residual(&r.raw) {
                            *counts.entry(r.v.map(StatKey::Text)).or_default() += 1;
                        }
                    })
                    .await
                    .map_err(e)?;
                }
            }
            let mut v: Vec<_> = counts.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if let Some(n) = top {
                v.truncate(usize::try_from(n).unwrap_or(usize::MAX));
            }
            return Ok(v);
        }
        let mut plans = Vec::with_capacity(from.len());
        for t in from {
            plans.push(self.grep_plan(&t.table, filter, log).await?);
        }
        // One table: grouped in place. Several: each grouped, the groups
        // summed by value (the backend holds the groups, not this process).
        let mut q = self.sql("");
        let several = from.len() > 1;
        if several {
            q.push(match self.backend() {
                Backend::Sqlite => "SELECT v, SUM(n) AS n FROM (",
                // SUM of integers is a DECIMAL in MariaDB.
                Backend::Mysql => "SELECT v, CAST(SUM(n) AS SIGNED) AS n FROM (",
            });
        }
        for (i, (t, plan)) in from.iter().zip(&plans).enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            let mut arm = Sql::new(self.backend());
            arm.push("SELECT ")
                .push(column)
                .push(" AS v, COUNT(*) AS n");
            write_from_where(&mut arm, &t.table, plan.as_ref(), filter);
            arm.push(" GROUP BY ").push(column);
            q.append(&arm);
        }
        if several {
            q.push(") AS u GROUP BY v");
        }
        q.push(" ORDER BY n DESC, v");
        if let Some(n) = top {
            q.push(" LIMIT ").bind(sql_limit(n));
        }
        log(q.text(), q.binds());
        Ok(if int {
            let rows: Vec<IntCount> = self.fetch_all(&q).await.map_err(e)?;
            rows.into_iter()
                .map(|r| (r.v.map(StatKey::Int), to_u64(r.n)))
                .collect()
        } else {
            let rows: Vec<TextCount> = self.fetch_all(&q).await.map_err(e)?;
            rows.into_iter()
                .map(|r| (r.v.map(StatKey::Text), to_u64(r.n)))
                .collect()
        })
    }
}

#[derive(sqlx::FromRow)]
struct N {
    n: i64,
}

#[derive(sqlx::FromRow)]
struct Raw {
    raw: String,
}

#[derive(sqlx::FromRow)]
struct IntCount {
    v: Option<i64>,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct TextCount {
    v: Option<String>,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct IntRaw {
    v: Option<i64>,
    raw: String,
}

#[derive(sqlx::FromRow)]
struct TextRaw {
    v: Option<String>,
    raw: String,
}

/// ` FROM <table> WHERE <filter>`, narrowed by the search index when
/// there is a plan: on SQLite the table joined to the FTS5 candidates
/// (indexed rows that have every trigram of a pattern, and every row above
/// the index's mark; the candidates drive the join, CROSS JOIN fixes the
/// loop order), on MariaDB the candidate id ranges added to the WHERE. The
/// filter still decides.
fn write_from_where<'f>(
    w: &mut Sql<'f>,
    table: &Ident,
    plan: Option<&'f Narrowing>,
    filter: &'f Filter,
) {
    match plan {
        Some(Narrowing::Fts(p)) => {
            debug_assert_eq!(p.fts, super::grep_index::fts_table(table));
            w.push(" FROM (SELECT rowid AS cand FROM ")
                .table(table, "$grep")
                .push(" WHERE ")
                .table(table, "$grep")
                .push(" MATCH ")
                .bind(p.expr.as_str())
                .push(" AND rowid <= ")
                .bind(p.upto)
                .push(" UNION ALL SELECT id FROM ")
                .table(table, "")
                .push(" WHERE id > ")
                .bind(p.upto)
                .push(") AS c CROSS JOIN ")
                .table(table, "")
                .push(" ON ")
                .table(table, "")
                .push(".id = c.cand");
        }
        _ => {
            w.push(" FROM ").table(table, "");
        }
    }
    filter.write_where(w);
    if let Some(Narrowing::Ranges(p)) = plan {
        w.and();
        p.write(w);
    }
}

pub(crate) fn query_err(table: &Ident, e: impl std::fmt::Display + 'static) -> Error {
    Error::db("search", table.as_str(), e)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Limit bound into SQL (both backends take a signed 64-bit LIMIT).
fn sql_limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `SELECT <every column>, <section> AS section FROM ... WHERE ...`, one
/// arm per table joined by `UNION ALL`, `ORDER BY ts, section, id [LIMIT
/// n]`; `LIMIT` only when no residual (Rust-side) check can drop rows after
/// the SQL. With a limit and several tables, each arm is ordered and
/// limited on its own first, so that a backend keeps only the first rows
/// of each table (SQLite merges sorted arms; MariaDB sorts their union).
fn select_rows<'f>(
    db: &Database,
    from: &'f [SectionTable],
    plans: &'f [Option<Narrowing>],
    filter: &'f Filter,
    limit: Option<u64>,
) -> Sql<'f> {
    let limit = limit.filter(|_| !filter.has_residual());
    let wrap = limit.is_some() && from.len() > 1;
    let sqlite = db.backend() == Backend::Sqlite;
    let mut q = Sql::new(db.backend());
    for (i, (t, plan)) in from.iter().zip(plans).enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        // Each arm is a statement of its own (its own WHERE).
        let mut arm = Sql::new(db.backend());
        if wrap {
            // SQLite takes no parenthesized arm, only a subquery.
            arm.push(if sqlite { "SELECT * FROM (" } else { "(" });
        }
        arm.push("SELECT ");
        for (i, c) in ROW_COLUMNS.iter().enumerate() {
            if i > 0 {
                arm.push(", ");
            }
            arm.push(c);
        }
        arm.push(", ").bind(t.section.as_str()).push(" AS section");
        write_from_where(&mut arm, &t.table, plan.as_ref(), filter);
        if let Some(a) = t.after {
            arm.and().push("id > ").bind(a);
        }
        if let Some(u) = t.upto {
            arm.and().push("id <= ").bind(u);
        }
        if let (true, Some(n)) = (wrap, limit) {
            arm.push(" ORDER BY ts, id LIMIT ").bind(sql_limit(n));
            arm.push(if sqlite { ") AS a" } else { ")" });
        }
        q.append(&arm);
    }
    q.push(" ORDER BY ts, section, id");
    if let Some(n) = limit {
        q.push(" LIMIT ").bind(sql_limit(n));
    }
    q
}

/// An event table and the section its rows are shown under; a search
/// reads its rows with ids in `(after, upto]` (`--follow`'s resume points).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionTable {
    pub section: String,
    pub table: Ident,
    pub after: Option<i64>,
    pub upto: Option<i64>,
}

impl SectionTable {
    /// Every row of `table`, shown under `section`.
    pub fn new(section: String, table: Ident) -> Self {
        Self {
            section,
            table,
            after: None,
            upto: None,
        }
    }
}

/// The name of the column that carries a row's section.
pub const SECTION: &str = "section";

/// Most tables one search reads together: SQLite joins at most 500 arms
/// in one compound statement.
pub const MAX_TABLES: usize = 400;

fn check_union(from: &[SectionTable]) -> Result<(), Error> {
    if from.len() > MAX_TABLES {
        return Err(Error::ConfigValue {
            key: "-s".into(),
            message: format!(
                "{} event tables are more than one search reads together ({MAX_TABLES}); \
                 name a section with -s",
                from.len()
            ),
        });
    }
    Ok(())
}

/// The tables of a search, for messages.
fn describe(from: &[SectionTable]) -> String {
    match from {
        [one] => one.table.as_str().to_owned(),
        _ => format!(
            "event tables {}",
            from.iter()
                .map(|t| t.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Receives each row read; `Ok(false)` stops the scan.
pub(crate) type Deliver<'d> = &'d mut dyn FnMut(&EventRef<'_>) -> Result<bool, Error>;

pub(crate) use super::sqlite::stmt::utf8;
