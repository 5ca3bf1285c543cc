//! Reading the system under `--root` without being steered by what is in it.
//!
//! Gatherers run as root and read files that users write (their homes, their
//! crontabs). Every open goes through [`RootFs`]:
//! - a path named by the config or by a gatherer (`/etc/passwd`, a `paths`
//!   entry, a walk's start) is resolved as the host would resolve it, but
//!   confined to the root: symlinks in its directories are followed, an
//!   absolute target or `..` never leaves the root (`openat2`
//!   `RESOLVE_IN_ROOT`, or the same walk done component by component where
//!   the kernel lacks it). Its last component is never followed: a symlink
//!   there is reported, not read;
//! - below a [`Base`] (a walk's start, a home directory from passwd) no
//!   symlink is followed at all (`RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`), so
//!   `~/.ssh -> /etc` or `~/.ssh/authorized_keys -> /etc/shadow` is refused;
//! - files are opened `O_NONBLOCK` (a FIFO does not hang the open) and read
//!   only if `fstat` of the open file says regular file (`/dev/zero`, a
//!   FIFO, a socket are refused) and only up to a size cap.
//!
//! What is refused is an `io::Error` whose text says why ([`refusal`]);
//! gatherers put it into the run's `message`, never into a row's content.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// File metadata as `lstat` gives it (our own type, so that entries listed
/// relative to a directory fd and files stat'ed while open look the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
}

impl Stat {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(s: &rustix::fs::Stat) -> Self {
        Self {
            mode: s.st_mode as u32,
            uid: s.st_uid,
            gid: s.st_gid,
            size: s.st_size.max(0) as u64,
            ino: s.st_ino as u64,
            dev: s.st_dev as u64,
            nlink: s.st_nlink as u64,
            mtime: s.st_mtime as i64,
            mtime_nsec: s.st_mtime_nsec as u32,
            ctime: s.st_ctime as i64,
            ctime_nsec: s.st_ctime_nsec as u32,
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode as _)
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }

    /// Permission bits with setuid, setgid and sticky.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// ctime in nanoseconds since the epoch (user space cannot set it).
    pub fn ctime_ns(&self) -> i64 {
        self.ctime
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.ctime_nsec))
    }

    /// `file`, `dir`, `symlink`, `fifo`, `socket`, `chardev`, `blockdev`.
    pub fn type_name(&self) -> &'static str {
        match self.file_type() {
            FileType::Symlink => "symlink",
            FileType::Directory => "dir",
            FileType::RegularFile => "file",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            FileType::CharacterDevice => "chardev",
            FileType::BlockDevice => "blockdev",
            _ => "unknown",
        }
    }
}

/// `fstat` of an open file.
pub fn fstat(fd: impl AsFd) -> std::io::Result<Stat> {
    Ok(Stat::from_raw(&rustix::fs::fstat(fd)?))
}

/// `lstat` of `name` in directory `dir` (one path component).
pub fn lstat_at(dir: impl AsFd, name: &CStr) -> std::io::Result<Stat> {
    Ok(Stat::from_raw(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// The text of a refusal, or the error's own text.
pub fn refusal(e: &std::io::Error) -> String {
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::LOOP) => "a symbolic link on the way or at the end (not followed)".into(),
        Some(Errno::XDEV) => "leads outside the root (refused)".into(),
        _ => e.to_string(),
    }
}

/// Largest text file a gatherer reads into memory by default.
pub const TEXT_CAP: u64 = 16 << 20;

/// False once `openat2` turned out to be missing (kernel before 5.6, or a
/// seccomp filter that denies it): the walk in user space takes over.
static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

/// How often `openat2` is retried when the kernel answers EAGAIN (a rename
/// raced with a `..` lookup).
const EAGAIN_RETRIES: usize = 8;

/// At most this many symlinks are followed while resolving one path (as the
/// kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// The root everything is read under (`/` by default), held open.
pub struct RootFs {
    fd: OwnedFd,
    path: PathBuf,
}

/// A directory that paths below it are resolved from without following any
/// symlink: a walk's start, a user's home. `host` is its path as on the host.
pub struct Base {
    pub host: String,
    /// For a home: its user's uid (files owned by others are not trusted).
    pub owner: Option<u32>,
    fd: OwnedFd,
}

impl Base {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `host` (at or below this base) relative to it; `None` if it is not
    /// below.
    pub fn relative<'h>(&self, host: &'h str) -> Option<&'h str> {
        let b = self.host.trim_end_matches('/');
        let rest = host.strip_prefix(b)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }

    /// Opens `host` (below this base) without following any symlink.
    pub fn open(&self, host: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
        let rel = self
            .relative(host)
            .ok_or_else(|| std::io::Error::other(format!("{host} is not below {}", self.host)))?;
        open_beneath(self.fd.as_fd(), rel, flags)
    }

    /// `lstat` of `host` (below this base, or the base itself).
    pub fn lstat(&self, host: &str) -> std::io::Result<Stat> {
        let rel = self
            .relative(host)
            .ok_or_else(|| std::io::Error::other(format!("{host} is not below {}", self.host)))?;
        if rel.is_empty() {
            return fstat(&self.fd);
        }
        let (parent, name) = split_last(rel);
        let dir = open_beneath(
            self.fd.as_fd(),
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        )?;
        lstat_at(&dir, &cstring(name)?)
    }

    /// The target of symlink `host` (below this base).
    pub fn read_link(&self, host: &str) -> std::io::Result<String> {
        let rel = self
            .relative(host)
            .ok_or_else(|| std::io::Error::other(format!("{host} is not below {}", self.host)))?;
        let (parent, name) = split_last(rel);
        let dir = open_beneath(
            self.fd.as_fd(),
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        )?;
        let t = rustix::fs::readlinkat(&dir, name, Vec::new())?;
        Ok(String::from_utf8_lossy(t.as_bytes()).into_owned())
    }

    /// Reads regular file `host` (below this base) up to `cap` bytes.
    pub fn read(&self, host: &str, cap: u64) -> std::io::Result<(Vec<u8>, Stat)> {
        read_regular(self.open(host, read_flags())?, cap)
    }
}

