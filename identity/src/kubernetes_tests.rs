use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A fixed RSA key made with `openssl genrsa 2048` (ring cannot make RSA
/// keys), standing in for a kube-apiserver's service-account key.
const KEY_A: &str = include_str!("../testdata/k8s-issuer-a.pem");
/// Another cluster's.
const KEY_B: &str = include_str!("../testdata/k8s-issuer-b.pem");

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct Signer {
    kid: String,
    key: Key,
}

impl Signer {
    fn rsa(pem: &str, kid: &str) -> Self {
        Self {
            kid: kid.into(),
            key: Key::Rsa(RsaKeyPair::from_pkcs8(&pem_der(pem)).unwrap()),
        }
    }

    fn ec(kid: &str) -> Self {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        Self {
            kid: kid.into(),
            key: Key::Ec(
                EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &SystemRandom::new()).unwrap(),
            ),
        }
    }

    fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                       "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                       "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])})
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
        }
    }

    /// A token with Kubernetes' header (`alg`, `kid`) and these claims.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with(&json!({"alg": self.alg(), "kid": self.kid}), claims)
    }

    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let rng = SystemRandom::new();
        let sig = match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    message.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Key::Ec(k) => k.sign(&rng, message.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn jwks(signers: &[&Signer]) -> Jwks {
    let doc = json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()});
    Jwks::parse(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

/// Claims laid out exactly as a kube-apiserver (1.30) issues them for a
/// projected token of pod `api-7d9f8-x2x4q`, service account `shop/api`.
fn k8s_claims() -> Value {
    json!({
        "aud": ["warden"],
        "exp": NOW + 3600,
        "iat": NOW,
        "iss": ISSUER,
        "jti": "8f1b6c1e-2a0d-4a43-9b1e-52a0d0f1c0de",
        "kubernetes.io": {
            "namespace": "shop",
            "node": {"name": "node-1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"},
            "pod": {"name": "api-7d9f8-x2x4q", "uid": "778a530c-b3f4-47c0-9cd5-ab018fb64f33"},
            "serviceaccount": {"name": "api", "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"},
            "warnafter": NOW + 3000
        },
        "nbf": NOW,
        "sub": "system:serviceaccount:shop:api"
    })
}

/// `k8s_claims` with top-level members replaced (`null` removes one).
fn with(changes: Value) -> Value {
    let mut c = k8s_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// `k8s_claims` with `kubernetes.io` members replaced (`null` removes one).
fn with_k8s(changes: Value) -> Value {
    let mut c = k8s_claims();
    for (k, v) in changes.as_object().unwrap() {
        let obj = c["kubernetes.io"].as_object_mut().unwrap();
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

fn issuer(keys: &Jwks) -> Issuer<'_> {
    Issuer {
        issuer: ISSUER,
        audience: "warden",
        keys,
    }
}

#[test]
fn a_kubernetes_rs256_token_verifies() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    let got = verify(&a.sign(&k8s_claims()), &issuer(&keys), NOW).unwrap();
    assert_eq!(got.account, ServiceAccountName::parse("shop/api").unwrap());
    assert_eq!(got.account.subject(), "system:serviceaccount:shop:api");
    assert_eq!(got.pod, "api-7d9f8-x2x4q");
    assert_eq!(got.pod_uid, "778a530c-b3f4-47c0-9cd5-ab018fb64f33");
    assert_eq!(got.account_uid, "a087d5a0-e1dd-43ec-93ac-f13d89cd13af");
    assert_eq!(got.node.as_deref(), Some("node-1"));
    assert_eq!(got.exp, NOW + 3600);
    // No node claim (older API servers), a single audience as a string,
    // several audiences, no jti: all as Kubernetes may issue them.
    for claims in [
        with_k8s(json!({"node": null})),
        with(json!({"aud": "warden"})),
        with(json!({"aud": ["https://kubernetes.default.svc", "warden"]})),
        with(json!({"jti": null})),
    ] {
        assert!(
            verify(&a.sign(&claims), &issuer(&keys), NOW).is_ok(),
            "{claims}"
        );
    }
}

#[test]
fn an_es256_token_verifies_and_keys_are_chosen_by_kid() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let e = Signer::ec("ec-1");
    let keys = jwks(&[&a, &e]);
    assert_eq!(keys.keys()[1].algorithm(), KeyAlgorithm::Es256);
    assert!(verify(&e.sign(&k8s_claims()), &issuer(&keys), NOW).is_ok());
    assert!(verify(&a.sign(&k8s_claims()), &issuer(&keys), NOW).is_ok());
}

#[test]
fn alg_none_and_foreign_algorithms_are_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let e = Signer::ec("ec-1");
    let keys = jwks(&[&a, &e]);
    let payload = b64(&k8s_claims());
    for alg in [
        "none", "None", "NONE", "PS256", "RS512", "ES384", "EdDSA", "rs256",
    ] {
        for kid in ["rsa-a", "ec-1"] {
            let header = b64(&json!({"alg": alg, "kid": kid}));
            for sig in ["", "AAAA"] {
                let token = format!("{header}.{payload}.{sig}");
                let got = verify(&token, &issuer(&keys), NOW);
                assert!(
                    matches!(
                        got,
                        Err(SaTokenError::WrongAlgorithm | SaTokenError::Malformed(_))
                    ),
                    "{alg} {kid} {got:?}"
                );
            }
        }
    }
    // An RSA key's kid with ES256, an EC key's with RS256: the key's own
    // algorithm is pinned, whatever the header says.
    let header = json!({"alg": "ES256", "kid": "rsa-a"});
    assert_eq!(
        verify(&e.sign_with(&header, &k8s_claims()), &issuer(&keys), NOW),
        Err(SaTokenError::WrongAlgorithm)
    );
    let header = json!({"alg": "RS256", "kid": "ec-1"});
    assert_eq!(
        verify(&a.sign_with(&header, &k8s_claims()), &issuer(&keys), NOW),
        Err(SaTokenError::WrongAlgorithm)
    );
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(match &a.key {
        Key::Rsa(k) => k.public(),
        Key::Ec(_) => unreachable!(),
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-a".into());
    for secret in [
        c.n.clone(),
        serde_json::to_vec(&a.jwk()).unwrap(),
        keys.to_json().into_bytes(),
    ] {
        let forged = jsonwebtoken::encode(
            &header,
            &k8s_claims(),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(
            verify(&forged, &issuer(&keys), NOW),
            Err(SaTokenError::WrongAlgorithm)
        );
    }
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    for (changes, want) in [
        (
            json!({"iss": "https://other.cluster"}),
            SaTokenError::WrongIssuer,
        ),
        (
            json!({"iss": "kubernetes/serviceaccount"}),
            SaTokenError::WrongIssuer,
        ),
        (
            json!({"iss": format!("{ISSUER}/")}),
            SaTokenError::WrongIssuer,
        ),
        (
            json!({"aud": ["https://kubernetes.default.svc"]}),
            SaTokenError::WrongAudience,
        ),
        (json!({"aud": "vault"}), SaTokenError::WrongAudience),
        (json!({"aud": ["Warden"]}), SaTokenError::WrongAudience),
        (json!({"aud": []}), SaTokenError::WrongAudience),
    ] {
        assert_eq!(
            verify(&a.sign(&with(changes.clone())), &issuer(&keys), NOW),
            Err(want),
            "{changes}"
        );
    }
    // The configured audience is the one required.
    let token = a.sign(&k8s_claims());
    let other = Issuer {
        audience: "vault",
        ..issuer(&keys)
    };
    assert_eq!(
        verify(&token, &other, NOW),
        Err(SaTokenError::WrongAudience)
    );
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    let token = a.sign(&k8s_claims());
    assert!(verify(&token, &issuer(&keys), NOW + 3599).is_ok());
    // exp gets no skew: what is exchanged for it must not outlive it.
    assert_eq!(
        verify(&token, &issuer(&keys), NOW + 3600),
        Err(SaTokenError::Expired)
    );
    assert_eq!(
        verify(&token, &issuer(&keys), NOW + 7200),
        Err(SaTokenError::Expired)
    );
    // nbf and iat: 30 s of skew.
    assert!(verify(&token, &issuer(&keys), NOW - 30).is_ok());
    assert_eq!(
        verify(&token, &issuer(&keys), NOW - 31),
        Err(SaTokenError::NotYetValid)
    );
    let later_iat = a.sign(&with(json!({"iat": NOW + 31, "nbf": NOW})));
    assert_eq!(
        verify(&later_iat, &issuer(&keys), NOW),
        Err(SaTokenError::NotYetValid)
    );
    for changes in [
        json!({"exp": null}),
        json!({"nbf": null}),
        json!({"iat": null}),
        json!({"exp": "soon"}),
        json!({"exp": -1}),
    ] {
        assert!(
            matches!(
                verify(&a.sign(&with(changes.clone())), &issuer(&keys), NOW),
                Err(SaTokenError::BadClaims(_))
            ),
            "{changes}"
        );
    }
    let backwards = a.sign(&with(json!({"exp": NOW + 10, "iat": NOW + 20, "nbf": NOW})));
    assert!(matches!(
        verify(&backwards, &issuer(&keys), NOW),
        Err(SaTokenError::BadClaims(_))
    ));
}

#[test]
fn subject_and_kubernetes_claims_must_agree() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    for claims in [
        with(json!({"sub": "system:serviceaccount:shop:admin"})),
        with(json!({"sub": "system:serviceaccount:kube-system:api"})),
        with(json!({"sub": "system:serviceaccount:shop:api:x"})),
        with(json!({"sub": "system:node:shop:api"})),
        with(json!({"sub": "shop/api"})),
        with(json!({"sub": null})),
        with(json!({"kubernetes.io": null})),
        with_k8s(json!({"namespace": "payments"})),
        with_k8s(json!({"namespace": "Shop"})),
        with_k8s(json!({"namespace": null})),
        with_k8s(json!({"serviceaccount": {"name": "admin", "uid": "a087d5a0"}})),
        with_k8s(json!({"serviceaccount": {"name": "api"}})),
        with_k8s(json!({"serviceaccount": {"name": "api", "uid": "x y"}})),
        with_k8s(json!({"serviceaccount": null})),
        with_k8s(json!({"pod": null})),
        with_k8s(json!({"pod": {"name": "../etc", "uid": "778a530c"}})),
        with_k8s(json!({"pod": {"name": "api", "uid": ""}})),
        with_k8s(json!({"node": {"name": "Node 1", "uid": "58456cb0"}})),
        with(json!({"jti": "x".repeat(200)})),
    ] {
        assert!(
            matches!(
                verify(&a.sign(&claims), &issuer(&keys), NOW),
                Err(SaTokenError::BadClaims(_))
            ),
            "{claims}"
        );
    }
}

#[test]
fn unknown_or_missing_kid_and_another_clusters_key_are_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let b = Signer::rsa(KEY_B, "rsa-b");
    let keys = jwks(&[&a]);
    assert_eq!(
        verify(&b.sign(&k8s_claims()), &issuer(&keys), NOW),
        Err(SaTokenError::UnknownKey)
    );
    // Another cluster's key that claims this cluster's kid.
    let impostor = Signer::rsa(KEY_B, "rsa-a");
    assert_eq!(
        verify(&impostor.sign(&k8s_claims()), &issuer(&keys), NOW),
        Err(SaTokenError::BadSignature)
    );
    let no_kid = a.sign_with(&json!({"alg": "RS256"}), &k8s_claims());
    assert!(matches!(
        verify(&no_kid, &issuer(&keys), NOW),
        Err(SaTokenError::Malformed(_))
    ));
    // A tampered payload under a genuine signature.
    let token = a.sign(&k8s_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = b64(&with(json!({"sub": "system:serviceaccount:shop:admin"})));
    assert_eq!(
        verify(
            &format!("{}.{evil}.{}", parts[0], parts[2]),
            &issuer(&keys),
            NOW
        ),
        Err(SaTokenError::BadSignature)
    );
}

#[test]
fn oversized_and_malformed_tokens_are_refused() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let keys = jwks(&[&a]);
    let token = a.sign(&k8s_claims());
    let long = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(
        verify(&long, &issuer(&keys), NOW),
        Err(SaTokenError::Malformed("longer than 16 KiB"))
    );
    // A genuine signature over claims padded past the limit.
    let padded = a.sign(&with(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)})));
    assert_eq!(
        verify(&padded, &issuer(&keys), NOW),
        Err(SaTokenError::Malformed("longer than 16 KiB"))
    );
    let crit = b64(&json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"]}));
    for bad in [
        String::new(),
        "wdn_abc".into(),
        "a.b".into(),
        "a.b.c.d".into(),
        format!("{token}="),
        format!("{}.{}.AAAA", b64(&json!("RS256")), b64(&k8s_claims())),
        format!("{crit}.{}.AAAA", b64(&k8s_claims())),
    ] {
        assert!(
            matches!(
                verify(&bad, &issuer(&keys), NOW),
                Err(SaTokenError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn error_messages_never_echo_the_token_or_kid() {
    let a = Signer::rsa(KEY_A, "rsa-a-kid-7f3e");
    let b = Signer::rsa(KEY_B, "rsa-b-kid-91aa");
    let keys = jwks(&[&a]);
    let token = a.sign(&k8s_claims());
    let parts: Vec<&str> = token.split('.').collect();
    for result in [
        verify(&token, &issuer(&keys), NOW + 7200),
        verify(&b.sign(&k8s_claims()), &issuer(&keys), NOW),
        verify(&a.sign(&with(json!({"iss": "x"}))), &issuer(&keys), NOW),
        verify(
            &format!("{}.{}.{}", parts[0], parts[1], parts[1]),
            &issuer(&keys),
            NOW,
        ),
        verify(&format!("{token}x"), &issuer(&keys), NOW),
    ] {
        let err = result.unwrap_err();
        let text = format!("{err} {err:?}");
        for part in &parts {
            assert!(!text.contains(part), "{text}");
        }
        assert!(
            !text.contains("kid-7f3e") && !text.contains("kid-91aa"),
            "{text}"
        );
        assert_eq!(err.fault(), warden_types::Fault::Client);
    }
}

#[test]
fn jwks_are_validated_and_stored_in_a_normal_form() {
    let a = Signer::rsa(KEY_A, "rsa-a");
    let e = Signer::ec("ec-1");
    let keys = jwks(&[&a, &e]);
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(keys.keys()[0].bits(), 2048);
    assert_eq!(keys.keys()[0].kid(), "rsa-a");
    assert_eq!(Jwks::parse(keys.to_json().as_bytes()).unwrap(), keys);
    // alg and use may be absent (inferred from kty and crv).
    let mut bare = a.jwk();
    bare.as_object_mut().unwrap().remove("alg");
    bare.as_object_mut().unwrap().remove("use");
    assert!(Jwks::parse(json!({"keys": [bare]}).to_string().as_bytes()).is_ok());

    let key = |changes: Value| {
        let mut k = a.jwk();
        for (name, v) in changes.as_object().unwrap() {
            if v.is_null() {
                k.as_object_mut().unwrap().remove(name);
            } else {
                k[name] = v.clone();
            }
        }
        json!({"keys": [k]}).to_string()
    };
    let bad_key = |doc: String| match Jwks::parse(doc.as_bytes()) {
        Err(JwksError::BadKey { index: 0, why }) => why,
        other => panic!("{other:?}"),
    };
    assert!(bad_key(key(json!({"kid": null}))).contains("kid"));
    assert!(bad_key(key(json!({"kid": ""}))).contains("kid"));
    assert!(bad_key(key(json!({"d": "AAAA"}))).contains("private"));
    assert!(bad_key(key(json!({"kty": "oct", "k": "c2VjcmV0"}))).contains("private"));
    assert!(bad_key(key(json!({"kty": "oct"}))).contains("kty"));
    assert!(bad_key(key(json!({"kty": "OKP"}))).contains("kty"));
    assert!(bad_key(key(json!({"alg": "PS256"}))).contains("RS256"));
    assert!(bad_key(key(json!({"alg": "HS256"}))).contains("RS256"));
    assert!(bad_key(key(json!({"use": "enc"}))).contains("sig"));
    assert!(bad_key(key(json!({"key_ops": ["encrypt"]}))).contains("verify"));
    assert!(bad_key(key(json!({"n": URL_SAFE_NO_PAD.encode([0xc5; 128])}))).contains("2048"));
    assert!(bad_key(key(json!({"e": "AQAA"}))).contains("odd"));
    assert!(bad_key(key(json!({"n": "!!"}))).contains("base64url"));
    let mut p384 = e.jwk();
    p384["crv"] = json!("P-384");
    assert!(bad_key(json!({"keys": [p384]}).to_string()).contains("P-256"));
    let mut short = e.jwk();
    short["x"] = json!("AAAA");
    assert!(bad_key(json!({"keys": [short]}).to_string()).contains("32 bytes"));

    assert_eq!(Jwks::parse(b"{\"keys\": []}"), Err(JwksError::KeyCount(0)));
    let many: Vec<Value> = (0..=MAX_JWKS_KEYS)
        .map(|i| {
            let mut k = e.jwk();
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .collect();
    assert_eq!(
        Jwks::parse(json!({"keys": many}).to_string().as_bytes()),
        Err(JwksError::KeyCount(MAX_JWKS_KEYS + 1))
    );
    let twice = json!({"keys": [a.jwk(), a.jwk()]}).to_string();
    assert_eq!(
        Jwks::parse(twice.as_bytes()),
        Err(JwksError::DuplicateKid(0, 1))
    );
    for not_jwks in [&b"[]"[..], b"{}", b"not json", b"{\"keys\": {}}"] {
        assert_eq!(Jwks::parse(not_jwks), Err(JwksError::NotJwks));
    }
    let huge = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(MAX_JWKS_BYTES)
    );
    assert_eq!(Jwks::parse(huge.as_bytes()), Err(JwksError::TooLarge));
    // A refusal never quotes key material.
    let err = Jwks::parse(key(json!({"d": "c2VjcmV0LXByaXZhdGU"})).as_bytes()).unwrap_err();
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
}

#[test]
fn names_issuers_and_audiences_are_checked() {
    assert!(ServiceAccountName::parse("shop/api").is_ok());
    assert!(ServiceAccountName::parse("kube-system/coredns.v2").is_ok());
    for bad in [
        "shop", "shop/", "/api", "Shop/api", "shop/API", "shop/a b", "a/b/c", "-x/api",
    ] {
        assert!(ServiceAccountName::parse(bad).is_err(), "{bad}");
    }
    assert!(check_issuer(ISSUER).is_ok());
    assert!(check_issuer("kubernetes/serviceaccount").is_ok());
    for bad in [
        "",
        "https://a b",
        "https://x\n",
        &"x".repeat(MAX_ISSUER_LEN + 1),
    ] {
        assert_eq!(check_issuer(bad), Err(JwksError::BadIssuer), "{bad}");
    }
    assert!(check_audience("warden").is_ok());
    assert_eq!(check_audience("war den"), Err(JwksError::BadAudience));
}
