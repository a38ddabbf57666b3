//! Workload tokens: short-lived EdDSA (Ed25519) JWTs that name one service.
//!
//! A workload token is a compact JWS whose header is
//! `{"alg":"EdDSA","typ":"JWT","kid":KID}` and whose payload is
//! [`WorkloadClaims`]. The `kid` is [`key_id`] of the signer's public key, so
//! keys can rotate: [`verify`] asks the caller for the public key of the
//! token's `kid` and knows nothing of storage.
//!
//! [`issue`] signs with ring's Ed25519 directly (the JWS encoding is the
//! three base64url parts joined by dots) rather than through jsonwebtoken's
//! `EncodingKey`, which keeps a copy of the private key in a heap buffer
//! that is never wiped. [`verify`] is jsonwebtoken 9 (ring backend) with the
//! algorithm pinned to EdDSA; the time checks are done here against the
//! caller's `now_unix`, never the system clock.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use warden_types::{ScopeKind, ScopePath};
use zeroize::Zeroizing;

/// The `aud` of every workload token.
pub const AUDIENCE: &str = "warden";
/// The `iss` of every workload token.
pub const ISSUER: &str = "warden";
/// Longest lifetime [`issue`] grants, in seconds (24 hours).
pub const MAX_TTL_SECS: u64 = 86_400;
/// Clock difference tolerated by [`verify`] on `nbf` and `exp`, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// Longest token [`verify`] will look at, in bytes (8 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// What `sub` starts with; the service path follows.
pub const SUBJECT_PREFIX: &str = "workload:";

/// Longest `kid` accepted in a header.
const MAX_KID_LEN: usize = 64;
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 64;

/// Why a workload token could not be issued or was refused. Messages are safe
/// to show the caller: they never contain the token, a key or a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    /// The bytes are not an Ed25519 private key in PKCS#8 (v1 or v2).
    #[error("the signing key is not a valid Ed25519 PKCS#8 document")]
    InvalidKey,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// [`issue`] was given a path that is not `ORG/PROJECT/ENV/SERVICE`.
    #[error("workload tokens are issued to services (ORG/PROJECT/ENV/SERVICE), not to {0}")]
    NotAService(String),
    /// [`issue`] was given a lifetime outside 1..=[`MAX_TTL_SECS`].
    #[error("workload token lifetime must be 1 to {MAX_TTL_SECS} seconds; got {0}")]
    InvalidTtl(u64),
    /// Not a well-formed compact JWT of Warden's shape.
    #[error("malformed workload token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than EdDSA (`none`, `HS256`, …).
    #[error("workload token is not signed with EdDSA (Ed25519)")]
    WrongAlgorithm,
    /// No public key is known for the header's `kid`.
    #[error("workload token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify under the `kid`'s public key.
    #[error("workload token signature is invalid")]
    BadSignature,
    /// `iss` is not [`ISSUER`].
    #[error("workload token was not issued by Warden")]
    WrongIssuer,
    /// `aud` is not [`AUDIENCE`].
    #[error("workload token is not meant for Warden")]
    WrongAudience,
    /// `exp` is more than [`CLOCK_SKEW_SECS`] in the past.
    #[error("workload token has expired")]
    Expired,
    /// `nbf` or `iat` is more than [`CLOCK_SKEW_SECS`] in the future.
    #[error("workload token is not valid yet")]
    NotYetValid,
    /// The claims are signed but inconsistent (subject, path, organization,
    /// lifetime or id).
    #[error("workload token claims are invalid: {0}")]
    BadClaims(&'static str),
}

impl WorkloadError {
    /// Whose fault the error is: a refused token or request is the caller's;
    /// a bad signing key or a failed RNG is Warden's.
    pub fn fault(&self) -> warden_types::Fault {
        match self {
            Self::InvalidKey | Self::Random => warden_types::Fault::Internal,
            _ => warden_types::Fault::Client,
        }
    }
}

/// The key id of an Ed25519 public key: the first 16 hex characters (64 bits)
/// of its SHA-256.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..8])
}

/// An Ed25519 signing key for workload tokens: a PKCS#8 document (wiped on
/// drop) with its public key and [`key_id`]. `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    public: [u8; 32],
    kid: String,
}

