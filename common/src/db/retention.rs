//! Retention: deleting what is past its keep period, in small batches
//! that a concurrent ingest hardly notices (`siemparse --prune`).
//!
//! **Event rows** go in batches of their own transactions, sized to take
//! about [`TARGET_BATCH`] each, with a pause between them so that a writer
//! waiting for SQLite's lock gets it (its busy handler polls every 100 ms):
//! an ingest commit waits at most about one batch. The newest row of a
//! table always stays: SQLite hands out `max(id) + 1`, so deleting the
//! newest rows would give their ids again; alerts (`alert_events`) and
//! siemtrigger's progress name rows by id, and must never meet a new row
//! under an old id. So ids only grow.
//!
//! The search index stays exact: on SQLite each pruned row that is in the
//! FTS5 index is deleted from it in the same transaction (a contentless
//! table deletes by the indexed text, read from the row before it goes);
//! on MariaDB, bitmap words that only cover ids below the table's lowest
//! remaining id are deleted (other bits of pruned rows only add
//! candidates, which the exact predicate drops). When the row at the
//! index's high-water mark is pruned, the mark moves down to the highest
//! row below it, in the same transaction (the index would otherwise take
//! the missing row for ids handed out again and start over); on MariaDB the
//! pruned ids above the new mark are recorded as a settled gap, so the
//! indexer steps over them at once.
//!
//! **Alerts** past `[retention] alerts` go with their `alert_events` and
//! `action_runs`. An alert kept longer than the events it names still
//! shows; `siemtrigger --explain` says which events expired.
//!
//! **Snapshot runs**: see [`Database::prune_snapshots`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension;

use super::sql::Sql;
use super::{Backend, Database};
use crate::Error;
use crate::archive::{Archive, ArchivedRow};
use crate::config::retention::SnapshotKeep;
use crate::ident::Ident;
use crate::snapshot::{STATUS_FAILED, STATUS_OK, STATUS_PRUNED};

/// What one batch should take: short enough that an ingest commit waiting
/// behind it stays well under a second.
pub const TARGET_BATCH: Duration = Duration::from_millis(200);
/// Pause after each SQLite transaction of a prune (batch or merge step):
/// many times the busy handler's interval between tries
/// ([`super::options::BUSY_POLL`]), so a waiting writer gets the lock
/// before the next one even when its thread wakes late on a loaded machine.
const SQLITE_PAUSE: Duration = Duration::from_millis(110);
/// The longest a SQLite prune transaction holds the write lock before its
/// statement is interrupted: it is rolled back and done again at half the
/// size. A writer waiting for the lock thus waits at most about this,
/// plus the COMMIT's write of the pages (not interrupted), whatever part
/// of the transaction is slow on a loaded machine (the batch sizes aim at
/// [`TARGET_BATCH`] from the last one's time, and one may take several
/// times as long as the last). At the smallest size an interrupted
/// transaction runs once more without the limit, so a prune always ends.
pub const HOLD_LIMIT: Duration = Duration::from_millis(400);
/// Pause after each MariaDB batch (row locks: inserts do not wait for it;
/// the pause keeps replication and the purge thread in step).
const MYSQL_PAUSE: Duration = Duration::from_millis(20);
/// Rows of the first batch; later batches are sized by the time it took.
const FIRST_BATCH: i64 = 1_000;
const MIN_BATCH: i64 = 100;
const MAX_BATCH: i64 = 20_000;

/// Bytes of a row's values (texts as stored, 8 per number): what a prune
/// reports as freed. `octet_length` reads a text's length from the record
/// header, not the text.
const ROW_BYTES: &str = "octet_length(raw) + octet_length(message) + octet_length(source) \
     + coalesce(octet_length(extra), 0) + coalesce(octet_length(host), 0) \
     + coalesce(octet_length(process), 0) + coalesce(octet_length(user), 0) \
     + coalesce(octet_length(source_host), 0) + coalesce(octet_length(dest_host), 0) \
     + coalesce(octet_length(protocol), 0) + coalesce(octet_length(facility), 0) \
     + coalesce(octet_length(severity), 0) + 56";

/// What a prune deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub rows: u64,
    /// Bytes of the deleted rows' values.
    pub bytes: u64,
    pub batches: u64,
    /// SQLite: steps of merging the `--grep` index's segments (each a
    /// transaction of its own, like a batch).
    pub merge_steps: u64,
    /// The longest batch's write transaction took this long (SQLite: from
    /// the moment it had the write lock to its commit, the time a
    /// concurrent writer waits for it; MariaDB: the whole transaction).
    pub longest_batch: Duration,
    /// SQLite: where the longest batch spent its time.
    pub longest_batch_parts: BatchParts,
    /// The longest merge step's write transaction took this long (a writer
    /// waits for either kind: the report names both).
    pub longest_merge: Duration,
    /// SQLite: transactions stopped at [`HOLD_LIMIT`] (rolled back, then
    /// done again at half the size).
    pub interrupted: u64,
    /// SQLite: the longest checkpoint after a transaction (the prune's own
    /// pages copied into the database file; no lock that a writer waits for).
    pub longest_checkpoint: Duration,
}

/// Where a SQLite batch's transaction spent its time, the write lock held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchParts {
    /// Reading the victims (and the table's marks).
    pub read: Duration,
    /// Deleting the rows.
    pub rows: Duration,
    /// Deleting them from the `--grep` index (in FTS5's memory).
    pub index: Duration,
    /// Writing those deletions as an index segment (and any merge FTS5
    /// does then).
    pub segment: Duration,
    /// COMMIT: the transaction's pages written to the WAL.
    pub commit: Duration,
}

