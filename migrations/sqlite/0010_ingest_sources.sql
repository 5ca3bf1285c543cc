-- Watermarks for siemtrigger (issue 16): every ingest source (a followed
-- file, stdin, a listener's connection) of every collector host records, per
-- event table, the latest event time it has committed, in the same
-- transaction as its rows; a clean end marks it finished. siemtrigger
-- evaluates the rows below the slowest active source's time (see
-- common/src/db/sources.rs). `skey` is the SHA-256 of host, kind and name.
CREATE TABLE ingest_sources (
  skey TEXT NOT NULL,
  tbl TEXT NOT NULL,
  host TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  max_ts INTEGER,
  stored_rows INTEGER NOT NULL,
  first_commit INTEGER NOT NULL,
  last_commit INTEGER NOT NULL,
  finished INTEGER NOT NULL,
  PRIMARY KEY (skey, tbl)
);

-- siemtrigger's position per rule and table: `last_id` is the highest id
-- considered, `wm` the watermark below which rows up to `last_id` were
-- evaluated, `gaps` the ids up to `last_id` that were not visible then
-- (JSON; a row that commits into one later is found as a late row).
ALTER TABLE trigger_progress ADD COLUMN wm INTEGER;
ALTER TABLE trigger_progress ADD COLUMN gaps TEXT;
