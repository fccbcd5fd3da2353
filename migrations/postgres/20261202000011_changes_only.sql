-- Re-exports that read only what changed since the destination's last complete export.

-- What each segment's published membership was computed from: the profiles as of a time
-- (every profile write committed before it is reflected) and the rules and field types used.
-- A digest of the member IDs lets a refresh that finds the same members publish nothing.
ALTER TABLE segments ADD COLUMN members_as_of BIGINT NOT NULL DEFAULT 0;
ALTER TABLE segments ADD COLUMN members_basis TEXT NOT NULL DEFAULT '';
ALTER TABLE segments ADD COLUMN members_digest TEXT NOT NULL DEFAULT '';

CREATE INDEX profiles_updated_at ON profiles (updated_at);

-- Profile writes under way (an import is one transaction): a re-export's starting point is
-- never later than the start of a write that had not committed when the plan was read.
CREATE TABLE profile_writers (
    id         TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A member's ledger entry by customer, to find the old address of a customer who changed it.
CREATE INDEX export_ledger_customer ON export_ledger (destination_id, customer_id);

-- Profiles of a destination's plan skipped because an earlier profile has the same address:
-- when that profile leaves or changes address, the next one takes the address.
CREATE TABLE export_repeats (
    destination_id BIGINT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    customer_id    TEXT NOT NULL,
    email_hash     TEXT NOT NULL,
    PRIMARY KEY (destination_id, customer_id)
);
CREATE INDEX export_repeats_hash ON export_repeats (destination_id, email_hash);

-- The last complete export of a destination (successful, nothing failed): the settings and
-- segment memberships it used and the time from which profile changes are not yet in it.
-- Removed when a run starts, written when a run ends complete.
CREATE TABLE export_marks (
    destination_id BIGINT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    run_id         BIGINT NOT NULL,
    settings       TEXT NOT NULL,
    segments       TEXT NOT NULL,
    changes_from   BIGINT NOT NULL,
    profiles       BIGINT NOT NULL,
    last_profile   BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Set on a run that read only the profiles changed since this time.
ALTER TABLE export_runs ADD COLUMN changes_since BIGINT;
