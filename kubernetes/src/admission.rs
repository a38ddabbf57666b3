//! The mutating admission webhook's decision: an `AdmissionReview`
//! (`admission.k8s.io/v1`) in, an `AdmissionReview` with the response out.
//! Pure: no I/O, no clock, no registry; [`crate::webhook`] serves it over
//! HTTPS.
//!
//! A pod annotated (or labelled) `warden.dev/inject: "true"` and annotated
//! `warden.dev/service: ORG/PROJECT/ENV/SERVICE` gets, as one RFC 6902 JSON
//! Patch:
//!
//! - an init container, [`INIT_CONTAINER`], placed **first** in
//!   `initContainers`, that copies `warden-injector` from the injector image
//!   into an in-memory `emptyDir` ([`BIN_VOLUME`], `medium: Memory`);
//! - a projected service-account token volume ([`TOKEN_VOLUME`], audience
//!   [`TOKEN_AUDIENCE`], an hour) that the kubelet fills and refreshes;
//! - in each wrapped container: both volumes mounted read-only, the
//!   environment `WARDEN_SERVER`, `WARDEN_CA_PEM` (a CA certificate is
//!   public), `WARDEN_K8S_TOKEN_FILE` and `WARDEN_CLUSTER`, and its `command`
//!   rewritten to `[/warden/bin/warden-injector, exec, --service, S, --,
//!   ORIGINAL...]`, its `args` unchanged (the kubelet appends `args` to
//!   `command`, so they reach the original command as before);
//! - the annotation [`ANNOTATION_INJECTED`], which with the init container
//!   makes a second review of the same pod (`reinvocationPolicy:
//!   IfNeeded`) a no-op.
//!
//! It never asks an image registry for an image's entrypoint: a wrapped
//! container without a `command` is refused unless the annotation
//! `warden.dev/command.<container>` gives it as a JSON array of strings.
//! Nothing it adds is a secret: the pod spec names the server, the CA's
//! certificate, the cluster's name and a token *volume*, never a value.
//!
//! Specifications followed: Kubernetes "Dynamic Admission Control"
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>,
//! request and response shapes, `patchType: JSONPatch`, the patch base64 in
//! JSON), RFC 6902 (JSON Patch: `add` on an existing object member replaces
//! it, `add` at an array index inserts before it, `-` appends) and RFC 6901
//! (JSON Pointer: `~` is `~0`, `/` is `~1` in a reference token).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use warden_types::{ScopeKind, ScopePath};

/// `warden.dev/inject`: `"true"` asks for injection, `"false"` (or no
/// annotation) not; any other value is refused. As an annotation, or as a
/// label (the annotation wins when both are set), since the API server
/// selects the pods it sends by label only.
pub const ANNOTATION_INJECT: &str = "warden.dev/inject";
/// `warden.dev/service`: the Warden service whose secrets the pod gets.
pub const ANNOTATION_SERVICE: &str = "warden.dev/service";
/// `warden.dev/containers`: the app containers to wrap, comma-separated
/// (default: every container in `spec.containers`).
pub const ANNOTATION_CONTAINERS: &str = "warden.dev/containers";
/// `warden.dev/command.<container>`: the command of a container that sets
/// none in its spec (the image's entrypoint), as a JSON array of strings.
pub const ANNOTATION_COMMAND_PREFIX: &str = "warden.dev/command.";
/// `warden.dev/injected`: set by the webhook (the wrapped containers'
/// names); a pod carrying it is not mutated again.
pub const ANNOTATION_INJECTED: &str = "warden.dev/injected";
/// The init container's name; a pod that has one is not mutated again.
pub const INIT_CONTAINER: &str = "warden-injector";
/// The in-memory `emptyDir` the wrapper is copied into.
pub const BIN_VOLUME: &str = "warden-bin";
/// The projected service-account token volume.
pub const TOKEN_VOLUME: &str = "warden-token";
/// Where [`BIN_VOLUME`] is mounted (read-write in the init container,
/// read-only elsewhere).
pub const BIN_DIR: &str = "/warden/bin";
/// The wrapper, as the rewritten commands name it.
pub const WRAPPER: &str = "/warden/bin/warden-injector";
/// Where [`TOKEN_VOLUME`] is mounted.
pub const TOKEN_DIR: &str = "/var/run/secrets/warden";
/// The token file, `$WARDEN_K8S_TOKEN_FILE` in wrapped containers.
pub const TOKEN_FILE: &str = "/var/run/secrets/warden/token";
/// The audience of the projected token: a token for Warden is useless to
/// the Kubernetes API server, and the pod's default token is useless to
/// Warden.
pub const TOKEN_AUDIENCE: &str = "warden";
/// The projected token's lifetime; the kubelet refreshes it at 80 %.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Largest review body accepted. The API server takes request bodies of at
/// most 3 MiB and sends the object back inside the review (plus the
/// request's metadata and the `managedFields` it adds); a half MiB of
/// headroom covers the envelope.
pub const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;
/// Largest `--warden-ca` accepted (a bundle of a few certificates).
pub const MAX_CA_BYTES: usize = 64 * 1024;
/// The environment variables the webhook sets in wrapped containers.
pub const ENV_NAMES: [&str; 4] = [
    "WARDEN_SERVER",
    "WARDEN_CA_PEM",
    "WARDEN_K8S_TOKEN_FILE",
    "WARDEN_CLUSTER",
];

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";
/// The longest request uid echoed (the API server sends a UUID).
const MAX_UID_BYTES: usize = 128;
/// Most elements of a `warden.dev/command.*` array, and bytes per element.
const MAX_COMMAND_ARGS: usize = 256;
const MAX_COMMAND_ARG_BYTES: usize = 8192;

