//! The shipped rule pack for network sources and system health
//! (config/rules/{snort,portscan,cisco,general}.toml) on a generated mixed
//! log: each rule fires where the generator planted its pattern, and nowhere
//! else in the noise around it.

use std::collections::BTreeSet;
use std::path::Path;

use siemstress_tests::{Env, kinds};

/// Epoch seconds of 2024-01-01T00:00:00Z.
const BASE: i64 = 1_704_067_200;

/// A deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A public-looking address from a large pool (a source seldom repeats).
    fn addr(&mut self) -> String {
        let n = self.below(50_000);
        format!(
            "{}.{}.{}.{}",
            [45, 89, 185, 193][(n % 4) as usize],
            n / 256 % 256,
            n % 256,
            1 + n % 250
        )
    }
}

fn stamp(sec: i64) -> String {
    chrono::DateTime::from_timestamp(BASE + sec, 0)
        .unwrap()
        .format("%b %e %H:%M:%S")
        .to_string()
}

/// A syslog line of `host` and `tag` at `sec`.
fn line(sec: i64, host: &str, tag: &str, msg: &str) -> String {
    format!("{} {host} {tag}: {msg}", stamp(sec))
}

fn ufw(sec: i64, src: &str, dst: &str, dpt: u64) -> String {
    line(
        sec,
        "fw1",
        "kernel",
        &format!(
            "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC={src} DST={dst} LEN=44 TOS=0x00 PREC=0x00 TTL=243 ID=1 PROTO=TCP SPT=40000 DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0"
        ),
    )
}

fn snort(sec: i64, sid: u64, prio: u64, src: &str) -> String {
    line(
        sec,
        "ids1",
        "snort[7]",
        &format!(
            "[1:{sid}:2] ET TEST signature {sid} [Classification: Misc Attack] [Priority: {prio}]: {{TCP}} {src}:40000 -> 192.0.2.10:80"
        ),
    )
}

fn ios_deny(sec: i64, src: &str, dst: &str, dpt: u64) -> String {
    line(
        sec,
        "rtr1",
        "52",
        &format!(
            "*{}.000: %SEC-6-IPACCESSLOGP: list 101 denied tcp {src}(4444) -> {dst}({dpt}), 1 packet",
            stamp(sec)
        ),
    )
}

fn asa_deny(sec: i64, src: &str, dst: &str, dpt: u64) -> String {
    line(
        sec,
        "asa1",
        "%ASA-4-106023",
        &format!(
            "Deny tcp src outside:{src}/4444 dst inside:{dst}/{dpt} by access-group \"outside_in\" [0x0, 0x0]"
        ),
    )
}

