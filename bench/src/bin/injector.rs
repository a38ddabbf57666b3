//! Injector harness: `warden-injector` against a `warden dev` server on
//! loopback (TLS), in one run:
//!
//! 1. start: `warden-injector exec ... -- /bin/true` with 100 secrets,
//!    from spawn to exit, side by side with spawning `/bin/true` directly
//!    (p50, p95; the difference is what the wrapper adds);
//! 2. size: the wrapper binary, as built and stripped;
//! 3. watch mode: the resident memory of a watching parent (`--watch`);
//! 4. rotation: N watching wrappers (`--watch --deliver none --template
//!    ... --on-change render`, each its own process and connection, started
//!    in batches), then R rotations of one secret with `warden secret set`;
//!    the latency of each wrapper is from just before the CLI is started to
//!    the rendered file's modification time (tmpfs; the kernel stamps it
//!    with its coarse clock, a few ms). p50, p99, max over N × R;
//! 5. the server's resident memory and CPU with no watch and with N idle
//!    watches (CPU over `--idle-seconds`).
//!
//! `cargo build --release -p warden-cli -p warden-bench && cargo build --profile injector -p warden-injector && target/release/injector [--watchers 1000] [--rotations 5] [--starts 200]`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use warden_bench::{Guard, free_port, run_ok};

#[derive(Parser)]
#[command(about = "warden-injector: start latency, size, memory and rotation fan-out")]
struct Args {
    /// Starts measured per side.
    #[arg(long, default_value_t = 200)]
    starts: usize,
    /// Secrets the service has.
    #[arg(long, default_value_t = 100)]
    secrets: usize,
    /// Watching wrappers for the rotation fan-out.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Rotations measured.
    #[arg(long, default_value_t = 5)]
    rotations: usize,
    /// Seconds the server's idle CPU is measured over.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
}

const SERVICE: &str = "acme/shop/dev/api";

struct Env {
    dir: tempfile::TempDir,
    warden: PathBuf,
    injector: PathBuf,
    url: String,
    ca: PathBuf,
    credential: PathBuf,
}

impl Env {
    fn warden(&self) -> Command {
        let mut cmd = Command::new(&self.warden);
        cmd.env("WARDEN_CONFIG", self.dir.path().join("client.toml"));
        cmd
    }

    /// `warden-injector exec` for the service, the command after `--`.
    fn injector(&self, flags: &[&str], cmd: &[&str]) -> Command {
        self.injector_with(&self.credential, flags, cmd)
    }

    /// The same with the credential in `credential`.
    fn injector_with(&self, credential: &Path, flags: &[&str], cmd: &[&str]) -> Command {
        let mut c = Command::new(&self.injector);
        c.args(["exec", "--service", SERVICE, "--server", &self.url, "--ca"])
            .arg(&self.ca)
            .arg("--credential-file")
            .arg(credential)
            .args(flags)
            .arg("--")
            .args(cmd)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null());
        c
    }
}

/// The binaries next to this one (the same profile's target directory).
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .ok_or_else(|| anyhow!("no directory"))?
        .join(name);
    ensure!(
        bin.exists(),
        "{} not found: cargo build --release -p warden-cli -p warden-injector",
        bin.display()
    );
    Ok(bin)
}

/// The wrapper as built for workloads (`--profile injector`, in the target
/// directory's `injector/`), else the one beside this binary.
fn injector_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profiled = exe
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("injector").join("warden-injector"));
    match profiled {
        Some(p) if p.is_file() => Ok(p),
        _ => sibling("warden-injector"),
    }
}

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let close = stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))?;
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3).
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn mtime_ns(p: &Path) -> Result<u128> {
    let m = std::fs::metadata(p)?.modified()?;
    Ok(m.duration_since(UNIX_EPOCH)?.as_nanos())
}

