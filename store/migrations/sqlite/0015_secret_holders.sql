-- Which pods hold which versions of their service's secrets right now: one
-- row per live secret watch (`warden-injector --watch`), written when the
-- watch's wrapper reports an update applied, refreshed (`seen_at`) by the
-- process serving the watch, removed when the watch ends. A row whose
-- process died stops being listed once it is not refreshed, and is purged
-- later. No MAC: this is a live view for operators (`warden secret
-- holders`); the audit log is the record of every delivery.
-- (sqlite; keep in lockstep with the other dialect.)
CREATE TABLE secret_holders (
    watch       TEXT    PRIMARY KEY,
    node        TEXT    NOT NULL,
    org         TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    pod         TEXT    NOT NULL,
    versions    TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL
);
CREATE INDEX secret_holders_org ON secret_holders (org, seen_at);
CREATE INDEX secret_holders_node ON secret_holders (node);
