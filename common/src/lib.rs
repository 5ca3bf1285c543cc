/*!
Shared library of siemstress, used by `siemparse`, `siemquery` and `siemtrigger`.

- [`config`]: `siemstress.toml` lookup and parsing (unknown keys are errors with key and line);
- [`db`]: the data layer: all SQL, SQLite and MariaDB behind one [`db::Database`], with migrations;
- [`time`]: zones, DST-safe local-to-UTC conversion, year inference, durations;
- [`timerange`]: the one parser of time points and ranges on the command line;
- [`parse`]: syslog lines to [`event::Event`]s; [`decode`]: the decoders that pull out
  user, source and destination fields; [`normalize`]: one spelling per address and protocol;
- [`ident`]: validation of the only names that reach SQL text;
- [`display`]: stored text escaped for a terminal; [`diag!`]: stderr lines that never panic;
- [`files`]: files created 0600 (directories 0700), password files checked;
- [`cli`]: the `-c`/`--db` flags every tool shares;
- [`holder`]: the name a process writes into the leases it holds.

```
use siemstress_common::time::Zone;
let zone = Zone::parse("+0500").unwrap();
assert_eq!(zone.name(), "+0500");
```
*/

pub mod archive;
pub mod cli;
pub mod config;
pub mod db;
pub mod decode;
pub mod diag;
pub mod display;
pub mod event;
pub mod files;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod holder;
pub mod ident;
pub mod json;
pub mod mail;
pub mod normalize;
pub mod parse;
pub mod paths;
pub mod snapshot;
pub mod structured;
pub mod time;
pub mod timerange;

use std::path::PathBuf;

/// Errors of the shared library; binaries add context with `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The I/O errors are part of the message and not a `source`: anyhow's
    // `{:#}` would print them twice.
    #[error("cannot read config {path}: {err}")]
    ConfigRead { path: PathBuf, err: std::io::Error },
    #[error("config {path}: {message}")]
    ConfigParse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    ConfigValue { key: String, message: String },
    #[error(
        "invalid name {name:?} for {what}: use letters, digits and _, not starting with a digit, at most 64"
    )]
    BadIdentifier { what: String, name: String },
    #[error("name {name:?} cannot be used for {what}: {reason}")]
    ReservedName {
        what: String,
        name: String,
        reason: String,
    },
    #[error("unknown time zone {0:?}: use an IANA name (Europe/Berlin) or an offset (+0500)")]
    BadZone(String),
    #[error("invalid duration {value:?}: {reason} (use e.g. 5m, 6h, 2d, 1w)")]
    BadDuration { value: String, reason: String },
    #[error("unsupported database URL {0:?}: use sqlite://FILE or mysql://user@host:port/db")]
    BadUrl(String),
    #[error("database: cannot {action} {target}: {message}")]
    Database {
        action: String,
        target: String,
        message: String,
        /// A server or connection error that waiting may cure (an outage, a
        /// deadlock, a Galera node out of the primary component): see
        /// [`db::retry`].
        transient: db::retry::Transient,
    },
    #[error(
        "stopped while the database was unavailable ({last}); what was not committed before \
         is not stored"
    )]
    StoppedWaiting { last: String },
    #[error(
        "database file {} does not exist (set --db, SIEMSTRESS_DATABASE_URL or [database] url)",
        .0.display()
    )]
    MissingDatabase(PathBuf),
    #[error(
        "table {table}: its name differs only in case from the existing table {existing} \
         (one table on SQLite, two on MariaDB): choose another name, or the existing spelling"
    )]
    TableCaseClash { table: String, existing: String },
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("the lease was taken over by another siemtrigger; nothing of this batch was stored")]
    LostLease,
    #[error(
        "--follow {path}: another siemparse took over this file (this one did not renew its \
         lease in time: stalled, or cut off from the database); nothing of this batch was stored"
    )]
    LostFollowLease { path: String },
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl Error {
    /// A database error; `target` must already be free of secrets. An
    /// [`sqlx::Error`] is classified as transient or permanent here
    /// (and so is a rusqlite error; see [`db::retry`]); any other cause is permanent.
    pub fn db(action: &str, target: &str, e: impl std::fmt::Display + 'static) -> Self {
        let transient = db::retry::kind_of(&e);
        Error::Database {
            action: action.to_owned(),
            target: target.to_owned(),
            message: e.to_string(),
            transient,
        }
    }

    /// True for a database error that waiting may cure (see [`db::retry`]).
    pub fn is_transient(&self) -> bool {
        self.transient() != db::retry::Transient::No
    }

    /// What kind of transient error this is, if any (see [`db::retry`]).
    pub fn transient(&self) -> db::retry::Transient {
        match self {
            Error::Database { transient, .. } => *transient,
            _ => db::retry::Transient::No,
        }
    }
}
