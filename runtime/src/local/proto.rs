//! The local control protocol between the runtime (agent), the pod shims
//! and the helpers: frames of a JSON header plus an optional binary payload
//! (a credential or a log chunk), over unix sockets and pipes.
//!
//! Frame: `u32 header_len | u32 payload_len | header (JSON) | payload`, big
//! endian. Payloads are read into `Zeroizing` buffers because some are
//! credentials; they are never part of the JSON, so a credential is never
//! copied into a string.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::api::{ExitStatus, Isolation, LogStreamKind, PodName, PodStatus};
use crate::local::cgroup::PodCgroup;
use crate::spec::{RunAs, ServiceRef, WorkloadSpec};

/// Largest JSON header.
const MAX_HEADER: usize = 1 << 20;
/// Largest payload.
const MAX_PAYLOAD: usize = 16 << 20;

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn encode_header<T: Serialize>(msg: &T, payload_len: usize) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if json.len() > MAX_HEADER || payload_len > MAX_PAYLOAD {
        return Err(bad("frame too large"));
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

fn decode_lengths(prefix: [u8; 8]) -> io::Result<(usize, usize)> {
    let h = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let p = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]) as usize;
    if h > MAX_HEADER || p > MAX_PAYLOAD {
        return Err(bad("frame too large"));
    }
    Ok((h, p))
}

/// Writes one frame (blocking).
pub(crate) fn write_frame<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    payload: &[u8],
) -> io::Result<()> {
    w.write_all(&encode_header(msg, payload.len())?)?;
    if !payload.is_empty() {
        w.write_all(payload)?;
    }
    w.flush()
}

/// Reads one frame (blocking); `None` on a clean end of stream.
pub(crate) fn read_frame<T: DeserializeOwned>(
    r: &mut impl Read,
) -> io::Result<Option<(T, Zeroizing<Vec<u8>>)>> {
    let mut prefix = [0u8; 8];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (h, p) = decode_lengths(prefix)?;
    let mut header = vec![0u8; h];
    r.read_exact(&mut header)?;
    let mut payload = Zeroizing::new(vec![0u8; p]);
    r.read_exact(&mut payload)?;
    let msg = serde_json::from_slice(&header).map_err(|e| bad(&e.to_string()))?;
    Ok(Some((msg, payload)))
}

/// Writes one frame.
pub(crate) async fn write_frame_async<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
    payload: &[u8],
) -> io::Result<()> {
    w.write_all(&encode_header(msg, payload.len())?).await?;
    if !payload.is_empty() {
        w.write_all(payload).await?;
    }
    w.flush().await
}

/// Reads one frame; `None` on a clean end of stream.
pub(crate) async fn read_frame_async<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> io::Result<Option<(T, Zeroizing<Vec<u8>>)>> {
    let mut prefix = [0u8; 8];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (h, p) = decode_lengths(prefix)?;
    let mut header = vec![0u8; h];
    r.read_exact(&mut header).await?;
    let mut payload = Zeroizing::new(vec![0u8; p]);
    r.read_exact(&mut payload).await?;
    let msg = serde_json::from_slice(&header).map_err(|e| bad(&e.to_string()))?;
    Ok(Some((msg, payload)))
}

/// How the runtime invokes the helper executable: `program args... ROLE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperCommand {
    /// The executable (e.g. the `warden` binary).
    pub program: PathBuf,
    /// Arguments before the role (e.g. `["__runtime"]`).
    pub args: Vec<String>,
}

/// Starts every pod's workload under `warden-injector` (issue 12): the
/// pod's command becomes `BINARY exec --service SERVICE --server SERVER
/// --watch -- COMMAND...`, so the workload gets its service's secrets in
/// memory (its environment) with the pod's own workload credential, kept
/// current by a watch (a rotation restarts the command in place, inside
/// the pod). The CA is given as text in `$WARDEN_CA_PEM` (a CA is public):
/// the data directory holding its file is hidden from pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    /// `warden-injector`, readable and executable by the pods' user.
    pub binary: PathBuf,
    /// The Warden API as pods reach it (`https://HOST:PORT`).
    pub server: String,
    /// The PEM of the CA that signed the API's certificate.
    pub ca_pem: String,
}

/// Where and how a pod's init sees its process: enough for an exec to
/// join its namespaces without being fooled by a recycled PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InitInfo {
    /// The init's PID in the runtime's PID namespace.
    pub pid: i32,
    /// Its start time (field 22 of `/proc/PID/stat`), checked before use.
    pub start_time: u64,
}

