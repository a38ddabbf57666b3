//! Audit routes: tail and query, checkpoints, inclusion proofs, export
//! bundles and live verification. Reading a log needs `audit.read` on its
//! organization (the root for `system`); exporting and live verification
//! (which reads the whole log) need `audit.export`. All are audited by the
//! pipeline.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use warden_api::{AuditCheckpoint, AuditEntries, AuditKey, AuditProof};
use warden_audit::SYSTEM_LOG;
use warden_audit::export::Range;
use warden_policies::{Action, Scope};
use warden_tlog::export::target_text;
use warden_tlog::merkle::Hash;
use warden_tlog::verify::Verdict;
use warden_types::{ScopeKind, ScopePath};

use super::{AppState, path_arg, query_arg};
use crate::ApiError;
use crate::caller::Caller;
use crate::state::App;
use warden_pipeline::{Operation, Target};

/// Entries returned per page at most.
const MAX_PAGE: i64 = 1000;
/// Entries scanned per request at most (filters may match few).
const MAX_SCAN: i64 = 10_000;

/// A log name: `system` or an organization; and the scope that guards it.
fn log_arg(p: Result<Path<String>, PathRejection>) -> Result<(String, Scope), ApiError> {
    let log = path_arg(p)?;
    if log == SYSTEM_LOG {
        return Ok((log, Scope::Root));
    }
    let org = ScopePath::parse_kind(&log, ScopeKind::Organization)
        .map_err(|e| ApiError::from(e).field("log"))?;
    Ok((log, Scope::Path(org)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EntriesQuery {
    /// The first sequence number to read (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = i64::MAX))]
    from: Option<i64>,
    /// Entries per page (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_PAGE))]
    limit: Option<i64>,
    /// Only entries whose actor is this principal.
    #[serde(default)]
    actor: Option<String>,
    /// Only entries of this operation (`secret.read`).
    #[serde(default)]
    action: Option<String>,
    /// Only entries whose target reads as this text.
    #[serde(default)]
    target: Option<String>,
    /// Only entries written at or after this time, ms since the epoch.
    #[serde(default)]
    #[schemars(range(min = i64::MIN, max = i64::MAX))]
    since_ms: Option<i64>,
    /// Only entries written at or before this time, ms since the epoch.
    #[serde(default)]
    #[schemars(range(min = i64::MIN, max = i64::MAX))]
    until_ms: Option<i64>,
}

impl EntriesQuery {
    fn matches(&self, e: &serde_json::Value) -> bool {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let time_ms = e["time_ns"].as_u64().map_or(0, |t| (t / 1_000_000) as i64);
        self.actor
            .as_ref()
            .is_none_or(|a| s(&e["actor"]["principal"]) == *a)
            && self
                .action
                .as_ref()
                .is_none_or(|a| s(&e["action"]).starts_with(a.as_str()))
            && self
                .target
                .as_ref()
                .is_none_or(|t| target_text(Some(&e["target"])).starts_with(t.as_str()))
            && self.since_ms.is_none_or(|x| time_ms >= x)
            && self.until_ms.is_none_or(|x| time_ms <= x)
    }
}

pub(super) async fn entries(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<AuditEntries>, ApiError> {
    let (log, scope) = log_arg(path)?;
    let q = query_arg(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit is between 1 and {MAX_PAGE}")).field("limit"));
    }
    let from = q.from.unwrap_or(0);
    if from < 0 {
        return Err(ApiError::invalid("from is a sequence number (0 or more)").field("from"));
    }
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "audit.entries",
                Action::AuditRead,
                scope,
                Target::log(&log, None),
            ),
            |_permit| async move {
                let rows = app.store.audit_entries(&log, from, MAX_SCAN).await?;
                let mut next_seq = from;
                let mut entries = Vec::new();
                for r in rows {
                    next_seq = r.seq + 1;
                    let e: serde_json::Value =
                        serde_json::from_str(&r.entry).map_err(|_| ApiError::internal())?;
                    if q.matches(&e) {
                        entries.push(e);
                        if entries.len() as i64 == limit {
                            break;
                        }
                    }
                }
                Ok(Json(AuditEntries {
                    log,
                    entries,
                    next_seq,
                }))
            },
        )
        .await
}

async fn newest_checkpoint(app: &App, log: &str) -> Result<AuditCheckpoint, ApiError> {
    let newest = app.audit_signer.newest(log).await?;
    let c = newest.checkpoint;
    Ok(AuditCheckpoint {
        log: c.log,
        size: c.size,
        root: hex::encode(&c.root),
        note: c.note,
        key: newest.signer.verifier_key(),
    })
}

pub(super) async fn checkpoint(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AuditCheckpoint>, ApiError> {
    let (log, scope) = log_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "audit.checkpoint",
                Action::AuditRead,
                scope,
                Target::log(&log, None),
            ),
            |_permit| async move { Ok(Json(newest_checkpoint(app, &log).await?)) },
        )
        .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SeqQuery {
    /// The entry's sequence number.
    #[schemars(range(min = 0, max = i64::MAX))]
    seq: i64,
}

pub(super) async fn proof(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<SeqQuery>, QueryRejection>,
) -> Result<Json<AuditProof>, ApiError> {
    let (log, scope) = log_arg(path)?;
    let seq = query_arg(q)?.seq;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "audit.proof",
                Action::AuditRead,
                scope,
                Target::log(&log, Some(seq)),
            ),
            |_permit| async move {
                let checkpoint = newest_checkpoint(app, &log).await?;
                if !(0..checkpoint.size).contains(&seq) {
                    return Err(ApiError::not_found(format!(
                        "entry {seq} of audit log {log} (its checkpointed size is {})",
                        checkpoint.size
                    )));
                }
                // From stored tiles: O(log n) reads, checked against the
                // signed root before it leaves.
                let to_u64 = |v: i64| u64::try_from(v).map_err(|_| ApiError::internal());
                let root = hex::decode(&checkpoint.root)
                    .ok()
                    .and_then(|r| Hash::try_from(r.as_slice()).ok())
                    .ok_or_else(ApiError::internal)?;
                let (row, path) = warden_audit::tiles::inclusion(
                    &app.store,
                    &log,
                    to_u64(seq)?,
                    to_u64(checkpoint.size)?,
                    &root,
                )
                .await?;
                Ok(Json(AuditProof {
                    log: log.clone(),
                    seq,
                    entry: row.entry,
                    leaf_hash: hex::encode(&row.leaf_hash),
                    proof: path.iter().map(hex::encode).collect(),
                    checkpoint,
                }))
            },
        )
        .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    /// Entries written at or after this time, ms since the epoch.
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    since_ms: Option<u64>,
    /// Entries written before this time, ms since the epoch.
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    until_ms: Option<u64>,
    /// `jsonl` (entries only), `csv` or `ocsf` (plus that derived view).
    #[serde(default)]
    #[schemars(extend("enum" = ["jsonl", "csv", "ocsf"]))]
    format: Option<String>,
}

