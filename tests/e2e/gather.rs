//! Gatherers under attack and file integrity that cannot be timestomped:
//! what users put in their homes (symlinks to /etc/shadow, FIFOs, device
//! nodes, hard links, homes outside the root) is refused and reported in
//! the run's message, never stored; a file rewritten at the same size with
//! its old mtime put back is hashed again.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use siemstress_tests::{Env, Kind, kinds};

use crate::snapshot::{diff, is_root, latest_rows, s, summary};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const SHADOW_SECRET: &str = "SHADOW-SECRET-7f3a";
const OUTSIDE_SECRET: &str = "OUTSIDE-SECRET-91c2";

fn write(root: &Path, p: &str, text: &str) {
    let f = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, text).unwrap();
}

fn mknod(path: &Path, kind: libc::mode_t, dev: libc::dev_t) -> bool {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod has no other preconditions.
    unsafe { libc::mknod(c.as_ptr(), kind | 0o644, dev) == 0 }
}

/// Runs `siemparse args` with a deadline (a gatherer that hangs on a FIFO
/// fails the test instead of hanging it).
fn run_with_deadline(env: &Env, args: &[&str]) -> (i32, String) {
    let mut child = env
        .cmd("siemparse")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("siemparse {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every byte the database holds: the SQLite file and its WAL, or on
/// MariaDB every stored value and message.
fn database_text(env: &Env) -> String {
    match env.kind {
        Kind::Sqlite => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-journal"] {
                if let Ok(b) = std::fs::read(env.path().join(format!("test.db{suffix}"))) {
                    all.extend(b);
                }
            }
            assert!(all.len() > 4096, "no database file");
            String::from_utf8_lossy(&all).into_owned()
        }
        Kind::Mysql => {
            let mut all = String::new();
            for q in [
                "SELECT row_key, value FROM snapshot_rows",
                "SELECT name, COALESCE(message, '') FROM snapshot_runs",
            ] {
                for r in env.rows(q) {
                    for c in r.into_iter().flatten() {
                        all.push_str(&c);
                        all.push('\n');
                    }
                }
            }
            all
        }
    }
}

fn last_message(env: &Env, name: &str) -> String {
    env.rows(&format!(
        "SELECT message FROM snapshot_runs WHERE name = '{name}' ORDER BY id DESC LIMIT 1"
    ))[0][0]
        .clone()
        .unwrap_or_default()
}

/// The homes of a hostile system: one honest user, and one for each trick.
fn hostile_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    let outside = dir.join("outside");
    write(
        &outside,
        "/.ssh/authorized_keys",
        &format!("{KEY} {OUTSIDE_SECRET}\n"),
    );
    write(
        &outside,
        "/.profile",
        &format!("export X={OUTSIDE_SECRET}\n"),
    );
    let out = outside.to_str().unwrap();
    write(
        &root,
        "/etc/passwd",
        &format!(
            "root:x:0:0:root:/root:/bin/bash\n\
             alice:x:1000:1000::/home/alice:/bin/bash\n\
             bob:x:1001:1001::/home/bob:/bin/bash\n\
             carol:x:1002:1002::/home/carol:/bin/bash\n\
             dave:x:1003:1003::/home/dave:/bin/bash\n\
             eve:x:1004:1004::/home/eve:/bin/bash\n\
             mallory:x:1005:1005::/home/../../../../../../..{out}:/bin/bash\n\
             frank:x:1006:1006::/home/frank:/bin/bash\n\
             gina:x:1007:1007::/home/gina:/bin/bash\n"
        ),
    );
    write(
        &root,
        "/etc/shadow",
        &format!("root:$6${SHADOW_SECRET}$x:19000:0:99999:7:::\n"),
    );
    write(
        &root,
        "/home/alice/.ssh/authorized_keys",
        &format!("{KEY} alice@laptop\n"),
    );
    write(&root, "/home/alice/.profile", "umask 022\n");
    // bob: the key file is a symlink to the shadow file.
    std::fs::create_dir_all(root.join("home/bob/.ssh")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("home/bob/.ssh/authorized_keys")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("home/bob/.profile")).unwrap();
    // carol: ~/.ssh is a symlink to a directory holding a copy of the secret.
    std::fs::create_dir_all(root.join("home/carol")).unwrap();
    write(&root, "/srv/authorized_keys", &format!("{SHADOW_SECRET}\n"));
    std::os::unix::fs::symlink("/srv", root.join("home/carol/.ssh")).unwrap();
    // dave: a FIFO (nobody writes to it: a blocking open would hang).
    assert!(mknod(
        &root.join("home/dave/.ssh/authorized_keys"),
        libc::S_IFIFO,
        0
    ));
    // eve: the home itself is a symlink out of the root.
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("home/eve")).unwrap();
    if is_root() {
        // Made by eve (a root-owned link would be the admin's, and followed
        // within the root).
        std::os::unix::fs::lchown(root.join("home/eve"), Some(1004), None).unwrap();
    }
    // frank: a hard link to the shadow file (root-owned, two links).
    std::fs::create_dir_all(root.join("home/frank/.ssh")).unwrap();
    std::fs::hard_link(
        root.join("etc/shadow"),
        root.join("home/frank/.ssh/authorized_keys"),
    )
    .unwrap();
    // gina: /dev/zero's device node (endless zeros; root only can mknod).
    if is_root() {
        assert!(mknod(
            &root.join("home/gina/.ssh/authorized_keys"),
            libc::S_IFCHR,
            libc::makedev(1, 5)
        ));
    }
    for (home, uid) in [("alice", 1000), ("frank", 1006)] {
        if is_root() {
            for p in [
                format!("home/{home}"),
                format!("home/{home}/.ssh"),
                format!("home/{home}/.ssh/authorized_keys"),
            ] {
                if home == "frank" && p.ends_with("authorized_keys") {
                    continue;
                }
                std::os::unix::fs::chown(root.join(&p), Some(uid), None).unwrap();
            }
            if home == "alice" {
                std::os::unix::fs::chown(root.join("home/alice/.profile"), Some(uid), None)
                    .unwrap();
            }
        }
    }
    root
}

