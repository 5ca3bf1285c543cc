//! Alert actions (`[actions.NAME]` in `siemstress.toml`, read and checked
//! by `common::config::actions`). A rule's alert queues one `action_runs`
//! row per action in the same transaction as the alert; the dispatcher then
//! runs each, records `ok`, or schedules a retry with doubling backoff, and
//! when `retries` retries have failed too records `failed`.
//! The alert itself is never lost: it is stored before any action runs.
//!
//! An exec program gets a cleared environment: the alert's `SIEM_*`
//! variables, `PATH` (siemtrigger's, else a system default) and `LANG` (if
//! set), nothing else (no database URL, no credentials). `{key}` and
//! `{message}` hold text from the logs: an argument that starts with one of
//! them must come after a `--` argument (or be attached to its option, as
//! `--key={key}`), else the action is refused when the config loads, so
//! that a value starting with `-` never becomes an option. A value no
//! program can receive (a NUL byte) fails the run at once, without retries,
//! naming the field.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::rules::{Piece, Template};
use anyhow::{Context, anyhow, bail};
use siemstress_common::config::Config;
use siemstress_common::config::actions::{ActionKind, Mail};
use siemstress_common::diag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::rfc3339;
use siemstress_common::db::Database;
use siemstress_common::db::alerts::AlertRow;
use siemstress_common::db::lease::LeaseKey;
use siemstress_common::db::retry::Retry;
use siemstress_common::db::trigger::{ActionRun, Claim};

/// How long a `--once` run keeps retrying failed actions before leaving
/// them to the next run.
const ONCE_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// What an action does.
#[derive(Debug, Clone)]
enum Kind {
    Mail {
        mail: Mail,
        subject: Template,
    },
    Exec {
        program: String,
        args: Vec<Template>,
    },
    Webhook {
        url: url::Url,
    },
    File {
        path: std::path::PathBuf,
    },
}

/// One configured action.
#[derive(Debug, Clone)]
pub struct Action {
    kind: Kind,
    timeout: Duration,
    /// Retries after the first attempt.
    retries: u32,
    backoff: Duration,
}

/// The configured actions by name.
#[derive(Debug, Default)]
pub struct Actions {
    by_name: BTreeMap<String, Action>,
}

