//! Issue 18 "Outages" and issue 16 "Riding out a node failure": the
//! database goes away (a TCP proxy in front of the test's MariaDB is cut:
//! every connection closed, new ones refused) during `siemparse --follow`
//! and `siemtrigger --interval`. Both say so on stderr, wait with backoff,
//! and resume once it is back; every line is stored once, every alert
//! raised once.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use siemstress_tests::proxy::{Proxy, server_of, via};
use siemstress_tests::{Env, Kind, kinds};

const RULES: &str = r#"
[section.auth]
table = "auth"

[[rule]]
name = "failed"
type = "threshold"
table = "auth"
match = { process = ["sshd"], regex = 'Failed password for \S+ from (?P<ip>\S+)' }
key = "{ip}"
window = "60s"
threshold = 1
"#;

/// Line `i`: a failed login from an address of its own (one alert each),
/// with a unique, increasing RFC 5424 time.
fn line(i: usize) -> String {
    format!(
        "<38>1 2026-12-06T10:{:02}:{:02}.{:03}Z web1 sshd 42 - - Failed password for root from \
         10.{}.{}.{} port 22 ssh2\n",
        i / 60_000 % 60,
        i / 1000 % 60,
        i % 1000,
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

fn append(path: &std::path::Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open log");
    let text: String = (from..to).map(line).collect();
    f.write_all(text.as_bytes()).expect("append");
}

/// Runs `siemparse`/`siemtrigger` with `--db url`, stderr into a file.
fn spawn(env: &Env, name: &str, url: &str, args: &[&str], stderr: &str) -> Child {
    let err = std::fs::File::create(env.path().join(stderr)).expect("stderr file");
    env.cmd_url(name, url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn")
}

fn stderr_of(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.path().join(name)).unwrap_or_default()
}

/// Waits until `f` holds (polling), or panics after `limit` with `what`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(env: &Env, sql: &str) -> i64 {
    env.scalar(sql)
}

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Waits for `child` to exit; its status code, and how long it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return (s.code().unwrap_or(-1), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn follow_and_trigger_ride_out_an_outage() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    env.config(RULES);
    let proxy = Proxy::start(&server_of(&env.url));
    let url = via(&env.url, &format!("127.0.0.1:{}", proxy.port));
    let log = env.path().join("auth.log");
    append(&log, 0, 2000);
    let log_arg = log.to_str().expect("path");
    let mut parse = spawn(
        &env,
        "siemparse",
        &url,
        &["-s", "auth", "--follow", log_arg],
        "parse.err",
    );
    let stored = || count(&env, "SELECT COUNT(*) FROM auth");
    wait_for(Duration::from_secs(60), "the first lines", || {
        env.rows("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'auth'")[0][0].as_deref() == Some("1")
            && stored() == 2000
    });
    let mut trigger = spawn(
        &env,
        "siemtrigger",
        &url,
        &["--interval", "1s", "--settle", "0s"],
        "trigger.err",
    );
    let alerts = || count(&env, "SELECT COUNT(*) FROM alerts");
    wait_for(Duration::from_secs(60), "the first alerts", || {
        alerts() == 2000
    });

    // Two outages; lines are appended during each.
    let mut total = 2000;
    let mut resume = Vec::new();
    for round in 0..2 {
        proxy.cut();
        append(&log, total, total + 3000);
        total += 3000;
        for name in ["parse.err", "trigger.err"] {
            wait_for(Duration::from_secs(30), name, || {
                stderr_of(&env, name)
                    .matches("database unavailable")
                    .count()
                    == round + 1
            });
        }
        // Waiting, with backoff: a few more seconds change nothing.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            stored(),
            2000 + 3000 * round as i64,
            "nothing stored while cut"
        );
        for name in ["parse.err", "trigger.err"] {
            let err = stderr_of(&env, name);
            assert_eq!(
                err.matches("database unavailable").count(),
                round + 1,
                "{name}: {err}"
            );
        }
        let restored = Instant::now();
        proxy.restore();
        wait_for(
            Duration::from_secs(60),
            "the lines after the outage",
            || stored() == total as i64,
        );
        resume.push(restored.elapsed());
        wait_for(
            Duration::from_secs(60),
            "the alerts after the outage",
            || alerts() == total as i64,
        );
    }
    eprintln!("outage test: all lines stored again after {resume:?}");
    // Settled: nothing more arrives.
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&parse);
    sigterm(&trigger);
    let (code_p, _) = wait_exit(&mut parse, Duration::from_secs(30));
    let (code_t, _) = wait_exit(&mut trigger, Duration::from_secs(30));
    let (perr, terr) = (stderr_of(&env, "parse.err"), stderr_of(&env, "trigger.err"));
    eprintln!("siemparse:\n{perr}\nsiemtrigger:\n{terr}");
    assert_eq!(
        (code_p, code_t),
        (0, 0),
        "siemparse: {perr}\nsiemtrigger: {terr}"
    );
    for err in [&perr, &terr] {
        assert_eq!(err.matches("database available again").count(), 2, "{err}");
    }
    let n = total as i64;
    assert_eq!(stored(), n, "every line once");
    assert_eq!(count(&env, "SELECT COUNT(DISTINCT message) FROM auth"), n);
    assert_eq!(alerts(), n, "every alert once: {terr}");
    assert_eq!(count(&env, "SELECT COUNT(DISTINCT `key`) FROM alerts"), n);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM alert_events"), n);
}

