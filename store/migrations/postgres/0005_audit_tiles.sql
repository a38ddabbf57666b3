-- Tiles of each audit log's Merkle tree (PostgreSQL; keep in lockstep with
-- migrations/sqlite, which explains them).

CREATE TABLE audit_tiles (
    log    TEXT   NOT NULL,
    level  BIGINT NOT NULL,
    idx    BIGINT NOT NULL,
    hashes BYTEA  NOT NULL,
    root   BYTEA  NOT NULL,
    PRIMARY KEY (log, level, idx)
);

ALTER TABLE audit_heads ADD COLUMN tiled BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE OR DELETE ON audit_tiles
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_tiles_no_truncate BEFORE TRUNCATE ON audit_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
