//! `siemquery --report FILE.html [--last 24h | --range A-B] [--mail]`: one
//! self-contained HTML file (inline CSS, inline SVG charts, a few lines of
//! inline JS for table filters; nothing is fetched) with
//!
//! - events per hour (per day beyond 7 days) for every event table,
//! - top source hosts and users of failed logins,
//! - the alerts of the period,
//! - the snapshot changes of the period (every run vs the one before it),
//!   and failed gather runs,
//! - a file integrity summary of the `files` and `suid` snapshots.
//!
//! `--mail` sends it through `[actions.mail]` (`smtp`, `from`, `to`) as an
//! HTML mail with a plain-text summary: the daily digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;
use siemstress_common::db::Database;
use siemstress_common::db::alerts::AlertQuery;
use siemstress_common::db::report::FailedBy;
use siemstress_common::db::snapshots;
use siemstress_common::diag;
use siemstress_common::ident::Ident;
use siemstress_common::snapshot::diff::{self, Change, ChangeKind, Excludes};
use siemstress_common::snapshot::unified;
use siemstress_common::snapshot::{STATUS_OK, STATUS_PRUNED};
use siemstress_common::time::{Zone, now_ms};

use crate::args::Args;

/// Changes listed in detail (the counts always cover all of them).
const MAX_CHANGES_LISTED: usize = 500;
/// Alerts listed in detail.
const MAX_ALERTS_LISTED: u64 = 500;
/// Entries of a "top" list.
const TOP: usize = 10;

