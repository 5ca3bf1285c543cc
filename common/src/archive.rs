//! Archives of pruned event rows (`siemparse --prune --archive DIR`) and
//! reading them back (`siemparse --restore FILE`).
//!
//! **Layout.** `DIR/TABLE/YYYY-MM-DD.RUN.ndjson.gz`: one file per event
//! table, UTC day of the rows' `ts` and prune run (`RUN` is the run's start,
//! `20261206T201536Z-PID`). Each batch of a prune is appended to its day's
//! file as a gzip member of its own (`zcat` and every gzip reader read the
//! members as one stream). A line is one row: `{"table": "auth", "id": 17,
//! "ts": ..., "extra": ...}` with every column of the event table under its
//! contract name, times as UTC epoch milliseconds and `extra` as the JSON
//! text stored, so that a restore gives back exactly the values stored.
//!
//! **Durability.** A batch is written and `fsync`ed (the file, and the
//! directories whose entries changed) before the transaction that deletes
//! its rows commits: a crash loses no row; at worst a row is both archived
//! and still in its table (the prune then archives it again with its next
//! batch). A restore counts such rows once (see `siemparse --restore`).
//! While its run goes on a file is named `*.ndjson.gz.part`; the run
//! renames it when it ends. A run that was killed leaves its `.part` files,
//! whose last member may be cut short; the next prune with the same
//! archive directory cuts them back to their last whole member (its rows
//! were not deleted) and renames them. `DIR/.lock` (flock) keeps two prunes
//! out of one archive directory at the same time.
//!
//! Directories are made with mode 0700 and files with 0600: they hold log
//! lines.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::Error;
use crate::db::search::EventRef;
use crate::event::Event;

/// Suffix of an archive file.
pub const SUFFIX: &str = ".ndjson.gz";
/// Suffix of an archive file whose prune run has not finished.
pub const PART: &str = ".part";
/// The lock file in the archive directory.
const LOCK: &str = ".lock";

/// One archived event row: the table it was pruned from and every column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedRow {
    pub table: String,
    pub id: i64,
    pub ts: i64,
    pub received: i64,
    pub host: Option<String>,
    pub process: Option<String>,
    pub pid: Option<i64>,
    pub facility: Option<String>,
    pub severity: Option<String>,
    pub user: Option<String>,
    pub source_host: Option<String>,
    pub source_port: Option<i64>,
    pub dest_host: Option<String>,
    pub dest_port: Option<i64>,
    pub protocol: Option<String>,
    pub message: String,
    pub raw: String,
    pub parsed: i64,
    pub source: String,
    pub extra: Option<String>,
}

/// A row's content: a digest of every column but `table` and `id`.
pub type ContentKey = [u8; 16];

impl ArchivedRow {
    /// The row `r` of table `table`, owned.
    pub fn of(table: &str, r: &EventRef<'_>) -> Self {
        let s = |v: Option<&str>| v.map(str::to_owned);
        ArchivedRow {
            table: table.to_owned(),
            id: r.id,
            ts: r.ts,
            received: r.received,
            host: s(r.host),
            process: s(r.process),
            pid: r.pid,
            facility: s(r.facility),
            severity: s(r.severity),
            user: s(r.user),
            source_host: s(r.source_host),
            source_port: r.source_port,
            dest_host: s(r.dest_host),
            dest_port: r.dest_port,
            protocol: s(r.protocol),
            message: r.message.to_owned(),
            raw: r.raw.to_owned(),
            parsed: r.parsed,
            source: r.source.to_owned(),
            extra: s(r.extra),
        }
    }

    /// Bytes of the row's values, as a prune reports them (the same sum as
    /// the prune's SQL: texts' lengths and 56 for the numbers).
    pub fn bytes(&self) -> u64 {
        let o = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        (self.raw.len()
            + self.message.len()
            + self.source.len()
            + o(&self.extra)
            + o(&self.host)
            + o(&self.process)
            + o(&self.user)
            + o(&self.source_host)
            + o(&self.dest_host)
            + o(&self.protocol)
            + o(&self.facility)
            + o(&self.severity)
            + 56) as u64
    }

