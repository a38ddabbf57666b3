-- Clusters: where environments' pods run, each served by one agent that
-- dials out to the control plane with a client certificate from Warden's
-- agent CA. (sqlite; keep in lockstep with the other dialect.)
CREATE TABLE clusters (
    name             TEXT    PRIMARY KEY,
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    -- Hex SHA-256 of the enrolled agent's certificate (DER); NULL until an
    -- agent enrolls. The hub admits only this certificate for the cluster.
    cert_fingerprint TEXT,
    enrolled_at      INTEGER,
    mac              BLOB
);

-- Single-use join tokens: only the SHA-256 of the token is kept.
CREATE TABLE join_tokens (
    token_hash BLOB    PRIMARY KEY,
    cluster    TEXT    NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    mac        BLOB
);

-- Which cluster an environment's pods run on (absent: `local`).
CREATE TABLE placements (
    env     TEXT PRIMARY KEY REFERENCES scopes(path) ON DELETE CASCADE,
    cluster TEXT NOT NULL,
    mac     BLOB
);

-- The agent CA: its certificate, and its key sealed under the root key.
CREATE TABLE agent_ca (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    cert_der   BLOB    NOT NULL,
    sealed_key BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    mac        BLOB
);
