//! Regression tests of defects found by trying the tools as an admin
//! would (issue 17), for the items fixed in the data layer, config and
//! time-range code: each test is named after its item.

use siemstress_tests::{Env, Kind, bin};

/// Issue 17, item 11: a MariaDB URL where nothing listens is reported at
/// once as "connection refused" by every tool, not after the pool's 30 s
/// acquire timeout as "pool timed out".
#[test]
fn issue17_11_refused_connection_is_reported_as_such() {
    let env = Env::new(Kind::Sqlite);
    // Port 1 on the loopback: nothing listens there, the kernel refuses.
    let url = "mysql://root@127.0.0.1:1/siem";
    for (tool, args) in [
        ("siemquery", vec!["--last", "1h"]),
        ("siemparse", vec!["-s", "auth"]),
        ("siemtrigger", vec!["--once"]),
    ] {
        let out = std::process::Command::new(bin(tool))
            .current_dir(env.path())
            .env_remove("SIEMSTRESS_DATABASE_URL")
            .env_remove("SIEMSTRESS_CONFIG")
            .arg("-c")
            .arg(env.config(""))
            .args(&args)
            .arg("--db")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tool}: {err}");
        assert!(err.contains("connection refused"), "{tool}: {err}");
        assert!(
            err.contains("127.0.0.1:1"),
            "{tool} names the server: {err}"
        );
        assert!(!err.contains("timed out"), "{tool}: {err}");
    }
}

/// Issue 17, item 9: `--range` takes the ISO 8601 interval `START/END`
/// (dates are whole days in the section's zone), and a start inside the
/// spring-forward gap is the gap's end, not an error; siemtrigger reads
/// `--from/--to` with the same parser and zone (`[section.default]`).
#[test]
fn issue17_9_iso_intervals_and_dst_gap_ranges() {
    let env = Env::new(Kind::Sqlite);
    env.config("[section.default]\ntimezone = \"Europe/Berlin\"\n");
    let at = [
        "2026-03-29T00:59:59Z", // 01:59:59 CET, before the gap
        "2026-03-29T01:00:00Z", // 03:00:00 CEST, the gap's end
        "2026-10-24T21:59:59Z", // 23:59:59 CEST on the 24th
        "2026-10-24T22:00:00Z", // midnight of the 25th
        "2026-10-25T22:59:59Z", // 23:59:59 CET on the 25th (a 25-hour day)
        "2026-10-25T23:00:00Z", // midnight of the 26th: excluded
    ];
    let log: String = at
        .iter()
        .map(|t| format!("<13>1 {t} h app 1 - - event {t}\n"))
        .collect();
    env.ingest(&[], log.as_bytes());
    let ids = |range: &str| -> (i32, Vec<i64>, String) {
        let (code, out, err) = env.run(
            "siemquery",
            &["--range", range, "--fields", "id", "--format", "csv"],
            b"",
        );
        let ids = out.lines().skip(1).filter_map(|l| l.parse().ok()).collect();
        (code, ids, err)
    };
    assert_eq!(ids("2026-10-25/2026-10-26"), (0, vec![4, 5], String::new()));
    assert_eq!(ids("2026-10-25-2026-10-26"), (0, vec![4, 5], String::new()));
    // The hour that does not exist is an empty range, not an error.
    assert_eq!(ids("260329020000-260329030000"), (0, vec![], String::new()));
    // From inside the gap: from its end, 03:00 CEST.
    assert_eq!(
        ids("260329023000-260329040000"),
        (0, vec![2], String::new())
    );
    assert_eq!(
        ids("2026-03-29T02:30/2026-03-29T04:00"),
        (0, vec![2], String::new())
    );
    let (code, _, err) = ids("2026-10-26/2026-10-25");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not before"), "{err}");

    // siemtrigger reads --from/--to in the same zone, with the same parser.
    env.config(
        "[section.default]\ntimezone = \"Europe/Berlin\"\n\n[[rule]]\nname = \"every\"\n\
         type = \"single\"\nmatch = { grep = \"event\" }\nkey = \"{id}\"\n",
    );
    let (code, out, err) = env.run(
        "siemtrigger",
        &[
            "--replay",
            "--from",
            "2026-03-29T02:30",
            "--to",
            "2026-03-29T04:00",
            "--format",
            "json",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let keys: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    assert_eq!(keys, ["\"2\""], "{out}");
}

/// Issue 17, item 13: a rule whose `table` does not exist (a typo) is named
/// by `--check` and by the summary of a run, instead of passing silently
/// and never firing.
#[test]
fn issue17_13_rules_on_missing_tables_are_named() {
    for kind in siemstress_tests::kinds() {
        let env = Env::new(kind);
        env.config(
            "[[rule]]\nname = \"typo\"\ntype = \"single\"\ntable = \"atuh\"\n\
             match = { process = \"sshd\" }\n\n\
             [[rule]]\nname = \"fine\"\ntype = \"single\"\ntable = \"auth\"\n\
             match = { process = \"sshd\" }\n",
        );
        env.ingest(
            &["-s", "auth", "-z", "UTC", "--year", "2024"],
            b"Jan  1 00:00:00 h sshd[1]: hello\n",
        );
        let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            err.contains("rule typo reads table atuh, which does not exist")
                && err.contains("event tables: auth"),
            "{kind:?}: {err}"
        );
        assert!(!err.contains("rule fine"), "{kind:?}: {err}");
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(
            err.contains("rule typo reads table atuh, which does not exist"),
            "{kind:?}: {err}"
        );
        // -q: nothing on stderr.
        let (_, _, err) = env.run("siemtrigger", &["--once", "-q"], b"");
        assert!(err.is_empty(), "{kind:?}: {err}");
    }
}

/// `[rules] paths = ["DIR"]` named a directory: "does not exist" was wrong
/// (an older build loaded no rules from it without a word); the error says
/// it is a directory and how to name its files.
#[test]
fn a_rules_path_that_is_a_directory_is_named_as_one() {
    let env = Env::new(siemstress_tests::Kind::Sqlite);
    let dir = env.path().join("rules.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a.toml"),
        "[[rule]]\nname = \"a\"\ntype = \"single\"\ntable = \"auth\"\nmatch = { process = \"sshd\" }\n",
    )
    .unwrap();
    env.config("[rules]\npaths = [\"rules.d\"]\n");
    let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rules.d is a directory") && err.contains("\"rules.d/*.toml\""),
        "{err}"
    );
    env.config("[rules]\npaths = [\"rules.d/*.toml\"]\n");
    let (code, _, err) = env.run("siemtrigger", &["--check"], b"");
    assert_eq!(code, 0, "{err}");
}
