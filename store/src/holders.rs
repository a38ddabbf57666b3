//! The live map of secret holders (migration 0015): which pods hold which
//! versions of their service's secrets, one row per live secret watch.

use crate::{Store, StoreError};

/// A watch's row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HolderRow {
    /// The watch's id.
    pub watch: String,
    /// The process serving it.
    pub node: String,
    /// The service's organization.
    pub org: String,
    /// `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// The pod, as its wrapper names it.
    pub pod: String,
    /// The versions applied, as the server encoded them (opaque here).
    pub versions: String,
    /// When they were applied, ms.
    pub applied_at: i64,
    /// When the serving process last said the watch is live, ms.
    pub seen_at: i64,
}

impl Store {
    /// Records (or replaces) what a watch's pod holds.
    pub async fn put_holder(&self, row: HolderRow) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO secret_holders (watch, node, org, service, pod, versions, \
                     applied_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (watch) DO UPDATE SET versions = excluded.versions, \
                     applied_at = excluded.applied_at, seen_at = excluded.seen_at",
                )
                .bind(row.watch)
                .bind(row.node)
                .bind(row.org)
                .bind(row.service)
                .bind(row.pod)
                .bind(row.versions)
                .bind(row.applied_at)
                .bind(row.seen_at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Forgets a watch that ended.
    pub async fn drop_holder(&self, watch: &str) -> Result<(), StoreError> {
        let watch = watch.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM secret_holders WHERE watch = $1")
                    .bind(watch)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Marks every watch of process `node` live at `now`, and purges rows
    /// nobody refreshed since `purge_before` (their process died).
    pub async fn refresh_holders(
        &self,
        node: &str,
        now: i64,
        purge_before: i64,
    ) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("UPDATE secret_holders SET seen_at = $1 WHERE node = $2")
                    .bind(now)
                    .bind(node)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM secret_holders WHERE seen_at < $1")
                    .bind(purge_before)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// The rows of organization `org` refreshed since `seen_since`, by
    /// service and pod.
    pub async fn holders(&self, org: &str, seen_since: i64) -> Result<Vec<HolderRow>, StoreError> {
        sqlx::query_as(
            "SELECT watch, node, org, service, pod, versions, applied_at, seen_at \
             FROM secret_holders WHERE org = $1 AND seen_at >= $2 ORDER BY service, pod, watch",
        )
        .bind(org)
        .bind(seen_since)
        .fetch_all(self.pool())
        .await
        .map_err(Into::into)
    }
}
