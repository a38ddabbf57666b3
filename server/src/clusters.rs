//! Where environments' pods run: the agent hub (agents' links end here)
//! and, for `warden dev`, the in-process agent named `local`.
//!
//! Every operation on pods goes through the pipeline first (the routes in
//! `routes/workloads.rs`), then reaches the environment's cluster through
//! a [`RemoteRuntime`] over the hub, also for the in-process agent: one
//! path, whether the pods are in this process or behind an agent on
//! another network.
//!
//! Agents in other processes dial the agent listener (`serve_agents`)
//! with the client certificate they enrolled for (`crate::enroll`); an
//! environment runs on the cluster it is placed on, else on
//! [`LOCAL_CLUSTER`]. With several replicas, each records its listener and
//! agents link to all of them, so any replica reaches any agent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use warden_agent::wire::Endpoint;
use warden_agent::{
    Agent, AgentInfo, CREDENTIAL_REFRESH, CredentialFeed, RemoteRuntime, refresh_forever,
    serve_credentials,
};
use warden_link::Hub;
pub use warden_runtime::Isolation;
use warden_runtime::{
    HelperCommand, LocalConfig, LocalRuntime, PodName, Runtime, RuntimeError, ServiceRef,
};
use warden_types::ScopePath;
use zeroize::Zeroizing;

use crate::state::App;

/// The cluster of `warden dev`'s in-process agent, and of every
/// environment not placed on another.
pub const LOCAL_CLUSTER: &str = "local";

