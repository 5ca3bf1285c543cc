//! `[listen]`: settings of `siemparse --listen` (network syslog intake):
//! which section a message goes to (by program, by sending network, or a
//! default), TLS certificate and key, and the limits that keep a hostile
//! peer from growing memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use crate::Error;
use crate::config::toml_key;

/// Default of `max_message`: syslog-ng's `log-msg-size`, 8x RFC 5425's minimum.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest `max_message` accepted: siemparse's longest row.
pub const MAX_MAX_MESSAGE: usize = 8 << 20;

/// `[listen]` as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Section of messages that no route matches (`-s` overrides; default `default`).
    pub section: Option<String>,
    /// TCP and TLS connections served at once; more are closed at once.
    pub max_connections: Option<usize>,
    /// Longest message in bytes; a longer one is stored as several rows.
    pub max_message: Option<usize>,
    /// PEM certificate chain of `tls://` listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls://` listeners.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, `tls://` clients must present a
    /// certificate signed by one of them.
    pub tls_client_ca: Option<PathBuf>,
    /// Program (syslog tag, RFC 5424 APP-NAME) to section; checked first.
    #[serde(default)]
    pub program: BTreeMap<String, String>,
    /// Sending network (`10.1.0.0/16`, `2001:db8::/32`, or one address) to
    /// section; the longest matching prefix wins. Checked after `program`.
    #[serde(default)]
    pub network: BTreeMap<String, String>,
}

/// `[listen]` checked: networks parsed, limits in range.
#[derive(Debug, Clone)]
pub struct Listen {
    pub section: Option<String>,
    pub max_connections: usize,
    pub max_message: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub program: BTreeMap<String, String>,
    /// Longest prefix first.
    pub network: Vec<(IpNet, String)>,
}

impl ListenConfig {
    /// Checks the values; errors name the key.
    pub fn resolve(&self) -> Result<Listen, Error> {
        let bad = |key: &str, message: String| Error::ConfigValue {
            key: format!("listen.{key}"),
            message,
        };
        let max_message = self.max_message.unwrap_or(DEFAULT_MAX_MESSAGE);
        if !(1024..=MAX_MAX_MESSAGE).contains(&max_message) {
            return Err(bad(
                "max_message",
                format!("{max_message} is out of range 1024..={MAX_MAX_MESSAGE} (bytes)"),
            ));
        }
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1".into()));
        }
        let mut network = Vec::with_capacity(self.network.len());
        for (net, section) in &self.network {
            let parsed = net
                .parse::<IpNet>()
                .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    bad(
                        &toml_key(&["network", net]),
                        "not a network: use an address or ADDRESS/PREFIX (10.1.0.0/16, 2001:db8::/32)"
                            .into(),
                    )
                })?;
            network.push((parsed.trunc(), section.clone()));
        }
        network.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(bad(
                if self.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                },
                "tls_cert and tls_key go together".into(),
            ));
        }
        Ok(Listen {
            section: self.section.clone(),
            max_connections,
            max_message,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            program: self.program.clone(),
            network,
        })
    }

    /// Every section a route names (and the default, if set), with the
    /// key that names it (`listen.program."sshd"`), for errors.
    pub fn sections<'a>(&'a self) -> impl Iterator<Item = (String, &'a str)> {
        let keyed = |table: &'static str, routes: &'a BTreeMap<String, String>| {
            routes
                .iter()
                .map(move |(k, v)| (toml_key(&["listen", table, k]), v.as_str()))
        };
        self.section
            .iter()
            .map(|s| ("listen.section".to_owned(), s.as_str()))
            .chain(keyed("program", &self.program))
            .chain(keyed("network", &self.network))
    }
}

impl Listen {
    /// The section of the longest network that holds `ip`, if any.
    pub fn network_section(&self, ip: IpAddr) -> Option<&str> {
        let ip = canonical(ip);
        self.network
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, s)| s.as_str())
    }
}

/// An IPv4 peer seen on a dual-stack socket (`::ffff:10.1.2.3`) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn longest_network_wins_and_mapped_ipv4_matches() {
        let cfg = Config::parse_str(
            "[listen.network]\n\"10.0.0.0/8\" = \"wide\"\n\"10.1.0.0/16\" = \"narrow\"\n\"10.1.2.3\" = \"one\"\n\"2001:db8::/32\" = \"six\"\n",
        )
        .unwrap();
        let l = cfg.listen().unwrap();
        let sec = |a: &str| l.network_section(a.parse().unwrap());
        assert_eq!(sec("10.9.9.9"), Some("wide"));
        assert_eq!(sec("10.1.9.9"), Some("narrow"));
        assert_eq!(sec("10.1.2.3"), Some("one"));
        assert_eq!(sec("::ffff:10.1.2.3"), Some("one"));
        assert_eq!(sec("2001:db8::7"), Some("six"));
        assert_eq!(sec("192.0.2.1"), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            (
                "[listen.network]\n\"10.0.0/8\" = \"x\"\n",
                "listen.network.\"10.0.0/8\"",
            ),
            ("[listen]\nmax_message = 10\n", "listen.max_message"),
            ("[listen]\nmax_connections = 0\n", "listen.max_connections"),
            ("[listen]\ntls_cert = \"/x\"\n", "listen.tls_key"),
            ("[listen.program]\nsshd = \"a-b\"\n", "a-b"),
        ] {
            let err = Config::parse_str(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = Config::parse_str("[listen]\nport = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }
}
