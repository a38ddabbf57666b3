//! Time-based one-time passwords (RFC 6238) for second-factor enrolment.
//!
//! Warden enrols every authenticator with the parameters all of them support:
//! HMAC-SHA-1, [`DIGITS`] = 6 digits, [`STEP_SECONDS`] = 30 s steps and a
//! [`SECRET_BYTES`] = 20-byte (160-bit, RFC 4226's recommendation) random
//! secret. [`verify`] accepts the current step and one step either side, and
//! never a step at or before the last one accepted, so a code works once.
//!
//! The HMAC and dynamic truncation come from the `totp-rs` crate (RustCrypto
//! `hmac`/`sha1`/`sha2`); [`code_at`] and [`hotp`] expose them with every
//! RFC parameter so that they can be checked against the RFCs' test vectors.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Digits in an enrolment code.
pub const DIGITS: u32 = 6;
/// Length of a time step, in seconds.
pub const STEP_SECONDS: u64 = 30;
/// Length of a generated secret, in bytes.
pub const SECRET_BYTES: usize = 20;
/// Shortest secret accepted, in bytes (RFC 4226 §4: at least 128 bits).
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret accepted, in bytes (one SHA-512 block's worth of key).
pub const MAX_SECRET_BYTES: usize = 64;
/// Steps accepted either side of the current one, for clock drift and typing
/// time (RFC 6238 §5.2 recommends at most one).
pub const SKEW_STEPS: u64 = 1;

/// Why a TOTP secret could not be made or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The secret is shorter than [`MIN_SECRET_BYTES`] or longer than
    /// [`MAX_SECRET_BYTES`].
    #[error("TOTP secret is {0} bytes; it must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")]
    SecretLength(usize),
    /// The text is not RFC 4648 base32.
    #[error("TOTP secret is not valid base32 (RFC 4648 alphabet A-Z, 2-7)")]
    Base32,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// The HMAC hash of a TOTP or HOTP code (RFC 6238 §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1: the default, and the only one every authenticator supports.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlgorithm {
    /// The name used in `otpauth://` URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn to_crate(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// A TOTP shared secret. The bytes are wiped on drop, `Debug` does not show
/// them and `==` compares them in constant time.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl PartialEq for TotpSecret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl Eq for TotpSecret {}

impl TotpSecret {
    /// A new random [`SECRET_BYTES`]-byte secret from the operating system's
    /// CSPRNG.
    ///
    /// # Errors
    ///
    /// [`TotpError::Random`] if the CSPRNG fails.
    pub fn try_generate() -> Result<Self, TotpError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut_slice())
            .map_err(|_| TotpError::Random)?;
        Ok(Self(bytes))
    }

    /// A new random [`SECRET_BYTES`]-byte secret from the operating system's
    /// CSPRNG. Should the CSPRNG ever fail (it does not on Linux once seeded),
    /// this aborts the process rather than enrol a predictable secret; use
    /// [`TotpSecret::try_generate`] to handle the error.
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(secret) => secret,
            Err(_) => std::process::abort(),
        }
    }

    /// A secret from stored bytes (copied).
    ///
    /// # Errors
    ///
    /// [`TotpError::SecretLength`] unless the length is
    /// [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(TotpError::SecretLength(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from RFC 4648 base32 text as authenticator apps show it:
    /// case-insensitive, spaces and `=` padding ignored.
    ///
    /// # Errors
    ///
    /// [`TotpError::Base32`] or [`TotpError::SecretLength`].
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let mut normal = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '2'..='7' => normal.push(c.to_ascii_uppercase()),
                ' ' | '=' => {}
                _ => return Err(TotpError::Base32),
            }
        }
        let secret =
            totp_rs::Secret::try_from_base32(normal.as_str()).map_err(|_| TotpError::Base32)?;
        Self::from_bytes(secret.as_ref())
    }

    /// The raw secret, for storage (encrypted).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in RFC 4648 base32, upper case, without padding: what a
    /// person types into an authenticator app. The caller should not keep or
    /// log it.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.as_bytes()).to_base32()
    }

    /// The `otpauth://totp/…` enrolment URI (the Key URI Format that
    /// authenticator apps read from a QR code), with the label
    /// `ISSUER:ACCOUNT`, and `secret`, `issuer`, `algorithm=SHA1`, `digits=6`
    /// and `period=30` parameters. `issuer` and `account` are percent-encoded
    /// (everything but `A-Z a-z 0-9 - . _ ~`), so any text is safe to pass;
    /// neither should contain `:`, which some apps split the label at even
    /// when encoded. The URI contains the secret: show it once, never log it.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer = utf8_percent_encode(issuer, URI_COMPONENT);
        let account = utf8_percent_encode(account, URI_COMPONENT);
        format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={alg}&digits={DIGITS}&period={STEP_SECONDS}",
            secret = self.base32().as_str(),
            alg = TotpAlgorithm::Sha1.as_str(),
        )
    }
}

/// RFC 3986 unreserved characters stay; everything else is encoded.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

