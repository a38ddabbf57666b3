//! `exec` through kube-rs's [`AttachedProcess`], pumped into the trait's
//! [`ExecSession`] channels.
//!
//! The exit status comes from the one `metav1.Status` the server sends on
//! channel 3 (client-go `errorDecoderV4`): `Success` is 0,
//! `Failure`/`NonZeroExitCode` carries the code in the cause `ExitCode`.
//! kube-rs stops reading at that status, so output the server sends after
//! it is lost; a conforming server (the kubelet, which flushes before the
//! status) sends none. A connection that ends without a status, or fails,
//! resolves the exit future with [`RuntimeError::Unavailable`]: never a
//! made-up exit 0.

use bytes::Bytes;
use futures::SinkExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use warden_runtime::{
    ExecControl, ExecControlMsg, ExecRequest, ExecSession, ExitFuture, ExitStatus, RuntimeError,
};

use crate::objects::CONTAINER;

/// Bytes per stdout/stderr read, and per kube-rs pipe.
const CHUNK: usize = 32 * 1024;
/// Chunks queued towards the caller per stream.
const QUEUE: usize = 16;
/// How long output may still drain after a connection ended without a
/// status.
const LOST_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Prefixes `argv` with `env NAME=VALUE …` when the request sets variables:
/// the exec protocol has no environment parameter, so the container's
/// `env` program (POSIX) sets them. Without variables argv is unchanged.
fn command_line(request: &ExecRequest) -> Vec<String> {
    if request.env.is_empty() {
        return request.argv.clone();
    }
    let mut argv = vec!["env".to_owned()];
    argv.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
    // `env` would take a program name containing '=' for one more
    // variable; start() refuses such names.
    argv.extend(request.argv.iter().cloned());
    argv
}

pub(crate) async fn start(
    pods: &Api<Pod>,
    pod: &str,
    request: ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    if !request.env.is_empty() && request.argv.first().is_some_and(|p| p.contains('=')) {
        return Err(RuntimeError::InvalidRequest(
            "exec: with environment variables the program name may not contain '='".into(),
        ));
    }
    let tty = request.tty;
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(request.stdin)
        .stdout(true)
        // The channel protocol has no stderr with a TTY (it is merged).
        .stderr(tty.is_none())
        .tty(tty.is_some())
        .max_stdin_buf_size(CHUNK)
        .max_stdout_buf_size(CHUNK)
        .max_stderr_buf_size(CHUNK);
    let mut process = pods
        .exec(pod, command_line(&request), &params)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => RuntimeError::PodNotFound(pod.to_owned()),
            e => crate::api_error(e, "starting exec"),
        })?;

    let status = process.take_status();
    let (control, mut control_rx) = ExecControl::new(tty.is_some());
    let mut resize = process.terminal_size();
    if let (Some(size), Some(tx)) = (tty, resize.as_mut()) {
        // The first resize message is the initial size (kubectl does the same).
        let _ = tx
            .send(TerminalSize {
                width: size.cols,
                height: size.rows,
            })
            .await;
    }
    let pod_name = pod.to_owned();
    tokio::spawn(async move {
        while let Some(msg) = control_rx.recv().await {
            match (msg, resize.as_mut()) {
                (ExecControlMsg::Resize(s), Some(tx)) => {
                    if tx
                        .send(TerminalSize {
                            width: s.cols,
                            height: s.rows,
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                (ExecControlMsg::Resize(_), None) => {}
                (ExecControlMsg::Signal(sig), _) => {
                    tracing::warn!(pod = %pod_name, signal = sig.as_raw(),
                        "the Kubernetes exec protocol has no signal channel; signal not delivered");
                }
            }
        }
    });

    let stdin_tx = match process.stdin() {
        Some(mut writer) if request.stdin => {
            let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
            tokio::spawn(async move {
                while let Some(data) = rx.recv().await {
                    if writer.write_all(&data).await.is_err() {
                        return;
                    }
                }
                // Dropping the writer makes kube-rs send [255, 0] (v5
                // half-close): the process reads end-of-file.
                let _ = writer.shutdown().await;
            });
            Some(tx)
        }
        _ => None,
    };
    let (stdout_tx, stdout_rx) = mpsc::channel(QUEUE);
    let stdout = process.stdout().map(|r| tokio::spawn(pump(r, stdout_tx)));
    let (stderr_rx, stderr) = match process.stderr() {
        Some(r) => {
            let (tx, rx) = mpsc::channel(QUEUE);
            (Some(rx), Some(tokio::spawn(pump(r, tx))))
        }
        None => (None, None),
    };
    let (mut exit_tx, exit_rx) = oneshot::channel();
    let pod_name = pod.to_owned();
    tokio::spawn(async move {
        let status = async {
            match status {
                Some(s) => s.await,
                None => None,
            }
        };
        // A caller that drops the session (and its exit future) ends the
        // connection: with a TTY the kubelet hangs the process up; without
        // one the process may run on (the protocol has no kill).
        let status = tokio::select! {
            status = status => status,
            () = exit_tx.closed() => {
                process.abort();
                return;
            }
        };
        // Output first: the exit future resolves only once everything read
        // has been queued for the caller. After a status kube-rs shuts its
        // pipes, so the pumps end. When the connection failed it just drops
        // its write halves, which does not end a `tokio::io::simplex` read
        // half: then the pumps get a moment to drain, and are stopped.
        for mut task in [stdout, stderr].into_iter().flatten() {
            if status.is_some() {
                let _ = (&mut task).await;
            } else if tokio::time::timeout(LOST_DRAIN, &mut task).await.is_err() {
                task.abort();
            }
        }
        let joined = join(process).await;
        let _ = exit_tx.send(exit_status(&pod_name, status, joined));
    });
    Ok(ExecSession::new(
        stdin_tx,
        stdout_rx,
        stderr_rx,
        control,
        ExitFuture::new(exit_rx),
    ))
}

async fn join(process: AttachedProcess) -> Result<(), String> {
    process.join().await.map_err(|e| e.to_string())
}

/// Copies a kube-rs pipe into a channel. When the caller stops reading,
/// the rest is drained and dropped so the connection's reader never stalls.
async fn pump(mut reader: impl AsyncRead + Unpin, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; CHUNK];
    let mut open = true;
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if open && tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    open = false;
                }
            }
        }
    }
}

