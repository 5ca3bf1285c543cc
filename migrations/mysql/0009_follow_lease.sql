-- One follower per file: the lease of `siemparse --follow` on a (section,
-- path), so that two followers (a cron --once overlapping the previous run,
-- a service and a forgotten shell, two hosts) never store a line twice.
-- Every batch of the file is fenced by it (common/src/db/lease.rs).
CREATE TABLE IF NOT EXISTS follow_lease (
  section VARCHAR(64) NOT NULL,
  path VARCHAR(700) NOT NULL,
  holder VARCHAR(255) NOT NULL,
  expires BIGINT NOT NULL,
  beats BIGINT NOT NULL,
  PRIMARY KEY (section, path)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
