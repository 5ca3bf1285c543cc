//! `[gather.KIND]`: the settings of siemparse's built-in gatherers
//! (`siemparse --gather KIND`), one struct per kind, read with the config
//! (an unknown key is an error with its line).

use std::path::PathBuf;

use serde::Deserialize;

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
