//! Signed checkpoints: the C2SP `tlog-checkpoint` of each log's tree,
//! signed as a C2SP signed note with the installation's Ed25519 key.
//!
//! The checkpointer signs only what it can vouch for. From the newest
//! checkpoint (its signature and stored compact range checked), it reads
//! the entries appended since, and checks each one: sequence number, log,
//! chain link, canonical form, stored leaf hash, and the entry's MAC under
//! its log's key (which the database never sees; the MAC is made when the
//! entry is encoded, over everything but its place in the log). Only if all
//! of that holds and the result equals the log's head does it sign the new
//! size. An entry written into the database by anyone else stops the log
//! from being signed past it, and is reported.
//!
//! Entries without a MAC are accepted only where Warden genuinely writes
//! them: while sealed, and sealed means closed, so only the public
//! operations of the system log ([`crate::may_lack_mac`]: init, unseal,
//! login). Entries of schema 2, written before every entry authorized
//! while unsealed carried a MAC, are judged by that version's rule (also
//! outcomes, and the system log's seal), but only until the log holds an
//! entry of schema 3: after one, an old-schema entry is refused.
//!
//! Heads only grow, so no two checkpoints of one log are inconsistent.
//! Replicas may sign the same size; the first stored wins, and the others
//! are identical anyway (Ed25519 signatures are deterministic).

use warden_store::{CheckpointRow, Store, StoreError};
use warden_tlog::merkle::{Frontier, leaf_hash};
use warden_tlog::note::{Checkpoint, NoteSigner, open};
use warden_tlog::verify::{EntryChecker, Fault};

use crate::{EntryMac, MacCheck, SYSTEM_LOG, check_mac, may_lack_mac};

/// The checkpoint origin of `log`.
pub fn origin(log: &str) -> String {
    format!("warden/audit/{log}")
}

/// The signing key's name in notes.
pub const KEY_NAME: &str = "warden-audit";

/// Entries read per query while checking.
const PAGE: i64 = 5000;

/// What schema-2 writers recorded without a MAC in the system log (besides
/// any outcome, in any log).
const LEGACY_SEALED_ACTIONS: [&str; 4] = ["sys.init", "sys.unseal", "sys.seal", "auth.login"];

/// The fields of an entry the MAC rules look at.
#[derive(serde::Deserialize)]
struct Shape {
    action: String,
    #[serde(default)]
    phase: Option<String>,
    schema: u32,
}

fn shape(entry: &str) -> Option<Shape> {
    serde_json::from_str(entry).ok()
}

/// Whether an entry without a MAC may be vouched for. `modern` says a
/// schema-3 entry precedes it in the log; it becomes true at the first one.
fn accepted_without_mac(log: &str, entry: &str, modern: &mut bool) -> bool {
    let Some(s) = shape(entry) else {
        return false;
    };
    if s.schema >= 3 {
        *modern = true;
        return may_lack_mac(log, &s.action);
    }
    !*modern
        && (s.phase.as_deref() == Some("outcome")
            || (log == SYSTEM_LOG && LEGACY_SEALED_ACTIONS.contains(&s.action.as_str())))
}

/// What one round of checkpointing did.
#[derive(Debug, Default)]
pub struct Round {
    /// Checkpoints stored.
    pub signed: usize,
    /// Logs that could not be signed, and why (possible tampering), with
    /// the first entry at fault when known.
    pub refused: Vec<(String, Fault)>,
}

/// Signs a checkpoint for every log that grew since its newest one and
/// whose new entries check out.
pub async fn checkpoint_all(
    store: &Store,
    signer: &NoteSigner,
    mac: &EntryMac,
) -> Result<Round, StoreError> {
    let mut round = Round::default();
    for (log, head) in store.audit_heads().await? {
        let newest = store.latest_checkpoint(&log).await?;
        if head.size <= newest.as_ref().map_or(0, |c| c.size) {
            continue;
        }
        match vouch(store, signer, mac, &log, newest.as_ref(), head.size).await? {
            Ok(tree) if tree.to_bytes() == head.state => {
                if store.add_checkpoint(sign(signer, &log, &tree)?).await? {
                    round.signed += 1;
                }
            }
            Ok(_) => round.refused.push((
                log,
                Fault {
                    seq: None,
                    reason: "the head recorded in the database does not match its entries"
                        .to_owned(),
                },
            )),
            Err(why) => round.refused.push((log, why)),
        }
    }
    Ok(round)
}

fn fault(seq: Option<i64>, reason: String) -> Fault {
    Fault {
        seq: seq.and_then(|s| u64::try_from(s).ok()),
        reason,
    }
}

