-- Export destinations (Mailchimp audiences), their segments, and the audit log.
CREATE TABLE destinations (
    id                  INTEGER PRIMARY KEY,
    display_name        TEXT    NOT NULL UNIQUE,
    kind                TEXT    NOT NULL CHECK (kind IN ('mailchimp')),
    -- draft: set-up not finished; active: saved and exportable; removing: a clean-up in
    -- Mailchimp runs before the destination is deleted.
    status              TEXT    NOT NULL CHECK (status IN ('draft', 'active', 'removing')),
    owner_id            INTEGER NOT NULL REFERENCES users (id),
    consent_version     TEXT,
    consent_at          INTEGER,
    consent_by          INTEGER REFERENCES users (id),
    audience_id         TEXT    NOT NULL,
    audience_name       TEXT,
    audience_members    INTEGER,
    auth_method         TEXT CHECK (auth_method IN ('oauth', 'api_key')),
    -- The access token or API key, sealed with the console's secret key.
    credential_sealed   TEXT,
    api_base            TEXT,
    mailchimp_account   TEXT,
    authenticated_at    INTEGER,
    authenticated_by    INTEGER REFERENCES users (id),
    export_user_id      INTEGER REFERENCES users (id),
    export_user_at      INTEGER,
    email_field         TEXT,
    -- JSON array of {"tag": merge tag, "field": profile field}.
    field_mappings      TEXT NOT NULL DEFAULT '[]',
    new_member_status   TEXT NOT NULL DEFAULT 'subscribed' CHECK (new_member_status IN ('subscribed', 'pending')),
    configured_at       INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE destination_segments (
    destination_id INTEGER NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    segment_id     INTEGER NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    PRIMARY KEY (destination_id, segment_id)
);

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    user_id        INTEGER,
    user_email     TEXT NOT NULL,
    action         TEXT NOT NULL,
    destination_id INTEGER,
    subject        TEXT NOT NULL,
    details        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
