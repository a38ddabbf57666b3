//! Signed checkpoints: the C2SP `tlog-checkpoint` of each log's tree,
//! signed as a C2SP signed note with the installation's Ed25519 key.
//!
//! A checkpoint is made from a log's committed head (size and compact
//! range), and heads only ever grow by appending, so no two checkpoints of
//! one log can be inconsistent. Replicas may sign the same size; the first
//! stored wins and the others are identical anyway (Ed25519 signatures are
//! deterministic).

use warden_store::{CheckpointRow, Store, StoreError};
use warden_tlog::merkle::Frontier;
use warden_tlog::note::{Checkpoint, NoteSigner};

/// The checkpoint origin of `log`.
pub fn origin(log: &str) -> String {
    format!("warden/audit/{log}")
}

/// The signing key's name in notes.
pub const KEY_NAME: &str = "warden-audit";

/// Signs a checkpoint for every log that grew since its newest one.
/// Returns how many were stored.
pub async fn checkpoint_all(store: &Store, signer: &NoteSigner) -> Result<usize, StoreError> {
    let mut signed = 0;
    for (log, head) in store.audit_heads().await? {
        let newest = store.latest_checkpoint(&log).await?.map_or(0, |c| c.size);
        if head.size <= newest {
            continue;
        }
        let row = sign(signer, &log, &head.state)?;
        if store.add_checkpoint(row).await? {
            signed += 1;
        }
    }
    Ok(signed)
}

/// Signs the checkpoint of one log at the head state `state`.
pub fn sign(signer: &NoteSigner, log: &str, state: &[u8]) -> Result<CheckpointRow, StoreError> {
    let bad = |e: String| StoreError::Database(format!("audit log {log}: {e}"));
    let tree = Frontier::from_bytes(state).map_err(|e| bad(e.to_string()))?;
    let checkpoint = Checkpoint {
        origin: origin(log),
        size: tree.size(),
        root: tree.root(),
    };
    let note = signer
        .sign(&checkpoint.body())
        .map_err(|e| bad(e.to_string()))?;
    Ok(CheckpointRow {
        log: log.to_owned(),
        size: i64::try_from(tree.size()).map_err(|e| bad(e.to_string()))?,
        root: checkpoint.root.to_vec(),
        note,
        created_at: warden_store::now_ms(),
    })
}
