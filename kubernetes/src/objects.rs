//! Warden's vocabulary ⇄ Kubernetes objects: names and labels derived from a
//! service path, the Deployment a [`WorkloadSpec`] becomes, and the
//! [`PodStatus`] a Pod reports. Pure functions, no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use serde_json::{Value, json};
use warden_runtime::{
    ExitReason, ExitStatus, Isolation, LastExit, PodName, PodPhase, PodStatus, RestartPolicy,
    RuntimeError, ServiceRef, WorkloadSpec,
};

/// Label: the service's organization (its path segment, see [`label_value`]).
pub const LABEL_ORG: &str = "warden.dev/org";
/// Label: the service's project.
pub const LABEL_PROJECT: &str = "warden.dev/project";
/// Label: the service's environment.
pub const LABEL_ENV: &str = "warden.dev/env";
/// Label: the service's own name. Its presence marks a Warden workload.
pub const LABEL_SERVICE: &str = "warden.dev/service";
/// Annotation: the full service path, `org/project/env/service`.
pub const ANNOTATION_SERVICE: &str = "warden.dev/service-path";
/// Annotation: [`WorkloadSpec::template_hash`] of the spec the pods run.
pub const ANNOTATION_TEMPLATE: &str = "warden.dev/template";
/// Annotation on the Deployment: the applied spec as JSON (non-secret by
/// construction: a spec never holds a secret value), so scale, stop and
/// start can re-apply the whole object.
pub const ANNOTATION_SPEC: &str = "warden.dev/spec";
/// Annotation on the Deployment: present (`"true"`) while stopped.
pub const ANNOTATION_STOPPED: &str = "warden.dev/stopped";
/// The pod-template annotation `kubectl rollout restart` sets; changing it
/// rolls the pods.
pub const ANNOTATION_RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "warden";
/// The name of the one container in each pod.
pub const CONTAINER: &str = "workload";

fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// The Deployment's name for a service: a readable prefix (`env-service`,
/// at most 30 characters) and 12 hex digits of the SHA-256 of the full
/// path. The hash is always there: joining segments with `-` alone is not
/// injective (`a/b-c/…` and `a-b/c/…`), and the prefix is cut to leave
/// room for the ReplicaSet and pod suffixes within 63 characters. Two
/// services share a name only if 48 bits of SHA-256 collide, and then
/// [`owned_by`] refuses the other's object.
pub fn deployment_name(service: &ServiceRef) -> String {
    let path = service.path();
    let segs: Vec<&str> = path.segments().collect();
    let env = segs.get(2).copied().unwrap_or("");
    let readable: String = format!("{env}-{}", service.name())
        .chars()
        .take(30)
        .collect();
    let readable = readable.trim_end_matches('-');
    let hash = sha256_hex(service.as_str());
    format!("{readable}-{}", &hash[..12])
}

/// A label value for a path segment. Segments are `[a-z0-9][a-z0-9-]{0,62}`,
/// which is a valid label value unless it ends with `-` (label values must
/// end alphanumeric). Those become the segment without its trailing dashes,
/// a `.` (which no segment contains, so no valid segment maps to the same
/// value) and 10 hex digits of its hash.
pub fn label_value(segment: &str) -> String {
    if !segment.ends_with('-') {
        return segment.to_owned();
    }
    let trimmed: String = segment.trim_end_matches('-').chars().take(50).collect();
    format!("{trimmed}.{}", &sha256_hex(segment)[..10])
}

/// The labels naming a service (on the Deployment, its selector and pods).
pub fn service_labels(service: &ServiceRef) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, seg) in [LABEL_ORG, LABEL_PROJECT, LABEL_ENV, LABEL_SERVICE]
        .into_iter()
        .zip(service.path().segments())
    {
        out.insert(key.to_owned(), label_value(seg));
    }
    out
}

