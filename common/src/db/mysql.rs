//! MariaDB/MySQL backend: sqlx pool, multi-row INSERTs sized under the
//! placeholder and packet limits, connect retry for servers still starting.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder};

use super::{Checkpoint, redact, short};
use crate::Error;
use crate::event::{COLUMNS, Event};
use crate::ident::Ident;

/// Rows per INSERT statement (measured best: 500-1000; 65,535 placeholders max).
const ROWS_PER_STATEMENT: usize = 1000;
/// Bytes per INSERT statement, well under MariaDB's 16 MiB max_allowed_packet.
const BYTES_PER_STATEMENT: usize = 4 << 20;
/// Longest `message` stored on MariaDB. A line of up to 8 MiB (siemparse's
/// longest row) plus its message must fit one 16 MiB packet: `raw` is kept
/// whole and only `message` is cut (the contract allows that, never `raw`).
const MESSAGE_MAX_BYTES: usize = 4 << 20;
/// How long to keep retrying a refused connection (docker-compose start-up).
const CONNECT_RETRY: Duration = Duration::from_secs(20);

/// A migrated MariaDB/MySQL database.
#[derive(Debug, Clone)]
pub struct MysqlDb {
    pub pool: MySqlPool,
}

impl MysqlDb {
    /// Connects (retrying refused connections for a while) and migrates.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opts = MySqlConnectOptions::from_str(&url)
            .map_err(|e| Error::db("open", &redact(&url), e))?
            .charset("utf8mb4");
        let started = Instant::now();
        let pool = loop {
            match MySqlPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await
            {
                Ok(p) => break p,
                Err(sqlx::Error::Io(e))
                    if started.elapsed() < CONNECT_RETRY
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionReset
                        ) =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(Error::db("connect to", &redact(&url), e)),
            }
        };
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    pub(super) async fn ensure_event_table(&self, t: &Ident) -> Result<(), Error> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS `{t}` (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ts BIGINT NOT NULL,
  received BIGINT NOT NULL,
  host VARCHAR(255), process VARCHAR(255), pid BIGINT, facility VARCHAR(16), severity VARCHAR(16),
  user VARCHAR(255), source_host VARCHAR(255), source_port BIGINT, dest_host VARCHAR(255), dest_port BIGINT,
  protocol VARCHAR(255),
  message MEDIUMTEXT NOT NULL,
  raw LONGTEXT NOT NULL,
  parsed TINYINT NOT NULL,
  source TEXT NOT NULL,
  extra MEDIUMTEXT,
  KEY `{t}_ts` (ts),
  KEY `{t}_shost_ts` (source_host, ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        );
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&self.pool)
            .await
            .map_err(|e| Error::db("create table", t.as_str(), e))?;
        sqlx::query(sqlx::AssertSqlSafe(super::grep_bits::ddl(t)))
            .execute(&self.pool)
            .await
            .map_err(|e| Error::db("create search index of", t.as_str(), e))?;
        sqlx::query("INSERT IGNORE INTO event_tables (name, created) VALUES (?, ?)")
            .bind(t.as_str())
            .bind(crate::time::now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| Error::db("register table", t.as_str(), e))?;
        Ok(())
    }

    pub(super) async fn event_table_exists(&self, t: &Ident) -> Result<bool, Error> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(t.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| Error::db("look up table", t.as_str(), e))?;
        Ok(n > 0)
    }

    pub(super) async fn drop_event_table(&self, section: &str, t: &Ident) -> Result<(), Error> {
        // DDL commits implicitly in MariaDB: drop first, then forget state
        // (a search index mark left behind names a missing row: ignored).
        for suffix in ["", "$grep"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{t}{suffix}`"
            )))
            .execute(&self.pool)
            .await
            .map_err(|e| Error::db("drop table", t.as_str(), e))?;
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::db("begin", t.as_str(), e))?;
        sqlx::query("DELETE FROM event_tables WHERE name = ?")
            .bind(t.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::db("drop table", t.as_str(), e))?;
        sqlx::query("DELETE FROM follow_state WHERE section = ?")
            .bind(section)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::db("drop table", t.as_str(), e))?;
        sqlx::query("DELETE FROM grep_index WHERE tbl = ?")
            .bind(t.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::db("drop table", t.as_str(), e))?;
        tx.commit()
            .await
            .map_err(|e| Error::db("commit", t.as_str(), e))
    }

    pub(super) async fn count_rows(&self, t: &Ident) -> Result<i64, Error> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM `{t}`")))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::db("count", t.as_str(), e))
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) async fn event_writer(&self, t: &Ident) -> Result<MysqlWriter, Error> {
        let (last_id, indexed_upto): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE((SELECT MAX(id) FROM `{t}`), 0), \
             COALESCE((SELECT indexed_upto FROM grep_index WHERE tbl = ?), 0)"
        )))
        .bind(t.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| Error::db("open", t.as_str(), e))?;
        Ok(MysqlWriter {
            pool: self.pool.clone(),
            table: t.clone(),
            last_id,
            indexed_upto,
            index_paused_until: None,
        })
    }
}

/// Applies pending migrations. MariaDB commits DDL at once, so a process
/// killed inside a migration leaves it marked as partially applied (dirty);
/// our MySQL migrations are idempotent (`IF NOT EXISTS`), so a dirty
/// migration is forgotten and run again instead of needing a manual fix.
async fn migrate(pool: &MySqlPool) -> Result<(), Error> {
    let migrator = sqlx::migrate!("../migrations/mysql");
    match migrator.run(pool).await {
        Err(sqlx::migrate::MigrateError::Dirty(version)) => {
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ? AND success = FALSE")
                .bind(version)
                .execute(pool)
                .await
                .map_err(|e| Error::Migrate(e.to_string()))?;
            migrator.run(pool).await
        }
        other => other,
    }
    .map_err(|e| Error::Migrate(e.to_string()))
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

/// How long the idle indexer waits after meeting a gap in the ids (an
/// insert in flight usually commits within this).
const GAP_RETRY: Duration = Duration::from_secs(1);

/// The MariaDB ingest path.
pub struct MysqlWriter {
    pool: MySqlPool,
    table: Ident,
    /// Highest id this writer has seen (for the index backlog).
    last_id: i64,
    /// The search index's high-water mark, as last seen.
    indexed_upto: i64,
    /// The index stopped at a gap in the ids: no backlog until then.
    index_paused_until: Option<Instant>,
}

impl MysqlWriter {
    /// Inserts the rows (several statements if needed) and upserts the
    /// checkpoints in one transaction.
    pub async fn write(
        &mut self,
        events: &[Event],
        checkpoints: &[Checkpoint],
    ) -> Result<(), Error> {
        let table = self.table.as_str();
        let err = |e: sqlx::Error| Error::db("insert into", table, e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut rest = events;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len()
                && n < ROWS_PER_STATEMENT
                && (n == 0 || bytes < BYTES_PER_STATEMENT)
            {
                bytes += rest[n].approx_bytes();
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new(format!("INSERT INTO `{table}` ({}) ", COLUMNS.join(", ")));
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.ts)
                    .push_bind(e.received)
                    .push_bind(short(&e.host))
                    .push_bind(short(&e.process))
                    .push_bind(e.pid)
                    .push_bind(e.facility)
                    .push_bind(e.severity)
                    .push_bind(short(&e.user))
                    .push_bind(short(&e.source_host))
                    .push_bind(e.source_port)
                    .push_bind(short(&e.dest_host))
                    .push_bind(e.dest_port)
                    .push_bind(short(&e.protocol))
                    .push_bind(cut(&e.message, MESSAGE_MAX_BYTES))
                    .push_bind(e.raw.as_str())
                    .push_bind(e.parsed)
                    .push_bind(&*e.source)
                    .push_bind(e.extra.as_deref());
            });
            let done = qb.build().execute(&mut *tx).await.map_err(err)?;
            // The ids of one multi-row INSERT are consecutive from last_insert_id.
            let last = done.last_insert_id() + done.rows_affected().saturating_sub(1);
            self.last_id = self.last_id.max(i64::try_from(last).unwrap_or(i64::MAX));
        }
        for c in checkpoints {
            sqlx::query(
                "INSERT INTO follow_state (section, path, dev, inode, byte_offset, updated) \
                 VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE dev = VALUES(dev), \
                 inode = VALUES(inode), byte_offset = VALUES(byte_offset), updated = VALUES(updated)",
            )
            .bind(&c.section)
            .bind(&c.path)
            .bind(c.dev)
            .bind(c.inode)
            .bind(c.offset)
            .bind(crate::time::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
    /// Rows stored but not yet in the search index (as far as this writer
    /// knows); 0 for a while after the indexer met a gap in the ids.
    pub fn index_backlog(&self) -> u64 {
        if self.index_paused_until.is_some_and(|t| Instant::now() < t) {
            return 0;
        }
        u64::try_from(self.last_id - self.indexed_upto).unwrap_or(0)
    }

    /// True if the last index step stopped before a gap in the ids.
    pub fn index_at_gap(&self) -> bool {
        self.index_paused_until.is_some()
    }

    /// Adds the next (at most) `max_rows` rows to the search index, in a
    /// transaction of its own; returns how many (0: up to date, or stopped
    /// before a gap in the ids that may still be filled).
    pub async fn index_step(&mut self, max_rows: u64) -> Result<u64, Error> {
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let step = super::grep_bits::index_step(&self.pool, &self.table, max_rows).await?;
        self.indexed_upto = step.upto;
        self.last_id = self.last_id.max(step.upto);
        self.index_paused_until = step.at_gap.then(|| Instant::now() + GAP_RETRY);
        Ok(step.rows)
    }
}
