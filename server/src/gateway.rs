//! The shell gateway's composition: its SSH host key (an Ed25519 seed
//! sealed under the root key, one per installation, so every replica
//! presents the same key), the placement of environments on clusters the
//! gateway runs sessions on, the recording keys of its sessions (from the
//! vault), and the SSH listener.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use warden_pipeline::Error;
use warden_pipeline::Permit;
use warden_runtime::Runtime;
use warden_shell_gateway::recording::{ChunkSealer, RecordingKeys, Recordings};
use warden_shell_gateway::{
    Gateway, HostKey, Placement, SecondFactor, SshGateway, SshOptions, host_key_from_seed,
};
use warden_store::SshHostKeyRow;
use warden_types::ScopePath;
use zeroize::Zeroizing;

use crate::ApiError;
use crate::state::App;

/// Purpose label of the host key seed sealed under the root key.
const HOST_KEY_PURPOSE: &str = "ssh-host-key";
/// A connection with no traffic for this long is closed.
pub const SSH_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends after this long, whatever it does.
pub const SSH_MAX_SESSION: Duration = Duration::from_secs(12 * 3600);

/// The SSH host key, made and stored if there is none yet. Needs the vault
/// unsealed.
pub async fn host_key(app: &App) -> Result<HostKey, ApiError> {
    let row = match app.store.ssh_host_key().await? {
        Some(row) => row,
        None => {
            let seed = Zeroizing::new(warden_pipeline::random_bytes::<32>()?);
            let sealed =
                app.vault
                    .seal_credential(HOST_KEY_PURPOSE, "ssh-host-key", seed.as_slice())?;
            app.store
                .init_ssh_host_key(SshHostKeyRow {
                    sealed_seed: sealed,
                    created_at: warden_store::now_ms(),
                })
                .await?
        }
    };
    let seed = app
        .vault
        .open_credential(HOST_KEY_PURPOSE, "ssh-host-key", &row.sealed_seed)?;
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        seed.as_slice()
            .try_into()
            .map_err(|_| ApiError::internal())?,
    );
    let key = host_key_from_seed(&seed);
    let _ = app
        .gateway
        .fingerprint
        .set(warden_shell_gateway::host_key_fingerprint(&key));
    Ok(key)
}

/// The host key's fingerprint (`SHA256:...`), making the key if needed.
pub async fn host_key_fingerprint(app: &App) -> Result<String, ApiError> {
    Ok(warden_shell_gateway::host_key_fingerprint(
        &host_key(app).await?,
    ))
}

/// The gateway's state in the server: what it reports about itself
/// (`GET /api/v1/sys/gateway`) and the one gateway every entry point shares
/// (it knows this replica's live sessions).
#[derive(Default)]
pub struct GatewayInfo {
    /// The SSH listener's address, once bound.
    pub ssh_addr: OnceLock<SocketAddr>,
    /// The host key's fingerprint, once the key is loaded.
    pub fingerprint: OnceLock<String>,
    /// This replica's node id.
    node: String,
    core: OnceLock<Gateway>,
    /// The `session join`s open on this replica.
    pub(crate) joins: crate::routes::sessions::JoinSlots,
}

