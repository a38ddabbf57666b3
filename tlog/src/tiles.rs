//! Tiles of a Merkle tree (C2SP tlog-tiles geometry), and proofs made from
//! stored subtree hashes instead of every leaf.
//!
//! A tile at `level` L and `index` N holds 256 hashes: hash `i` is the root
//! of the perfect subtree over leaves `[(256·N + i)·256^L, (256·N + i + 1)·256^L)`.
//! Level 0 tiles hold leaf hashes; the root of a full level-L tile is one
//! hash of level L + 1. Only full tiles are kept; the hashes of the
//! rightmost, incomplete tile of a level are the few leaf hashes past the
//! last full level-0 tile, or the roots of the few full tiles past the last
//! full tile of the level above.
//!
//! With them, any perfect subtree hash needs at most one tile: a subtree of
//! height `8·L + r` (`r < 8`) is the root of `2^r` consecutive hashes of one
//! level-L tile. An inclusion proof is made of O(log n) such subtrees
//! ([`inclusion_proof_with`]), so it costs O(log n) tile reads whatever the
//! log's size, and gives exactly the proof of
//! [`crate::merkle::inclusion_proof`] over all the leaves.
//!
//! Pure, like the rest of the crate: where hashes come from is the caller's
//! business (a closure).

use crate::merkle::{Frontier, Hash, MerkleError, root_of};

/// Levels of the tree one tile spans.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Why tiles could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The hashes given for an open tile are not the number its position
    /// requires.
    #[error("level {level}: {got} hashes given for the open tile, {expected} expected")]
    OpenTile {
        /// The level.
        level: u8,
        /// How many were needed.
        expected: u64,
        /// How many were given.
        got: usize,
    },
    /// The tree would exceed 2^64 − 1 leaves.
    #[error("the tree is full")]
    Full,
}

/// A full tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Its level (0: leaf hashes).
    pub level: u8,
    /// Its index within the level.
    pub index: u64,
    /// Its 256 hashes.
    pub hashes: Vec<Hash>,
    /// The root of the subtree it covers: hash `index` of level `level + 1`.
    pub root: Hash,
}

/// How many hashes level `level` has in a tree of `size` leaves (each the
/// root of a complete subtree of `256^level` leaves).
pub fn hashes_at(level: u8, size: u64) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0)
}

/// The open (incomplete) tiles whose hashes [`extend`] needs to append
/// `count` leaves to a tree of `size`: for each level at which a tile
/// completes, the range `[from, to)` of that level's hashes already in the
/// tree that the completing tile starts with (empty when it starts fresh).
/// Levels come in order from 0.
pub fn open_tiles(size: u64, count: u64) -> Result<Vec<(u8, u64, u64)>, TileError> {
    let end = size.checked_add(count).ok_or(TileError::Full)?;
    let mut out = Vec::new();
    for level in 0..=u8::MAX {
        let (before, after) = (hashes_at(level, size), hashes_at(level, end));
        if after / TILE_WIDTH <= before / TILE_WIDTH {
            break;
        }
        out.push((level, before - before % TILE_WIDTH, before));
    }
    Ok(out)
}

/// The full tiles completed by appending `leaves` to a tree of `size`
/// leaves. `open` holds, in [`open_tiles`] order, the hashes of each
/// completing level's open tile.
pub fn extend(size: u64, open: Vec<Vec<Hash>>, leaves: &[Hash]) -> Result<Vec<Tile>, TileError> {
    let needed = open_tiles(size, leaves.len() as u64)?;
    let mut open = open.into_iter();
    let mut tiles = Vec::new();
    // The hashes this extension adds at the current level.
    let mut incoming: Vec<Hash> = leaves.to_vec();
    for (level, from, to) in needed {
        let mut row = open.next().unwrap_or_default();
        if row.len() as u64 != to - from {
            return Err(TileError::OpenTile {
                level,
                expected: to - from,
                got: row.len(),
            });
        }
        row.extend_from_slice(&incoming);
        let first = from / TILE_WIDTH;
        let mut next = Vec::new();
        for (i, chunk) in row.chunks_exact(TILE_WIDTH as usize).enumerate() {
            let root = root_of(chunk);
            next.push(root);
            tiles.push(Tile {
                level,
                index: first + i as u64,
                hashes: chunk.to_vec(),
                root,
            });
        }
        incoming = next;
    }
    Ok(tiles)
}

