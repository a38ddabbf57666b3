//! Clusters, their join tokens, environments' placement on them, and the
//! agent CA (migration 0009). Every row carries a MAC under the row key:
//! a row written into the database by anyone but Warden (a join token, a
//! certificate fingerprint, a CA) is refused, not trusted.

use crate::integrity::{Field, Protected, Tagged, select};
use crate::writer::Stale;
use crate::*;

/// A cluster and the agent enrolled for it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClusterRow {
    /// Its name (a `ScopePath`-style segment).
    pub name: String,
    /// Who created it.
    pub created_by: String,
    /// When, ms.
    pub created_at: i64,
    /// Hex SHA-256 of the enrolled agent's certificate (DER).
    pub cert_fingerprint: Option<String>,
    /// When the agent enrolled, ms.
    pub enrolled_at: Option<i64>,
}

impl Protected for ClusterRow {
    const TABLE: &'static str = "clusters";
    const KEY: &'static [&'static str] = &["name"];
    const COLUMNS: &'static str = "name, created_by, created_at, cert_fingerprint, enrolled_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.name]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.name),
            Field::Text(&self.created_by),
            Field::Int(self.created_at),
            Field::OptText(self.cert_fingerprint.as_deref()),
            Field::OptInt(self.enrolled_at),
        ]
    }
}

/// A join token, by the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JoinTokenRow {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The cluster it enrolls.
    pub cluster: String,
    /// When it was made, ms.
    pub created_at: i64,
    /// When it stops working, ms.
    pub expires_at: i64,
    /// When it was redeemed, ms.
    pub used_at: Option<i64>,
}

impl Protected for JoinTokenRow {
    const TABLE: &'static str = "join_tokens";
    const KEY: &'static [&'static str] = &["token_hash"];
    const COLUMNS: &'static str = "token_hash, cluster, created_at, expires_at, used_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.cluster]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Bytes(&self.token_hash),
            Field::Text(&self.cluster),
            Field::Int(self.created_at),
            Field::Int(self.expires_at),
            Field::OptInt(self.used_at),
        ]
    }
}

/// An environment placed on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlacementRow {
    /// `org/project/env`.
    pub env: String,
    /// The cluster's name.
    pub cluster: String,
}

impl Protected for PlacementRow {
    const TABLE: &'static str = "placements";
    const KEY: &'static [&'static str] = &["env"];
    const COLUMNS: &'static str = "env, cluster";
    fn key(&self) -> Vec<&str> {
        vec![&self.env]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![Field::Text(&self.env), Field::Text(&self.cluster)]
    }
}

/// The agent CA.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentCaRow {
    /// Its self-signed certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its PKCS#8 key sealed under the root key.
    pub sealed_key: Vec<u8>,
    /// When it was made, ms.
    pub created_at: i64,
}

impl Protected for AgentCaRow {
    const TABLE: &'static str = "agent_ca";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static str = "cert_der, sealed_key, created_at";
    fn key(&self) -> Vec<&str> {
        vec!["1"]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Bytes(&self.cert_der),
            Field::Bytes(&self.sealed_key),
            Field::Int(self.created_at),
        ]
    }
}

/// How redeeming a join token went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The token was valid and is now used; the cluster records `fingerprint`.
    Enrolled(ClusterRow),
    /// No such token (never issued, or its cluster was removed).
    Unknown,
    /// Used before.
    Used,
    /// Past its expiry.
    Expired,
}

