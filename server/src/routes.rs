//! The API's routes. [`ROUTES`] is the single table from which both the
//! router and the OpenAPI document are built, and each entry declares the
//! action it is authorized as; a route cannot exist without a declaration.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use warden_api::*;
use warden_policies::{Action, Decision, Resource, Scope, authorize};
use warden_types::{EnvMode, ScopeKind, ScopePath, SecretName};
use warden_vault::VersionChange;
use warden_vault::unseal::InitMethod;

use crate::ApiError;
use crate::pipeline::{Caller, RequestMeta};
use crate::state::{App, FIRST_OWNER};

mod audit;
mod identity;

type AppState = Arc<App>;

/// How a route is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No token needed (health, metrics, status, init, unseal).
    Public,
    /// Requires this action on the route's resource.
    Requires(Action),
    /// Any authenticated caller acting on its own identity (whoami, its
    /// tokens, password, MFA, SSH keys, policy checks); acting on another
    /// principal requires `member.manage` where that principal lives.
    Caller,
}

/// One route: method, path template, guard, summary and handler.
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// axum path template.
    pub path: &'static str,
    /// Authorization declaration.
    pub guard: Guard,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    handler: fn() -> MethodRouter<AppState>,
}

/// Largest request body accepted: enough for the maximum number of keys at
/// the maximum value size, JSON-escaped.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Every route of the API.
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "GET",
        path: "/healthz",
        guard: Guard::Public,
        summary: "Liveness: the process answers.",
        handler: || get(healthz),
    },
    RouteSpec {
        method: "GET",
        path: "/readyz",
        guard: Guard::Public,
        summary: "Readiness: unsealed and database reachable (503 otherwise).",
        handler: || get(readyz),
    },
    RouteSpec {
        method: "GET",
        path: "/metrics",
        guard: Guard::Public,
        summary: "Prometheus metrics.",
        handler: || get(metrics),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/openapi.json",
        guard: Guard::Public,
        summary: "This document.",
        handler: || get(openapi),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/sys/status",
        guard: Guard::Public,
        summary: "Seal status.",
        handler: || get(sys_status),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/init",
        guard: Guard::Public,
        summary: "Create the root key (passphrase or Shamir); returns the bootstrap token once.",
        handler: || post(sys_init),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/unseal",
        guard: Guard::Public,
        summary: "Submit the passphrase or one Shamir share.",
        handler: || post(sys_unseal),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/sys/seal",
        guard: Guard::Requires(Action::SysSeal),
        summary: "Drop all key material from memory.",
        handler: || post(sys_seal),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/scopes",
        guard: Guard::Caller,
        summary: "List the organizations the caller can see.",
        handler: || get(list_orgs),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/scopes",
        guard: Guard::Requires(Action::EnvManage),
        summary: "Create an organization, project, environment or service.",
        handler: || post(create_scope),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/scopes/{*parent}",
        guard: Guard::Requires(Action::EnvRead),
        summary: "List the children of a scope.",
        handler: || get(list_children),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secrets/{*scope}",
        guard: Guard::Requires(Action::SecretList),
        summary: "List secret names and metadata (never values).",
        handler: || get(list_secrets),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/secrets/{*scope}",
        guard: Guard::Requires(Action::SecretWrite),
        summary: "Write new versions of one or more secrets (atomic; optional cas).",
        handler: || put(put_secrets),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secret/{*scope}",
        guard: Guard::Requires(Action::SecretRead),
        summary: "Read a secret value (?key=NAME[&version=N]).",
        handler: || get(get_secret),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/secret-history/{*scope}",
        guard: Guard::Requires(Action::SecretList),
        summary: "List a secret's versions (?key=NAME).",
        handler: || get(history),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-delete/{*scope}",
        guard: Guard::Requires(Action::SecretDelete),
        summary: "Soft-delete versions (latest by default).",
        handler: || post(change_versions::<DELETE>),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-undelete/{*scope}",
        guard: Guard::Requires(Action::SecretDelete),
        summary: "Undelete versions (latest by default).",
        handler: || post(change_versions::<UNDELETE>),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/secret-destroy/{*scope}",
        guard: Guard::Requires(Action::SecretDestroy),
        summary: "Erase the ciphertext of versions for good.",
        handler: || post(change_versions::<DESTROY>),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/resolve/{*service}",
        guard: Guard::Requires(Action::SecretRead),
        summary: "Effective secrets of a service after inheritance and ${REF} interpolation.",
        handler: || get(resolve),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/keys/{org}",
        guard: Guard::Requires(Action::KeyRotate),
        summary: "Key terms and their usage.",
        handler: || get(key_status),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/keys/{org}/rotate",
        guard: Guard::Requires(Action::KeyRotate),
        summary: "Start a new key term.",
        handler: || post(rotate),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/keys/{org}/rewrap",
        guard: Guard::Requires(Action::KeyRotate),
        summary: "Re-encrypt up to ?limit=N versions under the newest term.",
        handler: || post(rewrap),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/auth/whoami",
        guard: Guard::Caller,
        summary: "The caller's principal, authentication method and role bindings.",
        handler: || get(identity::whoami),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/login",
        guard: Guard::Public,
        summary: "Password (and TOTP) login; returns a 12-hour session token once.",
        handler: || post(identity::login),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/auth/password",
        guard: Guard::Caller,
        summary: "Set the caller's password.",
        handler: || put(identity::set_password),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/mfa/enroll",
        guard: Guard::Caller,
        summary: "Start TOTP enrolment; returns the secret once.",
        handler: || post(identity::mfa_enroll),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/auth/mfa/confirm",
        guard: Guard::Caller,
        summary: "Confirm TOTP enrolment with a current code.",
        handler: || post(identity::mfa_confirm),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/policy/check",
        guard: Guard::Caller,
        summary: "Explain the decision for a principal, action and path.",
        handler: || post(identity::policy_check),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/users",
        guard: Guard::Requires(Action::MemberManage),
        summary: "List users and service accounts (?org=ORG).",
        handler: || get(identity::list_users),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/users",
        guard: Guard::Requires(Action::MemberManage),
        summary: "Create a user or service account.",
        handler: || post(identity::create_user),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/users/{id}",
        guard: Guard::Caller,
        summary: "Show a user or service account.",
        handler: || get(identity::show_user),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/users/{id}/disable",
        guard: Guard::Requires(Action::MemberManage),
        summary: "Disable a principal and revoke all its tokens and sessions.",
        handler: || post(identity::disable_user),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/tokens",
        guard: Guard::Caller,
        summary: "List tokens (own, or ?principal=sa:NAME).",
        handler: || get(identity::list_tokens),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/tokens",
        guard: Guard::Caller,
        summary: "Create an API token (for yourself or a service account); shown once.",
        handler: || post(identity::create_token),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/tokens/{id}/revoke",
        guard: Guard::Caller,
        summary: "Revoke a token.",
        handler: || post(identity::revoke_token),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/workload-tokens/{*service}",
        guard: Guard::Requires(Action::WorkloadIssue),
        summary: "Issue a short-lived workload token (EdDSA JWT) for a service.",
        handler: || post(identity::workload_token),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/ssh-keys",
        guard: Guard::Caller,
        summary: "List the caller's SSH public keys.",
        handler: || get(identity::list_ssh_keys),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/ssh-keys",
        guard: Guard::Caller,
        summary: "Add an SSH public key (ed25519, ecdsa, rsa >= 3072).",
        handler: || post(identity::add_ssh_key),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/ssh-keys/remove",
        guard: Guard::Caller,
        summary: "Remove one of the caller's SSH keys by fingerprint.",
        handler: || post(identity::remove_ssh_key),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/roles/{org}",
        guard: Guard::Requires(Action::EnvRead),
        summary: "List built-in and custom roles.",
        handler: || get(identity::list_roles),
    },
    RouteSpec {
        method: "PUT",
        path: "/api/v1/roles/{org}",
        guard: Guard::Requires(Action::RoleManage),
        summary: "Create or replace a custom role from its YAML.",
        handler: || put(identity::apply_role),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/roles/{org}/{name}",
        guard: Guard::Requires(Action::EnvRead),
        summary: "Show a role and its YAML.",
        handler: || get(identity::show_role),
    },
    RouteSpec {
        method: "DELETE",
        path: "/api/v1/roles/{org}/{name}",
        guard: Guard::Requires(Action::RoleManage),
        summary: "Delete an unbound custom role.",
        handler: || delete(identity::delete_role),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/bindings",
        guard: Guard::Requires(Action::MemberManage),
        summary: "List role bindings (?org=ORG; none: at the root).",
        handler: || get(identity::list_bindings),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/bindings",
        guard: Guard::Requires(Action::MemberManage),
        summary: "Grant a role at a scope (Owner needs ownership.transfer).",
        handler: || post(identity::grant),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/bindings/revoke",
        guard: Guard::Requires(Action::MemberManage),
        summary: "Revoke a role binding (Owner needs ownership.transfer).",
        handler: || post(identity::revoke),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit-key",
        guard: Guard::Public,
        summary: "The audit checkpoint verifier key and its fingerprint (public).",
        handler: || get(audit::key),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/entries",
        guard: Guard::Requires(Action::AuditRead),
        summary: "Entries of `system` or an organization's log (?from=SEQ&limit&actor&action&target&since_ms&until_ms).",
        handler: || get(audit::entries),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/checkpoint",
        guard: Guard::Requires(Action::AuditRead),
        summary: "The newest signed checkpoint (C2SP signed note).",
        handler: || get(audit::checkpoint),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/proof",
        guard: Guard::Requires(Action::AuditRead),
        summary: "Inclusion proof of entry ?seq=N against the newest checkpoint.",
        handler: || get(audit::proof),
    },
    RouteSpec {
        method: "GET",
        path: "/api/v1/audit/{log}/export",
        guard: Guard::Requires(Action::AuditExport),
        summary: "Export bundle (tar) for offline verification (?since_ms&until_ms&format=jsonl|csv|ocsf).",
        handler: || get(audit::export),
    },
    RouteSpec {
        method: "POST",
        path: "/api/v1/audit/{log}/verify",
        guard: Guard::Requires(Action::AuditExport),
        summary: "Verify the stored log against its signed checkpoints.",
        handler: || post(audit::verify),
    },
];

