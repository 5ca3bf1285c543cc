//! `hygiene`: one row per finding of the checks systraq's and sec-tools'
//! scripts ran, read under the root like every gatherer. Keyed
//! `CHECK:SUBJECT`, so a finding that goes away is a removed row and a new
//! one an added row.
//!
//! | check | key | finding |
//! | --- | --- | --- |
//! | `uid0` | `uid0:NAME` | an account other than root with uid 0 |
//! | `duplicate_uid` | `duplicate_uid:UID` | several accounts share a uid (`users` lists them) |
//! | `empty_password` | `empty_password:NAME` | the password field (shadow, else passwd) is empty: anyone may log in. Only the flag is stored, never the field |
//! | `world_writable` | `world_writable:PATH` | a file, or a directory without the sticky bit, writable by everyone, under `[gather.hygiene] watch` (default /etc, /usr/local, /usr/bin, /usr/sbin, /bin, /sbin; one file system each, symlinks not followed) |
//! | `umask` | `umask:FILE:MASK` | a shell startup file sets a umask that lets group or others write (looser than 022) |
//! | `path` | `path:FILE:ENTRY` | a startup file puts `.`, an empty entry (the same as `.`), a relative directory or a world-writable directory into PATH |
//!
//! Startup files: /etc/profile, /etc/bash.bashrc, /etc/profile.d/*, and
//! each home's `.profile`, `.bash_profile`, `.bashrc` (read below the home
//! without following symlinks, see [`super::rootfs`]). Their lines are
//! read as the shell would for these two settings only: `umask NNN` (octal)
//! and `PATH=...`/`export PATH=...` assignments, `$PATH` references skipped.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::fs::{self, Entry, WalkErrors};
use super::passwd::{open_home, read_colon_file, read_passwd};
use super::rootfs::{self, Base};

/// Default `[gather.hygiene] watch`.
pub const DEFAULT_WATCH: [&str; 6] = [
    "/etc",
    "/usr/local",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
];

/// Startup files of each home.
const HOME_FILES: [&str; 3] = [".profile", ".bash_profile", ".bashrc"];

/// Largest startup file read.
const STARTUP_CAP: u64 = 1 << 20;

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let mut rows: BTreeMap<String, Value> = BTreeMap::new();
    let passwd = read_passwd(ctx)?;
    accounts(ctx, &passwd, &mut rows)?;
    world_writable(ctx, &mut rows)?;
    // Startup files: (host path, text).
    let mut startup: Vec<(String, String)> = Vec::new();
    for f in ["/etc/profile", "/etc/bash.bashrc"] {
        if let Some(t) = read_startup(ctx, None, f) {
            startup.push((f.to_owned(), t));
        }
    }
    match ctx.fs.list("/etc/profile.d") {
        Ok(list) => {
            for (name, st) in list {
                let host = format!("/etc/profile.d/{name}");
                if st.is_file()
                    && let Some(t) = read_startup(ctx, None, &host)
                {
                    startup.push((host, t));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => ctx.warn(format!(
            "hygiene: cannot list /etc/profile.d: {}",
            rootfs::refusal(&e)
        )),
    }
    let mut homes_seen = HashSet::new();
    for u in &passwd {
        let home = match open_home(&ctx.fs, u) {
            Ok(Some(h)) => h,
            Ok(None) => continue,
            Err(msg) => {
                ctx.warn(format!("hygiene: {msg}"));
                continue;
            }
        };
        if !homes_seen.insert(home.host.clone()) {
            continue;
        }
        for f in HOME_FILES {
            let host = format!("{}/{f}", home.host.trim_end_matches('/'));
            if let Some(t) = read_startup(ctx, Some(&home), &host) {
                startup.push((host, t));
            }
        }
    }
    for (file, text) in &startup {
        startup_findings(ctx, file, text, &mut rows);
    }
    Ok(rows.into_iter().map(|(k, v)| Row::new(k, v)).collect())
}

/// uid 0 besides root, duplicate uids, empty password fields.
fn accounts(
    ctx: &mut Ctx<'_>,
    passwd: &[super::passwd::PasswdEntry],
    rows: &mut BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    let mut by_uid: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for u in passwd {
        if let Some(uid) = u.uid {
            by_uid.entry(uid).or_default().push(&u.name);
            if uid == 0 && u.name != "root" {
                rows.insert(
                    format!("uid0:{}", u.name),
                    json!({"check": "uid0", "user": u.name, "shell": u.shell}),
                );
            }
        }
    }
    for (uid, users) in by_uid.into_iter().filter(|(_, u)| u.len() > 1) {
        let mut users: Vec<&str> = users;
        users.sort_unstable();
        rows.insert(
            format!("duplicate_uid:{uid}"),
            json!({"check": "duplicate_uid", "uid": uid, "users": users}),
        );
    }
    // The password fields: shadow's where there is an entry, else passwd's
    // (`x` there means "see shadow"). Only emptiness leaves this function.
    let shadow: Option<HashSet<String>> = match read_colon_file(ctx, "/etc/shadow") {
        Ok(lines) => Some(
            lines
                .into_iter()
                .filter(|f| f.get(1).is_some_and(|p| p.is_empty()))
                .filter_map(|f| f.into_iter().next())
                .collect(),
        ),
        Err(e) => {
            ctx.warn(format!(
                "hygiene: {e:#}; empty passwords checked in /etc/passwd only"
            ));
            None
        }
    };
    let passwd_text = ctx.read_text("/etc/passwd")?.unwrap_or_default();
    let passwd_empty: HashSet<&str> = passwd_text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            f.next()?.is_empty().then_some(name)
        })
        .collect();
    for u in passwd {
        let empty = passwd_empty.contains(u.name.as_str())
            || shadow.as_ref().is_some_and(|s| s.contains(&u.name));
        if empty {
            rows.insert(
                format!("empty_password:{}", u.name),
                json!({"check": "empty_password", "user": u.name}),
            );
        }
    }
    Ok(())
}

