//! Kubernetes service-account tokens: a cluster's issuer keys (JWKS) and
//! the verification of the projected tokens its API server signs.
//!
//! A pod's projected service-account token is a compact JWS signed by the
//! kube-apiserver with its service-account key: RS256 by default, ES256
//! when that key is an EC P-256 key. Its payload is:
//!
//! ```json
//! {"aud": ["warden"], "exp": 1700003600, "iat": 1700000000, "nbf": 1700000000,
//!  "iss": "https://kubernetes.default.svc.cluster.local",
//!  "jti": "…", "sub": "system:serviceaccount:shop:api",
//!  "kubernetes.io": {"namespace": "shop",
//!    "node": {"name": "node-1", "uid": "…"},
//!    "pod": {"name": "api-7d9f-x2x", "uid": "…"},
//!    "serviceaccount": {"name": "api", "uid": "…"},
//!    "warnafter": 1700003000}}
//! ```
//!
//! [`Jwks::parse`] validates a cluster's key set once, when an operator
//! configures it (the API server's `/openid/v1/jwks`): RSA keys of 2048 to
//! 8192 bits and EC P-256 keys only, each with a `kid`, public parts only.
//! Each key's algorithm is pinned (`RS256` for RSA, `ES256` for P-256), so
//! a token whose header names another algorithm (`none`, `HS256` with the
//! public key as the secret, `PS256`, ...) is refused before any signature
//! is looked at. [`verify`] then checks a token against an [`Issuer`] at the
//! caller's `now_unix`: signature (jsonwebtoken 9 over ring), `iss`, `aud`,
//! the times, and that `sub` and the `kubernetes.io` claims name the same
//! service account. Nothing here reads the clock or the network, and no
//! error message contains the token, a key or a header value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Longest service-account token [`verify`] will look at, in bytes (16 KiB;
/// Kubernetes' are about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest JWKS document accepted, in bytes (64 KiB).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys a JWKS may hold (an API server signs with one key and
/// verifies with the few it is given while keys rotate).
pub const MAX_JWKS_KEYS: usize = 16;
/// Clock difference tolerated on `nbf` and `iat`, in seconds. `exp` gets
/// none: what is issued in exchange must not outlive it.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// What a service account's `sub` starts with: `system:serviceaccount:NS:NAME`.
pub const SUBJECT_PREFIX: &str = "system:serviceaccount:";
/// Longest issuer (`iss`) or audience accepted, in bytes.
pub const MAX_ISSUER_LEN: usize = 512;

/// Longest `kid` accepted in a JWKS or a header.
const MAX_KID_LEN: usize = 128;
/// Longest Kubernetes uid or `jti` accepted.
const MAX_UID_LEN: usize = 64;

/// Why a JWKS, an issuer or an audience was refused. Messages never quote
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array of objects.
    #[error("the JWKS is not a JSON object with a \"keys\" array (as /openid/v1/jwks answers)")]
    NotJwks,
    /// No key, or more than [`MAX_JWKS_KEYS`].
    #[error("the JWKS must hold 1 to {MAX_JWKS_KEYS} keys; it holds {0}")]
    KeyCount(usize),
    /// One key is unusable; `index` counts from 0.
    #[error("key {index} of the JWKS: {why}")]
    BadKey {
        /// The key's place in `keys`.
        index: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two keys share a `kid`.
    #[error("keys {0} and {1} of the JWKS have the same kid")]
    DuplicateKid(usize, usize),
    /// The issuer is not 1 to [`MAX_ISSUER_LEN`] printable ASCII characters.
    #[error(
        "the issuer must be 1 to {MAX_ISSUER_LEN} printable ASCII characters without spaces \
         (the API server's --service-account-issuer, e.g. https://kubernetes.default.svc.cluster.local)"
    )]
    BadIssuer,
    /// The audience is not 1 to [`MAX_ISSUER_LEN`] printable ASCII characters.
    #[error("the audience must be 1 to {MAX_ISSUER_LEN} printable ASCII characters without spaces")]
    BadAudience,
}

