//! Built-in gatherers (`siemparse --gather KIND`): each reads the system
//! (under `--root DIR` instead of `/`, except `listenports`, which reads
//! the live /proc) and returns snapshot rows keyed by a natural key.
//!
//! | kind | key | source |
//! | --- | --- | --- |
//! | `users` | user name | /etc/passwd, /etc/shadow (never the hash) |
//! | `groups` | group name | /etc/group |
//! | `files` | path | `[gather.files] paths` / `exclude` |
//! | `suid` | path | setuid/setgid files under `[gather.suid] roots` |
//! | `authorized_keys` | `user:SHA256:...` | ~/.ssh/authorized_keys{,2} of every passwd user |
//! | `crontabs` | `file:entry` | /etc/crontab, /etc/cron.d/*, /var/spool/cron/{crontabs/,}* |
//! | `listenports` | `proto/address:port` | /proc/net/{tcp,tcp6,udp,udp6}, /proc/*/fd |
//! | `mysql_users` | `user@host` | `[gather.mysql_users] url` |
//! | `openvpnusers` | common name | `[gather.openvpnusers] index`, `status` |
//! | `portscan` | `host/port` | a connect scan of `[gather.portscan] hosts` |
//! | `hygiene` | `check:subject` | passwd, shadow, startup files, `[gather.hygiene] watch` |
//! | `packages` | path | dpkg's md5sums and conffiles (changed or missing files only) |

mod authorized_keys;
mod crontabs;
mod files;
mod fs;
mod groups;
mod hygiene;
mod listenports;
mod listing;
mod mysql_users;
mod openvpnusers;
mod packages;
mod passwd;
mod portscan;
pub mod rootfs;
mod suid;
mod users;

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;
use siemstress_common::snapshot::current::CurrentRows;
use siemstress_common::snapshot::{RawRow, Row};

/// Names of the built-in kinds, for `--gather` and its error message.
pub const KINDS: [&str; 12] = [
    "users",
    "groups",
    "files",
    "suid",
    "authorized_keys",
    "crontabs",
    "listenports",
    "mysql_users",
    "openvpnusers",
    "portscan",
    "hygiene",
    "packages",
];

/// `[gather]` of the config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatherConfig {
    #[serde(default)]
    pub files: FilesConfig,
    #[serde(default)]
    pub suid: SuidConfig,
    #[serde(default)]
    pub mysql_users: MysqlUsersConfig,
    #[serde(default)]
    pub listenports: ListenportsConfig,
    #[serde(default)]
    pub users: UsersConfig,
    #[serde(default)]
    pub groups: GroupsConfig,
    #[serde(default)]
    pub openvpnusers: OpenvpnusersConfig,
    #[serde(default)]
    pub portscan: PortscanConfig,
    #[serde(default)]
    pub hygiene: HygieneConfig,
    #[serde(default)]
    pub packages: PackagesConfig,
}

/// `[gather.packages]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesConfig {
    /// Verify configuration files too (default true; they are marked
    /// `conffile`).
    pub conffiles: Option<bool>,
}

/// `[gather.hygiene]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HygieneConfig {
    /// Directories searched for world-writable files (default /etc,
    /// /usr/local, /usr/bin, /usr/sbin, /bin, /sbin).
    pub watch: Option<Vec<String>>,
    /// Globs of paths left out of that search.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `[gather.portscan]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortscanConfig {
    /// Addresses, host names and IPv4 CIDR blocks (`10.0.0.0/24`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Ports and ranges: `"22,80,443,8000-8100"` (default `1-1024`).
    pub ports: Option<String>,
    /// Connections open at once (default 100).
    pub concurrency: Option<usize>,
    /// Connect and banner timeout (default `1s`).
    pub timeout: Option<String>,
    /// Connection attempts per second (default 500).
    pub rate: Option<u32>,
}

/// `[gather.openvpnusers]`: host paths, read under `--root`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenvpnusersConfig {
    /// easy-rsa's `pki/index.txt` (the OpenSSL CA database).
    pub index: Option<String>,
    /// The server's status file (`status FILE`; versions 1, 2 and 3).
    pub status: Option<String>,
}

/// `[gather.listenports]`: annotations and filters, as sec-tools had them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenportsConfig {
    /// A TOML file of `"proto/port" = { service = "ssh", verified = true }`
    /// (`tcp/22` also matches tcp6; `tcp6/22` only tcp6): rows get
    /// `service` and `verified` (false when the port is not in the file).
    pub annotate: Option<PathBuf>,
    /// Leave out listeners on loopback addresses (127.0.0.0/8, ::1).
    #[serde(default)]
    pub no_local: bool,
}

/// `[gather.users]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// Only accounts with a login shell (one listed in /etc/shells, or
    /// without that file any shell but nologin, false and none).
    #[serde(default)]
    pub login_only: bool,
}

/// `[gather.groups]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// Only groups with members listed in /etc/group.
    #[serde(default)]
    pub not_empty: bool,
}

