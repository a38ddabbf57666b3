//! The agent's side of exec: starts the exec helper with pipes or a
//! terminal, and turns its stdio and control socket into an
//! [`ExecSession`].

use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{
    ExecControl, ExecControlMsg, ExecRequest, ExecSession, ExitFuture, ExitStatus, Signal, TermSize,
};
use crate::local::proto::{
    self, ExecCommand, ExecConfig, ExecEvent, HelperCommand, InitInfo, ShimConfig,
};
use crate::local::workload_env;
use crate::{RuntimeError, sys};

/// Output chunks buffered per stream before the reader waits for the caller.
const CHANNEL_CHUNKS: usize = 16;
const READ_BYTES: usize = 64 * 1024;
/// After the process exits, how long output may stay silent before its
/// stream is closed even though something (a background child) still holds
/// it open. Data keeps flowing as long as it comes.
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// The terminal's end-of-file character (VEOF, ^D), sent when stdin closes.
const VEOF: u8 = 0x04;

struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty(size: TermSize) -> Result<Pty, RuntimeError> {
    let io = |what: &str, e: rustix::io::Errno| RuntimeError::io(format!("pty: {what}"), e.into());
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(|e| io("openpt", e))?;
    rustix::pty::grantpt(&master).map_err(|e| io("grantpt", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| io("unlockpt", e))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| io("ptsname", e))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("open slave", e))?;
    resize(&master, size)?;
    rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK).map_err(|e| io("nonblock", e))?;
    Ok(Pty { master, slave })
}

