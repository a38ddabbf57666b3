//! Services' workloads and their pods: apply, stop/start/restart/delete,
//! list pods, read logs. Each is authorized and audited by the pipeline on
//! the service (or environment) scope, then carried out by the cluster the
//! environment runs on (`crate::clusters`).

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use warden_agent::RemoteRuntime;
use warden_api::*;
use warden_pipeline::{Operation, Target};
use warden_policies::{Action, Scope};
use warden_runtime::{
    LogOptions, OnChange, PodName, PodRef, PodStatus, Runtime, Selector, ServiceRef, WorkloadSpec,
};
use warden_types::{ScopeKind, ScopePath};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;

fn service_arg(p: Result<Path<String>, PathRejection>) -> Result<ServiceRef, ApiError> {
    let path = ScopePath::parse_kind(&path_arg(p)?, ScopeKind::Service)?;
    Ok(ServiceRef::from_path(path)?)
}

/// The service must exist as a scope: a workload for a service nobody
/// created would escape its environment's policies.
async fn existing(app: &App, path: &ScopePath) -> Result<(), ApiError> {
    match app.store.scope(path.as_str()).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("{path} not found"))),
    }
}

fn op(name: &'static str, action: Action, path: &ScopePath) -> Operation {
    Operation::new(name, action, Scope::Path(path.clone()), Target::scope(path))
}

/// The runtime of the cluster `env` is placed on.
async fn runtime_for(app: &App, env: &ScopePath) -> Result<RemoteRuntime, ApiError> {
    Ok(app.clusters.runtime_of(&app.store, env).await?)
}

pub(super) fn pod_info(p: PodStatus) -> PodInfo {
    PodInfo {
        name: p.name.as_str().to_owned(),
        service: p.service.as_str().to_owned(),
        phase: p.phase.to_string(),
        ready: p.ready,
        restarts: p.restarts,
        started_at_ms: p.started_at_ms,
        last_exit: p.last_exit.map(|e| match e.status.signal {
            Some(s) => format!("signal {s} ({})", e.reason),
            None => format!("exit {} ({})", e.status.code, e.reason),
        }),
        node: p.node,
        isolation: p.isolation.to_string(),
    }
}

/// The pods `selector` names, from the cluster `rt` reaches.
async fn pod_list(rt: &RemoteRuntime, selector: &Selector) -> Result<PodList, ApiError> {
    let mut pods = rt.pods(selector).await?;
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(PodList {
        cluster: rt.agent().to_owned(),
        pods: pods.into_iter().map(pod_info).collect(),
    })
}

/// Pods of a service get a workload credential that reads its secrets, so
/// whoever makes pods start (apply, start, restart) must hold, at the
/// service and in its environment's mode, every permission of the workload
/// role (`secret.read`, `secret.list`, `env.read`). Otherwise `deploy.run`
/// alone would read secret values through a pod (a Developer in
/// production).
async fn may_start_pods(app: &App, caller: &Caller, service: &ScopePath) -> Result<(), ApiError> {
    let resource = app
        .pipeline
        .identity()
        .resource(&app.store, Scope::Path(service.clone()))
        .await?;
    let principal = &caller.who().principal;
    let workload = warden_policies::workload_role();
    let actions = workload.rules().iter().flat_map(|r| r.actions());
    for action in actions {
        if !matches!(
            warden_policies::authorize(principal, action, &resource),
            warden_policies::Decision::Allow(_)
        ) {
            return Err(ApiError::forbidden(format!(
                "starting pods of {service} gives them a credential that holds {action}, \
                 which you do not hold there"
            )));
        }
    }
    Ok(())
}

/// Parses a spec off the async workers (a hostile document can cost CPU
/// time), once the caller is authorized.
async fn parse_spec(text: String) -> Result<WorkloadSpec, ApiError> {
    tokio::task::spawn_blocking(move || WorkloadSpec::from_yaml(&text))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| ApiError::from(e).field("spec"))
}

pub(super) async fn apply(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<WorkloadApply>,
) -> Result<Json<PodList>, ApiError> {
    let service = service_arg(path)?;
    let app: &App = &app;
    let (path, env) = (service.path().clone(), service.environment());
    // `run`, not `run_stored`: starting processes is an effect outside the
    // database, so it waits for the durable intent.
    app.pipeline
        .run(
            &caller,
            op("workload.apply", Action::DeployRun, &path),
            |_permit| async {
                may_start_pods(app, &caller, &path).await?;
                let spec = parse_spec(req.spec).await?;
                existing(app, &path).await?;
                let rt = runtime_for(app, &env).await?;
                // Before the pods start: they fetch what is pinned.
                // A rolled workload is pinned before its pods start (they
                // fetch what is pinned); a pin is dropped only once a
                // workload without rollouts is in place. A failed apply may
                // still have declared the workload, so it keeps what is
                // there; a pin without a workload is dropped by the
                // controller (review 14, F1; review 15, 1).
                let rolled = spec.secrets().on_change == OnChange::Rollout;
                if rolled {
                    crate::rollouts::adopt(app, &path).await?;
                }
                rt.apply(&service, &spec).await?;
                if !rolled {
                    app.store.drop_rollout(path.as_str()).await?;
                }
                Ok(Json(
                    pod_list(&rt, &Selector::Service(service.clone())).await?,
                ))
            },
        )
        .await
}

