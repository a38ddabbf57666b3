//! A caller's SSH public keys (the gateway authenticates with them).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use warden_api::*;

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_store::SshKeyRow;

use super::auth::own_row;

pub(super) fn ssh_info(k: SshKeyRow) -> SshKeyInfo {
    SshKeyInfo {
        fingerprint: k.fingerprint,
        principal: k.principal,
        algorithm: k.algorithm,
        public_key: k.public_key,
        comment: k.comment,
        created_at: k.created_at,
    }
}

pub(super) async fn add_ssh_key(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<SshKeyAdd>,
) -> Result<(StatusCode, Json<SshKeyInfo>), ApiError> {
    let key = warden_identity::ssh::parse_public_key(&req.public_key)
        .map_err(|e| ApiError::invalid(e.to_string()).field("public_key"))?;
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "ssh_key.add", async {
            own_row(app, &caller).await?;
            let row = SshKeyRow {
                fingerprint: key.fingerprint,
                principal: caller.id().to_owned(),
                algorithm: key.algorithm,
                public_key: key.openssh,
                comment: key.comment,
                created_at: warden_store::now_ms(),
            };
            app.store.add_ssh_key(row.clone()).await?;
            Ok((StatusCode::CREATED, Json(ssh_info(row))))
        })
        .await
}

pub(super) async fn list_ssh_keys(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<SshKeyList>, ApiError> {
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "ssh_key.list", async {
            let rows = app.store.ssh_keys(caller.id()).await?;
            Ok(Json(SshKeyList {
                keys: rows.into_iter().map(ssh_info).collect(),
            }))
        })
        .await
}

/// `POST /api/v1/ssh-keys/remove`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Fingerprint {
    /// `SHA256:` and the unpadded base64 of the key's SHA-256.
    #[schemars(regex(pattern = r"^SHA256:[A-Za-z0-9+/]{43}$"))]
    fingerprint: String,
}

pub(super) async fn remove_ssh_key(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<Fingerprint>,
) -> Result<StatusCode, ApiError> {
    if !req.fingerprint.starts_with("SHA256:") || req.fingerprint.len() > 64 {
        return Err(
            ApiError::invalid("fingerprints look like SHA256:... (`warden ssh-key list`)")
                .field("fingerprint"),
        );
    }
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "ssh_key.remove", async {
            if app
                .store
                .remove_ssh_key(caller.id(), &req.fingerprint)
                .await?
            {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(ApiError::not_found(format!(
                    "SSH key {} not found",
                    req.fingerprint
                )))
            }
        })
        .await
}
