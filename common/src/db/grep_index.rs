//! The `--grep` search index: the planner of both backends, and SQLite's
//! FTS5 index (MariaDB's block bitmap is [`super::mysql::grep_bits`]).
//!
//! Each event table `t` has a contentless FTS5 table `"t$grep"` with the
//! trigram tokenizer and `detail='none'` (rowids only, about +30 % on the
//! database size). It is filled *behind* ingest, never inside the insert
//! transaction: [`index_step`] copies the next rows above the high-water mark
//! `grep_index.indexed_upto` and advances the mark in one transaction
//! (siemparse runs it when its input is idle, and `siemparse --index` runs
//! it to the end). `$` cannot occur in a section's table name, so the index
//! never collides with an event table.
//!
//! A query never trusts the index alone: it only narrows. Rows with
//! `id <= indexed_upto` are candidates when the index says they contain
//! every trigram of a pattern (ASCII and Unicode case folded, which is a
//! superset of the ASCII-only folding of `--grep`); rows above the mark are
//! all candidates; then the unchanged predicate of [`crate::filter`] decides.
//! So the results are exactly those of a scan, only faster when a pattern is
//! selective. [`Database::grep_plan`] decides per query whether the index is
//! worth it.

use rusqlite::OptionalExtension;

use super::Database;
use super::mysql::grep_bits::RangePlan;
use super::search::SqlLog;
use crate::Error;
use crate::filter::Filter;
use crate::ident::Ident;

/// Shortest pattern (in characters) the trigram index can narrow.
pub const MIN_CHARS: usize = 3;
/// Most trigrams of one pattern put into the MATCH expression.
const MAX_TERMS: usize = 24;

/// Name of the search index table of event table `t` (unquoted): the FTS5
/// table on SQLite, the bitmap on MariaDB.
pub fn fts_table(t: &Ident) -> String {
    format!("{t}{}", super::events::GREP_SUFFIX)
}

/// DDL of the index of `t` (idempotent).
pub(crate) fn sqlite_ddl(t: &Ident) -> String {
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS \"{t}$grep\" USING fts5(raw, content='', \
         detail='none', columnsize=0, tokenize='trigram')"
    )
}

