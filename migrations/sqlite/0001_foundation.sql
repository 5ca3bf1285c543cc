-- Registry of event tables (one per config section), created on first use.
CREATE TABLE event_tables (
  name TEXT PRIMARY KEY NOT NULL,
  created INTEGER NOT NULL
);

-- Resume points of `siemparse --follow`, written in the same transaction as
-- the rows they cover.
CREATE TABLE follow_state (
  section TEXT NOT NULL,
  path TEXT NOT NULL,
  dev INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  byte_offset INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  PRIMARY KEY (section, path)
);
