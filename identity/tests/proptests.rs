//! Parsers never panic, whatever they are fed.

// Test code fails by panicking; the workspace's production-code lints do
// not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use warden_identity::{password, ssh, token, totp, workload};

const ED25519: &str = include_str!("../testdata/ed25519.pub");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ssh_parse_never_panics(line in any::<String>()) {
        let _ = ssh::parse_public_key(&line);
    }

    #[test]
    fn ssh_parse_never_panics_on_keyish_lines(
        alg in prop::sample::select(vec![
            "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp521",
            "ssh-dss", "sk-ssh-ed25519@openssh.com", "x",
        ]),
        blob in prop::collection::vec(any::<u8>(), 0..600),
        comment in "[ -~]{0,300}",
    ) {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(&blob);
        let _ = ssh::parse_public_key(&format!("{alg} {data} {comment}"));
    }

    #[test]
    fn ssh_parse_never_panics_on_mutated_real_keys(
        flips in prop::collection::vec((0usize..200, any::<u8>()), 1..4),
        cut in 0usize..200,
    ) {
        let mut bytes = ED25519.as_bytes().to_vec();
        for (at, b) in flips {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        let line = String::from_utf8_lossy(&bytes);
        let _ = ssh::parse_public_key(&line);
    }

    #[test]
    fn workload_verify_never_panics(t in any::<String>(), now in any::<u64>()) {
        prop_assert!(workload::verify(&t, now, |_| Some([7u8; 32])).is_err());
    }

    #[test]
    fn workload_verify_never_panics_on_jwt_shapes(
        h in "[A-Za-z0-9_-]{1,80}", p in "[A-Za-z0-9_-]{1,200}", s in "[A-Za-z0-9_-]{1,100}",
    ) {
        let t = format!("{h}.{p}.{s}");
        prop_assert!(workload::verify(&t, 0, |_| Some([7u8; 32])).is_err());
    }

    #[test]
    fn totp_verify_never_panics(code in any::<String>(), now in any::<u64>(), last in any::<Option<u64>>()) {
        let secret = totp::TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let _ = totp::verify(&secret, &code, now, last);
    }

    #[test]
    fn totp_code_at_never_panics(
        secret in prop::collection::vec(any::<u8>(), 0..100),
        digits in any::<u32>(), step in any::<u64>(), now in any::<u64>(),
    ) {
        for alg in [totp::TotpAlgorithm::Sha1, totp::TotpAlgorithm::Sha256, totp::TotpAlgorithm::Sha512] {
            let code = totp::code_at(&secret, alg, digits, step, now);
            prop_assert!((6..=8).contains(&code.len()));
            prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn totp_base32_never_panics(text in any::<String>()) {
        let _ = totp::TotpSecret::from_base32(&text);
    }

    #[test]
    fn shape_checks_never_panic(t in any::<String>()) {
        let _ = token::looks_like_jwt(&t);
        let _ = token::looks_like_api_token(&t);
        let _ = token::token_hash(&t);
        let _ = password::check_password_policy(&t);
    }
}

proptest! {
    // Each case that gets past parsing costs an Argon2 run; keep it short.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn password_verify_never_panics(phc in any::<String>(), pw in any::<String>()) {
        prop_assert!(!password::verify_password(&phc, &pw));
    }

    #[test]
    fn password_verify_never_panics_on_phc_shapes(
        alg in prop::sample::select(vec!["argon2id", "argon2i", "x"]),
        v in 0u32..30, m in 0u32..100_000, t in 0u32..5, p in 0u32..5,
        salt in "[A-Za-z0-9+/]{0,30}", hash in "[A-Za-z0-9+/]{0,60}",
    ) {
        // Keep the memory cost small so that a parsed case stays fast.
        let m = m % 64;
        let phc = format!("${alg}$v={v}$m={m},t={t},p={p}${salt}${hash}");
        let _ = password::verify_password(&phc, "correct horse battery");
    }
}