impl BatchParts {
    fn held(&self) -> Duration {
        self.read + self.rows + self.index + self.segment + self.commit
    }
}

impl Pruned {
    fn add_batch(&mut self, rows: u64, bytes: u64, took: Duration) {
        self.rows += rows;
        self.bytes += bytes;
        self.batches += 1;
        self.longest_batch = self.longest_batch.max(took);
    }

    fn add_sqlite_batch(&mut self, rows: u64, bytes: u64, parts: BatchParts) {
        let held = parts.held();
        if held > self.longest_batch {
            self.longest_batch_parts = parts;
        }
        self.add_batch(rows, bytes, held);
    }

    fn add_merge_step(&mut self, took: Duration) {
        self.merge_steps += 1;
        self.longest_merge = self.longest_merge.max(took);
    }
}

/// What a snapshot cleanup removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotsPruned {
    /// Successful runs removed (or kept only as holders of shared rows).
    pub runs: u64,
    /// Failed runs removed.
    pub failed: u64,
    /// Rows no remaining run reads, deleted.
    pub rows: u64,
    /// Removed runs still holding rows that kept runs read.
    pub holders: u64,
}

/// Asks a running prune to stop between batches (SIGTERM).
#[derive(Debug, Clone, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The next batch size, from the last one's size and time.
fn next_batch(rows: i64, took: Duration) -> i64 {
    scaled_to(TARGET_BATCH, rows, took, MIN_BATCH, MAX_BATCH)
}

/// `size` scaled so that the next step takes about `target`, given that
/// this one took `took`: between `min` and `max`, and at most four times
/// `size` (a step that was fast by chance does not make a huge one).
fn scaled_to(target: Duration, size: i64, took: Duration, min: i64, max: i64) -> i64 {
    let ms = took.as_millis().max(1) as i64;
    let target = target.as_millis() as i64;
    (size.saturating_mul(target) / ms).clamp(min, max.min(size.saturating_mul(4)).max(min))
}

#[derive(sqlx::FromRow)]
struct Victim {
    id: i64,
    bytes: i64,
}

#[derive(sqlx::FromRow)]
struct Id {
    id: i64,
}

#[derive(sqlx::FromRow)]
struct OptId {
    id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Series {
    name: String,
    host: String,
}

#[derive(sqlx::FromRow)]
struct OkRun {
    id: i64,
    taken: i64,
}

/// Name of the `trigger_lease` row that spaces the automatic prunes of
/// following and listening siemparse processes (any host, one database).
const PRUNE_CLAIM: &str = "siemparse-prune";

impl Database {
    /// Deletes the rows of event table `t` with `ts < before`, in batches
    /// (see the module's notes: the newest row and the row at the search
    /// index's mark stay). With `archive`, each batch's rows are read
    /// whole and written to it (on disk, synced) before the transaction
    /// that deletes them, outside that transaction: an ingest never waits
    /// for the archive.
    pub async fn prune_events(
        &self,
        t: &Ident,
        before: i64,
        stop: &StopFlag,
        archive: Option<&Archive>,
    ) -> Result<Pruned, Error> {
        match self {
            Database::Sqlite(d) => {
                let (path, t, stop) = (d.path().to_owned(), t.clone(), stop.clone());
                let archive = archive.cloned();
                tokio::task::spawn_blocking(move || {
                    sqlite_prune_events(&path, &t, before, &stop, archive.as_ref(), HOLD_LIMIT)
                })
                .await
                .map_err(|e| Error::db("prune", "an event table", e))?
            }
            Database::Mysql(d) => self.mysql_prune_events(d, t, before, stop, archive).await,
        }
    }

