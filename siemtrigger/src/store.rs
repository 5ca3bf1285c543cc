//! Database access of `siemtrigger`: candidate rows through the shared
//! filter builder, rule progress and open windows, alerts, the lease, and
//! action runs. One body of code for both backends (a macro), differing only
//! in identifier quoting, `INSERT IGNORE` and how the new row id is read.

use futures_util::TryStreamExt;
use sha2::Digest;
use siemstress_common::db::Database;
use siemstress_common::event::INT_COLUMNS;
use siemstress_common::filter::{BoundValue, Filter, SqlWriter};
use siemstress_common::ident::Ident;
use siemstress_common::snapshot::STATUS_OK;
use sqlx::{QueryBuilder, Row};

use crate::engine::{Batch, NewAlert};

/// Name of the one lease row.
pub const LEASE: &str = "siemtrigger";

/// Rows per multi-row INSERT of alerts and windows (5-10 binds each: far
/// under both bind limits).
const ROWS_PER_INSERT: usize = 500;

/// Rows per multi-row INSERT of alert events and action runs (2-3 binds each).
const EVENTS_PER_INSERT: usize = 3000;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the lease was taken over by another siemtrigger; nothing of this batch was stored")]
    LostLease,
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored window state of rule {rule}: {e}")]
    State { rule: String, e: serde_json::Error },
    #[error("alert ids: inserted {inserted} alerts but found {found} new ids")]
    AlertIds { inserted: usize, found: usize },
}

/// Stored progress of a rule over a table.
#[derive(Debug, Clone, Default)]
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

/// A filter's SQL condition (`?` placeholders) with its bound values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub sql: String,
    pub binds: Vec<BoundValue>,
}

/// One chunk read: rows `(lo, hi]` of `table` (and in `range`, if given)
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

/// The rows of a scan and the latest event time of its id range.
pub type Scanned = Result<(Batch, Option<i64>), StoreError>;

impl Scan {
    /// `SELECT id, ts, (cond)..., cols FROM table` with `q` quoting.
    fn select(&self, q: char, hint: &str) -> String {
        let mut sql = String::from("SELECT id, ts");
        for c in &self.conds {
            sql.push_str(", (");
            sql.push_str(&c.sql);
            sql.push(')');
        }
        for c in &self.cols {
            sql.push_str(&format!(", {q}{c}{q}"));
        }
        sql.push_str(&format!(
            " FROM {q}{}{q}{hint} WHERE id > ? AND id <= ?",
            self.table
        ));
        sql
    }
}

/// Who holds the lease.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub holder: String,
    pub expires: i64,
}

/// A stored alert.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub key: String,
    pub ts: i64,
    pub first_ts: i64,
    pub count: i64,
    pub message: String,
    pub created: i64,
    pub event_table: String,
    pub window_end: Option<i64>,
}

/// A queued action run.
#[derive(Debug, Clone)]
pub struct ActionRun {
    pub id: i64,
    pub alert_id: i64,
    pub action: String,
    pub attempts: i64,
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
    siemstress_common::time::now_ms()
}

/// The store over a connected database.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlx::SqlitePool),
    Mysql(sqlx::MySqlPool),
}

