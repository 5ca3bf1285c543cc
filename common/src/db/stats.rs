//! What each table costs (`siemquery --stats-db`): rows, the oldest and
//! newest event, and bytes of data, of indexes and of an event table's
//! `--grep` index.
//!
//! - SQLite: the `dbstat` virtual table (compiled into the bundled SQLite),
//!   one row per b-tree with its pages, mapped to tables through
//!   `sqlite_master`; FTS5's shadow tables `T$grep_*` are `T`'s search
//!   index. `dbstat` reads every page: on a big file it takes a while.
//!   Where it is missing, only the file's size and free pages are given.
//! - MariaDB: `information_schema.tables` (`data_length`, `index_length`,
//!   `data_free`): InnoDB's statistics, estimates updated by the server
//!   (`ANALYZE TABLE` refreshes them); `T$grep` is `T`'s bitmap.
//!
//! Rows are counted exactly (`COUNT(*)`: an index scan, seconds at 100M
//! rows on MariaDB).

use super::{Backend, Database};
use crate::Error;
use crate::ident::Ident;

/// One table's figures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table: String,
    /// `events` (an event table) or `siemstress` (one of its own).
    pub kind: &'static str,
    pub rows: i64,
    /// Oldest and newest event time (`ts`; `taken` of snapshot runs).
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    pub data_bytes: Option<i64>,
    pub index_bytes: Option<i64>,
    /// The `--grep` search index (event tables).
    pub grep_bytes: Option<i64>,
}

impl TableStats {
    /// Data, indexes and search index together (`None` if none is known).
    pub fn total_bytes(&self) -> Option<i64> {
        let parts = [self.data_bytes, self.index_bytes, self.grep_bytes];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

/// The whole database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbStats {
    pub tables: Vec<TableStats>,
    /// SQLite: the file's pages; MariaDB: the tables' data and indexes.
    pub total_bytes: i64,
    /// SQLite: free pages; MariaDB: `data_free` (free space in tablespaces).
    pub free_bytes: i64,
    /// False when sizes per table are not available (SQLite without dbstat).
    pub per_table_sizes: bool,
}

/// siemstress's own tables, with their time column.
const OWN_TABLES: &[(&str, Option<&str>)] = &[
    ("alerts", Some("ts")),
    ("alert_events", None),
    ("action_runs", None),
    ("trigger_progress", None),
    ("trigger_windows", None),
    ("trigger_lease", None),
    ("snapshot_runs", Some("taken")),
    ("snapshot_rows", None),
    ("follow_state", None),
    ("follow_lease", None),
    ("ingest_sources", None),
    ("grep_index", None),
    ("event_tables", None),
];

#[derive(sqlx::FromRow)]
struct Span {
    n: i64,
    oldest: Option<i64>,
    newest: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Btree {
    name: String,
    tbl: String,
    kind: String,
    bytes: i64,
}

#[derive(sqlx::FromRow)]
struct MyTable {
    name: String,
    data_bytes: i64,
    index_bytes: i64,
    free_bytes: i64,
}

#[derive(sqlx::FromRow)]
struct Pages {
    total: i64,
    free: i64,
}

impl Database {
    /// Rows, time span and bytes of every event table and of siemstress's
    /// own tables; with `only`, of those event tables alone.
    pub async fn db_stats(&self, only: Option<&[Ident]>) -> Result<DbStats, Error> {
        let e = |x| Error::db("read", "table statistics", x);
        let mut tables = Vec::new();
        let events = match only {
            Some(only) => only.to_vec(),
            None => {
                let mut all = Vec::new();
                for name in self.event_tables().await? {
                    let t = Ident::new(&name, "event table")?;
                    if self.event_table_exists(&t).await? {
                        all.push(t);
                    }
                }
                all
            }
        };
        for t in &events {
            tables.push(self.span(t, "events", Some("ts")).await?);
        }
        for (name, time) in OWN_TABLES.iter().filter(|_| only.is_none()) {
            let t = Ident::new(name, "table")?;
            tables.push(self.span(&t, "siemstress", *time).await?);
        }
        let mut stats = DbStats {
            tables,
            ..DbStats::default()
        };
        match self.backend() {
            Backend::Sqlite => {
                let pages: Pages = self
                    .fetch_one(&self.sql(
                        "SELECT (SELECT page_count FROM pragma_page_count) * \
                         (SELECT page_size FROM pragma_page_size) AS total, \
                         (SELECT freelist_count FROM pragma_freelist_count) * \
                         (SELECT page_size FROM pragma_page_size) AS free",
                    ))
                    .await
                    .map_err(e)?;
                stats.total_bytes = pages.total;
                stats.free_bytes = pages.free;
                // One row per b-tree (aggregate = 1); absent without dbstat.
                let q = self.sql(
                    "SELECT d.name AS name, coalesce(m.tbl_name, d.name) AS tbl, \
                     coalesce(m.type, 'table') AS kind, d.pgsize AS bytes \
                     FROM dbstat('main', 1) d LEFT JOIN sqlite_master m ON m.name = d.name",
                );
                if let Ok(trees) = self.fetch_all::<Btree>(&q).await {
                    stats.per_table_sizes = true;
                    for b in trees {
                        add_btree(&mut stats.tables, &b);
                    }
                }
            }
            Backend::Mysql => {
                let q = self.sql(
                    "SELECT CAST(table_name AS CHAR) AS name, \
                     CAST(COALESCE(data_length, 0) AS SIGNED) AS data_bytes, \
                     CAST(COALESCE(index_length, 0) AS SIGNED) AS index_bytes, \
                     CAST(COALESCE(data_free, 0) AS SIGNED) AS free_bytes \
                     FROM information_schema.tables WHERE table_schema = DATABASE()",
                );
                let rows: Vec<MyTable> = self.fetch_all(&q).await.map_err(e)?;
                stats.per_table_sizes = true;
                for r in rows {
                    stats.total_bytes += r.data_bytes + r.index_bytes;
                    stats.free_bytes = stats.free_bytes.max(r.free_bytes);
                    let grep = r.name.strip_suffix(super::events::GREP_SUFFIX);
                    let owner = grep.unwrap_or(&r.name);
                    if let Some(t) = stats.tables.iter_mut().find(|t| t.table == owner) {
                        if grep.is_some() {
                            *t.grep_bytes.get_or_insert(0) += r.data_bytes + r.index_bytes;
                        } else {
                            *t.data_bytes.get_or_insert(0) += r.data_bytes;
                            *t.index_bytes.get_or_insert(0) += r.index_bytes;
                        }
                    }
                }
            }
        }
        Ok(stats)
    }

