//! `siemquery` without `-s`/`--table` (issue 12): every event table, merged
//! in time order with a `section` column; `--count` and `--stats` per
//! section plus a total; `-s` narrows; missing tables are named.

use serde_json::Value;
use siemstress_tests::{Env, kinds};

const RANGE: [&str; 2] = ["--range", "20240301000000-20240302000000"];

/// Three sections whose lines interleave in time, with equal times across
/// sections (ordered by section, then id) and a line outside the range.
fn env_with_sections(kind: siemstress_tests::Kind) -> Env {
    let env = Env::new(kind);
    let auth = "\
Mar  1 10:00:01 h1 sshd[1]: Failed password for root from 198.51.100.1 port 1 ssh2
Mar  1 10:00:03 h1 sshd[2]: Failed password for bob from 198.51.100.2 port 2 ssh2
Mar  1 10:00:05 h1 sshd[3]: Accepted password for bob from 198.51.100.2 port 3 ssh2
Mar  3 10:00:05 h1 sshd[3]: Failed password for late from 198.51.100.9 port 3 ssh2
";
    let web = "\
Mar  1 10:00:02 w1 nginx[7]: GET /login failed
Mar  1 10:00:03 w1 nginx[7]: GET /index ok
";
    let default = "\
Mar  1 10:00:00 d1 cron[9]: job started
Mar  1 10:00:03 d1 cron[9]: job failed
";
    env.ingest(
        &["-s", "auth", "--year", "2024", "-z", "UTC"],
        auth.as_bytes(),
    );
    env.ingest(
        &["-s", "web", "--year", "2024", "-z", "UTC"],
        web.as_bytes(),
    );
    env.ingest(&["--year", "2024", "-z", "UTC"], default.as_bytes());
    env
}

fn ndjson(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--format", "ndjson"];
    all.extend_from_slice(args);
    let (code, out, err) = env.run("siemquery", &all, b"");
    assert_eq!(code, 0, "{:?} siemquery {all:?}: {err}", env.kind);
    out.lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect()
}