/// Flags for reading a file: non-blocking (a FIFO swapped in does not hang
/// the open), not followed, not inherited.
pub fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY
}

impl RootFs {
    /// Opens `root` (a directory; followed if it is a symlink: the admin named it).
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| std::io::Error::other(format!("root {}: {e}", root.display())))?;
        Ok(Self {
            fd,
            path: root.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens host path `host` confined to the root: symlinks in its
    /// directories are resolved within the root; the last component is
    /// followed only if `follow_last`.
    pub fn open(&self, host: &str, follow_last: bool, flags: OFlags) -> std::io::Result<OwnedFd> {
        let flags = if follow_last {
            flags
        } else {
            flags | OFlags::NOFOLLOW
        };
        let rel = host.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        match openat2(self.fd.as_fd(), rel, flags, resolve) {
            Some(r) => r,
            None => walk_in_root(self.fd.as_fd(), host, flags),
        }
    }

    /// A base for the directory at host path `host` (its last component
    /// followed only if `follow_last`).
    pub fn base(&self, host: &str, follow_last: bool) -> std::io::Result<Base> {
        let fd = match self.open(
            host,
            follow_last,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        ) {
            // O_PATH|O_NOFOLLOW opens a symlink itself, which O_DIRECTORY
            // then rejects: say what it is.
            Err(e)
                if !follow_last
                    && e.raw_os_error() == Some(libc::ENOTDIR)
                    && self.lstat(host).is_ok_and(|st| st.is_symlink()) =>
            {
                return Err(Errno::LOOP.into());
            }
            other => other?,
        };
        Ok(Base {
            host: normalize(host),
            owner: None,
            fd,
        })
    }

    /// `lstat` of host path `host` (its directories resolved within the root).
    pub fn lstat(&self, host: &str) -> std::io::Result<Stat> {
        let (parent, name) = split_last(host.trim_start_matches('/'));
        if name.is_empty() {
            return fstat(&self.fd);
        }
        let dir = self.open(
            parent,
            true,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        )?;
        lstat_at(&dir, &cstring(name)?)
    }

    /// The target of the symlink at host path `host`.
    pub fn read_link(&self, host: &str) -> std::io::Result<String> {
        let (parent, name) = split_last(host.trim_start_matches('/'));
        let dir = self.open(
            parent,
            true,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        )?;
        let t = rustix::fs::readlinkat(&dir, name, Vec::new())?;
        Ok(String::from_utf8_lossy(t.as_bytes()).into_owned())
    }

    /// Reads the regular file at host path `host` up to `cap` bytes.
    pub fn read(&self, host: &str, cap: u64) -> std::io::Result<(Vec<u8>, Stat)> {
        read_regular(self.open(host, false, read_flags())?, cap)
    }

    /// Lists directory `host` (not followed if it is a symlink): names and
    /// their lstat, entries that vanished left out, sorted by name.
    pub fn list(&self, host: &str) -> std::io::Result<Vec<(String, Stat)>> {
        list_fd(self.open(host, false, list_flags())?)
    }
}

/// Flags to open a directory for listing.
pub fn list_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK
}

