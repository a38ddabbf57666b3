//! The Warden server: composition of the vault, storage and audit behind one
//! HTTPS API.
//!
//! The HTTP front-end over the request pipeline (`warden_pipeline`): owns
//! configuration, TLS setup, process hardening, the extractors that turn a
//! request into a pipeline caller ([`caller`]), the route table
//! ([`routes::ROUTES`]) from which the router and the OpenAPI document are
//! built, metrics, and `warden dev` bootstrapping.
//!
//! Architecture invariants: handlers reach the vault only with a
//! `warden_pipeline::Permit`, which only the pipeline mints; a handler can
//! run only the actions its route declares; errors become HTTP answers in
//! `error.rs` only; nothing here logs a request body.

pub mod caller;
pub mod clusters;
pub mod config;
pub mod dev;
mod enroll;
mod error;
pub mod gateway;
pub mod hardening;
mod metrics;
pub mod openapi;
mod rollouts;
pub mod routes;
mod serve;
mod slots;
mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use serve::{app_router, serve_tls};
pub use state::{App, FIRST_OWNER, VaultSealer};

/// What a server needs to start.
pub struct ServerOptions {
    /// Address to listen on (port 0 picks one).
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// TLS configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// This node's name in audit entries.
    pub node_id: String,
    /// Per-request time limit.
    pub request_timeout: Duration,
    /// Longest lifetime of an API token (see [`DEFAULT_MAX_TOKEN_TTL`]).
    pub max_token_ttl: Duration,
    /// Give MACs to the authorization rows of a database from before row
    /// MACs at the next unseal (once, after upgrading). Off, such rows are
    /// refused: the database alone cannot tell an old database from one
    /// whose MACs a writer removed.
    pub adopt_unprotected_rows: bool,
    /// Where agents dial in (mutual TLS, the agent link); none: this server
    /// runs no agents but `warden dev`'s in-process one.
    pub agent_listen: Option<SocketAddr>,
    /// The `host:port` agents reach that listener at, told to them (and
    /// shared with the other replicas); default: the bound address unless
    /// it is unspecified (`0.0.0.0`).
    pub agent_advertise: Option<String>,
    /// Where the SSH gateway listens; none: no SSH.
    pub ssh_listen: Option<SocketAddr>,
}

/// The default longest lifetime of an API token, and the lifetime of one
/// created without `ttl_seconds`: 90 days. A token that never expires is
/// not issued; `max_token_ttl_secs` changes the limit (up to 366 days).
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] warden_store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Where agents dial in, if this server listens for them.
    pub agent_addr: Option<SocketAddr>,
    /// Where the SSH gateway listens, if it does.
    pub ssh_addr: Option<SocketAddr>,
    /// The agent listener.
    agents: Option<JoinHandle<()>>,
    /// The SSH listener.
    ssh: Option<JoinHandle<()>>,
    /// Shared state (tests and `warden dev` reach the vault through it).
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight requests, flushes, returns.
    pub async fn shutdown(mut self) {
        for task in [self.agents.take(), self.ssh.take()].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Opens storage, binds and starts serving. The vault starts sealed.
pub async fn start(opts: ServerOptions) -> Result<Running, StartError> {
    let store = warden_store::Store::connect(&opts.database_url).await?;
    store.allow_row_adoption(opts.adopt_unprotected_rows);
    let mut app = App::new(store, &opts.node_id);
    app.max_token_ttl = opts.max_token_ttl;
    let app = Arc::new(app);
    rollouts::start(&app);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| StartError::Bind {
            addr: opts.listen,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind {
        addr: opts.listen,
        reason: e.to_string(),
    })?;
    tokio::spawn(warden_audit::signing::checkpointer(Arc::downgrade(
        &app.audit_signer,
    )));
    let (agent_addr, agents) = match opts.agent_listen {
        Some(at) => {
            let agents = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| StartError::Bind {
                    addr: at,
                    reason: e.to_string(),
                })?;
            let bound = agents.local_addr().ok();
            if opts.node_id == "warden" {
                tracing::warn!(
                    "agent_listen is set and node_id is the default: give each replica its own \
                     node_id, or replicas overwrite each other's listener record"
                );
            }
            let advertise = opts.agent_advertise.clone().or_else(|| {
                bound
                    .filter(|a| !a.ip().is_unspecified())
                    .map(|a| a.to_string())
            });
            let task = tokio::spawn(clusters::serve_agents(
                agents,
                Arc::downgrade(&app),
                opts.tls.cert_resolver.clone(),
                clusters::Listener {
                    node: opts.node_id.clone(),
                    advertise,
                },
            ));
            tracing::info!(addr = ?bound, "listening for agents (mutual TLS)");
            (bound, Some(task))
        }
        None => (None, None),
    };
    let (ssh_addr, ssh) = match opts.ssh_listen {
        Some(at) => {
            let bind_err = |e: std::io::Error| StartError::Bind {
                addr: at,
                reason: e.to_string(),
            };
            let listener = tokio::net::TcpListener::bind(at).await.map_err(bind_err)?;
            let bound = listener.local_addr().map_err(bind_err)?;
            let _ = app.gateway.ssh_addr.set(bound);
            let task = tokio::spawn(gateway::serve_ssh(listener, Arc::downgrade(&app)));
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    tokio::spawn(gateway::apply_kills(Arc::downgrade(&app)));
    tokio::spawn(gateway::heartbeat(
        Arc::downgrade(&app),
        gateway::session_lost_after(|k| std::env::var(k).ok()),
    ));
    let router = app_router(app.clone(), opts.request_timeout);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve::serve(
        listener,
        opts.tls,
        router,
        app.clone(),
        stopped,
    ));
    tracing::info!(%addr, "listening (HTTPS)");
    Ok(Running {
        addr,
        agent_addr,
        ssh_addr,
        agents,
        ssh,
        app,
        stop: Some(stop),
        task,
    })
}
