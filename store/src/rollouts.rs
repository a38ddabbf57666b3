//! Secret rollouts (migration 0017): the services whose pods are served
//! pinned secret versions and rolled one pod at a time when their secrets
//! change, and the state of each one's rollout.

use crate::{Store, StoreError};

/// A rolled service's row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RolloutRow {
    /// `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// The service's organization.
    pub org: String,
    /// The versions the service's pods are served (opaque here).
    pub pinned: String,
    /// What the pods held when the rollout under way (or last) began.
    pub previous: Option<String>,
    /// [`ROLLOUT_IDLE`], [`ROLLOUT_ROLLING`] or [`ROLLOUT_FAILED`].
    pub state: String,
    /// What a rollout moves to, or (failed) what the last one was reverted
    /// from.
    pub target: Option<String>,
    /// The replica that claimed the last rollout.
    pub node: Option<String>,
    /// When the row last changed, ms.
    pub updated_at: i64,
}

/// No rollout under way; the pods hold `pinned`.
pub const ROLLOUT_IDLE: &str = "idle";
/// A replica is rolling the pods to `target`.
pub const ROLLOUT_ROLLING: &str = "rolling";
/// The rollout to `target` failed and was reverted to `pinned`.
pub const ROLLOUT_FAILED: &str = "failed";

const COLUMNS: &str = "service, org, pinned, previous, state, target, node, updated_at";

impl Store {
    /// Makes `service` a rolled service served `pinned`. A rolled service
    /// keeps its pin (a workload
    /// applied again keeps what its pods hold), and a failed rollout is
    /// forgotten (the workload applied again may take what it could not).
    pub async fn adopt_rollout(
        &self,
        service: &str,
        org: &str,
        pinned: String,
        now: i64,
    ) -> Result<(), StoreError> {
        let (service, org) = (service.to_owned(), org.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO secret_rollouts (service, org, pinned, state, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service) DO NOTHING",
                )
                .bind(service.as_str())
                .bind(org)
                .bind(pinned)
                .bind(ROLLOUT_IDLE)
                .bind(now)
                .execute(&mut *c)
                .await?;
                sqlx::query(
                    "UPDATE secret_rollouts SET state = $1, target = NULL, updated_at = $2 \
                     WHERE service = $3 AND state = $4",
                )
                .bind(ROLLOUT_IDLE)
                .bind(now)
                .bind(service)
                .bind(ROLLOUT_FAILED)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Forgets a service's rollouts: its pods are served the latest
    /// versions again.
    pub async fn drop_rollout(&self, service: &str) -> Result<(), StoreError> {
        let service = service.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM secret_rollouts WHERE service = $1")
                    .bind(service)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// A rolled service's row.
    pub async fn rollout(&self, service: &str) -> Result<Option<RolloutRow>, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM secret_rollouts WHERE service = $1"
        )))
        .bind(service)
        .fetch_optional(self.pool())
        .await
        .map_err(Into::into)
    }

    /// Every rolled service's row.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM secret_rollouts ORDER BY service"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(Into::into)
    }

    /// Claims the rollout of `service` to `target` for replica `node`:
    /// when no rollout is under way, the pods do not hold `target` already
    /// and `target` is not what the last rollout failed with; or when the
    /// one under way was last refreshed before `stale_before` (its replica
    /// died), whatever it pinned, to finish it. A fresh claim records the
    /// pin as `previous`; a takeover keeps the `previous` of the rollout it
    /// finishes. Answers whether this replica got it.
    pub async fn claim_rollout(
        &self,
        service: &str,
        target: String,
        node: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE secret_rollouts SET \
                     previous = CASE WHEN state = $1 THEN previous ELSE pinned END, \
                     state = $1, target = $2, node = $3, updated_at = $4 \
                     WHERE service = $5 AND ((pinned <> $2 \
                          AND (state = $6 OR (state = $7 AND target <> $2))) \
                          OR (state = $1 AND updated_at < $8))",
                )
                .bind(ROLLOUT_ROLLING)
                .bind(target)
                .bind(node)
                .bind(now)
                .bind(service)
                .bind(ROLLOUT_IDLE)
                .bind(ROLLOUT_FAILED)
                .bind(stale_before)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Moves the claimed rollout of `service` on: the pods are now served
    /// `pinned`, and the rollout is in `state` (for `target`). Only the
    /// replica `node` that claimed it may; answers whether it still held
    /// the claim.
    pub async fn advance_rollout(
        &self,
        service: &str,
        node: &str,
        pinned: String,
        state: &'static str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE secret_rollouts SET pinned = $1, state = $2, updated_at = $3 \
                     WHERE service = $4 AND node = $5 AND state = $6",
                )
                .bind(pinned)
                .bind(state)
                .bind(now)
                .bind(service)
                .bind(node)
                .bind(ROLLOUT_ROLLING)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }
}