/// `warden dev` with the service and its secrets, and a workload
/// credential on tmpfs.
fn start(args: &Args) -> Result<(Guard, Env)> {
    let dir = tempfile::tempdir()?;
    let api = free_port()?;
    let mut env = Env {
        warden: sibling("warden")?,
        injector: injector_binary()?,
        url: format!("https://127.0.0.1:{api}"),
        ca: dir.path().join("data/tls/ca.pem"),
        credential: PathBuf::new(),
        dir,
    };
    let child = env
        .warden()
        .args(["dev", "--data-dir"])
        .arg(env.dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting warden dev")?;
    let guard = Guard(child);
    warden_bench::dev_with_service(|| env.warden(), SERVICE)?;
    let mut pairs: Vec<String> = (0..args.secrets.saturating_sub(1))
        .map(|i| format!("SECRET_{i:03}=value-{i:03}-{}", "x".repeat(40)))
        .collect();
    pairs.push("ROTATING=initial".to_owned());
    run_ok(env.warden().args(["secret", "set", SERVICE]).args(&pairs))?;
    let shm = tempfile::Builder::new()
        .prefix("warden-bench-injector-")
        .tempdir_in("/dev/shm")?;
    env.credential = shm.path().join("credential");
    std::fs::write(&env.credential, workload_token(&env)?)?;
    // Kept for the run's length (removed with the data directory).
    let shm = shm.keep();
    std::fs::write(env.dir.path().join("shm"), shm.to_string_lossy().as_bytes())?;
    Ok((guard, env))
}

/// A new workload token for the service (each pod has its own; the server
/// holds at most four watches per credential).
fn workload_token(env: &Env) -> Result<String> {
    let out = run_ok(env.warden().args([
        "--output", "json", "token", "workload", SERVICE, "--ttl", "1h",
    ]))?;
    let token: serde_json::Value = serde_json::from_str(&out)?;
    Ok(token["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in {out}"))?
        .to_owned())
}

fn shm_dir(env: &Env) -> Result<PathBuf> {
    Ok(PathBuf::from(std::fs::read_to_string(
        env.dir.path().join("shm"),
    )?))
}

