//! Passwords: a length policy and Argon2id hashes in PHC string format.
//!
//! Hashes use Argon2id v1.3 at OWASP's first recommended setting, m = 19 MiB
//! (19 456 KiB), t = 2, p = 1, a random 16-byte salt from the operating
//! system's CSPRNG and a 32-byte output, e.g.
//! `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`. [`verify_password`]
//! reads the parameters from the stored string, so raising them later keeps
//! old hashes verifiable; [`needs_rehash`] tells when to re-hash at login.
//!
//! No error or `Debug` output of this module ever contains a password.

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier,
    Version,
};
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 12;
/// Longest password accepted, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Argon2id memory cost of new hashes, in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19_456;
/// Argon2id passes of new hashes.
pub const T_COST: u32 = 2;
/// Argon2id lanes of new hashes.
pub const P_COST: u32 = 1;
/// Salt length of new hashes, in bytes.
pub const SALT_BYTES: usize = 16;
/// Hash output length of new hashes, in bytes (argon2's default).
pub const OUTPUT_BYTES: usize = 32;

/// Largest memory cost [`verify_password`] will spend on a stored hash, in
/// KiB (256 MiB). A hash demanding more is treated as malformed, so that a
/// corrupted or planted record cannot make one login exhaust the server.
pub const MAX_VERIFY_M_COST_KIB: u32 = 256 * 1024;
/// Most passes [`verify_password`] will run for a stored hash.
pub const MAX_VERIFY_T_COST: u32 = 16;
/// Most lanes [`verify_password`] will accept in a stored hash.
pub const MAX_VERIFY_P_COST: u32 = 8;
/// Longest PHC string [`verify_password`] will parse.
const MAX_PHC_LEN: usize = 512;

/// Why a password was refused or could not be hashed. Messages name the rule,
/// never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_BYTES`].
    #[error("password is too short ({len} bytes): passwords must be at least {min} bytes", min = MIN_PASSWORD_BYTES)]
    TooShort {
        /// The password's length in bytes.
        len: usize,
    },
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("password is too long ({len} bytes): passwords must be at most {max} bytes", max = MAX_PASSWORD_BYTES)]
    TooLong {
        /// The password's length in bytes.
        len: usize,
    },
    /// Contains a NUL character, which many clients and C APIs truncate at.
    #[error("password must not contain a NUL character")]
    Nul,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Argon2 refused the parameters or ran out of memory.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl PasswordError {
    /// Whose fault the error is: policy violations are the caller's, the rest
    /// Warden's.
    pub fn fault(&self) -> warden_types::Fault {
        match self {
            Self::TooShort { .. } | Self::TooLong { .. } | Self::Nul => warden_types::Fault::Client,
            Self::Random | Self::Hash(_) => warden_types::Fault::Internal,
        }
    }
}

/// Checks the password policy: [`MIN_PASSWORD_BYTES`]..=[`MAX_PASSWORD_BYTES`]
/// bytes of UTF-8 and no NUL character. Nothing else (no composition rules,
/// following NIST SP 800-63B).
///
/// # Errors
///
/// [`PasswordError::TooShort`], [`PasswordError::TooLong`] or
/// [`PasswordError::Nul`].
pub fn check_password_policy(password: &str) -> Result<(), PasswordError> {
    let len = password.len();
    if len < MIN_PASSWORD_BYTES {
        return Err(PasswordError::TooShort { len });
    }
    if len > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong { len });
    }
    if password.as_bytes().contains(&0) {
        return Err(PasswordError::Nul);
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES))
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id at the current parameters and a fresh
/// random salt, after checking [`check_password_policy`]. Returns the PHC
/// string to store. Takes tens of milliseconds of CPU: call it off any async
/// worker thread.
///
/// # Errors
///
/// A policy error, [`PasswordError::Random`] if the CSPRNG fails, or
/// [`PasswordError::Hash`] if Argon2 fails (out of memory).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password_policy(password)?;
    let mut salt = [0u8; SALT_BYTES];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Random)?;
    let hash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Parses a stored PHC string and checks that it is Argon2id v1.3 within the
/// verification limits.
fn parse_stored(phc: &str) -> Option<(PasswordHash, Params)> {
    if phc.len() > MAX_PHC_LEN {
        return None;
    }
    let parsed = PasswordHash::new(phc).ok()?;
    if parsed.algorithm != ARGON2ID_IDENT || parsed.version != Some(Version::V0x13.into()) {
        return None;
    }
    parsed.salt.as_ref()?;
    parsed.hash.as_ref()?;
    let params = Params::try_from(&parsed).ok()?;
    if params.m_cost() > MAX_VERIFY_M_COST_KIB
        || params.t_cost() > MAX_VERIFY_T_COST
        || params.p_cost() > MAX_VERIFY_P_COST
        || !params.keyid().is_empty()
        || !params.data().is_empty()
    {
        return None;
    }
    Some((parsed, params))
}

