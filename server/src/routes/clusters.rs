//! Clusters and their agents: join tokens, enrollment, the registry, and
//! placing environments on clusters.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use warden_api::*;
use warden_pipeline::{Operation, Target};
use warden_policies::{Action, Scope};
use warden_runtime::{Runtime, Selector};
use warden_store::{ClusterRow, JoinTokenRow, PlacementRow, Redeemed};
use warden_types::{ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::{Caller, Meta};
use crate::clusters::LOCAL_CLUSTER;
use crate::enroll;
use crate::state::App;

/// Join tokens start with this, so they are told apart from API tokens.
const JOIN_TOKEN_PREFIX: &str = "wjt_";

/// Default and longest join-token lifetimes.
const JOIN_TOKEN_TTL: u64 = 900;
const JOIN_TOKEN_MAX_TTL: u64 = 86_400;

/// A cluster name: a DNS label (it becomes the agent certificate's CN).
pub(crate) fn cluster_name(s: &str) -> Result<String, ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(
            ApiError::invalid("cluster names are 1-63 lowercase letters, digits and inner hyphens")
                .field("cluster"),
        )
    }
}

fn name_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    cluster_name(&path_arg(p)?)
}

fn root_op(name: &'static str, cluster: &str) -> Operation {
    Operation::new(
        name,
        Action::ClusterManage,
        Scope::Root,
        Target::named("cluster", "/", Some(cluster.to_owned())),
    )
}

pub(super) async fn join_token(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<JoinTokenRequest>,
) -> Result<(StatusCode, Json<JoinToken>), ApiError> {
    let cluster = name_arg(path)?;
    if cluster == LOCAL_CLUSTER {
        return Err(ApiError::invalid(
            "`local` is warden dev's in-process agent; name another cluster",
        )
        .field("cluster"));
    }
    let ttl = req.ttl_seconds.unwrap_or(JOIN_TOKEN_TTL);
    if !(1..=JOIN_TOKEN_MAX_TTL).contains(&ttl) {
        return Err(ApiError::invalid("ttl_seconds: between 1 and 86400").field("ttl_seconds"));
    }
    let app: &App = &app;
    let by = caller.id().to_owned();
    app.pipeline
        .run_stored(
            &caller,
            root_op("cluster.join_token", &cluster),
            |_permit| async {
                // The CA exists before any agent can enroll.
                enroll::agent_ca(app).await?;
                let secret = warden_identity::token::generate_api_token();
                let token = format!(
                    "{JOIN_TOKEN_PREFIX}{}",
                    secret.trim_start_matches(warden_identity::token::API_TOKEN_PREFIX)
                );
                let now = warden_store::now_ms();
                let expires_at = now + i64::try_from(ttl * 1000).unwrap_or(i64::MAX);
                let exists = app.store.cluster(&cluster).await?.is_some();
                app.store
                    .add_join_token(
                        ClusterRow {
                            name: cluster.clone(),
                            created_by: by,
                            created_at: now,
                            cert_fingerprint: None,
                            enrolled_at: None,
                        },
                        JoinTokenRow {
                            token_hash: warden_identity::token::token_hash(&token).to_vec(),
                            cluster: cluster.clone(),
                            created_at: now,
                            expires_at,
                            used_at: None,
                        },
                        !exists,
                    )
                    .await?;
                Ok((
                    StatusCode::CREATED,
                    Json(JoinToken {
                        cluster,
                        token,
                        expires_at,
                    }),
                ))
            },
        )
        .await
}

/// Where an agent should dial: the listener's address, or, when it listens
/// on every address, the host the agent reached the API by.
fn advertised(link: std::net::SocketAddr, headers: &axum::http::HeaderMap) -> String {
    if !link.ip().is_unspecified() {
        return link.to_string();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        })
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    match host {
        Some(h) => format!("{h}:{}", link.port()),
        None => link.to_string(),
    }
}

pub(super) async fn enroll(
    State(app): State<AppState>,
    meta: Meta,
    headers: axum::http::HeaderMap,
    Body(req): Body<EnrollRequest, PUBLIC_BODY_LIMIT>,
) -> Result<Json<Enrolled>, ApiError> {
    let app: &App = &app;
    let hash = warden_identity::token::token_hash(&req.token).to_vec();
    app.pipeline
        .run_public(&meta.0, "cluster.enroll", None, async {
            let refused = |why: &str| ApiError::unauthenticated(format!("join token {why}"));
            let link = app.clusters.link_addr().ok_or_else(|| {
                ApiError::from(warden_pipeline::Error::new(
                    warden_pipeline::ErrorKind::Unavailable,
                    "unavailable",
                    "this server does not accept agent links (set agent_listen)",
                ))
            })?;
            // Checked before the CSR is looked at; redeemed atomically below.
            let token = app
                .store
                .join_token(&hash)
                .await?
                .ok_or_else(|| refused("unknown"))?;
            if token.used_at.is_some() {
                return Err(refused("already used"));
            }
            if token.expires_at <= warden_store::now_ms() {
                return Err(refused("expired"));
            }
            // Named before the token is spent: a failure here leaves it
            // usable. This replica under the name the other replicas and
            // later tells use (`agent_advertise`), else as the agent
            // reached it; one name per replica, or the agent's links to it
            // would replace each other.
            let links = app
                .clusters
                .endpoints(&app.store, Some(advertised(link, &headers)))
                .await?;
            let ca = enroll::agent_ca(app).await?;
            let cert = ca.issue(&req.csr, &token.cluster)?;
            let fingerprint = enroll::fingerprint(cert.der());
            let cluster = match app
                .store
                .redeem_join_token(hash.clone(), fingerprint, warden_store::now_ms())
                .await?
            {
                Redeemed::Enrolled(c) => c,
                Redeemed::Unknown => return Err(refused("unknown")),
                Redeemed::Used => return Err(refused("already used")),
                Redeemed::Expired => return Err(refused("expired")),
            };
            // A previous agent of this cluster holds a certificate the hub
            // no longer admits; end its link now.
            app.clusters.hub().disconnect(&cluster.name);
            Ok(Json(Enrolled {
                cluster: cluster.name,
                certificate: cert.pem(),
                links: links
                    .into_iter()
                    .map(|e| LinkEndpoint {
                        node: e.node,
                        address: e.address,
                    })
                    .collect(),
            }))
        })
        .await
}

