//! RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges and proofs.
//!
//! Hashing follows RFC 6962 §2.1 (unchanged in RFC 9162 §2.1.1): a leaf
//! hashes as `SHA-256(0x00 ‖ leaf)`, an interior node as
//! `SHA-256(0x01 ‖ left ‖ right)`, and the tree of `n > 1` leaves splits at
//! the largest power of two strictly below `n`. The empty tree's hash is
//! `SHA-256("")`.
//!
//! Proof generation follows the recursive definitions `PATH` and `PROOF` /
//! `SUBPROOF` of RFC 9162 §2.1.3.1 and §2.1.4.1 (RFC 6962 §2.1.1–2.1.2);
//! verification follows the iterative algorithms of RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency), with the extra input checks listed
//! on [`verify_inclusion`] and [`verify_consistency`].
//!
//! Everything here works on leaf *hashes*; [`leaf_hash`] turns leaf bytes
//! into one. SHA-256 is `ring::digest`.

use ring::digest;

/// A SHA-256 output: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The longest proof any tree of at most 2^64 − 1 leaves can need, plus one
/// (a consistency proof may carry one hash per level and one more).
const MAX_PROOF_LEN: usize = 65;

/// Why a tree operation or a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A proof was asked for a tree larger than the leaves given.
    #[error("tree size {size} exceeds the {available} leaves given")]
    NotEnoughLeaves {
        /// The tree size asked for.
        size: u64,
        /// How many leaves were given.
        available: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {m} is larger than new tree size {n}")]
    SizeOrder {
        /// The old size.
        m: u64,
        /// The new size.
        n: u64,
    },
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("the proof has the wrong number of hashes ({len}) for these tree sizes")]
    ProofLength {
        /// The number of hashes in the proof.
        len: usize,
    },
    /// The proof, recomputed, does not give the expected root(s).
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// A frontier whose hash count does not match its size.
    #[error("a frontier of size {size} has {expected} hashes, not {got}")]
    FrontierShape {
        /// The frontier's size.
        size: u64,
        /// popcount(size).
        expected: usize,
        /// How many were given.
        got: usize,
    },
    /// A frontier's last leaf hash contradicts its hashes.
    #[error("the frontier's last leaf hash is inconsistent with its size and hashes")]
    FrontierLastLeaf,
    /// Serialized frontier bytes of the wrong length.
    #[error("frontier bytes have a bad length ({0} bytes)")]
    FrontierBytes(usize),
    /// The tree already holds 2^64 − 1 leaves.
    #[error("the tree is full")]
    Full,
}

/// RFC 6962 leaf hash: `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(leaf);
    to_hash(ctx.finish())
}

/// RFC 6962 interior node hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    to_hash(digest::digest(&digest::SHA256, &buf))
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(digest::digest(&digest::SHA256, b""))
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut out = [0u8; 32];
    // A SHA-256 digest is always 32 bytes; copy defensively anyway.
    let src = d.as_ref();
    let n = src.len().min(32);
    out[..n].copy_from_slice(&src[..n]);
    out
}

