//! Identity inside the pipeline: turning a credential into a
//! [`Principal`] with its role bindings (step 1), the environment mode of a
//! resource (input to step 2), and issuing API and session tokens.
//!
//! Nothing here decides anything: decisions are `warden_policies::authorize`
//! over the data assembled here, made per request. What is cached is either
//! immutable (an environment's mode, a compiled role revision, a signing
//! key's public half) or invalidated by the storage writer before a change
//! is acknowledged (tokens and bindings, on SQLite), so a revoked token or
//! binding stops working on the very next request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq;
use warden_policies::{Binding, Principal, Resource, Role, Scope, builtin_role, workload_role};
use warden_store::{GrantRow, SigningKeyRow, Store, TokenRow};
use warden_types::{EnvMode, ScopeKind, ScopePath};
use zeroize::Zeroizing;

use crate::Error;

/// How long a login session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Longest workload-token lifetime Warden issues.
pub const WORKLOAD_MAX_TTL_SECS: u64 = 3600;
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// Purpose label of TOTP secrets sealed under the root key.
pub const TOTP_PURPOSE: &str = "totp";
/// A workload signing key is replaced once it is this old.
pub const SIGNING_KEY_ROTATE_MS: i64 = 24 * 3600 * 1000;

/// How a caller authenticated (recorded in every audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An API token (`warden token create`, or the bootstrap token).
    Token,
    /// A login session (password).
    Session,
    /// A login session opened with password and TOTP.
    SessionMfa,
    /// A short-lived MFA token a login session exchanged for a TOTP code
    /// (`POST /api/v1/auth/mfa/step-up`): MFA for roles' conditions, but
    /// not the password login that account changes ask for.
    StepUp,
    /// A workload JWT.
    Workload,
    /// An SSH public key (the gateway verified possession).
    SshKey,
    /// An SSH public key and the key owner's TOTP code.
    SshKeyMfa,
}

impl Method {
    /// The spelling in audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Session => "session",
            Self::SessionMfa => "session+mfa",
            Self::StepUp => "step-up+mfa",
            Self::Workload => "workload",
            Self::SshKey => "ssh-key",
            Self::SshKeyMfa => "ssh-key+totp",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who, with the bindings in force for this request.
    pub principal: Principal,
    /// The token's public id (the JWT's `jti` for workloads).
    pub token_id: String,
    /// How.
    pub method: Method,
    /// When the credential stops working (ms since the epoch), if it
    /// expires.
    pub expires_at_ms: Option<i64>,
}

/// Why authentication failed; the message is shown to the caller.
pub struct Refusal(pub &'static str);

/// Caches and key material for identity; one per server.
#[derive(Default)]
pub struct Identity {
    /// Compiled custom roles by (org, name, revision). A revision is random
    /// per apply, so an entry never goes stale; it only goes unused.
    roles: RwLock<HashMap<(String, String, i64), Arc<Role>>>,
    /// Environment modes. A mode is fixed when the environment is created
    /// and environments are never deleted, so this is safe across replicas.
    modes: RwLock<HashMap<String, EnvMode>>,
    /// Workload signing public keys by kid, with their creation time.
    jwt_keys: RwLock<HashMap<String, ([u8; 32], i64)>>,
    /// Organizations known to exist (they are never deleted).
    orgs: RwLock<std::collections::HashSet<String>>,
}

/// Principal id of a user: `user:NAME`, where NAME is `NAME` for an
/// installation-wide user or `NAME@ORG` for a member of ORG.
pub fn user_id(name: &str) -> String {
    format!("user:{name}")
}

/// The id of a user (`kind` `user`) or service account (`sa`) named `name`,
/// homed in `org` or installation-wide. Names are unique within their home,
/// not across the installation: `user:bob@acme` and `user:bob@globex` are
/// two principals, so no tenant learns which names another one uses.
pub fn principal_id(kind: &str, name: &str, org: Option<&str>) -> String {
    match org {
        Some(org) => format!("{kind}:{name}@{org}"),
        None => format!("{kind}:{name}"),
    }
}

/// A checked principal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalId<'a> {
    /// `user`, `sa` or `workload`.
    pub kind: &'a str,
    /// The name (without its home), or the service path of a workload.
    pub name: &'a str,
    /// The organization a user or service account belongs to (`None`:
    /// installation-wide); a workload's organization.
    pub home: Option<&'a str>,
}

