//! Where environments' pods run: the agent hub (agents' links end here)
//! and, for `warden dev`, the in-process agent named `local`.
//!
//! Every operation on pods goes through the pipeline first (the routes in
//! `routes/workloads.rs`), then reaches the environment's cluster through
//! a [`RemoteRuntime`] over the hub, also for the in-process agent: one
//! path, whether the pods are in this process or behind an agent on
//! another network.
//!
//! Not built yet (issue 10): enrollment of external agents (join tokens,
//! CSR, the agent CA), the cluster registry and placement of environments
//! on clusters, so every environment runs on the cluster [`LOCAL_CLUSTER`].

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use warden_agent::{Agent, AgentInfo, CredentialFeed, RemoteRuntime, serve_credentials};
use warden_link::Hub;
pub use warden_runtime::Isolation;
use warden_runtime::{
    HelperCommand, LocalConfig, LocalRuntime, PodName, Runtime, RuntimeError, ServiceRef,
};
use warden_types::ScopePath;
use zeroize::Zeroizing;

use crate::state::App;

/// The cluster of the in-process agent, and for now of every environment.
pub const LOCAL_CLUSTER: &str = "local";

/// How long the in-process agent waits for each new pod of a rollout.
const LOCAL_ROLLOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Lifetime of the workload credential a pod is started with (the
/// longest Warden issues).
const POD_CREDENTIAL_TTL_SECS: u64 = warden_pipeline::identity::WORKLOAD_MAX_TTL_SECS;

/// The agents connected to this server.
#[derive(Clone, Default)]
pub struct Clusters {
    hub: Hub,
}

impl Clusters {
    /// No agents yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster `env`'s pods run on.
    pub fn cluster_of(&self, _env: &ScopePath) -> &'static str {
        LOCAL_CLUSTER
    }

    /// The runtime of the cluster `env`'s pods run on.
    pub fn runtime_for(&self, env: &ScopePath) -> RemoteRuntime {
        RemoteRuntime::new(self.hub.clone(), self.cluster_of(env))
    }
}

/// Entry point of the local runtime's helper processes, for the binary's
/// `main` (`warden __runtime ROLE ...`; see [`local_agent_helper`]). `args`
/// start at the role.
pub fn runtime_helper(args: Vec<std::ffi::OsString>) -> ! {
    warden_runtime::helper_main(args)
}

/// How the local runtime re-executes this binary for its helpers: `main`
/// must dispatch `__runtime` to [`runtime_helper`] before starting tokio.
pub fn local_agent_helper() -> Result<HelperCommand, std::io::Error> {
    Ok(HelperCommand {
        program: std::env::current_exe()?,
        args: vec!["__runtime".into()],
    })
}

/// The in-process agent's configuration.
#[derive(Debug, Clone)]
pub struct LocalAgent {
    /// The local runtime's state directory (inside the data directory).
    pub state_dir: PathBuf,
    /// How to run the runtime's helpers ([`local_agent_helper`]).
    pub helper: HelperCommand,
    /// Host paths no pod may see: the data directory (database, unseal key,
    /// TLS keys, token).
    pub masked_paths: Vec<PathBuf>,
    /// Run pods even without namespaces (they then run as this process's
    /// user and can read everything it can).
    pub allow_unisolated: bool,
}

