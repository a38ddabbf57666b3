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
//! tree heads; [`tiles`] serves proofs from stored tiles; [`export`]
//! streams export bundles and live verification from the same entries.
//!
//! [`signing`] owns the checkpoint signing key's lifecycle (sealed under the
//! root key through the narrow [`signing::KeySealer`] trait, in memory only
//! while unsealed), the once-a-second checkpointer, and the newest signed
//! checkpoint, export and live verification built on it; it returns this
//! crate's errors, which front-ends turn into their own answers.
//!
//! Architecture invariant: this crate never receives plaintext. An [`Event`]
//! has no field that can hold a secret value, and `SecretValue` cannot be
//! serialized. The only key it holds is its own checkpoint signing key
//! ([`signing`]); entry MACs are made by the caller's [`EntryMac`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
pub use warden_store::PendingAudit;
use warden_store::{LogHead, SequencedEntry, Sequencer, Store, StoreError, Ticket, TileRow};
use warden_tlog::merkle::{Frontier, Hash, leaf_hash};

pub mod checkpoint;
pub mod export;
pub mod signing;
pub mod tiles;

/// Entry schema version. Version 4 entries name the operation (`action`)
/// apart from the permission that allowed it (`permission`), carry a typed
/// `target` object, and may carry `session` and `count`. Version 3 and
/// later entries carry a MAC unless they are [`may_lack_mac`] entries
/// (public operations of the system log, recorded while sealed); version 2
/// entries also left outcomes without one.
pub const SCHEMA: u32 = 4;
/// The log for events that belong to no organization.
pub const SYSTEM_LOG: &str = "system";

/// The public operations of the system log, which run while sealed (no MAC
/// key exists then): initializing, unsealing and logging in (a failed
/// token login included).
pub const SEALED_ACTIONS: [&str; 3] = ["sys.init", "sys.unseal", "auth.login"];

/// Whether an entry of `action` in `log` may be written, and vouched for,
/// without a MAC: only the system log's [`SEALED_ACTIONS`]. Everything else
/// is written while unsealed (sealed means closed: other operations are
/// refused before they are audited), so it carries a MAC.
pub fn may_lack_mac(log: &str, action: &str) -> bool {
    log == SYSTEM_LOG && SEALED_ACTIONS.contains(&action)
}

/// The entry could not be made durable (or not with a MAC); the operation
/// must not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Storage refused or failed.
    #[error("audit log unavailable: {0}")]
    Store(#[from] StoreError),
    /// The vault was sealed before the entry could be MACed, and it is not
    /// one that may go without (the operation raced a seal).
    #[error("the vault was sealed: {action} cannot be recorded in audit log {log} without a MAC")]
    Sealed {
        /// The log.
        log: String,
        /// The action.
        action: String,
    },
}

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

/// What an operation acts on: a kind and the fields that name it (fields
/// in alphabetical order, absent ones left out; its text form is
/// `warden_tlog::export::target_text`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// `vault`, `scope`, `secret`, `secrets`, `principal`, `role`,
    /// `binding`, `log`, `session`, `credential`, `cluster`, `service`, `pod`.
    pub kind: &'static str,
    /// A secret's, role's, cluster's or credential's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Several secrets' names (a write of many).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// A pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// A principal id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// A role name (of a binding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A scope path, or `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// A secret's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl Target {
    fn of(kind: &'static str) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// The vault itself (seal, unseal, init).
    pub fn vault() -> Self {
        Self::of("vault")
    }

    /// A scope (`/` for the root).
    pub fn scope(scope: impl ToString) -> Self {
        Self {
            scope: Some(scope.to_string()),
            ..Self::of("scope")
        }
    }

    /// One secret, at a version if named.
    pub fn secret(scope: impl ToString, name: impl ToString, version: Option<i64>) -> Self {
        Self {
            scope: Some(scope.to_string()),
            name: Some(name.to_string()),
            version,
            ..Self::of("secret")
        }
    }

    /// Several secrets of a scope (`*`: all of its effective secrets).
    pub fn secrets(scope: impl ToString, names: Vec<String>) -> Self {
        Self {
            scope: Some(scope.to_string()),
            names: Some(names),
            ..Self::of("secrets")
        }
    }

    /// A principal.
    pub fn principal(id: impl ToString) -> Self {
        Self {
            principal: Some(id.to_string()),
            ..Self::of("principal")
        }
    }

    /// A custom (or built-in) role of an organization.
    pub fn role(org: impl ToString, name: impl ToString) -> Self {
        Self {
            scope: Some(org.to_string()),
            name: Some(name.to_string()),
            ..Self::of("role")
        }
    }

    /// A role binding.
    pub fn binding(principal: impl ToString, role: impl ToString, scope: impl ToString) -> Self {
        Self {
            principal: Some(principal.to_string()),
            role: Some(role.to_string()),
            scope: Some(scope.to_string()),
            ..Self::of("binding")
        }
    }

    /// An audit log (by name).
    pub fn log(name: impl ToString, seq: Option<i64>) -> Self {
        Self {
            name: Some(name.to_string()),
            version: seq,
            ..Self::of("log")
        }
    }

    /// A presented credential of a kind (`token`, `ssh-key`), unnamed.
    pub fn credential(kind: &str) -> Self {
        Self {
            name: Some(kind.to_owned()),
            ..Self::of("credential")
        }
    }

    /// A shell or exec session in a pod of a service.
    pub fn session(id: impl ToString, service: impl ToString, pod: Option<String>) -> Self {
        Self {
            session: Some(id.to_string()),
            scope: Some(service.to_string()),
            pod,
            ..Self::of("session")
        }
    }

    /// Another kind of object named within a scope (a cluster, a service's
    /// workload, a pod).
    pub fn named(kind: &'static str, scope: impl ToString, name: Option<String>) -> Self {
        Self {
            scope: Some(scope.to_string()),
            name,
            ..Self::of(kind)
        }
    }
}

