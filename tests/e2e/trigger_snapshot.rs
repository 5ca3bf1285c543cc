//! `siemtrigger` `snapshot_change` rules: JSON snapshots fed with
//! `siemparse --snapshot NAME --key F`, alerts per diff record (the same
//! records as `siemquery --snapshot NAME --diff`), excludes, include and
//! change filters, several hosts, restarts, dry-run/replay/explain, the
//! lease, and exec/file actions.

use serde_json::{Value, json};
use siemstress_tests::{Env, Kind, kinds};

const RULES: &str = r#"
[[rule]]
name = "ports"
type = "snapshot_change"
snapshot = "ports"
exclude = ["ports.*.pid"]
severity = "low"
message = "{snapshot}: {change} {key} {column} {old} -> {new}"

[[rule]]
name = "ports-new"
type = "snapshot_change"
snapshot = "ports"
change = ["added"]
key = "{host}:{key}"
severity = "high"
message = "new port {key} on {host} (run {run} vs {base_run})"
"#;

fn port(proto: &str, port: u16, pid: u32, process: &str) -> Value {
    json!({"proto": proto, "port": port, "pid": pid, "process": process})
}

fn feed(env: &Env, name: &str, rows: &[Value]) -> i64 {
    env.ingest(
        &["--snapshot", name, "--key", "proto", "--key", "port"],
        Value::Array(rows.to_vec()).to_string().as_bytes(),
    );
    env.scalar("SELECT MAX(id) FROM snapshot_runs")
}

fn once(env: &Env) {
    let (code, out, err) = env.run("siemtrigger", &["--once"], b"");
    assert_eq!(code, 0, "siemtrigger --once: {out}{err}");
}

fn key_col(env: &Env) -> &'static str {
    if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    }
}

/// (rule, key, message) of every alert, by id.
fn alerts(env: &Env) -> Vec<(String, String, String)> {
    env.rows(&format!(
        "SELECT rule, {}, message FROM alerts ORDER BY id",
        key_col(env)
    ))
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].clone().unwrap(),
        )
    })
    .collect()
}

fn host() -> String {
    siemstress_common::snapshot::local_host()
}

/// `siemquery --snapshot NAME --diff --run ID` records (ndjson).
fn query_diff(env: &Env, name: &str, run: i64, excludes: &[&str]) -> Vec<Value> {
    let run = run.to_string();
    let mut args = vec![
        "--snapshot",
        name,
        "--diff",
        "--run",
        &run,
        "--format",
        "ndjson",
    ];
    for x in excludes {
        args.extend(["--exclude", x]);
    }
    let (_, out, err) = env.run("siemquery", &args, b"");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e} ({err})")))
        .collect()
}

