//! `files`: type, mode, owner, size, mtime, SHA-256 and link target of the
//! paths in `[gather.files] paths` (files; directories, recursively; globs,
//! where `*` stays within a component and `**` crosses) and of `home`
//! (paths relative to every home directory in passwd), minus `exclude`.
//! Unreadable files are rows with `error` (and no hash), not gaps. Files
//! matching `content` also keep their text (see [`super::fs`]), never those
//! matching `secret`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use anyhow::bail;
use globset::GlobSet;
use siemstress_common::diag;
use siemstress_common::snapshot::RawRow;

use super::fs::{self, Entry, HashStats, Opener, Policy, RowCtx, WalkErrors};
use super::passwd::{open_home, read_passwd};
use super::rootfs::{self, Base};
use super::{Ctx, FilesConfig};

/// What to watch, gathered before the rows are made.
struct Collect<'a> {
    exclude: &'a GlobSet,
    bases: Vec<Base>,
    entries: Vec<Entry>,
    /// Paths already listed, when a second pattern may list them again.
    seen: HashSet<String>,
    errors: WalkErrors,
    warnings: Vec<String>,
}

impl Collect<'_> {
    /// Adds what `pattern` (a host path or glob) names. `home`: the index of
    /// the home base it is relative to, else it is resolved in the root.
    fn pattern(&mut self, ctx: &Ctx<'_>, pattern: &str, home: Option<usize>) {
        let before = self.entries.len();
        if fs::is_glob(pattern) {
            let matcher = match fs::glob(pattern) {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    self.warnings.push(format!("files: {e:#}"));
                    return;
                }
            };
            let (dir, depth) = glob_base(pattern);
            let base = match home {
                Some(h) => h,
                None => match ctx.fs.base(&dir, true) {
                    Ok(b) => {
                        self.bases.push(b);
                        self.bases.len() - 1
                    }
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            self.warnings
                                .push(format!("files: {dir}: {}", rootfs::refusal(&e)));
                        }
                        self.warnings
                            .push(format!("files: {pattern:?} matched nothing"));
                        return;
                    }
                },
            };
            let seen = &mut self.seen;
            fs::walk(
                &self.bases,
                base,
                &dir,
                depth,
                None,
                self.exclude,
                &mut self.errors,
                &mut self.entries,
                &mut |host, _| matcher.is_match(host) && seen.insert(host.to_owned()),
            );
        } else {
            let host = normalize(pattern);
            if self.exclude.is_match(&host) {
                return;
            }
            let stat = match home {
                Some(h) => self.bases[h].lstat(&host),
                None => ctx.fs.lstat(&host),
            };
            match stat {
                Ok(md) => {
                    if self.seen.insert(host.clone()) {
                        self.entries.push(Entry {
                            host: host.clone(),
                            md: Some(md),
                            base: home,
                        });
                    }
                    if md.is_dir() {
                        let base = match home {
                            Some(h) => Some(h),
                            None => match ctx.fs.base(&host, false) {
                                Ok(b) => {
                                    self.bases.push(b);
                                    Some(self.bases.len() - 1)
                                }
                                Err(e) => {
                                    self.errors.0.insert(
                                        host.clone(),
                                        format!("cannot list: {}", rootfs::refusal(&e)),
                                    );
                                    None
                                }
                            },
                        };
                        if let Some(base) = base {
                            let seen = &mut self.seen;
                            fs::walk(
                                &self.bases,
                                base,
                                &host,
                                None,
                                None,
                                self.exclude,
                                &mut self.errors,
                                &mut self.entries,
                                &mut |h, _| seen.insert(h.to_owned()),
                            );
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => {
                    // Recorded as a row with the error.
                    self.errors.0.insert(
                        host.clone(),
                        format!("cannot stat: {}", rootfs::refusal(&e)),
                    );
                    if self.seen.insert(host.clone()) {
                        self.entries.push(Entry {
                            host,
                            md: None,
                            base: home,
                        });
                    }
                }
            }
        }
        if self.entries.len() == before && home.is_none() {
            self.warnings
                .push(format!("files: {pattern:?} matched nothing"));
        }
    }
}

/// The hash and text policy of `[gather.files]`.
fn policy(cfg: &FilesConfig) -> anyhow::Result<Policy> {
    let now = chrono::Utc::now().timestamp();
    let rehash_always = match cfg.rehash.as_deref() {
        None | Some("changed") => false,
        Some("always") => true,
        Some(other) => {
            bail!("[gather.files] rehash = {other:?}: use \"changed\" (the default) or \"always\"")
        }
    };
    let rehash_before = match &cfg.rehash_every {
        None => None,
        Some(d) => {
            let d = siemstress_common::time::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("[gather.files] rehash_every: {e}"))?;
            Some(now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        }
    };
    let secret: Vec<String> = match &cfg.secret {
        Some(s) => s.clone(),
        None => super::DEFAULT_SECRET
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let set = |what: &str, globs: &[String]| -> anyhow::Result<Option<GlobSet>> {
        if globs.is_empty() {
            return Ok(None);
        }
        fs::glob_set(globs)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("[gather.files] {what}: {e:#}"))
    };
    Ok(Policy {
        rehash_always,
        rehash_before,
        now,
        content: set("content", &cfg.content)?,
        secret: set("secret", &secret)?,
    })
}

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<RawRow>> {
    let cfg = &ctx.config.files;
    if cfg.paths.is_empty() && cfg.home.is_empty() {
        bail!(
            "[gather.files] paths is empty: list the files, directories and globs to watch (e.g. paths = [\"/etc/passwd\", \"/etc/ssh/**\"])"
        );
    }
    for pattern in &cfg.paths {
        if !pattern.starts_with('/') {
            bail!("[gather.files] paths: {pattern:?} is not absolute");
        }
    }
    for pattern in &cfg.home {
        if pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
            bail!(
                "[gather.files] home: {pattern:?} must be relative to the home directory, without '..'"
            );
        }
    }
    let policy = policy(cfg)?;
    let exclude = fs::glob_set(&cfg.exclude)?;
    let started = std::time::Instant::now();
    let mut c = Collect {
        exclude: &exclude,
        bases: Vec::new(),
        entries: Vec::new(),
        seen: HashSet::new(),
        errors: WalkErrors::default(),
        warnings: Vec::new(),
    };
    for pattern in &cfg.paths {
        c.pattern(ctx, pattern, None);
    }
    if !cfg.home.is_empty() {
        let mut homes_seen = HashSet::new();
        for u in read_passwd(ctx)? {
            let home = match open_home(&ctx.fs, &u) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(msg) => {
                    c.warnings.push(format!("files: {msg}"));
                    continue;
                }
            };
            if !homes_seen.insert(home.host.clone()) {
                continue;
            }
            let prefix = home.host.trim_end_matches('/').to_owned();
            c.bases.push(home);
            let idx = c.bases.len() - 1;
            for p in &cfg.home {
                c.pattern(ctx, &format!("{prefix}/{p}"), Some(idx));
            }
        }
    }
    let Collect {
        bases,
        entries,
        errors,
        warnings,
        ..
    } = c;
    for w in warnings {
        ctx.warn(w);
    }
    let stats = HashStats::default();
    let walked = started.elapsed();
    let previous = ctx.previous.wait()?;
    let waited = started.elapsed() - walked;
    let cx = RowCtx {
        opener: Opener {
            root: &ctx.fs,
            bases: &bases,
        },
        previous,
        errors: &errors,
        policy: &policy,
        stats: &stats,
    };
    let rows = fs::rows_for(&cx, entries);
    let (hashed, reused) = (
        stats.hashed.load(Ordering::Relaxed),
        stats.reused.load(Ordering::Relaxed),
    );
    if std::env::var_os("SIEMPARSE_GATHER_STATS").is_some() {
        diag!(
            "siemparse: files: {} rows, {hashed} hashed, {reused} hashes reused; \
             walk {:.3} s, then waiting for the previous run {:.3} s, rows {:.3} s",
            rows.len(),
            walked.as_secs_f64(),
            waited.as_secs_f64(),
            (started.elapsed() - walked - waited).as_secs_f64()
        );
    }
    Ok(rows)
}

