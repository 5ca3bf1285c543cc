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

pub use siemstress_common::config::gather::{
    DEFAULT_SECRET, FilesConfig, GatherConfig, PortscanConfig,
};

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