/// An FTS5 MATCH expression that every row containing one of `patterns`
/// (ASCII case-insensitively) matches: per pattern, the AND of its
/// trigrams; patterns OR'ed. `None` when a pattern is too short to narrow
/// (then only a scan is exact).
pub fn match_expr(patterns: &[String]) -> Option<String> {
    if patterns.is_empty() {
        return None;
    }
    let mut alternatives = Vec::with_capacity(patterns.len());
    for p in patterns {
        let chars: Vec<char> = p.chars().collect();
        if chars.len() < MIN_CHARS {
            return None;
        }
        let mut grams: Vec<String> = Vec::new();
        for w in chars.windows(3) {
            // FTS5 reads its query as a C string: a NUL would end it.
            if w.contains(&'\0') {
                continue;
            }
            let g: String = w.iter().collect();
            if !grams.iter().any(|x| x.eq_ignore_ascii_case(&g)) {
                grams.push(g);
            }
        }
        if grams.is_empty() {
            return None;
        }
        if grams.len() > MAX_TERMS {
            // Fewer terms only widen the match: evenly spaced ones keep it selective.
            let n = grams.len();
            grams = (0..MAX_TERMS)
                .map(|i| grams[i * (n - 1) / (MAX_TERMS - 1)].clone())
                .collect();
        }
        let terms: Vec<String> = grams
            .iter()
            .map(|g| format!("\"{}\"", g.replace('"', "\"\"")))
            .collect();
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    Some(alternatives.join(" OR "))
}

/// How a query uses the SQLite index: candidates are the rows of the FTS
/// table matching `expr` with `rowid <= upto`, and every row above `upto`.
#[derive(Debug, Clone)]
pub struct GrepPlan {
    pub fts: String,
    pub expr: String,
    pub upto: i64,
}

/// How a query narrows `--grep` with the search index of its backend.
#[derive(Debug, Clone)]
pub enum Narrowing {
    /// SQLite: joined to the FTS5 candidates.
    Fts(GrepPlan),
    /// MariaDB: id ranges of the bitmap's candidate blocks (see [`super::mysql::grep_bits`]).
    Ranges(RangePlan),
}

/// Environment variable overriding the planner: `never` (always scan),
/// `always` (use the index whenever it can narrow), `auto` (default).
/// For benchmarks and tests; results are the same in every mode. With
/// `never`, siemparse also leaves the index alone behind ingest.
pub const MODE_ENV: &str = "SIEMSTRESS_GREP_INDEX";

/// The planner mode of [`MODE_ENV`]: `Some(true)` always, `Some(false)`
/// auto, `None` never.
pub fn mode() -> Option<bool> {
    match std::env::var(MODE_ENV).as_deref() {
        Ok("never") => None,
        Ok("always") => Some(true),
        _ => Some(false),
    }
}

/// A narrowing that selects at most a tenth of the table (and more than
/// this many rows) is not worth it: random row look-ups would be slower
/// than the scan.
const MIN_CAP: i64 = 10_000;
/// Most id ranges put into a MariaDB query.
const MAX_RANGES: usize = 1000;
/// Most id ranges even with `SIEMSTRESS_GREP_INDEX=always` (two bound
/// values each, under MariaDB's 65,535 placeholders).
const MAX_RANGES_ALWAYS: usize = 20_000;

impl Database {
    /// Whether (and how) a query on `t` with `filter` should use the
    /// search index: only when a pattern is selective (fewer candidates
    /// than a tenth of the table) and the candidates plus the unindexed tail
    /// are fewer than the rows of the time window (a short window is
    /// cheaper to scan on `ts`). The probes go to `log`.
    pub(crate) async fn grep_plan(
        &self,
        t: &Ident,
        filter: &Filter,
        log: SqlLog<'_>,
    ) -> Result<Option<Narrowing>, Error> {
        let Some(always) = mode() else {
            return Ok(None);
        };
        if filter.grep.include.is_empty() || !filter.id.is_empty() {
            return Ok(None);
        }
        // What the backend narrows by: an FTS5 expression or trigram codes.
        let include = &filter.grep.include;
        let grams: Option<Vec<Vec<u32>>> = include
            .iter()
            .map(|p| super::mysql::grep_bits::pattern_grams(p))
            .collect();
        let expr = match self {
            Database::Sqlite(_) => match_expr(include),
            Database::Mysql(_) => grams.as_ref().map(|_| String::new()),
        };
        let (Some(expr), Some(grams)) = (expr, grams) else {
            return Ok(None);
        };
        let Some(upto) = self.index_mark(t).await? else {
            return Ok(None);
        };
        let max_id = if always { 0 } else { self.max_id(t).await? };
        let cap = if always {
            i64::MAX
        } else {
            (max_id / 10).max(MIN_CAP)
        };
        let (plan, candidates) = match self {
            Database::Sqlite(_) => {
                let candidates = if always {
                    0
                } else {
                    self.fts_candidates(t, &expr, upto, cap, log).await?
                };
                let fts = fts_table(t);
                (Narrowing::Fts(GrepPlan { fts, expr, upto }), candidates)
            }
            Database::Mysql(db) => {
                let p = super::mysql::grep_bits::plan(&db.pool, t, &grams, upto, log).await?;
                if p.ranges.len()
                    > if always {
                        MAX_RANGES_ALWAYS
                    } else {
                        MAX_RANGES
                    }
                {
                    return Ok(None);
                }
                let n = p.rows();
                (Narrowing::Ranges(p), n)
            }
        };
        if always {
            return Ok(Some(plan));
        }
        if candidates >= cap {
            return Ok(None);
        }
        let needed = candidates + (max_id - upto).max(0);
        if (filter.since.is_some() || filter.until.is_some())
            && self.window_rows(t, filter, needed + 1, log).await? <= needed
        {
            return Ok(None);
        }
        Ok(Some(plan))
    }

    /// The high-water mark of the search index of `t`, if there is one and
    /// the row at the mark is still the one indexed (ids handed out again
    /// after the newest rows were deleted would not be in the index).
    async fn index_mark(&self, t: &Ident) -> Result<Option<i64>, Error> {
        let err = |e| Error::db("search index of", t.as_str(), e);
        let mut q = self.sql("SELECT indexed_upto, upto_received FROM grep_index WHERE tbl = ");
        q.bind(t.as_str());
        let mark: Option<Mark> = self.fetch_optional(&q).await.map_err(err)?;
        let Some(mark) = mark.filter(|m| m.indexed_upto > 0) else {
            return Ok(None);
        };
        let mut q = self.sql("SELECT received FROM ");
        q.table(t, "").push(" WHERE id = ").bind(mark.indexed_upto);
        let received: Option<Received> = self.fetch_optional(&q).await.map_err(err)?;
        let received = received.map(|r| r.received);
        Ok(
            (received.is_some()
                && (mark.upto_received.is_none() || received == mark.upto_received))
                .then_some(mark.indexed_upto),
        )
    }

    /// Rows of `t` in the time window of `filter`, counted up to `limit`.
    async fn window_rows(
        &self,
        t: &Ident,
        filter: &Filter,
        limit: i64,
        log: SqlLog<'_>,
    ) -> Result<i64, Error> {
        let (since, until) = (
            filter.since.unwrap_or(i64::MIN),
            filter.until.unwrap_or(i64::MAX),
        );
        let mut q = self.sql("SELECT count(*) AS n FROM (SELECT 1 FROM ");
        q.table(t, "").push(" WHERE ts >= ").bind(since);
        q.push(" AND ts < ").bind(until);
        q.push(" LIMIT ").bind(limit).push(") AS w");
        log(q.text(), q.binds());
        let n: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("search index of", t.as_str(), e))?;
        Ok(n.n)
    }

    /// Indexed rows of `t` matching the FTS expression, counted up to `cap`.
    async fn fts_candidates(
        &self,
        t: &Ident,
        expr: &str,
        upto: i64,
        cap: i64,
        log: SqlLog<'_>,
    ) -> Result<i64, Error> {
        let mut q = self.sql("SELECT count(*) AS n FROM (SELECT rowid FROM ");
        q.table(t, "$grep").push(" WHERE ").table(t, "$grep");
        q.push(" MATCH ")
            .bind(expr)
            .push(" AND rowid <= ")
            .bind(upto);
        q.push(" LIMIT ").bind(cap).push(")");
        log(q.text(), q.binds());
        let n: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("search index of", t.as_str(), e))?;
        Ok(n.n)
    }
}

