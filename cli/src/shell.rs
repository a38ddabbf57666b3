//! `warden shell TARGET [-- CMD...]`: a shell or a command in a pod through
//! the gateway's WebSocket (`GET /api/v1/shell`, Kubernetes' v5 channel
//! protocol). With a terminal the local one goes raw and follows resizes
//! (SIGWINCH); the remote exit code becomes this command's own.

use std::io::{IsTerminal, Write};

use anyhow::{Context, anyhow};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::ctx::Ctx;
use crate::error::RemoteExit;

/// The flags of `warden shell`.
#[derive(Debug, Args)]
pub(crate) struct ShellArgs {
    /// `ORG/PROJECT/ENV/SERVICE` (its first ready pod) or
    /// `ORG/PROJECT/ENV/SERVICE/POD`.
    target: String,
    /// Force a terminal (default: when no command is given and stdin is a
    /// terminal).
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// Never allocate a terminal.
    #[arg(short = 'T', long = "no-tty", conflicts_with = "tty")]
    no_tty: bool,
    /// The command and its arguments (after `--`); none: a login shell.
    #[arg(last = true)]
    command: Vec<String>,
}

const V5: &str = "v5.channel.k8s.io";

/// Restores the terminal's settings when dropped.
struct RawMode(rustix::termios::Termios);

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Flush, &raw)
            .context("setting the terminal to raw mode")?;
        Ok(Self(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Flush,
            &self.0,
        );
    }
}

/// The terminal's size as a v5 resize message.
fn resize_message() -> Option<Message> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    let json = format!(
        "{{\"Width\":{},\"Height\":{}}}",
        size.ws_col.max(1),
        size.ws_row.max(1)
    );
    let mut frame = vec![4u8];
    frame.extend_from_slice(json.as_bytes());
    Some(Message::Binary(frame.into()))
}

/// The exit code a `metav1.Status` stands for, or the failure it reports.
fn exit_code(status: &Value) -> Result<u8, String> {
    if status["status"] == "Success" {
        return Ok(0);
    }
    if status["reason"] == "NonZeroExitCode"
        && let Some(code) = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<u8>().ok())
    {
        return Ok(code);
    }
    Err(status["message"]
        .as_str()
        .unwrap_or("the session failed")
        .to_owned())
}

pub(crate) async fn run(ctx: &Ctx, args: ShellArgs) -> anyhow::Result<()> {
    let tty =
        !args.no_tty && (args.tty || (args.command.is_empty() && std::io::stdin().is_terminal()));
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("target", &args.target);
    for arg in &args.command {
        query.append_pair("command", arg);
    }
    if tty {
        query.append_pair("tty", "true");
    }
    let path = format!("/api/v1/shell?{}", query.finish());
    let (socket, protocol) = ctx.client().websocket(&path, &[V5]).await?;
    if protocol.as_deref() != Some(V5) {
        return Err(anyhow!("the server did not agree to {V5}"));
    }
    let (mut sink, mut stream) = socket.split();
    let raw = if tty && std::io::stdin().is_terminal() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    if tty && let Some(m) = resize_message() {
        sink.send(m).await?;
    }
    // Input: stdin, then its end as a v5 close of channel 0; resizes.
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        let mut buf = vec![0u8; 32 * 1024];
        let mut open = true;
        loop {
            tokio::select! {
                n = stdin.read(&mut buf[1..]), if open => {
                    let msg = match n {
                        Ok(0) | Err(_) => {
                            open = false;
                            Message::Binary(vec![255u8, 0].into())
                        }
                        Ok(n) => {
                            buf[0] = 0;
                            Message::Binary(buf[..=n].to_vec().into())
                        }
                    };
                    if sink.send(msg).await.is_err() {
                        return;
                    }
                }
                Some(()) = async { winch.as_mut()?.recv().await } => {
                    if tty && let Some(m) = resize_message()
                        && sink.send(m).await.is_err()
                    {
                        return;
                    }
                }
                else => std::future::pending::<()>().await,
            }
        }
    });
    let mut status = None;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    while let Some(msg) = stream.next().await {
        let frame = match msg {
            Ok(Message::Binary(frame)) => frame,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                drop(raw);
                return Err(anyhow!("the session's connection broke: {e}"));
            }
        };
        match frame.split_first() {
            Some((1, data)) => {
                stdout.write_all(data)?;
                stdout.flush()?;
            }
            Some((2, data)) => {
                stderr.write_all(data)?;
                stderr.flush()?;
            }
            Some((3, data)) => status = serde_json::from_slice::<Value>(data).ok(),
            _ => {}
        }
    }
    input.abort();
    drop(raw);
    let code = match status {
        Some(status) => exit_code(&status).map_err(|m| anyhow!("{m}"))?,
        None => return Err(anyhow!("the session ended without an exit status")),
    };
    if code == 0 {
        return Ok(());
    }
    Err(RemoteExit(code).into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_become_exit_codes() {
        assert_eq!(exit_code(&json!({"status": "Success"})), Ok(0));
        let seven = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}});
        assert_eq!(exit_code(&seven), Ok(7));
        let ended = json!({"status": "Failure", "message": "session ended: revoked"});
        assert_eq!(exit_code(&ended), Err("session ended: revoked".into()));
    }
}
