//! Request and response bodies.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
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

impl JsonSchema for WireValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretText".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The limit is in bytes; a character is at most four.
        json_schema!({
            "type": "string",
            "maxLength": warden_types::MAX_VALUE_BYTES / 4,
            "description": "UTF-8 text of at most 64 KiB; shown only where the operation returns it",
        })
    }
}

impl Serialize for WireValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

/// One shape of a `oneOf`: a closed object named `title` (generated
/// clients name the type after it).
fn variant(title: &str, required: &[&str], properties: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "title": title,
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn password(_: &mut SchemaGenerator) -> Schema {
    // The limits are in bytes; a character is at most four.
    json_schema!({
        "type": "string",
        "minLength": 12,
        "maxLength": 256,
        "pattern": "^[^\\u0000]*$",
        "description": "12 to 1024 bytes of UTF-8, no NUL",
    })
}

fn optional_password(g: &mut SchemaGenerator) -> Schema {
    let mut s = password(g);
    s.insert("type".into(), serde_json::json!(["string", "null"]));
    s
}

fn secret_values(g: &mut SchemaGenerator) -> Schema {
    let value = g.subschema_for::<WireValue>();
    json_schema!({
        "type": "object",
        "propertyNames": {"pattern": warden_types::pattern::SECRET_NAME},
        "additionalProperties": value,
        "minProperties": 1,
        "maxProperties": warden_types::MAX_KEYS_PER_REQUEST,
    })
}

/// Every error response: `{"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's machine code and human message.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `sealed`.
    pub code: String,
    /// What went wrong, for a human.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/v1/sys/gateway`: where the shell gateway listens and the host
/// key it presents (so users can check it on their first connection).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct GatewayStatus {
    /// The SSH listener's address, if this server serves SSH.
    pub ssh_address: Option<String>,
    /// The SSH host key's fingerprint (`SHA256:...`, as `ssh-keygen -l`
    /// prints it); unknown until the vault is first unsealed.
    pub ssh_host_key_fingerprint: Option<String>,
}

/// `GET /api/v1/sys/status`, and the answer of init/unseal/seal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
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

/// `GET /readyz` (200 when ready, 503 otherwise).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Readiness {
    /// Unsealed and the database answers.
    pub ready: bool,
    /// The vault is sealed.
    pub sealed: bool,
    /// `ok` or `unreachable`.
    pub database: String,
}

/// `GET /api/v1/audit-key`: the checkpoint verifier key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditKey {
    /// The C2SP note verifier key, `name+keyid+base64`.
    pub key: String,
    /// Its fingerprint.
    pub fingerprint: String,
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

impl JsonSchema for InitRequest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InitRequest".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let passphrase = password(g);
        json_schema!({
            "description": "A passphrase, or Shamir shares (2 <= threshold <= shares <= 255). \
                            Refused with 409 once initialized.",
            "oneOf": [
                variant(
                    "InitPassphrase",
                    &["method", "passphrase"],
                    serde_json::json!({"method": {"const": "passphrase"}, "passphrase": passphrase}),
                ),
                variant(
                    "InitShamir",
                    &["method", "shares", "threshold"],
                    serde_json::json!({
                        "method": {"const": "shamir"},
                        "shares": {"type": "integer", "minimum": 2, "maximum": 255},
                        "threshold": {"type": "integer", "minimum": 2, "maximum": 255},
                    }),
                ),
            ],
        })
    }
}

/// The answer to init: shown once.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

/// A Shamir share as `warden operator init` prints it: 33 bytes of base64,
/// the first (the share's index) not zero.
const SHARE: &str =
    "^([B-Za-z0-9+/][A-Za-z0-9+/]|A[E-Za-z0-9+/])[A-Za-z0-9+/]{40}[AEIMQUYcgkosw048]=$";

impl JsonSchema for UnsealRequest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnsealRequest".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let passphrase = g.subschema_for::<WireValue>();
        json_schema!({
            "description": "The passphrase, or one Shamir share (with the nonce of the attempt it \
                            continues). A vault answers 409 to the method it does not use.",
            "oneOf": [
                variant(
                    "UnsealPassphrase",
                    &["passphrase"],
                    serde_json::json!({"passphrase": passphrase}),
                ),
                variant(
                    "UnsealShare",
                    &["share"],
                    serde_json::json!({
                        "share": {"type": "string", "pattern": SHARE},
                        "nonce": {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$"},
                    }),
                ),
            ],
        })
    }
}

