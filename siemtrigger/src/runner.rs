//! Runs the rules: per rule and event table, rows after the stored progress
//! are read in id chunks, evaluated in `(ts, id)` order, and each chunk's
//! alerts, window changes and progress are committed in one transaction
//! (fenced by the lease), so that a kill at any moment neither repeats nor
//! loses an alert.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use siemstress_common::filter::Filter;
use siemstress_common::ident::Ident;
use siemstress_common::rules::{Kind, Rule};

use crate::Format;
use crate::actions::Actions;
use crate::engine::{Cand, Evaluator, NewAlert, Role, Win, rfc3339};
use crate::store::{Commit, LeaseInfo, Progress, Store, StoreError};

/// Event ids per chunk (one transaction each).
pub const CHUNK: i64 = 100_000;

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
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rules, {} matching events, {} alerts",
            self.rules, self.candidates, self.alerts
        )
    }
}

/// `host:pid:nonce`, the lease holder name of this process.
pub fn holder_id() -> String {
    let host = hostname();
    let nonce: u32 = std::process::id() ^ (siemstress_common::time::now_ms() as u32);
    format!("{host}:{}:{nonce:08x}", std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The holder if it is a dead process on this host (its lease can be taken at once).
fn dead_local_holder(info: &LeaseInfo) -> Option<&str> {
    let mut parts = info.holder.rsplitn(3, ':');
    let _nonce = parts.next()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    (host == hostname() && !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .then_some(info.holder.as_str())
}

/// Evaluates a set of rules.
pub struct Runner<'a> {
    pub store: Store,
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

    /// Takes (or renews) the lease; `Err` names who holds it.
    async fn lease(&self) -> anyhow::Result<Result<(), LeaseInfo>> {
        let Some((holder, ttl)) = self.holder() else {
            return Ok(Ok(()));
        };
        let got = self.store.acquire(holder, ttl, None).await?;
        if let Err(info) = &got
            && let Some(dead) = dead_local_holder(info)
        {
            return Ok(self.store.acquire(holder, ttl, Some(dead)).await?);
        }
        Ok(got)
    }

    /// Gives the lease up (end of `--once`, or shutdown).
    pub async fn release(&self) {
        if let Some((holder, _)) = self.holder() {
            let _ = self.store.release(holder).await;
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
        if self.holder().is_some() {
            self.actions.dispatch(&self.store, &self.stop, true).await?;
        }
        Ok(Some(s))
    }

    /// Runs a cycle every `every` until SIGTERM; standby while another instance holds the lease.
    pub async fn daemon(
        &self,
        every: Duration,
        wake: &tokio::sync::Notify,
        quiet: bool,
    ) -> anyhow::Result<()> {
        let mut standby = false;
        while !self.stop.load(Ordering::SeqCst) {
            match self.lease().await {
                Ok(Ok(())) => {
                    if standby && !quiet {
                        eprintln!("siemtrigger: took the lease; evaluating");
                    }
                    standby = false;
                    match self.cycle().await {
                        Ok(_) => {}
                        Err(e)
                            if e.downcast_ref::<StoreError>()
                                .is_some_and(|s| matches!(s, StoreError::LostLease)) =>
                        {
                            eprintln!("siemtrigger: {e:#}");
                        }
                        Err(e) => eprintln!("siemtrigger: cycle failed (retrying): {e:#}"),
                    }
                    if let Err(e) = self.actions.dispatch(&self.store, &self.stop, false).await {
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
                Err(e) => eprintln!("siemtrigger: lease: {e:#}"),
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
            }
        }
        Ok(())
    }

    /// Evaluates every rule over everything new.
    pub async fn cycle(&self) -> anyhow::Result<Summary> {
        let registry = self.store.event_tables().await?;
        let mut hi: BTreeMap<String, i64> = BTreeMap::new();
        for t in &registry {
            let ident = Ident::new(t, "event table")?;
            hi.insert(t.clone(), self.store.max_id(&ident).await?);
        }
        if !self.settle.is_zero() && !matches!(self.mode, Mode::Replay { .. }) {
            tokio::time::sleep(self.settle).await;
        }
        let mut summary = Summary::default();
        for rule in self.rules {
            if rule.kind == Kind::SnapshotChange {
                continue;
            }
            summary.rules += 1;
            let tables: Vec<&String> = match &rule.table {
                Some(t) => registry.iter().filter(|r| *r == t.as_str()).collect(),
                None => registry.iter().collect(),
            };
            for t in tables {
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(summary);
                }
                self.rule_table(rule, t, hi[t], &mut summary, None)
                    .await
                    .with_context(|| format!("rule {} over table {t}", rule.name))?;
            }
        }
        Ok(summary)
    }

    /// Evaluates `rule` over `table` up to id `hi`.
    pub async fn rule_table(
        &self,
        rule: &Rule,
        table: &str,
        hi: i64,
        summary: &mut Summary,
        stats: Option<&mut HashMap<String, crate::engine::KeyStats>>,
    ) -> anyhow::Result<()> {
        let ident = Ident::new(table, "event table")?;
        let (mut progress, stored) = match &self.mode {
            Mode::Replay { .. } => (Progress::default(), Vec::new()),
            _ => {
                let p = self.store.progress(&rule.name, table).await?;
                match p {
                    Some(p) if p.fingerprint == rule.fingerprint => {
                        let w = self.store.windows(&rule.name, table).await?;
                        (p, w)
                    }
                    Some(p) => {
                        // The rule was edited: its open windows no longer mean the same.
                        if matches!(self.mode, Mode::Live { .. }) {
                            self.store.drop_windows(&rule.name, table).await?;
                        }
                        (p, Vec::new())
                    }
                    None => (Progress::default(), Vec::new()),
                }
            }
        };
        progress.fingerprint = rule.fingerprint.clone();
        if progress.last_id >= hi {
            return Ok(());
        }
        let mut windows = HashMap::with_capacity(stored.len());
        for (k, s) in stored {
            let w: Win = serde_json::from_str(&s).map_err(|e| StoreError::State {
                rule: rule.name.clone(),
                e,
            })?;
            windows.insert(k, w);
        }
        let mut ev = Evaluator::new(rule, table, windows);
        if stats.is_some() {
            ev.stats = Some(HashMap::new());
        }
        let cols: Vec<&'static str> = rule.needed_columns().into_iter().collect();
        let range = match self.mode {
            Mode::Replay { from, to } => Some((from, to)),
            _ => None,
        };
        let mut lo = progress.last_id;
        while lo < hi {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let c_hi = hi.min(lo.saturating_add(self.chunk.max(1)));
            let cands = self
                .candidates(rule, &ident, &cols, lo, c_hi, range)
                .await?;
            summary.candidates += cands.len() as u64;
            for c in &cands {
                ev.advance(c.ev.ts);
                ev.apply(c);
            }
            let mut all = Filter::default();
            if let Some((from, to)) = range {
                all.since = Some(from);
                all.until = Some(to);
            }
            let chunk_max = self.store.max_ts(&ident, lo, c_hi, &all).await?;
            progress.max_ts = match (progress.max_ts, chunk_max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(m) = progress.max_ts {
                ev.advance(m);
                ev.collect_garbage(m);
            }
            progress.last_id = c_hi;
            let alerts = std::mem::take(&mut ev.alerts);
            summary.alerts += alerts.len() as u64;
            let dirty = ev.take_dirty();
            match &self.mode {
                Mode::Live { holder, ttl_ms } => {
                    let mut windows = Vec::with_capacity(dirty.len());
                    for (k, w) in dirty {
                        let json = w
                            .map(|w| serde_json::to_string(&w))
                            .transpose()
                            .context("encode window state")?;
                        windows.push((k, json));
                    }
                    let ids = self
                        .store
                        .commit(&Commit {
                            holder: Some(holder),
                            lease_ttl_ms: *ttl_ms,
                            rule: &rule.name,
                            table,
                            progress: progress.clone(),
                            windows,
                            alerts: &alerts,
                            actions: &rule.actions,
                        })
                        .await?;
                    if let Some(f) = self.print {
                        print_alerts(&alerts, Some(&ids), f)?;
                    }
                }
                _ => {
                    if let Some(f) = self.print {
                        print_alerts(&alerts, None, f)?;
                    }
                }
            }
            lo = c_hi;
        }
        if let (Some(out), Some(s)) = (stats, ev.stats.take()) {
            out.extend(s);
        }
        Ok(())
    }

    /// Candidate events of rows `(lo, hi]`: each role's filter in SQL, its
    /// regexes in Rust, merged in `(ts, id)` order.
    async fn candidates(
        &self,
        rule: &Rule,
        t: &Ident,
        cols: &[&'static str],
        lo: i64,
        hi: i64,
        range: Option<(i64, i64)>,
    ) -> anyhow::Result<Vec<Cand>> {
        let mut merged: BTreeMap<(i64, i64), Cand> = BTreeMap::new();
        for (name, m) in rule.matchers() {
            let role = match name {
                "match" => Role::Match,
                "reset" => Role::Reset,
                "first" => Role::First,
                _ => Role::Second,
            };
            let mut f = m.filter.clone();
            if let Some((from, to)) = range {
                f.since = Some(f.since.map_or(from, |s| s.max(from)));
                f.until = Some(f.until.map_or(to, |u| u.min(to)));
            }
            for e in self.store.fetch(t, &f, cols, lo, hi).await? {
                let caps = if m.has_backrefs() {
                    None
                } else {
                    match m.check(e.raw()) {
                        Some(c) => Some(c),
                        None => continue,
                    }
                };
                merged
                    .entry((e.ts, e.id))
                    .or_insert_with(|| Cand {
                        ev: e,
                        roles: Vec::new(),
                    })
                    .roles
                    .push((role, caps));
            }
        }
        Ok(merged.into_values().collect())
    }
}

/// Prints alerts on stdout (text lines or NDJSON).
pub fn print_alerts(alerts: &[NewAlert], ids: Option<&[i64]>, f: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, a) in alerts.iter().enumerate() {
        let id = ids.and_then(|ids| ids.get(i)).copied();
        match f {
            Format::Text => writeln!(
                out,
                "{}{} {} {} [{}] {} (count {}, since {})",
                id.map(|i| format!("#{i} ")).unwrap_or_default(),
                rfc3339(a.ts),
                a.severity,
                a.rule,
                a.key,
                a.message,
                a.count,
                rfc3339(a.first_ts)
            )?,
            Format::Json => {
                let mut v = serde_json::json!({
                    "rule": a.rule, "severity": a.severity, "key": a.key,
                    "ts": rfc3339(a.ts), "first_ts": rfc3339(a.first_ts), "count": a.count,
                    "message": a.message, "event_table": a.event_table, "events": a.events,
                });
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
