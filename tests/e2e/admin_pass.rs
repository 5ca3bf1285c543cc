//! Defects found by the admin pass over issues 10, 13 and 15 (hostile rule
//! files and archives, run through the real binaries on both backends).

use siemstress_tests::{Env, Kind, kinds};

/// A Sigma rule that translates (the control next to the hostile files).
const GOOD: &str = "title: Root Login\nname: root_login\nlogsource: {product: linux, service: sshd}\n\
                    detection:\n  sel:\n    User: root\n  condition: sel\n";

/// Nine levels of ten aliases: 10^10 nodes once yaml-rust2 copies them.
fn yaml_bomb() -> String {
    let mut s = String::from("title: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s + "logsource: {product: linux}\ndetection:\n  sel: {User: root}\n  condition: sel\n"
}

#[test]
fn hostile_sigma_files_are_refused_without_a_crash() {
    let deep_yaml = format!("{}x\n", "- ".repeat(100_000));
    let deep_condition = format!(
        "title: parens\nlogsource: {{product: linux}}\ndetection:\n  sel: {{User: root}}\n  \
         condition: {}sel{}\n",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let nots = format!(
        "title: nots\nlogsource: {{product: linux}}\ndetection:\n  sel: {{User: root}}\n  \
         condition: {}sel\n",
        "not ".repeat(100_000)
    );
    // A 200 KB identifier in a condition, a 300 KB title.
    let ident = format!(
        "title: ident\nlogsource: {{product: linux}}\ndetection:\n  sel: {{User: root}}\n  \
         condition: sel and {}\n",
        "x".repeat(200_000)
    );
    let title = format!(
        "title: {}\nlogsource: {{product: linux}}\ndetection:\n  sel: {{User: root}}\n  \
         condition: sel | count() > 5\n",
        "t".repeat(300_000)
    );
    for kind in kinds() {
        let env = Env::new(kind);
        let dir = env.path().join("sigma");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("good.yml", GOOD.to_owned()),
            ("bomb.yml", yaml_bomb()),
            ("deep.yml", deep_yaml.clone()),
            ("parens.yml", deep_condition.clone()),
            ("nots.yml", nots.clone()),
            ("ident.yml", ident.clone()),
            ("title.yml", title.clone()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        env.config("[section.auth]\ntimezone = \"UTC\"\n\n[rules]\npaths = [\"sigma/*.yml\"]\n");
        let (code, out, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 0, "{kind:?}: {out}{err}");
        assert!(out.contains("root_login"), "{kind:?}: {out}");
        for (file, why) in [
            ("bomb.yml", "more than 50000 YAML nodes"),
            ("deep.yml", "nested deeper than 64 levels"),
            ("parens.yml", "nested deeper than 64 parentheses and nots"),
            ("nots.yml", "nested deeper than 64 parentheses and nots"),
        ] {
            assert!(
                err.lines().any(|l| l.contains(file) && l.contains(why)),
                "{kind:?} {file}: {err}"
            );
        }
        assert!(
            err.contains("6 rules not loaded, from 6 files"),
            "{kind:?}: {err}"
        );
        // A refusal quotes the start of a 200 KB condition, identifier or
        // title, not all of it.
        let longest = err.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 2_000, "{kind:?}: a line of {longest} bytes");
        for (file, why) in [("ident.yml", "no search identifier"), ("title.yml", "pipe")] {
            assert!(
                err.lines().any(|l| l.contains(file) && l.contains(why)),
                "{kind:?} {file}: {err}"
            );
        }
        let (code, _, err) = env.run(
            "siemtrigger",
            &["--import-sigma", dir.join("bomb.yml").to_str().unwrap()],
            b"",
        );
        assert_eq!(code, 1, "{kind:?}: {err}");
        // The same limit in a TOML rule's `where`.
        let deep_where = format!("{}user exists{}", "(".repeat(100_000), ")".repeat(100_000));
        env.config(&format!(
            "[section.auth]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"w\"\ntype = \"single\"\n\
             match = {{ where = \"{deep_where}\" }}\nkey = \"k\"\nmessage = \"m\"\n"
        ));
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(err.contains("nested deeper than 100"), "{kind:?}: {err}");
    }
}

/// An archived row (`siemparse --prune --archive` writes these), as JSON.
fn archived(id: i64, ts: i64) -> serde_json::Value {
    serde_json::json!({
        "table": "auth", "id": id, "ts": ts, "received": ts, "host": "h1",
        "process": "sshd", "pid": 42, "facility": "auth", "severity": "info",
        "user": null, "source_host": null, "source_port": null, "dest_host": null,
        "dest_port": null, "protocol": null, "message": format!("msg {id}"),
        "raw": format!("Dec  6 10:00:00 h1 sshd[42]: msg {id}"), "parsed": 1,
        "source": "stdin", "extra": null
    })
}

/// True if `s` holds a character that drives a terminal.
fn raw_controls(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

#[test]
fn hostile_archives_are_refused_naming_file_and_line() {
    for kind in kinds() {
        let env = Env::new(kind);
        let mut unknown_key = archived(1, 1_733_500_000_000);
        unknown_key["\u{1b}[31mEVIL\u{1b}[0m"] = 1.into();
        let mut far_ts = archived(2, i64::MAX);
        far_ts["received"] = i64::MIN.into();
        for (file, row, why) in [
            (
                "key.ndjson",
                unknown_key,
                r"unknown field `\x1b[31mEVIL\x1b[0m`",
            ),
            ("ts.ndjson", far_ts, "ts 9223372036854775807 is not a time"),
        ] {
            let ok = archived(3, 1_733_500_000_000);
            std::fs::write(env.path().join(file), format!("{ok}\n{row}\n")).unwrap();
            let (code, out, err) = env.run("siemparse", &["--restore", file], b"");
            assert_eq!(code, 2, "{kind:?} {file}: {out}{err}");
            assert!(!raw_controls(&err), "{kind:?} {file}: {err:?}");
            assert!(
                err.contains(&format!("{file}:2: ")) && err.contains(why),
                "{kind:?}: {err}"
            );
        }
        // Nothing was stored (every file is checked before any row goes in).
        let (code, _, err) = env.run(
            "siemquery",
            &["-s", "auth", "--last", "1000d", "--count"],
            b"",
        );
        assert_ne!(code, 0, "{kind:?}: the table should not exist: {err}");
    }
}

#[test]
fn an_archived_row_over_max_allowed_packet_is_refused_not_cut() {
    for kind in kinds() {
        let env = Env::new(kind);
        // A row 1 MiB over the server's max_allowed_packet (SQLite: the
        // size of MariaDB's default, stored whole).
        let packet = match kind {
            Kind::Mysql => env.scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)") as usize,
            Kind::Sqlite => 16 << 20,
        };
        let len = packet + (1 << 20);
        if len > 100 << 20 {
            eprintln!("max_allowed_packet {packet}: no archive line can exceed it; skipped");
            continue;
        }
        let mut big = archived(2, 1_733_500_000_000);
        big["raw"] = "x".repeat(len).into();
        let ok = archived(1, 1_733_500_000_000);
        std::fs::write(env.path().join("big.ndjson"), format!("{ok}\n{big}\n")).unwrap();
        let (code, out, err) = env.run("siemparse", &["--restore", "big.ndjson"], b"");
        match kind {
            Kind::Sqlite => {
                assert_eq!(code, 0, "{out}{err}");
                let stored = env.scalar("SELECT max(length(raw)) FROM auth");
                assert_eq!(stored as usize, len);
                // Restored again: both rows found, nothing stored twice.
                let (code, out, err) = env.run("siemparse", &["--restore", "big.ndjson"], b"");
                assert_eq!(code, 0, "{out}{err}");
                assert!(
                    out.contains("0 rows restored (new ids), 2 already there"),
                    "{out}"
                );
            }
            Kind::Mysql => {
                // Before: stored cut to fit, said nowhere, and stored again
                // by every later restore (the cut row never matched).
                assert_eq!(code, 2, "{out}{err}");
                assert!(!raw_controls(&err), "{err:?}");
                for part in [
                    "big.ndjson:2: row 2 (2024-12-06T15:46:40",
                    &format!("max_allowed_packet of {packet} bytes"),
                    "raise max_allowed_packet to at least",
                ] {
                    assert!(err.contains(part), "{part:?} not in {err}");
                }
                // Nothing was stored.
                let (code, _, err) = env.run(
                    "siemquery",
                    &["-s", "auth", "--last", "1000d", "--count"],
                    b"",
                );
                assert_ne!(code, 0, "the table should not exist: {err}");
            }
        }
    }
}

#[test]
fn an_endless_archive_line_is_refused_in_bounded_memory() {
    use std::os::unix::process::CommandExt;
    for kind in kinds() {
        let env = Env::new(kind);
        // 2 GiB of NUL bytes and no line feed (sparse: no disk used); a
        // gzip bomb decompresses to the same.
        let f = std::fs::File::create(env.path().join("endless.ndjson")).unwrap();
        f.set_len(2 << 30).unwrap();
        let mut cmd = env.cmd("siemparse");
        cmd.args(["--restore", "endless.ndjson"]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1_500_000_000,
                    rlim_max: 1_500_000_000,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{kind:?}: {err}");
        assert!(
            err.contains("endless.ndjson:1: not an archived row: the line is longer than 128 MiB"),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn a_full_archive_disk_leaves_no_empty_archive_file() {
    for kind in kinds() {
        let env = Env::new(kind);
        let Some(_fs) = crate::hardening::SmallFs::mount(&env.path().join("small"), "16k") else {
            eprintln!("a_full_archive_disk_leaves_no_empty_archive_file: cannot mount; skipped");
            return;
        };
        // Rows of ten old days whose first batch compresses to more than 16k.
        let mut x: u64 = 1;
        let mut lines = String::new();
        for i in 0..2_000 {
            let noise: String = (0..100)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    format!("{:x}", x >> 60)
                })
                .collect();
            let day = 1 + i / 200;
            lines.push_str(&format!(
                "<38>1 2025-01-{day:02}T00:00:00Z h app 1 - - {i} {noise}\n"
            ));
        }
        env.config("[section.auth]\ntimezone = \"UTC\"\nretention = \"1d\"\n");
        env.ingest(&["-s", "auth"], lines.as_bytes());
        let (code, out, err) = env.run("siemparse", &["--prune", "--archive", "small/arch"], b"");
        assert_eq!(code, 2, "{kind:?}: {out}{err}");
        assert!(err.contains("No space left on device"), "{kind:?}: {err}");
        let files: Vec<_> = std::fs::read_dir(env.path().join("small/arch/auth"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len > 0, "{kind:?}: {f:?} is empty");
        }
        if !files.is_empty() {
            let mut args = vec!["--restore".to_owned()];
            args.extend(files.iter().map(|f| f.display().to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out, err) = env.run("siemparse", &args, b"");
            assert_eq!(code, 0, "{kind:?}: {out}{err}");
        }
    }
}

/// An I/O error's cause is printed once (it was both in the message and
/// in anyhow's chain: "No such file or directory (os error 2): No such
/// file or directory (os error 2)").
#[test]
fn an_os_error_is_printed_once() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let missing = env.path().join("missing");
    let once = |what: &str, out: std::process::Output, cause: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.matches(cause).count(), 1, "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
    };
    // The config file (-c) is not there.
    let _ = std::fs::remove_file(env.path().join("siemstress.toml"));
    let out = env
        .cmd("siemparse")
        .args(["-s", "t"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    once("config", out, "No such file or directory");
    env.config("");
    let archive = missing.join("x.ndjson.gz");
    let out = env
        .cmd("siemparse")
        .arg("--restore")
        .arg(&archive)
        .output()
        .unwrap();
    once("--restore", out, "No such file or directory");
    let db = format!("sqlite://{}", missing.join("x.db").display());
    let out = env
        .cmd_url("siemparse", &db)
        .args(["-s", "t"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    once("--db", out, "no such directory");
}

/// A bad value in the config names the config file and the key's line,
/// whether it is checked while loading (a retention) or later (an action).
#[test]
fn config_value_errors_name_the_file_and_line() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let config = env.config(
        "[section.auth]\nretention = \"90 dayz\"\n\n[actions.page]\ntype = \"mail\"\n\
         smtp = \"smtp://127.0.0.1:25\"\nto = \"root@example.org\"\n",
    );
    let (code, _, err) = env.run("siemparse", &["--prune"], b"");
    assert_eq!(code, 2, "{err}");
    let at = format!(
        "config {}: line 2: key section.auth.retention:",
        config.display()
    );
    assert!(err.contains(&at), "{err}");
    env.config(
        "[actions.page]\ntype = \"mail\"\nsmtp = \"smtp://127.0.0.1:25\"\nto = \"root@example.org\"\n",
    );
    let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 2, "{err}");
    let at = format!(
        "config {}: line 1: key actions.page.from:",
        config.display()
    );
    assert!(err.contains(&at), "{err}");
}

/// Every config value error names the key as TOML writes it and its line:
/// a route of `[listen]` (was "key listen" at no line), a quoted section
/// name (the dotted name was split at its dot), `[sigma]` (no line; and not
/// checked at all without a Sigma file), `[database] url` (no line), and
/// `[retention] archive = ""` (refused only by the first prune) (admin pass D2).
#[test]
fn config_errors_name_the_toml_key_and_line() {
    let env = Env::new(Kind::Sqlite);
    let cases: &[(&str, &str, &str)] = &[
        (
            "# routes\n\n[listen.program]\nsshd = \"bad name\"\n",
            "siemparse",
            ": line 4: key listen.program.sshd: invalid name \"bad name\"",
        ),
        (
            "[section.x]\n\n[section.\"a.b\"]\ntimezone = \"UTC\"\n",
            "siemparse",
            ": line 3: key section.\"a.b\": invalid name \"a.b\"",
        ),
        (
            "[section.x]\ntable = \"alerts\"\n",
            "siemtrigger",
            ": line 2: key section.x.table: name \"alerts\" cannot be used",
        ),
        (
            "[section.auth]\n\n[sigma.fields]\nUser = \"nosuchcol\"\n",
            "siemtrigger",
            ", line 4: key `sigma.fields.User`: \"nosuchcol\" is not a column",
        ),
        (
            "\n[database]\nurl = \"postgres://u:secret@db\"\n",
            "siemparse",
            ": line 3: key database.url: unsupported database URL \"postgres://u:***@db\"",
        ),
        (
            "[retention]\ndefault = \"90d\"\narchive = \"\"\n",
            "siemtrigger",
            ": line 3: key retention.archive: an empty path",
        ),
        (
            "[trigger]\n\nallowed_lateness = \"x\"\n",
            "siemtrigger",
            ": line 3: key trigger.allowed_lateness: invalid duration",
        ),
        (
            "[rules]\nmax_keys = 0\n",
            "siemtrigger",
            ", line 2: key `rules.max_keys`: must be at least 1",
        ),
        (
            "[rules]\npaths = [\"nonexist/*.toml\"]\n",
            "siemtrigger",
            "does not exist (the directory of \"nonexist/*.toml\")",
        ),
    ];
    for (text, tool, want) in cases {
        let config = env.config(text);
        let args: &[&str] = match *tool {
            "siemparse" => &["-s", "auth"],
            _ => &["--check"],
        };
        // Only -c: the test's own --db would hide [database] url.
        let out = std::process::Command::new(siemstress_tests::bin(tool))
            .arg("-c")
            .arg(&config)
            .args(args)
            .current_dir(env.path())
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        let name = config.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains(want), "{text}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
    // A glob over a directory that is there but empty is fine.
    std::fs::create_dir(env.path().join("empty")).unwrap();
    env.config("[rules]\npaths = [\"empty/*.toml\"]\n");
    let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 0, "{err}");
}

/// Config, rule and decoder files are read only if they are regular files
/// of at most 16 MiB: a FIFO among them hung the tools in open() (SIGTERM
/// did not end them, nor a SIGHUP reload), `/dev/zero` was read until
/// memory ran out.
#[test]
fn only_regular_files_are_read_as_config_rules_or_decoders() {
    use crate::defects::run_with_timeout;
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let fifo = |p: &std::path::Path| {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{p:?}");
    };
    for dir in ["r", "d"] {
        std::fs::create_dir_all(env.path().join(dir)).unwrap();
    }
    env.config(
        "[rules]\npaths = [\"r/*.yml\", \"r/*.toml\"]\n[decoders]\npaths = [\"d/*.toml\"]\n",
    );
    let expect = |tool: &str, args: &[&str], file: &str, why: &str| {
        let (code, err) = run_with_timeout(&env, tool, args, 60)
            .unwrap_or_else(|| panic!("{tool} {args:?} still runs after 60 s ({file})"));
        assert_eq!(code, 2, "{tool} {args:?}: {err}");
        assert!(
            err.contains(file) && err.contains(why),
            "{tool} {args:?}: {err}"
        );
    };
    fifo(&env.path().join("r/f.yml"));
    expect("siemtrigger", &["--check"], "f.yml", "a FIFO");
    std::fs::remove_file(env.path().join("r/f.yml")).unwrap();
    fifo(&env.path().join("r/f.toml"));
    expect("siemtrigger", &["--check"], "f.toml", "a FIFO");
    std::fs::remove_file(env.path().join("r/f.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.path().join("r/z.yml")).unwrap();
    expect("siemtrigger", &["--check"], "z.yml", "a device");
    std::fs::remove_file(env.path().join("r/z.yml")).unwrap();
    let big = format!("# {}\n", "x".repeat(17 << 20));
    std::fs::write(env.path().join("r/big.toml"), big).unwrap();
    expect("siemtrigger", &["--check"], "big.toml", "over 16 MiB");
    std::fs::remove_file(env.path().join("r/big.toml")).unwrap();
    fifo(&env.path().join("d/f.toml"));
    expect("siemparse", &["--check-decoders"], "f.toml", "a FIFO");
    std::fs::remove_file(env.path().join("d/f.toml")).unwrap();
    // `-c /dev/null` is no config; another device is refused.
    let (code, _, err) = env.run("siemparse", &["--check-decoders"], b"");
    assert_eq!(code, 0, "{err}");
    let out = std::process::Command::new(siemstress_tests::bin("siemparse"))
        .args(["-c", "/dev/null", "--check-decoders"])
        .output()
        .unwrap();
    assert!(out.status.success(), "-c /dev/null: {out:?}");
    // The config file itself.
    let config = env.path().join("siemstress.toml");
    std::fs::remove_file(&config).unwrap();
    fifo(&config);
    expect("siemparse", &["-s", "t"], "siemstress.toml", "a FIFO");
}

/// The write end of a pipe whose read end is closed: writing to it fails
/// with EPIPE, as when the reader of `| head` has exited.
fn pipe_without_reader() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is a descriptor of our own that nothing else owns.
    unsafe { std::fs::File::from_raw_fd(fds[1]) }
}

/// A reader that has gone, on stdout or on stderr, is not a crash (a panic
/// exits 101): `siemtrigger --check | true`, `2>&1 | head -1`, a daemon
/// whose log collector restarted (admin pass D1).
#[test]
fn a_closed_stdout_or_stderr_is_not_a_crash() {
    let env = Env::new(Kind::Sqlite);
    env.config("");
    let run = |what: &str, tool: &str, args: &[&str], on_stdout: bool| {
        let mut cmd = env.cmd(tool);
        cmd.args(args).stdin(std::process::Stdio::null());
        if on_stdout {
            cmd.stdout(pipe_without_reader())
                .stderr(std::process::Stdio::piped());
        } else {
            cmd.stdout(std::process::Stdio::null())
                .stderr(pipe_without_reader());
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{what}: {err}");
        out.status.code()
    };
    // --check writes the rule list to stdout and its summary to stderr.
    assert_eq!(
        run("--check, stdout", "siemtrigger", &["--check"], true),
        Some(0)
    );
    assert_eq!(
        run("--check, stderr", "siemtrigger", &["--check"], false),
        Some(0)
    );
    // An error message to a closed stderr still gives the error's exit code.
    let code = run("bad flag value", "siemquery", &["--last", "5x"], false);
    assert_eq!(code, Some(2));
    let code = run("no table", "siemtrigger", &["--explain", "1"], false);
    assert!(matches!(code, Some(1 | 2)), "{code:?}");
    let code = run("decoders", "siemparse", &["--check-decoders"], false);
    assert_eq!(code, Some(0));
}

/// `--explain` reads stdin as ingest does: a line longer than 8 MiB is
/// explained as the pieces it would be stored as, in bounded memory (it was
/// read whole: a 100 MB line took 614 MB; admin pass D9).
#[test]
fn explain_cuts_an_overlong_line_as_ingest_does() {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let env = Env::new(Kind::Sqlite);
    let mut cmd = env.cmd("siemparse");
    cmd.arg("--explain")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256 << 20,
                rlim_max: 256 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'a'; 1 << 20];
        for _ in 0..36 {
            stdin.write_all(&block)?;
        }
        stdin.write_all(
            b"\nDec  7 09:00:00 host sshd[1]: Failed password for root from 203.0.113.5 port 22 ssh2\n",
        )
    });
    // Count the explained lines without holding all of the output.
    let mut stdout = child.stdout.take().unwrap();
    let (mut lines, mut tail, mut buf) = (0, Vec::new(), vec![0; 1 << 16]);
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        lines += buf[..n].windows(7).filter(|w| w == b"  line ").count();
        tail.extend_from_slice(&buf[..n]);
        let cut = tail.len().saturating_sub(4096);
        tail.drain(..cut);
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    writer.join().unwrap().unwrap();
    // 36 MiB in pieces of at most 8 MiB, then the sshd line (it was read
    // whole: 150 MB asked for, over the 256 MiB of address space).
    assert_eq!(lines, 6, "{err}");
    let tail = String::from_utf8_lossy(&tail);
    assert!(tail.contains("source_host  203.0.113.5"), "{tail}");
}

/// A file name is written by whoever can create files where the rules are
/// globbed or logs are followed: in messages its controls are escaped (a
/// rule file named `ESC]2;...BEL` retitled the admin's terminal; admin pass
/// D10).
#[test]
fn file_names_in_messages_are_escaped() {
    let env = Env::new(Kind::Sqlite);
    let evil = "evil\x1b]2;pwned\x07\u{202e}";
    let rules = env.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join(format!("{evil}.toml")), "[[rule]]\nname = 1\n").unwrap();
    env.config("[rules]\npaths = [\"rules/*.toml\"]\n");
    let shown = "evil\\x1b]2;pwned\\x07\\u{202e}";
    let check = |what: &str, out: std::process::Output, code: i32| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{what}: {err}");
        assert!(
            !raw_controls(&err) && !err.contains('\u{202e}'),
            "{what}: {err:?}"
        );
        assert!(err.contains(shown), "{what}: {err}");
    };
    let out = env.cmd("siemtrigger").arg("--check").output().unwrap();
    check("rule file", out, 2);
    // A line feed in a name cannot start a line of its own (admin pass A3).
    std::fs::remove_file(rules.join(format!("{evil}.toml"))).unwrap();
    let forged = "x\nsiemtrigger: 27 rules and 0 actions are valid\n";
    std::fs::write(rules.join(format!("{forged}.toml")), "[[rule]]\nname = 1\n").unwrap();
    let out = env.cmd("siemtrigger").arg("--check").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .all(|l| l.starts_with("siemtrigger: ") || l.starts_with("  ")),
        "{err}"
    );
    std::fs::remove_file(rules.join(format!("{forged}.toml"))).unwrap();
    env.config("");
    let out = env
        .cmd("siemparse")
        .args(["-s", "auth", "--once", "--follow"])
        .arg(env.path().join(evil))
        .output()
        .unwrap();
    // A followed file that is not there yet is waited for.
    check("--follow", out, 0);
    let out = env
        .cmd("siemparse")
        .arg("--restore")
        .arg(env.path().join(format!("{evil}.ndjson")))
        .output()
        .unwrap();
    check("--restore", out, 2);
}

/// `--import-sigma DIR` names each rule's file in a TOML comment: a line
/// feed in the file name ended the comment, and the rest of the name was
/// rules of its author's choosing in the admin's rule file (admin pass A2).
#[test]
fn import_sigma_escapes_file_names_in_its_toml() {
    let env = Env::new(Kind::Sqlite);
    env.config("");
    let dir = env.path().join("sigma");
    std::fs::create_dir(&dir).unwrap();
    let name = "x\n[[rule]]\nname = \"injected\"\ntype = \"single\"\ntable = \"auth\"\n\
                message = \"{raw}\"\n[rule.match]\nwhere = \"raw re '.'\"\n\x1b]2;t\x07#";
    std::fs::write(dir.join(format!("{name}.yml")), GOOD).unwrap();
    let out = env
        .cmd("siemtrigger")
        .arg("--import-sigma")
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!raw_controls(&text), "{text:?}");
    let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let rules = doc["rule"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["root_login"], "{text}");
}