/// Starts the local runtime and connects it to `app`'s hub as the agent
/// [`LOCAL_CLUSTER`], over an in-memory link (no TLS: it never leaves the
/// process). Pods get their workload credentials over the link, as an
/// external agent's do. Returns what the agent says about itself and the
/// isolation its pods get (for the banner).
pub async fn start_local_agent(
    app: &Arc<App>,
    opts: LocalAgent,
) -> Result<(AgentInfo, warden_runtime::Isolation), RuntimeError> {
    let mut cfg = LocalConfig::new(&opts.state_dir, opts.helper);
    cfg.masked_paths = opts.masked_paths;
    // Below the API's request timeout, so a stalled rollout is answered
    // (409) rather than cut off.
    cfg.rollout_timeout = LOCAL_ROLLOUT_TIMEOUT;
    let node = cfg.node.clone();
    let feed = CredentialFeed::new();
    let runtime = LocalRuntime::start(cfg, Arc::new(feed.clone())).await?;
    let isolation = runtime.isolation().clone();
    if let Isolation::None { reason } = &isolation
        && !opts.allow_unisolated
    {
        // Without namespaces a pod runs as this user and could read the
        // data directory: anyone with `deploy.run` would own the server.
        return Err(RuntimeError::Unsupported(format!(
            "{reason}; without namespaces pods would run as this user and could read \
             the data directory (pass --unisolated-pods to accept that on a single-user machine)"
        )));
    }
    let info = AgentInfo {
        runtime: "local".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node,
    };
    let agent = Agent::new(
        Arc::new(runtime) as Arc<dyn Runtime>,
        info.clone(),
        feed.clone(),
    );
    // The in-memory link should never end; if it does, it is made again.
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        while weak.strong_count() > 0 {
            let (near, far) = tokio::io::duplex(1 << 20);
            let agent = agent.clone();
            let serving = tokio::spawn(attach(weak.clone(), LOCAL_CLUSTER.to_owned(), near));
            let _ = warden_link::run_agent(far, move |header, stream| {
                agent.clone().handle(header, stream)
            })
            .await;
            serving.abort();
            tracing::warn!("the in-process agent's link ended; reconnecting");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    // Ready once the link carries credentials.
    if feed.attached(std::time::Duration::from_secs(5)).await {
        Ok((info, isolation))
    } else {
        Err(RuntimeError::Unavailable(
            "the in-process agent did not connect".into(),
        ))
    }
}

/// Serves one authenticated agent connection on the hub until it ends,
/// with the link's credential stream: pods' credentials are minted here,
/// for the service the agent names, and audited.
pub(crate) async fn attach<I>(app: Weak<App>, name: String, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(hub) = app.upgrade().map(|a| a.clusters.hub.clone()) else {
        return;
    };
    let credentials = {
        let (app, name) = (app.clone(), name.clone());
        let hub = hub.clone();
        tokio::spawn(async move {
            // The hub registers the agent once its control request arrives.
            let remote = RemoteRuntime::new(hub, &name);
            for _ in 0..100 {
                match remote.credential_stream().await {
                    Ok(stream) => {
                        let mint = move |service: ServiceRef, pod: PodName| {
                            let app = app.clone();
                            async move {
                                let app = app.upgrade().ok_or("the server is stopping")?;
                                pod_credential(&app, &service, &pod)
                                    .await
                                    .map_err(|e| e.to_string())
                            }
                        };
                        serve_credentials(stream, mint).await;
                        return;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
            tracing::warn!(agent = %name, "could not open the agent's credential stream");
        })
    };
    if let Err(e) = hub.serve(&name, io).await {
        tracing::info!(agent = %name, error = %e, "agent link ended");
    }
    credentials.abort();
}

/// A workload credential for a new pod of `service`, recorded in its
/// organization's audit log as issued by `warden` to that pod.
async fn pod_credential(
    app: &App,
    service: &ServiceRef,
    pod: &PodName,
) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
    let path = service.path().clone();
    let (jwt, _claims) = crate::routes::issue_workload(app, &path, POD_CREDENTIAL_TTL_SECS)
        .await
        .map_err(|e| RuntimeError::Credential(e.message().to_owned()))?;
    let target = warden_pipeline::Target::named("pod", &path, Some(pod.as_str().to_owned()));
    if let Err(e) = app
        .pipeline
        .record_for(
            &warden_policies::Scope::Path(path.clone()),
            "workload_token.create",
            target,
            "ok",
        )
        .await
    {
        // No credential the audit log does not know about.
        tracing::error!(error = %e, "could not record a pod credential in the audit log");
        return Err(RuntimeError::Credential(
            "the audit log is unavailable".into(),
        ));
    }
    Ok(Zeroizing::new(jwt.as_bytes().to_vec()))
}
