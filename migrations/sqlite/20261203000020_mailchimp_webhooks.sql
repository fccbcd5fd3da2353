-- The webhook each saved destination registers on its Mailchimp audience, so that
-- unsubscribes, bounces and address changes reach the ledger as they happen.
CREATE TABLE mailchimp_webhooks (
    destination_id BIGINT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    -- The random secret in the webhook's URL, sealed with the console's key.
    secret_sealed  TEXT   NOT NULL,
    -- Mailchimp's ID of the webhook, once registered.
    webhook_id     TEXT,
    registered_at  BIGINT,
    created_at     BIGINT NOT NULL
);

-- Every event a destination's webhook delivered: what it was and whom it was about (the
-- subscriber hash only, never the address).
CREATE TABLE webhook_events (
    id             INTEGER PRIMARY KEY,
    destination_id BIGINT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    -- 'unsubscribe', 'cleaned', 'profile' or 'upemail'.
    kind           TEXT   NOT NULL,
    email_hash     TEXT   NOT NULL,
    -- As Mailchimp sent it ("2026-12-03 12:11:04", UTC).
    fired_at       TEXT   NOT NULL,
    received_at    BIGINT NOT NULL,
    -- Whether a ledger entry of the destination was changed by it.
    applied        BIGINT NOT NULL
);
CREATE INDEX webhook_events_destination ON webhook_events (destination_id, kind, received_at);