/// `POST /api/v1/scopes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateScope {
    /// `organization`, `project`, `environment` or `service`.
    pub kind: String,
    /// The path, e.g. `acme/shop/prod`: as many names as `kind` is deep.
    pub path: String,
    /// Environments only (and required there): `production`, `staging` or
    /// `development`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Environments only: versions kept per secret (1-100, default 10).
    #[serde(default)]
    pub max_versions: Option<u32>,
}

impl JsonSchema for CreateScope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CreateScope".into()
    }

    /// One shape per kind: the path as deep as the kind, `mode` required
    /// for an environment and allowed nowhere else.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        use warden_types::pattern::{ENV_PATH, NAME, PROJECT_PATH, SERVICE_PATH};
        let plain = |title: &str, kind: &str, pattern: &str| {
            let properties = serde_json::json!({
                "kind": {"const": kind},
                "path": {"type": "string", "pattern": pattern},
            });
            variant(title, &["kind", "path"], properties)
        };
        json_schema!({
            "description": "A new organization, project, environment or service under an existing parent. \
                            The organization name `system` is taken (it names the installation's own audit log).",
            "oneOf": [
                plain("CreateOrganization", "organization", NAME),
                plain("CreateProject", "project", PROJECT_PATH),
                variant(
                    "CreateEnvironment",
                    &["kind", "path", "mode"],
                    serde_json::json!({
                        "kind": {"const": "environment"},
                        "path": {"type": "string", "pattern": ENV_PATH},
                        "mode": {"enum": ["production", "staging", "development"]},
                        "max_versions": {"type": "integer", "minimum": 1, "maximum": 100},
                    }),
                ),
                plain("CreateService", "service", SERVICE_PATH),
            ],
        })
    }
}

/// A scope in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScopeList {
    /// The scopes.
    pub scopes: Vec<Scope>,
}

/// `PUT /api/v1/secrets/{scope}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecrets {
    /// Name to value (1 to 100 secrets).
    #[schemars(schema_with = "secret_values")]
    pub values: BTreeMap<String, WireValue>,
    /// Check-and-set: the current version expected (0 = must not exist).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub cas: Option<i64>,
}

/// A written version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Written {
    /// Secret name.
    pub name: String,
    /// New version.
    pub version: i64,
}

/// Answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PutResponse {
    /// One per secret written.
    pub written: Vec<Written>,
}

/// `GET /api/v1/secret/{scope}?key=K[&version=N]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretList {
    /// Scope path.
    pub scope: String,
    /// The secrets.
    pub secrets: Vec<SecretInfo>,
}

/// `GET /api/v1/secret-history/{scope}?key=K`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct History {
    /// Secret name.
    pub name: String,
    /// Versions, newest first.
    pub versions: Vec<VersionInfo>,
}

/// Body of delete, undelete and destroy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionsRequest {
    /// The secret.
    #[schemars(regex(pattern = warden_types::pattern::SECRET_NAME))]
    pub key: String,
    /// Versions (empty = latest; destroy requires them).
    #[serde(default)]
    #[schemars(inner(range(min = 1)), length(max = 100))]
    pub versions: Vec<i64>,
}

/// Body of destroy: the versions must be named.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestroyRequest {
    /// The secret.
    #[schemars(regex(pattern = warden_types::pattern::SECRET_NAME))]
    pub key: String,
    /// The versions to erase.
    #[schemars(inner(range(min = 1)), length(min = 1, max = 100))]
    pub versions: Vec<i64>,
}

impl From<DestroyRequest> for VersionsRequest {
    fn from(d: DestroyRequest) -> Self {
        VersionsRequest {
            key: d.key,
            versions: d.versions,
        }
    }
}

/// Answer to delete, undelete and destroy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionsChanged {
    /// Versions whose state changed.
    pub changed: Vec<i64>,
}

