//! The vault: Warden's key hierarchy and its secrets.
//!
//! Owns the seal state (a root key that exists in memory only while
//! unsealed), the per-organization keys (random 256-bit key and salt per key
//! term, wrapped by the root key), AES-256-GCM envelopes bound to their
//! organization, scope, name, version and term, rotation and rewrap, and the
//! secret operations (write, read, list, history, delete, undelete, destroy,
//! resolve). See SECURITY.md for the key hierarchy.
//!
//! Every operation that touches a secret or a key takes a
//! [`warden_pipeline::Permit`] and checks that it covers the operation, so an
//! unauthorized call does not type-check and a mismatched permit is refused.
//!
//! Architecture invariants: plaintext lives only in zeroize-on-drop types
//! ([`warden_types::SecretValue`], `Zeroizing`); storage receives only
//! envelopes and wrapped keys; no error message carries a value. This crate
//! does no HTTP and no audit (the server's pipeline audits before calling in).

pub mod crypto;
mod keyring;
pub mod resolve;
mod service;
pub mod unseal;

pub use keyring::{AuditMacKey, BLOCK, ROTATE_AT, RecordingKey};
pub use service::*;
pub use warden_store::VersionChange;

use warden_store::StoreError;
use warden_types::Fault;

/// The context fields bound into a secret envelope's AAD.
pub fn secret_context<'a>(
    org: &'a str,
    scope: &'a str,
    name: &'a str,
    version_be: &'a [u8; 8],
) -> [&'a [u8]; 4] {
    [
        org.as_bytes(),
        scope.as_bytes(),
        name.as_bytes(),
        version_be,
    ]
}

/// What a vault operation can fail with. Messages name keys, scopes and
/// versions, never values.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault is sealed (or not yet initialized): no key material is in
    /// memory.
    #[error("the vault is sealed; unseal it with `warden operator unseal`")]
    Sealed,
    /// `init` on a vault that has a root key already.
    #[error("the vault is already initialized")]
    AlreadyInitialized,
    /// The operation needs an initialized vault.
    #[error("the vault is not initialized; run `warden operator init`")]
    NotInitialized,
    /// The passphrase, shares or key file do not open the root key.
    #[error("unseal failed: the passphrase, shares or key do not match this vault")]
    BadUnsealKey,
    /// Too many unseal attempts are being worked on; retry shortly.
    #[error("too many unseal attempts in progress; retry shortly")]
    Busy,
    /// A request is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The scope, secret or version does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The version exists but was deleted or destroyed.
    #[error("{0}")]
    Gone(String),
    /// The scope exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// Refused because it would break an invariant (says which).
    #[error("{0}")]
    Refused(String),
    /// Compare-and-set failed.
    #[error("check-and-set failed for {name}: expected version {expected}, current is {current}")]
    CasMismatch {
        /// Secret name.
        name: String,
        /// Expected version.
        expected: i64,
        /// Current version.
        current: i64,
    },
    /// Interpolation failed (cycle, dangling or malformed reference).
    #[error(transparent)]
    Reference(#[from] resolve::ResolveError),
    /// The permit passed does not cover the operation (a bug in the caller).
    #[error("internal error: authorization proof does not match the operation")]
    PermitMismatch,
    /// A stored envelope failed to open: wrong key, corruption or tampering.
    #[error("integrity failure: {0}")]
    Integrity(String),
    /// A primitive failed (random generator, key derivation).
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] crypto::CryptoError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Sealed => Self::Sealed,
            StoreError::Refused(why) => Self::Refused(why),
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::CasMismatch {
                name,
                expected,
                current,
            } => Self::CasMismatch {
                name,
                expected,
                current,
            },
            other => Self::Store(other),
        }
    }
}

/// The pipeline's view of a vault failure: its kind (what a front-end
/// answers) and code. Failures an operator must look at are logged here and
/// reach the caller as a generic message.
impl From<VaultError> for warden_pipeline::Error {
    fn from(e: VaultError) -> Self {
        use warden_pipeline::{Error, ErrorKind as K};
        let (kind, code) = match &e {
            VaultError::Store(s) => return s.clone().into(),
            VaultError::Sealed => return Error::sealed(),
            VaultError::NotInitialized => (K::Unavailable, "not_initialized"),
            VaultError::AlreadyInitialized => (K::Conflict, "already_initialized"),
            VaultError::BadUnsealKey => (K::Invalid, "bad_unseal_key"),
            VaultError::Busy => return Error::rate_limited(1, e.to_string()),
            VaultError::Invalid(_) => (K::Invalid, "invalid_request"),
            VaultError::NotFound(_) => (K::NotFound, "not_found"),
            VaultError::Gone(_) => (K::Gone, "gone"),
            VaultError::Conflict(_) | VaultError::Refused(_) => (K::Conflict, "conflict"),
            VaultError::CasMismatch { .. } => (K::Conflict, "cas_mismatch"),
            VaultError::Reference(_) => (K::Unprocessable, "bad_reference"),
            VaultError::PermitMismatch | VaultError::Integrity(_) | VaultError::Crypto(_) => {
                (K::Internal, "internal")
            }
        };
        Error::logged(kind, code, &e)
    }
}

/// The narrow view the request pipeline has of the vault.
impl warden_pipeline::Keys for Vault {
    fn is_sealed(&self) -> bool {
        Vault::is_sealed(self)
    }

    fn sealed_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        Vault::sealed_changes(self)
    }

    fn audit_mac(&self, log: &str, data: &[u8]) -> Option<String> {
        Vault::audit_mac(self, log, data)
    }
}

impl VaultError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Invalid(_)
            | Self::NotFound(_)
            | Self::Gone(_)
            | Self::Conflict(_)
            | Self::Refused(_)
            | Self::CasMismatch { .. }
            | Self::Reference(_)
            | Self::BadUnsealKey
            | Self::Busy
            | Self::AlreadyInitialized
            | Self::NotInitialized => Fault::Client,
            Self::Sealed => Fault::Upstream,
            Self::PermitMismatch | Self::Integrity(_) | Self::Crypto(_) => Fault::Internal,
            Self::Store(e) => e.fault(),
        }
    }
}
