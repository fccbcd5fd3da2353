-- Export runs, what each destination last put into Mailchimp (the ledger), and per-member results.
CREATE TABLE export_runs (
    id               INTEGER PRIMARY KEY,
    destination_id   INTEGER NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    -- export, or a clean-up that runs when a destination is removed.
    kind             TEXT NOT NULL DEFAULT 'export' CHECK (kind IN ('export', 'remove_tags', 'archive_members')),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'successful', 'skipped', 'failure', 'canceled')),
    full_resync      INTEGER NOT NULL DEFAULT 0,
    requested_by     INTEGER REFERENCES users (id),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    total            INTEGER NOT NULL DEFAULT 0,
    sent             INTEGER NOT NULL DEFAULT 0,
    created          INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    tag_changes      INTEGER NOT NULL DEFAULT 0,
    calls            INTEGER NOT NULL DEFAULT 0,
    message          TEXT
);
CREATE INDEX export_runs_destination ON export_runs (destination_id, id);
CREATE INDEX export_runs_status ON export_runs (status, id);

CREATE TABLE export_ledger (
    destination_id INTEGER NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    email_hash     TEXT NOT NULL,
    customer_id    TEXT NOT NULL,
    email          TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    -- The member's status as Mailchimp last told us.
    status         TEXT NOT NULL,
    -- Tags this console put on the member, as a JSON array of names.
    tags           TEXT NOT NULL,
    -- Set when Mailchimp refused the member for good (compliance state, forgotten, fake).
    permanent_skip TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (destination_id, email_hash)
);

CREATE TABLE export_results (
    run_id      INTEGER NOT NULL REFERENCES export_runs (id) ON DELETE CASCADE,
    customer_id TEXT NOT NULL,
    email       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX export_results_run ON export_results (run_id);
