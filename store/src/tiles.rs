//! Storage of audit log tiles (see `migrations/sqlite/0005_audit_tiles.sql`):
//! the full tiles of each log's Merkle tree, written with the entries that
//! complete them, and read back for proofs. Storage hashes nothing: the
//! [`Sequencer`] makes the tiles; this module reads what it needs and
//! stores what it makes.

use sqlx::AnyConnection;

use crate::{Sequencer, Store, StoreError, TileRow};

const LEAF_HASHES: &str =
    "SELECT leaf_hash FROM audit_entries WHERE log = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
const TILE_ROOTS: &str = "SELECT root FROM audit_tiles WHERE log = $1 AND level = $2 \
     AND idx >= $3 AND idx < $4 ORDER BY idx";
const INSERT_TILE: &str = "INSERT INTO audit_tiles (log, level, idx, hashes, root) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (log, level, idx) DO NOTHING";

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Database("tile index out of range".into()))
}

/// The hashes of the open tiles `needed` names (see
/// [`Sequencer::open_tiles`]); `None` if some are not stored (the log's
/// tiles lag behind), in which case no tile can be made now.
pub(crate) async fn read_open(
    conn: &mut AnyConnection,
    log: &str,
    needed: &[(u8, u64, u64)],
) -> Result<Option<Vec<Vec<Vec<u8>>>>, StoreError> {
    let mut open = Vec::with_capacity(needed.len());
    for &(level, from, to) in needed {
        if from == to {
            open.push(Vec::new());
            continue;
        }
        let rows: Vec<Vec<u8>> = if level == 0 {
            sqlx::query_scalar(LEAF_HASHES)
                .bind(log)
                .bind(int(from)?)
                .bind(int(to)?)
                .fetch_all(&mut *conn)
                .await?
        } else {
            sqlx::query_scalar(TILE_ROOTS)
                .bind(log)
                .bind(i64::from(level) - 1)
                .bind(int(from)?)
                .bind(int(to)?)
                .fetch_all(&mut *conn)
                .await?
        };
        if rows.len() as u64 != to - from {
            return Ok(None);
        }
        open.push(rows);
    }
    Ok(Some(open))
}

/// Stores tiles (a tile stored already is left as it is).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    log: &str,
    tiles: Vec<TileRow>,
) -> Result<(), StoreError> {
    for t in tiles {
        sqlx::query(INSERT_TILE)
            .bind(log)
            .bind(t.level)
            .bind(t.idx)
            .bind(t.hashes)
            .bind(t.root)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// In the appending transaction: the tiles that appending `leaves` to a log
/// of `size` completes, stored; returns whether they were (false when the
/// log's stored tiles lag behind its entries, which the caller then leaves
/// to catch up).
pub(crate) async fn extend(
    conn: &mut AnyConnection,
    sequencer: &dyn Sequencer,
    log: &str,
    size: u64,
    leaves: &[Vec<u8>],
) -> Result<bool, StoreError> {
    let needed = sequencer
        .open_tiles(size, leaves.len() as u64)
        .map_err(StoreError::Database)?;
    if needed.is_empty() {
        return Ok(true);
    }
    let Some(open) = read_open(conn, log, &needed).await? else {
        tracing::warn!(%log, size, "audit tiles missing below the head; they will be rebuilt");
        return Ok(false);
    };
    let tiles = sequencer
        .tiles(size, open, leaves)
        .map_err(StoreError::Database)?;
    insert(conn, log, tiles).await?;
    Ok(true)
}

impl Store {
    /// A log's size and how many of its leaves its stored tiles cover.
    pub async fn audit_tiled(&self, log: &str) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT size, tiled FROM audit_heads WHERE log = $1")
                .bind(log)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// One stored (full) tile's hashes.
    pub async fn audit_tile(
        &self,
        log: &str,
        level: i64,
        idx: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT hashes FROM audit_tiles WHERE log = $1 AND level = $2 AND idx = $3",
        )
        .bind(log)
        .bind(level)
        .bind(idx)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The roots of stored tiles `[from, to)` of `level`, in order.
    pub async fn audit_tile_roots(
        &self,
        log: &str,
        level: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(TILE_ROOTS)
            .bind(log)
            .bind(level)
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?)
    }

    /// Stores `tiles`, made by the caller for leaves `[from, to)` of `log`,
    /// and records that the tiles now cover `to` leaves; only if they
    /// covered exactly `from` (otherwise another process got there first,
    /// and this returns false).
    pub async fn add_audit_tiles(
        &self,
        log: &str,
        from: i64,
        to: i64,
        tiles: Vec<TileRow>,
    ) -> Result<bool, StoreError> {
        let lock = self.dialect.lock_audit_head();
        let log = log.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let Some((size, _, tiled)): Option<(i64, Vec<u8>, i64)> = sqlx::query_as(lock)
                    .bind(log.as_str())
                    .fetch_optional(&mut *c)
                    .await?
                else {
                    return Ok(false);
                };
                if tiled != from || to > size {
                    return Ok(false);
                }
                insert(c, &log, tiles).await?;
                sqlx::query("UPDATE audit_heads SET tiled = $2 WHERE log = $1")
                    .bind(log.as_str())
                    .bind(to)
                    .execute(&mut *c)
                    .await?;
                Ok(true)
            })
        })
        .await
    }
}
