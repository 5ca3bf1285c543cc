//! Reading colon-separated account databases (/etc/passwd, /etc/group,
//! /etc/shadow) under the root, and opening home directories from passwd
//! safely.

use super::Ctx;
use super::rootfs::{self, Base, RootFs};

/// One /etc/passwd entry.
#[derive(Debug, Clone)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// Lines of a colon file split into fields; comments, blank lines and NIS
/// `+`/`-` entries are skipped.
pub fn colon_lines(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with('#')
                && !l.starts_with('+')
                && !l.starts_with('-')
        })
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

/// Reads colon file `host` under the root (capped, regular file, not a
/// symlink); a missing file is an error.
pub fn read_colon_file(ctx: &Ctx<'_>, host: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let text = ctx
        .read_text(host)?
        .ok_or_else(|| anyhow::anyhow!("{}: not found", ctx.under_root(host).display()))?;
    Ok(colon_lines(&text))
}

/// Parses passwd text.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    colon_lines(text)
        .into_iter()
        .map(|f| {
            let get = |i: usize| f.get(i).cloned().unwrap_or_default();
            PasswdEntry {
                name: get(0),
                uid: get(2).parse().ok(),
                gid: get(3).parse().ok(),
                gecos: get(4),
                home: get(5),
                shell: get(6),
            }
        })
        .collect()
}

/// Parses /etc/passwd under the root.
pub fn read_passwd(ctx: &Ctx<'_>) -> anyhow::Result<Vec<PasswdEntry>> {
    let text = ctx
        .read_text("/etc/passwd")?
        .ok_or_else(|| anyhow::anyhow!("{}: not found", ctx.under_root("/etc/passwd").display()))?;
    Ok(parse_passwd(&text))
}

/// Opens the home directory of `u` as a [`Base`] (nothing below it follows
/// a symlink; its owner is `u`'s uid). `Ok(None)`: no usable home (empty,
/// or it does not exist). `Err`: refused, with the reason: not absolute, a
/// `..` in it (it could leave the root), or the home itself a symlink that
/// root does not own.
pub fn open_home(fs: &RootFs, u: &PasswdEntry) -> Result<Option<Base>, String> {
    let home = u.home.as_str();
    if home.is_empty() {
        return Ok(None);
    }
    if !home.starts_with('/') {
        return Err(format!(
            "home of {} ({home:?}) is not absolute: refused",
            u.name
        ));
    }
    if home.split('/').any(|c| c == "..") {
        return Err(format!(
            "home of {} ({home:?}) has '..' and could lead outside the root: refused",
            u.name
        ));
    }
    // A home that is a symlink is followed (within the root) only if root
    // owns the link: users cannot make root-owned links, and daemons'
    // homes such as `/bin -> usr/bin` are.
    let root_link = || {
        fs.lstat(home)
            .is_ok_and(|st| st.is_symlink() && st.uid == 0)
    };
    let opened = match fs.base(home, false) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && root_link() => fs.base(home, true),
        other => other,
    };
    match opened {
        Ok(mut b) => {
            b.owner = u.uid;
            Ok(Some(b))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "home of {} ({home:?}): {}",
            u.name,
            rootfs::refusal(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips() {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "# c\nroot:x:0:0:root:/root:/bin/bash\n\n+nis\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        let p = parse_passwd(&std::fs::read_to_string(dir.join("etc/passwd")).unwrap());
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].name, "bob");
        assert_eq!(p[1].uid, Some(1001));
        assert_eq!(p[1].home, "/home/bob");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "siemparse-passwd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
