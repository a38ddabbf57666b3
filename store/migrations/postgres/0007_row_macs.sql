-- Every row that decides who a credential is or what a principal may do
-- carries a MAC under a key derived from the root key, bound to the row's
-- identity (see store/src/integrity.rs); a row whose MAC does not verify is
-- refused. `integrity_marks` records, under the same key, that the rows
-- of this database were given MACs (a database from before this migration
-- gets them once, at its first unseal, and that is audited).
-- (postgres; keep in lockstep with migrations/sqlite).
ALTER TABLE principals ADD COLUMN mac BYTEA;
ALTER TABLE api_tokens ADD COLUMN mac BYTEA;
ALTER TABLE bindings ADD COLUMN mac BYTEA;
ALTER TABLE roles ADD COLUMN mac BYTEA;
ALTER TABLE ssh_keys ADD COLUMN mac BYTEA;
ALTER TABLE signing_keys ADD COLUMN mac BYTEA;
ALTER TABLE scopes ADD COLUMN mac BYTEA;
CREATE TABLE integrity_marks (
    name TEXT PRIMARY KEY,
    tag BYTEA NOT NULL
);