/// Whether `password` matches the stored PHC string `phc`. The comparison of
/// the Argon2 outputs is constant-time (argon2's verifier).
///
/// Returns `false`, without hashing, for a malformed string, one that is not
/// Argon2id v1.3, one whose parameters exceed [`MAX_VERIFY_M_COST_KIB`],
/// [`MAX_VERIFY_T_COST`] or [`MAX_VERIFY_P_COST`], and for passwords longer
/// than [`MAX_PASSWORD_BYTES`]. The policy's minimum length is not applied,
/// so that a stricter future policy never locks anyone out.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Some((parsed, _)) = parse_stored(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the same time as a [`verify_password`] against a hash at the current
/// parameters, and returns `false`. Call it when the account does not exist,
/// so that response times do not reveal which accounts do.
pub fn verify_password_dummy(password: &str) -> bool {
    let bounded = &password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)];
    if let Ok(argon2) = hasher() {
        let _ = argon2.hash_password_with_salt(bounded, &[0u8; SALT_BYTES]);
    }
    false
}

/// Whether a stored hash should be replaced by a new [`hash_password`] (after
/// a successful login): it is malformed or was made with parameters other than
/// the current ones.
pub fn needs_rehash(phc: &str) -> bool {
    match parse_stored(phc) {
        Some((parsed, params)) => {
            params.m_cost() != M_COST_KIB
                || params.t_cost() != T_COST
                || params.p_cost() != P_COST
                || parsed.salt.is_none_or(|s| s.len() < SALT_BYTES)
                || parsed.hash.is_none_or(|h| h.len() != OUTPUT_BYTES)
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "correct horse battery staple";

    #[test]
    fn hash_then_verify() {
        let phc = hash_password(GOOD).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, GOOD));
        assert!(!verify_password(&phc, "correct horse battery stapler"));
        assert!(!verify_password(&phc, ""));
        assert!(!needs_rehash(&phc));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password(GOOD).unwrap();
        let b = hash_password(GOOD).unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&a, GOOD) && verify_password(&b, GOOD));
    }

    #[test]
    fn policy() {
        assert_eq!(
            check_password_policy("short"),
            Err(PasswordError::TooShort { len: 5 })
        );
        assert_eq!(
            check_password_policy(&"x".repeat(11)),
            Err(PasswordError::TooShort { len: 11 })
        );
        assert!(check_password_policy(&"x".repeat(12)).is_ok());
        assert!(check_password_policy(&"x".repeat(1024)).is_ok());
        assert_eq!(
            check_password_policy(&"x".repeat(1025)),
            Err(PasswordError::TooLong { len: 1025 })
        );
        assert_eq!(
            check_password_policy("twelve bytes\0!"),
            Err(PasswordError::Nul)
        );
        // Bytes, not characters: four 3-byte characters are 12 bytes.
        assert!(check_password_policy("€€€€").is_ok());
        assert_eq!(
            hash_password("short"),
            Err(PasswordError::TooShort { len: 5 })
        );
    }

    #[test]
    fn errors_never_contain_the_password() {
        for pw in ["hunter2", &"s3cr3t!".repeat(200), "hunter2hunter2\0"] {
            let err = hash_password(pw).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("hunter2") && !text.contains("s3cr3t"),
                "{text}"
            );
            assert_eq!(err.fault(), warden_types::Fault::Client);
        }
    }

    #[test]
    fn malformed_or_foreign_hashes_never_verify() {
        let phc = hash_password(GOOD).unwrap();
        for bad in [
            String::new(),
            "not a hash".to_owned(),
            phc.replace("argon2id", "argon2i"),
            phc.replace("argon2id", "argon2d"),
            phc.replace("v=19", "v=16"),
            phc[..phc.len() - 4].to_owned(),
            phc.replace("m=19456", "m=4194304"),
            phc.replace("t=2", "t=100"),
            phc.replace("p=1", "p=64"),
            format!("{phc}{}", "A".repeat(600)),
            // bcrypt
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        ] {
            assert!(!verify_password(&bad, GOOD), "{bad}");
            assert!(needs_rehash(&bad), "{bad}");
        }
    }

    #[test]
    fn older_parameters_verify_and_want_a_rehash() {
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let old = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(GOOD.as_bytes(), b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(verify_password(&old, GOOD));
        assert!(needs_rehash(&old));
    }

    #[test]
    fn known_answer_from_the_argon2_reference() {
        // RFC 9106 does not publish PHC strings; this one was made with the
        // reference `argon2` CLI: echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32
        let phc = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(verify_password(phc, "password"));
        assert!(!verify_password(phc, "passwore"));
    }

    #[test]
    fn dummy_verification_is_false() {
        assert!(!verify_password_dummy(GOOD));
        assert!(!verify_password_dummy(&"x".repeat(5000)));
    }
}
