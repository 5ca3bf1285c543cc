//! `siemquery` end to end, on every backend: each flag alone and combined
//! against an oracle computed in Rust from the stored rows, time boundaries
//! and zones, injection attempts, output formats, errors.

use siemstress_tests::{Env, Kind, kinds, loghub};

/// A stored row, read back with plain SQL (the oracle's input).
#[derive(Debug, Clone)]
struct R {
    id: i64,
    ts: i64,
    host: Option<String>,
    process: Option<String>,
    pid: Option<i64>,
    user: Option<String>,
    shost: Option<String>,
    sport: Option<i64>,
    dhost: Option<String>,
    dport: Option<i64>,
    protocol: Option<String>,
    raw: String,
}

fn stored(env: &Env, table: &str) -> Vec<R> {
    let int = |v: &Option<String>| v.as_deref().map(|s| s.parse::<i64>().unwrap());
    env.rows(&format!(
        "SELECT id, ts, host, process, pid, user, source_host, source_port, dest_host, \
         dest_port, protocol, raw FROM {table} ORDER BY ts, id"
    ))
    .into_iter()
    .map(|r| R {
        id: int(&r[0]).unwrap(),
        ts: int(&r[1]).unwrap(),
        host: r[2].clone(),
        process: r[3].clone(),
        pid: int(&r[4]),
        user: r[5].clone(),
        shost: r[6].clone(),
        sport: int(&r[7]),
        dhost: r[8].clone(),
        dport: int(&r[9]),
        protocol: r[10].clone(),
        raw: r[11].clone().unwrap(),
    })
    .collect()
}

/// `grep -iF` with ASCII case folding, as the SPEC'd `--grep`.
fn icontains(raw: &str, pat: &str) -> bool {
    raw.to_ascii_lowercase().contains(&pat.to_ascii_lowercase())
}

fn is(v: &Option<String>, want: &str) -> bool {
    v.as_deref() == Some(want)
}

/// Runs siemquery; returns (exit code, stdout, stderr).
fn q(env: &Env, args: &[&str]) -> (i32, String, String) {
    env.run("siemquery", args, b"")
}

/// The ids siemquery returns (NDJSON, in output order).
fn ids(env: &Env, args: &[&str]) -> Vec<i64> {
    let mut all = vec!["--format", "ndjson", "--fields", "id"];
    all.extend_from_slice(args);
    let (code, out, err) = q(env, &all);
    assert_eq!(code, 0, "siemquery {args:?}: {err}");
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("ndjson line");
            v["id"].as_i64().expect("id")
        })
        .collect()
}

type Pred = Box<dyn Fn(&R) -> bool>;

/// Checks each (args, predicate) against the oracle; `base` is added to every query.
fn check(env: &Env, table: &str, base: &[&str], rows: &[R], cases: Vec<(Vec<String>, Pred)>) {
    for (args, pred) in cases {
        let mut all: Vec<&str> = vec!["--table", table];
        all.extend_from_slice(base);
        all.extend(args.iter().map(String::as_str));
        let want: Vec<i64> = rows.iter().filter(|r| pred(r)).map(|r| r.id).collect();
        let got = ids(env, &all);
        assert_eq!(got, want, "{:?} siemquery {all:?}", env.kind);
        // --count agrees with the rows.
        let mut counted = all.clone();
        counted.push("--count");
        let (code, out, err) = q(env, &counted);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim(),
            want.len().to_string(),
            "{:?} {counted:?}",
            env.kind
        );
    }
}

