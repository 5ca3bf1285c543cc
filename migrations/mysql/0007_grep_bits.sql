-- The `--grep` search index on MariaDB (from here on): a block trigram
-- bitmap "<table>$grep" per event table (gram, word, bits), created with the
-- event table and filled behind ingest by siemparse (see
-- common/src/db/grep_bits.rs). grep_index now holds its high-water mark on
-- MariaDB too; the comments of 0004 and 0005 calling it unused are outdated.
--
-- Ids are not committed in order on MariaDB (concurrent inserts): the mark
-- only advances through ids without gaps. At a gap the indexer records the
-- highest id present (pending_upto) and when (pending_since, epoch ms); a
-- gap still open two minutes later is stepped over (a rollback or a delete).
ALTER TABLE grep_index ADD COLUMN IF NOT EXISTS pending_upto BIGINT NULL;
ALTER TABLE grep_index ADD COLUMN IF NOT EXISTS pending_since BIGINT NULL;
