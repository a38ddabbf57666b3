//! Secret rollouts: a rotation delivered to a service's pods by replacing
//! them one at a time, for workloads applied with
//! `secrets: {on_change: rollout}`.
//!
//! Such a service's pods are served *pinned* versions (the
//! `secret_rollouts` row; [`warden_vault::Vault::resolve`] honours it), so
//! a pod keeps the values it started with, and one that restarts gets them
//! again. When a secret the service inherits changes, every replica learns
//! it from the store's change feed (a sweep every [`SWEEP_EVERY`] catches
//! anything missed) and one of them claims the rollout in the database.
//! That replica pins the new versions and asks the service's runtime for a
//! rolling restart: one pod at a time, each new pod (which fetches the new
//! versions) running before the next old one stops. If a new pod does not
//! start, the previous versions are pinned again and the service is rolled
//! back to them; the versions that failed are not tried again until the
//! secrets change once more. Each step is audited in the organization's log
//! as actor `warden` (`secret.rollout.started`, `.completed`, `.failed`,
//! `.reverted`), naming each secret as `NAME:VERSION@SCOPE`, never a value.
//!
//! A claim is kept fresh while its rollout runs; one not refreshed for
//! [`CLAIM_EXPIRES`] (its replica died) may be taken over by another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use warden_pipeline::Target;
use warden_policies::Scope;
use warden_runtime::{Runtime, RuntimeError, Selector, ServiceRef};
use warden_store::{Change, ROLLOUT_FAILED, ROLLOUT_IDLE, ROLLOUT_ROLLING, RolloutRow};
use warden_types::ScopePath;
use warden_vault::Versions;

use crate::state::App;

/// How often every rolled service is checked, whatever the feed said.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How often a running rollout refreshes its claim.
const CLAIM_REFRESH: Duration = Duration::from_secs(20);
/// A claim not refreshed for this long was left by a replica that died.
const CLAIM_EXPIRES: Duration = Duration::from_secs(120);
/// Rollouts a replica runs at once (it may hold more claims waiting).
const AT_ONCE: usize = 4;

/// The pin text of `versions`: one encoding, so equal versions are equal
/// text.
pub(crate) fn pin_text(versions: &Versions) -> String {
    // A map of strings and integers always encodes.
    serde_json::to_string(versions).unwrap_or_default()
}

/// `NAME:VERSION@SCOPE` of each secret of a pin, as the audit log names
/// them (a pin that does not decode names nothing).
fn labels(pin: &str) -> Vec<String> {
    warden_vault::version_labels(&serde_json::from_str::<Versions>(pin).unwrap_or_default())
}

/// Makes `service` rolled, its pods served the versions latest now. A
/// service rolled already keeps its pin, and forgets a failed rollout (the
/// workload applied again may start with what it could not).
pub(crate) async fn adopt(app: &App, service: &ScopePath) -> Result<(), crate::ApiError> {
    let latest = app.vault.latest_versions(service).await?;
    app.store
        .adopt_rollout(
            service.as_str(),
            service.org(),
            pin_text(&latest),
            warden_store::now_ms(),
        )
        .await?;
    Ok(())
}

/// Starts the rollout controller of this process; it ends with the app.
pub(crate) fn start(app: &Arc<App>) {
    // Unique, not secret: the time and process id do if the system's
    // random number generator fails.
    let node = warden_pipeline::random_bytes::<8>().map_or_else(
        |_| format!("{}-{}", std::process::id(), warden_store::now_ms()),
        hex::encode,
    );
    let changes = app.store.changes();
    tokio::spawn(control(Arc::downgrade(app), changes, node));
}

/// The services whose rollout task runs, each with whether it must look
/// again once done (a change arrived meanwhile).
type Running = Arc<Mutex<HashMap<String, bool>>>;

async fn control(app: Weak<App>, mut changes: broadcast::Receiver<Change>, node: String) {
    let running = Running::default();
    let turns = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        // The scopes whose secrets changed; `None`: look at every service.
        let changed: Option<Vec<String>> = tokio::select! {
            _ = sweep.tick() => None,
            received = changes.recv() => match received {
                Ok(Change::Secrets(names)) => Some(names.into_iter().map(|(scope, _)| scope).collect()),
                Ok(Change::All) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let Some(strong) = app.upgrade() else { return };
        if strong.vault.is_sealed() {
            // New pods could not fetch anything: a rollout would only fail.
            continue;
        }
        let rows = match strong.store.rollouts().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the rolled services");
                continue;
            }
        };
        drop(strong);
        for row in rows {
            let affected = changed.as_ref().is_none_or(|scopes| {
                ScopePath::parse(&row.service).is_ok_and(|service| {
                    let inherited = service.inherited_scopes();
                    scopes.iter().any(|s| inherited.contains(s))
                })
            });
            if affected {
                kick(&running, &turns, &app, &node, row.service);
            }
        }
    }
}

