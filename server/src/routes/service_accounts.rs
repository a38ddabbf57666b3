//! Kubernetes workload identity: a cluster's service-account issuer, the
//! bindings of its service accounts to services, and the exchange of a
//! pod's projected service-account token for a workload token.
//!
//! The exchange is public (a pod has no Warden credential yet) and
//! refuses, in order: a source network locked by failed exchanges (429);
//! a cluster without an issuer and a token that does not verify against it
//! (401, the failure accounted per network like a failed login); a service
//! account not bound to the service on that cluster, or a service whose
//! environment is not placed on that cluster (403). Only then is a
//! workload token issued, for at most an hour and never past the
//! service-account token's own expiry.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_identity::kubernetes::{self as k8s, Jwks, ServiceAccountName};
use warden_pipeline::throttle::{self, retry_secs};
use warden_pipeline::{Operation, Target};
use warden_policies::{Action, Scope};
use warden_store::{IssuerRow, SaBindingRow};
use warden_types::{ScopeKind, ScopePath};

use super::clusters::cluster_name;
use super::*;
use crate::ApiError;
use crate::caller::{Caller, Meta};
use crate::clusters::LOCAL_CLUSTER;
use crate::state::App;

/// Largest body of `PUT /api/v1/clusters/{name}/issuer`: a JWKS of at most
/// 64 KiB, JSON-escaped, and the rest.
pub const ISSUER_BODY_LIMIT: usize = 160 * 1024;

/// Largest body of the exchange: a token of at most 16 KiB and the rest.
pub const EXCHANGE_BODY_LIMIT: usize = 20 * 1024;

/// The audience a cluster's tokens must include unless configured.
pub const DEFAULT_AUDIENCE: &str = "warden";

/// How the audit log names a cluster's service account:
/// `k8s:CLUSTER:system:serviceaccount:NS:NAME`.
fn sa_principal(cluster: &str, account: &ServiceAccountName) -> String {
    format!("k8s:{cluster}:{}", account.subject())
}

fn issuer_op(name: &'static str, cluster: &str) -> Operation {
    Operation::new(
        name,
        Action::ClusterManage,
        Scope::Root,
        Target::named("cluster", "/", Some(cluster.to_owned())),
    )
}

fn issuer_info(row: &IssuerRow) -> Result<IssuerInfo, ApiError> {
    // Stored only after validation, under a MAC: a set that no longer
    // parses is Warden's fault.
    let jwks = Jwks::parse(row.jwks.as_bytes()).map_err(|_| ApiError::internal())?;
    Ok(IssuerInfo {
        cluster: row.cluster.clone(),
        issuer: row.issuer.clone(),
        audience: row.audience.clone(),
        keys: jwks
            .keys()
            .iter()
            .map(|k| IssuerKeyInfo {
                kid: k.kid().to_owned(),
                algorithm: k.algorithm().as_str().to_owned(),
                bits: u32::try_from(k.bits()).unwrap_or(u32::MAX),
            })
            .collect(),
        updated_by: row.updated_by.clone(),
        updated_at: row.updated_at,
    })
}

fn cluster_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    cluster_name(&path_arg(p)?)
}

pub(super) async fn set_issuer(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<IssuerSet, ISSUER_BODY_LIMIT>,
) -> Result<Json<IssuerInfo>, ApiError> {
    let cluster = cluster_arg(path)?;
    if cluster == LOCAL_CLUSTER {
        return Err(ApiError::invalid(
            "`local` is warden dev's in-process agent, not a Kubernetes cluster",
        )
        .field("cluster"));
    }
    k8s::check_issuer(&req.issuer).map_err(|e| ApiError::invalid(e.to_string()).field("issuer"))?;
    let audience = req.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
    k8s::check_audience(&audience)
        .map_err(|e| ApiError::invalid(e.to_string()).field("audience"))?;
    let bytes = serde_json::to_vec(&req.jwks).map_err(|_| ApiError::internal())?;
    let jwks = Jwks::parse(&bytes).map_err(|e| ApiError::invalid(e.to_string()).field("jwks"))?;
    let app: &App = &app;
    let by = caller.id().to_owned();
    app.pipeline
        .run_stored(
            &caller,
            issuer_op("cluster.issuer.set", &cluster),
            |_permit| async move {
                let row = IssuerRow {
                    cluster: cluster.clone(),
                    issuer: req.issuer,
                    audience,
                    jwks: jwks.to_json(),
                    updated_by: by,
                    updated_at: warden_store::now_ms(),
                };
                app.store.set_cluster_issuer(row.clone()).await?;
                Ok(Json(issuer_info(&row)?))
            },
        )
        .await
}

pub(super) async fn show_issuer(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<IssuerInfo>, ApiError> {
    let cluster = cluster_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            issuer_op("cluster.issuer.show", &cluster),
            |_permit| async {
                let row = app.store.cluster_issuer(&cluster).await?.ok_or_else(|| {
                    ApiError::not_found(format!(
                        "cluster {cluster} has no service-account issuer \
                         (`warden cluster issuer set {cluster} ...`)"
                    ))
                })?;
                Ok(Json(issuer_info(&row)?))
            },
        )
        .await
}

