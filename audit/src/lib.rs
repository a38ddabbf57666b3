//! The audit trail: every operation's *intent* is appended durably before it
//! runs, and its *outcome* after, linked by an operation id.
//!
//! Entries are canonical JSON (compact, keys sorted, integers only), one per
//! line, in one log per organization plus a `system` log, stored append-only
//! (the database refuses UPDATE and DELETE on the log table). Appends ride
//! the store's group-commit writer, so an intent costs a share of one commit,
//! not a commit of its own.
//!
//! Each log is also an RFC 6962 Merkle tree (`warden-tlog`): the
//! [`TreeSequencer`] this crate installs in the store gives every entry its
//! sequence number (its leaf index) and the leaf hash of its predecessor
//! (`prev`), inside the appending transaction. [`checkpoint`] signs the
//! tree heads; exports and verification build on the same entries.
//!
//! Architecture invariant: this crate never receives plaintext. An [`Event`]
//! has no field that can hold a secret value, and `SecretValue` cannot be
//! serialized.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
pub use warden_store::PendingAudit;
use warden_store::{LogHead, SequencedEntry, Sequencer, Store, StoreError};
use warden_tlog::merkle::{Frontier, leaf_hash};

pub mod checkpoint;

/// Entry schema version.
pub const SCHEMA: u32 = 2;
/// The log for events that belong to no organization.
pub const SYSTEM_LOG: &str = "system";

/// The intent could not be made durable; the operation must not run.
#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(#[from] StoreError);

/// Who acted. Fields are declared in alphabetical order: entries are
/// serialized directly in canonical (sorted-key) form.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// How it authenticated (`token`, `none`).
    pub method: &'static str,
    /// Principal id, or `anonymous`.
    pub principal: String,
    /// Peer address.
    pub source_ip: Option<String>,
    /// HMAC-SHA256 (hex) of the public id of the token used, under the
    /// log's audit key: correlatable within the log, not the id itself.
    pub token_id: Option<String>,
    /// User-Agent header, truncated.
    pub user_agent: Option<String>,
}

/// The authorization decision recorded with the event (fields in
/// alphabetical order).
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// The deciding rule, or the reason of a deny.
    pub rule: String,
}

/// What is being done.
#[derive(Debug, Clone)]
pub struct Event {
    /// Links intent and outcome.
    pub op_id: String,
    /// The log it belongs to (an organization or [`SYSTEM_LOG`]).
    pub log: String,
    /// Who.
    pub actor: Actor,
    /// The `resource.verb` action.
    pub action: String,
    /// The target: scope path, plus `#NAME` (and `@vN`) for a secret.
    pub target: String,
    /// The decision, when one was made.
    pub decision: Option<DecisionRecord>,
}

/// One log line. Fields in alphabetical order (canonical JSON). `prev` and
/// `seq` are written as `null` placeholders and filled in by the
/// [`TreeSequencer`] when the entry's place in its log is known.
#[derive(Serialize)]
struct Entry<'a> {
    action: &'a str,
    actor: &'a Actor,
    decision: &'a Option<DecisionRecord>,
    log: &'a str,
    node: &'a str,
    op_id: &'a str,
    phase: &'static str,
    prev: Option<&'a str>,
    schema: u32,
    seq: Option<u64>,
    status: Option<&'a str>,
    target: &'a str,
    time_ns: u128,
}

const PREV_PLACEHOLDER: &str = "\"prev\":null,";
const SEQ_PLACEHOLDER: &str = "\"seq\":null,";

/// Places entries in their log's Merkle tree. The head state is the tree's
/// compact range with the last leaf hash (`Frontier::to_bytes`).
///
/// The placeholders can be replaced textually: inside a JSON string every
/// `"` is escaped, so `"seq":null,` can only be the field itself, and the
/// fields before it cannot contain it either.
pub struct TreeSequencer;

impl Sequencer for TreeSequencer {
    fn empty_state(&self) -> Vec<u8> {
        Frontier::new().to_bytes()
    }

