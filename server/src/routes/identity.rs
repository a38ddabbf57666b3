//! Identity and RBAC routes: whoami, login and MFA, users and service
//! accounts, tokens, workload tokens, SSH keys, custom roles, bindings and
//! policy checks. Every handler goes through the pipeline (`run_self` for
//! what a caller does to its own identity, `run_stored` otherwise).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use warden_api::*;
use warden_identity::totp::TotpSecret;
use warden_policies::{
    Action, Binding, Decision, Principal, Resource, Role, Scope, authorize, builtin_role,
    builtin_roles,
};
use warden_store::{PrincipalRow, RoleRow, SshKeyRow};
use warden_types::{EnvMode, ScopeKind, ScopePath};

use super::{AppState, Body, path_arg, query_arg, wire};
use crate::ApiError;
use crate::identity::{
    self, Method, SESSION_TTL_MS, TOTP_PURPOSE, WORKLOAD_MAX_TTL_SECS, parse_principal, scope_of,
    user_id,
};
use crate::pipeline::{Caller, RequestMeta};
use crate::state::App;

/// Largest role file accepted.
const MAX_ROLE_BYTES: usize = 64 * 1024;
/// Longest API token lifetime.
const MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;

fn now_secs() -> u64 {
    u64::try_from(warden_store::now_ms() / 1000).unwrap_or(0)
}

fn name_arg(s: &str, field: &'static str) -> Result<(), ApiError> {
    ScopePath::parse_kind(s, ScopeKind::Organization)
        .map(|_| ())
        .map_err(|_| {
            ApiError::invalid(
                "names are 1-63 lowercase letters, digits or '-', starting with a letter or digit",
            )
            .field(field)
        })
}

fn org_param(s: &str) -> Result<ScopePath, ApiError> {
    ScopePath::parse_kind(s, ScopeKind::Organization).map_err(|e| ApiError::from(e).field("org"))
}

/// `ORG` and role `NAME` from a `/roles/{org}/{name}` path.
fn role_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ScopePath, String), ApiError> {
    let (org, name) = path
        .map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))?;
    let org = org_param(&org)?;
    name_arg(&name, "name")?;
    Ok((org, name))
}

/// `/` or a path of an organization, project or environment.
fn binding_scope(s: &str) -> Result<Scope, ApiError> {
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

fn binding_info(principal: &str, b: &Binding) -> BindingInfo {
    BindingInfo {
        principal: principal.to_owned(),
        role: b.role.name().to_owned(),
        scope: b.scope.to_string(),
    }
}

fn token_info(t: warden_store::TokenRow) -> TokenInfo {
    TokenInfo {
        id: t.id,
        principal: t.principal,
        name: t.name,
        kind: t.kind,
        mfa: t.mfa != 0,
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        last_used_at: t.last_used_at,
    }
}

fn user_info(r: &PrincipalRow) -> UserInfo {
    UserInfo {
        id: r.id.clone(),
        kind: r.kind.clone(),
        org: r.org.clone(),
        password_set: r.password.is_some(),
        mfa_enabled: r.totp_enabled != 0,
        disabled_at: r.disabled_at,
        created_at: r.created_at,
    }
}

fn ssh_info(k: SshKeyRow) -> SshKeyInfo {
    SshKeyInfo {
        fingerprint: k.fingerprint,
        principal: k.principal,
        algorithm: k.algorithm,
        public_key: k.public_key,
        comment: k.comment,
        created_at: k.created_at,
    }
}

fn role_info(role: &Role, org: Option<&str>) -> RoleInfo {
    RoleInfo {
        name: role.name().to_owned(),
        org: org.map(str::to_owned),
        builtin: org.is_none(),
        description: role.description().to_owned(),
        source: role.source().to_owned(),
    }
}

/// Password hashing is deliberately expensive: off the async workers, and
/// at most two at a time.
static KDF_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn hash_password(password: String) -> Result<String, ApiError> {
    warden_identity::password::check_password_policy(&password)
        .map_err(|e| ApiError::invalid(e.to_string()).field("password"))?;
    let _slot = KDF_SLOTS
        .acquire()
        .await
        .map_err(|_| ApiError::internal())?;
    tokio::task::spawn_blocking(move || warden_identity::password::hash_password(&password))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|_| ApiError::internal())
}