/// `GET /api/v1/resolve/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Resolved {
    /// Service path.
    pub service: String,
    /// Effective values.
    pub values: BTreeMap<String, WireValue>,
    /// For each name, the stored version its value came from.
    #[serde(default)]
    pub versions: BTreeMap<String, ServedVersion>,
}

/// The stored version a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServedVersion {
    /// The scope holding it: the service or one of its ancestors.
    pub scope: String,
    /// Its version there.
    pub version: i64,
}

/// The WebSocket subprotocol of `GET /api/v1/watch/{service}`.
pub const SECRET_WATCH_PROTOCOL: &str = "v1.watch.warden.dev";

/// What the server sends on a secret watch: the service's resolved secrets,
/// first at once and then each time they change (a text message each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchUpdate {
    /// Counts this watch's updates from 1; reports name the one they are
    /// about.
    pub generation: u64,
    /// The resolved secrets.
    #[serde(flatten)]
    pub resolved: Resolved,
}

/// What a watcher reports back about an update it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum WatchReport {
    /// Delivered to the workload (templates rendered, signal sent or the
    /// command restarted); its holders' view now shows these versions.
    Applied {
        /// The update's generation.
        generation: u64,
    },
    /// Kept out: the workload goes on with what it had.
    Failed {
        /// The update's generation.
        generation: u64,
        /// Why (never a value).
        error: String,
    },
}

/// `GET /api/v1/secret-holders/{scope}?name=NAME`: which pods hold which
/// version of a secret right now, from the live watches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretHolders {
    /// The scope holding the secret.
    pub scope: String,
    /// The secret's name.
    pub name: String,
    /// Its latest version, if it has one that is not deleted.
    pub latest: Option<i64>,
    /// One entry per watching pod whose service takes this secret from
    /// this scope.
    pub holders: Vec<SecretHolder>,
}

/// One watching pod in [`SecretHolders`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretHolder {
    /// The pod's service.
    pub service: String,
    /// The pod, as its wrapper names it.
    pub pod: String,
    /// The version it holds (delivered and applied).
    pub version: i64,
    /// When it applied it, ms since the epoch.
    pub applied_at: i64,
    /// Whether that is the latest version.
    pub current: bool,
}

/// `POST /api/v1/keys/{org}/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Rotated {
    /// The new current term.
    pub term: i64,
}

/// `POST /api/v1/keys/{org}/rewrap?limit=N`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RewrapStep {
    /// The newest term.
    pub target_term: i64,
    /// Re-encrypted by this call.
    pub rewrapped: u64,
    /// Still under older terms.
    pub remaining: i64,
}

/// A key term.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct BindingInfo {
    /// Who holds it: a user or service account.
    #[schemars(regex(pattern = warden_types::pattern::MEMBER))]
    pub principal: String,
    /// Role name.
    #[schemars(regex(pattern = warden_types::pattern::NAME))]
    pub role: String,
    /// `/`, `ORG`, `ORG/PROJECT` or `ORG/PROJECT/ENV` (and everything below).
    #[schemars(regex(pattern = warden_types::pattern::BINDING_SCOPE))]
    pub scope: String,
}

/// `POST /api/v1/bindings`.
pub type GrantRequest = BindingInfo;

/// `POST /api/v1/bindings/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Who holds it: a user or service account.
    #[schemars(regex(pattern = warden_types::pattern::MEMBER))]
    pub principal: String,
    /// Role name.
    #[schemars(regex(pattern = warden_types::pattern::NAME))]
    pub role: String,
    /// Where it is bound.
    #[schemars(regex(pattern = warden_types::pattern::BINDING_SCOPE))]
    pub scope: String,
    /// Break-glass: a root Owner revokes a binding the rules would not let
    /// it revoke (one that restricts the Owner itself, say). Audited as a
    /// break-glass operation.
    #[serde(default)]
    pub break_glass: bool,
}

/// `GET /api/v1/bindings/{scope}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BindingList {
    /// Bindings at or below the scope's organization.
    pub bindings: Vec<BindingInfo>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name (without `user:`): `NAME`, or `NAME@ORG` for a member of
    /// an organization.
    #[schemars(regex(pattern = warden_types::pattern::LOGIN))]
    pub user: String,
    /// Password.
    #[schemars(schema_with = "password")]
    pub password: WireValue,
    /// Current TOTP code, required once MFA is enrolled.
    #[serde(default)]
    #[schemars(regex(pattern = "^[0-9]{6}$"))]
    pub totp: Option<String>,
}