    /// The digest of every column but `table` and `id`: equal rows have
    /// equal keys.
    pub fn content_key(&self) -> ContentKey {
        content_key(&EventRef {
            id: 0,
            ts: self.ts,
            received: self.received,
            host: self.host.as_deref(),
            process: self.process.as_deref(),
            pid: self.pid,
            facility: self.facility.as_deref(),
            severity: self.severity.as_deref(),
            user: self.user.as_deref(),
            source_host: self.source_host.as_deref(),
            source_port: self.source_port,
            dest_host: self.dest_host.as_deref(),
            dest_port: self.dest_port,
            protocol: self.protocol.as_deref(),
            message: &self.message,
            raw: &self.raw,
            parsed: self.parsed,
            source: &self.source,
            extra: self.extra.as_deref(),
            section: None,
        })
    }

    /// The row as an event to insert (a new id is given on insert).
    pub fn to_event(&self) -> Result<Event, String> {
        let name = |v: &Option<String>, names: &[&'static str], what: &str| match v {
            None => Ok(None),
            Some(v) => names
                .iter()
                .copied()
                .find(|n| *n == v)
                .map(Some)
                .ok_or_else(|| format!("{what} {v:?} is not a syslog {what} name")),
        };
        for (what, ms) in [("ts", self.ts), ("received", self.received)] {
            if chrono::DateTime::from_timestamp_millis(ms).is_none() {
                return Err(format!("{what} {ms} is not a time (epoch milliseconds)"));
            }
        }
        Ok(Event {
            ts: self.ts,
            received: self.received,
            host: self.host.clone(),
            process: self.process.clone(),
            pid: self.pid,
            facility: name(&self.facility, &crate::parse::FACILITIES, "facility")?,
            severity: name(&self.severity, &crate::parse::SEVERITIES, "severity")?,
            user: self.user.clone(),
            source_host: self.source_host.clone(),
            source_port: self.source_port,
            dest_host: self.dest_host.clone(),
            dest_port: self.dest_port,
            protocol: self.protocol.clone(),
            message: self.message.clone(),
            raw: self.raw.clone(),
            parsed: match self.parsed {
                0 => false,
                1 => true,
                n => return Err(format!("parsed is {n}, not 0 or 1")),
            },
            source: self.source.as_str().into(),
            extra: self.extra.clone(),
        })
    }
}

/// The content digest of a stored row (every column but `id`).
pub fn content_key(r: &EventRef<'_>) -> ContentKey {
    let mut h = sha2::Sha256::new();
    // Each value with its kind and length: no two rows give the same input.
    let int = |h: &mut sha2::Sha256, v: Option<i64>| match v {
        None => h.update([0u8]),
        Some(n) => {
            h.update([1u8]);
            h.update(n.to_le_bytes());
        }
    };
    let text = |h: &mut sha2::Sha256, v: Option<&str>| match v {
        None => h.update([0u8]),
        Some(s) => {
            h.update([2u8]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    };
    int(&mut h, Some(r.ts));
    int(&mut h, Some(r.received));
    text(&mut h, r.host);
    text(&mut h, r.process);
    int(&mut h, r.pid);
    text(&mut h, r.facility);
    text(&mut h, r.severity);
    text(&mut h, r.user);
    text(&mut h, r.source_host);
    int(&mut h, r.source_port);
    text(&mut h, r.dest_host);
    int(&mut h, r.dest_port);
    text(&mut h, r.protocol);
    text(&mut h, Some(r.message));
    text(&mut h, Some(r.raw));
    int(&mut h, Some(r.parsed));
    text(&mut h, Some(r.source));
    text(&mut h, r.extra);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

fn io(what: impl std::fmt::Display, err: std::io::Error) -> Error {
    Error::Io {
        what: what.to_string(),
        err,
    }
}

/// `fsync` of a directory: makes the entries made or renamed in it durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(format!("archive directory {}", dir.display()), e))
}

/// Makes directory `dir` (mode 0700) if missing; `parent` is synced when it was made.
fn make_dir(dir: &Path) -> Result<bool, Error> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(io(format!("archive directory {}", dir.display()), e)),
    }
}