/// What a session did, recorded with its outcome (fields in alphabetical
/// order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// Bytes from the client into the session.
    pub bytes_in: u64,
    /// Bytes from the session to the client.
    pub bytes_out: u64,
    /// The container, where the runtime has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// How long it lasted.
    pub duration_ms: u64,
    /// The remote command's exit status, if it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// The session id.
    pub id: String,
    /// The pod it ran in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// SHA-256 (hex) over the recording's chunk digests, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_digest: Option<String>,
    /// `ssh`, `websocket`, `kubernetes-exec`, `http`.
    pub transport: &'static str,
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
    /// The operation, e.g. `user.disable`, `secret.read`.
    pub action: String,
    /// The permission (`resource.verb`) that allowed it, when one did.
    pub permission: Option<&'static str>,
    /// What it acts on.
    pub target: Target,
    /// The decision, when one was made.
    pub decision: Option<DecisionRecord>,
    /// What a session did (on its outcome).
    pub session: Option<SessionRecord>,
    /// How many identical events this entry stands for (repeated failures
    /// from one source, aggregated); absent means one.
    pub count: Option<u64>,
}

/// One log line. Fields in alphabetical order (canonical JSON). `prev` and
/// `seq` are written as `null` placeholders and filled in by the
/// [`TreeSequencer`] when the entry's place in its log is known.
#[derive(Serialize)]
struct Entry<'a> {
    action: &'a str,
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    decision: &'a Option<DecisionRecord>,
    log: &'a str,
    mac: Option<&'a str>,
    node: &'a str,
    op_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    permission: Option<&'a str>,
    phase: &'static str,
    prev: Option<&'a str>,
    schema: u32,
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a SessionRecord>,
    status: Option<&'a str>,
    target: &'a Target,
    time_ns: u128,
}

const PREV_PLACEHOLDER: &str = "\"prev\":null,";
const MAC_PLACEHOLDER: &str = "\"mac\":null,";
const SEQ_PLACEHOLDER: &str = "\"seq\":null,";
const MAC_FIELD: &str = "\"mac\":\"";
/// Bytes reserved for an encoded entry (a secret read's two entries are
/// about 650 bytes each; longer names and user agents add to that).
const ENTRY_CAPACITY: usize = 1024;

/// MACs entries of one log: `text -> hex`, under the log's key as it was
/// when this was obtained (it keeps working after a seal, for as long as it
/// is held).
pub type LogMac = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// Gives a log's [`LogMac`], or `None` when no key is available (sealed).
/// Supplied by the server from the vault; the database never sees the key.
pub type EntryMac = Arc<dyn Fn(&str) -> Option<LogMac> + Send + Sync>;

