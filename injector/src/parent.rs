//! `--parent`: instead of becoming the command, the wrapper starts it and
//! stays as its parent, as PID 1 of a container must: it reaps every zombie
//! (it is a child subreaper, so orphans of the command come to it even when
//! it is not PID 1), forwards signals to the command, and exits with the
//! command's exit code (128 + N if signal N killed it). Killed by
//! `SIGKILL`, it takes the command with it (`PR_SET_PDEATHSIG`,
//! `src/sys.rs`). In a terminal the command gets Ctrl-C's `SIGINT` twice
//! (from the terminal and forwarded): docs/injector.md.

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::signal::unix::{SignalKind, signal};
use warden_api::{WatchReport, WatchUpdate};

use crate::cli::OnChange;
use crate::secrets::Secrets;
use crate::watch::{Versions, Watcher, say};
use crate::{Error, Launcher, Ready};

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

/// What `--watch` adds to the parent: the watch, how to start the command
/// again, what a change does, and the versions the command has now.
pub(crate) struct Rotation<'a> {
    pub(crate) watcher: Watcher,
    pub(crate) launcher: Launcher<'a>,
    pub(crate) on_change: OnChange,
    pub(crate) versions: Versions,
}

/// A restart under way: the old command was sent `SIGTERM`; once it is
/// reaped the next one starts (at `kill_at`, it is sent `SIGKILL`).
struct Restart {
    next: Ready,
    generation: u64,
    kill_at: tokio::time::Instant,
}

/// Starts the command and supervises it until it exits; returns the exit
/// code the wrapper should exit with. With `rotation`, applies each change
/// of the secrets the watch reports, as `--on-change` says.
pub(crate) fn supervise(
    runtime: tokio::runtime::Runtime,
    first: Ready,
    mut rotation: Option<Rotation<'_>>,
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
        let mut pid = spawn(first)?;
        let mut restart: Option<Restart> = None;
        // Set once the wrapper itself is asked to stop: no restart after.
        let mut stopping = false;
        loop {
            if let Some(code) = reap(pid) {
                match restart.take() {
                    Some(r) if !stopping => {
                        pid = spawn(r.next)?;
                        if let Some(rot) = rotation.as_mut() {
                            rot.watcher
                                .report(WatchReport::Applied {
                                    generation: r.generation,
                                })
                                .await;
                        }
                        continue;
                    }
                    _ => {
                        if let Some(rot) = rotation.as_mut() {
                            rot.watcher.close().await;
                        }
                        return Ok(code);
                    }
                }
            }
            let kill_at = restart.as_ref().map(|r| r.kill_at);
            tokio::select! {
                _ = exited.recv() => {}
                Some(sig) = rx.recv() => {
                    stopping |= matches!(sig, Signal::TERM | Signal::INT | Signal::QUIT);
                    // The command may have exited already; the next reap says so.
                    let _ = rustix::process::kill_process(pid, sig);
                }
                () = sleep_until(kill_at) => {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                    if let Some(r) = restart.as_mut() {
                        // Once: the next reap sees it gone.
                        r.kill_at += std::time::Duration::from_secs(3600);
                    }
                }
                update = next_update(rotation.as_mut()), if restart.is_none() => {
                    if let Some(rot) = rotation.as_mut() {
                        restart = rot.apply(update, pid).await;
                    }
                }
            }
        }
    })
}

impl Rotation<'_> {
    /// Applies an update to the command `pid` runs; returns the restart it
    /// begins, if it begins one. Reports the update applied or failed
    /// (a restart's once the new command started).
    async fn apply(&mut self, update: WatchUpdate, pid: Pid) -> Option<Restart> {
        let generation = update.generation;
        if update.resolved.versions == self.versions {
            // Nothing new (the first update of each watch): the command
            // holds these already.
            self.watcher
                .report(WatchReport::Applied { generation })
                .await;
            return None;
        }
        if self.on_change == OnChange::Keep {
            // Not applied and not reported: the pod holds what it started
            // with until the runtime replaces it.
            say(&format!(
                "watch: update {generation} left for the runtime to roll out (--on-change none)"
            ));
            return None;
        }
        let versions = update.resolved.versions.clone();
        // Checked against the service this wrapper was started for, not the
        // one the update names (review 13, F8).
        let service = self.launcher.service();
        let prepared = Secrets::from_resolved(update.resolved, service).and_then(|secrets| {
            // Everything is checked before anything is rendered or stopped.
            let next = match self.on_change {
                OnChange::Restart { .. } => {
                    let next = self.launcher.command(&secrets)?;
                    crate::fits_exec(&next.command)?;
                    Some(next)
                }
                OnChange::Signal(_) | OnChange::Render | OnChange::Keep => None,
            };
            self.launcher.render(&secrets)?;
            Ok(next)
        });
        let next = match prepared {
            Ok(next) => next,
            Err(e) => {
                let error = e.to_string();
                say(&format!("watch: update {generation} not applied: {error}"));
                self.watcher
                    .report(WatchReport::Failed { generation, error })
                    .await;
                return None;
            }
        };
        self.versions = versions;
        match (self.on_change, next) {
            (OnChange::Restart { stop_timeout }, Some(next)) => {
                let _ = rustix::process::kill_process(pid, Signal::TERM);
                return Some(Restart {
                    next,
                    generation,
                    kill_at: tokio::time::Instant::now() + stop_timeout,
                });
            }
            (OnChange::Signal(sig), _) => {
                let _ = rustix::process::kill_process(pid, sig);
            }
            _ => {}
        }
        self.watcher
            .report(WatchReport::Applied { generation })
            .await;
        None
    }
}

/// The watch's next update; never, without a watch.
async fn next_update(rotation: Option<&mut Rotation<'_>>) -> WatchUpdate {
    match rotation {
        Some(r) => r.watcher.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts a command; the secrets memfd in fd mode is closed in the wrapper
/// once the command has it. If this process is killed by `SIGKILL` (it
/// cannot forward that one), the command is too.
fn spawn(ready: Ready) -> Result<Pid, Error> {
    let Ready {
        mut command,
        inherited,
        launch,
    } = ready;
    crate::sys::kill_with_parent(&mut command);
    let child = command.spawn().map_err(|e| launch.error(&e))?;
    drop(inherited);
    // The `Child` is not waited on through std: the supervising loop reaps
    // every child with waitpid(-1), this one included.
    Ok(Pid::from_child(&child))
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
