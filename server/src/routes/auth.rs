//! What a caller does to its own identity: whoami, login, password and
//! MFA.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use warden_api::*;

use super::*;
use crate::ApiError;
use crate::caller::{Caller, Meta};
use crate::state::App;
use warden_identity::totp::TotpSecret;
use warden_pipeline::Target;
use warden_pipeline::identity::{self, Method, SESSION_TTL_MS, TOTP_PURPOSE, user_id};
use warden_pipeline::throttle::{self, Throttle, WorkQueue, retry_secs};
use warden_store::PrincipalRow;
use zeroize::Zeroizing;

use super::bindings::binding_info;
use super::users::{token_created, user_info};

/// Password hashing is deliberately expensive: off the async workers, at
/// most two at a time, and at most eight more waiting; past that, callers
/// are refused at once (a flood cannot queue work without bound).
static KDF: WorkQueue = WorkQueue::new(2, 8);

fn kdf_busy() -> ApiError {
    warden_pipeline::Error::rate_limited(1, "too many password checks in progress; retry shortly")
        .into()
}

/// What a stored password is sealed for (with the account as subject).
const PASSWORD_PURPOSE: &str = "password";

/// Hashes `password` for `account` (Argon2id) and seals the PHC string
/// under the root key, bound to the account: a database reader cannot run
/// offline guesses against it, nor move it to another account. Returns
/// the stored form (hex).
pub(super) async fn hash_password(
    app: &App,
    account: &str,
    password: String,
) -> Result<String, ApiError> {
    warden_identity::password::check_password_policy(&password)
        .map_err(|e| ApiError::invalid(e.to_string()).field("password"))?;
    let _slot = KDF.enter().await.map_err(|_| kdf_busy())?;
    let phc = Zeroizing::new(
        tokio::task::spawn_blocking(move || warden_identity::password::hash_password(&password))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|_| ApiError::internal())?,
    );
    let sealed = app
        .vault
        .seal_credential(PASSWORD_PURPOSE, account, phc.as_bytes())?;
    Ok(hex::encode(sealed))
}

/// The PHC string of a stored password of `account`. A stored value that
/// does not open (altered, or moved from another account) is an integrity
/// failure, not a wrong password.
fn open_password(app: &App, account: &str, stored: &str) -> Result<Zeroizing<String>, ApiError> {
    let sealed = hex::decode(stored).map_err(|_| ApiError::internal())?;
    let phc = app
        .vault
        .open_credential(PASSWORD_PURPOSE, account, &sealed)?;
    let phc = std::str::from_utf8(&phc).map_err(|_| ApiError::internal())?;
    Ok(Zeroizing::new(phc.to_owned()))
}

/// Verifies `password` in a KDF slot (`slot`, taken by the caller, or the
/// next free one).
async fn verify_password(
    phc: Option<Zeroizing<String>>,
    password: String,
    slot: Option<tokio::sync::SemaphorePermit<'static>>,
) -> Result<bool, ApiError> {
    let _slot = match slot {
        Some(s) => s,
        None => KDF.enter().await.map_err(|_| kdf_busy())?,
    };
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => warden_identity::password::verify_password(&phc, &password),
        // As slow as a wrong password, so absent accounts do not show.
        None => warden_identity::password::verify_password_dummy(&password),
    })
    .await
    .map_err(|_| ApiError::internal())
}

/// Refuses while `key` is locked by `throttle` (429 with Retry-After).
fn throttled(throttle: &Throttle, key: &str, what: &str) -> Result<(), ApiError> {
    throttle.check(key).map_err(|wait| {
        warden_pipeline::Error::rate_limited(
            retry_secs(wait),
            format!("too many failed {what}; retry in {} s", retry_secs(wait)),
        )
        .into()
    })
}

/// The throttle key of `account` tried from `network`.
fn account_key(account: &str, network: Option<&str>) -> String {
    format!("{account} {}", network.unwrap_or_default())
}

