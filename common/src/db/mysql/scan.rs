//! siemtrigger's chunk scan on MariaDB: only rows that some cond wants
//! cross the wire (the conds are repeated in the WHERE), so the latest
//! event time of the chunk is a query of its own. Columns are found by
//! name once per statement.

use futures_util::TryStreamExt;
use sqlx::{Column, MySql, Row};

use super::super::sql::{Sql, query};
use crate::Error;
use crate::db::Backend;
use crate::db::trigger::{Scan, ScanSink, Scanned, is_int_column};

pub(crate) async fn scan<S: ScanSink>(pool: &sqlx::MySqlPool, s: &Scan, mut sink: S) -> Scanned<S> {
    let err = |e: sqlx::Error| Error::db("read", s.table.as_str(), e);
    let mut q = s.select(Backend::Mysql);
    if !s.conds.iter().any(|c| c.is_true()) {
        q.push(" AND (");
        for (i, c) in s.conds.iter().enumerate() {
            q.push(if i == 0 { "(" } else { " OR (" })
                .append(&c.0)
                .push(")");
        }
        q.push(")");
    }
    let mut rows = query::<MySql>(&q).map_err(err)?.fetch(pool);
    let mut at: Option<(Vec<usize>, Vec<usize>)> = None;
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let (flags_at, cols_at) = match &at {
            Some(at) => at,
            None => {
                let names: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
                let position = |n: &str| {
                    names.iter().position(|c| *c == n).ok_or_else(|| {
                        Error::db("read", s.table.as_str(), format!("no column {n}"))
                    })
                };
                let flags = (0..s.conds.len())
                    .map(|j| position(&format!("c{j}")))
                    .collect::<Result<_, _>>()?;
                let cols = s
                    .cols
                    .iter()
                    .map(|c| position(c))
                    .collect::<Result<_, _>>()?;
                at.insert((flags, cols))
            }
        };
        sink.begin(r.try_get("id").map_err(err)?, r.try_get("ts").map_err(err)?);
        for &i in flags_at {
            let v: Option<i64> = r.try_get_unchecked(i).map_err(err)?;
            sink.flag(v.is_some_and(|v| v != 0));
        }
        for (c, &i) in s.cols.iter().zip(cols_at) {
            if is_int_column(c) {
                sink.int(r.try_get_unchecked::<Option<i64>, _>(i).map_err(err)?);
            } else {
                match r.try_get_unchecked::<Option<&[u8]>, _>(i).map_err(err)? {
                    None => sink.text(None),
                    Some(b) => match std::str::from_utf8(b) {
                        Ok(t) => sink.text(Some(t)),
                        Err(_) => sink.text(Some(&String::from_utf8_lossy(b))),
                    },
                }
            }
        }
    }
    drop(rows);
    let mut q = Sql::with(Backend::Mysql, "SELECT MAX(ts) AS max");
    s.push_from_where(&mut q);
    let m: Max = super::super::sql::query_as::<MySql, Max>(&q)
        .map_err(err)?
        .fetch_one(pool)
        .await
        .map_err(err)?;
    Ok((sink, m.max))
}

#[derive(sqlx::FromRow)]
struct Max {
    max: Option<i64>,
}
