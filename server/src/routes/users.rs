//! Users and service accounts, API tokens (own or a service account's)
//! and workload tokens.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use warden_api::*;
use warden_policies::{
    Action, ManageDenial, Member, Principal, Sanction, Scope, may_act_as, may_act_for,
    may_issue_workload,
};
use warden_types::{ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_identity::workload::{SigningKey, WorkloadClaims};
use warden_pipeline::identity::{self, Method, parse_principal};
use warden_pipeline::{Operation, Target};
use warden_store::PrincipalRow;

use super::auth::{hash_password, own_row};
use super::manage;

pub(super) fn user_info(r: &PrincipalRow) -> UserInfo {
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

pub(super) fn token_info(t: warden_store::TokenRow) -> TokenInfo {
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

/// The answer to a token just made: 201, with the token (shown this once).
pub(super) fn token_created(
    token: &str,
    row: warden_store::TokenRow,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: wire(token)?,
            info: token_info(row),
        }),
    ))
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
    let id = identity::principal_id(prefix, &req.name, org.as_ref().map(ScopePath::as_str));
    let scope = org.clone().map_or(Scope::Root, Scope::Path);
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "user.create",
                Action::MemberManage,
                scope,
                Target::principal(&id),
            ),
            |_permit| async move {
                if let Some(o) = &org
                    && app.store.scope(o.as_str()).await?.is_none()
                {
                    return Err(ApiError::not_found(format!("organization {o} not found")));
                }
                let password = match req.password {
                    Some(p) => Some(hash_password(app, &id, p.0.expose().to_owned()).await?),
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OrgQuery {
    /// An organization (none: installation-wide).
    #[serde(default)]
    #[schemars(regex(pattern = warden_types::pattern::NAME))]
    pub(super) org: Option<String>,
}

pub(super) async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let org = query_arg(q)?.org.as_deref().map(org_param).transpose()?;
    let scope = org.clone().map_or(Scope::Root, Scope::Path);
    let target = Target::scope(&scope);
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new("user.list", Action::MemberManage, scope, target),
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
            .pipeline
            .run_self(&caller, "user.show", async { Ok(Json(user_info(&row))) })
            .await;
    }
    let subject = manage::visible_member(app, &caller, "user.show", &id).await?;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "user.show",
                Action::MemberManage,
                manage::home_scope(&subject)?,
                Target::principal(&id),
            ),
            |_permit| async move {
                let row = app
                    .store
                    .principal(&id)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("principal {id} not found")))?;
                Ok(Json(user_info(&row)))
            },
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
    for_principal(app, &caller, &id, "user.disable", may_act_for, async {
        let tokens_revoked = app.store.disable_principal(&id).await?;
        Ok(Json(Disabled {
            principal: id.clone(),
            tokens_revoked,
        }))
    })
    .await
}

/// The management rule an operation on another principal needs.
pub(super) type ActRule = fn(&Principal, &Member) -> Result<Sanction, ManageDenial>;

