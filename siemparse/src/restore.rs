//! `siemparse --restore FILE...`: loads archives written by `siemparse
//! --prune --archive` back into their tables (or, with `-s`, into that
//! section's table), every column as archived, under new ids. The search
//! index is brought up to date afterwards, as `--index` does.
//!
//! Every file is read whole and checked first: a truncated or corrupt file,
//! a line that is not an archived row, or a row the database would not
//! store whole (on MariaDB, one over the server's `max_allowed_packet`)
//! stops the restore before any row is stored, with the file and line.
//!
//! **No duplicates.** A row counts as already present when its table holds
//! a row equal in every column but `id`. Rows are compared as multisets:
//! if the archive holds a row three times (three rows, with three original
//! ids) and the table holds it once, two are inserted. A row archived twice
//! (the same original id: a prune stopped between the archive's sync and
//! its delete's commit archives it again next time) counts once. So a
//! restore run twice, or the restore of rows that are still in their table,
//! inserts nothing. The limit: two equal rows (same ts, received, source,
//! raw, everything) archived by two different prune runs and restored by
//! two separate `--restore` runs count as one; restore a day's files in one
//! run.
//!
//! **One at a time.** Two restores at once would each compare with the
//! table before the other's rows are committed, and store rows both read
//! twice: a restore holds the restore lease (`crate::job_lease`) while it
//! compares and stores; a second one waits for it (after checking its own
//! files), then finds those rows there.
//!
//! **Outages.** Every database step (the table, the comparison, the insert
//! transaction, the index steps) goes through the [`Retry`] wrapper of
//! ingest: a lost or refused connection, a Galera node outside the primary
//! component or a busy SQLite is waited out with backoff, then the step is
//! repeated. A retried insert stores nothing twice: the writer settles a
//! COMMIT whose answer was lost (on MariaDB; SQLite cannot lose it) before
//! it writes again. SIGTERM or SIGINT ends a wait, and stops the restore
//! between two chunks (or index steps) with exit 2: the rows stored so far
//! stay, and the same `--restore` run again stores the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use siemstress_common::archive::{ArchivedRow, ContentKey, Rows, content_key, read_file};
use siemstress_common::config::Config;
use siemstress_common::db::Database;
use siemstress_common::db::events::{EventWriter, check_event_table};
use siemstress_common::db::retry::Retry;
use siemstress_common::db::search::SectionTable;
use siemstress_common::filter::Filter;
use siemstress_common::ident::Ident;
use siemstress_common::time::rfc3339_utc;

use crate::job_lease::{IfBusy, Job, JobLease};

/// Rows read, compared and stored at a time.
const CHUNK: usize = 2_000;

/// What happened to the rows of one table.
#[derive(Debug, Default)]
struct Restored {
    inserted: u64,
    present: u64,
    twice: u64,
    oldest: Option<i64>,
}

/// How often a row's content was met in the table and inserted.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// Rows of the archive matched to rows that were in the table.
    matched: u64,
    /// Rows this restore inserted.
    inserted: u64,
}

/// Restores `files`; `section`: `-s`, the section whose table takes every row.
/// Database steps are retried through `retry` during an outage.
pub async fn run(
    db: &Database,
    config: &Config,
    section: Option<&str>,
    files: &[PathBuf],
    retry: &mut Retry,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let target = match section {
        Some(s) => Some(config.section(s, None)?.table),
        None => None,
    };
    let table_of = |r: &ArchivedRow| -> anyhow::Result<Ident> {
        match &target {
            Some(t) => Ok(t.clone()),
            None => {
                let t = Ident::new(&r.table, "the table of an archived row")?;
                check_event_table(&t, "the table of an archived row")?;
                Ok(t)
            }
        }
    };
    // Every file checked whole before anything is stored, each row also
    // against what the database stores whole (MariaDB would cut a row over
    // its max_allowed_packet, and every later restore would store it again).
    for f in files {
        read_file(f, |r| {
            let t = table_of(&r)?;
            let e = r.to_event().map_err(anyhow::Error::msg)?;
            if let Some(why) = db.cut_on_store(&e) {
                anyhow::bail!(
                    "row {} ({}) cannot be restored exactly into table {t}: {why}",
                    r.id,
                    rfc3339_utc(r.ts)
                );
            }
            Ok(())
        })?;
    }
    let stopping = || retry.stopping();
    let lease = match JobLease::take(db, Job::Restore, IfBusy::Wait, stopping, out).await? {
        Ok(lease) => lease,
        Err(_) => return Err(stopped(&BTreeMap::new(), "waiting for the other restore")),
    };
    let done = store(db, config, files, &table_of, retry, out).await;
    lease.release().await;
    done
}

