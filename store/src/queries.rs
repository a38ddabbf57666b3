//! Most of the store's queries, each written once for both backends (what
//! must differ per backend is in `dialect.rs`).

use sqlx::AnyConnection;

use crate::feed::Change;
use crate::integrity::{Tagged, select};
use crate::writer::Stale;
use crate::*;

const VERSION_COLUMNS: &str = "s.id AS secret_id, s.scope, s.name, v.version, v.key_term, \
     v.envelope, v.created_at, v.deleted_at, v.destroyed_at";

async fn secret_id(conn: &mut AnyConnection, scope: &str, name: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM secrets WHERE scope = $1 AND name = $2")
        .bind(scope)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("secret {name} in {scope}")))
}

impl Store {
    /// The seal row, if the vault was initialized.
    pub async fn seal_row(&self) -> Result<Option<SealRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT config, wrapped_root, created_at FROM seal WHERE id = 1")
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records the seal configuration; fails with `Conflict` if initialized.
    pub async fn insert_seal(
        &self,
        config: String,
        wrapped_root: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO seal (id, config, wrapped_root, created_at) VALUES (1, $1, $2, $3)",
                )
                .bind(config)
                .bind(wrapped_root)
                .bind(now_ms())
                .execute(&mut *c)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("the vault".into()),
                    other => other,
                })?;
                Ok(())
            })
        })
        .await
    }

    /// One scope by path.
    pub async fn scope(&self, path: &str) -> Result<Option<ScopeRow>, StoreError> {
        if let Some(row) = self.read_cache().and_then(|c| c.scope(path)) {
            return Ok(Some(row));
        }
        let seen = self.read_cache().map(|c| c.epoch());
        let found: Option<Tagged<ScopeRow>> = sqlx::query_as(select::<ScopeRow>("WHERE path = $1"))
            .bind(path)
            .fetch_optional(self.pool())
            .await?;
        let row = self.guard.check_one(found)?;
        if let (Some(c), Some(seen), Some(r)) = (self.read_cache(), seen, &row) {
            c.put_scope(seen, r.clone());
        }
        Ok(row)
    }

    /// The direct children of `parent` (organizations when `None`).
    pub async fn child_scopes(&self, parent: Option<&str>) -> Result<Vec<ScopeRow>, StoreError> {
        let q = match parent {
            Some(p) => sqlx::query_as(select::<ScopeRow>("WHERE parent = $1 ORDER BY path"))
                .bind(p.to_owned()),
            None => sqlx::query_as(select::<ScopeRow>("WHERE parent IS NULL ORDER BY path")),
        };
        let found: Vec<Tagged<ScopeRow>> = q.fetch_all(self.pool()).await?;
        self.guard.check_all(found)
    }

    /// Creates a scope (and, for an organization, its first key term).
    pub async fn create_scope(
        &self,
        row: ScopeRow,
        first_key: Option<OrgKeyRow>,
    ) -> Result<(), StoreError> {
        let tag = self.guard.tag(&row)?;
        self.write(move |c| {
            Box::pin(async move {
                if let Some(parent) = &row.parent {
                    let found: Option<String> =
                        sqlx::query_scalar("SELECT path FROM scopes WHERE path = $1")
                            .bind(parent.as_str())
                            .fetch_optional(&mut *c)
                            .await?;
                    if found.is_none() {
                        return Err(StoreError::NotFound(parent.clone()));
                    }
                }
                sqlx::query(
                    "INSERT INTO scopes (path, kind, parent, org, mode, max_versions, created_at, \
                     mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(row.path.as_str())
                .bind(row.kind.as_str())
                .bind(row.parent.clone())
                .bind(row.org.as_str())
                .bind(row.mode.clone())
                .bind(row.max_versions)
                .bind(row.created_at)
                .bind(tag)
                .execute(&mut *c)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(row.path.clone()),
                    other => other,
                })?;
                if let Some(k) = first_key {
                    insert_key(c, &k).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// An organization's key terms, oldest first.
    pub async fn org_keys(&self, org: &str) -> Result<Vec<OrgKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT org, term, salt, wrapped, encryptions, created_at FROM org_keys \
             WHERE org = $1 ORDER BY term",
        )
        .bind(org)
        .fetch_all(self.pool())
        .await?)
    }

    /// Adds a key term; it must be exactly one past the newest.
    pub async fn add_org_key(&self, row: OrgKeyRow) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(term) FROM org_keys WHERE org = $1")
                        .bind(row.org.as_str())
                        .fetch_one(&mut *c)
                        .await?;
                if newest.unwrap_or(0) + 1 != row.term {
                    return Err(StoreError::Conflict(format!(
                        "key term {} of {}",
                        row.term, row.org
                    )));
                }
                insert_key(c, &row).await
            })
        })
        .await
    }

    /// Reserves `n` more encryptions under a term; returns the new total.
    pub async fn reserve_encryptions(
        &self,
        org: &str,
        term: i64,
        n: i64,
    ) -> Result<i64, StoreError> {
        let org = org.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE org_keys SET encryptions = encryptions + $1 WHERE org = $2 AND term = $3",
                )
                .bind(n)
                .bind(org.as_str())
                .bind(term)
                .execute(&mut *c)
                .await?;
                Ok(sqlx::query_scalar(
                    "SELECT encryptions FROM org_keys WHERE org = $1 AND term = $2",
                )
                .bind(org.as_str())
                .bind(term)
                .fetch_one(&mut *c)
                .await?)
            })
        })
        .await
    }

    /// Writes a new version of each secret, atomically: all or none. Returns
    /// the new version numbers in order. Versions beyond `max_versions` are
    /// pruned by the `secret_versions_prune` trigger in the same transaction.
    pub async fn put_secrets(
        &self,
        puts: Vec<NewVersion>,
        sealer: Sealer,
    ) -> Result<Vec<i64>, StoreError> {
        self.writer.put(puts, sealer).await
    }

    /// One version of a secret (the latest when `version` is `None`).
    pub async fn secret_version(
        &self,
        scope: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<VersionRow>, StoreError> {
        let sql = match version {
            Some(_) => {
                "SELECT s.id AS secret_id, s.scope, s.name, v.version, v.key_term, v.envelope, \
                 v.created_at, v.deleted_at, v.destroyed_at FROM secrets s \
                 JOIN secret_versions v ON v.secret_id = s.id \
                 WHERE s.scope = $1 AND s.name = $2 AND v.version = $3"
            }
            None => {
                "SELECT s.id AS secret_id, s.scope, s.name, v.version, v.key_term, v.envelope, \
                 v.created_at, v.deleted_at, v.destroyed_at FROM secrets s \
                 JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.latest \
                 WHERE s.scope = $1 AND s.name = $2"
            }
        };
        if version.is_none()
            && let Some(row) = self.read_cache().and_then(|c| c.latest(scope, name))
        {
            return Ok(Some(row));
        }
        let seen = self.read_cache().map(|c| c.epoch());
        let mut q = sqlx::query_as(sql).bind(scope).bind(name);
        if let Some(v) = version {
            q = q.bind(v);
        }
        let row: Option<VersionRow> = q.fetch_optional(self.pool()).await?;
        if let (Some(c), Some(seen), Some(r), None) = (self.read_cache(), seen, &row, version) {
            c.put_latest(seen, r.clone());
        }
        Ok(row)
    }

    /// Secret names and metadata in one scope.
    pub async fn list_secrets(&self, scope: &str) -> Result<Vec<SecretSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.scope, s.name, s.latest, s.updated_at, \
             CASE WHEN v.deleted_at IS NULL AND v.destroyed_at IS NULL THEN 0 ELSE 1 END AS latest_gone \
             FROM secrets s JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.latest \
             WHERE s.scope = $1 ORDER BY s.name",
        )
        .bind(scope)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every kept version of a secret, newest first.
    pub async fn history(&self, scope: &str, name: &str) -> Result<Vec<VersionRow>, StoreError> {
        let mut rows: Vec<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM secrets s JOIN secret_versions v ON v.secret_id = s.id \
             WHERE s.scope = $1 AND s.name = $2 ORDER BY v.version DESC"
        )))
        .bind(scope)
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        for r in &mut rows {
            r.envelope = None;
        }
        Ok(rows)
    }

    /// The latest version of every secret in each of `scopes`.
    pub async fn latest_in_scopes(&self, scopes: &[String]) -> Result<Vec<VersionRow>, StoreError> {
        let mut out = Vec::new();
        for scope in scopes {
            let rows: Vec<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM secrets s \
                 JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.latest \
                 WHERE s.scope = $1 ORDER BY s.name"
            )))
            .bind(scope.as_str())
            .fetch_all(self.pool())
            .await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Every kept version (with its envelope, if not destroyed) of every
    /// secret in each of `scopes`.
    pub async fn versions_in_scopes(
        &self,
        scopes: &[String],
    ) -> Result<Vec<VersionRow>, StoreError> {
        let mut out = Vec::new();
        for scope in scopes {
            let rows: Vec<VersionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM secrets s \
                 JOIN secret_versions v ON v.secret_id = s.id \
                 WHERE s.scope = $1 ORDER BY s.name, v.version"
            )))
            .bind(scope.as_str())
            .fetch_all(self.pool())
            .await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Changes the state of some versions of one secret; returns the
    /// versions whose state changed (the others were already in it).
    pub async fn change_versions(
        &self,
        scope: &str,
        name: &str,
        versions: Vec<i64>,
        change: VersionChange,
    ) -> Result<Vec<i64>, StoreError> {
        let stale = Stale::Change(Change::Secrets(vec![(scope.to_owned(), name.to_owned())]));
        let (scope, name) = (scope.to_owned(), name.to_owned());
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        let id = secret_id(c, &scope, &name).await?;
                        let mut changed = Vec::new();
                        for v in versions {
                            let mut q = sqlx::query(change.sql()).bind(id).bind(v);
                            if change != VersionChange::Undelete {
                                q = q.bind(now_ms());
                            }
                            if q.execute(&mut *c).await?.rows_affected() > 0 {
                                changed.push(v);
                            }
                        }
                        Ok(changed)
                    })
                },
                stale,
            )
            .await
    }

    /// Up to `limit` versions of `org` still sealed under a term older than
    /// `below_term`.
    pub async fn versions_to_rewrap(
        &self,
        org: &str,
        below_term: i64,
        limit: i64,
    ) -> Result<Vec<VersionRow>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE v.org = $1 AND v.key_term < $2 AND v.envelope IS NOT NULL \
             ORDER BY v.secret_id, v.version LIMIT $3"
        )))
        .bind(org)
        .bind(below_term)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Replaces envelopes with rewrapped ones, each only if it is still
    /// under its old term (a concurrent destroy or rewrap wins). Returns how
    /// many were replaced.
    pub async fn replace_envelopes(&self, items: Vec<Rewrapped>) -> Result<u64, StoreError> {
        self.writer
            .run(
                move |c| {
            Box::pin(async move {
                let mut n = 0;
                for it in items {
                    n += sqlx::query(
                        "UPDATE secret_versions SET envelope = $1, key_term = $2 \
                         WHERE secret_id = $3 AND version = $4 AND key_term = $5 AND envelope IS NOT NULL",
                    )
                    .bind(it.envelope)
                    .bind(it.new_term)
                    .bind(it.secret_id)
                    .bind(it.version)
                    .bind(it.old_term)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                }
                Ok(n)
            })
                },
                Stale::Change(Change::All),
            )
            .await
    }

    /// How many live (not destroyed) versions each key term of `org` seals.
    pub async fn term_usage(&self, org: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key_term, COUNT(*) FROM secret_versions \
             WHERE org = $1 AND envelope IS NOT NULL GROUP BY key_term ORDER BY key_term",
        )
        .bind(org)
        .fetch_all(self.pool())
        .await?)
    }

    /// Entries of one log from `from_seq`, in order.
    pub async fn audit_entries(
        &self,
        log: &str,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, entry, leaf_hash FROM audit_entries WHERE log = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(log)
        .bind(from_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Leaf hashes of one log in `[from, to)`, in order.
    pub async fn audit_leaf_hashes(
        &self,
        log: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT leaf_hash FROM audit_entries WHERE log = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
        )
        .bind(log)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every log's head.
    pub async fn audit_heads(&self) -> Result<Vec<(String, LogHead)>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT log, size, state FROM audit_heads ORDER BY log")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(log, size, state)| (log, LogHead { size, state }))
            .collect())
    }

    /// Stores a signed checkpoint; false if one of that size existed (signed
    /// by another replica over the same tree).
    pub async fn add_checkpoint(&self, row: CheckpointRow) -> Result<bool, StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "INSERT INTO audit_checkpoints (log, size, root, note, created_at, state) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (log, size) DO NOTHING",
                )
                .bind(row.log)
                .bind(row.size)
                .bind(row.root)
                .bind(row.note)
                .bind(row.created_at)
                .bind(row.state)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Checkpoints of one log with size in `[min_size, max_size]`, oldest
    /// first.
    pub async fn checkpoints(
        &self,
        log: &str,
        min_size: i64,
        max_size: i64,
    ) -> Result<Vec<CheckpointRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT log, size, root, note, created_at, state FROM audit_checkpoints \
             WHERE log = $1 AND size >= $2 AND size <= $3 ORDER BY size",
        )
        .bind(log)
        .bind(min_size)
        .bind(max_size)
        .fetch_all(self.pool())
        .await?)
    }

    /// The newest checkpoint of one log.
    pub async fn latest_checkpoint(&self, log: &str) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT log, size, root, note, created_at, state FROM audit_checkpoints \
             WHERE log = $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(log)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The checkpoint signing key (verifier key and sealed private key),
    /// creating it with `make` if there is none. Replicas racing here all
    /// end up with the first one stored.
    pub async fn audit_signing_key(
        &self,
        make: impl FnOnce() -> Result<(String, Vec<u8>), StoreError>,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let get = || {
            sqlx::query_as::<_, (String, Vec<u8>)>(
                "SELECT vkey, sealed FROM audit_signing_key WHERE id = 1",
            )
            .fetch_optional(self.pool())
        };
        if let Some(row) = get().await? {
            return Ok(row);
        }
        let (vkey, sealed) = make()?;
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO audit_signing_key (id, vkey, sealed, created_at) \
                     VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(vkey)
                .bind(sealed)
                .bind(now_ms())
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await?;
        get()
            .await?
            .ok_or_else(|| StoreError::Database("audit signing key missing".into()))
    }
}

async fn insert_key(c: &mut AnyConnection, k: &OrgKeyRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO org_keys (org, term, salt, wrapped, encryptions, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(k.org.as_str())
    .bind(k.term)
    .bind(k.salt.clone())
    .bind(k.wrapped.clone())
    .bind(k.encryptions)
    .bind(k.created_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}
