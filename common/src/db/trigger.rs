//! siemtrigger's state: rule progress and open windows, the lease that
//! keeps two instances from evaluating at once, alerts with their events
//! and queued action runs (all stored by one [`Database::commit_trigger`]
//! per chunk), the action queue, and the scans of event rows a chunk reads
//! ([`Reader`]; SQLite and MariaDB read them differently, see
//! `sqlite/scan.rs` and `mysql/scan.rs`).

use sha2::Digest;

use super::events::INDEX_TS;
use super::lease::LeaseKey;
use super::sql::Sql;
use super::{Backend, Database};
use crate::Error;
use crate::filter::Filter;
use crate::ident::Ident;
use crate::snapshot::STATUS_OK;

/// Rows per multi-row INSERT of alerts and windows (5-10 binds each: far
/// under both bind limits).
const ROWS_PER_INSERT: usize = 500;

/// Rows per multi-row INSERT of alert events and action runs (2-3 binds each).
const EVENTS_PER_INSERT: usize = 3000;

/// Stored progress of a rule over a table: the rows with id up to
/// `last_id` and `ts` below `wm` have been evaluated, except the ids in
/// `gaps` (JSON of [`Gap`]s) that were not visible then.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Progress {
    pub last_id: i64,
    /// Latest event time evaluated.
    pub max_ts: Option<i64>,
    pub fingerprint: String,
    /// The watermark reached (`None`: stored before watermarks, when every
    /// row up to `last_id` was evaluated: read as `max_ts + 1`).
    pub wm: Option<i64>,
    pub gaps: Option<String>,
}

/// What one rule stores with a batch.
pub struct RuleCommit<'a> {
    pub rule: &'a str,
    pub progress: &'a Progress,
    /// Windows to store (`Some` JSON) or delete (`None`), by key.
    pub windows: Vec<(String, Option<String>)>,
}

/// An alert raised by an evaluation, to store. Serialized, it is the
/// alert's JSON of `siemtrigger --format json` (times as RFC 3339, without
/// `window_end`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewAlert {
    pub rule: String,
    pub severity: String,
    pub key: String,
    /// Event time of the firing.
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub ts: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub first_ts: i64,
    pub count: i64,
    pub message: String,
    pub event_table: String,
    #[serde(skip)]
    pub window_end: Option<i64>,
    /// Ids of the events it covers (of `event_table`).
    pub events: Vec<i64>,
}

/// Everything one batch stores, in one transaction: the alerts of every rule
/// evaluated over the batch, their windows and progress.
pub struct Commit<'a> {
    /// Lease holder to check and renew (`None`: no fencing).
    pub holder: Option<&'a str>,
    pub lease_ttl_ms: i64,
    pub table: &'a str,
    pub rules: Vec<RuleCommit<'a>>,
    /// Alerts, each with the actions queued for it.
    pub alerts: Vec<(&'a NewAlert, &'a [String])>,
}

/// A filter's SQL condition with its bound values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond(pub(crate) Sql<'static>);

impl Cond {
    /// True if the condition lets every row through.
    pub fn is_true(&self) -> bool {
        self.0.text() == "1"
    }

    /// The SQL text, with `?` placeholders for its bound values (for
    /// `siemtrigger --explain-rule`).
    pub fn text(&self) -> &str {
        self.0.text()
    }
}

/// Which rows of a table a [`Scan`] reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Sel {
    /// Ids `(lo, hi]` in id order (rows that arrived since the last
    /// cycle), with `ts` below `ts_below` if given (late rows).
    Ids {
        lo: i64,
        hi: i64,
        ts_below: Option<i64>,
    },
    /// Event times `[from, to)` among ids up to `max_id`, through the
    /// `(ts)` index (rows below the watermark, in chunks of event time).
    Ts { from: i64, to: i64, max_id: i64 },
    /// These ids (late rows found in gaps).
    List(Vec<i64>),
}

/// One chunk to read: the rows of `sel` that pass at least one of
/// `conds`, with a flag per cond and `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub table: Ident,
    pub cols: Vec<&'static str>,
    pub conds: Vec<Cond>,
    pub sel: Sel,
}

