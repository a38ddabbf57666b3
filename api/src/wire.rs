//! Request and response bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use warden_types::SecretValue;

/// A secret value on the wire: deserialized directly into a
/// [`SecretValue`]; serialized only where a response must carry it.
#[derive(Debug, Clone)]
pub struct WireValue(pub SecretValue);

impl<'de> Deserialize<'de> for WireValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretValue::new(s)
            .map(WireValue)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for WireValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

/// Every error response: `{"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's machine code and human message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `sealed`.
    pub code: String,
    /// What went wrong, for a human.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/v1/sys/status`, and the answer of init/unseal/seal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SysStatus {
    /// A root key exists.
    pub initialized: bool,
    /// No key material in memory.
    pub sealed: bool,
    /// `passphrase`, `shamir` or `dev_key_file`.
    pub method: Option<String>,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares submitted so far (the most advanced attempt's).
    pub progress: u8,
    /// In an unseal answer while a Shamir attempt is in progress: the
    /// attempt's nonce, to send with its next share (`warden operator
    /// unseal --nonce`). Shares without it start a new attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `POST /api/v1/sys/init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// `passphrase` or `shamir`.
    pub method: String,
    /// For `passphrase`: at least 12 characters.
    #[serde(default)]
    pub passphrase: Option<WireValue>,
    /// For `shamir`: shares dealt.
    #[serde(default)]
    pub shares: Option<u8>,
    /// For `shamir`: shares needed.
    #[serde(default)]
    pub threshold: Option<u8>,
}

/// The answer to init: shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitResponse {
    /// The bootstrap owner's API token.
    pub root_token: WireValue,
    /// Shamir shares, one per operator.
    pub shares: Vec<WireValue>,
}

/// `POST /api/v1/sys/unseal`: one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// The passphrase.
    #[serde(default)]
    pub passphrase: Option<WireValue>,
    /// One Shamir share.
    #[serde(default)]
    pub share: Option<WireValue>,
    /// The Shamir attempt this share belongs to (from the answer to its
    /// first share); absent to start one.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// `POST /api/v1/scopes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateScope {
    /// `organization`, `project`, `environment` or `service`.
    pub kind: String,
    /// The path, e.g. `acme/shop/prod`.
    pub path: String,
    /// Environments only: `production`, `staging` or `development`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Environments only: versions kept per secret (1-100, default 10).
    #[serde(default)]
    pub max_versions: Option<u32>,
}

/// A scope in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Scope {
    /// Full path.
    pub path: String,
    /// Its level.
    pub kind: String,
    /// Environment mode.
    pub mode: Option<String>,
    /// Versions kept (environments).
    pub max_versions: Option<i64>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// `GET /api/v1/scopes[/{parent}]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeList {
    /// The scopes.
    pub scopes: Vec<Scope>,
}

/// `PUT /api/v1/secrets/{scope}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecrets {
    /// Name to value.
    pub values: BTreeMap<String, WireValue>,
    /// Check-and-set: the current version expected (0 = must not exist).
    #[serde(default)]
    pub cas: Option<i64>,
}

/// A written version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Written {
    /// Secret name.
    pub name: String,
    /// New version.
    pub version: i64,
}

/// Answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutResponse {
    /// One per secret written.
    pub written: Vec<Written>,
}

/// `GET /api/v1/secret/{scope}?key=K[&version=N]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretResponse {
    /// Scope path.
    pub scope: String,
    /// Secret name.
    pub name: String,
    /// The value.
    pub value: WireValue,
    /// Its version metadata.
    pub meta: VersionInfo,
}

/// A version's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
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

/// A secret in a listing (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Latest version.
    pub latest: i64,
    /// Last write, ms.
    pub updated_at: i64,
    /// Whether the latest version is deleted or destroyed.
    pub latest_deleted: bool,
}

/// `GET /api/v1/secrets/{scope}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretList {
    /// Scope path.
    pub scope: String,
    /// The secrets.
    pub secrets: Vec<SecretInfo>,
}

/// `GET /api/v1/secret-history/{scope}?key=K`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    /// Secret name.
    pub name: String,
    /// Versions, newest first.
    pub versions: Vec<VersionInfo>,
}

/// Body of delete, undelete and destroy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsRequest {
    /// The secret.
    pub key: String,
    /// Versions (empty = latest; destroy requires them).
    #[serde(default)]
    pub versions: Vec<i64>,
}

/// Answer to delete, undelete and destroy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionsChanged {
    /// Versions whose state changed.
    pub changed: Vec<i64>,
}

