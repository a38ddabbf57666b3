//! A stand-in Kubernetes API server for tests.
//!
//! No kube-apiserver can run on the machines these tests run on (no
//! container runtime, no etcd, no network to fetch one; see
//! /work/shared/reference/remote-access.md B.3), so this serves the subset
//! of the API that `KubernetesRuntime` and stock kubectl use, and its
//! answers are first checked with kubectl itself (`kubectl.rs`):
//!
//! - discovery: `/api`, `/apis` (with `apps/v1`), `/api/v1`, `/apis/apps/v1`,
//!   `/version`, as plain JSON (client-go falls back from aggregated
//!   discovery when the answer is plain `application/json`);
//! - Deployments: GET, LIST (`labelSelector`), server-side apply (PATCH
//!   `application/apply-patch+yaml`, `fieldManager` required), DELETE. Apply
//!   replaces the labels, annotations and spec with the applied
//!   configuration and records the manager in `managedFields`: right for a
//!   single field manager per object, which is how these tests use it;
//!   there is no multi-manager field merging and no conflict detection.
//! - Pods: made by a built-in "controller" for each Deployment's replicas
//!   from its template (labels copied, `pod-template-hash`), Running at
//!   once on node `stand-in-node`; a template change replaces them all at
//!   once (no surge); GET, LIST (`labelSelector`).
//! - `pods/{name}/log`: plain text; `tailLines`, `follow` (until the pod is
//!   deleted). Pods run nothing, so the log holds one line written at
//!   creation plus whatever a test appends ([`ApiServer::append_log`]).
//! - `pods/{name}/exec` over WebSocket, `v5.channel.k8s.io` (KEP-4006)
//!   preferred, `v4.channel.k8s.io` accepted: the command really runs here
//!   as a child process (no PTY: with `tty=true` stderr and stdout share
//!   one pipe, and resize messages are recorded, not applied). Framing as
//!   the kubelet does it: `[1]` once, stdout on 1, stderr on 2 (never with a
//!   TTY), exactly one `metav1.Status` on 3 last, Close(1000), then reading
//!   until the client's close, at most 10 s; stdin on 0, resize JSON on 4,
//!   `[255, 0]` closes stdin (v5 only).
//!
//! [`ApiServer::start`] serves HTTP without authentication;
//! [`ApiServer::start_tls`] serves HTTPS (its own CA) and requires a bearer
//! token, which kubectl sends only over https.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

/// The node every pod runs on.
pub const NODE: &str = "stand-in-node";

/// What the server saw of one exec session.
#[derive(Debug, Clone, Default)]
pub struct ExecRecord {
    /// The negotiated subprotocol.
    pub protocol: String,
    /// argv.
    pub command: Vec<String>,
    /// The query's tty flag.
    pub tty: bool,
    /// Terminal sizes received on channel 4, in order.
    pub resizes: Vec<(u16, u16)>,
    /// Whether stdin was half-closed with `[255, 0]`.
    pub stdin_closed: bool,
}

struct PodLog {
    data: Mutex<Vec<u8>>,
    /// (length, closed)
    state: watch::Sender<(usize, bool)>,
}

struct PodEntry {
    owner: String,
    obj: Value,
    log: Arc<PodLog>,
}

#[derive(Default)]
struct Store {
    deployments: BTreeMap<(String, String), Value>,
    pods: BTreeMap<(String, String), PodEntry>,
}

struct Shared {
    store: Mutex<Store>,
    version: AtomicU64,
    execs: Mutex<Vec<ExecRecord>>,
    /// (API group, resource, verb) of every request, as an authorizer sees it.
    authz: Mutex<std::collections::BTreeSet<(String, String, String)>>,
    /// Commands of exec sessions whose client went away before the end.
    abandoned: Mutex<Vec<Vec<String>>>,
    killed: watch::Receiver<bool>,
    addr: SocketAddr,
    /// The bearer token every request must carry (with TLS).
    token: Option<String>,
}

