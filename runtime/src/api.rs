//! The transport-neutral [`Runtime`] trait and the data that crosses it.
//!
//! Everything here that an agent sends to the control plane is `serde`-able
//! (pod status, exec requests, log chunks, exit statuses). Streams are tokio
//! channels of [`Bytes`], which map one-to-one onto the multiplexed streams
//! of the agent link.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use warden_types::{ScopeKind, ScopePath};
use zeroize::Zeroizing;

use crate::{RuntimeError, ServiceRef, WorkloadSpec};

/// Largest workload credential accepted (64 KiB).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;
/// Most arguments in an exec request.
pub const MAX_EXEC_ARGS: usize = 256;
/// Largest exec argv, in bytes.
pub const MAX_EXEC_ARGV_BYTES: usize = 64 * 1024;
/// Environment variables an exec request may set (what OpenSSH sends by
/// default, plus the terminal). `LC_*` matches any locale variable.
pub const EXEC_ENV_ALLOWLIST: &[&str] = &[
    "TERM",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "COLUMNS",
    "LINES",
    "COLORTERM",
];
/// Most environment variables in an exec request.
pub const MAX_EXEC_ENV: usize = 32;

/// A pod's name: `[a-z0-9][a-z0-9-]{0,62}`, also its hostname and its
/// cgroup's directory name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PodName(String);

impl PodName {
    /// Parses a pod name.
    pub fn parse(s: &str) -> Result<Self, RuntimeError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RuntimeError::InvalidRequest(format!(
                "invalid pod name {:?}: 1-63 characters of a-z, 0-9 and '-'",
                s.chars().take(64).collect::<String>()
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PodName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PodName({})", self.0)
    }
}

/// A pod, named together with the service it must belong to. A runtime
/// answers [`RuntimeError::PodNotFound`] when the pod exists under another
/// service, so authorizing the service authorizes the pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRef {
    /// The service the caller was authorized for.
    pub service: ServiceRef,
    /// The pod's name.
    pub name: PodName,
}

/// Which pods [`Runtime::pods`] lists. Serialized as its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every pod of every service in `org/project/env`.
    Environment(ScopePath),
    /// The pods of one service.
    Service(ServiceRef),
}

impl Selector {
    /// An environment or service path.
    pub fn parse(s: &str) -> Result<Self, RuntimeError> {
        let path = ScopePath::parse(s)?;
        match path.kind() {
            ScopeKind::Environment => Ok(Self::Environment(path)),
            ScopeKind::Service => Ok(Self::Service(ServiceRef::from_path(path)?)),
            _ => Err(RuntimeError::InvalidRequest(format!(
                "{s}: select pods by ORG/PROJECT/ENV or ORG/PROJECT/ENV/SERVICE"
            ))),
        }
    }

    /// The selected path.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Environment(p) => p.as_str(),
            Self::Service(s) => s.as_str(),
        }
    }

    /// Whether a service's pods are selected.
    pub fn matches(&self, service: &ServiceRef) -> bool {
        match self {
            Self::Environment(env) => env.contains(service.path()),
            Self::Service(s) => s == service,
        }
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A pod's lifecycle phase (Kubernetes' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    /// Created; the workload has not started yet.
    Pending,
    /// The workload is running, or waiting to be restarted after an exit.
    Running,
    /// The workload ended with status 0 and will not be restarted.
    Succeeded,
    /// The workload failed and will not be restarted.
    Failed,
    /// The pod is being stopped and removed.
    Terminating,
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Terminating => "Terminating",
        })
    }
}

/// Which cgroup hierarchy limits a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies (memory, cpu, pids).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Exactly which isolation a pod got. Never silent: a pod without
/// namespaces or without limits says so, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Own PID, mount, UTS and IPC namespaces, and a cgroup enforcing the
    /// spec's memory, CPU and pids limits.
    NamespacesAndCgroup {
        /// The cgroup hierarchy in use.
        cgroup: CgroupVersion,
    },
    /// Own namespaces, but no cgroup: resource limits are not enforced.
    NamespacesOnly {
        /// Why cgroups are unavailable.
        reason: String,
    },
    /// A plain supervised process tree: no namespaces, no limits.
    None {
        /// Why namespaces are unavailable.
        reason: String,
    },
    /// A container that a cluster's container runtime isolates and limits
    /// (the Kubernetes backend): what it enforces is the cluster's
    /// configuration, which Warden does not see.
    ContainerRuntime {
        /// The container runtime, from the container ID's scheme
        /// (`containerd`, `cri-o`), when the cluster reported one.
        runtime: Option<String>,
    },
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NamespacesAndCgroup { cgroup } => write!(
                f,
                "namespaces (pid, mount, uts, ipc) + cgroup {}",
                match cgroup {
                    CgroupVersion::V1 => "v1",
                    CgroupVersion::V2 => "v2",
                }
            ),
            Self::NamespacesOnly { reason } => write!(
                f,
                "namespaces (pid, mount, uts, ipc), no cgroup limits: {reason}"
            ),
            Self::None { reason } => write!(f, "none: namespaces unavailable: {reason}"),
            Self::ContainerRuntime { runtime } => write!(
                f,
                "container isolated and limited by the cluster's runtime ({})",
                runtime.as_deref().unwrap_or("not reported")
            ),
        }
    }
}

