//! The vault's operations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use warden_pipeline::Permit;
use warden_pipeline::throttle::WorkQueue;
use warden_policies::{Action, Scope};
use warden_store::{
    NewVersion, Rewrapped, ScopeRow, SecretSummary, Store, StoreError, VersionChange, VersionRow,
};
use warden_types::{DEFAULT_MAX_VERSIONS, EnvMode, ScopeKind, ScopePath, SecretName, SecretValue};
use zeroize::Zeroizing;

use crate::keyring::{Keyring, RecordingKey};
use crate::unseal::{self, InitMethod, SealConfig, Share};
use crate::{VaultError, crypto::Key32, secret_context};

/// A service's effective secrets ([`Vault::resolve`]) and which stored
/// version each came from.
#[derive(Debug)]
pub struct Resolution {
    /// The values, `${NAME}` references filled in.
    pub values: BTreeMap<String, SecretValue>,
    /// For each name, the scope and version its value was read from.
    pub versions: Versions,
}

/// For each secret name, the version served.
pub type Versions = BTreeMap<String, ServedVersion>;

/// Each secret of `versions` as the audit log names a served version:
/// `NAME:VERSION@SCOPE` (never a value).
pub fn version_labels(versions: &Versions) -> Vec<String> {
    versions
        .iter()
        .map(|(name, v)| format!("{name}:{}@{}", v.version, v.scope))
        .collect()
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ServedVersion {
    /// The scope that holds it (the service's or an ancestor's).
    pub scope: String,
    /// Its version there.
    pub version: i64,
}

impl ServedVersion {
    fn of(row: &VersionRow) -> Self {
        Self {
            scope: row.scope.clone(),
            version: row.version,
        }
    }
}

/// The rows that give a service its secrets, by name: `rows` come in
/// inheritance order (project, environment, service), so a nearer scope's
/// version replaces a farther one's, and a deleted or destroyed one hides
/// it.
fn effective(rows: Vec<VersionRow>) -> BTreeMap<String, VersionRow> {
    let mut out = BTreeMap::new();
    for row in rows {
        if row.deleted_at.is_some() || row.envelope.is_none() {
            out.remove(&row.name);
        } else {
            out.insert(row.name.clone(), row);
        }
    }
    out
}

enum State {
    Sealed { attempts: ShamirAttempts },
    Unsealed(Arc<Keyring>),
}

/// Shamir unseal attempts in progress, each under its own random nonce
/// (as Vault does): the first share of an attempt returns the nonce, and
/// later shares of the same attempt must carry it. A stranger's shares
/// start attempts of their own and can neither reset nor pollute an
/// operator's. Attempts expire, and at most [`MAX_ATTEMPTS`] are kept.
#[derive(Default)]
struct ShamirAttempts(HashMap<String, Attempt>);

struct Attempt {
    shares: Vec<Share>,
    started: std::time::Instant,
}

/// Shamir attempts kept at once (the oldest is dropped for a new one).
const MAX_ATTEMPTS: usize = 16;
/// An attempt not completed within this long is forgotten.
const ATTEMPT_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl ShamirAttempts {
    fn progress(&self) -> u8 {
        self.0
            .values()
            .map(|a| u8::try_from(a.shares.len()).unwrap_or(u8::MAX))
            .max()
            .unwrap_or(0)
    }

    /// The attempt `nonce` names, or a new one when `nonce` is `None`.
    fn attempt(&mut self, nonce: Option<&str>) -> Result<(String, &mut Attempt), VaultError> {
        self.0.retain(|_, a| a.started.elapsed() < ATTEMPT_TTL);
        let nonce = match nonce {
            Some(n) if self.0.contains_key(n) => n.to_owned(),
            Some(_) => {
                return Err(VaultError::Invalid(
                    "no unseal attempt with that nonce is in progress (it expired after 10 \
                     minutes or failed); start again without --nonce"
                        .into(),
                ));
            }
            None => {
                if self.0.len() >= MAX_ATTEMPTS
                    && let Some(oldest) = self
                        .0
                        .iter()
                        .min_by_key(|(_, a)| a.started)
                        .map(|(k, _)| k.clone())
                {
                    self.0.remove(&oldest);
                }
                let nonce = hex::encode(crate::crypto::random_bytes::<16>()?);
                self.0.insert(
                    nonce.clone(),
                    Attempt {
                        shares: Vec::new(),
                        started: std::time::Instant::now(),
                    },
                );
                nonce
            }
        };
        let attempt = self.0.get_mut(&nonce).ok_or(VaultError::Sealed)?;
        Ok((nonce, attempt))
    }
}

/// Seal status, as `operator status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// Whether a root key exists.
    pub initialized: bool,
    /// Whether key material is absent from memory.
    pub sealed: bool,
    /// `passphrase`, `shamir` or `dev_key_file` once initialized.
    pub method: Option<&'static str>,
    /// Shares needed.
    pub threshold: u8,
    /// Shares submitted so far.
    pub progress: u8,
}