/// A token's metadata (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    /// The bearer token.
    pub token: WireValue,
    /// Its metadata.
    pub info: TokenInfo,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name to recognise it by: 1-64 characters, no control characters.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    )]
    pub name: String,
    /// Lifetime in seconds (default and most: the server's
    /// `max_token_ttl_secs`).
    #[serde(default)]
    #[schemars(range(min = 60))]
    pub ttl_seconds: Option<u64>,
    /// For a service account (`sa:NAME`); default: the caller.
    #[serde(default)]
    #[schemars(regex(pattern = warden_types::pattern::MEMBER))]
    pub principal: Option<String>,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/v1/auth/mfa/enroll`: the TOTP secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MfaEnrollment {
    /// Base32 secret for manual entry.
    pub secret: WireValue,
    /// `otpauth://` URI for authenticator apps.
    pub otpauth_uri: WireValue,
}

/// A TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// Six digits.
    #[schemars(regex(pattern = "^[0-9]{6}$"))]
    pub code: String,
}

/// `PUT /api/v1/auth/password`, and the password of a new user.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The new password (12 to 1024 bytes).
    #[schemars(schema_with = "password")]
    pub password: WireValue,
    /// The current password: required to change one that is set, unless
    /// the caller's session was opened with MFA.
    #[serde(default)]
    pub current_password: Option<WireValue>,
}

/// `POST /api/v1/auth/mfa/enroll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaEnrollRequest {
    /// The current password: required when the account has one (a stolen
    /// API token alone must not be able to bind a second factor).
    #[serde(default)]
    pub current_password: Option<WireValue>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Name (lowercase letters, digits, `-`).
    #[schemars(regex(pattern = warden_types::pattern::NAME))]
    pub name: String,
    /// `user` (a human) or `service` (a service account).
    #[serde(default = "default_user_kind")]
    #[schemars(extend("enum" = ["user", "service"]))]
    pub kind: String,
    /// Home organization (none: installation-wide; needs a root binding).
    #[serde(default)]
    #[schemars(regex(pattern = warden_types::pattern::NAME))]
    pub org: Option<String>,
    /// Optional password for login (users only).
    #[serde(default)]
    #[schemars(schema_with = "optional_password")]
    pub password: Option<WireValue>,
}

fn default_user_kind() -> String {
    "user".to_owned()
}

/// A user or service account.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    /// Sorted by id.
    pub users: Vec<UserInfo>,
}

/// `POST /api/v1/users/{id}/disable`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Disabled {
    /// The principal disabled.
    pub principal: String,
    /// Tokens and sessions revoked with it.
    pub tokens_revoked: u64,
}

/// `POST /api/v1/workload-tokens/{service}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadTokenRequest {
    /// Lifetime in seconds (default 900, at most 3600).
    #[serde(default)]
    #[schemars(range(min = 60, max = 3600))]
    pub ttl_seconds: Option<u64>,
}

/// A workload token: shown once.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadToken {
    /// The JWT.
    pub token: WireValue,
    /// `workload:ORG/PROJECT/ENV/SERVICE`.
    pub principal: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// `POST /api/v1/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyAdd {
    /// One `authorized_keys` line: `ALG BASE64 [COMMENT]`.
    #[schemars(length(max = 16384))]
    pub public_key: String,
}

/// An SSH public key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyList {
    /// The caller's keys.
    pub keys: Vec<SshKeyInfo>,
}

/// `PUT /api/v1/roles/{org}`: a role file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleApply {
    /// The role's YAML.
    pub source: String,
}

/// A role.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoleList {
    /// Roles.
    pub roles: Vec<RoleInfo>,
}

/// `POST /api/v1/policy/check`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// A user or service account (workloads are checked by their token).
    #[schemars(regex(pattern = warden_types::pattern::MEMBER))]
    pub principal: String,
    /// `resource.verb` (the document lists every action).
    pub action: String,
    /// `/` or a scope path.
    #[schemars(regex(pattern = warden_types::pattern::RESOURCE))]
    pub path: String,
}

