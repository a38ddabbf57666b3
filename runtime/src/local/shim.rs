//! The pod shim (`helper shim`): one per pod, like containerd-shim or
//! conmon. It owns the pod's cgroup, creates its sandbox (init in new
//! namespaces), restarts the workload by policy with exponential back-off,
//! keeps the pod's output in a bounded ring, writes the credential file, and
//! serves a control socket (`ctl.sock` in the pod's state directory).
//!
//! It runs in its own session and does not depend on the runtime that
//! started it: the agent can die and a new one adopts the pod through the
//! socket. It holds `shim.lock` for its whole life, which is how a new
//! runtime tells a live pod from a dead one.
//!
//! Single-threaded (a current-thread tokio runtime): `clone3` of the init
//! happens in a process with one thread.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use rustix::process::{WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use zeroize::Zeroizing;

use crate::api::{
    ExitReason, ExitStatus, LastExit, LogChunk, LogStreamKind, MAX_CREDENTIAL_BYTES, PodPhase,
    PodStatus,
};
use crate::local::credfile::{self, CREDENTIAL_DIR};
use crate::local::log_ring::LogRing;
use crate::local::proto::{
    InitConfig, InitEvent, InitInfo, ShimConfig, ShimReply, ShimRequest, ShimStatus, read_frame,
    read_frame_async, write_frame, write_frame_async,
};
use crate::local::{now_ms, workload_env};
use crate::spec::RestartPolicy;
use crate::sys;

/// How long a sandbox may take to set up and start its workload.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks
/// since boot. With the PID it identifies a process uniquely.
pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

enum Cmd {
    Signal(i32),
    Terminate {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

struct Shim {
    cfg: ShimConfig,
    status: watch::Sender<ShimStatus>,
    ring: RefCell<LogRing>,
    logs: broadcast::Sender<LogChunk>,
    ended: watch::Sender<bool>,
    credential: RefCell<Zeroizing<Vec<u8>>>,
    /// The running init: PID and pidfd (for credential writes).
    sandbox: RefCell<Option<(i32, Rc<OwnedFd>)>>,
    cmds: mpsc::UnboundedSender<Cmd>,
    clients: Cell<usize>,
    out_w: OwnedFd,
    err_w: OwnedFd,
    devnull: OwnedFd,
}

struct Prepared {
    listener: std::os::unix::net::UnixListener,
    _lock: std::fs::File,
    out_r: OwnedFd,
    err_r: OwnedFd,
    out_w: OwnedFd,
    err_w: OwnedFd,
    devnull: OwnedFd,
}

/// The shim's entry point: reads its config and the credential from stdin,
/// answers `Ready` (or `Error`) on stdout, then detaches and runs the pod.
pub(crate) fn main() -> ! {
    let mut stdin = std::io::stdin().lock();
    let (cfg, credential): (ShimConfig, Zeroizing<Vec<u8>>) = match read_frame(&mut stdin) {
        Ok(Some(x)) => x,
        _ => std::process::exit(2),
    };
    drop(stdin);
    let mut stdout = std::io::stdout().lock();
    let prepared = match prepare(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = write_frame(&mut stdout, &ShimReply::Error(e), b"");
            std::process::exit(1)
        }
    };
    if write_frame(&mut stdout, &ShimReply::Ready, b"").is_err() {
        std::process::exit(1);
    }
    drop(stdout);
    // Detach: nothing of the runtime that started us stays open.
    let _ = rustix::stdio::dup2_stdin(&prepared.devnull);
    let _ = rustix::stdio::dup2_stdout(&prepared.devnull);
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.pod_dir.join("shim.log"))
    {
        let _ = rustix::stdio::dup2_stderr(&log);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shim: tokio: {e}");
            std::process::exit(1)
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(cfg, prepared, credential));
    std::process::exit(0)
}

