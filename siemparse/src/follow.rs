//! `--follow FILE`: tail a file (or a named pipe) from its stored offset,
//! through rename and copytruncate rotation, committing the offset with the
//! rows so that a crash at any moment neither loses nor repeats a line.

use std::fs::{File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use siemstress_common::db::Checkpoint;
use siemstress_common::diag;
use siemstress_common::parse::LineParser;
use siemstress_common::time::now_ms;

use crate::lines::LineSplitter;
use crate::pipeline::{BatchSender, Flow, MAX_BATCH_BYTES, Pending};
use crate::reload::{Current as Settings, ParserSpec};

/// How often a file at EOF is checked for new lines and rotation.
const POLL: Duration = Duration::from_millis(100);

/// What to follow and how.
pub struct FollowJob {
    pub section: String,
    /// The path as given, made absolute with its directory canonicalized:
    /// the key of the stored offset (see [`distinct_paths`]).
    pub path: PathBuf,
    pub stored: Option<Checkpoint>,
    pub from_end: bool,
    /// Read to the current end and return instead of waiting for more.
    pub once: bool,
    pub batch_rows: usize,
    pub stop: Arc<AtomicBool>,
    /// Parser settings, replaced by a reload (SIGHUP).
    pub settings: Settings<ParserSpec>,
}

/// The file being read now.
struct Current {
    file: File,
    dev: u64,
    ino: u64,
    /// Byte position just after the last line handed to the batch.
    offset: u64,
}

struct Follower {
    job: FollowJob,
    parser: LineParser,
    tx: BatchSender,
    splitter: LineSplitter,
    batch: Pending,
    buf: Vec<u8>,
    /// (dev, inode, offset) of the last checkpoint sent: an idle file sends
    /// nothing (it sent an empty transaction every poll, 10 a second).
    sent: Option<(u64, u64, u64)>,
    /// The last batch sent was full ([`Flow::More`]): the writer expects another.
    promised: bool,
}

/// The `--follow` paths as the keys of their offsets, each with the path as
/// given made absolute: the directory canonicalized (`.`, `..` and symlinked
/// directories resolved), the file name kept (a symlink to the current log,
/// switched at rotation, is followed by name). The same file named twice
/// (two spellings, or a symlink to a file also named) is an error: every
/// line would be stored twice.
pub fn distinct_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(paths.len());
    let mut files: Vec<((u64, u64), &Path)> = Vec::new();
    for given in paths {
        let absolute =
            std::path::absolute(given).with_context(|| format!("--follow {}", given.display()))?;
        let key = match (absolute.parent(), absolute.file_name()) {
            (Some(dir), Some(name)) => match std::fs::canonicalize(dir) {
                Ok(dir) => dir.join(name),
                // A directory that does not exist yet: the file is waited for as named.
                Err(_) => absolute.clone(),
            },
            _ => absolute.clone(),
        };
        let twice = |other: &Path| {
            anyhow::anyhow!(
                "--follow {}: the same file as --follow {} (each line would be stored twice)",
                given.display(),
                other.display()
            )
        };
        if let Some(i) = out.iter().position(|(k, _)| *k == key) {
            return Err(twice(&paths[i]));
        }
        if let Ok(m) = std::fs::metadata(&key) {
            if let Some((_, other)) = files.iter().find(|(id, _)| *id == (m.dev(), m.ino())) {
                return Err(twice(other));
            }
            files.push(((m.dev(), m.ino()), given));
        }
        out.push((key, absolute));
    }
    Ok(out)
}

/// Follows one file until stopped (or, with `once`, until its end).
pub fn follow(job: FollowJob, parser: LineParser, tx: BatchSender) -> anyhow::Result<()> {
    let mut f = Follower {
        parser,
        tx,
        splitter: LineSplitter::default(),
        batch: Pending::new(1, job.batch_rows, MAX_BATCH_BYTES),
        buf: vec![0u8; 256 * 1024],
        sent: None,
        promised: false,
        job,
    };
    let path = f.job.path.clone();
    f.run()
        .with_context(|| format!("following {}", path.display()))?;
    // A clean end (--once at EOF, SIGTERM): the file no longer holds
    // siemtrigger's watermark.
    f.tx.finish()
        .map_err(|_| anyhow::anyhow!("the database writer stopped"))
}

