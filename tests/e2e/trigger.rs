//! `siemtrigger`: rule semantics on hand-made event sequences, state across
//! runs and kills, the lease, dry-run/replay/explain, and the shipped rules.

use std::path::Path;
use std::time::{Duration, Instant};

use siemstress_tests::{Env, Kind, kinds};

/// Epoch seconds of 2024-01-01T00:00:00Z, the base of every sequence.
const BASE: i64 = 1_704_067_200;

/// An RFC3164 line `sec` seconds after BASE (UTC, year given at ingest).
fn line(sec: i64, process: &str, msg: &str) -> String {
    let t = chrono::DateTime::from_timestamp(BASE + sec, 0).unwrap();
    format!(
        "{} web01 {process}[100]: {msg}\n",
        t.format("%b %e %H:%M:%S")
    )
}

fn fail(sec: i64, ip: &str) -> String {
    line(
        sec,
        "sshd",
        &format!("Failed password for root from {ip} port 4242 ssh2"),
    )
}

/// An env with `[section.auth]` in UTC and `rules` inline in the config.
fn setup(kind: Kind, rules: &str) -> Env {
    let env = Env::new(kind);
    env.config(&format!(
        "[section.auth]\ntable = \"auth\"\ntimezone = \"UTC\"\n\n{rules}"
    ));
    env
}

fn ingest(env: &Env, lines: &[String]) {
    env.ingest(&["-s", "auth", "--year", "2024"], lines.concat().as_bytes());
}

fn trigger(env: &Env, args: &[&str]) -> (i32, String, String) {
    env.run("siemtrigger", args, b"")
}

fn once(env: &Env) {
    let (code, out, err) = trigger(env, &["--once"]);
    assert_eq!(code, 0, "siemtrigger --once: {out}{err}");
}

/// (rule, key, ts s, first_ts s, count, message) of every alert, by id.
fn alerts(env: &Env) -> Vec<(String, String, i64, i64, i64, String)> {
    let q = if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    };
    env.rows(&format!(
        "SELECT rule, {q}, ts, first_ts, count, message FROM alerts ORDER BY id"
    ))
    .into_iter()
    .map(|r| {
        let n = |i: usize| r[i].as_deref().unwrap().parse::<i64>().unwrap();
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            n(2) / 1000 - BASE,
            n(3) / 1000 - BASE,
            n(4),
            r[5].clone().unwrap(),
        )
    })
    .collect()
}

/// Event ids of alert number `n` (1-based, by id order).
fn alert_events(env: &Env, n: usize) -> Vec<i64> {
    let id = env.rows("SELECT id FROM alerts ORDER BY id")[n - 1][0]
        .clone()
        .unwrap();
    env.rows(&format!(
        "SELECT event_id FROM alert_events WHERE alert_id = {id} ORDER BY event_id"
    ))
    .into_iter()
    .map(|r| r[0].as_deref().unwrap().parse().unwrap())
    .collect()
}

const BRUTE: &str = r#"
[[rule]]
name = "brute"
type = "threshold"
table = "auth"
severity = "high"
match = { process = ["sshd"], regex = 'Failed password for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+)' }
reset = { process = ["sshd"], regex = 'Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)' }
key = "{ip}"
window = "60s"
threshold = 3
message = "SSH brute force from {ip} ({count} failures, last user {user})"
"#;

#[test]
fn threshold_reached_exactly_at_window_edge_counts() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        ingest(
            &env,
            &[
                fail(0, "10.0.0.1"),
                fail(0, "10.0.0.2"),
                fail(30, "10.0.0.1"),
                fail(30, "10.0.0.2"),
                fail(60, "10.0.0.1"), // exactly start + 60s: inclusive
                fail(61, "10.0.0.2"), // one second late: slides instead
            ],
        );
        once(&env);
        let a = alerts(&env);
        assert_eq!(
            a,
            [(
                "brute".into(),
                "10.0.0.1".into(),
                60,
                0,
                3,
                "SSH brute force from 10.0.0.1 (3 failures, last user root)".into()
            )],
            "{kind:?}"
        );
        assert_eq!(alert_events(&env, 1), [1, 3, 5], "{kind:?}");
    }
}

#[test]
fn threshold_slides_absorbs_then_restarts() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        let ip = "192.0.2.7";
        ingest(
            &env,
            &[
                fail(0, ip),
                fail(30, ip),
                fail(70, ip), // 0 falls out: window restarts at 30
                fail(80, ip), // 30, 70, 80: fires, window 30..90
                fail(85, ip), // absorbed
                fail(90, ip), // absorbed (inclusive end)
                fail(91, ip), // new window at 91
                fail(92, ip),
                fail(151, ip), // 91, 92, 151 within 60s: fires again
            ],
        );
        once(&env);
        let a = alerts(&env);
        let got: Vec<(i64, i64, i64)> = a.iter().map(|x| (x.2, x.3, x.4)).collect();
        assert_eq!(got, [(80, 30, 3), (151, 91, 3)], "{kind:?}");
        assert_eq!(alert_events(&env, 1), [2, 3, 4], "{kind:?}");
        assert_eq!(alert_events(&env, 2), [7, 8, 9], "{kind:?}");
    }
}

