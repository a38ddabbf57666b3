//! The request pipeline. Every operation, whatever its entry point, runs
//! these four steps, in this order, here:
//!
//! 1. **Authenticate**: the bearer token becomes a [`Principal`](warden_policies::Principal), or 401.
//!    This runs as the [`Caller`] extractor, before any body, path or query
//!    is parsed, so an anonymous caller learns nothing about validation.
//! 2. **Authorize**: [`warden_policies::authorize`] returns a [`Permit`] or a
//!    denial (403). Denials are audited durably before answering.
//! 3. **Audit**: the intent is appended durably; if that fails, the
//!    operation has no effect and the caller gets 503. For operations whose
//!    effects are storage writes, the intent is committed while the
//!    operation runs, ahead of (or atomically with) its writes; see
//!    [`App::run_stored`].
//! 4. **Execute** with the permit, then append the outcome.
//!
//! Public operations (init, unseal) skip steps 1-2 but not 3.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use warden_audit::{Actor, DecisionRecord, Event, SYSTEM_LOG};
use warden_policies::{Action, Decision, Permit, Scope, authorize};

use crate::ApiError;
use crate::identity::{Authenticated, Refusal};
use crate::state::App;

/// Longest bearer credential accepted (a workload JWT is about 450 bytes;
/// the identity crate refuses JWTs over 8 KiB).
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// What the pipeline needs from an HTTP request (any entry point can build
/// one).
#[derive(Debug, Clone)]
pub struct RequestMeta {
    credential: Credential,
    source_ip: Option<String>,
    user_agent: Option<String>,
}

/// What the caller presented.
#[derive(Debug, Clone)]
enum Credential {
    None,
    Bearer(String),
    /// An Authorization header that is not `Bearer TOKEN` (audited as a
    /// failed login like any other).
    Malformed,
}

impl RequestMeta {
    /// Metadata for a non-HTTP entry point.
    pub fn new(token: Option<String>, source_ip: Option<String>) -> Self {
        Self {
            credential: token.map_or(Credential::None, Credential::Bearer),
            source_ip,
            user_agent: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let credential = match header("authorization") {
            None => Credential::None,
            Some(h) => h
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= MAX_CREDENTIAL_BYTES)
                .map_or(Credential::Malformed, |t| Credential::Bearer(t.to_owned())),
        };
        Ok(Self {
            credential,
            source_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
            user_agent: header("user-agent").map(|u| u.chars().take(128).collect()),
        })
    }
}

/// Where an event about `scope` is logged.
fn log_for(scope: &Scope) -> String {
    match scope {
        Scope::Root => SYSTEM_LOG.to_owned(),
        Scope::Path(p) => p.org().to_owned(),
    }
}

fn status_of<T>(result: &Result<T, ApiError>) -> &'static str {
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

/// An authenticated caller (step 1 of the pipeline, as an extractor).
pub struct Caller {
    meta: RequestMeta,
    who: Authenticated,
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
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let meta = RequestMeta::from_request_parts(parts, app).await?;
        let who = app.authenticate(&meta).await?;
        Ok(Self { meta, who })
    }
}

impl App {
    /// The actor of an entry in `log`. The token id is recorded as its
    /// HMAC under the log's audit key: correlatable within the log, useless
    /// outside it (absent while sealed, when the key is not in memory).
    fn actor(&self, meta: &RequestMeta, who: Option<&Authenticated>, log: &str) -> Actor {
        Actor {
            principal: who.map_or_else(|| "anonymous".to_owned(), |a| a.principal.id.clone()),
            method: who.map_or("none", |a| a.method.as_str()),
            token_id: who.and_then(|a| self.vault.audit_mac(log, a.token_id.as_bytes())),
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
        }
    }

    /// While sealed, authenticated operations are refused (503): nothing
    /// changes identity or authorization data while no checkpoint can be
    /// signed and token ids cannot be keyed. Only `run_public` (init,
    /// unseal) works.
    fn refuse_while_sealed(&self) -> Result<(), ApiError> {
        if self.vault.is_sealed() {
            return Err(warden_vault::VaultError::Sealed.into());
        }
        Ok(())
    }

    /// Step 1. Every failure is audited in the system log and answered
    /// 401 with the reason (unknown, expired or revoked token, disabled
    /// principal); the reason names nothing but the presented credential.
    async fn authenticate(&self, meta: &RequestMeta) -> Result<Authenticated, ApiError> {
        let Refusal(reason) = match &meta.credential {
            Credential::None => Refusal("missing bearer token"),
            Credential::Malformed => Refusal("malformed Authorization header"),
            Credential::Bearer(token) => match self.identity.token(&self.store, token).await? {
                Ok(who) => return Ok(who),
                Err(refusal) => refusal,
            },
        };
        let event = Event {
            op_id: self.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor: self.actor(meta, None, SYSTEM_LOG),
            action: "auth.login".to_owned(),
            target: "token".to_owned(),
            decision: None,
        };
        self.audit
            .record(&event, reason)
            .await
            .map_err(|_| ApiError::audit_unavailable())?;
        Err(ApiError::unauthenticated(format!(
            "{reason}: send `Authorization: Bearer TOKEN` with a valid token"
        )))
    }