fn generator(
    secret: &[u8],
    algorithm: TotpAlgorithm,
    digits: u32,
    step_seconds: u64,
) -> totp_rs::Totp {
    // `digits` is 6..=8 and the step non-zero here, the two conditions under
    // which totp-rs's generator cannot panic; any secret length is a valid
    // HMAC key.
    let digits = u8::try_from(digits.clamp(6, 8)).unwrap_or(6);
    totp_rs::Builder::new()
        .with_algorithm(algorithm.to_crate())
        .with_digits(digits)
        .with_skew(0)
        .with_step_duration(step_seconds.max(1))
        .with_secret(secret)
        .build_noncompliant()
}

/// The TOTP code for `now_unix` (RFC 6238 §4): HOTP over the step counter
/// `now_unix / step_seconds`, `digits` digits, zero-padded.
///
/// `digits` outside RFC 4226's 6..=8 is clamped into that range and a
/// `step_seconds` of 0 is taken as 1, so that this never panics. Used by tests
/// against RFC 6238 Appendix B; Warden's own codes go through [`verify`].
pub fn code_at(
    secret: &[u8],
    algorithm: TotpAlgorithm,
    digits: u32,
    step_seconds: u64,
    now_unix: u64,
) -> String {
    generator(secret, algorithm, digits, step_seconds)
        .generate(now_unix)
        .to_string()
}

/// The HOTP code for `counter` (RFC 4226 §5.3) with HMAC-SHA-1; `digits` as
/// in [`code_at`].
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    // A one-second step makes the time counter the HOTP counter.
    generator(secret, TotpAlgorithm::Sha1, digits, 1)
        .generate(counter)
        .to_string()
}