#[test]
fn interleaved_keys_and_reset() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        let ok = |sec: i64, ip: &str| {
            line(
                sec,
                "sshd",
                &format!("Accepted password for root from {ip} port 1 ssh2"),
            )
        };
        ingest(
            &env,
            &[
                fail(0, "a1"),
                fail(1, "b2"),
                fail(2, "a1"),
                fail(3, "c3"),
                fail(4, "b2"),
                ok(5, "a1"), // clears a1's window
                fail(6, "a1"),
                fail(7, "b2"), // b2: 3 -> fires
                fail(8, "c3"),
                fail(9, "a1"), // a1: only 2 since the reset
            ],
        );
        once(&env);
        let a = alerts(&env);
        let got: Vec<(&str, i64)> = a.iter().map(|x| (x.1.as_str(), x.2)).collect();
        assert_eq!(got, [("b2", 7)], "{kind:?}");
        assert_eq!(alert_events(&env, 1), [2, 5, 8], "{kind:?}");
    }
}

#[test]
fn distinct_counts_ports_not_events() {
    for kind in kinds() {
        let env = setup(
            kind,
            r#"
[[rule]]
name = "scan"
type = "threshold"
table = "auth"
match = { process = ["kernel"], grep = "SRC=" }
key = "{source_host}"
distinct = "dest_port"
window = "10s"
threshold = 3
message = "port scan from {shost}: {count} ports"
"#,
        );
        let fw = |sec: i64, port: u16| {
            line(
                sec,
                "kernel",
                &format!(
                    "[UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.9 DST=192.0.2.1 PROTO=TCP SPT=5000 DPT={port}"
                ),
            )
        };
        // The kernel line has no [pid]; build it by hand.
        let fw = |sec: i64, port: u16| fw(sec, port).replace("kernel[100]", "kernel");
        ingest(
            &env,
            &[fw(0, 22), fw(1, 22), fw(2, 22), fw(3, 80), fw(4, 443)],
        );
        once(&env);
        let a = alerts(&env);
        assert_eq!(a.len(), 1, "{kind:?} {a:?}");
        assert_eq!((a[0].2, a[0].3, a[0].4), (4, 0, 3), "{kind:?}");
        assert_eq!(a[0].5, "port scan from 198.51.100.9: 3 ports");
        assert_eq!(alert_events(&env, 1), [1, 2, 3, 4, 5], "{kind:?}");
    }
}

const SESSIONS: &str = r#"
[[rule]]
name = "session-pair"
type = "pair"
table = "auth"
first = { regex = 'session opened for user (?P<u>[a-z]+) sid=(?P<sid>\d+)' }
second = { regex = 'session closed sid={sid}$' }
key = "{sid}"
window = "60s"
message = "{u} session {sid} closed"

[[rule]]
name = "session-open"
type = "absence"
table = "auth"
first = { regex = 'session opened for user (?P<u>[a-z]+) sid=(?P<sid>\d+)' }
second = { regex = 'session closed sid={sid}$' }
key = "{sid}"
window = "60s"
message = "{u} session {sid} not closed within {window}"
"#;

#[test]
fn pair_with_back_reference_and_absence_at_window_end() {
    for kind in kinds() {
        let env = setup(kind, SESSIONS);
        let open = |sec, u: &str, sid: u32| {
            line(
                sec,
                "app",
                &format!("session opened for user {u} sid={sid}"),
            )
        };
        let close = |sec, sid: u32| line(sec, "app", &format!("session closed sid={sid}"));
        ingest(
            &env,
            &[
                open(0, "alice", 1),
                open(5, "bob", 2),
                open(10, "alice", 1), // does not restart sid 1's window
                close(20, 12),        // matches no open window
                close(60, 1),         // exactly at the end of sid 1's window: pair fires
                open(100, "carol", 3),
                close(161, 3),         // one second late: pair closes silently
                line(300, "app", "x"), // event time moves past every window
            ],
        );
        once(&env);
        let a = alerts(&env);
        let got: Vec<(&str, &str, i64, i64, &str)> = a
            .iter()
            .map(|x| (x.0.as_str(), x.1.as_str(), x.2, x.3, x.5.as_str()))
            .collect();
        let mut sorted = got.clone();
        sorted.sort_by_key(|x| (x.0, x.2));
        assert_eq!(
            sorted,
            [
                (
                    "session-open",
                    "2",
                    65,
                    5,
                    "bob session 2 not closed within 1m"
                ),
                (
                    "session-open",
                    "3",
                    160,
                    100,
                    "carol session 3 not closed within 1m"
                ),
                ("session-pair", "1", 60, 0, "alice session 1 closed"),
            ],
            "{kind:?}"
        );
        // The pair alert covers the first `first` and the `second`.
        let pair_n = a.iter().position(|x| x.0 == "session-pair").unwrap() + 1;
        assert_eq!(alert_events(&env, pair_n), [1, 5], "{kind:?}");
    }
}