fn a(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The most frequent non-NULL value of a column.
fn top<T: Clone + Ord>(rows: &[R], f: impl Fn(&R) -> Option<T>) -> T {
    let mut counts = std::collections::BTreeMap::new();
    for r in rows {
        if let Some(v) = f(r) {
            *counts.entry(v).or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(v, _)| v)
        .expect("a value")
}

const FIXTURE: &str = "\
Mar  1 10:00:00 web1 sshd[100]: Failed password for root from 203.0.113.7 port 40000 ssh2
Mar  1 10:00:01 web1 sshd[100]: Failed password for invalid user admin from 203.0.113.8 port 40001 ssh2
Mar  1 10:00:02 web2 sshd[101]: Accepted password for alice from 198.51.100.1 port 50000 ssh2
Mar  1 10:59:59 web2 su(pam_unix)[200]: session opened for user root by alice(uid=1000)
Mar  1 11:00:00 web1 kernel: IN=eth0 OUT= SRC=192.0.2.1 DST=10.0.0.1 PROTO=TCP SPT=1234 DPT=22
Mar  1 11:00:01 db1 CRON[300]: (root) CMD (run-parts) 50% done_now \\ back\\slash
Mar  1 11:00:02 db1 myapp: \u{c4} Umlaut KELVIN: \u{212a} and \u{e4} lower
Mar  1 11:00:03 web1 app[5]: say \"hi\", then, bye ' OR 1=1 -- \"; DROP TABLE auth; --
this line does not parse
Mar  1 12:00:00 web1 sshd[100]: Failed password for root from 203.0.113.7 port 40002 ssh2
";

/// An env with the fixture in table `t` (2024, UTC).
fn fixture_env(kind: Kind) -> (Env, Vec<R>) {
    let env = Env::new(kind);
    env.ingest(
        &["-s", "t", "-z", "UTC", "--year", "2024"],
        FIXTURE.as_bytes(),
    );
    let rows = stored(&env, "t");
    assert_eq!(rows.len(), 10);
    (env, rows)
}

/// All of the fixture's 1 March 2024 (the unparsed line is stored at ingest time).
const DAY: [&str; 2] = ["--range", "20240301000000-20240302000000"];

fn in_day(r: &R) -> bool {
    (1_709_251_200_000..1_709_337_600_000).contains(&r.ts)
}

#[test]
fn fixture_flags_alone_and_combined() {
    for kind in kinds() {
        let (env, rows) = fixture_env(kind);
        let day = |p: fn(&R) -> bool| -> Pred { Box::new(move |r: &R| in_day(r) && p(r)) };
        let cases: Vec<(Vec<String>, Pred)> = vec![
            (a(&[]), day(|_| true)),
            (a(&["--host", "web1"]), day(|r| is(&r.host, "web1"))),
            (a(&["--rhost", "web1"]), day(|r| !is(&r.host, "web1"))),
            (a(&["--process", "sshd"]), day(|r| is(&r.process, "sshd"))),
            (
                a(&["--process", "su(pam_unix)"]),
                day(|r| is(&r.process, "su(pam_unix)")),
            ),
            (a(&["--process", "SSHD"]), day(|_| false)),
            (a(&["--process", "sshd "]), day(|_| false)),
            (a(&["--process", "ssh%"]), day(|_| false)),
            (a(&["--process", "ssh_"]), day(|_| false)),
            (a(&["--rprocess", "sshd"]), day(|r| !is(&r.process, "sshd"))),
            (a(&["--pid", "100"]), day(|r| r.pid == Some(100))),
            (a(&["--rpid", "100"]), day(|r| r.pid != Some(100))),
            (a(&["--user", "root"]), day(|r| is(&r.user, "root"))),
            (a(&["--ruser", "root"]), day(|r| !is(&r.user, "root"))),
            (
                a(&["--shost", "203.0.113.7"]),
                day(|r| is(&r.shost, "203.0.113.7")),
            ),
            // Exclusion keeps rows without a source host.
            (
                a(&["--rshost", "203.0.113.7"]),
                day(|r| !is(&r.shost, "203.0.113.7")),
            ),
            (a(&["--sport", "40001"]), day(|r| r.sport == Some(40001))),
            (a(&["--rsport", "40001"]), day(|r| r.sport != Some(40001))),
            (
                a(&["--dhost", "10.0.0.1"]),
                day(|r| is(&r.dhost, "10.0.0.1")),
            ),
            (
                a(&["--rdhost", "10.0.0.1"]),
                day(|r| !is(&r.dhost, "10.0.0.1")),
            ),
            (a(&["--dport", "22"]), day(|r| r.dport == Some(22))),
            (a(&["--rdport", "22"]), day(|r| r.dport != Some(22))),
            (a(&["--protocol", "tcp"]), day(|r| is(&r.protocol, "tcp"))),
            (a(&["--rprotocol", "tcp"]), day(|r| !is(&r.protocol, "tcp"))),
            (a(&["--id", "3"]), day(|r| r.id == 3)),
            (
                a(&["--id", "3", "--id", "9"]),
                day(|r| r.id == 3 || r.id == 9),
            ),
            // Repeated flags OR; different flags AND.
            (
                a(&["--host", "web2", "--host", "db1"]),
                day(|r| is(&r.host, "web2") || is(&r.host, "db1")),
            ),
            (
                a(&["--host", "web1", "--process", "sshd", "--user", "root"]),
                day(|r| is(&r.host, "web1") && is(&r.process, "sshd") && is(&r.user, "root")),
            ),
            (
                a(&[
                    "--process",
                    "sshd",
                    "--rshost",
                    "203.0.113.7",
                    "--rshost",
                    "203.0.113.8",
                ]),
                day(|r| {
                    is(&r.process, "sshd")
                        && !is(&r.shost, "203.0.113.7")
                        && !is(&r.shost, "203.0.113.8")
                }),
            ),
            // grep: ASCII case-insensitive substring, wildcards literal.
            (
                a(&["--grep", "FAILED"]),
                day(|r| icontains(&r.raw, "failed")),
            ),
            (a(&["--grep", "50%"]), day(|r| r.raw.contains("50%"))),
            (a(&["--grep", "%"]), day(|r| r.raw.contains('%'))),
            (a(&["--grep", "_"]), day(|r| r.raw.contains('_'))),
            (a(&["--grep", "e_n"]), day(|r| icontains(&r.raw, "e_n"))),
            (a(&["--grep", "\\"]), day(|r| r.raw.contains('\\'))),
            (a(&["--grep", "k\\s"]), day(|r| icontains(&r.raw, "k\\s"))),
            (a(&["--grep", "!"]), day(|r| r.raw.contains('!'))),
            // Non-ASCII compares exactly on both backends (no Unicode folding).
            (a(&["--grep", "\u{e4}"]), day(|r| r.raw.contains('\u{e4}'))),
            (a(&["--grep", "\u{c4}"]), day(|r| r.raw.contains('\u{c4}'))),
            (
                a(&["--grep", "kelvin: k"]),
                day(|r| icontains(&r.raw, "kelvin: k")),
            ),
            (
                a(&["--grep", "root", "--grep", "alice"]),
                day(|r| icontains(&r.raw, "root") || icontains(&r.raw, "alice")),
            ),
            (
                a(&["--grep", "password", "--rgrep", "ACCEPTED"]),
                day(|r| icontains(&r.raw, "password") && !icontains(&r.raw, "accepted")),
            ),
            (
                a(&["--regex", r"port 4000[02]"]),
                day(|r| r.raw.contains("port 40000") || r.raw.contains("port 40002")),
            ),
            (
                a(&["--regex", "(?i)^mar  1 10", "--rregex", "alice"]),
                day(|r| r.raw.starts_with("Mar  1 10") && !r.raw.contains("alice")),
            ),
            (
                a(&[
                    "--regex",
                    "Failed",
                    "--regex",
                    "Accepted",
                    "--shost",
                    "203.0.113.8",
                ]),
                day(|r| is(&r.shost, "203.0.113.8")),
            ),
        ];
        check(&env, "t", &DAY, &rows, cases);

        // --limit keeps the first rows in time order, also after a regex.
        let all = ids(&env, &[&DAY[..], &["--table", "t"]].concat());
        assert_eq!(
            ids(&env, &["-s", "t", DAY[0], DAY[1], "--limit", "3"]),
            all[..3]
        );
        let failed: Vec<i64> = rows
            .iter()
            .filter(|r| in_day(r) && r.raw.contains("Failed"))
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids(
                &env,
                &[
                    "-s", "t", DAY[0], DAY[1], "--regex", "Failed", "--limit", "2"
                ]
            ),
            failed[..2]
        );
    }
}

#[test]
fn time_boundaries_and_zones() {
    for kind in kinds() {
        let (env, rows) = fixture_env(kind);
        let between = |a: i64, b: i64| -> Vec<i64> {
            rows.iter()
                .filter(|r| r.ts >= a && r.ts < b)
                .map(|r| r.id)
                .collect()
        };
        let t10 = 1_709_287_200_000; // 2024-03-01T10:00:00Z
        let t11 = t10 + 3_600_000;
        let want = between(t10, t11);
        assert_eq!(want, [1, 2, 3, 4], "start inclusive, end exclusive");
        for range in [
            "20240301100000-20240301110000",
            "240301100000-240301110000",
            "2024-03-01T10:00:00-2024-03-01T11:00:00",
            "2024-03-01T10:00:00Z-2024-03-01T11:00:00Z",
            "2024-03-01T12:00:00+02:00-2024-03-01T06:00:00-05:00",
            "2024-03-01 10:00-2024-03-01 11:00",
            "2024-03-01T10:00:00/PT1H",
            "PT60M/2024-03-01T11:00:00Z",
        ] {
            assert_eq!(ids(&env, &["-s", "t", "--range", range]), want, "{range}");
        }
        // One second either side moves exactly the boundary rows.
        assert_eq!(
            ids(
                &env,
                &["-s", "t", "--range", "20240301100001-20240301110001"]
            ),
            between(t10 + 1000, t11 + 1000)
        );

        // Without an offset, the range is read in the section's zone.
        env.config("[section.t]\ntimezone = \"Europe/Berlin\"\n");
        assert_eq!(
            ids(
                &env,
                &["-s", "t", "--range", "20240301110000-20240301120000"]
            ),
            want,
            "Berlin is UTC+1 in March"
        );
        assert_eq!(
            ids(
                &env,
                &[
                    "-s",
                    "t",
                    "--range",
                    "2024-03-01T10:00:00Z-2024-03-01T11:00:00Z"
                ]
            ),
            want
        );
        env.config("[section.t]\ntimezone = \"-0330\"\n");
        assert_eq!(
            ids(
                &env,
                &["-s", "t", "--range", "20240301063000-20240301073000"]
            ),
            want
        );

        // --last: the fixture's events are old; the unparsed line (stored at
        // ingest time) is recent.
        let now = chrono::Utc::now().timestamp_millis();
        let recent: Vec<i64> = rows
            .iter()
            .filter(|r| r.ts >= now - 3_600_000)
            .map(|r| r.id)
            .collect();
        assert_eq!(recent, [9]);
        assert_eq!(ids(&env, &["-s", "t", "--last", "1h"]), recent);
        assert_eq!(ids(&env, &["-s", "t"]), recent, "default --last 24h");
    }
}

#[test]
fn loghub_matrix() {
    for kind in kinds() {
        let env = Env::new(kind);
        for (table, file) in [("linux", "Linux_2k.log"), ("openssh", "OpenSSH_2k.log")] {
            let input = std::fs::read(loghub(file)).expect("log");
            env.ingest(&["-s", table, "-z", "UTC", "--year", "2005"], &input);
            let rows = stored(&env, table);
            assert_eq!(rows.len(), 2000);
            let host = top(&rows, |r| r.host.clone());
            let process = top(&rows, |r| r.process.clone());
            let shost = top(&rows, |r| r.shost.clone());
            let user = top(&rows, |r| r.user.clone());
            let pid = top(&rows, |r| r.pid);
            let (h, p, s, u) = (host.clone(), process.clone(), shost.clone(), user.clone());
            let (p2, s2, s3, u2) = (process.clone(), shost.clone(), shost.clone(), user.clone());
            let cases: Vec<(Vec<String>, Pred)> = vec![
                (a(&[]), Box::new(|_| true)),
                (
                    a(&["--host", &host]),
                    Box::new(move |r: &R| is(&r.host, &h)),
                ),
                (
                    a(&["--process", &process]),
                    Box::new(move |r: &R| is(&r.process, &p)),
                ),
                (
                    a(&["--shost", &shost]),
                    Box::new(move |r: &R| is(&r.shost, &s)),
                ),
                (
                    a(&["--rshost", &shost]),
                    Box::new(move |r: &R| !is(&r.shost, &s2)),
                ),
                (
                    a(&["--user", &user]),
                    Box::new(move |r: &R| is(&r.user, &u)),
                ),
                (
                    a(&["--pid", &pid.to_string()]),
                    Box::new(move |r: &R| r.pid == Some(pid)),
                ),
                (
                    a(&["--grep", "authentication FAILURE"]),
                    Box::new(|r: &R| icontains(&r.raw, "authentication failure")),
                ),
                (
                    a(&[
                        "--process",
                        &process,
                        "--rgrep",
                        "session",
                        "--rshost",
                        &shost,
                    ]),
                    Box::new(move |r: &R| {
                        is(&r.process, &p2) && !icontains(&r.raw, "session") && !is(&r.shost, &s3)
                    }),
                ),
                (
                    a(&["--regex", r"\buser[= ]\w+", "--ruser", &user]),
                    Box::new(move |r: &R| {
                        #[allow(clippy::regex_creation_in_loops)]
                        let re = regex::Regex::new(r"\buser[= ]\w+").unwrap();
                        re.is_match(&r.raw) && !is(&r.user, &u2)
                    }),
                ),
            ];
            check(
                &env,
                table,
                &["--range", "2005-01-01-2006-01-01"],
                &rows,
                cases,
            );

            // A time window between two stored events, in both compact forms.
            let (t0, t1) = (rows[100].ts, rows[900].ts);
            let fmt = |ms: i64, f: &str| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap()
                    .format(f)
                    .to_string()
            };
            let want: Vec<i64> = rows
                .iter()
                .filter(|r| r.ts >= t0 && r.ts < t1)
                .map(|r| r.id)
                .collect();
            assert!(want.len() > 100);
            for f in ["%Y%m%d%H%M%S", "%y%m%d%H%M%S", "%Y-%m-%dT%H:%M:%SZ"] {
                let range = format!("{}-{}", fmt(t0, f), fmt(t1, f));
                assert_eq!(
                    ids(&env, &["--table", table, "--range", &range]),
                    want,
                    "{kind:?} {table} {range}"
                );
            }

            // --stats agrees with the oracle.
            let (code, out, err) = q(
                &env,
                &[
                    "--table",
                    table,
                    "--range",
                    "2005-01-01-2006-01-01",
                    "--stats",
                    "source_host",
                    "--format",
                    "ndjson",
                    "--limit",
                    "3",
                ],
            );
            assert_eq!(code, 0, "{err}");
            let mut counts = std::collections::HashMap::<Option<String>, i64>::new();
            for r in &rows {
                *counts.entry(r.shost.clone()).or_default() += 1;
            }
            let mut want: Vec<_> = counts.into_iter().collect();
            want.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            want.truncate(3);
            let got: Vec<(Option<String>, i64)> = out
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (
                        v["source_host"].as_str().map(str::to_owned),
                        v["count"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{kind:?} {table} stats");
        }
    }
}

/// Values that must match literally (and so, here, nothing).
fn evil_values() -> Vec<String> {
    vec![
        "' OR 1=1 --".into(),
        "' OR '1'='1".into(),
        "%".into(),
        "_".into(),
        "\\".into(),
        "\\%".into(),
        "!%".into(),
        "\"; DROP TABLE t; --".into(),
        "`; DROP TABLE t; --".into(),
        "sshd') OR ('1'='1".into(),
        "A".repeat(10 * 1024),
        // NUL bytes cannot be passed in argv (execve strings end at NUL), so
        // they are not tested here; the filter binds them like any other byte.
    ]
}

#[test]
fn injection_attempts_match_literally_and_change_nothing() {
    for kind in kinds() {
        let (env, rows) = fixture_env(kind);
        let tables_before = table_names(&env);
        let text_flags = [
            ("--host", None),
            ("--rhost", None),
            ("--shost", None),
            ("--rshost", None),
            ("--dhost", None),
            ("--rdhost", None),
            ("--process", None),
            ("--rprocess", None),
            ("--protocol", None),
            ("--rprotocol", None),
            ("--user", None),
            ("--ruser", None),
            ("--grep", Some(true)),
            ("--rgrep", Some(false)),
        ];
        for v in evil_values() {
            for (flag, grep) in text_flags {
                let want: Vec<i64> = rows
                    .iter()
                    .filter(|r| in_day(r))
                    .filter(|r| match (flag, grep) {
                        (_, Some(true)) => icontains(&r.raw, &v),
                        (_, Some(false)) => !icontains(&r.raw, &v),
                        // No stored field equals these values: includes match
                        // nothing, exclusions remove nothing.
                        (f, None) => f.starts_with("--r"),
                    })
                    .map(|r| r.id)
                    .collect();
                let got = ids(&env, &["-s", "t", DAY[0], DAY[1], flag, &v]);
                assert_eq!(got, want, "{kind:?} {flag} {:?}", &v[..v.len().min(40)]);
            }
            // Regexes: escaped literally they match what grep -F would.
            let lit = regex::escape(&v);
            let want: Vec<i64> = rows
                .iter()
                .filter(|r| in_day(r) && r.raw.contains(v.as_str()))
                .map(|r| r.id)
                .collect();
            assert_eq!(
                ids(&env, &["-s", "t", DAY[0], DAY[1], "--regex", &lit]),
                want
            );
            // Numeric flags refuse non-numbers with a usage error.
            for flag in [
                "--id", "--pid", "--rpid", "--sport", "--rsport", "--dport", "--rdport",
            ] {
                let (code, out, err) = q(&env, &["-s", "t", flag, &v]);
                assert_eq!(code, 2, "{flag}: {out}");
                assert_eq!(err.lines().count(), 1, "{err}");
            }
            // As section and table names they are refused, never quoted into SQL.
            let (code, _, err) = q(&env, &["--table", &v]);
            assert_eq!(code, 2, "{err}");
            let (code, _, err) = q(&env, &["-s", &v]);
            assert_eq!(code, 2, "{err}");
        }
        // The literal line with the quote characters is found exactly.
        let quoted = "' OR 1=1 -- \"; DROP TABLE auth; --";
        let want: Vec<i64> = rows
            .iter()
            .filter(|r| r.raw.contains(quoted))
            .map(|r| r.id)
            .collect();
        assert_eq!(want.len(), 1);
        assert_eq!(
            ids(&env, &["-s", "t", DAY[0], DAY[1], "--grep", quoted]),
            want
        );
        // Nothing changed.
        assert_eq!(stored(&env, "t").len(), rows.len());
        assert_eq!(table_names(&env), tables_before);
    }
}

fn table_names(env: &Env) -> Vec<String> {
    let sql = match env.kind {
        Kind::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Kind::Mysql => {
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = DATABASE() ORDER BY table_name"
        }
    };
    env.rows(sql)
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// Every column as text, as the exports should show it.
fn full_rows(env: &Env) -> Vec<Vec<Option<String>>> {
    env.rows(
        "SELECT id, ts, received, host, process, pid, facility, severity, user, source_host, \
         source_port, dest_host, dest_port, protocol, message, raw, parsed, source, extra \
         FROM t ORDER BY ts, id",
    )
}

use siemstress_common::event::ROW_COLUMNS as COLS;

fn rfc3339(ms: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms.parse().unwrap())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A JSON object of an export, as the column texts the database holds.
fn json_as_texts(v: &serde_json::Value) -> Vec<Option<String>> {
    COLS.iter()
        .map(|c| match &v[*c] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) if *c == "ts" || *c == "received" => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_millis()
                    .to_string(),
            ),
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            other => Some(other.to_string()),
        })
        .collect()
}

