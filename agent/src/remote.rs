//! The control plane's side: [`RemoteRuntime`], a [`Runtime`] whose
//! operations run on an agent at the other end of the link.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, oneshot};
use warden_link::{Hub, LinkSender};
use warden_runtime::{
    CredentialTarget, ExecControl, ExecControlMsg, ExecRequest, ExecSession, ExitFuture,
    ExitStatus, LogOptions, LogStream, PodRef, PodStatus, Runtime, RuntimeError, Selector,
    ServiceRef, WorkloadSpec,
};
use zeroize::Zeroizing;

use crate::serve::send_data;
use crate::wire::{
    self, AgentInfo, CONTROL, CREDENTIAL, EXIT, FrameReader, LOG, Op, RESULT, STDERR, STDIN,
    STDIN_CREDIT, STDIN_EOF, STDOUT, WireError,
};

/// Output frames queued per exec stream before the link's flow control
/// holds the agent back.
const OUTPUT_QUEUE: usize = 16;

/// The runtime of the agent named `agent`, reached through `hub`.
#[derive(Clone)]
pub struct RemoteRuntime {
    hub: Hub,
    agent: String,
}

impl RemoteRuntime {
    /// The runtime behind `agent`'s link on `hub`.
    pub fn new(hub: Hub, agent: impl Into<String>) -> Self {
        Self {
            hub,
            agent: agent.into(),
        }
    }

    /// The agent's name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Opens the link's credential stream (see [`crate::serve_credentials`]).
    pub async fn credential_stream(&self) -> Result<warden_link::LinkStream, RuntimeError> {
        let header = serde_json::to_vec(&Op::Credentials)
            .map_err(|e| RuntimeError::InvalidRequest(e.to_string()))?;
        self.hub
            .open(&self.agent, &header)
            .await
            .map_err(|e| wire::link_lost(&e))
    }

    /// Tells the agent every listener of the control plane (it links to
    /// each).
    pub async fn tell_endpoints(
        &self,
        endpoints: Vec<crate::wire::Endpoint>,
    ) -> Result<(), RuntimeError> {
        self.call(Op::Endpoints { endpoints }).await
    }

    /// What the agent says about itself.
    pub async fn hello(&self) -> Result<AgentInfo, RuntimeError> {
        self.call(Op::Hello).await
    }

    async fn open(&self, op: &Op) -> Result<(LinkSender, FrameReader), RuntimeError> {
        let header = serde_json::to_vec(op)
            .map_err(|e| RuntimeError::InvalidRequest(format!("unencodable operation: {e}")))?;
        let stream = self
            .hub
            .open(&self.agent, &header)
            .await
            .map_err(|e| match e {
                warden_link::LinkError::NotConnected(_) => {
                    RuntimeError::Unavailable(format!("agent {} is not connected", self.agent))
                }
                e => wire::link_lost(&e),
            })?;
        let (tx, rx) = stream.split();
        Ok((tx, FrameReader::new(rx)))
    }

    /// Runs an operation that answers once.
    async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T, RuntimeError> {
        let (mut tx, mut rx) = self.open(&op).await?;
        tx.finish().await.map_err(|e| wire::link_lost(&e))?;
        let value = result(&mut rx).await?;
        match rx.next().await? {
            None => Ok(value),
            Some((tag, _)) => Err(wire::protocol(&format!(
                "frame {tag} after the {} answer",
                op.name()
            ))),
        }
    }
}

/// Reads the [`RESULT`] frame.
async fn result<T: DeserializeOwned>(rx: &mut FrameReader) -> Result<T, RuntimeError> {
    match rx.next().await? {
        Some((RESULT, body)) => {
            wire::parse_json::<Result<T, WireError>>(&body)?.map_err(Into::into)
        }
        Some((tag, _)) => Err(wire::protocol(&format!("frame {tag} before the answer"))),
        None => Err(wire::protocol("the stream ended without an answer")),
    }
}