/// How long the in-process agent waits for each new pod of a rollout.
const LOCAL_ROLLOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Lifetime of the workload credential a pod is started with (the
/// longest Warden issues).
const POD_CREDENTIAL_TTL_SECS: u64 = warden_pipeline::identity::WORKLOAD_MAX_TTL_SECS;

/// The agents connected to this server, and where agents dial in.
#[derive(Default)]
pub struct Clusters {
    hub: Hub,
    /// The agent listener's address, once bound.
    link_addr: OnceLock<SocketAddr>,
    /// The listener's TLS configuration, once the agent CA exists.
    link_tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
    /// The API's certificate, which the agent listener presents too.
    resolver: OnceLock<Arc<dyn rustls::server::ResolvesServerCert>>,
    /// Where agents reach this replica's listener, if known.
    advertise: OnceLock<Option<String>>,
    /// This replica's node id.
    node: OnceLock<String>,
    /// Each agent's last link, by cluster.
    links: Mutex<HashMap<String, LinkRecord>>,
}

/// What this replica knows of an agent's link.
#[derive(Debug, Clone)]
pub(crate) struct LinkInfo {
    /// Whether the link is up now.
    pub(crate) connected: bool,
    /// The agent's address (`in-process` for `warden dev`'s).
    pub(crate) address: String,
    /// Now, if connected; else when the link ended (ms).
    pub(crate) last_seen_at: i64,
}

#[derive(Debug, Clone)]
struct LinkRecord {
    address: String,
    /// `None` while up.
    ended_at: Option<i64>,
    /// Connections accepted for the cluster and not yet ended.
    open: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connections one cluster's certificate may hold at once (a reconnect
/// overlaps its predecessor briefly).
const MAX_LINKS_PER_CLUSTER: usize = 2;
/// TLS handshakes in progress at once on the agent listener.
const MAX_HANDSHAKES: usize = 256;
/// TLS handshakes in progress at once from one IP address.
const MAX_HANDSHAKES_PER_SOURCE: usize = 4;
/// Longest TLS handshake on the agent listener.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a live link re-checks that its certificate is still its
/// cluster's (a removal or re-enrollment on another replica ends it).
const LINK_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a replica records its agent listener's address.
const ENDPOINT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);
/// A listener not recorded for this long is left out of what agents are
/// told.
const ENDPOINT_FRESH_MS: i64 = 30_000;
/// Most listeners an agent is told of.
const MAX_ENDPOINTS: usize = 16;
/// How often a link tells its agent the listeners of every replica.
const ENDPOINTS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Where this replica's agent listener is, for the other replicas and the
/// agents.
pub(crate) struct Listener {
    /// This replica's node id.
    pub(crate) node: String,
    /// `host:port` agents reach the listener at, if known.
    pub(crate) advertise: Option<String>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One of a source's handshake slots, given back when dropped.
struct SourceSlot {
    table: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl SourceSlot {
    fn take(
        table: &Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
        ip: std::net::IpAddr,
    ) -> Option<Self> {
        let mut t = lock(table);
        let n = t.entry(ip).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Self {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

impl Clusters {
    /// No agents yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Where agents dial, if this server listens for them.
    pub(crate) fn link_addr(&self) -> Option<SocketAddr> {
        self.link_addr.get().copied()
    }

    /// Every replica's agent listener recorded lately, one per replica (at
    /// most [`MAX_ENDPOINTS`]), this one's first: under its `agent_advertise`
    /// name if set, else `fallback` (as the caller reached it).
    pub(crate) async fn endpoints(
        &self,
        store: &warden_store::Store,
        fallback: Option<String>,
    ) -> Result<Vec<Endpoint>, warden_store::StoreError> {
        let now = warden_store::now_ms();
        let node = self.node.get().cloned().unwrap_or_default();
        let mut all: Vec<Endpoint> = self
            .advertise
            .get()
            .cloned()
            .flatten()
            .or(fallback)
            .map(|address| Endpoint {
                node: node.clone(),
                address,
            })
            .into_iter()
            .collect();
        for (n, address) in store
            .agent_endpoints(now - ENDPOINT_FRESH_MS, now + ENDPOINT_FRESH_MS)
            .await?
        {
            if all.len() >= MAX_ENDPOINTS {
                break;
            }
            if !all.iter().any(|e| e.node == n) {
                all.push(Endpoint { node: n, address });
            }
        }
        Ok(all)
    }

    /// What this replica knows of `cluster`'s link.
    pub(crate) fn link_info(&self, cluster: &str) -> Option<LinkInfo> {
        let connected = self.hub.connected().iter().any(|n| n == cluster);
        lock(&self.links).get(cluster).map(|r| LinkInfo {
            connected,
            address: r.address.clone(),
            last_seen_at: if connected {
                warden_store::now_ms()
            } else {
                r.ended_at.unwrap_or_else(warden_store::now_ms)
            },
        })
    }

    /// `cluster`'s runtime.
    pub(crate) fn remote(&self, cluster: &str) -> RemoteRuntime {
        RemoteRuntime::new(self.hub.clone(), cluster)
    }

    /// The runtime of the cluster `env` is placed on.
    pub(crate) async fn runtime_of(
        &self,
        store: &warden_store::Store,
        env: &ScopePath,
    ) -> Result<RemoteRuntime, warden_store::StoreError> {
        Ok(self.remote(&self.cluster_of(store, env).await?))
    }

    /// The cluster `env`'s pods run on: its placement, else [`LOCAL_CLUSTER`].
    pub async fn cluster_of(
        &self,
        store: &warden_store::Store,
        env: &ScopePath,
    ) -> Result<String, warden_store::StoreError> {
        Ok(store
            .placement(env.as_str())
            .await?
            .map_or_else(|| LOCAL_CLUSTER.to_owned(), |p| p.cluster))
    }

    /// Counts a new link of `cluster` from `address`; false if it already
    /// holds [`MAX_LINKS_PER_CLUSTER`].
    fn link_opened(&self, cluster: &str, address: &str) -> bool {
        let mut links = lock(&self.links);
        let r = links.entry(cluster.to_owned()).or_insert(LinkRecord {
            address: address.to_owned(),
            ended_at: None,
            open: 0,
        });
        if r.open >= MAX_LINKS_PER_CLUSTER {
            return false;
        }
        r.open += 1;
        r.address = address.to_owned();
        r.ended_at = None;
        true
    }

    fn link_closed(&self, cluster: &str) {
        if let Some(r) = lock(&self.links).get_mut(cluster) {
            r.open = r.open.saturating_sub(1);
            if r.open == 0 {
                r.ended_at = Some(warden_store::now_ms());
            }
        }
    }
}

/// Serves agents dialing `listener`: mutual TLS against the agent CA (no
/// CA yet, or sealed: refused), the certificate matched to the cluster it
/// was issued for (a removed or re-enrolled cluster's old certificate is
/// refused), at most [`MAX_LINKS_PER_CLUSTER`] links per cluster and
/// [`MAX_HANDSHAKES`] handshakes at once, each within
/// [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn serve_agents(
    listener: tokio::net::TcpListener,
    app: Weak<App>,
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    endpoint: Listener,
) {
    if let Some(a) = app.upgrade() {
        let _ = a.clusters.resolver.set(resolver);
        if let Ok(addr) = listener.local_addr() {
            let _ = a.clusters.link_addr.set(addr);
        }
        let _ = a.clusters.advertise.set(endpoint.advertise.clone());
        let _ = a.clusters.node.set(endpoint.node.clone());
    }
    // Every replica records where its listener is, so that agents link to
    // all of them (any replica then reaches any agent).
    let heartbeat = endpoint.advertise.map(|address| {
        let (app, node) = (app.clone(), endpoint.node);
        tokio::spawn(async move {
            loop {
                let Some(a) = app.upgrade() else { return };
                if let Err(e) = a
                    .store
                    .heartbeat_agent_endpoint(&node, &address, warden_store::now_ms())
                    .await
                {
                    tracing::warn!(error = %e, "could not record this replica's agent listener");
                }
                drop(a);
                tokio::time::sleep(ENDPOINT_HEARTBEAT).await;
            }
        })
    });
    let _stop_heartbeat = heartbeat.map(AbortOnDrop);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let per_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "agent listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Silent connections hold a handshake slot until the timeout: a
        // source gets a few at once, so one source cannot hold them all.
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            continue;
        };
        let source = SourceSlot::take(&per_source, peer.ip());
        let Some(source) = source else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Some(a) = app.upgrade() else { return };
            let Some(config) = a.clusters.link_config(&a).await else {
                return;
            };
            let accepted = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsAcceptor::from(config).accept(tcp),
            )
            .await;
            drop((permit, source));
            let Ok(Ok(tls)) = accepted else { return };
            let fingerprint = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::enroll::fingerprint(c));
            let cluster = match (&fingerprint, a.store.clusters().await) {
                (Some(f), Ok(rows)) => rows
                    .into_iter()
                    .find(|r| r.cert_fingerprint.as_ref() == Some(f))
                    .map(|r| r.name),
                _ => None,
            };
            let address = peer.to_string();
            let Some(cluster) = cluster else {
                tracing::warn!(%address, "agent refused: its certificate is not a current cluster's");
                let target = warden_pipeline::Target::named("cluster", "/", None);
                let _ = a
                    .pipeline
                    .record_system("cluster.link", target, "unknown_certificate", None)
                    .await;
                return;
            };
            if !a.clusters.link_opened(&cluster, &address) {
                tracing::warn!(%cluster, %address, "agent refused: too many links for its cluster");
                return;
            }
            tracing::info!(%cluster, %address, "agent connected");
            drop(a);
            attach(app.clone(), cluster.clone(), tls, fingerprint).await;
            if let Some(a) = app.upgrade() {
                a.clusters.link_closed(&cluster);
            }
        });
    }
}

