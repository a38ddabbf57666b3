//! The audit commands' arguments: log names, time ranges, entry filters
//! (and their query strings), and the key a check trusts.

use std::fmt::Write as _;

use clap::Args;
use warden_tlog::note::NoteVerifier;
use warden_tlog::verify::Trust;
use warden_types::{ScopeKind, ScopePath};

use super::time::parse_time;
use crate::error::usage;
use crate::output;

/// The installation-wide log.
pub(super) const SYSTEM_LOG: &str = "system";

/// Why the trusted key has to be given on the command line.
const TRUST_HELP: &str = "give the key you trust with --key VKEY or --fingerprint HEX (exactly one). \
     The bundle carries its own keys.txt, but whoever could alter the bundle could alter that \
     too, so the trusted key must come from somewhere else: `warden audit key` run against the \
     server by someone you trust, or the fingerprint the operator published";

/// Entry filters of `audit query`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only entries by this principal (exactly, e.g. user:alice, sa:ci).
    #[arg(long, value_name = "PRINCIPAL")]
    actor: Option<String>,
    /// Only actions starting with PREFIX (e.g. `secret.` or `secret.read`).
    #[arg(long, value_name = "PREFIX")]
    action: Option<String>,
    /// Only targets starting with PREFIX (e.g. `acme/web/prod`).
    #[arg(long, value_name = "PREFIX")]
    target: Option<String>,
    #[command(flatten)]
    range: TimeArgs,
}

/// A time range.
#[derive(Debug, Args)]
pub(crate) struct TimeArgs {
    /// From this time on: RFC 3339 (2026-11-22T10:00:00Z) or how long ago
    /// (30s, 15m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    since: Option<i64>,
    /// Up to this time: RFC 3339 or how long ago.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    until: Option<i64>,
}

impl TimeArgs {
    /// `since_ms=..&until_ms=..` (each with a leading `&`).
    pub(super) fn query(&self) -> anyhow::Result<String> {
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            return Err(usage("--since is later than --until"));
        }
        let mut q = String::new();
        if let Some(s) = self.since {
            let _ = write!(q, "&since_ms={s}");
        }
        if let Some(u) = self.until {
            let _ = write!(q, "&until_ms={u}");
        }
        Ok(q)
    }
}

impl FilterArgs {
    /// The filters as query parameters (each with a leading `&`).
    pub(super) fn query(&self) -> anyhow::Result<String> {
        let mut q = String::new();
        for (name, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            if let Some(v) = value {
                let _ = write!(q, "&{name}={}", url_encode(v));
            }
        }
        q.push_str(&self.range.query()?);
        Ok(q)
    }
}

/// The key a check trusts.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// The verifier key you trust, `name+keyid+base64` (from `warden audit
    /// key`, obtained by someone you trust).
    #[arg(long, value_name = "VKEY", conflicts_with = "fingerprint")]
    pub(super) key: Option<String>,
    /// The SHA-256 fingerprint (64 hex digits) of the key you trust, e.g.
    /// the one the operator published.
    #[arg(long, value_name = "HEX")]
    pub(super) fingerprint: Option<String>,
}

/// A log name: `system` or an organization.
pub(super) fn log_arg(s: &str) -> Result<String, String> {
    if s == SYSTEM_LOG {
        return Ok(s.to_owned());
    }
    ScopePath::parse_kind(s, ScopeKind::Organization)
        .map(|p| p.to_string())
        .map_err(|_| {
            format!(
                "invalid log {:?}: give `system` or an organization name",
                s.chars().take(64).collect::<String>()
            )
        })
}

/// A `--since`/`--until` value, relative to now.
fn time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, output::now_ms())
}

/// Percent-encodes a query parameter value (everything but RFC 3986
/// unreserved characters).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The trust a bundle is verified against: exactly one of --key and
/// --fingerprint.
pub(super) fn trust_of(a: &TrustArgs) -> anyhow::Result<Trust> {
    match (&a.key, &a.fingerprint) {
        (Some(k), None) => Ok(Trust::Key(vkey_arg(k)?)),
        (None, Some(f)) => Ok(Trust::Fingerprint(fingerprint_arg(f)?)),
        (None, None) => Err(usage(TRUST_HELP)),
        (Some(_), Some(_)) => Err(usage("give --key or --fingerprint, not both (exactly one)")),
    }
}

/// A `--key`: a verifier key, `name+keyid+base64`.
pub(super) fn vkey_arg(k: &str) -> anyhow::Result<NoteVerifier> {
    NoteVerifier::from_vkey(k.trim()).map_err(|e| {
        usage(format!(
            "--key: {e} (a verifier key is name+keyid+base64, as `warden audit key` prints it)"
        ))
    })
}

/// A key fingerprint: 64 hex digits, optionally prefixed `sha256:`;
/// returned in lowercase without the prefix.
pub(super) fn fingerprint_arg(f: &str) -> anyhow::Result<String> {
    let lower = f.trim().to_ascii_lowercase();
    let hex = lower.strip_prefix("sha256:").unwrap_or(&lower);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_owned())
    } else {
        Err(usage(format!(
            "--fingerprint {:?} is not a key fingerprint: give the 64 hex digits `warden audit key` prints",
            f.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use warden_tlog::note::NoteSigner;

    use super::*;
    use crate::error::exit_code;

    #[test]
    fn a_reversed_time_range_is_a_usage_error() {
        let t = TimeArgs {
            since: Some(2),
            until: Some(1),
        };
        assert_eq!(t.query().map_err(|e| exit_code(&e)), Err(2));
    }

    #[test]
    fn the_trusted_key_is_required_and_checked() {
        let none = TrustArgs {
            key: None,
            fingerprint: None,
        };
        let err = trust_of(&none).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err.to_string().contains("warden audit key"), "{err}");
        let fp = "AB".repeat(32);
        assert_eq!(
            fingerprint_arg(&format!("sha256:{fp}")).unwrap(),
            "ab".repeat(32)
        );
        for bad in ["", "abcd1234", &"g".repeat(64), &"a".repeat(63)] {
            assert_eq!(exit_code(&fingerprint_arg(bad).unwrap_err()), 2, "{bad}");
        }
        assert_eq!(exit_code(&vkey_arg("nope").unwrap_err()), 2);
        let (signer, _) = NoteSigner::generate("warden-audit").unwrap();
        assert!(vkey_arg(&signer.verifier_key()).is_ok());
    }

    #[test]
    fn query_parameters_are_encoded() {
        assert_eq!(
            url_encode("acme/web#K@v2 x+y"),
            "acme%2Fweb%23K%40v2%20x%2By"
        );
        assert_eq!(url_encode("secret.read"), "secret.read");
        let f = FilterArgs {
            actor: Some("user:root".into()),
            action: None,
            target: Some("acme/web".into()),
            range: TimeArgs {
                since: Some(5),
                until: None,
            },
        };
        assert_eq!(
            f.query().unwrap(),
            "&actor=user%3Aroot&target=acme%2Fweb&since_ms=5"
        );
    }
}
