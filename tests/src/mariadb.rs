//! A MariaDB server of a test's own on 127.0.0.1 (a free port), started
//! the way `galera.rs` starts its nodes (as user `mysql`, in a data
//! directory it owns), here with TLS: `ssl_cert`/`ssl_key`/`ssl_ca` made in
//! the test. Root may connect from 127.0.0.1 without a password, over TLS
//! only (`REQUIRE SSL`), so that a connection that works is one that used
//! TLS.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::galera::{mysql_ids, set_mode};

const MARIADBD: &str = "/usr/sbin/mariadbd";

/// A running server; dropped, it is killed and its files removed.
pub struct Server {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// True when a server can be started here (mariadbd, mariadb-install-db,
    /// a `mysql` user); else the reason.
    pub fn available() -> Result<(), String> {
        if !Path::new(MARIADBD).exists() {
            return Err(format!(
                "{MARIADBD} is missing (apt-get install mariadb-server)"
            ));
        }
        if mysql_ids().is_none() {
            return Err("no user mysql".into());
        }
        Ok(())
    }

    /// Starts a server whose TLS certificate and key are `cert`/`key`
    /// (PEM) and whose CA is `ca`, with an empty database `db`.
    pub fn start_tls(cert: &str, key: &str, ca: &str, db: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("siemmariadb")
            .tempdir()
            .expect("tempdir");
        let (uid, gid) = mysql_ids().expect("user mysql");
        set_mode(dir.path(), 0o755);
        let d = dir.path();
        // mysql writes its log, socket and pid file here.
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::os::unix::fs::chown(d.join("data"), Some(uid), Some(gid)).unwrap();
        for (name, pem) in [
            ("server.pem", cert),
            ("server-key.pem", key),
            ("ca.pem", ca),
        ] {
            std::fs::write(d.join(name), pem).unwrap();
            std::os::unix::fs::chown(d.join(name), Some(uid), Some(gid)).unwrap();
            set_mode(&d.join(name), 0o600);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dd = d.display();
        let cnf = format!(
            "[mariadbd]
datadir={dd}/data
socket={dd}/mysqld.sock
pid-file={dd}/mysqld.pid
log-error={dd}/error.log
port={port}
bind-address=127.0.0.1
skip-name-resolve
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
ssl_cert={dd}/server.pem
ssl_key={dd}/server-key.pem
ssl_ca={dd}/ca.pem
"
        );
        std::fs::write(d.join("my.cnf"), cnf).unwrap();
        let init = d.join("init.sql");
        std::fs::write(
            &init,
            format!(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
                 ALTER USER 'root'@'127.0.0.1' REQUIRE SSL;\n\
                 GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
                 CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4;\n"
            ),
        )
        .unwrap();
        set_mode(&init, 0o644);
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", d.join("my.cnf").display()))
            .args([
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let child = Command::new(MARIADBD)
            .arg(format!("--defaults-file={}", d.join("my.cnf").display()))
            .arg("--user=mysql")
            .arg(format!("--init-file={}", init.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let mut s = Server {
            port,
            dir,
            child: Some(child),
        };
        s.wait_listening();
        s
    }

    /// Waits until the server accepts TCP connections (and has run its
    /// init file).
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("mariadbd exited with {status}: {}", self.log_tail());
            }
            let log =
                std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            if log.contains("ready for connections")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not ready after 120 s: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of the server's error log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