/// Spawn-to-exit times of `cmd`, in ms.
fn time_runs(n: usize, mut cmd: impl FnMut() -> Command) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = cmd();
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let t = Instant::now();
        let o = c.output()?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(sorted(out))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (server, env) = start(&args)?;
    let server_pid = server.0.id();
    let shm = shm_dir(&env)?;
    println!(
        "warden-injector harness: {} secrets, warden dev on {}, wrapper {}",
        args.secrets,
        env.url,
        env.injector.display()
    );

    // 1. Start latency.
    let direct = time_runs(args.starts, || Command::new("/bin/true"))?;
    let wrapped = time_runs(args.starts, || env.injector(&[], &["/bin/true"]))?;
    println!("\nstart to exit of /bin/true, {} runs each", args.starts);
    println!("{:<28} {:>9} {:>9}", "", "p50 ms", "p95 ms");
    for (name, v) in [("direct", &direct), ("warden-injector exec", &wrapped)] {
        println!(
            "{name:<28} {:>9.2} {:>9.2}",
            percentile(v, 50.0),
            percentile(v, 95.0)
        );
    }
    let added = percentile(&wrapped, 95.0) - percentile(&direct, 95.0);
    println!(
        "added by the wrapper (p95): {added:.2} ms (target: wrapper p95 <= 20 ms: {})",
        met(percentile(&wrapped, 95.0) <= 20.0)
    );

    // 2. Size.
    let size = std::fs::metadata(&env.injector)?.len();
    let stripped = env.dir.path().join("warden-injector.stripped");
    run_ok(
        Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&env.injector),
    )?;
    let stripped = std::fs::metadata(&stripped)?.len();
    println!(
        "\nbinary: {:.2} MiB as built, {:.2} MiB stripped (target <= 10 MiB: {})",
        mib(size),
        mib(stripped),
        met(mib(size.min(stripped)) <= 10.0)
    );

    // 5a. The server at rest.
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kib(server_pid)?;

    // 3 and 4. Watchers.
    let template = env.dir.path().join("rotating.tpl");
    std::fs::write(&template, "v={{ ROTATING }}\n")?;
    let mut watchers = Vec::with_capacity(args.watchers);
    let out_of = |i: usize| shm.join(format!("w{i}.out"));
    let credential_of = |i: usize| shm.join(format!("w{i}.credential"));
    for i in 0..args.watchers {
        std::fs::write(credential_of(i), workload_token(&env)?)?;
    }
    let started = Instant::now();
    for batch in (0..args.watchers).collect::<Vec<_>>().chunks(50) {
        for &i in batch {
            let spec = format!("{}:{}", template.display(), out_of(i).display());
            let pod = format!("bench-{i}");
            let child = env
                .injector_with(
                    &credential_of(i),
                    &[
                        "--deliver",
                        "none",
                        "--template",
                        &spec,
                        "--watch",
                        "--on-change",
                        "render",
                        "--pod",
                        &pod,
                    ],
                    &["sleep", "1000000"],
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            watchers.push(Guard(child));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !batch.iter().all(|&i| out_of(i).exists()) {
            ensure!(Instant::now() < deadline, "watchers did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Each wrapper's watch is open once its holder row shows.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run_ok(
            env.warden()
                .args(["--output", "json", "secret", "holders", SERVICE, "ROTATING"]),
        )?;
        let h: serde_json::Value = serde_json::from_str(&out)?;
        let n = h["holders"].as_array().map_or(0, Vec::len);
        if n >= args.watchers {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {n} of {} watches open",
            args.watchers
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "\n{} watching wrappers started in {:.1} s",
        args.watchers,
        started.elapsed().as_secs_f64()
    );
    let parents: Vec<u64> = watchers
        .iter()
        .filter_map(|w| rss_kib(w.0.id()).ok())
        .collect();
    let parents = sorted(parents.iter().map(|k| *k as f64 / 1024.0).collect());
    if let Some(w) = watchers.first() {
        // What one parent's resident pages are: its own (anonymous: heap,
        // stacks) and the binary's and libraries' (file pages, shared
        // with every other process mapping them).
        let rollup =
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", w.0.id())).unwrap_or_default();
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or("?", |v| v.trim())
                .to_owned()
        };
        println!(
            "one watching parent: Rss {}, Anonymous {}, Pss_File {}, Shared_Clean {}",
            field("Rss:"),
            field("Anonymous:"),
            field("Pss_File:"),
            field("Shared_Clean:")
        );
    }
    println!(
        "watching parent RSS: median {:.2} MiB, max {:.2} MiB (target <= 4 MiB: {})",
        percentile(&parents, 50.0),
        percentile(&parents, 100.0),
        met(percentile(&parents, 100.0) <= 4.0)
    );

    // 5b. The server with the watches open, idle.
    let t0 = cpu_ticks(server_pid)?;
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let t1 = cpu_ticks(server_pid)?;
    let rss_after = rss_kib(server_pid)?;
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "server: RSS {:.1} MiB at rest, {:.1} MiB with {} idle watches (+{:.1} KiB each); \
         CPU with them idle: {:.2}% of one core over {} s",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        args.watchers,
        (rss_after.saturating_sub(rss_before)) as f64 / args.watchers.max(1) as f64,
        (t1 - t0) as f64 / hz / args.idle_seconds as f64 * 100.0,
        args.idle_seconds
    );

    // 4. Rotations.
    let mut latencies = Vec::new();
    for r in 1..=args.rotations {
        let value = format!("rotated-{r}");
        let expect = format!("v={value}\n");
        let t = now_ns();
        run_ok(
            env.warden()
                .args(["secret", "set", SERVICE, &format!("ROTATING={value}")]),
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pending: Vec<usize> = (0..args.watchers).collect();
        while !pending.is_empty() {
            pending.retain(|&i| std::fs::read_to_string(out_of(i)).map_or(true, |s| s != expect));
            ensure!(
                Instant::now() < deadline,
                "rotation {r}: {} wrappers never rendered it",
                pending.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        for i in 0..args.watchers {
            latencies.push(mtime_ns(&out_of(i))?.saturating_sub(t) as f64 / 1e6);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let latencies = sorted(latencies);
    println!(
        "\nrotation, `secret set` to the file rendered in every wrapper ({} × {}):",
        args.watchers, args.rotations
    );
    println!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 1000 ms: {})",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        met(percentile(&latencies, 99.0) <= 1000.0)
    );
    drop(watchers);
    drop(server);
    let _ = std::fs::remove_dir_all(&shm);
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
