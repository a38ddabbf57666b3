//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519, and the
//! C2SP transparency-log checkpoint body (<https://c2sp.org/tlog-checkpoint>).
//!
//! A signed note is a text ending in a newline, a blank line, and one or
//! more signature lines `— <key name> <base64(key id[4] ‖ signature)>`. The
//! signature covers the text including its final newline. An Ed25519 key id
//! is the first four bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`;
//! a verifier key is written `name+<8 hex key id>+<base64(0x01 ‖ key)>`.
//!
//! A checkpoint body is exactly three lines: the log's origin, the tree size
//! in decimal, and the root hash in standard base64. Warden writes no
//! extension lines and refuses bodies that carry some.
//!
//! Ed25519 and SHA-256 are `ring`'s. Private keys are held only as PKCS#8
//! bytes in zeroize-on-drop buffers and parsed for each signature.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::merkle::Hash;

/// The largest note [`open`] accepts, in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// The most signature lines [`open`] accepts (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// The signature type byte of Ed25519 in the C2SP signed-note registry.
pub const ALG_ED25519: u8 = 0x01;

/// Why a note, key or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Over [`MAX_NOTE_BYTES`].
    #[error("the note is larger than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8.
    #[error("the note is not valid UTF-8")]
    NotUtf8,
    /// Not in the signed-note syntax.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("the note has more than {MAX_SIGNATURES} signature lines")]
    TooManySignatures,
    /// A signature from a trusted key (`name+keyid`) does not verify.
    #[error("invalid signature for key {0}")]
    BadSignature(String),
    /// No signature from a trusted key.
    #[error("the note has no signature from a trusted key")]
    NoTrustedSignature,
    /// A key name that is empty or holds a space, a `+` or a control
    /// character.
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    /// A verifier key string that does not parse.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// A private key that ring refuses.
    #[error("the Ed25519 private key was rejected: {0}")]
    BadPrivateKey(String),
    /// The system random generator failed.
    #[error("could not generate a key")]
    KeyGeneration,
    /// A body to sign that is not a note text.
    #[error("cannot sign this text: {0}")]
    BadText(&'static str),
    /// A checkpoint body that does not parse.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

/// A C2SP tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (e.g. `warden.example.com/audit/acme`).
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 root of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, each ending in `\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a body written by [`Checkpoint::body`]: exactly three
    /// newline-terminated lines, a non-empty origin without control
    /// characters, a decimal size without leading zeros, and a canonical
    /// standard-base64 32-byte root. Extension lines are refused.
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::BadCheckpoint;
        let text = body
            .strip_suffix('\n')
            .ok_or(bad("the body must end with a newline"))?;
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("the body must be exactly three lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin"));
        }
        if origin.chars().any(char::is_control) {
            return Err(bad("control character in the origin"));
        }
        let size = parse_decimal(size).ok_or(bad("the size is not a canonical decimal"))?;
        let root_bytes = STANDARD
            .decode(root)
            .map_err(|_| bad("the root is not base64"))?;
        // One root, one spelling: refuse non-canonical encodings.
        if STANDARD.encode(&root_bytes) != root {
            return Err(bad("the root is not canonical base64"));
        }
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| bad("the root is not 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A decimal `u64` with no sign, no leading zero (except `0`) and no other
/// characters.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    s.parse().ok()
}

/// Whether `name` can be a signed-note key name: non-empty, no Unicode
/// space, no `+`, no control character.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[0x0A, ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(d.as_ref().get(..4).unwrap_or(&[0; 4]));
    id
}

fn fingerprint_of(public: &[u8; 32]) -> String {
    hex::encode(digest::digest(&digest::SHA256, public))
}

fn vkey_of(name: &str, id: &[u8; 4], public: &[u8; 32]) -> String {
    let mut k = Vec::with_capacity(33);
    k.push(ALG_ED25519);
    k.extend_from_slice(public);
    format!("{name}+{}+{}", hex::encode(id), STANDARD.encode(k))
}

/// Checks the characters of a note (or note text): no ASCII control
/// character other than newline.
fn check_chars(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// Signs note texts with an Ed25519 key.
///
/// Holds the private key as PKCS#8 bytes in a zeroize-on-drop buffer; each
/// [`NoteSigner::sign`] parses it anew, so no long-lived expanded key sits
/// in memory. `Debug` does not print the key.
pub struct NoteSigner {
    name: String,
    pkcs8: Zeroizing<Vec<u8>>,
    public: [u8; 32],
    key_id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}

impl NoteSigner {
    /// A fresh key named `name`, from the OS CSPRNG. Returns the signer and
    /// its PKCS#8 (v2) document, for the caller to store (sealed).
    pub fn generate(name: &str) -> Result<(NoteSigner, Zeroizing<Vec<u8>>), NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.to_owned()));
        }
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| NoteError::KeyGeneration)?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        let signer = Self::from_pkcs8(name, &pkcs8)?;
        Ok((signer, pkcs8))
    }

    /// A signer from a PKCS#8 Ed25519 private key (v2, or v1 without the
    /// public key, which is then derived from the seed).
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<NoteSigner, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.to_owned()));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| NoteError::BadPrivateKey(e.to_string()))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::BadPrivateKey("public key is not 32 bytes".into()))?;
        Ok(NoteSigner {
            name: name.to_owned(),
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            public,
            key_id: key_id(name, &public),
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The C2SP key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4]`.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Lowercase hex SHA-256 of the public key.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.public)
    }

    /// The verifier key, `name+<8 hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        vkey_of(&self.name, &self.key_id, &self.public)
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public: self.public,
        }
    }

    /// Signs `body` (a note text: non-empty, ending in a newline, no
    /// control characters but newlines) and returns the whole signed note:
    /// `body ‖ "\n" ‖ "— " ‖ name ‖ " " ‖ base64(key id ‖ signature) ‖ "\n"`.
    pub fn sign(&self, body: &str) -> Result<String, NoteError> {
        if body.is_empty() || !body.ends_with('\n') {
            return Err(NoteError::BadText("the text must end with a newline"));
        }
        if !check_chars(body) {
            return Err(NoteError::BadText("control character in the text"));
        }
        if body.len() > MAX_NOTE_BYTES / 2 {
            return Err(NoteError::BadText("the text is too large"));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
            .map_err(|e| NoteError::BadPrivateKey(e.to_string()))?;
        let sig = pair.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{body}\n\u{2014} {} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A trusted Ed25519 note-verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    public: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key `name+<8 hex key id>+<base64(0x01 ‖ key)>`.
    /// The name must be valid, the key Ed25519 (type byte 0x01, 32 bytes,
    /// canonical standard base64) and the key id must match the name and
    /// key.
    pub fn from_vkey(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let bad = NoteError::BadVerifierKey;
        let (name, rest) = vkey.split_once('+').ok_or(bad("missing '+'"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(bad("missing second '+'"))?;
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.to_owned()));
        }
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key id is not 8 hex digits"));
        }
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| bad("the key is not base64"))?;
        if STANDARD.encode(&key) != key_b64 {
            return Err(bad("the key is not canonical base64"));
        }
        let (alg, public) = key.split_first().ok_or(bad("empty key"))?;
        if *alg != ALG_ED25519 {
            return Err(bad("not an Ed25519 key (type byte 0x01)"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("the Ed25519 key is not 32 bytes"))?;
        let id = key_id(name, &public);
        if !hex::encode(id).eq_ignore_ascii_case(id_hex) {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: id,
            public,
        })
    }

    /// A verifier from a name and raw public key.
    pub fn from_public_key(name: &str, public: [u8; 32]) -> Result<NoteVerifier, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.to_owned()));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: key_id(name, &public),
            public,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The key id as 8 lowercase hex digits.
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Lowercase hex SHA-256 of the 32-byte public key.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.public)
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        vkey_of(&self.name, &self.key_id, &self.public)
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

