//! Services' workloads and pods through the real `warden dev` binary: its
//! in-process agent runs pods on the local runtime (namespaces and cgroups
//! as root, as on CI), reached through the pipeline and the agent link.
//! Without root the local runtime runs pods without namespaces; the
//! isolation checks then print `SKIPPED` and the rest still runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use warden_api::{Client, ClientError};

use crate::harness::{free_port, spawn_dev_with_env, wait_for_dev, warden_bin};

/// Whether this process runs as root (effective uid, from /proc).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A `warden dev` process over a data directory under /var/tmp (not /tmp:
/// pods get a private /tmp, which would hide the data directory from them
/// whether or not the runtime masks it).
pub(crate) struct Dev {
    child: std::process::Child,
    pub(crate) base: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) client: Client,
    /// Extra environment of every start.
    env: Vec<(String, String)>,
}

impl Dev {
    pub(crate) async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// [`Dev::start`] with extra environment variables (kept for restarts).
    pub(crate) async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let base = tempfile::Builder::new()
            .prefix("warden-pods-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        let port = free_port();
        let child = spawn_dev_with_env(&base.path().join("data"), base.path(), port, None, &env);
        let client = wait_for_dev(&base.path().join("data"), port).await;
        Self {
            child,
            base,
            port,
            client,
            env,
        }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.base.path().join("data")
    }

    /// kill -9, then a new `warden dev` over the same directory.
    pub(crate) async fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = spawn_dev_with_env(&self.data(), self.base.path(), self.port, None, &self.env);
        self.client = wait_for_dev(&self.data(), self.port).await;
    }

    pub(crate) async fn call(
        &self,
        m: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        self.client.call(m, path, body.as_ref()).await
    }

    pub(crate) async fn ok(&self, m: Method, path: &str, body: Option<Value>) -> Value {
        self.call(m, path, body).await.unwrap()
    }

    pub(crate) async fn scopes(&self, env: &str, mode: &str, services: &[&str]) {
        let mut parts = env.split('/');
        let (org, project) = (parts.next().unwrap(), parts.next().unwrap());
        for (kind, path, mode) in [
            ("organization", org.to_owned(), None),
            ("project", format!("{org}/{project}"), None),
            ("environment", env.to_owned(), Some(mode)),
        ] {
            let mut body = json!({"kind": kind, "path": path});
            if let Some(m) = mode {
                body["mode"] = json!(m);
            }
            // The organization and project may exist already.
            let _ = self.call(Method::POST, "/api/v1/scopes", Some(body)).await;
        }
        for s in services {
            self.ok(
                Method::POST,
                "/api/v1/scopes",
                Some(json!({"kind": "service", "path": format!("{env}/{s}")})),
            )
            .await;
        }
    }

    pub(crate) async fn apply(&self, service: &str, spec: &str) -> Result<Value, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/v1/workloads/{service}"),
            Some(json!({"spec": spec})),
        )
        .await
    }

    /// Waits until `service` has `n` ready pods; returns them.
    pub(crate) async fn ready(&self, service: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self
                .ok(Method::GET, &format!("/api/v1/workloads/{service}"), None)
                .await;
            let pods: Vec<Value> = list["pods"].as_array().unwrap().clone();
            if pods.iter().filter(|p| p["ready"] == json!(true)).count() == n {
                return pods;
            }
            assert!(Instant::now() < deadline, "{service}: {list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A pod's kept output, through the CLI.
    fn logs(&self, pod: &str) -> (i32, String, String) {
        let out = std::process::Command::new(warden_bin())
            .args(["pod", "logs", pod])
            .env("WARDEN_CONFIG", self.base.path().join("client.toml"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until a pod's log contains `needle`.
    fn logs_until(&self, pod: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, out, err) = self.logs(pod);
            assert_eq!(code, 0, "{err}");
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{pod}: {needle:?} never came: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A request whose success has no body: its status and body.
    pub(crate) async fn send(&self, m: Method, path: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (s, b) = self
            .client
            .connect()
            .await
            .unwrap()
            .send(m, path, body)
            .await
            .unwrap();
        (s.as_u16(), String::from_utf8_lossy(&b).into_owned())
    }

    /// A control action (`stop`, `start`, `delete`), answered 204.
    async fn control(&self, service: &str, action: &str) {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/api/v1/workload-control/{service}"),
                Some(json!({ "action": action })),
            )
            .await;
        assert_eq!(s, 204, "{action} {service}: {b}");
    }

    async fn delete(&self, service: &str) {
        self.control(service, "delete").await;
    }
}

impl Drop for Dev {
    /// Kills the server and, should a test have failed before deleting its
    /// workloads, every pod shim holding a file under this test's directory
    /// (a shim's pod dies with it).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_holders_of(self.base.path());
    }
}

/// Kills (-9) every other process holding a file under `base`: pod shims
/// left by a failed test (a shim's pod dies with it).
fn kill_holders_of(base: &std::path::Path) {
    let me = std::process::id().to_string();
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if proc.file_name().to_string_lossy() == me {
            continue;
        }
        let holds_ours = std::fs::read_dir(proc.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(base)));
        if holds_ours {
            let _ = std::process::Command::new("kill")
                .args(["-9", &proc.file_name().to_string_lossy()])
                .status();
        }
    }
}