/// [`run`] once the files are checked and the restore lease is held.
async fn store(
    db: &Database,
    config: &Config,
    files: &[PathBuf],
    table_of: &dyn Fn(&ArchivedRow) -> anyhow::Result<Ident>,
    retry: &mut Retry,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let mut writers = BTreeMap::new();
    let mut done: BTreeMap<String, Restored> = BTreeMap::new();
    // Per (target table's number in `targets`, content).
    let mut targets: HashMap<String, u32> = HashMap::new();
    let mut seen: HashMap<(u32, ContentKey), Seen> = HashMap::new();
    // (original table, original id, content) of every row read.
    let mut origins: HashMap<String, u32> = HashMap::new();
    let mut read: HashSet<(u32, i64, ContentKey)> = HashSet::new();
    for f in files {
        let mut rows = Rows::open(f)?;
        loop {
            if retry.stopping() {
                return Err(stopped(&done, &rows.at()));
            }
            let mut chunk: BTreeMap<String, (Ident, Vec<(ArchivedRow, ContentKey)>)> =
                BTreeMap::new();
            let mut n = 0;
            for r in rows.by_ref().take(CHUNK) {
                let r = r?;
                n += 1;
                let key = r.content_key();
                let next = origins.len() as u32;
                let origin = *origins.entry(r.table.clone()).or_insert(next);
                let t = table_of(&r)?;
                if !read.insert((origin, r.id, key)) {
                    done.entry(t.as_str().to_owned()).or_default().twice += 1;
                    continue;
                }
                chunk
                    .entry(t.as_str().to_owned())
                    .or_insert_with(|| (t, Vec::new()))
                    .1
                    .push((r, key));
            }
            if n == 0 {
                break;
            }
            let at = rows.at();
            for (name, (t, rows)) in chunk {
                if !writers.contains_key(&name) {
                    retry.run(|| db.ensure_event_table(&t)).await?;
                    writers.insert(name.clone(), retry.run(|| db.event_writer(&t)).await?);
                }
                let next = targets.len() as u32;
                let target = *targets.entry(name.clone()).or_insert(next);
                let in_table = retry
                    .run(|| contents(db, &t, &rows))
                    .await
                    .with_context(|| format!("{at}: comparing with table {t}"))?;
                let stats = done.entry(name.clone()).or_default();
                let mut events = Vec::with_capacity(rows.len());
                for (r, key) in &rows {
                    let s = seen.entry((target, *key)).or_default();
                    let there = in_table.get(key).copied().unwrap_or(0);
                    if s.matched < there.saturating_sub(s.inserted) {
                        s.matched += 1;
                        stats.present += 1;
                        continue;
                    }
                    s.inserted += 1;
                    stats.inserted += 1;
                    stats.oldest = Some(stats.oldest.map_or(r.ts, |o: i64| o.min(r.ts)));
                    events.push(r.to_event().map_err(anyhow::Error::msg)?);
                }
                if let Some(w) = writers.get_mut(&name) {
                    write(w, &events, retry)
                        .await
                        .with_context(|| format!("{at}: storing into table {t}"))?;
                }
            }
        }
    }
    // The search index takes the new rows now.
    for (t, w) in writers.iter_mut() {
        let mut retried = false;
        loop {
            if retry.stopping() {
                return Err(stopped(&done, &format!("indexing table {t}")));
            }
            let n = loop {
                match retry.guard(w.index_step(2 * 65_536)).await {
                    Ok(n) => break n,
                    Err(e) => retry
                        .after(e)
                        .await
                        .with_context(|| format!("indexing table {t}"))?,
                }
            };
            retry.succeeded();
            if n == 0 {
                if w.index_at_gap() && !retried {
                    retried = true;
                    continue;
                }
                break;
            }
            retried = false;
        }
    }
    let policy = config.retention_policy()?;
    let now = siemstress_common::time::now_ms();
    for (t, r) in &done {
        writeln!(
            out,
            "table {t}: {} rows restored (new ids), {} already there, {} archived twice",
            r.inserted, r.present, r.twice
        )?;
        if let (Some(oldest), Some(cutoff)) = (r.oldest, policy.table(t).cutoff(now))
            && oldest < cutoff
        {
            writeln!(
                out,
                "table {t}: warning: restored rows from {} are past its retention ({}): the \
                 next prune deletes them again; restore into a section that keeps them \
                 (-s SECTION with its own retention)",
                rfc3339_utc(oldest),
                policy.table(t)
            )?;
        }
    }
    Ok(())
}

/// The error of a restore stopped by a signal at `at`.
fn stopped(done: &BTreeMap<String, Restored>, at: &str) -> anyhow::Error {
    let inserted: u64 = done.values().map(|r| r.inserted).sum();
    anyhow::anyhow!(
        "restore stopped by a signal ({at}): {inserted} rows stored so far; run the same \
         --restore again to store the rest (rows already there are not stored twice)"
    )
}

/// Stores `events` in one transaction of `w`, retried through `retry`
/// (the writer settles a COMMIT whose answer was lost before it writes
/// again).
async fn write(
    w: &mut EventWriter,
    events: &[siemstress_common::event::Event],
    retry: &mut Retry,
) -> Result<(), siemstress_common::Error> {
    loop {
        // Not a source of new events: no watermark mark (the rows are old).
        match retry.guard(w.write(events, &[], &[])).await {
            Ok(()) => break,
            Err(e) => retry.after(e).await?,
        }
    }
    retry.succeeded();
    Ok(())
}

/// How often each content of `rows` occurs in table `t` (rows in their
/// range of `ts`).
async fn contents(
    db: &Database,
    t: &Ident,
    rows: &[(ArchivedRow, ContentKey)],
) -> Result<HashMap<ContentKey, u64>, siemstress_common::Error> {
    let mut counts = HashMap::new();
    let (Some(lo), Some(hi)) = (
        rows.iter().map(|r| r.0.ts).min(),
        rows.iter().map(|r| r.0.ts).max(),
    ) else {
        return Ok(counts);
    };
    let wanted: HashSet<ContentKey> = rows.iter().map(|r| r.1).collect();
    let filter = Filter {
        since: Some(lo),
        until: Some(hi.saturating_add(1)),
        ..Filter::default()
    };
    let from = [SectionTable::new(t.as_str().to_owned(), t.clone())];
    db.search_events(&from, &filter, None, &mut |_, _| {}, &mut |r| {
        let k = content_key(r);
        if wanted.contains(&k) {
            *counts.entry(k).or_insert(0) += 1;
        }
        Ok(())
    })
    .await?;
    Ok(counts)
}
