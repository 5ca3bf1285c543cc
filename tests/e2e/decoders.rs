//! Field extraction by decoders, through the real binaries: forged user
//! names, the message families of the built-in set, addresses and
//! protocols in one spelling, user decoder files, `--check-decoders` and
//! `--explain`.

use siemstress_tests::{Env, kinds};

/// `(user, source_host, source_port)` of every row of `t`, in order.
type Who = (Option<String>, Option<String>, Option<String>);

fn ingest_lines(env: &Env, lines: &[&str]) {
    let mut input = lines.join("\n");
    input.push('\n');
    env.ingest(
        &["-s", "t", "-z", "UTC", "--year", "2024"],
        input.as_bytes(),
    );
}

fn who(env: &Env) -> Vec<Who> {
    env.rows("SELECT user, source_host, source_port FROM t ORDER BY id")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

fn w(user: Option<&str>, host: Option<&str>, port: Option<u16>) -> Who {
    (
        user.map(str::to_owned),
        host.map(str::to_owned),
        port.map(|p| p.to_string()),
    )
}

/// An attacker who writes an address (or `port`, `[ip]`, `rhost=`) into a
/// user name gets it stored as part of the name, never as the source.
#[test]
fn forged_user_names_never_steer_the_address() {
    let cases: &[(&str, Who)] = &[
        (
            "Jan  1 00:00:01 h sshd[1]: Failed password for invalid user from 10.9.9.9 from 203.0.113.5 port 4711 ssh2",
            w(Some("from 10.9.9.9"), Some("203.0.113.5"), Some(4711)),
        ),
        (
            "Jan  1 00:00:02 h sshd[1]: Failed password for invalid user a port 22 from 10.9.9.9 from 203.0.113.6 port 4712 ssh2",
            w(
                Some("a port 22 from 10.9.9.9"),
                Some("203.0.113.6"),
                Some(4712),
            ),
        ),
        (
            "Jan  1 00:00:03 h sshd[1]: Failed password for invalid user [10.9.9.9] rhost=10.9.9.9 from 2001:DB8::7 port 4713 ssh2",
            w(
                Some("[10.9.9.9] rhost=10.9.9.9"),
                Some("2001:db8::7"),
                Some(4713),
            ),
        ),
        (
            "Jan  1 00:00:04 h sshd[1]: Invalid user x from 10.9.9.9 port 1 from 203.0.113.8 port 4714",
            w(
                Some("x from 10.9.9.9 port 1"),
                Some("203.0.113.8"),
                Some(4714),
            ),
        ),
        (
            "Jan  1 00:00:05 h sshd[1]: Connection closed by invalid user x 10.9.9.9 port 1 203.0.113.9 port 4715 [preauth]",
            w(Some("x 10.9.9.9 port 1"), Some("203.0.113.9"), Some(4715)),
        ),
        (
            "Jan  1 00:00:06 h sshd[1]: Disconnecting invalid user a 10.9.9.9 port 1: b 203.0.113.10 port 4716: Too many authentication failures [preauth]",
            w(
                Some("a 10.9.9.9 port 1: b"),
                Some("203.0.113.10"),
                Some(4716),
            ),
        ),
        // PAM: a second rhost= in the user name: no fields rather than a forged one.
        (
            "Jan  1 00:00:07 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.11  user=x rhost=10.9.9.9",
            w(None, None, None),
        ),
        (
            "Jan  1 00:00:08 h dropbear[1]: Bad password attempt for 'x' from 10.9.9.9:1' from 203.0.113.12:4718",
            w(Some("x' from 10.9.9.9:1"), Some("203.0.113.12"), Some(4718)),
        ),
        (
            "Jan  1 00:00:09 h vsftpd[1]: [x] FAIL LOGIN: Client \"10.9.9.9\"] FAIL LOGIN: Client \"::ffff:203.0.113.13\"",
            w(
                Some("x] FAIL LOGIN: Client \"10.9.9.9\""),
                Some("203.0.113.13"),
                None,
            ),
        ),
        (
            "Jan  1 00:00:10 h dovecot[1]: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=10.9.9.9, lip=1.1.1.1, TLS>, method=PLAIN, rip=203.0.113.14, lip=192.0.2.1, TLS, session=<a>",
            w(
                Some("x>, method=PLAIN, rip=10.9.9.9, lip=1.1.1.1, TLS"),
                Some("203.0.113.14"),
                None,
            ),
        ),
        (
            "Jan  1 00:00:11 h postfix/smtpd[1]: 4F3A21C0A2: client=unknown[203.0.113.15], sasl_method=PLAIN, sasl_username=x client=unknown[10.9.9.9]",
            w(
                Some("x client=unknown[10.9.9.9]"),
                Some("203.0.113.15"),
                None,
            ),
        ),
        // Odd spacing: sshd's own double space before a name that starts with one.
        (
            "Jan  1 00:00:12 h sshd[1]: Failed password for invalid user  0101 from 203.0.113.16 port 4719 ssh2",
            w(Some("0101"), Some("203.0.113.16"), Some(4719)),
        ),
        (
            "Jan  1 00:00:13 h sshd[1]: message repeated 3 times: [ Failed password for root from 2001:db8::17 port 4720 ssh2]",
            w(Some("root"), Some("2001:db8::17"), Some(4720)),
        ),
    ];
    for kind in kinds() {
        let env = Env::new(kind);
        let lines: Vec<&str> = cases.iter().map(|c| c.0).collect();
        ingest_lines(&env, &lines);
        let got = who(&env);
        for (i, (line, want)) in cases.iter().enumerate() {
            assert_eq!(&got[i], want, "{kind:?}: {line}");
        }
    }
}

/// Issue 17 item 1: the user is everything sshd wrote between its fixed
/// words, kept exact; `--user root` does not count `root(x)`.
#[test]
fn user_is_everything_between_the_fixed_words() {
    for kind in kinds() {
        let env = Env::new(kind);
        ingest_lines(
            &env,
            &[
                "Jan  1 00:00:01 h sshd[1]: Failed password for invalid user root(x) from 192.0.2.70 port 4000 ssh2",
                "Jan  1 00:00:02 h sshd[1]: Failed password for invalid user admin (x) from 192.0.2.70 port 4001 ssh2",
                "Jan  1 00:00:03 h sshd[1]: Invalid user admin (x) from 192.0.2.70 port 4002",
            ],
        );
        let users: Vec<Option<String>> = who(&env).into_iter().map(|r| r.0).collect();
        assert_eq!(
            users,
            [
                Some("root(x)".into()),
                Some("admin (x)".into()),
                Some("admin (x)".into())
            ],
            "{kind:?}"
        );
        let (code, out, err) = env.run(
            "siemquery",
            &[
                "-s",
                "t",
                "--range",
                "20240101000000-20240102000000",
                "--user",
                "root",
                "--count",
            ],
            b"",
        );
        assert_eq!((code, out.trim()), (0, "0"), "{kind:?}: {err}");
    }
}

/// Issue 17 item 10: addresses are stored in the canonical text of `IpAddr`
/// (IPv4-mapped ones as IPv4) and `--shost`/`--dhost`/`--protocol` are
/// written the same way, in siemquery and in siemtrigger's `match`.
#[test]
fn addresses_and_protocols_have_one_spelling() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(
            "[section.t]\ntimezone = \"UTC\"\n\
             [[rule]]\nname = \"v6\"\ntype = \"single\"\ntable = \"t\"\n\
             match = { shost = \"2001:DB8:0::AB\", protocol = \"TCP\" }\nkey = \"{source_host}\"\n\
             message = \"{source_host}\"\n",
        );
        ingest_lines(
            &env,
            &[
                "Jan  1 00:00:01 h sshd[1]: Accepted password for bob from 2001:DB8::AB port 22 ssh2",
                "Jan  1 00:00:02 h vsftpd[1]: [bob] OK LOGIN: Client \"::FFFF:192.0.2.7\"",
                "Jan  1 00:00:03 h kernel: [UFW BLOCK] IN=eth0 OUT= SRC=2001:0DB8:0000:0000:0000:0000:0000:00AB DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=60 TC=0 HOPLIMIT=50 FLOWLBL=0 PROTO=TCP SPT=5000 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0",
            ],
        );
        let rows = env.rows("SELECT source_host, dest_host, protocol FROM t ORDER BY id");
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows,
            [
                vec![s("2001:db8::ab"), None, None],
                vec![s("192.0.2.7"), None, None],
                vec![s("2001:db8::ab"), s("2001:db8::1"), s("tcp")],
            ],
            "{kind:?}"
        );
        let count = |args: &[&str]| {
            let mut a = vec![
                "-s",
                "t",
                "--range",
                "20240101000000-20240102000000",
                "--count",
            ];
            a.extend_from_slice(args);
            let (code, out, err) = env.run("siemquery", &a, b"");
            assert_eq!(code, 0, "{args:?}: {err}");
            out.trim().parse::<u32>().unwrap()
        };
        assert_eq!(count(&["--shost", "2001:DB8::AB"]), 2, "{kind:?}");
        assert_eq!(count(&["--shost", "2001:db8:0:0::ab"]), 2, "{kind:?}");
        assert_eq!(count(&["--shost", "::ffff:192.0.2.7"]), 1, "{kind:?}");
        assert_eq!(count(&["--dhost", "2001:DB8::1"]), 1, "{kind:?}");
        assert_eq!(count(&["--protocol", "TCP"]), 1, "{kind:?}");
        assert_eq!(count(&["--rprotocol", "TCP"]), 2, "{kind:?}");
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        let alerts = env.rows("SELECT rule, message FROM alerts");
        assert_eq!(alerts, [vec![s("v6"), s("2001:db8::ab")]], "{kind:?}");
    }
}

