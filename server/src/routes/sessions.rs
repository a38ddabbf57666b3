//! Shell sessions: list an organization's (`audit.read`: sessions are
//! audit data), show one, end one (`session.manage` on its service), and
//! read its recording (`session.watch` on its service). The replica holding
//! a session ends it at once when asked there, the others within a second
//! (`gateway::apply_kills`). Live audit verification checks every recording
//! of the log against the digests its outcomes recorded
//! ([`verify_recordings`]).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use warden_api::{
    RecordingChunk, RecordingOutcome, RecordingQuery, SessionInfo, SessionList, SessionListQuery,
    SessionRecording,
};
use warden_pipeline::{Error, ErrorKind, Operation, Permit, Target};
use warden_policies::{Action, Scope};
use warden_store::ShellSessionRow;
use warden_types::{ScopeKind, ScopePath};
use warden_vault::VaultError;

use super::*;
use crate::ApiError;
use crate::caller::Caller;
use crate::gateway::gateway;
use crate::slots::{Slot, Slots};
use crate::state::App;

fn info(r: ShellSessionRow) -> SessionInfo {
    SessionInfo {
        id: r.id,
        service: r.service,
        pod: r.pod,
        principal: r.principal,
        transport: r.transport,
        node: r.node,
        started_at_ms: r.started_at,
        ended_at_ms: r.ended_at,
        status: r.status,
        exit_status: r.exit_status,
        killed_by: r.killed_by,
    }
}

/// A session id as the gateway makes them (24 hex digits).
fn session_arg(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let id = path_arg(p)?;
    if id.len() == 24
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(id)
    } else {
        Err(ApiError::invalid("a session id is 24 lowercase hex digits").field("id"))
    }
}

/// The session `id` and the scope it is authorized on (its service); an
/// unknown id is refused (audited) as not found.
async fn session_of(
    app: &App,
    caller: &warden_pipeline::Caller,
    operation: &'static str,
    id: &str,
) -> Result<(ShellSessionRow, ScopePath), ApiError> {
    let found = app.store.shell_session(id).await?;
    let Some((row, service)) = found.and_then(|r| {
        let s = ScopePath::parse_kind(&r.service, ScopeKind::Service).ok()?;
        Some((r, s))
    }) else {
        let e = Error::not_found(format!("session {id} not found"));
        return Err(app
            .pipeline
            .refuse(caller, operation, Target::session(id, "", None), e)
            .await
            .into());
    };
    Ok((row, service))
}

/// A hidden denial (the caller has no binding in the session's
/// organization) answered as an unknown id: the pipeline's "service ...
/// not found" would name another tenant's service.
fn as_unknown(id: &str) -> impl FnOnce(ApiError) -> ApiError + '_ {
    move |e| {
        if e.error().kind() == ErrorKind::NotFound {
            ApiError::not_found(format!("session {id} not found"))
        } else {
            e
        }
    }
}

pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    org: Result<Path<String>, PathRejection>,
    query: Result<Query<SessionListQuery>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let org = org_arg(org)?;
    let q = query_arg(query)?;
    let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 1000));
    let op = Operation::new(
        "session.list",
        Action::AuditRead,
        Scope::Path(org.clone()),
        Target::scope(&org),
    );
    let app: &App = &app;
    app.pipeline
        .run_stored(&caller, op, |_permit| async {
            let rows = app
                .store
                .shell_sessions(org.as_str(), q.live, limit)
                .await?;
            Ok(Json(SessionList {
                sessions: rows.into_iter().map(info).collect(),
            }))
        })
        .await
}

pub(super) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let id = session_arg(id)?;
    let app: &App = &app;
    let (row, service) = session_of(app, &caller, "session.show", &id).await?;
    let op = Operation::new(
        "session.show",
        Action::AuditRead,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod.clone())),
    );
    app.pipeline
        .run_stored(&caller, op, |_permit| async { Ok(Json(info(row))) })
        .await
        .map_err(as_unknown(&id))
}

pub(super) async fn kill(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = session_arg(id)?;
    let (row, service) = session_of(&app, &caller, "session.kill", &id).await?;
    let op = Operation::new(
        "session.kill",
        Action::SessionManage,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod.clone())),
    );
    let app_ref: &App = &app;
    app_ref
        .pipeline
        .run(&caller, op, |_permit| async {
            if !app_ref.store.shell_session_kill(&id, caller.id()).await? {
                return Err(ApiError::from(Error::conflict(format!(
                    "session {id} has ended"
                ))));
            }
            // Here at once; the replica holding it within a second.
            gateway(&app).end_here(&id, caller.id());
            Ok(StatusCode::NO_CONTENT)
        })
        .await
        .map_err(as_unknown(&id))
}