/// Why a service-account token was refused. Messages are safe to show the
/// caller: they never contain the token, a key or a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaTokenError {
    /// Not a well-formed compact JWT.
    #[error("malformed service-account token: {0}")]
    Malformed(&'static str),
    /// No key of the cluster's JWKS has the header's `kid`.
    #[error(
        "the service-account token was signed with a key (kid) that is not in the cluster's \
         JWKS; if the cluster's keys changed, update them (`warden cluster issuer set`)"
    )]
    UnknownKey,
    /// The header's `alg` is not the one pinned for its key (`none`,
    /// `HS256`, or RS256 for an EC key, ...).
    #[error(
        "the service-account token's algorithm is not the one its key is pinned to (RS256 or ES256)"
    )]
    WrongAlgorithm,
    /// The signature does not verify under the key.
    #[error("the service-account token's signature is invalid")]
    BadSignature,
    /// `iss` is not the cluster's issuer.
    #[error("the service-account token was not issued by the cluster's configured issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error(
        "the service-account token is not meant for Warden: its audiences do not include the \
         configured one (project the token with that audience)"
    )]
    WrongAudience,
    /// `exp` is not after `now_unix`.
    #[error("the service-account token has expired")]
    Expired,
    /// `nbf` or `iat` is more than [`CLOCK_SKEW_SECS`] ahead.
    #[error("the service-account token is not valid yet")]
    NotYetValid,
    /// Signed, but the claims are missing, of the wrong type or disagree
    /// with each other.
    #[error("the service-account token's claims are invalid: {0}")]
    BadClaims(&'static str),
}

impl SaTokenError {
    /// A refused token is always the caller's fault.
    pub fn fault(&self) -> warden_types::Fault {
        warden_types::Fault::Client
    }
}

/// The algorithm a key is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the API server's default).
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl KeyAlgorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            KeyAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
}

/// One verified-shape public key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    kid: String,
    material: Material,
}

impl IssuerKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm the key is pinned to.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.material {
            Material::Rsa { .. } => KeyAlgorithm::Rs256,
            Material::Ec { .. } => KeyAlgorithm::Es256,
        }
    }

    /// The key's size in bits (the RSA modulus, or 256).
    pub fn bits(&self) -> usize {
        match &self.material {
            Material::Rsa { n, .. } => n.len() * 8,
            Material::Ec { .. } => 256,
        }
    }

    fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey, SaTokenError> {
        match &self.material {
            Material::Rsa { n, e } => Ok(jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e)),
            Material::Ec { x, y } => jsonwebtoken::DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            )
            .map_err(|_| SaTokenError::BadSignature),
        }
    }
}

/// A cluster's service-account issuer keys, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<IssuerKey>,
}

/// A JWK as it arrives: every member Warden looks at, and the private ones
/// it refuses.
#[derive(Deserialize)]
struct InJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    // Private members: a pasted private key is refused, never stored.
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
    q: Option<serde_json::Value>,
    k: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct InJwks {
    keys: Vec<serde_json::Value>,
}

/// A JWK as Warden stores it.
#[derive(Serialize)]
struct OutJwk<'a> {
    kty: &'static str,
    kid: &'a str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
}

#[derive(Serialize)]
struct OutJwks<'a> {
    keys: Vec<OutJwk<'a>>,
}

