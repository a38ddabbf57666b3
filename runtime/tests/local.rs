//! The local runtime against real processes, namespaces and cgroups.
//!
//! Tests that need root (namespaces, cgroups, other uids) print a line
//! starting with `SKIPPED` and pass when not run as root; on CI (root) they
//! all run. Every test removes its pods, cgroups and directories.

// Test code fails by panicking; the workspace's production-code lints do
// not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use warden_runtime::{
    CredentialTarget, ExecRequest, ExitReason, FnCredentialSource, HelperCommand, Isolation,
    LocalConfig, LocalRuntime, LogOptions, LogStreamKind, NamespaceMode, PodPhase, PodRef,
    PodStatus, RestartPolicy, Runtime, RuntimeError, Selector, ServiceRef, Signal, TermSize,
    WorkloadSpec,
};
use zeroize::Zeroizing;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Returns early, saying so on the real stderr (not captured by the test
/// harness), when not root.
macro_rules! require_root {
    () => {
        if !is_root() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {}: needs root (namespaces, cgroups)",
                std::thread::current().name().unwrap_or(module_path!())
            );
            return;
        }
    };
}

/// The helper binary; `WARDEN_RUNTIME_TEST_HELPER` overrides it (to run
/// this suite as another user from a copy of the binaries).
fn helper() -> HelperCommand {
    HelperCommand {
        program: std::env::var_os("WARDEN_RUNTIME_TEST_HELPER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_warden-runtime-helper"))),
        args: Vec::new(),
    }
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id())
}

/// A runtime over a fresh state directory and cgroup parent; `finish`
/// deletes everything and checks that nothing is left behind. If a test
/// fails first, `Drop` kills what it can find.
struct Env {
    rt: Option<LocalRuntime>,
    cfg: LocalConfig,
    base: PathBuf,
}

#[allow(clippy::type_complexity)]
fn credentials() -> Arc<
    FnCredentialSource<
        impl Fn(
            ServiceRef,
            warden_runtime::PodName,
        ) -> futures::future::Ready<Result<Zeroizing<Vec<u8>>, RuntimeError>>
        + Send
        + Sync,
    >,
> {
    Arc::new(FnCredentialSource(
        |service: ServiceRef, pod: warden_runtime::PodName| {
            futures::future::ready(Ok(Zeroizing::new(
                format!("cred:{service}:{pod}").into_bytes(),
            )))
        },
    ))
}

/// A fresh directory for a test. Under /var/tmp, not /tmp: a pod's /tmp
/// is private, and the tests need host paths a pod can (or, masked,
/// cannot) see. World-traversable, so that masking, not permissions, is
/// what hides things from pods.
fn test_base() -> PathBuf {
    let base = PathBuf::from("/var/tmp").join(unique("warden-rt-test"));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    base
}

impl Env {
    async fn new(tweak: impl FnOnce(&mut LocalConfig)) -> Self {
        Self::new_in(test_base(), tweak).await
    }

    async fn new_in(base: PathBuf, tweak: impl FnOnce(&mut LocalConfig)) -> Self {
        let mut cfg = LocalConfig::new(base.join("state"), helper());
        cfg.cgroup_parent = format!("warden-test/{}", unique("t"));
        cfg.stop_grace = Duration::from_secs(2);
        cfg.backoff_initial = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_secs(2);
        cfg.reconcile_interval = Duration::from_millis(300);
        cfg.rollout_timeout = Duration::from_secs(20);
        tweak(&mut cfg);
        let rt = LocalRuntime::start(cfg.clone(), credentials())
            .await
            .unwrap();
        Self {
            rt: Some(rt),
            cfg,
            base,
        }
    }

    fn rt(&self) -> &LocalRuntime {
        self.rt.as_ref().unwrap()
    }

    /// Drops the runtime (as if the agent stopped) and starts a new one over
    /// the same state directory.
    async fn restart_runtime(&mut self, between: impl FnOnce()) {
        drop(self.rt.take());
        between();
        self.rt = Some(
            LocalRuntime::start(self.cfg.clone(), credentials())
                .await
                .unwrap(),
        );
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        ["memory", "cpu", "pids"]
            .iter()
            .map(|c| root.join(c).join(&self.cfg.cgroup_parent))
            .chain(std::iter::once(root.join(&self.cfg.cgroup_parent)))
            .filter(|p| p.exists())
            .collect()
    }