/// Why a workload's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitReason {
    /// Exited with status 0.
    Completed,
    /// Exited with a non-zero status.
    Error,
    /// Killed by the kernel because the pod reached its memory limit.
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// Killed by a signal (not the OOM killer).
    Signaled,
    /// Could not be started (program not found, not executable, setup error).
    StartFailed,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Completed => "Completed",
            Self::Error => "Error",
            Self::OomKilled => "OOMKilled",
            Self::Signaled => "Signaled",
            Self::StartFailed => "StartFailed",
        })
    }
}

/// How a process ended: `code` is the exit status, or 128 + the signal
/// number when it was killed (137 for SIGKILL), as shells report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit status, or 128 + signal.
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// A normal exit.
    pub fn exited(code: i32) -> Self {
        Self { code, signal: None }
    }

    /// Death by signal `sig`.
    pub fn signaled(sig: i32) -> Self {
        Self {
            code: 128 + sig,
            signal: Some(sig),
        }
    }

    /// Whether the process exited with status 0.
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }
}

/// The end of a workload's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit status (128 + signal when killed).
    pub status: ExitStatus,
    /// Why it ended.
    pub reason: ExitReason,
    /// When, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// Details for [`ExitReason::StartFailed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What [`Runtime::pods`] reports for each pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// The pod's name (also its hostname).
    pub name: PodName,
    /// The service it belongs to.
    pub service: ServiceRef,
    /// Lifecycle phase.
    pub phase: PodPhase,
    /// Whether the workload is running now (there are no probes yet).
    pub ready: bool,
    /// How many times the workload was restarted in this pod.
    pub restarts: u32,
    /// When the current (or last) run of the workload started, in
    /// milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// How the last run ended, if one has.
    pub last_exit: Option<LastExit>,
    /// The node (agent) or cluster running the pod.
    pub node: String,
    /// Which isolation applied to this pod.
    pub isolation: Isolation,
    /// Template digest of the spec the pod was made from
    /// ([`WorkloadSpec::template_hash`]).
    pub template: String,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TermSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// A signal a caller may send to an exec'd process or a pod: the named
/// POSIX signals only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct Signal(i32);

impl Signal {
    /// SIGHUP.
    pub const HUP: Self = Self(libc::SIGHUP);
    /// SIGINT.
    pub const INT: Self = Self(libc::SIGINT);
    /// SIGQUIT.
    pub const QUIT: Self = Self(libc::SIGQUIT);
    /// SIGKILL.
    pub const KILL: Self = Self(libc::SIGKILL);
    /// SIGUSR1.
    pub const USR1: Self = Self(libc::SIGUSR1);
    /// SIGUSR2.
    pub const USR2: Self = Self(libc::SIGUSR2);
    /// SIGTERM.
    pub const TERM: Self = Self(libc::SIGTERM);

    const NAMES: &[(&'static str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ABRT", libc::SIGABRT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("WINCH", libc::SIGWINCH),
    ];

    /// A signal by SSH/POSIX name, with or without `SIG` (`TERM`, `SIGKILL`).
    pub fn from_name(name: &str) -> Result<Self, RuntimeError> {
        let bare = name.strip_prefix("SIG").unwrap_or(name);
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(_, v)| Self(*v))
            .ok_or_else(|| RuntimeError::InvalidRequest(format!("unknown signal {bare:?}")))
    }

    /// A signal by number; only the named ones are accepted.
    pub fn from_raw(n: i32) -> Result<Self, RuntimeError> {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == n)
            .map(|(_, v)| Self(*v))
            .ok_or_else(|| RuntimeError::InvalidRequest(format!("signal {n} is not allowed")))
    }

    /// The signal number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

impl TryFrom<i32> for Signal {
    type Error = RuntimeError;
    fn try_from(n: i32) -> Result<Self, RuntimeError> {
        Self::from_raw(n)
    }
}

