//! The runtime's one error type.

use std::path::PathBuf;

use warden_types::{Fault, NameError};

/// Why a runtime operation failed. Messages name the field, pod or service at
/// fault and never contain a credential or environment value.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A workload spec is malformed or outside the limits. `line`/`column`
    /// point into the YAML document when the spec came from one.
    #[error("invalid workload spec{}: {message}", location(*line, *column))]
    InvalidSpec {
        /// 1-based line in the YAML document, when known.
        line: Option<usize>,
        /// 1-based column in the YAML document, when known.
        column: Option<usize>,
        /// What is wrong, starting with the field path (e.g. `resources.memory`).
        message: String,
    },
    /// A service path, environment path or pod name is not valid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A request (exec, logs, signal, resize, credential) is malformed or
    /// asks for something the pod cannot do (a resize without a TTY, an
    /// environment variable outside the exec allowlist).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The service has no declared workload.
    #[error("service {0} has no workload")]
    ServiceNotFound(String),
    /// No pod of that name exists for that service.
    #[error("pod {0} not found")]
    PodNotFound(String),
    /// The pod exists but is not running a workload right now (starting,
    /// waiting to restart, finished or terminating).
    #[error("pod {pod} is not running (phase {phase})")]
    PodNotRunning {
        /// The pod's name.
        pod: String,
        /// Its phase when asked.
        phase: String,
    },
    /// The command given to exec could not be started in the pod (not found,
    /// not executable).
    #[error("exec in pod {pod} failed: {message}")]
    ExecFailed {
        /// The pod's name.
        pod: String,
        /// Why, as the pod's helper reported it.
        message: String,
    },
    /// This runtime or this machine cannot do what was asked (e.g. `run_as`
    /// without root, a root pod when root pods are not allowed).
    #[error("not supported here: {0}")]
    Unsupported(String),
    /// A rolling restart or spec change stopped because a new pod did not
    /// reach Running in time; the pods not yet replaced keep running.
    #[error("rollout of {service} stalled: pod {pod} did not become ready within {waited_ms} ms")]
    RolloutStalled {
        /// The service being rolled.
        service: String,
        /// The new pod that did not become ready.
        pod: String,
        /// How long the runtime waited.
        waited_ms: u64,
    },
    /// The credential source (the agent's link to the control plane) could
    /// not provide a workload credential.
    #[error("workload credential unavailable: {0}")]
    Credential(String),
    /// The runtime is out of reach: the cluster's agent is not connected, or
    /// its link broke during the operation. The outcome of an operation cut
    /// off this way is unknown (the agent may have carried it out).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The agent answered with a failure of its own (a system call, a pod
    /// helper) or broke the runtime protocol.
    #[error("agent error: {0}")]
    Agent(String),
    /// Another runtime already owns this state directory.
    #[error("runtime state directory {0} is in use by another process")]
    StateLocked(PathBuf),
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A pod shim or helper process broke the local control protocol or
    /// failed to set a pod up (a namespace, a mount, a cgroup).
    #[error("pod helper failed: {0}")]
    Helper(String),
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l} column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl RuntimeError {
    /// Whose fault the error is. Bad specs and requests, unknown pods and
    /// workloads that never become ready are the caller's; a failing
    /// credential source is upstream; everything else is Warden's.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidSpec { .. }
            | Self::InvalidName(_)
            | Self::InvalidRequest(_)
            | Self::ServiceNotFound(_)
            | Self::PodNotFound(_)
            | Self::PodNotRunning { .. }
            | Self::ExecFailed { .. }
            | Self::Unsupported(_)
            | Self::RolloutStalled { .. } => Fault::Client,
            Self::Credential(_) | Self::Unavailable(_) => Fault::Upstream,
            Self::Agent(_) | Self::StateLocked(_) | Self::Io { .. } | Self::Helper(_) => {
                Fault::Internal
            }
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn spec(message: impl Into<String>) -> Self {
        Self::InvalidSpec {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, RuntimeError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, RuntimeError> {
        self.map_err(|e| RuntimeError::io(what(), e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, RuntimeError> {
        self.map_err(|e| RuntimeError::io(what(), e.into()))
    }
}