async fn verify_password(phc: Option<String>, password: String) -> Result<bool, ApiError> {
    let _slot = KDF_SLOTS
        .acquire()
        .await
        .map_err(|_| ApiError::internal())?;
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => warden_identity::password::verify_password(&phc, &password),
        // As slow as a wrong password, so absent accounts do not show.
        None => warden_identity::password::verify_password_dummy(&password),
    })
    .await
    .map_err(|_| ApiError::internal())
}

/// Checks a TOTP code for `row` and consumes its time step (a code works
/// once). With `enable`, confirms the enrolment.
async fn check_totp(
    app: &App,
    row: &PrincipalRow,
    code: &str,
    enable: bool,
) -> Result<bool, ApiError> {
    let sealed = row
        .totp_sealed
        .as_deref()
        .ok_or_else(|| ApiError::invalid("no TOTP enrolment; run `warden mfa enroll` first"))?;
    let raw = app.vault.open_credential(TOTP_PURPOSE, &row.id, sealed)?;
    let secret = TotpSecret::from_bytes(&raw).map_err(|_| ApiError::internal())?;
    let last = row.totp_last_step.and_then(|s| u64::try_from(s).ok());
    let Some(step) = warden_identity::totp::verify(&secret, code, now_secs(), last) else {
        return Ok(false);
    };
    let step = i64::try_from(step).map_err(|_| ApiError::internal())?;
    Ok(app.store.use_totp_step(&row.id, step, enable).await?)
}

pub(super) async fn whoami(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<WhoAmI>, ApiError> {
    let who = caller.who();
    app.run_self(&caller, "auth.whoami", async {
        Ok(Json(WhoAmI {
            principal: who.principal.id.clone(),
            method: who.method.as_str().to_owned(),
            token_id: who.token_id.clone(),
            mfa: who.principal.mfa,
            bindings: who
                .principal
                .bindings
                .iter()
                .map(|b| binding_info(&who.principal.id, b))
                .collect(),
        }))
    })
    .await
}

pub(super) async fn login(
    State(app): State<AppState>,
    meta: RequestMeta,
    Body(req): Body<LoginRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    name_arg(&req.user, "user")?;
    let id = user_id(&req.user);
    let app: &App = &app;
    let method = if req.totp.is_some() {
        "password+totp"
    } else {
        "password"
    };
    app.run_public(&meta, "auth.login", Some((&id, method)), async {
        let refused = || ApiError::unauthenticated("invalid user name or password");
        let row = app.store.principal(&id).await?;
        let phc = row
            .as_ref()
            .filter(|r| r.disabled_at.is_none())
            .and_then(|r| r.password.clone());
        let ok = verify_password(phc, req.password.0.expose().to_owned()).await?;
        let Some(row) = row.filter(|_| ok) else {
            return Err(refused());
        };
        let mfa = row.totp_enabled != 0;
        if mfa {
            let code = req.totp.as_deref().ok_or_else(|| {
                ApiError::unauthenticated("this account requires a TOTP code (`--totp`)")
            })?;
            if !check_totp(app, &row, code, false).await? {
                return Err(ApiError::unauthenticated(
                    "invalid or already used TOTP code; wait for the next one",
                ));
            }
        }
        let expires = warden_store::now_ms() + SESSION_TTL_MS;
        let (token, row) = identity::create_token(
            &app.store,
            &id,
            "login session",
            "session",
            mfa,
            Some(expires),
        )
        .await?;
        Ok((
            StatusCode::CREATED,
            Json(TokenCreated {
                token: wire(&token)?,
                info: token_info(row),
            }),
        ))
    })
    .await
}

/// The caller's own principal row; only users and service accounts have one.
async fn own_row(app: &App, caller: &Caller) -> Result<PrincipalRow, ApiError> {
    app.store
        .principal(caller.id())
        .await?
        .ok_or_else(|| ApiError::invalid("workload principals have no account"))
}

fn require_user(caller: &Caller) -> Result<(), ApiError> {
    if caller.id().starts_with("user:") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "only users (not service accounts or workloads) have passwords and MFA",
        ))
    }
}

