-- Mailchimp's connection limit per account, shared by every console on one database: a
-- call holds one of the account's slots, leased to its console and renewed while held, so a
-- console that dies frees its slots when the lease runs out.
CREATE TABLE account_slots (
    account_key TEXT    NOT NULL,
    slot        INTEGER NOT NULL,
    holder      TEXT,
    expires_at  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (account_key, slot)
);
CREATE INDEX account_slots_holder ON account_slots (holder);

-- Consoles waiting for one of an account's slots, longest waiting first: a console that
-- frees a slot does not take it again while another console waits.
CREATE TABLE account_slot_waiters (
    account_key TEXT   NOT NULL,
    holder      TEXT   NOT NULL,
    since       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (account_key, holder)
);