/// (section, message) of each row, in output order.
fn rows(env: &Env, args: &[&str]) -> Vec<(String, String)> {
    let mut all = RANGE.to_vec();
    all.extend_from_slice(&["--fields", "section,message"]);
    all.extend_from_slice(args);
    ndjson(env, &all)
        .iter()
        .map(|v| {
            (
                v["section"].as_str().unwrap().to_owned(),
                v["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn every_section_merged_in_time_order() {
    for kind in kinds() {
        let env = env_with_sections(kind);
        let all = pairs(&[
            ("default", "job started"),
            (
                "auth",
                "Failed password for root from 198.51.100.1 port 1 ssh2",
            ),
            ("web", "GET /login failed"),
            (
                "auth",
                "Failed password for bob from 198.51.100.2 port 2 ssh2",
            ),
            ("default", "job failed"),
            ("web", "GET /index ok"),
            (
                "auth",
                "Accepted password for bob from 198.51.100.2 port 3 ssh2",
            ),
        ]);
        assert_eq!(rows(&env, &[]), all, "{kind:?}");
        // A limit takes the first rows of the merged order, not of each table.
        assert_eq!(rows(&env, &["--limit", "4"]), all[..4].to_vec(), "{kind:?}");
        // Filters apply to every table; --grep through SQL, --regex in Rust.
        let failed: Vec<_> = all
            .iter()
            .filter(|(_, m)| m.to_ascii_lowercase().contains("fail"))
            .cloned()
            .collect();
        assert_eq!(rows(&env, &["--grep", "FAIL"]), failed, "{kind:?}");
        assert_eq!(
            rows(&env, &["--regex", "(?i)fail", "--limit", "3"]),
            failed[..3].to_vec(),
            "{kind:?}"
        );
        // -s narrows to one section, as before; the default section works.
        let web: Vec<_> = all.iter().filter(|(s, _)| s == "web").cloned().collect();
        assert_eq!(rows(&env, &["-s", "web"]), web, "{kind:?}");
        let default: Vec<_> = all
            .iter()
            .filter(|(s, _)| s == "default")
            .cloned()
            .collect();
        assert_eq!(rows(&env, &["-s", "default"]), default, "{kind:?}");
        // The table shows the section column.
        let (code, out, err) =
            env.run("siemquery", &[RANGE[0], RANGE[1], "--format", "table"], b"");
        assert_eq!(code, 0, "{err}");
        let header = out.lines().nth(1).unwrap();
        assert!(header.contains("section"), "{header}");
    }
}

#[test]
fn count_and_stats_per_section_with_a_total() {
    for kind in kinds() {
        let env = env_with_sections(kind);
        let counts: Vec<(String, i64)> = ndjson(&env, &[RANGE[0], RANGE[1], "--count"])
            .iter()
            .map(|v| {
                (
                    v["section"].as_str().unwrap().to_owned(),
                    v["count"].as_i64().unwrap(),
                )
            })
            .collect();
        let want = [("auth", 3), ("default", 2), ("web", 2), ("(total)", 7)]
            .map(|(s, n)| (s.to_owned(), n))
            .to_vec();
        assert_eq!(counts, want, "{kind:?}");
        // With -s: the plain number, as before.
        let (code, out, err) = env.run(
            "siemquery",
            &[RANGE[0], RANGE[1], "-s", "auth", "--count"],
            b"",
        );
        assert_eq!((code, out.trim()), (0, "3"), "{err}");

        // --stats: each section's values, then the values of all together.
        let stats: Vec<(String, Option<String>, i64)> =
            ndjson(&env, &[RANGE[0], RANGE[1], "--stats", "host"])
                .iter()
                .map(|v| {
                    (
                        v["section"].as_str().unwrap().to_owned(),
                        v["host"].as_str().map(str::to_owned),
                        v["count"].as_i64().unwrap(),
                    )
                })
                .collect();
        let h = |s: &str, host: &str, n| (s.to_owned(), Some(host.to_owned()), n);
        assert_eq!(
            stats,
            vec![
                h("auth", "h1", 3),
                h("default", "d1", 2),
                h("web", "w1", 2),
                h("(total)", "h1", 3),
                h("(total)", "d1", 2),
                h("(total)", "w1", 2),
            ],
            "{kind:?}"
        );
        // The total adds the same value over sections; --limit is per group;
        // the regex path (counted in Rust) agrees.
        for extra in [&[][..], &["--regex", "."][..]] {
            let mut args = vec![RANGE[0], RANGE[1], "--stats", "process", "--limit", "1"];
            args.extend_from_slice(extra);
            let got: Vec<(String, String, i64)> = ndjson(&env, &args)
                .iter()
                .map(|v| {
                    (
                        v["section"].as_str().unwrap().to_owned(),
                        v["process"].as_str().unwrap().to_owned(),
                        v["count"].as_i64().unwrap(),
                    )
                })
                .collect();
            let w = |s: &str, p: &str, n| (s.to_owned(), p.to_owned(), n);
            assert_eq!(
                got,
                vec![
                    w("auth", "sshd", 3),
                    w("default", "cron", 2),
                    w("web", "nginx", 2),
                    w("(total)", "sshd", 3),
                ],
                "{kind:?} {extra:?}"
            );
        }
    }
}

#[test]
fn missing_tables_are_named() {
    for kind in kinds() {
        let env = Env::new(kind);
        // A database whose only event table was dropped.
        env.ingest(&["-s", "gone"], b"Mar  1 10:00:01 h1 sshd[1]: hello\n");
        let (code, _, err) = env.run("siemparse", &["-s", "gone", "--clear", "--force"], b"");
        assert_eq!(code, 0, "{err}");
        // Nothing ingested: say so, exit 2.
        let (code, out, err) = env.run("siemquery", &["--last", "1h"], b"");
        assert_eq!(code, 2, "{out}");
        assert!(err.contains("no event tables yet"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        env.ingest(&["-s", "auth"], b"Mar  1 10:00:01 h1 sshd[1]: hello\n");
        // An unknown section names the tables that exist.
        let (code, _, err) = env.run("siemquery", &["-s", "nope"], b"");
        assert_eq!(code, 2);
        assert!(
            err.contains("unknown section \"nope\"") && err.contains("event tables: auth"),
            "{err}"
        );
        // The default section has no table here, and says so by name.
        let (code, _, err) = env.run("siemquery", &["-s", "default"], b"");
        assert_eq!(code, 2);
        assert!(err.contains("table default does not exist"), "{err}");
        // Without -s the table that exists is searched.
        let (code, out, err) = env.run("siemquery", &["--last", "1000d", "--count"], b"");
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(r#"{"section":"auth","count":1}"#), "{out}");
    }
}
