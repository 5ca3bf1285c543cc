//! `siemparse --follow`: offsets, rotation (rename and copytruncate),
//! restarts, named pipes, and a SIGKILL crash loop.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use siemstress_tests::{Env, Kind, kinds};

fn line(n: usize) -> String {
    format!("Jun 14 15:16:01 combo app[7]: line {n}\n")
}

pub(crate) fn append(path: &Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = (from..to).map(line).collect();
    f.write_all(text.as_bytes()).unwrap();
}

fn follow_once(env: &Env, path: &Path) {
    env.ingest(
        &[
            "-s",
            "t",
            "-q",
            "--follow",
            path.to_str().unwrap(),
            "--once",
        ],
        b"",
    );
}

fn spawn_follow(env: &Env, path: &Path) -> Child {
    env.cmd("siemparse")
        .args(["-s", "t", "-q", "--follow", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn siemparse")
}

/// The line numbers stored, in id order.
pub(crate) fn stored(env: &Env) -> Vec<usize> {
    env.rows("SELECT message FROM t ORDER BY id")
        .into_iter()
        .map(|r| {
            r[0].as_deref()
                .unwrap()
                .trim_start_matches("line ")
                .parse()
                .unwrap()
        })
        .collect()
}

pub(crate) fn wait_for_rows(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = if table_exists(env) {
            env.scalar("SELECT COUNT(*) FROM t") as usize
        } else {
            0
        };
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {n} rows after 30 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn table_exists(env: &Env) -> bool {
    match env.kind {
        Kind::Sqlite => {
            env.path().join("test.db").exists()
                && env.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 't'") > 0
        }
        Kind::Mysql => {
            env.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 't'") > 0
        }
    }
}

fn stop(mut child: Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "siemparse exited with {status}");
}

#[test]
fn resumes_from_stored_offset() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 100);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"Jun 14 15:16:01 combo app[7]: li")
            .unwrap();
        follow_once(&env, &log);
        assert_eq!(
            stored(&env),
            (0..100).collect::<Vec<_>>(),
            "{kind:?}: the partial line waits"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"ne 100\n")
            .unwrap();
        append(&log, 101, 150);
        follow_once(&env, &log);
        follow_once(&env, &log);
        assert_eq!(stored(&env), (0..150).collect::<Vec<_>>(), "{kind:?}");
    }
}

#[test]
fn from_end_skips_existing_lines() {
    let env = Env::new(Kind::Sqlite);
    let log = env.path().join("app.log");
    append(&log, 0, 10);
    env.ingest(
        &[
            "-s",
            "t",
            "-q",
            "--follow",
            log.to_str().unwrap(),
            "--once",
            "--from-end",
        ],
        b"",
    );
    append(&log, 10, 12);
    follow_once(&env, &log);
    assert_eq!(stored(&env), [10, 11]);
}

#[test]
fn rename_and_copytruncate_rotation_while_running() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 50);
        let child = spawn_follow(&env, &log);
        wait_for_rows(&env, 50);
        append(&log, 50, 60);
        // logrotate's default: rename, then the daemon writes a new file.
        std::fs::rename(&log, env.path().join("app.log.1")).unwrap();
        append(&env.path().join("app.log.1"), 60, 70);
        append(&log, 70, 80);
        wait_for_rows(&env, 80);
        // copytruncate: copy, truncate in place, write on.
        std::fs::copy(&log, env.path().join("app.log.2")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, 80, 85);
        wait_for_rows(&env, 85);
        stop(child);
        let mut got = stored(&env);
        got.sort_unstable();
        assert_eq!(got, (0..85).collect::<Vec<_>>(), "{kind:?}");
    }
}

#[test]
fn rotation_while_stopped_finishes_the_old_file_first() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 10);
        follow_once(&env, &log);
        append(&log, 10, 20);
        std::fs::rename(&log, env.path().join("app.log.1")).unwrap();
        append(&log, 20, 30);
        follow_once(&env, &log);
        assert_eq!(stored(&env), (0..30).collect::<Vec<_>>(), "{kind:?}");
    }
}

#[test]
fn named_pipe_is_reopened_when_the_writer_goes() {
    let env = Env::new(Kind::Sqlite);
    let fifo = env.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let child = spawn_follow(&env, &fifo);
    for round in 0..3 {
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let text: String = (round * 5..round * 5 + 5).map(line).collect();
        w.write_all(text.as_bytes()).unwrap();
        drop(w);
        wait_for_rows(&env, round * 5 + 5);
    }
    // Unblock the reader's open so it sees the stop.
    stop_fifo_reader(child, &fifo);
    assert_eq!(stored(&env), (0..15).collect::<Vec<_>>());
}

fn stop_fifo_reader(child: Child, fifo: &Path) {
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = std::fs::OpenOptions::new().write(true).open(fifo);
    stop_wait(child);
}

fn stop_wait(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "siemparse exited with {status}");
}

