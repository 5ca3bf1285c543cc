//! Field extraction at ingest: the user, source and destination of common
//! security messages (sshd, PAM, su, sudo, ftpd, kernel firewall), pulled out
//! of the message text by plain string scanning (no regex on the hot path).

use std::net::IpAddr;

use memchr::memmem::Finder;

/// A substring searcher for a literal, built once (building one per call
/// cost more than the search itself on short lines).
macro_rules! finder {
    ($needle:literal) => {{
        static FINDER: std::sync::LazyLock<Finder<'static>> =
            std::sync::LazyLock::new(|| Finder::new($needle));
        &*FINDER
    }};
}

/// Byte position of `f`'s needle in `hay`.
fn find(hay: &str, f: &Finder) -> Option<usize> {
    f.find(hay.as_bytes())
}

/// Fields found in one message. Everything is optional.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    pub user: Option<String>,
    pub source_host: Option<String>,
    pub source_port: Option<i64>,
    pub dest_host: Option<String>,
    pub dest_port: Option<i64>,
    pub protocol: Option<String>,
    /// Further named values for `extra` (target_user, tty, by_user, rdns, command).
    pub extra: Vec<(&'static str, String)>,
}

/// Extracts fields from `message`, using `process` to pick su/sudo rules.
pub fn extract(process: Option<&str>, message: &str) -> Fields {
    let mut f = Fields::default();
    let proc_base = process.map(|p| p.split('(').next().unwrap_or(p));
    match proc_base {
        Some("sudo") => sudo(message, &mut f),
        Some("su") => su(message, &mut f),
        Some("kernel") => firewall(message, &mut f),
        _ => {}
    }
    if find(message, finder!("SRC=")).is_some() && f.source_host.is_none() {
        firewall(message, &mut f);
    }
    source(message, &mut f);
    if f.user.is_none() {
        f.user = user(message);
    }
    pam_by_user(message, &mut f);
    f
}

/// The client address: `[ip]`, `rhost=`, `from HOST`, `closed/reset by HOST`,
/// vsftpd `Client "ip"`; then ` port N` after it.
fn source(msg: &str, f: &mut Fields) {
    if f.source_host.is_some() {
        return;
    }
    // sshd's reverse-mapping warning names the host, then the address in brackets.
    if let Some(ip) = bracket_ip(msg) {
        if let Some(name) = between(msg, finder!("getaddrinfo for "), finder!(" [")) {
            f.extra.push(("rdns", name.to_owned()));
        }
        f.source_host = Some(ip);
        return;
    }
    if let Some(v) = kv(msg, finder!("rhost="))
        && !v.is_empty()
    {
        f.source_host = Some(v.to_owned());
        return;
    }
    if let Some(v) = between(msg, finder!("Client \""), finder!("\""))
        && host_like(v)
    {
        f.source_host = Some(v.to_owned());
        return;
    }
    for marker in [
        finder!(" from "),
        finder!("Connection closed by "),
        finder!("Connection reset by "),
        finder!("Disconnected from "),
    ] {
        let mut rest = msg;
        while let Some(i) = find(rest, marker) {
            rest = &rest[i + marker.needle().len()..];
            let mut tail = rest;
            // "Disconnected from invalid user bob 1.2.3.4 port 22", "closed by authenticating user bob 1.2.3.4 ..."
            for prefix in [
                "invalid user ",
                "authenticating user ",
                "user ",
                "illegal user ",
            ] {
                if let Some(t) = tail.strip_prefix(prefix) {
                    tail = t.split_once(' ').map_or("", |(_, after)| after);
                    break;
                }
            }
            let word = first_word(tail);
            let host = word.trim_end_matches([':', ',', ';', '.']);
            if host_like(host) && !host.is_empty() {
                f.source_host = Some(host.to_owned());
                f.source_port = port_after(&tail[word.len()..]);
                if let Some(on) = find(&tail[word.len()..], finder!(" on ")) {
                    let dest = &tail[word.len() + on + 4..];
                    let d = first_word(dest);
                    if d.parse::<IpAddr>().is_ok() {
                        f.dest_host = Some(d.to_owned());
                        f.dest_port = port_after(&dest[d.len()..]);
                    }
                }
                return;
            }
        }
    }
}

