//! What only MariaDB/MySQL does: multi-row INSERTs sized under the
//! placeholder and packet limits, DDL that commits at once (idempotent
//! migrations re-run when left dirty), the `--grep` bitmap
//! ([`grep_bits`]), siemtrigger's scans ([`scan`]) and snapshot rows
//! under a named lock ([`snapshots`]).

pub mod grep_bits;
pub(crate) mod scan;
pub(crate) mod snapshots;

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{Column, MySql, Row};

use super::events::{Checkpoint, INDEX_SHOST_TS, INDEX_TS};
use super::search::{Deliver, EventRef, Positions, RowValues, utf8};
use super::sources::SourceMark;
use super::sql::{Sql, Value, query};
use super::{Backend, options, short};
use crate::Error;
use crate::diag;
use crate::event::{COLUMNS, Event};
use crate::ident::Ident;

/// Rows per INSERT statement (measured best: 500-1000; 65,535 placeholders max).
const ROWS_PER_STATEMENT: usize = 1000;
/// Bytes per INSERT statement, well under MariaDB's 16 MiB max_allowed_packet
/// (and at most the packet's row budget, see [`PacketLimit`]).
const BYTES_PER_STATEMENT: usize = 4 << 20;
/// Longest `message` stored on MariaDB (it repeats most of `raw`).
const MESSAGE_MAX_BYTES: usize = 4 << 20;
/// Bytes of a row's packet kept for everything but `raw`, `message` and
/// `extra`: the short columns (255 characters each), `source`, the
/// statement's text and the protocol's framing.
const ROW_OVERHEAD: usize = 64 << 10;
/// Smallest `max_allowed_packet` a row is fitted to (MariaDB's minimum is 1 KiB;
/// below this a row could not even hold its short columns).
const MIN_PACKET: usize = 256 << 10;

/// A migrated MariaDB/MySQL database.
#[derive(Debug, Clone)]
pub struct MysqlDb {
    pub pool: MySqlPool,
    /// The nodes of the URL, and which one connections go to.
    pub nodes: std::sync::Arc<options::Nodes>,
    /// The server's `max_allowed_packet`, read at connect time.
    packet: PacketLimit,
}

