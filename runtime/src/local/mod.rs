//! The local backend: pods as supervised process trees in their own
//! namespaces and cgroups on this machine.
//!
//! Processes, per pod:
//!
//! ```text
//! agent (LocalRuntime, tokio)          runtime state dir (0700)
//!   │ spawns, then only talks over ──► pods/POD/ctl.sock
//!   ▼
//! shim (helper shim; own session; survives the agent; holds pods/POD/shim.lock)
//!   │ clone3(NEWPID|NEWNS|NEWUTS|NEWIPC), joins the pod cgroup
//!   ▼
//! init (helper init; PID 1: mounts, hostname, reaps, forwards signals)
//!   └─ workload (no_new_privs, no capabilities, pod uid/gid)
//!
//! exec: agent ─ spawns ─► helper exec (joins cgroup + namespaces) ─ fork ─► command
//! ```
//!
//! See ARCHITECTURE.md ("The runtime") and docs/decisions.md.

pub(crate) mod cgroup;
mod credfile;
mod exec;
mod exec_helper;
mod init;
mod log_ring;
pub(crate) mod proto;
mod shim;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

pub use proto::{HelperCommand, Injection};

use crate::api::{
    CredentialSource, CredentialTarget, ExecRequest, ExecSession, Isolation, LogChunk, LogOptions,
    LogStream, MAX_CREDENTIAL_BYTES, PodName, PodPhase, PodRef, PodStatus, Runtime, Selector,
};
use crate::error::IoContext;
use crate::local::cgroup::CgroupDriver;
use crate::local::proto::{ShimConfig, ShimReply, ShimRequest, ShimStatus};
use crate::spec::{Deliver, OnChange, RunAs};
use crate::{RuntimeError, ServiceRef, WorkloadSpec};

/// The helper roles a binary must dispatch (see [`helper_main`]).
pub const HELPER_ROLES: &[&str] = &["shim", "init", "exec", "probe"];

/// Entry point of the runtime's helper processes. A binary that embeds the
/// local runtime calls this early in `main`, before starting tokio or any
/// thread, when it is invoked as [`LocalConfig::helper`] says (e.g. `warden
/// __runtime ROLE`); `args` starts at the role. Never returns.
///
/// Roles: `shim` (a pod's supervisor), `init` (a pod's PID 1), `exec` (joins
/// a pod to run a command), `probe` (checks whether namespaces work here).
pub fn helper_main(args: Vec<OsString>) -> ! {
    match args.first().and_then(|a| a.to_str()) {
        Some("shim") => shim::main(),
        Some("init") => init::main(),
        Some("exec") => exec_helper::main(),
        Some("probe") => probe(),
        _ => {
            eprintln!("warden runtime helper: expected one of {HELPER_ROLES:?}");
            std::process::exit(2)
        }
    }
}

/// Tries what a pod needs: new PID, mount, UTS and IPC namespaces, a
/// private mount tree and a hostname. Exits 0 if all work, else 1 with the
/// reason on stderr.
fn probe() -> ! {
    use nix::sched::{CloneFlags, unshare};
    let r = unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| format!("unshare: {e}"))
    .and_then(|()| {
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::REC
                | rustix::mount::MountPropagationFlags::PRIVATE,
        )
        .map_err(|e| format!("private mounts: {e}"))
    })
    .and_then(|()| {
        rustix::system::sethostname(b"warden-probe").map_err(|e| format!("sethostname: {e}"))
    });
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// Random bits from the OS (ring's `SystemRandom`).
pub(crate) fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    // The OS RNG does not fail on Linux once booted; if it did, names would
    // still be unique enough with the clock's nanoseconds.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return u64::from(nanos) ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(b)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where the workload finds its credential.
pub(crate) fn credential_path(cfg: &ShimConfig) -> PathBuf {
    match &cfg.credential_dir {
        Some(d) => d.join(credfile::CREDENTIAL_FILE),
        None => Path::new(credfile::CREDENTIAL_DIR).join(credfile::CREDENTIAL_FILE),
    }
}

/// The environment of a pod's workload (and, plus the request's allowed
/// variables, of its exec sessions): the spec's variables, then Warden's.
pub(crate) fn workload_env(cfg: &ShimConfig) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env.insert("HOME".into(), "/tmp".into());
    for (k, v) in cfg.spec.env() {
        env.insert(k.clone(), v.clone());
    }
    env.insert("HOSTNAME".into(), cfg.pod.to_string());
    env.insert("WARDEN_POD".into(), cfg.pod.to_string());
    env.insert("WARDEN_SERVICE".into(), cfg.service.to_string());
    env.insert(
        "WARDEN_CREDENTIAL_FILE".into(),
        credential_path(cfg).to_string_lossy().into_owned(),
    );
    if let Some(i) = &cfg.injection {
        env.insert("WARDEN_CA_PEM".into(), i.ca_pem.clone());
    }
    env.into_iter().collect()
}

