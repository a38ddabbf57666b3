//! Shell sessions: list an organization's (`audit.read`: sessions are
//! audit data), show one, and end one (`session.manage` on its service).
//! The replica holding a session ends it at once when asked there, the
//! others within a second (`gateway::apply_kills`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use warden_api::{SessionInfo, SessionList, SessionListQuery};
use warden_pipeline::{Error, Operation, Target};
use warden_policies::{Action, Scope};
use warden_store::ShellSessionRow;
use warden_types::{ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::gateway::gateway;
use crate::state::App;

fn info(r: ShellSessionRow) -> SessionInfo {
    SessionInfo {
        id: r.id,
        service: r.service,
        pod: r.pod,
        principal: r.principal,
        transport: r.transport,
        node: r.node,
        started_at_ms: r.started_at,
        ended_at_ms: r.ended_at,
        status: r.status,
        exit_status: r.exit_status,
        killed_by: r.killed_by,
    }
}

/// A session id as the gateway makes them (24 hex digits).
fn session_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let id = path_arg(p)?;
    if id.len() == 24
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(id)
    } else {
        Err(ApiError::invalid("a session id is 24 lowercase hex digits").field("id"))
    }
}

/// The session `id` and the scope it is authorized on (its service); an
/// unknown id is refused (audited) as not found.
async fn session_of(
    app: &App,
    caller: &Caller,
    operation: &'static str,
    id: &str,
) -> Result<(ShellSessionRow, ScopePath), ApiError> {
    let found = app.store.shell_session(id).await?;
    let Some((row, service)) = found.and_then(|r| {
        let s = ScopePath::parse_kind(&r.service, ScopeKind::Service).ok()?;
        Some((r, s))
    }) else {
        let e = Error::not_found(format!("session {id} not found"));
        return Err(app
            .pipeline
            .refuse(caller, operation, Target::session(id, "", None), e)
            .await
            .into());
    };
    Ok((row, service))
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    org: Result<Path<String>, PathRejection>,
    query: Result<Query<SessionListQuery>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let org = org_arg(org)?;
    let q = query_arg(query)?;
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 1000));
    let op = Operation::new(
        "session.list",
        Action::AuditRead,
        Scope::Path(org.clone()),
        Target::scope(&org),
    );
    let app: &App = &app;
    app.pipeline
        .run_stored(&caller, op, |_permit| async {
            let rows = app
                .store
                .shell_sessions(org.as_str(), q.live, limit)
                .await?;
            Ok(Json(SessionList {
                sessions: rows.into_iter().map(info).collect(),
            }))
        })
        .await
}

pub(super) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let id = session_arg(id)?;
    let app: &App = &app;
    let (row, service) = session_of(app, &caller, "session.show", &id).await?;
    let op = Operation::new(
        "session.show",
        Action::AuditRead,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod.clone())),
    );
    app.pipeline
        .run_stored(&caller, op, |_permit| async { Ok(Json(info(row))) })
        .await
}

pub(super) async fn kill(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = session_arg(id)?;
    let (row, service) = session_of(&app, &caller, "session.kill", &id).await?;
    let op = Operation::new(
        "session.kill",
        Action::SessionManage,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod.clone())),
    );
    let app_ref: &App = &app;
    app_ref
        .pipeline
        .run(&caller, op, |_permit| async {
            if !app_ref.store.shell_session_kill(&id, caller.id()).await? {
                return Err(ApiError::from(Error::conflict(format!(
                    "session {id} has ended"
                ))));
            }
            // Here at once; the replica holding it within a second.
            gateway(&app).end_here(&id, caller.id());
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}
