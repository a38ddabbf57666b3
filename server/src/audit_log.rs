//! The server's side of the tamper-evident audit log: the checkpoint
//! signing key (sealed under the root key, in memory only while unsealed),
//! the once-a-second checkpointer, and assembling export bundles and live
//! verifications from storage.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use warden_audit::checkpoint::{self, KEY_NAME};
use warden_store::Store;
use warden_tlog::bundle::{Bundle, CSV_VIEW, FORMAT, Manifest, OCSF_VIEW};
use warden_tlog::merkle::{Frontier, Hash};
use warden_tlog::note::{NoteSigner, NoteVerifier};
use warden_vault::Vault;

use crate::ApiError;
use crate::state::App;

const SIGNING_PURPOSE: &str = "audit-signing-key";
/// How often logs that grew are checkpointed.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Entries read per query when scanning a log.
const PAGE: i64 = 5000;

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

fn hash_of(bytes: &[u8]) -> Result<Hash, ApiError> {
    <Hash>::try_from(bytes).map_err(|_| ApiError::internal())
}

/// What part of a log to put in a bundle.
pub struct Range {
    /// Entries at or after this time (ns).
    pub since_ns: Option<u128>,
    /// Entries at or before this time (ns).
    pub until_ns: Option<u128>,
    /// Derived views to include.
    pub csv: bool,
    /// OCSF view.
    pub ocsf: bool,
}

fn entry_time(line: &str) -> Option<u128> {
    #[derive(serde::Deserialize)]
    struct T {
        time_ns: u128,
    }
    serde_json::from_str::<T>(line).ok().map(|t| t.time_ns)
}

/// Builds an export bundle of `log`: the entries in the time range, from
/// the first one in it to the newest checkpoint covering the last one
/// (a checkpoint is signed first, so the newest entries are covered).
pub async fn bundle(app: &App, log: &str, range: &Range) -> Result<Bundle, ApiError> {
    let signer = app.audit_keys.signer(&app.store, &app.vault).await?;
    checkpoint(app, &signer).await?;
    let Some(newest) = app.store.latest_checkpoint(log).await? else {
        return Err(ApiError::not_found(format!(
            "audit log {log} has no entries"
        )));
    };
    // Find the first entry at or after `since` and the last at or before
    // `until`, scanning in pages.
    let whole = range.since_ns.is_none() && range.until_ns.is_none();
    let (mut first, mut last) = if whole {
        (Some(0), Some(newest.size - 1))
    } else {
        (None, None)
    };
    let mut from = if whole { newest.size } else { 0 };
    while from < newest.size {
        let rows = app.store.audit_entries(log, from, PAGE).await?;
        let Some(end) = rows.last().map(|r| r.seq + 1) else {
            break;
        };
        for r in &rows {
            let Some(t) = entry_time(&r.entry) else {
                continue;
            };
            let after = range.since_ns.is_none_or(|s| t >= s);
            let before = range.until_ns.is_none_or(|u| t <= u);
            if after && before {
                first.get_or_insert(r.seq);
                last = Some(r.seq);
            }
        }
        from = end;
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ApiError::not_found(format!(
            "no entries of audit log {log} in that time range"
        )));
    };
    // End at the smallest checkpoint covering `last`.
    let cps = app.store.checkpoints(log, first + 1, newest.size).await?;
    let end = cps
        .iter()
        .map(|c| c.size)
        .find(|s| *s > last)
        .unwrap_or(newest.size);
    let prefix = app.store.audit_leaf_hashes(log, 0, first).await?;
    let mut frontier = Frontier::new();
    for h in &prefix {
        frontier
            .try_push(hash_of(h)?)
            .map_err(|_| ApiError::internal())?;
    }
    let mut entries = Vec::new();
    let mut from = first;
    while from < end {
        let rows = app
            .store
            .audit_entries(log, from, PAGE.min(end - from))
            .await?;
        let Some(next) = rows.last().map(|r| r.seq + 1) else {
            break;
        };
        for r in rows {
            entries.extend_from_slice(r.entry.as_bytes());
            entries.push(b'\n');
        }
        from = next;
    }
    let mut views = std::collections::BTreeMap::new();
    if range.csv {
        let csv = warden_tlog::export::to_csv(&entries).map_err(|_| ApiError::internal())?;
        views.insert(CSV_VIEW.to_owned(), csv);
    }
    if range.ocsf {
        let ocsf = warden_tlog::export::to_ocsf(&entries).map_err(|_| ApiError::internal())?;
        views.insert(OCSF_VIEW.to_owned(), ocsf);
    }
    let to_u64 = |v: i64| u64::try_from(v).map_err(|_| ApiError::internal());
    Ok(Bundle {
        manifest: Manifest {
            format: FORMAT.to_owned(),
            log: log.to_owned(),
            origin: checkpoint::origin(log),
            first_seq: to_u64(first)?,
            end_seq: to_u64(end)?,
            created_at_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            since_ns: range.since_ns,
            until_ns: range.until_ns,
            files: Default::default(),
        },
        entries,
        checkpoints: cps
            .into_iter()
            .filter(|c| c.size <= end)
            .map(|c| Ok((to_u64(c.size)?, c.note)))
            .collect::<Result<_, ApiError>>()?,
        keys: vec![signer.verifier_key()],
        frontier,
        views,
    })
}

/// Checks the stored log against its checkpoints with the offline
/// verifier: the whole log, as an export from the first entry would; and
/// fails if entries after the newest checkpoint cannot be vouched for.
pub async fn verify_live(
    app: &App,
    log: &str,
) -> Result<warden_tlog::verify::Transcript, ApiError> {
    let signer = app.audit_keys.signer(&app.store, &app.vault).await?;
    let refused = checkpoint(app, &signer)
        .await?
        .into_iter()
        .find(|(l, _)| l == log);
    let bundle = bundle(
        app,
        log,
        &Range {
            since_ns: None,
            until_ns: None,
            csv: false,
            ocsf: false,
        },
    )
    .await?;
    let trust = warden_tlog::verify::Trust::Key(
        NoteVerifier::from_vkey(&signer.verifier_key()).map_err(|_| ApiError::internal())?,
    );
    let mut transcript = warden_tlog::verify::verify_bundle(&bundle, &trust);
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
