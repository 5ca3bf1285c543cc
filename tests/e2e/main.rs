//! End-to-end tests: the real binaries against SQLite and (when configured) MariaDB.

mod decoders;
mod defects;
mod follow;
mod gather;
mod hardening;
mod ingest;
mod loghub;
mod query;
mod regressions;
mod resilience;
mod rule_pack;
mod snapshot;
mod trigger;
mod trigger_snapshot;
