//! A session recording's proof, and its offline check (`audit verify
//! --recording FILE.cast`): the file is the recording the audit log
//! records, and that entry is in a checkpoint signed by the key the
//! auditor trusts.
//!
//! The proof (`FILE.cast.proof.json`, written by `warden session export`)
//! holds the chunks' lengths, so the file splits into the chunks whose
//! SHA-256 digests, concatenated and hashed, give the `recording_digest`
//! of the session's audit outcome; and that outcome's inclusion proof
//! (RFC 9162 §2.1.3) against a signed checkpoint (C2SP signed note).

use std::path::Path;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_api::AuditProof;
use warden_tlog::note::NoteVerifier;
use warden_tlog::verify::Trust;

use super::args::{TrustArgs, trust_of};
use super::checkpoints::{check_proof, served_key};
use crate::ctx::Output;
use crate::output;

/// The proof's format name.
pub(crate) const FORMAT: &str = "warden-recording-proof/v1";
/// The largest recording `audit verify --recording` reads.
const MAX_RECORDING_BYTES: u64 = 4 << 30;
/// The most chunks a proof may list.
const MAX_CHUNKS: usize = 1 << 16;
/// The largest proof file it reads.
const MAX_PROOF_BYTES: u64 = 64 << 20;

/// What ties an exported recording to the audit log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingProof {
    /// [`FORMAT`].
    pub(crate) format: String,
    /// The session.
    pub(crate) session: String,
    /// Each chunk's length in bytes, in order: the file is their
    /// concatenation.
    pub(crate) chunk_lengths: Vec<u64>,
    /// SHA-256 over the chunks' SHA-256 digests, hex.
    pub(crate) recording_digest: String,
    /// The inclusion proof of the session's audit outcome.
    pub(crate) outcome: AuditProof,
}

/// SHA-256 over the SHA-256 of each chunk, in order, hex.
pub(crate) fn digest_of<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut digests = Vec::new();
    for c in chunks {
        digests.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, c).as_ref());
    }
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &digests))
}

fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {}", path.display()))?;
    if data.len() as u64 > max {
        anyhow::bail!("{} is over {max} bytes", path.display());
    }
    Ok(data)
}

/// Checks `cast` against `proof` under `trust`: what it established, or
/// why it fails.
fn check(cast: &[u8], proof: &RecordingProof, trust: &Trust) -> Result<Value, String> {
    if proof.format != FORMAT {
        return Err(format!(
            "the proof's format is {:?}, not {FORMAT}",
            output::printable(&proof.format)
        ));
    }
    // A recording has at most 1 GiB of text in chunks of at least one
    // line each, but never more chunks than bytes plus its (maybe empty)
    // last one.
    let n = proof.chunk_lengths.len();
    if n == 0 || n > MAX_CHUNKS || proof.chunk_lengths[..n - 1].contains(&0) {
        return Err(format!(
            "the proof lists {n} chunks: a recording has 1 to {MAX_CHUNKS}, none empty but the last"
        ));
    }
    let total = proof
        .chunk_lengths
        .iter()
        .try_fold(0u64, |a, &l| a.checked_add(l));
    if total != Some(cast.len() as u64) {
        return Err(format!(
            "the recording is {} bytes, its chunks add up to {}",
            cast.len(),
            total.map_or_else(|| "more than 2^64".to_owned(), |t| t.to_string())
        ));
    }
    let mut rest = cast;
    let mut chunks = Vec::with_capacity(proof.chunk_lengths.len());
    for &len in &proof.chunk_lengths {
        let (chunk, tail) = rest.split_at(len as usize);
        chunks.push(chunk);
        rest = tail;
    }
    let digest = digest_of(chunks);
    if digest != proof.recording_digest {
        return Err(format!(
            "the recording hashes to {digest}, the proof says {}: the file was changed",
            output::printable(&proof.recording_digest)
        ));
    }
    let entry: Value = serde_json::from_str(&proof.outcome.entry)
        .map_err(|e| format!("the audit entry is not JSON: {e}"))?;
    if entry["session"]["id"] != proof.session.as_str() {
        return Err(format!(
            "the audit entry is not the outcome of session {}",
            output::printable(&proof.session)
        ));
    }
    if entry["session"]["recording_digest"] != digest.as_str() {
        return Err(format!(
            "the audit entry records recording digest {}, the recording hashes to {digest}",
            entry["session"]["recording_digest"]
        ));
    }
    let key: NoteVerifier = match trust {
        Trust::Key(k) => k.clone(),
        Trust::Fingerprint(fp) => {
            let k = served_key(&proof.outcome.checkpoint).map_err(|e| e.to_string())?;
            if k.fingerprint() != *fp {
                return Err(format!(
                    "the checkpoint is signed by key {} (fingerprint {}), not the one trusted",
                    k.vkey(),
                    k.fingerprint()
                ));
            }
            k
        }
    };
    let seq = u64::try_from(proof.outcome.seq).map_err(|_| "a negative seq".to_owned())?;
    let report = check_proof(&proof.outcome, &proof.outcome.log, seq, &key)?;
    Ok(json!({
        "verdict": "ok",
        "session": proof.session,
        "chunks": proof.chunk_lengths.len(),
        "recording_digest": digest,
        "log": proof.outcome.log,
        "seq": seq,
        "tree_size": report.tree_size,
        "key_fingerprint": key.fingerprint(),
    }))
}

/// `audit verify --recording FILE.cast [--proof FILE]`: offline.
pub(super) fn verify_recording(
    output: Output,
    cast: &Path,
    proof: Option<&Path>,
    trust: &TrustArgs,
) -> anyhow::Result<()> {
    let trust = trust_of(trust)?;
    let proof_path = proof.map_or_else(
        || {
            let mut p = cast.as_os_str().to_owned();
            p.push(".proof.json");
            std::path::PathBuf::from(p)
        },
        Path::to_path_buf,
    );
    let data = read_bounded(cast, MAX_RECORDING_BYTES)?;
    let proof: RecordingProof =
        serde_json::from_slice(&read_bounded(&proof_path, MAX_PROOF_BYTES)?)
            .with_context(|| format!("{} is not a recording proof", proof_path.display()))?;
    let result = check(&data, &proof, &trust);
    let raw = match &result {
        Ok(v) => v.clone(),
        Err(why) => json!({"verdict": "failed", "reason": why}),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&raw)?),
        Output::Text => match &result {
            Ok(v) => println!(
                "VERIFIED: recording of session {} ({} chunks, digest {}) is the one entry {} of \
                 log {} records, in the checkpoint of size {} signed by key {}",
                output::printable(&proof.session),
                v["chunks"],
                v["recording_digest"].as_str().unwrap_or_default(),
                v["seq"],
                output::printable(&proof.outcome.log),
                v["tree_size"],
                v["key_fingerprint"].as_str().unwrap_or_default(),
            ),
            Err(why) => println!("FAILED: {why}"),
        },
    }
    result
        .map(|_| ())
        .map_err(|_| anyhow!("the recording did not verify"))
}
