//! Command-line flags (raw, as clap parsed them) and their translation into
//! the shared [`Filter`].

use std::path::PathBuf;

use anyhow::{Context, bail};
use regex::Regex;
use siemstress_common::filter::{Field, Filter};
use siemstress_common::time::{Zone, now_ms, parse_duration};

use siemstress_common::timerange::parse_range;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people (default on a terminal; first 1000 rows unless --limit)
    Table,
    /// One pretty JSON array
    Json,
    /// One JSON object per line (default when stdout is not a terminal)
    Ndjson,
    /// CSV with a header row
    Csv,
}

/// When to colour the output for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set (to anything but "") or TERM is dumb
    Auto,
    /// Always (also into a pipe or with NO_COLOR)
    Always,
    /// Never
    Never,
}

/// Search events of every section (or one: -s). Repeated flags OR, different flags AND,
/// --r* flags remove rows that match (rows without that field stay).
#[derive(Debug, clap::Parser)]
#[command(
    name = "siemquery",
    version,
    about,
    after_help = "Examples:\n  siemquery --last 20m -s auth --process sshd --grep fail\n  \
                  siemquery --last 6h --grep 'failed password'          # every section\n  \
                  siemquery -f --process sudo                          # new rows as stored\n  \
                  siemquery -s auth --last 1h --process sshd --grep 'failed password'\n  \
                  siemquery -s auth --range 240301000000-240302000000 --shost 203.0.113.7 --format csv\n  \
                  siemquery -s auth --last 1d --stats source_host --grep 'invalid user'\n  \
                  siemquery --alerts --last 24h --format json\n  \
                  siemquery --snapshot files --diff                   # what changed since the last run\n  \
                  siemquery --report /var/www/siem/today.html --last 24h --mail"
)]
pub struct Args {
    #[command(flatten)]
    pub connect: siemstress_common::cli::ConnectArgs,

    #[command(flatten)]
    pub generate: siemstress_common::cli::GenerateArgs,

    /// Search only this section (its table and time zone); default: every event table
    #[arg(short = 's', long = "section", value_name = "SECTION")]
    pub section: Option<String>,

    /// Table to read instead of the section's
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Events of the last DURATION (5m, 6h, 2d, 1w); default 24h unless --range or --id
    #[arg(long, value_name = "DURATION", conflicts_with = "range")]
    pub last: Option<String>,

    /// Events from START (inclusive) to END (exclusive), as START-END, START/END, START/DURATION
    /// or DURATION/END: YYmmddHHMMSS, YYYYmmddHHMMSS or ISO 8601 (2025-11-24/P1D), in the
    /// section's zone unless an offset is given
    #[arg(long, value_name = "START-END")]
    pub range: Option<String>,

    /// Row id (repeatable)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(0..))]
    pub id: Vec<i64>,

    /// Host that logged the line (repeatable: any of them)
    #[arg(long, value_name = "HOST")]
    pub host: Vec<String>,
    /// Remove rows from this host
    #[arg(long, value_name = "HOST")]
    pub rhost: Vec<String>,

    /// Source host (IP) of the event
    #[arg(long, value_name = "HOST")]
    pub shost: Vec<String>,
    /// Remove rows with this source host
    #[arg(long, value_name = "HOST")]
    pub rshost: Vec<String>,

    /// Source port
    #[arg(long, value_name = "PORT", value_parser = port())]
    pub sport: Vec<i64>,
    /// Remove rows with this source port
    #[arg(long, value_name = "PORT", value_parser = port())]
    pub rsport: Vec<i64>,

    /// Destination host
    #[arg(long, value_name = "HOST")]
    pub dhost: Vec<String>,
    /// Remove rows with this destination host
    #[arg(long, value_name = "HOST")]
    pub rdhost: Vec<String>,

    /// Destination port
    #[arg(long, value_name = "PORT", value_parser = port())]
    pub dport: Vec<i64>,
    /// Remove rows with this destination port
    #[arg(long, value_name = "PORT", value_parser = port())]
    pub rdport: Vec<i64>,

    /// Process (syslog tag without pid, e.g. sshd, su(pam_unix))
    #[arg(long, value_name = "NAME")]
    pub process: Vec<String>,
    /// Remove rows of this process
    #[arg(long, value_name = "NAME")]
    pub rprocess: Vec<String>,

