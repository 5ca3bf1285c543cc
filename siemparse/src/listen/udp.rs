//! `udp://` listeners (RFC 5426): one message per datagram. UDP has no
//! back-pressure: while the writer is behind, datagrams wait in the socket's
//! receive buffer (8 MiB asked for, capped by `net.core.rmem_max`), and
//! what does not fit is dropped by the kernel. Those drops are read from the
//! socket's own counter (the `drops` column of `/proc/net/udp`), reported as
//! they happen and in a last line at exit, so "stored + dropped = sent".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siemstress_common::diag;
use siemstress_common::time::now_ms;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::route::{PeerParsers, Routes};
use super::{DRAIN, Intake, ListenUrl, PEER_BATCH_BYTES, Proto, source_of, stopped};
use crate::lines::pieces;
use crate::pipeline::Pending;
use crate::reload::Current;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 8 << 20;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Peers whose parser state is kept; beyond, the map starts over (the state
/// is only the DST order of bare times, so forgetting it is harmless).
const MAX_PEERS: usize = 4096;
/// How often the kernel's drop counter is read.
const DROP_CHECK: Duration = Duration::from_secs(1);

/// Binds a UDP socket with a large receive buffer.
pub fn bind(url: &ListenUrl) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(url.addr),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer still works, it only drops sooner.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.bind(&url.addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// The kernel's count of datagrams it dropped for one socket.
struct KernelDrops {
    inode: Option<u64>,
    /// Count when the socket was bound (0 for a new socket).
    start: u64,
    /// Count last reported.
    reported: u64,
}

impl KernelDrops {
    fn new(socket: &UdpSocket) -> Self {
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
            .ok()
            .map(|m| m.ino());
        let mut d = Self {
            inode,
            start: 0,
            reported: 0,
        };
        d.start = d.read().unwrap_or(0);
        d.reported = d.start;
        d
    }

    /// The socket's drop counter, from `/proc/self/net/udp` or `udp6`.
    fn read(&self) -> Option<u64> {
        let inode = self.inode?.to_string();
        ["/proc/self/net/udp", "/proc/self/net/udp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .find_map(|table| drops_of(&table, &inode))
    }

    /// Drops since the last call, if any.
    fn new_drops(&mut self) -> Option<(u64, u64)> {
        let now = self.read()?;
        let new = now.checked_sub(self.reported).filter(|&n| n > 0)?;
        self.reported = now;
        Some((new, now - self.start))
    }
}

/// The `drops` column of the row of socket `inode` in a `/proc/net/udp` table.
fn drops_of(table: &str, inode: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.get(9) == Some(&inode)).then(|| cols.get(12)?.parse().ok())?
    })
}

/// One socket's reader.
struct Reader {
    /// The routes the peers' parsers were made for, and news of a reload.
    routes: Arc<Routes>,
    reloads: Current<Routes>,
    peers: HashMap<SocketAddr, PeerParsers>,
    pending: Pending,
    datagrams: u64,
}

impl Reader {
    fn take_in(&mut self, datagram: &[u8], peer: SocketAddr) {
        self.datagrams += 1;
        if let Some(new) = self.reloads.changed() {
            // SIGHUP: parsers of the new routes (sections keep their places).
            self.peers.clear();
            self.routes = new;
        }
        let routes = &*self.routes;
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        let parsers = self.peers.entry(peer).or_insert_with(|| {
            let (ip, source) = source_of(Proto::Udp, peer);
            PeerParsers::new(routes, ip, &source)
        });
        let received = now_ms();
        let pending = &mut self.pending;
        pieces(trim_trailer(datagram), routes.listen().max_message, |msg| {
            let (target, ev) = parsers.parse(routes, msg, received);
            pending.push(target, ev);
        });
    }
}

/// Reads datagrams until stopped; then takes what the socket still holds.
pub async fn serve(socket: UdpSocket, url: ListenUrl, intake: Arc<Intake>) {
    let mut reloads = intake.routes.clone();
    let routes = reloads.changed().unwrap_or_else(|| intake.routes.get());
    let mut r = Reader {
        peers: HashMap::new(),
        pending: Pending::new(routes.sections.len(), intake.batch_rows, PEER_BATCH_BYTES),
        routes,
        reloads,
        datagrams: 0,
    };
    // The socket is one source (datagrams have no connection to end).
    let tx = intake.tx.with_source(
        siemstress_common::db::sources::KIND_LISTEN,
        url.text.clone(),
    );
    let mut drops = KernelDrops::new(&socket);
    if drops.inode.is_none() {
        diag!(
            "siemparse: warning: {}: cannot read the kernel's drop counter of the socket",
            url.text
        );
    }
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut stop = intake.stop.clone();
    let mut next_check = Instant::now() + DROP_CHECK;
    loop {
        if Instant::now() >= next_check {
            next_check = Instant::now() + DROP_CHECK;
            report_new_drops(&mut drops, &url);
        }
        if *stop.borrow() {
            let deadline = Instant::now() + DRAIN;
            while Instant::now() < deadline {
                let Ok((n, peer)) = socket.try_recv_from(&mut buf) else {
                    break;
                };
                r.take_in(&buf[..n], peer);
                if r.pending.is_full() && tx.send_pending(&mut r.pending).await.is_err() {
                    return;
                }
            }
            break;
        }
        let got = if r.pending.is_empty() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => continue,
                _ = tokio::time::sleep_until(next_check.into()) => continue,
                got = socket.recv_from(&mut buf) => got,
            }
        } else {
            match socket.try_recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if tx.send_pending(&mut r.pending).await.is_err() {
                        return;
                    }
                    continue;
                }
                got => got,
            }
        };
        match got {
            Ok((n, peer)) => r.take_in(&buf[..n], peer),
            Err(e) => {
                intake
                    .warnings
                    .warn("udp_read", || format!("{}: receiving: {e}", url.text));
                continue;
            }
        }
        if r.pending.is_full() && tx.send_pending(&mut r.pending).await.is_err() {
            return;
        }
    }
    let _ = tx.send_pending(&mut r.pending).await;
    let _ = tx.finish_async().await;
    report_new_drops(&mut drops, &url);
    let total = drops.reported - drops.start;
    if total > 0 {
        diag!(
            "siemparse: warning: {}: {} datagrams received, {total} dropped by the kernel in all",
            url.text,
            r.datagrams
        );
    }
}

fn report_new_drops(drops: &mut KernelDrops, url: &ListenUrl) {
    if let Some((new, total)) = drops.new_drops() {
        diag!(
            "siemparse: warning: {}: the kernel dropped {new} datagrams (receive buffer full; \
             {total} in all); raise net.core.rmem_max or send over tcp://",
            url.text
        );
    }
}

/// A datagram without the LF, CR LF or NUL some senders end it with.
fn trim_trailer(d: &[u8]) -> &[u8] {
    let d = d.strip_suffix(b"\0").unwrap_or(d);
    let d = d.strip_suffix(b"\n").unwrap_or(d);
    d.strip_suffix(b"\r").unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_column_of_the_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 00000000:14B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 00000000:14B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(drops_of(table, "4242"), Some(17));
        assert_eq!(drops_of(table, "4243"), Some(0));
        assert_eq!(drops_of(table, "99"), None);
    }

    #[test]
    fn trailers_are_cut_once() {
        assert_eq!(trim_trailer(b"a\r\n"), b"a");
        assert_eq!(trim_trailer(b"a\n\0"), b"a");
        assert_eq!(trim_trailer(b"a\n\n"), b"a\n");
    }
}
