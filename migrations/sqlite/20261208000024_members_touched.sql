-- When a segment's members last changed (one joined or left, or a member's profile was
-- written or deleted): what keeping a destination in sync waits for. A write to a profile
-- outside every segment moves members_as_of, not this.
ALTER TABLE segments ADD COLUMN members_touched_at BIGINT NOT NULL DEFAULT 0;
UPDATE segments SET members_touched_at = members_as_of;
