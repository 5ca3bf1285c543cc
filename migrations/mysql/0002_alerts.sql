-- siemtrigger: alerts, the events each alert covers, per-rule progress and
-- open windows, the lease that keeps two instances from double-firing, and
-- the action runs (retried until they succeed or give up; never lost).

CREATE TABLE IF NOT EXISTS alerts (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  rule VARCHAR(128) NOT NULL,
  severity VARCHAR(16) NOT NULL,
  `key` TEXT NOT NULL,
  ts BIGINT NOT NULL,
  first_ts BIGINT NOT NULL,
  count BIGINT NOT NULL,
  message MEDIUMTEXT NOT NULL,
  created BIGINT NOT NULL,
  event_table VARCHAR(64) NOT NULL,
  window_end BIGINT,
  KEY alerts_ts (ts),
  KEY alerts_rule_ts (rule, ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS alert_events (
  alert_id BIGINT NOT NULL,
  event_table VARCHAR(64) NOT NULL,
  event_id BIGINT NOT NULL,
  PRIMARY KEY (alert_id, event_table, event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS trigger_progress (
  rule VARCHAR(128) NOT NULL,
  event_table VARCHAR(64) NOT NULL,
  last_id BIGINT NOT NULL,
  max_ts BIGINT,
  fingerprint VARCHAR(64) NOT NULL,
  updated BIGINT NOT NULL,
  PRIMARY KEY (rule, event_table)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS trigger_windows (
  rule VARCHAR(128) NOT NULL,
  event_table VARCHAR(64) NOT NULL,
  key_hash CHAR(64) NOT NULL,
  wkey TEXT NOT NULL,
  state MEDIUMTEXT NOT NULL,
  PRIMARY KEY (rule, event_table, key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS trigger_lease (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  holder VARCHAR(255) NOT NULL,
  expires BIGINT NOT NULL,
  beats BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS action_runs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  alert_id BIGINT NOT NULL,
  action VARCHAR(128) NOT NULL,
  status VARCHAR(16) NOT NULL,
  attempts BIGINT NOT NULL,
  next_try BIGINT NOT NULL,
  last_error TEXT,
  updated BIGINT NOT NULL,
  KEY action_runs_due (status, next_try),
  KEY action_runs_alert (alert_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
