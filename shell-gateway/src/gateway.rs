//! The transport-neutral core every entry point shares: authorize
//! `shell.exec` on the service once, as a session-long grant; find the pod;
//! start the process through the runtime; record the outcome with what the
//! session did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use std::time::Duration;
use warden_pipeline::{
    Caller, Error, Operation, Pipeline, SessionGrant, SessionRecord, Target, Transport,
};
use warden_policies::{Action, Scope};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use warden_runtime::{
    ExecControl, ExecRequest, ExecSession, ExecStdin, ExitFuture, ExitStatus, PodName, PodPhase,
    PodRef, Runtime, Selector, Signal, TermSize,
};
use warden_store::ShellSessionRow;
use warden_types::ScopePath;

use crate::recording::{Recorder, Recordings, Setup, Tap};
use crate::target::ShellTarget;

/// How long a process may leave its stdin unread while the client has more
/// for it, before the session ends. Input waits meanwhile (backpressure):
/// SSH delivers a connection's channel data in order, so a stalled channel
/// holds its whole connection, and a vanished client cannot be noticed.
pub const STDIN_STALL: Duration = Duration::from_secs(15);

/// Why input could not go to the process.
#[derive(Debug)]
pub enum StdinError {
    /// The process closed its stdin (or exited): input is dropped.
    Closed,
    /// The process read nothing for [`STDIN_STALL`] (what to tell the user).
    Stalled(String),
}

/// Writes input to a process's stdin, waiting while it is full, at most
/// [`STDIN_STALL`].
pub async fn write_stdin(stdin: &ExecStdin, data: bytes::Bytes) -> Result<(), StdinError> {
    match tokio::time::timeout(STDIN_STALL, stdin.write(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(StdinError::Closed),
        Err(_) => Err(StdinError::Stalled(format!(
            "the process read none of its input for {} s",
            STDIN_STALL.as_secs()
        ))),
    }
}

/// Where a session's input goes, for a front-end's input task: the
/// process's stdin and controls, the byte count, the recording.
pub(crate) struct Input {
    pub(crate) stdin: Option<ExecStdin>,
    pub(crate) control: ExecControl,
    pub(crate) counted: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) tap: Tap,
}

/// Services the SSH menu looks at, at most (a caller bound in many large
/// organizations sees the first ones, in name order).
pub(crate) const MENU_SCAN: usize = 1000;

/// What runs when the user asks for a shell rather than a command: bash
/// where the image has it, else `sh`, as a login shell.
const LOGIN_SHELL: &str = "command -v bash >/dev/null 2>&1 && exec bash -l; exec sh -l";

/// Where an environment's pods run. The composition root (the server)
/// answers from its cluster placements; the gateway knows only the trait.
pub trait Placement: Send + Sync {
    /// The runtime that runs `env`'s pods.
    fn runtime<'a>(&'a self, env: &'a ScopePath) -> BoxFuture<'a, Result<Arc<dyn Runtime>, Error>>;
}

/// What to run in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An interactive login shell.
    Shell,
    /// A program and its arguments, as given (no shell splitting).
    Argv(Vec<String>),
}

/// One request for a session.
#[derive(Debug, Clone)]
pub struct ShellRequest {
    /// Where.
    pub target: ShellTarget,
    /// What.
    pub command: Command,
    /// A terminal of this size, or none.
    pub tty: Option<TermSize>,
    /// Environment from the client, already limited to what the transport
    /// forwards (the runtime checks its allowlist again).
    pub env: Vec<(String, String)>,
}

/// The shell gateway's core, shared by the SSH and WebSocket front-ends.
#[derive(Clone)]
pub struct Gateway {
    pipeline: Pipeline,
    placement: Arc<dyn Placement>,
    recordings: Arc<dyn Recordings>,
    /// This replica's node id (sessions are recorded with it).
    node: Arc<str>,
    /// This process's own id (node ids may repeat across replicas, and a
    /// restarted replica is a new holder): a random one per gateway.
    holder: Arc<str>,
    /// The sessions this replica holds, each with the sender that ends it
    /// (with the reason: `kill`, a failed recording), by id.
    live: Arc<Mutex<HashMap<String, watch::Sender<Option<String>>>>>,
}

