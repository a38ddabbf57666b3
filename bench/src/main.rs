//! `warden-bench`: Warden's load and benchmark harness.
//!
//! Measures closed-loop throughput and latency of Warden's two hot paths,
//! secret reads (`GET /api/v1/secret/...`) and secret writes
//! (`PUT /api/v1/secrets/...`), against a baseline, all in one process on
//! 127.0.0.1:
//!
//! 1. **Baseline**: a bare rustls + hyper server with Warden's TLS
//!    configuration (ring provider, generated dev PKI) and HTTP stack,
//!    answering every request with a fixed JSON body the size of a secret
//!    read answer. It is what any HTTPS service could do here; Warden rows
//!    carry their ratio to it.
//! 2. **Warden** on SQLite (`warden dev` setup: WAL with `synchronous=FULL`)
//!    and on PostgreSQL (a fresh database per run, dropped afterwards), with
//!    everything a production request pays for: TLS on, durable storage on,
//!    audit on (every read and write is audited before it is answered).
//!
//! Each of `--connections` connections is a keep-alive HTTPS/1.1 connection
//! (the `warden-api` client) with exactly one request in flight. After
//! `--warmup` seconds (not measured) requests are measured for `--seconds`;
//! throughput counts 200 answers only, latency percentiles are exact (every
//! request's latency is kept). Any other answer counts as an error and the
//! first one is printed.
//!
//! The client shares the machine's cores with the server, so the absolute
//! figures understate a dedicated server; the baseline pays the same tax,
//! which is what makes the ratio meaningful. CPU use during each window is
//! reported too (this process, the PostgreSQL server, everything else, I/O
//! wait), so a run disturbed by other work, or one stalled rather than busy,
//! shows it.

mod baseline;
mod cpu;
mod load;
mod report;
mod warden;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hyper::Method;
use warden_api::Client;
use warden_server::tls::{ensure_dev_pki, server_config};

use crate::baseline::Baseline;
use crate::load::{Generator, Measurement, Plan, Request};
use crate::report::{Report, Row};
use crate::warden::{Target, TempDatabase};

/// Load test of Warden's secret reads and writes against a bare HTTPS
/// baseline (TLS, durable storage and audit on; everything on 127.0.0.1).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Concurrent keep-alive connections, one request in flight each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Unmeasured warmup seconds before each scenario's window.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Storage backend(s) to run Warden on.
    #[arg(long, value_enum, default_value_t = BackendChoice::All)]
    backend: BackendChoice,
    /// PostgreSQL server to create the benchmark database on (the database
    /// named in the URL is only used to run CREATE/DROP DATABASE).
    #[arg(
        long,
        env = "WARDEN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    All,
}

impl BackendChoice {
    fn sqlite(self) -> bool {
        matches!(self, Self::Sqlite | Self::All)
    }

    fn postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::All)
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let plan = Plan {
        connections: args.connections as usize,
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.seconds),
    };
    let config = report::Config {
        connections: plan.connections,
        warmup_seconds: args.warmup,
        seconds: args.seconds,
        backend: args
            .backend
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned()),
    };
    let mut report = Report::new(config, report::Machine::detect());
    report.machine.print();
    println!();

    let baseline = run_baseline(plan).await.context("baseline")?;
    report.push(Row::new("baseline", "-", plan, &baseline, None));
    let baseline_rps = baseline.rps();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    if args.backend.sqlite() {
        let run = async {
            let target = warden::start_sqlite().await?;
            run_warden(target, plan, seed).await
        };
        report.record("sqlite", plan, baseline_rps, run.await);
    }
    if args.backend.postgres() {
        report.record(
            "postgres",
            plan,
            baseline_rps,
            run_postgres(&args.postgres_url, plan, seed).await,
        );
    }

    report.finish();
    report.print();
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    if !report.failures.is_empty() {
        bail!(
            "{} run(s) failed:\n  {}",
            report.failures.len(),
            report.failures.join("\n  ")
        );
    }
    Ok(())
}

async fn run_baseline(plan: Plan) -> Result<Measurement> {
    let dir = tempfile::tempdir().context("creating the PKI directory")?;
    let pki = ensure_dev_pki(dir.path())?;
    let server = Baseline::start(server_config(&pki.cert, &pki.key)?).await?;
    let ca = std::fs::read(&pki.ca_cert).context("reading the dev CA")?;
    let result = async {
        let client = Client::new(&format!("https://{}", server.addr), &ca, None)?;
        progress("baseline", "-", plan);
        load::run(&client, plan, |_| -> Generator {
            Box::new(|_| Request {
                method: Method::GET,
                path: "/".to_owned(),
                body: None,
            })
        })
        .await
    }
    .await;
    server.shutdown().await;
    result
}

/// The read and write scenarios against one running Warden, which is shut
/// down afterwards whatever happened.
async fn run_warden(target: Target, plan: Plan, seed: u64) -> Result<[Measurement; 2]> {
    let backend = target.backend;
    let result = async {
        warden::seed(&target.client, seed, plan.connections)
            .await
            .context("seeding")?;
        progress("secret read", backend, plan);
        let read = load::run(&target.client, plan, warden::reads).await?;
        progress("secret write", backend, plan);
        let write = load::run(&target.client, plan, warden::writes(seed)).await?;
        Ok([read, write])
    }
    .await;
    target.running.shutdown().await;
    result
}

async fn run_postgres(admin_url: &str, plan: Plan, seed: u64) -> Result<[Measurement; 2]> {
    let db = TempDatabase::create(admin_url).await?;
    let result = async {
        let target = warden::start_postgres(&db.url).await?;
        run_warden(target, plan, seed).await
    }
    .await;
    let dropped = db.remove().await;
    let measured = result?;
    dropped.context("dropping the benchmark database")?;
    Ok(measured)
}

fn progress(scenario: &str, backend: &str, plan: Plan) {
    eprintln!(
        "running {scenario} ({backend}): {} connections, {}s warmup + {}s measured",
        plan.connections,
        plan.warmup.as_secs(),
        plan.measure.as_secs()
    );
}