/// [`open`] on bytes: refuses non-UTF-8 first.
pub fn open_bytes(
    note: &[u8],
    verifiers: &[NoteVerifier],
) -> Result<(String, Vec<String>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge);
    }
    let s = std::str::from_utf8(note).map_err(|_| NoteError::NotUtf8)?;
    open(s, verifiers)
}

/// Opens a signed note: returns its text (the body, with its final newline)
/// and the names of the trusted keys whose signatures verified.
///
/// The text is split from the signatures at the *last* blank line. Every
/// signature line must be well-formed (`— name base64`, the blob at least
/// 5 bytes); signatures from keys not in `verifiers` (by name *and* key id)
/// are ignored; a signature from a trusted key that does not verify
/// rejects the note; at least one trusted signature must verify. Notes over
/// 1 MiB, with control characters other than newline, or with more than
/// 100 signature lines are refused.
pub fn open(note: &str, verifiers: &[NoteVerifier]) -> Result<(String, Vec<String>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge);
    }
    if !check_chars(note) {
        return Err(NoteError::Malformed("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("no signature, or no final newline"))?;
    if sigs.is_empty() {
        return Err(NoteError::Malformed("no signature"));
    }
    if sigs.bytes().filter(|&b| b == b'\n').count() >= MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let mut verified: Vec<String> = Vec::new();
    for line in sigs.split('\n') {
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
            "a signature line must start with an em dash",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line needs a name and a signature",
        ))?;
        if !valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name in a signature line"));
        }
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        let (id, sig) = blob
            .split_first_chunk::<4>()
            .ok_or(NoteError::Malformed("a signature is too short"))?;
        if sig.is_empty() {
            return Err(NoteError::Malformed("a signature is too short"));
        }
        let mut known = verifiers
            .iter()
            .filter(|v| v.name == name && v.key_id == *id)
            .peekable();
        if known.peek().is_none() {
            continue;
        }
        if known.any(|v| v.verify(text.as_bytes(), sig)) {
            if !verified.iter().any(|n| n == name) {
                verified.push(name.to_owned());
            }
        } else {
            return Err(NoteError::BadSignature(format!(
                "{name}+{}",
                hex::encode(id)
            )));
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok((text.to_owned(), verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from golang.org/x/mod/sumdb/note (note_test.go, the
    // reference implementation of the C2SP signed-note format): Peter
    // Neumann's verifier and private key, Enoch Root's verifier, and their
    // signatures over the same text. Data only; the code is ours.
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    /// The Go private key is `0x01 ‖ 32-byte seed`; wrap the seed in the
    /// fixed PKCS#8 v1 prefix of RFC 8410 §7 for ring.
    fn peter_pkcs8() -> Vec<u8> {
        let b64 = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let raw = STANDARD.decode(b64).unwrap();
        assert_eq!(raw[0], 1);
        let mut doc = hex::decode("302e020100300506032b657004220420").unwrap();
        doc.extend_from_slice(&raw[1..]);
        doc
    }

    fn peter() -> NoteVerifier {
        NoteVerifier::from_vkey(PETER_VKEY).unwrap()
    }

    fn enoch() -> NoteVerifier {
        NoteVerifier::from_vkey(ENOCH_VKEY).unwrap()
    }

    #[test]
    fn published_verifier_key_parses() {
        let v = peter();
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(v.key_id_hex(), "c74f20a3");
        assert_eq!(v.vkey(), PETER_VKEY);
        assert_eq!(enoch().key_id_hex(), "af0cfe78");
    }

    #[test]
    fn signing_reproduces_the_published_note_byte_for_byte() {
        let signer = NoteSigner::from_pkcs8("PeterNeumann", &peter_pkcs8()).unwrap();
        assert_eq!(signer.verifier_key(), PETER_VKEY);
        assert_eq!(signer.key_id(), peter().key_id());
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
        assert!(!format!("{signer:?}").contains(&hex::encode(&peter_pkcs8()[16..])));
    }

    #[test]
    fn published_note_opens_and_tampering_fails() {
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let (body, names) = open(&note, &[peter()]).unwrap();
        assert_eq!(body, TEXT);
        assert_eq!(names, vec!["PeterNeumann"]);
        let (_, names) = open(&note, &[peter(), enoch()]).unwrap();
        assert_eq!(names, vec!["PeterNeumann", "EnochRoot"]);
        let (_, names) = open(&note, &[enoch()]).unwrap();
        assert_eq!(names, vec!["EnochRoot"]);
        assert_eq!(open(&note, &[]), Err(NoteError::NoTrustedSignature));

        // Tampered text.
        let t = note.replacen("cryptography", "cryptographY", 1);
        assert!(matches!(
            open(&t, &[peter()]),
            Err(NoteError::BadSignature(_))
        ));
        // Tampered signature (four base64 characters inserted).
        let bad_sig = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let t = format!("{TEXT}\n{bad_sig}");
        assert_eq!(
            open(&t, &[peter()]),
            Err(NoteError::BadSignature("PeterNeumann+c74f20a3".into()))
        );
        // One bit of the signature flipped.
        let mut blob = STANDARD.decode(PETER_SIG[17..].trim_end()).unwrap();
        blob[10] ^= 1;
        let t = format!("{TEXT}\n\u{2014} PeterNeumann {}\n", STANDARD.encode(&blob));
        assert!(matches!(
            open(&t, &[peter()]),
            Err(NoteError::BadSignature(_))
        ));
        // Name changed: now an unknown key, ignored, so nothing trusted.
        let t = format!(
            "{TEXT}\n{}",
            PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
        );
        assert_eq!(open(&t, &[peter()]), Err(NoteError::NoTrustedSignature));
        // Key id changed: unknown key.
        let t = format!("{TEXT}\n{}", PETER_SIG.replace("x08g", "xxxx"));
        assert_eq!(open(&t, &[peter()]), Err(NoteError::NoTrustedSignature));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n- PeterNeumann AAAAAAA=\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann !!!!\n"),
            format!("{TEXT}\r\n{PETER_SIG}"),
        ];
        for b in &bad {
            assert!(
                matches!(open(b, &[peter()]), Err(NoteError::Malformed(_))),
                "{b:?}"
            );
        }
        let mut bytes = format!("{TEXT}\n{PETER_SIG}").into_bytes();
        bytes.insert(0, 0xff);
        assert_eq!(open_bytes(&bytes, &[peter()]), Err(NoteError::NotUtf8));
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
        assert_eq!(open(&many, &[peter()]), Err(NoteError::TooManySignatures));
        let ok = format!("{TEXT}\n{}", PETER_SIG.repeat(100));
        assert!(open(&ok, &[peter()]).is_ok());
        let huge = format!("{}\n\n{PETER_SIG}", "a".repeat(MAX_NOTE_BYTES));
        assert_eq!(open(&huge, &[peter()]), Err(NoteError::TooLarge));
    }

    #[test]
    fn mangled_verifier_keys_are_refused() {
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                    assert!(NoteVerifier::from_vkey(s).is_err(), "{s}");
                }
            }
        }
        let mut m = b.to_vec();
        for i in 0..m.len() {
            m[i] += 1;
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(NoteVerifier::from_vkey(s).is_err(), "{s}");
            }
            m[i] -= 1;
        }
        // Wrong key length and unknown algorithm, each with a matching id.
        assert!(
            NoteVerifier::from_vkey(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert!(
            NoteVerifier::from_vkey(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .is_err()
        );
    }

    #[test]
    fn round_trip_wrong_key_swapped_and_unknown_signatures() {
        let (a, pkcs8) = NoteSigner::generate("warden.example/audit/acme").unwrap();
        let again = NoteSigner::from_pkcs8(a.name(), &pkcs8).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        let va = NoteVerifier::from_vkey(&a.verifier_key()).unwrap();
        assert_eq!(va, a.verifier());
        assert_eq!(va.fingerprint(), a.fingerprint());
        assert_eq!(va.fingerprint().len(), 64);

        let cp = Checkpoint {
            origin: "warden.example/audit/acme".into(),
            size: 42,
            root: crate::merkle::leaf_hash(b"x"),
        };
        let note = a.sign(&cp.body()).unwrap();
        let (body, names) = open(&note, std::slice::from_ref(&va)).unwrap();
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
        assert_eq!(names, vec![a.name().to_owned()]);

        // Wrong key, same name: a different key id, so an unknown key.
        let (b, _) = NoteSigner::generate("warden.example/audit/acme").unwrap();
        assert_eq!(
            open(&note, &[b.verifier()]),
            Err(NoteError::NoTrustedSignature)
        );

        // A signature moved from another note by the same key.
        let other = a
            .sign(
                &Checkpoint {
                    size: 43,
                    ..cp.clone()
                }
                .body(),
            )
            .unwrap();
        let sig_line = other.rsplit_once("\n\n").unwrap().1;
        let swapped = format!("{}\n{sig_line}", cp.body());
        assert!(matches!(
            open(&swapped, std::slice::from_ref(&va)),
            Err(NoteError::BadSignature(_))
        ));

        // An extra signature from an unknown key is ignored, wherever it is.
        let (c, _) = NoteSigner::generate("witness.example").unwrap();
        let c_line = c.sign(&cp.body()).unwrap();
        let c_line = c_line.rsplit_once("\n\n").unwrap().1;
        let both = format!("{note}{c_line}");
        assert_eq!(
            open(&both, std::slice::from_ref(&va)).unwrap().1,
            vec![a.name()]
        );
        let both = format!(
            "{}\n{c_line}{}",
            cp.body(),
            note.rsplit_once("\n\n").unwrap().1
        );
        assert_eq!(
            open(&both, std::slice::from_ref(&va)).unwrap().1,
            vec![a.name()]
        );
        let names = open(&both, &[va, c.verifier()]).unwrap().1;
        assert_eq!(names, vec!["witness.example", "warden.example/audit/acme"]);
    }

    #[test]
    fn bad_names_and_texts() {
        for n in ["", "a b", "a+b", "a\tb", "a\u{2003}b"] {
            assert!(NoteSigner::generate(n).is_err(), "{n:?}");
        }
        let (s, _) = NoteSigner::generate("k").unwrap();
        assert!(s.sign("").is_err());
        assert!(s.sign("no newline").is_err());
        assert!(s.sign("tab\there\n").is_err());
        assert!(NoteSigner::from_pkcs8("k", b"not a key").is_err());
    }

    #[test]
    fn checkpoint_bodies() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 0,
            root: crate::merkle::empty_root(),
        };
        assert_eq!(
            cp.body(),
            "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
        let root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        for bad in [
            format!("o\n1\n{root}"),
            format!("o\n1\n{root}\nextension\n"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n".to_owned(),
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n".to_owned(),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
            format!("o\x01\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
    }
}
