//! Snapshots: `siemparse --snapshot` (JSON on stdin) and `--gather KIND`
//! on a fixture tree, diffs with excludes and the exit bitmask.

use std::path::Path;

use serde_json::{Value, json};
use siemstress_tests::{Env, kinds};

/// The latest diff of `name`, computed by the library, as JSON records.
pub(crate) fn lib_diff(env: &Env, name: &str, excludes: &[&str]) -> Vec<Value> {
    use siemstress_common::snapshot::diff;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = siemstress_common::db::Database::connect(&env.url)
            .await
            .expect("connect");
        let ex = diff::Excludes::new(excludes).expect("excludes");
        let diffs = diff::diff_latest(&db, name, &ex).await.expect("diff");
        db.close().await;
        diffs
            .into_iter()
            .flat_map(|d| d.changes)
            .map(|c| serde_json::to_value(c).expect("json"))
            .collect()
    })
}

/// The latest diff of `name` by `siemquery --snapshot NAME --diff`: checks
/// that it equals the library's and that the exit status is the bitmask of
/// its records (1 added, 2 removed, 4 changed).
pub(crate) fn diff(env: &Env, name: &str, excludes: &[&str]) -> Vec<Value> {
    let mut args = vec!["--snapshot", name, "--diff", "--format", "ndjson"];
    for e in excludes {
        args.extend(["--exclude", e]);
    }
    let (code, out, err) = env.run("siemquery", &args, b"");
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let bits = records.iter().fold(0, |acc, r| {
        acc | match r["change"].as_str() {
            Some("added") => 1,
            Some("removed") => 2,
            Some("changed") => 4,
            other => panic!("change {other:?}"),
        }
    });
    assert_eq!(code, bits, "exit status of the diff of {name}: {err}");
    assert_eq!(
        records,
        lib_diff(env, name, excludes),
        "siemquery vs library"
    );
    records
}

/// `(change, key, column)` of each record, for compact assertions.
pub(crate) fn summary(records: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["change"].as_str().unwrap_or("").to_owned(),
                r["key"].as_str().unwrap_or("").to_owned(),
                r["column"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn s(change: &str, key: &str, column: &str) -> (String, String, String) {
    (change.to_owned(), key.to_owned(), column.to_owned())
}

#[test]
fn stdin_object_of_objects_diff_and_excludes() {
    for kind in kinds() {
        let env = Env::new(kind);
        let v1 = r#"{"alice": {"uid": 1000, "shell": "/bin/sh"}, "bob": {"uid": 1001, "shell": "/bin/sh"}}"#;
        env.ingest(&["--snapshot", "people"], v1.as_bytes());
        assert!(
            diff(&env, "people", &[]).is_empty(),
            "first run is a baseline"
        );
        let v2 = r#"{"alice": {"uid": 1000, "shell": "/bin/bash"}, "carol": {"uid": 1002, "shell": "/bin/sh"}}"#;
        env.ingest(&["--snapshot", "people"], v2.as_bytes());
        let d = diff(&env, "people", &[]);
        assert_eq!(
            summary(&d),
            [
                s("added", "carol", ""),
                s("changed", "alice", "shell"),
                s("removed", "bob", "")
            ],
            "{kind:?}"
        );
        let changed = d.iter().find(|r| r["change"] == "changed").unwrap();
        assert_eq!(
            (&changed["snapshot"], &changed["old"], &changed["new"]),
            (&json!("people"), &json!("/bin/sh"), &json!("/bin/bash"))
        );
        let added = d.iter().find(|r| r["change"] == "added").unwrap();
        assert_eq!(added["row"], json!({"uid": 1002, "shell": "/bin/sh"}));
        assert!(added.get("column").is_none() && added.get("old").is_none());

        let d = diff(&env, "people", &["people.*.shell", "people.carol"]);
        assert_eq!(summary(&d), [s("removed", "bob", "")], "{kind:?}");

        // Runs and rows as the contract names them.
        assert_eq!(
            env.scalar(
                "SELECT COUNT(*) FROM snapshot_runs WHERE name = 'people' AND status = 'ok'"
            ),
            2
        );
        assert_eq!(
            env.scalar(
                "SELECT COUNT(*) FROM snapshot_rows r JOIN snapshot_runs u ON u.id = r.run_id \
                 WHERE u.name = 'people'"
            ),
            4
        );
    }
}

#[test]
fn stdin_array_with_and_without_keys() {
    for kind in kinds() {
        let env = Env::new(kind);
        let a1 = r#"[{"proto":"tcp","port":22,"process":"sshd"},{"proto":"udp","port":53,"process":"named"}]"#;
        let a2 = r#"[{"proto":"tcp","port":22,"process":"dropbear"},{"proto":"udp","port":53,"process":"named"}]"#;
        env.ingest(
            &["--snapshot", "ports", "--key", "proto", "--key", "port"],
            a1.as_bytes(),
        );
        env.ingest(
            &["--snapshot", "ports", "--key", "proto", "--key", "port"],
            a2.as_bytes(),
        );
        let d = diff(&env, "ports", &[]);
        assert_eq!(summary(&d), [s("changed", "tcp|22", "process")], "{kind:?}");

        // Without --key a row is its whole content: a change is removed + added.
        env.ingest(&["--snapshot", "whole"], a1.as_bytes());
        env.ingest(&["--snapshot", "whole"], a2.as_bytes());
        let d = diff(&env, "whole", &[]);
        let kinds: Vec<&str> = summary(&d)
            .iter()
            .map(|r| if r.0 == "added" { "added" } else { "removed" })
            .collect();
        assert_eq!(kinds, ["added", "removed"], "{d:?}");
        assert_eq!(
            d.iter().find(|r| r["change"] == "added").unwrap()["row"]["process"],
            "dropbear"
        );
    }
}

#[test]
fn bad_input_is_a_failed_run_and_not_a_baseline() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["--snapshot", "x"], br#"{"a": {"v": 1}}"#);
        let (code, _, err) = env.run("siemparse", &["--snapshot", "x"], b"not json");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("JSON"), "{err}");
        let (code, _, err) = env.run(
            "siemparse",
            &["--snapshot", "x", "--key", "id"],
            b"[{\"v\":1}]",
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("\"id\""), "{err}");
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM snapshot_runs WHERE status = 'failed'"),
            2
        );
        // The next good run is diffed against the last good one, not the failures.
        env.ingest(&["--snapshot", "x"], br#"{"a": {"v": 2}}"#);
        assert_eq!(summary(&diff(&env, "x", &[])), [s("changed", "a", "v")]);
        // Names with dots would make exclusion globs ambiguous.
        let (code, _, err) = env.run("siemparse", &["--snapshot", "a.b"], b"{}");
        assert_eq!(code, 2, "{err}");
    }
}

