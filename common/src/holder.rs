//! Who holds a lease (see `db::lease`): `host:pid:nonce`, the name a
//! process writes into the lease rows it takes, and what can be read back
//! from it: the host and process to name in messages, and whether the
//! holder is a process of this host that is gone (its lease is taken over
//! at once instead of after it expires).

/// The holder name of this process: `host:pid:nonce` (the nonce tells a
/// reused pid apart).
pub fn holder_id() -> String {
    let pid = std::process::id();
    let nonce: u32 = pid ^ (crate::time::now_ms() as u32);
    format!("{}:{pid}:{nonce:08x}", hostname())
}

/// This host's name (as `hostname` prints it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The host and pid of a holder name (`None` if it is not one of ours).
pub fn parse(holder: &str) -> Option<(&str, u32)> {
    let mut parts = holder.rsplitn(3, ':');
    let _nonce = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    Some((parts.next()?, pid))
}

/// "host H, pid P" for messages (the raw name if it is not one of ours;
/// the name comes from the database, so it is escaped for the terminal).
pub fn describe(holder: &str) -> String {
    match parse(holder) {
        Some((host, pid)) => format!("host {}, pid {pid}", crate::display::Escaped(host)),
        None => format!("{}", crate::display::Escaped(holder)),
    }
}

/// True if `holder` is a process of this host that no longer runs.
pub fn is_dead_local(holder: &str) -> bool {
    parse(holder).is_some_and(|(host, pid)| {
        host == hostname() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let me = holder_id();
        assert_eq!(parse(&me), Some((hostname().as_str(), std::process::id())));
        assert!(!is_dead_local(&me));
        assert!(is_dead_local(&format!("{}:999999999:0", hostname())));
        assert!(!is_dead_local("otherhost:999999999:0"));
        assert_eq!(describe("a:b:c:12:ff"), "host a:b:c, pid 12");
        assert_eq!(describe("junk"), "junk");
    }
}
