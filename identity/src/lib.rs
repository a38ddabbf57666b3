//! Credential formats and checks for Warden's principals.
//!
//! This crate owns what a credential looks like and whether one is good:
//!
//! - [`token`]: opaque API tokens (`wdn_` + 256 random bits) and the hash
//!   Warden stores instead of them; telling them from JWTs.
//! - [`password`]: the password policy and Argon2id PHC hashes.
//! - [`totp`]: RFC 6238 one-time codes for second-factor enrolment, with
//!   replay protection.
//! - [`ssh`]: parsing one pasted SSH public key, with the key-type policy and
//!   `ssh-keygen`-compatible fingerprints.
//! - [`workload`]: short-lived EdDSA JWTs that name one service, issued and
//!   verified against caller-supplied keys.
//! - [`kubernetes`]: a cluster's service-account issuer keys (JWKS) and the
//!   verification of the projected service-account tokens it signs.
//!
//! Architecture invariant: everything here is pure. No I/O, no async, no
//! storage, no HTTP and no clock: every function that depends on the time
//! takes `now_unix: u64` (seconds since the Unix epoch) from the caller, which
//! makes expiry and replay rules testable at any instant. The only outside
//! resource used is the operating system's CSPRNG (through ring), to make new
//! secrets. Among Warden's crates this one depends on `warden-types` alone;
//! never on the store, the vault or the server, which call into it.
//!
//! Cryptography is never implemented here: ring (SHA-256, Ed25519, the
//! CSPRNG), argon2, totp-rs (RustCrypto HMAC), ssh-key and jsonwebtoken do
//! it. ring is Warden's only crypto backend; nothing here links aws-lc or
//! OpenSSL. Secret material (tokens, TOTP secrets, signing keys) lives in
//! buffers that are wiped on drop, and no `Debug` or error message prints it.

pub mod kubernetes;
pub mod password;
pub mod ssh;
pub mod token;
pub mod totp;
pub mod workload;

pub use password::PasswordError;
pub use ssh::{SshKeyError, SshPublicKey};
pub use token::TokenError;
pub use totp::{TotpAlgorithm, TotpError, TotpSecret};
pub use workload::{SigningKey, WorkloadClaims, WorkloadError};
