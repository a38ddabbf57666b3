//! Warden's vocabulary: validated names and scope paths, secret values and the
//! fault classification every error carries.
//!
//! This crate owns parsing at the edge ("parse, don't validate"): a string from
//! the network becomes a [`ScopePath`] or [`SecretName`] here, and the rest of
//! Warden never re-checks it.
//!
//! Architecture invariant: no I/O, no async runtime, no crypto. Every other
//! crate may depend on this one; it depends on nothing of Warden's.

mod names;
mod secret;

pub use names::{EnvMode, NameError, ScopeKind, ScopePath, SecretName};
pub use secret::{SecretValue, ValueError};

/// Largest secret value accepted, in bytes (64 KiB). Documented in the README.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one write request may carry.
pub const MAX_KEYS_PER_REQUEST: usize = 100;
/// Versions kept per secret unless the environment says otherwise.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// Whose fault an error is. Every crate's error maps to one of these, and the
/// server maps a fault to an HTTP status (and the CLI to an exit code) in one
/// place each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something wrong; retrying the same request will fail.
    Client,
    /// Warden itself failed (a bug or a local resource problem).
    Internal,
    /// A dependency (database, Kubernetes) failed; retrying may succeed.
    Upstream,
}
