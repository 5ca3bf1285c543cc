//! `siemtrigger`: evaluates correlation rules over the event tables on event
//! time, stores alerts, and runs their actions. `--once` for cron,
//! `--interval 60s` as a daemon.

#![forbid(unsafe_code)]

mod actions;
mod engine;
mod explain;
mod rules;
mod runner;
mod sigma;
mod snapshot;
mod test_sigma;

/// mimalloc: glibc's malloc and free were ~15% of a run over many rules
/// (perf), the engine allocating keys, captures and windows per row.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use siemstress_common::cli::ConnectArgs;
use siemstress_common::db::Backend;
use siemstress_common::diag;
use siemstress_common::timerange::{parse_point, parse_range};

use crate::rules::RuleSet;
use crate::runner::{Mode, Runner};

/// Exit codes, in one place.
mod exit {
    /// Done (alerts or not).
    pub const OK: u8 = 0;
    /// `--once`: another instance holds the lease; nothing was evaluated.
    pub const LEASE_HELD: u8 = 1;
    /// An error.
    pub const ERROR: u8 = 2;
}

/// Evaluate correlation rules (SEC semantics, on event time) and raise alerts.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  siemtrigger -c siemstress.toml --once            # from cron\n  \
                  siemtrigger -c siemstress.toml --interval 60s    # daemon\n  \
                  siemtrigger --replay --from 2024-05-01 --to 2024-05-02 --rule ssh-bruteforce\n  \
                  siemtrigger --explain 42\n  \
                  siemtrigger --list-rules                         # the rules in force, with their origin\n  \
                  siemtrigger --import-sigma rules/sigma/          # Sigma rules as TOML, or why not\n\n\
                  Exit status: 0 done, 1 another instance holds the lease (--once) or a Sigma rule \
                  was not translated (--import-sigma), 2 error."
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(flatten)]
    generate: siemstress_common::cli::GenerateArgs,

    /// Evaluate everything new since the last run, then exit (for cron)
    #[arg(long, group = "mode")]
    once: bool,

    /// Run as a daemon, evaluating every DURATION (e.g. 60s); SIGTERM stops cleanly
    #[arg(long, value_name = "DURATION", group = "mode")]
    interval: Option<String>,

    /// Evaluate what is new and print the alerts, storing nothing (no state, no actions)
    #[arg(long, group = "mode")]
    dry_run: bool,

    /// Re-evaluate a time range from scratch state and print the alerts, touching no state
    #[arg(long, group = "mode", requires_all = ["from", "to"])]
    replay: bool,

    /// Start of the --replay range (inclusive): ISO 8601, YYYYmmddHHMMSS or YYmmddHHMMSS,
    /// in the zone of [section.default] (else the local zone) unless an offset is given
    #[arg(long, value_name = "TIME")]
    from: Option<String>,

    /// End of the --replay range (exclusive)
    #[arg(long, value_name = "TIME")]
    to: Option<String>,

    /// Show why an alert fired: rule, window, key and the events counted
    #[arg(long, value_name = "ALERT_ID", group = "mode")]
    explain: Option<i64>,

    /// Show, for a time range, the keys of a rule that came closest to firing
    #[arg(long, value_name = "NAME", group = "mode")]
    explain_rule: Option<String>,

    /// Time range of --explain-rule: START-END or START/END (as --from/--to)
    #[arg(long, value_name = "START-END")]
    range: Option<String>,

    /// Time range of --explain-rule: the last DURATION of event time (default 24h)
    #[arg(long, value_name = "DURATION", conflicts_with = "range")]
    last: Option<String>,

    /// Load and validate the rules and the actions, print them, and exit
    #[arg(long, group = "mode")]
    check: bool,

    /// Print every rule (name, type, severity, table, origin: built-in or file:line) and exit
    #[arg(long, group = "mode")]
    list_rules: bool,

    /// Translate Sigma rules (a .yml file, or a directory of them) and print the
    /// equivalent TOML rules; a rule that cannot be translated is named on stderr
    /// with the reason (exit status 1 if any)
    #[arg(long, value_name = "FILE|DIR", group = "mode")]
    import_sigma: Option<std::path::PathBuf>,

    /// Run the rules of a Sigma file over LOG (default: stdin) and print what
    /// each rule (and each detection a correlation refers to) raised, with the
    /// lines; the lines are stored by siemparse in a temporary SQLite file, not
    /// in the configured database
    #[arg(long, value_name = "FILE", group = "mode")]
    test_sigma: Option<std::path::PathBuf>,

    /// With --test-sigma: the log file (default: stdin)
    #[arg(value_name = "LOG")]
    log: Option<std::path::PathBuf>,

    /// Only these rules (repeatable)
    #[arg(long = "rule", value_name = "NAME")]
    rules: Vec<String>,

    /// Output of printed alerts, explanations and --list-rules
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Print every stored alert on stdout
    #[arg(short, long)]
    verbose: bool,

    /// No summary on stderr
    #[arg(short, long)]
    quiet: bool,

    /// Lease time-to-live (renewed at every batch); another instance takes over after it
    #[arg(long, value_name = "DURATION")]
    lease_ttl: Option<String>,

    /// Wait this long after reading the newest snapshot run before evaluating
    /// snapshot_change rules (default: 1s on MariaDB, 0 on SQLite). Event rows no longer
    /// need it: they are evaluated up to the sources' watermark ([trigger])
    #[arg(long, value_name = "DURATION")]
    settle: Option<String>,

    /// Event ids per transaction (tests use small ones)
    #[arg(long, value_name = "N", default_value_t = runner::CHUNK, hide = true)]
    chunk: i64,
}

