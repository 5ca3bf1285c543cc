//! `siemparse --listen`: util-linux `logger` and a Rust client over TCP (both
//! framings), UDP and TLS; routing to sections; SIGTERM; hostile peers.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siemstress_tests::{Env, Kind, kinds};

/// A running `siemparse --listen` and what it printed on stderr.
struct Listener {
    child: Child,
    /// `tcp://127.0.0.1:40123`, ... in the order of the URLs.
    bound: Vec<SocketAddr>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    /// Starts siemparse with `args` and waits until it listens on every
    /// `--listen` URL (port 0: a free port each).
    fn start(env: &Env, args: &[&str]) -> Self {
        let mut child = env
            .cmd("siemparse")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn siemparse");
        let want = args.iter().filter(|a| **a == "--listen").count();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let bound: Vec<SocketAddr> = stderr
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| l.strip_prefix("siemparse: listening on "))
                .map(|u| u.split_once("://").unwrap().1.parse().unwrap())
                .collect();
            if bound.len() == want {
                return Self {
                    child,
                    bound,
                    stderr,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "siemparse exited with {status}: {:?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "siemparse did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn port(&self, i: usize) -> u16 {
        self.bound[i].port()
    }

    /// SIGTERM; asserts exit 0 and returns stderr.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        // The reader thread sees EOF once the child is gone.
        std::thread::sleep(Duration::from_millis(100));
        let err = self.stderr.lock().unwrap().join("\n");
        assert!(status.success(), "siemparse exited with {status}: {err}");
        err
    }

    /// Peak resident memory (VmHWM) in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

fn table_exists(env: &Env, t: &str) -> bool {
    let sql = match env.kind {
        Kind::Sqlite => format!("SELECT COUNT(*) FROM sqlite_master WHERE name = '{t}'"),
        Kind::Mysql => format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{t}'"
        ),
    };
    env.scalar(&sql) > 0
}

/// Waits until `sql` (a count) reaches `n`.
fn wait_for(env: &Env, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = env.scalar(sql);
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {have} of {n} after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The numbers after `seq ` in the messages of each source, in id order.
fn sequences(
    env: &Env,
    table: &str,
    process: &str,
) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut by_source = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for r in env.rows(&format!(
        "SELECT source, message FROM {table} WHERE process = '{process}' ORDER BY id"
    )) {
        let n = r[1]
            .as_deref()
            .unwrap()
            .strip_prefix("seq ")
            .unwrap()
            .parse()
            .unwrap();
        by_source.entry(r[0].clone().unwrap()).or_default().push(n);
    }
    by_source
}

/// `n` lines `seq 0` .. `seq n-1` in a file, for `logger -f`.
fn seq_file(env: &Env, name: &str, n: u64) -> std::path::PathBuf {
    let p = env.path().join(name);
    let text: String = (0..n).map(|i| format!("seq {i}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn logger(args: &[&str]) -> std::process::Child {
    Command::new("logger")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux logger")
}

fn wait_ok(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An RFC 3164 line for the Rust client.
fn client_line(conn: usize, i: u64) -> String {
    format!(
        "<38>Mar  1 10:{:02}:{:02} client{conn} rustc[{conn}]: seq {i}",
        i / 60 % 60,
        i % 60
    )
}

/// Sends `n` messages on one connection: octet-counted or LF-framed.
fn rust_client(port: u16, conn: usize, n: u64, octet: bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let line = client_line(conn, i);
        if octet {
            write!(out, "{} {line}", line.len()).unwrap();
        } else {
            writeln!(out, "{line}").unwrap();
        }
        if out.len() > 60_000 {
            s.write_all(&out).unwrap();
            out.clear();
        }
    }
    s.write_all(&out).unwrap();
}

/// 100,000 messages: util-linux logger over TCP (LF and octet counting) and
/// UDP, and four Rust clients at once. TCP: every message stored exactly
/// once, in order per connection. UDP: stored + reported drops = sent.
#[test]
fn hundred_thousand_messages_from_logger_and_a_rust_client() {
    for kind in kinds() {
        let env = Env::new(kind);
        let l = Listener::start(
            &env,
            &[
                "-s",
                "net",
                "--listen",
                "tcp://127.0.0.1:0",
                "--listen",
                "udp://127.0.0.1:0",
            ],
        );
        let (tcp, udp) = (l.port(0).to_string(), l.port(1).to_string());
        let (lf_n, octet_n, udp_n, client_n) = (30_000u64, 30_000u64, 20_000u64, 5_000u64);
        let lf_file = seq_file(&env, "lf.txt", lf_n);
        let octet_file = seq_file(&env, "octet.txt", octet_n);
        let udp_file = seq_file(&env, "udp.txt", udp_n);
        let senders = vec![
            logger(&[
                "--tcp",
                "-n",
                "127.0.0.1",
                "-P",
                &tcp,
                "-t",
                "lf",
                "-f",
                lf_file.to_str().unwrap(),
            ]),
            logger(&[
                "--tcp",
                "--octet-count",
                "-n",
                "127.0.0.1",
                "-P",
                &tcp,
                "-t",
                "octet",
                "-f",
                octet_file.to_str().unwrap(),
            ]),
            logger(&[
                "--udp",
                "-n",
                "127.0.0.1",
                "-P",
                &udp,
                "-t",
                "udp",
                "-f",
                udp_file.to_str().unwrap(),
            ]),
        ];
        let port = l.port(0);
        let clients: Vec<_> = (0..4)
            .map(|c| std::thread::spawn(move || rust_client(port, c, client_n, c % 2 == 0)))
            .collect();
        for s in senders {
            wait_ok(s, "logger");
        }
        for c in clients {
            c.join().unwrap();
        }
        let tcp_total = (lf_n + octet_n + 4 * client_n) as i64;
        wait_for(
            &env,
            "SELECT COUNT(*) FROM net WHERE source LIKE 'tcp://%'",
            tcp_total,
        );
        let err = l.stop();

        for (tag, n) in [("lf", lf_n), ("octet", octet_n)] {
            let seqs = sequences(&env, "net", tag);
            assert_eq!(
                seqs.len(),
                1,
                "{kind:?} {tag}: one connection: {:?}",
                seqs.keys()
            );
            let got = seqs.values().next().unwrap();
            assert!(
                got.iter().copied().eq(0..n),
                "{kind:?} {tag}: not every message once, in order"
            );
        }
        let clients = sequences(&env, "net", "rustc");
        assert_eq!(clients.len(), 4, "{kind:?}");
        for (source, got) in &clients {
            assert!(source.starts_with("tcp://127.0.0.1:"), "{source}");
            assert!(got.iter().copied().eq(0..client_n), "{kind:?} {source}");
        }
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM net WHERE source LIKE 'tcp://%'"),
            tcp_total
        );
        // The header's host stays `host`; the sender is in `source`.
        let hosts = env.rows("SELECT DISTINCT host FROM net WHERE process = 'rustc' ORDER BY host");
        assert_eq!(hosts.len(), 4, "{kind:?}");
        assert_eq!(hosts[0][0].as_deref(), Some("client0"));

        let stored_udp = env.scalar("SELECT COUNT(*) FROM net WHERE process = 'udp'") as u64;
        let dropped = reported_drops(&err);
        eprintln!("{kind:?}: UDP stored {stored_udp}, dropped {dropped}");
        assert_eq!(
            stored_udp + dropped,
            udp_n,
            "{kind:?}: stored {stored_udp}, dropped {dropped}: {err}"
        );
        let udp_seqs = sequences(&env, "net", "udp");
        let got = udp_seqs.values().next().unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{kind:?}: a UDP message twice or out of order"
        );
    }
}

/// The kernel drops siemparse reported in its last line for a UDP listener.
fn reported_drops(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.split(" datagrams received, ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Routing by program, by sending network and by default; RFC 3164 times
/// read in the chosen section's zone.
#[test]
fn sections_by_program_network_and_default() {
    let env = Env::new(Kind::Sqlite);
    env.config(
        "[section.auth]\ntimezone = \"+0200\"\n[section.local]\ntimezone = \"UTC\"\n[section.other]\ntimezone = \"UTC\"\n\
         [listen]\nsection = \"other\"\n[listen.program]\nsshd = \"auth\"\n\
         [listen.network]\n\"127.0.0.0/8\" = \"local\"\n\"10.0.0.0/8\" = \"other\"\n",
    );
    let l = Listener::start(&env, &["--year", "2024", "--listen", "tcp://127.0.0.1:0"]);
    let mut s = TcpStream::connect(("127.0.0.1", l.port(0))).unwrap();
    s.write_all(b"Mar  1 10:00:00 h sshd[1]: Accepted publickey for bob from 192.0.2.1 port 2 ssh2\nMar  1 10:00:00 h cron[2]: job\n")
        .unwrap();
    drop(s);
    wait_for(
        &env,
        "SELECT (SELECT COUNT(*) FROM auth) + (SELECT COUNT(*) FROM local)",
        2,
    );
    l.stop();
    let auth = env.rows("SELECT ts, user, source FROM auth");
    assert_eq!(
        auth[0][0].as_deref(),
        Some("1709280000000"),
        "10:00 at +0200"
    );
    assert_eq!(auth[0][1].as_deref(), Some("bob"));
    assert!(
        auth[0][2]
            .as_deref()
            .unwrap()
            .starts_with("tcp://127.0.0.1:")
    );
    let local = env.rows("SELECT ts, process FROM local");
    assert_eq!(local, [[Some("1709287200000".into()), Some("cron".into())]]);
    assert!(
        table_exists(&env, "other"),
        "the default section's table is made at start"
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM other"), 0);
}

/// SIGTERM stores everything received, the unfinished last message of an
/// open connection included, and exits 0.
#[test]
fn sigterm_stores_what_was_received() {
    for kind in kinds() {
        let env = Env::new(kind);
        let l = Listener::start(
            &env,
            &[
                "-s",
                "t",
                "--listen",
                "tcp://127.0.0.1:0",
                "--listen",
                "udp://127.0.0.1:0",
            ],
        );
        let mut s = TcpStream::connect(("127.0.0.1", l.port(0))).unwrap();
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("<13>Mar  1 10:00:00 h app[1]: seq {i}\n"));
        }
        text.push_str("<13>Mar  1 10:00:00 h app[1]: seq 2000");
        s.write_all(text.as_bytes()).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(
            b"<13>Mar  1 10:00:00 h udp[1]: datagram\n",
            ("127.0.0.1", l.port(1)),
        )
        .unwrap();
        // Connections stay open: nothing tells siemparse the input ended.
        std::thread::sleep(Duration::from_millis(300));
        let err = l.stop();
        drop(s);
        let got = sequences(&env, "t", "app");
        let tcp: Vec<&Vec<u64>> = got
            .iter()
            .filter(|(s, _)| s.starts_with("tcp"))
            .map(|(_, v)| v)
            .collect();
        assert!(tcp[0].iter().copied().eq(0..=2000), "{kind:?}: {err}");
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM t WHERE message = 'datagram'"),
            1,
            "{kind:?}"
        );
    }
}

/// A peer sending an endless line and one sending binary garbage cost
/// bounded memory; another connection is served meanwhile; every byte is
/// stored, in rows of at most `max_message` bytes.
#[test]
fn endless_lines_and_garbage_cost_bounded_memory() {
    for kind in kinds() {
        let env = Env::new(kind);
        let l = Listener::start(&env, &["-s", "t", "--listen", "tcp://127.0.0.1:0"]);
        let port = l.port(0);
        let endless = 96usize << 20;
        let hog = std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let chunk = vec![b'x'; 1 << 20];
            for i in 0..endless >> 20 {
                s.write_all(&chunk).unwrap();
                if i == 8 {
                    // Mid-stream: another peer is served while this one goes on.
                    let mut good = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    good.write_all(b"<13>Mar  1 10:00:00 h good[1]: served meanwhile\n")
                        .unwrap();
                }
            }
        });
        let garbage = std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut x = 0x1234_5678u32;
            let bytes: Vec<u8> = (0..4 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            s.write_all(&bytes).unwrap();
        });
        hog.join().unwrap();
        garbage.join().unwrap();
        let max = 65_536i64;
        wait_for(
            &env,
            "SELECT COUNT(*) FROM t WHERE raw LIKE 'xxx%'",
            endless as i64 / max,
        );
        let peak = l.peak_kib();
        l.stop();
        let bytes =
            env.scalar("SELECT CAST(SUM(LENGTH(raw)) AS SIGNED) FROM t WHERE raw LIKE 'xxx%'");
        assert_eq!(
            bytes, endless as i64,
            "{kind:?}: every byte of the endless line"
        );
        assert_eq!(
            env.scalar("SELECT MAX(LENGTH(raw)) FROM t WHERE raw LIKE 'xxx%'"),
            max,
            "{kind:?}"
        );
        eprintln!("{kind:?}: peak RSS {peak} KiB");
        assert!(
            peak < 150 * 1024,
            "{kind:?}: peak RSS {peak} KiB for a {} MiB line",
            endless >> 20
        );
        // Served meanwhile: stored before the endless line's last piece.
        let good = env.scalar("SELECT id FROM t WHERE process = 'good'");
        let last_piece = env.scalar("SELECT MAX(id) FROM t WHERE raw LIKE 'xxx%'");
        assert!(
            good < last_piece,
            "{kind:?}: the other peer waited for the endless line"
        );
        let garbage_rows = env.scalar("SELECT COUNT(*) FROM t WHERE source LIKE 'tcp://%' AND raw NOT LIKE 'xxx%' AND process IS NULL");
        assert!(garbage_rows > 0, "{kind:?}");
    }
}

