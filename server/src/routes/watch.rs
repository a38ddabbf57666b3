//! Secret watches and their holders.
//!
//! `GET /api/v1/watch/{service}?pod=NAME` is a WebSocket (subprotocol
//! [`SECRET_WATCH_PROTOCOL`]) over which `warden-injector --watch` keeps its
//! service's resolved secrets current: the server sends them at once and
//! again each time they change (a [`WatchUpdate`], pushed from the store's
//! change feed: on every replica, within the feed's delay), and the wrapper
//! reports each update applied or failed ([`WatchReport`]). The watch is a
//! session of its own: `secret.read` on the service held for as long as it
//! lasts, ending (close code 1008, with the reason) the moment the
//! workload's authority does (credential revoked or expired, vault sealed,
//! binding revoked).
//!
//! Every applied update is audited (`secret.watch.applied`: the pod, and
//! each name with the version and scope served) and recorded as what the
//! pod holds now (the `secret_holders` table, one row per live watch), which
//! `GET /api/v1/secret-holders/{scope}?name=NAME` (`warden secret holders`)
//! lists. The pod name is the wrapper's own claim, checked only for shape;
//! the audit entry's credential is what ties it to a pod for sure.
//!
//! When one secret changes under a thousand watches of one service, the
//! service is resolved (and its values decrypted) once, not a thousand
//! times: [`Watches::current`] shares a resolution among the watches that
//! learnt of the same change. Each watch still holds its own grant, so
//! none is sent values after its own authority ended.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use warden_api::{
    Resolved, SECRET_WATCH_PROTOCOL, SecretHolder, SecretHolders, ServedVersion, WatchReport,
    WatchUpdate,
};
use warden_pipeline::{Operation, Permit, SessionGrant, Target, WeakPipeline};
use warden_policies::{Action, Scope};
use warden_store::{Change, HolderRow};
use warden_types::{ScopeKind, ScopePath};
use warden_vault::{Resolution, Vault, VaultError, Versions, version_labels};

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::slots::Slots;
use crate::state::App;

/// Characters of a failed report's error that reach the server's log.
const MAX_LOGGED_ERROR: usize = 200;
/// Live watches one credential may hold on a replica (a wrapper holds one;
/// its reconnection may briefly overlap the watch it replaces).
const MAX_WATCHES_PER_CREDENTIAL: usize = 4;
/// Live watches one principal (a workload: all its service's pods) may
/// hold on a replica: a pod holds one.
const MAX_WATCHES_PER_PRINCIPAL: usize = 1024;
/// Largest report a watcher may send.
const MAX_REPORT_BYTES: usize = 4 * 1024;
/// How often the server pings a watcher (and so notices a dead one).
const PING_EVERY: Duration = Duration::from_secs(20);
/// How often a process marks its watches' holder rows live.
const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// Rows not marked live for this long are not listed (their process died).
const LISTED_FOR: Duration = Duration::from_secs(45);
/// Rows not marked live for this long are purged.
const PURGED_AFTER: Duration = Duration::from_secs(600);

/// This process's secret watches: its name in the holders table and the
/// resolutions its watches share.
pub struct Watches {
    /// Names this process's rows in `secret_holders`: random per start, so
    /// a restarted replica's new rows are never confused with the rows its
    /// previous run left.
    node: String,
    /// The latest resolution of each watched service.
    latest: Mutex<HashMap<ScopePath, Arc<Shared>>>,
    /// Live watches per credential (token id).
    per_credential: Slots,
    /// Live watches per principal.
    per_principal: Slots,
}

/// A service's latest resolution, and when it began.
#[derive(Default)]
struct Shared(tokio::sync::Mutex<Option<(Instant, Arc<Resolution>)>>);

impl Watches {
    /// A process's watches, with the task that keeps their holder rows live
    /// (and purges the rows of processes that died) for as long as the
    /// pipeline exists (it holds the store weakly: a stopped server's
    /// database is released).
    pub fn start(pipeline: WeakPipeline) -> Self {
        // Unique, not secret: the time and process id do if the system's
        // random number generator fails.
        let node = warden_pipeline::random_bytes::<8>().map_or_else(
            |_| format!("{}-{}", std::process::id(), warden_store::now_ms()),
            hex::encode,
        );
        tokio::spawn(refresh(pipeline, node.clone()));
        Self {
            node,
            latest: Mutex::default(),
            per_credential: Slots::default(),
            per_principal: Slots::default(),
        }
    }

