//! Runs the rules on event time, up to a watermark (issue 16).
//!
//! Per event table, the rules evaluate the rows whose `ts` is below the
//! table's watermark: the least latest event time of its active ingest
//! sources (see `common/src/db/sources.rs`) less the allowed lateness, and
//! never past the rows stored. A rule's position is `(last_id, wm, gaps)`:
//! every row with id up to `last_id` and `ts` below `wm` has been evaluated,
//! except the ids in `gaps`, which were not visible when the rule passed
//! them (an insert still in flight on MariaDB, another Galera node's share).
//! A cycle
//! 1. reads the rows that committed into the gaps since (late rows if their
//!    `ts` is below `wm`), then the ids that arrived after `last_id` (late
//!    rows again if below `wm`; the missing ids become gaps), and evaluates
//!    the late rows at once against the open windows (the documented rule:
//!    they are counted and reported);
//! 2. moves `wm` to the new watermark in chunks of event time, reading each
//!    chunk through the `(ts)` index in `(ts, id)` order.
//!
//! So rows are taken in `(ts, id)` order across writers, whichever was
//! faster. Every step's alerts, window changes and the new position of every
//! rule are committed in one transaction (fenced by the lease), so that a
//! kill at any moment neither repeats nor loses an alert. Rules at the same
//! position share every read (each rule's filters become flags of one scan,
//! each distinct regex runs once per row); a rule elsewhere (a new rule
//! starts at id 0) makes its own pass. Reading, evaluating and committing
//! overlap: the next chunk is read and the last one commits while a chunk
//! is evaluated, and the rules are evaluated in shares on threads of their
//! own. `snapshot_change` rules run after the event tables, over snapshot
//! runs (`snapshot.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::rules::prefilter::{Prefilter, Scratch};
use crate::rules::{Matcher, Rule, RuleRegex};
use anyhow::Context;
use siemstress_common::db::retry::Retry;
use siemstress_common::db::sources::Watermark;
use siemstress_common::db::trigger::{Gap, Reader, ScanTask, Sel, fill_gaps, find_gaps};
use siemstress_common::db::{Backend, Database};
use siemstress_common::diag;
use siemstress_common::display::Escaped;
use siemstress_common::ident::Ident;

use crate::Format;
use crate::actions::Actions;
use crate::engine::{
    Batch, Cand, Caps, EvFields, Evaluator, Hit, NewAlert, Overflow, Role, Win, Windows, rfc3339,
};
use siemstress_common::db::lease::{LeaseInfo, LeaseKey};
use siemstress_common::db::trigger::{Commit, Cond, Progress, RuleCommit, Scan};

/// Rows per chunk (one transaction each): ids of new rows, or rows of
/// event time below the watermark.
pub const CHUNK: i64 = 100_000;

/// An id gap older than this is a rollback or another node's share, not an
/// insert in flight: it is forgotten (a row committing into it later is
/// not found). As the `--grep` index's grace.
pub const GAP_GRACE_MS: i64 = 120_000;
/// Overrides [`GAP_GRACE_MS`] (milliseconds), for tests.
pub const GAP_GRACE_ENV: &str = "SIEMSTRESS_TRIGGER_GAP_GRACE_MS";

fn gap_grace_ms() -> i64 {
    env_override(GAP_GRACE_ENV).unwrap_or(GAP_GRACE_MS)
}

/// The value of environment variable `name`, if set and well formed.
fn env_override<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Why [`Runner::daemon`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonEnd {
    /// SIGTERM/SIGINT.
    Stopped,
    /// SIGHUP: reload the rules and actions, then go on.
    Reload,
}

/// What a run does with its results.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Store alerts and state, fenced by the lease of `holder`.
    Live { holder: String, ttl_ms: i64 },
    /// Evaluate from the stored state, print, store nothing.
    DryRun,
    /// Evaluate `[from, to)` from empty state, print, store nothing.
    Replay { from: i64, to: i64 },
}

/// Totals of one run.
#[derive(Debug, Default)]
pub struct Summary {
    pub rules: usize,
    pub candidates: u64,
    pub alerts: u64,
    /// Rules whose `table` is not an event table (yet): (rule, table).
    pub missing: Vec<(String, String)>,
    /// Rows evaluated late: stored after the watermark had passed their
    /// event time (evaluated at once against the open windows).
    pub late: u64,
    /// Ingest sources silent for longer than the idle timeout, which no
    /// longer hold their table's watermark: "table: host kind name".
    pub idle: Vec<String>,
    /// Rules that dropped state over their cap: (rule, table, what, max_keys).
    pub overflow: Vec<(String, String, Overflow, usize)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rules, {} matching events, {} alerts",
            self.rules, self.candidates, self.alerts
        )?;
        if self.late > 0 {
            write!(
                f,
                "; {} late rows (stored after the watermark passed their time; evaluated at \
                 once against the open windows)",
                self.late
            )?;
        }
        if !self.idle.is_empty() {
            write!(f, "; {}", idle_sources(&self.idle))?;
        }
        if !self.missing.is_empty() {
            write!(f, "; {}", missing_tables(&self.missing))?;
        }
        if !self.overflow.is_empty() {
            write!(f, "; {}", overflow_text(&self.overflow))?;
        }
        Ok(())
    }
}