/// The user a message is about.
fn user(msg: &str) -> Option<String> {
    // "invalid user X", "for user X", "authenticating user X"...
    let mut rest = msg;
    while let Some(i) = find(rest, finder!("user ")) {
        let before = rest[..i].trim_end();
        let after = &rest[i + 5..];
        rest = after;
        let prev = before.rsplit(' ').next().unwrap_or("");
        let prev = prev.to_ascii_lowercase();
        if matches!(
            prev.as_str(),
            "invalid" | "illegal" | "for" | "authenticating" | "from"
        ) {
            // sshd prints the name verbatim up to " from ": it may hold spaces.
            let name = match find(after, finder!(" from ")) {
                Some(end) => after[..end].trim(),
                None => first_word(after),
            };
            let name = name.split('(').next().unwrap_or(name);
            if !name.is_empty() && name != "unknown" && !is_ip(name) {
                return Some(name.to_owned());
            }
            return None;
        }
    }
    // PAM " user=X" (not "ruser=")
    if let Some(v) = kv(msg, finder!(" user="))
        && !v.is_empty()
    {
        return Some(v.to_owned());
    }
    // "Failed password for X from", "Accepted publickey for X from", "exceeded for X from"
    let mut rest = msg;
    while let Some(i) = find(rest, finder!(" for ")) {
        rest = &rest[i + 5..];
        let name = first_word(rest);
        if rest[name.len()..].starts_with(" from ") && !name.is_empty() {
            return Some(name.to_owned());
        }
    }
    // vsftpd "[alice] OK LOGIN", proftpd "USER alice:"
    if let Some(n) = between(msg, finder!("["), finder!("] ")) {
        let after = &msg[find(msg, finder!("] ")).unwrap_or(0) + 2..];
        if after.starts_with("OK LOGIN") || after.starts_with("FAIL LOGIN") {
            return Some(n.to_owned());
        }
    }
    if let Some(v) = between(msg, finder!("USER "), finder!(":"))
        && !v.contains(' ')
    {
        return Some(v.to_owned());
    }
    None
}

/// PAM "session opened for user root by alice(uid=1000)": `by_user`.
fn pam_by_user(msg: &str, f: &mut Fields) {
    if let Some(i) = find(msg, finder!("session opened for user "))
        && let Some(j) = find(&msg[i..], finder!(" by "))
    {
        let by = first_word(&msg[i + j + 4..]);
        let by = by.split('(').next().unwrap_or("");
        if !by.is_empty() {
            f.extra.push(("by_user", by.to_owned()));
        }
    }
}

/// sudo: "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id".
fn sudo(msg: &str, f: &mut Fields) {
    let Some((who, rest)) = msg.split_once(" : ") else {
        return;
    };
    let who = who.trim();
    if who.is_empty() || who.contains(' ') {
        return;
    }
    f.user = Some(who.to_owned());
    for part in rest.split(" ; ") {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("TTY=") {
            f.extra.push(("tty", v.to_owned()));
        } else if let Some(v) = part.strip_prefix("USER=") {
            f.extra.push(("target_user", v.to_owned()));
        } else if let Some(v) = part.strip_prefix("COMMAND=") {
            f.extra.push(("command", v.to_owned()));
        }
    }
}

