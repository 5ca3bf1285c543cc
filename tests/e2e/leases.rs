//! Leases of issue 18, tests named `i18_...`: one follower per file
//! (`siemparse --follow`: standby, skipped `--once` runs, take-over after
//! kill -9, release, expiry, fencing).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use siemstress_tests::{Env, kinds};

use crate::follow::{append, stored, wait_for_rows};

/// A `siemparse -s t --follow LOG` daemon with its stderr in `err`.
fn spawn_follower(env: &Env, log: &Path, err: &Path, extra: &[&str]) -> Child {
    env.cmd("siemparse")
        .args(["-s", "t", "--follow", log.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .expect("spawn siemparse")
}

/// A `--once` run, started now.
fn spawn_once(env: &Env, log: &Path) -> Child {
    env.cmd("siemparse")
        .args(["-s", "t", "-q", "--follow", log.to_str().unwrap(), "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn siemparse --once")
}

/// Waits for a `--once` run: its exit code and stderr.
fn wait_once(c: Child) -> (i32, String) {
    let out = c.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `file` contains `text`.
fn wait_for_text(file: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = std::fs::read_to_string(file).unwrap_or_default();
        if have.contains(text) {
            return have;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} after 30 s in {}: {have}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(mut child: Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "siemparse exited with {status}");
}

/// Every line 0..n stored exactly once.
fn assert_exactly_once(env: &Env, n: usize, what: &str) {
    let mut got = stored(env);
    let total = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(
        got.len(),
        total,
        "{what}: {} lines stored twice",
        total - got.len()
    );
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "{what}: lines lost");
}

/// The key of a followed file's offset and lease: its directory canonicalized.
fn key(log: &Path) -> PathBuf {
    std::fs::canonicalize(log.parent().unwrap())
        .unwrap()
        .join(log.file_name().unwrap())
}

/// Two daemons and pairs of `--once` runs on one growing file: the second
/// daemon waits in standby, the `--once` runs skip the file naming the
/// holder, the standby takes over after kill -9 and after a release; every
/// line is stored exactly once.
#[test]
fn i18_one_follower_per_file_daemons_and_once_runs() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 200);
        let (a_err, b_err, c_err) = (
            env.path().join("a.err"),
            env.path().join("b.err"),
            env.path().join("c.err"),
        );
        let a = spawn_follower(&env, &log, &a_err, &[]);
        wait_for_rows(&env, 200);
        let b = spawn_follower(&env, &log, &b_err, &[]);
        let standby = wait_for_text(&b_err, "standby");
        assert!(
            standby.contains(&format!("pid {}", a.id())),
            "{kind:?}: {standby}"
        );
        let mut next = 200;
        for _ in 0..5 {
            append(&log, next, next + 100);
            next += 100;
            let (x, y) = (spawn_once(&env, &log), spawn_once(&env, &log));
            for (code, err) in [wait_once(x), wait_once(y)] {
                assert_eq!(code, 0, "{kind:?}: {err}");
                assert!(
                    err.contains("skipped") && err.contains(&format!("pid {}", a.id())),
                    "{kind:?}: the --once run names the holder: {err}"
                );
            }
        }
        wait_for_rows(&env, next);

        // kill -9: the standby daemon of the same host sees the pid gone.
        let mut a = a;
        a.kill().unwrap();
        a.wait().unwrap();
        append(&log, next, next + 300);
        next += 300;
        wait_for_text(&b_err, "took over");
        wait_for_rows(&env, next);

        // A release (SIGTERM) hands over at once to the next in standby.
        let c = spawn_follower(&env, &log, &c_err, &[]);
        wait_for_text(&c_err, "standby");
        sigterm(b);
        let released = Instant::now();
        append(&log, next, next + 100);
        next += 100;
        wait_for_text(&c_err, "took over");
        assert!(
            released.elapsed() < Duration::from_secs(10),
            "{kind:?}: a released lease is taken within the standby poll"
        );
        wait_for_rows(&env, next);
        sigterm(c);
        assert_exactly_once(&env, next, &format!("{kind:?}"));
    }
}

/// `--once` runs from cron that overlap each other while the file grows:
/// every line stored once.
#[test]
fn i18_overlapping_once_runs_store_each_line_once() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 1);
        let mut next = 1;
        let mut skipped = 0;
        for _ in 0..12 {
            let runs: Vec<Child> = (0..2).map(|_| spawn_once(&env, &log)).collect();
            for _ in 0..10 {
                append(&log, next, next + 200);
                next += 200;
                std::thread::sleep(Duration::from_millis(5));
            }
            for r in runs {
                let (code, err) = wait_once(r);
                assert_eq!(code, 0, "{kind:?}: {err}");
                skipped += usize::from(err.contains("skipped"));
            }
        }
        let (code, err) = wait_once(spawn_once(&env, &log));
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert_exactly_once(&env, next, &format!("{kind:?}"));
        eprintln!("{kind:?}: {next} lines, {skipped} of 24 overlapping runs skipped");
    }
}

/// Another host's lease: `--once` skips naming it; a daemon waits until it
/// expires, then follows. A follower whose lease is taken from it stops
/// with an error and stores nothing more (fencing).
#[test]
fn i18_follow_lease_expiry_across_hosts_and_fencing() {
    for kind in kinds() {
        let env = Env::new(kind);
        let log = env.path().join("app.log");
        append(&log, 0, 10);
        // Create the schema and the lease row, then give it to another host.
        let (code, err) = wait_once(spawn_once(&env, &log));
        assert_eq!(code, 0, "{err}");
        append(&log, 10, 20);
        let until = siemstress_common::time::now_ms() + 4000;
        let path = key(&log);
        env.rows(&format!(
            "UPDATE follow_lease SET holder = 'otherhost:4242:x', expires = {until} \
             WHERE section = 't' AND path = '{}'",
            path.display()
        ));
        let (code, err) = wait_once(spawn_once(&env, &log));
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            err.contains("skipped") && err.contains("host otherhost, pid 4242"),
            "{kind:?}: {err}"
        );
        assert_eq!(
            stored(&env).len(),
            10,
            "{kind:?}: the skipped run stored nothing"
        );
        let d_err = env.path().join("d.err");
        let d = spawn_follower(&env, &log, &d_err, &["--lease-ttl", "3s"]);
        wait_for_text(&d_err, "standby");
        let waited = Instant::now();
        wait_for_text(&d_err, "took over");
        wait_for_rows(&env, 20);
        assert!(
            siemstress_common::time::now_ms() >= until,
            "{kind:?}: taken over {:?} before the lease expired",
            waited.elapsed()
        );

        // Fencing: the lease is taken from the running follower.
        let far = siemstress_common::time::now_ms() + 600_000;
        env.rows(&format!(
            "UPDATE follow_lease SET holder = 'otherhost:4242:x', expires = {far} \
             WHERE section = 't' AND path = '{}'",
            path.display()
        ));
        append(&log, 20, 30);
        let mut d = d;
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = d.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{kind:?}: the follower kept going"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(&d_err).unwrap();
        assert_eq!(status.code(), Some(2), "{kind:?}: {err}");
        assert!(err.contains("another siemparse"), "{kind:?}: {err}");
        assert_eq!(
            stored(&env).len(),
            20,
            "{kind:?}: nothing stored after the lease was lost"
        );
    }
}