/// A file being written by this run.
struct OpenFile {
    file: File,
    /// Its name while the run goes on (`*.part`).
    part: PathBuf,
    /// Bytes of whole members written.
    len: u64,
}

struct Inner {
    dir: PathBuf,
    run: String,
    /// Per (table, day).
    files: HashMap<(String, String), OpenFile>,
    rows: u64,
    bytes: u64,
    /// Held for the run (flock on `DIR/.lock`).
    _lock: File,
}

/// What an archive run wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    /// Compressed bytes.
    pub bytes: u64,
    pub files: Vec<PathBuf>,
    /// `.part` files of earlier runs repaired when the run started.
    pub repaired: Vec<PathBuf>,
}

/// The archive of one prune run (a handle; clones share it).
#[derive(Clone)]
pub struct Archive(Arc<Mutex<Inner>>, Arc<Vec<PathBuf>>);

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Archive")
    }
}

impl Archive {
    /// Opens archive directory `dir` for a prune run (made with mode 0700 if
    /// missing), takes its lock, and repairs the `.part` files that a killed
    /// run left.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        if make_dir(dir)?
            && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        {
            sync_dir(parent)?;
        }
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io(format!("archive lock {}", lock_path.display()), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io(
                    format!(
                        "archive directory {}: another siemparse --prune is archiving into it \
                         (lock {})",
                        dir.display(),
                        lock_path.display()
                    ),
                    e.into(),
                )
            },
        )?;
        let repaired = repair_dir(dir)?;
        let now = chrono::Utc::now();
        let run = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), std::process::id());
        Ok(Archive(
            Arc::new(Mutex::new(Inner {
                dir: dir.to_owned(),
                run,
                files: HashMap::new(),
                rows: 0,
                bytes: 0,
                _lock: lock,
            })),
            Arc::new(repaired),
        ))
    }

    /// Appends `rows` (of one table) to their days' files, one gzip member
    /// per file, and `fsync`s them: when this returns, the rows are on disk.
    pub fn write(&self, rows: &[ArchivedRow]) -> Result<(), Error> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut days: Vec<((String, String), Vec<&ArchivedRow>)> = Vec::new();
        for r in rows {
            let day = chrono::DateTime::from_timestamp_millis(r.ts)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "invalid-ts".to_owned());
            let key = (r.table.clone(), day);
            match days.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(r),
                None => days.push((key, vec![r])),
            }
        }
        for (key, rows) in days {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            for r in &rows {
                serde_json::to_writer(&mut enc, r)
                    .map_err(|e| io("archive: encoding a row", e.into()))?;
                enc.write_all(b"\n")
                    .map_err(|e| io("archive: compressing", e))?;
            }
            let member = enc.finish().map_err(|e| io("archive: compressing", e))?;
            let inner = &mut *inner;
            let f = match inner.files.get_mut(&key) {
                Some(f) => f,
                None => {
                    let f = create_file(&inner.dir, &key.0, &key.1, &inner.run)?;
                    inner.files.entry(key.clone()).or_insert(f)
                }
            };
            let written = f.file.write_all(&member).and_then(|()| f.file.sync_data());
            if let Err(e) = written {
                // Cut back to the last whole member: the file stays readable.
                let _ = f.file.set_len(f.len);
                return Err(io(format!("archive file {}", f.part.display()), e));
            }
            f.len += member.len() as u64;
            inner.rows += rows.len() as u64;
            inner.bytes += member.len() as u64;
        }
        Ok(())
    }

    /// Ends the run: its files get their final names (`.part` removed).
    pub fn finish(&self) -> Result<Written, Error> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (_, f) in inner.files.drain() {
            // A file whose first member failed (a full disk) was cut back
            // to nothing: no archive, and a restore of the directory would
            // stop at it.
            if f.len == 0 {
                std::fs::remove_file(&f.part)
                    .map_err(|e| io(format!("archive file {}", f.part.display()), e))?;
                continue;
            }
            let done = strip_part(&f.part);
            std::fs::rename(&f.part, &done)
                .map_err(|e| io(format!("archive file {}", f.part.display()), e))?;
            if let Some(d) = done.parent()
                && !dirs.contains(&d.to_path_buf())
            {
                dirs.push(d.to_path_buf());
            }
            files.push(done);
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        files.sort();
        Ok(Written {
            rows: inner.rows,
            bytes: inner.bytes,
            files,
            repaired: self.1.to_vec(),
        })
    }
}