/// What the registry and the hub know of a cluster.
async fn info(
    app: &App,
    row: Option<&ClusterRow>,
    name: &str,
    placements: &[PlacementRow],
) -> ClusterInfo {
    let environments: Vec<String> = placements
        .iter()
        .filter(|p| p.cluster == name)
        .map(|p| p.env.clone())
        .collect();
    let link = app.clusters.link_info(name);
    let connected = link.as_ref().is_some_and(|l| l.connected);
    let (mut runtime, mut version, mut node, mut pods) = (None, None, None, None);
    if connected {
        let remote = app.clusters.remote(name);
        if let Ok(Ok(hello)) = tokio::time::timeout(Duration::from_secs(2), remote.hello()).await {
            runtime = Some(hello.runtime);
            version = Some(hello.version);
            node = Some(hello.node);
        }
        // The agent's own count (for `local`, also the environments that
        // are on it for want of a placement).
        let count = async {
            let mut n = 0u32;
            for service in remote.services().await? {
                let list = remote.pods(&Selector::Service(service)).await?;
                n = n.saturating_add(u32::try_from(list.len()).unwrap_or(u32::MAX));
            }
            Ok::<_, warden_runtime::RuntimeError>(n)
        };
        pods = tokio::time::timeout(Duration::from_secs(2), count)
            .await
            .ok()
            .and_then(Result::ok);
    }
    ClusterInfo {
        name: name.to_owned(),
        connected,
        runtime,
        version,
        node,
        address: link.as_ref().map(|l| l.address.clone()),
        last_seen_at: link.map(|l| l.last_seen_at),
        enrolled_at: row.and_then(|r| r.enrolled_at),
        environments,
        pods,
    }
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<ClusterList>, ApiError> {
    let app: &App = &app;
    app.pipeline
        .run_stored(&caller, root_op("cluster.list", "*"), |_permit| async {
            let rows = app.store.clusters().await?;
            let placements = app.store.placements().await?;
            let mut clusters = Vec::with_capacity(rows.len() + 1);
            if app.clusters.link_info(LOCAL_CLUSTER).is_some() {
                clusters.push(info(app, None, LOCAL_CLUSTER, &placements).await);
            }
            for r in &rows {
                clusters.push(info(app, Some(r), &r.name, &placements).await);
            }
            Ok(Json(ClusterList { clusters }))
        })
        .await
}

pub(super) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ClusterInfo>, ApiError> {
    let name = name_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(&caller, root_op("cluster.show", &name), |_permit| async {
            let row = app.store.cluster(&name).await?;
            if row.is_none() && !(name == LOCAL_CLUSTER && app.clusters.link_info(&name).is_some())
            {
                return Err(ApiError::not_found(format!("cluster {name} not found")));
            }
            let placements = app.store.placements().await?;
            Ok(Json(info(app, row.as_ref(), &name, &placements).await))
        })
        .await
}

pub(super) async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = name_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run(&caller, root_op("cluster.remove", &name), |_permit| async {
            if !app.store.remove_cluster(&name).await? {
                return Err(ApiError::not_found(format!("cluster {name} not found")));
            }
            // Its certificate is no longer admitted; its live link ends now,
            // and with it every stream on it.
            app.clusters.hub().disconnect(&name);
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}

pub(super) async fn place(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<Placement>,
) -> Result<StatusCode, ApiError> {
    let env = ScopePath::parse_kind(&path_arg(path)?, ScopeKind::Environment)?;
    let cluster = cluster_name(&req.cluster)?;
    let app: &App = &app;
    // Which machines run an organization's code is the installation's
    // decision, not the organization's (review of issue 10, finding 4):
    // placing is `cluster.manage`, at the root.
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "env.place",
                Action::ClusterManage,
                Scope::Root,
                Target::scope(&env),
            ),
            |_permit| async {
                if app.store.scope(env.as_str()).await?.is_none() {
                    return Err(ApiError::not_found(format!("{env} not found")));
                }
                if cluster != LOCAL_CLUSTER && app.store.cluster(&cluster).await?.is_none() {
                    return Err(ApiError::not_found(format!("cluster {cluster} not found")));
                }
                app.store
                    .place(PlacementRow {
                        env: env.as_str().to_owned(),
                        cluster,
                    })
                    .await?;
                Ok(StatusCode::NO_CONTENT)
            },
        )
        .await
}