macro_rules! backend {
    ($name:ident, $DB:ty, $Row:ty, q = $q:literal, insert_ignore = $ii:literal, by_id = $by_id:literal, last_id = |$r:ident| $last:expr, text = $text:path) => {
        mod $name {
            use super::*;
            type Pool = sqlx::Pool<$DB>;

            fn qi(t: &str) -> String {
                format!("{}{}{}", $q, t, $q)
            }

            pub async fn event_tables(pool: &Pool) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query("SELECT name FROM event_tables ORDER BY name")
                    .fetch_all(pool)
                    .await?;
                Ok(rows.iter().filter_map(|r| $text(r, 0)).collect())
            }

            pub async fn max_id(pool: &Pool, t: &Ident) -> Result<i64, StoreError> {
                let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {}", qi(t.as_str()));
                Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?)
            }

            /// The condition of `f` as SQL of this backend.
            pub fn cond(f: &Filter) -> Cond {
                let mut qb: QueryBuilder<$DB> = QueryBuilder::new("");
                let binds = {
                    let mut w = SqlWriter::new(&mut qb);
                    f.write_where(&mut w);
                    w.bound
                };
                let sql = qb.sql();
                let sql = sql.as_str();
                let sql = sql.strip_prefix(" WHERE ").unwrap_or(sql).trim();
                Cond {
                    sql: if sql.is_empty() { "1".into() } else { sql.to_owned() },
                    binds,
                }
            }

            pub async fn progress(
                pool: &Pool,
                rule: &str,
                table: &str,
            ) -> Result<Option<Progress>, StoreError> {
                let row = sqlx::query(
                    "SELECT last_id, max_ts, fingerprint FROM trigger_progress WHERE rule = ? AND event_table = ?",
                )
                .bind(rule)
                .bind(table)
                .fetch_optional(pool)
                .await?;
                Ok(match row {
                    Some(r) => Some(Progress {
                        last_id: r.try_get(0)?,
                        max_ts: r.try_get(1)?,
                        fingerprint: $text(&r, 2).unwrap_or_default(),
                    }),
                    None => None,
                })
            }

            pub async fn windows(
                pool: &Pool,
                rule: &str,
                table: &str,
            ) -> Result<Vec<(String, String)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT wkey, state FROM trigger_windows WHERE rule = ? AND event_table = ?",
                )
                .bind(rule)
                .bind(table)
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| ($text(r, 0).unwrap_or_default(), $text(r, 1).unwrap_or_default()))
                    .collect())
            }

            pub async fn commit(pool: &Pool, c: &Commit<'_>) -> Result<Vec<i64>, StoreError> {
                let mut tx = pool.begin().await?;
                let t = now();
                // Fencing first (a write, so SQLite takes the write lock at once).
                if let Some(holder) = c.holder {
                    let n = sqlx::query(
                        "UPDATE trigger_lease SET expires = ?, beats = beats + 1 WHERE name = ? AND holder = ?",
                    )
                    .bind(t + c.lease_ttl_ms)
                    .bind(LEASE)
                    .bind(holder)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        return Err(StoreError::LostLease);
                    }
                }
                let mut ids = Vec::with_capacity(c.alerts.len());
                if !c.alerts.is_empty() {
                    // New ids are read back after the inserts: the lease row
                    // locked above keeps other committers out until COMMIT.
                    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM alerts")
                        .fetch_one(&mut *tx)
                        .await?;
                    for chunk in c.alerts.chunks(ROWS_PER_INSERT) {
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(format!(
                            "INSERT INTO alerts (rule, severity, {}, ts, first_ts, count, message, created, event_table, window_end) ",
                            qi("key")
                        ));
                        qb.push_values(chunk, |mut b, (a, _)| {
                            b.push_bind(a.rule.as_str())
                                .push_bind(a.severity.as_str())
                                .push_bind(a.key.as_str())
                                .push_bind(a.ts)
                                .push_bind(a.first_ts)
                                .push_bind(a.count)
                                .push_bind(a.message.as_str())
                                .push_bind(t)
                                .push_bind(a.event_table.as_str())
                                .push_bind(a.window_end);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    ids = sqlx::query_scalar("SELECT id FROM alerts WHERE id > ? ORDER BY id LIMIT ?")
                        .bind(before)
                        .bind(c.alerts.len() as i64)
                        .fetch_all(&mut *tx)
                        .await?;
                    if ids.len() != c.alerts.len() {
                        return Err(StoreError::AlertIds {
                            inserted: c.alerts.len(),
                            found: ids.len(),
                        });
                    }
                    let events: Vec<(i64, &str, i64)> = c
                        .alerts
                        .iter()
                        .zip(&ids)
                        .flat_map(|((a, _), id)| a.events.iter().map(move |e| (*id, a.event_table.as_str(), *e)))
                        .collect();
                    for chunk in events.chunks(EVENTS_PER_INSERT) {
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                            "INSERT INTO alert_events (alert_id, event_table, event_id) ",
                        );
                        qb.push_values(chunk, |mut b, (id, table, e)| {
                            b.push_bind(*id).push_bind(*table).push_bind(*e);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    let runs: Vec<(i64, &str)> = c
                        .alerts
                        .iter()
                        .zip(&ids)
                        .flat_map(|((_, actions), id)| actions.iter().map(move |a| (*id, a.as_str())))
                        .collect();
                    for chunk in runs.chunks(EVENTS_PER_INSERT) {
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                            "INSERT INTO action_runs (alert_id, action, status, attempts, next_try, updated) ",
                        );
                        qb.push_values(chunk, |mut b, (id, action)| {
                            b.push_bind(*id)
                                .push_bind(*action)
                                .push_bind("pending")
                                .push_bind(0i64)
                                .push_bind(t)
                                .push_bind(t);
                        });
                        qb.build().execute(&mut *tx).await?;
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
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                            "DELETE FROM trigger_windows WHERE rule = ",
                        );
                        qb.push_bind(r.rule);
                        qb.push(" AND event_table = ");
                        qb.push_bind(c.table);
                        qb.push(" AND key_hash IN (");
                        let mut sep = qb.separated(", ");
                        for h in chunk {
                            sep.push_bind(h.as_str());
                        }
                        qb.push(")");
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                for chunk in stored.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                        "REPLACE INTO trigger_windows (rule, event_table, key_hash, wkey, state) ",
                    );
                    qb.push_values(chunk, |mut b, (rule, h, k, s)| {
                        b.push_bind(*rule)
                            .push_bind(c.table)
                            .push_bind(h.as_str())
                            .push_bind(*k)
                            .push_bind(*s);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for chunk in c.rules.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                        "REPLACE INTO trigger_progress (rule, event_table, last_id, max_ts, fingerprint, updated) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.rule)
                            .push_bind(c.table)
                            .push_bind(r.progress.last_id)
                            .push_bind(r.progress.max_ts)
                            .push_bind(r.progress.fingerprint.as_str())
                            .push_bind(t);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(ids)
            }

            /// Ids of the successful runs of snapshot `name` (every host)
            /// with `after < id <= upto`, oldest first.
            pub async fn snapshot_runs_after(
                pool: &Pool,
                name: &str,
                after: i64,
                upto: i64,
            ) -> Result<Vec<i64>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM snapshot_runs WHERE name = ? AND status = ? AND id > ? AND id <= ? ORDER BY id",
                )
                .bind(name)
                .bind(STATUS_OK)
                .bind(after)
                .bind(upto)
                .fetch_all(pool)
                .await?)
            }

            pub async fn max_snapshot_run(pool: &Pool) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM snapshot_runs")
                    .fetch_one(pool)
                    .await?)
            }

            pub async fn drop_windows(pool: &Pool, rule: &str, table: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM trigger_windows WHERE rule = ? AND event_table = ?")
                    .bind(rule)
                    .bind(table)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            /// Takes the lease if it is free, expired, ours, or `stale`'s.
            pub async fn acquire(
                pool: &Pool,
                holder: &str,
                ttl_ms: i64,
                stale: Option<&str>,
            ) -> Result<Result<(), LeaseInfo>, StoreError> {
                let t = now();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{} INTO trigger_lease (name, holder, expires, beats) VALUES (?, '', 0, 0)",
                    $ii
                )))
                .bind(LEASE)
                .execute(pool)
                .await?;
                let n = sqlx::query(
                    "UPDATE trigger_lease SET holder = ?, expires = ?, beats = beats + 1 \
                     WHERE name = ? AND (holder = ? OR holder = '' OR expires < ? OR holder = ?)",
                )
                .bind(holder)
                .bind(t + ttl_ms)
                .bind(LEASE)
                .bind(holder)
                .bind(t)
                .bind(stale.unwrap_or(holder))
                .execute(pool)
                .await?
                .rows_affected();
                if n == 1 {
                    return Ok(Ok(()));
                }
                let r = sqlx::query("SELECT holder, expires FROM trigger_lease WHERE name = ?")
                    .bind(LEASE)
                    .fetch_one(pool)
                    .await?;
                Ok(Err(LeaseInfo {
                    holder: $text(&r, 0).unwrap_or_default(),
                    expires: r.try_get(1)?,
                }))
            }

            pub async fn release(pool: &Pool, holder: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE trigger_lease SET holder = '', expires = 0, beats = beats + 1 WHERE name = ? AND holder = ?",
                )
                .bind(LEASE)
                .bind(holder)
                .execute(pool)
                .await?;
                Ok(())
            }

            pub async fn due_actions(pool: &Pool, until: i64) -> Result<Vec<(ActionRun, i64)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, alert_id, action, attempts, next_try FROM action_runs \
                     WHERE status = 'pending' AND next_try <= ? ORDER BY next_try, id LIMIT 1000",
                )
                .bind(until)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            ActionRun {
                                id: r.try_get(0)?,
                                alert_id: r.try_get(1)?,
                                action: $text(r, 2).unwrap_or_default(),
                                attempts: r.try_get(3)?,
                            },
                            r.try_get(4)?,
                        ))
                    })
                    .collect()
            }

            pub async fn action_done(
                pool: &Pool,
                id: i64,
                status: &str,
                attempts: i64,
                next_try: i64,
                error: Option<&str>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE action_runs SET status = ?, attempts = ?, next_try = ?, last_error = ?, updated = ? WHERE id = ?",
                )
                .bind(status)
                .bind(attempts)
                .bind(next_try)
                .bind(error)
                .bind(now())
                .bind(id)
                .execute(pool)
                .await?;
                Ok(())
            }

            pub async fn alert(pool: &Pool, id: i64) -> Result<Option<AlertRow>, StoreError> {
                let sql = format!(
                    "SELECT id, rule, severity, {}, ts, first_ts, count, message, created, event_table, window_end \
                     FROM alerts WHERE id = ?",
                    qi("key")
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(AlertRow {
                    id: r.try_get(0)?,
                    rule: $text(&r, 1).unwrap_or_default(),
                    severity: $text(&r, 2).unwrap_or_default(),
                    key: $text(&r, 3).unwrap_or_default(),
                    ts: r.try_get(4)?,
                    first_ts: r.try_get(5)?,
                    count: r.try_get(6)?,
                    message: $text(&r, 7).unwrap_or_default(),
                    created: r.try_get(8)?,
                    event_table: $text(&r, 9).unwrap_or_default(),
                    window_end: r.try_get(10)?,
                }))
            }

            pub async fn alert_events(
                pool: &Pool,
                alert_id: i64,
            ) -> Result<Vec<(String, i64)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT event_table, event_id FROM alert_events WHERE alert_id = ? ORDER BY event_table, event_id",
                )
                .bind(alert_id)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| Ok(($text(r, 0).unwrap_or_default(), r.try_get(1)?)))
                    .collect()
            }

            /// `(id, ts, host, raw)` of events by id (missing ones left out).
            pub async fn events_by_id(
                pool: &Pool,
                t: &Ident,
                ids: &[i64],
            ) -> Result<Vec<(i64, i64, Option<String>, String)>, StoreError> {
                let mut out = Vec::new();
                for chunk in ids.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<$DB> = QueryBuilder::new(format!(
                        "SELECT id, ts, host, raw FROM {} WHERE id IN (",
                        qi(t.as_str())
                    ));
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    qb.push(") ORDER BY ts, id");
                    for r in qb.build().fetch_all(pool).await? {
                        out.push((r.try_get(0)?, r.try_get(1)?, $text(&r, 2), $text(&r, 3).unwrap_or_default()));
                    }
                }
                Ok(out)
            }
        }
    };
}