/// The service account of a binding request, validated.
fn binding_arg(req: &SaBindingRequest) -> Result<(String, ServiceAccountName), ApiError> {
    let cluster = cluster_name(&req.cluster)?;
    let account = ServiceAccountName::new(&req.namespace, &req.service_account).map_err(|why| {
        let field = if k8s::is_dns_label(&req.namespace) {
            "service_account"
        } else {
            "namespace"
        };
        ApiError::invalid(why).field(field)
    })?;
    Ok((cluster, account))
}

fn binding_op(name: &'static str, service: &ScopePath, principal: &str) -> Operation {
    Operation::new(
        name,
        Action::WorkloadIssue,
        Scope::Path(service.clone()),
        Target::binding(principal, "workload", service),
    )
}

fn binding_info(r: SaBindingRow) -> SaBindingInfo {
    SaBindingInfo {
        service: r.service,
        cluster: r.cluster,
        namespace: r.namespace,
        service_account: r.service_account,
        created_by: r.created_by,
        created_at: r.created_at,
    }
}

pub(super) async fn bind(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<SaBindingRequest>,
) -> Result<Json<SaBindingInfo>, ApiError> {
    let service = ScopePath::parse_kind(&path_arg(path)?, ScopeKind::Service)?;
    let (cluster, account) = binding_arg(&req)?;
    let app: &App = &app;
    let binder = &caller.who().principal;
    let by = caller.id().to_owned();
    let principal = sa_principal(&cluster, &account);
    app.pipeline
        .run_stored(
            &caller,
            binding_op("workload.sa_bind", &service, &principal),
            |_permit| async move {
                // A binding hands out the service's workload credential.
                super::users::may_hand_out_workload(app, binder, &service).await?;
                let row = SaBindingRow {
                    cluster,
                    namespace: account.namespace().to_owned(),
                    service_account: account.name().to_owned(),
                    service: service.as_str().to_owned(),
                    created_by: by,
                    created_at: warden_store::now_ms(),
                };
                // Bound already: the binding as it stands is the answer.
                if !app.store.add_sa_binding(row.clone()).await? {
                    let stored = app
                        .store
                        .sa_binding(
                            &row.cluster,
                            &row.namespace,
                            &row.service_account,
                            &row.service,
                        )
                        .await?;
                    return Ok(Json(binding_info(stored.unwrap_or(row))));
                }
                Ok(Json(binding_info(row)))
            },
        )
        .await
}

pub(super) async fn unbind(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<SaBindingRequest>,
) -> Result<StatusCode, ApiError> {
    let service = ScopePath::parse_kind(&path_arg(path)?, ScopeKind::Service)?;
    let (cluster, account) = binding_arg(&req)?;
    let app: &App = &app;
    let principal = sa_principal(&cluster, &account);
    app.pipeline
        .run_stored(
            &caller,
            binding_op("workload.sa_unbind", &service, &principal),
            |_permit| async move {
                let removed = app
                    .store
                    .remove_sa_binding(
                        &cluster,
                        account.namespace(),
                        account.name(),
                        service.as_str(),
                    )
                    .await?;
                if !removed {
                    return Err(ApiError::not_found(format!(
                        "service account {}/{} of cluster {cluster} is not bound to {service}",
                        account.namespace(),
                        account.name()
                    )));
                }
                Ok(StatusCode::NO_CONTENT)
            },
        )
        .await
}

/// `GET /api/v1/sa-bindings?scope=...`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeQuery {
    /// ORG, ORG/PROJECT, ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE.
    #[schemars(regex(pattern = warden_types::pattern::SCOPE_PATH))]
    pub(super) scope: String,
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<SaBindingList>, ApiError> {
    let scope =
        ScopePath::parse(&query_arg(q)?.scope).map_err(|e| ApiError::from(e).field("scope"))?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "workload.sa_bindings",
                Action::WorkloadIssue,
                Scope::Path(scope.clone()),
                Target::scope(&scope),
            ),
            |_permit| async {
                let rows = app.store.sa_bindings_under(scope.as_str()).await?;
                Ok(Json(SaBindingList {
                    bindings: rows.into_iter().map(binding_info).collect(),
                }))
            },
        )
        .await
}

/// The exchange's audit name.
const EXCHANGE: &str = "workload_token.exchange";
/// How a caller of the exchange is said to authenticate.
const METHOD: &str = "k8s-sa-token";