/// An outage while an action runs: the outcome is recorded once the
/// database is back (the wait of the cycle, with its message), so the
/// action does not run again when its claim runs out (it stayed `running`
/// until its deadline, timeout + 60 s, and then ran a second time).
#[test]
fn an_outage_while_an_action_runs_records_its_outcome_once_back() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    let ran = env.path().join("ran");
    let act = env.path().join("act.sh");
    // Long enough for the proxy to be cut while it runs.
    std::fs::write(
        &act,
        format!(
            "#!/bin/sh\necho \"$SIEM_KEY\" >> '{}'\nsleep 3\n",
            ran.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&act, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    env.config(&format!(
        "[section.auth]\ntable = \"auth\"\n\n[actions.act]\ntype = \"exec\"\nprogram = \"{}\"\n\
         timeout = \"10s\"\n\n[[rule]]\nname = \"failed\"\ntype = \"single\"\ntable = \"auth\"\n\
         match = {{ process = [\"sshd\"], regex = 'Failed password for \\S+ from (?P<ip>\\S+)' }}\n\
         key = \"{{ip}}\"\nactions = [\"act\"]\n",
        act.display()
    ));
    let proxy = Proxy::start(&server_of(&env.url));
    let url = via(&env.url, &format!("127.0.0.1:{}", proxy.port));
    env.ingest(&["-s", "auth"], line(0).as_bytes());
    let mut trigger = spawn(
        &env,
        "siemtrigger",
        &url,
        &["--interval", "1s", "--settle", "0s"],
        "trigger.err",
    );
    wait_for(Duration::from_secs(60), "the action to start", || {
        ran.exists()
    });
    proxy.cut();
    wait_for(Duration::from_secs(30), "the outage message", || {
        stderr_of(&env, "trigger.err").contains("database unavailable")
    });
    // The action has ended by now, its outcome not recorded.
    std::thread::sleep(Duration::from_secs(4));
    proxy.restore();
    let status = || {
        env.rows("SELECT status, attempts FROM action_runs")
            .into_iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r[0].as_deref().unwrap_or("-"),
                    r[1].as_deref().unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(45), "the outcome recorded", || {
        status() == ["ok/1"]
    });
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&trigger);
    let (code, _) = wait_exit(&mut trigger, Duration::from_secs(30));
    let err = stderr_of(&env, "trigger.err");
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(), ["ok/1"], "{err}");
    let runs = std::fs::read_to_string(&ran).expect("ran");
    assert_eq!(
        runs.lines().count(),
        1,
        "the action ran once: {runs}\n{err}"
    );
    assert!(err.contains("database available again"), "{err}");
}

/// SIGTERM while siemparse waits for the database: it ends promptly, and
/// what it had committed stays; the next run stores the rest.
#[test]
fn sigterm_during_an_outage_ends_promptly() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    env.config(RULES);
    let proxy = Proxy::start(&server_of(&env.url));
    let url = via(&env.url, &format!("127.0.0.1:{}", proxy.port));
    let log = env.path().join("auth.log");
    append(&log, 0, 500);
    let log_arg = log.to_str().expect("path");
    let args = ["-s", "auth", "--follow", log_arg];
    let mut parse = spawn(&env, "siemparse", &url, &args, "parse.err");
    let stored = || count(&env, "SELECT COUNT(*) FROM auth");
    wait_for(Duration::from_secs(60), "the first lines", || {
        env.rows("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'auth'")[0][0].as_deref() == Some("1")
            && stored() == 500
    });
    proxy.cut();
    append(&log, 500, 1000);
    wait_for(Duration::from_secs(30), "the outage message", || {
        stderr_of(&env, "parse.err").contains("database unavailable")
    });
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&parse);
    let (code, took) = wait_exit(&mut parse, Duration::from_secs(30));
    let err = stderr_of(&env, "parse.err");
    assert_eq!(code, 0, "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
    assert!(
        err.contains("stopped while the database was unavailable"),
        "{err}"
    );
    assert_eq!(stored(), 500);
    proxy.restore();
    let mut again = spawn(
        &env,
        "siemparse",
        &url,
        &["-s", "auth", "--follow", log_arg, "--once"],
        "again.err",
    );
    let (code, _) = wait_exit(&mut again, Duration::from_secs(60));
    assert_eq!(code, 0, "{}", stderr_of(&env, "again.err"));
    assert_eq!(stored(), 1000);
    assert_eq!(
        count(&env, "SELECT COUNT(DISTINCT message) FROM auth"),
        1000
    );
}