/// Refuses while any login throttle holds `account` or `network` (429 with
/// Retry-After).
fn login_locked(app: &App, account: &str, network: Option<&str>) -> Result<(), ApiError> {
    let t = app.pipeline.throttles();
    throttled(
        &t.login_account,
        &account_key(account, network),
        "password attempts for this account from your network",
    )?;
    throttled(
        &t.login_account_total,
        account,
        "password attempts for this account",
    )?;
    if let Some(n) = network {
        throttled(&t.login_source, n, "logins from your network")?;
    }
    Ok(())
}

/// Checks `password` against the account's stored one (`stored`; none
/// costs the same time) in a KDF slot (`slot`, or the next free one),
/// after the login throttles, recording the result in them.
async fn check_password(
    app: &App,
    account: &str,
    network: Option<&str>,
    stored: Option<&str>,
    password: &str,
    slot: Option<tokio::sync::SemaphorePermit<'static>>,
) -> Result<bool, ApiError> {
    login_locked(app, account, network)?;
    let phc = stored.map(|s| open_password(app, account, s)).transpose()?;
    let ok = verify_password(phc, password.to_owned(), slot).await?;
    let t = app.pipeline.throttles();
    let key = account_key(account, network);
    if ok {
        t.login_account.success(&key);
        t.login_account_total.success(account);
    } else {
        t.login_account.failure(&key);
        t.login_account_total.failure(account);
        if let Some(n) = network {
            t.login_source.failure(n);
        }
    }
    Ok(ok)
}

/// Checks a TOTP code for `row` and consumes its time step (a code works
/// once). With `enable`, confirms the enrolment. Failures are throttled
/// under `throttle_key`: the account for logins (which need the password
/// first); the account and the key for SSH, so a leaked key cannot lock
/// its owner's other logins out.
pub(crate) async fn check_totp(
    app: &App,
    row: &PrincipalRow,
    code: &str,
    enable: bool,
    throttle_key: &str,
) -> Result<bool, ApiError> {
    let throttle = &app.pipeline.throttles().totp_account;
    throttled(throttle, throttle_key, "TOTP codes for this account")?;
    let sealed = row
        .totp_sealed
        .as_deref()
        .ok_or_else(|| ApiError::invalid("no TOTP enrolment; run `warden mfa enroll` first"))?;
    // Secrets enrolled before members' ids carried their organization
    // (migration 0006) are sealed under the id as it was then.
    let raw = match app.vault.open_credential(TOTP_PURPOSE, &row.id, sealed) {
        Err(e) if row.org.is_some() => {
            let legacy = row.id.split('@').next().unwrap_or(&row.id);
            app.vault
                .open_credential(TOTP_PURPOSE, legacy, sealed)
                .map_err(|_| e)?
        }
        opened => opened?,
    };
    let secret = TotpSecret::from_bytes(&raw).map_err(|_| ApiError::internal())?;
    let last = row.totp_last_step.and_then(|s| u64::try_from(s).ok());
    let step = warden_identity::totp::verify(&secret, code, now_secs(), last)
        .and_then(|s| i64::try_from(s).ok());
    let used = match step {
        Some(step) => app.store.use_totp_step(&row.id, step, enable).await?,
        None => false,
    };
    if used {
        throttle.success(throttle_key);
    } else {
        throttle.failure(throttle_key);
    }
    Ok(used)
}

