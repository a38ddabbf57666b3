-- The SSH gateway's host key: an Ed25519 seed sealed under the root key
-- (purpose `ssh-host-key`), one per installation so every replica presents
-- the same host key. The row is MACed like the other protected rows.
CREATE TABLE ssh_host_key (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    sealed_seed BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    mac         BYTEA
);
