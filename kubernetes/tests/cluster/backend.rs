//! `KubernetesRuntime` against the stand-in API server: the whole `Runtime`
//! trait over real HTTP and WebSocket, with exec'd commands really running.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use warden_kubernetes::objects::{
    ANNOTATION_RESTARTED_AT, ANNOTATION_SERVICE, ANNOTATION_STOPPED, FIELD_MANAGER, LABEL_ENV,
    LABEL_ORG, LABEL_PROJECT, LABEL_SERVICE, deployment_name,
};
use warden_kubernetes::{KubernetesConfig, KubernetesRuntime};
use warden_runtime::{
    CredentialTarget, ExecRequest, ExecSession, Isolation, LogOptions, PodPhase, PodRef, Runtime,
    RuntimeError, Selector, ServiceRef, TermSize, WorkloadSpec,
};

use crate::apiserver::{ApiServer, NODE};

const NS: &str = "warden";

const TOKEN: &str = "backend-token-0123456789";

/// A server (HTTPS, bearer token) and a runtime connected to it through a
/// kubeconfig file, as `warden agent --kubeconfig` does.
async fn setup() -> (ApiServer, KubernetesRuntime, tempfile::TempDir) {
    let server = ApiServer::start_tls(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let rt = connect(&server, &dir, Some(TOKEN)).await;
    (server, rt, dir)
}

async fn connect(
    server: &ApiServer,
    dir: &tempfile::TempDir,
    token: Option<&str>,
) -> KubernetesRuntime {
    KubernetesRuntime::connect(KubernetesConfig {
        namespace: NS.into(),
        kubeconfig: Some(server.kubeconfig(dir.path(), token)),
        rollout_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_plain_http_works_too() {
    let server = ApiServer::start_tls(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = connect(&server, &dir, Some("wrong")).await;
    let refused = wrong.services().await;
    assert!(
        matches!(&refused, Err(RuntimeError::Agent(m)) if m.contains("401")),
        "{refused:?}"
    );
    let right = connect(&server, &dir, Some(TOKEN)).await;
    assert!(right.services().await.unwrap().is_empty());

    let plain = ApiServer::start().await;
    let rt = connect(&plain, &dir, None).await;
    rt.apply(&svc("a/b/c/d"), &spec(1)).await.unwrap();
    assert_eq!(rt.services().await.unwrap(), [svc("a/b/c/d")]);
}

fn svc(s: &str) -> ServiceRef {
    ServiceRef::parse(s).unwrap()
}

fn spec(replicas: u32) -> WorkloadSpec {
    WorkloadSpec::new(["sleep", "3600"])
        .unwrap()
        .with_image("busybox:1.36")
        .unwrap()
        .with_replicas(replicas)
        .unwrap()
        .with_env("MODE", "test")
        .unwrap()
        .with_memory(64 << 20)
        .unwrap()
}

async fn pod_names(rt: &KubernetesRuntime, s: &ServiceRef) -> Vec<String> {
    rt.pods(&Selector::Service(s.clone()))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_scale_stop_start_restart_delete() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    let other = svc("acme/shop/staging/api");
    rt.apply(&api, &spec(2)).await.unwrap();
    rt.apply(&other, &spec(1)).await.unwrap();

    let name = deployment_name(&api);
    let d = server.deployment(NS, &name).unwrap();
    let labels = &d["metadata"]["labels"];
    assert_eq!(labels[LABEL_ORG], "acme");
    assert_eq!(labels[LABEL_PROJECT], "shop");
    assert_eq!(labels[LABEL_ENV], "prod");
    assert_eq!(labels[LABEL_SERVICE], "api");
    assert_eq!(
        d["metadata"]["annotations"][ANNOTATION_SERVICE],
        api.as_str()
    );
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], FIELD_MANAGER);
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"][LABEL_SERVICE],
        "api"
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["env"][0]["name"], "MODE");

    assert_eq!(rt.services().await.unwrap(), [api.clone(), other.clone()]);
    let pods = rt.pods(&Selector::Service(api.clone())).await.unwrap();
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p.service, api);
        assert_eq!(p.phase, PodPhase::Running);
        assert!(p.ready);
        assert_eq!(p.node, NODE);
        assert_eq!(p.template, spec(2).template_hash());
        assert_eq!(
            p.isolation,
            Isolation::ContainerRuntime {
                runtime: Some("stand-in".into())
            }
        );
    }
    let env = Selector::parse("acme/shop/prod").unwrap();
    assert_eq!(
        rt.pods(&env).await.unwrap().len(),
        2,
        "staging is not selected"
    );

    // The same spec again changes nothing.
    let before = pod_names(&rt, &api).await;
    rt.apply(&api, &spec(2)).await.unwrap();
    assert_eq!(pod_names(&rt, &api).await, before);

    rt.scale(&api, 3).await.unwrap();
    assert_eq!(pod_names(&rt, &api).await.len(), 3);

    rt.stop(&api).await.unwrap();
    assert!(pod_names(&rt, &api).await.is_empty());
    let d = server.deployment(NS, &name).unwrap();
    assert_eq!(d["metadata"]["annotations"][ANNOTATION_STOPPED], "true");
    // Applying while stopped records the spec and stays stopped.
    rt.apply(&api, &spec(2)).await.unwrap();
    assert!(pod_names(&rt, &api).await.is_empty());
    rt.start(&api).await.unwrap();
    let before = pod_names(&rt, &api).await;
    assert_eq!(before.len(), 2);

    rt.restart(&api).await.unwrap();
    let after = pod_names(&rt, &api).await;
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
    let d = server.deployment(NS, &name).unwrap();
    let at = d["spec"]["template"]["metadata"]["annotations"][ANNOTATION_RESTARTED_AT].clone();
    assert!(at.is_string(), "{d}");
    // A later apply keeps the restart stamp: no second rollout.
    rt.apply(&api, &spec(2)).await.unwrap();
    assert_eq!(pod_names(&rt, &api).await, after);

    rt.delete(&api).await.unwrap();
    assert!(server.deployment(NS, &name).is_none());
    assert!(pod_names(&rt, &api).await.is_empty());
    assert_eq!(rt.services().await.unwrap(), std::slice::from_ref(&other));
    for r in [
        rt.delete(&api).await,
        rt.scale(&api, 1).await,
        rt.stop(&api).await,
        rt.restart(&api).await,
    ] {
        assert!(matches!(r, Err(RuntimeError::ServiceNotFound(_))), "{r:?}");
    }
    let cred = rt
        .refresh_credential(
            &CredentialTarget::Service(other.clone()),
            zeroize::Zeroizing::new(b"x".to_vec()),
        )
        .await;
    assert!(
        matches!(&cred, Err(RuntimeError::Unsupported(m)) if m.contains("projected service-account")),
        "{cred:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_that_cannot_map_are_refused_before_anything_is_written() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    let no_image = WorkloadSpec::new(["sleep", "1"]).unwrap();
    assert!(matches!(
        rt.apply(&api, &no_image).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    assert!(server.deployment(NS, &deployment_name(&api)).is_none());
}

async fn first_pod(rt: &KubernetesRuntime, s: &ServiceRef) -> PodRef {
    let name = rt.pods(&Selector::Service(s.clone())).await.unwrap()[0]
        .name
        .clone();
    PodRef {
        service: s.clone(),
        name,
    }
}

async fn collect(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> String {
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a session to the end: (stdout, stderr, exit code or the error's
/// `Debug`).
async fn finish(s: ExecSession) -> (String, String, Result<i32, String>) {
    let ExecSession {
        stdin,
        stdout,
        stderr,
        exit,
        ..
    } = s;
    drop(stdin);
    let out = tokio::spawn(collect(stdout));
    let err = stderr.map(|e| tokio::spawn(collect(e)));
    let code = tokio::time::timeout(Duration::from_secs(20), exit)
        .await
        .expect("exec hung")
        .map(|s| s.code)
        .map_err(|e| format!("{e:?}"));
    let err = match err {
        Some(e) => e.await.unwrap(),
        None => String::new(),
    };
    (out.await.unwrap(), err, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_output_and_real_exit_codes() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    let no_stdin = |argv: &[&str]| {
        let mut r = ExecRequest::new(argv.iter().copied());
        r.stdin = false;
        r
    };

    let s = rt
        .exec(
            &pod,
            no_stdin(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        )
        .await
        .unwrap();
    assert_eq!(finish(s).await, ("out\n".into(), "err\n".into(), Ok(3)));
    let s = rt.exec(&pod, no_stdin(&["true"])).await.unwrap();
    assert_eq!(finish(s).await.2, Ok(0));
    let s = rt.exec(&pod, no_stdin(&["false"])).await.unwrap();
    assert_eq!(finish(s).await.2, Ok(1));
    // Killed by SIGKILL: the shell convention 128 + 9.
    let s = rt
        .exec(&pod, no_stdin(&["sh", "-c", "kill -9 $$"]))
        .await
        .unwrap();
    assert_eq!(finish(s).await.2, Ok(137));
    // A program that cannot start is an error, not an exit code.
    let s = rt
        .exec(&pod, no_stdin(&["/nonexistent/program"]))
        .await
        .unwrap();
    let (_, _, code) = finish(s).await;
    assert!(
        matches!(&code, Err(e) if e.starts_with("ExecFailed")),
        "{code:?}"
    );
    // Allowlisted environment goes through `env`.
    let mut r = no_stdin(&["sh", "-c", "echo $LANG"]);
    r.env = vec![("LANG".into(), "C.UTF-8".into())];
    let s = rt.exec(&pod, r).await.unwrap();
    assert_eq!(finish(s).await.0, "C.UTF-8\n");
    // 1 MiB of output arrives whole before the exit status.
    let s = rt
        .exec(
            &pod,
            no_stdin(&["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x"]),
        )
        .await
        .unwrap();
    let (out, _, code) = finish(s).await;
    assert_eq!((out.len(), code), (1 << 20, Ok(0)));

    // Pods are reached only through their own service.
    let stranger = PodRef {
        service: svc("acme/shop/prod/other"),
        name: pod.name.clone(),
    };
    assert!(matches!(
        rt.exec(&stranger, no_stdin(&["true"])).await,
        Err(RuntimeError::PodNotFound(_))
    ));
    assert!(matches!(
        rt.logs(&stranger, LogOptions::default()).await,
        Err(RuntimeError::PodNotFound(_))
    ));
    assert!(
        server
            .execs()
            .iter()
            .all(|e| e.protocol == "v5.channel.k8s.io")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdin_half_close_ends_cat() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    let mut s = rt.exec(&pod, ExecRequest::new(["cat"])).await.unwrap();
    let stdin = s.stdin.take().unwrap();
    stdin.write(Bytes::from_static(b"hello ")).await.unwrap();
    stdin.write(Bytes::from_static(b"world\n")).await.unwrap();
    stdin.close();
    assert_eq!(
        finish(s).await,
        ("hello world\n".into(), String::new(), Ok(0))
    );
    let rec = server.execs().pop().unwrap();
    assert_eq!(rec.command, ["cat"]);
    assert!(rec.stdin_closed, "stdin EOF went as [255, 0]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_merges_stderr_and_sends_resizes() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    let mut r = ExecRequest::new(["sh", "-c", "read line; echo got $line; echo err >&2"]);
    r.tty = Some(TermSize { cols: 80, rows: 24 });
    let mut s = rt.exec(&pod, r).await.unwrap();
    assert!(s.stderr.is_none());
    s.control.resize(120, 40).unwrap();
    // Let the resize go out before the process can end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stdin = s.stdin.take().unwrap();
    stdin.write(Bytes::from_static(b"y\n")).await.unwrap();
    drop(stdin);
    let (out, err, code) = finish(s).await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("got y\nerr\n", "", Ok(0))
    );
    let rec = server.execs().pop().unwrap();
    assert!(rec.tty);
    assert_eq!(rec.resizes, [(80, 24), (120, 40)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_lost_mid_exec_is_an_error_not_exit_0() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    let mut r = ExecRequest::new(["sh", "-c", "echo started; sleep 30"]);
    r.stdin = false;
    let mut s = rt.exec(&pod, r).await.unwrap();
    assert_eq!(
        s.stdout.recv().await.unwrap(),
        Bytes::from_static(b"started\n")
    );
    server.kill();
    let (_, _, code) = finish(s).await;
    assert!(
        matches!(&code, Err(e) if e.starts_with("Unavailable")),
        "{code:?}"
    );
    // And nothing answers afterwards.
    assert!(matches!(
        rt.services().await,
        Err(RuntimeError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_and_follow() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    server.append_log(NS, pod.name.as_str(), "a\nb\nc\n");

    let all: Vec<u8> = rt
        .logs(&pod, LogOptions::default())
        .await
        .unwrap()
        .map(|c| c.unwrap().data)
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        format!("pod {} started\na\nb\nc\n", pod.name)
    );
    let tail: Vec<u8> = rt
        .logs(
            &pod,
            LogOptions {
                follow: false,
                tail_lines: Some(2),
            },
        )
        .await
        .unwrap()
        .map(|c| c.unwrap().data)
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(tail, b"b\nc\n");

    let mut follow = rt
        .logs(
            &pod,
            LogOptions {
                follow: true,
                tail_lines: Some(1),
            },
        )
        .await
        .unwrap();
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!(first.data, Bytes::from_static(b"c\n"));
    server.append_log(NS, pod.name.as_str(), "d\n");
    let next = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.data, Bytes::from_static(b"d\n"));
    // The pod goes away: the stream ends.
    rt.delete(&api).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_closes_its_connection() {
    let (server, rt, _dir) = setup().await;
    let api = svc("acme/shop/prod/api");
    rt.apply(&api, &spec(1)).await.unwrap();
    let pod = first_pod(&rt, &api).await;
    let mut r = ExecRequest::new(["sh", "-c", "echo up; sleep 30"]);
    r.stdin = false;
    let mut s = rt.exec(&pod, r).await.unwrap();
    assert_eq!(s.stdout.recv().await.unwrap(), Bytes::from_static(b"up\n"));
    drop(s);
    // The stand-in sees the client go at once, not when the process ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.abandoned().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection lingers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.abandoned()[0][2], "echo up; sleep 30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_at_a_services_name_that_names_another_is_not_taken_over() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rt = connect(&server, &dir, None).await;
    let api = svc("acme/shop/prod/api");
    let name = deployment_name(&api);
    // Someone else's Deployment at the name, claiming another service.
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, NS);
    let foreign = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {LABEL_SERVICE: "api"},
                     "annotations": {ANNOTATION_SERVICE: "evil/corp/prod/api"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {LABEL_SERVICE: "api"}},
                 "template": {"metadata": {"labels": {LABEL_SERVICE: "api"}},
                              "spec": {"containers": [{"name": "workload", "image": "x"}]}}},
    });
    deployments
        .patch(
            &name,
            &kube::api::PatchParams::apply("someone"),
            &kube::api::Patch::Apply(&foreign),
        )
        .await
        .unwrap();
    let refused = rt.apply(&api, &spec(1)).await;
    assert!(
        matches!(&refused, Err(RuntimeError::InvalidRequest(m)) if m.contains("another service")),
        "{refused:?}"
    );
    assert!(rt.services().await.unwrap().is_empty());
    assert!(matches!(
        rt.scale(&api, 2).await,
        Err(RuntimeError::ServiceNotFound(_))
    ));
    assert!(matches!(
        rt.delete(&api).await,
        Err(RuntimeError::ServiceNotFound(_))
    ));
    assert!(server.deployment(NS, &name).is_some(), "left alone");
}