/// The network sources: netfilter (IPv6 printed in full), Snort and
/// Suricata (syslog and fast.log), Cisco IOS and ASA, including a Cisco
/// line sent straight from the device (no syslog header).
#[test]
fn network_sources_are_extracted() {
    let input = [
        "Jan  1 00:00:01 fw kernel: [12345.678901] filter_IN_public_REJECT: IN=ens3 OUT= MAC=00:00 SRC=2001:0db8:0000:0000:0000:0000:0000:0009 DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=57 FLOWLBL=0 PROTO=UDP SPT=40000 DPT=161 LEN=40",
        "Jan  1 00:00:02 ids snort[7]: [1:2003:8] SQL Worm propagation attempt [Classification: Misc Attack] [Priority: 2]: {UDP} 203.0.113.80:1234 -> 192.0.2.10:1434",
        "01/01/24-00:00:03.667372  [**] [1:2009187:4] ET WEB_CLIENT test [**] [Classification: Web Application Attack] [Priority: 1] {TCP} 203.0.113.81:80 -> 192.0.2.11:56068",
        "Jan  1 00:00:04 192.0.2.254 52: *Jan  1 00:00:04.123: %SEC-6-IPACCESSLOGP: list 101 denied tcp 203.0.113.90(4444) -> 192.0.2.20(23), 1 packet",
        "<189>53: *Jan  1 00:00:05.123: %SEC-6-IPACCESSLOGP: list 101 denied tcp 203.0.113.91(4445) -> 192.0.2.20(22), 2 packets",
        "Jan  1 00:00:06 asa1 %ASA-4-106023: Deny tcp src outside:203.0.113.95/4444 dst inside:192.0.2.30/22 by access-group \"outside_in\" [0x0, 0x0]",
        "Jan  1 00:00:07 asa1 %ASA-6-302013: Built outbound TCP connection 4712 for outside:198.51.100.97/443 (198.51.100.97/443) to inside:10.0.0.5/52000 (203.0.113.1/52000)",
    ]
    .join("\n");
    type Row = [Option<&'static str>; 6];
    let want: [Row; 7] = [
        [
            Some("2001:db8::9"),
            Some("40000"),
            Some("2001:db8::1"),
            Some("161"),
            Some("udp"),
            None,
        ],
        [
            Some("203.0.113.80"),
            Some("1234"),
            Some("192.0.2.10"),
            Some("1434"),
            Some("udp"),
            Some("2003"),
        ],
        [
            Some("203.0.113.81"),
            Some("80"),
            Some("192.0.2.11"),
            Some("56068"),
            Some("tcp"),
            Some("2009187"),
        ],
        [
            Some("203.0.113.90"),
            Some("4444"),
            Some("192.0.2.20"),
            Some("23"),
            Some("tcp"),
            None,
        ],
        [
            Some("203.0.113.91"),
            Some("4445"),
            Some("192.0.2.20"),
            Some("22"),
            Some("tcp"),
            None,
        ],
        [
            Some("203.0.113.95"),
            Some("4444"),
            Some("192.0.2.30"),
            Some("22"),
            Some("tcp"),
            None,
        ],
        [
            Some("10.0.0.5"),
            Some("52000"),
            Some("198.51.100.97"),
            Some("443"),
            Some("tcp"),
            None,
        ],
    ];
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(
            &["-s", "t", "-z", "UTC", "--year", "2024"],
            format!("{input}\n").as_bytes(),
        );
        let rows = env.rows(
            "SELECT source_host, source_port, dest_host, dest_port, protocol, extra FROM t ORDER BY id",
        );
        assert_eq!(rows.len(), want.len());
        for (i, (row, want)) in rows.iter().zip(&want).enumerate() {
            let got: Vec<Option<&str>> = row[..5].iter().map(|c| c.as_deref()).collect();
            assert_eq!(got, want[..5], "{kind:?} line {}", i + 1);
            let extra: serde_json::Value =
                serde_json::from_str(row[5].as_deref().unwrap_or("{}")).unwrap();
            assert_eq!(extra["sid"].as_str(), want[5], "{kind:?} line {}", i + 1);
        }
    }
}

