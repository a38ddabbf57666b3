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
pub mod pattern;
mod secret;

pub use names::{EnvMode, NameError, ScopeKind, ScopePath, SecretName};
pub use secret::{SecretValue, ValueError};

/// Whether `s` is a pod name a watching wrapper may report: 1-253
/// characters of a-z, 0-9, '-' and '.', the first a letter or digit (a
/// local pod's name, or a Kubernetes pod's, a DNS subdomain).
pub fn is_pod_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=253).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
}

/// Largest secret value accepted, in bytes (64 KiB). Documented in the README.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one write request may carry.
pub const MAX_KEYS_PER_REQUEST: usize = 100;
/// Most distinct keys one scope (project, environment or service) may hold,
/// deleted and destroyed ones included (their rows and history stay). So a
/// service's effective set has at most three times this many keys.
pub const MAX_KEYS_PER_SCOPE: usize = 1_000;
/// Longest chain of `${NAME}` references one value may follow (`A` refers to
/// `B`, which refers to `C`, ...: depth 2).
pub const MAX_REFERENCE_DEPTH: usize = 64;
/// Most `${NAME}` references one resolution may expand, over all values.
pub const MAX_REFERENCE_EXPANSIONS: usize = 100_000;
/// Most bytes one resolution may copy in through references, over all
/// values (the request body limit): a few small values referencing a large
/// one cannot make a resolve allocate hundreds of megabytes. Literal text
/// does not count; it is bounded by what was stored.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;
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