/// Checks the shape of a principal id: `user:NAME[@ORG]`, `sa:NAME[@ORG]`
/// (names and organizations as scope segments) or
/// `workload:ORG/PROJECT/ENV/SERVICE`.
pub fn parse_principal(id: &str) -> Result<PrincipalId<'_>, Error> {
    let bad = || {
        Error::invalid(
            "a principal is user:NAME, sa:NAME (NAME@ORG for members of an organization) \
             or workload:ORG/PROJECT/ENV/SERVICE (names are lowercase letters, digits and '-')",
        )
        .field("principal")
    };
    let segment = |s: &str| ScopePath::parse_kind(s, ScopeKind::Organization).is_ok();
    let (kind, rest) = id.split_once(':').ok_or_else(bad)?;
    match kind {
        "user" | "sa" => {
            let (name, home) = match rest.split_once('@') {
                Some((name, org)) => (name, Some(org)),
                None => (rest, None),
            };
            if !segment(name) || home.is_some_and(|o| !segment(o)) {
                return Err(bad());
            }
            Ok(PrincipalId { kind, name, home })
        }
        "workload" => {
            let path = ScopePath::parse_kind(rest, ScopeKind::Service).map_err(|_| bad())?;
            let org_len = path.org().len();
            Ok(PrincipalId {
                kind,
                name: rest,
                home: rest.get(..org_len),
            })
        }
        _ => Err(bad()),
    }
}

/// Signing keys created before this are no longer accepted: a key signs for
/// a day and its tokens live at most an hour more.
fn oldest_signing_key_ms() -> i64 {
    warden_store::now_ms()
        - SIGNING_KEY_ROTATE_MS
        - i64::try_from(WORKLOAD_MAX_TTL_SECS * 1000).unwrap_or(0)
}

fn now_secs() -> u64 {
    u64::try_from(warden_store::now_ms() / 1000).unwrap_or(0)
}

impl Identity {
    /// Authenticates an API or session token.
    pub async fn token(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Result<Authenticated, Refusal>, Error> {
        if warden_identity::token::looks_like_jwt(token) {
            return self.workload(store, token).await;
        }
        let hash = warden_identity::token::token_hash(token);
        let Some(found) = store.token_by_hash(&hash).await? else {
            return Ok(Err(Refusal("unknown token")));
        };
        // The lookup is by SHA-256 digest; confirm in constant time anyway.
        if !bool::from(found.hash.as_slice().ct_eq(&hash)) {
            return Ok(Err(Refusal("unknown token")));
        }
        let now = warden_store::now_ms();
        let t = &found.token;
        if t.revoked_at.is_some() {
            return Ok(Err(Refusal("token revoked")));
        }
        if t.expires_at.is_some_and(|e| e <= now) {
            return Ok(Err(Refusal("token expired")));
        }
        if found.principal_exists == 0 {
            return Ok(Err(Refusal("unknown token")));
        }
        if found.principal_disabled_at.is_some() {
            return Ok(Err(Refusal("principal disabled")));
        }
        if t.last_used_at.is_none_or(|u| now - u >= TOUCH_EVERY_MS) {
            let (store, id) = (store.clone(), t.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(&id).await {
                    tracing::warn!(error = %e, "could not record token use");
                }
            });
        }
        let mfa = t.mfa != 0;
        let method = match (t.kind.as_str(), mfa) {
            ("session", true) => Method::SessionMfa,
            ("session", false) => Method::Session,
            ("step-up", true) => Method::StepUp,
            _ => Method::Token,
        };
        let bindings = self.bindings(store, &t.principal).await?;
        Ok(Ok(Authenticated {
            principal: Principal {
                id: t.principal.clone(),
                bindings,
                mfa,
            },
            token_id: t.id.clone(),
            method,
            expires_at_ms: t.expires_at,
        }))
    }

    /// Authenticates an SSH public key, named by its fingerprint, whose
    /// possession the transport has verified; `mfa` when the transport also
    /// checked the owner's second factor.
    pub async fn ssh_key(
        &self,
        store: &Store,
        fingerprint: &str,
        mfa: bool,
    ) -> Result<Result<Authenticated, Refusal>, Error> {
        let Some(key) = store.ssh_key(fingerprint).await? else {
            return Ok(Err(Refusal("unknown SSH key")));
        };
        let Some(row) = store.principal(&key.principal).await? else {
            return Ok(Err(Refusal("unknown SSH key")));
        };
        if row.disabled_at.is_some() {
            return Ok(Err(Refusal("principal disabled")));
        }
        let bindings = self.bindings(store, &row.id).await?;
        Ok(Ok(Authenticated {
            principal: Principal {
                id: row.id,
                bindings,
                mfa,
            },
            token_id: key.fingerprint,
            method: if mfa {
                Method::SshKeyMfa
            } else {
                Method::SshKey
            },
            expires_at_ms: None,
        }))
    }