/// A label selector (`k=v,k=v`) for the first `depth` labels of a path:
/// 3 selects an environment, 4 a service.
pub fn selector_for(segments: &[&str]) -> String {
    [LABEL_ORG, LABEL_PROJECT, LABEL_ENV, LABEL_SERVICE]
        .iter()
        .zip(segments)
        .map(|(k, s)| format!("{k}={}", label_value(s)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an object's annotations say it belongs to `service`.
pub fn owned_by(annotations: Option<&BTreeMap<String, String>>, service: &ServiceRef) -> bool {
    annotations
        .and_then(|a| a.get(ANNOTATION_SERVICE))
        .is_some_and(|p| p == service.as_str())
}

/// Desired state beyond the spec, kept across re-applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Scaled to zero by `stop`.
    pub stopped: bool,
    /// The last `restart`'s timestamp (RFC 3339), kept so a later apply does
    /// not roll the pods again by dropping it.
    pub restarted_at: Option<String>,
}

/// The uid and gid a pod runs as unless its spec names others (`nobody`).
const NOBODY: u32 = 65534;
/// Largest spec kept in the Deployment's annotation (the API server allows
/// 256 KiB of annotations per object).
const MAX_SPEC_ANNOTATION: usize = 64 * 1024;

/// The server-side apply body for a service's Deployment. What maps:
/// image, command + args (as the container's `command`, so the image's
/// entrypoint is replaced as the local runtime replaces nothing), the
/// non-secret environment, replicas, memory and CPU limits (requests equal
/// to limits), `run_as` (`runAsUser`/`runAsGroup`; default 65534, root
/// refused), always with the "restricted" Pod Security settings. What does not: `pids`
/// (Kubernetes limits pids per node, not per pod; ignored), restart
/// policies other than `Always` (a Deployment only allows `Always`;
/// refused), and a spec without an image (refused).
pub fn deployment(
    service: &ServiceRef,
    namespace: &str,
    spec: &WorkloadSpec,
    overlay: &Overlay,
) -> Result<Value, RuntimeError> {
    let image = spec.image().ok_or_else(|| RuntimeError::InvalidSpec {
        line: None,
        column: None,
        message: "image: the Kubernetes runtime runs containers and needs an image".into(),
    })?;
    if spec.restart() != RestartPolicy::Always {
        return Err(RuntimeError::Unsupported(format!(
            "restart {:?}: a Kubernetes Deployment always restarts its pods; use restart: Always",
            spec.restart()
        )));
    }
    let labels = service_labels(service);
    let spec_json = serde_json::to_string(spec)
        .map_err(|e| RuntimeError::Agent(format!("encoding the workload spec: {e}")))?;
    if spec_json.len() > MAX_SPEC_ANNOTATION {
        return Err(RuntimeError::InvalidSpec {
            line: None,
            column: None,
            message: format!(
                "the spec is {} bytes as JSON; a Deployment carries at most {MAX_SPEC_ANNOTATION} \
                 (Kubernetes allows 256 KiB of annotations per object)",
                spec_json.len()
            ),
        });
    }
    let template_hash = spec.template_hash();
    let mut deploy_annotations = BTreeMap::from([
        (ANNOTATION_SERVICE.to_owned(), service.as_str().to_owned()),
        (ANNOTATION_TEMPLATE.to_owned(), template_hash.clone()),
        (ANNOTATION_SPEC.to_owned(), spec_json),
    ]);
    if overlay.stopped {
        deploy_annotations.insert(ANNOTATION_STOPPED.to_owned(), "true".to_owned());
    }
    let mut pod_annotations = BTreeMap::from([
        (ANNOTATION_SERVICE.to_owned(), service.as_str().to_owned()),
        (ANNOTATION_TEMPLATE.to_owned(), template_hash),
    ]);
    if let Some(at) = &overlay.restarted_at {
        pod_annotations.insert(ANNOTATION_RESTARTED_AT.to_owned(), at.clone());
    }
    let env: Vec<Value> = spec
        .env()
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let resources = spec.resources();
    let mut limits = serde_json::Map::new();
    if let Some(m) = resources.memory {
        limits.insert("memory".into(), json!(m.to_string()));
    }
    if let Some(c) = resources.cpu {
        limits.insert("cpu".into(), json!(format!("{c}m")));
    }
    if resources.pids.is_some() {
        tracing::warn!(%service, "resources.pids is not enforced on Kubernetes (a node-level limit)");
    }
    // Pod Security Standards, "restricted" profile: not root (uid 65534,
    // `nobody`, as the local runtime, unless the spec names another), no
    // privilege escalation, no capabilities, the runtime's default seccomp
    // profile.
    let (uid, gid) = spec.run_as().map_or((NOBODY, NOBODY), |r| (r.uid, r.gid));
    if uid == 0 {
        return Err(RuntimeError::InvalidSpec {
            line: None,
            column: None,
            message: "run_as: uid 0 (root) is refused on Kubernetes".into(),
        });
    }
    let mut container = json!({
        "name": CONTAINER,
        "image": image,
        "command": spec.argv().collect::<Vec<_>>(),
        "env": env,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "runAsUser": uid,
            "runAsGroup": gid,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
    });
    if !limits.is_empty() {
        container["resources"] = json!({ "limits": limits, "requests": limits });
    }
    let replicas = if overlay.stopped { 0 } else { spec.replicas() };
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(service),
            "namespace": namespace,
            "labels": labels,
            "annotations": deploy_annotations,
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": spec.min_ready().as_secs(),
            "selector": { "matchLabels": labels },
            // One pod at a time, each replacement available before an old
            // one stops: the trait's rolling restart.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 },
            },
            "template": {
                "metadata": { "labels": labels, "annotations": pod_annotations },
                "spec": {
                    // Pods get no Kubernetes API credentials; workload
                    // identity comes later from projected tokens (issue 12).
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "restartPolicy": "Always",
                    "containers": [container],
                },
            },
        },
    }))
}

