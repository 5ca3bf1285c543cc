//! The data layer: all SQL of siemstress and every difference between its
//! two backends, SQLite (embedded default) and MariaDB/MySQL, behind typed
//! operations per kind of data (see `docs/design.md`):
//!
//! - [`events`]: event tables, follow offsets, the ingest writer;
//! - [`search`]: filtered rows, counts and `--stats`, with the `--grep`
//!   index planner ([`grep_index`], [`mysql::grep_bits`]);
//! - [`trigger`]: siemtrigger's progress, windows, alerts and actions;
//! - [`sources`]: ingest sources and siemtrigger's watermark;
//! - [`lease`]: leases across hosts (one siemtrigger, one follower per file);
//! - [`alerts`]: alerts read back; [`snapshots`]: snapshot runs and rows;
//! - [`report`]: the report's aggregates;
//! - [`retention`]: pruning what is past its keep period, in batches;
//! - [`stats`]: rows and bytes per table (`siemquery --stats-db`);
//! - [`sql`]: SQL text with bound values, written once for both backends;
//! - [`options`]: the one set of connection options;
//! - [`sqlite`] and [`mysql`]: what only one backend does.
//!
//! Schema comes from versioned migrations; event tables (one per section)
//! are created from a fixed template with a validated name.

pub mod alerts;
pub mod events;
pub mod grep_index;
pub mod lease;
pub mod mysql;
pub mod options;
pub mod report;
pub mod retention;
pub mod retry;
pub mod search;
pub mod snapshots;
pub mod sources;
pub mod sql;
pub mod sqlite;
pub mod stats;
pub mod trigger;

pub use events::{Checkpoint, EventWriter};
pub use options::{redact, with_password};

use crate::Error;

/// Which backend a URL names (see [`Backend::of`]); also the SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(sqlite::SqliteDb),
    Mysql(mysql::MysqlDb),
}

/// Runs the same sqlx code on whichever pool of a [`Database`] is connected:
/// `with_pool!(db, pool => sqlx::query(SQL).bind(x).execute(pool).await)`.
/// Being replaced by [`sql::Sql`] (issue 11); do not add uses.
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

    /// `None` if `e` is stored exactly as it is; else why not. MariaDB cuts
    /// a row over its `max_allowed_packet` to fit (ingest keeps such a line,
    /// marked in `extra.truncated`); SQLite stores every row whole. For
    /// `siemparse --restore`, which must store rows exactly.
    pub fn cut_on_store(&self, e: &crate::event::Event) -> Option<String> {
        match self {
            Database::Sqlite(_) => None,
            Database::Mysql(d) => d.cut_reason(e),
        }
    }

    /// Told by [`retry::Retry`] that a connection failed: with several
    /// MariaDB nodes in the URL, the next connection goes to the next node.
    pub async fn connection_failed(&self) {
        if let Database::Mysql(d) = self {
            d.nodes.failed(&d.pool);
        }
    }

    /// Closes the pool cleanly (flushes the SQLite WAL). A MariaDB pool is
    /// given [`lease::RELEASE_WAIT`] (a server gone away does not answer).
    pub async fn close(&self) {
        match self {
            Database::Sqlite(d) => d.pool.close().await,
            Database::Mysql(d) => {
                let _ = tokio::time::timeout(lease::RELEASE_WAIT, d.pool.close()).await;
            }
        }
    }
}

/// True if every migration of `migrator` is among `applied` (version,
/// checksum) with the same checksum: nothing to do, and no lock to take.
fn migrations_applied(migrator: &sqlx::migrate::Migrator, applied: &[(i64, Vec<u8>)]) -> bool {
    migrator.iter().all(|m| {
        applied
            .iter()
            .any(|(v, sum)| *v == m.version && sum.as_slice() == &*m.checksum)
    })
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

    /// Every table and index the migrations create is reserved against
    /// section names (`events::RESERVED_TABLES`).
    #[test]
    fn migration_names_are_reserved() {
        for backend in ["sqlite", "mysql"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(backend);
            for entry in std::fs::read_dir(dir).unwrap() {
                let sql = std::fs::read_to_string(entry.unwrap().path())
                    .unwrap()
                    .to_lowercase();
                let words: Vec<&str> = sql
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .collect();
                for (i, w) in words.iter().enumerate() {
                    let created = match (*w, words.get(i + 1)) {
                        ("table" | "index", Some(&"if")) => words.get(i + 4),
                        ("table" | "index", Some(n)) if i > 0 && words[i - 1] == "create" => {
                            Some(n)
                        }
                        _ => None,
                    };
                    if let Some(name) = created
                        && *name != "on"
                    {
                        assert!(
                            super::events::RESERVED_TABLES.contains(name),
                            "{backend}: {name} is created by a migration but not in RESERVED_TABLES"
                        );
                    }
                }
            }
        }
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
