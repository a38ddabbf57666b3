-- Warden core schema (SQLite). Keep in lockstep with migrations/postgres.
-- Secret values appear here only as AEAD envelopes; keys only wrapped.

CREATE TABLE seal (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    config      TEXT    NOT NULL,   -- JSON: method and KDF/Shamir parameters (no secrets)
    wrapped_root BLOB   NOT NULL,   -- root key sealed under the unseal key
    created_at  INTEGER NOT NULL
);

CREATE TABLE scopes (
    path         TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    parent       TEXT    REFERENCES scopes(path),
    org          TEXT    NOT NULL,
    mode         TEXT,
    max_versions INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX scopes_parent ON scopes(parent);

CREATE TABLE org_keys (
    org         TEXT    NOT NULL REFERENCES scopes(path),
    term        INTEGER NOT NULL,
    salt        BLOB    NOT NULL,
    wrapped     BLOB    NOT NULL,   -- org key sealed under the root key
    encryptions INTEGER NOT NULL DEFAULT 0,  -- reserved upper bound of encryptions
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org, term)
);

CREATE TABLE secrets (
    id         INTEGER PRIMARY KEY,
    scope      TEXT    NOT NULL REFERENCES scopes(path),
    org        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    latest     INTEGER NOT NULL,
    keep       INTEGER NOT NULL,          -- versions kept (the scope's max_versions at the last write)
    updated_at INTEGER NOT NULL,
    UNIQUE (scope, name)
);

CREATE TABLE secret_versions (
    secret_id    INTEGER NOT NULL REFERENCES secrets(id),
    version      INTEGER NOT NULL,
    org          TEXT    NOT NULL,
    key_term     INTEGER NOT NULL,
    envelope     BLOB,              -- NULL once destroyed
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER,
    destroyed_at INTEGER,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX secret_versions_term ON secret_versions(org, key_term);

-- Pruning happens in the engine, in the writing transaction: a new version
-- pushes out those older than the secret's `keep` window.
CREATE TRIGGER secret_versions_prune AFTER INSERT ON secret_versions
BEGIN
    DELETE FROM secret_versions
    WHERE secret_id = NEW.secret_id
      AND version <= NEW.version - (SELECT keep FROM secrets WHERE id = NEW.secret_id);
END;

CREATE TABLE api_tokens (
    id         TEXT    PRIMARY KEY,
    hash       BLOB    NOT NULL UNIQUE,
    principal  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE audit_log (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    log   TEXT    NOT NULL,
    entry TEXT    NOT NULL
);
CREATE INDEX audit_log_log ON audit_log(log, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
