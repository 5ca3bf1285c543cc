//! siemstress on a local 3-node MariaDB Galera cluster (`siemstress_tests::galera`).

use siemstress_tests::galera::Cluster;

/// Runs the test body on a fresh cluster, or skips it where galera-4 is not
/// installed (a failure under CI=true: `.ci/run` installs it).
fn cluster(n: usize) -> Option<Cluster> {
    match Cluster::available() {
        Ok(()) => Some(Cluster::start(n)),
        Err(why) if std::env::var("CI").is_ok_and(|c| c == "true") => {
            panic!("CI=true but no Galera cluster can run here: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The harness itself: three nodes replicate; a killed node rejoins.
#[test]
fn galera_cluster_replicates_and_a_killed_node_rejoins() {
    let Some(mut c) = cluster(3) else { return };
    c.sql(0, "CREATE DATABASE g");
    c.sql(
        1,
        "CREATE TABLE g.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    c.sql(2, "INSERT INTO g.t (v) VALUES (1), (2)");
    assert_eq!(
        c.sql(0, "SELECT COUNT(*) FROM g.t")[0][0].as_deref(),
        Some("2")
    );
    c.kill(1);
    c.sql(0, "INSERT INTO g.t (v) VALUES (3)");
    c.restart(1);
    assert_eq!(
        c.sql(1, "SELECT COUNT(*) FROM g.t")[0][0].as_deref(),
        Some("3")
    );
}

/// Issue 16's acceptance: three `siemparse` writers, one per node, ingest
/// one generated log split between them (RFC 5424, unique sub-second
/// times) while `siemtrigger --interval` runs; node 1 is killed and
/// restarted mid-run (its writer and siemtrigger name every node in their
/// URL and fail over; the others ride out the cluster's pause). Every line
/// is stored once; siemquery (with --grep) returns the rows of a
/// single-SQLite ingest; the alerts are those of the single-SQLite run.
///
/// `GALERA_LINES` (default 6,000) and `GALERA_KILL` (default 1) size it;
/// the full run: `GALERA_LINES=60000 cargo test -p siemstress-tests --test
/// e2e galera_three_writers -- --nocapture`.
#[test]
fn galera_three_writers_give_the_alerts_and_rows_of_one_sqlite() {
    use crate::watermark::{BRUTE, Daemon, alerts, append, auth_log};
    use siemstress_tests::{Env, Kind, bin};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let Some(mut c) = cluster(3) else { return };
    let n: usize = std::env::var("GALERA_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let kill = std::env::var("GALERA_KILL").map_or(true, |v| v != "0");
    let log = auth_log(n, 3);
    let config = format!(
        "[section.auth]\ntable = \"auth\"\ntimezone = \"UTC\"\n\n\
         [trigger]\nidle_timeout = \"10m\"\n{BRUTE}"
    );

    // The single-SQLite run.
    let reference = Env::new(Kind::Sqlite);
    reference.config(&config);
    let all: String = log.iter().map(|(_, l)| l.as_str()).collect();
    reference.ingest(&["-s", "auth"], all.as_bytes());
    let (code, _, err) = reference.run("siemtrigger", &["--once"], b"");
    assert_eq!(code, 0, "{err}");
    let want = alerts(&reference);
    assert!(want.len() > 100, "{}", want.len());

    // The cluster: node i's URL lists node i first, then the others.
    c.sql(0, "CREATE DATABASE g CHARACTER SET utf8mb4");
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let url = |i: usize| {
        let nodes: Vec<String> = (0..3)
            .map(|k| format!("127.0.0.1:{}", ports[(i + k) % 3]))
            .collect();
        format!("mysql://root@{}/g", nodes.join(","))
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("siemstress.toml");
    std::fs::write(&cfg, &config).unwrap();
    let cmd = |tool: &str, db: &str| {
        let mut c = Command::new(bin(tool));
        c.current_dir(dir.path())
            .env_remove("SIEMSTRESS_CONFIG")
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .env("TZ", "UTC")
            .arg("-c")
            .arg(&cfg)
            .arg("--db")
            .arg(db);
        c
    };
    let status = cmd("siemparse", &url(0))
        .args(["-s", "auth", "-q"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "creating the table");
    let files: Vec<std::path::PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("w{i}.log")))
        .collect();
    let share = |w: usize, from: usize, to: usize| -> Vec<&String> {
        log[from..to]
            .iter()
            .enumerate()
            .filter(|(k, _)| (from + k) % 3 == w)
            .map(|(_, (_, l))| l)
            .collect()
    };
    let rounds = 10;
    let per = n.div_ceil(rounds);
    // Each writer starts with its share of the first round.
    for (w, f) in files.iter().enumerate() {
        append(f, &share(w, 0, per.min(n)));
    }
    let mut writers: Vec<Daemon> = (0..3)
        .map(|w| {
            Daemon(
                cmd("siemparse", &url(w))
                    .args(["-s", "auth", "-q", "--follow", files[w].to_str().unwrap()])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // The collectors run before the correlator (as a deployment starts).
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.sql(0, "SELECT COUNT(*) FROM g.ingest_sources")[0][0].as_deref() != Some("3") {
        assert!(Instant::now() < deadline, "the writers did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let trigger_log = dir.path().join("trigger.err");
    let mut trigger = Daemon(
        cmd("siemtrigger", &url(2))
            .args(["--interval", "1s", "-v"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&trigger_log).unwrap())
            .spawn()
            .unwrap(),
    );
    for round in 1..rounds {
        let (from, to) = ((round * per).min(n), ((round + 1) * per).min(n));
        for (w, f) in files.iter().enumerate() {
            append(f, &share(w, from, to));
        }
        if kill && round == rounds / 2 {
            c.kill(1);
            std::thread::sleep(Duration::from_secs(3));
            c.restart(1);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    // Every line in; the writers end cleanly, siemtrigger catches up.
    let deadline = Instant::now() + Duration::from_secs(300);
    let count = || -> usize {
        c.try_sql(0, "SELECT COUNT(*) FROM g.auth")
            .ok()
            .and_then(|r| r[0][0].as_deref().and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    while count() < n {
        assert!(Instant::now() < deadline, "{} of {n} lines stored", count());
        std::thread::sleep(Duration::from_millis(200));
    }
    for w in &mut writers {
        unsafe {
            libc::kill(w.0.id() as i32, libc::SIGTERM);
        }
        assert!(w.0.wait().unwrap().success());
    }
    let max_ts = c.sql(0, "SELECT MAX(ts) FROM g.auth")[0][0]
        .clone()
        .unwrap();
    let done = format!("SELECT COUNT(*) FROM g.trigger_progress WHERE wm > {max_ts}");
    while c.sql(0, &done)[0][0].as_deref() != Some("2") {
        assert!(
            Instant::now() < deadline,
            "siemtrigger did not catch up: {}",
            std::fs::read_to_string(&trigger_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe {
        libc::kill(trigger.0.id() as i32, libc::SIGTERM);
    }
    assert!(trigger.0.wait().unwrap().success());
    let trigger_err = std::fs::read_to_string(&trigger_log).unwrap();

    // Every line once.
    let distinct = c.sql(0, "SELECT COUNT(*), COUNT(DISTINCT raw) FROM g.auth");
    assert_eq!(
        (distinct[0][0].as_deref(), distinct[0][1].as_deref()),
        (Some(n.to_string().as_str()), Some(n.to_string().as_str()))
    );
    // The alerts of one SQLite run.
    let got: Vec<String> = {
        let mut v: Vec<String> = c
            .sql(
                0,
                "SELECT rule, `key`, ts, first_ts, count, message FROM g.alerts",
            )
            .into_iter()
            .map(|r| format!("{r:?}"))
            .collect();
        v.sort();
        v
    };
    eprintln!(
        "galera: {n} lines, {} alerts on the cluster, {} on one SQLite; siemtrigger said:\n{}",
        got.len(),
        want.len(),
        trigger_err
            .lines()
            .filter(|l| l.contains("late") || l.contains("idle"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(got.len(), want.len(), "{trigger_err}");
    assert_eq!(got, want, "{trigger_err}");
    // siemquery: the same rows, with and without --grep.
    for args in [
        vec!["-s", "auth", "--range", "20240101000000-20240102000000"],
        vec![
            "-s",
            "auth",
            "--range",
            "20240101000000-20240102000000",
            "--grep",
            "10.0.0.7 ",
        ],
        vec![
            "-s",
            "auth",
            "--range",
            "20240101000000-20240102000000",
            "--grep",
            "accepted",
        ],
    ] {
        let query = |db: &str| {
            let out = cmd("siemquery", db)
                .args(&args)
                .args([
                    "--format",
                    "ndjson",
                    "--fields",
                    "ts,host,process,message,raw",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let (single, cluster) = (query(&reference.url), query(&url(1)));
        assert!(single.lines().count() > 10, "{args:?}");
        assert_eq!(cluster, single, "siemquery {args:?}");
    }
}