type St = Arc<Shared>;

impl Shared {
    fn authorize(&self, group: &str, resource: &str, verb: &str) {
        lock(&self.authz).insert((group.into(), resource.into(), verb.into()));
    }
}

/// A running stand-in API server on 127.0.0.1.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: St,
    kill: watch::Sender<bool>,
    /// The CA that signed its certificate, with TLS.
    ca_pem: Option<String>,
}

/// Serves one connection (HTTP/1.1 with upgrades, or HTTP/2) until it ends
/// or the server is killed.
async fn serve_connection<I>(io: I, app: Router, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = dead(&mut stop) => {}
    }
}

/// A fresh CA and a certificate for 127.0.0.1 signed by it: the acceptor
/// and the CA's PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "stand-in cluster CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let chain = vec![leaf.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    // HTTP/1.1 only: exec is a WebSocket upgrade.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    )
}

/// With a token configured: 401 (a `Status`) unless the request carries it.
async fn authenticate(
    AxState(s): AxState<St>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &s.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            return status_error(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    next.run(req).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn short_hash(s: &str, n: usize) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    // Pod-name suffix alphabet of the real apiserver (no vowels).
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    d.as_ref()
        .iter()
        .take(n)
        .map(|b| ALPHA[usize::from(*b) % ALPHA.len()] as char)
        .collect()
}

impl ApiServer {
    /// Starts serving on an ephemeral port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts serving HTTPS (a fresh CA and a certificate for 127.0.0.1)
    /// and answers 401 to any request without `Authorization: Bearer
    /// TOKEN`, as a cluster does.
    pub async fn start_tls(token: &str) -> Self {
        Self::start_with(Some(token.to_owned())).await
    }

    async fn start_with(token: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            version: AtomicU64::new(1),
            execs: Mutex::new(Vec::new()),
            authz: Mutex::default(),
            abandoned: Mutex::default(),
            killed: killed.clone(),
            addr,
            token: token.clone(),
        });
        let (acceptor, ca_pem) = match token {
            Some(_) => {
                let (acceptor, ca) = tls_acceptor();
                (Some(acceptor), Some(ca))
            }
            None => (None, None),
        };
        let app = router(shared.clone());
        let mut stop = killed.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = dead(&mut stop) => return,
                };
                let Ok((tcp, _)) = conn else { continue };
                let app = app.clone();
                let stop = stop.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve_connection(tls, app, stop).await;
                            }
                        }
                        None => serve_connection(tcp, app, stop).await,
                    }
                });
            }
        });
        Self {
            addr,
            shared,
            kill,
            ca_pem,
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Writes a kubeconfig for this server into `dir` (with its CA and the
    /// bearer `token`, when given) and returns its path.
    pub fn kubeconfig(&self, dir: &std::path::Path, token: Option<&str>) -> std::path::PathBuf {
        let mut cluster = format!("    server: {}\n", self.url());
        if let Some(ca) = &self.ca_pem {
            let ca_path = dir.join("stand-in-ca.pem");
            std::fs::write(&ca_path, ca).unwrap();
            cluster.push_str(&format!(
                "    certificate-authority: {}\n",
                ca_path.display()
            ));
        }
        let user = match token {
            Some(t) => format!("\n    token: {t}"),
            None => " {}".to_owned(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n{cluster}\
             users:\n- name: tester\n  user:{user}\ncontexts:\n- name: test\n  context:\n    \
             cluster: stand-in\n    user: tester\n    namespace: warden\ncurrent-context: test\n"
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Drops every connection and exec session at once (children killed)
    /// and stops listening: a cluster that vanished.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    /// Appends to a pod's log (and wakes followers).
    pub fn append_log(&self, ns: &str, pod: &str, text: &str) {
        let store = lock(&self.shared.store);
        let entry = store
            .pods
            .get(&(ns.to_owned(), pod.to_owned()))
            .unwrap_or_else(|| panic!("no pod {ns}/{pod}"));
        let mut data = lock(&entry.log.data);
        data.extend_from_slice(text.as_bytes());
        let len = data.len();
        entry.log.state.send_modify(|s| s.0 = len);
    }

    /// The exec sessions seen so far.
    pub fn execs(&self) -> Vec<ExecRecord> {
        lock(&self.shared.execs).clone()
    }

    /// (API group, resource, verb) of every request served so far: what
    /// RBAC must allow.
    pub fn verbs(&self) -> std::collections::BTreeSet<(String, String, String)> {
        lock(&self.shared.authz).clone()
    }

    /// Commands of exec sessions whose client left while they ran.
    pub fn abandoned(&self) -> Vec<Vec<String>> {
        lock(&self.shared.abandoned).clone()
    }

    /// A stored Deployment as JSON.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store)
            .deployments
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Names of the pods in a namespace.
    pub fn pod_names(&self, ns: &str) -> Vec<String> {
        lock(&self.shared.store)
            .pods
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.kill.send(true);
    }
}

fn router(shared: St) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/v1", get(core_resources))
        .route("/apis/apps/v1", get(apps_resources))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(list_deployments),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(get_deployment)
                .patch(apply_deployment)
                .delete(delete_deployment),
        )
        .route("/api/v1/namespaces/{ns}", get(get_namespace))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/exec",
            get(exec).post(exec_spdy),
        )
        .fallback(not_found_route)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authenticate,
        ))
        .with_state(shared)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A `metav1.Status` failure (Kubernetes API conventions, "Response Status Kind").
