-- Warden core schema (PostgreSQL). Keep in lockstep with migrations/sqlite.
-- Secret values appear here only as AEAD envelopes; keys only wrapped.

CREATE TABLE seal (
    id           BIGINT  PRIMARY KEY CHECK (id = 1),
    config       TEXT    NOT NULL,
    wrapped_root BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE scopes (
    path         TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    parent       TEXT    REFERENCES scopes(path),
    org          TEXT    NOT NULL,
    mode         TEXT,
    max_versions BIGINT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX scopes_parent ON scopes(parent);

CREATE TABLE org_keys (
    org         TEXT    NOT NULL REFERENCES scopes(path),
    term        BIGINT  NOT NULL,
    salt        BYTEA   NOT NULL,
    wrapped     BYTEA   NOT NULL,
    encryptions BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (org, term)
);

CREATE TABLE secrets (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope      TEXT    NOT NULL REFERENCES scopes(path),
    org        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    latest     BIGINT  NOT NULL,
    keep       BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    UNIQUE (scope, name)
);

CREATE TABLE secret_versions (
    secret_id    BIGINT  NOT NULL REFERENCES secrets(id),
    version      BIGINT  NOT NULL,
    org          TEXT    NOT NULL,
    key_term     BIGINT  NOT NULL,
    envelope     BYTEA,
    created_at   BIGINT  NOT NULL,
    deleted_at   BIGINT,
    destroyed_at BIGINT,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX secret_versions_term ON secret_versions(org, key_term);

CREATE FUNCTION secret_versions_prune() RETURNS trigger AS $$
BEGIN
    DELETE FROM secret_versions
    WHERE secret_id = NEW.secret_id
      AND version <= NEW.version - (SELECT keep FROM secrets WHERE id = NEW.secret_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER secret_versions_prune AFTER INSERT ON secret_versions
    FOR EACH ROW EXECUTE FUNCTION secret_versions_prune();

CREATE TABLE api_tokens (
    id         TEXT    PRIMARY KEY,
    hash       BYTEA   NOT NULL UNIQUE,
    principal  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log   TEXT   NOT NULL,
    entry TEXT   NOT NULL
);
CREATE INDEX audit_log_log ON audit_log(log, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
