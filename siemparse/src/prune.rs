//! `siemparse --prune`: deletes what is past retention (`[section.NAME]
//! retention`, `[retention] default`, `alerts`, `snapshots`) and reports
//! what went. A following or listening siemparse runs the same prune at
//! most once an hour (over every siemparse on the database: the claim is
//! a row in the database). One prune runs at a time on a database (the
//! prune lease): two at once would pick the same rows, so each would report
//! bytes the other freed and archive rows twice. The batches and what stays
//! are `common::db::retention`'s.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use siemstress_common::archive::Archive;
use siemstress_common::config::retention::{Keep, Policy};
use siemstress_common::db::Database;
use siemstress_common::db::lease::LeaseKey;
use siemstress_common::db::retention::{BatchParts, HOLD_LIMIT, Pruned, StopFlag};
use siemstress_common::diag;
use siemstress_common::display::human_bytes;
use siemstress_common::ident::Ident;
use siemstress_common::time::{now_ms, rfc3339_utc};

/// How often a following or listening siemparse prunes, at most.
pub const EVERY: Duration = Duration::from_secs(3600);
/// How often it checks whether the hour is over.
const CHECK: Duration = Duration::from_secs(300);
/// How long the prune lease lasts unless renewed (every quarter of it): a
/// prune whose process is gone from another host is taken over after it;
/// one of this host, at once.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a prune that waits for another one tries the lease again.
const LEASE_POLL: Duration = Duration::from_secs(1);

/// What a prune does when another one holds the prune lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    /// `siemparse --prune`: wait for it to finish (then prune what is left).
    Wait,
    /// The hourly prune of a follower: skip this turn.
    Skip,
}

/// The prune lease while held: renewed in the background until
/// [`PruneLease::release`].
struct PruneLease {
    db: Database,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl PruneLease {
    /// Takes the lease, waiting for another holder or not (`None`: skipped,
    /// or stopped while waiting; the reason is written to `out`).
    async fn take(
        db: &Database,
        if_busy: IfBusy,
        stop: &StopFlag,
        out: &mut (dyn Write + Send),
    ) -> anyhow::Result<Option<Self>> {
        let holder = siemstress_common::holder::holder_id();
        let ttl = LEASE_TTL.as_millis() as i64;
        let mut waiting = false;
        loop {
            let Err(other) = db.acquire_lease(LeaseKey::Prune, &holder, ttl).await? else {
                break;
            };
            let who = siemstress_common::holder::describe(&other.holder);
            if if_busy == IfBusy::Skip {
                writeln!(out, "skipped: another prune is running ({who})")?;
                return Ok(None);
            }
            if !waiting {
                writeln!(
                    out,
                    "another prune is running ({who}): waiting for it to finish"
                )?;
                out.flush()?;
                waiting = true;
            }
            if stop.0.load(std::sync::atomic::Ordering::Relaxed) {
                writeln!(
                    out,
                    "stopped by a signal while waiting for the other prune; nothing pruned"
                )?;
                return Ok(None);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        let (renew_db, renew_holder) = (db.clone(), holder.clone());
        let renewer = tokio::spawn(async move {
            let mut lost = false;
            loop {
                tokio::time::sleep(LEASE_TTL / 4).await;
                match renew_db
                    .renew_lease(LeaseKey::Prune, &renew_holder, ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) if !lost => {
                        lost = true;
                        diag!(
                            "siemparse: warning: the prune lease was taken over (this prune \
                             did not renew it for {} s): another prune may run beside this one",
                            LEASE_TTL.as_secs()
                        );
                    }
                    Ok(false) => {}
                    Err(e) => diag!("siemparse: warning: renewing the prune lease: {e}"),
                }
            }
        });
        Ok(Some(Self {
            db: db.clone(),
            holder,
            renewer,
        }))
    }

    /// Gives the lease up (a lease not given up expires).
    async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.db.release_lease(LeaseKey::Prune, &self.holder).await {
            diag!("siemparse: warning: {e}");
        }
    }
}

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
    let Some(lease) = PruneLease::take(db, if_busy, stop, out).await? else {
        return Ok(());
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
