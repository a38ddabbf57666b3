//! How an HTTP request enters the pipeline: [`Meta`] (the credential from
//! the `Authorization` header and the connection facts) and [`Caller`]
//! (step 1, authentication, run before any body, path or query is parsed,
//! so an anonymous caller learns nothing about validation). The pipeline
//! itself is `warden_pipeline`.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use warden_pipeline::{Credential, ErrorKind, RequestMeta, Transport};
use warden_policies::Action;

use crate::ApiError;
use crate::state::App;

/// The actions a route declares (see `routes::ROUTES`); inserted into each
/// request by the router, read by the [`Caller`] extractor. The pipeline
/// refuses to run any other action for that request.
#[derive(Debug, Clone, Copy)]
pub struct Declared(pub &'static [Action]);

/// An HTTP request's pipeline metadata.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let credential = match parts.headers.get("authorization") {
            None => Credential::None,
            Some(v) => match v.to_str() {
                Ok(h) => Credential::from_authorization(Some(h)),
                Err(_) => Credential::Malformed("malformed Authorization header"),
            },
        };
        let source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(Self(
            RequestMeta::new(credential, source_ip, Transport::Http)
                .with_user_agent(header("user-agent")),
        ))
    }
}

/// An authenticated caller (step 1 of the pipeline, as an extractor).
pub struct Caller(warden_pipeline::Caller);

impl Deref for Caller {
    type Target = warden_pipeline::Caller;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Some(Declared(declared)) = parts.extensions.get::<Declared>().copied() else {
            tracing::error!(path = %parts.uri.path(), "route without a declaration");
            return Err(ApiError::internal());
        };
        let Meta(meta) = Meta::from_request_parts(parts, app).await?;
        match app.pipeline.authenticate(meta, declared).await {
            Ok(caller) => Ok(Self(caller)),
            Err(e) if e.kind() == ErrorKind::Unauthenticated => {
                Err(ApiError::unauthenticated(format!(
                    "{}: send `Authorization: Bearer TOKEN` with a valid token",
                    e.message()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
