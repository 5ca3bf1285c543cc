//! Runs the rules: per event table, the rows after the rules' stored progress
//! are read once per id chunk for all the table's rules (each rule's filters
//! become flags of one scan, each distinct regex runs once per row), evaluated
//! in `(ts, id)` order, and the chunk's alerts, window changes and progress of
//! every rule are committed in one transaction (fenced by the lease), so that
//! a kill at any moment neither repeats nor loses an alert. Rules whose
//! progress differs (a new rule starts at id 0) join the pass at their own
//! progress: chunk boundaries fall on it. `snapshot_change` rules run after
//! the event tables, over snapshot runs (`snapshot.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::rules::{Matcher, Rule, RuleRegex};
use anyhow::Context;
use siemstress_common::db::Database;
use siemstress_common::db::retry::Retry;
use siemstress_common::display::Escaped;
use siemstress_common::ident::Ident;

use crate::Format;
use crate::actions::Actions;
use crate::engine::{
    Batch, Cand, Caps, Changes, EvFields, Evaluator, Hit, NewAlert, Overflow, Role, Win, rfc3339,
};
use siemstress_common::db::lease::{LeaseInfo, LeaseKey};
use siemstress_common::db::trigger::{Commit, Cond, Progress, RuleCommit, Scan, ScanTask};

/// Event ids per chunk (one transaction each).
pub const CHUNK: i64 = 100_000;

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

