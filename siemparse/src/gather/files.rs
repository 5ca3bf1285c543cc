//! `files`: type, mode, owner, size, mtime, SHA-256 and link target of the
//! paths in `[gather.files] paths` (files; directories, recursively; globs,
//! where `*` stays within a component and `**` crosses), minus `exclude`.
//! Unreadable files are rows with `error` (and no hash), not gaps.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::bail;
use siemstress_common::snapshot::RawRow;

use super::Ctx;
use super::fs::{self, Entry, HashStats, WalkErrors};

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<RawRow>> {
    let cfg = &ctx.config.files;
    if cfg.paths.is_empty() {
        bail!(
            "[gather.files] paths is empty: list the files, directories and globs to watch (e.g. paths = [\"/etc/passwd\", \"/etc/ssh/**\"])"
        );
    }
    let exclude = fs::glob_set(&cfg.exclude)?;
    let started = std::time::Instant::now();
    let mut entries: Vec<Entry> = Vec::new();
    // Paths already listed, when a second pattern may list them again.
    let mut seen: Option<HashSet<String>> = (cfg.paths.len() > 1).then(HashSet::new);
    let mut errors = WalkErrors::default();
    let mut warnings = Vec::new();
    for pattern in &cfg.paths {
        if !pattern.starts_with('/') {
            bail!("[gather.files] paths: {pattern:?} is not absolute");
        }
        let before = entries.len();
        let mut new = |host: &str| seen.as_mut().is_none_or(|s| s.insert(host.to_owned()));
        if fs::is_glob(pattern) {
            let matcher = fs::glob(pattern)?.compile_matcher();
            let (base, depth) = glob_base(pattern);
            fs::walk(
                &ctx.root,
                &base,
                depth,
                None,
                &exclude,
                &mut errors,
                &mut entries,
                &mut |host, _| matcher.is_match(host) && new(host),
            );
        } else {
            let host = normalize(pattern);
            if exclude.is_match(&host) {
                continue;
            }
            match std::fs::symlink_metadata(ctx.under_root(&host)) {
                Ok(md) => {
                    let is_dir = md.is_dir();
                    if new(&host) {
                        entries.push(Entry {
                            host: host.clone(),
                            md: Some(md),
                        });
                    }
                    if is_dir {
                        fs::walk(
                            &ctx.root,
                            &host,
                            None,
                            None,
                            &exclude,
                            &mut errors,
                            &mut entries,
                            &mut |h, _| new(h),
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Recorded as a row with the error.
                    errors.0.insert(host.clone(), format!("cannot stat: {e}"));
                    if new(&host) {
                        entries.push(Entry { host, md: None });
                    }
                }
            }
        }
        if entries.len() == before {
            warnings.push(format!("files: {pattern:?} matched nothing"));
        }
    }
    for w in warnings {
        ctx.warn(w);
    }
    let stats = HashStats::default();
    let walked = started.elapsed();
    let previous = ctx.previous.wait()?;
    let waited = started.elapsed() - walked;
    let rows = fs::rows_for(&ctx.root, entries, previous, &errors, &stats);
    let (hashed, reused) = (
        stats.hashed.load(Ordering::Relaxed),
        stats.reused.load(Ordering::Relaxed),
    );
    if std::env::var_os("SIEMPARSE_GATHER_STATS").is_some() {
        eprintln!(
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
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
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