/// Runs `--report` and maps the outcome to the exit status (0 or 2).
pub fn main(args: &Args, rt: &tokio::runtime::Runtime) -> ExitCode {
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            diag!("siemquery: {}", crate::one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Report {
    pub host: String,
    pub zone_name: String,
    pub from: i64,
    pub to: i64,
    pub generated: i64,
    /// Bucket width in ms (an hour, or a day for long periods).
    pub bucket: i64,
    /// Per event table: event counts per bucket.
    pub events: Vec<(String, Vec<i64>)>,
    pub failed_by_host: Vec<(String, i64)>,
    pub failed_by_user: Vec<(String, i64)>,
    pub alerts: Vec<Alert>,
    pub alert_total: i64,
    /// Per snapshot run of the period that had a predecessor.
    pub runs: Vec<RunSummary>,
    pub failed_runs: Vec<(String, String, i64, String)>,
    pub changes: Vec<Change>,
    pub integrity: Vec<Integrity>,
    /// Failed logins per source host, up to [`STATUS_SOURCES`].
    pub failed_by_source: Vec<(String, i64)>,
    /// Rows of the latest `hygiene` and `packages` run of each host:
    /// (snapshot, host, key, row).
    pub findings: Vec<(String, String, String, Value)>,
    /// This machine at report time.
    pub status: crate::sysstatus::SysStatus,
    zone: Option<Zone>,
}

/// Hygiene findings and package failures listed per table.
const MAX_FINDINGS: usize = 200;

/// Source hosts listed in the status section's failed logins.
const STATUS_SOURCES: usize = 50;

#[derive(Debug)]
pub struct Alert {
    pub rule: String,
    pub severity: String,
    pub key: String,
    pub ts: i64,
    pub count: i64,
    pub message: String,
}

#[derive(Debug)]
pub struct RunSummary {
    pub name: String,
    pub host: String,
    pub id: i64,
    pub taken: i64,
    pub baseline: bool,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

/// The latest state of a `files`/`suid` snapshot on one host.
#[derive(Debug)]
pub struct Integrity {
    pub name: String,
    pub host: String,
    pub taken: i64,
    pub entries: usize,
    pub hashed: usize,
    pub errors: Vec<(String, String)>,
    pub changed_keys: BTreeMap<String, Vec<String>>,
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let path = args.report.clone().unwrap_or_default();
    let opened = args
        .open(|zone| {
            let filter = args.filter(zone)?;
            let to = filter.until.unwrap_or_else(now_ms);
            let from = filter.since.unwrap_or(to - 24 * 3_600_000);
            if from >= to {
                bail!("--report: the period is empty");
            }
            Ok((from, to))
        })
        .await?;
    let (config, db, zone) = (opened.config, opened.db, opened.zone);
    let (from, to) = opened.prepared;
    let report = gather(&db, from, to, zone).await;
    db.close().await;
    let report = report?;
    let html = render(&report);
    let pdf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pdf"));
    if pdf {
        write_pdf(&html, &path)?;
    } else {
        siemstress_common::files::create(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, html.as_bytes()))
            .with_context(|| format!("--report {}", path.display()))?;
    }
    if args.mail {
        send_mail(&config, &report, &html).context("--mail")?;
    }
    Ok(())
}

/// Collects the report's data for `[from, to)`.
pub async fn gather(db: &Database, from: i64, to: i64, zone: Zone) -> anyhow::Result<Report> {
    let bucket: i64 = if to - from > 7 * 86_400_000 {
        86_400_000
    } else {
        3_600_000
    };
    let buckets = usize::try_from((to - from + bucket - 1) / bucket).unwrap_or(0);
    let mut r = Report {
        host: siemstress_common::snapshot::local_host(),
        zone_name: zone.name(),
        from,
        to,
        generated: now_ms(),
        bucket,
        zone: Some(zone),
        ..Default::default()
    };

    let mut by_host: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_user: BTreeMap<String, i64> = BTreeMap::new();
    for name in db.event_tables().await.context("list event tables")? {
        let Ok(t) = Ident::new(&name, "event table") else {
            continue;
        };
        if !db.event_table_exists(&t).await? {
            continue;
        }
        let mut series = vec![0i64; buckets];
        for (b, n) in db.event_buckets(&t, from, to, bucket).await? {
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| series.get_mut(b)) {
                *slot += n;
            }
        }
        r.events.push((name.clone(), series));
        for (by, acc) in [
            (FailedBy::SourceHost, &mut by_host),
            (FailedBy::User, &mut by_user),
        ] {
            for (k, n) in db.failed_logins(&t, from, to, by).await? {
                *acc.entry(k).or_insert(0) += n;
            }
        }
    }
    r.failed_by_source = top(by_host.clone(), STATUS_SOURCES);
    r.failed_by_host = top(by_host, TOP);
    r.failed_by_user = top(by_user, TOP);

    let period = AlertQuery {
        since: Some(from),
        until: Some(to),
        limit: Some(MAX_ALERTS_LISTED),
        ..AlertQuery::default()
    };
    r.alert_total = db.count_alerts(&period).await?;
    r.alerts = db
        .alerts(&period, &mut |_, _| {})
        .await?
        .into_iter()
        .map(|a| Alert {
            rule: a.rule,
            severity: a.severity,
            key: a.key,
            ts: a.ts,
            count: a.count,
            message: a.message,
        })
        .collect();

    // Snapshot runs of the period, each against the one before it.
    let none = Excludes::default();
    for run in snapshots::runs_between(db, from, to).await? {
        if run.status == STATUS_PRUNED {
            continue; // removed by retention, only holding rows of later runs
        }
        if run.status != STATUS_OK {
            r.failed_runs.push((
                run.name.clone(),
                run.host.clone(),
                run.taken,
                run.message.clone().unwrap_or_default(),
            ));
            continue;
        }
        let d = diff::diff_run(db, run, &none).await?;
        let count = |k: ChangeKind| d.changes.iter().filter(|c| c.change == k).count();
        r.runs.push(RunSummary {
            name: d.run.name.clone(),
            host: d.run.host.clone(),
            id: d.run.id,
            taken: d.run.taken,
            baseline: d.previous.is_none(),
            added: count(ChangeKind::Added),
            removed: count(ChangeKind::Removed),
            changed: count(ChangeKind::Changed),
        });
        r.changes.extend(d.changes);
    }

    // File integrity: the latest files/suid run on each host.
    for name in ["files", "suid"] {
        for run in snapshots::latest_per_host(db, name).await? {
            let rows = snapshots::rows(db, &run).await?;
            let mut i = Integrity {
                name: name.to_owned(),
                host: run.host.clone(),
                taken: run.taken,
                entries: rows.len(),
                hashed: rows
                    .iter()
                    .filter(|r| r.value.get("sha256").is_some_and(Value::is_string))
                    .count(),
                errors: rows
                    .iter()
                    .filter_map(|r| {
                        r.value
                            .get("error")
                            .and_then(Value::as_str)
                            .map(|e| (r.key.clone(), e.to_owned()))
                    })
                    .collect(),
                changed_keys: BTreeMap::new(),
            };
            for c in r
                .changes
                .iter()
                .filter(|c| c.snapshot == name && c.host == run.host)
            {
                let what = match c.change {
                    ChangeKind::Changed => c.column.clone().unwrap_or_default(),
                    k => k.as_str().to_owned(),
                };
                let list = i.changed_keys.entry(c.key.clone()).or_default();
                if !list.contains(&what) {
                    list.push(what);
                }
            }
            r.integrity.push(i);
        }
    }

    // Hygiene findings and package-integrity failures: their latest runs.
    for name in ["hygiene", "packages"] {
        for run in snapshots::latest_per_host(db, name).await? {
            for row in snapshots::rows(db, &run).await? {
                r.findings
                    .push((name.to_owned(), run.host.clone(), row.key, row.value));
            }
        }
    }
    r.status = crate::sysstatus::read();
    Ok(r)
}

fn top(m: BTreeMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Stored text for the page: escaped for people as the terminal output is
/// (controls and bidi overrides as `\x1b` / `\u{202e}`: an RLO in a user
/// name reversed its chart label; `less report.html` sent the ESC to the
/// terminal), then for HTML.
fn esc(s: &str) -> String {
    let s = siemstress_common::display::escape(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Report {
    fn time(&self, ms: i64) -> String {
        let z = self.zone.unwrap_or_else(Zone::local);
        let s = z.format_ms(ms);
        // 2024-03-01T12:00:00+01:00 → 2024-03-01 12:00
        s.get(..16).unwrap_or(&s).replace('T', " ")
    }

    fn total_events(&self) -> i64 {
        self.events.iter().flat_map(|(_, s)| s.iter()).sum()
    }

    /// One line for the mail subject and the page's summary.
    pub fn headline(&self) -> String {
        let failed: i64 = self.failed_by_host.iter().map(|(_, n)| n).sum();
        format!(
            "{} events, {} failed logins, {} alerts, {} snapshot changes, {} failed gather runs",
            self.total_events(),
            failed,
            self.alert_total,
            self.changes.len(),
            self.failed_runs.len()
        )
    }
}

const CSS: &str = r#"
:root { --fg:#1d2433; --muted:#5b6475; --line:#d8dde6; --bar:#3b6fd8; --bad:#c63b3b; --warn:#c88a12; --ok:#2f8a4c; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.muted { color: var(--muted); }
nav a { margin-right: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card b { display: block; font-size: 22px; }
.card.bad b { color: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td code, td.mono { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.added { color: var(--ok); } .removed { color: var(--bad); } .changed { color: var(--warn); }
figure { margin: 8px 0 16px; } figcaption { font-weight: 600; margin-bottom: 2px; }
svg.chart { display: block; width: 100%; height: 150px; }
svg.chart rect.bar { fill: var(--bar); } svg.chart rect.bar:hover { fill: #1d4fb0; }
svg.chart text { font-size: 10px; fill: var(--muted); }
svg.chart line { stroke: var(--line); }
svg.hbar { display: block; width: 100%; }
svg.hbar rect { fill: var(--bad); } svg.hbar text { font-size: 12px; fill: var(--fg); }
input.filter { margin: 4px 0; padding: 4px 8px; width: 280px; border: 1px solid var(--line); border-radius: 4px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
pre.diff { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 6px 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
pre.diff .add { color: var(--ok); } pre.diff .del { color: var(--bad); } pre.diff .hunk { color: var(--muted); }
td.warn { color: var(--bad); font-weight: 600; }
@media print { nav, input.filter { display: none; } }
"#;

/// Filters for tables (type to narrow rows) and a layout self-check that
/// records each chart's rendered size on `<body data-charts>`.
const JS: &str = r#"
(function () {
  document.querySelectorAll('input.filter').forEach(function (input) {
    var table = document.getElementById(input.dataset.table);
    input.addEventListener('input', function () {
      var q = input.value.toLowerCase();
      table.querySelectorAll('tbody tr').forEach(function (tr) {
        tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  });
  var sizes = [];
  document.querySelectorAll('svg.chart, svg.hbar').forEach(function (s) {
    var r = s.getBoundingClientRect();
    sizes.push(Math.round(r.width) + 'x' + Math.round(r.height));
  });
  document.body.setAttribute('data-charts', sizes.join(','));
})();
"#;

/// The browsers that can print the report to PDF, in the order tried.
const CHROMIUMS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// Writes the report as a PDF through headless Chromium (as sec-report
/// made HTML and PDF): the HTML goes to a private temporary directory,
/// which is also Chromium's profile, and Chromium prints it to `path`.
fn write_pdf(html: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let browser = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .flat_map(|d| CHROMIUMS.iter().map(move |b| d.join(b)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--report {}: a PDF is printed by headless Chromium, and none was found ({} on PATH); install it (apt-get install chromium) or write .html",
                path.display(),
                CHROMIUMS.join(", ")
            )
        })?;
    let dir = tempfile::Builder::new()
        .prefix("siemquery-pdf")
        .tempdir()
        .context("--report: temporary directory")?;
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).context("--report: temporary HTML")?;
    let out = std::path::absolute(path).with_context(|| format!("--report {}", path.display()))?;
    // Created (0600, emptied) here: Chromium writes into it and keeps the mode.
    siemstress_common::files::create(&out)
        .with_context(|| format!("--report {}", path.display()))?;
    let result = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .with_context(|| format!("--report: run {}", browser.display()))?;
    let written = std::fs::metadata(&out).is_ok_and(|m| m.len() > 0);
    if !result.status.success() || !written {
        let err = String::from_utf8_lossy(&result.stderr);
        bail!(
            "--report {}: {} did not print the PDF ({}): {}",
            path.display(),
            browser.display(),
            result.status,
            err.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

/// The system-status section (systraq's daily mail): this machine's file
/// systems, interfaces, load and uptime; the period's failed logins per
/// source; hygiene findings and package-integrity failures of the latest
/// runs; the unified diffs of watched files' content in the period.
fn status_section(r: &Report, h: &mut String) {
    use crate::sysstatus::{human_bytes, human_uptime};
    let st = &r.status;
    h.push_str("<section id=\"status\"><h2>System status</h2><p>");
    let _ = write!(h, "<b>{}</b> at report time", esc(&r.host));
    if let Some([a, b, c]) = st.load {
        let _ = write!(h, " · load <span id=\"load\">{a:.2} {b:.2} {c:.2}</span>");
    }
    if let Some(u) = st.uptime_secs {
        let _ = write!(h, " · up <span id=\"uptime\">{}</span>", human_uptime(u));
    }
    h.push_str("</p>");
    for p in &st.problems {
        let _ = write!(h, "<p class=\"muted\">{}</p>", esc(p));
    }
    h.push_str(
        "<h3>File systems</h3><table id=\"filesystems\"><thead><tr><th>mounted on</th><th>device</th>\
         <th>type</th><th>size</th><th>used</th><th>free</th><th>use</th><th>inodes</th></tr></thead><tbody>",
    );
    for f in &st.filesystems {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}%</td><td class=\"num\">{}</td></tr>",
            esc(&f.mount),
            esc(&f.device),
            esc(&f.fstype),
            human_bytes(f.size),
            human_bytes(f.used),
            human_bytes(f.avail),
            if f.use_pct >= 90 { " warn" } else { "" },
            f.use_pct,
            f.inodes_used_pct
                .map(|p| format!("{p}%"))
                .unwrap_or_default(),
        );
    }
    h.push_str("</tbody></table>");
    h.push_str(
        "<h3>Network interfaces</h3><table id=\"interfaces\"><thead><tr><th>interface</th>\
         <th>received</th><th>packets</th><th>errors</th><th>dropped</th>\
         <th>sent</th><th>packets</th><th>errors</th><th>dropped</th></tr></thead><tbody>",
    );
    for i in &st.interfaces {
        let bad = |n: u64| if n > 0 { " warn" } else { "" };
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num{}\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&i.name),
            human_bytes(i.rx_bytes),
            i.rx_packets,
            bad(i.rx_errs),
            i.rx_errs,
            i.rx_drop,
            human_bytes(i.tx_bytes),
            i.tx_packets,
            bad(i.tx_errs),
            i.tx_errs,
            i.tx_drop,
        );
    }
    h.push_str("</tbody></table>");

    h.push_str("<h3>Failed logins per source</h3>");
    if r.failed_by_source.is_empty() {
        h.push_str("<p class=\"muted\">None in the period.</p>");
    } else {
        h.push_str("<table id=\"failed-sources\"><thead><tr><th>source</th><th>failures</th></tr></thead><tbody>");
        for (src, n) in &r.failed_by_source {
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{n}</td></tr>",
                esc(src)
            );
        }
        h.push_str("</tbody></table>");
    }

    for (name, title, empty) in [
        (
            "hygiene",
            "Hygiene findings",
            "No findings (or no hygiene run yet).",
        ),
        (
            "packages",
            "Package integrity",
            "No changed or missing package files (or no packages run yet).",
        ),
    ] {
        let _ = write!(h, "<h3>{title}</h3>");
        let rows: Vec<_> = r.findings.iter().filter(|f| f.0 == name).collect();
        if rows.is_empty() {
            let _ = write!(h, "<p class=\"muted\">{empty}</p>");
            continue;
        }
        let _ = write!(
            h,
            "<table id=\"{name}\"><thead><tr><th>host</th><th>{}</th><th>details</th></tr></thead><tbody>",
            if name == "packages" {
                "file"
            } else {
                "finding"
            }
        );
        let more = rows.len().saturating_sub(MAX_FINDINGS);
        for (_, host, key, row) in rows.into_iter().take(MAX_FINDINGS) {
            let details = match (name, row) {
                ("packages", v) => format!(
                    "{} {} (package {}){}",
                    v["status"].as_str().unwrap_or(""),
                    if v["conffile"] == true {
                        "conffile"
                    } else {
                        "file"
                    },
                    v["package"].as_str().unwrap_or(""),
                    v["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
                (_, v) => v.to_string(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                esc(host),
                esc(key),
                esc(&details)
            );
        }
        h.push_str("</tbody></table>");
        if more > 0 {
            let _ = write!(
                h,
                "<p class=\"muted\">{more} more: siemquery --snapshot {name}</p>"
            );
        }
    }

    h.push_str("<h3>Changes of watched files</h3>");
    let diffs: Vec<&Change> = r
        .changes
        .iter()
        .filter(|c| {
            c.change == ChangeKind::Changed
                && c.column.as_deref().is_some_and(unified::is_text_column)
        })
        .collect();
    if diffs.is_empty() {
        h.push_str(
            "<p class=\"muted\">No content changes in the period ([gather.files] content).</p>",
        );
    }
    for c in diffs {
        let text = |v: &Option<Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let d = unified::unified(&c.key, text(&c.old).as_deref(), text(&c.new).as_deref());
        let _ = write!(
            h,
            "<figure><figcaption class=\"mono\">{} <span class=\"muted\">on {} (run {})</span></figcaption><pre class=\"diff\">",
            esc(&c.key),
            esc(&c.host),
            c.run
        );
        for line in d.lines() {
            let class = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => "add",
                Some(b'-') if !line.starts_with("---") => "del",
                Some(b'@') => "hunk",
                _ => "",
            };
            let _ = writeln!(h, "<span class=\"{class}\">{}</span>", esc(line));
        }
        h.push_str("</pre></figure>");
    }
    h.push_str("</section>\n");
}

/// Renders the report as one HTML document.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!(
        "siemstress report {} — {} to {}",
        r.host,
        r.time(r.from),
        r.time(r.to)
    );
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<header><h1>siemstress report</h1><p class=\"muted\">{} to {} ({}) · written on {} at {}</p>\
         <nav><a href=\"#status\">System status</a><a href=\"#events\">Events</a><a href=\"#failed\">Failed logins</a><a href=\"#alerts\">Alerts</a>\
         <a href=\"#snapshots\">Snapshot changes</a><a href=\"#integrity\">File integrity</a></nav></header>",
        esc(&r.time(r.from)),
        esc(&r.time(r.to)),
        esc(&r.zone_name),
        esc(&r.host),
        esc(&r.time(r.generated)),
    );
    let failed: i64 = r.failed_by_host.iter().map(|(_, n)| n).sum();
    let card = |h: &mut String, label: &str, n: i64, bad: bool| {
        let _ = write!(
            h,
            "<div class=\"card{}\"><b>{n}</b>{}</div>",
            if bad && n > 0 { " bad" } else { "" },
            esc(label)
        );
    };
    h.push_str("<div class=\"cards\">");
    card(&mut h, "events", r.total_events(), false);
    card(&mut h, "failed logins", failed, true);
    card(&mut h, "alerts", r.alert_total, true);
    card(&mut h, "snapshot changes", r.changes.len() as i64, true);
    card(
        &mut h,
        "failed gather runs",
        r.failed_runs.len() as i64,
        true,
    );
    h.push_str("</div>\n");

    status_section(r, &mut h);

    // Events per bucket.
    let unit = if r.bucket == 3_600_000 { "hour" } else { "day" };
    let _ = write!(h, "<section id=\"events\"><h2>Events per {unit}</h2>");
    if r.events.is_empty() {
        h.push_str("<p class=\"muted\">No event tables yet.</p>");
    }
    for (table, series) in &r.events {
        let total: i64 = series.iter().sum();
        let _ = write!(
            h,
            "<figure><figcaption>{} <span class=\"muted\">— {total} events</span></figcaption>",
            esc(table)
        );
        h.push_str(&bar_chart(r, series));
        h.push_str("</figure>\n");
    }
    h.push_str("</section>\n");

    // Failed logins.
    h.push_str("<section id=\"failed\"><h2>Failed logins</h2><div class=\"grid2\">");
    for (label, list) in [
        ("Top source hosts", &r.failed_by_host),
        ("Top users", &r.failed_by_user),
    ] {
        let _ = write!(h, "<div><h3>{label}</h3>");
        if list.is_empty() {
            h.push_str("<p class=\"muted\">None in this period.</p>");
        } else {
            h.push_str(&hbar_chart(list));
        }
        h.push_str("</div>");
    }
    h.push_str("</div></section>\n");

    // Alerts.
    h.push_str("<section id=\"alerts\"><h2>Alerts</h2>");
    let a = &r.alerts;
    if a.is_empty() {
        h.push_str("<p class=\"muted\">No alerts in this period.</p>");
    } else {
        {
            if r.alert_total > a.len() as i64 {
                let _ = write!(
                    h,
                    "<p class=\"muted\">The latest {} of {} alerts.</p>",
                    a.len(),
                    r.alert_total
                );
            }
            h.push_str("<input class=\"filter\" data-table=\"alerts-table\" placeholder=\"filter alerts\">\
                        <table id=\"alerts-table\"><thead><tr><th>time</th><th>severity</th><th>rule</th>\
                        <th>key</th><th>count</th><th>message</th></tr></thead><tbody>");
            for x in a {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(&r.time(x.ts)),
                    esc(&x.severity),
                    esc(&x.rule),
                    esc(&x.key),
                    x.count,
                    esc(&x.message)
                );
            }
            h.push_str("</tbody></table>");
        }
    }
    h.push_str("</section>\n");

    // Snapshot changes.
    h.push_str("<section id=\"snapshots\"><h2>Snapshot changes</h2>");
    if r.runs.is_empty() && r.failed_runs.is_empty() {
        h.push_str("<p class=\"muted\">No snapshot runs in this period.</p>");
    } else {
        h.push_str(
            "<table><thead><tr><th>snapshot</th><th>host</th><th>run</th><th>taken</th>\
                    <th>added</th><th>removed</th><th>changed</th></tr></thead><tbody>",
        );
        for s in &r.runs {
            let cells = if s.baseline {
                "<td colspan=\"3\" class=\"muted\">baseline (first run)</td>".to_owned()
            } else {
                format!(
                    "<td class=\"num added\">{}</td><td class=\"num removed\">{}</td><td class=\"num changed\">{}</td>",
                    s.added, s.removed, s.changed
                )
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>{cells}</tr>",
                esc(&s.name),
                esc(&s.host),
                s.id,
                esc(&r.time(s.taken))
            );
        }
        h.push_str("</tbody></table>");
        if !r.failed_runs.is_empty() {
            h.push_str(
                "<h3>Failed gather runs</h3><table><thead><tr><th>snapshot</th><th>host</th>\
                        <th>taken</th><th>error</th></tr></thead><tbody>",
            );
            for (name, host, taken, msg) in &r.failed_runs {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"removed\">{}</td></tr>",
                    esc(name),
                    esc(host),
                    esc(&r.time(*taken)),
                    esc(msg)
                );
            }
            h.push_str("</tbody></table>");
        }
        if !r.changes.is_empty() {
            h.push_str("<h3>Changes</h3>");
            if r.changes.len() > MAX_CHANGES_LISTED {
                let _ = write!(
                    h,
                    "<p class=\"muted\">The first {MAX_CHANGES_LISTED} of {} changes.</p>",
                    r.changes.len()
                );
            }
            h.push_str("<input class=\"filter\" data-table=\"changes-table\" placeholder=\"filter changes\">\
                        <table id=\"changes-table\"><thead><tr><th>snapshot</th><th>host</th><th>change</th>\
                        <th>key</th><th>column</th><th>old</th><th>new</th></tr></thead><tbody>");
            for c in r.changes.iter().take(MAX_CHANGES_LISTED) {
                let show = |v: &Option<Value>| match v {
                    Some(Value::String(s)) => esc(s),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => esc(&other.to_string()),
                };
                let (old, new) = match c.change {
                    ChangeKind::Changed => (show(&c.old), show(&c.new)),
                    ChangeKind::Added => (String::new(), show(&c.row)),
                    ChangeKind::Removed => (show(&c.row), String::new()),
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"{k}\">{k}</td><td class=\"mono\">{}</td><td>{}</td>\
                     <td class=\"mono\">{old}</td><td class=\"mono\">{new}</td></tr>",
                    esc(&c.snapshot),
                    esc(&c.host),
                    esc(&c.key),
                    esc(c.column.as_deref().unwrap_or("")),
                    k = c.change.as_str(),
                );
            }
            h.push_str("</tbody></table>");
        }
    }
    h.push_str("</section>\n");

    // File integrity.
    h.push_str("<section id=\"integrity\"><h2>File integrity</h2>");
    if r.integrity.is_empty() {
        h.push_str("<p class=\"muted\">No <code>files</code> or <code>suid</code> snapshot yet \
                    (<code>siemparse --gather files</code> with <code>[gather.files] paths</code>).</p>");
    } else {
        h.push_str("<table><thead><tr><th>snapshot</th><th>host</th><th>last run</th><th>entries</th>\
                    <th>hashed</th><th>unreadable</th><th>changed in period</th></tr></thead><tbody>");
        for i in &r.integrity {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num{}\">{}</td><td class=\"num{}\">{}</td></tr>",
                esc(&i.name),
                esc(&i.host),
                esc(&r.time(i.taken)),
                i.entries,
                i.hashed,
                if i.errors.is_empty() { "" } else { " removed" },
                i.errors.len(),
                if i.changed_keys.is_empty() {
                    ""
                } else {
                    " changed"
                },
                i.changed_keys.len()
            );
        }
        h.push_str("</tbody></table>");
        for i in &r.integrity {
            if !i.changed_keys.is_empty() {
                let _ = write!(
                    h,
                    "<h3>{} on {}: changed paths</h3><table><thead><tr><th>path</th><th>what</th></tr></thead><tbody>",
                    esc(&i.name),
                    esc(&i.host)
                );
                for (k, what) in &i.changed_keys {
                    let _ = write!(
                        h,
                        "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                        esc(k),
                        esc(&what.join(", "))
                    );
                }
                h.push_str("</tbody></table>");
            }
            if !i.errors.is_empty() {
                let _ = write!(
                    h,
                    "<h3>{} on {}: unreadable</h3><table><thead><tr><th>path</th><th>error</th></tr></thead><tbody>",
                    esc(&i.name),
                    esc(&i.host)
                );
                for (k, e) in &i.errors {
                    let _ = write!(
                        h,
                        "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                        esc(k),
                        esc(e)
                    );
                }
                h.push_str("</tbody></table>");
            }
        }
    }
    h.push_str("</section>\n");
    let _ = write!(h, "<script>{JS}</script>\n</body></html>\n");
    h
}

/// A vertical bar chart of a series, one bar per bucket, in inline SVG.
fn bar_chart(r: &Report, series: &[i64]) -> String {
    let (w, hgt, left, bottom) = (1000.0_f64, 150.0_f64, 44.0_f64, 18.0_f64);
    let max = series.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = series.len().max(1) as f64;
    let slot = (w - left) / n;
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {hgt}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"events per bucket\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let plot = hgt - bottom;
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{plot}\" x2=\"{w}\" y2=\"{plot}\"/>\
         <text x=\"{x}\" y=\"10\" text-anchor=\"end\">{max}</text><text x=\"{x}\" y=\"{plot}\" text-anchor=\"end\">0</text>",
        x = left - 4.0,
        max = max as i64
    );
    let label_every = (series.len() / 8).max(1);
    for (i, &v) in series.iter().enumerate() {
        let bh = (v as f64 / max) * (plot - 12.0);
        let x = left + i as f64 * slot;
        let start = r.from + i as i64 * r.bucket;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>{}: {v}</title></rect>",
            x + slot * 0.1,
            plot - bh,
            (slot * 0.8).max(0.5),
            bh,
            esc(&r.time(start))
        );
        if i % label_every == 0 {
            let t = r.time(start);
            let label = if r.bucket == 3_600_000 {
                t.get(11..16).unwrap_or(&t).to_owned()
            } else {
                t.get(5..10).unwrap_or(&t).to_owned()
            };
            let _ = write!(
                s,
                "<text x=\"{:.2}\" y=\"{}\">{}</text>",
                x + slot * 0.1,
                hgt - 4.0,
                esc(&label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart of (label, count), largest first, in inline SVG.
fn hbar_chart(list: &[(String, i64)]) -> String {
    let row = 22.0_f64;
    let (w, label_w) = (500.0_f64, 190.0_f64);
    let hgt = row * list.len() as f64 + 4.0;
    let max = list.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        "<svg class=\"hbar\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, (label, n)) in list.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let bw = (*n as f64 / max) * (w - label_w - 50.0);
        let short: String = label.chars().take(28).collect();
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\">\
             <title>{}: {n}</title></rect><text x=\"{:.1}\" y=\"{:.1}\">{n}</text>",
            y + 14.0,
            esc(&short),
            row - 6.0,
            esc(label),
            label_w + bw + 4.0,
            y + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

/// `[actions.mail]`: the report is sent as siemtrigger's `mail` action sends.
fn mail_settings(
    config: &siemstress_common::config::Config,
) -> anyhow::Result<siemstress_common::config::actions::Mail> {
    use siemstress_common::config::actions::ActionKind;
    let mail = config
        .actions
        .get("mail")
        .context("no [actions.mail] in the config (smtp, from, to)")?;
    match mail.resolve("mail")?.kind {
        ActionKind::Mail(m) => Ok(m),
        _ => bail!("[actions.mail] is not of type \"mail\""),
    }
}

/// Sends the report as an HTML mail with a plain-text summary.
fn send_mail(
    config: &siemstress_common::config::Config,
    r: &Report,
    html: &str,
) -> anyhow::Result<()> {
    use lettre::Transport;
    use lettre::message::MultiPart;
    let mail = mail_settings(config)?;
    let smtp = &mail.smtp;
    let b = mail.builder(&format!("siemstress report {}: {}", r.host, r.headline()));
    let text = format!(
        "siemstress report for {} from {} to {} ({})\n\n{}\n\nThe full report is the HTML part of this mail.\n",
        r.host,
        r.time(r.from),
        r.time(r.to),
        r.zone_name,
        r.headline()
    );
    let msg = b
        .multipart(MultiPart::alternative_plain_html(text, html.to_owned()))
        .context("build the mail")?;
    let transport = siemstress_common::mail::transport(smtp, mail.allow_plaintext_auth)?;
    transport
        .send(&msg)
        .with_context(|| format!("send through {}", siemstress_common::db::redact(smtp)))?;
    Ok(())
}
