-- A run the console queued itself to keep its destination in sync: the history groups them.
ALTER TABLE export_runs ADD COLUMN kept_in_sync INTEGER NOT NULL DEFAULT 0;
