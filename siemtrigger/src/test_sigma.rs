//! `siemtrigger --test-sigma FILE [LOG]`: a Sigma rule file run over given
//! lines, for rule authors, without the user's database. The lines go
//! through `siemparse` (the one next to this binary) into a SQLite file in a
//! temporary directory, with the config's sections and decoders, into the
//! section of each table the file's rules read; then every rule of the file
//! is replayed over them from empty state, including the detections a
//! correlation refers to (which otherwise run only inside it), and each
//! alert is printed with the lines it covers. SIGINT and SIGTERM stop it
//! with the temporary directory removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use siemstress_common::config::Config;
use siemstress_common::db::Database;
use siemstress_common::db::options::sqlite_url_of;
use siemstress_common::diag;
use siemstress_common::display::Escaped;
use siemstress_common::ident::Ident;
use tokio::signal::unix::{SignalKind, signal};

use crate::engine::{NewAlert, rfc3339};
use crate::rules::RuleSet;
use crate::runner::{Mode, Runner};
use crate::sigma;

/// Runs `--test-sigma`; the exit status is 0 if every rule of the file
/// translated, 1 if not (as `--import-sigma`).
pub async fn run(
    rule_file: &Path,
    log: Option<&Path>,
    config: &Config,
    config_path: Option<&Path>,
) -> anyhow::Result<u8> {
    let mapping = sigma::Mapping::load(config).map_err(anyhow::Error::msg)?;
    let actions: Vec<String> = config.actions.keys().cloned().collect();
    let mut set = RuleSet::default();
    let outcomes = sigma::translate_file_every_detection(rule_file, &mapping)
        .with_context(|| format!("--test-sigma: cannot read {}", rule_file.display()))?;
    set.add_sigma_outcomes(rule_file, outcomes, &actions)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (_, why) in &set.skipped {
        diag!("siemtrigger: {}: {why}", rule_file.display());
    }
    if set.rules.is_empty() {
        bail!(
            "--test-sigma {}: no rule translated (reasons above)",
            rule_file.display()
        );
    }
    // The lines go into every table a rule of the file reads (rules of one
    // file may have different logsources); a rule of every table sees them
    // there, or in the default section if no rule names a table.
    let mut targets: Vec<(String, Option<String>)> = Vec::new();
    for rule in &set.rules {
        if let Some(t) = rule.table().map(|t| t.as_str().to_owned())
            && !targets.iter().any(|(_, have)| have.as_deref() == Some(&t))
        {
            targets.push((section_of(config, Some(&t)), Some(t)));
        }
    }
    if targets.is_empty() {
        targets.push((section_of(config, None), None));
    }

    let dir = tempfile::Builder::new()
        .prefix("siemtrigger-test-sigma")
        .tempdir()
        .context("--test-sigma: a temporary directory")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // On a signal the test's future is dropped (its siemparse killed, its
    // database closed) and the directory removed below: an exit by the
    // signal itself would leave it behind.
    let outcome = tokio::select! {
        r = test(&set, &targets, dir.path(), log, config_path, rule_file) => r,
        _ = term.recv() => Err(anyhow::anyhow!("--test-sigma: stopped by SIGTERM")),
        _ = int.recv() => Err(anyhow::anyhow!("--test-sigma: stopped by SIGINT")),
    };
    let removed = dir.close();
    outcome?;
    removed.context("--test-sigma: removing the temporary directory")?;
    Ok(if set.skipped.is_empty() { 0 } else { 1 })
}

