//! What the shell gateway keeps: its SSH host key (sealed).

use crate::integrity::{Field, Protected, Tagged, select};
use crate::writer::Stale;
use crate::{Store, StoreError};

/// The SSH host key: an Ed25519 seed sealed under the root key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshHostKeyRow {
    /// The 32-byte seed, sealed.
    pub sealed_seed: Vec<u8>,
    /// When it was made, ms.
    pub created_at: i64,
}

impl Protected for SshHostKeyRow {
    const TABLE: &'static str = "ssh_host_key";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static str = "sealed_seed, created_at";
    fn key(&self) -> Vec<&str> {
        vec!["1"]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![Field::Bytes(&self.sealed_seed), Field::Int(self.created_at)]
    }
}

impl Store {
    /// The SSH host key, if made.
    pub async fn ssh_host_key(&self) -> Result<Option<SshHostKeyRow>, StoreError> {
        let found: Option<Tagged<SshHostKeyRow>> =
            sqlx::query_as(select::<SshHostKeyRow>("WHERE id = 1"))
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Stores the SSH host key unless one exists; answers the one stored (a
    /// replica that lost the race gets the winner's).
    pub async fn init_ssh_host_key(&self, row: SshHostKeyRow) -> Result<SshHostKeyRow, StoreError> {
        let tag = self.guard.tag(&row)?;
        self.writer
            .run(
                move |c| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO ssh_host_key (id, sealed_seed, created_at, mac) \
                             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(row.sealed_seed)
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
        self.ssh_host_key()
            .await?
            .ok_or_else(|| StoreError::NotFound("SSH host key".into()))
    }
}