/// The file of (`table`, `day`) for run `run`, made new (0600) with its
/// directory entries synced.
fn create_file(dir: &Path, table: &str, day: &str, run: &str) -> Result<OpenFile, Error> {
    let tdir = dir.join(table);
    if make_dir(&tdir)? {
        sync_dir(dir)?;
    }
    let part = tdir.join(format!("{day}.{run}{SUFFIX}{PART}"));
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&part)
        .map_err(|e| io(format!("archive file {}", part.display()), e))?;
    sync_dir(&tdir)?;
    Ok(OpenFile { file, part, len: 0 })
}

fn strip_part(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(PART).unwrap_or(&s).to_owned())
}

/// Repairs every `.part` file under `dir/*/`: cut back to its last whole
/// gzip member and renamed (removed if it has none).
fn repair_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut repaired = Vec::new();
    let rd = |d: &Path| {
        std::fs::read_dir(d).map_err(|e| io(format!("archive directory {}", d.display()), e))
    };
    for t in rd(dir)? {
        let t = t.map_err(|e| io(format!("archive directory {}", dir.display()), e))?;
        if !t.path().is_dir() {
            continue;
        }
        let mut changed = false;
        for f in rd(&t.path())? {
            let f = f.map_err(|e| io(format!("archive directory {}", dir.display()), e))?;
            let p = f.path();
            if !p.to_string_lossy().ends_with(PART) {
                continue;
            }
            let whole =
                whole_members(&p).map_err(|e| io(format!("archive file {}", p.display()), e))?;
            if whole == 0 {
                std::fs::remove_file(&p)
                    .map_err(|e| io(format!("archive file {}", p.display()), e))?;
            } else {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| {
                        f.set_len(whole)?;
                        f.sync_all()
                    })
                    .map_err(|e| io(format!("archive file {}", p.display()), e));
                f?;
                let done = strip_part(&p);
                std::fs::rename(&p, &done)
                    .map_err(|e| io(format!("archive file {}", p.display()), e))?;
                repaired.push(done);
            }
            changed = true;
        }
        if changed {
            sync_dir(&t.path())?;
        }
    }
    Ok(repaired)
}

/// A `BufRead` that counts the bytes consumed.
struct Counting<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let have = self.inner.fill_buf()?;
            let n = have.len().min(buf.len());
            buf[..n].copy_from_slice(&have[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n);
    }
}

/// Bytes of the whole gzip members at the start of file `p`.
fn whole_members(p: &Path) -> std::io::Result<u64> {
    let mut r = Counting {
        inner: BufReader::with_capacity(1 << 16, File::open(p)?),
        consumed: 0,
    };
    let mut whole = 0;
    let mut sink = [0u8; 1 << 16];
    loop {
        if r.fill_buf()?.is_empty() {
            return Ok(whole);
        }
        let mut dec = flate2::bufread::GzDecoder::new(&mut r);
        let ok = loop {
            match dec.read(&mut sink) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        drop(dec);
        if !ok {
            return Ok(whole);
        }
        whole = r.consumed;
    }
}

/// The rows of an archive file (gzip, or plain NDJSON), each with its line
/// number; errors name the file and line.
pub struct Rows {
    name: String,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
}

/// The longest line a row can be: `raw` and `message` of an 8 MiB line
/// (ingest's limit) stored lossily and JSON-escaped are at most 48 MiB
/// each. Longer is not an archived row (a gzip bomb of one endless line
/// would otherwise be read whole).
const MAX_LINE: u64 = 128 << 20;

impl Rows {
    /// Opens archive file `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let name = path.display().to_string();
        let mut file = File::open(path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let mut magic = [0u8; 2];
        let n = file
            .read(&mut magic)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if n == 0 {
            anyhow::bail!("{name}: empty file, not an archive");
        }
        let file = File::open(path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let reader: Box<dyn BufRead + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 16, file))
        };
        Ok(Rows {
            name,
            reader,
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The file and the line last read, as errors name them (`FILE:LINE`).
    pub fn at(&self) -> String {
        format!("{}:{}", self.name, self.line)
    }
}

impl Iterator for Rows {
    type Item = anyhow::Result<ArchivedRow>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            let read = self
                .reader
                .by_ref()
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut self.buf);
            self.line += 1;
            let (name, line) = (&self.name, self.line);
            match read {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(anyhow::anyhow!(
                        "{name}:{line}: the archive is truncated or corrupt ({e}); the rows \
                         before line {line} can be read with zcat"
                    )));
                }
            }
            if self.buf.len() as u64 > MAX_LINE {
                return Some(Err(anyhow::anyhow!(
                    "{name}:{line}: not an archived row: the line is longer than {} MiB",
                    MAX_LINE >> 20
                )));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // serde's message quotes the file's text (an unknown key as is).
            return Some(serde_json::from_slice(&self.buf).map_err(|e| {
                anyhow::anyhow!(
                    "{name}:{line}: not an archived row: {}",
                    crate::display::escape(&e.to_string())
                )
            }));
        }
    }
}

