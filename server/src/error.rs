//! The one place where errors become HTTP answers.
//!
//! Every failure leaves the server as `{"error":{"code","message"}}` with a
//! status chosen here from the pipeline error's kind; messages never carry
//! secret values (the errors they come from are built without them).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use warden_api::{ErrorBody, ErrorDetail};
use warden_audit::export::ExportError;
use warden_audit::signing::SigningError;
use warden_audit::tiles::TileError;
use warden_pipeline::{Error, ErrorKind, OpError};
use warden_runtime::RuntimeError;
use warden_store::StoreError;
use warden_types::NameError;
use warden_vault::VaultError;

/// An error answer: a pipeline error, or one of the few that exist only in
/// HTTP (wrong method, wrong media type).
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    /// Set only for HTTP-only errors.
    http_status: Option<StatusCode>,
}

/// The HTTP status of each pipeline error kind.
fn status_of(kind: ErrorKind) -> StatusCode {
    use StatusCode as S;
    match kind {
        ErrorKind::Invalid => S::BAD_REQUEST,
        ErrorKind::Unauthenticated => S::UNAUTHORIZED,
        ErrorKind::Forbidden => S::FORBIDDEN,
        ErrorKind::NotFound => S::NOT_FOUND,
        ErrorKind::Conflict => S::CONFLICT,
        ErrorKind::Gone => S::GONE,
        ErrorKind::Unprocessable => S::UNPROCESSABLE_ENTITY,
        ErrorKind::TooLarge => S::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited { .. } => S::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => S::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => S::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An HTTP-only error with an explicit status and code.
    pub fn http(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            error: Error::new(ErrorKind::Invalid, code, message),
            http_status: Some(status),
        }
    }

    /// Names the request field at fault.
    pub fn field(mut self, field: &'static str) -> Self {
        self.error = self.error.field(field);
        self
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        self.error.message()
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::invalid(message).into()
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::unauthenticated(message).into()
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::forbidden(message).into()
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::not_found(message).into()
    }

    /// 500 `internal` (details go to the server log, not the caller).
    pub fn internal() -> Self {
        Error::internal().into()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.http_status
            .unwrap_or_else(|| status_of(self.error.kind()))
    }

    /// The pipeline error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl OpError for ApiError {
    fn code(&self) -> &'static str {
        self.error.code()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self {
            error,
            http_status: None,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        Error::from(e).into()
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Error::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Error::from(e).into()
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        Error::from(e).into()
    }
}

/// The checkpoint signer's failures: sealed as the vault's, storage and
/// vault failures as theirs, a log without entries as not found.
impl From<SigningError<VaultError>> for ApiError {
    fn from(e: SigningError<VaultError>) -> Self {
        match e {
            SigningError::Sealed => VaultError::Sealed.into(),
            SigningError::Sealer(e) => e.into(),
            SigningError::BadKey(_) => Self::internal(),
            SigningError::Store(e) => e.into(),
            SigningError::NoEntries(_) => Self::not_found(e.to_string()),
            SigningError::Export(e) => e.into(),
        }
    }
}

/// An export or live verification that failed: a log that cannot be put in
/// a bundle is logged, and an internal error.
impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Store(e) => e.into(),
            ExportError::Tiles(e) => e.into(),
            ExportError::NotFound(what) => Self::not_found(what),
            other => {
                tracing::error!(error = %other, "audit export failed");
                Self::internal()
            }
        }
    }
}

/// A proof or frontier that stored tiles could not give: tiles that do not
/// match the signed root are logged as possible tampering, and an internal
/// error.
impl From<TileError> for ApiError {
    fn from(e: TileError) -> Self {
        match e {
            TileError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "audit proof failed: possible tampering");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match self.error.kind() {
            ErrorKind::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error.code().to_owned(),
                message: self.error.message().to_owned(),
                field: self.error.field_name().map(str::to_owned),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