/// `[gather.files]`: what to watch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Files, directories (recursively) and globs (`*`, `?`, `[...]`, `**`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Globs of paths to leave out (a matching directory is not descended).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Globs of files whose text is stored too (at most 64 KiB, not binary):
    /// a change shows as a unified diff.
    #[serde(default)]
    pub content: Vec<String>,
    /// Globs of files whose text is never stored (only that they changed);
    /// default: shadow, gshadow, SSH host keys, `*.key`.
    pub secret: Option<Vec<String>>,
    /// Paths relative to every home directory in passwd (`.ssh/*`,
    /// `.profile`): watched too, no symlink below the home followed.
    #[serde(default)]
    pub home: Vec<String>,
    /// `changed` (default): reuse a hash while size, mtime, inode, device
    /// and ctime are unchanged; `always`: hash every file on every run.
    pub rehash: Option<String>,
    /// Re-hash files whose hash is older than this (`7d`), whatever changed.
    pub rehash_every: Option<String>,
}

/// Default `[gather.files] secret`.
pub const DEFAULT_SECRET: [&str; 7] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_*_key",
    "**/*.key",
    "**/*.pem",
];

/// `[gather.suid]`: where to look for setuid/setgid files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuidConfig {
    /// Directories searched recursively without crossing file systems
    /// (default: `/`).
    pub roots: Option<Vec<String>>,
    /// Globs of paths to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `[gather.mysql_users]`: the server whose accounts are listed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlUsersConfig {
    /// `mysql://user@host:port/db`; the account needs SELECT on mysql.user.
    pub url: Option<String>,
    /// File holding the password, instead of putting it in the URL.
    pub password_file: Option<PathBuf>,
}

impl GatherConfig {
    /// Reads `[gather]` from the config's raw TOML; unknown keys are errors.
    pub fn from_toml(value: Option<&toml::Value>) -> anyhow::Result<Self> {
        match value {
            None => Ok(Self::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e| anyhow::anyhow!("config [gather]: {e}")),
        }
    }
}

/// What a gatherer works with.
pub struct Ctx<'a> {
    /// Filesystem root to read under (`/` by default), held open: every
    /// file is read through it (see [`rootfs`]).
    pub fs: rootfs::RootFs,
    pub config: &'a GatherConfig,
    /// The rows of the previous successful run of this snapshot on this
    /// host; `files` and `suid` reuse the hashes of regular files whose
    /// size, mtime and inode did not change.
    pub previous: Previous,
    /// Non-fatal problems, printed on stderr.
    pub warnings: Vec<String>,
}

impl Ctx<'_> {
    /// Where host path `p` (absolute, as on the host) lives under the root
    /// (for messages: files are opened through [`Ctx::fs`]).
    pub fn under_root(&self, p: &str) -> PathBuf {
        self.fs.path().join(p.trim_start_matches('/'))
    }

    /// Records a non-fatal problem (it goes into the run's `message`).
    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    /// Reads text file `host` (capped, regular files only, last component
    /// not followed); `Ok(None)` if it does not exist.
    pub fn read_text(&self, host: &str) -> anyhow::Result<Option<String>> {
        match self.fs.read(host, rootfs::TEXT_CAP) {
            Ok((b, _)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "{}: {}",
                self.under_root(host).display(),
                rootfs::refusal(&e)
            )),
        }
    }
}

/// The last run's rows: read already, or being read on another thread
/// (SQLite) while the gatherer walks.
pub enum Previous {
    Ready(CurrentRows),
    Loading(std::thread::JoinHandle<anyhow::Result<CurrentRows>>),
}

impl Default for Previous {
    fn default() -> Self {
        Previous::Ready(CurrentRows::default())
    }
}

impl Previous {
    /// The current rows, waiting for the reader if it is still running.
    pub fn into_current(mut self) -> anyhow::Result<CurrentRows> {
        self.wait()?;
        match self {
            Previous::Ready(current) => Ok(current),
            Previous::Loading(_) => unreachable!("wait() waited"),
        }
    }

    /// The current rows, waiting for the reader if it is still running.
    pub fn wait(&mut self) -> anyhow::Result<&CurrentRows> {
        if let Previous::Loading(_) = self {
            let Previous::Loading(h) = std::mem::take(self) else {
                unreachable!()
            };
            let current = h
                .join()
                .map_err(|_| anyhow::anyhow!("reading the previous run panicked"))??;
            *self = Previous::Ready(current);
        }
        match self {
            Previous::Ready(current) => Ok(current),
            Previous::Loading(_) => unreachable!(),
        }
    }
}

/// Runs gatherer `kind`; rows as stored (`files` and `suid` write their
/// JSON directly, the others are serialized here).
pub async fn gather(kind: &str, ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<RawRow>> {
    let rows: Vec<Row> = match kind {
        "files" => return files::gather(ctx),
        "suid" => return suid::gather(ctx),
        "users" => users::gather(ctx)?,
        "groups" => groups::gather(ctx)?,
        "authorized_keys" => authorized_keys::gather(ctx)?,
        "crontabs" => crontabs::gather(ctx)?,
        "listenports" => listenports::gather(ctx)?,
        "openvpnusers" => openvpnusers::gather(ctx)?,
        "portscan" => portscan::gather(ctx).await?,
        "hygiene" => hygiene::gather(ctx)?,
        "packages" => packages::gather(ctx)?,
        "mysql_users" => mysql_users::gather(ctx)
            .await
            .context("gather mysql_users")?,
        other => bail!(
            "unknown gatherer {other:?}: use one of {}",
            KINDS.join(", ")
        ),
    };
    Ok(rows.into_iter().map(RawRow::from_row).collect())
}