impl GatewayInfo {
    /// The gateway state of replica `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for GatewayInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayInfo")
            .field("ssh_addr", &self.ssh_addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Environments run on the cluster they are placed on (default `local`),
/// through the agent hub.
struct ClusterPlacement(Weak<App>);

impl Placement for ClusterPlacement {
    fn runtime<'a>(&'a self, env: &'a ScopePath) -> BoxFuture<'a, Result<Arc<dyn Runtime>, Error>> {
        Box::pin(async move {
            let app = live(&self.0)?;
            Ok(Arc::new(app.clusters.runtime_of(&app.store, env).await?) as Arc<dyn Runtime>)
        })
    }
}

/// Sessions are recorded under a key the vault derives for each from its
/// organization's key term, with the service's secret values (every kept
/// version, and the resolved values) masked.
struct VaultRecordings(Weak<App>);

struct Sealer(warden_vault::RecordingKey);

impl ChunkSealer for Sealer {
    fn seal(&self, seq: u64, last: bool, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.0.seal(seq, last, plaintext)?)
    }
}

impl Recordings for VaultRecordings {
    fn keys<'a>(
        &'a self,
        permit: &'a Permit,
        service: &'a ScopePath,
        session: &'a str,
    ) -> BoxFuture<'a, Result<RecordingKeys, Error>> {
        Box::pin(async move {
            let app = live(&self.0)?;
            // Subscribed before the masks are read: no change after is
            // missed.
            let changes = app.store.changes();
            let (key, masks) = app.vault.recording_setup(permit, service, session).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(refresh_masks(
                self.0.clone(),
                permit.clone(),
                service.clone(),
                changes,
                tx,
            ));
            Ok(RecordingKeys {
                sealer: Box::new(Sealer(key)),
                masks,
                mask_updates: Some(rx),
            })
        })
    }
}

/// Sends a recording the values to mask again each time the service's
/// secrets change (a rotation pushed into its pods mid-session), until the
/// recording ends (its receiver is dropped). The session's own permit
/// reads them: a session whose authority ended is ending too.
async fn refresh_masks(
    app: Weak<App>,
    permit: Permit,
    service: ScopePath,
    mut changes: tokio::sync::broadcast::Receiver<warden_store::Change>,
    tx: tokio::sync::mpsc::Sender<Vec<warden_types::SecretValue>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    use warden_store::Change;
    let inherited = service.inherited_scopes();
    loop {
        // Only what changed is read again (review 14, F7); everything when
        // the feed cannot say.
        let changed = tokio::select! {
            () = tx.closed() => return,
            received = changes.recv() => match received {
                Ok(Change::Secrets(names)) if names.iter().any(|(s, _)| inherited.contains(s)) => {
                    Some(names)
                }
                Ok(Change::All) | Err(RecvError::Lagged(_)) => None,
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let Some(app) = app.upgrade() else { return };
        match app
            .vault
            .recording_masks(&permit, &service, changed.as_deref())
            .await
        {
            Ok(values) => {
                if tx.send(values).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(%service, error = %e, "could not refresh a recording's masks"),
        }
    }
}

/// The server, unless it is shutting down (the gateway holds it weakly).
fn live(app: &Weak<App>) -> Result<Arc<App>, Error> {
    app.upgrade().ok_or_else(|| {
        Error::new(
            warden_pipeline::ErrorKind::Unavailable,
            "shutting_down",
            "the server is shutting down",
        )
    })
}

/// Users' TOTP second factor, checked as `warden login --totp` checks it
/// (throttled per account; each code works once).
struct Totp(Weak<App>);

impl SecondFactor for Totp {
    fn enrolled<'a>(&'a self, principal: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let app = live(&self.0)?;
            Ok(app
                .store
                .principal(principal)
                .await?
                .is_some_and(|row| row.totp_enabled != 0))
        })
    }

    fn check<'a>(
        &'a self,
        principal: &'a str,
        fingerprint: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let app = live(&self.0)?;
            let Some(row) = app.store.principal(principal).await? else {
                return Ok(false);
            };
            let throttle_key = format!("{principal} {fingerprint}");
            crate::routes::auth::check_totp(&app, &row, code, false, &throttle_key)
                .await
                .map_err(|e| e.error().clone())
        })
    }
}

/// The shell gateway over `app`'s pipeline and clusters.
pub fn gateway(app: &Arc<App>) -> Gateway {
    app.gateway
        .core
        .get_or_init(|| {
            Gateway::new(
                app.pipeline.clone(),
                Arc::new(ClusterPlacement(Arc::downgrade(app))),
                Arc::new(VaultRecordings(Arc::downgrade(app))),
                &app.gateway.node,
            )
        })
        .clone()
}

