//! `files`: type, mode, owner, size, mtime, SHA-256 and link target of the
//! paths in `[gather.files] paths` (files; directories, recursively; globs,
//! where `*` stays within a component and `**` crosses), minus `exclude`.
//! Unreadable files are rows with `error` (and no hash), not gaps.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::bail;
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::fs::{self, Entry, HashStats, WalkErrors};

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let cfg = &ctx.config.files;
    if cfg.paths.is_empty() {
        bail!(
            "[gather.files] paths is empty: list the files, directories and globs to watch (e.g. paths = [\"/etc/passwd\", \"/etc/ssh/**\"])"
        );
    }
    let exclude = fs::glob_set(&cfg.exclude)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut errors = WalkErrors::default();
    let mut warnings = Vec::new();
    for pattern in &cfg.paths {
        if !pattern.starts_with('/') {
            bail!("[gather.files] paths: {pattern:?} is not absolute");
        }
        let before = entries.len();
        let mut push = |e: &Entry, entries: &mut Vec<Entry>| {
            if seen.insert(e.host.clone()) {
                entries.push(e.clone());
            }
        };
        if fs::is_glob(pattern) {
            let matcher = fs::glob(pattern)?.compile_matcher();
            let (base, depth) = glob_base(pattern);
            let start = Entry {
                full: ctx.under_root(&base),
                host: base,
                md: None,
            };
            fs::walk(&start, depth, None, &exclude, &mut errors, &mut |e, _| {
                if matcher.is_match(&e.host) {
                    push(e, &mut entries);
                }
            });
        } else {
            let host = normalize(pattern);
            let start = Entry {
                full: ctx.under_root(&host),
                host,
                md: None,
            };
            if exclude.is_match(&start.host) {
                continue;
            }
            match std::fs::symlink_metadata(&start.full) {
                Ok(md) => {
                    push(&start, &mut entries);
                    if md.is_dir() {
                        fs::walk(&start, None, None, &exclude, &mut errors, &mut |e, _| {
                            push(e, &mut entries)
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Recorded as a row with the error.
                    errors
                        .0
                        .insert(start.host.clone(), format!("cannot stat: {e}"));
                    push(&start, &mut entries);
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
    let rows = fs::rows_for(&entries, &ctx.previous, &errors, &stats);
    let (hashed, reused) = (
        stats.hashed.load(Ordering::Relaxed),
        stats.reused.load(Ordering::Relaxed),
    );
    if std::env::var_os("SIEMPARSE_GATHER_STATS").is_some() {
        eprintln!(
            "siemparse: files: {} rows, {hashed} hashed, {reused} hashes reused",
            rows.len()
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
