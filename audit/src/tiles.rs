//! Proofs and frontiers from each log's stored tiles (`warden_tlog::tiles`),
//! so serving one costs O(log n) small reads, not every leaf hash of the log.
//!
//! The [`TreeSequencer`](crate::TreeSequencer) stores a log's full tiles in
//! the transaction that appends the entries completing them. Logs from
//! before tiles existed, or whose tiles lag for any other reason, are
//! caught up from their stored leaf hashes ([`catch_up`]): in the
//! background from [`crate::Auditor::new`], and before any proof that needs
//! it.
//!
//! Stored tiles are not trusted more than the rest of the database: a proof
//! is checked against the signed checkpoint's root before it is handed out
//! ([`inclusion`]).

use std::collections::{BTreeSet, HashMap};

use warden_store::{AuditRow, Store, StoreError, TileRow};
use warden_tlog::merkle::{Frontier, Hash, MerkleError, leaf_hash, verify_inclusion};
use warden_tlog::tiles::{self, Subtree, TILE_WIDTH, TileSlice, hashes_at};

/// Leaves hashed per step when catching up (one short write each).
const CATCH_UP_STEP: u64 = 16 * 1024;

/// Why a proof or frontier could not be made from tiles.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index or size is not in the tree.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// Stored hashes are missing or inconsistent with the signed tree
    /// (names the log; possible tampering).
    #[error("audit log {log}: {reason}")]
    Inconsistent {
        /// The log.
        log: String,
        /// What is wrong.
        reason: String,
    },
}

fn inconsistent(log: &str, reason: impl Into<String>) -> TileError {
    TileError::Inconsistent {
        log: log.to_owned(),
        reason: reason.into(),
    }
}

/// Tiles as stored rows.
pub(crate) fn rows(
    made: Result<Vec<tiles::Tile>, tiles::TileError>,
) -> Result<Vec<TileRow>, String> {
    made.map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| {
            Ok(TileRow {
                level: i64::from(t.level),
                idx: i64::try_from(t.index).map_err(|e| e.to_string())?,
                hashes: t.hashes.concat(),
                root: t.root.to_vec(),
            })
        })
        .collect()
}

fn to_hashes(log: &str, stored: Vec<Vec<u8>>) -> Result<Vec<Hash>, TileError> {
    stored
        .into_iter()
        .map(|h| {
            Hash::try_from(h.as_slice())
                .map_err(|_| inconsistent(log, "a stored hash is not 32 bytes"))
        })
        .collect()
}

fn int(v: u64) -> Result<i64, TileError> {
    i64::try_from(v).map_err(|_| MerkleError::Full.into())
}

/// Stored level hashes `[from, to)` of `log` at `level` (leaf hashes at
/// level 0, roots of the full tiles below otherwise); all of them or an
/// error.
async fn level_hashes(
    store: &Store,
    log: &str,
    level: u8,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, TileError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let stored = if level == 0 {
        store.audit_leaf_hashes(log, int(from)?, int(to)?).await?
    } else {
        store
            .audit_tile_roots(log, i64::from(level) - 1, int(from)?, int(to)?)
            .await?
    };
    if stored.len() as u64 != to - from {
        return Err(inconsistent(
            log,
            format!("level {level} hashes {from}..{to} are not all stored"),
        ));
    }
    to_hashes(log, stored)
}

/// Makes `log`'s stored tiles cover at least its first `upto` leaves (its
/// whole size with `None`), from its stored leaf hashes, a step at a time.
pub async fn catch_up(store: &Store, log: &str, upto: Option<u64>) -> Result<(), TileError> {
    loop {
        let Some((size, tiled)) = store.audit_tiled(log).await? else {
            return Ok(());
        };
        let (size, tiled) = (
            u64::try_from(size).unwrap_or(0),
            u64::try_from(tiled).unwrap_or(0),
        );
        if tiled >= upto.map_or(size, |u| u.min(size)) {
            return Ok(());
        }
        let end = size.min(tiled + CATCH_UP_STEP);
        let mut open = Vec::new();
        for (level, from, to) in
            tiles::open_tiles(tiled, end - tiled).map_err(|e| inconsistent(log, e.to_string()))?
        {
            open.push(level_hashes(store, log, level, from, to).await?);
        }
        let leaves = level_hashes(store, log, 0, tiled, end).await?;
        let made = rows(tiles::extend(tiled, open, &leaves)).map_err(|e| inconsistent(log, e))?;
        // False when another process moved the tiles on first: look again.
        store
            .add_audit_tiles(log, int(tiled)?, int(end)?, made)
            .await?;
    }
}

/// Catches up every log's tiles; errors are logged, not returned (a log
/// that cannot be caught up fails its proofs, not the server).
pub async fn catch_up_all(store: Store) {
    let heads = match store.audit_heads().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list audit logs to build their tiles");
            return;
        }
    };
    for (log, _) in heads {
        if let Err(e) = catch_up(&store, &log, None).await {
            tracing::error!(%log, error = %e, "audit tiles could not be built");
        }
    }
}