/// Kill -9 at random moments while the file grows (in pieces that split
/// lines) and rotates; after a final run every line is stored exactly once.
#[test]
fn sigkill_loop_loses_and_duplicates_nothing() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        let mut rng = rand::rng();
        let mut next = 0usize;
        let mut pending = String::new();
        let mut rotations = 0;
        for round in 0..16 {
            let mut child = spawn_follow(&env, &log);
            let run_for = Duration::from_millis(rng.random_range(30..400));
            let started = Instant::now();
            while started.elapsed() < run_for {
                for _ in 0..rng.random_range(1..200) {
                    pending.push_str(&line(next));
                    next += 1;
                }
                // Write a random prefix: lines get split across writes.
                let cut = rng.random_range(0..=pending.len());
                let cut = (0..=cut)
                    .rev()
                    .find(|&i| pending.is_char_boundary(i))
                    .unwrap();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                f.write_all(&pending.as_bytes()[..cut]).unwrap();
                pending.drain(..cut);
                std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            // Rotate by rename now and then, once siemparse has moved on to the
            // current file (a second rotation before that is not recoverable
            // by any tailer that keeps one offset per path). A killed run may
            // not have got that far (a loaded MariaDB takes longer to start
            // than some runs last): a --once run catches up first.
            if round % 3 == 1 && !caught_up_with_current_file(&env, &log) && log.exists() {
                follow_once(&env, &log);
            }
            if round % 3 == 1 && caught_up_with_current_file(&env, &log) {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                f.write_all(pending.as_bytes()).unwrap();
                pending.clear();
                std::fs::rename(&log, env.path().join(format!("app.log.{round}"))).unwrap();
                rotations += 1;
            }
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap()
            .write_all(pending.as_bytes())
            .unwrap();
        follow_once(&env, &log);
        let mut got = stored(&env);
        let total = got.len();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), total, "{kind:?}: duplicated lines");
        assert_eq!(got, (0..next).collect::<Vec<_>>(), "{kind:?}: lost lines");
        assert!(
            rotations >= 2,
            "{kind:?}: the test rotated only {rotations} times"
        );
        eprintln!("{kind:?}: {next} lines, {rotations} rotations, 16 kills");
    }
}

fn caught_up_with_current_file(env: &Env, log: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(log) else {
        return false;
    };
    if !table_exists(env) {
        return false;
    }
    let rows = env.rows("SELECT inode FROM follow_state");
    rows.first()
        .and_then(|r| r[0].as_deref())
        .is_some_and(|i| i == meta.ino().to_string())
}

#[test]
fn sigterm_on_a_pipe_without_writer_exits_promptly() {
    let env = Env::new(Kind::Sqlite);
    let fifo = env.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = spawn_follow(&env, &fifo);
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(sent.elapsed() < Duration::from_secs(10));
}

/// A follower of a file that does not change writes nothing: it committed
/// its unchanged offset every poll, ten empty transactions a second (SQLite:
/// the WAL grew by a page each time). The file's lease is renewed every
/// third of `--lease-ttl`: long here, so that only the offsets could write.
#[test]
fn an_idle_follower_commits_nothing() {
    let env = Env::new(Kind::Sqlite);
    let log = env.path().join("idle.log");
    append(&log, 0, 3);
    let mut follower = crate::watermark::Daemon(
        env.cmd("siemparse")
            .args(["-s", "t", "-q", "--lease-ttl", "1h", "--follow"])
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn siemparse"),
    );
    wait_for_rows(&env, 3);
    let wal = env.path().join("test.db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // The rows' transaction, then the idle indexer's: then nothing more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut len, mut since) = (wal_len(), Instant::now());
    while since.elapsed() < Duration::from_secs(2) {
        assert!(
            Instant::now() < deadline,
            "the idle follower still writes: the WAL grew to {len} bytes"
        );
        std::thread::sleep(Duration::from_millis(100));
        if wal_len() != len {
            (len, since) = (wal_len(), Instant::now());
        }
    }
    append(&log, 3, 5);
    wait_for_rows(&env, 5);
    assert_eq!(stored(&env), (0..5).collect::<Vec<_>>());
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(follower.0.id() as i32, libc::SIGTERM) };
    let status = follower.0.wait().unwrap();
    assert!(status.success(), "siemparse exited with {status}");
}

/// A follower whose catch-up ends on a full batch (the whole file read in
/// one batch of at least `--batch` rows) still tells the writer that it
/// caught up, though its offset did not move since: the writer, which
/// leaves the `--grep` index alone while a reader has more input at hand,
/// then indexes the rows in the idle time. Without that last batch it would
/// wait for one until the file grew.
#[test]
fn a_follower_caught_up_on_a_full_batch_lets_the_index_run() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("full.log");
        append(&log, 0, 3000);
        let mut follower = crate::watermark::Daemon(
            env.cmd("siemparse")
                .args(["-s", "t", "-q", "--batch", "1000", "--follow"])
                .arg(&log)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn siemparse"),
        );
        wait_for_rows(&env, 3000);
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::query::index_mark(&env) < 3000 {
            assert!(
                Instant::now() < deadline,
                "{kind:?}: not indexed after 60 s: {}",
                crate::query::index_mark(&env)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(follower.0.id() as i32, libc::SIGTERM) };
        let status = follower.0.wait().unwrap();
        assert!(status.success(), "{kind:?}: siemparse exited with {status}");
    }
}
