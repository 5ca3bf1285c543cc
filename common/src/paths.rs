//! Config paths that may be globs (`/etc/siemstress/rules.d/*.toml`):
//! relative to the config file's directory, `*`, `?`, `[...]`, `{a,b}`, `**`.

use std::path::{Path, PathBuf};

/// True when `s` has glob characters.
pub fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The files `pattern` names (relative to `base`), sorted; a plain path that
/// does not exist is an error, a glob that matches nothing is not.
pub fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let mut found = expand_glob(&full).map_err(|m| format!("bad glob {pattern:?}: {m}"))?;
    found.retain(|p| !p.is_dir());
    found.sort();
    if found.is_empty() && !has_glob_chars(pattern) {
        if full.is_dir() {
            return Err(format!(
                "{} is a directory: name its files, as in \"{}/*.toml\"",
                full.display(),
                pattern.trim_end_matches('/')
            ));
        }
        return Err(format!("{} does not exist", full.display()));
    }
    // A glob may match nothing (an empty rules.d), but not in a directory
    // that is not there: that is a typo that would load nothing, silently.
    if found.is_empty() {
        let root = glob_root(&full);
        if !root.is_dir() {
            return Err(format!(
                "{} does not exist (the directory of {pattern:?})",
                root.display()
            ));
        }
    }
    Ok(found)
}

/// The directories of a glob before its first wildcard.
fn glob_root(pattern: &Path) -> PathBuf {
    let mut root = PathBuf::new();
    for c in pattern.components() {
        if has_glob_chars(&c.as_os_str().to_string_lossy()) {
            break;
        }
        root.push(c);
    }
    root
}

/// Files matching a glob: the directory part before the first wildcard is
/// walked, the rest matched by globset.
pub fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let s = pattern.to_string_lossy();
    if !has_glob_chars(&s) {
        return Ok(if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let matcher = globset::GlobBuilder::new(&s)
        .literal_separator(true)
        .build()
        .map_err(|e| e.to_string())?
        .compile_matcher();
    let root = glob_root(pattern);
    let recursive = s.contains("**");
    // Directory levels below `root` that the pattern can reach.
    let levels = pattern.components().count() - root.components().count();
    let mut out = Vec::new();
    let mut stack = vec![(root, 1)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if matcher.is_match(&p) {
                out.push(p.clone());
            }
            if (recursive || depth < levels) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((p, depth + 1));
            }
        }
    }
    Ok(out)
}