/// A small system under `root`: accounts, keys, crontabs, watched files.
fn fixture(root: &Path) {
    let w = |p: &str, text: &str| {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    w(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001:Bob:/home/bob:/bin/sh\n",
    );
    w(
        "/etc/shadow",
        "root:$y$j9T$salt$hash:19000:0:99999:7:::\nalice:$6$salt$hash:19500:0:99999:7:::\nbob:!:19600:0:99999:7:::\n",
    );
    w("/etc/group", "root:x:0:\nsudo:x:27:alice\nbob:x:1001:\n");
    w(
        "/home/alice/.ssh/authorized_keys",
        &format!("{KEY1} alice@laptop\nfrom=\"10.0.0.0/8\",no-pty {KEY2} alice@ci\n"),
    );
    w(
        "/etc/crontab",
        "SHELL=/bin/sh\n# m h dom mon dow user command\n17 * * * * root cd / && run-parts /etc/cron.hourly\n",
    );
    w(
        "/etc/cron.d/backup",
        "30 2 * * * root /usr/local/bin/backup\n",
    );
    w(
        "/var/spool/cron/crontabs/alice",
        "@reboot /home/alice/bin/start\n",
    );
    w("/etc/ssh/sshd_config", "PermitRootLogin no\n");
    w("/etc/ssh/sshd_config.bak", "old\n");
    w("/etc/hosts", "127.0.0.1 localhost\n");
    w("/usr/bin/passwd", "binary");
    w("/usr/bin/ls", "binary");
    set_mode(root, "/usr/bin/passwd", 0o4755);
    set_mode(root, "/usr/bin/ls", 0o755);
    set_mode(root, "/etc/ssh/sshd_config", 0o644);
}

const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFq3k0QzM+o7Xg6iLJkzVw2hHcJ9yX1pR2v8sT4uW5aB";

pub(crate) fn set_mode(root: &Path, p: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join(p.trim_start_matches('/')),
        std::fs::Permissions::from_mode(mode),
    )
    .unwrap();
}

const GATHER_CONFIG: &str = r#"
[gather.files]
paths = ["/etc/passwd", "/etc/ssh/**", "/etc/hosts", "/etc/nonexistent"]
exclude = ["/etc/ssh/*.bak"]
[gather.suid]
roots = ["/usr", "/etc"]
"#;

const FS_KINDS: [&str; 6] = [
    "users",
    "groups",
    "files",
    "suid",
    "authorized_keys",
    "crontabs",
];

