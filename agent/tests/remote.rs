//! The runtime protocol end to end: a hub and an agent joined by an
//! in-memory link (the link's own tests cover TLS), the agent serving a
//! real [`LocalRuntime`] with real pods. Runs as root on CI; without root
//! the local runtime runs pods without namespaces, which this suite does
//! not depend on.
//!
//! Custom harness: this binary is also the runtime's helper (`BIN
//! __runtime ROLE`), dispatched before any thread starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use warden_agent::{Agent, AgentInfo, CredentialFeed, RemoteRuntime, serve_credentials, wire};
use warden_link::Hub;
use warden_runtime::{
    ExecRequest, HelperCommand, LocalConfig, LocalRuntime, LogOptions, PodName, PodRef, PodStatus,
    Runtime, RuntimeError, Selector, ServiceRef, TermSize, WorkloadSpec,
};
use zeroize::Zeroizing;

type Test = fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__runtime") {
        warden_runtime::helper_main(args[2..].to_vec());
    }
    let filter = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| !a.starts_with('-'));
    let tests: &[(&str, Test)] = &[
        ("operations_cross_the_link", || {
            Box::pin(operations_cross_the_link())
        }),
        ("exec_streams_and_exit_codes", || {
            Box::pin(exec_streams_and_exit_codes())
        }),
        ("a_lost_link_ends_exec_with_an_error_and_hangs_up", || {
            Box::pin(a_lost_link_ends_exec_with_an_error_and_hangs_up())
        }),
        ("an_agent_not_connected_is_unavailable", || {
            Box::pin(an_agent_not_connected_is_unavailable())
        }),
        ("credentials_fall_back_to_another_link", || {
            Box::pin(credentials_fall_back_to_another_link())
        }),
        ("garbage_from_either_side_is_an_error_not_a_panic", || {
            Box::pin(garbage_from_either_side_is_an_error_not_a_panic())
        }),
    ];
    let mut ran = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        eprintln!("test {name} ...");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), test()).await })
            .unwrap_or_else(|_| panic!("{name} timed out"));
        eprintln!("test {name} ... ok");
        ran += 1;
    }
    eprintln!("test result: ok. {ran} passed");
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A local runtime over a fresh directory, with this binary as its helper,
/// whose pods' credentials come over the link (`linked` serves them).
async fn local_runtime(base: &std::path::Path) -> (LocalRuntime, CredentialFeed) {
    let helper = HelperCommand {
        program: std::env::current_exe().unwrap(),
        args: vec!["__runtime".into()],
    };
    let mut cfg = LocalConfig::new(base.join("state"), helper);
    cfg.cgroup_parent = format!("warden-test/{}", unique("agent"));
    cfg.stop_grace = Duration::from_secs(2);
    cfg.reconcile_interval = Duration::from_millis(300);
    let feed = CredentialFeed::new();
    let rt = LocalRuntime::start(cfg, Arc::new(feed.clone()))
        .await
        .unwrap();
    (rt, feed)
}

