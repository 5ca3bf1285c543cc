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

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::Backend;
use crate::Error;
use crate::diag;

/// How long a SQLite writer waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a rusqlite connection (the ingest writer, the index steps, a
/// prune) tries again for a lock another connection holds. SQLite's own
/// busy handler sleeps in growing steps, then 100 ms between tries: a
/// writer woke up to 100 ms after the lock was free (a median 13 ms, at
/// most 56 ms in a traced prune at 1M rows), and on a loaded machine it
/// could miss a prune's pause between two transactions and wait through
/// both.
pub const BUSY_POLL: Duration = Duration::from_millis(5);
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
/// A MariaDB URL with several nodes (`h1:3306,h2:3306`) keeps them all.
pub fn redact(url: &str) -> String {
    if let Some(m) = MultiHost::split(url) {
        return m.join(&redact(&m.placeholder()));
    }
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
    if let Some(m) = MultiHost::split(url) {
        return Ok(m.join(&with_password(&m.placeholder(), password)?));
    }
    let mut u = url::Url::parse(url).map_err(|_| Error::BadUrl(redact(url)))?;
    u.set_password(Some(password))
        .map_err(|_| Error::BadUrl(redact(url)))?;
    Ok(u.to_string())
}

/// A server URL whose host part lists several nodes, `h1:3306,h2,h3:3307`:
/// kept apart so that the one-host URL around them can be read by the
/// `url` crate (with a placeholder host) and by sqlx (once per node).
struct MultiHost<'a> {
    /// `mysql://user:pw@` (up to the host part).
    head: &'a str,
    /// `h1:3306,h2:3306`.
    hosts: &'a str,
    /// `/db?options`.
    tail: &'a str,
}

/// The host that stands for the list of nodes while the rest is parsed.
const PLACEHOLDER: &str = "nodes.invalid";

impl<'a> MultiHost<'a> {
    /// `None` unless the URL's host part has a comma.
    fn split(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let at = authority.rfind('@').map_or(0, |i| i + 1);
        let hosts = &authority[at..];
        if !hosts.contains(',') {
            return None;
        }
        let head_len = scheme.len() + 3 + at;
        Some(MultiHost {
            head: &url[..head_len],
            hosts,
            tail: &rest[authority_end..],
        })
    }

    fn placeholder(&self) -> String {
        format!("{}{PLACEHOLDER}{}", self.head, self.tail)
    }

    /// `one` (a form of [`MultiHost::placeholder`]) with the nodes back.
    fn join(&self, one: &str) -> String {
        one.replacen(PLACEHOLDER, self.hosts, 1)
    }
}

/// The nodes of a MariaDB URL, `host:port` each (a URL may list several,
/// `mysql://user@h1:3306,h2:3306,h3:3306/db`; the port defaults to 3306),
/// each with the URL for it alone. Errors name the URL (redacted) and the
/// node.
pub fn mysql_nodes(url: &str) -> Result<Vec<(String, String)>, Error> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let Some(m) = MultiHost::split(&url) else {
        let u = url::Url::parse(&url).map_err(|e| Error::db("use", &redact(&url), e))?;
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => format!("{h}:3306"),
            (None, _) => String::from("localhost:3306"),
        };
        return Ok(vec![(host, url.clone())]);
    };
    let bad = |i: usize, node: &str, why: &str| {
        Error::db(
            "use",
            &redact(&url),
            format!("node {} ({node:?}) of the host list: {why}", i + 1),
        )
    };
    let mut nodes = Vec::new();
    for (i, node) in m.hosts.split(',').enumerate() {
        let node = node.trim();
        if node.is_empty() {
            return Err(bad(i, node, "empty (write h1:3306,h2:3306)"));
        }
        let (host, port) = if let Some(v6) = node.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (format!("[{h}]"), None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (format!("[{h}]"), Some(p)),
                    None => return Err(bad(i, node, "expected :PORT after ]")),
                },
                None => return Err(bad(i, node, "no closing ]")),
            }
        } else {
            match node.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (node.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains(['@', '/', ' ']) {
            return Err(bad(i, node, "not a host name or address"));
        }
        let port = match port {
            None => 3306,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(i, node, "the port must be a number from 1 to 65535"))?,
        };
        let hostport = format!("{host}:{port}");
        let one = m.placeholder().replacen(PLACEHOLDER, &hostport, 1);
        url::Url::parse(&one).map_err(|e| bad(i, node, &e.to_string()))?;
        nodes.push((hostport, one));
    }
    Ok(nodes)
}