/// Stores the lines into `targets` (section, table) of a database in `dir`,
/// replays the rules over them and prints the alerts.
async fn test(
    set: &RuleSet,
    targets: &[(String, Option<String>)],
    dir: &Path,
    log: Option<&Path>,
    config_path: Option<&Path>,
    rule_file: &Path,
) -> anyhow::Result<()> {
    let url = sqlite_url_of(&dir.join("test.db"))?;
    let lines = match log {
        Some(p) => p.to_owned(),
        None => stdin_to_file(dir.join("lines.log")).await?,
    };
    for (section, _) in targets {
        ingest(&url, section, &lines, config_path).await?;
    }

    let db = Database::connect(&url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let no_actions = crate::actions::Actions::default();
    let runner = Runner {
        db: &db,
        rules: &set.rules,
        actions: &no_actions,
        mode: Mode::Replay {
            from: i64::MIN,
            to: i64::MAX,
        },
        stop,
        settle: Duration::ZERO,
        print: None,
        chunk: crate::runner::CHUNK,
        lateness_ms: 0,
        idle_ms: 0,
        verbose: false,
        collected: Some(Default::default()),
    };
    let summary = runner.once().await?.context("evaluation")?;
    let alerts: Vec<NewAlert> = runner
        .collected
        .as_ref()
        .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())))
        .unwrap_or_default();

    let mut out = std::io::stdout().lock();
    // The same lines went into each table: the first one's count says it.
    let rows = match &targets[0].1 {
        Some(t) => db.max_id(&Ident::new(t, "event table")?).await?,
        None => 0,
    };
    let stored: Vec<String> = targets
        .iter()
        .map(|(section, table)| {
            format!(
                "section {section} (table {})",
                table.as_deref().unwrap_or(section)
            )
        })
        .collect();
    writeln!(
        out,
        "{rows} lines into {}; {} rules from {}",
        stored.join(", "),
        set.rules.len(),
        siemstress_common::display::escape(&rule_file.to_string_lossy())
    )?;
    for rule in &set.rules {
        let mine: Vec<_> = alerts.iter().filter(|a| a.rule == rule.name).collect();
        writeln!(
            out,
            "\n{} ({}): {} alert{}",
            rule.name,
            if rule.type_name() == "single" {
                "detection"
            } else {
                "correlation"
            },
            mine.len(),
            if mine.len() == 1 { "" } else { "s" }
        )?;
        for a in mine {
            writeln!(
                out,
                "  {} [{}] {} (count {}, since {})",
                rfc3339(a.ts),
                Escaped(&a.key),
                Escaped(&a.message),
                a.count,
                rfc3339(a.first_ts)
            )?;
            let t = Ident::new(&a.event_table, "event table")?;
            for e in db.events_by_id(&t, &a.events).await? {
                writeln!(out, "    #{} {}", e.id, Escaped(&e.raw))?;
            }
        }
    }
    out.flush()?;
    if !summary.missing.is_empty() {
        diag!(
            "siemtrigger: warning: {}",
            crate::runner::missing_tables(&summary.missing)
        );
    }
    db.close().await;
    Ok(())
}

/// The section whose table is `table` (the first such in the config; else
/// a section named after the table, which gets that table).
fn section_of(config: &Config, table: Option<&str>) -> String {
    let Some(t) = table else {
        return "default".into();
    };
    config
        .section
        .keys()
        .find(|name| {
            config
                .section(name, None)
                .is_ok_and(|s| s.table.as_str() == t)
        })
        .cloned()
        .unwrap_or_else(|| t.to_owned())
}

/// The `siemparse` next to this binary, else the one on `PATH`.
fn siemparse() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("siemparse"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("siemparse"))
}

/// Copies stdin into `to` (once: each section's siemparse reads the file).
/// A thread of its own reads it: a blocking read in the runtime's pool would
/// hold up the exit on a signal until the writer closes the pipe.
async fn stdin_to_file(to: PathBuf) -> anyhow::Result<PathBuf> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = to.clone();
    std::thread::spawn(move || {
        let copied = std::fs::File::create(&path)
            .and_then(|mut f| std::io::copy(&mut std::io::stdin().lock(), &mut f));
        let _ = tx.send(copied);
    });
    rx.await
        .context("--test-sigma: reading the lines from stdin")?
        .context("--test-sigma: reading the lines from stdin")?;
    Ok(to)
}

/// Stores the lines of the file `lines` into `url`'s section `section`.
async fn ingest(
    url: &str,
    section: &str,
    lines: &Path,
    config_path: Option<&Path>,
) -> anyhow::Result<()> {
    let exe = siemparse();
    let mut cmd = tokio::process::Command::new(&exe);
    if let Some(c) = config_path {
        cmd.arg("-c").arg(c);
    }
    cmd.args(["--db", url, "-q", "-s", section]);
    cmd.stdin(Stdio::from(
        std::fs::File::open(lines).with_context(|| format!("--test-sigma: {}", lines.display()))?,
    ));
    // Its messages (a bad line, an unknown section) go to our stderr.
    cmd.stdout(Stdio::null());
    // Stopped by a signal: the child goes with us.
    cmd.kill_on_drop(true);
    let status = cmd
        .status()
        .await
        .with_context(|| format!("--test-sigma: running {}", exe.display()))?;
    if !status.success() {
        bail!(
            "--test-sigma: {} could not store the lines (exit status {})",
            exe.display(),
            status.code().unwrap_or(-1)
        );
    }
    Ok(())
}