    /// Process id
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i64).range(0..))]
    pub pid: Vec<i64>,
    /// Remove rows with this process id
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i64).range(0..))]
    pub rpid: Vec<i64>,

    /// Protocol
    #[arg(long, value_name = "PROTO")]
    pub protocol: Vec<String>,
    /// Remove rows with this protocol
    #[arg(long, value_name = "PROTO")]
    pub rprotocol: Vec<String>,

    /// User name
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,
    /// Remove rows of this user
    #[arg(long, value_name = "USER")]
    pub ruser: Vec<String>,

    /// Substring of the raw line, ASCII case-insensitive (as LC_ALL=C grep -iF)
    #[arg(long, value_name = "TEXT")]
    pub grep: Vec<String>,
    /// Remove rows whose raw line contains TEXT (ASCII case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub rgrep: Vec<String>,

    /// Regular expression on the raw line (Rust regex syntax; (?i) for case-insensitive)
    #[arg(long, value_name = "RE")]
    pub regex: Vec<String>,
    /// Remove rows whose raw line matches RE
    #[arg(long, value_name = "RE")]
    pub rregex: Vec<String>,

    /// At most N rows (0: no limit); for --stats the top N (default 10)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Print only the number of matching rows
    #[arg(long, conflicts_with = "stats")]
    pub count: bool,

    /// Count rows per value of COLUMN, most frequent first (e.g. source_host, process, user)
    #[arg(long, value_name = "COLUMN")]
    pub stats: Option<String>,

    /// Columns to print, comma-separated (column names and `section`)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub fields: Vec<String>,

    /// Output format (default: table on a terminal, ndjson otherwise)
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// With --format csv: put ' before a text cell that starts with = + - @
    /// (or tab, CR), so that a spreadsheet shows it instead of running it as a formula
    #[arg(long)]
    pub excel_safe: bool,

    /// Also write the rows as a pretty JSON array to FILE (-: to stdout, instead of --format)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Colour severities and failed logins: auto, always, never
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: ColorWhen,

    /// Show whole cells (on a terminal a table is fitted to its width, long cells cut with …)
    #[arg(long)]
    pub wide: bool,

    /// Print nothing on stdout (with --json FILE)
    #[arg(long)]
    pub silent: bool,

    /// Print the SQL (with placeholders) and the bound values on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Show the latest run of snapshot NAME (per host; --host to pick), or with --diff its changes
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,

    /// With --snapshot: changes vs the previous successful run; exit 0 none, else 1 added | 2 removed | 4 changed, 16+ error
    #[arg(long, requires = "snapshot")]
    pub diff: bool,

    /// With --snapshot: this run instead of the latest
    #[arg(long = "run", value_name = "ID", requires = "snapshot")]
    pub run_id: Option<i64>,

    /// With --diff: ignore changes matching NAME.KEY.COLUMN or whole rows matching NAME.KEY (repeatable)
    #[arg(long, value_name = "GLOB", requires = "diff")]
    pub exclude: Vec<String>,

    /// Write a self-contained HTML report of the period (--last, default 24h, or --range) to FILE
    #[arg(long, value_name = "FILE.html", conflicts_with = "snapshot")]
    pub report: Option<PathBuf>,

    /// With --report: also send it by mail ([actions.mail] smtp, from, to)
    #[arg(long, requires = "report")]
    pub mail: bool,

    /// List siemtrigger's alerts of the period (--last, default 24h, or --range, on the alert's event time)
    #[arg(long, conflicts_with_all = ["snapshot", "report", "count", "stats"])]
    pub alerts: bool,

    /// Keep running and print matching rows as they are stored (with --alerts: new alerts);
    /// with --last or --range, the rows of that period first. On a terminal one line per row
    #[arg(short = 'f', long, conflicts_with_all = ["count", "stats", "snapshot", "report"])]
    pub follow: bool,

    /// Show per table the rows, the oldest and newest event, and the bytes of
    /// data, indexes and the --grep index (SQLite: dbstat; MariaDB: information_schema)
    #[arg(long, conflicts_with_all = ["snapshot", "report", "count", "stats", "alerts", "follow"])]
    pub stats_db: bool,

    /// With --alerts: only alerts of this rule (repeatable)
    #[arg(long = "rule", value_name = "NAME", requires = "alerts")]
    pub rule: Vec<String>,
}

fn port() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(0..=65535)
}

fn field<T: Clone>(include: &[T], exclude: &[T]) -> Field<T> {
    Field {
        include: include.to_vec(),
        exclude: exclude.to_vec(),
    }
}

