-- Failure alerts: one row of settings (the webhook and SMTP), the console users who get
-- alert emails, each destination's threshold of failed members, and every delivery with
-- its attempts.
CREATE TABLE alert_settings (
    id                    BIGINT PRIMARY KEY CHECK (id = 1),
    webhook_enabled       BIGINT NOT NULL DEFAULT 0,
    webhook_url           TEXT,
    -- The signing secret, sealed with the console's key; shown once when made.
    webhook_secret_sealed TEXT,
    webhook_secret_at     BIGINT,
    email_enabled         BIGINT NOT NULL DEFAULT 0,
    smtp_host             TEXT,
    smtp_port             BIGINT,
    -- 'none', 'starttls' or 'tls'.
    smtp_tls              TEXT   NOT NULL DEFAULT 'starttls',
    smtp_username         TEXT,
    -- Sealed with the console's key; never shown again.
    smtp_password_sealed  TEXT,
    smtp_from             TEXT,
    -- Addresses beside the console's users, one a line.
    extra_recipients      TEXT   NOT NULL DEFAULT '',
    updated_at            BIGINT,
    updated_by            BIGINT
);
INSERT INTO alert_settings (id) VALUES (1);

-- Console users who get alert emails (while their account is active).
CREATE TABLE alert_recipients (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
);

-- A successful run alerts when at least this many of its members failed (0: never). A
-- destination without a row alerts on any failed member.
CREATE TABLE alert_thresholds (
    destination_id BIGINT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    failed_members BIGINT NOT NULL
);

-- One alert to send to one target, and where its sending is.
CREATE TABLE alert_deliveries (
    id               INTEGER PRIMARY KEY,
    -- NULL for a test alert sent from the page.
    run_id           BIGINT REFERENCES export_runs (id) ON DELETE CASCADE,
    -- 'run.failed', 'run.members_failed' or 'test'.
    event            TEXT   NOT NULL,
    -- 'webhook' or 'email'.
    channel          TEXT   NOT NULL,
    -- The webhook's URL or the recipient's address.
    target           TEXT   NOT NULL,
    -- 'pending' (to send, or to try again at next_attempt_at), 'delivered', 'failed'
    -- (given up) or 'test'.
    status           TEXT   NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    -- The console sending it now; another takes it over once the lease runs out.
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    -- One alert per run, channel and target, however many workers finish the run.
    UNIQUE (run_id, channel, target)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);

-- Every attempt at a delivery and what it was answered.
CREATE TABLE alert_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    -- The HTTP status or the SMTP reply code, when there was an answer.
    status_code BIGINT,
    -- Why there was no (good) answer: a connection error, a time-out, a refusal.
    error       TEXT,
    -- At most 500 characters of the answer's body or the SMTP reply.
    answer      TEXT,
    -- 'delivered', 'retry' (tried again later) or 'failed' (not tried again).
    outcome     TEXT   NOT NULL
);
CREATE INDEX alert_attempts_delivery ON alert_attempts (delivery_id);
