//! Hardening of issue 18 (hostile input, least privilege), tests named
//! `i18_...`: terminal escapes in stored text, file modes, exec actions,
//! mail AUTH, SIGHUP.

use siemstress_tests::{Env, Kind, kinds};

/// What an attacker puts in a log line: retitle and clear the terminal
/// (OSC, CSI), a C1 CSI, a bidi override.
const EVIL: &str = "\u{1b}]2;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt";
/// `EVIL` as the tools show it to people.
const EVIL_SHOWN: &str = r"\x1b]2;pwned\x07\x1b[2J\x9b31m\u{202e}txt";

/// True if `out` holds any character that drives a terminal.
fn raw_controls(out: &str) -> bool {
    out.chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || c == '\u{202e}')
}

const RANGE: [&str; 2] = ["--range", "20260101000000-20270101000000"];

fn env_with_evil_line(kind: Kind) -> Env {
    let env = Env::new(kind);
    env.config(
        "[section.t]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"evil\"\ntype = \"single\"\n\
         table = \"t\"\nmatch = { process = \"app\", regex = 'said (?P<what>.*)' }\n\
         key = \"{what}\"\nmessage = \"it said {what}\"\n",
    );
    env.ingest(
        &["-s", "t", "--year", "2026"],
        format!("Jan  1 00:00:00 h app[1]: said {EVIL}\n").as_bytes(),
    );
    env
}

