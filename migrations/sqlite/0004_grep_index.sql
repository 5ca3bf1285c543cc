-- Progress of the `--grep` search index (SQLite: an FTS5 trigram table
-- "<table>$grep" per event table, filled behind ingest by siemparse).
-- Every row of `tbl` with id <= indexed_upto is in the index; rows above it
-- are scanned by queries.
CREATE TABLE grep_index (
  tbl TEXT PRIMARY KEY NOT NULL,
  indexed_upto INTEGER NOT NULL,
  updated INTEGER NOT NULL
);
