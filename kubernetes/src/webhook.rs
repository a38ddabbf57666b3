//! The admission webhook's HTTP surface (served over TLS by `warden
//! injector webhook`): `POST /mutate` takes an `AdmissionReview` and answers
//! [`crate::admission::review`]'s verdict; `GET /healthz` answers `ok`.
//!
//! The edge: a body must be `application/json` and at most
//! [`MAX_REVIEW_BYTES`] (a larger `Content-Length` is refused before the
//! body is read, a body without one as soon as it passes the limit) and
//! arrive within [`BODY_TIMEOUT`]; errors are `{"error":{"code","message"}}`
//! with a 4xx. The API server treats any answer but a 200 with a review as
//! the webhook failing, and applies `failurePolicy`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admission::{Injection, MAX_REVIEW_BYTES, ReviewError, review};

/// How long a review's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's routes.
pub fn router(injection: Arc<Injection>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route: POST /mutate or GET /healthz",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(injection)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn mutate(State(injection): State<Arc<Injection>>, req: Request) -> Response {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "an AdmissionReview is sent as Content-Type: application/json",
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REVIEW_BYTES as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, &())).await {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large();
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the request body could not be read",
            );
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body did not arrive in time",
            );
        }
    };
    match review(&body, &injection) {
        Ok(answer) => {
            let mut resp = answer.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(ReviewError::TooLarge) => too_large(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ReviewError::TooLarge.code(),
        &ReviewError::TooLarge.to_string(),
    )
}
