//! The one place where errors become HTTP answers.
//!
//! Every failure leaves the server as `{"error":{"code","message"}}` with a
//! status chosen here from the error's kind; messages never carry secret
//! values (the errors they come from are built without them).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warden_api::{ErrorBody, ErrorDetail};
use warden_store::StoreError;
use warden_types::{Fault, NameError};
use warden_vault::VaultError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the request field at fault.
    pub fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `audit_unavailable`: the intent could not be recorded, so the
    /// operation did not run.
    pub fn audit_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log cannot record this operation, so it was not performed",
        )
    }

    /// 500 `internal` (details go to the server log, not the caller).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine code (also the audit outcome status).
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        VaultError::from(e).into()
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            VaultError::Store(StoreError::IntentNotRecorded) => {
                return Self::audit_unavailable();
            }
            VaultError::Sealed => (S::SERVICE_UNAVAILABLE, "sealed"),
            VaultError::NotInitialized => (S::SERVICE_UNAVAILABLE, "not_initialized"),
            VaultError::AlreadyInitialized => (S::CONFLICT, "already_initialized"),
            VaultError::BadUnsealKey => (S::BAD_REQUEST, "bad_unseal_key"),
            VaultError::Invalid(_) => (S::BAD_REQUEST, "invalid_request"),
            VaultError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            VaultError::Gone(_) => (S::GONE, "gone"),
            VaultError::Conflict(_) | VaultError::Refused(_) => (S::CONFLICT, "conflict"),
            VaultError::CasMismatch { .. } => (S::CONFLICT, "cas_mismatch"),
            VaultError::Reference(_) => (S::UNPROCESSABLE_ENTITY, "bad_reference"),
            VaultError::PermitMismatch
            | VaultError::Integrity(_)
            | VaultError::Crypto(_)
            | VaultError::Store(_) => match e.fault() {
                Fault::Upstream => (S::SERVICE_UNAVAILABLE, "storage_unavailable"),
                _ => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        // Sealed and not-initialized are states, not faults; log only what
        // an operator must look at.
        if matches!(code, "internal" | "storage_unavailable") {
            tracing::error!(error = %e, "request failed");
        }
        let message = if status == S::INTERNAL_SERVER_ERROR {
            "internal error (details are in the server log)".to_owned()
        } else {
            e.to_string()
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field.map(str::to_owned),
            },
        };
        (self.status, Json(body)).into_response()
    }
}