/// A perfect subtree: the `2^height` leaves `[index·2^height, (index+1)·2^height)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    /// log2 of its leaf count.
    pub height: u8,
    /// Its position among the subtrees of that size.
    pub index: u64,
}

/// Where a subtree's hash is found: the root of `count` consecutive hashes,
/// from `first`, of tile `tile` at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileSlice {
    /// The tile's level.
    pub level: u8,
    /// The tile's index.
    pub tile: u64,
    /// The first hash used.
    pub first: usize,
    /// How many (a power of two, 1 to 128).
    pub count: usize,
}

impl Subtree {
    /// The tile hashes whose root this subtree's hash is.
    pub fn slice(&self) -> TileSlice {
        let level = self.height / TILE_HEIGHT;
        let r = self.height % TILE_HEIGHT;
        let start = self.index << r;
        TileSlice {
            level,
            tile: start / TILE_WIDTH,
            first: (start % TILE_WIDTH) as usize,
            count: 1usize << r,
        }
    }
}

/// The perfect subtrees, left to right, that make up the leaves
/// `[from, to)`, where `from` is a multiple of the largest power of two not
/// above `to − from` (true of every range a proof or a frontier uses). The
/// range's RFC 6962 hash is theirs folded from the right.
fn pieces(from: u64, to: u64) -> Vec<Subtree> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let height = (63 - (to - at).leading_zeros()) as u8;
        out.push(Subtree {
            height,
            index: at >> height,
        });
        at += 1 << height;
    }
    out
}

fn range_hash<E>(
    from: u64,
    to: u64,
    subtree: &mut impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let hashes = pieces(from, to)
        .into_iter()
        .map(&mut *subtree)
        .collect::<Result<Vec<Hash>, E>>()?;
    let mut it = hashes.into_iter().rev();
    let last = it.next().unwrap_or([0; 32]);
    Ok(it.fold(last, |acc, left| crate::merkle::node_hash(&left, &acc)))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, from
/// perfect subtree hashes given by `subtree` (which is only asked about
/// subtrees inside the tree): the same proof as
/// [`crate::merkle::inclusion_proof`] gives from all the leaves.
pub fn inclusion_proof_with<E: From<MerkleError>>(
    index: u64,
    size: u64,
    mut subtree: impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    // RFC 9162 PATH(m, D[lo:hi]), unrolled from the top: the sibling range
    // at each split, outermost first; the proof lists them innermost first.
    let mut siblings = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let n = hi - lo;
        let k = 1u64 << (63 - (n - 1).leading_zeros());
        if index - lo < k {
            siblings.push((lo + k, hi));
            hi = lo + k;
        } else {
            siblings.push((lo, lo + k));
            lo += k;
        }
    }
    siblings
        .into_iter()
        .rev()
        .map(|(from, to)| range_hash(from, to, &mut subtree))
        .collect()
}

/// The perfect subtrees making up the first `size` leaves, largest first:
/// the hashes of a [`Frontier`] of that size.
pub fn frontier_subtrees(size: u64) -> Vec<Subtree> {
    pieces(0, size)
}

/// The [`Frontier`] of the first `size` leaves, from subtree hashes and the
/// last leaf's hash.
pub fn frontier_with<E: From<MerkleError>>(
    size: u64,
    last_leaf: Hash,
    subtree: impl FnMut(Subtree) -> Result<Hash, E>,
) -> Result<Frontier, E> {
    let hashes = frontier_subtrees(size)
        .into_iter()
        .map(subtree)
        .collect::<Result<Vec<Hash>, E>>()?;
    Ok(Frontier::from_parts_with_last(size, hashes, last_leaf)?)
}

