//! The checkpoint signing key's lifecycle and what is built on it: the
//! once-a-second checkpointer, the newest signed checkpoint of a log,
//! export bundles and live verification.
//!
//! The installation has one Ed25519 signing key ([`KEY_NAME`]), made on
//! first use, stored (PKCS#8) sealed under the root key in a single-row
//! table that replicas share, and held in memory only while unsealed: an
//! [`AuditSigner`] loads it on first use after unseal and drops it on seal.
//! This crate never links the vault: it seals and opens the key through a
//! [`KeySealer`], which the composition root implements over the vault.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use warden_store::{CheckpointRow, Store, StoreError};
use warden_tlog::note::{NoteSigner, NoteVerifier};
use warden_tlog::verify::{Fault, Transcript, Verdict};
use zeroize::Zeroizing;

use crate::EntryMac;
use crate::checkpoint::{KEY_NAME, checkpoint_all};
use crate::export::{Export, ExportError, Range};

/// What the signing key is sealed for (with [`KEY_NAME`] as the subject).
const SIGNING_PURPOSE: &str = "audit-signing-key";
/// How often logs that grew are checkpointed.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Seals and opens small secrets under the root key: the narrow view this
/// crate has of the vault (which implements it, in the server, over
/// `Vault::seal_credential` and `Vault::open_credential`).
pub trait KeySealer: Send + Sync {
    /// Why sealing or opening failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether the root key is out of memory (nothing can be sealed or
    /// opened).
    fn is_sealed(&self) -> bool;

    /// Seals `plaintext` under the root key, bound to `purpose` and
    /// `subject`.
    fn seal(&self, purpose: &str, subject: &str, plaintext: &[u8]) -> Result<Vec<u8>, Self::Error>;