#[test]
fn exports_round_trip() {
    for kind in kinds() {
        let (env, _) = fixture_env(kind);
        // A row no log line can produce: newline, CR, quotes and commas in fields.
        env.rows(
            "INSERT INTO t (ts, received, host, process, message, raw, parsed, source) VALUES \
             (1709290900000, 1709290900000, 'h,1', 'p\"q', 'line1\nline2, \"x\"', \
             'raw\r\nwith \"quotes\", commas', 0, 'test')",
        );
        let want: Vec<Vec<Option<String>>> = full_rows(&env)
            .into_iter()
            .filter(|r| {
                let ts: i64 = r[1].as_deref().unwrap().parse().unwrap();
                (1_709_251_200_000..1_709_337_600_000).contains(&ts)
            })
            .collect();
        assert_eq!(want.len(), 10);

        // NDJSON
        let (code, out, err) = q(&env, &["-s", "t", DAY[0], DAY[1], "--format", "ndjson"]);
        assert_eq!(code, 0, "{err}");
        let got: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["section"], "t");
            assert_eq!(g["ts"].as_str().unwrap(), rfc3339(w[1].as_deref().unwrap()));
            let mut texts = json_as_texts(g);
            // `extra` is embedded as JSON: compare as JSON.
            let (ge, we) = (texts.pop().unwrap(), w[18].clone());
            assert_eq!(
                ge.map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap()),
                we.map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap())
            );
            assert_eq!(texts, w[..18], "{kind:?} ndjson");
        }
        assert_eq!(got.len(), want.len());

        // JSON array, on stdout and with --json FILE (--silent: nothing on stdout).
        let (code, out, _) = q(&env, &["-s", "t", DAY[0], DAY[1], "--format", "json"]);
        assert_eq!(code, 0);
        let arr: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(arr, got);
        let file = env.path().join("out.json");
        let (code, out, _) = q(
            &env,
            &[
                "-s",
                "t",
                DAY[0],
                DAY[1],
                "--json",
                file.to_str().unwrap(),
                "--silent",
            ],
        );
        assert_eq!((code, out.as_str()), (0, ""));
        let arr: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(arr, got);
        let (_, out, _) = q(
            &env,
            &[
                "-s",
                "t",
                "--range",
                "20200101000000-20200102000000",
                "--format",
                "json",
            ],
        );
        assert_eq!(out.trim(), "[]");

        // CSV
        let (code, out, err) = q(&env, &["-s", "t", DAY[0], DAY[1], "--format", "csv"]);
        assert_eq!(code, 0, "{err}");
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header[..19], COLS.map(str::to_owned));
        assert_eq!(header[19], "section");
        let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(recs.len(), want.len());
        for (rec, w) in recs.iter().zip(&want) {
            for (i, col) in COLS.iter().enumerate() {
                let expect = match (*col, &w[i]) {
                    (_, None) => String::new(),
                    ("ts" | "received", Some(ms)) => rfc3339(ms),
                    (_, Some(s)) => s.clone(),
                };
                assert_eq!(rec[i], expect, "{kind:?} csv {col}");
            }
        }
        assert!(out.contains("\"line1\nline2, \"\"x\"\"\""), "{out}");

        // --fields picks and orders columns.
        let (_, out, _) = q(
            &env,
            &[
                "-s",
                "t",
                DAY[0],
                DAY[1],
                "--format",
                "csv",
                "--fields",
                "section,id,user",
            ],
        );
        assert!(out.starts_with("section,id,user\nt,1,root\n"), "{out}");
    }
}