impl From<Signal> for i32 {
    fn from(s: Signal) -> i32 {
        s.0
    }
}

/// A command to run inside a running pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The program and its arguments (looked up in the pod's `PATH`).
    pub argv: Vec<String>,
    /// Allocate a terminal of this size (stderr is then merged into stdout).
    pub tty: Option<TermSize>,
    /// Whether the caller will send stdin; when false the process reads
    /// end-of-file at once.
    pub stdin: bool,
    /// Extra environment, limited to [`EXEC_ENV_ALLOWLIST`].
    pub env: Vec<(String, String)>,
}

impl ExecRequest {
    /// A request to run `argv` without a terminal, with stdin.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            tty: None,
            stdin: true,
            env: Vec::new(),
        }
    }

    /// Checks the limits and the environment allowlist; runtimes call this
    /// before doing anything.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidRequest(m));
        match self.argv.first() {
            None => return bad("exec needs a command".into()),
            Some(p) if p.is_empty() => return bad("exec: the program name is empty".into()),
            _ => {}
        }
        if self.argv.len() > MAX_EXEC_ARGS {
            return bad(format!(
                "exec: {} arguments; the limit is {MAX_EXEC_ARGS}",
                self.argv.len()
            ));
        }
        let total: usize = self.argv.iter().map(String::len).sum();
        if total > MAX_EXEC_ARGV_BYTES {
            return bad(format!(
                "exec: {total} bytes of arguments; the limit is {MAX_EXEC_ARGV_BYTES}"
            ));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return bad("exec: an argument contains a NUL byte".into());
        }
        if self.env.len() > MAX_EXEC_ENV {
            return bad(format!(
                "exec: {} environment variables; the limit is {MAX_EXEC_ENV}",
                self.env.len()
            ));
        }
        for (k, v) in &self.env {
            if !exec_env_allowed(k) {
                return bad(format!(
                    "exec: environment variable {:?} is not allowed (allowed: {})",
                    k.chars().take(64).collect::<String>(),
                    EXEC_ENV_ALLOWLIST.join(", ")
                ));
            }
            if v.len() > 1024 || v.contains('\0') {
                return bad(format!(
                    "exec: the value of {k} is too long or has a NUL byte"
                ));
            }
        }
        if let Some(t) = self.tty
            && (t.cols == 0 || t.rows == 0)
        {
            return bad("exec: terminal size must be at least 1x1".into());
        }
        Ok(())
    }
}

/// Whether an exec request may set environment variable `name`
/// ([`EXEC_ENV_ALLOWLIST`]).
pub fn exec_env_allowed(name: &str) -> bool {
    crate::spec::valid_env_name(name)
        && EXEC_ENV_ALLOWLIST
            .iter()
            .any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => *a == name,
            })
}

/// The writing half of an exec'd process's stdin. Dropping it (or
/// [`ExecStdin::close`]) closes stdin: the process reads end-of-file (with a
/// TTY, the terminal's EOF character is sent instead).
#[derive(Debug)]
pub struct ExecStdin {
    pub(crate) tx: mpsc::Sender<Bytes>,
}

impl ExecStdin {
    /// Queues bytes for the process; waits while the pipe is full.
    pub async fn write(&self, data: Bytes) -> Result<(), RuntimeError> {
        self.tx
            .send(data)
            .await
            .map_err(|_| RuntimeError::InvalidRequest("the process no longer reads stdin".into()))
    }

    /// Closes stdin (half-close).
    pub fn close(self) {}
}

/// Control messages for an exec session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecControlMsg {
    /// The terminal was resized.
    Resize(TermSize),
    /// Deliver a signal to the process.
    Signal(Signal),
}

/// Resizes the terminal of, and sends signals to, an exec'd process.
/// Cloneable; works until the process exits.
#[derive(Debug, Clone)]
pub struct ExecControl {
    pub(crate) tty: bool,
    pub(crate) tx: mpsc::UnboundedSender<ExecControlMsg>,
}

impl ExecControl {
    /// Builds a control handle for a runtime backend's session; the backend
    /// reads the messages from the matching receiver.
    pub fn new(tty: bool) -> (Self, mpsc::UnboundedReceiver<ExecControlMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tty, tx }, rx)
    }

    /// Resizes the terminal. Fails without a TTY.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        if !self.tty {
            return Err(RuntimeError::InvalidRequest(
                "resize needs an exec session with a terminal".into(),
            ));
        }
        if cols == 0 || rows == 0 {
            return Err(RuntimeError::InvalidRequest(
                "terminal size must be at least 1x1".into(),
            ));
        }
        self.send(ExecControlMsg::Resize(TermSize { cols, rows }))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: Signal) -> Result<(), RuntimeError> {
        self.send(ExecControlMsg::Signal(sig))
    }

    fn send(&self, msg: ExecControlMsg) -> Result<(), RuntimeError> {
        self.tx
            .send(msg)
            .map_err(|_| RuntimeError::InvalidRequest("the process has exited".into()))
    }
}

