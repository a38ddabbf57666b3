//! The agent's outbound connection: dial the control plane's agent
//! listener with mutual TLS, run the link, and when it ends dial again
//! after a jittered, growing delay. The control plane never dials in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::Agent;

/// First delay after a lost link; doubles per failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A link that lasted this long resets the delay.
const STABLE: Duration = Duration::from_secs(60);

/// A delay in `[d/2, 3d/2)`: agents that lost the same control plane do
/// not all come back in the same instant.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + frac)
}

/// Dials `addr` and serves `agent` over each link, forever (until the
/// task is dropped). `tls` carries the agent's client certificate and the
/// roots that verify the control plane as `server_name`.
pub async fn dial_forever(
    addr: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    agent: Agent,
) {
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut delay = FIRST_DELAY;
    loop {
        let started = Instant::now();
        match connect(&connector, &addr, server_name.clone()).await {
            Ok(io) => {
                tracing::info!(%addr, "link to the control plane up");
                let agent = agent.clone();
                let ended =
                    warden_link::run_agent(io, move |h, s| agent.clone().handle(h, s)).await;
                tracing::warn!(%addr, outcome = ?ended.err(), "link to the control plane ended");
            }
            Err(e) => tracing::warn!(%addr, error = %e, "cannot reach the control plane"),
        }
        if started.elapsed() >= STABLE {
            delay = FIRST_DELAY;
        }
        tokio::time::sleep(jittered(delay)).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: &str,
    server_name: ServerName<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    tcp.set_nodelay(true)?;
    tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}
