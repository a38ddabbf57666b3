//! The server's shared state.

use std::sync::Arc;

use warden_audit::signing::{AuditSigner, KeySealer};
use warden_audit::{Auditor, EntryMac};
use warden_pipeline::{Pipeline, Target};
use warden_store::{Alarm, PrincipalRow, Store};
use warden_vault::{Vault, VaultError};
use zeroize::Zeroizing;

use crate::ApiError;
use crate::metrics::Metrics;

/// The user `warden dev` and `operator init` create, holding Owner at the
/// root.
pub const FIRST_OWNER: &str = "root";

/// Everything a request handler can reach.
pub struct App {
    /// The vault (seal state, keys, secrets).
    pub vault: Arc<Vault>,
    /// Storage.
    pub store: Store,
    /// The request pipeline (authenticate, authorize, audit, execute).
    pub pipeline: Pipeline,
    /// MACs audit entries under their log's key (see `state::entry_mac`).
    pub entry_mac: EntryMac,
    /// Request metrics.
    pub metrics: Metrics,
    /// The audit checkpoint signer (its key in memory only while
    /// unsealed); the checkpointer holds it weakly.
    pub audit_signer: Arc<AuditSigner<VaultSealer>>,
    /// Longest lifetime of an API token (and the lifetime of one created
    /// without a TTL).
    pub max_token_ttl: std::time::Duration,
    /// The agents and the clusters they run pods on.
    pub clusters: crate::clusters::Clusters,
    /// What the shell gateway reports about itself.
    pub gateway: crate::gateway::GatewayInfo,
    /// This process's secret watches.
    pub watches: crate::routes::Watches,
}

impl App {
    /// Builds the state over a connected store.
    pub fn new(store: Store, node: &str) -> Self {
        let vault = Arc::new(Vault::new(store.clone()));
        let mac = entry_mac(&vault);
        let audit = Auditor::new(store.clone(), node, Some(mac.clone()));
        let pipeline = Pipeline::new(store.clone(), audit, vault.clone());
        let audit_signer = Arc::new(AuditSigner::new(
            store.clone(),
            VaultSealer(vault.clone()),
            mac.clone(),
        ));
        tokio::spawn(record_alarms(store.alarms(), pipeline.downgrade()));
        Self {
            pipeline,
            vault,
            entry_mac: mac,
            watches: crate::routes::Watches::start(store.clone()),
            store,
            metrics: Metrics::default(),
            audit_signer,
            max_token_ttl: crate::DEFAULT_MAX_TOKEN_TTL,
            clusters: crate::clusters::Clusters::new(),
            gateway: crate::gateway::GatewayInfo::new(node),
        }
    }

    /// Creates the first user, `user:NAME`, with the Owner role at the
    /// root, and its first API token, atomically; returns the token (shown
    /// once; only its hash is stored).
    pub async fn create_owner(&self, name: &str) -> Result<Zeroizing<String>, ApiError> {
        let id = warden_pipeline::identity::user_id(name);
        warden_pipeline::identity::parse_principal(&id)?;
        let token = warden_identity::token::generate_api_token();
        let row =
            warden_pipeline::identity::new_token_row(&id, "bootstrap owner", "api", false, {
                let ttl = i64::try_from(self.max_token_ttl.as_millis()).unwrap_or(i64::MAX);
                Some(warden_store::now_ms().saturating_add(ttl))
            })?;
        let user = PrincipalRow {
            id,
            kind: "user".to_owned(),
            org: None,
            password: None,
            totp_sealed: None,
            totp_enabled: 0,
            totp_last_step: None,
            disabled_at: None,
            created_at: warden_store::now_ms(),
        };
        self.store
            .create_owner(
                user,
                row,
                warden_identity::token::token_hash(&token).to_vec(),
            )
            .await?;
        Ok(token)
    }
}

/// Audit entries are MACed under their log's key, derived from the root key
/// (none while sealed), so the checkpointer can tell Warden's entries from
/// rows written into the database by anyone else.
pub fn entry_mac(vault: &Arc<Vault>) -> EntryMac {
    let vault = vault.clone();
    Arc::new(move |log: &str| {
        let key = vault.audit_mac_key(log)?;
        let mac: warden_audit::LogMac = Arc::new(move |text: &[u8]| key.mac(text));
        Some(mac)
    })
}

/// The vault as the audit signer's [`KeySealer`]: the checkpoint signing
/// key is sealed as a credential under the root key.
pub struct VaultSealer(pub Arc<Vault>);

impl KeySealer for VaultSealer {
    type Error = VaultError;

    fn is_sealed(&self) -> bool {
        self.0.is_sealed()
    }

    fn seal(&self, purpose: &str, subject: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.0.seal_credential(purpose, subject, plaintext)
    }

    fn open(
        &self,
        purpose: &str,
        subject: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.0.open_credential(purpose, subject, sealed)
    }
}

/// Records every integrity alarm of the store in the system log (a refused
/// row is also logged where it was read). Ends with the pipeline.
async fn record_alarms(
    mut alarms: tokio::sync::broadcast::Receiver<Alarm>,
    pipeline: warden_pipeline::WeakPipeline,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let (target, status, count) = match alarms.recv().await {
            Ok(Alarm::Tampered { table, row }) => (
                Target::named("row", table, Some(row)),
                "integrity_failure",
                None,
            ),
            Ok(Alarm::Adopted(n)) => (Target::named("row", "*", None), "adopted", Some(n)),
            Err(RecvError::Lagged(n)) => (
                Target::named("row", "*", None),
                "integrity_failure",
                Some(n),
            ),
            Err(RecvError::Closed) => return,
        };
        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        if let Err(e) = pipeline
            .record_system("integrity.rows", target, status, count)
            .await
        {
            tracing::error!(error = %e, "could not record an integrity alarm in the audit log");
        }
    }
}