/// The command line of a pod's workload: the spec's, under
/// `warden-injector` when the runtime injects secrets.
/// In its own mount namespace the pod runs the injector bound at
/// [`proto::INJECTOR_IN_POD`]; without, from the host path.
pub(crate) fn workload_argv(cfg: &ShimConfig, isolate: bool) -> Vec<String> {
    let argv = cfg.spec.argv().map(str::to_owned);
    match &cfg.injection {
        None => argv.collect(),
        Some(i) => [
            if isolate {
                proto::INJECTOR_IN_POD.to_owned()
            } else {
                i.binary.to_string_lossy().into_owned()
            },
            "exec".into(),
            "--service".into(),
            cfg.service.to_string(),
            "--server".into(),
            i.server.clone(),
            "--watch".into(),
        ]
        .into_iter()
        .chain(
            (cfg.spec.secrets().deliver == Deliver::Fd)
                .then(|| ["--deliver".to_owned(), "fd".to_owned()])
                .into_iter()
                .flatten(),
        )
        .chain(
            // Rolled pods keep the values they started with; the watch
            // still names what they hold and ends with their authority.
            (cfg.spec.secrets().on_change == OnChange::Rollout)
                .then(|| ["--on-change".to_owned(), "none".to_owned()])
                .into_iter()
                .flatten(),
        )
        .chain(["--".to_owned()])
        .chain(argv)
        .collect(),
    }
}

/// Whether pods get namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// Use namespaces when this machine allows them (probed at start);
    /// otherwise run without and report why.
    #[default]
    Auto,
    /// Never use namespaces (reported as such in every pod's isolation).
    Off,
}

/// The local runtime's configuration.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Where pods' shims keep their sockets and records (created 0700).
    pub state_dir: PathBuf,
    /// How to run the helper processes (see [`helper_main`]).
    pub helper: HelperCommand,
    /// Host paths hidden in every pod (an empty read-only tmpfs, or
    /// `/dev/null` over a file): Warden's data directory, the dev unseal
    /// key, the agent's key and state directory. `state_dir` is always added.
    pub masked_paths: Vec<PathBuf>,
    /// The cgroup filesystem root.
    pub cgroup_root: PathBuf,
    /// The cgroup under which pods' cgroups are made (`ROOT[/CTRL]/PARENT/POD`).
    pub cgroup_parent: String,
    /// This node's name in pod statuses.
    pub node: String,
    /// Whether to use namespaces.
    pub namespaces: NamespaceMode,
    /// Output kept per pod, in bytes.
    pub log_buffer_bytes: usize,
    /// Time between SIGTERM and SIGKILL when a pod is stopped.
    pub stop_grace: Duration,
    /// First restart delay; doubles per consecutive restart.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// A run at least this long resets the delay.
    pub backoff_reset: Duration,
    /// The uid/gid for pods whose spec sets none, when the runtime runs as
    /// root. Default: 65534:65534 (nobody), so that a pod cannot read the
    /// host's root-owned files through the shared (read-only) root.
    pub default_run_as: Option<RunAs>,
    /// Allow pods to run as uid 0 (they would be able to read root-only host
    /// files). Off by default.
    pub allow_root_pods: bool,
    /// How long a rolling restart waits for each new pod to run.
    pub rollout_timeout: Duration,
    /// Period of the safety-net reconciliation of every service.
    pub reconcile_interval: Duration,
    /// Without namespaces: the tmpfs under which per-pod credential
    /// directories are made (`DIR/warden-UID/POD`).
    pub credential_fallback_dir: PathBuf,
    /// Start every workload under `warden-injector` (none: as the spec
    /// says, without its secrets).
    pub injection: Option<Injection>,
}

impl LocalConfig {
    /// Defaults for a state directory and a helper command.
    pub fn new(state_dir: impl Into<PathBuf>, helper: HelperCommand) -> Self {
        Self {
            state_dir: state_dir.into(),
            helper,
            masked_paths: Vec::new(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "warden".into(),
            node: "local".into(),
            namespaces: NamespaceMode::Auto,
            log_buffer_bytes: 1 << 20,
            stop_grace: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            backoff_reset: Duration::from_secs(60),
            default_run_as: Some(RunAs {
                uid: 65534,
                gid: 65534,
            }),
            allow_root_pods: false,
            rollout_timeout: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(2),
            credential_fallback_dir: PathBuf::from("/dev/shm"),
            injection: None,
        }
    }
}

/// The desired state of a service, as stored in `services/SERVICE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Desired {
    service: ServiceRef,
    spec: WorkloadSpec,
    stopped: bool,
}

struct PodEntry {
    service: ServiceRef,
    template: String,
    status: Option<ShimStatus>,
    terminating: bool,
    watcher: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    services: HashMap<ServiceRef, Desired>,
    pods: BTreeMap<PodName, PodEntry>,
}

struct Inner {
    cfg: LocalConfig,
    isolation: Isolation,
    cgroups: Option<CgroupDriver>,
    credentials: Arc<dyn CredentialSource>,
    state: Mutex<State>,
    /// Bumped on every pod change; waiters watch it.
    changed: watch::Sender<u64>,
    service_locks: Mutex<HashMap<ServiceRef, Arc<tokio::sync::Mutex<()>>>>,
    reconcile: mpsc::UnboundedSender<Option<ServiceRef>>,
    _lock: fs::File,
}

/// The local runtime. Cheap to share behind an `Arc<dyn Runtime>`; dropping
/// it stops reconciliation but leaves pods running (a later runtime over the
/// same state directory adopts them).
pub struct LocalRuntime {
    inner: Arc<Inner>,
    reconciler: JoinHandle<()>,
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        self.reconciler.abort();
        if let Ok(mut st) = self.inner.state.lock() {
            for p in st.pods.values_mut() {
                if let Some(w) = p.watcher.take() {
                    w.abort();
                }
            }
        }
    }
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("state_dir", &self.inner.cfg.state_dir)
            .field("isolation", &self.inner.isolation)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn mkdir_private(p: &Path) -> Result<(), RuntimeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .context(|| format!("creating {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
        .context(|| format!("chmod {}", p.display()))
}

/// Creates (if missing) the per-user parent of the no-namespace credential
/// directories and makes it 0711: pods running as another uid may pass
/// through to their own directory, nobody else may list or write it. It
/// must be a real directory (not a symlink) owned by us; it is opened
/// without following symlinks and changed through that descriptor.
fn ensure_credential_parent(p: &Path) -> Result<(), RuntimeError> {
    match fs::DirBuilder::new().mode(0o711).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RuntimeError::io(format!("creating {}", p.display()), e)),
    }
    let refuse = || {
        RuntimeError::Unsupported(format!(
            "{} must be a directory owned by uid {} (it holds credentials)",
            p.display(),
            rustix::process::geteuid().as_raw()
        ))
    };
    let dir = rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|_| refuse())?;
    let st = rustix::fs::fstat(&dir).context(|| format!("checking {}", p.display()))?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(refuse());
    }
    rustix::fs::fchmod(&dir, rustix::fs::Mode::from_raw_mode(0o711))
        .context(|| format!("chmod {}", p.display()))
}

