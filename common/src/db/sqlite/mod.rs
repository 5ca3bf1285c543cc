//! What only SQLite does: the sqlx pool for everything but the hot paths,
//! and rusqlite connections with statements at the C API ([`stmt`]) for
//! them: the ingest writer (~1.5x faster than multi-row INSERT through
//! sqlx; see the storage notes), in-place reads of search results, the
//! FTS5 search index steps, siemtrigger's scans ([`scan`]) and snapshot
//! rows ([`snapshots`]).

pub(crate) mod insert;
pub(crate) mod scan;
pub(crate) mod snapshots;
pub(crate) mod stmt;

use std::path::{Path, PathBuf};

use super::events::{Checkpoint, INDEX_SHOST_TS, INDEX_TS};
use super::options;
use super::search::{Deliver, EventRef, Positions, RowValues};
use super::sources::SourceMark;
use super::sql::Sql;
use crate::Error;
use crate::event::Event;
use crate::ident::Ident;
use stmt::{LockedHandle, Stmt};

/// A migrated SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pub(crate) pool: sqlx::SqlitePool,
    path: PathBuf,
}

impl SqliteDb {
    /// Opens (creating if needed) the file named by `url` and migrates it.
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        let (pool, path) = options::sqlite_pool(url).await?;
        migrate(&pool).await?;
        Ok(Self { pool, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// DDL of event table `t` and its indexes (idempotent).
    pub(crate) fn event_table_ddl(t: &Ident) -> String {
        format!(
            r#"CREATE TABLE IF NOT EXISTS "{t}" (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  received INTEGER NOT NULL,
  host TEXT, process TEXT, pid INTEGER, facility TEXT, severity TEXT,
  user TEXT, source_host TEXT, source_port INTEGER, dest_host TEXT, dest_port INTEGER,
  protocol TEXT,
  message TEXT NOT NULL,
  raw TEXT NOT NULL,
  parsed INTEGER NOT NULL,
  source TEXT NOT NULL,
  extra TEXT
);
CREATE INDEX IF NOT EXISTS "{t}{INDEX_TS}" ON "{t}" (ts);
CREATE INDEX IF NOT EXISTS "{t}{INDEX_SHOST_TS}" ON "{t}" (source_host, ts);"#
        )
    }

    /// Creates event table `t`, its search index and its registration in
    /// one immediate transaction (one process at a time), after checking
    /// that none of its names is taken by another table's object: SQLite
    /// keeps tables and indexes in one case-insensitive namespace, so a
    /// section `auth_ts` would meet the index `auth_ts` of table `auth`.
    pub(crate) async fn create_event_table(&self, t: &Ident) -> Result<(), Error> {
        use sqlx::Connection;
        let e = |e| Error::db("create table", t.as_str(), e);
        let mut conn = self.pool.acquire().await.map_err(e)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(e)?;
        let (ts, shost) = (format!("{t}{INDEX_TS}"), format!("{t}{INDEX_SHOST_TS}"));
        let taken: Option<(String, String, String)> = sqlx::query_as(
            "SELECT type, name, tbl_name FROM sqlite_master \
             WHERE (lower(name) IN (lower(?1), lower(?2)) AND lower(tbl_name) <> lower(?3)) \
             OR (lower(name) = lower(?3) AND type <> 'table') LIMIT 1",
        )
        .bind(&ts)
        .bind(&shost)
        .bind(t.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        if let Some((kind, name, table)) = taken {
            return Err(Error::ReservedName {
                what: "an event table".to_owned(),
                name: t.as_str().to_owned(),
                reason: format!(
                    "its names collide with {kind} {name} of table {table} (SQLite keeps \
                     tables and indexes in one namespace); choose another table name"
                ),
            });
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(Self::event_table_ddl(t)))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        sqlx::query(sqlx::AssertSqlSafe(super::grep_index::sqlite_ddl(t)))
            .execute(&mut *tx)
            .await
            .map_err(|x| Error::db("create search index of", t.as_str(), x))?;
        let reg = super::events::register_table(super::Backend::Sqlite, t);
        super::sql::query::<sqlx::Sqlite>(&reg)
            .map_err(e)?
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)
    }

    /// Drops an event table and everything kept about it, in one transaction.
    pub(crate) async fn drop_event_table(&self, section: &str, t: &Ident) -> Result<(), Error> {
        let e = |e| Error::db("drop table", t.as_str(), e);
        let mut tx = self.pool.begin().await.map_err(e)?;
        for suffix in ["", super::events::GREP_SUFFIX] {
            let ddl = format!("DROP TABLE IF EXISTS \"{t}{suffix}\"");
            sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *tx)
                .await
                .map_err(e)?;
        }
        for q in super::events::forget_table(super::Backend::Sqlite, section, t) {
            super::sql::query::<sqlx::Sqlite>(&q)
                .map_err(e)?
                .execute(&mut *tx)
                .await
                .map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }

    pub(crate) fn event_writer(&self, t: &Ident) -> Result<SqliteWriter, Error> {
        let conn = options::open_sqlite(&self.path)?;
        // A 64 MiB page cache keeps index pages of a big batch in memory, and
        // checkpointing every 64 MiB of WAL (not SQLite's 4 MiB) writes each
        // page once per many batches: -20% CPU per row in the ingest profile.
        conn.pragma_update(None, "cache_size", -65536)
            .and_then(|_| conn.pragma_update(None, "wal_autocheckpoint", 16384))
            .map_err(|e| Error::db("open", &self.path.display().to_string(), e))?;
        let err = |e| Error::db("open", t.as_str(), e);
        let last_id: i64 = conn
            .query_row(
                &format!(r#"SELECT coalesce(max(id), 0) FROM "{t}""#),
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        let indexed_upto: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT indexed_upto FROM grep_index WHERE tbl = ?), 0)",
                [t.as_str()],
                |r| r.get(0),
            )
            .map_err(err)?;
        Ok(SqliteWriter {
            conn,
            table: t.clone(),
            last_id,
            indexed_upto,
            fence: None,
            host: crate::holder::hostname(),
        })
    }
}

