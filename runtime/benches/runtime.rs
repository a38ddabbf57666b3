//! Local runtime benchmark: pod start (apply → Running) and exec setup,
//! each against spawning the same command directly in the same run.
//!
//! `cargo bench -p warden-runtime --bench runtime` (as root for the
//! namespaced figures; as another user it measures the no-namespace mode and
//! says so). Options after `--`: `--pods N` (default 50), `--execs N`
//! (default 200).
//!
//! Issue targets: pod start p50 ≤ 20 ms; exec setup p50 ≤ 5 ms above a
//! direct spawn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_runtime::{
    ExecRequest, FnCredentialSource, HelperCommand, LocalConfig, LocalRuntime, PodPhase, PodRef,
    Runtime, RuntimeError, Selector, ServiceRef, WorkloadSpec,
};
use zeroize::Zeroizing;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
    println!(
        "{name:<44} n={:<4} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        v.len(),
        ms(p50),
        ms(p99),
        ms(*v.last().unwrap())
    );
    (p50, p99)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cpus ({cpu}), kernel {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pods = arg("--pods", 50);
    let execs = arg("--execs", 200);
    let base = PathBuf::from("/var/tmp").join(format!("warden-rt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let mut cfg = LocalConfig::new(
        base.join("state"),
        HelperCommand {
            program: PathBuf::from(env!("CARGO_BIN_EXE_warden-runtime-helper")),
            args: Vec::new(),
        },
    );
    cfg.cgroup_parent = format!("warden-bench/{}", std::process::id());
    cfg.stop_grace = Duration::from_secs(1);
    let creds = Arc::new(FnCredentialSource(|_s: ServiceRef, _p| {
        futures::future::ready(Ok::<_, RuntimeError>(Zeroizing::new(b"bench".to_vec())))
    }));
    let rt = LocalRuntime::start(cfg, creds).await.unwrap();
    println!("warden-runtime local benchmark");
    println!("machine:   {}", machine());
    println!("isolation: {}", rt.isolation());
    println!(
        "build:     {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!();

    // Baseline: spawning the workload directly and seeing it run.
    let mut direct = Vec::new();
    for _ in 0..pods {
        let t = Instant::now();
        let mut c = tokio::process::Command::new("sleep")
            .arg("1000")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // "Running" for a direct spawn: the process exists (spawn returned).
        direct.push(t.elapsed());
        c.kill().await.unwrap();
    }

    // Pod start: apply (one replica) until the pod reports Running.
    let mut start = Vec::new();
    let mut services = Vec::new();
    for i in 0..pods {
        let s = ServiceRef::parse(&format!("bench/rt/local/s{i}")).unwrap();
        let spec = WorkloadSpec::new(["sleep", "1000"]).unwrap();
        let t = Instant::now();
        rt.apply(&s, &spec).await.unwrap();
        let p = rt
            .wait_for(
                &Selector::Service(s.clone()),
                Duration::from_secs(30),
                |p| {
                    p.first()
                        .is_some_and(|p| p.phase == PodPhase::Running && p.ready)
                },
            )
            .await
            .unwrap();
        start.push(t.elapsed());
        assert!(p[0].ready, "pod did not start: {p:?}");
        services.push((s, p[0].name.clone()));
    }

    // Exec setup: exec(`true`) to its exit status, against spawning `true`.
    let (s, name) = services[0].clone();
    let pod = PodRef { service: s, name };
    let mut exec_direct = Vec::new();
    let mut exec_pod = Vec::new();
    for _ in 0..execs {
        let t = Instant::now();
        let st = tokio::process::Command::new("true").status().await.unwrap();
        exec_direct.push(t.elapsed());
        assert!(st.success());
        let t = Instant::now();
        let mut req = ExecRequest::new(["true"]);
        req.stdin = false;
        let mut sess = rt.exec(&pod, req).await.unwrap();
        while sess.stdout.recv().await.is_some() {}
        let st = sess.exit.await.unwrap();
        exec_pod.push(t.elapsed());
        assert_eq!(st.code, 0);
    }

    println!("pod start ({pods} pods, one at a time)");
    let (d50, _) = report("  direct spawn of `sleep 1000`", &mut direct);
    let (p50, p99) = report("  apply -> Running", &mut start);
    println!(
        "  ratio p50 {:.1}x direct; target p50 <= 20 ms: {}",
        ms(p50) / ms(d50).max(1e-6),
        if ms(p50) <= 20.0 { "met" } else { "NOT met" }
    );
    let _ = p99;
    println!();
    println!("exec setup ({execs} runs of `true`, to exit status)");
    let (e50, _) = report("  direct spawn + wait", &mut exec_direct);
    let (x50, _) = report("  Runtime::exec + wait", &mut exec_pod);
    println!(
        "  p50 overhead {:.3} ms ({:.1}x direct); target <= 5 ms above direct: {}",
        ms(x50) - ms(e50),
        ms(x50) / ms(e50).max(1e-6),
        if ms(x50) - ms(e50) <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    for (s, _) in &services {
        rt.delete(s).await.unwrap();
    }
    drop(rt);
    let _ = std::fs::remove_dir_all(&base);
    for c in ["memory", "cpu", "pids"] {
        let d = PathBuf::from("/sys/fs/cgroup").join(c).join("warden-bench");
        let _ = std::fs::remove_dir(d.join(std::process::id().to_string()));
        let _ = std::fs::remove_dir(d);
    }
}
