-- Replicas on PostgreSQL cache what the embedded backend caches. Every
-- batch that changes something bumps this counter in its transaction and
-- announces the new value with its changes; a replica uses its cache for a
-- request only when it has applied every change up to the counter's value
-- read at the request's start (see store/src/feed.rs). The embedded backend
-- keeps the table for lockstep and does not use it.
-- (postgres; keep in lockstep with migrations/sqlite).
CREATE TABLE change_seq (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);
