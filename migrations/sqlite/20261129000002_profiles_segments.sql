-- Unified customer profiles, their field catalogue, import reports and segments.
CREATE TABLE profile_fields (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    field_type TEXT    NOT NULL CHECK (field_type IN ('text', 'email', 'number', 'date', 'boolean')),
    created_at INTEGER NOT NULL
);

CREATE TABLE profiles (
    id          INTEGER PRIMARY KEY,
    customer_id TEXT    NOT NULL UNIQUE,
    -- JSON object: field name -> value (string, number, boolean or null).
    attributes  TEXT    NOT NULL,
    -- Lower-cased value of the first email field, for search.
    email_key   TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX profiles_email_key ON profiles (email_key);

CREATE TABLE profile_imports (
    id            INTEGER PRIMARY KEY,
    file_name     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error         TEXT,
    rows_read     INTEGER NOT NULL,
    created       INTEGER NOT NULL,
    updated       INTEGER NOT NULL,
    rejected      INTEGER NOT NULL,
    -- JSON array of {line, customer_id, reason}, the first 1,000 rejected rows.
    rejections    TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    imported_by   INTEGER REFERENCES users (id)
);

CREATE TABLE segments (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    kind              TEXT    NOT NULL CHECK (kind IN ('rules', 'static')),
    -- Rules: JSON {match, conditions}; static: NULL (ids in segment_static_ids).
    definition        TEXT,
    -- Membership readers see: rows of segment_members with this generation.
    generation        INTEGER NOT NULL DEFAULT 0,
    member_count      INTEGER NOT NULL DEFAULT 0,
    last_refreshed_at INTEGER,
    last_refresh_ms   INTEGER,
    -- Static segments: listed IDs that matched no profile at the last refresh.
    unmatched_ids     INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE segment_members (
    segment_id INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    PRIMARY KEY (segment_id, generation, profile_id)
) WITHOUT ROWID;

CREATE TABLE segment_static_ids (
    segment_id  INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    customer_id TEXT    NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
) WITHOUT ROWID;
