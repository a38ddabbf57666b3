//! Session-long authority. The pipeline decides once, at the start of a
//! long operation; a [`SessionGrant`] then keeps checking that the decision
//! still holds and ends the moment it does not.
//!
//! A watcher task per grant listens to the store's change feed and
//! re-authenticates the caller's credential and re-authorizes the action
//! (from fresh data: the writer drops stale cache entries before it
//! publishes a change) whenever a change concerns the caller, and on a
//! timer as a safety net. It also ends the grant when the vault is sealed,
//! when the credential expires, and when the feed reports that changes
//! made elsewhere may be going unseen (fail closed).

use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use warden_audit::{Event, Intent, SessionRecord};
use warden_policies::{Action, Decision, Scope, SessionPolicy, authorize};
use warden_store::Change;

use crate::{Caller, Credential, Permit, Pipeline, RequestMeta};

/// How often a grant re-checks its authority when nothing is reported.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// A live grant of authority for one action on one resource, for the
/// caller that started it. Select on [`SessionGrant::ended`] next to the
/// session's own work; stop the session when it resolves, telling the user
/// the reason. Finish it with [`SessionGrant::finish`] to record the
/// outcome (dropping it records `ended`).
pub struct SessionGrant {
    permit: Permit,
    ended: watch::Receiver<Option<String>>,
    /// How the session runs now: the permit's settings, then those of each
    /// re-authorization (a role tightened mid-session applies at once).
    policy: watch::Receiver<SessionPolicy>,
    watcher: JoinHandle<()>,
    pipeline: Pipeline,
    event: Event,
    /// Taken when the outcome is recorded.
    intent: Option<Intent>,
    started: Instant,
}

impl SessionGrant {
    /// The permit the session's operations take.
    pub fn permit(&self) -> &Permit {
        &self.permit
    }

    /// Resolves with the reason once the caller's authority has ended (at
    /// once if it has already). Cancel-safe.
    pub async fn ended(&mut self) -> String {
        match self.ended.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the session's authority check stopped".to_owned(),
        }
    }

    /// The session's id: its intent's operation id, in its audit entries.
    pub fn id(&self) -> &str {
        &self.event.op_id
    }

    /// Records one step of the session (an update a secret watch
    /// delivered) in the session's log, as the session's caller under the
    /// decision that started it, with an operation id of its own. Returns
    /// once it is durable.
    pub async fn record_step(
        &self,
        action: &str,
        target: warden_audit::Target,
        status: &str,
    ) -> Result<(), crate::Error> {
        let event = Event {
            op_id: self.pipeline.audit().op_id(),
            action: action.to_owned(),
            target,
            session: None,
            count: None,
            ..self.event.clone()
        };
        self.pipeline
            .audit()
            .record(&event, status)
            .await
            .map_err(|_| crate::Error::audit_unavailable())
    }

    /// How the session runs, as of the last authorization: the `session:`
    /// settings of every role allowing it, combined. Watch it with
    /// [`SessionGrant::policy_watch`]: a role changed mid-session changes
    /// it.
    pub fn session_policy(&self) -> SessionPolicy {
        *self.policy.borrow()
    }

    /// A receiver of [`SessionGrant::session_policy`]'s changes.
    pub fn policy_watch(&self) -> watch::Receiver<SessionPolicy> {
        self.policy.clone()
    }

    /// The reason the authority ended, if it has.
    pub fn end_reason(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// How long the session has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the session and records its outcome with `status`.
    pub fn finish(mut self, status: &str) {
        self.record(status);
    }

    /// Ends the session and records its outcome with `status` and what the
    /// session did (transport, pod, bytes, exit status, duration).
    pub fn finish_with(mut self, status: &str, record: SessionRecord) {
        self.event.session = Some(record);
        self.record(status);
    }

    fn record(&mut self, status: &str) {
        if let Some(intent) = self.intent.take() {
            self.pipeline.audit().outcome(intent, &self.event, status);
        }
    }
}

impl Drop for SessionGrant {
    fn drop(&mut self) {
        self.watcher.abort();
        let status = if self.ended.borrow().is_some() {
            "authority_ended"
        } else {
            "ended"
        };
        self.record(status);
    }
}

/// What the watcher needs to re-decide.
struct Watch {
    pipeline: Pipeline,
    meta: RequestMeta,
    principal: String,
    /// Organizations whose custom roles the caller's bindings use (all of
    /// them for a root binding).
    orgs: Vec<Option<String>>,
    action: Action,
    scope: Scope,
    expires_at_ms: Option<i64>,
    policy: watch::Sender<SessionPolicy>,
}