/// Evaluates a set of rules.
pub struct Runner<'a> {
    pub db: &'a Database,
    pub rules: &'a [Rule],
    pub actions: &'a Actions,
    pub mode: Mode,
    pub stop: Arc<AtomicBool>,
    pub settle: Duration,
    /// Print alerts on stdout in this format.
    pub print: Option<Format>,
    /// Event ids per transaction.
    pub chunk: i64,
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
            eprintln!(
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
        // A transient database error (an outage, a Galera node outside the
        // primary component, a deadlock) is waited out with backoff. Each
        // chunk's alerts commit with the rules' progress, and a cycle starts
        // from the stored progress and windows: a chunk whose COMMIT was
        // lost is evaluated again only if it did not commit.
        let mut retry = Retry::new("siemtrigger", self.stop.clone()).with_db(self.db.clone());
        while !self.stop.load(Ordering::SeqCst) {
            match retry.guard_any(self.lease()).await {
                Ok(Ok(())) => {
                    if standby && !quiet {
                        eprintln!("siemtrigger: took the lease; evaluating");
                    }
                    standby = false;
                    let mut lost = false;
                    match retry.guard_any(self.cycle()).await {
                        Ok(s) => {
                            retry.succeeded();
                            if s.missing != missing && !s.missing.is_empty() && !quiet {
                                eprintln!("siemtrigger: warning: {}", missing_tables(&s.missing));
                            }
                            if !s.overflow.is_empty() && !quiet {
                                eprintln!("siemtrigger: warning: {}", overflow_text(&s.overflow));
                            }
                            missing = s.missing;
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
                            eprintln!("siemtrigger: {e:#}");
                            lost = true;
                        }
                        Err(e) => eprintln!("siemtrigger: cycle failed (retrying): {e:#}"),
                    }
                    // Not after the lease is lost: the next holder runs them.
                    if let Some(lease) = self.action_lease().filter(|_| !lost)
                        && let Err(e) = self
                            .actions
                            .dispatch(self.db, &self.stop, false, lease)
                            .await
                    {
                        eprintln!("siemtrigger: actions: {e:#}");
                    }
                }
                Ok(Err(info)) => {
                    if !standby && !quiet {
                        eprintln!(
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
                Err(e) => eprintln!("siemtrigger: lease: {e:#}"),
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
        // Read before the settle, as the event tables' ids: a run whose
        // transaction took a lower id and is still open gets time to commit.
        let snapshot_hi = if snapshot_rules.is_empty() {
            0
        } else {
            self.db.max_snapshot_run().await?
        };
        if !self.settle.is_zero() && !matches!(self.mode, Mode::Replay { .. }) {
            tokio::time::sleep(self.settle).await;
        }
        let mut summary = Summary {
            rules: self.rules.len(),
            missing: self.missing_tables(&registry),
            ..Summary::default()
        };
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
            self.table_pass(&rules, t, hi[t], &mut summary, None)
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
        self.table_pass(&[rule], table, hi, summary, stats).await
    }

    /// A rule's stored progress and windows (empty for `--replay`); an edited
    /// rule keeps its progress but drops its windows.
    async fn load(
        &self,
        rule: &Rule,
        table: &str,
    ) -> anyhow::Result<(Progress, HashMap<String, Win>)> {
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
        let mut windows = HashMap::with_capacity(stored.len());
        for (k, s) in stored {
            let w: Win = serde_json::from_str(&s)
                .with_context(|| format!("stored window state of rule {}", rule.name))?;
            windows.insert(k, w);
        }
        Ok((progress, windows))
    }

    /// Evaluates `rules` over `table` up to id `hi`, one scan per chunk.
    async fn table_pass(
        &self,
        rules: &[&Rule],
        table: &str,
        hi: i64,
        summary: &mut Summary,
        stats: Option<&mut HashMap<String, crate::engine::KeyStats>>,
    ) -> anyhow::Result<()> {
        struct Run<'r> {
            rule: &'r Rule,
            progress: Progress,
            ev: Evaluator<'r>,
        }
        let ident = Ident::new(table, "event table")?;
        let mut runs: Vec<Run> = Vec::new();
        for rule in rules {
            let (mut progress, windows) = self.load(rule, table).await?;
            progress.fingerprint = rule.fingerprint.clone();
            if progress.last_id >= hi {
                continue;
            }
            let mut ev = Evaluator::new(rule, table, windows);
            if stats.is_some() {
                ev.stats = Some(HashMap::new());
            }
            runs.push(Run { rule, progress, ev });
        }
        let Some(mut lo) = runs.iter().map(|r| r.progress.last_id).min() else {
            return Ok(());
        };
        let range = match self.mode {
            Mode::Replay { from, to } => Some((from, to)),
            _ => None,
        };
        let mut reader = Some(self.db.reader()?);
        // The next chunk's scan, started before the current one is evaluated.
        let mut ahead: Option<(Scan, ScanTask<Batch>)> = None;
        while lo < hi {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let last: Vec<i64> = runs.iter().map(|r| r.progress.last_id).collect();
            let (c_hi, active) = chunk_at(&last, lo, hi, self.chunk);
            let rules: Vec<&Rule> = active.iter().map(|i| runs[*i].rule).collect();
            let Plan {
                conds,
                checks,
                roles: plan,
                cols,
            } = self.plan(&rules);
            let scan = Scan {
                table: ident.clone(),
                cols,
                conds,
                lo,
                hi: c_hi,
                range,
            };
            let task = match ahead.take() {
                Some((s, task)) if s == scan => task,
                Some((_, task)) => {
                    let (r, _) = task.await.context("scan task")?;
                    r.spawn(scan.clone(), Batch::of(&scan))
                }
                None => reader
                    .take()
                    .expect("reader")
                    .spawn(scan.clone(), Batch::of(&scan)),
            };
            let (r, scanned) = task.await.context("scan task")?;
            let (mut batch, chunk_max) = scanned?;
            batch.sort();
            // Read the next chunk while this one is evaluated and committed:
            // after the commit, the active rules' progress is `c_hi`.
            if c_hi < hi {
                let mut next_last = last.clone();
                for &i in &active {
                    next_last[i] = c_hi;
                }
                let (n_hi, n_active) = chunk_at(&next_last, c_hi, hi, self.chunk);
                let n_rules: Vec<&Rule> = n_active.iter().map(|i| runs[*i].rule).collect();
                let p = self.plan(&n_rules);
                let next = Scan {
                    table: ident.clone(),
                    cols: p.cols,
                    conds: p.conds,
                    lo: c_hi,
                    hi: n_hi,
                    range,
                };
                let sink = Batch::of(&next);
                ahead = Some((next.clone(), r.spawn(next, sink)));
            } else {
                reader = Some(r);
            }
            let mut memo: Vec<Option<Option<Caps>>> = vec![None; checks.len()];
            for i in 0..batch.rows.len() {
                let ev = batch.ev(i);
                let fields = EvFields::new(ev);
                memo.iter_mut().for_each(|m| *m = None);
                for roles in &plan {
                    for &(_, ci, check) in roles {
                        if let Some(k) = check
                            && memo[k].is_none()
                            && ev.flag(ci)
                        {
                            memo[k] = Some(checks[k].1.check_event(&fields));
                        }
                    }
                }
                for (ai, roles) in plan.iter().enumerate() {
                    let mut c = Cand::new(ev);
                    for &(role, ci, check) in roles {
                        if !ev.flag(ci) {
                            continue;
                        }
                        match check {
                            None => c.roles[role as usize] = Some(Hit::Deferred),
                            Some(k) => {
                                if let Some(Some(caps)) = &memo[k] {
                                    c.roles[role as usize] = Some(Hit::Caps(caps));
                                }
                            }
                        }
                    }
                    if c.any() {
                        summary.candidates += 1;
                        let e = &mut runs[active[ai]].ev;
                        e.advance(ev.ts);
                        e.apply(&c);
                    }
                }
            }

            let mut alerts: Vec<(NewAlert, &[String])> = Vec::new();
            let mut commits: Vec<(usize, Changes)> = Vec::new();
            for &i in &active {
                let r = &mut runs[i];
                r.progress.max_ts = match (r.progress.max_ts, chunk_max) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if let Some(m) = r.progress.max_ts {
                    r.ev.advance(m);
                    r.ev.collect_garbage(m);
                }
                r.progress.last_id = c_hi;
                let actions: &[String] = &r.rule.actions;
                alerts.extend(
                    std::mem::take(&mut r.ev.alerts)
                        .into_iter()
                        .map(|a| (a, actions)),
                );
                commits.push((i, r.ev.take_dirty()));
            }
            summary.alerts += alerts.len() as u64;
            let ids = match &self.mode {
                Mode::Live { holder, ttl_ms } => {
                    let mut rules = Vec::with_capacity(commits.len());
                    for (i, dirty) in commits {
                        let mut windows = Vec::with_capacity(dirty.len());
                        for (k, w) in dirty {
                            let json = w
                                .map(|w| serde_json::to_string(&w))
                                .transpose()
                                .context("encode window state")?;
                            windows.push((k, json));
                        }
                        rules.push(RuleCommit {
                            rule: &runs[i].rule.name,
                            progress: &runs[i].progress,
                            windows,
                        });
                    }
                    let ids = self
                        .db
                        .commit_trigger(&Commit {
                            holder: Some(holder),
                            lease_ttl_ms: *ttl_ms,
                            table,
                            rules,
                            alerts: alerts.iter().map(|(a, acts)| (a, *acts)).collect(),
                        })
                        .await?;
                    Some(ids)
                }
                _ => None,
            };
            if let Some(f) = self.print {
                let list: Vec<&NewAlert> = alerts.iter().map(|(a, _)| a).collect();
                print_alerts(&list, ids.as_deref(), f)?;
            }
            lo = c_hi;
        }
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
}

/// The chunk that starts at `lo`: its end and the rules evaluated over it
/// (those whose progress `last` is at most `lo`; a rule further on joins at
/// its own progress, so chunk boundaries fall on it).
fn chunk_at(last: &[i64], lo: i64, hi: i64, chunk: i64) -> (i64, Vec<usize>) {
    let next_start = last.iter().copied().filter(|l| *l > lo).min().unwrap_or(hi);
    let c_hi = hi.min(lo.saturating_add(chunk.max(1))).min(next_start);
    let active = (0..last.len()).filter(|i| last[*i] <= lo).collect();
    (c_hi, active)
}

/// How a chunk is read and matched: distinct SQL conditions (flags of the
/// scan) and distinct regex checks; per rule, its roles on them.
struct Plan<'r> {
    conds: Vec<Cond>,
    checks: Vec<(String, &'r Matcher)>,
    roles: Vec<Vec<(Role, usize, Option<usize>)>>,
    cols: Vec<&'static str>,
}

impl Runner<'_> {
    fn plan<'r>(&self, rules: &[&'r Rule]) -> Plan<'r> {
        let mut conds: Vec<Cond> = Vec::new();
        let mut checks: Vec<(String, &'r Matcher)> = Vec::new();
        let mut plan = Vec::new();
        let mut cols: BTreeSet<&'static str> = BTreeSet::new();
        for rule in rules {
            cols.extend(rule.needed_columns());
            let mut roles = Vec::new();
            for (name, m) in rule.matchers() {
                let cond = self.db.cond(&m.filter);
                let ci = match conds.iter().position(|c| *c == cond) {
                    Some(ci) => ci,
                    None => {
                        conds.push(cond);
                        conds.len() - 1
                    }
                };
                let check = (!m.has_backrefs()).then(|| {
                    let id = check_identity(m);
                    match checks.iter().position(|c| c.0 == id) {
                        Some(k) => k,
                        None => {
                            checks.push((id, m));
                            checks.len() - 1
                        }
                    }
                });
                roles.push((Role::from_name(name), ci, check));
            }
            plan.push(roles);
        }
        Plan {
            conds,
            checks,
            roles: plan,
            cols: cols.into_iter().collect(),
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
