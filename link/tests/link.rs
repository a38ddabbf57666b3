//! The agent link over real TCP and mutual TLS on 127.0.0.1: a hub accepts
//! agent connections whose client certificate a test CA signed; agents run
//! `run_agent` with handlers that echo, flood or hold their streams.

// Helpers outside #[test] functions fail by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use warden_link::{Hub, LinkError, LinkStream, run_agent};

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { ca }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(roots)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A hub listening on 127.0.0.1 that requires a client certificate from
/// the test CA; each connection is served as the agent its certificate
/// names (here: the name the test gives the listener).
async fn hub(pki: &Pki, agent: &'static str) -> (Hub, SocketAddr) {
    let (chain, key) = pki.leaf("hub.test");
    let verifier = WebPkiClientVerifier::builder_with_provider(pki.roots(), provider())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new();
    let served = hub.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tcp.set_nodelay(true).unwrap();
            let (acceptor, hub) = (acceptor.clone(), served.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hub.serve(agent, tls).await;
                }
            });
        }
    });
    (hub, addr)
}

fn client_config(pki: &Pki, identity: Option<Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots());
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A TLS connection to the hub presenting `identity` (or no certificate).
async fn connect(
    pki: &Pki,
    addr: SocketAddr,
    identity: Option<Leaf>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = TlsConnector::from(client_config(pki, identity));
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(ServerName::try_from("hub.test").unwrap(), tcp)
        .await
}

/// Connects an agent and runs its link with `handler` in a task.
async fn agent<H, F>(pki: &Pki, addr: SocketAddr, handler: H) -> JoinHandle<Result<(), LinkError>>
where
    H: Fn(Bytes, LinkStream) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let tls = connect(pki, addr, Some(pki.leaf("agent.test")))
        .await
        .unwrap();
    tokio::spawn(run_agent(tls, handler))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends the header back, then echoes every chunk until the peer
/// finishes, and finishes too.
async fn echo(header: Bytes, mut s: LinkStream) {
    if s.send(header).await.is_err() {
        return;
    }
    while let Some(Ok(chunk)) = s.recv().await {
        if s.send(chunk).await.is_err() {
            return;
        }
    }
    let _ = s.finish().await;
}