impl Actions {
    /// Reads and checks `[actions]`; errors name the action and key.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_name = BTreeMap::new();
        for (name, a) in &config.actions {
            let a = a.resolve(name).map_err(|e| config.locate(e))?;
            let kind = match a.kind {
                ActionKind::Mail(mail) => Kind::Mail {
                    subject: Template::parse(&mail.subject),
                    mail,
                },
                ActionKind::Exec { program, args } => {
                    let args: Vec<Template> = args.iter().map(|a| Template::parse(a)).collect();
                    check_args(&args).with_context(|| format!("[actions.{name}]"))?;
                    Kind::Exec { program, args }
                }
                ActionKind::Webhook { url } => Kind::Webhook { url },
                ActionKind::File { path } => Kind::File { path },
            };
            let action = Action {
                kind,
                timeout: a.timeout,
                retries: a.retries,
                backoff: a.backoff,
            };
            by_name.insert(name.clone(), action);
        }
        Ok(Self { by_name })
    }

    /// Number of actions configured.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// `--check`: every exec program is an executable file now (a name
    /// without `/` is looked up in the `PATH` it will run with). Not checked
    /// at start: a daemon's program may be installed after it.
    pub fn check_programs(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let runnable = |p: &std::path::Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        for (name, a) in &self.by_name {
            let Kind::Exec { program, .. } = &a.kind else {
                continue;
            };
            let found = if program.contains('/') {
                runnable(std::path::Path::new(program))
            } else {
                let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
                std::env::split_paths(&path).any(|d| runnable(&d.join(program)))
            };
            if !found {
                anyhow::bail!(
                    "[actions.{name}] program {program:?}: no executable file of that name{}",
                    if program.contains('/') {
                        ""
                    } else {
                        " in PATH"
                    }
                );
            }
        }
        Ok(())
    }

    /// Runs the due action runs under the lease `lease`; with `once`, keeps
    /// retrying for a short budget, then leaves the rest (pending) to the
    /// next run. Each run is claimed in the database before it runs, fenced
    /// by the lease: two instances never run the same one, and nothing more
    /// is run once the lease is lost. While actions run, the lease is
    /// renewed every third of its time.
    pub async fn dispatch(
        &self,
        db: &Database,
        stop: &Arc<AtomicBool>,
        once: bool,
        lease: Lease<'_>,
    ) -> anyhow::Result<()> {
        let lost = Arc::new(AtomicBool::new(false));
        let keepalive = keep_lease(db.clone(), &lease, lost.clone());
        let done = self.dispatch_claimed(db, stop, once, &lease, &lost).await;
        keepalive.abort();
        if lost.load(Ordering::SeqCst) {
            diag!(
                "siemtrigger: the lease was taken over by another instance; not running \
                 further actions (they stay queued for it)"
            );
        }
        done
    }

    async fn dispatch_claimed(
        &self,
        db: &Database,
        stop: &Arc<AtomicBool>,
        once: bool,
        lease: &Lease<'_>,
        lost: &AtomicBool,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        // Claims a run for an action with `timeout`; its deadline, or None.
        let claim = |id: i64, timeout: Duration| async move {
            if lost.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let deadline =
                siemstress_common::time::now_ms() + (timeout + CLAIM_MARGIN).as_millis() as i64;
            match db
                .claim_action(lease.holder, lease.ttl_ms, id, deadline)
                .await?
            {
                Claim::Claimed => Ok(Some(deadline)),
                Claim::Taken => Ok(None),
                Claim::LostLease => {
                    lost.store(true, Ordering::SeqCst);
                    Ok::<_, anyhow::Error>(None)
                }
            }
        };
        loop {
            let now = siemstress_common::time::now_ms();
            let due = db.due_actions(now).await?;
            let mut digests: BTreeMap<String, Vec<ActionRun>> = BTreeMap::new();
            for run in due {
                if stop.load(Ordering::SeqCst) || lost.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let Some(action) = self.by_name.get(&run.action) else {
                    if let Some(deadline) = claim(run.id, Duration::ZERO).await? {
                        let why = "action is no longer configured";
                        fail_unrun(db, stop, &run, deadline, now, why).await?;
                    }
                    continue;
                };
                if let Kind::Mail {
                    mail: Mail { digest: true, .. },
                    ..
                } = action.kind
                {
                    // Claimed just before the digest is sent.
                    digests.entry(run.action.clone()).or_default().push(run);
                    continue;
                }
                let Some(deadline) = claim(run.id, action.timeout).await? else {
                    continue;
                };
                let Some(alert) = db.alert(run.alert_id).await? else {
                    fail_unrun(db, stop, &run, deadline, now, "alert is gone").await?;
                    continue;
                };
                let result = action.run(std::slice::from_ref(&alert)).await;
                record(db, stop, action, &run, deadline, result).await?;
            }
            for (name, runs) in digests {
                let action = &self.by_name[&name];
                let mut claimed = Vec::new();
                for run in runs {
                    let Some(deadline) = claim(run.id, action.timeout).await? else {
                        continue;
                    };
                    match db.alert(run.alert_id).await? {
                        Some(alert) => claimed.push((run, deadline, alert)),
                        None => fail_unrun(db, stop, &run, deadline, now, "alert is gone").await?,
                    }
                }
                if claimed.is_empty() {
                    continue;
                }
                let alerts: Vec<AlertRow> = claimed.iter().map(|r| r.2.clone()).collect();
                let result = action.run(&alerts).await;
                for (run, deadline, _) in &claimed {
                    record(
                        db,
                        stop,
                        action,
                        run,
                        *deadline,
                        result.as_ref().map(|_| ()).map_err(|e| anyhow!("{e:#}")),
                    )
                    .await?;
                }
            }
            if !once || stop.load(Ordering::SeqCst) || lost.load(Ordering::SeqCst) {
                return Ok(());
            }
            // --once: retry soon-due runs within the budget.
            let left = ONCE_RETRY_BUDGET.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            let horizon = siemstress_common::time::now_ms() + left.as_millis() as i64;
            let next = db.due_actions(horizon).await?;
            let Some(first) = next.iter().map(|r| r.next_try).min() else {
                return Ok(());
            };
            let wait = (first - siemstress_common::time::now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// The lease actions are dispatched under.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub holder: &'a str,
    pub ttl_ms: i64,
}

/// How long past its timeout a claimed run stays claimed: an instance that
/// has not recorded the outcome by then stopped (or stalled), and another
/// may run it again.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);

/// Renews the lease every third of its time until aborted; raises `lost`
/// when it is found taken.
fn keep_lease(
    db: Database,
    lease: &Lease<'_>,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (holder, ttl_ms) = (lease.holder.to_owned(), lease.ttl_ms);
    tokio::spawn(async move {
        let every = Duration::from_millis((ttl_ms / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            match db.renew_lease(LeaseKey::Trigger, &holder, ttl_ms).await {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => diag!("siemtrigger: renewing the lease: {e:#}"),
            }
        }
    })
}

/// Marks a claimed run failed for good without running it (`why`).
async fn fail_unrun(
    db: &Database,
    stop: &Arc<AtomicBool>,
    run: &ActionRun,
    deadline: i64,
    now: i64,
    why: &str,
) -> anyhow::Result<()> {
    done(
        db,
        stop,
        run.id,
        deadline,
        "failed",
        run.attempts,
        now,
        Some(why),
    )
    .await
}

/// Records the outcome of a claimed run, waiting out a database outage
/// (as the cycle does, [`Retry`]): the action has run, and an outcome lost
/// would leave the run claimed until its deadline, when it would run again.
#[allow(clippy::too_many_arguments)]
async fn done(
    db: &Database,
    stop: &Arc<AtomicBool>,
    id: i64,
    deadline: i64,
    status: &str,
    attempts: i64,
    next_try: i64,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let mut retry = Retry::new("siemtrigger", stop.clone()).with_db(db.clone());
    retry
        .run(|| db.action_done(id, deadline, status, attempts, next_try, error))
        .await?;
    Ok(())
}

async fn record(
    db: &Database,
    stop: &Arc<AtomicBool>,
    action: &Action,
    run: &ActionRun,
    deadline: i64,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    let attempts = run.attempts + 1;
    let now = siemstress_common::time::now_ms();
    match result {
        Ok(()) => done(db, stop, run.id, deadline, "ok", attempts, now, None).await?,
        Err(e) => {
            let msg = format!("{e:#}");
            let unpassable = e.chain().any(|c| c.is::<Unpassable>());
            let status = if unpassable || attempts > i64::from(action.retries) {
                diag!(
                    "siemtrigger: action {} for alert {} failed for good after {attempts} attempts: {msg}",
                    run.action,
                    run.alert_id
                );
                "failed"
            } else {
                diag!(
                    "siemtrigger: action {} for alert {} failed (attempt {attempts}, will retry): {msg}",
                    run.action,
                    run.alert_id
                );
                "pending"
            };
            let delay = action.backoff.as_millis() as i64 * (1i64 << (attempts - 1).clamp(0, 20));
            let next_try = now + delay;
            done(
                db,
                stop,
                run.id,
                deadline,
                status,
                attempts,
                next_try,
                Some(&msg),
            )
            .await?;
        }
    }
    Ok(())
}

/// Alert fields whose text comes from the logs (captures, snapshot keys):
/// an attacker chooses how they start.
const FREE_TEXT_FIELDS: [&str; 2] = ["key", "message"];

/// Exec arguments: every `{name}` is an alert field, and no argument before
/// `--` starts with free text (a value such as `-rf` or `--config=/tmp/x`
/// would become an option of the program).
fn check_args(args: &[Template]) -> anyhow::Result<()> {
    let known = FIELD_NAMES.join(", ");
    let mut options_end = false;
    for (i, t) in args.iter().enumerate() {
        if let Some(n) = t.names().find(|n| !FIELD_NAMES.contains(n)) {
            bail!(
                "args[{i}] {:?}: no alert field {{{n}}} (fields: {known})",
                t.source
            );
        }
        if t.source == "--" {
            options_end = true;
        }
        if options_end {
            continue;
        }
        if let Some(Piece::Var(n)) = t.pieces.first()
            && FREE_TEXT_FIELDS.contains(&n.as_str())
        {
            bail!(
                "args[{i}] {:?} starts with {{{n}}}, text from the logs: a value starting with '-' \
                 would become an option of the program; put \"--\" before it \
                 (args = [..., \"--\", \"{{{n}}}\"]) or attach it to its option (\"--{n}={{{n}}}\")",
                t.source
            );
        }
    }
    Ok(())
}

/// A run that cannot succeed whatever the retries (a value no program can
/// receive): recorded `failed` at its first attempt.
#[derive(Debug)]
struct Unpassable(String);

impl std::fmt::Display for Unpassable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unpassable {}

/// `PATH` of an exec program when siemtrigger has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The alert as JSON (webhook body, file line).
fn alert_json(a: &AlertRow) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or_default()
}

/// Names of the alert fields, as [`fields`] gives them.
const FIELD_NAMES: [&str; 10] = [
    "id",
    "rule",
    "severity",
    "key",
    "ts",
    "first_ts",
    "count",
    "message",
    "created",
    "event_table",
];

/// Alert fields by name, for templates and `SIEM_*` variables.
fn fields(a: &AlertRow) -> Vec<(&'static str, String)> {
    vec![
        ("id", a.id.to_string()),
        ("rule", a.rule.clone()),
        ("severity", a.severity.clone()),
        ("key", a.key.clone()),
        ("ts", rfc3339(a.ts)),
        ("first_ts", rfc3339(a.first_ts)),
        ("count", a.count.to_string()),
        ("message", a.message.clone()),
        ("created", rfc3339(a.created)),
        ("event_table", a.event_table.clone()),
    ]
}

fn render(t: &Template, a: &AlertRow) -> String {
    let f = fields(a);
    t.render(|n| f.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
}

impl Action {
    /// Runs the action for `alerts` (one, or a mail digest), within the timeout.
    async fn run(&self, alerts: &[AlertRow]) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, self.run_inner(alerts)).await {
            Ok(r) => r,
            Err(_) => bail!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            ),
        }
    }

    async fn run_inner(&self, alerts: &[AlertRow]) -> anyhow::Result<()> {
        let a = &alerts[0];
        match &self.kind {
            Kind::Exec { program, args } => {
                // execve takes NUL-terminated strings: such a value can
                // never be passed, so retrying is pointless.
                let fields = fields(a);
                if let Some((k, _)) = fields.iter().find(|(_, v)| v.contains('\0')) {
                    return Err(Unpassable(format!(
                        "{{{k}}} of alert {} contains a NUL byte, which no program can receive \
                         (in SIEM_{} or an argument); not retried",
                        a.id,
                        k.to_ascii_uppercase()
                    ))
                    .into());
                }
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args.iter().map(|t| render(t, a)))
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .env_clear()
                    .env(
                        "PATH",
                        std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
                    );
                if let Some(lang) = std::env::var_os("LANG") {
                    cmd.env("LANG", lang);
                }
                for (k, v) in fields {
                    cmd.env(format!("SIEM_{}", k.to_ascii_uppercase()), v);
                }
                let out = cmd
                    .output()
                    .await
                    .with_context(|| format!("cannot run {program}"))?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    bail!("{program} exited with {}: {}", out.status, err.trim());
                }
                Ok(())
            }
            Kind::File { path } => {
                let mut text = String::new();
                for a in alerts {
                    text.push_str(&alert_json(a).to_string());
                    text.push('\n');
                }
                // Created 0600 in directories made 0700 (the alerts quote the logs).
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    tokio::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(siemstress_common::files::DIR_MODE)
                        .create(dir)
                        .await
                        .with_context(|| format!("create directory {}", dir.display()))?;
                }
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(siemstress_common::files::FILE_MODE)
                    .open(path)
                    .await
                    .with_context(|| format!("open {}", path.display()))?;
                f.write_all(text.as_bytes())
                    .await
                    .with_context(|| format!("write {}", path.display()))?;
                f.flush().await?;
                Ok(())
            }
            Kind::Webhook { url } => post_json(url, &alert_json(a)).await,
            Kind::Mail { mail, subject } => {
                let (subject, body) = if alerts.len() == 1 {
                    (render(subject, a), mail_body(alerts))
                } else {
                    (
                        format!("[siemstress] {} alerts", alerts.len()),
                        mail_body(alerts),
                    )
                };
                let mail = mail.clone();
                tokio::task::spawn_blocking(move || send_mail(&mail, &subject, &body))
                    .await
                    .context("mail task")?
            }
        }
    }
}

fn mail_body(alerts: &[AlertRow]) -> String {
    let mut s = String::new();
    for a in alerts {
        for (k, v) in fields(a) {
            s.push_str(&format!("{k:>12}: {v}\n"));
        }
        s.push('\n');
    }
    s
}

fn send_mail(mail: &Mail, subject: &str, body: &str) -> anyhow::Result<()> {
    use lettre::Transport;
    let transport = siemstress_common::mail::transport(&mail.smtp, mail.allow_plaintext_auth)?;
    let msg = mail
        .builder(subject)
        .body(body.to_owned())
        .context("build mail")?;
    transport
        .send(&msg)
        .with_context(|| format!("SMTP via {}", siemstress_common::db::redact(&mail.smtp)))?;
    Ok(())
}

/// A minimal HTTP/1.1 JSON POST (plain http://); any 2xx is success.
async fn post_json(url: &url::Url, body: &serde_json::Value) -> anyhow::Result<()> {
    let host = url.host_str().context("webhook URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connect to {host}:{port}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nUser-Agent: siemtrigger\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line is enough.
    while !resp.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&resp);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {url}"))?;
    if !(200..300).contains(&status) {
        bail!("{url} answered HTTP {status}");
    }
    Ok(())
}