/// Chunks read at a time from a recording (at most 1 MiB of text each):
/// a page of the recording route, a step of verification and of a join.
const RECORDING_PAGE: i64 = 4;

pub(super) async fn recording(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<RecordingQuery>, QueryRejection>,
) -> Result<Json<SessionRecording>, ApiError> {
    let id = session_arg(id)?;
    let q = query_arg(query)?;
    let from = q.from.unwrap_or(0);
    if from < 0 {
        return Err(ApiError::invalid("from is a chunk number (0 or more)").field("from"));
    }
    let app: &App = &app;
    let (row, service) = session_of(app, &caller, "session.recording", &id).await?;
    let asked = id.clone();
    let op = Operation::new(
        "session.recording",
        Action::SessionWatch,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod.clone())),
    );
    app.pipeline
        .run_stored(&caller, op, |permit| async move {
            let rows = app
                .store
                .recording_chunks(&id, from, RECORDING_PAGE + 1)
                .await?;
            let more = rows.len() > RECORDING_PAGE as usize;
            let mut chunks = Vec::with_capacity(rows.len());
            for r in rows.into_iter().take(RECORDING_PAGE as usize) {
                chunks.push(open_chunk(app, &permit, &service, &r).await?);
            }
            let next = more.then(|| chunks.last().map_or(from, |c| c.seq + 1));
            let outcome = match next {
                Some(_) => None,
                None => outcome_of(app, service.org(), &id).await?,
            };
            Ok(Json(SessionRecording {
                id,
                chunks,
                next,
                outcome,
            }))
        })
        .await
        .map_err(as_unknown(&asked))
}

