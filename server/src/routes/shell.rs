//! `GET /api/v1/shell?target=...`: a shell or a command in a pod over a
//! WebSocket speaking Kubernetes' channel protocol (v5, or v4); `warden
//! shell` is its client. The shell gateway runs the session; this module
//! only authenticates, checks the request, and carries the socket.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use warden_pipeline::Transport;
use warden_runtime::TermSize;
use warden_shell_gateway::websocket::{self, MAX_INPUT_FRAME, V4, V5, WsIn, WsOut};
use warden_shell_gateway::{Command, Session, ShellRequest, ShellTarget};

use super::*;
use crate::ApiError;
use crate::caller::Meta;
use crate::gateway::{SSH_MAX_SESSION, gateway};

/// A terminal's size until the client's first resize message.
const INITIAL_SIZE: TermSize = TermSize { cols: 80, rows: 24 };
/// How long the socket's writer may take to flush the session's end.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// Parses the query: `target` once, `command` repeated (one argument
/// each), `tty`; anything else is refused.
fn shell_request(query: Option<&str>) -> Result<ShellRequest, ApiError> {
    let mut target = None;
    let mut argv = Vec::new();
    let mut tty = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "target" if target.is_none() => target = Some(ShellTarget::parse(&value)?),
            "command" => argv.push(value.into_owned()),
            "tty" => {
                tty = flag(&value)
                    .ok_or_else(|| ApiError::invalid("tty is true or false").field("tty"))?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {:?} (target, command, tty)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    let target =
        target.ok_or_else(|| ApiError::invalid("target is required once").field("target"))?;
    Ok(ShellRequest {
        target,
        command: if argv.is_empty() {
            Command::Shell
        } else {
            Command::Argv(argv)
        },
        tty: tty.then_some(INITIAL_SIZE),
        env: Vec::new(),
    })
}

pub(super) async fn shell(
    State(app): State<AppState>,
    Meta(mut meta): Meta,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    meta.transport = Transport::WebSocket;
    let caller = app
        .pipeline
        .authenticate(meta, &[Action::ShellExec])
        .await?;
    let request = shell_request(query.as_deref())?;
    let ws = ws.map_err(|_| {
        ApiError::http(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this route is a WebSocket: upgrade with Sec-WebSocket-Protocol: v5.channel.k8s.io",
        )
    })?;
    let (ws, protocol) = negotiate(ws).ok_or_else(|| {
        ApiError::invalid(
            "offer the WebSocket subprotocol v5.channel.k8s.io (or v4.channel.k8s.io)",
        )
    })?;
    let (session, exec) = gateway(&app).open(&caller, request).await?;
    Ok(upgrade(ws, protocol, session, exec))
}

/// The channel protocol both sides speak (v5, else v4), if any.
pub(super) fn negotiate(ws: WebSocketUpgrade) -> Option<(WebSocketUpgrade, String)> {
    let ws = ws.protocols([V5, V4]);
    let protocol = ws.selected_protocol()?.to_str().ok()?.to_owned();
    Some((ws, protocol))
}

/// Answers the upgrade and carries the started session over the socket.
pub(super) fn upgrade(
    ws: WebSocketUpgrade,
    protocol: String,
    session: Session,
    exec: warden_runtime::ExecSession,
) -> Response {
    // The frame limit is checked on a frame's declared length, before it
    // is buffered; the message limit only once it is whole (review 13, F1).
    ws.max_message_size(MAX_INPUT_FRAME + 16)
        .max_frame_size(MAX_INPUT_FRAME + 16)
        .on_upgrade(move |socket| carry(socket, session, exec, protocol))
}

/// A boolean query parameter: `true`/`1` or `false`/`0`.
pub(super) fn flag(value: &str) -> Option<bool> {
    match value {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Carries a session's messages between the socket and the gateway.
async fn carry(
    socket: WebSocket,
    session: Session,
    exec: warden_runtime::ExecSession,
    protocol: String,
) {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel::<WsOut>(16);
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Binary(b)) => WsIn::Binary(b),
                Ok(Message::Text(_)) => WsIn::Text,
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => WsIn::Close,
            };
            let close = matches!(msg, WsIn::Close);
            if in_tx.send(msg).await.is_err() || close {
                return;
            }
        }
        let _ = in_tx.send(WsIn::Close).await;
    });
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let msg = match msg {
                WsOut::Binary(b) => Message::Binary(b),
                WsOut::Close(code, reason) => Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    websocket::serve(session, exec, &protocol, in_rx, out_tx, SSH_MAX_SESSION).await;
    let _ = tokio::time::timeout(WRITER_GRACE, writer).await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn queries_parse_or_are_refused() {
        let r = shell_request(Some(
            "target=acme/shop/dev/api&command=sh&command=-c&command=echo%20a%26b&tty=true",
        ))
        .unwrap();
        assert_eq!(r.target.service.as_str(), "acme/shop/dev/api");
        assert_eq!(
            r.command,
            Command::Argv(vec!["sh".into(), "-c".into(), "echo a&b".into()])
        );
        assert!(r.tty.is_some());
        assert_eq!(
            shell_request(Some("target=acme/shop/dev/api/api-1"))
                .unwrap()
                .command,
            Command::Shell
        );
        for bad in [
            None,
            Some(""),
            Some("target=acme/shop/dev"),
            Some("target=acme/shop/../api"),
            Some("target=acme/shop/dev/api&target=acme/shop/dev/web"),
            Some("target=acme/shop/dev/api&tty=maybe"),
            Some("target=acme/shop/dev/api&container=x"),
        ] {
            assert!(shell_request(bad).is_err(), "{bad:?}");
        }
    }
}