/// su: "(to root) alice on pts/0", "Successful su for root by alice",
/// "FAILED su for root by alice", "+ pts/0 alice:root".
fn su(msg: &str, f: &mut Fields) {
    if let Some(rest) = msg.strip_prefix("(to ") {
        if let Some((target, rest)) = rest.split_once(") ") {
            let (who, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
            f.user = Some(who.trim().to_owned());
            f.extra.push(("target_user", target.to_owned()));
            if !tty.is_empty() {
                f.extra.push(("tty", tty.trim().to_owned()));
            }
        }
    } else if let Some(i) = msg.find("su for ") {
        let rest = &msg[i + 7..];
        if let Some((target, who)) = rest.split_once(" by ") {
            f.user = Some(first_word(who).to_owned());
            f.extra.push(("target_user", target.to_owned()));
        }
    } else if let Some(rest) = msg.strip_prefix("+ ").or_else(|| msg.strip_prefix("- "))
        && let Some((tty, pair)) = rest.split_once(' ')
        && let Some((who, target)) = pair.split_once(':')
    {
        f.user = Some(who.to_owned());
        f.extra.push(("target_user", target.to_owned()));
        f.extra.push(("tty", tty.to_owned()));
    }
}

/// Netfilter log: "IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 ... PROTO=TCP SPT=1 DPT=22".
fn firewall(msg: &str, f: &mut Fields) {
    if let Some(v) = kv(msg, finder!("SRC=")) {
        f.source_host = Some(v.to_owned());
    }
    if let Some(v) = kv(msg, finder!("DST=")) {
        f.dest_host = Some(v.to_owned());
    }
    f.source_port = kv(msg, finder!("SPT=")).and_then(|v| v.parse().ok());
    f.dest_port = kv(msg, finder!("DPT=")).and_then(|v| v.parse().ok());
    if let Some(v) = kv(msg, finder!("PROTO=")) {
        f.protocol = Some(v.to_ascii_lowercase());
    }
}

/// The value after `key` (at the start or after a space) up to whitespace.
fn kv<'a>(msg: &'a str, key: &Finder) -> Option<&'a str> {
    let key_len = key.needle().len();
    let spaced = key.needle().first() == Some(&b' ');
    let mut from = 0;
    while let Some(i) = find(&msg[from..], key) {
        let at = from + i;
        let boundary = spaced || at == 0 || msg.as_bytes()[at - 1] == b' ';
        if boundary {
            return Some(first_word(&msg[at + key_len..]));
        }
        from = at + key_len;
    }
    None
}

/// The first `[ip]` in the message whose content is an IP address.
fn bracket_ip(msg: &str) -> Option<String> {
    let mut rest = msg;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        let end = rest.find(']')?;
        let inner = &rest[..end];
        if is_ip(inner) {
            return Some(inner.to_owned());
        }
    }
    None
}

fn between<'a>(msg: &'a str, start: &Finder, end: &Finder) -> Option<&'a str> {
    let i = find(msg, start)? + start.needle().len();
    let j = find(&msg[i..], end)?;
    Some(&msg[i..i + j])
}