/// The nodes of a MariaDB database and the one connections go to now: on
/// a connection failure ([`Nodes::failed`]) the next one, round-robin.
#[derive(Debug)]
pub struct Nodes {
    /// `host:port` and the connect options of each node.
    nodes: Vec<(String, MySqlConnectOptions)>,
    current: std::sync::atomic::AtomicUsize,
    /// When connections last moved to another node.
    moved: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Failures within this long after a move to another node are taken as
/// the same failure (queries that were under way on the old node).
const MOVE_SETTLE: Duration = Duration::from_secs(1);

impl Nodes {
    /// How many nodes the URL lists.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `host:port` of the node connections go to.
    pub fn current(&self) -> &str {
        &self.nodes[self.current.load(std::sync::atomic::Ordering::Relaxed)].0
    }

    /// A connection failed: with several nodes, new connections of `pool`
    /// go to the next one (said on stderr). Failures just after a move are
    /// those of the old node, and do not move again.
    pub fn failed(&self, pool: &sqlx::MySqlPool) {
        if self.nodes.len() < 2 {
            return;
        }
        let mut moved = self.moved.lock().expect("nodes");
        if moved.is_some_and(|t| t.elapsed() < MOVE_SETTLE) {
            return;
        }
        let old = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let new = (old + 1) % self.nodes.len();
        pool.set_connect_options(self.nodes[new].1.clone());
        self.current
            .store(new, std::sync::atomic::Ordering::Relaxed);
        *moved = Some(std::time::Instant::now());
        diag!(
            "siemstress: database node {} failed; connecting to {} (node {} of {})",
            self.nodes[old].0,
            self.nodes[new].0,
            new + 1,
            self.nodes.len()
        );
    }
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

/// The SQLite URL of the file `path` (made absolute), for sqlx and `--db`:
/// sqlx decodes `%XX` in the file name, so `?`, `#` and `%` (which would end
/// the name or start an escape) are encoded, and the URL names `path` itself.
/// A path that is not UTF-8 is refused (sqlx decodes the name as UTF-8).
pub fn sqlite_url_of(path: &Path) -> Result<String, Error> {
    let abs = std::path::absolute(path).map_err(|e| Error::Io {
        what: format!("database path {}", path.display()),
        err: e,
    })?;
    match (abs.to_str(), url::Url::from_file_path(&abs)) {
        (Some(_), Ok(u)) => Ok(format!("sqlite://{}", u.path())),
        _ => Err(Error::Io {
            what: format!("database path {}", abs.display()),
            err: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not UTF-8: SQLite URLs name UTF-8 paths",
            ),
        }),
    }
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
            err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
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
            err: e,
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
/// `synchronous = NORMAL` of the pool (waiting for a lock in short steps,
/// [`BUSY_POLL`]); the file must exist (the pool made it).
pub(crate) fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, Error> {
    let what = path.display().to_string();
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::db("open", &what, e))?;
    super::sqlite::stmt::persist_wal(&conn);
    conn.busy_handler(Some(busy_poll))
        .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|_| conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT))
        .map_err(|e| Error::db("open", &what, e))?;
    Ok(conn)
}

/// The busy handler of [`open_sqlite`]'s connections: tries again every
/// [`BUSY_POLL`] until [`BUSY_TIMEOUT`] has passed since the first try
/// (`count` 0) of this wait.
fn busy_poll(count: i32) -> bool {
    thread_local! {
        static SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let since = SINCE.with(|s| {
        if count == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    if now.duration_since(since) >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// The TLS modes of `ssl-mode` (in the URL or `[database] ssl_mode`), as
/// the MariaDB and MySQL clients name them (`verify_ca` is read too).
pub const SSL_MODES: &[&str] = &[
    "disabled",
    "preferred",
    "required",
    "verify-ca",
    "verify-identity",
];

/// The sqlx mode of an `ssl-mode` value, any case, `-` or `_`.
fn ssl_mode(value: &str) -> Option<MySqlSslMode> {
    Some(
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => MySqlSslMode::Disabled,
            "preferred" => MySqlSslMode::Preferred,
            "required" => MySqlSslMode::Required,
            "verify-ca" => MySqlSslMode::VerifyCa,
            "verify-identity" => MySqlSslMode::VerifyIdentity,
            _ => return None,
        },
    )
}

/// Checks a `[database] ssl_mode` value.
pub fn check_ssl_mode(value: &str) -> Result<(), String> {
    match ssl_mode(value) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown ssl-mode {value:?}: use one of {}",
            SSL_MODES.join(", ")
        )),
    }
}

