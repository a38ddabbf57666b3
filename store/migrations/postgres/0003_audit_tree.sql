-- The tamper-evident audit log (PostgreSQL). Keep in lockstep with migrations/sqlite,
-- which explains the tables.

CREATE TABLE audit_entries (
    log       TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    entry     TEXT   NOT NULL,
    leaf_hash BYTEA  NOT NULL,
    PRIMARY KEY (log, seq)
);

CREATE TABLE audit_heads (
    log   TEXT   PRIMARY KEY,
    size  BIGINT NOT NULL,
    state BYTEA  NOT NULL
);

CREATE TABLE audit_checkpoints (
    log        TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    root       BYTEA  NOT NULL,
    note       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (log, size)
);

CREATE TABLE audit_signing_key (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    vkey       TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