fn b64(field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field.trim_end_matches('=')).ok()
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_key(v: serde_json::Value) -> Result<IssuerKey, &'static str> {
    let jwk: InJwk = serde_json::from_value(v).map_err(|_| "not a JWK object of strings")?;
    if jwk.d.is_some() || jwk.p.is_some() || jwk.q.is_some() || jwk.k.is_some() {
        return Err("holds private or symmetric key material; give the public keys only");
    }
    let kid = match jwk.kid {
        Some(kid) if printable(&kid, MAX_KID_LEN) => kid,
        Some(_) => return Err("kid must be 1 to 128 printable ASCII characters"),
        None => return Err("has no kid (Kubernetes names every key)"),
    };
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("is not a signature key (use is not \"sig\")");
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err("key_ops does not include \"verify\"");
    }
    let material = match jwk.kty.as_deref() {
        Some("RSA") => {
            if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
                return Err("an RSA key must be for RS256");
            }
            let n = jwk.n.as_deref().and_then(b64).ok_or("n is not base64url")?;
            let e = jwk.e.as_deref().and_then(b64).ok_or("e is not base64url")?;
            if n.first().is_none_or(|b| *b == 0) {
                return Err("n has leading zero bytes");
            }
            if !(256..=1024).contains(&n.len()) {
                return Err("the RSA modulus must be 2048 to 8192 bits");
            }
            if e.is_empty() || e.len() > 4 || e[0] == 0 || e.last().is_some_and(|b| b & 1 == 0) {
                return Err("the RSA exponent must be odd, at most 32 bits");
            }
            if e.len() == 1 && e[0] < 3 {
                return Err("the RSA exponent must be at least 3");
            }
            Material::Rsa { n, e }
        }
        Some("EC") => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err("only EC keys on P-256 are accepted");
            }
            if jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Err("a P-256 key must be for ES256");
            }
            let x = jwk.x.as_deref().and_then(b64).ok_or("x is not base64url")?;
            let y = jwk.y.as_deref().and_then(b64).ok_or("y is not base64url")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("x and y of a P-256 key are 32 bytes each");
            }
            Material::Ec { x, y }
        }
        Some(_) => return Err("kty must be RSA or EC (as Kubernetes issues)"),
        None => return Err("has no kty"),
    };
    Ok(IssuerKey { kid, material })
}

impl Jwks {
    /// Parses and validates a JWKS document (JSON, at most
    /// [`MAX_JWKS_BYTES`], 1 to [`MAX_JWKS_KEYS`] keys). Each key must be
    /// RSA (2048 to 8192 bits, `alg` absent or `RS256`) or EC P-256 (`alg`
    /// absent or `ES256`), have a unique `kid`, carry no private member and,
    /// if it says, be for signatures. Unknown members are ignored.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`JwksError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let doc: InJwks = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJwks)?;
        if doc.keys.is_empty() || doc.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::KeyCount(doc.keys.len()));
        }
        let mut keys: Vec<IssuerKey> = Vec::with_capacity(doc.keys.len());
        for (index, v) in doc.keys.into_iter().enumerate() {
            let key = parse_key(v).map_err(|why| JwksError::BadKey { index, why })?;
            if let Some(other) = keys.iter().position(|k| k.kid == key.kid) {
                return Err(JwksError::DuplicateKid(other, index));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// The set as Warden stores it: only the members it uses, `alg` and
    /// `use` spelled out. [`Jwks::parse`] of it gives the same set.
    pub fn to_json(&self) -> String {
        let keys = self
            .keys
            .iter()
            .map(|k| match &k.material {
                Material::Rsa { n, e } => OutJwk {
                    kty: "RSA",
                    kid: &k.kid,
                    alg: "RS256",
                    use_: "sig",
                    n: Some(URL_SAFE_NO_PAD.encode(n)),
                    e: Some(URL_SAFE_NO_PAD.encode(e)),
                    crv: None,
                    x: None,
                    y: None,
                },
                Material::Ec { x, y } => OutJwk {
                    kty: "EC",
                    kid: &k.kid,
                    alg: "ES256",
                    use_: "sig",
                    n: None,
                    e: None,
                    crv: Some("P-256"),
                    x: Some(URL_SAFE_NO_PAD.encode(x)),
                    y: Some(URL_SAFE_NO_PAD.encode(y)),
                },
            })
            .collect();
        serde_json::to_string(&OutJwks { keys }).unwrap_or_default()
    }

    fn key(&self, kid: &str) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// Checks an issuer (`iss`) as configured.
///
/// # Errors
///
/// [`JwksError::BadIssuer`].
pub fn check_issuer(issuer: &str) -> Result<(), JwksError> {
    if printable(issuer, MAX_ISSUER_LEN) {
        Ok(())
    } else {
        Err(JwksError::BadIssuer)
    }
}

/// Checks an audience as configured.
///
/// # Errors
///
/// [`JwksError::BadAudience`].
pub fn check_audience(audience: &str) -> Result<(), JwksError> {
    if printable(audience, MAX_ISSUER_LEN) {
        Ok(())
    } else {
        Err(JwksError::BadAudience)
    }
}

/// What a cluster's tokens are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    /// The exact `iss` its API server puts in tokens.
    pub issuer: &'a str,
    /// The audience a token must include.
    pub audience: &'a str,
    /// Its keys.
    pub keys: &'a Jwks,
}

/// Whether `s` is a DNS-1123 label (a namespace): 1 to 63 lowercase
/// letters, digits and inner hyphens.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (a service account's or a pod's
/// name): at most 253 characters, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_UID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A namespaced service account, `NS/NAME`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountName {
    namespace: String,
    name: String,
}