    /// The role bindings a principal holds now.
    pub async fn bindings(&self, store: &Store, principal: &str) -> Result<Vec<Binding>, Error> {
        let grants = store.grants(principal).await?;
        let mut out = Vec::with_capacity(grants.len());
        for g in &grants {
            match self.binding(g) {
                Some(b) => out.push(b),
                // A binding to a role that no longer parses or exists grants
                // nothing (default deny); say so to the operator.
                None => tracing::warn!(
                    principal = %g.principal, role = %g.role, scope = %g.scope,
                    "binding refers to an unknown role; it grants nothing"
                ),
            }
        }
        Ok(out)
    }

    fn binding(&self, g: &GrantRow) -> Option<Binding> {
        let scope = scope_of(&g.scope)?;
        let role = match builtin_role(&g.role) {
            Some(r) => r,
            None => self.custom_role(
                g.org.as_deref()?,
                &g.role,
                g.source.as_deref()?,
                g.revision?,
            )?,
        };
        Some(Binding { role, scope })
    }

    /// A custom role, compiled once per revision.
    pub fn custom_role(
        &self,
        org: &str,
        name: &str,
        source: &str,
        revision: i64,
    ) -> Option<Arc<Role>> {
        let key = (org.to_owned(), name.to_owned(), revision);
        if let Some(r) = self.roles.read().ok()?.get(&key) {
            return Some(r.clone());
        }
        let role = Arc::new(Role::parse(source).ok()?);
        if let Ok(mut m) = self.roles.write() {
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(key, role.clone());
        }
        Some(role)
    }

    /// The resource for `scope`, with the mode of its environment.
    pub async fn resource(&self, store: &Store, scope: Scope) -> Result<Resource, Error> {
        let mode = match &scope {
            Scope::Path(p) if matches!(p.kind(), ScopeKind::Environment | ScopeKind::Service) => {
                let env: String = p.segments().take(3).collect::<Vec<_>>().join("/");
                self.mode(store, &env).await?
            }
            _ => None,
        };
        Ok(Resource { scope, mode })
    }

    /// Whether organization `org` exists (cached once seen).
    pub async fn org_exists(&self, store: &Store, org: &str) -> Result<bool, Error> {
        if self.orgs.read().is_ok_and(|o| o.contains(org)) {
            return Ok(true);
        }
        let exists = store.scope(org).await?.is_some();
        if exists && let Ok(mut o) = self.orgs.write() {
            o.insert(org.to_owned());
        }
        Ok(exists)
    }

    async fn mode(&self, store: &Store, env: &str) -> Result<Option<EnvMode>, Error> {
        if let Some(m) = self.modes.read().ok().and_then(|m| m.get(env).copied()) {
            return Ok(Some(m));
        }
        let mode = store
            .scope(env)
            .await?
            .and_then(|row| row.mode)
            .and_then(|m| m.parse::<EnvMode>().ok());
        if let (Some(m), Ok(mut map)) = (mode, self.modes.write()) {
            map.insert(env.to_owned(), m);
        }
        Ok(mode)
    }

