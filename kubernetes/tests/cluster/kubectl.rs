//! The stand-in API server checked with stock kubectl: discovery, server-side
//! apply, get, logs and exec (WebSocket v5) must work as against a cluster.
//! kubectl ≥ 1.30 speaks WebSocket exec by default; the versions below are
//! installed on these machines and on CI, and a missing one fails the test.

use std::path::PathBuf;
use std::process::Output;

use crate::apiserver::ApiServer;

/// The kubectl binaries checked: 1.32, 1.30 and 1.33. Not
/// `/usr/bin/kubectl`: that is google-cloud-cli's dispatcher, which picks a
/// version from the server's `/version` (1.33 here).
const KUBECTLS: &[&str] = &[
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.30",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
];

const TOKEN: &str = "stand-in-token-0123456789";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: warden
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        command: [sleep, infinity]
";

struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(bin: &str, server: &ApiServer, token: Option<&str>) -> Self {
        let bin = PathBuf::from(bin);
        assert!(
            bin.exists(),
            "{} is missing: these tests need stock kubectl 1.30, 1.32 and 1.33 \
             (google-cloud-cli's kubectl package)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        server.kubeconfig(dir.path(), token);
        std::fs::write(dir.path().join("deployment.yaml"), DEPLOYMENT).unwrap();
        Self { bin, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("KUBECACHEDIR", self.path("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut w = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            w.write_all(data).await.unwrap();
        }
        drop(w);
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} hung", self.bin.display()))
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Over HTTPS with a bearer token, as against a cluster.
async fn conformance(bin: &str) {
    let server = ApiServer::start_tls(TOKEN).await;
    let k = Kubectl::new(bin, &server, Some(TOKEN));
    let version = k.run(&["version", "--client"], None).await;
    eprintln!(
        "{bin}: {}",
        text(&version.stdout).lines().next().unwrap_or("")
    );

    let yaml = k.path("deployment.yaml");
    let applied = k
        .run(
            // The stand-in serves no OpenAPI document to validate against.
            &[
                "apply",
                "--server-side",
                "--validate=false",
                "-f",
                yaml.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(applied.status.success(), "{}", show(&applied));
    assert!(
        text(&applied.stdout).contains("deployment.apps/web serverside-applied"),
        "{}",
        show(&applied)
    );
    let stored = server.deployment("warden", "web").unwrap();
    assert_eq!(stored["metadata"]["managedFields"][0]["manager"], "kubectl");
    let pods = server.pod_names("warden");
    assert_eq!(pods.len(), 2, "{pods:?}");

    let deploys = k.run(&["get", "deploy"], None).await;
    assert!(deploys.status.success(), "{}", show(&deploys));
    assert!(text(&deploys.stdout).contains("web"), "{}", show(&deploys));

    let listed = k.run(&["get", "pods", "-l", "app=web"], None).await;
    assert!(listed.status.success(), "{}", show(&listed));
    for p in &pods {
        assert!(
            text(&listed.stdout).contains(p.as_str()),
            "{}",
            show(&listed)
        );
    }
    let none = k.run(&["get", "pods", "-l", "app=other"], None).await;
    assert!(
        !pods.iter().any(|p| text(&none.stdout).contains(p.as_str())),
        "{}",
        show(&none)
    );

    let pod = pods[0].as_str();
    server.append_log("warden", pod, "line two\nline three\n");
    let logs = k.run(&["logs", pod], None).await;
    assert!(logs.status.success(), "{}", show(&logs));
    assert_eq!(
        text(&logs.stdout),
        format!("pod {pod} started\nline two\nline three\n")
    );
    let tail = k.run(&["logs", "--tail=1", pod], None).await;
    assert_eq!(text(&tail.stdout), "line three\n", "{}", show(&tail));

    let exec = k
        .run(
            &[
                "exec",
                pod,
                "--",
                "sh",
                "-c",
                "echo hi; echo oops >&2; exit 7",
            ],
            None,
        )
        .await;
    assert_eq!(exec.status.code(), Some(7), "{}", show(&exec));
    assert_eq!(text(&exec.stdout), "hi\n", "{}", show(&exec));
    assert!(text(&exec.stderr).contains("oops"), "{}", show(&exec));
    assert!(
        text(&exec.stderr).contains("command terminated with exit code 7"),
        "{}",
        show(&exec)
    );

    let cat = k
        .run(&["exec", "-i", pod, "--", "cat"], Some(b"from stdin\n"))
        .await;
    assert_eq!(cat.status.code(), Some(0), "{}", show(&cat));
    assert_eq!(text(&cat.stdout), "from stdin\n", "{}", show(&cat));

    let missing = k.run(&["exec", "nope-pod", "--", "true"], None).await;
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    assert!(
        text(&missing.stderr).contains("pods \"nope-pod\" not found"),
        "{}",
        show(&missing)
    );

    let execs = server.execs();
    assert!(
        execs.iter().all(|e| e.protocol == "v5.channel.k8s.io"),
        "{execs:?}"
    );
    let cat = execs.iter().find(|e| e.command == ["cat"]).unwrap();
    assert!(cat.stdin_closed, "kubectl half-closed stdin with [255, 0]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_works_against_the_stand_in() {
    conformance(KUBECTLS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_30_works_against_the_stand_in() {
    conformance(KUBECTLS[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_works_against_the_stand_in() {
    conformance(KUBECTLS[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused() {
    let server = ApiServer::start_tls(TOKEN).await;
    let k = Kubectl::new(KUBECTLS[0], &server, Some("not-the-token"));
    let out = k.run(&["get", "pods"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("You must be logged in to the server"),
        "{}",
        show(&out)
    );
}