/// `/a/b/../c/` → `/a/c` (lexically; no symlinks are resolved).
fn normalize(p: &str) -> String {
    // (`..` may not leave the root: popping an empty list is a no-op.)
    let mut parts: Vec<&str> = Vec::new();
    for c in std::path::Path::new(p).components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The directory to walk for a glob (its components before the first with a
/// metacharacter) and how deep (`None` for `**` or `{...}`).
fn glob_base(pattern: &str) -> (String, Option<usize>) {
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let first = comps
        .iter()
        .position(|c| fs::is_glob(c))
        .unwrap_or(comps.len());
    // (A `..` in the base is dropped: the walk never goes up.)
    let base = format!("/{}", comps[..first].join("/"));
    let rest = &comps[first..];
    let unbounded = rest.iter().any(|c| c.contains("**") || c.contains('{'));
    (base, (!unbounded).then_some(rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        assert_eq!(glob_base("/etc/ssh/**"), ("/etc/ssh".into(), None));
        assert_eq!(
            glob_base("/home/*/.ssh/authorized_keys"),
            ("/home".into(), Some(3))
        );
        assert_eq!(glob_base("/etc/*.conf"), ("/etc".into(), Some(1)));
        assert_eq!(normalize("/etc//ssh/../passwd/"), "/etc/passwd");
    }
}