#[test]
fn absence_fires_only_when_event_time_passes_the_end() {
    for kind in kinds() {
        let env = setup(kind, SESSIONS);
        let open = line(0, "app", "session opened for user dave sid=9");
        ingest(&env, &[open, line(60, "app", "tick")]);
        once(&env);
        // Event time is exactly the end: still open (a close at 60 would count).
        assert!(alerts(&env).is_empty(), "{kind:?}");
        ingest(&env, &[line(61, "app", "tick")]);
        once(&env);
        let a = alerts(&env);
        assert_eq!(a.len(), 1, "{kind:?}");
        assert_eq!((a[0].1.as_str(), a[0].2, a[0].3), ("9", 60, 0), "{kind:?}");
        // A later run repeats nothing.
        once(&env);
        assert_eq!(alerts(&env).len(), 1, "{kind:?}");
    }
}

#[test]
fn same_second_events_keep_stored_order() {
    for kind in kinds() {
        let env = setup(kind, SESSIONS);
        // Same second: close stored before open must not pair; open then close must.
        ingest(
            &env,
            &[
                line(0, "app", "session closed sid=5"),
                line(0, "app", "session opened for user eve sid=5"),
                line(1, "app", "session opened for user fay sid=6"),
                line(1, "app", "session closed sid=6"),
            ],
        );
        once(&env);
        let pairs: Vec<String> = alerts(&env)
            .into_iter()
            .filter(|a| a.0 == "session-pair")
            .map(|a| a.1)
            .collect();
        assert_eq!(pairs, ["6"], "{kind:?}");
    }
}

#[test]
fn windows_survive_between_runs_and_nothing_repeats() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        ingest(&env, &[fail(0, "x"), fail(10, "x")]);
        once(&env);
        assert!(alerts(&env).is_empty());
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM trigger_windows WHERE rule = 'brute'"),
            1
        );
        ingest(&env, &[fail(20, "x"), fail(25, "x")]);
        once(&env);
        once(&env);
        let a = alerts(&env);
        assert_eq!(a.len(), 1, "{kind:?}");
        assert_eq!((a[0].2, a[0].3, a[0].4), (20, 0, 3), "{kind:?}");
    }
}

