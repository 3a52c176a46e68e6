-- Staff who sign in to the panel, their server-side sessions, and sign-in attempts (for
-- throttling).
CREATE TABLE users (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    -- Comma-separated club slugs a deployer is limited to; NULL for every club.
    clubs TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);

-- Only a hash of the session token is stored: the database alone cannot sign anyone in.
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);

CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    account TEXT NOT NULL,
    address TEXT NOT NULL,
    succeeded BOOLEAN NOT NULL
);

CREATE INDEX login_attempts_account ON login_attempts (account, at);
CREATE INDEX login_attempts_address ON login_attempts (address, at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_action ON audit_events (action, id);