fn gather_all(env: &Env, root: &Path) {
    for k in FS_KINDS {
        env.ingest(&["--gather", k, "--root", root.to_str().unwrap()], b"");
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn gatherers_on_a_fixture_tree() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(GATHER_CONFIG);
        let root = env.path().join("root");
        fixture(&root);
        gather_all(&env, &root);
        for k in FS_KINDS {
            assert!(diff(&env, k, &[]).is_empty(), "{k}: baseline");
        }
        // What was stored: no hashes, the contract's columns, keys.
        let users = env.rows(
            "SELECT r.row_key, r.value FROM snapshot_rows r JOIN snapshot_runs u ON u.id = r.run_id \
             WHERE u.name = 'users' ORDER BY r.seq",
        );
        let keys: Vec<&str> = users.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(keys, ["root", "alice", "bob"]);
        let bob: Value = serde_json::from_str(users[2][1].as_deref().unwrap()).unwrap();
        assert_eq!(
            (&bob["password"], &bob["shell"]),
            (&json!("L"), &json!("/bin/sh"))
        );
        assert!(
            !users
                .iter()
                .any(|r| r[1].as_deref().unwrap().contains("salt"))
        );
        let files = env.rows(
            "SELECT r.row_key FROM snapshot_rows r JOIN snapshot_runs u ON u.id = r.run_id \
             WHERE u.name = 'files' ORDER BY r.seq",
        );
        let files: Vec<&str> = files.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(files, ["/etc/passwd", "/etc/ssh/sshd_config", "/etc/hosts"]);

        // The changes: a mode, an owner, a content, a user, a key, a cron job, a suid bit.
        set_mode(&root, "/etc/ssh/sshd_config", 0o666);
        if is_root() {
            std::os::unix::fs::chown(root.join("etc/hosts"), Some(1000), None).unwrap();
        }
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            format!("{passwd}mallory:x:0:0::/root:/bin/bash\n"),
        )
        .unwrap();
        std::fs::write(
            root.join("home/alice/.ssh/authorized_keys"),
            format!("{KEY1} alice@laptop\n"),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/cron.d/backup"),
            "30 2 * * * root /usr/local/bin/backup\n* * * * * root /tmp/.x\n",
        )
        .unwrap();
        set_mode(&root, "/usr/bin/ls", 0o4755);
        gather_all(&env, &root);

        assert_eq!(
            summary(&diff(&env, "users", &[])),
            [s("added", "mallory", "")],
            "{kind:?}"
        );
        assert!(diff(&env, "groups", &[]).is_empty());
        let mut expect = vec![
            s("changed", "/etc/passwd", "mtime"),
            s("changed", "/etc/passwd", "sha256"),
            s("changed", "/etc/passwd", "size"),
            s("changed", "/etc/ssh/sshd_config", "mode"),
        ];
        if is_root() {
            expect.insert(0, s("changed", "/etc/hosts", "uid"));
        }
        let files = diff(&env, "files", &[]);
        assert_eq!(summary(&files), expect, "{kind:?}");
        let mode = files.iter().find(|r| r["column"] == "mode").unwrap();
        assert_eq!(
            (&mode["old"], &mode["new"]),
            (&json!("0644"), &json!("0666"))
        );
        assert_eq!(
            summary(&lib_diff(
                &env,
                "files",
                &["files./etc/passwd", "files.*.mode"]
            )),
            if is_root() {
                vec![s("changed", "/etc/hosts", "uid")]
            } else {
                vec![]
            }
        );
        assert_eq!(
            summary(&diff(&env, "suid", &[])),
            [s("added", "/usr/bin/ls", "")]
        );
        let keys = diff(&env, "authorized_keys", &[]);
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0]["change"], "removed");
        assert_eq!(keys[0]["row"]["comment"], "alice@ci");
        assert_eq!(keys[0]["row"]["options"], "from=\"10.0.0.0/8\",no-pty");
        assert!(
            keys[0]["key"]
                .as_str()
                .unwrap()
                .starts_with("alice:SHA256:")
        );
        let cron = diff(&env, "crontabs", &[]);
        assert_eq!(
            summary(&cron),
            [s("added", "/etc/cron.d/backup:* * * * * root /tmp/.x", "")]
        );
        assert_eq!(cron[0]["row"]["user"], "root");
        assert_eq!(cron[0]["row"]["command"], "/tmp/.x");
    }
}