/// The tree of `log` up to `size`, rebuilt from the newest checkpoint and
/// the entries after it, each checked; or why it cannot be vouched for.
async fn vouch(
    store: &Store,
    signer: &NoteSigner,
    mac: &EntryMac,
    log: &str,
    newest: Option<&CheckpointRow>,
    size: i64,
) -> Result<Result<Frontier, Fault>, StoreError> {
    let start = match newest {
        None => Frontier::new(),
        Some(c) => match trusted_state(signer, log, c) {
            Ok(f) => f,
            Err(why) => return Ok(Err(fault(None, why))),
        },
    };
    let mut checker = match EntryChecker::new(log, start) {
        Ok(c) => c,
        Err(f) => return Ok(Err(f)),
    };
    let mut from = i64::try_from(checker.next_seq()).unwrap_or(i64::MAX);
    // Whether the log already holds a schema-3 entry: the entry just before
    // (vouched for by the checkpoint: it must hash to its last leaf) says.
    let mut modern = false;
    if from > 0 {
        let Some(before) = store.audit_entries(log, from - 1, 1).await?.pop() else {
            return Ok(Err(fault(
                Some(from - 1),
                format!("entry {} is missing", from - 1),
            )));
        };
        if checker.frontier().last_leaf() != Some(leaf_hash(before.entry.as_bytes())) {
            return Ok(Err(fault(
                Some(from - 1),
                format!("entry {} does not match the newest checkpoint", from - 1),
            )));
        }
        modern = shape(&before.entry).is_some_and(|s| s.schema >= 3);
    }
    while from < size {
        let rows = store
            .audit_entries(log, from, PAGE.min(size - from))
            .await?;
        if rows.is_empty() {
            return Ok(Err(fault(Some(from), format!("entry {from} is missing"))));
        }
        for row in rows {
            let hash = match checker.push_line(row.entry.as_bytes()) {
                Ok(h) => h,
                Err(f) => return Ok(Err(f)),
            };
            if hash.as_slice() != row.leaf_hash.as_slice() {
                return Ok(Err(fault(
                    Some(row.seq),
                    format!("entry {}: stored leaf hash is wrong", row.seq),
                )));
            }
            let refused = match check_mac(&row.entry, log, mac) {
                MacCheck::Valid => {
                    if !modern {
                        modern = shape(&row.entry).is_some_and(|s| s.schema >= 3);
                    }
                    None
                }
                MacCheck::Missing if accepted_without_mac(log, &row.entry, &mut modern) => None,
                MacCheck::Missing => Some(
                    "has no MAC, and only the system log's init, unseal and login entries \
                     recorded while sealed may lack one",
                ),
                MacCheck::Invalid => Some("has a MAC that does not verify"),
            };
            if let Some(why) = refused {
                return Ok(Err(fault(
                    Some(row.seq),
                    format!("entry {} was not written by Warden (it {why})", row.seq),
                )));
            }
            from = row.seq + 1;
        }
    }
    Ok(Ok(checker.frontier().clone()))
}

/// The compact range stored with a checkpoint, if its note verifies under
/// our key and its root is the signed one.
fn trusted_state(signer: &NoteSigner, log: &str, c: &CheckpointRow) -> Result<Frontier, String> {
    let stale = |why: &str| format!("checkpoint {} of {log}: {why}", c.size);
    let (body, _) =
        open(&c.note, &[signer.verifier()]).map_err(|_| stale("signature does not verify"))?;
    let signed = Checkpoint::parse_body(&body).map_err(|_| stale("malformed note"))?;
    let state = c
        .state
        .as_deref()
        .ok_or_else(|| stale("no stored tree state"))?;
    let tree = Frontier::from_bytes(state).map_err(|_| stale("malformed tree state"))?;
    if signed.origin != origin(log)
        || i64::try_from(signed.size).ok() != Some(c.size)
        || tree.size() != signed.size
        || tree.root() != signed.root
    {
        return Err(stale("stored tree state does not match the signed root"));
    }
    Ok(tree)
}

/// Signs the checkpoint of one log's `tree`.
pub fn sign(signer: &NoteSigner, log: &str, tree: &Frontier) -> Result<CheckpointRow, StoreError> {
    let bad = |e: String| StoreError::Database(format!("audit log {log}: {e}"));
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
        state: Some(tree.to_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, phase: &str, schema: u32) -> String {
        format!(
            r#"{{"action":"{action}","log":"x","mac":null,"phase":"{phase}","schema":{schema}}}"#
        )
    }

    #[test]
    fn bare_entries_are_accepted_only_where_warden_writes_them() {
        let mut modern = false;
        // Schema 2 (before every unsealed entry carried a MAC): outcomes
        // anywhere, and the system log's seal, as that version wrote them.
        assert!(accepted_without_mac(
            "acme",
            &entry("secret.read", "outcome", 2),
            &mut modern
        ));
        assert!(accepted_without_mac(
            SYSTEM_LOG,
            &entry("sys.seal", "intent", 2),
            &mut modern
        ));
        assert!(!accepted_without_mac(
            "acme",
            &entry("secret.read", "intent", 2),
            &mut modern
        ));
        assert!(!modern);
        // Schema 3: only the system log's init, unseal and login.
        for action in ["sys.init", "sys.unseal", "auth.login"] {
            assert!(accepted_without_mac(
                SYSTEM_LOG,
                &entry(action, "outcome", 3),
                &mut modern
            ));
        }
        assert!(modern);
        let mut fresh = false;
        assert!(!accepted_without_mac(
            "acme",
            &entry("auth.login", "outcome", 3),
            &mut fresh
        ));
        assert!(!accepted_without_mac(
            SYSTEM_LOG,
            &entry("sys.seal", "outcome", 3),
            &mut fresh
        ));
        assert!(!accepted_without_mac(
            SYSTEM_LOG,
            &entry("user.create", "outcome", 3),
            &mut fresh
        ));
        // After a schema-3 entry, an old-schema one is not accepted bare.
        assert!(!accepted_without_mac(
            "acme",
            &entry("secret.read", "outcome", 2),
            &mut modern
        ));
        assert!(!accepted_without_mac("acme", "not json", &mut fresh));
    }
}