    /// The service's resolution, as of after `since`: one begun after
    /// `since` is shared; otherwise the service is resolved now, with
    /// `permit` (the asking watch's own).
    async fn current(
        &self,
        shared: &Shared,
        vault: &Vault,
        permit: &Permit,
        service: &ScopePath,
        since: Instant,
    ) -> Result<Arc<Resolution>, VaultError> {
        let mut slot = shared.0.lock().await;
        if let Some((began, r)) = &*slot
            && *began >= since
        {
            return Ok(r.clone());
        }
        let began = Instant::now();
        let r = Arc::new(vault.resolve(permit, service).await?);
        *slot = Some((began, r.clone()));
        Ok(r)
    }

    /// The shared resolution slot of `service`, held by each of its watches.
    fn join(&self, service: &ScopePath) -> Arc<Shared> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.entry(service.clone()).or_default().clone()
    }

    /// Lets go of `service`'s slot; the last watch to leave drops it (and
    /// the values it holds).
    fn leave(&self, service: &ScopePath, shared: Arc<Shared>) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        drop(shared);
        if latest
            .get(service)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            latest.remove(service);
        }
    }
}

/// Marks this process's holder rows live every [`REFRESH_EVERY`], and
/// purges rows nobody marked for [`PURGED_AFTER`]; ends with the pipeline.
async fn refresh(pipeline: WeakPipeline, node: String) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    loop {
        tick.tick().await;
        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        let store = pipeline.store();
        let now = warden_store::now_ms();
        let purge_before = now.saturating_sub(millis(PURGED_AFTER));
        if let Err(e) = store.refresh_holders(&node, now, purge_before).await {
            tracing::warn!(error = %e, "could not refresh the secret holders of this process");
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `?pod=NAME` of a watch.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct WatchQuery {
    /// The pod the watching wrapper runs in (a Kubernetes or local pod
    /// name: 1-253 characters of a-z, 0-9, '-' and '.').
    #[schemars(regex(pattern = warden_types::pattern::POD_NAME))]
    pod: Option<String>,
}

/// `GET /api/v1/watch/{service}`: see the module's documentation.
pub(super) async fn watch(
    State(app): State<AppState>,
    crate::caller::Meta(mut meta): crate::caller::Meta,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<WatchQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<axum::response::Response, ApiError> {
    meta.transport = warden_pipeline::Transport::WebSocket;
    let caller = app
        .pipeline
        .authenticate(meta, &[Action::SecretRead])
        .await?;
    let service = scope_arg(path)?;
    if service.kind() != ScopeKind::Service {
        return Err(ApiError::invalid(
            "a watch takes a service path ORG/PROJECT/ENV/SERVICE",
        ));
    }
    let pod = match query_arg(q)?.pod {
        Some(pod) => pod_arg(caller.id(), pod)?.unwrap_or_else(|| "-".to_owned()),
        None => "-".to_owned(),
    };
    let ws = ws.map_err(|_| {
        ApiError::http(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!(
                "this route is a WebSocket: upgrade with Sec-WebSocket-Protocol: \
                 {SECRET_WATCH_PROTOCOL}"
            ),
        )
    })?;
    // A watch is idle nearly all its life and receives only small reports:
    // small buffers (tungstenite's defaults are 128 KiB each), so a
    // thousand idle watches do not hold a quarter of a GiB.
    let ws = ws
        .protocols([SECRET_WATCH_PROTOCOL])
        .max_message_size(MAX_REPORT_BYTES)
        // A frame's declared length is checked against this before it is
        // buffered (the message limit only once it is whole).
        .max_frame_size(MAX_REPORT_BYTES)
        .read_buffer_size(MAX_REPORT_BYTES)
        .write_buffer_size(0);
    if ws.selected_protocol().is_none() {
        return Err(ApiError::invalid(format!(
            "offer the WebSocket subprotocol {SECRET_WATCH_PROTOCOL}"
        )));
    }
    let mut target = Target::secrets(&service, vec!["*".to_owned()]);
    target.pod = Some(pod.clone());
    // Per credential, and per principal: a workload can mint itself more
    // credentials (exchanging its service-account token again), not more
    // watches than its pods could need (review 13, F5).
    let slots = app
        .watches
        .per_credential
        .take(&caller.who().token_id, MAX_WATCHES_PER_CREDENTIAL)
        .ok_or(format!(
            "this credential holds {MAX_WATCHES_PER_CREDENTIAL} watches already on this server; \
             end one first"
        ))
        .and_then(|a| {
            let b = app
                .watches
                .per_principal
                .take(caller.id(), MAX_WATCHES_PER_PRINCIPAL)
                .ok_or(format!(
                    "{} holds {MAX_WATCHES_PER_PRINCIPAL} watches already on this server",
                    caller.id()
                ))?;
            Ok((a, b))
        });
    let slots = match slots {
        Ok(slots) => slots,
        Err(why) => {
            let busy = warden_pipeline::Error::rate_limited(5, why);
            return Err(app
                .pipeline
                .refuse(&caller, "secret.watch", target, busy)
                .await
                .into());
        }
    };
    let op = Operation::new(
        "secret.watch",
        Action::SecretRead,
        Scope::Path(service.clone()),
        target,
    );
    let mut grant = app.pipeline.run_session(&caller, op).await?;
    Ok(ws.on_upgrade(move |socket| async move {
        let shared = app.watches.join(&service);
        let watch = Watch {
            app: &app,
            shared: &shared,
            service: &service,
            pod,
        };
        let status = watch.serve(socket, &mut grant).await;
        if let Err(e) = app.store.drop_holder(grant.id()).await {
            tracing::warn!(error = %e, "could not remove an ended watch from the secret holders");
        }
        app.watches.leave(&service, shared);
        drop(slots);
        grant.finish(status);
    }))
}

/// One watch being served.
struct Watch<'a> {
    app: &'a App,
    shared: &'a Shared,
    service: &'a ScopePath,
    pod: String,
}

/// What a watch last sent.
struct Sent {
    generation: u64,
    versions: Versions,
    /// Whether the wrapper reported on it (one report per update counts).
    reported: bool,
}

impl Watch<'_> {
    /// Serves the watch until it ends; returns its outcome's status.
    async fn serve(&self, socket: WebSocket, grant: &mut SessionGrant) -> &'static str {
        let close = |code: u16, reason: String| close_frame(code, &reason);
        let (mut sink, mut stream) = socket.split();
        // Subscribed before the first resolution: no change after it is
        // missed.
        let mut changes = self.app.store.changes();
        let inherited = self.service.inherited_scopes();
        let mut sent: Option<Sent> = None;
        let mut changed = Some(Instant::now());
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        // Every send is raced against the grant's end and a timeout
        // (`send_watched`): a watcher that stops reading loses its watch.
        let ended = |d: Delivery| match d {
            Delivery::Done => None,
            Delivery::Gone => Some((None, "client_gone")),
            Delivery::Stalled => Some((
                Some(close(1008, "the watcher stopped reading".into())),
                "client_gone",
            )),
            Delivery::Ended(reason) => Some((
                Some(close(1008, format!("watch ended: {reason}"))),
                "authority_ended",
            )),
        };
        let (frame, status) = loop {
            if let Some(since) = changed.take() {
                if let Some(reason) = grant.end_reason() {
                    break (
                        Some(close(1008, format!("watch ended: {reason}"))),
                        "authority_ended",
                    );
                }
                match self.update(grant.permit(), since, sent.as_ref()).await {
                    Ok(None) => {}
                    Ok(Some((update, versions))) => {
                        let d = send_watched(&mut sink, grant, Message::Text(update.into())).await;
                        if let Some(end) = ended(d) {
                            break end;
                        }
                        sent = Some(Sent {
                            generation: sent.as_ref().map_or(1, |s| s.generation + 1),
                            versions,
                            reported: false,
                        });
                    }
                    Err(e) => break (Some(close(1011, e.message().to_owned())), "failed"),
                }
            }
            tokio::select! {
                received = changes.recv() => match received {
                    Ok(Change::Secrets(names)) => {
                        if names.iter().any(|(scope, _)| inherited.contains(scope)) {
                            changed = Some(Instant::now());
                        }
                    }
                    Ok(Change::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        changed = Some(Instant::now());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        break (Some(close(1001, "the server is shutting down".into())), "ended");
                    }
                },
                reason = grant.ended() => {
                    break (Some(close(1008, format!("watch ended: {reason}"))), "authority_ended");
                }
                _ = ping.tick() => {
                    let d = send_watched(&mut sink, grant, Message::Ping(Vec::new().into())).await;
                    if let Some(end) = ended(d) {
                        break end;
                    }
                }
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(reason) = self.report(grant, sent.as_mut(), &text).await {
                            break (Some(close(1008, reason)), "failed");
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break (Some(close(1003, "reports are JSON text".into())), "failed");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break (None, "client_gone"),
                }
            }
        };
        if let Some(frame) = frame {
            // The watcher may not be reading: tried briefly, then dropped.
            let _ = tokio::time::timeout(WATCHER_CLOSE_TIMEOUT, sink.send(frame)).await;
        }
        status
    }

    /// The update to send if the service's secrets changed since `sent`:
    /// its text and the versions it carries.
    async fn update(
        &self,
        permit: &Permit,
        since: Instant,
        sent: Option<&Sent>,
    ) -> Result<Option<(String, Versions)>, ApiError> {
        let r = self
            .app
            .watches
            .current(self.shared, &self.app.vault, permit, self.service, since)
            .await?;
        if sent.is_some_and(|s| s.versions == r.versions) {
            return Ok(None);
        }
        let update = WatchUpdate {
            generation: sent.map_or(1, |s| s.generation + 1),
            resolved: Resolved {
                service: self.service.to_string(),
                values: r
                    .values
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), wire(v.expose())?)))
                    .collect::<Result<_, ApiError>>()?,
                versions: wire_versions(&r.versions),
            },
        };
        let text = serde_json::to_string(&update).map_err(|_| ApiError::internal())?;
        Ok(Some((text, r.versions.clone())))
    }

    /// Takes a report from the wrapper: an applied update is audited and
    /// becomes what the pod holds. An error is the reason to end the watch.
    async fn report(
        &self,
        grant: &SessionGrant,
        sent: Option<&mut Sent>,
        text: &str,
    ) -> Result<(), String> {
        let report: WatchReport = serde_json::from_str(text).map_err(|_| {
            "a report is {\"report\":\"applied\"|\"failed\",\"generation\":N}".to_owned()
        })?;
        let (WatchReport::Applied { generation } | WatchReport::Failed { generation, .. }) = report;
        let Some(sent) = sent.filter(|s| s.generation == generation) else {
            // A report on an update superseded since: the next one counts.
            return Ok(());
        };
        if std::mem::replace(&mut sent.reported, true) {
            return Err(format!("update {generation} was reported already"));
        }
        let mut target = Target::secrets(self.service, version_labels(&sent.versions));
        target.pod = Some(self.pod.clone());
        let (action, status) = match &report {
            WatchReport::Applied { .. } => ("secret.watch.applied", "ok"),
            WatchReport::Failed { error, .. } => {
                tracing::warn!(
                    service = %self.service,
                    pod = %self.pod,
                    error = %error.chars().take(MAX_LOGGED_ERROR).collect::<String>().escape_debug(),
                    "a watching workload could not apply an update"
                );
                ("secret.watch.failed", "failed")
            }
        };
        grant
            .record_step(action, target, status)
            .await
            .map_err(|e| e.message().to_owned())?;
        if matches!(report, WatchReport::Applied { .. }) {
            let now = warden_store::now_ms();
            let row = HolderRow {
                watch: grant.id().to_owned(),
                node: self.app.watches.node.clone(),
                org: self.service.org().to_owned(),
                service: self.service.to_string(),
                pod: self.pod.clone(),
                versions: serde_json::to_string(&sent.versions)
                    .map_err(|_| "internal error".to_owned())?,
                applied_at: now,
                seen_at: now,
            };
            if let Err(e) = self.app.store.put_holder(row).await {
                tracing::warn!(error = %e, "could not record a secret holder");
            }
        }
        Ok(())
    }
}

