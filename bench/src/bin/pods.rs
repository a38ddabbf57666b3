//! Pods harness: the local runtime driven through the agent link (mutual
//! TLS, HTTP/2, 127.0.0.1) as the control plane drives an agent, side by
//! side with spawning the same commands directly:
//!
//! 1. pod start: `apply` of a one-replica service until its pod is Running
//!    (polled every 0.2 ms), against `fork`+`exec` of the same command until
//!    it runs (`spawn` returning), p50 and p99;
//! 2. exec setup: `exec` of `/bin/true` in a running pod until its exit
//!    status is back, against spawning and waiting for `/bin/true`
//!    directly, p50 and p99 and the difference;
//! 3. many concurrent exec streams (`cat`, each echoing one line) over the
//!    one link, with this process's resident memory (hub and agent share
//!    the process: an upper bound for either; the exec helpers and the
//!    commands are separate processes and not counted).
//!
//! Needs root for namespaces and cgroups (without, pods run without them
//! and the figures say so in the isolation line).
//!
//! `cargo run --release -p warden-bench --bin pods -- [--starts N] [--execs N] [--streams N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use bytes::Bytes;
use clap::Parser;
use warden_agent::{Agent, AgentInfo, RemoteRuntime};
use warden_runtime::{
    ExecRequest, FnCredentialSource, HelperCommand, LocalConfig, LocalRuntime, PodPhase, PodRef,
    Runtime, Selector, ServiceRef, WorkloadSpec,
};
use zeroize::Zeroizing;

#[path = "../tls_link.rs"]
mod tls_link;

#[derive(Parser)]
#[command(about = "Pod start and exec setup through the agent link, against direct spawns")]
struct Args {
    /// Pods started (one at a time).
    #[arg(long, default_value_t = 100)]
    starts: usize,
    /// Execs of /bin/true (one at a time).
    #[arg(long, default_value_t = 200)]
    execs: usize,
    /// Concurrent exec streams held open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
}

fn main() -> Result<()> {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "__runtime") {
        warden_runtime::helper_main(args.collect());
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "  {name:<44} p50 {:>7.2} ms   p99 {:>7.2} ms   (n = {})",
        ms(p50),
        ms(p99),
        samples.len()
    );
    (p50, p99)
}

