//! SIGHUP (issue 18): `systemctl reload` and logrotate's `postrotate` send
//! it. Neither daemon exits: siemparse (stdin, `--follow`, `--listen`)
//! re-reads the config and decoders and reopens what it follows;
//! siemtrigger re-reads config, rules and actions. An invalid new config is
//! reported and the running one kept.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siemstress_tests::{Env, Kind, kinds};

/// A running daemon and what it printed on stderr.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(env: &Env, name: &str, args: &[&str], stdin: Stdio) -> Self {
        let mut child = env
            .cmd(name)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let text = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut t = text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        Self { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr holds `needle` `n` times; fails if the daemon exits.
    fn wait_stderr(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stderr().matches(needle).count() < n {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "exited with {status} waiting for {needle:?}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGHUP, then waits for the `n`th answer `needle`.
    fn hup(&mut self, needle: &str, n: usize) {
        self.signal(libc::SIGHUP);
        self.wait_stderr(needle, n);
    }

    /// SIGTERM; asserts exit 0 and returns stderr.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits for the exit; asserts 0 and returns stderr.
    fn wait_exit(&mut self) -> String {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let err = self.stderr();
        assert!(status.success(), "exited with {status}: {err}");
        err
    }
}

impl Drop for Daemon {
    /// A failed test leaves no daemon behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `table` holds `n` rows.
fn wait_rows(env: &Env, table: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let exists = match env.kind {
        Kind::Sqlite => format!("SELECT COUNT(*) FROM sqlite_master WHERE name = '{table}'"),
        Kind::Mysql => format!(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
    };
    let mut have = 0;
    loop {
        // The database and the table appear with siemparse's start.
        let ready = env.kind == Kind::Mysql || env.path().join("test.db").exists();
        if ready && env.scalar(&exists) > 0 {
            have = env.scalar(&format!("SELECT COUNT(*) FROM {table}"));
            if have >= n {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{table}: {have} of {n} rows");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const RELOADED: &str = "siemparse: SIGHUP: config and decoders reloaded";
const KEPT: &str = "siemparse: SIGHUP: reload failed, keeping the current config and decoders";

/// The first config: UTC, built-in decoders.
const V1: &str = "[section.t]\ntimezone = \"UTC\"\n";

/// The second: five hours east, and a decoder of the test's own.
fn v2(env: &Env) -> String {
    std::fs::write(
        env.path().join("hello.toml"),
        "[[decoder]]\nname = \"hello\"\nprograms = [\"app\"]\nprefilter = \"hello \"\n\
         regex = '^hello (?P<greeted>\\S+)$'\n\n[[decoder.example]]\nmessage = \"hello bob\"\n\
         fields = { greeted = \"bob\" }\n",
    )
    .unwrap();
    "[section.t]\ntimezone = \"Asia/Karachi\"\n\n[decoders]\npaths = [\"hello.toml\"]\n".into()
}

/// Configs a reload must refuse, with what the error names.
fn invalid() -> [(&'static str, &'static str); 3] {
    [
        ("[section.t]\ntimezon = \"UTC\"\n", "timezon"),
        (
            "[section.t]\ntimezone = \"UTC\"\ntable = \"other\"\n",
            "restart siemparse",
        ),
        (
            "[section.t]\ntimezone = \"UTC\"\n[decoders]\npaths = [\"nosuch.toml\"]\n",
            "nosuch.toml",
        ),
    ]
}

/// `(ts, greeted)` of the `hello NAME` row: its time, and what the test's
/// decoder took from it (in `extra`).
fn hello(env: &Env, name: &str) -> (String, Option<String>) {
    let r = env.rows(&format!(
        "SELECT ts, extra FROM t WHERE message = 'hello {name}'"
    ));
    assert_eq!(r.len(), 1, "{name}: {r:?}");
    let greeted = r[0][1].as_deref().and_then(|x| {
        let v: serde_json::Value = serde_json::from_str(x).unwrap();
        v["greeted"].as_str().map(str::to_owned)
    });
    (r[0][0].clone().unwrap(), greeted)
}

/// 2026-01-01T05:00:00 as UTC, and as +05:00, in epoch ms.
const AT_UTC: &str = "1767243600000";
const AT_PLUS5: &str = "1767225600000";

/// Checks the rows of a reload run: `alice` before it (UTC, no user), `bob`
/// after the valid one, `carol` after the refused ones (still v2).
fn check_hello(env: &Env) {
    let kind = env.kind;
    assert_eq!(hello(env, "alice"), (AT_UTC.into(), None), "{kind:?}");
    assert_eq!(
        hello(env, "bob"),
        (AT_PLUS5.into(), Some("bob".into())),
        "{kind:?}"
    );
    assert_eq!(
        hello(env, "carol"),
        (AT_PLUS5.into(), Some("carol".into())),
        "{kind:?}"
    );
}

fn line(name: &str) -> String {
    format!("Jan  1 05:00:00 h app[1]: hello {name}\n")
}

/// Valid, then invalid reloads of a running siemparse; `send` delivers a
/// line, `rows` is how many the table must then hold.
fn reload_round(env: &Env, d: &mut Daemon, send: &mut dyn FnMut(&str)) {
    send(&line("alice"));
    wait_rows(env, "t", 1);
    let v2 = v2(env);
    env.config(&v2);
    d.hup(RELOADED, 1);
    send(&line("bob"));
    wait_rows(env, "t", 2);
    for (i, (bad, names)) in invalid().iter().enumerate() {
        env.config(bad);
        d.hup(KEPT, i + 1);
        // The last answer (a TOML error takes several lines).
        let err = d.stderr();
        let last = &err[err.rfind(KEPT).unwrap()..];
        assert!(last.contains(names), "{names}: {err}");
    }
    send(&line("carol"));
    wait_rows(env, "t", 3);
    env.config(&v2);
}

#[test]
fn i18_sighup_reloads_siemparse_follow() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(V1);
        let log = env.path().join("app.log");
        std::fs::write(&log, "").unwrap();
        let mut d = Daemon::start(
            &env,
            "siemparse",
            &[
                "-s",
                "t",
                "--year",
                "2026",
                "--follow",
                log.to_str().unwrap(),
            ],
            Stdio::null(),
        );
        let mut send = |l: &str| {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(l.as_bytes()).unwrap();
        };
        reload_round(&env, &mut d, &mut send);
        // logrotate: rename, create, SIGHUP: the new file is followed.
        std::fs::rename(&log, env.path().join("app.log.1")).unwrap();
        std::fs::write(&log, line("dave")).unwrap();
        d.hup(RELOADED, 2);
        wait_rows(&env, "t", 4);
        d.stop();
        check_hello(&env);
        assert_eq!(hello(&env, "dave").1.as_deref(), Some("dave"), "{kind:?}");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM t"), 4, "{kind:?}");
    }
}

#[test]
fn i18_sighup_reloads_siemparse_stdin() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(V1);
        let mut d = Daemon::start(
            &env,
            "siemparse",
            &["-s", "t", "--year", "2026"],
            Stdio::piped(),
        );
        let mut input = d.child.stdin.take().unwrap();
        let mut send = |l: &str| {
            input.write_all(l.as_bytes()).unwrap();
            input.flush().unwrap();
        };
        reload_round(&env, &mut d, &mut send);
        drop(input);
        d.wait_exit();
        check_hello(&env);
    }
}

#[test]
fn i18_sighup_reloads_siemparse_listen() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(V1);
        let mut d = Daemon::start(
            &env,
            "siemparse",
            &["-s", "t", "--year", "2026", "--listen", "udp://127.0.0.1:0"],
            Stdio::null(),
        );
        d.wait_stderr("siemparse: listening on udp://", 1);
        let err = d.stderr();
        let addr: std::net::SocketAddr = err
            .lines()
            .find_map(|l| l.strip_prefix("siemparse: listening on udp://"))
            .unwrap()
            .parse()
            .unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut send = |l: &str| {
            sock.send_to(l.trim_end().as_bytes(), addr).unwrap();
        };
        reload_round(&env, &mut d, &mut send);
        // A route to a section siemparse has no table open for: refused.
        env.config(&format!("{}\n[listen.program]\napp = \"u\"\n", v2(&env)));
        d.hup(KEPT, 4);
        assert!(d.stderr().contains("section u"), "{}", d.stderr());
        send(&line("erin"));
        wait_rows(&env, "t", 4);
        d.stop();
        check_hello(&env);
    }
}

const TRIGGER_RELOADED: &str = "siemtrigger: SIGHUP: reloaded";
const TRIGGER_KEPT: &str =
    "siemtrigger: SIGHUP: reload failed, keeping the current rules and actions";

/// A threshold rule of 3 events within an hour per `{ip}`.
fn threshold_rule(name: &str, message: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\ntype = \"threshold\"\ntable = \"auth\"\n\
         match = {{ process = \"app\", regex = '{name} from (?P<ip>\\S+)' }}\nkey = \"{{ip}}\"\n\
         window = \"1h\"\nthreshold = 3\nmessage = \"{message}\"\n\n"
    )
}

fn single_rule(name: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\ntype = \"single\"\ntable = \"auth\"\n\
         match = {{ process = \"app\", regex = '{name} here' }}\nmessage = \"{name}\"\n\n"
    )
}

