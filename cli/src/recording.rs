//! `warden session play|export`: a session's recording, fetched in pages
//! (the server opens each sealed chunk), checked against the digest its
//! audit outcome records, then replayed in the terminal or written as a
//! plain asciicast v2 file (`asciinema play` plays it) with a proof that
//! `warden audit verify --recording` checks offline.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Method as M;
use warden_api::{AuditProof, RecordingChunk, RecordingOutcome, SessionRecording};

use crate::audit::recording::{FORMAT, RecordingProof, digest_of};
use crate::ctx::Ctx;
use crate::output;

/// A recording as fetched and checked.
struct Fetched {
    chunks: Vec<RecordingChunk>,
    outcome: RecordingOutcome,
    digest: String,
}

/// Fetches session `id`'s whole recording and checks it against its audit
/// outcome: complete (its last chunk is there) and hashing to the digest
/// recorded.
async fn fetch(ctx: &Ctx, id: &str) -> anyhow::Result<Fetched> {
    let mut chunks: Vec<RecordingChunk> = Vec::new();
    let mut from = 0;
    let outcome = loop {
        let (page, _): (SessionRecording, _) = ctx
            .call(
                M::GET,
                &format!("/api/v1/session/{id}/recording?from={from}"),
                None,
            )
            .await?;
        chunks.extend(page.chunks);
        match page.next {
            Some(next) if next > from => from = next,
            Some(_) => bail!("the server's pages do not advance"),
            None => break page.outcome,
        }
    };
    if !chunks.last().is_some_and(|c| c.last) {
        bail!(
            "session {id}'s recording is not complete: the session is still running, or its recording failed"
        );
    }
    let Some(outcome) = outcome else {
        bail!("session {id} has no audit outcome yet: try again in a moment");
    };
    let digest = digest_of(chunks.iter().map(|c| c.text.as_bytes()));
    match &outcome.recording_digest {
        Some(d) if *d == digest => {}
        Some(d) => bail!(
            "session {id}'s recording hashes to {digest}, but its audit outcome (entry {} of {}) records {}: it was altered",
            outcome.seq,
            outcome.log,
            output::printable(d)
        ),
        None => {
            bail!("session {id}'s audit outcome records no recording digest: its recording failed")
        }
    }
    Ok(Fetched {
        chunks,
        outcome,
        digest,
    })
}

/// `session play ID`: replays what the session's user saw, at `speed`,
/// with pauses longer than `idle_limit` seconds cut to it (0: kept).
pub(crate) async fn play(ctx: &Ctx, id: &str, speed: f64, idle_limit: f64) -> anyhow::Result<()> {
    let fetched = fetch(ctx, id).await?;
    let mut out = std::io::stdout().lock();
    let mut last = 0.0_f64;
    let text: String = fetched.chunks.iter().map(|c| c.text.as_str()).collect();
    for line in text.lines().skip(1) {
        let event: (f64, String, String) = serde_json::from_str(line)
            .with_context(|| format!("a recording event is not [time, code, data]: {line:.80}"))?;
        let (t, code, data) = event;
        let mut pause = (t - last).max(0.0);
        if idle_limit > 0.0 {
            pause = pause.min(idle_limit);
        }
        last = t;
        if pause > 0.0 {
            out.flush()?;
            tokio::time::sleep(Duration::from_secs_f64(pause / speed)).await;
        }
        if code == "o" {
            out.write_all(data.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `session export ID -o FILE`: the plain `.cast` and, next to it,
/// `FILE.proof.json`.
pub(crate) async fn export(ctx: &Ctx, id: &str, file: Option<PathBuf>) -> anyhow::Result<()> {
    let fetched = fetch(ctx, id).await?;
    let file = file.unwrap_or_else(|| PathBuf::from(format!("{id}.cast")));
    let outcome = proof_of(ctx, &fetched.outcome).await?;
    let proof = RecordingProof {
        format: FORMAT.to_owned(),
        session: id.to_owned(),
        chunk_lengths: fetched.chunks.iter().map(|c| c.text.len() as u64).collect(),
        recording_digest: fetched.digest.clone(),
        outcome,
    };
    let cast: String = fetched.chunks.iter().map(|c| c.text.as_str()).collect();
    std::fs::write(&file, cast).with_context(|| format!("writing {}", file.display()))?;
    let mut proof_path = file.as_os_str().to_owned();
    proof_path.push(".proof.json");
    let mut text = serde_json::to_string_pretty(&proof)?;
    text.push('\n');
    std::fs::write(&proof_path, text)
        .with_context(|| format!("writing {}", PathBuf::from(&proof_path).display()))?;
    let raw = serde_json::json!({
        "session": id,
        "file": file.display().to_string(),
        "proof": PathBuf::from(&proof_path).display().to_string(),
        "chunks": proof.chunk_lengths.len(),
        "recording_digest": fetched.digest,
        "log": fetched.outcome.log,
        "seq": fetched.outcome.seq,
    });
    ctx.print(&raw, || {
        println!(
            "wrote {} and {} (session {id}, {} chunks, digest {}, audit entry {} of {})",
            file.display(),
            PathBuf::from(&proof_path).display(),
            proof.chunk_lengths.len(),
            fetched.digest,
            fetched.outcome.seq,
            fetched.outcome.log
        );
        println!(
            "check it offline: warden audit verify --recording {} --fingerprint FP",
            file.display()
        );
    })
}

/// The inclusion proof of the outcome entry, once a signed checkpoint
/// covers it (checkpoints are signed every second).
async fn proof_of(ctx: &Ctx, outcome: &RecordingOutcome) -> anyhow::Result<AuditProof> {
    let path = format!("/api/v1/audit/{}/proof?seq={}", outcome.log, outcome.seq);
    let mut tries = 0;
    loop {
        match ctx.call::<AuditProof>(M::GET, &path, None).await {
            Ok((proof, _)) => return Ok(proof),
            Err(e) if tries < 10 && e.to_string().contains("checkpointed size") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "fetching the inclusion proof of audit entry {} of {}",
                    outcome.seq, outcome.log
                )));
            }
        }
    }
}

/// A `--speed`: a factor above 0, at most 1000.
pub(crate) fn speed_arg(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err("a speed is a number above 0, at most 1000 (2 plays twice as fast)".into()),
    }
}

/// An `--idle-limit`: seconds, 0 (keep pauses) to 3600.
pub(crate) fn idle_arg(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err("an idle limit is seconds, 0 (keep every pause) to 3600".into()),
    }
}

/// `session join ID`: follows a session read-only as it is recorded (from
/// its start), printing what its user sees, until it ends.
pub(crate) async fn join(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let path = format!("/api/v1/session/{id}/join");
    let (socket, _) = ctx
        .client()
        .websocket(&path, &[warden_api::SESSION_JOIN_PROTOCOL])
        .await?;
    // The watch is read-only: nothing is sent (the sink stays open).
    let (_sink, mut stream) = socket.split();
    let mut out = std::io::stdout();
    let mut header = true;
    while let Some(msg) = stream.next().await {
        match msg? {
            Message::Text(text) => {
                for line in text.lines() {
                    if std::mem::take(&mut header) {
                        continue;
                    }
                    let (_, code, data): (f64, String, String) = serde_json::from_str(line)
                        .with_context(|| {
                            format!("a recording event is not [time, code, data]: {line:.80}")
                        })?;
                    if code == "o" {
                        out.write_all(data.as_bytes())?;
                    }
                }
                out.flush()?;
            }
            Message::Close(Some(f)) if f.code != CloseCode::Normal => {
                bail!("{}", output::printable(&f.reason));
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}
