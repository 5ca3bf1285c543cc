//! The `--grep` search index on MariaDB: a block trigram bitmap.
//!
//! MariaDB has no substring index (FULLTEXT matches words), so each event
//! table `t` gets a table `` `t$grep` `` (`gram`, `word`, `bits`) of its
//! own, created with the event table (`$` cannot occur in a section's table
//! name). Rows of `t` are grouped in blocks of [`BLOCK_ROWS`] ids; bit
//! `block % 64` of the row `(gram, block / 64)` is set when some row of the
//! block contains the trigram `gram`: three bytes of `raw` with ASCII
//! letters lower-cased, as `b0 << 16 | b1 << 8 | b2`. A row matching
//! `--grep p` (ASCII case-insensitive, every other byte exact) contains every
//! such trigram of `p`, so the blocks having all of them are a superset of
//! the matching rows.
//!
//! Like SQLite's FTS5 index it is filled *behind* ingest: [`index_step`]
//! reads the rows above the high-water mark `grep_index.indexed_upto` in id
//! order, ORs their block bits together client-side and upserts them
//! (`bits = bits | VALUES(bits)`), then advances the mark, in one
//! transaction that locks the table's `grep_index` row first (two indexers
//! take turns). A query (see [`super::grep_index`]) only narrows: it adds
//! `AND (id BETWEEN ? AND ? OR ... OR id > mark)` to the unchanged exact
//! predicate of [`crate::filter`], so results are those of a scan.
//!
//! **Ids are not committed in order.** Many hosts insert concurrently, and
//! an id below `max(id)` may belong to a transaction still open: a gap now,
//! a row later. The mark therefore only advances through ids without gaps.
//! At a gap the indexer stops and records `pending_upto` (the highest id
//! present) and `pending_since` (now, by the server's clock); a pass at
//! least [`GRACE_MS`] later may step over the gaps up to `pending_upto`,
//! since a gap that old is a rollback or a delete, not an insert in flight.
//!
//! Limits:
//! - a transaction that stays open longer than [`GRACE_MS`] after a later
//!   id was committed, or a row inserted later with an explicit id below
//!   the mark, is not in the index: `--grep` misses it (until `--clear`);
//! - with `auto_increment_increment` > 1 (Galera) every id step is a gap:
//!   the index then lags by about [`GRACE_MS`];
//! - deleted rows keep their bits (a block can only get more candidates);
//!   when the row at the mark is gone or was replaced (checked by its
//!   `received` time), queries scan and the indexer starts over (ids below
//!   a deleted mark count as settled; deleted rows above it that were never
//!   indexed are a gap and wait out the grace period);
//! - a pattern shorter than three bytes cannot be narrowed (scan).

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::{MySql, MySqlPool, QueryBuilder, Row};

use crate::Error;
use crate::db::Backend;
use crate::db::search::SqlLog;
use crate::db::sql::{Sql, query_as};
use crate::ident::Ident;

/// Ids per block: the unit of narrowing.
pub const BLOCK_ROWS: i64 = 1024;
/// Blocks per bitmap word (one `BIGINT UNSIGNED`).
const WORD_BLOCKS: i64 = 64;
/// Ids per bitmap word.
pub(crate) const WORD_ROWS: i64 = BLOCK_ROWS * WORD_BLOCKS;
/// Most trigrams of one pattern looked up (evenly spaced: fewer only widen).
const MAX_GRAMS: usize = 32;
/// An id gap older than this is a rollback or a delete, not an insert in
/// flight: the indexer may step over it.
pub const GRACE_MS: i64 = 120_000;
/// Overrides [`GRACE_MS`] (milliseconds), for tests.
pub const GRACE_ENV: &str = "SIEMSTRESS_GREP_INDEX_GRACE_MS";
/// Bitmap rows per upsert statement (3 placeholders each).
const ROWS_PER_UPSERT: usize = 2000;

/// DDL of the bitmap of `t` (idempotent).
pub(crate) fn ddl(t: &Ident) -> String {
    let bitmap = Backend::Mysql.quote(&format!("{t}$grep"));
    format!(
        "CREATE TABLE IF NOT EXISTS {bitmap} (
  gram INT UNSIGNED NOT NULL,
  word INT UNSIGNED NOT NULL,
  bits BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (gram, word)
) ENGINE=InnoDB"
    )
}

/// The trigram of three bytes, ASCII letters lower-cased.
fn gram(w: &[u8]) -> u32 {
    w.iter()
        .fold(0, |g, b| (g << 8) | u32::from(b.to_ascii_lowercase()))
}

