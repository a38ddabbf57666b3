//! The HTTPS accept loop: tokio-rustls handshakes, hyper (HTTP/1.1 and
//! HTTP/2) serving the axum router, graceful shutdown.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::App;
use crate::{ApiError, routes};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's headers must arrive within this long of the connection
/// being ready for them (HTTP/1: also the keep-alive idle limit).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings an idle peer this often and drops it if the ping is not
/// answered in time.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most, in all and per source address; past these,
/// new connections are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// See [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 256;

/// Counts open connections, in all and per source address.
#[derive(Default)]
struct Connections {
    per_source: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One open connection's place in [`Connections`]; released on drop.
struct Slot {
    conns: Arc<Connections>,
    ip: std::net::IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let mut per = self.per_source.lock().ok()?;
        let n = per.entry(ip).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_SOURCE || self.total.load(Ordering::Acquire) >= MAX_CONNECTIONS
        {
            if *n == 0 {
                per.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            conns: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.total.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut per) = self.conns.per_source.lock()
            && let Some(n) = per.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

#[derive(Clone, Default)]
struct Counter(Arc<std::sync::atomic::AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("req-{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    // On PostgreSQL the request may use the read cache only if this
    // replica has heard of every change committed before it began.
    let resp = app.store.fresh_view(next.run(req)).await;
    app.metrics
        .observe(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// A request body that notes when it has been read to the end.
struct Watched {
    inner: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.read.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// HTTP/1 answers to requests whose body was not read (refused before
/// the handler took it: unauthenticated, no such route or method) carry
/// `Connection: close`. hyper closes such a connection rather than drain
/// the unread body, and a client that was not told would reuse it and see
/// its next request fail.
async fn close_unread(req: Request, next: Next) -> Response {
    use http_body::Body as _;
    if req.version() >= axum::http::Version::HTTP_2 || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let (parts, inner) = req.into_parts();
    let body = axum::body::Body::new(Watched {
        inner,
        read: read.clone(),
    });
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Acquire) {
        resp.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::internal().into_response()
}

/// The router with the middleware stack every request passes through.
pub fn app_router(app: Arc<App>, request_timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    routes::router(app.clone())
        .layer(middleware::from_fn_with_state(app, track))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(close_unread))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, Counter::default()))
}

/// Serves until `shutdown` fires, then stops accepting, lets in-flight
/// requests finish (up to 30 s) and flushes the audit writer.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    app: Arc<App>,
    shutdown: oneshot::Receiver<()>,
) {
    serve_tls(listener, tls, router, async {
        let _ = shutdown.await;
    })
    .await;
    if let Err(e) = app.store.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
}

/// The HTTPS accept loop every Warden listener uses (the API, and `warden
/// injector webhook`'s admission webhook): TLS handshakes within 10 s,
/// HTTP/1.1 and HTTP/2 (header read timeout, HTTP/2 keepalive, 256
/// streams), at most 4,096 connections and 256 per source address. Serves `router` until
/// `shutdown` completes, then stops accepting and lets in-flight requests
/// finish (up to 30 s).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(256);
    let connections = Arc::new(Connections::default());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer): (_, SocketAddr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Some(slot) = connections.admit(peer.ip()) else {
                    tracing::debug!(%peer, "connection refused: too many open connections");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, builder, router, watcher) =
                    (acceptor.clone(), builder.clone(), router.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _slot = slot;
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = router.map_request(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req
                    });
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc))
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}