/// A started session: its grant of authority and what the audit entry of
/// its end needs. The process itself is the [`ExecSession`] returned next
/// to it.
pub struct Session {
    id: String,
    pod: PodName,
    transport: Transport,
    grant: SessionGrant,
    /// Set with the reason when the session is ended from outside its
    /// authority: someone ended it (`kill`), or its recording failed.
    killed: watch::Receiver<Option<String>>,
    recorder: Recorder,
    gateway: Gateway,
}

/// Why a running session stopped.
#[derive(Debug)]
pub enum Stop {
    /// The process exited (its status), or the runtime lost it (an error:
    /// the pod or the agent's link is gone).
    Exited(Result<ExitStatus, warden_runtime::RuntimeError>),
    /// The caller's authority ended, someone ended the session, or its
    /// recording failed (the reason).
    AuthorityEnded(String),
    /// The session reached its maximum length or was idle too long (which).
    LimitReached(String),
    /// The client went away, or its input was refused: it broke the
    /// protocol, or the process left it unread too long (what happened).
    ClientGone(Option<String>),
}

impl Stop {
    /// The session outcome's audit status.
    pub fn status(&self) -> &'static str {
        match self {
            Stop::Exited(Ok(_)) => "ok",
            Stop::Exited(Err(_)) => "upstream_lost",
            Stop::AuthorityEnded(_) => "authority_ended",
            Stop::LimitReached(_) => "limit_reached",
            Stop::ClientGone(None) => "client_gone",
            Stop::ClientGone(Some(_)) => "input_refused",
        }
    }
}

/// How a session ended, for its audit entry.
#[derive(Debug, Clone, Copy)]
pub struct SessionEnd {
    /// The process's exit status, if it exited and the client was told.
    pub exit: Option<ExitStatus>,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// The outcome's status: `ok` when the process exited (whatever its
    /// code), `authority_ended`, `limit_reached`, `upstream_lost`,
    /// `client_gone`, `input_refused`.
    pub status: &'static str,
}

impl Gateway {
    /// A gateway running sessions through `pipeline`, on the runtimes
    /// `placement` names, recorded with the keys `recordings` gives.
    pub fn new(
        pipeline: Pipeline,
        placement: Arc<dyn Placement>,
        recordings: Arc<dyn Recordings>,
        node: &str,
    ) -> Self {
        Self {
            pipeline,
            placement,
            recordings,
            node: node.into(),
            holder: holder_id().into(),
            live: Arc::default(),
        }
    }

