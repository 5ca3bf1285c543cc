//! The `--grep` search index (SQLite only).
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
//! selective. [`plan`] decides per query whether the index is worth it.

use rusqlite::OptionalExtension;
use sqlx::SqlitePool;

use super::search::SqlLog;
use crate::Error;
use crate::filter::{BoundValue, Filter};
use crate::ident::Ident;

/// Shortest pattern (in characters) the trigram index can narrow.
pub const MIN_CHARS: usize = 3;
/// Most trigrams of one pattern put into the MATCH expression.
const MAX_TERMS: usize = 24;

/// Name of the FTS5 table of event table `t` (unquoted).
pub fn fts_table(t: &Ident) -> String {
    format!("{t}$grep")
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

/// How a query uses the index: candidates are the rows of the FTS table
/// matching `expr` with `rowid <= upto`, and every row above `upto`.
#[derive(Debug, Clone)]
pub struct GrepPlan {
    pub fts: String,
    pub expr: String,
    pub upto: i64,
}

/// Environment variable overriding the planner: `never` (always scan),
/// `always` (use the index whenever it can narrow), `auto` (default).
/// For benchmarks and tests; results are the same in every mode.
pub const MODE_ENV: &str = "SIEMSTRESS_GREP_INDEX";

/// Whether (and how) a query on `t` with `filter` should use the index:
/// only when a pattern is selective (fewer candidates than a tenth of the
/// table) and the candidates plus the unindexed tail are fewer than the
/// rows of the time window (a short window is cheaper to scan on `ts`).
pub(crate) async fn plan(
    pool: &SqlitePool,
    t: &Ident,
    filter: &Filter,
    log: SqlLog<'_>,
) -> Result<Option<GrepPlan>, Error> {
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    if filter.grep.include.is_empty() || !filter.id.is_empty() || mode == "never" {
        return Ok(None);
    }
    let Some(expr) = match_expr(&filter.grep.include) else {
        return Ok(None);
    };
    let err = |e| Error::db("search index of", t.as_str(), e);
    let mark: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT indexed_upto, upto_received FROM grep_index WHERE tbl = ?")
            .bind(t.as_str())
            .fetch_optional(pool)
            .await
            .map_err(err)?;
    let Some((upto, upto_received)) = mark.filter(|m| m.0 > 0) else {
        return Ok(None);
    };
    // Ids handed out again (the newest rows deleted) would not be in the index.
    let received: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT received FROM \"{t}\" WHERE id = ?"
    )))
    .bind(upto)
    .fetch_optional(pool)
    .await
    .map_err(err)?;
    if received.is_none() || (upto_received.is_some() && received != upto_received) {
        return Ok(None);
    }
    let fts = fts_table(t);
    if mode == "always" {
        return Ok(Some(GrepPlan { fts, expr, upto }));
    }
    let max_id: Option<i64> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT max(id) FROM \"{t}\"")))
            .fetch_one(pool)
            .await
            .map_err(err)?;
    let max_id = max_id.unwrap_or(0);
    let tail = (max_id - upto).max(0);
    let cap = (max_id / 10).max(10_000);
    let probe = format!(
        "SELECT count(*) FROM (SELECT rowid FROM \"{fts}\" WHERE \"{fts}\" MATCH ? \
         AND rowid <= ? LIMIT ?)"
    );
    log(
        &probe,
        &[
            BoundValue::Text(expr.clone()),
            BoundValue::Int(upto),
            BoundValue::Int(cap),
        ],
    );
    let candidates: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(probe))
        .bind(&expr)
        .bind(upto)
        .bind(cap)
        .fetch_one(pool)
        .await
        .map_err(err)?;
    if candidates >= cap {
        return Ok(None);
    }
    let needed = candidates + tail;
    if filter.since.is_some() || filter.until.is_some() {
        let since = filter.since.unwrap_or(i64::MIN);
        let until = filter.until.unwrap_or(i64::MAX);
        let window = format!(
            "SELECT count(*) FROM (SELECT 1 FROM \"{t}\" WHERE ts >= ? AND ts < ? LIMIT ?)"
        );
        log(
            &window,
            &[
                BoundValue::Int(since),
                BoundValue::Int(until),
                BoundValue::Int(needed + 1),
            ],
        );
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(window))
            .bind(since)
            .bind(until)
            .bind(needed + 1)
            .fetch_one(pool)
            .await
            .map_err(err)?;
        if rows <= needed {
            return Ok(None);
        }
    }
    Ok(Some(GrepPlan { fts, expr, upto }))
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