/// What `init` hands back once.
pub struct InitOutput {
    /// Shamir shares to give to operators (base64).
    pub shares: Vec<Zeroizing<String>>,
    /// The dev key-file content.
    pub dev_key: Option<Zeroizing<String>>,
}

/// Metadata of a version (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    /// Version number.
    pub version: i64,
    /// Key term it is sealed under.
    pub key_term: i64,
    /// Write time, ms.
    pub created_at: i64,
    /// Soft-delete time, ms.
    pub deleted_at: Option<i64>,
    /// Destruction time, ms.
    pub destroyed_at: Option<i64>,
}

impl From<&VersionRow> for VersionMeta {
    fn from(r: &VersionRow) -> Self {
        Self {
            version: r.version,
            key_term: r.key_term,
            created_at: r.created_at,
            deleted_at: r.deleted_at,
            destroyed_at: r.destroyed_at,
        }
    }
}

/// One key term in `keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermStatus {
    /// Term number.
    pub term: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Encryptions reserved under the term (an upper bound).
    pub encryptions: i64,
    /// Live versions sealed under it.
    pub versions: i64,
}

/// Result of one rewrap step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapProgress {
    /// The term everything is being moved to.
    pub target_term: i64,
    /// Versions re-encrypted by this step.
    pub rewrapped: u64,
    /// Versions still under older terms.
    pub remaining: i64,
}

/// The vault service. Cheap to share behind an `Arc`.
pub struct Vault {
    store: Store,
    state: RwLock<State>,
    /// Passphrase derivations: one at a time, two more may wait, the rest
    /// are refused (unseal is unauthenticated and each attempt costs
    /// 64 MiB and a few hundred milliseconds of CPU).
    kdf_turn: WorkQueue,
    /// `true` while sealed; session grants end when it turns `true`.
    sealed_tx: tokio::sync::watch::Sender<bool>,
}

fn check(permit: &Permit, action: Action, scope: Scope) -> Result<(), VaultError> {
    if permit.covers(action, &scope) {
        Ok(())
    } else {
        Err(VaultError::PermitMismatch)
    }
}

fn scope_of(permit: &Permit, action: Action, scope: &ScopePath) -> Result<(), VaultError> {
    check(permit, action, Scope::Path(scope.clone()))
}