    async fn workload(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Result<Authenticated, Refusal>, Error> {
        use warden_identity::workload::{WorkloadError, verify};
        let now = now_secs();
        let mut verified = verify(token, now, |kid| self.public_key(kid));
        if matches!(verified, Err(WorkloadError::UnknownKey)) {
            // Issued by another replica since we last looked.
            self.load_public_keys(store).await?;
            verified = verify(token, now, |kid| self.public_key(kid));
        }
        let claims = match verified {
            Ok(c) => c,
            Err(WorkloadError::Expired) => return Ok(Err(Refusal("workload token expired"))),
            Err(_) => return Ok(Err(Refusal("invalid workload token"))),
        };
        let Ok(path) = ScopePath::parse_kind(&claims.path, ScopeKind::Service) else {
            return Ok(Err(Refusal("invalid workload token")));
        };
        Ok(Ok(Authenticated {
            principal: Principal {
                id: claims.sub.clone(),
                bindings: vec![Binding {
                    role: workload_role(),
                    scope: Scope::Path(path),
                }],
                mfa: false,
            },
            expires_at_ms: i64::try_from(claims.exp)
                .ok()
                .map(|s| s.saturating_mul(1000)),
            token_id: claims.jti,
            method: Method::Workload,
        }))
    }

    /// Public keys accepted for verification: created within the rotation
    /// period plus the longest token lifetime.
    fn public_key(&self, kid: &str) -> Option<[u8; 32]> {
        let oldest = oldest_signing_key_ms();
        let keys = self.jwt_keys.read().ok()?;
        let (key, created) = keys.get(kid)?;
        (*created > oldest).then_some(*key)
    }

    /// Remembers a signing public key this replica just created.
    pub fn remember_public_key(&self, kid: &str, key: [u8; 32], created_at: i64) {
        if let Ok(mut keys) = self.jwt_keys.write() {
            keys.insert(kid.to_owned(), (key, created_at));
        }
    }

    /// Loads the signing public keys still accepted (and caches them);
    /// newest first.
    pub async fn load_public_keys(&self, store: &Store) -> Result<Vec<SigningKeyRow>, Error> {
        let oldest = oldest_signing_key_ms();
        let rows = store.signing_keys(oldest).await?;
        if let Ok(mut keys) = self.jwt_keys.write() {
            for r in &rows {
                if let Ok(k) = <[u8; 32]>::try_from(r.public_key.as_slice()) {
                    keys.insert(r.kid.clone(), (k, r.created_at));
                }
            }
        }
        Ok(rows)
    }
}

/// A stored binding scope: `/` or a path.
pub fn scope_of(stored: &str) -> Option<Scope> {
    if stored == "/" {
        Some(Scope::Root)
    } else {
        ScopePath::parse(stored).ok().map(Scope::Path)
    }
}

/// Creates a new API or session token for `principal`; returns the token
/// (shown once) and its stored row. Only the SHA-256 of the token is kept.
pub async fn create_token(
    store: &Store,
    principal: &str,
    name: &str,
    kind: &str,
    mfa: bool,
    expires_at: Option<i64>,
) -> Result<(Zeroizing<String>, TokenRow), Error> {
    let token = warden_identity::token::generate_api_token();
    let row = new_token_row(principal, name, kind, mfa, expires_at)?;
    store
        .insert_token(
            row.clone(),
            warden_identity::token::token_hash(&token).to_vec(),
        )
        .await?;
    Ok((token, row))
}

/// The row of a token about to be created.
pub fn new_token_row(
    principal: &str,
    name: &str,
    kind: &str,
    mfa: bool,
    expires_at: Option<i64>,
) -> Result<TokenRow, Error> {
    let id: [u8; 8] = crate::random_bytes()?;
    Ok(TokenRow {
        id: format!("tok_{}", hex::encode(id)),
        principal: principal.to_owned(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        mfa: i64::from(mfa),
        created_at: warden_store::now_ms(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The OpenAPI document's principal patterns promise no more than
        /// `parse_principal` accepts.
        #[test]
        fn documented_principals_parse(
            p in proptest::string::string_regex(inner(warden_types::pattern::PRINCIPAL)).unwrap(),
            m in proptest::string::string_regex(inner(warden_types::pattern::MEMBER)).unwrap(),
        ) {
            proptest::prop_assert!(parse_principal(&p).is_ok());
            proptest::prop_assert!(parse_principal(&m).is_ok_and(|m| m.kind != "workload"));
        }
    }

    fn inner(pattern: &str) -> &str {
        &pattern[1..pattern.len() - 1]
    }

    #[test]
    fn principal_ids_name_their_home() {
        let p = parse_principal("user:bob@acme").unwrap();
        assert_eq!((p.kind, p.name, p.home), ("user", "bob", Some("acme")));
        let p = parse_principal("sa:ci").unwrap();
        assert_eq!((p.kind, p.name, p.home), ("sa", "ci", None));
        let p = parse_principal("workload:acme/shop/prod/api").unwrap();
        assert_eq!((p.kind, p.home), ("workload", Some("acme")));
        assert_eq!(principal_id("user", "bob", Some("acme")), "user:bob@acme");
        for bad in [
            "bob",
            "user:",
            "user:bob@",
            "user:@acme",
            "user:bob@acme@x",
            "user:Bob",
            "sa:ci@a/b",
            "workload:acme/shop",
            "group:x",
        ] {
            assert!(parse_principal(bad).is_err(), "{bad}");
        }
    }
}
