//! The baseline: a bare rustls + hyper server with Warden's TLS setup and
//! HTTP stack (hyper-util's auto builder, TCP_NODELAY) that answers every
//! request with the same fixed JSON body. It bounds what any HTTPS service
//! can do on this machine with this client, so Warden's rows can be read as
//! a fraction of it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A body shaped and sized like a Warden secret read answer for a 64-byte
/// value.
pub const BODY: &str = concat!(
    r#"{"scope":"bench/app/prod","name":"KEY_42","#,
    r#""value":"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/","#,
    r#""meta":{"version":1,"key_term":1,"created_at":1700000000000,"#,
    r#""deleted_at":null,"destroyed_at":null}}"#
);

/// A running baseline server.
pub struct Baseline {
    /// Bound address (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Baseline {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the baseline server")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, TlsAcceptor::from(tls), stopped));
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting and ends every open connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, mut stopped: oneshot::Receiver<()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let body = Bytes::from_static(BODY.as_bytes());
    // Dropping the set at the end aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        let tcp = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder, body) = (acceptor.clone(), builder.clone(), body.clone());
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                let mut resp = Response::new(Full::new(body.clone()));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}
