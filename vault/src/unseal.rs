//! How the root key is protected at rest and recovered at unseal.
//!
//! The root key is always stored sealed under a 256-bit *unseal key* (AAD
//! `warden/root/v1`). The unseal key itself is never stored; it comes from:
//!
//! - a passphrase, through Argon2id with the parameters and salt stored in
//!   the seal configuration;
//! - Shamir shares (k of n, GF(256), the `blahaj` crate), each handed to an
//!   operator once at init;
//! - a dev key file (mode 0600), only for `warden dev`.
//!
//! A wrong passphrase or wrong shares produce a wrong unseal key, which the
//! AES-GCM tag of the wrapped root key rejects.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::crypto::{AeadKey, Argon2Params, Key32, random_bytes, random_key};

const ROOT_CONTEXT: &[&[u8]] = &[b"warden/root/v1"];

/// How the unseal key is obtained; stored as JSON in the seal row. Contains
/// no secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SealConfig {
    /// Argon2id over an operator passphrase.
    Passphrase {
        /// Argon2id parameters.
        argon2: Argon2Params,
        /// Random 16-byte salt, base64.
        salt: String,
    },
    /// k-of-n Shamir shares of the unseal key.
    Shamir {
        /// Shares dealt.
        shares: u8,
        /// Shares needed.
        threshold: u8,
        /// SHA-256 of each dealt share (hex, by index from 1), so a share
        /// that is not one of them is refused at once and counted, and
        /// cannot start or fill an unseal attempt. Empty for vaults
        /// initialized before shares had digests.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        share_digests: Vec<String>,
    },
    /// A key file on the server's disk (`warden dev` only).
    DevKeyFile,
}

impl SealConfig {
    /// The method name shown in status output.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Passphrase { .. } => "passphrase",
            Self::Shamir { .. } => "shamir",
            Self::DevKeyFile => "dev_key_file",
        }
    }

    /// Shares needed to unseal (1 for the other methods).
    pub fn threshold(&self) -> u8 {
        match self {
            Self::Shamir { threshold, .. } => *threshold,
            _ => 1,
        }
    }
}

/// What the operator chose at init.
pub enum InitMethod {
    /// Passphrase (Argon2id at [`Argon2Params::VAULT`] unless overridden).
    Passphrase {
        /// The passphrase.
        passphrase: Zeroizing<String>,
        /// KDF parameters.
        argon2: Argon2Params,
    },
    /// Shamir shares.
    Shamir {
        /// n.
        shares: u8,
        /// k.
        threshold: u8,
    },
    /// Dev key file: the caller stores the returned unseal key in a 0600 file.
    DevKeyFile,
}

/// The result of preparing a new seal: what to store, plus what to hand out.
pub struct NewSeal {
    /// The configuration row.
    pub config: SealConfig,
    /// The root key sealed under the unseal key.
    pub wrapped_root: Vec<u8>,
    /// The root key itself (kept in memory if the caller unseals at once).
    pub root: Key32,
    /// Shamir shares (base64), to print once.
    pub shares: Vec<Zeroizing<String>>,
    /// The unseal key for a dev key file.
    pub dev_key: Option<Zeroizing<String>>,
}