pub(super) async fn status(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PodList>, ApiError> {
    let service = service_arg(path)?;
    let app: &App = &app;
    let (path, env) = (service.path().clone(), service.environment());
    app.pipeline
        .run_stored(
            &caller,
            op("workload.status", Action::EnvRead, &path),
            |_permit| async {
                existing(app, &path).await?;
                let rt = runtime_for(app, &env).await?;
                Ok(Json(
                    pod_list(&rt, &Selector::Service(service.clone())).await?,
                ))
            },
        )
        .await
}

pub(super) async fn control(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<WorkloadControl>,
) -> Result<StatusCode, ApiError> {
    let service = service_arg(path)?;
    let name = match req.action.as_str() {
        "stop" => "workload.stop",
        "start" => "workload.start",
        "restart" => "workload.restart",
        "delete" => "workload.delete",
        _ => {
            return Err(
                ApiError::invalid("action is stop, start, restart or delete").field("action"),
            );
        }
    };
    let app: &App = &app;
    let (path, env) = (service.path().clone(), service.environment());
    app.pipeline
        .run(
            &caller,
            op(name, Action::DeployRun, &path),
            |_permit| async {
                if matches!(req.action.as_str(), "start" | "restart") {
                    may_start_pods(app, &caller, &path).await?;
                }
                existing(app, &path).await?;
                let rt = runtime_for(app, &env).await?;
                match req.action.as_str() {
                    "stop" => rt.stop(&service).await?,
                    "start" => rt.start(&service).await?,
                    "restart" => rt.restart(&service).await?,
                    _ => {
                        // The pin goes whatever the runtime says (a row
                        // left by a refused apply has no workload there).
                        let deleted = rt.delete(&service).await;
                        app.store.drop_rollout(path.as_str()).await?;
                        deleted?;
                    }
                }
                Ok(StatusCode::NO_CONTENT)
            },
        )
        .await
}

pub(super) async fn scale(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<WorkloadScale>,
) -> Result<StatusCode, ApiError> {
    let service = service_arg(path)?;
    let app: &App = &app;
    let (path, env) = (service.path().clone(), service.environment());
    app.pipeline
        .run(
            &caller,
            op("workload.scale", Action::DeployRun, &path),
            |_permit| async {
                may_start_pods(app, &caller, &path).await?;
                existing(app, &path).await?;
                runtime_for(app, &env)
                    .await?
                    .scale(&service, req.replicas)
                    .await?;
                Ok(StatusCode::NO_CONTENT)
            },
        )
        .await
}

pub(super) async fn pods(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PodList>, ApiError> {
    let raw = path_arg(path)?;
    let selector = Selector::parse(&raw)?;
    let (path, env) = match &selector {
        Selector::Environment(e) => (e.clone(), e.clone()),
        Selector::Service(s) => (s.path().clone(), s.environment()),
    };
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            op("pod.list", Action::EnvRead, &path),
            |_permit| async {
                existing(app, &path).await?;
                let rt = runtime_for(app, &env).await?;
                Ok(Json(pod_list(&rt, &selector).await?))
            },
        )
        .await
}

/// A pod's output as `text/plain`, streamed (with `follow`, until the pod
/// is gone or the caller hangs up). Authorized and audited once, at the
/// start. A failure mid-stream aborts the response (no final chunk), so a
/// reader can tell a cut-off log from a finished one.
pub(super) async fn logs(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PodLogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let service = service_arg(path)?;
    let q = query_arg(query)?;
    let pod = PodRef {
        service: service.clone(),
        name: PodName::parse(&q.pod).map_err(|e| ApiError::from(e).field("pod"))?,
    };
    let options = LogOptions {
        follow: q.follow,
        tail_lines: q.tail.map(|t| t as usize),
    };
    let app: &App = &app;
    let (path, env) = (service.path().clone(), service.environment());
    let stream = app
        .pipeline
        .run_stored(
            &caller,
            op("pod.logs", Action::PodLogs, &path),
            |_permit| async {
                existing(app, &path).await?;
                Ok::<_, ApiError>(runtime_for(app, &env).await?.logs(&pod, options).await?)
            },
        )
        .await?;
    let body = stream.map(|chunk| match chunk {
        Ok(c) => Ok::<_, std::io::Error>(c.data),
        Err(e) => {
            tracing::debug!(error = %e, "log stream ended with an error");
            Err(std::io::Error::other(e.to_string()))
        }
    });
    Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(HttpBody::from_stream(body))
        .map_err(|_| ApiError::internal())
}
