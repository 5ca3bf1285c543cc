//! The docs cannot rot (issue 12): every shell block of README.md and
//! docs/*.md is tested through the real binaries.
//!
//! - A block fenced `sh` runs, in order with the other `sh` blocks of its
//!   file, in a fresh directory with no config (the repository's `tests/`,
//!   `config/`, `contrib/` and `scripts/` linked in, the built tools first on
//!   `PATH`), on SQLite (the default `./siemstress.db`) and on MariaDB
//!   (`SIEMSTRESS_DATABASE_URL`), under `bash -e -o pipefail`: it must exit 0.
//! - A block fenced `sh no-run` (a daemon, root, another host) must pass
//!   `bash -n`, and each siemparse/siemquery/siemtrigger command in it must
//!   get past the tool's argument parser: every flag known, every value
//!   parsed (the command is run with `--help` appended, which clap honours
//!   only after the arguments before it have parsed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use siemstress_tests::{Env, Kind, bin, kinds};

const TOOLS: [&str; 3] = ["siemparse", "siemquery", "siemtrigger"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fenced shell block: its file, the line of its opening fence, whether
/// it runs, and its text.
struct Block {
    file: String,
    line: usize,
    run: bool,
    text: String,
    /// A fence of another language (toml, text, ...): not tested here.
    shell: bool,
}

/// The shell blocks (`sh`, `bash`, `sh no-run`) of one markdown file.
fn blocks(path: &Path) -> Vec<Block> {
    let name = path
        .strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(fence) = line.strip_prefix("```") {
            if let Some(b) = open.take() {
                out.push(b);
                continue;
            }
            let mut info = fence.split_whitespace();
            let lang = info.next().unwrap_or("");
            let skip = !matches!(lang, "sh" | "bash");
            let no_run = info.any(|w| w == "no-run");
            open = Some(Block {
                file: name.clone(),
                line: i + 1,
                run: !no_run && !skip,
                text: String::new(),
                shell: !skip,
            });
        } else if let Some(b) = open.as_mut() {
            b.text.push_str(line);
            b.text.push('\n');
        }
    }
    assert!(open.is_none(), "{name}: a code fence is not closed");
    out.retain(|b| b.shell);
    out
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Shell words and command boundaries, enough for documentation: quotes,
/// backslashes, comments, `$(...)`, line continuations; `|`, `;`, `&&`,
/// `||`, `&` and newlines end a command; redirections and their targets
/// are dropped. Returns the commands as word lists.
fn commands(src: &str) -> Vec<Vec<String>> {
    let mut cmds = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut drop_next = false;
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let end_word =
        |word: &mut String, in_word: &mut bool, drop: &mut bool, cmds: &mut Vec<Vec<String>>| {
            if *in_word {
                if *drop {
                    *drop = false;
                } else {
                    cmds.last_mut().unwrap().push(std::mem::take(word));
                }
                word.clear();
                *in_word = false;
            }
        };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 1,
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    word.push(n);
                    in_word = true;
                    i += 1;
                }
            }
            ' ' | '\t' => end_word(&mut word, &mut in_word, &mut drop_next, &mut cmds),
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\n' | ';' | '|' | '&' => {
                end_word(&mut word, &mut in_word, &mut drop_next, &mut cmds);
                cmds.push(Vec::new());
            }
            '<' | '>' => {
                // `2>` / `&>`: the digits before belong to the operator.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut word, &mut in_word, &mut drop_next, &mut cmds);
                while matches!(chars.get(i + 1), Some('>' | '<' | '&')) {
                    i += 1;
                }
                drop_next = true;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`'))
                    {
                        i += 1;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                in_word = true;
                let mut depth = 0;
                while i < chars.len() {
                    word.push(chars[i]);
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    end_word(&mut word, &mut in_word, &mut drop_next, &mut cmds);
    cmds.retain(|c| !c.is_empty());
    cmds
}

/// The siemstress commands of a block: (tool, arguments), leading `VAR=x`
/// assignments skipped.
fn tool_commands(src: &str) -> Vec<(String, Vec<String>)> {
    commands(src)
        .into_iter()
        .filter_map(|words| {
            let mut words = words.into_iter().skip_while(|w| {
                w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            });
            let tool = words.next()?;
            TOOLS
                .contains(&tool.as_str())
                .then(|| (tool, words.collect()))
        })
        .collect()
}

#[test]
fn the_word_splitter_reads_shell_as_bash_does() {
    let src = "a=1 siemquery --grep 'x y' -s \"a\\\"b\" 2>/dev/null | wc -l # note\n\
               siemparse --db mysql://u@h/db \\\n  -s auth < in.log && echo \"$(date)\"; \
               x > out; siemtrigger --once >>log 2>&1 &";
    assert_eq!(
        tool_commands(src),
        vec![
            (
                "siemquery".into(),
                vec!["--grep".into(), "x y".into(), "-s".into(), "a\"b".into()]
            ),
            (
                "siemparse".into(),
                vec![
                    "--db".into(),
                    "mysql://u@h/db".into(),
                    "-s".into(),
                    "auth".into()
                ]
            ),
            ("siemtrigger".into(), vec!["--once".into()]),
        ]
    );
    assert_eq!(commands("echo \"$(date +%F)\"")[0][1], "$(date +%F)");
}

#[test]
fn every_shell_block_of_the_docs_runs_or_parses() {
    let files = doc_files();
    let all: Vec<Block> = files.iter().flat_map(|f| blocks(f)).collect();
    assert!(
        all.iter()
            .filter(|b| b.run && b.file == "README.md")
            .count()
            >= 1,
        "README.md has lost its runnable tour"
    );
    let mut failures = Vec::new();

    // no-run blocks: bash syntax and the tools' argument parsers.
    for b in all.iter().filter(|b| !b.run) {
        let syntax = Command::new("bash")
            .args(["-n", "-c", &b.text])
            .output()
            .unwrap();
        if !syntax.status.success() {
            failures.push(format!(
                "{}:{}: bash -n: {}",
                b.file,
                b.line,
                String::from_utf8_lossy(&syntax.stderr)
            ));
        }
        for (tool, args) in tool_commands(&b.text) {
            let scratch = tempfile::tempdir().unwrap();
            let out = Command::new(bin(&tool))
                .args(&args)
                .arg("--help")
                .current_dir(scratch.path())
                .env_remove("SIEMSTRESS_CONFIG")
                .env_remove("SIEMSTRESS_DATABASE_URL")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}:{}: `{tool} {}` is refused: {}",
                    b.file,
                    b.line,
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }

    // sh blocks: run, per file, on each backend.
    let bindir = bin("siemparse").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for kind in kinds() {
        for file in &files {
            let runnable: Vec<&Block> = all
                .iter()
                .filter(|b| b.run && repo().join(&b.file) == *file)
                .collect();
            if runnable.is_empty() {
                continue;
            }
            let env = Env::new(kind);
            // No config at all, as a new user has.
            std::fs::remove_file(env.path().join("siemstress.toml")).unwrap();
            for dir in ["tests", "config", "contrib", "scripts"] {
                std::os::unix::fs::symlink(repo().join(dir), env.path().join(dir)).unwrap();
            }
            for b in runnable {
                let mut cmd = Command::new("timeout");
                cmd.args(["300", "bash", "-e", "-o", "pipefail", "-c", &b.text])
                    .current_dir(env.path())
                    .env("PATH", &path)
                    .env("HOME", env.path())
                    .env("XDG_CONFIG_HOME", env.path().join("xdg"))
                    .env("TZ", "UTC")
                    .env("NO_COLOR", "1")
                    .env_remove("SIEMSTRESS_CONFIG")
                    .stdin(Stdio::null());
                match kind {
                    Kind::Sqlite => cmd.env_remove("SIEMSTRESS_DATABASE_URL"),
                    Kind::Mysql => cmd.env("SIEMSTRESS_DATABASE_URL", &env.url),
                };
                let out = cmd.output().unwrap();
                if !out.status.success() {
                    failures.push(format!(
                        "{}:{} ({kind:?}): exit {:?}\n--- stderr\n{}\n--- stdout (end)\n{}",
                        b.file,
                        b.line,
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr),
                        tail(&String::from_utf8_lossy(&out.stdout), 20)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "doc blocks failed:\n{}",
        failures.join("\n\n")
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