/// What [`check_mac`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacCheck {
    /// The entry carries a MAC and it verifies.
    Valid,
    /// The entry was written without a key (`"mac":null`).
    Missing,
    /// The MAC is malformed or wrong, or no key is available to check it.
    Invalid,
}

/// Checks an entry's MAC: the entry as it was encoded (MAC, `prev` and
/// `seq` back to `null`) must MAC to the recorded value under `log`'s key.
pub fn check_mac(entry: &str, log: &str, mac: &EntryMac) -> MacCheck {
    if entry.contains(MAC_PLACEHOLDER) {
        return MacCheck::Missing;
    }
    let Some((blank, recorded)) = as_encoded(entry) else {
        return MacCheck::Invalid;
    };
    match mac(log).map(|m| m(blank.as_bytes())) {
        Some(expected)
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                recorded.as_bytes(),
            )) =>
        {
            MacCheck::Valid
        }
        _ => MacCheck::Invalid,
    }
}

/// The entry with its `mac`, `prev` and `seq` values put back to `null`,
/// and the recorded MAC; `None` if the entry does not have that shape.
fn as_encoded(entry: &str) -> Option<(String, &str)> {
    // Where the value of `"name":` lies: up to the next `,`.
    fn value(s: &str, name: &str) -> Option<(usize, usize)> {
        let field = format!("\"{name}\":");
        let at = s.find(&field)? + field.len();
        Some((at, at + s.get(at..)?.find(',')?))
    }
    let mac = value(entry, "mac")?;
    let prev = value(entry, "prev")?;
    let seq = value(entry, "seq")?;
    let tag = entry
        .get(mac.0..mac.1)?
        .strip_prefix('"')?
        .strip_suffix('"')?;
    // The encoder writes the fields in this order; anything else is not an
    // entry it wrote.
    if !(mac.1 <= prev.0 && prev.1 <= seq.0) {
        return None;
    }
    let blank = splice(
        entry,
        &[(mac, &["null"]), (prev, &["null"]), (seq, &["null"])],
    )?;
    Some((blank, tag))
}

/// `text` with each span (in order, not overlapping) replaced by the
/// concatenation of its pieces, built in one allocation.
fn splice(text: &str, edits: &[((usize, usize), &[&str])]) -> Option<String> {
    let added: usize = edits
        .iter()
        .flat_map(|(_, pieces)| pieces.iter().map(|p| p.len()))
        .sum();
    let mut out = String::with_capacity(text.len() + added);
    let mut done = 0;
    for &((from, to), pieces) in edits {
        out.push_str(text.get(done..from)?);
        pieces.iter().for_each(|p| out.push_str(p));
        done = to;
    }
    out.push_str(text.get(done..)?);
    Some(out)
}

/// The span of the first `placeholder` in `text` at or after `from`.
fn placeholder(text: &str, placeholder: &str, from: usize) -> Option<(usize, usize)> {
    let at = from + text.get(from..)?.find(placeholder)?;
    Some((at, at + placeholder.len()))
}

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
            let (prev, seq_text) = (hex::encode(prev), seq.to_string());
            let filled = placeholder(&entry, PREV_PLACEHOLDER, 0)
                .and_then(|p| Some((p, placeholder(&entry, SEQ_PLACEHOLDER, p.1)?)))
                .and_then(|(p, q)| {
                    splice(
                        &entry,
                        &[
                            (p, &["\"prev\":\"", &prev, "\","]),
                            (q, &["\"seq\":", &seq_text, ","]),
                        ],
                    )
                })
                .ok_or_else(|| format!("{log}: entry without sequence placeholders"))?;
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

    fn open_tiles(&self, size: u64, count: u64) -> Result<Vec<(u8, u64, u64)>, String> {
        warden_tlog::tiles::open_tiles(size, count).map_err(|e| e.to_string())
    }

    fn tiles(
        &self,
        size: u64,
        open: Vec<Vec<Vec<u8>>>,
        leaves: &[Vec<u8>],
    ) -> Result<Vec<TileRow>, String> {
        let open = open
            .iter()
            .map(|level| hashes(level))
            .collect::<Result<Vec<_>, _>>()?;
        tiles::rows(warden_tlog::tiles::extend(size, open, &hashes(leaves)?))
    }
}

/// Stored hashes as [`Hash`]es.
fn hashes(stored: &[Vec<u8>]) -> Result<Vec<Hash>, String> {
    stored
        .iter()
        .map(|h| {
            Hash::try_from(h.as_slice()).map_err(|_| "a stored hash is not 32 bytes".to_owned())
        })
        .collect()
}

