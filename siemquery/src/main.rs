//! `siemquery`: filtered search over one event table (`-s`, `--table`) or
//! every one merged in time order, with table, JSON, NDJSON and CSV output,
//! counts and top-N statistics (per section and in total).
//!
//! Exit status: 0 when the query ran (with or without rows; a closed pipe
//! also counts), 2 for any error (bad flag, bad time, unknown section,
//! database failure), with a one-line message on stderr.

#![forbid(unsafe_code)]

mod alerts;
mod args;
mod dbstats;
mod fmt;
mod follow;
mod output;
mod report;
mod snapshot;
mod sysstatus;

use siemstress_common::cli::is_broken_pipe;
use siemstress_common::diag;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use siemstress_common::db::Database;
use siemstress_common::db::search::{
    EventRef, FieldValue, ROW_COLUMNS, SectionTable, StatKey, stats_column,
};
use siemstress_common::db::sql::Value;
use siemstress_common::event::Column;
use siemstress_common::ident::Ident;

use crate::args::{Args, Format};
use crate::output::{Cell, Csv, JsonArray, Lines, Ndjson, RowWriter, Table, Tee};

/// Rows shown by the table format when `--limit` is not given.
const TABLE_DEFAULT_LIMIT: u64 = 1000;
/// Values shown by `--stats` when `--limit` is not given.
const STATS_DEFAULT_TOP: u64 = 10;
/// Columns of a followed table (one line per row), as [`TABLE_FIELDS`].
const FOLLOW_FIELDS: [&str; 6] = ["ts", "section", "host", "process", "pid", "message"];
/// Columns of the table format when `--fields` is not given (`section`
/// only when the search reads every table).
const TABLE_FIELDS: [&str; 9] = [
    "id",
    "ts",
    "section",
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
            // clap's message on one line, without its "error: " prefix and
            // usage block: the missing flag and the possible values stay.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            let line = one_line(&message.join("\n"));
            diag!(
                "siemquery: {} (see --help)",
                line.trim_start_matches("error: ")
            );
            // A diff's exit bits must not be mistaken for a usage error.
            let snapshot =
                std::env::args().any(|a| a == "--snapshot" || a.starts_with("--snapshot="));
            return ExitCode::from(if snapshot { 16 } else { 2 });
        }
    };
    if let Some(code) = siemstress_common::cli::run_generate::<Args>(&args.generate) {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            diag!("siemquery: cannot start: {e}");
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
    if args.stats_db {
        return dbstats::main(&args, &rt);
    }
    exit_code(rt.block_on(run(args)))
}