/// A decision and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    /// For an allowed `shell.exec`: how the session would run, combining
    /// the `session:` of every role allowing it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSettings>,
}

/// Effective session settings (`session:` in role files, combined).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionSettings {
    /// The session ends after this many seconds (the gateway's own
    /// maximum applies too).
    pub max_length_secs: Option<u64>,
    /// The session ends after this many seconds without input or output.
    pub idle_timeout_secs: Option<u64>,
    /// Whether input is recorded besides output.
    pub record_input: bool,
}

/// `GET /api/v1/audit/{log}/entries`: one page of a log.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntries {
    /// `system` or an organization.
    pub log: String,
    /// Matching entries, in sequence order (each the canonical JSON
    /// object of an entry, schema version in `v`).
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub entries: Vec<serde_json::Value>,
    /// Where the next page starts (`from=`); equal to the log's size at
    /// the end.
    pub next_seq: i64,
}

/// `GET /api/v1/audit/{log}/checkpoint`: the newest signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

/// `PUT /api/v1/workloads/{service}`: the service's workload, as the YAML
/// document `warden service apply -f` reads (field reference in
/// docs/workloads.md). Errors name the field and the line.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadApply {
    /// The YAML document.
    #[schemars(length(max = 65536))]
    pub spec: String,
}

/// `POST /api/v1/workload-control/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadControl {
    /// `stop` (scale to zero, keep the spec), `start`, `restart` (rolling,
    /// one pod at a time) or `delete` (stop and forget the spec).
    #[schemars(regex(pattern = r"^(stop|start|restart|delete)$"))]
    pub action: String,
}

/// `POST /api/v1/workload-scale/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadScale {
    /// Pods wanted (0 to 64); the rest of the spec is kept.
    #[schemars(range(max = 64))]
    pub replicas: u32,
}

/// A pod, as its cluster's agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PodInfo {
    /// The pod's name (unique in its cluster).
    pub name: String,
    /// `org/project/env/service`.
    pub service: String,
    /// `Pending` (starting or waiting to restart), `Running`, `Succeeded`,
    /// `Failed` or `Terminating`.
    pub phase: String,
    /// Running and not terminating.
    pub ready: bool,
    /// How many times the workload was restarted.
    pub restarts: u32,
    /// When the current run started, ms since the epoch.
    pub started_at_ms: Option<u64>,
    /// How the last run ended, e.g. `exit 1 (Error)`, `signal 9 (OOMKilled)`.
    pub last_exit: Option<String>,
    /// The node (local runtime) or Kubernetes node.
    pub node: String,
    /// The isolation the pod got, said plainly (never silently weaker).
    pub isolation: String,
}

/// The pods of an environment or a service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PodList {
    /// The cluster the environment runs on.
    pub cluster: String,
    /// Its pods, by name.
    pub pods: Vec<PodInfo>,
}

/// `GET /api/v1/pod-logs/{service}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodLogsQuery {
    /// The pod (one of the service's).
    #[schemars(length(min = 1, max = 253))]
    pub pod: String,
    /// Keep streaming new output until the pod is gone.
    #[serde(default)]
    pub follow: bool,
    /// Start with only the last N lines.
    #[schemars(range(max = 100000))]
    pub tail: Option<u32>,
}

/// `GET /api/v1/shell` (a WebSocket speaking `v5.channel.k8s.io`).
/// `command` repeats, one argument each, as `kubectl exec` sends it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellQuery {
    /// `ORG/PROJECT/ENV/SERVICE` (its first ready pod) or
    /// `ORG/PROJECT/ENV/SERVICE/POD`.
    #[schemars(regex(pattern = warden_types::pattern::SHELL_TARGET), length(max = 512))]
    pub target: String,
    /// The program and its arguments; none: a login shell.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub command: Vec<String>,
    /// Allocate a terminal (stderr is then merged into stdout).
    #[serde(default)]
    pub tty: bool,
}

/// `POST /api/v1/clusters/{name}/join-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// Lifetime in seconds (default 900, at most 86400).
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: Option<u64>,
}

