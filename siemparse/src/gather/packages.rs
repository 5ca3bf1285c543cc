//! `packages`: installed Debian package files verified against dpkg's
//! checksums, as `debsums -a` does, read under the root. Rows are only the
//! failures, keyed by path: `changed` (the MD5 differs), `missing`, or
//! `unreadable` / `not a regular file` (with `error`); `conffile` marks
//! configuration files, which admins are expected to edit (exclude them
//! with `[gather.packages] conffiles = false`).
//!
//! Sources, as dpkg keeps them:
//! - `/var/lib/dpkg/status`: the installed packages (`Status: ... installed`)
//!   and their `Conffiles:` (` /etc/x MD5 [obsolete|remove-on-upgrade]`;
//!   obsolete ones are skipped, as debsums does);
//! - `/var/lib/dpkg/info/PKG.md5sums` (`PKG:ARCH.md5sums` for Multi-Arch:
//!   same): `MD5  path` lines, paths relative to `/`;
//! - `/var/lib/dpkg/diversions` (from, to, package triples): a file
//!   diverted by another package is checked where it was moved to;
//! - `path-exclude=`/`path-include=` in `/etc/dpkg/dpkg.cfg` and
//!   `/etc/dpkg/dpkg.cfg.d/*`: files dpkg never unpacked (docs in minimal
//!   images) are not reported missing (the last matching filter decides,
//!   as in dpkg).
//!
//! Files are hashed on several threads; nothing is stored for a file that
//! matches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::GlobBuilder;
use md5::{Digest, Md5};
use serde_json::json;
use siemstress_common::diag;
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::rootfs::{self, RootFs};

const DPKG: &str = "/var/lib/dpkg";
/// Largest dpkg database file read (status on a big system is a few MB).
const DB_CAP: u64 = 256 << 20;

/// One file to verify.
struct Check {
    path: String,
    /// Where to read it (a diverted file's new place).
    read_at: String,
    package: String,
    md5: String,
    conffile: bool,
}

/// One verification that failed.
struct Failure {
    status: &'static str,
    md5: Option<String>,
    error: Option<String>,
}

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let with_conffiles = ctx.config.packages.conffiles.unwrap_or(true);
    let status = read_db(ctx, &format!("{DPKG}/status"))?.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: not found (is this a Debian system?)",
            ctx.under_root(&format!("{DPKG}/status")).display()
        )
    })?;
    let installed = parse_status(&status);
    let diversions = read_db(ctx, &format!("{DPKG}/diversions"))?
        .map(|t| parse_diversions(&t))
        .unwrap_or_default();
    let filters = path_filters(ctx)?;
    let mut checks: Vec<Check> = Vec::new();
    let mut conffile_paths: HashSet<String> = HashSet::new();
    for (pkg, conffiles) in &installed {
        for (path, md5) in conffiles {
            conffile_paths.insert(path.clone());
            if with_conffiles {
                checks.push(Check {
                    read_at: diverted(&diversions, path, pkg),
                    path: path.clone(),
                    package: pkg.clone(),
                    md5: md5.clone(),
                    conffile: true,
                });
            }
        }
    }
    let info = match ctx.fs.list(&format!("{DPKG}/info")) {
        Ok(l) => l,
        Err(e) => anyhow::bail!("{DPKG}/info: {}", rootfs::refusal(&e)),
    };
    for (name, st) in info {
        let Some(stem) = name.strip_suffix(".md5sums") else {
            continue;
        };
        if !st.is_file() {
            continue;
        }
        let pkg = stem.split(':').next().unwrap_or(stem);
        if !installed.contains_key(pkg) {
            continue;
        }
        let Some(text) = read_db(ctx, &format!("{DPKG}/info/{name}"))? else {
            continue;
        };
        for line in text.lines() {
            let Some((md5, rel)) = line.split_once("  ") else {
                continue;
            };
            let path = format!("/{}", rel.trim_start_matches('/'));
            if md5.len() != 32 || conffile_paths.contains(&path) || !filters.included(&path) {
                continue;
            }
            checks.push(Check {
                read_at: diverted(&diversions, &path, pkg),
                path,
                package: pkg.to_owned(),
                md5: md5.to_ascii_lowercase(),
                conffile: false,
            });
        }
    }
    let failures = verify(&ctx.fs, &checks);
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (i, f) in failures {
        let c = &checks[i];
        rows.insert(
            c.path.clone(),
            json!({
                "path": c.path,
                "package": c.package,
                "status": f.status,
                "conffile": c.conffile,
                "expected_md5": c.md5,
                "md5": f.md5,
                "error": f.error,
                "diverted_to": (c.read_at != c.path).then_some(&c.read_at),
            }),
        );
    }
    if std::env::var_os("SIEMPARSE_GATHER_STATS").is_some() {
        diag!(
            "siemparse: packages: {} packages, {} files verified, {} failures",
            installed.len(),
            checks.len(),
            rows.len()
        );
    }
    Ok(rows.into_iter().map(|(k, v)| Row::new(k, v)).collect())
}