    async fn mysql_prune_events(
        &self,
        d: &super::mysql::MysqlDb,
        t: &Ident,
        before: i64,
        stop: &StopFlag,
        archive: Option<&Archive>,
    ) -> Result<Pruned, Error> {
        let e = |x| Error::db("prune", t.as_str(), x);
        let mut done = Pruned::default();
        let mut size = FIRST_BATCH;
        while !stop.raised() {
            // Archived first, outside the transaction (no row lock held).
            let archived = match archive {
                None => None,
                Some(a) => {
                    let mut q = self.sql("SELECT * FROM ");
                    q.table(t, "").push(" WHERE ts < ").bind(before);
                    q.push(" AND id < (SELECT MAX(id) FROM ")
                        .table(t, "")
                        .push(")");
                    q.push(" ORDER BY ts LIMIT ").bind(size);
                    let rows = super::mysql::whole_rows(&d.pool, &q, t.as_str()).await?;
                    if rows.is_empty() {
                        break;
                    }
                    let a = a.clone();
                    let rows = tokio::task::spawn_blocking(move || a.write(&rows).map(|()| rows))
                        .await
                        .map_err(|x| Error::db("archive", t.as_str(), x))??;
                    Some(rows)
                }
            };
            let started = Instant::now();
            let mut tx = self.begin().await.map_err(e)?;
            // The index's mark, locked against the indexer until the commit.
            let mut q = self.sql("SELECT indexed_upto AS id FROM grep_index WHERE tbl = ");
            q.bind(t.as_str()).push(" FOR UPDATE");
            let mark = tx
                .fetch_all::<Id>(&q)
                .await
                .map_err(e)?
                .first()
                .map_or(0, |m| m.id);
            let victims: Vec<Victim> = match &archived {
                Some(rows) => rows
                    .iter()
                    .map(|r| Victim {
                        id: r.id,
                        bytes: r.bytes() as i64,
                    })
                    .collect(),
                None => {
                    let mut q = self.sql("SELECT id, ");
                    q.push(ROW_BYTES).push(" AS bytes FROM ").table(t, "");
                    q.push(" WHERE ts < ").bind(before);
                    q.push(" AND id < (SELECT MAX(id) FROM ")
                        .table(t, "")
                        .push(")");
                    q.push(" ORDER BY ts LIMIT ").bind(size);
                    tx.fetch_all(&q).await.map_err(e)?
                }
            };
            if victims.is_empty() {
                break;
            }
            let mut del = self.sql("DELETE FROM ");
            del.table(t, "")
                .push(" WHERE id IN ")
                .list(victims.iter().map(|v| v.id));
            let n = tx.execute(&del).await.map_err(e)?.rows;
            if mark > 0 && victims.iter().any(|v| v.id == mark) {
                let mut q = self.sql("SELECT MAX(id) AS id FROM ");
                q.table(t, "").push(" WHERE id < ").bind(mark);
                let below = tx.fetch_one::<OptId>(&q).await.map_err(e)?.id.unwrap_or(0);
                // pending_since is set first: MariaDB assigns left to right,
                // and both read the gap recorded before.
                let mut q = self.sql(
                    "UPDATE grep_index SET pending_since = CASE WHEN pending_upto IS NULL \
                     OR pending_upto <= ",
                );
                q.bind(mark)
                    .push(" THEN 0 ELSE pending_since END, pending_upto = CASE WHEN pending_upto IS NULL OR pending_upto <= ")
                    .bind(mark)
                    .push(" THEN ")
                    .bind(mark)
                    .push(" ELSE pending_upto END, indexed_upto = ")
                    .bind(below)
                    .push(", upto_received = (SELECT received FROM ")
                    .table(t, "")
                    .push(" WHERE id = ")
                    .bind(below)
                    .push("), updated = ")
                    .bind(crate::time::now_ms());
                q.and().push("tbl = ").bind(t.as_str());
                tx.execute(&q).await.map_err(e)?;
            }
            tx.commit().await.map_err(e)?;
            let bytes = victims.iter().map(|v| v.bytes.max(0) as u64).sum();
            let took = started.elapsed();
            done.add_batch(n, bytes, took);
            if (victims.len() as i64) < size {
                break;
            }
            size = next_batch(size, took);
            tokio::time::sleep(MYSQL_PAUSE).await;
        }
        if done.rows > 0 {
            self.mysql_prune_bitmap(t, stop).await?;
        }
        Ok(done)
    }

    /// Deletes the words of `t`'s `--grep` bitmap that cover only ids below
    /// the lowest remaining one.
    async fn mysql_prune_bitmap(&self, t: &Ident, stop: &StopFlag) -> Result<(), Error> {
        let e = |x| Error::db("prune the search index of", t.as_str(), x);
        let mut q = self.sql("SELECT MIN(id) AS id FROM ");
        q.table(t, "");
        let Some(lowest) = self.fetch_one::<OptId>(&q).await.map_err(e)?.id else {
            return Ok(());
        };
        let below = lowest / super::mysql::grep_bits::WORD_ROWS;
        while !stop.raised() {
            let mut q = self.sql("DELETE FROM ");
            q.table(t, "$grep").push(" WHERE word < ").bind(below);
            q.push(" LIMIT ").bind(MAX_BATCH);
            if self.execute(&q).await.map_err(e)?.rows < MAX_BATCH as u64 {
                break;
            }
            tokio::time::sleep(MYSQL_PAUSE).await;
        }
        Ok(())
    }

    /// Deletes alerts with `ts < before`, with their `alert_events` and
    /// `action_runs`, in batches of their own transactions.
    pub async fn prune_alerts(&self, before: i64, stop: &StopFlag) -> Result<Pruned, Error> {
        let e = |x| Error::db("prune", "alerts", x);
        let mut done = Pruned::default();
        let size = 1_000i64;
        while !stop.raised() {
            let started = Instant::now();
            let mut q = self.sql("SELECT id FROM alerts WHERE ts < ");
            q.bind(before).push(" ORDER BY ts LIMIT ").bind(size);
            let ids: Vec<i64> = self
                .fetch_all::<Id>(&q)
                .await
                .map_err(e)?
                .into_iter()
                .map(|r| r.id)
                .collect();
            if ids.is_empty() {
                break;
            }
            let mut tx = self.begin().await.map_err(e)?;
            for table in ["alert_events", "action_runs"] {
                let mut q = Sql::new(self.backend());
                q.push("DELETE FROM ")
                    .push(table)
                    .push(" WHERE alert_id IN ")
                    .list(ids.iter().copied());
                tx.execute(&q).await.map_err(e)?;
            }
            let mut q = self.sql("DELETE FROM alerts WHERE id IN ");
            q.list(ids.iter().copied());
            let n = tx.execute(&q).await.map_err(e)?.rows;
            tx.commit().await.map_err(e)?;
            done.add_batch(n, 0, started.elapsed());
            if (ids.len() as i64) < size {
                break;
            }
            tokio::time::sleep(self.pause()).await;
        }
        Ok(done)
    }

    fn pause(&self) -> Duration {
        match self.backend() {
            Backend::Sqlite => SQLITE_PAUSE,
            Backend::Mysql => MYSQL_PAUSE,
        }
    }

