//! `audit-proof`: memory and time of audit inclusion proofs, from stored
//! tiles against the old way (every leaf hash of the log loaded per call),
//! in the same process.
//!
//! `cargo run --release -p warden-bench --bin audit-proof -- [--entries 100000] [--calls 1000]`
//!
//! Two logs are filled through `warden_audit::Auditor` (MACed, sequenced,
//! tiled as the server does): one of `--entries / 10` entries and one of
//! `--entries`. Then, for each log, `--calls` proofs of random leaves at
//! the log's size, `--concurrency` at a time: first from tiles
//! (`warden_audit::tiles::inclusion_proof`, what `GET /audit/{log}/proof`
//! now runs), then the old way (`audit_leaf_hashes(log, 0, size)` and
//! `merkle::inclusion_proof`). Proofs of both ways are compared.
//!
//! Memory is the process's resident set from `/proc/self/status`: `VmRSS`
//! after each phase and the peak `VmHWM` so far. The peak only grows, so a
//! phase's cost is how much it raised the peak; phases run smallest cost
//! first (tiles, then the old way) so that each is visible. The resident
//! set includes SQLite's page caches (8 connections, up to about 2 MiB
//! each), which fill as a log's pages are first read.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use warden_audit::Auditor;
use warden_store::Store;

#[path = "../sample_event.rs"]
mod sample_event;
use sample_event::event;
use warden_tlog::merkle::{Hash, inclusion_proof};

/// Proof memory and time, from tiles and from every leaf.
#[derive(Debug, Parser)]
struct Args {
    /// Entries in the larger log (the smaller has a tenth).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..=10_000_000))]
    entries: u64,
    /// Proof calls per phase.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    calls: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
}

/// `VmRSS` and `VmHWM` in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn fill(auditor: &Auditor, log: &str, n: u64) -> Result<()> {
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(auditor.queue_intent(&event(log, i))?);
        if pending.len() == 10_000 {
            for mut p in pending.drain(..) {
                p.durable().await?;
            }
        }
    }
    for mut p in pending {
        p.durable().await?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Way {
    Tiles,
    EveryLeaf,
}

async fn prove(store: &Store, log: &str, index: u64, size: u64, way: Way) -> Result<Vec<Hash>> {
    Ok(match way {
        Way::Tiles => warden_audit::tiles::inclusion_proof(store, log, index, size).await?,
        Way::EveryLeaf => {
            let leaves = store
                .audit_leaf_hashes(log, 0, i64::try_from(size)?)
                .await?
                .iter()
                .map(|h| Hash::try_from(h.as_slice()).context("a leaf hash is not 32 bytes"))
                .collect::<Result<Vec<Hash>>>()?;
            inclusion_proof(&leaves, index, size)?
        }
    })
}

/// Runs `calls` proofs `concurrency` at a time; returns seconds taken.
async fn phase(store: &Store, log: &str, size: u64, way: Way, args: &Args) -> Result<f64> {
    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ size;
    let mut done = 0;
    while done < args.calls {
        let batch = args.concurrency.min(args.calls - done);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let (store, log, index) = (store.clone(), log.to_owned(), (seed >> 11) % size);
            tasks.push(tokio::spawn(async move {
                prove(&store, &log, index, size, way).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        done += batch;
    }
    Ok(started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("data/audit.db").display());
    let store = Store::connect(&url).await?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let mac: warden_audit::EntryMac = Arc::new(move |_log: &str| {
        let key = key.clone();
        let m: warden_audit::LogMac =
            Arc::new(move |text: &[u8]| hex::encode(ring::hmac::sign(&key, text).as_ref()));
        Some(m)
    });
    let auditor = Auditor::new(store.clone(), "bench", Some(mac));
    let logs = [("small", args.entries / 10), ("large", args.entries)];
    let started = Instant::now();
    for (log, n) in logs {
        fill(&auditor, log, n).await?;
    }
    println!(
        "filled logs of {} and {} entries (SQLite, WAL, synchronous=FULL) in {:.1} s",
        logs[0].1,
        logs[1].1,
        started.elapsed().as_secs_f64()
    );
    // Both ways give the same proofs.
    for (log, n) in logs {
        for index in [0, n / 2, n - 1] {
            anyhow::ensure!(
                prove(&store, log, index, n, Way::Tiles).await?
                    == prove(&store, log, index, n, Way::EveryLeaf).await?,
                "proofs differ at {index} of {log}"
            );
        }
    }
    let (rss, hwm) = memory();
    println!(
        "{} proof calls per phase, {} at a time; memory in MiB (resident now / peak so far)",
        args.calls, args.concurrency
    );
    println!(
        "{:<36} {:>9} {:>9} {:>12} {:>10}",
        "phase", "RSS", "peak", "peak rise", "ms/proof"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{:<36} {:>9.1} {:>9.1} {:>12} {:>10}",
        "before",
        mib(rss),
        mib(hwm),
        "-",
        "-"
    );
    let mut last_peak = hwm;
    // The tiles phase of the large log runs twice: the second shows the
    // steady state once SQLite's page caches are warm.
    let phases = [
        (Way::Tiles, "tiles", logs[0]),
        (Way::Tiles, "tiles", logs[1]),
        (Way::Tiles, "tiles, again", logs[1]),
        (Way::EveryLeaf, "every leaf (old)", logs[0]),
        (Way::EveryLeaf, "every leaf (old)", logs[1]),
    ];
    for (way, name, (log, n)) in phases {
        let secs = phase(&store, log, n, way, &args).await?;
        let (rss, hwm) = memory();
        println!(
            "{:<36} {:>9.1} {:>9.1} {:>12.1} {:>10.3}",
            format!("{name}, {n} entries"),
            mib(rss),
            mib(hwm),
            mib(hwm - last_peak),
            secs * 1000.0 / args.calls as f64
        );
        last_peak = hwm;
    }
    Ok(())
}
