//! The injector's mutating admission webhook (`warden injector webhook`,
//! issue 12), run as the real binary on 127.0.0.1 with a generated TLS
//! certificate: real `AdmissionReview` v1 JSON posted over HTTPS (HTTP/1.1
//! and HTTP/2, as the API server may use either), around pods made by the
//! real kubectl (`kubectl run ... --dry-run=client -o json`, whose
//! discovery is answered by the stand-in API server of
//! `kubernetes/tests/cluster/apiserver.rs`, and `kubectl create deployment
//! --dry-run=client`, which needs none); the returned JSON Patch applied
//! with json-patch and the result read as a `k8s_openapi` Pod. No
//! kube-apiserver can run here (docs/injector.md).
//!
//! The binary must be built first (`cargo build -p warden-cli`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::harness::warden_bin;
use crate::kubernetes::apiserver::ApiServer;

const SERVICE: &str = "acme/shop/prod/api";
const IMAGE: &str = "registry.example/warden/injector:1.0";
const WARDEN_SERVER: &str = "https://warden.example:8443";
const CLUSTER: &str = "prod-eu";
const UID: &str = "2b9a1c4e-8f1d-4c59-9d3a-6f2e7a1b0c55";

/// A running `warden injector webhook`, killed when dropped.
struct Webhook {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// The CA that signed the webhook's certificate (the `caBundle`).
    ca_pem: String,
    /// The webhook's private key, which must never reach a pod.
    key_pem: String,
    /// What `--warden-ca` holds: the Warden server's CA, which must.
    warden_ca_pem: String,
    _dir: tempfile::TempDir,
}

/// A CA and a certificate it signed for 127.0.0.1: (CA PEM, chain PEM,
/// key PEM).
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

impl Webhook {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, chain, key_pem) = pki();
        let (warden_ca_pem, _, _) = pki();
        let path = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let mut child = tokio::process::Command::new(warden_bin())
            .args(["injector", "webhook", "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(path("tls.pem", &chain))
            .arg("--tls-key")
            .arg(path("tls-key.pem", &key_pem))
            .arg("--warden-ca")
            .arg(path("warden-ca.pem", &warden_ca_pem))
            .args(["--injector-image", IMAGE, "--warden-server", WARDEN_SERVER])
            .args(["--cluster", CLUSTER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the webhook did not start in 30 s")
            .unwrap()
            .expect("the webhook exited before listening");
        let addr = line
            .strip_prefix("warden injector webhook listening on https://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            ca_pem,
            key_pem,
            warden_ca_pem,
            _dir: dir,
        }
    }

    async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp,
            )
            .await
            .unwrap()
    }

    /// One request on a fresh connection: (status, body).
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        h2: bool,
    ) -> (u16, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr))
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        let resp = if h2 {
            let io = TokioIo::new(self.tls(b"h2").await);
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let io = TokioIo::new(self.tls(b"http/1.1").await);
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        };
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1 << 20)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    /// Posts a review; the answer's `response`, checked to be a v1 review
    /// echoing the uid.
    async fn review(&self, review: &Value, h2: bool) -> Value {
        let (status, body) = self
            .send(
                "POST",
                "/mutate",
                "application/json",
                serde_json::to_vec(review).unwrap(),
                h2,
            )
            .await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{text}");
        assert!(
            !text.contains(self.key_pem.trim()),
            "the webhook's key in an answer"
        );
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
        assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer["response"].clone()
    }

    /// A 4xx error answer: (status, code, message).
    async fn refused(&self, content_type: &str, body: Vec<u8>, h2: bool) -> (u16, String, String) {
        let (status, body) = self.send("POST", "/mutate", content_type, body, h2).await;
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
        (
            status,
            v["error"]["code"].as_str().unwrap().to_owned(),
            v["error"]["message"].as_str().unwrap().to_owned(),
        )
    }

    async fn healthy(&self) {
        let (status, body) = self
            .send("GET", "/healthz", "text/plain", Vec::new(), false)
            .await;
        assert_eq!((status, body.as_slice()), (200, b"ok\n".as_slice()));
    }
}

