//! The aggregates of `siemquery --report`: events per time bucket, and the
//! failed logins per source host or user, of one event table.

use super::sql::Sql;
use super::{Backend, Database};
use crate::Error;
use crate::ident::Ident;

/// Message fragments (lower case, LIKE patterns) that mark a failed login.
pub const FAILED_LOGIN: [&str; 6] = [
    "%failed password%",
    "%authentication failure%",
    "%invalid user%",
    "%failed login%",
    "%login incorrect%",
    "%failed su%",
];

/// True if `message` is a failed login: it contains one of
/// [`FAILED_LOGIN`]'s texts, ASCII case-insensitive (as `LOWER(message)
/// LIKE` does).
pub fn is_failed_login(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    FAILED_LOGIN
        .iter()
        .any(|p| lower.contains(p.trim_matches('%')))
}

/// A column the failed logins are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedBy {
    SourceHost,
    User,
}

#[derive(sqlx::FromRow)]
struct Bucket {
    b: i64,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct Group {
    v: String,
    n: i64,
}

impl Database {
    /// Events of `t` in `[from, to)` per bucket of `bucket` ms (bucket 0
    /// starts at `from`): (bucket, count), buckets without events left out.
    pub async fn event_buckets(
        &self,
        t: &Ident,
        from: i64,
        to: i64,
        bucket: i64,
    ) -> Result<Vec<(i64, i64)>, Error> {
        let mut q = self.sql("SELECT ");
        q.push(match self.backend() {
            Backend::Sqlite => "CAST((ts - ",
            Backend::Mysql => "((ts - ",
        });
        q.bind(from).push(") ");
        q.push(match self.backend() {
            Backend::Sqlite => "/ ",
            Backend::Mysql => "DIV ",
        });
        q.bind(bucket).push(match self.backend() {
            Backend::Sqlite => " AS INTEGER)",
            Backend::Mysql => ")",
        });
        q.push(" AS b, COUNT(*) AS n FROM ").table(t, "");
        q.and().push("ts >= ").bind(from);
        q.and().push("ts < ").bind(to);
        q.push(" GROUP BY b");
        let rows: Vec<Bucket> = self
            .fetch_all(&q)
            .await
            .map_err(|e| Error::db("count events of", t.as_str(), e))?;
        Ok(rows.into_iter().map(|r| (r.b, r.n)).collect())
    }

    /// Failed logins (messages matching [`FAILED_LOGIN`]) of `t` in
    /// `[from, to)` per value of `by` (rows without one left out).
    pub async fn failed_logins(
        &self,
        t: &Ident,
        from: i64,
        to: i64,
        by: FailedBy,
    ) -> Result<Vec<(String, i64)>, Error> {
        let col = match by {
            FailedBy::SourceHost => "source_host",
            FailedBy::User => "user",
        };
        let mut q = Sql::with(self.backend(), "SELECT ");
        q.quoted(col)
            .push(" AS v, COUNT(*) AS n FROM ")
            .table(t, "");
        q.and().push("ts >= ").bind(from);
        q.and().push("ts < ").bind(to);
        q.and().quoted(col).push(" IS NOT NULL");
        q.and().push("(");
        for (i, p) in FAILED_LOGIN.iter().enumerate() {
            q.push(if i == 0 { "" } else { " OR " });
            q.push("LOWER(message) LIKE ").bind(*p);
        }
        q.push(") GROUP BY ").quoted(col);
        let rows: Vec<Group> = self
            .fetch_all(&q)
            .await
            .map_err(|e| Error::db("count failed logins in", t.as_str(), e))?;
        Ok(rows.into_iter().map(|r| (r.v, r.n)).collect())
    }
}
