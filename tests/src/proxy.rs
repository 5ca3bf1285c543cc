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
    /// Cut right after the next COMMIT reaches the server (see
    /// [`Proxy::cut_after_commit`]).
    armed: Arc<AtomicBool>,
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
        let armed = Arc::new(AtomicBool::new(false));
        let (s, d, a) = (state.clone(), done.clone(), armed.clone());
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
                // Set when a COMMIT is cut off: nothing goes back any more.
                let hold = Arc::new(AtomicBool::new(false));
                for (upstream, (from, to)) in
                    [(true, (&client, &server)), (false, (&server, &client))]
                {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    let (armed, state, hold) = (a.clone(), s.clone(), hold.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    // COM_QUERY "COMMIT": the server gets
                                    // it, its answer is lost.
                                    let commit = upstream
                                        && armed.load(Ordering::SeqCst)
                                        && buf[..n].windows(7).any(|w| w == b"\x03COMMIT")
                                        && armed.swap(false, Ordering::SeqCst);
                                    if commit {
                                        hold.store(true, Ordering::SeqCst);
                                    }
                                    if !upstream && hold.load(Ordering::SeqCst) {
                                        break;
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                    if commit {
                                        std::thread::sleep(Duration::from_millis(300));
                                        cut(&state);
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
        Proxy {
            port,
            state,
            done,
            armed,
        }
    }

    /// The outage: every connection closed, new ones refused.
    pub fn cut(&self) {
        cut(&self.state);
    }

    /// The outage, right after the next COMMIT has reached the server and
    /// before its answer reaches the client: the client cannot know
    /// whether its transaction committed.
    pub fn cut_after_commit(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// True once an armed cut has happened.
    pub fn cut_done(&self) -> bool {
        !self.armed.load(Ordering::SeqCst)
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

/// Closes every connection and the listening port.
fn cut(state: &Mutex<State>) {
    let mut st = state.lock().expect("proxy state");
    st.listener = None;
    for c in st.conns.drain(..) {
        let _ = c.shutdown(Shutdown::Both);
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
