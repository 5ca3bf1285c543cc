//! `siemquery`: filtered search over an event table, with table, JSON, NDJSON
//! and CSV output, counts and top-N statistics.
//!
//! Exit status: 0 when the query ran (with or without rows; a closed pipe
//! also counts), 2 for any error (bad flag, bad time, unknown section,
//! database failure), with a one-line message on stderr.

mod alerts;
mod args;
mod fmt;
mod output;
mod report;
mod snapshot;
mod sysstatus;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use siemstress_common::db::search::{EventRef, FieldValue, ROW_COLUMNS, stats_column};
use siemstress_common::db::sql::Value;
use siemstress_common::event::Column;
use siemstress_common::ident::Ident;

use crate::args::{Args, Format};
use crate::output::{Cell, Csv, JsonArray, Ndjson, RowWriter, Table, Tee};

/// Rows shown by the table format when `--limit` is not given.
const TABLE_DEFAULT_LIMIT: u64 = 1000;
/// Values shown by `--stats` when `--limit` is not given.
const STATS_DEFAULT_TOP: u64 = 10;
/// Columns of the table format when `--fields` is not given.
const TABLE_FIELDS: [&str; 8] = [
    "id",
    "ts",
    "host",
    "process",
    "pid",
    "user",
    "source_host",
    "message",
];

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line, without its "error: " prefix and usage block.
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "siemquery: {} (see --help)",
                line.trim_start_matches("error: ")
            );
            // A diff's exit bits must not be mistaken for a usage error.
            let snapshot =
                std::env::args().any(|a| a == "--snapshot" || a.starts_with("--snapshot="));
            return ExitCode::from(if snapshot { 16 } else { 2 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siemquery: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    if args.snapshot.is_some() {
        return snapshot::main(&args, &rt);
    }
    if args.report.is_some() {
        return report::main(&args, &rt);
    }
    if args.alerts {
        return alerts::main(&args, &rt);
    }
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siemquery: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// `--verbose`: a statement with its bound values, on stderr.
fn log_sql(verbose: bool, sql: &str, bound: &[Value<'_>]) {
    if verbose {
        eprintln!("siemquery: SQL: {sql}");
        for (i, b) in bound.iter().enumerate() {
            eprintln!("siemquery:   ?{} = {b}", i + 1);
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Errors stay on one line (regex and database messages may span several).
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.connect.load_config()?;
    let section = config.section(&args.section, None)?;
    let table = match &args.table {
        Some(t) => Ident::new(t, "--table")?,
        None => section.table.clone(),
    };
    let filter = args.filter(&section.zone)?;
    let stats = args.stats.as_deref().map(stats_column).transpose()?;
    let fields = args.fields()?;

    let db = args.connect.connect_existing(&config).await?;
    if !db.event_table_exists(&table).await? {
        if let Some(existing) = db.case_clash(&table).await? {
            bail!("table {table} does not exist; table {existing} does (names are case-sensitive)");
        }
        bail!(
            "unknown section {:?}: table {table} does not exist (nothing ingested yet? see --table)",
            args.section
        );
    }

    let verbose = args.verbose;
    let mut log = |sql: &str, bound: &[Value<'_>]| log_sql(verbose, sql, bound);

    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let format = args
        .format
        .unwrap_or(if tty { Format::Table } else { Format::Ndjson });

    if args.count {
        let n = db.count_events(&table, &filter, &mut log).await?;
        if !args.silent {
            let mut out = stdout.lock();
            writeln!(out, "{n}")?;
            out.flush()?;
        }
        db.close().await;
        return Ok(());
    }

    if let Some(column) = stats {
        let top = match args.limit {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(STATS_DEFAULT_TOP),
        };
        let rows = db
            .event_stats(&table, &filter, column, top, &mut log)
            .await?;
        let names = vec![column.to_owned(), "count".to_owned()];
        let mut w = writers(&args, format, &names, &section.zone, tty)?;
        for (key, n) in rows {
            let key = match key {
                None => Cell::Null,
                Some(k) if matches!(column, "ts" | "received") => {
                    Cell::Time(k.to_string().parse().unwrap_or_default())
                }
                Some(siemstress_common::db::search::StatKey::Int(i)) => Cell::Int(i),
                Some(siemstress_common::db::search::StatKey::Text(s)) => Cell::Text(s.into()),
            };
            w.row(&[key, Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))])?;
        }
        w.finish()?;
        db.close().await;
        return Ok(());
    }

    let fields = fields.unwrap_or_else(|| {
        if args.shows_table(format) {
            TABLE_FIELDS.iter().map(|s| (*s).to_owned()).collect()
        } else {
            all_fields()
        }
    });
    let limit = match args.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None if args.shows_table(format) => Some(TABLE_DEFAULT_LIMIT),
        None => None,
    };
    let mut w = writers(&args, format, &fields, &section.zone, tty)?;
    let section_name = args.section.clone();
    let columns: Vec<Option<Column>> = fields.iter().map(|f| column_of(f)).collect();
    let mut sink = |row: &EventRef<'_>| -> io::Result<()> {
        // The cells borrow the row: on the stack (a Vec only for a long --fields).
        const ON_STACK: usize = ROW_COLUMNS.len() + 1;
        if columns.len() <= ON_STACK {
            let mut cells = [const { Cell::Null }; ON_STACK];
            for (slot, &c) in cells.iter_mut().zip(&columns) {
                *slot = cell(row, c, &section_name);
            }
            return w.row(&cells[..columns.len()]);
        }
        let cells: Vec<Cell<'_>> = columns
            .iter()
            .map(|&c| cell(row, c, &section_name))
            .collect();
        w.row(&cells)
    };
    let n = db
        .search_events(&table, &filter, limit, &mut log, &mut sink)
        .await?;
    w.finish()?;
    if args.limit.is_none() && limit == Some(n) {
        // The table is collected in memory, hence its default limit; say
        // what it left out (also into a pipe, where nobody sees the end).
        let total = db.count_events(&table, &filter, &mut log).await?;
        if total > n {
            eprintln!(
                "siemquery: the table shows the first {n} of {total} rows ({} left out); \
                 --limit N for more (0: all), or --format ndjson|csv",
                total - n
            );
        }
    }
    db.close().await;
    Ok(())
}

/// The stdout writer (unless `--silent`) and the `--json FILE` writer
/// (`--json -`: the JSON array on stdout, instead of the format's output).
fn writers(
    args: &Args,
    format: Format,
    fields: &[String],
    zone: &siemstress_common::time::Zone,
    tty: bool,
) -> anyhow::Result<Tee> {
    let mut all: Vec<Box<dyn RowWriter>> = Vec::new();
    let stdout = || io::BufWriter::with_capacity(64 * 1024, io::stdout());
    if !args.silent && !args.json_to_stdout() {
        let out = stdout();
        all.push(match format {
            Format::Table => Box::new(Table::new(out, fields, *zone, tty)),
            Format::Json => Box::new(JsonArray::new(out, fields.to_vec())),
            Format::Ndjson => Box::new(Ndjson::new(out, fields.to_vec())),
            Format::Csv => Box::new(Csv::new(out, fields, args.excel_safe)?),
        });
    }
    match &args.json {
        Some(_) if args.json_to_stdout() => {
            all.push(Box::new(JsonArray::new(stdout(), fields.to_vec())));
        }
        Some(path) => {
            let f = siemstress_common::files::create(path)
                .with_context(|| format!("--json {}: cannot create", path.display()))?;
            all.push(Box::new(JsonArray::new(
                io::BufWriter::new(f),
                fields.to_vec(),
            )));
        }
        None => {}
    }
    Ok(Tee(all))
}

/// Every column plus `section`.
fn all_fields() -> Vec<String> {
    ROW_COLUMNS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::once("section".to_owned()))
        .collect()
}

/// The event column of field `f` (validated by [`Args::fields`]); `None`
/// is `section`.
fn column_of(f: &str) -> Option<Column> {
    Column::named(f)
}

/// The cell of column `c` (`None`: the section).
fn cell<'a>(r: &EventRef<'a>, c: Option<Column>, section: &'a str) -> Cell<'a> {
    match c.map(|c| r.get(c)) {
        None => Cell::Text(section.into()),
        Some(FieldValue::Null) => Cell::Null,
        Some(FieldValue::Int(i)) => Cell::Int(i),
        Some(FieldValue::Time(t)) => Cell::Time(t),
        Some(FieldValue::Text(s)) => Cell::Text(s.into()),
        Some(FieldValue::Json(s)) => Cell::Json(s.into()),
    }
}