impl ServiceAccountName {
    /// Parses `NS/NAME` (a DNS label, a DNS subdomain).
    ///
    /// # Errors
    ///
    /// A message naming the rule.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let (ns, name) = s
            .split_once('/')
            .ok_or("a service account is NAMESPACE/NAME")?;
        Self::new(ns, name)
    }

    /// From its parts.
    ///
    /// # Errors
    ///
    /// A message naming the rule.
    pub fn new(namespace: &str, name: &str) -> Result<Self, &'static str> {
        if !is_dns_label(namespace) {
            return Err(
                "a namespace is 1-63 lowercase letters, digits and inner hyphens (a DNS label)",
            );
        }
        if !is_dns_subdomain(name) {
            return Err(
                "a service account's name is a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253",
            );
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `sub`: `system:serviceaccount:NS:NAME`.
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}:{}", self.namespace, self.name)
    }
}

/// What a verified token says about its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountToken {
    /// The service account.
    pub account: ServiceAccountName,
    /// The service account's uid.
    pub account_uid: String,
    /// The pod the token is bound to.
    pub pod: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The node, when the API server names it.
    pub node: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct ObjectRef {
    name: String,
    uid: String,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: ObjectRef,
    pod: Option<ObjectRef>,
    node: Option<ObjectRef>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims,
}

#[derive(Deserialize)]
struct InHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> SaTokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => SaTokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            SaTokenError::WrongAlgorithm
        }
        ErrorKind::Json(_) => SaTokenError::BadClaims("claims are missing or of the wrong type"),
        ErrorKind::MissingRequiredClaim(_) => SaTokenError::BadClaims("a claim is missing"),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            SaTokenError::Malformed("a part is not base64url-encoded UTF-8")
        }
        _ => SaTokenError::Malformed("not a valid JWT"),
    }
}