/// The exit status from the server's `Status`, or why there is none.
fn exit_status(
    pod: &str,
    status: Option<Status>,
    joined: Result<(), String>,
) -> Result<ExitStatus, RuntimeError> {
    let Some(status) = status else {
        return Err(RuntimeError::Unavailable(match joined {
            Err(e) => {
                format!("exec in pod {pod}: the connection failed before an exit status: {e}")
            }
            Ok(()) => format!("exec in pod {pod}: the connection ended without an exit status"),
        }));
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(ExitStatus::exited(0));
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse::<i32>().ok());
        return match code {
            Some(c) if (1..=255).contains(&c) => Ok(ExitStatus::exited(c)),
            _ => Err(RuntimeError::Agent(format!(
                "exec in pod {pod}: a NonZeroExitCode status without a valid ExitCode cause"
            ))),
        };
    }
    Err(RuntimeError::ExecFailed {
        pod: pod.to_owned(),
        message: status
            .message
            .unwrap_or_else(|| "the exec failed without a message".into())
            .chars()
            .take(1024)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn status(json: serde_json::Value) -> Option<Status> {
        Some(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn statuses_map_to_exit_codes_and_a_missing_one_is_an_error() {
        let ok = status(serde_json::json!({"metadata": {}, "status": "Success"}));
        assert_eq!(exit_status("p", ok, Ok(())).unwrap(), ExitStatus::exited(0));
        let seven = status(
            serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}),
        );
        assert_eq!(exit_status("p", seven, Ok(())).unwrap().code, 7);
        let bogus = status(
            serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "0"}]}}),
        );
        assert!(exit_status("p", bogus, Ok(())).is_err());
        let failed = status(
            serde_json::json!({"status": "Failure", "reason": "InternalError",
            "message": "executable file not found"}),
        );
        assert!(matches!(
            exit_status("p", failed, Ok(())),
            Err(RuntimeError::ExecFailed { .. })
        ));
        assert!(matches!(
            exit_status("p", None, Ok(())),
            Err(RuntimeError::Unavailable(_))
        ));
        assert!(matches!(
            exit_status("p", None, Err("reset".into())),
            Err(RuntimeError::Unavailable(_))
        ));
    }

    #[test]
    fn environment_goes_through_env() {
        let mut r = ExecRequest::new(["sh", "-c", "echo $TERM"]);
        assert_eq!(command_line(&r), ["sh", "-c", "echo $TERM"]);
        r.env = vec![("TERM".into(), "xterm".into())];
        assert_eq!(
            command_line(&r),
            ["env", "TERM=xterm", "sh", "-c", "echo $TERM"]
        );
    }
}