/// `GET /api/v1/resolve/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    /// Service path.
    pub service: String,
    /// Effective values.
    pub values: BTreeMap<String, WireValue>,
}

/// `POST /api/v1/keys/{org}/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotated {
    /// The new current term.
    pub term: i64,
}

/// `POST /api/v1/keys/{org}/rewrap?limit=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewrapStep {
    /// The newest term.
    pub target_term: i64,
    /// Re-encrypted by this call.
    pub rewrapped: u64,
    /// Still under older terms.
    pub remaining: i64,
}

/// A key term.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyTerm {
    /// Term number.
    pub term: i64,
    /// Creation time, ms.
    pub created_at: i64,
    /// Encryptions reserved (upper bound).
    pub encryptions: i64,
    /// Live versions under it.
    pub versions: i64,
}

/// `GET /api/v1/keys/{org}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Organization.
    pub org: String,
    /// Newest term.
    pub current_term: i64,
    /// Every term.
    pub terms: Vec<KeyTerm>,
    /// Rotation threshold per term.
    pub rotate_at: i64,
}

/// `GET /api/v1/auth/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    /// Principal id (`user:NAME`, `sa:NAME`, `workload:PATH`).
    pub principal: String,
    /// How this request authenticated (`token`, `session`, `session+mfa`,
    /// `workload`).
    pub method: String,
    /// The public id of the credential used.
    pub token_id: String,
    /// Whether this session passed a second factor.
    pub mfa: bool,
    /// Role bindings in force.
    pub bindings: Vec<BindingInfo>,
}

/// A role bound to a principal at a scope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindingInfo {
    /// Who holds it.
    pub principal: String,
    /// Role name.
    pub role: String,
    /// `/`, `ORG`, `ORG/PROJECT` or `ORG/PROJECT/ENV` (and everything below).
    pub scope: String,
}

/// `POST /api/v1/bindings`.
pub type GrantRequest = BindingInfo;

/// `POST /api/v1/bindings/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Who holds it.
    pub principal: String,
    /// Role name.
    pub role: String,
    /// Where it is bound.
    pub scope: String,
    /// Break-glass: a root Owner revokes a binding the rules would not let
    /// it revoke (one that restricts the Owner itself, say). Audited as a
    /// break-glass operation.
    #[serde(default)]
    pub break_glass: bool,
}

/// `GET /api/v1/bindings/{scope}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingList {
    /// Bindings at or below the scope's organization.
    pub bindings: Vec<BindingInfo>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name (without `user:`).
    pub user: String,
    /// Password.
    pub password: WireValue,
    /// Current TOTP code, required once MFA is enrolled.
    #[serde(default)]
    pub totp: Option<String>,
}

/// A token's metadata (never the token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id, `tok_...`.
    pub id: String,
    /// Owner.
    pub principal: String,
    /// Name given at creation.
    pub name: String,
    /// `api` or `session`.
    pub kind: String,
    /// Opened with a second factor.
    pub mfa: bool,
    /// Creation time, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: Option<i64>,
    /// Revocation time, ms.
    pub revoked_at: Option<i64>,
    /// Last use, ms (to the minute).
    pub last_used_at: Option<i64>,
}

/// A newly created token: shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The bearer token.
    pub token: WireValue,
    /// Its metadata.
    pub info: TokenInfo,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name to recognise it by.
    pub name: String,
    /// Lifetime in seconds (none: until revoked).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// For a service account (`sa:NAME`); default: the caller.
    #[serde(default)]
    pub principal: Option<String>,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/v1/auth/mfa/enroll`: the TOTP secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MfaEnrollment {
    /// Base32 secret for manual entry.
    pub secret: WireValue,
    /// `otpauth://` URI for authenticator apps.
    pub otpauth_uri: WireValue,
}

/// A TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// Six digits.
    pub code: String,
}

/// `PUT /api/v1/auth/password`, and the password of a new user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The new password (12 to 1024 bytes).
    pub password: WireValue,
    /// The current password: required to change one that is set, unless
    /// the caller's session was opened with MFA.
    #[serde(default)]
    pub current_password: Option<WireValue>,
}

/// `POST /api/v1/auth/mfa/enroll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaEnrollRequest {
    /// The current password: required when the account has one (a stolen
    /// API token alone must not be able to bind a second factor).
    #[serde(default)]
    pub current_password: Option<WireValue>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Name (lowercase letters, digits, `-`).
    pub name: String,
    /// `user` (a human) or `service` (a service account).
    #[serde(default = "default_user_kind")]
    pub kind: String,
    /// Home organization (none: installation-wide; needs a root binding).
    #[serde(default)]
    pub org: Option<String>,
    /// Optional password for login (users only).
    #[serde(default)]
    pub password: Option<WireValue>,
}

