//! The manifests in deploy/kubernetes/: every document parses, and the
//! agent's Role grants exactly what `KubernetesRuntime` asks the API server
//! for (recorded by the stand-in while the runtime does everything it can),
//! with no wildcard.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use serde::Deserialize as _;
use serde_json::Value;
use warden_kubernetes::KubernetesRuntime;
use warden_runtime::{
    ExecRequest, LogOptions, PodRef, Runtime, Selector, ServiceRef, WorkloadSpec,
};

use crate::apiserver::ApiServer;

fn manifests() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for key in ["apiVersion", "kind"] {
                assert!(
                    v[key].is_string(),
                    "{}: a document without {key}",
                    f.display()
                );
            }
            assert!(
                v["metadata"]["name"].is_string(),
                "{}: unnamed",
                f.display()
            );
            out.push((f.display().to_string(), v));
        }
    }
    out
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
        .1
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Everything the runtime can do, against a fresh stand-in.
async fn exercise(rt: &KubernetesRuntime, server: &ApiServer) {
    let s = ServiceRef::parse("acme/shop/prod/api").unwrap();
    let spec = WorkloadSpec::new(["sleep", "60"])
        .unwrap()
        .with_image("busybox:1.36")
        .unwrap();
    rt.apply(&s, &spec).await.unwrap();
    rt.apply(&s, &spec).await.unwrap();
    rt.scale(&s, 2).await.unwrap();
    rt.stop(&s).await.unwrap();
    rt.start(&s).await.unwrap();
    rt.restart(&s).await.unwrap();
    rt.services().await.unwrap();
    let name = rt.pods(&Selector::Service(s.clone())).await.unwrap()[0]
        .name
        .clone();
    let pod = PodRef {
        service: s.clone(),
        name,
    };
    let logs = rt.logs(&pod, LogOptions::default()).await.unwrap();
    let _: Vec<_> = logs.collect().await;
    let mut e = rt.exec(&pod, ExecRequest::new(["cat"])).await.unwrap();
    e.stdin
        .take()
        .unwrap()
        .write(Bytes::from_static(b"x"))
        .await
        .unwrap();
    drop(e.stdin.take());
    while e.stdout.recv().await.is_some() {}
    assert_eq!(e.exit.await.unwrap().code, 0);
    rt.delete(&s).await.unwrap();
    assert!(!server.verbs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_grants_exactly_what_the_runtime_uses() {
    let docs = manifests();
    let role = find(&docs, "Role", "warden-agent");
    let agent = find(&docs, "Deployment", "warden-agent");
    let args = strings(&agent["spec"]["template"]["spec"]["containers"][0]["args"]);
    let ns_flag = args.iter().position(|a| a == "--kube-namespace").unwrap();
    let workload_ns = args[ns_flag + 1].clone();
    assert_eq!(role["metadata"]["namespace"], workload_ns.as_str());

    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for x in [&group, &resource, &verb] {
                        assert!(!x.contains('*'), "wildcard in the Role: {rule}");
                    }
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }

    let server = ApiServer::start().await;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let rt = KubernetesRuntime::with_client(client, &workload_ns, Duration::from_secs(5));
    exercise(&rt, &server).await;
    let used = server.verbs();
    assert_eq!(
        granted, used,
        "deploy/kubernetes/rbac.yaml must grant exactly what the runtime uses"
    );
}

#[test]
fn the_agent_deployment_runs_the_kubernetes_runtime_with_its_account() {
    let docs = manifests();
    let agent = find(&docs, "Deployment", "warden-agent");
    let pod = &agent["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    assert_eq!(args[..3], ["agent", "--runtime", "kubernetes"]);

    let binding = find(&docs, "RoleBinding", "warden-agent");
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"], "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], subject["name"]);
    assert_eq!(agent["metadata"]["namespace"], subject["namespace"]);
    assert_eq!(binding["roleRef"]["name"], "warden-agent");
    find(&docs, "ServiceAccount", subject["name"].as_str().unwrap());

    // The join token comes from a Secret, never a literal.
    let env = c["env"].as_array().unwrap();
    let token = env
        .iter()
        .find(|e| e["name"] == "WARDEN_JOIN_TOKEN")
        .unwrap();
    assert!(token.get("value").is_none());
    assert!(token["valueFrom"]["secretKeyRef"]["name"].is_string());

    // The state directory lives on the mounted volume.
    let state = &args[args.iter().position(|a| a == "--state-dir").unwrap() + 1];
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| state.starts_with(m["mountPath"].as_str().unwrap()) && m["name"] == "state"),
        "{state} is not on the state volume"
    );
}