/// The log, and the (rule, key) of every alert it must give.
fn mixed_log() -> (String, BTreeSet<(String, String)>) {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut lines: Vec<(i64, String)> = Vec::new();
    // Two hours of noise, a line every 0-2 s.
    let wan = ["198.51.100.10", "198.51.100.11", "198.51.100.12"];
    let mut sec = 0;
    while sec < 7200 {
        sec += r.below(3) as i64;
        let l = match r.below(9) {
            0 => ufw(
                sec,
                &r.addr(),
                wan[r.below(3) as usize],
                [23, 445, 3389, 8080, 22][r.below(5) as usize],
            ),
            1 => snort(sec, 2_000_000 + r.below(20), 2 + r.below(2), &r.addr()),
            2 => ios_deny(sec, &r.addr(), wan[r.below(3) as usize], 23),
            3 => asa_deny(sec, &r.addr(), "192.0.2.30", 22),
            4 => line(
                sec,
                "asa1",
                "%ASA-6-302013",
                &format!(
                    "Built inbound TCP connection {} for outside:{}/5000 (x/5000) to inside:192.0.2.31/443 (y/443)",
                    r.below(100_000),
                    r.addr()
                ),
            ),
            5 => line(
                sec,
                "bastion",
                &format!("sshd[{}]", 1000 + r.below(9000)),
                &format!(
                    "Accepted publickey for alice from 10.0.0.12 port {} ssh2: ED25519 SHA256:abc",
                    1024 + r.below(60_000)
                ),
            ),
            6 => line(
                sec,
                "app01",
                "systemd[1]",
                "Started Daily apt download activities.",
            ),
            7 => line(
                sec,
                "web01",
                "kernel",
                "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
            ),
            _ => line(
                sec,
                "db01",
                "postgres[321]",
                "LOG:  checkpoint complete: wrote 12 buffers",
            ),
        };
        lines.push((sec, l));
    }
    // A restart now and then is no loop.
    lines.push((
        100,
        line(
            100,
            "app01",
            "systemd[1]",
            "cron.service: Scheduled restart job, restart counter is at 1.",
        ),
    ));
    lines.push((
        3000,
        line(
            3000,
            "app01",
            "systemd[1]",
            "cron.service: Scheduled restart job, restart counter is at 2.",
        ),
    ));

    let mut want = BTreeSet::new();
    let mut plant = |rule: &str, key: &str| want.insert((rule.to_owned(), key.to_owned()));
    lines.push((1000, snort(1000, 2_100_498, 1, "203.0.113.200")));
    plant("ids-priority-1", "203.0.113.200:2100498");
    for i in 0..6 {
        lines.push((
            2000 + 10 * i,
            snort(2000 + 10 * i, 2_200_000 + i as u64, 2, "198.51.100.201"),
        ));
    }
    plant("ids-many-signatures", "198.51.100.201");
    for p in 0..15 {
        lines.push((
            3000 + 2 * p,
            ufw(3000 + 2 * p, "203.0.113.202", wan[0], 1000 + p as u64),
        ));
    }
    plant("port-scan", "203.0.113.202");
    for h in 0..12 {
        lines.push((
            3500 + 8 * h,
            ios_deny(
                3500 + 8 * h,
                "203.0.113.203",
                &format!("192.0.2.{}", 100 + h),
                445,
            ),
        ));
    }
    plant("host-sweep", "203.0.113.203");
    for i in 0..25 {
        lines.push((
            4000 + i,
            asa_deny(4000 + i, "203.0.113.204", "192.0.2.30", 22),
        ));
    }
    plant("cisco-acl-deny-burst", "203.0.113.204");
    lines.push((
        4500,
        line(
            4500,
            "rtr1",
            "123",
            &format!(
                "*{}.000: %SYS-5-CONFIG_I: Configured from console by admin on vty0 (192.0.2.250)",
                stamp(4500)
            ),
        ),
    ));
    plant("cisco-config-change", "rtr1");
    lines.push((
        5000,
        line(
            5000,
            "db01",
            "postgres[321]",
            "ERROR:  could not extend file \"base/16384/2619\": No space left on device",
        ),
    ));
    plant("disk-full", "db01:postgres");
    lines.push((5500, line(5500, "app01", "kernel", "Out of memory: Killed process 4242 (java) total-vm:8123456kB, anon-rss:7000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:14000kB oom_score_adj:0")));
    plant("oom-killer", "app01:4242");
    lines.push((
        6000,
        line(
            6000,
            "web01",
            "kernel",
            "php-fpm[777]: segfault at 0 ip 00007f2a sp 00007ffd error 4 in libc.so.6[7f2a+1b0000]",
        ),
    ));
    plant("segfault", "web01:php-fpm:777");
    for i in 0..6 {
        lines.push((
            6500 + 50 * i,
            line(
                6500 + 50 * i,
                "app01",
                "systemd[1]",
                &format!(
                    "myapp.service: Scheduled restart job, restart counter is at {}.",
                    i + 1
                ),
            ),
        ));
    }
    plant("service-restart-loop", "app01:myapp.service");

    lines.sort_by_key(|(s, _)| *s);
    let mut text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    text.push_str("");
    (text, want)
}

#[test]
fn network_and_health_rules_fire_where_planted_and_nowhere_else() {
    let (log, want) = mixed_log();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules");
    for kind in kinds() {
        let env = Env::new(kind);
        env.config(&format!(
            "[section.net]\ntimezone = \"UTC\"\n[rules]\npaths = [\"{}/*.toml\"]\n\
             [actions.mail]\nsmtp = \"smtp://127.0.0.1:1\"\nfrom = \"siem@example.org\"\nto = [\"sec@example.org\"]\n",
            rules.display()
        ));
        env.ingest(&["-s", "net", "--year", "2024"], log.as_bytes());
        let (code, out, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = env.run(
            "siemquery",
            &["--alerts", "--last", "1000w", "--format", "ndjson"],
            b"",
        );
        assert_eq!(code, 0, "{err}");
        let got: BTreeSet<(String, String)> = out
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["rule"].as_str().unwrap().to_owned(),
                    v["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want, "{kind:?}");
    }
}
