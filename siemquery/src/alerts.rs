//! `siemquery --alerts [--last 24h | --range START-END] [--rule NAME]...`:
//! the alerts siemtrigger raised, as table, JSON, NDJSON or CSV, with the
//! field names of the contract. The period applies to `ts`, the event time
//! at which an alert fired (as in the report), default the last 24 hours.
//! Rows come in `(ts, id)` order; the table format shows the latest 1000
//! unless `--limit` says otherwise (`--limit N` keeps the latest N).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use siemstress_common::db::Database;

use crate::args::{Args, Format};
use crate::output::{Cell, RowWriter};

/// Output fields, in order (the contract's names).
pub const FIELDS: [&str; 9] = [
    "id", "rule", "severity", "key", "ts", "first_ts", "count", "message", "created",
];

/// Rows shown by the table format when `--limit` is not given.
const TABLE_DEFAULT_LIMIT: u64 = 1000;

type AlertRow = (i64, String, String, String, i64, i64, i64, String, i64);

/// Runs `--alerts`: exit 0, or 2 with a one-line message.
pub fn main(args: &Args, rt: &tokio::runtime::Runtime) -> ExitCode {
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if crate::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siemquery: {}", crate::one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if !args.fields.is_empty() {
        bail!(
            "--fields does not apply to --alerts (it shows {})",
            FIELDS.join(",")
        );
    }
    let config = args.connect.load_config()?;
    let zone = config.section(&args.section, None)?.zone;
    // --range / --last (default 24h), read as for events, applied to `ts`.
    let period = args.filter(&zone)?;
    let url = config.database_url(args.connect.db.as_deref())?;
    crate::refuse_missing_sqlite_file(&url)?;
    let db = Database::connect(&url).await?;

    let tty = io::stdout().is_terminal();
    let format = args
        .format
        .unwrap_or(if tty { Format::Table } else { Format::Ndjson });
    let limit = match args.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None if args.shows_table(format) => Some(TABLE_DEFAULT_LIMIT),
        None => None,
    };

    let key = match db {
        Database::Sqlite(_) => "\"key\"",
        Database::Mysql(_) => "`key`",
    };
    let mut filter = String::from(" FROM alerts WHERE 1 = 1");
    if period.since.is_some() {
        filter.push_str(" AND ts >= ?");
    }
    if period.until.is_some() {
        filter.push_str(" AND ts < ?");
    }
    if !args.rule.is_empty() {
        filter.push_str(" AND rule IN (");
        filter.push_str(&vec!["?"; args.rule.len()].join(", "));
        filter.push(')');
    }
    let mut sql =
        format!("SELECT id, rule, severity, {key}, ts, first_ts, count, message, created{filter}");
    // Newest first, so that a limit keeps the latest; shown oldest first.
    sql.push_str(" ORDER BY ts DESC, id DESC");
    if limit.is_some() {
        sql.push_str(" LIMIT ?");
    }
    if args.verbose {
        eprintln!("siemquery: SQL: {sql}");
    }
    macro_rules! bind_filter {
        ($q:expr) => {{
            let mut q = $q;
            if let Some(s) = period.since {
                q = q.bind(s);
            }
            if let Some(u) = period.until {
                q = q.bind(u);
            }
            for r in &args.rule {
                q = q.bind(r.as_str());
            }
            q
        }};
    }
    macro_rules! fetch {
        ($pool:expr) => {{
            let mut q = bind_filter!(sqlx::query_as::<_, AlertRow>(sqlx::AssertSqlSafe(
                sql.clone()
            )));
            if let Some(n) = limit {
                q = q.bind(i64::try_from(n).unwrap_or(i64::MAX));
            }
            q.fetch_all($pool).await
        }};
    }
    let rows = match &db {
        Database::Sqlite(d) => fetch!(&d.pool),
        Database::Mysql(d) => fetch!(&d.pool),
    }
    .context("read alerts")?;
    let shown = rows.len() as u64;
    // The table's default limit: say how many alerts it left out.
    let left_out = if args.limit.is_none() && limit == Some(shown) {
        let count_sql = format!("SELECT COUNT(*){filter}");
        let total: i64 = siemstress_common::with_pool!(&db, pool => bind_filter!(
            sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql.clone()))
        )
        .fetch_one(pool)
        .await)
        .context("count alerts")?;
        u64::try_from(total).unwrap_or(0).saturating_sub(shown)
    } else {
        0
    };
    db.close().await;

    let fields: Vec<String> = FIELDS.iter().map(|s| (*s).to_owned()).collect();
    let mut w = crate::writers(args, format, &fields, &zone, tty)?;
    for (id, rule, severity, key, ts, first_ts, count, message, created) in rows.into_iter().rev() {
        w.row(&[
            Cell::Int(id),
            Cell::Text(rule.into()),
            Cell::Text(severity.into()),
            Cell::Text(key.into()),
            Cell::Time(ts),
            Cell::Time(first_ts),
            Cell::Int(count),
            Cell::Text(message.into()),
            Cell::Time(created),
        ])?;
    }
    w.finish()?;
    if left_out > 0 {
        eprintln!(
            "siemquery: the table shows the latest {shown} of {} alerts ({left_out} left out); \
             --limit N for more (0: all), or --format ndjson|csv",
            shown + left_out
        );
    }
    Ok(())
}
