//! Identity queries: principals, tokens, SSH keys, custom roles, bindings
//! and workload signing keys. Every write that can change who a credential
//! authenticates as, or what a principal may do, declares the [`Change`]
//! it makes (the principal, or the organization whose role changed), so
//! caches drop it before the write is acknowledged, the very next request
//! sees the change, and session grants re-check their authority.

use sqlx::AnyConnection;

use crate::feed::Change;
use crate::writer::{Stale, TxFuture};
use crate::*;

const TOKEN_COLUMNS: &str = "t.id, t.principal, t.name, t.kind, t.mfa, t.created_at, \
     t.expires_at, t.revoked_at, t.last_used_at";
/// Bindings with their custom role source, ready for a WHERE clause.
const GRANTS_FROM: &str = "SELECT b.principal, b.role, b.scope, b.org, r.source, r.revision, \
     b.created_at FROM bindings b LEFT JOIN roles r ON r.org = b.org AND r.name = b.role";
const PRINCIPAL_COLUMNS: &str = "id, kind, org, password, totp_sealed, totp_enabled, \
     totp_last_step, disabled_at, created_at";

impl Store {
    /// Runs a write job that changes identity or authorization data.
    async fn write_identity<T, F>(&self, change: Option<Change>, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> TxFuture<'c, T> + Send + 'static,
    {
        let stale = change.map_or(Stale::Nothing, Stale::Change);
        self.writer.run(job, stale).await
    }

    /// Creates a user or service account; `Conflict` if the id is taken.
    pub async fn create_principal(&self, row: PrincipalRow) -> Result<(), StoreError> {
        self.write_identity(Some(Change::Principal(row.id.clone())), move |c| {
            Box::pin(async move {
                insert_principal(c, &row).await.map_err(|e| match e {
                    StoreError::Conflict(_) => StoreError::Conflict(row.id.clone()),
                    other => other,
                })
            })
        })
        .await
    }

    /// Creates the first user with an Owner binding at the root and its
    /// first API token, atomically (vault initialization).
    pub async fn create_owner(
        &self,
        row: PrincipalRow,
        token: TokenRow,
        hash: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write_identity(Some(Change::Principal(row.id.clone())), move |c| {
            Box::pin(async move {
                insert_principal(c, &row).await?;
                insert_binding(c, &row.id, "owner", "/", None).await?;
                insert_token(c, &token, hash).await
            })
        })
        .await
    }

    /// One principal.
    pub async fn principal(&self, id: &str) -> Result<Option<PrincipalRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Principals whose home is `org` (all of them for `None`).
    pub async fn principals(&self, org: Option<&str>) -> Result<Vec<PrincipalRow>, StoreError> {
        let q = match org {
            Some(_) => {
                format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE org = $1 ORDER BY id")
            }
            None => format!("SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY id"),
        };
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(q));
        if let Some(o) = org {
            q = q.bind(o);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Disables a principal and revokes all its tokens (which ends its
    /// sessions) in one transaction. Returns how many tokens were revoked.
    pub async fn disable_principal(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_owned();
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let root_owner: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM bindings WHERE principal = $1 AND role = 'owner' AND scope = '/'",
                )
                .bind(id.as_str())
                .fetch_one(&mut *c)
                .await?;
                if root_owner > 0 {
                    keep_a_root_owner(c, &id).await?;
                }
                let now = now_ms();
                let found = sqlx::query(
                    "UPDATE principals SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected();
                if found == 0 {
                    return Err(StoreError::NotFound(id));
                }
                Ok(sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE principal = $1 AND revoked_at IS NULL",
                )
                .bind(id.as_str())
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected())
            })
        })
        .await
    }

    /// Sets (or replaces) a principal's password hash.
    /// Sets a user's password and, in the same transaction, ends its login
    /// sessions other than `keep` (the session making the change, if any);
    /// returns how many sessions ended.
    pub async fn set_password(
        &self,
        id: &str,
        phc: String,
        keep: Option<&str>,
    ) -> Result<u64, StoreError> {
        let (id, keep) = (id.to_owned(), keep.unwrap_or_default().to_owned());
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let found = sqlx::query("UPDATE principals SET password = $2 WHERE id = $1")
                    .bind(id.as_str())
                    .bind(phc)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                if found == 0 {
                    return Err(StoreError::NotFound(id));
                }
                Ok(sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $3 \
                     WHERE principal = $1 AND kind = 'session' AND id <> $2 AND revoked_at IS NULL",
                )
                .bind(id.as_str())
                .bind(keep)
                .bind(now_ms())
                .execute(&mut *c)
                .await?
                .rows_affected())
            })
        })
        .await
    }

    /// Stores a new, unconfirmed TOTP secret (sealed), replacing any other.
    pub async fn set_totp(&self, id: &str, sealed: Vec<u8>) -> Result<(), StoreError> {
        self.update_principal(
            id,
            "UPDATE principals SET totp_sealed = $2, totp_enabled = 0, totp_last_step = NULL \
             WHERE id = $1",
            sealed,
        )
        .await
    }

    async fn update_principal<V>(
        &self,
        id: &str,
        sql: &'static str,
        value: V,
    ) -> Result<(), StoreError>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + 'static,
    {
        let id = id.to_owned();
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let n = sqlx::query(sql)
                    .bind(id.as_str())
                    .bind(value)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(id));
                }
                Ok(())
            })
        })
        .await
    }

    /// Records the use of TOTP time step `step` (and, with `enable`,
    /// confirms the enrolment). Returns false if that step or a later one
    /// was already used: a replayed code.
    pub async fn use_totp_step(
        &self,
        id: &str,
        step: i64,
        enable: bool,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write_identity(None, move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE principals SET totp_last_step = $2, \
                     totp_enabled = CASE WHEN $3 = 1 THEN 1 ELSE totp_enabled END \
                     WHERE id = $1 AND totp_sealed IS NOT NULL \
                     AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(id.as_str())
                .bind(step)
                .bind(i64::from(enable))
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Stores a token's hash and metadata.
    pub async fn insert_token(&self, row: TokenRow, hash: Vec<u8>) -> Result<(), StoreError> {
        self.write_identity(None, move |c| {
            Box::pin(async move { insert_token(c, &row, hash).await })
        })
        .await
    }

    /// Finds a token by the hash of its secret part, with its principal's
    /// state.
    pub async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenAuthRow>, StoreError> {
        if let Some(row) = self.cache.as_ref().and_then(|c| c.token(hash)) {
            return Ok(Some(row));
        }
        let seen = self.cache.as_ref().map(|c| c.epoch());
        let row: Option<TokenAuthRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, t.hash, p.disabled_at AS principal_disabled_at, \
             CASE WHEN p.id IS NULL THEN 0 ELSE 1 END AS principal_exists \
             FROM api_tokens t LEFT JOIN principals p ON p.id = t.principal WHERE t.hash = $1"
        )))
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        if let (Some(c), Some(seen), Some(r)) = (&self.cache, seen, &row) {
            c.put_token(seen, hash, r.clone());
        }
        Ok(row)
    }

    /// One token by id.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// A principal's tokens, newest first.
    pub async fn tokens_of(&self, principal: &str) -> Result<Vec<TokenRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.principal = $1 \
             ORDER BY t.created_at DESC, t.id"
        )))
        .bind(principal)
        .fetch_all(self.pool())
        .await?)
    }

    /// Revokes a token of `principal`; false if it was already revoked.
    pub async fn revoke_token(&self, id: &str, principal: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write_identity(Some(Change::Principal(principal.to_owned())), move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id.as_str())
                .bind(now_ms())
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Records that a token was just used (callers rate-limit this).
    pub async fn touch_token(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write_identity(Some(Change::Token(id.clone())), move |c| {
            Box::pin(async move {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id.as_str())
                    .bind(now_ms())
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// The bindings a principal holds, with custom role sources.
    pub async fn grants(&self, principal: &str) -> Result<Vec<GrantRow>, StoreError> {
        if let Some(rows) = self.cache.as_ref().and_then(|c| c.grants(principal)) {
            return Ok(rows);
        }
        let seen = self.cache.as_ref().map(|c| c.epoch());
        let rows: Vec<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{GRANTS_FROM} WHERE b.principal = $1 ORDER BY b.scope, b.role"
        )))
        .bind(principal)
        .fetch_all(self.pool())
        .await?;
        if let (Some(c), Some(seen)) = (&self.cache, seen) {
            c.put_grants(seen, principal, rows.clone());
        }
        Ok(rows)
    }

    /// Bindings at or below scopes of `org` (`None`: at the root).
    pub async fn bindings_in(&self, org: Option<&str>) -> Result<Vec<GrantRow>, StoreError> {
        let sql = format!(
            "{GRANTS_FROM} WHERE {} ORDER BY b.scope, b.principal, b.role",
            if org.is_some() {
                "b.org = $1"
            } else {
                "b.org IS NULL"
            }
        );
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(o) = org {
            q = q.bind(o);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Adds a binding; `Conflict` if it exists.
    pub async fn add_binding(
        &self,
        principal: &str,
        role: &str,
        scope: &str,
        org: Option<&str>,
    ) -> Result<(), StoreError> {
        let (p, r, s, o) = (
            principal.to_owned(),
            role.to_owned(),
            scope.to_owned(),
            org.map(str::to_owned),
        );
        self.write_identity(Some(Change::Principal(p.clone())), move |c| {
            Box::pin(async move {
                insert_binding(c, &p, &r, &s, o.as_deref())
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("binding of {r} to {p} at {s}"))
                        }
                        other => other,
                    })
            })
        })
        .await
    }

    /// Removes a binding; false if there was none. Refuses to remove the
    /// last enabled Owner binding at the root.
    pub async fn remove_binding(
        &self,
        principal: &str,
        role: &str,
        scope: &str,
    ) -> Result<bool, StoreError> {
        let (p, r, s) = (principal.to_owned(), role.to_owned(), scope.to_owned());
        self.write_identity(Some(Change::Principal(p.clone())), move |c| {
            Box::pin(async move {
                if r == "owner" && s == "/" {
                    keep_a_root_owner(c, &p).await?;
                }
                let n = sqlx::query(
                    "DELETE FROM bindings WHERE principal = $1 AND role = $2 AND scope = $3",
                )
                .bind(p)
                .bind(r)
                .bind(s)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Creates or replaces a custom role.
    pub async fn put_role(&self, row: RoleRow) -> Result<(), StoreError> {
        self.write_identity(Some(Change::Role(row.org.clone())), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO roles (org, name, source, revision, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (org, name) DO UPDATE SET source = excluded.source, \
                     revision = excluded.revision, updated_at = excluded.updated_at",
                )
                .bind(row.org)
                .bind(row.name)
                .bind(row.source)
                .bind(row.revision)
                .bind(row.updated_at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// One custom role.
    pub async fn role(&self, org: &str, name: &str) -> Result<Option<RoleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT org, name, source, revision, updated_at FROM roles WHERE org = $1 AND name = $2",
        )
        .bind(org)
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    /// An organization's custom roles.
    pub async fn roles(&self, org: &str) -> Result<Vec<RoleRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT org, name, source, revision, updated_at FROM roles WHERE org = $1 ORDER BY name",
        )
        .bind(org)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes a custom role. `Conflict` while any binding uses it (revoke
    /// those first), `NotFound` if there is no such role.
    pub async fn delete_role(&self, org: &str, name: &str) -> Result<(), StoreError> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.write_identity(Some(Change::Role(org.clone())), move |c| {
            Box::pin(async move {
                let bound: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM bindings WHERE org = $1 AND role = $2",
                )
                .bind(org.as_str())
                .bind(name.as_str())
                .fetch_one(&mut *c)
                .await?;
                if bound > 0 {
                    return Err(StoreError::Refused(format!(
                        "role {name} is bound {bound} time(s); revoke those bindings first"
                    )));
                }
                let n = sqlx::query("DELETE FROM roles WHERE org = $1 AND name = $2")
                    .bind(org.as_str())
                    .bind(name.as_str())
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("role {name} in {org}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Adds an SSH public key; `Conflict` if the fingerprint is registered.
    pub async fn add_ssh_key(&self, row: SshKeyRow) -> Result<(), StoreError> {
        self.write_identity(Some(Change::Principal(row.principal.clone())), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO ssh_keys (fingerprint, principal, algorithm, public_key, comment, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(row.fingerprint.as_str())
                .bind(row.principal)
                .bind(row.algorithm)
                .bind(row.public_key)
                .bind(row.comment)
                .bind(row.created_at)
                .execute(&mut *c)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("SSH key {}", row.fingerprint))
                    }
                    other => other,
                })?;
                Ok(())
            })
        })
        .await
    }

    /// A principal's SSH keys.
    pub async fn ssh_keys(&self, principal: &str) -> Result<Vec<SshKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fingerprint, principal, algorithm, public_key, comment, created_at \
             FROM ssh_keys WHERE principal = $1 ORDER BY created_at, fingerprint",
        )
        .bind(principal)
        .fetch_all(self.pool())
        .await?)
    }

    /// The SSH key with this fingerprint, if registered.
    pub async fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fingerprint, principal, algorithm, public_key, comment, created_at \
             FROM ssh_keys WHERE fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Removes one of a principal's SSH keys; false if it had no such key.
    pub async fn remove_ssh_key(
        &self,
        principal: &str,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        let (p, f) = (principal.to_owned(), fingerprint.to_owned());
        self.write_identity(Some(Change::Principal(p.clone())), move |c| {
            Box::pin(async move {
                let n =
                    sqlx::query("DELETE FROM ssh_keys WHERE principal = $1 AND fingerprint = $2")
                        .bind(p)
                        .bind(f)
                        .execute(&mut *c)
                        .await?
                        .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Stores a new workload signing key.
    pub async fn add_signing_key(&self, row: SigningKeyRow) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed, public_key, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(row.kid)
                .bind(row.sealed)
                .bind(row.public_key)
                .bind(row.created_at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Workload signing keys created after `since_ms`, newest first.
    pub async fn signing_keys(&self, since_ms: i64) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kid, sealed, public_key, created_at FROM signing_keys \
             WHERE created_at > $1 ORDER BY created_at DESC, kid",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?)
    }
}

/// Refuses a change that would leave no enabled principal holding Owner at
/// the root (`leaving` is the principal about to lose it). Runs inside the
/// changing transaction, so two owners removing each other cannot both
/// succeed.
async fn keep_a_root_owner(c: &mut AnyConnection, leaving: &str) -> Result<(), StoreError> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bindings b JOIN principals p ON p.id = b.principal \
         WHERE b.role = 'owner' AND b.scope = '/' AND p.disabled_at IS NULL AND b.principal <> $1",
    )
    .bind(leaving)
    .fetch_one(&mut *c)
    .await?;
    if others == 0 {
        return Err(StoreError::Refused(
            "this would leave no enabled Owner at the root; grant Owner at / to another user first"
                .into(),
        ));
    }
    Ok(())
}

async fn insert_principal(c: &mut AnyConnection, row: &PrincipalRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO principals (id, kind, org, password, totp_sealed, totp_enabled, \
         totp_last_step, disabled_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.id.as_str())
    .bind(row.kind.as_str())
    .bind(row.org.clone())
    .bind(row.password.clone())
    .bind(row.totp_sealed.clone())
    .bind(row.totp_enabled)
    .bind(row.totp_last_step)
    .bind(row.disabled_at)
    .bind(row.created_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn insert_binding(
    c: &mut AnyConnection,
    principal: &str,
    role: &str,
    scope: &str,
    org: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO bindings (principal, role, scope, org, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(principal)
    .bind(role)
    .bind(scope)
    .bind(org)
    .bind(now_ms())
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn insert_token(
    c: &mut AnyConnection,
    row: &TokenRow,
    hash: Vec<u8>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, principal, name, kind, mfa, created_at, expires_at, \
         revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.id.as_str())
    .bind(hash)
    .bind(row.principal.as_str())
    .bind(row.name.as_str())
    .bind(row.kind.as_str())
    .bind(row.mfa)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(row.revoked_at)
    .bind(row.last_used_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}
