//! `siemquery -f` (issue 12): rows stored after it started are printed, as
//! they are stored, with every filter applied, from a table that appears
//! while it runs too; `--alerts -f` prints new alerts; a closed stdout ends
//! it with exit 0 even when nothing is written.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use siemstress_tests::{Env, kinds};

/// A running `siemquery` with its stdout lines arriving on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut child = env
            .cmd("siemquery")
            .arg("-v")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn siemquery -f");
        // -v says where it starts: from then on, every row stored is new.
        let err = child.stderr.take().expect("stderr");
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if l.starts_with("siemquery: following") {
                    let _ = ready_tx.send(());
                } else if !l.starts_with("siemquery: SQL") && !l.starts_with("siemquery:   ?") {
                    eprintln!("{l}");
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("siemquery -f -v says where it starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next `n` lines, as JSON, within 20 s.
    fn take(&self, n: usize) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(serde_json::from_str(&l).expect("ndjson")),
                Err(_) => panic!("{} of {n} lines within 20 s: {got:?}", got.len()),
            }
        }
        got
    }

    /// Nothing more arrives within `d`.
    fn quiet(&self, d: Duration) {
        if let Ok(l) = self.lines.recv_timeout(d) {
            panic!("unexpected line {l}");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_rows_stored_after_it_started() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "auth", "--year", "2024"],
            b"Mar  1 10:00:00 h1 sshd[1]: Failed password for old from 198.51.100.1 port 1 ssh2\n",
        );
        let f = Follower::start(
            &env,
            &[
                "-f",
                "--grep",
                "failed",
                "--rprocess",
                "cron",
                "--format",
                "ndjson",
                "--fields",
                "section,process,message",
            ],
        );
        // What was there before is not shown (no --last/--range).
        f.quiet(Duration::from_millis(500));
        env.ingest(
            &["-s", "auth", "--year", "2024"],
            b"Mar  1 10:00:05 h1 sshd[2]: Failed password for new from 198.51.100.2 port 2 ssh2\n\
              Mar  1 10:00:06 h1 sshd[2]: Accepted password for new from 198.51.100.2 port 2 ssh2\n\
              Mar  1 10:00:07 h1 cron[3]: job failed\n",
        );
        let got = f.take(1);
        assert_eq!(got[0]["section"], "auth", "{kind:?}");
        assert_eq!(
            got[0]["message"],
            "Failed password for new from 198.51.100.2 port 2 ssh2"
        );
        // A section that appears while it runs is followed from its first row.
        env.ingest(
            &["-s", "web", "--year", "2024"],
            b"Mar  1 10:01:00 w1 nginx[7]: login failed\n",
        );
        let got = f.take(1);
        assert_eq!(
            (got[0]["section"].as_str(), got[0]["message"].as_str()),
            (Some("web"), Some("login failed")),
            "{kind:?}"
        );
        f.quiet(Duration::from_millis(1500));
        drop(f);

        // -s narrows, and --range prints that period first.
        let f = Follower::start(
            &env,
            &[
                "-f",
                "-s",
                "web",
                "--range",
                "20240101000000-20250101000000",
                "--format",
                "ndjson",
            ],
        );
        let got = f.take(1);
        assert_eq!(got[0]["message"], "login failed", "{kind:?}");
        env.ingest(
            &["-s", "web", "--year", "2024"],
            b"Mar  1 10:02:00 w1 nginx[7]: second\n",
        );
        env.ingest(
            &["-s", "auth", "--year", "2024"],
            b"Mar  1 10:02:00 h1 sshd[2]: not in web\n",
        );
        let got = f.take(1);
        assert_eq!(got[0]["message"], "second", "{kind:?}");
        f.quiet(Duration::from_millis(1500));
    }
}

#[test]
fn follow_ends_when_its_reader_goes() {
    let env = Env::new(kinds()[0]);
    env.ingest(&["-s", "auth"], b"Mar  1 10:00:00 h1 sshd[1]: hello\n");
    let mut child = env
        .cmd("siemquery")
        .args(["-f", "--format", "ndjson"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(child.try_wait().unwrap().is_none(), "it follows");
    // The reader goes while nothing is written: the idle follow notices
    // within its poll bound and ends as on a broken pipe.
    drop(child.stdout.take());
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0), "a closed pipe is a clean end");
            break;
        }
        assert!(
            Instant::now() < end,
            "siemquery -f still runs after its reader left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alerts_follow_prints_new_alerts() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(
            r#"[section.auth]
timezone = "UTC"

[[rule]]
name = "root-login"
type = "single"
table = "auth"
severity = "high"
match = { process = "sshd", regex = 'Accepted \S+ for root from (?P<ip>\S+)' }
key = "{ip}"
message = "root from {ip}"
"#,
        );
        let root = |ip: &str| {
            format!(
                "Mar  1 10:00:00 h1 sshd[1]: Accepted password for root from {ip} port 1 ssh2\n"
            )
        };
        env.ingest(
            &["-s", "auth", "--year", "2024"],
            root("198.51.100.1").as_bytes(),
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        let f = Follower::start(&env, &["--alerts", "-f", "--format", "ndjson"]);
        f.quiet(Duration::from_millis(500));
        env.ingest(
            &["-s", "auth", "--year", "2024"],
            root("198.51.100.2").as_bytes(),
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        let got = f.take(1);
        assert_eq!(got[0]["rule"], "root-login", "{kind:?}");
        assert_eq!(got[0]["key"], "198.51.100.2", "{kind:?}");
        f.quiet(Duration::from_millis(1500));
    }
}
