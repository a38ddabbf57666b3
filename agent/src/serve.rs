//! The agent's side: runs each operation the control plane sends on its
//! runtime and answers on the same stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use warden_link::{LinkSender, LinkStream};
use warden_runtime::{ExecSession, Runtime, RuntimeError, Signal};
use zeroize::Zeroizing;

use crate::credentials::CredentialFeed;
use crate::wire::{
    self, AgentInfo, CONTROL, CREDENTIAL, EXIT, FrameReader, Op, RESULT, STDERR, STDIN,
    STDIN_CREDIT, STDIN_EOF, STDOUT, WireError,
};

/// Serves a runtime to the control plane: pass [`Agent::handle`] as the
/// link handler (`warden_link::run_agent(io, move |h, s| agent.clone().handle(h, s))`).
#[derive(Clone)]
pub struct Agent {
    runtime: Arc<dyn Runtime>,
    info: AgentInfo,
    credentials: CredentialFeed,
    endpoints: Option<mpsc::UnboundedSender<Vec<wire::Endpoint>>>,
}

impl Agent {
    /// An agent for `runtime`, describing itself as `info`; `credentials`
    /// is the runtime's credential source, fed by the link.
    pub fn new(runtime: Arc<dyn Runtime>, info: AgentInfo, credentials: CredentialFeed) -> Self {
        Self {
            runtime,
            info,
            credentials,
            endpoints: None,
        }
    }

    /// Where to report the control plane's listeners when it names them
    /// (an agent that dials out links to each).
    pub fn with_endpoints(mut self, sink: mpsc::UnboundedSender<Vec<wire::Endpoint>>) -> Self {
        self.endpoints = Some(sink);
        self
    }

    /// Handles one stream: decodes the operation, runs it, answers.
    /// Never panics on what the control plane sends; a header that does not
    /// decode is answered with an error.
    pub async fn handle(self, header: Bytes, stream: LinkStream) {
        let (mut tx, rx) = stream.split();
        let op: Op = match serde_json::from_slice(&header) {
            Ok(op) => op,
            Err(e) => {
                let err = RuntimeError::InvalidRequest(format!("undecodable operation: {e}"));
                let _ = answer::<()>(&mut tx, Err(&err)).await;
                drain(FrameReader::new(rx)).await;
                return;
            }
        };
        if matches!(op, Op::Credentials) {
            self.credentials.attach(tx, rx).await;
            return;
        }
        let name = op.name();
        let mut rx = FrameReader::new(rx);
        if let Err(e) = self.run(op, &mut tx, &mut rx).await {
            tracing::debug!(op = name, error = %e, "runtime operation failed");
        }
        drain(rx).await;
    }

    async fn run(
        &self,
        op: Op,
        tx: &mut LinkSender,
        rx: &mut FrameReader,
    ) -> Result<(), RuntimeError> {
        let rt = &*self.runtime;
        match op {
            Op::Hello => answer(tx, Ok(&self.info)).await,
            // Handled before (it holds the whole stream).
            Op::Credentials => Ok(()),
            Op::Apply { service, spec } => unary(tx, rt.apply(&service, &spec).await).await,
            Op::Scale { service, replicas } => unary(tx, rt.scale(&service, replicas).await).await,
            Op::Stop { service } => unary(tx, rt.stop(&service).await).await,
            Op::Start { service } => unary(tx, rt.start(&service).await).await,
            Op::Restart { service } => unary(tx, rt.restart(&service).await).await,
            Op::Delete { service } => unary(tx, rt.delete(&service).await).await,
            Op::Endpoints { endpoints } => {
                if let Some(sink) = &self.endpoints {
                    let _ = sink.send(endpoints);
                }
                answer(tx, Ok(&())).await
            }
            Op::Services => match rt.services().await {
                Ok(services) => answer(tx, Ok(&services)).await,
                Err(e) => answer::<()>(tx, Err(&e)).await,
            },
            Op::Pods { selector } => match rt.pods(&selector).await {
                Ok(pods) => answer(tx, Ok(&pods)).await,
                Err(e) => answer::<()>(tx, Err(&e)).await,
            },
            Op::RefreshCredential { target } => {
                let credential = match rx.next().await? {
                    Some((CREDENTIAL, data)) => Zeroizing::new(data.to_vec()),
                    _ => return Err(wire::protocol("expected a credential frame")),
                };
                unary(tx, rt.refresh_credential(&target, credential).await).await
            }
            Op::Logs { pod, options } => {
                let mut logs = match rt.logs(&pod, options).await {
                    Ok(l) => l,
                    Err(e) => return unary(tx, Err(e)).await,
                };
                started(tx, Ok(&())).await?;
                while let Some(chunk) = logs.next().await {
                    match chunk {
                        Ok(mut c) => {
                            // Pieces of at most one frame each.
                            while !c.data.is_empty() {
                                let piece = c.data.split_to(c.data.len().min(wire::MAX_LOG_DATA));
                                let part = warden_runtime::LogChunk { data: piece, ..c };
                                send(tx, wire::log_frame(&part)).await?;
                            }
                        }
                        Err(e) => return answer::<()>(tx, Err(&e)).await,
                    }
                }
                finish(tx).await
            }
            Op::Exec { pod, request } => match rt.exec(&pod, request).await {
                Ok(session) => {
                    started(tx, Ok(&())).await?;
                    exec(session, tx, rx).await
                }
                Err(e) => unary(tx, Err(e)).await,
            },
        }
    }
}