/// What the webhook puts into pods, from its command line.
#[derive(Debug, Clone)]
pub struct Injection {
    injector_image: String,
    injector_binary: String,
    server: String,
    ca_pem: String,
    cluster: String,
}

/// A webhook setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Injection {
    /// Checks the settings: an image reference without whitespace, an
    /// absolute binary path without `..`, an `https://` server, a CA of PEM
    /// certificates only, a cluster name of `[a-z0-9][a-z0-9-]{0,62}`.
    pub fn new(
        injector_image: &str,
        injector_binary: &str,
        server: &str,
        ca_pem: &str,
        cluster: &str,
    ) -> Result<Self, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if injector_image.is_empty()
            || injector_image.len() > 512
            || injector_image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return err("--injector-image: expected an image reference (no spaces)".into());
        }
        if !injector_binary.starts_with('/')
            || injector_binary.split('/').any(|s| s == "..")
            || injector_binary.len() > 1024
            || injector_binary.chars().any(char::is_control)
        {
            return err(format!(
                "--injector-binary {injector_binary:?}: expected an absolute path without '..'"
            ));
        }
        let rest = server.strip_prefix("https://").unwrap_or_default();
        if rest.is_empty()
            || server.len() > 2048
            || server.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return err(format!(
                "--warden-server {server:?}: expected https://HOST[:PORT]"
            ));
        }
        if ca_pem.len() > MAX_CA_BYTES {
            return err(format!(
                "--warden-ca: larger than {MAX_CA_BYTES} bytes; expected CA certificates"
            ));
        }
        if !is_certificate_pem(ca_pem) {
            return err(
                "--warden-ca: expected PEM certificates only (-----BEGIN CERTIFICATE-----); a private key has no place in a pod spec".into(),
            );
        }
        if ScopePath::parse_kind(cluster, ScopeKind::Organization).is_err() {
            return err(format!(
                "--cluster {cluster:?}: names are 1-63 characters of a-z, 0-9 and '-'"
            ));
        }
        Ok(Self {
            injector_image: injector_image.to_owned(),
            injector_binary: injector_binary.to_owned(),
            server: server.to_owned(),
            ca_pem: ca_pem.to_owned(),
            cluster: cluster.to_owned(),
        })
    }
}

/// True if `pem` holds at least one PEM block and every block is a
/// certificate (so a key pasted by mistake never reaches a pod spec).
fn is_certificate_pem(pem: &str) -> bool {
    let mut blocks = 0;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if label != "CERTIFICATE" {
                return false;
            }
            blocks += 1;
        }
    }
    blocks > 0
}

/// Why a review was not answered with an `AdmissionReview` (the server
/// answers these with a 4xx; the API server then applies the webhook's
/// `failurePolicy`).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is larger than [`MAX_REVIEW_BYTES`].
    #[error("the AdmissionReview is larger than {MAX_REVIEW_BYTES} bytes")]
    TooLarge,
    /// Not JSON, or not the shape `admission.k8s.io/v1` defines.
    #[error("{0}")]
    Malformed(String),
    /// Another `apiVersion` or `kind` than `admission.k8s.io/v1`
    /// `AdmissionReview`.
    #[error("{0}")]
    Version(String),
}