/// World-writable files (and directories without the sticky bit) under the
/// watched directories.
fn world_writable(ctx: &mut Ctx<'_>, rows: &mut BTreeMap<String, Value>) -> anyhow::Result<()> {
    let cfg = &ctx.config.hygiene;
    let watch: Vec<String> = cfg
        .watch
        .clone()
        .unwrap_or_else(|| DEFAULT_WATCH.iter().map(|s| (*s).to_owned()).collect());
    let exclude = fs::glob_set(&cfg.exclude)?;
    let mut bases: Vec<Base> = Vec::new();
    let mut found: Vec<Entry> = Vec::new();
    let mut errors = WalkErrors::default();
    let mut warnings = Vec::new();
    let mut seen = HashSet::new();
    for dir in &watch {
        let host = dir.trim_end_matches('/');
        let host = if host.is_empty() { "/" } else { host };
        // A watched directory that is a symlink (merged /usr: /bin -> usr/bin)
        // is searched where it leads, once.
        let base = match ctx.fs.base(host, true) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!("hygiene: watch {host}: {}", rootfs::refusal(&e)));
                continue;
            }
        };
        let st = rootfs::fstat(base.fd())?;
        if !seen.insert((st.dev, st.ino)) {
            continue;
        }
        bases.push(base);
        fs::walk(
            &bases,
            bases.len() - 1,
            host,
            None,
            Some(st.dev),
            &exclude,
            &mut errors,
            &mut found,
            &mut |_, md| {
                md.perm() & 0o002 != 0
                    && !md.is_symlink()
                    && !(md.is_dir() && md.perm() & 0o1000 != 0)
            },
        );
    }
    for w in warnings {
        ctx.warn(w);
    }
    let mut unlisted: Vec<String> = errors
        .0
        .into_iter()
        .map(|(p, e)| format!("{p} ({e})"))
        .collect();
    if !unlisted.is_empty() {
        unlisted.sort();
        ctx.warn(format!("hygiene: not searched: {}", unlisted.join(", ")));
    }
    for e in found {
        let md = e.md.expect("walk entries have their lstat");
        rows.insert(
            format!("world_writable:{}", e.host),
            json!({
                "check": "world_writable",
                "path": e.host,
                "type": md.type_name(),
                "mode": format!("{:04o}", md.perm()),
                "uid": md.uid,
            }),
        );
    }
    Ok(())
}