    fn sequence(
        &self,
        log: &str,
        head: LogHead,
        entries: Vec<String>,
    ) -> Result<(Vec<SequencedEntry>, LogHead), String> {
        let mut tree = Frontier::from_bytes(&head.state).map_err(|e| format!("{log}: {e}"))?;
        if i64::try_from(tree.size()).ok() != Some(head.size) {
            return Err(format!("{log}: head size and tree state disagree"));
        }
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let prev = tree
                .last_leaf()
                .ok_or_else(|| format!("{log}: tree state lacks the last leaf"))?;
            let seq = tree.size();
            let filled = entry
                .replacen(
                    PREV_PLACEHOLDER,
                    &format!("\"prev\":\"{}\",", hex::encode(prev)),
                    1,
                )
                .replacen(SEQ_PLACEHOLDER, &format!("\"seq\":{seq},"), 1);
            if filled.len() == entry.len() {
                return Err(format!("{log}: entry without sequence placeholders"));
            }
            let hash = leaf_hash(filled.as_bytes());
            tree.try_push(hash).map_err(|e| e.to_string())?;
            placed.push(SequencedEntry {
                seq: i64::try_from(seq).map_err(|e| e.to_string())?,
                entry: filled,
                leaf_hash: hash.to_vec(),
            });
        }
        let size = i64::try_from(tree.size()).map_err(|e| e.to_string())?;
        Ok((
            placed,
            LogHead {
                size,
                state: tree.to_bytes(),
            },
        ))
    }
}

/// Appends audit entries for one node.
pub struct Auditor {
    store: Store,
    node: String,
    next_op: AtomicU64,
    op_prefix: String,
}

impl Auditor {
    /// An auditor writing through `store`, naming itself `node`; installs
    /// the [`TreeSequencer`] in the store.
    pub fn new(store: Store, node: impl Into<String>) -> Self {
        store.install_sequencer(std::sync::Arc::new(TreeSequencer));
        let node = node.into();
        let op_prefix = format!(
            "{:x}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        Self {
            store,
            node,
            next_op: AtomicU64::new(1),
            op_prefix,
        }
    }

    /// A fresh operation id, unique per node and start.
    pub fn op_id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.node,
            self.op_prefix,
            self.next_op.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn encode(&self, phase: &'static str, event: &Event, status: Option<&str>) -> String {
        let entry = Entry {
            action: &event.action,
            actor: &event.actor,
            decision: &event.decision,
            log: &event.log,
            node: &self.node,
            op_id: &event.op_id,
            phase,
            prev: None,
            schema: SCHEMA,
            seq: None,
            status,
            target: &event.target,
            time_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        };
        serde_json::to_string(&entry)
            .unwrap_or_else(|e| format!("{{\"encode_error\":{:?}}}", e.to_string()))
    }

    /// Appends the intent and returns once it is durable.
    pub async fn intent(&self, event: &Event) -> Result<(), AuditError> {
        Ok(self.queue_intent(event)?.durable().await?)
    }

    /// Queues the intent and returns at once. Writes made under
    /// [`warden_store::after_intent`] with its ticket are ordered after it
    /// and refused if it fails; [`PendingAudit::durable`] says when it is on
    /// disk.
    pub fn queue_intent(&self, event: &Event) -> Result<PendingAudit, AuditError> {
        let line = self.encode("intent", event, None);
        Ok(self.store.queue_audit(event.log.clone(), line)?)
    }

    /// Appends a record that is complete in itself (a denial, a failed
    /// login) and returns once it is durable.
    pub async fn record(&self, event: &Event, status: &str) -> Result<(), AuditError> {
        let line = self.encode("outcome", event, Some(status));
        Ok(self.store.append_audit(event.log.clone(), line).await?)
    }

    /// Appends the outcome without waiting: the response does not wait for
    /// it, and a crash between the two leaves an intent without outcome,
    /// which is itself evidence.
    pub fn outcome(&self, event: &Event, status: &str) {
        let line = self.encode("outcome", event, Some(status));
        self.store.append_audit_later(event.log.clone(), line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries are written straight from structs whose fields are declared
    /// in sorted order; check that this is exactly the canonical form (keys
    /// sorted at every level, compact).
    #[test]
    fn entries_are_canonical_json() {
        let event = Event {
            op_id: "n-1-2".into(),
            log: "acme".into(),
            actor: Actor {
                method: "token",
                principal: "user:bootstrap".into(),
                source_ip: Some("127.0.0.1".into()),
                token_id: Some("tok_1".into()),
                user_agent: None,
            },
            action: "secret.read".into(),
            target: "acme/shop#K".into(),
            decision: Some(DecisionRecord {
                effect: "allow",
                rule: "owner@/".into(),
            }),
        };
        let line = Entry {
            action: &event.action,
            actor: &event.actor,
            decision: &event.decision,
            log: &event.log,
            node: "n",
            op_id: &event.op_id,
            phase: "intent",
            prev: None,
            schema: SCHEMA,
            seq: None,
            status: None,
            target: &event.target,
            time_ns: 1,
        };
        let direct = serde_json::to_string(&line).unwrap();
        let sorted = serde_json::from_str::<serde_json::Value>(&direct)
            .unwrap()
            .to_string();
        assert_eq!(direct, sorted);
        assert!(
            direct.starts_with(r#"{"action":"secret.read","actor":{"method":"token""#),
            "{direct}"
        );
    }
}