/// The entries of an open directory, sorted by name, each with its lstat
/// (relative to the directory: no path is resolved again).
pub fn list_fd(fd: OwnedFd) -> std::io::Result<Vec<(String, Stat)>> {
    let dir = rustix::fs::Dir::read_from(&fd)?;
    let mut out = Vec::new();
    for e in dir {
        let e = e?;
        let name = e.file_name();
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        match lstat_at(&fd, name) {
            Ok(st) => out.push((String::from_utf8_lossy(b).into_owned(), st)),
            Err(_) => continue,
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads an open file if it is a regular file, up to `cap` bytes (more is
/// an error: the file is refused, not cut).
pub fn read_regular(fd: OwnedFd, cap: u64) -> std::io::Result<(Vec<u8>, Stat)> {
    let st = fstat(&fd)?;
    if !st.is_file() {
        return Err(std::io::Error::other(format!(
            "not a regular file ({}): refused",
            st.type_name()
        )));
    }
    if st.size > cap {
        return Err(std::io::Error::other(format!(
            "{} bytes, over the limit of {cap}: refused",
            st.size
        )));
    }
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::with_capacity(st.size as usize);
    // One byte more than the cap tells a file that grew past it.
    (&mut f).take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(std::io::Error::other(format!(
            "grew over the limit of {cap} bytes while read: refused"
        )));
    }
    Ok((buf, st))
}

fn cstring(name: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| std::io::Error::from(Errno::INVAL))
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split_last(rel: &str) -> (&str, &str) {
    let rel = rel.trim_end_matches('/');
    match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    }
}

/// `/a//b/./c/` → `/a/b/c` (no `..` handling: callers refuse `..`).
fn normalize(host: &str) -> String {
    let parts: Vec<&str> = host
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Opens `rel` below `dir` without following any symlink and without
/// leaving `dir` (`..` is refused).
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = rel.trim_matches('/');
    let flags = flags | OFlags::NOFOLLOW;
    if rel.is_empty() {
        return Ok(rustix::fs::openat(dir, ".", flags, Mode::empty())?);
    }
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match openat2(dir, rel, flags, resolve) {
        Some(r) => r,
        None => walk_beneath(dir, rel, flags),
    }
}

/// `openat2`, retried on EAGAIN; `None` when the kernel does not have it
/// (then, and from then on, the caller walks in user space).
fn openat2(
    dir: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
    resolve: ResolveFlags,
) -> Option<std::io::Result<OwnedFd>> {
    if !HAVE_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    for _ in 0..EAGAIN_RETRIES {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) => continue,
            // EPERM: a seccomp filter that denies it (with O_NOATIME it is
            // the file's owner that refuses).
            Err(Errno::NOSYS | Errno::PERM) if !flags.contains(OFlags::NOATIME) => {
                HAVE_OPENAT2.store(false, Ordering::Relaxed);
                return None;
            }
            r => return Some(r.map_err(Into::into)),
        }
    }
    Some(Err(Errno::AGAIN.into()))
}

/// [`open_beneath`] in user space: each directory opened `O_NOFOLLOW`.
fn walk_beneath(dir: BorrowedFd<'_>, rel: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut cur: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            return Err(Errno::XDEV.into());
        }
        let at = cur.as_ref().map_or(dir, |f| f.as_fd());
        if i + 1 == comps.len() {
            return Ok(rustix::fs::openat(at, *c, flags, Mode::empty())?);
        }
        cur = Some(open_dir_component(at, c)?);
    }
    Ok(rustix::fs::openat(
        cur.as_ref().map_or(dir, |f| f.as_fd()),
        ".",
        flags,
        Mode::empty(),
    )?)
}

/// One directory component opened `O_PATH|O_NOFOLLOW`: ELOOP for a
/// symlink, ENOTDIR for anything else that is not a directory.
fn open_dir_component(at: BorrowedFd<'_>, name: &str) -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        at,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if st.is_symlink() {
        return Err(Errno::LOOP.into());
    }
    if !st.is_dir() {
        return Err(Errno::NOTDIR.into());
    }
    Ok(fd)
}

