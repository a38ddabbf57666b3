//! The server's shared state.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use warden_audit::Auditor;
use warden_store::{Store, TokenRow};
use warden_vault::Vault;
use warden_vault::crypto::random_bytes;
use zeroize::Zeroizing;

use crate::ApiError;
use crate::metrics::Metrics;
use crate::pipeline::{BOOTSTRAP_PRINCIPAL, token_hash};

/// Everything a request handler can reach.
pub struct App {
    /// The vault (seal state, keys, secrets).
    pub vault: Vault,
    /// Storage.
    pub store: Store,
    /// The audit trail.
    pub audit: Auditor,
    /// Request metrics.
    pub metrics: Metrics,
}

impl App {
    /// Builds the state over a connected store.
    pub fn new(store: Store, node: &str) -> Self {
        Self {
            vault: Vault::new(store.clone()),
            audit: Auditor::new(store.clone(), node),
            store,
            metrics: Metrics::default(),
        }
    }

    /// Creates a new bootstrap-owner API token and returns it (shown once;
    /// only its hash is stored).
    pub async fn create_root_token(&self) -> Result<Zeroizing<String>, ApiError> {
        let secret = Zeroizing::new(random_bytes::<32>().map_err(|_| ApiError::internal())?);
        let id: [u8; 6] = random_bytes().map_err(|_| ApiError::internal())?;
        let mut token = Zeroizing::new(String::with_capacity(4 + 43));
        token.push_str("wdn_");
        URL_SAFE_NO_PAD.encode_string(secret.as_ref(), &mut token);
        let row = TokenRow {
            id: format!("tok_{}", hex_lower(&id)),
            principal: BOOTSTRAP_PRINCIPAL.to_owned(),
            name: "bootstrap owner".to_owned(),
            created_at: warden_store::now_ms(),
            expires_at: None,
            revoked_at: None,
        };
        self.store.insert_token(row, token_hash(&token)).await?;
        Ok(token)
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
