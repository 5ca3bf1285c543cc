//! Riding out an outage: which database errors waiting may cure
//! (transient) and which it cannot (permanent), and the one wait-and-retry
//! loop the daemons use around a whole transaction (siemparse's batch
//! writer, siemtrigger's cycle).
//!
//! Transient, for MariaDB/MySQL: a lost or refused connection (I/O errors:
//! refused, reset, aborted, broken pipe, timed out, end of stream; the pool
//! timing out), the server errors 1040 (too many connections), 1047 (Galera:
//! "WSREP has not yet prepared node for application use", a node outside
//! the primary component), 1053 (shutdown in progress), 1158–1161 (network
//! read/write errors and timeouts), 1180 (error during COMMIT: Galera's
//! "Not connected to Primary Component"), 1205 (lock wait timeout), 1213
//! (deadlock; Galera's certification failure), 1927 (connection killed),
//! 2006/2013 (server gone away, lost connection) and 4031 (disconnected for
//! inactivity); any error whose text names WSREP. For SQLite: a database
//! busy or locked past the busy timeout. Everything else (syntax, access
//! denied, unknown database, constraint violations) is permanent: retrying
//! would only repeat it.
//!
//! Retrying is safe because each caller retries a whole transaction whose
//! resume point is committed with its rows (follow offsets with the rows,
//! trigger progress with the alerts): a transaction that failed left
//! nothing, and the next attempt starts from the same place. The one
//! ambiguous case, a connection lost while COMMIT was under way, is
//! resolved by the caller before writing again (the ingest writer looks
//! for the first row id of the batch; siemtrigger reloads its stored
//! progress), so nothing is stored twice.
//!
//! The wait starts at [`FIRST_WAIT`] and doubles up to [`MAX_WAIT`]; it is
//! announced on stderr when it starts (and again every [`REMIND`]), and so
//! is the resumption. Raising the stop flag (SIGTERM) ends a wait, and an
//! attempt made during an outage, at once with [`Error::StoppedWaiting`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::diag;

/// The first wait after a transient error.
pub const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// A continuing outage is announced again this often.
pub const REMIND: Duration = Duration::from_secs(60);
/// How often a wait looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What kind of transient error a database error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// Permanent: retrying repeats it.
    No,
    /// The server answered with an error that may pass (a deadlock, a lock
    /// wait timeout, a Galera node outside the primary component).
    Server,
    /// The connection failed or was refused: another node may answer.
    Connection,
}

/// MariaDB/MySQL error numbers that waiting may cure.
const MYSQL_TRANSIENT: &[u16] = &[
    1040, 1047, 1053, 1158, 1159, 1160, 1161, 1180, 1205, 1213, 1927, 2006, 2013, 4031,
];
/// Of those, the ones that mean the connection is gone.
const MYSQL_CONNECTION: &[u16] = &[1053, 1158, 1159, 1160, 1161, 1927, 2006, 2013, 4031];

/// The kind of an I/O error: connection-level failures are transient.
fn io_transient(e: &std::io::Error) -> Transient {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::TimedOut
        | K::UnexpectedEof
        | K::NotConnected
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => Transient::Connection,
        _ => Transient::No,
    }
}

/// The kind of an sqlx error (see the module documentation).
pub fn sqlx_kind(e: &sqlx::Error) -> Transient {
    match e {
        sqlx::Error::Io(io) => io_transient(io),
        sqlx::Error::PoolTimedOut => Transient::Connection,
        sqlx::Error::Database(d) => {
            if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                if MYSQL_CONNECTION.contains(&m.number()) {
                    Transient::Connection
                } else if MYSQL_TRANSIENT.contains(&m.number()) || m.message().contains("WSREP") {
                    Transient::Server
                } else {
                    Transient::No
                }
            } else if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
                let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                if matches!(code & 0xff, 5 | 6) {
                    Transient::Server
                } else {
                    Transient::No
                }
            } else {
                Transient::No
            }
        }
        _ => Transient::No,
    }
}

/// True if waiting may cure `e`.
pub fn sqlx_transient(e: &sqlx::Error) -> bool {
    sqlx_kind(e) != Transient::No
}