/// Creates a fresh root key and protects it as `method` asks.
pub fn prepare(method: InitMethod) -> Result<NewSeal, VaultError> {
    let root = random_key()?;
    let (config, unseal_key, shares, dev_key) = match method {
        InitMethod::Passphrase { passphrase, argon2 } => {
            if passphrase.chars().count() < 12 {
                return Err(VaultError::Invalid(
                    "passphrase must be at least 12 characters".into(),
                ));
            }
            let salt: [u8; 16] = random_bytes()?;
            let kek = argon2.derive_kek(passphrase.as_bytes(), &salt)?;
            let config = SealConfig::Passphrase {
                argon2,
                salt: B64.encode(salt),
            };
            (config, kek, Vec::new(), None)
        }
        InitMethod::Shamir { shares, threshold } => {
            if threshold < 2 || shares < threshold {
                return Err(VaultError::Invalid(
                    "Shamir needs 2 <= threshold <= shares <= 255".into(),
                ));
            }
            let kek = random_key()?;
            let mut dealt = Vec::new();
            let mut share_digests = Vec::new();
            for s in blahaj::Sharks(threshold)
                .dealer(kek.as_ref())
                .take(shares as usize)
            {
                let raw = Zeroizing::new(Vec::from(&s));
                share_digests.push(share_digest(&raw));
                dealt.push(Zeroizing::new(B64.encode(&raw)));
            }
            let config = SealConfig::Shamir {
                shares,
                threshold,
                share_digests,
            };
            (config, kek, dealt, None)
        }
        InitMethod::DevKeyFile => {
            let kek = random_key()?;
            let encoded = Zeroizing::new(B64.encode(kek.as_ref()));
            (SealConfig::DevKeyFile, kek, Vec::new(), Some(encoded))
        }
    };
    let wrapped_root = AeadKey::from_bytes(&unseal_key)?.seal(1, ROOT_CONTEXT, root.as_ref())?;
    Ok(NewSeal {
        config,
        wrapped_root,
        root,
        shares,
        dev_key,
    })
}

/// Opens the wrapped root key with an unseal key.
pub fn open_root(wrapped_root: &[u8], unseal_key: &Key32) -> Result<Key32, VaultError> {
    let plain = AeadKey::from_bytes(unseal_key)?
        .open(wrapped_root, ROOT_CONTEXT)
        .map_err(|_| VaultError::BadUnsealKey)?;
    let mut root = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(VaultError::BadUnsealKey);
    }
    root.copy_from_slice(&plain);
    Ok(root)
}

/// Derives the unseal key from a passphrase under a passphrase config.
pub fn passphrase_key(config: &SealConfig, passphrase: &str) -> Result<Key32, VaultError> {
    match config {
        SealConfig::Passphrase { argon2, salt } => {
            let salt = B64
                .decode(salt)
                .map_err(|_| VaultError::Invalid("stored salt is not base64".into()))?;
            Ok(argon2.derive_kek(passphrase.as_bytes(), &salt)?)
        }
        _ => Err(VaultError::Invalid(format!(
            "this vault unseals with {}, not a passphrase",
            config.method()
        ))),
    }
}

/// Decodes a base64 unseal key (dev key file contents).
pub fn decode_key(encoded: &str) -> Result<Key32, VaultError> {
    let raw = Zeroizing::new(
        B64.decode(encoded.trim())
            .map_err(|_| VaultError::Invalid("unseal key is not base64".into()))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        return Err(VaultError::Invalid("unseal key must be 32 bytes".into()));
    }
    key.copy_from_slice(&raw);
    Ok(key)
}

/// The digest a dealt share is recognised by (SHA-256 over a label and
/// the share's bytes, hex). A share's bytes are uniformly random, so the
/// digest tells nothing about them.
fn share_digest(raw: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"warden/unseal-share/v1");
    ctx.update(raw);
    hex::encode(ctx.finish().as_ref())
}

/// A Shamir share as submitted by an operator.
pub struct Share(blahaj::Share);

impl Share {
    /// Parses a base64 share; rejects malformed input and the x = 0 point
    /// (which would be the secret itself).
    pub fn parse(encoded: &str) -> Result<Self, VaultError> {
        let raw = Zeroizing::new(
            B64.decode(encoded.trim())
                .map_err(|_| VaultError::Invalid("share is not valid base64".into()))?,
        );
        if raw.len() != 33 || raw[0] == 0 {
            return Err(VaultError::Invalid(
                "share has the wrong length or index".into(),
            ));
        }
        blahaj::Share::try_from(raw.as_slice())
            .map(Share)
            .map_err(|_| VaultError::Invalid("share is malformed".into()))
    }

    /// The share's index (its x coordinate), for de-duplication.
    pub fn index(&self) -> u8 {
        self.0.x.0
    }