impl ReviewError {
    /// A stable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed_review",
            Self::Version(_) => "unsupported_version",
        }
    }
}

/// What was decided about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed as it is (not annotated, already injected, not a create).
    Unchanged,
    /// Allowed with this JSON Patch (RFC 6902 operations).
    Patch(Vec<Value>),
    /// Refused; the API server shows the message to whoever created the pod.
    Deny(String),
}

/// Reviews one `AdmissionReview` body and returns the answer's JSON body.
pub fn review(body: &[u8], injection: &Injection) -> Result<Vec<u8>, ReviewError> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(ReviewError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        // Position only: serde_json's own message can quote the input.
        ReviewError::Malformed(format!(
            "the body is not JSON ({}) at line {}, column {}",
            match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                _ => "syntax error",
            },
            e.line(),
            e.column()
        ))
    })?;
    let (uid, request) = envelope(&doc)?;
    let decision = decide(request, injection)?;
    let response = match decision {
        Decision::Unchanged => json!({"uid": uid, "allowed": true}),
        Decision::Patch(ops) => {
            let patch = serde_json::to_vec(&ops)
                .map_err(|_| ReviewError::Malformed("the patch cannot be encoded".into()))?;
            json!({
                "uid": uid,
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch),
            })
        }
        Decision::Deny(message) => json!({
            "uid": uid,
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": message},
        }),
    };
    let answer = json!({"apiVersion": API_VERSION, "kind": KIND, "response": response});
    serde_json::to_vec(&answer)
        .map_err(|_| ReviewError::Malformed("the answer cannot be encoded".into()))
}

/// Checks `apiVersion`, `kind` and the request's uid; returns the uid and
/// the request.
fn envelope(doc: &Value) -> Result<(&str, &Value), ReviewError> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str);
    let kind = doc.get("kind").and_then(Value::as_str);
    if api_version != Some(API_VERSION) || kind != Some(KIND) {
        return Err(ReviewError::Version(format!(
            "expected apiVersion {API_VERSION:?} and kind {KIND:?}, got {} and {}; set admissionReviewVersions: [v1] in the webhook configuration",
            shown(api_version),
            shown(kind)
        )));
    }
    let request = doc
        .get("request")
        .filter(|r| r.is_object())
        .ok_or_else(|| ReviewError::Malformed("the AdmissionReview has no request".into()))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| {
            !u.is_empty() && u.len() <= MAX_UID_BYTES && u.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ReviewError::Malformed(format!(
                "request.uid must be a string of 1-{MAX_UID_BYTES} printable ASCII characters"
            ))
        })?;
    Ok((uid, request))
}

fn shown(v: Option<&str>) -> String {
    match v {
        Some(s) => format!("{:?}", s.chars().take(64).collect::<String>()),
        None => "none".into(),
    }
}

/// Decides about one request (`review`'s `request` object).
pub fn decide(request: &Value, injection: &Injection) -> Result<Decision, ReviewError> {
    let kind = request.get("kind");
    let gvk = (
        kind.and_then(|k| k.get("group")).and_then(Value::as_str),
        kind.and_then(|k| k.get("version")).and_then(Value::as_str),
        kind.and_then(|k| k.get("kind")).and_then(Value::as_str),
    );
    let sub_resource = request
        .get("subResource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if gvk != (Some(""), Some("v1"), Some("Pod")) || !sub_resource.is_empty() {
        return Ok(Decision::Deny(format!(
            "the Warden injector mutates core/v1 Pods only, got {}/{} {}{}; check the rules of its MutatingWebhookConfiguration",
            gvk.0.unwrap_or("?"),
            gvk.1.unwrap_or("?"),
            gvk.2.unwrap_or("?"),
            if sub_resource.is_empty() {
                String::new()
            } else {
                format!(" (subresource {})", shown(Some(sub_resource)))
            }
        )));
    }
    let operation = request
        .get("operation")
        .and_then(Value::as_str)
        .ok_or_else(|| ReviewError::Malformed("request.operation must be a string".into()))?;
    if operation != "CREATE" {
        // A pod's containers cannot change after it is created: only its
        // creation is ever mutated (the shipped rules send CREATE only).
        return Ok(Decision::Unchanged);
    }
    let raw = request
        .get("object")
        .filter(|o| o.is_object())
        .ok_or_else(|| ReviewError::Malformed("request.object must be a Pod".into()))?;
    let pod: Pod = serde_json::from_value(raw.clone())
        .map_err(|_| ReviewError::Malformed("request.object is not a valid core/v1 Pod".into()))?;
    Ok(mutate(&pod, injection))
}

