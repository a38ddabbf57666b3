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

use warden_agent::{Agent, AgentInfo, RemoteRuntime};
use warden_link::Hub;
pub use warden_runtime::Isolation;
use warden_runtime::{
    FnCredentialSource, HelperCommand, LocalConfig, LocalRuntime, PodName, Runtime, RuntimeError,
    ServiceRef,
};
use warden_types::ScopePath;
use zeroize::Zeroizing;

use crate::state::App;

/// The cluster of the in-process agent, and for now of every environment.
pub const LOCAL_CLUSTER: &str = "local";

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
}

/// Starts the local runtime and connects it to `app`'s hub as the agent
/// [`LOCAL_CLUSTER`], over an in-memory link (no TLS: it never leaves the
/// process). Pods get workload credentials minted here for their own
/// service, each recorded in the audit log. Returns what the agent says
/// about itself (its isolation, for the banner).
pub async fn start_local_agent(
    app: &Arc<App>,
    opts: LocalAgent,
) -> Result<(AgentInfo, warden_runtime::Isolation), RuntimeError> {
    let mut cfg = LocalConfig::new(&opts.state_dir, opts.helper);
    cfg.masked_paths = opts.masked_paths;
    let weak: Weak<App> = Arc::downgrade(app);
    let credentials = Arc::new(FnCredentialSource(
        move |service: ServiceRef, pod: PodName| {
            let app = weak.clone();
            async move {
                let app = app
                    .upgrade()
                    .ok_or_else(|| RuntimeError::Credential("the server is stopping".into()))?;
                pod_credential(&app, &service, &pod).await
            }
        },
    ));
    let node = cfg.node.clone();
    let runtime = LocalRuntime::start(cfg, credentials).await?;
    let isolation = runtime.isolation().clone();
    let info = AgentInfo {
        runtime: "local".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node,
    };
    let agent = Agent::new(Arc::new(runtime) as Arc<dyn Runtime>, info.clone());
    let hub = app.clusters.hub.clone();
    let (near, far) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Err(e) = hub.serve(LOCAL_CLUSTER, near).await {
            tracing::error!(error = %e, "the in-process agent's link ended");
        }
    });
    tokio::spawn(async move {
        let _ = warden_link::run_agent(far, move |header, stream| {
            agent.clone().handle(header, stream)
        })
        .await;
    });
    // Ready once the hub knows it.
    for _ in 0..500 {
        if app
            .clusters
            .hub
            .connected()
            .iter()
            .any(|n| n == LOCAL_CLUSTER)
        {
            return Ok((info, isolation));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err(RuntimeError::Unavailable(
        "the in-process agent did not connect".into(),
    ))
}

/// A workload credential for a new pod of `service`, recorded in the audit
/// log as issued by the system to that pod.
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
        .record_system("workload_token.create", target, "ok", None)
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