/// A free port of 127.0.0.1 that nothing listens on (connecting is refused).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Several nodes in the URL (issue 16): the first that answers is used, a
/// closed one is passed over, and a malformed list is refused with the
/// URL named, its password redacted.
#[test]
fn several_nodes_in_the_url() {
    for kind in kinds() {
        let env = Env::new(kind);
        let out = env
            .cmd_url("siemquery", "mysql://u:secret@h1:3306,h2:x/db")
            .args(["--last", "1h"])
            .output()
            .expect("siemquery");
        let (code, err) = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_ne!(code, 0);
        assert!(
            err.contains("mysql://u:***@h1:3306,h2:x/db") && err.contains("node 2"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        if kind != Kind::Mysql {
            continue;
        }
        let real = server_of(&env.url);
        let url = via(&env.url, &format!("127.0.0.1:{},{real}", closed_port()));
        env.config(RULES);
        let input: String = (0..100).map(line).collect();
        let out = env
            .cmd_url("siemparse", &url)
            .args(["-s", "auth"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(input.as_bytes())?;
                c.wait_with_output()
            })
            .expect("siemparse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("connection refused") && err.contains("trying the next"),
            "{err}"
        );
        assert_eq!(count(&env, "SELECT COUNT(*) FROM auth"), 100);
        // Every node closed: one error naming each.
        let dead = via(
            &env.url,
            &format!("127.0.0.1:{},127.0.0.1:{}", closed_port(), closed_port()),
        );
        let out = env
            .cmd_url("siemquery", &dead)
            .args(["--last", "1h"])
            .output()
            .expect("siemquery");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("no node answers"), "{err}");
    }
}

/// Two "nodes" (two proxies in front of the test's MariaDB): the first is
/// cut for good during `siemparse --follow` and `siemtrigger --interval`,
/// and both go on through the second; every line and alert once.
#[test]
fn failover_to_the_next_node() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    env.config(RULES);
    let real = server_of(&env.url);
    let (p1, p2) = (Proxy::start(&real), Proxy::start(&real));
    let url = via(
        &env.url,
        &format!("127.0.0.1:{},127.0.0.1:{}", p1.port, p2.port),
    );
    let log = env.path().join("auth.log");
    append(&log, 0, 1000);
    let log_arg = log.to_str().expect("path");
    let mut parse = spawn(
        &env,
        "siemparse",
        &url,
        &["-s", "auth", "--follow", log_arg],
        "parse.err",
    );
    let stored = || count(&env, "SELECT COUNT(*) FROM auth");
    wait_for(Duration::from_secs(60), "the first lines", || {
        env.rows("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'auth'")[0][0].as_deref() == Some("1")
            && stored() == 1000
    });
    let mut trigger = spawn(
        &env,
        "siemtrigger",
        &url,
        &["--interval", "1s", "--settle", "0s"],
        "trigger.err",
    );
    let alerts = || count(&env, "SELECT COUNT(*) FROM alerts");
    wait_for(Duration::from_secs(60), "the first alerts", || {
        alerts() == 1000
    });
    assert_eq!(p2.connections(), 0, "all on the first node");
    p1.cut();
    append(&log, 1000, 3000);
    wait_for(Duration::from_secs(60), "the lines through node 2", || {
        stored() == 3000
    });
    wait_for(Duration::from_secs(60), "the alerts through node 2", || {
        alerts() == 3000
    });
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&parse);
    sigterm(&trigger);
    let (code_p, _) = wait_exit(&mut parse, Duration::from_secs(30));
    let (code_t, _) = wait_exit(&mut trigger, Duration::from_secs(30));
    let (perr, terr) = (stderr_of(&env, "parse.err"), stderr_of(&env, "trigger.err"));
    eprintln!("siemparse:\n{perr}\nsiemtrigger:\n{terr}");
    assert_eq!(
        (code_p, code_t),
        (0, 0),
        "siemparse: {perr}\nsiemtrigger: {terr}"
    );
    let moved = format!("connecting to 127.0.0.1:{}", p2.port);
    assert!(perr.contains(&moved), "{perr}");
    assert!(terr.contains(&moved), "{terr}");
    assert!(p2.connections() > 0);
    assert_eq!(stored(), 3000);
    assert_eq!(
        count(&env, "SELECT COUNT(DISTINCT message) FROM auth"),
        3000
    );
    assert_eq!(alerts(), 3000);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM alert_events"), 3000);
}