    /// Removes snapshot runs past `keep`, per name and host:
    /// - kept: the latest `keep_runs` successful runs taken within
    ///   `max_age`, and always the latest successful run (the base of the
    ///   next diff); plus the successful run before the oldest of them, so
    ///   that the diff of every kept run stays what it was (that base run
    ///   is then the oldest remaining run, itself a baseline);
    /// - removed: older successful runs, and failed runs older than the
    ///   oldest remaining run or than `max_age`;
    /// - rows are stored once per value and shared by later runs
    ///   (`run_id` .. `until_run`): a row that a remaining run reads stays.
    ///   A removed run that still holds such rows is kept as a holder with
    ///   status `pruned` (never listed or diffed as a run; its rows still
    ///   read by the runs after it), and deleted once no row of it is read.
    ///
    /// Runs are marked first, then their unread rows deleted in batches:
    /// a prune stopped half-way is finished by the next one.
    pub async fn prune_snapshots(
        &self,
        keep: SnapshotKeep,
        now: i64,
        stop: &StopFlag,
    ) -> Result<SnapshotsPruned, Error> {
        let e = |x| Error::db("prune", "snapshot runs", x);
        let mut done = SnapshotsPruned::default();
        if keep.keeps_all() {
            return Ok(done);
        }
        let cutoff = keep.max_age.cutoff(now);
        let series: Vec<Series> = self
            .fetch_all(&self.sql("SELECT DISTINCT name, host FROM snapshot_runs"))
            .await
            .map_err(e)?;
        for s in series {
            if stop.raised() {
                break;
            }
            let mut q = self.sql("SELECT id, taken FROM snapshot_runs");
            q.and().push("name = ").bind(&s.name);
            q.and().push("host = ").bind(&s.host);
            q.and().push("status = ").bind(STATUS_OK);
            q.push(" ORDER BY id DESC");
            let ok: Vec<OkRun> = self.fetch_all(&q).await.map_err(e)?;
            let Some(oldest) = oldest_kept(&ok, keep.keep_runs, cutoff) else {
                continue; // only failed runs: those go by max_age below
            };
            let message = format!(
                "pruned by retention at {} (kept while later runs read its rows)",
                crate::time::rfc3339_utc(now)
            );
            let mut tx = self.begin().await.map_err(e)?;
            let mut q = self.sql("UPDATE snapshot_runs SET status = ");
            q.bind(STATUS_PRUNED)
                .push(", message = ")
                .bind(message.as_str());
            q.and().push("name = ").bind(&s.name);
            q.and().push("host = ").bind(&s.host);
            q.and().push("status = ").bind(STATUS_OK);
            q.and().push("id < ").bind(oldest);
            done.runs += tx.execute(&q).await.map_err(e)?.rows;
            let mut q = self.sql("DELETE FROM snapshot_runs");
            q.and().push("name = ").bind(&s.name);
            q.and().push("host = ").bind(&s.host);
            q.and().push("status = ").bind(STATUS_FAILED);
            q.and().push("(id < ").bind(oldest);
            q.push(" OR taken < ")
                .bind(cutoff.unwrap_or(i64::MIN))
                .push(")");
            done.failed += tx.execute(&q).await.map_err(e)?.rows;
            tx.commit().await.map_err(e)?;
            // Rows of removed runs that no remaining run reads.
            let mut q = self.sql("SELECT id FROM snapshot_runs");
            q.and().push("name = ").bind(&s.name);
            q.and().push("host = ").bind(&s.host);
            q.and().push("status = ").bind(STATUS_PRUNED);
            let holders: Vec<Id> = self.fetch_all(&q).await.map_err(e)?;
            for h in holders {
                done.rows += self.delete_unread_rows(h.id, oldest, stop).await?;
                if stop.raised() {
                    break;
                }
                let mut q = self.sql("DELETE FROM snapshot_runs WHERE id = ");
                q.bind(h.id)
                    .push(" AND NOT EXISTS (SELECT 1 FROM snapshot_rows WHERE run_id = ")
                    .bind(h.id)
                    .push(")");
                if self.execute(&q).await.map_err(e)?.rows == 0 {
                    done.holders += 1;
                }
            }
        }
        // Series whose runs all failed: by age alone.
        if let Some(cutoff) = cutoff {
            let mut q = self.sql("DELETE FROM snapshot_runs");
            q.and().push("status = ").bind(STATUS_FAILED);
            q.and().push("taken < ").bind(cutoff);
            q.and().push(
                "NOT EXISTS (SELECT 1 FROM snapshot_rows WHERE snapshot_rows.run_id = snapshot_runs.id)",
            );
            done.failed += self.execute(&q).await.map_err(e)?.rows;
        }
        Ok(done)
    }

    /// Deletes the rows of run `run` that no run from `oldest` on reads
    /// (`until_run <= oldest`), in batches.
    async fn delete_unread_rows(
        &self,
        run: i64,
        oldest: i64,
        stop: &StopFlag,
    ) -> Result<u64, Error> {
        let e = |x| Error::db("prune", "snapshot rows", x);
        let mut n = 0;
        while !stop.raised() {
            let mut q = self.sql(match self.backend() {
                Backend::Sqlite => {
                    "DELETE FROM snapshot_rows WHERE rowid IN (SELECT rowid FROM snapshot_rows \
                     WHERE run_id = "
                }
                Backend::Mysql => "DELETE FROM snapshot_rows WHERE run_id = ",
            });
            q.bind(run).push(" AND until_run <= ").bind(oldest);
            q.push(" LIMIT ").bind(MAX_BATCH);
            if self.backend() == Backend::Sqlite {
                q.push(")");
            }
            let done = self.execute(&q).await.map_err(e)?.rows;
            n += done;
            if done < MAX_BATCH as u64 {
                break;
            }
            tokio::time::sleep(self.pause()).await;
        }
        Ok(n)
    }

