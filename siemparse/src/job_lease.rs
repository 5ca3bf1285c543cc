//! The lease a one-at-a-time job holds on a database while it runs, so that
//! it holds across hosts:
//! - a prune: two at once would pick the same rows, so each would report
//!   bytes the other freed and archive rows twice;
//! - a restore: each compares the archive with the table before the other's
//!   rows are committed, so rows both read would be stored twice.
//!
//! The lease is renewed in the background until released; a holder that
//! dies leaves it to expire, or to be taken over at once by a process of
//! the same host (`common::db::lease`).

use std::time::Duration;

use siemstress_common::db::Database;
use siemstress_common::db::lease::LeaseKey;
use siemstress_common::diag;

/// How long the lease lasts unless renewed (every quarter of it): a job
/// whose process is gone from another host is taken over after it; one of
/// this host, at once.
const TTL: Duration = Duration::from_secs(60);
/// How often a job that waits for another one tries the lease again.
const POLL: Duration = Duration::from_secs(1);

/// A job that runs one at a time on a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Prune,
    Restore,
}

impl Job {
    fn key(self) -> LeaseKey<'static> {
        match self {
            Job::Prune => LeaseKey::Prune,
            Job::Restore => LeaseKey::Restore,
        }
    }

    /// The job in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Job::Prune => "prune",
            Job::Restore => "restore",
        }
    }
}

/// What a job does when another one holds the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    /// Wait for it to finish (then do what is left), saying so once.
    Wait,
    /// Skip this turn (the hourly prune of a follower).
    Skip,
}

/// Why [`JobLease::take`] did not take the lease.
pub enum NotTaken {
    /// Another job holds it (`IfBusy::Skip`); who, for people.
    Busy(String),
    /// The stop flag was raised while waiting.
    Stopped,
}

/// The lease while held: renewed in the background until
/// [`JobLease::release`].
pub struct JobLease {
    db: Database,
    job: Job,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl JobLease {
    /// Takes the lease of `job`, waiting for another holder (saying so once
    /// on `out`) or not; `stopping` ends a wait.
    pub async fn take(
        db: &Database,
        job: Job,
        if_busy: IfBusy,
        stopping: impl Fn() -> bool,
        out: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<Result<Self, NotTaken>> {
        let holder = siemstress_common::holder::holder_id();
        let ttl = TTL.as_millis() as i64;
        let mut waiting = false;
        loop {
            let Err(other) = db.acquire_lease(job.key(), &holder, ttl).await? else {
                break;
            };
            let who = siemstress_common::holder::describe(&other.holder);
            if if_busy == IfBusy::Skip {
                return Ok(Err(NotTaken::Busy(who)));
            }
            if !waiting {
                writeln!(
                    out,
                    "another {} is running ({who}): waiting for it to finish",
                    job.noun()
                )?;
                out.flush()?;
                waiting = true;
            }
            if stopping() {
                return Ok(Err(NotTaken::Stopped));
            }
            tokio::time::sleep(POLL).await;
        }
        let (renew_db, renew_holder) = (db.clone(), holder.clone());
        let renewer = tokio::spawn(async move {
            let mut lost = false;
            loop {
                tokio::time::sleep(TTL / 4).await;
                match renew_db.renew_lease(job.key(), &renew_holder, ttl).await {
                    Ok(true) => {}
                    Ok(false) if !lost => {
                        lost = true;
                        diag!(
                            "siemparse: warning: the {0} lease was taken over (this {0} did not \
                             renew it for {1} s): another {0} may run beside this one",
                            job.noun(),
                            TTL.as_secs()
                        );
                    }
                    Ok(false) => {}
                    Err(e) => diag!("siemparse: warning: renewing the {} lease: {e}", job.noun()),
                }
            }
        });
        Ok(Ok(Self {
            db: db.clone(),
            job,
            holder,
            renewer,
        }))
    }

    /// Gives the lease up (a lease not given up expires).
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.db.release_lease(self.job.key(), &self.holder).await {
            diag!("siemparse: warning: {e}");
        }
    }
}
