//! The Kubernetes backend of [`warden_runtime::Runtime`]:
//! [`KubernetesRuntime`] runs each Warden service as one Deployment in one
//! namespace (default `warden`), made and changed by server-side apply with
//! the field manager `warden`; lists pods by label; runs `exec` over the
//! WebSocket channel protocol (v5, KEP-4006) and streams logs, all through
//! kube-rs. `warden agent --runtime kubernetes` serves it to the control
//! plane.
//!
//! What maps (see [`objects::deployment`]): image, command + args (as the
//! container's `command`), the non-secret environment, replicas, memory and
//! CPU limits, `run_as`. Stop is replicas 0; restart is the
//! `kubectl.kubernetes.io/restartedAt` pod-template annotation (what
//! `kubectl rollout restart` sets), rolled one pod at a time (maxSurge 1,
//! maxUnavailable 0). What does not: `resources.pids` (a node-level limit in
//! Kubernetes; ignored with a warning), restart policies other than
//! `Always` and specs without an image (refused), exec signals (the channel
//! protocol has none; ignored with a warning: with a TTY, Ctrl-C is a byte),
//! and [`Runtime::refresh_credential`] (refused: see below). Logs are the
//! container's merged stdout and stderr, reported as stdout.
//!
//! The injector's mutating admission webhook lives here too:
//! [`admission`] decides (an `AdmissionReview` in, the answer with its JSON
//! Patch out; pure), [`webhook`] is its HTTP surface, and `warden injector
//! webhook` serves it over TLS (docs/injector.md, "Kubernetes").
//!
//! Architecture invariants:
//! - depends on `warden-types`, `warden-runtime` (the trait), kube/k8s-openapi
//!   and axum (the webhook's routes) only; never
//!   on `warden-vault`, `warden-server`, `warden-store` or russh (checked by
//!   `tests/integration/architecture.rs`). `warden-runtime` itself does not
//!   link kube, which is why this backend is its own crate;
//! - no secret goes into a pod spec, an annotation or anything else stored
//!   in etcd: specs carry only non-secret environment, and workload
//!   credentials are not delivered by this backend (they will come from
//!   projected service-account tokens, issue 12);
//! - answers from the API server are untrusted: they are decoded into typed
//!   objects, a malformed one is an error, never a panic, and an object
//!   whose `warden.dev/service-path` annotation does not name the service is
//!   treated as absent;
//! - an exec whose connection ends without the server's status is an error
//!   ([`RuntimeError::Unavailable`]), never exit 0.

pub mod admission;
mod exec;
pub mod objects;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{AsyncBufRead as _, AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use warden_runtime::{
    CredentialTarget, ExecRequest, ExecSession, LogChunk, LogOptions, LogStream, LogStreamKind,
    PodPhase, PodRef, PodStatus, Runtime, RuntimeError, Selector, ServiceRef, WorkloadSpec,
};
use zeroize::Zeroizing;

use crate::objects::{
    ANNOTATION_RESTARTED_AT, FIELD_MANAGER, LABEL_SERVICE, Overlay, deployment_name, owned_by,
};

/// The namespace workloads go to unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "warden";

/// How [`KubernetesRuntime::connect`] reaches the cluster.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The namespace holding the workloads (it must exist; the manifests in
    /// `deploy/kubernetes/` create it).
    pub namespace: String,
    /// A kubeconfig file; `None` infers the configuration as kubectl does
    /// (in-cluster service account, else `$KUBECONFIG`, else
    /// `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// How long `stop`, `restart` and `delete` wait for the pods to follow.
    pub rollout_timeout: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.into(),
            kubeconfig: None,
            rollout_timeout: Duration::from_secs(300),
        }
    }
}

/// Runs Warden services as Deployments in one namespace of a cluster.
#[derive(Clone)]
pub struct KubernetesRuntime {
    /// For calls that answer at once: a silent API server times out.
    client: Client,
    /// For exec and log streams, which may stay quiet for hours.
    streams: Client,
    namespace: String,
    rollout_timeout: Duration,
}