    /// Deletes every service and checks that pods, shims and cgroups are
    /// gone.
    async fn finish(mut self) {
        let rt = self.rt.take().unwrap();
        let all = rt
            .pods(&Selector::parse("acme/shop/test").unwrap())
            .await
            .unwrap();
        let services: BTreeSet<ServiceRef> = all.iter().map(|p| p.service.clone()).collect();
        for s in services {
            rt.delete(&s).await.unwrap();
        }
        let pods_dir = self.cfg.state_dir.join("pods");
        let left: Vec<_> = std::fs::read_dir(&pods_dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "pod directories left: {left:?}");
        for d in self.cgroup_dirs() {
            let children: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .collect();
            assert!(
                children.is_empty(),
                "cgroups left under {}: {children:?}",
                d.display()
            );
        }
        drop(rt);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Kill shims (their pods die with them), then remove cgroups and
        // directories. After a clean `finish` there is nothing to kill.
        if let Ok(entries) = std::fs::read_dir(self.cfg.state_dir.join("pods")) {
            for e in entries.flatten() {
                if let Some(dir) = std::fs::read(e.path().join("pod.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["credential_dir"].as_str().map(PathBuf::from))
                {
                    let _ = std::fs::remove_dir_all(dir);
                }
                if let Some(pid) = std::fs::read_to_string(e.path().join("shim.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for d in self.cgroup_dirs() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten().filter(|e| e.path().is_dir()) {
                    if let Ok(procs) = std::fs::read_to_string(e.path().join("cgroup.procs")) {
                        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                                let _ =
                                    rustix::process::kill_process(p, rustix::process::Signal::KILL);
                            }
                        }
                    }
                    for _ in 0..100 {
                        if std::fs::remove_dir(e.path()).is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn svc(name: &str) -> ServiceRef {
    ServiceRef::parse(&format!("acme/shop/test/{name}")).unwrap()
}

fn sh(script: &str) -> WorkloadSpec {
    WorkloadSpec::new(["/bin/sh", "-c", script]).unwrap()
}

fn names(p: &[PodStatus]) -> BTreeSet<warden_runtime::PodName> {
    p.iter().map(|p| p.name.clone()).collect()
}

async fn running(env: &Env, s: &ServiceRef, n: usize) -> Vec<PodStatus> {
    let pods = env
        .rt()
        .wait_for(
            &Selector::Service(s.clone()),
            Duration::from_secs(20),
            |p| p.len() == n && p.iter().all(|p| p.phase == PodPhase::Running && p.ready),
        )
        .await
        .unwrap();
    assert!(
        pods.len() == n && pods.iter().all(|p| p.phase == PodPhase::Running && p.ready),
        "expected {n} running pods of {s}: {pods:#?}"
    );
    pods
}

fn pod_ref(p: &PodStatus) -> PodRef {
    PodRef {
        service: p.service.clone(),
        name: p.name.clone(),
    }
}

struct Output {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a command in a pod and collects everything.
async fn run(rt: &LocalRuntime, pod: &PodRef, mut req: ExecRequest, input: &[u8]) -> Output {
    if input.is_empty() && req.tty.is_none() {
        req.stdin = false;
    }
    let mut s = rt.exec(pod, req).await.unwrap();
    if let Some(stdin) = s.stdin.take() {
        let data = Bytes::copy_from_slice(input);
        tokio::spawn(async move {
            if !data.is_empty() {
                stdin.write(data).await.unwrap();
            }
            stdin.close();
        });
    }
    let mut stderr_rx = s.stderr.take();
    let err_task = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(rx) = stderr_rx.as_mut() {
            while let Some(b) = rx.recv().await {
                v.extend_from_slice(&b);
            }
        }
        v
    });
    let mut stdout = Vec::new();
    while let Some(b) = s.stdout.recv().await {
        stdout.extend_from_slice(&b);
    }
    let status = s.exit.await.unwrap();
    Output {
        code: status.code,
        stdout,
        stderr: err_task.await.unwrap(),
    }
}

async fn run_sh(rt: &LocalRuntime, pod: &PodRef, script: &str) -> Output {
    run(rt, pod, ExecRequest::new(["/bin/sh", "-c", script]), b"").await
}

#[tokio::test]
async fn isolation_is_reported() {
    let env = Env::new(|_| {}).await;
    let iso = env.rt().isolation().clone();
    eprintln!("isolation: {iso}");
    if is_root() {
        assert!(
            matches!(iso, Isolation::NamespacesAndCgroup { .. }),
            "root should get namespaces and cgroups: {iso}"
        );
    } else {
        eprintln!("SKIPPED namespace part of isolation_is_reported: not root");
        assert!(matches!(iso, Isolation::None { .. }), "{iso}");
        assert!(iso.to_string().starts_with("none: namespaces unavailable"));
    }
    env.finish().await;
}

#[tokio::test]
async fn a_pod_sees_only_itself() {
    require_root!();
    let base = test_base();
    let data = base.join("data");
    let open = base.join("open");
    for d in [&data, &open] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for d in [&data, &open] {
        std::fs::write(d.join("canary"), "host-secret\n").unwrap();
        std::fs::set_permissions(d.join("canary"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let unseal_key = base.join("dev-unseal.key");
    std::fs::write(&unseal_key, "key\n").unwrap();
    std::fs::set_permissions(&unseal_key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let env = Env::new_in(base, |c| {
        c.masked_paths = vec![data.clone(), unseal_key.clone()]
    })
    .await;
    let (a, b) = (svc("alpha"), svc("beta"));
    env.rt().apply(&a, &sh("exec sleep 1001")).await.unwrap();
    env.rt().apply(&b, &sh("exec sleep 1002")).await.unwrap();
    let pa = pod_ref(&running(&env, &a, 1).await[0]);
    let pb = pod_ref(&running(&env, &b, 1).await[0]);

    // ps: only the pod's own processes; PID 1 is the init.
    let ps = run(
        env.rt(),
        &pa,
        ExecRequest::new(["ps", "-e", "-o", "pid=,args="]),
        b"",
    )
    .await;
    assert_eq!(ps.code, 0, "{}", String::from_utf8_lossy(&ps.stderr));
    let text = ps.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(text.contains("sleep 1001"), "{text}");
    assert!(
        !text.contains("sleep 1002"),
        "another pod is visible: {text}"
    );
    assert!(lines.len() <= 4, "unexpected processes: {text}");
    assert!(lines[0].trim_start().starts_with("1 "), "{text}");

    // The hostname is the pod's name.
    let host = run_sh(env.rt(), &pa, "hostname").await;
    assert_eq!(host.text().trim(), pa.name.as_str());

    // /tmp is private (and writable); the other pod does not see it.
    let host_tmp_marker = PathBuf::from("/tmp").join(unique("warden-host-marker"));
    std::fs::write(&host_tmp_marker, "x").unwrap();
    let marker_name = host_tmp_marker.file_name().unwrap().to_str().unwrap();
    let tmp = run_sh(
        env.rt(),
        &pa,
        &format!("ls -A /tmp; echo pod > /tmp/only-a; test ! -e /tmp/{marker_name}"),
    )
    .await;
    std::fs::remove_file(&host_tmp_marker).unwrap();
    assert_eq!(
        tmp.code,
        0,
        "host /tmp visible or /tmp not writable: {}",
        tmp.text()
    );
    let other = run_sh(env.rt(), &pb, "test ! -e /tmp/only-a").await;
    assert_eq!(other.code, 0, "/tmp shared between pods");
    assert!(
        !Path::new("/tmp/only-a").exists(),
        "pod /tmp leaked to the host"
    );

    // Masked host paths are empty; the same file next door is readable, so
    // it is the mask (not file permissions) that hides it.
    let masked = run_sh(
        env.rt(),
        &pa,
        &format!(
            "ls -A {d}; cat {d}/canary; echo; cat {k}; echo ---; cat {o}/canary",
            d = data.display(),
            k = unseal_key.display(),
            o = open.display()
        ),
    )
    .await;
    let out = masked.text();
    let (before, after) = out.split_once("---").unwrap();
    assert!(
        !before.contains("host-secret") && !before.contains("canary") && !before.contains("key"),
        "{out}"
    );
    assert!(
        after.contains("host-secret"),
        "control file unreadable: {out}"
    );
    // The runtime's own state directory is masked too.
    let state = run_sh(
        env.rt(),
        &pa,
        &format!("ls -A {}", env.cfg.state_dir.display()),
    )
    .await;
    assert_eq!(state.text().trim(), "", "state dir visible");

    // The host tree is read-only, even where permissions would allow.
    let ro = run_sh(
        env.rt(),
        &pa,
        &format!(
            "touch {}/x 2>&1; touch /var/tmp/x-{} 2>&1",
            open.display(),
            std::process::id()
        ),
    )
    .await;
    assert_ne!(ro.code, 0);

    // The credential: a 0400 file owned by the pod's user, on tmpfs.
    let cred = run_sh(
        env.rt(),
        &pa,
        "cat \"$WARDEN_CREDENTIAL_FILE\"; echo; stat -c '%a %u' \"$WARDEN_CREDENTIAL_FILE\"; id -u; grep -E '^Cap(Eff|Prm|Bnd|Amb)|NoNewPrivs' /proc/self/status",
    )
    .await;
    let text = cred.text();
    assert!(
        text.starts_with(&format!("cred:{a}:{}\n", pa.name)),
        "{text}"
    );
    assert!(text.contains("400 65534\n65534\n"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("Cap")) {
        assert!(
            line.ends_with("0000000000000000"),
            "capability left: {line}"
        );
    }
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");

    env.finish().await;
}

#[tokio::test]
async fn memory_hog_is_oom_killed_and_restarted_with_backoff() {
    require_root!();
    let env = Env::new(|c| {
        c.backoff_initial = Duration::from_millis(200);
        c.backoff_max = Duration::from_secs(5);
    })
    .await;
    let s = svc("hog");
    let spec = sh("head -c 500M /dev/zero | tail")
        .with_memory(64 << 20)
        .unwrap();
    env.rt().apply(&s, &spec).await.unwrap();
    // Every status change is seen by the predicate; each observation of a
    // running pod gives (restart count, its start, the previous run's end).
    let runs = std::sync::Mutex::new(Vec::<(u32, u64, u64)>::new());
    let last = env
        .rt()
        .wait_for(
            &Selector::Service(s.clone()),
            Duration::from_secs(60),
            |pods| {
                let Some(p) = pods.first() else { return false };
                if let (true, Some(started), Some(prev)) =
                    (p.ready, p.started_at_ms, p.last_exit.as_ref())
                {
                    let mut r = runs.lock().unwrap();
                    if r.last().map(|x| x.0) != Some(p.restarts) {
                        r.push((p.restarts, started, prev.finished_at_ms));
                    }
                }
                p.restarts >= 4 && !p.ready
            },
        )
        .await
        .unwrap();
    let e = last[0].last_exit.as_ref().unwrap();
    assert_eq!(e.reason, ExitReason::OomKilled, "{last:#?}");
    // The shell reports its pipeline's status: tail was SIGKILLed (137).
    assert_eq!(e.status.code, 137, "{last:#?}");
    let runs = runs.into_inner().unwrap();
    eprintln!("runs (restart, started, previous exit): {runs:?}");
    assert!(runs.len() >= 2, "too few runs observed: {runs:?}");
    // Back-off: restart n waits 200 ms * 2^(n-1) after the previous exit.
    for &(n, started, prev_end) in &runs {
        let expected = 200u64 << (n - 1).min(4);
        let waited = started.saturating_sub(prev_end);
        assert!(
            waited + 20 >= expected,
            "restart {n} came {waited} ms after the previous exit, expected >= {expected}: {runs:?}"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn pids_limit_holds() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let s = svc("forky");
    env.rt()
        .apply(&s, &sh("exec sleep 1000").with_pids(16).unwrap())
        .await
        .unwrap();
    let pod = running(&env, &s, 1).await.remove(0);
    let dir = Path::new("/sys/fs/cgroup/pids")
        .join(&env.cfg.cgroup_parent)
        .join(pod.name.as_str());
    let max = std::fs::read_to_string(dir.join("pids.max")).unwrap();
    assert_eq!(max.trim(), "16");
    // Exec'd processes count against the pod's limit too: a shell that
    // tries to start 40 more hits it.
    let out = run_sh(
        env.rt(),
        &pod_ref(&pod),
        "for i in $(seq 1 40); do sleep 300 & done; echo started",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "no fork failure: {err}"
    );
    let current: u32 = std::fs::read_to_string(dir.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((10..=16).contains(&current), "pids.current = {current}");
    env.finish().await;
}

async fn exec_pod(env: &Env, name: &str) -> PodRef {
    let s = svc(name);
    env.rt().apply(&s, &sh("exec sleep 1000")).await.unwrap();
    pod_ref(&running(env, &s, 1).await[0])
}

#[tokio::test]
async fn exec_exit_codes_propagate_with_and_without_tty() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "codes").await;
    for tty in [None, Some(TermSize { cols: 80, rows: 24 })] {
        for (script, code) in [
            ("exit 0", 0),
            ("exit 1", 1),
            ("kill -9 $$", 137),
            ("exit 42", 42),
        ] {
            let mut req = ExecRequest::new(["/bin/sh", "-c", script]);
            req.tty = tty;
            let out = run(env.rt(), &pod, req, b"").await;
            assert_eq!(out.code, code, "{script} with tty {tty:?}");
        }
    }
    // A missing program is an error of the request, not an exit status.
    let err = env
        .rt()
        .exec(&pod, ExecRequest::new(["/no/such/program"]))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ExecFailed { .. }), "{err}");
    env.finish().await;
}

#[tokio::test]
async fn exec_stdin_half_close_ends_cat() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "cat").await;
    let out = run(env.rt(), &pod, ExecRequest::new(["cat"]), b"hello\nworld").await;
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, b"hello\nworld");
    // With a terminal, closing stdin sends EOF (^D) and cat ends too.
    let mut req = ExecRequest::new(["cat"]);
    req.tty = Some(TermSize { cols: 80, rows: 24 });
    let out = run(env.rt(), &pod, req, b"hello\n").await;
    assert_eq!(out.code, 0);
    assert!(out.text().contains("hello"), "{:?}", out.text());
    // Without stdin, the process reads EOF at once.
    let mut req = ExecRequest::new(["cat"]);
    req.stdin = false;
    let out = run(env.rt(), &pod, req, b"").await;
    assert_eq!((out.code, out.stdout.len()), (0, 0));
    env.finish().await;
}

#[tokio::test]
async fn exec_streams_64_mib_intact() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "bulk").await;
    let mut data = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let want = ring::digest::digest(&ring::digest::SHA256, &data);
    let started = Instant::now();
    let out = run(env.rt(), &pod, ExecRequest::new(["cat"]), &data).await;
    eprintln!("64 MiB round trip through exec: {:?}", started.elapsed());
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.len(), data.len());
    let got = ring::digest::digest(&ring::digest::SHA256, &out.stdout);
    assert_eq!(got.as_ref(), want.as_ref(), "sha256 differs");
    // And generated in the pod: a tail written just before exit arrives.
    let out = run_sh(env.rt(), &pod, "head -c 67108864 /dev/zero; printf END").await;
    assert_eq!(out.stdout.len(), (64 << 20) + 3);
    assert!(out.stdout.ends_with(b"END"));
    env.finish().await;
}

#[tokio::test]
async fn exec_resize_changes_stty_size() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "resize").await;
    let mut req = ExecRequest::new(["/bin/sh", "-c", "stty size; read x; stty size"]);
    req.tty = Some(TermSize { cols: 80, rows: 24 });
    let mut s = env.rt().exec(&pod, req).await.unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("24 80") {
        out.extend_from_slice(&s.stdout.recv().await.unwrap());
    }
    s.control.resize(132, 50).unwrap();
    s.stdin
        .as_ref()
        .unwrap()
        .write(Bytes::from_static(b"\n"))
        .await
        .unwrap();
    while let Some(b) = s.stdout.recv().await {
        out.extend_from_slice(&b);
    }
    let status = s.exit.await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status.code, 0);
    assert!(text.contains("50 132"), "{text:?}");
    // No terminal, no resize.
    let s = env
        .rt()
        .exec(&pod, ExecRequest::new(["true"]))
        .await
        .unwrap();
    assert!(s.control.resize(10, 10).is_err());
    assert_eq!(s.exit.await.unwrap().code, 0);
    env.finish().await;
}

#[tokio::test]
async fn exec_signals_reach_the_process() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "sig").await;
    for (sig, code) in [(Signal::TERM, 143), (Signal::KILL, 137)] {
        let mut s = env
            .rt()
            .exec(
                &pod,
                ExecRequest::new(["/bin/sh", "-c", "echo up; exec sleep 100"]),
            )
            .await
            .unwrap();
        assert_eq!(&s.stdout.recv().await.unwrap()[..], b"up\n");
        s.control.signal(sig).unwrap();
        assert_eq!(s.exit.await.unwrap().code, code);
    }
    env.finish().await;
}