/// Where rules come from, for the messages that find none.
const NO_RULES_HINT: &str = "the built-in rules run when the config names none, \
     unless [rules] builtin = false; add rule files with [rules] paths";

/// A rule's table for listings: the table, `snapshot:NAME`, or `*` (every table).
fn rule_table(r: &rules::Rule) -> String {
    match (r.table(), r.snapshot()) {
        (Some(t), _) => t.as_str().to_owned(),
        (None, Some(s)) => format!("snapshot:{}", s.snapshot),
        (None, None) => "*".to_owned(),
    }
}

/// `--list-rules`: one aligned line per rule, with a header; with
/// `--format json`, one array of objects with the same fields.
fn list_rules(rules: &[rules::Rule], format: Format) -> std::io::Result<()> {
    use std::io::Write;
    if format == Format::Json {
        let list: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "type": r.type_name(), "severity": r.severity,
                    "table": rule_table(r), "origin": r.origin_label(),
                })
            })
            .collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{:#}", serde_json::Value::Array(list))?;
        return out.flush();
    }
    let rows: Vec<[String; 5]> = rules
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.type_name().to_owned(),
                r.severity.clone(),
                rule_table(r),
                r.origin_label(),
            ]
        })
        .collect();
    let header = ["NAME", "TYPE", "SEVERITY", "TABLE", "ORIGIN"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Rule files are the admin's; escaped all the same.
            let cell = siemstress_common::display::escape(cell);
            if i + 1 == row.len() {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    out.flush()
}

/// How alerts and explanations are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(code) = siemstress_common::cli::run_generate::<Args>(&args.generate) {
        return code;
    }
    let Some(rt) = siemstress_common::cli::runtime("siemtrigger") else {
        return ExitCode::from(exit::ERROR);
    };
    match rt.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if siemstress_common::cli::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            diag!("siemtrigger: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn duration(flag: &str, v: &str) -> anyhow::Result<Duration> {
    siemstress_common::time::parse_duration(v).with_context(|| flag.to_owned())
}

