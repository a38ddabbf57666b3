//! The WebSocket entry point's protocol: Kubernetes' remote-command channel
//! protocol, `v5.channel.k8s.io` (and `v4.channel.k8s.io`), which `kubectl
//! exec`, client-go, kube-rs and `warden shell` speak (KEP-4006, "Transition
//! from SPDY to WebSockets"; client-go `tools/remotecommand`).
//!
//! Every message is binary; its first byte names the channel:
//!
//! | ch  | direction | payload |
//! |-----|-----------|---------|
//! | 0   | in        | stdin bytes |
//! | 1   | out       | stdout (an empty `[1]` first, as the upstream server sends) |
//! | 2   | out       | stderr (never with a terminal: it is merged into stdout) |
//! | 3   | out       | one `metav1.Status` JSON, last |
//! | 4   | in        | terminal size, `{"Width":W,"Height":H}` objects |
//! | 255 | in        | v5 only: `[255, 0]` closes stdin |
//!
//! The end of a session, in order: all output, the status, a Close(1000),
//! then the client's close is awaited (bounded) before the connection is
//! dropped, so the kernel never resets away unsent output (the class of
//! kubernetes#124571). A session that ends without the process exiting
//! sends a `Failure` status, never the `Success` that no status would mean.
//!
//! The socket itself belongs to the HTTP front-end (the server); it feeds
//! this module [`WsIn`] messages and sends the [`WsOut`] ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use warden_runtime::{ExecSession, TermSize};

use crate::gateway::{Input, Session, SessionEnd, StdinError, Stop, write_stdin};
use crate::recording::Tap;

/// The protocol `kubectl` 1.30+ and `warden shell` speak.
pub const V5: &str = "v5.channel.k8s.io";
/// Its predecessor (no stdin close), which kube-rs still offers.
pub const V4: &str = "v4.channel.k8s.io";
/// Output is sent in messages of at most this many bytes, so control
/// frames (pongs to kubectl's pings) are never stuck behind a large one.
const MAX_OUTPUT_FRAME: usize = 32 * 1024;
/// Largest message accepted from the client.
pub const MAX_INPUT_FRAME: usize = 64 * 1024;
/// How long the client has to answer the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How long the output of a session that did not exit may still drain.
const DRAIN_AFTER_END: Duration = Duration::from_millis(500);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// A message from the client's socket.
#[derive(Debug)]
pub enum WsIn {
    /// A binary message.
    Binary(Bytes),
    /// A text message (a protocol error here).
    Text,
    /// The client's close (or the connection ended).
    Close,
}

/// A message for the client's socket.
#[derive(Debug, PartialEq, Eq)]
pub enum WsOut {
    /// A binary message.
    Binary(Bytes),
    /// The closing handshake, with its code and reason.
    Close(u16, String),
}

/// What one client message asks.
#[derive(Debug, PartialEq, Eq)]
enum Inbound {
    Stdin(Bytes),
    Resize(Vec<TermSize>),
    CloseStdin,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u16,
    height: u16,
}

/// Decodes one client message; an error names what is wrong with it.
fn decode(frame: Bytes, v5: bool) -> Result<Inbound, String> {
    let Some((&channel, _)) = frame.split_first() else {
        return Err("an empty message has no channel".into());
    };
    let payload = frame.slice(1..);
    match channel {
        STDIN => Ok(Inbound::Stdin(payload)),
        RESIZE => {
            // A stream of JSON objects (client-go writes one per line).
            let sizes = serde_json::Deserializer::from_slice(&payload)
                .into_iter::<Size>()
                .map(|s| {
                    s.map(|s| TermSize {
                        cols: s.width.max(1),
                        rows: s.height.max(1),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("invalid resize message: {e}"))?;
            Ok(Inbound::Resize(sizes))
        }
        CLOSE if v5 => match payload.as_ref() {
            [STDIN] => Ok(Inbound::CloseStdin),
            // Closing an output stream from the client side means nothing.
            [STDOUT | STDERR] => Ok(Inbound::Resize(Vec::new())),
            _ => Err("invalid close message".into()),
        },
        other => Err(format!("unknown channel {other}")),
    }
}

/// One channel message.
fn frame(channel: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    b.freeze()
}

/// The `metav1.Status` a session ends with (client-go `errorDecoderV4`:
/// `NonZeroExitCode` with an `ExitCode` cause carries the exit code).
fn status(stop: &Stop) -> Bytes {
    let body = match stop {
        Stop::Exited(Ok(s)) if s.success() => json!({"metadata": {}, "status": "Success"}),
        Stop::Exited(Ok(s)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {}", s.code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": s.code.to_string()}]},
        }),
        Stop::Exited(Err(e)) => refusal(&format!("the session's pod was lost: {e}"), 503),
        Stop::AuthorityEnded(reason) => refusal(&format!("session ended: {reason}"), 403),
        Stop::LimitReached(reason) => refusal(&format!("session ended: {reason}"), 408),
        Stop::ClientGone(Some(what)) => refusal(what, 400),
        Stop::ClientGone(None) => refusal("the client went away", 400),
    };
    frame(STATUS, body.to_string().as_bytes())
}

