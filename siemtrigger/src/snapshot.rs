//! `snapshot_change` rules: every new successful snapshot run of the rule's
//! snapshot (any host) is diffed against the previous successful run of the
//! same name and host with `common::snapshot::diff::diff_run` (what
//! `siemquery --snapshot NAME --diff --run ID` shows, with the rule's
//! `exclude` globs), and each diff record that passes `change`, `row` (the
//! fields an added or removed row must have) and `include` becomes one alert.
//!
//! Progress is the last `snapshot_runs` id a rule has consumed, stored in
//! `trigger_progress` (with `event_table` = [`TABLE`]) in the same
//! transaction as the run's alerts, their `alert_events` (the base run and the
//! run, as ids of [`TABLE`]) and queued actions, fenced by the lease: one
//! transaction per run.

use std::sync::atomic::Ordering;

use crate::rules::{Rule, SnapshotChange};
use serde_json::Value;
use siemstress_common::db::snapshots;
use siemstress_common::db::trigger::{Commit, Progress, RuleCommit};
use siemstress_common::snapshot::STATUS_OK;
use siemstress_common::snapshot::diff::{self, Change, ChangeKind, Excludes, RunDiff};

use crate::engine::{NewAlert, rfc3339};
use crate::runner::{Mode, Runner, Summary, print_alerts};

/// `event_table` of snapshot alerts, of their `alert_events` rows (whose
/// `event_id`s are run ids) and of the rules' `trigger_progress` rows.
pub const TABLE: &str = "snapshot_runs";

/// A diff value as text: strings bare, `null` as `null`, the rest as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `{name}` values of one diff record (see `rules::SNAPSHOT_VARS`).
fn lookup<'a>(
    rule: &'a Rule,
    d: &'a RunDiff,
    c: &'a Change,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |n: &str| {
        let base = d.previous.as_ref();
        Some(match n {
            "snapshot" => c.snapshot.clone(),
            "change" => c.change.as_str().to_owned(),
            "key" => c.key.clone(),
            "host" => c.host.clone(),
            "column" => c.column.clone().unwrap_or_default(),
            "old" => match c.change {
                ChangeKind::Changed => text(c.old.as_ref()),
                ChangeKind::Removed => text(c.row.as_ref()),
                ChangeKind::Added => String::new(),
            },
            "new" => match c.change {
                ChangeKind::Changed => text(c.new.as_ref()),
                ChangeKind::Added => text(c.row.as_ref()),
                ChangeKind::Removed => String::new(),
            },
            "row" => text(c.row.as_ref()),
            "detail" => match c.change {
                ChangeKind::Changed => format!(
                    " {}: {} -> {}",
                    c.column.as_deref().unwrap_or_default(),
                    text(c.old.as_ref()),
                    text(c.new.as_ref())
                ),
                _ => String::new(),
            },
            "run" => d.run.id.to_string(),
            "base_run" => base.map(|b| b.id.to_string()).unwrap_or_default(),
            "ts" => rfc3339(d.run.taken),
            "first_ts" => rfc3339(base.map_or(d.run.taken, |b| b.taken)),
            "count" => "1".to_owned(),
            "rule" => rule.name.clone(),
            _ => return None,
        })
    }
}

/// True if `c` passes the rule's `change`, `row` and `include` filters.
fn wanted(rule: &SnapshotChange, include: &Excludes, c: &Change) -> bool {
    if !rule.change.contains(&c.change) {
        return false;
    }
    if !rule.row.is_empty()
        && !c
            .row
            .as_ref()
            .and_then(Value::as_object)
            .is_some_and(|row| rule.row.iter().all(|(k, v)| row.get(k) == Some(v)))
    {
        return false;
    }
    if rule.include.is_empty() || include.row(&c.snapshot, &c.key) {
        return true;
    }
    c.column
        .as_deref()
        .is_some_and(|col| include.column(&c.snapshot, &c.key, col))
}

/// The alerts of one run's diff: one per wanted record, at the run's time,
/// with the base run's time as `first_ts`.
pub fn alerts(rule: &Rule, include: &Excludes, d: &RunDiff) -> Vec<NewAlert> {
    let (Some(base), Some(s)) = (&d.previous, rule.snapshot()) else {
        return Vec::new();
    };
    d.changes
        .iter()
        .filter(|c| wanted(s, include, c))
        .map(|c| {
            let vars = lookup(rule, d, c);
            NewAlert {
                rule: rule.name.clone(),
                severity: rule.severity.clone(),
                key: rule.key.render(&vars),
                ts: d.run.taken,
                first_ts: base.taken,
                count: 1,
                message: rule.message.render(&vars),
                event_table: TABLE.to_owned(),
                window_end: None,
                events: vec![base.id, d.run.id],
            }
        })
        .collect()
}