/// The review the API server sends for creating `pod` in `shop`.
fn review_of(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    })
}

/// Applies the response's patch to `pod` (none: unchanged).
fn apply(pod: &Value, response: &Value) -> Value {
    let mut out = pod.clone();
    if let Some(p) = response.get("patch") {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().unwrap())
            .unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &ops).unwrap();
    }
    out
}

/// Runs kubectl and returns its JSON output.
fn kubectl(args: &[&str]) -> Value {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl run NAME --dry-run=client -o json` with the given flags.
/// kubectl asks the API server for discovery even then, so the stand-in
/// answers it; nothing is created.
fn kubectl_run(api: &ApiServer, dir: &std::path::Path, name: &str, extra: &[&str]) -> Value {
    let kubeconfig = api.kubeconfig(dir, None);
    let mut args = vec![
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "run",
        name,
        "--dry-run=client",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let pod = kubectl(&args);
    assert_eq!(pod["kind"], "Pod", "{pod}");
    pod
}

const INJECT: &str = "--annotations=warden.dev/inject=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_pods_are_wrapped_once_and_hold_no_secret() {
    let hook = Webhook::start().await;
    hook.healthy().await;
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = format!("--annotations=warden.dev/service={SERVICE}");
    let pod = kubectl_run(
        &api,
        dir.path(),
        "web",
        &[
            "--image=busybox",
            INJECT,
            &service,
            "--command",
            "--",
            "sleep",
            "3600",
        ],
    );
    for h2 in [false, true] {
        let response = hook.review(&review_of(&pod), h2).await;
        assert_eq!(response["allowed"], true, "{response}");
        let mutated = apply(&pod, &response);
        let text = serde_json::to_string(&mutated).unwrap();
        let typed: Pod = serde_json::from_value(mutated.clone()).unwrap();
        let spec = typed.spec.unwrap();

        let init = spec.init_containers.unwrap();
        assert_eq!(init[0].name, "warden-injector");
        assert_eq!(init[0].image.as_deref(), Some(IMAGE));
        let c = &spec.containers[0];
        assert_eq!(
            c.command.as_deref().unwrap(),
            [
                "/warden/bin/warden-injector",
                "exec",
                "--service",
                SERVICE,
                "--",
                "sleep",
                "3600"
            ]
        );
        let volumes = spec.volumes.unwrap();
        let bin = volumes.iter().find(|v| v.name == "warden-bin").unwrap();
        assert_eq!(
            bin.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
        let token = volumes.iter().find(|v| v.name == "warden-token").unwrap();
        let sa = token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0]
            .service_account_token
            .clone()
            .unwrap();
        assert_eq!(sa.audience.as_deref(), Some("warden"));
        assert_eq!(sa.expiration_seconds, Some(3600));
        let mounts = c.volume_mounts.as_ref().unwrap();
        for (name, path) in [
            ("warden-bin", "/warden/bin"),
            ("warden-token", "/var/run/secrets/warden"),
        ] {
            assert!(
                mounts
                    .iter()
                    .any(|m| m.name == name && m.mount_path == path && m.read_only == Some(true)),
                "{name} not mounted read-only at {path}: {mounts:?}"
            );
        }
        let env: Vec<(&str, &str)> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e.value_from.is_none(), "{e:?}");
                (e.name.as_str(), e.value.as_deref().unwrap())
            })
            .collect();
        assert_eq!(
            env,
            [
                ("WARDEN_SERVER", WARDEN_SERVER),
                ("WARDEN_CA_PEM", hook.warden_ca_pem.as_str()),
                ("WARDEN_K8S_TOKEN_FILE", "/var/run/secrets/warden/token"),
                ("WARDEN_CLUSTER", CLUSTER),
            ]
        );
        // Nothing secret: no Secret volume or reference, no private key,
        // only the public CA certificate.
        for needle in [
            "secretName",
            "secretKeyRef",
            "secretRef",
            "PRIVATE KEY",
            hook.key_pem.trim(),
        ] {
            assert!(!text.contains(needle), "{needle:?} in the mutated pod");
        }
        // The mutated pod reviewed again (reinvocation): no patch.
        let again = hook.review(&review_of(&mutated), h2).await;
        assert_eq!(again["allowed"], true, "{again}");
        assert!(again.get("patch").is_none(), "wrapped twice: {again}");
    }

    // A pod without the annotation: allowed, untouched.
    let plain = kubectl_run(
        &api,
        dir.path(),
        "plain",
        &["--image=busybox", "--command", "--", "true"],
    );
    let response = hook.review(&review_of(&plain), false).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");

    // kubectl create deployment (no discovery needed): its pod template,
    // annotated, with an init container of its own that must come second.
    let deployment = kubectl(&[
        "create",
        "deployment",
        "shop",
        "--image=busybox",
        "--dry-run=client",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        "exec server",
    ]);
    let mut pod = deployment["spec"]["template"].clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!("shop-1");
    pod["metadata"]["annotations"] = json!({
        "warden.dev/inject": "true",
        "warden.dev/service": SERVICE,
    });
    pod["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "busybox", "command": ["true"]}]);
    let response = hook.review(&review_of(&pod), true).await;
    let typed: Pod = serde_json::from_value(apply(&pod, &response)).unwrap();
    let spec = typed.spec.unwrap();
    let names: Vec<String> = spec
        .init_containers
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["warden-injector", "migrate"]);
    assert_eq!(
        spec.containers[0].command.as_deref().unwrap()[4..],
        ["--", "sh", "-c", "exec server"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_it_cannot_wrap_are_denied_with_a_reason() {
    let hook = Webhook::start().await;
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let service = format!("--annotations=warden.dev/service={SERVICE}");
    // No command: the image's entrypoint is not looked up in a registry.
    // (Asked for by the label, which the shipped configuration selects on.)
    let pod = kubectl_run(
        &api,
        dir.path(),
        "nocmd",
        &["--image=nginx", "--labels=warden.dev/inject=true", &service],
    );
    assert_eq!(pod["metadata"]["labels"]["warden.dev/inject"], "true");
    let response = hook.review(&review_of(&pod), false).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response.get("patch").is_none());
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"nocmd\" has no command")
            && message.contains("warden.dev/command.nocmd"),
        "{message}"
    );
    // The same pod with the command in the annotation is wrapped.
    let pod = kubectl_run(
        &api,
        dir.path(),
        "nocmd",
        &[
            "--image=nginx",
            INJECT,
            &service,
            "--annotations=warden.dev/command.nocmd=[\"/docker-entrypoint.sh\",\"nginx\"]",
        ],
    );
    let response = hook.review(&review_of(&pod), false).await;
    assert_eq!(response["allowed"], true, "{response}");
    let typed: Pod = serde_json::from_value(apply(&pod, &response)).unwrap();
    assert_eq!(
        typed.spec.unwrap().containers[0]
            .command
            .as_deref()
            .unwrap()[4..],
        ["--", "/docker-entrypoint.sh", "nginx"]
    );
    // A service path with `..`.
    let pod = kubectl_run(
        &api,
        dir.path(),
        "dots",
        &[
            "--image=busybox",
            INJECT,
            "--annotations=warden.dev/service=acme/../prod/api",
            "--command",
            "--",
            "true",
        ],
    );
    let response = hook.review(&review_of(&pod), true).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("warden.dev/service") && message.contains("\"..\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_are_4xx_and_the_webhook_keeps_serving() {
    let mut hook = Webhook::start().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"warden.dev/inject": "true", "warden.dev/service": SERVICE}},
        "spec": {"containers": [{"name": "a", "image": "busybox", "command": ["true"]}]}});
    let good = serde_json::to_vec(&review_of(&pod)).unwrap();

    let (status, code, message) = hook
        .refused("application/json", good[..good.len() - 7].to_vec(), false)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "malformed_review"),
        "{message}"
    );
    assert!(message.contains("ends early"), "{message}");

    let mut v1beta1 = review_of(&pod);
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, code, message) = hook
        .refused(
            "application/json",
            serde_json::to_vec(&v1beta1).unwrap(),
            true,
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "unsupported_version"),
        "{message}"
    );
    assert!(
        message.contains("admissionReviewVersions: [v1]"),
        "{message}"
    );

    let mut no_uid = review_of(&pod);
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let (status, code, _) = hook
        .refused(
            "application/json",
            serde_json::to_vec(&no_uid).unwrap(),
            false,
        )
        .await;
    assert_eq!((status, code.as_str()), (400, "malformed_review"));

    let (status, code, _) = hook.refused("text/plain", good.clone(), false).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));

    // 4 MiB of valid JSON (a pod with a huge label): refused by size,
    // over HTTP/2 with the body sent...
    let mut huge = review_of(&pod);
    huge["request"]["object"]["metadata"]["labels"] = json!({"x": "y".repeat(4 << 20)});
    let (status, code, _) = hook
        .refused("application/json", serde_json::to_vec(&huge).unwrap(), true)
        .await;
    assert_eq!((status, code.as_str()), (413, "too_large"));
    // ... and over HTTP/1.1 from its Content-Length alone, before any of it
    // is sent.
    let mut tls = hook.tls(b"http/1.1").await;
    tls.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            4 << 20
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0; 12];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(tls);

    // Not a pod (a misconfigured rule): denied, not mutated.
    let mut deployment = review_of(&pod);
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let response = hook.review(&deployment, false).await;
    assert_eq!(response["allowed"], false);

    // Garbage that is not HTTP at all, then a good review still works.
    let mut tls = hook.tls(b"http/1.1").await;
    tls.write_all(b"\x01\x02 NOT HTTP\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut sink)).await;
    drop(tls);
    hook.healthy().await;
    let response = hook.review(&review_of(&pod), false).await;
    assert_eq!(response["allowed"], true);
    assert!(response["patch"].is_string());
    assert!(
        hook.child.try_wait().unwrap().is_none(),
        "the webhook exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_to_start_with_a_key_as_the_warden_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chain, key) = pki();
    std::fs::write(dir.path().join("tls.pem"), &chain).unwrap();
    std::fs::write(dir.path().join("tls-key.pem"), &key).unwrap();
    let out = tokio::process::Command::new(warden_bin())
        .args(["injector", "webhook", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("tls-key.pem"))
        .arg("--warden-ca")
        .arg(dir.path().join("tls-key.pem"))
        .args(["--injector-image", IMAGE, "--warden-server", WARDEN_SERVER])
        .args(["--cluster", CLUSTER])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--warden-ca"), "{err}");
    assert!(!err.contains(key.trim()), "the key echoed: {err}");
    assert!(out.stdout.is_empty());
}

/// The shipped manifests: the configuration the docs describe, and a
/// Deployment whose flags the real binary knows.
#[test]
fn the_shipped_manifests_configure_what_the_docs_say() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/injector-webhook.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let config = find("MutatingWebhookConfiguration");
    let hook = &config["webhooks"][0];
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10);
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(
        hook["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
            "resources": ["pods"], "scope": "Namespaced"}])
    );
    // Fail is bounded by both selectors.
    assert_eq!(
        hook["namespaceSelector"]["matchLabels"]["warden.dev/injection"],
        "enabled"
    );
    assert_eq!(
        hook["objectSelector"]["matchLabels"]["warden.dev/inject"],
        "true"
    );
    let service = find("Service");
    assert_eq!(
        service["metadata"]["name"],
        hook["clientConfig"]["service"]["name"]
    );
    assert_eq!(
        service["metadata"]["namespace"],
        hook["clientConfig"]["service"]["namespace"]
    );
    let args = &find("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["injector", "webhook"]);
    let help = std::process::Command::new(warden_bin())
        .args(["injector", "webhook", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "{flag} unknown to the binary"
        );
    }
}
