//! `KubernetesRuntime` against a real cluster. Runs only when
//! `WARDEN_TEST_KUBECONFIG` names a kubeconfig whose identity has the
//! rights of deploy/kubernetes/rbac.yaml in the namespace
//! `WARDEN_TEST_KUBE_NAMESPACE` (default `warden`, which must exist); the
//! pods run `WARDEN_TEST_IMAGE` (default `busybox:1.36`, which needs `sh`,
//! `cat` and `sleep`). Without it the test says it was skipped and passes:
//! no cluster can run on the machines CI uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use warden_kubernetes::{KubernetesConfig, KubernetesRuntime};
use warden_runtime::{
    ExecRequest, LogOptions, PodPhase, PodRef, Runtime, Selector, ServiceRef, WorkloadSpec,
};

async fn running_pods(rt: &KubernetesRuntime, s: &ServiceRef, want: usize) -> Vec<PodRef> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pods = rt.pods(&Selector::Service(s.clone())).await.unwrap();
        let running: Vec<_> = pods
            .iter()
            .filter(|p| p.phase == PodPhase::Running && p.ready)
            .map(|p| PodRef {
                service: s.clone(),
                name: p.name.clone(),
            })
            .collect();
        if running.len() == want && pods.len() == want {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "pods never became ready: {pods:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_against_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("WARDEN_TEST_KUBECONFIG") else {
        eprintln!("real_cluster: skipped (WARDEN_TEST_KUBECONFIG is not set)");
        return;
    };
    let namespace = std::env::var("WARDEN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "warden".into());
    let image = std::env::var("WARDEN_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
    let rt = KubernetesRuntime::connect(KubernetesConfig {
        namespace,
        kubeconfig: Some(kubeconfig.into()),
        rollout_timeout: Duration::from_secs(180),
    })
    .await
    .unwrap();
    let s = ServiceRef::parse(&format!("warden-test/real/e2e/svc-{}", std::process::id())).unwrap();
    let spec = WorkloadSpec::new(["sh", "-c", "echo booted; exec sleep 3600"])
        .unwrap()
        .with_image(image)
        .unwrap();
    rt.apply(&s, &spec).await.unwrap();
    let pod = running_pods(&rt, &s, 1).await.remove(0);
    assert!(rt.services().await.unwrap().contains(&s));

    let mut r = ExecRequest::new(["sh", "-c", "echo hi; echo err >&2; exit 7"]);
    r.stdin = false;
    let mut e = rt.exec(&pod, r).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = e.stdout.recv().await {
        out.extend_from_slice(&b);
    }
    assert_eq!(out, b"hi\n");
    assert_eq!(e.exit.await.unwrap().code, 7);

    let mut e = rt.exec(&pod, ExecRequest::new(["cat"])).await.unwrap();
    let stdin = e.stdin.take().unwrap();
    stdin.write(Bytes::from_static(b"echo\n")).await.unwrap();
    drop(stdin);
    let mut out = Vec::new();
    while let Some(b) = e.stdout.recv().await {
        out.extend_from_slice(&b);
    }
    assert_eq!(out, b"echo\n");
    assert_eq!(e.exit.await.unwrap().code, 0);

    use futures::StreamExt as _;
    let logs: Vec<u8> = rt
        .logs(&pod, LogOptions::default())
        .await
        .unwrap()
        .map(|c| c.unwrap().data)
        .collect::<Vec<_>>()
        .await
        .concat();
    assert!(String::from_utf8_lossy(&logs).contains("booted"));

    rt.scale(&s, 2).await.unwrap();
    running_pods(&rt, &s, 2).await;
    rt.restart(&s).await.unwrap();
    rt.stop(&s).await.unwrap();
    assert!(
        rt.pods(&Selector::Service(s.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    rt.delete(&s).await.unwrap();
    assert!(!rt.services().await.unwrap().contains(&s));
}
