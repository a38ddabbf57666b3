//! Kubernetes workload identity (migration 0014): each cluster's
//! service-account issuer (its `iss`, the audience Warden requires and its
//! public keys) and the bindings of a cluster's service accounts to
//! services. Both decide who obtains a workload credential, so every row
//! carries a MAC under the row key: a key set or a binding written into the
//! database by anyone but Warden is refused, not trusted.

use sqlx::AnyConnection;

use crate::integrity::{Field, Protected, Tagged, select};
use crate::*;

/// A cluster's service-account issuer.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssuerRow {
    /// The cluster.
    pub cluster: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The audience a token must include.
    pub audience: String,
    /// The JWKS, as validated and re-serialized.
    pub jwks: String,
    /// Who set it.
    pub updated_by: String,
    /// When, ms.
    pub updated_at: i64,
}

impl Protected for IssuerRow {
    const TABLE: &'static str = "cluster_issuers";
    const KEY: &'static [&'static str] = &["cluster"];
    const COLUMNS: &'static str = "cluster, issuer, audience, jwks, updated_by, updated_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.cluster]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.cluster),
            Field::Text(&self.issuer),
            Field::Text(&self.audience),
            Field::Text(&self.jwks),
            Field::Text(&self.updated_by),
            Field::Int(self.updated_at),
        ]
    }
}

/// Service account `namespace/service_account` of `cluster` may obtain a
/// workload credential for `service`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SaBindingRow {
    /// The cluster.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// The service, `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// Who bound it.
    pub created_by: String,
    /// When, ms.
    pub created_at: i64,
}

impl Protected for SaBindingRow {
    const TABLE: &'static str = "sa_bindings";
    const KEY: &'static [&'static str] = &["cluster", "namespace", "service_account", "service"];
    const COLUMNS: &'static str =
        "cluster, namespace, service_account, service, created_by, created_at";
    fn key(&self) -> Vec<&str> {
        vec![
            &self.cluster,
            &self.namespace,
            &self.service_account,
            &self.service,
        ]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.cluster),
            Field::Text(&self.namespace),
            Field::Text(&self.service_account),
            Field::Text(&self.service),
            Field::Text(&self.created_by),
            Field::Int(self.created_at),
        ]
    }
}

/// Whether cluster `name` has a row, inside a write.
async fn cluster_exists(c: &mut AnyConnection, name: &str) -> Result<bool, StoreError> {
    let found: Option<(String,)> = sqlx::query_as("SELECT name FROM clusters WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    Ok(found.is_some())
}

impl Store {
    /// Sets (or replaces) a cluster's issuer; `NotFound` if the cluster
    /// does not exist.
    pub async fn set_cluster_issuer(&self, row: IssuerRow) -> Result<(), StoreError> {
        let tag = self.guard.tag(&row)?;
        self.write(move |c| {
            Box::pin(async move {
                if !cluster_exists(&mut *c, &row.cluster).await? {
                    return Err(StoreError::NotFound(format!("cluster {}", row.cluster)));
                }
                sqlx::query("DELETE FROM cluster_issuers WHERE cluster = $1")
                    .bind(row.cluster.as_str())
                    .execute(&mut *c)
                    .await?;
                sqlx::query(
                    "INSERT INTO cluster_issuers (cluster, issuer, audience, jwks, \
                             updated_by, updated_at, mac) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(row.cluster)
                .bind(row.issuer)
                .bind(row.audience)
                .bind(row.jwks)
                .bind(row.updated_by)
                .bind(row.updated_at)
                .bind(tag)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// A cluster's issuer, if set.
    pub async fn cluster_issuer(&self, cluster: &str) -> Result<Option<IssuerRow>, StoreError> {
        let found: Option<Tagged<IssuerRow>> =
            sqlx::query_as(select::<IssuerRow>("WHERE cluster = $1"))
                .bind(cluster)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Adds a binding; false if it existed already (it is left as it was).
    /// `NotFound` if the cluster does not exist.
    pub async fn add_sa_binding(&self, row: SaBindingRow) -> Result<bool, StoreError> {
        let tag = self.guard.tag(&row)?;
        self.write(move |c| {
            Box::pin(async move {
                if !cluster_exists(&mut *c, &row.cluster).await? {
                    return Err(StoreError::NotFound(format!("cluster {}", row.cluster)));
                }
                let n = sqlx::query(
                    "INSERT INTO sa_bindings (cluster, namespace, service_account, \
                             service, created_by, created_at, mac) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (cluster, namespace, service_account, service) DO NOTHING",
                )
                .bind(row.cluster)
                .bind(row.namespace)
                .bind(row.service_account)
                .bind(row.service)
                .bind(row.created_by)
                .bind(row.created_at)
                .bind(tag)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// Removes a binding; false if there was none.
    pub async fn remove_sa_binding(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
        service: &str,
    ) -> Result<bool, StoreError> {
        let key = [cluster, namespace, service_account, service].map(str::to_owned);
        self.write(move |c| {
            Box::pin(async move {
                let [cluster, namespace, service_account, service] = key;
                let n = sqlx::query(
                    "DELETE FROM sa_bindings WHERE cluster = $1 AND namespace = $2 \
                             AND service_account = $3 AND service = $4",
                )
                .bind(cluster)
                .bind(namespace)
                .bind(service_account)
                .bind(service)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await
    }

    /// One binding, if it exists.
    pub async fn sa_binding(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
        service: &str,
    ) -> Result<Option<SaBindingRow>, StoreError> {
        let found: Option<Tagged<SaBindingRow>> = sqlx::query_as(select::<SaBindingRow>(
            "WHERE cluster = $1 AND namespace = $2 AND service_account = $3 AND service = $4",
        ))
        .bind(cluster)
        .bind(namespace)
        .bind(service_account)
        .bind(service)
        .fetch_optional(self.pool())
        .await?;
        self.guard.check_one(found)
    }

    /// The bindings of the services at or under `scope` (a path), by
    /// service, cluster, namespace and name.
    pub async fn sa_bindings_under(&self, scope: &str) -> Result<Vec<SaBindingRow>, StoreError> {
        // Names are `[a-z0-9-]`, so the path holds no LIKE wildcard.
        let found: Vec<Tagged<SaBindingRow>> = sqlx::query_as(select::<SaBindingRow>(
            "WHERE service = $1 OR service LIKE $2 \
             ORDER BY service, cluster, namespace, service_account",
        ))
        .bind(scope)
        .bind(format!("{scope}/%"))
        .fetch_all(self.pool())
        .await?;
        self.guard.check_all(found)
    }
}
