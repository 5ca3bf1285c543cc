//! `siemparse --listen URL`: syslog from the network into the same parse and
//! batch path as stdin. `udp://` (RFC 5426, one message per datagram),
//! `tcp://` (RFC 6587, octet counting or LF framing, detected per
//! connection) and `tls://` (RFC 5425). Each message goes to the section
//! `[listen]` routes it to; `source` records the sending address and port
//! (`tcp://192.0.2.7:40312`), while `host` stays the header's.
//!
//! TCP and TLS connections apply back-pressure: a connection whose rows the
//! writer cannot take yet is not read, so the sender waits and nothing is
//! dropped. UDP has no back-pressure: datagrams the kernel drops while the
//! socket buffer is full are counted from its counters and reported.

mod framing;
mod route;
mod tcp;
mod tls;
mod udp;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siemstress_common::config::listen::canonical;
use siemstress_common::diag;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use route::Routes;

use crate::pipeline::BatchSender;

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    fn scheme(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
        }
    }
}

/// One `--listen` URL, resolved.
#[derive(Debug, Clone)]
pub struct ListenUrl {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// As given, for messages.
    pub text: String,
}

/// Parses `udp://HOST[:PORT]`, `tcp://...`, `tls://...` (default ports
/// 514, 601 and 6514, the IANA ones); for clap.
pub fn parse_url(text: &str) -> Result<ListenUrl, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("use udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")?;
    let (proto, default_port) = match scheme {
        "udp" => (Proto::Udp, 514),
        "tcp" => (Proto::Tcp, 601),
        "tls" => (Proto::Tls, 6514),
        other => return Err(format!("unknown scheme {other:?}: use udp, tcp or tls")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return Err("expected only HOST[:PORT] after the scheme".into());
    }
    // [v6]:port, [v6], v4:port, name:port, or a bare host.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or("missing ] after an IPv6 address")?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err("expected :PORT after ]".into()),
            }
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("write an IPv6 address in brackets: [::]:514".into()),
            None => (rest, None),
        },
    };
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        None => default_port,
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} has no address"))?;
    Ok(ListenUrl {
        proto,
        addr,
        text: text.to_owned(),
    })
}

/// What every listener task shares.
pub struct Intake {
    /// The current routes (replaced by a SIGHUP reload).
    pub routes: crate::reload::Current<Routes>,
    pub tx: BatchSender,
    pub batch_rows: usize,
    pub stop: watch::Receiver<bool>,
    pub warnings: Arc<Warnings>,
    /// No "listening on" lines.
    pub quiet: bool,
}

/// Binds every URL (failing with the URL at fault), then serves each on a
/// task of its own until `stop` turns true.
pub async fn start(urls: &[ListenUrl], intake: Intake) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let intake = Arc::new(intake);
    let acceptor = if urls.iter().any(|u| u.proto == Proto::Tls) {
        Some(tls::acceptor(intake.routes.get().listen())?)
    } else {
        None
    };
    let mut tasks = Vec::new();
    for url in urls {
        let at = |e: std::io::Error| anyhow::anyhow!("--listen {}: {e}", url.text);
        let (local, task) = match url.proto {
            Proto::Udp => {
                let socket = udp::bind(url).map_err(at)?;
                let local = socket.local_addr().map_err(at)?;
                (
                    local,
                    tokio::spawn(udp::serve(socket, url.clone(), intake.clone())),
                )
            }
            Proto::Tcp | Proto::Tls => {
                let listener = tcp::bind(url).await.map_err(at)?;
                let local = listener.local_addr().map_err(at)?;
                let tls = acceptor.clone().filter(|_| url.proto == Proto::Tls);
                let task =
                    tokio::spawn(tcp::accept_loop(listener, url.clone(), tls, intake.clone()));
                (local, task)
            }
        };
        if !intake.quiet {
            // The bound port (port 0 picks a free one).
            diag!("siemparse: listening on {}://{local}", url.proto.scheme());
        }
        tasks.push(task);
    }
    Ok(tasks)
}

/// `scheme://address:port` of a peer (IPv4 on a dual-stack socket as IPv4).
pub fn source_of(proto: Proto, peer: SocketAddr) -> (IpAddr, String) {
    let ip = canonical(peer.ip());
    (
        ip,
        format!("{}://{}", proto.scheme(), SocketAddr::new(ip, peer.port())),
    )
}

/// Batches queued for the writer: peers send small batches as they come,
/// and the writer merges what is queued into one transaction; at most
/// `QUEUED_BATCHES` x [`PEER_BATCH_BYTES`] (16 MiB) of rows wait.
pub const QUEUED_BATCHES: usize = 64;

/// Rows a connection or socket holds before sending them (its share of
/// memory); the writer merges what is queued into bigger transactions.
pub const PEER_BATCH_BYTES: usize = 256 * 1024;

/// Warnings about peers, at most one per kind every 10 s (a hostile or
/// broken peer must not flood the log); the rest are counted and reported
/// with the next one.
#[derive(Default)]
pub struct Warnings {
    kinds: std::sync::Mutex<std::collections::HashMap<&'static str, (Instant, u64)>>,
}

/// How often one kind of warning is printed.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Warnings {
    /// Prints `message` unless a warning of `kind` was printed in the last
    /// 10 s. `message` must not hold peer-controlled bytes.
    pub fn warn(&self, kind: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let entry = kinds.entry(kind).or_insert((now - WARN_EVERY * 2, 0));
        if now.duration_since(entry.0) < WARN_EVERY {
            entry.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut entry.1);
        entry.0 = now;
        drop(kinds);
        if suppressed > 0 {
            diag!(
                "siemparse: warning: {} ({suppressed} more like it not shown)",
                message()
            );
        } else {
            diag!("siemparse: warning: {}", message());
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long a stopping reader keeps taking what the kernel already holds.
pub const DRAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_default_ports_and_ipv6() {
        let u = parse_url("udp://127.0.0.1").unwrap();
        assert_eq!((u.proto, u.addr.port()), (Proto::Udp, 514));
        let u = parse_url("tcp://[::1]:6000").unwrap();
        assert_eq!(u.addr, "[::1]:6000".parse().unwrap());
        assert_eq!(parse_url("tls://0.0.0.0").unwrap().addr.port(), 6514);
        assert_eq!(parse_url("tcp://0.0.0.0:601/").unwrap().addr.port(), 601);
        for bad in [
            "0.0.0.0:514",
            "http://0.0.0.0:80",
            "tcp://::1:80",
            "tcp://0.0.0.0:99999",
            "tcp://0.0.0.0:601/x",
            "tcp://u@0.0.0.0:601",
            "tcp://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_ipv4_peers_read_as_ipv4() {
        let (ip, s) = source_of(Proto::Tcp, "[::ffff:192.0.2.7]:40312".parse().unwrap());
        assert_eq!(ip.to_string(), "192.0.2.7");
        assert_eq!(s, "tcp://192.0.2.7:40312");
        let (_, s) = source_of(Proto::Udp, "[2001:db8::1]:514".parse().unwrap());
        assert_eq!(s, "udp://[2001:db8::1]:514");
    }
}