#[tokio::test]
async fn zombies_are_reaped_by_the_pods_init() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let s = svc("orphans");
    // Each subshell leaves an orphan that exits 0.2 s later; as orphans
    // they are the pod init's to reap.
    env.rt()
        .apply(
            &s,
            &sh("for i in 1 2 3 4 5; do (sleep 0.2 &); done; exec sleep 1000"),
        )
        .await
        .unwrap();
    let pod = pod_ref(&running(&env, &s, 1).await[0]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ps = run(
        env.rt(),
        &pod,
        ExecRequest::new(["ps", "-e", "-o", "stat=,args="]),
        b"",
    )
    .await;
    let text = ps.text();
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with('Z')),
        "zombies: {text}"
    );
    assert!(!text.contains("sleep 0.2"), "{text}");
    env.finish().await;
}

#[tokio::test]
async fn sigterm_to_the_pod_is_forwarded_and_the_exit_code_kept() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let s = svc("trap");
    let spec = sh("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done")
        .with_restart(RestartPolicy::Never);
    env.rt().apply(&s, &spec).await.unwrap();
    let pod = pod_ref(&running(&env, &s, 1).await[0]);
    // Wait until the trap is set (the workload says so).
    let mut logs = env
        .rt()
        .logs(
            &pod,
            LogOptions {
                follow: true,
                tail_lines: None,
            },
        )
        .await
        .unwrap();
    while let Some(c) = logs.next().await {
        if String::from_utf8_lossy(&c.unwrap().data).contains("ready") {
            break;
        }
    }
    // Signal the pod's init from the host, as `kill` would.
    let init = env.rt().init_pid(&pod).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let pods = env
        .rt()
        .wait_for(
            &Selector::Service(s.clone()),
            Duration::from_secs(10),
            |p| p.first().is_some_and(|p| p.phase == PodPhase::Failed),
        )
        .await
        .unwrap();
    let e = pods[0].last_exit.as_ref().unwrap();
    assert_eq!(
        (e.status.code, e.status.signal, e.reason),
        (42, None, ExitReason::Error),
        "{pods:#?}"
    );
    assert_eq!(pods[0].restarts, 0);
    env.finish().await;
}

