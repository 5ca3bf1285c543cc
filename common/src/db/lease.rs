//! Leases in the database, so that they hold across hosts: a row names its
//! holder (`crate::holder`: `host:pid:nonce`) and when the lease expires.
//! The holder renews it while it works (every write it fences renews it
//! too); a holder that dies leaves it to expire, or to be taken over at
//! once by a process of the same host that sees the holder's pid gone.
//!
//! - [`LeaseKey::Trigger`]: the one evaluating siemtrigger (`trigger_lease`);
//! - [`LeaseKey::Follow`]: the one `siemparse --follow` of a (section,
//!   path) (`follow_lease`, migration 9);
//! - [`LeaseKey::Prune`]: the one prune running on the database (a row of
//!   `trigger_lease`), so that two prunes never pick the same rows;
//! - [`LeaseKey::Restore`]: the one `siemparse --restore` running on the
//!   database (a row of `trigger_lease`), so that two never store a row twice.
//!
//! A write that must not happen after the lease is lost is *fenced*: the
//! same transaction first renews the lease where it is still ours
//! ([`LeaseKey::fence`]); 0 rows means another holder took it, and the
//! transaction is rolled back.

use super::sql::Sql;
use super::{Backend, Database};
use crate::Error;

/// Name of siemtrigger's `trigger_lease` row.
pub const TRIGGER: &str = "siemtrigger";
/// Name of the running prune's `trigger_lease` row (not the hourly claim's,
/// which only spaces the automatic prunes).
pub const PRUNE: &str = "siemparse-prune-running";
/// Name of the running restore's `trigger_lease` row.
pub const RESTORE: &str = "siemparse-restore-running";

/// What a lease guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKey<'a> {
    /// siemtrigger's evaluation and actions.
    Trigger,
    /// `siemparse --follow` of `path` (the offset's key) in `section`.
    Follow { section: &'a str, path: &'a str },
    /// A running `siemparse --prune` (or a follower's hourly prune).
    Prune,
    /// A running `siemparse --restore`.
    Restore,
}

/// Who holds a lease, and until when (epoch ms).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaseInfo {
    pub holder: String,
    pub expires: i64,
}

impl<'a> LeaseKey<'a> {
    /// The name of its `trigger_lease` row (`None`: a `follow_lease` row).
    fn named(self) -> Option<&'static str> {
        match self {
            LeaseKey::Trigger => Some(TRIGGER),
            LeaseKey::Prune => Some(PRUNE),
            LeaseKey::Restore => Some(RESTORE),
            LeaseKey::Follow { .. } => None,
        }
    }

    /// `UPDATE <table> SET `, the start of every update of the lease row.
    fn update(self, b: Backend) -> Sql<'a> {
        Sql::with(
            b,
            match self.named() {
                Some(_) => "UPDATE trigger_lease SET ",
                None => "UPDATE follow_lease SET ",
            },
        )
    }

    /// ` WHERE <the row's key>` (appended with `and`).
    fn key(self, q: &mut Sql<'a>) {
        match self {
            LeaseKey::Trigger | LeaseKey::Prune | LeaseKey::Restore => {
                q.and()
                    .push("name = ")
                    .bind(self.named().unwrap_or_default());
            }
            LeaseKey::Follow { section, path } => {
                q.and().push("section = ").bind(section);
                q.and().push("path = ").bind(path);
            }
        }
    }

    /// The statement that renews the lease until `expires` if `holder`
    /// still has it: 1 row if so, 0 if it was lost. Run first in a
    /// transaction, it also fences it (the row stays locked until COMMIT).
    pub(crate) fn fence(self, b: Backend, holder: &'a str, expires: i64) -> Sql<'a> {
        let mut q = self.update(b);
        q.push("expires = ")
            .bind(expires)
            .push(", beats = beats + 1");
        self.key(&mut q);
        q.and().push("holder = ").bind(holder);
        q
    }
}

impl Database {
    /// Takes the lease for `ttl_ms` if it is free, expired, already
    /// `holder`'s, or held by a process of this host that is gone; else
    /// says who holds it.
    pub async fn acquire_lease(
        &self,
        key: LeaseKey<'_>,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Result<(), LeaseInfo>, Error> {
        let got = self.take_lease(key, holder, ttl_ms, None).await?;
        match got {
            Err(info) if crate::holder::is_dead_local(&info.holder) => {
                self.take_lease(key, holder, ttl_ms, Some(&info.holder))
                    .await
            }
            got => Ok(got),
        }
    }