impl std::fmt::Debug for KubernetesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRuntime")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// How often rollouts and deletions are polled.
const POLL: Duration = Duration::from_millis(250);
/// How long an API call may wait for its answer (not exec and log streams).
const API_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl KubernetesRuntime {
    /// Connects with a kubeconfig or the inferred configuration. Does not
    /// contact the cluster yet.
    pub async fn connect(config: KubernetesConfig) -> Result<Self, RuntimeError> {
        let kube_config = match &config.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    RuntimeError::InvalidRequest(format!("kubeconfig {}: {e}", path.display()))
                })?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| {
                        RuntimeError::InvalidRequest(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            None => Config::infer().await.map_err(|e| {
                RuntimeError::InvalidRequest(format!("no Kubernetes configuration found: {e}"))
            })?,
        };
        let build = |c: kube::Config| {
            Client::try_from(c)
                .map_err(|e| RuntimeError::Unavailable(format!("Kubernetes client: {e}")))
        };
        let mut calls = kube_config.clone();
        calls.read_timeout = Some(API_READ_TIMEOUT);
        let mut runtime =
            Self::with_client(build(calls)?, &config.namespace, config.rollout_timeout);
        runtime.streams = build(kube_config)?;
        Ok(runtime)
    }

    /// A runtime over an existing client.
    pub fn with_client(client: Client, namespace: &str, rollout_timeout: Duration) -> Self {
        Self {
            streams: client.clone(),
            client,
            namespace: namespace.to_owned(),
            rollout_timeout,
        }
    }

    /// The workload namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Pods, for exec and log streams (no read timeout).
    fn pod_streams(&self) -> Api<Pod> {
        Api::namespaced(self.streams.clone(), &self.namespace)
    }

    /// The service's Deployment, `None` when absent (or another service's).
    async fn live(&self, service: &ServiceRef) -> Result<Option<Deployment>, RuntimeError> {
        let d = self
            .deployments()
            .get_opt(&deployment_name(service))
            .await
            .map_err(|e| api_error(e, "reading the Deployment"))?;
        Ok(d.filter(|d| owned_by(d.metadata.annotations.as_ref(), service)))
    }

    async fn live_or_missing(&self, service: &ServiceRef) -> Result<Deployment, RuntimeError> {
        self.live(service)
            .await?
            .ok_or_else(|| RuntimeError::ServiceNotFound(service.to_string()))
    }

    async fn apply_with(
        &self,
        service: &ServiceRef,
        spec: &WorkloadSpec,
        overlay: &Overlay,
    ) -> Result<Deployment, RuntimeError> {
        let body = objects::deployment(service, &self.namespace, spec, overlay)?;
        self.deployments()
            .patch(
                &deployment_name(service),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| api_error(e, "applying the Deployment"))
    }

    /// Re-applies a live Deployment's stored spec with a change.
    async fn reapply(
        &self,
        service: &ServiceRef,
        change: impl FnOnce(WorkloadSpec, Overlay) -> Result<(WorkloadSpec, Overlay), RuntimeError>,
    ) -> Result<Deployment, RuntimeError> {
        let live = self.live_or_missing(service).await?;
        let (spec, overlay) =
            objects::stored_state(live.metadata.annotations.as_ref(), restarted_at(&live))?;
        let (spec, overlay) = change(spec, overlay)?;
        self.apply_with(service, &spec, &overlay).await
    }

    async fn service_pods(&self, selector: &str) -> Result<Vec<Pod>, RuntimeError> {
        Ok(self
            .pods_api()
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_error(e, "listing pods"))?
            .items)
    }

    /// Waits until the service has no pods.
    async fn wait_pods_gone(&self, service: &ServiceRef) -> Result<(), RuntimeError> {
        let selector = service_selector(service);
        let deadline = tokio::time::Instant::now() + self.rollout_timeout;
        loop {
            let left = self
                .service_pods(&selector)
                .await?
                .into_iter()
                .filter(|p| owned_by(p.metadata.annotations.as_ref(), service))
                .count();
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::RolloutStalled {
                    service: service.to_string(),
                    pod: format!("{left} pod(s) still present"),
                    waited_ms: millis(self.rollout_timeout),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the Deployment's controller has rolled out the current
    /// generation (the `kubectl rollout status` condition: observed
    /// generation current, every replica updated and available, no old
    /// ones left).
    async fn wait_rolled_out(&self, service: &ServiceRef) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.rollout_timeout;
        loop {
            let d = self.live_or_missing(service).await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = d.metadata.generation.unwrap_or(0);
            let done = d.status.as_ref().is_some_and(|s| {
                s.observed_generation.unwrap_or(0) >= generation
                    && s.updated_replicas.unwrap_or(0) == want
                    && s.available_replicas.unwrap_or(0) == want
                    && s.replicas.unwrap_or(0) == want
            });
            if done {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::RolloutStalled {
                    service: service.to_string(),
                    pod: deployment_name(service),
                    waited_ms: millis(self.rollout_timeout),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pod, checked to be the named service's.
    async fn pod_of(&self, pod: &PodRef) -> Result<Pod, RuntimeError> {
        let p = self
            .pods_api()
            .get_opt(pod.name.as_str())
            .await
            .map_err(|e| api_error(e, "reading the pod"))?
            .filter(|p| owned_by(p.metadata.annotations.as_ref(), &pod.service))
            .ok_or_else(|| RuntimeError::PodNotFound(pod.name.to_string()))?;
        Ok(p)
    }

    /// The pod, which must be Running.
    async fn running_pod(&self, pod: &PodRef) -> Result<Pod, RuntimeError> {
        let p = self.pod_of(pod).await?;
        let status = objects::pod_status(&p)
            .ok_or_else(|| RuntimeError::PodNotFound(pod.name.to_string()))?;
        if status.phase != PodPhase::Running {
            return Err(RuntimeError::PodNotRunning {
                pod: pod.name.to_string(),
                phase: status.phase.to_string(),
            });
        }
        Ok(p)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn restarted_at(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(ANNOTATION_RESTARTED_AT)
        .cloned()
}

fn service_selector(service: &ServiceRef) -> String {
    objects::selector_for(&service.path().segments().collect::<Vec<_>>())
}

/// Maps a kube-rs error to the runtime's: the API server's refusals by
/// status code, everything on the way there as `Unavailable`.
pub(crate) fn api_error(e: kube::Error, doing: &str) -> RuntimeError {
    match e {
        kube::Error::Api(status) => {
            let msg = format!(
                "{doing}: the Kubernetes API answered {} {}: {}",
                status.code,
                status.reason,
                status.message.chars().take(512).collect::<String>()
            );
            match status.code {
                400 | 409 | 422 => RuntimeError::InvalidRequest(msg),
                404 => RuntimeError::Agent(msg),
                // 401/403: the agent's credentials or RBAC (deploy/kubernetes/).
                401 | 403 => RuntimeError::Agent(msg),
                _ => RuntimeError::Unavailable(msg),
            }
        }
        kube::Error::SerdeError(e) => RuntimeError::Agent(format!(
            "{doing}: the Kubernetes API sent a malformed object: {e}"
        )),
        other => RuntimeError::Unavailable(format!("{doing}: {other}")),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

impl Runtime for KubernetesRuntime {
    fn apply<'a>(
        &'a self,
        service: &'a ServiceRef,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            // Keep what stop and restart recorded; a service another object
            // claims under our name is refused rather than taken over.
            let name = deployment_name(service);
            let existing = self
                .deployments()
                .get_opt(&name)
                .await
                .map_err(|e| api_error(e, "reading the Deployment"))?;
            let overlay = match &existing {
                None => Overlay::default(),
                Some(d) if owned_by(d.metadata.annotations.as_ref(), service) => Overlay {
                    stopped: d
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(objects::ANNOTATION_STOPPED))
                        .is_some_and(|v| v == "true"),
                    restarted_at: restarted_at(d),
                },
                Some(_) => {
                    return Err(RuntimeError::InvalidRequest(format!(
                        "Deployment {}/{name} exists and belongs to another service",
                        self.namespace
                    )));
                }
            };
            self.apply_with(service, spec, &overlay).await?;
            Ok(())
        })
    }

    fn scale<'a>(
        &'a self,
        service: &'a ServiceRef,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.reapply(service, |spec, o| Ok((spec.with_replicas(replicas)?, o)))
                .await?;
            Ok(())
        })
    }

    fn stop<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.reapply(service, |spec, mut o| {
                o.stopped = true;
                Ok((spec, o))
            })
            .await?;
            self.wait_pods_gone(service).await
        })
    }

    fn start<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.reapply(service, |spec, mut o| {
                o.stopped = false;
                Ok((spec, o))
            })
            .await?;
            Ok(())
        })
    }

    fn restart<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            // RFC 3339, as kubectl writes it.
            let at = k8s_openapi::jiff::Timestamp::now().to_string();
            self.reapply(service, |spec, mut o| {
                o.restarted_at = Some(at);
                Ok((spec, o))
            })
            .await?;
            self.wait_rolled_out(service).await
        })
    }

    fn delete<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.live_or_missing(service).await?;
            self.deployments()
                .delete(&deployment_name(service), &DeleteParams::background())
                .await
                .map_err(|e| api_error(e, "deleting the Deployment"))?;
            self.wait_pods_gone(service).await
        })
    }

    fn services<'a>(&'a self) -> BoxFuture<'a, Result<Vec<ServiceRef>, RuntimeError>> {
        Box::pin(async move {
            let list = self
                .deployments()
                .list(&ListParams::default().labels(LABEL_SERVICE))
                .await
                .map_err(|e| api_error(e, "listing Deployments"))?;
            let mut out = Vec::new();
            for d in list.items {
                let path = d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(objects::ANNOTATION_SERVICE));
                let Some(service) = path.and_then(|p| ServiceRef::parse(p).ok()) else {
                    tracing::warn!(name = ?d.metadata.name, "a labelled Deployment without a valid service path; ignored");
                    continue;
                };
                // Only the object at the service's own name counts.
                if d.metadata.name.as_deref() == Some(deployment_name(&service).as_str()) {
                    out.push(service);
                }
            }
            out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            out.dedup();
            Ok(out)
        })
    }

    fn pods<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodStatus>, RuntimeError>> {
        Box::pin(async move {
            let path = match selector {
                Selector::Environment(p) => p,
                Selector::Service(s) => s.path(),
            };
            let labels = objects::selector_for(&path.segments().collect::<Vec<_>>());
            let mut out: Vec<PodStatus> = self
                .service_pods(&labels)
                .await?
                .iter()
                .filter_map(objects::pod_status)
                .filter(|p| selector.matches(&p.service))
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn exec<'a>(
        &'a self,
        pod: &'a PodRef,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, RuntimeError>> {
        Box::pin(async move {
            request.validate()?;
            self.running_pod(pod).await?;
            exec::start(&self.pod_streams(), pod.name.as_str(), request).await
        })
    }

    fn logs<'a>(
        &'a self,
        pod: &'a PodRef,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>> {
        Box::pin(async move {
            self.pod_of(pod).await?;
            let params = LogParams {
                container: Some(objects::CONTAINER.into()),
                follow: options.follow,
                tail_lines: options
                    .tail_lines
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                ..LogParams::default()
            };
            let reader = self
                .pod_streams()
                .log_stream(pod.name.as_str(), &params)
                .await
                .map_err(|e| api_error(e, "reading logs"))?;
            // Chunks as the API server sends them (it merges the
            // container's stdout and stderr; bytes need not be UTF-8); a
            // broken stream ends with an error.
            let stream = futures::stream::try_unfold(Box::pin(reader), |mut r| async move {
                let chunk = r
                    .fill_buf()
                    .await
                    .map_err(|e| RuntimeError::Unavailable(format!("log stream: {e}")))?;
                if chunk.is_empty() {
                    return Ok(None);
                }
                let data = bytes::Bytes::copy_from_slice(chunk);
                r.as_mut().consume(data.len());
                let chunk = LogChunk {
                    stream: LogStreamKind::Stdout,
                    at_ms: now_ms(),
                    data,
                };
                Ok(Some((chunk, r)))
            });
            Ok(stream.boxed())
        })
    }

    fn refresh_credential<'a>(
        &'a self,
        _target: &'a CredentialTarget,
        _credential: Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async {
            // Delivering it would mean a Secret (etcd) or the pod spec,
            // which the design forbids for secret material.
            Err(RuntimeError::Unsupported(
                "workload credentials on Kubernetes come from projected service-account \
                 tokens (issue 12, not built); this backend stores no credential in the cluster"
                    .into(),
            ))
        })
    }
}