fn status_error(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

fn not_found(kind: &str, name: &str) -> Response {
    let (resource, group) = kind.split_once('.').unwrap_or((kind, ""));
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": format!("{kind} \"{name}\" not found"),
            "reason": "NotFound", "code": 404,
            "details": {"name": name, "group": group, "kind": resource},
        }),
    )
}

async fn not_found_route(uri: axum::http::Uri) -> Response {
    eprintln!("stand-in API server: no route for {uri}");
    status_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-warden-stand-in",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
    )
}

async fn api_versions(AxState(s): AxState<St>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": s.addr.to_string()}]}),
    )
}

async fn api_groups() -> Response {
    let gv = json!({"groupVersion": "apps/v1", "version": "v1"});
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": "apps", "versions": [gv], "preferredVersion": gv}]}),
    )
}

async fn core_resources() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false,
             "kind": "Namespace", "verbs": ["get"], "shortNames": ["ns"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
        ]}),
    )
}

async fn apps_resources() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true,
             "kind": "Deployment", "verbs": ["create", "delete", "get", "list", "patch", "update"],
             "shortNames": ["deploy"], "categories": ["all"]},
        ]}),
    )
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get(q: &[(String, String)], key: &str) -> Option<String> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Equality-based label selectors (`k`, `!k`, `k=v`, `k==v`, `k!=v`).
fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

fn list(kind: &str, api_version: &str, rv: u64, items: Vec<Value>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": api_version,
                "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    )
}

async fn list_deployments(
    AxState(s): AxState<St>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    s.authorize("apps", "deployments", "list");
    let sel = query_get(&query_pairs(&q), "labelSelector").unwrap_or_default();
    let store = lock(&s.store);
    let items = store
        .deployments
        .iter()
        .filter(|((n, _), d)| *n == ns && selector_matches(&sel, &d["metadata"]["labels"]))
        .map(|(_, d)| d.clone())
        .collect();
    list(
        "DeploymentList",
        "apps/v1",
        s.version.load(Ordering::SeqCst),
        items,
    )
}

async fn get_deployment(
    AxState(s): AxState<St>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    s.authorize("apps", "deployments", "get");
    match lock(&s.store).deployments.get(&(ns, name.clone())) {
        Some(d) => json_response(StatusCode::OK, d),
        None => not_found("deployments.apps", &name),
    }
}