/// A line no decoder knows is stored whole, with no fields.
#[test]
fn unknown_shapes_are_stored_whole() {
    for kind in kinds() {
        let env = Env::new(kind);
        let line = "Jan  1 00:00:01 h myapp[9]: login failed for bob from 203.0.113.5 port 22";
        ingest_lines(&env, &[line]);
        let rows = env.rows("SELECT message, raw, parsed, user, source_host FROM t");
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows,
            [vec![
                s("login failed for bob from 203.0.113.5 port 22"),
                s(line),
                s("1"),
                None,
                None
            ]],
            "{kind:?}"
        );
    }
}

const MYAPP: &str = r#"
[[decoder]]
name = "myapp-login"
programs = ["myapp"]
prefilter = "login failed for "
regex = '^login failed for (?P<user>.*) from (?P<source_host>\S+) port (?P<source_port>\d+)$'
[[decoder.example]]
message = "login failed for bob from 203.0.113.5 port 22"
fields = { user = "bob", source_host = "203.0.113.5", source_port = 22 }
[[decoder.example]]
forged = true
message = "login failed for a from 10.9.9.9 port 1 from 203.0.113.6 port 2"
fields = { user = "a from 10.9.9.9 port 1", source_host = "203.0.113.6", source_port = 2 }

# Same name as a built-in: replaces it.
[[decoder]]
name = "sshd-root-refused"
programs = ["sshd"]
prefilter = "ROOT LOGIN REFUSED FROM "
regex = '^ROOT LOGIN REFUSED FROM (?P<source_host>\S+) port (?P<source_port>\d+)$'
set = { user = "root", refused = "yes" }
[[decoder.example]]
message = "ROOT LOGIN REFUSED FROM 192.0.2.1 port 5"
fields = { user = "root", source_host = "192.0.2.1", source_port = 5, refused = "yes" }
"#;