/// A failure `metav1.Status`: refusing a request before the upgrade (what
/// kubectl prints as `Error from server (Reason): message`), or ending a
/// session that did not exit.
pub fn refusal(message: &str, code: u16) -> serde_json::Value {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "Timeout",
        409 => "Conflict",
        429 => "TooManyRequests",
        _ => "ServiceUnavailable",
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// Runs a started session over a WebSocket speaking `protocol` ([`V5`] or
/// [`V4`]) until it ends, then records its outcome.
pub async fn serve(
    mut session: Session,
    exec: ExecSession,
    protocol: &str,
    inbound: mpsc::Receiver<WsIn>,
    outbound: mpsc::Sender<WsOut>,
    max_length: Duration,
) {
    // The input task reads the socket while the session runs; afterwards
    // this task does, for the client's close.
    let inbound = Arc::new(tokio::sync::Mutex::new(inbound));
    let v5 = protocol == V5;
    let counted_in = Arc::new(AtomicU64::new(0));
    let counted_out = Arc::new(AtomicU64::new(0));
    let _ = outbound.send(WsOut::Binary(frame(STDOUT, &[]))).await;
    let tap = session.tap();
    let out = tokio::spawn(pump(
        exec.stdout,
        STDOUT,
        outbound.clone(),
        counted_out.clone(),
        tap.clone(),
    ));
    let err = exec.stderr.map(|rx| {
        tokio::spawn(pump(
            rx,
            STDERR,
            outbound.clone(),
            counted_out.clone(),
            tap.clone(),
        ))
    });
    let input = tokio::spawn(forward_input(
        inbound.clone(),
        Input {
            stdin: exec.stdin,
            control: exec.control.clone(),
            counted: counted_in.clone(),
            tap,
        },
        v5,
    ));
    let stop = session
        .supervise(exec.exit, &exec.control, input, max_length)
        .await;
    let pumps: Vec<_> = std::iter::once(out).chain(err).collect();
    let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let drained = futures::future::join_all(pumps);
    match stop {
        Stop::Exited(Ok(_)) => {
            drained.await;
        }
        _ => {
            let _ = tokio::time::timeout(DRAIN_AFTER_END, drained).await;
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
    let _ = outbound.send(WsOut::Binary(status(&stop))).await;
    let _ = outbound.send(WsOut::Close(1000, String::new())).await;
    // The client answers the close; its socket is read until then.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        let mut inbound = inbound.lock().await;
        while let Some(msg) = inbound.recv().await {
            if matches!(msg, WsIn::Close) {
                break;
            }
        }
    })
    .await;
    session.finish(SessionEnd {
        exit: match &stop {
            Stop::Exited(Ok(s)) => Some(*s),
            _ => None,
        },
        bytes_in: counted_in.load(Ordering::Relaxed),
        bytes_out: counted_out.load(Ordering::Relaxed),
        status: stop.status(),
    });
}

/// Sends a process's output in channel messages of at most
/// [`MAX_OUTPUT_FRAME`] bytes, counting and recording it.
async fn pump(
    mut rx: mpsc::Receiver<Bytes>,
    channel: u8,
    outbound: mpsc::Sender<WsOut>,
    counted: Arc<AtomicU64>,
    tap: Tap,
) {
    while let Some(chunk) = rx.recv().await {
        counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        tap.output(channel == STDERR, &chunk).await;
        for piece in chunk.chunks(MAX_OUTPUT_FRAME) {
            if outbound
                .send(WsOut::Binary(frame(channel, piece)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Feeds the client's messages to the process. Returns when the client
/// closes (`None`) or breaks the protocol (what it did).
async fn forward_input(
    inbound: Arc<tokio::sync::Mutex<mpsc::Receiver<WsIn>>>,
    Input {
        mut stdin,
        control,
        counted,
        tap,
    }: Input,
    v5: bool,
) -> Option<String> {
    let mut inbound = inbound.lock().await;
    while let Some(msg) = inbound.recv().await {
        let frame = match msg {
            WsIn::Binary(frame) => frame,
            WsIn::Text => return Some("text messages are not part of the protocol".into()),
            WsIn::Close => return None,
        };
        if frame.len() > MAX_INPUT_FRAME {
            return Some(format!("a message over {MAX_INPUT_FRAME} bytes"));
        }
        counted.fetch_add(frame.len() as u64, Ordering::Relaxed);
        match decode(frame, v5) {
            Ok(Inbound::Stdin(data)) => {
                tap.input(&data).await;
                if let Some(s) = &stdin {
                    match write_stdin(s, data).await {
                        Ok(()) => {}
                        Err(StdinError::Closed) => stdin = None,
                        Err(StdinError::Stalled(why)) => return Some(why),
                    }
                }
            }
            Ok(Inbound::Resize(sizes)) => {
                for size in sizes {
                    // Without a terminal a resize means nothing.
                    if control.resize(size.cols, size.rows).is_ok() {
                        tap.resize(size).await;
                    }
                }
            }
            Ok(Inbound::CloseStdin) => stdin = None,
            Err(what) => return Some(what),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_messages_decode_or_are_refused() {
        let b = |v: &[u8]| Bytes::copy_from_slice(v);
        assert_eq!(
            decode(b(b"\x00hello"), true).unwrap(),
            Inbound::Stdin(b(b"hello"))
        );
        assert_eq!(
            decode(
                b(b"\x04{\"Width\":132,\"Height\":40}\n{\"Width\":80,\"Height\":0}"),
                true
            )
            .unwrap(),
            Inbound::Resize(vec![
                TermSize {
                    cols: 132,
                    rows: 40
                },
                TermSize { cols: 80, rows: 1 }
            ])
        );
        assert_eq!(decode(b(&[255, 0]), true).unwrap(), Inbound::CloseStdin);
        for bad in [
            &b""[..],
            b"\x04{\"Width\":-1}",
            b"\x04{\"Width\":70000,\"Height\":1}",
            b"\x04not json",
            b"\x07x",
            &[255, 9],
            &[255],
        ] {
            assert!(decode(b(bad), true).is_err(), "{bad:?}");
        }
        // v4 has no close channel.
        assert!(decode(b(&[255, 0]), false).is_err());
    }

    #[test]
    fn statuses_carry_the_exit_code_as_client_go_reads_it() {
        use warden_runtime::ExitStatus;
        let json = |b: Bytes| -> serde_json::Value {
            assert_eq!(b[0], STATUS);
            serde_json::from_slice(&b[1..]).unwrap()
        };
        let ok = json(status(&Stop::Exited(Ok(ExitStatus::exited(0)))));
        assert_eq!(ok["status"], "Success");
        let seven = json(status(&Stop::Exited(Ok(ExitStatus::exited(7)))));
        assert_eq!(seven["reason"], "NonZeroExitCode");
        assert_eq!(seven["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(seven["details"]["causes"][0]["message"], "7");
        let ended = json(status(&Stop::AuthorityEnded("binding revoked".into())));
        assert_eq!(ended["status"], "Failure");
        assert!(
            ended["message"]
                .as_str()
                .unwrap()
                .contains("binding revoked")
        );
    }
}