impl Scan {
    /// `FROM table<hint> WHERE <sel>`.
    pub(crate) fn push_from_where(&self, q: &mut Sql<'static>) {
        let b = q.backend();
        q.push(" FROM ").table(&self.table, "");
        match &self.sel {
            Sel::Ids { lo, hi, ts_below } => {
                q.push(match b {
                    // Every row of the id range is read in rowid order, no index.
                    Backend::Sqlite => " NOT INDEXED",
                    Backend::Mysql => " FORCE INDEX (PRIMARY)",
                });
                q.push(" WHERE id > ").bind(*lo);
                q.push(" AND id <= ").bind(*hi);
                if let Some(t) = ts_below {
                    q.push(" AND ts < ").bind(*t);
                }
            }
            Sel::Ts { from, to, max_id } => {
                match b {
                    Backend::Sqlite => q.push(" INDEXED BY ").table(&self.table, INDEX_TS),
                    Backend::Mysql => q
                        .push(" FORCE INDEX (")
                        .table(&self.table, INDEX_TS)
                        .push(")"),
                };
                q.push(" WHERE ts >= ").bind(*from);
                q.push(" AND ts < ").bind(*to);
                q.push(" AND id <= ").bind(*max_id);
            }
            Sel::List(ids) => {
                q.push(" WHERE id IN ").list(ids.iter().copied());
            }
        }
    }

    /// `SELECT id, ts, (cond) AS c0, ..., cols FROM table<hint> WHERE <sel>`.
    pub(crate) fn select(&self, backend: Backend) -> Sql<'static> {
        let mut q = Sql::with(backend, "SELECT id, ts");
        for (j, c) in self.conds.iter().enumerate() {
            q.push(", (").append(&c.0).push(")").alias(j);
        }
        for c in &self.cols {
            q.push(", ").quoted(c);
        }
        self.push_from_where(&mut q);
        q
    }
}

/// Ids `lo, lo + step, ..., hi` that were not visible when siemtrigger
/// passed them (an insert in flight, a rollback, another Galera node's
/// share of the ids), since `since` (epoch ms): a row that commits into one
/// later is a late row, found by [`Database::rows_in_gaps`]. Stored as JSON
/// `[lo, hi, step, since]` in `trigger_progress.gaps`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Gap(pub i64, pub i64, pub i64, pub i64);

impl Gap {
    pub fn lo(&self) -> i64 {
        self.0
    }
    pub fn hi(&self) -> i64 {
        self.1
    }
    pub fn step(&self) -> i64 {
        self.2.max(1)
    }
    pub fn since(&self) -> i64 {
        self.3
    }

    /// True if `id` is one of the gap's ids.
    pub fn contains(&self, id: i64) -> bool {
        id >= self.0 && id <= self.1 && (id - self.0) % self.step() == 0
    }
}

/// The gaps of `(lo, hi]` given the ids present there (sorted) and the
/// server's id step (`auto_increment_increment`, Galera: the cluster size):
/// per residue class of the step, the runs of missing ids.
pub fn find_gaps(lo: i64, hi: i64, present: &[i64], step: i64, since: i64) -> Vec<Gap> {
    let step = step.max(1);
    let mut gaps = Vec::new();
    // Per residue: the next id expected.
    let mut next: Vec<i64> = (1..=step).map(|k| lo + k).collect();
    let close = |gaps: &mut Vec<Gap>, from: i64, to: i64| {
        if from <= to {
            gaps.push(Gap(from, to, step, since));
        }
    };
    for &id in present {
        if id <= lo || id > hi {
            continue;
        }
        let r = ((id - lo - 1) % step) as usize;
        if id > next[r] {
            close(&mut gaps, next[r], id - step);
        }
        next[r] = next[r].max(id + step);
    }
    for n in next {
        if n <= hi {
            // The last id of the class at or below hi.
            close(&mut gaps, n, n + (hi - n) / step * step);
        }
    }
    gaps.sort_unstable();
    gaps
}

/// `gaps` without the ids in `found` (sorted): a gap is split around them.
pub fn fill_gaps(gaps: &[Gap], found: &[i64]) -> Vec<Gap> {
    let mut out = Vec::with_capacity(gaps.len());
    for g in gaps {
        let mut from = g.lo();
        let start = found.partition_point(|&id| id < g.lo());
        for &id in &found[start..] {
            if id > g.hi() {
                break;
            }
            if !g.contains(id) {
                continue;
            }
            if id > from {
                out.push(Gap(from, id - g.step(), g.step(), g.since()));
            }
            from = id + g.step();
        }
        if from <= g.hi() {
            out.push(Gap(from, g.hi(), g.step(), g.since()));
        }
    }
    out
}