/// The text of startup file `host` (below `home` if given), or `None` if it
/// is missing or refused (refusals go into the run's message).
fn read_startup(ctx: &mut Ctx<'_>, home: Option<&Base>, host: &str) -> Option<String> {
    let r = match home {
        Some(h) => h.read(host, STARTUP_CAP),
        None => ctx.fs.read(host, STARTUP_CAP),
    };
    match r {
        Ok((b, _)) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            ctx.warn(format!("hygiene: {host}: {}", rootfs::refusal(&e)));
            None
        }
    }
}

/// The umask and PATH findings of one startup file.
fn startup_findings(ctx: &Ctx<'_>, file: &str, text: &str, rows: &mut BTreeMap<String, Value>) {
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        // Commands separated by `;` or `&&` on one line.
        for cmd in line.split([';', '&']).map(str::trim) {
            if let Some(mask) = umask_of(cmd)
                && mask & 0o022 != 0o022
            {
                rows.insert(
                    format!("umask:{file}:{mask:03o}"),
                    json!({"check": "umask", "path": file, "umask": format!("{mask:03o}"), "line": n + 1}),
                );
            }
            if let Some(value) = path_assignment(cmd) {
                for entry in value.split(':') {
                    let problem = if entry.is_empty() {
                        Some("empty entry (the current directory)")
                    } else if entry == "$PATH" || entry == "${PATH}" {
                        None
                    } else if entry == "." {
                        Some("the current directory")
                    } else if !entry.starts_with('/')
                        && !entry.starts_with('$')
                        && !entry.starts_with('~')
                    {
                        Some("a relative directory")
                    } else if entry.starts_with('/') && world_writable_dir(ctx, entry) {
                        Some("a world-writable directory")
                    } else {
                        None
                    };
                    if let Some(why) = problem {
                        rows.insert(
                            format!("path:{file}:{entry}"),
                            json!({"check": "path", "path": file, "entry": entry, "problem": why, "line": n + 1}),
                        );
                    }
                }
            }
        }
    }
}

/// The octal mask of a `umask NNN` command.
fn umask_of(cmd: &str) -> Option<u32> {
    let rest = cmd.strip_prefix("umask")?;
    let arg = rest.split_whitespace().next()?;
    if !rest.starts_with(char::is_whitespace) || arg.starts_with('-') {
        return None;
    }
    u32::from_str_radix(arg, 8).ok().filter(|m| *m <= 0o777)
}

/// The value of `PATH=...`, `export PATH=...` (quotes removed).
fn path_assignment(cmd: &str) -> Option<&str> {
    let cmd = cmd.strip_prefix("export ").map(str::trim).unwrap_or(cmd);
    let v = cmd.strip_prefix("PATH=")?;
    let v = v.split_whitespace().next().unwrap_or("");
    Some(v.trim_matches(['"', '\'']))
}

/// True if host directory `dir` exists under the root and others may write it.
fn world_writable_dir(ctx: &Ctx<'_>, dir: &str) -> bool {
    use rustix::fs::OFlags;
    ctx.fs
        .open(
            dir,
            true,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        )
        .and_then(rootfs::fstat)
        .is_ok_and(|st| st.perm() & 0o002 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_and_path_lines() {
        assert_eq!(umask_of("umask 002"), Some(0o002));
        assert_eq!(umask_of("umask 0027"), Some(0o027));
        assert_eq!(umask_of("umask -S"), None);
        assert_eq!(umask_of("umasked 002"), None);
        assert_eq!(path_assignment("export PATH=\"$PATH:.\""), Some("$PATH:."));
        assert_eq!(
            path_assignment("PATH=/usr/bin::/bin"),
            Some("/usr/bin::/bin")
        );
        assert_eq!(path_assignment("MANPATH=/x"), None);
    }
}
