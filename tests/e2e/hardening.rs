//! Hardening of issue 18 (hostile input, least privilege), tests named
//! `i18_...`: terminal escapes in stored text, file modes, exec actions,
//! mail AUTH, SIGHUP.

use siemstress_tests::{Env, Kind, kinds};

/// What an attacker puts in a log line: retitle and clear the terminal
/// (OSC, CSI), a C1 CSI, a bidi override.
const EVIL: &str = "\u{1b}]2;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}txt";
/// `EVIL` as the tools show it to people.
const EVIL_SHOWN: &str = r"\x1b]2;pwned\x07\x1b[2J\x9b31m\u{202e}txt";

/// True if `out` holds any character that drives a terminal.
fn raw_controls(out: &str) -> bool {
    out.chars()
        .any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || c == '\u{202e}')
}

const RANGE: [&str; 2] = ["--range", "20260101000000-20270101000000"];

fn env_with_evil_line(kind: Kind) -> Env {
    let env = Env::new(kind);
    env.config(
        "[section.t]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"evil\"\ntype = \"single\"\n\
         table = \"t\"\nmatch = { process = \"app\", regex = 'said (?P<what>.*)' }\n\
         key = \"{what}\"\nmessage = \"it said {what}\"\n",
    );
    env.ingest(
        &["-s", "t", "--year", "2026"],
        format!("Jan  1 00:00:00 h app[1]: said {EVIL}\n").as_bytes(),
    );
    env
}

#[test]
fn i18_display_escapes_controls_for_people_and_keeps_them_for_machines() {
    for kind in kinds() {
        let env = env_with_evil_line(kind);
        let q = |args: &[&str]| {
            let mut all = vec!["-s", "t", RANGE[0], RANGE[1]];
            all.extend_from_slice(args);
            let (code, out, err) = env.run("siemquery", &all, b"");
            assert_eq!(code, 0, "{kind:?} {args:?}: {err}");
            out
        };
        let table = q(&["--format", "table"]);
        assert!(!raw_controls(&table), "{kind:?}: {table:?}");
        assert!(
            table.contains(&format!("said {EVIL_SHOWN}")),
            "{kind:?}: {table}"
        );

        // Machine formats keep the text exact.
        let json: serde_json::Value = serde_json::from_str(&q(&["--format", "json"])).unwrap();
        assert_eq!(json[0]["message"], format!("said {EVIL}"), "{kind:?}");
        let ndjson: serde_json::Value =
            serde_json::from_str(q(&["--format", "ndjson"]).trim()).unwrap();
        assert_eq!(ndjson["message"], format!("said {EVIL}"), "{kind:?}");
        let csv = q(&["--format", "csv", "--fields", "message"]);
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], format!("said {EVIL}"), "{kind:?}");

        // siemtrigger: -v text, and the explanation.
        let (code, out, err) = env.run("siemtrigger", &["--once", "-v"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(
            out.contains(&format!("[{EVIL_SHOWN}] it said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run("siemtrigger", &["--explain", "1"], b"");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(
            out.contains(&format!("message:  it said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        assert!(
            out.contains(&format!("app[1]: said {EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run(
            "siemtrigger",
            &[
                "--explain-rule",
                "evil",
                "--range",
                "20260101000000-20260102000000",
            ],
            b"",
        );
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        assert!(out.contains(EVIL_SHOWN), "{kind:?}: {out}");
        let (_, out, _) = env.run("siemtrigger", &["--explain", "1", "--format", "json"], b"");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["alert"]["message"], format!("it said {EVIL}"), "{kind:?}");
        let (_, out, _) = env.run(
            "siemquery",
            &["--alerts", RANGE[0], RANGE[1], "--format", "table"],
            b"",
        );
        assert!(
            !raw_controls(&out) && out.contains(EVIL_SHOWN),
            "{kind:?}: {out:?}"
        );
    }
}

#[test]
fn i18_display_escapes_snapshot_rows_and_diffs() {
    for kind in kinds() {
        let env = Env::new(kind);
        let doc = |v: &str| {
            serde_json::json!({ format!("key{EVIL}"): { format!("col{EVIL}"): v, "n": 1 } })
                .to_string()
        };
        env.ingest(&["--snapshot", "evil"], doc("before").as_bytes());
        env.ingest(
            &["--snapshot", "evil"],
            doc(&format!("after{EVIL}")).as_bytes(),
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--format", "table"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(!raw_controls(&out), "{kind:?}: {out:?}");
        for want in [
            format!("key{EVIL_SHOWN}"),
            format!("col{EVIL_SHOWN}"),
            format!("after{EVIL_SHOWN}"),
        ] {
            assert!(out.contains(&want), "{kind:?}: {want} in {out}");
        }
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--diff", "--format", "table"],
            b"",
        );
        assert_eq!(code, 4, "{kind:?}: {err}");
        assert!(
            !raw_controls(&out) && !raw_controls(&err),
            "{kind:?}: {out:?} {err:?}"
        );
        assert!(
            out.contains(&format!("after{EVIL_SHOWN}")),
            "{kind:?}: {out}"
        );
        let (_, out, _) = env.run(
            "siemquery",
            &["--snapshot", "evil", "--diff", "--format", "ndjson"],
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["new"], format!("after{EVIL}"), "{kind:?}");
        assert_eq!(v["key"], format!("key{EVIL}"), "{kind:?}");
    }
}

#[test]
fn i18_csv_excel_safe() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.config("[section.t]\ntimezone = \"UTC\"\n");
        env.ingest(
            &["-s", "t", "--year", "2026"],
            b"Jan  1 00:00:00 h app[1]: =HYPERLINK(\"http://evil/\",\"x\")\n\
              Jan  1 00:00:01 h app[1]: @SUM(1+1)\n\
              Jan  1 00:00:03 h app[1]: +1\n\
              Jan  1 00:00:04 h app[1]: plain\n",
        );
        let messages = |extra: &[&str]| {
            let mut args = vec![
                "-s",
                "t",
                RANGE[0],
                RANGE[1],
                "--format",
                "csv",
                "--fields",
                "message,pid",
            ];
            args.extend_from_slice(extra);
            let (code, out, err) = env.run("siemquery", &args, b"");
            assert_eq!(code, 0, "{kind:?}: {err}");
            csv::Reader::from_reader(out.as_bytes())
                .records()
                .map(|r| r.unwrap()[0].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(&["--excel-safe"]),
            [
                "'=HYPERLINK(\"http://evil/\",\"x\")",
                "'@SUM(1+1)",
                "'+1",
                "plain"
            ],
            "{kind:?}"
        );
        assert_eq!(
            messages(&[])[0],
            "=HYPERLINK(\"http://evil/\",\"x\")",
            "{kind:?}: exact by default"
        );

        // Snapshot rows too (and a leading -: syslog messages lose it).
        env.ingest(
            &["--snapshot", "s"],
            br#"{"k": {"v": "-2+3+cmd|' /C calc'!A0"}}"#,
        );
        let (code, out, err) = env.run(
            "siemquery",
            &["--snapshot", "s", "--format", "csv", "--excel-safe"],
            b"",
        );
        assert_eq!(code, 0, "{kind:?}: {err}");
        assert!(out.contains(",'-2+3+cmd|' /C calc'!A0"), "{kind:?}: {out}");
    }
}
