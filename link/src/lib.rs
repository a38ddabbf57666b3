//! The agent link: one connection an agent dials out to the control plane
//! (mutual TLS, HTTP/2), carrying any number of independent byte streams
//! the control plane asks for (one per exec, log follow or watch).
//!
//! HTTP/2 lets only the client open streams, and the agent is the client
//! (the control plane never dials into customer infrastructure). So the
//! control plane asks and the agent opens:
//!
//! 1. the agent sends `POST /link/v1/control` once per connection; the
//!    response body is the control channel, a sequence of *open* frames
//!    (`u32` length, then `u64` stream id and an opaque header naming the
//!    work, at most [`MAX_HEADER_BYTES`]);
//! 2. for each one, the agent sends `POST /link/v1/streams/ID`: the request
//!    body carries bytes agent → control plane, the response body bytes
//!    control plane → agent. Both sides see a [`LinkStream`].
//!
//! Each stream has HTTP/2's own flow control (RFC 9113 §5.2) and a bounded
//! queue on each side, so a stream whose reader stops stalls only itself.
//! That needs one choice HTTP/2 leaves open: bytes a reader has not
//! consumed count against both its stream's window and the connection's
//! (§6.9), so with default or adaptive windows one unread stream can use up
//! the connection window and stall every other stream. Here the connection
//! window is the largest allowed and each stream's is [`STREAM_WINDOW`]:
//! the per-stream window alone bounds what a stalled stream buffers.
//! HTTP/2 PINGs every [`KEEPALIVE_INTERVAL`] detect a dead peer within
//! `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT`.
//!
//! A clean end is explicit: [`LinkSender::finish`] sends a trailer
//! ([`END_TRAILER`]) before ending its side, and a receiver that sees its
//! peer's side end without it reports [`LinkError::Closed`]. HTTP/2 alone
//! cannot tell them apart (hyper reports a connection shut down with
//! `NO_ERROR`, as after a PING timeout, as a plain end of body), and a
//! shell whose link died must never look as if it had exited.
//!
//! This crate is transport only: it knows nothing of pods, policies or
//! storage (it must not depend on any Warden crate; architecture test).
//! The TLS handshake, and the agent identity its certificate proves, belong
//! to the caller: [`Hub::serve`] takes a connection already authenticated
//! as a named agent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};

/// The agent's control request.
pub const CONTROL_PATH: &str = "/link/v1/control";
/// Prefix of a stream request; the stream id follows.
pub const STREAM_PATH: &str = "/link/v1/streams/";
/// Largest header an open frame may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How often each side PINGs the other.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long a PING may go unanswered before the link is dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Each stream's HTTP/2 receive window: what a reader that stopped reading
/// can have buffered for it, per stream.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window: the protocol maximum (2^31 - 1), so
/// that only stream windows limit flow (see the crate docs).
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// Streams one link may have open at once.
pub const MAX_STREAMS: u32 = 4096;
/// How long the agent has to open a stream the control plane asked for.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The trailer that marks a stream's side as finished on purpose.
pub const END_TRAILER: &str = "warden-link-end";
/// Chunks a sender may queue on a stream before [`LinkStream::send`] waits.
const QUEUED_CHUNKS: usize = 8;
/// Open frames queued for one agent before [`Hub::open`] waits.
const QUEUED_OPENS: usize = 64;
/// Bytes before an open frame's header: length, stream id.
const FRAME_PREFIX: usize = 4 + 8;

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No link from that agent.
    #[error("agent {0} is not connected")]
    NotConnected(String),
    /// The agent did not open a stream it was asked for in time.
    #[error("agent did not open stream {0} within {OPEN_TIMEOUT:?}")]
    OpenTimeout(u64),
    /// The link (or the stream) ended while in use.
    #[error("the agent link closed")]
    Closed,
    /// The peer broke the protocol.
    #[error("agent link protocol violation: {0}")]
    Protocol(String),
    /// HTTP/2 or the connection under it failed.
    #[error("agent link transport: {0}")]
    Transport(#[from] hyper::Error),
}

/// One byte stream over the link, seen from either end.
///
/// Read the peer's side to its end before dropping the receiver: dropping
/// it earlier cancels the HTTP/2 stream, in both directions (RFC 9113
/// §5.4.2, `RST_STREAM`), so bytes this side sent and the peer has not yet
/// read are lost.
pub struct LinkStream {
    id: u64,
    sender: LinkSender,
    receiver: LinkReceiver,
}

/// The sending half of a [`LinkStream`]. Dropping it without
/// [`LinkSender::finish`] ends this side as broken: the peer reads an error.
pub struct LinkSender(Option<mpsc::Sender<Frame<Bytes>>>);

