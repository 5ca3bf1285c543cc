//! `users`: /etc/passwd with the status fields of /etc/shadow. The hash is
//! never read into a row: only `password` (`P` usable, `L` locked, `NP`
//! none, as `passwd -S`) and `hash_type` (the crypt scheme) are derived.
//! `[gather.users] login_only = true` keeps only accounts with a login
//! shell ([`LoginShells`]).

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::passwd::{read_colon_file, read_passwd};

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let passwd = read_passwd(ctx)?;
    let shadow: Option<HashMap<String, Vec<String>>> = match read_colon_file(ctx, "/etc/shadow") {
        Ok(lines) => Some(
            lines
                .into_iter()
                .filter_map(|f| Some((f.first()?.clone(), f)))
                .collect(),
        ),
        Err(e) => {
            ctx.warn(format!("users: {e:#}; shadow fields left out"));
            None
        }
    };
    let login_shells = if ctx.config.users.login_only {
        Some(LoginShells::read(ctx)?)
    } else {
        None
    };
    let mut rows = Vec::with_capacity(passwd.len());
    for p in passwd {
        if login_shells.as_ref().is_some_and(|l| !l.is_login(&p.shell)) {
            continue;
        }
        let mut v = Map::new();
        v.insert("user".into(), json!(p.name));
        v.insert("uid".into(), json!(p.uid));
        v.insert("gid".into(), json!(p.gid));
        v.insert("gecos".into(), json!(p.gecos));
        v.insert("home".into(), json!(p.home));
        v.insert("shell".into(), json!(p.shell));
        if let Some(shadow) = &shadow {
            match shadow.get(&p.name) {
                Some(s) => shadow_fields(s, &mut v),
                None => {
                    v.insert("password".into(), json!("no shadow entry"));
                }
            }
        }
        rows.push(Row::new(p.name, Value::Object(v)));
    }
    Ok(rows)
}

/// What counts as a login shell: listed in /etc/shells (as chsh and
/// pam_shells see it), or without that file anything but nologin, false
/// and an empty field.
pub struct LoginShells(Option<Vec<String>>);

impl LoginShells {
    pub fn read(ctx: &Ctx<'_>) -> anyhow::Result<Self> {
        Ok(Self(ctx.read_text("/etc/shells")?.map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| l.starts_with('/'))
                .map(str::to_owned)
                .collect()
        })))
    }

    pub fn is_login(&self, shell: &str) -> bool {
        match &self.0 {
            Some(list) => list.iter().any(|s| s == shell),
            None => !shell.is_empty() && !shell.ends_with("/nologin") && !shell.ends_with("/false"),
        }
    }
}

/// Status fields of a shadow line; the hash (field 1) only yields
/// `password` and `hash_type`.
fn shadow_fields(f: &[String], v: &mut Map<String, Value>) {
    let hash = f.get(1).map(String::as_str).unwrap_or("");
    let (status, kind) = password_status(hash);
    v.insert("password".into(), json!(status));
    v.insert("hash_type".into(), json!(kind));
    let num = |i: usize| -> Value {
        f.get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(Value::Null, |n| json!(n))
    };
    let date = |i: usize| -> Value {
        f.get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|days| chrono::DateTime::from_timestamp(days * 86400, 0))
            .map_or(Value::Null, |d| json!(d.format("%Y-%m-%d").to_string()))
    };
    v.insert("last_change".into(), date(2));
    v.insert("min_days".into(), num(3));
    v.insert("max_days".into(), num(4));
    v.insert("warn_days".into(), num(5));
    v.insert("inactive_days".into(), num(6));
    v.insert("expires".into(), date(7));
}

/// `passwd -S` status (`P`, `L`, `NP`) and the crypt scheme of a hash.
fn password_status(hash: &str) -> (&'static str, Option<&'static str>) {
    if hash.is_empty() {
        return ("NP", None);
    }
    let locked = hash.starts_with('!') || hash.starts_with('*');
    let h = hash.trim_start_matches('!');
    let kind = if h.starts_with("$y$") {
        Some("yescrypt")
    } else if h.starts_with("$gy$") {
        Some("gost-yescrypt")
    } else if h.starts_with("$7$") {
        Some("scrypt")
    } else if h.starts_with("$6$") {
        Some("sha512crypt")
    } else if h.starts_with("$5$") {
        Some("sha256crypt")
    } else if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") {
        Some("bcrypt")
    } else if h.starts_with("$1$") {
        Some("md5crypt")
    } else if h.len() == 13 && !h.starts_with('*') {
        Some("descrypt")
    } else {
        None
    };
    (if locked { "L" } else { "P" }, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(password_status(""), ("NP", None));
        assert_eq!(password_status("*"), ("L", None));
        assert_eq!(password_status("!$6$abc$def"), ("L", Some("sha512crypt")));
        assert_eq!(password_status("$y$j9T$abc$def"), ("P", Some("yescrypt")));
    }
}
