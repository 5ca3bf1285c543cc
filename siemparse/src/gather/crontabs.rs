//! `crontabs`: the entries of /etc/crontab, /etc/cron.d/*, the user
//! crontabs in /var/spool/cron/crontabs/* (Debian) and /var/spool/cron/*
//! (Red Hat). One row per job or variable line, keyed `file:entry` (the
//! entry with its blanks collapsed), so moving a line is no change and
//! editing one is a removed and an added row. An unreadable file is a row
//! with `error`, keyed by its path.

use serde_json::{Value, json};
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::rootfs;

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    // (host path, user of a per-user crontab)
    let mut files: Vec<(String, Option<String>)> = vec![("/etc/crontab".into(), None)];
    for (dir, per_user) in [
        ("/etc/cron.d", false),
        ("/var/spool/cron/crontabs", true),
        ("/var/spool/cron", true),
    ] {
        let names: Vec<String> = match ctx.fs.list(dir) {
            Ok(l) => l
                .into_iter()
                .filter(|(_, st)| st.is_file())
                .map(|(n, _)| n)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                ctx.warn(format!(
                    "crontabs: cannot list {dir}: {}",
                    rootfs::refusal(&e)
                ));
                continue;
            }
        };
        for n in names {
            files.push((format!("{dir}/{n}"), per_user.then(|| n.clone())));
        }
    }
    let mut rows = Vec::new();
    for (host, user) in files {
        let bytes = match ctx.fs.read(&host, rootfs::TEXT_CAP) {
            Ok((b, _)) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                rows.push(Row::new(
                    host.clone(),
                    json!({"file": host, "error": format!("cannot read: {e}")}),
                ));
                continue;
            }
            Err(e) => {
                ctx.warn(format!("crontabs: {host}: {}", rootfs::refusal(&e)));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let collapsed = line.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut v = parse_entry(&collapsed, user.is_none());
            v["file"] = json!(host);
            if let Some(u) = &user {
                v["user"] = json!(u);
            }
            rows.push(Row::new(format!("{host}:{collapsed}"), v));
        }
    }
    Ok(rows)
}

/// A crontab line: a variable (`NAME=value`) or a job (schedule, user for
/// system crontabs, command).
fn parse_entry(line: &str, system: bool) -> Value {
    if let Some((name, value)) = line.split_once('=') {
        let name = name.trim();
        if !name.is_empty()
            && !name.contains(char::is_whitespace)
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return json!({"type": "variable", "name": name, "value": value.trim()});
        }
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let sched_len = if line.starts_with('@') { 1 } else { 5 };
    let user_len = usize::from(system);
    if fields.len() <= sched_len + user_len {
        return json!({"type": "invalid", "line": line});
    }
    let mut v = json!({
        "type": "job",
        "schedule": fields[..sched_len].join(" "),
        "command": fields[sched_len + user_len..].join(" "),
    });
    if system {
        v["user"] = json!(fields[sched_len]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let v = parse_entry(
            "17 * * * * root cd / && run-parts --report /etc/cron.hourly",
            true,
        );
        assert_eq!(v["schedule"], "17 * * * *");
        assert_eq!(v["user"], "root");
        assert_eq!(v["command"], "cd / && run-parts --report /etc/cron.hourly");
        let v = parse_entry("@reboot /usr/bin/x --y=1", false);
        assert_eq!(
            (v["schedule"].as_str(), v["command"].as_str()),
            (Some("@reboot"), Some("/usr/bin/x --y=1"))
        );
        let v = parse_entry("PATH=/usr/bin:/bin", true);
        assert_eq!(v["type"], "variable");
        assert_eq!(parse_entry("* * *", false)["type"], "invalid");
    }
}
