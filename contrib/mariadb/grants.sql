-- The table grants of the siemstress roles (see roles.sql, which creates
-- the roles and explains the two files). Run as root or as the admin
-- account once the schema exists, and after upgrades that add tables.
-- Replace every `siemstress` for another database name.

-- collector: INSERT into event tables (granted per table by
-- `siemparse --create-section`; never SELECT, UPDATE or DELETE of their
-- rows), its follow offsets and follow leases, its ingest sources (their
-- latest event time, siemtrigger's watermark), snapshot runs (--gather,
-- --snapshot), and the migration check.
GRANT SELECT ON siemstress._sqlx_migrations TO siemstress_collector;
GRANT SELECT ON siemstress.event_tables TO siemstress_collector;
GRANT SELECT, INSERT, UPDATE ON siemstress.follow_state TO siemstress_collector;
GRANT SELECT, INSERT, UPDATE ON siemstress.follow_lease TO siemstress_collector;
GRANT SELECT, INSERT, UPDATE ON siemstress.ingest_sources TO siemstress_collector;
GRANT SELECT, INSERT, UPDATE ON siemstress.snapshot_runs TO siemstress_collector;
GRANT SELECT, INSERT, UPDATE ON siemstress.snapshot_rows TO siemstress_collector;

-- trigger: its rule state, its lease, alerts and the action queue, and
-- forgetting ingest sources that finished long ago.
GRANT INSERT, UPDATE, DELETE ON siemstress.alerts TO siemstress_trigger;
GRANT INSERT, UPDATE, DELETE ON siemstress.alert_events TO siemstress_trigger;
GRANT INSERT, UPDATE, DELETE ON siemstress.trigger_progress TO siemstress_trigger;
GRANT INSERT, UPDATE, DELETE ON siemstress.trigger_windows TO siemstress_trigger;
GRANT INSERT, UPDATE, DELETE ON siemstress.trigger_lease TO siemstress_trigger;
GRANT INSERT, UPDATE, DELETE ON siemstress.action_runs TO siemstress_trigger;
GRANT DELETE ON siemstress.ingest_sources TO siemstress_trigger;
