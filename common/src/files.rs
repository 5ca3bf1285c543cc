//! Files the tools write and secrets they read. What the tools write holds
//! what the logs hold (people type passwords into the user prompt) and what
//! the gatherers found, so a file they create is `0600` and a directory
//! they create `0700`, whatever the umask; a file that exists keeps its
//! mode (an admin who made it group-readable keeps that, and nothing is
//! ever made more open). A password file that others may read is refused.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::Error;

/// Mode of a file the tools create.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory the tools create.
pub const DIR_MODE: u32 = 0o700;

/// Opens `path` for writing from its start (truncated), created `0600`.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates the missing directories of `dir`, each `0700`.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates `path` as an empty file `0600` unless it exists (SQLite then
/// makes its `-wal` and `-shm` files with the database file's mode).
pub fn create_empty(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Largest config, rule, decoder or mapping file read: far above any real
/// one, and a bound on what a file swapped into a rule directory can cost.
pub const TEXT_MAX: u64 = 16 << 20;

/// Reads a config, rule, decoder or mapping file: only a regular file (a
/// FIFO would hang the open and the read, `/dev/zero` would never end; the
/// open is non-blocking and the type checked on the open file), of at most
/// [`TEXT_MAX`] bytes, in UTF-8. `/dev/null` reads as empty (`-c /dev/null`:
/// no config).
pub fn read_text(path: &Path) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let is_null = |m: &std::fs::Metadata| {
        std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())
            && std::fs::metadata("/dev/null").is_ok_and(|null| null.rdev() == m.rdev())
    };
    if is_null(&meta) {
        return Ok(String::new());
    }
    if !meta.is_file() {
        let kind = match meta.file_type() {
            t if t.is_dir() => "a directory",
            t if std::os::unix::fs::FileTypeExt::is_fifo(&t) => "a FIFO",
            t if std::os::unix::fs::FileTypeExt::is_char_device(&t) => "a device",
            _ => "not a regular file",
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{kind}: only regular files are read"),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("over {} MiB: refused", TEXT_MAX >> 20),
        )
    };
    if meta.len() > TEXT_MAX {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // One byte more than the cap tells a file that grew past it.
    io::Read::read_to_end(&mut io::Read::take(file, TEXT_MAX + 1), &mut buf)?;
    if buf.len() as u64 > TEXT_MAX {
        return Err(too_big());
    }
    String::from_utf8(buf).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Reads a password file (`what` names its key), without its trailing line
/// ends. A file that others may read is refused: the secret in it
/// is not one any more.
pub fn read_secret(path: &Path, what: &str) -> Result<String, Error> {
    let err = |message: String| Error::ConfigValue {
        key: what.to_owned(),
        message,
    };
    let meta =
        std::fs::metadata(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    if meta.mode() & 0o004 != 0 {
        return Err(err(format!(
            "{} is readable by others (mode {:04o}): chmod o-rwx it (0600 or 0640 with a group)",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_and_existing_modes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a/b/out");
        create_dirs(f.parent().unwrap()).unwrap();
        create(&f).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        create(&f).unwrap();
        create_empty(&f).unwrap();
        assert_eq!(mode(&f), 0o640);
    }

    #[test]
    fn a_secret_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\r\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(&p, "database.password_file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readable by others (mode 0644)") && e.contains("pw"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_secret(&p, "x").unwrap(), "s3cret");
    }
}
