//! The runtime protocol's bytes. Each runtime operation is one link stream:
//! its header is an [`Op`] (JSON), and both directions carry frames of
//! `u8` tag, `u32` big-endian length and payload, at most [`MAX_FRAME`]
//! bytes. The agent answers every operation first with one [`RESULT`]
//! frame (`{"Ok": value}` or `{"Err": error}`); exec and logs then stream.
//!
//! | tag | direction | payload |
//! |-----|-----------|---------|
//! | [`RESULT`] | agent → hub | JSON `Result<T, WireError>` |
//! | [`STDIN`] | hub → agent | bytes for the process's stdin |
//! | [`STDIN_EOF`] | hub → agent | empty: close stdin |
//! | [`CONTROL`] | hub → agent | JSON [`ExecControlMsg`](warden_runtime::ExecControlMsg) |
//! | [`STDOUT`], [`STDERR`] | agent → hub | the process's output |
//! | [`EXIT`] | agent → hub | JSON `Result<ExitStatus, WireError>`, last |
//! | [`LOG`] | agent → hub | `u8` stream (1 stdout, 2 stderr), `u64` ms, bytes |
//! | [`CREDENTIAL`] | hub → agent | a workload credential |
//! | [`STDIN_CREDIT`] | agent → hub | `u32` big-endian: stdin bytes the agent has written to the process, which the hub may send again |
//!
//! Stdin is flow-controlled by credit, as SSH channels are by windows (RFC
//! 4254 §5.2): the hub sends at most [`STDIN_WINDOW`] bytes the agent has
//! not credited back. The agent therefore always has room for the stdin
//! that arrives, never stops reading the stream for it, and a control frame
//! (a signal, a resize) is never stuck behind stdin a process does not
//! read.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use warden_link::{LinkError, LinkReceiver};
use warden_runtime::{
    ExecRequest, LogOptions, PodRef, RuntimeError, Selector, ServiceRef, WorkloadSpec,
};

/// Largest frame payload either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// Most log bytes in one [`LOG`] frame (the rest of the frame is its
/// stream and time).
pub const MAX_LOG_DATA: usize = MAX_FRAME - 9;

/// The agent's answer to the operation.
pub const RESULT: u8 = 1;
/// Bytes for an exec'd process's stdin.
pub const STDIN: u8 = 2;
/// Stdin bytes written to the process since the last credit.
pub const STDIN_CREDIT: u8 = 10;
/// Stdin bytes in flight (sent, not yet credited back) at most.
pub const STDIN_WINDOW: usize = 1 << 20;
/// Close an exec'd process's stdin.
pub const STDIN_EOF: u8 = 3;
/// Resize or signal an exec'd process.
pub const CONTROL: u8 = 4;
/// An exec'd process's stdout.
pub const STDOUT: u8 = 5;
/// An exec'd process's stderr.
pub const STDERR: u8 = 6;
/// An exec'd process's exit status, after all of its output.
pub const EXIT: u8 = 7;
/// A piece of a pod's log.
pub const LOG: u8 = 8;
/// A workload credential to install.
pub const CREDENTIAL: u8 = 9;

/// What a stream asks the agent to do (its header).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Who the agent is and what it runs; answered with [`AgentInfo`].
    Hello,
    /// [`Runtime::apply`](warden_runtime::Runtime::apply).
    Apply {
        /// The service.
        service: ServiceRef,
        /// Its workload.
        spec: WorkloadSpec,
    },
    /// `Runtime::scale`.
    Scale {
        /// The service.
        service: ServiceRef,
        /// The new replica count.
        replicas: u32,
    },
    /// `Runtime::stop`.
    Stop {
        /// The service.
        service: ServiceRef,
    },
    /// `Runtime::start`.
    Start {
        /// The service.
        service: ServiceRef,
    },
    /// `Runtime::restart`.
    Restart {
        /// The service.
        service: ServiceRef,
    },
    /// `Runtime::delete`.
    Delete {
        /// The service.
        service: ServiceRef,
    },
    /// The control plane's agent listeners now (every replica's): the
    /// agent keeps one link per replica. Answered with `()`.
    Endpoints {
        /// One per replica.
        endpoints: Vec<Endpoint>,
    },
    /// `Runtime::services`.
    Services,
    /// `Runtime::pods`.
    Pods {
        /// Which pods.
        selector: Selector,
    },
    /// `Runtime::exec`.
    Exec {
        /// The pod.
        pod: PodRef,
        /// The command.
        request: ExecRequest,
    },
    /// `Runtime::logs`.
    Logs {
        /// The pod.
        pod: PodRef,
        /// Follow, tail.
        options: LogOptions,
    },
    /// The link's credential stream (opened once per link by the control
    /// plane; see `credentials.rs`).
    Credentials,
    /// `Runtime::refresh_credential`; the credential follows in one
    /// [`CREDENTIAL`] frame (never in the header, which is logged on error).
    RefreshCredential {
        /// Which pods.
        target: warden_runtime::CredentialTarget,
    },
}