#[test]
fn files_unreadable_and_hash_reuse() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    env.config("[gather.files]\npaths = [\"/data\"]\n");
    let root = env.path().join("root");
    std::fs::create_dir_all(root.join("data/sub")).unwrap();
    std::fs::write(root.join("data/a"), "aaa").unwrap();
    std::fs::write(root.join("data/sub/b"), "bbb").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("data/link")).unwrap();
    let r = root.to_str().unwrap();
    let (code, _, err) = env
        .cmd("siemparse")
        .env("SIEMPARSE_GATHER_STATS", "1")
        .args(["--gather", "files", "--root", r])
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 hashed, 0 hashes reused"), "{err}");
    let out = env
        .cmd("siemparse")
        .env("SIEMPARSE_GATHER_STATS", "1")
        .args(["--gather", "files", "--root", r])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 hashed, 2 hashes reused"), "{err}");
    let rows = latest_rows(&env, "files");
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        keys,
        ["/data", "/data/a", "/data/link", "/data/sub", "/data/sub/b"]
    );
    let link = &rows[2].1;
    assert_eq!(
        (&link["type"], &link["link"]),
        (&json!("symlink"), &json!("/etc/shadow"))
    );
    let a = &rows[1].1;
    assert_eq!(
        a["sha256"],
        "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"
    );
    // An unreadable file is a row with `error` and no hash. Root reads
    // everything, so as root the gatherer runs without DAC override.
    // (A new file: an unchanged one keeps its hash from the last run.)
    std::fs::write(root.join("data/c"), "ccc").unwrap();
    set_mode(&root, "/data/c", 0o000);
    let mut cmd = env.cmd("siemparse");
    cmd.args(["--gather", "files", "--root", r]);
    let out = if is_root() {
        let Ok(setpriv) = which("setpriv") else {
            eprintln!("setpriv not found: unreadable-file case skipped");
            return;
        };
        let mut c = std::process::Command::new(setpriv);
        c.arg("--bounding-set=-dac_override,-dac_read_search")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .current_dir(env.path())
            .env_remove("SIEMSTRESS_CONFIG")
            .env_remove("SIEMSTRESS_DATABASE_URL");
        c.output().unwrap()
    } else {
        cmd.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = diff(&env, "files", &[]);
    assert_eq!(summary(&d), [s("added", "/data/c", "")], "{d:?}");
    let row = &d[0]["row"];
    assert_eq!(row["sha256"], Value::Null);
    assert_eq!(row["mode"], "0000");
    assert!(
        row["error"].as_str().unwrap().contains("Permission denied"),
        "{row}"
    );
}

pub(crate) fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// Rows of the latest run of `name`, as (key, value), read as the schema
/// documents it (migration 0006): the rows stored by this or an earlier run
/// of the series and not ended by it.
pub(crate) fn latest_rows(env: &Env, name: &str) -> Vec<(String, Value)> {
    env.rows(&format!(
        "SELECT r.row_key, r.value FROM snapshot_rows r JOIN snapshot_runs u ON u.id = r.run_id \
         WHERE u.name = '{name}' AND (r.until_run IS NULL OR r.until_run > \
         (SELECT MAX(id) FROM snapshot_runs WHERE name = '{name}' AND status = 'ok')) \
         ORDER BY r.run_id, r.seq"
    ))
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            serde_json::from_str(r[1].as_deref().unwrap()).unwrap(),
        )
    })
    .collect()
}

#[test]
fn listenports_live_v4_and_v6() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let k4 = format!("tcp/127.0.0.1:{}", v4.local_addr().unwrap().port());
    let k6 = v6
        .as_ref()
        .map(|l| format!("tcp6/[::1]:{}", l.local_addr().unwrap().port()));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ku = format!("udp/127.0.0.1:{}", udp.local_addr().unwrap().port());
    env.ingest(&["--gather", "listenports"], b"");
    let rows = latest_rows(&env, "listenports");
    let mine: Vec<&(String, Value)> = rows
        .iter()
        .filter(|(k, _)| *k == k4 || Some(k) == k6.as_ref() || *k == ku)
        .collect();
    assert_eq!(mine.len(), 2 + usize::from(k6.is_some()), "{rows:?}");
    for (k, v) in &mine {
        assert_eq!(v["pid"], std::process::id(), "{k}: {v}");
        assert!(v["process"].is_string(), "{k}: {v}");
    }
    let (_, r4) = mine.iter().find(|(k, _)| *k == k4).unwrap();
    assert_eq!(
        (&r4["proto"], &r4["address"]),
        (&json!("tcp"), &json!("127.0.0.1"))
    );
    if let Some(k6) = &k6 {
        let (_, r6) = mine.iter().find(|(k, _)| k == k6).unwrap();
        assert_eq!(
            (&r6["proto"], &r6["address"]),
            (&json!("tcp6"), &json!("::1"))
        );
    }

    drop((v4, v6, udp));
    env.ingest(&["--gather", "listenports"], b"");
    let d = diff(&env, "listenports", &[]);
    let mut gone: Vec<&str> = d
        .iter()
        .filter(|c| c["change"] == "removed")
        .filter_map(|c| c["key"].as_str())
        .filter(|k| *k == k4 || Some(*k) == k6.as_deref() || *k == ku)
        .collect();
    gone.sort();
    let mut want: Vec<&str> = [Some(k4.as_str()), k6.as_deref(), Some(ku.as_str())]
        .into_iter()
        .flatten()
        .collect();
    want.sort();
    assert_eq!(gone, want, "{d:?}");

    // And they come back as added.
    let again = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let ka = format!("tcp/127.0.0.1:{}", again.local_addr().unwrap().port());
    env.ingest(&["--gather", "listenports"], b"");
    let d = diff(&env, "listenports", &["listenports.*.pid"]);
    assert!(
        d.iter()
            .any(|c| c["change"] == "added" && c["key"] == ka.as_str()),
        "{d:?}"
    );
}