pub(super) async fn whoami(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<WhoAmI>, ApiError> {
    let who = caller.who();
    app.pipeline
        .run_self(&caller, "auth.whoami", async {
            Ok(Json(WhoAmI {
                principal: who.principal.id.clone(),
                method: who.method.as_str().to_owned(),
                token_id: who.token_id.clone(),
                mfa: who.principal.mfa,
                bindings: who
                    .principal
                    .bindings
                    .iter()
                    .map(|b| binding_info(&who.principal.id, b))
                    .collect(),
            }))
        })
        .await
}

pub(super) async fn login(
    State(app): State<AppState>,
    meta: Meta,
    Body(req): Body<LoginRequest, PUBLIC_BODY_LIMIT>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let id = user_id(&req.user);
    if warden_pipeline::identity::parse_principal(&id).is_err() {
        return Err(
            ApiError::invalid("user is NAME, or NAME@ORG for a member of an organization")
                .field("user"),
        );
    }
    let app: &App = &app;
    let method = if req.totp.is_some() {
        "password+totp"
    } else {
        "password"
    };
    // A locked account or network is refused before anything else, and so
    // is a login finding the password checks full (which counts against
    // its network); a flood of either is counted rather than logged one by
    // one.
    let network = meta.0.source_ip.as_deref().map(throttle::network);
    let network = network.as_deref();
    let refusal = match login_locked(app, &id, network) {
        Err(e) => Some((e, "rate_limited")),
        Ok(()) => None,
    };
    // One password check at a time per account, two per network, then a
    // place in the shared queue; past any of them the login is refused
    // (and counts against its network).
    let mut claims = vec![(format!("account {id}"), 1)];
    claims.extend(network.map(|n| (format!("network {n}"), 2)));
    let turn = match refusal {
        Some(_) => None,
        None => app.pipeline.throttles().password_checks.claim(&claims),
    };
    let slot = match turn {
        Some(_) => KDF.enter().await.ok(),
        None => None,
    };
    if refusal.is_none()
        && slot.is_none()
        && let Some(n) = network
    {
        app.pipeline.throttles().login_source.failure(n);
    }
    if let Some((e, status)) = refusal.or_else(|| slot.is_none().then(|| (kdf_busy(), "busy"))) {
        app.pipeline
            .record_failure(
                &meta.0,
                "auth.login",
                Some((&id, method)),
                Target::principal(&id),
                status,
            )
            .await?;
        return Err(e);
    }
    app.pipeline
        .run_public(&meta.0, "auth.login", Some((&id, method)), async {
            let refused = || ApiError::unauthenticated("invalid user name or password");
            let row = app.store.principal(&id).await?;
            let stored = row
                .as_ref()
                .filter(|r| r.disabled_at.is_none())
                .and_then(|r| r.password.as_deref());
            let password = req.password.0.expose();
            let ok = check_password(app, &id, network, stored, password, slot).await?;
            let Some(row) = row.filter(|_| ok) else {
                return Err(refused());
            };
            let mfa = row.totp_enabled != 0;
            if mfa {
                let code = req.totp.as_deref().ok_or_else(|| {
                    ApiError::unauthenticated("this account requires a TOTP code (`--totp`)")
                })?;
                if !check_totp(app, &row, code, false, &row.id).await? {
                    return Err(ApiError::unauthenticated(
                        "invalid or already used TOTP code; wait for the next one",
                    ));
                }
            }
            let expires = warden_store::now_ms() + SESSION_TTL_MS;
            let (token, row) = identity::create_token(
                &app.store,
                &id,
                "login session",
                "session",
                mfa,
                Some(expires),
            )
            .await?;
            token_created(&token, row)
        })
        .await
}

/// The caller's own principal row; only users and service accounts have one.
pub(super) async fn own_row(app: &App, caller: &Caller) -> Result<PrincipalRow, ApiError> {
    app.store
        .principal(caller.id())
        .await?
        .ok_or_else(|| ApiError::invalid("workload principals have no account"))
}

pub(super) fn require_user(caller: &Caller) -> Result<(), ApiError> {
    if caller.id().starts_with("user:") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "only users (not service accounts or workloads) have passwords and MFA",
        ))
    }
}

/// Changing a credential needs more than the token in hand: the current
/// password when the account has one, unless the session was opened with
/// MFA (a stolen API token alone cannot take the account over).
async fn require_current_password(
    app: &App,
    caller: &Caller,
    row: &PrincipalRow,
    current: Option<&WireValue>,
) -> Result<(), ApiError> {
    if caller.who().method == Method::SessionMfa || row.password.is_none() {
        return Ok(());
    }
    let Some(current) = current else {
        return Err(ApiError::forbidden(
            "this needs your current password (`current_password`), or an MFA session",
        )
        .field("current_password"));
    };
    let network = caller.meta().source_ip.as_deref().map(throttle::network);
    if check_password(
        app,
        &row.id,
        network.as_deref(),
        row.password.as_deref(),
        current.0.expose(),
        None,
    )
    .await?
    {
        Ok(())
    } else {
        Err(ApiError::forbidden("the current password is wrong").field("current_password"))
    }
}