fn app_lines(second: u32, what: &[&str]) -> Vec<u8> {
    what.iter()
        .map(|w| format!("Jan  1 00:00:{second:02} h app[1]: {w}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Waits until `sql` (a count) is at least `n`.
fn wait_count(env: &Env, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = env.scalar(sql);
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {have} of {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alert_counts(env: &Env) -> Vec<(String, String)> {
    env.rows("SELECT rule, COUNT(*) FROM alerts GROUP BY rule ORDER BY rule")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

#[test]
fn i18_sighup_reloads_siemtrigger() {
    for kind in kinds() {
        let env = Env::new(kind);
        let head = "[section.auth]\ntimezone = \"UTC\"\n\n";
        env.config(&format!(
            "{head}{}{}{}",
            threshold_rule("kept", "kept {ip}"),
            threshold_rule("edited", "edited {ip}"),
            single_rule("removed"),
        ));
        let ingest = |second, what: &[&str]| {
            env.ingest(&["-s", "auth", "--year", "2026"], &app_lines(second, what));
        };
        ingest(
            0,
            &[
                "kept from 10.0.0.1",
                "kept from 10.0.0.1",
                "edited from 10.0.0.2",
                "edited from 10.0.0.2",
            ],
        );
        let mut d = Daemon::start(
            &env,
            "siemtrigger",
            &["--interval", "1s", "--settle", "0s"],
            Stdio::null(),
        );
        // Rows up to id n evaluated: the position covers them and the
        // watermark has passed their time.
        let consumed = |n: i64| {
            format!(
                "SELECT COUNT(*) FROM trigger_progress WHERE event_table = 'auth' AND last_id >= {n} \
                 AND wm > (SELECT MAX(ts) FROM auth WHERE id <= {n})"
            )
        };
        wait_count(&env, &consumed(4), 3);
        assert_eq!(alert_counts(&env), [], "{kind:?}");

        // Valid: "kept" unchanged (its open window stays), "edited" changed
        // (its windows are dropped, its progress kept), "removed" gone,
        // "added" new.
        let v2 = format!(
            "{head}{}{}{}",
            threshold_rule("kept", "kept {ip}"),
            threshold_rule("edited", "edited {ip} (v2)"),
            single_rule("added"),
        );
        env.config(&v2);
        d.hup(TRIGGER_RELOADED, 1);
        ingest(
            2,
            &[
                "kept from 10.0.0.1",
                "edited from 10.0.0.2",
                "removed here",
                "added here",
            ],
        );
        wait_count(&env, &consumed(8), 3);
        let want = |added: &str| {
            vec![
                ("added".to_owned(), added.to_owned()),
                ("kept".to_owned(), "1".to_owned()),
            ]
        };
        assert_eq!(alert_counts(&env), want("1"), "{kind:?}");

        // Invalid: an unknown rule type, and a bad exec argument; the
        // running set stays and keeps working.
        for (i, (bad, names)) in [
            (
                format!("{v2}[[rule]]\nname = \"broken\"\ntype = \"nosuch\"\n"),
                "nosuch",
            ),
            (
                format!("{v2}[actions.x]\ntype = \"exec\"\nprogram = \"/bin/true\"\nargs = [\"{{key}}\"]\n"),
                "[actions.x]",
            ),
        ]
        .iter()
        .enumerate()
        {
            env.config(bad);
            d.hup(TRIGGER_KEPT, i + 1);
            let err = d.stderr();
            let last = &err[err.rfind(TRIGGER_KEPT).unwrap()..];
            assert!(last.contains(names), "{kind:?} {names}: {err}");
        }
        ingest(3, &["added here"]);
        wait_count(&env, "SELECT COUNT(*) FROM alerts WHERE rule = 'added'", 2);
        let err = d.stop();
        assert_eq!(alert_counts(&env), want("2"), "{kind:?}: {err}");
    }
}