/// Ends, every second, the sessions of this replica that someone asked to
/// end (`warden session kill` on any replica), until the server stops.
pub(crate) async fn apply_kills(app: Weak<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(app) = app.upgrade() else {
            return;
        };
        if app.gateway.core.get().is_some()
            && let Err(e) = gateway(&app).apply_kills().await
        {
            tracing::debug!(error = %e.message(), "checking for ended sessions");
        }
    }
}

/// How often a process holding sessions says so, and looks for sessions
/// whose holder is gone (at most: a third of the bound, when it is short).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A live session whose holding process has not said so for this long is
/// ended as `replica_lost`, by any replica.
pub const SESSION_LOST_AFTER: Duration = Duration::from_secs(60);
/// The environment variable that sets [`SESSION_LOST_AFTER`] in seconds
/// (3 or more), for tests and for installations that want another bound.
pub const SESSION_LOST_AFTER_VAR: &str = "WARDEN_SESSION_LOST_AFTER_SECS";

/// The bound after which a silent holder's sessions are ended: the
/// environment's [`SESSION_LOST_AFTER_VAR`] (read through `var`), else
/// [`SESSION_LOST_AFTER`]. A value that is not a whole number of seconds,
/// 3 or more, is ignored (and logged).
pub fn session_lost_after(var: impl Fn(&str) -> Option<String>) -> Duration {
    match var(SESSION_LOST_AFTER_VAR).map(|v| v.trim().parse::<u64>()) {
        None => SESSION_LOST_AFTER,
        Some(Ok(secs)) if secs >= 3 => Duration::from_secs(secs),
        Some(_) => {
            tracing::warn!(
                "{SESSION_LOST_AFTER_VAR} must be a whole number of seconds, 3 or more; using {}s",
                SESSION_LOST_AFTER.as_secs()
            );
            SESSION_LOST_AFTER
        }
    }
}

/// Until the server stops: says every few seconds that this process still
/// holds its live sessions (`Gateway::heartbeat`), and ends the sessions of
/// any replica whose process has not said so for `lost_after`
/// (`end_lost_sessions`): a replica killed with its sessions live left them
/// live for ever.
pub(crate) async fn heartbeat(app: Weak<App>, lost_after: Duration) {
    let every = HEARTBEAT.min(lost_after / 3);
    loop {
        tokio::time::sleep(every).await;
        let Some(app) = app.upgrade() else {
            return;
        };
        // Only a gateway that exists holds sessions; the reaping needs none.
        if let Some(core) = app.gateway.core.get()
            && let Err(e) = core.heartbeat().await
        {
            tracing::warn!(error = %e.message(), "saying this replica holds its sessions");
        }
        match warden_shell_gateway::end_lost_sessions(&app.store, lost_after).await {
            Ok(ended) => {
                for id in ended {
                    tracing::warn!(
                        session = %id,
                        "ended a shell session whose replica stopped answering (replica_lost)"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e.message(), "looking for lost sessions"),
        }
    }
}

/// Serves SSH on `listener` once the vault is unsealed (the host key is
/// sealed under the root key; until then connections wait in the backlog).
pub(crate) async fn serve_ssh(listener: TcpListener, app: Weak<App>) {
    let key = loop {
        let Some(strong) = app.upgrade() else {
            return;
        };
        let mut sealed = strong.vault.sealed_changes();
        if !*sealed.borrow_and_update() {
            match host_key(&strong).await {
                Ok(key) => break key,
                Err(e) => {
                    tracing::warn!(error = ?e, "SSH host key unavailable; retrying");
                    drop(strong);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            }
        }
        drop(strong);
        if sealed.changed().await.is_err() {
            return;
        }
    };
    let Some(strong) = app.upgrade() else {
        return;
    };
    let ssh = SshGateway::new(
        gateway(&strong),
        SshOptions {
            host_key: key,
            idle_timeout: SSH_IDLE_TIMEOUT,
            max_session: SSH_MAX_SESSION,
            second_factor: Arc::new(Totp(app)),
        },
    );
    drop(strong);
    tracing::info!(addr = ?listener.local_addr().ok(), "serving SSH");
    ssh.serve(listener).await;
}