impl MysqlDb {
    /// Connects (a refused connection is an error at once), migrates and
    /// reads the server's `max_allowed_packet`.
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        use sqlx::Connection;
        let (pool, mut first, nodes) = options::mysql_pool(url).await?;
        migrate(&mut first).await?;
        let (packet,): (u64,) = sqlx::query_as("SELECT @@max_allowed_packet")
            .fetch_one(&mut first)
            .await
            .map_err(|e| Error::db("read", "@@max_allowed_packet", e))?;
        let _ = first.close().await;
        Ok(Self {
            pool,
            nodes: std::sync::Arc::new(nodes),
            packet: PacketLimit::new(usize::try_from(packet).unwrap_or(usize::MAX)),
        })
    }

    /// Creates event table `t`, its search index and its registration
    /// under the named lock [`DDL_LOCK`], re-checked under it.
    pub(crate) async fn create_event_table(&self, t: &Ident) -> Result<(), Error> {
        let e = |e| Error::db("create table", t.as_str(), e);
        let mut conn = self.pool.acquire().await.map_err(e)?;
        named_lock(&mut conn, DDL_LOCK, "create table").await?;
        let done = self.create_event_table_locked(&mut conn, t).await;
        release_lock(&mut conn, DDL_LOCK).await;
        done
    }

    async fn create_event_table_locked(
        &self,
        conn: &mut sqlx::MySqlConnection,
        t: &Ident,
    ) -> Result<(), Error> {
        let e = |e| Error::db("create table", t.as_str(), e);
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
  KEY `{t}{INDEX_TS}` (ts),
  KEY `{t}{INDEX_SHOST_TS}` (source_host, ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        );
        for ddl in [ddl, grep_bits::ddl(t)] {
            match sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {}
                // A collector account (INSERT only): the admin made the
                // table, and its search index is the admin's business.
                Err(x) if denied(&x) && self.table_visible(&mut *conn, t).await => return Ok(()),
                Err(x) if denied(&x) => {
                    return Err(Error::db(
                        "create table",
                        t.as_str(),
                        format!(
                            "{x}; this account may not create tables: run `siemparse \
                             --create-section SECTION` as the admin account first \
                             (contrib/mariadb/roles.sql)"
                        ),
                    ));
                }
                Err(x) => return Err(e(x)),
            }
        }
        let reg = super::events::register_table(Backend::Mysql, t);
        query::<MySql>(&reg)
            .map_err(e)?
            .execute(&mut *conn)
            .await
            .map_err(e)?;
        Ok(())
    }

    pub(crate) async fn drop_event_table(&self, section: &str, t: &Ident) -> Result<(), Error> {
        let e = |e| Error::db("drop table", t.as_str(), e);
        // DDL commits implicitly in MariaDB: drop first, then forget state
        // (a search index mark left behind names a missing row: ignored).
        for suffix in ["", super::events::GREP_SUFFIX] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{t}{suffix}`"
            )))
            .execute(&self.pool)
            .await
            .map_err(e)?;
        }
        let mut tx = self.pool.begin().await.map_err(e)?;
        for q in super::events::forget_table(Backend::Mysql, section, t) {
            query::<MySql>(&q)
                .map_err(e)?
                .execute(&mut *tx)
                .await
                .map_err(e)?;
        }
        tx.commit().await.map_err(e)
    }

    /// `None` if `e` is stored as it is; else why it would be cut to fit
    /// the server's `max_allowed_packet`.
    pub(crate) fn cut_reason(&self, e: &Event) -> Option<String> {
        self.packet.cut_reason(e)
    }

    pub(crate) async fn event_writer(&self, t: &Ident) -> Result<MysqlWriter, Error> {
        let marks: Result<(i64, i64), _> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE((SELECT MAX(id) FROM `{t}`), 0), \
             COALESCE((SELECT indexed_upto FROM grep_index WHERE tbl = ?), 0)"
        )))
        .bind(t.as_str())
        .fetch_one(&self.pool)
        .await;
        // A collector account may insert rows but not read them: it leaves
        // the search index to the admin account (`siemparse --index`).
        let (indexing, (last_id, indexed_upto)) = match marks {
            Ok(m) => (true, m),
            Err(e) if denied(&e) => (false, (0, 0)),
            Err(e) => return Err(Error::db("open", t.as_str(), e)),
        };
        Ok(MysqlWriter {
            pool: self.pool.clone(),
            packet: self.packet,
            table: t.clone(),
            last_id,
            indexed_upto,
            index_paused_until: None,
            fence: None,
            indexing,
            host: crate::holder::hostname(),
            uncertain: None,
        })
    }

    /// Grants INSERT on event table `t` to the collector role of this
    /// database, `<database>_collector` (`contrib/mariadb/roles.sql`);
    /// returns the role.
    pub(crate) async fn grant_collector(&self, t: &Ident) -> Result<String, Error> {
        let e = |x| Error::db("grant INSERT on", t.as_str(), x);
        let (db,): (Option<String>,) = sqlx::query_as("SELECT DATABASE()")
            .fetch_one(&self.pool)
            .await
            .map_err(e)?;
        let db = db.ok_or_else(|| e(sqlx::Error::Protocol("no database selected".into())))?;
        let role = format!("{db}_collector");
        let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
        let grant = format!(
            "GRANT INSERT ON {}.{} TO {}",
            quote(&db),
            quote(t.as_str()),
            quote(&role)
        );
        sqlx::query(sqlx::AssertSqlSafe(grant))
            .execute(&self.pool)
            .await
            .map_err(|x| {
                Error::db(
                    &format!("grant INSERT on {t} to role {role}"),
                    "(contrib/mariadb/roles.sql creates the roles)",
                    x,
                )
            })?;
        Ok(role)
    }
}

impl MysqlDb {
    /// True if table `t` exists and this account has a privilege on it.
    async fn table_visible(&self, conn: &mut sqlx::MySqlConnection, t: &Ident) -> bool {
        sqlx::query_as::<_, (i64,)>(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(t.as_str())
        .fetch_one(conn)
        .await
        .is_ok_and(|(n,)| n > 0)
    }
}

/// True if `e` is MariaDB refusing a statement for lack of a privilege
/// (on a table, column, database, or globally).
pub(crate) fn denied(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|m| matches!(m.number(), 1044 | 1142 | 1143 | 1227))
}

/// Applies pending migrations, one process at a time: under the named lock
/// [`MIGRATE_LOCK`] of this database (sqlx's own lock, `GET_LOCK(name, -1)`,
/// returns NULL at once on MariaDB: three tools started together on a new
/// database failed with a duplicate key in `_sqlx_migrations`). What is
/// applied is read again under the lock. An up-to-date database takes no
/// lock and runs no DDL, so accounts without CREATE privileges connect.
///
/// MariaDB commits DDL at once, so a process killed inside a migration
/// leaves it marked as partially applied (dirty); our MySQL migrations are
/// idempotent (`IF NOT EXISTS`), so a dirty migration (only ever seen under
/// the lock, so its process is gone) is forgotten and run again instead of
/// needing a manual fix.
async fn migrate(conn: &mut sqlx::MySqlConnection) -> Result<(), Error> {
    let mut migrator = sqlx::migrate!("../migrations/mysql");
    migrator.set_locking(false);
    let applied: Result<Vec<(i64, Vec<u8>)>, _> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await;
    if applied.is_ok_and(|a| super::migrations_applied(&migrator, &a)) {
        return Ok(());
    }
    named_lock(&mut *conn, MIGRATE_LOCK, "migrate").await?;
    let done = migrate_locked(&migrator, &mut *conn).await;
    release_lock(&mut *conn, MIGRATE_LOCK).await;
    done
}

/// Named lock (per database) that serializes migrations.
const MIGRATE_LOCK: &str = "migrate";
/// Named lock (per database) that serializes event-table creation.
pub(crate) const DDL_LOCK: &str = "ddl";
/// How long a process waits for another's migration or table creation.
const LOCK_WAIT_SECS: i64 = 300;

/// Takes the server-wide named lock `siemstress:<what>:<sha1 of the
/// database name>` (64 characters at most, whatever the database's name),
/// waiting up to [`LOCK_WAIT_SECS`].
pub(crate) async fn named_lock(
    conn: &mut sqlx::MySqlConnection,
    what: &'static str,
    doing: &str,
) -> Result<(), Error> {
    let got: (Option<i64>,) =
        sqlx::query_as("SELECT GET_LOCK(CONCAT('siemstress:', ?, ':', SHA1(DATABASE())), ?)")
            .bind(what)
            .bind(LOCK_WAIT_SECS)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::db(doing, "(named lock)", e))?;
    match got.0 {
        Some(1) => Ok(()),
        _ => Err(Error::db(
            doing,
            "(named lock)",
            format!("another process held the lock for {LOCK_WAIT_SECS} s"),
        )),
    }
}

