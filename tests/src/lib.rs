/*!
Test harness for the end-to-end tests: finds (or builds) the binaries, gives
each test a scratch directory and its own database on every backend under
test, and runs SQL against it to check what the binaries stored.

Backends: SQLite always; MariaDB when `SIEMSTRESS_TEST_MYSQL_URL` is set
(each test gets a fresh database on that server, dropped afterwards). With
`CI=true` and no MariaDB URL, tests fail instead of skipping it.
*/

pub mod certs;
pub mod galera;
pub mod mariadb;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use sqlx::Row;

/// A backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Mysql,
}

/// The backends this run covers.
pub fn kinds() -> Vec<Kind> {
    let mut v = vec![Kind::Sqlite];
    match std::env::var("SIEMSTRESS_TEST_MYSQL_URL") {
        Ok(u) if !u.is_empty() => v.push(Kind::Mysql),
        _ if std::env::var("CI").is_ok_and(|c| c == "true") => {
            panic!(
                "CI=true but SIEMSTRESS_TEST_MYSQL_URL is not set: the MariaDB tests cannot be skipped in CI"
            )
        }
        _ => {}
    }
    v
}

/// Path of a workspace binary, built once if missing.
pub fn bin(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--bins", "--workspace"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    dir.join(name)
}

/// A test's scratch directory and database.
pub struct Env {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub url: String,
    /// Database to drop at the end (MariaDB).
    mysql_db: Option<(String, String)>,
    rt: tokio::runtime::Runtime,
}

impl Env {
    /// A fresh directory, an empty config file and an empty database of `kind`.
    pub fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("siemstress.toml"), "").expect("config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (url, mysql_db) = match kind {
            Kind::Sqlite => (format!("sqlite://{}/test.db", dir.path().display()), None),
            Kind::Mysql => {
                let base = std::env::var("SIEMSTRESS_TEST_MYSQL_URL").expect("mysql url");
                let name = format!(
                    "siemtest_{}_{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                );
                let server = base
                    .rsplit_once('/')
                    .map(|(s, _)| s.to_owned())
                    .expect("url with /db");
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut c = sqlx::MySqlConnection::connect(&base)
                        .await
                        .expect("connect to MariaDB");
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
                    )))
                    .execute(&mut c)
                    .await
                    .expect("create test database");
                });
                (format!("{server}/{name}"), Some((base, name)))
            }
        };
        Self {
            kind,
            dir,
            url,
            mysql_db,
            rt,
        }
    }

    /// Path of the scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config file (`siemstress.toml` in the scratch dir).
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.path().join("siemstress.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// A command for binary `name`, in the scratch dir, with `-c` and `--db`
    /// set and the caller's siemstress environment removed.
    pub fn cmd(&self, name: &str) -> Command {
        self.cmd_url(name, &self.url)
    }

    /// As [`Env::cmd`], with `--db url` (the test's database reached
    /// another way: through a proxy, several nodes, TLS options).
    pub fn cmd_url(&self, name: &str, url: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.current_dir(self.path())
            .env_remove("SIEMSTRESS_CONFIG")
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .env("XDG_CONFIG_HOME", self.path().join("xdg"))
            .env("TZ", "UTC")
            .arg("-c")
            .arg(self.path().join("siemstress.toml"))
            .arg("--db")
            .arg(url);
        c
    }

    /// Runs `name args...` with `stdin` as input; returns (status, stdout, stderr).
    pub fn run(&self, name: &str, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        use std::io::Write;
        let mut child = self
            .cmd(name)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait");
        feeder.join().expect("stdin feeder");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `siemparse args...` on `input` and asserts it succeeded.
    pub fn ingest(&self, args: &[&str], input: &[u8]) {
        let (code, _, err) = self.run("siemparse", args, input);
        assert_eq!(code, 0, "siemparse {args:?} failed: {err}");
    }

    /// Runs a query and returns every row as strings (NULL as `None`).
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(async {
            use sqlx::Connection;
            match self.kind {
                Kind::Sqlite => {
                    let mut c = sqlx::SqliteConnection::connect(&self.url)
                        .await
                        .expect("open sqlite");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.iter()
                        .map(|r| (0..r.len()).map(|i| sqlite_text(r, i)).collect())
                        .collect()
                }
                Kind::Mysql => {
                    let mut c = sqlx::MySqlConnection::connect(&self.url)
                        .await
                        .expect("open mysql");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                        .fetch_all(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.iter()
                        .map(|r| (0..r.len()).map(|i| mysql_text(r, i)).collect())
                        .collect()
                }
            }
        })
    }

    /// A single integer from a query.
    pub fn scalar(&self, sql: &str) -> i64 {
        self.rows(sql)[0][0]
            .as_deref()
            .expect("non-null scalar")
            .parse()
            .expect("integer")
    }
}

fn sqlite_text(r: &sqlx::sqlite::SqliteRow, i: usize) -> Option<String> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    r.try_get::<Option<String>, _>(i).expect("text column")
}

fn mysql_text(r: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = r.try_get::<Option<i8>, _>(i) {
        return v.map(|v| v.to_string());
    }
    if let Ok(v) = r.try_get::<Option<String>, _>(i) {
        return v;
    }
    r.try_get::<Option<Vec<u8>>, _>(i)
        .expect("text column")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((base, name)) = self.mysql_db.take() {
            self.rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::MySqlConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS `{name}`"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        }
    }
}

/// Path of a file in `../shared/data/loghub`.
pub fn loghub(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/loghub")
        .join(name)
}
