//! `suid`: setuid and setgid regular files under `[gather.suid] roots`
//! (default `/`), as `find ROOT -xdev -type f -perm /6000`, with the same
//! columns as `files` (hashes reused across runs when unchanged).

use std::collections::HashSet;

use siemstress_common::snapshot::RawRow;

use super::Ctx;
use super::fs::{self, Entry, HashStats, Opener, Policy, RowCtx, WalkErrors};
use super::rootfs::{self, Base};

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<RawRow>> {
    let cfg = &ctx.config.suid;
    let roots = cfg.roots.clone().unwrap_or_else(|| vec!["/".to_owned()]);
    let exclude = fs::glob_set(&cfg.exclude)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut bases: Vec<Base> = Vec::new();
    let mut seen = HashSet::new();
    let mut errors = WalkErrors::default();
    for r in &roots {
        let host = if r == "/" {
            "/".to_owned()
        } else {
            r.trim_end_matches('/').to_owned()
        };
        let base = match ctx.fs.base(&host, true) {
            Ok(b) => b,
            Err(e) => {
                ctx.warn(format!("suid: root {r}: {}", rootfs::refusal(&e)));
                continue;
            }
        };
        let dev = rootfs::fstat(base.fd())?.dev;
        bases.push(base);
        fs::walk(
            &bases,
            bases.len() - 1,
            &host,
            None,
            Some(dev),
            &exclude,
            &mut errors,
            &mut entries,
            &mut |host, md| md.is_file() && md.perm() & 0o6000 != 0 && seen.insert(host.to_owned()),
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
    let policy = Policy {
        now: chrono::Utc::now().timestamp(),
        ..Policy::default()
    };
    let cx = RowCtx {
        opener: Opener {
            root: &ctx.fs,
            bases: &bases,
        },
        previous: ctx.previous.wait()?,
        errors: &WalkErrors::default(),
        policy: &policy,
        stats: &stats,
    };
    Ok(fs::rows_for(&cx, entries))
}