/// The largest power of two strictly less than `n`; `n` must be ≥ 2.
fn split(n: usize) -> usize {
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash `MTH(D[0:n])` of RFC 6962 §2.1, straight from the
/// recursive definition. A reference: [`Frontier`] computes the same root
/// incrementally.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (left, right) = leaves.split_at(k);
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

fn to_usize(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

/// The leaves `leaves[..size]`, or why not.
fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], MerkleError> {
    let available = leaves.len() as u64;
    match to_usize(size).and_then(|s| leaves.get(..s)) {
        Some(d) => Ok(d),
        None => Err(MerkleError::NotEnoughLeaves { size, available }),
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree made of the
/// first `size` of `leaves`: RFC 9162 §2.1.3.1 `PATH(m, D[n])`, nearest
/// sibling first.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let d = prefix(leaves, size)?;
    let m = to_usize(index).ok_or(MerkleError::IndexOutOfRange { index, size })?;
    let mut out = Vec::new();
    path(m, d, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    let (left, right) = d.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(root_of(right));
    } else {
        path(m - k, right, out);
        out.push(root_of(left));
    }
}

/// The consistency proof from the tree of the first `m` leaves to the tree
/// of the first `n`: RFC 9162 §2.1.4.1 `PROOF(m, D[n])`. Empty when `m` is 0
/// or equals `n`.
pub fn consistency_proof(leaves: &[Hash], m: u64, n: u64) -> Result<Vec<Hash>, MerkleError> {
    if m > n {
        return Err(MerkleError::SizeOrder { m, n });
    }
    let d = prefix(leaves, n)?;
    let mut out = Vec::new();
    if m == 0 || m == n {
        return Ok(out);
    }
    // m < n ≤ leaves.len(), so m fits in usize.
    let m = to_usize(m).ok_or(MerkleError::SizeOrder { m, n })?;
    subproof(m, d, true, &mut out);
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root_of(d));
        }
        return;
    }
    // Here 0 < m < n, so n ≥ 2.
    let k = split(n);
    let (left, right) = d.split_at(k);
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root_of(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root_of(left));
    }
}

/// Verifies that `leaf` (a leaf *hash*) sits at `index` in the tree of
/// `size` leaves whose root is `root`, per RFC 9162 §2.1.3.2.
///
/// Rejects, without panicking: `index ≥ size` (so every proof for an empty
/// tree), proofs longer than any tree can need, proofs too long or too
/// short for `(index, size)`, and any proof that does not recompute `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let too_long = MerkleError::ProofLength { len: proof.len() };
    if proof.len() > MAX_PROOF_LEN {
        return Err(too_long);
    }
    // RFC 9162 §2.1.3.2, steps 2–5.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(too_long);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::ProofLength { len: proof.len() });
    }
    if r != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of size `n` with root `root_n` extends the tree of
