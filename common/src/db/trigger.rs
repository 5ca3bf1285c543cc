//! siemtrigger's state: rule progress and open windows, the lease that
//! keeps two instances from evaluating at once, alerts with their events
//! and queued action runs (all stored by one [`Database::commit_trigger`]
//! per chunk), the action queue, and the scans of event rows a chunk reads
//! ([`Reader`]; SQLite and MariaDB read them differently, see
//! `sqlite/scan.rs` and `mysql/scan.rs`).

use sha2::Digest;

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

/// Stored progress of a rule over a table.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Progress {
    pub last_id: i64,
    pub max_ts: Option<i64>,
    pub fingerprint: String,
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

/// One chunk to read: rows `(lo, hi]` of `table` (and in `range`, if given)
/// that pass at least one of `conds`, with a flag per cond and `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub table: Ident,
    pub cols: Vec<&'static str>,
    pub conds: Vec<Cond>,
    pub lo: i64,
    pub hi: i64,
    pub range: Option<(i64, i64)>,
}

impl Scan {
    /// `SELECT id, ts, (cond) AS c0, ..., cols FROM table<hint> WHERE id > ? AND id <= ?`.
    pub(crate) fn select(&self, backend: Backend) -> Sql<'static> {
        let mut q = Sql::with(backend, "SELECT id, ts");
        for (j, c) in self.conds.iter().enumerate() {
            q.push(", (").append(&c.0).push(")").alias(j);
        }
        for c in &self.cols {
            q.push(", ").quoted(c);
        }
        q.push(" FROM ").table(&self.table, "");
        q.push(match backend {
            // Every row of the id range is read in rowid order, no index.
            Backend::Sqlite => " NOT INDEXED",
            Backend::Mysql => " FORCE INDEX (PRIMARY)",
        });
        q.push(" WHERE id > ").bind(self.lo);
        q.push(" AND id <= ").bind(self.hi);
        q
    }
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
        let mut q = self.sql("SELECT last_id, max_ts, fingerprint FROM trigger_progress");
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
                "REPLACE INTO trigger_windows (rule, event_table, key_hash, wkey, state) ",
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
            tx.execute(&q).await?;
        }
        for chunk in c.rules.chunks(ROWS_PER_INSERT) {
            let mut q = Sql::with(
                b,
                "REPLACE INTO trigger_progress (rule, event_table, last_id, max_ts, fingerprint, updated) ",
            );
            q.values(chunk, |r| {
                [
                    r.rule.into(),
                    c.table.into(),
                    r.progress.last_id.into(),
                    r.progress.max_ts.into(),
                    r.progress.fingerprint.as_str().into(),
                    t.into(),
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