fn prepare(cfg: &ShimConfig) -> Result<Prepared, String> {
    // Our own session: the agent's terminal and process group are not ours.
    let _ = rustix::process::setsid();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cfg.pod_dir.join("shim.lock"))
        .map_err(|e| format!("shim.lock: {e}"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| format!("pod {} already has a shim ({e})", cfg.pod))?;
    // For operators (and the test suite's cleanup): who supervises this pod.
    std::fs::write(cfg.pod_dir.join("shim.pid"), std::process::id().to_string())
        .map_err(|e| format!("shim.pid: {e}"))?;
    let sock = cfg.pod_dir.join("ctl.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock)
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    if let Some(cg) = &cfg.cgroup {
        cg.create(cfg.spec.resources())
            .map_err(|e| format!("cgroup: {e}"))?;
    }
    if let Some(dir) = &cfg.credential_dir {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        // The pod's user must reach its credential; nobody else may.
        if let Some(r) = cfg.run_as
            && rustix::process::geteuid().is_root()
        {
            rustix::fs::chown(
                dir,
                Some(rustix::process::Uid::from_raw(r.uid)),
                Some(rustix::process::Gid::from_raw(r.gid)),
            )
            .map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        credfile::check_tmpfs(
            &rustix::fs::open(
                dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("{}: {e}", dir.display()))?,
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    let devnull = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("/dev/null: {e}"))?;
    Ok(Prepared {
        listener,
        _lock: lock,
        out_r,
        err_r,
        out_w,
        err_w,
        devnull,
    })
}

fn initial_status(cfg: &ShimConfig) -> ShimStatus {
    ShimStatus {
        pod: PodStatus {
            name: cfg.pod.clone(),
            service: cfg.service.clone(),
            phase: PodPhase::Pending,
            ready: false,
            restarts: 0,
            started_at_ms: None,
            last_exit: None,
            node: cfg.node.clone(),
            isolation: cfg.isolation.clone(),
            template: cfg.template.clone(),
        },
        init: None,
    }
}

async fn run(cfg: ShimConfig, p: Prepared, credential: Zeroizing<Vec<u8>>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (status, _) = watch::channel(initial_status(&cfg));
    let (ended, _) = watch::channel(false);
    let shim = Rc::new(Shim {
        ring: RefCell::new(LogRing::new(cfg.log_buffer_bytes)),
        logs: broadcast::channel(1024).0,
        cfg,
        status,
        ended,
        credential: RefCell::new(credential),
        sandbox: RefCell::new(None),
        cmds: cmd_tx,
        clients: Cell::new(0),
        out_w: p.out_w,
        err_w: p.err_w,
        devnull: p.devnull,
    });
    for (fd, stream) in [
        (p.out_r, LogStreamKind::Stdout),
        (p.err_r, LogStreamKind::Stderr),
    ] {
        let shim = shim.clone();
        tokio::task::spawn_local(async move { read_output(shim, fd, stream).await });
    }
    let accept = match p
        .listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(p.listener))
    {
        Ok(l) => {
            let shim = shim.clone();
            tokio::task::spawn_local(async move {
                while let Ok((stream, _)) = l.accept().await {
                    let shim = shim.clone();
                    tokio::task::spawn_local(async move { serve(shim, stream).await });
                }
            })
        }
        Err(e) => {
            eprintln!("shim: control socket: {e}");
            return;
        }
    };

    let waiters = supervise(shim.clone(), cmd_rx).await;

    // Tear down: the cgroup (and anything left in it), the credential
    // directory, then tell everyone and leave.
    if let Some(cg) = &shim.cfg.cgroup
        && let Err(e) = cg.remove(Duration::from_secs(5))
    {
        eprintln!("shim: removing cgroup: {e}");
    }
    if let Some(dir) = &shim.cfg.credential_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    // The directory goes before anyone is told: whoever asked for the
    // termination finds nothing left. Open connections keep working.
    let _ = std::fs::remove_dir_all(&shim.cfg.pod_dir);
    for w in waiters {
        let _ = w.send(());
    }
    shim.ended.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(2);
    while shim.clients.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    accept.abort();
}

async fn read_output(shim: Rc<Shim>, fd: OwnedFd, stream: LogStreamKind) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = LogChunk {
                    stream,
                    at_ms: now_ms(),
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                shim.ring.borrow_mut().push(chunk.clone());
                let _ = shim.logs.send(chunk);
            }
        }
    }
}

struct ClientGuard(Rc<Shim>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.set(self.0.clients.get().saturating_sub(1));
    }
}

