-- Snapshots: one row per gather run (`siemparse --gather KIND` or
-- `cmd | siemparse --snapshot NAME`), and the rows of each run.
-- `status` is 'ok' or 'failed'; a diff compares a run with the previous 'ok'
-- run of the same name and host.
CREATE TABLE IF NOT EXISTS snapshot_runs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  host VARCHAR(255) NOT NULL,
  taken BIGINT NOT NULL,           -- start of the run, UTC epoch ms
  status VARCHAR(16) NOT NULL,     -- ok | failed
  finished BIGINT,                 -- end of the run, UTC epoch ms
  row_count BIGINT NOT NULL DEFAULT 0,
  message TEXT,                    -- why a run failed, or warnings
  KEY snapshot_runs_name_host (name, host, status, id),
  KEY snapshot_runs_taken (taken)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- `seq` keeps the gatherer's order; `row_key` is the natural key (user name,
-- path, proto/address:port, ...), unique within a run; `value` is JSON.
-- Keys can be long (paths), so the primary key is (run_id, seq).
CREATE TABLE IF NOT EXISTS snapshot_rows (
  run_id BIGINT NOT NULL,
  seq INT NOT NULL,
  row_key TEXT NOT NULL,
  value MEDIUMTEXT NOT NULL,
  PRIMARY KEY (run_id, seq),
  CONSTRAINT snapshot_rows_run FOREIGN KEY (run_id) REFERENCES snapshot_runs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