    /// True if this process may run the automatic prune now: at most once
    /// per `every_ms` over every siemparse on this database (a row of
    /// `trigger_lease` holds the time of the next one).
    pub async fn claim_prune(&self, holder: &str, every_ms: i64) -> Result<bool, Error> {
        let e = |x| Error::db("claim", "the hourly prune", x);
        let now = crate::time::now_ms();
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => "INSERT OR IGNORE",
            Backend::Mysql => "INSERT IGNORE",
        });
        q.push(" INTO trigger_lease (name, holder, expires, beats) VALUES (")
            .bind(PRUNE_CLAIM)
            .push(", '', 0, 0)");
        self.execute(&q).await.map_err(e)?;
        let mut q = self.sql("UPDATE trigger_lease SET holder = ");
        q.bind(holder)
            .push(", expires = ")
            .bind(now.saturating_add(every_ms));
        q.push(", beats = beats + 1");
        q.and().push("name = ").bind(PRUNE_CLAIM);
        q.and().push("expires <= ").bind(now);
        Ok(self.execute(&q).await.map_err(e)?.rows == 1)
    }

    /// SQLite: bytes of the free pages in the database file (reused by new
    /// rows before the file grows). `None` on MariaDB.
    pub async fn free_bytes(&self) -> Result<Option<u64>, Error> {
        let Database::Sqlite(d) = self else {
            return Ok(None);
        };
        let (free, size): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT freelist_count FROM pragma_freelist_count), \
             (SELECT page_size FROM pragma_page_size)",
        )
        .fetch_one(&d.pool)
        .await
        .map_err(|x| Error::db("read", "the free page count", x))?;
        Ok(Some(u64::try_from(free.saturating_mul(size)).unwrap_or(0)))
    }
}

/// The id of the oldest successful run that stays, given a series' ok
/// runs newest first: the latest always; then those within `keep_runs` and
/// taken at or after `cutoff`; then one more, the base of the oldest kept
/// run's diff. `None` without runs.
fn oldest_kept(ok: &[OkRun], keep_runs: Option<u32>, cutoff: Option<i64>) -> Option<i64> {
    if ok.is_empty() {
        return None;
    }
    let limit = keep_runs.map_or(usize::MAX, |k| k as usize);
    let kept = ok
        .iter()
        .enumerate()
        .take_while(|(i, r)| *i < limit && cutoff.is_none_or(|c| r.taken >= c))
        .count()
        .max(1);
    // The base of the oldest kept run's diff stays too.
    Some(ok[kept.min(ok.len() - 1)].id)
}

/// The SQLite batches of [`Database::prune_events`], on a connection of
/// their own. Each transaction's statements are interrupted once it has
/// held the write lock for `hold` ([`HOLD_LIMIT`], see [`Deadline`]); after each one the
/// prune checkpoints its own pages, the lock free (its connection has no
/// automatic checkpoint, so none falls into a commit's time).
fn sqlite_prune_events(
    path: &std::path::Path,
    t: &Ident,
    before: i64,
    stop: &StopFlag,
    archive: Option<&Archive>,
    hold: Duration,
) -> Result<Pruned, Error> {
    let mut conn = super::options::open_sqlite(path)?;
    let err = |x: rusqlite::Error| Error::db("prune", t.as_str(), x);
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err)?;
    let deadline = Deadline::install(&conn, hold).map_err(err)?;
    let fts = super::grep_index::fts_table(t);
    let has_fts: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            [&fts],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    let batch = SqliteBatch {
        t,
        fts: &fts,
        has_fts,
        before,
    };
    let mut done = Pruned::default();
    let mut size = FIRST_BATCH;
    let mut merge = FtsMerge::new(&fts);
    // Rows archived but not deleted yet (a transaction interrupted after
    // the archive took them): deleted before any more are read.
    let mut archived: Vec<ArchivedRow> = Vec::new();
    let mut read_all = false;
    let mut unlimited = false;
    while !stop.raised() {
        // Archived first, outside the write transaction (a read of its own):
        // the ingest does not wait for the archive's writes and syncs.
        if let Some(a) = archive
            && archived.is_empty()
        {
            if read_all {
                break;
            }
            archived = sqlite_whole_rows(&conn, t, before, size)?;
            read_all = (archived.len() as i64) < size;
            if archived.is_empty() {
                break;
            }
            a.write(&archived)?;
        }
        let take = archive.map(|_| archived.len().min(size as usize));
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let locked = Instant::now();
        if !unlimited {
            deadline.arm(locked);
        }
        let worked = batch.run(&tx, take.map(|n| &archived[..n]), size);
        deadline.disarm();
        let (victims, mut parts) = match worked {
            Ok(v) => v,
            Err(_) if deadline.fired() => {
                // Rolled back (by SQLite or here); again at half the size.
                drop(tx);
                done.interrupted += 1;
                unlimited = size <= MIN_BATCH;
                size = (size / 2).max(MIN_BATCH);
                std::thread::sleep(SQLITE_PAUSE);
                continue;
            }
            Err(e) => return Err(err(e)),
        };
        unlimited = false;
        if victims.is_empty() {
            break;
        }
        let committing = Instant::now();
        tx.commit().map_err(err)?;
        parts.commit = committing.elapsed();
        let bytes = victims.iter().map(|v| v.1.max(0) as u64).sum();
        done.add_sqlite_batch(victims.len() as u64, bytes, parts);
        checkpoint(&conn, &mut done).map_err(err)?;
        let last = match take {
            Some(n) => {
                archived.drain(..n);
                read_all && archived.is_empty()
            }
            None => (victims.len() as i64) < size,
        };
        size = next_batch(size, parts.held());
        std::thread::sleep(SQLITE_PAUSE);
        if has_fts && !last {
            // As much merge work as the batch took: the segments of the
            // deletions are merged as fast as they come.
            merge
                .run(&mut conn, &deadline, parts.held(), stop, &mut done)
                .map_err(err)?;
        }
        if last {
            break;
        }
    }
    if has_fts && done.rows > 0 {
        merge
            .run(&mut conn, &deadline, MERGE_BUDGET, stop, &mut done)
            .map_err(err)?;
    }
    Ok(done)
}