/// The connection is lost after COMMIT reached the server and before its
/// answer came back (an ambiguous commit): siemparse looks for the batch
/// before writing it again, and siemtrigger starts again from its stored
/// progress, so nothing is stored twice.
#[test]
fn a_lost_commit_answer_stores_nothing_twice() {
    if !kinds().contains(&Kind::Mysql) {
        return;
    }
    let env = Env::new(Kind::Mysql);
    env.config(RULES);
    let real = server_of(&env.url);
    // One proxy each: the cut catches the COMMIT of the tool under test.
    let (pp, pt) = (Proxy::start(&real), Proxy::start(&real));
    let purl = via(&env.url, &format!("127.0.0.1:{}", pp.port));
    let turl = via(&env.url, &format!("127.0.0.1:{}", pt.port));
    let log = env.path().join("auth.log");
    append(&log, 0, 1000);
    let log_arg = log.to_str().expect("path");
    // The search index stays off: only the writer's COMMITs go through.
    let err = std::fs::File::create(env.path().join("parse.err")).expect("stderr file");
    let mut parse = env
        .cmd_url("siemparse", &purl)
        .args(["-s", "auth", "--follow", log_arg])
        .env("SIEMSTRESS_GREP_INDEX", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("siemparse");
    let stored = || count(&env, "SELECT COUNT(*) FROM auth");
    wait_for(Duration::from_secs(60), "the first lines", || {
        env.rows("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'auth'")[0][0].as_deref() == Some("1")
            && stored() == 1000
    });
    std::thread::sleep(Duration::from_secs(1));
    // The server may not have run the COMMIT when the connection closed
    // (then the batch is written again, rightly): up to 5 rounds, until one
    // COMMIT did run and its batch was found.
    let said = || stderr_of(&env, "parse.err");
    let found = "had been stored; not writing it again";
    let mut lines = 1000;
    for _ in 0..5 {
        pp.cut_after_commit();
        append(&log, lines, lines + 500);
        lines += 500;
        wait_for(Duration::from_secs(30), "the cut", || pp.cut_done());
        std::thread::sleep(Duration::from_secs(1));
        pp.restore();
        wait_for(Duration::from_secs(60), "the lines after the cut", || {
            stored() >= lines as i64 || parse.try_wait().ok().flatten().is_some()
        });
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(stored(), lines as i64, "{}", said());
        if said().contains(found) {
            break;
        }
    }
    let perr = said();
    assert!(perr.contains(found), "{perr}");
    assert_eq!(
        count(&env, "SELECT COUNT(DISTINCT message) FROM auth"),
        lines as i64
    );
    // At least 2000 lines before the trigger's part.
    append(&log, lines, 2000.max(lines));
    lines = 2000.max(lines);
    wait_for(Duration::from_secs(60), "the lines", || {
        stored() == lines as i64
    });

    let mut trigger = spawn(
        &env,
        "siemtrigger",
        &turl,
        &["--interval", "1s", "--settle", "0s", "--chunk", "500"],
        "trigger.err",
    );
    let alerts = || count(&env, "SELECT COUNT(*) FROM alerts");
    wait_for(Duration::from_secs(60), "the first alerts", || {
        alerts() == lines as i64
    });
    pt.cut_after_commit();
    append(&log, lines, lines + 1000);
    lines += 1000;
    wait_for(Duration::from_secs(30), "the cut", || pt.cut_done());
    std::thread::sleep(Duration::from_secs(1));
    pt.restore();
    wait_for(Duration::from_secs(60), "the lines", || {
        stored() == lines as i64
    });
    wait_for(Duration::from_secs(60), "the alerts after the cut", || {
        stderr_of(&env, "trigger.err").contains("available again") && alerts() >= lines as i64
    });
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&parse);
    sigterm(&trigger);
    let (code_p, _) = wait_exit(&mut parse, Duration::from_secs(30));
    let (code_t, _) = wait_exit(&mut trigger, Duration::from_secs(30));
    let terr = stderr_of(&env, "trigger.err");
    assert_eq!((code_p, code_t), (0, 0), "{terr}");
    assert_eq!(stored(), lines as i64);
    assert_eq!(alerts(), lines as i64, "{terr}");
    assert_eq!(
        count(&env, "SELECT COUNT(DISTINCT `key`) FROM alerts"),
        lines as i64
    );
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM alert_events"),
        lines as i64
    );
}
