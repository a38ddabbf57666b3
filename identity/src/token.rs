//! Opaque API tokens (`wdn_…`).
//!
//! An API token is [`API_TOKEN_PREFIX`] followed by 32 bytes (256 bits) from
//! the operating system's CSPRNG (ring's `SystemRandom`), base64url-encoded
//! without padding: 47 ASCII characters in all. Warden stores only
//! [`token_hash`] of a token, never the token itself; since the token carries
//! 256 bits of entropy, a plain SHA-256 is enough (no salt or slow hash
//! needed) and lets the server look a token up by its hash.
//!
//! [`looks_like_jwt`] tells an API token from a workload JWT in an
//! `Authorization: Bearer` header, without verifying either.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The prefix every API token starts with. It makes leaked tokens easy to
/// spot (secret scanners, logs) and can never start a JWT.
pub const API_TOKEN_PREFIX: &str = "wdn_";

/// Random bytes in a token.
pub const API_TOKEN_RANDOM_BYTES: usize = 32;

/// Length of a token in characters: the prefix plus 43 base64url characters.
pub const API_TOKEN_LEN: usize = API_TOKEN_PREFIX.len() + 43;

/// Why no token could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Makes a new API token: `wdn_` and 256 random bits in base64url without
/// padding. The returned string is wiped when dropped.
///
/// # Errors
///
/// [`TokenError::Random`] if the operating system's CSPRNG fails (it does not
/// on any supported platform; the error exists so that this never panics).
pub fn try_generate_api_token() -> Result<Zeroizing<String>, TokenError> {
    let mut bytes = Zeroizing::new([0u8; API_TOKEN_RANDOM_BYTES]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| TokenError::Random)?;
    // Exact capacity, so that encoding never reallocates and leaves a copy.
    let mut token = Zeroizing::new(String::with_capacity(API_TOKEN_LEN));
    token.push_str(API_TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut token);
    Ok(token)
}

/// Makes a new API token: `wdn_` and 256 random bits in base64url without
/// padding. The returned string is wiped when dropped.
///
/// ring's `SystemRandom` reads the kernel's CSPRNG (`getrandom(2)` on Linux),
/// which blocks until the kernel is seeded and then does not fail. Should it
/// fail anyway, this aborts the process rather than hand out a predictable
/// credential; use [`try_generate_api_token`] to handle the error instead.
pub fn generate_api_token() -> Zeroizing<String> {
    match try_generate_api_token() {
        Ok(token) => token,
        Err(_) => std::process::abort(),
    }
}

/// SHA-256 of the token's UTF-8 bytes: what Warden stores and looks tokens up
/// by.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether `token` has the exact shape of an API token: [`API_TOKEN_PREFIX`]
/// then 43 base64url characters that decode to 32 bytes. Says nothing about
/// whether the token exists.
pub fn looks_like_api_token(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(API_TOKEN_PREFIX) else {
        return false;
    };
    if token.len() != API_TOKEN_LEN {
        return false;
    }
    // Decoded into a buffer that is wiped, not a fresh Vec that is not.
    let mut buf = Zeroizing::new([0u8; API_TOKEN_RANDOM_BYTES + 1]);
    URL_SAFE_NO_PAD.decode_slice(rest, buf.as_mut()) == Ok(API_TOKEN_RANDOM_BYTES)
}

/// Whether `token` has the shape of a compact JWS/JWT: exactly three
/// dot-separated, non-empty parts of base64url characters (`A-Z a-z 0-9 - _`).
/// Nothing is decoded or verified. API tokens (`wdn_…`) are never JWTs.
pub fn looks_like_jwt(token: &str) -> bool {
    if token.starts_with(API_TOKEN_PREFIX) {
        return false;
    }
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if parts > 3 || part.is_empty() || !part.bytes().all(is_base64url) {
            return false;
        }
    }
    parts == 3
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_have_the_documented_shape() {
        let t = generate_api_token();
        assert_eq!(t.len(), API_TOKEN_LEN);
        assert_eq!(t.len(), 47);
        assert!(t.starts_with("wdn_"));
        assert!(t[4..].bytes().all(is_base64url));
        assert_eq!(URL_SAFE_NO_PAD.decode(&t[4..]).unwrap().len(), 32);
        assert!(looks_like_api_token(&t));
        assert!(!looks_like_jwt(&t));
    }

    #[test]
    fn tokens_are_unique() {
        let set: HashSet<String> = (0..1000)
            .map(|_| generate_api_token().to_string())
            .collect();
        assert_eq!(set.len(), 1000);
    }

    #[test]
    fn token_hash_is_sha256() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(
            hex::encode(token_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = generate_api_token();
        assert_eq!(token_hash(&t), token_hash(&t.clone()));
        assert_ne!(token_hash(&t), token_hash(&generate_api_token()));
    }

    #[test]
    fn api_token_shape_check() {
        assert!(!looks_like_api_token(""));
        assert!(!looks_like_api_token("wdn_"));
        assert!(!looks_like_api_token(&format!("wdn_{}", "A".repeat(42))));
        assert!(!looks_like_api_token(&format!("wdn_{}", "A".repeat(44))));
        assert!(!looks_like_api_token(&format!("xdn_{}", "A".repeat(43))));
        assert!(!looks_like_api_token(&format!("wdn_{}!", "A".repeat(42))));
        // 43 characters whose last one carries non-zero padding bits.
        assert!(!looks_like_api_token(&format!("wdn_{}B", "A".repeat(42))));
        assert!(looks_like_api_token(&format!("wdn_{}", "A".repeat(43))));
    }

    #[test]
    fn jwt_shape_check() {
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a-_.b.c"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("a.b."));
        assert!(!looks_like_jwt("a.b+.c"));
        assert!(!looks_like_jwt("a.b=.c"));
        assert!(!looks_like_jwt("a.b c.d"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt("wdn_a.b.c"));
    }
}
