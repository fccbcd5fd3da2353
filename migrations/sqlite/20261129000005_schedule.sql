-- The scheduled refresh (one row) and the record of refreshes.
CREATE TABLE schedule (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    enabled        INTEGER NOT NULL DEFAULT 0,
    frequency      TEXT NOT NULL DEFAULT 'daily' CHECK (frequency IN ('daily', 'weekly')),
    -- Comma-separated: mon,tue,… (weekly only).
    days           TEXT NOT NULL DEFAULT '',
    -- Comma-separated HH:MM in the time zone.
    times          TEXT NOT NULL DEFAULT '06:00',
    time_zone      TEXT NOT NULL DEFAULT 'UTC',
    -- Occurrences at or before this instant are not run (set when saved and when fired).
    fired_through  INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER,
    updated_by     INTEGER REFERENCES users (id)
);
INSERT INTO schedule (id) VALUES (1);

CREATE TABLE refresh_runs (
    id                 INTEGER PRIMARY KEY,
    trigger_kind       TEXT NOT NULL CHECK (trigger_kind IN ('schedule', 'manual')),
    scheduled_for      INTEGER,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    status             TEXT NOT NULL CHECK (status IN ('processing', 'successful', 'failure')),
    segments_refreshed INTEGER NOT NULL DEFAULT 0,
    exports_queued     INTEGER NOT NULL DEFAULT 0,
    exports_skipped    INTEGER NOT NULL DEFAULT 0,
    message            TEXT
);