/// A hub with agent `name` connected over an in-memory duplex; returns the
/// hub and the agent task (abort it to cut the link).
async fn linked(
    name: &str,
    (runtime, feed): (Arc<dyn Runtime>, CredentialFeed),
) -> (
    Hub,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let hub = Hub::new();
    let serving = {
        let (hub, name) = (hub.clone(), name.to_owned());
        tokio::spawn(async move {
            let _ = hub.serve(&name, a).await;
        })
    };
    let agent = Agent::new(
        runtime,
        AgentInfo {
            runtime: "local".into(),
            version: "test".into(),
            node: "here".into(),
        },
        feed,
    );
    let agent_task = tokio::spawn(async move {
        let _ = warden_link::run_agent(b, move |h, s| agent.clone().handle(h, s)).await;
    });
    for _ in 0..200 {
        if hub.connected().contains(&name.to_owned()) {
            // Pods get `cred:SERVICE:POD`, minted on this side (then
            // `cred:SERVICE:POD:N` for the Nth refresh).
            let stream = RemoteRuntime::new(hub.clone(), name)
                .credential_stream()
                .await
                .unwrap();
            let minted = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
            tokio::spawn(serve_credentials(
                stream,
                move |s: ServiceRef, p: PodName| {
                    let n = {
                        let mut m = minted.lock().unwrap();
                        let n = m.entry(p.to_string()).or_insert(0u32);
                        *n += 1;
                        *n
                    };
                    async move {
                        let cred = match n {
                            1 => format!("cred:{s}:{p}"),
                            n => format!("cred:{s}:{p}:{}", n - 1),
                        };
                        Ok(Zeroizing::new(cred.into_bytes()))
                    }
                },
            ));
            return (hub, serving, agent_task);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("agent never connected");
}

fn service() -> ServiceRef {
    ServiceRef::parse(&format!("acme/shop/test/{}", unique("svc"))).unwrap()
}

async fn running(rt: &dyn Runtime, service: &ServiceRef, n: usize) -> Vec<PodStatus> {
    for _ in 0..300 {
        let pods = rt.pods(&Selector::Service(service.clone())).await.unwrap();
        if pods.iter().filter(|p| p.ready).count() == n {
            return pods;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{service} never had {n} ready pods");
}

struct Base(PathBuf);
impl Drop for Base {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn base() -> Base {
    let dir = PathBuf::from("/var/tmp").join(unique("warden-agent-test"));
    std::fs::create_dir_all(&dir).unwrap();
    Base(dir)
}

async fn operations_cross_the_link() {
    let dir = base();
    let (local, feed) = local_runtime(&dir.0).await;
    let local: Arc<dyn Runtime> = Arc::new(local);
    let (hub, _s, _a) = linked("edge", (local.clone(), feed.clone())).await;
    let remote = RemoteRuntime::new(hub, "edge");
    assert_eq!(remote.hello().await.unwrap().runtime, "local");

    let svc = service();
    let spec = WorkloadSpec::from_yaml(
        "command: [/bin/sh, -c, 'echo started; echo oops >&2; exec sleep 1000']\nreplicas: 2\n",
    )
    .unwrap();
    remote.apply(&svc, &spec).await.unwrap();
    let pods = running(&remote, &svc, 2).await;
    // What the remote side lists is what the agent's runtime lists.
    let mut direct = local.pods(&Selector::Service(svc.clone())).await.unwrap();
    let mut listed = pods.clone();
    direct.sort_by(|a, b| a.name.cmp(&b.name));
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        listed.iter().map(|p| &p.name).collect::<Vec<_>>(),
        direct.iter().map(|p| &p.name).collect::<Vec<_>>()
    );

    // Logs, both streams, through the link.
    let pod = PodRef {
        service: svc.clone(),
        name: pods[0].name.clone(),
    };
    let mut text = String::new();
    for _ in 0..100 {
        let mut logs = remote.logs(&pod, LogOptions::default()).await.unwrap();
        text.clear();
        while let Some(c) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&c.unwrap().data));
        }
        if text.contains("started") && text.contains("oops") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains("started") && text.contains("oops"),
        "{text:?}"
    );

    // Errors keep their kind: a pod of another service is not found, a bad
    // spec is refused before anything is sent, scaling works.
    let other = PodRef {
        service: service(),
        name: pods[0].name.clone(),
    };
    let e = remote
        .logs(&other, LogOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::PodNotFound(_)), "{e}");
    let e = remote.stop(&service()).await.unwrap_err();
    assert!(matches!(e, RuntimeError::ServiceNotFound(_)), "{e}");
    remote.scale(&svc, 1).await.unwrap();
    running(&remote, &svc, 1).await;
    let e = remote.scale(&svc, 65).await.unwrap_err();
    assert!(matches!(e, RuntimeError::InvalidSpec { .. }), "{e}");
    let e = remote.scale(&service(), 1).await.unwrap_err();
    assert!(matches!(e, RuntimeError::ServiceNotFound(_)), "{e}");
    remote
        .refresh_credential(
            &warden_runtime::CredentialTarget::Service(svc.clone()),
            Zeroizing::new(b"rotated".to_vec()),
        )
        .await
        .unwrap();
    // The refresh round gives each running pod a new credential, asked
    // over the link; the pod reads it from the same file.
    let watcher = service();
    remote
        .apply(
            &watcher,
            &WorkloadSpec::new([
                "/bin/sh",
                "-c",
                "while :; do cat \"$WARDEN_CREDENTIAL_FILE\"; echo; sleep 0.1; done",
            ])
            .unwrap(),
        )
        .await
        .unwrap();
    let wpod = PodRef {
        service: watcher.clone(),
        name: running(&remote, &watcher, 1).await[0].name.clone(),
    };
    assert!(warden_agent::refresh_once(&feed, &*local).await.unwrap() >= 2);
    let want = format!("cred:{watcher}:{}:1", wpod.name);
    let mut seen = String::new();
    for _ in 0..100 {
        let mut logs = remote.logs(&wpod, LogOptions::default()).await.unwrap();
        seen.clear();
        while let Some(c) = logs.next().await {
            seen.push_str(&String::from_utf8_lossy(&c.unwrap().data));
        }
        if seen.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains(&want), "{want} never read: {seen}");
    remote.delete(&watcher).await.unwrap();

    remote.stop(&svc).await.unwrap();
    assert!(
        remote
            .pods(&Selector::Service(svc.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    remote.delete(&svc).await.unwrap();
}

async fn collect(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(d) = rx.recv().await {
        out.extend_from_slice(&d);
    }
    out
}

async fn exec_streams_and_exit_codes() {
    let dir = base();
    let (local, feed) = local_runtime(&dir.0).await;
    let local: Arc<dyn Runtime> = Arc::new(local);
    let (hub, _s, _a) = linked("edge", (local.clone(), feed)).await;
    let remote = RemoteRuntime::new(hub, "edge");
    let svc = service();
    remote
        .apply(
            &svc,
            &WorkloadSpec::new([
                "/bin/sh",
                "-c",
                "cat \"$WARDEN_CREDENTIAL_FILE\"; echo; exec sleep 1000",
            ])
            .unwrap(),
        )
        .await
        .unwrap();
    let pods = running(&remote, &svc, 1).await;
    let pod = PodRef {
        service: svc.clone(),
        name: pods[0].name.clone(),
    };

    // The pod's credential came over the link's credential stream, minted
    // for exactly its service and name.
    let mut logs = remote.logs(&pod, LogOptions::default()).await.unwrap();
    let mut text = Vec::new();
    while let Some(c) = logs.next().await {
        text.extend_from_slice(&c.unwrap().data);
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("cred:{svc}:{}\n", pod.name)
    );

    // Exit codes: 0, 1, and 137 for a process killed by SIGKILL.
    for (script, code, signal) in [
        ("exit 0", 0, None),
        ("exit 1", 1, None),
        ("kill -9 $$", 137, Some(9)),
    ] {
        let mut req = ExecRequest::new(["/bin/sh", "-c", script]);
        req.stdin = false;
        let s = remote.exec(&pod, req).await.unwrap();
        let status = s.exit.await.unwrap();
        assert_eq!(status.code, code, "{script}");
        assert_eq!(status.signal, signal, "{script}");
    }

    // Stdin through, half-close ends it, stdout and stderr kept apart, and
    // a large output arrives whole.
    let mut s = remote
        .exec(
            &pod,
            ExecRequest::new([
                "/bin/sh",
                "-c",
                "cat; echo done >&2; head -c 3000000 /dev/zero",
            ]),
        )
        .await
        .unwrap();
    let stdin = s.stdin.take().unwrap();
    stdin.write(Bytes::from_static(b"hello ")).await.unwrap();
    stdin.write(Bytes::from_static(b"world")).await.unwrap();
    stdin.close();
    let (out, err) = tokio::join!(collect(s.stdout), collect(s.stderr.take().unwrap()));
    assert_eq!(&out[..11], b"hello world");
    assert_eq!(out.len(), 11 + 3_000_000);
    assert_eq!(err, b"done\n");
    assert!(s.exit.await.unwrap().success());

    // A terminal: resize is seen by the process.
    let mut req = ExecRequest::new(["/bin/sh", "-c", "read x; stty size"]);
    req.tty = Some(TermSize { cols: 80, rows: 24 });
    let s = remote.exec(&pod, req).await.unwrap();
    s.control.resize(120, 40).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.stdin
        .as_ref()
        .unwrap()
        .write(Bytes::from_static(b"\n"))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&collect(s.stdout).await).into_owned();
    assert!(out.contains("40 120"), "{out:?}");
    assert!(s.exit.await.unwrap().success());

    // A signal reaches a process that reads none of the stdin flooding it
    // (stdin is credited, so control frames never queue behind it), and a
    // large stdin to a process that reads it arrives whole.
    let s = remote
        .exec(&pod, ExecRequest::new(["/bin/sh", "-c", "exec sleep 1000"]))
        .await
        .unwrap();
    let stdin = s.stdin.unwrap();
    let flood = tokio::spawn(async move {
        while stdin
            .write(Bytes::from(vec![b'x'; 64 * 1024]))
            .await
            .is_ok()
        {}
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.control.signal(warden_runtime::Signal::KILL).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), s.exit)
        .await
        .expect("the KILL never reached the process")
        .unwrap();
    assert_eq!(status.code, 137);
    flood.abort();
    let mut s = remote
        .exec(&pod, ExecRequest::new(["/bin/sh", "-c", "wc -c"]))
        .await
        .unwrap();
    let stdin = s.stdin.take().unwrap();
    for _ in 0..64 {
        stdin
            .write(Bytes::from(vec![b'y'; 64 * 1024]))
            .await
            .unwrap();
    }
    stdin.close();
    let out = String::from_utf8_lossy(&collect(s.stdout).await).into_owned();
    assert_eq!(out.trim(), (64 * 64 * 1024).to_string());

    // A command that does not exist is the runtime's error, not an exit.
    let e = remote
        .exec(&pod, ExecRequest::new(["/nonexistent"]))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::ExecFailed { .. }), "{e}");
    remote.delete(&svc).await.unwrap();
}