/// A join token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JoinToken {
    /// The cluster it enrolls (created with the token if new).
    pub cluster: String,
    /// The token: `warden agent --join-token TOKEN`.
    pub token: String,
    /// When it stops working, ms.
    pub expires_at: i64,
}

/// `POST /api/v1/agents/enroll`: an agent's first call.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The join token.
    #[schemars(length(min = 1, max = 128))]
    pub token: String,
    /// A PKCS#10 certificate request (PEM) for the agent's own key (the
    /// whole request stays under the 8 KiB limit of unauthenticated routes).
    #[schemars(length(min = 1, max = 6144))]
    pub csr: String,
}

/// What an enrolled agent needs to connect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Enrolled {
    /// The cluster the agent serves.
    pub cluster: String,
    /// Its client certificate (PEM), valid for a year.
    pub certificate: String,
    /// Where to dial the agent link (mutual TLS, HTTP/2, the API's server
    /// certificate): every replica's listener; the agent links to each, so
    /// any replica reaches it.
    pub links: Vec<LinkEndpoint>,
}

/// A control-plane replica's agent listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LinkEndpoint {
    /// The replica's node id (one link per node).
    pub node: String,
    /// `host:port`.
    pub address: String,
}

/// A cluster and its agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClusterInfo {
    /// Its name.
    pub name: String,
    /// Whether an agent is connected to the replica that answered.
    pub connected: bool,
    /// `local` or `kubernetes`, as the agent reports it (when connected).
    pub runtime: Option<String>,
    /// The agent's version (when connected).
    pub version: Option<String>,
    /// The agent's node (when connected).
    pub node: Option<String>,
    /// The agent's address (`in-process` for `warden dev`'s).
    pub address: Option<String>,
    /// When its link was last up (now, if connected), ms.
    pub last_seen_at: Option<i64>,
    /// When an agent enrolled, ms (never for `local`).
    pub enrolled_at: Option<i64>,
    /// Environments placed on it.
    pub environments: Vec<String>,
    /// Pods in those environments (when connected).
    pub pods: Option<u32>,
}

/// `GET /api/v1/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClusterList {
    /// By name.
    pub clusters: Vec<ClusterInfo>,
}

/// `PUT /api/v1/placements/{env}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The cluster the environment's pods run on.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    )]
    pub cluster: String,
}

/// A Kubernetes namespace (a DNS-1123 label).
const K8S_NAMESPACE: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A service account's name (a DNS-1123 subdomain).
const K8S_NAME: &str =
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";
/// A cluster's name.
const CLUSTER_NAME: &str = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";

fn jwks_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "minItems": 1, "maxItems": 16, "items": {"type": "object"}}},
        "description": "the cluster's JWKS, as `kubectl get --raw /openid/v1/jwks` prints it: RSA (RS256, 2048 to 8192 bits) or EC P-256 (ES256) public keys, each with a kid; at most 64 KiB",
    })
}

fn sa_token_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 16384,
        "pattern": "^[A-Za-z0-9_-]+[.][A-Za-z0-9_-]+[.][A-Za-z0-9_-]+$",
        "description": "the pod's projected service-account token (a JWT of at most 16 KiB)",
    })
}

/// `PUT /api/v1/clusters/{name}/issuer`: the service-account issuer of a
/// cluster's API server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerSet {
    /// Its `--service-account-issuer`: the exact `iss` of its tokens.
    #[schemars(length(min = 1, max = 512), regex(pattern = "^[!-~]+$"))]
    pub issuer: String,
    /// The audience a token must include (default `warden`).
    #[serde(default)]
    #[schemars(length(min = 1, max = 512), regex(pattern = "^[!-~]+$"))]
    pub audience: Option<String>,
    /// Its public keys.
    #[schemars(schema_with = "jwks_schema")]
    pub jwks: serde_json::Value,
}

/// A cluster's service-account issuer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IssuerInfo {
    /// The cluster.
    pub cluster: String,
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// The audience a token must include.
    pub audience: String,
    /// Its keys.
    pub keys: Vec<IssuerKeyInfo>,
    /// Who set it.
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_at: i64,
}

