-- Imports run in the background: the upload returns at once to a page that follows this
-- row (rows and bytes read, a heartbeat), which points at the import's report when done.
CREATE TABLE import_jobs (
    id               INTEGER PRIMARY KEY,
    file_name        TEXT    NOT NULL,
    bytes_total      BIGINT  NOT NULL,
    bytes_read       BIGINT  NOT NULL DEFAULT 0,
    rows_read        BIGINT  NOT NULL DEFAULT 0,
    -- 'importing', 'refreshing' (segments, when asked for), 'done' or 'interrupted'.
    phase            TEXT    NOT NULL,
    -- Refresh every segment when the import succeeds (1) or leave them as they are (0).
    refresh_segments BIGINT  NOT NULL,
    -- What the refresh did, or why the job stopped.
    message          TEXT,
    import_id        BIGINT REFERENCES profile_imports (id),
    started_at       BIGINT  NOT NULL,
    heartbeat_at     BIGINT  NOT NULL,
    imported_by      BIGINT REFERENCES users (id)
);
CREATE INDEX import_jobs_import ON import_jobs (import_id);
