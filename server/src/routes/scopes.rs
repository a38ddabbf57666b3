//! Organizations, projects, environments and services.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_policies::{Action, Decision, Resource, Scope, authorize};
use warden_types::{EnvMode, ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::{Operation, Target};

pub(super) fn scope_out(r: warden_store::ScopeRow) -> warden_api::Scope {
    warden_api::Scope {
        path: r.path,
        kind: r.kind,
        mode: r.mode,
        max_versions: r.max_versions,
        created_at: r.created_at,
    }
}

pub(super) async fn list_orgs(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<ScopeList>, ApiError> {
    let app: &App = &app;
    // Everyone may ask; the answer holds only the organizations where the
    // caller may read scope metadata (all of them for a root binding).
    app.pipeline
        .run_self(&caller, "env.read", async {
            if app.vault.is_sealed() {
                return Err(warden_vault::VaultError::Sealed.into());
            }
            let principal = &caller.who().principal;
            let rows = app.store.child_scopes(None).await?;
            Ok(Json(ScopeList {
                scopes: rows
                    .into_iter()
                    .filter(|r| {
                        ScopePath::parse(&r.path).is_ok_and(|p| {
                            matches!(
                                authorize(principal, Action::EnvRead, &Resource::at(p, None)),
                                Decision::Allow(_)
                            )
                        })
                    })
                    .map(scope_out)
                    .collect(),
            }))
        })
        .await
}

pub(super) async fn list_children(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ScopeList>, ApiError> {
    let parent = scope_arg(path)?;
    let app: &App = &app;
    let principal = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "scope.list",
                Action::EnvRead,
                Scope::Path(parent.clone()),
                Target::scope(&parent),
            ),
            |permit| async move {
                let rows = app.vault.list_scopes(&permit, &parent).await?;
                let mut scopes = Vec::with_capacity(rows.len());
                for row in rows {
                    let Ok(path) = ScopePath::parse(&row.path) else {
                        continue;
                    };
                    // A deny rule below the parent hides the child.
                    let resource = app
                        .pipeline
                        .identity()
                        .resource(&app.store, Scope::Path(path))
                        .await?;
                    if matches!(
                        authorize(principal, Action::EnvRead, &resource),
                        Decision::Allow(_)
                    ) {
                        scopes.push(scope_out(row));
                    }
                }
                Ok(Json(ScopeList { scopes }))
            },
        )
        .await
}

pub(super) async fn create_scope(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateScope>,
) -> Result<(StatusCode, Json<warden_api::Scope>), ApiError> {
    let kind = match req.kind.as_str() {
        "organization" => ScopeKind::Organization,
        "project" => ScopeKind::Project,
        "environment" => ScopeKind::Environment,
        "service" => ScopeKind::Service,
        _ => {
            return Err(
                ApiError::invalid("kind is organization, project, environment or service")
                    .field("kind"),
            );
        }
    };
    let path =
        ScopePath::parse_kind(&req.path, kind).map_err(|e| ApiError::from(e).field("path"))?;
    if path.org() == warden_audit::SYSTEM_LOG {
        return Err(ApiError::from(warden_pipeline::Error::conflict(
            "`system` is taken: it names the installation's own audit log",
        ))
        .field("path"));
    }
    let mode = req
        .mode
        .as_deref()
        .map(str::parse::<EnvMode>)
        .transpose()
        .map_err(|e| ApiError::from(e).field("mode"))?;
    let resource = path.parent().map_or(Scope::Root, Scope::Path);
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "scope.create",
                Action::EnvManage,
                resource,
                Target::scope(&path),
            ),
            |permit| async move {
                app.vault
                    .create_scope(&permit, &path, mode, req.max_versions)
                    .await?;
                let row = app
                    .store
                    .scope(path.as_str())
                    .await?
                    .ok_or_else(ApiError::internal)?;
                Ok((StatusCode::CREATED, Json(scope_out(row))))
            },
        )
        .await
}