/// Verifies a service-account token from the cluster of `issuer` at
/// `now_unix` and returns what it says.
///
/// In order: at most [`MAX_TOKEN_BYTES`] and shaped like a compact JWT; the
/// header has a `kid` and no `crit`, the `kid` names a key of the JWKS and
/// the header's `alg` is the one that key is pinned to; the signature
/// verifies; `iss` equals the issuer; `aud` (a string or an array) contains
/// the audience; `exp` is after `now_unix`, `nbf` and `iat` at most
/// [`CLOCK_SKEW_SECS`] ahead of it and before `exp`; `kubernetes.io` names
/// a namespace, a service account and a pod (names and uids well formed)
/// and `sub` is `system:serviceaccount:NAMESPACE:NAME` of them.
///
/// # Errors
///
/// The first check that fails, as a [`SaTokenError`].
pub fn verify(
    token: &str,
    issuer: &Issuer<'_>,
    now_unix: u64,
) -> Result<ServiceAccountToken, SaTokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SaTokenError::Malformed("longer than 16 KiB"));
    }
    if !crate::token::looks_like_jwt(token) {
        return Err(SaTokenError::Malformed(
            "not three base64url parts separated by dots",
        ));
    }
    let encoded_header = token.split('.').next().unwrap_or_default();
    let header_json = URL_SAFE_NO_PAD
        .decode(encoded_header)
        .map_err(|_| SaTokenError::Malformed("header is not base64url"))?;
    let header: InHeader = serde_json::from_slice(&header_json)
        .map_err(|_| SaTokenError::Malformed("header is not a JSON object with an alg"))?;
    if header.crit.is_some() {
        return Err(SaTokenError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let kid = match header.kid.as_deref() {
        Some(kid) if printable(kid, MAX_KID_LEN) => kid,
        _ => return Err(SaTokenError::Malformed("the header has no key id (kid)")),
    };
    let key = issuer.keys.key(kid).ok_or(SaTokenError::UnknownKey)?;
    let alg = key.algorithm();
    if header.alg != alg.as_str() {
        return Err(SaTokenError::WrongAlgorithm);
    }

    let mut validation = jsonwebtoken::Validation::new(alg.jwt());
    // Checked below against the caller's `now_unix` and the configured
    // issuer and audience, never the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding_key()?, &validation)
        .map_err(|e| map_jwt_error(&e))?
        .claims;

    if claims.iss != issuer.issuer {
        return Err(SaTokenError::WrongIssuer);
    }
    let audience_ok = match &claims.aud {
        Audience::One(a) => a == issuer.audience,
        Audience::Many(all) => all.iter().any(|a| a == issuer.audience),
    };
    if !audience_ok {
        return Err(SaTokenError::WrongAudience);
    }
    if claims.exp <= now_unix {
        return Err(SaTokenError::Expired);
    }
    let latest_start = now_unix.saturating_add(CLOCK_SKEW_SECS);
    if claims.nbf > latest_start || claims.iat > latest_start {
        return Err(SaTokenError::NotYetValid);
    }
    if claims.exp <= claims.nbf || claims.exp <= claims.iat {
        return Err(SaTokenError::BadClaims("exp is not after nbf and iat"));
    }
    if claims
        .jti
        .as_deref()
        .is_some_and(|j| !printable(j, MAX_UID_LEN))
    {
        return Err(SaTokenError::BadClaims("jti is not a short printable id"));
    }
    let k = claims.kubernetes;
    let account = ServiceAccountName::new(&k.namespace, &k.serviceaccount.name).map_err(|_| {
        SaTokenError::BadClaims("the namespace or service account name is not valid")
    })?;
    if claims.sub != account.subject() {
        return Err(SaTokenError::BadClaims(
            "sub is not system:serviceaccount:NAMESPACE:NAME of the kubernetes.io claims",
        ));
    }
    if !is_uid(&k.serviceaccount.uid) {
        return Err(SaTokenError::BadClaims(
            "the service account uid is not valid",
        ));
    }
    let pod = k.pod.ok_or(SaTokenError::BadClaims(
        "the token is not bound to a pod (use a projected service-account token)",
    ))?;
    if !is_dns_subdomain(&pod.name) || !is_uid(&pod.uid) {
        return Err(SaTokenError::BadClaims("the pod name or uid is not valid"));
    }
    let node = match k.node {
        Some(n) if is_dns_subdomain(&n.name) && is_uid(&n.uid) => Some(n.name),
        Some(_) => return Err(SaTokenError::BadClaims("the node name or uid is not valid")),
        None => None,
    };
    Ok(ServiceAccountToken {
        account,
        account_uid: k.serviceaccount.uid,
        pod: pod.name,
        pod_uid: pod.uid,
        node,
        exp: claims.exp,
    })
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
