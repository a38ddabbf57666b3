//! Key material in memory while unsealed: the root key and, per organization,
//! each key term's derived secret-encryption key and encryption counter.
//!
//! Dropping the [`Keyring`] (on seal) drops every key; raw key bytes are held
//! only in `Zeroizing` buffers and wiped as they go.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use warden_store::{OrgKeyRow, Store};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::crypto::{AeadKey, Key32, random_bytes, random_key};

/// Encryptions reserved from storage at a time per term. Reservations are
/// persisted before use, so the stored count is always an upper bound of the
/// real one, across crashes and replicas.
pub const BLOCK: i64 = 1024;
/// A term is retired (a new term is created) once this many encryptions were
/// reserved under it: half of NIST SP 800-38D's 2^32 limit for random 96-bit
/// nonces under one key.
pub const ROTATE_AT: i64 = 1 << 31;

const ORG_KEY_CONTEXT: &[u8] = b"warden/org-key/v1";
const SECRET_KEY_INFO: &[u8] = b"warden/secret/v1";
const CREDENTIAL_CONTEXT: &[u8] = b"warden/credential/v1";
/// HKDF info prefix of a session recording's key (then the session id).
const RECORDING_KEY_INFO: &[u8] = b"warden/recording/v1";
/// AAD prefix of a recording chunk (then session, chunk number, last).
const RECORDING_CONTEXT: &[u8] = b"warden/recording-chunk/v1";

struct Counter {
    used: i64,
    reserved: i64,
}

/// One audit log's MAC key. It lives as long as its holder, even past a
/// seal: an operation that was authorized and audited while unsealed holds
/// its log's key until its outcome is recorded, as it holds the keyring
/// while it runs.
#[derive(Clone)]
pub struct AuditMacKey(ring::hmac::Key);

impl AuditMacKey {
    /// HMAC-SHA256 of `data`, hex.
    pub fn mac(&self, data: &[u8]) -> String {
        hex::encode(ring::hmac::sign(&self.0, data).as_ref())
    }
}

impl std::fmt::Debug for AuditMacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditMacKey([redacted])")
    }
}

/// The MAC key of authorization rows (HKDF of the root key under its own
/// salt), handed to the store while unsealed; see `warden_store::RowKey`.
pub(crate) struct RowMacKey(ring::hmac::Key);

impl warden_store::RowKey for RowMacKey {
    fn tag(&self, message: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&self.0, message).as_ref().to_vec()
    }

    fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.0, message, tag).is_ok()
    }
}

/// One key term's encryption key.
pub(crate) struct TermKey {
    pub(crate) term: i64,
    pub(crate) secrets: AeadKey,
    /// HKDF pseudo-random key of the term's per-session recording keys.
    recordings: ring::hkdf::Prk,
    counter: tokio::sync::Mutex<Counter>,
}

struct OrgRing {
    current: i64,
    terms: HashMap<i64, Arc<TermKey>>,
}

/// The key that seals one shell session's recording: HKDF of its
/// organization's key term, bound to the session. Each chunk's nonce is its
/// number, used once under this key by construction; its AAD binds the
/// session, the number and whether it is the last, so a chunk cannot be
/// moved, dropped from the end unnoticed, or swapped in from elsewhere.
/// Held for the session's life, like an [`AuditMacKey`], so a recording
/// started while unsealed is completed even across a seal.
pub struct RecordingKey {
    term: u32,
    key: AeadKey,
    session: String,
}

impl std::fmt::Debug for RecordingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingKey([redacted])")
    }
}

impl RecordingKey {
    fn derive(tk: &TermKey, session: &str) -> Result<Self, VaultError> {
        Ok(Self {
            term: term_u32(tk.term)?,
            key: AeadKey::from_prk(&tk.recordings, &[RECORDING_KEY_INFO, session.as_bytes()])?,
            session: session.to_owned(),
        })
    }

