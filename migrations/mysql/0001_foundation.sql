-- Registry of event tables (one per config section), created on first use.
CREATE TABLE IF NOT EXISTS event_tables (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  created BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Resume points of `siemparse --follow`, written in the same transaction as
-- the rows they cover.
CREATE TABLE IF NOT EXISTS follow_state (
  section VARCHAR(64) NOT NULL,
  path VARCHAR(700) NOT NULL,
  dev BIGINT NOT NULL,
  inode BIGINT NOT NULL,
  byte_offset BIGINT NOT NULL,
  updated BIGINT NOT NULL,
  PRIMARY KEY (section, path)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