fn merge_labels(into: &mut serde_json::Map<String, Value>, from: &Value) {
    if let Some(m) = from.as_object() {
        for (k, v) in m {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// Server-side apply of a Deployment (see the module docs for what is and
/// is not modelled).
async fn apply_deployment(
    AxState(s): AxState<St>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.authorize("apps", "deployments", "patch");
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/apply-patch+yaml") {
        return status_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the stand-in only serves server-side apply, not {ctype}"),
        );
    }
    let q = query_pairs(&q);
    let Some(manager) = query_get(&q, "fieldManager") else {
        return status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    };
    let applied: Value = match serde_yaml_ng::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return status_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("error decoding YAML: {e}"),
            );
        }
    };
    if applied["apiVersion"] != "apps/v1"
        || applied["kind"] != "Deployment"
        || applied["metadata"]["name"] != name.as_str()
    {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the applied object must be an apps/v1 Deployment named as in the URL",
        );
    }
    let mut spec = applied["spec"].clone();
    let selector = spec["selector"]["matchLabels"].clone();
    let template_labels = spec["template"]["metadata"]["labels"].clone();
    let selects = selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| template_labels.get(k) == Some(v)));
    if !selects {
        return status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Deployment.apps \"{name}\" is invalid: spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
            ),
        );
    }
    if spec.get("replicas").is_none_or(Value::is_null) {
        spec["replicas"] = json!(1);
    }
    let rv = s.version.fetch_add(1, Ordering::SeqCst) + 1;
    let mut store = lock(&s.store);
    let key = (ns.clone(), name.clone());
    if !store.deployments.contains_key(&key) {
        // An apply that creates needs `create` as well as `patch`.
        s.authorize("apps", "deployments", "create");
    }
    let (created, obj) = match store.deployments.get(&key) {
        Some(old) => {
            let mut d = old.clone();
            let changed = d["spec"] != spec;
            if changed {
                let g = d["metadata"]["generation"].as_i64().unwrap_or(1);
                d["metadata"]["generation"] = json!(g + 1);
            }
            (false, d)
        }
        None => (
            true,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
                "name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}-{rv}"),
                "creationTimestamp": now(), "generation": 1}}),
        ),
    };
    let mut obj = obj;
    obj["spec"] = spec;
    let mut labels = serde_json::Map::new();
    merge_labels(&mut labels, &applied["metadata"]["labels"]);
    obj["metadata"]["labels"] = Value::Object(labels);
    let mut ann = serde_json::Map::new();
    merge_labels(&mut ann, &applied["metadata"]["annotations"]);
    obj["metadata"]["annotations"] = Value::Object(ann);
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    let mut managers: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["manager"] != manager.as_str())
        .collect();
    managers.push(
        json!({"manager": manager, "operation": "Apply", "apiVersion": "apps/v1",
                          "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}}),
    );
    obj["metadata"]["managedFields"] = Value::Array(managers);
    store.deployments.insert(key.clone(), obj);
    reconcile(&mut store, &key, rv);
    let out = store.deployments[&key].clone();
    json_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &out,
    )
}