/// One key of a cluster's service-account issuer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IssuerKeyInfo {
    /// Its key id.
    pub kid: String,
    /// The algorithm it is pinned to: `RS256` or `ES256`.
    pub algorithm: String,
    /// Its size in bits.
    pub bits: u32,
}

/// `PUT /api/v1/sa-bindings/{service}` and
/// `POST /api/v1/sa-binding-revoke/{service}`: a cluster's service account.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaBindingRequest {
    /// The cluster.
    #[schemars(length(min = 1, max = 63), regex(pattern = CLUSTER_NAME))]
    pub cluster: String,
    /// The service account's namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = K8S_NAMESPACE))]
    pub namespace: String,
    /// The service account's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = K8S_NAME))]
    pub service_account: String,
}

/// A service account of a cluster bound to a service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SaBindingInfo {
    /// The service, `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// The cluster.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// Who bound it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at: i64,
}

/// `GET /api/v1/sa-bindings?scope=PATH`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SaBindingList {
    /// The bindings of the services at or under the scope.
    pub bindings: Vec<SaBindingInfo>,
}

/// `POST /api/v1/workload-token-exchange`: a pod's service-account token
/// for a workload token of a service bound to its service account.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchange {
    /// The cluster the pod runs on.
    #[schemars(length(min = 1, max = 63), regex(pattern = CLUSTER_NAME))]
    pub cluster: String,
    /// The service, `ORG/PROJECT/ENV/SERVICE`.
    #[schemars(regex(pattern = warden_types::pattern::SERVICE_PATH))]
    pub service: String,
    /// The service-account token.
    #[schemars(schema_with = "sa_token_schema")]
    pub token: WireValue,
}

/// The WebSocket subprotocol of `GET /api/v1/session/{id}/join`.
pub const SESSION_JOIN_PROTOCOL: &str = "v1.join.warden.dev";

/// `GET /api/v1/session/{id}/recording?from=N`: a page of a session's
/// recording, opened and checked (each chunk's seal) by the server. The
/// chunks' texts concatenated are the asciicast v2 file; the client checks
/// their digests against the session's audit outcome.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionRecording {
    /// The session.
    pub id: String,
    /// Chunks in order, from the one asked for.
    pub chunks: Vec<RecordingChunk>,
    /// The chunk to ask for next; absent on the last page.
    pub next: Option<i64>,
    /// On the last page: the session's audit outcome, once recorded.
    pub outcome: Option<RecordingOutcome>,
}

/// One chunk of a recording.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecordingChunk {
    /// Its number, from 0.
    pub seq: i64,
    /// Whether it is the recording's last.
    pub last: bool,
    /// Its asciicast text (whole lines).
    pub text: String,
}

/// Where a session's outcome is in the audit log, and the digest it
/// records: SHA-256 over the SHA-256 of each chunk's text, in order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecordingOutcome {
    /// The audit log (the organization).
    pub log: String,
    /// The outcome entry's sequence number (`audit proof LOG SEQ`).
    pub seq: i64,
    /// The digest recorded, absent if the recording failed.
    pub recording_digest: Option<String>,
}

/// `GET /api/v1/session/{id}/recording`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingQuery {
    /// The first chunk to return (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = i64::MAX))]
    pub from: Option<i64>,
}

/// A shell session: `GET /api/v1/session/{id}`, and in lists.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    /// Its id (also in its audit entries).
    pub id: String,
    /// `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// The pod it runs in.
    pub pod: String,
    /// Who opened it.
    pub principal: String,
    /// `ssh`, `websocket` or `kubernetes-exec`.
    pub transport: String,
    /// The replica holding it.
    pub node: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// When it ended (absent while live).
    pub ended_at_ms: Option<i64>,
    /// Its outcome (`ok`, `authority_ended`, `client_gone`, ...).
    pub status: Option<String>,
    /// The process's exit status, if it exited.
    pub exit_status: Option<i64>,
    /// Who ended it, if someone did (`warden session kill`).
    pub killed_by: Option<String>,
}

/// `GET /api/v1/sessions/{org}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionInfo>,
}

/// `GET /api/v1/sessions/{org}` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionListQuery {
    /// Only live sessions.
    #[serde(default)]
    pub live: bool,
    /// At most this many (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}