/// Bad --listen URLs and a port in use are errors naming the flag; exit 2.
#[test]
fn bad_listen_urls_and_busy_ports_exit_2() {
    let env = Env::new(Kind::Sqlite);
    for (url, want) in [
        ("http://0.0.0.0:80", "unknown scheme"),
        ("tcp://0.0.0.0:99999", "invalid port"),
        ("tls://127.0.0.1:0", "tls_cert"),
    ] {
        let (code, _, err) = env.run("siemparse", &["--listen", url], b"");
        assert_eq!(code, 2, "{url}: {err}");
        assert!(err.contains(want) && err.contains("listen"), "{url}: {err}");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", busy.local_addr().unwrap());
    let (code, _, err) = env.run("siemparse", &["--listen", &url], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("--listen {url}")), "{err}");
    let (code, _, err) = env.run(
        "siemparse",
        &["--listen", "tcp://127.0.0.1:0", "--follow", "x"],
        b"",
    );
    assert_eq!(code, 2, "{err}");
}

/// A rustls client of `port` trusting `ca_pem`, with a client certificate
/// if given; the handshake is done (or failed) when it returns.
fn tls_client(
    port: u16,
    ca_pem: &str,
    client: Option<&(String, String)>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    #[allow(deprecated)] // ring, as the server uses
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// RFC 5425 over TLS with a certificate made in the test: a client with a
/// certificate of the configured CA is stored; one without a certificate,
/// or trusting another CA, gets nothing through.
#[test]
fn tls_with_client_certificates() {
    for kind in kinds() {
        let env = Env::new(kind);
        let ca = siemstress_tests::certs::Ca::new("siemstress test CA");
        let (cert, key) = ca.issue("collector", &["localhost", "127.0.0.1"]);
        let client = ca.issue("web01", &["web01.example.org"]);
        let p = |n: &str| env.path().join(n).display().to_string();
        std::fs::write(p("ca.pem"), ca.pem()).unwrap();
        std::fs::write(p("cert.pem"), &cert).unwrap();
        std::fs::write(p("key.pem"), &key).unwrap();
        env.config(&format!(
            "[listen]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
            p("cert.pem"),
            p("key.pem"),
            p("ca.pem")
        ));
        let l = Listener::start(&env, &["-s", "t", "--listen", "tls://127.0.0.1:0"]);
        let port = l.port(0);

        let mut good = tls_client(port, &ca.pem(), Some(&client))
            .expect("handshake with a client certificate");
        let mut out = Vec::new();
        for i in 0..500 {
            let m = format!("<86>1 2025-03-01T10:00:00.{i:03}Z web01 tlsc 7 - - seq {i}");
            write!(out, "{} {m}", m.len()).unwrap();
        }
        good.write_all(&out).unwrap();
        good.conn.send_close_notify();
        good.flush().unwrap();

        // No client certificate: the server refuses it after the handshake.
        if let Ok(mut anon) = tls_client(port, &ca.pem(), None) {
            let _ = anon.write_all(b"<13>1 - h nocert - - - must not be stored\n");
            let _ = anon.flush();
            let mut buf = [0u8; 64];
            assert!(
                !matches!(std::io::Read::read(&mut anon, &mut buf), Ok(n) if n > 0),
                "{kind:?}: the server answered a client without certificate"
            );
        }
        // A client that trusts another CA refuses the collector.
        let other = siemstress_tests::certs::Ca::new("another CA");
        let Err(err) = tls_client(port, &other.pem(), Some(&client)) else {
            panic!("{kind:?}: a client trusting another CA accepted the collector")
        };
        assert!(
            err.contains("UnknownIssuer") || err.contains("certificate"),
            "{err}"
        );

        wait_for(&env, "SELECT COUNT(*) FROM t WHERE process = 'tlsc'", 500);
        drop(good);
        let err = l.stop();
        let got = sequences(&env, "t", "tlsc");
        assert_eq!(got.len(), 1, "{kind:?}");
        let (source, seqs) = got.iter().next().unwrap();
        assert!(source.starts_with("tls://127.0.0.1:"), "{source}");
        assert!(seqs.iter().copied().eq(0..500), "{kind:?}");
        assert_eq!(
            env.scalar("SELECT COUNT(*) FROM t WHERE raw LIKE '%nocert%'"),
            0,
            "{kind:?}"
        );
        assert!(err.contains("TLS handshake failed"), "{kind:?}: {err}");
    }
}