/// A prune or a restore whose stdout's reader has gone finishes its work
/// and exits 0: the prune stopped after its first table with "Broken pipe"
/// (admin pass A1).
#[test]
fn prune_finishes_when_its_report_cannot_be_written() {
    let env = Env::new(Kind::Sqlite);
    env.config("[retention]\ndefault = \"30d\"\n[section.a]\n[section.b]\n");
    let old = "Jan  2 03:04:05 h sshd[1]: Failed password for root from 203.0.113.9 port 22 ssh2\n";
    for s in ["a", "b"] {
        env.ingest(&["-s", s, "-q", "--year", "2020"], old.repeat(3).as_bytes());
    }
    let out = env
        .cmd("siemparse")
        .arg("--prune")
        .stdout(pipe_without_reader())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "a reader that has gone is quiet: {err}");
    // A prune leaves each table's newest row (its ids go on from there).
    assert_eq!(env.scalar("SELECT COUNT(*) FROM a"), 1);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM b"),
        1,
        "the second table is pruned too"
    );
    // Any other error of the report (a full disk) is said once, and the
    // prune goes on all the same.
    for s in ["a", "b"] {
        env.ingest(&["-s", s, "-q", "--year", "2020"], old.repeat(3).as_bytes());
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .cmd("siemparse")
        .arg("--prune")
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warning = "warning: the report on stdout is incomplete: No space left on device";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM b"), 1, "{err}");
}