impl Vault {
    /// A sealed vault over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            state: RwLock::new(State::Sealed {
                attempts: ShamirAttempts::default(),
            }),
            kdf_turn: WorkQueue::new(1, 2),
            sealed_tx: tokio::sync::watch::Sender::new(true),
        }
    }

    fn keyring(&self) -> Result<Arc<Keyring>, VaultError> {
        match &*self.state.read().map_err(|_| VaultError::Sealed)? {
            State::Unsealed(k) => Ok(k.clone()),
            State::Sealed { .. } => Err(VaultError::Sealed),
        }
    }

    /// Seals a principal's credential (a TOTP secret, a workload signing
    /// key) under the root key, bound to `purpose` and `subject`. These are
    /// Warden's own credentials, not customer secrets: the pipeline
    /// authorizes the identity operation that needs them, so no permit here.
    pub fn seal_credential(
        &self,
        purpose: &str,
        subject: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.keyring()?.seal_credential(purpose, subject, plaintext)
    }

    /// Opens a credential sealed by [`Vault::seal_credential`]; the
    /// plaintext is wiped when dropped.
    pub fn open_credential(
        &self,
        purpose: &str,
        subject: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.keyring()?.open_credential(purpose, subject, sealed)
    }

    /// HMAC-SHA256 of `data` under the audit key of `log` (derived from the
    /// root key, so it exists only while unsealed): lets audit entries carry
    /// correlatable values (token ids) without revealing them, and entries
    /// be authenticated as Warden's own.
    pub fn audit_mac(&self, log: &str, data: &[u8]) -> Option<String> {
        self.keyring().ok()?.audit_mac(log, data)
    }

    /// `log`'s audit MAC key, to MAC later entries of one operation with
    /// (`None` while sealed). The key outlives a seal for as long as the
    /// caller keeps it.
    pub fn audit_mac_key(&self, log: &str) -> Option<crate::AuditMacKey> {
        self.keyring().ok()?.audit_mac_key(log)
    }

    /// Whether key material is in memory.
    pub fn is_sealed(&self) -> bool {
        self.keyring().is_err()
    }

    /// Sees `true` whenever the vault is sealed.
    pub fn sealed_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.sealed_tx.subscribe()
    }

    async fn config(&self) -> Result<Option<(SealConfig, Vec<u8>)>, VaultError> {
        let Some(row) = self.store.seal_row().await? else {
            return Ok(None);
        };
        let config = serde_json::from_str(&row.config)
            .map_err(|_| VaultError::Integrity("seal configuration is unreadable".into()))?;
        Ok(Some((config, row.wrapped_root)))
    }

    /// Seal status.
    pub async fn status(&self) -> Result<SealStatus, VaultError> {
        let config = self.config().await?;
        let progress = match &*self.state.read().map_err(|_| VaultError::Sealed)? {
            State::Sealed { attempts } => attempts.progress(),
            State::Unsealed(_) => 0,
        };
        Ok(SealStatus {
            initialized: config.is_some(),
            sealed: self.is_sealed(),
            method: config.as_ref().map(|(c, _)| c.method()),
            threshold: config.as_ref().map(|(c, _)| c.threshold()).unwrap_or(0),
            progress,
        })
    }

    /// Creates the root key and unseals.
    pub async fn init(&self, method: InitMethod) -> Result<InitOutput, VaultError> {
        let seal = self.create_root(method).await?;
        self.install(&seal.root).await?;
        Ok(InitOutput {
            shares: seal.shares,
            dev_key: seal.dev_key,
        })
    }

    /// Creates the root key and runs `first` (which writes the first
    /// authorization rows: the first Owner and its token) with the row MAC
    /// key installed; the vault stays sealed, and the row key is removed
    /// again before this returns.
    pub async fn init_sealed<T, E, Fut>(
        &self,
        method: InitMethod,
        first: impl FnOnce() -> Fut,
    ) -> Result<(InitOutput, T), E>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
        E: From<VaultError>,
    {
        let seal = self.create_root(method).await?;
        self.install_row_key(&seal.root).await?;
        let done = first().await;
        self.store.set_row_key(None);
        let out = InitOutput {
            shares: seal.shares,
            dev_key: seal.dev_key,
        };
        Ok((out, done?))
    }

    /// Creates and stores the (wrapped) root key.
    async fn create_root(&self, method: InitMethod) -> Result<unseal::NewSeal, VaultError> {
        if self.config().await?.is_some() {
            return Err(VaultError::AlreadyInitialized);
        }
        // Argon2id (64 MiB) is CPU and memory heavy and init is
        // unauthenticated: one derivation at a time, off the async workers.
        let turn = self.kdf_turn.enter().await.map_err(|_| VaultError::Busy)?;
        let seal = tokio::task::spawn_blocking(move || unseal::prepare(method))
            .await
            .map_err(|_| VaultError::Invalid("init was interrupted".into()))??;
        drop(turn);
        let config = serde_json::to_string(&seal.config)
            .map_err(|_| VaultError::Invalid("seal configuration".into()))?;
        self.store
            .insert_seal(config, seal.wrapped_root.clone())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => VaultError::AlreadyInitialized,
                other => other.into(),
            })?;
        Ok(seal)
    }

    /// Hands the store the row MAC key derived from `root` (giving a
    /// database from before row MACs its MACs, once).
    async fn install_row_key(&self, root: &Key32) -> Result<(), VaultError> {
        let rows = Keyring::row_mac_key(root).ok_or(VaultError::Sealed)?;
        self.store.set_row_key(Some(Arc::new(rows)));
        if let Err(e) = self.store.adopt_rows().await {
            self.store.set_row_key(None);
            return Err(e.into());
        }
        Ok(())
    }

    /// Puts the key hierarchy in memory and hands the store its row MAC
    /// key (giving a database from before row MACs its MACs, once).
    async fn install(&self, root: &Key32) -> Result<(), VaultError> {
        let ring = Arc::new(Keyring::new(root)?);
        self.install_row_key(root).await?;
        *self.state.write().map_err(|_| VaultError::Sealed)? = State::Unsealed(ring);
        self.sealed_tx.send_replace(false);
        tracing::info!("vault unsealed");
        Ok(())
    }

    /// Unseals with the unseal key itself (dev key file).
    pub async fn unseal_with_key(&self, key: &Key32) -> Result<SealStatus, VaultError> {
        let (_, wrapped) = self.config().await?.ok_or(VaultError::NotInitialized)?;
        let root = unseal::open_root(&wrapped, key)?;
        self.install(&root).await?;
        self.status().await
    }

    /// Checks an unseal request before anything else happens, sealed or
    /// not: the vault is initialized, unseals the way asked (a passphrase
    /// with `share` `None`, Shamir shares otherwise), and a share is
    /// well-formed and one of those dealt. Returns the seal configuration,
    /// the wrapped root key and the parsed share.
    pub async fn check_unseal(
        &self,
        share: Option<&str>,
    ) -> Result<(SealConfig, Vec<u8>, Option<Share>), VaultError> {
        let (config, wrapped) = self.config().await?.ok_or(VaultError::NotInitialized)?;
        // A malformed share is a malformed request, whatever the method.
        let share = share.map(Share::parse).transpose()?;
        let wanted = if share.is_some() {
            "shamir"
        } else {
            "passphrase"
        };
        if config.method() != wanted {
            return Err(VaultError::Invalid(format!(
                "this vault unseals with {}, not {wanted}",
                config.method()
            )));
        }
        if share.as_ref().is_some_and(|s| !s.is_dealt(&config)) {
            return Err(VaultError::Invalid(
                "this is not one of this vault's unseal shares".into(),
            ));
        }
        Ok((config, wrapped, share))
    }

    /// Unseals with a passphrase.
    ///
    /// While unsealed it derives nothing and only answers the status, so it
    /// cannot be used to test guesses.
    pub async fn unseal_passphrase(&self, passphrase: &str) -> Result<SealStatus, VaultError> {
        let (config, wrapped, _) = self.check_unseal(None).await?;
        if !self.is_sealed() {
            return self.status().await;
        }
        let _turn = self.kdf_turn.enter().await.map_err(|_| VaultError::Busy)?;
        if !self.is_sealed() {
            return self.status().await;
        }
        let passphrase = Zeroizing::new(passphrase.to_owned());
        let key = tokio::task::spawn_blocking(move || unseal::passphrase_key(&config, &passphrase))
            .await
            .map_err(|_| VaultError::Invalid("unseal was interrupted".into()))??;
        let root = unseal::open_root(&wrapped, &key)?;
        self.install(&root).await?;
        self.status().await
    }

    /// Submits one Shamir share to the attempt `nonce` names (a new attempt
    /// without one); unseals when that attempt has enough distinct shares.
    /// Returns the status and the attempt's nonce (to pass with the next
    /// share), or no nonce once unsealed. A share that is not one of those
    /// dealt is refused at once (by its digest); on a vault from before
    /// share digests, wrong shares show only at the threshold, and the
    /// attempt is then dropped.
    pub async fn unseal_share(
        &self,
        share: &str,
        nonce: Option<&str>,
    ) -> Result<(SealStatus, Option<String>), VaultError> {
        let (config, wrapped, share) = self.check_unseal(Some(share)).await?;
        let (SealConfig::Shamir { threshold, .. }, Some(share)) = (config, share) else {
            return Err(VaultError::Invalid("not a Shamir share".into()));
        };
        let (nonce, combined) = {
            let mut state = self.state.write().map_err(|_| VaultError::Sealed)?;
            match &mut *state {
                // Already unsealed: nothing to do.
                State::Unsealed(_) => (None, None),
                State::Sealed { attempts } => {
                    let (nonce, attempt) = attempts.attempt(nonce)?;
                    if !attempt.shares.iter().any(|s| s.index() == share.index()) {
                        attempt.shares.push(share);
                    }
                    if attempt.shares.len() < threshold as usize {
                        (Some(nonce), None)
                    } else {
                        let key = unseal::combine(threshold, &attempt.shares);
                        attempts.0.remove(&nonce);
                        (None, Some(key))
                    }
                }
            }
        };
        if let Some(key) = combined {
            let root = unseal::open_root(&wrapped, &key?)?;
            self.install(&root).await?;
        }
        Ok((self.status().await?, nonce))
    }

    /// Drops all key material from memory.
    pub fn seal(&self, permit: &Permit) -> Result<(), VaultError> {
        check(permit, Action::SysSeal, Scope::Root)?;
        *self.state.write().map_err(|_| VaultError::Sealed)? = State::Sealed {
            attempts: ShamirAttempts::default(),
        };
        self.store.set_row_key(None);
        self.sealed_tx.send_replace(true);
        tracing::warn!("vault sealed");
        Ok(())
    }

    async fn scope_row(&self, scope: &ScopePath) -> Result<ScopeRow, VaultError> {
        self.store
            .scope(scope.as_str())
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("{} {scope}", scope.kind().as_str())))
    }

    /// Creates an organization (with its first key term), project,
    /// environment (with a mode) or service.
    pub async fn create_scope(
        &self,
        permit: &Permit,
        path: &ScopePath,
        mode: Option<EnvMode>,
        max_versions: Option<u32>,
    ) -> Result<(), VaultError> {
        let parent = path.parent();
        check(
            permit,
            Action::EnvManage,
            parent.clone().map_or(Scope::Root, Scope::Path),
        )?;
        let keyring = self.keyring()?;
        let kind = path.kind();
        if (kind == ScopeKind::Environment) != mode.is_some() {
            return Err(VaultError::Invalid(
                "mode is required for an environment and only allowed there".into(),
            ));
        }
        if let Some(n) = max_versions
            && (kind != ScopeKind::Environment || !(1..=100).contains(&n))
        {
            return Err(VaultError::Invalid(
                "max_versions is set per environment, between 1 and 100".into(),
            ));
        }
        let first_key = match kind {
            ScopeKind::Organization => Some(keyring.new_term_row(path.org(), 1)?),
            _ => None,
        };
        let row = ScopeRow {
            path: path.as_str().to_owned(),
            kind: kind.as_str().to_owned(),
            parent: parent.map(|p| p.as_str().to_owned()),
            org: path.org().to_owned(),
            mode: mode.map(|m| m.as_str().to_owned()),
            max_versions: max_versions.map(i64::from),
            created_at: warden_store::now_ms(),
        };
        Ok(self.store.create_scope(row, first_key).await?)
    }

    /// Lists the children of a scope.
    pub async fn list_scopes(
        &self,
        permit: &Permit,
        parent: &ScopePath,
    ) -> Result<Vec<ScopeRow>, VaultError> {
        check(permit, Action::EnvRead, Scope::Path(parent.clone()))?;
        self.keyring()?;
        self.scope_row(parent).await?;
        Ok(self.store.child_scopes(Some(parent.as_str())).await?)
    }

    async fn secret_scope(&self, scope: &ScopePath) -> Result<ScopeRow, VaultError> {
        if scope.kind() == ScopeKind::Organization {
            return Err(VaultError::Invalid(
                "secrets belong to a project, environment or service, not an organization".into(),
            ));
        }
        self.scope_row(scope).await
    }

    async fn max_versions(&self, scope: &ScopePath, row: &ScopeRow) -> Result<i64, VaultError> {
        let env_row = match scope.kind() {
            ScopeKind::Environment => Some(row.clone()),
            ScopeKind::Service => match scope.parent() {
                Some(env) => self.store.scope(env.as_str()).await?,
                None => None,
            },
            _ => None,
        };
        Ok(env_row
            .and_then(|r| r.max_versions)
            .unwrap_or(i64::from(DEFAULT_MAX_VERSIONS)))
    }

    /// Writes a new version of each secret, atomically. `cas` (only with a
    /// single secret) is the version the caller expects to be current, 0 for
    /// "must not exist".
    pub async fn put(
        &self,
        permit: &Permit,
        scope: &ScopePath,
        values: Vec<(SecretName, SecretValue)>,
        cas: Option<i64>,
    ) -> Result<Vec<(SecretName, i64)>, VaultError> {
        scope_of(permit, Action::SecretWrite, scope)?;
        let keyring = self.keyring()?;
        if values.is_empty() || values.len() > warden_types::MAX_KEYS_PER_REQUEST {
            return Err(VaultError::Invalid(format!(
                "a write carries 1 to {} secrets",
                warden_types::MAX_KEYS_PER_REQUEST
            )));
        }
        if cas.is_some() && values.len() != 1 {
            return Err(VaultError::Invalid("cas applies to a single secret".into()));
        }
        if cas.is_some_and(|v| v < 0) {
            return Err(VaultError::Invalid(
                "cas is a version number, 0 or more".into(),
            ));
        }
        let mut seen = HashSet::new();
        if let Some((dup, _)) = values.iter().find(|(n, _)| !seen.insert(n.clone())) {
            return Err(VaultError::Invalid(format!("{dup} appears twice")));
        }
        let row = self.secret_scope(scope).await?;
        let max_versions = self.max_versions(scope, &row).await?;
        let org = scope.org().to_owned();
        let term_key = keyring
            .reserve(&self.store, &org, values.len() as i64)
            .await?;
        let names: Vec<SecretName> = values.iter().map(|(n, _)| n.clone()).collect();
        let puts = names
            .iter()
            .map(|n| NewVersion {
                scope: scope.as_str().to_owned(),
                org: org.clone(),
                name: n.as_str().to_owned(),
                cas,
                max_versions,
                key_term: term_key.term,
            })
            .collect();
        let term = u32::try_from(term_key.term)
            .map_err(|_| VaultError::Integrity("key term out of range".into()))?;
        let mut plaintexts = values.into_iter().map(|(_, v)| v);
        let sealer = Box::new(move |p: &NewVersion, version: i64| {
            let value = plaintexts
                .next()
                .ok_or_else(|| StoreError::Sealing("sealer called too often".into()))?;
            let v = version.to_be_bytes();
            term_key
                .secrets
                .seal(
                    term,
                    &secret_context(&p.org, &p.scope, &p.name, &v),
                    value.expose().as_bytes(),
                )
                .map_err(|e| StoreError::Sealing(e.to_string()))
        });
        let versions = self.store.put_secrets(puts, sealer).await?;
        Ok(names.into_iter().zip(versions).collect())
    }

    async fn open(
        &self,
        keyring: &Keyring,
        org: &str,
        row: &VersionRow,
    ) -> Result<SecretValue, VaultError> {
        let label = format!("version {} of {} in {}", row.version, row.name, row.scope);
        if row.destroyed_at.is_some() {
            return Err(VaultError::Gone(format!("{label} was destroyed")));
        }
        if row.deleted_at.is_some() {
            return Err(VaultError::Gone(format!(
                "{label} is deleted; undelete it to read it"
            )));
        }
        let envelope = row
            .envelope
            .as_deref()
            .ok_or_else(|| VaultError::Gone(format!("{label} was destroyed")))?;
        let key = keyring.term(&self.store, org, row.key_term).await?;
        let v = row.version.to_be_bytes();
        let plain = key
            .secrets
            .open(envelope, &secret_context(org, &row.scope, &row.name, &v))
            .map_err(|_| VaultError::Integrity(label.clone()))?;
        SecretValue::from_utf8(&plain).ok_or(VaultError::Integrity(label))
    }

    /// Reads a secret (its latest version unless `version`).
    pub async fn get(
        &self,
        permit: &Permit,
        scope: &ScopePath,
        name: &SecretName,
        version: Option<i64>,
    ) -> Result<(SecretValue, VersionMeta), VaultError> {
        scope_of(permit, Action::SecretRead, scope)?;
        let keyring = self.keyring()?;
        let row = self
            .store
            .secret_version(scope.as_str(), name.as_str(), version)
            .await?
            .ok_or_else(|| match version {
                Some(v) => VaultError::NotFound(format!("version {v} of secret {name} in {scope}")),
                None => VaultError::NotFound(format!("secret {name} in {scope}")),
            })?;
        let value = self.open(&keyring, scope.org(), &row).await?;
        Ok((value, VersionMeta::from(&row)))
    }

    /// Names and metadata of the secrets in a scope.
    pub async fn list(
        &self,
        permit: &Permit,
        scope: &ScopePath,
    ) -> Result<Vec<SecretSummary>, VaultError> {
        scope_of(permit, Action::SecretList, scope)?;
        self.keyring()?;
        self.secret_scope(scope).await?;
        Ok(self.store.list_secrets(scope.as_str()).await?)
    }

    /// Every kept version's metadata, newest first.
    pub async fn history(
        &self,
        permit: &Permit,
        scope: &ScopePath,
        name: &SecretName,
    ) -> Result<Vec<VersionMeta>, VaultError> {
        scope_of(permit, Action::SecretList, scope)?;
        self.keyring()?;
        let rows = self.store.history(scope.as_str(), name.as_str()).await?;
        if rows.is_empty() {
            return Err(VaultError::NotFound(format!("secret {name} in {scope}")));
        }
        Ok(rows.iter().map(VersionMeta::from).collect())
    }

    async fn versions_or_latest(
        &self,
        scope: &ScopePath,
        name: &SecretName,
        versions: Vec<i64>,
    ) -> Result<Vec<i64>, VaultError> {
        if !versions.is_empty() {
            return Ok(versions);
        }
        let row = self
            .store
            .secret_version(scope.as_str(), name.as_str(), None)
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("secret {name} in {scope}")))?;
        Ok(vec![row.version])
    }

    /// Soft-deletes, undeletes or destroys versions; returns those whose
    /// state changed. Delete and undelete default to the latest version;
    /// destroy needs explicit versions and the `secret.destroy` permit.
    pub async fn change_versions(
        &self,
        permit: &Permit,
        scope: &ScopePath,
        name: &SecretName,
        versions: Vec<i64>,
        change: VersionChange,
    ) -> Result<Vec<i64>, VaultError> {
        let action = match change {
            VersionChange::Destroy => Action::SecretDestroy,
            VersionChange::Delete | VersionChange::Undelete => Action::SecretDelete,
        };
        scope_of(permit, action, scope)?;
        self.keyring()?;
        let versions = match change {
            VersionChange::Destroy if versions.is_empty() => {
                return Err(VaultError::Invalid(
                    "destroy needs explicit versions".into(),
                ));
            }
            VersionChange::Destroy => versions,
            _ => self.versions_or_latest(scope, name, versions).await?,
        };
        Ok(self
            .store
            .change_versions(scope.as_str(), name.as_str(), versions, change)
            .await?)
    }

    /// The effective secrets of a service: project < environment < service,
    /// then `${NAME}` interpolation. Deleted and destroyed latest versions
    /// are left out. The answer names the version each value came from.
    pub async fn resolve(
        &self,
        permit: &Permit,
        service: &ScopePath,
    ) -> Result<Resolution, VaultError> {
        scope_of(permit, Action::SecretRead, service)?;
        let keyring = self.keyring()?;
        if service.kind() != ScopeKind::Service {
            return Err(VaultError::Invalid(
                "resolve takes a service path ORG/PROJECT/ENV/SERVICE".into(),
            ));
        }
        self.scope_row(service).await?;
        self.resolved(&keyring, service).await
    }

    /// [`Vault::resolve`] once authorized: the latest versions, or, for a
    /// service whose pods are rolled when their secrets change (a
    /// `secret_rollouts` row), the versions pinned for its pods.
    async fn resolved(
        &self,
        keyring: &Keyring,
        service: &ScopePath,
    ) -> Result<Resolution, VaultError> {
        let scopes = service.inherited_scopes();
        let rows = match self.store.rollout(service.as_str()).await? {
            None => self.store.latest_in_scopes(&scopes).await?,
            Some(rollout) => self.pinned_rows(service, &scopes, &rollout.pinned).await?,
        };
        let rows = effective(rows);
        let mut merged = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for (name, row) in rows {
            let value = self.open(keyring, service.org(), &row).await?;
            merged.insert(name.clone(), value);
            versions.insert(name, ServedVersion::of(&row));
        }
        Ok(Resolution {
            values: crate::resolve::interpolate(&merged)?,
            versions,
        })
    }

    /// The stored versions a pin names. Each must be in one of the
    /// service's own `scopes` (a pin naming any other is refused as
    /// tampered). A secret deleted since (its latest version deleted or
    /// destroyed) is left out, as it is from an unpinned resolve; a pinned
    /// version deleted, destroyed or pruned since (a leaked value an
    /// operator got rid of) gives way to the latest of its name. A pod is
    /// never handed a value its operators took away, nor left without one
    /// while a newer exists (reviews 14 and 15).
    async fn pinned_rows(
        &self,
        service: &ScopePath,
        scopes: &[String],
        pinned: &str,
    ) -> Result<Vec<VersionRow>, VaultError> {
        let tampered =
            || VaultError::Integrity(format!("the secret versions pinned for {service}"));
        let pin: Versions = serde_json::from_str(pinned).map_err(|_| tampered())?;
        let mut rows = Vec::with_capacity(pin.len());
        for (name, v) in pin {
            if !scopes.contains(&v.scope) {
                return Err(tampered());
            }
            let usable = |r: &VersionRow| r.deleted_at.is_none() && r.envelope.is_some();
            let Some(latest) = self
                .store
                .secret_version(&v.scope, &name, None)
                .await?
                .filter(usable)
            else {
                continue;
            };
            let pinned = self
                .store
                .secret_version(&v.scope, &name, Some(v.version))
                .await?
                .filter(usable);
            rows.push(pinned.unwrap_or(latest));
        }
        Ok(rows)
    }

    /// The latest versions of a service's effective secrets, metadata
    /// only: no value is opened and no permit is needed. What a rollout
    /// compares with the versions pinned for the service's pods.
    pub async fn latest_versions(&self, service: &ScopePath) -> Result<Versions, VaultError> {
        let rows = self
            .store
            .latest_in_scopes(&service.inherited_scopes())
            .await?;
        Ok(effective(rows)
            .into_iter()
            .map(|(name, row)| (name, ServedVersion::of(&row)))
            .collect())
    }

    /// What a shell session on `service` needs to record itself, for the
    /// holder of its `shell.exec` permit: the key that seals its recording
    /// (held for the session's life) and the values the gateway masks out
    /// of the recording: every kept version of every secret the service
    /// inherits (a pod started before a rotation holds an older one), and
    /// the resolved values (with `${NAME}` references filled in) when they
    /// resolve — a reference that does not resolve never keeps anyone from
    /// a shell. The values never leave the gateway; `shell.exec` already
    /// lets their holder read them in the pod.
    pub async fn recording_setup(
        &self,
        permit: &Permit,
        service: &ScopePath,
        session: &str,
    ) -> Result<(RecordingKey, Vec<SecretValue>), VaultError> {
        scope_of(permit, Action::ShellExec, service)?;
        let keyring = self.keyring()?;
        let key = keyring
            .recording_key(&self.store, service.org(), session)
            .await?;
        Ok((key, self.masks(&keyring, service, None).await?))
    }

    /// The values a recording of a session on `service` must mask from
    /// now on, after a change of the service's secrets mid-session, for
    /// the holder of the session's `shell.exec` permit: see
    /// [`Vault::recording_setup`]; with `changed` (scope, name) pairs, only
    /// the latest version of each of them the service inherits is read
    /// again (what was masked before stays masked).
    pub async fn recording_masks(
        &self,
        permit: &Permit,
        service: &ScopePath,
        changed: Option<&[(String, String)]>,
    ) -> Result<Vec<SecretValue>, VaultError> {
        scope_of(permit, Action::ShellExec, service)?;
        let keyring = self.keyring()?;
        self.masks(&keyring, service, changed).await
    }

    /// The values a recording masks: every kept version of every secret
    /// the service inherits (or, with `changed`, the latest of each
    /// changed one it inherits), and the resolved values (a `${NAME}`
    /// reference to a changed one changes too).
    async fn masks(
        &self,
        keyring: &Keyring,
        service: &ScopePath,
        changed: Option<&[(String, String)]>,
    ) -> Result<Vec<SecretValue>, VaultError> {
        let inherited = service.inherited_scopes();
        let rows = match changed {
            None => self.store.versions_in_scopes(&inherited).await?,
            Some(changed) => {
                let mut rows = Vec::new();
                for (scope, name) in changed.iter().filter(|(s, _)| inherited.contains(s)) {
                    rows.extend(self.store.secret_version(scope, name, None).await?);
                }
                rows
            }
        };
        let mut values = Vec::new();
        for row in rows.iter().filter(|r| r.envelope.is_some()) {
            values.push(self.open(keyring, service.org(), row).await?);
        }
        if let Ok(resolved) = self.resolved(keyring, service).await {
            values.extend(resolved.values.into_values());
        }
        Ok(values)
    }

    /// Opens chunk `seq` of `session`'s recording in organization `org`,
    /// for the holder of a `session.watch` permit on the session's
    /// `service`, or of an `audit.export` permit on the organization (live
    /// verification reads every recording).
    pub async fn open_recording(
        &self,
        permit: &Permit,
        service: &ScopePath,
        session: &str,
        seq: u64,
        last: bool,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if scope_of(permit, Action::SessionWatch, service).is_err() {
            let org = service.ancestors_and_self().swap_remove(0);
            scope_of(permit, Action::AuditExport, &org)?;
        }
        self.keyring()?
            .open_recording(&self.store, service.org(), session, seq, last, sealed)
            .await
    }

    fn org_scope(permit: &Permit, org: &ScopePath) -> Result<(), VaultError> {
        if org.kind() != ScopeKind::Organization {
            return Err(VaultError::Invalid(
                "keys belong to an organization: give ORG".into(),
            ));
        }
        scope_of(permit, Action::KeyRotate, org)
    }

    /// Starts a new key term for `org`; new writes use it at once.
    pub async fn rotate(&self, permit: &Permit, org: &ScopePath) -> Result<i64, VaultError> {
        Self::org_scope(permit, org)?;
        let keyring = self.keyring()?;
        self.scope_row(org).await?;
        keyring.rotate(&self.store, org.as_str()).await
    }

    /// Re-encrypts up to `limit` versions sealed under older terms with the
    /// newest term. Idempotent and resumable: call until `remaining == 0`.
    pub async fn rewrap(
        &self,
        permit: &Permit,
        org: &ScopePath,
        limit: i64,
    ) -> Result<RewrapProgress, VaultError> {
        Self::org_scope(permit, org)?;
        let keyring = self.keyring()?;
        self.scope_row(org).await?;
        let target = keyring.current_term(&self.store, org.as_str()).await?;
        let rows = self
            .store
            .versions_to_rewrap(org.as_str(), target, limit.clamp(1, 1000))
            .await?;
        let mut rewrapped = 0;
        if !rows.is_empty() {
            let new_key = keyring
                .reserve(&self.store, org.as_str(), rows.len() as i64)
                .await?;
            let term = u32::try_from(new_key.term)
                .map_err(|_| VaultError::Integrity("key term out of range".into()))?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let (Some(envelope), Ok(old)) = (
                    row.envelope.as_deref(),
                    keyring.term(&self.store, org.as_str(), row.key_term).await,
                ) else {
                    continue;
                };
                let v = row.version.to_be_bytes();
                let ctx = secret_context(org.as_str(), &row.scope, &row.name, &v);
                let plain = old.secrets.open(envelope, &ctx).map_err(|_| {
                    VaultError::Integrity(format!(
                        "version {} of {} in {}",
                        row.version, row.name, row.scope
                    ))
                })?;
                items.push(Rewrapped {
                    secret_id: row.secret_id,
                    version: row.version,
                    old_term: row.key_term,
                    new_term: new_key.term,
                    envelope: new_key.secrets.seal(term, &ctx, &plain)?,
                });
            }
            rewrapped = self.store.replace_envelopes(items).await?;
        }
        let remaining = self
            .store
            .term_usage(org.as_str())
            .await?
            .iter()
            .filter(|(t, _)| *t < target)
            .map(|(_, n)| n)
            .sum();
        Ok(RewrapProgress {
            target_term: target,
            rewrapped,
            remaining,
        })
    }

    /// Every key term of `org` with its usage.
    pub async fn key_status(
        &self,
        permit: &Permit,
        org: &ScopePath,
    ) -> Result<Vec<TermStatus>, VaultError> {
        Self::org_scope(permit, org)?;
        self.keyring()?;
        self.scope_row(org).await?;
        let usage: BTreeMap<i64, i64> = self
            .store
            .term_usage(org.as_str())
            .await?
            .into_iter()
            .collect();
        Ok(self
            .store
            .org_keys(org.as_str())
            .await?
            .into_iter()
            .map(|k| TermStatus {
                term: k.term,
                created_at: k.created_at,
                encryptions: k.encryptions,
                versions: usage.get(&k.term).copied().unwrap_or(0),
            })
            .collect())
    }
}
