//! Least privilege on MariaDB (issue 18), tests named `i18_...`: the roles
//! of `contrib/mariadb/roles.sql` and `grants.sql`, given to four accounts in
//! a database of their own; each tool works with its account's grants, and a
//! collector cannot read, change or delete event rows.

use std::path::Path;
use std::process::{Command, Stdio};

use siemstress_tests::bin;

/// The root URL of the test server (`None`: MariaDB not under test).
fn root_url() -> Option<String> {
    std::env::var("SIEMSTRESS_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A database with the siemstress roles and four accounts; dropped (with its
/// roles and accounts) at the end.
struct Deployment {
    root: String,
    server: String,
    db: String,
    password: String,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

const ROLES: [&str; 4] = ["admin", "collector", "trigger", "reader"];

impl Deployment {
    fn new(root: String) -> Self {
        let server = root.rsplit_once('/').unwrap().0.to_owned();
        let db = format!(
            "siempriv_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let password = format!("pw{:016x}", rand::random::<u64>());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = Self {
            root,
            server,
            db,
            password,
            rt,
            dir: tempfile::tempdir().unwrap(),
        };
        d.root_sql(&format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4", d.db))
            .unwrap();
        d.run_file("roles.sql", &d.root_db_url()).unwrap();
        for role in ROLES {
            let (user, role) = (d.user(role), format!("{}_{role}", d.db));
            for q in [
                format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{}'", d.password),
                format!("GRANT `{role}` TO '{user}'@'%'"),
                format!("SET DEFAULT ROLE `{role}` FOR '{user}'@'%'"),
            ] {
                d.root_sql(&q).unwrap();
            }
        }
        d
    }

    fn user(&self, role: &str) -> String {
        format!("{}_{}", self.db, &role[..1])
    }

    fn root_db_url(&self) -> String {
        format!("{}/{}", self.server, self.db)
    }

    /// The URL of the account of `role`.
    fn url(&self, role: &str) -> String {
        let (scheme, host) = self.server.split_once("://").unwrap();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        format!(
            "{scheme}://{}:{}@{host}/{}",
            self.user(role),
            self.password,
            self.db
        )
    }

    /// Runs `sql` on `url`; the error text if it fails.
    fn sql_on(&self, url: &str, sql: &str) -> Result<(), String> {
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn root_sql(&self, sql: &str) -> Result<(), String> {
        self.sql_on(&self.root, sql)
    }

    /// A count, read as root.
    fn count(&self, sql: &str) -> i64 {
        self.rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(&self.root_db_url())
                .await
                .unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Runs `contrib/mariadb/FILE` on `url`, with the database's name for
    /// `siemstress`, as an admin would.
    fn run_file(&self, file: &str, url: &str) -> Result<(), String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contrib/mariadb")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("siemstress", &self.db);
        self.sql_on(url, &text)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Runs tool `name` as the account of `role`: (exit code, stdout, stderr).
    fn tool(&self, role: &str, name: &str, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new(bin(name))
            .current_dir(self.dir.path())
            .env_remove("SIEMSTRESS_CONFIG")
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("TZ", "UTC")
            .arg("-c")
            .arg(self.dir.path().join("siemstress.toml"))
            .arg("--db")
            .arg(self.url(role))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for role in ROLES {
            let _ = self.root_sql(&format!("DROP USER IF EXISTS '{}'@'%'", self.user(role)));
            let _ = self.root_sql(&format!("DROP ROLE IF EXISTS `{}_{role}`", self.db));
        }
        let _ = self.root_sql(&format!("DROP DATABASE IF EXISTS `{}`", self.db));
    }
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("Jan  1 00:00:{:02} web01 sshd[100]: Failed password for root from 192.0.2.{i} port 22 ssh2\n", i % 60)
        })
        .collect()
}

#[test]
fn i18_each_role_works_with_only_its_grants() {
    let Some(root) = root_url() else {
        eprintln!("skipped: SIEMSTRESS_TEST_MYSQL_URL is not set");
        return;
    };
    let d = Deployment::new(root);
    std::fs::write(
        d.dir.path().join("siemstress.toml"),
        r#"[section.auth]
table = "auth"
timezone = "UTC"

[section.web]
table = "web"

[[rule]]
name = "root-fail"
type = "single"
table = "auth"
match = { process = "sshd", regex = 'Failed password for root from (?P<ip>\S+)' }
key = "{ip}"
message = "failure from {ip}"
"#,
    )
    .unwrap();

    // admin: migrates, creates the section's tables, grants INSERT on them.
    let (code, _, err) = d.tool("admin", "siemparse", &["--create-section", "auth"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("INSERT on it granted to role {}_collector", d.db)),
        "{err}"
    );
    d.run_file("grants.sql", &d.url("admin")).unwrap();

    // collector: stdin and --follow --once; no table creation.
    let (code, _, err) = d.tool(
        "collector",
        "siemparse",
        &["-s", "auth", "--year", "2026"],
        lines(5).as_bytes(),
    );
    assert_eq!(code, 0, "collector, stdin: {err}");
    let log = d.dir.path().join("auth.log");
    std::fs::write(&log, lines(7)).unwrap();
    let follow = [
        "-s",
        "auth",
        "--year",
        "2026",
        "--follow",
        log.to_str().unwrap(),
        "--once",
    ];
    let (code, _, err) = d.tool("collector", "siemparse", &follow, b"");
    assert_eq!(code, 0, "collector, --follow: {err}");
    let (code, _, err) = d.tool("collector", "siemparse", &follow, b"");
    assert_eq!(code, 0, "collector, --follow again: {err}");
    assert_eq!(d.count("SELECT COUNT(*) FROM auth"), 12);
    let (code, _, err) = d.tool("collector", "siemparse", &["-s", "web"], b"x\n");
    assert_eq!(code, 2, "a collector creates no table: {err}");
    assert!(err.contains("--create-section"), "{err}");

    // The collector account cannot read, change or delete event rows, nor
    // write alerts or queue actions.
    let collector = d.url("collector");
    for q in [
        "SELECT * FROM auth",
        "SELECT COUNT(*) FROM auth",
        "UPDATE auth SET message = 'forged'",
        "DELETE FROM auth",
        "DROP TABLE auth",
        "SELECT * FROM alerts",
        "INSERT INTO alerts (rule, severity, `key`, ts, first_ts, count, message, created, event_table) VALUES ('x', 'high', 'k', 0, 0, 1, 'm', 0, 'auth')",
        "INSERT INTO action_runs (alert_id, action, status, attempts, next_try, updated) VALUES (1, 'x', 'pending', 0, 0, 0)",
    ] {
        let e = d.sql_on(&collector, q).expect_err(q);
        assert!(e.contains("denied"), "{q}: {e}");
    }
    assert_eq!(
        d.count("SELECT COUNT(*) FROM auth WHERE message = 'forged'"),
        0
    );

    // trigger: reads events, writes alerts and its state.
    let (code, out, err) = d.tool(
        "trigger",
        "siemtrigger",
        &["--once", "--format", "json", "-v"],
        b"",
    );
    assert_eq!(code, 0, "trigger: {err}");
    assert_eq!(out.lines().count(), 12, "{out}");
    assert_eq!(d.count("SELECT COUNT(*) FROM alerts"), 12);
    let e = d
        .sql_on(&d.url("trigger"), "DELETE FROM auth")
        .expect_err("trigger deletes events");
    assert!(e.contains("denied"), "{e}");

    // reader: searches and lists alerts; writes nothing.
    let (code, out, err) = d.tool(
        "reader",
        "siemquery",
        &[
            "-s",
            "auth",
            "--range",
            "20260101000000-20260102000000",
            "--format",
            "json",
        ],
        b"",
    );
    assert_eq!(code, 0, "reader: {err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 12, "{out}");
    let (code, out, err) = d.tool(
        "reader",
        "siemquery",
        &["--alerts", "--last", "1000w", "--format", "json"],
        b"",
    );
    assert_eq!(code, 0, "reader, alerts: {err}");
    assert!(out.contains("failure from 192.0.2.1"), "{out}");
    for q in [
        "DELETE FROM alerts",
        "UPDATE auth SET message = 'x'",
        "INSERT INTO trigger_lease (name, holder, expires, beats) VALUES ('x', 'y', 0, 0)",
    ] {
        let e = d.sql_on(&d.url("reader"), q).expect_err(q);
        assert!(e.contains("denied"), "{q}: {e}");
    }

    // The admin keeps the search index (the collector cannot read rows).
    let (code, _, err) = d.tool("admin", "siemparse", &["-s", "auth", "--index"], b"");
    assert_eq!(code, 0, "admin --index: {err}");
}

/// The grants in `docs/privileges.md` are the ones of the contrib files.
#[test]
fn i18_documented_grants_are_the_contrib_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/privileges.md")).unwrap();
    let mut n = 0;
    for file in ["roles.sql", "grants.sql"] {
        let sql = std::fs::read_to_string(root.join("contrib/mariadb").join(file)).unwrap();
        for stmt in sql
            .lines()
            .filter(|l| l.starts_with("GRANT") || l.starts_with("CREATE ROLE"))
        {
            assert!(
                doc.contains(stmt),
                "docs/privileges.md lacks `{stmt}` of {file}"
            );
            n += 1;
        }
    }
    assert!(n > 10, "{n}");
}
