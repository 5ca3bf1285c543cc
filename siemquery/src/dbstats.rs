//! `siemquery --stats-db`: per table the rows, the oldest and newest event,
//! and the bytes of data, indexes and the `--grep` index (figures and their
//! sources: `common::db::stats`), then the database's total and free space.
//! A table shows sizes as KiB/MiB/GiB; JSON, NDJSON and CSV give bytes.

use std::borrow::Cow;
use std::io::{self, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use siemstress_common::diag;
use siemstress_common::display::human_bytes;

use crate::args::{Args, Format};
use crate::output::{Cell, RowWriter};

/// Output fields, in order.
pub const FIELDS: [&str; 9] = [
    "table",
    "kind",
    "rows",
    "oldest",
    "newest",
    "data_bytes",
    "index_bytes",
    "grep_index_bytes",
    "total_bytes",
];

/// Runs `--stats-db`: exit 0, or 2 with a one-line message.
pub fn main(args: &Args, rt: &tokio::runtime::Runtime) -> ExitCode {
    crate::exit_code(rt.block_on(run(args)))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if !args.fields.is_empty() {
        bail!(
            "--fields does not apply to --stats-db (it shows {})",
            FIELDS.join(",")
        );
    }
    let config = args.connect.load_config()?;
    let zone = config.section(args.zone_section(), None)?.zone;
    if args.last.is_some()
        || args.range.is_some()
        || args.limit.is_some()
        || args.filter(&zone)?.has_conditions()
    {
        bail!(
            "--limit and row filters (--last, --range, --id, --grep, --shost, ...) do not apply \
             to --stats-db: it measures whole tables (-s or --table: only that section's table)"
        );
    }
    let db = args.connect.connect_existing(&config).await?;
    let only = if args.section.is_some() || args.table.is_some() {
        let tables = crate::search_tables(args, &config, &db).await?;
        Some(tables.into_iter().map(|t| t.table).collect::<Vec<_>>())
    } else {
        None
    };
    let stats = db
        .db_stats(only.as_deref())
        .await
        .context("read table statistics")?;
    db.close().await;

    let tty = io::stdout().is_terminal();
    let format = args
        .format
        .unwrap_or(if tty { Format::Table } else { Format::Ndjson });
    let human = format == Format::Table;
    let bytes = |b: Option<i64>| -> Cell<'static> {
        match b {
            None => Cell::Null,
            Some(b) if human => Cell::Text(Cow::Owned(human_bytes(u64::try_from(b).unwrap_or(0)))),
            Some(b) => Cell::Int(b),
        }
    };
    let time = |t: Option<i64>| t.map_or(Cell::Null, Cell::Time);
    let fields: Vec<String> = FIELDS.iter().map(|s| (*s).to_owned()).collect();
    let mut w = crate::writers(args, format, &fields, &zone, tty, None)?;
    for t in &stats.tables {
        w.row(&[
            Cell::Text(Cow::Borrowed(&t.table)),
            Cell::Text(Cow::Borrowed(t.kind)),
            Cell::Int(t.rows),
            time(t.oldest),
            time(t.newest),
            bytes(t.data_bytes),
            bytes(t.index_bytes),
            bytes(t.grep_bytes),
            bytes(t.total_bytes()),
        ])?;
    }
    // The whole database, and its free space (reused before it grows).
    for (name, b) in [
        ("(database)", stats.total_bytes),
        ("(free)", stats.free_bytes),
    ] {
        w.row(&[
            Cell::Text(Cow::Borrowed(name)),
            Cell::Text(Cow::Borrowed("space")),
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Null,
            bytes(Some(b)),
        ])?;
    }
    w.finish()?;
    if !stats.per_table_sizes {
        diag!(
            "siemquery: this SQLite has no dbstat table: sizes per table are not available, \
             only the database's"
        );
    }
    Ok(())
}
