//! File metadata rows shared by `files` and `suid`: walking directories
//! under the root, lstat, and SHA-256 of regular files, reused from the
//! previous run when nothing that could change the content changed.
//!
//! Every path is opened through [`super::rootfs`]: a walk's start is
//! resolved within the root, and nothing below it follows a symlink.
//!
//! **Hash reuse.** A regular file keeps the previous run's SHA-256 without
//! being read when its size, mtime, inode, device and ctime are those of
//! the previous run's row (stored as `_dev` and `_ctime`: columns that
//! start with `_` are bookkeeping and not diffed). The ctime catches the
//! timestomping move, new content of the same size with the old mtime put
//! back by `touch -r`: user space cannot set the ctime back. `[gather.files]
//! rehash = "always"` never reuses (AIDE's behaviour); `rehash_every`
//! re-hashes a file whose hash (`_hashed`, epoch seconds) is older.
//!
//! A second run over an unchanged tree does little per file: one `fstatat`
//! relative to the directory being listed, a lookup of the previous run's
//! reuse fields (read from its stored JSON by a scanner of flat objects,
//! without building a `serde_json::Value`), and the row's JSON written
//! directly into one `String` (same text as `serde_json` writes: keys
//! sorted, compact).

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use rustix::fs::OFlags;
use sha2::{Digest, Sha256};
use siemstress_common::snapshot::RawRow;

use super::listing::Prefetch;
use super::rootfs::{self, Base, RootFs, Stat};
use siemstress_common::snapshot::current::CurrentRows;

/// A path as on the host (`/etc/passwd`), read under the root.
#[derive(Debug, Clone)]
pub struct Entry {
    pub host: String,
    /// lstat of the entry when the walk already has it.
    pub md: Option<Stat>,
    /// Index of the [`Base`] it was found below (opened without following
    /// any symlink from there), or `None`: a path named by the config,
    /// resolved within the root.
    pub base: Option<usize>,
}

/// Where entries are opened from: the root and the walks' bases.
pub struct Opener<'a> {
    pub root: &'a RootFs,
    pub bases: &'a [Base],
}

impl Opener<'_> {
    fn open(&self, e: &Entry, flags: OFlags) -> std::io::Result<OwnedFd> {
        match e.base {
            Some(b) => self.bases[b].open(&e.host, flags),
            None => self.root.open(&e.host, false, flags),
        }
    }

    fn lstat(&self, e: &Entry) -> std::io::Result<Stat> {
        match e.base {
            Some(b) => self.bases[b].lstat(&e.host),
            None => self.root.lstat(&e.host),
        }
    }

    fn read_link(&self, e: &Entry) -> std::io::Result<String> {
        match e.base {
            Some(b) => self.bases[b].read_link(&e.host),
            None => self.root.read_link(&e.host),
        }
    }

    /// The uid a file under this entry's base must belong to (besides
    /// root) for its content to be stored: the home's owner.
    fn owner(&self, e: &Entry) -> Option<u32> {
        e.base.and_then(|b| self.bases[b].owner)
    }
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

