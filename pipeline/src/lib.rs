//! The request pipeline. Every operation, whatever its entry point (the
//! HTTPS API, SSH, WebSocket, `kubectl exec`, an agent, the injector), runs
//! these four steps, in this order, here:
//!
//! 1. **Authenticate** ([`Pipeline::authenticate`]): the presented
//!    [`Credential`] becomes a [`Caller`] (a principal with the role
//!    bindings it holds now), or an `unauthenticated` error. Every failure
//!    is audited.
//! 2. **Authorize**: [`warden_policies::authorize`] decides, for the one
//!    action the entry point declared and the one resource.
//! 3. **Audit**: a denial is recorded durably before it is answered; an
//!    allow's intent is appended before the operation runs (durably, or,
//!    for operations whose effects are storage writes only, ahead of those
//!    writes in the same ordered queue, see [`Pipeline::run_stored`]). If
//!    the intent cannot be recorded the operation does not run.
//! 4. **Execute** with the [`Permit`] minted for exactly that caller,
//!    action and resource; then append the outcome.
//!
//! Public operations (init, unseal, login) skip steps 1 and 2 but not 3.
//!
//! This crate owns credentials, authentication, the [`Caller`], the
//! [`Permit`] and the pipeline's [`Error`]. Front-ends (the `server` crate
//! for HTTP, `shell-gateway` for SSH and WebSocket) turn their requests into
//! a [`RequestMeta`] and map [`ErrorKind`] to their own answers, each in
//! one place.
//!
//! Architecture invariant: this crate never depends on axum, hyper, russh,
//! kube or the vault (checked by the architecture test); it reaches the
//! vault only through the [`Keys`] trait.

mod credential;
mod error;
mod failures;
pub mod identity;
mod keys;
mod permit;
mod session;
pub mod throttle;

use std::future::Future;
use std::sync::Arc;

use warden_audit::{Actor, Auditor, DecisionRecord, Event, Intent, SYSTEM_LOG};
pub use warden_audit::{SessionRecord, Target};
use warden_policies::{Action, Decision, Resource, Scope, authorize};
use warden_store::Store;
use warden_types::ScopePath;

pub use credential::{Credential, MAX_CREDENTIAL_BYTES, RequestMeta, Transport};
pub use error::{Error, ErrorKind};
pub use identity::{Authenticated, Identity, Method, Refusal};
pub use keys::Keys;
pub use permit::Permit;
pub use session::SessionGrant;

/// Random bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| Error::internal())?;
    Ok(out)
}

/// The error type of an operation run through the pipeline: a front-end's
/// own error, which pipeline errors convert into, and which names its
/// audit outcome status.
pub trait OpError: From<Error> {
    /// The status recorded in the outcome entry (`ok` is for success).
    fn code(&self) -> &'static str;
}

impl OpError for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
}

/// What an entry point asks the pipeline to run: the operation's name (as
/// audited, e.g. `user.disable`), the permission it needs on which scope,
/// and what it acts on.
#[derive(Debug, Clone)]
pub struct Operation {
    name: &'static str,
    action: Action,
    scope: Scope,
    target: Target,
}

impl Operation {
    /// Operation `name` needs `action` on `scope` and acts on `target`.
    pub fn new(name: &'static str, action: Action, scope: Scope, target: Target) -> Self {
        Self {
            name,
            action,
            scope,
            target,
        }
    }
}

/// An authenticated caller (step 1), with the actions its entry point
/// declared it may run.
pub struct Caller {
    meta: RequestMeta,
    who: Authenticated,
    declared: &'static [Action],
}

impl Caller {
    /// Who is calling, with the bindings in force for this request.
    pub fn who(&self) -> &Authenticated {
        &self.who
    }

    /// The principal id.
    pub fn id(&self) -> &str {
        &self.who.principal.id
    }

    /// The request's metadata.
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }
}

/// Where an event about `scope` is logged.
fn log_for(scope: &Scope) -> String {
    match scope {
        Scope::Root => SYSTEM_LOG.to_owned(),
        Scope::Path(p) => p.org().to_owned(),
    }
}