#[test]
fn snapshot_change_alerts_per_diff_record_and_nothing_twice() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(RULES);
        let r1 = feed(
            &env,
            "ports",
            &[
                port("tcp", 22, 100, "sshd"),
                port("tcp", 25, 200, "exim"),
                port("udp", 631, 300, "cupsd"),
            ],
        );
        // Another snapshot name is not this rule's business.
        env.ingest(&["--snapshot", "other"], br#"{"a": {"v": 1}}"#);
        once(&env);
        assert!(alerts(&env).is_empty(), "first run is a baseline");
        assert_eq!(
            env.scalar(
                "SELECT COUNT(*) FROM trigger_progress WHERE event_table = 'snapshot_runs' AND last_id = 1"
            ),
            2,
            "{kind:?}: progress of both rules at the baseline run"
        );

        let r2 = feed(
            &env,
            "ports",
            &[
                port("tcp", 22, 101, "sshd"),    // pid only: excluded
                port("tcp", 25, 200, "postfix"), // changed
                port("tcp", 4444, 400, "nc"),    // added
            ], // udp|631 removed
        );
        once(&env);
        let h = host();
        let a = alerts(&env);
        let want_first = [
            (
                "ports",
                "tcp|25",
                "ports: changed tcp|25 process exim -> postfix".to_owned(),
            ),
            ("ports", "tcp|4444", String::new()),
            ("ports", "udp|631", String::new()),
            (
                "ports-new",
                &*format!("{h}:tcp|4444"),
                format!("new port tcp|4444 on {h} (run {r2} vs {r1})"),
            ),
        ];
        assert_eq!(a.len(), want_first.len(), "{kind:?}: {a:?}");
        for (got, want) in a.iter().zip(&want_first) {
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (want.0, want.1),
                "{kind:?}"
            );
            if !want.2.is_empty() {
                assert_eq!(got.2, want.2, "{kind:?}");
            }
        }
        // Added and removed rows carry the row as {new} / {old}.
        let added: Value = serde_json::from_str(
            a[1].2
                .strip_prefix("ports: added tcp|4444   -> ")
                .unwrap_or_else(|| panic!("{}", a[1].2)),
        )
        .unwrap();
        assert_eq!(added, port("tcp", 4444, 400, "nc"));
        let removed = a[2].2.strip_prefix("ports: removed udp|631  ").unwrap();
        let removed: Value = serde_json::from_str(removed.strip_suffix(" -> ").unwrap()).unwrap();
        assert_eq!(removed, port("udp", 631, 300, "cupsd"));

        // Exactly the records of siemquery's diff with the same excludes.
        let q = query_diff(&env, "ports", r2, &["ports.*.pid"]);
        let q_keys: Vec<(&str, &str)> = q
            .iter()
            .map(|r| (r["change"].as_str().unwrap(), r["key"].as_str().unwrap()))
            .collect();
        assert_eq!(
            q_keys,
            [
                ("changed", "tcp|25"),
                ("added", "tcp|4444"),
                ("removed", "udp|631")
            ]
        );

        // ts = the run's time, first_ts = the base run's, count 1, the two
        // runs as the alert's events.
        let taken =
            |id: i64| env.scalar(&format!("SELECT taken FROM snapshot_runs WHERE id = {id}"));
        let row = env.rows(
            "SELECT ts, first_ts, count, event_table, window_end, severity FROM alerts ORDER BY id LIMIT 1",
        );
        let row = &row[0];
        assert_eq!(row[0].as_deref(), Some(&*taken(r2).to_string()));
        assert_eq!(row[1].as_deref(), Some(&*taken(r1).to_string()));
        assert_eq!(row[2].as_deref(), Some("1"));
        assert_eq!(row[3].as_deref(), Some("snapshot_runs"));
        assert_eq!(row[4], None);
        assert_eq!(row[5].as_deref(), Some("low"));
        let ev = env.rows(
            "SELECT event_table, event_id FROM alert_events WHERE alert_id = (SELECT MIN(id) FROM alerts) ORDER BY event_id",
        );
        assert_eq!(
            ev,
            [
                vec![Some("snapshot_runs".into()), Some(r1.to_string())],
                vec![Some("snapshot_runs".into()), Some(r2.to_string())]
            ]
        );

        // Restarts: nothing is raised twice; an unchanged run, a failed run
        // and other names raise nothing.
        once(&env);
        once(&env);
        let r3 = feed(
            &env,
            "ports",
            &[
                port("tcp", 22, 101, "sshd"),
                port("tcp", 25, 200, "postfix"),
                port("tcp", 4444, 400, "nc"),
            ],
        );
        let (code, _, _) = env.run("siemparse", &["--snapshot", "ports"], b"not json");
        assert_eq!(code, 2);
        env.ingest(&["--snapshot", "other"], br#"{"a": {"v": 2}}"#);
        once(&env);
        assert_eq!(alerts(&env).len(), 4, "{kind:?}");

        // A second host: its own baseline, then its own diff (not against
        // this host's runs).
        let on = |host: &str, id: i64| {
            env.rows(&format!(
                "UPDATE snapshot_runs SET host = '{host}' WHERE id = {id}"
            ));
        };
        let w1 = feed(&env, "ports", &[port("tcp", 80, 1, "nginx")]);
        on("web02", w1);
        once(&env);
        assert_eq!(alerts(&env).len(), 4, "{kind:?}: baseline of web02");
        let w2 = feed(
            &env,
            "ports",
            &[port("tcp", 80, 1, "nginx"), port("tcp", 443, 1, "nginx")],
        );
        on("web02", w2);

        // --dry-run prints what --once would store, and stores nothing.
        let progress = "SELECT rule, last_id FROM trigger_progress ORDER BY rule";
        let before = env.rows(progress);
        let (code, out, err) = env.run("siemtrigger", &["--dry-run"], b"");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("[tcp|443]") && out.contains("[web02:tcp|443]"),
            "{out}"
        );
        assert_eq!(alerts(&env).len(), 4);
        assert_eq!(env.rows(progress), before);
        once(&env);
        let a = alerts(&env);
        assert_eq!(
            a[4..]
                .iter()
                .map(|a| (a.0.as_str(), a.1.as_str()))
                .collect::<Vec<_>>(),
            [("ports", "tcp|443"), ("ports-new", "web02:tcp|443")],
            "{kind:?}"
        );
        assert_eq!(
            a[5].2,
            format!("new port tcp|443 on web02 (run {w2} vs {w1})")
        );
        assert_eq!(
            env.scalar("SELECT MIN(last_id) FROM trigger_progress"),
            w2,
            "{kind:?}"
        );
        let _ = r3;

        // --replay: the runs taken in the range, each against its previous
        // run, printed; nothing stored.
        let (code, out, err) = env.run(
            "siemtrigger",
            &[
                "--replay",
                "--from",
                "20000101000000",
                "--to",
                "21000101000000",
                "--format",
                "json",
                "--rule",
                "ports",
            ],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let keys: Vec<String> = out
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["key"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(keys, ["tcp|25", "tcp|4444", "udp|631", "tcp|443"], "{out}");
        assert_eq!(alerts(&env).len(), 6);

        // --explain shows the two runs compared.
        let id = env.scalar("SELECT MIN(id) FROM alerts").to_string();
        let (code, out, err) = env.run("siemtrigger", &["--explain", &id], b"");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!("snapshot_runs#{r1}"))
                && out.contains(&format!("snapshot_runs#{r2}"))
                && out.contains(&format!("siemquery --snapshot ports --diff --run {r2}")),
            "{out}"
        );
        let (code, _, err) = env.run("siemtrigger", &["--explain-rule", "ports"], b"");
        assert_eq!(code, 2);
        assert!(err.contains("snapshot_change"), "{err}");
    }
}

