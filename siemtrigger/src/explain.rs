//! `--explain ALERT_ID` (why an alert fired) and `--explain-rule NAME`
//! (which keys came closest to firing in a time range).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use siemstress_common::diag;
use siemstress_common::display::Escaped;
use siemstress_common::ident::Ident;

use siemstress_common::db::Database;
use siemstress_common::db::alerts::AlertRow;
use siemstress_common::db::snapshots;
use siemstress_common::snapshot::Run;

use crate::Format;
use crate::actions::Actions;
use crate::engine::{DEFAULT_MAX_KEYS, KeyStats, Overflow, rfc3339};
use crate::rules::{Kind, Rule, RuleSet, Threshold};
use crate::runner::{Mode, Runner, Summary};
use crate::snapshot;

/// Keys shown by `--explain-rule`.
const TOP: usize = 20;

/// Prints why alert `id` fired; false if there is no such alert.
pub async fn alert(db: &Database, rules: &RuleSet, id: i64, f: Format) -> anyhow::Result<bool> {
    let Some(a) = db.alert(id).await? else {
        diag!("siemtrigger: no alert {id}");
        return Ok(false);
    };
    let refs = db.alert_events(id).await?;
    if a.event_table == snapshot::TABLE {
        let mut runs = Vec::new();
        for (_, run_id) in &refs {
            if let Some(r) = snapshots::run(db, *run_id).await? {
                runs.push(r);
            }
        }
        snapshot_alert(&a, rules.get(&a.rule), &runs, f)?;
        return Ok(true);
    }
    let mut events = Vec::new();
    let mut tables: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();
    tables.dedup();
    for t in tables {
        let ids: Vec<i64> = refs.iter().filter(|r| r.0 == t).map(|r| r.1).collect();
        let ident = Ident::new(t, "event table")?;
        for e in db.events_by_id(&ident, &ids).await? {
            events.push((t.to_owned(), e));
        }
    }
    // Events named by the alert but no longer stored: pruned by retention
    // (ids are never handed out again, so a missing id is an expired event).
    let expired: Vec<&(String, i64)> = refs
        .iter()
        .filter(|(t, id)| !events.iter().any(|(et, e)| et == t && e.id == *id))
        .collect();
    let rule = rules.get(&a.rule);
    let mut out = std::io::stdout().lock();
    match f {
        Format::Json => {
            let mut alert = serde_json::to_value(&a)?;
            alert["window_end"] = a.window_end.map(rfc3339).into();
            let v = serde_json::json!({
                "alert": alert,
                "rule": rule.map(|r| {
                    let th = match &r.kind {
                        Kind::Threshold(t) => Some(t),
                        _ => None,
                    };
                    serde_json::json!({
                        "type": r.type_name(), "window_ms": r.window_ms(),
                        "threshold": th.map(|t| t.threshold),
                        "distinct": th.and_then(|t| t.distinct.as_ref()),
                        "key": r.key.source, "origin": r.origin,
                    })
                }),
                "events": events.iter().map(|(t, e)| serde_json::json!({
                    "event_table": t, "id": e.id, "ts": rfc3339(e.ts), "host": e.host, "raw": e.raw,
                })).collect::<Vec<_>>(),
                "expired_events": expired.iter().map(|(t, id)| serde_json::json!({
                    "event_table": t, "id": id,
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{v:#}")?;
        }
        Format::Text => {
            // Messages, keys, hosts and lines are the events' text: escaped.
            writeln!(out, "alert #{}  {}  {}", a.id, a.severity, a.rule)?;
            writeln!(out, "  message:  {}", Escaped(&a.message))?;
            writeln!(out, "  key:      \"{}\"", Escaped(&a.key))?;
            writeln!(out, "  fired at: {} (event time)", rfc3339(a.ts))?;
            match a.window_end {
                Some(end) => writeln!(
                    out,
                    "  window:   {} .. {} (inclusive)",
                    rfc3339(a.first_ts),
                    rfc3339(end)
                )?,
                None => writeln!(out, "  window:   none (single)")?,
            }
            match rule {
                Some(r) => {
                    let cond = match &r.kind {
                        Kind::Threshold(t) => format!(
                            "{} {} within {}{}",
                            measure_name(t),
                            t.bound,
                            human(t.window_ms),
                            if t.bound.at_end() {
                                " (measured at the window's end)"
                            } else {
                                ""
                            }
                        ),
                        Kind::Pair(p) => format!("second within {} of first", human(p.window_ms)),
                        Kind::Absence(p) => {
                            format!("no second within {} of first", human(p.window_ms))
                        }
                        Kind::Single(_) => "every matching event".to_owned(),
                        Kind::SnapshotChange(_) => "snapshot change".to_owned(),
                    };
                    writeln!(
                        out,
                        "  rule:     {} ({cond}; key {:?}) from {}",
                        r.type_name(),
                        r.key.source,
                        Escaped(&r.origin)
                    )?;
                }
                None => writeln!(out, "  rule:     (no longer configured)")?,
            }
            writeln!(out, "  count:    {}", a.count)?;
            writeln!(out, "  stored:   {}", rfc3339(a.created))?;
            writeln!(out, "events ({}):", events.len())?;
            for (t, e) in &events {
                writeln!(
                    out,
                    "  {}  {t}#{}  {}  {}",
                    rfc3339(e.ts),
                    e.id,
                    Escaped(e.host.as_deref().unwrap_or("-")),
                    Escaped(&e.raw)
                )?;
            }
            if !expired.is_empty() {
                let ids: Vec<String> = expired.iter().map(|(t, id)| format!("{t}#{id}")).collect();
                writeln!(
                    out,
                    "  {} of the alert's {} events have expired (deleted by retention): {}",
                    expired.len(),
                    refs.len(),
                    ids.join(" ")
                )?;
            }
        }
    }
    Ok(true)
}

/// `--explain` of a `snapshot_change` alert: the rule and the two runs
/// compared (the alert's `alert_events` are their ids).
fn snapshot_alert(
    a: &AlertRow,
    rule: Option<&Rule>,
    runs: &[Run],
    f: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let newest = runs.iter().max_by_key(|r| r.id);
    // The rule of that name may since have become another type.
    let rule = rule.and_then(|r| r.snapshot().map(|s| (r, s)));
    let rule_json = rule.map(|(r, s)| {
        serde_json::json!({
            "type": r.type_name(), "snapshot": s.snapshot,
            "change": s.change.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "exclude": s.exclude, "include": s.include, "key": r.key.source, "origin": r.origin,
        })
    });
    match f {
        Format::Json => {
            let v = serde_json::json!({
                "alert": a,
                "rule": rule_json,
                "runs": runs.iter().map(|r| serde_json::json!({
                    "id": r.id, "name": r.name, "host": r.host, "taken": rfc3339(r.taken),
                    "status": r.status, "row_count": r.row_count,
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{v:#}")?;
        }
        Format::Text => {
            writeln!(out, "alert #{}  {}  {}", a.id, a.severity, a.rule)?;
            writeln!(out, "  message:  {}", Escaped(&a.message))?;
            writeln!(out, "  key:      \"{}\"", Escaped(&a.key))?;
            writeln!(
                out,
                "  fired at: {} (time of the snapshot run)",
                rfc3339(a.ts)
            )?;
            match rule {
                Some((r, s)) => writeln!(
                    out,
                    "  rule:     snapshot_change (snapshot {}; change {}; exclude {:?}; include {:?}; key {:?}) from {}",
                    s.snapshot,
                    s.change
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.exclude,
                    s.include,
                    r.key.source,
                    Escaped(&r.origin)
                )?,
                None => writeln!(out, "  rule:     (no longer configured)")?,
            }
            writeln!(out, "  stored:   {}", rfc3339(a.created))?;
            writeln!(out, "runs compared ({}):", runs.len())?;
            for r in runs {
                writeln!(
                    out,
                    "  {}  {}#{}  {}  {} ({} rows){}",
                    rfc3339(r.taken),
                    snapshot::TABLE,
                    r.id,
                    r.host,
                    r.name,
                    r.row_count,
                    if Some(r.id) == newest.map(|n| n.id) {
                        ""
                    } else {
                        ", base"
                    }
                )?;
            }
            if let Some(n) = newest {
                writeln!(
                    out,
                    "  the whole diff: siemquery --snapshot {} --diff --run {}",
                    n.name, n.id
                )?;
            }
        }
    }
    Ok(())
}

/// What a threshold rule measures, for people.
fn measure_name(t: &crate::rules::Threshold) -> String {
    use crate::rules::Metric;
    let field = t.distinct.as_deref().unwrap_or("");
    match &t.metric {
        Metric::Count => "events".to_owned(),
        Metric::Distinct => format!("distinct values of {field}"),
        Metric::Sum => format!("sum of {field}"),
        Metric::Avg => format!("average of {field}"),
        Metric::Percentile(p) => format!("{p}th percentile of {field}"),
        Metric::Steps { count, ordered } => format!(
            "steps of {count}{}",
            if *ordered { " in order" } else { "" }
        ),
    }
}

/// The matchers of `rule`: the SQL condition of the shared scan and the
/// Rust-side checks (regexes on `raw`, the `where` expression, steps), and
/// the literals the matcher gives the prefilter.
fn matchers_text(db: &Database, rule: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    for (role, m) in rule.matchers() {
        out.push(format!("  {role}: SQL: {}", db.cond(&m.filter).text()));
        for r in &m.regex {
            let src = match r {
                crate::rules::RuleRegex::Fixed(re) => re.as_str().to_owned(),
                crate::rules::RuleRegex::BackRef { template, .. } => template.source.clone(),
            };
            out.push(format!("  {role}: regex on raw: {src}"));
        }
        for r in &m.rregex {
            out.push(format!("  {role}: not regex on raw: {}", r.as_str()));
        }
        if let Some((src, _)) = &m.expr {
            out.push(format!("  {role}: where: {src}"));
        }
        for (i, (src, _)) in m.steps.iter().enumerate() {
            out.push(format!("  {role}: step {}: {src}", i + 1));
        }
        // The literals this matcher adds to the shared scan's prefilter: rows
        // without any of them skip its Rust-side check.
        out.push(match crate::rules::prefilter::matcher_requirement(m) {
            None => format!("  {role}: prefilter: none (every row the SQL returns is checked)"),
            Some(req) if req.is_empty() => format!("  {role}: prefilter: never matches"),
            Some(req) => format!(
                "  {role}: prefilter: {} (ASCII case-insensitive)",
                req.iter()
                    .map(|(col, lit)| format!("{col} contains '{}'", lit.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        });
    }
    out
}

fn human(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
}

/// Prints the keys of `rule` that came closest to firing in `[from, to)`,
/// by re-evaluating the range from empty state (nothing is stored).
pub async fn rule(db: &Database, rule: &Rule, from: i64, to: i64, f: Format) -> anyhow::Result<()> {
    if let Some(s) = rule.snapshot() {
        anyhow::bail!(
            "--explain-rule {}: a snapshot_change rule has no windows to come close to firing; \
             see its alerts with --replay --from ... --to ..., or the diffs with \
             siemquery --snapshot {} --diff --run ID",
            rule.name,
            s.snapshot
        );
    }
    let actions = Actions::default();
    let rules = std::slice::from_ref(rule);
    let runner = Runner {
        db,
        rules,
        actions: &actions,
        mode: Mode::Replay { from, to },
        stop: Arc::new(AtomicBool::new(false)),
        settle: std::time::Duration::ZERO,
        print: None,
        chunk: crate::runner::CHUNK,
        lateness_ms: 0,
        idle_ms: 0,
        verbose: false,
        collected: None,
    };
    let mut stats: HashMap<String, KeyStats> = HashMap::new();
    let mut summary = Summary::default();
    for t in db.event_tables().await? {
        if rule.table().is_some_and(|r| r.as_str() != t) {
            continue;
        }
        let hi = db.max_id(&Ident::new(&t, "event table")?).await?;
        let mut s = HashMap::new();
        runner
            .rule_table(rule, &t, hi, &mut summary, Some(&mut s))
            .await?;
        for (k, v) in s {
            let key = if rule.table().is_some() {
                k
            } else {
                format!("{t}: {k}")
            };
            stats.insert(key, v);
        }
    }
    let mut keys: Vec<(&String, &KeyStats)> = stats.iter().collect();
    keys.sort_by(|a, b| {
        (b.1.fired, b.1.best)
            .cmp(&(a.1.fired, a.1.best))
            .then(a.0.cmp(b.0))
    });
    let needed = match &rule.kind {
        Kind::Threshold(Threshold { threshold, .. }) => *threshold,
        _ => 1,
    };
    let max_keys = rule.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    let mut out = std::io::stdout().lock();
    match f {
        Format::Json => {
            // NDJSON of the keys; what the cap dropped on stderr.
            if !summary.overflow.is_empty() {
                diag!(
                    "siemtrigger: {}",
                    crate::runner::overflow_text(&summary.overflow)
                );
            }
            for (k, s) in keys.iter().take(TOP) {
                let v = serde_json::json!({
                    "key": k, "best": s.best, "needed": needed, "fired": s.fired,
                    "opened": s.opened,
                    "best_first_ts": (s.best_ts != 0).then(|| rfc3339(s.best_start)),
                    "best_ts": (s.best_ts != 0).then(|| rfc3339(s.best_ts)),
                });
                writeln!(out, "{v}")?;
            }
        }
        Format::Text => {
            writeln!(
                out,
                "rule {} ({}) from {} to {}: {} matching events, {} alerts, {} keys",
                rule.name,
                rule.type_name(),
                rfc3339(from),
                rfc3339(to),
                summary.candidates,
                summary.alerts,
                stats.len()
            )?;
            match rule.kind {
                Kind::Threshold(_) => {
                    writeln!(
                        out,
                        "{:>6} {:>6}  {:<24} {:<24} key",
                        "best", "fired", "window start", "best at"
                    )?;
                    for (k, s) in keys.iter().take(TOP) {
                        writeln!(
                            out,
                            "{:>3}/{:<2} {:>6}  {:<24} {:<24} {k}",
                            s.best,
                            needed,
                            s.fired,
                            rfc3339(s.best_start),
                            rfc3339(s.best_ts),
                            k = Escaped(k)
                        )?;
                    }
                }
                _ => {
                    writeln!(out, "{:>7} {:>6}  key", "opened", "fired")?;
                    for (k, s) in keys.iter().take(TOP) {
                        writeln!(out, "{:>7} {:>6}  {}", s.opened, s.fired, Escaped(k))?;
                    }
                }
            }
            if !matches!(rule.kind, Kind::Single(_)) {
                let mut o = Overflow::default();
                summary.overflow.iter().for_each(|x| o.add(x.2));
                writeln!(
                    out,
                    "state cap: max_keys = {max_keys}; dropped over it (oldest first): {} windows, {} events",
                    o.windows, o.events
                )?;
            }
        }
    }
    if f == Format::Text {
        writeln!(out, "matchers:")?;
        for l in matchers_text(db, rule) {
            writeln!(out, "{}", Escaped(&l))?;
        }
    }
    Ok(())
}
