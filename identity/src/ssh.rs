//! SSH public keys as a person pastes them: one `authorized_keys`-style line.
//!
//! [`parse_public_key`] accepts `ALGORITHM BASE64 [COMMENT]` (no
//! `authorized_keys` options) for `ssh-ed25519`, `ecdsa-sha2-nistp256`,
//! `ecdsa-sha2-nistp384`, `ecdsa-sha2-nistp521`, and `ssh-rsa` of at least
//! [`MIN_RSA_BITS`] bits. It refuses DSA, short RSA, security-key (FIDO) keys
//! and certificates with a message that says why.
//!
//! Decoding the key blob and the fingerprint are the `ssh-key` crate's; the
//! blob must be the canonical encoding of the key it holds, so the fingerprint
//! printed here is the one `ssh-keygen -l -E sha256` prints. What is not
//! checked: that an ECDSA point lies on its curve or an RSA modulus is a
//! product of two primes. Such a key can never verify a signature, so it can
//! lock no one out but its owner.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ssh_key::public::KeyData;
use ssh_key::{EcdsaCurve, HashAlg, PublicKey};

/// Longest line accepted, in bytes (16 KiB; a 16384-bit RSA key is ~2.8 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 256;
/// Smallest RSA modulus accepted, in bits (NIST SP 800-57: 128-bit security).
pub const MIN_RSA_BITS: u32 = 3072;
/// Largest RSA modulus accepted, in bits (OpenSSH's own limit).
pub const MAX_RSA_BITS: u32 = 16384;

/// The key types [`parse_public_key`] accepts.
pub const ACCEPTED_ALGORITHMS: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// A parsed, accepted SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshPublicKey {
    /// The key type, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// Key size in bits as `ssh-keygen -l` prints it: 256 for Ed25519, the
    /// curve size for ECDSA, the modulus size for RSA.
    pub bits: Option<u32>,
    /// `SHA256:` and the unpadded base64 SHA-256 of the key blob, as
    /// `ssh-keygen -l -E sha256` prints it.
    pub fingerprint: String,
    /// The canonical `ALGORITHM BASE64` form, without comment.
    pub openssh: String,
    /// The comment (often `user@host`), possibly empty; at most
    /// [`MAX_COMMENT_CHARS`] characters and free of control characters.
    pub comment: String,
}

/// Why an SSH public key line was refused. Messages quote at most the key
/// type (truncated), never the key data or comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshKeyError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("SSH public key is {0} bytes; the limit is {MAX_LINE_BYTES} bytes")]
    TooLong(usize),
    /// Nothing but whitespace.
    #[error("SSH public key is empty")]
    Empty,
    /// Not a single `ALGORITHM BASE64 [COMMENT]` line.
    #[error("SSH public key must be one line of the form ALGORITHM BASE64 [COMMENT] ({0})")]
    Format(&'static str),
    /// The line starts with `authorized_keys` options.
    #[error(
        "SSH public key must not carry authorized_keys options; give only ALGORITHM BASE64 [COMMENT]"
    )]
    Options,
    /// DSA (`ssh-dss`).
    #[error(
        "DSA (ssh-dss) keys are insecure and not accepted; use an ssh-ed25519 key (ssh-keygen -t ed25519)"
    )]
    Dsa,
    /// RSA below [`MIN_RSA_BITS`].
    #[error(
        "RSA key is {0} bits; the minimum is {MIN_RSA_BITS} bits (or use ssh-keygen -t ed25519)"
    )]
    RsaTooSmall(u32),
    /// RSA above [`MAX_RSA_BITS`].
    #[error("RSA key is {0} bits; the maximum is {MAX_RSA_BITS} bits")]
    RsaTooLarge(u32),
    /// A FIDO/U2F security-key type (`sk-…@openssh.com`).
    #[error(
        "security-key SSH keys ({0}) are not supported yet; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa"
    )]
    SecurityKey(String),
    /// An OpenSSH certificate (`…-cert-v01@openssh.com`).
    #[error("SSH certificates ({0}) are not accepted; give the plain public key")]
    Certificate(String),
    /// Any other key type.
    #[error(
        "SSH key type {0:?} is not supported; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa"
    )]
    UnsupportedAlgorithm(String),
    /// The key data is not canonical base64.
    #[error("SSH public key data is not valid base64")]
    Base64,
    /// The decoded key blob is malformed, has trailing bytes, or is not in
    /// canonical form.
    #[error("SSH public key data is malformed ({0})")]
    Malformed(String),
    /// The type in the text and the type inside the key data differ.
    #[error("SSH key type {text:?} does not match the key data, which is {data:?}")]
    AlgorithmMismatch {
        /// The type written in the line.
        text: String,
        /// The type encoded in the key blob.
        data: String,
    },
    /// The comment is longer than [`MAX_COMMENT_CHARS`].
    #[error("SSH key comment is {0} characters; the limit is {MAX_COMMENT_CHARS}")]
    CommentTooLong(usize),
    /// The comment contains a control or bidirectional-formatting character.
    #[error("SSH key comment must not contain control or bidirectional-formatting characters")]
    CommentControl,
}