#[tokio::test]
async fn restart_policies() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let (never, onfail, ok) = (svc("never"), svc("onfail"), svc("ok"));
    env.rt()
        .apply(&never, &sh("exit 3").with_restart(RestartPolicy::Never))
        .await
        .unwrap();
    env.rt()
        .apply(
            &onfail,
            &sh("exit 0").with_restart(RestartPolicy::OnFailure),
        )
        .await
        .unwrap();
    env.rt()
        .apply(&ok, &sh("exit 5").with_restart(RestartPolicy::OnFailure))
        .await
        .unwrap();
    let done = |want: PodPhase| move |p: &[PodStatus]| p.first().is_some_and(|p| p.phase == want);
    let sel = |s: &ServiceRef| Selector::Service(s.clone());
    let p = env
        .rt()
        .wait_for(
            &sel(&never),
            Duration::from_secs(10),
            done(PodPhase::Failed),
        )
        .await
        .unwrap();
    assert_eq!(
        (p[0].restarts, p[0].last_exit.as_ref().unwrap().status.code),
        (0, 3)
    );
    let p = env
        .rt()
        .wait_for(
            &sel(&onfail),
            Duration::from_secs(10),
            done(PodPhase::Succeeded),
        )
        .await
        .unwrap();
    assert_eq!(
        p[0].last_exit.as_ref().unwrap().reason,
        ExitReason::Completed
    );
    let p = env
        .rt()
        .wait_for(&sel(&ok), Duration::from_secs(10), |p| {
            p.first().is_some_and(|p| p.restarts >= 2)
        })
        .await
        .unwrap();
    assert_eq!(p[0].last_exit.as_ref().unwrap().status.code, 5);
    // A terminal pod is not replaced by reconciliation.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.rt().pods(&sel(&never)).await.unwrap().len(), 1);
    env.finish().await;
}

