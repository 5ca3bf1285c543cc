//! File metadata rows shared by `files` and `suid`: walking directories
//! under the root, lstat, and SHA-256 of regular files, reused from the
//! previous run when size, mtime and inode are unchanged.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use siemstress_common::snapshot::Row;

/// A path as on the host (`/etc/passwd`) and where it is read (`ROOT/etc/passwd`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub host: String,
    pub full: PathBuf,
    /// lstat of the entry when the walk already has it.
    pub md: Option<std::fs::Metadata>,
}

/// A glob over host paths: `*` stays within one component, `**` crosses.
pub fn glob(pattern: &str) -> anyhow::Result<Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| anyhow::anyhow!("glob {pattern:?}: {}", e.kind()))
}

/// A set of globs (exclusions).
pub fn glob_set(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(p)?);
    }
    Ok(b.build()?)
}

/// True if `s` has glob metacharacters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// How a walk went: entries it could not list, by host path.
#[derive(Debug, Default)]
pub struct WalkErrors(pub HashMap<String, String>);

/// Walks `start` (not itself reported) depth-first in name order, without
/// following symlinks. `max_depth` limits levels below `start`; `same_dev`
/// keeps to one file system; excluded paths are neither reported nor
/// descended. `visit` gets every entry with its lstat metadata.
pub fn walk(
    start: &Entry,
    max_depth: Option<usize>,
    same_dev: Option<u64>,
    exclude: &GlobSet,
    errors: &mut WalkErrors,
    visit: &mut dyn FnMut(&Entry, &std::fs::Metadata),
) {
    let mut stack = vec![(start.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let listing = match std::fs::read_dir(&dir.full) {
            Ok(l) => l,
            Err(e) => {
                errors
                    .0
                    .insert(dir.host.clone(), format!("cannot list: {e}"));
                continue;
            }
        };
        let mut children: Vec<(std::ffi::OsString, PathBuf)> = listing
            .filter_map(Result::ok)
            .map(|d| (d.file_name(), d.path()))
            .collect();
        children.sort();
        let mut subdirs = Vec::new();
        for (name, full) in children {
            let host = format!(
                "{}/{}",
                dir.host.trim_end_matches('/'),
                name.to_string_lossy()
            );
            if !exclude.is_empty() && exclude.is_match(&host) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&full) else {
                continue;
            };
            let entry = Entry {
                host,
                full,
                md: Some(md.clone()),
            };
            visit(&entry, &md);
            let deeper = max_depth.is_none_or(|m| depth + 1 < m);
            if md.is_dir() && deeper && same_dev.is_none_or(|d| md.dev() == d) {
                subdirs.push((entry, depth + 1));
            }
        }
        // Reverse so that the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
}

/// Type name of a file.
pub fn type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "chardev"
    } else if ft.is_block_device() {
        "blockdev"
    } else {
        "unknown"
    }
}

/// RFC 3339 UTC with as many fraction digits as needed.
fn mtime(md: &std::fs::Metadata) -> String {
    chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec().clamp(0, 999_999_999) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Counters of a run, for the summary.
#[derive(Debug, Default)]
pub struct HashStats {
    pub hashed: AtomicUsize,
    pub reused: AtomicUsize,
}

/// What hash reuse needs of last run's row of a path.
#[derive(Debug, serde::Deserialize)]
pub struct PrevFile<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    size: Option<u64>,
    #[serde(borrow)]
    mtime: Option<std::borrow::Cow<'a, str>>,
    inode: Option<u64>,
    #[serde(borrow)]
    sha256: Option<std::borrow::Cow<'a, str>>,
}

