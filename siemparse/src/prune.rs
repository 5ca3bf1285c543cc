//! `siemparse --prune`: deletes what is past retention (`[section.NAME]
//! retention`, `[retention] default`, `alerts`, `snapshots`) and reports
//! what went. A following or listening siemparse runs the same prune at
//! most once an hour (over every siemparse on the database: the claim is
//! a row in the database). One prune runs at a time on a database (the
//! prune lease, `crate::job_lease`). The batches and what stays are
//! `common::db::retention`'s.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use siemstress_common::archive::Archive;
use siemstress_common::config::retention::{Keep, Policy};
use siemstress_common::db::Database;
use siemstress_common::db::retention::{BatchParts, HOLD_LIMIT, Pruned, StopFlag};
use siemstress_common::diag;
use siemstress_common::display::human_bytes;
use siemstress_common::ident::Ident;
use siemstress_common::time::{now_ms, rfc3339_utc};

use crate::job_lease::{IfBusy, Job, JobLease, NotTaken};

/// How often a following or listening siemparse prunes, at most.
pub const EVERY: Duration = Duration::from_secs(3600);
/// How often it checks whether the hour is over.
const CHECK: Duration = Duration::from_secs(300);

/// Prunes every event table (or only `only`), and alerts and snapshot runs
/// unless `only` is given; writes one line per kind of data to `out`. With
/// `policy.archive`, the event rows are archived there before they go.
/// Holds the prune lease meanwhile; `if_busy` says what to do if another
/// prune holds it.
pub async fn run(
    db: &Database,
    policy: &Policy,
    only: Option<&Ident>,
    if_busy: IfBusy,
    stop: &StopFlag,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    if !policy.prunes_anything() {
        writeln!(
            out,
            "nothing to prune: event rows, alerts and snapshot runs are all kept forever \
             (set [section.NAME] retention, [retention] default, alerts or snapshots; \
             sections that share a table keep its rows for the longest of their periods)"
        )?;
        return Ok(());
    }
    let stopping = || stop.0.load(std::sync::atomic::Ordering::Relaxed);
    let lease = match JobLease::take(db, Job::Prune, if_busy, stopping, out).await? {
        Ok(lease) => lease,
        Err(NotTaken::Busy(who)) => {
            writeln!(out, "skipped: another prune is running ({who})")?;
            return Ok(());
        }
        Err(NotTaken::Stopped) => {
            writeln!(
                out,
                "stopped by a signal while waiting for the other prune; nothing pruned"
            )?;
            return Ok(());
        }
    };
    let done = run_held(db, policy, only, stop, out).await;
    lease.release().await;
    done
}

/// [`run`] once the lease is held.
async fn run_held(
    db: &Database,
    policy: &Policy,
    only: Option<&Ident>,
    stop: &StopFlag,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let now = now_ms();
    let tables = match only {
        Some(t) => vec![t.clone()],
        None => {
            let mut v = Vec::new();
            for name in db.event_tables().await? {
                v.push(Ident::new(&name, "event table")?);
            }
            v
        }
    };
    let archive = match &policy.archive {
        Some(dir) => Some(
            Archive::open(dir)
                .with_context(|| format!("archive {}: nothing was pruned", dir.display()))?,
        ),
        None => None,
    };
    let pruned = prune_tables(db, policy, &tables, now, stop, archive.as_ref(), out).await;
    if let (Some(a), Some(dir)) = (&archive, &policy.archive) {
        // The batches written so far are whole and synced: their files get
        // their final names even after an error.
        let w = a.finish()?;
        for p in &w.repaired {
            writeln!(
                out,
                "archive: repaired {} (left by a prune that was killed)",
                p.display()
            )?;
        }
        writeln!(
            out,
            "archive: {} rows in {} files ({} compressed) under {}",
            w.rows,
            w.files.len(),
            human_bytes(w.bytes),
            dir.display()
        )?;
    }
    let freed = pruned?;
    if only.is_none() {
        let r = policy.retention;
        if let Some(before) = r.alerts.cutoff(now) {
            let p = db.prune_alerts(before, stop).await?;
            writeln!(
                out,
                "alerts: {} older than {} (retention {}){}",
                p.rows,
                rfc3339_utc(before),
                r.alerts,
                batches(&p)
            )?;
        }
        if !r.snapshots.keeps_all() {
            let s = db.prune_snapshots(r.snapshots, now, stop).await?;
            let keep_runs = r
                .snapshots
                .keep_runs
                .map_or("any number of".to_owned(), |k| k.to_string());
            let age = match r.snapshots.max_age {
                Keep::Forever => String::new(),
                k => format!(" taken within {k}"),
            };
            writeln!(
                out,
                "snapshots: {} runs and {} failed runs removed, {} rows no kept run reads \
                 deleted; {} removed runs still hold rows that kept runs read (keeping the \
                 diffs of {keep_runs} latest runs{age} per name and host)",
                s.runs, s.failed, s.rows, s.holders
            )?;
        }
    }
    if let Some(free) = db.free_bytes().await? {
        writeln!(
            out,
            "database file: {} free, reused by new rows before the file grows \
             ({} of row data freed now)",
            human_bytes(free),
            human_bytes(freed)
        )?;
    }
    if stop.0.load(std::sync::atomic::Ordering::Relaxed) {
        writeln!(out, "stopped by a signal; the next prune goes on")?;
    }
    Ok(())
}

