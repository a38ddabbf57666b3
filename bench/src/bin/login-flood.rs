//! `login-flood`: does a password-guessing flood against one account slow
//! down everybody else's logins?
//!
//! `cargo run --release -p warden-bench --bin login-flood`
//!
//! Warden runs as `warden dev` does (SQLite, TLS, audit on). Legitimate
//! users log in one after another from 127.0.0.2 and their login latency is
//! measured twice, side by side in one run:
//!
//! 1. **Idle**: nothing else is happening (the baseline).
//! 2. **Flood**: meanwhile `--attackers` clients, each from its own source
//!    network (127.1.x.1: a /24 each, as throttles count by network), send
//!    wrong passwords for one victim account as
//!    fast as they are answered.
//!
//! It prints both latency distributions, the ratio of the medians (the
//! target is at most 2x), and how the flood was answered (401 while the
//! account's free attempts last, then 429 without any password hash).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use hyper::Method;
use serde_json::{Value, json};
use warden_api::{Client, ClientError};

/// Login latency of bystanders, idle and under a flood against one account.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent attacking clients, each from its own address.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=250))]
    attackers: u32,
    /// Legitimate logins measured per phase.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    logins: u32,
}

const PASSWORD: &str = "correct horse battery staple";
const USERS: usize = 4;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir().context("creating the data directory")?;
    let dev = warden_server::dev::start_dev(
        &dir.path().join("data"),
        (Ipv4Addr::LOCALHOST, 0).into(),
        None,
    )
    .await
    .context("starting Warden")?;
    let ca = std::fs::read(&dev.pki.ca_cert)?;
    let owner = Client::new(&dev.url, &ca, Some(String::clone(&dev.token)))?;
    owner
        .call::<Value>(
            Method::POST,
            "/api/v1/scopes",
            Some(&json!({"kind": "organization", "path": "bench"})),
        )
        .await?;
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    for name in names.iter().chain([&"victim".to_owned()]) {
        owner
            .call::<Value>(
                Method::POST,
                "/api/v1/users",
                Some(&json!({"name": name, "org": "bench", "password": PASSWORD})),
            )
            .await?;
    }
    let anon = Client::new(&dev.url, &ca, None)?;
    let bystander = anon
        .clone()
        .from_source(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));

    // Warm up (first connections, first hashes).
    measure(&bystander, &names, 4).await?;
    let idle = measure(&bystander, &names, args.logins).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (unauthorized, limited, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut attackers = Vec::new();
    for i in 0..args.attackers {
        let source = IpAddr::V4(Ipv4Addr::new(127, 1, u8::try_from(i + 1)?, 1));
        let client = anon.clone().from_source(source);
        let (stop, unauthorized, limited, other) = (
            stop.clone(),
            unauthorized.clone(),
            limited.clone(),
            other.clone(),
        );
        attackers.push(tokio::spawn(async move {
            // Keep-alive connections, as a real flood would use (a new TLS
            // handshake per attempt would measure handshakes, not logins).
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = client.connect().await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    other.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let body = json!({"user": "victim@bench", "password": "not the password!!"});
                let counter = match c
                    .call::<Value>(Method::POST, "/api/v1/auth/login", Some(&body))
                    .await
                {
                    Err(ClientError::Api { status: 401, .. }) => &unauthorized,
                    Err(ClientError::Api { status: 429, .. }) => &limited,
                    _ => {
                        conn = None;
                        &other
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood = measure(&bystander, &names, args.logins).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    let flood = flood?;

    println!("login latency of bystanders (from 127.0.0.2), ms:");
    println!("{:>8} {:>8} {:>8} {:>8}", "phase", "p50", "p95", "max");
    for (name, l) in [("idle", &idle), ("flood", &flood)] {
        println!(
            "{name:>8} {:>8.1} {:>8.1} {:>8.1}",
            pct(l, 50),
            pct(l, 95),
            pct(l, 100)
        );
    }
    let ratio = pct(&flood, 50) / pct(&idle, 50);
    println!(
        "flood from {} sources against one account: {} answered 401, {} answered 429, {} other",
        args.attackers,
        unauthorized.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
    println!("ratio flood/idle (p50): {ratio:.2}x (target <= 2x)");
    dev.running.shutdown().await;
    Ok(())
}

async fn login(client: &Client, user: &str, password: &str) -> Result<Value, ClientError> {
    client
        .call(
            Method::POST,
            "/api/v1/auth/login",
            Some(&json!({"user": user, "password": password})),
        )
        .await
}

/// Sequential logins of the legitimate users; latencies in ms, sorted.
async fn measure(client: &Client, names: &[String], n: u32) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = &names[i as usize % names.len()];
        let started = Instant::now();
        let r = login(client, &format!("{name}@bench"), PASSWORD).await;
        ensure!(r.is_ok(), "a legitimate login failed: {:?}", r.err());
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or(f64::NAN)
}
