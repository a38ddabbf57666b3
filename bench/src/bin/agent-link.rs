//! Agent-link harness: one large stream through the link (mutual TLS,
//! HTTP/2, 127.0.0.1) against the same bytes through a bare Unix socket
//! pair, then many concurrent streams over one link with this process's
//! resident memory. Hub and agent run in this one process, so the RSS
//! figure covers both ends (an upper bound for the agent's alone).
//!
//! `cargo run --release -p warden-bench --bin agent-link -- [--mib N] [--streams N]`

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use warden_link::{Hub, LinkStream};

#[path = "../tls_link.rs"]
mod tls_link;

#[derive(Parser)]
#[command(about = "Agent link throughput and stream memory against a bare socket pair")]
struct Args {
    /// MiB sent through one stream (and through the baseline).
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Concurrent streams held open over one link.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
}

const CHUNK: usize = 64 * 1024;

/// `sink`: counts bytes to the end and answers the count; anything else:
/// echoes.
async fn handle(header: Bytes, mut s: LinkStream) {
    if &header[..] == b"sink" {
        let mut n = 0usize;
        while let Some(Ok(chunk)) = s.recv().await {
            n += chunk.len();
        }
        let _ = s.send(Bytes::from(n.to_string())).await;
    } else {
        while let Some(Ok(chunk)) = s.recv().await {
            if s.send(chunk).await.is_err() {
                return;
            }
        }
    }
    let _ = s.finish().await;
}

async fn through_link(hub: &Hub, total: usize) -> Result<Duration> {
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let start = Instant::now();
    let mut s = hub.open("bench", b"sink").await?;
    for _ in 0..total / CHUNK {
        s.send(chunk.clone()).await?;
    }
    s.finish().await?;
    let answer = s.recv().await.ok_or_else(|| anyhow!("no count"))??;
    let elapsed = start.elapsed();
    ensure!(
        answer == total.to_string().as_bytes(),
        "the agent counted other bytes"
    );
    Ok(elapsed)
}

async fn through_socketpair(total: usize) -> Result<Duration> {
    let (mut a, mut b) = UnixStream::pair()?;
    let chunk = vec![0x5a; CHUNK];
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..total / CHUNK {
            a.write_all(&chunk).await?;
        }
        a.shutdown().await
    });
    let mut buf = vec![0; CHUNK];
    let mut n = 0;
    loop {
        match b.read(&mut buf).await? {
            0 => break,
            k => n += k,
        }
    }
    writer.await??;
    ensure!(n == total, "the socket pair lost bytes");
    Ok(start.elapsed())
}

fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let total = args.mib * 1024 * 1024;
    let rss_before = tls_link::rss_mib()?;
    let hub = tls_link::link(tls_link::pki()?, handle).await?;

    let bare = through_socketpair(total).await?;
    let linked = through_link(&hub, total).await?;
    println!(
        "one stream, {} MiB in 64 KiB chunks: link {:.0} MiB/s ({:.2} s), bare socket pair {:.0} MiB/s ({:.2} s), link/bare {:.2}",
        args.mib,
        mib_per_s(total, linked),
        linked.as_secs_f64(),
        mib_per_s(total, bare),
        bare.as_secs_f64(),
        bare.as_secs_f64() / linked.as_secs_f64(),
    );

    let rss_link = tls_link::rss_mib()?;
    let start = Instant::now();
    let mut streams = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        streams.push(hub.open("bench", b"echo").await?);
    }
    let opened = start.elapsed();
    let start = Instant::now();
    let rounds = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| async move {
            let msg = Bytes::from(format!("stream {i}"));
            s.send(msg.clone()).await?;
            let back = s
                .recv()
                .await
                .ok_or_else(|| anyhow!("stream {i} ended"))??;
            ensure!(back == msg, "stream {i} echoed other bytes");
            Ok::<_, anyhow::Error>(s)
        });
    let streams = futures::future::try_join_all(rounds).await?;
    let round_trip = start.elapsed();
    let rss_streams = tls_link::rss_mib()?;
    println!(
        "{} streams on one link: opened one by one in {:.0} ms, one round trip on all at once in {:.0} ms; RSS (hub and agent together) {:.1} MiB before the link, {:.1} MiB with the link, {:.1} MiB with the streams open",
        streams.len(),
        opened.as_secs_f64() * 1000.0,
        round_trip.as_secs_f64() * 1000.0,
        rss_before,
        rss_link,
        rss_streams,
    );
    Ok(())
}