/// Releases a lock of [`named_lock`] (closing the connection would too).
pub(crate) async fn release_lock(conn: &mut sqlx::MySqlConnection, what: &'static str) {
    let _ = sqlx::query("DO RELEASE_LOCK(CONCAT('siemstress:', ?, ':', SHA1(DATABASE())))")
        .bind(what)
        .execute(&mut *conn)
        .await;
}

async fn migrate_locked(
    migrator: &sqlx::migrate::Migrator,
    conn: &mut sqlx::MySqlConnection,
) -> Result<(), Error> {
    match migrator.run(&mut *conn).await {
        Err(sqlx::migrate::MigrateError::Dirty(version)) => {
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ? AND success = FALSE")
                .bind(version)
                .execute(&mut *conn)
                .await
                .map_err(|e| Error::Migrate(e.to_string()))?;
            migrator.run(&mut *conn).await
        }
        other => other,
    }
    .map_err(|e| Error::Migrate(e.to_string()))
}

/// A MariaDB row, read by position (from [`Positions`]): integers of any
/// width, texts as bytes with our own UTF-8 check, both unchecked against
/// the column types (they are the event table's).
struct EventRow<'r>(&'r MySqlRow);

impl<'r> RowValues<'r> for EventRow<'r> {
    fn int(&self, i: usize) -> Result<Option<i64>, String> {
        self.0
            .try_get_unchecked::<Option<i64>, _>(i)
            .map_err(|e| e.to_string())
    }

    fn text(&self, i: usize) -> Result<Option<&'r str>, String> {
        match self
            .0
            .try_get_unchecked::<Option<&[u8]>, _>(i)
            .map_err(|e| e.to_string())?
        {
            None => Ok(None),
            Some(b) => utf8(b)
                .map(Some)
                .map_err(|e| format!("column {}: {e}", self.0.columns()[i].name())),
        }
    }
}

