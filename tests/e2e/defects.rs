//! Regression tests for the defects of issue 17 (found by trying the tools as
//! an admin would), one test per item, named `i17_NN_...`.

use siemstress_tests::{Env, kinds};

/// `ts` as RFC 3339 UTC, `message` and `extra` of every row of table `t`, in id order.
fn stored(env: &Env) -> Vec<(String, String, String)> {
    env.rows("SELECT ts, message, extra FROM t ORDER BY id")
        .into_iter()
        .map(|r| {
            let ms: i64 = r[0].as_deref().unwrap().parse().unwrap();
            let ts = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339();
            (
                ts,
                r[1].clone().unwrap_or_default(),
                r[2].clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn times(env: &Env) -> Vec<String> {
    stored(env).into_iter().map(|(ts, _, _)| ts).collect()
}

#[test]
fn i17_02_year_nearest_to_the_reference_time_and_year_flag_moves_on() {
    for kind in kinds() {
        // Read on New Year's Eve, 10 s before midnight: a January line is
        // clock skew (next year), not a line a year old.
        let env = Env::new(kind);
        env.ingest(
            &[
                "-s",
                "t",
                "-z",
                "UTC",
                "--reference-time",
                "2026-12-31T23:59:50Z",
            ],
            b"Jan  1 00:00:05 h a[1]: skew\nJan  3 00:00:05 h a[1]: ahead\nDec 30 10:00:00 h a[1]: past\nFeb  5 00:00:00 h a[1]: too far ahead\n",
        );
        assert_eq!(
            times(&env),
            [
                "2027-01-01T00:00:05+00:00",
                "2027-01-03T00:00:05+00:00",
                "2026-12-30T10:00:00+00:00",
                "2026-02-05T00:00:00+00:00",
            ],
            "{kind:?}"
        );
        assert!(stored(&env)[0].2.contains(r#""year_inferred":"2027""#));

        // --year: a log that runs through New Year stays in order; a late
        // line just after midnight stays in the old year.
        let env = Env::new(kind);
        env.ingest(
            &["-s", "t", "-z", "UTC", "--year", "2025"],
            b"Dec 31 23:59:00 h a[1]: a\nJan  1 00:00:05 h a[1]: b\nDec 31 23:59:59 h a[1]: late\nJan  2 08:00:00 h a[1]: c\n",
        );
        assert_eq!(
            times(&env),
            [
                "2025-12-31T23:59:00+00:00",
                "2026-01-01T00:00:05+00:00",
                "2025-12-31T23:59:59+00:00",
                "2026-01-02T08:00:00+00:00",
            ],
            "{kind:?}"
        );
        assert!(stored(&env)[1].2.contains(r#""year_flag":"2026""#));

        let (code, _, err) = env.run("siemparse", &["-s", "t", "--reference-time", "today"], b"");
        assert_eq!(code, 2);
        assert!(err.contains("--reference-time"), "{err}");
    }
}

#[test]
fn i17_03_dst_overlap_takes_the_instant_nearest_the_previous_line() {
    for kind in kinds() {
        let env = Env::new(kind);
        // Berlin falls back on 2026-10-25 at 03:00 CEST; B is a second late.
        env.ingest(
            &["-s", "t", "-z", "Europe/Berlin", "--year", "2026"],
            b"Oct 25 02:50:00 h a[1]: A\nOct 25 02:49:59 h a[1]: B\nOct 25 02:50:01 h a[1]: C\n\
              Oct 25 02:59:59 h a[1]: D\nOct 25 02:00:00 h a[1]: E second pass\n",
        );
        let rows = stored(&env);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|(ts, m, _)| (ts.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-10-25T00:50:00+00:00", "A"),
                ("2026-10-25T00:49:59+00:00", "B"),
                ("2026-10-25T00:50:01+00:00", "C"),
                ("2026-10-25T00:59:59+00:00", "D"),
                ("2026-10-25T01:00:00+00:00", "E second pass"),
            ],
            "{kind:?}"
        );
        assert!(
            rows[1].2.contains(r#""tz_fold":"earlier""#),
            "{}",
            rows[1].2
        );
        assert!(rows[4].2.contains(r#""tz_fold":"later""#), "{}", rows[4].2);
    }
}

#[test]
fn i17_04_rfc5424_bom_and_nil_timestamp() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "t"],
            "<13>1 2026-01-01T00:00:00Z h app 1 - - \u{feff}caf\u{e9} ok\n<13>1 - - - - - - nil time\n"
                .as_bytes(),
        );
        let rows =
            env.rows("SELECT parsed, message, extra, ts, received, facility FROM t ORDER BY id");
        assert_eq!(rows[0][0].as_deref(), Some("1"), "{kind:?}");
        assert_eq!(rows[0][1].as_deref(), Some("caf\u{e9} ok"), "{kind:?}");
        assert_eq!(rows[1][0].as_deref(), Some("1"), "{kind:?}: {rows:?}");
        assert_eq!(rows[1][1].as_deref(), Some("nil time"));
        assert!(
            rows[1][2]
                .as_deref()
                .unwrap_or("")
                .contains(r#""ts_source":"received""#),
            "{rows:?}"
        );
        assert_eq!(
            rows[1][3], rows[1][4],
            "a NILVALUE time is the received time"
        );
        assert_eq!(rows[1][5].as_deref(), Some("user"));
    }
}

#[test]
fn i17_05_negative_offset_as_the_value_of_z() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "t", "-z", "-0500", "--year", "2026"],
            b"Jan  1 00:00:05 h a[1]: x\n",
        );
        let env2 = Env::new(kind);
        env2.ingest(
            &["-s", "t", "--timezone", "-05:30", "--year", "2026"],
            b"Jan  1 00:00:05 h a[1]: x\n",
        );
        assert_eq!(times(&env), ["2026-01-01T05:00:05+00:00"], "{kind:?}");
        assert_eq!(times(&env2), ["2026-01-01T05:30:05+00:00"], "{kind:?}");
        assert!(stored(&env)[0].2.contains(r#""tz":"-0500""#));
    }
}

/// `n` sshd lines a second apart on 2026-01-01 (UTC, `--year 2026`).
fn sshd_lines(n: usize, text: impl Fn(usize) -> String) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let t = chrono::DateTime::from_timestamp(1_767_225_600 + i as i64, 0).unwrap();
            format!("{} h sshd[1]: {}\n", t.format("%b %e %H:%M:%S"), text(i))
        })
        .collect::<String>()
        .into_bytes()
}

const ALL_2026: [&str; 2] = ["--range", "20260101000000-20270101000000"];

#[test]
fn i17_06_table_into_a_pipe_says_how_many_rows_it_left_out() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(
            "[section.t]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"each\"\ntype = \"single\"\n\
             table = \"t\"\nmatch = { process = \"sshd\" }\nmessage = \"seen\"\n",
        );
        env.ingest(
            &["-s", "t", "--year", "2026"],
            &sshd_lines(1003, |i| format!("line {i}")),
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["-s", "t", ALL_2026[0], ALL_2026[1], "--format", "table"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            out.contains("line 999") && !out.contains("line 1000"),
            "{kind:?}"
        );
        assert!(
            err.contains("first 1000 of 1003 rows (3 left out)"),
            "{kind:?}: {err}"
        );
        // Other formats have no default limit and say nothing.
        let (_, out, err) = env.run("siemquery", &["-s", "t", ALL_2026[0], ALL_2026[1]], b"");
        assert_eq!(out.lines().count(), 1003, "{kind:?}");
        assert_eq!(err, "", "{kind:?}");
        // Nothing left out: no note.
        let (_, _, err) = env.run(
            "siemquery",
            &[
                "-s",
                "t",
                "--grep",
                "line 99",
                ALL_2026[0],
                ALL_2026[1],
                "--format",
                "table",
            ],
            b"",
        );
        assert_eq!(err, "", "{kind:?}");

        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        let (code, out, err) = env.run(
            "siemquery",
            &["--alerts", ALL_2026[0], ALL_2026[1], "--format", "table"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(out.contains("seen"), "{kind:?}");
        assert!(
            err.contains("latest 1000 of 1003 alerts (3 left out)"),
            "{kind:?}: {err}"
        );
    }
}

/// Runs `siemquery args` on a pseudo-terminal that reports 0x0 (as serial
/// consoles and `script` do), with `columns` in `$COLUMNS`; returns its lines.
fn siemquery_on_a_0x0_terminal(env: &Env, args: &[&str], columns: Option<&str>) -> Vec<String> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = vec![
        quote(siemstress_tests::bin("siemquery").to_str().unwrap()),
        "-c".into(),
        quote(env.path().join("siemstress.toml").to_str().unwrap()),
        "--db".into(),
        quote(&env.url),
    ];
    cmd.extend(args.iter().map(|a| quote(a)));
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &cmd.join(" "), "/dev/null"])
        .current_dir(env.path())
        .env_remove("COLUMNS")
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::null());
    if let Some(c) = columns {
        script.env("COLUMNS", c);
    }
    let out = script.output().expect("script(1) from util-linux");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect()
}

