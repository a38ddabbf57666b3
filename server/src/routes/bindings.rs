//! Role bindings (grant, revoke, list) and policy checks.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_policies::{Action, Decision, Resource, Scope, authorize};
use warden_types::{ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::identity::{parse_principal, scope_of};
use warden_pipeline::{Operation, Target};
use warden_policies::{Binding, Principal, may_grant, may_revoke};

use super::manage;
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

/// The checked parts of a grant or revoke: the principal (never a
/// workload), the role name and the binding scope.
pub(super) fn binding_args(principal: &str, role: &str, scope: &str) -> Result<Scope, ApiError> {
    if parse_principal(principal)?.kind == "workload" {
        return Err(ApiError::invalid(
            "workloads hold a fixed role for their own service; they cannot be granted roles",
        )
        .field("principal"));
    }
    name_arg(role, "role")?;
    binding_scope(scope)
}

pub(super) async fn grant(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<GrantRequest>,
) -> Result<(StatusCode, Json<BindingInfo>), ApiError> {
    let scope = binding_args(&req.principal, &req.role, &req.scope)?;
    let app: &App = &app;
    let target = Target::binding(&req.principal, &req.role, &req.scope);
    let subject = manage::visible_member(app, &caller, "binding.grant", &req.principal).await?;
    let granter = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "binding.grant",
                grant_action(&req.role),
                scope.clone(),
                target,
            ),
            |_permit| async move {
                let role = resolve_role(app, &req.role, &scope).await?;
                if let Scope::Path(p) = &scope
                    && app.store.scope(p.as_str()).await?.is_none()
                {
                    return Err(ApiError::not_found(format!(
                        "{} {p} not found",
                        p.kind().as_str()
                    )));
                }
                let binding = Binding {
                    role,
                    scope: scope.clone(),
                };
                let _ = may_grant(granter, &subject, &binding).map_err(manage::refused)?;
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
    Body(req): Body<RevokeRequest>,
) -> Result<StatusCode, ApiError> {
    let scope = binding_args(&req.principal, &req.role, &req.scope)?;
    let app: &App = &app;
    let target = Target::binding(&req.principal, &req.role, &req.scope);
    let subject = manage::visible_member(app, &caller, "binding.revoke", &req.principal).await?;
    let revoker = &caller.who().principal;
    let (action, at, break_glass) = (grant_action(&req.role), scope.clone(), req.break_glass);
    let op = |_permit| async move {
        let role = resolve_role(app, &req.role, &scope).await?;
        let binding = Binding {
            role,
            scope: scope.clone(),
        };
        if !subject
            .bindings
            .iter()
            .any(|b| b.scope == binding.scope && b.role.name() == binding.role.name())
        {
            return Err(ApiError::not_found(format!(
                "binding of {} to {} at {}",
                req.role, req.principal, req.scope
            )));
        }
        let _ =
            may_revoke(revoker, &subject, &binding, req.break_glass).map_err(manage::refused)?;
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
    };
    if break_glass {
        // A root Owner may need to remove a binding that denies it the
        // very authority to remove it: outside the usual decision, audited.
        return app
            .pipeline
            .run_break_glass(
                &caller,
                Operation::new("binding.revoke", action, at, target),
                op,
            )
            .await;
    }
    app.pipeline
        .run_stored(
            &caller,
            Operation::new("binding.revoke", action, at, target),
            op,
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
            Operation::new(
                "binding.list",
                Action::MemberManage,
                scope.clone(),
                Target::scope(&scope),
            ),
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
    let kind = parse_principal(&req.principal)?.kind;
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
            let e = ApiError::not_found(format!("organization {org} not found"));
            return Err(
                manage::refuse(app, &caller, "policy.check", Target::scope(&req.path), e).await,
            );
        }
        return app.pipeline.run_self(&caller, "policy.check", decide).await;
    }
    // Explaining another principal's powers reveals that it exists.
    manage::visible_member(app, &caller, "policy.check", &req.principal).await?;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "policy.check",
                Action::MemberManage,
                scope.clone(),
                Target::principal(&req.principal),
            ),
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
        session: match &decision {
            Decision::Allow(p) if action == Action::ShellExec => {
                let s = p.explanation().session;
                Some(SessionSettings {
                    max_length_secs: s.max_length.map(|d| d.as_secs()),
                    idle_timeout_secs: s.idle_timeout.map(|d| d.as_secs()),
                    record_input: s.record_input,
                })
            }
            _ => None,
        },
        explanation: match decision {
            Decision::Allow(p) => p.explanation().to_string(),
            Decision::Deny(d) => d.reason,
        },
    }
}