/// `url` with `ssl-mode` and `ssl-ca` added (from `[database]`), unless the
/// URL sets them itself.
pub fn with_tls(url: &str, mode: Option<&str>, ca: Option<&Path>) -> Result<String, Error> {
    if mode.is_none() && ca.is_none() {
        return Ok(url.to_owned());
    }
    if let Some(m) = MultiHost::split(url) {
        return Ok(m.join(&with_tls(&m.placeholder(), mode, ca)?));
    }
    let mut u = url::Url::parse(url).map_err(|_| Error::BadUrl(redact(url)))?;
    let has = |keys: [&str; 2]| u.query_pairs().any(|(k, _)| keys.contains(&k.as_ref()));
    let (has_mode, has_ca) = (has(["ssl-mode", "sslmode"]), has(["ssl-ca", "sslca"]));
    {
        let mut q = u.query_pairs_mut();
        if let Some(mode) = mode.filter(|_| !has_mode) {
            q.append_pair("ssl-mode", mode);
        }
        if let Some(ca) = ca.filter(|_| !has_ca) {
            q.append_pair("ssl-ca", &ca.to_string_lossy());
        }
    }
    Ok(u.to_string())
}

/// The options of a one-node MariaDB URL (`mariadb://` is read as
/// `mysql://`); `ssl-mode` takes the clients' names (`verify-ca`).
fn mysql_options(url: &str) -> Result<MySqlConnectOptions, Error> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let bad = |e: &dyn std::fmt::Display| Error::db("use", &redact(&url), e.to_string());
    let mut u = url::Url::parse(&url).map_err(|e| bad(&e))?;
    let mut mode = None;
    let mut rest = Vec::new();
    for (k, v) in u.query_pairs() {
        if k == "ssl-mode" || k == "sslmode" {
            mode = Some(ssl_mode(&v).ok_or_else(|| bad(&check_ssl_mode(&v).unwrap_err()))?);
        } else {
            if (k == "ssl-ca" || k == "sslca") && !Path::new(v.as_ref()).is_file() {
                return Err(bad(&format!("ssl-ca {v}: no such file")));
            }
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    if rest.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(rest);
    }
    let mut opts = MySqlConnectOptions::from_str(u.as_str())
        .map_err(|e| Error::db("open", &redact(&url), e))?
        .charset("utf8mb4");
    if let Some(mode) = mode {
        opts = opts.ssl_mode(mode);
    }
    Ok(opts)
}

