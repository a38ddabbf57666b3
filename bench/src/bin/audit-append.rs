//! `audit-append`: how fast Warden's audit log takes durable events.
//!
//! `cargo run --release -p warden-bench --bin audit-append -- [--backend sqlite|postgres|all]`
//!
//! Each scenario appends realistic intent entries (about 520 bytes of
//! canonical JSON, MACed) through `warden_audit::Auditor::intent`, the call every
//! operation makes before it runs: the event is placed in its log's Merkle
//! tree (sequence number, chain link, leaf hash), committed with its batch
//! (SQLite WAL with `synchronous=FULL`, or PostgreSQL), and acknowledged
//! only once durable.
//!
//! 1. **Baseline**: the same closed loop against a bare group-commit
//!    appender: one task collects everything queued, writes it to a file,
//!    `fdatasync`s, and acknowledges. It is what the disk allows with group
//!    commit and no database.
//! 2. **Closed loop** (`--concurrency` appenders, each waiting for its
//!    acknowledgement before the next): the maximum durable rate.
//! 3. **Half load**: an open loop at half the closed-loop rate, to read
//!    the acknowledgement latency (p99) at that load.
//!
//! Bounded: each phase runs `--seconds` after a short warmup.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use tokio::sync::{mpsc, oneshot};
use warden_audit::Auditor;
use warden_store::Store;

#[path = "../sample_event.rs"]
mod sample_event;
use sample_event::event;

/// Durable audit appends per second, against a bare group-commit file.
#[derive(Debug, Parser)]
struct Args {
    /// Storage backend(s).
    #[arg(long, value_enum, default_value_t = Backend::All)]
    backend: Backend,
    /// Concurrent appenders in the closed loop.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        env = "WARDEN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    All,
}

/// Latencies of acknowledged appends in a window, and the window.
struct Run {
    latencies: Vec<Duration>,
    window: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// Something that appends one event durably.
trait Appender: Send + Sync + 'static {
    fn append(&self, i: u64) -> impl std::future::Future<Output = Result<()>> + Send;
}

struct Warden(Auditor);

impl Appender for Warden {
    async fn append(&self, i: u64) -> Result<()> {
        self.0.intent(&event("acme", i)).await?;
        Ok(())
    }
}

/// Group commit to a plain file: the disk's ceiling.
struct FileLog {
    queue: mpsc::UnboundedSender<(Vec<u8>, oneshot::Sender<()>)>,
}

impl FileLog {
    fn start(path: &std::path::Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        let (queue, mut rx) = mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<()>)>();
        tokio::task::spawn_blocking(move || {
            let mut offset = 0u64;
            let mut buf = Vec::new();
            let mut acks = Vec::new();
            while let Some((line, ack)) = rx.blocking_recv() {
                buf.extend_from_slice(&line);
                acks.push(ack);
                while let Ok((line, ack)) = rx.try_recv() {
                    buf.extend_from_slice(&line);
                    acks.push(ack);
                }
                if file.write_all_at(&buf, offset).is_err() || file.sync_data().is_err() {
                    return;
                }
                offset += buf.len() as u64;
                buf.clear();
                for a in acks.drain(..) {
                    let _ = a.send(());
                }
            }
        });
        Ok(Self { queue })
    }
}

impl Appender for FileLog {
    async fn append(&self, i: u64) -> Result<()> {
        let mut line = serde_json::to_vec(&serde_json::json!({
            "op_id": format!("bench-18f2a9c3d4e5-{i}"),
            "pad": "x".repeat(380),
        }))?;
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((line, tx))
            .ok()
            .context("file writer stopped")?;
        rx.await.context("file writer stopped")
    }
}