impl Op {
    /// The operation's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Apply { .. } => "apply",
            Self::Scale { .. } => "scale",
            Self::Stop { .. } => "stop",
            Self::Start { .. } => "start",
            Self::Restart { .. } => "restart",
            Self::Delete { .. } => "delete",
            Self::Endpoints { .. } => "endpoints",
            Self::Services => "services",
            Self::Pods { .. } => "pods",
            Self::Exec { .. } => "exec",
            Self::Logs { .. } => "logs",
            Self::RefreshCredential { .. } => "refresh_credential",
            Self::Credentials => "credentials",
        }
    }
}

/// A control-plane replica's agent listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The replica's node id: an agent keeps one link per node, so a
    /// replica known under a new address is dialled there instead.
    pub node: String,
    /// `host:port`.
    pub address: String,
}

/// What an agent says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// `local` or `kubernetes`.
    pub runtime: String,
    /// The agent's version (`warden --version`).
    pub version: String,
    /// The node or cluster the agent runs on.
    pub node: String,
}

/// A [`RuntimeError`] as it crosses the link: the variant and its fields,
/// so the control plane answers the same status the agent's runtime
/// decided. Errors of the agent's own machine (I/O, helpers) arrive as
/// [`RuntimeError::Agent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    /// [`RuntimeError::InvalidSpec`].
    InvalidSpec {
        /// Line.
        line: Option<usize>,
        /// Column.
        column: Option<usize>,
        /// Message.
        message: String,
    },
    /// [`RuntimeError::InvalidRequest`] (and invalid names).
    InvalidRequest {
        /// Message.
        message: String,
    },
    /// [`RuntimeError::ServiceNotFound`].
    ServiceNotFound {
        /// The service.
        service: String,
    },
    /// [`RuntimeError::PodNotFound`].
    PodNotFound {
        /// The pod.
        pod: String,
    },
    /// [`RuntimeError::PodNotRunning`].
    PodNotRunning {
        /// The pod.
        pod: String,
        /// Its phase.
        phase: String,
    },
    /// [`RuntimeError::ExecFailed`].
    ExecFailed {
        /// The pod.
        pod: String,
        /// Why.
        message: String,
    },
    /// [`RuntimeError::Unsupported`].
    Unsupported {
        /// Message.
        message: String,
    },
    /// [`RuntimeError::RolloutStalled`].
    RolloutStalled {
        /// The service.
        service: String,
        /// The pod.
        pod: String,
        /// How long the agent waited.
        waited_ms: u64,
    },
    /// [`RuntimeError::Credential`].
    Credential {
        /// Message.
        message: String,
    },
    /// [`RuntimeError::Unavailable`].
    Unavailable {
        /// Message.
        message: String,
    },
    /// Anything else: the agent's own failure.
    Agent {
        /// Message.
        message: String,
    },
}

