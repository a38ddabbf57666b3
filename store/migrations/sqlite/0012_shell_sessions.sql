-- Shell sessions (the gateway's), live and ended, for `warden session
-- list|show|kill`. The audit log is the record of what sessions did; this
-- table is the live view and where a kill is asked: the replica holding
-- the session (`node`) polls for kills of its own sessions. No MAC: a row
-- written behind Warden's back can at most end a session early or show a
-- false one in a list; authority still comes from the pipeline.
-- (sqlite; keep in lockstep with the other dialect.)
CREATE TABLE shell_sessions (
    id          TEXT    PRIMARY KEY,
    org         TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    pod         TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    transport   TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    status      TEXT,
    exit_status INTEGER,
    killed_by   TEXT
);
CREATE INDEX shell_sessions_org ON shell_sessions (org, started_at);
CREATE INDEX shell_sessions_live ON shell_sessions (node) WHERE ended_at IS NULL;
