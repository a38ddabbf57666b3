//! A small HTTPS client: HTTP/1.1 over rustls (ring provider), trusting only
//! the CA it is given.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::ErrorBody;

/// A WebSocket to the server (see [`Client::websocket`]).
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address or CA is unusable.
    #[error("{0}")]
    Config(String),
    /// TCP or TLS connection failed.
    #[error("cannot reach {addr}: {reason}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine code from the body.
        code: String,
        /// Message from the body.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The answer's body is larger than the caller's limit
    /// ([`Connection::send_limited`]); the rest of it was not read.
    #[error("the answer (HTTP {status}) is larger than {limit} bytes")]
    TooLarge {
        /// HTTP status.
        status: u16,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Client for one Warden server.
#[derive(Clone)]
pub struct Client {
    addr: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    token: Option<String>,
    source: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `base` is `https://HOST:PORT`; `ca_pem` the CA certificate(s) to trust.
    pub fn new(base: &str, ca_pem: &[u8], token: Option<String>) -> Result<Self, ClientError> {
        let rest = base.strip_prefix("https://").ok_or_else(|| {
            ClientError::Config(format!("server address {base:?} must start with https://"))
        })?;
        let addr = rest.trim_end_matches('/').to_owned();
        let host = match addr.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => {
                h.trim_start_matches('[').trim_end_matches(']')
            }
            _ => {
                return Err(ClientError::Config(format!(
                    "server address {base:?} needs a port"
                )));
            }
        };
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| ClientError::Config(format!("invalid server host {host:?}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Config(
                "no CA certificate found in the given PEM".into(),
            ));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            token,
            source: None,
        })
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same client, connecting from local address `ip` (on loopback,
    /// any 127.x.y.z: tests and benchmarks use it to be several sources).
    pub fn from_source(mut self, ip: std::net::IpAddr) -> Self {
        self.source = Some(ip);
        self
    }

    async fn connect_from(ip: std::net::IpAddr, addr: &str) -> std::io::Result<TcpStream> {
        let peer = tokio::net::lookup_host(addr)
            .await?
            .find(|a| a.is_ipv4() == ip.is_ipv4())
            .ok_or_else(|| std::io::Error::other("no address of the source's family"))?;
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        socket.connect(peer).await
    }

    /// A TLS connection to the server.
    async fn tls(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let err = |reason: String| ClientError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let tcp = match self.source {
            None => TcpStream::connect(&self.addr).await,
            Some(ip) => Self::connect_from(ip, &self.addr).await,
        }
        .map_err(|e| err(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| err(e.to_string()))?;
        self.tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| err(format!("TLS: {e}")))
    }

    /// Opens a WebSocket at `path_and_query` offering `protocols`; returns
    /// the socket and the protocol the server chose. An error answer to the
    /// upgrade is [`ClientError::Api`], as for any request.
    pub async fn websocket(
        &self,
        path_and_query: &str,
        protocols: &[&str],
    ) -> Result<(WebSocket, Option<String>), ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let tls = self.tls().await?;
        let url = format!("wss://{}{path_and_query}", self.addr);
        let mut req = url
            .into_client_request()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let headers = req.headers_mut();
        let value = |v: &str| {
            hyper::header::HeaderValue::from_str(v).map_err(|e| ClientError::Config(e.to_string()))
        };
        headers.insert("sec-websocket-protocol", value(&protocols.join(", "))?);
        headers.insert(
            "user-agent",
            value(concat!("warden/", env!("CARGO_PKG_VERSION")))?,
        );
        if let Some(t) = &self.token {
            headers.insert("authorization", value(&format!("Bearer {t}"))?);
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        match tokio_tungstenite::client_async_with_config(req, tls, Some(config)).await {
            Ok((socket, resp)) => {
                let chosen = resp
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok((socket, chosen))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().clone().unwrap_or_default();
                Err(match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(e) => ClientError::Api {
                        status,
                        code: e.error.code,
                        message: e.error.message,
                    },
                    Err(_) => ClientError::Api {
                        status,
                        code: "http_error".into(),
                        message: String::from_utf8_lossy(&body).chars().take(200).collect(),
                    },
                })
            }
            Err(e) => Err(ClientError::Connect {
                addr: self.addr.clone(),
                reason: format!("WebSocket: {e}"),
            }),
        }
    }

    /// Opens a keep-alive connection.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let err = |reason: String| ClientError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let tls = self.tls().await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| err(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender,
            host: self.addr.clone(),
            token: self.token.clone(),
        })
    }

    /// One request on a fresh connection, decoding a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        self.connect().await?.call(method, path, body).await
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
    token: Option<String>,
}

impl Connection {
    /// Sends a request; returns status and body bytes.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.send_with_progress(method, path, body, |_, _| {}).await
    }

    /// [`Connection::send`], calling `progress(received, total)` as the
    /// answer's body arrives (`total` from its Content-Length), for
    /// progress bars on long downloads.
    pub async fn send_with_progress(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.send_inner(method, path, body, usize::MAX, progress)
            .await
    }

    /// [`Connection::send`], reading at most `limit` bytes of the answer's
    /// body: an answer whose Content-Length is larger is refused before its
    /// body is read, and one without (chunked, or up to the connection's
    /// end) as soon as it passes the limit, with [`ClientError::TooLarge`].
    /// The buffer is allocated once from the Content-Length when that is
    /// within the limit, never beyond it.
    pub async fn send_limited(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.send_inner(method, path, body, limit, |_, _| {}).await
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        limit: usize,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self.request(method, path, body).await?;
        let status = resp.status();
        let too_large = || ClientError::TooLarge {
            status: status.as_u16(),
            limit,
        };
        let total = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if total.is_some_and(|t| t > limit as u64) {
            return Err(too_large());
        }
        let mut body = resp.into_body();
        // The Content-Length sizes the buffer only up to the limit (64 MiB
        // without one): a server cannot make it allocate more than it
        // would accept.
        let most = if limit == usize::MAX { 1 << 26 } else { limit };
        let preallocate = total
            .map_or(0, |t| usize::try_from(t).unwrap_or(usize::MAX))
            .min(most);
        let mut bytes = Vec::with_capacity(preallocate);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Decode(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if data.len() > limit - bytes.len() {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
                progress(bytes.len() as u64, total);
            }
        }
        Ok((status, Bytes::from(bytes)))
    }

    /// Sends a request whose success answer is a stream (a log follow): its
    /// body goes to `sink` as it arrives, and an error answer's body is
    /// returned whole. A body cut off before its end is an error.
    pub async fn stream(
        &mut self,
        method: Method,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self.request(method, path, None).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::Decode(e.to_string()))?
                .to_bytes();
            return Ok((status, bytes));
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Decode(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                sink(&data).map_err(|e| ClientError::Decode(e.to_string()))?;
            }
        }
        Ok((status, Bytes::new()))
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends a JSON request and decodes a JSON answer; maps error bodies to
    /// [`ClientError::Api`].
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    status: status.as_u16(),
                    code: e.error.code,
                    message: e.error.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: "http_error".into(),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