/// `--check` refuses actions that cannot run: an exec program that is not
/// an executable file, an empty program or file path (they passed, and
/// failed at every alert) (admin pass A5); `--list-rules --format json` is
/// JSON (the flag was ignored; A6).
#[test]
fn check_refuses_actions_that_cannot_run() {
    let env = Env::new(Kind::Sqlite);
    let rule = "[[rule]]\nname = \"r\"\ntype = \"single\"\ntable = \"auth\"\nmessage = \"m\"\n\
                actions = [\"a\"]\n[rule.match]\nwhere = \"raw re 'x'\"\n";
    for (action, want) in [
        (
            "type = \"exec\"\nprogram = \"/nonexistent/page\"",
            "program \"/nonexistent/page\"",
        ),
        (
            "type = \"exec\"\nprogram = \"no-such-program-here\"",
            "no executable file of that name in PATH",
        ),
        ("type = \"exec\"\nprogram = \"\"", "key actions.a.program"),
        ("type = \"file\"\npath = \"\"", "key actions.a.path"),
    ] {
        env.config(&format!("[actions.a]\n{action}\n\n{rule}"));
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 2, "{action}: {err}");
        assert!(err.contains(want), "{action}: {err}");
    }
    env.config(&format!(
        "[actions.a]\ntype = \"exec\"\nprogram = \"true\"\n\n{rule}"
    ));
    let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = env.run("siemtrigger", &["--list-rules", "--format", "json"], b"");
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(list[0]["name"], "r", "{out}");
    assert_eq!(list[0]["type"], "single", "{out}");
}

