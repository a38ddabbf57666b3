//! The pipeline's error: a kind (whose fault, and what a transport should
//! answer), a stable machine code, a message safe to show the caller, and
//! optionally the input field at fault.
//!
//! Each front-end maps [`ErrorKind`] to its own answer in exactly one place:
//! an HTTP status (`server/src/error.rs`), an SSH disconnect or channel
//! message (the gateway), an exit code (the CLI maps the HTTP status).

use std::fmt;

use warden_runtime::RuntimeError;
use warden_store::StoreError;
use warden_types::{Fault, NameError};

/// What went wrong, as far as a transport needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or out of range (the caller's fault).
    Invalid,
    /// No valid credential.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    /// The thing named does not exist (or is hidden from this caller).
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The thing named existed but is deleted or destroyed.
    Gone,
    /// The input is well-formed but cannot be processed (a bad reference).
    Unprocessable,
    /// The input is larger than allowed.
    TooLarge,
    /// Too many attempts; try again after the given number of seconds.
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_secs: u32,
    },
    /// The service cannot do this now (sealed, audit log or storage
    /// unavailable); not the caller's fault.
    Unavailable,
    /// A bug or an integrity failure on our side; details are in the log.
    Internal,
}

impl ErrorKind {
    /// Whose fault it is.
    pub fn fault(self) -> Fault {
        match self {
            Self::Unavailable => Fault::Upstream,
            Self::Internal => Fault::Internal,
            _ => Fault::Client,
        }
    }
}

/// A failed operation, as the pipeline reports it to a front-end.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl Error {
    /// An error of `kind` with a machine `code` and a caller-safe message.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the input field at fault.
    pub fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    /// `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "invalid_request", message)
    }

    /// `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, "unauthenticated", message)
    }

    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", message)
    }

    /// `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, "conflict", message)
    }

    /// `rate_limited`, retry after `secs`.
    pub fn rate_limited(secs: u32, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::RateLimited {
                retry_after_secs: secs.max(1),
            },
            "rate_limited",
            message,
        )
    }

    /// `audit_unavailable`: the intent could not be recorded, so the
    /// operation did not run.
    pub fn audit_unavailable() -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "audit_unavailable",
            "the audit log cannot record this operation, so it was not performed",
        )
    }

    /// `sealed`: nothing authenticated runs while the vault is sealed.
    pub fn sealed() -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "sealed",
            "the vault is sealed; unseal it with `warden operator unseal`",
        )
    }

    /// `internal` (details go to the server log, not the caller).
    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "internal",
            "internal error (details are in the server log)",
        )
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The machine code (also the audit outcome status).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The input field at fault, if any.
    pub fn field_name(&self) -> Option<&'static str> {
        self.field
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Self::new(ErrorKind::Invalid, "invalid_name", e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        let (kind, code) = match &e {
            StoreError::IntentNotRecorded => return Self::audit_unavailable(),
            StoreError::Sealed => return Self::sealed(),
            StoreError::NotFound(_) => (ErrorKind::NotFound, "not_found"),
            StoreError::Conflict(_) | StoreError::Refused(_) => (ErrorKind::Conflict, "conflict"),
            StoreError::CasMismatch { .. } => (ErrorKind::Conflict, "cas_mismatch"),
            _ => match e.fault() {
                Fault::Upstream => (ErrorKind::Unavailable, "storage_unavailable"),
                Fault::Client => (ErrorKind::Invalid, "invalid_request"),
                Fault::Internal => (ErrorKind::Internal, "internal"),
            },
        };
        Self::logged(kind, code, &e)
    }
}

/// What a runtime failure means for the caller, on every entry point.
impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        let (kind, code) = match &e {
            RuntimeError::InvalidSpec { .. }
            | RuntimeError::InvalidName(_)
            | RuntimeError::InvalidRequest(_) => (ErrorKind::Invalid, "invalid_request"),
            RuntimeError::ServiceNotFound(_) | RuntimeError::PodNotFound(_) => {
                (ErrorKind::NotFound, "not_found")
            }
            RuntimeError::PodNotRunning { .. } | RuntimeError::RolloutStalled { .. } => {
                (ErrorKind::Conflict, "conflict")
            }
            RuntimeError::ExecFailed { .. } | RuntimeError::Unsupported(_) => {
                (ErrorKind::Unprocessable, "unprocessable")
            }
            RuntimeError::Credential(_) | RuntimeError::Unavailable(_) => {
                (ErrorKind::Unavailable, "runtime_unavailable")
            }
            RuntimeError::Agent(_)
            | RuntimeError::StateLocked(_)
            | RuntimeError::Io { .. }
            | RuntimeError::Helper(_) => (ErrorKind::Internal, "internal"),
        };
        Self::logged(kind, code, &e)
    }
}

impl Error {
    /// An error from a lower layer: failures an operator must look at are
    /// logged here (with the details), and the caller sees a generic
    /// message for them; client faults keep their own words.
    pub fn logged(kind: ErrorKind, code: &'static str, e: &dyn fmt::Display) -> Self {
        // States (sealed, not initialized) are not faults; log only what an
        // operator must look at.
        if matches!(kind, ErrorKind::Internal) || code == "storage_unavailable" {
            tracing::error!(error = %e, "request failed");
        }
        match kind {
            ErrorKind::Internal => Self::internal(),
            _ => Self::new(kind, code, e.to_string()),
        }
    }
}