    /// Whether this is one of the shares dealt under `config` (always true
    /// for a configuration from before share digests).
    pub fn is_dealt(&self, config: &SealConfig) -> bool {
        match config {
            SealConfig::Shamir { share_digests, .. } if !share_digests.is_empty() => {
                let digest = share_digest(&Zeroizing::new(Vec::from(&self.0)));
                share_digests.get(usize::from(self.index()).wrapping_sub(1)) == Some(&digest)
            }
            _ => true,
        }
    }
}

/// Combines `threshold` distinct shares into the unseal key.
pub fn combine(threshold: u8, shares: &[Share]) -> Result<Key32, VaultError> {
    let inner: Vec<&blahaj::Share> = shares.iter().map(|s| &s.0).collect();
    let raw = Zeroizing::new(
        blahaj::Sharks(threshold)
            .recover(inner)
            .map_err(|_| VaultError::BadUnsealKey)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        return Err(VaultError::BadUnsealKey);
    }
    key.copy_from_slice(&raw);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Params {
        Argon2Params {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn passphrase_wrap_unwraps_only_with_the_right_passphrase() {
        let seal = prepare(InitMethod::Passphrase {
            passphrase: Zeroizing::new("correct horse battery".into()),
            argon2: fast(),
        })
        .unwrap();
        let good = passphrase_key(&seal.config, "correct horse battery").unwrap();
        assert_eq!(open_root(&seal.wrapped_root, &good).unwrap(), seal.root);
        let bad = passphrase_key(&seal.config, "correct horse batterz").unwrap();
        assert!(matches!(
            open_root(&seal.wrapped_root, &bad),
            Err(VaultError::BadUnsealKey)
        ));
    }

    #[test]
    fn short_passphrases_are_refused() {
        let r = prepare(InitMethod::Passphrase {
            passphrase: Zeroizing::new("short".into()),
            argon2: fast(),
        });
        assert!(matches!(r, Err(VaultError::Invalid(_))));
    }

    #[test]
    fn any_threshold_subset_of_shares_unseals_and_fewer_do_not() {
        let seal = prepare(InitMethod::Shamir {
            shares: 5,
            threshold: 3,
        })
        .unwrap();
        assert_eq!(seal.shares.len(), 5);
        let parsed = |idx: &[usize]| -> Vec<Share> {
            idx.iter()
                .map(|&i| Share::parse(&seal.shares[i]).unwrap())
                .collect()
        };
        for subset in [[0, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3]] {
            let key = combine(3, &parsed(&subset)).unwrap();
            assert_eq!(open_root(&seal.wrapped_root, &key).unwrap(), seal.root);
        }
        assert!(combine(3, &parsed(&[0, 1])).is_err());
        // Two shares repeated do not count as three.
        assert!(combine(3, &parsed(&[0, 1, 1])).is_err());
        // Shares of another vault reconstruct garbage, which the tag rejects.
        let other = prepare(InitMethod::Shamir {
            shares: 3,
            threshold: 3,
        })
        .unwrap();
        let mixed = vec![
            Share::parse(&seal.shares[0]).unwrap(),
            Share::parse(&seal.shares[1]).unwrap(),
            Share::parse(&other.shares[2]).unwrap(),
        ];
        let key = combine(3, &mixed).unwrap();
        assert!(matches!(
            open_root(&seal.wrapped_root, &key),
            Err(VaultError::BadUnsealKey)
        ));
    }

    #[test]
    fn malformed_shares_are_rejected() {
        for bad in [
            "",
            "!!!",
            "AAAA",
            &B64.encode([0u8; 33]),
            &B64.encode([1u8; 40]),
        ] {
            assert!(Share::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dev_key_round_trips() {
        let seal = prepare(InitMethod::DevKeyFile).unwrap();
        let key = decode_key(seal.dev_key.as_ref().unwrap()).unwrap();
        assert_eq!(open_root(&seal.wrapped_root, &key).unwrap(), seal.root);
    }
}