/// Every row of `q` (a `SELECT *` of event table `table`), owned, for the
/// archive of a prune.
pub(crate) async fn whole_rows(
    pool: &MySqlPool,
    q: &Sql<'_>,
    table: &str,
) -> Result<Vec<crate::archive::ArchivedRow>, Error> {
    let e = |e: String| Error::db("archive", table, e);
    let rows = query::<MySql>(q)
        .map_err(|x| Error::db("archive", table, x))?
        .fetch_all(pool)
        .await
        .map_err(|x| Error::db("archive", table, x))?;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = first.columns().iter().map(|c| c.name()).collect();
    let at = Positions::of(&names).map_err(e)?;
    rows.iter()
        .map(|r| {
            EventRef::read(&EventRow(r), &at)
                .map(|row| crate::archive::ArchivedRow::of(table, &row))
                .map_err(e)
        })
        .collect()
}

/// The rows of `q` (a search), each passed to `deliver` until it says stop.
pub(crate) async fn search(
    pool: &MySqlPool,
    q: &Sql<'_>,
    what: &str,
    deliver: Deliver<'_>,
) -> Result<(), Error> {
    let err = |e: String| Error::db("search", what, e);
    let mut rows = query::<MySql>(q)
        .map_err(|e| Error::db("search", what, e))?
        .fetch(pool);
    let mut at: Option<Positions> = None;
    while let Some(r) = rows
        .try_next()
        .await
        .map_err(|e| Error::db("search", what, e))?
    {
        let at = match at {
            Some(at) => at,
            None => {
                let names: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
                *at.insert(Positions::of(&names).map_err(err)?)
            }
        };
        let row = EventRef::read(&EventRow(&r), &at).map_err(err)?;
        if !deliver(&row)? {
            break;
        }
    }
    Ok(())
}

/// What one INSERT may carry under the server's `max_allowed_packet`: a row
/// over it would fail its whole batch on every retry (8 MiB of invalid UTF-8
/// is 24 MiB stored lossily), so such a row is cut to fit.
#[derive(Debug, Clone, Copy)]
struct PacketLimit {
    /// The server's `max_allowed_packet`.
    server: usize,
    /// Most bytes of `raw` + `message` + `extra` in one row.
    row: usize,
    /// Most bytes of rows in one multi-row statement (one row may use all of `row`).
    statement: usize,
}

impl PacketLimit {
    fn new(max_allowed_packet: usize) -> Self {
        let row = max_allowed_packet.max(MIN_PACKET) - ROW_OVERHEAD;
        Self {
            server: max_allowed_packet,
            row,
            statement: BYTES_PER_STATEMENT.min(row),
        }
    }

    /// Longest `message` stored whole.
    fn message_max(&self) -> usize {
        MESSAGE_MAX_BYTES.min(self.row / 3)
    }

    /// True if [`PacketLimit::fit`] keeps `e` as it is.
    fn fits(&self, e: &Event) -> bool {
        let extra_len = e.extra.as_ref().map_or(0, String::len);
        e.message.len() <= self.message_max()
            && e.raw.len() + e.message.len() + extra_len <= self.row
    }