/// The receiving half of a [`LinkStream`].
pub struct LinkReceiver {
    body: Incoming,
    /// The peer finished on purpose (its end trailer arrived).
    finished: bool,
    /// The end (clean or broken) was reported.
    reported: bool,
}

impl std::fmt::Debug for LinkStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkStream").field("id", &self.id).finish()
    }
}

impl LinkStream {
    /// A stream reading `incoming`, and the body its sends feed.
    fn new(id: u64, incoming: Incoming) -> (Self, ChannelBody) {
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        (Self::joined(id, incoming, tx), ChannelBody(rx))
    }

    fn joined(id: u64, incoming: Incoming, outgoing: mpsc::Sender<Frame<Bytes>>) -> Self {
        Self {
            id,
            sender: LinkSender(Some(outgoing)),
            receiver: LinkReceiver {
                body: incoming,
                finished: false,
                reported: false,
            },
        }
    }

    /// The stream's id on its link.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// See [`LinkSender::send`].
    pub async fn send(&self, data: Bytes) -> Result<(), LinkError> {
        self.sender.send(data).await
    }

    /// See [`LinkSender::finish`].
    pub async fn finish(&mut self) -> Result<(), LinkError> {
        self.sender.finish().await
    }

    /// See [`LinkReceiver::recv`].
    pub async fn recv(&mut self) -> Option<Result<Bytes, LinkError>> {
        self.receiver.recv().await
    }

    /// The two halves, to send and receive from different tasks.
    pub fn split(self) -> (LinkSender, LinkReceiver) {
        (self.sender, self.receiver)
    }
}

impl LinkSender {
    /// Sends `data`; waits while the peer is not reading (its window and
    /// this stream's queue are full). Fails once the stream is gone or
    /// [`LinkSender::finish`] was called.
    pub async fn send(&self, data: Bytes) -> Result<(), LinkError> {
        let tx = self.0.as_ref().ok_or(LinkError::Closed)?;
        tx.send(Frame::data(data))
            .await
            .map_err(|_| LinkError::Closed)
    }

    /// Ends this side's bytes on purpose (the peer reads a clean end of
    /// stream); receiving goes on. Waits, like a send, for room to queue
    /// the end marker.
    pub async fn finish(&mut self) -> Result<(), LinkError> {
        let tx = self.0.take().ok_or(LinkError::Closed)?;
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert(END_TRAILER, hyper::header::HeaderValue::from_static("1"));
        tx.send(Frame::trailers(trailers))
            .await
            .map_err(|_| LinkError::Closed)
    }
}

impl LinkReceiver {
    /// The next bytes from the peer: `None` once it finished on purpose
    /// ([`LinkSender::finish`]); an error, once, if the stream or the link
    /// broke first, or the peer's side ended without finishing.
    pub async fn recv(&mut self) -> Option<Result<Bytes, LinkError>> {
        if self.reported {
            return None;
        }
        loop {
            let frame = poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            let frame = match frame {
                Some(Ok(frame)) => frame,
                None if self.finished => {
                    self.reported = true;
                    return None;
                }
                None => {
                    self.reported = true;
                    return Some(Err(LinkError::Closed));
                }
                Some(Err(e)) => {
                    self.reported = true;
                    return Some(Err(LinkError::Transport(e)));
                }
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Some(Ok(data)),
                Err(frame) => {
                    if frame
                        .trailers_ref()
                        .is_some_and(|t| t.contains_key(END_TRAILER))
                    {
                        self.finished = true;
                    }
                }
            }
        }
    }
}

/// A body fed from a bounded channel: ends when every sender is dropped.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// An empty body (refusals).
fn empty() -> ChannelBody {
    ChannelBody(mpsc::channel(1).1)
}

fn status(code: StatusCode) -> Response<ChannelBody> {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    r
}

fn open_frame(id: u64, header: &[u8]) -> Result<Bytes, LinkError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(LinkError::Protocol(format!(
            "a stream header of {} bytes (at most {MAX_HEADER_BYTES})",
            header.len()
        )));
    }
    let len = u32::try_from(8 + header.len()).map_err(|e| LinkError::Protocol(e.to_string()))?;
    let mut frame = BytesMut::with_capacity(FRAME_PREFIX + header.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(header);
    Ok(frame.freeze())
}

/// Takes the next whole open frame off `buf`, if there is one.
fn next_open(buf: &mut BytesMut) -> Result<Option<(u64, Bytes)>, LinkError> {
    let Some(len) = buf
        .first_chunk::<4>()
        .map(|b| u32::from_be_bytes(*b) as usize)
    else {
        return Ok(None);
    };
    if !(8..=8 + MAX_HEADER_BYTES).contains(&len) {
        return Err(LinkError::Protocol(format!("an open frame of {len} bytes")));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let id = buf.get_u64();
    Ok(Some((id, buf.split_to(len - 8).freeze())))
}

/// The control plane's side: the agents connected now and the streams
/// opened to them.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    agents: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
}