#[test]
fn errors_are_one_line_with_exit_2() {
    let (env, _) = fixture_env(Kind::Sqlite);
    let missing = format!("sqlite://{}/nope.db", env.path().display());
    for (args, needle) in [
        (vec!["-s", "nosuch"], "unknown section"),
        (vec!["-s", "t", "--last", "5parsecs"], "invalid duration"),
        (
            vec!["-s", "t", "--range", "20240302000000-20240301000000"],
            "not before",
        ),
        (vec!["-s", "t", "--range", "yesterday-today"], "--range"),
        (vec!["-s", "t", "--regex", "(unclosed"], "invalid regex"),
        (vec!["-s", "t", "--fields", "id,nosuch"], "--fields"),
        (vec!["-s", "t", "--stats", "raw"], "--stats"),
        (vec!["-s", "t", "--sport", "70000"], "--sport"),
        (vec!["-s", "t", "--format", "xml"], "xml"),
    ] {
        let (code, out, err) = q(&env, &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("siemquery: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // --id alone needs no time range; it is checked outside the fixture day too.
    assert_eq!(ids(&env, &["-s", "t", "--id", "9", "--id", "2"]), [2, 9]);
    // A missing SQLite file is an error, not a new empty database.
    let out = std::process::Command::new(siemstress_tests::bin("siemquery"))
        .current_dir(env.path())
        .env_remove("SIEMSTRESS_CONFIG")
        .env_remove("SIEMSTRESS_DATABASE_URL")
        .args(["-c", "siemstress.toml", "--db", &missing, "-s", "t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("siemquery: ") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !env.path().join("nope.db").exists(),
        "a missing database is not created"
    );
}

#[test]
fn verbose_shows_placeholders_and_values() {
    for kind in kinds() {
        let (env, _) = fixture_env(kind);
        let (code, _, err) = q(
            &env,
            &[
                "-s",
                "t",
                DAY[0],
                DAY[1],
                "--user",
                "' OR 1=1 --",
                "--verbose",
                "--count",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let sql = err.lines().find(|l| l.contains("SQL:")).expect("SQL line");
        assert!(sql.contains("user IN (?)") && !sql.contains("1=1"), "{sql}");
        assert!(err.contains("\"' OR 1=1 --\""), "{err}");
    }
}

#[test]
fn closed_pipe_exits_zero() {
    let env = Env::new(Kind::Sqlite);
    let input = std::fs::read(loghub("OpenSSH_2k.log")).unwrap();
    env.ingest(&["-s", "t", "-z", "UTC", "--year", "2005"], &input);
    for _ in 0..3 {
        env.ingest(&["-s", "t", "-z", "UTC", "--year", "2005"], &input);
    }
    let mut child = env
        .cmd("siemquery")
        .args([
            "-s",
            "t",
            "--range",
            "2005-01-01-2006-01-01",
            "--format",
            "ndjson",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines with what a trigram index could get wrong: case, wildcards,
/// backslashes, quotes (FTS5 query syntax), non-ASCII, short words.
const GREP_LINES: &str = "\
Mar  2 09:00:00 web1 sshd[7]: Failed password for Invalid user oRaClE from 45.155.205.233 port 1 ssh2
Mar  2 09:00:01 web1 app[8]: 100% done_now \\ back\\slash \"quoted\" 'single' a*b (x) -- ^up
Mar  2 09:00:02 db1 app[9]: \u{c4}rger \u{e4}rger STRA\u{df}E stra\u{df}e K\u{212a} kelvin \u{130}stanbul \u{1f600} emoji
Mar  2 09:00:03 db1 app[9]: AND OR NOT NEAR \"a\" + b * c: col: {x} NEAR(a b)
Mar  2 09:00:04 web2 kernel: ab ba xy zz\u{fffd}
";

/// `--grep` patterns for the index equivalence test.
fn grep_patterns() -> Vec<String> {
    let mut v: Vec<String> = [
        "oracle",
        "ORACLE",
        "failed password",
        "45.155.205.233",
        "%",
        "_",
        "\\",
        "0% d",
        "e_n",
        "k\\s",
        "\"quoted\"",
        "\"",
        "'single'",
        "a*b",
        "AND OR",
        "near(",
        "col:",
        "{x}",
        "^up",
        "ab",
        "zz",
        "z",
        "\u{e4}rger",
        "\u{c4}RGER",
        "\u{c4}rger",
        "stra\u{df}e",
        "STRASSE",
        "k\u{212a}",
        "kk",
        "kelvin",
        "\u{130}stanbul",
        "istanbul",
        "\u{1f600} e",
        "\u{fffd}",
        "zz\u{fffd}",
        "sshd[",
        "port 4",
        "no such text anywhere",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("A".repeat(10 * 1024));
    v.push("authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=".into());
    v
}

/// With the search index (SQLite) `--grep` returns exactly what a scan
/// returns: before indexing, after `siemparse --index`, with rows above the
/// index's high-water mark, whether the planner uses the index or not.
#[test]
fn grep_index_changes_no_result() {
    let all_year = ["--range", "2005-01-01-2025-01-01"];
    for kind in kinds() {
        let env = Env::new(kind);
        let ingest = |input: &[u8]| ingest_unindexed(&env, input);
        ingest(FIXTURE.as_bytes());
        ingest(GREP_LINES.as_bytes());
        ingest(&std::fs::read(loghub("OpenSSH_2k.log")).unwrap());
        let check_all = |label: &str| {
            let rows = stored(&env, "t");
            let mut used = 0;
            for p in grep_patterns() {
                let want: Vec<i64> = rows
                    .iter()
                    .filter(|r| in_range(r) && icontains(&r.raw, &p))
                    .map(|r| r.id)
                    .collect();
                for mode in ["never", "auto", "always"] {
                    let args = ["--table", "t", all_year[0], all_year[1], "--grep", &p];
                    let got = ids_mode(&env, mode, &args);
                    assert_eq!(got, want, "{kind:?} {label} {mode} --grep {:.40?}", p);
                    let (n, sql) = count_mode(&env, mode, &args);
                    assert_eq!(
                        n,
                        want.len(),
                        "{kind:?} {label} {mode} --count --grep {p:.40?}"
                    );
                    used += usize::from(narrowed(&sql));
                    // --rgrep is the complement (the index never narrows exclusions).
                    let mut rargs = args;
                    rargs[4] = "--rgrep";
                    let (n, _) = count_mode(&env, mode, &rargs);
                    let total = rows.iter().filter(|r| in_range(r)).count();
                    assert_eq!(
                        n,
                        total - want.len(),
                        "{kind:?} {label} {mode} --rgrep {p:.40?}"
                    );
                }
            }
            // Several patterns OR, with an exclusion and a field filter.
            let want: Vec<i64> = rows
                .iter()
                .filter(|r| {
                    in_range(r)
                        && (icontains(&r.raw, "oracle") || icontains(&r.raw, "\u{e4}rger"))
                        && !icontains(&r.raw, "45.155")
                })
                .map(|r| r.id)
                .collect();
            for mode in ["never", "auto", "always"] {
                let args = [
                    "--table",
                    "t",
                    all_year[0],
                    all_year[1],
                    "--grep",
                    "ORACLE",
                    "--grep",
                    "\u{e4}rger",
                    "--rgrep",
                    "45.155",
                ];
                assert_eq!(
                    ids_mode(&env, mode, &args),
                    want,
                    "{kind:?} {label} {mode} OR"
                );
            }
            used
        };
        let used = check_all("unindexed");
        assert_eq!(used, 0, "nothing is indexed yet");

        let (code, _, err) = env.run("siemparse", &["-s", "t", "--index"], b"");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            env.scalar("SELECT indexed_upto FROM grep_index WHERE tbl = 't'"),
            env.scalar("SELECT max(id) FROM t")
        );
        let used = check_all("indexed");
        assert!(used > 30, "{kind:?}: the index was used ({used} queries)");

        // New rows above the high-water mark are found by the scan of the tail.
        ingest(GREP_LINES.as_bytes());
        ingest(
            b"Mar  3 10:00:00 web9 sshd[1]: Failed password for oracle from 10.9.9.9 port 2 ssh2\n",
        );
        assert!(
            env.scalar("SELECT indexed_upto FROM grep_index WHERE tbl = 't'")
                < env.scalar("SELECT max(id) FROM t")
        );
        check_all("tail");
        // Deleting the newest rows lets SQLite hand out their ids again; rows
        // with such ids are not in the index: queries must notice and scan,
        // and the indexer must start over.
        env.rows("DELETE FROM t");
        ingest(GREP_LINES.as_bytes());
        assert_eq!(
            check_all("reused ids"),
            0,
            "{kind:?}: an outdated index is not used"
        );
        // MariaDB: the deleted unindexed tail is a gap in the ids, stepped
        // over once it is older than the grace period (0 here).
        index_with_grace(&env, "0");
        assert_eq!(
            env.scalar("SELECT indexed_upto FROM grep_index WHERE tbl = 't'"),
            env.scalar("SELECT max(id) FROM t")
        );
        let used = check_all("reindexed");
        assert!(
            used > 30,
            "{kind:?}: the rebuilt index was used ({used} queries)"
        );
        // --clear drops the index with the table; a new table starts unindexed.
        let (code, _, err) = env.run("siemparse", &["-s", "t", "--clear", "--force"], b"");
        assert_eq!(code, 0, "{err}");
        assert!(table_names(&env).iter().all(|n| !n.starts_with("t$")));
        ingest(GREP_LINES.as_bytes());
        assert_eq!(
            ids_mode(
                &env,
                "always",
                &["--table", "t", all_year[0], all_year[1], "--grep", "oracle"]
            ),
            [1]
        );
    }
}

fn in_range(r: &R) -> bool {
    // 2005-01-01 .. 2025-01-01 UTC
    (1_104_537_600_000..1_735_689_600_000).contains(&r.ts)
}

/// `ids` with the search index planner forced into `mode`.
fn ids_mode(env: &Env, mode: &str, args: &[&str]) -> Vec<i64> {
    let out = env
        .cmd("siemquery")
        .env("SIEMSTRESS_GREP_INDEX", mode)
        .args(["--format", "ndjson", "--fields", "id"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// `siemparse -s t` of `input` (2024, UTC) with the idle indexer off, so
/// that only `--index` moves the search index's mark.
fn ingest_unindexed(env: &Env, input: &[u8]) {
    use std::io::Write;
    let mut child = env
        .cmd("siemparse")
        .env("SIEMSTRESS_GREP_INDEX", "never")
        .args(["-s", "t", "-z", "UTC", "--year", "2024"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(child.wait().unwrap().success());
}

/// `siemparse -s t --index` with MariaDB's grace period for gaps in the
/// ids set to `grace_ms`.
fn index_with_grace(env: &Env, grace_ms: &str) {
    let out = env
        .cmd("siemparse")
        .env("SIEMSTRESS_GREP_INDEX_GRACE_MS", grace_ms)
        .args(["-s", "t", "--index"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// True if the SQL printed by `--verbose` narrows by the search index
/// (SQLite: the FTS5 join; MariaDB: the candidate id ranges).
fn narrowed(sql: &str) -> bool {
    sql.contains("$grep\" WHERE") || sql.contains("(id BETWEEN ") || sql.contains("(id > ")
}

/// `--count --verbose` in `mode`: the count and the SQL printed.
fn count_mode(env: &Env, mode: &str, args: &[&str]) -> (usize, String) {
    let out = env
        .cmd("siemquery")
        .env("SIEMSTRESS_GREP_INDEX", mode)
        .args(["--count", "--verbose"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let n = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let sql = err
        .lines()
        .rfind(|l| l.contains("SQL:"))
        .unwrap_or("")
        .to_owned();
    (n, sql)
}

/// A long-running siemparse indexes while its input is idle, outside the
/// insert transactions: rows become covered without `--index`.
#[test]
fn idle_siemparse_catches_up_the_index() {
    use std::io::Write;
    let env = Env::new(Kind::Sqlite);
    let mut child = env
        .cmd("siemparse")
        .args(["-s", "t", "-z", "UTC", "--year", "2024"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(FIXTURE.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let db = env.path().join("test.db");
    let upto = || {
        if !db.exists()
            || env.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'grep_index'") == 0
        {
            return None;
        }
        env.rows("SELECT indexed_upto FROM grep_index WHERE tbl = 't'")
            .first()
            .and_then(|r| r[0].as_deref().map(|v| v.parse::<i64>().unwrap()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while upto() != Some(10) {
        assert!(
            std::time::Instant::now() < deadline,
            "not indexed: {:?}",
            upto()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    stdin.write_all(GREP_LINES.as_bytes()).unwrap();
    stdin.flush().unwrap();
    while upto() != Some(15) {
        assert!(
            std::time::Instant::now() < deadline,
            "not indexed: {:?}",
            upto()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(
        ids_mode(
            &env,
            "always",
            &[
                "--table",
                "t",
                "--range",
                "2024-01-01-2025-01-01",
                "--grep",
                "ORACLE"
            ]
        ),
        [11]
    );
}

/// The search index's high-water mark of table `t` (0: nothing indexed).
pub(crate) fn index_mark(env: &Env) -> i64 {
    if env.kind == Kind::Sqlite
        && env.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'grep_index'") == 0
    {
        return 0;
    }
    env.rows("SELECT indexed_upto FROM grep_index WHERE tbl = 't'")
        .first()
        .and_then(|r| r[0].as_deref().map(|v| v.parse::<i64>().unwrap()))
        .unwrap_or(0)
}

/// A bulk import (stdin a file: the reader always has more at hand) leaves
/// the search index alone below the backlog bound, even with more rows
/// unindexed than the idle indexer's threshold (50,000): an index step
/// costs more than parsing and storing its rows. No timing decides this
/// (the reader tells the writer when more is coming), so the mark is 0
/// after the import; `--grep` stays exact, and `--index` catches up.
#[test]
fn bulk_import_leaves_the_index_to_idle_time() {
    const LINES: usize = 52_000;
    let mut input = String::new();
    let mut planted = 0;
    for i in 0..LINES {
        let word = if i % 997 == 0 {
            planted += 1;
            "needleword"
        } else {
            "password"
        };
        input.push_str(&format!(
            "Mar  4 {:02}:{:02}:{:02} web{} sshd[{}]: Failed {word} for user{} from 10.{}.{}.{} port {} ssh2\n",
            i / 3600 % 24,
            i / 60 % 60,
            i % 60,
            i % 7,
            1000 + i % 5000,
            i % 331,
            i % 256,
            i / 256 % 256,
            i % 253 + 1,
            1024 + i % 60000
        ));
    }
    for kind in kinds() {
        let env = Env::new(kind);
        let file = env.path().join("bulk.log");
        std::fs::write(&file, &input).unwrap();
        let out = env
            .cmd("siemparse")
            .args(["-s", "t", "-z", "UTC", "--year", "2024", "--batch", "1000"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind:?}: {out:?}");
        assert_eq!(env.scalar("SELECT count(*) FROM t"), LINES as i64);
        assert_eq!(index_mark(&env), 0, "{kind:?}: indexed during the import");
        let args = ["--table", "t", "--range", "2024-01-01-2025-01-01"];
        let grep =
            |mode: &str| count_mode(&env, mode, &[&args[..], &["--grep", "NEEDLEWORD"]].concat()).0;
        for mode in ["never", "auto", "always"] {
            assert_eq!(grep(mode), planted, "{kind:?} {mode}");
        }
        let (code, _, err) = env.run("siemparse", &["-s", "t", "--index"], b"");
        assert_eq!(code, 0, "{err}");
        assert_eq!(index_mark(&env), env.scalar("SELECT max(id) FROM t"));
        for mode in ["never", "auto", "always"] {
            assert_eq!(grep(mode), planted, "{kind:?} {mode} indexed");
        }
    }
}

/// Lines for the index tests: LIKE's wildcards and escape character, a
/// backslash, mixed case and non-ASCII.
const INDEX_LINES: &str = "\
Mar  4 08:00:00 web3 app[3]: 50%_off! back\\\\slash MiXeD CaSe \u{c4}rger zzfirstword
Mar  4 08:00:01 web3 app[3]: 100%! plain _under_ score \u{e4}RGER
";

/// stdout of `siemquery args...` with the planner in `mode`, and whether
/// its final SQL (`--verbose`) narrowed by the index.
fn out_mode(env: &Env, mode: &str, args: &[&str]) -> (String, bool) {
    let out = env
        .cmd("siemquery")
        .env("SIEMSTRESS_GREP_INDEX", mode)
        .args(["--table", "t", "--verbose"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    let sql = err
        .lines()
        .rfind(|l| l.contains("SQL:"))
        .unwrap_or("")
        .to_owned();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        narrowed(&sql),
    )
}

/// With the index built, every output mode (rows, `--count`, `--stats`,
/// CSV) and time window gives what the scan gives, for patterns in indexed
/// rows and in rows above the mark, several `--grep` (OR) and `--rgrep`.
#[test]
fn grep_index_agrees_with_scan_on_every_output() {
    let all = ["--range", "2005-01-01-2025-01-01"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["--grep", "oracle", "--stats", "source_host", all[0], all[1]],
        vec![
            "--grep",
            "Failed password",
            "--grep",
            "zztailword",
            "--count",
            all[0],
            all[1],
        ],
        vec!["--grep", "ORACLE", "--rgrep", "45.155", "--last", "1200d"],
        vec![
            "--grep",
            "session opened",
            "--range",
            "20241210070000-20241210090000",
        ],
        vec![
            "--grep", "preauth", "--rgrep", "Invalid", "--stats", "user", "--last", "1200d",
        ],
        vec!["--grep", "zztailword", all[0], all[1]],
        vec!["--grep", "zzfirstword", "--format", "csv", all[0], all[1]],
        vec!["--grep", "50%_off!", all[0], all[1]],
        vec!["--grep", "K\\\\S", "--grep", "0%! p", all[0], all[1]],
        vec!["--grep", "_under_", "--count", all[0], all[1]],
        vec![
            "--grep",
            "mixed case",
            "--grep",
            "\u{c4}RGER",
            all[0],
            all[1],
        ],
        vec!["--grep", "mixed case", all[0], all[1]],
        vec!["--grep", "ORACLE", "--count", all[0], all[1]],
        vec!["--grep", "Stra\u{df}e", all[0], all[1]],
        vec!["--grep", "ab", all[0], all[1]],
        vec!["--grep", "nowhere to be found", "--count", all[0], all[1]],
    ];
    for kind in kinds() {
        let env = Env::new(kind);
        let ingest = |input: &[u8]| ingest_unindexed(&env, input);
        ingest(INDEX_LINES.as_bytes());
        ingest(&std::fs::read(loghub("OpenSSH_2k.log")).unwrap());
        if kind == Kind::Mysql {
            // A block of the bitmap (1024 ids) of their own for the next
            // lines, so that a block missing a trigram would lose rows.
            env.rows("ALTER TABLE t AUTO_INCREMENT = 3072");
        }
        ingest(GREP_LINES.as_bytes());
        // The skipped ids are a gap: stepped over after the grace (0 here).
        index_with_grace(&env, "0");
        assert_eq!(
            env.scalar("SELECT indexed_upto FROM grep_index WHERE tbl = 't'"),
            env.scalar("SELECT max(id) FROM t")
        );
        ingest(INDEX_LINES.replace("zzfirstword", "zztailword").as_bytes());
        let mut used = 0;
        for args in &cases {
            let (scan, narrowed) = out_mode(&env, "never", args);
            assert!(!narrowed, "{kind:?} {args:?}");
            for mode in ["auto", "always"] {
                let (got, narrowed) = out_mode(&env, mode, args);
                assert_eq!(got, scan, "{kind:?} {mode} {args:?}");
                used += usize::from(narrowed);
            }
        }
        assert!(used >= 18, "{kind:?}: the index was used ({used} queries)");
        let (rows, _) = out_mode(&env, "always", &cases[7]);
        assert_eq!(
            rows.lines().count(),
            2,
            "{kind:?}: 50%_off! indexed and above the mark\n{rows}"
        );
    }
}

/// MariaDB commits ids out of order: a row whose id is below max(id) may
/// appear later (an insert in flight, or an explicit id). The indexer stops
/// before such gaps, so `--grep` still finds the row; a gap older than the
/// grace period is stepped over.
#[test]
fn grep_index_mariadb_id_gaps() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    let all = ["--range", "2005-01-01-2025-01-01"];
    let ingest = |input: &[u8]| ingest_unindexed(&env, input);
    let index = |grace: &str| index_with_grace(&env, grace);
    let mark = || env.scalar("SELECT indexed_upto FROM grep_index WHERE tbl = 't'");
    let found = |word: &str| {
        let args = ["--table", "t", all[0], all[1], "--grep", word];
        let got = ids_mode(&env, "always", &args);
        assert_eq!(got, ids_mode(&env, "never", &args), "--grep {word}");
        got
    };
    ingest(&std::fs::read(loghub("OpenSSH_2k.log")).unwrap());
    assert_eq!(env.scalar("SELECT max(id) FROM t"), 2000);

    // An explicit id inside the range the indexer has seen.
    env.rows("DELETE FROM t WHERE id = 1500");
    index("120000");
    assert_eq!(mark(), 1499, "the mark stops before the gap");
    env.rows(
        "INSERT INTO t (id, ts, received, message, raw, parsed, source) \
         SELECT 1500, ts, received, 'gap', 'Dec 10 07:00:00 x zzgapword', 0, source FROM t WHERE id = 1499",
    );
    assert_eq!(found("zzgapword"), [1500]);
    assert_eq!(found("ZZGAPWORD"), [1500]);
    index("120000");
    assert_eq!(mark(), 2000);
    let (n, sql) = count_mode(
        &env,
        "always",
        &["--table", "t", all[0], all[1], "--grep", "zzgapword"],
    );
    assert_eq!(n, 1);
    assert!(sql.contains("(id BETWEEN "), "{sql}");

    // A transaction held open while later rows commit.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut conn = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&env.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query(
            "INSERT INTO t (ts, received, message, raw, parsed, source) \
             SELECT ts, received, 'held', 'Dec 10 07:00:01 x zzheldword', 0, source FROM t WHERE id = 2000",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c
    });
    ingest(GREP_LINES.as_bytes());
    index("120000");
    assert_eq!(mark(), 2000, "the mark waits for the open transaction");
    rt.block_on(async {
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    });
    assert_eq!(found("zzheldword"), [2001]);
    index("120000");
    assert_eq!(mark(), env.scalar("SELECT max(id) FROM t"));
    assert_eq!(found("zzheldword"), [2001]);
    assert_eq!(found("oracle").len(), 19);

    // A gap that stays (a rollback, a delete) is stepped over after the grace.
    ingest(GREP_LINES.as_bytes());
    let max = env.scalar("SELECT max(id) FROM t");
    env.rows(&format!("DELETE FROM t WHERE id = {}", max - 2));
    index("120000");
    assert_eq!(mark(), max - 3);
    index("0");
    assert_eq!(mark(), max);
    assert_eq!(found("oracle").len(), 20);

    // --clear drops the bitmap and forgets the mark.
    let (code, _, err) = env.run("siemparse", &["-s", "t", "--clear", "--force"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(table_names(&env).iter().all(|n| !n.starts_with("t$")));
    assert_eq!(env.scalar("SELECT count(*) FROM grep_index"), 0);
    ingest(GREP_LINES.as_bytes());
    assert_eq!(found("oracle"), [1]);
}
