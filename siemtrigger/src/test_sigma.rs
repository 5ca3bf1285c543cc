//! `siemtrigger --test-sigma FILE [LOG]`: a Sigma rule file run over given
//! lines, for rule authors, without the user's database. The lines go
//! through `siemparse` (the one next to this binary) into a SQLite file in a
//! temporary directory, with the config's sections and decoders, into the
//! section of the rule's table; then every rule of the file is replayed over
//! them from empty state, including the detections a correlation refers to
//! (which otherwise run only inside it), and each alert is printed with the
//! lines it covers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use siemstress_common::config::Config;
use siemstress_common::db::Database;
use siemstress_common::display::Escaped;
use siemstress_common::ident::Ident;

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
    set.add_sigma_outcomes(
        rule_file,
        sigma::translate_file_every_detection(rule_file, &mapping),
        &actions,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (_, why) in &set.skipped {
        eprintln!("siemtrigger: {}: {why}", rule_file.display());
    }
    if set.rules.is_empty() {
        bail!(
            "--test-sigma {}: no rule translated (reasons above)",
            rule_file.display()
        );
    }
    // Every rule of one file reads one table (a correlation's rules must).
    let table = set.rules[0].table().map(|t| t.as_str().to_owned());
    let section = section_of(config, table.as_deref());

    let dir = tempfile::Builder::new()
        .prefix("siemtrigger-test-sigma")
        .tempdir()
        .context("a temporary directory")?;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    ingest(&url, &section, log, config_path)?;

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
    let rows = match &table {
        Some(t) => db.max_id(&Ident::new(t, "event table")?).await?,
        None => 0,
    };
    writeln!(
        out,
        "{} lines into section {section} (table {}); {} rules from {}",
        rows,
        table.as_deref().unwrap_or(&section),
        set.rules.len(),
        rule_file.display()
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
        eprintln!(
            "siemtrigger: warning: {}",
            crate::runner::missing_tables(&summary.missing)
        );
    }
    db.close().await;
    Ok(if set.skipped.is_empty() { 0 } else { 1 })
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

/// Stores the lines of `log` (stdin if `None`) into `url`'s section `section`.
fn ingest(
    url: &str,
    section: &str,
    log: Option<&Path>,
    config_path: Option<&Path>,
) -> anyhow::Result<()> {
    let exe = siemparse();
    let mut cmd = Command::new(&exe);
    if let Some(c) = config_path {
        cmd.arg("-c").arg(c);
    }
    cmd.args(["--db", url, "-q", "-s", section]);
    cmd.stdin(match log {
        Some(p) => Stdio::from(
            std::fs::File::open(p).with_context(|| format!("--test-sigma: {}", p.display()))?,
        ),
        None => Stdio::inherit(),
    });
    // Its messages (a bad line, an unknown section) go to our stderr.
    cmd.stdout(Stdio::null());
    let status = cmd
        .status()
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