/// Appends audit entries for one node.
pub struct Auditor {
    store: Store,
    mac: Option<EntryMac>,
    node: String,
    next_op: AtomicU64,
    op_prefix: String,
}

impl Auditor {
    /// An auditor writing through `store`, naming itself `node`, MACing
    /// every entry with `mac` when it yields a key; installs the
    /// [`TreeSequencer`] in the store and, on a Tokio runtime, starts
    /// building the tiles of logs that lack them ([`tiles::catch_up_all`]).
    pub fn new(store: Store, node: impl Into<String>, mac: Option<EntryMac>) -> Self {
        store.install_sequencer(Arc::new(TreeSequencer));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(tiles::catch_up_all(store.clone()));
        }
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
            mac,
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

    fn encode(
        &self,
        phase: &'static str,
        event: &Event,
        status: Option<&str>,
        mac: Option<&LogMac>,
    ) -> String {
        let entry = Entry {
            action: &event.action,
            actor: &event.actor,
            count: event.count,
            decision: &event.decision,
            log: &event.log,
            mac: None,
            node: &self.node,
            op_id: &event.op_id,
            permission: event.permission,
            phase,
            prev: None,
            schema: SCHEMA,
            seq: None,
            session: event.session.as_ref(),
            status,
            target: &event.target,
            time_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        };
        // Sized for a typical entry so that encoding does not reallocate
        // (this runs twice per request).
        let mut buf = Vec::with_capacity(ENTRY_CAPACITY);
        let text = serde_json::to_writer(&mut buf, &entry)
            .map_err(|e| e.to_string())
            .and_then(|()| String::from_utf8(buf).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| format!("{{\"encode_error\":{e:?}}}"));
        // The MAC covers the entry as encoded here (its place in the log,
        // `seq` and `prev`, still null): it is made while the operation
        // runs, under the key of that moment.
        let Some(m) = mac else {
            return text;
        };
        let tag = m(text.as_bytes());
        placeholder(&text, MAC_PLACEHOLDER, 0)
            .and_then(|at| splice(&text, &[(at, &[MAC_FIELD, &tag, "\","])]))
            .unwrap_or(text)
    }

    /// The MAC of `event`'s log now; refuses, when there is none (sealed),
    /// an entry that must carry one.
    fn mac_for(&self, event: &Event) -> Result<Option<LogMac>, AuditError> {
        let Some(provider) = &self.mac else {
            return Ok(None);
        };
        match provider(&event.log) {
            Some(m) => Ok(Some(m)),
            None if may_lack_mac(&event.log, &event.action) => Ok(None),
            None => Err(AuditError::Sealed {
                log: event.log.clone(),
                action: event.action.clone(),
            }),
        }
    }

    /// Appends the intent and returns once it is durable.
    pub async fn intent(&self, event: &Event) -> Result<Intent, AuditError> {
        let mut intent = self.queue_intent(event)?;
        intent.durable().await?;
        Ok(intent)
    }

    /// Queues the intent and returns at once. Writes made under
    /// [`warden_store::after_intent`] with its ticket are ordered after it
    /// and refused if it fails; [`Intent::durable`] says when it is on
    /// disk. The [`Intent`] keeps the log's MAC key for the outcome: pass it
    /// to [`Auditor::outcome`].
    pub fn queue_intent(&self, event: &Event) -> Result<Intent, AuditError> {
        let mac = self.mac_for(event)?;
        let line = self.encode("intent", event, None, mac.as_ref());
        let pending = self.store.queue_audit(event.log.clone(), line)?;
        Ok(Intent {
            ticket: pending.ticket(),
            pending: Some(pending),
            durable: None,
            mac,
        })
    }

    /// Appends a record that is complete in itself (a denial, a failed
    /// login) and returns once it is durable. It carries a MAC unless the
    /// vault is sealed and it [`may_lack_mac`]; otherwise, while sealed, it
    /// is refused.
    pub async fn record(&self, event: &Event, status: &str) -> Result<(), AuditError> {
        let mac = self.mac_for(event)?;
        let line = self.encode("outcome", event, Some(status), mac.as_ref());
        Ok(self.store.append_audit(event.log.clone(), line).await?)
    }