async fn read_all(s: &mut LinkStream) -> Result<Vec<u8>, LinkError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.recv().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_carry_bytes_both_ways_over_mutual_tls() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    let _agent = agent(&pki, addr, echo).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;

    let mut tasks = Vec::new();
    for n in 0..50u32 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let header = format!("stream {n}");
            let s = hub.open("edge-1", header.as_bytes()).await.unwrap();
            // 256 KiB in chunks of varying size, a pattern per stream.
            let sent: Vec<u8> = (0..256 * 1024u32)
                .map(|i| (i.wrapping_mul(31) ^ n) as u8)
                .collect();
            let chunk_len = 1000 + (n as usize) * 97;
            // Send while the echo comes back (the queues are bounded, so
            // sending everything first would wait forever, by design).
            let (tx, mut rx) = s.split();
            let send = async {
                for chunk in sent.chunks(chunk_len) {
                    tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
                }
            };
            let recv = async {
                let mut got = Vec::new();
                while got.len() < header.len() + sent.len() {
                    match rx.recv().await {
                        Some(Ok(c)) => got.extend_from_slice(&c),
                        other => panic!("stream {n} ended early: {other:?}"),
                    }
                }
                got
            };
            let ((), got) = tokio::join!(send, recv);
            assert_eq!(&got[..header.len()], header.as_bytes());
            assert!(got[header.len()..] == sent[..], "stream {n} corrupted");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_does_not_stall_the_others() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    let handler = |header: Bytes, s: LinkStream| async move {
        if &header[..] == b"flood" {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            while s.send(chunk.clone()).await.is_ok() {}
        } else {
            echo(header, s).await;
        }
    };
    let _agent = agent(&pki, addr, handler).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;

    // Never read: its window and queues fill, and its sender waits.
    let _flood = hub.open("edge-1", b"flood").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let round_trips = async {
        let mut s = hub.open("edge-1", b"ping").await.unwrap();
        assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"ping");
        for i in 0..100u32 {
            let msg = Bytes::from(i.to_string());
            s.send(msg.clone()).await.unwrap();
            assert_eq!(s.recv().await.unwrap().unwrap(), msg);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), round_trips)
        .await
        .expect("100 round trips within 5 s beside a stalled stream");
    eprintln!(
        "100 round trips beside a stalled stream: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_one_direction_leaves_the_other_open() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    // Reads everything, then answers with the byte count.
    let handler = |_h: Bytes, mut s: LinkStream| async move {
        let n = read_all(&mut s).await.unwrap().len();
        s.send(Bytes::from(n.to_string())).await.unwrap();
        s.finish().await.unwrap();
    };
    let _agent = agent(&pki, addr, handler).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;
    let mut s = hub.open("edge-1", b"count").await.unwrap();
    s.send(Bytes::from_static(b"hello ")).await.unwrap();
    s.send(Bytes::from_static(b"world")).await.unwrap();
    s.finish().await.unwrap();
    assert!(s.send(Bytes::from_static(b"late")).await.is_err());
    assert_eq!(read_all(&mut s).await.unwrap(), b"11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    // No certificate, and one from another CA. With TLS 1.3 the client
    // finishes its side first and learns of the refusal on its first read.
    let other = Pki::new();
    for identity in [None, Some(other.leaf("agent.test"))] {
        let outcome = match connect(&pki, addr, identity).await {
            Err(e) => Err(LinkError::Protocol(e.to_string())),
            Ok(tls) => run_agent(tls, echo).await,
        };
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(hub.connected().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_a_lost_agent_end_with_an_error() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    assert!(matches!(
        hub.open("edge-1", b"x").await,
        Err(LinkError::NotConnected(_))
    ));
    let link = agent(&pki, addr, echo).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;
    let mut s = hub.open("edge-1", b"held").await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"held");

    // The agent's process goes away: its task (and socket) with it.
    link.abort();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.recv())
        .await
        .expect("the stream noticed within 10 s");
    assert!(
        matches!(ended, Some(Err(_))),
        "a lost link must not look like a clean end: {ended:?}"
    );
    until("the hub forgets the agent", || hub.connected().is_empty()).await;
    assert!(matches!(
        hub.open("edge-1", b"x").await,
        Err(LinkError::NotConnected(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_agent_replaces_its_old_link() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    let first = agent(&pki, addr, echo).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;
    let second = agent(&pki, addr, echo).await;
    // The hub closes the first link; its run_agent returns an error.
    let ended = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first link ended")
        .unwrap();
    assert!(ended.is_err());
    assert_eq!(hub.connected(), ["edge-1"]);
    let mut s = hub.open("edge-1", b"again").await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"again");
    assert!(!second.is_finished());
}

/// A byte pipe that can be cut like a black-holed network path: once cut,
/// reads never complete and writes vanish (no FIN, no RST).
struct Cuttable(tokio::io::DuplexStream, Arc<AtomicBool>);

impl tokio::io::AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.1.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.1.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.1.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Found by review: hyper ends bodies of a connection it shut down after a
/// PING timeout as if they had finished, so without the end trailer a
/// shell over a dead link looked like it had exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_link_ends_hub_streams_with_an_error() {
    let hub = Hub::new();
    let cut = Arc::new(AtomicBool::new(false));
    let (a, h) = tokio::io::duplex(1 << 20);
    let (a, h) = (Cuttable(a, cut.clone()), Cuttable(h, cut.clone()));
    let served = hub.clone();
    tokio::spawn(async move { served.serve("edge-1", h).await });
    tokio::spawn(run_agent(a, |_h: Bytes, s: LinkStream| async move {
        s.send(Bytes::from_static(b"hi")).await.unwrap();
        std::future::pending::<()>().await;
    }));
    until("the agent connects", || hub.connected() == ["edge-1"]).await;
    let mut s = hub.open("edge-1", b"shell").await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"hi");
    cut.store(true, Ordering::SeqCst);
    let end = tokio::time::timeout(Duration::from_secs(15), s.recv())
        .await
        .expect("the keepalive noticed within 15 s");
    assert!(
        matches!(end, Some(Err(_))),
        "hub read on a dead link: {end:?}"
    );
    assert!(s.recv().await.is_none(), "the error is reported once");
}

/// Found by review: a sending half dropped without `finish` (its task
/// panicked or was cancelled) must not read as a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_dropped_without_finishing_reads_as_broken() {
    let pki = Pki::new();
    let (hub, addr) = hub(&pki, "edge-1").await;
    let handler = |_h: Bytes, s: LinkStream| async move {
        let (tx, mut rx) = s.split();
        tokio::spawn(async move {
            tx.send(Bytes::from_static(b"partial output"))
                .await
                .unwrap();
            // The output task ends without finishing (as on a panic).
            drop(tx);
        });
        while let Some(Ok(_)) = rx.recv().await {}
    };
    let _agent = agent(&pki, addr, handler).await;
    until("the agent connects", || hub.connected() == ["edge-1"]).await;
    let mut s = hub.open("edge-1", b"exec").await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"partial output");
    let end = tokio::time::timeout(Duration::from_secs(5), s.recv())
        .await
        .unwrap();
    assert!(matches!(end, Some(Err(LinkError::Closed))), "{end:?}");
}

/// The first bytes of an HTTP/2 client sending `POST /link/v1/control`
/// (connection preface, empty SETTINGS, one HEADERS frame; RFC 9113 §3.4,
/// §6.2; header block in RFC 7541 static-table and literal encodings).
fn raw_control_request() -> Vec<u8> {
    // :method POST (static 3), :scheme https (7), :path literal (index 4),
    // :authority literal "x" (index 1).
    let mut block = vec![0x83, 0x87, 0x04, 16];
    block.extend_from_slice(b"/link/v1/control");
    block.extend_from_slice(&[0x01, 1, b'x']);
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    wire.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes()[1..]);
    // HEADERS, END_HEADERS, stream 1.
    wire.extend_from_slice(&[1, 4, 0, 0, 0, 1]);
    wire.extend_from_slice(&block);
    wire
}

/// Found by review: hyper runs handlers in tasks of their own, so a
/// control request from a connection that closed at once could register
/// the dead connection after it had been forgotten (and end a newer one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_closes_at_once_never_stays_registered() {
    for i in 0..100 {
        let hub = Hub::new();
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = hub.clone();
        let serve = tokio::spawn(async move { served.serve("victim", server).await });
        client.write_all(&raw_control_request()).await.unwrap();
        let mut frame = [0u8; 9];
        client.read_exact(&mut frame).await.unwrap();
        drop(client);
        let _ = serve.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            hub.connected().is_empty(),
            "try {i}: a dead connection stayed registered: {:?}",
            hub.connected()
        );
    }
}
