-- Password-check throttle: expired windows are purged by their start.
CREATE INDEX sign_in_failures_window ON sign_in_failures (window_started_at);

-- Client addresses each account signed in from with its password: the account-wide
-- ceiling on failed checks does not apply to them, so a distributed guessing attack
-- cannot keep a person out from where they usually sign in.
CREATE TABLE sign_in_known_addresses (
    account      TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (account, address)
);