/// `?name=NAME` of the holders route.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct HoldersQuery {
    /// The secret's name.
    #[schemars(regex(pattern = warden_types::pattern::SECRET_NAME))]
    name: String,
}

/// `GET /api/v1/secret-holders/{scope}?name=NAME`: which watching pods hold
/// which version of the secret, for `secret.list` on its scope.
pub(super) async fn holders(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<HoldersQuery>, QueryRejection>,
) -> Result<Json<SecretHolders>, ApiError> {
    let scope = scope_arg(path)?;
    let name = super::secrets::secret_name(&query_arg(q)?.name)?;
    let app: &App = &app;
    app.pipeline
        .run(
            &caller,
            Operation::new(
                "secret.holders",
                Action::SecretList,
                Scope::Path(scope.clone()),
                Target::secret(&scope, &name, None),
            ),
            |permit| async move {
                let latest = app
                    .vault
                    .history(&permit, &scope, &name)
                    .await?
                    .iter()
                    .filter(|v| v.deleted_at.is_none() && v.destroyed_at.is_none())
                    .map(|v| v.version)
                    .max();
                let since = warden_store::now_ms().saturating_sub(millis(LISTED_FOR));
                let prefix = format!("{scope}/");
                let mut holders = Vec::new();
                for row in app.store.holders(scope.org(), since).await? {
                    if row.service != scope.as_str() && !row.service.starts_with(&prefix) {
                        continue;
                    }
                    let Ok(versions) =
                        serde_json::from_str::<BTreeMap<String, ServedVersion>>(&row.versions)
                    else {
                        continue;
                    };
                    if let Some(v) = versions.get(name.as_str())
                        && v.scope == scope.as_str()
                    {
                        holders.push(SecretHolder {
                            service: row.service,
                            pod: row.pod,
                            version: v.version,
                            applied_at: row.applied_at,
                            current: Some(v.version) == latest,
                        });
                    }
                }
                Ok(Json(SecretHolders {
                    scope: scope.to_string(),
                    name: name.to_string(),
                    latest,
                    holders,
                }))
            },
        )
        .await
}
