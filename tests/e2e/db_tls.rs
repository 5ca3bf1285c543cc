//! TLS to the database (issue 16): a MariaDB server of the test's own with
//! certificates made in the test, whose root account may connect over TLS
//! only. `ssl-mode=required` connects; `verify-ca` with the right CA
//! connects and with another CA is refused with a clear error;
//! `verify-identity` connects to 127.0.0.1 and to localhost (both in the
//! certificate's names); `[database] ssl_mode`/`ssl_ca` do the same from the
//! config.

use std::process::Output;

use siemstress_tests::certs::Ca;
use siemstress_tests::mariadb::Server;
use siemstress_tests::{Env, Kind};

fn server(ca: &Ca) -> Option<Server> {
    match Server::available() {
        Ok(()) => {
            let (cert, key) = ca.issue("siemstress test server", &["localhost", "127.0.0.1"]);
            Some(Server::start_tls(&cert, &key, &ca.pem(), "siem"))
        }
        Err(why) if std::env::var("CI").is_ok_and(|c| c == "true") => {
            panic!("CI=true but no MariaDB server can be started here: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn ingest(env: &Env, url: &str, lines: &str) -> Output {
    use std::io::Write;
    let mut child = env
        .cmd_url("siemparse", url)
        .args(["-s", "auth"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("siemparse");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tls_to_the_database() {
    let ca = Ca::new("siemstress test CA");
    let Some(srv) = server(&ca) else { return };
    let env = Env::new(Kind::Sqlite);
    let ca_file = env.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other = env.path().join("other-ca.pem");
    std::fs::write(&other, Ca::new("another CA").pem()).unwrap();
    let (ca_s, other_s) = (ca_file.display(), other.display());
    let base = |host: &str| format!("mysql://root@{host}:{}/siem", srv.port);
    let line = "<38>1 2026-12-06T10:00:00.000Z web1 sshd 42 - - Failed password for root from 10.0.0.1 port 22 ssh2\n";

    // The account requires TLS: without it the server refuses.
    let o = ingest(
        &env,
        &format!("{}?ssl-mode=disabled", base("127.0.0.1")),
        line,
    );
    assert!(
        !o.status.success(),
        "plain connection accepted: {}",
        err(&o)
    );

    let mut stored = 0;
    for url in [
        format!("{}?ssl-mode=required", base("127.0.0.1")),
        // The default (preferred) uses TLS when the server offers it.
        base("127.0.0.1"),
        format!("{}?ssl-mode=verify-ca&ssl-ca={ca_s}", base("127.0.0.1")),
        format!("{}?ssl-mode=VERIFY_CA&ssl-ca={ca_s}", base("127.0.0.1")),
        format!(
            "{}?ssl-mode=verify-identity&ssl-ca={ca_s}",
            base("127.0.0.1")
        ),
        format!(
            "{}?ssl-mode=verify-identity&ssl-ca={ca_s}",
            base("localhost")
        ),
    ] {
        let o = ingest(&env, &url, line);
        assert!(o.status.success(), "{url}: {}", err(&o));
        stored += 1;
    }

    // Another CA: refused, saying why.
    for mode in ["verify-ca", "verify-identity"] {
        let url = format!("{}?ssl-mode={mode}&ssl-ca={other_s}", base("127.0.0.1"));
        let o = ingest(&env, &url, line);
        let e = err(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {e}");
        assert!(e.contains("TLS") && e.contains("ssl-ca"), "{url}: {e}");
        assert!(e.to_lowercase().contains("certificate"), "{url}: {e}");
    }
    // Mistakes in the options are named.
    for (url, says) in [
        (
            format!("{}?ssl-mode=verify", base("127.0.0.1")),
            "unknown ssl-mode",
        ),
        (
            format!(
                "{}?ssl-mode=verify-ca&ssl-ca=/nonexistent/ca.pem",
                base("127.0.0.1")
            ),
            "no such file",
        ),
    ] {
        let o = ingest(&env, &url, line);
        let e = err(&o);
        assert_eq!(o.status.code(), Some(2), "{url}: {e}");
        assert!(e.contains(says), "{url}: {e}");
    }

    // From the config: ssl_mode and ssl_ca (relative to the config file).
    env.config(&format!(
        "[database]\nurl = \"{}\"\nssl_mode = \"verify-identity\"\nssl_ca = \"ca.pem\"\n",
        base("localhost")
    ));
    let out = env
        .cmd_url("siemquery", &base("localhost"))
        .args(["-s", "auth", "--last", "100000d", "--format", "ndjson"])
        .output()
        .expect("siemquery");
    // --db without TLS options: the config's apply.
    assert!(out.status.success(), "{}", err(&out));
    let shown = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(shown, stored, "{}", String::from_utf8_lossy(&out.stdout));
    env.config("[database]\nssl_mode = \"verify-identity\"\nssl_ca = \"other-ca.pem\"\n");
    let o = ingest(&env, &base("localhost"), line);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    env.config("[database]\nssl_mode = \"sometimes\"\n");
    let o = ingest(&env, &base("localhost"), line);
    let e = err(&o);
    assert!(
        e.contains("database.ssl_mode") && e.contains("verify-identity"),
        "{e}"
    );
}