pub(crate) fn start(
    pipeline: Pipeline,
    caller: &Caller,
    event: Event,
    intent: Intent,
    permit: Permit,
) -> SessionGrant {
    let (tx, ended) = watch::channel(None);
    let (policy_tx, policy) = watch::channel(permit.session_policy());
    let who = &caller.who;
    let watch = Watch {
        pipeline: pipeline.clone(),
        meta: caller.meta.clone(),
        principal: who.principal.id.clone(),
        orgs: who
            .principal
            .bindings
            .iter()
            .map(|b| b.scope.org().map(str::to_owned))
            .collect(),
        action: permit.action(),
        scope: permit.scope().clone(),
        expires_at_ms: who.expires_at_ms,
        policy: policy_tx,
    };
    // Subscribe before the task starts, so no change made from now on is
    // missed.
    let changes = pipeline.store().changes();
    let watcher = tokio::spawn(watch.run(changes, tx));
    SessionGrant {
        permit,
        ended,
        policy,
        watcher,
        pipeline,
        event,
        intent: Some(intent),
        started: Instant::now(),
    }
}

impl Watch {
    /// Whether `change` could alter this caller's authority.
    fn concerns(&self, change: &Change) -> bool {
        match change {
            Change::Principal(p) => *p == self.principal,
            Change::Role(org) => self
                .orgs
                .iter()
                .any(|o| o.as_deref().is_none_or(|o| o == org)),
            Change::Token(_) | Change::Secrets(_) | Change::Cluster(_) => false,
            Change::All => true,
        }
    }

    async fn run(
        self,
        mut changes: broadcast::Receiver<Change>,
        tx: watch::Sender<Option<String>>,
    ) {
        let reason = self.watch(&mut changes).await;
        tx.send_replace(Some(reason));
    }

    /// Returns why the authority ended.
    async fn watch(&self, changes: &mut broadcast::Receiver<Change>) -> String {
        let mut sealed = self.pipeline.keys().sealed_changes();
        let mut health = self.pipeline.store().feed_health();
        let expiry = self.expires_at_ms.map(|at| {
            let left = at.saturating_sub(warden_store::now_ms()).max(0);
            tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0))
        });
        let mut tick = tokio::time::interval(RECHECK_EVERY);
        tick.tick().await;
        // The caller was authenticated before the subscription was taken:
        // a change committed in between is not among `changes`, so storage
        // is asked once now.
        if let Err(reason) = self.recheck().await {
            return reason;
        }
        loop {
            let recheck = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => self.concerns(&change),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => {
                        return "the server is shutting down".to_owned();
                    }
                },
                _ = sealed.wait_for(|s| *s) => return "the vault was sealed".to_owned(),
                _ = health.wait_for(|h| !*h) => {
                    return "authority can no longer be verified (the change feed was lost)"
                        .to_owned();
                }
                () = sleep_until(expiry) => return "the credential expired".to_owned(),
                _ = tick.tick() => true,
            };
            if recheck && let Err(reason) = self.recheck().await {
                return reason;
            }
        }
    }

    /// [`Watch::still_allowed`], publishing the session settings it found.
    async fn recheck(&self) -> Result<(), String> {
        let policy = self.still_allowed().await?;
        self.policy
            .send_if_modified(|p| std::mem::replace(p, policy) != policy);
        Ok(())
    }

    /// Re-authenticates the credential and re-authorizes the action, from
    /// what storage says now; any failure (including storage being
    /// unreachable) ends the grant.
    async fn still_allowed(&self) -> Result<SessionPolicy, String> {
        let p = &self.pipeline;
        let checked = match &self.meta.credential {
            Credential::Bearer(token) => p.identity().token(p.store(), token).await,
            Credential::SshKey { fingerprint, mfa } => {
                p.identity().ssh_key(p.store(), fingerprint, *mfa).await
            }
            Credential::None | Credential::Malformed(_) => {
                return Err("no credential".to_owned());
            }
        };
        let who = match checked {
            Ok(Ok(who)) => who,
            Ok(Err(refusal)) => return Err(refusal.0.to_owned()),
            Err(_) => {
                return Err("authority can no longer be verified (storage unavailable)".to_owned());
            }
        };
        let resource = p
            .identity()
            .resource(p.store(), self.scope.clone())
            .await
            .map_err(|_| "authority can no longer be verified (storage unavailable)".to_owned())?;
        match authorize(&who.principal, self.action, &resource) {
            Decision::Allow(allowed) => Ok(allowed.explanation().session),
            Decision::Deny(d) => Err(d.reason),
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
