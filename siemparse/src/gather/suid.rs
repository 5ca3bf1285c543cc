//! `suid`: setuid and setgid regular files under `[gather.suid] roots`
//! (default `/`), as `find ROOT -xdev -type f -perm /6000`, with the same
//! columns as `files` (hashes reused across runs when unchanged).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use siemstress_common::snapshot::RawRow;

use super::Ctx;
use super::fs::{self, Entry, HashStats, WalkErrors};

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<RawRow>> {
    let cfg = &ctx.config.suid;
    let roots = cfg.roots.clone().unwrap_or_else(|| vec!["/".to_owned()]);
    let exclude = fs::glob_set(&cfg.exclude)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = HashSet::new();
    let mut errors = WalkErrors::default();
    for r in &roots {
        let host = if r == "/" {
            "/".to_owned()
        } else {
            r.trim_end_matches('/').to_owned()
        };
        let dev = match std::fs::metadata(ctx.under_root(&host)) {
            Ok(md) => md.dev(),
            Err(e) => {
                ctx.warn(format!("suid: root {r}: {e}"));
                continue;
            }
        };
        fs::walk(
            &ctx.root,
            &host,
            None,
            Some(dev),
            &exclude,
            &mut errors,
            &mut entries,
            &mut |host, md| md.is_file() && md.mode() & 0o6000 != 0 && seen.insert(host.to_owned()),
        );
    }
    let mut unlisted: Vec<_> = errors.0.iter().map(|(p, e)| format!("{p} ({e})")).collect();
    if !unlisted.is_empty() {
        unlisted.sort();
        ctx.warn(format!(
            "suid: {} directories not searched: {}",
            unlisted.len(),
            unlisted.join(", ")
        ));
    }
    let stats = HashStats::default();
    Ok(fs::rows_for(
        &ctx.root,
        entries,
        ctx.previous.wait()?,
        &WalkErrors::default(),
        &stats,
    ))
}
