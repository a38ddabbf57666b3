//! `audit verify`: a bundle offline, against a key the user trusts (no
//! configuration, no connection), or a log live on the server; both end
//! in the same verdict line and exit code. A session recording exported
//! with its proof is verified offline too (`--recording`).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;
use hyper::Method as M;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_tlog::bundle::Bundle;
use warden_tlog::verify::verify_bundle;

use super::args::{TrustArgs, log_arg, trust_of};
use crate::ctx::{Ctx, Output};
use crate::error::usage;
use crate::output;

/// The largest bundle `audit verify` reads (and any one member of it).
pub(super) const MAX_BUNDLE_BYTES: u64 = 4 << 30;

/// `audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The bundle file (from `warden audit export`).
    #[arg(
        value_name = "BUNDLE",
        required_unless_present_any = ["live", "recording"],
        conflicts_with_all = ["live", "recording"]
    )]
    bundle: Option<PathBuf>,
    /// Instead, verify a session recording offline (from `warden session
    /// export`): that it is the one the audit log records, in a checkpoint
    /// signed by the key you trust.
    #[arg(long, value_name = "FILE.cast", conflicts_with = "live")]
    recording: Option<PathBuf>,
    /// The recording's proof (default FILE.cast.proof.json).
    #[arg(long, value_name = "FILE", requires = "recording")]
    proof: Option<PathBuf>,
    /// Instead, ask the server to verify LOG as stored (needs audit.export;
    /// trusts the server's own key).
    #[arg(long, value_name = "LOG", value_parser = log_arg, conflicts_with_all = ["key", "fingerprint"])]
    pub(super) live: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
    /// Also write the JSON transcript of the checks to FILE.
    #[arg(long, value_name = "FILE")]
    transcript: Option<PathBuf>,
}

/// The fields of a verification transcript (the server's, or ours
/// serialized) that the verdict line needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TranscriptView {
    verdict: String,
    log: String,
    first_seq: u64,
    end_seq: u64,
    checkpoints_verified: Vec<u64>,
    key_fingerprint: Option<String>,
    first_bad_seq: Option<u64>,
    reason: Option<String>,
    /// The steps; those starting `WARNING:` are shown after the verdict.
    checks: Vec<String>,
}

/// `VERIFIED: log acme, entries 0..1234, 17 checkpoints, key <fp>` or
/// `FAILED at seq N: reason`.
fn verdict_line(t: &TranscriptView) -> String {
    if t.verdict == "ok" {
        let n = t.checkpoints_verified.len();
        return format!(
            "VERIFIED: log {}, entries {}..{}, {n} checkpoint{}, key {}",
            output::printable(&t.log),
            t.first_seq,
            t.end_seq,
            if n == 1 { "" } else { "s" },
            output::printable(t.key_fingerprint.as_deref().unwrap_or("(unknown)"))
        );
    }
    let reason = output::printable(t.reason.as_deref().unwrap_or("no reason given"));
    match t.first_bad_seq {
        Some(seq) => format!("FAILED at seq {seq}: {reason}"),
        None => format!("FAILED: {reason}"),
    }
}

/// Writes the transcript where asked, prints the verdict, and fails (exit
/// code 1) unless it is `ok`.
fn report_verdict(output: Output, raw: &Value, transcript: Option<&Path>) -> anyhow::Result<()> {
    let t: TranscriptView = serde_json::from_value(raw.clone())
        .context("the verification transcript is not what the API documents")?;
    if let Some(path) = transcript {
        let mut text = serde_json::to_string_pretty(raw)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(raw)?),
        Output::Text => {
            println!("{}", verdict_line(&t));
            // What could not be checked (a session whose replica was lost
            // has no outcome): named, not a failure.
            for w in t.checks.iter().filter(|c| c.starts_with("WARNING:")) {
                println!("{}", output::printable(w));
            }
        }
    }
    if t.verdict == "ok" {
        return Ok(());
    }
    Err(match t.first_bad_seq {
        Some(seq) => anyhow!("the audit log did not verify: the first bad entry is seq {seq}"),
        None => anyhow!("the audit log did not verify"),
    })
}

