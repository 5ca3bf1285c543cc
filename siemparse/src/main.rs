//! `siemparse`: log lines from stdin, followed files or the network into
//! the event table of a config section.

#![forbid(unsafe_code)]

mod explain;
mod follow;
mod follow_lease;
mod gather;
mod job_lease;
mod lines;
mod listen;
mod pipeline;
mod progress;
mod prune;
mod reload;
mod restore;
mod snapshot_input;
mod stdin;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, bail};
use clap::Parser;
use siemstress_common::cli::ConnectArgs;
use siemstress_common::db::retry::Retry;
use siemstress_common::decode::Decoders;
use siemstress_common::diag;
use siemstress_common::parse::LineParser;
use siemstress_common::time::Zone;

/// Turn log lines (stdin, or followed files) into rows of a SQL table.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  \
                  tail -n0 -F /var/log/auth.log | siemparse -s auth\n  \
                  siemparse -s auth --follow /var/log/auth.log\n  \
                  siemparse -s auth --year 2024 < old-auth.log\n  \
                  siemparse --listen udp://0.0.0.0:514 --listen tcp://0.0.0.0:601\n  \
                  siemparse --gather users                       # a snapshot of system state\n  \
                  siemparse --explain 'Dec  6 10:00:00 h sshd[1]: Invalid user x from 192.0.2.1 port 22'\n  \
                  siemparse --prune                              # delete what is past retention"
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(flatten)]
    generate: siemstress_common::cli::GenerateArgs,

    /// Config section (its table and time zone); with --listen, the section of
    /// messages no [listen] route matches [default: default]
    #[arg(short = 's', long = "section", value_name = "SECTION")]
    section: Option<String>,

    /// Wall-clock zone of lines without an offset: +0500, -0500 or an IANA name (overrides the section's)
    #[arg(
        short = 'z',
        long = "timezone",
        value_name = "TZ",
        allow_hyphen_values = true
    )]
    timezone: Option<String>,

    /// Year of the first RFC3164 line; it moves on when the log passes New Year
    /// (default: inferred, the year nearest to now but never more than a month ahead)
    #[arg(long, value_name = "YYYY", value_parser = clap::value_parser!(i32).range(1970..=9999))]
    year: Option<i32>,

    /// Infer RFC3164 years as if the lines were read at TIME (RFC 3339, e.g. an old
    /// log's mtime: 2025-01-05T10:00:00+01:00); default: when each line is read
    #[arg(long, value_name = "TIME", conflicts_with = "year")]
    reference_time: Option<String>,

    /// Receive syslog from the network (repeatable): udp://HOST:PORT (RFC 5426),
    /// tcp://HOST:PORT (RFC 6587, octet counting or LF framing), tls://HOST:PORT
    /// (RFC 5425; [listen] tls_cert, tls_key); sections chosen by [listen]
    #[arg(long = "listen", value_name = "URL", value_parser = listen::parse_url,
          conflicts_with_all = ["follow", "clear", "index", "gather", "snapshot", "reference_time"])]
    listen: Vec<listen::ListenUrl>,

    /// Follow FILE (repeatable): resume from the stored offset, survive rotation
    #[arg(long = "follow", value_name = "FILE")]
    follow: Vec<PathBuf>,

    /// With --follow, start a file never seen before at its end instead of its start
    #[arg(long, requires = "follow")]
    from_end: bool,

    /// With --follow, read each file to its current end, then exit (for cron)
    #[arg(long, requires = "follow")]
    once: bool,

    /// With --follow, how long the lease on each file lasts unless renewed (one
    /// follower per file, across hosts: another waits in standby, or --once skips
    /// the file); renewed every third of it [default: 30s]
    #[arg(long, value_name = "DURATION", requires = "follow")]
    lease_ttl: Option<String>,

    /// Most rows per transaction
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch: u32,

    /// No progress or summary on stderr
    #[arg(short = 'q', long)]
    quiet: bool,

    /// Create the event table of section NAME (on MariaDB also granting INSERT
    /// on it to the role <database>_collector), then exit: for the admin
    /// account when collectors may not create tables (contrib/mariadb/roles.sql)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["follow", "clear", "index", "gather", "snapshot", "listen", "section"])]
    create_section: Option<String>,

    /// Delete the section's table (asks first unless --force)
    #[arg(long)]
    clear: bool,

    /// With --clear, do not ask
    #[arg(long, requires = "clear")]
    force: bool,

    /// Bring the section's --grep search index up to date, then exit (for cron
    /// after a bulk import; a running siemparse also does it when input is idle)
    #[arg(long, conflicts_with_all = ["follow", "clear"])]
    index: bool,

    /// Run a built-in snapshot gatherer and store its rows: users, groups, files,
    /// suid, authorized_keys, crontabs, listenports, mysql_users
    #[arg(long, value_name = "KIND", conflicts_with_all = ["follow", "clear"])]
    gather: Option<String>,

    /// With --gather, read the file system under DIR instead of /
    #[arg(long, value_name = "DIR", requires = "gather")]
    root: Option<PathBuf>,

    /// Store the JSON on stdin (array of objects, or object of objects) as
    /// snapshot NAME; with --gather, the name to store it under
    #[arg(long, value_name = "NAME", conflicts_with_all = ["follow", "clear"])]
    snapshot: Option<String>,

    /// With --snapshot, the field that keys an array's objects (repeatable: joined by |)
    #[arg(long = "key", value_name = "FIELD", requires = "snapshot")]
    key: Vec<String>,

    /// Run every decoder's examples (built-in and [decoders] paths) and report
    /// failures with file, decoder and example; exit 1 if any fails
    #[arg(long, conflicts_with_all = ["follow", "clear", "index", "gather", "snapshot", "explain"])]
    check_decoders: bool,

    /// Show how LINE (or each line of stdin) is parsed and decoded: header,
    /// the decoder that matched, every field; stores nothing
    #[arg(long, value_name = "LINE", num_args = 0..=1, conflicts_with_all = ["follow", "clear", "index", "gather", "snapshot"])]
    explain: Option<Option<String>>,

    /// Delete what is past retention ([section.NAME] retention, [retention] default,
    /// alerts, snapshots) in small batches that a running ingest hardly notices, and
    /// report the rows and bytes freed; with -s, only that section's table. A
    /// following (not --once) or listening siemparse does this at most once an hour
    #[arg(long, conflicts_with_all = ["listen", "follow", "clear", "index", "gather", "snapshot", "check_decoders", "explain"])]
    prune: bool,

    /// With --prune, first write the event rows it deletes to DIR/TABLE/DAY.RUN.ndjson.gz
    /// (gzip NDJSON, every column; synced before each batch is deleted); overrides
    /// [retention] archive
    #[arg(long, value_name = "DIR", requires = "prune")]
    archive: Option<PathBuf>,

    /// Load archive FILE (written by --prune --archive; repeatable) back into its
    /// table, or with -s into that section's table, every column under new ids;
    /// rows already there are not stored again
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["listen", "follow", "clear", "index", "gather", "snapshot", "check_decoders", "explain", "prune", "create_section"])]
    restore: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(code) = siemstress_common::cli::run_generate::<Args>(&args.generate) {
        return code;
    }
    if args.check_decoders || args.explain.is_some() {
        return match decoder_tools(&args) {
            Ok(code) => code,
            Err(e) if siemstress_common::cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                diag!("siemparse: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let Some(rt) = siemstress_common::cli::runtime("siemparse") else {
        return ExitCode::from(2);
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            diag!("siemparse: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--check-decoders` and `--explain`: the config's decoders, no database.
fn decoder_tools(args: &Args) -> anyhow::Result<ExitCode> {
    let config = args.connect.load_config()?;
    let decoders = Decoders::load(&config)?;
    if args.check_decoders {
        return explain::check_decoders(&decoders);
    }
    let section = config.section(section_name(args), zone_flag(args)?)?;
    let parser =
        LineParser::new(section.zone, args.year, "explain").with_format(section.structured);
    let line = args.explain.as_ref().and_then(Option::as_deref);
    explain::explain(parser, &decoders, line)?;
    Ok(ExitCode::SUCCESS)
}

/// `-s`, or `default`.
fn section_name(args: &Args) -> &str {
    args.section.as_deref().unwrap_or("default")
}

/// `--listen`: serves every URL until SIGTERM/SIGINT, then stores what
/// was received and exits 0.
async fn ingest_network(
    args: &Args,
    config: &siemstress_common::config::Config,
) -> anyhow::Result<()> {
    let stop = Stop::new();
    let signals = stop_on_signal(&stop);
    let zone = zone_flag(args)?;
    let routes = listen_routes(args, config, zone, None)?;
    let db_url = config.database_url(args.connect.db.as_deref())?;
    let reload_args = (args.connect.clone(), args.section.clone(), args.year);
    let (routes, hup) = reload::on_hangup(routes, args.quiet, move |old| {
        let (connect, section, year) = &reload_args;
        let config = connect.load_config()?;
        same_database(&config, connect, &db_url)?;
        let new = listen_routes_of(section.as_deref(), *year, &config, zone, Some(old))?;
        let (o, n) = (old.listen(), new.listen());
        if (&o.tls_cert, &o.tls_key, &o.tls_client_ca, o.max_connections)
            != (&n.tls_cert, &n.tls_key, &n.tls_client_ca, n.max_connections)
        {
            diag!(
                "siemparse: SIGHUP: [listen] tls_cert, tls_key, tls_client_ca and \
                 max_connections take effect at the next start"
            );
        }
        Ok(new)
    })?;
    let policy = config.retention_policy()?;
    // The writer waits out database outages itself (pipeline::write_all).
    siemstress_common::db::options::retrying_daemon();
    let db = args.connect.connect(config).await?;
    let mut writers = Vec::new();
    let first = routes.get();
    for s in &first.sections {
        db.ensure_event_table(&s.table).await?;
        writers.push(db.event_writer(&s.table).await?);
    }
    let tables = first
        .sections
        .iter()
        .map(|s| s.table.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let batch_rows = args.batch as usize;
    let (tx, rx) = pipeline::channel(listen::QUEUED_BATCHES, false);
    drop(first);
    let intake = listen::Intake {
        routes,
        tx,
        batch_rows,
        stop: stop.watch.subscribe(),
        warnings: Arc::default(),
        quiet: args.quiet,
    };
    let tasks = listen::start(&args.listen, intake).await?;
    let pruner = prune::spawn_hourly(
        db.clone(),
        policy,
        args.quiet,
        siemstress_common::db::retention::StopFlag(stop.flag.clone()),
    );
    let stored = Arc::new(AtomicU64::new(0));
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let ticker = show_progress.then(|| progress::spawn(stored.clone()));
    // The writer ends when every listener has stopped and sent what it had.
    let retry = Retry::new("siemparse", stop.flag.clone()).with_db(db.clone());
    let written = pipeline::write_all(writers, rx, batch_rows, stored.clone(), retry).await;
    signals.abort();
    if let Some(p) = pruner {
        p.abort();
    }
    hup.abort();
    if let Some(t) = ticker {
        t.abort();
        diag!("");
    }
    for t in tasks {
        t.abort();
    }
    db.close().await;
    let longest = written?;
    if !args.quiet {
        diag!(
            "siemparse: stored {} lines in tables {tables}; the longest commit took {} ms",
            stored.load(Ordering::Relaxed),
            longest.as_millis()
        );
    }
    Ok(())
}

/// `[listen]` routes of the config (`-s` names the default section).
fn listen_routes(
    args: &Args,
    config: &siemstress_common::config::Config,
    zone: Option<Zone>,
    old: Option<&listen::Routes>,
) -> anyhow::Result<listen::Routes> {
    listen_routes_of(args.section.as_deref(), args.year, config, zone, old)
}

/// `[listen]` routes of `config`; with `old` (a reload), its sections keep
/// their places and tables, and no section may be added.
fn listen_routes_of(
    section: Option<&str>,
    year: Option<i32>,
    config: &siemstress_common::config::Config,
    zone: Option<Zone>,
    old: Option<&listen::Routes>,
) -> anyhow::Result<listen::Routes> {
    let listen_cfg = config.listen()?;
    let default = section
        .map(str::to_owned)
        .or_else(|| listen_cfg.section.clone())
        .unwrap_or_else(|| "default".to_owned());
    let decoders = Decoders::load(config)?;
    listen::Routes::new(listen_cfg, &default, year, decoders, old, |name| {
        Ok(config.section(name, zone)?)
    })
}

/// A reload cannot move siemparse to another database.
fn same_database(
    config: &siemstress_common::config::Config,
    connect: &ConnectArgs,
    url: &str,
) -> anyhow::Result<()> {
    if config.database_url(connect.db.as_deref())? != url {
        bail!("the database changed ([database] url): restart siemparse to use another one");
    }
    Ok(())
}

/// The stop request of SIGTERM/SIGINT, for reader threads (a flag) and
/// network tasks (a watch).
struct Stop {
    flag: Arc<AtomicBool>,
    watch: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stop {
    fn new() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            watch: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

/// `-z`, parsed.
fn zone_flag(args: &Args) -> anyhow::Result<Option<Zone>> {
    args.timezone
        .as_deref()
        .map(Zone::parse)
        .transpose()
        .context("-z/--timezone")
}

/// Where a prune or a restore reports (nowhere with `-q`). The job goes on
/// whatever becomes of the report: once stdout fails, the rest of the
/// report is dropped, not the job; a reader that has gone (`| head`) is
/// quiet, any other error (a full disk) is said once on stderr.
fn report_out(quiet: bool) -> Box<dyn std::io::Write + Send> {
    /// Stdout until a write fails, then nothing.
    struct Report(Option<std::io::Stdout>);
    impl Report {
        fn failed(&mut self, e: &std::io::Error) {
            self.0 = None;
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                diag!("siemparse: warning: the report on stdout is incomplete: {e}");
            }
        }
    }
    impl std::io::Write for Report {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(Err(e)) = self.0.as_mut().map(|out| out.write_all(buf)) {
                self.failed(&e);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if let Some(Err(e)) = self.0.as_mut().map(|out| out.flush()) {
                self.failed(&e);
            }
            Ok(())
        }
    }
    if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(Report(Some(std::io::stdout())))
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.connect.load_config()?;
    if args.prune {
        return prune(&args, &config).await;
    }
    if !args.restore.is_empty() {
        let stop = Stop::new();
        let signals = stop_on_signal(&stop);
        let db = args.connect.connect(&config).await?;
        let mut retry = Retry::new("siemparse", stop.flag.clone()).with_db(db.clone());
        let mut out = report_out(args.quiet);
        let done = restore::run(
            &db,
            &config,
            args.section.as_deref(),
            &args.restore,
            &mut retry,
            &mut out,
        )
        .await;
        signals.abort();
        db.close().await;
        return done;
    }
    if args.gather.is_some() || args.snapshot.is_some() {
        let opts = snapshot_input::Opts {
            gather: args.gather,
            root: args.root,
            snapshot: args.snapshot,
            keys: args.key,
            quiet: args.quiet,
        };
        return snapshot_input::run(&args.connect, &config, opts).await;
    }
    if !args.listen.is_empty() {
        return ingest_network(&args, &config).await;
    }
    if let Some(name) = &args.create_section {
        return create_section(&args, &config, name).await;
    }
    let section = config.section(section_name(&args), zone_flag(&args)?)?;
    let policy = config.retention_policy()?;
    // SIGTERM/SIGINT are caught from here on (loading decoders and
    // connecting take a moment): the ingest then stops cleanly, exit 0.
    let stop = Stop::new();
    let signals = (!args.clear && !args.index).then(|| stop_on_signal(&stop));
    let reference = args
        .reference_time
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| section.zone.local_at(t.timestamp_millis()))
                .with_context(|| {
                    format!("--reference-time {t:?}: expected RFC 3339, e.g. 2025-01-05T10:00:00Z")
                })
        })
        .transpose()?;
    // Decoder files are checked before the database is touched.
    let spec = reload::ParserSpec {
        section: section.clone(),
        decoders: Decoders::load(&config)?,
    };
    let db_url = config.database_url(args.connect.db.as_deref())?;
    let reload_args = (
        args.connect.clone(),
        section.name.clone(),
        zone_flag(&args)?,
    );
    // SIGHUP: the section's zone and format and the decoders are read anew.
    let (settings, hup) = reload::on_hangup(spec, args.quiet, move |old| {
        let (connect, name, zone) = &reload_args;
        let config = connect.load_config()?;
        same_database(&config, connect, &db_url)?;
        let section = config.section(name, *zone)?;
        reload::check_same_table(&old.section, &section)?;
        Ok(reload::ParserSpec {
            section,
            decoders: Decoders::load(&config)?,
        })
    })?;
    let year = args.year;
    let new_parser = |source: &str| settings.get().parser(year, reference, source);
    if !args.clear && !args.index {
        // The writer waits out database outages itself (pipeline::write_all).
        siemstress_common::db::options::retrying_daemon();
    }
    let db = args.connect.connect(&config).await?;

    if args.clear {
        return clear(&db, &section, args.force).await;
    }
    if args.index {
        return index(&db, &section, args.quiet).await;
    }

    db.ensure_event_table(&section.table).await?;
    let mut writer = db.event_writer(&section.table).await?;
    let stored = Arc::new(AtomicU64::new(0));
    let batch_rows = args.batch as usize;
    let (tx, rx) = pipeline::channel(4, true);

    // Reader threads, and the followers still in standby (they start theirs).
    let readers: Readers = Arc::default();
    let mut standby = Vec::new();
    let mut leases = None;
    if args.follow.is_empty() {
        let parser = new_parser("stdin");
        // One source per run: two imports on one host are two sources.
        let tx = tx.with_source(
            siemstress_common::db::sources::KIND_STDIN,
            format!("stdin:{}", std::process::id()),
        );
        let settings = settings.clone();
        readers
            .lock()
            .expect("readers")
            .push(std::thread::spawn(move || {
                stdin::read_stdin(parser, settings, tx, batch_rows)
            }));
    } else {
        let ttl = match &args.lease_ttl {
            Some(t) => lease_ttl(t)?,
            None => follow_lease::DEFAULT_TTL,
        };
        let l = follow_lease::Leases::new(db.clone(), ttl);
        writer.fence(l.fence());
        for (path, given) in follow::distinct_paths(&args.follow)? {
            let key = path.to_string_lossy().into_owned();
            let start = FollowStart {
                db: db.clone(),
                given_key: (given != path).then(|| given.to_string_lossy().into_owned()),
                parser: new_parser(&key),
                job: follow::FollowJob {
                    section: section.name.clone(),
                    stored: None,
                    path,
                    from_end: args.from_end,
                    once: args.once,
                    batch_rows,
                    stop: stop.flag.clone(),
                    settings: settings.clone(),
                },
                key,
                tx: tx.clone(),
                readers: readers.clone(),
            };
            match l.take(&section.name, &start.key).await? {
                Ok(()) => start.start().await?,
                Err(info) if args.once => {
                    diag!(
                        "siemparse: --follow {}: skipped: {}",
                        start.key,
                        follow_lease::held_by(&info)
                    );
                }
                Err(info) => {
                    if !args.quiet {
                        diag!(
                            "siemparse: --follow {}: standby: {}; taking over when it stops",
                            start.key,
                            follow_lease::held_by(&info)
                        );
                    }
                    let (l, stop, quiet) = (l.clone(), stop.flag.clone(), args.quiet);
                    let section = section.name.clone();
                    standby.push(tokio::spawn(async move {
                        if l.wait(&section, &start.key, &stop).await? {
                            if !quiet {
                                diag!(
                                    "siemparse: --follow {}: took over the lease; following",
                                    start.key
                                );
                            }
                            start.start().await?;
                        }
                        Ok::<(), anyhow::Error>(())
                    }));
                }
            }
        }
        leases = Some(l);
    }
    let renewal = leases.as_ref().map(|l| l.spawn_renewal(stop.flag.clone()));
    drop(tx);

    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let ticker = show_progress.then(|| progress::spawn(stored.clone()));

    // A long-running follower prunes at most once an hour (not --once: cron
    // runs `siemparse --prune` itself).
    let pruner = (!args.follow.is_empty() && !args.once)
        .then(|| {
            prune::spawn_hourly(
                db.clone(),
                policy,
                args.quiet,
                siemstress_common::db::retention::StopFlag(stop.flag.clone()),
            )
        })
        .flatten();
    let retry = Retry::new("siemparse", stop.flag.clone()).with_db(db.clone());
    let write = pipeline::write_all(vec![writer], rx, batch_rows, stored.clone(), retry);
    // After SIGTERM/SIGINT the readers flush and stop; one blocked in a read
    // (stdin, a pipe without writer) cannot, so give up on it after a grace period.
    let finished = tokio::select! {
        r = write => Some(r),
        _ = grace_after_stop(stop.flag.clone()) => None,
    };
    if let Some(s) = signals {
        s.abort();
    }
    if let Some(p) = pruner {
        p.abort();
    }
    hup.abort();
    if let Some(t) = ticker {
        t.abort();
        diag!("");
    }
    if let Some(r) = renewal {
        r.abort();
    }
    let finished = finish(finished, standby, &readers).await;
    if let Some(l) = &leases {
        l.release_all().await;
    }
    db.close().await;
    let lost = leases.as_ref().and_then(|l| l.lost());
    let longest = match finished {
        Err(e) if args.follow.is_empty() => {
            // Rows of stdin are stored in order: say where to feed again from.
            let n = stored.load(Ordering::Relaxed);
            return Err(e.context(format!(
                "stdin: the first {n} rows were stored, nothing after them \
                 (feed the input again from there)"
            )));
        }
        // Stopped while waiting for the database: the offsets stayed with
        // the rows stored, so the next run goes on from there.
        Err(e)
            if e.root_cause()
                .downcast_ref::<siemstress_common::Error>()
                .is_some_and(|e| matches!(e, siemstress_common::Error::StoppedWaiting { .. })) =>
        {
            diag!(
                "siemparse: {e:#}; {} lines were stored, and the next run resumes from the \
                 stored offsets",
                stored.load(Ordering::Relaxed)
            );
            return Ok(());
        }
        // The writer's error says which lease was lost, if it was.
        Err(e) => return Err(e),
        Ok(_) if lost.is_some() => bail!("{}", lost.unwrap_or_default()),
        Ok(None) => return Ok(()),
        Ok(Some(longest)) => longest,
    };
    if show_progress || (!args.follow.is_empty() && !args.once && !args.quiet) {
        // A follower also says how long a commit took at most (a prune or
        // another writer holding the database shows here).
        diag!(
            "siemparse: stored {} lines in table {}; the longest commit took {} ms",
            stored.load(Ordering::Relaxed),
            section.table,
            longest.as_millis()
        );
    }
    Ok(())
}

/// `--prune`: what retention says is past, deleted in batches; the report
/// goes to stdout (nothing with -q). SIGTERM/SIGINT stop it between batches.
async fn prune(args: &Args, config: &siemstress_common::config::Config) -> anyhow::Result<()> {
    let mut policy = config.retention_policy()?;
    if let Some(dir) = &args.archive {
        policy.archive = Some(dir.clone());
    }
    let only = match &args.section {
        Some(name) => Some(config.section(name, None)?.table),
        None => None,
    };
    let stop = Stop::new();
    let signals = stop_on_signal(&stop);
    let db = args.connect.connect(config).await?;
    let mut out = report_out(args.quiet);
    let done = prune::run(
        &db,
        &policy,
        only.as_ref(),
        job_lease::IfBusy::Wait,
        &siemstress_common::db::retention::StopFlag(stop.flag.clone()),
        &mut out,
    )
    .await;
    signals.abort();
    db.close().await;
    done
}

/// The reader threads of a run.
type Readers = Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<anyhow::Result<()>>>>>;

/// A followed file whose lease is ours: reads its stored offset, then
/// starts its reader thread.
struct FollowStart {
    db: siemstress_common::db::Database,
    /// The offset's key.
    key: String,
    /// The path as given, where it differs from the key: offsets stored
    /// before paths were canonicalized are found under it.
    given_key: Option<String>,
    parser: LineParser,
    job: follow::FollowJob,
    tx: pipeline::BatchSender,
    readers: Readers,
}

impl FollowStart {
    async fn start(self) -> anyhow::Result<()> {
        let FollowStart {
            db,
            key,
            given_key,
            parser,
            mut job,
            tx,
            readers,
        } = self;
        job.stored = db.checkpoint(&job.section, &key).await?;
        if let (None, Some(given)) = (&job.stored, &given_key) {
            job.stored = db.checkpoint(&job.section, given).await?.map(|cp| {
                siemstress_common::db::Checkpoint {
                    path: key.clone(),
                    ..cp
                }
            });
        }
        let tx = tx.with_source(siemstress_common::db::sources::KIND_FOLLOW, key);
        let reader = std::thread::spawn(move || follow::follow(job, parser, tx));
        readers.lock().expect("readers").push(reader);
        Ok(())
    }
}

/// `--lease-ttl`: at least 3 s (renewed every third of it).
fn lease_ttl(s: &str) -> anyhow::Result<std::time::Duration> {
    let d = siemstress_common::time::parse_duration(s).context("--lease-ttl")?;
    if d < std::time::Duration::from_secs(3) {
        bail!("--lease-ttl {s}: at least 3s (the lease is renewed every third of it)");
    }
    Ok(d)
}

/// The end of an ingest run: the longest commit when the writer finished
/// and every reader and standby follower ended well; `None` when the
/// writer was given up on after a stop (a reader blocked in a read).
async fn finish(
    finished: Option<anyhow::Result<std::time::Duration>>,
    standby: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    readers: &Readers,
) -> anyhow::Result<Option<std::time::Duration>> {
    let longest = match finished {
        Some(Ok(longest)) => longest,
        Some(Err(e)) => return Err(e),
        None => return Ok(None),
    };
    for s in standby {
        s.await.context("a standby follower")??;
    }
    let readers = std::mem::take(&mut *readers.lock().expect("readers"));
    for r in readers {
        match r.join() {
            Ok(r) => r?,
            Err(_) => bail!("a reader thread panicked"),
        }
    }
    Ok(Some(longest))
}

/// Resolves a few seconds after the stop flag is raised.
async fn grace_after_stop(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
}

/// SIGINT/SIGTERM: readers finish their batch, the writer commits, exit 0.
/// The handlers are installed before this returns; a task waits for them.
fn stop_on_signal(stop: &Stop) -> tokio::task::JoinHandle<()> {
    let (flag, watch) = (stop.flag.clone(), stop.watch.clone());
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        flag.store(true, Ordering::Relaxed);
        watch.send_replace(true);
    })
}

/// `--create-section NAME`: the section's event table (and search index),
/// registered; on MariaDB INSERT on it granted to the collector role.
async fn create_section(
    args: &Args,
    config: &siemstress_common::config::Config,
    name: &str,
) -> anyhow::Result<()> {
    let section = config.section(name, zone_flag(args)?)?;
    let db = args.connect.connect(config).await?;
    db.ensure_event_table(&section.table).await?;
    let granted = db.grant_collector(&section.table).await;
    db.close().await;
    match granted {
        Ok(Some(role)) => diag!(
            "siemparse: section {name}: table {} ready; INSERT on it granted to role {role}",
            section.table
        ),
        Ok(None) => diag!("siemparse: section {name}: table {} ready", section.table),
        Err(e) => diag!(
            "siemparse: section {name}: table {} ready; warning: {e}",
            section.table
        ),
    }
    Ok(())
}

/// Fails unless the section's table exists (for actions on existing data).
async fn require_table(
    db: &siemstress_common::db::Database,
    section: &siemstress_common::config::Section,
) -> anyhow::Result<()> {
    if !db.event_table_exists(&section.table).await? {
        bail!(
            "section {}: table {} does not exist",
            section.name,
            section.table
        );
    }
    Ok(())
}

/// Rows per step of `--index`: two words of MariaDB's block bitmap (a word
/// cut by a step is upserted twice); any size suits SQLite.
const INDEX_RUN_ROWS: u64 = 2 * 65_536;

/// `--index`: catch the search index up with the table, in steps of their
/// own transactions (an interrupted run keeps what it did).
async fn index(
    db: &siemstress_common::db::Database,
    section: &siemstress_common::config::Section,
    quiet: bool,
) -> anyhow::Result<()> {
    require_table(db, section).await?;
    // Creates the index of a table made by an older siemparse.
    db.ensure_event_table(&section.table).await?;
    let mut writer = db.event_writer(&section.table).await?;
    let tty = !quiet && std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut total = 0u64;
    let mut retried = false;
    loop {
        let n = writer.index_step(INDEX_RUN_ROWS).await?;
        if n == 0 {
            // MariaDB: a step that met a new gap in the ids started its grace
            // period; one more step goes on if it is over or the gap was filled.
            if writer.index_at_gap() && !retried {
                retried = true;
                continue;
            }
            break;
        }
        retried = false;
        total += n;
        if tty {
            let _ = write!(std::io::stderr(), "\rsiemparse: indexed {total} rows");
        }
    }
    db.close().await;
    if tty {
        diag!(
            "\rsiemparse: indexed {total} rows of table {} in {:.1} s",
            section.table,
            started.elapsed().as_secs_f64()
        );
        if writer.index_at_gap() {
            diag!(
                "siemparse: stopped before a gap in the ids (an insert in flight, or a \
                 rollback: stepped over after 2 minutes); run --index again later"
            );
        }
    }
    Ok(())
}

async fn clear(
    db: &siemstress_common::db::Database,
    section: &siemstress_common::config::Section,
    force: bool,
) -> anyhow::Result<()> {
    require_table(db, section).await?;
    if !force {
        if !std::io::stdin().is_terminal() {
            bail!(
                "--clear deletes table {}: add --force to confirm",
                section.table
            );
        }
        let _ = write!(
            std::io::stderr(),
            "Delete table {} and all its rows? [y/N] ",
            section.table
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            bail!("not confirmed; nothing deleted");
        }
    }
    db.drop_event_table(&section.name, &section.table).await?;
    diag!("siemparse: table {} deleted", section.table);
    Ok(())
}
