//! `siemparse --gather KIND [--root DIR]` and
//! `cmd | siemparse --snapshot NAME [--key FIELD]...`: one snapshot run.
//!
//! The run's rows are gathered (or parsed from stdin) first and then stored
//! with the run in one transaction. A gatherer that fails records a run with
//! status `failed` and its message (so the report shows it), then exits 2.
//! Per-item problems (an unreadable file, a process whose fds are hidden)
//! are not failures: they are rows with `error`, or warnings on stderr.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::Context;
use siemstress_common::cli::ConnectArgs;
use siemstress_common::config::Config;
use siemstress_common::db::snapshots as storage;
use siemstress_common::diag;
use siemstress_common::display::Escaped;
use siemstress_common::snapshot::{self, diff};

use crate::gather;

/// The snapshot flags of `siemparse`.
#[derive(Debug, Default)]
pub struct Opts {
    pub gather: Option<String>,
    pub root: Option<PathBuf>,
    pub snapshot: Option<String>,
    pub keys: Vec<String>,
    pub quiet: bool,
}

/// Gathers or reads one snapshot and stores it as a run.
pub async fn run(connect: &ConnectArgs, config: &Config, opts: Opts) -> anyhow::Result<()> {
    let name = opts
        .snapshot
        .clone()
        .or_else(|| opts.gather.clone())
        .unwrap_or_default();
    snapshot::validate_name(&name)?;
    if let Some(kind) = &opts.gather
        && !gather::KINDS.contains(&kind.as_str())
    {
        anyhow::bail!(
            "unknown gatherer {kind:?}: use one of {}",
            gather::KINDS.join(", ")
        );
    }
    let gather_config = &config.gather;
    let db = connect.connect(config).await?;
    let host = snapshot::local_host();
    let taken = siemstress_common::time::now_ms();

    let stats = std::env::var_os("SIEMPARSE_GATHER_STATS").is_some();
    let started = std::time::Instant::now();
    let mut warnings = Vec::new();
    // Read before gathering: `files` and `suid` reuse hashes from it (on
    // SQLite it is read on another thread while they walk), and the store
    // writes only the rows that differ from it.
    let mut previous = match storage::sqlite_current_reader(&db, &name, &host) {
        Some(read) if matches!(opts.gather.as_deref(), Some("files" | "suid")) => {
            gather::Previous::Loading(std::thread::spawn(move || Ok(read()?)))
        }
        _ => gather::Previous::Ready(storage::current_rows(&db, &name, &host).await?),
    };
    let result = match &opts.gather {
        Some(kind) => {
            let root = opts.root.clone().unwrap_or_else(|| PathBuf::from("/"));
            match gather::rootfs::RootFs::new(&root) {
                Ok(fs) => {
                    let mut ctx = gather::Ctx {
                        fs,
                        config: gather_config,
                        previous,
                        warnings: Vec::new(),
                    };
                    let r = gather::gather(kind, &mut ctx).await;
                    warnings = ctx.warnings;
                    previous = ctx.previous;
                    r
                }
                Err(e) => Err(anyhow::Error::from(e).context("--root")),
            }
        }
        None => read_stdin(&opts.keys)
            .map(|rows| rows.into_iter().map(snapshot::RawRow::from_row).collect()),
    };
    if !opts.quiet {
        // Warnings name files and users that others created: escaped.
        for w in &warnings {
            diag!("siemparse: warning: {}", Escaped(w));
        }
    }
    let mut rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            let msg = format!("{e:#}");
            storage::store_failed(&db, &name, &host, taken, &msg).await?;
            db.close().await;
            return Err(e.context(format!("snapshot {name}: run recorded as failed")));
        }
    };
    // `files` and `suid` list each path once: their keys are unique.
    let unique = matches!(opts.gather.as_deref(), Some("files" | "suid"));
    let renamed = if unique {
        0
    } else {
        snapshot::dedupe_raw_keys(&mut rows)
    };
    if renamed > 0 && !opts.quiet {
        diag!("siemparse: warning: {renamed} duplicate keys got a \" #N\" suffix");
    }
    let message = (!warnings.is_empty()).then(|| warnings.join("; "));
    let gathered = started.elapsed();
    let current = previous.into_current()?;
    let run = storage::NewRun {
        name: &name,
        host: &host,
        taken,
        rows: &rows,
        message: message.as_deref(),
    };
    let id = storage::store_raw_run(&db, &run, current).await?;
    if stats {
        // For benchmarks (scripts/bench-snapshot-files.sh).
        diag!(
            "siemparse: timing: {} rows, gather (with reading the previous run) {:.3} s, store {:.3} s",
            rows.len(),
            gathered.as_secs_f64(),
            (started.elapsed() - gathered).as_secs_f64()
        );
    }
    if !opts.quiet && std::io::stderr().is_terminal() {
        let run = storage::run(&db, id)
            .await?
            .context("stored run vanished")?;
        let d = diff::diff_run(&db, run, &diff::Excludes::default()).await?;
        let count = |k: diff::ChangeKind| d.changes.iter().filter(|c| c.change == k).count();
        match &d.previous {
            None => diag!(
                "siemparse: snapshot {name}: run {id}, {} rows (baseline)",
                rows.len()
            ),
            Some(p) => diag!(
                "siemparse: snapshot {name}: run {id}, {} rows; vs run {}: {} added, {} removed, {} changed",
                rows.len(),
                p.id,
                count(diff::ChangeKind::Added),
                count(diff::ChangeKind::Removed),
                count(diff::ChangeKind::Changed),
            ),
        }
    }
    db.close().await;
    Ok(())
}

fn read_stdin(keys: &[String]) -> anyhow::Result<Vec<snapshot::Row>> {
    let mut text = String::new();
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("read stdin")?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    Ok(snapshot::input::rows_from_json(&text, keys)?)
}