/// "rule R over table T dropped N windows (over max_keys = M, oldest first)", for each rule.
pub fn overflow_text(overflow: &[(String, String, Overflow, usize)]) -> String {
    overflow
        .iter()
        .map(|(rule, table, o, max)| {
            let mut what = Vec::new();
            if o.windows > 0 {
                what.push(format!("{} windows", o.windows));
            }
            if o.events > 0 {
                what.push(format!("{} events of full windows", o.events));
            }
            format!(
                "rule {rule} over table {table} dropped {} over its state cap \
                 (max_keys = {max}, oldest first)",
                what.join(" and ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "rule R reads table T, which does not exist", for each rule.
pub fn missing_tables(missing: &[(String, String)]) -> String {
    missing
        .iter()
        .map(|(rule, table)| format!("rule {rule} reads table {table}, which does not exist"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// "idle sources (...): a, b".
pub fn idle_sources(idle: &[String]) -> String {
    format!(
        "idle sources (silent for longer than [trigger] idle_timeout; not holding the \
         watermark): {}",
        idle.join(", ")
    )
}

/// Evaluates a set of rules.
pub struct Runner<'a> {
    pub db: &'a Database,
    pub rules: &'a [Rule],
    pub actions: &'a Actions,
    pub mode: Mode,
    pub stop: Arc<AtomicBool>,
    /// Wait before reading snapshot runs (MariaDB: a run whose transaction
    /// took a lower id gets time to commit). Event rows need none: the
    /// watermark and the gaps replace it.
    pub settle: Duration,
    /// Print alerts on stdout in this format.
    pub print: Option<Format>,
    /// Rows per transaction.
    pub chunk: i64,
    /// `[trigger] allowed_lateness`, ms.
    pub lateness_ms: i64,
    /// `[trigger] idle_timeout`, ms.
    pub idle_ms: i64,
    /// Report late rows and idle sources on stderr as they are met.
    pub verbose: bool,
    /// Keep a copy of every alert here (`--test-sigma`).
    pub collected: Option<std::sync::Mutex<Vec<NewAlert>>>,
}

/// A rule's state over one table during a pass.
struct Run<'r> {
    rule: &'r Rule,
    progress: Progress,
    ev: Evaluator<'r>,
}

/// A position over a table: rows with id up to `h` and `ts` below `w` are
/// evaluated, except the ids in `gaps`.
#[derive(Debug, Clone, PartialEq)]
struct Pos {
    h: i64,
    w: i64,
    gaps: Vec<Gap>,
}

impl Pos {
    fn of(p: &Progress) -> anyhow::Result<Self> {
        let gaps = match &p.gaps {
            Some(g) if !g.is_empty() => serde_json::from_str(g).context("stored gaps")?,
            _ => Vec::new(),
        };
        Ok(Pos {
            h: p.last_id,
            // Before watermarks every row up to last_id was evaluated.
            w: p.wm
                .unwrap_or_else(|| p.max_ts.map_or(i64::MIN, |m| m.saturating_add(1))),
            gaps,
        })
    }

    /// The same position (the gaps' ages aside).
    fn same(&self, o: &Pos) -> bool {
        self.h == o.h
            && self.w == o.w
            && self.gaps.len() == o.gaps.len()
            && self
                .gaps
                .iter()
                .zip(&o.gaps)
                .all(|(a, b)| (a.0, a.1, a.2) == (b.0, b.1, b.2))
    }

    fn in_gap(&self, id: i64) -> bool {
        // Gaps are sorted by their first id; a gap may step over others' ids.
        let end = self.gaps.partition_point(|g| g.lo() <= id);
        self.gaps[..end].iter().any(|g| g.contains(id))
    }
}

impl Runner<'_> {
    fn holder(&self) -> Option<(&str, i64)> {
        match &self.mode {
            Mode::Live { holder, ttl_ms } => Some((holder, *ttl_ms)),
            _ => None,
        }
    }

    /// The lease actions run under (live runs only).
    fn action_lease(&self) -> Option<crate::actions::Lease<'_>> {
        self.holder()
            .map(|(holder, ttl_ms)| crate::actions::Lease { holder, ttl_ms })
    }

    /// Takes (or renews) the lease; `Err` names who holds it.
    async fn lease(&self) -> anyhow::Result<Result<(), LeaseInfo>> {
        let Some((holder, ttl)) = self.holder() else {
            return Ok(Ok(()));
        };
        Ok(self
            .db
            .acquire_lease(LeaseKey::Trigger, holder, ttl)
            .await?)
    }

    /// Gives the lease up (end of `--once`, or shutdown).
    pub async fn release(&self) {
        if let Some((holder, _)) = self.holder() {
            let _ = self.db.release_lease(LeaseKey::Trigger, holder).await;
        }
    }

    /// One run: `None` if another instance holds the lease.
    pub async fn once(&self) -> anyhow::Result<Option<Summary>> {
        if let Err(info) = self.lease().await? {
            diag!(
                "siemtrigger: another instance ({}) holds the lease until {}; not evaluating",
                info.holder,
                rfc3339(info.expires)
            );
            return Ok(None);
        }
        let s = self.cycle().await?;
        if let Some(lease) = self.action_lease() {
            self.actions
                .dispatch(self.db, &self.stop, true, lease)
                .await?;
        }
        Ok(Some(s))
    }

    /// Runs a cycle every `every` until SIGTERM; standby while another instance holds the lease.
    pub async fn daemon(
        &self,
        every: Duration,
        wake: &tokio::sync::Notify,
        hup: &tokio::sync::Notify,
        quiet: bool,
    ) -> anyhow::Result<DaemonEnd> {
        let mut standby = false;
        let mut missing: Vec<(String, String)> = Vec::new();
        let mut idle: Vec<String> = Vec::new();
        // A transient database error (an outage, a Galera node outside the
        // primary component, a deadlock) is waited out with backoff. Each
        // chunk's alerts commit with the rules' positions, and a cycle starts
        // from the stored positions and windows: a chunk whose COMMIT was
        // lost is evaluated again only if it did not commit.
        let mut retry = Retry::new("siemtrigger", self.stop.clone()).with_db(self.db.clone());
        while !self.stop.load(Ordering::SeqCst) {
            match retry.guard_any(self.lease()).await {
                Ok(Ok(())) => {
                    if standby && !quiet {
                        diag!("siemtrigger: took the lease; evaluating");
                    }
                    standby = false;
                    let mut lost = false;
                    match retry.guard_any(self.cycle()).await {
                        Ok(s) => {
                            retry.succeeded();
                            if s.missing != missing && !s.missing.is_empty() && !quiet {
                                diag!("siemtrigger: warning: {}", missing_tables(&s.missing));
                            }
                            if !s.overflow.is_empty() && !quiet {
                                diag!("siemtrigger: warning: {}", overflow_text(&s.overflow));
                            }
                            missing = s.missing;
                            if s.idle != idle && !s.idle.is_empty() && !quiet && !self.verbose {
                                diag!("siemtrigger: {}", idle_sources(&s.idle));
                            }
                            idle = s.idle;
                            if s.late > 0 && !quiet && !self.verbose {
                                diag!(
                                    "siemtrigger: {} late rows (stored after the watermark \
                                     passed their time; evaluated at once against the open \
                                     windows)",
                                    s.late
                                );
                            }
                        }
                        Err(e) if retry.handles(&e) => match retry.after_any(e).await {
                            Ok(()) => continue,
                            Err(_) => break,
                        },
                        Err(e)
                            if e.downcast_ref::<siemstress_common::Error>()
                                .is_some_and(|s| {
                                    matches!(s, siemstress_common::Error::LostLease)
                                }) =>
                        {
                            diag!("siemtrigger: {e:#}");
                            lost = true;
                        }
                        Err(e) => diag!("siemtrigger: cycle failed (retrying): {e:#}"),
                    }
                    // Not after the lease is lost: the next holder runs them.
                    if let Some(lease) = self.action_lease().filter(|_| !lost)
                        && let Err(e) = self
                            .actions
                            .dispatch(self.db, &self.stop, false, lease)
                            .await
                    {
                        diag!("siemtrigger: actions: {e:#}");
                    }
                }
                Ok(Err(info)) => {
                    if !standby && !quiet {
                        diag!(
                            "siemtrigger: standby: {} holds the lease until {}",
                            info.holder,
                            rfc3339(info.expires)
                        );
                    }
                    standby = true;
                }
                Err(e) if retry.handles(&e) => match retry.after_any(e).await {
                    Ok(()) => continue,
                    Err(_) => break,
                },
                Err(e) => diag!("siemtrigger: lease: {e:#}"),
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
                // A SIGHUP during a cycle is taken here, after it.
                _ = hup.notified() => return Ok(DaemonEnd::Reload),
            }
        }
        Ok(DaemonEnd::Stopped)
    }

    /// Evaluates every rule over everything new.
    pub async fn cycle(&self) -> anyhow::Result<Summary> {
        let registry = self.db.event_tables().await?;
        let replay = matches!(self.mode, Mode::Replay { .. });
        // The sources first, then the ids: a source's time is committed with
        // its rows, so every row a source had stored below it is read.
        let mut marks: BTreeMap<String, Watermark> = BTreeMap::new();
        if !replay {
            let now = self.db.server_now().await?;
            for t in &registry {
                let w = self
                    .db
                    .watermark(t, now, self.lateness_ms, self.idle_ms)
                    .await?;
                marks.insert(t.clone(), w);
            }
            if matches!(self.mode, Mode::Live { .. }) {
                // A listener makes a source per connection: forget those that
                // ended a week ago (best effort: an account without the grant
                // keeps them, which costs nothing but rows).
                let _ = self.db.prune_finished_sources(now, 7 * 86_400_000).await;
            }
        }
        let mut hi: BTreeMap<String, i64> = BTreeMap::new();
        for t in &registry {
            let ident = Ident::new(t, "event table")?;
            hi.insert(t.clone(), self.db.max_id(&ident).await?);
        }
        let snapshot_rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.snapshot().is_some())
            .collect();
        // Read before the settle: a run whose transaction took a lower id
        // and is still open gets time to commit.
        let snapshot_hi = if snapshot_rules.is_empty() {
            0
        } else {
            self.db.max_snapshot_run().await?
        };
        if !self.settle.is_zero() && !replay && !snapshot_rules.is_empty() {
            tokio::time::sleep(self.settle).await;
        }
        let mut summary = Summary {
            rules: self.rules.len(),
            missing: self.missing_tables(&registry),
            ..Summary::default()
        };
        for (t, w) in &marks {
            summary
                .idle
                .extend(w.idle.iter().map(|s| format!("{t}: {}", s.describe())));
        }
        if self.verbose && !summary.idle.is_empty() {
            diag!("siemtrigger: {}", idle_sources(&summary.idle));
        }
        for t in &registry {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(summary);
            }
            let rules: Vec<&Rule> = self
                .rules
                .iter()
                .filter(|r| r.snapshot().is_none())
                .filter(|r| r.table().is_none_or(|rt| rt.as_str() == t))
                .collect();
            if rules.is_empty() {
                continue;
            }
            self.table_pass(&rules, t, hi[t], marks.get(t), &mut summary, None)
                .await
                .with_context(|| format!("rules over table {t}"))?;
        }
        for rule in snapshot_rules {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.snapshot_rule(rule, snapshot_hi, &mut summary)
                .await
                .with_context(|| format!("rule {} over snapshot runs", rule.name))?;
        }
        Ok(summary)
    }

    /// Rules whose `table` is not among the event tables `registry`.
    pub fn missing_tables(&self, registry: &[String]) -> Vec<(String, String)> {
        self.rules
            .iter()
            .filter_map(|r| r.table().map(|t| (r, t.as_str())))
            .filter(|(_, t)| !registry.iter().any(|name| name == t))
            .map(|(r, t)| (r.name.clone(), t.to_owned()))
            .collect()
    }

    /// Evaluates `rule` over `table` up to id `hi` (`--explain-rule`).
    pub async fn rule_table(
        &self,
        rule: &Rule,
        table: &str,
        hi: i64,
        summary: &mut Summary,
        stats: Option<&mut HashMap<String, crate::engine::KeyStats>>,
    ) -> anyhow::Result<()> {
        self.table_pass(&[rule], table, hi, None, summary, stats)
            .await
    }

    /// A rule's stored progress and windows (empty for `--replay`); an edited
    /// rule keeps its progress but drops its windows.
    async fn load(&self, rule: &Rule, table: &str) -> anyhow::Result<(Progress, Windows)> {
        let (progress, stored) = match &self.mode {
            Mode::Replay { .. } => (Progress::default(), Vec::new()),
            _ => match self.db.progress(&rule.name, table).await? {
                Some(p) if p.fingerprint == rule.fingerprint => {
                    let w = self.db.windows(&rule.name, table).await?;
                    (p, w)
                }
                Some(p) => {
                    // The rule was edited: its open windows no longer mean the same.
                    if matches!(self.mode, Mode::Live { .. }) {
                        self.db.drop_windows(&rule.name, table).await?;
                    }
                    (p, Vec::new())
                }
                None => (Progress::default(), Vec::new()),
            },
        };
        let mut windows = Windows::with_capacity_and_hasher(stored.len(), Default::default());
        for (k, s) in stored {
            let w: Win = serde_json::from_str(&s)
                .with_context(|| format!("stored window state of rule {}", rule.name))?;
            windows.insert(k, w);
        }
        Ok((progress, windows))
    }

    /// Evaluates `rules` over `table` (ids up to `hi`, event time below the
    /// watermark `wm`; `None` for `--replay`, whose range is the mode's).
    async fn table_pass(
        &self,
        rules: &[&Rule],
        table: &str,
        hi: i64,
        wm: Option<&Watermark>,
        summary: &mut Summary,
        stats: Option<&mut HashMap<String, crate::engine::KeyStats>>,
    ) -> anyhow::Result<()> {
        let ident = Ident::new(table, "event table")?;
        let mut runs: Vec<Run> = Vec::new();
        for rule in rules {
            let (mut progress, windows) = self.load(rule, table).await?;
            progress.fingerprint = rule.fingerprint.clone();
            let mut ev = Evaluator::new(rule, table, windows);
            if stats.is_some() {
                ev.stats = Some(HashMap::new());
            }
            runs.push(Run { rule, progress, ev });
        }
        // Rules at the same position share every read.
        let mut groups: Vec<(Pos, Vec<usize>)> = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let pos = Pos::of(&r.progress)
                .with_context(|| format!("progress of rule {}", r.rule.name))?;
            match groups.iter_mut().find(|(p, _)| p.same(&pos)) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((pos, vec![i])),
            }
        }
        let mut io = Io {
            reader: Some(self.db.reader()?),
            storing: None,
        };
        let mut passes = async {
            for (pos, idx) in groups {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.group_pass(&ident, &mut runs, &idx, pos, hi, wm, &mut io, summary)
                    .await?;
            }
            anyhow::Ok(())
        }
        .await;
        // Even after an error: a chunk still committing when the pass
        // returns could land after the next cycle has read the positions.
        let stored = io.stored().await;
        passes = passes.and(stored);
        passes?;
        for r in &runs {
            if r.ev.overflow.any() {
                summary.overflow.push((
                    r.rule.name.clone(),
                    table.to_owned(),
                    r.ev.overflow,
                    r.ev.max_keys,
                ));
            }
        }
        if let Some(out) = stats {
            for r in &mut runs {
                if let Some(s) = r.ev.stats.take() {
                    out.extend(s);
                }
            }
        }
        Ok(())
    }

    /// One pass of the rules `idx` of `runs`, all at `pos`.
    #[allow(clippy::too_many_arguments)]
    async fn group_pass(
        &self,
        t: &Ident,
        runs: &mut [Run<'_>],
        idx: &[usize],
        mut pos: Pos,
        hi: i64,
        wm: Option<&Watermark>,
        io: &mut Io,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let rules: Vec<&Rule> = idx.iter().map(|&i| runs[i].rule).collect();
        let plan = self.plan(&rules);
        let scan = |sel: Sel| Scan {
            table: t.clone(),
            cols: plan.cols.clone(),
            conds: plan.conds.clone(),
            sel,
        };
        if let Mode::Replay { from, to } = self.mode {
            let pos = Pos {
                h: hi,
                w: from,
                gaps: Vec::new(),
            };
            return self
                .on_time(t, runs, idx, pos, to, false, &plan, io, summary)
                .await;
        }
        // Ids are visible out of order only on MariaDB (SQLite serialises
        // its writers): there, ids not visible yet are gaps.
        let track_gaps = self.db.backend() == Backend::Mysql;

        // 1. Rows that committed into the gaps since the last pass.
        if !pos.gaps.is_empty() {
            let now = siemstress_common::time::now_ms();
            let found = self.db.rows_in_gaps(t, &pos.gaps).await?;
            let ids: Vec<i64> = found.iter().map(|r| r.0).collect();
            let late: Vec<i64> = found.iter().filter(|r| r.1 < pos.w).map(|r| r.0).collect();
            let mut gaps = fill_gaps(&pos.gaps, &ids);
            let grace = gap_grace_ms();
            gaps.retain(|g| now.saturating_sub(g.since()) < grace);
            gaps.sort_unstable();
            let changed = gaps != pos.gaps;
            pos.gaps = gaps;
            if !late.is_empty() {
                self.late(t, late.len(), summary);
                for chunk in late.chunks(1000) {
                    let mut batch = io.read(scan(Sel::List(chunk.to_vec()))).await?.0;
                    batch.sort();
                    self.evaluate(&batch, &plan, runs, idx, summary, |_| {});
                }
            }
            if changed || !late.is_empty() {
                self.commit(t, runs, idx, &pos, summary, io).await?;
            }
        }

        // 2. The ids that arrived: those below the watermark reached are
        // late rows, those not visible yet are gaps.
        let mut unsaved = false;
        if !track_gaps && pos.w == i64::MIN && pos.h < hi {
            // Nothing evaluated yet and no gaps to find: no row can be late
            // (stored with the first chunk of event time).
            pos.h = hi;
            unsaved = true;
        }
        let step = if track_gaps && pos.h < hi {
            self.db.id_step().await?
        } else {
            1
        };
        while pos.h < hi {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let c_hi = hi.min(pos.h.saturating_add(self.chunk.max(1)));
            let rows = self.db.ids_between(t, pos.h, c_hi).await?;
            if track_gaps {
                let present: Vec<i64> = rows.iter().map(|r| r.0).collect();
                let now = siemstress_common::time::now_ms();
                pos.gaps.extend(find_gaps(pos.h, c_hi, &present, step, now));
                pos.gaps.sort_unstable();
            }
            let late: Vec<i64> = rows.iter().filter(|r| r.1 < pos.w).map(|r| r.0).collect();
            if !late.is_empty() {
                self.late(t, late.len(), summary);
                for chunk in late.chunks(1000) {
                    let mut batch = io.read(scan(Sel::List(chunk.to_vec()))).await?.0;
                    batch.sort();
                    self.evaluate(&batch, &plan, runs, idx, summary, |_| {});
                }
            }
            pos.h = c_hi;
            self.commit(t, runs, idx, &pos, summary, io).await?;
        }

        // 3. On time: event time from the watermark reached to the new one,
        // never past the rows stored (a row stored later with an older time
        // is late).
        let target = wm.map_or(i64::MAX, |w| w.ts);
        let stored = self
            .db
            .max_ts_upto(t, pos.h)
            .await?
            .map_or(i64::MIN, |m| m.saturating_add(1));
        let to = pos.w.max(target.min(stored));
        self.on_time(t, runs, idx, pos, to, unsaved, &plan, io, summary)
            .await
    }

    /// Counts (and with `--verbose` reports) `n` late rows of `t`.
    fn late(&self, t: &Ident, n: usize, summary: &mut Summary) {
        summary.late += n as u64;
        if self.verbose {
            diag!(
                "siemtrigger: {t}: {n} late rows (stored after the watermark passed their \
                 time); evaluated at once against the open windows"
            );
        }
    }

    /// Moves the position's watermark to `to` in chunks of event time
    /// (`unsaved`: the position has moved since it was stored). The next
    /// chunk is read while this one is evaluated (its bounds depend only on
    /// the position's ids and this chunk's end).
    #[allow(clippy::too_many_arguments)]
    async fn on_time(
        &self,
        t: &Ident,
        runs: &mut [Run<'_>],
        idx: &[usize],
        mut pos: Pos,
        to: i64,
        mut unsaved: bool,
        plan: &Plan<'_>,
        io: &mut Io,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let scan = |from: i64, to: i64, max_id: i64| Scan {
            table: t.clone(),
            cols: plan.cols.clone(),
            conds: plan.conds.clone(),
            sel: Sel::Ts { from, to, max_id },
        };
        // The chunk read ahead: its task and its end.
        let mut ahead: Option<(ScanTask<Batch>, i64)> = None;
        while pos.w < to {
            if self.stop.load(Ordering::SeqCst) {
                if let Some((task, _)) = ahead {
                    io.finish_read(task).await?;
                }
                return Ok(());
            }
            let (task, end) = match ahead.take() {
                Some(a) => a,
                None => {
                    let end = self
                        .db
                        .ts_chunk_end(t, pos.w, to, pos.h, self.chunk)
                        .await?;
                    (io.start_read(scan(pos.w, end, pos.h)), end)
                }
            };
            let (mut batch, chunk_max) = io.finish_read(task).await?;
            if end < to {
                let next = self.db.ts_chunk_end(t, end, to, pos.h, self.chunk).await?;
                ahead = Some((io.start_read(scan(end, next, pos.h)), next));
            }
            if !pos.gaps.is_empty() {
                // Rows that committed into a gap are read with the gaps (late or not).
                batch.rows.retain(|h| !pos.in_gap(h.id));
            }
            batch.sort();
            self.evaluate(&batch, plan, runs, idx, summary, |r| {
                r.progress.max_ts = match (r.progress.max_ts, chunk_max) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if let Some(m) = r.progress.max_ts {
                    r.ev.advance(m);
                    r.ev.collect_garbage(m);
                }
            });
            pos.w = end;
            self.commit(t, runs, idx, &pos, summary, io).await?;
            unsaved = false;
        }
        if unsaved {
            self.commit(t, runs, idx, &pos, summary, io).await?;
        }
        Ok(())
    }

    /// Applies the rows of `batch` (in its order) to the rules `idx`, then
    /// `finish` to each rule. The plan's parts (disjoint sets of rules) run
    /// on threads of their own over the same rows: a rule's state and
    /// alerts are its own, and alerts are taken rule by rule in `idx` order
    /// (see [`Runner::commit`]), so the results do not depend on the split.
    fn evaluate(
        &self,
        batch: &Batch,
        plan: &Plan<'_>,
        runs: &mut [Run<'_>],
        idx: &[usize],
        summary: &mut Summary,
        finish: impl Fn(&mut Run<'_>) + Sync,
    ) {
        // Each part's runs, in the order of its rules.
        let mut at: Vec<Option<(usize, usize)>> = vec![None; runs.len()];
        for (pi, part) in plan.parts.iter().enumerate() {
            for (k, &p) in part.rules.iter().enumerate() {
                if let Some(slot) = idx.get(p).and_then(|&i| at.get_mut(i)) {
                    *slot = Some((pi, k));
                }
            }
        }
        let mut shares: Vec<Vec<Option<&mut Run<'_>>>> = plan
            .parts
            .iter()
            .map(|p| p.rules.iter().map(|_| None).collect())
            .collect();
        for (r, at) in runs.iter_mut().zip(at) {
            if let Some((pi, k)) = at {
                shares[pi][k] = Some(r);
            }
        }
        let finish = &finish;
        let cands = &plan.candidates(batch);
        let mut shares = plan.parts.iter().zip(shares);
        let Some((part0, mut share0)) = shares.next() else {
            return;
        };
        summary.candidates += std::thread::scope(|s| {
            let others: Vec<_> = shares
                .map(|(part, mut share)| {
                    s.spawn(move || evaluate_part(batch, cands, part, &mut share, finish))
                })
                .collect();
            let mut n = evaluate_part(batch, cands, part0, &mut share0, finish);
            // A thread that panicked is re-raised by the scope.
            n += others
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .sum::<u64>();
            n
        });
    }

    /// Stores the alerts, window changes and position `pos` of the rules
    /// `idx` in one transaction (live runs), and prints the alerts. The
    /// results are taken from the rules here; the transaction runs in a
    /// task of its own while the caller evaluates the next chunk (the
    /// second core), after the one before has committed: transactions stay
    /// in chunk order, one at a time, and [`Io::stored`] waits for the last.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        t: &Ident,
        runs: &mut [Run<'_>],
        idx: &[usize],
        pos: &Pos,
        summary: &mut Summary,
        io: &mut Io,
    ) -> anyhow::Result<()> {
        let gaps = if pos.gaps.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&pos.gaps).context("encode gaps")?)
        };
        let mut alerts: Vec<(NewAlert, usize)> = Vec::new();
        let mut rules: Vec<(String, Progress, Vec<String>)> = Vec::with_capacity(idx.len());
        let mut windows = Vec::with_capacity(idx.len());
        for &i in idx {
            let r = &mut runs[i];
            r.progress.last_id = pos.h;
            r.progress.wm = Some(pos.w);
            r.progress.gaps = gaps.clone();
            let n = rules.len();
            let new = std::mem::take(&mut r.ev.alerts);
            let actions = if new.is_empty() {
                Vec::new()
            } else {
                r.rule.actions.clone()
            };
            alerts.extend(new.into_iter().map(|a| (a, n)));
            rules.push((r.rule.name.clone(), r.progress.clone(), actions));
            windows.push(r.ev.take_dirty().context("encode window state")?);
        }
        summary.alerts += alerts.len() as u64;
        if let Some(c) = &self.collected {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            c.extend(alerts.iter().map(|(a, _)| a.clone()));
        }
        let staged = Staged {
            table: t.as_str().to_owned(),
            rules,
            windows,
            alerts,
        };
        io.stored().await?;
        match &self.mode {
            Mode::Live { holder, ttl_ms } => {
                let (db, holder, ttl_ms, print) =
                    (self.db.clone(), holder.clone(), *ttl_ms, self.print);
                io.storing = Some(tokio::spawn(async move {
                    staged.store(&db, &holder, ttl_ms, print).await
                }));
            }
            _ => {
                if let Some(f) = self.print {
                    let list: Vec<&NewAlert> = staged.alerts.iter().map(|(a, _)| a).collect();
                    print_alerts(&list, None, f)?;
                }
            }
        }
        Ok(())
    }
}

/// One chunk's results, taken from the rules, to store.
struct Staged {
    table: String,
    /// Per rule: name, position, and the actions of its alerts.
    rules: Vec<(String, Progress, Vec<String>)>,
    /// Per rule (as `rules`), its window changes.
    windows: Vec<crate::engine::Changes>,
    /// In the order raised, each with its rule's index in `rules`.
    alerts: Vec<(NewAlert, usize)>,
}

impl Staged {
    /// Commits the chunk fenced by the lease of `holder`, then prints its
    /// alerts with their ids.
    async fn store(
        self,
        db: &Database,
        holder: &str,
        ttl_ms: i64,
        print: Option<Format>,
    ) -> anyhow::Result<()> {
        let rules = self
            .rules
            .iter()
            .zip(self.windows)
            .map(|((rule, progress, _), windows)| RuleCommit {
                rule,
                progress,
                windows,
            })
            .collect();
        let ids = db
            .commit_trigger(&Commit {
                holder: Some(holder),
                lease_ttl_ms: ttl_ms,
                table: &self.table,
                rules,
                alerts: self
                    .alerts
                    .iter()
                    .map(|(a, n)| (a, self.rules[*n].2.as_slice()))
                    .collect(),
            })
            .await?;
        if let Some(f) = print {
            let list: Vec<&NewAlert> = self.alerts.iter().map(|(a, _)| a).collect();
            print_alerts(&list, Some(&ids), f)?;
        }
        Ok(())
    }
}

/// A pass's reads and writes under way.
struct Io {
    /// The event table's reader; in its task while a chunk is read (ahead).
    reader: Option<Reader>,
    /// The transaction of the last chunk, running while the next is evaluated.
    storing: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Io {
    /// Starts reading the rows of `scan` on the reader, in a task of its own.
    fn start_read(&mut self, scan: Scan) -> ScanTask<Batch> {
        let r = self.reader.take().expect("reader");
        let sink = Batch::of(&scan);
        r.spawn(scan, sink)
    }

    /// The rows of a read started with [`Io::start_read`], with the latest
    /// event time of the chunk; the reader comes back.
    async fn finish_read(&mut self, task: ScanTask<Batch>) -> anyhow::Result<(Batch, Option<i64>)> {
        let (r, scanned) = task.await.context("scan task")?;
        self.reader = Some(r);
        Ok(scanned?)
    }

    /// Reads the rows of `scan`.
    async fn read(&mut self, scan: Scan) -> anyhow::Result<(Batch, Option<i64>)> {
        let task = self.start_read(scan);
        self.finish_read(task).await
    }

    /// Waits until the last chunk given to [`Runner::commit`] has committed.
    async fn stored(&mut self) -> anyhow::Result<()> {
        match self.storing.take() {
            Some(task) => task.await.context("store task")?,
            None => Ok(()),
        }
    }
}

/// Applies the rows of `batch` to the rules of `part` (`runs[k]` is the
/// run of its rule `k`), then `finish` to each; the number of candidates.
/// Per row, only the checks the prefilter lets through are run, and only
/// the rules those checks (or a back-reference) concern are visited.
fn evaluate_part(
    batch: &Batch,
    cands: &Candidates,
    part: &Part<'_>,
    runs: &mut [Option<&mut Run<'_>>],
    finish: &(impl Fn(&mut Run<'_>) + Sync),
) -> u64 {
    let mut n = 0;
    let mut matched: Vec<(usize, Caps)> = Vec::new();
    let mut visit: Vec<usize> = Vec::new();
    for i in 0..batch.rows.len() {
        let ev = batch.ev(i);
        let fields = EvFields::new(ev);
        matched.clear();
        for k in cands.of(i).iter().filter_map(|&g| part.local[g]) {
            if part.check_conds[k].iter().any(|&ci| ev.flag(ci))
                && let Some(caps) = part.checks[k].1.check_event(&fields)
            {
                matched.push((k, caps));
            }
        }
        visit.clear();
        visit.extend_from_slice(&part.always_rules);
        for (k, _) in &matched {
            visit.extend_from_slice(&part.check_rules[*k]);
        }
        visit.sort_unstable();
        visit.dedup();
        for &ai in &visit {
            let mut c = Cand::new(ev);
            for &(role, ci, check) in &part.roles[ai] {
                if !ev.flag(ci) {
                    continue;
                }
                match check {
                    None => c.roles[role as usize] = Some(Hit::Deferred),
                    Some(k) => {
                        if let Some((_, caps)) = matched.iter().find(|m| m.0 == k) {
                            c.roles[role as usize] = Some(Hit::Caps(caps));
                        }
                    }
                }
            }
            if c.any()
                && let Some(r) = runs.get_mut(ai).and_then(|r| r.as_deref_mut())
            {
                n += 1;
                r.ev.advance(ev.ts);
                r.ev.apply(&c);
            }
        }
    }
    for r in runs.iter_mut().flatten() {
        finish(r);
    }
    n
}

/// How a chunk is read and matched: distinct SQL conditions (flags of the
/// scan), and the rules in parts evaluated on threads of their own.
struct Plan<'r> {
    conds: Vec<Cond>,
    cols: Vec<&'static str>,
    parts: Vec<Part<'r>>,
    /// Which checks of all the parts (distinct by [`check_identity`]) a row
    /// may pass (see `rules::prefilter`): one scan of a row for every part.
    prefilter: Prefilter,
}

/// The prefilter's candidate checks (indexes among the plan's distinct
/// checks) of each row of a chunk.
struct Candidates {
    /// Row `i`'s are `checks[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    checks: Vec<usize>,
}

impl Candidates {
    fn of(&self, row: usize) -> &[usize] {
        &self.checks[self.starts[row]..self.starts[row + 1]]
    }
}

impl Plan<'_> {
    /// The candidates of every row of `batch`: the rows in halves on two
    /// threads (as the parts' evaluation then uses both cores), each row
    /// scanned once for all the parts.
    fn candidates(&self, batch: &Batch) -> Candidates {
        let scan = |rows: std::ops::Range<usize>| {
            let mut scratch = Scratch::default();
            let mut one = Vec::new();
            let mut starts = Vec::with_capacity(rows.len());
            let mut checks = Vec::new();
            for i in rows {
                starts.push(checks.len());
                self.prefilter
                    .candidates(&EvFields::new(batch.ev(i)), &mut scratch, &mut one);
                checks.extend_from_slice(&one);
            }
            (starts, checks)
        };
        let n = batch.rows.len();
        let (mut starts, mut checks) = if self.parts.len() > 1 && n >= 64 {
            let mid = n / 2;
            let ((mut s1, mut c1), (s2, c2)) = std::thread::scope(|s| {
                let second = s.spawn(|| scan(mid..n));
                let first = scan(0..mid);
                (
                    first,
                    second
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                )
            });
            let base = c1.len();
            s1.extend(s2.into_iter().map(|x| x + base));
            c1.extend(c2);
            (s1, c1)
        } else {
            scan(0..n)
        };
        starts.push(checks.len());
        checks.shrink_to_fit();
        Candidates { starts, checks }
    }
}

/// A share of a plan's rules: distinct regex checks; per rule, its roles
/// on them and on the plan's conditions.
struct Part<'r> {
    /// Its rules: positions among the plan's rules.
    rules: Vec<usize>,
    checks: Vec<(String, &'r Matcher)>,
    roles: Vec<Vec<(Role, usize, Option<usize>)>>,
    /// Per check of the plan's prefilter, its index among `checks`.
    local: Vec<Option<usize>>,
    /// Per check, the conds of the roles that use it: it is run on a row
    /// with one of those flags.
    check_conds: Vec<Vec<usize>>,
    /// Per check, the rules (indexes of `roles`) that use it.
    check_rules: Vec<Vec<usize>>,
    /// Rules with a role checked later (back-references): visited on every row.
    always_rules: Vec<usize>,
}

/// Threads that evaluate a chunk's rows, each over a share of the rules
/// (the reader and the commit of the chunk before take the rest of the
/// machine); the prefilter scans each row once, for all shares.
pub const EVAL_THREADS: usize = 2;
/// Overrides [`EVAL_THREADS`] (at least 1), for tests and benchmarks.
pub const EVAL_THREADS_ENV: &str = "SIEMSTRESS_TRIGGER_THREADS";

fn eval_threads() -> usize {
    env_override(EVAL_THREADS_ENV)
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(EVAL_THREADS))
        })
        .max(1)
}