/// `concurrency` appenders, each waiting for its acknowledgement.
async fn closed_loop<A: Appender>(a: Arc<A>, concurrency: u32, seconds: u64) -> Result<Run> {
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(seconds);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (a, stop) = (a.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = u64::from(t) << 32;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                a.append(i).await?;
                i += 1;
                let at = t0.duration_since(start);
                if at >= warmup && at < warmup + window {
                    lat.push(t0.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    tokio::time::sleep(warmup + window).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Run { latencies, window })
}

/// Appends started at a fixed `rate` per second, whatever the answers.
async fn open_loop<A: Appender>(a: Arc<A>, rate: f64, seconds: u64) -> Result<Run> {
    let window = Duration::from_secs(seconds);
    let tick = Duration::from_millis(1);
    let per_tick = rate / 1000.0;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let mut owed = 0.0;
    let mut i = 0u64;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while start.elapsed() < window {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let (a, tx) = (a.clone(), tx.clone());
            i += 1;
            tokio::spawn(async move {
                let t0 = Instant::now();
                let ok = a.append(i).await.is_ok();
                let _ = tx.send((ok, t0.elapsed()));
            });
        }
    }
    drop(tx);
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some((ok, d)) = rx.recv().await {
        if ok {
            latencies.push(d);
        } else {
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} appends failed");
    Ok(Run { latencies, window })
}

fn row(name: &str, run: &mut Run, baseline: Option<f64>) {
    let rate = run.rate();
    println!(
        "{name:<28} {rate:>12.0} {:>9.2} {:>9.2} {:>10}",
        run.percentile(0.5),
        run.percentile(0.99),
        baseline.map_or("-".to_owned(), |b| format!("{:.2}x", rate / b)),
    );
}

async fn warden_rows(name: &str, url: &str, args: &Args, baseline: f64) -> Result<(f64, f64)> {
    let store = Store::connect(url).await?;
    // Entries are MACed as in the server (HMAC-SHA256 under a per-log key).
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let mac: warden_audit::EntryMac = Arc::new(move |_log: &str| {
        let key = key.clone();
        let m: warden_audit::LogMac =
            Arc::new(move |text: &[u8]| hex::encode(ring::hmac::sign(&key, text).as_ref()));
        Some(m)
    });
    let a = Arc::new(Warden(Auditor::new(store, "bench", Some(mac))));
    let mut full = closed_loop(a.clone(), args.concurrency, args.seconds).await?;
    row(&format!("{name}: closed loop"), &mut full, Some(baseline));
    let half_rate = full.rate() / 2.0;
    let mut half = open_loop(a, half_rate, args.seconds).await?;
    row(&format!("{name}: half load"), &mut half, Some(baseline));
    Ok((full.rate(), half.percentile(0.99)))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!(
        "audit-append: {} cores, {} appenders, {} s per phase, events ~520 B",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.concurrency,
        args.seconds
    );
    println!(
        "{:<28} {:>12} {:>9} {:>9} {:>10}",
        "scenario", "events/s", "p50 ms", "p99 ms", "vs base"
    );
    let mut base = closed_loop(
        Arc::new(FileLog::start(&dir.path().join("baseline.log"))?),
        args.concurrency,
        args.seconds,
    )
    .await?;
    row("baseline: file + fdatasync", &mut base, None);
    let baseline = base.rate();
    let mut results = Vec::new();
    if matches!(args.backend, Backend::Sqlite | Backend::All) {
        let url = format!("sqlite://{}", dir.path().join("data/audit.db").display());
        results.push((
            "sqlite",
            warden_rows("sqlite", &url, &args, baseline).await?,
        ));
    }
    if matches!(args.backend, Backend::Postgres | Backend::All) {
        let name = format!("warden_audit_bench_{}", std::process::id());
        let mut admin =
            <sqlx::PgConnection as sqlx::Connection>::connect(&args.postgres_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let (base_url, _) = args.postgres_url.rsplit_once('/').context("database URL")?;
        let r = warden_rows("postgres", &format!("{base_url}/{name}"), &args, baseline).await;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        results.push(("postgres", r?));
    }
    println!();
    for (backend, (rate, p99)) in results {
        let target = if backend == "sqlite" {
            " (targets: >= 100000, p99 <= 5 ms)"
        } else {
            ""
        };
        println!("{backend}: {rate:.0} durable events/s, p99 at half load {p99:.2} ms{target}");
    }
    std::io::stdout().flush()?;
    Ok(())
}