#[test]
fn gatherers_refuse_symlinks_fifos_devices_hard_links_and_escapes() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(
            "[gather.files]\npaths = [\"/etc\"]\ncontent = [\"/etc/**\", \"/home/**\"]\n\
             home = [\".ssh/*\", \".profile\"]\n",
        );
        let root = hostile_root(env.path());
        let r = root.to_str().unwrap();
        let (code, err) = run_with_deadline(&env, &["--gather", "authorized_keys", "--root", r]);
        assert_eq!(code, 0, "{kind:?}: {err}");
        let keys = latest_rows(&env, "authorized_keys");
        let users: Vec<&str> = keys
            .iter()
            .map(|(_, v)| v["user"].as_str().unwrap())
            .collect();
        assert_eq!(users, ["alice"], "{kind:?}: {keys:?}");
        let msg = last_message(&env, "authorized_keys");
        for want in [
            "/home/bob/.ssh/authorized_keys of bob: a symbolic link",
            "/home/carol/.ssh/authorized_keys of carol: a symbolic link",
            "/home/dave/.ssh/authorized_keys of dave: not a regular file (fifo)",
            "home of eve (\"/home/eve\"): a symbolic link",
            "home of mallory",
            "could lead outside the root: refused",
        ] {
            assert!(
                msg.contains(want),
                "{kind:?}: message lacks {want:?}: {msg}"
            );
        }
        if is_root() {
            assert!(
                msg.contains("/home/frank/.ssh/authorized_keys of frank is owned by uid 0 and hard-linked: refused"),
                "{msg}"
            );
            assert!(
                msg.contains(
                    "/home/gina/.ssh/authorized_keys of gina: not a regular file (chardev)"
                ),
                "{msg}"
            );
        }

        // files: the same homes, with content stored for everything but secrets.
        let (code, err) = run_with_deadline(&env, &["--gather", "files", "--root", r]);
        assert_eq!(code, 0, "{kind:?}: {err}");
        let files = latest_rows(&env, "files");
        let by_path = |p: &str| {
            files
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no row for {p}: {files:?}"))
        };
        assert_eq!(by_path("/home/alice/.profile")["content"], "umask 022\n");
        assert_eq!(by_path("/home/bob/.profile")["type"], "symlink");
        assert_eq!(by_path("/home/bob/.profile")["link"], "/etc/shadow");
        assert_eq!(by_path("/home/dave/.ssh/authorized_keys")["type"], "fifo");
        let shadow = by_path("/etc/shadow");
        assert!(
            shadow.get("content").is_none() && shadow["sha256"].is_string(),
            "{shadow}"
        );
        if is_root() {
            let frank = by_path("/home/frank/.ssh/authorized_keys");
            assert_eq!(
                frank["content_error"], "hard link: text not stored",
                "{frank}"
            );
            assert_eq!(
                by_path("/home/gina/.ssh/authorized_keys")["type"],
                "chardev"
            );
        }
        assert!(
            files.iter().all(|(k, _)| !k.starts_with("/home/eve")),
            "{files:?}"
        );
        assert!(
            files.iter().all(|(k, _)| !k.contains("outside")),
            "{files:?}"
        );
        let msg = last_message(&env, "files");
        assert!(msg.contains("home of eve"), "{msg}");
        assert!(msg.contains("home of mallory"), "{msg}");

        let text = database_text(&env);
        for secret in [SHADOW_SECRET, OUTSIDE_SECRET] {
            assert!(
                !text.contains(secret),
                "{kind:?}: {secret} is in the database"
            );
        }
    }
}

/// A home directory whose path leaves the root through `..`, or through a
/// symlink, is refused by every gatherer that reads homes; nothing outside
/// the root is read.
#[test]
fn home_outside_the_root_is_refused() {
    let env = Env::new(Kind::Sqlite);
    let root = hostile_root(env.path());
    env.config("[gather.files]\nhome = [\".profile\", \".ssh/*\"]\n");
    let r = root.to_str().unwrap();
    for kind in ["authorized_keys", "files"] {
        let (code, err) = run_with_deadline(&env, &["--gather", kind, "--root", r]);
        assert_eq!(code, 0, "{err}");
        let msg = last_message(&env, kind);
        assert!(msg.contains("home of mallory"), "{kind}: {msg}");
        assert!(msg.contains("home of eve"), "{kind}: {msg}");
        assert!(
            err.contains("home of mallory"),
            "{kind}: warning on stderr: {err}"
        );
    }
    assert!(!database_text(&env).contains(OUTSIDE_SECRET));
}