    /// `None` if `e` is stored as it is; else why it would be cut (for a
    /// caller that must store rows exactly: `siemparse --restore`).
    fn cut_reason(&self, e: &Event) -> Option<String> {
        if self.fits(e) {
            return None;
        }
        let extra_len = e.extra.as_ref().map_or(0, String::len);
        let total = e.raw.len() + e.message.len() + extra_len;
        let mut why = format!(
            "raw, message and extra take {total} bytes; under the server's max_allowed_packet \
             of {} bytes a row holds at most {} (message at most {})",
            self.server,
            self.row,
            self.message_max()
        );
        if e.message.len() > MESSAGE_MAX_BYTES {
            why.push_str(&format!(
                ": its message of {} bytes is over MariaDB's {MESSAGE_MAX_BYTES}-byte limit of \
                 siemstress and cannot be stored whole; restore it into a SQLite database",
                e.message.len()
            ));
        } else {
            // The packet that holds it whole, rounded up to a MiB (MariaDB
            // takes multiples of 1 KiB, at most 1 GiB).
            let need = total.max(e.message.len() * 3) + ROW_OVERHEAD;
            let mib = need.div_ceil(1 << 20);
            why.push_str(&format!(
                ": it would be stored cut; raise max_allowed_packet to at least {mib}M on the \
                 server (SET GLOBAL max_allowed_packet = {}, and in its configuration) and \
                 restore again",
                mib << 20
            ));
        }
        Some(why)
    }

    /// `e` as stored: unchanged if it fits, else with `message` cut to
    /// [`MESSAGE_MAX_BYTES`] (and a third of the row), `extra` replaced if
    /// it takes more than a quarter, and `raw` cut to the rest, at
    /// character boundaries; `extra` then says what was cut and how long it
    /// was: `{"truncated": {"raw": 25165824, "message": ...}}`.
    fn fit<'a>(&self, e: &'a Event) -> std::borrow::Cow<'a, Event> {
        use std::borrow::Cow;
        if self.fits(e) {
            return Cow::Borrowed(e);
        }
        let extra_len = e.extra.as_ref().map_or(0, String::len);
        let message_max = self.message_max();
        let mut truncated = serde_json::Map::new();
        let mut extra = serde_json::Map::new();
        if extra_len > self.row / 4 {
            truncated.insert("extra".into(), extra_len.into());
        } else if let Some(x) = e.extra.as_deref() {
            extra = serde_json::from_str(x).unwrap_or_default();
        }
        let message = cut(&e.message, message_max);
        if message.len() < e.message.len() {
            truncated.insert("message".into(), e.message.len().into());
        }
        // The marker's own bytes: three keys of at most 20 digits.
        let kept_extra = if truncated.contains_key("extra") {
            0
        } else {
            extra_len
        };
        let raw_max = self.row - message.len() - kept_extra - 128;
        let raw = cut(&e.raw, raw_max);
        if raw.len() < e.raw.len() {
            truncated.insert("raw".into(), e.raw.len().into());
        }
        extra.insert("truncated".into(), truncated.into());
        Cow::Owned(Event {
            message: message.to_owned(),
            raw: raw.to_owned(),
            extra: Some(serde_json::Value::Object(extra).to_string()),
            source: e.source.clone(),
            host: e.host.clone(),
            process: e.process.clone(),
            user: e.user.clone(),
            source_host: e.source_host.clone(),
            dest_host: e.dest_host.clone(),
            protocol: e.protocol.clone(),
            // The rest is Copy.
            ..*e
        })
    }
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
    /// Rows and statements are cut to fit the server's packet limit.
    packet: PacketLimit,
    table: Ident,
    /// Highest id this writer has seen (for the index backlog).
    last_id: i64,
    /// The search index's high-water mark, as last seen.
    indexed_upto: i64,
    /// The index stopped at a gap in the ids: no backlog until then.
    index_paused_until: Option<Instant>,
    /// The follow lease each checkpoint is fenced with.
    pub(crate) fence: Option<super::lease::Fence>,
    /// False for an account that may not read the table: no search index.
    indexing: bool,
    /// This collector's host name (of its ingest sources).
    host: String,
    /// The first row id and the checkpoints of a batch whose COMMIT got no
    /// answer (the connection was lost): it may have committed. Resolved
    /// by the next write (see [`MysqlWriter::committed_before`]).
    /// Kept with the number of rows, to know the batch again.
    uncertain: Option<(usize, Option<i64>, Vec<Checkpoint>)>,
}