/// The pod of `service` once it is Running.
async fn running_pod(rt: &RemoteRuntime, service: &ServiceRef) -> Result<PodRef> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pods = rt.pods(&Selector::Service(service.clone())).await?;
        if let Some(p) = pods.iter().find(|p| p.phase == PodPhase::Running) {
            return Ok(PodRef {
                service: service.clone(),
                name: p.name.clone(),
            });
        }
        ensure!(Instant::now() < deadline, "{service}: no pod ran in 30 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn run(args: Args) -> Result<()> {
    let base = tempfile::Builder::new()
        .prefix("warden-bench-pods")
        .tempdir_in("/var/tmp")?;
    let helper = HelperCommand {
        program: std::env::current_exe()?,
        args: vec!["__runtime".into()],
    };
    let mut cfg = LocalConfig::new(base.path().join("state"), helper);
    cfg.cgroup_parent = format!("warden-bench/{}", std::process::id());
    cfg.stop_grace = Duration::from_secs(1);
    let credentials = Arc::new(FnCredentialSource(|_s: ServiceRef, _p| {
        futures::future::ready(Ok(Zeroizing::new(b"bench-credential".to_vec())))
    }));
    let local = LocalRuntime::start(cfg, credentials).await?;
    println!("isolation: {}", local.isolation());
    let agent = Agent::new(
        Arc::new(local),
        AgentInfo {
            runtime: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node: "bench".into(),
        },
        // Unused: this harness's pods take their credential from the
        // closure above.
        warden_agent::CredentialFeed::new(),
    );
    let hub = tls_link::link(tls_link::pki()?, move |h, s| agent.clone().handle(h, s)).await?;
    let rt = RemoteRuntime::new(hub, "bench");
    let spec = WorkloadSpec::new(["sleep", "1000"])?;
    let mut services = Vec::new();

    println!("pod start (apply -> Running), one at a time:");
    let mut direct = Vec::with_capacity(args.starts);
    let mut pods = Vec::with_capacity(args.starts);
    for i in 0..args.starts {
        let start = Instant::now();
        let mut child = std::process::Command::new("sleep").arg("1000").spawn()?;
        direct.push(start.elapsed());
        child.kill()?;
        child.wait()?;

        let service = ServiceRef::parse(&format!("bench/pods/start/s{i}"))?;
        let start = Instant::now();
        rt.apply(&service, &spec).await?;
        running_pod(&rt, &service).await?;
        pods.push(start.elapsed());
        services.push(service);
    }
    summary("direct spawn of `sleep 1000`", direct);
    let (pod_p50, pod_p99) = summary("pod through the link (apply -> Running)", pods);
    for s in services.drain(1..) {
        rt.delete(&s).await?;
    }

    println!("exec setup (`/bin/true` to its exit status), one at a time:");
    let pod = running_pod(&rt, &services[0]).await?;
    let mut direct = Vec::with_capacity(args.execs);
    let mut linked = Vec::with_capacity(args.execs);
    for _ in 0..args.execs {
        let start = Instant::now();
        let status = std::process::Command::new("/bin/true").status()?;
        direct.push(start.elapsed());
        ensure!(status.success(), "/bin/true failed");

        let mut req = ExecRequest::new(["/bin/true"]);
        req.stdin = false;
        let start = Instant::now();
        let session = rt.exec(&pod, req).await?;
        let status = session.exit.await?;
        linked.push(start.elapsed());
        ensure!(status.success(), "exec of /bin/true: {status:?}");
    }
    let (d50, _) = summary("direct spawn + wait of /bin/true", direct);
    let (l50, _) = summary("exec through the link into the pod", linked);
    println!(
        "  exec setup above direct spawn at p50: {:.2} ms",
        ms(l50.saturating_sub(d50))
    );

    println!("{} concurrent exec streams over one link:", args.streams);
    let rss_before = tls_link::rss_mib()?;
    let start = Instant::now();
    let mut sessions = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        sessions.push(rt.exec(&pod, ExecRequest::new(["cat"])).await?);
    }
    let opened = start.elapsed();
    let start = Instant::now();
    let rounds = sessions.iter_mut().enumerate().map(|(i, s)| async move {
        let line = Bytes::from(format!("stream {i}\n"));
        s.stdin
            .as_ref()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write(line.clone())
            .await?;
        let back = s
            .stdout
            .recv()
            .await
            .ok_or_else(|| anyhow!("stream {i} ended"))?;
        ensure!(back == line, "stream {i} echoed other bytes");
        Ok::<_, anyhow::Error>(())
    });
    futures::future::try_join_all(rounds).await?;
    let round_trip = start.elapsed();
    let rss_open = tls_link::rss_mib()?;
    for s in &mut sessions {
        drop(s.stdin.take());
    }
    let mut codes = 0;
    for s in sessions {
        codes += i32::from(!s.exit.await?.success());
    }
    ensure!(codes == 0, "{codes} cat processes failed");
    println!(
        "  opened one by one in {:.0} ms; one echo on all at once in {:.0} ms; RSS (hub and agent together) {rss_before:.1} MiB before, {rss_open:.1} MiB with all open",
        ms(opened),
        ms(round_trip),
    );
    println!(
        "summary: pod start p50 {:.2} ms p99 {:.2} ms; exec setup +{:.2} ms over direct at p50; {} streams RSS {rss_open:.1} MiB",
        ms(pod_p50),
        ms(pod_p99),
        ms(l50.saturating_sub(d50)),
        args.streams
    );
    rt.delete(&services[0]).await?;
    Ok(())
}
