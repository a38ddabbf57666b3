-- Members of an organization carry it in their id (`user:NAME@ORG`,
-- `sa:NAME@ORG`), so names are unique per organization rather than across
-- the installation, and no tenant can learn which names another one uses
-- (PostgreSQL; keep in lockstep with migrations/sqlite).
-- Installation-wide principals (org NULL) keep `user:NAME` / `sa:NAME`.
INSERT INTO principals (id, kind, org, password, totp_sealed, totp_enabled, totp_last_step,
                        disabled_at, created_at)
    SELECT id || '@' || org, kind, org, password, totp_sealed, totp_enabled, totp_last_step,
           disabled_at, created_at
    FROM principals WHERE org IS NOT NULL AND id NOT LIKE '%@%';
UPDATE ssh_keys SET principal = principal || '@' ||
    (SELECT org FROM principals p WHERE p.id = ssh_keys.principal)
    WHERE principal IN (SELECT id FROM principals WHERE org IS NOT NULL AND id NOT LIKE '%@%');
UPDATE api_tokens SET principal = principal || '@' ||
    (SELECT org FROM principals p WHERE p.id = api_tokens.principal)
    WHERE principal IN (SELECT id FROM principals WHERE org IS NOT NULL AND id NOT LIKE '%@%');
UPDATE bindings SET principal = principal || '@' ||
    (SELECT org FROM principals p WHERE p.id = bindings.principal)
    WHERE principal IN (SELECT id FROM principals WHERE org IS NOT NULL AND id NOT LIKE '%@%');
DELETE FROM principals WHERE org IS NOT NULL AND id NOT LIKE '%@%';