/// A duration that must be longer than 0 (`--interval 0s` would evaluate in
/// a busy loop; a lease of 0 would expire as it is taken).
fn positive_duration(flag: &str, v: &str) -> anyhow::Result<Duration> {
    let d = duration(flag, v)?;
    if d.is_zero() {
        bail!("{flag} {v}: must be longer than 0");
    }
    Ok(d)
}

/// The rules (only those of `--rule`, if given) and the actions of `config`,
/// checked; skipped rule files are reported unless `-q`.
fn load_rules(
    args: &Args,
    config: &siemstress_common::config::Config,
) -> anyhow::Result<(RuleSet, actions::Actions)> {
    let mut rules = RuleSet::load(config)?;
    let action_cfg = actions::Actions::from_config(config)?;
    for (path, why) in &rules.skipped {
        if !args.quiet {
            diag!("siemtrigger: skipping {}: {why}", path.display());
        }
    }
    if !args.rules.is_empty() {
        for name in &args.rules {
            if rules.get(name).is_none() {
                bail!("--rule {name}: no such rule");
            }
        }
        rules.rules.retain(|r| args.rules.contains(&r.name));
    }
    Ok((rules, action_cfg))
}

/// `--import-sigma FILE|DIR`: the TOML of every Sigma rule that translates
/// (and loads), on stdout; the others on stderr with their reason.
fn import_sigma(
    path: &std::path::Path,
    config: &siemstress_common::config::Config,
) -> anyhow::Result<u8> {
    use std::io::Write;
    let mapping = sigma::Mapping::load(config).map_err(anyhow::Error::msg)?;
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let actions: Vec<String> = config.actions.keys().cloned().collect();
    let mut out = std::io::stdout().lock();
    let (mut ok, mut refused) = (0usize, 0usize);
    for f in &files {
        let mut set = RuleSet::default();
        set.add_sigma(f, &mapping, &actions)?;
        for (_, why) in &set.skipped {
            diag!("siemtrigger: {}: {why}", f.display());
            refused += 1;
        }
        // Read once more: add_sigma has just read it.
        for outcome in sigma::translate_file(f, &mapping)? {
            if let Ok(t) = outcome
                && set.get(&t.name).is_some()
            {
                // Escaped: a line feed in the file name would end the
                // comment, and the rest of the name would be rules.
                let from = siemstress_common::display::escape(&f.to_string_lossy()).into_owned();
                writeln!(out, "# from {from}\n{}", t.toml)?;
                ok += 1;
            }
        }
    }
    out.flush()?;
    diag!("siemtrigger: {ok} Sigma rules translated, {refused} not");
    Ok(if refused > 0 { 1 } else { exit::OK })
}