pub(super) async fn mfa_enroll(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<MfaEnrollRequest>,
) -> Result<Json<MfaEnrollment>, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.pipeline.run_self(&caller, "auth.mfa.enroll", async {
        let row = own_row(app, &caller).await?;
        if row.totp_enabled != 0 && caller.who().method != Method::SessionMfa {
            return Err(ApiError::forbidden(
                "MFA is enrolled already; replacing it needs an MFA session (`warden login --totp`)",
            ));
        }
        require_current_password(app, &caller, &row, req.current_password.as_ref()).await?;
        let secret = TotpSecret::try_generate().map_err(|_| ApiError::internal())?;
        let sealed = app
            .vault
            .seal_credential(TOTP_PURPOSE, &row.id, secret.as_bytes())?;
        app.store.set_totp(&row.id, sealed).await?;
        let account = row.id.trim_start_matches("user:");
        Ok(Json(MfaEnrollment {
            secret: wire(&secret.base32())?,
            otpauth_uri: wire(&secret.otpauth_uri("Warden", account))?,
        }))
    })
    .await
}

pub(super) async fn mfa_confirm(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<MfaCode>,
) -> Result<Json<UserInfo>, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "auth.mfa.confirm", async {
            let row = own_row(app, &caller).await?;
            if !check_totp(app, &row, &req.code, true, &row.id).await? {
                return Err(ApiError::invalid("invalid or already used TOTP code").field("code"));
            }
            let row = own_row(app, &caller).await?;
            Ok(Json(user_info(&row)))
        })
        .await
}

/// Lifetime of a step-up token (`POST /api/v1/auth/mfa/step-up`).
const STEP_UP_TTL_MS: i64 = 15 * 60 * 1000;

/// Exchanges the caller's login session and a current TOTP code for a
/// short-lived MFA token of the same user: how `kubectl` (through `warden
/// kube-credential --mfa`) gets MFA sessions. Users only, from a password
/// login (not an API token, which would make a stolen token and one
/// phished code an MFA session), with TOTP enrolled; codes are checked as
/// at login and throttled per account and source token (so a leaked
/// session cannot lock its owner's logins out). The token it mints
/// satisfies roles' `mfa` conditions, not the password login that account
/// changes need, and does not outlive its source.
pub(super) async fn mfa_step_up(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<MfaCode>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "auth.mfa.step_up", async {
            let who = caller.who();
            if !matches!(who.method, Method::Session | Method::SessionMfa) {
                return Err(ApiError::forbidden(
                    "a step-up needs a login session (`warden login`), not an API or step-up token",
                ));
            }
            if req.code.len() > 16 {
                return Err(ApiError::invalid("a TOTP code has 6 to 8 digits").field("code"));
            }
            let row = own_row(app, &caller).await?;
            if row.totp_enabled == 0 {
                return Err(ApiError::invalid(
                    "no TOTP enrolment; run `warden mfa enroll` first",
                ));
            }
            let throttle_key = format!("{} {}", row.id, who.token_id);
            if !check_totp(app, &row, &req.code, false, &throttle_key).await? {
                return Err(ApiError::unauthenticated(
                    "invalid or already used TOTP code; wait for the next one",
                ));
            }
            let expires = (warden_store::now_ms() + STEP_UP_TTL_MS)
                .min(who.expires_at_ms.unwrap_or(i64::MAX));
            let (token, row) = identity::create_token(
                &app.store,
                caller.id(),
                "mfa step-up",
                "step-up",
                true,
                Some(expires),
            )
            .await?;
            token_created(&token, row)
        })
        .await
}

pub(super) async fn set_password(
    State(app): State<AppState>,
    caller: Caller,
    Body(req): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    require_user(&caller)?;
    let app: &App = &app;
    app.pipeline
        .run_self(&caller, "auth.password", async {
            let row = own_row(app, &caller).await?;
            require_current_password(app, &caller, &row, req.current_password.as_ref()).await?;
            let phc = hash_password(app, caller.id(), req.password.0.expose().to_owned()).await?;
            // Every other login session of the account ends with the change.
            let keep =
                (caller.who().method != Method::Token).then_some(caller.who().token_id.as_str());
            app.store.set_password(caller.id(), phc, keep).await?;
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}
