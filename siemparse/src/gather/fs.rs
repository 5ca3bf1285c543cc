//! File metadata rows shared by `files` and `suid`: walking directories
//! under the root, lstat, and SHA-256 of regular files, reused from the
//! previous run when size, mtime and inode are unchanged.
//!
//! A second run over an unchanged tree does little per file: one `statx`
//! relative to the directory being listed, a lookup of the previous run's
//! size, mtime, inode and hash (read from its stored JSON by a scanner of
//! flat objects, without building a `serde_json::Value`), and the row's JSON
//! written directly into one `String` (same text as `serde_json` writes:
//! keys sorted, compact).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use siemstress_common::snapshot::RawRow;

use super::listing::Prefetch;
use siemstress_common::snapshot::current::CurrentRows;

/// A path as on the host (`/etc/passwd`), read under the root
/// (`ROOT/etc/passwd`, see [`full_path`]).
#[derive(Debug, Clone)]
pub struct Entry {
    pub host: String,
    /// lstat of the entry when the walk already has it.
    pub md: Option<std::fs::Metadata>,
}

/// Where host path `host` is read under `root`.
pub fn full_path(root: &Path, host: &str) -> PathBuf {
    super::under_root(root, host)
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

/// Walks host directory `start` under `root` (`start` itself not
/// reported) depth-first in name order, without following symlinks.
/// `max_depth` limits levels below `start`; `same_dev` keeps to one file
/// system; excluded paths are neither reported nor descended. `keep` sees
/// every entry (host path, lstat) and says whether it goes into `out`.
/// Directories are listed (and their entries stat'ed) ahead on helper
/// threads, see [`super::listing`].
#[allow(clippy::too_many_arguments)]
pub fn walk(
    root: &Path,
    start: &str,
    max_depth: Option<usize>,
    same_dev: Option<u64>,
    exclude: &GlobSet,
    errors: &mut WalkErrors,
    out: &mut Vec<Entry>,
    keep: &mut dyn FnMut(&str, &std::fs::Metadata) -> bool,
) {
    let helpers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    Prefetch::new(root, exclude).run(helpers, |prefetch| {
        let mut stack = vec![(start.to_owned(), 0usize)];
        prefetch.want(std::iter::once(start.to_owned()));
        let mut subdirs: Vec<(String, usize)> = Vec::new();
        while let Some((dir, depth)) = stack.pop() {
            let listing = match prefetch.take(&dir) {
                Ok(l) => l,
                Err(e) => {
                    errors.0.insert(dir, format!("cannot list: {e}"));
                    continue;
                }
            };
            for (host, md) in listing {
                let deeper = max_depth.is_none_or(|m| depth + 1 < m);
                let descend = md.is_dir() && deeper && same_dev.is_none_or(|d| md.dev() == d);
                let kept = keep(&host, &md);
                match (kept, descend) {
                    (true, true) => {
                        subdirs.push((host.clone(), depth + 1));
                        out.push(Entry { host, md: Some(md) });
                    }
                    (true, false) => out.push(Entry { host, md: Some(md) }),
                    (false, true) => subdirs.push((host, depth + 1)),
                    (false, false) => {}
                }
            }
            // Reversed, so that the stack (and the read-ahead queue) pop
            // them in name order.
            prefetch.want(subdirs.iter().rev().map(|(d, _)| d.clone()));
            stack.extend(subdirs.drain(..).rev());
        }
    });
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

/// RFC 3339 UTC with as many fraction digits as needed (as chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`), appended to `out`.
fn push_mtime(out: &mut String, md: &std::fs::Metadata) {
    let (secs, nsec) = (md.mtime(), md.mtime_nsec().clamp(0, 999_999_999) as u32);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        // Out of the four-digit years: as chrono writes it, or empty.
        if let Some(t) = chrono::DateTime::from_timestamp(secs, nsec) {
            out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        }
        return;
    }
    let mut b = [0u8; 30];
    let put = |b: &mut [u8], at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, 0, y as u32, 4);
    b[4] = b'-';
    put(&mut b, 5, m, 2);
    b[7] = b'-';
    put(&mut b, 8, d, 2);
    b[10] = b'T';
    put(&mut b, 11, tod / 3600, 2);
    b[13] = b':';
    put(&mut b, 14, tod / 60 % 60, 2);
    b[16] = b':';
    put(&mut b, 17, tod % 60, 2);
    let mut n = 19;
    if nsec != 0 {
        b[19] = b'.';
        let (v, width) = if nsec % 1_000_000 == 0 {
            (nsec / 1_000_000, 3)
        } else if nsec % 1_000 == 0 {
            (nsec / 1_000, 6)
        } else {
            (nsec, 9)
        };
        put(&mut b, 20, v, width);
        n = 20 + width;
    }
    b[n] = b'Z';
    out.push_str(std::str::from_utf8(&b[..=n]).unwrap_or_default());
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Counters of a run, for the summary.
#[derive(Debug, Default)]
pub struct HashStats {
    pub hashed: AtomicUsize,
    pub reused: AtomicUsize,
}

/// What hash reuse needs of last run's row of a regular file (inline:
/// one allocation per file, its key).
#[derive(Debug, Clone, PartialEq)]
struct PrevFile {
    size: u64,
    inode: u64,
    mtime_len: u8,
    mtime: [u8; MTIME_MAX],
    sha256: [u8; 64],
}

/// Longest mtime text kept (`-262143-01-01T00:00:00.123456789Z` is 34).
const MTIME_MAX: usize = 40;

impl PrevFile {
    fn mtime(&self) -> &[u8] {
        &self.mtime[..usize::from(self.mtime_len)]
    }

    fn sha256(&self) -> &str {
        // Checked to be hex digits when read.
        std::str::from_utf8(&self.sha256).unwrap_or_default()
    }
}

/// The reuse fields of a row if it is a `file` with a 64-hex `sha256`:
/// a scan of a flat JSON object, without building its value. Anything
/// unexpected (nesting, escapes in these fields, bad syntax) is `None`.
fn prev_file(json: &[u8]) -> Option<PrevFile> {
    let (mut kind, mut size, mut inode, mut mtime, mut sha) = (None, None, None, None, None);
    scan_flat_object(json, |key, value| match (key, value) {
        (b"type", Scalar::Str(v)) => kind = Some(v),
        (b"size", Scalar::Num(v)) => size = parse_u64(v),
        (b"inode", Scalar::Num(v)) => inode = parse_u64(v),
        (b"mtime", Scalar::Str(v)) => mtime = Some(v),
        (b"sha256", Scalar::Str(v)) => sha = Some(v),
        _ => {}
    })?;
    if kind != Some(b"file".as_slice()) {
        return None;
    }
    let sha: [u8; 64] = sha?.try_into().ok()?;
    let mtime = mtime.filter(|m| m.len() <= MTIME_MAX)?;
    if !sha.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut p = PrevFile {
        size: size?,
        inode: inode?,
        mtime_len: mtime.len() as u8,
        mtime: [0; MTIME_MAX],
        sha256: sha,
    };
    p.mtime[..mtime.len()].copy_from_slice(mtime);
    Some(p)
}

/// Digits only (no sign, no exponent), as stored for size and inode.
fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    t.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit()
            .then_some(())
            .and_then(|_| n.checked_mul(10)?.checked_add(u64::from(c - b'0')))
    })
}

