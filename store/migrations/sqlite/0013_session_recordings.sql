-- Shell session recordings: asciicast v2 text in chunks, each sealed
-- (AES-256-GCM) under a per-session key derived from the organization's
-- key term, bound to the session, its number and whether it is the last.
-- The digests of the chunks' plaintexts are rolled into the session's
-- audit outcome (recording_digest), so a chunk edited, dropped, reordered
-- or swapped in from another session fails to open or fails the digest
-- (`warden audit verify --live`, `warden session export`). No MAC
-- column: the AEAD and the audit log protect the rows. Rows are only ever
-- inserted. (sqlite; keep in lockstep with the other dialect.)
CREATE TABLE session_recordings (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    org        TEXT    NOT NULL,
    last       INTEGER NOT NULL,
    sealed     BLOB    NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX session_recordings_org ON session_recordings (org);
CREATE TRIGGER session_recordings_no_update BEFORE UPDATE ON session_recordings
BEGIN SELECT RAISE(ABORT, 'session_recordings is append-only'); END;
CREATE TRIGGER session_recordings_no_delete BEFORE DELETE ON session_recordings
BEGIN SELECT RAISE(ABORT, 'session_recordings is append-only'); END;