/// One agent connection.
struct Conn {
    serial: u64,
    /// Open frames to the agent, once its control request arrived.
    control: Mutex<Option<mpsc::Sender<Frame<Bytes>>>>,
    /// Streams asked for and not yet opened by the agent.
    pending: Mutex<HashMap<u64, oneshot::Sender<LinkStream>>>,
    /// Set to end the connection (the agent reconnected, or went quiet).
    end: watch::Sender<bool>,
    /// The connection has ended and left the registry; changed only under
    /// the registry's lock, so a control request handled late (hyper runs
    /// handlers in their own tasks) cannot register a dead connection.
    gone: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The agents with a live link, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.inner.agents).keys().cloned().collect();
        names.sort();
        names
    }

    /// Serves one agent's connection (already authenticated as `agent`)
    /// until it ends. A newer connection from the same agent replaces this
    /// one, and this one is closed. Set `TCP_NODELAY` on the socket under
    /// `io`: open frames are small, and Nagle's algorithm holds each back
    /// for the previous one's acknowledgement (~40 ms per open on Linux).
    pub async fn serve<I>(&self, agent: &str, io: I) -> Result<(), LinkError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (end, mut ended) = watch::channel(false);
        let conn = Arc::new(Conn {
            serial: self.inner.next_conn.fetch_add(1, Ordering::Relaxed),
            control: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            end,
            gone: AtomicBool::new(false),
        });
        let service = {
            let (hub, conn, agent) = (self.clone(), conn.clone(), agent.to_owned());
            hyper::service::service_fn(move |req| {
                let (hub, conn, agent) = (hub.clone(), conn.clone(), agent.clone());
                async move { Ok::<_, Infallible>(hub.route(&agent, &conn, req)) }
            })
        };
        let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(MAX_STREAMS)
            .serve_connection(TokioIo::new(io), service);
        // Forgotten however this future ends, also when the caller drops
        // it (to cut the link off).
        let _forget = Forget {
            hub: self,
            agent,
            conn: &conn,
        };
        tokio::select! {
            r = http => r.map_err(LinkError::from),
            _ = ended.wait_for(|e| *e) => Ok(()),
        }
    }

    /// Ends `agent`'s link, if it has one: its streams end with an error on
    /// both sides. Whether there was one. (A connection the caller accepts
    /// later for the same agent registers anew; refuse it at the TLS layer
    /// to keep an agent out.)
    pub fn disconnect(&self, agent: &str) -> bool {
        let conn = lock(&self.inner.agents).remove(agent);
        match conn {
            Some(conn) => {
                conn.gone.store(true, Ordering::Relaxed);
                conn.end.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Drops `conn` from the registry if it is still the agent's current
    /// connection; its pending opens fail.
    fn forget(&self, agent: &str, conn: &Arc<Conn>) {
        {
            let mut agents = lock(&self.inner.agents);
            conn.gone.store(true, Ordering::Relaxed);
            if agents.get(agent).is_some_and(|c| c.serial == conn.serial) {
                agents.remove(agent);
            }
        }
        lock(&conn.pending).clear();
    }

    fn route(
        &self,
        agent: &str,
        conn: &Arc<Conn>,
        req: Request<Incoming>,
    ) -> Response<ChannelBody> {
        if req.method() != Method::POST {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        let path = req.uri().path();
        if path == CONTROL_PATH {
            return self.control(agent, conn, req.into_body());
        }
        let Some(id) = path
            .strip_prefix(STREAM_PATH)
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return status(StatusCode::NOT_FOUND);
        };
        // Only a stream this connection was asked for, and only once.
        let Some(waiter) = lock(&conn.pending).remove(&id) else {
            return status(StatusCode::NOT_FOUND);
        };
        let (stream, body) = LinkStream::new(id, req.into_body());
        match waiter.send(stream) {
            Ok(()) => Response::new(body),
            // The asker gave up (timed out or went away).
            Err(_) => status(StatusCode::GONE),
        }
    }

    fn control(
        &self,
        agent: &str,
        conn: &Arc<Conn>,
        from_agent: Incoming,
    ) -> Response<ChannelBody> {
        let (tx, rx) = mpsc::channel(QUEUED_OPENS);
        {
            let mut control = lock(&conn.control);
            if control.is_some() {
                return status(StatusCode::CONFLICT);
            }
            *control = Some(tx);
        }
        let replaced = {
            let mut agents = lock(&self.inner.agents);
            if conn.gone.load(Ordering::Relaxed) {
                return status(StatusCode::GONE);
            }
            agents.insert(agent.to_owned(), conn.clone())
        };
        if let Some(old) = replaced {
            old.end.send_replace(true);
        }
        // The agent never sends on its control request; its end means the
        // agent is leaving.
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut body = from_agent;
            while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {}
            conn.end.send_replace(true);
        });
        Response::new(ChannelBody(rx))
    }

    /// Asks `agent` to open a stream for the work `header` names and
    /// returns it once the agent has.
    pub async fn open(&self, agent: &str, header: &[u8]) -> Result<LinkStream, LinkError> {
        let conn = lock(&self.inner.agents)
            .get(agent)
            .cloned()
            .ok_or_else(|| LinkError::NotConnected(agent.to_owned()))?;
        let control = lock(&conn.control)
            .clone()
            .ok_or_else(|| LinkError::NotConnected(agent.to_owned()))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = open_frame(id, header)?;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        // However this ends (opened, failed, timed out, or the caller gave
        // up and dropped this future), the id is not left pending.
        let _pending = Pending { conn: &conn, id };
        let opened = async {
            control
                .send(Frame::data(frame))
                .await
                .map_err(|_| LinkError::Closed)?;
            rx.await.map_err(|_| LinkError::Closed)
        };
        match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::OpenTimeout(id)),
        }
    }
}

