//! Role bindings (grant, revoke, list) and policy checks.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_policies::{Action, Decision, Resource, Scope, authorize};
use warden_types::{EnvMode, ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::identity::{parse_principal, scope_of};
use warden_policies::{Binding, Principal, Role};

use super::roles::resolve_role;
use super::users::OrgQuery;

/// `/` or a path of an organization, project or environment.
pub(super) fn binding_scope(s: &str) -> Result<Scope, ApiError> {
    if s == "/" {
        return Ok(Scope::Root);
    }
    let p = ScopePath::parse(s).map_err(|e| ApiError::from(e).field("scope"))?;
    if p.kind() == ScopeKind::Service {
        return Err(ApiError::invalid(
            "bind roles at ORG, ORG/PROJECT or ORG/PROJECT/ENV (they apply to everything below)",
        )
        .field("scope"));
    }
    Ok(Scope::Path(p))
}

pub(super) fn binding_info(principal: &str, b: &Binding) -> BindingInfo {
    BindingInfo {
        principal: principal.to_owned(),
        role: b.role.name().to_owned(),
        scope: b.scope.to_string(),
    }
}

/// Granting or revoking the Owner role is an ownership transfer; every
/// other role is member management.
pub(super) fn grant_action(role: &str) -> Action {
    if role == "owner" {
        Action::OwnershipTransfer
    } else {
        Action::MemberManage
    }
}

pub(super) const MODES: [Option<EnvMode>; 4] = [
    None,
    Some(EnvMode::Production),
    Some(EnvMode::Staging),
    Some(EnvMode::Development),
];

/// No escalation: every permission `role` can allow at `scope` (in any
/// environment mode, with or without MFA) must be one the granter holds
/// there, and at every scope inside it where the granter holds a binding,
/// so that a deny the granter is under below cannot be escaped by granting
/// the role to another principal.
pub(super) fn check_no_escalation(
    granter: &Principal,
    role: &std::sync::Arc<Role>,
    scope: &Scope,
) -> Result<(), ApiError> {
    let mut scopes = vec![scope.clone()];
    scopes.extend(
        granter
            .bindings
            .iter()
            .filter(|b| b.scope != *scope && scope.contains(&b.scope))
            .map(|b| b.scope.clone()),
    );
    for mfa in [true, false] {
        let holder = Principal {
            id: "check".to_owned(),
            bindings: vec![Binding {
                role: role.clone(),
                scope: Scope::Root,
            }],
            mfa,
        };
        for at in &scopes {
            for action in Action::ALL {
                for mode in MODES {
                    let resource = Resource {
                        scope: at.clone(),
                        mode,
                    };
                    if authorize(&holder, action, &resource).is_allow()
                        && !authorize(granter, action, &resource).is_allow()
                    {
                        return Err(ApiError::forbidden(format!(
                            "role `{}` allows {action}, which you do not hold at {at}; \
                             you can only grant what you hold",
                            role.name()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

pub(super) fn grant_args(req: &GrantRequest) -> Result<Scope, ApiError> {
    let (kind, _) = parse_principal(&req.principal)?;
    if kind == "workload" {
        return Err(ApiError::invalid(
            "workloads hold a fixed role for their own service; they cannot be granted roles",
        )
        .field("principal"));
    }
    name_arg(&req.role, "role")?;
    binding_scope(&req.scope)
}

pub(super) async fn grant(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<GrantRequest>,
) -> Result<(StatusCode, Json<BindingInfo>), ApiError> {
    let scope = grant_args(&req)?;
    let app: &App = &app;
    let target = format!("{}#{}@{}", req.scope, req.role, req.principal);
    let granter = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            grant_action(&req.role),
            scope.clone(),
            target,
            |_permit| async move {
                let role = resolve_role(app, &req.role, &scope).await?;
                check_no_escalation(granter, &role, &scope)?;
                if app.store.principal(&req.principal).await?.is_none() {
                    return Err(ApiError::not_found(format!(
                        "principal {} not found",
                        req.principal
                    )));
                }
                if let Scope::Path(p) = &scope
                    && app.store.scope(p.as_str()).await?.is_none()
                {
                    return Err(ApiError::not_found(format!(
                        "{} {p} not found",
                        p.kind().as_str()
                    )));
                }
                app.store
                    .add_binding(&req.principal, &req.role, &req.scope, scope.org())
                    .await?;
                Ok((StatusCode::CREATED, Json(req)))
            },
        )
        .await
}

pub(super) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<GrantRequest>,
) -> Result<StatusCode, ApiError> {
    let scope = grant_args(&req)?;
    let app: &App = &app;
    let target = format!("{}#{}@{}", req.scope, req.role, req.principal);
    app.pipeline
        .run_stored(
            &caller,
            grant_action(&req.role),
            scope.clone(),
            target,
            |_permit| async move {
                if app
                    .store
                    .remove_binding(&req.principal, &req.role, &req.scope)
                    .await?
                {
                    Ok(StatusCode::NO_CONTENT)
                } else {
                    Err(ApiError::not_found(format!(
                        "binding of {} to {} at {}",
                        req.role, req.principal, req.scope
                    )))
                }
            },
        )
        .await
}

pub(super) async fn list_bindings(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Json<BindingList>, ApiError> {
    let org = query_arg(q)?.org.as_deref().map(org_param).transpose()?;
    let scope = org.clone().map_or(Scope::Root, Scope::Path);
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Action::MemberManage,
            scope.clone(),
            scope.to_string(),
            |_permit| async move {
                let rows = app
                    .store
                    .bindings_in(org.as_ref().map(ScopePath::as_str))
                    .await?;
                Ok(Json(BindingList {
                    bindings: rows
                        .into_iter()
                        .map(|g| BindingInfo {
                            principal: g.principal,
                            role: g.role,
                            scope: g.scope,
                        })
                        .collect(),
                }))
            },
        )
        .await
}

pub(super) async fn policy_check(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<PolicyCheck>,
) -> Result<Json<PolicyDecision>, ApiError> {
    let (kind, _) = parse_principal(&req.principal)?;
    let action: Action = req
        .action
        .parse()
        .map_err(|e: <Action as std::str::FromStr>::Err| {
            ApiError::invalid(e.to_string()).field("action")
        })?;
    let scope = scope_of(&req.path).ok_or_else(|| {
        ApiError::invalid("path is `/` or ORG[/PROJECT[/ENV[/SERVICE]]]").field("path")
    })?;
    if kind == "workload" {
        return Err(
            ApiError::invalid("check workloads by their token; they hold a fixed role")
                .field("principal"),
        );
    }
    let app: &App = &app;
    let decide = async {
        let subject = if req.principal == caller.id() {
            caller.who().principal.clone()
        } else {
            Principal {
                id: req.principal.clone(),
                bindings: app
                    .pipeline
                    .identity()
                    .bindings(&app.store, &req.principal)
                    .await?,
                mfa: false,
            }
        };
        let resource = app
            .pipeline
            .identity()
            .resource(&app.store, scope.clone())
            .await?;
        Ok(Json(explain(&subject, action, &resource)))
    };
    if req.principal == caller.id() {
        // Asking about oneself needs no role, but must not reveal what
        // exists (or its mode) in an organization one has no part in.
        if let Some(org) = scope.org()
            && !caller.who().principal.has_binding_in_org(org)
        {
            return Err(ApiError::not_found(format!("organization {org} not found")));
        }
        return app.pipeline.run_self(&caller, "policy.check", decide).await;
    }
    app.pipeline
        .run_stored(
            &caller,
            Action::MemberManage,
            scope.clone(),
            req.principal.clone(),
            |_permit| decide,
        )
        .await
}

/// A decision in wire form.
pub(super) fn explain(subject: &Principal, action: Action, resource: &Resource) -> PolicyDecision {
    let decision = authorize(subject, action, resource);
    let (allowed, explanation) = match &decision {
        Decision::Allow(p) => (true, Some(p.explanation().clone())),
        Decision::Deny(d) => (false, d.explicit.clone()),
    };
    PolicyDecision {
        allowed,
        principal: subject.id.clone(),
        action: action.as_str().to_owned(),
        path: resource.scope.to_string(),
        mode: resource.mode.map(|m| m.as_str().to_owned()),
        role: explanation.as_ref().map(|e| e.role.to_string()),
        binding: explanation.as_ref().map(|e| e.binding.to_string()),
        rule: explanation.as_ref().map(|e| e.rule),
        explanation: match decision {
            Decision::Allow(p) => p.explanation().to_string(),
            Decision::Deny(d) => d.reason,
        },
    }
}