/// The kind of a rusqlite error: busy or locked past the busy timeout.
pub fn rusqlite_kind(e: &rusqlite::Error) -> Transient {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Transient::Server
        }
        _ => Transient::No,
    }
}

/// The kind of any cause given to [`Error::db`].
pub(crate) fn kind_of(cause: &dyn std::any::Any) -> Transient {
    if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
        sqlx_kind(e)
    } else if let Some(e) = cause.downcast_ref::<rusqlite::Error>() {
        rusqlite_kind(e)
    } else {
        Transient::No
    }
}

/// The kind of the database error in the chain of `e`.
fn transient_of(e: &anyhow::Error) -> Transient {
    e.chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .map_or(Transient::No, Error::transient)
}

/// `d` for messages: "250 ms", "2.5 s", "1m 30s".
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m {}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Resolves when `stop` is raised.
pub async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// The wait-and-retry state of one daemon loop (see the module
/// documentation): [`Retry::run`] around an attempt, or
/// [`Retry::after`] and [`Retry::succeeded`] by hand.
#[derive(Debug)]
pub struct Retry {
    /// The tool that speaks ("siemparse").
    tool: &'static str,
    stop: Arc<AtomicBool>,
    /// The next wait.
    next: Duration,
    /// When the outage began (`None`: the database answers).
    since: Option<Instant>,
    /// When the outage was last announced.
    said: Option<Instant>,
    /// Waits so far in this outage.
    pub waits: u32,
    /// Outages ridden out.
    pub outages: u32,
    /// Told of connection failures (failover to the next node).
    db: Option<super::Database>,
}

impl Retry {
    /// Unbounded retrying of transient errors until `stop` is raised.
    pub fn new(tool: &'static str, stop: Arc<AtomicBool>) -> Self {
        Self {
            tool,
            stop,
            next: FIRST_WAIT,
            since: None,
            said: None,
            waits: 0,
            outages: 0,
            db: None,
        }
    }

    /// Tells `db` of each connection failure, so that its next connection
    /// goes to the next node of a URL with several.
    pub fn with_db(mut self, db: super::Database) -> Self {
        self.db = Some(db);
        self
    }

    /// True while an outage lasts (since the last transient error, until
    /// the next success).
    pub fn waiting(&self) -> bool {
        self.since.is_some()
    }

    /// True once the stop flag is raised (SIGTERM/SIGINT): a long job that
    /// runs through this wrapper ends between its steps.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// After a failed attempt: waits and returns `Ok` when `e` is transient
    /// (the caller tries again), announcing the outage on its first wait;
    /// returns `e` when it is permanent, and [`Error::StoppedWaiting`] when
    /// the stop flag is raised.
    pub async fn after(&mut self, e: Error) -> Result<(), Error> {
        let kind = e.transient();
        if kind == Transient::No {
            return Err(e);
        }
        let last = e.to_string();
        if self.wait(kind, &last).await {
            Ok(())
        } else {
            Err(Error::StoppedWaiting { last })
        }
    }

    /// [`Retry::after`] for an error with context: transient if the
    /// database error in its chain is.
    pub async fn after_any(&mut self, e: anyhow::Error) -> anyhow::Result<()> {
        let kind = transient_of(&e);
        if kind == Transient::No {
            return Err(e);
        }
        let last = format!("{e:#}");
        if self.wait(kind, &last).await {
            Ok(())
        } else {
            Err(Error::StoppedWaiting { last }.into())
        }
    }