/// Pumps an exec session: the control plane's stdin and control frames in,
/// the process's output and exit status out. If the control plane goes
/// away before the process exits, the process gets SIGHUP, as a terminal's
/// process does when its terminal is closed.
async fn exec(
    session: ExecSession,
    tx: &mut LinkSender,
    rx: &mut FrameReader,
) -> Result<(), RuntimeError> {
    let ExecSession {
        stdin,
        mut stdout,
        stderr,
        control,
        exit,
    } = session;
    let hangup = control.clone();
    // Stdin goes to the process from a queue the hub fills only as far as
    // its credit allows (wire::STDIN_WINDOW), so reading the stream never
    // waits for a process that does not read its stdin.
    let (queue, mut queued) = mpsc::unbounded_channel::<Bytes>();
    let in_flight = AtomicUsize::new(0);
    let sender = &*tx;
    let stdin_writer = async {
        let mut stdin = stdin;
        while let Some(data) = queued.recv().await {
            let n = data.len();
            if let Some(s) = &stdin
                && s.write(data).await.is_err()
            {
                stdin = None;
            }
            in_flight.fetch_sub(n, Ordering::SeqCst);
            let credit = u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
            if send(sender, wire::frame(STDIN_CREDIT, &credit))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let input = async {
        let mut queue = Some(queue);
        loop {
            match rx.next().await {
                Ok(Some((STDIN, data))) => {
                    let queued = in_flight.fetch_add(data.len(), Ordering::SeqCst) + data.len();
                    if queued > wire::STDIN_WINDOW {
                        tracing::debug!("the hub sent stdin past its credit; hanging up");
                        let _ = hangup.signal(Signal::HUP);
                        return;
                    }
                    if let Some(q) = &queue {
                        let _ = q.send(data);
                    }
                }
                Ok(Some((STDIN_EOF, _))) => queue = None,
                Ok(Some((CONTROL, msg))) => {
                    let applied = wire::parse_json(&msg).and_then(|m| match m {
                        warden_runtime::ExecControlMsg::Resize(t) => control.resize(t.cols, t.rows),
                        warden_runtime::ExecControlMsg::Signal(s) => control.signal(s),
                    });
                    if let Err(e) = applied {
                        tracing::debug!(error = %e, "exec control refused");
                    }
                }
                // The control plane finished its side: nothing more comes,
                // the process runs on until it exits.
                Ok(None) => return,
                Ok(Some((tag, _))) => {
                    tracing::debug!(tag, "unexpected frame on an exec stream");
                    let _ = hangup.signal(Signal::HUP);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = ?e, "exec stream lost; hanging up");
                    let _ = hangup.signal(Signal::HUP);
                    return;
                }
            }
        }
    };
    let mut stderr = stderr;
    let output = async {
        loop {
            tokio::select! {
                out = stdout.recv() => match out {
                    Some(d) => send_data(sender, STDOUT, d).await?,
                    None => break,
                },
                err = recv_opt(&mut stderr) => match err {
                    Some(d) => send_data(sender, STDERR, d).await?,
                    None => stderr = None,
                },
            }
        }
        if let Some(mut rest) = stderr {
            while let Some(d) = rest.recv().await {
                send_data(sender, STDERR, d).await?;
            }
        }
        let status = exit.await.map_err(|e| WireError::from(&e));
        send(sender, wire::json_frame(EXIT, &status)).await
    };
    // Input runs until the control plane ends its side (after it read the
    // exit status, or when it went away); output until the exit is sent;
    // the stdin writer until input has ended and the queue is written.
    let (_, sent, ()) = tokio::join!(input, output, stdin_writer);
    sent?;
    finish(tx).await
}

/// Reads what is left of the control plane's side before the stream is
/// dropped: dropping a stream resets it in both directions (RFC 9113
/// §5.4.2), which could discard the answer before the control plane read
/// it. Bounded, should the control plane never end its side.
async fn drain(mut rx: FrameReader) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Ok(Some(_)) = rx.next().await {}
    })
    .await;
}

/// How long [`drain`] waits.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The next message of an optional receiver; pending forever without one.
async fn recv_opt(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends output in frames of at most [`wire::MAX_FRAME`] bytes.
pub(crate) async fn send_data(
    tx: &LinkSender,
    tag: u8,
    mut data: Bytes,
) -> Result<(), RuntimeError> {
    while !data.is_empty() {
        let piece = data.split_to(data.len().min(wire::MAX_FRAME));
        send(tx, wire::frame(tag, &piece)).await?;
    }
    Ok(())
}

async fn send(tx: &LinkSender, frame: Bytes) -> Result<(), RuntimeError> {
    tx.send(frame).await.map_err(|e| wire::link_lost(&e))
}

async fn finish(tx: &mut LinkSender) -> Result<(), RuntimeError> {
    tx.finish().await.map_err(|e| wire::link_lost(&e))
}

/// Answers a unit operation and ends the stream.
async fn unary(tx: &mut LinkSender, result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Ok(()) => answer(tx, Ok(&())).await,
        Err(e) => answer::<()>(tx, Err(&e)).await,
    }
}

/// Sends the [`RESULT`] frame and ends the stream.
async fn answer<T: Serialize>(
    tx: &mut LinkSender,
    result: Result<&T, &RuntimeError>,
) -> Result<(), RuntimeError> {
    started(tx, result).await?;
    finish(tx).await
}

/// Sends the [`RESULT`] frame; the stream goes on.
async fn started<T: Serialize>(
    tx: &LinkSender,
    result: Result<&T, &RuntimeError>,
) -> Result<(), RuntimeError> {
    let body = result.map_err(WireError::from);
    send(tx, wire::json_frame(RESULT, &body)).await
}