    /// Rows and time span of table `t` (`time`: its time column).
    async fn span(
        &self,
        t: &Ident,
        kind: &'static str,
        time: Option<&'static str>,
    ) -> Result<TableStats, Error> {
        let mut q = self.sql("SELECT COUNT(*) AS n, ");
        match time {
            Some(c) => {
                q.push("MIN(").push(c).push(") AS oldest, MAX(").push(c);
                q.push(") AS newest FROM ");
            }
            None => {
                q.push("CAST(NULL AS SIGNED) AS oldest, CAST(NULL AS SIGNED) AS newest FROM ");
            }
        }
        q.table(t, "");
        let s: Span = self
            .fetch_one(&q)
            .await
            .map_err(|x| Error::db("count", t.as_str(), x))?;
        Ok(TableStats {
            table: t.as_str().to_owned(),
            kind,
            rows: s.n,
            oldest: s.oldest,
            newest: s.newest,
            ..TableStats::default()
        })
    }
}

/// Adds a SQLite b-tree's bytes to its table: the table itself is data,
/// its indexes (and `sqlite_autoindex_*`) indexes, FTS5's `T$grep_*`
/// shadow tables `T`'s search index.
fn add_btree(tables: &mut [TableStats], b: &Btree) {
    let grep_owner = b
        .name
        .split_once(super::events::GREP_SUFFIX)
        .map(|(owner, _)| owner);
    let owner = grep_owner.unwrap_or(&b.tbl);
    let Some(t) = tables.iter_mut().find(|t| t.table == owner) else {
        return;
    };
    let slot = if grep_owner.is_some() {
        &mut t.grep_bytes
    } else if b.kind == "index" {
        &mut t.index_bytes
    } else {
        &mut t.data_bytes
    };
    *slot.get_or_insert(0) += b.bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btrees_map_to_their_tables() {
        let mut tables = vec![TableStats {
            table: "auth".into(),
            ..TableStats::default()
        }];
        for (name, tbl, kind, bytes) in [
            ("auth", "auth", "table", 100),
            ("auth_ts", "auth", "index", 10),
            ("auth_shost_ts", "auth", "index", 5),
            ("auth$grep_data", "auth$grep_data", "table", 40),
            ("auth$grep_idx", "auth$grep_idx", "table", 2),
            ("other", "other", "table", 1000),
        ] {
            let b = Btree {
                name: name.into(),
                tbl: tbl.into(),
                kind: kind.into(),
                bytes,
            };
            add_btree(&mut tables, &b);
        }
        let t = &tables[0];
        assert_eq!(
            (t.data_bytes, t.index_bytes, t.grep_bytes),
            (Some(100), Some(15), Some(42))
        );
        assert_eq!(t.total_bytes(), Some(157));
        assert_eq!(TableStats::default().total_bytes(), None);
    }
}