#[test]
fn dry_run_and_replay_store_nothing() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        ingest(&env, &[fail(0, "x"), fail(1, "x"), fail(2, "x")]);
        let (code, out, err) = trigger(&env, &["--dry-run"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("SSH brute force from x"), "{out}");
        assert!(alerts(&env).is_empty());
        assert_eq!(env.scalar("SELECT COUNT(*) FROM trigger_progress"), 0);

        once(&env);
        assert_eq!(alerts(&env).len(), 1);
        // Replay re-evaluates history from scratch state, JSON on request.
        let (code, out, err) = trigger(
            &env,
            &[
                "--replay",
                "--from",
                "2024-01-01T00:00:00Z",
                "--to",
                "2024-01-01T00:00:02Z",
                "--format",
                "json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.is_empty(), "only 2 events in range: {out}");
        let (_, out, _) = trigger(
            &env,
            &[
                "--replay",
                "--from",
                "20240101000000",
                "--to",
                "20240102000000",
                "--format",
                "json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
        assert_eq!(v["count"], 3);
        assert_eq!(v["events"], serde_json::json!([1, 2, 3]));
        assert_eq!(alerts(&env).len(), 1, "replay stored nothing");
    }
}

#[test]
fn explain_alert_and_rule() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        ingest(
            &env,
            &[
                fail(0, "x"),
                fail(1, "x"),
                fail(2, "x"),
                fail(3, "y"),
                fail(4, "y"),
            ],
        );
        once(&env);
        let id = env.scalar("SELECT MAX(id) FROM alerts").to_string();
        let (code, out, err) = trigger(&env, &["--explain", &id]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("2024-01-01T00:00:00Z .. 2024-01-01T00:01:00Z"),
            "{out}"
        );
        assert_eq!(
            out.matches("Failed password for root from x").count(),
            3,
            "{out}"
        );
        let (code, _, _) = trigger(&env, &["--explain", "999"]);
        assert_eq!(code, 2);

        let (code, out, err) = trigger(
            &env,
            &[
                "--explain-rule",
                "brute",
                "--range",
                "20240101000000-20240102000000",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let rows: Vec<&str> = out.lines().collect();
        assert!(rows[0].contains("1 alerts, 2 keys"), "{out}");
        assert!(
            rows[2].trim_start().starts_with("3/3") && rows[2].ends_with(" x"),
            "{out}"
        );
        assert!(
            rows[3].trim_start().starts_with("2/3") && rows[3].ends_with(" y"),
            "{out}"
        );
    }
}

#[test]
fn lease_keeps_a_second_instance_out() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        ingest(&env, &[fail(0, "x"), fail(1, "x"), fail(2, "x")]);
        // A live holder on another host.
        once(&env);
        let far = siemstress_common::time::now_ms() + 600_000;
        env.rows(&format!(
            "UPDATE trigger_lease SET holder = 'otherhost:1:x', expires = {far}"
        ));
        ingest(&env, &[fail(3, "y"), fail(4, "y"), fail(5, "y")]);
        let (code, _, err) = trigger(&env, &["--once"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("otherhost:1:x"), "{err}");
        assert_eq!(alerts(&env).len(), 1);
        // A holder on this host whose process is gone is taken over at once.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        env.rows(&format!(
            "UPDATE trigger_lease SET holder = '{}:999999999:x'",
            host.trim()
        ));
        once(&env);
        assert_eq!(alerts(&env).len(), 2);

        // Two instances started together never double-fire.
        let env = setup(kind, BRUTE);
        let lines: Vec<String> = (0..600).map(|i| fail(i, &format!("h{}", i % 7))).collect();
        ingest(&env, &lines);
        let spawn = || {
            env.cmd("siemtrigger")
                .args(["--once", "--chunk", "50"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        a.wait().unwrap();
        b.wait().unwrap();
        once(&env);
        let n = alerts(&env).len();
        let single = setup(kind, BRUTE);
        ingest(&single, &lines);
        once(&single);
        assert_eq!(n, alerts(&single).len(), "{kind:?}");
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM (SELECT rule, ts FROM alerts GROUP BY rule, ts HAVING COUNT(*) > 1) d"),
            0
        );
    }
}

#[test]
fn rule_errors_name_file_rule_and_key() {
    let env = Env::new(Kind::Sqlite);
    std::fs::create_dir(env.path().join("rules.d")).unwrap();
    std::fs::write(
        env.path().join("rules.d/bad.toml"),
        "[[rule]]\nname = \"b\"\ntype = \"threshold\"\nthreshold = 2\nmatch = { regex = '(?P<ip>x)' }\nkey = \"{ipp}\"\nwindow = \"1m\"\n",
    )
    .unwrap();
    env.config("[rules]\npaths = [\"rules.d/*.toml\"]\n");
    let (code, _, err) = trigger(&env, &["--check"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("rules.d/bad.toml")
            && err.contains("\"b\"")
            && err.contains("key `key`")
            && err.contains("{ipp}"),
        "{err}"
    );
    for (body, key) in [
        ("type = \"sometimes\"", "type"),
        ("type = \"threshold\"\nthreshold = 2\nmatch = {}", "window"),
        ("type = \"single\"\nmatch = { regex = 'a(' }", "match.regex"),
        (
            "type = \"single\"\nmatch = {}\nmessage = \"{nothing}\"",
            "message",
        ),
    ] {
        std::fs::write(
            env.path().join("rules.d/bad.toml"),
            format!("[[rule]]\nname = \"b\"\n{body}\n"),
        )
        .unwrap();
        let (code, _, err) = trigger(&env, &["--check"]);
        assert_eq!(code, 2, "{body}");
        assert!(err.contains(&format!("key `{key}`")), "{body}: {err}");
    }
}

/// The shipped rule files, from the repository's config/rules.
fn shipped_rules() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules")
}

#[test]
fn every_shipped_rule_loads_and_runs() {
    let dir = shipped_rules();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(!files.is_empty());
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(&format!(
            "[section.auth]\ntimezone = \"UTC\"\n[section.kern]\ntimezone = \"UTC\"\n\
             [rules]\npaths = [\"{}/*.toml\"]\n\
             [actions.mail]\nsmtp = \"smtp://127.0.0.1:1\"\nfrom = \"siem@example.org\"\nto = [\"sec@example.org\"]\n",
            dir.display()
        ));
        let (code, out, err) = trigger(&env, &["--check"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.lines().count() >= 8, "{out}");
        let sample =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample-auth.log"))
                .unwrap();
        env.ingest(&["-s", "auth", "--year", "2026"], &sample);
        // More lines so that every rule of the pack has something to fire on.
        let mut more: Vec<String> = (0..6)
            .map(|i| fail(i, "203.0.113.50").replace("for root", &format!("for invalid user u{i}")))
            .collect();
        more.push(line(
            7,
            "sshd",
            "Accepted password for root from 203.0.113.50 port 2 ssh2",
        ));
        more.push(line(
            8,
            "useradd",
            "new user: name=mallory, UID=1001, GID=1001, home=/home/mallory, shell=/bin/sh",
        ));
        more.push(line(8, "groupadd", "new group: name=wheel2, GID=1002"));
        for p in 1..=12 {
            more.push(
                line(9, "kernel", &format!("[UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.66 DST=192.0.2.1 PROTO=TCP SPT=4000 DPT={p}"))
                    .replace("kernel[100]", "kernel"),
            );
        }
        env.ingest(&["-s", "auth", "--year", "2024"], more.concat().as_bytes());
        // Snapshots for config/rules/snapshots.toml: a baseline, then a change.
        for (name, before, after) in [
            (
                "listenports",
                r#"{"tcp/0.0.0.0:22": {"proto": "tcp", "port": 22, "pid": 1, "process": "sshd"}}"#,
                r#"{"tcp/0.0.0.0:22": {"proto": "tcp", "port": 22, "pid": 2, "process": "sshd"},
                    "tcp/0.0.0.0:4444": {"proto": "tcp", "port": 4444, "pid": 9, "process": "nc", "verified": false},
                    "tcp/0.0.0.0:8443": {"proto": "tcp", "port": 8443, "pid": 10, "process": "app", "verified": true}}"#,
            ),
            (
                "hygiene",
                r#"{"duplicate_uid:0": {"check": "duplicate_uid", "uid": 0}}"#,
                r#"{"duplicate_uid:0": {"check": "duplicate_uid", "uid": 0},
                    "uid0:mallory": {"check": "uid0", "user": "mallory"}}"#,
            ),
            (
                "packages",
                r#"{"/etc/ssh/sshd_config": {"status": "changed", "conffile": true}}"#,
                r#"{"/etc/ssh/sshd_config": {"status": "changed", "conffile": true},
                    "/etc/default/grub": {"status": "changed", "conffile": true},
                    "/usr/bin/ls": {"status": "changed", "package": "coreutils", "conffile": false}}"#,
            ),
            (
                "users",
                r#"{"root": {"uid": 0, "shell": "/bin/bash"}}"#,
                r#"{"root": {"uid": 0, "shell": "/bin/bash"}, "mallory": {"uid": 0, "shell": "/bin/sh"}}"#,
            ),
            (
                "files",
                r#"{"/etc/passwd": {"sha256": "aa", "mode": "0644"}, "/usr/bin/x": {"sha256": "cc"}, "/etc/shadow": {"sha256": "s1"}}"#,
                r#"{"/etc/passwd": {"sha256": "bb", "mode": "0644"}, "/usr/bin/x": {"sha256": "dd"}, "/etc/shadow": {"sha256": "s2"}}"#,
            ),
            (
                "suid",
                r#"{"/usr/bin/su": {"mode": "4755"}}"#,
                r#"{"/usr/bin/su": {"mode": "4755"}, "/tmp/.x/sh": {"mode": "4755"}}"#,
            ),
        ] {
            env.ingest(&["--snapshot", name], before.as_bytes());
            env.ingest(&["--snapshot", name], after.as_bytes());
        }
        once(&env);
        let mut snapshot_alerts: Vec<(String, String)> = alerts(&env)
            .into_iter()
            .map(|a| (a.0, a.1))
            .filter(|(r, _)| {
                [
                    "new-listening-port",
                    "user-added-or-removed",
                    "etc-file-content-changed",
                    "new-suid-binary",
                    "unverified-listening-port",
                    "new-uid0-account",
                    "package-file-changed",
                    "secret-file-changed",
                ]
                .contains(&r.as_str())
            })
            .collect();
        snapshot_alerts.sort();
        let mut want: Vec<(String, String)> = [
            ("new-listening-port", "tcp/0.0.0.0:4444"),
            ("new-listening-port", "tcp/0.0.0.0:8443"),
            ("user-added-or-removed", "mallory"),
            ("etc-file-content-changed", "/etc/passwd"),
            ("etc-file-content-changed", "/etc/shadow"),
            ("new-suid-binary", "/tmp/.x/sh"),
            ("unverified-listening-port", "tcp/0.0.0.0:4444"),
            ("new-uid0-account", "uid0:mallory"),
            ("package-file-changed", "/usr/bin/ls"),
            ("secret-file-changed", "/etc/shadow"),
        ]
        .into_iter()
        .map(|(r, k)| (r.to_owned(), k.to_owned()))
        .collect();
        want.sort();
        assert_eq!(snapshot_alerts, want, "{kind:?}");
        let rules: Vec<String> = alerts(&env).into_iter().map(|a| a.0).collect();
        for expected in [
            "ssh-bruteforce",
            "ssh-password-spraying",
            "ssh-success-after-failures",
            "root-login",
            "sudo-to-root",
            "su-to-root",
            "new-user",
            "new-group",
            "session-without-close",
            "port-scan",
        ] {
            assert!(rules.iter().any(|r| r == expected), "{expected}: {rules:?}");
        }
    }
}

