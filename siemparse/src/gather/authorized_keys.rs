//! `authorized_keys`: every key in `~/.ssh/authorized_keys` and
//! `~/.ssh/authorized_keys2` of every user in /etc/passwd: key type,
//! fingerprint (`SHA256:` + unpadded base64, as `ssh-keygen -lf`), comment
//! and options. Keyed `user:fingerprint`. An unreadable file is a row with
//! `error`, keyed `user:path`; a line that is not a key is a row with its
//! line number only (its text is not stored: it could be anything).
//!
//! The files are read below the home without following any symlink (a
//! user's `~/.ssh/authorized_keys -> /etc/shadow` is refused, see
//! [`super::rootfs`]), only if they are regular files, owned by the user or
//! root and not a hard link to a file of someone else's (as sshd's
//! StrictModes), and at most 1 MiB. Refusals go into the run's message.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use siemstress_common::snapshot::Row;

use super::Ctx;
use super::passwd::{open_home, read_passwd};
use super::rootfs;

const FILES: [&str; 2] = [".ssh/authorized_keys", ".ssh/authorized_keys2"];

/// Largest authorized_keys file read.
const CAP: u64 = 1 << 20;

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let users = read_passwd(ctx)?;
    let mut rows = Vec::new();
    let mut done: HashSet<(String, String)> = HashSet::new();
    for u in users {
        let home = match open_home(&ctx.fs, &u) {
            Ok(Some(h)) => h,
            Ok(None) => continue,
            Err(msg) => {
                ctx.warn(format!("authorized_keys: {msg}"));
                continue;
            }
        };
        for f in FILES {
            let host = format!("{}/{f}", home.host.trim_end_matches('/'));
            if !done.insert((u.name.clone(), host.clone())) {
                continue;
            }
            let (bytes, st) = match home.read(&host, CAP) {
                Ok(b) => b,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    rows.push(Row::new(
                        format!("{}:{host}", u.name),
                        json!({"user": u.name, "file": host, "error": format!("cannot read: {e}")}),
                    ));
                    continue;
                }
                Err(e) => {
                    ctx.warn(format!(
                        "authorized_keys: {host} of {}: {}",
                        u.name,
                        rootfs::refusal(&e)
                    ));
                    continue;
                }
            };
            if let Some(uid) = u.uid
                && st.uid != uid
                && (st.uid != 0 || st.nlink > 1)
            {
                ctx.warn(format!(
                    "authorized_keys: {host} of {} is owned by uid {}{}: refused",
                    u.name,
                    st.uid,
                    if st.nlink > 1 { " and hard-linked" } else { "" }
                ));
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut v = match parse_line(line) {
                    Some(k) => json!({
                        "type": k.key_type,
                        "fingerprint": k.fingerprint,
                        "comment": k.comment,
                        "options": k.options,
                    }),
                    None => json!({"error": "not a valid key line", "line_number": n + 1}),
                };
                v["user"] = json!(u.name);
                v["file"] = json!(host);
                let id = match &v["fingerprint"] {
                    Value::String(fp) => fp.clone(),
                    _ => format!("invalid:{}", &hex_sha256(line.as_bytes())[..16]),
                };
                rows.push(Row::new(format!("{}:{id}", u.name), v));
            }
        }
    }
    Ok(rows)
}

/// One parsed key line.
#[derive(Debug, PartialEq)]
pub struct KeyLine {
    pub options: Option<String>,
    pub key_type: String,
    pub fingerprint: String,
    pub comment: Option<String>,
}

fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-")
        || t.starts_with("ecdsa-sha2-")
        || t.starts_with("sk-ssh-")
        || t.starts_with("sk-ecdsa-")
}

/// Splits `[options] type base64 [comment]`; options may hold quoted
/// strings with spaces (`command="a b",from="10.0.0.1"`).
pub fn parse_line(line: &str) -> Option<KeyLine> {
    let (options, rest) = match line.split_whitespace().next() {
        Some(t) if is_key_type(t) => (None, line),
        _ => {
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = line.len();
            for (i, c) in line.char_indices() {
                if escaped {
                    escaped = false;
                    continue;
                }
                match c {
                    '\\' => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    c if c.is_whitespace() && !in_quotes => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            (Some(line[..end].to_owned()), line[end..].trim_start())
        }
    };
    let mut parts = rest.splitn(3, char::is_whitespace);
    let key_type = parts.next()?.to_owned();
    if !is_key_type(&key_type) {
        return None;
    }
    let blob = STANDARD.decode(parts.next()?.trim()).ok()?;
    let comment = parts
        .next()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let fingerprint = format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)));
    Some(KeyLine {
        options,
        key_type,
        fingerprint,
        comment,
    })
}

fn hex_sha256(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_fingerprint() {
        // Blob of a real ed25519 public key; fingerprint as ssh-keygen -lf prints it.
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let k = parse_line(&format!(
            r#"command="echo a b",from="10.0.0.1" ssh-ed25519 {blob} alice@laptop"#
        ))
        .unwrap();
        assert_eq!(
            k.options.as_deref(),
            Some(r#"command="echo a b",from="10.0.0.1""#)
        );
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("alice@laptop"));
        let digest = Sha256::digest(STANDARD.decode(blob).unwrap());
        assert_eq!(
            k.fingerprint,
            format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
        );
        assert!(!k.fingerprint.ends_with('='));
        let plain = parse_line(&format!("ssh-ed25519 {blob}")).unwrap();
        assert_eq!((plain.options, plain.comment), (None, None));
        assert!(parse_line("garbage here").is_none());
        assert!(parse_line("ssh-rsa !!!notbase64").is_none());
    }
}
