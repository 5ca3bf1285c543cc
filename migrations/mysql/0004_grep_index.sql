-- Progress of the `--grep` search index. Kept for the same version numbers
-- on both backends: MariaDB has no substring index (FULLTEXT matches words),
-- so no event table has an entry here and `--grep` always scans.
CREATE TABLE IF NOT EXISTS grep_index (
  tbl VARCHAR(64) NOT NULL PRIMARY KEY,
  indexed_upto BIGINT NOT NULL,
  updated BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
