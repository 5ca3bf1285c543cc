-- Snapshots: one row per gather run (`siemparse --gather KIND` or
-- `cmd | siemparse --snapshot NAME`), and the rows of each run.
-- `status` is 'ok' or 'failed'; a diff compares a run with the previous 'ok'
-- run of the same name and host.
CREATE TABLE snapshot_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  host TEXT NOT NULL,
  taken INTEGER NOT NULL,          -- start of the run, UTC epoch ms
  status TEXT NOT NULL,            -- ok | failed
  finished INTEGER,                -- end of the run, UTC epoch ms
  row_count INTEGER NOT NULL DEFAULT 0,
  message TEXT                     -- why a run failed, or warnings
);
CREATE INDEX snapshot_runs_name_host ON snapshot_runs (name, host, status, id);
CREATE INDEX snapshot_runs_taken ON snapshot_runs (taken);

-- `seq` keeps the gatherer's order; `row_key` is the natural key (user name,
-- path, proto/address:port, ...), unique within a run; `value` is JSON.
CREATE TABLE snapshot_rows (
  run_id INTEGER NOT NULL REFERENCES snapshot_runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  row_key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