fn status_of<T, E: OpError>(result: &Result<T, E>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// Where an operation's effects can land; decides whether the intent must
/// be durable before it starts.
#[derive(Clone, Copy)]
enum Effects {
    /// Anywhere (memory, processes, other systems): intent first.
    Anywhere,
    /// Only storage writes (ordered after the intent) and the answer.
    StorageOnly,
}

/// The pipeline: one per server process; cheap to clone (session grants
/// keep a handle to it).
#[derive(Clone)]
pub struct Pipeline(Arc<Inner>);

/// A handle that does not keep the pipeline alive (for background tasks
/// that must end with it).
#[derive(Clone)]
pub struct WeakPipeline(std::sync::Weak<Inner>);

impl WeakPipeline {
    /// The pipeline, while it exists.
    pub fn upgrade(&self) -> Option<Pipeline> {
        self.0.upgrade().map(Pipeline)
    }
}

struct Inner {
    store: Store,
    audit: Auditor,
    identity: Identity,
    keys: Arc<dyn Keys>,
    throttles: throttle::Throttles,
    failures: failures::Failures,
}

impl Pipeline {
    /// A pipeline over `store`, auditing as `audit`, asking `keys` about
    /// the vault.
    pub fn new(store: Store, audit: Auditor, keys: Arc<dyn Keys>) -> Self {
        Self(Arc::new(Inner {
            store,
            audit,
            identity: Identity::default(),
            keys,
            throttles: throttle::Throttles::default(),
            failures: failures::Failures::default(),
        }))
    }

    /// Storage (front-ends read and write identity data through it).
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The auditor.
    pub fn audit(&self) -> &Auditor {
        &self.0.audit
    }

    /// Credential checks and identity caches.
    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    /// A handle that does not keep the pipeline alive.
    pub fn downgrade(&self) -> WeakPipeline {
        WeakPipeline(Arc::downgrade(&self.0))
    }

    fn failures(&self) -> &failures::Failures {
        &self.0.failures
    }

    /// Records a refusal of something anyone can try without a credential
    /// (a failed authentication, an attempt refused by a throttle) in the
    /// system log, with `status`: individually while the source's failures
    /// are few, counted into one entry per window past that (see
    /// `failures`). Returns once it is durable.
    pub async fn record_failure(
        &self,
        meta: &RequestMeta,
        operation: &str,
        claimed: Option<(&str, &'static str)>,
        target: Target,
        status: &'static str,
    ) -> Result<(), Error> {
        let event = self.system_event(self.anonymous(meta, claimed), operation, target);
        failures::Failures::record(self, event, status).await
    }

    /// The actor of a request made without a credential: anonymous, or the
    /// account and method it claims.
    fn anonymous(&self, meta: &RequestMeta, claimed: Option<(&str, &'static str)>) -> Actor {
        Actor {
            principal: claimed.map_or("anonymous", |c| c.0).to_owned(),
            method: claimed.map_or("none", |c| c.1),
            ..self.actor(meta, None, SYSTEM_LOG)
        }
    }

    /// An event of the system log.
    pub(crate) fn system_event(&self, actor: Actor, action: &str, target: Target) -> Event {
        Event {
            op_id: self.0.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor,
            action: action.to_owned(),
            permission: None,
            target,
            decision: None,
            session: None,
            count: None,
        }
    }

    /// Records what Warden itself noticed, not a request (a stored row
    /// that failed its integrity check, rows adopted at an upgrade), in the
    /// system log as actor `warden`. Returns once it is durable.
    pub async fn record_system(
        &self,
        operation: &str,
        target: Target,
        status: &'static str,
        count: Option<u64>,
    ) -> Result<(), Error> {
        self.record_warden(SYSTEM_LOG, operation, target, status, count)
            .await
    }

    /// Records what Warden itself did for `scope` (a workload credential
    /// minted for a pod the runtime created), as actor `warden`, in the log
    /// of the scope's organization, where its auditors look. Returns once
    /// it is durable.
    pub async fn record_for(
        &self,
        scope: &Scope,
        operation: &str,
        target: Target,
        status: &'static str,
    ) -> Result<(), Error> {
        self.record_warden(&log_for(scope), operation, target, status, None)
            .await
    }

    async fn record_warden(
        &self,
        log: &str,
        operation: &str,
        target: Target,
        status: &'static str,
        count: Option<u64>,
    ) -> Result<(), Error> {
        let warden = Actor {
            principal: "warden".to_owned(),
            method: "system",
            token_id: None,
            source_ip: None,
            user_agent: None,
        };
        let event = Event {
            count,
            log: log.to_owned(),
            ..self.system_event(warden, operation, target)
        };
        self.0
            .audit
            .record(&event, status)
            .await
            .map_err(|_| Error::audit_unavailable())
    }

    /// The key holder's answers.
    pub(crate) fn keys(&self) -> &dyn Keys {
        &*self.0.keys
    }

    /// The failure throttles (logins, TOTP codes, unseal attempts).
    pub fn throttles(&self) -> &throttle::Throttles {
        &self.0.throttles
    }

    /// The actor of an entry in `log`. The token id is recorded as its
    /// HMAC under the log's audit key: correlatable within the log, useless
    /// outside it (absent while sealed, when the key is not in memory).
    pub(crate) fn actor(
        &self,
        meta: &RequestMeta,
        who: Option<&Authenticated>,
        log: &str,
    ) -> Actor {
        Actor {
            principal: who.map_or_else(|| "anonymous".to_owned(), |a| a.principal.id.clone()),
            method: who.map_or("none", |a| a.method.as_str()),
            token_id: who.and_then(|a| self.0.keys.audit_mac(log, a.token_id.as_bytes())),
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }

    /// While sealed, authenticated operations are refused: nothing changes
    /// identity or authorization data while no checkpoint can be signed and
    /// token ids cannot be keyed. Only [`Pipeline::run_public`] (init,
    /// unseal) works.
    fn refuse_while_sealed(&self) -> Result<(), Error> {
        if self.0.keys.is_sealed() {
            return Err(Error::sealed());
        }
        Ok(())
    }

    /// Step 1: turns the presented credential into a [`Caller`] allowed to
    /// run the `declared` actions (the entry point's declaration; running
    /// any other action fails). Every failure is audited in the system log
    /// and answered `unauthenticated` with the reason (unknown, expired or
    /// revoked credential, disabled principal); the reason names nothing
    /// but the presented credential.
    pub async fn authenticate(
        &self,
        meta: RequestMeta,
        declared: &'static [Action],
    ) -> Result<Caller, Error> {
        let refusal = match &meta.credential {
            Credential::None if meta.transport == Transport::Http => {
                Refusal("missing bearer token")
            }
            Credential::None => Refusal("missing credential"),
            Credential::Malformed(why) => Refusal(why),
            Credential::Bearer(token) => match self.0.identity.token(&self.0.store, token).await? {
                Ok(who) => {
                    return Ok(Caller {
                        meta,
                        who,
                        declared,
                    });
                }
                Err(refusal) => refusal,
            },
            Credential::SshKey { fingerprint, mfa } => {
                match self
                    .0
                    .identity
                    .ssh_key(&self.0.store, fingerprint, *mfa)
                    .await?
                {
                    Ok(who) => {
                        return Ok(Caller {
                            meta,
                            who,
                            declared,
                        });
                    }
                    Err(refusal) => refusal,
                }
            }
        };
        let Refusal(reason) = refusal;
        let kind = match meta.credential {
            Credential::SshKey { .. } => "ssh-key",
            _ => "token",
        };
        self.record_failure(&meta, "auth.login", None, Target::credential(kind), reason)
            .await?;
        Err(Error::unauthenticated(reason))
    }

    /// Authenticates `caller`'s credential again, from what storage says
    /// now, with the same declared actions: for front-ends whose connection
    /// outlives one operation (an SSH connection opens sessions for hours),
    /// before each operation. The credential must still name the same
    /// principal.
    pub async fn reauthenticate(&self, caller: &Caller) -> Result<Caller, Error> {
        let fresh = self
            .authenticate(caller.meta.clone(), caller.declared)
            .await?;
        if fresh.who.principal.id != caller.who.principal.id {
            return Err(Error::unauthenticated(
                "the credential names another principal now",
            ));
        }
        Ok(fresh)
    }

    /// Runs an authorized, audited operation for an authenticated caller:
    /// the intent is durable before the operation starts. Use this for
    /// anything with effects outside the database (sealing drops keys from
    /// memory; a shell session starts a process).
    pub async fn run<T, E, F, Fut>(
        &self,
        caller: &Caller,
        operation: Operation,
        op: F,
    ) -> Result<T, E>
    where
        E: OpError,
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let op = |permit| async move { op(permit).await.map(|t| (t, None)) };
        self.run_with(caller, operation, op, Effects::Anywhere)
            .await
    }

    /// [`Pipeline::run`] for operations whose only effects are storage
    /// writes and their answer: the intent is written while the operation
    /// runs. Its writes queue behind the intent in the group-commit writer
    /// and are refused if the intent is not recorded (or commit atomically
    /// with it), and the answer is released only once the intent is
    /// durable.
    pub async fn run_stored<T, E, F, Fut>(
        &self,
        caller: &Caller,
        operation: Operation,
        op: F,
    ) -> Result<T, E>
    where
        E: OpError,
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let op = |permit| async move { op(permit).await.map(|t| (t, None)) };
        self.run_with(caller, operation, op, Effects::StorageOnly)
            .await
    }

    /// [`Pipeline::run_stored`] for a read whose outcome entry must name
    /// exactly what it served (a service's secrets, each as
    /// `NAME:VERSION@SCOPE`): the operation answers with those names, which
    /// replace the intent's target names in the outcome entry.
    pub async fn run_stored_naming<T, E, F, Fut>(
        &self,
        caller: &Caller,
        operation: Operation,
        op: F,
    ) -> Result<T, E>
    where
        E: OpError,
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<(T, Vec<String>), E>>,
    {
        self.run_with(
            caller,
            operation,
            |permit| async move { op(permit).await.map(|(t, names)| (t, Some(names))) },
            Effects::StorageOnly,
        )
        .await
    }

    /// The resource for `scope` (with its environment's mode) and the log
    /// its events go to. An organization's log exists with the
    /// organization; anything aimed at one that does not exist is recorded
    /// in the system log.
    /// Whether `caller` may do `action` on `scope` now, recording nothing:
    /// for filtering what a listing offers (a menu of shell targets). The
    /// action itself still runs through [`Pipeline::run_session`] or
    /// [`Pipeline::run`], decided and audited then.
    pub async fn allows(
        &self,
        caller: &Caller,
        action: Action,
        scope: &ScopePath,
    ) -> Result<bool, Error> {
        let (resource, _) = self.resource_and_log(Scope::Path(scope.clone())).await?;
        Ok(authorize(&caller.who.principal, action, &resource).is_allow())
    }

    async fn resource_and_log(&self, scope: Scope) -> Result<(Resource, String), Error> {
        let resource = self.0.identity.resource(&self.0.store, scope).await?;
        let log = match &resource.scope {
            Scope::Path(p) if !self.0.identity.org_exists(&self.0.store, p.org()).await? => {
                SYSTEM_LOG.to_owned()
            }
            scope => log_for(scope),
        };
        Ok((resource, log))
    }

    async fn run_with<T, E, F, Fut>(
        &self,
        caller: &Caller,
        operation: Operation,
        op: F,
        effects: Effects,
    ) -> Result<T, E>
    where
        E: OpError,
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<(T, Option<Vec<String>>), E>>,
    {
        let (mut event, permit, mut intent) = self.admit(caller, operation).await?;
        let result = match effects {
            Effects::Anywhere => {
                intent
                    .durable()
                    .await
                    .map_err(|_| Error::audit_unavailable())?;
                op(permit).await
            }
            Effects::StorageOnly => {
                let result = warden_store::after_intent(intent.ticket(), op(permit)).await;
                // Nothing leaves before the intent is durable: not the
                // answer (nor any value in it), and no write.
                intent
                    .durable()
                    .await
                    .map_err(|_| Error::audit_unavailable())?;
                result
            }
        };
        let result = result.map(|(answer, names)| {
            if let Some(names) = names {
                event.target.names = Some(names);
            }
            answer
        });
        self.0.audit.outcome(intent, &event, status_of(&result));
        result
    }

    /// Steps 2 and 3: decides `action` on `scope` for the caller; a denial
    /// is recorded durably and returned; an allow's intent is queued and
    /// returned with the permit minted for it.
    async fn admit(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(Event, Permit, Intent), Error> {
        let Operation {
            name,
            action,
            scope,
            target,
        } = operation;
        self.refuse_while_sealed()?;
        if !caller.declared.contains(&action) {
            // The entry point runs an action it did not declare: a bug, and
            // one that must never run.
            tracing::error!(
                action = action.as_str(),
                declared = ?caller.declared,
                "operation refused: its entry point does not declare this action"
            );
            return Err(Error::internal());
        }
        let who = &caller.who;
        let (resource, log) = self.resource_and_log(scope).await?;
        let mut event = Event {
            op_id: self.0.audit.op_id(),
            actor: self.actor(&caller.meta, Some(who), &log),
            log,
            action: name.to_owned(),
            permission: Some(action.as_str()),
            target,
            decision: None,
            session: None,
            count: None,
        };
        match authorize(&who.principal, action, &resource) {
            Decision::Deny(denial) => {
                event.decision = Some(DecisionRecord {
                    effect: "deny",
                    rule: denial
                        .explicit
                        .as_ref()
                        .map_or_else(|| denial.reason.clone(), ToString::to_string),
                });
                // Across tenants a denial is indistinguishable from absence:
                // a caller with no binding in the organization learns nothing
                // about what exists there.
                let hidden = match &resource.scope {
                    Scope::Path(p) if !who.principal.has_binding_in_org(p.org()) => Some(p),
                    _ => None,
                };
                let status = if hidden.is_some() {
                    "not_found"
                } else {
                    "forbidden"
                };
                self.0
                    .audit
                    .record(&event, status)
                    .await
                    .map_err(|_| Error::audit_unavailable())?;
                Err(match hidden {
                    Some(p) => Error::not_found(format!("{} {p} not found", p.kind().as_str())),
                    None => Error::forbidden(denial.reason),
                })
            }
            Decision::Allow(allowed) => {
                event.decision = Some(DecisionRecord {
                    effect: "allow",
                    rule: allowed.rule(),
                });
                let intent = self
                    .0
                    .audit
                    .queue_intent(&event)
                    .map_err(|_| Error::audit_unavailable())?;
                let permit = Permit::mint(&allowed, event.op_id.clone());
                Ok((event, permit, intent))
            }
        }
    }

    /// Break-glass: runs `action` on `scope` for a caller holding the
    /// built-in Owner role at `/`, even where deny rules would refuse it
    /// (a root Owner must always keep a way to manage bindings). Anyone
    /// else gets `forbidden`. The intent is recorded durably first, as
    /// operation `OPERATION.break-glass`, so the override is visible in
    /// the audit log.
    pub async fn run_break_glass<T, E, F, Fut>(
        &self,
        caller: &Caller,
        operation: Operation,
        op: F,
    ) -> Result<T, E>
    where
        E: OpError,
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Operation {
            name,
            action,
            scope,
            target,
        } = operation;
        self.refuse_while_sealed()?;
        if !caller.declared.contains(&action) {
            tracing::error!(
                action = action.as_str(),
                "break-glass for an undeclared action"
            );
            return Err(Error::internal().into());
        }
        let who = &caller.who;
        let (_, log) = self.resource_and_log(scope.clone()).await?;
        let mut event = Event {
            op_id: self.0.audit.op_id(),
            actor: self.actor(&caller.meta, Some(who), &log),
            log,
            action: format!("{name}.break-glass"),
            permission: Some(action.as_str()),
            target,
            decision: None,
            session: None,
            count: None,
        };
        if !warden_policies::is_root_owner(&who.principal.bindings) {
            event.decision = Some(DecisionRecord {
                effect: "deny",
                rule: "break-glass is for root Owners".to_owned(),
            });
            self.0
                .audit
                .record(&event, "forbidden")
                .await
                .map_err(|_| Error::audit_unavailable())?;
            return Err(Error::forbidden(
                "break-glass is only for principals holding the built-in owner role at /",
            )
            .into());
        }
        event.decision = Some(DecisionRecord {
            effect: "allow",
            rule: "break-glass: owner@/".to_owned(),
        });
        let mut intent = self
            .0
            .audit
            .queue_intent(&event)
            .map_err(|_| Error::audit_unavailable())?;
        intent
            .durable()
            .await
            .map_err(|_| Error::audit_unavailable())?;
        let permit = Permit::break_glass(&who.principal.id, action, scope, event.op_id.clone());
        let result = op(permit).await;
        self.0.audit.outcome(intent, &event, status_of(&result));
        result
    }

    /// Records a refusal the front-end decided before or around the
    /// pipeline's own decision (a principal hidden in another tenant, a
    /// credential that may not do this) as a denial in the system log, and
    /// returns `error` (or `audit_unavailable` if it cannot be recorded).
    /// Every refusal is audited, including the ones answered "not found".
    pub async fn refuse(
        &self,
        caller: &Caller,
        operation: &str,
        target: Target,
        error: Error,
    ) -> Error {
        let event = Event {
            op_id: self.0.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor: self.actor(&caller.meta, Some(&caller.who), SYSTEM_LOG),
            action: operation.to_owned(),
            permission: None,
            target,
            decision: Some(DecisionRecord {
                effect: "deny",
                rule: error.message().to_owned(),
            }),
            session: None,
            count: None,
        };
        match self.0.audit.record(&event, error.code()).await {
            Ok(()) => error,
            Err(_) => Error::audit_unavailable(),
        }
    }

    /// Starts a session-long operation (a shell, a log follow, a rotation
    /// watch): authorizes `action` on `scope` once, records the intent
    /// durably, and returns a [`SessionGrant`] that stays live only while
    /// the caller's authority lasts. It ends, on every replica, when a
    /// binding is revoked or a role changed so the action is no longer
    /// allowed, the principal is disabled, the credential is revoked or
    /// expires, the vault is sealed, or the change feed that reports all of
    /// this is lost (fail closed).
    pub async fn run_session(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<SessionGrant, Error> {
        let (event, permit, mut intent) = self.admit(caller, operation).await?;
        intent
            .durable()
            .await
            .map_err(|_| Error::audit_unavailable())?;
        Ok(session::start(self.clone(), caller, event, intent, permit))
    }

    /// Runs an operation a caller performs on its own identity (whoami, its
    /// own tokens, password, MFA and SSH keys): no role is needed, but the
    /// intent is durable before it runs and the outcome is appended after,
    /// in the system log.
    pub async fn run_self<T, E, Fut>(&self, caller: &Caller, action: &str, op: Fut) -> Result<T, E>
    where
        E: OpError,
        Fut: Future<Output = Result<T, E>>,
    {
        self.refuse_while_sealed()?;
        let event = Event {
            op_id: self.0.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor: self.actor(&caller.meta, Some(&caller.who), SYSTEM_LOG),
            action: action.to_owned(),
            permission: None,
            target: Target::principal(caller.id()),
            session: None,
            count: None,
            decision: Some(DecisionRecord {
                effect: "allow",
                rule: "self-service".to_owned(),
            }),
        };
        let intent = self
            .0
            .audit
            .intent(&event)
            .await
            .map_err(|_| Error::audit_unavailable())?;
        let result = op.await;
        self.0.audit.outcome(intent, &event, status_of(&result));
        result
    }

    /// Runs an unauthenticated operation (init, unseal, login), still
    /// audited before and after, in the system log.
    ///
    /// `claimed` is the principal a login names (not yet authenticated) and
    /// the method it tries (`password`, `password+totp`); it is recorded so
    /// logins against an account, failed or not, are visible with their
    /// second factor.
    pub async fn run_public<T, E, Fut>(
        &self,
        meta: &RequestMeta,
        action: &str,
        claimed: Option<(&str, &'static str)>,
        op: Fut,
    ) -> Result<T, E>
    where
        E: OpError,
        Fut: Future<Output = Result<T, E>>,
    {
        let target = claimed.map_or_else(Target::vault, |c| Target::principal(c.0));
        self.run_public_on(meta, action, claimed, target, op).await
    }

    /// [`Pipeline::run_public`] acting on `target` (an exchange of a
    /// credential Warden did not issue, such as a Kubernetes
    /// service-account token, for one of a service: the entry names the
    /// account it proved and the pod).
    pub async fn run_public_on<T, E, Fut>(
        &self,
        meta: &RequestMeta,
        action: &str,
        claimed: Option<(&str, &'static str)>,
        target: Target,
        op: Fut,
    ) -> Result<T, E>
    where
        E: OpError,
        Fut: Future<Output = Result<T, E>>,
    {
        let event = self.system_event(self.anonymous(meta, claimed), action, target);
        let intent = self
            .0
            .audit
            .intent(&event)
            .await
            .map_err(|_| Error::audit_unavailable())?;
        let result = op.await;
        self.0.audit.outcome(intent, &event, status_of(&result));
        result
    }
}