/// A larger generated auth log: failures from a few dozen addresses, logins
/// and sessions, over a few hours.
fn big_log(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut sec = 0i64;
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let r = rnd();
        sec += (r % 4) as i64;
        let ip = format!("10.0.{}.{}", r % 3, (r >> 8) % 40);
        let l = match (r >> 16) % 10 {
            0 => line(
                sec,
                "sshd",
                &format!(
                    "Accepted password for u{} from {ip} port 22 ssh2",
                    (r >> 24) % 5
                ),
            ),
            1 => line(
                sec,
                "app",
                &format!("session opened for user u sid={}", i % 500),
            ),
            2 => line(sec, "app", &format!("session closed sid={}", (i + 3) % 500)),
            _ => fail(sec, &ip),
        };
        out.push(l);
    }
    out
}

fn alert_digest(env: &Env) -> Vec<String> {
    let q = if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    };
    let mut v: Vec<String> = env
        .rows(&format!(
            "SELECT a.rule, a.{q}, a.ts, a.first_ts, a.count, a.message, \
             (SELECT COUNT(*) FROM alert_events e WHERE e.alert_id = a.id), \
             (SELECT CAST(SUM(e.event_id) AS SIGNED) FROM alert_events e WHERE e.alert_id = a.id) FROM alerts a"
        ))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    v.sort();
    v
}