    /// Seals chunk `seq` of the recording.
    pub fn seal(&self, seq: u64, last: bool, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        let seq = seq.to_be_bytes();
        Ok(self.key.seal_with_nonce(
            self.term,
            nonce,
            &recording_context(&self.session, &seq, last),
            plaintext,
        )?)
    }

    fn open(&self, seq: u64, last: bool, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let seq_be = seq.to_be_bytes();
        self.key
            .open(sealed, &recording_context(&self.session, &seq_be, last))
            .map_err(|_| {
                VaultError::Integrity(format!(
                    "chunk {seq} of the recording of session {} does not open: altered, moved \
                     or not its last",
                    self.session
                ))
            })
    }
}

fn recording_context<'a>(session: &'a str, seq: &'a [u8; 8], last: bool) -> [&'a [u8]; 4] {
    [
        RECORDING_CONTEXT,
        session.as_bytes(),
        seq,
        if last { b"last" } else { b"more" },
    ]
}

/// The unsealed key hierarchy.
pub(crate) struct Keyring {
    root: AeadKey,
    /// HKDF pseudo-random key for per-log audit MAC keys.
    audit_mac: ring::hkdf::Prk,
    /// Per-log audit MAC keys derived so far (every entry and every
    /// token id in an entry is MACed; deriving costs more than the MAC).
    audit_mac_keys: RwLock<HashMap<String, AuditMacKey>>,
    orgs: RwLock<HashMap<String, Arc<OrgRing>>>,
}

const AUDIT_MAC_SALT: &[u8] = b"warden/audit-mac/v1";
const ROW_MAC_SALT: &[u8] = b"warden/row-mac/v1";

/// Output length marker for deriving HMAC-SHA256 keys with HKDF.
struct HmacKeyLen;

