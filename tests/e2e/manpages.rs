//! Man pages and shell completions (issue 12): each tool's `--generate`
//! output renders with `man -l` and names every option `--help` lists; the
//! bash completions complete option names and values in a real bash.

use std::process::Command;

use siemstress_tests::bin;

const TOOLS: [&str; 3] = ["siemparse", "siemquery", "siemtrigger"];

fn generate(tool: &str, kind: &str) -> String {
    let out = Command::new(bin(tool))
        .args(["--generate", kind])
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} --generate {kind}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The long options `--help` lists (`--name`), in order.
fn help_options(tool: &str) -> Vec<String> {
    let out = Command::new(bin(tool)).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .filter(|_| !l.starts_with("--"))
                .map_or(l, |rest| {
                    rest.split_once(", ").map_or(rest, |(_, long)| long)
                });
            l.strip_prefix("--")
                .map(|o| format!("--{}", o.split([' ', '=', '[', '<']).next().unwrap()))
        })
        .collect()
}

#[test]
fn man_pages_render_with_every_option_and_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    for tool in TOOLS {
        let page = dir.path().join(format!("{tool}.1"));
        std::fs::write(&page, generate(tool, "man")).unwrap();
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "200")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("man (man-db) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l {tool}.1: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "groff warnings for {tool}.1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Rendered text: hyphens may come out as U+2010/U+2212 in UTF-8 locales.
        let plain = text.replace(['\u{2010}', '\u{2212}'], "-");
        for section in ["NAME", "SYNOPSIS", "OPTIONS", "EXAMPLES", "SEE ALSO"] {
            assert!(
                plain.contains(section),
                "{tool}.1 has no {section}:\n{plain}"
            );
        }
        let options = help_options(tool);
        assert!(options.len() > 10, "{tool} --help options: {options:?}");
        for option in options {
            assert!(plain.contains(&option), "{tool}.1 lacks {option}");
        }
        // An example keeps its shape (one command per line, not reflowed).
        let example = plain
            .lines()
            .skip_while(|l| l.trim() != "EXAMPLES")
            .nth(1)
            .unwrap()
            .trim();
        assert!(
            example.contains(tool),
            "{tool}.1 first example: {example:?}"
        );
    }
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for tool in TOOLS {
        let bash = generate(tool, "complete-bash");
        let zsh = generate(tool, "complete-zsh");
        let fish = generate(tool, "complete-fish");
        assert!(
            zsh.starts_with(&format!("#compdef {tool}")),
            "{tool} zsh: {zsh:.80}"
        );
        assert!(
            fish.contains(&format!("complete -c {tool} -l db")),
            "{tool} fish"
        );
        // bash: load it and complete a partial option and an option's value.
        let script = format!(
            "{bash}\nCOMP_WORDS=({tool} --gen); COMP_CWORD=1; _{tool} {tool} --gen {tool}; \
             echo \"${{COMPREPLY[@]}}\"\n\
             COMP_WORDS=({tool} --generate ''); COMP_CWORD=2; _{tool} {tool} '' --generate; \
             echo \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some("--generate"),
            "{tool}: {out:?}"
        );
        assert_eq!(
            lines.get(1).copied(),
            Some("man complete-bash complete-zsh complete-fish"),
            "{tool}: {out:?}"
        );
    }
}

/// `--generate` into a pipe whose reader has gone is not an error (clap's
/// completion writer panics on a failed write; the output is buffered first).
#[test]
fn generate_into_a_closed_pipe_exits_0() {
    for tool in TOOLS {
        for kind in ["man", "complete-bash"] {
            let mut child = Command::new(bin(tool))
                .args(["--generate", kind])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{tool} --generate {kind}: {out:?}");
            assert!(out.stderr.is_empty(), "{tool} --generate {kind}: {out:?}");
        }
    }
}
