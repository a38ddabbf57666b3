-- Services whose pods are given pinned secret versions and rolled, one pod
-- at a time, when a secret they inherit changes (a workload applied with
-- `secrets: {on_change: rollout}`). `pinned` is what the service's pods
-- are served (a JSON map NAME -> {scope, version}, as the vault encodes
-- it); `target` is what a rollout is moving to, or, with state 'failed',
-- what the last rollout failed to start and was reverted from, so it is
-- not tried again until the secrets change once more or the workload is
-- applied again. `previous` is what the pods held when the rollout under
-- way began: a replica taking over a rollout whose replica died reverts
-- to it. `node` is the
-- replica that claimed the rollout; a claim older than the claim timeout
-- may be taken over. No values here, only version numbers; no MAC (like
-- `secrets.latest`, a tampered row can only choose among the service's
-- own kept versions, each of which is sealed to its name and version).
-- (postgres; keep in lockstep with the other dialect.)
CREATE TABLE secret_rollouts (
    service     TEXT    PRIMARY KEY,
    org         TEXT    NOT NULL,
    pinned      TEXT    NOT NULL,
    previous    TEXT,
    state       TEXT    NOT NULL,
    target      TEXT,
    node        TEXT,
    updated_at  BIGINT  NOT NULL
);