/// The hash of `slice` from its tile's hashes (a full tile, or the first
/// hashes of an incomplete one); `None` if they are too few.
pub fn slice_hash(slice: &TileSlice, tile_hashes: &[Hash]) -> Option<Hash> {
    let hashes = tile_hashes.get(slice.first..slice.first.checked_add(slice.count)?)?;
    Some(root_of(hashes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{inclusion_proof, leaf_hash};
    use std::collections::BTreeMap;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Tiles built by appending in arbitrary batches, as the sequencer
    /// does, keyed by (level, index).
    fn build(all: &[Hash], batches: &[usize]) -> BTreeMap<(u8, u64), Tile> {
        let mut tiles: BTreeMap<(u8, u64), Tile> = BTreeMap::new();
        let mut size = 0usize;
        let mut b = batches.iter().cycle();
        while size < all.len() {
            let n = (*b.next().unwrap()).min(all.len() - size).max(1);
            let open = open_tiles(size as u64, n as u64)
                .unwrap()
                .into_iter()
                .map(|(level, from, to)| {
                    (from..to)
                        .map(|i| {
                            if level == 0 {
                                all[i as usize]
                            } else {
                                tiles[&(level - 1, i)].root
                            }
                        })
                        .collect()
                })
                .collect();
            for t in extend(size as u64, open, &all[size..size + n]).unwrap() {
                assert!(
                    tiles.insert((t.level, t.index), t).is_none(),
                    "tile made twice"
                );
            }
            size += n;
        }
        tiles
    }

    /// A subtree's hash from tiles only: a stored full tile, else the
    /// incomplete tile's hashes (leaf hashes, or roots of full tiles below).
    fn from_tiles(
        tiles: &BTreeMap<(u8, u64), Tile>,
        all: &[Hash],
        size: u64,
        s: Subtree,
    ) -> Result<Hash, MerkleError> {
        let slice = s.slice();
        let hashes: Vec<Hash> = match tiles.get(&(slice.level, slice.tile)) {
            Some(t) => t.hashes.clone(),
            None => {
                let from = slice.tile * TILE_WIDTH;
                let to = hashes_at(slice.level, size);
                (from..to)
                    .map(|i| {
                        if slice.level == 0 {
                            all[i as usize]
                        } else {
                            tiles[&(slice.level - 1, i)].root
                        }
                    })
                    .collect()
            }
        };
        Ok(slice_hash(&slice, &hashes).expect("enough hashes"))
    }

    #[test]
    fn tiles_hold_the_subtree_hashes_whatever_the_batches() {
        let all = leaves(70_000);
        let one = build(&all, &[70_000]);
        let many = build(&all, &[1, 255, 3, 1000, 257, 65_536]);
        assert_eq!(one, many);
        assert_eq!(one.len(), 273 + 1); // 273 full level-0 tiles, 1 level-1
        for ((level, index), t) in &one {
            let span = 1u64 << (8 * (u32::from(*level) + 1));
            let from = (index * span) as usize;
            assert_eq!(t.root, root_of(&all[from..from + span as usize]));
        }
    }

    /// Proofs from tiles equal the proofs from every leaf, for many sizes
    /// and indexes (edges of tiles and of powers of two included).
    #[test]
    fn proofs_from_tiles_equal_proofs_from_all_leaves() {
        let all = leaves(66_000);
        let tiles = build(&all, &[97, 300, 1]);
        let mut sizes: Vec<u64> = vec![1, 2, 3, 255, 256, 257, 511, 512, 513, 4096];
        sizes.extend((1..30).map(|i| i * 1637 % 9000 + 1));
        // Past the first level-1 tile (the reference proof is slow there).
        sizes.extend([65_535, 65_536, 65_537, 66_000]);
        for &size in &sizes {
            let mut idx = vec![0, size - 1, size / 2, size.saturating_sub(256)];
            if size < 10_000 {
                idx.extend((1..12).map(|i| i * 7919 % size));
            }
            for index in idx {
                let want = inclusion_proof(&all, index, size).unwrap();
                let got = inclusion_proof_with(index, size, |s| from_tiles(&tiles, &all, size, s))
                    .unwrap();
                assert_eq!(got, want, "index {index} size {size}");
            }
            let f = frontier_with(size, all[size as usize - 1], |s| {
                from_tiles(&tiles, &all, size, s)
            })
            .unwrap();
            assert_eq!(
                f,
                Frontier::from_leaves(&all[..size as usize]),
                "size {size}"
            );
        }
        assert_eq!(
            inclusion_proof_with(5, 5, |s| from_tiles(&tiles, &all, 5, s)),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        );
    }

    #[test]
    fn open_tiles_name_what_each_level_needs() {
        assert_eq!(open_tiles(0, 255).unwrap(), vec![]);
        assert_eq!(open_tiles(0, 256).unwrap(), vec![(0, 0, 0)]);
        assert_eq!(open_tiles(300, 300).unwrap(), vec![(0, 256, 300)]);
        assert_eq!(
            open_tiles(65_535, 1).unwrap(),
            vec![(0, 65_280, 65_535), (1, 0, 255)]
        );
        assert_eq!(open_tiles(u64::MAX, 1), Err(TileError::Full));
        assert!(matches!(
            extend(300, vec![vec![]], &leaves(300)),
            Err(TileError::OpenTile {
                level: 0,
                expected: 44,
                got: 0
            })
        ));
    }
}