impl Runner<'_> {
    fn plan<'r>(&self, rules: &[&'r Rule]) -> Plan<'r> {
        let mut conds: Vec<Cond> = Vec::new();
        let mut cols: BTreeSet<&'static str> = BTreeSet::new();
        // Per rule, its matchers with the index of their condition.
        let mut matchers = Vec::with_capacity(rules.len());
        for rule in rules {
            cols.extend(rule.needed_columns());
            let mut ms = Vec::new();
            for (name, m) in rule.matchers() {
                let cond = self.db.cond(&m.filter);
                let ci = match conds.iter().position(|c| *c == cond) {
                    Some(ci) => ci,
                    None => {
                        conds.push(cond);
                        conds.len() - 1
                    }
                };
                ms.push((name, m, ci));
            }
            matchers.push(ms);
        }
        let n = eval_threads().min(rules.len()).max(1);
        let mut parts: Vec<Part<'r>> = (0..n)
            .map(|p| {
                // Every n-th rule: the generated and the shipped ones spread alike.
                let share: Vec<usize> = (p..rules.len()).step_by(n).collect();
                let ms: Vec<_> = share.iter().map(|&i| &matchers[i]).collect();
                Part::new(share, &ms)
            })
            .collect();
        // The parts' checks, each distinct one once, for one shared scan.
        let mut all: Vec<(String, &'r Matcher)> = Vec::new();
        let mut locals = Vec::with_capacity(parts.len());
        for part in &parts {
            let mut global_of = Vec::with_capacity(part.checks.len());
            for (id, m) in &part.checks {
                global_of.push(match all.iter().position(|(g, _)| g == id) {
                    Some(g) => g,
                    None => {
                        all.push((id.clone(), *m));
                        all.len() - 1
                    }
                });
            }
            locals.push(global_of);
        }
        for (part, global_of) in parts.iter_mut().zip(locals) {
            part.local = vec![None; all.len()];
            for (k, g) in global_of.into_iter().enumerate() {
                part.local[g] = Some(k);
            }
        }
        let ms: Vec<&Matcher> = all.iter().map(|(_, m)| *m).collect();
        Plan {
            conds,
            cols: cols.into_iter().collect(),
            prefilter: Prefilter::new(&ms),
            parts,
        }
    }
}

