/*!
A local MariaDB Galera cluster for tests: N `mariadbd` nodes on 127.0.0.1,
each with its own data directory, ports and config, started the way that
works on one machine:
- the nodes run as user `mysql` (the SST scripts run as the server's user),
  in data directories it owns;
- each node's Galera `base_port` is 10 apart, so its IST port
  (`base_port + 1`) and rsync SST port (`+ 2`) never collide with another's;
- the first node bootstraps the cluster (`--wsrep-new-cluster`); the others
  join one at a time by rsync SST, each waited for until it is `Synced`.

Needs Debian's `galera-4` and `rsync` (`.ci/run` installs them); see
[`Cluster::available`].
*/

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Galera provider library of Debian's galera-4.
const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
const MARIADBD: &str = "/usr/sbin/mariadbd";

/// One node: its ports, files and process.
pub struct Node {
    /// Client port (`mysql://root@127.0.0.1:PORT`).
    pub port: u16,
    /// Galera group communication port (`base_port`).
    pub gcomm: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running cluster; dropped, it kills its nodes and removes its files.
pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// True when this machine can run a cluster (galera-4, rsync, mariadbd,
    /// a `mysql` user); else the reason.
    pub fn available() -> Result<(), String> {
        for f in [
            PROVIDER,
            MARIADBD,
            "/usr/bin/rsync",
            "/usr/bin/wsrep_sst_rsync",
        ] {
            if !Path::new(f).exists() {
                return Err(format!(
                    "{f} is missing (apt-get install galera-4 rsync mariadb-server)"
                ));
            }
        }
        if mysql_ids().is_none() {
            return Err("no user mysql".into());
        }
        Ok(())
    }