/// `audit verify BUNDLE`: offline, against the key given.
pub(crate) fn verify_offline(output: Output, v: VerifyArgs) -> anyhow::Result<()> {
    if let Some(cast) = &v.recording {
        return super::recording::verify_recording(output, cast, v.proof.as_deref(), &v.trust);
    }
    let trust = trust_of(&v.trust)?;
    let path = v
        .bundle
        .ok_or_else(|| usage("give the BUNDLE file to verify (or --live LOG)"))?;
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let raw = match Bundle::read_from(BufReader::new(file), MAX_BUNDLE_BYTES) {
        Ok(bundle) => serde_json::to_value(verify_bundle(&bundle, &trust))?,
        // A truncated or garbled archive is a failed verification too.
        Err(e) => {
            let reason = format!("{} is not a sound bundle: {e}", path.display());
            json!({
                "verdict": "failed",
                "first_bad_seq": null,
                "reason": reason,
                "checks": [format!("FAILED: {reason}")],
            })
        }
    };
    report_verdict(output, &raw, v.transcript.as_deref())
}

/// `audit verify --live LOG`: the server verifies the log as stored.
pub(super) async fn verify_live(ctx: &Ctx, v: VerifyArgs) -> anyhow::Result<()> {
    let log = v
        .live
        .ok_or_else(|| usage("give the BUNDLE file to verify (or --live LOG)"))?;
    let (raw, _): (Value, _) = ctx
        .call(M::POST, &format!("/api/v1/audit/{log}/verify"), None)
        .await?;
    report_verdict(ctx.output(), &raw, v.transcript.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn verdicts_read_alike_from_either_side() {
        let ok = TranscriptView {
            verdict: "ok".into(),
            log: "acme".into(),
            first_seq: 0,
            end_seq: 1234,
            checkpoints_verified: (1..=17).collect(),
            key_fingerprint: Some("ab12".into()),
            ..TranscriptView::default()
        };
        assert_eq!(
            verdict_line(&ok),
            "VERIFIED: log acme, entries 0..1234, 17 checkpoints, key ab12"
        );
        let failed = TranscriptView {
            verdict: "failed".into(),
            first_bad_seq: Some(41),
            reason: Some("entry 42's prev is not the hash of entry 41".into()),
            ..TranscriptView::default()
        };
        assert_eq!(
            verdict_line(&failed),
            "FAILED at seq 41: entry 42's prev is not the hash of entry 41"
        );
        let err = report_verdict(
            Output::Text,
            &json!({"verdict": "failed", "first_bad_seq": 41, "reason": "x"}),
            None,
        )
        .unwrap_err();
        assert_eq!(exit_code(&err), 1);
        assert!(err.to_string().contains("seq 41"));
        assert!(report_verdict(Output::Text, &json!({"verdict": "ok"}), None).is_ok());
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warden-cli-audit-verify-{}-{}",
            std::process::id(),
            output::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn offline_verification_reads_a_bundle_and_names_the_bad_entry() {
        let dir = tempdir();
        let missing = VerifyArgs {
            bundle: Some(dir.join("nope.tar")),
            live: None,
            recording: None,
            proof: None,
            trust: TrustArgs {
                key: None,
                fingerprint: Some("ab".repeat(32)),
            },
            transcript: None,
        };
        let err = verify_offline(Output::Text, missing).unwrap_err();
        assert!(format!("{err:#}").contains("nope.tar"), "{err:#}");
        let junk = dir.join("junk.tar");
        std::fs::write(&junk, b"not a tar at all").unwrap();
        let transcript = dir.join("t.json");
        let err = verify_offline(
            Output::Text,
            VerifyArgs {
                bundle: Some(junk),
                live: None,
                recording: None,
                proof: None,
                trust: TrustArgs {
                    key: None,
                    fingerprint: Some("ab".repeat(32)),
                },
                transcript: Some(transcript.clone()),
            },
        )
        .unwrap_err();
        assert_eq!(exit_code(&err), 1);
        let t: Value = serde_json::from_slice(&std::fs::read(&transcript).unwrap()).unwrap();
        assert_eq!(t["verdict"], "failed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