/// The distinct trigrams of a pattern (at most [`MAX_GRAMS`]); `None` when
/// it is shorter than three bytes (nothing to narrow).
pub fn pattern_grams(p: &str) -> Option<Vec<u32>> {
    let mut g: Vec<u32> = p.as_bytes().windows(3).map(gram).collect();
    g.sort_unstable();
    g.dedup();
    if g.is_empty() {
        return None;
    }
    if g.len() > MAX_GRAMS {
        let n = g.len();
        g = (0..MAX_GRAMS)
            .map(|i| g[i * (n - 1) / (MAX_GRAMS - 1)])
            .collect();
    }
    Some(g)
}

/// Candidate id ranges of a query: the indexed blocks that may hold a
/// match (inclusive, coalesced, at most up to `upto`), and every id above
/// `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    pub ranges: Vec<(i64, i64)>,
    pub upto: i64,
}

impl RangePlan {
    /// Indexed ids covered by the ranges.
    pub fn rows(&self) -> i64 {
        self.ranges.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Writes `(id BETWEEN ? AND ? OR ... OR id > ?)`.
    pub(crate) fn write(&self, w: &mut Sql<'_>) {
        w.push("(");
        for &(a, b) in &self.ranges {
            w.push("id BETWEEN ")
                .bind(a)
                .push(" AND ")
                .bind(b)
                .push(" OR ");
        }
        w.push("id > ").bind(self.upto).push(")");
    }
}

/// Candidate blocks of `patterns` (OR) from the bitmap rows `(gram, word,
/// bits)`: per pattern the AND of its trigrams' bits, per word.
fn candidate_words(patterns: &[Vec<u32>], rows: &[(u32, u32, u64)]) -> HashMap<u32, u64> {
    let bits: HashMap<(u32, u32), u64> = rows.iter().map(|&(g, w, b)| ((g, w), b)).collect();
    let mut words: Vec<u32> = rows.iter().map(|r| r.1).collect();
    words.sort_unstable();
    words.dedup();
    let mut out = HashMap::new();
    for w in words {
        let any = patterns.iter().fold(0u64, |acc, grams| {
            acc | grams.iter().fold(u64::MAX, |and, g| {
                and & bits.get(&(*g, w)).copied().unwrap_or(0)
            })
        });
        if any != 0 {
            out.insert(w, any);
        }
    }
    out
}

/// Coalesced id ranges of the candidate blocks, cut at `upto`.
fn block_ranges(words: &HashMap<u32, u64>, upto: i64) -> Vec<(i64, i64)> {
    let mut blocks: Vec<i64> = words
        .iter()
        .flat_map(|(&w, &bits)| {
            (0..WORD_BLOCKS)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| i64::from(w) * WORD_BLOCKS + b)
        })
        .collect();
    blocks.sort_unstable();
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for b in blocks {
        let (lo, hi) = (b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS - 1).min(upto));
        if lo > upto {
            break;
        }
        match ranges.last_mut() {
            Some(last) if last.1 + 1 >= lo => last.1 = hi,
            _ => ranges.push((lo, hi)),
        }
    }
    ranges
}

/// The candidate ranges of `patterns` (each from [`pattern_grams`]) among
/// the rows indexed up to `upto`; logs the bitmap look-up.
pub(crate) async fn plan(
    pool: &MySqlPool,
    t: &Ident,
    patterns: &[Vec<u32>],
    upto: i64,
    log: SqlLog<'_>,
) -> Result<RangePlan, Error> {
    let mut all: Vec<u32> = patterns.concat();
    all.sort_unstable();
    all.dedup();
    let mut q = Sql::with(Backend::Mysql, "SELECT gram, word, bits FROM ");
    q.table(t, "$grep").push(" WHERE gram IN ");
    q.list(all.iter().map(|g| i64::from(*g)));
    q.push(" AND word <= ")
        .bind(upto / BLOCK_ROWS / WORD_BLOCKS);
    log(q.text(), q.binds());
    let rows: Vec<(u32, u32, u64)> = async {
        query_as::<MySql, (u32, u32, u64)>(&q)?
            .fetch_all(pool)
            .await
    }
    .await
    .map_err(|e| Error::db("read search index of", t.as_str(), e))?;
    let words = candidate_words(patterns, &rows);
    Ok(RangePlan {
        ranges: block_ranges(&words, upto),
        upto,
    })
}

/// Trigram bits of rows, block by block: a 2^24-bit set marks the grams
/// already seen in the current block (cleared at the block's end), so each
/// distinct gram of a block reaches the word map once.
struct Accumulator {
    seen: Vec<u64>,
    fresh: Vec<u32>,
    block: i64,
    words: HashMap<(u32, u32), u64>,
}

impl Accumulator {
    fn new() -> Self {
        Self {
            seen: vec![0; 1 << 18],
            fresh: Vec::new(),
            block: -1,
            words: HashMap::new(),
        }
    }

