-- Each checkpoint keeps the tree's compact range at its size, so the
-- checkpointer can check new entries from there before it signs more
-- (PostgreSQL; keep in lockstep with migrations/sqlite).
ALTER TABLE audit_checkpoints ADD COLUMN state BYTEA;
