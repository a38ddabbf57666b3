-- Shell session recordings: asciicast v2 text in chunks, each sealed
-- (AES-256-GCM) under a per-session key derived from the organization's
-- key term, bound to the session, its number and whether it is the last.
-- The digests of the chunks' plaintexts are rolled into the session's
-- audit outcome (recording_digest), so a chunk edited, dropped, reordered
-- or swapped in from another session fails to open or fails the digest
-- (`warden audit verify --live`, `warden session export`). No MAC
-- column: the AEAD and the audit log protect the rows. Rows are only ever
-- inserted. (postgres; keep in lockstep with the other dialect.)
CREATE TABLE session_recordings (
    session_id TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    org        TEXT    NOT NULL,
    last       BIGINT  NOT NULL,
    sealed     BYTEA   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX session_recordings_org ON session_recordings (org);
CREATE TRIGGER session_recordings_no_update BEFORE UPDATE OR DELETE ON session_recordings
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER session_recordings_no_truncate BEFORE TRUNCATE ON session_recordings
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