/// A PASSIVE checkpoint of what the prune wrote (no lock a writer waits
/// for; readers are not waited for either), its time kept in `done`.
fn checkpoint(conn: &rusqlite::Connection, done: &mut Pruned) -> Result<(), rusqlite::Error> {
    let started = Instant::now();
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    done.longest_checkpoint = done.longest_checkpoint.max(started.elapsed());
    Ok(())
}

/// Interrupts the statements of a connection once the deadline armed for
/// the current transaction has passed (SQLite's progress handler, called
/// every [`PROGRESS_OPS`] virtual machine steps, FTS5's statements on its
/// shadow tables included). A transaction whose statement is interrupted
/// is rolled back whole.
struct Deadline {
    /// How long a transaction may hold the lock.
    limit: Duration,
    /// Nanoseconds after `base` (0: not armed).
    at: Arc<std::sync::atomic::AtomicU64>,
    fired: Arc<AtomicBool>,
    base: Instant,
}

/// Virtual machine steps between two looks at the clock (each well under
/// a millisecond).
const PROGRESS_OPS: std::ffi::c_int = 1_000;

impl Deadline {
    fn install(conn: &rusqlite::Connection, limit: Duration) -> Result<Self, rusqlite::Error> {
        let d = Deadline {
            limit,
            at: Arc::default(),
            fired: Arc::default(),
            base: Instant::now(),
        };
        let (at, fired, base) = (d.at.clone(), d.fired.clone(), d.base);
        conn.progress_handler(
            PROGRESS_OPS,
            Some(move || {
                let due = at.load(Ordering::Relaxed);
                if due != 0 && base.elapsed().as_nanos() as u64 >= due {
                    fired.store(true, Ordering::Relaxed);
                    return true;
                }
                false
            }),
        )?;
        Ok(d)
    }

    /// Armed for a transaction that got the lock at `locked`.
    fn arm(&self, locked: Instant) {
        self.fired.store(false, Ordering::Relaxed);
        let ns = (locked + self.limit)
            .saturating_duration_since(self.base)
            .as_nanos();
        self.at.store(
            u64::try_from(ns).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
    }

    fn disarm(&self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// True if the deadline interrupted a statement since it was armed.
    fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }
}

/// What one SQLite batch deletes from.
struct SqliteBatch<'a> {
    t: &'a Ident,
    fts: &'a str,
    has_fts: bool,
    before: i64,
}