/// size `m` with root `root_m`, per RFC 9162 §2.1.4.2.
///
/// Beyond the RFC algorithm (which covers `0 < m < n`):
/// - `m > n` is refused;
/// - `m == 0` needs an empty proof and `root_m` equal to the empty tree's
///   root (and, if `n == 0` too, `root_n` as well);
/// - `m == n` needs an empty proof and equal roots;
/// - any proof longer than a tree can need is refused before hashing.
pub fn verify_consistency(
    m: u64,
    n: u64,
    root_m: &Hash,
    root_n: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if m > n {
        return Err(MerkleError::SizeOrder { m, n });
    }
    let bad_len = MerkleError::ProofLength { len: proof.len() };
    if m == 0 || m == n {
        if !proof.is_empty() {
            return Err(bad_len);
        }
        let empty = empty_root();
        let ok = if m == 0 {
            *root_m == empty && (n != 0 || *root_n == empty)
        } else {
            root_m == root_n
        };
        return if ok {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // 0 < m < n. RFC 9162 §2.1.4.2 step 1: an empty proof fails.
    if proof.is_empty() || proof.len() > MAX_PROOF_LEN {
        return Err(bad_len);
    }
    // Step 2: if m is an exact power of two, prepend root_m to the path.
    let prepended = m.is_power_of_two();
    let mut path = proof.iter();
    let first = if prepended {
        root_m
    } else {
        match path.next() {
            Some(h) => h,
            None => return Err(bad_len),
        }
    };
    // Steps 3–4.
    let (mut fnode, mut snode) = (m - 1, n - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*first, *first);
    // Step 6.
    for c in path {
        if snode == 0 {
            return Err(bad_len);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(bad_len);
    }
    if fr != *root_m || sr != *root_n {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// A compact range over a whole tree: the roots of the perfect subtrees
/// that make up a tree of `size` leaves, largest (leftmost) first, one per
/// set bit of `size` (so at most 64). Enough to append leaves and compute
/// every later root.
///
/// It also remembers the hash of the last leaf pushed (the value the next
/// audit entry's `prev` must carry), when known: see [`Frontier::last_leaf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
    last_leaf: Option<Hash>,
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self {
            size: 0,
            hashes: Vec::new(),
            last_leaf: Some([0; 32]),
        }
    }

    /// The frontier of the tree made of `leaves` (leaf hashes).
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut f = Self::new();
        for l in leaves {
            f.push(*l);
        }
        f
    }

    /// The number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The hash of the last leaf pushed, which the next entry's `prev` must
    /// equal: all zeros for the empty tree; `None` when unknown (a frontier
    /// rebuilt by [`Frontier::from_parts`] with an even size, whose last
    /// leaf is folded into a larger subtree).
    pub fn last_leaf(&self) -> Option<Hash> {
        self.last_leaf
    }

    /// Appends a leaf hash. A tree of 2^64 − 1 leaves is full: the push is
    /// then ignored (use [`Frontier::try_push`] to be told).
    pub fn push(&mut self, leaf: Hash) {
        let _ = self.try_push(leaf);
    }

    /// Appends a leaf hash, or says the tree is full.
    pub fn try_push(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        let new_size = self.size.checked_add(1).ok_or(MerkleError::Full)?;
        let mut h = leaf;
        let mut s = self.size;
        // Each trailing set bit of the old size is a subtree of the same
        // size as the one being carried: merge them.
        while s & 1 == 1 {
            match self.hashes.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break,
            }
            s >>= 1;
        }
        self.hashes.push(h);
        self.size = new_size;
        self.last_leaf = Some(leaf);
        Ok(())
    }

    /// The tree's root: the subtree roots folded right to left.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// A frontier from its parts, checking that there is exactly one hash
    /// per set bit of `size`. The last leaf hash is known when `size` is 0
    /// (zeros) or odd (the smallest subtree is that leaf).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Frontier, MerkleError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(MerkleError::FrontierShape {
                size,
                expected,
                got: hashes.len(),
            });
        }
        let last_leaf = if size == 0 {
            Some([0; 32])
        } else if size & 1 == 1 {
            hashes.last().copied()
        } else {
            None
        };
        Ok(Frontier {
            size,
            hashes,
            last_leaf,
        })
    }

    /// [`Frontier::from_parts`] plus the last leaf hash, which must be zeros
    /// for size 0 and the smallest subtree's hash for an odd size.
    pub fn from_parts_with_last(
        size: u64,
        hashes: Vec<Hash>,
        last_leaf: Hash,
    ) -> Result<Frontier, MerkleError> {
        let mut f = Self::from_parts(size, hashes)?;
        if let Some(known) = f.last_leaf
            && known != last_leaf
        {
            return Err(MerkleError::FrontierLastLeaf);
        }
        f.last_leaf = Some(last_leaf);
        Ok(f)
    }

    /// Storage form: `size` (u64, big-endian) ‖ the hashes ‖ the last leaf
    /// hash when known (32 zero bytes for the empty tree). 8 + 32·(k+1)
    /// bytes with k = popcount(size), or 8 + 32·k when the last leaf is
    /// unknown.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * (self.hashes.len() + 1));
        out.extend_from_slice(&self.size.to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        if let Some(l) = &self.last_leaf {
            out.extend_from_slice(l);
        }
        out
    }

    /// Parses [`Frontier::to_bytes`], validating lengths and consistency.
    pub fn from_bytes(bytes: &[u8]) -> Result<Frontier, MerkleError> {
        let bad = MerkleError::FrontierBytes(bytes.len());
        let (size_bytes, rest) = bytes.split_first_chunk::<8>().ok_or(bad.clone())?;
        let size = u64::from_be_bytes(*size_bytes);
        if rest.len() % 32 != 0 {
            return Err(bad);
        }
        let mut hashes: Vec<Hash> = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        let k = size.count_ones() as usize;
        if hashes.len() == k {
            Self::from_parts(size, hashes)
        } else if hashes.len() == k + 1 {
            let last = hashes.pop().ok_or(bad)?;
            Self::from_parts_with_last(size, hashes, last)
        } else {
            Err(bad)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    // Test vectors: the RFC 6962 reference tree used by Certificate
    // Transparency implementations, as published in transparency-dev/merkle
    // `proof/verify_test.go` (leaves, roots for sizes 1..8, inclusion and
    // consistency proofs). Only the data is taken; the code is ours.
    fn ct_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
    }

    fn ct_roots() -> Vec<Hash> {
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ]
        .iter()
        .map(|s| h(s))
        .collect()
    }

    fn ct_leaf_hashes() -> Vec<Hash> {
        ct_leaves().iter().map(|l| leaf_hash(l)).collect()
    }

    /// (index, size, proof): index is 0-based here (the Go file is 1-based).
    fn ct_inclusion() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (
                0,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                5,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                3,
                vec![h(
                    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                )],
            ),
            (
                1,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (0, 1, vec![]),
        ]
    }

    fn ct_consistency() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
                ],
            ),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_of(&[]), empty_root());
        assert_eq!(Frontier::new().root(), empty_root());
    }

    #[test]
    fn reference_tree_roots() {
        let leaves = ct_leaf_hashes();
        let roots = ct_roots();
        let mut f = Frontier::new();
        for n in 1..=8 {
            assert_eq!(root_of(&leaves[..n]), roots[n - 1], "root_of size {n}");
            f.push(leaves[n - 1]);
            assert_eq!(f.root(), roots[n - 1], "frontier size {n}");
        }
    }

    #[test]
    fn reference_inclusion_proofs() {
        let leaves = ct_leaf_hashes();
        let roots = ct_roots();
        for (index, size, proof) in ct_inclusion() {
            let got = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(got, proof, "generated proof for {index} in {size}");
            let root = roots[size as usize - 1];
            let leaf = leaves[index as usize];
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            // The corruptions of the published suite must all be refused.
            let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
            let bad: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = {
                let mut v = vec![
                    (index.wrapping_sub(1), size, leaf, root, proof.clone()),
                    (index + 1, size, leaf, root, proof.clone()),
                    (index ^ 2, size, leaf, root, proof.clone()),
                    (index, size * 2, leaf, root, proof.clone()),
                    (index, size / 2, leaf, root, proof.clone()),
                    (index, size, leaf_hash(b"WrongLeaf"), root, proof.clone()),
                    (index, size, leaf, empty_root(), proof.clone()),
                    (index, size, leaf, some, proof.clone()),
                ];
                let mut p = proof.clone();
                p.push(root);
                v.push((index, size, leaf, root, p));
                let mut p = vec![root];
                p.extend(proof.iter().copied());
                v.push((index, size, leaf, root, p));
                for i in 0..proof.len() {
                    let mut p = proof.clone();
                    p[i][0] ^= 8;
                    v.push((index, size, leaf, root, p));
                }
                if !proof.is_empty() {
                    v.push((index, size, leaf, root, proof[..proof.len() - 1].to_vec()));
                }
                if proof.len() > 1 {
                    let mut p = vec![proof[0], some];
                    p.extend(proof[1..].iter().copied());
                    v.push((index, size, leaf, root, p));
                }
                v
            };
            for (i, (bi, bs, bl, br, bp)) in bad.into_iter().enumerate() {
                assert!(
                    verify_inclusion(&bl, bi, bs, &bp, &br).is_err(),
                    "corruption {i} of ({index},{size}) accepted"
                );
            }
        }
    }

    #[test]
    fn reference_consistency_proofs() {
        let leaves = ct_leaf_hashes();
        let roots = ct_roots();
        for (m, n, proof) in ct_consistency() {
            let got = consistency_proof(&leaves, m, n).unwrap();
            assert_eq!(got, proof, "generated proof {m}->{n}");
            let (rm, rn) = (roots[m as usize - 1], roots[n as usize - 1]);
            verify_consistency(m, n, &rm, &rn, &proof).unwrap();
            if proof.is_empty() {
                continue;
            }
            let mut bad = vec![
                (m - 1, n, rm, rn, proof.clone()),
                (m + 1, n, rm, rn, proof.clone()),
                (m ^ 2, n, rm, rn, proof.clone()),
                (m, n * 2, rm, rn, proof.clone()),
                (m, n / 2, rm, rn, proof.clone()),
                (m, n, leaf_hash(b"WrongRoot"), rn, proof.clone()),
                (m, n, rm, leaf_hash(b"WrongRoot"), proof.clone()),
                (m, n, rn, rm, proof.clone()),
                (m, n, rm, rn, vec![]),
                (m, n, rm, rn, proof[..proof.len() - 1].to_vec()),
            ];
            for extra in [rm, rn] {
                let mut p = proof.clone();
                p.push(extra);
                bad.push((m, n, rm, rn, p));
                let mut p = vec![extra];
                p.extend(proof.iter().copied());
                bad.push((m, n, rm, rn, p));
            }
            let mut p = vec![proof[0]];
            p.extend(proof.iter().copied());
            bad.push((m, n, rm, rn, p));
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][0] ^= 16;
                bad.push((m, n, rm, rn, p));
            }
            for (i, (bm, bn, brm, brn, bp)) in bad.into_iter().enumerate() {
                assert!(
                    verify_consistency(bm, bn, &brm, &brn, &bp).is_err(),
                    "corruption {i} of {m}->{n} accepted"
                );
            }
        }
    }

    #[test]
    fn degenerate_inputs_are_refused() {
        let any = leaf_hash(b"x");
        let e = empty_root();
        assert!(verify_inclusion(&any, 0, 0, &[], &e).is_err());
        assert!(verify_inclusion(&any, 1, 0, &[], &e).is_err());
        assert!(verify_inclusion(&any, 2, 1, &[], &any).is_err());
        assert!(verify_inclusion(&any, u64::MAX, u64::MAX, &[], &any).is_err());
        verify_inclusion(&any, 0, 1, &[], &any).unwrap();
        assert!(verify_inclusion(&any, 0, 1, &[any], &any).is_err());
        let long = vec![any; 100];
        assert!(verify_inclusion(&any, 0, u64::MAX, &long, &any).is_err());
        assert!(verify_consistency(1, 0, &any, &any, &[]).is_err());
        assert!(verify_consistency(0, 0, &e, &e, &[]).is_ok());
        assert!(verify_consistency(0, 0, &any, &any, &[]).is_err());
        assert!(verify_consistency(0, 5, &e, &any, &[]).is_ok());
        assert!(verify_consistency(0, 5, &e, &any, &[e]).is_err());
        assert!(verify_consistency(3, 3, &any, &any, &[]).is_ok());
        assert!(verify_consistency(3, 3, &any, &any, &[any]).is_err());
        assert!(verify_consistency(3, 3, &any, &e, &[]).is_err());
        assert!(verify_consistency(1, 2, &any, &any, &[]).is_err());
        assert!(verify_consistency(1, u64::MAX, &any, &any, &long).is_err());
        assert!(inclusion_proof(&[any], 1, 1).is_err());
        assert!(inclusion_proof(&[any], 0, 2).is_err());
        assert!(consistency_proof(&[any], 2, 1).is_err());
        assert!(consistency_proof(&[any], 1, 2).is_err());
    }

    #[test]
    fn frontier_matches_root_of_for_sizes_0_to_300() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        for n in 0..=300usize {
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.hashes().len(), (n as u64).count_ones() as usize);
            assert_eq!(f.root(), root_of(&leaves[..n]), "size {n}");
            let again = Frontier::from_bytes(&f.to_bytes()).unwrap();
            assert_eq!(again, f);
            let parts = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            assert_eq!(parts.root(), f.root());
            if n < 300 {
                f.push(leaves[n]);
                assert_eq!(f.last_leaf(), Some(leaves[n]));
            }
        }
    }

    #[test]
    fn frontier_parts_are_validated() {
        let a = leaf_hash(b"a");
        assert!(Frontier::from_parts(3, vec![a]).is_err());
        assert!(Frontier::from_parts(0, vec![a]).is_err());
        assert!(Frontier::from_parts(4, vec![a]).is_ok());
        assert_eq!(Frontier::from_parts(4, vec![a]).unwrap().last_leaf(), None);
        assert!(Frontier::from_parts_with_last(1, vec![a], leaf_hash(b"b")).is_err());
        assert!(Frontier::from_parts_with_last(0, vec![], a).is_err());
        assert!(Frontier::from_bytes(&[]).is_err());
        assert!(Frontier::from_bytes(&[0; 7]).is_err());
        assert!(Frontier::from_bytes(&[0; 9]).is_err());
        assert!(Frontier::from_bytes(&[0; 8]).is_ok());
        assert!(Frontier::from_bytes(&[0; 40]).is_ok());
        assert!(Frontier::from_bytes(&[0; 72]).is_err());
        let mut b = vec![0u8; 8];
        b[7] = 2;
        b.extend_from_slice(&a);
        assert_eq!(Frontier::from_bytes(&b).unwrap().last_leaf(), None);
        b.extend_from_slice(&a);
        assert_eq!(Frontier::from_bytes(&b).unwrap().last_leaf(), Some(a));
        let mut full = Frontier::from_parts(u64::MAX, vec![a; 64]).unwrap();
        assert_eq!(full.try_push(a), Err(MerkleError::Full));
        full.push(a);
        assert_eq!(full.size(), u64::MAX);
    }

    fn arb_tree() -> impl Strategy<Value = Vec<Hash>> {
        prop::collection::vec(any::<[u8; 32]>(), 1..70)
    }

    /// How RFC 9162 §2.1.3.2 combines each proof hash for (index, size):
    /// `true` = proof hash on the left. `None` if the proof length does not
    /// fit. The verification result depends only on this shape and on the
    /// hashes, so two (index, size) pairs with the same shape accept the
    /// same proofs: a bare inclusion proof does not bind the tree size (the
    /// signed checkpoint does).
    fn incl_shape(index: u64, size: u64, len: usize) -> Option<Vec<bool>> {
        if index >= size {
            return None;
        }
        let (mut f, mut s) = (index, size - 1);
        let mut out = Vec::new();
        for _ in 0..len {
            if s == 0 {
                return None;
            }
            if f & 1 == 1 || f == s {
                out.push(true);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                out.push(false);
            }
            f >>= 1;
            s >>= 1;
        }
        (s == 0).then_some(out)
    }

    /// The same for §2.1.4.2 with 0 < m < n: (prepended, per-step kind).
    fn cons_shape(m: u64, n: u64, len: usize) -> Option<(bool, Vec<bool>)> {
        if m == 0 || m >= n || len == 0 {
            return None;
        }
        let pre = m.is_power_of_two();
        let steps = if pre { len } else { len - 1 };
        let (mut f, mut s) = (m - 1, n - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        let mut out = Vec::new();
        for _ in 0..steps {
            if s == 0 {
                return None;
            }
            if f & 1 == 1 || f == s {
                out.push(true);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                out.push(false);
            }
            f >>= 1;
            s >>= 1;
        }
        (s == 0).then_some((pre, out))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every generated proof verifies; after any single-bit change to
        /// the proof, root, leaf, index or size, verification fails unless
        /// the change is one no verifier can see (a size or index with the
        /// very same proof shape, see `incl_shape`).
        #[test]
        fn inclusion_proofs_verify_and_bit_flips_fail(
            leaves in arb_tree(),
            pick in any::<u64>(),
            sub in any::<u64>(),
            bit in 0usize..(66 * 256),
        ) {
            let size = 1 + sub % leaves.len() as u64;
            let index = pick % size;
            let root = root_of(&leaves[..size as usize]);
            let leaf = leaves[index as usize];
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());

            let mut proof2 = proof.clone();
            let (mut root2, mut leaf2, mut index2, mut size2) = (root, leaf, index, size);
            let slot = bit / 256;
            let b = bit % 256;
            if slot < proof.len() {
                proof2[slot][b / 8] ^= 1 << (b % 8);
            } else if slot == proof.len() {
                root2[b / 8] ^= 1 << (b % 8);
            } else if slot == proof.len() + 1 {
                leaf2[b / 8] ^= 1 << (b % 8);
            } else if b % 2 == 0 {
                index2 ^= 1 << ((b / 2) % 64);
            } else {
                size2 ^= 1 << ((b / 2) % 64);
            }
            let hashes_same = proof2 == proof && root2 == root && leaf2 == leaf;
            let invisible = hashes_same
                && incl_shape(index2, size2, proof.len()).is_some()
                && incl_shape(index2, size2, proof.len()) == incl_shape(index, size, proof.len());
            let got = verify_inclusion(&leaf2, index2, size2, &proof2, &root2);
            prop_assert_eq!(got.is_ok(), invisible, "index {}->{} size {}->{}", index, index2, size, size2);
            if slot <= proof.len() + 1 {
                prop_assert!(got.is_err());
            }
        }

        /// Same for consistency proofs, with the exact rules for the
        /// degenerate sizes (m == 0: root_n is free; m == n: equal roots).
        #[test]
        fn consistency_proofs_verify_and_bit_flips_fail(
            leaves in arb_tree(),
            a in any::<u64>(),
            b in any::<u64>(),
            bit in 0usize..(68 * 256),
        ) {
            let n = 1 + b % leaves.len() as u64;
            let m = a % (n + 1);
            let rm = root_of(&leaves[..m as usize]);
            let rn = root_of(&leaves[..n as usize]);
            let proof = consistency_proof(&leaves, m, n).unwrap();
            prop_assert!(verify_consistency(m, n, &rm, &rn, &proof).is_ok());

            let mut proof2 = proof.clone();
            let (mut rm2, mut rn2, mut m2, mut n2) = (rm, rn, m, n);
            let slot = bit / 256;
            let x = bit % 256;
            if slot < proof.len() {
                proof2[slot][x / 8] ^= 1 << (x % 8);
            } else if slot == proof.len() {
                rm2[x / 8] ^= 1 << (x % 8);
            } else if slot == proof.len() + 1 {
                rn2[x / 8] ^= 1 << (x % 8);
            } else if x % 2 == 0 {
                m2 ^= 1 << ((x / 2) % 64);
            } else {
                n2 ^= 1 << ((x / 2) % 64);
            }
            let empty = empty_root();
            let expected = if m2 > n2 {
                false
            } else if m2 == 0 {
                proof2.is_empty() && rm2 == empty && (n2 != 0 || rn2 == empty)
            } else if m2 == n2 {
                proof2.is_empty() && rm2 == rn2
            } else {
                proof2 == proof && rm2 == rm && rn2 == rn
                    && cons_shape(m2, n2, proof.len()).is_some()
                    && cons_shape(m2, n2, proof.len()) == cons_shape(m, n, proof.len())
            };
            let got = verify_consistency(m2, n2, &rm2, &rn2, &proof2);
            prop_assert_eq!(got.is_ok(), expected, "m {}->{} n {}->{}", m, m2, n, n2);
            // A changed proof hash or old root is always refused; so is a
            // changed new root unless the old tree is empty.
            if slot < proof.len() + 1 || (slot == proof.len() + 1 && m != 0) {
                prop_assert!(got.is_err());
            }
        }

        #[test]
        fn verifiers_never_panic(
            leaf in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
            index in any::<u64>(),
            size in any::<u64>(),
            proof in prop::collection::vec(any::<[u8; 32]>(), 0..80),
        ) {
            let _ = verify_inclusion(&leaf, index, size, &proof, &root);
            let _ = verify_consistency(index, size, &leaf, &root, &proof);
            let _ = verify_consistency(index % 70, size % 70, &leaf, &root, &proof);
            let _ = verify_inclusion(&leaf, index % 70, size % 70, &proof, &root);
        }
    }
}