#[test]
fn sigkill_at_random_points_gives_the_same_alerts() {
    let rules = format!("{BRUTE}\n{SESSIONS}");
    let lines = big_log(12_000);
    for kind in kinds() {
        let reference = setup(kind, &rules);
        ingest(&reference, &lines);
        let (code, _, err) = trigger(&reference, &["--once", "--chunk", "400"]);
        assert_eq!(code, 0, "{err}");
        let want = alert_digest(&reference);
        assert!(want.len() > 50, "{}", want.len());

        let env = setup(kind, &rules);
        ingest(&env, &lines);
        // Done when every rule's watermark has passed the latest row.
        let max_ts = env.scalar("SELECT MAX(ts) FROM auth");
        let done = || {
            env.scalar(&format!(
                "SELECT COUNT(*) FROM trigger_progress WHERE wm > {max_ts}"
            )) == 3
        };
        let started = Instant::now();
        let mut kills = 0;
        while !done() && started.elapsed() < Duration::from_secs(120) {
            let mut child = env
                .cmd("siemtrigger")
                .args(["--interval", "200ms", "--chunk", "400", "--settle", "0s"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(100 + rand::random::<u64>() % 400));
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            child.wait().unwrap();
            kills += 1;
        }
        // Finish whatever is left, then compare.
        let (code, _, err) = trigger(&env, &["--once", "--chunk", "400"]);
        assert_eq!(code, 0, "{err}");
        assert!(kills >= 2, "{kind:?}: only {kills} kills");
        assert_eq!(alert_digest(&env), want, "{kind:?} after {kills} kills");
    }
}

/// The next chunk is read while one is evaluated, a chunk commits while
/// the next is evaluated, and shares of the rules are evaluated on threads
/// of their own (issue 13): many small chunks store the alerts, alert events
/// and windows of a single chunk, each alert printed with its stored id;
/// the split over threads changes nothing, not even the alerts' order.
#[test]
fn chunks_pipelined_and_rules_on_threads_give_the_same_results() {
    let mut rules = format!("{BRUTE}\n{SESSIONS}");
    for n in 2..6 {
        rules.push_str(
            &BRUTE
                .replace("name = \"brute\"", &format!("name = \"brute{n}\""))
                .replace("threshold = 3", &format!("threshold = {n}")),
        );
    }
    let lines = big_log(6_000);
    for kind in kinds() {
        let mut got = Vec::new();
        for (chunk, threads) in [("1000000", "1"), ("97", "1"), ("97", "3")] {
            let env = setup(kind, &rules);
            ingest(&env, &lines);
            let out = env
                .cmd("siemtrigger")
                .env("SIEMSTRESS_TRIGGER_THREADS", threads)
                .args(["--once", "-v", "--format", "json", "--chunk", chunk])
                .output()
                .unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Each printed alert is the stored one of its id.
            let q = if kind == Kind::Mysql {
                "`key`"
            } else {
                "\"key\""
            };
            let stored = env.rows(&format!(
                "SELECT id, rule, {q}, count, message FROM alerts ORDER BY id"
            ));
            let printed: Vec<Vec<Option<String>>> = stdout
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect(l);
                    ["id", "rule", "key", "count", "message"]
                        .iter()
                        .map(|f| match &v[f] {
                            serde_json::Value::String(s) => Some(s.clone()),
                            x => Some(x.to_string()),
                        })
                        .collect()
                })
                .collect();
            assert_eq!(printed, stored, "{kind:?} chunk {chunk} threads {threads}");
            let windows = env.rows(
                "SELECT rule, event_table, wkey, state FROM trigger_windows \
                 ORDER BY rule, event_table, wkey",
            );
            got.push((stdout, alerts(&env), alert_digest(&env), windows));
        }
        assert!(got[0].1.len() > 100, "{kind:?}: {} alerts", got[0].1.len());
        // One chunk orders its alerts rule by rule: compare them as sets.
        assert_eq!(got[0].2, got[1].2, "{kind:?}");
        assert_eq!(got[0].3, got[1].3, "{kind:?}");
        assert_eq!(got[1], got[2], "{kind:?}");
    }
}