fn sqlite_text(r: &sqlx::sqlite::SqliteRow, i: usize) -> Option<String> {
    r.try_get::<Option<String>, _>(i).ok().flatten()
}

fn mysql_text(r: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    match r.try_get::<Option<String>, _>(i) {
        Ok(v) => v,
        Err(_) => r
            .try_get::<Option<Vec<u8>>, _>(i)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

backend!(
    lite,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    q = "\"",
    insert_ignore = "INSERT OR IGNORE",
    by_id = " NOT INDEXED",
    last_id = |r| r.last_insert_rowid(),
    text = sqlite_text
);
backend!(
    my,
    sqlx::MySql,
    sqlx::mysql::MySqlRow,
    q = "`",
    insert_ignore = "INSERT IGNORE",
    by_id = " FORCE INDEX (PRIMARY)",
    last_id = |r| r.last_insert_id() as i64,
    text = mysql_text
);

macro_rules! dispatch {
    ($self:expr, $f:ident ( $($a:expr),* )) => {
        match $self {
            Store::Sqlite(p) => lite::$f(p, $($a),*).await,
            Store::Mysql(p) => my::$f(p, $($a),*).await,
        }
    };
}

impl Store {
    /// The store of a connected database.
    pub fn new(db: &Database) -> Self {
        match db {
            Database::Sqlite(d) => Store::Sqlite(d.pool.clone()),
            Database::Mysql(d) => Store::Mysql(d.pool.clone()),
        }
    }

    /// True for MariaDB/MySQL.
    pub fn is_mysql(&self) -> bool {
        matches!(self, Store::Mysql(_))
    }

    pub async fn event_tables(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, event_tables())
    }
    pub async fn max_id(&self, t: &Ident) -> Result<i64, StoreError> {
        dispatch!(self, max_id(t))
    }
    /// The condition of `f` in this backend's SQL.
    pub fn cond(&self, f: &Filter) -> Cond {
        match self {
            Store::Sqlite(_) => lite::cond(f),
            Store::Mysql(_) => my::cond(f),
        }
    }
    /// A reader of event rows: on SQLite its own rusqlite connection (rows
    /// are read in place, without a copy per value), on MariaDB the pool.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Ok(match self {
            Store::Sqlite(p) => {
                let path = p.connect_options().get_filename().to_owned();
                let conn = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(30))?;
                Reader::Sqlite(conn)
            }
            Store::Mysql(p) => Reader::Mysql(p.clone()),
        })
    }
    pub async fn progress(&self, rule: &str, table: &str) -> Result<Option<Progress>, StoreError> {
        dispatch!(self, progress(rule, table))
    }
    pub async fn windows(
        &self,
        rule: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self, windows(rule, table))
    }
    pub async fn drop_windows(&self, rule: &str, table: &str) -> Result<(), StoreError> {
        dispatch!(self, drop_windows(rule, table))
    }
    /// Ids of the successful runs of snapshot `name` with `after < id <= upto`, oldest first.
    pub async fn snapshot_runs_after(
        &self,
        name: &str,
        after: i64,
        upto: i64,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, snapshot_runs_after(name, after, upto))
    }
    /// The highest `snapshot_runs` id (0 without runs).
    pub async fn max_snapshot_run(&self) -> Result<i64, StoreError> {
        dispatch!(self, max_snapshot_run())
    }
    /// Stores a batch atomically; returns the new alert ids.
    pub async fn commit(&self, c: &Commit<'_>) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, commit(c))
    }
    pub async fn acquire(
        &self,
        holder: &str,
        ttl_ms: i64,
        stale: Option<&str>,
    ) -> Result<Result<(), LeaseInfo>, StoreError> {
        dispatch!(self, acquire(holder, ttl_ms, stale))
    }
    pub async fn release(&self, holder: &str) -> Result<(), StoreError> {
        dispatch!(self, release(holder))
    }
    pub async fn due_actions(&self, until: i64) -> Result<Vec<(ActionRun, i64)>, StoreError> {
        dispatch!(self, due_actions(until))
    }
    pub async fn action_done(
        &self,
        id: i64,
        status: &str,
        attempts: i64,
        next_try: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        dispatch!(self, action_done(id, status, attempts, next_try, error))
    }
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        dispatch!(self, alert(id))
    }
    pub async fn alert_events(&self, id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, alert_events(id))
    }
    pub async fn events_by_id(
        &self,
        t: &Ident,
        ids: &[i64],
    ) -> Result<Vec<(i64, i64, Option<String>, String)>, StoreError> {
        dispatch!(self, events_by_id(t, ids))
    }
}