#[test]
fn snapshot_change_lease_edit_and_rule_errors() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(RULES);
        feed(&env, "ports", &[port("tcp", 22, 1, "sshd")]);
        once(&env);
        feed(&env, "ports", &[port("tcp", 23, 1, "telnetd")]);
        // Another instance holds the lease: nothing is evaluated.
        let far = siemstress_common::time::now_ms() + 600_000;
        env.rows(&format!(
            "UPDATE trigger_lease SET holder = 'otherhost:1:x', expires = {far}"
        ));
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 1, "{err}");
        assert!(alerts(&env).is_empty());
        env.rows("UPDATE trigger_lease SET expires = 0");
        once(&env);
        assert_eq!(alerts(&env).len(), 3, "{kind:?}: added, removed, added");

        // An edited rule keeps its progress: no history is raised again.
        env.config(&RULES.replace("severity = \"low\"", "severity = \"medium\""));
        once(&env);
        assert_eq!(alerts(&env).len(), 3, "{kind:?}");
        // A new rule starts from the first run (documented): it raises the
        // history once.
        env.config(&format!(
            "{RULES}\n[[rule]]\nname = \"late\"\ntype = \"snapshot_change\"\nsnapshot = \"ports\"\nchange = \"removed\"\n"
        ));
        once(&env);
        let a = alerts(&env);
        assert_eq!(a.len(), 4, "{kind:?}");
        assert_eq!((a[3].0.as_str(), a[3].1.as_str()), ("late", "tcp|22"));
        assert_eq!(a[3].2, format!("ports on {}: removed tcp|22", host()));
    }

    // Validation errors name the file, the rule and the key.
    let env = Env::new(Kind::Sqlite);
    std::fs::create_dir(env.path().join("rules.d")).unwrap();
    env.config("[rules]\npaths = [\"rules.d/*.toml\"]\n");
    for (body, key, what) in [
        ("", "snapshot", "missing"),
        (
            "snapshot = \"ports\"\nchange = [\"moved\"]",
            "change",
            "moved",
        ),
        ("snapshot = \"ports\"\nexclude = [\"a[\"]", "exclude", "a["),
        (
            "snapshot = \"ports\"\nmessage = \"{process}\"",
            "message",
            "{process}",
        ),
        (
            "snapshot = \"ports\"\ntable = \"auth\"",
            "table",
            "snapshot_change",
        ),
    ] {
        std::fs::write(
            env.path().join("rules.d/snap.toml"),
            format!("[[rule]]\nname = \"s\"\ntype = \"snapshot_change\"\n{body}\n"),
        )
        .unwrap();
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 2, "{body}");
        assert!(
            err.contains("rules.d/snap.toml")
                && err.contains("rule \"s\"")
                && err.contains(&format!("key `{key}`"))
                && err.contains(what),
            "{body}: {err}"
        );
    }
}