fn default_user_kind() -> String {
    "user".to_owned()
}

/// A user or service account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    /// `user:NAME` or `sa:NAME`.
    pub id: String,
    /// `user` or `service`.
    pub kind: String,
    /// Home organization.
    pub org: Option<String>,
    /// A password is set.
    pub password_set: bool,
    /// TOTP is enrolled and confirmed.
    pub mfa_enabled: bool,
    /// Disabling time, ms.
    pub disabled_at: Option<i64>,
    /// Creation time, ms.
    pub created_at: i64,
}

/// `GET /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    /// Sorted by id.
    pub users: Vec<UserInfo>,
}

/// `POST /api/v1/users/{id}/disable`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disabled {
    /// The principal disabled.
    pub principal: String,
    /// Tokens and sessions revoked with it.
    pub tokens_revoked: u64,
}

/// `POST /api/v1/workload-tokens/{service}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadTokenRequest {
    /// Lifetime in seconds (default 900, at most 3600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A workload token: shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadToken {
    /// The JWT.
    pub token: WireValue,
    /// `workload:ORG/PROJECT/ENV/SERVICE`.
    pub principal: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// `POST /api/v1/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyAdd {
    /// One `authorized_keys` line: `ALG BASE64 [COMMENT]`.
    pub public_key: String,
}

/// An SSH public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKeyInfo {
    /// `SHA256:...`.
    pub fingerprint: String,
    /// Owner.
    pub principal: String,
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `ALG BASE64`.
    pub public_key: String,
    /// Comment.
    pub comment: String,
    /// Creation time, ms.
    pub created_at: i64,
}

/// `GET /api/v1/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKeyList {
    /// The caller's keys.
    pub keys: Vec<SshKeyInfo>,
}

/// `PUT /api/v1/roles/{org}`: a role file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleApply {
    /// The role's YAML.
    pub source: String,
}

/// A role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleInfo {
    /// Name.
    pub name: String,
    /// Organization (none for built-in roles).
    pub org: Option<String>,
    /// Built in (read-only).
    pub builtin: bool,
    /// Its description.
    pub description: String,
    /// The YAML.
    pub source: String,
}

/// `GET /api/v1/roles/{org}`: built-in roles, then the organization's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleList {
    /// Roles.
    pub roles: Vec<RoleInfo>,
}

/// `POST /api/v1/policy/check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// Principal id.
    pub principal: String,
    /// `resource.verb`.
    pub action: String,
    /// `/` or a scope path.
    pub path: String,
}

/// A decision and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// Allowed.
    pub allowed: bool,
    /// Principal checked.
    pub principal: String,
    /// Action checked.
    pub action: String,
    /// Resource checked.
    pub path: String,
    /// The environment mode the decision used.
    pub mode: Option<String>,
    /// The deciding role, if a rule decided.
    pub role: Option<String>,
    /// The deciding binding's scope.
    pub binding: Option<String>,
    /// The deciding rule's number in the role file.
    pub rule: Option<usize>,
    /// One line for humans.
    pub explanation: String,
}

/// `GET /api/v1/audit/{log}/entries`: one page of a log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntries {
    /// `system` or an organization.
    pub log: String,
    /// Matching entries, in sequence order.
    pub entries: Vec<serde_json::Value>,
    /// Where the next page starts (`from=`); equal to the log's size at
    /// the end.
    pub next_seq: i64,
}

/// `GET /api/v1/audit/{log}/checkpoint`: the newest signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The log.
    pub log: String,
    /// Tree size.
    pub size: i64,
    /// Root hash, hex.
    pub root: String,
    /// The C2SP signed note.
    pub note: String,
    /// The verifier key (`name+keyid+base64`).
    pub key: String,
}

/// `GET /api/v1/audit/{log}/proof?seq=N`: inclusion of one entry in the
/// tree of the newest checkpoint (RFC 9162 §2.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditProof {
    /// The log.
    pub log: String,
    /// The entry's sequence number (leaf index).
    pub seq: i64,
    /// The entry (exact leaf bytes).
    pub entry: String,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
    /// Audit path, hex, leaf to root.
    pub proof: Vec<String>,
    /// The checkpoint proven against.
    pub checkpoint: AuditCheckpoint,
}