/// Reads chunks of event rows (see [`Store::reader`]).
pub enum Reader {
    Sqlite(rusqlite::Connection),
    Mysql(sqlx::MySqlPool),
}

impl Reader {
    /// The rows of `s` in `(ts, id)` order, and the latest event time among
    /// all rows `(lo, hi]` in the range (whether they pass a cond or not).
    /// Runs the scan in a task of its own (so that the next chunk is read
    /// while the current one is evaluated and committed); the task hands the
    /// reader back with the result.
    pub fn spawn(self, s: Scan) -> tokio::task::JoinHandle<(Reader, Scanned)> {
        match self {
            Reader::Sqlite(conn) => tokio::task::spawn_blocking(move || {
                let r = scan_sqlite(&conn, &s);
                (Reader::Sqlite(conn), r)
            }),
            Reader::Mysql(pool) => tokio::spawn(async move {
                let r = scan_mysql(&pool, &s).await;
                (Reader::Mysql(pool), r)
            }),
        }
    }
}

fn scan_sqlite(conn: &rusqlite::Connection, s: &Scan) -> Scanned {
    use rusqlite::types::ValueRef;
    // Every row of the id range is read (rowid order, no index): the conds
    // are flags, so the row count and the latest time come for free.
    let sql = s.select('"', " NOT INDEXED");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut i = 0;
    for c in &s.conds {
        for b in &c.binds {
            i += 1;
            match b {
                BoundValue::Int(v) => stmt.raw_bind_parameter(i, v)?,
                BoundValue::Text(v) => stmt.raw_bind_parameter(i, v)?,
            }
        }
    }
    stmt.raw_bind_parameter(i + 1, s.lo)?;
    stmt.raw_bind_parameter(i + 2, s.hi)?;
    let n = s.conds.len();
    let mut batch = Batch::new(s.cols.to_vec(), n);
    let mut max_ts: Option<i64> = None;
    let mut flags = vec![false; n];
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let ts: i64 = r.get(1)?;
        if let Some((from, to)) = s.range
            && (ts < from || ts >= to)
        {
            continue;
        }
        max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
        for (j, f) in flags.iter_mut().enumerate() {
            *f = match r.get_ref(2 + j)? {
                ValueRef::Integer(v) => v != 0,
                ValueRef::Real(v) => v != 0.0,
                _ => false,
            };
        }
        if !flags.iter().any(|f| *f) {
            continue;
        }
        batch.begin(id, ts);
        for f in &flags {
            batch.flag(*f);
        }
        for j in 0..s.cols.len() {
            match r.get_ref(2 + n + j)? {
                ValueRef::Null => batch.text(None),
                ValueRef::Integer(v) => batch.int(Some(v)),
                ValueRef::Real(v) => batch.text(Some(&v.to_string())),
                ValueRef::Text(b) | ValueRef::Blob(b) => match std::str::from_utf8(b) {
                    Ok(t) => batch.text(Some(t)),
                    Err(_) => batch.text(Some(&String::from_utf8_lossy(b))),
                },
            }
        }
    }
    batch.sort();
    Ok((batch, max_ts))
}

