//! `siemparse` from stdin: time zones, years, odd input, config errors.

use siemstress_tests::{Env, Kind, kinds};

fn iso(ms: &str) -> String {
    let ms: i64 = ms.parse().expect("ts");
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("ms")
        .to_rfc3339()
}

/// `ts` (as RFC 3339 UTC) and `extra` of every row of `t`, in order.
fn times(env: &Env) -> Vec<(String, String)> {
    env.rows("SELECT ts, extra FROM t ORDER BY id")
        .into_iter()
        .map(|r| {
            (
                iso(r[0].as_deref().unwrap()),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn dst_gap_and_overlap_in_berlin_and_new_york() {
    for kind in kinds() {
        let env = Env::new(kind);
        // Spring forward: 02:30 does not exist; fall back: 02:30 happens twice.
        let berlin = "Mar 31 01:59:59 h app[1]: a\nMar 31 02:30:00 h app[1]: gap\nMar 31 03:00:00 h app[1]: b\n\
                      Oct 27 02:59:00 h app[1]: first pass\nOct 27 02:01:00 h app[1]: second pass\n";
        env.ingest(
            &["-s", "t", "-z", "Europe/Berlin", "--year", "2024"],
            berlin.as_bytes(),
        );
        let t = times(&env);
        let got: Vec<&str> = t.iter().map(|(ts, _)| ts.as_str()).collect();
        assert_eq!(
            got,
            [
                "2024-03-31T00:59:59+00:00",
                "2024-03-31T01:30:00+00:00",
                "2024-03-31T01:00:00+00:00",
                "2024-10-27T00:59:00+00:00",
                "2024-10-27T01:01:00+00:00",
            ],
            "{kind:?}"
        );
        assert!(t[1].1.contains(r#""tz_fold":"gap""#), "{}", t[1].1);
        assert!(t[3].1.contains(r#""tz_fold":"earlier""#), "{}", t[3].1);
        assert!(t[4].1.contains(r#""tz_fold":"later""#), "{}", t[4].1);
        assert!(
            t[0].1.contains(r#""tz":"Europe/Berlin""#) && t[0].1.contains(r#""year_flag":"2024""#)
        );

        let env = Env::new(kind);
        let ny = "Mar 10 02:15:00 h app[1]: gap\nNov  3 01:58:00 h app[1]: first\nNov  3 01:02:00 h app[1]: second\n";
        env.config("[section.t]\ntimezone = \"America/New_York\"\n");
        env.ingest(&["-s", "t", "--year", "2024"], ny.as_bytes());
        let got: Vec<String> = times(&env).into_iter().map(|(ts, _)| ts).collect();
        assert_eq!(
            got,
            [
                "2024-03-10T07:15:00+00:00",
                "2024-11-03T05:58:00+00:00",
                "2024-11-03T06:02:00+00:00"
            ],
            "{kind:?}"
        );
    }
}

#[test]
fn zone_east_of_utc_and_rfc5424_offset() {
    for kind in kinds() {
        let env = Env::new(kind);
        let input = "Jan  1 05:30:00 h app[1]: local\n\
                     <38>1 2024-06-01T12:00:00.500-04:00 web sshd 42 - - Accepted publickey for bob from 2001:db8::1 port 2222 ssh2\n";
        env.ingest(
            &["-s", "t", "-z", "+0530", "--year", "2024"],
            input.as_bytes(),
        );
        let t = times(&env);
        assert_eq!(t[0].0, "2024-01-01T00:00:00+00:00", "{kind:?}");
        assert!(t[0].1.contains(r#""tz":"+0530""#));
        assert_eq!(t[1].0, "2024-06-01T16:00:00.500+00:00", "{kind:?}");
        let r = &env.rows("SELECT host, process, pid, user, source_host, source_port, facility, severity FROM t WHERE id = 2")[0];
        let got: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
        assert_eq!(
            got,
            [
                Some("web"),
                Some("sshd"),
                Some("42"),
                Some("bob"),
                Some("2001:db8::1"),
                Some("2222"),
                Some("auth"),
                Some("info")
            ]
        );
    }
}

#[test]
fn december_line_read_in_january_gets_last_year() {
    // The year is inferred from "now": a line dated a month or more ahead of
    // today belongs to last year. Build lines relative to today's date.
    let now = chrono::Utc::now();
    let ahead = now + chrono::Duration::days(40);
    let today = now.format("%b %e %H:%M:%S").to_string();
    let later = ahead.format("%b %e %H:%M:%S").to_string();
    let input = format!("{today} h app[1]: now\n{later} h app[1]: in 40 days\n");
    let env = Env::new(Kind::Sqlite);
    env.ingest(&["-s", "t", "-z", "UTC"], input.as_bytes());
    let t = times(&env);
    let year_of = |s: &str| s[..4].parse::<i32>().unwrap();
    assert_eq!(
        year_of(&t[0].0),
        now.format("%Y").to_string().parse::<i32>().unwrap()
    );
    assert_eq!(
        year_of(&t[1].0),
        ahead.format("%Y").to_string().parse::<i32>().unwrap() - 1
    );
    assert!(t[1].1.contains("year_inferred"));
}

#[test]
fn garbage_empty_binary_and_huge_lines_are_all_stored() {
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"Jun 14 15:16:01 combo sshd[1]: ok\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"complete garbage without a header\n");
    input.extend_from_slice(b"\xff\xfe\x00\x01 binary \xc3\x28 bytes\r\n");
    let big = "x".repeat(1 << 20);
    input.extend_from_slice(format!("Jun 14 15:16:02 combo app[2]: {big}\n").as_bytes());
    input.extend_from_slice(b"last line without newline");
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "t", "-z", "UTC", "--year", "2005"], &input);
        let rows = env.rows("SELECT parsed, raw, message, source, LENGTH(raw) FROM t ORDER BY id");
        assert_eq!(rows.len(), 6, "{kind:?}");
        let parsed: Vec<&str> = rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(parsed, ["1", "0", "0", "0", "1", "0"], "{kind:?}");
        assert_eq!(rows[1][1].as_deref(), Some(""));
        assert_eq!(
            rows[2][1].as_deref(),
            Some("complete garbage without a header")
        );
        assert_eq!(
            rows[3][1].as_deref(),
            Some("\u{fffd}\u{fffd}\u{0}\u{1} binary \u{fffd}( bytes")
        );
        assert_eq!(rows[4][2].as_deref().map(str::len), Some(big.len()));
        assert_eq!(
            rows[4][4].as_deref(),
            Some((big.len() + 30).to_string().as_str())
        );
        assert_eq!(rows[5][1].as_deref(), Some("last line without newline"));
        assert!(rows.iter().all(|r| r[3].as_deref() == Some("stdin")));
    }
}

#[test]
fn config_typo_names_key_and_line() {
    let env = Env::new(Kind::Sqlite);
    env.config("[database]\n\n[section.auth]\ntable = \"auth\"\ntimezon = \"UTC\"\n");
    let (code, _, err) = env.run("siemparse", &["-s", "auth"], b"x\n");
    assert_eq!(code, 2);
    assert!(err.contains("timezon") && err.contains("line 5"), "{err}");
    assert!(
        err.lines().count() <= 8,
        "short message, no backtrace: {err}"
    );

    env.config("[section.auth]\ntable = \"auth; DROP TABLE x\"\n");
    let (code, _, err) = env.run("siemparse", &["-s", "auth"], b"x\n");
    assert_eq!(code, 2);
    assert!(err.contains("invalid name"), "{err}");

    env.config("");
    let (code, _, err) = env.run("siemparse", &["-s", "auth", "-z", "Mars/Base"], b"x\n");
    assert_eq!(code, 2);
    assert!(err.contains("Mars/Base"), "{err}");
}

#[test]
fn database_url_precedence() {
    let env = Env::new(Kind::Sqlite);
    let cfg_db = env.path().join("from-config.db");
    let env_db = env.path().join("from-env.db");
    env.config(&format!(
        "[database]\nurl = \"sqlite://{}\"\n",
        cfg_db.display()
    ));
    // Without --db the config's URL is used...
    let mut c = std::process::Command::new(siemstress_tests::bin("siemparse"));
    c.current_dir(env.path())
        .env_remove("SIEMSTRESS_DATABASE_URL")
        .args(["-c", "siemstress.toml", "-s", "t", "-q"]);
    run_with_input(c, b"hello\n");
    assert!(cfg_db.exists());
    // ...and the environment beats the config.
    let mut c = std::process::Command::new(siemstress_tests::bin("siemparse"));
    c.current_dir(env.path())
        .env(
            "SIEMSTRESS_DATABASE_URL",
            format!("sqlite://{}", env_db.display()),
        )
        .args(["-c", "siemstress.toml", "-s", "t", "-q"]);
    run_with_input(c, b"hello\n");
    assert!(env_db.exists());
}

fn run_with_input(mut c: std::process::Command, input: &[u8]) {
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn clear_needs_force_and_drops_the_table() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "t"], b"one\ntwo\n");
        let (code, _, err) = env.run("siemparse", &["-s", "t", "--clear"], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 2);
        env.ingest(&["-s", "t", "--clear", "--force"], b"");
        env.ingest(&["-s", "t"], b"three\n");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 1, "{kind:?}");
    }
}

#[test]
fn a_tail_f_line_is_stored_within_a_second() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    for kind in kinds() {
        let env = Env::new(kind);
        let mut child = env
            .cmd("siemparse")
            .args(["-s", "t", "-q"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().unwrap();
        // Create the table first, then time one line.
        stdin.write_all(b"warm up\n").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !table_has(&env, 1) {
            assert!(Instant::now() < deadline, "warm-up line never stored");
            std::thread::sleep(Duration::from_millis(50));
        }
        let start = Instant::now();
        stdin
            .write_all(b"Jun 14 15:16:01 combo sshd[1]: live line\n")
            .unwrap();
        stdin.flush().unwrap();
        while !table_has(&env, 2) {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{kind:?}: line not queryable within 1 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
}

fn table_has(env: &Env, n: i64) -> bool {
    let exists = match env.kind {
        Kind::Sqlite if !env.path().join("test.db").exists() => 0,
        Kind::Sqlite => env.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 't'"),
        Kind::Mysql => env.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 't'"),
    };
    exists > 0 && env.scalar("SELECT COUNT(*) FROM t") >= n
}

#[test]
fn shipped_example_configs_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sample = std::fs::read(root.join("tests/fixtures/sample-auth.log")).unwrap();
    for kind in kinds() {
        let env = Env::new(kind);
        std::fs::copy(
            root.join("config/siemstress.toml"),
            env.path().join("siemstress.toml"),
        )
        .unwrap();
        env.ingest(&["-s", "auth"], &sample);
        let rows = env.rows("SELECT process, user, source_host, source_port, dest_host, dest_port, protocol, parsed FROM auth ORDER BY id");
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.as_deref().unwrap_or("-"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let want = [
            "CRON root - - - - - 1",
            "CRON root - - - - - 1",
            "sshd admin 203.0.113.7 51234 - - - 1",
            "sshd admin 203.0.113.7 51234 - - - 1",
            "sshd root 203.0.113.7 51240 - - - 1",
            "sshd root 203.0.113.7 51240 - - - 1",
            "sshd root 203.0.113.7 - - - - 1",
            "sshd root 203.0.113.7 51240 - - - 1",
            "sshd alice 2001:db8::42 40022 - - - 1",
            "sshd alice - - - - - 1",
            "sudo alice - - - - - 1",
            "sudo root - - - - - 1",
            "su alice - - - - - 1",
            "sshd - 2001:db8::42 40022 - - - 1",
            "kernel - 198.51.100.23 48211 192.0.2.10 23 tcp 1",
            "kernel - 198.51.100.23 48211 192.0.2.10 3389 tcp 1",
            // IPv4-mapped addresses are stored as IPv4 (one client, one value).
            "vsftpd bob 192.0.2.77 - - - - 1",
            "sshd test 192.0.2.99 60000 - - - 1",
            "- - - - - - - 0",
        ];
        assert_eq!(got, want, "{kind:?}");
        let zone = env.rows("SELECT extra FROM auth WHERE id = 1")[0][0]
            .clone()
            .unwrap();
        assert!(zone.contains("Europe/Berlin"), "{zone}");
    }
    // The docker config parses too (it names a server that is not here).
    let cfg =
        siemstress_common::config::Config::from_file(&root.join("config/docker.toml")).unwrap();
    assert!(cfg.database.url.unwrap().starts_with("mysql://"));
}

/// MariaDB commits DDL at once: a siemparse killed inside a migration leaves
/// it marked dirty. The next start must repair that, not demand a manual fix.
#[test]
fn a_dirty_mysql_migration_is_run_again() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    env.ingest(&["-s", "t"], b"one\n");
    let last = env.scalar("SELECT MAX(version) FROM _sqlx_migrations");
    env.rows(&format!(
        "UPDATE _sqlx_migrations SET success = FALSE WHERE version = {last}"
    ));
    env.ingest(&["-s", "t"], b"two\n");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = FALSE"),
        0
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 2);
}

/// The longest row siemparse writes (8 MiB; longer lines are split) is stored
/// whole in `raw` on both backends; MariaDB may cut only `message`.
#[test]
fn an_8_mib_line_keeps_its_raw_text() {
    let text = "é".repeat(5 << 20); // 10 MiB of two-byte characters
    let input = format!("Jun 14 15:16:02 combo app[2]: {text}\nnext\n");
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "t", "-z", "UTC", "--year", "2005"],
            input.as_bytes(),
        );
        let bytes = |c: &str| match kind {
            Kind::Sqlite => format!("LENGTH(CAST({c} AS BLOB))"),
            Kind::Mysql => format!("OCTET_LENGTH({c})"),
        };
        let rows = env.rows(&format!(
            "SELECT {}, {}, parsed FROM t ORDER BY id",
            bytes("raw"),
            bytes("message")
        ));
        let n = |r: usize, c: usize| rows[r][c].as_deref().unwrap().parse::<usize>().unwrap();
        assert_eq!(
            rows.len(),
            3,
            "{kind:?}: split into two rows plus the next line"
        );
        assert_eq!(
            n(0, 0) + n(1, 0),
            input.len() - "next\n".len() - 1,
            "{kind:?}: every byte kept"
        );
        assert!(
            (8 << 20) - n(0, 0) < 4,
            "{kind:?}: split at 8 MiB, between characters"
        );
        assert_eq!(n(1, 2), 0, "{kind:?}: the continuation has no header");
        assert!(
            n(0, 1) >= 4 << 20,
            "{kind:?}: message cut no shorter than 4 MiB"
        );
    }
}