impl SshKeyError {
    /// Every refusal is about the caller's input.
    pub fn fault(&self) -> warden_types::Fault {
        warden_types::Fault::Client
    }
}

/// At most 64 characters of untrusted text, for error messages.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Control characters, and the invisible formatting characters that can make
/// a comment display differently from what it is (bidi overrides, zero-width
/// characters, the BOM).
fn is_forbidden_in_comment(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Refuses the types Warden does not take, before any decoding.
fn check_type(alg: &str) -> Result<(), SshKeyError> {
    if alg == "ssh-dss" {
        return Err(SshKeyError::Dsa);
    }
    if alg.ends_with("-cert-v01@openssh.com") {
        return Err(SshKeyError::Certificate(shown(alg)));
    }
    if alg.starts_with("sk-") {
        return Err(SshKeyError::SecurityKey(shown(alg)));
    }
    if !ACCEPTED_ALGORITHMS.contains(&alg) {
        return Err(SshKeyError::UnsupportedAlgorithm(shown(alg)));
    }
    Ok(())
}

/// Bits in a positive big-endian integer without leading zero bytes.
fn bit_length(bytes: &[u8]) -> u32 {
    match bytes.first() {
        None => 0,
        Some(first) => {
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX / 8);
            len.saturating_sub(1).saturating_mul(8) + (8 - first.leading_zeros())
        }
    }
}

