//! End-to-end tests: the real binaries against SQLite and (when configured) MariaDB.

mod builtin_rules;
mod color;
mod decoders;
mod defects;
mod deploy;
mod follow;
mod galera;
mod gather;
mod hardening;
mod ingest;
mod leases;
mod listen;
mod loghub;
mod manpages;
mod privileges;
mod query;
mod query_follow;
mod regressions;
mod reload;
mod resilience;
mod retention;
mod rule_pack;
mod sections;
mod snapshot;
mod trigger;
mod trigger_snapshot;