impl SigningKey {
    /// A new random key (ring's Ed25519 PKCS#8 v2 generator and the operating
    /// system's CSPRNG).
    ///
    /// # Errors
    ///
    /// [`WorkloadError::Random`] if the CSPRNG fails.
    pub fn generate() -> Result<Self, WorkloadError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| WorkloadError::Random)?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        Self::from_pkcs8(&pkcs8)
    }

    /// Loads a key from an unencrypted PKCS#8 document (copied). Both v2 (with
    /// the public key, as [`SigningKey::generate`] makes) and v1 (as
    /// `openssl genpkey -algorithm ed25519` makes) are accepted; a v2 document
    /// whose public key does not match its private key is refused.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::InvalidKey`].
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, WorkloadError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|_| WorkloadError::InvalidKey)?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            pkcs8: Zeroizing::new(bytes.to_vec()),
            kid: key_id(&public),
            public,
        })
    }

    /// The PKCS#8 document, for storage (encrypted).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key id put in the `kid` header of every token this key signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte Ed25519 public key, for [`verify`]'s lookup.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn key_pair(&self) -> Result<Ed25519KeyPair, WorkloadError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
            .map_err(|_| WorkloadError::InvalidKey)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The payload of a workload token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadClaims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// [`SUBJECT_PREFIX`] followed by `path`.
    pub sub: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// The organization: `path`'s first segment.
    pub org: String,
    /// The service, `ORG/PROJECT/ENV/SERVICE`.
    pub path: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds (equal to `iat` when issued here).
    pub nbf: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// A unique token id: 128 random bits in lowercase hex.
    pub jti: String,
}

#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct InHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// Signs `claims` as a compact JWS with the EdDSA header.
fn sign<T: Serialize>(key: &SigningKey, claims: &T) -> Result<String, WorkloadError> {
    let header = OutHeader {
        alg: "EdDSA",
        typ: "JWT",
        kid: key.kid(),
    };
    let header =
        serde_json::to_vec(&header).map_err(|_| WorkloadError::BadClaims("not serializable"))?;
    let payload =
        serde_json::to_vec(claims).map_err(|_| WorkloadError::BadClaims("not serializable"))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.key_pair()?.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    Ok(token)
}

/// Issues a token for `service`, valid from `now_unix` for `ttl_secs`
/// seconds. Returns the token and its claims.
///
/// # Errors
///
/// [`WorkloadError::NotAService`] unless `service` is a
/// [`ScopeKind::Service`] path, [`WorkloadError::InvalidTtl`] unless
/// `ttl_secs` is 1..=[`MAX_TTL_SECS`], [`WorkloadError::Random`] or
/// [`WorkloadError::InvalidKey`].
pub fn issue(
    key: &SigningKey,
    service: &ScopePath,
    ttl_secs: u64,
    now_unix: u64,
) -> Result<(String, WorkloadClaims), WorkloadError> {
    if service.kind() != ScopeKind::Service {
        return Err(WorkloadError::NotAService(service.as_str().to_owned()));
    }
    if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
        return Err(WorkloadError::InvalidTtl(ttl_secs));
    }
    let exp = now_unix
        .checked_add(ttl_secs)
        .ok_or(WorkloadError::InvalidTtl(ttl_secs))?;
    let mut jti = [0u8; 16];
    SystemRandom::new()
        .fill(&mut jti)
        .map_err(|_| WorkloadError::Random)?;
    let claims = WorkloadClaims {
        iss: ISSUER.to_owned(),
        sub: format!("{SUBJECT_PREFIX}{}", service.as_str()),
        aud: AUDIENCE.to_owned(),
        org: service.org().to_owned(),
        path: service.as_str().to_owned(),
        iat: now_unix,
        nbf: now_unix,
        exp,
        jti: hex::encode(jti),
    };
    let token = sign(key, &claims)?;
    Ok((token, claims))
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> WorkloadError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => {
            WorkloadError::BadSignature
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            WorkloadError::WrongAlgorithm
        }
        ErrorKind::ExpiredSignature => WorkloadError::Expired,
        ErrorKind::ImmatureSignature => WorkloadError::NotYetValid,
        ErrorKind::InvalidIssuer => WorkloadError::WrongIssuer,
        ErrorKind::InvalidAudience => WorkloadError::WrongAudience,
        ErrorKind::Json(_) => WorkloadError::BadClaims("claims are missing or of the wrong type"),
        ErrorKind::MissingRequiredClaim(_) => WorkloadError::BadClaims("a claim is missing"),
        ErrorKind::InvalidSubject => WorkloadError::BadClaims("subject does not match the path"),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            WorkloadError::Malformed("a part is not base64url-encoded UTF-8")
        }
        _ => WorkloadError::Malformed("not a valid JWT"),
    }
}