    /// Starts `n` nodes: bootstraps the first, then joins the others one at a time.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("siemgalera")
            .tempdir()
            .expect("tempdir");
        let (uid, gid) = mysql_ids().expect("user mysql");
        // mysql must reach its files under the (root-owned) temp dir.
        set_mode(dir.path(), 0o755);
        let base = free_base(n);
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let d = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(d.join("data")).unwrap();
                std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
                std::os::unix::fs::chown(d.join("data"), Some(uid), Some(gid)).unwrap();
                Node {
                    port: base + 10 * i as u16,
                    gcomm: base + 10 * i as u16 + 3,
                    dir: d,
                    child: None,
                }
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut c = Self { nodes, dir, rt };
        c.write_configs();
        c.install_first();
        c.launch(0, true);
        c.wait_synced(0, 1);
        for i in 1..n {
            c.launch(i, false);
            c.wait_synced(i, i + 1);
        }
        c
    }

    fn write_configs(&self) {
        let members: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.gcomm))
            .collect();
        for (i, n) in self.nodes.iter().enumerate() {
            let d = n.dir.display();
            let cnf = format!(
                "[mariadbd]
datadir={d}/data
socket={d}/mysqld.sock
pid-file={d}/mysqld.pid
log-error={d}/error.log
port={port}
bind-address=127.0.0.1
skip-name-resolve
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=32M
innodb_flush_log_at_trx_commit=2
max_allowed_packet=64M
wsrep_on=ON
# Causal reads: a read waits until its node has applied every write the
# cluster committed before it (apply on the other nodes is asynchronous;
# under load a count read right after another node's insert saw 0 rows).
wsrep_sync_wait=1
wsrep_provider={PROVIDER}
wsrep_cluster_name=siemtest{base}
wsrep_cluster_address=gcomm://{members}
wsrep_node_name=node{i}
wsrep_node_address=127.0.0.1:{gcomm}
wsrep_provider_options=\"base_port={gcomm};gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};gcache.size=256M\"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:{sst}
",
                port = n.port,
                base = self.nodes[0].port,
                members = members.join(","),
                gcomm = n.gcomm,
                ist = n.gcomm + 1,
                sst = n.gcomm + 2,
            );
            std::fs::write(n.dir.join("my.cnf"), cnf).unwrap();
        }
        // Root over TCP without a password, as the suite's other server; on
        // the first node, copied to the others by SST.
        let init = self.dir.path().join("init.sql");
        std::fs::write(
            &init,
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n",
        )
        .unwrap();
        set_mode(&init, 0o644);
    }

    /// The system tables of the first node (the others receive them by SST).
    fn install_first(&self) {
        let d = &self.nodes[0].dir;
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", d.join("my.cnf").display()))
            .args([
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .arg("--wsrep-on=OFF")
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts node `i` (`bootstrap`: as a new cluster).
    fn launch(&mut self, i: usize, bootstrap: bool) {
        let n = &mut self.nodes[i];
        let mut cmd = Command::new(MARIADBD);
        cmd.arg(format!(
            "--defaults-file={}",
            n.dir.join("my.cnf").display()
        ))
        .arg("--user=mysql")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if bootstrap {
            cmd.arg("--wsrep-new-cluster").arg(format!(
                "--init-file={}",
                self.dir.path().join("init.sql").display()
            ));
        }
        n.child = Some(cmd.spawn().expect("start mariadbd"));
    }

    /// Waits until node `i` is `Synced` in a cluster of `size` nodes.
    fn wait_synced(&mut self, i: usize, size: usize) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("galera node{i} exited with {status}: {}", self.log_tail(i));
            }
            let state = self.try_status(i);
            if let Some((comment, cluster)) = &state
                && comment == "Synced"
                && *cluster == size
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "galera node{i} not synced after 180 s ({state:?}): {}",
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// (`wsrep_local_state_comment`, `wsrep_cluster_size`) of node `i`, if it answers.
    fn try_status(&self, i: usize) -> Option<(String, usize)> {
        let rows = self.try_sql(i, "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size')").ok()?;
        let get = |name: &str| {
            rows.iter()
                .find(|r| r[0].as_deref() == Some(name))
                .and_then(|r| r[1].clone())
        };
        Some((
            get("wsrep_local_state_comment")?,
            get("wsrep_cluster_size")?.parse().ok()?,
        ))
    }

    /// The last lines of node `i`'s error log.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.nodes[i].dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `mysql://root@127.0.0.1:PORT/db` of node `i`.
    pub fn url(&self, i: usize, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.nodes[i].port)
    }

    /// Runs `sql` on node `i`; rows as strings.
    pub fn try_sql(&self, i: usize, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let url = self.url(i, "mysql");
        self.rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::MySqlConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|k| {
                            r.try_get::<Option<String>, _>(k)
                                .ok()
                                .flatten()
                                .or_else(|| {
                                    r.try_get::<Option<i64>, _>(k)
                                        .ok()
                                        .flatten()
                                        .map(|v| v.to_string())
                                })
                                .or_else(|| {
                                    r.try_get::<Option<u64>, _>(k)
                                        .ok()
                                        .flatten()
                                        .map(|v| v.to_string())
                                })
                                .or_else(|| {
                                    r.try_get::<Option<Vec<u8>>, _>(k)
                                        .ok()
                                        .flatten()
                                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                                })
                        })
                        .collect()
                })
                .collect())
        })
    }

    /// Runs `sql` on node `i`, panicking on error.
    pub fn sql(&self, i: usize, sql: &str) -> Vec<Vec<Option<String>>> {
        self.try_sql(i, sql)
            .unwrap_or_else(|e| panic!("node{i}: {sql}: {e}"))
    }

    /// SIGKILL of node `i` (a crash: no clean leave from the cluster).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again and waits until it has rejoined (IST or SST).
    pub fn restart(&mut self, i: usize) {
        self.launch(i, false);
        let size = self.nodes.iter().filter(|n| n.child.is_some()).count();
        self.wait_synced(i, size);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// uid and gid of user `mysql`.
pub(crate) fn mysql_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"mysql"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

pub(crate) fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A base port with `n` x 10 free ports above it (client port at +0, Galera
/// at +3, IST +4, SST +5 for each node), chosen at random so that two test
/// runs on one machine do not meet.
fn free_base(n: usize) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + 10 * rand::random_range(0..3_000u16);
        let all_free = (0..n as u16).all(|i| {
            [0, 3, 4, 5]
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + 10 * i + o)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no free ports for a galera cluster");
}
