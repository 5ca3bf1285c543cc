//! The loghub logs with loghub's own structured CSV as ground truth.

use siemstress_tests::{Env, kinds, loghub};

/// (month, day, time, host, process, pid, message) of each CSV row.
type Truth = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
);

fn truth(csv_name: &str, cols: [usize; 7]) -> Vec<Truth> {
    let mut r = csv::Reader::from_path(loghub(csv_name)).expect("csv");
    r.records()
        .map(|rec| {
            let rec = rec.expect("csv row");
            let g = |i: usize| rec[cols[i]].to_owned();
            let pid = Some(g(5)).filter(|p| !p.is_empty());
            (g(0), g(1), g(2), g(3), g(4), pid, g(6))
        })
        .collect()
}

/// Ingests `log` with a fixed year and UTC, and compares every row.
fn check(log: &str, csv_name: &str, cols: [usize; 7], disagreements: &[(usize, &str)]) {
    let expected = truth(csv_name, cols);
    assert_eq!(expected.len(), 2000);
    let input = std::fs::read(loghub(log)).expect("log");
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "t", "-z", "UTC", "--year", "2005"], &input);
        let rows =
            env.rows("SELECT id, ts, host, process, pid, message, parsed FROM t ORDER BY id");
        assert_eq!(rows.len(), 2000, "{kind:?}");
        for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
            let line = i + 1;
            if let Some((_, why)) = disagreements.iter().find(|(l, _)| *l == line) {
                eprintln!("line {line}: differs from loghub on purpose: {why}");
                continue;
            }
            let ts: i64 = row[1].as_deref().unwrap().parse().unwrap();
            let t = chrono::DateTime::from_timestamp_millis(ts).unwrap();
            let got_date = (
                t.format("%b").to_string(),
                t.format("%-d").to_string(),
                t.format("%H:%M:%S").to_string(),
            );
            assert_eq!(
                got_date,
                (want.0.clone(), want.1.clone(), want.2.clone()),
                "{kind:?} {log} line {line} date"
            );
            assert_eq!(
                row[2].as_deref(),
                Some(want.3.as_str()),
                "{kind:?} {log} line {line} host"
            );
            assert_eq!(
                row[3].as_deref(),
                Some(want.4.as_str()),
                "{kind:?} {log} line {line} process"
            );
            assert_eq!(row[4], want.5, "{kind:?} {log} line {line} pid");
            assert_eq!(
                row[5].as_deref(),
                Some(want.6.as_str()),
                "{kind:?} {log} line {line} message"
            );
            assert_eq!(
                row[6].as_deref(),
                Some("1"),
                "{kind:?} {log} line {line} parsed"
            );
        }
    }
}

#[test]
fn linux_2k_matches_loghub() {
    // LineId,Month,Date,Time,Level(host),Component,PID,Content
    // loghub reads "combo syslogd 1.4.1: restart." as process "syslogd 1.4.1" and
    // message "restart.". We follow RFC3164: the tag ends at the first character
    // that is not part of a program name, so process is "syslogd" (what
    // `--process syslogd` finds) and the message keeps "1.4.1: restart.".
    let syslogd = "RFC3164 tag: process syslogd, message \"1.4.1: restart.\"";
    let lines = [146, 374, 714, 1086, 1364, 1754, 1908].map(|l| (l, syslogd));
    check(
        "Linux_2k.log",
        "Linux_2k.log_structured.csv",
        [1, 2, 3, 4, 5, 6, 7],
        &lines,
    );
}

#[test]
fn openssh_2k_matches_loghub() {
    // LineId,Date(month),Day,Time,Component(host),Pid,Content; the process is always sshd.
    let expected = truth("OpenSSH_2k.log_structured.csv", [1, 2, 3, 4, 4, 5, 6]);
    assert!(expected.iter().all(|t| t.3 == "LabSZ"));
    let input = std::fs::read(loghub("OpenSSH_2k.log")).expect("log");
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "ssh", "-z", "UTC", "--year", "2005"], &input);
        let rows = env.rows("SELECT host, process, pid, message FROM ssh ORDER BY id");
        assert_eq!(rows.len(), 2000);
        for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
            assert_eq!(row[0].as_deref(), Some("LabSZ"), "line {}", i + 1);
            assert_eq!(row[1].as_deref(), Some("sshd"), "line {}", i + 1);
            assert_eq!(row[2], want.5, "line {}", i + 1);
            assert_eq!(row[3].as_deref(), Some(want.6.as_str()), "line {}", i + 1);
        }
    }
}

/// Every OpenSSH line that names a client address has it in `source_host`,
/// and the user where the line names one.
#[test]
fn openssh_addresses_and_users() {
    let input = std::fs::read(loghub("OpenSSH_2k.log")).expect("log");
    let ip = r"(\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]+)(?:[\s\]:]|$)";
    let addr_re = regex_lite(&format!(r"(?:from {ip}|rhost={ip}|\[{ip}\])"));
    // sshd prints a user name verbatim up to " from " (it may hold spaces; we trim).
    let user_from_re = regex_lite(
        r"(?:Failed \S+ for (?:invalid user )?|Accepted \S+ for |[Ii]nvalid user )(.*?) from ",
    );
    let user_re = regex_lite(
        r"(?:user=|session (?:opened|closed) for user |authenticating user |invalid user )([^\s(]+)",
    );
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "ssh", "-z", "UTC"], &input);
        let rows = env.rows("SELECT message, source_host, user FROM ssh ORDER BY id");
        let (mut with_addr, mut with_user) = (0, 0);
        for row in &rows {
            let msg = row[0].as_deref().unwrap();
            if let Some(c) = addr_re.captures(msg) {
                let want = c.iter().skip(1).flatten().next().unwrap().as_str();
                assert_eq!(
                    row[1].as_deref(),
                    Some(want),
                    "{kind:?} source_host of: {msg}"
                );
                with_addr += 1;
            }
            let named = user_from_re.captures(msg).or_else(|| user_re.captures(msg));
            if let Some(c) = named {
                let want = c[1].trim();
                let want = (!want.is_empty() && want != "unknown").then_some(want);
                assert_eq!(row[2].as_deref(), want, "{kind:?} user of: {msg}");
                with_user += 1;
            }
        }
        // The checks above must have covered most of the file.
        assert!(with_addr > 1500, "{with_addr}");
        assert!(with_user > 900, "{with_user}");
    }
}

fn regex_lite(re: &str) -> regex::Regex {
    regex::Regex::new(re).expect("regex")
}