/// Runs SQL statements on the MariaDB server of `SIEMSTRESS_TEST_MYSQL_URL`.
fn mysql_exec(sql: &[String]) {
    let url = std::env::var("SIEMSTRESS_TEST_MYSQL_URL").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        for s in sql {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    });
}

#[test]
fn mysql_users_against_mariadb() {
    if !kinds().contains(&siemstress_tests::Kind::Mysql) {
        eprintln!("SIEMSTRESS_TEST_MYSQL_URL not set: mysql_users test skipped");
        return;
    }
    for kind in kinds() {
        let env = Env::new(kind);
        let url = std::env::var("SIEMSTRESS_TEST_MYSQL_URL").unwrap();
        env.config(&format!("[gather.mysql_users]\nurl = \"{url}\"\n"));
        let user = format!("snap_{}_{}", std::process::id(), rand_suffix());
        let key = format!("{user}@localhost");
        let _cleanup = DropUser(user.clone());
        let mine = |d: &[Value]| -> Vec<(String, String, String)> {
            let only: Vec<Value> = d
                .iter()
                .filter(|c| c["key"].as_str() == Some(key.as_str()))
                .cloned()
                .collect();
            summary(&only)
        };
        env.ingest(&["--gather", "mysql_users"], b"");
        mysql_exec(&[
            format!("CREATE USER '{user}'@'localhost' IDENTIFIED BY 'S3cret-pw'"),
            format!("GRANT SELECT ON test.* TO '{user}'@'localhost'"),
        ]);
        env.ingest(&["--gather", "mysql_users"], b"");
        let d = diff(&env, "mysql_users", &[]);
        assert_eq!(mine(&d), [s("added", &key, "")], "{kind:?} {d:?}");
        let row = &d.iter().find(|c| c["key"] == key.as_str()).unwrap()["row"];
        assert_eq!(row["password_set"], true, "{row}");
        let grants = row["grants"].to_string();
        assert!(grants.contains("GRANT SELECT ON `test`.*"), "{grants}");
        // The hash of the password never reaches a row.
        let hash = mysql_string("SELECT PASSWORD('S3cret-pw')");
        assert!(hash.starts_with('*'), "{hash}");
        let stored = env.rows("SELECT value FROM snapshot_rows");
        assert!(
            stored
                .iter()
                .all(|r| !r[0].as_deref().unwrap().contains(&hash[1..])),
            "the password hash was stored"
        );

        mysql_exec(&[format!("GRANT INSERT ON test.* TO '{user}'@'localhost'")]);
        env.ingest(&["--gather", "mysql_users"], b"");
        let d = diff(&env, "mysql_users", &[]);
        assert_eq!(mine(&d), [s("changed", &key, "grants")], "{d:?}");

        mysql_exec(&[format!("DROP USER '{user}'@'localhost'")]);
        env.ingest(&["--gather", "mysql_users"], b"");
        let d = diff(&env, "mysql_users", &[]);
        assert_eq!(mine(&d), [s("removed", &key, "")], "{d:?}");
    }
}

/// Drops the test account even when an assertion fails.
struct DropUser(String);

impl Drop for DropUser {
    fn drop(&mut self) {
        mysql_exec(&[format!("DROP USER IF EXISTS '{}'@'localhost'", self.0)]);
    }
}