    /// Opens what [`KeySealer::seal`] sealed for the same `purpose` and
    /// `subject`; the plaintext is wiped when dropped.
    fn open(
        &self,
        purpose: &str,
        subject: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Self::Error>;
}

/// Why the signing key, a checkpoint, an export or a live verification is
/// not available. `E` is the [`KeySealer`]'s error.
#[derive(Debug, thiserror::Error)]
pub enum SigningError<E> {
    /// The root key is sealed, so the signing key is not in memory.
    #[error("the root key is sealed: the audit signing key is not in memory")]
    Sealed,
    /// The sealer could not open the stored signing key.
    #[error("audit signing key: {0}")]
    Sealer(#[source] E),
    /// The signing key (or its verifier key) does not parse.
    #[error("audit signing key is unusable: {0}")]
    BadKey(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log has no checkpoint (it has no entries).
    #[error("audit log {0} has no entries")]
    NoEntries(String),
    /// The export or live verification failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// A log's newest checkpoint, signed after checkpointing every log that
/// grew.
pub struct Signed {
    /// The signer (its verifier key vouches for the checkpoint).
    pub signer: Arc<NoteSigner>,
    /// The newest checkpoint of the log.
    pub checkpoint: CheckpointRow,
    /// Why entries of the log after `checkpoint` could not be vouched for,
    /// if they could not (possible tampering).
    pub refused: Option<Fault>,
}

/// The installation's checkpoint signer over storage, the key's sealer and
/// the entry MAC keys: the signing key is loaded on first use after unseal
/// and dropped on seal.
pub struct AuditSigner<K> {
    store: Store,
    sealer: K,
    mac: EntryMac,
    signer: RwLock<Option<Arc<NoteSigner>>>,
}

impl<K: KeySealer> AuditSigner<K> {
    /// A signer over `store` that seals its key with `sealer` and checks
    /// entries with `mac` before signing them.
    pub fn new(store: Store, sealer: K, mac: EntryMac) -> Self {
        Self {
            store,
            sealer,
            mac,
            signer: RwLock::new(None),
        }
    }

    /// The signer, creating the installation's key on first use. Fails
    /// while sealed.
    pub async fn signer(&self) -> Result<Arc<NoteSigner>, SigningError<K::Error>> {
        if self.sealer.is_sealed() {
            self.forget();
            return Err(SigningError::Sealed);
        }
        if let Some(s) = self.signer.read().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let (_, sealed) = self
            .store
            .audit_signing_key(|| {
                let fail = |e: String| StoreError::Sealing(e);
                let (signer, pkcs8) =
                    NoteSigner::generate(KEY_NAME).map_err(|e| fail(e.to_string()))?;
                let sealed = self
                    .sealer
                    .seal(SIGNING_PURPOSE, KEY_NAME, &pkcs8)
                    .map_err(|e| fail(e.to_string()))?;
                Ok((signer.verifier_key(), sealed))
            })
            .await?;
        let pkcs8 = self
            .sealer
            .open(SIGNING_PURPOSE, KEY_NAME, &sealed)
            .map_err(SigningError::Sealer)?;
        let signer = Arc::new(
            NoteSigner::from_pkcs8(KEY_NAME, &pkcs8)
                .map_err(|e| SigningError::BadKey(e.to_string()))?,
        );
        if let Ok(mut s) = self.signer.write() {
            *s = Some(signer.clone());
        }
        Ok(signer)
    }

    /// Drops the private key from memory.
    pub fn forget(&self) {
        if let Ok(mut s) = self.signer.write() {
            *s = None;
        }
    }

    /// One round of checkpointing; logs it cannot vouch for are reported as
    /// errors (their entries beyond the newest checkpoint were not written
    /// by Warden, or the head was altered) and stay unsigned.
    pub async fn checkpoint(
        &self,
        signer: &NoteSigner,
    ) -> Result<Vec<(String, Fault)>, StoreError> {
        let round = checkpoint_all(&self.store, signer, &self.mac).await?;
        for (log, why) in &round.refused {
            tracing::error!(%log, reason = %why.reason, "audit log not checkpointed: possible tampering");
        }
        Ok(round.refused)
    }

    /// Checkpoints every log that grew, then gives `log`'s newest
    /// checkpoint (and why its newer entries stay unsigned, if they do).
    pub async fn newest(&self, log: &str) -> Result<Signed, SigningError<K::Error>> {
        let signer = self.signer().await?;
        let refused = self
            .checkpoint(&signer)
            .await?
            .into_iter()
            .find_map(|(l, fault)| (l == log).then_some(fault));
        let Some(checkpoint) = self.store.latest_checkpoint(log).await? else {
            return Err(SigningError::NoEntries(log.to_owned()));
        };
        Ok(Signed {
            signer,
            checkpoint,
            refused,
        })
    }

    /// Plans an export bundle of `log`: the entries in the time range, from
    /// the first one in it to the newest checkpoint covering the last one
    /// (a checkpoint is signed first, so the newest entries are covered).
    /// The caller streams it ([`Export::stream`]).
    pub async fn export(&self, log: &str, range: &Range) -> Result<Export, SigningError<K::Error>> {
        let newest = self.newest(log).await?;
        Ok(crate::export::plan(
            &self.store,
            log,
            range,
            &newest.checkpoint,
            newest.signer.verifier_key(),
            now_ns(),
        )
        .await?)
    }

    /// Checks the stored log against its checkpoints with the offline
    /// verifier: the whole log, as an export from the first entry would
    /// (read a page at a time); and fails if entries after the newest
    /// checkpoint cannot be vouched for.
    pub async fn verify_live(&self, log: &str) -> Result<Transcript, SigningError<K::Error>> {
        let Signed {
            signer,
            checkpoint,
            refused,
        } = self.newest(log).await?;
        let verifier = NoteVerifier::from_vkey(&signer.verifier_key())
            .map_err(|e| SigningError::BadKey(e.to_string()))?;
        let mut transcript = crate::export::verify_live(
            &self.store,
            log,
            &checkpoint,
            verifier,
            signer.verifier_key(),
            now_ns(),
        )
        .await?;
        if let Some(fault) = refused
            && transcript.verdict == Verdict::Ok
        {
            transcript.verdict = Verdict::Failed;
            transcript.first_bad_seq = fault.seq;
            transcript.checks.push(format!(
                "FAILED: after the newest checkpoint: {}",
                fault.reason
            ));
            transcript.reason = Some(fault.reason);
        }
        Ok(transcript)
    }

    /// One round of the checkpointer: forget the key while sealed, else
    /// sign what grew.
    async fn round(&self) -> Result<(), SigningError<K::Error>> {
        if self.sealer.is_sealed() {
            self.forget();
            return Ok(());
        }
        let signer = self.signer().await?;
        self.checkpoint(&signer).await?;
        Ok(())
    }
}

/// Signs checkpoints every [`CHECKPOINT_EVERY`] while unsealed (and drops
/// the key while sealed), until the signer is gone.
pub async fn checkpointer<K: KeySealer>(signer: Weak<AuditSigner<K>>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(signer) = signer.upgrade() else {
            return;
        };
        if let Err(e) = signer.round().await {
            tracing::warn!(error = %e, "audit checkpoint failed");
        }
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