/// Receives the rows of a [`Scan`]: per row `begin`, then one `flag` per
/// cond, then the values of `cols` in order.
pub trait ScanSink: Send + 'static {
    fn begin(&mut self, id: i64, ts: i64);
    fn flag(&mut self, v: bool);
    fn text(&mut self, v: Option<&str>);
    fn int(&mut self, v: Option<i64>);
}

/// The rows of a scan, delivered to the sink, and the latest event time of
/// its id range (whether the rows passed a cond or not).
pub type Scanned<S> = Result<(S, Option<i64>), Error>;

/// A queued action run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionRun {
    pub id: i64,
    pub alert_id: i64,
    pub action: String,
    pub attempts: i64,
    /// When it is due (epoch ms).
    pub next_try: i64,
}

#[derive(sqlx::FromRow)]
struct IdTs {
    id: i64,
    ts: i64,
}

#[derive(sqlx::FromRow)]
struct Step {
    step: i64,
}

/// Most gap ranges per query of [`Database::rows_in_gaps`] (4 binds each).
const GAPS_PER_QUERY: usize = 200;

/// SHA-256 of a window key, its primary key column (keys can be long).
pub fn key_hash(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in sha2::Sha256::digest(key.as_bytes()) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

fn now() -> i64 {
    crate::time::now_ms()
}

#[derive(sqlx::FromRow)]
struct Window {
    wkey: String,
    state: String,
}

#[derive(sqlx::FromRow)]
struct Id {
    id: i64,
}

#[derive(sqlx::FromRow)]
struct Name {
    name: String,
}

#[derive(sqlx::FromRow)]
struct Max {
    max: Option<i64>,
}

fn err(action: &str, what: &str) -> impl Fn(sqlx::Error) -> Error {
    let (action, what) = (action.to_owned(), what.to_owned());
    move |e| Error::db(&action, &what, e)
}

impl Database {
    /// Names in the registry of event tables, sorted.
    pub async fn event_tables(&self) -> Result<Vec<String>, Error> {
        let q = self.sql("SELECT name FROM event_tables ORDER BY name");
        let rows: Vec<Name> = self
            .fetch_all(&q)
            .await
            .map_err(err("list", "event tables"))?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// The highest id of event table `t` (0 when empty).
    pub async fn max_id(&self, t: &Ident) -> Result<i64, Error> {
        let mut q = self.sql("SELECT MAX(id) AS max FROM ");
        q.table(t, "");
        let m: Max = self.fetch_one(&q).await.map_err(err("read", t.as_str()))?;
        Ok(m.max.unwrap_or(0))
    }

    /// (id, ts) of the rows `(lo, hi]` of `t`, by id.
    pub async fn ids_between(&self, t: &Ident, lo: i64, hi: i64) -> Result<Vec<(i64, i64)>, Error> {
        let mut q = self.sql("SELECT id, ts FROM ");
        q.table(t, "").push(" WHERE id > ").bind(lo);
        q.push(" AND id <= ").bind(hi).push(" ORDER BY id");
        let rows: Vec<IdTs> = self.fetch_all(&q).await.map_err(err("read", t.as_str()))?;
        Ok(rows.into_iter().map(|r| (r.id, r.ts)).collect())
    }

    /// (id, ts) of the rows of `t` now in `gaps`, by id.
    pub async fn rows_in_gaps(&self, t: &Ident, gaps: &[Gap]) -> Result<Vec<(i64, i64)>, Error> {
        let mut out = Vec::new();
        for chunk in gaps.chunks(GAPS_PER_QUERY) {
            let mut q = self.sql("SELECT id, ts FROM ");
            q.table(t, "").push(" WHERE ");
            for (i, g) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { " OR (" });
                q.push("id >= ")
                    .bind(g.lo())
                    .push(" AND id <= ")
                    .bind(g.hi());
                if g.step() > 1 {
                    q.push(" AND (id - ")
                        .bind(g.lo())
                        .push(") % ")
                        .bind(g.step());
                    q.push(" = 0");
                }
                q.push(")");
            }
            let rows: Vec<IdTs> = self.fetch_all(&q).await.map_err(err("read", t.as_str()))?;
            out.extend(rows.into_iter().map(|r| (r.id, r.ts)));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The step between the ids the server hands out
    /// (`auto_increment_increment`: a Galera cluster's size; 1 on SQLite).
    pub async fn id_step(&self) -> Result<i64, Error> {
        match self.backend() {
            Backend::Sqlite => Ok(1),
            Backend::Mysql => {
                let q = self.sql("SELECT CAST(@@auto_increment_increment AS SIGNED) AS step");
                let s: Step = self
                    .fetch_one(&q)
                    .await
                    .map_err(err("read", "auto_increment_increment"))?;
                Ok(s.step.max(1))
            }
        }
    }

    /// The latest event time among the ids up to `max_id` of `t`.
    pub async fn max_ts_upto(&self, t: &Ident, max_id: i64) -> Result<Option<i64>, Error> {
        let mut q = self.sql("SELECT MAX(ts) AS max FROM ");
        q.table(t, "").push(" WHERE id <= ").bind(max_id);
        let m: Max = self.fetch_one(&q).await.map_err(err("read", t.as_str()))?;
        Ok(m.max)
    }

    /// The end of the next chunk of event time from `from` (below `to`,
    /// ids up to `max_id`): the time of the `n`-th row at or after `from`
    /// (more than `from`, so that a chunk is never empty of time), or `to`.
    pub async fn ts_chunk_end(
        &self,
        t: &Ident,
        from: i64,
        to: i64,
        max_id: i64,
        n: i64,
    ) -> Result<i64, Error> {
        let mut q = self.sql("SELECT ts AS max FROM ");
        q.table(t, "").push(" WHERE ts >= ").bind(from);
        q.push(" AND ts < ")
            .bind(to)
            .push(" AND id <= ")
            .bind(max_id);
        q.push(" ORDER BY ts LIMIT 1 OFFSET ").bind(n.max(1));
        let m: Option<Max> = self
            .fetch_optional(&q)
            .await
            .map_err(err("read", t.as_str()))?;
        Ok(match m.and_then(|m| m.max) {
            Some(ts) => ts.max(from.saturating_add(1)).min(to),
            None => to,
        })
    }

    /// The SQL condition of `f` on this backend ("1" for no condition).
    pub fn cond(&self, f: &Filter) -> Cond {
        let mut q = Sql::condition(self.backend());
        f.write_where(&mut q);
        if q.text().is_empty() {
            q.push("1");
        }
        Cond(q.into_owned())
    }

    /// The stored progress of `rule` over `table`.
    pub async fn progress(&self, rule: &str, table: &str) -> Result<Option<Progress>, Error> {
        let mut q = self.sql("SELECT last_id, max_ts, fingerprint, wm, gaps FROM trigger_progress");
        q.and().push("rule = ").bind(rule);
        q.and().push("event_table = ").bind(table);
        self.fetch_optional(&q)
            .await
            .map_err(err("read progress of rule", rule))
    }

    /// The open windows of `rule` over `table`: (key, JSON state).
    pub async fn windows(&self, rule: &str, table: &str) -> Result<Vec<(String, String)>, Error> {
        let mut q = self.sql("SELECT wkey, state FROM trigger_windows");
        q.and().push("rule = ").bind(rule);
        q.and().push("event_table = ").bind(table);
        let rows: Vec<Window> = self
            .fetch_all(&q)
            .await
            .map_err(err("read windows of rule", rule))?;
        Ok(rows.into_iter().map(|w| (w.wkey, w.state)).collect())
    }

    /// Forgets the open windows of `rule` over `table` (the rule was edited).
    pub async fn drop_windows(&self, rule: &str, table: &str) -> Result<(), Error> {
        let mut q = self.sql("DELETE FROM trigger_windows");
        q.and().push("rule = ").bind(rule);
        q.and().push("event_table = ").bind(table);
        self.execute(&q)
            .await
            .map_err(err("drop windows of rule", rule))?;
        Ok(())
    }

    /// Ids of the successful runs of snapshot `name` (every host) with
    /// `after < id <= upto`, oldest first.
    pub async fn snapshot_runs_after(
        &self,
        name: &str,
        after: i64,
        upto: i64,
    ) -> Result<Vec<i64>, Error> {
        let mut q = self.sql("SELECT id FROM snapshot_runs");
        q.and().push("name = ").bind(name);
        q.and().push("status = ").bind(STATUS_OK);
        q.and().push("id > ").bind(after);
        q.and().push("id <= ").bind(upto);
        q.push(" ORDER BY id");
        let rows: Vec<Id> = self
            .fetch_all(&q)
            .await
            .map_err(err("read snapshot runs of", name))?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// The highest `snapshot_runs` id (0 without runs).
    pub async fn max_snapshot_run(&self) -> Result<i64, Error> {
        let q = self.sql("SELECT MAX(id) AS max FROM snapshot_runs");
        let m: Max = self
            .fetch_one(&q)
            .await
            .map_err(err("read", "snapshot runs"))?;
        Ok(m.max.unwrap_or(0))
    }

    /// Stores a batch atomically, fenced by the lease; returns the new alert
    /// ids. [`Error::LostLease`] if another instance took the lease: then
    /// nothing of the batch is stored.
    pub async fn commit_trigger(&self, c: &Commit<'_>) -> Result<Vec<i64>, Error> {
        match self.commit_inner(c).await {
            Ok(ids) => Ok(ids),
            Err(CommitError::Lost) => Err(Error::LostLease),
            Err(CommitError::Sql(e)) => Err(Error::db("store the alerts of", c.table, e)),
            Err(CommitError::Ids { inserted, found }) => Err(Error::db(
                "store the alerts of",
                c.table,
                format!("inserted {inserted} alerts but found {found} new ids"),
            )),
        }
    }

    async fn commit_inner(&self, c: &Commit<'_>) -> Result<Vec<i64>, CommitError> {
        let b = self.backend();
        let mut tx = self.begin().await?;
        let t = now();
        // Fencing first (a write, so SQLite takes the write lock at once).
        if let Some(holder) = c.holder {
            let q = LeaseKey::Trigger.fence(b, holder, t + c.lease_ttl_ms);
            if tx.execute(&q).await?.rows != 1 {
                return Err(CommitError::Lost);
            }
        }
        let mut ids = Vec::with_capacity(c.alerts.len());
        if !c.alerts.is_empty() {
            // New ids are read back after the inserts: the lease row locked
            // above keeps other committers out until COMMIT.
            let before: Max = tx
                .fetch_one(&Sql::with(b, "SELECT MAX(id) AS max FROM alerts"))
                .await?;
            let before = before.max.unwrap_or(0);
            for chunk in c.alerts.chunks(ROWS_PER_INSERT) {
                let mut q = Sql::with(b, "INSERT INTO alerts (rule, severity, ");
                q.quoted("key")
                    .push(", ts, first_ts, count, message, created, event_table, window_end) ");
                q.values(chunk, |(a, _)| {
                    [
                        a.rule.as_str().into(),
                        a.severity.as_str().into(),
                        a.key.as_str().into(),
                        a.ts.into(),
                        a.first_ts.into(),
                        a.count.into(),
                        a.message.as_str().into(),
                        t.into(),
                        a.event_table.as_str().into(),
                        a.window_end.into(),
                    ]
                });
                tx.execute(&q).await?;
            }
            let mut q = Sql::with(b, "SELECT id FROM alerts WHERE id > ");
            q.bind(before).push(" ORDER BY id LIMIT ");
            q.bind(c.alerts.len() as i64);
            let rows: Vec<Id> = tx.fetch_all(&q).await?;
            ids = rows.into_iter().map(|r| r.id).collect();
            if ids.len() != c.alerts.len() {
                return Err(CommitError::Ids {
                    inserted: c.alerts.len(),
                    found: ids.len(),
                });
            }
            let events: Vec<(i64, &str, i64)> = c
                .alerts
                .iter()
                .zip(&ids)
                .flat_map(|((a, _), id)| {
                    a.events
                        .iter()
                        .map(move |e| (*id, a.event_table.as_str(), *e))
                })
                .collect();
            for chunk in events.chunks(EVENTS_PER_INSERT) {
                let mut q = Sql::with(
                    b,
                    "INSERT INTO alert_events (alert_id, event_table, event_id) ",
                );
                q.values(chunk, |(id, table, e)| {
                    [(*id).into(), (*table).into(), (*e).into()]
                });
                tx.execute(&q).await?;
            }
            let runs: Vec<(i64, &str)> = c
                .alerts
                .iter()
                .zip(&ids)
                .flat_map(|((_, actions), id)| actions.iter().map(move |a| (*id, a.as_str())))
                .collect();
            for chunk in runs.chunks(EVENTS_PER_INSERT) {
                let mut q = Sql::with(
                    b,
                    "INSERT INTO action_runs (alert_id, action, status, attempts, next_try, updated) ",
                );
                q.values(chunk, |(id, action)| {
                    [
                        (*id).into(),
                        (*action).into(),
                        "pending".into(),
                        0i64.into(),
                        t.into(),
                        t.into(),
                    ]
                });
                tx.execute(&q).await?;
            }
        }
        let mut stored: Vec<(&str, String, &str, &str)> = Vec::new();
        for r in &c.rules {
            let mut gone = Vec::new();
            for (k, s) in &r.windows {
                match s {
                    Some(s) => stored.push((r.rule, key_hash(k), k.as_str(), s.as_str())),
                    None => gone.push(key_hash(k)),
                }
            }
            for chunk in gone.chunks(ROWS_PER_INSERT) {
                let mut q = Sql::with(b, "DELETE FROM trigger_windows");
                q.and().push("rule = ").bind(r.rule);
                q.and().push("event_table = ").bind(c.table);
                q.and().push("key_hash IN ").list(chunk);
                tx.execute(&q).await?;
            }
        }
        for chunk in stored.chunks(ROWS_PER_INSERT) {
            let mut q = Sql::with(
                b,
                "INSERT INTO trigger_windows (rule, event_table, key_hash, wkey, state) ",
            );
            q.values(chunk, |(rule, h, k, s)| {
                [
                    (*rule).into(),
                    c.table.into(),
                    h.as_str().into(),
                    (*k).into(),
                    (*s).into(),
                ]
            });
            // An upsert, not REPLACE: a stored window changes in place
            // (REPLACE deletes and inserts the row: 3.98 s against 3.09 s
            // of MariaDB CPU for 150,000 changed windows).
            q.push(match b {
                Backend::Sqlite => {
                    " ON CONFLICT (rule, event_table, key_hash) DO UPDATE SET \
                     wkey = excluded.wkey, state = excluded.state"
                }
                Backend::Mysql => {
                    " ON DUPLICATE KEY UPDATE wkey = VALUES(wkey), state = VALUES(state)"
                }
            });
            tx.execute(&q).await?;
        }
        for chunk in c.rules.chunks(ROWS_PER_INSERT) {
            let mut q = Sql::with(
                b,
                "REPLACE INTO trigger_progress (rule, event_table, last_id, max_ts, fingerprint, \
                 updated, wm, gaps) ",
            );
            q.values(chunk, |r| {
                [
                    r.rule.into(),
                    c.table.into(),
                    r.progress.last_id.into(),
                    r.progress.max_ts.into(),
                    r.progress.fingerprint.as_str().into(),
                    t.into(),
                    r.progress.wm.into(),
                    r.progress.gaps.as_deref().into(),
                ]
            });
            tx.execute(&q).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Action runs due at `until` or before (at most 1000), soonest first:
    /// pending runs, and claims whose deadline has passed (their instance
    /// stopped, or stalled, while running them: see [`Database::claim_action`]).
    pub async fn due_actions(&self, until: i64) -> Result<Vec<ActionRun>, Error> {
        let mut q = self.sql("SELECT id, alert_id, action, attempts, next_try FROM action_runs");
        q.and().push("status IN ('pending', 'running')");
        q.and().push("next_try <= ").bind(until);
        q.push(" ORDER BY next_try, id LIMIT 1000");
        self.fetch_all(&q)
            .await
            .map_err(err("read", "the action queue"))
    }

    /// Claims action run `id` before it runs, fenced by the lease of
    /// `holder` (renewed for `ttl_ms`), so that no two instances run it:
    /// it becomes `running` until `deadline` (its timeout and a margin),
    /// the token its outcome is recorded with ([`Database::action_done`]).
    /// A run already claimed (and not past its deadline) or done is not
    /// claimed again.
    pub async fn claim_action(
        &self,
        holder: &str,
        ttl_ms: i64,
        id: i64,
        deadline: i64,
    ) -> Result<Claim, Error> {
        let e = err("claim", "an action run");
        let b = self.backend();
        let mut tx = self.begin().await.map_err(&e)?;
        let t = now();
        let fence = LeaseKey::Trigger.fence(b, holder, t + ttl_ms);
        if tx.execute(&fence).await.map_err(&e)?.rows != 1 {
            return Ok(Claim::LostLease);
        }
        let mut q = Sql::with(b, "UPDATE action_runs SET status = 'running', next_try = ");
        q.bind(deadline).push(", updated = ").bind(t);
        q.and().push("id = ").bind(id);
        q.and()
            .push("(status = 'pending' OR (status = 'running' AND next_try < ");
        q.bind(t).push("))");
        let claimed = tx.execute(&q).await.map_err(&e)?.rows == 1;
        tx.commit().await.map_err(&e)?;
        Ok(if claimed {
            Claim::Claimed
        } else {
            Claim::Taken
        })
    }

    /// Records the outcome of a run claimed until `deadline` (nothing if the
    /// claim expired and another instance claimed the run since).
    pub async fn action_done(
        &self,
        id: i64,
        deadline: i64,
        status: &str,
        attempts: i64,
        next_try: i64,
        error: Option<&str>,
    ) -> Result<(), Error> {
        let mut q = self.sql("UPDATE action_runs SET status = ");
        q.bind(status).push(", attempts = ").bind(attempts);
        q.push(", next_try = ").bind(next_try);
        q.push(", last_error = ").bind(error);
        q.push(", updated = ").bind(now());
        q.and().push("id = ").bind(id);
        q.and().push("status = 'running'");
        q.and().push("next_try = ").bind(deadline);
        self.execute(&q)
            .await
            .map_err(err("record", "an action run"))?;
        Ok(())
    }
}

/// What [`Database::claim_action`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The run is this instance's to run now.
    Claimed,
    /// Another instance claimed or finished it.
    Taken,
    /// The lease is no longer this instance's: dispatch nothing more.
    LostLease,
}

enum CommitError {
    Lost,
    Sql(sqlx::Error),
    Ids { inserted: usize, found: usize },
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Sql(e)
    }
}

/// A scan under way: hands the reader back with the rows.
pub type ScanTask<S> = tokio::task::JoinHandle<(Reader, Scanned<S>)>;

/// Reads chunks of event rows for siemtrigger: on SQLite its own rusqlite
/// connection (rows are read in place, without a copy per value), on
/// MariaDB the pool.
pub enum Reader {
    Sqlite(rusqlite::Connection),
    Mysql(sqlx::MySqlPool),
}

impl Database {
    /// A [`Reader`] of this database.
    pub fn reader(&self) -> Result<Reader, Error> {
        Ok(match self {
            Database::Sqlite(d) => Reader::Sqlite(super::options::open_sqlite(d.path())?),
            Database::Mysql(d) => Reader::Mysql(d.pool.clone()),
        })
    }
}

impl Reader {
    /// Delivers the rows of `s` to `sink` and reports the latest event time
    /// among all rows `(lo, hi]` in the range. Runs in a task of its own (so
    /// that the next chunk is read while the current one is evaluated and
    /// committed); the task hands the reader back with the result.
    pub fn spawn<S: ScanSink>(self, s: Scan, sink: S) -> ScanTask<S> {
        match self {
            Reader::Sqlite(conn) => tokio::task::spawn_blocking(move || {
                let r = super::sqlite::scan::scan(&conn, &s, sink);
                (Reader::Sqlite(conn), r)
            }),
            Reader::Mysql(pool) => tokio::spawn(async move {
                let r = super::mysql::scan::scan(&pool, &s, sink).await;
                (Reader::Mysql(pool), r)
            }),
        }
    }
}

/// True if event column `c` holds integers.
pub(crate) fn is_int_column(c: &str) -> bool {
    crate::event::INT_COLUMNS.contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_per_residue_class_and_filled() {
        let g = find_gaps(0, 10, &[1, 2, 5, 9], 1, 7);
        assert_eq!(g, [Gap(3, 4, 1, 7), Gap(6, 8, 1, 7), Gap(10, 10, 1, 7)]);
        // Galera, 3 nodes: node 1 wrote 1, 4, 7, 10; the other classes are one gap each.
        let g = find_gaps(0, 12, &[1, 4, 7, 10], 3, 0);
        assert_eq!(g, [Gap(2, 11, 3, 0), Gap(3, 12, 3, 0)]);
        assert!(g[0].contains(8) && !g[0].contains(7) && !g[0].contains(14));
        assert_eq!(find_gaps(0, 4, &[1, 2, 3, 4], 1, 0), []);
        let f = fill_gaps(&g, &[5, 6, 12]);
        assert_eq!(
            f,
            [
                Gap(2, 2, 3, 0),
                Gap(8, 11, 3, 0),
                Gap(3, 3, 3, 0),
                Gap(9, 9, 3, 0)
            ]
        );
        assert_eq!(fill_gaps(&[Gap(3, 3, 1, 0)], &[3]), []);
    }
}