impl Follower {
    fn run(&mut self) -> anyhow::Result<()> {
        let Some(meta) = self.wait_for_path()? else {
            return Ok(());
        };
        if meta.file_type().is_fifo() {
            return self.run_fifo();
        }
        let mut cur = self.start(&meta)?;
        loop {
            if let Some(new) = self.job.settings.changed() {
                // SIGHUP: new settings, and the file opened anew.
                new.apply(&mut self.parser);
                self.reopen(&mut cur)?;
            }
            self.read_available(&mut cur)?;
            self.flush(&cur)?;
            if self.stopping() {
                return Ok(());
            }
            match std::fs::metadata(&self.job.path) {
                Ok(m) if (m.dev(), m.ino()) != (cur.dev, cur.ino) => {
                    // Renamed away: what the old file still held has been read
                    // above; its unfinished last line will never be finished.
                    self.read_available(&mut cur)?;
                    self.take_partial_line(&mut cur);
                    self.flush(&cur)?;
                    cur = self.open_at(0)?;
                    self.flush(&cur)?;
                    continue;
                }
                Ok(m) if m.len() < cur.offset => {
                    // Truncated in place (copytruncate): start over at 0.
                    cur.file.seek(SeekFrom::Start(0))?;
                    cur.offset = 0;
                    self.splitter.clear();
                    self.flush(&cur)?;
                    continue;
                }
                _ => {}
            }
            if self.job.once {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Where to begin: the stored offset, the rest of a file rotated while we
    /// were not running, or the start (end with `--from-end`) of a new file.
    fn start(&mut self, meta: &Metadata) -> anyhow::Result<Current> {
        let stored = self.job.stored.clone();
        match stored {
            Some(cp) if (cp.dev, cp.inode) == (meta.dev() as i64, meta.ino() as i64) => {
                let offset = if meta.len() >= cp.offset as u64 {
                    cp.offset as u64
                } else {
                    0
                };
                self.open_at(offset)
            }
            Some(cp) => {
                match find_by_inode(&self.job.path, cp.dev as u64, cp.inode as u64) {
                    Some(old_path) => {
                        let mut file = File::open(&old_path)
                            .with_context(|| format!("opening rotated {}", old_path.display()))?;
                        file.seek(SeekFrom::Start(cp.offset as u64))?;
                        let mut old = Current {
                            file,
                            dev: cp.dev as u64,
                            ino: cp.inode as u64,
                            offset: cp.offset as u64,
                        };
                        self.read_available(&mut old)?;
                        self.take_partial_line(&mut old);
                        self.flush(&old)?;
                    }
                    None => diag!(
                        "siemparse: warning: {}: the file read last (inode {}) is gone; lines written to it after byte {} were not read",
                        self.job.path.display(),
                        cp.inode,
                        cp.offset
                    ),
                }
                let cur = self.open_at(0)?;
                self.flush(&cur)?;
                Ok(cur)
            }
            None => {
                let cur = self.open_at(if self.job.from_end { meta.len() } else { 0 })?;
                self.flush(&cur)?;
                Ok(cur)
            }
        }
    }

    /// Opens the path again at the current offset if it is still the same
    /// file; a file renamed away is left to the rotation check, which
    /// reads its rest and then opens the new one.
    fn reopen(&mut self, cur: &mut Current) -> anyhow::Result<()> {
        match std::fs::metadata(&self.job.path) {
            Ok(m) if (m.dev(), m.ino()) == (cur.dev, cur.ino) => {
                *cur = self.open_at(cur.offset)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn open_at(&mut self, offset: u64) -> anyhow::Result<Current> {
        let mut file = File::open(&self.job.path)?;
        let m = file.metadata()?;
        file.seek(SeekFrom::Start(offset))?;
        self.splitter.clear();
        Ok(Current {
            file,
            dev: m.dev(),
            ino: m.ino(),
            offset,
        })
    }

    /// Reads to EOF, parsing whole lines; sends full batches on the way.
    fn read_available(&mut self, cur: &mut Current) -> anyhow::Result<()> {
        loop {
            let n = match cur.file.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let received = now_ms();
            let before = self.splitter.pending_len() as u64;
            let (parser, batch) = (&mut self.parser, &mut self.batch);
            self.splitter.feed(&self.buf[..n], |line, _| {
                batch.push(0, parser.parse(line, received))
            });
            // Offset after the last whole line: all bytes read minus the unfinished rest.
            cur.offset = cur.offset + before + n as u64 - self.splitter.pending_len() as u64;
            if self.batch.is_full() {
                self.flush_with(cur, Flow::More)?;
            }
            if self.stopping() {
                return Ok(());
            }
        }
    }

    /// Parses the unfinished last line of a file that will not grow.
    fn take_partial_line(&mut self, cur: &mut Current) {
        let len = self.splitter.pending_len() as u64;
        if let Some(line) = self.splitter.take_pending() {
            self.batch.push(0, self.parser.parse(&line, now_ms()));
            cur.offset += len;
        }
    }

    /// Sends the batch with the file's current offset, all input at hand read.
    fn flush(&mut self, cur: &Current) -> anyhow::Result<()> {
        self.flush_with(cur, Flow::CaughtUp)
    }

    /// Sends the batch with the file's current offset, unless there is
    /// nothing new since the last one. With [`Flow::More`], a full one with
    /// the file not read to its end: the next flush follows without waiting
    /// for the file to grow, and is sent even with nothing new (the writer
    /// waits for it before it indexes).
    fn flush_with(&mut self, cur: &Current, flow: Flow) -> anyhow::Result<()> {
        let at = (cur.dev, cur.ino, cur.offset);
        if self.batch.is_empty() && self.sent == Some(at) && !self.promised {
            return Ok(());
        }
        self.sent = Some(at);
        self.promised = flow == Flow::More;
        let cp = Checkpoint {
            section: self.job.section.clone(),
            path: self.job.path.to_string_lossy().into_owned(),
            dev: cur.dev as i64,
            inode: cur.ino as i64,
            offset: cur.offset as i64,
        };
        self.tx
            .send(self.batch.take_single(self.tx.empty_rows()), Some(cp), flow)
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    }

    fn stopping(&self) -> bool {
        self.job.stop.load(Ordering::Relaxed)
    }

    /// Waits for the path to appear (not with `once`: then `None`).
    fn wait_for_path(&self) -> anyhow::Result<Option<Metadata>> {
        loop {
            match std::fs::metadata(&self.job.path) {
                Ok(m) => return Ok(Some(m)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if self.job.once || self.stopping() {
                        diag!(
                            "siemparse: warning: {} does not exist (yet)",
                            self.job.path.display()
                        );
                        return Ok(None);
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A named pipe: read until the writer goes away, then reopen (no offsets).
    fn run_fifo(&mut self) -> anyhow::Result<()> {
        loop {
            let mut file = File::open(&self.job.path)?;
            loop {
                let n = match file.read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                if let Some(new) = self.job.settings.changed() {
                    // SIGHUP: new settings; the pipe stays open (closing it
                    // would fail its writer).
                    new.apply(&mut self.parser);
                }
                let received = now_ms();
                let (parser, batch) = (&mut self.parser, &mut self.batch);
                self.splitter.feed(&self.buf[..n], |line, _| {
                    batch.push(0, parser.parse(line, received))
                });
                self.send_plain()?;
            }
            if let Some(line) = self.splitter.take_pending() {
                self.batch.push(0, self.parser.parse(&line, now_ms()));
            }
            self.send_plain()?;
            if self.job.once || self.stopping() {
                return Ok(());
            }
        }
    }

    fn send_plain(&mut self) -> anyhow::Result<()> {
        self.tx
            .send(
                self.batch.take_single(self.tx.empty_rows()),
                None,
                Flow::CaughtUp,
            )
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    }
}

/// The file in `path`'s directory with this device and inode (a rotated
/// `auth.log.1`), if any.
fn find_by_inode(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let m = entry.metadata().ok()?;
        (m.is_file() && m.dev() == dev && m.ino() == ino).then(|| entry.path())
    })
}
