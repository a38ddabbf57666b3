//! The audit trail: every operation's *intent* is appended durably before it
//! runs, and its *outcome* after, linked by an operation id.
//!
//! Entries are canonical JSON (compact, keys sorted, integers only), one per
//! line, in one log per organization plus a `system` log, stored append-only
//! (the database refuses UPDATE and DELETE on the log table). Appends ride
//! the store's group-commit writer, so an intent costs a share of one commit,
//! not a commit of its own.
//!
//! The Merkle tree, signed checkpoints, proofs and exports are the audit
//! issue's; they will be built over these same entries.
//!
//! Architecture invariant: this crate never receives plaintext. An [`Event`]
//! has no field that can hold a secret value, and `SecretValue` cannot be
//! serialized.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use warden_store::{Store, StoreError};

/// Entry schema version.
pub const SCHEMA: u32 = 1;
/// The log for events that belong to no organization.
pub const SYSTEM_LOG: &str = "system";

/// The intent could not be made durable; the operation must not run.
#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(#[from] StoreError);

/// Who acted.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// Principal id, or `anonymous`.
    pub principal: String,
    /// How it authenticated (`token`, `none`).
    pub method: &'static str,
    /// The public id of the token used, if any.
    pub token_id: Option<String>,
    /// Peer address.
    pub source_ip: Option<String>,
    /// User-Agent header, truncated.
    pub user_agent: Option<String>,
}

/// The authorization decision recorded with the event.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// The deciding rule, or the reason of a deny.
    pub rule: String,
}

/// What is being done.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Links intent and outcome.
    pub op_id: String,
    /// The log it belongs to (an organization or [`SYSTEM_LOG`]).
    #[serde(skip)]
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

#[derive(Serialize)]
struct Entry<'a> {
    schema: u32,
    time_ns: u128,
    node: &'a str,
    phase: &'static str,
    #[serde(flatten)]
    event: &'a Event,
    status: Option<&'a str>,
}

/// Appends audit entries for one node.
pub struct Auditor {
    store: Store,
    node: String,
    next_op: AtomicU64,
    op_prefix: String,
}

impl Auditor {
    /// An auditor writing through `store`, naming itself `node`.
    pub fn new(store: Store, node: impl Into<String>) -> Self {
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
            schema: SCHEMA,
            time_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            node: &self.node,
            phase,
            event,
            status,
        };
        canonical_json(&entry)
    }

    /// Appends the intent and returns once it is durable.
    pub async fn intent(&self, event: &Event) -> Result<(), AuditError> {
        let line = self.encode("intent", event, None);
        Ok(self.store.append_audit(event.log.clone(), line).await?)
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

/// Serializes `value` as canonical JSON: compact, object keys sorted
/// (serde_json's map is ordered), no floats in our entries.
pub fn canonical_json<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(v) => v.to_string(),
        Err(e) => format!("{{\"encode_error\":{:?}}}", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        #[derive(Serialize)]
        struct S {
            zeta: u8,
            alpha: &'static str,
            mid: Option<u8>,
        }
        assert_eq!(
            canonical_json(&S {
                zeta: 1,
                alpha: "a",
                mid: None
            }),
            r#"{"alpha":"a","mid":null,"zeta":1}"#
        );
    }
}