/// `siemparse --gather files --root ROOT` with its hash counters on
/// stderr: (exit status, stderr).
fn gather_files_with_stats(env: &Env, root: &Path) -> (i32, String) {
    let out = env
        .cmd("siemparse")
        .env("SIEMPARSE_GATHER_STATS", "1")
        .args(["--gather", "files", "--root"])
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The timestomping move: new content of the same size, then `touch -r`
/// puts the old mtime back. The ctime gives it away and the file is hashed
/// again.
#[test]
fn fim_sees_same_size_content_with_the_old_mtime_put_back() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[gather.files]\npaths = [\"/etc\"]\n");
        let root = env.path().join("root");
        write(&root, "/etc/sudoers", "root ALL=(ALL) ALL\n");
        write(&root, "/etc/hosts", "127.0.0.1 localhost\n");
        let gather = |env: &Env| {
            let (code, err) = gather_files_with_stats(env, &root);
            assert_eq!(code, 0, "{err}");
            err
        };
        gather(&env);
        let sudoers = root.join("etc/sudoers");
        let before = std::fs::metadata(&sudoers).unwrap();
        let touch_r = |from: &Path, to: &Path| {
            let status = std::process::Command::new("touch")
                .arg("-r")
                .arg(from)
                .arg(to)
                .status()
                .unwrap();
            assert!(status.success());
        };
        let reference = env.path().join("ref");
        std::fs::write(&reference, "").unwrap();
        touch_r(&sudoers, &reference);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&sudoers, "eve  ALL=(ALL) ALL\n").unwrap();
        touch_r(&reference, &sudoers);
        let after = std::fs::metadata(&sudoers).unwrap();
        assert_eq!(
            (after.len(), after.modified().unwrap()),
            (before.len(), before.modified().unwrap())
        );
        let err = gather(&env);
        assert!(err.contains("1 hashed, 1 hashes reused"), "{err}");
        let d = diff(&env, "files", &[]);
        assert_eq!(
            summary(&d),
            [s("changed", "/etc/sudoers", "sha256")],
            "{kind:?}"
        );
        // Unchanged: nothing hashed, nothing reported (the ctime is bookkeeping).
        let err = gather(&env);
        assert!(err.contains("0 hashed, 2 hashes reused"), "{err}");
        assert!(diff(&env, "files", &[]).is_empty());
        let rows = latest_rows(&env, "files");
        let row: &Value = &rows.iter().find(|(k, _)| k == "/etc/sudoers").unwrap().1;
        assert!(row["_ctime"].is_i64() && row["_dev"].is_u64(), "{row}");
    }
}

/// `rehash = "always"` hashes every file every time (AIDE); `rehash_every`
/// hashes files whose hash is older than the period; a bad value is an error
/// naming the key.
#[test]
fn rehash_always_and_every() {
    let env = Env::new(Kind::Sqlite);
    let root = env.path().join("root");
    write(&root, "/etc/a", "a\n");
    write(&root, "/etc/b", "b\n");
    let gather = |config: &str| {
        env.config(&format!("[gather.files]\npaths = [\"/etc\"]\n{config}"));
        gather_files_with_stats(&env, &root)
    };
    assert!(gather("").1.contains("2 hashed, 0 hashes reused"));
    assert!(gather("").1.contains("0 hashed, 2 hashes reused"));
    assert!(
        gather("rehash = \"always\"\n")
            .1
            .contains("2 hashed, 0 hashes reused")
    );
    assert!(
        gather("rehash = \"changed\"\n")
            .1
            .contains("0 hashed, 2 hashes reused")
    );
    assert!(
        gather("rehash_every = \"1h\"\n")
            .1
            .contains("0 hashed, 2 hashes reused")
    );
    std::thread::sleep(Duration::from_millis(2100));
    assert!(
        gather("rehash_every = \"1s\"\n")
            .1
            .contains("2 hashed, 0 hashes reused")
    );
    let (code, err) = gather("rehash = \"sometimes\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[gather.files] rehash"), "{err}");
    let (code, err) = gather("rehash_every = \"often\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[gather.files] rehash_every"), "{err}");
}

/// filetraq's diffs: `content` files keep their text and a change shows as
/// a unified diff; `secret` files (by default shadow, SSH host keys,
/// `*.key`) only show that their hash changed, and their text is never in
/// the database.
#[test]
fn content_diffs_and_secrets_never_stored() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[gather.files]\npaths = [\"/etc\"]\ncontent = [\"/etc/**\"]\n");
        let root = env.path().join("root");
        write(&root, "/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
        write(&root, "/etc/shadow", "root:$6$SHADOW-ONE$x:1::::::\n");
        write(
            &root,
            "/etc/ssh/ssh_host_ed25519_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nHOSTKEY-ONE\n",
        );
        write(&root, "/etc/ssl/app.key", "APPKEY-ONE\n");
        write(&root, "/etc/big.conf", &"x".repeat(70 * 1024));
        write(&root, "/etc/bin.dat", "a\0b");
        let r = root.to_str().unwrap();
        env.ingest(&["-q", "--gather", "files", "--root", r], b"");
        let rows = latest_rows(&env, "files");
        let row = |p: &str| rows.iter().find(|(k, _)| k == p).unwrap().1.clone();
        assert_eq!(
            row("/etc/hosts")["content"],
            "127.0.0.1 localhost\n::1 localhost\n"
        );
        assert_eq!(
            row("/etc/big.conf")["content_error"],
            "larger than 65536 bytes"
        );
        assert_eq!(row("/etc/bin.dat")["content_error"], "binary");
        for p in [
            "/etc/shadow",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssl/app.key",
        ] {
            let v = row(p);
            assert!(v.get("content").is_none(), "{p}: {v}");
            assert!(v["sha256"].is_string(), "{p}: {v}");
        }
        write(
            &root,
            "/etc/hosts",
            "127.0.0.1 localhost\n10.6.6.6 update.example\n::1 localhost\n",
        );
        write(&root, "/etc/shadow", "root:$6$SHADOW-TWO$x:2::::::\n");
        write(&root, "/etc/ssl/app.key", "APPKEY-TWO\n");
        env.ingest(&["-q", "--gather", "files", "--root", r], b"");
        let d = diff(&env, "files", &["files.*.mtime", "files.*.size"]);
        assert_eq!(
            summary(&d),
            [
                s("changed", "/etc/hosts", "content"),
                s("changed", "/etc/hosts", "sha256"),
                s("changed", "/etc/shadow", "sha256"),
                s("changed", "/etc/ssl/app.key", "sha256"),
            ],
            "{kind:?}"
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "files", "--diff", "--format", "table"],
            b"",
        );
        assert_eq!(code, 4, "{err}");
        // The diff's lines stay lines in the table's cell.
        let lines: Vec<&str> = out
            .lines()
            .map(|l| l.trim_matches(|c: char| c == '│' || c == '┆' || c.is_whitespace()))
            .collect();
        for want in [
            "--- /etc/hosts",
            "+++ /etc/hosts",
            "@@ -1,2 +1,3 @@",
            "127.0.0.1 localhost",
            "+10.6.6.6 update.example",
        ] {
            assert!(
                lines.iter().any(|l| l.ends_with(want)),
                "{kind:?}: table lacks the line {want:?}:\n{out}"
            );
        }
        assert!(!out.contains("\\x0a"), "line breaks escaped:\n{out}");
        let text = database_text(&env);
        for secret in [
            "SHADOW-ONE",
            "SHADOW-TWO",
            "HOSTKEY-ONE",
            "APPKEY-ONE",
            "APPKEY-TWO",
        ] {
            assert!(
                !text.contains(secret),
                "{kind:?}: {secret} is in the database"
            );
        }
        assert!(text.contains("update.example"), "the content is stored");
    }
}