impl Clusters {
    /// The agent listener's TLS configuration; `None` until the agent CA
    /// exists (and while sealed, when it cannot be read).
    async fn link_config(&self, app: &App) -> Option<Arc<rustls::ServerConfig>> {
        if let Some(c) = lock(&self.link_tls).clone() {
            return Some(c);
        }
        let ca = crate::enroll::ca_certificate(app).await.ok().flatten()?;
        let config = crate::enroll::link_tls(ca, self.resolver.get()?.clone()).ok()?;
        *lock(&self.link_tls) = Some(config.clone());
        Some(config)
    }
}

/// The in-process agent's configuration.
#[derive(Debug, Clone)]
pub struct LocalAgent {
    /// The local runtime's state directory (inside the data directory).
    pub state_dir: PathBuf,
    /// How to run the runtime's helpers (the binary's `main` dispatches
    /// them: `warden_runtime::helper_main`).
    pub helper: HelperCommand,
    /// Host paths no pod may see: the data directory (database, unseal key,
    /// TLS keys, token).
    pub masked_paths: Vec<PathBuf>,
    /// Run pods even without namespaces (they then run as this process's
    /// user and can read everything it can).
    pub allow_unisolated: bool,
    /// Start every pod under `warden-injector` with this server's address.
    pub injection: Option<warden_runtime::Injection>,
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
    cfg.injection = opts.injection;
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
    let runtime: Arc<dyn Runtime> = Arc::new(runtime);
    tokio::spawn(refresh_forever(
        feed.clone(),
        runtime.clone(),
        CREDENTIAL_REFRESH,
    ));
    let agent = Agent::new(runtime, info.clone(), feed.clone());
    // The in-memory link should never end; if it does, it is made again.
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        while weak.strong_count() > 0 {
            let (near, far) = tokio::io::duplex(1 << 20);
            let agent = agent.clone();
            if let Some(a) = weak.upgrade() {
                a.clusters.link_opened(LOCAL_CLUSTER, "in-process");
            }
            let serving = tokio::spawn(attach(weak.clone(), LOCAL_CLUSTER.to_owned(), near, None));
            let _ = warden_link::run_agent(far, move |header, stream| {
                agent.clone().handle(header, stream)
            })
            .await;
            serving.abort();
            if let Some(a) = weak.upgrade() {
                a.clusters.link_closed(LOCAL_CLUSTER);
            }
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
pub(crate) async fn attach<I>(app: Weak<App>, name: String, io: I, fingerprint: Option<String>)
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
                        let cluster = name.clone();
                        let mint = move |service: ServiceRef, pod: PodName| {
                            let (app, cluster) = (app.clone(), cluster.clone());
                            async move {
                                let app = app.upgrade().ok_or("the server is stopping")?;
                                pod_credential(&app, &cluster, &service, &pod)
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
    // An agent that dialed in is told every replica's listener, now and
    // then again, so it links to replicas started after it enrolled.
    let endpoints = fingerprint.is_some().then(|| {
        let (app, hub, name) = (app.clone(), hub.clone(), name.clone());
        AbortOnDrop(tokio::spawn(async move {
            let remote = RemoteRuntime::new(hub, &name);
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let Some(a) = app.upgrade() else { return };
                if let Ok(list) = a.clusters.endpoints(&a.store, None).await {
                    drop(a);
                    if let Err(e) = remote.tell_endpoints(list).await {
                        tracing::debug!(agent = %name, error = %e, "could not tell the agent the listeners");
                    }
                }
                tokio::time::sleep(ENDPOINTS_EVERY).await;
            }
        }))
    });
    // A link authenticated by certificate lives only while that certificate
    // is its cluster's: removed or re-enrolled (on any replica), it ends.
    // Checked at once when the change feed says the cluster was removed
    // (so its pods' sessions end within the feed's delay on every replica),
    // and every LINK_RECHECK whatever it says (a re-enrollment).
    let mut changes = app.upgrade().map(|a| a.store.changes());
    let still_current = {
        let (app, name) = (app.clone(), name.clone());
        async move {
            let Some(fingerprint) = fingerprint else {
                return std::future::pending().await;
            };
            loop {
                let removed = async {
                    let Some(changes) = changes.as_mut() else {
                        return std::future::pending().await;
                    };
                    loop {
                        match changes.recv().await {
                            Ok(warden_store::Change::Cluster(n)) if n == name => return,
                            Ok(warden_store::Change::All)
                            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                return std::future::pending().await;
                            }
                        }
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(LINK_RECHECK) => {}
                    () = removed => {}
                }
                let Some(app) = app.upgrade() else { return };
                match app.store.cluster(&name).await {
                    Ok(Some(row)) if row.cert_fingerprint.as_deref() == Some(&fingerprint) => {}
                    // A passing storage error does not cut a link.
                    Err(_) => {}
                    Ok(_) => return,
                }
            }
        }
    };
    tokio::select! {
        r = hub.serve(&name, io) => if let Err(e) = r {
            tracing::info!(agent = %name, error = %e, "agent link ended");
        },
        () = still_current => {
            tracing::warn!(agent = %name, "agent link cut: its certificate is no longer its cluster's");
        }
    }
    credentials.abort();
    drop(endpoints);
}

/// A workload credential for a new pod of `service` on `cluster`, recorded
/// in its organization's audit log as issued by `warden` to that pod.
async fn pod_credential(
    app: &App,
    cluster: &str,
    service: &ServiceRef,
    pod: &PodName,
) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
    let path = service.path().clone();
    // An agent asks for the services it runs; it gets credentials only for
    // services of environments placed on its own cluster, so an agent (or
    // whoever holds its key) cannot mint credentials for other clusters'
    // services.
    let placed = app
        .clusters
        .cluster_of(&app.store, &service.environment())
        .await
        .map_err(|e| RuntimeError::Credential(e.to_string()))?;
    let exists = app
        .store
        .scope(path.as_str())
        .await
        .map_err(|e| RuntimeError::Credential(e.to_string()))?
        .is_some();
    if placed != cluster || !exists {
        tracing::warn!(%cluster, %service, "an agent asked for a credential of a service not on its cluster");
        let target = warden_pipeline::Target::named("pod", &path, Some(pod.as_str().to_owned()));
        let _ = app
            .pipeline
            .record_for(
                &warden_policies::Scope::Path(path.clone()),
                "workload_token.create",
                target,
                "forbidden",
            )
            .await;
        return Err(RuntimeError::Credential(format!(
            "{service} does not run on cluster {cluster}"
        )));
    }
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