/// Builds the router from [`ROUTES`].
pub fn router(app: AppState) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |r, spec| {
            r.route(spec.path, (spec.handler)())
        })
        .fallback(|| async { ApiError::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .with_state(app)
}

/// A JSON request body: size-limited, `application/json`, every failure a
/// JSON 4xx naming the problem.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {BODY_LIMIT} bytes"),
            )
        };
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| too_large())?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

fn path_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::invalid(format!("invalid path: {e}")))
}

fn scope_arg(p: Result<Path<String>, PathRejection>) -> Result<ScopePath, ApiError> {
    Ok(ScopePath::parse(&path_arg(p)?)?)
}

fn query_arg<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))
}

fn secret_name(key: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(key).map_err(|e| ApiError::from(e).field("key"))
}

fn target(scope: &ScopePath, name: &SecretName) -> String {
    format!("{scope}#{name}")
}

fn version_info(m: &warden_vault::VersionMeta) -> VersionInfo {
    VersionInfo {
        version: m.version,
        key_term: m.key_term,
        created_at: m.created_at,
        deleted_at: m.deleted_at,
        destroyed_at: m.destroyed_at,
    }
}

fn scope_out(r: warden_store::ScopeRow) -> warden_api::Scope {
    warden_api::Scope {
        path: r.path,
        kind: r.kind,
        mode: r.mode,
        max_versions: r.max_versions,
        created_at: r.created_at,
    }
}