pub(super) async fn exchange(
    State(app): State<AppState>,
    meta: Meta,
    Body(req): Body<TokenExchange, EXCHANGE_BODY_LIMIT>,
) -> Result<(StatusCode, Json<WorkloadToken>), ApiError> {
    let cluster = cluster_name(&req.cluster)?;
    let service = ScopePath::parse_kind(&req.service, ScopeKind::Service)
        .map_err(|e| ApiError::from(e).field("service"))?;
    let token = req.token.0.expose();
    if token.len() > k8s::MAX_TOKEN_BYTES {
        return Err(
            ApiError::invalid("the service-account token is longer than 16 KiB").field("token"),
        );
    }
    let app: &App = &app;
    let throttles = app.pipeline.throttles();
    let network = meta.0.source_ip.as_deref().map(throttle::network);
    let network = network.as_deref().unwrap_or_default();
    let cluster_target = || Target::named("cluster", "/", Some(cluster.clone()));
    let limited = |wait| {
        warden_pipeline::Error::rate_limited(
            retry_secs(wait),
            format!(
                "too many refused token exchanges; retry in {} s",
                retry_secs(wait)
            ),
        )
    };

    // Authenticate: the token against the cluster's issuer, first. A
    // refusal here names no account (none was proved) and is accounted per
    // network; a token that verifies is never held back by its network
    // (others' garbage must not lock a node's pods out), only by its own
    // account's refusals.
    let now = now_secs();
    let verified = match app.store.cluster_issuer(&cluster).await? {
        None => Err(format!(
            "cluster {cluster} has no service-account issuer configured \
             (`warden cluster issuer set {cluster}`)"
        )),
        Some(row) => {
            let jwks = Jwks::parse(row.jwks.as_bytes()).map_err(|_| ApiError::internal())?;
            let issuer = k8s::Issuer {
                issuer: &row.issuer,
                audience: &row.audience,
                keys: &jwks,
            };
            k8s::verify(token, &issuer, now).map_err(|e| e.to_string())
        }
    };
    let sa = match verified {
        Ok(sa) => sa,
        Err(why) => {
            if let Err(wait) = throttles.exchange_source.check(network) {
                app.pipeline
                    .record_failure(&meta.0, EXCHANGE, None, cluster_target(), "rate_limited")
                    .await?;
                return Err(limited(wait).into());
            }
            throttles.exchange_source.failure(network);
            app.pipeline
                .record_failure(&meta.0, EXCHANGE, None, cluster_target(), "unauthenticated")
                .await?;
            return Err(ApiError::unauthenticated(why));
        }
    };

    // Authorize and issue, audited under the account the token proved,
    // with the pod it names.
    let principal = sa_principal(&cluster, &sa.account);
    let pod_target = || Target::named("pod", &service, Some(sa.pod.clone()));
    let pod_key = format!("{cluster}/{}", sa.pod_uid);
    let locked = throttles
        .exchange_account
        .check(&principal)
        .and(throttles.exchange_pod.check(&pod_key));
    if let Err(wait) = locked {
        app.pipeline
            .record_failure(&meta.0, EXCHANGE, None, pod_target(), "rate_limited")
            .await?;
        return Err(limited(wait).into());
    }
    let result = app
        .pipeline
        .run_public_on(
            &meta.0,
            EXCHANGE,
            Some((&principal, METHOD)),
            pod_target(),
            async {
                let account = &sa.account;
                let bound = app
                    .store
                    .sa_binding(
                        &cluster,
                        account.namespace(),
                        account.name(),
                        service.as_str(),
                    )
                    .await?;
                if bound.is_none() {
                    return Err(ApiError::forbidden(format!(
                        "service account {}/{} of cluster {cluster} is not bound to {service} \
                         (`warden workload sa-bind {service} --cluster {cluster} \
                         --service-account {}/{}`)",
                        account.namespace(),
                        account.name(),
                        account.namespace(),
                        account.name()
                    )));
                }
                let env = service.parent().ok_or_else(ApiError::internal)?;
                let placed = app.clusters.cluster_of(&app.store, &env).await?;
                if placed != cluster {
                    return Err(ApiError::forbidden(format!(
                        "{service} does not run on cluster {cluster}: its environment {env} is \
                         placed elsewhere, and a binding counts only on the cluster the \
                         service runs on"
                    )));
                }
                if app.store.scope(service.as_str()).await?.is_none() {
                    return Err(ApiError::not_found(format!("service {service} not found")));
                }
                // At most an hour, and never past the token it replaces:
                // the issuer reads the clock again, up to a second later.
                let ttl = sa
                    .exp
                    .saturating_sub(now_secs())
                    .saturating_sub(1)
                    .min(super::users::WORKLOAD_MAX_TTL_SECS);
                if ttl == 0 {
                    return Err(ApiError::unauthenticated(
                        "the service-account token expires within a second; present the \
                         refreshed one",
                    ));
                }
                let (jwt, claims) = issue_workload(app, &service, ttl).await?;
                // The tenant's own log records the credential too, as
                // pods' credentials are (no credential its auditors do not
                // see).
                app.pipeline
                    .record_for(
                        &Scope::Path(service.clone()),
                        "workload_token.create",
                        pod_target(),
                        "ok",
                    )
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
        .await;
    if result.as_ref().is_err_and(|e| e.status().is_client_error()) {
        throttles.exchange_account.failure(&principal);
    }
    throttles.exchange_pod.failure(&pod_key);
    result
}
