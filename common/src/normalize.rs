//! One spelling per value for the columns that queries and rules compare
//! exactly: addresses in the canonical text of `IpAddr`, protocols in lower
//! case. Ingest (decoders, input formats) and the filters of siemquery and
//! siemtrigger both go through here, so `--shost 2001:DB8::AB` finds what
//! was stored from `2001:db8:0::ab`.

use std::net::{IpAddr, Ipv6Addr};

/// A host as stored in `source_host`/`dest_host`, or `None` when `raw` is
/// neither an address nor a plausible host name (junk is not a host).
///
/// - `[2001:db8::1]` loses its brackets; an address is written as `IpAddr`
///   prints it (`2001:DB8:0::AB` → `2001:db8::ab`, `010.1.1.1` is not an address);
/// - an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, as vsftpd and dual-stack
///   daemons print IPv4 clients) is stored as the IPv4 address it carries, so
///   one client has one value whatever socket it came in on;
/// - a DNS name (letters, digits, `.`, `-`, `_`, with a dot) is lower-cased.
pub fn host(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(match ip {
            // The parser takes only the canonical dotted quad (no leading
            // zeros, no signs), which is how it prints: the text as is,
            // without formatting it again (this runs for most lines).
            IpAddr::V4(_) => s.to_owned(),
            IpAddr::V6(_) => canonical_ip(ip).to_string(),
        });
    }
    host_name_like(s).then(|| s.to_ascii_lowercase())
}

/// The filter value for `--shost`/`--dhost`: the stored spelling of an
/// address or name; anything else unchanged (it then matches nothing, as
/// nothing else is stored).
pub fn host_filter(raw: &str) -> String {
    host(raw).unwrap_or_else(|| raw.to_owned())
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address as it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.octets())),
        },
        v4 => v4,
    }
}

/// A DNS name: letters, digits, `.`, `-`, `_`, at least one dot and one
/// alphanumeric, not ending in a dot (`from root`, `from UNKNOWN` are not hosts).
fn host_name_like(s: &str) -> bool {
    s.contains('.')
        && !s.ends_with('.')
        && s.bytes().any(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A protocol name as stored and filtered: lower case (`TCP` → `tcp`).
pub fn protocol(raw: &str) -> String {
    raw.trim().to_ascii_lowercase()
}

/// A port number, `None` outside 0..=65535 or when not a number.
pub fn port(raw: &str) -> Option<i64> {
    raw.trim().parse::<u16>().ok().map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_have_one_spelling() {
        assert_eq!(host("2001:DB8::AB").as_deref(), Some("2001:db8::ab"));
        assert_eq!(host("2001:db8:0:0::ab").as_deref(), Some("2001:db8::ab"));
        assert_eq!(host("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(host("::ffff:10.1.1.1").as_deref(), Some("10.1.1.1"));
        assert_eq!(host("::FFFF:10.1.1.1").as_deref(), Some("10.1.1.1"));
        assert_eq!(host("::1").as_deref(), Some("::1"));
        assert_eq!(host("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(
            host("Mail.Example.ORG").as_deref(),
            Some("mail.example.org")
        );
        for junk in ["", "root", "UNKNOWN", "a b.c", "x.", "[]", "1.2.3.4]"] {
            assert_eq!(host(junk), None, "{junk:?}");
        }
        for v4 in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "10.0.0.12",
            "203.0.113.66",
        ] {
            let printed = v4.parse::<IpAddr>().unwrap().to_string();
            assert_eq!(host(v4).as_deref(), Some(printed.as_str()));
        }
        for not_v4 in [
            "01.2.3.4",
            "1.2.3.04",
            "256.1.1.1",
            "+1.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
        ] {
            assert!(not_v4.parse::<IpAddr>().is_err(), "{not_v4:?}");
        }
        assert_eq!(host_filter("2001:DB8::AB"), "2001:db8::ab");
        assert_eq!(host_filter("not a host"), "not a host");
    }

    #[test]
    fn protocols_and_ports() {
        assert_eq!(protocol("TCP"), "tcp");
        assert_eq!(port("22"), Some(22));
        assert_eq!(port("65536"), None);
        assert_eq!(port("-1"), None);
    }
}
