//! Identity queries: principals, tokens, SSH keys, custom roles, bindings
//! and workload signing keys. Every write that can change who a credential
//! authenticates as, or what a principal may do, declares the [`Change`]
//! it makes (the principal, or the organization whose role changed), so
//! caches drop it before the write is acknowledged, the very next request
//! sees the change, and session grants re-check their authority.

use sqlx::AnyConnection;

use crate::feed::Change;
use crate::integrity::{BindingRow, Guard, Tagged, TaggedGrant, TokenWithHash, select};
use crate::writer::{Stale, TxFuture};
use crate::*;

const TOKEN_COLUMNS: &str = "t.id, t.principal, t.name, t.kind, t.mfa, t.created_at, \
     t.expires_at, t.revoked_at, t.last_used_at, t.hash, t.mac";
/// Bindings with their custom role source, ready for a WHERE clause.
const GRANTS_FROM: &str = "SELECT b.principal, b.role, b.scope, b.org, r.source, r.revision, \
     b.created_at, b.mac, r.updated_at AS role_updated_at, r.mac AS role_mac \
     FROM bindings b LEFT JOIN roles r ON r.org = b.org AND r.name = b.role";

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
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(row.id.clone())), move |c| {
            Box::pin(async move {
                insert_principal(c, &guard, &row)
                    .await
                    .map_err(|e| match e {
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
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(row.id.clone())), move |c| {
            Box::pin(async move {
                insert_principal(c, &guard, &row).await?;
                insert_binding(c, &guard, &row.id, "owner", "/", None).await?;
                insert_token(c, &guard, TokenWithHash { token, hash }).await
            })
        })
        .await
    }

    /// One principal.
    pub async fn principal(&self, id: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let found: Option<Tagged<PrincipalRow>> =
            sqlx::query_as(select::<PrincipalRow>("WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Principals whose home is `org` (all of them for `None`).
    pub async fn principals(&self, org: Option<&str>) -> Result<Vec<PrincipalRow>, StoreError> {
        let q = match org {
            Some(_) => select::<PrincipalRow>("WHERE org = $1 ORDER BY id"),
            None => select::<PrincipalRow>("ORDER BY id"),
        };
        let mut q = sqlx::query_as(q);
        if let Some(o) = org {
            q = q.bind(o);
        }
        self.guard.check_all(q.fetch_all(self.pool()).await?)
    }

    /// Disables a principal and revokes all its tokens (which ends its
    /// sessions) in one transaction. Returns how many tokens were revoked.
    pub async fn disable_principal(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_owned();
        let (guard, dialect) = (self.guard.clone(), self.dialect);
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let root_owner: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM bindings WHERE principal = $1 AND role = 'owner' AND scope = '/'",
                )
                .bind(id.as_str())
                .fetch_one(&mut *c)
                .await?;
                if root_owner > 0 {
                    keep_a_root_owner(c, dialect, &id).await?;
                }
                let Some(mut row) = guard.load::<PrincipalRow>(c, &[&id], true).await? else {
                    return Err(StoreError::NotFound(id));
                };
                let now = now_ms();
                row.disabled_at = row.disabled_at.or(Some(now));
                save_principal(c, &guard, &row).await?;
                revoke_tokens(c, &guard, &id, None, now).await
            })
        })
        .await
    }

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
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let Some(mut row) = guard.load::<PrincipalRow>(c, &[&id], false).await? else {
                    return Err(StoreError::NotFound(id));
                };
                row.password = Some(phc);
                save_principal(c, &guard, &row).await?;
                revoke_tokens(c, &guard, &id, Some(&keep), now_ms()).await
            })
        })
        .await
    }

    /// Stores a new, unconfirmed TOTP secret (sealed), replacing any other.
    pub async fn set_totp(&self, id: &str, sealed: Vec<u8>) -> Result<(), StoreError> {
        let id = id.to_owned();
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(id.clone())), move |c| {
            Box::pin(async move {
                let Some(mut row) = guard.load::<PrincipalRow>(c, &[&id], false).await? else {
                    return Err(StoreError::NotFound(id));
                };
                row.totp_sealed = Some(sealed);
                row.totp_enabled = 0;
                row.totp_last_step = None;
                save_principal(c, &guard, &row).await
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
        let guard = self.guard.clone();
        let change = enable.then(|| Change::Principal(id.clone()));
        self.write_identity(change, move |c| {
            Box::pin(async move {
                let Some(mut row) = guard.load::<PrincipalRow>(c, &[&id], false).await? else {
                    return Ok(false);
                };
                // Conditional, so two replicas cannot both accept one code.
                let n = sqlx::query(
                    "UPDATE principals SET totp_last_step = $2 \
                     WHERE id = $1 AND totp_sealed IS NOT NULL \
                     AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(id.as_str())
                .bind(step)
                .execute(&mut *c)
                .await?
                .rows_affected();
                if n == 1 && enable && row.totp_enabled == 0 {
                    row.totp_last_step = Some(step);
                    row.totp_enabled = 1;
                    save_principal(c, &guard, &row).await?;
                }
                Ok(n == 1)
            })
        })
        .await
    }

    /// Stores a token's hash and metadata.
    pub async fn insert_token(&self, row: TokenRow, hash: Vec<u8>) -> Result<(), StoreError> {
        let guard = self.guard.clone();
        self.write_identity(None, move |c| {
            Box::pin(
                async move { insert_token(c, &guard, TokenWithHash { token: row, hash }).await },
            )
        })
        .await
    }

    /// Finds a token by the hash of its secret part, with its principal's
    /// state.
    pub async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenAuthRow>, StoreError> {
        if let Some(row) = self.read_cache().and_then(|c| c.token(hash)) {
            return Ok(Some(row));
        }
        let seen = self.read_cache().map(|c| c.epoch());
        let found: Option<TokenJoin> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, p.id AS p_id, p.kind AS p_kind, p.org AS p_org, \
             p.password AS p_password, p.totp_sealed AS p_totp_sealed, \
             p.totp_enabled AS p_totp_enabled, p.totp_last_step AS p_totp_last_step, \
             p.disabled_at AS p_disabled_at, p.created_at AS p_created_at, p.mac AS p_mac \
             FROM api_tokens t LEFT JOIN principals p ON p.id = t.principal WHERE t.hash = $1"
        )))
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        self.guard
            .check(&found.token.row, found.token.mac.as_deref())?;
        let token = found.token.row;
        let principal = self.guard.check_one(found.principal)?;
        let row = TokenAuthRow {
            principal_disabled_at: principal.as_ref().and_then(|p| p.disabled_at),
            principal_exists: i64::from(principal.is_some()),
            token: token.token,
            hash: token.hash,
        };
        if let (Some(c), Some(seen)) = (self.read_cache(), seen) {
            c.put_token(seen, hash, row.clone());
        }
        Ok(Some(row))
    }

    /// One token by id.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let found: Option<Tagged<TokenWithHash>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(self.guard.check_one(found)?.map(|t| t.token))
    }

    /// A principal's tokens, newest first.
    pub async fn tokens_of(&self, principal: &str) -> Result<Vec<TokenRow>, StoreError> {
        let found: Vec<Tagged<TokenWithHash>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.principal = $1 \
             ORDER BY t.created_at DESC, t.id"
        )))
        .bind(principal)
        .fetch_all(self.pool())
        .await?;
        let rows = self.guard.check_all(found)?;
        Ok(rows.into_iter().map(|t| t.token).collect())
    }

    /// Revokes a token of `principal`; false if it was already revoked.
    pub async fn revoke_token(&self, id: &str, principal: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(principal.to_owned())), move |c| {
            Box::pin(async move {
                match guard.load::<TokenWithHash>(c, &[&id], true).await? {
                    Some(t) if t.token.revoked_at.is_none() => {
                        revoke(c, &guard, t, now_ms()).await?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
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
        if let Some(rows) = self.read_cache().and_then(|c| c.grants(principal)) {
            return Ok(rows);
        }
        let seen = self.read_cache().map(|c| c.epoch());
        let found: Vec<TaggedGrant> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{GRANTS_FROM} WHERE b.principal = $1 ORDER BY b.scope, b.role"
        )))
        .bind(principal)
        .fetch_all(self.pool())
        .await?;
        let rows = found
            .into_iter()
            .map(|g| self.guard.check_grant(g))
            .collect::<Result<Vec<_>, _>>()?;
        if let (Some(c), Some(seen)) = (self.read_cache(), seen) {
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
        let found: Vec<TaggedGrant> = q.fetch_all(self.pool()).await?;
        found
            .into_iter()
            .map(|g| self.guard.check_grant(g))
            .collect()
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
        let guard = self.guard.clone();
        self.write_identity(Some(Change::Principal(p.clone())), move |c| {
            Box::pin(async move {
                insert_binding(c, &guard, &p, &r, &s, o.as_deref())
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
        let dialect = self.dialect;
        self.write_identity(Some(Change::Principal(p.clone())), move |c| {
            Box::pin(async move {
                if r == "owner" && s == "/" {
                    keep_a_root_owner(c, dialect, &p).await?;
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
        let tag = self.guard.tag(&row)?;
        self.write_identity(Some(Change::Role(row.org.clone())), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO roles (org, name, source, revision, updated_at, mac) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (org, name) DO UPDATE SET source = excluded.source, \
                     revision = excluded.revision, updated_at = excluded.updated_at, \
                     mac = excluded.mac",
                )
                .bind(row.org)
                .bind(row.name)
                .bind(row.source)
                .bind(row.revision)
                .bind(row.updated_at)
                .bind(tag)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// One custom role.
    pub async fn role(&self, org: &str, name: &str) -> Result<Option<RoleRow>, StoreError> {
        let found: Option<Tagged<RoleRow>> =
            sqlx::query_as(select::<RoleRow>("WHERE org = $1 AND name = $2"))
                .bind(org)
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// An organization's custom roles.
    pub async fn roles(&self, org: &str) -> Result<Vec<RoleRow>, StoreError> {
        let found: Vec<Tagged<RoleRow>> =
            sqlx::query_as(select::<RoleRow>("WHERE org = $1 ORDER BY name"))
                .bind(org)
                .fetch_all(self.pool())
                .await?;
        self.guard.check_all(found)
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
        let tag = self.guard.tag(&row)?;
        self.write_identity(Some(Change::Principal(row.principal.clone())), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO ssh_keys (fingerprint, principal, algorithm, public_key, comment, \
                     created_at, mac) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(row.fingerprint.as_str())
                .bind(row.principal)
                .bind(row.algorithm)
                .bind(row.public_key)
                .bind(row.comment)
                .bind(row.created_at)
                .bind(tag)
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
        let found: Vec<Tagged<SshKeyRow>> = sqlx::query_as(select::<SshKeyRow>(
            "WHERE principal = $1 ORDER BY created_at, fingerprint",
        ))
        .bind(principal)
        .fetch_all(self.pool())
        .await?;
        self.guard.check_all(found)
    }

    /// The SSH key with this fingerprint, if registered.
    pub async fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyRow>, StoreError> {
        let found: Option<Tagged<SshKeyRow>> =
            sqlx::query_as(select::<SshKeyRow>("WHERE fingerprint = $1"))
                .bind(fingerprint)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
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
        let tag = self.guard.tag(&row)?;
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed, public_key, created_at, mac) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(row.kid)
                .bind(row.sealed)
                .bind(row.public_key)
                .bind(row.created_at)
                .bind(tag)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Workload signing keys created after `since_ms`, newest first.
    pub async fn signing_keys(&self, since_ms: i64) -> Result<Vec<SigningKeyRow>, StoreError> {
        let found: Vec<Tagged<SigningKeyRow>> = sqlx::query_as(select::<SigningKeyRow>(
            "WHERE created_at > $1 ORDER BY created_at DESC, kid",
        ))
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        self.guard.check_all(found)
    }
}

/// Refuses a change that would leave no enabled principal holding Owner at
/// the root (`leaving` is the principal about to lose it). Runs inside the
/// changing transaction, so two owners removing each other cannot both
/// succeed.
async fn keep_a_root_owner(
    c: &mut AnyConnection,
    dialect: Dialect,
    leaving: &str,
) -> Result<(), StoreError> {
    if let Some(lock) = dialect.lock_root_owners() {
        sqlx::query(lock).execute(&mut *c).await?;
    }
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

async fn insert_principal(
    c: &mut AnyConnection,
    guard: &Guard,
    row: &PrincipalRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO principals (id, kind, org, password, totp_sealed, totp_enabled, \
         totp_last_step, disabled_at, created_at, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .bind(guard.tag(row)?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Writes a principal's changeable columns and their new MAC.
async fn save_principal(
    c: &mut AnyConnection,
    guard: &Guard,
    row: &PrincipalRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE principals SET password = $2, totp_sealed = $3, totp_enabled = $4, \
         totp_last_step = $5, disabled_at = $6, mac = $7 WHERE id = $1",
    )
    .bind(row.id.as_str())
    .bind(row.password.clone())
    .bind(row.totp_sealed.clone())
    .bind(row.totp_enabled)
    .bind(row.totp_last_step)
    .bind(row.disabled_at)
    .bind(guard.tag(row)?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Revokes one token (its MAC covers the revocation).
async fn revoke(
    c: &mut AnyConnection,
    guard: &Guard,
    mut t: TokenWithHash,
    now: i64,
) -> Result<(), StoreError> {
    t.token.revoked_at = Some(now);
    sqlx::query("UPDATE api_tokens SET revoked_at = $2, mac = $3 WHERE id = $1")
        .bind(t.token.id.as_str())
        .bind(now)
        .bind(guard.tag(&t)?)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Revokes `principal`'s live tokens: all of them, or with `sessions_but`
/// only its login sessions other than that one. Returns how many.
async fn revoke_tokens(
    c: &mut AnyConnection,
    guard: &Guard,
    principal: &str,
    sessions_but: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    let ids: Vec<String> = match sessions_but {
        None => {
            sqlx::query_scalar(
                "SELECT id FROM api_tokens WHERE principal = $1 AND revoked_at IS NULL",
            )
            .bind(principal)
            .fetch_all(&mut *c)
            .await?
        }
        Some(keep) => {
            sqlx::query_scalar(
                "SELECT id FROM api_tokens WHERE principal = $1 AND kind = 'session' \
             AND id <> $2 AND revoked_at IS NULL",
            )
            .bind(principal)
            .bind(keep)
            .fetch_all(&mut *c)
            .await?
        }
    };
    for id in &ids {
        if let Some(t) = guard.load::<TokenWithHash>(c, &[id], true).await? {
            revoke(c, guard, t, now).await?;
        }
    }
    Ok(ids.len() as u64)
}

async fn insert_binding(
    c: &mut AnyConnection,
    guard: &Guard,
    principal: &str,
    role: &str,
    scope: &str,
    org: Option<&str>,
) -> Result<(), StoreError> {
    let row = BindingRow {
        principal: principal.to_owned(),
        role: role.to_owned(),
        scope: scope.to_owned(),
        org: org.map(str::to_owned),
        created_at: now_ms(),
    };
    sqlx::query(
        "INSERT INTO bindings (principal, role, scope, org, created_at, mac) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(principal)
    .bind(role)
    .bind(scope)
    .bind(org)
    .bind(row.created_at)
    .bind(guard.tag(&row)?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn insert_token(
    c: &mut AnyConnection,
    guard: &Guard,
    row: TokenWithHash,
) -> Result<(), StoreError> {
    let tag = guard.tag(&row)?;
    let t = &row.token;
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, principal, name, kind, mfa, created_at, expires_at, \
         revoked_at, last_used_at, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(t.id.as_str())
    .bind(row.hash.clone())
    .bind(t.principal.as_str())
    .bind(t.name.as_str())
    .bind(t.kind.as_str())
    .bind(t.mfa)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.revoked_at)
    .bind(t.last_used_at)
    .bind(tag)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A token found by hash joined with its principal's row (`p_` columns),
/// each with its MAC.
struct TokenJoin {
    token: Tagged<TokenWithHash>,
    principal: Option<Tagged<PrincipalRow>>,
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for TokenJoin {
    fn from_row(r: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let id: Option<String> = r.try_get("p_id")?;
        let principal = match id {
            None => None,
            Some(id) => Some(Tagged {
                row: PrincipalRow {
                    id,
                    kind: r.try_get("p_kind")?,
                    org: r.try_get("p_org")?,
                    password: r.try_get("p_password")?,
                    totp_sealed: r.try_get("p_totp_sealed")?,
                    totp_enabled: r.try_get("p_totp_enabled")?,
                    totp_last_step: r.try_get("p_totp_last_step")?,
                    disabled_at: r.try_get("p_disabled_at")?,
                    created_at: r.try_get("p_created_at")?,
                },
                mac: r.try_get("p_mac")?,
            }),
        };
        Ok(Self {
            token: Tagged::from_row(r)?,
            principal,
        })
    }
}