/// The stand-in's Deployment controller: the Deployment's replicas of its
/// current template, old-template pods removed, status updated.
fn reconcile(store: &mut Store, key: &(String, String), rv: u64) {
    let (ns, name) = key.clone();
    let Some(d) = store.deployments.get(key).cloned() else {
        return;
    };
    let template = &d["spec"]["template"];
    let replicas = usize::try_from(d["spec"]["replicas"].as_u64().unwrap_or(1)).unwrap_or(0);
    let hash = short_hash(&template.to_string(), 10);
    let owned: Vec<(String, String)> = store
        .pods
        .iter()
        .filter(|((n, _), p)| *n == ns && p.owner == name)
        .map(|(k, _)| k.clone())
        .collect();
    let mut keep = Vec::new();
    for k in owned {
        let current =
            store.pods[&k].obj["metadata"]["labels"]["pod-template-hash"] == hash.as_str();
        if current && keep.len() < replicas {
            keep.push(k);
        } else if let Some(p) = store.pods.remove(&k) {
            p.log.state.send_modify(|s| s.1 = true);
        }
    }
    let mut n = 0u64;
    while keep.len() < replicas {
        n += 1;
        let pod_name = format!(
            "{name}-{hash}-{}",
            short_hash(&format!("{name}{hash}{rv}{n}"), 5)
        );
        let mut labels = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert("pod-template-hash".into(), json!(hash));
        let mut spec = template["spec"].clone();
        spec["nodeName"] = json!(NODE);
        let statuses: Vec<Value> = spec["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({"name": c["name"], "ready": true, "started": true, "restartCount": 0,
                       "image": c["image"], "imageID": "", "containerID": format!("stand-in://{pod_name}"),
                       "state": {"running": {"startedAt": now()}}})
            })
            .collect();
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": pod_name, "namespace": ns, "uid": format!("uid-{pod_name}"),
                "generateName": format!("{name}-{hash}-"),
                "resourceVersion": rv.to_string(), "creationTimestamp": now(),
                "labels": labels, "annotations": template["metadata"]["annotations"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": format!("{name}-{hash}"), "uid": format!("uid-rs-{name}-{hash}"),
                    "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": spec,
            "status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                "startTime": now(),
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": statuses},
        });
        let first = format!("pod {pod_name} started\n").into_bytes();
        let (state, _) = watch::channel((first.len(), false));
        let log = Arc::new(PodLog {
            data: Mutex::new(first),
            state,
        });
        let k = (ns.clone(), pod_name);
        store.pods.insert(
            k.clone(),
            PodEntry {
                owner: name.clone(),
                obj,
                log,
            },
        );
        keep.push(k);
    }
    let count = json!(keep.len());
    if let Some(d) = store.deployments.get_mut(key) {
        let generation = d["metadata"]["generation"].clone();
        d["status"] = json!({"observedGeneration": generation, "replicas": count,
            "updatedReplicas": count, "readyReplicas": count, "availableReplicas": count});
    }
}

async fn delete_deployment(
    AxState(s): AxState<St>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    s.authorize("apps", "deployments", "delete");
    let mut store = lock(&s.store);
    let key = (ns.clone(), name.clone());
    let Some(d) = store.deployments.remove(&key) else {
        return not_found("deployments.apps", &name);
    };
    // Garbage collection of the pods, at once.
    let owned: Vec<_> = store
        .pods
        .iter()
        .filter(|((n, _), p)| *n == ns && p.owner == name)
        .map(|(k, _)| k.clone())
        .collect();
    for k in owned {
        if let Some(p) = store.pods.remove(&k) {
            p.log.state.send_modify(|s| s.1 = true);
        }
    }
    drop(store);
    let _ = d;
    json_response(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": "apps", "kind": "deployments"}}),
    )
}

/// Every namespace exists (kubectl reads it to explain a missing pod).
async fn get_namespace(Path(ns): Path<String>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": format!("uid-ns-{ns}"), "creationTimestamp": now()},
                "status": {"phase": "Active"}}),
    )
}

async fn list_pods(
    AxState(s): AxState<St>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    s.authorize("", "pods", "list");
    let sel = query_get(&query_pairs(&q), "labelSelector").unwrap_or_default();
    let store = lock(&s.store);
    let items = store
        .pods
        .iter()
        .filter(|((n, _), p)| *n == ns && selector_matches(&sel, &p.obj["metadata"]["labels"]))
        .map(|(_, p)| p.obj.clone())
        .collect();
    list("PodList", "v1", s.version.load(Ordering::SeqCst), items)
}