/// Writes `bytes` to `path` atomically (write a temporary file, rename) and,
/// with `durable`, so that it survives power loss (fsync the file before
/// the rename and the directory after).
fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), RuntimeError> {
    let tmp = path.with_extension(format!("tmp{:x}", random_u64()));
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("renaming {}", path.display()))?;
    if durable && let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

impl LocalRuntime {
    /// Starts the runtime over `cfg.state_dir`: takes its lock (one runtime
    /// per directory), probes isolation, loads the declared services, adopts
    /// the pods whose shims are alive (cleaning up after dead ones) and
    /// starts reconciling.
    pub async fn start(
        cfg: LocalConfig,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, RuntimeError> {
        mkdir_private(&cfg.state_dir)?;
        mkdir_private(&cfg.state_dir.join("pods"))?;
        mkdir_private(&cfg.state_dir.join("services"))?;
        let lock_path = cfg.state_dir.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(|| format!("opening {}", lock_path.display()))?;
        if rustix::fs::flock(
            &lock_file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .is_err()
        {
            return Err(RuntimeError::StateLocked(cfg.state_dir.clone()));
        }

        let (isolation, cgroups) = probe_isolation(&cfg).await;
        for p in &cfg.masked_paths {
            if !p.exists() {
                // Masks are set up when a pod starts; a path created later
                // would be visible (read-only) in pods already running.
                tracing::warn!(path = %p.display(), "masked path does not exist (yet); pods started now will not mask it");
            }
        }
        if !matches!(isolation, Isolation::None { .. }) {
            // The mount point of every pod's credential tmpfs.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(credfile::CREDENTIAL_DIR)
                .context(|| format!("creating {}", credfile::CREDENTIAL_DIR))?;
        }
        let (reconcile_tx, reconcile_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            isolation,
            cgroups,
            credentials,
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            service_locks: Mutex::new(HashMap::new()),
            reconcile: reconcile_tx,
            _lock: lock_file,
            cfg,
        });
        inner.load_services()?;
        inner.adopt_pods().await?;
        let reconciler = tokio::spawn(reconcile_loop(Arc::downgrade(&inner), reconcile_rx));
        Ok(Self { inner, reconciler })
    }

    /// The isolation pods get on this machine (for `warden dev`'s banner).
    pub fn isolation(&self) -> &Isolation {
        &self.inner.isolation
    }

    /// Waits until the selected pods satisfy `pred`, or `timeout`; returns
    /// them as last seen.
    pub async fn wait_for(
        &self,
        selector: &Selector,
        timeout: Duration,
        pred: impl Fn(&[PodStatus]) -> bool,
    ) -> Result<Vec<PodStatus>, RuntimeError> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pods = self.inner.pod_statuses(selector);
            if pred(&pods) {
                return Ok(pods);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(self.inner.pod_statuses(selector)),
            }
        }
    }

    /// The host PID of a running pod's init (diagnostics and tests).
    pub fn init_pid(&self, pod: &PodRef) -> Option<i32> {
        let st = lock(&self.inner.state);
        let e = st.pods.get(&pod.name)?;
        if e.service != pod.service {
            return None;
        }
        e.status.as_ref()?.init.map(|i| i.pid)
    }
}

async fn probe_isolation(cfg: &LocalConfig) -> (Isolation, Option<CgroupDriver>) {
    if cfg.namespaces == NamespaceMode::Off {
        return (
            Isolation::None {
                reason: "disabled by configuration".into(),
            },
            None,
        );
    }
    let out = tokio::process::Command::new(&cfg.helper.program)
        .args(&cfg.helper.args)
        .arg("probe")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let reason = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            return (
                Isolation::None {
                    reason: if reason.is_empty() {
                        format!("namespace probe failed ({})", o.status)
                    } else {
                        reason
                    },
                },
                None,
            );
        }
        Err(e) => {
            return (
                Isolation::None {
                    reason: format!("cannot run the runtime helper: {e}"),
                },
                None,
            );
        }
    }
    match CgroupDriver::detect(&cfg.cgroup_root, &cfg.cgroup_parent) {
        Ok(d) => (
            Isolation::NamespacesAndCgroup {
                cgroup: d.version(),
            },
            Some(d),
        ),
        Err(reason) => (Isolation::NamespacesOnly { reason }, None),
    }
}

fn service_file(dir: &Path, s: &ServiceRef) -> PathBuf {
    // Names cannot contain '.', so the mapping is one-to-one.
    dir.join("services")
        .join(format!("{}.json", s.as_str().replace('/', ".")))
}