#[test]
fn i17_07_table_on_a_terminal_that_reports_0x0() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            &sshd_lines(3, |i| format!("line {i} {}", "x".repeat(300))),
        );
        let args = ["-s", "t", ALL_2026[0], ALL_2026[1]];
        let width = |lines: &[String]| lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);

        let lines = siemquery_on_a_0x0_terminal(&env, &args, None);
        assert_eq!(width(&lines), 80, "{kind:?}: {lines:#?}");
        assert!(lines[1].contains("process"), "{kind:?}: {lines:#?}");

        let lines = siemquery_on_a_0x0_terminal(&env, &args, Some("120"));
        assert_eq!(width(&lines), 120, "{kind:?}: {lines:#?}");
        assert!(lines[1].contains("source_host"), "{kind:?}: {lines:#?}");
    }
}

#[test]
fn i17_08_json_dash_writes_to_stdout() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            &sshd_lines(2, |i| format!("line {i}")),
        );
        let (code, out, err) = env.run(
            "siemquery",
            &[
                "-s",
                "t",
                ALL_2026[0],
                ALL_2026[1],
                "--json",
                "-",
                "--format",
                "table",
            ],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(v.as_array().map(Vec::len), Some(2), "{kind:?}: {out}");
        assert_eq!(v[1]["message"], "line 1");
        assert!(
            !env.path().join("-").exists(),
            "{kind:?}: a file named - was created"
        );
    }
}