/// Reads archive file `path` row by row: `f` gets each row (its errors
/// are given the file and line). Returns the number of rows.
pub fn read_file(
    path: &Path,
    mut f: impl FnMut(ArchivedRow) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut rows = Rows::open(path)?;
    let mut n = 0;
    while let Some(r) = rows.next() {
        f(r?).map_err(|e| anyhow::anyhow!("{}: {e:#}", rows.at()))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, ts: i64) -> ArchivedRow {
        ArchivedRow {
            table: "auth".into(),
            id,
            ts,
            received: ts + 1,
            host: Some("h".into()),
            process: None,
            pid: Some(7),
            facility: Some("auth".into()),
            severity: None,
            user: None,
            source_host: None,
            source_port: None,
            dest_host: None,
            dest_port: None,
            protocol: None,
            message: format!("m{id}"),
            raw: format!("r{id}"),
            parsed: 1,
            source: "stdin".into(),
            extra: Some(r#"{"a":1}"#.into()),
        }
    }

    #[test]
    fn written_and_read_back_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open(dir.path()).unwrap();
        // A second run cannot use the directory meanwhile.
        assert!(Archive::open(dir.path()).is_err());
        let day = 86_400_000;
        a.write(&[row(1, 0), row(2, day)]).unwrap();
        a.write(&[row(3, 10)]).unwrap();
        let w = a.finish().unwrap();
        assert_eq!(w.rows, 3);
        assert_eq!(w.files.len(), 2);
        let mut got = Vec::new();
        read_file(&w.files[0], |r| {
            got.push(r.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [1, 3]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w.files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(dir.path().join("auth"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(a);

        // A killed run: a .part file whose last member is cut short.
        let part = dir.path().join("auth").join(format!("x{SUFFIX}{PART}"));
        let whole = std::fs::read(&w.files[0]).unwrap();
        let mut data = whole.clone();
        data.extend_from_slice(&whole[..12]);
        std::fs::write(&part, &data).unwrap();
        let err = read_file(&part, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:3: ", part.display())), "{err}");
        let a = Archive::open(dir.path()).unwrap();
        let w2 = a.finish().unwrap();
        let done = strip_part(&part);
        assert_eq!(w2.repaired, vec![done.clone()]);
        assert_eq!(std::fs::read(&done).unwrap(), whole);
    }

    #[test]
    fn content_keys() {
        let (a, mut b) = (row(1, 5), row(2, 5));
        b.message = a.message.clone();
        b.raw = a.raw.clone();
        assert_eq!(a.content_key(), b.content_key(), "the id is not content");
        b.extra = None;
        assert_ne!(a.content_key(), b.content_key());
        let mut c = a.clone();
        c.host = Some(String::new());
        let mut d = a.clone();
        d.host = None;
        assert_ne!(c.content_key(), d.content_key(), "NULL is not empty");
        assert_eq!(a.to_event().unwrap().facility, Some("auth"));
        let mut e = a.clone();
        e.facility = Some("nope".into());
        assert!(e.to_event().is_err());
    }
}