/// Opens one chunk (its seal binds the session, its number and whether it
/// is the last).
async fn open_chunk(
    app: &App,
    permit: &Permit,
    service: &ScopePath,
    row: &warden_store::RecordingChunkRow,
) -> Result<RecordingChunk, ApiError> {
    let seq = u64::try_from(row.seq).map_err(|_| ApiError::internal())?;
    let tampered = |why: String| {
        tracing::error!(error = %why, "a session recording failed its check: possible tampering");
        ApiError::from(Error::new(ErrorKind::Internal, "recording_integrity", why))
    };
    let plain = match app
        .vault
        .open_recording(permit, service, &row.session_id, seq, row.last, &row.sealed)
        .await
    {
        Ok(plain) => plain,
        Err(VaultError::Integrity(why)) => return Err(tampered(why)),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(plain.to_vec()).map_err(|_| {
        tampered(format!(
            "chunk {seq} of the recording of session {} is not text",
            row.session_id
        ))
    })?;
    Ok(RecordingChunk {
        seq: row.seq,
        last: row.last,
        text,
    })
}

/// The audit outcome of session `id` in `log`, if recorded.
async fn outcome_of(app: &App, log: &str, id: &str) -> Result<Option<RecordingOutcome>, ApiError> {
    for row in app.store.audit_entries_mentioning(log, id).await? {
        let entry: serde_json::Value = serde_json::from_str(&row.entry).unwrap_or_default();
        if entry["session"]["id"] == id {
            return Ok(Some(RecordingOutcome {
                log: log.to_owned(),
                seq: row.seq,
                recording_digest: entry["session"]["recording_digest"]
                    .as_str()
                    .map(str::to_owned),
            }));
        }
    }
    Ok(None)
}

/// Checks every recording of organization `org`'s log (the sessions with
/// stored chunks, and those whose outcome records a digest): each chunk
/// opens, none is missing, the last is marked, and the digest is the one
/// the audit outcome recorded. Sessions still live are skipped; sessions
/// ended `replica_lost` (their replica died: no outcome exists) are not
/// checked but named in a warning each. Answers how many were checked, the
/// warnings, and the first failure: the outcome's seq, if known, and why.
pub(crate) async fn verify_recordings(
    app: &App,
    permit: &Permit,
    org: &str,
) -> Result<RecordingsVerified, ApiError> {
    let mut warnings = Vec::new();
    let mut sessions: std::collections::BTreeMap<String, Option<RecordingOutcome>> =
        std::collections::BTreeMap::new();
    for id in app.store.recorded_sessions(org).await? {
        sessions.insert(id, None);
    }
    for row in app
        .store
        .audit_entries_mentioning(org, "recording_digest")
        .await?
    {
        let entry: serde_json::Value = serde_json::from_str(&row.entry).unwrap_or_default();
        if let Some(id) = entry["session"]["id"].as_str() {
            sessions.insert(
                id.to_owned(),
                Some(RecordingOutcome {
                    log: org.to_owned(),
                    seq: row.seq,
                    recording_digest: entry["session"]["recording_digest"]
                        .as_str()
                        .map(str::to_owned),
                }),
            );
        }
    }
    let mut checked = 0;
    for (id, outcome) in sessions {
        let outcome = match outcome {
            Some(o) => o,
            None => match app.store.shell_session(&id).await? {
                Some(s) if s.ended_at.is_none() => continue,
                Some(s) if s.status.as_deref() == Some(warden_store::REPLICA_LOST) => {
                    warnings.push(format!(
                        "session {id} ended replica_lost (its replica stopped answering): \
                         its recording is incomplete and has no audit outcome to check against"
                    ));
                    continue;
                }
                _ => match outcome_of(app, org, &id).await? {
                    Some(o) => o,
                    None => {
                        let why = format!("session {id} has a recording but no audit outcome");
                        return Ok((checked, warnings, Some((None, why))));
                    }
                },
            },
        };
        checked += 1;
        if let Err(why) = check_recording(app, permit, &id, &outcome).await? {
            return Ok((checked, warnings, Some((Some(outcome.seq), why))));
        }
    }
    Ok((checked, warnings, None))
}

/// What [`verify_recordings`] found: how many recordings were checked,
/// warnings (recordings that cannot be checked), and the first failure
/// (the outcome's seq, if known, and why).
pub(crate) type RecordingsVerified = (usize, Vec<String>, Option<(Option<i64>, String)>);

/// One session's recording against its outcome: `Ok(Err(why))` when it
/// fails.
async fn check_recording(
    app: &App,
    permit: &Permit,
    id: &str,
    outcome: &RecordingOutcome,
) -> Result<Result<(), String>, ApiError> {
    let Some(recorded) = &outcome.recording_digest else {
        return Ok(Err(format!(
            "session {id}'s outcome (seq {}) records no recording digest: its recording failed",
            outcome.seq
        )));
    };
    let service = match app.store.shell_session(id).await? {
        Some(row) => ScopePath::parse_kind(&row.service, ScopeKind::Service).ok(),
        None => None,
    };
    let Some(service) = service else {
        return Ok(Err(format!(
            "session {id} is not listed: its service is unknown"
        )));
    };
    // Hashed chunk by chunk: a recording can be large, and nothing of it is
    // kept.
    let mut digests = Vec::new();
    let mut from = 0;
    let mut ended = false;
    loop {
        let rows = app.store.recording_chunks(id, from, RECORDING_PAGE).await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            if ended || r.seq != from {
                return Ok(Err(format!(
                    "the recording of session {id} has chunk {} where chunk {from} belongs",
                    r.seq
                )));
            }
            match open_chunk(app, permit, &service, r).await {
                Ok(c) => digests.extend_from_slice(
                    ring::digest::digest(&ring::digest::SHA256, c.text.as_bytes()).as_ref(),
                ),
                Err(e) => return Ok(Err(e.error().message().to_owned())),
            }
            ended = r.last;
            from += 1;
        }
    }
    if !ended {
        return Ok(Err(format!(
            "the recording of session {id} ends at chunk {from} without its last chunk"
        )));
    }
    // What the outcome records: SHA-256 over the chunks' SHA-256s.
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &digests));
    if digest != *recorded {
        return Ok(Err(format!(
            "the recording of session {id} hashes to {digest}, its outcome (seq {}) recorded {recorded}",
            outcome.seq
        )));
    }
    Ok(Ok(()))
}

use warden_api::SESSION_JOIN_PROTOCOL as JOIN_PROTOCOL;
/// Largest frame or message a session's watcher may send (it sends nothing
/// that counts).
const JOIN_MAX_INPUT: usize = 1024;
/// How often a joined session's new chunks are looked for.
const JOIN_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// A session whose row says it ended this long ago (ms) and whose last
/// chunk is still missing will not get one: the recorder writes it within
/// moments of the row's end.
const JOIN_END_GRACE_MS: i64 = 10_000;
/// Joins of one session at once, on this replica.
pub(crate) const JOINS_PER_SESSION: usize = 8;
/// Joins by one principal at once, on this replica.
pub(crate) const JOINS_PER_PRINCIPAL: usize = 16;