/// Resolves to the exec'd process's exit status once all of its output has
/// been delivered to the `stdout`/`stderr` receivers (nothing is lost at the
/// tail).
pub struct ExitFuture(pub(crate) oneshot::Receiver<Result<ExitStatus, RuntimeError>>);

impl ExitFuture {
    /// Wraps the receiving end a backend resolves.
    pub fn new(rx: oneshot::Receiver<Result<ExitStatus, RuntimeError>>) -> Self {
        Self(rx)
    }
}

impl Future for ExitFuture {
    type Output = Result<ExitStatus, RuntimeError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(RuntimeError::Helper(
                    "exec session ended without an exit status".into(),
                ))
            })
        })
    }
}

impl fmt::Debug for ExitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExitFuture")
    }
}

/// A running exec'd process.
#[derive(Debug)]
pub struct ExecSession {
    /// Its stdin, when the request asked for one.
    pub stdin: Option<ExecStdin>,
    /// Its stdout (with a TTY: the terminal's output, stderr included).
    /// Ends when the process and everything holding its stdout have exited.
    pub stdout: mpsc::Receiver<Bytes>,
    /// Its stderr; `None` with a TTY.
    pub stderr: Option<mpsc::Receiver<Bytes>>,
    /// Resize and signal.
    pub control: ExecControl,
    /// The exit status.
    pub exit: ExitFuture,
}

impl ExecSession {
    /// Builds a session from a backend's channel ends.
    pub fn new(
        stdin: Option<mpsc::Sender<Bytes>>,
        stdout: mpsc::Receiver<Bytes>,
        stderr: Option<mpsc::Receiver<Bytes>>,
        control: ExecControl,
        exit: ExitFuture,
    ) -> Self {
        Self {
            stdin: stdin.map(|tx| ExecStdin { tx }),
            stdout,
            stderr,
            control,
            exit,
        }
    }
}

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a pod's output as the workload wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Which stream.
    pub stream: LogStreamKind,
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The bytes (not necessarily whole lines).
    #[serde(with = "bytes_as_vec")]
    pub data: Bytes,
}

mod bytes_as_vec {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes::from)
    }
}

/// What [`Runtime::logs`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogOptions {
    /// Keep streaming new output until the pod is gone.
    pub follow: bool,
    /// Start with only the last N lines kept (all kept output when `None`).
    pub tail_lines: Option<usize>,
}

/// A stream of log chunks.
pub type LogStream = BoxStream<'static, Result<LogChunk, RuntimeError>>;

/// Which pods a refreshed credential goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialTarget {
    /// One pod.
    Pod(PodRef),
    /// Every pod of a service.
    Service(ServiceRef),
}

/// Where pods' workload credentials come from: the agent's link to the
/// control plane, which mints a short-lived credential for exactly this
/// service (and pod). Called each time a pod is created.
pub trait CredentialSource: Send + Sync {
    /// A credential for a new pod of `service` named `pod`.
    fn credential<'a>(
        &'a self,
        service: &'a ServiceRef,
        pod: &'a PodName,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, RuntimeError>>;
}

/// A [`CredentialSource`] from an async closure over owned arguments.
pub struct FnCredentialSource<F>(pub F);

impl<F, Fut> CredentialSource for FnCredentialSource<F>
where
    F: Fn(ServiceRef, PodName) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Zeroizing<Vec<u8>>, RuntimeError>> + Send + 'static,
{
    fn credential<'a>(
        &'a self,
        service: &'a ServiceRef,
        pod: &'a PodName,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, RuntimeError>> {
        Box::pin((self.0)(service.clone(), pod.clone()))
    }
}

