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
        let path = key(&log);
        let give_away = |until: i64| {
            env.rows(&format!(
                "UPDATE follow_lease SET holder = 'otherhost:4242:x', expires = {until} \
                 WHERE section = 't' AND path = '{}'",
                path.display()
            ))
        };
        give_away(siemstress_common::time::now_ms() + 600_000);
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
        let until = siemstress_common::time::now_ms() + 6000;
        give_away(until);
        let d_err = env.path().join("d.err");
        let d = spawn_follower(&env, &log, &d_err, &["--lease-ttl", "3s"]);
        wait_for_rows(&env, 20);
        let first_read = env.scalar("SELECT MIN(received) FROM t WHERE id > 10");
        assert!(
            first_read >= until,
            "{kind:?}: read {} ms before the lease expired: {}",
            until - first_read,
            std::fs::read_to_string(&d_err).unwrap_or_default()
        );

        // Fencing: the lease is taken from the running follower.
        give_away(siemstress_common::time::now_ms() + 600_000);
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

/// Epoch seconds of 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200;

/// An env whose rule raises one alert per failed root login, each running
/// the exec action `slow`: it appends `start ID` to `runs.txt`, then
/// sleeps `secs`.
fn slow_action_env(kind: siemstress_tests::Kind, alerts: usize, secs: u32) -> Env {
    let env = Env::new(kind);
    let script = env.path().join("slow.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"start $SIEM_ID\" >> '{}/runs.txt'\n/bin/sleep {secs}\n",
            env.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.config(&format!(
        r#"[section.auth]
table = "auth"
timezone = "UTC"

[actions.slow]
type = "exec"
program = "{}"
timeout = "60s"

[[rule]]
name = "root-fail"
type = "single"
table = "auth"
match = {{ process = "sshd", regex = 'Failed password for root from (?P<ip>\S+)' }}
key = "{{ip}}"
message = "failure from {{ip}}"
actions = ["slow"]
"#,
        script.display()
    ));
    let lines: String = (0..alerts)
        .map(|i| {
            let t = chrono::DateTime::from_timestamp(BASE + i as i64, 0).unwrap();
            format!(
                "{} web01 sshd[100]: Failed password for root from 192.0.2.{i} port 22 ssh2\n",
                t.format("%b %e %H:%M:%S")
            )
        })
        .collect();
    env.ingest(&["-s", "auth", "--year", "2024"], lines.as_bytes());
    env
}

/// The alert ids the slow action ran for, in order.
fn action_runs(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path().join("runs.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches("start ").to_owned())
        .collect()
}

fn spawn_trigger(env: &Env, err: &Path, ttl: &str) -> Child {
    env.cmd("siemtrigger")
        .args(["--interval", "1s", "--lease-ttl", ttl])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .expect("spawn siemtrigger")
}

fn sigterm_trigger(mut child: Child, err: &Path) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(err).unwrap_or_default();
    assert!(status.success(), "siemtrigger exited with {status}: {err}");
}

/// Waits until `n` action runs are done (`ok`).
fn wait_for_done_runs(env: &Env, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while env.scalar("SELECT COUNT(*) FROM action_runs WHERE status = 'ok'") < n {
        assert!(
            Instant::now() < deadline,
            "{:?}: not {n} actions done after 90 s: ran {:?}",
            env.kind,
            action_runs(env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two daemons, actions that together run longer than the lease: the
/// holder renews its lease while they run and claims each before it runs,
/// so the other never runs one again.
#[test]
fn i18_two_siemtriggers_run_each_slow_action_once() {
    for kind in kinds() {
        let env = slow_action_env(kind, 4, 2);
        let (xe, ye) = (env.path().join("x.err"), env.path().join("y.err"));
        let x = spawn_trigger(&env, &xe, "3s");
        let y = spawn_trigger(&env, &ye, "3s");
        wait_for_done_runs(&env, 4);
        // Time for a second instance to (wrongly) run one again.
        std::thread::sleep(Duration::from_secs(4));
        sigterm_trigger(x, &xe);
        sigterm_trigger(y, &ye);
        let mut ran = action_runs(&env);
        let total = ran.len();
        ran.sort();
        ran.dedup();
        assert_eq!(
            (total, ran.len()),
            (4, 4),
            "{kind:?}: every action once: {:?}",
            action_runs(&env)
        );
    }
}

/// An instance whose lease is taken while an action runs dispatches
/// nothing more; the next holder runs the rest.
#[test]
fn i18_no_action_is_dispatched_after_the_lease_is_lost() {
    for kind in kinds() {
        let env = slow_action_env(kind, 3, 2);
        let xe = env.path().join("x.err");
        let x = spawn_trigger(&env, &xe, "30s");
        let deadline = Instant::now() + Duration::from_secs(60);
        while action_runs(&env).is_empty() {
            assert!(Instant::now() < deadline, "{kind:?}: no action started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let far = siemstress_common::time::now_ms() + 600_000;
        env.rows(&format!(
            "UPDATE trigger_lease SET holder = 'otherhost:4242:x', expires = {far}"
        ));
        // The running action ends after 2 s; no other may start.
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            action_runs(&env).len(),
            1,
            "{kind:?}: actions were dispatched after the lease was lost: {}",
            std::fs::read_to_string(&xe).unwrap_or_default()
        );
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM action_runs WHERE status = 'pending'"),
            2,
            "{kind:?}"
        );
        // The lease is free again: the daemon takes it and runs the rest.
        env.rows("UPDATE trigger_lease SET holder = '', expires = 0");
        wait_for_done_runs(&env, 3);
        sigterm_trigger(x, &xe);
        let mut ran = action_runs(&env);
        ran.sort();
        ran.dedup();
        assert_eq!(ran.len(), 3, "{kind:?}: {:?}", action_runs(&env));
        assert_eq!(
            action_runs(&env).len(),
            3,
            "{kind:?}: {:?}",
            action_runs(&env)
        );
    }
}