impl MysqlWriter {
    /// Inserts the rows (several statements if needed) and upserts the
    /// checkpoints in one transaction.
    pub async fn write(
        &mut self,
        events: &[Event],
        checkpoints: &[Checkpoint],
        sources: &[SourceMark],
    ) -> Result<(), Error> {
        // Only the same batch, written again, may be the one in doubt.
        if self
            .uncertain
            .as_ref()
            .is_some_and(|(n, _, c)| *n != events.len() || c != checkpoints)
        {
            self.uncertain = None;
        }
        if self.uncertain.is_some() && self.committed_before().await? {
            return Ok(());
        }
        let table = self.table.as_str();
        let err = |e: sqlx::Error| Error::db("insert into", table, e);
        let mut first_id = None;
        let mut tx = self.pool.begin().await.map_err(err)?;
        if let Some(f) = &self.fence {
            for c in checkpoints {
                let q = f.of(Backend::Mysql, &c.section, &c.path);
                let done = query::<MySql>(&q)
                    .map_err(err)?
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                if done.rows_affected() != 1 {
                    return Err(Error::LostFollowLease {
                        path: c.path.clone(),
                    });
                }
            }
        }
        let mut rest = events;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            let mut chunk = Vec::new();
            while n < rest.len() && n < ROWS_PER_STATEMENT {
                let row = self.packet.fit(&rest[n]);
                let size = row.approx_bytes();
                if n > 0 && bytes + size > self.packet.statement {
                    break;
                }
                bytes += size;
                chunk.push(row);
                n += 1;
            }
            rest = &rest[n..];
            let mut q = Sql::with(Backend::Mysql, "INSERT INTO ");
            q.table(&self.table, "").push(" (");
            for (i, c) in COLUMNS.iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " }).push(c);
            }
            q.push(") ").values(&chunk, |e| {
                [
                    e.ts.into(),
                    e.received.into(),
                    short(&e.host).into(),
                    short(&e.process).into(),
                    e.pid.into(),
                    e.facility.into(),
                    e.severity.into(),
                    short(&e.user).into(),
                    short(&e.source_host).into(),
                    e.source_port.into(),
                    short(&e.dest_host).into(),
                    e.dest_port.into(),
                    short(&e.protocol).into(),
                    e.message.as_str().into(),
                    e.raw.as_str().into(),
                    Value::Int(i64::from(e.parsed)),
                    (&*e.source).into(),
                    e.extra.as_deref().into(),
                ]
            });
            let done = query::<MySql>(&q)
                .map_err(err)?
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            first_id = first_id.or(i64::try_from(done.last_insert_id()).ok());
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
        for m in sources {
            let q = super::sources::upsert(Backend::Mysql, &self.host, table, m);
            query::<MySql>(&q)
                .map_err(err)?
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let committed = tx.commit().await.map_err(err);
        if let Err(e) = &committed
            && e.is_transient()
            && first_id.is_some()
        {
            self.uncertain = Some((events.len(), first_id, checkpoints.to_vec()));
        }
        committed
    }

