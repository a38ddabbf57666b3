//! Real keys made once with OpenSSH 9.2's `ssh-keygen` (private halves
//! deleted): `ssh-keygen -t TYPE [-b BITS] -N '' -f testdata/NAME`, then
//! `ssh-keygen -l -E sha256 -f testdata/NAME.pub > testdata/NAME.pub.fp`.
//! The fingerprints and sizes parsed here must match ssh-keygen's byte for
//! byte.

// Test code fails by panicking; the workspace's production-code lints do
// not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_identity::ssh::{SshKeyError, parse_public_key};

struct Fixture {
    name: &'static str,
    public: &'static str,
    keygen: &'static str,
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            public: include_str!(concat!("../testdata/", $name, ".pub")),
            keygen: include_str!(concat!("../testdata/", $name, ".pub.fp")),
        }
    };
}

/// `BITS SHA256:FP COMMENT (TYPE)` as ssh-keygen -l prints it.
fn keygen_line(f: &Fixture) -> (u32, &'static str, &'static str) {
    let line = f.keygen.trim_end();
    let (bits, rest) = line.split_once(' ').unwrap();
    let (fp, rest) = rest.split_once(' ').unwrap();
    let comment = rest.rsplit_once(" (").unwrap().0;
    (bits.parse().unwrap(), fp, comment)
}

#[test]
fn accepted_keys_match_ssh_keygen() {
    let accepted = [
        (fixture!("ed25519"), "ssh-ed25519"),
        (fixture!("ecdsa256"), "ecdsa-sha2-nistp256"),
        (fixture!("ecdsa384"), "ecdsa-sha2-nistp384"),
        (fixture!("ecdsa521"), "ecdsa-sha2-nistp521"),
        (fixture!("rsa3072"), "ssh-rsa"),
        (fixture!("rsa4096"), "ssh-rsa"),
    ];
    for (f, alg) in accepted {
        let key = parse_public_key(f.public).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let (bits, fp, comment) = keygen_line(&f);
        assert_eq!(key.fingerprint, fp, "{}", f.name);
        assert_eq!(key.bits, Some(bits), "{}", f.name);
        assert_eq!(key.comment, comment, "{}", f.name);
        assert_eq!(key.algorithm, alg, "{}", f.name);
        // The canonical form is the file's first two fields.
        let mut fields = f.public.split(' ');
        let want = format!("{} {}", fields.next().unwrap(), fields.next().unwrap());
        assert_eq!(key.openssh, want, "{}", f.name);
        // Re-parsing the canonical form gives the same key without comment.
        let again = parse_public_key(&key.openssh).unwrap();
        assert_eq!(again.fingerprint, key.fingerprint);
        assert_eq!(again.comment, "");
    }
}

#[test]
fn short_rsa_is_refused_with_its_size() {
    let f = fixture!("rsa2048");
    assert_eq!(keygen_line(&f).0, 2048);
    let err = parse_public_key(f.public).unwrap_err();
    assert_eq!(err, SshKeyError::RsaTooSmall(2048));
    let text = err.to_string();
    assert!(text.contains("2048") && text.contains("3072"), "{text}");
}

#[test]
fn dsa_is_refused() {
    let f = fixture!("dsa");
    assert!(f.public.starts_with("ssh-dss "));
    let err = parse_public_key(f.public).unwrap_err();
    assert_eq!(err, SshKeyError::Dsa);
    assert!(err.to_string().contains("DSA"));
}

#[test]
fn key_type_must_match_the_blob() {
    let f = fixture!("ecdsa384");
    let data = f.public.split(' ').nth(1).unwrap();
    assert!(matches!(
        parse_public_key(&format!("ecdsa-sha2-nistp256 {data}")),
        Err(SshKeyError::AlgorithmMismatch { .. })
    ));
}
