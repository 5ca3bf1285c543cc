//! Issue 18, resilience: tools started together on a new database, section
//! names that would reach the database's own tables, hostile line sizes.

use std::process::{Command, Stdio};

use siemstress_tests::{Env, Kind, kinds};

/// Tools started at the same moment on a fresh database (systemd units at
/// boot, many hosts pointed at a new central server): migrations and the
/// creation of one event table are serialized, so none of them fails.
/// 8 processes at once, 20 times over, on each backend.
#[test]
fn eight_tools_started_together_on_a_fresh_database() {
    const ROUNDS: usize = 20;
    for kind in kinds() {
        for round in 0..ROUNDS {
            let env = Env::new(kind);
            let spawn = |tool: &str, args: &[&str], input: &'static [u8]| {
                let mut c = env.cmd(tool);
                c.args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                (tool.to_owned(), c, input)
            };
            let line: &[u8] = b"Jan  5 10:00:00 h sshd[1]: hello\n";
            let mut cmds: Vec<(String, Command, &[u8])> = Vec::new();
            for i in 0..6 {
                // Writers share new sections: each table is created once.
                let section = if i < 4 { "auth" } else { "kern" };
                cmds.push(spawn("siemparse", &["-q", "-s", section], line));
            }
            // One siemtrigger (a second would wait for the first's lease).
            cmds.push(spawn("siemtrigger", &["--once"], b""));
            cmds.push(spawn(
                "siemparse",
                &["-q", "--snapshot", "s"],
                b"[{\"a\": 1}]",
            ));
            let children: Vec<_> = cmds
                .into_iter()
                .map(|(tool, mut c, input)| (tool, c.spawn().expect("spawn"), input))
                .collect();
            for (tool, mut child, input) in children {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(input);
                }
                let out = child.wait_with_output().expect("wait");
                assert!(
                    out.status.success(),
                    "{kind:?} round {round}: {tool} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert_eq!(env.scalar("SELECT COUNT(*) FROM auth"), 4, "{kind:?}");
            assert_eq!(env.scalar("SELECT COUNT(*) FROM kern"), 2, "{kind:?}");
            assert_eq!(
                env.scalar("SELECT COUNT(*) FROM event_tables"),
                2,
                "{kind:?}"
            );
        }
    }
}

/// A section cannot name one of the database's own tables, in any letter
/// case, nor one whose index name would pass MariaDB's 64 characters;
/// `--clear` drops only tables registered as event tables.
#[test]
fn sections_cannot_reach_internal_tables() {
    for kind in kinds() {
        let env = Env::new(kind);
        env.ingest(&["-s", "auth"], b"Jan  5 10:00:00 h sshd[1]: hello\n");
        // An alert to lose if `-s alerts --clear` reached the table.
        env.config(
            "[[rule]]\nname = \"any\"\ntype = \"single\"\ntable = \"auth\"\n\
             match = { grep = \"hello\" }\nmessage = \"m\"\n",
        );
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM alerts"), 1);
        for name in [
            "alerts",
            "Alerts",
            "ALERT_EVENTS",
            "_sqlx_migrations",
            "event_tables",
            "follow_state",
            "sqlite_master",
            "alerts_ts",
        ] {
            for args in [vec!["-s", name, "--clear", "--force"], vec!["-s", name]] {
                let (code, _, err) = env.run("siemparse", &args, b"x\n");
                assert_eq!(code, 2, "{kind:?} {args:?}: {err}");
                assert!(err.contains("siemstress's own"), "{kind:?} {args:?}: {err}");
            }
        }
        assert_eq!(env.scalar("SELECT COUNT(*) FROM alerts"), 1, "{kind:?}");
        // Longest name: 64 minus the `_shost_ts` suffix of its index.
        let ok = "s".repeat(55);
        env.ingest(&["-s", &ok], b"Jan  5 10:00:00 h sshd[1]: hello\n");
        assert_eq!(env.scalar(&format!("SELECT COUNT(*) FROM {ok}")), 1);
        let long = "s".repeat(56);
        let (code, _, err) = env.run("siemparse", &["-s", &long], b"x\n");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(err.contains("at most 55"), "{kind:?}: {err}");
        // A table siemparse did not make is never dropped by --clear.
        env.rows("CREATE TABLE other (id INTEGER)");
        let (code, _, err) = env.run("siemparse", &["-s", "other", "--clear", "--force"], b"");
        assert_eq!(code, 2, "{kind:?}: {err}");
        assert!(err.contains("not an event table"), "{kind:?}: {err}");
        assert_eq!(env.scalar("SELECT COUNT(*) FROM other"), 0);
        // ... while an event table is.
        let (code, _, err) = env.run("siemparse", &["-s", "auth", "--clear", "--force"], b"");
        assert_eq!(code, 0, "{kind:?}: {err}");
    }
}

/// On SQLite tables and indexes share one namespace: a section whose
/// table would meet another table's index is refused with both names.
#[test]
fn sqlite_section_meeting_an_index_name_is_refused() {
    let env = Env::new(Kind::Sqlite);
    env.ingest(&["-s", "auth"], b"Jan  5 10:00:00 h sshd[1]: hello\n");
    let (code, _, err) = env.run("siemparse", &["-s", "AUTH_ts"], b"x\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("index auth_ts of table auth"), "{err}");
}