async fn get_pod(AxState(s): AxState<St>, Path((ns, name)): Path<(String, String)>) -> Response {
    s.authorize("", "pods", "get");
    match lock(&s.store).pods.get(&(ns, name.clone())) {
        Some(p) => json_response(StatusCode::OK, &p.obj),
        None => not_found("pods", &name),
    }
}

fn tail(data: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return &data[data.len()..];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return &data[i + 1..];
            }
        }
    }
    data
}

async fn pod_log(
    AxState(s): AxState<St>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    s.authorize("", "pods/log", "get");
    let q = query_pairs(&q);
    let follow = query_get(&q, "follow").is_some_and(|v| v == "true");
    let tail_lines = query_get(&q, "tailLines").and_then(|v| v.parse::<usize>().ok());
    let log = match lock(&s.store).pods.get(&(ns, name.clone())) {
        Some(p) => p.log.clone(),
        None => return not_found("pods", &name),
    };
    let (start, first) = {
        let data = lock(&log.data);
        let first = match tail_lines {
            Some(n) => tail(&data, n).to_vec(),
            None => data.clone(),
        };
        (data.len(), first)
    };
    let mut rx = log.state.subscribe();
    let killed = s.killed.clone();
    let body = if follow {
        let stream = futures::stream::unfold(
            (Some(first), start, rx, log, killed),
            |(first, mut offset, mut rx, log, mut killed)| async move {
                if let Some(f) = first {
                    return Some((
                        Ok::<_, Infallible>(Bytes::from(f)),
                        (None, offset, rx, log, killed),
                    ));
                }
                loop {
                    let (len, closed) = *rx.borrow_and_update();
                    if offset < len {
                        let chunk = lock(&log.data)[offset..len].to_vec();
                        offset = len;
                        return Some((Ok(Bytes::from(chunk)), (None, offset, rx, log, killed)));
                    }
                    if closed {
                        return None;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return None },
                        _ = dead(&mut killed) => return None,
                    }
                }
            },
        );
        Body::from_stream(stream)
    } else {
        rx.mark_unchanged();
        Body::from(first)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// kubectl ≤ 1.29 (and kube clients falling back) POST with SPDY: not
/// served (B.2 item 9 of the reference).
async fn exec_spdy() -> Response {
    status_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "this server speaks only the WebSocket exec protocol (v5.channel.k8s.io); \
         use kubectl >= 1.30 or set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true",
    )
}