async fn scan_mysql(pool: &sqlx::MySqlPool, s: &Scan) -> Scanned {
    let mut sql = s.select('`', " FORCE INDEX (PRIMARY)");
    let mut all = Filter::default();
    if let Some((from, to)) = s.range {
        sql.push_str(" AND ts >= ? AND ts < ?");
        all.since = Some(from);
        all.until = Some(to);
    }
    // Only rows some cond wants cross the wire.
    let filtered = !s.conds.iter().any(|c| c.sql == "1");
    if filtered {
        sql.push_str(" AND (");
        for (i, c) in s.conds.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push('(');
            sql.push_str(&c.sql);
            sql.push(')');
        }
        sql.push(')');
    }
    let mut binds: Vec<&BoundValue> = s.conds.iter().flat_map(|c| &c.binds).collect();
    let (lo, hi) = (BoundValue::Int(s.lo), BoundValue::Int(s.hi));
    binds.push(&lo);
    binds.push(&hi);
    let range: Vec<BoundValue> = s
        .range
        .map(|(a, b)| vec![BoundValue::Int(a), BoundValue::Int(b)])
        .unwrap_or_default();
    binds.extend(&range);
    if filtered {
        binds.extend(s.conds.iter().flat_map(|c| &c.binds));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            BoundValue::Int(v) => q.bind(*v),
            BoundValue::Text(v) => q.bind(v.as_str()),
        };
    }
    let n = s.conds.len();
    let mut batch = Batch::new(s.cols.to_vec(), n);
    let mut rows = q.fetch(pool);
    while let Some(r) = rows.try_next().await? {
        batch.begin(r.try_get(0)?, r.try_get(1)?);
        for j in 0..n {
            let v: Option<i64> = r.try_get_unchecked(2 + j)?;
            batch.flag(v.is_some_and(|v| v != 0));
        }
        for (j, c) in s.cols.iter().enumerate() {
            let i = 2 + n + j;
            if INT_COLUMNS.contains(c) {
                batch.int(r.try_get_unchecked::<Option<i64>, _>(i)?);
            } else {
                match r.try_get_unchecked::<Option<&[u8]>, _>(i)? {
                    None => batch.text(None),
                    Some(b) => match std::str::from_utf8(b) {
                        Ok(t) => batch.text(Some(t)),
                        Err(_) => batch.text(Some(&String::from_utf8_lossy(b))),
                    },
                }
            }
        }
    }
    drop(rows);
    batch.sort();
    let max_ts = mysql_max_ts(pool, &s.table, s.lo, s.hi, &all).await?;
    Ok((batch, max_ts))
}

/// Latest event time among rows `(lo, hi]` passing `filter` (the time range).
async fn mysql_max_ts(
    pool: &sqlx::MySqlPool,
    t: &Ident,
    lo: i64,
    hi: i64,
    filter: &Filter,
) -> Result<Option<i64>, StoreError> {
    let mut qb: QueryBuilder<sqlx::MySql> =
        QueryBuilder::new(format!("SELECT MAX(ts) FROM `{t}` FORCE INDEX (PRIMARY)"));
    {
        let mut w = SqlWriter::new(&mut qb);
        w.and().sql("id > ").int(lo);
        w.and().sql("id <= ").int(hi);
        filter.write_where(&mut w);
    }
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}
