//! siemtrigger's chunk scan on SQLite: every row of the chunk is read on a
//! rusqlite connection of the reader's own (the conds are flags, so the
//! latest time comes for free), values in place, columns found by name once
//! per statement.

use rusqlite::types::ValueRef;

use crate::Error;
use crate::db::Backend;
use crate::db::sql::Value;
use crate::db::trigger::{Scan, ScanSink, Scanned};

pub(crate) fn scan<S: ScanSink>(conn: &rusqlite::Connection, s: &Scan, mut sink: S) -> Scanned<S> {
    let err = |e: rusqlite::Error| Error::db("read", s.table.as_str(), e);
    let q = s.select(Backend::Sqlite);
    let mut stmt = conn.prepare_cached(q.text()).map_err(err)?;
    for (i, b) in q.binds().iter().enumerate() {
        match b {
            Value::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
            Value::Int(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Text(v) => stmt.raw_bind_parameter(i + 1, v.as_ref()),
        }
        .map_err(err)?;
    }
    let position = |name: &str| stmt.column_index(name).map_err(err);
    let (id_at, ts_at) = (position("id")?, position("ts")?);
    let flags_at: Vec<usize> = (0..s.conds.len())
        .map(|j| position(&format!("c{j}")))
        .collect::<Result<_, _>>()?;
    let cols_at: Vec<usize> = s
        .cols
        .iter()
        .map(|c| position(c))
        .collect::<Result<_, _>>()?;
    let mut max_ts: Option<i64> = None;
    let mut flags = vec![false; flags_at.len()];
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next().map_err(err)? {
        let id: i64 = r.get(id_at).map_err(err)?;
        let ts: i64 = r.get(ts_at).map_err(err)?;
        max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
        for (f, &at) in flags.iter_mut().zip(&flags_at) {
            *f = match r.get_ref(at).map_err(err)? {
                ValueRef::Integer(v) => v != 0,
                ValueRef::Real(v) => v != 0.0,
                _ => false,
            };
        }
        if !flags.iter().any(|f| *f) {
            continue;
        }
        sink.begin(id, ts);
        for f in &flags {
            sink.flag(*f);
        }
        for &at in &cols_at {
            match r.get_ref(at).map_err(err)? {
                ValueRef::Null => sink.text(None),
                ValueRef::Integer(v) => sink.int(Some(v)),
                ValueRef::Real(v) => sink.text(Some(&v.to_string())),
                ValueRef::Text(b) | ValueRef::Blob(b) => match std::str::from_utf8(b) {
                    Ok(t) => sink.text(Some(t)),
                    Err(_) => sink.text(Some(&String::from_utf8_lossy(b))),
                },
            }
        }
    }
    Ok((sink, max_ts))
}
