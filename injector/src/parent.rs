//! `--parent`: instead of becoming the command, the wrapper starts it and
//! stays as its parent, as PID 1 of a container must: it reaps every zombie
//! (it is a child subreaper, so orphans of the command come to it even when
//! it is not PID 1), forwards signals to the command, and exits with the
//! command's exit code (128 + N if signal N killed it). Killed by
//! `SIGKILL`, it takes the command with it (`PR_SET_PDEATHSIG`,
//! `src/sys.rs`). In a terminal the command gets Ctrl-C's `SIGINT` twice
//! (from the terminal and forwarded): docs/injector.md.

use std::os::fd::OwnedFd;
use std::process::Command;

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::signal::unix::{SignalKind, signal};

use crate::Error;

/// The signals forwarded to the command: every named signal a process can
/// catch, except `SIGCHLD` (the wrapper's own) and the ones the kernel
/// raises for a fault of the receiving process (`SIGILL`, `SIGTRAP`,
/// `SIGABRT`, `SIGBUS`, `SIGFPE`, `SIGSEGV`, `SIGSYS`). `SIGKILL` and
/// `SIGSTOP` cannot be caught; real-time signals are not forwarded.
pub const FORWARDED: &[Signal] = &[
    Signal::HUP,
    Signal::INT,
    Signal::QUIT,
    Signal::USR1,
    Signal::USR2,
    Signal::PIPE,
    Signal::ALARM,
    Signal::TERM,
    Signal::CONT,
    Signal::TSTP,
    Signal::TTIN,
    Signal::TTOU,
    Signal::URG,
    Signal::XCPU,
    Signal::XFSZ,
    Signal::VTALARM,
    Signal::PROF,
    Signal::WINCH,
    Signal::IO,
    Signal::POWER,
];

/// Starts `cmd` and supervises it until it exits; returns the exit code the
/// wrapper should exit with. `inherited` (the secrets memfd in fd mode) is
/// closed in the wrapper once the command has it.
pub(crate) fn supervise(
    runtime: tokio::runtime::Runtime,
    mut cmd: Command,
    inherited: Option<OwnedFd>,
    launch: &crate::Launch,
) -> Result<u8, Error> {
    // Orphaned descendants of the command become our children, so that we
    // reap them as PID 1 would (as PID 1 we already are their reaper).
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    runtime.block_on(async move {
        let internal = |e: std::io::Error| Error::Internal(format!("signal handler: {e}"));
        // Registered before the command starts: an early exit or signal is
        // not missed.
        let mut exited = signal(SignalKind::child()).map_err(internal)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Signal>();
        for sig in FORWARDED {
            let mut stream = signal(SignalKind::from_raw(sig.as_raw())).map_err(internal)?;
            let (tx, sig) = (tx.clone(), *sig);
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // If this process is killed by SIGKILL (it cannot forward that one),
        // the command is too (the spawn happens on the main thread).
        crate::sys::kill_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| launch.error(&e))?;
        drop(inherited);
        let pid = Pid::from_child(&child);
        // The `Child` is not waited on through std: the loop below reaps
        // every child with waitpid(-1), this one included.
        drop(child);
        drop(cmd);
        loop {
            if let Some(code) = reap(pid) {
                return Ok(code);
            }
            tokio::select! {
                _ = exited.recv() => {}
                Some(sig) = rx.recv() => {
                    // The command may have exited already; the next reap says so.
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
    })
}

/// Reaps every exited child; returns the command's exit code once it is
/// among them.
fn reap(command: Pid) -> Option<u8> {
    let mut code = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == command {
                    code = Some(match (status.exit_status(), status.terminating_signal()) {
                        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(u8::MAX),
                        (None, Some(sig)) => u8::try_from(128 + (sig & 0x7f)).unwrap_or(u8::MAX),
                        (None, None) => crate::error::code::INTERNAL,
                    });
                }
            }
            Ok(None) => return code,
            Err(rustix::io::Errno::INTR) => {}
            // ECHILD: nothing left to reap.
            Err(_) => return code,
        }
    }
}