#[test]
fn daemon_stops_cleanly_on_sigterm() {
    let env = setup(Kind::Sqlite, BRUTE);
    ingest(&env, &[fail(0, "x"), fail(1, "x"), fail(2, "x")]);
    let mut child = env
        .cmd("siemtrigger")
        .args(["--interval", "1h"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while alerts(&env).is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(alerts(&env).len(), 1);
    // The lease was released: an --once right after runs.
    once(&env);
}

/// A tiny SMTP sink on 127.0.0.1: returns its port and a handle that yields
/// every DATA payload received (stops after `mails` messages).
fn smtp_sink(mails: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < mails {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"220 sink ESMTP\r\n").unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    w.write_all(b"250 sink\r\n").unwrap();
                } else if cmd.starts_with("DATA") {
                    w.write_all(b"354 go on\r\n").unwrap();
                    let mut data = String::new();
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    got.push(data);
                    w.write_all(b"250 queued\r\n").unwrap();
                } else if cmd.starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").unwrap();
                    break;
                } else {
                    w.write_all(b"250 ok\r\n").unwrap();
                }
            }
        }
        got
    });
    (port, h)
}

/// An HTTP listener on 127.0.0.1 answering `statuses` in turn, one request
/// each; yields the request bodies.
fn http_sink(statuses: Vec<u16>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for status in statuses {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            bodies.push(String::from_utf8(body).unwrap());
            write!(
                w,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
        }
        bodies
    });
    (port, h)
}

#[test]
fn actions_mail_exec_webhook_file_with_retries() {
    for kind in kinds() {
        let env = Env::new(kind);
        let (smtp_port, smtp) = smtp_sink(1);
        // The webhook fails once (HTTP 500), then succeeds: retried with backoff.
        let (http_port, http) = http_sink(vec![500, 200]);
        let dir = env.path().display().to_string();
        let script = env.path().join("record.sh");
        std::fs::write(&script, "#!/bin/sh\nenv | grep '^SIEM_' | sort > \"$1/env.txt\"\necho \"$2\" > \"$1/arg.txt\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        env.config(&format!(
            r#"[section.auth]
table = "auth"
timezone = "UTC"

[actions.mail]
smtp = "smtp://127.0.0.1:{smtp_port}"
from = "siem@example.org"
to = ["security@example.org"]

[actions.record]
type = "exec"
program = "{script}"
args = ["{dir}", "rule={{rule}} key={{key}}; $(touch {dir}/pwned)"]

[actions.hook]
type = "webhook"
url = "http://127.0.0.1:{http_port}/alerts?x=1"
backoff = "200ms"

[actions.log]
type = "file"
path = "{dir}/alerts.ndjson"

[actions.broken]
type = "exec"
program = "/bin/false"
retries = 2
backoff = "100ms"

[[rule]]
name = "root-login"
type = "single"
table = "auth"
severity = "high"
match = {{ process = "sshd", regex = 'Accepted \S+ for root from (?P<ip>\S+)' }}
key = "{{ip}}"
message = "root from {{ip}}"
actions = ["mail", "record", "hook", "log", "broken"]
"#,
            script = script.display()
        ));
        ingest(
            &env,
            &[line(
                5,
                "sshd",
                "Accepted password for root from 192.0.2.1 port 22 ssh2",
            )],
        );
        let (code, out, err) = trigger(&env, &["--once"]);
        assert_eq!(code, 0, "{out}{err}");

        let mails = smtp.join().unwrap();
        assert!(
            mails[0].contains("Subject: [siemstress] high root-login: 192.0.2.1"),
            "{}",
            mails[0]
        );
        assert!(mails[0].contains("root from 192.0.2.1"), "{}", mails[0]);

        let env_txt = std::fs::read_to_string(env.path().join("env.txt")).unwrap();
        for want in [
            "SIEM_RULE=root-login",
            "SIEM_KEY=192.0.2.1",
            "SIEM_MESSAGE=root from 192.0.2.1",
            "SIEM_SEVERITY=high",
            "SIEM_COUNT=1",
            "SIEM_TS=2024-01-01T00:00:05Z",
        ] {
            assert!(env_txt.lines().any(|l| l == want), "{want}: {env_txt}");
        }
        let arg = std::fs::read_to_string(env.path().join("arg.txt")).unwrap();
        assert_eq!(
            arg.trim(),
            format!("rule=root-login key=192.0.2.1; $(touch {dir}/pwned)")
        );
        assert!(!env.path().join("pwned").exists(), "never through a shell");

        let bodies = http.join().unwrap();
        assert_eq!(bodies.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(
            (v["rule"].as_str(), v["key"].as_str()),
            (Some("root-login"), Some("192.0.2.1"))
        );

        let log = std::fs::read_to_string(env.path().join("alerts.ndjson")).unwrap();
        let v: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(v["message"], "root from 192.0.2.1");

        let runs = env
            .rows("SELECT action, status, attempts, last_error FROM action_runs ORDER BY action");
        let got: Vec<(String, String, String, bool)> = runs
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap(),
                    r[1].clone().unwrap(),
                    r[2].clone().unwrap(),
                    r[3].is_some(),
                )
            })
            .collect();
        let want: Vec<(String, String, String, bool)> = [
            ("broken", "failed", "3", true),
            ("hook", "ok", "2", false),
            ("log", "ok", "1", false),
            ("mail", "ok", "1", false),
            ("record", "ok", "1", false),
        ]
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
        .collect();
        assert_eq!(got, want, "{kind:?}");
        // The alert stays whatever its actions did.
        assert_eq!(alerts(&env).len(), 1);
    }
}

