//! `portscan`: the open TCP ports of `[gather.portscan] hosts`, found by a
//! connect scan of its own (sec-tools ran nmap), keyed `host/port`. Each
//! row records the address connected to and the first line of the banner
//! where the service sends one at once (SSH, SMTP, FTP...; HTTP waits for
//! the client and has none).
//!
//! Bounded on every side: the ports to try (`ports`, a list of ports and
//! ranges), the number of connections open at once (`concurrency`), the
//! time a connect and a banner may take (`timeout`), the connection
//! attempts per second (`rate`), and at most [`MAX_PROBES`] probes per run.
//! Hosts are addresses, names (the first address they resolve to) or IPv4
//! CIDR blocks down to /16.
//!
//! A banner is written by whoever answers on that port: only its first
//! line is kept, at most [`BANNER_MAX`] characters, exact (a binary
//! greeting such as MariaDB's keeps its bytes as JSON escapes); tables and
//! text output escape it when they show it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use siemstress_common::snapshot::Row;
use tokio::io::AsyncReadExt;

use super::{Ctx, PortscanConfig};

/// Most probes (hosts × ports) one run makes.
pub const MAX_PROBES: usize = 1_000_000;
/// Longest banner line kept, in characters.
pub const BANNER_MAX: usize = 200;

/// The checked settings.
struct Plan {
    targets: Vec<(String, IpAddr)>,
    ports: Vec<u16>,
    concurrency: usize,
    timeout: Duration,
    rate: u32,
}

/// Parses `22,80,8000-8100` into sorted distinct ports.
pub fn parse_ports(spec: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |t: &str| -> anyhow::Result<u16> {
            match t.trim().parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => bail!("[gather.portscan] ports: {t:?} is not a port (1-65535)"),
            }
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    bail!("[gather.portscan] ports: range {part:?} runs backwards");
                }
                out.extend(a..=b);
            }
            None => out.push(port(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("[gather.portscan] ports: no port in {spec:?}");
    }
    Ok(out)
}

/// The addresses of one `hosts` entry, each with the name its rows get.
async fn expand_host(h: &str, warnings: &mut Vec<String>) -> anyhow::Result<Vec<(String, IpAddr)>> {
    if let Some((net, bits)) = h.split_once('/') {
        let net: std::net::Ipv4Addr = net
            .parse()
            .with_context(|| format!("[gather.portscan] hosts: {h:?}: not an IPv4 CIDR block"))?;
        let bits: u32 = bits
            .parse()
            .ok()
            .filter(|b| (16..=32).contains(b))
            .with_context(|| {
                format!("[gather.portscan] hosts: {h:?}: the prefix must be /16 to /32")
            })?;
        let size = 1u32 << (32 - bits);
        let base = u32::from(net) & !(size - 1);
        return Ok((0..size)
            .map(|i| {
                let a = IpAddr::from(std::net::Ipv4Addr::from(base + i));
                (a.to_string(), a)
            })
            .collect());
    }
    if let Ok(ip) = h.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![(ip.to_string(), ip)]);
    }
    match tokio::net::lookup_host((h, 0)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok(vec![(h.to_owned(), a.ip())]),
            None => {
                warnings.push(format!("portscan: {h}: no address"));
                Ok(Vec::new())
            }
        },
        Err(e) => {
            warnings.push(format!("portscan: {h}: cannot resolve: {e}"));
            Ok(Vec::new())
        }
    }
}