/// Runs `service`'s rollout task, or tells the running one to look again.
fn kick(
    running: &Running,
    turns: &Arc<tokio::sync::Semaphore>,
    app: &Weak<App>,
    node: &str,
    service: String,
) {
    {
        let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(again) = r.get_mut(&service) {
            *again = true;
            return;
        }
        r.insert(service.clone(), false);
    }
    let (running, turns) = (running.clone(), turns.clone());
    let (app, node) = (app.clone(), node.to_owned());
    tokio::spawn(async move {
        loop {
            if let Some(app) = app.upgrade()
                && let Err(e) = roll(&app, &node, &service, &turns).await
            {
                tracing::warn!(%service, error = %e, "secret rollout");
            }
            let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
            if r.get(&service) == Some(&true) {
                r.insert(service.clone(), false);
                continue;
            }
            r.remove(&service);
            return;
        }
    });
}

/// Rolls `service` to its latest versions if they are not what its pods
/// are pinned to, not what failed last, and no other replica is at it.
async fn roll(
    app: &App,
    node: &str,
    service: &str,
    turns: &tokio::sync::Semaphore,
) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let Some(row) = app.store.rollout(service).await.map_err(|e| text(&e))? else {
        return Ok(());
    };
    let path = ScopePath::parse(service).map_err(|e| text(&e))?;
    let latest = app
        .vault
        .latest_versions(&path)
        .await
        .map_err(|e| text(&e))?;
    let target = pin_text(&latest);
    let now = warden_store::now_ms();
    let stale_before = now - millis(CLAIM_EXPIRES);
    if !wanted(&row, &target, stale_before)
        || !app
            .store
            .claim_rollout(service, target.clone(), node, now, stale_before)
            .await
            .map_err(|e| text(&e))?
    {
        return Ok(());
    }
    // Looking and claiming take no turn; rolling does (review 15, 2). A
    // claim that waits too long for one may be taken over by a replica
    // with a turn free: this one then finds it lost and stops.
    let _turn = turns.acquire().await.map_err(|e| text(&e))?;
    // Read again under the claim: what the pods held when the rollout
    // began (a takeover finishes its dead replica's rollout).
    let previous = app
        .store
        .rollout(service)
        .await
        .map_err(|e| text(&e))?
        .and_then(|r| r.previous)
        .unwrap_or(row.pinned);
    let rollout = Rollout {
        app,
        node,
        service: ServiceRef::from_path(path.clone()).map_err(|e| text(&e))?,
        path,
    };
    rollout.run(previous, target).await
}

