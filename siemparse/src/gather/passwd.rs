//! Reading colon-separated account databases (/etc/passwd, /etc/group,
//! /etc/shadow) under the root.

use std::path::Path;

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
/// `+`/`-` entries are skipped. Invalid UTF-8 is read lossily.
pub fn colon_lines(path: &Path) -> std::io::Result<Vec<Vec<String>>> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with('#')
                && !l.starts_with('+')
                && !l.starts_with('-')
        })
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect())
}

/// Parses /etc/passwd under `root`.
pub fn read_passwd(root: &Path) -> std::io::Result<Vec<PasswdEntry>> {
    let path = super::under_root(root, "/etc/passwd");
    Ok(colon_lines(&path)?
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
        .collect())
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
        let p = read_passwd(&dir).unwrap();
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
