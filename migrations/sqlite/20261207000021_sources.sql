-- Database sources and CSV files at a URL, pulled on the schedule or on demand.
CREATE TABLE sources (
    id                INTEGER PRIMARY KEY,
    name              TEXT   NOT NULL UNIQUE,
    -- 'postgres', 'mysql' or 'csv_url'.
    kind              TEXT   NOT NULL CHECK (kind IN ('postgres', 'mysql', 'csv_url')),
    -- The connection URL or the file's URL, with any password, sealed with the console's key.
    url_sealed        TEXT   NOT NULL,
    -- The same URL without user name and password, to show.
    url_shown         TEXT   NOT NULL,
    -- A CSV file's bearer token or basic credentials, sealed (JSON); NULL when none.
    credentials_sealed TEXT,
    -- What to read: a SQL query (databases) or NULL (a CSV file's columns).
    query             TEXT,
    id_column         TEXT   NOT NULL,
    changed_at_column TEXT,
    -- JSON object: field name -> type, for fields whose type is set rather than inferred.
    field_types       TEXT   NOT NULL,
    -- JSON array: the fields this source provides (one owner per field).
    fields            TEXT   NOT NULL,
    -- 'delete' or 'keep': profiles of the source that a full pull did not return.
    missing_profiles  TEXT   NOT NULL CHECK (missing_profiles IN ('delete', 'keep')),
    -- A full pull after this many incremental ones (deletions are found by full pulls).
    full_every        BIGINT NOT NULL,
    -- Pulled on its own every N minutes, besides the scheduled refresh; NULL: not.
    every_minutes     BIGINT,
    -- Incremental pulls read rows whose changed-at value is at least this (less a margin).
    watermark         TEXT,
    incrementals      BIGINT NOT NULL DEFAULT 0,
    -- A CSV file's validators from its last full read.
    etag              TEXT,
    last_modified     TEXT,
    created_by        BIGINT REFERENCES users (id),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Which profiles each source provided: a full pull deletes those it no longer returns.
CREATE TABLE profile_sources (
    source_id  BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    profile_id BIGINT NOT NULL,
    PRIMARY KEY (source_id, profile_id)
);
CREATE INDEX profile_sources_profile ON profile_sources (profile_id);

-- Each pull of a source: its progress while it runs, then its counts; the rows it
-- rejected are in its report (a profile_imports row, as an import's).
CREATE TABLE source_pulls (
    id           INTEGER PRIMARY KEY,
    source_id    BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    -- 'full' or 'incremental'.
    mode         TEXT   NOT NULL,
    -- 'manual', 'api', 'schedule' or 'every'.
    trigger_kind TEXT   NOT NULL,
    -- 'running', 'succeeded', 'unchanged' (a CSV file not modified), 'failed' or 'interrupted'.
    status       TEXT   NOT NULL,
    rows_read    BIGINT NOT NULL DEFAULT 0,
    created      BIGINT NOT NULL DEFAULT 0,
    updated      BIGINT NOT NULL DEFAULT 0,
    unchanged    BIGINT NOT NULL DEFAULT 0,
    rejected     BIGINT NOT NULL DEFAULT 0,
    deleted      BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    import_id    BIGINT REFERENCES profile_imports (id),
    requested_by BIGINT REFERENCES users (id),
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    finished_at  BIGINT
);
-- One pull per source at a time, whichever console asks.
CREATE UNIQUE INDEX source_pulls_one_running ON source_pulls (source_id) WHERE status = 'running';
CREATE INDEX source_pulls_source ON source_pulls (source_id, id);

-- What an import or pull left as it was, and what a pull deleted.
ALTER TABLE profile_imports ADD COLUMN unchanged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE profile_imports ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;

-- A scheduled refresh pulls every source first: how many pulls succeeded and failed.
ALTER TABLE refresh_runs ADD COLUMN pulls_succeeded BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refresh_runs ADD COLUMN pulls_failed BIGINT NOT NULL DEFAULT 0;

-- A failed pull raises the same failure alerts as a failed export.
ALTER TABLE alert_deliveries ADD COLUMN pull_id BIGINT REFERENCES source_pulls (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX alert_deliveries_one_per_pull ON alert_deliveries (pull_id, channel, target);