/// Runs `name args` and waits at most `secs` seconds: `None` if it was still
/// running (then killed), else (exit code, stderr).
pub(crate) fn run_with_timeout(
    env: &Env,
    name: &str,
    args: &[&str],
    secs: u64,
) -> Option<(i32, String)> {
    use std::io::Read;
    let mut child = env
        .cmd(name)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(secs) {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    None
}

#[test]
fn i17_12_interval_of_zero_is_refused() {
    for kind in kinds() {
        let env = Env::new(kind);
        for flag in ["--interval", "--lease-ttl"] {
            let mut args = vec![flag, "0s"];
            if flag == "--lease-ttl" {
                args.push("--once");
            }
            let (code, err) = run_with_timeout(&env, "siemtrigger", &args, 10)
                .unwrap_or_else(|| panic!("{kind:?}: siemtrigger {args:?} kept running"));
            assert_eq!(code, 2, "{kind:?}: {err}");
            assert!(
                err.contains(&format!("{flag} 0s: must be longer than 0")),
                "{err}"
            );
        }
    }
}

#[test]
fn i17_17_the_same_file_followed_twice_is_refused() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        let dir = env.path();
        std::fs::create_dir(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        std::os::unix::fs::symlink("f.log", dir.join("real/alias.log")).unwrap();
        std::fs::write(
            dir.join("real/f.log"),
            sshd_lines(2, |i| format!("line {i}")),
        )
        .unwrap();
        for pair in [
            ["real/f.log", "./real/f.log"],
            ["real/f.log", "link/../real/f.log"],
            ["link/f.log", "real/f.log"],
            ["real/f.log", "real/alias.log"],
        ] {
            let (code, _, err) = env.run(
                "siemparse",
                &[
                    "-s", "t", "--year", "2026", "--follow", pair[0], "--follow", pair[1], "--once",
                ],
                b"",
            );
            assert_eq!(code, 2, "{kind:?} {pair:?}: {err}");
            assert!(err.contains("the same file"), "{kind:?} {pair:?}: {err}");
        }
        let count = || env.scalar("SELECT COUNT(*) FROM follow_state");
        assert_eq!(count(), 0, "{kind:?}: nothing was read");

        // One spelling: the offset is kept under the canonical path, so any
        // other spelling resumes from it.
        let follow = |path: &str| {
            env.ingest(
                &["-s", "t", "--year", "2026", "--follow", path, "--once"],
                b"",
            )
        };
        follow("link/f.log");
        let canonical = std::fs::canonicalize(dir.join("real/f.log")).unwrap();
        let keys = env.rows("SELECT path, source FROM follow_state, t WHERE t.id = 1");
        assert_eq!(keys[0][0].as_deref(), canonical.to_str(), "{kind:?}");
        assert_eq!(
            keys[0][1], keys[0][0],
            "{kind:?}: source is the canonical path"
        );
        let append = |n: usize| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("real/f.log"))
                .unwrap()
                .write_all(&sshd_lines(n, |i| format!("more {i}")))
                .unwrap();
        };
        append(1);
        follow("./real/../link/f.log");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 3, "{kind:?}");

        // An offset stored under the path as given (before paths were
        // canonicalized) is still found: nothing is read twice.
        let given = dir.join("link/f.log");
        env.rows(&format!(
            "UPDATE follow_state SET path = '{}'",
            given.to_str().unwrap()
        ));
        append(2);
        follow("link/f.log");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 5, "{kind:?}");
        assert_eq!(
            count(),
            2,
            "{kind:?}: the old row stays, the new one is canonical"
        );
    }
}

