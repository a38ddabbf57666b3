//! Health, readiness, metrics, the OpenAPI document, and the seal:
//! status, init, unseal and seal.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use warden_api::*;
use warden_policies::{Action, Scope};

use super::*;
use crate::ApiError;
use crate::caller::{Caller, Meta};
use crate::state::App;
use crate::state::FIRST_OWNER;
use warden_pipeline::throttle::{network, retry_secs};
use warden_pipeline::{Operation, Target};
use warden_vault::VaultError;

pub(super) fn sys_status_out(s: warden_vault::SealStatus) -> SysStatus {
    SysStatus {
        initialized: s.initialized,
        sealed: s.sealed,
        method: s.method.map(str::to_owned),
        threshold: s.threshold,
        progress: s.progress,
        nonce: None,
    }
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn readyz(State(app): State<AppState>) -> Response {
    let database = app.store.ping().await.is_ok();
    let sealed = app.vault.is_sealed();
    let status = if database && !sealed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready: status == StatusCode::OK,
        sealed,
        database: if database { "ok" } else { "unreachable" }.to_owned(),
    };
    (status, Json(body)).into_response()
}

pub(super) async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(app.vault.is_sealed()),
    )
        .into_response()
}

pub(super) async fn openapi(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(app.max_token_ttl.as_secs()))
}

pub(super) async fn sys_status(State(app): State<AppState>) -> Result<Json<SysStatus>, ApiError> {
    Ok(Json(sys_status_out(app.vault.status().await?)))
}

pub(super) async fn gateway_status(State(app): State<AppState>) -> Json<GatewayStatus> {
    Json(GatewayStatus {
        ssh_address: app.gateway.ssh_addr.get().map(ToString::to_string),
        ssh_host_key_fingerprint: app.gateway.fingerprint.get().cloned(),
    })
}

pub(super) async fn sys_init(
    State(app): State<AppState>,
    meta: Meta,
    Body(req): Body<InitRequest, PUBLIC_BODY_LIMIT>,
) -> Result<(StatusCode, Json<InitResponse>), ApiError> {
    let method = match (
        req.method.as_str(),
        req.passphrase,
        req.shares,
        req.threshold,
    ) {
        ("passphrase", Some(p), None, None) => InitMethod::Passphrase {
            passphrase: zeroize::Zeroizing::new(p.0.expose().to_owned()),
            argon2: warden_vault::crypto::Argon2Params::VAULT,
        },
        ("shamir", None, Some(shares), Some(threshold)) => InitMethod::Shamir { shares, threshold },
        _ => {
            return Err(ApiError::invalid(
                "method is `passphrase` (with passphrase) or `shamir` (with shares and threshold)",
            )
            .field("method"));
        }
    };
    // Anyone can call init; on an initialized vault it is refused before it
    // is audited in full, and counted with other anonymous refusals.
    if app.vault.status().await?.initialized {
        app.pipeline
            .record_failure(
                &meta.0,
                "sys.init",
                None,
                Target::vault(),
                "already_initialized",
            )
            .await?;
        return Err(VaultError::AlreadyInitialized.into());
    }
    app.pipeline
        .run_public(&meta.0, "sys.init", None, async {
            let (out, token) = app
                .vault
                .init_sealed(method, || app.create_owner(FIRST_OWNER))
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(InitResponse {
                    root_token: wire(&token)?,
                    shares: out
                        .shares
                        .iter()
                        .map(|s| wire(s))
                        .collect::<Result<_, _>>()?,
                }),
            ))
        })
        .await
}

pub(super) async fn sys_unseal(
    State(app): State<AppState>,
    meta: Meta,
    Body(req): Body<UnsealRequest, PUBLIC_BODY_LIMIT>,
) -> Result<Json<SysStatus>, ApiError> {
    if req.passphrase.is_some() == req.share.is_some() {
        return Err(ApiError::invalid("send exactly one of passphrase or share"));
    }
    let throttle = &app.pipeline.throttles().unseal_source;
    let source = network(meta.0.source_ip.as_deref().unwrap_or_default());
    if let Err(wait) = throttle.check(&source) {
        app.pipeline
            .record_failure(&meta.0, "sys.unseal", None, Target::vault(), "rate_limited")
            .await?;
        return Err(warden_pipeline::Error::rate_limited(
            retry_secs(wait),
            format!(
                "too many failed unseal attempts from your network; retry in {} s",
                retry_secs(wait)
            ),
        )
        .into());
    }
    // Unsealed already: nothing is derived or changed; the request is
    // checked as it would be while sealed, and answered with the status,
    // counted with other anonymous no-ops rather than audited in full.
    if !app.vault.is_sealed() {
        app.vault
            .check_unseal(req.share.as_ref().map(|s| s.0.expose()))
            .await?;
        let status = app.vault.status().await?;
        app.pipeline
            .record_failure(
                &meta.0,
                "sys.unseal",
                None,
                Target::vault(),
                "unsealed_already",
            )
            .await?;
        return Ok(Json(sys_status_out(status)));
    }
    app.pipeline
        .run_public(&meta.0, "sys.unseal", None, async {
            let result = match (req.passphrase, req.share) {
                (Some(p), None) => app
                    .vault
                    .unseal_passphrase(p.0.expose())
                    .await
                    .map(|s| (s, None)),
                (None, Some(s)) => {
                    app.vault
                        .unseal_share(s.0.expose(), req.nonce.as_deref())
                        .await
                }
                _ => return Err(ApiError::invalid("send exactly one of passphrase or share")),
            };
            match result {
                Ok((status, nonce)) => {
                    if !status.sealed {
                        throttle.success(&source);
                    }
                    Ok(Json(SysStatus {
                        nonce,
                        ..sys_status_out(status)
                    }))
                }
                Err(e) => {
                    // A busy refusal counts too: it is how a flood looks.
                    if matches!(
                        e,
                        VaultError::BadUnsealKey | VaultError::Invalid(_) | VaultError::Busy
                    ) {
                        throttle.failure(&source);
                    }
                    Err(e.into())
                }
            }
        })
        .await
}

pub(super) async fn sys_seal(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<SysStatus>, ApiError> {
    let app: &App = &app;
    app.pipeline
        .run(
            &caller,
            Operation::new("sys.seal", Action::SysSeal, Scope::Root, Target::vault()),
            |permit| async move {
                app.vault.seal(&permit)?;
                app.audit_signer.forget();
                Ok(Json(sys_status_out(app.vault.status().await?)))
            },
        )
        .await
}
