-- What each run found when it first read its audience (one small call): the next run
-- compares, and repairs the ledger when members went missing behind the console.
CREATE TABLE audience_checks (
    destination_id BIGINT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    audience_id    TEXT   NOT NULL,
    date_created   TEXT   NOT NULL,
    -- The audience's contacts (all but archived ones) when run_id began.
    contacts       BIGINT NOT NULL,
    run_id         BIGINT NOT NULL,
    checked_at     BIGINT NOT NULL
);
-- Members the run's check found missing from the audience (NULL: no repair was needed).
ALTER TABLE export_runs ADD COLUMN repair_missing BIGINT;