    /// Says this process still holds its live sessions, if it holds any,
    /// and ends those another replica ended as lost meanwhile (this one
    /// had not said so for too long: fail closed, their listing says they
    /// ended). Run it every few seconds, well within the bound of
    /// [`end_lost_sessions`].
    pub async fn heartbeat(&self) -> Result<(), Error> {
        if lock(&self.live).is_empty() {
            return Ok(());
        }
        let lost = self
            .pipeline
            .store()
            .shell_sessions_seen(&self.holder, warden_store::now_ms())
            .await?;
        for id in lost {
            if let Some(tx) = lock(&self.live).get(&id) {
                tx.send_replace(Some(
                    "this replica could not record the session as live; it was ended as replica_lost"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Ends a session this replica holds, telling its user who asked;
    /// false if it holds no such session.
    pub fn end_here(&self, id: &str, by: &str) -> bool {
        match lock(&self.live).get(id) {
            Some(tx) => {
                tx.send_replace(Some(format!("ended by {by}")));
                true
            }
            None => false,
        }
    }

    /// Ends the sessions of this replica that someone asked (on any
    /// replica) to end: `session kill` records the ask, this finds it. Run
    /// it every second.
    pub async fn apply_kills(&self) -> Result<(), Error> {
        for (id, by) in self
            .pipeline
            .store()
            .killed_shell_sessions(&self.holder)
            .await?
        {
            self.end_here(&id, &by);
        }
        Ok(())
    }

    /// The pipeline sessions run through (front-ends authenticate with it).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Authorizes `shell.exec` on the target's service for `caller` (once;
    /// the returned [`Session`] ends when that authority ends), records the
    /// intent durably, gets the recording's keys, picks the pod and starts
    /// the process in it, recorded from its first byte. A
    /// failure after the authorization is recorded as the session's
    /// outcome. `caller` must be freshly authenticated: a front-end whose
    /// connection outlives one session (SSH) re-authenticates it first
    /// ([`Pipeline::reauthenticate`]).
    pub async fn open(
        &self,
        caller: &Caller,
        request: ShellRequest,
    ) -> Result<(Session, ExecSession), Error> {
        let service = request.target.service.path().clone();
        let id = hex::encode(warden_pipeline::random_bytes::<12>()?);
        let operation = Operation::new(
            "shell.exec",
            Action::ShellExec,
            Scope::Path(service.clone()),
            Target::session(
                &id,
                &service,
                request.target.pod.as_ref().map(|p| p.as_str().to_owned()),
            ),
        );
        let grant = self.pipeline.run_session(caller, operation).await?;
        // No recording, no session.
        let started = match self.recordings.keys(grant.permit(), &service, &id).await {
            Ok(keys) => self.start(&request).await.map(|s| (keys, s)),
            Err(e) => Err(e),
        };
        let (keys, (pod, exec)) = match started {
            Ok(started) => started,
            Err(e) => {
                grant.finish(e.code());
                return Err(e);
            }
        };
        let transport = caller.meta().transport;
        let policy = grant.permit().session_policy();
        let (tx, killed) = watch::channel(None);
        let recorder = Recorder::start(Setup {
            keys,
            store: self.pipeline.store().clone(),
            session: id.clone(),
            org: service.org().to_owned(),
            tty: request.tty,
            command: match &request.command {
                Command::Shell => None,
                Command::Argv(argv) => Some(argv.join(" ")),
            },
            env: request.env.clone(),
            record_input: policy.record_input,
            failed: tx.clone(),
        });
        lock(&self.live).insert(id.clone(), tx);
        let session = Session {
            id,
            pod,
            transport,
            grant,
            killed,
            recorder,
            gateway: self.clone(),
        };
        let row = ShellSessionRow {
            id: session.id.clone(),
            org: service.org().to_owned(),
            service: service.as_str().to_owned(),
            pod: session.pod.as_str().to_owned(),
            principal: caller.id().to_owned(),
            transport: transport.as_str().to_owned(),
            node: self.node.to_string(),
            started_at: warden_store::now_ms(),
            ended_at: None,
            status: None,
            exit_status: None,
            killed_by: None,
            holder: Some(self.holder.to_string()),
            seen_at: None,
        };
        // Listed for `session list|kill`; a session that cannot be listed
        // still runs (the audit log has it), but is logged.
        if let Err(e) = self.pipeline.store().shell_session_started(row).await {
            tracing::warn!(error = %e, "a shell session could not be listed");
        }
        Ok((session, exec))
    }

    /// The pods `caller` may open a shell in now (running and ready, in
    /// services where `shell.exec` is allowed), in name order, at most
    /// `limit`: the SSH menu. Only organizations the caller has a binding
    /// in are searched, and at most `MENU_SCAN` services.
    pub async fn targets(&self, caller: &Caller, limit: usize) -> Result<Vec<ShellTarget>, Error> {
        let store = self.pipeline.store();
        let principal = &caller.who().principal;
        let mut parents: Vec<String> = store
            .child_scopes(None)
            .await?
            .into_iter()
            .map(|r| r.path)
            .filter(|org| principal.has_binding_in_org(org))
            .collect();
        // Organizations, then projects, then environments: their children.
        for _ in 0..3 {
            let mut children = Vec::new();
            for parent in &parents {
                for row in store.child_scopes(Some(parent)).await? {
                    if children.len() < MENU_SCAN {
                        children.push(row.path);
                    }
                }
            }
            parents = children;
        }
        let mut found = Vec::new();
        for path in parents {
            let Ok(service) = ScopePath::parse_kind(&path, warden_types::ScopeKind::Service) else {
                continue;
            };
            if !self
                .pipeline
                .allows(caller, Action::ShellExec, &service)
                .await?
            {
                continue;
            }
            let Ok(service) = warden_runtime::ServiceRef::from_path(service) else {
                continue;
            };
            // A cluster that cannot answer leaves its pods out of the menu.
            let Ok(runtime) = self.placement.runtime(&service.environment()).await else {
                continue;
            };
            let Ok(pods) = runtime.pods(&Selector::Service(service.clone())).await else {
                continue;
            };
            for pod in pods {
                if pod.phase == PodPhase::Running && pod.ready {
                    found.push(ShellTarget {
                        service: service.clone(),
                        pod: Some(pod.name),
                    });
                }
            }
        }
        found.sort_by_key(ToString::to_string);
        found.truncate(limit);
        Ok(found)
    }

    async fn start(&self, request: &ShellRequest) -> Result<(PodName, ExecSession), Error> {
        let service = &request.target.service;
        if self
            .pipeline
            .store()
            .scope(service.as_str())
            .await?
            .is_none()
        {
            return Err(Error::not_found(format!("{} not found", service.as_str())));
        }
        let runtime = self.placement.runtime(&service.environment()).await?;
        let pods = runtime.pods(&Selector::Service(service.clone())).await?;
        let pod = match &request.target.pod {
            Some(name) => {
                let pod = pods
                    .iter()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| Error::not_found(format!("pod {} not found", request.target)))?;
                if pod.phase != PodPhase::Running {
                    return Err(Error::conflict(format!(
                        "pod {} is {}, not Running",
                        request.target, pod.phase
                    )));
                }
                pod.name.clone()
            }
            None => pods
                .iter()
                .filter(|p| p.phase == PodPhase::Running && p.ready)
                .map(|p| &p.name)
                .min()
                .cloned()
                .ok_or_else(|| {
                    Error::conflict(format!("{} has no running pod", service.as_str()))
                })?,
        };
        let argv = match &request.command {
            Command::Shell => vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()],
            Command::Argv(argv) => argv.clone(),
        };
        let exec = ExecRequest {
            argv,
            tty: request.tty,
            stdin: true,
            env: request.env.clone(),
        };
        exec.validate()?;
        let pod_ref = PodRef {
            service: service.clone(),
            name: pod.clone(),
        };
        Ok((pod.clone(), runtime.exec(&pod_ref, exec).await?))
    }
}

impl Session {
    /// The session's recording, which the front-end feeds.
    pub fn tap(&self) -> Tap {
        self.recorder.tap()
    }

    /// Resolves with the reason once the caller's authority has ended
    /// (binding revoked, user disabled, credential revoked or expired,
    /// vault sealed). Cancel-safe.
    pub async fn authority_ended(&mut self) -> String {
        self.grant.ended().await
    }

    /// Waits for whichever comes first: the process exits, the caller's
    /// authority ends, the session reaches its maximum length (the
    /// front-end's `max_length`, or the roles' if shorter) or is idle for
    /// the roles' `idle_timeout`, or `input` (the task feeding the client's
    /// input to the process) ends, with the protocol error it met, if any.
    /// The roles' settings are those of the latest authorization: a role
    /// tightened mid-session applies at once. Unless the process exited,
    /// it is killed.
    pub async fn supervise(
        &mut self,
        exit: ExitFuture,
        control: &ExecControl,
        input: JoinHandle<Option<String>>,
        max_length: Duration,
    ) -> Stop {
        let abort = input.abort_handle();
        let mut killed = self.killed.clone();
        let mut policy = self.grant.policy_watch();
        let front_max = max_length;
        let tap = self.recorder.tap();
        let mut exit = exit;
        let mut input = input;
        let stop = loop {
            let now = *policy.borrow_and_update();
            tap.record_input(now.record_input);
            let max_length = now.max_length.map_or(front_max, |m| m.min(front_max));
            let left = max_length.saturating_sub(self.grant.elapsed());
            break tokio::select! {
                status = &mut exit => Stop::Exited(status),
                reason = self.grant.ended() => Stop::AuthorityEnded(reason),
                Ok(why) = killed.wait_for(Option::is_some) => {
                    Stop::AuthorityEnded(why.clone().unwrap_or_default())
                }
                () = tokio::time::sleep(left) => Stop::LimitReached(format!(
                    "the session reached its maximum length ({})",
                    span(max_length)
                )),
                idle = idle_for(&tap, now.idle_timeout) => Stop::LimitReached(format!(
                    "no input or output for {}",
                    span(idle)
                )),
                ended = &mut input => Stop::ClientGone(ended.unwrap_or(None)),
                Ok(()) = policy.changed() => continue,
            };
        };
        abort.abort();
        if !matches!(stop, Stop::Exited(Ok(_))) {
            let _ = control.signal(Signal::KILL);
        }
        stop
    }

    /// Completes the recording, then records the session's end with its
    /// digest.
    pub fn finish(self, end: SessionEnd) {
        lock(&self.gateway.live).remove(&self.id);
        let store = self.gateway.pipeline.store().clone();
        let (id, status) = (self.id.clone(), end.status);
        let exit = end.exit.map(|e| i64::from(e.code));
        tokio::spawn(async move {
            if let Err(e) = store
                .shell_session_ended(&id, warden_store::now_ms(), status, exit)
                .await
            {
                tracing::warn!(error = %e, "a shell session's end could not be listed");
            }
        });
        let duration_ms = u64::try_from(self.grant.elapsed().as_millis()).unwrap_or(u64::MAX);
        tokio::spawn(async move {
            // A recording that failed ended its session; its outcome then
            // has no digest (`audit verify` reports the recording
            // incomplete).
            let recording_digest = self.recorder.finish().await.ok();
            let record = SessionRecord {
                bytes_in: end.bytes_in,
                bytes_out: end.bytes_out,
                container: None,
                duration_ms,
                exit_status: end.exit.map(|e| e.code),
                id: self.id,
                pod: Some(self.pod.as_str().to_owned()),
                recording_digest,
                transport: self.transport.as_str(),
            };
            self.grant.finish_with(end.status, record);
        });
    }
}

/// Resolves once the session has had no input or output for `limit`
/// (never without one), with the limit.
async fn idle_for(tap: &Tap, limit: Option<Duration>) -> Duration {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        let due = tap.last_activity() + limit;
        if tokio::time::Instant::now() >= due {
            return limit;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// Ends (status `replica_lost`) the live sessions of any replica whose
/// holding process has not said it holds them ([`Gateway::heartbeat`]) for
/// `lost_after`: it crashed, or cannot reach the database. They have no
/// audit outcome (their intent stays without one); their listing and joins
/// end. Any replica may run it, holding sessions or not. Answers the ids
/// ended.
pub async fn end_lost_sessions(
    store: &warden_store::Store,
    lost_after: Duration,
) -> Result<Vec<String>, Error> {
    let now = warden_store::now_ms();
    let bound = i64::try_from(lost_after.as_millis()).unwrap_or(i64::MAX);
    Ok(store
        .end_lost_shell_sessions(now.saturating_sub(bound), now)
        .await?)
}

/// A new process's holder id: 16 random hex digits.
fn holder_id() -> String {
    match warden_pipeline::random_bytes::<8>() {
        Ok(bytes) => hex::encode(bytes),
        // The system's random source failing is not expected; the process
        // id and the time are unique enough among replicas to go on with.
        Err(_) => format!("{}-{}", std::process::id(), warden_store::now_ms()),
    }
}

/// `90s`, `15m`, `8h`, `1h30m` for people.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
