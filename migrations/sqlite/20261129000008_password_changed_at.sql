-- When each account's password last changed: sessions signed in before it end.
ALTER TABLE users ADD COLUMN password_changed_at INTEGER NOT NULL DEFAULT 0;
