//! The narrow view of the vault the pipeline needs. The pipeline does not
//! link the vault (architecture test): it asks these questions and nothing
//! else, and the vault answers them.

use tokio::sync::watch;

/// What the pipeline asks of the key holder.
pub trait Keys: Send + Sync {
    /// Whether key material is absent from memory. While sealed, nothing
    /// authenticated runs.
    fn is_sealed(&self) -> bool;

    /// A receiver that sees `true` whenever the vault is sealed (and
    /// `false` when unsealed). Session grants end on it.
    fn sealed_changes(&self) -> watch::Receiver<bool>;

    /// HMAC-SHA256 (hex) of `data` under the audit key of `log`, derived
    /// from the root key; `None` while sealed.
    fn audit_mac(&self, log: &str, data: &[u8]) -> Option<String>;
}
