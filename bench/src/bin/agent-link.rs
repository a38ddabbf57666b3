//! Agent-link harness: one large stream through the link (mutual TLS,
//! HTTP/2, 127.0.0.1) against the same bytes through a bare Unix socket
//! pair, then many concurrent streams over one link with this process's
//! resident memory. Hub and agent run in this one process, so the RSS
//! figure covers both ends (an upper bound for the agent's alone).
//!
//! `cargo run --release -p warden-bench --bin agent-link -- [--mib N] [--streams N]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use bytes::Bytes;
use clap::Parser;
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use warden_link::{Hub, LinkStream, run_agent};

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

type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A throwaway CA with a hub and an agent certificate.
struct Pki {
    roots: Arc<RootCertStore>,
    hub: Leaf,
    agent: Leaf,
}

fn pki() -> Result<Pki> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let leaf = |name: &str| -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &ca)?;
        Ok((
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        ))
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    Ok(Pki {
        roots: Arc::new(roots),
        hub: leaf("hub.bench")?,
        agent: leaf("agent.bench")?,
    })
}

/// Hub listening on 127.0.0.1 (client certificates required) and one
/// agent connected to it whose handler sinks or echoes.
async fn link(pki: Pki) -> Result<Hub> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(pki.roots.clone(), provider.clone()).build()?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.hub.0, pki.hub.1)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(pki.roots)
        .with_client_auth_cert(pki.agent.0, pki.agent.1)?;
    client.alpn_protocols = vec![b"h2".to_vec()];

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let hub = Hub::new();
    let served = hub.clone();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await
            && tcp.set_nodelay(true).is_ok()
            && let Ok(tls) = acceptor.accept(tcp).await
        {
            let _ = served.serve("bench", tls).await;
        }
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("hub.bench")?, tcp)
        .await?;
    tokio::spawn(run_agent(tls, handle));
    let start = Instant::now();
    while hub.connected().is_empty() {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "agent did not connect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(hub)
}

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

fn rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/self/status")?;
    Ok(kib / 1024.0)
}

fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let total = args.mib * 1024 * 1024;
    let rss_before = rss_mib()?;
    let hub = link(pki()?).await?;

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

    let rss_link = rss_mib()?;
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
    let rss_streams = rss_mib()?;
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
