//! Warden's tamper-evident audit log formats and their offline
//! verification.
//!
//! This crate owns:
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 Merkle tree hashing, the compact-range
//!   [`merkle::Frontier`], and inclusion and consistency proofs.
//! - [`note`]: C2SP signed notes with Ed25519, and the C2SP tlog-checkpoint
//!   body ([`note::Checkpoint`]) that Warden signs over each log's tree.
//! - [`canonical`]: the canonical JSON of audit entries, and a fast checker
//!   that also reads an entry's `seq`, `log` and `prev`.
//! - [`bundle`]: the export bundle (a tar archive of the manifest, keys,
//!   frontier, signed checkpoints, entries and derived views).
//! - [`verify`]: offline verification of a bundle against a trusted key,
//!   producing a [`verify::Transcript`], and the per-entry checks the
//!   server reuses for live verification.
//! - [`export`]: derived views of the entries (CSV, OCSF 1.3.0 JSON).
//! - [`tiles`]: the tree's full tiles of 256 subtree hashes (C2SP
//!   tlog-tiles geometry), and inclusion proofs and frontiers made from
//!   them in O(log n) subtree hashes.
//!
//! # Entries
//!
//! Each entry is one line of canonical JSON (compact, keys sorted at every
//! level); the leaf bytes are the line without its newline. `seq` is the
//! entry's 0-based position in its log, which is its Merkle leaf index;
//! `log` names the log (`system` or an organization); `prev` is the
//! lowercase hex RFC 6962 leaf hash of entry `seq − 1` (64 zeros for seq
//! 0), a hash chain that lets a verifier name the first bad entry.
//!
//! # Boundaries
//!
//! Everything here is pure. No I/O except reading and writing a bundle
//! from or to a byte buffer or a `std::io::Read` / `Write`; no async; no
//! clock (callers pass times, e.g. [`bundle::Manifest::created_at_ns`]);
//! no storage; no HTTP. `warden audit verify` runs with this crate and a
//! bundle alone: no server, no data directory. It depends on no other
//! Warden crate.
//!
//! Cryptography is `ring`'s (SHA-256 in `ring::digest`, Ed25519 in
//! `ring::signature`) and nothing is hand-rolled; no aws-lc or OpenSSL is
//! linked. The only randomness used is ring's `SystemRandom`, to generate
//! a signing key. Verification never panics on any input: every length,
//! index and size is checked, and fuzz targets (`tlog/fuzz`) and property
//! tests feed arbitrary and mutated bundles.

pub mod bundle;
pub mod canonical;
pub mod export;
pub mod merkle;
pub mod note;
pub mod tiles;
pub mod verify;

pub use bundle::{Bundle, BundleError, Manifest};
pub use merkle::{Frontier, Hash, MerkleError};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use verify::{Transcript, Trust, Verdict, verify_bundle};
