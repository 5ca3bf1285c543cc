-- siemstress on a shared MariaDB: one role per kind of account, each with
-- only the privileges its tools need (README, "Least privilege on MariaDB").
-- A compromised collector host can then add rows to event tables, and
-- nothing else: it cannot read, change or delete any host's logs, alerts or
-- rule state, and cannot queue actions.
--
-- Two files, as MariaDB grants on a table only once it exists:
--   roles.sql   (this file) the roles, and what they get on the whole database;
--               run as root before the admin account's first run;
--   grants.sql  what they get on siemstress's own tables; run (as root or as
--               the admin account) once the schema exists, and again after an
--               upgrade that adds tables.
-- The database is named `siemstress` here, and the roles after it:
-- `siemparse --create-section NAME` (admin) grants INSERT on a new section's
-- table to `<database>_collector`. For another name, replace every
-- `siemstress` in both files. tests/e2e/privileges.rs runs them.

-- admin: migrations (any tool applies them on first use), event tables of
-- new sections (`siemparse --create-section NAME`), `siemparse --clear` and
-- `--index`, and the table grants of grants.sql.
CREATE ROLE IF NOT EXISTS siemstress_admin;
GRANT ALL PRIVILEGES ON siemstress.* TO siemstress_admin WITH GRANT OPTION;

-- collector: `siemparse` on each host (grants.sql; INSERT on each event
-- table from --create-section).
CREATE ROLE IF NOT EXISTS siemstress_collector;

-- trigger: `siemtrigger`. Reads everything (writes: grants.sql).
CREATE ROLE IF NOT EXISTS siemstress_trigger;
GRANT SELECT ON siemstress.* TO siemstress_trigger;

-- reader: `siemquery` (search, alerts, snapshots, reports). SELECT only.
CREATE ROLE IF NOT EXISTS siemstress_reader;
GRANT SELECT ON siemstress.* TO siemstress_reader;

-- Accounts: one per collector host, so that one can be locked alone.
--   CREATE USER 'web1'@'10.0.0.11' IDENTIFIED BY '...';
--   GRANT siemstress_collector TO 'web1'@'10.0.0.11';
--   SET DEFAULT ROLE siemstress_collector FOR 'web1'@'10.0.0.11';
-- and likewise siemstress_trigger, siemstress_reader, siemstress_admin.