impl From<&RuntimeError> for WireError {
    fn from(e: &RuntimeError) -> Self {
        match e {
            RuntimeError::InvalidSpec {
                line,
                column,
                message,
            } => Self::InvalidSpec {
                line: *line,
                column: *column,
                message: message.clone(),
            },
            RuntimeError::InvalidName(n) => Self::InvalidRequest {
                message: n.to_string(),
            },
            RuntimeError::InvalidRequest(m) => Self::InvalidRequest { message: m.clone() },
            RuntimeError::ServiceNotFound(s) => Self::ServiceNotFound { service: s.clone() },
            RuntimeError::PodNotFound(p) => Self::PodNotFound { pod: p.clone() },
            RuntimeError::PodNotRunning { pod, phase } => Self::PodNotRunning {
                pod: pod.clone(),
                phase: phase.clone(),
            },
            RuntimeError::ExecFailed { pod, message } => Self::ExecFailed {
                pod: pod.clone(),
                message: message.clone(),
            },
            RuntimeError::Unsupported(m) => Self::Unsupported { message: m.clone() },
            RuntimeError::RolloutStalled {
                service,
                pod,
                waited_ms,
            } => Self::RolloutStalled {
                service: service.clone(),
                pod: pod.clone(),
                waited_ms: *waited_ms,
            },
            RuntimeError::Credential(m) => Self::Credential { message: m.clone() },
            RuntimeError::Unavailable(m) => Self::Unavailable { message: m.clone() },
            other => Self::Agent {
                message: other.to_string(),
            },
        }
    }
}

impl From<WireError> for RuntimeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::InvalidSpec {
                line,
                column,
                message,
            } => Self::InvalidSpec {
                line,
                column,
                message,
            },
            WireError::InvalidRequest { message } => Self::InvalidRequest(message),
            WireError::ServiceNotFound { service } => Self::ServiceNotFound(service),
            WireError::PodNotFound { pod } => Self::PodNotFound(pod),
            WireError::PodNotRunning { pod, phase } => Self::PodNotRunning { pod, phase },
            WireError::ExecFailed { pod, message } => Self::ExecFailed { pod, message },
            WireError::Unsupported { message } => Self::Unsupported(message),
            WireError::RolloutStalled {
                service,
                pod,
                waited_ms,
            } => Self::RolloutStalled {
                service,
                pod,
                waited_ms,
            },
            WireError::Credential { message } => Self::Credential(message),
            WireError::Unavailable { message } => Self::Unavailable(message),
            WireError::Agent { message } => Self::Agent(message),
        }
    }
}

/// One frame.
pub fn frame(tag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(tag);
    b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    b.put_slice(payload);
    b.freeze()
}

/// A frame carrying `value` as JSON.
pub fn json_frame<T: Serialize>(tag: u8, value: &T) -> Bytes {
    // Serializing the protocol's own types cannot fail (no maps with
    // non-string keys, no failing Serialize impls).
    frame(tag, &serde_json::to_vec(value).unwrap_or_default())
}

/// A [`LOG`] frame.
pub fn log_frame(chunk: &warden_runtime::LogChunk) -> Bytes {
    let mut b = BytesMut::with_capacity(14 + chunk.data.len());
    b.put_u8(LOG);
    b.put_u32(u32::try_from(9 + chunk.data.len()).unwrap_or(u32::MAX));
    b.put_u8(match chunk.stream {
        warden_runtime::LogStreamKind::Stdout => 1,
        warden_runtime::LogStreamKind::Stderr => 2,
    });
    b.put_u64(chunk.at_ms);
    b.put_slice(&chunk.data);
    b.freeze()
}

/// Decodes a [`LOG`] frame's payload.
pub fn parse_log(mut p: Bytes) -> Result<warden_runtime::LogChunk, RuntimeError> {
    if p.len() < 9 {
        return Err(protocol("a log frame shorter than its header"));
    }
    let stream = match p.get_u8() {
        1 => warden_runtime::LogStreamKind::Stdout,
        2 => warden_runtime::LogStreamKind::Stderr,
        n => return Err(protocol(&format!("log stream {n}"))),
    };
    let at_ms = p.get_u64();
    Ok(warden_runtime::LogChunk {
        stream,
        at_ms,
        data: p,
    })
}

/// Decodes a JSON payload.
pub fn parse_json<T: serde::de::DeserializeOwned>(p: &[u8]) -> Result<T, RuntimeError> {
    serde_json::from_slice(p).map_err(|e| protocol(&format!("undecodable frame: {e}")))
}