/// The event tables' part of [`run`]; returns the bytes of row data freed.
async fn prune_tables(
    db: &Database,
    policy: &Policy,
    tables: &[Ident],
    now: i64,
    stop: &StopFlag,
    archive: Option<&Archive>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    let mut freed = 0;
    for t in tables {
        let keep = policy.table(t.as_str());
        let Some(before) = keep.cutoff(now) else {
            writeln!(out, "table {t}: kept forever")?;
            continue;
        };
        if !db.event_table_exists(t).await? {
            writeln!(out, "table {t}: does not exist")?;
            continue;
        }
        let p = db.prune_events(t, before, stop, archive).await?;
        freed += p.bytes;
        writeln!(
            out,
            "table {t}: {} rows ({} of row data) older than {} (retention {}){}",
            p.rows,
            human_bytes(p.bytes),
            rfc3339_utc(before),
            keep,
            batches(&p)
        )?;
    }
    Ok(freed)
}

/// The batches and merge steps with the longest of each: a concurrent
/// writer may wait for either.
fn batches(p: &Pruned) -> String {
    let n = p.batches;
    if n == 0 {
        return String::new();
    }
    let count = |n: u64, one: &str, many: &str, longest: std::time::Duration| {
        let ms = longest.as_millis();
        if n == 1 {
            format!("1 {one} ({ms} ms)")
        } else {
            format!("{n} {many} (the longest {ms} ms)")
        }
    };
    let mut s = format!(" in {}", count(n, "batch", "batches", p.longest_batch));
    let parts = p.longest_batch_parts;
    if parts != BatchParts::default() {
        // SQLite: what the longest batch held the write lock for.
        let ms = |d: std::time::Duration| d.as_millis();
        s.pop();
        s += &format!(
            ": reading {}, rows {}, index {}, index segment {}, commit {} ms)",
            ms(parts.read),
            ms(parts.rows),
            ms(parts.index),
            ms(parts.segment),
            ms(parts.commit)
        );
    }
    if p.merge_steps > 0 {
        s += " and ";
        s += &count(
            p.merge_steps,
            "index merge step",
            "index merge steps",
            p.longest_merge,
        );
    }
    if p.interrupted > 0 {
        s += &format!(
            "; {} stopped at the {} ms lock limit and done again smaller",
            p.interrupted,
            HOLD_LIMIT.as_millis()
        );
    }
    if !p.longest_checkpoint.is_zero() {
        s += &format!(
            "; checkpoints after them up to {} ms (no lock held)",
            p.longest_checkpoint.as_millis()
        );
    }
    s
}

/// The prune of a following or listening siemparse: at start and then at
/// most once per [`EVERY`] (over every siemparse on this database), in the
/// background, while ingest goes on. Its report goes to stderr unless
/// `quiet`; a failure is a warning, never the end of ingest. `None` when
/// the policy deletes nothing.
pub fn spawn_hourly(
    db: Database,
    policy: Policy,
    quiet: bool,
    stop: StopFlag,
) -> Option<tokio::task::JoinHandle<()>> {
    if !policy.prunes_anything() {
        return None;
    }
    let holder = format!(
        "{}:{}",
        siemstress_common::snapshot::local_host(),
        std::process::id()
    );
    Some(tokio::spawn(async move {
        loop {
            match db.claim_prune(&holder, EVERY.as_millis() as i64).await {
                Ok(true) => {
                    let mut report = Vec::new();
                    let done = run(&db, &policy, None, IfBusy::Skip, &stop, &mut report).await;
                    if !quiet {
                        for line in String::from_utf8_lossy(&report).lines() {
                            diag!("siemparse: prune: {line}");
                        }
                    }
                    if let Err(e) = done {
                        diag!("siemparse: warning: prune: {e:#}");
                    }
                }
                Ok(false) => {}
                Err(e) => diag!("siemparse: warning: prune: {e:#}"),
            }
            tokio::time::sleep(CHECK).await;
        }
    }))
}