#[derive(sqlx::FromRow)]
struct Mark {
    indexed_upto: i64,
    upto_received: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Received {
    received: i64,
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

/// Indexes the next (at most) `max_rows` rows of `t` above the high-water
/// mark and advances it, in one transaction that takes the write lock
/// first (so two indexers never index the same rows). Returns the new mark
/// and how many rows were indexed (0: the index is complete).
pub(crate) fn index_step(
    conn: &mut rusqlite::Connection,
    t: &Ident,
    max_rows: i64,
) -> Result<(i64, u64), Error> {
    let err = |e: rusqlite::Error| Error::db("index", t.as_str(), e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let mark: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT indexed_upto, upto_received FROM grep_index WHERE tbl = ?",
            [t.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(err)?;
    let mut upto = 0;
    if let Some((mark, mark_received)) = mark.filter(|m| m.0 > 0) {
        let received: Option<i64> = tx
            .query_row(
                &format!("SELECT received FROM \"{t}\" WHERE id = ?"),
                [mark],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if received.is_some() && (mark_received.is_none() || received == mark_received) {
            upto = mark;
        } else {
            // Ids were handed out again: start over.
            tx.execute(
                &format!("INSERT INTO \"{t}$grep\" (\"{t}$grep\") VALUES ('delete-all')"),
                [],
            )
            .map_err(err)?;
        }
    }
    let next: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT max(id) FROM (SELECT id FROM \"{t}\" WHERE id > ? ORDER BY id LIMIT ?)"
            ),
            [upto, max_rows],
            |r| r.get(0),
        )
        .map_err(err)?;
    let Some(next) = next else {
        if upto == 0 {
            tx.execute("DELETE FROM grep_index WHERE tbl = ?", [t.as_str()])
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        return Ok((upto, 0));
    };
    let n = tx
        .execute(
            &format!(
                "INSERT INTO \"{t}$grep\" (rowid, raw) SELECT id, raw FROM \"{t}\" \
                 WHERE id > ? AND id <= ?"
            ),
            [upto, next],
        )
        .map_err(err)?;
    tx.execute(
        &format!(
            "INSERT INTO grep_index (tbl, indexed_upto, upto_received, updated) \
             VALUES (?1, ?2, (SELECT received FROM \"{t}\" WHERE id = ?2), ?3) \
             ON CONFLICT (tbl) DO UPDATE SET indexed_upto = excluded.indexed_upto, \
             upto_received = excluded.upto_received, updated = excluded.updated"
        ),
        rusqlite::params![t.as_str(), next, crate::time::now_ms()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok((next, n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_expressions() {
        assert_eq!(match_expr(&["ab".into()]), None);
        assert_eq!(match_expr(&[]), None);
        assert_eq!(
            match_expr(&["Fail".into()]).unwrap(),
            "(\"Fai\" AND \"ail\")"
        );
        assert_eq!(
            match_expr(&["a\"b%".into(), "xyz".into()]).unwrap(),
            "(\"a\"\"b\" AND \"\"\"b%\") OR (\"xyz\")"
        );
        // Repeated trigrams (any ASCII case) appear once.
        assert_eq!(match_expr(&["aaaAAA".into()]).unwrap(), "(\"aaa\")");
        assert_eq!(match_expr(&["äöü".into()]).unwrap(), "(\"äöü\")");
        let distinct: String = (0x4e00..0x4e64).filter_map(char::from_u32).collect();
        let long = match_expr(&[distinct]).unwrap();
        assert_eq!(long.matches(" AND ").count(), MAX_TERMS - 1);
        assert_eq!(match_expr(&["a\0b".into()]), None);
    }
}
