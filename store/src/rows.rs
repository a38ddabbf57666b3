//! Row types. Envelopes and wrapped keys are ciphertext; nothing here holds
//! a plaintext secret.

/// The vault's seal configuration and wrapped root key (one row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealRow {
    /// JSON describing how the unseal key is obtained (no secrets).
    pub config: String,
    /// The root key, sealed under the unseal key.
    pub wrapped_root: Vec<u8>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// An organization, project, environment or service.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScopeRow {
    /// Full path, e.g. `acme/shop/prod`.
    pub path: String,
    /// `organization`, `project`, `environment` or `service`.
    pub kind: String,
    /// Enclosing scope's path.
    pub parent: Option<String>,
    /// The organization.
    pub org: String,
    /// Environment mode (environments only).
    pub mode: Option<String>,
    /// Versions kept per secret (environments only; `None` = default).
    pub max_versions: Option<i64>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// One key term of an organization.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgKeyRow {
    /// The organization.
    pub org: String,
    /// Key term, from 1.
    pub term: i64,
    /// The organization's HKDF salt for this term (not secret).
    pub salt: Vec<u8>,
    /// The organization key, sealed under the root key.
    pub wrapped: Vec<u8>,
    /// Upper bound of encryptions performed under this term.
    pub encryptions: i64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// A secret in a listing: name and metadata, never a value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretSummary {
    /// Scope path.
    pub scope: String,
    /// Secret name.
    pub name: String,
    /// Latest version number.
    pub latest: i64,
    /// Last write, ms since the epoch.
    pub updated_at: i64,
    /// Whether the latest version is soft-deleted or destroyed.
    pub latest_gone: i64,
}

/// One version of a secret.
#[derive(Clone, sqlx::FromRow)]
pub struct VersionRow {
    /// Internal secret id.
    pub secret_id: i64,
    /// Scope path.
    pub scope: String,
    /// Secret name.
    pub name: String,
    /// Version number, from 1.
    pub version: i64,
    /// Organization key term the envelope was sealed under.
    pub key_term: i64,
    /// The AEAD envelope; `None` once destroyed.
    pub envelope: Option<Vec<u8>>,
    /// Write time, ms since the epoch.
    pub created_at: i64,
    /// Soft-delete time.
    pub deleted_at: Option<i64>,
    /// Destruction time.
    pub destroyed_at: Option<i64>,
}

impl std::fmt::Debug for VersionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRow")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("key_term", &self.key_term)
            .finish_non_exhaustive()
    }
}

/// A secret write, as the store sees it.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Scope path (must exist).
    pub scope: String,
    /// The organization.
    pub org: String,
    /// Secret name.
    pub name: String,
    /// Compare-and-set: the version the caller expects to be latest (0 =
    /// must not exist yet). Never negative, and only on a request that
    /// writes a single secret (the vault validates both).
    pub cas: Option<i64>,
    /// Versions to keep; older ones are removed.
    pub max_versions: i64,
    /// Key term used by the sealer.
    pub key_term: i64,
}

/// Seals the value of `put` for `version`; runs inside the write transaction.
pub type Sealer = Box<dyn FnMut(&NewVersion, i64) -> Result<Vec<u8>, crate::StoreError> + Send>;

/// An API or session token's metadata (the token itself is never stored).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    /// Public token id.
    pub id: String,
    /// Principal the token authenticates as.
    pub principal: String,
    /// Human name.
    pub name: String,
    /// `api` (created with `token create`) or `session` (from a login).
    pub kind: String,
    /// 1 when the session was opened with a verified second factor.
    pub mfa: i64,
    /// Creation time.
    pub created_at: i64,
    /// Expiry, if any.
    pub expires_at: Option<i64>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Last authentication with it (updated at most once a minute).
    pub last_used_at: Option<i64>,
}

/// A token found by hash, with what authentication needs to know about its
/// principal.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenAuthRow {
    /// The token.
    #[sqlx(flatten)]
    pub token: TokenRow,
    /// The stored SHA-256 of the token (re-compared in constant time).
    pub hash: Vec<u8>,
    /// When the principal was disabled, if it was (NULL also when the
    /// principal row is missing, which authentication treats as unknown).
    pub principal_disabled_at: Option<i64>,
    /// Whether the principal row exists.
    pub principal_exists: i64,
}

/// A user or service account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PrincipalRow {
    /// `user:NAME` or `sa:NAME`.
    pub id: String,
    /// `user` or `service`.
    pub kind: String,
    /// Home organization (`None`: installation-wide).
    pub org: Option<String>,
    /// Argon2id PHC string, if a password is set.
    pub password: Option<String>,
    /// TOTP secret sealed under the root key, if enrolled (or enrolling).
    pub totp_sealed: Option<Vec<u8>>,
    /// 1 once the enrolment was confirmed with a valid code.
    pub totp_enabled: i64,
    /// Last accepted TOTP time step.
    pub totp_last_step: Option<i64>,
    /// Disabling time, if disabled.
    pub disabled_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
}

/// A role binding, with the custom role's source when the role is not
/// built in.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GrantRow {
    /// The principal holding it.
    pub principal: String,
    /// Role name.
    pub role: String,
    /// Scope path, `/` for the root.
    pub scope: String,
    /// The scope's organization (`None` at the root).
    pub org: Option<String>,
    /// The custom role's YAML (`None` for built-in roles or a dangling name).
    pub source: Option<String>,
    /// The custom role's revision.
    pub revision: Option<i64>,
    /// Creation time of the binding.
    pub created_at: i64,
}