/// Whether a rollout to `target` is called for, as far as `row` says (the
/// claim decides for sure).
fn wanted(row: &RolloutRow, target: &str, stale_before: i64) -> bool {
    match row.state.as_str() {
        ROLLOUT_ROLLING => row.updated_at < stale_before,
        ROLLOUT_FAILED => row.pinned != target && row.target.as_deref() != Some(target),
        _ => row.pinned != target,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A claimed rollout.
struct Rollout<'a> {
    app: &'a App,
    node: &'a str,
    path: ScopePath,
    service: ServiceRef,
}

impl Rollout<'_> {
    async fn run(&self, previous: String, target: String) -> Result<(), String> {
        self.audit("secret.rollout.started", &target, None, "ok")
            .await?;
        let before = self.pods().await;
        // A lost claim (another replica took over) ends this run quietly.
        let rolled = self.restart_pinned(&target).await?;
        match rolled {
            Ok(()) => {
                self.pin(&target, ROLLOUT_IDLE).await?;
                self.audit("secret.rollout.completed", &target, None, "ok")
                    .await
            }
            Err(RuntimeError::RolloutStalled { pod, .. }) => {
                self.revert(&previous, &target, Some(pod), before).await
            }
            Err(RuntimeError::ServiceNotFound(_)) => {
                // No workload on the runtime (its apply failed, or it was
                // deleted there): nothing to roll, and no pin to keep.
                self.app
                    .store
                    .drop_rollout(self.path.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                self.audit("secret.rollout.failed", &target, None, "not_found")
                    .await
            }
            Err(e @ RuntimeError::Unavailable(_)) => {
                // The runtime could not be reached (an agent away): the
                // previous versions are pinned again, and the next sweep
                // tries again.
                tracing::warn!(service = %self.path, error = %e, "a secret rollout could not run");
                self.pin(&previous, ROLLOUT_IDLE).await?;
                self.audit("secret.rollout.failed", &target, None, "unavailable")
                    .await
            }
            Err(e) => {
                tracing::warn!(service = %self.path, error = %e, "a secret rollout failed");
                self.revert(&previous, &target, None, before).await
            }
        }
    }

    /// After a failed rollout to `target` (`pod` did not start): pins
    /// `previous` again and, if any pod was replaced since `before`, rolls
    /// the service back to it. The failed versions stay named (`target`),
    /// so they are not tried again until the secrets change or the
    /// workload is applied again.
    async fn revert(
        &self,
        previous: &str,
        target: &str,
        pod: Option<String>,
        before: Result<Vec<String>, RuntimeError>,
    ) -> Result<(), String> {
        self.audit("secret.rollout.failed", target, pod, "failed")
            .await?;
        // A stalled restart removes the pod that did not start: if no
        // other was replaced, every pod still holds the previous versions.
        let replaced = match (before, self.pods().await) {
            (Ok(before), Ok(now)) => now.iter().any(|p| !before.contains(p)),
            _ => true,
        };
        let reverted = if replaced {
            self.restart_pinned(previous).await?
        } else {
            self.pin(previous, ROLLOUT_ROLLING).await?;
            Ok(())
        };
        self.pin(previous, ROLLOUT_FAILED).await?;
        let status = match &reverted {
            Ok(()) => "ok",
            Err(e) => {
                tracing::error!(service = %self.path, error = %e, "reverting a secret rollout failed");
                "failed"
            }
        };
        self.audit("secret.rollout.reverted", previous, None, status)
            .await
    }

    async fn runtime(&self) -> Result<warden_agent::RemoteRuntime, RuntimeError> {
        self.app
            .clusters
            .runtime_of(&self.app.store, &self.service.environment())
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))
    }

    /// The names of the service's pods.
    async fn pods(&self) -> Result<Vec<String>, RuntimeError> {
        let selector = Selector::Service(self.service.clone());
        Ok(self
            .runtime()
            .await?
            .pods(&selector)
            .await?
            .into_iter()
            .map(|p| p.name.to_string())
            .collect())
    }

    /// Pins `pin` for the service's pods and rolls them, refreshing the
    /// claim while the runtime works: the runtime's answer, or (outer)
    /// why the claim was lost.
    async fn restart_pinned(&self, pin: &str) -> Result<Result<(), RuntimeError>, String> {
        self.pin(pin, ROLLOUT_ROLLING).await?;
        let runtime = match self.runtime().await {
            Ok(runtime) => runtime,
            Err(e) => return Ok(Err(e)),
        };
        let restart = runtime.restart(&self.service);
        tokio::pin!(restart);
        let mut refresh = tokio::time::interval(CLAIM_REFRESH);
        refresh.tick().await;
        loop {
            tokio::select! {
                done = &mut restart => return Ok(done),
                // A lost claim stops this replica's part (another has it):
                // two replicas must not roll one service (review 15, 3).
                _ = refresh.tick() => self.pin(pin, ROLLOUT_ROLLING).await?,
            }
        }
    }

    /// Pins `pin` with the rollout in `state`, if this replica still holds
    /// the claim.
    async fn pin(&self, pin: &str, state: &'static str) -> Result<(), String> {
        let held = self
            .app
            .store
            .advance_rollout(
                self.path.as_str(),
                self.node,
                pin.to_owned(),
                state,
                warden_store::now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if held {
            Ok(())
        } else {
            Err(
                "the rollout's claim was lost (taken over, or the workload was applied anew)"
                    .into(),
            )
        }
    }

    async fn audit(
        &self,
        action: &str,
        pin: &str,
        pod: Option<String>,
        status: &'static str,
    ) -> Result<(), String> {
        let mut target = Target::secrets(&self.path, labels(pin));
        target.pod = pod;
        self.app
            .pipeline
            .record_for(&Scope::Path(self.path.clone()), action, target, status)
            .await
            .map_err(|e| e.to_string())
    }
}
