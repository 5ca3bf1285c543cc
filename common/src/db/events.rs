//! Event tables, one per config section: created on first use from one
//! template per backend (with a validated name) and registered in
//! `event_tables`; the resume points of `siemparse --follow`; and the
//! ingest writer, which stores a batch and the resume points it advances
//! in one transaction.

use super::sql::Sql;
use super::{Backend, Database};
use crate::Error;
use crate::event::Event;
use crate::ident::Ident;

/// Resume point of a followed file, committed with the rows it covers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    pub section: String,
    pub path: String,
    pub dev: i64,
    pub inode: i64,
    /// Byte offset just after the last stored line.
    #[sqlx(rename = "byte_offset")]
    pub offset: i64,
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

#[derive(sqlx::FromRow)]
struct Name {
    name: String,
}

/// The statements that forget what is kept about event table `t` of
/// `section` once it is dropped: its registration, the search index's
/// mark, the follow offsets of the section.
pub(crate) fn forget_table<'a>(backend: Backend, section: &'a str, t: &'a Ident) -> [Sql<'a>; 3] {
    let mut reg = Sql::with(backend, "DELETE FROM event_tables WHERE name = ");
    reg.bind(t.as_str());
    let mut mark = Sql::with(backend, "DELETE FROM grep_index WHERE tbl = ");
    mark.bind(t.as_str());
    let mut follow = Sql::with(backend, "DELETE FROM follow_state WHERE section = ");
    follow.bind(section);
    [reg, mark, follow]
}

impl Database {
    /// Creates the event table `t` (with its indexes and search index) if
    /// it is missing, and registers it.
    ///
    /// Indexes: `(ts)` for every time window, `(source_host, ts)` for "one
    /// address over days". No `(process, ts)`: processes are few and busy, so
    /// a time window filtered by process reads about as many rows through
    /// `(ts)`, and each extra index costs ~6,000 instructions per ingested
    /// row (a quarter of the SQLite write path, measured with callgrind).
    ///
    /// Refused when a table whose name differs only in case exists (see
    /// [`Database::case_clash`]).
    pub async fn ensure_event_table(&self, t: &Ident) -> Result<(), Error> {
        if let Some(existing) = self.case_clash(t).await? {
            return Err(Error::TableCaseClash {
                table: t.to_string(),
                existing,
            });
        }
        match self {
            Database::Sqlite(d) => d.ensure_event_table(t).await?,
            Database::Mysql(d) => d.ensure_event_table(t).await?,
        }
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => "INSERT OR IGNORE",
            Backend::Mysql => "INSERT IGNORE",
        });
        q.push(" INTO event_tables (name, created) VALUES (")
            .bind(t.as_str())
            .push(", ")
            .bind(crate::time::now_ms())
            .push(")");
        self.execute(&q)
            .await
            .map_err(|e| Error::db("register table", t.as_str(), e))?;
        Ok(())
    }

    /// The name of a table that differs from `t` only in (ASCII) case, if
    /// any. SQLite takes such names for one table and MariaDB (on Linux) for
    /// two, so on both backends a section may use only the spelling that exists.
    pub async fn case_clash(&self, t: &Ident) -> Result<Option<String>, Error> {
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND lower(name) = lower("
            }
            Backend::Mysql => {
                "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND lower(table_name) = lower("
            }
        });
        q.bind(t.as_str()).push(")");
        let names: Vec<Name> = self
            .fetch_all(&q)
            .await
            .map_err(|e| Error::db("look up table", t.as_str(), e))?;
        Ok(names.into_iter().map(|n| n.name).find(|n| n != t.as_str()))
    }

    /// True if the event table exists.
    pub async fn event_table_exists(&self, t: &Ident) -> Result<bool, Error> {
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = "
            }
            Backend::Mysql => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = "
            }
        });
        q.bind(t.as_str());
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("look up table", t.as_str(), e))?;
        Ok(c.n > 0)
    }

    /// Drops an event table and the follow offsets of its section.
    pub async fn drop_event_table(&self, section: &str, t: &Ident) -> Result<(), Error> {
        match self {
            Database::Sqlite(d) => d.drop_event_table(section, t).await,
            Database::Mysql(d) => d.drop_event_table(section, t).await,
        }
    }

    /// The stored resume point of `path` in `section`.
    pub async fn checkpoint(&self, section: &str, path: &str) -> Result<Option<Checkpoint>, Error> {
        let mut q = self.sql("SELECT section, path, dev, inode, byte_offset FROM follow_state");
        q.and().push("section = ").bind(section);
        q.and().push("path = ").bind(path);
        self.fetch_optional(&q)
            .await
            .map_err(|e| Error::db("read offset", path, e))
    }

    /// A writer for the ingest hot path into `table`.
    pub async fn event_writer(&self, table: &Ident) -> Result<EventWriter, Error> {
        Ok(match self {
            Database::Sqlite(db) => EventWriter::Sqlite(db.event_writer(table)?),
            Database::Mysql(db) => EventWriter::Mysql(db.event_writer(table).await?),
        })
    }

    /// Number of rows in an event table.
    pub async fn count_rows(&self, t: &Ident) -> Result<i64, Error> {
        let mut q = self.sql("SELECT COUNT(*) AS n FROM ");
        q.table(t, "");
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("count", t.as_str(), e))?;
        Ok(c.n)
    }
}

/// Writes batches of events, and the checkpoints they advance, atomically.
pub enum EventWriter {
    Sqlite(super::sqlite::SqliteWriter),
    Mysql(super::mysql::MysqlWriter),
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
    /// [`grep_bits`](super::mysql::grep_bits)).
    pub async fn index_step(&mut self, max_rows: u64) -> Result<u64, Error> {
        match self {
            EventWriter::Sqlite(w) => w.index_step(max_rows),
            EventWriter::Mysql(w) => w.index_step(max_rows).await,
        }
    }
}