fn port_after(s: &str) -> Option<i64> {
    let rest = s.strip_prefix(" port ")?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

fn first_word(s: &str) -> &str {
    s.split(|c: char| c.is_whitespace()).next().unwrap_or("")
}

fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or a DNS name: letters, digits, `.`, `-`, `_`, at least one dot
/// or colon for names, so that plain words ("from user", "from root") are not hosts.
fn host_like(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    if is_ip(s) {
        return true;
    }
    s.contains('.')
        && s.bytes().any(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !s.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(process: &str, msg: &str) -> Fields {
        extract(Some(process), msg)
    }

    #[test]
    fn sshd_failed_and_accepted() {
        let f = x(
            "sshd",
            "Failed password for invalid user admin from 10.0.0.5 port 4242 ssh2",
        );
        assert_eq!(f.user.as_deref(), Some("admin"));
        assert_eq!(f.source_host.as_deref(), Some("10.0.0.5"));
        assert_eq!(f.source_port, Some(4242));
        let f = x(
            "sshd",
            "Accepted publickey for bob from 2001:db8::7 port 50022 ssh2: ED25519 SHA256:abc",
        );
        assert_eq!(f.user.as_deref(), Some("bob"));
        assert_eq!(f.source_host.as_deref(), Some("2001:db8::7"));
        assert_eq!(f.source_port, Some(50022));
        let f = x(
            "sshd",
            "message repeated 2 times: [ Failed password for root from 5.6.7.8 port 1 ssh2]",
        );
        assert_eq!(
            (f.user.as_deref(), f.source_host.as_deref()),
            (Some("root"), Some("5.6.7.8"))
        );
    }

    #[test]
    fn sshd_other_forms() {
        let f = x(
            "sshd",
            "reverse mapping checking getaddrinfo for ns.example.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!",
        );
        assert_eq!(f.source_host.as_deref(), Some("173.234.31.186"));
        assert_eq!(f.extra, vec![("rdns", "ns.example.com".to_owned())]);
        let f = x(
            "sshd",
            "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]",
        );
        assert_eq!(f.source_host.as_deref(), Some("1.2.3.4"));
        let f = x(
            "sshd",
            "Connection closed by authenticating user root 9.9.9.9 port 22 [preauth]",
        );
        assert_eq!(
            (f.user.as_deref(), f.source_host.as_deref(), f.source_port),
            (Some("root"), Some("9.9.9.9"), Some(22))
        );
        let f = x(
            "sshd",
            "Failed password for invalid user  0101 from 5.188.10.180 port 36279 ssh2",
        );
        assert_eq!(f.user.as_deref(), Some("0101"));
        let f = x("sshd", "Invalid user  from 1.2.3.4");
        assert_eq!((f.user, f.source_host.as_deref()), (None, Some("1.2.3.4")));
        let f = x(
            "sshd",
            "input_userauth_request: invalid user webmaster [preauth]",
        );
        assert_eq!(
            (f.user.as_deref(), f.source_host),
            (Some("webmaster"), None)
        );
        let f = x(
            "sshd",
            "Connection from 192.0.2.1 port 5000 on 192.0.2.9 port 22",
        );
        assert_eq!(
            (f.dest_host.as_deref(), f.dest_port),
            (Some("192.0.2.9"), Some(22))
        );
    }

    #[test]
    fn pam() {
        let f = x(
            "sshd(pam_unix)",
            "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root",
        );
        assert_eq!(
            f.source_host.as_deref(),
            Some("220-135-151-1.hinet-ip.hinet.net")
        );
        assert_eq!(f.user.as_deref(), Some("root"));
        let f = x("su(pam_unix)", "session opened for user news by (uid=0)");
        assert_eq!(f.user.as_deref(), Some("news"));
        let f = x(
            "su",
            "pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)",
        );
        assert_eq!(f.user.as_deref(), Some("root"));
        assert_eq!(f.extra, vec![("by_user", "alice".to_owned())]);
        let f = x("sshd", "pam_unix(sshd:auth): check pass; user unknown");
        assert_eq!(f.user, None);
    }

    #[test]
    fn su_and_sudo() {
        let f = x("su", "(to root) alice on pts/0");
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert!(f.extra.contains(&("target_user", "root".into())));
        assert!(f.extra.contains(&("tty", "pts/0".into())));
        let f = x("su", "FAILED su for root by mallory");
        assert_eq!(f.user.as_deref(), Some("mallory"));
        let f = x(
            "sudo",
            "   alice : TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
        );
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert!(f.extra.contains(&("target_user", "root".into())));
        assert!(f.extra.contains(&("command", "/usr/bin/id".into())));
    }

    #[test]
    fn ftp_and_firewall() {
        let f = x(
            "ftpd",
            "connection from 206.196.21.129 (host129.206.196.21.conversent.net) at Sat Jul  9 22:53:22 2005",
        );
        assert_eq!(f.source_host.as_deref(), Some("206.196.21.129"));
        let f = x("vsftpd", "[alice] FAIL LOGIN: Client \"::ffff:10.1.1.1\"");
        assert_eq!(
            (f.user.as_deref(), f.source_host.as_deref()),
            (Some("alice"), Some("::ffff:10.1.1.1"))
        );
        let f = x(
            "kernel",
            "[UFW BLOCK] IN=eth0 OUT= MAC=aa SRC=203.0.113.9 DST=198.51.100.2 LEN=44 PROTO=TCP SPT=51234 DPT=23 WINDOW=1024",
        );
        assert_eq!(f.source_host.as_deref(), Some("203.0.113.9"));
        assert_eq!(f.dest_host.as_deref(), Some("198.51.100.2"));
        assert_eq!(
            (f.source_port, f.dest_port, f.protocol.as_deref()),
            (Some(51234), Some(23), Some("tcp"))
        );
    }

    #[test]
    fn plain_words_are_not_hosts() {
        let f = x(
            "cron",
            "(root) CMD (run-parts /etc/cron.hourly) from crontab",
        );
        assert_eq!(f.source_host, None);
    }
}
