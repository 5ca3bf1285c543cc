//! `siemquery --alerts [--last 24h | --range START-END] [--rule NAME]...`:
//! the alerts siemtrigger raised, as table, JSON, NDJSON or CSV, with the
//! field names of the contract. The period applies to `ts`, the event time
//! at which an alert fired (as in the report), default the last 24 hours.
//! Rows come in `(ts, id)` order; the table format shows the latest 1000
//! unless `--limit` says otherwise (`--limit N` keeps the latest N).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use siemstress_common::db::alerts::{AlertQuery, AlertRow};
use siemstress_common::db::sql::Value;
use siemstress_common::diag;

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
    crate::exit_code(rt.block_on(run(args)))
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

    if args.follow {
        crate::follow::check(args, format)?;
    }
    // --follow: the resume point comes first, so that an alert raised
    // during the period's read is shown once, by the follow.
    let start = match args.follow {
        true => Some(db.last_alert_id().await.context("read alerts")?),
        false => None,
    };
    let query = AlertQuery {
        since: period.since,
        until: period.until,
        rules: &args.rule,
        limit,
        after: None,
        upto: start,
    };
    let verbose = args.verbose;
    let mut log = |sql: &str, bound: &[Value<'_>]| crate::log_sql(verbose, sql, bound);
    let fields: Vec<String> = FIELDS.iter().map(|s| (*s).to_owned()).collect();
    let mut w = crate::writers(args, format, &fields, &zone, tty, Some(&LINE_ORDER))?;
    if let Some(mut after) = start {
        crate::log_follow(args.verbose, "alerts", Some(after));
        if args.last.is_some() || args.range.is_some() {
            let rows = db.alerts(&query, &mut log).await.context("read alerts")?;
            write(&mut w, rows)?;
        }
        w.flush()?;
        let mut backoff = crate::follow::Backoff::default();
        let mut wait = crate::follow::POLL_MIN;
        loop {
            crate::follow::sleep(wait).await?;
            let top = db.last_alert_id().await.context("read alerts")?;
            let mut n = 0;
            if top > after {
                let new = AlertQuery {
                    limit: None,
                    after: Some(after),
                    upto: Some(top),
                    ..query.clone()
                };
                let rows = db.alerts(&new, &mut log).await.context("read alerts")?;
                n = rows.len() as u64;
                write(&mut w, rows)?;
                w.flush()?;
                after = top;
            }
            wait = backoff.next(n);
        }
    }
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
    write(&mut w, rows)?;
    w.finish()?;
    if left_out > 0 {
        diag!(
            "siemquery: the table shows the latest {shown} of {} alerts ({left_out} left out); \
             --limit N for more (0: all), or --format ndjson|csv",
            shown + left_out
        );
    }
    Ok(())
}

/// The fields of a followed alert on a terminal (indexes into [`FIELDS`]):
/// time, severity, rule, key, message.
const LINE_ORDER: [usize; 5] = [4, 2, 1, 3, 7];

/// Writes alerts read newest first (a limit keeps the latest) oldest first.
fn write(w: &mut dyn RowWriter, rows: Vec<AlertRow>) -> std::io::Result<()> {
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
    Ok(())
}