/// Runs `name args` (with the env's `-c`, without its `--db`) as a user who
/// may not write `dir`: as root, `nobody` (root writes everywhere); otherwise
/// this user, with `dir` made read-only. Returns (exit code, stdout, stderr).
fn run_without_write_access(
    env: &Env,
    dir: &std::path::Path,
    name: &str,
    args: &[&str],
) -> (i32, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = siemstress_tests::bin(name);
    let config = env.path().join("siemstress.toml");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        std::process::Command::new(&bin)
    };
    let out = cmd
        .arg("-c")
        .arg(&config)
        .args(args)
        .current_dir("/")
        .env_remove("SIEMSTRESS_CONFIG")
        .env_remove("SIEMSTRESS_DATABASE_URL")
        .env("TZ", "UTC")
        .output()
        .expect("run");
    if !root {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn i17_16_a_reader_without_write_access_while_no_writer_runs() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new(siemstress_tests::Kind::Sqlite);
    env.config("[section.t]\ntimezone = \"UTC\"\n");
    // The reader may traverse to the database and read it, not write its directory.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        env.path().join("siemstress.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let dir = env.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.join("siem.db");
    let db_url = format!("sqlite://{}", db.display());
    env.url = db_url.clone();
    let (code, _, err) = env.run(
        "siemparse",
        &["-s", "t", "--year", "2026"],
        &sshd_lines(3, |i| format!("line {i}")),
    );
    assert_eq!(code, 0, "{err}");
    // No writer runs now; the files stay readable by others (an admin's choice).
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let read_only = format!("{db_url}?mode=ro");
    for url in [read_only.as_str(), db.to_str().unwrap()] {
        let (code, out, err) = run_without_write_access(
            &env,
            &dir,
            "siemquery",
            &["--db", url, "-s", "t", ALL_2026[0], ALL_2026[1]],
        );
        assert_eq!(code, 0, "{url}: {err}");
        assert_eq!(out.lines().count(), 3, "{url}: {out}");
        let (code, _, err) = run_without_write_access(
            &env,
            &dir,
            "siemquery",
            &["--db", url, "--alerts", "--last", "1d"],
        );
        assert_eq!(code, 0, "{url}: {err}");
    }
    // A database whose -shm an older version removed: the message says what to do.
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    std::fs::remove_file(&shm).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", db.display()));
    let (code, _, err) = run_without_write_access(
        &env,
        &dir,
        "siemquery",
        &["--db", &read_only, "-s", "t", ALL_2026[0], ALL_2026[1]],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-shm is missing") && err.contains("once as its owner"),
        "{err}"
    );
}