/// A scalar member of a flat JSON object: a string without escapes (its
/// bytes), a number (its text), or anything else.
enum Scalar<'a> {
    Str(&'a [u8]),
    Num(&'a [u8]),
    Other,
}

/// Calls `f(key, value)` for each member of the JSON object `b` whose
/// values are scalars. `None` if `b` is not such an object.
fn scan_flat_object<'a>(b: &'a [u8], mut f: impl FnMut(&'a [u8], Scalar<'a>)) -> Option<()> {
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // A string at `i` (on its quote): its raw bytes and whether it has escapes.
    let string = |i: &mut usize| -> Option<(&'a [u8], bool)> {
        let start = *i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
            if b[j] == b'"' {
                break;
            }
            escaped = true;
            j += 2;
        }
        *i = j + 1;
        Some((&b[start..j], escaped))
    };
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    ws(&mut i);
    if b.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        ws(&mut i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, key_escaped) = string(&mut i)?;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        ws(&mut i);
        let value = match b.get(i)? {
            b'"' => {
                let (v, escaped) = string(&mut i)?;
                if escaped {
                    Scalar::Other
                } else {
                    Scalar::Str(v)
                }
            }
            b'{' | b'[' => return None,
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b'}') && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                let t = &b[start..i];
                match t.first()? {
                    b'-' | b'0'..=b'9' => Scalar::Num(t),
                    _ => Scalar::Other,
                }
            }
        };
        if !key_escaped {
            f(key, value);
        }
        ws(&mut i);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// Appends `s` as a JSON string (escaped as serde_json does).