/// The layer that runs pods. The gateway, the injector, the agent and
/// deploy orchestration use only this trait; backends are the local runtime
/// (this crate) and Kubernetes.
///
/// Failure semantics: every method validates its input first and answers a
/// [`RuntimeError`] whose [`fault`](RuntimeError::fault) says whose fault it
/// is. Desired state set by `apply`/`stop`/`start` survives the caller: the
/// runtime keeps reconciling after the call returns.
pub trait Runtime: Send + Sync {
    /// Declares that `service` runs `spec` (its `replicas` pods). Idempotent:
    /// the same spec again changes nothing; a different template replaces the
    /// pods one at a time; a different replica count scales. Returns once the
    /// desired state is recorded and missing pods are created.
    fn apply<'a>(
        &'a self,
        service: &'a ServiceRef,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Changes the replica count of the declared workload, keeping the rest
    /// of its spec (and whether it is stopped).
    fn scale<'a>(
        &'a self,
        service: &'a ServiceRef,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Scales to zero, keeping the spec. Returns when the pods are gone.
    fn stop<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Undoes [`stop`](Runtime::stop).
    fn start<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Rolling restart: one pod at a time, each replacement Running before
    /// the next old pod is stopped. Returns when done. A replacement that
    /// does not start in time is removed and the restart stops there
    /// ([`RuntimeError::RolloutStalled`]): the pods not replaced yet keep
    /// running.
    fn restart<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Stops every pod and forgets the service.
    fn delete<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Every service with a declared workload (stopped ones included).
    fn services<'a>(&'a self) -> BoxFuture<'a, Result<Vec<ServiceRef>, RuntimeError>>;

    /// The pods of an environment or a service.
    fn pods<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodStatus>, RuntimeError>>;

    /// Runs a command in a running pod.
    fn exec<'a>(
        &'a self,
        pod: &'a PodRef,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, RuntimeError>>;

    /// A pod's output: what is kept, then (with `follow`) new output until
    /// the pod is gone.
    fn logs<'a>(
        &'a self,
        pod: &'a PodRef,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>>;

    /// Atomically replaces the workload credential file of a pod, or of
    /// every pod of a service.
    fn refresh_credential<'a>(
        &'a self,
        target: &'a CredentialTarget,
        credential: Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trait is object-safe and its handles can move between tasks.
    #[test]
    fn runtime_is_usable_as_a_shared_trait_object() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<std::sync::Arc<dyn Runtime>>();
        send::<ExecSession>();
        send::<LogStream>();
        send_sync::<ExecControl>();
        let _as_object =
            |r: crate::LocalRuntime| -> std::sync::Arc<dyn Runtime> { std::sync::Arc::new(r) };
    }

    #[test]
    fn exec_env_is_allowlisted() {
        let mut r = ExecRequest::new(["sh"]);
        r.env = vec![
            ("TERM".into(), "xterm".into()),
            ("LC_ALL".into(), "C".into()),
        ];
        assert!(r.validate().is_ok());
        r.env.push(("LD_PRELOAD".into(), "/x.so".into()));
        let e = r.validate().unwrap_err().to_string();
        assert!(e.contains("LD_PRELOAD"), "{e}");
        assert!(ExecRequest::new(Vec::<String>::new()).validate().is_err());
        let big = ExecRequest::new(vec!["a".repeat(1024); MAX_EXEC_ARGS + 1]);
        assert!(big.validate().is_err());
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(Signal::from_name("SIGKILL").unwrap().as_raw(), 9);
        assert_eq!(Signal::from_name("TERM").unwrap(), Signal::TERM);
        assert!(Signal::from_name("BOGUS").is_err());
        assert!(Signal::from_raw(0).is_err());
        assert!(Signal::from_raw(64).is_err());
        assert_eq!(ExitStatus::signaled(9).code, 137);
    }

    #[test]
    fn selectors_take_environment_or_service_paths() {
        assert!(matches!(
            Selector::parse("a/b/c"),
            Ok(Selector::Environment(_))
        ));
        assert!(matches!(
            Selector::parse("a/b/c/d"),
            Ok(Selector::Service(_))
        ));
        assert!(Selector::parse("a/b").is_err());
        let s = Selector::parse("a/b/c").unwrap();
        assert!(s.matches(&ServiceRef::parse("a/b/c/d").unwrap()));
        assert!(!s.matches(&ServiceRef::parse("a/b/cc/d").unwrap()));
    }

    #[test]
    fn isolation_is_never_silent() {
        let none = Isolation::None {
            reason: "unshare: EPERM".into(),
        };
        assert_eq!(
            none.to_string(),
            "none: namespaces unavailable: unshare: EPERM"
        );
        let full = Isolation::NamespacesAndCgroup {
            cgroup: CgroupVersion::V1,
        };
        assert!(full.to_string().contains("cgroup v1"));
        let cluster = Isolation::ContainerRuntime { runtime: None };
        assert_eq!(
            cluster.to_string(),
            "container isolated and limited by the cluster's runtime (not reported)"
        );
    }
}