/// Reads the spec and overlay back from a Deployment's annotations.
pub fn stored_state(
    annotations: Option<&BTreeMap<String, String>>,
    restarted_at: Option<String>,
) -> Result<(WorkloadSpec, Overlay), RuntimeError> {
    let text = annotations
        .and_then(|a| a.get(ANNOTATION_SPEC))
        .ok_or_else(|| RuntimeError::Agent(format!("the Deployment has no {ANNOTATION_SPEC}")))?;
    // Deserializing enforces the spec's limits: the cluster is not trusted
    // to hand back what we wrote.
    let spec: WorkloadSpec = serde_json::from_str(text)
        .map_err(|e| RuntimeError::Agent(format!("{ANNOTATION_SPEC} is not a valid spec: {e}")))?;
    let stopped = annotations
        .and_then(|a| a.get(ANNOTATION_STOPPED))
        .is_some_and(|v| v == "true");
    Ok((
        spec,
        Overlay {
            stopped,
            restarted_at,
        },
    ))
}

/// The isolation a Kubernetes pod gets: whatever its container runtime
/// enforces, named from the container ID's scheme (`containerd://…`).
fn isolation_of(statuses: &[ContainerStatus]) -> Isolation {
    let runtime = statuses
        .iter()
        .find_map(|c| c.container_id.as_deref())
        .and_then(|id| id.split_once("://"))
        .map(|(scheme, _)| scheme.chars().take(32).collect::<String>());
    Isolation::ContainerRuntime { runtime }
}

fn last_exit_of(t: &ContainerStateTerminated) -> LastExit {
    let status = match t.signal {
        Some(sig) if sig > 0 => ExitStatus::signaled(sig),
        _ => ExitStatus::exited(t.exit_code),
    };
    let reason = match t.reason.as_deref() {
        Some("OOMKilled") => ExitReason::OomKilled,
        Some("ContainerCannotRun") | Some("StartError") => ExitReason::StartFailed,
        _ if t.exit_code == 0 => ExitReason::Completed,
        _ if t.signal.is_some_and(|s| s > 0) || t.exit_code > 128 => ExitReason::Signaled,
        _ => ExitReason::Error,
    };
    let finished_at_ms = t
        .finished_at
        .as_ref()
        .map_or(0, |f| u64::try_from(f.0.as_millisecond()).unwrap_or(0));
    LastExit {
        status,
        reason,
        finished_at_ms,
        message: t.message.as_ref().map(|m| m.chars().take(1024).collect()),
    }
}