/// Everything a shim needs, sent on its stdin (the credential follows as
/// the payload), and kept as `pod.json` (without the credential) so that a
/// later runtime can adopt or clean up the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimConfig {
    pub pod: PodName,
    pub service: ServiceRef,
    pub spec: WorkloadSpec,
    pub template: String,
    pub pod_dir: PathBuf,
    pub node: String,
    pub isolation: Isolation,
    pub cgroup: Option<PodCgroup>,
    pub masked_paths: Vec<PathBuf>,
    pub log_buffer_bytes: usize,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_ms: u64,
    pub helper: HelperCommand,
    pub run_as: Option<RunAs>,
    /// Without a mount namespace: the host tmpfs directory that holds the
    /// credential file.
    pub credential_dir: Option<PathBuf>,
    pub created_at_ms: u64,
    /// Start the workload under `warden-injector`.
    #[serde(default)]
    pub injection: Option<Injection>,
}

/// What the runtime asks a shim over its control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ShimRequest {
    /// Stream status now and on every change.
    Watch,
    /// The kept output, then (with `follow`) new output until the pod ends.
    Logs {
        follow: bool,
        tail_lines: Option<usize>,
    },
    /// Replace the credential file with the payload.
    Credential,
    /// Deliver a signal to the workload (through the pod's init).
    Signal { signal: i32 },
    /// Stop the workload (SIGTERM, then SIGKILL after `grace_ms`), clean up
    /// and exit. Answered `Done` when finished.
    Terminate { grace_ms: u64 },
}

/// A shim's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ShimReply {
    /// The shim is up (on stdout, to the runtime that started it).
    Ready,
    /// Current status.
    Status(Box<ShimStatus>),
    /// A log chunk (payload: the bytes).
    Log { stream: LogStreamKind, at_ms: u64 },
    /// The end of a log stream.
    LogEnd,
    /// The request was done.
    Done,
    /// The request failed.
    Error(String),
}

/// A pod's status as its shim knows it, plus where its init runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimStatus {
    pub pod: PodStatus,
    pub init: Option<InitInfo>,
}

/// The pod init's instructions, sent by the shim on fd 3 (the credential
/// follows as the payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub hostname: String,
    /// In new namespaces: set up mounts, hostname and masks.
    pub isolate: bool,
    pub masked_paths: Vec<PathBuf>,
    pub tmp_bytes: u64,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: Option<RunAs>,
    /// Without a mount namespace: the host tmpfs directory for the
    /// credential (else the pod's own `/run/warden`).
    pub credential_dir: Option<PathBuf>,
    /// In a mount namespace: the host's `warden-injector`, bound read-only
    /// at [`INJECTOR_IN_POD`] (the pod's user may not reach the host path).
    #[serde(default)]
    pub injector: Option<PathBuf>,
}

/// Where a pod in its own mount namespace finds `warden-injector`.
pub(crate) const INJECTOR_IN_POD: &str = "/run/warden/warden-injector";

/// From the init to the shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum InitEvent {
    /// The workload runs (PID inside the pod).
    Started { pid: i32 },
    /// Setup or exec failed.
    Failed { message: String },
    /// The workload ended; the init exits right after.
    Exited { status: ExitStatus },
}

/// The exec helper's instructions, sent by the runtime on fd 3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    /// The pod's init, whose namespaces to join (`None`: no namespaces).
    pub target: Option<InitInfo>,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: Option<RunAs>,
    pub tty: bool,
}

/// From the runtime to an exec helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ExecCommand {
    Signal { signal: i32 },
}

/// From an exec helper to the runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ExecEvent {
    Started,
    /// `setup` is true when joining the pod failed (not the command).
    Failed {
        message: String,
        setup: bool,
    },
    Exited {
        status: ExitStatus,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_payload() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &ShimRequest::Signal { signal: 15 }, b"").unwrap();
        write_frame(&mut buf, &ShimRequest::Credential, b"secret-bytes").unwrap();
        let mut r = &buf[..];
        let (a, p): (ShimRequest, _) = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(a, ShimRequest::Signal { signal: 15 }) && p.is_empty());
        let (b, p): (ShimRequest, _) = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(b, ShimRequest::Credential));
        assert_eq!(&p[..], b"secret-bytes");
        assert!(read_frame::<ShimRequest>(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        assert!(read_frame::<ShimRequest>(&mut &buf[..]).is_err());
    }
}