/// A single string from the MariaDB server.
fn mysql_string(sql: &str) -> String {
    let url = std::env::var("SIEMSTRESS_TEST_MYSQL_URL").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[test]
fn siemquery_snapshot_outputs_runs_hosts_and_errors() {
    for kind in kinds() {
        let env = Env::new(kind);
        let v1 = r#"{"alice": {"uid": 1000, "shell": "/bin/sh"}, "bob": {"uid": 1001, "shell": "/bin/sh"}}"#;
        let v2 = r#"{"alice": {"uid": 1000, "shell": "/bin/bash"}, "carol": {"uid": 1002, "shell": "/bin/sh"}}"#;
        env.ingest(&["--snapshot", "people"], v1.as_bytes());
        env.ingest(&["--snapshot", "people"], v2.as_bytes());
        let first = env.scalar("SELECT MIN(id) FROM snapshot_runs");

        // Show the latest run.
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "people", "--format", "json"],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["key"], "alice");
        assert_eq!(rows[0]["row"]["shell"], "/bin/bash");
        assert_eq!(rows[0]["snapshot"], "people");
        let (code, out, _) = env.run(
            "siemquery",
            &[
                "--snapshot",
                "people",
                "--format",
                "table",
                "--run",
                &first.to_string(),
            ],
            b"",
        );
        assert_eq!(code, 0);
        assert!(out.contains("bob") && out.contains("shell"), "{out}");

        // The diff as a JSON array, a table and CSV, with the bitmask.
        let (code, out, _) = env.run(
            "siemquery",
            &["--snapshot", "people", "--diff", "--format", "json"],
            b"",
        );
        assert_eq!(code, 1 | 2 | 4);
        let recs: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(recs.len(), 3);
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "people", "--diff", "--format", "table"],
            b"",
        );
        assert_eq!(code, 7);
        assert!(
            out.contains("changed") && out.contains("/bin/bash") && out.contains("carol"),
            "{out}"
        );
        assert!(err.contains("vs run"), "{err}");
        let (code, out, _) = env.run(
            "siemquery",
            &[
                "--snapshot",
                "people",
                "--diff",
                "--format",
                "csv",
                "--exclude",
                "people.bob",
            ],
            b"",
        );
        assert_eq!(code, 1 | 4);
        assert!(
            out.starts_with("snapshot,host,run,change,key,column,old,new,row\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3, "{out}");

        // The first run is a baseline: nothing to report, exit 0.
        let (code, out, err) = env.run(
            "siemquery",
            &[
                "--snapshot",
                "people",
                "--diff",
                "--run",
                &first.to_string(),
                "--format",
                "table",
            ],
            b"",
        );
        assert_eq!((code, out.as_str()), (0, ""), "{err}");
        assert!(err.contains("baseline"), "{err}");

        // Another host's runs are diffed on their own; --host picks.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use siemstress_common::db::snapshots as storage;
            use siemstress_common::snapshot::Row;
            let db = siemstress_common::db::Database::connect(&env.url)
                .await
                .unwrap();
            for shell in ["/bin/sh", "/bin/zsh"] {
                let rows = [Row::new("alice", json!({"uid": 1000, "shell": shell}))];
                storage::store_run(&db, "people", "db1", 1, &rows, None)
                    .await
                    .unwrap();
            }
            db.close().await;
        });
        let (code, out, _) = env.run(
            "siemquery",
            &[
                "--snapshot",
                "people",
                "--diff",
                "--format",
                "ndjson",
                "--host",
                "db1",
            ],
            b"",
        );
        assert_eq!(code, 4);
        let rec: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (&rec["host"], &rec["new"]),
            (&json!("db1"), &json!("/bin/zsh"))
        );
        let (code, out, _) = env.run(
            "siemquery",
            &["--snapshot", "people", "--diff", "--format", "ndjson"],
            b"",
        );
        assert_eq!((code, out.lines().count()), (7, 4));

        // Errors are 16, never a bit pattern.
        for args in [
            &["--snapshot", "nope", "--diff"][..],
            &["--snapshot", "people", "--diff", "--bogus"],
            &["--snapshot", "people", "--diff", "--exclude", "a[b"],
            &["--snapshot", "people", "--diff", "--run", "999999"],
            &["--snapshot", "a.b"],
            // Flags of event searches were ignored; now refused.
            &["--snapshot", "people", "--diff", "--limit", "1"],
            &["--snapshot", "people", "--grep", "alice"],
            &["--snapshot", "people", "--last", "1h"],
            &["--snapshot", "people", "--count"],
            &["--snapshot", "people", "--diff", "--stats", "user"],
            &["--snapshot", "people", "--table", "t"],
        ] {
            let (code, _, err) = env.run("siemquery", args, b"");
            assert_eq!(code, 16, "{args:?}: {err}");
            assert!(err.starts_with("siemquery: "), "{err}");
        }
    }
}

/// The rows of run `run` of `people` by `siemquery --snapshot --run`, as
/// key → row.
fn rows_of_run(env: &Env, run: i64) -> std::collections::BTreeMap<String, Value> {
    let (code, out, err) = env.run(
        "siemquery",
        &[
            "--snapshot",
            "people",
            "--run",
            &run.to_string(),
            "--format",
            "ndjson",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["key"].as_str().unwrap().to_owned(), v["row"].clone()))
        .collect()
}