impl SqliteBatch<'_> {
    /// Deletes, in transaction `tx`, the rows `archived` (already in the
    /// archive) or else the next `size` rows past retention, from the table
    /// and from its search index; moves the index's mark if its row goes.
    /// Returns the (id, bytes) of the rows deleted and the times of the parts.
    fn run(
        &self,
        tx: &rusqlite::Transaction<'_>,
        archived: Option<&[ArchivedRow]>,
        size: i64,
    ) -> Result<(Vec<(i64, i64)>, BatchParts), rusqlite::Error> {
        let (t, fts, has_fts) = (self.t, self.fts, self.has_fts);
        let mut parts = BatchParts::default();
        let reading = Instant::now();
        let newest: i64 = tx.query_row(
            &format!(r#"SELECT coalesce(max(id), 0) FROM "{t}""#),
            [],
            |r| r.get(0),
        )?;
        let mark: i64 = tx
            .query_row(
                "SELECT indexed_upto FROM grep_index WHERE tbl = ?",
                [t.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let victims: Vec<(i64, i64)> = if let Some(rows) = archived {
            rows.iter().map(|r| (r.id, r.bytes() as i64)).collect()
        } else {
            let mut st = tx.prepare_cached(&format!(
                r#"SELECT id, {ROW_BYTES} FROM "{t}" WHERE ts < ? AND id < ? ORDER BY ts LIMIT ?"#
            ))?;
            st.query_map(rusqlite::params![self.before, newest, size], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?
        };
        parts.read = reading.elapsed();
        if victims.is_empty() {
            return Ok((victims, parts));
        }
        // No automerge inside the batch: the merge work its deletions would
        // set off (seconds at 1M rows) goes to the bounded steps after it.
        let automerge = if has_fts {
            Some(automerge_off(tx, fts)?)
        } else {
            None
        };
        {
            // A contentless FTS5 table deletes a row by the text it indexed.
            let mut unindex = if has_fts {
                Some(tx.prepare_cached(&format!(
                    r#"INSERT INTO "{fts}" ("{fts}", rowid, raw) SELECT 'delete', id, raw FROM "{t}" WHERE id = ?"#
                ))?)
            } else {
                None
            };
            let mut delete = tx.prepare_cached(&format!(r#"DELETE FROM "{t}" WHERE id = ?"#))?;
            for (id, _) in &victims {
                if *id <= mark
                    && let Some(u) = unindex.as_mut()
                {
                    let at = Instant::now();
                    u.execute([id])?;
                    parts.index += at.elapsed();
                }
                let at = Instant::now();
                delete.execute([id])?;
                parts.rows += at.elapsed();
            }
        }
        let at = Instant::now();
        if mark > 0 && victims.iter().any(|v| v.0 == mark) {
            // Every row up to the mark is still indexed or gone from the
            // index: the highest row below it is the new mark.
            tx.execute(
                &format!(
                    r#"UPDATE grep_index SET indexed_upto = coalesce((SELECT max(id) FROM "{t}" WHERE id < ?1), 0),
                       upto_received = (SELECT received FROM "{t}" WHERE id < ?1 ORDER BY id DESC LIMIT 1),
                       updated = ?2 WHERE tbl = ?3"#
                ),
                rusqlite::params![mark, crate::time::now_ms(), t.as_str()],
            )?;
        }
        parts.rows += at.elapsed();
        if let Some(n) = automerge {
            // Writes the batch's deletions as one segment (FTS5 flushes
            // before it changes a setting) with automerge still 0, and
            // gives the indexer its setting back before anyone sees it.
            let at = Instant::now();
            set_fts(tx, fts, "automerge", n)?;
            parts.segment = at.elapsed();
        }
        Ok((victims, parts))
    }
}

/// Turns FTS5 `automerge` off for table `fts` in transaction `tx`, and
/// returns its value to set back before the commit (FTS5's default 4 when
/// the table has none of its own).
fn automerge_off(tx: &rusqlite::Transaction<'_>, fts: &str) -> Result<i64, rusqlite::Error> {
    let n: Option<i64> = tx
        .query_row(
            &format!(r#"SELECT v FROM "{fts}_config" WHERE k = 'automerge'"#),
            [],
            |r| r.get(0),
        )
        .optional()?;
    set_fts(tx, fts, "automerge", 0)?;
    Ok(n.unwrap_or(FTS5_DEFAULT_AUTOMERGE))
}

/// Sets the FTS5 option `key` of table `fts` (persistent: stored in the
/// table's `_config`).
fn set_fts(
    tx: &rusqlite::Transaction<'_>,
    fts: &str,
    key: &str,
    value: i64,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        &format!(r#"INSERT INTO "{fts}" ("{fts}", rank) VALUES (?1, ?2)"#),
        rusqlite::params![key, value],
    )
    .map(|_| ())
}

/// The next batch of rows of `t` to prune, every column (for the archive),
/// read in a transaction of its own: `ts < before`, never the newest row,
/// oldest first, at most `size`.
fn sqlite_whole_rows(
    conn: &rusqlite::Connection,
    t: &Ident,
    before: i64,
    size: i64,
) -> Result<Vec<ArchivedRow>, Error> {
    use super::search::{EventRef, Positions};
    let err = |x: String| Error::db("archive", t.as_str(), x);
    let sql = format!(
        r#"SELECT * FROM "{t}" WHERE ts < ?1 AND id < (SELECT max(id) FROM "{t}") ORDER BY ts LIMIT ?2"#
    );
    let mut stmt = super::sqlite::stmt::Stmt::prepare(conn, &sql).map_err(err)?;
    let mut rows = stmt.bind();
    rows.int(1, Some(before)).int(2, Some(size));
    let at = Positions::of(&rows.column_names()).map_err(err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(err)? {
        out.push(ArchivedRow::of(
            t.as_str(),
            &EventRef::read(&r, &at).map_err(err)?,
        ));
    }
    Ok(out)
}

/// FTS5's `automerge` when a table has not set its own.
const FTS5_DEFAULT_AUTOMERGE: i64 = 4;
/// What one merge step should take (a writer waits for it like for a batch).
const MERGE_STEP: Duration = Duration::from_millis(100);
/// Pages of the first merge step; later steps are sized by the time taken.
const FIRST_MERGE_PAGES: i64 = 100;
const MIN_MERGE_PAGES: i64 = 16;
/// (A bound of 500 pages with 400 ms cut batches, tried on 2026-12-07, did
/// not shorten the longest transaction at 1M or 10M rows, and left the
/// file growing between prunes under load: see docs/performance.md.)
const MAX_MERGE_PAGES: i64 = 4_000;
/// Merge work after the last batch, at most (the steps' own time, pauses
/// not counted); what is left goes on with the indexer's automerge and the
/// next prune.
const MERGE_BUDGET: Duration = Duration::from_secs(60);

/// Merging the segments of FTS5 table `fts` in steps of their own
/// transactions, each followed by the pause of a batch. A prune's batches
/// run with `automerge = 0`, so each leaves a segment of deletions; these
/// steps do the merging instead, bounded by time.
///
/// A step is `'merge'` with a positive page count: it continues a merge
/// under way or merges a level that holds `usermerge` (4) segments, and
/// does nothing once every level holds fewer, so it stops even while an
/// indexer adds segments. (A negative count, which puts every segment on
/// one level to merge them all, restarts that whole-index merge whenever
/// an indexer adds a segment: at 1M rows it rewrote the index for 27
/// minutes and left the file with 3.85 GB of free pages.) Deleted entries
/// are dropped when a merge writes the oldest segment of the index.
struct FtsMerge {
    sql: String,
    pages: i64,
}

impl FtsMerge {
    fn new(fts: &str) -> Self {
        FtsMerge {
            sql: format!(r#"INSERT INTO "{fts}" ("{fts}", rank) VALUES ('merge', ?)"#),
            pages: FIRST_MERGE_PAGES,
        }
    }

    /// Merge steps until one finds no work, their time reaches `budget`,
    /// or `stop` is raised. A step interrupted by `deadline` is rolled
    /// back and done again with half the pages.
    fn run(
        &mut self,
        conn: &mut rusqlite::Connection,
        deadline: &Deadline,
        budget: Duration,
        stop: &StopFlag,
        done: &mut Pruned,
    ) -> Result<(), rusqlite::Error> {
        let mut spent = Duration::ZERO;
        let mut unlimited = false;
        while spent < budget && !stop.raised() {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let locked = Instant::now();
            if !unlimited {
                deadline.arm(locked);
            }
            let before = tx.total_changes();
            let stepped = tx.execute(&self.sql, [self.pages]);
            deadline.disarm();
            match stepped {
                Ok(_) => {}
                Err(_) if deadline.fired() => {
                    drop(tx);
                    spent += locked.elapsed();
                    done.interrupted += 1;
                    unlimited = self.pages <= MIN_MERGE_PAGES;
                    self.pages = (self.pages / 2).max(MIN_MERGE_PAGES);
                    std::thread::sleep(SQLITE_PAUSE);
                    continue;
                }
                Err(e) => return Err(e),
            }
            unlimited = false;
            // Documented: a difference under 2 means the step did nothing.
            let worked = tx.total_changes() - before > 1;
            tx.commit()?;
            let took = locked.elapsed();
            spent += took;
            if !worked {
                break;
            }
            done.add_merge_step(took);
            checkpoint(conn, done)?;
            self.pages = scaled_to(
                MERGE_STEP,
                self.pages,
                took,
                MIN_MERGE_PAGES,
                MAX_MERGE_PAGES,
            );
            std::thread::sleep(SQLITE_PAUSE);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(v: &[(i64, i64)]) -> Vec<OkRun> {
        v.iter().map(|&(id, taken)| OkRun { id, taken }).collect()
    }

    #[test]
    fn oldest_kept_run() {
        // Newest first: ids 10, 8, 5, 3, 1 taken at 100, 80, 50, 30, 10.
        let ok = runs(&[(10, 100), (8, 80), (5, 50), (3, 30), (1, 10)]);
        // Two runs kept (10, 8) and the base of 8's diff (5).
        assert_eq!(oldest_kept(&ok, Some(2), None), Some(5));
        // Runs taken at 40 or later: 10, 8, 5; base 3.
        assert_eq!(oldest_kept(&ok, None, Some(40)), Some(3));
        assert_eq!(oldest_kept(&ok, Some(1), Some(40)), Some(8));
        // Everything too old: the latest stays, with its base.
        assert_eq!(oldest_kept(&ok, None, Some(1000)), Some(8));
        // More runs kept than there are: the oldest is the first run.
        assert_eq!(oldest_kept(&ok, Some(50), None), Some(1));
        assert_eq!(oldest_kept(&runs(&[(4, 1)]), Some(1), Some(1000)), Some(4));
        assert_eq!(oldest_kept(&[], Some(1), None), None);
    }

    /// Every transaction of a prune stopped at its first look at the clock
    /// (a lock limit of 0): each is rolled back, done again smaller and at
    /// the smallest size without the limit. The prune still deletes every
    /// old row once, archives each once, and leaves the index exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_stopped_at_the_lock_limit_are_redone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Database::connect(&url).await.unwrap();
        let t = Ident::new("t", "a test table").unwrap();
        db.ensure_event_table(&t).await.unwrap();
        let mut w = db.event_writer(&t).await.unwrap();
        let event = |i: i64| crate::event::Event {
            ts: i,
            received: i,
            host: Some(format!("host{}", i % 7)),
            message: format!("message {i} of a test"),
            raw: format!("Dec  6 10:00:00 host{} app: message {i} of a test", i % 7),
            source: "stdin".into(),
            ..Default::default()
        };
        // 600 old rows, then 10 that stay.
        let events: Vec<_> = (0..600).chain(10_000..10_010).map(event).collect();
        w.write(&events, &[], &[]).await.unwrap();
        while w.index_step(100_000).await.unwrap() > 0 {}
        let Database::Sqlite(d) = &db else {
            unreachable!()
        };
        let path = d.path().to_owned();
        let archive = Archive::open(&dir.path().join("archive")).unwrap();
        let (a, t2) = (archive.clone(), t.clone());
        let done = tokio::task::spawn_blocking(move || {
            sqlite_prune_events(
                &path,
                &t2,
                5_000,
                &StopFlag::default(),
                Some(&a),
                Duration::ZERO,
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(done.rows, 600);
        assert!(done.interrupted > 0, "{done:?}");
        let files = archive.finish().unwrap().files;
        let mut ids = Vec::new();
        for f in &files {
            crate::archive::read_file(f, |r| {
                ids.push(r.id);
                Ok(())
            })
            .unwrap();
        }
        ids.sort_unstable();
        assert_eq!(
            ids,
            (1..=600).collect::<Vec<i64>>(),
            "each row archived once"
        );
        assert_eq!(db.count_rows(&t).await.unwrap(), 10);
        // The index holds the 10 rows left, and only them.
        let Database::Sqlite(d) = &db else {
            unreachable!()
        };
        let hits: Vec<(i64,)> = sqlx::query_as(
            r#"SELECT rowid FROM "t$grep" WHERE "t$grep" MATCH 'app' ORDER BY rowid"#,
        )
        .fetch_all(&d.pool)
        .await
        .unwrap();
        let hits: Vec<i64> = hits.into_iter().map(|h| h.0).collect();
        assert_eq!(hits, (601..=610).collect::<Vec<i64>>());
        sqlx::query(r#"INSERT INTO "t$grep" ("t$grep", rank) VALUES ('integrity-check', 0)"#)
            .execute(&d.pool)
            .await
            .unwrap();
    }

    #[test]
    fn batches_aim_at_the_target() {
        assert_eq!(next_batch(1000, Duration::from_millis(100)), 2000);
        assert_eq!(next_batch(1000, Duration::from_millis(800)), 250);
        assert_eq!(next_batch(1000, Duration::from_millis(0)), 4000);
        assert_eq!(next_batch(100, Duration::from_secs(10)), MIN_BATCH);
        assert_eq!(next_batch(20_000, Duration::from_millis(1)), MAX_BATCH);
    }
}
