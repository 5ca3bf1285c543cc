-- Watermarks for siemtrigger (issue 16): every ingest source (a followed
-- file, stdin, a listener's connection) of every collector host records, per
-- event table, the latest event time it has committed, in the same
-- transaction as its rows; a clean end marks it finished. siemtrigger
-- evaluates the rows below the slowest active source's time (see
-- common/src/db/sources.rs). `skey` is the SHA-256 of host, kind and name.
CREATE TABLE IF NOT EXISTS ingest_sources (
  skey CHAR(64) NOT NULL,
  tbl VARCHAR(64) NOT NULL,
  host VARCHAR(255) NOT NULL,
  kind VARCHAR(16) NOT NULL,
  name VARCHAR(2048) NOT NULL,
  max_ts BIGINT,
  stored_rows BIGINT NOT NULL,
  first_commit BIGINT NOT NULL,
  last_commit BIGINT NOT NULL,
  finished TINYINT NOT NULL,
  PRIMARY KEY (skey, tbl)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- siemtrigger's position per rule and table: `last_id` is the highest id
-- considered, `wm` the watermark below which rows up to `last_id` were
-- evaluated, `gaps` the ids up to `last_id` that were not visible then
-- (JSON; a row that commits into one later is found as a late row).
ALTER TABLE trigger_progress ADD COLUMN IF NOT EXISTS wm BIGINT;
ALTER TABLE trigger_progress ADD COLUMN IF NOT EXISTS gaps MEDIUMTEXT;