/// Rows are stored once per value (migration 0006): an unchanged run
/// writes none, a run writes only its added and changed rows, and every
/// older run still reads (and diffs) exactly as it was taken.
#[test]
fn snapshot_rows_are_stored_once_per_value() {
    for kind in kinds() {
        let env = Env::new(kind);
        let stored = || env.scalar("SELECT COUNT(*) FROM snapshot_rows");
        let latest = || env.scalar("SELECT MAX(id) FROM snapshot_runs");
        let v1 = r#"{"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}}"#;
        let v3 = r#"{"a": {"x": 1}, "b": {"x": 20}, "d": {"x": 4}}"#;
        env.ingest(&["--snapshot", "people"], v1.as_bytes());
        let run1 = latest();
        assert_eq!(stored(), 3);
        env.ingest(&["--snapshot", "people"], v1.as_bytes());
        let run2 = latest();
        assert_eq!(stored(), 3, "{kind:?}: an unchanged run stores no rows");
        assert!(diff(&env, "people", &[]).is_empty());
        env.ingest(&["--snapshot", "people"], v3.as_bytes());
        let run3 = latest();
        assert_eq!(stored(), 5, "{kind:?}: b (changed) and d (added)");
        // A failed run stores nothing and is skipped by the next diff.
        let (code, _, _) = env.run("siemparse", &["--snapshot", "people"], b"{not json");
        assert_ne!(code, 0);
        let failed = latest();
        env.ingest(&["--snapshot", "people"], v3.as_bytes());
        let run5 = latest();
        assert_eq!(stored(), 5);
        assert!(
            diff(&env, "people", &[]).is_empty(),
            "{kind:?}: run 5 = run 3"
        );

        let expect = |doc: &str| -> std::collections::BTreeMap<String, Value> {
            serde_json::from_str(doc).unwrap()
        };
        for (run, doc) in [(run1, v1), (run2, v1), (run3, v3), (run5, v3)] {
            assert_eq!(rows_of_run(&env, run), expect(doc), "{kind:?} run {run}");
        }
        let (code, _, err) = env.run(
            "siemquery",
            &["--snapshot", "people", "--run", &failed.to_string()],
            b"",
        );
        assert_eq!(code, 16);
        assert!(err.contains("failed: snapshot input: not JSON"), "{err}");

        // Older runs diff as they were taken, whatever came after.
        let diff_of = |run: i64| {
            let (code, out, err) = env.run(
                "siemquery",
                &[
                    "--snapshot",
                    "people",
                    "--diff",
                    "--run",
                    &run.to_string(),
                    "--format",
                    "ndjson",
                ],
                b"",
            );
            let recs: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (code, summary(&recs), err)
        };
        assert_eq!(diff_of(run2).0, 0);
        let (code, changes, err) = diff_of(run3);
        assert_eq!(code, 7, "{err}");
        assert_eq!(
            changes,
            [
                s("added", "d", ""),
                s("changed", "b", "x"),
                s("removed", "c", "")
            ]
        );

        // Two stores from the same stale read of the current rows (as two
        // gathers of one series racing): the second notices the first under
        // the lock and writes its delta against it, not against the stale rows.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let host = siemstress_common::snapshot::local_host();
        rt.block_on(async {
            use siemstress_common::db::snapshots as storage;
            use siemstress_common::snapshot::RawRow;
            let db = siemstress_common::db::Database::connect(&env.url)
                .await
                .unwrap();
            let raw = |k: &str, v: &str| RawRow {
                key: k.into(),
                json: v.into(),
            };
            let x = [raw("a", r#"{"x":1}"#), raw("e", r#"{"x":5}"#)];
            let y = [raw("a", r#"{"x":9}"#), raw("e", r#"{"x":5}"#)];
            let stale_x = storage::current_rows(&db, "people", &host).await.unwrap();
            let stale_y = storage::current_rows(&db, "people", &host).await.unwrap();
            assert_eq!(stale_y.latest_run, Some(run5));
            for (rows, stale) in [(&x, stale_x), (&y, stale_y)] {
                let run = storage::NewRun {
                    name: "people",
                    host: &host,
                    taken: 1,
                    rows,
                    message: None,
                };
                storage::store_raw_run(&db, &run, stale).await.unwrap();
            }
            db.close().await;
        });
        let runx = latest() - 1;
        let runy = latest();
        assert_eq!(
            rows_of_run(&env, runx),
            expect(r#"{"a": {"x": 1}, "e": {"x": 5}}"#)
        );
        assert_eq!(
            rows_of_run(&env, runy),
            expect(r#"{"a": {"x": 9}, "e": {"x": 5}}"#)
        );
        let (code, changes, err) = diff_of(runy);
        assert_eq!(
            (code, changes),
            (4, vec![s("changed", "a", "x")]),
            "{kind:?} {err}"
        );
    }
}

/// `target/artifacts/` (the test executable is in target/<profile>/deps).
pub(crate) fn artifacts_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Syslog lines stamped `minutes_ago` minutes before now (UTC).
pub(crate) fn recent(minutes_ago: i64, rest: &str) -> String {
    let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    format!("{} {rest}\n", t.format("%b %e %H:%M:%S"))
}

/// A minimal SMTP server for one message; returns the port and what it got.
fn fake_smtp() -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut got = String::new();
        w.write_all(b"220 fake ESMTP\r\n").unwrap();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    w.write_all(b"250 queued\r\n").unwrap();
                } else {
                    got.push_str(&line);
                }
                continue;
            }
            let cmd = line.to_ascii_uppercase();
            if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                w.write_all(b"250-fake\r\n250 8BITMIME\r\n").unwrap();
            } else if cmd.starts_with("DATA") {
                in_data = true;
                w.write_all(b"354 go on\r\n").unwrap();
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                got.push_str(&line);
                w.write_all(b"250 ok\r\n").unwrap();
            }
        }
        got
    });
    (port, h)
}

