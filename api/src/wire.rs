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
    /// Shares submitted so far.
    pub progress: u8,
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
