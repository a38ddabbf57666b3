use super::*;
use crate::secret_context;

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    key: String,
    hkdf_salt: Option<String>,
    hkdf_info: Option<String>,
    term: u32,
    nonce: String,
    context: Ctx,
    plaintext: String,
    envelope: String,
}

#[derive(serde::Deserialize)]
struct Ctx {
    org: String,
    scope: String,
    name: String,
    version: u64,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("../../testdata/envelope-v1.json")).unwrap()
}

fn key_of(v: &Vector) -> AeadKey {
    let raw: [u8; 32] = hex::decode(&v.key).unwrap().try_into().unwrap();
    match (&v.hkdf_salt, &v.hkdf_info) {
        (Some(salt), Some(info)) => {
            AeadKey::derive(&raw, &hex::decode(salt).unwrap(), info.as_bytes()).unwrap()
        }
        _ => AeadKey::from_bytes(&raw).unwrap(),
    }
}

/// The committed vectors come from an independent implementation
/// (testdata/gen_vectors.py, pyca/cryptography); check both directions.
#[test]
fn envelope_vectors_seal_and_open_both_ways() {
    for v in vectors() {
        let key = key_of(&v);
        let version = v.context.version.to_be_bytes();
        let ctx = secret_context(&v.context.org, &v.context.scope, &v.context.name, &version);
        let nonce: [u8; 12] = hex::decode(&v.nonce).unwrap().try_into().unwrap();
        let sealed = key
            .seal_with_nonce(v.term, nonce, &ctx, v.plaintext.as_bytes())
            .unwrap();
        assert_eq!(hex::encode(&sealed), v.envelope, "seal: {}", v.name);
        let expected = hex::decode(&v.envelope).unwrap();
        let opened = key.open(&expected, &ctx).unwrap();
        assert_eq!(
            opened.as_slice(),
            v.plaintext.as_bytes(),
            "open: {}",
            v.name
        );
        assert_eq!(envelope_term(&expected).unwrap(), v.term);
    }
}

#[test]
fn aad_binds_every_context_field_and_the_header() {
    let v = &vectors()[0];
    let key = key_of(v);
    let env = hex::decode(&v.envelope).unwrap();
    let ver = 3u64.to_be_bytes();
    let other_ver = 4u64.to_be_bytes();
    let moved: [[&[u8]; 4]; 5] = [
        [b"other", b"acme/shop/prod", b"DATABASE_URL", &ver],
        [b"acme", b"acme/shop/staging", b"DATABASE_URL", &ver],
        [b"acme", b"acme/shop/prod", b"DATABASE_URI", &ver],
        [b"acme", b"acme/shop/prod", b"DATABASE_URL", &other_ver],
        // Field boundaries matter: same bytes, split differently.
        [b"acmeacme/shop/prod", b"", b"DATABASE_URL", &ver],
    ];
    for ctx in moved {
        assert_eq!(key.open(&env, &ctx), Err(CryptoError::Open), "{ctx:?}");
    }
    // A header claiming another term fails too.
    let mut retermed = env.clone();
    retermed[4] ^= 1;
    let ctx = secret_context("acme", "acme/shop/prod", "DATABASE_URL", &ver);
    assert_eq!(key.open(&retermed, &ctx), Err(CryptoError::Open));
    // Every flipped bit of nonce, ciphertext or tag is detected.
    for i in 5..env.len() {
        let mut t = env.clone();
        t[i] ^= 0x80;
        assert_eq!(key.open(&t, &ctx), Err(CryptoError::Open), "byte {i}");
    }
}

#[test]
fn malformed_envelopes_are_rejected_without_panicking() {
    let key = AeadKey::from_bytes(&[7; 32]).unwrap();
    for bad in [&[][..], &[1], &[2; 40], &[1; 32]] {
        assert!(key.open(bad, &[]).is_err());
    }
}

#[test]
fn fresh_nonces_make_equal_plaintexts_differ() {
    let key = AeadKey::from_bytes(&random_key().unwrap()).unwrap();
    let a = key.seal(1, &[b"x"], b"same").unwrap();
    let b = key.seal(1, &[b"x"], b"same").unwrap();
    assert_ne!(a, b);
    assert_eq!(key.open(&a, &[b"x"]).unwrap().as_slice(), b"same");
}

#[test]
fn argon2id_kek_depends_on_passphrase_and_salt_and_refuses_absurd_parameters() {
    let p = Argon2Params {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    let a = p.derive_kek(b"correct horse", &[1; 16]).unwrap();
    assert_eq!(a, p.derive_kek(b"correct horse", &[1; 16]).unwrap());
    assert_ne!(a, p.derive_kek(b"correct horsf", &[1; 16]).unwrap());
    assert_ne!(a, p.derive_kek(b"correct horse", &[2; 16]).unwrap());
    let huge = Argon2Params {
        m_kib: u32::MAX,
        t: 1,
        p: 1,
    };
    assert_eq!(huge.derive_kek(b"x", &[1; 16]), Err(CryptoError::Derive));
}

proptest::proptest! {
    #[test]
    fn open_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let key = AeadKey::from_bytes(&[9; 32]).unwrap();
        let _ = key.open(&bytes, &[b"ctx"]);
        let _ = envelope_term(&bytes);
    }
}
