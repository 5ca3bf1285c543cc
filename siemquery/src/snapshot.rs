//! `siemquery --snapshot NAME [--diff] [--run ID] [--exclude GLOB]...`:
//! shows the latest run of a snapshot (per host, or run ID), or its diff
//! against the previous successful run of the same name and host.
//!
//! Exit status (the one table of it, as AIDE): 0 when nothing changed (or
//! when showing rows), else the OR of 1 = added, 2 = removed, 4 = changed;
//! 16 for any error, so that a cron script can branch on the bits.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siemstress_common::db::Database;
use siemstress_common::db::snapshots;
use siemstress_common::diag;
use siemstress_common::snapshot::diff::{self, Change, ChangeKind, Excludes};
use siemstress_common::snapshot::unified;
use siemstress_common::snapshot::{Run, STATUS_OK, exit, validate_name};
use siemstress_common::time::Zone;

use crate::args::{Args, Format};
use crate::output::Look;
use crate::output::{Cell, Csv, RowWriter, Table, rfc3339_utc};

/// Runs `--snapshot` and maps the outcome to the exit status.
pub fn main(args: &Args, rt: &tokio::runtime::Runtime) -> ExitCode {
    match rt.block_on(run(args)) {
        Ok(bits) => ExitCode::from(bits),
        Err(e) => {
            diag!("siemquery: {}", crate::one_line(&format!("{e:#}")));
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<u8> {
    let name = args.snapshot.as_deref().unwrap_or_default();
    validate_name(name)?;
    let excludes = Excludes::new(&args.exclude)?;
    let opened = args.open(|zone| refuse_row_filters(args, zone)).await?;
    let (db, zone) = (opened.db, opened.zone);
    let result = show(args, &db, name, &excludes, &zone).await;
    db.close().await;
    result
}

async fn show(
    args: &Args,
    db: &Database,
    name: &str,
    excludes: &Excludes,
    zone: &Zone,
) -> anyhow::Result<u8> {
    let mut runs: Vec<Run> = match args.run_id {
        Some(id) => {
            let run = snapshots::run(db, id)
                .await?
                .filter(|r| r.name == name)
                .with_context(|| format!("snapshot {name} has no run {id}"))?;
            if run.status != STATUS_OK {
                bail!(
                    "run {id} of snapshot {name} {}: {}",
                    run.status,
                    run.message.as_deref().unwrap_or("no message")
                );
            }
            vec![run]
        }
        None => snapshots::latest_per_host(db, name).await?,
    };
    if !args.host.is_empty() {
        runs.retain(|r| args.host.contains(&r.host));
    }
    if runs.is_empty() {
        bail!(
            "snapshot {name}: no successful run (gather one with siemparse --gather or --snapshot)"
        );
    }
    let tty = io::stdout().is_terminal();
    let format = args
        .format
        .unwrap_or(if tty { Format::Table } else { Format::Ndjson });
    let several_hosts = runs.len() > 1;

    if !args.diff {
        let mut out = Vec::new();
        for run in &runs {
            let rows = snapshots::rows(db, run).await?;
            out.extend(rows.into_iter().map(|r| (run.clone(), r)));
        }
        ignore_broken_pipe(write_rows(
            format,
            &out,
            several_hosts,
            zone,
            args.look(tty),
            args.excel_safe,
        ))?;
        return Ok(exit::NONE);
    }

    let mut changes: Vec<Change> = Vec::new();
    for run in runs {
        let d = diff::diff_run(db, run, excludes).await?;
        if format == Format::Table || io::stderr().is_terminal() {
            let r = &d.run;
            match &d.previous {
                None => diag!(
                    "siemquery: snapshot {name} on {}: run {} ({}) is the first: a baseline, no changes",
                    r.host,
                    r.id,
                    zone.format_ms(r.taken)
                ),
                Some(p) => diag!(
                    "siemquery: snapshot {name} on {}: run {} ({}) vs run {} ({}): {} changes",
                    r.host,
                    r.id,
                    zone.format_ms(r.taken),
                    p.id,
                    zone.format_ms(p.taken),
                    d.changes.len()
                ),
            }
        }
        changes.extend(d.changes);
    }
    let bits = diff::exit_bits(&changes);
    ignore_broken_pipe(write_changes(
        format,
        &changes,
        several_hosts,
        zone,
        args.look(tty),
        args.excel_safe,
    ))?;
    Ok(bits)
}

/// A closed stdout (`| head`) does not change the exit status.
/// The flags of event searches do not apply to a snapshot (they were
/// ignored): refused, naming them. `--host` picks the host.
fn refuse_row_filters(args: &Args, zone: &Zone) -> anyhow::Result<()> {
    let mut filter = args.filter(zone)?;
    filter.host = Default::default();
    if filter.has_conditions()
        || args.last.is_some()
        || args.range.is_some()
        || args.limit.is_some()
        || args.count
        || args.stats.is_some()
        || args.table.is_some()
    {
        bail!(
            "--limit, --count, --stats, --table, --last, --range and row filters (--grep, \
             --shost, ...) do not apply to --snapshot: it shows a whole run or diff (--host \
             picks the host, --exclude leaves changes out of a diff, -s only the time zone)"
        );
    }
    Ok(())
}

fn ignore_broken_pipe(r: io::Result<()>) -> anyhow::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A JSON value as a cell: strings bare, numbers as integers, the rest as JSON.
fn value_cell(v: Option<&Value>) -> Cell<'_> {
    match v {
        None | Some(Value::Null) => Cell::Null,
        Some(Value::String(s)) => Cell::Text(s.into()),
        Some(Value::Number(n)) if n.is_i64() => Cell::Int(n.as_i64().unwrap_or_default()),
        Some(other) => Cell::Json(other.to_string().into()),
    }
}

fn write_changes(
    format: Format,
    changes: &[Change],
    several_hosts: bool,
    zone: &Zone,
    look: Look,
    excel_safe: bool,
) -> io::Result<()> {
    let out = io::BufWriter::new(io::stdout().lock());
    match format {
        Format::Json => json_array(out, changes.iter().map(|c| json!(c))),
        Format::Ndjson => ndjson(out, changes.iter().map(|c| json!(c))),
        Format::Table | Format::Csv => {
            let table = format == Format::Table;
            let mut fields: Vec<String> = if table {
                vec!["change", "key", "column", "old", "new"]
            } else {
                vec![
                    "snapshot", "host", "run", "change", "key", "column", "old", "new", "row",
                ]
            }
            .into_iter()
            .map(str::to_owned)
            .collect();
            if table && several_hosts {
                fields.insert(0, "host".into());
            }
            let mut w: Box<dyn RowWriter> = if table {
                Box::new(Table::new(out, &fields, *zone, look))
            } else {
                Box::new(Csv::new(out, &fields, excel_safe)?)
            };
            for c in changes {
                let row = c.row.as_ref().map(|r| Cell::Json(r.to_string().into()));
                let (old, new) = match c.change {
                    // Stored text shows as a unified diff in the new column.
                    ChangeKind::Changed
                        if table && c.column.as_deref().is_some_and(unified::is_text_column) =>
                    {
                        let text = |v: &Option<Value>| match v {
                            Some(Value::String(s)) => Some(s.clone()),
                            _ => None,
                        };
                        let d = unified::unified(
                            &c.key,
                            text(&c.old).as_deref(),
                            text(&c.new).as_deref(),
                        );
                        (Cell::Null, Cell::EscapedLines(d.into()))
                    }
                    ChangeKind::Changed => (value_cell(c.old.as_ref()), value_cell(c.new.as_ref())),
                    ChangeKind::Added if table => (Cell::Null, row.clone().unwrap_or(Cell::Null)),
                    ChangeKind::Removed if table => (row.clone().unwrap_or(Cell::Null), Cell::Null),
                    _ => (Cell::Null, Cell::Null),
                };
                let cells: Vec<Cell> = fields
                    .iter()
                    .map(|f| match f.as_str() {
                        "snapshot" => Cell::Text(c.snapshot.as_str().into()),
                        "host" => Cell::Text(c.host.as_str().into()),
                        "run" => Cell::Int(c.run),
                        "change" => Cell::Text(c.change.as_str().into()),
                        "key" => Cell::Text(c.key.as_str().into()),
                        "column" => c
                            .column
                            .as_deref()
                            .map_or(Cell::Null, |s| Cell::Text(s.into())),
                        "old" => old.clone(),
                        "new" => new.clone(),
                        "row" => row.clone().unwrap_or(Cell::Null),
                        _ => Cell::Null,
                    })
                    .collect();
                w.row(&cells)?;
            }
            w.finish()
        }
    }
}

fn write_rows(
    format: Format,
    rows: &[(Run, siemstress_common::snapshot::Row)],
    several_hosts: bool,
    zone: &Zone,
    look: Look,
    excel_safe: bool,
) -> io::Result<()> {
    let out = io::BufWriter::new(io::stdout().lock());
    let record = |(run, r): &(Run, siemstress_common::snapshot::Row)| {
        json!({
            "snapshot": run.name,
            "host": run.host,
            "run": run.id,
            "taken": rfc3339_utc(run.taken),
            "key": r.key,
            "row": r.value,
        })
    };
    match format {
        Format::Json => json_array(out, rows.iter().map(record)),
        Format::Ndjson => ndjson(out, rows.iter().map(record)),
        Format::Table | Format::Csv => {
            // Columns: the key, then every field of the rows in first-seen
            // order (bookkeeping columns only in JSON).
            let mut columns: Vec<String> = Vec::new();
            for (_, r) in rows {
                if let Value::Object(m) = &r.value {
                    for k in m.keys() {
                        if !diff::is_bookkeeping(k) && !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                } else if !columns.iter().any(|c| c == "value") {
                    columns.push("value".into());
                }
            }
            let mut fields = vec!["key".to_owned()];
            if several_hosts || format == Format::Csv {
                fields.insert(0, "host".into());
            }
            fields.extend(columns.iter().cloned());
            let mut w: Box<dyn RowWriter> = if format == Format::Table {
                Box::new(Table::new(out, &fields, *zone, look))
            } else {
                Box::new(Csv::new(out, &fields, excel_safe)?)
            };
            for (run, r) in rows {
                let mut cells = Vec::with_capacity(fields.len());
                if fields[0] == "host" {
                    cells.push(Cell::Text(run.host.as_str().into()));
                }
                cells.push(Cell::Text(r.key.as_str().into()));
                for c in &columns {
                    cells.push(match &r.value {
                        Value::Object(m) => value_cell(m.get(c)),
                        other if c == "value" => value_cell(Some(other)),
                        _ => Cell::Null,
                    });
                }
                w.row(&cells)?;
            }
            w.finish()
        }
    }
}

fn json_array(mut out: impl Write, items: impl Iterator<Item = Value>) -> io::Result<()> {
    let all: Vec<Value> = items.collect();
    serde_json::to_writer_pretty(&mut out, &all)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn ndjson(mut out: impl Write, items: impl Iterator<Item = Value>) -> io::Result<()> {
    for v in items {
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
