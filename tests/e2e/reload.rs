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
