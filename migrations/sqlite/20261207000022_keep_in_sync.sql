-- Keep in sync: the destination's changed members are exported continuously, without a
-- person or the schedule.
ALTER TABLE destinations ADD COLUMN keep_in_sync INTEGER NOT NULL DEFAULT 0;