    async fn take_lease(
        &self,
        key: LeaseKey<'_>,
        holder: &str,
        ttl_ms: i64,
        stale: Option<&str>,
    ) -> Result<Result<(), LeaseInfo>, Error> {
        let e = |x| Error::db("take", "the lease", x);
        let t = crate::time::now_ms();
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => "INSERT OR IGNORE",
            Backend::Mysql => "INSERT IGNORE",
        });
        match key {
            LeaseKey::Trigger | LeaseKey::Prune | LeaseKey::Restore => {
                q.push(" INTO trigger_lease (name, holder, expires, beats) VALUES (")
                    .bind(key.named().unwrap_or_default());
            }
            LeaseKey::Follow { section, path } => {
                q.push(" INTO follow_lease (section, path, holder, expires, beats) VALUES (")
                    .bind(section)
                    .push(", ")
                    .bind(path);
            }
        }
        q.push(", '', 0, 0)");
        self.execute(&q).await.map_err(e)?;
        let mut q = key.update(self.backend());
        q.push("holder = ").bind(holder);
        q.push(", expires = ").bind(t + ttl_ms);
        q.push(", beats = beats + 1");
        key.key(&mut q);
        q.and().push("(holder = ").bind(holder);
        q.push(" OR holder = '' OR expires < ").bind(t);
        q.push(" OR holder = ")
            .bind(stale.unwrap_or(holder))
            .push(")");
        if self.execute(&q).await.map_err(e)?.rows == 1 {
            return Ok(Ok(()));
        }
        Ok(Err(self.lease_holder(key).await?.unwrap_or(LeaseInfo {
            holder: String::new(),
            expires: 0,
        })))
    }

    /// Who holds the lease now (`None`: no row yet).
    pub async fn lease_holder(&self, key: LeaseKey<'_>) -> Result<Option<LeaseInfo>, Error> {
        let mut q = self.sql(match key.named() {
            Some(_) => "SELECT holder, expires FROM trigger_lease",
            None => "SELECT holder, expires FROM follow_lease",
        });
        key.key(&mut q);
        self.fetch_optional(&q)
            .await
            .map_err(|x| Error::db("read", "the lease", x))
    }

    /// Renews the lease for `ttl_ms` if `holder` still has it; false if it
    /// was lost.
    pub async fn renew_lease(
        &self,
        key: LeaseKey<'_>,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let q = key.fence(self.backend(), holder, crate::time::now_ms() + ttl_ms);
        let done = self
            .execute(&q)
            .await
            .map_err(|x| Error::db("renew", "the lease", x))?;
        Ok(done.rows == 1)
    }

    /// Gives the lease up if `holder` has it. Waits at most
    /// [`RELEASE_WAIT`] (a stop during an outage must not hang on it): a
    /// lease not given up expires.
    pub async fn release_lease(&self, key: LeaseKey<'_>, holder: &str) -> Result<(), Error> {
        let mut q = key.update(self.backend());
        q.push("holder = '', expires = 0, beats = beats + 1");
        key.key(&mut q);
        q.and().push("holder = ").bind(holder);
        match tokio::time::timeout(RELEASE_WAIT, self.execute(&q)).await {
            Ok(done) => {
                done.map_err(|x| Error::db("release", "the lease", x))?;
            }
            Err(_) => {
                return Err(Error::db(
                    "release",
                    "the lease",
                    "no answer in time (it expires by itself)",
                ));
            }
        }
        Ok(())
    }
}

/// Longest wait for the database when giving a lease up.
pub const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The lease an ingest writer fences its follow offsets with: each
/// checkpoint's (section, path) must still be `holder`'s.
#[derive(Debug, Clone)]
pub struct Fence {
    pub holder: String,
    pub ttl_ms: i64,
}

impl Fence {
    /// The fencing statement of a checkpoint's lease.
    pub(crate) fn of<'a>(&'a self, b: Backend, section: &'a str, path: &'a str) -> Sql<'a> {
        LeaseKey::Follow { section, path }.fence(
            b,
            &self.holder,
            crate::time::now_ms() + self.ttl_ms,
        )
    }
}