/// SIGHUP: the config, rules and actions read again and checked in full;
/// another database needs a restart.
fn reload(args: &Args, db_url: &str) -> anyhow::Result<(RuleSet, actions::Actions)> {
    let config = args.connect.load_config()?;
    if config.database_url(args.connect.db.as_deref())? != db_url {
        bail!("the database changed ([database] url): restart siemtrigger to use another one");
    }
    load_rules(args, &config)
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let config = args.connect.load_config()?;
    if args.interval.is_some() && !args.dry_run && !args.replay {
        // The daemon waits out database outages itself (runner::daemon).
        siemstress_common::db::options::retrying_daemon();
    }
    // Times on the command line are read as siemquery reads them without -s.
    let zone = config.section("default", None)?.zone;
    if let Some(path) = &args.import_sigma {
        return import_sigma(path, &config);
    }
    if let (Some(log), None) = (&args.log, &args.test_sigma) {
        bail!(
            "{}: a log file argument is only read with --test-sigma FILE",
            log.display()
        );
    }
    if let Some(path) = &args.test_sigma {
        return test_sigma::run(
            path,
            args.log.as_deref(),
            &config,
            args.connect.config.as_deref(),
        )
        .await;
    }
    let (mut rules, mut action_cfg) = load_rules(&args, &config)?;

    if args.list_rules {
        list_rules(&rules.rules, args.format)?;
        if rules.rules.is_empty() {
            diag!("siemtrigger: no rules ({})", NO_RULES_HINT);
        }
        return Ok(exit::OK);
    }
    if args.check {
        action_cfg.check_programs()?;
        let mut out = std::io::stdout().lock();
        for r in &rules.rules {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                r.name,
                r.type_name(),
                r.severity,
                rule_table(r),
                siemstress_common::display::Escaped(&r.origin)
            )?;
        }
        drop(out);
        diag!(
            "siemtrigger: {} rules and {} actions are valid",
            rules.rules.len(),
            action_cfg.len()
        );
        if !rules.skipped.is_empty() {
            let mut files: Vec<&std::path::Path> =
                rules.skipped.iter().map(|(p, _)| p.as_path()).collect();
            files.dedup();
            diag!(
                "siemtrigger: {} rules not loaded, from {} files (listed above)",
                rules.skipped.len(),
                files.len()
            );
        }
        check_tables(&args.connect, &config, &rules.rules).await;
        return Ok(exit::OK);
    }

    let evaluates = args.once || args.interval.is_some() || args.dry_run || args.replay;
    if evaluates && !args.quiet {
        if rules.builtin > 0 && rules.builtin == rules.rules.len() {
            diag!(
                "siemtrigger: using the {} built-in rules; see --list-rules",
                rules.builtin
            );
        } else if rules.builtin > 0 {
            diag!(
                "siemtrigger: using {} rules, {} of them built-in; see --list-rules",
                rules.rules.len(),
                rules.builtin
            );
        }
    }
    if evaluates && rules.rules.is_empty() {
        // Nothing to evaluate is not an error (a cron job keeps quiet
        // otherwise), but it is never silent.
        diag!(
            "siemtrigger: warning: no rules loaded, nothing evaluated ({})",
            NO_RULES_HINT
        );
        return Ok(exit::OK);
    }

    let db = args.connect.connect(&config).await?;

    if let Some(id) = args.explain {
        let found = explain::alert(&db, &rules, id, args.format).await?;
        db.close().await;
        return Ok(if found { exit::OK } else { exit::ERROR });
    }
    if let Some(name) = &args.explain_rule {
        let rule = rules
            .get(name)
            .with_context(|| format!("--explain-rule {name}: no such rule"))?
            .clone();
        let (from, to) = match (&args.range, &args.last) {
            (Some(r), _) => parse_range(r, &zone).context("--range")?,
            (None, last) => {
                let d = duration("--last", last.as_deref().unwrap_or("24h"))?;
                let to = siemstress_common::time::now_ms() + 1;
                (to - d.as_millis() as i64, to)
            }
        };
        explain::rule(&db, &rule, from, to, args.format).await?;
        db.close().await;
        return Ok(exit::OK);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let hup = Arc::new(tokio::sync::Notify::new());
    spawn_signal_handler(stop.clone(), wake.clone(), hup.clone())?;
    let db_url = config.database_url(args.connect.db.as_deref())?;

    let settle = match &args.settle {
        Some(s) => duration("--settle", s)?,
        None if db.backend() == Backend::Mysql => Duration::from_secs(1),
        None => Duration::ZERO,
    };
    let (lateness, idle) = config.trigger.watermark()?;
    let interval = args
        .interval
        .as_deref()
        .map(|i| positive_duration("--interval", i))
        .transpose()?;
    let ttl = match &args.lease_ttl {
        Some(t) => positive_duration("--lease-ttl", t)?,
        None => interval
            .map(|i| (i * 3).max(Duration::from_secs(60)))
            .unwrap_or(Duration::from_secs(60)),
    };

    let mode = if args.replay {
        let from =
            parse_point(args.from.as_deref().unwrap_or_default(), &zone).context("--from")?;
        let to = parse_point(args.to.as_deref().unwrap_or_default(), &zone).context("--to")?;
        if to <= from {
            bail!("--to must be after --from");
        }
        Mode::Replay { from, to }
    } else if args.dry_run {
        Mode::DryRun
    } else if args.once || interval.is_some() {
        Mode::Live {
            holder: siemstress_common::holder::holder_id(),
            ttl_ms: ttl.as_millis() as i64,
        }
    } else {
        bail!(
            "say what to do: --once (cron), --interval 60s (daemon), --dry-run, --replay, \
             --explain ID, --explain-rule NAME or --check"
        );
    };
    let print = matches!(mode, Mode::DryRun | Mode::Replay { .. }) || args.verbose;
    let summary_on = !args.quiet && std::io::stderr().is_terminal();
    loop {
        let runner = Runner {
            db: &db,
            rules: &rules.rules,
            actions: &action_cfg,
            mode: mode.clone(),
            stop: stop.clone(),
            settle,
            print: print.then_some(args.format),
            chunk: args.chunk,
            lateness_ms: lateness.as_millis() as i64,
            idle_ms: idle.as_millis() as i64,
            verbose: args.verbose,
            collected: None,
        };
        let code = match interval {
            None => match runner.once().await? {
                Some(s) => {
                    if summary_on {
                        diag!("siemtrigger: {s}");
                    } else if !args.quiet {
                        if !s.missing.is_empty() {
                            diag!(
                                "siemtrigger: warning: {}",
                                runner::missing_tables(&s.missing)
                            );
                        }
                        if !s.overflow.is_empty() {
                            diag!(
                                "siemtrigger: warning: {}",
                                runner::overflow_text(&s.overflow)
                            );
                        }
                    }
                    exit::OK
                }
                None => exit::LEASE_HELD,
            },
            Some(every) => match runner.daemon(every, &wake, &hup, args.quiet).await? {
                runner::DaemonEnd::Stopped => exit::OK,
                runner::DaemonEnd::Reload => {
                    // The lease stays held: the next runner has the same holder.
                    drop(runner);
                    match reload(&args, &db_url) {
                        Ok((r, a)) => {
                            if !args.quiet {
                                diag!(
                                    "siemtrigger: SIGHUP: reloaded {} rules and {} actions",
                                    r.rules.len(),
                                    a.len()
                                );
                            }
                            (rules, action_cfg) = (r, a);
                        }
                        Err(e) => diag!(
                            "siemtrigger: SIGHUP: reload failed, keeping the current rules and \
                             actions: {e:#}"
                        ),
                    }
                    continue;
                }
            },
        };
        runner.release().await;
        db.close().await;
        return Ok(code);
    }
}

