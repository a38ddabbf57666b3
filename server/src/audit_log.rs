//! The server's side of the tamper-evident audit log: the checkpoint
//! signing key (sealed under the root key, in memory only while unsealed),
//! the once-a-second checkpointer, and assembling export bundles and live
//! verifications from storage.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use warden_audit::checkpoint::{self, KEY_NAME};
pub use warden_audit::export::Range;
use warden_audit::export::{Export, ExportError};
use warden_store::Store;
use warden_tlog::note::{NoteSigner, NoteVerifier};
use warden_vault::Vault;

use crate::ApiError;
use crate::state::App;

const SIGNING_PURPOSE: &str = "audit-signing-key";
/// How often logs that grew are checkpointed.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The checkpoint signer, loaded on first use after unseal and dropped on
/// seal.
#[derive(Default)]
pub struct AuditKeys {
    signer: RwLock<Option<Arc<NoteSigner>>>,
}

impl AuditKeys {
    /// The signer, creating the installation's key on first use. Fails
    /// while the vault is sealed.
    pub async fn signer(&self, store: &Store, vault: &Vault) -> Result<Arc<NoteSigner>, ApiError> {
        if vault.is_sealed() {
            self.forget();
            return Err(warden_vault::VaultError::Sealed.into());
        }
        if let Some(s) = self.signer.read().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let (_, sealed) = store
            .audit_signing_key(|| {
                let fail = |e: String| warden_store::StoreError::Sealing(e);
                let (signer, pkcs8) =
                    NoteSigner::generate(KEY_NAME).map_err(|e| fail(e.to_string()))?;
                let sealed = vault
                    .seal_credential(SIGNING_PURPOSE, KEY_NAME, &pkcs8)
                    .map_err(|e| fail(e.to_string()))?;
                Ok((signer.verifier_key(), sealed))
            })
            .await?;
        let pkcs8 = vault.open_credential(SIGNING_PURPOSE, KEY_NAME, &sealed)?;
        let signer =
            Arc::new(NoteSigner::from_pkcs8(KEY_NAME, &pkcs8).map_err(|_| ApiError::internal())?);
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
}

/// Signs checkpoints once a second while unsealed, until the server is
/// gone.
pub async fn checkpointer(app: Weak<App>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        if app.vault.is_sealed() {
            app.audit_keys.forget();
            continue;
        }
        let result = async {
            let signer = app.audit_keys.signer(&app.store, &app.vault).await?;
            checkpoint(&app, &signer).await.map(|_| ())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e.message(), "audit checkpoint failed");
        }
    }
}

/// One round of checkpointing; logs it cannot vouch for are reported as
/// errors (their entries beyond the newest checkpoint were not written by
/// Warden, or the head was altered) and stay unsigned.
pub async fn checkpoint(
    app: &App,
    signer: &NoteSigner,
) -> Result<Vec<(String, warden_tlog::verify::Fault)>, ApiError> {
    let round = checkpoint::checkpoint_all(&app.store, signer, &app.entry_mac).await?;
    for (log, why) in &round.refused {
        tracing::error!(%log, reason = %why.reason, "audit log not checkpointed: possible tampering");
    }
    Ok(round.refused)
}

/// The answer for a proof or frontier that stored tiles could not give.
pub fn tile_error(e: warden_audit::tiles::TileError) -> ApiError {
    match e {
        warden_audit::tiles::TileError::Store(e) => e.into(),
        other => {
            tracing::error!(error = %other, "audit proof failed: possible tampering");
            ApiError::internal()
        }
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The answer for an export or live verification that failed.
fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Store(e) => e.into(),
        ExportError::Tiles(e) => tile_error(e),
        ExportError::NotFound(what) => ApiError::not_found(what),
        other => {
            tracing::error!(error = %other, "audit export failed");
            ApiError::internal()
        }
    }
}

/// Plans an export bundle of `log`: the entries in the time range, from the
/// first one in it to the newest checkpoint covering the last one (a
/// checkpoint is signed first, so the newest entries are covered). The
/// caller streams it ([`warden_audit::export::Export::stream`]).
pub async fn export(app: &App, log: &str, range: &Range) -> Result<Export, ApiError> {
    let signer = app.audit_keys.signer(&app.store, &app.vault).await?;
    checkpoint(app, &signer).await?;
    let Some(newest) = app.store.latest_checkpoint(log).await? else {
        return Err(ApiError::not_found(format!(
            "audit log {log} has no entries"
        )));
    };
    warden_audit::export::plan(
        &app.store,
        log,
        range,
        &newest,
        signer.verifier_key(),
        now_ns(),
    )
    .await
    .map_err(export_error)
}

/// Checks the stored log against its checkpoints with the offline
/// verifier: the whole log, as an export from the first entry would (read a
/// page at a time); and fails if entries after the newest checkpoint cannot
/// be vouched for.
pub async fn verify_live(
    app: &App,
    log: &str,
) -> Result<warden_tlog::verify::Transcript, ApiError> {
    let signer = app.audit_keys.signer(&app.store, &app.vault).await?;
    let refused = checkpoint(app, &signer)
        .await?
        .into_iter()
        .find(|(l, _)| l == log);
    let Some(newest) = app.store.latest_checkpoint(log).await? else {
        return Err(ApiError::not_found(format!(
            "audit log {log} has no entries"
        )));
    };
    let verifier =
        NoteVerifier::from_vkey(&signer.verifier_key()).map_err(|_| ApiError::internal())?;
    let mut transcript = warden_audit::export::verify_live(
        &app.store,
        log,
        &newest,
        verifier,
        signer.verifier_key(),
        now_ns(),
    )
    .await
    .map_err(export_error)?;
    if let Some((_, fault)) = refused
        && transcript.verdict == warden_tlog::verify::Verdict::Ok
    {
        transcript.verdict = warden_tlog::verify::Verdict::Failed;
        transcript.first_bad_seq = fault.seq;
        transcript.checks.push(format!(
            "FAILED: after the newest checkpoint: {}",
            fault.reason
        ));
        transcript.reason = Some(fault.reason);
    }
    Ok(transcript)
}