/// A custom role of an organization.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleRow {
    /// The organization.
    pub org: String,
    /// Role name.
    pub name: String,
    /// The YAML it was applied from.
    pub source: String,
    /// Random per apply.
    pub revision: i64,
    /// Last apply, ms since the epoch.
    pub updated_at: i64,
}

/// An SSH public key of a principal.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SshKeyRow {
    /// `SHA256:...`.
    pub fingerprint: String,
    /// Owner.
    pub principal: String,
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `ALG BASE64`.
    pub public_key: String,
    /// Comment given when added.
    pub comment: String,
    /// Creation time.
    pub created_at: i64,
}

/// A workload-token signing key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    /// Key id (`kid` header).
    pub kid: String,
    /// PKCS#8 private key sealed under the root key.
    pub sealed: Vec<u8>,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored audit entry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    /// Position in its log (the Merkle leaf index), from 0.
    pub seq: i64,
    /// The canonical JSON entry (the exact leaf bytes).
    pub entry: String,
    /// Its RFC 6962 leaf hash, as computed when appended.
    pub leaf_hash: Vec<u8>,
}

/// The head of one audit log: its size and the sequencer's state (the
/// tree's compact range), as committed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogHead {
    /// Entries in the log.
    pub size: i64,
    /// Opaque to storage; owned by the [`Sequencer`].
    pub state: Vec<u8>,
}

/// An entry placed in its log by the [`Sequencer`].
#[derive(Debug, Clone)]
pub struct SequencedEntry {
    /// Its position.
    pub seq: i64,
    /// The final entry text.
    pub entry: String,
    /// Its leaf hash.
    pub leaf_hash: Vec<u8>,
}

/// A signed checkpoint of one log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckpointRow {
    /// The log.
    pub log: String,
    /// Tree size it commits to.
    pub size: i64,
    /// Root hash at that size.
    pub root: Vec<u8>,
    /// The C2SP signed note.
    pub note: String,
    /// Signing time, ms.
    pub created_at: i64,
    /// The tree's compact range at `size` (absent on rows from before it
    /// was kept).
    pub state: Option<Vec<u8>>,
}

/// Places audit entries in their log: assigns each its sequence number and
/// chain link and computes its leaf hash, extending the log's tree state.
/// Storage calls it inside the appending transaction, under the log's head
/// row lock, so replicas extend one tree; it does no hashing itself (the
/// audit crate supplies the implementation).
pub trait Sequencer: Send + Sync + 'static {
    /// The state of an empty log.
    fn empty_state(&self) -> Vec<u8>;
    /// Appends `entries` (in order) to the log `log` whose head is `head`.
    fn sequence(
        &self,
        log: &str,
        head: LogHead,
        entries: Vec<String>,
    ) -> Result<(Vec<SequencedEntry>, LogHead), String>;
    /// For appending `count` leaves to a log of `size`: the stored hashes
    /// [`Sequencer::tiles`] needs, per level at which a tile completes, as
    /// `(level, from, to)`: level 0 means leaf hashes `[from, to)`, a
    /// higher level the roots of tiles `[from, to)` of the level below.
    fn open_tiles(&self, size: u64, count: u64) -> Result<Vec<(u8, u64, u64)>, String>;
    /// The full tiles completed by appending `leaves` (leaf hashes) to a log
    /// of `size`, given the hashes [`Sequencer::open_tiles`] named.
    fn tiles(
        &self,
        size: u64,
        open: Vec<Vec<Vec<u8>>>,
        leaves: &[Vec<u8>],
    ) -> Result<Vec<TileRow>, String>;
}

/// A full tile of an audit log's Merkle tree (C2SP tlog-tiles geometry):
/// 256 subtree hashes of `256^level` leaves each, and their root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileRow {
    /// 0 for leaf hashes.
    pub level: i64,
    /// The tile's index within its level.
    pub idx: i64,
    /// 256 hashes of 32 bytes.
    pub hashes: Vec<u8>,
    /// Their root (hash `idx` of level `level + 1`).
    pub root: Vec<u8>,
}

/// Re-encryption of one version under a newer key term.
#[derive(Clone)]
pub struct Rewrapped {
    /// Internal secret id.
    pub secret_id: i64,
    /// Version number.
    pub version: i64,
    /// The term the old envelope was sealed under.
    pub old_term: i64,
    /// The new term.
    pub new_term: i64,
    /// The new envelope.
    pub envelope: Vec<u8>,
}

/// A change to the state of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChange {
    /// Soft-delete: hidden from reads, recoverable.
    Delete,
    /// Undo a soft delete.
    Undelete,
    /// Erase the ciphertext for good.
    Destroy,
}

impl VersionChange {
    /// The statement: `$1` secret id, `$2` version, `$3` now (not for
    /// undelete). Destroyed versions never change again.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Delete => {
                "UPDATE secret_versions SET deleted_at = $3 WHERE secret_id = $1 \
                 AND version = $2 AND deleted_at IS NULL AND destroyed_at IS NULL"
            }
            Self::Undelete => {
                "UPDATE secret_versions SET deleted_at = NULL WHERE secret_id = $1 \
                 AND version = $2 AND deleted_at IS NOT NULL AND destroyed_at IS NULL"
            }
            Self::Destroy => {
                "UPDATE secret_versions SET envelope = NULL, destroyed_at = $3 \
                 WHERE secret_id = $1 AND version = $2 AND destroyed_at IS NULL"
            }
        }
    }
}