/// `--check`: a warning for each rule whose `table` is not an event table
/// of the database (a typo never fires); the database is not created.
async fn check_tables(
    connect: &ConnectArgs,
    config: &siemstress_common::config::Config,
    rules: &[rules::Rule],
) {
    if rules.iter().all(|r| r.table().is_none()) {
        return;
    }
    let tables = match connect.connect_existing(config).await {
        Ok(db) => {
            let t = db.event_tables().await;
            db.close().await;
            t
        }
        Err(e) => Err(e),
    };
    match tables {
        Ok(tables) => {
            for r in rules {
                if let Some(t) = r.table()
                    && !tables.iter().any(|name| name == t.as_str())
                {
                    diag!(
                        "siemtrigger: warning: rule {} reads table {t}, which does not exist \
                         (event tables: {})",
                        r.name,
                        if tables.is_empty() {
                            "none yet".to_owned()
                        } else {
                            tables.join(", ")
                        }
                    );
                }
            }
        }
        Err(e) => diag!("siemtrigger: warning: the rules' tables were not checked: {e}"),
    }
}

/// SIGTERM/SIGINT stop (after the current chunk); SIGHUP asks the daemon
/// to reload (`hup`), and is ignored by the other modes.
fn spawn_signal_handler(
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    hup: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            hup.notify_one();
        }
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
        wake.notify_waiters();
        wake.notify_one();
    });
    Ok(())
}