impl Runner<'_> {
    /// Evaluates a `snapshot_change` rule over the runs after its progress
    /// up to run id `hi` (`--replay`: the runs taken in the range, from no
    /// progress), one transaction per run.
    pub async fn snapshot_rule(
        &self,
        rule: &Rule,
        hi: i64,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let Some(s) = rule.snapshot() else {
            return Ok(());
        };
        let name = s.snapshot.as_str();
        let excludes = Excludes::new(&s.exclude)?;
        let include = Excludes::new(&s.include)?;
        let (mut progress, runs) = match self.mode {
            Mode::Replay { from, to } => {
                let runs = snapshots::runs_between(self.db, from, to)
                    .await?
                    .into_iter()
                    .filter(|r| r.name == name && r.status == STATUS_OK)
                    .collect();
                (Progress::default(), runs)
            }
            _ => {
                let p = self
                    .db
                    .progress(&rule.name, TABLE)
                    .await?
                    .unwrap_or_default();
                if p.last_id >= hi {
                    return Ok(());
                }
                let mut runs = Vec::new();
                for id in self.db.snapshot_runs_after(name, p.last_id, hi).await? {
                    runs.extend(snapshots::run(self.db, id).await?);
                }
                (p, runs)
            }
        };
        progress.fingerprint = rule.fingerprint.clone();
        for run in runs {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let d = diff::diff_run(self.db, run, &excludes).await?;
            let alerts = alerts(rule, &include, &d);
            summary.candidates += d.changes.len() as u64;
            summary.alerts += alerts.len() as u64;
            progress.last_id = d.run.id;
            progress.max_ts = Some(progress.max_ts.map_or(d.run.taken, |m| m.max(d.run.taken)));
            let ids = match &self.mode {
                Mode::Live { holder, ttl_ms } => Some(
                    self.db
                        .commit_trigger(&Commit {
                            holder: Some(holder),
                            lease_ttl_ms: *ttl_ms,
                            table: TABLE,
                            rules: vec![RuleCommit {
                                rule: &rule.name,
                                progress: &progress,
                                windows: Vec::new(),
                            }],
                            alerts: alerts.iter().map(|a| (a, &rule.actions[..])).collect(),
                        })
                        .await?,
                ),
                _ => None,
            };
            if let Some(f) = self.print {
                let list: Vec<&NewAlert> = alerts.iter().collect();
                print_alerts(&list, ids.as_deref(), f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use serde_json::json;
    use siemstress_common::snapshot::{Row, Run};

    fn run(id: i64, taken: i64) -> Run {
        Run {
            id,
            name: "users".into(),
            host: "h1".into(),
            taken,
            status: STATUS_OK.into(),
            finished: None,
            row_count: 0,
            message: None,
        }
    }

    fn rule(extra: &str) -> Rule {
        let text = format!(
            "[[rule]]\nname = \"u\"\ntype = \"snapshot_change\"\nsnapshot = \"users\"\n{extra}"
        );
        RuleSet::from_file_text(&text, "r.toml", &[]).unwrap().rules[0].clone()
    }

    fn diff_of(old: Value, new: Value, excludes: &[&str]) -> RunDiff {
        let rows = |v: Value| -> Vec<Row> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| Row::new(k.clone(), v.clone()))
                .collect()
        };
        let ex = Excludes::new(excludes).unwrap();
        RunDiff {
            changes: diff::diff_rows("users", "h1", 2, &rows(old), &rows(new), &ex),
            run: run(2, 2_000),
            previous: Some(run(1, 1_000)),
        }
    }

    #[test]
    fn one_alert_per_record_with_default_key_and_message() {
        let d = diff_of(
            json!({"alice": {"shell": "/bin/sh"}, "bob": {"uid": 1}}),
            json!({"alice": {"shell": "/bin/bash"}, "carol": {"uid": 2}}),
            &[],
        );
        let r = rule("");
        let a = alerts(&r, &Excludes::default(), &d);
        let got: Vec<(&str, &str)> = a
            .iter()
            .map(|a| (a.key.as_str(), a.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "alice",
                    "users on h1: changed alice shell: /bin/sh -> /bin/bash"
                ),
                ("carol", "users on h1: added carol"),
                ("bob", "users on h1: removed bob"),
            ]
        );
        assert_eq!((a[0].ts, a[0].first_ts, a[0].count), (2_000, 1_000, 1));
        assert_eq!(a[0].events, [1, 2]);
        assert_eq!(a[0].event_table, TABLE);
    }

    #[test]
    fn change_include_and_templates() {
        let d = diff_of(
            json!({"alice": {"shell": "/bin/sh", "uid": 1}, "bob": {"uid": 1}}),
            json!({"alice": {"shell": "/bin/bash", "uid": 5}, "carol": {"uid": 2}}),
            &["users.*.uid"],
        );
        let r = rule(
            "change = [\"added\", \"changed\"]\nkey = \"{host}/{key}\"\n\
             message = \"{snapshot} {change} {key} [{column}] {old} -> {new} row={row} run={run} base={base_run} at {ts} since {first_ts}\"\n",
        );
        let a = alerts(&r, &Excludes::default(), &d);
        let got: Vec<(&str, &str)> = a
            .iter()
            .map(|a| (a.key.as_str(), a.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "h1/alice",
                    "users changed alice [shell] /bin/sh -> /bin/bash row= run=2 base=1 \
                     at 1970-01-01T00:00:02Z since 1970-01-01T00:00:01Z"
                ),
                (
                    "h1/carol",
                    "users added carol []  -> {\"uid\":2} row={\"uid\":2} run=2 base=1 \
                     at 1970-01-01T00:00:02Z since 1970-01-01T00:00:01Z"
                ),
            ]
        );
        // include: rows by NAME.KEY, changed columns by NAME.KEY.COLUMN too.
        let r = rule("include = [\"users.*.shell\", \"users.bob\"]\n");
        let inc = Excludes::new(&r.snapshot().unwrap().include).unwrap();
        let keys: Vec<String> = alerts(&r, &inc, &d).into_iter().map(|a| a.key).collect();
        assert_eq!(keys, ["alice", "bob"]);
        // A baseline raises nothing.
        let base = RunDiff {
            previous: None,
            ..d
        };
        assert!(alerts(&rule(""), &Excludes::default(), &base).is_empty());
    }
}
