//! Watermarks (issue 16): every ingest source records the latest event time
//! it committed, with its rows; siemtrigger evaluates below the slowest
//! active source, so the alerts do not depend on which writer was faster.

use std::io::Write;
use std::process::Stdio;

use siemstress_tests::{Env, Kind, kinds};

/// Epoch seconds of 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200;

/// An RFC 5424 line `ms` milliseconds after BASE (unique sub-second times).
fn line(ms: i64, msg: &str) -> String {
    let t = chrono::DateTime::from_timestamp_millis(BASE * 1000 + ms).unwrap();
    format!(
        "<38>1 {} web01 sshd 100 - - {msg}\n",
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

fn setup(kind: Kind, extra: &str) -> Env {
    let env = Env::new(kind);
    env.config(&format!(
        "[section.auth]\ntable = \"auth\"\ntimezone = \"UTC\"\n\n{extra}"
    ));
    env
}

/// (kind, name, max_ts, stored_rows, finished) of every source of `auth`.
fn sources(env: &Env) -> Vec<(String, String, i64, i64, i64)> {
    env.rows(
        "SELECT kind, name, max_ts, stored_rows, finished FROM ingest_sources \
         WHERE tbl = 'auth' ORDER BY kind, name",
    )
    .into_iter()
    .map(|r| {
        let n = |i: usize| r[i].as_deref().unwrap().parse::<i64>().unwrap();
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            n(2),
            n(3),
            n(4),
        )
    })
    .collect()
}

#[test]
fn each_source_records_its_latest_time_and_a_clean_end() {
    for kind in kinds() {
        let env = setup(kind, "");
        let text: String = (0..10).map(|i| line(i * 1000, "Accepted")).collect();
        env.ingest(&["-s", "auth", "--batch", "3"], text.as_bytes());
        let s = sources(&env);
        assert_eq!(s.len(), 1, "{kind:?}: {s:?}");
        assert_eq!(s[0].0, "stdin");
        assert!(s[0].1.starts_with("stdin:"), "{s:?}");
        assert_eq!(
            (s[0].2, s[0].3, s[0].4),
            (BASE * 1000 + 9000, 10, 1),
            "{kind:?}"
        );

        // A followed file: its path; --once ends cleanly at EOF.
        let log = env.path().join("auth.log");
        std::fs::write(&log, line(20_000, "x") + &line(15_000, "y")).unwrap();
        env.ingest(
            &[
                "-s",
                "auth",
                "-q",
                "--follow",
                log.to_str().unwrap(),
                "--once",
            ],
            b"",
        );
        let s = sources(&env);
        assert_eq!(s.len(), 2, "{kind:?}: {s:?}");
        assert_eq!(s[0].0, "follow");
        assert!(s[0].1.ends_with("/auth.log"), "{s:?}");
        assert_eq!(
            (s[0].2, s[0].3, s[0].4),
            (BASE * 1000 + 20_000, 2, 1),
            "{kind:?}"
        );

        // A daemon that is still running has not finished; SIGTERM finishes it.
        let mut child = env
            .cmd("siemparse")
            .args(["-s", "auth", "-q", "--follow", log.to_str().unwrap()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(line(30_000, "z").as_bytes())
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sources(&env)[0].3 < 3 {
            assert!(std::time::Instant::now() < deadline, "{kind:?}: not stored");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(sources(&env)[0].4, 0, "{kind:?}: running, not finished");
        assert_eq!(sources(&env)[0].2, BASE * 1000 + 30_000);
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(sources(&env)[0].4, 1, "{kind:?}: finished at SIGTERM");
    }
}

pub(crate) const BRUTE: &str = r#"
[[rule]]
name = "brute"
type = "threshold"
table = "auth"
severity = "high"
match = { process = ["sshd"], regex = 'Failed password for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+)' }
reset = { process = ["sshd"], regex = 'Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)' }
key = "{ip}"
window = "60s"
threshold = 3
message = "SSH brute force from {ip} ({count} failures)"

[[rule]]
name = "login-then-quiet"
type = "absence"
table = "auth"
first = { process = ["sshd"], regex = 'Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)' }
second = { process = ["sshd"], regex = 'Failed password for \S+ from {ip} ' }
key = "{ip}"
window = "30s"
message = "{user} logged in from {ip} and no failure followed"
"#;

fn fail(ms: i64, ip: &str) -> String {
    line(
        ms,
        &format!("Failed password for root from {ip} port 22 ssh2"),
    )
}

/// (rule, key, ts, first_ts, count, message) of every alert, sorted.
pub(crate) fn alerts(env: &Env) -> Vec<String> {
    let k = if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    };
    let mut v: Vec<String> = env
        .rows(&format!(
            "SELECT rule, {k}, ts, first_ts, count, message FROM alerts"
        ))
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    v.sort();
    v
}

fn trigger_once(env: &Env) -> String {
    let (code, out, err) = env.run("siemtrigger", &["--once", "-v"], b"");
    assert_eq!(code, 0, "siemtrigger --once: {out}{err}");
    err
}

/// A generated auth log over `hours` hours: failures from a few addresses
/// (bursts that cross the writers), logins, noise; unique millisecond times.
pub(crate) fn auth_log(n: usize, hours: i64) -> Vec<(i64, String)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let span = hours * 3_600_000;
    let step = span / n as i64;
    (0..n)
        .map(|i| {
            let r = rnd();
            let ms = i as i64 * step + (r % (step as u64 - 1)) as i64;
            let ip = format!("10.0.0.{}", (r >> 8) % 12);
            let l = match (r >> 16) % 8 {
                0 => line(
                    ms,
                    &format!("Accepted password for u from {ip} port 22 ssh2"),
                ),
                1 => line(ms, "Connection closed by authenticating user x"),
                _ => fail(ms, &ip),
            };
            (ms, l)
        })
        .collect()
}

/// A child process killed if the test fails.
pub(crate) struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Appends `lines` to `path`.
pub(crate) fn append(path: &std::path::Path, lines: &[&String]) {
    let text: String = lines.iter().map(|l| l.as_str()).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Waits until the followed file `name` has stored `rows` rows.
fn wait_stored(env: &Env, name: &str, rows: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = env.rows(&format!(
            "SELECT stored_rows FROM ingest_sources WHERE name LIKE '%/{name}'"
        ));
        if got
            .first()
            .and_then(|r| r[0].as_deref())
            .is_some_and(|n| n.parse::<i64>().unwrap() >= rows)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: {rows} rows not stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The issue's case: one writer runs an hour ahead of the other in event
/// time (a host forwarding with a backlog), and siemtrigger runs as they
/// go. The alerts equal those of one stream of the same lines.
#[test]
fn a_writer_an_hour_ahead_gives_the_alerts_of_one_stream() {
    let log = auth_log(3000, 3);
    let all: String = log.iter().map(|(_, l)| l.as_str()).collect();
    for kind in kinds() {
        let reference = setup(kind, BRUTE);
        reference.ingest(&["-s", "auth"], all.as_bytes());
        trigger_once(&reference);
        let want = alerts(&reference);
        assert!(want.len() > 100, "{kind:?}: {}", want.len());

        let env = setup(kind, &format!("[trigger]\nidle_timeout = \"10m\"\n{BRUTE}"));
        let (a, b) = (env.path().join("a.log"), env.path().join("b.log"));
        let hour = |h: i64, odd: usize| -> Vec<&String> {
            log.iter()
                .enumerate()
                .filter(|(i, (ms, _))| i % 2 == odd && *ms / 3_600_000 == h)
                .map(|(_, (_, l))| l)
                .collect()
        };
        // B starts with one line; A is an hour ahead from the start.
        let b0 = hour(0, 1);
        append(&b, &b0[..1]);
        append(&a, &hour(0, 0));
        append(&a, &hour(1, 0));
        // The database and table exist before the followers start.
        env.ingest(&["-s", "auth"], b"");
        let spawn = |p: &std::path::Path| {
            Daemon(
                env.cmd("siemparse")
                    .args(["-s", "auth", "-q", "--follow", p.to_str().unwrap()])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let (mut da, mut db) = (spawn(&a), spawn(&b));
        let (mut na, mut nb) = ((hour(0, 0).len() + hour(1, 0).len()) as i64, 1);
        wait_stored(&env, "a.log", na);
        wait_stored(&env, "b.log", nb);
        let err = trigger_once(&env);
        assert!(!err.contains("late"), "{kind:?}: {err}");
        append(&b, &b0[1..]);
        nb += b0.len() as i64 - 1;
        for h in 1..3 {
            // A stores hour h+1 while B is still at hour h.
            let (na_h, nb_h) = (hour(h + 1, 0), hour(h, 1));
            append(&a, &na_h);
            na += na_h.len() as i64;
            wait_stored(&env, "a.log", na);
            let err = trigger_once(&env);
            assert!(!err.contains("late"), "{kind:?}: {err}");
            append(&b, &nb_h);
            nb += nb_h.len() as i64;
            wait_stored(&env, "b.log", nb);
            let err = trigger_once(&env);
            assert!(!err.contains("late"), "{kind:?}: {err}");
        }
        for d in [&mut da, &mut db] {
            unsafe {
                libc::kill(d.0.id() as i32, libc::SIGTERM);
            }
            assert!(d.0.wait().unwrap().success());
        }
        let err = trigger_once(&env);
        assert!(!err.contains("late"), "{kind:?}: {err}");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), log.len() as i64);
        assert_eq!(alerts(&env), want, "{kind:?}");
    }
}

/// A writer whose rows commit after siemtrigger has passed their time
/// (delayed; on MariaDB, a transaction held open while another writer's
/// higher ids commit): its rows are late, and still raise their alerts,
/// once, counted as late.
#[test]
fn rows_that_commit_late_raise_their_alerts_once() {
    for kind in kinds() {
        let env = setup(kind, BRUTE);
        let held = env.path().join("held.log");
        // The held writer's source exists (its row is what MariaDB locks below).
        append(&held, &[&line(0, "Connection closed by x")]);
        env.ingest(
            &[
                "-s",
                "auth",
                "-q",
                "--follow",
                held.to_str().unwrap(),
                "--once",
            ],
            b"",
        );
        let late: Vec<String> = (0..3)
            .map(|i| fail(10_000 + i * 1000, "10.9.9.9"))
            .collect();
        append(&held, &late.iter().collect::<Vec<_>>());
        let early: Vec<String> = (0..3)
            .map(|i| fail(5_000 + i * 1000, "10.1.1.1"))
            .chain((0..50).map(|i| line(20_000 + i * 1000, "Connection closed by y")))
            .collect();
        let mut lock = None;
        let mut child = None;
        if kind == Kind::Mysql {
            // Hold the held writer's transaction open: it inserts its rows
            // (taking ids), then waits for its source row, locked here.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let conn = rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::MySqlConnection::connect(&env.url).await.unwrap();
                // By its key: a scan would lock every row (and the gaps).
                let (skey,): (String,) =
                    sqlx::query_as("SELECT skey FROM ingest_sources WHERE name LIKE '%/held.log'")
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                sqlx::query("BEGIN").execute(&mut c).await.unwrap();
                sqlx::query(
                    "SELECT * FROM ingest_sources WHERE skey = ? AND tbl = 'auth' FOR UPDATE",
                )
                .bind(skey)
                .fetch_all(&mut c)
                .await
                .unwrap();
                c
            });
            lock = Some((rt, conn));
            child = Some(Daemon(
                env.cmd("siemparse")
                    .args([
                        "-s",
                        "auth",
                        "-q",
                        "--follow",
                        held.to_str().unwrap(),
                        "--once",
                    ])
                    .spawn()
                    .unwrap(),
            ));
            // Its rows have taken ids (not visible yet).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let n = env.scalar(
                    "SELECT CAST(AUTO_INCREMENT AS SIGNED) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = 'auth'",
                );
                if n >= 5 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the held writer inserted nothing"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        // Another writer stores later ids; siemtrigger passes the held rows' time.
        env.ingest(&["-s", "auth"], early.concat().as_bytes());
        trigger_once(&env);
        let got = alerts(&env);
        assert_eq!(got.len(), 1, "{kind:?}: {got:?}");
        assert!(got[0].contains("10.1.1.1"), "{got:?}");
        match (lock, child) {
            (Some((rt, conn)), Some(mut child)) => {
                rt.block_on(async {
                    let mut conn = conn;
                    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
                });
                assert!(child.0.wait().unwrap().success());
            }
            _ => env.ingest(
                &[
                    "-s",
                    "auth",
                    "-q",
                    "--follow",
                    held.to_str().unwrap(),
                    "--once",
                ],
                b"",
            ),
        }
        assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), 57);
        let err = trigger_once(&env);
        assert!(err.contains("3 late rows"), "{kind:?}: {err}");
        let got = alerts(&env);
        assert_eq!(got.len(), 2, "{kind:?}: {got:?}");
        assert!(
            got.iter()
                .any(|a| a.contains("10.9.9.9") && a.contains("3 failures")),
            "{got:?}"
        );
        // Once.
        let err = trigger_once(&env);
        assert!(!err.contains("late"), "{kind:?}: {err}");
        assert_eq!(alerts(&env).len(), 2, "{kind:?}");
    }
}
