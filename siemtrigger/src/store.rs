//! Database access of `siemtrigger`: candidate rows through the shared
//! filter builder, rule progress and open windows, alerts, the lease, and
//! action runs. One body of code for both backends (a macro), differing only
//! in identifier quoting, `INSERT IGNORE` and how the new row id is read.

use std::collections::BTreeMap;

use sha2::Digest;
use siemstress_common::db::Database;
use siemstress_common::filter::{Filter, SqlWriter};
use siemstress_common::ident::Ident;
use siemstress_common::rules::INT_COLUMNS;
use sqlx::{QueryBuilder, Row};

use crate::engine::{Ev, NewAlert};

/// Name of the one lease row.
pub const LEASE: &str = "siemtrigger";

/// Rows per multi-row INSERT (3-6 binds each: far under both bind limits).
const ROWS_PER_INSERT: usize = 500;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the lease was taken over by another siemtrigger; nothing of this batch was stored")]
    LostLease,
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored window state of rule {rule}: {e}")]
    State { rule: String, e: serde_json::Error },
}

/// Stored progress of a rule over a table.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub last_id: i64,
    pub max_ts: Option<i64>,
    pub fingerprint: String,
}

/// Everything one batch stores, in one transaction.
pub struct Commit<'a> {
    /// Lease holder to check and renew (`None`: no fencing).
    pub holder: Option<&'a str>,
    pub lease_ttl_ms: i64,
    pub rule: &'a str,
    pub table: &'a str,
    pub progress: Progress,
    /// Windows to store (`Some` JSON) or delete (`None`), by key.
    pub windows: Vec<(String, Option<String>)>,
    pub alerts: &'a [NewAlert],
    /// Actions queued for each alert.
    pub actions: &'a [String],
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
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

            pub async fn max_ts(
                pool: &Pool,
                t: &Ident,
                lo: i64,
                hi: i64,
                filter: &Filter,
            ) -> Result<Option<i64>, StoreError> {
                let mut qb: QueryBuilder<$DB> =
                    QueryBuilder::new(format!("SELECT MAX(ts) FROM {}{}", qi(t.as_str()), $by_id));
                {
                    let mut w = SqlWriter::new(&mut qb);
                    w.and().sql("id > ").int(lo);
                    w.and().sql("id <= ").int(hi);
                    filter.write_where(&mut w);
                }
                let v: Option<i64> = qb.build_query_scalar().fetch_one(pool).await?;
                Ok(v)
            }

            pub async fn fetch(
                pool: &Pool,
                t: &Ident,
                filter: &Filter,
                cols: &[&'static str],
                lo: i64,
                hi: i64,
            ) -> Result<Vec<Ev>, StoreError> {
                let mut select = String::from("SELECT id, ts");
                for c in cols {
                    select.push_str(", ");
                    select.push_str(&qi(c));
                }
                select.push_str(" FROM ");
                select.push_str(&qi(t.as_str()));
                // Scan the id range, not a (process, ts) index over the whole table.
                select.push_str($by_id);
                let mut qb: QueryBuilder<$DB> = QueryBuilder::new(select);
                {
                    let mut w = SqlWriter::new(&mut qb);
                    w.and().sql("id > ").int(lo);
                    w.and().sql("id <= ").int(hi);
                    filter.write_where(&mut w);
                }
                let rows = qb.build().fetch_all(pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let mut ev = Ev {
                        id: r.try_get(0)?,
                        ts: r.try_get(1)?,
                        cols: BTreeMap::new(),
                    };
                    for (i, c) in cols.iter().enumerate() {
                        let v = if INT_COLUMNS.contains(c) {
                            r.try_get::<Option<i64>, _>(i + 2)?.map(|v| v.to_string())
                        } else {
                            $text(r, i + 2)
                        };
                        if let Some(v) = v {
                            ev.cols.insert(*c, v);
                        }
                    }
                    out.push(ev);
                }
                // (ts, id) order, sorted here so that the database can scan by id.
                out.sort_by_key(|e| (e.ts, e.id));
                Ok(out)
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
                let insert_alert = format!(
                    "INSERT INTO alerts (rule, severity, {}, ts, first_ts, count, message, created, event_table, window_end) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    qi("key")
                );
                for a in c.alerts {
                    let $r = sqlx::query(sqlx::AssertSqlSafe(insert_alert.clone()))
                        .bind(&a.rule)
                        .bind(&a.severity)
                        .bind(&a.key)
                        .bind(a.ts)
                        .bind(a.first_ts)
                        .bind(a.count)
                        .bind(&a.message)
                        .bind(t)
                        .bind(&a.event_table)
                        .bind(a.window_end)
                        .execute(&mut *tx)
                        .await?;
                    let id: i64 = $last;
                    ids.push(id);
                    for chunk in a.events.chunks(ROWS_PER_INSERT) {
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                            "INSERT INTO alert_events (alert_id, event_table, event_id) ",
                        );
                        qb.push_values(chunk, |mut b, e| {
                            b.push_bind(id).push_bind(&a.event_table).push_bind(*e);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    for action in c.actions {
                        sqlx::query(
                            "INSERT INTO action_runs (alert_id, action, status, attempts, next_try, updated) \
                             VALUES (?, ?, 'pending', 0, ?, ?)",
                        )
                        .bind(id)
                        .bind(action)
                        .bind(t)
                        .bind(t)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let hashed: Vec<(String, &String, &Option<String>)> = c
                    .windows
                    .iter()
                    .map(|(k, s)| (key_hash(k), k, s))
                    .collect();
                for chunk in hashed.chunks(ROWS_PER_INSERT) {
                    let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                        "DELETE FROM trigger_windows WHERE rule = ",
                    );
                    qb.push_bind(c.rule);
                    qb.push(" AND event_table = ");
                    qb.push_bind(c.table);
                    qb.push(" AND key_hash IN (");
                    let mut sep = qb.separated(", ");
                    for (h, _, _) in chunk {
                        sep.push_bind(h.as_str());
                    }
                    qb.push(")");
                    qb.build().execute(&mut *tx).await?;
                    let stored: Vec<_> = chunk.iter().filter(|w| w.2.is_some()).collect();
                    if !stored.is_empty() {
                        let mut qb: QueryBuilder<$DB> = QueryBuilder::new(
                            "INSERT INTO trigger_windows (rule, event_table, key_hash, wkey, state) ",
                        );
                        qb.push_values(stored, |mut b, (h, k, s)| {
                            b.push_bind(c.rule)
                                .push_bind(c.table)
                                .push_bind(h.as_str())
                                .push_bind(k.as_str())
                                .push_bind(s.as_deref().unwrap_or_default());
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                }
                sqlx::query("DELETE FROM trigger_progress WHERE rule = ? AND event_table = ?")
                    .bind(c.rule)
                    .bind(c.table)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO trigger_progress (rule, event_table, last_id, max_ts, fingerprint, updated) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(c.rule)
                .bind(c.table)
                .bind(c.progress.last_id)
                .bind(c.progress.max_ts)
                .bind(&c.progress.fingerprint)
                .bind(t)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(ids)
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
    /// Latest event time among rows `(lo, hi]` passing `filter` (usually empty).
    pub async fn max_ts(
        &self,
        t: &Ident,
        lo: i64,
        hi: i64,
        filter: &Filter,
    ) -> Result<Option<i64>, StoreError> {
        dispatch!(self, max_ts(t, lo, hi, filter))
    }
    /// Rows `(lo, hi]` passing `filter`, with `cols`, in `(ts, id)` order.
    pub async fn fetch(
        &self,
        t: &Ident,
        filter: &Filter,
        cols: &[&'static str],
        lo: i64,
        hi: i64,
    ) -> Result<Vec<Ev>, StoreError> {
        dispatch!(self, fetch(t, filter, cols, lo, hi))
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
