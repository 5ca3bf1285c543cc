//! Flags every tool takes the same way (`-c FILE`, `--db URL`), and the one
//! place that resolves them into a config and a connected database.

use std::path::PathBuf;

use crate::Error;
use crate::config::Config;
use crate::db::{Backend, Database};
use crate::diag;

/// `-c` and `--db`, flattened into each binary's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// Config file (default: $SIEMSTRESS_CONFIG, ./siemstress.toml,
    /// $XDG_CONFIG_HOME/siemstress/siemstress.toml, /etc/siemstress/siemstress.toml)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL: sqlite://FILE or mysql://user:pass@host:port/db
    /// (default: $SIEMSTRESS_DATABASE_URL, [database] url, sqlite://siemstress.db)
    #[arg(long = "db", value_name = "URL")]
    pub db: Option<String>,
}

impl ConnectArgs {
    /// Loads the config this invocation names.
    pub fn load_config(&self) -> Result<Config, Error> {
        Config::load(self.config.as_deref())
    }

    /// Connects to the database by flag > env > config > default and migrates it.
    pub async fn connect(&self, config: &Config) -> Result<Database, Error> {
        let url = config.database_url(self.db.as_deref())?;
        Database::connect(&url).await
    }

    /// As [`ConnectArgs::connect`], for a tool that only reads: a SQLite
    /// file that is not there is a typo, not a database to create.
    pub async fn connect_existing(&self, config: &Config) -> Result<Database, Error> {
        let url = config.database_url(self.db.as_deref())?;
        if Backend::of(&url)? == Backend::Sqlite
            && let Some(path) = crate::db::options::sqlite_file(&url)?
            && !path.exists()
        {
            return Err(Error::MissingDatabase(path));
        }
        Database::connect(&url).await
    }
}

/// Whether an error comes from writing to a pipe whose reader has gone
/// (`| head`): the tools then exit 0 quietly, as `cat` does.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(broken)
            || matches!(c.downcast_ref::<Error>(), Some(Error::Io { err, .. }) if broken(err))
    })
}

/// The tokio runtime a tool's `main` runs on (two workers: the machine class
/// this is built for); `None` after a one-line message if it cannot start.
pub fn runtime(tool: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            diag!("{tool}: cannot start: {e}");
            None
        }
    }
}

/// What `--generate` writes to stdout: the tool's man page (roff) or a
/// shell's completion script, both from its clap definition, as ripgrep's
/// `--generate` does. Packagers and `scripts/gen-man.sh` call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page, section 1 (`man -l` renders it)
    Man,
    /// bash completions
    CompleteBash,
    /// zsh completions
    CompleteZsh,
    /// fish completions
    CompleteFish,
}

/// `--generate`, flattened into each binary's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GenerateArgs {
    /// Print the man page or a shell's completions and exit:
    /// man, complete-bash, complete-zsh or complete-fish
    #[arg(long, value_name = "KIND", value_enum)]
    pub generate: Option<Generate>,
}

/// Writes what `what` names for the tool whose clap command is `cmd`.
pub fn generate(
    mut cmd: clap::Command,
    what: Generate,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_owned();
    let shell = match what {
        Generate::Man => return man_page(cmd, out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    // Into memory first: clap_complete panics on a failed write.
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut text);
    out.write_all(&text)
}

/// Runs `--generate` if it was given: `Some(exit code)` then, `None` to go on.
pub fn run_generate<A: clap::CommandFactory>(
    args: &GenerateArgs,
) -> Option<std::process::ExitCode> {
    let what = args.generate?;
    let tool = A::command().get_name().to_owned();
    let mut out = std::io::stdout().lock();
    Some(match generate(A::command(), what, &mut out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            diag!("{tool}: --generate: {e}");
            std::process::ExitCode::from(2)
        }
    })
}

/// The man page: clap_mangen's sections, then the `--help` epilogue
/// (examples, exit status) kept line for line, and the other tools.
fn man_page(cmd: clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let epilogue = cmd.get_after_help().map(|h| h.to_string());
    let man = clap_mangen::Man::new(cmd);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if let Some(text) = epilogue {
        out.write_all(epilogue_roff(&text).as_bytes())?;
    }
    man.render_version_section(out)?;
    let others: Vec<String> = ["siemparse", "siemquery", "siemtrigger"]
        .iter()
        .filter(|t| **t != name)
        .map(|t| format!("\\fB{t}\\fR(1)"))
        .collect();
    writeln!(out, ".SH \"SEE ALSO\"\n{}", others.join(", "))
}

/// `--help`'s epilogue as roff: each paragraph headed `Examples:` or
/// `Exit status: ...` becomes a section, its lines unfilled so that commands
/// keep their shape.
fn epilogue_roff(text: &str) -> String {
    let mut roff = String::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let (head, body) = para.split_once(':').unwrap_or(("Notes", para));
        let heading = if head.contains('\n') || head.len() > 24 {
            "NOTES".to_owned()
        } else {
            head.trim().to_uppercase()
        };
        let body = if heading == "NOTES" { para } else { body };
        roff.push_str(&format!(".SH \"{heading}\"\n.nf\n"));
        for line in body.trim_start_matches([' ', '\n']).lines() {
            roff.push_str(&roff_line(line.trim_start()));
            roff.push('\n');
        }
        roff.push_str(".fi\n");
    }
    roff
}

/// One line of text safe in roff: backslashes escaped, hyphens as minus
/// signs (so `man` searches and copies them as typed), and a line that would
/// start a request (`.` or `'`) guarded with `\&`.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epilogue_keeps_commands_and_guards_roff() {
        let roff = epilogue_roff(
            "Examples:\n  siemquery --last 1h | grep 'a\\b'\n  .hidden\n\nExit status: 0 done, 2 error.",
        );
        assert_eq!(
            roff,
            ".SH \"EXAMPLES\"\n.nf\nsiemquery \\-\\-last 1h | grep 'a\\eb'\n\\&.hidden\n.fi\n\
             .SH \"EXIT STATUS\"\n.nf\n0 done, 2 error.\n.fi\n"
        );
    }
}