async fn a_lost_link_ends_exec_with_an_error_and_hangs_up() {
    let dir = base();
    let (local, feed) = local_runtime(&dir.0).await;
    let local: Arc<dyn Runtime> = Arc::new(local);
    let (hub, serving, agent) = linked("edge", (local.clone(), feed)).await;
    let remote = RemoteRuntime::new(hub, "edge");
    let svc = service();
    remote
        .apply(&svc, &WorkloadSpec::new(["sleep", "1000"]).unwrap())
        .await
        .unwrap();
    let pods = running(&remote, &svc, 1).await;
    let pod = PodRef {
        service: svc.clone(),
        name: pods[0].name.clone(),
    };
    let mut req = ExecRequest::new([
        "/bin/sh",
        "-c",
        "trap 'echo hup > /tmp/hup; exit 3' HUP; echo ready; while :; do sleep 0.05; done",
    ]);
    req.stdin = false;
    let mut s = remote.exec(&pod, req).await.unwrap();
    assert_eq!(&s.stdout.recv().await.unwrap()[..], b"ready\n");

    // Cut the link from the agent's side.
    agent.abort();
    serving.abort();
    let status = tokio::time::timeout(Duration::from_secs(15), s.exit)
        .await
        .expect("the exit future resolved");
    let e = status.unwrap_err();
    assert!(matches!(e, RuntimeError::Unavailable(_)), "{e}");

    // On the agent's side the process was hung up on.
    let mut check = ExecRequest::new(["/bin/sh", "-c", "cat /tmp/hup"]);
    check.stdin = false;
    let mut seen = false;
    for _ in 0..100 {
        let mut c = local.exec(&pod, check.clone()).await.unwrap();
        let out = collect(std::mem::replace(
            &mut c.stdout,
            tokio::sync::mpsc::channel(1).1,
        ))
        .await;
        let _ = c.exit.await;
        if out == b"hup\n" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the exec'd process never got SIGHUP");
    local.delete(&svc).await.unwrap();
}

/// One agent linked to two control-plane replicas: when the newest link's
/// replica cannot mint, the credential comes from the other; when that
/// link goes too, the pod's request fails (never hangs).
async fn credentials_fall_back_to_another_link() {
    let feed = CredentialFeed::new();
    let dir = base();
    let (local, _unused) = local_runtime(&dir.0).await;
    let agent = Agent::new(
        Arc::new(local),
        AgentInfo {
            runtime: "local".into(),
            version: "test".into(),
            node: "here".into(),
        },
        feed.clone(),
    );
    let mut links = Vec::new();
    for (replica, works) in [("a", true), ("b", false)] {
        let (near, far) = tokio::io::duplex(1 << 16);
        let hub = Hub::new();
        let h = hub.clone();
        let serving = tokio::spawn(async move {
            let _ = h.serve("edge", near).await;
        });
        let agent = agent.clone();
        let linked = tokio::spawn(async move {
            let _ = warden_link::run_agent(far, move |h, s| agent.clone().handle(h, s)).await;
        });
        while hub.connected().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stream = RemoteRuntime::new(hub.clone(), "edge")
            .credential_stream()
            .await
            .unwrap();
        tokio::spawn(serve_credentials(
            stream,
            move |_s: ServiceRef, _p: PodName| async move {
                if works {
                    Ok(Zeroizing::new(format!("from-{replica}").into_bytes()))
                } else {
                    Err(format!("replica {replica} cannot mint"))
                }
            },
        ));
        // Let the agent attach this stream before the next one.
        tokio::time::sleep(Duration::from_millis(100)).await;
        links.push((serving, linked));
    }
    let svc = service();
    let pod = PodName::parse("api-abcde").unwrap();
    use warden_runtime::CredentialSource;
    let got = feed.credential(&svc, &pod).await.unwrap();
    assert_eq!(&got[..], b"from-a");
    // Replica a goes away: b's refusal is what the pod gets.
    let (serving, linked) = links.remove(0);
    serving.abort();
    linked.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = feed.credential(&svc, &pod).await.unwrap_err();
    assert!(e.to_string().contains("replica b cannot mint"), "{e}");
}

async fn an_agent_not_connected_is_unavailable() {
    let remote = RemoteRuntime::new(Hub::new(), "nowhere");
    let svc = service();
    let e = remote.stop(&svc).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Unavailable(_)), "{e}");
    assert_eq!(e.fault(), warden_types::Fault::Upstream);
}