    /// Runs an authorized, audited operation for an authenticated caller:
    /// the intent is durable before the operation starts. Use this for
    /// anything with effects outside the database (sealing drops keys from
    /// memory; a shell session starts a process).
    pub async fn run<T, F, Fut>(
        &self,
        caller: &Caller,
        action: Action,
        scope: Scope,
        target: String,
        op: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.run_with(caller, action, scope, target, op, Effects::Anywhere)
            .await
    }

    /// [`App::run`] for operations whose only effects are storage writes and
    /// their answer: the intent is written while the operation runs. Its
    /// writes queue behind the intent in the group-commit writer and are
    /// refused if the intent is not recorded (or commit atomically with
    /// it), and the answer is released only once the intent is durable.
    pub async fn run_stored<T, F, Fut>(
        &self,
        caller: &Caller,
        action: Action,
        scope: Scope,
        target: String,
        op: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.run_with(caller, action, scope, target, op, Effects::StorageOnly)
            .await
    }

    async fn run_with<T, F, Fut>(
        &self,
        caller: &Caller,
        action: Action,
        scope: Scope,
        target: String,
        op: F,
        effects: Effects,
    ) -> Result<T, ApiError>
    where
        F: FnOnce(Permit) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.refuse_while_sealed()?;
        let who = &caller.who;
        let resource = self.identity.resource(&self.store, scope).await?;
        // An organization's log exists with the organization; anything
        // aimed at one that does not exist is recorded in the system log.
        let log = match &resource.scope {
            Scope::Path(p) if !self.identity.org_exists(&self.store, p.org()).await? => {
                SYSTEM_LOG.to_owned()
            }
            scope => log_for(scope),
        };
        let mut event = Event {
            op_id: self.audit.op_id(),
            actor: self.actor(&caller.meta, Some(who), &log),
            log,
            action: action.as_str().to_owned(),
            target,
            decision: None,
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
                self.audit
                    .record(&event, status)
                    .await
                    .map_err(|_| ApiError::audit_unavailable())?;
                Err(match hidden {
                    Some(p) => ApiError::not_found(format!("{} {p} not found", p.kind().as_str())),
                    None => ApiError::forbidden(denial.reason),
                })
            }
            Decision::Allow(permit) => {
                event.decision = Some(DecisionRecord {
                    effect: "allow",
                    rule: permit.rule().to_owned(),
                });
                let mut intent = self
                    .audit
                    .queue_intent(&event)
                    .map_err(|_| ApiError::audit_unavailable())?;
                let result = match effects {
                    Effects::Anywhere => {
                        intent
                            .durable()
                            .await
                            .map_err(|_| ApiError::audit_unavailable())?;
                        op(permit).await
                    }
                    Effects::StorageOnly => {
                        let result = warden_store::after_intent(intent.ticket(), op(permit)).await;
                        // Nothing leaves before the intent is durable: not the
                        // answer (nor any value in it), and no write.
                        intent
                            .durable()
                            .await
                            .map_err(|_| ApiError::audit_unavailable())?;
                        result
                    }
                };
                self.audit.outcome(intent, &event, status_of(&result));
                result
            }
        }
    }

    /// Runs an operation a caller performs on its own identity (whoami, its
    /// own tokens, password, MFA and SSH keys): no role is needed, but the
    /// intent is durable before it runs and the outcome is appended after,
    /// in the system log.
    pub async fn run_self<T, Fut>(
        &self,
        caller: &Caller,
        action: &str,
        op: Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.refuse_while_sealed()?;
        let event = Event {
            op_id: self.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor: self.actor(&caller.meta, Some(&caller.who), SYSTEM_LOG),
            action: action.to_owned(),
            target: caller.id().to_owned(),
            decision: Some(DecisionRecord {
                effect: "allow",
                rule: "self-service".to_owned(),
            }),
        };
        let intent = self
            .audit
            .intent(&event)
            .await
            .map_err(|_| ApiError::audit_unavailable())?;
        let result = op.await;
        self.audit.outcome(intent, &event, status_of(&result));
        result
    }

    /// Runs an unauthenticated operation (init, unseal), still audited
    /// before and after, in the system log.
    ///
    /// `claimed` is the principal a login names (not yet authenticated) and
    /// the method it tries (`password`, `password+totp`); it is recorded so
    /// logins against an account, failed or not, are visible with their
    /// second factor.
    pub async fn run_public<T, Fut>(
        &self,
        meta: &RequestMeta,
        action: &str,
        claimed: Option<(&str, &'static str)>,
        op: Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let event = Event {
            op_id: self.audit.op_id(),
            log: SYSTEM_LOG.to_owned(),
            actor: Actor {
                principal: claimed.map_or("anonymous", |c| c.0).to_owned(),
                method: claimed.map_or("none", |c| c.1),
                ..self.actor(meta, None, SYSTEM_LOG)
            },
            action: action.to_owned(),
            target: claimed.map_or("vault", |c| c.0).to_owned(),
            decision: None,
        };
        let intent = self
            .audit
            .intent(&event)
            .await
            .map_err(|_| ApiError::audit_unavailable())?;
        let result = op.await;
        self.audit.outcome(intent, &event, status_of(&result));
        result
    }
}
