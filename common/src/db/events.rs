//! Event tables, one per config section: created on first use from one
//! template per backend (with a validated name) and registered in
//! `event_tables`; the resume points of `siemparse --follow`; and the
//! ingest writer, which stores a batch and the resume points it advances
//! in one transaction.

use super::sources::SourceMark;
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
/// mark, the follow offsets of the section, its ingest sources.
pub(crate) fn forget_table<'a>(backend: Backend, section: &'a str, t: &'a Ident) -> [Sql<'a>; 4] {
    let mut reg = Sql::with(backend, "DELETE FROM event_tables WHERE name = ");
    reg.bind(t.as_str());
    let mut mark = Sql::with(backend, "DELETE FROM grep_index WHERE tbl = ");
    mark.bind(t.as_str());
    let mut follow = Sql::with(backend, "DELETE FROM follow_state WHERE section = ");
    follow.bind(section);
    let mut sources = Sql::with(backend, "DELETE FROM ingest_sources WHERE tbl = ");
    sources.bind(t.as_str());
    [reg, mark, follow, sources]
}

/// Suffix of the `(ts)` index of an event table.
pub(crate) const INDEX_TS: &str = "_ts";
/// Suffix of the `(source_host, ts)` index of an event table.
pub(crate) const INDEX_SHOST_TS: &str = "_shost_ts";
/// Suffix of an event table's `--grep` search index (FTS5 on SQLite, with
/// its own `_data`, `_idx` and `_config` tables; the bitmap on MariaDB).
pub(crate) const GREP_SUFFIX: &str = "$grep";

/// Longest event table name: MariaDB allows 64 characters in a table or
/// index name, and the longest name made from a table's is its
/// `(source_host, ts)` index.
pub const MAX_TABLE_CHARS: usize = {
    let longest = if INDEX_SHOST_TS.len() > GREP_SUFFIX.len() {
        INDEX_SHOST_TS.len()
    } else {
        GREP_SUFFIX.len()
    };
    64 - longest
};

/// The names of siemstress's own tables and indexes (the migrations'),
/// which no section may use as its table, in any letter case: SQLite's
/// names are case-insensitive, and a section named `alerts` would have let
/// `--clear` drop every alert. SQLite's own `sqlite_*` names are reserved
/// too. Names with `$` (the search index tables) cannot be written in a
/// section at all. Kept in step with `migrations/` by a test.
pub const RESERVED_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "action_runs",
    "action_runs_alert",
    "action_runs_due",
    "alert_events",
    "alerts",
    "alerts_rule_ts",
    "alerts_ts",
    "event_tables",
    "follow_lease",
    "follow_state",
    "grep_index",
    "ingest_sources",
    "snapshot_rows",
    "snapshot_runs",
    "snapshot_runs_name_host",
    "snapshot_runs_taken",
    "trigger_lease",
    "trigger_progress",
    "trigger_windows",
];

/// Refuses a name that cannot be an event table: one of
/// [`RESERVED_TABLES`] (any case), `sqlite_*`, or longer than
/// [`MAX_TABLE_CHARS`]. `what` names its origin (the section).
pub fn check_event_table(t: &Ident, what: &str) -> Result<(), Error> {
    let lower = t.as_str().to_ascii_lowercase();
    let reason = if RESERVED_TABLES.contains(&lower.as_str()) || lower.starts_with("sqlite_") {
        "it is the name of one of siemstress's own tables or indexes".to_owned()
    } else if t.as_str().len() > MAX_TABLE_CHARS {
        format!(
            "an event table name has at most {MAX_TABLE_CHARS} characters (its index \
             {t}{INDEX_SHOST_TS} must fit MariaDB's 64)"
        )
    } else {
        return Ok(());
    };
    Err(Error::ReservedName {
        what: what.to_owned(),
        name: t.as_str().to_owned(),
        reason,
    })
}

/// The statement that registers event table `t` in `event_tables`.
pub(crate) fn register_table(backend: Backend, t: &Ident) -> Sql<'_> {
    let mut q = Sql::with(
        backend,
        match backend {
            Backend::Sqlite => "INSERT OR IGNORE",
            Backend::Mysql => "INSERT IGNORE",
        },
    );
    q.push(" INTO event_tables (name, created) VALUES (")
        .bind(t.as_str())
        .push(", ")
        .bind(crate::time::now_ms())
        .push(")");
    q
}