/// The row of one entry, or `None` if it vanished. `previous` maps host
/// paths to last run's rows for hash reuse.
pub fn entry_row(
    e: &Entry,
    previous: &HashMap<&str, PrevFile<'_>>,
    list_error: Option<&str>,
    stats: &HashStats,
) -> Option<Value> {
    let mut v = Map::new();
    v.insert("path".into(), json!(e.host));
    let md = match e
        .md
        .clone()
        .map_or_else(|| std::fs::symlink_metadata(&e.full), Ok)
    {
        Ok(md) => md,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            v.insert("type".into(), json!("unknown"));
            v.insert("error".into(), json!(format!("cannot stat: {err}")));
            return Some(Value::Object(v));
        }
    };
    let ft = md.file_type();
    fill_meta(&mut v, &md);
    if ft.is_symlink() {
        match std::fs::read_link(&e.full) {
            Ok(t) => v.insert("link".into(), json!(t.to_string_lossy())),
            Err(err) => v.insert("error".into(), json!(format!("cannot read link: {err}"))),
        };
    } else if ft.is_file() {
        let reusable = previous.get(e.host.as_str()).and_then(|p| {
            let same = p.kind.as_deref() == Some("file")
                && p.size == Some(md.size())
                && p.inode == Some(md.ino())
                && p.mtime.as_deref() == Some(mtime(&md).as_str());
            same.then_some(p.sha256.as_deref()).flatten()
        });
        if let Some(h) = reusable {
            v.insert("sha256".into(), json!(h));
            stats.reused.fetch_add(1, Ordering::Relaxed);
        } else {
            match hash_file(&e.full) {
                Ok((hash, md2)) => {
                    // What was hashed is what the file was while open.
                    fill_meta(&mut v, &md2);
                    v.insert("sha256".into(), json!(hash));
                    stats.hashed.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    v.insert("sha256".into(), Value::Null);
                    v.insert("error".into(), json!(format!("cannot read: {err}")));
                }
            }
        }
    }
    if let Some(msg) = list_error {
        v.insert("error".into(), json!(msg));
    }
    Some(Value::Object(v))
}

fn fill_meta(v: &mut Map<String, Value>, md: &std::fs::Metadata) {
    let ft = md.file_type();
    v.insert("type".into(), json!(type_name(ft)));
    v.insert("mode".into(), json!(format!("{:04o}", md.mode() & 0o7777)));
    v.insert("uid".into(), json!(md.uid()));
    v.insert("gid".into(), json!(md.gid()));
    // Directory sizes and times change with every entry added: noise. The
    // entries themselves show up as added and removed rows.
    if ft.is_file() || ft.is_symlink() {
        v.insert("size".into(), json!(md.size()));
        v.insert("mtime".into(), json!(mtime(md)));
    }
    if ft.is_file() {
        v.insert("inode".into(), json!(md.ino()));
    }
}

/// SHA-256 (hex) of a regular file and its metadata while open. Opens
/// without following symlinks, without blocking on a FIFO swapped in, and
/// without touching atime where permitted.
pub fn hash_file(path: &Path) -> std::io::Result<(String, std::fs::Metadata)> {
    let open = |noatime: bool| {
        let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
        if noatime {
            flags |= libc::O_NOATIME;
        }
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    let mut f = match open(true) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(false)?,
        other => other?,
    };
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::other("replaced by a non-regular file"));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok((format!("{:x}", h.finalize()), md))
}

/// Rows of `entries` (in their order), stat'ed and hashed on a few threads.
pub fn rows_for(
    entries: &[Entry],
    previous: &[(String, String)],
    errors: &WalkErrors,
    stats: &HashStats,
) -> Vec<Row> {
    let prev: HashMap<&str, PrevFile<'_>> = previous
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), serde_json::from_str(v).ok()?)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Row)>> = Mutex::new(Vec::with_capacity(entries.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = entries.get(i) else { break };
                    let err = errors.0.get(&e.host).map(String::as_str);
                    if let Some(v) = entry_row(e, &prev, err, stats) {
                        local.push((i, Row::new(e.host.clone(), v)));
                    }
                }
                out.lock().expect("rows lock").extend(local);
            });
        }
    });
    let mut rows = out.into_inner().expect("rows lock");
    rows.sort_unstable_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}