/// The mutation of one pod being created.
pub fn mutate(pod: &Pod, injection: &Injection) -> Decision {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    // The annotation, else the label of the same name: the API server can
    // select pods by label only (the shipped configuration's
    // objectSelector), never by annotation.
    let inject = annotations
        .get(ANNOTATION_INJECT)
        .or_else(|| labels.get(ANNOTATION_INJECT));
    match inject.map(String::as_str) {
        None | Some("false") => return Decision::Unchanged,
        Some("true") => {}
        Some(other) => {
            return Decision::Deny(format!(
                "annotation {ANNOTATION_INJECT} must be \"true\" or \"false\", not {}",
                shown(Some(other))
            ));
        }
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Decision::Deny("the pod has no spec".into());
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    if annotations.contains_key(ANNOTATION_INJECTED)
        || init.iter().any(|c| c.name == INIT_CONTAINER)
    {
        // Already mutated (a reinvocation, or a pod copied from a mutated
        // one): wrapping again would run the wrapper twice.
        return Decision::Unchanged;
    }
    let Some(service) = annotations.get(ANNOTATION_SERVICE) else {
        return Decision::Deny(format!(
            "annotation {ANNOTATION_SERVICE} (ORG/PROJECT/ENV/SERVICE) is required with {ANNOTATION_INJECT}: \"true\""
        ));
    };
    let service = match ScopePath::parse_kind(service, ScopeKind::Service) {
        Ok(s) => s,
        Err(e) => return Decision::Deny(format!("annotation {ANNOTATION_SERVICE}: {e}")),
    };
    let chosen = match chosen_containers(annotations, &spec.containers) {
        Ok(c) => c,
        Err(m) => return Decision::Deny(m),
    };
    // Every problem at once, so a user fixes the pod in one go.
    let mut problems = Vec::new();
    if let Some(v) = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == BIN_VOLUME || v.name == TOKEN_VOLUME)
    {
        problems.push(format!(
            "the pod already has a volume named {:?}, which the injector adds",
            v.name
        ));
    }
    let mut commands = Vec::new();
    for &i in &chosen {
        let c = &spec.containers[i];
        match command_of(c, annotations) {
            Ok(cmd) => commands.push((i, cmd)),
            Err(m) => problems.push(m),
        }
        if let Some(m) = c
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| {
                let p = m.mount_path.trim_end_matches('/');
                p == BIN_DIR || p == TOKEN_DIR
            })
        {
            problems.push(format!(
                "container {:?} already mounts something at {}, where the injector mounts its own volume",
                c.name, m.mount_path
            ));
        }
        if let Some(e) = c
            .env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| ENV_NAMES.contains(&e.name.as_str()))
        {
            problems.push(format!(
                "container {:?} sets {}, which the injector sets",
                c.name, e.name
            ));
        }
    }
    if !problems.is_empty() {
        return Decision::Deny(format!("cannot inject Warden: {}", problems.join("; ")));
    }
    Decision::Patch(patch(spec, &service, &commands, injection))
}