/// A decoder file named in `[decoders] paths` is used by the next run, no
/// rebuild; one with the name of a built-in replaces it.
#[test]
fn user_decoder_files_are_used_and_override() {
    for kind in kinds() {
        let env = Env::new(kind);
        std::fs::create_dir(env.path().join("decoders.d")).unwrap();
        std::fs::write(env.path().join("decoders.d/myapp.toml"), MYAPP).unwrap();
        env.config("[decoders]\npaths = [\"decoders.d/*.toml\"]\n");
        ingest_lines(
            &env,
            &[
                "Jan  1 00:00:01 h myapp[9]: login failed for bob from 203.0.113.5 port 22",
                "Jan  1 00:00:02 h sshd[9]: ROOT LOGIN REFUSED FROM 192.0.2.1 port 5",
                "Jan  1 00:00:03 h sshd[9]: Invalid user eve from 192.0.2.2 port 6",
            ],
        );
        assert_eq!(
            who(&env),
            [
                w(Some("bob"), Some("203.0.113.5"), Some(22)),
                w(Some("root"), Some("192.0.2.1"), Some(5)),
                w(Some("eve"), Some("192.0.2.2"), Some(6)),
            ],
            "{kind:?}"
        );
        let extra = env.rows("SELECT extra FROM t WHERE id = 2");
        assert!(
            extra[0][0]
                .as_deref()
                .unwrap()
                .contains(r#""refused":"yes""#),
            "{extra:?}"
        );
    }
}

/// A broken decoder file stops siemparse before it reads a line, with the
/// file, the decoder and the key in the message.
#[test]
fn a_bad_decoder_file_names_file_decoder_and_key() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let path = env.path().join("bad.toml");
    env.config("[decoders]\npaths = [\"bad.toml\"]\n");
    for (body, key) in [
        (
            "[[decoder]]\nname = \"broken\"\nprograms = [\"x\"]\nregex = '(?P<user>a('\n\
             [[decoder.example]]\nmessage = \"a\"\n",
            "key `regex`",
        ),
        (
            "[[decoder]]\nname = \"noanchor\"\nprograms = [\"x\"]\n\
             regex = 'u (?P<user>.*) from (?P<source_host>\\S+)'\n\
             [[decoder.example]]\nmessage = \"a\"\n",
            "key `regex`",
        ),
        (
            "[[decoder]]\nname = \"unforged\"\nprograms = [\"x\"]\n\
             regex = '^u (?P<user>\\S+)$'\n[[decoder.example]]\nmessage = \"u a\"\n",
            "key `example`",
        ),
        (
            "[[decoder]]\nname = \"typo\"\nprogramz = [\"x\"]\nregex = 'a'\n",
            "programz",
        ),
        // siemparse's own keys of extra (the log's text would replace how
        // the time was read).
        (
            "[[decoder]]\nname = \"owntz\"\nprograms = [\"x\"]\nregex = '^z (?P<tz>\\S+)$'\n\
             [[decoder.example]]\nmessage = \"z a\"\nfields = { tz = \"a\" }\n",
            "\"tz\" is a key of extra that siemparse writes itself",
        ),
        (
            "[[decoder]]\nname = \"ownsd\"\nprograms = [\"x\"]\nregex = '^z (?P<user>\\S+)$'\n\
             set = { sd = \"forged\" }\n[[decoder.example]]\nmessage = \"z a\"\n",
            "\"sd\" is a key of extra",
        ),
    ] {
        std::fs::write(&path, body).unwrap();
        for args in [&["-s", "t"][..], &["--check-decoders"][..]] {
            let (code, _, err) = env.run("siemparse", args, b"x\n");
            assert_eq!(code, 2, "{body}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(key), "{key}: {err}");
            if !body.contains("programz") {
                let name = body.split('"').nth(1).unwrap();
                assert!(err.contains(&format!("decoder {name:?}")), "{err}");
            }
        }
    }
    assert!(!env.path().join("test.db").exists());
}

/// `--check-decoders` runs every example: the built-ins pass, and a user
/// decoder whose example is wrong fails it with file, decoder and example.
#[test]
fn check_decoders_runs_every_example() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let (code, out, err) = env.run("siemparse", &["--check-decoders"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("all pass"), "{out}");
    std::fs::write(
        env.path().join("mine.toml"),
        MYAPP.replace("source_port = 22 }", "source_port = 23 }"),
    )
    .unwrap();
    env.config("[decoders]\npaths = [\"mine.toml\"]\n");
    let (code, out, err) = env.run("siemparse", &["--check-decoders"], b"");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("1 failed"), "{out}");
    let file = env.path().join("mine.toml").display().to_string();
    assert!(
        err.contains(&file) && err.contains("decoder \"myapp-login\": example[0]"),
        "{err}"
    );
    assert!(err.contains(r#"source_port = "22""#), "{err}");
}

/// `--explain` shows the header parse, the decoder and every field, for a
/// line given as an argument or lines on stdin, and stores nothing.
#[test]
fn explain_shows_parse_decoder_and_fields() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let (code, out, err) = env.run(
        "siemparse",
        &[
            "-z",
            "UTC",
            "--explain",
            "Jan  1 00:00:01 web1 sshd[42]: Failed password for invalid user x from 10.9.9.9 from 203.0.113.5 port 4711 ssh2",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "host           web1",
        "process        sshd",
        "pid            42",
        "decoder        sshd-auth-result (builtin:sshd.toml)",
        "user         x from 10.9.9.9",
        "source_host  203.0.113.5",
        "source_port  4711",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    let (code, out, _) = env.run(
        "siemparse",
        &["--explain"],
        "no header \x1b[2J here \u{202e}x\u{2028}y\nJan  1 00:00:01 h kernel: hello\n".as_bytes(),
    );
    assert_eq!(code, 0);
    assert!(out.contains("not parsed: stored whole"), "{out}");
    // As siemquery shows stored text (common::display::escape): controls,
    // bidi overrides and line separators escaped.
    assert!(out.contains("\\x1b[2J here \\u{202e}x\\u{2028}y"), "{out}");
    assert!(!out.contains(['\u{1b}', '\u{202e}', '\u{2028}']), "{out}");
    assert_eq!(out.matches("none matched").count(), 2, "{out}");
    assert!(!env.path().join("test.db").exists());
}

/// `format = "json"` with the journald and eve mappings and one of the
/// section's own, and `format = "regex"`: columns, `extra`, decoders for
/// what the format leaves out, and lines of another shape stored whole.
#[test]
fn json_and_regex_sections() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(
            "[section.j]\nformat = \"json\"\nmapping = \"journald\"\ntimezone = \"UTC\"\n\
             [section.e]\nformat = \"json\"\nmapping = \"eve\"\n\
             [section.c]\nformat = \"json\"\ntimezone = \"Europe/Berlin\"\n\
             mapping = { ts = \"time\", host = \"host.name\", process = \"app\", message = [\"msg\", \"text\"], user = \"who\", level = \"lvl\" }\n\
             [section.r]\nformat = \"regex\"\ntimezone = \"UTC\"\n\
             pattern = '^(?P<ts>\\S+ \\S+) (?P<host>\\S+) (?P<process>[^:]+): client (?P<source_host>\\S+) (?P<message>.*)$'\n",
        );
        let journald = concat!(
            r#"{"__REALTIME_TIMESTAMP":"1704067201000000","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd","_PID":"42","PRIORITY":"6","SYSLOG_FACILITY":"4","MESSAGE":"Failed password for invalid user x from 10.9.9.9 from 2001:DB8::5 port 22 ssh2","_SYSTEMD_UNIT":"ssh.service"}"#,
            "\n",
            "not json at all\n",
            r#"{"MESSAGE":[104,105,255]}"#,
            "\n"
        );
        env.ingest(&["-s", "j"], journald.as_bytes());
        let rows = env.rows(
            "SELECT ts, host, process, pid, facility, severity, user, source_host, source_port, message, parsed, extra FROM j ORDER BY id",
        );
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            rows[0][..11],
            [
                s("1704067201000"),
                s("web1"),
                s("sshd"),
                s("42"),
                s("auth"),
                s("info"),
                s("x from 10.9.9.9"),
                s("2001:db8::5"),
                s("22"),
                s("Failed password for invalid user x from 10.9.9.9 from 2001:DB8::5 port 22 ssh2"),
                s("1"),
            ],
            "{kind:?}"
        );
        assert!(
            rows[0][11]
                .as_deref()
                .unwrap()
                .contains(r#""unit":"ssh.service""#)
        );
        assert_eq!(
            (rows[1][9].clone(), rows[1][10].clone()),
            (s("not json at all"), s("0"))
        );
        assert_eq!(rows[2][9], s("hi\u{fffd}"), "{kind:?}");

        let eve = r#"{"timestamp":"2024-01-01T00:00:03.667372+0000","flow_id":1,"in_iface":"eth0","event_type":"alert","src_ip":"203.0.113.80","src_port":1234,"dest_ip":"192.0.2.10","dest_port":1434,"proto":"UDP","alert":{"action":"allowed","gid":1,"signature_id":2003,"rev":8,"signature":"SQL Worm propagation attempt","category":"Misc Attack","severity":2}}"#;
        env.ingest(&["-s", "e"], format!("{eve}\n").as_bytes());
        let rows = env.rows(
            "SELECT ts, process, source_host, source_port, dest_host, dest_port, protocol, message, extra FROM e",
        );
        assert_eq!(
            rows[0][..8],
            [
                s("1704067203667"),
                s("suricata"),
                s("203.0.113.80"),
                s("1234"),
                s("192.0.2.10"),
                s("1434"),
                s("udp"),
                s("SQL Worm propagation attempt"),
            ],
            "{kind:?}"
        );
        let extra: serde_json::Value =
            serde_json::from_str(rows[0][8].as_deref().unwrap()).unwrap();
        assert_eq!(
            (extra["sid"].as_str(), extra["priority"].as_str()),
            (Some("2003"), Some("2"))
        );

        let custom = r#"{"time":"2024-07-01 12:00:00","host":{"name":"app1"},"app":"shop","text":"login ok","who":"  carol ","lvl":"warn"}"#;
        env.ingest(&["-s", "c"], format!("{custom}\n").as_bytes());
        let rows = env.rows("SELECT ts, host, process, message, user, extra FROM c");
        assert_eq!(
            rows[0][..5],
            [
                s("1719828000000"),
                s("app1"),
                s("shop"),
                s("login ok"),
                s("carol")
            ],
            "{kind:?}: 12:00 in Berlin (CEST) is 10:00 UTC"
        );
        assert!(rows[0][5].as_deref().unwrap().contains(r#""level":"warn""#));

        let lines = "2024-01-01 00:00:05 gw proxy: client 2001:DB8::9 GET /\nsomething else\n";
        env.ingest(&["-s", "r"], lines.as_bytes());
        let rows =
            env.rows("SELECT ts, host, process, source_host, message, parsed FROM r ORDER BY id");
        assert_eq!(
            rows,
            [
                vec![
                    s("1704067205000"),
                    s("gw"),
                    s("proxy"),
                    s("2001:db8::9"),
                    s("GET /"),
                    s("1")
                ],
                vec![
                    rows[1][0].clone(),
                    None,
                    None,
                    None,
                    s("something else"),
                    s("0")
                ],
            ],
            "{kind:?}"
        );
    }
}

/// Config errors of the formats name the key.
#[test]
fn format_config_errors_name_the_key() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    for (cfg, key) in [
        ("[section.r]\nformat = \"regex\"\n", "section.r.pattern"),
        (
            "[section.r]\nformat = \"regex\"\npattern = '(?P<ts>'\n",
            "section.r.pattern",
        ),
        (
            "[section.j]\nformat = \"json\"\nmapping = \"syslog-ng\"\n",
            "section.j.mapping",
        ),
        (
            "[section.j]\nformat = \"json\"\nmapping = { raw = \"x\" }\n",
            "section.j.mapping.raw",
        ),
        ("[section.s]\npattern = 'x'\n", "section.s.pattern"),
    ] {
        env.config(cfg);
        let (code, _, err) = env.run("siemparse", &["-s", "x"], b"");
        assert_eq!(code, 2, "{cfg}");
        assert!(err.contains(key), "{key}: {err}");
    }
}