/// The tiles (full, or the incomplete rightmost one of a level) that the
/// subtree hashes of a tree of `size` leaves are computed from.
struct Tiles<'a> {
    store: &'a Store,
    log: &'a str,
    size: u64,
    loaded: HashMap<(u8, u64), Vec<Hash>>,
}

impl<'a> Tiles<'a> {
    fn new(store: &'a Store, log: &'a str, size: u64) -> Self {
        Self {
            store,
            log,
            size,
            loaded: HashMap::new(),
        }
    }

    /// Reads the tiles `slices` lie in: one row for a full tile; for the
    /// incomplete one of a level, its hashes so far (fewer than 256 rows).
    async fn load(&mut self, slices: BTreeSet<TileSlice>) -> Result<(), TileError> {
        for (level, tile) in slices.into_iter().map(|s| (s.level, s.tile)) {
            if self.loaded.contains_key(&(level, tile)) {
                continue;
            }
            let hashes = match self
                .store
                .audit_tile(self.log, i64::from(level), int(tile)?)
                .await?
            {
                Some(blob) => {
                    if blob.len() as u64 != 32 * TILE_WIDTH {
                        return Err(inconsistent(self.log, "a stored tile is not 256 hashes"));
                    }
                    blob.chunks_exact(32)
                        .map(|c| Hash::try_from(c).unwrap_or([0; 32]))
                        .collect()
                }
                None => {
                    let from = tile * TILE_WIDTH;
                    let to = hashes_at(level, self.size).min(from + TILE_WIDTH);
                    level_hashes(self.store, self.log, level, from, to).await?
                }
            };
            self.loaded.insert((level, tile), hashes);
        }
        Ok(())
    }

    fn hash(&self, s: Subtree) -> Result<Hash, TileError> {
        let slice = s.slice();
        self.loaded
            .get(&(slice.level, slice.tile))
            .and_then(|h| tiles::slice_hash(&slice, h))
            .ok_or_else(|| inconsistent(self.log, "a subtree's tile hashes are missing"))
    }
}

/// The tiles a computation over subtree hashes will ask for, found by
/// running it once with placeholder hashes (which subtrees it needs does
/// not depend on their values).
fn wanted<T>(
    run: impl FnOnce(&mut dyn FnMut(Subtree) -> Result<Hash, MerkleError>) -> Result<T, MerkleError>,
) -> Result<BTreeSet<TileSlice>, MerkleError> {
    let mut slices = BTreeSet::new();
    run(&mut |s: Subtree| {
        slices.insert(s.slice());
        Ok([0; 32])
    })?;
    Ok(slices)
}

/// The inclusion proof of leaf `index` in `log`'s tree of `size` leaves,
/// from stored tiles: byte for byte what
/// [`warden_tlog::merkle::inclusion_proof`] gives from every leaf hash.
pub async fn inclusion_proof(
    store: &Store,
    log: &str,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TileError> {
    catch_up(store, log, Some(size)).await?;
    let slices = wanted(|f| tiles::inclusion_proof_with(index, size, f))?;
    let mut tiles = Tiles::new(store, log, size);
    tiles.load(slices).await?;
    tiles::inclusion_proof_with(index, size, |s| tiles.hash(s))
}

/// Entry `index` of `log` and its inclusion proof in the tree of `size`
/// leaves whose signed root is `root`. The proof is checked against that
/// root before it is returned, so stored data that does not match the
/// signed tree is an error, never a wrong proof.
pub async fn inclusion(
    store: &Store,
    log: &str,
    index: u64,
    size: u64,
    root: &Hash,
) -> Result<(AuditRow, Vec<Hash>), TileError> {
    let row = store
        .audit_entries(log, int(index)?, 1)
        .await?
        .pop()
        .filter(|r| r.seq == index as i64)
        .ok_or_else(|| inconsistent(log, format!("entry {index} is missing")))?;
    let proof = inclusion_proof(store, log, index, size).await?;
    verify_inclusion(&leaf_hash(row.entry.as_bytes()), index, size, &proof, root).map_err(|e| {
        inconsistent(
            log,
            format!("the proof of entry {index} from stored hashes does not match checkpoint {size}: {e}"),
        )
    })?;
    Ok((row, proof))
}

/// The [`Frontier`] of `log`'s first `size` leaves (with the last leaf's
/// hash), from stored tiles.
pub async fn frontier_at(store: &Store, log: &str, size: u64) -> Result<Frontier, TileError> {
    if size == 0 {
        return Ok(Frontier::new());
    }
    catch_up(store, log, Some(size)).await?;
    let slices = wanted(|f| {
        tiles::frontier_subtrees(size)
            .into_iter()
            .try_for_each(|s| f(s).map(|_| ()))
    })?;
    let mut tiles = Tiles::new(store, log, size);
    tiles.load(slices).await?;
    let last = level_hashes(store, log, 0, size - 1, size).await?;
    let last = last
        .first()
        .copied()
        .ok_or_else(|| inconsistent(log, "the last leaf is missing"))?;
    tiles::frontier_with(size, last, |s| tiles.hash(s))
}