/// Indices in `spec.containers` of the containers to wrap.
fn chosen_containers(
    annotations: &BTreeMap<String, String>,
    containers: &[Container],
) -> Result<Vec<usize>, String> {
    let Some(list) = annotations.get(ANNOTATION_CONTAINERS) else {
        return Ok((0..containers.len()).collect());
    };
    let mut chosen = BTreeSet::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match containers.iter().position(|c| c.name == name) {
            Some(i) => {
                chosen.insert(i);
            }
            None => {
                return Err(format!(
                    "annotation {ANNOTATION_CONTAINERS} names {}, which is not one of the pod's containers ({})",
                    shown(Some(name)),
                    containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "annotation {ANNOTATION_CONTAINERS} names no container"
        ));
    }
    Ok(chosen.into_iter().collect())
}

/// The command a container runs: its `command`, else the annotation's.
fn command_of(
    c: &Container,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    if let Some(cmd) = c.command.as_ref().filter(|cmd| !cmd.is_empty()) {
        return Ok(cmd.clone());
    }
    let key = format!("{ANNOTATION_COMMAND_PREFIX}{}", c.name);
    let Some(text) = annotations.get(&key) else {
        return Err(format!(
            "container {:?} has no command; the injector never asks a registry for an image's entrypoint: set the container's `command`, or the annotation {key} to the image's entrypoint as a JSON array (e.g. [\"/app/server\"])",
            c.name
        ));
    };
    let bad = || {
        format!(
            "annotation {key} must be a JSON array of 1-{MAX_COMMAND_ARGS} strings, the first not empty"
        )
    };
    let cmd: Vec<String> = serde_json::from_str(text).map_err(|_| bad())?;
    if cmd.is_empty()
        || cmd.len() > MAX_COMMAND_ARGS
        || cmd[0].is_empty()
        || cmd.iter().any(|a| a.len() > MAX_COMMAND_ARG_BYTES)
    {
        return Err(bad());
    }
    Ok(cmd)
}

/// RFC 6901: a reference token with `~` and `/` escaped.
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn add(path: String, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

/// The JSON Patch. Lists the object may lack (or hold as `null`) are added
/// whole; existing ones are inserted into, so nothing else in the pod is
/// rewritten (fields this crate's Kubernetes types do not know included).
fn patch(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    service: &ScopePath,
    commands: &[(usize, Vec<String>)],
    injection: &Injection,
) -> Vec<Value> {
    let mut ops = Vec::new();
    let init = json!({
        "name": INIT_CONTAINER,
        "image": injection.injector_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cp", injection.injector_binary, WRAPPER],
        "volumeMounts": [{"name": BIN_VOLUME, "mountPath": BIN_DIR}],
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"memory": "32Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    // First, so the wrapper is in place before any other init container
    // runs (init containers run in order).
    if spec.init_containers.is_some() {
        ops.push(add("/spec/initContainers/0".into(), init));
    } else {
        ops.push(add("/spec/initContainers".into(), json!([init])));
    }
    let volumes = [
        json!({"name": BIN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}}),
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE,
            "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
            "path": "token",
        }}]}}),
    ];
    append(&mut ops, "/spec/volumes", spec.volumes.is_some(), &volumes);
    let mounts = [
        json!({"name": BIN_VOLUME, "mountPath": BIN_DIR, "readOnly": true}),
        json!({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true}),
    ];
    let env = [
        json!({"name": "WARDEN_SERVER", "value": injection.server}),
        json!({"name": "WARDEN_CA_PEM", "value": injection.ca_pem}),
        json!({"name": "WARDEN_K8S_TOKEN_FILE", "value": TOKEN_FILE}),
        json!({"name": "WARDEN_CLUSTER", "value": injection.cluster}),
    ];
    let mut names = Vec::new();
    for (i, original) in commands {
        let c = &spec.containers[*i];
        names.push(c.name.as_str());
        let base = format!("/spec/containers/{i}");
        let mut command = vec![
            WRAPPER.to_owned(),
            "exec".into(),
            "--service".into(),
            service.as_str().to_owned(),
            "--".into(),
        ];
        command.extend(original.iter().cloned());
        ops.push(add(format!("{base}/command"), json!(command)));
        append(
            &mut ops,
            &format!("{base}/volumeMounts"),
            c.volume_mounts.is_some(),
            &mounts,
        );
        append(&mut ops, &format!("{base}/env"), c.env.is_some(), &env);
    }
    ops.push(add(
        format!(
            "/metadata/annotations/{}",
            pointer_token(ANNOTATION_INJECTED)
        ),
        json!(names.join(",")),
    ));
    ops
}

/// Appends `items` to the list at `path`: one `add` of the whole list if
/// the object has none, else one `add .../-` per item.
fn append(ops: &mut Vec<Value>, path: &str, exists: bool, items: &[Value]) {
    if exists {
        for item in items {
            ops.push(add(format!("{path}/-"), item.clone()));
        }
    } else {
        ops.push(add(path.to_owned(), json!(items)));
    }
}

#[cfg(test)]
mod tests;