#[test]
fn i17_15_section_names_that_differ_only_in_case() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "Auth", "--year", "2026"],
            &sshd_lines(1, |_| "first".into()),
        );
        let (code, _, err) = env.run(
            "siemparse",
            &["-s", "auth", "--year", "2026"],
            &sshd_lines(1, |_| "second".into()),
        );
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(
            err.contains("differs only in case from the existing table Auth"),
            "{kind:?}: {err}"
        );
        // Nothing went into Auth, and no second name was registered.
        assert_eq!(env.scalar("SELECT COUNT(*) FROM Auth"), 1, "{kind:?}");
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM event_tables"),
            1,
            "{kind:?}"
        );
        let (code, _, err) = env.run("siemquery", &["-s", "auth", ALL_2026[0], ALL_2026[1]], b"");
        assert_eq!(code, 2, "{kind:?}");
        assert!(
            err.contains("table auth does not exist; table Auth does"),
            "{kind:?}: {err}"
        );
        let (code, out, err) = env.run("siemquery", &["-s", "Auth", ALL_2026[0], ALL_2026[1]], b"");
        assert_eq!((code, out.lines().count()), (0, 1), "{kind:?}: {err}");
        // An internal table's name in another case is refused (reserved
        // names, issue 18: before the case check looks at the tables).
        let (code, _, err) = env.run("siemparse", &["-s", "Alerts"], b"x\n");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(err.contains("siemstress's own tables"), "{kind:?}: {err}");
    }
}

#[test]
fn i17_14_retries_counts_the_retries_after_the_first_attempt() {
    for kind in kinds() {
        let env = Env::new(kind);
        let mut config = String::from(
            "[section.t]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"each\"\ntype = \"single\"\n\
             table = \"t\"\nmatch = { process = \"sshd\" }\nmessage = \"seen\"\n\
             actions = [\"r0\", \"r1\", \"r3\"]\n",
        );
        for n in [0, 1, 3] {
            config.push_str(&format!(
                "\n[actions.r{n}]\ntype = \"exec\"\nprogram = \"/bin/false\"\nretries = {n}\nbackoff = \"50ms\"\n"
            ));
        }
        env.config(&config);
        env.ingest(
            &["-s", "t", "--year", "2026"],
            &sshd_lines(1, |_| "x".into()),
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        let runs = env.rows("SELECT action, status, attempts FROM action_runs ORDER BY action");
        let got: Vec<(String, String, String)> = runs
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap(),
                    r[1].clone().unwrap(),
                    r[2].clone().unwrap(),
                )
            })
            .collect();
        let want = [("r0", "1"), ("r1", "2"), ("r3", "4")]
            .map(|(a, n)| (a.to_owned(), "failed".to_owned(), n.to_owned()));
        assert_eq!(got, want, "{kind:?}: {err}");
    }
}