/// Walks host directory `start` (at or below `bases[base]`; `start`
/// itself not reported) depth-first in name order, without following
/// symlinks. `max_depth` limits levels below `start`; `same_dev` keeps to
/// one file system; excluded paths are neither reported nor descended.
/// `keep` sees every entry (host path, lstat) and says whether it goes
/// into `out`. Directories are listed (and their entries stat'ed) ahead on
/// helper threads, see [`super::listing`].
#[allow(clippy::too_many_arguments)]
pub fn walk(
    bases: &[Base],
    base: usize,
    start: &str,
    max_depth: Option<usize>,
    same_dev: Option<u64>,
    exclude: &GlobSet,
    errors: &mut WalkErrors,
    out: &mut Vec<Entry>,
    keep: &mut dyn FnMut(&str, &Stat) -> bool,
) {
    let helpers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    Prefetch::new(&bases[base], exclude).run(helpers, |prefetch| {
        let mut stack = vec![(start.to_owned(), 0usize)];
        prefetch.want(std::iter::once(start.to_owned()));
        let mut subdirs: Vec<(String, usize)> = Vec::new();
        while let Some((dir, depth)) = stack.pop() {
            let listing = match prefetch.take(&dir) {
                Ok(l) => l,
                Err(e) => {
                    errors
                        .0
                        .insert(dir, format!("cannot list: {}", rootfs::refusal(&e)));
                    continue;
                }
            };
            for (host, md) in listing {
                let deeper = max_depth.is_none_or(|m| depth + 1 < m);
                let descend = md.is_dir() && deeper && same_dev.is_none_or(|d| md.dev == d);
                let kept = keep(&host, &md);
                let entry = |host| Entry {
                    host,
                    md: Some(md),
                    base: Some(base),
                };
                match (kept, descend) {
                    (true, true) => {
                        subdirs.push((host.clone(), depth + 1));
                        out.push(entry(host));
                    }
                    (true, false) => out.push(entry(host)),
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

/// RFC 3339 UTC with as many fraction digits as needed (as chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`), appended to `out`.
fn push_mtime(out: &mut String, md: &Stat) {
    let (secs, nsec) = (md.mtime, md.mtime_nsec.clamp(0, 999_999_999));
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

/// When a stored hash may be reused, and which files also keep their text.
#[derive(Debug, Default)]
pub struct Policy {
    /// Never reuse (`rehash = "always"`).
    pub rehash_always: bool,
    /// Hashes computed before this time (epoch seconds) are redone
    /// (`rehash_every`).
    pub rehash_before: Option<i64>,
    /// Now, epoch seconds (stored as `_hashed` with a new hash).
    pub now: i64,
    /// Files whose text is stored too (`content`), unless `secret` matches.
    pub content: Option<GlobSet>,
    /// Files whose text is never stored.
    pub secret: Option<GlobSet>,
}

/// Largest file whose text is stored (`content`).
pub const CONTENT_MAX: u64 = 64 * 1024;

/// What hash reuse needs of last run's row of a regular file (inline:
/// one allocation per file, its key).
#[derive(Debug, Clone, PartialEq)]
struct PrevFile {
    size: u64,
    inode: u64,
    dev: u64,
    ctime: i64,
    hashed: i64,
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

/// The reuse fields of a row if it is a `file` with a 64-hex `sha256`, its
/// device and ctime: a scan of a flat JSON object, without building its
/// value. Anything unexpected (nesting, escapes in these fields, bad
/// syntax, a row of an older version without `_ctime`) is `None`.
fn prev_file(json: &[u8]) -> Option<PrevFile> {
    let (mut kind, mut size, mut inode, mut mtime, mut sha) = (None, None, None, None, None);
    let (mut dev, mut ctime, mut hashed) = (None, None, None);
    scan_flat_object(json, |key, value| match (key, value) {
        (b"type", Scalar::Str(v)) => kind = Some(v),
        (b"size", Scalar::Num(v)) => size = parse_u64(v),
        (b"inode", Scalar::Num(v)) => inode = parse_u64(v),
        (b"_dev", Scalar::Num(v)) => dev = parse_u64(v),
        (b"_ctime", Scalar::Num(v)) => ctime = parse_i64(v),
        (b"_hashed", Scalar::Num(v)) => hashed = parse_i64(v),
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
        dev: dev?,
        ctime: ctime?,
        hashed: hashed?,
        mtime_len: mtime.len() as u8,
        mtime: [0; MTIME_MAX],
        sha256: sha,
    };
    p.mtime[..mtime.len()].copy_from_slice(mtime);
    Some(p)
}

/// An optional `-` and digits.
fn parse_i64(t: &[u8]) -> Option<i64> {
    match t.split_first()? {
        (b'-', rest) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(t).and_then(|v| i64::try_from(v).ok()),
    }
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

/// Appends a signed decimal.
fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// What rows are made with (shared by the threads).
pub struct RowCtx<'a> {
    pub opener: Opener<'a>,
    pub previous: &'a CurrentRows,
    pub errors: &'a WalkErrors,
    pub policy: &'a Policy,
    pub stats: &'a HashStats,
}

/// Why the text of a `content` file is not stored, or its text.
enum Content {
    Text(String),
    Withheld(String),
}

/// Writes the JSON of one entry into `out` (cleared first); false if it
/// vanished. Members in key order, as `serde_json` writes a map: _ctime,
/// _dev, _hashed, content, content_error, error, gid, inode, link, mode,
/// mtime, path, sha256, size, type, uid.
fn entry_json(cx: &RowCtx<'_>, e: &Entry, out: &mut String) -> bool {
    let list_error = if cx.errors.0.is_empty() {
        None
    } else {
        cx.errors.0.get(&e.host).map(String::as_str)
    };
    out.clear();
    out.push('{');
    let stat = match &e.md {
        Some(md) => Ok(*md),
        None => cx.opener.lstat(e),
    };
    let mut md = match stat {
        Ok(md) => md,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return false,
        Err(err) => {
            push_key(out, "error");
            siemstress_common::json::push_str(
                out,
                &format!("cannot stat: {}", rootfs::refusal(&err)),
            );
            push_key(out, "path");
            siemstress_common::json::push_str(out, &e.host);
            out.push_str(",\"type\":\"unknown\"}");
            return true;
        }
    };
    let mut error: Option<String> = None;
    let mut link: Option<String> = None;
    // Some(None): a file that could not be read (`"sha256":null`).
    let mut sha256: Option<Option<&str>> = None;
    let hashed: String;
    let prev: Option<PrevFile>;
    let mut hashed_at: Option<i64> = None;
    let mut content: Option<Content> = None;
    let mut mtime = String::new();
    if md.is_file() || md.is_symlink() {
        push_mtime(&mut mtime, &md);
    }
    if md.is_symlink() {
        match cx.opener.read_link(e) {
            Ok(t) => link = Some(t),
            Err(err) => error = Some(format!("cannot read link: {}", rootfs::refusal(&err))),
        }
    } else if md.is_file() {
        let wants_text = cx
            .policy
            .content
            .as_ref()
            .is_some_and(|c| c.is_match(&e.host));
        let secret = cx
            .policy
            .secret
            .as_ref()
            .is_some_and(|s| s.is_match(&e.host));
        let wants_text = wants_text && !secret;
        // The previous row is parsed here, for the paths that still exist.
        prev = if wants_text || cx.policy.rehash_always {
            None
        } else {
            cx.previous.get(&e.host).and_then(prev_file)
        };
        let reusable = prev.as_ref().filter(|p| {
            p.size == md.size
                && p.inode == md.ino
                && p.dev == md.dev
                && p.ctime == md.ctime_ns()
                && p.mtime() == mtime.as_bytes()
                && cx.policy.rehash_before.is_none_or(|t| p.hashed >= t)
        });
        if let Some(p) = reusable {
            sha256 = Some(Some(p.sha256()));
            hashed_at = Some(p.hashed);
            cx.stats.reused.fetch_add(1, Ordering::Relaxed);
        } else {
            match hash_file(&cx.opener, e, wants_text) {
                Ok((hash, md2, text)) => {
                    // What was hashed is what the file was while open.
                    md = md2;
                    mtime.clear();
                    push_mtime(&mut mtime, &md);
                    hashed = hash;
                    sha256 = Some(Some(&hashed));
                    hashed_at = Some(cx.policy.now);
                    cx.stats.hashed.fetch_add(1, Ordering::Relaxed);
                    if wants_text {
                        content = Some(text_of(&cx.opener, e, &md, text));
                    }
                }
                Err(err) => {
                    sha256 = Some(None);
                    error = Some(format!("cannot read: {}", rootfs::refusal(&err)));
                }
            }
        }
    }
    if let Some(msg) = list_error {
        error = Some(msg.to_owned());
    }
    let sized = md.is_file() || md.is_symlink();
    if let Some(at) = hashed_at {
        // Bookkeeping for hash reuse (not diffed).
        push_key(out, "_ctime");
        push_i64(out, md.ctime_ns());
        push_key(out, "_dev");
        push_u64(out, md.dev);
        push_key(out, "_hashed");
        push_i64(out, at);
    }
    match &content {
        Some(Content::Text(t)) => {
            push_key(out, "content");
            siemstress_common::json::push_str(out, t);
        }
        Some(Content::Withheld(why)) => {
            push_key(out, "content_error");
            siemstress_common::json::push_str(out, why);
        }
        None => {}
    }
    if let Some(err) = &error {
        push_key(out, "error");
        siemstress_common::json::push_str(out, err);
    }
    push_key(out, "gid");
    push_u64(out, md.gid.into());
    if md.is_file() {
        push_key(out, "inode");
        push_u64(out, md.ino);
    }
    if let Some(t) = &link {
        push_key(out, "link");
        siemstress_common::json::push_str(out, t);
    }
    push_key(out, "mode");
    let mode = md.perm();
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
    siemstress_common::json::push_str(out, &e.host);
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
        push_u64(out, md.size);
    }
    push_key(out, "type");
    out.push('"');
    out.push_str(md.type_name());
    out.push('"');
    push_key(out, "uid");
    push_u64(out, md.uid.into());
    out.push('}');
    true
}

/// The text of a `content` file, or why it is withheld: over
/// [`CONTENT_MAX`], not UTF-8 text, a private key, a hard link (its text
/// may be another file's), or in a home and owned by neither the user nor
/// root.
fn text_of(opener: &Opener<'_>, e: &Entry, md: &Stat, text: Option<Vec<u8>>) -> Content {
    let Some(bytes) = text else {
        return Content::Withheld(format!("larger than {CONTENT_MAX} bytes"));
    };
    if md.nlink > 1 {
        return Content::Withheld("hard link: text not stored".into());
    }
    if let Some(owner) = opener.owner(e)
        && md.uid != owner
        && md.uid != 0
    {
        return Content::Withheld(format!(
            "owned by uid {}, not the home's user: text not stored",
            md.uid
        ));
    }
    if bytes.contains(&0) {
        return Content::Withheld("binary".into());
    }
    match String::from_utf8(bytes) {
        Ok(t) if t.contains("PRIVATE KEY-----") => {
            Content::Withheld("holds a private key: text not stored".into())
        }
        Ok(t) => Content::Text(t),
        Err(_) => Content::Withheld("binary".into()),
    }
}

/// SHA-256 (hex) of a regular file, its metadata while open and, if
/// `keep_text` and it has at most [`CONTENT_MAX`] bytes, its bytes. Opened
/// without following symlinks, without blocking on a FIFO swapped in, and
/// without touching atime where permitted.
pub fn hash_file(
    opener: &Opener<'_>,
    e: &Entry,
    keep_text: bool,
) -> std::io::Result<(String, Stat, Option<Vec<u8>>)> {
    let flags = rootfs::read_flags();
    let fd = match opener.open(e, flags | OFlags::NOATIME) {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => opener.open(e, flags)?,
        other => other?,
    };
    let md = rootfs::fstat(&fd)?;
    if !md.is_file() {
        return Err(std::io::Error::other(format!(
            "replaced by a non-regular file ({})",
            md.type_name()
        )));
    }
    let mut f = std::fs::File::from(fd);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut text: Option<Vec<u8>> = keep_text.then(Vec::new);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        if let Some(t) = &mut text {
            if (t.len() + n) as u64 > CONTENT_MAX {
                text = None;
            } else {
                t.extend_from_slice(&buf[..n]);
            }
        }
    }
    Ok((format!("{:x}", h.finalize()), md, text))
}

/// Entries per unit of work handed to a thread.
const CHUNK: usize = 512;

/// Rows of `entries` (in their order; vanished entries left out), stat'ed
/// and hashed on a few threads. Keys are the entries' host paths, moved.
pub fn rows_for(cx: &RowCtx<'_>, entries: Vec<Entry>) -> Vec<RawRow> {
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
                        jsons.push(entry_json(cx, e, &mut buf).then(|| buf.as_str().into()));
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
    use std::path::Path;

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
        let rootfs = RootFs::new(&dir).unwrap();
        let bases = [rootfs.base("/t", true).unwrap()];
        let walk_all = |max_depth, exclude: &GlobSet| {
            let (mut errors, mut out) = (WalkErrors::default(), Vec::new());
            walk(
                &bases,
                0,
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
        if !rustix::process::geteuid().is_root() {
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
            let fd = std::fs::File::open(&f).unwrap();
            let md = rootfs::fstat(&fd).unwrap();
            let mut ours = String::new();
            push_mtime(&mut ours, &md);
            let theirs = chrono::DateTime::from_timestamp(md.mtime, md.mtime_nsec)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert_eq!(ours, theirs, "{} {}", md.mtime, md.mtime_nsec);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn previous_rows_scanned_as_serde_reads_them() {
        let row = serde_json::json!({
            "path": "/a \"b\" \\ c", "type": "file", "mode": "0644", "uid": 0, "gid": 0,
            "size": 42, "mtime": "2025-01-02T03:04:05.123Z", "inode": 77,
            "_dev": 2049, "_ctime": 1_700_000_000_123_456_789_i64, "_hashed": 1_700_000_000,
            "sha256": "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
            "error": "x"
        });
        let p = prev_file(serde_json::to_string(&row).unwrap().as_bytes()).unwrap();
        assert_eq!(
            (p.size, p.inode, p.mtime(), &p.sha256()[..4]),
            (42, 77, b"2025-01-02T03:04:05.123Z".as_slice(), "9834")
        );
        assert_eq!(
            (p.dev, p.ctime, p.hashed),
            (2049, 1_700_000_000_123_456_789, 1_700_000_000)
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
        let rootfs = RootFs::new(&dir).unwrap();
        let bases = [rootfs.base("/d", true).unwrap()];
        walk(
            &bases,
            0,
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
            base: None,
        });
        let mut errors = WalkErrors::default();
        errors.0.insert("/d/sub".into(), "cannot list: x".into());
        let stats = HashStats::default();
        let policy = Policy {
            now: 1_700_000_000,
            ..Policy::default()
        };
        let empty = CurrentRows::default();
        let cx = |previous, stats| RowCtx {
            opener: Opener {
                root: &rootfs,
                bases: &bases,
            },
            previous,
            errors: &errors,
            policy: &policy,
            stats,
        };
        let rows = rows_for(&cx(&empty, &stats), entries.clone());
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
        let again = rows_for(&cx(&prev, &stats2), entries);
        assert_eq!(again, rows);
        assert_eq!(stats2.reused.load(Ordering::Relaxed), 2);
        assert_eq!(stats2.hashed.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
