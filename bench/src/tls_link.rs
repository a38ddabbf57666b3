//! A mutual-TLS agent link on loopback for the harnesses: a throwaway CA,
//! a hub listening on 127.0.0.1 and one agent dialing it, as a deployed
//! agent does; and the process's resident memory they report (included by
//! `src/bin/agent-link.rs` and `src/bin/pods.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use warden_link::{Hub, LinkStream, run_agent};

type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A throwaway CA with a hub and an agent certificate.
pub struct Pki {
    roots: Arc<RootCertStore>,
    hub: Leaf,
    agent: Leaf,
}

pub fn pki() -> Result<Pki> {
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
/// agent, named `bench`, connected to it, serving streams with `handler`.
pub async fn link<H, F>(pki: Pki, handler: H) -> Result<Hub>
where
    H: Fn(Bytes, LinkStream) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
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
    tokio::spawn(run_agent(tls, handler));
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

/// This process's resident set (`VmRSS`), in MiB.
pub fn rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/self/status")?;
    Ok(kib / 1024.0)
}
