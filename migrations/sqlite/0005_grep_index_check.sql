-- `received` of the row at the index's high-water mark. Event ids are plain
-- rowids: if the newest rows are deleted (a table emptied by retention), ids
-- are handed out again, and rows at or below the mark could be missing from
-- the index. A different `received` at the mark reveals that: queries then
-- scan, and the indexer starts over.
ALTER TABLE grep_index ADD COLUMN upto_received INTEGER;