/// Parses one `authorized_keys`-style line, `ALGORITHM BASE64 [COMMENT]`.
///
/// Fields are separated by spaces or tabs; leading and trailing spaces and
/// tabs and one final line ending (`\n` or `\r\n`) are ignored; everything
/// after the key data is the comment. Options before the type are refused.
///
/// # Errors
///
/// An [`SshKeyError`] naming the problem.
pub fn parse_public_key(line: &str) -> Result<SshPublicKey, SshKeyError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(SshKeyError::TooLong(line.len()));
    }
    let line = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(line)
        .trim_matches(is_separator);
    if line.is_empty() {
        return Err(SshKeyError::Empty);
    }
    if line.contains(['\n', '\r']) {
        return Err(SshKeyError::Format("more than one line"));
    }

    let (alg, rest) = line.split_once(is_separator).unwrap_or((line, ""));
    let rest = rest.trim_start_matches(is_separator);
    let (data, comment) = rest.split_once(is_separator).unwrap_or((rest, ""));
    let comment = comment.trim_start_matches(is_separator);

    if alg.chars().any(|c| c.is_control()) || data.chars().any(|c| c.is_control()) {
        return Err(SshKeyError::Format("control character"));
    }
    if !looks_like_key_type(alg) && (looks_like_key_type(data) || alg.contains(['=', '"', ','])) {
        return Err(SshKeyError::Options);
    }
    check_type(alg)?;
    if data.is_empty() {
        return Err(SshKeyError::Format("the key data is missing"));
    }

    let comment_chars = comment.chars().count();
    if comment_chars > MAX_COMMENT_CHARS {
        return Err(SshKeyError::CommentTooLong(comment_chars));
    }
    if comment.chars().any(is_forbidden_in_comment) {
        return Err(SshKeyError::CommentControl);
    }

    let blob = STANDARD.decode(data).map_err(|_| SshKeyError::Base64)?;
    let key = PublicKey::from_bytes(&blob).map_err(|e| SshKeyError::Malformed(e.to_string()))?;
    let data_alg = key.algorithm();
    if data_alg.as_str() != alg {
        return Err(SshKeyError::AlgorithmMismatch {
            text: shown(alg),
            data: shown(data_alg.as_str()),
        });
    }
    // The same key could be encoded in more than one way (e.g. an RSA integer
    // with superfluous leading zeros); accept only the one way, so that one key
    // has one `openssh` form and one fingerprint.
    let canonical = key
        .to_bytes()
        .map_err(|e| SshKeyError::Malformed(e.to_string()))?;
    if canonical != blob {
        return Err(SshKeyError::Malformed("not in canonical form".to_owned()));
    }

    let bits = match key.key_data() {
        KeyData::Ed25519(_) => 256,
        KeyData::Ecdsa(point) => {
            // OpenSSH writes and accepts uncompressed points only.
            if point.as_sec1_bytes().first() != Some(&0x04) {
                return Err(SshKeyError::Malformed(
                    "ECDSA point is not in uncompressed form".to_owned(),
                ));
            }
            match point.curve() {
                EcdsaCurve::NistP256 => 256,
                EcdsaCurve::NistP384 => 384,
                EcdsaCurve::NistP521 => 521,
            }
        }
        KeyData::Rsa(rsa) => {
            let modulus = rsa
                .n
                .as_positive_bytes()
                .ok_or_else(|| SshKeyError::Malformed("RSA modulus is negative".to_owned()))?;
            let bits = bit_length(modulus);
            if bits < MIN_RSA_BITS {
                return Err(SshKeyError::RsaTooSmall(bits));
            }
            if bits > MAX_RSA_BITS {
                return Err(SshKeyError::RsaTooLarge(bits));
            }
            bits
        }
        // check_type and the algorithm match above leave only the types handled.
        other => {
            return Err(SshKeyError::UnsupportedAlgorithm(shown(
                other.algorithm().as_str(),
            )));
        }
    };

    Ok(SshPublicKey {
        algorithm: alg.to_owned(),
        bits: Some(bits),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        openssh: format!("{alg} {data}"),
        comment: comment.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = include_str!("../testdata/ed25519.pub");

    /// An SSH wire string: u32 big-endian length, then the bytes.
    fn wire(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    fn line(alg: &str, blob: &[u8]) -> String {
        format!("{alg} {}", STANDARD.encode(blob))
    }

    fn ed25519_data() -> &'static str {
        ED25519.split(' ').nth(1).unwrap()
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80]), 8);
        assert_eq!(bit_length(&[0x01, 0]), 9);
        assert_eq!(bit_length(&[0xff; 384]), 3072);
        assert_eq!(bit_length(&[0x7f; 384]), 3071);
    }

    #[test]
    fn whitespace_and_line_endings() {
        let data = ed25519_data();
        let base = parse_public_key(&format!("ssh-ed25519 {data}")).unwrap();
        assert_eq!(base.comment, "");
        assert_eq!(base.openssh, format!("ssh-ed25519 {data}"));
        for variant in [
            format!("ssh-ed25519 {data}\n"),
            format!("ssh-ed25519 {data}\r\n"),
            format!("  ssh-ed25519\t{data}  "),
            format!("ssh-ed25519  {data} \n"),
        ] {
            let k = parse_public_key(&variant).unwrap();
            assert_eq!(k, base, "{variant:?}");
        }
        let k = parse_public_key(&format!("ssh-ed25519 {data}   alice  at work ")).unwrap();
        assert_eq!(k.comment, "alice  at work");
        assert_eq!(k.fingerprint, base.fingerprint);
    }

    #[test]
    fn refusals() {
        let data = ed25519_data();
        let ecdsa256 = include_str!("../testdata/ecdsa256.pub")
            .split(' ')
            .nth(1)
            .unwrap();
        assert!(ecdsa256.ends_with('='));
        assert!(parse_public_key(&format!("ecdsa-sha2-nistp256 {ecdsa256} c")).is_ok());
        let cases: Vec<(String, SshKeyError)> = vec![
            (String::new(), SshKeyError::Empty),
            (" \t\n".to_owned(), SshKeyError::Empty),
            (
                "ssh-ed25519".to_owned(),
                SshKeyError::Format("the key data is missing"),
            ),
            (
                format!("ssh-ed25519 {data}\nssh-ed25519 {data}"),
                SshKeyError::Format("more than one line"),
            ),
            (
                format!("ssh-ed25519 {data} c\nssh-ed25519 {data}"),
                SshKeyError::Format("more than one line"),
            ),
            (
                format!("ssh-ed25519 {data}\n\n"),
                SshKeyError::Format("more than one line"),
            ),
            (
                format!("ssh-ed25519\u{0} {data}"),
                SshKeyError::Format("control character"),
            ),
            (format!("no-pty ssh-ed25519 {data}"), SshKeyError::Options),
            (
                format!("command=\"ls\" ssh-ed25519 {data}"),
                SshKeyError::Options,
            ),
            (format!("ssh-dss {data}"), SshKeyError::Dsa),
            (
                format!("ssh-ed25519-cert-v01@openssh.com {data}"),
                SshKeyError::Certificate("ssh-ed25519-cert-v01@openssh.com".to_owned()),
            ),
            (
                format!("ssh-ed448 {data}"),
                SshKeyError::UnsupportedAlgorithm("ssh-ed448".to_owned()),
            ),
            (
                format!("ssh-rsa {data}"),
                SshKeyError::AlgorithmMismatch {
                    text: "ssh-rsa".to_owned(),
                    data: "ssh-ed25519".to_owned(),
                },
            ),
            (
                format!("ssh-ed25519 {}", &data[..data.len() - 1]),
                SshKeyError::Base64,
            ),
            (format!("ssh-ed25519 {data}!"), SshKeyError::Base64),
            (
                // Padding left out (the base64 of a P-256 key blob ends in '=').
                format!("ecdsa-sha2-nistp256 {} c", ecdsa256.trim_end_matches('=')),
                SshKeyError::Base64,
            ),
            (
                format!("ssh-ed25519 {data} {}", "c".repeat(257)),
                SshKeyError::CommentTooLong(257),
            ),
            (
                format!("ssh-ed25519 {data} bell\u{7}"),
                SshKeyError::CommentControl,
            ),
            (
                format!("ssh-ed25519 {data} evil\u{202E}moc.elpmaxe"),
                SshKeyError::CommentControl,
            ),
            (
                format!("ssh-ed25519 {data} \ttab\tinside"),
                SshKeyError::CommentControl,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_public_key(&input), Err(want), "{input:?}");
        }
        let long = format!("ssh-ed25519 {data} {}", "c".repeat(MAX_LINE_BYTES));
        assert_eq!(
            parse_public_key(&long),
            Err(SshKeyError::TooLong(long.len()))
        );
        // 256 characters (not bytes) is the limit.
        let ok = format!("ssh-ed25519 {data} {}", "é".repeat(256));
        assert_eq!(parse_public_key(&ok).unwrap().comment.chars().count(), 256);
    }

    #[test]
    fn trailing_bytes_in_the_blob_are_refused() {
        let data = ed25519_data();
        let mut blob = STANDARD.decode(data).unwrap();
        blob.push(0);
        assert!(matches!(
            parse_public_key(&line("ssh-ed25519", &blob)),
            Err(SshKeyError::Malformed(_))
        ));
        blob.truncate(blob.len() - 2);
        assert!(matches!(
            parse_public_key(&line("ssh-ed25519", &blob)),
            Err(SshKeyError::Malformed(_))
        ));
    }

    #[test]
    fn security_keys_are_refused_as_unsupported() {
        let sk = wire(&[b"sk-ssh-ed25519@openssh.com", &[7u8; 32], b"ssh:"]);
        let err = parse_public_key(&line("sk-ssh-ed25519@openssh.com", &sk)).unwrap_err();
        assert_eq!(
            err,
            SshKeyError::SecurityKey("sk-ssh-ed25519@openssh.com".to_owned())
        );
        assert!(err.to_string().contains("not supported yet"));
        let mut point = vec![4u8];
        point.extend_from_slice(&[1u8; 64]);
        let sk = wire(&[
            b"sk-ecdsa-sha2-nistp256@openssh.com",
            b"nistp256",
            &point,
            b"ssh:",
        ]);
        assert!(matches!(
            parse_public_key(&line("sk-ecdsa-sha2-nistp256@openssh.com", &sk)),
            Err(SshKeyError::SecurityKey(_))
        ));
    }

    #[test]
    fn rsa_modulus_with_a_superfluous_zero_is_not_canonical() {
        let mut n = vec![0u8, 0u8];
        n.extend_from_slice(&[0xC5; 384]);
        let blob = wire(&[b"ssh-rsa", &[1, 0, 1], &n]);
        assert!(matches!(
            parse_public_key(&line("ssh-rsa", &blob)),
            Err(SshKeyError::Malformed(_))
        ));
    }

    #[test]
    fn rsa_sizes_from_synthetic_moduli() {
        for (bytes, top, want) in [
            (256usize, 0xC5u8, Err(SshKeyError::RsaTooSmall(2048))),
            (384, 0x45, Err(SshKeyError::RsaTooSmall(3071))),
            (384, 0xC5, Ok(3072)),
            (2048, 0xC5, Ok(16384)),
            (2049, 0x01, Err(SshKeyError::RsaTooLarge(16385))),
        ] {
            let mut n = vec![0u8; bytes];
            n[0] = top;
            n[bytes - 1] = 0x01;
            if top >= 0x80 {
                n.insert(0, 0);
            }
            let blob = wire(&[b"ssh-rsa", &[1, 0, 1], &n]);
            let got = parse_public_key(&line("ssh-rsa", &blob)).map(|k| k.bits.unwrap());
            assert_eq!(got, want, "{bytes} bytes, top {top:#x}");
        }
        let err = SshKeyError::RsaTooSmall(2048).to_string();
        assert!(err.contains("2048") && err.contains("3072"), "{err}");
    }

    #[test]
    fn compressed_ecdsa_points_are_refused() {
        let mut point = vec![2u8];
        point.extend_from_slice(&[1u8; 32]);
        let blob = wire(&[b"ecdsa-sha2-nistp256", b"nistp256", &point]);
        assert!(matches!(
            parse_public_key(&line("ecdsa-sha2-nistp256", &blob)),
            Err(SshKeyError::Malformed(_))
        ));
    }

    #[test]
    fn errors_do_not_echo_long_input() {
        let alg = "x".repeat(1000);
        let err = parse_public_key(&format!("ssh-{alg} AAAA")).unwrap_err();
        assert!(err.to_string().len() < 250, "{err}");
    }
}