/// `RESOLVE_IN_ROOT` in user space: components looked up one by one from
/// the root; a symlink's target is spliced in (an absolute one restarts at
/// the root), `..` never goes above the root. The last component gets
/// `flags` (with `O_NOFOLLOW` when it must not be followed).
fn walk_in_root(root: BorrowedFd<'_>, host: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    let mut todo: std::collections::VecDeque<String> = host
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            stack.pop();
            continue;
        }
        let at = stack.last().map_or(root, |f| f.as_fd());
        let last = todo.is_empty();
        if last && flags.contains(OFlags::NOFOLLOW) {
            return Ok(rustix::fs::openat(at, c.as_str(), flags, Mode::empty())?);
        }
        let fd = rustix::fs::openat(
            at,
            c.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        if st.is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::LOOP.into());
            }
            let target = rustix::fs::readlinkat(at, c.as_str(), Vec::new())?;
            let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
            if target.starts_with('/') {
                stack.clear();
            }
            for t in target
                .split('/')
                .filter(|t| !t.is_empty() && *t != ".")
                .rev()
            {
                todo.push_front(t.to_owned());
            }
            continue;
        }
        if last {
            return Ok(rustix::fs::openat(at, c.as_str(), flags, Mode::empty())?);
        }
        if !st.is_dir() {
            return Err(Errno::NOTDIR.into());
        }
        stack.push(fd);
    }
    // The root itself, or a path that ended in `..` or a symlink to a directory.
    Ok(rustix::fs::openat(
        stack.last().map_or(root, |f| f.as_fd()),
        ".",
        flags,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("root/etc")).unwrap();
        std::fs::create_dir_all(p.join("root/usr/bin")).unwrap();
        std::fs::create_dir_all(p.join("root/home/eve")).unwrap();
        std::fs::write(p.join("root/etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(p.join("root/usr/bin/su"), "su").unwrap();
        std::fs::write(p.join("outside"), "SECRET").unwrap();
        std::os::unix::fs::symlink("usr/bin", p.join("root/bin")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("root/home/eve/abs")).unwrap();
        std::os::unix::fs::symlink("../../../outside", p.join("root/home/eve/rel")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("root/home/eve/file")).unwrap();
        d
    }

    fn read_all(fs: &RootFs, host: &str) -> std::io::Result<String> {
        fs.read(host, TEXT_CAP)
            .map(|(b, _)| String::from_utf8(b).unwrap())
    }

    /// Both resolvers (openat2 and the user-space walk) give the same
    /// answers: links in directories resolved within the root, never the
    /// last component, never out of the root.
    #[test]
    fn resolution_stays_in_root() {
        let d = tree();
        let fs = RootFs::new(&d.path().join("root")).unwrap();
        for openat2 in [true, false] {
            HAVE_OPENAT2.store(openat2, Ordering::Relaxed);
            assert!(read_all(&fs, "/etc/passwd").unwrap().starts_with("root:"));
            // A link in a directory: followed within the root.
            assert_eq!(read_all(&fs, "/bin/su").unwrap(), "su");
            // The absolute link `/etc` resolves to ROOT/etc, not the host's.
            assert!(
                read_all(&fs, "/home/eve/abs/passwd")
                    .unwrap()
                    .starts_with("root:")
            );
            // `..` past the root stops at the root: ROOT/outside does not exist.
            let e = read_all(&fs, "/home/eve/rel").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
            let e = read_all(&fs, "/../../outside").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
            // Last component a symlink: refused.
            let e = read_all(&fs, "/home/eve/file").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
            // Below a base: no symlink at all.
            let home = fs.base("/home/eve", false).unwrap();
            for p in ["/home/eve/abs/passwd", "/home/eve/file"] {
                let e = home.read(p, TEXT_CAP).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{p} {e}");
            }
            assert!(
                home.open("/home/eve/../../etc/passwd", read_flags())
                    .is_err()
            );
            assert_eq!(home.read_link("/home/eve/file").unwrap(), "/etc/passwd");
            assert!(home.lstat("/home/eve/abs").unwrap().is_symlink());
            assert!(fs.lstat("/bin").unwrap().is_symlink());
            assert!(fs.lstat("/bin/su").unwrap().is_file());
            let names: Vec<String> = fs
                .list("/home/eve")
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(names, ["abs", "file", "rel"]);
            assert!(
                fs.list("/bin").is_err(),
                "a symlinked directory is not listed"
            );
        }
        HAVE_OPENAT2.store(true, Ordering::Relaxed);
    }

    #[test]
    fn only_regular_files_within_the_cap() {
        let d = tree();
        let fifo = d.path().join("root/etc/fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            c.as_c_str(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fs = RootFs::new(&d.path().join("root")).unwrap();
        let e = read_all(&fs, "/etc/fifo").unwrap_err();
        assert!(e.to_string().contains("not a regular file (fifo)"), "{e}");
        let e = fs.read("/etc/passwd", 4).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let dev = RootFs::new(Path::new("/")).unwrap();
        let e = dev.read("/dev/zero", TEXT_CAP).unwrap_err();
        assert!(e.to_string().contains("chardev"), "{e}");
    }
}
