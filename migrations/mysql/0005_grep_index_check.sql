-- Same version as on SQLite (see migrations/sqlite/0005); unused on MariaDB.
ALTER TABLE grep_index ADD COLUMN IF NOT EXISTS upto_received BIGINT NULL;