impl ring::hkdf::KeyType for HmacKeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl Keyring {
    pub(crate) fn new(root: &Key32) -> Result<Self, VaultError> {
        Ok(Self {
            root: AeadKey::from_bytes(root)?,
            audit_mac: ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, AUDIT_MAC_SALT)
                .extract(root.as_ref()),
            audit_mac_keys: RwLock::new(HashMap::new()),
            orgs: RwLock::new(HashMap::new()),
        })
    }

    /// The MAC key of authorization rows.
    pub(crate) fn row_mac_key(root: &Key32) -> Option<RowMacKey> {
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, ROW_MAC_SALT).extract(root.as_ref());
        let okm = prk.expand(&[b"rows"], HmacKeyLen).ok()?;
        let mut raw = Zeroizing::new([0u8; 32]);
        okm.fill(raw.as_mut()).ok()?;
        Some(RowMacKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            raw.as_ref(),
        )))
    }

    /// HMAC-SHA256 of `data` under `log`'s audit key (HKDF of the root key,
    /// bound to the log's name), hex.
    pub(crate) fn audit_mac(&self, log: &str, data: &[u8]) -> Option<String> {
        Some(self.audit_mac_key(log)?.mac(data))
    }

    /// `log`'s audit MAC key (HKDF of the root key, bound to the log's name).
    pub(crate) fn audit_mac_key(&self, log: &str) -> Option<AuditMacKey> {
        if let Some(k) = self.audit_mac_keys.read().ok()?.get(log) {
            return Some(k.clone());
        }
        let key = self.derive_audit_mac_key(log)?;
        if let Ok(mut keys) = self.audit_mac_keys.write() {
            // One per log; bounded in case of very many organizations.
            if keys.len() >= 10_000 {
                keys.clear();
            }
            keys.insert(log.to_owned(), key.clone());
        }
        Some(key)
    }

    fn derive_audit_mac_key(&self, log: &str) -> Option<AuditMacKey> {
        let info = [log.as_bytes()];
        let okm = self.audit_mac.expand(&info, HmacKeyLen).ok()?;
        let mut raw = Zeroizing::new([0u8; 32]);
        okm.fill(raw.as_mut()).ok()?;
        Some(AuditMacKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            raw.as_ref(),
        )))
    }

    /// Seals a credential (TOTP secret, signing key) under the root key,
    /// bound to its purpose and subject.
    pub(crate) fn seal_credential(
        &self,
        purpose: &str,
        subject: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        Ok(self.root.seal(
            0,
            &[CREDENTIAL_CONTEXT, purpose.as_bytes(), subject.as_bytes()],
            plaintext,
        )?)
    }

    /// Opens what [`Keyring::seal_credential`] sealed for the same purpose
    /// and subject.
    pub(crate) fn open_credential(
        &self,
        purpose: &str,
        subject: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.root
            .open(
                sealed,
                &[CREDENTIAL_CONTEXT, purpose.as_bytes(), subject.as_bytes()],
            )
            .map_err(|_| VaultError::Integrity(format!("{purpose} credential of {subject}")))
    }

    /// Creates the wrapped key row of a new term for `org`.
    pub(crate) fn new_term_row(&self, org: &str, term: i64) -> Result<OrgKeyRow, VaultError> {
        let key = random_key()?;
        let salt: [u8; 32] = random_bytes()?;
        let wrapped = self.root.seal(
            term_u32(term)?,
            &[ORG_KEY_CONTEXT, org.as_bytes()],
            key.as_ref(),
        )?;
        Ok(OrgKeyRow {
            org: org.to_owned(),
            term,
            salt: salt.to_vec(),
            wrapped,
            encryptions: 0,
            created_at: warden_store::now_ms(),
        })
    }

    fn open_term(&self, row: &OrgKeyRow) -> Result<TermKey, VaultError> {
        let raw = self
            .root
            .open(&row.wrapped, &[ORG_KEY_CONTEXT, row.org.as_bytes()])
            .map_err(|_| VaultError::Integrity(format!("key term {} of {}", row.term, row.org)))?;
        let mut key = Zeroizing::new([0u8; 32]);
        if raw.len() != 32 || crate::crypto::envelope_term(&row.wrapped)? != term_u32(row.term)? {
            return Err(VaultError::Integrity(format!(
                "key term {} of {}",
                row.term, row.org
            )));
        }
        key.copy_from_slice(&raw);
        Ok(TermKey {
            term: row.term,
            secrets: AeadKey::derive(&key, &row.salt, SECRET_KEY_INFO)?,
            recordings: ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &row.salt)
                .extract(key.as_ref()),
            counter: tokio::sync::Mutex::new(Counter {
                used: 0,
                reserved: 0,
            }),
        })
    }

    async fn ring(
        &self,
        store: &Store,
        org: &str,
        reload: bool,
    ) -> Result<Arc<OrgRing>, VaultError> {
        if !reload && let Some(r) = self.orgs.read().ok().and_then(|m| m.get(org).cloned()) {
            return Ok(r);
        }
        let rows = store.org_keys(org).await?;
        let current = rows
            .iter()
            .map(|r| r.term)
            .max()
            .ok_or_else(|| VaultError::NotFound(format!("keys of organization {org}")))?;
        let mut terms = HashMap::with_capacity(rows.len());
        for row in &rows {
            terms.insert(row.term, Arc::new(self.open_term(row)?));
        }
        let ring = Arc::new(OrgRing { current, terms });
        if let Ok(mut m) = self.orgs.write() {
            m.insert(org.to_owned(), ring.clone());
        }
        Ok(ring)
    }

    /// The key of `term` for decryption (reloading once if another replica
    /// created it).
    pub(crate) async fn term(
        &self,
        store: &Store,
        org: &str,
        term: i64,
    ) -> Result<Arc<TermKey>, VaultError> {
        if let Some(k) = self.ring(store, org, false).await?.terms.get(&term) {
            return Ok(k.clone());
        }
        self.ring(store, org, true)
            .await?
            .terms
            .get(&term)
            .cloned()
            .ok_or_else(|| VaultError::Integrity(format!("key term {term} of {org} is missing")))
    }

    /// The key for recording `session` of `org`, under the current term.
    pub(crate) async fn recording_key(
        &self,
        store: &Store,
        org: &str,
        session: &str,
    ) -> Result<RecordingKey, VaultError> {
        let ring = self.ring(store, org, false).await?;
        let tk = ring
            .terms
            .get(&ring.current)
            .ok_or_else(|| VaultError::Integrity(format!("current key term of {org}")))?;
        RecordingKey::derive(tk, session)
    }

    /// Opens chunk `seq` of `session`'s recording, under the term its
    /// envelope names.
    pub(crate) async fn open_recording(
        &self,
        store: &Store,
        org: &str,
        session: &str,
        seq: u64,
        last: bool,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let term = crate::crypto::envelope_term(sealed).map_err(|_| {
            VaultError::Integrity(format!(
                "chunk {seq} of the recording of session {session} is not an envelope"
            ))
        })?;
        let tk = self.term(store, org, i64::from(term)).await?;
        RecordingKey::derive(&tk, session)?.open(seq, last, sealed)
    }

    /// The current term of `org`.
    pub(crate) async fn current_term(&self, store: &Store, org: &str) -> Result<i64, VaultError> {
        Ok(self.ring(store, org, false).await?.current)
    }

    /// Accounts for `n` encryptions under the current term and returns that
    /// term's key, rotating first when the term is used up.
    pub(crate) async fn reserve(
        &self,
        store: &Store,
        org: &str,
        n: i64,
    ) -> Result<Arc<TermKey>, VaultError> {
        let mut reload = false;
        loop {
            let ring = self.ring(store, org, reload).await?;
            let tk = ring
                .terms
                .get(&ring.current)
                .cloned()
                .ok_or_else(|| VaultError::Integrity(format!("current key term of {org}")))?;
            let mut c = tk.counter.lock().await;
            if c.used + n <= c.reserved {
                c.used += n;
                return Ok(tk.clone());
            }
            let block = BLOCK.max(n);
            let total = store.reserve_encryptions(org, tk.term, block).await?;
            if total > ROTATE_AT {
                drop(c);
                tracing::info!(
                    org,
                    term = tk.term,
                    "key term reached its encryption limit; rotating"
                );
                // Exactly the next term: concurrent writers that hit the
                // limit together all try the same term, and all but one get
                // a conflict, which is success here.
                match self.add_term(store, org, tk.term + 1).await {
                    Ok(()) | Err(VaultError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                reload = true;
                continue;
            }
            c.reserved = total;
            c.used = total - block + n;
            drop(c);
            // At every new block, pick up a term another replica created.
            let newest = store.org_keys(org).await?.iter().map(|r| r.term).max();
            if newest > Some(tk.term)
                && let Ok(mut m) = self.orgs.write()
            {
                m.remove(org);
            }
            return Ok(tk);
        }
    }

    /// Adds a new key term for `org` (one past the newest); returns it.
    pub(crate) async fn rotate(&self, store: &Store, org: &str) -> Result<i64, VaultError> {
        let next = store
            .org_keys(org)
            .await?
            .iter()
            .map(|r| r.term)
            .max()
            .unwrap_or(0)
            + 1;
        self.add_term(store, org, next).await?;
        Ok(next)
    }

    /// Adds term `term` for `org`; a conflict means it exists already.
    async fn add_term(&self, store: &Store, org: &str, term: i64) -> Result<(), VaultError> {
        store.add_org_key(self.new_term_row(org, term)?).await?;
        if let Ok(mut m) = self.orgs.write() {
            m.remove(org);
        }
        Ok(())
    }
}

fn term_u32(term: i64) -> Result<u32, VaultError> {
    u32::try_from(term).map_err(|_| VaultError::Integrity(format!("key term {term} out of range")))
}