async fn plan(cfg: &PortscanConfig, warnings: &mut Vec<String>) -> anyhow::Result<Plan> {
    if cfg.hosts.is_empty() {
        bail!(
            "[gather.portscan] hosts is empty: list the hosts to scan (e.g. hosts = [\"10.0.0.5\"])"
        );
    }
    let ports = parse_ports(cfg.ports.as_deref().unwrap_or("1-1024"))?;
    let mut targets = Vec::new();
    for h in &cfg.hosts {
        targets.extend(expand_host(h, warnings).await?);
    }
    targets.sort();
    targets.dedup();
    let probes = targets.len().saturating_mul(ports.len());
    if probes > MAX_PROBES {
        bail!(
            "[gather.portscan]: {} hosts × {} ports = {probes} probes, over the limit of {MAX_PROBES}: scan fewer hosts or ports",
            targets.len(),
            ports.len()
        );
    }
    let timeout = match &cfg.timeout {
        Some(t) => siemstress_common::time::parse_duration(t)
            .map_err(|e| anyhow::anyhow!("[gather.portscan] timeout: {e}"))?,
        None => Duration::from_secs(1),
    };
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        bail!("[gather.portscan] timeout: between 1ms and 60s");
    }
    let concurrency = cfg.concurrency.unwrap_or(100);
    if !(1..=4096).contains(&concurrency) {
        bail!("[gather.portscan] concurrency: between 1 and 4096");
    }
    let rate = cfg.rate.unwrap_or(500);
    if !(1..=100_000).contains(&rate) {
        bail!("[gather.portscan] rate: between 1 and 100000 attempts per second");
    }
    Ok(Plan {
        targets,
        ports,
        concurrency,
        timeout,
        rate,
    })
}

/// Connects to `addr`; `Some(banner)` if it is open (the banner's first
/// line, if one came within `timeout`).
async fn probe(addr: SocketAddr, timeout: Duration) -> Option<Option<String>> {
    let mut stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut buf = [0u8; 1024];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while got < buf.len() && !buf[..got].contains(&b'\n') {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[got..])).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
    Some(banner_line(&buf[..got]))
}

/// The first line of what a service sent, cut and escaped.
fn banner_line(b: &[u8]) -> Option<String> {
    let line = b.split(|&c| c == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r').trim();
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(BANNER_MAX).collect())
}

pub async fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let mut warnings = Vec::new();
    let plan = plan(&ctx.config.portscan, &mut warnings).await?;
    for w in warnings {
        ctx.warn(w);
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(plan.concurrency));
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(plan.rate)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut found: BTreeMap<(String, u16), serde_json::Value> = BTreeMap::new();
    let collect = |r: Option<(String, IpAddr, u16, Option<String>)>,
                   found: &mut BTreeMap<(String, u16), serde_json::Value>| {
        if let Some((name, ip, port, banner)) = r {
            found.insert(
                (name.clone(), port),
                json!({"host": name, "address": ip.to_string(), "port": port, "banner": banner}),
            );
        }
    };
    for (name, ip) in &plan.targets {
        for &port in &plan.ports {
            pace.tick().await;
            let permit = gate.clone().acquire_owned().await?;
            let (name, ip, timeout) = (name.clone(), *ip, plan.timeout);
            tasks.spawn(async move {
                let r = probe(SocketAddr::new(ip, port), timeout).await;
                drop(permit);
                r.map(|banner| (name, ip, port, banner))
            });
            // Collect what is done as we go: memory stays at `concurrency`.
            while let Some(done) = tasks.try_join_next() {
                collect(done?, &mut found);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(done?, &mut found);
    }
    Ok(found
        .into_iter()
        .map(|((name, port), v)| Row::new(format!("{name}/{port}"), v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_banners() {
        assert_eq!(
            parse_ports("443, 22,80-82,22").unwrap(),
            [22, 80, 81, 82, 443]
        );
        for bad in ["0", "70000", "ssh", "90-80", ""] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
        assert_eq!(
            banner_line(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\nmore").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian")
        );
        assert_eq!(
            banner_line(b"\x1b]2;x\x07220 hi\n").as_deref(),
            Some("\x1b]2;x\x07220 hi")
        );
        assert_eq!(banner_line(b""), None);
        assert_eq!(banner_line(&[b'a'; 500]).unwrap().len(), BANNER_MAX);
    }
}
