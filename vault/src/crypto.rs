//! Cryptographic building blocks, all from `ring` and `argon2` (nothing
//! hand-rolled): random keys, AES-256-GCM envelopes with bound context, HKDF
//! purpose keys.
//!
//! Envelope format, version 1 (all integers big-endian):
//!
//! ```text
//! [0]      format version = 1
//! [1..5]   key term (u32)
//! [5..17]  nonce (96 random bits, fresh per encryption)
//! [17..]   AES-256-GCM ciphertext || 16-byte tag
//! ```
//!
//! The additional authenticated data is the 5-byte header followed by the
//! context fields, each length-prefixed (u32 length, then bytes), so no two
//! different contexts can produce the same AAD and a ciphertext moved to
//! another secret, version, organization or term fails to open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Envelope format version written by this build.
pub const ENVELOPE_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
const TAG_LEN: usize = 16;

/// A 256-bit key, wiped from memory on drop.
pub type Key32 = Zeroizing<[u8; 32]>;

/// Errors from the primitives. Deliberately uninformative: an attacker
/// learns only that opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The OS random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// Authentication failed: wrong key, wrong context or tampered bytes.
    #[error("decryption failed: wrong key, wrong context or tampered ciphertext")]
    Open,
    /// The envelope is truncated or of an unknown format version.
    #[error("malformed envelope")]
    Malformed,
    /// Key derivation failed.
    #[error("key derivation failed")]
    Derive,
}

/// Fills a fresh 256-bit key from the OS CSPRNG.
pub fn random_key() -> Result<Key32, CryptoError> {
    let mut k = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(k.as_mut())
        .map_err(|_| CryptoError::Random)?;
    Ok(k)
}

/// Random bytes (salts, token secrets).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CryptoError::Random)?;
    Ok(b)
}

/// Builds the AAD: header then length-prefixed context fields.
fn aad(header: &[u8; HEADER_LEN], context: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HEADER_LEN + context.iter().map(|c| 4 + c.len()).sum::<usize>());
    out.extend_from_slice(header);
    for field in context {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// An AES-256-GCM key ready for use.
pub struct AeadKey(LessSafeKey);

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([REDACTED])")
    }
}

impl AeadKey {
    /// Uses raw key bytes directly (key-wrapping keys).
    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, CryptoError> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| Self(LessSafeKey::new(k)))
            .map_err(|_| CryptoError::Derive)
    }

    /// Derives a purpose key: HKDF-SHA256(salt, ikm = `key`, info).
    /// The derived bytes go straight into the cipher, never into a buffer of ours.
    pub fn derive(key: &[u8; 32], salt: &[u8], info: &[u8]) -> Result<Self, CryptoError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(key);
        let info = [info];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| CryptoError::Derive)?;
        Ok(Self(LessSafeKey::new(UnboundKey::from(okm))))
    }

    /// Derives a key from an HKDF pseudo-random key: HKDF-Expand(`prk`,
    /// `info`), straight into the cipher.
    pub fn from_prk(prk: &hkdf::Prk, info: &[&[u8]]) -> Result<Self, CryptoError> {
        let okm = prk
            .expand(info, &AES_256_GCM)
            .map_err(|_| CryptoError::Derive)?;
        Ok(Self(LessSafeKey::new(UnboundKey::from(okm))))
    }

    /// Encrypts `plaintext` under `term` with a fresh random nonce, binding
    /// `context`.
    pub fn seal(
        &self,
        term: u32,
        context: &[&[u8]],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        self.seal_with_nonce(term, nonce, context, plaintext)
    }

    /// [`AeadKey::seal`] with a caller-chosen nonce: only for test vectors
    /// and for keys that use each nonce once by construction (a recording's
    /// key, whose nonce is the chunk number).
    pub(crate) fn seal_with_nonce(
        &self,
        term: u32,
        nonce: [u8; NONCE_LEN],
        context: &[&[u8]],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut header = [0u8; HEADER_LEN];
        header[0] = ENVELOPE_VERSION;
        header[1..].copy_from_slice(&term.to_be_bytes());
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut tail = out.split_off(HEADER_LEN + NONCE_LEN);
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&header, context)),
                &mut tail,
            )
            .map_err(|_| CryptoError::Open)?;
        out.extend_from_slice(&tail);
        Ok(out)
    }

    /// Decrypts an envelope, checking it was sealed for `context`. The
    /// plaintext is wiped when the returned buffer drops.
    pub fn open(
        &self,
        envelope: &[u8],
        context: &[&[u8]],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let Parts {
            header,
            nonce,
            body,
        } = split(envelope)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&header, context)),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// An envelope cut into its parts.
struct Parts<'a> {
    header: [u8; HEADER_LEN],
    nonce: [u8; NONCE_LEN],
    body: &'a [u8],
}

fn split(envelope: &[u8]) -> Result<Parts<'_>, CryptoError> {
    if envelope.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || envelope[0] != ENVELOPE_VERSION {
        return Err(CryptoError::Malformed);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&envelope[..HEADER_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
    Ok(Parts {
        header,
        nonce,
        body: &envelope[HEADER_LEN + NONCE_LEN..],
    })
}

/// The key term recorded in an envelope's header.
pub fn envelope_term(envelope: &[u8]) -> Result<u32, CryptoError> {
    let h = split(envelope)?.header;
    Ok(u32::from_be_bytes([h[1], h[2], h[3], h[4]]))
}

/// Argon2id parameters, stored with the wrapped key so unsealing can
/// recompute the same key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// What `operator init` uses: 64 MiB, 3 passes, 1 lane (above the OWASP
    /// minimum of 19 MiB / 2 passes).
    pub const VAULT: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };

    /// Derives a key-encryption key from a passphrase.
    pub fn derive_kek(&self, passphrase: &[u8], salt: &[u8]) -> Result<Key32, CryptoError> {
        // Refuse stored parameters an attacker could have planted to make
        // unsealing hang or allocate without bound.
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 16 {
            return Err(CryptoError::Derive);
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|_| CryptoError::Derive)?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(passphrase, salt, out.as_mut())
            .map_err(|_| CryptoError::Derive)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
