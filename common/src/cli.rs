//! Flags every tool takes the same way (`-c FILE`, `--db URL`), and the one
//! place that resolves them into a config and a connected database.

use std::path::PathBuf;

use crate::Error;
use crate::config::Config;
use crate::db::{Backend, Database};

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
            eprintln!("{tool}: cannot start: {e}");
            None
        }
    }
}
