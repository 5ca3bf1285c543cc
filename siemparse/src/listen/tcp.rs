//! `tcp://` and `tls://` listeners: accepting connections (at most
//! `[listen] max_connections`), and reading each one's messages into
//! batches. One task per connection; a connection is read only while the
//! writer takes its rows (back-pressure), and holds at most one read buffer,
//! one unfinished message and one batch of memory.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use siemstress_common::time::now_ms;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::framing::Framer;
use super::route::{PeerParsers, Routes};
use super::{DRAIN, Intake, ListenUrl, PEER_BATCH_BYTES, source_of, stopped};
use crate::pipeline::{BatchSender, Pending};
use crate::reload::Current;

/// Bytes read from a connection at a time.
const READ_BUF: usize = 64 * 1024;
/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn bind(url: &ListenUrl) -> std::io::Result<TcpListener> {
    TcpListener::bind(url.addr).await
}

/// Accepts connections until stopped, then waits for the open ones to
/// store what they received.
pub async fn accept_loop(
    listener: TcpListener,
    url: ListenUrl,
    tls: Option<TlsAcceptor>,
    intake: Arc<Intake>,
) {
    let max = intake.routes.get().listen().max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut conns = JoinSet::new();
    let mut stop = intake.stop.clone();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                intake.warnings.warn("accept", || {
                    format!("{}: accepting a connection: {e}", url.text)
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            intake.warnings.warn("max_connections", || {
                format!(
                    "{}: {max} connections open ([listen] max_connections); closing new ones",
                    url.text
                )
            });
            continue;
        };
        // A host that crashed never closes its connection: keepalive finds it.
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let (ip, source) = source_of(url.proto, peer);
        let (tls, intake) = (tls.clone(), intake.clone());
        conns.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve(stream, ip, source, &intake).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve(s, ip, source, &intake).await,
                        Ok(Err(e)) => intake.warnings.warn("tls_handshake", || {
                            format!("{source}: TLS handshake failed: {e}")
                        }),
                        Err(_) => intake.warnings.warn("tls_handshake", || {
                            format!("{source}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}")
                        }),
                    }
                }
            }
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One connection's reader.
struct Conn<'a> {
    intake: &'a Intake,
    /// Sends the rows of this connection, one ingest source.
    tx: BatchSender,
    /// The routes the parsers were made for, and news of a reload.
    routes: Arc<Routes>,
    reloads: Current<Routes>,
    ip: IpAddr,
    source: String,
    framer: Framer,
    parsers: PeerParsers,
    pending: Pending,
    warned_framing: bool,
}

impl Conn<'_> {
    /// Frames, parses and routes received bytes.
    fn take_in(&mut self, data: &[u8]) {
        self.follow_reload();
        let received = now_ms();
        let routes = &*self.routes;
        let (parsers, pending) = (&mut self.parsers, &mut self.pending);
        self.framer.feed(data, &mut |msg| {
            let (target, ev) = parsers.parse(routes, msg, received);
            pending.push(target, ev);
        });
        if self.framer.fell_back() && !self.warned_framing {
            self.warned_framing = true;
            let source = &self.source;
            self.intake.warnings.warn("framing", || {
                format!(
                    "{source}: a frame without a valid octet count; the rest of the connection is read as lines"
                )
            });
        }
    }

    /// After a SIGHUP reload: parsers of the new routes (the sections, and
    /// so the targets of held rows, keep their places).
    fn follow_reload(&mut self) {
        if let Some(new) = self.reloads.changed() {
            self.parsers = PeerParsers::new(&new, self.ip, &self.source);
            self.routes = new;
        }
    }

    /// Sends what is held; false if the writer has stopped.
    async fn send(&mut self) -> bool {
        self.tx.send_pending(&mut self.pending).await.is_ok()
    }
}

/// Reads one connection until it closes or siemparse stops; what was
/// received is stored, an unfinished last message included.
pub async fn serve<S: AsyncRead + Unpin>(
    mut stream: S,
    ip: IpAddr,
    source: String,
    intake: &Intake,
) {
    let mut reloads = intake.routes.clone();
    let routes = reloads.changed().unwrap_or_else(|| intake.routes.get());
    let mut c = Conn {
        intake,
        tx: intake
            .tx
            .with_source(siemstress_common::db::sources::KIND_LISTEN, source.clone()),
        framer: Framer::new(routes.listen().max_message),
        parsers: PeerParsers::new(&routes, ip, &source),
        pending: Pending::new(routes.sections.len(), intake.batch_rows, PEER_BATCH_BYTES),
        routes,
        reloads,
        ip,
        source,
        warned_framing: false,
    };
    let mut buf = vec![0u8; READ_BUF];
    let mut stop = intake.stop.clone();
    loop {
        if *stop.borrow() {
            drain(&mut stream, &mut buf, &mut c).await;
            break;
        }
        let read = if c.pending.is_empty() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => continue,
                r = stream.read(&mut buf) => r,
            }
        } else {
            // Rows are held: send them as soon as nothing more is waiting,
            // so a quiet sender's line is stored at once.
            match stream.read(&mut buf).now_or_never() {
                Some(r) => r,
                None => {
                    if !c.send().await {
                        return;
                    }
                    continue;
                }
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => c.take_in(&buf[..n]),
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) {
                    let source = &c.source;
                    intake
                        .warnings
                        .warn("read", || format!("{source}: reading: {e}"));
                }
                break;
            }
        }
        if c.pending.is_full() && !c.send().await {
            return;
        }
    }
    if let Some(rest) = c.framer.finish() {
        c.take_in_rest(&rest);
    }
    if c.send().await {
        // The connection ended: it no longer holds siemtrigger's watermark.
        let _ = c.tx.finish_async().await;
    }
}

impl Conn<'_> {
    /// The unfinished message at the end of the connection.
    fn take_in_rest(&mut self, rest: &[u8]) {
        self.follow_reload();
        let (target, ev) = self.parsers.parse(&self.routes, rest, now_ms());
        self.pending.push(target, ev);
    }
}

/// On stop: takes what the kernel already holds for the connection (for at
/// most [`DRAIN`]), without waiting for more.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8], c: &mut Conn<'_>) {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        match stream.read(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => c.take_in(&buf[..n]),
            _ => return,
        }
        if c.pending.is_full() && !c.send().await {
            return;
        }
    }
}
