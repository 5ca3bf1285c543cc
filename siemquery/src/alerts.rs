//! `siemquery --alerts [--last 24h | --range START-END] [--rule NAME]...`:
//! the alerts siemtrigger raised, as table, JSON, NDJSON or CSV, with the
//! field names of the contract. The period applies to `ts`, the event time
//! at which an alert fired (as in the report), default the last 24 hours.
//! Rows come in `(ts, id)` order; the table format shows the latest 1000
//! unless `--limit` says otherwise (`--limit N` keeps the latest N).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use siemstress_common::db::alerts::AlertQuery;
use siemstress_common::db::sql::Value;

use crate::args::{Args, Format};
use crate::output::{Cell, RowWriter};

/// Output fields, in order (the contract's names).
pub const FIELDS: [&str; 9] = [
    "id", "rule", "severity", "key", "ts", "first_ts", "count", "message", "created",
];

/// Rows shown by the table format when `--limit` is not given.
const TABLE_DEFAULT_LIMIT: u64 = 1000;

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
    // --range / --last (default 24h), read as for events, applied to `ts`.
    let opened = args.open(|zone| args.filter(zone)).await?;
    let (db, zone, period) = (opened.db, opened.zone, opened.prepared);

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

    let query = AlertQuery {
        since: period.since,
        until: period.until,
        rules: &args.rule,
        limit,
    };
    let verbose = args.verbose;
    let mut log = |sql: &str, bound: &[Value<'_>]| crate::log_sql(verbose, sql, bound);
    let rows = db.alerts(&query, &mut log).await.context("read alerts")?;
    let shown = rows.len() as u64;
    // The table's default limit: say how many alerts it left out.
    let left_out = if args.limit.is_none() && limit == Some(shown) {
        let total = db.count_alerts(&query).await.context("count alerts")?;
        u64::try_from(total).unwrap_or(0).saturating_sub(shown)
    } else {
        0
    };
    db.close().await;

    let fields: Vec<String> = FIELDS.iter().map(|s| (*s).to_owned()).collect();
    let mut w = crate::writers(args, format, &fields, &zone, tty)?;
    // Read newest first (a limit keeps the latest); shown oldest first.
    for a in rows.into_iter().rev() {
        w.row(&[
            Cell::Int(a.id),
            Cell::Text(a.rule.into()),
            Cell::Text(a.severity.into()),
            Cell::Text(a.key.into()),
            Cell::Time(a.ts),
            Cell::Time(a.first_ts),
            Cell::Int(a.count),
            Cell::Text(a.message.into()),
            Cell::Time(a.created),
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