/// Runs `op` for the caller itself, or, when `subject` is another
/// principal, with `member.manage` where that principal lives and the
/// management rule's consent: `may_act_for` to restrict or inspect it
/// (disable, list or revoke tokens), `may_act_as` to take on its powers
/// (mint it a token).
pub(super) async fn for_principal<T, Fut>(
    app: &App,
    caller: &Caller,
    subject: &str,
    operation: &'static str,
    rule: ActRule,
    op: Fut,
) -> Result<T, ApiError>
where
    Fut: Future<Output = Result<T, ApiError>>,
{
    if subject == caller.id() {
        return app.pipeline.run_self(caller, operation, op).await;
    }
    let member = manage::visible_member(app, caller, operation, subject).await?;
    app.pipeline
        .run_stored(
            caller,
            Operation::new(
                operation,
                Action::MemberManage,
                manage::home_scope(&member)?,
                Target::principal(subject),
            ),
            |_permit| async move {
                let _ = rule(&caller.who().principal, &member).map_err(manage::refused)?;
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
    // Every API token expires: by default after the longest lifetime the
    // server allows (`max_token_ttl_secs`).
    let max = app.max_token_ttl.as_secs();
    let ttl = req.ttl_seconds.unwrap_or(max);
    if !(60..=max).contains(&ttl) {
        return Err(ApiError::invalid(format!(
            "ttl_seconds: between 60 and {max} (this server's max_token_ttl_secs)"
        ))
        .field("ttl_seconds"));
    }
    if caller.who().method == Method::Workload {
        let e = ApiError::forbidden("workload tokens cannot create other tokens");
        return Err(manage::refuse(
            &app,
            &caller,
            "token.create",
            Target::principal(caller.id()),
            e,
        )
        .await);
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
    let expires = Some(warden_store::now_ms() + i64::try_from(ttl * 1000).unwrap_or(i64::MAX));
    for_principal(app, &caller, &subject, "token.create", may_act_as, async {
        let (token, row) =
            identity::create_token(&app.store, &subject, &req.name, "api", false, expires).await?;
        token_created(&token, row)
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PrincipalQuery {
    /// Another principal's tokens (a service account; default: the caller).
    #[serde(default)]
    #[schemars(regex(pattern = warden_types::pattern::MEMBER))]
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
    for_principal(app, &caller, &subject, "token.list", may_act_for, async {
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
    let not_found = || ApiError::not_found(format!("token {id} not found"));
    for_principal(app, &caller, &subject, "token.revoke", may_act_for, async {
        let row = row.ok_or_else(not_found)?;
        app.store.revoke_token(&id, &row.principal).await?;
        let row = app
            .store
            .token(&row.id)
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(Json(token_info(row)))
    })
    .await
    // A token of a principal the caller cannot see reads as an unknown
    // token, without naming its owner (the refusal is audited as it was).
    .map_err(|e| {
        if e.status() == axum::http::StatusCode::NOT_FOUND {
            not_found()
        } else {
            e
        }
    })
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
    let issuer = &caller.who().principal;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "workload_token.create",
                Action::WorkloadIssue,
                Scope::Path(service.clone()),
                Target::scope(&service),
            ),
            |_permit| async move {
                may_hand_out_workload(app, issuer, &service).await?;
                let (jwt, claims) = issue_workload(app, &service, ttl).await?;
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

/// Purpose label of workload signing keys sealed under the root key.
const SIGNING_PURPOSE: &str = "workload-signing-key";
/// Longest workload-token lifetime Warden issues.
pub(super) const WORKLOAD_MAX_TTL_SECS: u64 = warden_pipeline::identity::WORKLOAD_MAX_TTL_SECS;

/// Whether `who` may hand out `service`'s workload credential (a token or a
/// service-account binding): the service exists, and `who` holds what that
/// credential can do there.
pub(super) async fn may_hand_out_workload(
    app: &App,
    who: &warden_policies::Principal,
    service: &ScopePath,
) -> Result<(), ApiError> {
    if app.store.scope(service.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!("service {service} not found")));
    }
    may_issue_workload(
        who,
        &warden_policies::workload_role(),
        &Scope::Path(service.clone()),
    )
    .map(drop)
    .map_err(manage::refused)
}

/// Issues a workload token for `service`, rotating the signing key when
/// the current one is older than a day.
pub(crate) async fn issue_workload(
    app: &App,
    service: &ScopePath,
    ttl_secs: u64,
) -> Result<(zeroize::Zeroizing<String>, WorkloadClaims), ApiError> {
    let identity = app.pipeline.identity();
    let rows = identity.load_public_keys(&app.store).await?;
    let now = warden_store::now_ms();
    let key = match rows.first() {
        Some(r) if now - r.created_at < identity::SIGNING_KEY_ROTATE_MS => {
            let pkcs8 = app
                .vault
                .open_credential(SIGNING_PURPOSE, &r.kid, &r.sealed)?;
            SigningKey::from_pkcs8(&pkcs8).map_err(|_| ApiError::internal())?
        }
        _ => {
            let key = SigningKey::generate().map_err(|_| ApiError::internal())?;
            let row = warden_store::SigningKeyRow {
                kid: key.kid().to_owned(),
                sealed: app
                    .vault
                    .seal_credential(SIGNING_PURPOSE, key.kid(), key.pkcs8())?,
                public_key: key.public_key().to_vec(),
                created_at: now,
            };
            app.store.add_signing_key(row).await?;
            identity.remember_public_key(key.kid(), key.public_key(), now);
            key
        }
    };
    let now_secs = u64::try_from(now / 1000).unwrap_or(0);
    let (jwt, claims) = warden_identity::workload::issue(&key, service, ttl_secs, now_secs)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((zeroize::Zeroizing::new(jwt), claims))
}
