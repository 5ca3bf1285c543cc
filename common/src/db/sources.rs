//! Ingest sources and the watermark of siemtrigger (issue 16).
//!
//! Each source of rows (a followed file, stdin, a listener's connection) of
//! each collector host has a row per event table in `ingest_sources`: the
//! latest event time it has committed (`max_ts`), how many rows, and when
//! it last committed (`last_commit`, by the database server's clock, so
//! that hosts with different clocks compare). The row is written by
//! [`upsert`] in the same transaction as the rows it counts, so a reader
//! that sees the source's time also sees every row that source committed
//! before it. A clean end (EOF, a clean exit, a closed connection) marks
//! the source finished ([`finish`]).
//!
//! siemtrigger's watermark of a table is the least `max_ts` of its active
//! sources (not finished, and not silent for longer than `idle_timeout`),
//! minus the allowed lateness: see [`Watermark`].

use super::Backend;
use super::Database;
use super::sql::Sql;
use super::trigger::key_hash;
use crate::Error;

/// Kinds of sources (the `kind` column).
pub const KIND_FOLLOW: &str = "follow";
pub const KIND_STDIN: &str = "stdin";
pub const KIND_LISTEN: &str = "listen";

/// What one source stored in one transaction into one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMark {
    pub kind: &'static str,
    pub name: String,
    /// Latest event time among the rows (`None`: no rows).
    pub max_ts: Option<i64>,
    pub rows: i64,
    /// The source ended cleanly with this transaction.
    pub finished: bool,
}

/// The key of a source: SHA-256 of host, kind and name.
pub fn source_key(host: &str, kind: &str, name: &str) -> String {
    key_hash(&format!("{host}\0{kind}\0{name}"))
}

/// The server's clock in epoch milliseconds, as SQL (MariaDB), or this
/// host's bound (SQLite: every process on the file is on this host).
fn push_now(q: &mut Sql<'_>) {
    match q.backend() {
        Backend::Sqlite => {
            q.bind(crate::time::now_ms());
        }
        Backend::Mysql => {
            q.push("CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)");
        }
    }
}

/// The statement recording `m` (rows of table `tbl` from source `m` of
/// collector `host`), to run in the transaction that stores those rows.
/// A mark without rows and with `finished` marks every table of the source
/// finished (see [`finish`]).
pub(crate) fn upsert<'a>(
    backend: Backend,
    host: &'a str,
    tbl: &'a str,
    m: &'a SourceMark,
) -> Sql<'a> {
    if m.rows == 0 && m.finished {
        return finish(backend, host, m);
    }
    let mut q = Sql::with(
        backend,
        "INSERT INTO ingest_sources (skey, tbl, host, kind, name, max_ts, stored_rows, \
         first_commit, last_commit, finished) VALUES (",
    );
    q.bind(source_key(host, m.kind, &m.name)).push(", ");
    q.bind(tbl).push(", ").bind(host).push(", ").bind(m.kind);
    q.push(", ").bind(m.name.as_str()).push(", ").bind(m.max_ts);
    q.push(", ").bind(m.rows).push(", ");
    push_now(&mut q);
    q.push(", ");
    push_now(&mut q);
    q.push(", ").bind(i64::from(m.finished)).push(")");
    match backend {
        Backend::Sqlite => q.push(
            " ON CONFLICT (skey, tbl) DO UPDATE SET \
             max_ts = max(coalesce(max_ts, excluded.max_ts), coalesce(excluded.max_ts, max_ts)), \
             stored_rows = stored_rows + excluded.stored_rows, \
             last_commit = excluded.last_commit, finished = excluded.finished",
        ),
        Backend::Mysql => q.push(
            " ON DUPLICATE KEY UPDATE \
             max_ts = GREATEST(COALESCE(max_ts, VALUES(max_ts)), COALESCE(VALUES(max_ts), max_ts)), \
             stored_rows = stored_rows + VALUES(stored_rows), \
             last_commit = VALUES(last_commit), finished = VALUES(finished)",
        ),
    };
    q
}

/// The statement marking source `m` of `host` finished in every table.
pub(crate) fn finish<'a>(backend: Backend, host: &'a str, m: &'a SourceMark) -> Sql<'a> {
    let mut q = Sql::with(
        backend,
        "UPDATE ingest_sources SET finished = 1, last_commit = ",
    );
    push_now(&mut q);
    q.push(" WHERE skey = ")
        .bind(source_key(host, m.kind, &m.name));
    q
}

/// A source as siemtrigger reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Source {
    pub host: String,
    pub kind: String,
    pub name: String,
    pub max_ts: Option<i64>,
    pub last_commit: i64,
    pub finished: i64,
}

