//! Reading alerts back: one alert with the events it covers (siemtrigger's
//! actions and `--explain`), and the alerts of a period (`siemquery
//! --alerts`, the report). The column `key` is a reserved word on MariaDB:
//! it is quoted here and in [`super::trigger`], nowhere else.

use super::Database;
use super::search::SqlLog;
use super::sql::Sql;
use crate::Error;
use crate::ident::Ident;

/// A stored alert. Serialized, it is the alert's JSON of siemtrigger's
/// webhook and file actions and `--explain`: times as RFC 3339, without
/// `window_end` (`--explain` adds it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub key: String,
    /// Event time of the firing, UTC epoch ms.
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub ts: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub first_ts: i64,
    pub count: i64,
    pub message: String,
    /// Wall-clock time of the insert.
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created: i64,
    pub event_table: String,
    #[serde(skip)]
    pub window_end: Option<i64>,
}

/// Which alerts [`Database::alerts`] lists.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery<'a> {
    /// `ts` at or after (epoch ms).
    pub since: Option<i64>,
    /// `ts` before (epoch ms).
    pub until: Option<i64>,
    /// Only these rules (none: every rule).
    pub rules: &'a [String],
    /// The latest `limit` alerts.
    pub limit: Option<u64>,
    /// Only alerts with an id above this (`--follow`'s resume point).
    pub after: Option<i64>,
    /// Only alerts with an id at most this.
    pub upto: Option<i64>,
}

/// An event an alert covers, as `--explain` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertEvent {
    pub id: i64,
    pub ts: i64,
    pub host: Option<String>,
    pub raw: String,
}

#[derive(sqlx::FromRow)]
struct EventRef {
    event_table: String,
    event_id: i64,
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

/// Ids per `IN (...)` list.
const IDS_PER_QUERY: usize = 500;

/// `SELECT <every column of an alert> FROM alerts`.
fn select_alerts(db: &Database) -> Sql<'static> {
    let mut q = db.sql("SELECT id, rule, severity, ");
    q.quoted("key")
        .push(", ts, first_ts, count, message, created, event_table, window_end FROM alerts");
    q
}

impl Database {
    /// The alert with this id.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, Error> {
        let mut q = select_alerts(self);
        q.and().push("id = ").bind(id);
        self.fetch_optional(&q)
            .await
            .map_err(|e| Error::db("read alert", &id.to_string(), e))
    }

    /// The alerts of `period`, newest first (so that a limit keeps the
    /// latest); the statement goes to `log` first.
    pub async fn alerts(
        &self,
        period: &AlertQuery<'_>,
        log: SqlLog<'_>,
    ) -> Result<Vec<AlertRow>, Error> {
        let mut q = select_alerts(self);
        write_period(&mut q, period);
        if !period.rules.is_empty() {
            q.and().push("rule IN ").list(period.rules);
        }
        q.push(" ORDER BY ts DESC, id DESC");
        if let Some(n) = period.limit {
            q.push(" LIMIT ").bind(i64::try_from(n).unwrap_or(i64::MAX));
        }
        log(q.text(), q.binds());
        self.fetch_all(&q)
            .await
            .map_err(|e| Error::db("read", "alerts", e))
    }

    /// How many alerts `period` holds (its `rules` apply, not its `limit`).
    pub async fn count_alerts(&self, period: &AlertQuery<'_>) -> Result<i64, Error> {
        let mut q = self.sql("SELECT COUNT(*) AS n FROM alerts");
        write_period(&mut q, period);
        if !period.rules.is_empty() {
            q.and().push("rule IN ").list(period.rules);
        }
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("count", "alerts", e))?;
        Ok(c.n)
    }

    /// The highest alert id (0 when there is none): where `--follow` starts.
    pub async fn last_alert_id(&self) -> Result<i64, Error> {
        let q = self.sql("SELECT COALESCE(MAX(id), 0) AS n FROM alerts");
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("read", "alerts", e))?;
        Ok(c.n)
    }

    /// The events an alert covers: (event table, id), sorted.
    pub async fn alert_events(&self, alert_id: i64) -> Result<Vec<(String, i64)>, Error> {
        let mut q = self.sql("SELECT event_table, event_id FROM alert_events");
        q.and().push("alert_id = ").bind(alert_id);
        q.push(" ORDER BY event_table, event_id");
        let rows: Vec<EventRef> = self
            .fetch_all(&q)
            .await
            .map_err(|e| Error::db("read events of alert", &alert_id.to_string(), e))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.event_table, r.event_id))
            .collect())
    }

    /// Events of `t` by id, in `(ts, id)` order per chunk of ids (ids that
    /// are gone are left out).
    pub async fn events_by_id(&self, t: &Ident, ids: &[i64]) -> Result<Vec<AlertEvent>, Error> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let mut q = self.sql("SELECT id, ts, host, raw FROM ");
            q.table(t, "");
            q.and().push("id IN ").list(chunk.iter().copied());
            q.push(" ORDER BY ts, id");
            let rows: Vec<AlertEvent> = self
                .fetch_all(&q)
                .await
                .map_err(|e| Error::db("read", t.as_str(), e))?;
            out.extend(rows);
        }
        Ok(out)
    }
}

fn write_period(q: &mut Sql<'_>, p: &AlertQuery<'_>) {
    if let Some(s) = p.since {
        q.and().push("ts >= ").bind(s);
    }
    if let Some(u) = p.until {
        q.and().push("ts < ").bind(u);
    }
    if let Some(a) = p.after {
        q.and().push("id > ").bind(a);
    }
    if let Some(u) = p.upto {
        q.and().push("id <= ").bind(u);
    }
}