pub(super) async fn mfa_enroll(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<MfaEnrollment>, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.run_self(&caller, "auth.mfa.enroll", async {
        let row = own_row(app, &caller).await?;
        if row.totp_enabled != 0 && !caller.who().principal.mfa {
            return Err(ApiError::forbidden(
                "MFA is enrolled already; replacing it needs an MFA session (`warden login --totp`)",
            ));
        }
        let secret = TotpSecret::try_generate().map_err(|_| ApiError::internal())?;
        let sealed = app
            .vault
            .seal_credential(TOTP_PURPOSE, &row.id, secret.as_bytes())?;
        app.store.set_totp(&row.id, sealed).await?;
        let account = row.id.trim_start_matches("user:");
        Ok(Json(MfaEnrollment {
            secret: wire(&secret.base32())?,
            otpauth_uri: wire(&secret.otpauth_uri("Warden", account))?,
        }))
    })
    .await
}

pub(super) async fn mfa_confirm(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<MfaCode>,
) -> Result<Json<UserInfo>, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.run_self(&caller, "auth.mfa.confirm", async {
        let row = own_row(app, &caller).await?;
        if !check_totp(app, &row, &req.code, true).await? {
            return Err(ApiError::invalid("invalid or already used TOTP code").field("code"));
        }
        let row = own_row(app, &caller).await?;
        Ok(Json(user_info(&row)))
    })
    .await
}

