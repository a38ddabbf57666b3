//! The Kubernetes API surface stock `kubectl exec` needs, one per
//! environment: `https://HOST/kubernetes/ORG/PROJECT/ENV` is the cluster
//! server of the kubeconfig `warden kubeconfig ORG/PROJECT/ENV` writes. Its
//! one namespace is the environment's name; its pods are the environment's
//! pods, each also reachable by its service's name (the service's first
//! ready pod), so `kubectl exec -it api -- sh` works.
//!
//! Served: discovery (`/api`, `/apis`, `/api/v1`, plain JSON, which
//! client-go accepts in place of aggregated discovery), `GET` and `LIST`
//! pods, and `exec` over WebSocket (`v5.channel.k8s.io`, `v4`), which runs
//! through the same shell gateway as SSH and `warden shell`. Not served:
//! SPDY (deprecated by KEP-4006; a `POST` exec is answered 400 saying how
//! to switch), attach, port-forward, anything else. Every error is a
//! `metav1.Status`, which kubectl prints (API conventions, "Response Status
//! Kind").

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use warden_pipeline::{Operation, Target, Transport};
use warden_policies::{Action, Scope};
use warden_runtime::{PodPhase, PodStatus, Runtime, Selector, TermSize};
use warden_shell_gateway::websocket::refusal;
use warden_shell_gateway::{Command, ShellRequest, ShellTarget};
use warden_types::{ScopeKind, ScopePath};

use super::AppState;
use crate::ApiError;
use crate::caller::Meta;
use crate::gateway::gateway;
use crate::state::App;

/// The one container name a Warden pod shows (its workload).
const CONTAINER: &str = "main";

/// A Kubernetes error answer.
#[derive(Debug)]
struct Status(StatusCode, String);

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        (self.0, axum::Json(refusal(&self.1, self.0.as_u16()))).into_response()
    }
}

/// `pods "NAME" not found`, with the details kubectl reads.
fn pod_not_found(name: &str) -> Response {
    let name: String = name.chars().take(64).collect();
    let mut body = refusal(&format!("pods \"{name}\" not found"), 404);
    body["details"] = json!({"name": name, "kind": "pods"});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        Status(e.status(), e.message().to_owned())
    }
}

impl From<warden_pipeline::Error> for Status {
    fn from(e: warden_pipeline::Error) -> Self {
        ApiError::from(e).into()
    }
}

fn bad_request(message: impl Into<String>) -> Status {
    Status(StatusCode::BAD_REQUEST, message.into())
}

/// The routes, under `/kubernetes/{org}/{project}/{env}`.
pub(super) fn routes() -> Router<AppState> {
    const BASE: &str = "/kubernetes/{org}/{project}/{env}";
    Router::new()
        .route(&format!("{BASE}/api"), get(api_versions))
        .route(&format!("{BASE}/apis"), get(api_groups))
        .route(&format!("{BASE}/api/v1"), get(api_resources))
        .route(
            &format!("{BASE}/api/v1/namespaces/{{ns}}"),
            get(get_namespace),
        )
        .route(
            &format!("{BASE}/api/v1/namespaces/{{ns}}/pods"),
            get(list_pods),
        )
        .route(
            &format!("{BASE}/api/v1/namespaces/{{ns}}/pods/{{pod}}"),
            get(get_pod),
        )
        .route(
            &format!("{BASE}/api/v1/namespaces/{{ns}}/pods/{{pod}}/exec"),
            get(exec).post(spdy_exec),
        )
}

/// The environment a request's path names, and the namespace it shows.
fn environment(org: &str, project: &str, env: &str) -> Result<ScopePath, Status> {
    ScopePath::parse_kind(&format!("{org}/{project}/{env}"), ScopeKind::Environment)
        .map_err(|e| bad_request(e.to_string()))
}

/// The namespace an environment shows: its name.
fn ns_of(env: &ScopePath) -> &str {
    env.segments().last().unwrap_or_default()
}

fn namespace(env: &ScopePath, ns: &str) -> Result<(), Status> {
    if ns_of(env) == ns {
        Ok(())
    } else {
        Err(Status(
            StatusCode::NOT_FOUND,
            format!(
                "namespaces \"{}\" not found (this cluster is {env}; its namespace is {})",
                ns.chars().take(64).collect::<String>(),
                ns_of(env)
            ),
        ))
    }
}