    /// Waits after a transient error (`last` is its message); false when
    /// the stop flag was raised.
    async fn wait(&mut self, kind: Transient, last: &str) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let wait = self.next;
        if self.said.is_none_or(|t| now.duration_since(t) >= REMIND) {
            if self.said.is_none() {
                diag!(
                    "{}: database unavailable ({last}), retrying in {}",
                    self.tool,
                    human(wait)
                );
            } else {
                diag!(
                    "{}: database still unavailable after {} ({last}), retrying every {}",
                    self.tool,
                    human(now.duration_since(since)),
                    human(wait)
                );
            }
            self.said = Some(now);
        }
        if kind == Transient::Connection
            && let Some(db) = &self.db
        {
            db.connection_failed().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&self.stop) => {}
        }
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        self.waits += 1;
        self.next = (self.next * 2).min(MAX_WAIT);
        true
    }

    /// After a successful attempt: ends the outage, if there was one, with
    /// a message saying how long it lasted.
    pub fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            diag!(
                "{}: database available again after {}; resuming",
                self.tool,
                human(since.elapsed())
            );
            self.outages += 1;
        }
        self.next = FIRST_WAIT;
        self.said = None;
        self.waits = 0;
    }

    /// Runs one attempt: during an outage it is given up at once when the
    /// stop flag is raised (a pool may wait long for a connection); outside
    /// one it runs to its end, so that the last batch before a SIGTERM is
    /// committed.
    pub async fn guard<T>(
        &self,
        attempt: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if !self.waiting() {
            return attempt.await;
        }
        tokio::select! {
            r = attempt => r,
            _ = stopped(&self.stop) => Err(Error::StoppedWaiting {
                last: "a new attempt was under way".to_owned(),
            }),
        }
    }

    /// [`Retry::guard`] for an attempt whose error has context.
    pub async fn guard_any<T>(
        &self,
        attempt: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if !self.waiting() {
            return attempt.await;
        }
        tokio::select! {
            r = attempt => r,
            _ = stopped(&self.stop) => Err(Error::StoppedWaiting {
                last: "a new attempt was under way".to_owned(),
            }.into()),
        }
    }

    /// True if [`Retry::after_any`] takes care of `e`: the database error
    /// in its chain is transient, or a stop ended the wait.
    pub fn handles(&self, e: &anyhow::Error) -> bool {
        transient_of(e) != Transient::No
            || e.chain().any(|c| {
                c.downcast_ref::<Error>()
                    .is_some_and(|e| matches!(e, Error::StoppedWaiting { .. }))
            })
    }

    /// Runs `attempt` until it succeeds or fails permanently, waiting
    /// after each transient failure (see [`Retry::guard`]).
    pub async fn run<T, F, Fut>(&mut self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        loop {
            match self.guard(attempt()).await {
                Ok(v) => {
                    self.succeeded();
                    return Ok(v);
                }
                Err(e) => self.after(e).await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    #[test]
    fn classification() {
        use std::io::ErrorKind as K;
        for k in [
            K::ConnectionRefused,
            K::ConnectionReset,
            K::BrokenPipe,
            K::TimedOut,
            K::UnexpectedEof,
        ] {
            assert_eq!(sqlx_kind(&io(k)), Transient::Connection, "{k:?}");
        }
        assert_eq!(sqlx_kind(&io(K::PermissionDenied)), Transient::No);
        assert_eq!(sqlx_kind(&sqlx::Error::PoolTimedOut), Transient::Connection);
        assert_eq!(sqlx_kind(&sqlx::Error::RowNotFound), Transient::No);
        let e = Error::db("insert into", "auth", io(K::ConnectionReset));
        assert!(e.is_transient(), "{e:?}");
        let e = Error::db("insert into", "auth", "syntax error");
        assert!(!e.is_transient());
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(Error::db("insert into", "auth", busy).is_transient());
    }

    #[tokio::test]
    async fn waits_then_resumes_and_stops() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut r = Retry::new("test", stop.clone());
        let mut n = 0;
        let started = Instant::now();
        let v = r
            .run(|| {
                n += 1;
                let fail = n < 3;
                async move {
                    if fail {
                        Err(Error::db(
                            "x",
                            "y",
                            io(std::io::ErrorKind::ConnectionRefused),
                        ))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
        // 250 ms, then 500 ms.
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert_eq!(r.outages, 1);
        assert!(!r.waiting());
        // Permanent: at once.
        let e = r
            .run(|| async { Err::<(), _>(Error::db("x", "y", "denied")) })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Database { .. }));
        // Stopped during the wait: promptly.
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let e = r
            .run(|| async {
                Err::<(), _>(Error::db("x", "y", io(std::io::ErrorKind::ConnectionReset)))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::StoppedWaiting { .. }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