/// The HTML report shows stored text escaped for people, as the terminal
/// output does: a user name's ESC, BEL and RLO reached the top-users chart
/// raw (the RLO reversed the label the admin reads; `less report.html`
/// sent the ESC to the terminal; admin pass A8).
#[test]
fn report_escapes_controls_and_bidi_overrides() {
    let env = Env::new(Kind::Sqlite);
    env.config("[section.auth]\ntimezone = \"UTC\"\n");
    let line = "Dec  7 09:00:02 h3 sshd[1]: Failed password for \x1b]2;pwn\x07\u{202e}evil \
                from 203.0.113.7 port 22 ssh2\n";
    env.ingest(
        &["-s", "auth", "-q", "--year", "2026"],
        line.repeat(3).as_bytes(),
    );
    let report = env.path().join("r.html");
    let (code, _, err) = env.run(
        "siemquery",
        &[
            "--report",
            report.to_str().unwrap(),
            "--range",
            "2026-12-07/2026-12-08",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("\\x1b]2;pwn\\x07\\u{202e}evil"),
        "the user is shown"
    );
    assert!(!raw_controls(&html) && !html.contains('\u{202e}'));
}

/// siemquery's one-line usage errors keep clap's details: the flag that is
/// missing and the values a flag takes (only clap's first line was kept;
/// admin pass A9).
#[test]
fn siemquery_usage_errors_name_the_flag_and_its_values() {
    let env = Env::new(Kind::Sqlite);
    env.config("");
    for (args, want) in [
        (
            &["--diff"][..],
            "were not provided: --snapshot <NAME> (see --help)",
        ),
        (
            &["--color", "bogus"][..],
            "'--color <WHEN>' [possible values: auto, always, never]",
        ),
    ] {
        let (code, _, err) = env.run("siemquery", args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}