impl Source {
    /// `host kind name` for messages (escaped: the name comes from the database).
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}",
            crate::display::Escaped(&self.host),
            self.kind,
            crate::display::Escaped(&self.name)
        )
    }
}

#[derive(sqlx::FromRow)]
struct Now {
    now: i64,
}

/// The watermark of one event table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// Rows with `ts` below this are evaluated (`i64::MAX`: no active source).
    pub ts: i64,
    /// Sources that stopped holding the watermark because they were silent
    /// for longer than the idle timeout.
    pub idle: Vec<Source>,
    /// Active sources holding it.
    pub active: usize,
}

impl Database {
    /// The database server's clock (epoch ms; this host's on SQLite).
    pub async fn server_now(&self) -> Result<i64, Error> {
        match self.backend() {
            Backend::Sqlite => Ok(crate::time::now_ms()),
            Backend::Mysql => {
                let q = self.sql("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now");
                let n: Now = self
                    .fetch_one(&q)
                    .await
                    .map_err(|e| Error::db("read", "the server's clock", e))?;
                Ok(n.now)
            }
        }
    }

    /// The sources of event table `tbl`, by host, kind and name.
    pub async fn ingest_sources(&self, tbl: &str) -> Result<Vec<Source>, Error> {
        let mut q = self.sql(
            "SELECT host, kind, name, max_ts, last_commit, \
             CASE WHEN finished <> 0 THEN 1 ELSE 0 END AS finished FROM ingest_sources",
        );
        q.and().push("tbl = ").bind(tbl);
        q.push(" ORDER BY host, kind, name");
        self.fetch_all(&q)
            .await
            .map_err(|e| Error::db("read", "ingest sources", e))
    }

    /// The watermark of `tbl` at server time `now`: the least latest event
    /// time of its active sources, less `lateness` (ms); sources silent for
    /// longer than `idle_ms` do not hold it (they are listed). A source that
    /// has committed no row time yet holds it at the start of time.
    pub async fn watermark(
        &self,
        tbl: &str,
        now: i64,
        lateness: i64,
        idle_ms: i64,
    ) -> Result<Watermark, Error> {
        let sources = self.ingest_sources(tbl).await?;
        Ok(watermark_of(sources, now, lateness, idle_ms))
    }

    /// Forgets sources that finished more than `age_ms` ago (by the server's
    /// clock): a listener makes one per connection.
    pub async fn prune_finished_sources(&self, now: i64, age_ms: i64) -> Result<u64, Error> {
        let mut q = self.sql("DELETE FROM ingest_sources WHERE finished <> 0");
        q.and()
            .push("last_commit < ")
            .bind(now.saturating_sub(age_ms));
        let done = self
            .execute(&q)
            .await
            .map_err(|e| Error::db("prune", "ingest sources", e))?;
        Ok(done.rows)
    }
}

/// [`Database::watermark`] of the sources read.
pub fn watermark_of(sources: Vec<Source>, now: i64, lateness: i64, idle_ms: i64) -> Watermark {
    let mut ts = i64::MAX;
    let mut idle = Vec::new();
    let mut active = 0;
    for s in sources {
        if s.finished != 0 {
            continue;
        }
        if now.saturating_sub(s.last_commit) > idle_ms {
            idle.push(s);
            continue;
        }
        active += 1;
        ts = ts.min(s.max_ts.unwrap_or(i64::MIN));
    }
    if ts != i64::MAX {
        ts = ts.saturating_sub(lateness);
    }
    Watermark { ts, idle, active }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, max_ts: Option<i64>, last: i64, finished: bool) -> Source {
        Source {
            host: "h".into(),
            kind: KIND_FOLLOW.into(),
            name: name.into(),
            max_ts,
            last_commit: last,
            finished: i64::from(finished),
        }
    }

    #[test]
    fn watermark_is_the_slowest_active_source_less_lateness() {
        let w = watermark_of(
            vec![
                src("a", Some(5000), 900, false),
                src("b", Some(3000), 950, false),
                src("c", Some(1000), 990, true),
                src("d", Some(10), 100, false),
            ],
            1000,
            500,
            600,
        );
        assert_eq!(w.ts, 2500);
        assert_eq!(w.active, 2);
        assert_eq!(w.idle.len(), 1);
        assert_eq!(w.idle[0].name, "d");
        // No active source: everything.
        let w = watermark_of(vec![src("c", Some(1), 990, true)], 1000, 500, 600);
        assert_eq!(w.ts, i64::MAX);
        // A source without a time yet holds everything back.
        let w = watermark_of(vec![src("a", None, 990, false)], 1000, 500, 600);
        assert_eq!(w.ts, i64::MIN);
    }
}
