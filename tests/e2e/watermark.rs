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