#[test]
fn i18_display_escapes_controls_for_people_and_keeps_them_for_machines() {
    for kind in kinds() {
        let env = env_with_evil_line(kind);
        let q = |args: &[&str]| {
            let mut all = vec!["-s", "t", RANGE[0], RANGE[1]];
            all.extend_from_slice(args);
            let (code, out, err) = env.run("siemquery", &all, b"");
            assert_eq!(code, 0, "{kind:?} {args:?}: {err}");
            out
        };
        let table = q(&["--format", "table"]);
        assert!(!raw_controls(&table), "{kind:?}: {table:?}");
        assert!(
            table.contains(&format!("said {EVIL_SHOWN}")),
            "{kind:?}: {table}"
        );

        // Machine formats keep the text exact.
        let json: serde_json::Value = serde_json::from_str(&q(&["--format", "json"])).unwrap();
        assert_eq!(json[0]["message"], format!("said {EVIL}"), "{kind:?}");
        let ndjson: serde_json::Value =
            serde_json::from_str(q(&["--format", "ndjson"]).trim()).unwrap();
        assert_eq!(ndjson["message"], format!("said {EVIL}"), "{kind:?}");
        let csv = q(&["--format", "csv", "--fields", "message"]);
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], format!("said {EVIL}"), "{kind:?}");

        // siemtrigger: -v text, and the explanation.
        let (code, out, err) = env.run("siemtrigger", &["--once", "-v"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(
            out.contains(&format!("[{EVIL_SHOWN}] it said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run("siemtrigger", &["--explain", "1"], b"");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(
            out.contains(&format!("message:  it said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        assert!(
            out.contains(&format!("app[1]: said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run(
            "siemtrigger",
            &[
                "--explain-rule",
                "evil",
                "--range",
                "20260101000000-20260102000000",
            ],
            b"",
        );
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(out.contains(EVIL_SHOWN), "{kind:?}: {out}");
        let (_, out, _) = env.run("siemtrigger", &["--explain", "1", "--format", "json"], b"");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["alert"]["message"], format!("it said {EVIL}"), "{kind:?}");
        let (_, out, _) = env.run(
            "siemquery",
            &["--alerts", RANGE[0], RANGE[1], "--format", "table"],
            b"",
        );
        assert!(
            !raw_controls(&out) && out.contains(EVIL_SHOWN),
            "{kind:?}: {out:?}"
        );
    }
}

#[test]
fn i18_display_escapes_snapshot_rows_and_diffs() {
    for kind in kinds() {
        let env = Env::new(kind);
        let doc = |v: &str| {
            serde_json::json!({ format!("key{EVIL}"): { format!("col{EVIL}"): v, "n": 1 } })
                .to_string()
        };
        env.ingest(&["--snapshot", "evil"], doc("before").as_bytes());
        env.ingest(
            &["--snapshot", "evil"],
            doc(&format!("after{EVIL}")).as_bytes(),
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--format", "table"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        for want in [
            format!("key{EVIL_SHOWN}"),
            format!("col{EVIL_SHOWN}"),
            format!("after{EVIL_SHOWN}"),
        ] {
            assert!(out.contains(&want), "{kind:?}: {want} in {out}");
        }
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--diff", "--format", "table"],
            b"",
        );
        assert_eq!(code, 4, "{kind:?}: {err}");
        assert!(
            !raw_controls(&out) && !raw_controls(&err),
            "{kind:?}: {out:?} {err:?}"
        );
        assert!(
            out.contains(&format!("after{EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--diff", "--format", "ndjson"],
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["new"], format!("after{EVIL}"), "{kind:?}");
        assert_eq!(v["key"], format!("key{EVIL}"), "{kind:?}");
    }
}

#[test]
fn i18_csv_excel_safe() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:00:00 h app[1]: =HYPERLINK(\"http://evil/\",\"x\")\n\
              Jan  1 00:00:01 h app[1]: @SUM(1+1)\n\
              Jan  1 00:00:03 h app[1]: +1\n\
              Jan  1 00:00:04 h app[1]: plain\n",
        );
        let messages = |extra: &[&str]| {
            let mut args = vec![
                "-s",
                "t",
                RANGE[0],
                RANGE[1],
                "--format",
                "csv",
                "--fields",
                "message,pid",
            ];
            args.extend_from_slice(extra);
            let (code, out, err) = env.run("siemquery", &args, b"");
            assert_eq!(code, 0, "{kind:?}: {err}");
            csv::Reader::from_reader(out.as_bytes())
                .records()
                .map(|r| r.unwrap()[0].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(&["--excel-safe"]),
            [
                "'=HYPERLINK(\"http://evil/\",\"x\")",
                "'@SUM(1+1)",
                "'+1",
                "plain"
            ],
            "{kind:?}"
        );
        assert_eq!(
            messages(&[])[0],
            "=HYPERLINK(\"http://evil/\",\"x\")",
            "{kind:?}: exact by default"
        );

        // Snapshot rows too (and a leading -: syslog messages lose it).
        env.ingest(
            &["--snapshot", "s"],
            br#"{"k": {"v": "-2+3+cmd|' /C calc'!A0"}}"#,
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "s", "--format", "csv", "--excel-safe"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(out.contains(",'-2+3+cmd|' /C calc'!A0"), "{kind:?}: {out}");
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn i18_files_are_created_0600_in_directories_0700() {
    // The usual umask: what the tools create would be 0644 without their own modes.
    // SAFETY: umask(2) has no preconditions.
    unsafe { libc::umask(0o022) };
    for kind in kinds() {
        let env = Env::new(kind);
        let dir = env.path();
        env.config(&format!(
            "[section.t]\ntimezone = \"UTC\"\n\n[actions.log]\ntype = \"file\"\n\
             path = \"{}/new/sub/alerts.ndjson\"\n\n[[rule]]\nname = \"each\"\ntype = \"single\"\n\
             table = \"t\"\nmatch = {{ process = \"app\" }}\nmessage = \"seen\"\nactions = [\"log\"]\n",
            dir.display()
        ));
        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:00:00 h app[1]: x\n",
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert_eq!(mode(&dir.join("new")), 0o700, "{kind:?}");
        assert_eq!(mode(&dir.join("new/sub")), 0o700, "{kind:?}");
        assert_eq!(mode(&dir.join("new/sub/alerts.ndjson")), 0o600, "{kind:?}");

        let json = dir.join("rows.json");
        let report = dir.join("report.html");
        let (code, _, err) = env.run(
            "siemquery",
            &[
                "-s",
                "t",
                RANGE[0],
                RANGE[1],
                "--silent",
                "--json",
                json.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        let (code, _, err) = env.run(
            "siemquery",
            &["--report", report.to_str().unwrap(), RANGE[0], RANGE[1]],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert_eq!((mode(&json), mode(&report)), (0o600, 0o600), "{kind:?}");
        // An existing file keeps the mode its admin gave it.
        chmod(&json, 0o640);
        env.run(
            "siemquery",
            &[
                "-s",
                "t",
                RANGE[0],
                RANGE[1],
                "--silent",
                "--json",
                json.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(mode(&json), 0o640, "{kind:?}");

        if kind == Kind::Sqlite {
            let db = dir.join("test.db");
            for f in ["test.db", "test.db-wal", "test.db-shm"] {
                assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
            }
            // Made group-readable by its admin: never made more open (or
            // less); a new -wal and -shm follow the database file.
            chmod(&db, 0o640);
            std::fs::remove_file(dir.join("test.db-wal")).unwrap();
            std::fs::remove_file(dir.join("test.db-shm")).unwrap();
            env.ingest(
                &["-s", "t", "--year", "2026"],
                b"Jan  1 00:00:01 h app[1]: y\n",
            );
            for f in ["test.db", "test.db-wal", "test.db-shm"] {
                assert_eq!(mode(&dir.join(f)), 0o640, "{f}");
            }
        }
    }
}

#[test]
fn i18_a_password_file_others_may_read_is_refused() {
    let env = Env::new(Kind::Sqlite);
    let pw = env.path().join("db.pass");
    std::fs::write(&pw, "s3cret\n").unwrap();
    // Port 1: nothing listens; a password that gets through fails to connect.
    env.config(&format!(
        "[database]\nurl = \"mysql://siem@127.0.0.1:1/siem\"\npassword_file = \"{0}\"\n\n\
         [gather.mysql_users]\nurl = \"mysql://audit@127.0.0.1:1/mysql\"\npassword_file = \"{0}\"\n",
        pw.display()
    ));
    // env.cmd passes --db: use the binaries with -c only.
    let bare = |name: &str, args: &[&str]| {
        let out = std::process::Command::new(siemstress_tests::bin(name))
            .arg("-c")
            .arg(env.path().join("siemstress.toml"))
            .args(args)
            .current_dir(env.path())
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    chmod(&pw, 0o644);
    for (name, args) in [
        ("siemquery", &["-s", "t"][..]),
        ("siemtrigger", &["--once"][..]),
        ("siemparse", &["-s", "t"][..]),
    ] {
        let (code, err) = bare(name, args);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(
            err.contains("database.password_file")
                && err.contains(pw.to_str().unwrap())
                && err.contains("readable by others (mode 0644)"),
            "{name}: {err}"
        );
    }
    // The gatherer's own password file (the run is recorded in SQLite).
    let (code, _, err) = env.run("siemparse", &["--gather", "mysql_users"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gather.mysql_users.password_file") && err.contains("readable by others"),
        "{err}"
    );
    // 0600 (or 0640 with a group) is accepted: the next error is the connection.
    chmod(&pw, 0o640);
    let (code, err) = bare("siemquery", &["-s", "t"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("password_file") && err.contains("refused"),
        "{err}"
    );
}

/// An executable script `name` in the test's directory.
fn script(env: &Env, name: &str, body: &str) -> std::path::PathBuf {
    let p = env.path().join(name);
    std::fs::write(&p, body).unwrap();
    chmod(&p, 0o755);
    p
}

#[test]
fn i18_exec_actions_get_a_cleared_environment_and_safe_arguments() {
    for kind in kinds() {
        let env = Env::new(kind);
        // Records its environment and arguments per alert.
        let rec = script(
            &env,
            "record.sh",
            "#!/bin/sh\nenv > \"$0.$SIEM_KEY.env\"\nprintf '%s\\n' \"$@\" > \"$0.$SIEM_KEY.args\"\n",
        );
        let config = |args: &str| {
            env.config(&format!(
                "[section.t]\ntimezone = \"UTC\"\n\n[actions.rec]\ntype = \"exec\"\n\
                 program = \"{}\"\nargs = {args}\nretries = 3\nbackoff = \"50ms\"\n\n\
                 [[rule]]\nname = \"said\"\ntype = \"single\"\ntable = \"t\"\n\
                 match = {{ process = \"app\", regex = 'said (?P<what>.*)' }}\n\
                 key = \"{{what}}\"\nmessage = \"it said {{what}}\"\nactions = [\"rec\"]\n",
                rec.display()
            ))
        };
        // Log text at the start of an argument before "--" could become an
        // option: refused when the config loads, naming the argument.
        for bad in [r#"["{key}"]"#, r#"["-v", "{message}", "--", "{key}"]"#] {
            config(bad);
            let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
            assert_eq!(code, 2, "{kind:?} {bad}: {err}");
            assert!(
                err.contains("[actions.rec]")
                    && err.contains("starts with {")
                    && err.contains("\"--\""),
                "{kind:?} {bad}: {err}"
            );
        }
        config(r#"["{nosuch}"]"#);
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(err.contains("no alert field {nosuch}"), "{kind:?}: {err}");
        config(r#"["--rule={rule}", "--sev", "{severity}", "--key={key}", "--", "{key}"]"#);
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");

        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:00:00 h app[1]: said -rf\nJan  1 00:00:01 h app[1]: said x\0y\n",
        );
        let out = env
            .cmd("siemtrigger")
            .arg("--once")
            .env(
                "SIEMSTRESS_DATABASE_URL",
                "mysql://siem:hunter2@db.invalid/siem",
            )
            .env("AWS_SECRET_ACCESS_KEY", "hunter2")
            .env("LANG", "C.UTF-8")
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{kind:?}: {err}");

        // The program sees the alert, PATH and LANG, and nothing of siemtrigger's.
        let seen = std::fs::read_to_string(env.path().join("record.sh.-rf.env")).unwrap();
        assert!(!seen.contains("hunter2"), "{kind:?}: {seen}");
        for want in [
            "SIEM_KEY=-rf",
            "SIEM_RULE=said",
            "PATH=/usr/bin:/bin",
            "LANG=C.UTF-8",
        ] {
            assert!(
                seen.lines().any(|l| l == want),
                "{kind:?}: {want} in {seen}"
            );
        }
        for l in seen.lines() {
            let name = l.split('=').next().unwrap();
            // sh itself sets PWD (and some shells SHLVL, _).
            assert!(
                name.starts_with("SIEM_") || ["PATH", "LANG", "PWD", "SHLVL", "_"].contains(&name),
                "{kind:?}: {l}"
            );
        }
        // "-rf" arrives as an operand after "--".
        let args = std::fs::read_to_string(env.path().join("record.sh.-rf.args")).unwrap();
        assert_eq!(
            args, "--rule=said\n--sev\nmedium\n--key=-rf\n--\n-rf\n",
            "{kind:?}"
        );

        // A NUL byte cannot be passed: failed at the first attempt, with the
        // reason, never retried (retries = 3).
        let runs = env.rows(
            "SELECT a.key, r.status, r.attempts, r.last_error FROM action_runs r \
             JOIN alerts a ON a.id = r.alert_id ORDER BY a.id",
        );
        assert_eq!(runs.len(), 2, "{kind:?}: {runs:?}");
        assert_eq!(runs[0][1].as_deref(), Some("ok"), "{kind:?}: {runs:?}");
        assert_eq!(
            (
                runs[1][0].as_deref(),
                runs[1][1].as_deref(),
                runs[1][2].as_deref()
            ),
            (Some("x\0y"), Some("failed"), Some("1")),
            "{kind:?}: {runs:?}"
        );
        let reason = runs[1][3].as_deref().unwrap();
        assert!(
            reason.contains("{key}") && reason.contains("NUL byte") && !reason.contains('\0'),
            "{kind:?}: {reason}"
        );
        assert!(err.contains("NUL byte"), "{kind:?}: {err}");
    }
}

#[test]
fn i18_one_huge_invalid_utf8_line_never_stops_ingest() {
    // 8 MiB of bytes that are not UTF-8: 24 MiB stored lossily, over
    // MariaDB's default 16 MiB max_allowed_packet.
    let mut text = b"Jan  1 00:00:00 h app[1]: before\n".to_vec();
    text.extend(std::iter::repeat_n(0xffu8, 8 << 20));
    text.extend_from_slice(b"\nJan  1 00:00:02 h app[1]: after\n");
    let lossy = 3 * (8 << 20);
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        let log = env.path().join("big.log");
        std::fs::write(&log, &text).unwrap();
        let follow = [
            "-s",
            "t",
            "--year",
            "2026",
            "--once",
            "--follow",
            log.to_str().unwrap(),
        ];
        let (code, _, err) = env.run("siemparse", &follow, b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        // The offset moved past it: a second run has nothing to store.
        let (code, _, err) = env.run("siemparse", &follow, b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        // And through stdin.
        env.ingest(&["-s", "t", "--year", "2026"], &text);
        let bytes = match kind {
            Kind::Sqlite => "length(CAST(raw AS BLOB))",
            Kind::Mysql => "LENGTH(raw)",
        };
        let rows = env.rows(&format!(
            "SELECT message, {bytes}, extra, source FROM t ORDER BY id"
        ));
        let got: Vec<&str> = rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(got.len(), 6, "{kind:?}");
        assert_eq!(
            (got[0], got[2], got[3], got[5]),
            ("before", "after", "before", "after")
        );
        for big in [&rows[1], &rows[4]] {
            let len: usize = big[1].as_deref().unwrap().parse().unwrap();
            match kind {
                // No packet limit: stored whole.
                Kind::Sqlite => {
                    assert_eq!(len, lossy);
                    let extra = big[2].as_deref().unwrap_or("{}");
                    assert!(!extra.contains("truncated"), "{extra}");
                }
                // Cut to fit 16 MiB, with the marker and the original length.
                Kind::Mysql => {
                    assert!(len > (8 << 20) && len < (16 << 20), "{len}");
                    let extra: serde_json::Value =
                        serde_json::from_str(big[2].as_deref().unwrap()).unwrap();
                    assert_eq!(extra["truncated"]["raw"], lossy, "{extra}");
                }
            }
        }
    }
}

/// An SMTP server on 127.0.0.1 that offers AUTH PLAIN and LOGIN and takes
/// one session; yields every line the client sent.
fn smtp_auth_sink() -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"220 sink ESMTP\r\n").unwrap();
        let mut lines = Vec::new();
        let mut in_data = false;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line.trim_end().to_owned());
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    w.write_all(b"250 queued\r\n").unwrap();
                }
                continue;
            }
            let cmd = line.to_ascii_uppercase();
            let answer: &[u8] = if cmd.starts_with("EHLO") {
                b"250-sink\r\n250 AUTH PLAIN LOGIN\r\n"
            } else if cmd.starts_with("AUTH") {
                b"235 2.7.0 ok\r\n"
            } else if cmd.starts_with("DATA") {
                in_data = true;
                b"354 go on\r\n"
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            w.write_all(answer).unwrap();
        }
        lines
    });
    (port, h)
}

#[test]
fn i18_smtp_auth_over_plain_smtp_is_refused_unless_allowed() {
    for kind in kinds() {
        let env = Env::new(kind);
        let (port, sink) = smtp_auth_sink();
        let config = |allow: &str| {
            env.config(&format!(
                "[section.t]\ntimezone = \"UTC\"\n\n[actions.mail]\n\
                 smtp = \"smtp://bob:s3cret@127.0.0.1:{port}\"\nfrom = \"siem@example.org\"\n\
                 to = [\"sec@example.org\"]\n{allow}\n\
                 [[rule]]\nname = \"each\"\ntype = \"single\"\ntable = \"t\"\n\
                 match = {{ process = \"app\" }}\nmessage = \"seen\"\nactions = [\"mail\"]\n"
            ))
        };
        config("");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:00:00 h app[1]: x\n",
        );
        // Refused where the config is read, naming the key; the password is
        // never shown, and nothing is sent.
        let report = env.path().join("r.html");
        for (name, args) in [
            ("siemtrigger", vec!["--check"]),
            ("siemtrigger", vec!["--once"]),
            (
                "siemquery",
                vec!["--report", report.to_str().unwrap(), "--mail"],
            ),
        ] {
            let (code, _, err) = env.run(name, &args, b"");
            assert_eq!(code, 2, "{kind:?} {name} {args:?}: {err}");
            assert!(
                err.contains("allow_plaintext_auth")
                    && err.contains("smtp+starttls://")
                    && !err.contains("s3cret"),
                "{kind:?} {name}: {err}"
            );
        }
        assert_eq!(env.scalar("SELECT COUNT(*) FROM alerts"), 0, "{kind:?}");

        // Allowed: AUTH goes out over plain SMTP.
        config("allow_plaintext_auth = true");
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        let lines = sink.join().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.to_ascii_uppercase().starts_with("AUTH ")),
            "{kind:?}: {lines:?}"
        );
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM action_runs WHERE status = 'ok'"),
            1,
            "{kind:?}"
        );
    }
}

/// A small tmpfs mounted for a test, unmounted when dropped.
pub(crate) struct SmallFs(std::path::PathBuf);

impl SmallFs {
    /// Mounts `size` of tmpfs on `dir`; `None` when this user cannot mount.
    pub(crate) fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn remount(&self, how: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {how}");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The number in "the first N rows were stored".
fn stored_first(err: &str) -> i64 {
    err.split("the first ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {err}"))
}

#[test]
fn i18_sqlite_on_a_full_or_read_only_file_system_exits_2_intact() {
    let env = Env::new(Kind::Sqlite);
    env.config("[section.t]\ntimezone = \"UTC\"\n");
    let Some(fs) = SmallFs::mount(&env.path().join("fs"), "2m") else {
        // Needs root (or CAP_SYS_ADMIN) to mount a tmpfs.
        eprintln!("i18_sqlite_on_a_full_or_read_only_file_system: cannot mount a tmpfs; skipped");
        return;
    };
    let url = format!("sqlite://{}/fs/t.db", env.path().display());
    let siemparse = |input: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new(siemstress_tests::bin("siemparse"))
            .arg("-c")
            .arg(env.path().join("siemstress.toml"))
            .args(["--db", &url, "-s", "t", "--year", "2026"])
            .current_dir(env.path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let lines: String = (0..100_000)
        .map(|i| format!("Jan  1 00:00:00 h app[1]: line {i} {}\n", "x".repeat(100)))
        .collect();
    let sqlite = |sql: &str| -> String {
        let out = std::process::Command::new("sqlite3")
            .arg(env.path().join("fs/t.db"))
            .arg(sql)
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    // Full: exit 2, the reason, how much was stored; the file is intact.
    let (code, err) = siemparse(lines.as_bytes());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("database or disk is full"), "{err}");
    let n = stored_first(&err);
    assert!(n < 100_000, "{err}");
    assert_eq!(sqlite("PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite("SELECT COUNT(*) FROM t"), n.to_string());

    // Read-only: the same.
    fs.remount("ro");
    let (code, err) = siemparse(b"Jan  1 00:00:00 h app[1]: one more\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("readonly"), "{err}");
    assert_eq!(stored_first(&err), 0, "{err}");
    fs.remount("rw");
    assert_eq!(sqlite("PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite("SELECT COUNT(*) FROM t"), n.to_string());
}

#[test]
fn i18_stdin_waits_for_a_stalled_database_and_says_so() {
    // A write lock on the table stalls MariaDB's inserts (SQLite's writer
    // fails after its busy timeout instead, tested above as an error).
    let Some(kind) = kinds().into_iter().find(|k| *k == Kind::Mysql) else {
        return;
    };
    use std::io::Write;
    let env = Env::new(kind);
    env.config("[section.t]\ntimezone = \"UTC\"\n");
    let mut child = env
        .cmd("siemparse")
        .args(["-s", "t", "--year", "2026", "--batch", "100"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let text = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            text.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    stdin
        .write_all(b"Jan  1 00:00:00 h app[1]: first\n")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while {
        let n = env.rows(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 't'",
        );
        n[0][0].as_deref() == Some("0") || env.scalar("SELECT COUNT(*) FROM t") < 1
    } {
        assert!(std::time::Instant::now() < deadline, "first row not stored");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Lock the table from a connection of our own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lock = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&env.url).await.unwrap();
        sqlx::query("LOCK TABLES t WRITE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let lines: String = (0..20_000)
        .map(|i| format!("Jan  1 00:00:01 h app[1]: line {i} {}\n", "x".repeat(100)))
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fed = done.clone();
    let feeder = std::thread::spawn(move || {
        stdin.write_all(lines.as_bytes()).unwrap();
        fed.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !stderr
        .lock()
        .unwrap()
        .contains("has taken no rows for 10 s")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Bounded: siemparse stopped reading, so the feeder is blocked.
    assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
    rt.block_on(async {
        sqlx::query("UNLOCK TABLES")
            .execute(&mut lock)
            .await
            .unwrap();
    });
    feeder.join().unwrap();
    let status = child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let err = stderr.lock().unwrap().clone();
    assert!(status.success(), "{err}");
    assert!(err.contains("the database takes rows again"), "{err}");
    // Nothing dropped.
    assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 20_001);
}

/// Rule state under attacker-chosen keys is capped per rule: `max_keys`
/// (the rule's own, else `[rules] max_keys`) windows at most, in memory and
/// stored; the oldest go first; the drops are counted in the run's warning
/// and by `--explain-rule`. The newest keys still fire.
#[test]
fn i18_rule_state_is_capped_per_rule() {
    let rules = "[rules]\nmax_keys = 30\n\n\
        [[rule]]\nname = \"brute\"\ntype = \"threshold\"\ntable = \"t\"\nmax_keys = 10\n\
        match = { process = \"app\", regex = 'fail (?P<ip>\\S+) port (?P<port>\\d+)' }\n\
        key = \"{ip}\"\nwindow = \"1h\"\nthreshold = 3\n\n\
        [[rule]]\nname = \"scan\"\ntype = \"threshold\"\ntable = \"t\"\n\
        match = { process = \"app\", regex = 'fail (?P<ip>\\S+) port (?P<port>\\d+)' }\n\
        key = \"{ip}\"\ndistinct = \"port\"\nwindow = \"1h\"\nthreshold = 3\n\n\
        [[rule]]\nname = \"quiet\"\ntype = \"absence\"\ntable = \"t\"\nmax_keys = 5\n\
        first = { process = \"app\", regex = 'fail (?P<ip>\\S+) port' }\n\
        second = { process = \"app\", regex = 'ok {ip}$' }\nkey = \"{ip}\"\nwindow = \"1d\"\n";
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(&format!("[section.t]\ntimezone = \"UTC\"\n\n{rules}"));
        // 100 fake keys once each, then one real key three times on three ports.
        let mut lines = String::new();
        for i in 0..100 {
            lines += &format!(
                "Jan  1 00:{:02}:{:02} h app[1]: fail 10.0.{}.{} port 22\n",
                i / 60,
                i % 60,
                i / 250,
                i % 250
            );
        }
        for p in [22, 23, 24] {
            lines += &format!("Jan  1 00:02:00 h app[1]: fail 192.0.2.1 port {p}\n");
        }
        env.ingest(&["-s", "t", "--year", "2026"], lines.as_bytes());
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        // 101 keys under caps of 10, 30 (the [rules] default) and 5.
        assert!(
            err.contains("rule brute over table t dropped 91 windows over its state cap (max_keys = 10, oldest first)"),
            "{kind:?}: {err}"
        );
        assert!(
            err.contains(
                "rule scan over table t dropped 71 windows over its state cap (max_keys = 30"
            ),
            "{kind:?}: {err}"
        );
        assert!(
            err.contains("rule quiet over table t dropped 96 windows"),
            "{kind:?}: {err}"
        );
        let stored = |rule: &str| {
            env.scalar(&format!(
                "SELECT COUNT(*) FROM trigger_windows WHERE rule = '{rule}'"
            ))
        };
        assert_eq!(stored("brute"), 10, "{kind:?}");
        assert_eq!(stored("scan"), 30, "{kind:?}");
        assert_eq!(stored("quiet"), 5, "{kind:?}");
        let fired = env.rows("SELECT rule FROM alerts ORDER BY rule");
        let fired: Vec<&str> = fired.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(fired, ["brute", "scan"], "{kind:?}: the newest key fires");

        let (code, out, err) = env.run(
            "siemtrigger",
            &[
                "--explain-rule",
                "brute",
                "--range",
                "20260101000000-20260102000000",
            ],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            out.contains(
                "state cap: max_keys = 10; dropped over it (oldest first): 91 windows, 0 events"
            ),
            "{kind:?}: {out}"
        );

        // A cap lowered later applies to the stored windows (on the next run with events).
        env.config(&format!(
            "[section.t]\ntimezone = \"UTC\"\n\n{}",
            rules.replace("max_keys = 30", "max_keys = 4")
        ));
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:03:00 h app[1]: fail 198.51.100.1 port 1\n",
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            err.contains("rule scan over table t dropped 27 windows"),
            "{kind:?}: {err}"
        );
        assert_eq!(stored("scan"), 4, "{kind:?}");

        env.config(&format!(
            "[section.t]\ntimezone = \"UTC\"\n\n{}",
            rules.replace("max_keys = 30", "max_keys = 0")
        ));
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(
            err.contains("rules.max_keys") && err.contains("at least 1"),
            "{kind:?}: {err}"
        );
    }
}