#[test]
fn siemquery_lists_alerts_in_every_format() {
    let root = r#"
[[rule]]
name = "root-login"
type = "single"
table = "auth"
severity = "medium"
match = { process = ["sshd"], regex = 'Accepted \S+ for root from (?P<ip>\S+)' }
key = "{ip}"
message = "root from {ip}, \"quoted\""
"#;
    for kind in kinds() {
        let env = setup(kind, &format!("{BRUTE}\n{root}"));
        // A key with a comma and a quote: CSV must quote it.
        let ip = "h,\"q";
        ingest(
            &env,
            &[
                fail(0, ip),
                fail(1, ip),
                fail(2, ip),
                line(
                    10,
                    "sshd",
                    "Accepted password for root from 192.0.2.9 port 22 ssh2",
                ),
            ],
        );
        once(&env);
        let ids: Vec<i64> = env
            .rows("SELECT id FROM alerts ORDER BY ts")
            .into_iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "{kind:?}");
        let q = |args: &[&str]| {
            let mut all = vec!["--alerts"];
            all.extend_from_slice(args);
            let (code, out, err) = env.run("siemquery", &all, b"");
            assert_eq!(code, 0, "{kind:?} {args:?}: {err}");
            out
        };
        let range = ["--range", "20240101000000-20240102000000"];

        // JSON: the contract's field names, in order, times in RFC 3339 UTC.
        let out = q(&[range[0], range[1], "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 2, "{kind:?}: {out}");
        let names: Vec<&str> = a[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = vec![
            "id", "rule", "severity", "key", "ts", "first_ts", "count", "message", "created",
        ];
        let mut got = names.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{kind:?}");
        assert_eq!(a[0]["id"], ids[0]);
        assert_eq!(a[0]["rule"], "brute");
        assert_eq!(a[0]["severity"], "high");
        assert_eq!(a[0]["key"], ip);
        assert_eq!(a[0]["ts"], "2024-01-01T00:00:02.000Z");
        assert_eq!(a[0]["first_ts"], "2024-01-01T00:00:00.000Z");
        assert_eq!(a[0]["count"], 3);
        assert_eq!(
            a[0]["message"],
            format!("SSH brute force from {ip} (3 failures, last user root)")
        );
        let created = a[0]["created"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
            "{created}"
        );
        assert_eq!(a[1]["id"], ids[1]);
        assert_eq!(a[1]["rule"], "root-login");
        assert_eq!(a[1]["key"], "192.0.2.9");
        assert_eq!(a[1]["message"], "root from 192.0.2.9, \"quoted\"");

        // NDJSON with --rule; a rule with no alerts lists nothing.
        let out = q(&[
            range[0],
            range[1],
            "--rule",
            "root-login",
            "--format",
            "ndjson",
        ]);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{kind:?}: {out}");
        assert_eq!(lines[0]["rule"], "root-login");
        assert_eq!(lines[0]["ts"], "2024-01-01T00:00:10.000Z");
        let out = q(&[
            range[0],
            range[1],
            "--rule",
            "brute",
            "--rule",
            "root-login",
        ]);
        assert_eq!(out.lines().count(), 2, "{kind:?}: {out}");
        assert!(q(&[range[0], range[1], "--rule", "nope"]).is_empty());

        // CSV: header, quoting, the same values.
        let out = q(&[range[0], range[1], "--format", "csv"]);
        let mut r = csv::Reader::from_reader(out.as_bytes());
        assert_eq!(
            r.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "id", "rule", "severity", "key", "ts", "first_ts", "count", "message", "created"
            ]
        );
        let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(&recs[0][3], ip);
        assert_eq!(&recs[0][4], "2024-01-01T00:00:02.000Z");
        assert_eq!(&recs[1][7], "root from 192.0.2.9, \"quoted\"");

        // Table; --limit keeps the latest.
        let out = q(&[range[0], range[1], "--format", "table"]);
        assert!(out.contains("root-login") && out.contains("brute"), "{out}");
        let out = q(&[range[0], range[1], "--limit", "1"]);
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains("root-login"), "{out}");

        // The default period is the last 24 hours of event time: nothing here.
        assert!(q(&[]).is_empty(), "{kind:?}");
        let out = q(&["--last", "1000w", "--format", "ndjson"]);
        assert_eq!(out.lines().count(), 2, "{kind:?}: {out}");
    }
}