    /// Appends the outcome of `intent` without waiting: the response does
    /// not wait for it, and a crash between the two leaves an intent without
    /// outcome, which is itself evidence. It is MACed with the key the
    /// intent was MACed with, so an operation that ends after a seal still
    /// records a MACed outcome; an intent recorded while sealed (a public
    /// operation) gets its outcome MACed if the vault is unsealed by then.
    pub fn outcome(&self, intent: Intent, event: &Event, status: &str) {
        let mac = intent
            .mac
            .or_else(|| self.mac.as_ref().and_then(|m| m(&event.log)));
        let line = self.encode("outcome", event, Some(status), mac.as_ref());
        self.store.append_audit_later(event.log.clone(), line);
    }
}

/// An intent on its way to disk, holding what its outcome needs: the log's
/// MAC key of the moment the intent was MACed (dropped with the `Intent`).
pub struct Intent {
    ticket: Ticket,
    pending: Option<PendingAudit>,
    durable: Option<Result<(), StoreError>>,
    mac: Option<LogMac>,
}

impl Intent {
    /// The ticket writes depending on this intent carry (see
    /// [`warden_store::after_intent`]).
    pub fn ticket(&self) -> Ticket {
        self.ticket.clone()
    }

    /// Waits until the intent is committed (at once on later calls, with
    /// the same answer).
    pub async fn durable(&mut self) -> Result<(), AuditError> {
        if let Some(pending) = self.pending.take() {
            self.durable = Some(pending.durable().await);
        }
        match &self.durable {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(AuditError::Store(e.clone())),
            None => Err(AuditError::Store(StoreError::Closed)),
        }
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
            permission: Some("secret.read"),
            target: Target::secret("acme/shop", "K", Some(2)),
            decision: Some(DecisionRecord {
                effect: "allow",
                rule: "owner@/".into(),
            }),
            session: Some(SessionRecord {
                id: "s1".into(),
                transport: "ssh",
                pod: Some("api-1".into()),
                exit_status: Some(0),
                ..SessionRecord::default()
            }),
            count: Some(3),
        };
        let line = Entry {
            action: &event.action,
            actor: &event.actor,
            count: event.count,
            decision: &event.decision,
            log: &event.log,
            mac: None,
            node: "n",
            op_id: &event.op_id,
            permission: event.permission,
            phase: "intent",
            prev: None,
            schema: SCHEMA,
            seq: None,
            session: event.session.as_ref(),
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

    /// An entry MACed when encoded still verifies once placed in its log
    /// (seq and prev filled in); any change to it does not; one written
    /// without a key is reported as such.
    #[test]
    fn entry_macs_survive_placement_and_catch_changes() {
        let mac = stand_in_mac(|| true);
        let entry = Entry {
            action: "secret.read",
            actor: &Actor {
                method: "token",
                principal: "user:root".into(),
                source_ip: None,
                token_id: None,
                user_agent: None,
            },
            count: None,
            decision: &None,
            log: "acme",
            mac: None,
            node: "n",
            op_id: "o",
            permission: None,
            phase: "intent",
            prev: None,
            schema: SCHEMA,
            seq: None,
            session: None,
            status: None,
            target: &Target::secret("acme/shop", "K", None),
            time_ns: 1,
        };
        let text = serde_json::to_string(&entry).unwrap();
        let tag = mac("acme").unwrap()(text.as_bytes());
        let signed = text.replacen(MAC_PLACEHOLDER, &format!("{MAC_FIELD}{tag}\","), 1);
        let head = LogHead {
            size: 0,
            state: TreeSequencer.empty_state(),
        };
        let (placed, _) = TreeSequencer
            .sequence("acme", head, vec![signed, text])
            .unwrap();
        assert_eq!(check_mac(&placed[0].entry, "acme", &mac), MacCheck::Valid);
        assert_eq!(check_mac(&placed[1].entry, "acme", &mac), MacCheck::Missing);
        let edited = placed[0].entry.replace("user:root", "user:evil");
        assert_eq!(check_mac(&edited, "acme", &mac), MacCheck::Invalid);
        assert_eq!(
            check_mac(&placed[0].entry, "globex", &mac),
            MacCheck::Invalid
        );
        assert_eq!(check_mac("{\"mac\":\"x", "acme", &mac), MacCheck::Invalid);
        // The same fields in another order are not an entry the encoder
        // wrote.
        let field = format!("{MAC_FIELD}{tag}\",");
        let moved = placed[0].entry.replacen(&field, "", 1).replacen(
            "\"seq\":0,",
            &format!("\"seq\":0,{field}"),
            1,
        );
        assert_ne!(moved, placed[0].entry);
        assert_eq!(check_mac(&moved, "acme", &mac), MacCheck::Invalid);
    }

    /// A stand-in keyed function (the real one is HMAC-SHA256 in the vault).
    fn ring_free_mac(key: &[u8; 32], log: &str) -> u64 {
        key.iter()
            .chain(log.as_bytes())
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
    }

    /// A stand-in [`EntryMac`] that has a key only while `unsealed()`.
    fn stand_in_mac(unsealed: impl Fn() -> bool + Send + Sync + 'static) -> EntryMac {
        let key = [9u8; 32];
        Arc::new(move |log: &str| {
            if !unsealed() {
                return None;
            }
            let k = ring_free_mac(&key, log);
            let m: LogMac = Arc::new(move |text: &[u8]| {
                format!(
                    "{:x}",
                    k.wrapping_add(text.iter().map(|b| u64::from(*b)).sum::<u64>())
                )
            });
            Some(m)
        })
    }

    fn event(log: &str, action: &str) -> Event {
        Event {
            op_id: format!("n-1-{action}"),
            log: log.into(),
            actor: Actor {
                method: "token",
                principal: "user:root".into(),
                source_ip: None,
                token_id: None,
                user_agent: None,
            },
            action: action.into(),
            permission: None,
            target: Target::secret("acme/shop", "K", None),
            decision: None,
            session: None,
            count: None,
        }
    }

    /// Regression: outcomes and standalone records written without a MAC
    /// were vouched for in any log. Now, with a key provider installed: an
    /// operation audited while unsealed gets its outcome MACed with the
    /// intent's key even if the vault is sealed before it ends; while
    /// sealed, nothing but the system log's public operations is written
    /// without a MAC (the rest is refused, so the operation does not run).
    #[tokio::test]
    async fn entries_are_maced_whenever_they_were_authorized_unsealed() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("data/a.db").display());
        let store = Store::connect(&url).await.unwrap();
        let unsealed = Arc::new(AtomicBool::new(true));
        let flag = unsealed.clone();
        let mac = stand_in_mac(move || flag.load(Ordering::SeqCst));
        let auditor = Auditor::new(store.clone(), "n", Some(mac.clone()));