fn regexes(patterns: &[String]) -> anyhow::Result<Vec<Regex>> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                // The regex crate's message spans lines; its last line is the reason.
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or("").trim();
                anyhow::anyhow!(
                    "invalid regex {p:?}: {}",
                    reason.trim_start_matches("error: ")
                )
            })
        })
        .collect()
}

/// What every mode opens: the config, the zone that reads and shows times,
/// what the mode checked, and the database.
pub struct Opened<T> {
    pub config: siemstress_common::config::Config,
    pub zone: Zone,
    /// What the mode's `prepare` returned.
    pub prepared: T,
    pub db: siemstress_common::db::Database,
}

impl Args {
    /// The section whose time zone reads and shows times: `-s`, else `default`.
    pub fn zone_section(&self) -> &str {
        self.section.as_deref().unwrap_or("default")
    }

    /// The one opening sequence of every mode: the config, the zone of
    /// [`Args::zone_section`], `prepare` (flag checks that need the zone: a
    /// bad flag is reported without touching the database), then the
    /// database to read (a SQLite file that is not there is an error, not a
    /// database to create).
    pub async fn open<T>(
        &self,
        prepare: impl FnOnce(&Zone) -> anyhow::Result<T>,
    ) -> anyhow::Result<Opened<T>> {
        let config = self.connect.load_config()?;
        let zone = config.section(self.zone_section(), None)?.zone;
        let prepared = prepare(&zone)?;
        let db = self.connect.connect_existing(&config).await?;
        Ok(Opened {
            config,
            zone,
            prepared,
            db,
        })
    }

    /// `--json -`: the JSON array goes to stdout (and nothing else does).
    pub fn json_to_stdout(&self) -> bool {
        self.json.as_deref() == Some(std::path::Path::new("-"))
    }

    /// How output for people looks when stdout is a terminal (`tty`) or not.
    pub fn look(&self, tty: bool) -> crate::output::Look {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let color = match self.color {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                tty && env("NO_COLOR").is_none() && env("TERM").is_none_or(|t| t != "dumb")
            }
        };
        crate::output::Look {
            fit: tty && !self.wide,
            color,
        }
    }

    /// True when stdout gets a table in `format` (which has a default row limit).
    pub fn shows_table(&self, format: Format) -> bool {
        format == Format::Table && !self.silent && !self.json_to_stdout()
    }

    /// The filter these flags describe; times are read in `zone`.
    pub fn filter(&self, zone: &Zone) -> anyhow::Result<Filter> {
        let (since, until) = match (&self.range, &self.last) {
            (Some(r), _) => {
                let (a, b) = parse_range(r, zone).context("--range")?;
                (Some(a), Some(b))
            }
            (None, Some(d)) => (Some(since_now(d)?), None),
            // A follow shows what is stored from now on, whatever its event time.
            (None, None) if !self.id.is_empty() || self.follow => (None, None),
            (None, None) => (Some(since_now("24h")?), None),
        };
        Ok(Filter {
            since,
            until,
            id: self.id.clone(),
            host: field(&self.host, &self.rhost),
            process: field(&self.process, &self.rprocess),
            user: field(&self.user, &self.ruser),
            source_host: field(&self.shost, &self.rshost),
            dest_host: field(&self.dhost, &self.rdhost),
            protocol: field(&self.protocol, &self.rprotocol),
            pid: field(&self.pid, &self.rpid),
            source_port: field(&self.sport, &self.rsport),
            dest_port: field(&self.dport, &self.rdport),
            grep: field(&self.grep, &self.rgrep),
            regex: Field {
                include: regexes(&self.regex)?,
                exclude: regexes(&self.rregex)?,
            },
        })
    }

    /// `--fields`, validated; `None` when not given.
    pub fn fields(&self) -> anyhow::Result<Option<Vec<String>>> {
        if self.fields.is_empty() {
            return Ok(None);
        }
        let known =
            |f: &str| f == "section" || siemstress_common::db::search::ROW_COLUMNS.contains(&f);
        let mut out = Vec::new();
        for f in &self.fields {
            let f = f.trim();
            if !known(f) {
                bail!(
                    "--fields: unknown column {f:?}; use {} or section",
                    siemstress_common::db::search::ROW_COLUMNS.join(",")
                );
            }
            out.push(f.to_owned());
        }
        Ok(Some(out))
    }
}

/// Now minus a `--last` duration, in epoch ms.
fn since_now(d: &str) -> anyhow::Result<i64> {
    let dur = parse_duration(d).context("--last")?;
    let ms = i64::try_from(dur.as_millis()).unwrap_or(i64::MAX);
    Ok(now_ms().saturating_sub(ms))
}
