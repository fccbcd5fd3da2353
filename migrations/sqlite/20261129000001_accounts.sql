-- Console accounts, the one-time first-administrator claim, and sign-in throttling.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('administrator', 'contributor', 'viewer')),
    password_hash   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER,
    deactivated_at  INTEGER
);

-- At most one row ever: created together with the first administrator, so that the
-- "Create the first administrator" page can succeed once only, even under a race.
CREATE TABLE first_admin_claim (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    claimed_at INTEGER NOT NULL
);

CREATE TABLE sign_in_failures (
    throttle_key      TEXT    PRIMARY KEY,
    failures          INTEGER NOT NULL,
    window_started_at INTEGER NOT NULL,
    locked_until      INTEGER
);