async fn api_versions() -> axum::Json<Value> {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

async fn api_groups() -> axum::Json<Value> {
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
}

async fn api_resources() -> axum::Json<Value> {
    axum::Json(json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true,
             "kind": "PodExecOptions", "verbs": ["create", "get"]},
        ],
    }))
}

/// Authenticates a kubectl request (bearer token from the kubeconfig's
/// credential plugin), recording kubectl's `Kubectl-Session` header with
/// the client software so one command's requests correlate.
async fn caller(
    app: &App,
    Meta(mut meta): Meta,
    headers: &HeaderMap,
    declared: &'static [Action],
) -> Result<warden_pipeline::Caller, Status> {
    meta.transport = Transport::KubernetesExec;
    if let Some(session) = headers.get("kubectl-session").and_then(|v| v.to_str().ok()) {
        let agent = meta.user_agent.take().unwrap_or_default();
        meta = meta.with_user_agent(Some(&format!(
            "{} session={}",
            agent.chars().take(72).collect::<String>(),
            session.chars().take(40).collect::<String>()
        )));
    }
    Ok(app.pipeline.authenticate(meta, declared).await?)
}

/// A pod as `metav1` shows it.
fn pod_json(env: &ScopePath, name: &str, pod: &PodStatus) -> Value {
    let phase = match pod.phase {
        PodPhase::Terminating => "Running".to_owned(),
        other => other.to_string(),
    };
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns_of(env),
            "labels": {"warden.dev/service": pod.service.name()},
            "annotations": {
                "kubectl.kubernetes.io/default-container": CONTAINER,
                "warden.dev/pod": pod.name.as_str(),
            },
        },
        "spec": {"containers": [{"name": CONTAINER, "image": "warden"}], "nodeName": pod.node},
        "status": {
            "phase": phase,
            "containerStatuses": [{
                "name": CONTAINER,
                "ready": pod.ready,
                "restartCount": pod.restarts,
                "image": "warden",
                "imageID": "",
                "state": {},
            }],
        },
    })
}

/// The environment's pods.
async fn env_pods(app: &App, env: &ScopePath) -> Result<Vec<PodStatus>, ApiError> {
    Ok(app
        .clusters
        .runtime_of(&app.store, env)
        .await?
        .pods(&Selector::Environment(env.clone()))
        .await?)
}

/// The pod `name` names: a pod of the environment, or else a service's
/// first ready pod.
fn find<'a>(pods: &'a [PodStatus], name: &str) -> Option<&'a PodStatus> {
    pods.iter().find(|p| p.name.as_str() == name).or_else(|| {
        pods.iter()
            .filter(|p| p.service.name() == name && p.phase == PodPhase::Running && p.ready)
            .min_by(|a, b| a.name.cmp(&b.name))
    })
}

/// The environment's namespace (kubectl asks for it after a 404).
async fn get_namespace(
    State(app): State<AppState>,
    Path((org, project, env, ns)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    meta: Meta,
) -> Result<axum::Json<Value>, Status> {
    let env = environment(&org, &project, &env)?;
    caller(&app, meta, &headers, &[]).await?;
    namespace(&env, &ns)?;
    Ok(axum::Json(json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": ns_of(&env)},
        "status": {"phase": "Active"},
    })))
}