/// The joins open on this replica, counted per session and per principal
/// (each holds a WebSocket, a grant and up to a chunk of text).
#[derive(Debug, Default)]
pub(crate) struct JoinSlots {
    by_session: Slots,
    by_principal: Slots,
}

/// One open join; its slots are given back when dropped.
#[derive(Debug)]
pub(crate) struct JoinSlot {
    _session: Slot,
    _principal: Slot,
}

impl JoinSlots {
    /// A slot for `principal` joining `session`, or why not (429).
    pub(crate) fn take(&self, session: &str, principal: &str) -> Result<JoinSlot, Error> {
        let session_slot = self.by_session.take(session, JOINS_PER_SESSION).ok_or_else(|| {
            Error::rate_limited(
                5,
                format!("session {session} has {JOINS_PER_SESSION} watchers already; try again later"),
            )
        })?;
        let principal_slot = self
            .by_principal
            .take(principal, JOINS_PER_PRINCIPAL)
            .ok_or_else(|| {
                Error::rate_limited(
                    5,
                    format!("{principal} watches {JOINS_PER_PRINCIPAL} sessions already; leave one first"),
                )
            })?;
        Ok(JoinSlot {
            _session: session_slot,
            _principal: principal_slot,
        })
    }
}

/// `GET /api/v1/session/{id}/join`: follows a session's recording as it is
/// written (read-only), one text message per chunk (asciicast lines, from
/// the header on), then a normal close once the session has ended; on any
/// replica (chunks come from the database, within a chunk's time, 2 s, of
/// being shown). It is a session of its own, `session.watch` held for as
/// long as it lasts: when the watcher's authority ends, so does the watch.
/// At most [`JOINS_PER_SESSION`] joins of a session and
/// [`JOINS_PER_PRINCIPAL`] by one principal at once per replica (429).
pub(super) async fn join(
    State(app): State<AppState>,
    crate::caller::Meta(mut meta): crate::caller::Meta,
    id: Result<Path<String>, PathRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<axum::response::Response, ApiError> {
    meta.transport = warden_pipeline::Transport::WebSocket;
    let caller = app
        .pipeline
        .authenticate(meta, &[Action::SessionWatch])
        .await?;
    let id = session_arg(id)?;
    // The upgrade is checked before the session is looked up, so a caller
    // who may not see it learns nothing from which refusal comes (review
    // 13, F6).
    let ws = ws.map_err(|_| {
        ApiError::http(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!(
                "this route is a WebSocket: upgrade with Sec-WebSocket-Protocol: {JOIN_PROTOCOL}"
            ),
        )
    })?;
    // Read-only: what the watcher sends is read only to notice its close.
    let ws = ws
        .protocols([JOIN_PROTOCOL])
        .max_message_size(JOIN_MAX_INPUT)
        .max_frame_size(JOIN_MAX_INPUT)
        .read_buffer_size(JOIN_MAX_INPUT);
    if ws.selected_protocol().is_none() {
        return Err(ApiError::invalid(format!(
            "offer the WebSocket subprotocol {JOIN_PROTOCOL}"
        )));
    }
    let (row, service) = session_of(&app, &caller, "session.join", &id).await?;
    let op = Operation::new(
        "session.join",
        Action::SessionWatch,
        Scope::Path(service.clone()),
        Target::session(&id, &service, Some(row.pod)),
    );
    let grant = app
        .pipeline
        .run_session(&caller, op)
        .await
        .map_err(|e| as_unknown(&id)(ApiError::from(e)))?;
    // Counted once authorized, so a refusal tells only those who may watch
    // that the session is watched; the refused join is audited as such.
    let slot = match app.gateway.joins.take(&id, caller.id()) {
        Ok(slot) => slot,
        Err(e) => {
            grant.finish("rate_limited");
            return Err(e.into());
        }
    };
    Ok(ws.on_upgrade(move |socket| follow(app, socket, grant, service, id, slot)))
}

/// Sends the session's chunks as they are stored, one at a time, until its
/// last one, the session's row says it ended without one (its replica was
/// lost), the watcher's authority ends, or the watcher leaves or stops
/// reading.
async fn follow(
    app: AppState,
    socket: WebSocket,
    mut grant: warden_pipeline::SessionGrant,
    service: ScopePath,
    id: String,
    slot: JoinSlot,
) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let close = |code: u16, reason: String| close_frame(code, &reason);
    let mut from = 0;
    let status = 'follow: loop {
        // One chunk at a time: a watcher holds at most one chunk's text.
        let mut rows = match app.store.recording_chunks(&id, from, 1).await {
            Ok(rows) => rows,
            Err(e) => break (close(1011, e.to_string()), "failed"),
        };
        if rows.is_empty() {
            // Nothing new: a session that ended without its last chunk
            // (its replica was lost) gets none.
            match app.store.shell_session(&id).await {
                Ok(Some(row)) if ended_for_good(&row) => {
                    rows = match app.store.recording_chunks(&id, from, 1).await {
                        Ok(rows) => rows,
                        Err(e) => break (close(1011, e.to_string()), "failed"),
                    };
                    if rows.is_empty() {
                        let status = row.status.as_deref().unwrap_or("ended");
                        break (
                            close(
                                1000,
                                format!(
                                    "the session ended ({status}) without the end of its recording"
                                ),
                            ),
                            "ok",
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => break (close(1011, e.to_string()), "failed"),
            }
        }
        for r in &rows {
            let text = match open_chunk(&app, grant.permit(), &service, r).await {
                Ok(c) => c.text,
                Err(e) => break 'follow (close(1011, e.error().message().to_owned()), "failed"),
            };
            match send_watched(&mut sink, &mut grant, Message::Text(text.into())).await {
                Delivery::Done => {}
                Delivery::Gone => return grant.finish("client_gone"),
                Delivery::Stalled => {
                    break 'follow (
                        close(1008, "the watcher stopped reading".into()),
                        "client_gone",
                    );
                }
                Delivery::Ended(reason) => {
                    break 'follow (
                        close(1008, format!("watch ended: {reason}")),
                        "authority_ended",
                    );
                }
            }
            from = r.seq + 1;
            if r.last {
                break 'follow (close(1000, "the session ended".into()), "ok");
            }
        }
        if !rows.is_empty() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(JOIN_POLL) => {}
            reason = grant.ended() => {
                break (close(1008, format!("watch ended: {reason}")), "authority_ended");
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return grant.finish("client_gone"),
                // The watch is read-only: anything the watcher sends is ignored.
                Some(Ok(_)) => {}
            },
        }
    };
    let (frame, status) = status;
    // The watcher may not be reading: the close is tried briefly, then the
    // socket is dropped.
    let _ = tokio::time::timeout(WATCHER_CLOSE_TIMEOUT, sink.send(frame)).await;
    drop(slot);
    grant.finish(status);
}

