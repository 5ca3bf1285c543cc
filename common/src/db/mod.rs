//! Database access: one [`Database`] over two backends, SQLite (embedded
//! default) and MariaDB/MySQL, each in its own module with the same methods.
//! Schema comes from versioned migrations; event tables (one per section)
//! are created from a fixed template with a validated name.

pub mod grep_bits;
pub mod grep_index;
pub mod mysql;
pub mod search;
pub mod sqlite;
mod sqlite_insert;
mod sqlite_read;
pub(crate) mod sqlite_stmt;

use crate::Error;
use crate::event::Event;
use crate::ident::Ident;

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
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

/// Resume point of a followed file, committed with the rows it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub section: String,
    pub path: String,
    pub dev: i64,
    pub inode: i64,
    /// Byte offset just after the last stored line.
    pub offset: i64,
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(sqlite::SqliteDb),
    Mysql(mysql::MysqlDb),
}

/// Runs the same sqlx code on whichever pool of a [`Database`] is connected:
/// `with_pool!(db, pool => sqlx::query(SQL).bind(x).execute(pool).await)`.
/// The body is compiled once per backend, so SQL that both accept is written once.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite(d) => {
                let $pool = &d.pool;
                $body
            }
            $crate::db::Database::Mysql(d) => {
                let $pool = &d.pool;
                $body
            }
        }
    };
}

/// Calls the same method on whichever backend is connected.
macro_rules! dispatch {
    ($self:expr, $db:ident => $call:expr) => {
        match $self {
            Database::Sqlite($db) => $call,
            Database::Mysql($db) => $call,
        }
    };
}

impl Database {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(match Backend::of(url)? {
            Backend::Sqlite => Database::Sqlite(sqlite::SqliteDb::connect(url).await?),
            Backend::Mysql => Database::Mysql(mysql::MysqlDb::connect(url).await?),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite(_) => Backend::Sqlite,
            Database::Mysql(_) => Backend::Mysql,
        }
    }

    /// Creates the event table `table` (with its indexes) if it is missing.
    ///
    /// Indexes: `(ts)` for every time window, `(source_host, ts)` for "one
    /// address over days". No `(process, ts)`: processes are few and busy, so
    /// a time window filtered by process reads about as many rows through
    /// `(ts)`, and each extra index costs ~6,000 instructions per ingested
    /// row (a quarter of the SQLite write path, measured with callgrind).
    pub async fn ensure_event_table(&self, table: &Ident) -> Result<(), Error> {
        dispatch!(self, db => db.ensure_event_table(table).await)
    }

    /// True if the event table exists.
    pub async fn event_table_exists(&self, table: &Ident) -> Result<bool, Error> {
        dispatch!(self, db => db.event_table_exists(table).await)
    }

    /// Drops an event table and the follow offsets of its section.
    pub async fn drop_event_table(&self, section: &str, table: &Ident) -> Result<(), Error> {
        dispatch!(self, db => db.drop_event_table(section, table).await)
    }

    /// The stored resume point of `path` in `section`.
    pub async fn checkpoint(&self, section: &str, path: &str) -> Result<Option<Checkpoint>, Error> {
        let row: Option<(i64, i64, i64)> = crate::with_pool!(self, pool => sqlx::query_as(
            "SELECT dev, inode, byte_offset FROM follow_state WHERE section = ? AND path = ?",
        )
        .bind(section)
        .bind(path)
        .fetch_optional(pool)
        .await)
        .map_err(|e| Error::db("read offset", path, e))?;
        Ok(row.map(|(dev, inode, offset)| Checkpoint {
            section: section.to_owned(),
            path: path.to_owned(),
            dev,
            inode,
            offset,
        }))
    }

    /// A writer for the ingest hot path into `table`.
    pub async fn event_writer(&self, table: &Ident) -> Result<EventWriter, Error> {
        Ok(match self {
            Database::Sqlite(db) => EventWriter::Sqlite(db.event_writer(table)?),
            Database::Mysql(db) => EventWriter::Mysql(db.event_writer(table).await?),
        })
    }

    /// Number of rows in an event table.
    pub async fn count_rows(&self, table: &Ident) -> Result<i64, Error> {
        dispatch!(self, db => db.count_rows(table).await)
    }

    /// Closes the pool cleanly (flushes the SQLite WAL).
    pub async fn close(&self) {
        dispatch!(self, db => db.close().await)
    }
}

/// Writes batches of events, and the checkpoints they advance, atomically.
pub enum EventWriter {
    Sqlite(sqlite::SqliteWriter),
    Mysql(mysql::MysqlWriter),
}

impl EventWriter {
    /// Inserts `events` and upserts `checkpoints` in one transaction.
    pub async fn write(
        &mut self,
        events: &[Event],
        checkpoints: &[Checkpoint],
    ) -> Result<(), Error> {
        match self {
            EventWriter::Sqlite(w) => w.write(events, checkpoints),
            EventWriter::Mysql(w) => w.write(events, checkpoints).await,
        }
    }

    /// Rows stored but not yet in the search index.
    pub fn index_backlog(&self) -> u64 {
        match self {
            EventWriter::Sqlite(w) => w.index_backlog(),
            EventWriter::Mysql(w) => w.index_backlog(),
        }
    }

    /// True if the last index step stopped before a gap in the ids (MariaDB).
    pub fn index_at_gap(&self) -> bool {
        match self {
            EventWriter::Sqlite(_) => false,
            EventWriter::Mysql(w) => w.index_at_gap(),
        }
    }

    /// Adds up to `max_rows` rows to the search index in a transaction of
    /// its own (never the insert transaction); returns how many (0: done,
    /// or on MariaDB stopped before a gap in the ids, see
    /// [`grep_bits`](self::grep_bits)).
    pub async fn index_step(&mut self, max_rows: u64) -> Result<u64, Error> {
        match self {
            EventWriter::Sqlite(w) => w.index_step(max_rows),
            EventWriter::Mysql(w) => w.index_step(max_rows).await,
        }
    }
}

/// Longest value kept in an indexed short column (host, user, ...); the
/// whole text stays in `raw`. Keeps MariaDB's VARCHAR(255) and SQLite equal.
pub const SHORT_COLUMN_CHARS: usize = 255;

/// `s` cut to [`SHORT_COLUMN_CHARS`] characters.
pub fn short(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(|v| {
        if v.len() <= SHORT_COLUMN_CHARS {
            return v; // no more bytes than the limit: no more characters either
        }
        match v.char_indices().nth(SHORT_COLUMN_CHARS) {
            Some((i, _)) => &v[..i],
            None => v,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Version numbers of the migrations in `migrations/<backend>`.
    fn versions(backend: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(backend);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| n.split('_').next().unwrap().to_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn migrations_stay_in_step() {
        let (sqlite, mysql) = (versions("sqlite"), versions("mysql"));
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite, mysql,
            "migrations/sqlite and migrations/mysql must have the same versions"
        );
    }

    #[test]
    fn mysql_migrations_are_idempotent() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/mysql");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let sql = std::fs::read_to_string(&path).unwrap().to_uppercase();
            for stmt in ["CREATE TABLE", "CREATE INDEX", "ADD COLUMN", "ADD INDEX"] {
                let all = sql.matches(stmt).count();
                let guarded = sql.matches(&format!("{stmt} IF NOT EXISTS")).count();
                assert_eq!(
                    all,
                    guarded,
                    "{}: every {stmt} needs IF NOT EXISTS",
                    path.display()
                );
            }
        }
    }
}