impl<'r> Part<'r> {
    /// The part of the rules at `rules`, whose matchers (name, matcher,
    /// condition) are `matchers`.
    fn new(rules: Vec<usize>, matchers: &[&Vec<(&str, &'r Matcher, usize)>]) -> Self {
        let mut checks: Vec<(String, &'r Matcher)> = Vec::new();
        let mut check_conds: Vec<Vec<usize>> = Vec::new();
        let mut check_rules: Vec<Vec<usize>> = Vec::new();
        let mut always_rules = Vec::new();
        let mut plan = Vec::new();
        for (ai, ms) in matchers.iter().enumerate() {
            let mut roles = Vec::new();
            for &(name, m, ci) in ms.iter() {
                let check = (!m.has_backrefs()).then(|| {
                    let id = check_identity(m);
                    let k = match checks.iter().position(|c| c.0 == id) {
                        Some(k) => k,
                        None => {
                            checks.push((id, m));
                            check_conds.push(Vec::new());
                            check_rules.push(Vec::new());
                            checks.len() - 1
                        }
                    };
                    if !check_conds[k].contains(&ci) {
                        check_conds[k].push(ci);
                    }
                    if !check_rules[k].contains(&ai) {
                        check_rules[k].push(ai);
                    }
                    k
                });
                if check.is_none() && always_rules.last() != Some(&ai) {
                    always_rules.push(ai);
                }
                roles.push((Role::from_name(name), ci, check));
            }
            plan.push(roles);
        }
        Part {
            rules,
            // Filled in by the plan, which knows every part's checks.
            local: Vec::new(),
            checks,
            roles: plan,
            check_conds,
            check_rules,
            always_rules,
        }
    }
}

/// What decides a matcher's regex check: its include and exclude regexes.
fn check_identity(m: &Matcher) -> String {
    let mut id = String::new();
    for r in &m.regex {
        match r {
            RuleRegex::Fixed(re) => id.push_str(re.as_str()),
            RuleRegex::BackRef { template, .. } => id.push_str(&template.source),
        }
        id.push('\0');
    }
    id.push('\u{1}');
    for r in &m.rregex {
        id.push_str(r.as_str());
        id.push('\0');
    }
    // The `where` expression and the steps decide too.
    for (src, _) in m.expr.iter().chain(&m.steps) {
        id.push('\u{2}');
        id.push_str(src);
    }
    id
}

/// Prints alerts on stdout (text lines or NDJSON).
pub fn print_alerts(alerts: &[&NewAlert], ids: Option<&[i64]>, f: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, a) in alerts.iter().enumerate() {
        let id = ids.and_then(|ids| ids.get(i)).copied();
        match f {
            // Keys and messages hold the events' text: escaped for the terminal.
            Format::Text => writeln!(
                out,
                "{}{} {} {} [{}] {} (count {}, since {})",
                id.map(|i| format!("#{i} ")).unwrap_or_default(),
                rfc3339(a.ts),
                a.severity,
                a.rule,
                Escaped(&a.key),
                Escaped(&a.message),
                a.count,
                rfc3339(a.first_ts)
            )?,
            Format::Json => {
                let mut v = serde_json::to_value(a)?;
                if let Some(id) = id {
                    v["id"] = id.into();
                }
                writeln!(out, "{v}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
