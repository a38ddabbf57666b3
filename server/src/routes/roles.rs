//! Built-in and custom roles.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_policies::{Action, Scope};
use warden_types::ScopePath;

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::{Operation, Target};
use warden_policies::{Role, builtin_role, builtin_roles, may_apply_role, may_delete_role};
use warden_store::RoleRow;

use super::manage;

/// Largest role file accepted.
pub(super) const MAX_ROLE_BYTES: usize = 64 * 1024;

/// `ORG` and role `NAME` from a `/roles/{org}/{name}` path.
pub(super) fn role_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ScopePath, String), ApiError> {
    let (org, name) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
    let org = org_param(&org)?;
    name_arg(&name, "name")?;
    Ok((org, name))
}

pub(super) fn role_info(role: &Role, org: Option<&str>) -> RoleInfo {
    RoleInfo {
        name: role.name().to_owned(),
        org: org.map(str::to_owned),
        builtin: org.is_none(),
        description: role.description().to_owned(),
        source: role.source().to_owned(),
    }
}

pub(super) async fn list_roles(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoleList>, ApiError> {
    let org = org_param(&path_arg(path)?)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "role.list",
                Action::EnvRead,
                Scope::Path(org.clone()),
                Target::scope(&org),
            ),
            |_permit| async move {
                let mut roles: Vec<RoleInfo> =
                    builtin_roles().iter().map(|r| role_info(r, None)).collect();
                for row in app.store.roles(org.as_str()).await? {
                    if let Some(r) = app.pipeline.identity().custom_role(
                        &row.org,
                        &row.name,
                        &row.source,
                        row.revision,
                    ) {
                        roles.push(role_info(&r, Some(&row.org)));
                    }
                }
                Ok(Json(RoleList { roles }))
            },
        )
        .await
}

pub(super) async fn show_role(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<RoleInfo>, ApiError> {
    let (org, name) = role_path(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "role.show",
                Action::EnvRead,
                Scope::Path(org.clone()),
                Target::role(&org, &name),
            ),
            |_permit| async move {
                if let Some(r) = builtin_role(&name) {
                    return Ok(Json(role_info(&r, None)));
                }
                let row = app.store.role(org.as_str(), &name).await?.ok_or_else(|| {
                    ApiError::not_found(format!("role {name} in {org} not found"))
                })?;
                let r = app
                    .pipeline
                    .identity()
                    .custom_role(&row.org, &row.name, &row.source, row.revision)
                    .ok_or_else(ApiError::internal)?;
                Ok(Json(role_info(&r, Some(&row.org))))
            },
        )
        .await
}

pub(super) async fn apply_role(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<RoleApply>,
) -> Result<Json<RoleInfo>, ApiError> {
    let org = org_param(&path_arg(path)?)?;
    if req.source.len() > MAX_ROLE_BYTES {
        return Err(
            ApiError::invalid(format!("role files are at most {MAX_ROLE_BYTES} bytes"))
                .field("source"),
        );
    }
    let role =
        Role::parse(&req.source).map_err(|e| ApiError::invalid(e.to_string()).field("source"))?;
    if builtin_role(role.name()).is_some() || role.name() == "workload" {
        return Err(ApiError::invalid(format!(
            "`{}` is a built-in role; custom roles need another name",
            role.name()
        ))
        .field("source"));
    }
    let app: &App = &app;
    let target = Target::role(&org, role.name());
    let role = std::sync::Arc::new(role);
    let editor = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "role.apply",
                Action::RoleManage,
                Scope::Path(org.clone()),
                target,
            ),
            |_permit| async move {
                if app.store.scope(org.as_str()).await?.is_none() {
                    return Err(ApiError::not_found(format!("organization {org} not found")));
                }
                // Editing a role changes what its holders may do: the editor
                // must hold everything it allows, before and after, and manage
                // every holder it would restrict or whose deny it would lift.
                let old = match app.store.role(org.as_str(), role.name()).await? {
                    Some(old) => Some(
                        app.pipeline
                            .identity()
                            .custom_role(&old.org, &old.name, &old.source, old.revision)
                            .ok_or_else(ApiError::internal)?,
                    ),
                    None => None,
                };
                let holders = manage::holders(app, &org, role.name()).await?;
                let _ = may_apply_role(editor, &org, old.as_deref(), &role, &holders)
                    .map_err(manage::refused)?;
                let revision = i64::from_le_bytes(
                    warden_vault::crypto::random_bytes::<8>().map_err(|_| ApiError::internal())?,
                );
                app.store
                    .put_role(RoleRow {
                        org: org.to_string(),
                        name: role.name().to_owned(),
                        source: req.source,
                        revision,
                        updated_at: warden_store::now_ms(),
                    })
                    .await?;
                Ok(Json(role_info(&role, Some(org.as_str()))))
            },
        )
        .await
}

pub(super) async fn delete_role(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (org, name) = role_path(path)?;
    if builtin_role(&name).is_some() {
        return Err(warden_pipeline::Error::conflict("built-in roles cannot be deleted").into());
    }
    let app: &App = &app;
    let deleter = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "role.delete",
                Action::RoleManage,
                Scope::Path(org.clone()),
                Target::role(&org, &name),
            ),
            |_permit| async move {
                let row = app.store.role(org.as_str(), &name).await?.ok_or_else(|| {
                    ApiError::not_found(format!("role {name} in {org} not found"))
                })?;
                let role = app
                    .pipeline
                    .identity()
                    .custom_role(&row.org, &row.name, &row.source, row.revision)
                    .ok_or_else(ApiError::internal)?;
                let holders = manage::holders(app, &org, &name).await?;
                let _ = may_delete_role(deleter, &org, &role, &holders).map_err(manage::refused)?;
                app.store.delete_role(org.as_str(), &name).await?;
                Ok(StatusCode::NO_CONTENT)
            },
        )
        .await
}

/// Resolves the role a binding names: built in, or a custom role of the
/// scope's organization (custom roles cannot be bound at the root).
pub(super) async fn resolve_role(
    app: &App,
    role: &str,
    scope: &Scope,
) -> Result<std::sync::Arc<Role>, ApiError> {
    if let Some(r) = builtin_role(role) {
        return Ok(r);
    }
    let missing = || {
        ApiError::not_found(format!(
            "role {role} not found (built-in: owner, admin, developer, viewer)"
        ))
    };
    let Scope::Path(p) = scope else {
        return Err(missing());
    };
    let row = app.store.role(p.org(), role).await?.ok_or_else(missing)?;
    app.pipeline
        .identity()
        .custom_role(&row.org, &row.name, &row.source, row.revision)
        .ok_or_else(ApiError::internal)
}