/// A peer broke the protocol.
pub fn protocol(what: &str) -> RuntimeError {
    RuntimeError::Agent(format!("runtime protocol: {what}"))
}

/// What a link failure means for the operation on it.
pub fn link_lost(e: &LinkError) -> RuntimeError {
    RuntimeError::Unavailable(format!("the link to the agent broke: {e}"))
}

/// Reads frames from one side of a stream.
pub struct FrameReader {
    rx: LinkReceiver,
    buf: BytesMut,
}

impl FrameReader {
    /// Reads from `rx`.
    pub fn new(rx: LinkReceiver) -> Self {
        Self {
            rx,
            buf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` when the peer finished cleanly between
    /// frames. A frame over [`MAX_FRAME`], a side ending inside a frame and
    /// a broken link are errors.
    pub async fn next(&mut self) -> Result<Option<(u8, Bytes)>, FrameError> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len > MAX_FRAME {
                    return Err(FrameError::Protocol(format!(
                        "a frame of {len} bytes (limit {MAX_FRAME})"
                    )));
                }
                if self.buf.len() >= 5 + len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    return Ok(Some((tag, self.buf.split_to(len).freeze())));
                }
            }
            match self.rx.recv().await {
                Some(Ok(data)) => self.buf.extend_from_slice(&data),
                Some(Err(e)) => return Err(FrameError::Link(e)),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(FrameError::Protocol(
                        "the stream ended inside a frame".into(),
                    ));
                }
            }
        }
    }
}

/// Why [`FrameReader::next`] failed.
#[derive(Debug)]
pub enum FrameError {
    /// The link broke.
    Link(LinkError),
    /// The peer sent something the protocol does not allow.
    Protocol(String),
}

impl From<FrameError> for RuntimeError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Link(e) => link_lost(&e),
            FrameError::Protocol(m) => protocol(&m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_error_crosses_the_link_with_its_fault() {
        let errors = [
            RuntimeError::InvalidSpec {
                line: Some(3),
                column: Some(7),
                message: "replicas: too many".into(),
            },
            RuntimeError::InvalidRequest("x".into()),
            RuntimeError::ServiceNotFound("a/b/c/d".into()),
            RuntimeError::PodNotFound("p".into()),
            RuntimeError::PodNotRunning {
                pod: "p".into(),
                phase: "Pending".into(),
            },
            RuntimeError::ExecFailed {
                pod: "p".into(),
                message: "no such file".into(),
            },
            RuntimeError::Unsupported("u".into()),
            RuntimeError::RolloutStalled {
                service: "s".into(),
                pod: "p".into(),
                waited_ms: 5,
            },
            RuntimeError::Credential("c".into()),
            RuntimeError::Unavailable("gone".into()),
            RuntimeError::Helper("shim died".into()),
        ];
        for e in errors {
            let wire: WireError =
                serde_json::from_slice(&serde_json::to_vec(&WireError::from(&e)).unwrap()).unwrap();
            let back = RuntimeError::from(wire);
            assert_eq!(back.fault(), e.fault(), "{e}");
            if !matches!(e, RuntimeError::Helper(_)) {
                assert_eq!(back.to_string(), e.to_string());
            } else {
                assert!(back.to_string().contains("shim died"));
            }
        }
    }

    #[test]
    fn log_frames_round_trip_and_short_ones_are_refused() {
        let chunk = warden_runtime::LogChunk {
            stream: warden_runtime::LogStreamKind::Stderr,
            at_ms: 1_700_000_000_123,
            data: Bytes::from_static(b"hello\n"),
        };
        let f = log_frame(&chunk);
        assert_eq!(f[0], LOG);
        assert_eq!(parse_log(f.slice(5..)).unwrap(), chunk);
        for n in 0..9 {
            assert!(parse_log(f.slice(5..5 + n)).is_err());
        }
        let mut bad = f.slice(5..).to_vec();
        bad[0] = 9;
        assert!(parse_log(Bytes::from(bad)).is_err());
    }
}