/// sec-tools' annotations and filters: `listenports` rows carry `service`
/// and `verified` from the annotation file, `no_local` drops loopback
/// listeners; `users` `login_only`, `groups` `not_empty`.
#[test]
fn annotations_and_filters() {
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let public = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let (lp, pp) = (
        local.local_addr().unwrap().port(),
        public.local_addr().unwrap().port(),
    );
    for kind in kinds() {
        let env = Env::new(kind);
        let notes = env.path().join("ports.toml");
        std::fs::write(
            &notes,
            format!("\"tcp/{pp}\" = {{ service = \"backup-agent\", verified = true }}\n"),
        )
        .unwrap();
        let cfg = |extra: &str| {
            env.config(&format!(
                "[gather.listenports]\nannotate = \"{}\"\n{extra}",
                notes.display()
            ))
        };
        cfg("");
        env.ingest(&["-q", "--gather", "listenports"], b"");
        let rows = latest_rows(&env, "listenports");
        let get = |k: &str| {
            rows.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let p = get(&format!("tcp/0.0.0.0:{pp}")).expect("public listener");
        assert_eq!(
            (&p["service"], &p["verified"]),
            (&"backup-agent".into(), &true.into())
        );
        let l = get(&format!("tcp/127.0.0.1:{lp}")).expect("local listener");
        assert_eq!(
            (&l["service"], &l["verified"]),
            (&Value::Null, &false.into())
        );
        cfg("no_local = true\n");
        env.ingest(&["-q", "--gather", "listenports"], b"");
        let rows = latest_rows(&env, "listenports");
        assert!(rows.iter().any(|(k, _)| k == &format!("tcp/0.0.0.0:{pp}")));
        assert!(
            rows.iter().all(|(_, v)| {
                let a = v["address"].as_str().unwrap();
                !a.starts_with("127.") && a != "::1"
            }),
            "{rows:?}"
        );
        // A bad annotation file is an error naming it.
        std::fs::write(&notes, "\"tcp/http\" = { verified = true }\n").unwrap();
        let (code, _, err) = env.run("siemparse", &["--gather", "listenports"], b"");
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("ports.toml") && err.contains("tcp/http"),
            "{err}"
        );

        let root = env.path().join("root");
        write(
            &root,
            "/etc/passwd",
            "root:x:0:0::/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
             sync:x:4:65534::/bin:/bin/sync\nalice:x:1000:1000::/home/alice:/bin/zsh\n",
        );
        write(
            &root,
            "/etc/shells",
            "# /etc/shells\n/bin/sh\n/bin/bash\n/bin/zsh\n",
        );
        write(
            &root,
            "/etc/group",
            "root:x:0:\nsudo:x:27:alice\nadm:x:4:\n",
        );
        env.config("[gather.users]\nlogin_only = true\n[gather.groups]\nnot_empty = true\n");
        let r = root.to_str().unwrap();
        env.ingest(&["-q", "--gather", "users", "--root", r], b"");
        env.ingest(&["-q", "--gather", "groups", "--root", r], b"");
        let keys = |name| -> Vec<String> {
            latest_rows(&env, name)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys("users"), ["root", "alice"], "{kind:?}");
        assert_eq!(keys("groups"), ["sudo"], "{kind:?}");
    }
    drop((local, public));
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// OpenVPN clients: certificates from easy-rsa's index.txt, connections from
/// the server's status file in each of its formats (2, then 3, then 1).
#[test]
fn openvpnusers_index_and_status_files() {
    for kind in kinds() {
        let env = Env::new(kind);
        let root = env.path().join("root");
        let dir = root.join("etc/openvpn");
        std::fs::create_dir_all(dir.join("easy-rsa/pki")).unwrap();
        std::fs::copy(
            fixture("openvpn/index.txt"),
            dir.join("easy-rsa/pki/index.txt"),
        )
        .unwrap();
        env.config(
            "[gather.openvpnusers]\nindex = \"/etc/openvpn/easy-rsa/pki/index.txt\"\n\
             status = \"/run/openvpn/server.status\"\n",
        );
        let status = root.join("run/openvpn/server.status");
        std::fs::create_dir_all(status.parent().unwrap()).unwrap();
        let r = root.to_str().unwrap();
        let gather = |version: &str| {
            std::fs::copy(fixture(&format!("openvpn/status-{version}.log")), &status).unwrap();
            env.ingest(&["-q", "--gather", "openvpnusers", "--root", r], b"");
            latest_rows(&env, "openvpnusers")
                .into_iter()
                .collect::<std::collections::BTreeMap<String, Value>>()
        };
        let rows = gather("v2");
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            ["alice", "bob", "carol", "dave", "mallory"],
            "{kind:?}"
        );
        let alice = &rows["alice"];
        assert_eq!(alice["status"], "valid");
        assert_eq!(alice["serial"], "5A1F");
        assert_eq!(alice["expires"], "2035-01-01T00:00:00Z");
        assert_eq!(alice["connected"], true);
        assert_eq!(
            alice["real_address"],
            serde_json::json!(["203.0.113.5:51234"])
        );
        assert_eq!(alice["virtual_address"], serde_json::json!(["10.8.0.6"]));
        assert_eq!(alice["connected_since"], "2026-12-06T09:00:00Z");
        assert!(alice.get("bytes_received").is_none());
        let bob = &rows["bob"];
        assert_eq!(
            (
                &bob["status"],
                &bob["revoked"],
                &bob["revocation_reason"],
                &bob["connected"]
            ),
            (
                &"revoked".into(),
                &"2025-03-01T12:00:00Z".into(),
                &"keyCompromise".into(),
                &false.into()
            )
        );
        // Renewed: the valid certificate, the superseded one in `older`.
        let carol = &rows["carol"];
        assert_eq!(
            (&carol["serial"], &carol["status"]),
            (&"5A22".into(), &"valid".into())
        );
        assert_eq!(carol["older"][0]["serial"], "5A21");
        assert_eq!(carol["older"][0]["status"], "revoked");
        assert_eq!(rows["dave"]["status"], "expired");
        // Connected without a certificate in the index.
        let mallory = &rows["mallory"];
        assert_eq!(
            (&mallory["in_index"], &mallory["connected"]),
            (&false.into(), &true.into())
        );
        assert_eq!(mallory["real_address"][0], "198.51.100.66:40000");

        let rows = gather("v3");
        assert_eq!(rows["alice"]["real_address"][0], "192.0.2.7:60001");
        assert_eq!(rows["bob"]["connected"], true);
        assert_eq!(rows["bob"]["virtual_address"][0], "10.8.0.14");
        assert!(!rows.contains_key("mallory"));
        let d = diff(&env, "openvpnusers", &[]);
        assert_eq!(
            summary(&d),
            [
                s("changed", "alice", "real_address"),
                s("changed", "bob", "connected"),
                s("changed", "bob", "connected_since"),
                s("changed", "bob", "real_address"),
                s("changed", "bob", "virtual_address"),
                s("removed", "mallory", ""),
            ],
            "{kind:?}"
        );

        let rows = gather("v1");
        assert_eq!(rows["alice"]["real_address"][0], "203.0.113.5:51234");
        assert_eq!(rows["alice"]["virtual_address"][0], "10.8.0.6");
        assert_eq!(rows["alice"]["connected_since"], "Sun Dec  6 09:00:00 2026");
        // Not yet authenticated: no common name to key it by.
        assert_eq!(rows["UNDEF"]["in_index"], false);

        // Not a status file: a failed run naming the key.
        std::fs::write(&status, "hello\n").unwrap();
        let (code, _, err) = env.run("siemparse", &["--gather", "openvpnusers", "--root", r], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("[gather.openvpnusers] status"), "{err}");
    }
}