impl Store {
    /// Creates a cluster with a join token; `Conflict` if the cluster
    /// exists and `create` is set. Without `create`, adds a token to an
    /// existing cluster (re-enrollment); `NotFound` if there is none.
    pub async fn add_join_token(
        &self,
        cluster: ClusterRow,
        token: JoinTokenRow,
        create: bool,
    ) -> Result<(), StoreError> {
        let cluster_tag = self.guard.tag(&cluster)?;
        let token_tag = self.guard.tag(&token)?;
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        let exists: Option<(String,)> =
                            sqlx::query_as("SELECT name FROM clusters WHERE name = $1")
                                .bind(cluster.name.as_str())
                                .fetch_optional(&mut *c)
                                .await?;
                        match (exists.is_some(), create) {
                            (true, true) => {
                                return Err(StoreError::Conflict(format!(
                                    "cluster {}",
                                    cluster.name
                                )));
                            }
                            (false, false) => {
                                return Err(StoreError::NotFound(format!(
                                    "cluster {}",
                                    cluster.name
                                )));
                            }
                            (false, true) => {
                                sqlx::query(
                                    "INSERT INTO clusters (name, created_by, created_at, \
                                     cert_fingerprint, enrolled_at, mac) \
                                     VALUES ($1, $2, $3, $4, $5, $6)",
                                )
                                .bind(cluster.name.as_str())
                                .bind(cluster.created_by.as_str())
                                .bind(cluster.created_at)
                                .bind(cluster.cert_fingerprint.clone())
                                .bind(cluster.enrolled_at)
                                .bind(cluster_tag)
                                .execute(&mut *c)
                                .await?;
                            }
                            (true, false) => {}
                        }
                        sqlx::query(
                            "INSERT INTO join_tokens (token_hash, cluster, created_at, \
                             expires_at, used_at, mac) VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(token.token_hash)
                        .bind(token.cluster)
                        .bind(token.created_at)
                        .bind(token.expires_at)
                        .bind(token.used_at)
                        .bind(token_tag)
                        .execute(&mut *c)
                        .await?;
                        Ok(())
                    })
                },
                Stale::Nothing,
            )
            .await
    }

    /// Redeems a join token atomically: marks it used and records the new
    /// certificate's fingerprint on its cluster, in one transaction, so a
    /// token enrolls at most one agent however many try at once.
    pub async fn redeem_join_token(
        &self,
        token_hash: Vec<u8>,
        fingerprint: String,
        now: i64,
    ) -> Result<Redeemed, StoreError> {
        let guard = self.guard.clone();
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        let found: Option<Tagged<JoinTokenRow>> =
                            sqlx::query_as(select::<JoinTokenRow>("WHERE token_hash = $1"))
                                .bind(token_hash.as_slice())
                                .fetch_optional(&mut *c)
                                .await?;
                        let Some(mut token) = guard.check_one(found)? else {
                            return Ok(Redeemed::Unknown);
                        };
                        if token.used_at.is_some() {
                            return Ok(Redeemed::Used);
                        }
                        if token.expires_at <= now {
                            return Ok(Redeemed::Expired);
                        }
                        let found: Option<Tagged<ClusterRow>> =
                            sqlx::query_as(select::<ClusterRow>("WHERE name = $1"))
                                .bind(token.cluster.as_str())
                                .fetch_optional(&mut *c)
                                .await?;
                        let Some(mut cluster) = guard.check_one(found)? else {
                            return Ok(Redeemed::Unknown);
                        };
                        token.used_at = Some(now);
                        let n = sqlx::query(
                            "UPDATE join_tokens SET used_at = $1, mac = $2 \
                             WHERE token_hash = $3 AND used_at IS NULL",
                        )
                        .bind(now)
                        .bind(guard.tag(&token)?)
                        .bind(token.token_hash.as_slice())
                        .execute(&mut *c)
                        .await?
                        .rows_affected();
                        if n != 1 {
                            return Ok(Redeemed::Used);
                        }
                        cluster.cert_fingerprint = Some(fingerprint);
                        cluster.enrolled_at = Some(now);
                        sqlx::query(
                            "UPDATE clusters SET cert_fingerprint = $1, enrolled_at = $2, \
                             mac = $3 WHERE name = $4",
                        )
                        .bind(cluster.cert_fingerprint.clone())
                        .bind(now)
                        .bind(guard.tag(&cluster)?)
                        .bind(cluster.name.as_str())
                        .execute(&mut *c)
                        .await?;
                        Ok(Redeemed::Enrolled(cluster))
                    })
                },
                Stale::Nothing,
            )
            .await
    }

    /// A join token by the hash of its secret.
    pub async fn join_token(&self, token_hash: &[u8]) -> Result<Option<JoinTokenRow>, StoreError> {
        let found: Option<Tagged<JoinTokenRow>> =
            sqlx::query_as(select::<JoinTokenRow>("WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Every cluster, by name.
    pub async fn clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        let found: Vec<Tagged<ClusterRow>> = sqlx::query_as(select::<ClusterRow>("ORDER BY name"))
            .fetch_all(self.pool())
            .await?;
        self.guard.check_all(found)
    }

    /// One cluster.
    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        let found: Option<Tagged<ClusterRow>> =
            sqlx::query_as(select::<ClusterRow>("WHERE name = $1"))
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Removes a cluster, its join tokens, its service-account issuer and
    /// its service accounts' bindings; false if there was none. Its
    /// environments stay placed on it (their pods are unavailable until it
    /// comes back or they are placed elsewhere), never silently moved.
    pub async fn remove_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        let name_changed = name.clone();
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        // Its join tokens, service-account issuer and
                        // bindings go with it: a cluster made later under
                        // the same name starts with none.
                        for table in ["join_tokens", "cluster_issuers", "sa_bindings"] {
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DELETE FROM {table} WHERE cluster = $1"
                            )))
                            .bind(name.as_str())
                            .execute(&mut *c)
                            .await?;
                        }
                        let n = sqlx::query("DELETE FROM clusters WHERE name = $1")
                            .bind(name.as_str())
                            .execute(&mut *c)
                            .await?
                            .rows_affected();
                        Ok(n == 1)
                    })
                },
                Stale::Change(Change::Cluster(name_changed)),
            )
            .await
    }

    /// Places an environment on a cluster (replacing an earlier placement).
    pub async fn place(&self, row: PlacementRow) -> Result<(), StoreError> {
        let tag = self.guard.tag(&row)?;
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM placements WHERE env = $1")
                            .bind(row.env.as_str())
                            .execute(&mut *c)
                            .await?;
                        sqlx::query(
                            "INSERT INTO placements (env, cluster, mac) VALUES ($1, $2, $3)",
                        )
                        .bind(row.env.as_str())
                        .bind(row.cluster.as_str())
                        .bind(tag)
                        .execute(&mut *c)
                        .await?;
                        Ok(())
                    })
                },
                Stale::Nothing,
            )
            .await
    }

    /// The cluster an environment is placed on, if any.
    pub async fn placement(&self, env: &str) -> Result<Option<PlacementRow>, StoreError> {
        let found: Option<Tagged<PlacementRow>> =
            sqlx::query_as(select::<PlacementRow>("WHERE env = $1"))
                .bind(env)
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Every placement, by environment.
    pub async fn placements(&self) -> Result<Vec<PlacementRow>, StoreError> {
        let found: Vec<Tagged<PlacementRow>> =
            sqlx::query_as(select::<PlacementRow>("ORDER BY env"))
                .fetch_all(self.pool())
                .await?;
        self.guard.check_all(found)
    }

    /// Records that replica `node`'s agent listener is at `address` now.
    pub async fn heartbeat_agent_endpoint(
        &self,
        node: &str,
        address: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let (node, address) = (node.to_owned(), address.to_owned());
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO agent_endpoints (node, address, seen_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (node) DO UPDATE SET \
                             address = excluded.address, seen_at = excluded.seen_at",
                        )
                        .bind(node)
                        .bind(address)
                        .bind(now)
                        .execute(&mut *c)
                        .await?;
                        Ok(())
                    })
                },
                Stale::Nothing,
            )
            .await
    }

    /// The agent listeners seen between `since` and `until` (ms; a row
    /// from the future is not believed): (node, address), by node.
    pub async fn agent_endpoints(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(
            "SELECT node, address FROM agent_endpoints \
             WHERE seen_at >= $1 AND seen_at <= $2 ORDER BY node",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await
        .map_err(Into::into)
    }

    /// The agent CA, if made.
    pub async fn agent_ca(&self) -> Result<Option<AgentCaRow>, StoreError> {
        let found: Option<Tagged<AgentCaRow>> =
            sqlx::query_as(select::<AgentCaRow>("WHERE id = 1"))
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Stores the agent CA unless one exists; answers the one stored (a
    /// replica that lost the race gets the winner's).
    pub async fn init_agent_ca(&self, row: AgentCaRow) -> Result<AgentCaRow, StoreError> {
        let tag = self.guard.tag(&row)?;
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO agent_ca (id, cert_der, sealed_key, created_at, mac) \
                             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(row.cert_der)
                        .bind(row.sealed_key)
                        .bind(row.created_at)
                        .bind(tag)
                        .execute(&mut *c)
                        .await?;
                        Ok(())
                    })
                },
                Stale::Nothing,
            )
            .await?;
        self.agent_ca()
            .await?
            .ok_or_else(|| StoreError::NotFound("agent CA".into()))
    }
}