fn status(r: Result<Value, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api {
            status, message, ..
        }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_isolated_and_are_reached_through_the_pipeline() {
    let dev = Dev::start().await;
    dev.scopes("acme/shop/dev", "development", &["api", "probe"])
        .await;
    dev.scopes("acme/shop/prod", "production", &["api"]).await;

    // Two replicas; each pod's hostname is its name.
    let spec = "command: [/bin/sh, -c, 'echo host=$(hostname); exec sleep 1000']\nreplicas: 2\n";
    let answer = dev.apply("acme/shop/dev/api", spec).await.unwrap();
    assert_eq!(answer["cluster"], "local");
    let pods = dev.ready("acme/shop/dev/api", 2).await;
    let name = pods[0]["name"].as_str().unwrap().to_owned();
    let out = dev.logs_until(&format!("acme/shop/dev/api/{name}"), "host=");
    assert!(out.contains(&format!("host={name}")), "{out}");

    // The environment's list holds them; a service of another environment
    // is another service.
    let env = dev
        .ok(Method::GET, "/api/v1/pods/acme/shop/dev", None)
        .await;
    assert_eq!(env["pods"].as_array().unwrap().len(), 2);
    let (code, _) = status(
        dev.call(
            Method::GET,
            &format!("/api/v1/pod-logs/acme/shop/prod/api?pod={name}"),
            None,
        )
        .await,
    );
    assert!(code == 404, "{code}");

    // What a pod sees: only its own processes, none of Warden's files.
    let data = dev.data();
    let probe = format!(
        "command: [/bin/sh, -c, 'echo procs=$(ls /proc | grep -c \"^[0-9]\"); \
         cat {key} >/dev/null 2>&1 && echo KEY-READ || echo key-unreadable; \
         echo data-entries=$(ls -A {data} 2>/dev/null | wc -l); \
         echo done; exec sleep 1000']\n",
        key = data.join("dev-unseal.key").display(),
        data = data.display(),
    );
    dev.apply("acme/shop/dev/probe", &probe).await.unwrap();
    let probe_pod = dev.ready("acme/shop/dev/probe", 1).await[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = dev.logs_until(&format!("acme/shop/dev/probe/{probe_pod}"), "done");
    assert!(out.contains("key-unreadable"), "{out}");
    // Masked (an empty read-only tmpfs) as well as out of the pod user's
    // reach: nothing of it shows.
    assert!(out.contains("data-entries=0"), "{out}");
    if is_root() {
        let procs: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix("procs="))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // sh, ls, grep and the pod's init: a handful, not the host's.
        assert!(procs <= 6, "{out}");
        assert!(
            pods[0]["isolation"]
                .as_str()
                .unwrap()
                .starts_with("namespaces")
        );
    } else {
        eprintln!("SKIPPED pod isolation checks: needs root");
    }

    // A malformed spec is a 400 naming the field and the line; nothing
    // changes.
    let (code, message) = status(
        dev.apply(
            "acme/shop/dev/api",
            "command: [sleep, '1']\nreplicas: lots\n",
        )
        .await,
    );
    assert_eq!(code, 400);
    assert!(
        message.contains("line 2") && message.contains("replicas"),
        "{message}"
    );
    assert_eq!(dev.ready("acme/shop/dev/api", 2).await.len(), 2);

    // A workload for a service nobody created is refused.
    let (code, _) = status(dev.apply("acme/shop/dev/ghost", spec).await);
    assert_eq!(code, 404);

    // Stop keeps the spec, start brings the pods back.
    dev.control("acme/shop/dev/api", "stop").await;
    assert_eq!(
        dev.ok(Method::GET, "/api/v1/workloads/acme/shop/dev/api", None)
            .await["pods"],
        json!([])
    );
    dev.control("acme/shop/dev/api", "start").await;
    dev.ready("acme/shop/dev/api", 2).await;

    // Scale keeps the spec and changes the count; its argument is checked.
    let scale = |n: Value| json!({ "replicas": n });
    let path = "/api/v1/workload-scale/acme/shop/dev/api";
    assert_eq!(
        dev.send(Method::POST, path, Some(scale(json!(3)))).await.0,
        204
    );
    dev.ready("acme/shop/dev/api", 3).await;
    assert_eq!(
        dev.send(Method::POST, path, Some(scale(json!(2)))).await.0,
        204
    );
    dev.ready("acme/shop/dev/api", 2).await;
    for bad in [scale(json!(65)), json!({}), scale(json!(-1))] {
        let (code, body) = dev.send(Method::POST, path, Some(bad.clone())).await;
        assert_eq!(code, 400, "{bad}: {body}");
    }

    // Every step is in the audit log, the logs read included.
    let entries = dev
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=500", None)
        .await
        .to_string();
    for op in [
        "workload.apply",
        "workload.stop",
        "workload.start",
        "pod.logs",
        "pod.list",
    ] {
        assert!(entries.contains(op), "{op} not audited");
    }

    dev.delete("acme/shop/dev/api").await;
    dev.delete("acme/shop/dev/probe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developers_deploy_and_read_logs_outside_production_only() {
    let dev = Dev::start().await;
    dev.scopes("acme/shop/dev", "development", &["api"]).await;
    dev.scopes("acme/shop/prod", "production", &["api"]).await;
    let spec = "command: [/bin/sh, -c, 'echo hello; exec sleep 1000']\n";
    for env in ["dev", "prod"] {
        dev.apply(&format!("acme/shop/{env}/api"), spec)
            .await
            .unwrap();
    }
    let pod_of = |pods: Vec<Value>| pods[0]["name"].as_str().unwrap().to_owned();
    let dev_pod = pod_of(dev.ready("acme/shop/dev/api", 1).await);
    let prod_pod = pod_of(dev.ready("acme/shop/prod/api", 1).await);

    // A developer and a viewer at the organization.
    let mut clients = Vec::new();
    for (name, role) in [("devon", "developer"), ("vera", "viewer")] {
        dev.ok(
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": name, "kind": "service"})),
        )
        .await;
        dev.ok(
            Method::POST,
            "/api/v1/bindings",
            Some(json!({"principal": format!("sa:{name}"), "role": role, "scope": "acme"})),
        )
        .await;
        let t = dev
            .ok(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "t", "principal": format!("sa:{name}")})),
            )
            .await;
        let ca = std::fs::read(dev.data().join("tls/ca.pem")).unwrap();
        clients.push(
            Client::new(
                &format!("https://127.0.0.1:{}", dev.port),
                &ca,
                Some(t["token"].as_str().unwrap().to_owned()),
            )
            .unwrap(),
        );
    }
    let logs = |c: &Client, env: &str, pod: &str| {
        let (c, path) = (
            c.clone(),
            format!("/api/v1/pod-logs/acme/shop/{env}/api?pod={pod}"),
        );
        async move {
            let mut conn = c.connect().await.unwrap();
            conn.send(Method::GET, &path, None).await.unwrap()
        }
    };
    let (developer, viewer) = (&clients[0], &clients[1]);

    // Starting pods hands them a credential that reads the service's
    // secrets: a developer may do it where it reads secrets itself (not in
    // production), and a viewer nowhere, however malformed its spec.
    let apply_as = |c: &Client, env: &str, spec: &str| {
        let (c, path, body) = (
            c.clone(),
            format!("/api/v1/workloads/acme/shop/{env}/api"),
            json!({ "spec": spec }),
        );
        async move { c.call::<Value>(Method::PUT, &path, Some(&body)).await }
    };
    let (code, message) = status(apply_as(developer, "prod", spec).await);
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("secret.read"), "{message}");
    apply_as(developer, "dev", spec).await.unwrap();
    let deep = format!("command: {}{}", "[".repeat(30000), "]".repeat(30000));
    assert_eq!(status(apply_as(viewer, "dev", &deep).await).0, 403);
    assert_eq!(status(apply_as(developer, "dev", &deep).await).0, 400);
    let (s, body) = logs(developer, "dev", &dev_pod).await;
    assert_eq!(s.as_u16(), 200);
    assert!(String::from_utf8_lossy(&body).contains("hello"));
    assert_eq!(logs(developer, "prod", &prod_pod).await.0.as_u16(), 403);
    assert_eq!(logs(viewer, "dev", &dev_pod).await.0.as_u16(), 403);
    // Both may list pods; neither may change workloads in production, and
    // the viewer nowhere.
    for c in [developer, viewer] {
        c.call::<Value>(Method::GET, "/api/v1/pods/acme/shop/prod", None::<&Value>)
            .await
            .unwrap();
    }
    let stop = |c: &Client, env: &str| {
        let (c, path) = (
            c.clone(),
            format!("/api/v1/workload-control/acme/shop/{env}/api"),
        );
        async move {
            let body = serde_json::to_vec(&json!({"action": "stop"})).unwrap();
            let mut conn = c.connect().await.unwrap();
            conn.send(Method::POST, &path, Some(body))
                .await
                .unwrap()
                .0
                .as_u16()
        }
    };
    assert_eq!(stop(viewer, "dev").await, 403);
    // Developers hold deploy.run everywhere (README permission table):
    // stopping needs nothing more.
    assert_eq!(stop(developer, "prod").await, 204);
    for env in ["dev", "prod"] {
        dev.delete(&format!("acme/shop/{env}/api")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_outlive_a_killed_server_and_are_adopted_again() {
    let mut dev = Dev::start().await;
    dev.scopes("acme/shop/dev", "development", &["api"]).await;
    dev.apply(
        "acme/shop/dev/api",
        "command: [/bin/sh, -c, 'echo up; exec sleep 1000']\nreplicas: 2\n",
    )
    .await
    .unwrap();
    let before = dev.ready("acme/shop/dev/api", 2).await;

    dev.crash_and_restart().await;

    // The same pods, not restarted, not duplicated.
    let after = dev.ready("acme/shop/dev/api", 2).await;
    let names = |pods: &[Value]| {
        let mut n: Vec<(String, Value, Value)> = pods
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["started_at_ms"].clone(),
                    p["restarts"].clone(),
                )
            })
            .collect();
        n.sort_by(|a, b| a.0.cmp(&b.0));
        n
    };
    assert_eq!(names(&before), names(&after));
    dev.delete("acme/shop/dev/api").await;
    assert!(
        dev.ok(Method::GET, "/api/v1/pods/acme/shop/dev", None)
            .await["pods"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A `warden agent` process; killed (-9) when dropped.
struct AgentProcess(std::process::Child);

impl AgentProcess {
    fn spawn(dev: &Dev, state: &std::path::Path, token: Option<&str>) -> Self {
        Self::spawn_to(
            &format!("https://127.0.0.1:{}", dev.port),
            &dev.data().join("tls/ca.pem"),
            state,
            token,
        )
    }

    /// An agent of the server at `url` (whose certificate `ca` signed).
    fn spawn_to(
        url: &str,
        ca: &std::path::Path,
        state: &std::path::Path,
        token: Option<&str>,
    ) -> Self {
        let mut cmd = std::process::Command::new(warden_bin());
        cmd.args([
            "--server",
            url,
            "--ca-cert",
            ca.to_str().unwrap(),
            "agent",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .env("WARDEN_CONFIG", state.with_extension("client.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        if let Some(t) = token {
            cmd.args(["--join-token", t]);
        }
        Self(cmd.spawn().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Dev {
    async fn join_token(&self, cluster: &str, ttl: u64) -> String {
        let t = self
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{cluster}/join-tokens"),
                Some(json!({ "ttl_seconds": ttl })),
            )
            .await;
        t["token"].as_str().unwrap().to_owned()
    }

    /// Waits until `cluster` is (or is not) connected; returns how long it took.
    async fn until_connected(&self, cluster: &str, connected: bool) -> Duration {
        let start = Instant::now();
        loop {
            let c = self
                .call(Method::GET, &format!("/api/v1/clusters/{cluster}"), None)
                .await;
            if c.as_ref().is_ok_and(|c| c["connected"] == json!(connected)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{cluster} connected={connected} never seen: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn enroll(&self, token: &str) -> Result<Value, ClientError> {
        let csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIGbMEMCAQAwADBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFDjxr7QWdiUdiHmV3ozvMfMuFGk\n-----END CERTIFICATE REQUEST-----\n";
        self.call(
            Method::POST,
            "/api/v1/agents/enroll",
            Some(json!({ "token": token, "csr": csr })),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_agent_runs_its_clusters_pods_and_is_cut_off_when_removed() {
    let mut dev = Dev::start().await;
    let state = dev.base.path().join("agent");

    // Enrollment: a token works once; an expired one and a used one are
    // refused (and both refusals are audited), before any CSR is read.
    let token = dev.join_token("edge", 600).await;
    let mut agent = AgentProcess::spawn(&dev, &state, Some(&token));
    dev.until_connected("edge", true).await;
    let (code, message) = status(dev.enroll(&token).await);
    assert_eq!(
        (code, message.contains("already used")),
        (401, true),
        "{message}"
    );
    let short = dev.join_token("edge", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, message) = status(dev.enroll(&short).await);
    assert_eq!(
        (code, message.contains("expired")),
        (401, true),
        "{message}"
    );
    let (code, _) = status(dev.enroll("wjt_not-a-token").await);
    assert_eq!(code, 401);
    let system = dev
        .ok(Method::GET, "/api/v1/audit/system/entries?limit=1000", None)
        .await
        .to_string();
    assert!(system.contains("cluster.enroll"), "enrollment not audited");
    assert!(
        system.contains("unauthenticated"),
        "refused enrollment not audited"
    );
    // The key never left the agent's directory, and only its owner reads it.
    let key = state.join("agent-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // An environment placed on the cluster runs its pods there.
    dev.scopes("acme/shop/edge", "development", &["api"]).await;
    let placed = dev
        .send(
            Method::PUT,
            "/api/v1/placements/acme/shop/edge",
            Some(json!({"cluster": "edge"})),
        )
        .await;
    assert_eq!(placed.0, 204, "{placed:?}");
    let spec = "command: [/bin/sh, -c, 'echo on=$(hostname); exec sleep 1000']\nreplicas: 2\n";
    let answer = dev.apply("acme/shop/edge/api", spec).await.unwrap();
    assert_eq!(answer["cluster"], "edge");
    let before = dev.ready("acme/shop/edge/api", 2).await;
    let pod = before[0]["name"].as_str().unwrap().to_owned();
    dev.logs_until(&format!("acme/shop/edge/api/{pod}"), &format!("on={pod}"));
    // The registry shows the agent's own report.
    let shown = dev.ok(Method::GET, "/api/v1/clusters/edge", None).await;
    assert_eq!(shown["pods"], 2, "{shown}");
    assert_eq!(shown["runtime"], "local", "{shown}");
    assert_eq!(shown["environments"], json!(["acme/shop/edge"]), "{shown}");
    // Its pods live under the agent's state directory, not the server's.
    assert!(state.join("runtime/pods").join(&pod).exists());
    assert!(!dev.data().join("runtime/pods").join(&pod).exists());

    // kill -9 of the agent: the cluster is offline within 10 s, a live log
    // follow ends with an error (never a clean end), the pods keep running.
    let follow = std::process::Command::new(warden_bin())
        .args(["pod", "logs", "-f", &format!("acme/shop/edge/api/{pod}")])
        .env("WARDEN_CONFIG", dev.base.path().join("client.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.kill();
    let took = dev.until_connected("edge", false).await;
    assert!(took < Duration::from_secs(10), "offline after {took:?}");
    let out = follow.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "a cut-off follow must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut off"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _) = status(
        dev.call(Method::GET, "/api/v1/pods/acme/shop/edge", None)
            .await,
    );
    assert_eq!(code, 503);

    // Restarted (no token: it is enrolled), it adopts the same pods.
    let mut agent = AgentProcess::spawn(&dev, &state, None);
    dev.until_connected("edge", true).await;
    let after = dev.ready("acme/shop/edge/api", 2).await;
    let key_of = |p: &Value| {
        (
            p["name"].clone(),
            p["started_at_ms"].clone(),
            p["restarts"].clone(),
        )
    };
    let mut b: Vec<_> = before.iter().map(key_of).collect();
    let mut a: Vec<_> = after.iter().map(key_of).collect();
    b.sort_by_key(|k| k.0.to_string());
    a.sort_by_key(|k| k.0.to_string());
    assert_eq!(a, b);

    // A second agent, a separate process, serves another environment.
    let state2 = dev.base.path().join("agent2");
    let token2 = dev.join_token("edge2", 600).await;
    let _agent2 = AgentProcess::spawn(&dev, &state2, Some(&token2));
    dev.until_connected("edge2", true).await;
    dev.scopes("acme/shop/edge2", "development", &["api"]).await;
    let placed = dev
        .send(
            Method::PUT,
            "/api/v1/placements/acme/shop/edge2",
            Some(json!({"cluster": "edge2"})),
        )
        .await;
    assert_eq!(placed.0, 204, "{placed:?}");
    dev.apply("acme/shop/edge2/api", spec).await.unwrap();
    for p in dev.ready("acme/shop/edge2/api", 2).await {
        let name = p["name"].as_str().unwrap();
        assert!(state2.join("runtime/pods").join(name).exists());
        assert!(!state.join("runtime/pods").join(name).exists());
    }

    // kill -9 of the server: the agents' pods keep running; when it comes
    // back (same data directory, same agent port), the agents dial in
    // again and it finds the same pods, none duplicated or restarted.
    dev.crash_and_restart().await;
    for cluster in ["edge", "edge2"] {
        let took = dev.until_connected(cluster, true).await;
        assert!(
            took < Duration::from_secs(15),
            "{cluster} back after {took:?}"
        );
    }
    let again = dev.ready("acme/shop/edge/api", 2).await;
    let mut c: Vec<_> = again.iter().map(key_of).collect();
    c.sort_by_key(|k| k.0.to_string());
    assert_eq!(c, b);

    // Removing the cluster ends its link at once, and its certificate is
    // refused when it dials again (audited); its environment is not moved
    // to another cluster.
    let removed = dev
        .send(Method::DELETE, "/api/v1/clusters/edge", None)
        .await;
    assert_eq!(removed.0, 204, "{removed:?}");
    let (code, message) = status(
        dev.call(Method::GET, "/api/v1/pods/acme/shop/edge", None)
            .await,
    );
    assert_eq!(code, 503, "{message}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let system = dev
            .ok(Method::GET, "/api/v1/audit/system/entries?limit=1000", None)
            .await
            .to_string();
        if system.contains("unknown_certificate") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed agent's redial was not refused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.kill();
}

// ---------------------------------------------------------------------------
// A hostile agent (review of issue 10, enrollment): it holds a real
// enrollment but runs its own code on the link.

/// Enrolls a fresh key with `token` through the public route: the key, the
/// certificate (PEM) and the link address.
async fn enroll_key(dev: &Dev, token: &str) -> (rcgen::KeyPair, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let e = dev
        .ok(
            Method::POST,
            "/api/v1/agents/enroll",
            Some(json!({"token": token, "csr": csr.pem().unwrap()})),
        )
        .await;
    (
        key,
        e["certificate"].as_str().unwrap().to_owned(),
        e["links"][0]["address"].as_str().unwrap().to_owned(),
    )
}

/// A TLS connection to the agent listener as that key, from `source`.
async fn dial_link(
    dev: &Dev,
    link: &str,
    key: &rcgen::KeyPair,
    cert: &str,
    source: std::net::Ipv4Addr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let pk = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dev.data().join("tls/ca.pem")).unwrap();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, pk)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let tcp = socket.connect(link.parse().unwrap()).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// A hostile agent's link task.
type HostileLink = tokio::task::JoinHandle<Result<(), warden_link::LinkError>>;

/// Runs a hostile agent over `io`: on the credential stream it sends
/// `requests` credential requests for `service` and reports the first
/// answer; `Hello` is answered with `hello`.
fn hostile_agent(
    io: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    service: &'static str,
    requests: u64,
    hello: Value,
) -> (HostileLink, tokio::sync::mpsc::Receiver<(bool, Vec<u8>)>) {
    use warden_agent::wire::{self, FrameReader, Op};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(warden_link::run_agent(
        io,
        move |header: bytes::Bytes, stream: warden_link::LinkStream| {
            let (tx, hello) = (tx.clone(), hello.clone());
            async move {
                let op: Op = serde_json::from_slice(&header).unwrap();
                let (mut send, recv) = stream.split();
                match op {
                    Op::Hello => {
                        let _ = send.send(wire::json_frame(wire::RESULT, &hello)).await;
                        let _ = send.finish().await;
                    }
                    Op::Credentials => {
                        // The first answer is read and reported; after it
                        // the agent only sends, never reads.
                        let mut answers = FrameReader::new(recv);
                        for id in 0..requests {
                            let req = json!({"id": id, "service": service, "pod": "api-zzzzz"});
                            if send.send(wire::json_frame(10, &req)).await.is_err() {
                                return;
                            }
                            if id == 0
                                && let Ok(Some((11, body))) = answers.next().await
                            {
                                let _ = tx.send((body[8] == 1, body[9..].to_vec())).await;
                            }
                        }
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(answers);
                    }
                    _ => {}
                }
            }
        },
    ));
    (task, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_gets_nothing_of_other_clusters_and_cannot_lock_the_listener() {
    let dev = Dev::start().await;
    // Another organization's production service, on `local`.
    dev.scopes("globex/bank/prod", "production", &["db"]).await;
    let token = dev.join_token("edge", 600).await;
    let (key, cert, link) = enroll_key(&dev, &token).await;
    let loopback = std::net::Ipv4Addr::LOCALHOST;

    // 1. No credential for a service not placed on its cluster; refused
    //    and audited in the victim's organization log.
    let io = dial_link(&dev, &link, &key, &cert, loopback).await.unwrap();
    let hello =
        json!({"Ok": {"runtime": "\u{1b}]0;PWNED\u{7}\u{1b}[2J", "version": "1", "node": "n"}});
    let (task, mut answers) = hostile_agent(io, "globex/bank/prod/db", 1, hello);
    let (ok, body) = tokio::time::timeout(Duration::from_secs(20), answers.recv())
        .await
        .expect("no credential answer")
        .unwrap();
    assert!(!ok, "minted: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("does not run on cluster edge"));
    let globex = dev
        .ok(Method::GET, "/api/v1/audit/globex/entries?limit=1000", None)
        .await
        .to_string();
    assert!(globex.contains("workload_token.create") && globex.contains("forbidden"));

    // 2. What an agent says about itself reaches the operator's terminal
    //    escaped.
    dev.until_connected("edge", true).await;
    let out = std::process::Command::new(warden_bin())
        .args(["cluster", "list"])
        .env("WARDEN_CONFIG", dev.base.path().join("client.toml"))
        .output()
        .unwrap();
    assert!(
        !out.stdout.contains(&0x1b),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    task.abort();

    // 3. A flood of credential requests it never reads the answers of stays
    //    bounded (a few in flight, at most 50 a second), in memory and in
    //    the audit log.
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let before = rss(dev.child.id());
    let io = dial_link(&dev, &link, &key, &cert, loopback).await.unwrap();
    let started = Instant::now();
    let (flood, _answers) = hostile_agent(io, "globex/bank/prod/db", 20_000, json!(null));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refusals = dev
        .ok(Method::GET, "/api/v1/audit/globex/entries?limit=1000", None)
        .await
        .to_string()
        .matches("workload_token.create")
        .count();
    let bound = 2 + 50 * (started.elapsed().as_secs() as usize + 1);
    assert!(
        refusals <= bound,
        "{refusals} credential requests answered in {:?}",
        started.elapsed()
    );
    let grown = rss(dev.child.id()).saturating_sub(before);
    assert!(grown < 32 * 1024, "the control plane grew {grown} KiB");
    flood.abort();

    // 4. Silent connections from one source hold a few handshake slots,
    //    not all: the agent (another address) still gets in.
    let attacker = {
        let link = link.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                while held.len() < 64 {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
                    match socket.connect(link.parse().unwrap()).await {
                        Ok(s) => held.push(s),
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                held.clear();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        dial_link(&dev, &link, &key, &cert, loopback)
            .await
            .expect("the enrolled agent was locked out");
    }
    attacker.abort();
}

/// Two replicas on one PostgreSQL with one agent: the agent links to both
/// (each replica records its listener; enrollment and every link name them
/// all), so a workload applied through one replica and the logs read
/// through the other reach the same agent.
/// Two replicas over one PostgreSQL database, both unsealed, and an
/// enrolled agent (cluster `edge`) linked to both.
struct TwoReplicas {
    dir: tempfile::TempDir,
    a: warden_server::Running,
    b: warden_server::Running,
    token: String,
    ca: Vec<u8>,
    agent: Option<AgentProcess>,
}

impl TwoReplicas {
    async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in("/var/tmp")
            .unwrap();
        let pki = warden_server::tls::ensure_dev_pki(dir.path()).unwrap();
        let tls = warden_server::tls::server_config(&pki.cert, &pki.key).unwrap();
        let db = crate::harness::fresh_postgres_db().await;
        let start = |node: &str| {
            warden_server::start(warden_server::ServerOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                database_url: db.clone(),
                tls: tls.clone(),
                node_id: node.to_owned(),
                request_timeout: Duration::from_secs(30),
                max_token_ttl: warden_server::DEFAULT_MAX_TOKEN_TTL,
                adopt_unprotected_rows: false,
                agent_listen: Some("127.0.0.1:0".parse().unwrap()),
                agent_advertise: None,
                ssh_listen: None,
            })
        };
        let a = start("replica-a").await.unwrap();
        let (key, token) = crate::harness::init_with_owner(&a).await;
        let b = start("replica-b").await.unwrap();
        b.app
            .vault
            .unseal_with_key(&warden_vault::unseal::decode_key(&key).unwrap())
            .await
            .unwrap();
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let owner = Client::new(&format!("https://{}", a.addr), &ca, Some(token.clone())).unwrap();
        let t: Value = owner
            .call(
                Method::POST,
                "/api/v1/clusters/edge/join-tokens",
                Some(&json!({})),
            )
            .await
            .unwrap();
        let state = dir.path().join("agent");
        let agent = AgentProcess::spawn_to(
            &format!("https://{}", a.addr),
            &dir.path().join("ca.pem"),
            &state,
            t["token"].as_str(),
        );
        let two = Self {
            dir,
            a,
            b,
            token,
            ca,
            agent: Some(agent),
        };
        // Both replicas get a link from the agent.
        for (name, c) in [("a", two.client_a(None)), ("b", two.client_b(None))] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = c
                    .call::<Value>(Method::GET, "/api/v1/clusters/edge", None::<&Value>)
                    .await;
                if r.as_ref().is_ok_and(|v| v["connected"] == json!(true)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {name} never linked: {r:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        two
    }

    /// Makes service `acme/shop/edge/api` (development) through replica A,
    /// its environment placed on cluster `edge`.
    async fn edge_service(&self) {
        let owner = self.client_a(None);
        for (kind, path, mode) in [
            ("organization", "acme", None),
            ("project", "acme/shop", None),
            ("environment", "acme/shop/edge", Some("development")),
            ("service", "acme/shop/edge/api", None),
        ] {
            let mut body = json!({"kind": kind, "path": path});
            if let Some(m) = mode {
                body["mode"] = json!(m);
            }
            owner
                .call::<Value>(Method::POST, "/api/v1/scopes", Some(&body))
                .await
                .unwrap();
        }
        let placed = owner
            .connect()
            .await
            .unwrap()
            .send(
                Method::PUT,
                "/api/v1/placements/acme/shop/edge",
                Some(serde_json::to_vec(&json!({"cluster": "edge"})).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(placed.0.as_u16(), 204);
    }

    /// A client of replica A with `token` (the owner's by default).
    fn client_a(&self, token: Option<&str>) -> Client {
        self.client(self.a.addr, token)
    }

    /// A client of replica B with `token` (the owner's by default).
    fn client_b(&self, token: Option<&str>) -> Client {
        self.client(self.b.addr, token)
    }

    fn client(&self, addr: std::net::SocketAddr, token: Option<&str>) -> Client {
        let token = token.unwrap_or(&self.token).to_owned();
        Client::new(&format!("https://{addr}"), &self.ca, Some(token)).unwrap()
    }
}

impl Drop for TwoReplicas {
    fn drop(&mut self) {
        drop(self.agent.take());
        kill_holders_of(self.dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_either_one_reaches_an_agent() {
    let two = TwoReplicas::start().await;
    let (ca_client, cb_client) = (two.client_a(None), two.client_b(None));
    let b = &two.b;

    // Set up through A, apply through B, read through A.
    two.edge_service().await;
    let applied: Value = cb_client
        .call(
            Method::PUT,
            "/api/v1/workloads/acme/shop/edge/api",
            Some(&json!({"spec": "command: [/bin/sh, -c, 'echo via-both; exec sleep 1000']\n"})),
        )
        .await
        .unwrap();
    assert_eq!(applied["cluster"], "edge");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pod = loop {
        let list: Value = ca_client
            .call(
                Method::GET,
                "/api/v1/workloads/acme/shop/edge/api",
                None::<&Value>,
            )
            .await
            .unwrap();
        if let Some(p) = list["pods"].as_array().and_then(|p| p.first())
            && p["ready"] == json!(true)
        {
            break p["name"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ca_client
            .connect()
            .await
            .unwrap()
            .send(
                Method::GET,
                &format!("/api/v1/pod-logs/acme/shop/edge/api?pod={pod}"),
                None,
            )
            .await
            .unwrap();
        if status.as_u16() == 200 && String::from_utf8_lossy(&body).contains("via-both") {
            break;
        }
        assert!(Instant::now() < deadline, "{status}: {body:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = cb_client
        .connect()
        .await
        .unwrap()
        .send(
            Method::POST,
            "/api/v1/workload-control/acme/shop/edge/api",
            Some(serde_json::to_vec(&json!({"action": "delete"})).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(deleted.0.as_u16(), 204);

    // Removing the cluster through A ends B's link too: B re-reads the
    // cluster's row and finds the certificate no longer its.
    let removed = ca_client
        .connect()
        .await
        .unwrap()
        .send(Method::DELETE, "/api/v1/clusters/edge", None)
        .await
        .unwrap();
    assert_eq!(removed.0.as_u16(), 204);
    let started = Instant::now();
    loop {
        let linked = b.app.clusters.hub().connected().iter().any(|n| n == "edge");
        if !linked {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica b kept the removed cluster's link"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A shell session held on one replica ends, saying why, within about a
/// second of its authority ending through the other (issue 11): its token
/// revoked; its role binding revoked; the cluster its pod runs on removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_on_one_replica_ends_when_its_authority_ends_on_the_other() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let two = TwoReplicas::start().await;
    let (owner_a, owner_b) = (two.client_a(None), two.client_b(None));
    two.edge_service().await;
    let send = async |c: &Client, m: Method, path: &str, body: Value| {
        let (status, answer) = c
            .connect()
            .await
            .unwrap()
            .send(m, path, Some(serde_json::to_vec(&body).unwrap()))
            .await
            .unwrap();
        assert!(status.is_success(), "{path}: {status} {answer:?}");
    };
    owner_b
        .call::<Value>(
            Method::PUT,
            "/api/v1/workloads/acme/shop/edge/api",
            Some(&json!({"spec": "command: [/bin/sh, -c, 'exec sleep 1000']\n"})),
        )
        .await
        .unwrap();
    // A service account, developer of the environment, with two tokens.
    owner_a
        .call::<Value>(
            Method::POST,
            "/api/v1/users",
            Some(&json!({"name": "oncall", "kind": "service"})),
        )
        .await
        .unwrap();
    let binding = json!({"principal": "sa:oncall", "role": "developer", "scope": "acme/shop/edge"});
    send(&owner_a, Method::POST, "/api/v1/bindings", binding.clone()).await;
    let token = async || {
        let t: Value = owner_a
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&json!({"name": "shell", "principal": "sa:oncall"})),
            )
            .await
            .unwrap();
        (
            t["token"].as_str().unwrap().to_owned(),
            t["info"]["id"].as_str().unwrap().to_owned(),
        )
    };
    // Opens `cat` in the pod through replica A (once the pod runs); the
    // socket.
    let open = async |token: &str| {
        let client = two.client_a(Some(token));
        let path = "/api/v1/shell?target=acme/shop/edge/api&command=cat";
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.websocket(path, &["v5.channel.k8s.io"]).await {
                Ok((socket, _)) => return socket,
                Err(e) => assert!(Instant::now() < deadline, "{e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // How long after `since` the session ended, and the status it gave.
    let ended = async |socket: warden_api::WebSocket, since: Instant| {
        let (_, mut stream) = socket.split();
        let mut status = String::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Binary(b) = msg
                    && b.first() == Some(&3)
                {
                    status = String::from_utf8_lossy(&b[1..]).into_owned();
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the session outlived its authority");
        (since.elapsed(), status)
    };

    let (t1, id1) = token().await;
    let session = open(&t1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    send(
        &owner_b,
        Method::POST,
        &format!("/api/v1/tokens/{id1}/revoke"),
        json!({}),
    )
    .await;
    let (took, status) = ended(session, at).await;
    eprintln!("token revoked on B: the session on A ended {took:?} later");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(status.contains("revoked"), "{status}");

    let (t2, _) = token().await;
    let session = open(&t2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    send(&owner_b, Method::POST, "/api/v1/bindings/revoke", binding).await;
    let (took, status) = ended(session, at).await;
    eprintln!("binding revoked on B: the session on A ended {took:?} later");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(status.contains("shell.exec"), "{status}");

    let session = open(&two.token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    let (removed, _) = owner_b
        .connect()
        .await
        .unwrap()
        .send(Method::DELETE, "/api/v1/clusters/edge", None)
        .await
        .unwrap();
    assert_eq!(removed.as_u16(), 204);
    let (took, status) = ended(session, at).await;
    eprintln!("cluster removed on B: the session on A ended {took:?} later ({status})");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

/// An agent that knows a replica under an old address and is then told a
/// new one for the same node keeps one link to it, at the new address (two
/// links to one replica would replace each other on its hub, again and
/// again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_one_link_per_replica_across_a_new_address() {
    let dev = Dev::start().await;
    let state = dev.base.path().join("agent");
    let token = dev.join_token("edge", 600).await;
    let mut agent = AgentProcess::spawn(&dev, &state, Some(&token));
    dev.until_connected("edge", true).await;
    agent.kill();
    // The record as if the replica had been reached as `localhost` before.
    let path = state.join("enrollment.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let address = record["links"][0]["address"].as_str().unwrap().to_owned();
    let port = address.rsplit_once(':').unwrap().1.to_owned();
    record["links"][0]["address"] = json!(format!("localhost:{port}"));
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();

    let _agent = AgentProcess::spawn(&dev, &state, None);
    dev.until_connected("edge", true).await;
    // Told the replica's own name, the agent moves its link there once...
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let c = dev.ok(Method::GET, "/api/v1/clusters/edge", None).await;
        if c["connected"] == json!(true) {
            seen.insert(c["address"].as_str().unwrap_or_default().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ...and keeps it: one peer address over six seconds.
    assert_eq!(seen.len(), 1, "the link moved: {seen:?}");
    let kept: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(kept["links"].as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept["links"][0]["address"], json!(address), "{kept}");
}

/// The local runtime starts every pod under `warden-injector` with the
/// pod's own workload credential: the workload finds its service's secrets
/// in its environment, a rotation restarts it in place with the new value
/// (the pod stays), `secret holders` names the pod, and no value is on
/// disk in the data directory (the runtime's state included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_under_the_injector_with_their_secrets_kept_current() {
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let dev = Dev::start().await;
    dev.scopes("acme/inj/dev", "development", &["api"]).await;
    let svc = "acme/inj/dev/api";
    let first = "pod-canary-value-0001";
    dev.ok(
        Method::PUT,
        &format!("/api/v1/secrets/{svc}"),
        Some(json!({"values": {"DB_URL": first}})),
    )
    .await;
    // Only the value's last part is printed: pod output is kept, and the
    // value itself must be nowhere but in the workload's memory.
    let spec = "command: [/bin/sh, -c, 'echo \"db=${DB_URL#pod-canary-value-} pid=$$\"; exec sleep 1000']\n";
    dev.apply(svc, spec).await.unwrap();
    let pod = dev.ready(svc, 1).await[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let pod_ref = format!("{svc}/{pod}");
    let out = dev.logs_until(&pod_ref, "db=");
    assert!(out.contains("db=0001 "), "{out}");
    // The wrapper's fetch is audited with the pod and the version served.
    let page = dev
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
        .await;
    let fetched = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "secret.resolve" && e["phase"] == "outcome")
        .unwrap_or_else(|| panic!("no fetch audited: {page}"));
    assert_eq!(fetched["target"]["pod"], pod.as_str(), "{fetched}");
    assert_eq!(
        fetched["target"]["names"],
        json!([format!("DB_URL:1@{svc}")]),
        "{fetched}"
    );
    assert_eq!(
        fetched["actor"]["principal"],
        format!("workload:{svc}"),
        "{fetched}"
    );
    // Only a workload names its pod: anyone else's claim stays out of the
    // log.
    dev.ok(
        Method::GET,
        &format!("/api/v1/resolve/{svc}?pod=claimed-by-root"),
        None,
    )
    .await;
    let page = dev
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
        .await;
    assert!(!page.to_string().contains("claimed-by-root"), "{page}");

    let rotated = "pod-canary-value-0002";
    dev.ok(
        Method::PUT,
        &format!("/api/v1/secrets/{svc}"),
        Some(json!({"values": {"DB_URL": rotated}})),
    )
    .await;
    let out = dev.logs_until(&pod_ref, "db=0002 ");
    assert!(out.contains("db=0001 "), "the pod was replaced: {out}");
    let pods = dev.ready(svc, 1).await;
    assert_eq!(pods[0]["name"], pod.as_str(), "the pod was replaced");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = dev
            .ok(
                Method::GET,
                &format!("/api/v1/secret-holders/{svc}?name=DB_URL"),
                None,
            )
            .await;
        let holders = h["holders"].as_array().unwrap();
        if holders.len() == 1 && holders[0]["version"] == 2 {
            assert_eq!(holders[0]["pod"], pod.as_str(), "{h}");
            assert_eq!(holders[0]["current"], true, "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing under the data directory holds either value in plaintext.
    let mut stack = vec![dev.data()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            for v in [first, rotated] {
                assert!(
                    !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                    "{} holds {v}",
                    p.display()
                );
            }
        }
    }
    // Nor on this machine's disk at all (the pod's view of the filesystem
    // is the host's, less what is masked, with a tmpfs of its own): no file
    // written since the test began, anywhere on the root filesystem, holds
    // either value.
    let scan = format!(
        "find / -xdev -type f -newermt @{began} -size -256M -print0 2>/dev/null \
         | xargs -0 -r grep -l -F -e {first} -e {rotated} 2>/dev/null; true"
    );
    let found = std::process::Command::new("sh")
        .args(["-c", &scan])
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "written to disk with a value: {}",
        String::from_utf8_lossy(&found.stdout)
    );
    dev.delete(svc).await;
}

/// `secrets: {deliver: fd}`: the pod's workload reads its secrets from the
/// sealed memfd the wrapper hands it, and its environment holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_may_take_its_secrets_from_a_descriptor_instead_of_its_environment() {
    let dev = Dev::start().await;
    dev.scopes("acme/fd/dev", "development", &["api"]).await;
    let svc = "acme/fd/dev/api";
    dev.ok(
        Method::PUT,
        &format!("/api/v1/secrets/{svc}"),
        Some(json!({"values": {"DB_URL": "fd-canary-value-0001"}})),
    )
    .await;
    let spec = "command: [/bin/sh, -c, 'v=$(cat /dev/fd/$WARDEN_SECRETS_FD); \
                case \"$v\" in *fd-canary-value-0001*) echo fd-has-it;; esac; \
                echo env-has=$(env | grep -c fd-canary); exec sleep 1000']\n\
                secrets: {deliver: fd}\n";
    dev.apply(svc, spec).await.unwrap();
    let pod = dev.ready(svc, 1).await[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = dev.logs_until(&format!("{svc}/{pod}"), "env-has=");
    assert!(out.contains("fd-has-it\nenv-has=0\n"), "{out}");
    dev.delete(svc).await;
}

/// The names of the ready pods in a workload listing.
fn ready_names(list: &Value) -> Vec<String> {
    list["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ready"] == json!(true))
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `secrets: {on_change: rollout}`: a rotation replaces the service's pods
/// one at a time (never fewer ready pods than replicas), each new pod
/// started with the new value; a value the workload cannot start with is
/// reverted (its pods keep the previous one, untouched) and not tried
/// again; the next rotation rolls. Each step is audited as actor `warden`
/// with the versions, never a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_service_takes_a_rotation_pod_by_pod_and_reverts_one_it_cannot_start_with() {
    let dev = Dev::start().await;
    dev.scopes("acme/roll/dev", "development", &["api", "refused"])
        .await;
    let svc = "acme/roll/dev/api";
    let set = async |v: &str| {
        dev.ok(
            Method::PUT,
            &format!("/api/v1/secrets/{svc}"),
            Some(json!({"values": {"DB_URL": format!("roll-canary-{v}")}})),
        )
        .await
    };
    let status = async || {
        dev.ok(Method::GET, &format!("/api/v1/workloads/{svc}"), None)
            .await
    };
    let audited = async |action: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let page = dev
                .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
                .await;
            let found: Vec<Value> = page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == action && e["target"]["scope"] == svc)
                .cloned()
                .collect();
            if !found.is_empty() {
                return found;
            }
            assert!(Instant::now() < deadline, "no {action}: {page}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // Rolls to `value`: waits until two ready pods, none of `old`, remain,
    // never seeing fewer than two ready; each says it has `value`.
    let rolled_to = async |old: Vec<String>, value: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let new = loop {
            let list = status().await;
            let ready = ready_names(&list);
            assert!(ready.len() >= 2, "fewer than two pods ready: {list}");
            let all = list["pods"].as_array().unwrap().len();
            if all == 2 && ready.iter().all(|p| !old.contains(p)) {
                break ready;
            }
            assert!(Instant::now() < deadline, "not rolled: {list}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for p in &new {
            dev.logs_until(&format!("{svc}/{p}"), &format!("db={value}\n"));
        }
        new
    };

    // A rolled workload the runtime refuses leaves no pin behind for long:
    // the controller finds no workload to roll and drops it, so the
    // service is served the latest values (reviews 14 and 15).
    let refused = "acme/roll/dev/refused";
    let (code, body) = dev
        .send(
            Method::PUT,
            &format!("/api/v1/workloads/{refused}"),
            Some(json!({"spec": "command: [/bin/true]\nrun_as: {uid: 0}\n\
                                 min_ready_seconds: 1\nsecrets: {on_change: rollout}\n"})),
        )
        .await;
    assert!((400..500).contains(&code), "{code} {body}");
    for v in ["a", "b"] {
        dev.ok(
            Method::PUT,
            &format!("/api/v1/secrets/{refused}"),
            Some(json!({"values": {"K": v}})),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = dev
            .ok(Method::GET, &format!("/api/v1/resolve/{refused}"), None)
            .await;
        if r["values"]["K"] == "b" {
            break;
        }
        assert!(Instant::now() < deadline, "still pinned: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    set("0001").await;
    // Only the value's last part is printed (pod output is kept).
    let spec = "command: [/bin/sh, -c, 'case \"$DB_URL\" in *bad) echo refused; exit 1;; esac; \
                echo \"db=${DB_URL#roll-canary-}\"; exec sleep 1000']\nreplicas: 2\n\
                min_ready_seconds: 1\nsecrets: {on_change: rollout}\n";
    dev.apply(svc, spec).await.unwrap();
    dev.ready(svc, 2).await;
    let first = ready_names(&status().await);
    for p in &first {
        dev.logs_until(&format!("{svc}/{p}"), "db=0001\n");
    }

    set("0002").await;
    let second = rolled_to(first, "0002").await;
    let done = audited("secret.rollout.completed").await;
    assert_eq!(done[0]["actor"]["principal"], "warden", "{done:?}");
    assert_eq!(
        done[0]["target"]["names"],
        json!([format!("DB_URL:2@{svc}")]),
        "{done:?}"
    );

    // The workload refuses this value: the first new pod never stays up,
    // the rollout stalls and is reverted; no running pod was touched.
    set("bad").await;
    let failed = audited("secret.rollout.failed").await;
    assert_eq!(failed[0]["status"], "failed", "{failed:?}");
    assert_eq!(
        failed[0]["target"]["names"],
        json!([format!("DB_URL:3@{svc}")])
    );
    let stalled = failed[0]["target"]["pod"].as_str().unwrap().to_owned();
    assert!(!second.contains(&stalled), "{failed:?}");
    let reverted = audited("secret.rollout.reverted").await;
    assert_eq!(reverted[0]["status"], "ok", "{reverted:?}");
    assert_eq!(
        reverted[0]["target"]["names"],
        json!([format!("DB_URL:2@{svc}")])
    );
    let list = status().await;
    assert_eq!(ready_names(&list), second, "{list}");
    assert_eq!(list["pods"].as_array().unwrap().len(), 2, "{list}");
    // What the pods are served is still version 2: one restarted now gets
    // it again.
    let resolved = dev
        .ok(Method::GET, &format!("/api/v1/resolve/{svc}"), None)
        .await;
    assert_eq!(
        resolved["values"]["DB_URL"], "roll-canary-0002",
        "{resolved}"
    );
    assert_eq!(resolved["versions"]["DB_URL"]["version"], 2, "{resolved}");

    // An operator destroys the pinned version (it leaked): the pods are
    // served the latest instead, never nothing (review 14, F2).
    dev.ok(
        Method::POST,
        &format!("/api/v1/secret-destroy/{svc}"),
        Some(json!({"key": "DB_URL", "versions": [2]})),
    )
    .await;
    let resolved = dev
        .ok(Method::GET, &format!("/api/v1/resolve/{svc}"), None)
        .await;
    assert_eq!(resolved["versions"]["DB_URL"]["version"], 3, "{resolved}");

    // The failed version is not tried again by the periodic sweep; the
    // next rotation rolls.
    set("0004").await;
    rolled_to(second, "0004").await;
    let started = audited("secret.rollout.started").await;
    assert_eq!(started.len(), 3, "{started:?}");

    // Nothing in the audit log holds a value.
    let page = dev
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
        .await;
    assert!(!page.to_string().contains("roll-canary"), "{page}");
    dev.delete(svc).await;
}
