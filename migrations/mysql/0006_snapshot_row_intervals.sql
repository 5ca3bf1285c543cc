-- Snapshot rows are stored once per value, not once per run: a row is
-- written by the run that first has it (`run_id`) and stays valid for the
-- later successful runs of the same name and host until `until_run`, the
-- first run that no longer has it or has it changed (NULL: still current).
-- An unchanged run then writes no rows at all (a 100,000-file `files` run
-- with nothing changed writes only its `snapshot_runs` row).
-- The rows of run R: rows of the runs of R's name and host with
-- run_id <= R and (until_run IS NULL OR until_run > R).
ALTER TABLE snapshot_rows ADD COLUMN IF NOT EXISTS until_run BIGINT NULL;
-- Rows stored before: each run had all its rows, so each row is valid until
-- the next successful run of its name and host (idempotent: a re-run after
-- an interrupted migration computes the same values).
UPDATE snapshot_rows SET until_run = (
  SELECT MIN(n.id) FROM snapshot_runs c
  JOIN snapshot_runs n ON n.name = c.name AND n.host = c.host AND n.status = 'ok' AND n.id > c.id
  WHERE c.id = snapshot_rows.run_id
);
