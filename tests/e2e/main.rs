//! End-to-end tests: the real binaries against SQLite and (when configured) MariaDB.

// Test output is for the person running the tests; a closed pipe there is moot.
#![allow(clippy::disallowed_macros)]

mod admin_pass;
mod archive;
mod builtin_rules;
mod color;
mod db_tls;
mod decoders;
mod defects;
mod deploy;
mod doc_commands;
mod follow;
mod galera;
mod gather;
mod hardening;
mod ingest;
mod leases;
mod listen;
mod loghub;
mod manpages;
mod outage;
mod privileges;
mod query;
mod query_follow;
mod regressions;
mod reload;
mod resilience;
mod retention;
mod rule_pack;
mod sections;
mod sigma;
mod snapshot;
mod trigger;
mod trigger_snapshot;
mod watermark;