fn sys_status_out(s: warden_vault::SealStatus) -> SysStatus {
    SysStatus {
        initialized: s.initialized,
        sealed: s.sealed,
        method: s.method.map(str::to_owned),
        threshold: s.threshold,
        progress: s.progress,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<AppState>) -> Response {
    let database = app.store.ping().await.is_ok();
    let sealed = app.vault.is_sealed();
    let status = if database && !sealed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": status == StatusCode::OK,
        "sealed": sealed,
        "database": if database { "ok" } else { "unreachable" },
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(app.vault.is_sealed()),
    )
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn sys_status(State(app): State<AppState>) -> Result<Json<SysStatus>, ApiError> {
    Ok(Json(sys_status_out(app.vault.status().await?)))
}

async fn sys_init(
    State(app): State<AppState>,
    meta: RequestMeta,
    Body(req): Body<InitRequest>,
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
    app.run_public(&meta, "sys.init", None, async {
        let out = app.vault.init(method, false).await?;
        let token = app.create_owner(FIRST_OWNER).await?;
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

fn wire(s: &str) -> Result<WireValue, ApiError> {
    warden_types::SecretValue::from_utf8(s.as_bytes())
        .map(WireValue)
        .ok_or_else(ApiError::internal)
}

async fn sys_unseal(
    State(app): State<AppState>,
    meta: RequestMeta,
    Body(req): Body<UnsealRequest>,
) -> Result<Json<SysStatus>, ApiError> {
    app.run_public(&meta, "sys.unseal", None, async {
        let status = match (req.passphrase, req.share) {
            (Some(p), None) => app.vault.unseal_passphrase(p.0.expose()).await?,
            (None, Some(s)) => app.vault.unseal_share(s.0.expose()).await?,
            _ => return Err(ApiError::invalid("send exactly one of passphrase or share")),
        };
        Ok(Json(sys_status_out(status)))
    })
    .await
}

async fn sys_seal(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<SysStatus>, ApiError> {
    let app: &App = &app;
    app.run(
        &caller,
        Action::SysSeal,
        Scope::Root,
        "vault".into(),
        |permit| async move {
            app.vault.seal(&permit)?;
            app.audit_keys.forget();
            Ok(Json(sys_status_out(app.vault.status().await?)))
        },
    )
    .await
}

async fn list_orgs(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<ScopeList>, ApiError> {
    let app: &App = &app;
    // Everyone may ask; the answer holds only the organizations where the
    // caller may read scope metadata (all of them for a root binding).
    app.run_self(&caller, "env.read", async {
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

async fn list_children(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ScopeList>, ApiError> {
    let parent = scope_arg(path)?;
    let app: &App = &app;
    let principal = &caller.who().principal;
    app.run_stored(
        &caller,
        Action::EnvRead,
        Scope::Path(parent.clone()),
        parent.to_string(),
        |permit| async move {
            let rows = app.vault.list_scopes(&permit, &parent).await?;
            let mut scopes = Vec::with_capacity(rows.len());
            for row in rows {
                let Ok(path) = ScopePath::parse(&row.path) else {
                    continue;
                };
                // A deny rule below the parent hides the child.
                let resource = app.identity.resource(&app.store, Scope::Path(path)).await?;
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

async fn create_scope(
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
        return Err(ApiError::invalid(
            "`system` is reserved (it names the installation's own audit log)",
        )
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
    app.run_stored(
        &caller,
        Action::EnvManage,
        resource,
        path.to_string(),
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

async fn list_secrets(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SecretList>, ApiError> {
    let scope = scope_arg(path)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::SecretList,
        Scope::Path(scope.clone()),
        scope.to_string(),
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

async fn put_secrets(
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
    let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
    let target = format!("{scope}#{}", names.join(","));
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::SecretWrite,
        Scope::Path(scope.clone()),
        target,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    key: String,
    #[serde(default)]
    version: Option<i64>,
}

async fn get_secret(
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
    let target = match q.version {
        Some(v) => format!("{}@v{v}", target(&scope, &name)),
        None => target(&scope, &name),
    };
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::SecretRead,
        Scope::Path(scope.clone()),
        target,
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

async fn history(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let scope = scope_arg(path)?;
    let name = secret_name(&query_arg(q)?.key)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::SecretList,
        Scope::Path(scope.clone()),
        target(&scope, &name),
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
const DELETE: u8 = 0;
const UNDELETE: u8 = 1;
const DESTROY: u8 = 2;

async fn change_versions<const CHANGE: u8>(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<VersionsRequest>,
) -> Result<Json<VersionsChanged>, ApiError> {
    let scope = scope_arg(path)?;
    let name = secret_name(&req.key)?;
    if req.versions.len() > 100 || req.versions.iter().any(|v| *v < 1) {
        return Err(ApiError::invalid("versions: at most 100, each at least 1").field("versions"));
    }
    let (action, change) = match CHANGE {
        DELETE => (Action::SecretDelete, VersionChange::Delete),
        UNDELETE => (Action::SecretDelete, VersionChange::Undelete),
        _ => (Action::SecretDestroy, VersionChange::Destroy),
    };
    let app: &App = &app;
    app.run_stored(
        &caller,
        action,
        Scope::Path(scope.clone()),
        target(&scope, &name),
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

async fn resolve(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Resolved>, ApiError> {
    let service = scope_arg(path)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::SecretRead,
        Scope::Path(service.clone()),
        format!("{service}#*"),
        |permit| async move {
            let values = app.vault.resolve(&permit, &service).await?;
            Ok(Json(Resolved {
                service: service.to_string(),
                values: values.into_iter().map(|(k, v)| (k, WireValue(v))).collect(),
            }))
        },
    )
    .await
}

fn org_arg(p: Result<Path<String>, PathRejection>) -> Result<ScopePath, ApiError> {
    Ok(ScopePath::parse_kind(
        &path_arg(p)?,
        ScopeKind::Organization,
    )?)
}

async fn key_status(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<KeyStatus>, ApiError> {
    let org = org_arg(path)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::KeyRotate,
        Scope::Path(org.clone()),
        org.to_string(),
        |permit| async move {
            let terms = app.vault.key_status(&permit, &org).await?;
            Ok(Json(KeyStatus {
                org: org.to_string(),
                current_term: terms.iter().map(|t| t.term).max().unwrap_or(0),
                rotate_at: warden_vault::ROTATE_AT,
                terms: terms
                    .into_iter()
                    .map(|t| KeyTerm {
                        term: t.term,
                        created_at: t.created_at,
                        encryptions: t.encryptions,
                        versions: t.versions,
                    })
                    .collect(),
            }))
        },
    )
    .await
}

async fn rotate(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Rotated>, ApiError> {
    let org = org_arg(path)?;
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::KeyRotate,
        Scope::Path(org.clone()),
        org.to_string(),
        |permit| async move {
            Ok(Json(Rotated {
                term: app.vault.rotate(&permit, &org).await?,
            }))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<i64>,
}

async fn rewrap(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<RewrapStep>, ApiError> {
    let org = org_arg(path)?;
    let limit = query_arg(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit is between 1 and 1000").field("limit"));
    }
    let app: &App = &app;
    app.run_stored(
        &caller,
        Action::KeyRotate,
        Scope::Path(org.clone()),
        org.to_string(),
        |permit| async move {
            let p = app.vault.rewrap(&permit, &org, limit).await?;
            Ok(Json(RewrapStep {
                target_term: p.target_term,
                rewrapped: p.rewrapped,
                remaining: p.remaining,
            }))
        },
    )
    .await
}
