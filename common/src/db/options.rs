//! The one set of connection options: which backend a URL names, how a URL
//! is shown in messages (password redacted), and how each backend is opened.
//!
//! - SQLite: WAL, `synchronous = NORMAL`, and a busy timeout of
//!   [`BUSY_TIMEOUT`] on every connection, the sqlx pool's and the rusqlite
//!   connections of the fast paths alike ([`open_sqlite`]); each keeps the
//!   `-wal` and `-shm` files at close (see `sqlite::stmt::persist_wal`), the
//!   WAL truncated to 0 bytes ([`JOURNAL_SIZE_LIMIT`]).
//! - MariaDB: `utf8mb4`, a pool of [`MYSQL_POOL`] connections. The first
//!   connection is made directly, so that a wrong address is reported at once
//!   ("connection refused") instead of after the pool's acquire timeout;
//!   once running, the pool reconnects by itself, waiting up to
//!   [`MYSQL_ACQUIRE`] for a server that went away (an outage, a restart);
//!   in a daemon that waits out outages itself, [`MYSQL_ACQUIRE_RETRYING`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Backend;
use crate::Error;

/// How long a SQLite writer waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The WAL is truncated to this size when a checkpoint resets it, and to 0
/// when the last connection closes (`PRAGMA journal_size_limit`).
const JOURNAL_SIZE_LIMIT: &str = "67108864";
/// Connections of a pool (either backend).
const POOL_SIZE: u32 = 4;
/// Connections of a MariaDB pool.
pub const MYSQL_POOL: u32 = POOL_SIZE;
/// How long a MariaDB query waits for a connection (reconnects included)
/// during a run.
pub const MYSQL_ACQUIRE: Duration = Duration::from_secs(30);
/// As [`MYSQL_ACQUIRE`], in a daemon that waits out outages itself
/// ([`super::retry`]): a lost server shows within seconds, and is announced.
pub const MYSQL_ACQUIRE_RETRYING: Duration = Duration::from_secs(3);

/// The acquire timeout of pools made from now on, in milliseconds.
static ACQUIRE_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(MYSQL_ACQUIRE.as_millis() as u64);

/// Called by a daemon that retries transient errors itself ([`super::retry`])
/// before it connects: its MariaDB pool waits [`MYSQL_ACQUIRE_RETRYING`]
/// for a connection instead of [`MYSQL_ACQUIRE`], so that an outage is
/// noticed (and said) at once rather than after half a minute.
pub fn retrying_daemon() {
    ACQUIRE_MS.store(
        MYSQL_ACQUIRE_RETRYING.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

impl Backend {
    /// Backend from the URL scheme; a bare path is a SQLite file.
    pub fn of(url: &str) -> Result<Self, Error> {
        if url.starts_with("sqlite:") || !url.contains("://") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Backend::Mysql)
        } else {
            Err(Error::BadUrl(redact(url)))
        }
    }
}

/// The URL with any password replaced by `***`, for messages and `--verbose`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url.split('@').next_back().unwrap_or("").to_owned(),
    }
}

/// Puts `password` into a server URL (from `[database] password_file`).
pub fn with_password(url: &str, password: &str) -> Result<String, Error> {
    let mut u = url::Url::parse(url).map_err(|_| Error::BadUrl(redact(url)))?;
    u.set_password(Some(password))
        .map_err(|_| Error::BadUrl(redact(url)))?;
    Ok(u.to_string())
}

/// A SQLite URL in the form sqlx reads (`sqlite://` added to a bare path).
fn sqlite_url(url: &str) -> String {
    if url.contains("://") || url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    }
}

/// The options of a SQLite URL: WAL, `synchronous = NORMAL`, the busy
/// timeout, and the file created if missing.
pub(crate) fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, Error> {
    let url = sqlite_url(url);
    Ok(SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::db("open", &url, e))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT)
        .busy_timeout(BUSY_TIMEOUT))
}

/// The file a SQLite URL names (`None` for an in-memory database).
pub fn sqlite_file(url: &str) -> Result<Option<PathBuf>, Error> {
    if url.contains(":memory:") {
        return Ok(None);
    }
    Ok(Some(sqlite_options(url)?.get_filename().to_owned()))
}