/// A connect scan of 127.0.0.1 against listeners the test opens: open ports
/// with and without a banner, a closed port, bounds from the config.
#[test]
fn portscan_of_localhost() {
    use std::io::Write;
    let ssh = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (p_ssh, p_silent, p_closed) = (
        ssh.local_addr().unwrap().port(),
        silent.local_addr().unwrap().port(),
        closed.local_addr().unwrap().port(),
    );
    drop(closed);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    ssh.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match ssh.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"SSH-2.0-Test_9.9 \x1b[2J\r\nsecond line\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(&format!(
            "[gather.portscan]\nhosts = [\"127.0.0.1\"]\nports = \"{p_ssh},{p_silent},{p_closed}\"\n\
             timeout = \"500ms\"\nconcurrency = 2\nrate = 50\n"
        ));
        env.ingest(&["-q", "--gather", "portscan"], b"");
        let rows = latest_rows(&env, "portscan");
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let mut want = [
            format!("127.0.0.1/{p_ssh}"),
            format!("127.0.0.1/{p_silent}"),
        ];
        want.sort();
        assert_eq!(keys, want, "{kind:?}");
        let get = |p: u16| {
            &rows
                .iter()
                .find(|(k, _)| k.ends_with(&format!("/{p}")))
                .unwrap()
                .1
        };
        assert_eq!(get(p_ssh)["banner"], "SSH-2.0-Test_9.9 \x1b[2J", "{kind:?}");
        assert_eq!(get(p_ssh)["address"], "127.0.0.1");
        // Shown escaped in a table, once.
        let (_, table, _) = env.run(
            "siemquery",
            &["--snapshot", "portscan", "--format", "table"],
            b"",
        );
        assert!(
            table.contains("SSH-2.0-Test_9.9 \\x1b[2J") && !table.contains('\x1b'),
            "{table}"
        );
        assert_eq!(get(p_ssh)["port"], p_ssh);
        assert_eq!(get(p_silent)["banner"], Value::Null);
        // Too many probes, a bad range: errors naming the key.
        env.config("[gather.portscan]\nhosts = [\"10.0.0.0/16\"]\nports = \"1-65535\"\n");
        let (code, _, err) = env.run("siemparse", &["--gather", "portscan"], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("over the limit"), "{err}");
        env.config("[gather.portscan]\nhosts = [\"127.0.0.1\"]\nports = \"90-80\"\n");
        let (code, _, err) = env.run("siemparse", &["--gather", "portscan"], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("[gather.portscan] ports"), "{err}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    drop(silent);
}