impl Database {
    /// Creates the event table `t` (with its indexes and search index) if
    /// it is missing, and registers it. Creation is serialized between
    /// processes (SQLite: an immediate transaction; MariaDB: a named lock)
    /// and re-checked under that lock, so tools and hosts that start
    /// together on a new section do not fail on each other's DDL. A table
    /// that is complete and registered takes no lock and runs no DDL (an
    /// account without CREATE privileges writes into it).
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
        check_event_table(t, "an event table")?;
        if let Some(existing) = self.case_clash(t).await? {
            return Err(Error::TableCaseClash {
                table: t.to_string(),
                existing,
            });
        }
        if self.event_table_registered(t).await? && self.event_table_complete(t).await? {
            return Ok(());
        }
        match self {
            Database::Sqlite(d) => d.create_event_table(t).await,
            Database::Mysql(d) => d.create_event_table(t).await,
        }
    }

    /// Grants INSERT on event table `t` to the collector role of a MariaDB
    /// database (`<database>_collector`, see `contrib/mariadb/roles.sql`);
    /// returns the role (`None` on SQLite, which has no accounts).
    pub async fn grant_collector(&self, t: &Ident) -> Result<Option<String>, Error> {
        match self {
            Database::Sqlite(_) => Ok(None),
            Database::Mysql(d) => d.grant_collector(t).await.map(Some),
        }
    }

    /// True if `t` is registered in `event_tables` (made by siemparse as an
    /// event table, not one of the database's own).
    pub async fn event_table_registered(&self, t: &Ident) -> Result<bool, Error> {
        let mut q = self.sql("SELECT COUNT(*) AS n FROM event_tables WHERE name = ");
        q.bind(t.as_str());
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("look up table", t.as_str(), e))?;
        Ok(c.n > 0)
    }

    /// True if the event table and its search index both exist.
    async fn event_table_complete(&self, t: &Ident) -> Result<bool, Error> {
        let grep = super::grep_index::fts_table(t);
        let mut q = self.sql(match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ("
            }
            Backend::Mysql => {
                "SELECT COUNT(*) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name IN ("
            }
        });
        q.bind(t.as_str()).push(", ").bind(grep.as_str()).push(")");
        let c: Count = self
            .fetch_one(&q)
            .await
            .map_err(|e| Error::db("look up table", t.as_str(), e))?;
        Ok(c.n == 2)
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

    /// Drops an event table and the follow offsets of its section; only a
    /// table registered in `event_tables` (one siemparse made), never one
    /// of the database's own or another program's.
    pub async fn drop_event_table(&self, section: &str, t: &Ident) -> Result<(), Error> {
        check_event_table(t, &format!("the table of section {section}"))?;
        if !self.event_table_registered(t).await? {
            return Err(Error::db(
                "drop table",
                t.as_str(),
                "it is not an event table of siemstress (not registered in event_tables); \
                 nothing deleted",
            ));
        }
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
    /// Fences every checkpoint written from now on with its follow lease
    /// (`siemparse --follow`): a batch whose file's lease is no longer
    /// `fence.holder`'s is rolled back with [`Error::LostFollowLease`], and
    /// each write renews the leases of its files.
    pub fn fence(&mut self, fence: super::lease::Fence) {
        match self {
            EventWriter::Sqlite(w) => w.fence = Some(fence),
            EventWriter::Mysql(w) => w.fence = Some(fence),
        }
    }

    /// Inserts `events`, upserts `checkpoints` and records what each source
    /// stored (`sources`, see [`super::sources`]) in one transaction.
    pub async fn write(
        &mut self,
        events: &[Event],
        checkpoints: &[Checkpoint],
        sources: &[SourceMark],
    ) -> Result<(), Error> {
        match self {
            EventWriter::Sqlite(w) => w.write(events, checkpoints, sources),
            EventWriter::Mysql(w) => w.write(events, checkpoints, sources).await,
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