async fn serve(shim: Rc<Shim>, mut stream: UnixStream) {
    shim.clients.set(shim.clients.get() + 1);
    let _guard = ClientGuard(shim.clone());
    let Ok(Some((req, payload))) = read_frame_async::<ShimRequest>(&mut stream).await else {
        return;
    };
    let mut ended = shim.ended.subscribe();
    match req {
        ShimRequest::Watch => {
            let mut rx = shim.status.subscribe();
            loop {
                let s = rx.borrow_and_update().clone();
                if write_frame_async(&mut stream, &ShimReply::Status(Box::new(s)), b"")
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = ended.wait_for(|e| *e) => {
                        let s = rx.borrow().clone();
                        let _ = write_frame_async(&mut stream, &ShimReply::Status(Box::new(s)), b"").await;
                        return;
                    }
                }
            }
        }
        ShimRequest::Logs { follow, tail_lines } => {
            // Subscribe before the snapshot; nothing runs in between.
            let mut rx = shim.logs.subscribe();
            let kept = shim.ring.borrow().tail(tail_lines);
            for c in kept {
                if send_chunk(&mut stream, &c).await.is_err() {
                    return;
                }
            }
            if follow && !*ended.borrow() {
                loop {
                    tokio::select! {
                        r = rx.recv() => match r {
                            Ok(c) => if send_chunk(&mut stream, &c).await.is_err() { return },
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                let note = LogChunk {
                                    stream: LogStreamKind::Stderr,
                                    at_ms: now_ms(),
                                    data: Bytes::from(format!("[warden: {n} log chunks skipped: reader too slow]\n")),
                                };
                                if send_chunk(&mut stream, &note).await.is_err() { return }
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                        _ = ended.wait_for(|e| *e) => {
                            // Deliver what was read before the end.
                            while let Ok(c) = rx.try_recv() {
                                if send_chunk(&mut stream, &c).await.is_err() { return }
                            }
                            break;
                        }
                    }
                }
            }
            let _ = write_frame_async(&mut stream, &ShimReply::LogEnd, b"").await;
        }
        ShimRequest::Credential => {
            let reply = refresh_credential(&shim, payload);
            let r = match reply {
                Ok(()) => ShimReply::Done,
                Err(e) => ShimReply::Error(e),
            };
            let _ = write_frame_async(&mut stream, &r, b"").await;
        }
        ShimRequest::Signal { signal } => {
            let _ = shim.cmds.send(Cmd::Signal(signal));
            let _ = write_frame_async(&mut stream, &ShimReply::Done, b"").await;
        }
        ShimRequest::Terminate { grace_ms } => {
            let (tx, rx) = oneshot::channel();
            let _ = shim.cmds.send(Cmd::Terminate {
                grace: Duration::from_millis(grace_ms),
                done: tx,
            });
            let _ = rx.await;
            let _ = write_frame_async(&mut stream, &ShimReply::Done, b"").await;
        }
    }
}

async fn send_chunk(stream: &mut UnixStream, c: &LogChunk) -> std::io::Result<()> {
    write_frame_async(
        stream,
        &ShimReply::Log {
            stream: c.stream,
            at_ms: c.at_ms,
        },
        &c.data,
    )
    .await
}

fn refresh_credential(shim: &Shim, payload: Zeroizing<Vec<u8>>) -> Result<(), String> {
    if payload.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!(
            "credential is {} bytes; the limit is {MAX_CREDENTIAL_BYTES}",
            payload.len()
        ));
    }
    *shim.credential.borrow_mut() = payload;
    let sandbox = shim.sandbox.borrow().clone();
    match sandbox {
        // Between runs: the next start writes the new credential.
        None => Ok(()),
        Some((pid, pidfd)) => write_credential(shim, pid, &pidfd),
    }
}

/// Replaces the credential file of the running sandbox. In a pod the
/// directory is reached through the init's root (`/proc/PID/root`); the
/// init is checked to be alive after the directory is opened, so a recycled
/// PID cannot redirect the write.
fn write_credential(shim: &Shim, pid: i32, pidfd: &OwnedFd) -> Result<(), String> {
    let dir = match &shim.cfg.credential_dir {
        Some(d) => credfile::open_dir(d)?,
        None => credfile::open_dir(Path::new(&format!("/proc/{pid}/root{CREDENTIAL_DIR}")))?,
    };
    credfile::replace(&dir, &shim.credential.borrow(), shim.cfg.run_as)?;
    if shim.cfg.credential_dir.is_none() && process_exited(pidfd) {
        return Err("the pod's init exited during the credential write".into());
    }
    Ok(())
}

fn process_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// A sandbox whose workload has started.
struct Running {
    /// Without a PID namespace: the workload's process group, killed with
    /// the init since no namespace teardown does it.
    group: Option<i32>,
    pid: i32,
    pidfd: Rc<OwnedFd>,
    waiter: AsyncFd<OwnedFd>,
    sock: UnixStream,
    start_time: u64,
}

impl Running {
    fn signal(&self, sig: i32) {
        if let Some(s) = rustix::process::Signal::from_named_raw(sig) {
            let _ = rustix::process::pidfd_send_signal(&*self.pidfd, s);
            if sig == libc::SIGKILL {
                self.kill_group();
            }
        }
    }