async fn garbage_from_either_side_is_an_error_not_a_panic() {
    // The agent, sent headers that do not decode, answers an error.
    let dir = base();
    let (local, feed) = local_runtime(&dir.0).await;
    let (hub, _s, _a) = linked("edge", (Arc::new(local) as Arc<dyn Runtime>, feed)).await;
    for header in [
        &b"not json"[..],
        b"{\"op\":\"exec\"}",
        b"{\"op\":\"pods\",\"selector\":\"../../etc\"}",
    ] {
        let s = hub.open("edge", header).await.unwrap();
        let (mut tx, rx) = s.split();
        tx.finish().await.unwrap();
        let mut rx = wire::FrameReader::new(rx);
        let (tag, body) = rx.next().await.unwrap().unwrap();
        assert_eq!(tag, wire::RESULT);
        let r: Result<(), wire::WireError> = serde_json::from_slice(&body).unwrap();
        assert!(
            matches!(r, Err(wire::WireError::InvalidRequest { .. })),
            "{r:?}"
        );
    }

    // A hostile agent: an oversized frame, a truncated one and a wrong tag
    // are protocol errors for the control plane.
    for bad in [
        vec![wire::RESULT, 0xff, 0xff, 0xff, 0xff],
        vec![wire::RESULT, 0, 0, 0, 10, b'{'],
        wire::frame(wire::STDOUT, b"x").to_vec(),
    ] {
        let (a, b) = tokio::io::duplex(1 << 16);
        let hub = Hub::new();
        let h = hub.clone();
        tokio::spawn(async move {
            let _ = h.serve("evil", a).await;
        });
        let bad = Bytes::from(bad);
        tokio::spawn(async move {
            let _ = warden_link::run_agent(b, move |_h, s| {
                let bad = bad.clone();
                async move {
                    let (mut tx, mut rx) = s.split();
                    let _ = tx.send(bad).await;
                    let _ = tx.finish().await;
                    while let Some(Ok(_)) = rx.recv().await {}
                }
            })
            .await;
        });
        for _ in 0..200 {
            if !hub.connected().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let remote = RemoteRuntime::new(hub, "evil");
        let e = remote
            .pods(&Selector::parse("acme/shop/test").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::Agent(_)), "{e}");
    }
}