/// A dpkg database file's text, `None` if missing.
fn read_db(ctx: &Ctx<'_>, host: &str) -> anyhow::Result<Option<String>> {
    match ctx.fs.read(host, DB_CAP) {
        Ok((b, _)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!(
            "{}: {}",
            ctx.under_root(host).display(),
            rootfs::refusal(&e)
        ),
    }
}

/// Installed packages → their live conffiles (path, MD5).
fn parse_status(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let (mut name, mut installed, mut conffiles) = (None, false, Vec::new());
        let mut in_conffiles = false;
        for line in para.lines() {
            if let Some(rest) = line.strip_prefix(' ') {
                if in_conffiles {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let obsolete = f.get(2).is_some_and(|flag| *flag == "obsolete");
                    if let (Some(p), Some(m)) = (f.first(), f.get(1))
                        && p.starts_with('/')
                        && m.len() == 32
                        && !obsolete
                    {
                        conffiles.push(((*p).to_owned(), m.to_ascii_lowercase()));
                    }
                }
                continue;
            }
            in_conffiles = false;
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.split_whitespace().last() == Some("installed");
            } else if line.starts_with("Conffiles:") {
                in_conffiles = true;
            }
        }
        if let (Some(n), true) = (name, installed) {
            let e: &mut Vec<(String, String)> = out.entry(n).or_default();
            e.extend(conffiles);
        }
    }
    out
}

/// `from` → (`to`, diverting package).
fn parse_diversions(text: &str) -> HashMap<String, (String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks_exact(3)
        .map(|c| (c[0].to_owned(), (c[1].to_owned(), c[2].to_owned())))
        .collect()
}

/// Where `pkg`'s file `path` is: moved away if another package diverted it.
fn diverted(div: &HashMap<String, (String, String)>, path: &str, pkg: &str) -> String {
    match div.get(path) {
        Some((to, by)) if by != pkg => to.clone(),
        _ => path.to_owned(),
    }
}

/// dpkg's `path-exclude`/`path-include` filters, in order.
struct Filters(Vec<(bool, globset::GlobMatcher)>);

impl Filters {
    fn included(&self, path: &str) -> bool {
        self.0
            .iter()
            .rev()
            .find(|(_, g)| g.is_match(path))
            .is_none_or(|(include, _)| *include)
    }
}

fn path_filters(ctx: &Ctx<'_>) -> anyhow::Result<Filters> {
    let mut files = vec!["/etc/dpkg/dpkg.cfg".to_owned()];
    if let Ok(list) = ctx.fs.list("/etc/dpkg/dpkg.cfg.d") {
        files.extend(
            list.into_iter()
                .filter(|(_, st)| st.is_file())
                .map(|(n, _)| format!("/etc/dpkg/dpkg.cfg.d/{n}")),
        );
    }
    let mut out = Vec::new();
    for f in files {
        let Some(text) = ctx.read_text(&f)? else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let (include, pat) = if let Some(p) = line.strip_prefix("path-exclude") {
                (false, p)
            } else if let Some(p) = line.strip_prefix("path-include") {
                (true, p)
            } else {
                continue;
            };
            let pat = pat.trim_start_matches([' ', '=']).trim();
            // fnmatch without FNM_PATHNAME: `*` matches `/` too.
            if let Ok(g) = GlobBuilder::new(pat).literal_separator(false).build() {
                out.push((include, g.compile_matcher()));
            }
        }
    }
    Ok(Filters(out))
}

/// The failed checks (index into `checks`), verified on several threads.
fn verify(fs: &RootFs, checks: &[Check]) -> Vec<(usize, Failure)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let next = AtomicUsize::new(0);
    let failed: Mutex<Vec<(usize, Failure)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = checks.get(i) else { break };
                    if let Some(f) = check(fs, c, &mut buf) {
                        local.push((i, f));
                    }
                }
                failed.lock().expect("failures lock").extend(local);
            });
        }
    });
    let mut out = failed.into_inner().expect("failures lock");
    out.sort_unstable_by_key(|(i, _)| *i);
    out
}

fn check(fs: &RootFs, c: &Check, buf: &mut [u8]) -> Option<Failure> {
    let fail = |status, error: Option<String>| {
        Some(Failure {
            status,
            md5: None,
            error,
        })
    };
    let flags = rootfs::read_flags();
    let fd = match fs.open(&c.read_at, false, flags | rustix::fs::OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fs.open(&c.read_at, false, flags),
        other => other,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return fail("missing", None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return fail("not a regular file", Some("a symbolic link".into()));
        }
        Err(e) => return fail("unreadable", Some(rootfs::refusal(&e))),
    };
    match rootfs::fstat(&fd) {
        Ok(st) if st.is_file() => {}
        Ok(st) => return fail("not a regular file", Some(st.type_name().into())),
        Err(e) => return fail("unreadable", Some(e.to_string())),
    }
    let mut f = std::fs::File::from(fd);
    let mut h = Md5::new();
    loop {
        match f.read(buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return fail("unreadable", Some(e.to_string())),
        }
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (got != c.md5).then_some(Failure {
        status: "changed",
        md5: Some(got),
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_diversions_and_filters() {
        let status = "Package: a\nStatus: install ok installed\nConffiles:\n /etc/a.conf 0123456789abcdef0123456789abcdef\n /etc/old.conf 0123456789abcdef0123456789abcdef obsolete\nDescription: x\n more\n\nPackage: b\nStatus: deinstall ok config-files\nConffiles:\n /etc/b.conf 0123456789abcdef0123456789abcdef\n";
        let p = parse_status(status);
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            p["a"],
            [(
                "/etc/a.conf".to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned()
            )]
        );
        let d = parse_diversions("/bin/x\n/bin/x.real\nother\n/bin/y\n/bin/y.distrib\n:\n");
        assert_eq!(diverted(&d, "/bin/x", "pkg"), "/bin/x.real");
        assert_eq!(diverted(&d, "/bin/x", "other"), "/bin/x");
        let g = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .unwrap()
                .compile_matcher()
        };
        let f = Filters(vec![
            (false, g("/usr/share/doc/*")),
            (true, g("/usr/share/doc/*/copyright")),
        ]);
        assert!(!f.included("/usr/share/doc/a/README"));
        assert!(f.included("/usr/share/doc/a/copyright"));
        assert!(f.included("/usr/bin/a"));
    }
}