pub(super) async fn set_password(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.run_self(&caller, "auth.password", async {
        let phc = hash_password(req.password.0.expose().to_owned()).await?;
        app.store.set_password(caller.id(), phc).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Where a principal is managed: its home organization, or the root.
/// A principal another caller wants to manage, and where it is managed
/// (its home organization, or the root). A principal that does not exist,
/// or lives where the caller holds no binding at all, is one uniform 404:
/// nobody learns of accounts in another tenant.
async fn managed(app: &App, caller: &Caller, id: &str) -> Result<(Scope, PrincipalRow), ApiError> {
    let hidden = || ApiError::not_found(format!("principal {id} not found"));
    let row = app.store.principal(id).await?.ok_or_else(hidden)?;
    let who = &caller.who().principal;
    let scope = match row.org.as_deref() {
        Some(org) if who.has_binding_in_org(org) => Scope::Path(org_param(org)?),
        None if who.bindings.iter().any(|b| b.scope == Scope::Root) => Scope::Root,
        _ => return Err(hidden()),
    };
    Ok((scope, row))
}

/// Acting on another principal's credentials or account is acting with its
/// powers: the caller must be able to grant every binding it holds.
async fn check_may_act_for(app: &App, caller: &Caller, subject: &str) -> Result<(), ApiError> {
    let who = &caller.who().principal;
    for b in app.identity.bindings(&app.store, subject).await? {
        let resource = Resource {
            scope: b.scope.clone(),
            mode: None,
        };
        if let Decision::Deny(d) = authorize(who, grant_action(b.role.name()), &resource) {
            return Err(ApiError::forbidden(format!(
                "{subject} holds role `{}` at {}, which you may not grant: {}",
                b.role.name(),
                b.scope,
                d.reason
            )));
        }
        check_no_escalation(who, &b.role, &b.scope)?;
    }
    Ok(())
}

pub(super) async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateUser>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    name_arg(&req.name, "name")?;
    let prefix = match req.kind.as_str() {
        "user" => "user",
        "service" => "sa",
        _ => return Err(ApiError::invalid("kind is `user` or `service`").field("kind")),
    };
    if prefix == "sa" && req.password.is_some() {
        return Err(
            ApiError::invalid("service accounts authenticate with tokens, not passwords")
                .field("password"),
        );
    }
    let org = req.org.as_deref().map(org_param).transpose()?;
    let id = format!("{prefix}:{}", req.name);
    let scope = org.clone().map_or(Scope::Root, Scope::Path);
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::MemberManage,
        scope,
        id.clone(),
        |_permit| async move {
            if let Some(o) = &org
                && app.store.scope(o.as_str()).await?.is_none()
            {
                return Err(ApiError::not_found(format!("organization {o} not found")));
            }
            let password = match req.password {
                Some(p) => Some(hash_password(p.0.expose().to_owned()).await?),
                None => None,
            };
            let row = PrincipalRow {
                id,
                kind: req.kind,
                org: org.map(|o| o.to_string()),
                password,
                totp_sealed: None,
                totp_enabled: 0,
                totp_last_step: None,
                disabled_at: None,
                created_at: warden_store::now_ms(),
            };
            app.store.create_principal(row.clone()).await?;
            Ok((StatusCode::CREATED, Json(user_info(&row))))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrgQuery {
    #[serde(default)]
    org: Option<String>,
}

pub(super) async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let org = query_arg(q)?.org.as_deref().map(org_param).transpose()?;
    let scope = org.clone().map_or(Scope::Root, Scope::Path);
    let target = scope.to_string();
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::MemberManage,
        scope,
        target,
        |_permit| async move {
            let rows = app
                .store
                .principals(org.as_ref().map(ScopePath::as_str))
                .await?;
            Ok(Json(UserList {
                users: rows.iter().map(user_info).collect(),
            }))
        },
    )
    .await
}

pub(super) async fn show_user(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    let id = path_arg(path)?;
    parse_principal(&id)?;
    let app: &App = &app;
    if id == caller.id() {
        let row = own_row(app, &caller).await?;
        return app
            .run_self(&caller, "user.show", async { Ok(Json(user_info(&row))) })
            .await;
    }
    let (scope, row) = managed(app, &caller, &id).await?;
    let found = || Ok(Json(user_info(&row)));
    app.run_stored(
        &caller,
        Action::MemberManage,
        scope,
        id.clone(),
        |_permit| async { found() },
    )
    .await
}

pub(super) async fn disable_user(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Disabled>, ApiError> {
    let id = path_arg(path)?;
    parse_principal(&id)?;
    if id == caller.id() {
        return Err(ApiError::invalid("you cannot disable yourself"));
    }
    let app: &App = &app;
    // Disabling an owner is an ownership change, and so on: the same rule
    // as acting for the principal.
    for_principal(app, &caller, &id, "user.disable", async {
        let tokens_revoked = app.store.disable_principal(&id).await?;
        Ok(Json(Disabled {
            principal: id.clone(),
            tokens_revoked,
        }))
    })
    .await
}

/// Runs `op` for the caller itself, or, when `subject` is another
/// principal, with `member.manage` where that principal lives and the
/// power to grant everything it holds.
async fn for_principal<T, Fut>(
    app: &App,
    caller: &Caller,
    subject: &str,
    action: &str,
    op: Fut,
) -> Result<T, ApiError>
where
    Fut: Future<Output = Result<T, ApiError>>,
{
    if subject == caller.id() {
        return app.run_self(caller, action, op).await;
    }
    let (scope, _) = managed(app, caller, subject).await?;
    app.run_stored(
        caller,
        Action::MemberManage,
        scope,
        subject.to_owned(),
        |_permit| async move {
            check_may_act_for(app, caller, subject).await?;
            op.await
        },
    )
    .await
}

pub(super) async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    if req.name.is_empty() || req.name.len() > 64 || req.name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name: 1-64 printable characters").field("name"));
    }
    if req
        .ttl_seconds
        .is_some_and(|t| !(60..=MAX_TOKEN_TTL_SECS).contains(&t))
    {
        return Err(
            ApiError::invalid("ttl_seconds: between 60 and 31622400 (366 days)")
                .field("ttl_seconds"),
        );
    }
    if caller.who().method == Method::Workload {
        return Err(ApiError::forbidden(
            "workload tokens cannot create other tokens",
        ));
    }
    let subject = req
        .principal
        .clone()
        .unwrap_or_else(|| caller.id().to_owned());
    parse_principal(&subject)?;
    if subject != caller.id() && !subject.starts_with("sa:") {
        return Err(ApiError::invalid(
            "tokens are created for yourself or for a service account (sa:NAME)",
        )
        .field("principal"));
    }
    let app: &App = &app;
    let expires = req
        .ttl_seconds
        .map(|t| warden_store::now_ms() + i64::try_from(t * 1000).unwrap_or(i64::MAX));
    for_principal(app, &caller, &subject, "token.create", async {
        let (token, row) =
            identity::create_token(&app.store, &subject, &req.name, "api", false, expires).await?;
        Ok((
            StatusCode::CREATED,
            Json(TokenCreated {
                token: wire(&token)?,
                info: token_info(row),
            }),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PrincipalQuery {
    #[serde(default)]
    principal: Option<String>,
}

pub(super) async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<PrincipalQuery>, QueryRejection>,
) -> Result<Json<TokenList>, ApiError> {
    let subject = query_arg(q)?
        .principal
        .unwrap_or_else(|| caller.id().to_owned());
    parse_principal(&subject)?;
    let app: &App = &app;
    for_principal(app, &caller, &subject, "token.list", async {
        let rows = app.store.tokens_of(&subject).await?;
        Ok(Json(TokenList {
            tokens: rows.into_iter().map(token_info).collect(),
        }))
    })
    .await
}

pub(super) async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenInfo>, ApiError> {
    let id = path_arg(path)?;
    if !id.starts_with("tok_") || id.len() > 64 {
        return Err(ApiError::invalid("token ids look like tok_0123abcd..."));
    }
    let app: &App = &app;
    let row = app.store.token(&id).await?;
    // An unknown id is answered as the caller's own (404 inside), so ids of
    // other principals' tokens cannot be probed.
    let subject = row
        .as_ref()
        .map_or_else(|| caller.id().to_owned(), |r| r.principal.clone());
    for_principal(app, &caller, &subject, "token.revoke", async {
        let row = row.ok_or_else(|| ApiError::not_found(format!("token {id} not found")))?;
        app.store.revoke_token(&id).await?;
        let row = app
            .store
            .token(&row.id)
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(Json(token_info(row)))
    })
    .await
}

pub(super) async fn workload_token(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<WorkloadTokenRequest>,
) -> Result<(StatusCode, Json<WorkloadToken>), ApiError> {
    let service = ScopePath::parse_kind(&path_arg(path)?, ScopeKind::Service)?;
    let ttl = req.ttl_seconds.unwrap_or(900);
    if !(60..=WORKLOAD_MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid("ttl_seconds: between 60 and 3600").field("ttl_seconds"));
    }
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::WorkloadIssue,
        Scope::Path(service.clone()),
        service.to_string(),
        |_permit| async move {
            if app.store.scope(service.as_str()).await?.is_none() {
                return Err(ApiError::not_found(format!("service {service} not found")));
            }
            let (jwt, claims) = app
                .identity
                .issue_workload(&app.store, &app.vault, &service, ttl)
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(WorkloadToken {
                    token: wire(&jwt)?,
                    principal: claims.sub,
                    expires_at: claims.exp,
                }),
            ))
        },
    )
    .await
}

pub(super) async fn add_ssh_key(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<SshKeyAdd>,
) -> Result<(StatusCode, Json<SshKeyInfo>), ApiError> {
    let key = warden_identity::ssh::parse_public_key(&req.public_key)
        .map_err(|e| ApiError::invalid(e.to_string()).field("public_key"))?;
    let app: &App = &app;
    app.run_self(&caller, "ssh_key.add", async {
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
    app.run_self(&caller, "ssh_key.list", async {
        let rows = app.store.ssh_keys(caller.id()).await?;
        Ok(Json(SshKeyList {
            keys: rows.into_iter().map(ssh_info).collect(),
        }))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Fingerprint {
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
    app.run_self(&caller, "ssh_key.remove", async {
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

pub(super) async fn list_roles(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoleList>, ApiError> {
    let org = org_param(&path_arg(path)?)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::EnvRead,
        Scope::Path(org.clone()),
        org.to_string(),
        |_permit| async move {
            let mut roles: Vec<RoleInfo> =
                builtin_roles().iter().map(|r| role_info(r, None)).collect();
            for row in app.store.roles(org.as_str()).await? {
                if let Some(r) =
                    app.identity
                        .custom_role(&row.org, &row.name, &row.source, row.revision)
                {
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
    app.run_stored(
        &caller,
        Action::EnvRead,
        Scope::Path(org.clone()),
        format!("{org}#role:{name}"),
        |_permit| async move {
            if let Some(r) = builtin_role(&name) {
                return Ok(Json(role_info(&r, None)));
            }
            let row =
                app.store.role(org.as_str(), &name).await?.ok_or_else(|| {
                    ApiError::not_found(format!("role {name} in {org} not found"))
                })?;
            let r = app
                .identity
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
    let target = format!("{org}#role:{}", role.name());
    let role = std::sync::Arc::new(role);
    let editor = &caller.who().principal;
    app.run_stored(
        &caller,
        Action::RoleManage,
        Scope::Path(org.clone()),
        target,
        |_permit| async move {
            if app.store.scope(org.as_str()).await?.is_none() {
                return Err(ApiError::not_found(format!("organization {org} not found")));
            }
            // Editing a role changes what its holders may do: only someone
            // holding everything it allows, before and after, may edit it.
            let at = Scope::Path(org.clone());
            check_no_escalation(editor, &role, &at)?;
            if let Some(old) = app.store.role(org.as_str(), role.name()).await?
                && let Some(old) =
                    app.identity
                        .custom_role(&old.org, &old.name, &old.source, old.revision)
            {
                check_no_escalation(editor, &old, &at)?;
            }
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
        return Err(ApiError::invalid("built-in roles cannot be deleted"));
    }
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::RoleManage,
        Scope::Path(org.clone()),
        format!("{org}#role:{name}"),
        |_permit| async move {
            app.store.delete_role(org.as_str(), &name).await?;
            Ok(StatusCode::NO_CONTENT)
        },
    )
    .await
}

/// Granting or revoking the Owner role is an ownership transfer; every
/// other role is member management.
fn grant_action(role: &str) -> Action {
    if role == "owner" {
        Action::OwnershipTransfer
    } else {
        Action::MemberManage
    }
}

const MODES: [Option<EnvMode>; 4] = [
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
fn check_no_escalation(
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

/// Resolves the role a binding names: built in, or a custom role of the
/// scope's organization (custom roles cannot be bound at the root).
async fn resolve_role(
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
    app.identity
        .custom_role(&row.org, &row.name, &row.source, row.revision)
        .ok_or_else(ApiError::internal)
}

fn grant_args(req: &GrantRequest) -> Result<Scope, ApiError> {
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
    app.run_stored(
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
    app.run_stored(
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
    app.run_stored(
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
                bindings: app.identity.bindings(&app.store, &req.principal).await?,
                mfa: false,
            }
        };
        let resource = app.identity.resource(&app.store, scope.clone()).await?;
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
        return app.run_self(&caller, "policy.check", decide).await;
    }
    app.run_stored(
        &caller,
        Action::MemberManage,
        scope.clone(),
        req.principal.clone(),
        |_permit| decide,
    )
    .await
}

/// A decision in wire form.
fn explain(subject: &Principal, action: Action, resource: &Resource) -> PolicyDecision {
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
