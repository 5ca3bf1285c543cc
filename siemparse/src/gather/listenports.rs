//! `listenports`: listening TCP sockets and unconnected UDP sockets, IPv4
//! and IPv6, from /proc/net/{tcp,tcp6,udp,udp6}, with the owning process
//! and pid found by matching socket inodes in /proc/*/fd (only processes
//! this user may inspect; others show `process: null`). Reads the live
//! /proc of this network namespace even with `--root`. Keyed
//! `proto/address:port` (`tcp/0.0.0.0:22`, `tcp6/[::1]:631`); several
//! sockets on one address (SO_REUSEPORT) are one row with the lowest pid.
//!
//! `[gather.listenports] annotate = FILE` names the ports an admin knows
//! (sec-tools' annotations): a TOML file of
//! `"tcp/22" = { service = "ssh", verified = true }`; every row then has
//! `service` (or null) and `verified` (false for a port not in the file),
//! so a rule can alert on unverified ports only. `no_local = true` leaves
//! out loopback listeners.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use procfs::net::{TcpState, UdpState};
use procfs::process::FDTarget;
use serde::Deserialize;
use serde_json::json;
use siemstress_common::snapshot::Row;

use super::Ctx;

struct Socket {
    proto: &'static str,
    addr: SocketAddr,
    uid: u32,
    inode: u64,
}

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let mut sockets = Vec::new();
    for (proto, entries) in [("tcp", procfs::net::tcp()), ("tcp6", procfs::net::tcp6())] {
        match entries {
            Ok(es) => sockets.extend(es.into_iter().filter(|e| e.state == TcpState::Listen).map(
                |e| Socket {
                    proto,
                    addr: e.local_address,
                    uid: e.uid,
                    inode: e.inode,
                },
            )),
            Err(e) if proto == "tcp" => return Err(e).context("read /proc/net/tcp"),
            Err(e) => ctx.warn(format!("listenports: /proc/net/{proto}: {e}")),
        }
    }
    for (proto, entries) in [("udp", procfs::net::udp()), ("udp6", procfs::net::udp6())] {
        match entries {
            Ok(es) => sockets.extend(
                es.into_iter()
                    .filter(|e| e.state == UdpState::Close && e.remote_address.port() == 0)
                    .map(|e| Socket {
                        proto,
                        addr: e.local_address,
                        uid: e.uid,
                        inode: e.inode,
                    }),
            ),
            Err(e) => ctx.warn(format!("listenports: /proc/net/{proto}: {e}")),
        }
    }
    let cfg = &ctx.config.listenports;
    let annotations = match &cfg.annotate {
        Some(path) => Some(read_annotations(path)?),
        None => None,
    };
    if cfg.no_local {
        sockets.retain(|s| !is_loopback(s.addr.ip()));
    }
    let owners = socket_owners();
    // BTreeMap: rows in key order, duplicates merged.
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for s in sockets {
        let address = s.addr.ip().to_string();
        let key = match s.addr {
            SocketAddr::V4(_) => format!("{}/{}:{}", s.proto, address, s.addr.port()),
            SocketAddr::V6(_) => format!("{}/[{}]:{}", s.proto, address, s.addr.port()),
        };
        let owner = owners.get(&s.inode);
        let pid = owner.map(|o| o.0);
        if let Some(existing) = rows.get(&key) {
            let existing_pid = existing["pid"].as_i64();
            if existing_pid.is_some() && (pid.is_none() || existing_pid < pid.map(i64::from)) {
                continue;
            }
        }
        let mut row = json!({
            "proto": s.proto,
            "address": address,
            "port": s.addr.port(),
            "process": owner.map(|o| o.1.clone()),
            "pid": pid,
            "uid": s.uid,
        });
        if let Some(a) = &annotations {
            let note = a
                .get(&format!("{}/{}", s.proto, s.addr.port()))
                .or_else(|| {
                    a.get(&format!(
                        "{}/{}",
                        s.proto.trim_end_matches('6'),
                        s.addr.port()
                    ))
                });
            row["service"] = json!(note.and_then(|n| n.service.clone()));
            row["verified"] = json!(note.is_some_and(|n| n.verified));
        }
        rows.insert(key, row);
    }
    Ok(rows.into_iter().map(|(k, v)| Row::new(k, v)).collect())
}

/// One annotated port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Annotation {
    service: Option<String>,
    #[serde(default)]
    verified: bool,
}

/// The annotation file: `"proto/port"` → annotation.
fn read_annotations(path: &std::path::Path) -> anyhow::Result<HashMap<String, Annotation>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[gather.listenports] annotate: {}", path.display()))?;
    let map: HashMap<String, Annotation> =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for k in map.keys() {
        let ok = k.split_once('/').is_some_and(|(proto, port)| {
            matches!(proto, "tcp" | "tcp6" | "udp" | "udp6") && port.parse::<u16>().is_ok()
        });
        if !ok {
            anyhow::bail!(
                "{}: key {k:?} is not PROTO/PORT (tcp/22, udp6/53)",
                path.display()
            );
        }
    }
    Ok(map)
}

/// 127.0.0.0/8, ::1, and IPv4-mapped loopback.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Socket inode → (pid, command name), from every readable /proc/PID/fd.
fn socket_owners() -> HashMap<u64, (i32, String)> {
    let mut out: HashMap<u64, (i32, String)> = HashMap::new();
    let Ok(procs) = procfs::process::all_processes() else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(fds) = p.fd() else { continue };
        let mut comm: Option<String> = None;
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target {
                let name = comm
                    .get_or_insert_with(|| p.stat().map(|s| s.comm).unwrap_or_default())
                    .clone();
                let e = out.entry(inode).or_insert((p.pid, name.clone()));
                if p.pid < e.0 {
                    *e = (p.pid, name);
                }
            }
        }
    }
    out
}