/// Checks a 6-digit enrolment code at `now_unix` and returns the time step it
/// matched, which the caller stores and passes back as `last_used_step`.
///
/// Accepts the current step and [`SKEW_STEPS`] either side, but never a step
/// `<= last_used_step` (RFC 6238 §5.2: a code is accepted once). `code` must be
/// exactly 6 ASCII digits, no spaces. Each candidate step is compared in
/// constant time and all are compared whatever matches; if one code happens to
/// match two steps the later is returned, so it cannot be replayed for the
/// other.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now_unix: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = generator(secret.as_bytes(), TotpAlgorithm::Sha1, DIGITS, STEP_SECONDS);
    let current = now_unix / STEP_SECONDS;
    let mut matched = None;
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        if last_used_step.is_some_and(|last| step <= last) {
            continue;
        }
        let Some(at) = step.checked_mul(STEP_SECONDS) else {
            continue;
        };
        // totp-rs compares the parsed code with the generated one in constant
        // time; with skew 0 it checks exactly this step.
        if totp.check(code, at).is_some() {
            matched = Some(step);
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B seeds: ASCII "1234567890" repeated to the hash's
    /// output length (20, 32 and 64 bytes).
    fn seed(len: usize) -> Vec<u8> {
        b"1234567890".iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn rfc6238_appendix_b_all_vectors() {
        let s1 = seed(20);
        let s256 = seed(32);
        let s512 = seed(64);
        assert_eq!(s1, b"12345678901234567890");
        assert_eq!(s256, b"12345678901234567890123456789012");
        assert_eq!(
            s512,
            b"1234567890123456789012345678901234567890123456789012345678901234".as_slice()
        );
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        let mut checked = 0;
        for (t, sha1, sha256, sha512) in vectors {
            assert_eq!(
                code_at(&s1, TotpAlgorithm::Sha1, 8, 30, t),
                sha1,
                "SHA1 {t}"
            );
            assert_eq!(
                code_at(&s256, TotpAlgorithm::Sha256, 8, 30, t),
                sha256,
                "SHA256 {t}"
            );
            assert_eq!(
                code_at(&s512, TotpAlgorithm::Sha512, 8, 30, t),
                sha512,
                "SHA512 {t}"
            );
            checked += 3;
        }
        assert_eq!(checked, 18);
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let secret = b"12345678901234567890";
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(&hotp(secret, counter as u64, 6), want, "counter {counter}");
        }
    }

    #[test]
    fn out_of_range_parameters_are_clamped_not_panics() {
        let s = seed(20);
        assert_eq!(code_at(&s, TotpAlgorithm::Sha1, 0, 30, 59).len(), 6);
        assert_eq!(code_at(&s, TotpAlgorithm::Sha1, 12, 30, 59).len(), 8);
        assert_eq!(code_at(&s, TotpAlgorithm::Sha1, 6, 0, 59).len(), 6);
        assert_eq!(code_at(&[], TotpAlgorithm::Sha1, 6, 30, u64::MAX).len(), 6);
    }

    fn enrolment_code(secret: &TotpSecret, now: u64) -> String {
        code_at(secret.as_bytes(), TotpAlgorithm::Sha1, 6, 30, now)
    }

    #[test]
    fn verify_accepts_current_and_adjacent_steps_only() {
        let s = TotpSecret::generate();
        let now = 1_700_000_015; // step 56_666_667, 15 s in
        let step = now / 30;
        assert_eq!(verify(&s, &enrolment_code(&s, now), now, None), Some(step));
        assert_eq!(
            verify(&s, &enrolment_code(&s, now - 30), now, None),
            Some(step - 1)
        );
        assert_eq!(
            verify(&s, &enrolment_code(&s, now + 30), now, None),
            Some(step + 1)
        );
        for far in [now - 60, now + 60, now - 3600] {
            let code = enrolment_code(&s, far);
            // A far code can coincide with a near one by chance (1e-6).
            let near: Vec<String> = [now - 30, now, now + 30]
                .iter()
                .map(|t| enrolment_code(&s, *t))
                .collect();
            if !near.contains(&code) {
                assert_eq!(verify(&s, &code, now, None), None);
            }
        }
    }

    #[test]
    fn verify_rejects_replay() {
        let s = TotpSecret::generate();
        let now = 1_700_000_000;
        let code = enrolment_code(&s, now);
        let step = verify(&s, &code, now, None).unwrap();
        assert_eq!(verify(&s, &code, now, Some(step)), None);
        assert_eq!(verify(&s, &code, now + 10, Some(step)), None);
        // An older code after a newer one was used.
        let next = enrolment_code(&s, now + 30);
        let next_step = verify(&s, &next, now + 30, Some(step)).unwrap();
        assert_eq!(next_step, step + 1);
        assert_eq!(verify(&s, &code, now + 30, Some(next_step)), None);
        // The step before last_used is rejected even if within the window.
        assert_eq!(verify(&s, &code, now, Some(step + 5)), None);
    }

    #[test]
    fn verify_rejects_malformed_codes() {
        let s = TotpSecret::from_bytes(&seed(20)).unwrap();
        let now = 59;
        let good = enrolment_code(&s, now);
        assert_eq!(good, "287082");
        assert!(verify(&s, &good, now, None).is_some());
        for bad in [
            "",
            "28708",
            "2870820",
            " 287082",
            "287082 ",
            "287 082",
            "+87082",
            "-87082",
            "28708a",
            "２８７０８２", // full-width digits
            "94287082",     // the 8-digit code
        ] {
            assert_eq!(verify(&s, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_near_time_zero_and_the_end_of_time() {
        let s = TotpSecret::generate();
        assert_eq!(verify(&s, &enrolment_code(&s, 0), 0, None), Some(0));
        assert_eq!(verify(&s, &enrolment_code(&s, 0), 29, Some(0)), None);
        let end = u64::MAX;
        let code = enrolment_code(&s, end);
        assert_eq!(verify(&s, &code, end, None), Some(end / 30));
    }

    #[test]
    fn secret_encodings() {
        let s = TotpSecret::generate();
        assert_eq!(s.as_bytes().len(), SECRET_BYTES);
        assert_ne!(s, TotpSecret::generate());
        let b32 = s.base32();
        assert_eq!(b32.len(), 32);
        assert!(
            b32.bytes()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
        );
        assert_eq!(TotpSecret::from_base32(&b32).unwrap(), s);
        assert_eq!(TotpSecret::from_base32(&b32.to_lowercase()).unwrap(), s);
        // RFC 4648 §10 test vector, and the RFC 6238 SHA-1 seed.
        assert_eq!(
            TotpSecret::from_bytes(b"12345678901234567890")
                .unwrap()
                .base32(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(
            TotpSecret::from_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ")
                .unwrap()
                .as_bytes(),
            b"12345678901234567890"
        );
        assert_eq!(TotpSecret::from_base32("GEZD1"), Err(TotpError::Base32));
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBV"),
            Err(TotpError::SecretLength(5))
        );
        assert_eq!(
            TotpSecret::from_bytes(&[0; 15]),
            Err(TotpError::SecretLength(15))
        );
        assert_eq!(
            TotpSecret::from_bytes(&[0; 65]),
            Err(TotpError::SecretLength(65))
        );
        assert!(TotpSecret::from_bytes(&[0; 16]).is_ok());
        assert!(TotpSecret::from_bytes(&[0; 64]).is_ok());
    }

    #[test]
    fn debug_redacts() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let shown = format!("{s:?}");
        assert_eq!(shown, "TotpSecret([REDACTED])");
    }

    #[test]
    fn otpauth_uri_is_percent_encoded() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(
            s.otpauth_uri("Warden", "alice@example.com"),
            "otpauth://totp/Warden:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Warden&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            s.otpauth_uri("Acme Corp & Co", "bob/ops?x=1#y"),
            "otpauth://totp/Acme%20Corp%20%26%20Co:bob%2Fops%3Fx%3D1%23y?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp%20%26%20Co&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            s.otpauth_uri("Wärden", "a:b"),
            "otpauth://totp/W%C3%A4rden:a%3Ab?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=W%C3%A4rden&algorithm=SHA1&digits=6&period=30"
        );
    }
}
