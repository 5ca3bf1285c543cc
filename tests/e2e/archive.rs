//! Archives of pruned rows (issue 15): `siemparse --prune --archive DIR`
//! writes what it deletes, `siemparse --restore FILE` loads it back with
//! every column and new ids, without duplicates; a prune killed half-way
//! loses no row; a broken archive is refused with its file and line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use siemstress_tests::{Env, Kind, kinds};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Lines `days` ago: decoded (user, address, port), RFC 3164, with
/// structured data in `extra`, and one line many times (rows equal in
/// every column but id).
fn old_lines(days: i64, n: usize) -> String {
    let base = now() - days * DAY;
    let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
    let mut out = String::new();
    for i in 0..n {
        let t = at(base + i as i64).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let line = match i % 4 {
            0 => format!(
                "<38>1 {t} h1 sshd 7 - - Failed password for u{i} from 10.0.{}.{} port {} ssh2 d{days}-{i}\n",
                i % 7,
                i % 200,
                1000 + i
            ),
            1 => format!(
                "{} h3 sshd[{i}]: Accepted publickey for b\u{e9}b from 192.0.2.{} port 5{i} ssh2 d{days}-{i}\n",
                at(base + i as i64).format("%b %e %H:%M:%S"),
                i % 250
            ),
            2 => format!(
                "<86>1 {t} h2 sudo - - [meta k=\"v{i}\"] alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls d{days}-{i}\n"
            ),
            _ => format!(
                "<38>1 {} h1 sshd 7 - - twice d{days}\n",
                at(base).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        out.push_str(&line);
    }
    out
}

/// Every column but `id` of the rows of `table` matching `cond`, one
/// string per row, sorted: equal lists are equal multisets of rows.
fn rows_without_id(env: &Env, table: &str, cond: &str) -> Vec<String> {
    let cols = "ts, received, host, process, pid, facility, severity, user, source_host, \
                source_port, dest_host, dest_port, protocol, message, raw, parsed, source, extra";
    let mut v: Vec<String> = env
        .rows(&format!("SELECT {cols} FROM {table} WHERE {cond}"))
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| c.map_or("\u{0}NULL".to_owned(), |s| s))
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect();
    v.sort();
    v
}

fn siemparse(env: &Env, args: &[&str]) -> String {
    let (code, out, err) = env.run("siemparse", args, b"");
    assert_eq!(code, 0, "siemparse {args:?}: {out}{err}");
    out
}

fn archive_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(dir).unwrap() {
        let t = t.unwrap().path();
        if t.is_dir() {
            for f in std::fs::read_dir(&t).unwrap() {
                v.push(f.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

fn restore(env: &Env, files: &[PathBuf], extra: &[&str]) -> String {
    let mut args = vec!["--restore"];
    let names: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    args.extend(names);
    args.extend(extra);
    siemparse(env, &args)
}

fn grep_count(env: &Env, section: &str, pattern: &str, mode: &str) -> String {
    let mut c = env.cmd("siemquery");
    c.env("SIEMSTRESS_GREP_INDEX", mode).args([
        "-s", section, "--last", "1000d", "--grep", pattern, "--count",
    ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn archive_written_and_restored() {
    for kind in kinds() {
        let env = Env::new(kind);
        let input: String = [40, 20, 1].iter().map(|d| old_lines(*d, 400)).collect();
        env.ingest(&["-s", "auth", "-q"], input.as_bytes());
        env.ingest(&["-s", "auth", "--index", "-q"], b"");
        let cutoff_ms = (now() - 10 * DAY) * 1000;
        let old = format!("ts < {cutoff_ms}");
        let before = rows_without_id(&env, "auth", &old);
        assert_eq!(before.len(), 800, "{kind:?}");
        // Rows equal in every column but id are in the data.
        assert!(before.windows(2).any(|w| w[0] == w[1]), "{kind:?}");
        let max_id = env.scalar("SELECT MAX(id) FROM auth");

        env.config("[retention]\ndefault = \"10d\"\n");
        let dir = env.path().join("arch");
        let out = siemparse(&env, &["--prune", "--archive", dir.to_str().unwrap()]);
        assert!(out.contains("table auth: 800 rows"), "{kind:?}: {out}");
        assert!(out.contains("archive: 800 rows in "), "{kind:?}: {out}");
        assert_eq!(
            env.scalar(&format!("SELECT COUNT(*) FROM auth WHERE {old}")),
            0
        );
        let files = archive_files(&dir);
        // One file per table, day and run; private to the owner.
        assert!(files.len() >= 2, "{kind:?}: {files:?}");
        use std::os::unix::fs::PermissionsExt;
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(name.ends_with(".ndjson.gz"), "{name}");
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{kind:?}: {name}");
        }
        for d in [dir.clone(), dir.join("auth")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{kind:?}: {}", d.display());
        }

        // Restored into the table they came from: the same rows, new ids.
        env.config("");
        let out = restore(&env, &files, &[]);
        assert!(
            out.contains("table auth: 800 rows restored (new ids), 0 already there"),
            "{kind:?}: {out}"
        );
        assert_eq!(rows_without_id(&env, "auth", &old), before, "{kind:?}");
        assert_eq!(
            env.scalar(&format!("SELECT MIN(id) FROM auth WHERE {old}")),
            max_id + 1,
            "{kind:?}: new ids after the highest"
        );
        // Again: nothing is stored twice.
        let out = restore(&env, &files, &[]);
        assert!(
            out.contains("table auth: 0 rows restored (new ids), 800 already there"),
            "{kind:?}: {out}"
        );
        assert_eq!(rows_without_id(&env, "auth", &old), before, "{kind:?}");
        // The --grep index has the restored rows.
        for pattern in ["d40-1", "twice d20", "u12 from"] {
            let indexed = grep_count(&env, "auth", pattern, "always");
            assert_eq!(
                indexed,
                grep_count(&env, "auth", pattern, "never"),
                "{kind:?}"
            );
            assert_ne!(indexed, "0", "{kind:?}: {pattern}");
        }

        // Into another section's table (made on the way).
        let out = restore(&env, &files, &["-s", "back"]);
        assert!(
            out.contains("table back: 800 rows restored"),
            "{kind:?}: {out}"
        );
        assert_eq!(rows_without_id(&env, "back", "1 = 1"), before, "{kind:?}");
        assert_eq!(
            grep_count(&env, "back", "d20-", "always"),
            "300",
            "{kind:?}"
        );
    }
}

/// `kill -9` of a prune that archives, at some point of its batches: no
/// row is lost. The next prune repairs the killed run's file and goes on;
/// every archive restored together gives exactly the rows pruned.
#[test]
fn killed_prune_archive_loses_no_row() {
    for kind in kinds() {
        let env = Env::new(kind);
        let input: String = [30, 29].iter().map(|d| old_lines(*d, 10_000)).collect();
        env.ingest(&["-s", "t", "-q"], input.as_bytes());
        env.ingest(&["-s", "t", "-q"], old_lines(0, 10).as_bytes());
        let cutoff_ms = (now() - 10 * DAY) * 1000;
        let old = format!("ts < {cutoff_ms}");
        let before = rows_without_id(&env, "t", &old);
        assert_eq!(before.len(), 20_000);

        env.config("[retention]\ndefault = \"10d\"\n");
        let dir = env.path().join("arch");
        let mut child = env
            .cmd("siemparse")
            .args(["--prune", "--archive", dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed once a few batches are archived (and some deleted).
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = env.scalar(&format!("SELECT COUNT(*) FROM t WHERE {old}"));
            if left < 20_000 - 3_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?}: the prune did not start"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{kind:?}: prune ended early"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let parts: Vec<PathBuf> = archive_files(&dir)
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".part"))
            .collect();
        assert!(!parts.is_empty(), "{kind:?}: killed before its run ended");
        let left = env.scalar(&format!("SELECT COUNT(*) FROM t WHERE {old}"));
        assert!(left > 0, "{kind:?}: killed before the end");

        // The next prune repairs the killed run's files and finishes.
        let out = siemparse(&env, &["--prune", "--archive", dir.to_str().unwrap()]);
        assert!(out.contains("archive: repaired "), "{kind:?}: {out}");
        assert_eq!(
            env.scalar(&format!("SELECT COUNT(*) FROM t WHERE {old}")),
            0
        );
        let files = archive_files(&dir);
        assert!(
            files
                .iter()
                .all(|f| !f.to_string_lossy().ends_with(".part"))
        );

        env.config("");
        restore(&env, &files, &["-s", "restored"]);
        assert_eq!(
            rows_without_id(&env, "restored", "1 = 1"),
            before,
            "{kind:?}: every pruned row is archived exactly once"
        );
    }
}

/// A truncated gzip, or a line that is not an archived row: exit 2 with
/// the file and line, and nothing stored.
#[test]
fn broken_archive_is_refused() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "a", "-q"], old_lines(30, 200).as_bytes());
        env.ingest(&["-s", "a", "-q"], old_lines(0, 5).as_bytes());
        env.config("[retention]\ndefault = \"10d\"\n");
        let dir = env.path().join("arch");
        siemparse(&env, &["--prune", "--archive", dir.to_str().unwrap()]);
        env.config("");
        let files = archive_files(&dir);
        let good = files[0].clone();
        let data = std::fs::read(&good).unwrap();
        let rows_before = env.scalar("SELECT COUNT(*) FROM a");

        let cut = env.path().join("cut.ndjson.gz");
        std::fs::write(&cut, &data[..data.len() - 20]).unwrap();
        let bad = env.path().join("bad.ndjson");
        let mut text = String::new();
        siemstress_common::archive::read_file(&good, |r| {
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
            Ok(())
        })
        .unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, r#"{"table": "a", "id": "seven"}"#);
        std::fs::write(&bad, lines.join("\n")).unwrap();

        for (file, expect) in [
            (&cut, format!("{}:", cut.display())),
            (&cut, "the archive is truncated or corrupt".to_owned()),
            (&bad, format!("{}:3: not an archived row", bad.display())),
        ] {
            // The good file first: nothing of it is stored either.
            let (code, _, err) = env.run(
                "siemparse",
                &["--restore", good.to_str().unwrap(), file.to_str().unwrap()],
                b"",
            );
            assert_eq!(code, 2, "{kind:?}: {err}");
            assert!(err.contains(&expect), "{kind:?}: {err}");
            assert_eq!(
                env.scalar("SELECT COUNT(*) FROM a"),
                rows_before,
                "{kind:?}"
            );
        }
        let (code, _, err) = env.run("siemparse", &["--restore", good.to_str().unwrap()], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        if kind == Kind::Sqlite {
            let err = env
                .run("siemparse", &["--restore", "/nonexistent.gz"], b"")
                .2;
            assert!(err.contains("/nonexistent.gz: "), "{err}");
        }
    }
}

/// `--restore` rides out a database outage as ingest does: the connection
/// is cut right after a COMMIT reached the server and before its answer
/// came back; the restore says so, waits, goes on once the database is
/// back, and stores every archived row once.
#[test]
fn restore_rides_out_an_outage() {
    use siemstress_tests::proxy::{Proxy, server_of, via};
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    // 4998 lines: the newest (kept by the prune) is not one of the equal
    // rows, which a restore would count as already there.
    env.ingest(&["-s", "auth", "-q"], old_lines(40, 4_998).as_bytes());
    let all = rows_without_id(&env, "auth", "1 = 1");
    env.config("[section.auth]\nretention = \"10d\"\n");
    let dir = env.path().join("archive");
    siemparse(&env, &["--prune", "--archive", dir.to_str().unwrap()]);
    assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), 1);
    let files = archive_files(&dir);

    let proxy = Proxy::start(&server_of(&env.url));
    let url = via(&env.url, &format!("127.0.0.1:{}", proxy.port));
    proxy.cut_after_commit();
    let child = spawn_restore(env.cmd_url("siemparse", &url), &files);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.cut_done() {
        assert!(
            Instant::now() < deadline,
            "no COMMIT went through the proxy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    proxy.restore();
    let out = child.wait_with_output().expect("siemparse --restore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "siemparse --restore: {err}");
    assert!(err.contains("database unavailable"), "{err}");
    assert!(err.contains("available again"), "{err}");
    assert_eq!(
        rows_without_id(&env, "auth", "1 = 1"),
        all,
        "every row once"
    );
}

/// SIGTERM during a long restore stops it between chunks with exit 2 and a
/// message (the restore catches the signal to end an outage's wait, so it
/// must also act on it when the database is up); the rows stored stay, and
/// the same restore run again stores the rest, each row once. SQLite only:
/// the stop is the same code on both backends, and a MariaDB restore of
/// this size is slow in a debug build.
/// An archive of `n` rows of table auth from a day ago, each row distinct.
fn big_archive(env: &Env, n: i64) -> PathBuf {
    let file = env.path().join("big.ndjson");
    let day_ago = (now() - DAY) * 1000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"table\":\"auth\",\"id\":{},\"ts\":{},\"received\":{},\"host\":\"h1\",\
             \"process\":\"sshd\",\"pid\":7,\"facility\":null,\"severity\":null,\"user\":null,\
             \"source_host\":null,\"source_port\":null,\"dest_host\":null,\"dest_port\":null,\
             \"protocol\":null,\"message\":\"m{i}\",\"raw\":\"r{i}\",\"parsed\":1,\
             \"source\":\"stdin\",\"extra\":null}}\n",
            i + 1,
            day_ago + i,
            day_ago + i
        ));
    }
    std::fs::write(&file, text).unwrap();
    file
}

/// Starts `cmd` (a siemparse) restoring `files`, its output piped.
fn spawn_restore(
    mut cmd: std::process::Command,
    files: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
) -> std::process::Child {
    cmd.arg("--restore")
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("siemparse --restore")
}

/// Waits until table auth holds a row (a restore has stored a chunk).
fn first_chunk_stored(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let there = match env.kind {
            Kind::Sqlite => {
                env.path().join("test.db").exists()
                    && !env
                        .rows("SELECT name FROM sqlite_master WHERE name = 'auth'")
                        .is_empty()
            }
            Kind::Mysql => !env.rows("SHOW TABLES LIKE 'auth'").is_empty(),
        };
        if there && env.scalar("SELECT COUNT(*) FROM auth") > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no chunk stored in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restore_stops_on_sigterm_and_a_rerun_finishes() {
    const N: i64 = 60_000;
    let env = Env::new(Kind::Sqlite);
    let file = big_archive(&env, N);
    let child = spawn_restore(env.cmd("siemparse"), [&file]);
    // Once a chunk is stored (the whole file is checked first).
    first_chunk_stored(&env);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("siemparse --restore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stopped with exit 2: {err}");
    assert!(err.contains("restore stopped by a signal"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped at the next chunk, not at the end: {:?}",
        started.elapsed()
    );
    let stored = env.scalar("SELECT COUNT(*) FROM auth");
    assert!(stored < N, "stopped before the end: {stored} rows");
    let out = siemparse(&env, &["--restore", file.to_str().unwrap()]);
    assert!(
        out.contains(&format!("{} rows restored", N - stored)),
        "{out}"
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), N);
    assert_eq!(
        env.scalar("SELECT COUNT(DISTINCT raw) FROM auth"),
        N,
        "each row once"
    );
}

/// Two restores of one archive at once: the second waits for the first
/// (the restore lease), then finds every row there. Each compared with the
/// table before the other's rows were committed, so rows both read were
/// stored twice (admin pass D11: 18,000 of 143,055 rows).
#[test]
fn two_restores_at_once_store_each_row_once() {
    const N: i64 = 60_000;
    for kind in kinds() {
        let env = Env::new(kind);
        let file = big_archive(&env, N);
        let spawn = || spawn_restore(env.cmd("siemparse"), [&file]);
        let first = spawn();
        first_chunk_stored(&env);
        let second = spawn();
        let outputs = [first, second].map(|c| c.wait_with_output().unwrap());
        for o in &outputs {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(0), "{kind:?}: {err}");
        }
        let second = String::from_utf8_lossy(&outputs[1].stdout);
        assert!(
            second.contains("another restore is running (") && second.contains("waiting"),
            "{kind:?}: {second}"
        );
        assert!(
            second.contains(&format!("0 rows restored (new ids), {N} already there")),
            "{kind:?}: {second}"
        );
        assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), N, "{kind:?}");
        assert_eq!(
            env.scalar("SELECT COUNT(DISTINCT raw) FROM auth"),
            N,
            "{kind:?}"
        );
    }
}
