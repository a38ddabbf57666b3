//! Secrets: list, write, read, history, delete/undelete/destroy and
//! resolve.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use warden_api::*;
use warden_policies::{Action, Scope};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::{Operation, Target};

pub(super) fn secret_name(key: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(key).map_err(|e| ApiError::from(e).field("key"))
}

pub(super) fn version_info(m: &warden_vault::VersionMeta) -> VersionInfo {
    VersionInfo {
        version: m.version,
        key_term: m.key_term,
        created_at: m.created_at,
        deleted_at: m.deleted_at,
        destroyed_at: m.destroyed_at,
    }
}

pub(super) async fn list_secrets(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SecretList>, ApiError> {
    let scope = scope_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "secret.list",
                Action::SecretList,
                Scope::Path(scope.clone()),
                Target::scope(&scope),
            ),
            |permit| async move {
                let rows = app.vault.list(&permit, &scope).await?;
                Ok(Json(SecretList {
                    scope: scope.to_string(),
                    secrets: rows
                        .into_iter()
                        .map(|r| SecretInfo {
                            name: r.name,
                            latest: r.latest,
                            updated_at: r.updated_at,
                            latest_deleted: r.latest_gone != 0,
                        })
                        .collect(),
                }))
            },
        )
        .await
}

pub(super) async fn put_secrets(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<PutSecrets>,
) -> Result<Json<PutResponse>, ApiError> {
    let scope = scope_arg(path)?;
    if req.values.len() > warden_types::MAX_KEYS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "at most {} secrets per write",
            warden_types::MAX_KEYS_PER_REQUEST
        ))
        .field("values"));
    }
    let mut values = Vec::with_capacity(req.values.len());
    for (k, v) in req.values {
        values.push((secret_name(&k).map_err(|e| e.field("values"))?, v.0));
    }
    let target = Target::secrets(
        &scope,
        values.iter().map(|(n, _)| n.as_str().to_owned()).collect(),
    );
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "secret.write",
                Action::SecretWrite,
                Scope::Path(scope.clone()),
                target,
            ),
            |permit| async move {
                let written = app.vault.put(&permit, &scope, values, req.cas).await?;
                Ok(Json(PutResponse {
                    written: written
                        .into_iter()
                        .map(|(name, version)| Written {
                            name: name.to_string(),
                            version,
                        })
                        .collect(),
                }))
            },
        )
        .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyQuery {
    /// The secret's name.
    #[schemars(regex(pattern = warden_types::pattern::SECRET_NAME))]
    key: String,
    /// A version (default: the latest).
    #[serde(default)]
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// The secret's name.
    #[schemars(regex(pattern = warden_types::pattern::SECRET_NAME))]
    key: String,
}

pub(super) async fn get_secret(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<SecretResponse>, ApiError> {
    let scope = scope_arg(path)?;
    let q = query_arg(q)?;
    let name = secret_name(&q.key)?;
    if q.version.is_some_and(|v| v < 1) {
        return Err(ApiError::invalid("version starts at 1").field("version"));
    }
    let target = Target::secret(&scope, &name, q.version);
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "secret.read",
                Action::SecretRead,
                Scope::Path(scope.clone()),
                target,
            ),
            |permit| async move {
                let (value, meta) = app.vault.get(&permit, &scope, &name, q.version).await?;
                Ok(Json(SecretResponse {
                    scope: scope.to_string(),
                    name: name.to_string(),
                    value: WireValue(value),
                    meta: version_info(&meta),
                }))
            },
        )
        .await
}

pub(super) async fn history(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let scope = scope_arg(path)?;
    let name = secret_name(&query_arg(q)?.key)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "secret.history",
                Action::SecretList,
                Scope::Path(scope.clone()),
                Target::secret(&scope, &name, None),
            ),
            |permit| async move {
                let versions = app.vault.history(&permit, &scope, &name).await?;
                Ok(Json(History {
                    name: name.to_string(),
                    versions: versions.iter().map(version_info).collect(),
                }))
            },
        )
        .await
}

/// Which version-state change a request asks for (a const parameter, so one
/// handler serves the three routes).
pub(super) const DELETE: u8 = 0;

pub(super) const UNDELETE: u8 = 1;

pub(super) const DESTROY: u8 = 2;

/// The body type says what the route accepts (destroy names its
/// versions: [`DestroyRequest`]).
pub(super) async fn change_versions<const CHANGE: u8, B>(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<B>,
) -> Result<Json<VersionsChanged>, ApiError>
where
    B: serde::de::DeserializeOwned + Into<VersionsRequest>,
{
    let req: VersionsRequest = req.into();
    let scope = scope_arg(path)?;
    let name = secret_name(&req.key)?;
    if req.versions.len() > 100 || req.versions.iter().any(|v| *v < 1) {
        return Err(ApiError::invalid("versions: at most 100, each at least 1").field("versions"));
    }
    let (operation, action, change) = match CHANGE {
        DELETE => ("secret.delete", Action::SecretDelete, VersionChange::Delete),
        UNDELETE => (
            "secret.undelete",
            Action::SecretDelete,
            VersionChange::Undelete,
        ),
        _ => (
            "secret.destroy",
            Action::SecretDestroy,
            VersionChange::Destroy,
        ),
    };
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                operation,
                action,
                Scope::Path(scope.clone()),
                Target::secret(&scope, &name, None),
            ),
            |permit| async move {
                let changed = app
                    .vault
                    .change_versions(&permit, &scope, &name, req.versions, change)
                    .await?;
                Ok(Json(VersionsChanged { changed }))
            },
        )
        .await
}

/// `?pod=NAME` of a resolve.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct ResolveQuery {
    /// The pod the fetching wrapper runs in, for the audit entry (a
    /// Kubernetes or local pod name: 1-253 characters of a-z, 0-9, '-' and
    /// '.').
    #[schemars(regex(pattern = warden_types::pattern::POD_NAME))]
    pod: Option<String>,
}

pub(super) async fn resolve(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<ResolveQuery>, QueryRejection>,
) -> Result<Json<Resolved>, ApiError> {
    let service = scope_arg(path)?;
    let pod = match query_arg(q)?.pod {
        Some(p) => pod_arg(caller.id(), p)?,
        None => None,
    };
    let app: &App = &app;
    let mut target = Target::secrets(&service, vec!["*".to_owned()]);
    target.pod = pod;
    // The outcome names each version served: what this caller (a pod's
    // wrapper, mostly) holds from now on.
    app.pipeline
        .run_stored_naming(
            &caller,
            Operation::new(
                "secret.resolve",
                Action::SecretRead,
                Scope::Path(service.clone()),
                target,
            ),
            |permit| async move {
                let r = app.vault.resolve(&permit, &service).await?;
                let served = warden_vault::version_labels(&r.versions);
                let resolved = Resolved {
                    service: service.to_string(),
                    versions: wire_versions(&r.versions),
                    values: r
                        .values
                        .into_iter()
                        .map(|(k, v)| (k, WireValue(v)))
                        .collect(),
                };
                Ok((Json(resolved), served))
            },
        )
        .await
}