/// A Pod's status in Warden's terms, or `None` when it is not a Warden pod
/// of a valid service (no or bad service annotation, a name Warden cannot
/// address).
pub fn pod_status(pod: &Pod) -> Option<PodStatus> {
    let meta = &pod.metadata;
    let service = meta
        .annotations
        .as_ref()?
        .get(ANNOTATION_SERVICE)
        .and_then(|p| ServiceRef::parse(p).ok())?;
    let name = PodName::parse(meta.name.as_deref()?).ok()?;
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.clone().unwrap_or_default();
    let workload = containers
        .iter()
        .find(|c| c.name == CONTAINER)
        .or(containers.first());
    let phase = if meta.deletion_timestamp.is_some() {
        PodPhase::Terminating
    } else {
        match status.phase.as_deref() {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        }
    };
    let started = workload
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .or(status.start_time.as_ref())
        .and_then(|t| u64::try_from(t.0.as_millisecond()).ok());
    let terminated = workload.and_then(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
    });
    Some(PodStatus {
        name,
        service,
        phase,
        ready: phase == PodPhase::Running && workload.is_some_and(|c| c.ready),
        restarts: workload.map_or(0, |c| u32::try_from(c.restart_count).unwrap_or(0)),
        started_at_ms: started,
        last_exit: terminated.map(last_exit_of),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "(not scheduled)".into()),
        isolation: isolation_of(&containers),
        template: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_TEMPLATE))
            .cloned()
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn svc(s: &str) -> ServiceRef {
        ServiceRef::parse(s).unwrap()
    }

    fn dns1123_label(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    }

    #[test]
    fn names_never_collide_where_joined_segments_would() {
        let a = deployment_name(&svc("acme/b-c/prod/api"));
        let b = deployment_name(&svc("acme-b/c/prod/api"));
        assert_ne!(a, b);
        assert!(a.starts_with("prod-api-"), "{a}");
        for n in [&a, &b] {
            assert!(dns1123_label(n), "{n}");
        }
    }

    #[test]
    fn long_paths_give_short_valid_names() {
        let long = "x".repeat(63);
        let n = deployment_name(&svc(&format!("{long}/{long}/{long}/{long}")));
        // Room for "-<10 hex>-<5>" ReplicaSet/pod suffixes within 63.
        assert!(n.len() <= 47, "{n}");
        assert!(dns1123_label(&n), "{n}");
        let dashy = deployment_name(&svc("a/b/c-------------------------------/d"));
        assert!(dns1123_label(&dashy), "{dashy}");
    }

    #[test]
    fn label_values_are_valid_and_injective() {
        assert_eq!(label_value("prod"), "prod");
        let v = label_value("prod-");
        assert!(v.starts_with("prod.") && v.len() == 15, "{v}");
        assert_ne!(label_value("prod-"), label_value("prod--"));
        let long = format!("{}-", "a".repeat(62));
        assert!(label_value(&long).len() <= 63);
    }

    #[test]
    fn deployment_maps_the_spec_and_refuses_what_cannot_map() {
        let s = svc("acme/shop/prod/api");
        let spec = WorkloadSpec::from_yaml(
            "command: [/bin/server]\nargs: [--port, '80']\nimage: nginx:1\nreplicas: 3\n\
             env: {A: b}\nresources: {memory: 64Mi, cpu: 500m}\nrun_as: {uid: 1000, gid: 100}\n\
             min_ready_seconds: 5\n",
        )
        .unwrap();
        let d = deployment(&s, "warden", &spec, &Overlay::default()).unwrap();
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["minReadySeconds"], 5);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1");
        assert_eq!(c["command"], json!(["/bin/server", "--port", "80"]));
        assert_eq!(c["env"], json!([{"name": "A", "value": "b"}]));
        assert_eq!(c["resources"]["limits"]["memory"], "67108864");
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        assert_eq!(c["securityContext"]["runAsUser"], 1000);
        assert_eq!(d["metadata"]["labels"][LABEL_SERVICE], "api");
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"][ANNOTATION_SERVICE],
            "acme/shop/prod/api"
        );
        let stopped = Overlay {
            stopped: true,
            restarted_at: Some("t".into()),
        };
        let d = deployment(&s, "warden", &spec, &stopped).unwrap();
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"][ANNOTATION_RESTARTED_AT],
            "t"
        );
        // Round trip through the annotations.
        let ann: BTreeMap<String, String> =
            serde_json::from_value(d["metadata"]["annotations"].clone()).unwrap();
        let (back, o) = stored_state(Some(&ann), Some("t".into())).unwrap();
        assert_eq!(back, spec);
        assert_eq!(o, stopped);

        let no_image = WorkloadSpec::new(["/bin/true"]).unwrap();
        assert!(matches!(
            deployment(&s, "warden", &no_image, &Overlay::default()),
            Err(RuntimeError::InvalidSpec { .. })
        ));
        let never = spec.clone().with_restart(RestartPolicy::Never);
        assert!(matches!(
            deployment(&s, "warden", &never, &Overlay::default()),
            Err(RuntimeError::Unsupported(_))
        ));
    }

    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let s = svc("acme/shop/prod/api");
        let spec = WorkloadSpec::from_yaml("command: [/bin/server]\nimage: nginx:1\n").unwrap();
        let d = deployment(&s, "warden", &spec, &Overlay::default()).unwrap();
        let sc = &d["spec"]["template"]["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["runAsUser"], 65534);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        let root = WorkloadSpec::from_yaml(
            "command: [/bin/server]\nimage: nginx:1\nrun_as: {uid: 0, gid: 0}\n",
        )
        .unwrap();
        assert!(matches!(
            deployment(&s, "warden", &root, &Overlay::default()),
            Err(RuntimeError::InvalidSpec { .. })
        ));
        // An anchor reused many times makes a small YAML a large object
        // (and each control character is six bytes of JSON).
        let big = format!(
            "command: [/bin/server, &a \"{}\", *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nimage: nginx:1\n",
            "\\e".repeat(4000)
        );
        let big = WorkloadSpec::from_yaml(&big).unwrap();
        assert!(matches!(
            deployment(&s, "warden", &big, &Overlay::default()),
            Err(RuntimeError::InvalidSpec { .. })
        ));
    }

    #[test]
    fn pod_status_reads_a_pod_and_ignores_foreign_ones() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "prod-api-0123-abcde",
                          "annotations": {ANNOTATION_SERVICE: "acme/shop/prod/api", ANNOTATION_TEMPLATE: "h1"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "workload"}]},
            "status": {"phase": "Running", "startTime": "2026-12-01T10:00:00Z",
                "containerStatuses": [{"name": "workload", "ready": true, "restartCount": 2,
                    "image": "x", "imageID": "", "containerID": "containerd://ab",
                    "state": {"running": {"startedAt": "2026-12-01T10:00:05Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled",
                        "finishedAt": "2026-12-01T10:00:04Z"}}}]}
        }))
        .unwrap();
        let s = pod_status(&pod).unwrap();
        assert_eq!(s.phase, PodPhase::Running);
        assert!(s.ready);
        assert_eq!(s.restarts, 2);
        assert_eq!(s.node, "node-1");
        assert_eq!(s.template, "h1");
        assert_eq!(s.started_at_ms, Some(1_796_119_205_000));
        let last = s.last_exit.unwrap();
        assert_eq!(last.reason, ExitReason::OomKilled);
        assert_eq!(last.status.code, 137);
        assert_eq!(
            s.isolation,
            Isolation::ContainerRuntime {
                runtime: Some("containerd".into())
            }
        );
        let foreign: Pod = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert!(pod_status(&foreign).is_none());
        let bad: Pod = serde_json::from_value(
            json!({"metadata": {"name": "x", "annotations": {ANNOTATION_SERVICE: "../etc"}}}),
        )
        .unwrap();
        assert!(pod_status(&bad).is_none());
    }
}
