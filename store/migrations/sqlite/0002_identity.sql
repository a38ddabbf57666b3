-- Identity and RBAC (SQLite). Keep in lockstep with migrations/postgres.
-- Credentials are stored only as hashes (tokens, passwords) or sealed under
-- the root key (TOTP secrets, workload signing keys).

-- Users (humans) and service accounts. `id` is the principal id
-- (`user:NAME` or `sa:NAME`); `org` is the home organization (NULL for
-- installation-wide operators).
CREATE TABLE principals (
    id             TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('user', 'service')),
    org            TEXT    REFERENCES scopes(path),
    password       TEXT,               -- Argon2id PHC string
    totp_sealed    BLOB,               -- TOTP secret sealed under the root key
    totp_enabled   INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER,            -- last accepted time step (replay guard)
    disabled_at    INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE INDEX principals_org ON principals(org);

ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
ALTER TABLE api_tokens ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
CREATE INDEX api_tokens_principal ON api_tokens(principal);

CREATE TABLE ssh_keys (
    fingerprint TEXT    PRIMARY KEY,   -- SHA256:... as ssh-keygen -l prints it
    principal   TEXT    NOT NULL REFERENCES principals(id),
    algorithm   TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,      -- "ALG BASE64"
    comment     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX ssh_keys_principal ON ssh_keys(principal);

-- Custom roles, per organization, as the YAML they were applied from.
-- `revision` is random per apply: compiled roles are cached by it.
CREATE TABLE roles (
    org        TEXT    NOT NULL REFERENCES scopes(path),
    name       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org, name)
);

-- Role bindings. `scope` is '/' for the root; `org` is NULL there.
CREATE TABLE bindings (
    principal  TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    org        TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (principal, role, scope)
);
CREATE INDEX bindings_scope ON bindings(org, scope);

-- Workload-token signing keys (Ed25519, PKCS#8 sealed under the root key).
CREATE TABLE signing_keys (
    kid        TEXT    PRIMARY KEY,
    sealed     BLOB    NOT NULL,
    public_key BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Installations from before identity: the bootstrap principal becomes an
-- ordinary user holding Owner at the root.
INSERT INTO principals (id, kind, org, created_at)
    SELECT DISTINCT principal, 'user', NULL, 0 FROM api_tokens WHERE principal LIKE 'user:%';
INSERT INTO bindings (principal, role, scope, org, created_at)
    SELECT id, 'owner', '/', NULL, 0 FROM principals;