    fn kill_group(&self) {
        if let Some(g) = self.group.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
        }
    }

    /// Waits for the init to exit and reaps it; its wait status.
    async fn wait(&self) -> ExitStatus {
        loop {
            let Ok(mut guard) = self.waiter.readable().await else {
                return ExitStatus::exited(125);
            };
            match rustix::process::waitid(
                WaitId::PidFd(self.waiter.get_ref().as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            ) {
                Ok(Some(st)) => {
                    return match st.terminating_signal() {
                        Some(sig) => ExitStatus::signaled(sig),
                        None => ExitStatus::exited(st.exit_status().unwrap_or(0)),
                    };
                }
                Ok(None) => guard.clear_ready(),
                Err(_) => return ExitStatus::exited(125),
            }
        }
    }
}

fn helper_argv(cfg: &ShimConfig, role: &str) -> Vec<std::ffi::OsString> {
    let mut v = vec![cfg.helper.program.clone().into_os_string()];
    v.extend(cfg.helper.args.iter().map(Into::into));
    v.push(role.into());
    v
}

/// Creates a sandbox and starts the workload in it.
async fn start(shim: &Shim) -> Result<Running, String> {
    let cfg = &shim.cfg;
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let argv = helper_argv(cfg, "init");
    let argv_refs: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    let plan = sys::ExecPlan::new(
        &cfg.helper.program,
        &argv_refs,
        &["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
    )
    .map_err(|e| format!("helper command: {e}"))?;
    let isolate = cfg.credential_dir.is_none();
    let (pid, pidfd) = sys::clone_exec(
        &plan,
        sys::NewNamespaces { isolate },
        &[
            (shim.devnull.as_fd(), 0),
            (shim.out_w.as_fd(), 1),
            (shim.err_w.as_fd(), 2),
            (theirs.as_fd(), 3),
        ],
    )
    .map_err(|e| format!("creating the pod's init: {e}"))?;
    drop(theirs);
    // One descriptor for the exit watcher, one to signal and check the init.
    let watcher = rustix::io::fcntl_dupfd_cloexec(&pidfd, 0)
        .map_err(std::io::Error::from)
        .and_then(|d| sys::async_fd(d, tokio::io::Interest::READABLE));
    let waiter = match watcher {
        Ok(w) => w,
        Err(e) => {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
            return Err(format!("pidfd: {e}"));
        }
    };
    let pidfd = Rc::new(pidfd);
    let setup = async {
        if let Some(cg) = &cfg.cgroup {
            cg.add(pid).map_err(|e| format!("cgroup: {e}"))?;
        }
        let start_time = proc_start_time(pid).ok_or("the pod's init vanished")?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut sock = UnixStream::from_std(ours).map_err(|e| e.to_string())?;
        let init_cfg = InitConfig {
            hostname: cfg.pod.to_string(),
            isolate,
            masked_paths: cfg.masked_paths.clone(),
            tmp_bytes: cfg.spec.resources().memory.unwrap_or(64 << 20),
            argv: super::workload_argv(cfg, isolate),
            env: workload_env(cfg),
            run_as: cfg.run_as,
            credential_dir: cfg.credential_dir.clone(),
            injector: cfg
                .injection
                .as_ref()
                .filter(|_| isolate)
                .map(|i| i.binary.clone()),
        };
        // The credential travels as the frame's payload; the init writes it
        // into its tmpfs before the workload exists.
        let credential = shim.credential.borrow().clone();
        write_frame_async(&mut sock, &init_cfg, &credential)
            .await
            .map_err(|e| format!("pod init: {e}"))?;
        drop(credential);
        match read_frame_async::<InitEvent>(&mut sock).await {
            Ok(Some((InitEvent::Started { pid: workload }, _))) => Ok(Running {
                group: (!isolate).then_some(workload),
                pid,
                pidfd: pidfd.clone(),
                waiter,
                sock,
                start_time,
            }),
            Ok(Some((InitEvent::Failed { message }, _))) => Err(message),
            _ => Err("the pod's init ended before the workload started".into()),
        }
    };
    let result = match tokio::time::timeout(START_TIMEOUT, setup).await {
        Ok(r) => r,
        Err(_) => Err("the pod's sandbox did not start within 10 s".into()),
    };
    if result.is_err() {
        let _ = rustix::process::pidfd_send_signal(&*pidfd, rustix::process::Signal::KILL);
        // Reap it (blocking is fine: SIGKILL is immediate).
        let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
    }
    result
}

fn update(shim: &Shim, f: impl FnOnce(&mut ShimStatus)) {
    shim.status.send_modify(f);
}

/// Runs the pod until it is terminated; returns who asked.
async fn supervise(
    shim: Rc<Shim>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) -> Vec<oneshot::Sender<()>> {
    let cfg = &shim.cfg;
    let initial = Duration::from_millis(cfg.backoff_initial_ms.max(1));
    let max = Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms).max(1));
    let reset = Duration::from_millis(cfg.backoff_reset_ms);
    let mut delay = initial;
    let mut waiters = Vec::new();
    let mut restarts: u32 = 0;
    loop {
        let oom_before = cfg.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0);
        let started = Instant::now();
        let (status, message, terminating) = match start(&shim).await {
            Err(message) => {
                eprintln!("shim: start failed: {message}");
                (ExitStatus::exited(127), Some(message), false)
            }
            Ok(mut run) => {
                *shim.sandbox.borrow_mut() = Some((run.pid, run.pidfd.clone()));
                update(&shim, |s| {
                    s.pod.phase = PodPhase::Running;
                    s.pod.ready = true;
                    s.pod.restarts = restarts;
                    s.pod.started_at_ms = Some(now_ms());
                    s.init = Some(InitInfo {
                        pid: run.pid,
                        start_time: run.start_time,
                    });
                });
                let mut deadline: Option<tokio::time::Instant> = None;
                let mut terminating = false;
                let waited = loop {
                    tokio::select! {
                        st = run.wait() => break st,
                        cmd = cmds.recv() => match cmd {
                            Some(Cmd::Signal(sig)) => run.signal(sig),
                            Some(Cmd::Terminate { grace, done }) => {
                                waiters.push(done);
                                if !terminating {
                                    terminating = true;
                                    update(&shim, |s| s.pod.phase = PodPhase::Terminating);
                                    run.signal(libc::SIGTERM);
                                    deadline = Some(tokio::time::Instant::now() + grace);
                                }
                            }
                            None => {}
                        },
                        _ = async {
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d).await,
                                None => std::future::pending().await,
                            }
                        } => {
                            run.signal(libc::SIGKILL);
                            deadline = None;
                        }
                    }
                };
                *shim.sandbox.borrow_mut() = None;
                run.kill_group();
                // The init reports the workload's own status just before it
                // exits; without it (the init was killed), its wait status.
                let mut reported = None;
                while let Ok(Ok(Some((ev, _)))) = tokio::time::timeout(
                    Duration::from_millis(50),
                    read_frame_async::<InitEvent>(&mut run.sock),
                )
                .await
                {
                    if let InitEvent::Exited { status } = ev {
                        reported = Some(status);
                    }
                }
                (reported.unwrap_or(waited), None, terminating)
            }
        };
        let oom = cfg.cgroup.as_ref().map(|c| c.oom_kills()).unwrap_or(0) > oom_before;
        let reason = if message.is_some() {
            ExitReason::StartFailed
        } else if oom {
            ExitReason::OomKilled
        } else if status.signal.is_some() {
            ExitReason::Signaled
        } else if status.code == 0 {
            ExitReason::Completed
        } else {
            ExitReason::Error
        };
        update(&shim, |s| {
            s.init = None;
            s.pod.ready = false;
            s.pod.last_exit = Some(LastExit {
                status,
                reason,
                finished_at_ms: now_ms(),
                message,
            });
        });
        if terminating {
            return waiters;
        }
        let failed = !status.success() || reason == ExitReason::OomKilled;
        let again = match cfg.spec.restart() {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !again {
            update(&shim, |s| {
                s.pod.phase = if failed {
                    PodPhase::Failed
                } else {
                    PodPhase::Succeeded
                };
            });
            // Keep status and logs until the runtime removes the pod.
            loop {
                match cmds.recv().await {
                    Some(Cmd::Terminate { done, .. }) => {
                        waiters.push(done);
                        update(&shim, |s| s.pod.phase = PodPhase::Terminating);
                        return waiters;
                    }
                    Some(Cmd::Signal(_)) => {}
                    None => return waiters,
                }
            }
        }
        if started.elapsed() >= reset {
            delay = initial;
        }
        update(&shim, |s| {
            s.pod.phase = if s.pod.started_at_ms.is_some() {
                PodPhase::Running
            } else {
                PodPhase::Pending
            };
        });
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Terminate { done, .. }) => {
                        waiters.push(done);
                        update(&shim, |s| s.pod.phase = PodPhase::Terminating);
                        return waiters;
                    }
                    Some(Cmd::Signal(_)) => {}
                    None => return waiters,
                }
            }
        }
        delay = (delay * 2).min(max);
        restarts += 1;
    }
}