#[test]
fn html_report_renders_in_chromium_and_mails() {
    let charts_attr = regex::Regex::new(r#"data-charts="([^"]*)""#).unwrap();
    for kind in kinds() {
        let env = Env::new(kind);
        let (port, smtp) = fake_smtp();
        env.config(&format!(
            "[gather.files]\npaths = [\"/etc\"]\n\
             [actions.mail]\nsmtp = \"smtp://127.0.0.1:{port}\"\nfrom = \"siem@example.org\"\nto = [\"sec@example.org\"]\n"
        ));
        let mut log = String::new();
        for (m, host) in [(150, "10.0.0.5"), (90, "10.0.0.5"), (30, "10.0.0.9")] {
            log.push_str(&recent(
                m,
                &format!("web sshd[42]: Failed password for root from {host} port 2222 ssh2"),
            ));
        }
        log.push_str(&recent(
            20,
            "web sshd[42]: Accepted publickey for alice from 10.0.0.7 port 2222 ssh2",
        ));
        log.push_str(&recent(
            10,
            "web CRON[7]: (root) CMD (run-parts /etc/cron.hourly)",
        ));
        env.ingest(&["-s", "auth", "-z", "UTC"], log.as_bytes());
        env.ingest(
            &["-s", "cron", "-z", "UTC"],
            recent(5, "web CRON[8]: job").as_bytes(),
        );
        let root = env.path().join("root");
        fixture(&root);
        let r = root.to_str().unwrap();
        for k in ["users", "files"] {
            env.ingest(&["--gather", k, "--root", r], b"");
        }
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost evil\n").unwrap();
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            format!("{passwd}eve:x:0:0::/:/bin/sh\n"),
        )
        .unwrap();
        for k in ["users", "files"] {
            env.ingest(&["--gather", k, "--root", r], b"");
        }
        env.run("siemparse", &["--snapshot", "broken"], b"not json");

        let html_path = env.path().join("report.html");
        let (code, _, err) = env.run(
            "siemquery",
            &[
                "--report",
                html_path.to_str().unwrap(),
                "--last",
                "24h",
                "--mail",
            ],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let html = std::fs::read_to_string(&html_path).unwrap();
        let mail = smtp.join().unwrap();
        assert!(mail.contains("Subject: siemstress report"), "{mail}");
        assert!(mail.contains("text/html"), "{mail}");
        assert!(
            mail.to_ascii_lowercase()
                .contains("rcpt to:<sec@example.org>"),
            "{mail}"
        );

        // Self-contained: nothing to fetch.
        for bad in ["<link", " src=", "href=\"http", "url(", "@import"] {
            assert!(!html.contains(bad), "report references {bad:?}");
        }
        for want in [
            "10.0.0.5",
            "root",
            "eve",
            "/etc/hosts",
            "sha256",
            "broken",
            "Events per hour",
            "File integrity",
        ] {
            assert!(html.contains(want), "report lacks {want:?}");
        }
        let art = artifacts_dir();
        let tag = format!("{kind:?}").to_lowercase();
        std::fs::copy(&html_path, art.join(format!("report-{tag}.html"))).unwrap();

        let chromium = match which("chromium").or_else(|_| which("chromium-browser")) {
            Ok(c) => c,
            Err(()) if std::env::var("CI").is_ok_and(|c| c == "true") => {
                panic!("chromium is not installed (apt-get install -y chromium)")
            }
            Err(()) => {
                eprintln!("chromium not found: browser checks of the report skipped");
                continue;
            }
        };
        let url = format!("file://{}", html_path.display());
        let out = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=3000",
                "--window-size=1280,2000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        let log = String::from_utf8_lossy(&out.stderr);
        let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(console.is_empty(), "console messages: {console:?}");
        let sizes = charts_attr
            .captures(&dom)
            .unwrap_or_else(|| panic!("the report's script did not run: {log}"))[1]
            .to_owned();
        let sizes: Vec<(u32, u32)> = sizes
            .split(',')
            .map(|s| {
                let (w, h) = s.split_once('x').unwrap();
                (w.parse().unwrap(), h.parse().unwrap())
            })
            .collect();
        // Two event tables, two top-N charts.
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        assert!(sizes.iter().all(|(w, h)| *w > 100 && *h > 10), "{sizes:?}");
        let shot = art.join(format!("report-{tag}.png"));
        let _ = std::fs::remove_file(&shot);
        let status = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,2000",
                &format!("--screenshot={}", shot.display()),
                &url,
            ])
            .output()
            .unwrap();
        assert!(
            shot.metadata().is_ok_and(|m| m.len() > 10_000),
            "no screenshot: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}