#[tokio::test]
async fn logs_follow_and_stay_bounded() {
    require_root!();
    let env = Env::new(|c| c.log_buffer_bytes = 4096).await;
    let s = svc("talker");
    env.rt()
        .apply(
            &s,
            &sh("i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo err >&2; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.02; done"),
        )
        .await
        .unwrap();
    let pod = pod_ref(&running(&env, &s, 1).await[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Not following: what is kept, within the bound.
    let kept: Vec<_> = env
        .rt()
        .logs(&pod, LogOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    let bytes: usize = kept.iter().map(|c| c.as_ref().unwrap().data.len()).sum();
    assert!(bytes <= 4096 && bytes > 1000, "kept {bytes} bytes");
    let text: String = kept
        .iter()
        .map(|c| String::from_utf8_lossy(&c.as_ref().unwrap().data).into_owned())
        .collect();
    assert!(
        !text.contains("line 0\n"),
        "the ring did not drop old output"
    );
    assert!(
        kept.iter()
            .any(|c| c.as_ref().unwrap().stream == LogStreamKind::Stderr)
    );
    // Tail.
    let tail: Vec<_> = env
        .rt()
        .logs(
            &pod,
            LogOptions {
                follow: false,
                tail_lines: Some(3),
            },
        )
        .await
        .unwrap()
        .collect()
        .await;
    let text: String = tail
        .iter()
        .map(|c| String::from_utf8_lossy(&c.as_ref().unwrap().data).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 3, "{text:?}");
    // Following: new lines keep coming, in order, until the pod is gone.
    let mut follow = env
        .rt()
        .logs(
            &pod,
            LogOptions {
                follow: true,
                tail_lines: Some(0),
            },
        )
        .await
        .unwrap();
    let mut seen = String::new();
    while seen.matches("tick").count() < 10 {
        let c = follow.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&c.data));
    }
    let ticks: Vec<u64> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{seen}");
    env.rt().delete(&s).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(c) = follow.next().await {
            c.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the follow did not end when the pod went away");
    env.finish().await;
}

#[tokio::test]
async fn credential_refresh_replaces_the_file_atomically() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let s = svc("cred");
    env.rt()
        .apply(&s, &sh("exec sleep 1000").with_replicas(2).unwrap())
        .await
        .unwrap();
    let pods = running(&env, &s, 2).await;
    let pod = pod_ref(&pods[0]);
    let before = run_sh(
        env.rt(),
        &pod,
        "stat -c %i \"$WARDEN_CREDENTIAL_FILE\"; cat \"$WARDEN_CREDENTIAL_FILE\"",
    )
    .await;
    env.rt()
        .refresh_credential(
            &CredentialTarget::Pod(pod.clone()),
            Zeroizing::new(b"rotated-1".to_vec()),
        )
        .await
        .unwrap();
    let after = run_sh(env.rt(), &pod, "stat -c '%i %a %u' \"$WARDEN_CREDENTIAL_FILE\"; cat \"$WARDEN_CREDENTIAL_FILE\"; echo; ls -A /run/warden").await;
    let (b_ino, _) = before
        .text()
        .split_once('\n')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    let text = after.text();
    let mut lines = text.lines();
    let meta = lines.next().unwrap();
    assert!(
        !meta.starts_with(&format!("{b_ino} ")),
        "same inode: not replaced by rename"
    );
    assert!(meta.ends_with(" 400 65534"), "{meta}");
    assert_eq!(lines.next(), Some("rotated-1"));
    assert_eq!(
        lines.next(),
        Some("credential"),
        "temporary files left: {text}"
    );
    // A whole service at once.
    env.rt()
        .refresh_credential(
            &CredentialTarget::Service(s.clone()),
            Zeroizing::new(b"rotated-2".to_vec()),
        )
        .await
        .unwrap();
    for p in &pods {
        let out = run_sh(env.rt(), &pod_ref(p), "cat \"$WARDEN_CREDENTIAL_FILE\"").await;
        assert_eq!(out.text(), "rotated-2");
    }
    // Too large is refused.
    let err = env
        .rt()
        .refresh_credential(
            &CredentialTarget::Pod(pod.clone()),
            Zeroizing::new(vec![0; 65 * 1024]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidRequest(_)), "{err}");
    // The credential is on no command line and in no environment.
    let out = run_sh(env.rt(), &pod, "cat /proc/*/cmdline /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c 'rot[a]ted' || true").await;
    assert_eq!(out.text().trim(), "0");
    env.finish().await;
}

#[tokio::test]
async fn scale_stop_start_restart_delete() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let s = svc("web");
    let spec = sh("exec sleep 1000").with_replicas(2).unwrap();
    env.rt().apply(&s, &spec).await.unwrap();
    let first = running(&env, &s, 2).await;
    // Idempotent.
    env.rt().apply(&s, &spec).await.unwrap();
    let again = running(&env, &s, 2).await;
    assert_eq!(names(&first), names(&again));
    // A pod whose shim dies is replaced by reconciliation.
    let victim = &first[0];
    let shim_pid: i32 = std::fs::read_to_string(
        env.cfg
            .state_dir
            .join("pods")
            .join(victim.name.as_str())
            .join("shim.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shim_pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let healed = env
        .rt()
        .wait_for(
            &Selector::Service(s.clone()),
            Duration::from_secs(20),
            |p| {
                p.len() == 2
                    && p.iter().all(|p| p.ready)
                    && !p.iter().any(|p| p.name == victim.name)
            },
        )
        .await
        .unwrap();
    assert_eq!(healed.len(), 2, "{healed:#?}");
    // Scale.
    env.rt()
        .apply(&s, &spec.clone().with_replicas(3).unwrap())
        .await
        .unwrap();
    running(&env, &s, 3).await;
    env.rt().apply(&s, &spec).await.unwrap();
    let two = running(&env, &s, 2).await;
    // Rolling restart: all new pods, never fewer than two running.
    let sel = Selector::Service(s.clone());
    let rt2 = env.rt();
    let watch = async {
        let mut min_ready = usize::MAX;
        loop {
            let pods = rt2.pods(&sel).await.unwrap();
            min_ready = min_ready.min(
                pods.iter()
                    .filter(|p| p.ready && p.phase == PodPhase::Running)
                    .count(),
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
            if min_ready == 0 {
                return min_ready;
            }
        }
    };
    let restart = env.rt().restart(&s);
    let min_ready = tokio::select! {
        r = restart => { r.unwrap(); None }
        m = watch => Some(m),
    };
    assert_eq!(min_ready, None, "a rolling restart left no pod running");
    let after = running(&env, &s, 2).await;
    assert!(
        names(&after).is_disjoint(&names(&two)),
        "restart kept old pods"
    );
    // A template change rolls too.
    env.rt()
        .apply(&s, &sh("exec sleep 999").with_replicas(2).unwrap())
        .await
        .unwrap();
    let rolled = running(&env, &s, 2).await;
    assert!(names(&rolled).is_disjoint(&names(&after)));
    assert!(
        rolled.iter().all(|p| p.template == rolled[0].template)
            && rolled[0].template != after[0].template
    );
    // Stop keeps the spec; start brings the pods back.
    env.rt().stop(&s).await.unwrap();
    assert!(env.rt().pods(&sel).await.unwrap().is_empty());
    env.rt().start(&s).await.unwrap();
    running(&env, &s, 2).await;
    // Delete forgets the service.
    env.rt().delete(&s).await.unwrap();
    assert!(env.rt().pods(&sel).await.unwrap().is_empty());
    assert!(matches!(
        env.rt().start(&s).await,
        Err(RuntimeError::ServiceNotFound(_))
    ));
    env.finish().await;
}

/// A replacement counts as started once its workload has stayed up for
/// `min_ready_seconds`: one that exits sooner (here after 0.3 s, on a
/// configuration it cannot run with) stalls the rolling restart and is
/// removed; the pods not replaced yet keep running, and the count holds.
#[tokio::test]
async fn a_restart_whose_new_pod_does_not_stay_up_stalls_and_keeps_the_old_pods() {
    require_root!();
    let env = Env::new(|c| c.rollout_timeout = Duration::from_secs(3)).await;
    let s = svc("minready");
    let broken = env.base.join("broken");
    let spec = WorkloadSpec::from_yaml(&format!(
        "command: [/bin/sh, -c, 'sleep 0.3; [ -e {} ] && exit 1; exec sleep 999']\n\
         replicas: 2\nmin_ready_seconds: 1\n",
        broken.display()
    ))
    .unwrap();
    env.rt().apply(&s, &spec).await.unwrap();
    let before = running(&env, &s, 2).await;
    // Past their check: these pods run on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&broken, b"").unwrap();
    let e = env.rt().restart(&s).await.unwrap_err();
    assert!(matches!(e, RuntimeError::RolloutStalled { .. }), "{e}");
    let after = env.rt().pods(&Selector::Service(s.clone())).await.unwrap();
    assert_eq!(names(&after), names(&before), "{after:#?}");
    assert!(after.iter().all(|p| p.ready), "{after:#?}");
    // Fixed: the restart goes through, each new pod up for a second.
    std::fs::remove_file(&broken).unwrap();
    let began = std::time::Instant::now();
    env.rt().restart(&s).await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    let rolled = running(&env, &s, 2).await;
    assert!(names(&rolled).is_disjoint(&names(&before)));
    env.finish().await;
}

#[tokio::test]
async fn bad_requests_are_refused() {
    require_root!();
    let env = Env::new(|_| {}).await;
    let pod = exec_pod(&env, "bad").await;
    // Oversized argv, a non-allowlisted variable, a pod of another service.
    let big = ExecRequest::new(vec!["x".repeat(1024); 300]);
    assert!(matches!(
        env.rt().exec(&pod, big).await,
        Err(RuntimeError::InvalidRequest(_))
    ));
    let mut req = ExecRequest::new(["true"]);
    req.env.push(("LD_PRELOAD".into(), "/tmp/x.so".into()));
    assert!(matches!(
        env.rt().exec(&pod, req).await,
        Err(RuntimeError::InvalidRequest(_))
    ));
    let elsewhere = PodRef {
        service: svc("other"),
        name: pod.name.clone(),
    };
    assert!(matches!(
        env.rt().exec(&elsewhere, ExecRequest::new(["true"])).await,
        Err(RuntimeError::PodNotFound(_))
    ));
    // Root pods are refused unless allowed.
    let err = env
        .rt()
        .apply(&svc("rooty"), &sh("true").with_run_as(0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unsupported(_)), "{err}");
    // A malformed spec names field and line.
    let err =
        WorkloadSpec::from_yaml("command: [sleep, '1']\nresources:\n  cpu: lots\n").unwrap_err();
    assert!(
        err.to_string().contains("line 3") && err.to_string().contains("resources.cpu"),
        "{err}"
    );
    env.finish().await;
}

#[tokio::test]
async fn root_pods_keep_no_capabilities_and_cannot_write_the_host() {
    require_root!();
    let env = Env::new(|c| c.allow_root_pods = true).await;
    let s = svc("rootpod");
    env.rt()
        .apply(&s, &sh("exec sleep 1000").with_run_as(0, 0))
        .await
        .unwrap();
    let pod = pod_ref(&running(&env, &s, 1).await[0]);
    let out = run_sh(
        env.rt(),
        &pod,
        &format!(
            "id -u; grep -E '^Cap(Eff|Prm|Inh|Bnd|Amb)|NoNewPrivs' /proc/self/status; \
             touch {}/x && echo WROTE-HOST; echo 1 > /proc/sys/kernel/hostname && echo WROTE-SYSCTL; \
             ls /dev; hostname other && echo RENAMED",
            env.base.display()
        ),
    )
    .await;
    let text = out.text();
    assert!(text.starts_with("0\n"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("Cap")) {
        assert!(
            line.ends_with("0000000000000000"),
            "capability left: {line}"
        );
    }
    assert!(
        !text.contains("WROTE-HOST") && !text.contains("WROTE-SYSCTL") && !text.contains("RENAMED"),
        "{text}"
    );
    assert!(
        !text.contains("sda") && !text.contains("vda") && !text.contains("mem\n"),
        "host devices visible: {text}"
    );
    env.finish().await;
}

#[tokio::test]
async fn without_namespaces_pods_run_and_say_so() {
    let env = Env::new(|c| {
        c.namespaces = NamespaceMode::Off;
        c.default_run_as = None;
    })
    .await;
    let iso = env.rt().isolation().clone();
    assert_eq!(
        iso.to_string(),
        "none: namespaces unavailable: disabled by configuration"
    );
    let s = svc("plain");
    env.rt().apply(&s, &sh("exec sleep 1000")).await.unwrap();
    let pods = running(&env, &s, 1).await;
    assert_eq!(pods[0].isolation, iso);
    let pod = pod_ref(&pods[0]);
    let out = run_sh(env.rt(), &pod, "cat \"$WARDEN_CREDENTIAL_FILE\"; echo; echo $WARDEN_CREDENTIAL_FILE; stat -f -c %T \"$WARDEN_CREDENTIAL_FILE\"").await;
    let text = out.text();
    assert!(
        text.starts_with(&format!("cred:{s}:{}\n", pod.name)),
        "{text}"
    );
    assert!(text.contains("/dev/shm/"), "{text}");
    assert!(text.contains("tmpfs"), "{text}");
    let cred_path = text.lines().nth(1).unwrap().to_owned();
    let out = run(
        env.rt(),
        &pod,
        ExecRequest::new(["/bin/sh", "-c", "exit 7"]),
        b"",
    )
    .await;
    assert_eq!(out.code, 7);
    env.finish().await;
    assert!(!Path::new(&cred_path).exists(), "credential left behind");

    // As root, without namespaces, pods still run as nobody by default and
    // can read their own credential. (Pods of the same uid can read each
    // other's: without namespaces there is no isolation between them, which
    // is what "none" says.)
    if !is_root() {
        return;
    }
    let env = Env::new(|c| c.namespaces = NamespaceMode::Off).await;
    let s = svc("plain-nobody");
    env.rt()
        .apply(&s, &sh("exec sleep 1000").with_replicas(2).unwrap())
        .await
        .unwrap();
    let pods = running(&env, &s, 2).await;
    let (a, b) = (pod_ref(&pods[0]), pod_ref(&pods[1]));
    let other = run_sh(env.rt(), &b, "echo $WARDEN_CREDENTIAL_FILE")
        .await
        .text();
    let out = run_sh(
        env.rt(),
        &a,
        "id -u; cat \"$WARDEN_CREDENTIAL_FILE\"; echo; ls -A /dev/shm/warden-0 || echo UNLISTABLE",
    )
    .await;
    let text = out.text();
    assert!(
        text.starts_with(&format!("65534\ncred:{s}:{}\n", a.name)),
        "{text}"
    );
    assert!(
        text.ends_with("UNLISTABLE\n"),
        "the credential root is listable: {text}"
    );
    assert!(other.contains(b.name.as_str()), "{other}");
    env.finish().await;
}

const CHILD_STATE: &str = "WARDEN_RT_TEST_CHILD_STATE";
const CHILD_CGROUP: &str = "WARDEN_RT_TEST_CHILD_CGROUP";

/// Not a test by itself: the agent that `a_restarted_agent_adopts_its_pods`
/// runs in a child process and then SIGKILLs. Returns at once otherwise.
#[tokio::test]
async fn adoption_child_agent() {
    let (Ok(state), Ok(cgroup)) = (std::env::var(CHILD_STATE), std::env::var(CHILD_CGROUP)) else {
        return;
    };
    let mut cfg = LocalConfig::new(state, helper());
    cfg.cgroup_parent = cgroup;
    cfg.reconcile_interval = Duration::from_millis(300);
    let rt = LocalRuntime::start(cfg, credentials()).await.unwrap();
    let s = svc("sticky");
    rt.apply(&s, &sh("exec sleep 1000").with_replicas(2).unwrap())
        .await
        .unwrap();
    let pods = rt
        .wait_for(
            &Selector::Service(s.clone()),
            Duration::from_secs(20),
            |p| p.len() == 2 && p.iter().all(|p| p.ready),
        )
        .await
        .unwrap();
    let list: Vec<String> = pods
        .iter()
        .map(|p| format!("{}={}", p.name, rt.init_pid(&pod_ref(p)).unwrap()))
        .collect();
    println!("READY {}", list.join(" "));
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_pods() {
    require_root!();
    use tokio::io::AsyncBufReadExt;
    let base = test_base();
    let cgroup = format!("warden-test/{}", unique("adopt"));
    // The first agent, in a child process.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "adoption_child_agent",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STATE, base.join("state"))
        .env(CHILD_CGROUP, &cgroup)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            // libtest may print "test NAME ... " on the same line.
            if let Some((_, rest)) = l.split_once("READY ") {
                return rest.to_owned();
            }
        }
        panic!("the child agent ended early");
    })
    .await
    .unwrap();
    let before: BTreeSet<(String, i32)> = ready
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(before.len(), 2);
    // The agent dies hard; its pods keep running.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, pid) in &before {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "pod init {pid} died with the agent"
        );
    }
    // A new agent over the same state directory adopts them: same pods,
    // same processes, not restarted, not duplicated.
    let env = Env::new_in(base, |c| c.cgroup_parent = cgroup.clone()).await;
    let s = svc("sticky");
    let pods = running(&env, &s, 2).await;
    let after: BTreeSet<(String, i32)> = pods
        .iter()
        .map(|p| (p.name.to_string(), env.rt().init_pid(&pod_ref(p)).unwrap()))
        .collect();
    assert_eq!(before, after);
    assert!(pods.iter().all(|p| p.restarts == 0));
    // Reconciliation runs several times; still exactly the two.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pods = env.rt().pods(&Selector::Service(s.clone())).await.unwrap();
    assert_eq!(pods.len(), 2, "{pods:#?}");
    // The adopted service is still managed: exec, scale, reconcile.
    let out = run_sh(env.rt(), &pod_ref(&pods[0]), "echo adopted").await;
    assert_eq!(out.text(), "adopted\n");
    env.rt()
        .apply(&s, &sh("exec sleep 1000").with_replicas(3).unwrap())
        .await
        .unwrap();
    let three = running(&env, &s, 3).await;
    let names: BTreeSet<String> = three.iter().map(|p| p.name.to_string()).collect();
    assert!(
        before.iter().all(|(n, _)| names.contains(n)),
        "adopted pods were replaced"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_pod_whose_shim_died_unwatched_is_cleaned_up_and_replaced() {
    require_root!();
    let mut env = Env::new(|_| {}).await;
    let s = svc("orphan");
    env.rt().apply(&s, &sh("exec sleep 1000")).await.unwrap();
    let old = running(&env, &s, 1).await.remove(0);
    let pod_dir = env.cfg.state_dir.join("pods").join(old.name.as_str());
    let cgroup = Path::new("/sys/fs/cgroup/memory")
        .join(&env.cfg.cgroup_parent)
        .join(old.name.as_str());
    assert!(pod_dir.exists() && cgroup.exists());
    let shim: i32 = std::fs::read_to_string(pod_dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // No agent runs while the shim dies.
    env.restart_runtime(|| {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(shim).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    })
    .await;
    assert!(!pod_dir.exists(), "dead pod's directory left");
    assert!(!cgroup.exists(), "dead pod's cgroup left");
    let new = running(&env, &s, 1).await.remove(0);
    assert_ne!(new.name, old.name);
    env.finish().await;
}

#[tokio::test]
async fn a_second_runtime_on_the_same_state_is_refused() {
    let env = Env::new(|c| c.namespaces = NamespaceMode::Off).await;
    let err = LocalRuntime::start(env.cfg.clone(), credentials())
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::StateLocked(_)), "{err}");
    env.finish().await;
}