    fn add(&mut self, id: i64, raw: &[u8]) {
        let block = id / BLOCK_ROWS;
        if block != self.block {
            self.end_block();
            self.block = block;
        }
        let mut g = 0u32;
        for (i, b) in raw.iter().enumerate() {
            g = ((g << 8) | u32::from(b.to_ascii_lowercase())) & 0xff_ffff;
            if i < 2 {
                continue;
            }
            let (slot, bit) = ((g >> 6) as usize, 1u64 << (g & 63));
            if self.seen[slot] & bit == 0 {
                self.seen[slot] |= bit;
                self.fresh.push(g);
            }
        }
    }

    fn end_block(&mut self) {
        if self.block < 0 {
            return;
        }
        let word = u32::try_from(self.block / WORD_BLOCKS).unwrap_or(u32::MAX);
        let bit = 1u64 << (self.block % WORD_BLOCKS);
        for g in self.fresh.drain(..) {
            self.seen[(g >> 6) as usize] &= !(1u64 << (g & 63));
            *self.words.entry((g, word)).or_default() |= bit;
        }
    }

    /// The bitmap rows, sorted by key (two indexers lock in the same order).
    fn finish(mut self) -> Vec<(u32, u32, u64)> {
        self.end_block();
        let mut v: Vec<(u32, u32, u64)> = self
            .words
            .into_iter()
            .map(|((g, w), b)| (g, w, b))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Progress of one [`index_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The mark afterwards.
    pub upto: i64,
    /// Rows indexed.
    pub rows: u64,
    /// The step stopped at a gap in the ids that is not yet old enough.
    pub at_gap: bool,
}

fn grace_ms() -> i64 {
    std::env::var(GRACE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GRACE_MS)
}

/// The index state of `t`, locked until the transaction ends.
#[derive(Debug, sqlx::FromRow)]
struct Mark {
    indexed_upto: i64,
    upto_received: Option<i64>,
    pending_upto: Option<i64>,
    pending_since: Option<i64>,
}

/// Indexes the next (at most) `max_rows` rows of `t` above the mark,
/// stopping before a gap in the ids that is younger than [`GRACE_MS`], and
/// advances the mark, in one transaction holding the lock on the table's
/// `grep_index` row.
pub(crate) async fn index_step(pool: &MySqlPool, t: &Ident, max_rows: i64) -> Result<Step, Error> {
    let err = |e: sqlx::Error| Error::db("index", t.as_str(), e);
    let (table, bitmap) = (
        Backend::Mysql.quote(t.as_str()),
        Backend::Mysql.quote(&format!("{t}$grep")),
    );
    // The server's clock, not this host's: indexers on several hosts compare
    // each other's `pending_since`, and a host whose clock runs ahead would
    // end another's grace early (and step over an insert still in flight).
    let now: i64 = sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP() AS SIGNED) * 1000")
        .fetch_one(pool)
        .await
        .map_err(err)?;
    sqlx::query("INSERT IGNORE INTO grep_index (tbl, indexed_upto, updated) VALUES (?, 0, ?)")
        .bind(t.as_str())
        .bind(now)
        .execute(pool)
        .await
        .map_err(err)?;
    let mut tx = pool.begin().await.map_err(err)?;
    let mark: Mark = sqlx::query_as(
        "SELECT indexed_upto, upto_received, pending_upto, pending_since FROM grep_index \
         WHERE tbl = ? FOR UPDATE",
    )
    .bind(t.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(err)?;
    // Ids up to `settled` were committed (or given up) long enough ago:
    // gaps there are stepped over.
    let (mut upto, mut settled, mut reused) = (mark.indexed_upto, mark.indexed_upto, false);
    if upto > 0 {
        let received: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT received FROM {table} WHERE id = ?"
        )))
        .bind(upto)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
        reused = received.is_some_and(|r| mark.upto_received.is_some_and(|m| m != r));
        if received.is_none() || reused {
            // The row at the mark is gone (deleted: the ids below it are
            // settled) or another (ids handed out again: nothing is): start over.
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {bitmap}")))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            upto = 0;
            if reused {
                settled = 0;
            }
        }
    }
    // A pending gap counts unless ids were handed out again.
    let pending = mark.pending_upto.filter(|_| !reused);
    let grace_over = mark
        .pending_since
        .is_some_and(|since| now - since >= grace_ms());
    let pass = match pending {
        Some(p) if grace_over => p.max(settled),
        _ => settled,
    };
    let mut acc = Accumulator::new();
    let (mut last, mut last_received, mut rows, mut gap_at) =
        (upto, mark.upto_received, 0u64, None);
    {
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, received, raw FROM {table} WHERE id > ? ORDER BY id LIMIT ?"
        )))
        .bind(upto)
        .bind(max_rows)
        .fetch(&mut *tx);
        while let Some(r) = stream.try_next().await.map_err(err)? {
            let id: i64 = r.try_get(0).map_err(err)?;
            if id != last + 1 && id - 1 > pass {
                gap_at = Some(id);
                break;
            }
            acc.add(id, r.try_get_unchecked::<&[u8], _>(2).map_err(err)?);
            last = id;
            last_received = Some(r.try_get(1).map_err(err)?);
            rows += 1;
        }
    }
    for chunk in acc.finish().chunks(ROWS_PER_UPSERT) {
        let mut qb =
            QueryBuilder::<MySql>::new(format!("INSERT INTO {bitmap} (gram, word, bits) "));
        qb.push_values(chunk, |mut b, &(g, w, bits)| {
            b.push_bind(g).push_bind(w).push_bind(bits);
        });
        qb.push(" ON DUPLICATE KEY UPDATE bits = bits | VALUES(bits)");
        qb.build().execute(&mut *tx).await.map_err(err)?;
    }
    // A gap keeps the grace already running for it; a new one starts its
    // grace now (with every id present so far); without gaps ahead, none.
    let running = pending.is_some_and(|p| p > last);
    let (pending_upto, pending_since) = match gap_at {
        _ if running && (gap_at.is_none() || !grace_over) => {
            (mark.pending_upto, mark.pending_since)
        }
        None => (None, None),
        Some(_) => {
            let max: Option<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT MAX(id) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            (max, Some(now))
        }
    };
    sqlx::query(
        "UPDATE grep_index SET indexed_upto = ?, upto_received = ?, updated = ?, \
         pending_upto = ?, pending_since = ? WHERE tbl = ?",
    )
    .bind(last)
    .bind(last_received.filter(|_| last > 0))
    .bind(now)
    .bind(pending_upto)
    .bind(pending_since)
    .bind(t.as_str())
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(Step {
        upto: last,
        rows,
        at_gap: gap_at.is_some() && rows == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grams_fold_ascii_only() {
        assert_eq!(pattern_grams("ab"), None);
        assert_eq!(pattern_grams("ABC"), Some(vec![gram(b"abc")]));
        assert_eq!(gram(b"abc"), 0x61_62_63);
        // Repeats once; non-ASCII bytes are kept as they are.
        assert_eq!(pattern_grams("aaaAAA").unwrap().len(), 1);
        assert_eq!(pattern_grams("\u{c4}b").unwrap(), vec![0xc3_84_62]);
        let long: String = (0..200u8).map(|i| char::from(b'!' + i % 90)).collect();
        assert_eq!(pattern_grams(&long).unwrap().len(), MAX_GRAMS);
    }

    #[test]
    fn accumulator_and_candidates() {
        let mut acc = Accumulator::new();
        acc.add(1, b"Failed password");
        acc.add(2, b"accepted");
        acc.add(BLOCK_ROWS * 65 + 3, b"failed again");
        let rows = acc.finish();
        let fai = gram(b"fai");
        assert!(rows.contains(&(fai, 0, 1)));
        assert!(rows.contains(&(fai, 1, 2)));
        assert!(rows.contains(&(gram(b"acc"), 0, 1)));
        let failed = pattern_grams("FAILED").unwrap();
        let words = candidate_words(std::slice::from_ref(&failed), &rows);
        assert_eq!(words.get(&0), Some(&1));
        assert_eq!(words.get(&1), Some(&2));
        let upto = BLOCK_ROWS * 65 + 10;
        assert_eq!(
            block_ranges(&words, upto),
            [(0, BLOCK_ROWS - 1), (BLOCK_ROWS * 65, upto)]
        );
        // A pattern whose grams never share a block has no candidates.
        let none = candidate_words(&[pattern_grams("password again").unwrap()], &rows);
        assert!(none.is_empty());
        // OR across patterns; adjacent blocks coalesce.
        let mut w = HashMap::new();
        w.insert(0u32, 0b1110u64);
        assert_eq!(
            block_ranges(&w, i64::MAX),
            [(BLOCK_ROWS, 4 * BLOCK_ROWS - 1)]
        );
        let both = candidate_words(&[failed, pattern_grams("accepted").unwrap()], &rows);
        assert_eq!(both.get(&0), Some(&1));
    }

    #[test]
    fn ranges_sql_is_bound() {
        let p = RangePlan {
            ranges: vec![(0, 1023), (4096, 5000)],
            upto: 5000,
        };
        let mut w = Sql::with(Backend::Mysql, "SELECT 1 FROM t WHERE x");
        p.write(&mut w);
        assert_eq!(w.binds().len(), 5);
        assert_eq!(
            w.text(),
            "SELECT 1 FROM t WHERE x(id BETWEEN ? AND ? OR id BETWEEN ? AND ? OR id > ?)"
        );
        assert_eq!(p.rows(), 1024 + 905);
    }
}
