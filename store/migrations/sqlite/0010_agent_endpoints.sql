-- Where each replica's agent listener is reached, refreshed every 10 s by
-- that replica; agents link to every fresh one, so any replica reaches any
-- agent (docs/decisions.md). No MAC: agents verify the listener's TLS
-- certificate, so a row pointing elsewhere cannot impersonate Warden.
-- (sqlite; keep in lockstep with the other dialect.)
CREATE TABLE agent_endpoints (
    node    TEXT    PRIMARY KEY,
    address TEXT    NOT NULL,
    seen_at INTEGER NOT NULL
);
