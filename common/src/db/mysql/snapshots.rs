//! Snapshot rows on MariaDB: a run's delta as multi-row INSERTs under the
//! placeholder and packet limits, stores of one series serialized by a
//! named lock (`GET_LOCK`), and the current rows read on the same
//! connection.

use sqlx::{Connection, MySql};

use crate::Error;
use crate::db::Backend;
use crate::db::snapshots::{CURRENT_ROWS_SQL, LATEST_OK_SQL, NewRun};
use crate::db::sql::{Sql, Value, query, query_as};
use crate::snapshot::STATUS_OK;
use crate::snapshot::current::{CurrentRows, Delta, RowId};

/// Rows per INSERT (4 binds each, under MariaDB's 65,535 limit).
const ROWS_PER_STATEMENT: usize = 1000;
/// Bytes of values per INSERT, under a 16 MiB max_allowed_packet.
const BYTES_PER_STATEMENT: usize = 4 << 20;
/// Seconds a store waits for another store of the same series.
const LOCK_WAIT_SECS: i64 = 60;

/// Stores an `ok` run and its delta from `current` under the series' lock;
/// returns the run id.
pub(crate) async fn store_run(
    pool: &sqlx::MySqlPool,
    run: &NewRun<'_>,
    current: CurrentRows,
) -> Result<i64, Error> {
    let (name, host) = (run.name, run.host);
    let err = |e: sqlx::Error| Error::db("store snapshot", name, e);
    let mut conn = pool.acquire().await.map_err(err)?;
    let lock = series_lock(name, host);
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&lock)
        .bind(LOCK_WAIT_SECS)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    if locked != Some(1) {
        return Err(Error::db(
            "store snapshot",
            name,
            format!("another run of it on {host} held its lock for {LOCK_WAIT_SECS} s"),
        ));
    }
    let stored = store_locked(&mut conn, run, current).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut *conn)
        .await;
    if released.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        drop(conn.detach());
    }
    stored.map_err(err)
}

/// Name of the lock of a series (GET_LOCK names are at most 64
/// characters; names and hosts can be longer).
fn series_lock(name: &str, host: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update([0])
        .chain_update(host)
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("siemstress-snapshot-{hex}")
}

#[derive(sqlx::FromRow)]
struct Latest {
    latest: Option<i64>,
}

async fn latest_ok(
    conn: &mut sqlx::MySqlConnection,
    name: &str,
    host: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let q = Sql::with_args(Backend::Mysql, LATEST_OK_SQL, [name, host]);
    let l: Latest = query_as::<MySql, Latest>(&q)?.fetch_one(&mut *conn).await?;
    Ok(l.latest)
}

async fn store_locked(
    conn: &mut sqlx::MySqlConnection,
    run: &NewRun<'_>,
    mut current: CurrentRows,
) -> Result<i64, sqlx::Error> {
    let (name, host) = (run.name, run.host);
    let mut tx = conn.begin().await?;
    if latest_ok(&mut tx, name, host).await? != current.latest_run {
        current = read_current(&mut tx, name, host).await?;
    }
    let mut q = Sql::with(
        Backend::Mysql,
        "INSERT INTO snapshot_runs (name, host, taken, status, finished, row_count, message) ",
    );
    q.values([()], |()| {
        [
            name.into(),
            host.into(),
            run.taken.into(),
            STATUS_OK.into(),
            crate::time::now_ms().into(),
            (run.rows.len() as i64).into(),
            run.message.into(),
        ]
    });
    let id = query::<MySql>(&q)?
        .execute(&mut *tx)
        .await?
        .last_insert_id() as i64;
    let delta = Delta::between(current, run.rows);
    let mut start = 0;
    while start < delta.insert.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < delta.insert.len()
            && end - start < ROWS_PER_STATEMENT
            && (end == start || bytes < BYTES_PER_STATEMENT)
        {
            let row = delta.insert[end].1;
            bytes += row.json.len() + row.key.len();
            end += 1;
        }
        let mut q = Sql::with(
            Backend::Mysql,
            "INSERT INTO snapshot_rows (run_id, seq, row_key, value) ",
        );
        q.values(&delta.insert[start..end], |(seq, row)| {
            [
                id.into(),
                (*seq).into(),
                row.key.as_str().into(),
                row.json.as_str().into(),
            ]
        });
        query::<MySql>(&q)?.execute(&mut *tx).await?;
        start = end;
    }
    for ended in delta.end.chunk_by(|a, b| a.run_id == b.run_id) {
        for chunk in ended.chunks(ROWS_PER_STATEMENT) {
            let mut q = Sql::with(Backend::Mysql, "UPDATE snapshot_rows SET until_run = ");
            q.bind(id);
            q.and().push("run_id = ").bind(chunk[0].run_id);
            q.and()
                .push("seq IN ")
                .list(chunk.iter().map(|r| Value::Int(r.seq)));
            query::<MySql>(&q)?.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct Current {
    row_key: String,
    value: String,
    run_id: i64,
    seq: i64,
}

/// The current rows of a series.
async fn read_current(
    conn: &mut sqlx::MySqlConnection,
    name: &str,
    host: &str,
) -> Result<CurrentRows, sqlx::Error> {
    let latest = latest_ok(conn, name, host).await?;
    let q = Sql::with_args(Backend::Mysql, CURRENT_ROWS_SQL, [name, host]);
    let stored: Vec<Current> = query_as::<MySql, Current>(&q)?
        .fetch_all(&mut *conn)
        .await?;
    let mut current = CurrentRows::with_capacity(latest, stored.len());
    for r in &stored {
        current.add(
            &r.row_key,
            r.value.as_bytes(),
            RowId {
                run_id: r.run_id,
                seq: r.seq,
            },
        );
    }
    Ok(current)
}

/// The current rows of `name` on `host`.
pub(crate) async fn current_rows(
    pool: &sqlx::MySqlPool,
    name: &str,
    host: &str,
) -> Result<CurrentRows, Error> {
    let err = |e| Error::db("read snapshot", name, e);
    let mut conn = pool.acquire().await.map_err(err)?;
    read_current(&mut conn, name, host).await.map_err(err)
}