async fn list_pods(
    State(app): State<AppState>,
    Path((org, project, env, ns)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    meta: Meta,
) -> Result<axum::Json<Value>, Status> {
    let env = environment(&org, &project, &env)?;
    namespace(&env, &ns)?;
    let caller = caller(&app, meta, &headers, &[Action::EnvRead]).await?;
    let op = Operation::new(
        "pod.list",
        Action::EnvRead,
        Scope::Path(env.clone()),
        Target::scope(&env),
    );
    let items = app
        .pipeline
        .run_stored(&caller, op, |_permit| async {
            let pods = env_pods(&app, &env).await?;
            Ok::<_, ApiError>(
                pods.iter()
                    .map(|p| pod_json(&env, p.name.as_str(), p))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(axum::Json(
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
    ))
}

async fn get_pod(
    State(app): State<AppState>,
    Path((org, project, env, ns, pod)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    meta: Meta,
) -> Result<Response, Status> {
    let env = environment(&org, &project, &env)?;
    namespace(&env, &ns)?;
    let caller = caller(&app, meta, &headers, &[Action::EnvRead]).await?;
    let op = Operation::new(
        "pod.get",
        Action::EnvRead,
        Scope::Path(env.clone()),
        Target::named("pod", &env, Some(pod.chars().take(64).collect())),
    );
    let found = app
        .pipeline
        .run_stored(&caller, op, |_permit| async {
            let pods = env_pods(&app, &env).await?;
            Ok::<_, ApiError>(find(&pods, &pod).map(|p| pod_json(&env, &pod, p)))
        })
        .await?;
    Ok(match found {
        Some(pod) => axum::Json(pod).into_response(),
        None => pod_not_found(&pod),
    })
}

/// The exec request kubectl sends: `command` repeated, `stdin`, `stdout`,
/// `stderr`, `tty`, `container`.
fn exec_request(service_pod: ShellTarget, query: Option<&str>) -> Result<ShellRequest, Status> {
    let mut argv = Vec::new();
    let mut tty = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let flag = || {
            super::shell::flag(&value).ok_or_else(|| bad_request(format!("{key} is true or false")))
        };
        match key.as_ref() {
            "command" => argv.push(value.into_owned()),
            "tty" => tty = flag()?,
            "stdin" | "stdout" | "stderr" => {
                flag()?;
            }
            "container" if value == CONTAINER => {}
            "container" => {
                return Err(bad_request(format!(
                    "container {:?} is not valid: Warden pods have one container, {CONTAINER}",
                    value.chars().take(64).collect::<String>()
                )));
            }
            other => {
                return Err(bad_request(format!(
                    "unknown exec parameter {:?}",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    if argv.is_empty() {
        return Err(bad_request("exec needs a command"));
    }
    Ok(ShellRequest {
        target: service_pod,
        command: Command::Argv(argv),
        tty: tty.then_some(TermSize { cols: 80, rows: 24 }),
        env: Vec::new(),
    })
}

async fn exec(
    State(app): State<AppState>,
    Path((org, project, env, ns, pod)): Path<(String, String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    meta: Meta,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Status> {
    let env = environment(&org, &project, &env)?;
    namespace(&env, &ns)?;
    let caller = caller(&app, meta, &headers, &[Action::ShellExec]).await?;
    let ws = ws.map_err(|_| bad_request("exec is a WebSocket (v5.channel.k8s.io)"))?;
    let (ws, protocol) = super::shell::negotiate(ws)
        .ok_or_else(|| bad_request("offer the WebSocket subprotocol v5.channel.k8s.io"))?;
    // The pod's name gives its service; the shell is then authorized on
    // that service (and the gateway checks the pod is the service's).
    let pods = env_pods(&app, &env).await?;
    let Some(target) = find(&pods, &pod).map(|p| ShellTarget {
        service: p.service.clone(),
        pod: Some(p.name.clone()),
    }) else {
        return Ok(pod_not_found(&pod));
    };
    let request = exec_request(target, query.as_deref())?;
    let (session, exec) = gateway(&app).open(&caller, request).await?;
    Ok(super::shell::upgrade(ws, protocol, session, exec))
}

/// SPDY, which kubectl before 1.30 speaks unless told otherwise.
async fn spdy_exec() -> Status {
    bad_request(
        "Warden serves exec over WebSockets only (SPDY is deprecated, KEP-4006): use kubectl \
         1.30 or later, or set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubectl_exec_queries_parse_or_are_refused() {
        let target = ShellTarget::parse("acme/shop/dev/api").unwrap();
        let r = exec_request(
            target.clone(),
            Some("command=sh&command=-c&command=echo+hi&container=main&stderr=true&stdin=true&stdout=true&tty=false"),
        )
        .unwrap();
        assert_eq!(
            r.command,
            Command::Argv(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert!(r.tty.is_none());
        for bad in [
            "",
            "stdin=true",
            "command=ls&container=side",
            "command=ls&tty=yes",
            "command=ls&follow=true",
        ] {
            assert!(exec_request(target.clone(), Some(bad)).is_err(), "{bad}");
        }
    }
}