/// Drops a connection from the registry when its `serve` ends.
struct Forget<'a> {
    hub: &'a Hub,
    agent: &'a str,
    conn: &'a Arc<Conn>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.hub.forget(self.agent, self.conn);
    }
}

/// Removes a stream id from its connection's pending opens when dropped.
struct Pending<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.conn.pending).remove(&self.id);
    }
}

/// The agent's side: runs the link over `io` (a TLS connection to the
/// control plane, handshake done) until it ends, calling `handler` with
/// the header and the stream for each stream the control plane asks for.
/// Returns when the link is gone; the caller reconnects. As for
/// [`Hub::serve`], set `TCP_NODELAY` on the socket.
pub async fn run_agent<I, H, F>(io: I, handler: H) -> Result<(), LinkError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Bytes, LinkStream) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (mut send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, ChannelBody>(TokioIo::new(io))
        .await?;
    let driver = tokio::spawn(connection);
    // Held for the life of the link: dropping it would end the control
    // request, which tells the control plane the agent is leaving.
    let (_leaving, quiet) = mpsc::channel(1);
    let request = |path: String, body| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(body)
            .map_err(|e| LinkError::Protocol(e.to_string()))
    };
    send.ready().await?;
    let response = send
        .send_request(request(CONTROL_PATH.to_owned(), ChannelBody(quiet))?)
        .await?;
    if response.status() != StatusCode::OK {
        driver.abort();
        return Err(LinkError::Protocol(format!(
            "control request answered {}",
            response.status()
        )));
    }
    let mut control = response.into_body();
    let mut buf = BytesMut::new();
    let outcome = loop {
        let frame = match poll_fn(|cx| Pin::new(&mut control).poll_frame(cx)).await {
            None => break Err(LinkError::Closed),
            Some(Err(e)) => break Err(LinkError::Transport(e)),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        loop {
            match next_open(&mut buf) {
                Ok(Some((id, header))) => {
                    let (mut send, handler) = (send.clone(), handler.clone());
                    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
                    let open = request(format!("{STREAM_PATH}{id}"), ChannelBody(rx));
                    tokio::spawn(async move {
                        let opened = async {
                            let req = open?;
                            send.ready().await?;
                            Ok::<_, LinkError>(send.send_request(req).await?)
                        };
                        match opened.await {
                            Ok(r) if r.status() == StatusCode::OK => {
                                handler(header, LinkStream::joined(id, r.into_body(), tx)).await;
                            }
                            Ok(r) => tracing::warn!(id, status = %r.status(), "stream refused"),
                            Err(e) => tracing::warn!(id, error = %e, "could not open stream"),
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    driver.abort();
                    return Err(e);
                }
            }
        }
    };
    driver.abort();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_frames_round_trip_whole_and_in_pieces() {
        let a = open_frame(7, b"exec pod-1").unwrap();
        let b = open_frame(u64::MAX, b"").unwrap();
        let wire: Vec<u8> = [a, b].concat();
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = next_open(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = next_open(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(
                got,
                vec![
                    (7, Bytes::from_static(b"exec pod-1")),
                    (u64::MAX, Bytes::new())
                ]
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversized_and_undersized_frames_are_refused() {
        assert!(open_frame(1, &vec![0; MAX_HEADER_BYTES + 1]).is_err());
        assert!(open_frame(1, &vec![0; MAX_HEADER_BYTES]).is_ok());
        for len in [0u32, 7, (8 + MAX_HEADER_BYTES + 1) as u32, u32::MAX] {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            assert!(next_open(&mut buf).is_err(), "length {len}");
        }
    }
}