fn pod_name_for(service: &ServiceRef) -> Result<PodName, RuntimeError> {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = random_u64();
    let n = ALPHABET.len() as u64;
    let suffix: String = (0..6)
        .map(|_| {
            // A 64-bit draw modulo 27: the bias is negligible for a name.
            let c = ALPHABET[(bits % n) as usize] as char;
            bits /= n;
            c
        })
        .collect();
    let base: String = service.name().chars().take(63 - 7).collect();
    PodName::parse(&format!("{base}-{suffix}"))
}

impl Inner {
    fn pods_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("pods")
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn service_lock(&self, s: &ServiceRef) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.service_locks)
            .entry(s.clone())
            .or_default()
            .clone()
    }

    fn load_services(&self) -> Result<(), RuntimeError> {
        let dir = self.cfg.state_dir.join("services");
        let entries = fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
        let mut st = lock(&self.state);
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Desired>(&b).ok())
            {
                Some(d) => {
                    st.services.insert(d.service.clone(), d);
                }
                None => {
                    tracing::warn!(file = %p.display(), "ignoring an unreadable service record")
                }
            }
        }
        Ok(())
    }

    /// Finds the pods of a previous runtime: a pod whose shim still holds
    /// its lock is adopted (watched again, not restarted); one whose shim is
    /// gone is cleaned up (its cgroup and directory removed).
    async fn adopt_pods(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let dir = self.pods_dir();
        let entries = fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
        for e in entries.flatten() {
            let pod_dir = e.path();
            let Some(name) = pod_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| PodName::parse(n).ok())
            else {
                continue;
            };
            let record: Option<ShimConfig> = fs::read(pod_dir.join("pod.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match (shim_state(&pod_dir), record) {
                (ShimState::Alive, Some(rec)) => {
                    tracing::info!(pod = %name, service = %rec.service, "adopting a running pod");
                    self.insert_pod(name, rec.service, rec.template);
                }
                (ShimState::Gone, _) => {}
                (ShimState::Alive, None) => {
                    tracing::warn!(pod = %name, "a live shim without a pod record; killing it");
                    kill_shim(&pod_dir);
                    clean_up_dead_pod(&pod_dir).await;
                }
                (ShimState::Dead, _) => {
                    tracing::info!(pod = %name, "removing a pod whose shim is gone");
                    clean_up_dead_pod(&pod_dir).await;
                }
            }
        }
        Ok(())
    }

    fn insert_pod(self: &Arc<Self>, name: PodName, service: ServiceRef, template: String) {
        // The entry first, then its watcher: a watcher started first could
        // receive the shim's first status (often its only one, Running)
        // before there is an entry to put it in, and the pod would read
        // Pending for good.
        let sock = self.pods_dir().join(name.as_str()).join("ctl.sock");
        let mut st = lock(&self.state);
        st.pods.insert(
            name.clone(),
            PodEntry {
                service,
                template,
                status: None,
                terminating: false,
                watcher: None,
            },
        );
        let watcher = tokio::spawn(watch_pod(Arc::downgrade(self), name.clone(), sock));
        if let Some(e) = st.pods.get_mut(&name) {
            e.watcher = Some(watcher);
        }
        drop(st);
        self.bump();
    }

    fn pod_statuses(&self, selector: &Selector) -> Vec<PodStatus> {
        let st = lock(&self.state);
        st.pods
            .iter()
            .filter(|(_, e)| selector.matches(&e.service))
            .map(|(name, e)| self.status_of(name, e))
            .collect()
    }

    fn status_of(&self, name: &PodName, e: &PodEntry) -> PodStatus {
        let mut s = match &e.status {
            Some(s) => s.pod.clone(),
            None => PodStatus {
                name: name.clone(),
                service: e.service.clone(),
                phase: PodPhase::Pending,
                ready: false,
                restarts: 0,
                started_at_ms: None,
                last_exit: None,
                node: self.cfg.node.clone(),
                isolation: self.isolation.clone(),
                template: e.template.clone(),
            },
        };
        if e.terminating {
            s.phase = PodPhase::Terminating;
            s.ready = false;
        }
        s
    }

    fn socket(&self, pod: &PodName) -> PathBuf {
        self.pods_dir().join(pod.as_str()).join("ctl.sock")
    }

    /// Looks a pod up for `pod.service`; another service's pod is "not found".
    fn find(&self, pod: &PodRef) -> Result<(PodStatus, Option<proto::InitInfo>), RuntimeError> {
        let st = lock(&self.state);
        match st.pods.get(&pod.name) {
            Some(e) if e.service == pod.service => Ok((
                self.status_of(&pod.name, e),
                e.status.as_ref().and_then(|s| s.init),
            )),
            _ => Err(RuntimeError::PodNotFound(pod.name.to_string())),
        }
    }

    fn resolve_run_as(&self, spec: &WorkloadSpec) -> Result<Option<RunAs>, RuntimeError> {
        let euid = rustix::process::geteuid();
        if !euid.is_root() {
            return match spec.run_as() {
                Some(r) if r.uid != euid.as_raw() => Err(RuntimeError::Unsupported(format!(
                    "run_as uid {} needs the runtime to run as root",
                    r.uid
                ))),
                _ => Ok(None),
            };
        }
        let r = spec.run_as().or(self.cfg.default_run_as);
        if let Some(r) = r
            && r.uid == 0
            && !self.cfg.allow_root_pods
        {
            return Err(RuntimeError::Unsupported(
                "pods may not run as uid 0 on this runtime (allow_root_pods is off)".into(),
            ));
        }
        Ok(r)
    }

    /// Creates one pod: a directory, a credential, a shim. Returns once the
    /// shim answered (the pod is Pending or already Running).
    async fn create_pod(
        self: &Arc<Self>,
        service: &ServiceRef,
        spec: &WorkloadSpec,
    ) -> Result<PodName, RuntimeError> {
        let run_as = self.resolve_run_as(spec)?;
        let (name, pod_dir) = loop {
            let name = pod_name_for(service)?;
            let dir = self.pods_dir().join(name.as_str());
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break (name, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RuntimeError::io(format!("creating {}", dir.display()), e)),
            }
        };
        let result = self
            .spawn_shim(service, spec, &name, &pod_dir, run_as)
            .await;
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&pod_dir);
            return Err(e);
        }
        Ok(name)
    }

    async fn spawn_shim(
        self: &Arc<Self>,
        service: &ServiceRef,
        spec: &WorkloadSpec,
        name: &PodName,
        pod_dir: &Path,
        run_as: Option<RunAs>,
    ) -> Result<(), RuntimeError> {
        let credential = self.credentials.credential(service, name).await?;
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(RuntimeError::Credential(format!(
                "the credential source returned {} bytes; the limit is {MAX_CREDENTIAL_BYTES}",
                credential.len()
            )));
        }
        let isolate = !matches!(self.isolation, Isolation::None { .. });
        let mut masked = self.cfg.masked_paths.clone();
        masked.push(self.cfg.state_dir.clone());
        let cfg = ShimConfig {
            pod: name.clone(),
            service: service.clone(),
            spec: spec.clone(),
            template: spec.template_hash(),
            pod_dir: pod_dir.to_path_buf(),
            node: self.cfg.node.clone(),
            isolation: self.isolation.clone(),
            cgroup: self.cgroups.as_ref().map(|c| c.pod(name.as_str())),
            masked_paths: masked,
            log_buffer_bytes: self.cfg.log_buffer_bytes,
            backoff_initial_ms: millis(self.cfg.backoff_initial),
            backoff_max_ms: millis(self.cfg.backoff_max),
            backoff_reset_ms: millis(self.cfg.backoff_reset),
            helper: self.cfg.helper.clone(),
            run_as,
            credential_dir: (!isolate).then(|| {
                self.cfg
                    .credential_fallback_dir
                    .join(format!("warden-{}", rustix::process::geteuid().as_raw()))
                    .join(name.as_str())
            }),
            created_at_ms: now_ms(),
            injection: self.cfg.injection.clone(),
        };
        let record = serde_json::to_vec_pretty(&cfg)
            .map_err(|e| RuntimeError::Helper(format!("encoding pod record: {e}")))?;
        // Atomic but not fsynced: a pod does not survive the machine, so its
        // record need not either (the next runtime removes what is left).
        write_atomic(&pod_dir.join("pod.json"), &record, false)?;
        if let Some(d) = &cfg.credential_dir
            && let Some(parent) = d.parent()
        {
            // A shared tmpfs (/dev/shm): the directory must be ours alone,
            // not one (or a symlink) another user planted.
            ensure_credential_parent(parent)?;
        }

        let mut child = tokio::process::Command::new(&self.cfg.helper.program)
            .args(&self.cfg.helper.args)
            .arg("shim")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context(|| format!("starting the shim ({})", self.cfg.helper.program.display()))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RuntimeError::Helper("shim stdio missing".into()));
        };
        proto::write_frame_async(&mut stdin, &cfg, &credential)
            .await
            .context(|| "sending the shim its config".into())?;
        drop(stdin);
        drop(credential);
        let reply = proto::read_frame_async::<ShimReply>(&mut stdout).await;
        // The shim runs on in its own session; reap it whenever it exits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match reply {
            Ok(Some((ShimReply::Ready, _))) => {}
            Ok(Some((ShimReply::Error(e), _))) => return Err(RuntimeError::Helper(e)),
            other => {
                return Err(RuntimeError::Helper(format!(
                    "the shim did not start ({other:?})"
                )));
            }
        }
        self.insert_pod(name.clone(), service.clone(), cfg.template);
        Ok(())
    }

    /// Stops a pod and waits until its shim has cleaned up and exited.
    async fn terminate_pod(self: &Arc<Self>, name: &PodName) {
        {
            let mut st = lock(&self.state);
            match st.pods.get_mut(name) {
                Some(e) => e.terminating = true,
                None => return,
            }
        }
        self.bump();
        if let Ok(mut s) = UnixStream::connect(self.socket(name)).await {
            let req = ShimRequest::Terminate {
                grace_ms: millis(self.cfg.stop_grace),
            };
            if proto::write_frame_async(&mut s, &req, b"").await.is_ok() {
                // Done, then end of stream when the shim exits.
                while let Ok(Some(_)) = proto::read_frame_async::<ShimReply>(&mut s).await {}
            }
        }
        // A shim that died (or never answered) leaves its pod behind.
        let pod_dir = self.pods_dir().join(name.as_str());
        match shim_state(&pod_dir) {
            ShimState::Gone => {}
            ShimState::Dead => clean_up_dead_pod(&pod_dir).await,
            ShimState::Alive => {
                kill_shim(&pod_dir);
                tokio::time::sleep(Duration::from_millis(50)).await;
                clean_up_dead_pod(&pod_dir).await;
            }
        }
        if let Some(e) = lock(&self.state).pods.remove(name)
            && let Some(w) = e.watcher
        {
            w.abort();
        }
        self.bump();
    }

    /// Brings `service` to its desired state: scale up or down, replace
    /// pods made from an older template one at a time.
    async fn reconcile_service(self: &Arc<Self>, service: &ServiceRef) -> Result<(), RuntimeError> {
        let svc_lock = self.service_lock(service);
        let _guard = svc_lock.lock().await;
        self.reconcile_locked(service).await
    }

    /// [`reconcile_service`](Self::reconcile_service) with the service's
    /// lock already held.
    async fn reconcile_locked(self: &Arc<Self>, service: &ServiceRef) -> Result<(), RuntimeError> {
        let (desired, pods) = {
            let st = lock(&self.state);
            let desired = st.services.get(service).cloned();
            let pods: Vec<(PodName, String, PodStatus)> = st
                .pods
                .iter()
                .filter(|(_, e)| &e.service == service && !e.terminating)
                .map(|(n, e)| (n.clone(), e.template.clone(), self.status_of(n, e)))
                .collect();
            (desired, pods)
        };
        let Some(desired) = desired else {
            join_all(pods.iter().map(|(n, _, _)| self.terminate_pod(n))).await;
            return Ok(());
        };
        let want = if desired.stopped {
            0
        } else {
            desired.spec.replicas() as usize
        };
        let template = desired.spec.template_hash();
        let (current, old): (Vec<_>, Vec<_>) =
            pods.into_iter().partition(|(_, t, _)| *t == template);
        if want == 0 {
            join_all(
                current
                    .iter()
                    .chain(old.iter())
                    .map(|(n, _, _)| self.terminate_pod(n)),
            )
            .await;
            return Ok(());
        }
        // Excess pods of the current template: the least useful go first.
        if current.len() > want {
            let mut extra = current.clone();
            extra.sort_by_key(|(_, _, s)| (s.ready, std::cmp::Reverse(s.started_at_ms)));
            let n = current.len() - want;
            join_all(extra.iter().take(n).map(|(n, _, _)| self.terminate_pod(n))).await;
        }
        let mut have = current.len().min(want);
        // Roll old pods: a new one Running before each old one goes.
        for (old_name, _, _) in &old {
            if have < want {
                let new = self.create_pod(service, &desired.spec).await?;
                self.wait_running(service, &new).await?;
                have += 1;
            }
            self.terminate_pod(old_name).await;
        }
        if have < want {
            let created =
                join_all((have..want).map(|_| self.create_pod(service, &desired.spec))).await;
            for r in created {
                r?;
            }
        }
        Ok(())
    }

    /// Waits until the new `pod` started: Running and ready, its workload
    /// up (without exiting) for the spec's `min_ready_seconds`.
    async fn wait_running(&self, service: &ServiceRef, pod: &PodName) -> Result<(), RuntimeError> {
        let mut rx = self.changed.subscribe();
        let min_ready = lock(&self.state)
            .services
            .get(service)
            .map_or(Duration::ZERO, |d| d.spec.min_ready());
        // The time to start, then to stay up.
        let timeout = self.cfg.rollout_timeout + min_ready;
        let deadline = tokio::time::Instant::now() + timeout;
        let stalled = || RuntimeError::RolloutStalled {
            service: service.to_string(),
            pod: pod.to_string(),
            waited_ms: millis(timeout),
        };
        loop {
            // When the workload will have been up long enough, if it is up.
            let mut ready_in = None;
            {
                let st = lock(&self.state);
                let Some(e) = st.pods.get(pod) else {
                    return Err(stalled());
                };
                let s = self.status_of(pod, e);
                if s.phase == PodPhase::Running && s.ready {
                    let up = Duration::from_millis(
                        now_ms().saturating_sub(s.started_at_ms.unwrap_or(0)),
                    );
                    match min_ready.checked_sub(up) {
                        None | Some(Duration::ZERO) => return Ok(()),
                        Some(left) => ready_in = Some(left),
                    }
                }
            }
            let wake = ready_in.map_or(deadline, |left| {
                deadline.min(tokio::time::Instant::now() + left)
            });
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(stalled());
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(stalled());
            }
        }
    }

    /// The declared workload of `service`.
    fn desired(&self, service: &ServiceRef) -> Result<Desired, RuntimeError> {
        lock(&self.state)
            .services
            .get(service)
            .cloned()
            .ok_or_else(|| RuntimeError::ServiceNotFound(service.to_string()))
    }

    /// Declares a service's desired state and reconciles to it. The record
    /// is made durable (fsync) while the pods are being created, and the
    /// call returns only once both are done; the service lock orders
    /// concurrent declarations. An unchanged record is not rewritten.
    async fn declare(self: &Arc<Self>, d: Desired) -> Result<(), RuntimeError> {
        let svc_lock = self.service_lock(&d.service);
        let _guard = svc_lock.lock().await;
        let service = d.service.clone();
        let previous = lock(&self.state)
            .services
            .insert(service.clone(), d.clone());
        let persist = async {
            if previous.as_ref() == Some(&d) {
                return Ok(());
            }
            let bytes = serde_json::to_vec_pretty(&d)
                .map_err(|e| RuntimeError::Helper(format!("encoding service record: {e}")))?;
            let path = service_file(&self.cfg.state_dir, &service);
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, true))
                .await
                .map_err(|e| RuntimeError::Helper(format!("writing service record: {e}")))?
        };
        let (persisted, reconciled) = tokio::join!(persist, self.reconcile_locked(&service));
        persisted?;
        reconciled
    }

    async fn request(
        &self,
        pod: &PodName,
        req: &ShimRequest,
        payload: &[u8],
    ) -> Result<UnixStream, RuntimeError> {
        let mut s = UnixStream::connect(self.socket(pod))
            .await
            .map_err(|_| RuntimeError::PodNotFound(pod.to_string()))?;
        proto::write_frame_async(&mut s, req, payload)
            .await
            .context(|| format!("talking to pod {pod}"))?;
        Ok(s)
    }

    async fn send_credential(&self, pod: &PodName, credential: &[u8]) -> Result<(), RuntimeError> {
        let mut s = self
            .request(pod, &ShimRequest::Credential, credential)
            .await?;
        match proto::read_frame_async::<ShimReply>(&mut s).await {
            Ok(Some((ShimReply::Done, _))) => Ok(()),
            Ok(Some((ShimReply::Error(e), _))) => Err(RuntimeError::Helper(format!(
                "pod {pod}: credential not replaced: {e}"
            ))),
            _ => Err(RuntimeError::PodNotFound(pod.to_string())),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Is a pod's shim alive? Its lock says so.
enum ShimState {
    /// The pod directory is gone: the shim finished and cleaned up.
    Gone,
    /// The directory is there but nobody holds `shim.lock`.
    Dead,
    /// The shim holds its lock.
    Alive,
}

fn shim_state(pod_dir: &Path) -> ShimState {
    if !pod_dir.exists() {
        return ShimState::Gone;
    }
    match fs::OpenOptions::new()
        .write(true)
        .open(pod_dir.join("shim.lock"))
    {
        Ok(f) => {
            if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
                ShimState::Dead
            } else {
                ShimState::Alive
            }
        }
        // A shim that never got as far as its lock.
        Err(_) => ShimState::Dead,
    }
}

fn kill_shim(pod_dir: &Path) {
    if let Some(pid) = fs::read_to_string(pod_dir.join("shim.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Removes what a dead shim left: its cgroup (killing anything still in
/// it), its credential directory, its pod directory.
async fn clean_up_dead_pod(pod_dir: &Path) {
    let record: Option<ShimConfig> = fs::read(pod_dir.join("pod.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(rec) = record {
        if let Some(cg) = rec.cgroup {
            let _ = tokio::task::spawn_blocking(move || cg.remove(Duration::from_secs(2))).await;
        }
        if let Some(d) = rec.credential_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
    let _ = fs::remove_dir_all(pod_dir);
}

/// Keeps a pod's status current from its shim. When the shim finishes, the
/// pod is forgotten; when it died, its leftovers are removed first; either
/// way the service is reconciled. A live shim that stops answering for
/// 5 s is killed (a pod nobody can control must not run on).
async fn watch_pod(inner: Weak<Inner>, name: PodName, sock: PathBuf) {
    let pod_dir = sock.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        if let Ok(mut s) = UnixStream::connect(&sock).await
            && proto::write_frame_async(&mut s, &ShimRequest::Watch, b"")
                .await
                .is_ok()
        {
            while let Ok(Some((ShimReply::Status(status), _))) =
                proto::read_frame_async::<ShimReply>(&mut s).await
            {
                unreachable_since = None;
                let Some(inner) = inner.upgrade() else { return };
                if let Some(e) = lock(&inner.state).pods.get_mut(&name) {
                    e.status = Some(*status);
                }
                inner.bump();
            }
        }
        match shim_state(&pod_dir) {
            ShimState::Gone => break,
            ShimState::Dead => {
                tracing::warn!(pod = %name, "the pod's shim died; cleaning up");
                clean_up_dead_pod(&pod_dir).await;
                break;
            }
            ShimState::Alive => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(5) {
                    tracing::warn!(pod = %name, "the pod's shim does not answer; killing it");
                    kill_shim(&pod_dir);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let Some(inner) = inner.upgrade() else { return };
    let service = lock(&inner.state).pods.remove(&name).map(|e| e.service);
    inner.bump();
    if let Some(s) = service {
        let _ = inner.reconcile.send(Some(s));
    }
}

async fn reconcile_loop(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Option<ServiceRef>>) {
    let period = match inner.upgrade() {
        Some(i) => i.cfg.reconcile_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    let mut running = tokio::task::JoinSet::new();
    loop {
        let which = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = tick.tick() => None,
        };
        let Some(inner) = inner.upgrade() else { return };
        let services: Vec<ServiceRef> = match which {
            Some(s) => vec![s],
            None => {
                let st = lock(&inner.state);
                let mut v: Vec<ServiceRef> = st.services.keys().cloned().collect();
                // Pods of services nobody declares (any more) are removed too.
                v.extend(st.pods.values().map(|p| p.service.clone()));
                v.sort();
                v.dedup();
                v
            }
        };
        for s in services {
            // A service busy with an operation reconciles itself.
            let l = inner.service_lock(&s);
            if l.try_lock().is_err() {
                continue;
            }
            let inner2 = inner.clone();
            // Owned by this loop: aborted with it when the runtime is dropped.
            running.spawn(async move {
                if let Err(e) = inner2.reconcile_service(&s).await {
                    tracing::warn!(service = %s, error = %e, "reconciliation failed");
                }
            });
        }
        while running.try_join_next().is_some() {}
    }
}

impl Runtime for LocalRuntime {
    fn apply<'a>(
        &'a self,
        service: &'a ServiceRef,
        spec: &'a WorkloadSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.inner.resolve_run_as(spec)?;
            let stopped = lock(&self.inner.state)
                .services
                .get(service)
                .is_some_and(|d| d.stopped);
            self.inner
                .declare(Desired {
                    service: service.clone(),
                    spec: spec.clone(),
                    stopped,
                })
                .await
        })
    }

    fn scale<'a>(
        &'a self,
        service: &'a ServiceRef,
        replicas: u32,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut d = self.inner.desired(service)?;
            d.spec = d.spec.with_replicas(replicas)?;
            self.inner.declare(d).await
        })
    }

    fn stop<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut d = self.inner.desired(service)?;
            d.stopped = true;
            self.inner.declare(d).await
        })
    }

    fn start<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut d = self.inner.desired(service)?;
            d.stopped = false;
            self.inner.declare(d).await
        })
    }

    fn restart<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let svc_lock = inner.service_lock(service);
            let _guard = svc_lock.lock().await;
            let (spec, old) = {
                let st = lock(&inner.state);
                let d = st
                    .services
                    .get(service)
                    .ok_or_else(|| RuntimeError::ServiceNotFound(service.to_string()))?;
                let old: Vec<PodName> = st
                    .pods
                    .iter()
                    .filter(|(_, e)| &e.service == service && !e.terminating)
                    .map(|(n, _)| n.clone())
                    .collect();
                (d.spec.clone(), if d.stopped { Vec::new() } else { old })
            };
            for old_pod in old {
                let new = inner.create_pod(service, &spec).await?;
                if let Err(e) = inner.wait_running(service, &new).await {
                    // The pods not replaced yet keep running; the one that
                    // did not start goes, so the service keeps its count.
                    inner.terminate_pod(&new).await;
                    return Err(e);
                }
                inner.terminate_pod(&old_pod).await;
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, service: &'a ServiceRef) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let svc_lock = inner.service_lock(service);
            let _guard = svc_lock.lock().await;
            let known = lock(&inner.state).services.remove(service).is_some();
            let has_pods = lock(&inner.state)
                .pods
                .values()
                .any(|p| &p.service == service);
            if !known && !has_pods {
                return Err(RuntimeError::ServiceNotFound(service.to_string()));
            }
            let file = service_file(&inner.cfg.state_dir, service);
            let removed = tokio::task::spawn_blocking(move || {
                match fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        return Err(RuntimeError::io(format!("removing {}", file.display()), e));
                    }
                }
                // The deletion is durable before it is acknowledged.
                match file.parent() {
                    Some(dir) => fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .context(|| format!("syncing {}", dir.display())),
                    None => Ok(()),
                }
            });
            let (removed, reconciled) = tokio::join!(removed, inner.reconcile_locked(service));
            removed
                .map_err(|e| RuntimeError::Helper(format!("removing service record: {e}")))??;
            reconciled
        })
    }

    fn services<'a>(&'a self) -> BoxFuture<'a, Result<Vec<ServiceRef>, RuntimeError>> {
        Box::pin(async move {
            let mut services: Vec<ServiceRef> =
                lock(&self.inner.state).services.keys().cloned().collect();
            services.sort();
            Ok(services)
        })
    }

    fn pods<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<PodStatus>, RuntimeError>> {
        Box::pin(async move { Ok(self.inner.pod_statuses(selector)) })
    }

    fn exec<'a>(
        &'a self,
        pod: &'a PodRef,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecSession, RuntimeError>> {
        Box::pin(async move {
            request.validate()?;
            let (status, init) = self.inner.find(pod)?;
            let not_running = || RuntimeError::PodNotRunning {
                pod: pod.name.to_string(),
                phase: status.phase.to_string(),
            };
            if status.phase != PodPhase::Running || !status.ready {
                return Err(not_running());
            }
            let record: ShimConfig = fs::read(
                self.inner
                    .pods_dir()
                    .join(pod.name.as_str())
                    .join("pod.json"),
            )
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(not_running)?;
            let isolate = record.credential_dir.is_none();
            let target = if isolate {
                Some(init.ok_or_else(not_running)?)
            } else {
                None
            };
            exec::exec(&self.inner.cfg.helper, &record, target, request).await
        })
    }

    fn logs<'a>(
        &'a self,
        pod: &'a PodRef,
        options: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>> {
        Box::pin(async move {
            self.inner.find(pod)?;
            let s = self
                .inner
                .request(
                    &pod.name,
                    &ShimRequest::Logs {
                        follow: options.follow,
                        tail_lines: options.tail_lines,
                    },
                    b"",
                )
                .await?;
            let stream = futures::stream::unfold(Some(s), |state| async move {
                let mut s = state?;
                match proto::read_frame_async::<ShimReply>(&mut s).await {
                    Ok(Some((ShimReply::Log { stream, at_ms }, mut payload))) => {
                        let data = bytes::Bytes::from(std::mem::take(&mut *payload));
                        Some((
                            Ok(LogChunk {
                                stream,
                                at_ms,
                                data,
                            }),
                            Some(s),
                        ))
                    }
                    // The end of the log, or the pod is gone.
                    Ok(Some((ShimReply::LogEnd, _))) | Ok(None) => None,
                    Ok(Some((other, _))) => Some((
                        Err(RuntimeError::Helper(format!(
                            "unexpected log frame {other:?}"
                        ))),
                        None,
                    )),
                    Err(_) => None,
                }
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
            if credential.len() > MAX_CREDENTIAL_BYTES {
                return Err(RuntimeError::InvalidRequest(format!(
                    "credential is {} bytes; the limit is {MAX_CREDENTIAL_BYTES}",
                    credential.len()
                )));
            }
            let pods: Vec<PodName> = match target {
                CredentialTarget::Pod(p) => {
                    self.inner.find(p)?;
                    vec![p.name.clone()]
                }
                CredentialTarget::Service(s) => lock(&self.inner.state)
                    .pods
                    .iter()
                    .filter(|(_, e)| &e.service == s && !e.terminating)
                    .map(|(n, _)| n.clone())
                    .collect(),
            };
            for p in pods {
                self.inner.send_credential(&p, &credential).await?;
            }
            Ok(())
        })
    }
}