#[test]
fn snapshot_change_actions_exec_and_file() {
    for kind in kinds() {
        let env = Env::new(kind);
        let dir = env.path().display().to_string();
        let script = env.path().join("record.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nenv | grep '^SIEM_' | sort >> \"$1/env.txt\"\necho \"$2\" >> \"$1/arg.txt\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        env.config(&format!(
            r#"[actions.record]
type = "exec"
program = "{script}"
args = ["{dir}", "{{rule}} {{key}}"]

[actions.log]
type = "file"
path = "{dir}/alerts.ndjson"

[[rule]]
name = "new-user"
type = "snapshot_change"
snapshot = "people"
change = "added"
severity = "high"
message = "user {{key}} added on {{host}}: shell {{new}}"
actions = ["record", "log"]
"#,
            script = script.display()
        ));
        let feed = |v: &str| env.ingest(&["--snapshot", "people"], v.as_bytes());
        feed(r#"{"alice": "/bin/sh"}"#);
        once(&env);
        feed(r#"{"alice": "/bin/sh", "mallory": "/bin/bash"}"#);
        once(&env);
        once(&env);

        let env_txt = std::fs::read_to_string(env.path().join("env.txt")).unwrap();
        let h = host();
        for want in [
            "SIEM_RULE=new-user".to_owned(),
            "SIEM_KEY=mallory".to_owned(),
            format!("SIEM_MESSAGE=user mallory added on {h}: shell /bin/bash"),
            "SIEM_SEVERITY=high".to_owned(),
            "SIEM_COUNT=1".to_owned(),
            "SIEM_EVENT_TABLE=snapshot_runs".to_owned(),
        ] {
            assert!(env_txt.lines().any(|l| l == want), "{want}: {env_txt}");
        }
        assert_eq!(
            env_txt
                .lines()
                .filter(|l| l.starts_with("SIEM_RULE="))
                .count(),
            1,
            "the action ran once: {env_txt}"
        );
        let arg = std::fs::read_to_string(env.path().join("arg.txt")).unwrap();
        assert_eq!(arg.trim(), "new-user mallory");
        let log = std::fs::read_to_string(env.path().join("alerts.ndjson")).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        let v: Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(v["rule"], "new-user");
        assert_eq!(v["key"], "mallory");
        assert_eq!(
            v["message"],
            format!("user mallory added on {h}: shell /bin/bash")
        );
        let runs = env.rows("SELECT action, status FROM action_runs ORDER BY action");
        assert_eq!(
            runs,
            [
                vec![Some("log".into()), Some("ok".into())],
                vec![Some("record".into()), Some("ok".into())]
            ],
            "{kind:?}"
        );
    }
}