/// The sqlx pool of a SQLite database.
pub(crate) async fn sqlite_pool(url: &str) -> Result<(sqlx::SqlitePool, PathBuf), Error> {
    let opts = sqlite_options(url)?;
    let path = opts.get_filename().to_owned();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(Error::Io {
            what: format!("database directory {}", parent.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    // A new database is created 0600 here (SQLite would follow the umask,
    // 0644); its -wal and -shm get the database file's mode.
    if !read_only(url)
        && !url.contains(":memory:")
        && let Err(e) = crate::files::create_empty(&path)
    {
        return Err(Error::Io {
            what: format!("create database {}", path.display()),
            source: e,
        });
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut locked = conn.lock_handle().await?;
                super::sqlite::stmt::persist_wal(&super::sqlite::stmt::LockedHandle::new(
                    &mut locked,
                ));
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| sqlite_open_error(&sqlite_url(url), &path, e))?;
    Ok((pool, path))
}

/// An error opening `path`, with the way out when it is the `-shm` file of a
/// reader without write access, removed at its last close by an older siemstress.
fn sqlite_open_error(url: &str, path: &Path, e: sqlx::Error) -> Error {
    /// SQLITE_READONLY_DIRECTORY: no -shm, and no right to create one.
    const READONLY_DIRECTORY: &str = "1544";
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let shm = PathBuf::from(shm);
    let readonly_dir =
        matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some(READONLY_DIRECTORY));
    if readonly_dir && !shm.exists() {
        return Error::db(
            "open",
            url,
            format!(
                "{e}: without write access to its directory, a WAL database is read through its \
                 -shm file, and {} is missing; open the database once as its owner with any \
                 siemstress tool (they keep the file from then on)",
                shm.display()
            ),
        );
    }
    Error::db("open", url, e)
}

/// True if a SQLite URL opens the file read-only (`?mode=ro`).
fn read_only(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|kv| kv == "mode=ro"))
}

/// A rusqlite connection to the database file `path` (the fast paths:
/// ingest, snapshot rows, siemtrigger's scans), with the busy timeout and
/// `synchronous = NORMAL` of the pool; the file must exist (the pool made it).
pub(crate) fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, Error> {
    let what = path.display().to_string();
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::db("open", &what, e))?;
    super::sqlite::stmt::persist_wal(&conn);
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|_| conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT))
        .map_err(|e| Error::db("open", &what, e))?;
    Ok(conn)
}

/// The options of a MariaDB URL (`mariadb://` is read as `mysql://`).
fn mysql_options(url: &str) -> Result<MySqlConnectOptions, Error> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    Ok(MySqlConnectOptions::from_str(&url)
        .map_err(|e| Error::db("open", &redact(&url), e))?
        .charset("utf8mb4"))
}

/// A MariaDB pool, after one direct connection has shown that the server
/// answers: a refused connection or a wrong password is an error at once.
/// The first connection is handed to `first` (the migrations run on it).
pub(crate) async fn mysql_pool(
    url: &str,
) -> Result<(sqlx::MySqlPool, sqlx::MySqlConnection), Error> {
    use sqlx::ConnectOptions;
    let opts = mysql_options(url)?;
    let first = opts.connect().await.map_err(|e| connect_error(url, e))?;
    let pool = MySqlPoolOptions::new()
        .max_connections(MYSQL_POOL)
        .acquire_timeout(Duration::from_millis(
            ACQUIRE_MS.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .connect_lazy_with(opts);
    Ok((pool, first))
}

/// A failed first connection, named plainly ("connection refused").
fn connect_error(url: &str, e: sqlx::Error) -> Error {
    let message = match &e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the server running, and is that its port?)".to_owned()
            }
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    };
    Error::db("connect to", &redact(url), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_redaction() {
        assert_eq!(Backend::of("siem.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("mariadb://h/db").unwrap(), Backend::Mysql);
        assert!(Backend::of("postgres://h/db").is_err());
        assert_eq!(
            redact("mysql://u:secret@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        let u = with_password("mysql://u@h/db", "p@ss").unwrap();
        assert!(!redact(&u).contains("p@ss"), "{u}");
    }
}
