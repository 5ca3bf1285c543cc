-- One follower per file: the lease of `siemparse --follow` on a (section,
-- path), so that two followers (a cron --once overlapping the previous run,
-- a service and a forgotten shell, two hosts) never store a line twice.
-- Every batch of the file is fenced by it (common/src/db/lease.rs).
CREATE TABLE follow_lease (
  section TEXT NOT NULL,
  path TEXT NOT NULL,
  holder TEXT NOT NULL,
  expires INTEGER NOT NULL,
  beats INTEGER NOT NULL,
  PRIMARY KEY (section, path)
);