async fn exec(
    AxState(s): AxState<St>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Response {
    // A WebSocket exec is an HTTP GET; since 1.35 clusters also authorize it
    // as `create` (the verb of the SPDY POST), so RBAC needs both.
    s.authorize("", "pods/exec", "get");
    s.authorize("", "pods/exec", "create");
    let q = query_pairs(&q);
    let flag = |k: &str| query_get(&q, k).is_some_and(|v| v == "true" || v == "1");
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    {
        let store = lock(&s.store);
        let Some(p) = store.pods.get(&(ns.clone(), name.clone())) else {
            return not_found("pods", &name);
        };
        if p.obj["status"]["phase"] != "Running" {
            return status_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "cannot exec into a container in a completed pod",
            );
        }
    }
    if command.is_empty() {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
    }
    let h = req.headers();
    let offered: Vec<String> = h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    // Server preference: v5 (stdin half-close), then v4.
    let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "a WebSocket upgrade offering v5.channel.k8s.io or v4.channel.k8s.io is required",
        );
    };
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "not a WebSocket upgrade",
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let record = ExecRecord {
        protocol: protocol.to_owned(),
        command: command.clone(),
        tty: flag("tty"),
        ..ExecRecord::default()
    };
    let opts = (flag("stdin"), flag("stderr"), flag("tty"));
    let shared = s.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run_exec(shared, ws, command, opts, record).await;
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = resp.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    hs.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    resp
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn exit_status_json(code: i32) -> Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
               "message": format!("command terminated with non-zero exit code: exit status {code}"),
               "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    }
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn run_exec(
    shared: St,
    ws: Ws,
    command: Vec<String>,
    (stdin, stderr, tty): (bool, bool, bool),
    mut record: ExecRecord,
) {
    let mut killed = shared.killed.clone();
    let v5 = record.protocol.starts_with("v5");
    let (mut sink, mut stream) = ws.split();
    if sink.send(frame(1, b"")).await.is_err() {
        return;
    }
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]).kill_on_drop(true).stdin(if stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    // With a TTY there is one output stream: both fds share a pipe.
    let mut merged = None;
    if tty {
        let (r, w) = std::io::pipe().unwrap();
        cmd.stdout(Stdio::from(w.try_clone().unwrap()))
            .stderr(Stdio::from(w));
        merged = Some(r);
    } else {
        cmd.stdout(Stdio::piped()).stderr(if stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            // What the kubelet answers when the runtime cannot start it.
            let st = json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                "message": format!("OCI runtime exec failed: exec failed: unable to start container process: exec: {:?}: {e}", command[0])});
            let _ = sink.send(frame(3, st.to_string().as_bytes())).await;
            finish(sink, stream, &mut killed).await;
            lock(&shared.execs).push(record);
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(8);
    fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
        mut r: R,
        ch: u8,
        tx: mpsc::Sender<Message>,
    ) {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 || tx.send(frame(ch, &buf[..n])).await.is_err() {
                    return;
                }
            }
        });
    }
    if let Some(r) = merged {
        let rx =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(r)).unwrap();
        pump(rx, 1, out_tx.clone());
    }
    if let Some(o) = child.stdout.take() {
        pump(o, 1, out_tx.clone());
    }
    if let Some(e) = child.stderr.take() {
        pump(e, 2, out_tx.clone());
    }
    drop(out_tx);
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut stdin_tx = Some(stdin_tx);
    if let Some(mut w) = child.stdin.take() {
        tokio::spawn(async move {
            while let Some(d) = stdin_rx.recv().await {
                if w.write_all(&d).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut reading = true;
    let mut output_done = false;
    let code = loop {
        tokio::select! {
            m = out_rx.recv(), if !output_done => match m {
                Some(m) => if sink.send(m).await.is_err() { reading = false },
                None => output_done = true,
            },
            st = child.wait(), if output_done => {
                break match st {
                    Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
                    Err(_) => 1,
                };
            }
            m = stream.next(), if reading => match m {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => { if let Some(tx) = &stdin_tx { let _ = tx.send(b[1..].to_vec()); } }
                    4 => {
                        for line in b[1..].split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                            if let Ok(v) = serde_json::from_slice::<Value>(line) {
                                let w = u16::try_from(v["Width"].as_u64().unwrap_or(0)).unwrap_or(0);
                                let h = u16::try_from(v["Height"].as_u64().unwrap_or(0)).unwrap_or(0);
                                record.resizes.push((w, h));
                            }
                        }
                    }
                    255 if v5 && b.get(1) == Some(&0) => {
                        stdin_tx = None;
                        record.stdin_closed = true;
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                // The client went away: no one to report to (the process
                // runs on, as a non-TTY exec does on a kubelet).
                Some(Err(_)) | None => {
                    reading = false;
                    stdin_tx = None;
                    lock(&shared.abandoned).push(record.command.clone());
                }
            },
            _ = dead(&mut killed) => {
                lock(&shared.execs).push(record);
                return;
            }
        }
    };
    lock(&shared.execs).push(record);
    let _ = sink
        .send(frame(3, exit_status_json(code).to_string().as_bytes()))
        .await;
    finish(sink, stream, &mut killed).await;
}

/// Close(1000), then read until the client's close (bounded), then drop.
async fn finish(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    mut stream: futures::stream::SplitStream<Ws>,
    killed: &mut watch::Receiver<bool>,
) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let drain = async {
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(10), drain) => {}
        _ = dead(killed) => {}
    }
}

/// Resolves once the server is killed.
async fn dead(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|k| *k).await;
}
