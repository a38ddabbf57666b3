-- The tamper-evident audit log (SQLite). Keep in lockstep with migrations/postgres.
--
-- Each log (`system` or an organization) is a sequence of entries numbered
-- from 0; entry `seq` is leaf `seq` of the log's RFC 6962 Merkle tree, and
-- carries the leaf hash of its predecessor (a hash chain that names the
-- first bad entry). `audit_heads` holds each tree's compact range, updated
-- in the transaction that appends, so replicas sharing a database extend
-- one tree. Signed checkpoints are kept forever. Entries and checkpoints
-- refuse UPDATE and DELETE. (`audit_log`, from before the tree, is kept
-- read-only as it was.)

CREATE TABLE audit_entries (
    log       TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    entry     TEXT    NOT NULL,   -- canonical JSON, the exact leaf bytes
    leaf_hash BLOB    NOT NULL,
    PRIMARY KEY (log, seq)
);

CREATE TABLE audit_heads (
    log   TEXT    PRIMARY KEY,
    size  INTEGER NOT NULL,
    state BLOB    NOT NULL        -- compact range and last leaf hash
);

CREATE TABLE audit_checkpoints (
    log        TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB    NOT NULL,
    note       TEXT    NOT NULL,  -- C2SP signed note
    created_at INTEGER NOT NULL,
    PRIMARY KEY (log, size)
);

-- The checkpoint signing key (one per installation; Ed25519 PKCS#8 sealed
-- under the root key).
CREATE TABLE audit_signing_key (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    vkey       TEXT    NOT NULL,  -- C2SP verifier key: name+keyid+key
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