impl Runtime for RemoteRuntime {
    fn apply<'a>(
        &'a self,
        service: &'a ServiceRef,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Apply {
            service: service.clone(),
            spec: spec.clone(),
        }))
    }

    fn scale<'a>(
        &'a self,
        service: &'a ServiceRef,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Scale {
            service: service.clone(),
            replicas,
        }))
    }

    fn stop<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Stop {
            service: service.clone(),
        }))
    }

    fn start<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Start {
            service: service.clone(),
        }))
    }

    fn restart<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Restart {
            service: service.clone(),
        }))
    }

    fn delete<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.call(Op::Delete {
            service: service.clone(),
        }))
    }

    fn services<'a>(&'a self) -> BoxFuture<'a, Result<Vec<ServiceRef>, RuntimeError>> {
        Box::pin(self.call(Op::Services))
    }

    fn pods<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodStatus>, RuntimeError>> {
        Box::pin(self.call(Op::Pods {
            selector: selector.clone(),
        }))
    }

    fn exec<'a>(
        &'a self,
        pod: &'a PodRef,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, RuntimeError>> {
        Box::pin(async move {
            request.validate()?;
            let tty = request.tty.is_some();
            let wants_stdin = request.stdin;
            let (tx, mut rx) = self
                .open(&Op::Exec {
                    pod: pod.clone(),
                    request,
                })
                .await?;
            result::<()>(&mut rx).await?;
            Ok(exec_session(tx, rx, tty, wants_stdin))
        })
    }

    fn logs<'a>(
        &'a self,
        pod: &'a PodRef,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>> {
        Box::pin(async move {
            let (mut tx, mut rx) = self
                .open(&Op::Logs {
                    pod: pod.clone(),
                    options,
                })
                .await?;
            tx.finish().await.map_err(|e| wire::link_lost(&e))?;
            result::<()>(&mut rx).await?;
            let stream = futures::stream::unfold(Some(rx), |rx| async move {
                let mut rx = rx?;
                let item = match rx.next().await {
                    Ok(None) => return None,
                    Ok(Some((LOG, data))) => wire::parse_log(data),
                    Ok(Some((RESULT, body))) => {
                        match wire::parse_json::<Result<(), WireError>>(&body) {
                            Ok(Err(e)) => Err(e.into()),
                            Ok(Ok(())) => Err(wire::protocol("a second answer on a log stream")),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(Some((tag, _))) => {
                        Err(wire::protocol(&format!("frame {tag} on a log stream")))
                    }
                    Err(e) => Err(e.into()),
                };
                // After an error the stream ends.
                let next = if item.is_ok() { Some(rx) } else { None };
                Some((item, next))
            });
            Ok(Box::pin(stream) as LogStream)
        })
    }

    fn refresh_credential<'a>(
        &'a self,
        target: &'a CredentialTarget,
        credential: Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let (mut tx, mut rx) = self
                .open(&Op::RefreshCredential {
                    target: target.clone(),
                })
                .await?;
            send_data(&tx, CREDENTIAL, Bytes::copy_from_slice(&credential)).await?;
            tx.finish().await.map_err(|e| wire::link_lost(&e))?;
            result(&mut rx).await
        })
    }
}

/// The caller's handles for an exec stream, and two tasks: one forwarding
/// stdin and control messages to the agent, one delivering output and then
/// the exit status. A broken link resolves the exit with
/// [`RuntimeError::Unavailable`], never with a status the process did not
/// have.
fn exec_session(tx: LinkSender, mut rx: FrameReader, tty: bool, wants_stdin: bool) -> ExecSession {
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (err_tx, err_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (control, mut control_rx) = ExecControl::new(tty);
    let (exit_tx, exit_rx) = oneshot::channel();

    // Stdin is sent only as far as the agent's credit allows (see
    // `wire::STDIN_CREDIT`), so control messages are never stuck behind
    // stdin the process does not read.
    let credit = Arc::new(Semaphore::new(wire::STDIN_WINDOW));
    let credited = credit.clone();
    let writer = tokio::spawn(async move {
        let stdin = async {
            if !wants_stdin {
                return;
            }
            while let Some(mut data) = stdin_rx.recv().await {
                while !data.is_empty() {
                    let piece = data.split_to(data.len().min(wire::MAX_FRAME));
                    let n = u32::try_from(piece.len()).unwrap_or(u32::MAX);
                    match credit.acquire_many(n).await {
                        Ok(permits) => permits.forget(),
                        Err(_) => return,
                    }
                    if tx.send(wire::frame(STDIN, &piece)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(wire::frame(STDIN_EOF, &[])).await;
        };
        let control = async {
            while let Some(msg) = control_rx.recv().await {
                let frame = wire::json_frame::<ExecControlMsg>(CONTROL, &msg);
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        };
        tokio::join!(stdin, control);
        // Hold the sending side open (not finished) until the exit status
        // arrives and this task is aborted: finishing it would read, on the
        // agent, as the control plane leaving.
        std::future::pending::<()>().await;
    });

    tokio::spawn(async move {
        let status: Result<ExitStatus, RuntimeError> = loop {
            match rx.next().await {
                Ok(Some((STDOUT, d))) => {
                    let _ = out_tx.send(d).await;
                }
                Ok(Some((STDERR, d))) => {
                    let _ = err_tx.send(d).await;
                }
                Ok(Some((STDIN_CREDIT, body))) => match <[u8; 4]>::try_from(body.as_ref()) {
                    Ok(n) => credited.add_permits(
                        usize::try_from(u32::from_be_bytes(n))
                            .unwrap_or(0)
                            .min(wire::STDIN_WINDOW),
                    ),
                    Err(_) => break Err(wire::protocol("a malformed stdin credit")),
                },
                Ok(Some((EXIT, body))) => {
                    break wire::parse_json::<Result<ExitStatus, WireError>>(&body)
                        .and_then(|r| r.map_err(Into::into));
                }
                Ok(Some((tag, _))) => {
                    break Err(wire::protocol(&format!("frame {tag} on an exec stream")));
                }
                Ok(None) => {
                    break Err(wire::protocol(
                        "the exec stream ended without an exit status",
                    ));
                }
                Err(e) => break Err(e.into()),
            }
        };
        writer.abort();
        drop((out_tx, err_tx));
        let _ = exit_tx.send(status);
    });

    ExecSession::new(
        wants_stdin.then_some(stdin_tx),
        out_rx,
        (!tty).then_some(err_rx),
        control,
        ExitFuture::new(exit_rx),
    )
}
