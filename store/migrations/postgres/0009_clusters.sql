-- Clusters: where environments' pods run, each served by one agent that
-- dials out to the control plane with a client certificate from Warden's
-- agent CA. (postgres; keep in lockstep with the other dialect.)
CREATE TABLE clusters (
    name             TEXT    PRIMARY KEY,
    created_by       TEXT    NOT NULL,
    created_at       BIGINT NOT NULL,
    -- Hex SHA-256 of the enrolled agent's certificate (DER); NULL until an
    -- agent enrolls. The hub admits only this certificate for the cluster.
    cert_fingerprint TEXT,
    enrolled_at      BIGINT,
    mac              BYTEA
);

-- Single-use join tokens: only the SHA-256 of the token is kept.
CREATE TABLE join_tokens (
    token_hash BYTEA    PRIMARY KEY,
    cluster    TEXT    NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    mac        BYTEA
);

-- Which cluster an environment's pods run on (absent: `local`).
CREATE TABLE placements (
    env     TEXT PRIMARY KEY REFERENCES scopes(path) ON DELETE CASCADE,
    cluster TEXT NOT NULL,
    mac     BYTEA
);

-- The agent CA: its certificate, and its key sealed under the root key.
CREATE TABLE agent_ca (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    cert_der   BYTEA    NOT NULL,
    sealed_key BYTEA    NOT NULL,
    created_at BIGINT NOT NULL,
    mac        BYTEA
);