pub(super) async fn export(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (log, scope) = log_arg(path)?;
    let q = query_arg(q)?;
    let (csv, ocsf) = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => (false, false),
        "csv" => (true, false),
        "ocsf" => (false, true),
        _ => return Err(ApiError::invalid("format is jsonl, csv or ocsf").field("format")),
    };
    let ns = |ms: Option<u64>| ms.map(|m| u128::from(m) * 1_000_000);
    let range = Range {
        since_ns: ns(q.since_ms),
        until_ns: ns(q.until_ms),
        csv,
        ocsf,
    };
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "audit.export",
                Action::AuditExport,
                scope,
                Target::log(&log, None),
            ),
            |_permit| async move {
                // Streamed from storage: a page of entries in memory at a time.
                let export = app.audit_signer.export(&log, &range).await?;
                let length = export.content_length().map_err(|_| ApiError::internal())?;
                Ok((
                    [
                        (header::CONTENT_TYPE, "application/x-tar".to_owned()),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"audit.tar\"".to_owned(),
                        ),
                        (header::CONTENT_LENGTH, length.to_string()),
                    ],
                    axum::body::Body::from_stream(export.stream()),
                )
                    .into_response())
            },
        )
        .await
}

pub(super) async fn verify(
    State(app): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<warden_tlog::verify::Transcript>, ApiError> {
    let (log, scope) = log_arg(path)?;
    let app: &App = &app;
    app.pipeline
        .run_stored(
            &caller,
            Operation::new(
                "audit.verify",
                Action::AuditExport,
                scope,
                Target::log(&log, None),
            ),
            |permit| async move {
                let mut t = app.audit_signer.verify_live(&log).await?;
                if log != SYSTEM_LOG && t.verdict == Verdict::Ok {
                    let (checked, warnings, failed) =
                        super::sessions::verify_recordings(app, &permit, &log).await?;
                    t.checks
                        .extend(warnings.into_iter().map(|w| format!("WARNING: {w}")));
                    match failed {
                        None => t.checks.push(format!(
                            "ok: {checked} session recording(s) match their audit outcomes"
                        )),
                        Some((seq, why)) => {
                            t.verdict = Verdict::Failed;
                            t.first_bad_seq = seq.and_then(|s| u64::try_from(s).ok());
                            t.checks.push(format!("FAILED: {why}"));
                            t.reason = Some(why);
                        }
                    }
                }
                Ok(Json(t))
            },
        )
        .await
}

pub(super) async fn key(State(app): State<AppState>) -> Result<Json<AuditKey>, ApiError> {
    let signer = app.audit_signer.signer().await?;
    let verifier = signer.verifier();
    Ok(Json(AuditKey {
        key: verifier.vkey().to_string(),
        fingerprint: verifier.fingerprint().to_string(),
    }))
}