/// Whether a session's row says it has ended and no more of its recording
/// can come: its replica was lost, or it ended long enough ago for its
/// recorder to have written the last chunk.
fn ended_for_good(row: &ShellSessionRow) -> bool {
    match row.ended_at {
        None => false,
        Some(at) => {
            row.status.as_deref() == Some(warden_store::REPLICA_LOST)
                || warden_store::now_ms().saturating_sub(at) > JOIN_END_GRACE_MS
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Review 11, M3: joins were unlimited.
    #[test]
    fn joins_are_capped_per_session_and_per_principal_and_slots_come_back() {
        let slots = JoinSlots::default();
        let mut held: Vec<JoinSlot> = (0..JOINS_PER_SESSION)
            .map(|_| slots.take("s1", "user:a").unwrap())
            .collect();
        let full = slots.take("s1", "user:b").unwrap_err();
        assert!(matches!(full.kind(), ErrorKind::RateLimited { .. }));
        assert!(full.message().contains("watchers"), "{}", full.message());
        // Another session, same principal, up to its own cap.
        for i in JOINS_PER_SESSION..JOINS_PER_PRINCIPAL {
            held.push(slots.take(&format!("s{i}"), "user:a").unwrap());
        }
        let busy = slots.take("other", "user:a").unwrap_err();
        assert!(busy.message().contains("user:a"), "{}", busy.message());
        assert!(slots.take("other", "user:b").is_ok());
        // Dropping a join gives its slot back.
        held.remove(0);
        assert!(slots.take("s1", "user:b").is_ok());
        drop(held);
        assert!(slots.by_session.is_empty() && slots.by_principal.is_empty());
    }
}
