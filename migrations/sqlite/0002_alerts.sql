-- siemtrigger: alerts, the events each alert covers, per-rule progress and
-- open windows, the lease that keeps two instances from double-firing, and
-- the action runs (retried until they succeed or give up; never lost).

CREATE TABLE alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rule TEXT NOT NULL,
  severity TEXT NOT NULL,
  "key" TEXT NOT NULL,
  ts INTEGER NOT NULL,          -- event time of the firing (UTC epoch ms)
  first_ts INTEGER NOT NULL,    -- start of the window that fired
  count INTEGER NOT NULL,
  message TEXT NOT NULL,
  created INTEGER NOT NULL,     -- wall-clock time of the insert
  event_table TEXT NOT NULL,    -- event table the rule ran over
  window_end INTEGER            -- first_ts + window (NULL for single)
);
CREATE INDEX alerts_ts ON alerts (ts);
CREATE INDEX alerts_rule_ts ON alerts (rule, ts);

CREATE TABLE alert_events (
  alert_id INTEGER NOT NULL,
  event_table TEXT NOT NULL,
  event_id INTEGER NOT NULL,
  PRIMARY KEY (alert_id, event_table, event_id)
);

-- Last event id each rule has consumed per table, with the table's event
-- time (max ts seen) and the rule's fingerprint when the state was written.
CREATE TABLE trigger_progress (
  rule TEXT NOT NULL,
  event_table TEXT NOT NULL,
  last_id INTEGER NOT NULL,
  max_ts INTEGER,
  fingerprint TEXT NOT NULL,
  updated INTEGER NOT NULL,
  PRIMARY KEY (rule, event_table)
);

-- Open windows, one row per rule, table and key (JSON state).
CREATE TABLE trigger_windows (
  rule TEXT NOT NULL,
  event_table TEXT NOT NULL,
  key_hash TEXT NOT NULL,
  wkey TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (rule, event_table, key_hash)
);

-- One row per lease name: who holds it and until when; beats counts renewals.
CREATE TABLE trigger_lease (
  name TEXT PRIMARY KEY NOT NULL,
  holder TEXT NOT NULL,
  expires INTEGER NOT NULL,
  beats INTEGER NOT NULL
);

CREATE TABLE action_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id INTEGER NOT NULL,
  action TEXT NOT NULL,
  status TEXT NOT NULL,         -- pending | ok | failed
  attempts INTEGER NOT NULL,
  next_try INTEGER NOT NULL,
  last_error TEXT,
  updated INTEGER NOT NULL
);
CREATE INDEX action_runs_due ON action_runs (status, next_try);
CREATE INDEX action_runs_alert ON action_runs (alert_id);