/// A mode's outcome as the exit status: 0, also when stdout's reader has
/// gone (`| head`); otherwise 2 after a one-line message.
pub(crate) fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            diag!("siemquery: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// `--verbose`: a statement with its bound values, on stderr.
fn log_sql(verbose: bool, sql: &str, bound: &[Value<'_>]) {
    if verbose {
        diag!("siemquery: SQL: {sql}");
        for (i, b) in bound.iter().enumerate() {
            diag!("siemquery:   ?{} = {b}", i + 1);
        }
    }
}

/// `--verbose` with `--follow`: where a follow starts.
fn log_follow(verbose: bool, what: &str, after: Option<i64>) {
    if verbose {
        diag!(
            "siemquery: following {what} after id {}",
            after.unwrap_or(0)
        );
    }
}

/// Errors stay on one line (regex and database messages may span several).
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The section label of the totals of `--count` and `--stats` over every
/// table (no section name has parentheses).
const TOTAL: &str = "(total)";

async fn run(args: Args) -> anyhow::Result<()> {
    let opened = args
        .open(|zone| {
            let filter = args.filter(zone)?;
            let stats = args.stats.as_deref().map(stats_column).transpose()?;
            Ok((filter, stats, args.fields()?))
        })
        .await?;
    let (config, zone, db) = (opened.config, opened.zone, opened.db);
    let (filter, stats, fields) = opened.prepared;
    let from = search_tables(&args, &config, &db).await?;
    // Without -s/--table: every table, each row and count with its section.
    let every = args.section.is_none() && args.table.is_none();

    let verbose = args.verbose;
    let mut log = |sql: &str, bound: &[Value<'_>]| log_sql(verbose, sql, bound);

    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let format = args
        .format
        .unwrap_or(if tty { Format::Table } else { Format::Ndjson });

    if args.count {
        if every {
            let names = vec!["section".to_owned(), "count".to_owned()];
            let mut w = writers(&args, format, &names, &zone, tty, None)?;
            let mut total = 0u64;
            for t in &from {
                let n = db
                    .count_events(&t.table, &filter, &mut log)
                    .await
                    .context(section_context(t))?;
                total += n;
                w.row(&[Cell::Text(t.section.as_str().into()), count_cell(n)])?;
            }
            w.row(&[Cell::Text(TOTAL.into()), count_cell(total)])?;
            w.finish()?;
        } else {
            let n = db.count_events(&from[0].table, &filter, &mut log).await?;
            if !args.silent {
                let mut out = stdout.lock();
                writeln!(out, "{n}")?;
                out.flush()?;
            }
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
        let mut names = vec![column.to_owned(), "count".to_owned()];
        if every {
            names.insert(0, "section".to_owned());
        }
        let mut w = writers(&args, format, &names, &zone, tty, None)?;
        // Every table: the top values of each section, then of all together.
        let groups: Vec<(&str, &[SectionTable])> = if every {
            from.iter()
                .map(|t| (t.section.as_str(), std::slice::from_ref(t)))
                .chain(std::iter::once((TOTAL, &from[..])))
                .collect()
        } else {
            vec![("", &from[..])]
        };
        for (label, tables) in groups {
            let rows = db
                .event_stats(tables, &filter, column, top, &mut log)
                .await?;
            for (key, n) in rows {
                let key = match key {
                    None => Cell::Null,
                    Some(k) if matches!(column, "ts" | "received") => {
                        Cell::Time(k.to_string().parse().unwrap_or_default())
                    }
                    Some(StatKey::Int(i)) => Cell::Int(i),
                    Some(StatKey::Text(s)) => Cell::Text(s.into()),
                };
                if every {
                    w.row(&[Cell::Text(label.into()), key, count_cell(n)])?;
                } else {
                    w.row(&[key, count_cell(n)])?;
                }
            }
        }
        w.finish()?;
        db.close().await;
        return Ok(());
    }

    if args.follow {
        follow::check(&args, format)?;
    }
    let fields = fields.unwrap_or_else(|| {
        if args.shows_table(format) {
            let shown: &[&str] = if args.follow {
                &FOLLOW_FIELDS
            } else {
                &TABLE_FIELDS
            };
            shown
                .iter()
                .filter(|f| every || **f != "section")
                .map(|s| (*s).to_owned())
                .collect()
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
    let mut w = writers(&args, format, &fields, &zone, tty, None)?;
    let columns: Vec<Option<Column>> = fields.iter().map(|f| column_of(f)).collect();
    if args.follow {
        // The resume points come first: a row stored during the period's
        // search is shown once, by the follow.
        let mut at = Vec::with_capacity(from.len());
        for t in &from {
            let last = db.max_id(&t.table).await?;
            at.push(SectionTable {
                after: Some(last),
                ..t.clone()
            });
        }
        for t in &at {
            log_follow(
                args.verbose,
                &format!("{} (table {})", t.section, t.table),
                t.after,
            );
        }
        if args.last.is_some() || args.range.is_some() {
            let period: Vec<SectionTable> = at
                .iter()
                .map(|t| SectionTable {
                    after: None,
                    upto: t.after,
                    ..t.clone()
                })
                .collect();
            let mut sink = |row: &EventRef<'_>| emit(&mut w, &columns, row);
            db.search_events(&period, &filter, limit, &mut log, &mut sink)
                .await?;
        }
        w.flush()?;
        return follow_events(&args, &config, &db, every, at, &filter, &columns, &mut w).await;
    }
    let mut sink = |row: &EventRef<'_>| emit(&mut w, &columns, row);
    let n = db
        .search_events(&from, &filter, limit, &mut log, &mut sink)
        .await?;
    w.finish()?;
    if args.limit.is_none() && limit == Some(n) {
        // The table is collected in memory, hence its default limit; say
        // what it left out (also into a pipe, where nobody sees the end).
        let mut total = 0;
        for t in &from {
            total += db.count_events(&t.table, &filter, &mut log).await?;
        }
        if total > n {
            diag!(
                "siemquery: the table shows the first {n} of {total} rows ({} left out); \
                 --limit N for more (0: all), or --format ndjson|csv",
                total - n
            );
        }
    }
    db.close().await;
    Ok(())
}

/// Writes `row` as the cells of `columns`.
fn emit(w: &mut dyn RowWriter, columns: &[Option<Column>], row: &EventRef<'_>) -> io::Result<()> {
    // The cells borrow the row: on the stack (a Vec only for a long --fields).
    const ON_STACK: usize = ROW_COLUMNS.len() + 1;
    if columns.len() <= ON_STACK {
        let mut cells = [const { Cell::Null }; ON_STACK];
        for (slot, &c) in cells.iter_mut().zip(columns) {
            *slot = cell(row, c);
        }
        return w.row(&cells[..columns.len()]);
    }
    let cells: Vec<Cell<'_>> = columns.iter().map(|&c| cell(row, c)).collect();
    w.row(&cells)
}

/// `--follow` over events: every poll reads, in each table, the rows
/// between its resume point and its highest id at that moment, merged in
/// time order; without -s, tables that appear are followed from their
/// first row. Runs until stdout closes (exit 0) or an error.
#[allow(clippy::too_many_arguments)]
async fn follow_events(
    args: &Args,
    config: &siemstress_common::config::Config,
    db: &Database,
    every: bool,
    mut at: Vec<SectionTable>,
    filter: &siemstress_common::filter::Filter,
    columns: &[Option<Column>],
    w: &mut dyn RowWriter,
) -> anyhow::Result<()> {
    let verbose = args.verbose;
    let mut log = |sql: &str, bound: &[Value<'_>]| log_sql(verbose, sql, bound);
    let mut backoff = follow::Backoff::default();
    let mut wait = follow::POLL_MIN;
    for poll in 0u64.. {
        follow::sleep(wait).await?;
        if every && poll % 5 == 0 {
            for t in every_table(config, db).await? {
                if !at.iter().any(|a| a.table == t.table) {
                    log_follow(
                        verbose,
                        &format!("{} (table {})", t.section, t.table),
                        Some(0),
                    );
                    at.push(SectionTable {
                        after: Some(0),
                        ..t
                    });
                }
            }
        }
        let mut changed = Vec::new();
        for t in &mut at {
            let top = db.max_id(&t.table).await?;
            if Some(top) > t.after {
                changed.push(SectionTable {
                    upto: Some(top),
                    ..t.clone()
                });
                t.after = Some(top);
            }
        }
        let mut n = 0;
        if !changed.is_empty() {
            let mut sink = |row: &EventRef<'_>| emit(&mut *w, columns, row);
            n = db
                .search_events(&changed, filter, None, &mut log, &mut sink)
                .await?;
            w.flush()?;
        }
        wait = backoff.next(n);
    }
    Ok(())
}

fn count_cell(n: u64) -> Cell<'static> {
    Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn section_context(t: &SectionTable) -> String {
    format!("section {} (table {})", t.section, t.table)
}

/// The event tables a search reads: the table of `-s SECTION` or
/// `--table`, or without either every registered event table, each under
/// its section (the first config section that names the table, else the
/// table's name). A table that is missing is an error that says what
/// exists.
pub(crate) async fn search_tables(
    args: &Args,
    config: &siemstress_common::config::Config,
    db: &Database,
) -> anyhow::Result<Vec<SectionTable>> {
    let one = match (&args.table, &args.section) {
        (Some(t), s) => {
            let table = Ident::new(t, "--table")?;
            // siemstress's own tables (alerts, ...) have other columns.
            siemstress_common::db::events::check_event_table(&table, "--table")?;
            Some((s.clone().unwrap_or_else(|| t.clone()), table))
        }
        (None, Some(s)) => Some((s.clone(), config.section(s, None)?.table)),
        (None, None) => None,
    };
    if let Some((section, table)) = one {
        if !db.event_table_exists(&table).await? {
            if let Some(existing) = db.case_clash(&table).await? {
                bail!(
                    "table {table} does not exist; table {existing} does (names are case-sensitive)"
                );
            }
            let known = db.event_tables().await?;
            bail!(
                "unknown section {section:?}: table {table} does not exist ({}; see --table)",
                if known.is_empty() {
                    "nothing ingested yet".to_owned()
                } else {
                    format!("event tables: {}", known.join(", "))
                }
            );
        }
        return Ok(vec![SectionTable::new(section, table)]);
    }
    let from = every_table(config, db).await?;
    if from.is_empty() && !args.follow {
        bail!(
            "no event tables yet: nothing has been ingested into this database \
             (e.g. siemparse -s auth < /var/log/auth.log)"
        );
    }
    Ok(from)
}

/// Every registered event table that exists, under its section label,
/// sorted by label.
async fn every_table(
    config: &siemstress_common::config::Config,
    db: &Database,
) -> anyhow::Result<Vec<SectionTable>> {
    let mut labels: Vec<(Ident, String)> = Vec::new();
    for name in config.section.keys() {
        if let Ok(s) = config.section(name, None) {
            labels.push((s.table, name.clone()));
        }
    }
    let mut from = Vec::new();
    for name in db.event_tables().await? {
        let table = Ident::new(&name, "a table in event_tables")?;
        if !db.event_table_exists(&table).await? {
            diag!("siemquery: event table {table} is registered but missing; skipped");
            continue;
        }
        let section = labels
            .iter()
            .find(|(t, _)| *t == table)
            .map_or_else(|| name.clone(), |(_, s)| s.clone());
        from.push(SectionTable::new(section, table));
    }
    from.sort_by(|a, b| a.section.cmp(&b.section));
    Ok(from)
}

/// The stdout writer (unless `--silent`) and the `--json FILE` writer
/// (`--json -`: the JSON array on stdout, instead of the format's output).
fn writers(
    args: &Args,
    format: Format,
    fields: &[String],
    zone: &siemstress_common::time::Zone,
    tty: bool,
    line_order: Option<&[usize]>,
) -> anyhow::Result<Tee> {
    let mut all: Vec<Box<dyn RowWriter>> = Vec::new();
    let stdout = || io::BufWriter::with_capacity(64 * 1024, io::stdout());
    if !args.silent && !args.json_to_stdout() {
        let out = stdout();
        all.push(match format {
            // A followed table is never complete: one line per row.
            Format::Table if args.follow => {
                let all: Vec<usize> = (0..fields.len()).collect();
                Box::new(Lines::new(
                    out,
                    fields,
                    line_order.unwrap_or(&all),
                    *zone,
                    args.look(tty),
                ))
            }
            Format::Table => Box::new(Table::new(out, fields, *zone, args.look(tty))),
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
fn cell<'a>(r: &EventRef<'a>, c: Option<Column>) -> Cell<'a> {
    match c.map(|c| r.get(c)) {
        None => r.section.map_or(Cell::Null, |s| Cell::Text(s.into())),
        Some(FieldValue::Null) => Cell::Null,
        Some(FieldValue::Int(i)) => Cell::Int(i),
        Some(FieldValue::Time(t)) => Cell::Time(t),
        Some(FieldValue::Text(s)) => Cell::Text(s.into()),
        Some(FieldValue::Json(s)) => Cell::Json(s.into()),
    }
}