/// Verifies a workload token at `now_unix` and returns its claims.
///
/// In order: the token is at most [`MAX_TOKEN_BYTES`] and shaped like a
/// compact JWT; the header's `alg` is `EdDSA` (so `none`, `HS256` and every
/// other algorithm are refused whatever key material exists) and it carries a
/// `kid` and no `crit`; `public_key_for(kid)` returns a key; the signature
/// verifies; `iss` is [`ISSUER`] and `aud` is [`AUDIENCE`], exactly;
/// `nbf` and `iat` are at most `now_unix + 30` and `exp` is after
/// `now_unix - 30` ([`CLOCK_SKEW_SECS`]); the lifetime `exp - iat` is at most
/// [`MAX_TTL_SECS`]; `path` is a valid service path, `org` its organization
/// and `sub` is [`SUBJECT_PREFIX`] + `path`; `jti` is present.
///
/// # Errors
///
/// The first check that fails, as a [`WorkloadError`].
pub fn verify(
    token: &str,
    now_unix: u64,
    public_key_for: impl Fn(&str) -> Option<[u8; 32]>,
) -> Result<WorkloadClaims, WorkloadError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(WorkloadError::Malformed("longer than 8 KiB"));
    }
    if !crate::token::looks_like_jwt(token) {
        return Err(WorkloadError::Malformed(
            "not three base64url parts separated by dots",
        ));
    }
    let encoded_header = token.split('.').next().unwrap_or_default();
    let header_json = URL_SAFE_NO_PAD
        .decode(encoded_header)
        .map_err(|_| WorkloadError::Malformed("header is not base64url"))?;
    let header: InHeader = serde_json::from_slice(&header_json)
        .map_err(|_| WorkloadError::Malformed("header is not a JSON object with an alg"))?;
    if header.alg != "EdDSA" {
        return Err(WorkloadError::WrongAlgorithm);
    }
    if header.crit.is_some() {
        return Err(WorkloadError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let kid = match header.kid.as_deref() {
        Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid,
        _ => return Err(WorkloadError::Malformed("the header has no key id (kid)")),
    };
    let public = public_key_for(kid).ok_or(WorkloadError::UnknownKey)?;

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    // jsonwebtoken would read the system clock for these; they are checked
    // below against the caller's `now_unix` instead.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.required_spec_claims.clear();
    // Checked below for an exact match (jsonwebtoken accepts any overlap).
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<WorkloadClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_ed_der(&public),
        &validation,
    )
    .map_err(|e| map_jwt_error(&e))?
    .claims;

    if claims.iss != ISSUER {
        return Err(WorkloadError::WrongIssuer);
    }
    if claims.aud != AUDIENCE {
        return Err(WorkloadError::WrongAudience);
    }
    if claims.exp.saturating_add(CLOCK_SKEW_SECS) <= now_unix {
        return Err(WorkloadError::Expired);
    }
    let latest_start = now_unix.saturating_add(CLOCK_SKEW_SECS);
    if claims.nbf > latest_start || claims.iat > latest_start {
        return Err(WorkloadError::NotYetValid);
    }
    if claims.exp <= claims.nbf || claims.exp <= claims.iat {
        return Err(WorkloadError::BadClaims("exp is not after nbf and iat"));
    }
    if claims.exp - claims.iat > MAX_TTL_SECS {
        return Err(WorkloadError::BadClaims("lifetime is longer than 24 hours"));
    }
    let path = ScopePath::parse_kind(&claims.path, ScopeKind::Service)
        .map_err(|_| WorkloadError::BadClaims("path is not a service path"))?;
    if path.org() != claims.org {
        return Err(WorkloadError::BadClaims(
            "org is not the path's organization",
        ));
    }
    if claims.sub.strip_prefix(SUBJECT_PREFIX) != Some(path.as_str()) {
        return Err(WorkloadError::BadClaims("subject does not match the path"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(WorkloadError::BadClaims("jti is missing or too long"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn service() -> ScopePath {
        ScopePath::parse("acme/payments/prod/api").unwrap()
    }

    fn lookup(key: &SigningKey) -> impl Fn(&str) -> Option<[u8; 32]> + '_ {
        move |kid| (kid == key.kid()).then(|| key.public_key())
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn good_claims() -> serde_json::Value {
        json!({
            "iss": "warden", "sub": "workload:acme/payments/prod/api", "aud": "warden",
            "org": "acme", "path": "acme/payments/prod/api",
            "iat": NOW, "nbf": NOW, "exp": NOW + 600, "jti": "00112233445566778899aabbccddeeff",
        })
    }

    fn with(changes: serde_json::Value) -> serde_json::Value {
        let mut claims = good_claims();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate().unwrap();
        let (token, claims) = issue(&key, &service(), 600, NOW).unwrap();
        assert!(token.len() < 1024);
        assert!(crate::token::looks_like_jwt(&token));
        assert_eq!(claims.iss, "warden");
        assert_eq!(claims.aud, "warden");
        assert_eq!(claims.sub, "workload:acme/payments/prod/api");
        assert_eq!(claims.org, "acme");
        assert_eq!(claims.path, "acme/payments/prod/api");
        assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, NOW, NOW + 600));
        assert_eq!(claims.jti.len(), 32);
        assert!(claims.jti.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(verify(&token, NOW, lookup(&key)), Ok(claims.clone()));
        assert_eq!(verify(&token, NOW + 599, lookup(&key)), Ok(claims));
        let (_, other) = issue(&key, &service(), 600, NOW).unwrap();
        let (_, third) = issue(&key, &service(), 600, NOW).unwrap();
        assert_ne!(other.jti, third.jti);
    }

    #[test]
    fn header_is_eddsa_with_kid() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 60, NOW).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn expiry_against_the_given_clock_with_30s_skew() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 60, NOW).unwrap();
        // exp = NOW + 60; accepted while exp > now - 30.
        assert!(verify(&token, NOW + 89, lookup(&key)).is_ok());
        assert_eq!(
            verify(&token, NOW + 90, lookup(&key)),
            Err(WorkloadError::Expired)
        );
        assert_eq!(
            verify(&token, u64::MAX, lookup(&key)),
            Err(WorkloadError::Expired)
        );
        // The system clock plays no part: a token issued in 2001 verifies at
        // its own time and not at ours.
        let (old, _) = issue(&key, &service(), 60, 1_000_000_000).unwrap();
        assert!(verify(&old, 1_000_000_010, lookup(&key)).is_ok());
        assert_eq!(verify(&old, NOW, lookup(&key)), Err(WorkloadError::Expired));
    }

    #[test]
    fn not_yet_valid() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 600, NOW).unwrap();
        assert!(verify(&token, NOW - 30, lookup(&key)).is_ok());
        assert_eq!(
            verify(&token, NOW - 31, lookup(&key)),
            Err(WorkloadError::NotYetValid)
        );
        assert_eq!(
            verify(&token, 0, lookup(&key)),
            Err(WorkloadError::NotYetValid)
        );
    }

    #[test]
    fn wrong_audience_and_issuer() {
        let key = SigningKey::generate().unwrap();
        for (changes, want) in [
            (json!({"aud": "vault"}), WorkloadError::WrongAudience),
            (json!({"aud": "WARDEN"}), WorkloadError::WrongAudience),
            (json!({"iss": "someone-else"}), WorkloadError::WrongIssuer),
        ] {
            let token = sign(&key, &with(changes)).unwrap();
            assert_eq!(verify(&token, NOW, lookup(&key)), Err(want));
        }
        // An audience array containing "warden" is not an exact match.
        let token = sign(&key, &with(json!({"aud": ["warden", "other"]}))).unwrap();
        assert!(matches!(
            verify(&token, NOW, lookup(&key)),
            Err(WorkloadError::BadClaims(_))
        ));
    }

    #[test]
    fn unknown_kid() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 600, NOW).unwrap();
        assert_eq!(
            verify(&token, NOW, |_| None),
            Err(WorkloadError::UnknownKey)
        );
        let header = b64(&json!({"alg": "EdDSA", "typ": "JWT"}));
        let rest = token.split_once('.').unwrap().1;
        assert_eq!(
            verify(&format!("{header}.{rest}"), NOW, lookup(&key)),
            Err(WorkloadError::Malformed("the header has no key id (kid)"))
        );
    }

    #[test]
    fn signed_by_another_key() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        assert_ne!(key.kid(), other.kid());
        let (token, _) = issue(&other, &service(), 600, NOW).unwrap();
        // The lookup maps the other key's kid to our key.
        assert_eq!(
            verify(&token, NOW, |_| Some(key.public_key())),
            Err(WorkloadError::BadSignature)
        );
        // A token by the other key that claims our kid.
        let header = b64(&json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()}));
        let payload = b64(&good_claims());
        let message = format!("{header}.{payload}");
        let sig = other.key_pair().unwrap().sign(message.as_bytes());
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(&forged, NOW, lookup(&key)),
            Err(WorkloadError::BadSignature)
        );
    }

    #[test]
    fn tampered_payload_and_signature() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 600, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let evil = b64(&with(json!({
            "path": "acme/payments/prod/admin", "sub": "workload:acme/payments/prod/admin"
        })));
        let tampered = format!("{}.{evil}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, NOW, lookup(&key)),
            Err(WorkloadError::BadSignature)
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify(&flipped, NOW, lookup(&key)),
            Err(WorkloadError::BadSignature)
        );
        let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert!(verify(&short, NOW, lookup(&key)).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = b64(&good_claims());
        for alg in ["none", "None", "NONE"] {
            let header = b64(&json!({"alg": alg, "typ": "JWT", "kid": key.kid()}));
            assert_eq!(
                verify(&format!("{header}.{payload}.AAAA"), NOW, lookup(&key)),
                Err(WorkloadError::WrongAlgorithm)
            );
            assert!(matches!(
                verify(&format!("{header}.{payload}."), NOW, lookup(&key)),
                Err(WorkloadError::Malformed(_))
            ));
        }
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_refused() {
        let key = SigningKey::generate().unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let pk = key.public_key();
        for secret in [pk.to_vec(), URL_SAFE_NO_PAD.encode(pk).into_bytes()] {
            let forged = jsonwebtoken::encode(
                &header,
                &good_claims(),
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            // The forgery is a genuine HS256 token under that secret...
            let mut hs = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            hs.validate_exp = false;
            hs.validate_aud = false;
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(
                    &forged,
                    &jsonwebtoken::DecodingKey::from_secret(&secret),
                    &hs
                )
                .is_ok()
            );
            // ...and still refused.
            assert_eq!(
                verify(&forged, NOW, lookup(&key)),
                Err(WorkloadError::WrongAlgorithm)
            );
        }
        for alg in ["RS256", "ES256", "PS256", "HS512", "Ed25519", "eddsa"] {
            let header = b64(&json!({"alg": alg, "kid": key.kid()}));
            let token = format!("{header}.{}.AAAA", b64(&good_claims()));
            assert_eq!(
                verify(&token, NOW, lookup(&key)),
                Err(WorkloadError::WrongAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn inconsistent_claims_are_refused() {
        let key = SigningKey::generate().unwrap();
        for changes in [
            json!({"sub": "workload:acme/payments/prod/other"}),
            json!({"sub": "acme/payments/prod/api"}),
            json!({"sub": "user:acme/payments/prod/api"}),
            json!({"org": "evil"}),
            json!({"path": "acme/payments/prod", "sub": "workload:acme/payments/prod"}),
            json!({"path": "acme/../prod/api", "sub": "workload:acme/../prod/api"}),
            json!({"path": "evil/payments/prod/api", "sub": "workload:evil/payments/prod/api"}),
            json!({"exp": NOW + MAX_TTL_SECS + 1}),
            json!({"exp": NOW}),
            json!({"jti": ""}),
            json!({"exp": "tomorrow"}),
            json!({"iat": -1}),
            json!({"path": null}),
        ] {
            let token = sign(&key, &with(changes.clone())).unwrap();
            assert!(
                matches!(
                    verify(&token, NOW, lookup(&key)),
                    Err(WorkloadError::BadClaims(_))
                ),
                "{changes}"
            );
        }
        let mut missing = good_claims();
        missing.as_object_mut().unwrap().remove("org");
        let token = sign(&key, &missing).unwrap();
        assert!(matches!(
            verify(&token, NOW, lookup(&key)),
            Err(WorkloadError::BadClaims(_))
        ));
        // iat in the future beyond the skew.
        let token = sign(&key, &with(json!({"iat": NOW + 31, "exp": NOW + 600}))).unwrap();
        assert_eq!(
            verify(&token, NOW, lookup(&key)),
            Err(WorkloadError::NotYetValid)
        );
    }

    #[test]
    fn malformed_tokens() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 600, NOW).unwrap();
        let long = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(
            verify(&long, NOW, lookup(&key)),
            Err(WorkloadError::Malformed("longer than 8 KiB"))
        );
        let crit = b64(&json!({"alg": "EdDSA", "kid": key.kid(), "crit": ["exp"]}));
        for bad in [
            String::new(),
            "wdn_abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{token}="),
            format!("!{token}"),
            format!("{}.{}.AAAA", b64(&json!("EdDSA")), b64(&good_claims())),
            format!(
                "{}.{}.AAAA",
                URL_SAFE_NO_PAD.encode("{not json"),
                b64(&good_claims())
            ),
            format!("{crit}.{}.AAAA", b64(&good_claims())),
        ] {
            assert!(
                matches!(
                    verify(&bad, NOW, lookup(&key)),
                    Err(WorkloadError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn issue_refuses_non_services_and_bad_ttls() {
        let key = SigningKey::generate().unwrap();
        for path in ["acme", "acme/payments", "acme/payments/prod"] {
            let p = ScopePath::parse(path).unwrap();
            let err = issue(&key, &p, 600, NOW).unwrap_err();
            assert_eq!(err, WorkloadError::NotAService(path.to_owned()));
            assert!(err.to_string().contains("ORG/PROJECT/ENV/SERVICE"), "{err}");
        }
        for ttl in [0, MAX_TTL_SECS + 1, u64::MAX] {
            assert_eq!(
                issue(&key, &service(), ttl, NOW).unwrap_err(),
                WorkloadError::InvalidTtl(ttl)
            );
        }
        assert!(issue(&key, &service(), 1, NOW).is_ok());
        let (token, claims) = issue(&key, &service(), MAX_TTL_SECS, NOW).unwrap();
        assert_eq!(verify(&token, NOW, lookup(&key)), Ok(claims));
        assert_eq!(
            issue(&key, &service(), 10, u64::MAX - 5).unwrap_err(),
            WorkloadError::InvalidTtl(10)
        );
    }

    #[test]
    fn keys_round_trip_and_debug_hides_them() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(key.kid().len(), 16);
        let digest = ring::digest::digest(&ring::digest::SHA256, &key.public_key());
        assert_eq!(key.kid(), &hex::encode(digest.as_ref())[..16]);
        assert_eq!(key.kid(), key_id(&key.public_key()));

        let shown = format!("{key:?}");
        assert!(shown.contains(key.kid()), "{shown}");
        assert!(!shown.contains(&hex::encode(key.pkcs8())), "{shown}");
        assert!(!shown.contains(&format!("{:?}", key.pkcs8())), "{shown}");
        assert!(!shown.contains("pkcs8"), "{shown}");

        assert_eq!(
            SigningKey::from_pkcs8(b"not a key").unwrap_err(),
            WorkloadError::InvalidKey
        );
        let mut corrupt = key.pkcs8().to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1; // the embedded public key no longer matches
        assert_eq!(
            SigningKey::from_pkcs8(&corrupt).unwrap_err(),
            WorkloadError::InvalidKey
        );
    }

    #[test]
    fn interoperates_with_plain_jsonwebtoken() {
        let key = SigningKey::generate().unwrap();
        // Ours, read by jsonwebtoken alone.
        let (token, claims) = issue(&key, &service(), 600, NOW).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.validate_exp = false;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        let decoded = jsonwebtoken::decode::<WorkloadClaims>(
            &token,
            &jsonwebtoken::DecodingKey::from_ed_der(&key.public_key()),
            &v,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);
        // jsonwebtoken's, read by us.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let theirs = jsonwebtoken::encode(
            &header,
            &good_claims(),
            &jsonwebtoken::EncodingKey::from_ed_der(key.pkcs8()),
        )
        .unwrap();
        assert!(verify(&theirs, NOW, lookup(&key)).is_ok());
    }

    #[test]
    fn error_messages_never_echo_the_token() {
        let key = SigningKey::generate().unwrap();
        let (token, _) = issue(&key, &service(), 60, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let attempts = [
            verify(&token, NOW + 1000, lookup(&key)),
            verify(&token, NOW, |_| None),
            verify(
                &format!("{}.{}.{}", parts[0], parts[1], parts[1]),
                NOW,
                lookup(&key),
            ),
            verify(&format!("{}x", token), NOW, lookup(&key)),
        ];
        for result in attempts {
            let err = result.unwrap_err();
            let text = format!("{err} {err:?}");
            for part in &parts {
                assert!(!text.contains(part), "{text}");
            }
            assert!(!text.contains(key.kid()), "{text}");
            assert_eq!(err.fault(), warden_types::Fault::Client);
        }
    }
}