    /// Whether the batch whose COMMIT went unanswered was committed after
    /// all: its first row exists (or, for an account that may not read the
    /// table, the stored offset of its file already is the batch's). True
    /// means the batch must not be written again. An ambiguity that cannot
    /// be resolved (stdin under an INSERT-only account) is said on stderr,
    /// and the batch written again.
    async fn committed_before(&mut self) -> Result<bool, Error> {
        let Some((_, first_id, checkpoints)) = &self.uncertain else {
            return Ok(false);
        };
        let table = self.table.as_str();
        let err = |e: sqlx::Error| Error::db("look for the last batch in", table, e);
        let mut found = None;
        if let Some(id) = first_id {
            let n: Result<i64, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM `{}` WHERE id = ?",
                self.table
            )))
            .bind(id)
            .fetch_one(&self.pool)
            .await;
            match n {
                Ok(n) => found = Some(n > 0),
                Err(e) if denied(&e) => {}
                Err(e) => return Err(err(e)),
            }
        }
        if found.is_none()
            && let Some(c) = checkpoints.last()
        {
            let stored: Option<(i64, i64, i64)> = sqlx::query_as(
                "SELECT dev, inode, byte_offset FROM follow_state WHERE section = ? AND path = ?",
            )
            .bind(&c.section)
            .bind(&c.path)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            found = Some(stored == Some((c.dev, c.inode, c.offset)));
        }
        let committed = match found {
            Some(true) => {
                diag!(
                    "siemstress: the batch into {table} whose COMMIT went unanswered had been \
                     stored; not writing it again"
                );
                true
            }
            Some(false) => false,
            None => {
                diag!(
                    "siemstress: warning: the connection was lost during the COMMIT of a batch \
                     into {table}, and this account may not read the table to see whether it \
                     was stored: writing it again (its rows may be stored twice)"
                );
                false
            }
        };
        self.uncertain = None;
        Ok(committed)
    }
    /// Rows stored but not yet in the search index (as far as this writer
    /// knows); 0 for a while after the indexer met a gap in the ids.
    pub fn index_backlog(&self) -> u64 {
        if !self.indexing || self.index_paused_until.is_some_and(|t| Instant::now() < t) {
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
        let step = grep_bits::index_step(&self.pool, &self.table, max_rows).await?;
        self.indexed_upto = step.upto;
        self.last_id = self.last_id.max(step.upto);
        self.index_paused_until = step.at_gap.then(|| Instant::now() + GAP_RETRY);
        Ok(step.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(raw: &str, message: &str, extra: Option<&str>) -> Event {
        Event {
            raw: raw.into(),
            message: message.into(),
            extra: extra.map(str::to_owned),
            source: "stdin".into(),
            ..Event::default()
        }
    }

    #[test]
    fn a_row_that_fits_is_kept() {
        let p = PacketLimit::new(16 << 20);
        let e = event("a b c", "c", Some(r#"{"x":1}"#));
        assert!(matches!(p.fit(&e), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn an_oversized_row_is_cut_with_a_marker() {
        let p = PacketLimit::new(1 << 20);
        // Lossy invalid UTF-8: three bytes per character.
        let raw = "\u{fffd}".repeat(1 << 20);
        let e = event(&raw, &raw[3..], Some(r#"{"x":1}"#));
        let fit = p.fit(&e);
        assert!(fit.raw.len() + fit.message.len() + fit.extra.as_ref().unwrap().len() <= p.row);
        assert!(raw.starts_with(&fit.raw) && fit.raw.len().is_multiple_of(3));
        assert!(fit.message.len() <= p.row / 3);
        let extra: serde_json::Value = serde_json::from_str(fit.extra.as_deref().unwrap()).unwrap();
        assert_eq!(extra["x"], 1);
        assert_eq!(extra["truncated"]["raw"], raw.len());
        assert_eq!(extra["truncated"]["message"], raw.len() - 3);
        assert_eq!(p.statement, BYTES_PER_STATEMENT.min(p.row));
    }

    #[test]
    fn the_reason_a_row_is_cut_names_the_packet_it_needs() {
        let p = PacketLimit::new(16 << 20);
        assert_eq!(p.cut_reason(&event("a", "a", None)), None);
        let raw = "x".repeat(17 << 20);
        let why = p.cut_reason(&event(&raw, "m", None)).unwrap();
        assert!(
            why.contains("max_allowed_packet of 16777216 bytes"),
            "{why}"
        );
        assert!(why.contains("at least 18M"), "{why}");
        // A message over siemstress's own limit: no packet helps.
        let message = "y".repeat(MESSAGE_MAX_BYTES + 1);
        let why = PacketLimit::new(1 << 30)
            .cut_reason(&event(&message, &message, None))
            .unwrap();
        assert!(why.contains("cannot be stored whole"), "{why}");
    }

    #[test]
    fn a_huge_extra_is_replaced() {
        let p = PacketLimit::new(1 << 20);
        let extra = format!(r#"{{"x":"{}"}}"#, "y".repeat(1 << 20));
        let e = event("line", "line", Some(&extra));
        let fit = p.fit(&e);
        let v: serde_json::Value = serde_json::from_str(fit.extra.as_deref().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"truncated": {"extra": extra.len()}}));
        assert_eq!((fit.raw.as_str(), fit.message.as_str()), ("line", "line"));
    }
}