fn push_json_str(out: &mut String, s: &str) {
    let special = s.bytes().fold(false, |acc, c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !special {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// Appends an unsigned decimal.
fn push_u64(out: &mut String, v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut v = v;
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&b[i..]).unwrap_or_default());
}

/// Appends `,"key":` (or `"key":` after the opening brace).
fn push_key(out: &mut String, key: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

/// Writes the JSON of one entry into `out` (cleared first); false if it
/// vanished. Members in key order, as `serde_json` writes a map: error,
/// gid, inode, link, mode, mtime, path, sha256, size, type, uid.
fn entry_json(
    root: &Path,
    e: &Entry,
    previous: &CurrentRows,
    list_error: Option<&str>,
    stats: &HashStats,
    out: &mut String,
) -> bool {
    out.clear();
    out.push('{');
    let stat = match &e.md {
        Some(md) => Ok(md.clone()),
        None => std::fs::symlink_metadata(full_path(root, &e.host)),
    };
    let mut md = match stat {
        Ok(md) => md,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return false,
        Err(err) => {
            push_key(out, "error");
            push_json_str(out, &format!("cannot stat: {err}"));
            push_key(out, "path");
            push_json_str(out, &e.host);
            out.push_str(",\"type\":\"unknown\"}");
            return true;
        }
    };
    let ft = md.file_type();
    let mut error: Option<String> = None;
    let mut link: Option<String> = None;
    // Some(None): a file that could not be read (`"sha256":null`).
    let mut sha256: Option<Option<&str>> = None;
    let hashed: String;
    let prev: Option<PrevFile>;
    let mut mtime = String::new();
    if ft.is_file() || ft.is_symlink() {
        push_mtime(&mut mtime, &md);
    }
    if ft.is_symlink() {
        match std::fs::read_link(full_path(root, &e.host)) {
            Ok(t) => link = Some(t.to_string_lossy().into_owned()),
            Err(err) => error = Some(format!("cannot read link: {err}")),
        }
    } else if ft.is_file() {
        // The previous row is parsed here, for the paths that still exist.
        prev = previous.get(&e.host).and_then(prev_file);
        let reusable = prev.as_ref().filter(|p| {
            p.size == md.size() && p.inode == md.ino() && p.mtime() == mtime.as_bytes()
        });
        if let Some(p) = reusable {
            sha256 = Some(Some(p.sha256()));
            stats.reused.fetch_add(1, Ordering::Relaxed);
        } else {
            match hash_file(&full_path(root, &e.host)) {
                Ok((hash, md2)) => {
                    // What was hashed is what the file was while open.
                    md = md2;
                    mtime.clear();
                    push_mtime(&mut mtime, &md);
                    hashed = hash;
                    sha256 = Some(Some(&hashed));
                    stats.hashed.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    sha256 = Some(None);
                    error = Some(format!("cannot read: {err}"));
                }
            }
        }
    }
    if let Some(msg) = list_error {
        error = Some(msg.to_owned());
    }
    let ft = md.file_type();
    let sized = ft.is_file() || ft.is_symlink();
    if let Some(err) = &error {
        push_key(out, "error");
        push_json_str(out, err);
    }
    push_key(out, "gid");
    push_u64(out, md.gid().into());
    if ft.is_file() {
        push_key(out, "inode");
        push_u64(out, md.ino());
    }
    if let Some(t) = &link {
        push_key(out, "link");
        push_json_str(out, t);
    }
    push_key(out, "mode");
    let mode = md.mode() & 0o7777;
    out.push('"');
    for shift in [9, 6, 3, 0] {
        out.push(char::from(b'0' + (mode >> shift & 7) as u8));
    }
    out.push('"');
    // Directory sizes and times change with every entry added: noise. The
    // entries themselves show up as added and removed rows.
    if sized {
        // Digits, `-`, `:`, `.`, `T`, `Z`, `+`: nothing to escape.
        push_key(out, "mtime");
        out.push('"');
        out.push_str(&mtime);
        out.push('"');
    }
    push_key(out, "path");
    push_json_str(out, &e.host);
    if let Some(h) = &sha256 {
        push_key(out, "sha256");
        match h {
            // Hex digits.
            Some(h) => {
                out.push('"');
                out.push_str(h);
                out.push('"');
            }
            None => out.push_str("null"),
        }
    }
    if sized {
        push_key(out, "size");
        push_u64(out, md.size());
    }
    push_key(out, "type");
    out.push('"');
    out.push_str(type_name(ft));
    out.push('"');
    push_key(out, "uid");
    push_u64(out, md.uid().into());
    out.push('}');
    true
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

/// Entries per unit of work handed to a thread.
const CHUNK: usize = 512;

/// Rows of `entries` (in their order; vanished entries left out), stat'ed
/// and hashed on a few threads. Keys are the entries' host paths, moved.
pub fn rows_for(
    root: &Path,
    entries: Vec<Entry>,
    previous: &CurrentRows,
    errors: &WalkErrors,
    stats: &HashStats,
) -> Vec<RawRow> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let chunks = entries.len().div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Vec<Option<String>>)>> = Mutex::new(Vec::with_capacity(chunks));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                let mut buf = String::new();
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let chunk = &entries[c * CHUNK..((c + 1) * CHUNK).min(entries.len())];
                    let mut jsons = Vec::with_capacity(chunk.len());
                    for e in chunk {
                        let err = if errors.0.is_empty() {
                            None
                        } else {
                            errors.0.get(&e.host).map(String::as_str)
                        };
                        jsons.push(
                            entry_json(root, e, previous, err, stats, &mut buf)
                                .then(|| buf.as_str().into()),
                        );
                    }
                    local.push((c, jsons));
                }
                done.lock().expect("rows lock").extend(local);
            });
        }
    });
    let mut done = done.into_inner().expect("rows lock");
    done.sort_unstable_by_key(|(c, _)| *c);
    entries
        .into_iter()
        .zip(done.into_iter().flat_map(|(_, j)| j))
        .filter_map(|(e, json)| {
            Some(RawRow {
                key: e.host,
                json: json?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk with read-ahead helpers returns what a plain recursive
    /// depth-first walk in name order returns: same order, depth limit,
    /// excludes (not descended), unlistable directories as errors.
    #[test]
    fn walk_order_depth_excludes_and_errors() {
        let dir = std::env::temp_dir().join(format!("siemwalk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for a in 0..30 {
            for b in 0..3 {
                let d = dir.join(format!("t/d{a:02}/s{b}"));
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..2 {
                    std::fs::write(d.join(format!("f{f}")), "x").unwrap();
                }
            }
        }
        std::fs::create_dir_all(dir.join("t/zz/skip")).unwrap();
        std::fs::write(dir.join("t/zz/skip/f"), "x").unwrap();
        // The walk's order: a directory's entries by name, then its
        // subdirectories', one after the other.
        fn reference(dir: &Path, host: &str, skip: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
            let mut names: Vec<String> = std::fs::read_dir(dir.join(&host[1..]))
                .unwrap()
                .map(|e| format!("{host}/{}", e.unwrap().file_name().to_string_lossy()))
                .filter(|h| !skip(h))
                .collect();
            names.sort();
            out.extend(names.iter().cloned());
            for h in names {
                if dir.join(&h[1..]).is_dir() {
                    reference(dir, &h, skip, out);
                }
            }
        }
        let mut expect = Vec::new();
        let skip = |h: &str| h == "/t/zz/skip" || (h.starts_with("/t/d07/") && h.contains("/f"));
        reference(&dir, "/t", &skip, &mut expect);
        assert_eq!(expect.len(), 30 + 90 + 29 * 6 + 1);
        let walk_all = |max_depth, exclude: &GlobSet| {
            let (mut errors, mut out) = (WalkErrors::default(), Vec::new());
            walk(
                &dir,
                "/t",
                max_depth,
                None,
                exclude,
                &mut errors,
                &mut out,
                &mut |_, _| true,
            );
            let hosts: Vec<String> = out.into_iter().map(|e| e.host).collect();
            (hosts, errors)
        };
        let ex = glob_set(&["/t/zz/skip".into(), "/t/d07/*/f*".into()]).unwrap();
        let (hosts, errors) = walk_all(None, &ex);
        assert_eq!(hosts, expect);
        assert!(errors.0.is_empty());
        let (hosts, _) = walk_all(Some(1), &GlobSet::empty());
        assert_eq!(hosts.len(), 31, "{hosts:?}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // (Root lists a mode-000 directory anyway.)
            use std::os::unix::fs::PermissionsExt;
            let mode = |m| {
                std::fs::set_permissions(dir.join("t/d03"), std::fs::Permissions::from_mode(m))
                    .unwrap()
            };
            mode(0o000);
            let (hosts, errors) = walk_all(None, &ex);
            mode(0o755);
            assert!(errors.0.contains_key("/t/d03"), "{:?}", errors.0);
            assert!(hosts.iter().all(|h| !h.starts_with("/t/d03/")));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mtime_as_chrono_writes_it() {
        let dir = std::env::temp_dir().join(format!("siemfs-mtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..2000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 253_402_300_799) as i64 - if i % 7 == 0 { 100_000_000 } else { 0 };
            let nsec = match i % 4 {
                0 => 0,
                1 => (seed >> 40) as u32 % 1000 * 1_000_000,
                2 => (seed >> 40) as u32 % 1_000_000 * 1000,
                _ => (seed >> 34) as u32 % 1_000_000_000,
            };
            let t = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::new(secs.unsigned_abs(), nsec));
            let t = if secs < 0 {
                std::time::UNIX_EPOCH - std::time::Duration::new(secs.unsigned_abs(), 0)
                    + std::time::Duration::new(0, nsec)
            } else {
                t.unwrap()
            };
            file.set_modified(t).unwrap();
            let md = std::fs::symlink_metadata(&f).unwrap();
            let mut ours = String::new();
            push_mtime(&mut ours, &md);
            let theirs = chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec() as u32)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert_eq!(ours, theirs, "{} {}", md.mtime(), md.mtime_nsec());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn previous_rows_scanned_as_serde_reads_them() {
        let row = serde_json::json!({
            "path": "/a \"b\" \\ c", "type": "file", "mode": "0644", "uid": 0, "gid": 0,
            "size": 42, "mtime": "2025-01-02T03:04:05.123Z", "inode": 77,
            "sha256": "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
            "error": "x"
        });
        let p = prev_file(serde_json::to_string(&row).unwrap().as_bytes()).unwrap();
        assert_eq!(
            (p.size, p.inode, p.mtime(), &p.sha256()[..4]),
            (42, 77, b"2025-01-02T03:04:05.123Z".as_slice(), "9834")
        );
        let pretty = serde_json::to_string_pretty(&row).unwrap();
        assert_eq!(prev_file(pretty.as_bytes()), Some(p));
        for bad in [
            r#"{"type":"dir","size":1,"inode":1,"mtime":"t","sha256":null}"#,
            r#"{"type":"file","size":1,"inode":1,"mtime":"t","sha256":null}"#,
            r#"{"type":"file","size":1,"inode":1,"mtime":"t","sha256":"abc"}"#,
            r#"{"type":"file","size":1,"mtime":"t","sha256":"9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"}"#,
            r#"{"type":"file","size":{"a":1},"inode":1,"mtime":"t","sha256":"9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"}"#,
            r#"{"type":"file","#,
            r#"{"type":"file","size":-1,"inode":1,"mtime":"t","sha256":"9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"}"#,
            "[]",
            "",
        ] {
            assert_eq!(prev_file(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn rows_are_serde_json_text() {
        let dir = std::env::temp_dir().join(format!("siemfs-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d/sub")).unwrap();
        std::fs::write(dir.join("d/a \"q\"\n"), "aaa").unwrap();
        std::fs::write(dir.join("d/sub/b"), "").unwrap();
        std::os::unix::fs::symlink("/nowhere\\x", dir.join("d/l")).unwrap();
        let mut entries = Vec::new();
        walk(
            &dir,
            "/d",
            None,
            None,
            &GlobSet::empty(),
            &mut WalkErrors::default(),
            &mut entries,
            &mut |_, _| true,
        );
        entries.push(Entry {
            host: "/gone".into(),
            md: None,
        });
        let mut errors = WalkErrors::default();
        errors.0.insert("/d/sub".into(), "cannot list: x".into());
        let stats = HashStats::default();
        let rows = rows_for(
            &dir,
            entries.clone(),
            &CurrentRows::default(),
            &errors,
            &stats,
        );
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["/d/a \"q\"\n", "/d/l", "/d/sub", "/d/sub/b"]);
        for r in &rows {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), r.json);
            assert_eq!(v["path"], r.key.as_str());
        }
        assert!(rows[0].json.contains(
            r#""sha256":"9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0""#
        ));
        assert!(
            rows[1].json.contains(r#""link":"/nowhere\\x""#),
            "{}",
            rows[1].json
        );
        assert!(
            rows[2]
                .json
                .starts_with(r#"{"error":"cannot list: x","gid":"#),
            "{}",
            rows[2].json
        );
        // The second run reuses both hashes and writes the same rows.
        let mut prev = CurrentRows::default();
        for (seq, r) in rows.iter().enumerate() {
            let id = siemstress_common::snapshot::current::RowId {
                run_id: 1,
                seq: seq as i64,
            };
            prev.add(&r.key, r.json.as_bytes(), id);
        }
        let stats2 = HashStats::default();
        let again = rows_for(&dir, entries, &prev, &errors, &stats2);
        assert_eq!(again, rows);
        assert_eq!(stats2.reused.load(Ordering::Relaxed), 2);
        assert_eq!(stats2.hashed.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