/// Applies pending migrations, one process at a time. sqlx takes no lock
/// on SQLite, so two tools started together on a new file both applied
/// migration 1 ("table alerts already exists"). Here the migrator runs
/// inside a `BEGIN IMMEDIATE` transaction (the database's one write lock,
/// waited for up to the busy timeout) and re-reads what is applied under
/// it; each migration becomes a savepoint of that transaction. An
/// up-to-date database takes no write lock (a read-only file still opens).
async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), Error> {
    use sqlx::Connection;
    let migrator = sqlx::migrate!("../migrations/sqlite");
    let err = |e: sqlx::Error| Error::Migrate(e.to_string());
    let mut conn = pool.acquire().await.map_err(err)?;
    let applied: Result<Vec<(i64, Vec<u8>)>, _> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await;
    if applied.is_ok_and(|a| super::migrations_applied(&migrator, &a)) {
        return Ok(());
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    migrator
        .run(&mut *tx)
        .await
        .map_err(|e| Error::Migrate(e.to_string()))?;
    tx.commit().await.map_err(err)
}

/// The SQLite ingest connection.
pub struct SqliteWriter {
    conn: rusqlite::Connection,
    table: Ident,
    /// Highest id this writer has seen (for the index backlog).
    last_id: i64,
    /// The search index's high-water mark, as last seen.
    indexed_upto: i64,
    /// The follow lease each checkpoint is fenced with.
    pub(crate) fence: Option<super::lease::Fence>,
    /// This collector's host name (of its ingest sources).
    host: String,
}

impl SqliteWriter {
    /// Inserts the rows and upserts the checkpoints in one transaction
    /// (fenced by their follow leases first, see [`EventWriter::fence`]).
    ///
    /// [`EventWriter::fence`]: super::EventWriter::fence
    pub fn write(
        &mut self,
        events: &[Event],
        checkpoints: &[Checkpoint],
        sources: &[SourceMark],
    ) -> Result<(), Error> {
        let table = self.table.as_str();
        let err = |e: rusqlite::Error| Error::db("insert into", table, e);
        let tx = self.conn.transaction().map_err(err)?;
        if let Some(f) = &self.fence {
            for c in checkpoints {
                let q = f.of(super::Backend::Sqlite, &c.section, &c.path);
                let n = tx
                    .execute(q.text(), rusqlite::params_from_iter(q.binds()))
                    .map_err(err)?;
                if n != 1 {
                    return Err(Error::LostFollowLease {
                        path: c.path.clone(),
                    });
                }
            }
        }
        {
            let fail = |m| Error::db("insert into", table, m);
            let mut insert = insert::EventInsert::prepare(&*tx, table).map_err(fail)?;
            for e in events {
                insert.insert(e).map_err(fail)?;
            }
            if !events.is_empty() {
                self.last_id = self.last_id.max(tx.last_insert_rowid());
            }
            let mut cp_stmt = tx
                .prepare_cached(
                    "INSERT INTO follow_state (section, path, dev, inode, byte_offset, updated) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (section, path) DO UPDATE SET \
                     dev = excluded.dev, inode = excluded.inode, byte_offset = excluded.byte_offset, \
                     updated = excluded.updated",
                )
                .map_err(err)?;
            for c in checkpoints {
                cp_stmt
                    .execute(rusqlite::params![
                        c.section,
                        c.path,
                        c.dev,
                        c.inode,
                        c.offset,
                        crate::time::now_ms()
                    ])
                    .map_err(err)?;
            }
            for m in sources {
                let q = super::sources::upsert(super::Backend::Sqlite, &self.host, table, m);
                tx.execute(q.text(), rusqlite::params_from_iter(q.binds()))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Rows stored but not yet in the `--grep` search index (as far as
    /// this writer knows: another indexer may have caught up meanwhile).
    pub fn index_backlog(&self) -> u64 {
        u64::try_from(self.last_id - self.indexed_upto).unwrap_or(0)
    }

    /// Adds the next (at most) `max_rows` rows to the search index, in a
    /// transaction of its own; returns how many (0: up to date).
    pub fn index_step(&mut self, max_rows: u64) -> Result<u64, Error> {
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let (upto, n) = super::grep_index::index_step(&mut self.conn, &self.table, max_rows)?;
        self.indexed_upto = upto;
        self.last_id = self.last_id.max(upto);
        Ok(n)
    }
}

impl<'b> RowValues<'b> for stmt::Row<'b> {
    fn int(&self, i: usize) -> Result<Option<i64>, String> {
        Ok(self.opt_int(c(i)))
    }

    fn text(&self, i: usize) -> Result<Option<&'b str>, String> {
        self.opt_text(c(i))
    }
}

fn c(i: usize) -> std::ffi::c_int {
    std::ffi::c_int::try_from(i).unwrap_or(std::ffi::c_int::MAX)
}

/// The rows of `q` (a search), read at the C API on one of the pool's
/// connections, in place, each passed to `deliver` until it says stop.
pub(crate) async fn search(
    pool: &sqlx::SqlitePool,
    q: &Sql<'_>,
    what: &str,
    deliver: Deliver<'_>,
) -> Result<(), Error> {
    let sx = |e: sqlx::Error| Error::db("search", what, e);
    let err = |e: String| Error::db("search", what, e);
    // Lets the connection of the statements before (returned to the pool by
    // a task of its own) become idle, so that it is reused, not a new one opened.
    tokio::task::yield_now().await;
    let mut conn = pool.acquire().await.map_err(sx)?;
    let mut locked = conn.lock_handle().await.map_err(sx)?;
    let handle = LockedHandle::new(&mut locked);
    let mut stmt = Stmt::prepare(&handle, q.text()).map_err(err)?;
    let mut rows = stmt.bind();
    rows.values(q.binds());
    let at = Positions::of(&rows.column_names()).map_err(err)?;
    while let Some(r) = rows.next().map_err(err)? {
        let row = EventRef::read(&r, &at).map_err(err)?;
        if !deliver(&row)? {
            break;
        }
    }
    Ok(())
}

impl rusqlite::types::ToSql for super::sql::Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            super::sql::Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            super::sql::Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            super::sql::Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}