        let op = event("acme", "secret.read");
        let intent = auditor.intent(&op).await.unwrap();
        unsealed.store(false, Ordering::SeqCst);
        auditor.outcome(intent, &op, "ok");
        // Sealed: an authorized operation or a denial racing the seal is
        // refused; a public operation of the system log is recorded bare.
        assert!(matches!(
            auditor.queue_intent(&event("acme", "secret.write")),
            Err(AuditError::Sealed { .. })
        ));
        assert!(matches!(
            auditor
                .record(&event("acme", "secret.read"), "forbidden")
                .await,
            Err(AuditError::Sealed { .. })
        ));
        assert!(matches!(
            auditor
                .record(&event(SYSTEM_LOG, "user.create"), "forbidden")
                .await,
            Err(AuditError::Sealed { .. })
        ));
        let unseal = event(SYSTEM_LOG, "sys.unseal");
        let intent = auditor.intent(&unseal).await.unwrap();
        auditor
            .record(&event(SYSTEM_LOG, "auth.login"), "unknown token")
            .await
            .unwrap();
        // The unseal succeeds: its outcome is MACed under the new key.
        unsealed.store(true, Ordering::SeqCst);
        auditor.outcome(intent, &unseal, "ok");
        store.flush().await.unwrap();

        let acme = store.audit_entries("acme", 0, 10).await.unwrap();
        assert_eq!(acme.len(), 2);
        for e in &acme {
            assert_eq!(
                check_mac(&e.entry, "acme", &mac),
                MacCheck::Valid,
                "{}",
                e.entry
            );
        }
        let system = store.audit_entries(SYSTEM_LOG, 0, 10).await.unwrap();
        let checks: Vec<MacCheck> = system
            .iter()
            .map(|e| check_mac(&e.entry, SYSTEM_LOG, &mac))
            .collect();
        assert_eq!(
            checks,
            [MacCheck::Missing, MacCheck::Missing, MacCheck::Valid]
        );
    }
}