/// systraq's hygiene checks on a fixture root: uid 0, duplicate uids, empty
/// passwords (the field itself never stored), world-writable files, loose
/// umasks and PATHs in startup files.
#[test]
fn hygiene_findings() {
    use std::os::unix::fs::PermissionsExt;
    for kind in kinds() {
        let env = Env::new(kind);
        let root = env.path().join("root");
        write(
            &root,
            "/etc/passwd",
            "root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
             alice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\n\
             guest::1002:1002::/home/guest:/bin/sh\ncarol:x:1003:1003::/home/carol:/bin/sh\n",
        );
        write(
            &root,
            "/etc/shadow",
            "root:$6$HASH-NEVER-STORED$x:1::::::\ntoor:!:1::::::\nalice:$6$a$b:1::::::\n\
             bob:$6$c$d:1::::::\ncarol::1::::::\n",
        );
        write(
            &root,
            "/etc/profile",
            "# system\numask 002\nexport PATH=/usr/bin:/bin\n",
        );
        write(&root, "/etc/profile.d/dev.sh", "export PATH=\"$PATH:.\"\n");
        write(&root, "/etc/motd", "hi\n");
        std::fs::set_permissions(
            root.join("etc/motd"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("etc/spool")).unwrap();
        std::fs::set_permissions(
            root.join("etc/spool"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("etc/tmp")).unwrap();
        std::fs::set_permissions(
            root.join("etc/tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("opt/ww")).unwrap();
        std::fs::set_permissions(root.join("opt/ww"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        write(
            &root,
            "/home/alice/.bashrc",
            "PATH=/usr/bin::/opt/ww; umask 022\n",
        );
        write(&root, "/home/alice/.profile", "umask 077\n");
        std::fs::create_dir_all(root.join("home/carol")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", root.join("home/carol/.bashrc")).unwrap();
        env.config("[gather.hygiene]\nwatch = [\"/etc\"]\n");
        let r = root.to_str().unwrap();
        env.ingest(&["-q", "--gather", "hygiene", "--root", r], b"");
        let rows = latest_rows(&env, "hygiene");
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "duplicate_uid:0",
                "duplicate_uid:1000",
                "empty_password:carol",
                "empty_password:guest",
                "path:/etc/profile.d/dev.sh:.",
                "path:/home/alice/.bashrc:",
                "path:/home/alice/.bashrc:/opt/ww",
                "uid0:toor",
                "umask:/etc/profile:002",
                "world_writable:/etc/motd",
                "world_writable:/etc/spool",
            ],
            "{kind:?}"
        );
        let get = |k: &str| &rows.iter().find(|(key, _)| key == k).unwrap().1;
        assert_eq!(
            get("duplicate_uid:1000")["users"],
            serde_json::json!(["alice", "bob"])
        );
        assert_eq!(
            get("path:/home/alice/.bashrc:/opt/ww")["problem"],
            "a world-writable directory"
        );
        assert_eq!(get("world_writable:/etc/motd")["mode"], "0666");
        assert_eq!(
            get("empty_password:carol"),
            &serde_json::json!({"check": "empty_password", "user": "carol"})
        );
        let msg = last_message(&env, "hygiene");
        assert!(
            msg.contains("/home/carol/.bashrc: a symbolic link"),
            "{msg}"
        );
        assert!(!database_text(&env).contains("HASH-NEVER-STORED"));
        // Fixed: the finding is a removed row.
        std::fs::set_permissions(
            root.join("etc/motd"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        env.ingest(&["-q", "--gather", "hygiene", "--root", r], b"");
        assert_eq!(
            summary(&diff(&env, "hygiene", &[])),
            [s("removed", "world_writable:/etc/motd", "")]
        );
    }
}

fn md5_hex(b: &[u8]) -> String {
    let out = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..32].to_owned()
}

/// debsums on a fixture dpkg database: a changed file, a missing one, an
/// edited conffile, a diverted file checked where it was moved, a file
/// dpkg's path-exclude kept out, and a package that is not installed.
#[test]
fn packages_on_a_fixture_dpkg_database() {
    for kind in kinds() {
        let env = Env::new(kind);
        let root = env.path().join("root");
        let files = [
            ("/usr/bin/demo", "binary v1\n"),
            ("/usr/lib/demo/gone", "x\n"),
            ("/usr/lib/demo/lib.so", "lib\n"),
            ("/usr/share/doc/demo/README", "docs\n"),
            ("/etc/demo.conf", "setting = 1\n"),
        ];
        let mut md5sums = String::new();
        for (p, text) in files {
            write(&root, p, text);
            if !p.starts_with("/etc/") {
                md5sums.push_str(&format!("{}  {}\n", md5_hex(text.as_bytes()), &p[1..]));
            }
        }
        write(&root, "/var/lib/dpkg/info/demo:amd64.md5sums", &md5sums);
        write(
            &root,
            "/var/lib/dpkg/info/removed.md5sums",
            &format!("{}  usr/bin/removed\n", md5_hex(b"gone")),
        );
        write(
            &root,
            "/var/lib/dpkg/status",
            &format!(
                "Package: demo\nStatus: install ok installed\nArchitecture: amd64\n\
                 Conffiles:\n /etc/demo.conf {}\n /etc/demo-old.conf {} obsolete\n\
                 Description: demo\n\nPackage: removed\nStatus: deinstall ok config-files\n",
                md5_hex(b"setting = 1\n"),
                md5_hex(b"old")
            ),
        );
        // lib.so diverted by another package: the original lives at .distrib.
        write(
            &root,
            "/var/lib/dpkg/diversions",
            "/usr/lib/demo/lib.so\n/usr/lib/demo/lib.so.distrib\nother\n",
        );
        std::fs::rename(
            root.join("usr/lib/demo/lib.so"),
            root.join("usr/lib/demo/lib.so.distrib"),
        )
        .unwrap();
        write(&root, "/usr/lib/demo/lib.so", "the other package's file\n");
        write(
            &root,
            "/etc/dpkg/dpkg.cfg.d/excludes",
            "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n",
        );
        std::fs::remove_file(root.join("usr/share/doc/demo/README")).unwrap();
        let r = root.to_str().unwrap();
        env.ingest(&["-q", "--gather", "packages", "--root", r], b"");
        assert!(
            latest_rows(&env, "packages").is_empty(),
            "{kind:?}: a clean system has no rows"
        );

        write(&root, "/usr/bin/demo", "binary v2\n");
        std::fs::remove_file(root.join("usr/lib/demo/gone")).unwrap();
        write(&root, "/etc/demo.conf", "setting = 2\n");
        env.ingest(&["-q", "--gather", "packages", "--root", r], b"");
        let rows = latest_rows(&env, "packages");
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["/etc/demo.conf", "/usr/bin/demo", "/usr/lib/demo/gone"],
            "{kind:?}"
        );
        let get = |k: &str| &rows.iter().find(|(key, _)| key == k).unwrap().1;
        let conf = get("/etc/demo.conf");
        assert_eq!(
            (&conf["status"], &conf["conffile"]),
            (&"changed".into(), &true.into())
        );
        assert_eq!(conf["md5"], md5_hex(b"setting = 2\n"));
        let bin = get("/usr/bin/demo");
        assert_eq!(
            (&bin["status"], &bin["conffile"], &bin["package"]),
            (&"changed".into(), &false.into(), &"demo".into())
        );
        assert_eq!(get("/usr/lib/demo/gone")["status"], "missing");
        assert_eq!(
            summary(&diff(&env, "packages", &[])),
            [
                s("added", "/etc/demo.conf", ""),
                s("added", "/usr/bin/demo", ""),
                s("added", "/usr/lib/demo/gone", "")
            ]
        );
        env.config("[gather.packages]\nconffiles = false\n");
        env.ingest(&["-q", "--gather", "packages", "--root", r], b"");
        assert_eq!(latest_rows(&env, "packages").len(), 2);
    }
}

/// This machine's own dpkg database, checked against `dpkg --verify`: the
/// same files are reported changed (MD5) and missing.
#[test]
fn packages_live_matches_dpkg_verify() {
    if !Path::new("/var/lib/dpkg/status").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true on a machine without dpkg"
        );
        eprintln!("no dpkg database: live packages test skipped");
        return;
    }
    let verify = std::process::Command::new("dpkg")
        .arg("--verify")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    // The files dpkg has checksums for (it also reports missing directories).
    let mut listed: std::collections::HashSet<String> = std::collections::HashSet::new();
    for e in std::fs::read_dir("/var/lib/dpkg/info").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(t) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if name.ends_with(".md5sums") {
            listed.extend(
                t.lines()
                    .filter_map(|l| l.split_once("  "))
                    .map(|(_, p)| format!("/{p}")),
            );
        } else if name.ends_with(".conffiles") {
            listed.extend(
                t.lines()
                    .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
                    .map(str::to_owned),
            );
        }
    }
    // `??5?????? c /etc/x`: MD5 differs; `missing   c /etc/x`: gone (flags,
    // a blank, the conffile mark, a blank, the path).
    let mut want: Vec<(String, &str)> = Vec::new();
    for line in text.lines() {
        let (flags, path) = (line.get(..9).unwrap_or(""), line.get(12..).unwrap_or(""));
        if flags.starts_with("missing") && listed.contains(path) {
            want.push((path.to_owned(), "missing"));
        } else if flags.as_bytes().get(2) == Some(&b'5') {
            want.push((path.to_owned(), "changed"));
        }
    }
    want.sort();
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-q", "--gather", "packages"], b"");
        let mut got: Vec<(String, String)> = latest_rows(&env, "packages")
            .into_iter()
            .filter(|(_, v)| v["status"] == "changed" || v["status"] == "missing")
            .map(|(k, v)| (k, v["status"].as_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let got: Vec<(String, &str)> = got.iter().map(|(k, s)| (k.clone(), s.as_str())).collect();
        assert_eq!(got, want, "{kind:?}: packages vs dpkg --verify");
    }
}

/// systraq's daily status in the report: this machine's file systems,
/// interfaces, load and uptime; the period's failed logins per source;
/// hygiene findings, package failures and the unified diff of a watched
/// file. Checked in headless Chromium (screenshot kept in
/// target/artifacts/), and printed to PDF (pages counted by pdfinfo).
#[test]
fn report_status_section_and_pdf() {
    use crate::snapshot::{artifacts_dir, recent, which};
    let ci = std::env::var("CI").is_ok_and(|c| c == "true");
    for kind in kinds() {
        let env = Env::new(kind);
        let mut log = String::new();
        for (m, host) in [(50, "192.0.2.66"), (40, "192.0.2.66"), (30, "198.51.100.9")] {
            log.push_str(&recent(
                m,
                &format!("web sshd[42]: Failed password for root from {host} port 2222 ssh2"),
            ));
        }
        env.ingest(&["-s", "auth", "-z", "UTC"], log.as_bytes());
        let root = env.path().join("root");
        write(
            &root,
            "/etc/passwd",
            "root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
        );
        write(&root, "/etc/shadow", "root:!:1::::::\ntoor:!:1::::::\n");
        write(&root, "/etc/resolv.conf", "nameserver 192.0.2.53\n");
        write(
            &root,
            "/var/lib/dpkg/status",
            "Package: demo\nStatus: install ok installed\n",
        );
        write(
            &root,
            "/var/lib/dpkg/info/demo.md5sums",
            "0123456789abcdef0123456789abcdef  usr/bin/demo\n",
        );
        write(&root, "/usr/bin/demo", "changed\n");
        env.config(
            "[gather.files]\npaths = [\"/etc\"]\ncontent = [\"/etc/**\"]\n[gather.hygiene]\nwatch = [\"/etc\"]\n",
        );
        let r = root.to_str().unwrap();
        for k in ["files", "hygiene", "packages"] {
            env.ingest(&["-q", "--gather", k, "--root", r], b"");
        }
        write(&root, "/etc/resolv.conf", "nameserver 203.0.113.66\n");
        env.ingest(&["-q", "--gather", "files", "--root", r], b"");

        let html_path = env.path().join("status.html");
        let (code, _, err) = env.run(
            "siemquery",
            &["--report", html_path.to_str().unwrap(), "--last", "24h"],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let html = std::fs::read_to_string(&html_path).unwrap();
        for want in [
            "<section id=\"status\">",
            "<table id=\"filesystems\">",
            "<table id=\"interfaces\">",
            "<span id=\"load\">",
            "<span id=\"uptime\">",
            "192.0.2.66</td><td class=\"num\">2</td>",
            "uid0:toor",
            "/usr/bin/demo",
            "changed file (package demo)",
            "<span class=\"del\">-nameserver 192.0.2.53</span>",
            "<span class=\"add\">+nameserver 203.0.113.66</span>",
        ] {
            assert!(html.contains(want), "{kind:?}: report lacks {want:?}");
        }
        let tag = format!("{kind:?}").to_lowercase();
        let art = artifacts_dir();
        std::fs::copy(&html_path, art.join(format!("report-status-{tag}.html"))).unwrap();

        let chromium = match which("chromium").or_else(|_| which("chromium-browser")) {
            Ok(c) => c,
            Err(()) if ci => panic!("chromium is not installed (apt-get install -y chromium)"),
            Err(()) => {
                eprintln!("chromium not found: browser checks of the status section skipped");
                continue;
            }
        };
        let url = format!("file://{}", html_path.display());
        let out = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        for id in [
            "status",
            "filesystems",
            "interfaces",
            "failed-sources",
            "hygiene",
            "packages",
        ] {
            assert!(
                dom.contains(&format!("id=\"{id}\"")),
                "{kind:?}: DOM lacks #{id}"
            );
        }
        let shot = art.join(format!("report-status-{tag}.png"));
        let _ = std::fs::remove_file(&shot);
        let status = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,1800",
                &format!("--screenshot={}", shot.display()),
                &format!("{url}#status"),
            ])
            .output()
            .unwrap();
        assert!(
            shot.metadata().is_ok_and(|m| m.len() > 10_000),
            "no screenshot: {}",
            String::from_utf8_lossy(&status.stderr)
        );

        let pdf = env.path().join("status.pdf");
        let (code, _, err) = env.run(
            "siemquery",
            &["--report", pdf.to_str().unwrap(), "--last", "24h"],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let head = std::fs::read(&pdf).unwrap();
        assert!(head.starts_with(b"%PDF-"), "not a PDF");
        std::fs::copy(&pdf, art.join(format!("report-status-{tag}.pdf"))).unwrap();
        match which("pdfinfo") {
            Ok(pdfinfo) => {
                let info = std::process::Command::new(pdfinfo)
                    .arg(&pdf)
                    .output()
                    .unwrap();
                let info = String::from_utf8_lossy(&info.stdout);
                let pages: u32 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("Pages:"))
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or_else(|| panic!("pdfinfo: {info}"));
                assert!((2..=20).contains(&pages), "{kind:?}: {pages} pages");
            }
            Err(()) if ci => panic!("pdfinfo is not installed (apt-get install -y poppler-utils)"),
            Err(()) => eprintln!("pdfinfo not found: page count skipped"),
        }
    }
    // Without a browser on PATH a PDF is a clear error.
    let env = Env::new(Kind::Sqlite);
    env.ingest(&["-s", "auth"], b"x\n");
    let out = env
        .cmd("siemquery")
        .env("PATH", "/nonexistent")
        .args(["--report", "x.pdf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Chromium"));
}
