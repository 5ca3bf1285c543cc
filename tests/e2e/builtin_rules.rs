//! Built-in rules (issue 12): with no rules in the config, siemtrigger runs
//! the shipped pack compiled into it, says so, and raises the same alerts
//! as the pack's files would; `[rules] builtin = false` and `disable` turn
//! it or single rules off; zero rules is a warning, not silence;
//! `--list-rules` names each rule's origin.

use std::path::{Path, PathBuf};

use siemstress_tests::{Env, Kind, kinds};

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules")
}

/// The number of rules in config/rules/*.toml.
fn pack_size() -> usize {
    std::fs::read_dir(pack_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.trim() == "[[rule]]")
                .count()
        })
        .sum()
}

fn sample(env: &Env) {
    let sample =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample-auth.log"))
            .unwrap();
    env.ingest(&["-s", "auth", "--year", "2026"], &sample);
}

/// (rule, key, ts) of every alert, sorted.
fn alerts(env: &Env) -> Vec<(String, String, String)> {
    let key = if env.kind == Kind::Mysql {
        "`key`"
    } else {
        "\"key\""
    };
    let mut v: Vec<_> = env
        .rows(&format!("SELECT rule, {key}, ts FROM alerts"))
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap(),
                r[2].clone().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn builtin_rules_fire_on_the_sample_with_no_config() {
    for kind in kinds() {
        // The config is empty: no [rules], no [[rule]].
        let env = Env::new(kind);
        sample(&env);
        let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        let n = pack_size();
        assert!(
            err.contains(&format!("using the {n} built-in rules; see --list-rules")),
            "{err}"
        );
        let got = alerts(&env);
        assert!(
            got.iter()
                .any(|(r, k, _)| r == "su-to-root" && k == "web01:alice"),
            "{kind:?} {got:?}"
        );

        // The same alerts as the pack's files raise.
        let files = Env::new(kind);
        files.config(&format!(
            "[rules]\npaths = [\"{}/*.toml\"]\n",
            pack_dir().display()
        ));
        sample(&files);
        let (code, _, err) = files.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("built-in"), "files only: {err}");
        assert_eq!(got, alerts(&files), "{kind:?}");

        // A rule disabled by name does not run.
        let off = Env::new(kind);
        off.config("[rules]\ndisable = [\"su-to-root\"]\n");
        sample(&off);
        let (code, _, err) = off.run("siemtrigger", &["--once"], b"");
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!("using the {} built-in rules", n - 1)),
            "{err}"
        );
        let want: Vec<_> = got
            .iter()
            .filter(|a| a.0 != "su-to-root")
            .cloned()
            .collect();
        assert_eq!(alerts(&off), want, "{kind:?}");
    }
}

#[test]
fn builtin_off_zero_rules_and_bad_names() {
    let env = Env::new(kinds()[0]);
    sample(&env);
    // builtin = false and nothing else: a warning, exit 0, nothing raised.
    env.config("[rules]\nbuiltin = false\n");
    let (code, out, err) = env.run("siemtrigger", &["--once"], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("warning: no rules loaded"), "{err}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM alerts"), 0);
    // A rule name that is not built in is an error naming it.
    env.config("[rules]\ndisable = [\"ssh-brute-force\"]\n");
    let (code, _, err) = env.run("siemtrigger", &["--once"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"ssh-brute-force\"") && err.contains("rules.disable"),
        "{err}"
    );
    // Inline rules replace the pack unless builtin = true adds it.
    let inline = "[[rule]]\nname = \"mine\"\ntype = \"single\"\nmatch = { grep = \"alice\" }\nmessage = \"m\"\n";
    env.config(inline);
    let (code, out, err) = env.run("siemtrigger", &["--list-rules"], b"");
    assert_eq!(code, 0, "{err}");
    let rules: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rules.len(), 1, "{out}");
    assert!(
        rules[0].starts_with("mine ") && rules[0].ends_with("siemstress.toml:2"),
        "{out}"
    );
    env.config(&format!("[rules]\nbuiltin = true\n{inline}"));
    let (code, out, err) = env.run("siemtrigger", &["--list-rules"], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1 + 1 + pack_size(), "{out}");
    let brute = out
        .lines()
        .find(|l| l.starts_with("ssh-bruteforce "))
        .unwrap();
    assert!(
        brute.contains("threshold") && brute.ends_with("built-in config/rules/ssh.toml:8"),
        "{brute}"
    );
}
