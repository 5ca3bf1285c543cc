//! One follower per file: `--follow` takes the lease of each (section,
//! path) in the database before it reads the file (`db::lease`), so that
//! two followers on one host or on two never store a line twice. Without
//! the lease, `--once` skips the file and says who follows it; a daemon
//! waits in standby and takes over when the holder releases the lease
//! (stops), or its lease expires (a holder that died, or another host's
//! that stopped renewing it); a holder of this host whose pid is gone is
//! taken over at once. The stored offset is read only once the lease is
//! ours. Held leases are renewed every third of their time; every batch
//! is fenced by its file's lease, so a follower that stalled past its
//! lease cannot store what the next one stores again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siemstress_common::db::Database;
use siemstress_common::db::lease::{Fence, LeaseInfo, LeaseKey};
use siemstress_common::diag;
use siemstress_common::holder;

/// Lease time when `--lease-ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How often a follower in standby asks for the lease (at most).
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The follow leases of this process.
pub struct Leases {
    db: Database,
    holder: String,
    ttl: Duration,
    /// (section, path) of the leases held.
    held: Mutex<Vec<(String, String)>>,
    /// Why the run must fail: a lease lost while following.
    lost: Mutex<Option<String>>,
}

impl Leases {
    pub fn new(db: Database, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            db,
            holder: holder::holder_id(),
            ttl,
            held: Mutex::default(),
            lost: Mutex::default(),
        })
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// The fence of the ingest writer.
    pub fn fence(&self) -> Fence {
        Fence {
            holder: self.holder.clone(),
            ttl_ms: self.ttl_ms(),
        }
    }

    /// Takes the lease of `path` in `section`, or says who holds it.
    pub async fn take(&self, section: &str, path: &str) -> anyhow::Result<Result<(), LeaseInfo>> {
        let key = LeaseKey::Follow { section, path };
        let got = self
            .db
            .acquire_lease(key, &self.holder, self.ttl_ms())
            .await?;
        if got.is_ok() {
            self.held
                .lock()
                .expect("leases")
                .push((section.to_owned(), path.to_owned()));
        }
        Ok(got)
    }

    /// Standby: asks for the lease until it is ours (true) or `stop` is
    /// raised (false).
    pub async fn wait(&self, section: &str, path: &str, stop: &AtomicBool) -> anyhow::Result<bool> {
        let every = STANDBY_POLL.min(self.ttl / 3);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            match self.take(section, path).await {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(_)) => {}
                // The database may come back: standby keeps asking.
                Err(e) => diag!("siemparse: --follow {path}: asking for the lease: {e:#}"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Renews every held lease each third of its time until `stop`; a
    /// lease found lost stops the run with an error.
    pub fn spawn_renewal(self: &Arc<Self>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(me.ttl / 3).await;
                let held = me.held.lock().expect("leases").clone();
                for (section, path) in held {
                    let key = LeaseKey::Follow {
                        section: &section,
                        path: &path,
                    };
                    match me.db.renew_lease(key, &me.holder, me.ttl_ms()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let who = me
                                .db
                                .lease_holder(key)
                                .await
                                .ok()
                                .flatten()
                                .map(|i| holder::describe(&i.holder))
                                .unwrap_or_else(|| "nobody".into());
                            *me.lost.lock().expect("leases") = Some(format!(
                                "--follow {path}: lost the lease of this file to another \
                                 siemparse ({who}): it was not renewed in time; stopping"
                            ));
                            me.held
                                .lock()
                                .expect("leases")
                                .retain(|(s, p)| (s, p) != (&section, &path));
                            stop.store(true, Ordering::Relaxed);
                        }
                        // A database outage: renewing again is all there is to do.
                        Err(e) => {
                            diag!("siemparse: --follow {path}: renewing the lease: {e:#}")
                        }
                    }
                }
            }
        })
    }

    /// A lease lost while following, if any.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().expect("leases").clone()
    }

    /// Gives up every held lease (a follower in standby takes over at once).
    pub async fn release_all(&self) {
        let held = std::mem::take(&mut *self.held.lock().expect("leases"));
        for (section, path) in held {
            let key = LeaseKey::Follow {
                section: &section,
                path: &path,
            };
            let _ = self.db.release_lease(key, &self.holder).await;
        }
    }
}

/// "another siemparse (host H, pid P) follows it until T".
pub fn held_by(info: &LeaseInfo) -> String {
    format!(
        "another siemparse ({}) follows it (lease until {})",
        holder::describe(&info.holder),
        chrono::DateTime::from_timestamp_millis(info.expires)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| info.expires.to_string())
    )
}