fn resize(master: &impl AsFd, size: TermSize) -> Result<(), RuntimeError> {
    rustix::termios::tcsetwinsize(
        master,
        rustix::termios::Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(|e| RuntimeError::io("pty: resize", e.into()))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, RuntimeError> {
    fd.try_clone().map_err(|e| RuntimeError::io("dup", e))
}

/// Starts `request` in the pod described by `record` (its init `target`
/// when it has namespaces).
pub(crate) async fn exec(
    helper: &HelperCommand,
    record: &ShimConfig,
    target: Option<InitInfo>,
    request: ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    let pod = record.pod.to_string();
    let mut env = workload_env(record);
    if request.tty.is_some() && !request.env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    env.extend(request.env.iter().cloned());
    let cfg = ExecConfig {
        target,
        cgroup_procs: record
            .cgroup
            .as_ref()
            .map(|c| c.procs_files())
            .unwrap_or_default(),
        argv: request.argv.clone(),
        env,
        run_as: record.run_as,
        tty: request.tty.is_some(),
    };

    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| RuntimeError::io("socketpair", e))?;
    let mut cmd = tokio::process::Command::new(&helper.program);
    cmd.args(&helper.args).arg("exec");
    let pty = match request.tty {
        Some(size) => {
            let pty = open_pty(size)?;
            cmd.stdin(Stdio::from(dup(&pty.slave)?))
                .stdout(Stdio::from(dup(&pty.slave)?))
                .stderr(Stdio::from(dup(&pty.slave)?));
            Some(pty)
        }
        None => {
            cmd.stdin(if request.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            None
        }
    };
    sys::pass_fd3(&mut cmd, theirs.into());
    let mut child = cmd.spawn().map_err(|e| {
        RuntimeError::io(
            format!("starting the exec helper ({})", helper.program.display()),
            e,
        )
    })?;
    // The command's copies of the slave and of the socket end close here,
    // so end-of-file can reach us once the exec'd process is done.
    drop(cmd);
    let master = pty.map(|p| {
        drop(p.slave);
        p.master
    });

    ours.set_nonblocking(true)
        .map_err(|e| RuntimeError::io("socket", e))?;
    let mut sock = UnixStream::from_std(ours).map_err(|e| RuntimeError::io("socket", e))?;
    proto::write_frame_async(&mut sock, &cfg, b"")
        .await
        .map_err(|e| RuntimeError::io("exec helper", e))?;
    match proto::read_frame_async::<ExecEvent>(&mut sock).await {
        Ok(Some((ExecEvent::Started, _))) => {}
        Ok(Some((ExecEvent::Failed { message, setup }, _))) => {
            let _ = child.wait().await;
            return Err(if setup {
                if message.contains("init is gone") {
                    RuntimeError::PodNotRunning {
                        pod,
                        phase: "Terminating".into(),
                    }
                } else {
                    RuntimeError::Helper(format!("exec in pod {pod}: {message}"))
                }
            } else {
                RuntimeError::ExecFailed { pod, message }
            });
        }
        _ => {
            let st = child.wait().await;
            return Err(RuntimeError::Helper(format!(
                "exec helper for pod {pod} ended early ({st:?})"
            )));
        }
    }

    let (exited_tx, exited_rx) = watch::channel(false);
    // Set when the caller dropped a stdout/stderr receiver: the session is
    // abandoned and the process is killed.
    let (abandoned_tx, mut abandoned_rx) = watch::channel(false);
    let abandoned_tx = std::sync::Arc::new(abandoned_tx);
    let (stdout_tx, stdout_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (control, mut control_rx) = ExecControl::new(master.is_some());
    let (exit_tx, exit_rx) = oneshot::channel();
    let mut readers = Vec::new();
    let mut stdin_tx = None;
    let mut stderr_rx = None;
    let master = match master {
        Some(m) => Some(std::sync::Arc::new(
            sys::async_fd(
                m,
                tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
            )
            .map_err(|e| RuntimeError::io("pty", e))?,
        )),
        None => None,
    };

    match &master {
        Some(m) => {
            readers.push(tokio::spawn(read_pty(
                m.clone(),
                stdout_tx,
                exited_rx.clone(),
                abandoned_tx.clone(),
            )));
            let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
            if request.stdin {
                stdin_tx = Some(tx);
            } else {
                // No stdin: the terminal's EOF at once, as with a pipe.
                drop(tx);
            }
            tokio::spawn(write_pty(m.clone(), rx));
        }
        None => {
            if let Some(out) = child.stdout.take() {
                readers.push(tokio::spawn(read_pipe(
                    out,
                    stdout_tx,
                    exited_rx.clone(),
                    abandoned_tx.clone(),
                )));
            }
            if let Some(err) = child.stderr.take() {
                let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
                stderr_rx = Some(rx);
                readers.push(tokio::spawn(read_pipe(
                    err,
                    tx,
                    exited_rx.clone(),
                    abandoned_tx.clone(),
                )));
            }
            if let Some(mut input) = child.stdin.take() {
                let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
                stdin_tx = Some(tx);
                tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if input.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    // Dropping `input` closes the pipe: the process reads EOF.
                });
            }
        }
    }

    let (mut sock_r, mut sock_w) = sock.into_split();
    let control_master = master.clone();
    let mut done = exited_rx.clone();
    tokio::spawn(async move {
        let mut open = true;
        let mut watch_abandoned = true;
        loop {
            let msg = tokio::select! {
                m = control_rx.recv(), if open => m,
                r = abandoned_rx.wait_for(|a| *a), if watch_abandoned => match r {
                    Ok(_) => Some(ExecControlMsg::Signal(Signal::KILL)),
                    // Every reader finished normally.
                    Err(_) => {
                        watch_abandoned = false;
                        continue;
                    }
                },
                _ = done.wait_for(|e| *e) => break,
            };
            match msg {
                None => open = false,
                Some(ExecControlMsg::Resize(size)) => {
                    if let Some(m) = &control_master {
                        let _ = resize(m.get_ref(), size);
                    }
                }
                Some(ExecControlMsg::Signal(sig)) => {
                    let cmd = ExecCommand::Signal {
                        signal: sig.as_raw(),
                    };
                    if proto::write_frame_async(&mut sock_w, &cmd, b"")
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if sig == Signal::KILL && *abandoned_rx.borrow() {
                        // Nobody reads the output any more; the kill is sent.
                        let _ = done.wait_for(|e| *e).await;
                        break;
                    }
                }
            }
        }
        // The helper kills the command if the socket closes early, so the
        // write half lives until the process has exited.
        drop(sock_w);
    });

    tokio::spawn(async move {
        let mut reported = None;
        while let Ok(Some((ev, _))) = proto::read_frame_async::<ExecEvent>(&mut sock_r).await {
            if let ExecEvent::Exited { status } = ev {
                reported = Some(status);
            }
        }
        let waited = child.wait().await;
        let status = reported.or_else(|| {
            waited.ok().map(|w| {
                use std::os::unix::process::ExitStatusExt;
                match w.signal() {
                    Some(s) => ExitStatus::signaled(s),
                    None => ExitStatus::exited(w.code().unwrap_or(125)),
                }
            })
        });
        let _ = exited_tx.send(true);
        for r in readers {
            let _ = r.await;
        }
        let _ = exit_tx.send(
            status
                .ok_or_else(|| RuntimeError::Helper("the exec helper's status is unknown".into())),
        );
    });

    Ok(ExecSession::new(
        stdin_tx,
        stdout_rx,
        stderr_rx,
        control,
        ExitFuture::new(exit_rx),
    ))
}

/// Waits until the process has exited and its output has been idle for
/// [`DRAIN_IDLE`].
async fn exited_and_idle(exited: &mut watch::Receiver<bool>) {
    if exited.wait_for(|e| *e).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(DRAIN_IDLE).await;
}

async fn read_pipe(
    mut r: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Bytes>,
    mut exited: watch::Receiver<bool>,
    abandoned: std::sync::Arc<watch::Sender<bool>>,
) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = tokio::select! {
            biased;
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = exited_and_idle(&mut exited) => return,
        };
        if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
            abandoned.send_replace(true);
            return;
        }
    }
}

async fn read_pty(
    m: std::sync::Arc<AsyncFd<OwnedFd>>,
    tx: mpsc::Sender<Bytes>,
    mut exited: watch::Receiver<bool>,
    abandoned: std::sync::Arc<watch::Sender<bool>>,
) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = tokio::select! {
            biased;
            r = m.async_io(tokio::io::Interest::READABLE, |fd| {
                rustix::io::read(fd, &mut buf).map_err(std::io::Error::from)
            }) => match r {
                // EIO: every slave descriptor is closed.
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = exited_and_idle(&mut exited) => return,
        };
        if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
            abandoned.send_replace(true);
            return;
        }
    }
}

async fn write_pty(m: std::sync::Arc<AsyncFd<OwnedFd>>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(b) = rx.recv().await {
        if write_all_pty(&m, &b).await.is_err() {
            return;
        }
    }
    let _ = write_all_pty(&m, &[VEOF]).await;
}

async fn write_all_pty(m: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = m
            .async_io(tokio::io::Interest::WRITABLE, |fd| {
                rustix::io::write(fd, data).map_err(std::io::Error::from)
            })
            .await?;
        data = &data[n..];
    }
    Ok(())
}
