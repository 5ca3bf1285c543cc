//! Colour and terminal width (issue 12): on a terminal (a pseudo-terminal
//! from util-linux `script`), siemquery colours failed logins and
//! severities unless `NO_COLOR` or `--color never`; `--color always`
//! colours into a pipe too; a table is fitted to `$COLUMNS` with long
//! messages cut, `--wide` shows them whole. Colour codes are only ever
//! siemquery's: an escape sequence in a log line is shown escaped.

use std::process::Command;

use siemstress_tests::{Env, Kind, bin};

const LONG_TAIL: &str = "THE-END-OF-A-LONG-MESSAGE";

fn setup() -> Env {
    let env = Env::new(Kind::Sqlite);
    let long = format!("session note {} {LONG_TAIL}", "x".repeat(200));
    let lines = format!(
        "Mar  1 10:00:01 h1 sshd[1]: Failed password for root from 198.51.100.1 port 1 ssh2\n\
         Mar  1 10:00:02 h1 sshd[1]: Accepted password for bob from 198.51.100.2 port 2 ssh2\n\
         Mar  1 10:00:03 h1 evil[1]: \x1b[32mgreen\x1b[0m text\n\
         Mar  1 10:00:04 h1 note[1]: {long}\n"
    );
    env.ingest(&["-s", "auth", "--year", "2024"], lines.as_bytes());
    env
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// siemquery on a pseudo-terminal of 120 columns; its output (CR LF lines).
fn on_tty(env: &Env, args: &[&str], no_color: Option<&str>) -> String {
    let mut line = format!(
        "{} -c {} --db {} --range 20240301000000-20240302000000 --format table",
        quote(bin("siemquery").to_str().unwrap()),
        quote(env.path().join("siemstress.toml").to_str().unwrap()),
        quote(&env.url),
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(env.path())
        .env_remove("SIEMSTRESS_CONFIG")
        .env_remove("SIEMSTRESS_DATABASE_URL")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .env("TZ", "UTC")
        .env("COLUMNS", "120");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("script (util-linux)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Our colour codes: an SGR sequence written as bytes (not escaped text).
fn coloured(out: &str) -> bool {
    out.contains("\x1b[")
}

#[test]
fn colour_on_a_terminal_unless_no_color_or_never() {
    let env = setup();
    let out = on_tty(&env, &[], None);
    assert!(coloured(&out), "auto colours on a terminal:\n{out}");
    // The failed login's line carries the colour, the accepted one none.
    let row = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("│ {id} ")))
            .unwrap_or_else(|| panic!("row {id}:\n{out}"))
    };
    let (failed, accepted) = (row("1"), row("2"));
    assert!(coloured(failed), "{failed:?}");
    assert!(!coloured(accepted), "{accepted:?}");
    // The sequence in the log line is shown as text, never sent raw.
    let wide = on_tty(&env, &["--wide"], None);
    let evil = wide.lines().find(|l| l.contains("green")).unwrap();
    assert!(evil.contains(r"\x1b[32mgreen\x1b[0m"), "{evil:?}");
    assert!(!coloured(evil), "{evil:?}");

    for (args, no_color, want) in [
        (&[][..], Some("1"), false),
        // An empty NO_COLOR does not count (no-color.org).
        (&[][..], Some(""), true),
        (&["--color", "never"][..], None, false),
        (&["--color", "always"][..], Some("1"), true),
        (&["--color", "auto"][..], Some("1"), false),
    ] {
        let out = on_tty(&env, args, no_color);
        assert_eq!(
            coloured(&out),
            want,
            "{args:?} NO_COLOR={no_color:?}:\n{out}"
        );
    }

    // Into a pipe: no colour unless --color always.
    let range = [
        "--range",
        "20240301000000-20240302000000",
        "--format",
        "table",
    ];
    let (code, out, err) = env.run("siemquery", &range, b"");
    assert_eq!(code, 0, "{err}");
    assert!(!coloured(&out), "{out}");
    let mut always = range.to_vec();
    always.extend(["--color", "always"]);
    let (_, out, _) = env.run("siemquery", &always, b"");
    assert!(coloured(&out), "{out}");
    // Machine formats are never coloured.
    let (_, out, _) = env.run(
        "siemquery",
        &[
            range[0], range[1], "--format", "ndjson", "--color", "always", "--grep", "failed",
        ],
        b"",
    );
    assert!(!out.is_empty() && !coloured(&out), "{out}");
}

#[test]
fn table_fits_the_terminal_and_wide_shows_all() {
    let env = setup();
    let out = on_tty(&env, &["--color", "never"], None);
    for l in out.lines() {
        assert!(l.chars().count() <= 120, "wider than 120 columns: {l:?}");
    }
    assert!(out.contains('…'), "a long message is cut:\n{out}");
    assert!(!out.contains(LONG_TAIL), "{out}");
    // One line per row (the long message takes no second line), and the
    // times are whole.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('│'))
        .skip_while(|l| !l.starts_with("│ 1 "))
        .collect();
    assert_eq!(rows.len(), 4, "four rows:\n{out}");
    assert!(rows[3].contains("2024-03-01 10:00:04"), "{out}");

    let out = on_tty(&env, &["--color", "never", "--wide"], None);
    assert!(out.contains(LONG_TAIL), "{out}");
}
