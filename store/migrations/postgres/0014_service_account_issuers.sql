-- Kubernetes workload identity (issue 12): each cluster's service-account
-- issuer, and which service accounts of it may be exchanged for which
-- service's workload credential. Both are authorization rows: each
-- carries a MAC under the row key over every column, so a key set or a
-- binding written into the database by anyone but Warden is refused.
-- (postgres; keep in lockstep with the other dialect.)

-- The issuer a cluster's API server signs service-account tokens as
-- (--service-account-issuer), the audience a token must include, and its
-- public keys: the JWKS as validated and re-serialized by Warden.
CREATE TABLE cluster_issuers (
    cluster    TEXT    PRIMARY KEY REFERENCES clusters(name) ON DELETE CASCADE,
    issuer     TEXT    NOT NULL,
    audience   TEXT    NOT NULL,
    jwks       TEXT    NOT NULL,
    updated_by TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    mac        BYTEA
);

-- Explicit bindings: service account NAMESPACE/NAME of a cluster may
-- obtain a workload credential for a service (effective only while the
-- service's environment is placed on that cluster).
CREATE TABLE sa_bindings (
    cluster         TEXT    NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    namespace       TEXT    NOT NULL,
    service_account TEXT    NOT NULL,
    service         TEXT    NOT NULL REFERENCES scopes(path) ON DELETE CASCADE,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    mac             BYTEA,
    PRIMARY KEY (cluster, namespace, service_account, service)
);
CREATE INDEX sa_bindings_service ON sa_bindings (service);
