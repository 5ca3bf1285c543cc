//! A TCP proxy on 127.0.0.1 in front of a database server that a test can
//! cut (every connection closed, new ones refused: the port is closed) and
//! restore (the same port listens again): a database outage without
//! stopping the shared server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct State {
    /// `None` while cut: connecting is refused.
    listener: Option<TcpListener>,
    /// Both sides of every open connection, to close them on a cut.
    conns: Vec<TcpStream>,
}

/// A proxy; dropped, it stops and closes everything.
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    done: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub fn start(target: &str) -> Self {
        let target: SocketAddr = target
            .to_socket_addrs()
            .expect("proxy target")
            .next()
            .expect("proxy target address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(Mutex::new(State {
            listener: Some(listener),
            conns: Vec::new(),
        }));
        let done = Arc::new(AtomicBool::new(false));
        let (s, d) = (state.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let accepted = {
                    let st = s.lock().expect("proxy state");
                    match &st.listener {
                        Some(l) => l.accept().ok(),
                        None => None,
                    }
                };
                let Some((client, _)) = accepted else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut st = s.lock().expect("proxy state");
                if st.listener.is_none() {
                    continue; // cut meanwhile
                }
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                st.conns.push(client);
                st.conns.push(server);
            }
        });
        Proxy { port, state, done }
    }

    /// The outage: every connection closed, new ones refused.
    pub fn cut(&self) {
        let mut st = self.state.lock().expect("proxy state");
        st.listener = None;
        for c in st.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// The end of the outage: the same port accepts again.
    pub fn restore(&self) {
        let mut st = self.state.lock().expect("proxy state");
        if st.listener.is_none() {
            let l = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy rebind");
            l.set_nonblocking(true).expect("nonblocking");
            st.listener = Some(l);
        }
    }

    /// Connections made through the proxy so far that are still open (or
    /// were, at the last cut).
    pub fn connections(&self) -> usize {
        self.state.lock().expect("proxy state").conns.len() / 2
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// `host:port` of a MariaDB URL (`mysql://user:pw@host:port/db`; port 3306
/// if absent).
pub fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or(rest);
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:3306")
    }
}

/// `url` with its `host:port` replaced by `hostport`.
pub fn via(url: &str, hostport: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("url with scheme");
    let (user, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let tail = rest.find(['/', '?']).map_or("", |i| &rest[i..]);
    format!("{scheme}://{user}{hostport}{tail}")
}