/// A MariaDB pool, after one direct connection has shown that the server
/// answers: a refused connection or a wrong password is an error at once.
/// The first connection is handed to `first` (the migrations run on it).
/// With several nodes in the URL, the first that answers is used (a node
/// that refuses the connection, or times out, is passed over with a
/// message); the error names each node's failure when none does.
pub(crate) async fn mysql_pool(
    url: &str,
) -> Result<(sqlx::MySqlPool, sqlx::MySqlConnection, Nodes), Error> {
    use sqlx::ConnectOptions;
    let listed = mysql_nodes(url)?;
    let mut nodes = Vec::with_capacity(listed.len());
    for (hostport, one) in &listed {
        nodes.push((hostport.clone(), mysql_options(one)?));
    }
    let mut failures = Vec::new();
    let mut first = None;
    for (i, (hostport, opts)) in nodes.iter().enumerate() {
        match opts.connect().await {
            Ok(c) => {
                first = Some((i, c));
                break;
            }
            Err(e) if nodes.len() == 1 => return Err(connect_error(url, e)),
            // A wrong password or database is wrong on every node.
            Err(e) if sqlx_kind_connection(&e) => {
                let Error::Database { message, .. } = connect_error(url, e) else {
                    unreachable!("connect_error makes a database error")
                };
                diag!("siemstress: database node {hostport}: {message}; trying the next");
                failures.push(format!("{hostport}: {message}"));
            }
            Err(e) => return Err(connect_error(url, e)),
        }
    }
    let Some((current, first)) = first else {
        return Err(Error::db(
            "connect to",
            &redact(url),
            format!("no node answers ({})", failures.join("; ")),
        ));
    };
    let pool = MySqlPoolOptions::new()
        .max_connections(MYSQL_POOL)
        .acquire_timeout(Duration::from_millis(
            ACQUIRE_MS.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .connect_lazy_with(nodes[current].1.clone());
    let nodes = Nodes {
        nodes,
        current: std::sync::atomic::AtomicUsize::new(current),
        moved: std::sync::Mutex::new(None),
    };
    Ok((pool, first, nodes))
}

/// True if a failed connection attempt is the node's (refused, reset,
/// timed out), not the account's or the URL's.
fn sqlx_kind_connection(e: &sqlx::Error) -> bool {
    super::retry::sqlx_kind(e) == super::retry::Transient::Connection
}

/// A failed TLS handshake, with what is checked.
fn tls_message(e: &dyn std::fmt::Display) -> String {
    format!(
        "TLS: {e} (with ssl-mode=verify-ca the server's certificate must be signed by the \
         ssl-ca certificate, and with verify-identity name the host of the URL too)"
    )
}

/// A failed first connection, named plainly ("connection refused").
fn connect_error(url: &str, e: sqlx::Error) -> Error {
    let message = match &e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the server running, and is that its port?)".to_owned()
            }
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            // rustls's handshake errors come as I/O errors.
            _ if io.get_ref().is_some_and(|e| {
                let m = e.to_string();
                m.contains("certificate") || m.contains("TLS") || m.contains("handshake")
            }) =>
            {
                tls_message(io)
            }
            _ => io.to_string(),
        },
        sqlx::Error::Tls(e) => tls_message(e),
        other => other.to_string(),
    };
    Error::db("connect to", &redact(url), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_of_a_path_names_that_path() {
        for name in ["plain.db", "a?b#c%41 d.db", "ü%.db"] {
            let p = Path::new("/tmp/x?y#z%20").join(name);
            let url = sqlite_url_of(&p).unwrap();
            assert_eq!(sqlite_file(&url).unwrap(), Some(p.clone()), "{url}");
        }
    }

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

    #[test]
    fn tls_options() {
        let ca = Path::new("/etc/ca.pem");
        assert_eq!(
            with_tls("mysql://u@h1,h2/db", Some("verify-ca"), Some(ca)).unwrap(),
            "mysql://u@h1,h2/db?ssl-mode=verify-ca&ssl-ca=%2Fetc%2Fca.pem"
        );
        // The URL's own options win.
        assert_eq!(
            with_tls("mysql://u@h/db?ssl-mode=required", Some("verify-ca"), None).unwrap(),
            "mysql://u@h/db?ssl-mode=required"
        );
        assert!(check_ssl_mode("VERIFY_IDENTITY").is_ok());
        assert!(
            check_ssl_mode("verify")
                .unwrap_err()
                .contains("verify-identity")
        );
        assert!(mysql_options("mysql://u@h/db?ssl-mode=verify-identity").is_ok());
        let e = mysql_options("mysql://u:pw@h/db?ssl-mode=on")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown ssl-mode") && e.contains("u:***@h"),
            "{e}"
        );
    }

    #[test]
    fn several_nodes() {
        let url = "mysql://u:secret@h1:3306,h2,[::1]:3307/db?ssl-mode=required";
        assert_eq!(
            redact(url),
            "mysql://u:***@h1:3306,h2,[::1]:3307/db?ssl-mode=required"
        );
        let nodes = mysql_nodes(url).unwrap();
        let hosts: Vec<&str> = nodes.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["h1:3306", "h2:3306", "[::1]:3307"]);
        assert_eq!(nodes[1].1, "mysql://u:secret@h2:3306/db?ssl-mode=required");
        let u = with_password("mysql://u@h1,h2:3307/db", "p@ss").unwrap();
        assert_eq!(u, "mysql://u:p%40ss@h1,h2:3307/db");
        assert_eq!(mysql_nodes("mariadb://u@h:3307/db").unwrap()[0].0, "h:3307");
        for (bad, why) in [
            ("mysql://u:secret@h1,,h3/db", "node 2"),
            ("mysql://u:secret@h1,h2:x/db", "the port must be a number"),
            ("mysql://u:secret@h1,h2:0/db", "the port must be a number"),
            ("mysql://u:secret@h1,[::1/db", "no closing ]"),
        ] {
            let e = mysql_nodes(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("mysql://u:***@h1,"), "{bad}: {e}");
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
