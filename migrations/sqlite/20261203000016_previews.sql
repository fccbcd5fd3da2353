-- The last preview of each destination: what an export would do now, computed without
-- writing to Mailchimp. The set-up shows it before the first export, and a first export
-- whose preview found problems asks for confirmation.
CREATE TABLE export_previews (
    destination_id BIGINT  NOT NULL PRIMARY KEY REFERENCES destinations (id),
    -- 'computing', 'done' or 'failed'.
    state          TEXT    NOT NULL,
    -- The preview as JSON (the API's body), when done.
    body           TEXT,
    -- Why it could not be computed, when failed.
    message        TEXT,
    requested_by   BIGINT REFERENCES users (id),
    started_at     BIGINT  NOT NULL,
    finished_at    BIGINT
);
