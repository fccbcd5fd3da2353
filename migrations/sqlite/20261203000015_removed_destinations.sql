-- A removed destination keeps its row (without credential, segments, ledger or name) so
-- that its runs, and the clean-up that ended it, stay in history and System > Status.
ALTER TABLE destinations ADD COLUMN removed_at BIGINT;
