//! `warden agent --runtime kubernetes` end to end: a `warden dev` control
//! plane, a `warden agent` process whose Kubernetes API is the stand-in
//! server of `kubernetes/tests/cluster/apiserver.rs` (no kube-apiserver can
//! run here; that server's answers are checked with stock kubectl in its
//! own crate), and workloads applied, scaled, stopped, restarted and
//! deleted through the HTTP API landing as Deployments and pods.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use warden_api::Client;
use warden_runtime::ServiceRef;

use crate::harness::{free_port, spawn_dev, wait_for_dev, warden_bin};

#[allow(dead_code)]
#[path = "../../kubernetes/tests/cluster/apiserver.rs"]
pub(crate) mod apiserver;

use apiserver::{ApiServer, NODE};

const SERVICE: &str = "acme/shop/kube/api";

/// A process killed (-9) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ok(c: &Client, m: Method, path: &str, body: Option<Value>) -> Value {
    c.call(m, path, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

/// A request whose success has no body: its status.
async fn send(c: &Client, m: Method, path: &str, body: Value) -> u16 {
    let body = serde_json::to_vec(&body).unwrap();
    let (status, answer) = c
        .connect()
        .await
        .unwrap()
        .send(m, path, Some(body))
        .await
        .unwrap();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    status.as_u16()
}

/// Waits until the service's pods are `n`, all ready; returns their names.
async fn ready(c: &Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ok(
            c,
            Method::GET,
            &format!("/api/v1/workloads/{SERVICE}"),
            None,
        )
        .await;
        let pods = list["pods"].as_array().unwrap().clone();
        if pods.len() == n && pods.iter().all(|p| p["ready"] == json!(true)) {
            return pods;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_kubernetes_runs_workloads_as_deployments() {
    let base = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = base.path().join("data");
    let _dev = Killed(spawn_dev(&data, base.path(), port, None));
    let c = wait_for_dev(&data, port).await;

    // HTTPS with its own CA and a bearer token, as a cluster.
    let cluster = ApiServer::start_tls("agent-token-0123456789").await;
    let kubeconfig = cluster.kubeconfig(base.path(), Some("agent-token-0123456789"));

    let token = ok(
        &c,
        Method::POST,
        "/api/v1/clusters/k8s/join-tokens",
        Some(json!({"ttl_seconds": 600})),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = base.path().join("agent");
    let log = std::fs::File::create(base.path().join("agent.log")).unwrap();
    let _agent = Killed(
        std::process::Command::new(warden_bin())
            .args([
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--ca-cert",
                data.join("tls/ca.pem").to_str().unwrap(),
                "agent",
                "--runtime",
                "kubernetes",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--kube-namespace",
                "apps",
                "--state-dir",
                state.to_str().unwrap(),
                "--join-token",
                &token,
            ])
            .env("WARDEN_CONFIG", state.with_extension("client.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let shown = c
            .call(Method::GET, "/api/v1/clusters/k8s", None::<&Value>)
            .await
            .ok();
        if let Some(s) = shown.filter(|s: &Value| s["connected"] == json!(true)) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never connected: {}",
            std::fs::read_to_string(base.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shown["runtime"], "kubernetes", "{shown}");

    for (kind, path) in [
        ("organization", "acme"),
        ("project", "acme/shop"),
        ("environment", "acme/shop/kube"),
        ("service", SERVICE),
    ] {
        let mut body = json!({"kind": kind, "path": path});
        if kind == "environment" {
            body["mode"] = json!("development");
        }
        ok(&c, Method::POST, "/api/v1/scopes", Some(body)).await;
    }
    let placed = send(
        &c,
        Method::PUT,
        "/api/v1/placements/acme/shop/kube",
        json!({"cluster": "k8s"}),
    )
    .await;
    assert_eq!(placed, 204);

    // A spec without an image cannot run on Kubernetes: refused, nothing made.
    let refused = c
        .call(
            Method::PUT,
            &format!("/api/v1/workloads/{SERVICE}"),
            Some(&json!({"spec": "command: [sleep, '1000']\n"})),
        )
        .await
        .map(|v: Value| v);
    assert!(refused.is_err(), "{refused:?}");
    assert!(cluster.pod_names("apps").is_empty());

    let spec = "command: [sleep, '1000']\nimage: busybox:1.36\nreplicas: 2\n";
    let applied = ok(
        &c,
        Method::PUT,
        &format!("/api/v1/workloads/{SERVICE}"),
        Some(json!({"spec": spec})),
    )
    .await;
    assert_eq!(applied["cluster"], "k8s", "{applied}");
    let pods = ready(&c, 2).await;
    for p in &pods {
        assert_eq!(p["node"], NODE, "{p}");
        assert!(
            p["isolation"]
                .as_str()
                .unwrap()
                .contains("cluster's runtime (stand-in)"),
            "{p}"
        );
    }
    let name = warden_kubernetes::objects::deployment_name(&ServiceRef::parse(SERVICE).unwrap());
    let d = cluster.deployment("apps", &name).unwrap();
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "warden");
    assert_eq!(d["metadata"]["labels"]["warden.dev/env"], "kube");
    assert_eq!(names(&pods), {
        let mut v = cluster.pod_names("apps");
        v.sort();
        v
    });

    // Logs through the CLI, from the stand-in's pods/log.
    let pod = names(&pods)[0].clone();
    cluster.append_log("apps", &pod, "hello from kube\n");
    let out = std::process::Command::new(warden_bin())
        .args(["pod", "logs", &format!("{SERVICE}/{pod}")])
        .env("WARDEN_CONFIG", base.path().join("client.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pod {pod} started\nhello from kube\n")
    );

    let scaled = send(
        &c,
        Method::POST,
        &format!("/api/v1/workload-scale/{SERVICE}"),
        json!({"replicas": 3}),
    )
    .await;
    assert_eq!(scaled, 204);
    let three = ready(&c, 3).await;
    let control = |action: &'static str| {
        let c = &c;
        async move {
            send(
                c,
                Method::POST,
                &format!("/api/v1/workload-control/{SERVICE}"),
                json!({"action": action}),
            )
            .await
        }
    };
    assert_eq!(control("restart").await, 204);
    let restarted = ready(&c, 3).await;
    assert!(
        names(&restarted).iter().all(|n| !names(&three).contains(n)),
        "restart replaced every pod"
    );
    assert_eq!(control("stop").await, 204);
    ready(&c, 0).await;
    assert_eq!(control("start").await, 204);
    ready(&c, 3).await;
    assert_eq!(control("delete").await, 204);
    assert!(cluster.deployment("apps", &name).is_none());
    assert!(cluster.pod_names("apps").is_empty());
}
