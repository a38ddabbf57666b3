//! The exec joiner (`helper exec`): joins a pod's cgroup and namespaces,
//! forks the command into the pod's PID namespace (with a controlling TTY
//! when asked), forwards the runtime's signals to it and reports how it
//! ended. Single-threaded, as `setns(CLONE_NEWNS)` requires.
//!
//! The command inherits the helper's stdin, stdout and stderr (pipes or the
//! terminal the runtime opened), so its output goes straight to the
//! runtime; the helper itself keeps none of them open.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, WaitOptions};
use rustix::thread::LinkNameSpaceType;

use crate::api::ExitStatus;
use crate::local::proto::{ExecCommand, ExecConfig, ExecEvent, read_frame, write_frame};
use crate::local::shim::proc_start_time;
use crate::sys;

fn send(sock: &mut UnixStream, ev: &ExecEvent) {
    let _ = write_frame(sock, ev, b"");
}

fn fail(sock: &mut UnixStream, message: String, setup: bool) -> ! {
    send(sock, &ExecEvent::Failed { message, setup });
    std::process::exit(if setup { 126 } else { 127 })
}

/// The exec helper's entry point.
pub(crate) fn main() -> ! {
    let Ok(fd) = sys::take_fd3() else {
        std::process::exit(126)
    };
    let mut sock = UnixStream::from(fd);
    // Signals reach the command through the runtime's control messages
    // only; the helper ignores its own (e.g. a terminal's SIGINT).
    let all = SigSet::all();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None) {
        fail(&mut sock, format!("sigprocmask: {e}"), true);
    }
    let mut chld = SigSet::empty();
    chld.add(nix::sys::signal::Signal::SIGCHLD);
    let sfd = match SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => fail(&mut sock, format!("signalfd: {e}"), true),
    };
    let cfg: ExecConfig = match read_frame(&mut sock) {
        Ok(Some((c, _))) => c,
        _ => std::process::exit(126),
    };
    if let Err(e) = join_pod(&cfg) {
        fail(&mut sock, e, true);
    }

    let Some((program, args)) = cfg.argv.split_first() else {
        fail(&mut sock, "empty command".into(), false);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(cfg.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/");
    if let Some(r) = cfg.run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    sys::harden(
        &mut cmd,
        sys::Hardening {
            setsid: true,
            controlling_tty: cfg.tty,
        },
    );
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => fail(&mut sock, format!("cannot execute {program:?}: {e}"), false),
    };
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    drop(child);
    // Only the command holds the stdio now, so end-of-file reaches the
    // runtime when the command (and whatever it left running) is done.
    if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    send(&mut sock, &ExecEvent::Started);
    let status = supervise(&sfd, &mut sock, pid);
    send(&mut sock, &ExecEvent::Exited { status });
    let _ = sock.flush();
    std::process::exit(status.code.clamp(0, 255))
}

/// Joins the pod's cgroup (while the host's `/sys` is still visible), then
/// its IPC, UTS, PID and mount namespaces, and empties the bounding set.
fn join_pod(cfg: &ExecConfig) -> Result<(), String> {
    for f in &cfg.cgroup_procs {
        std::fs::write(f, "0").map_err(|e| format!("joining cgroup {}: {e}", f.display()))?;
    }
    if let Some(target) = cfg.target {
        let open = |ns: &str| -> Result<OwnedFd, String> {
            rustix::fs::open(
                format!("/proc/{}/ns/{ns}", target.pid),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("the pod's init is gone ({ns}: {e})"))
        };
        let fds = [
            (open("ipc")?, LinkNameSpaceType::InterProcessCommunication),
            (open("uts")?, LinkNameSpaceType::HostNameAndNISDomainName),
            (open("pid")?, LinkNameSpaceType::ProcessID),
            (open("mnt")?, LinkNameSpaceType::Mount),
        ];
        // The descriptors are ours now; if the init still has the start
        // time we were given, they are its namespaces, not a recycled PID's.
        if proc_start_time(target.pid) != Some(target.start_time) {
            return Err("the pod's init is gone (pid reused)".into());
        }
        for (fd, kind) in &fds {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind))
                .map_err(|e| format!("setns {kind:?}: {e}"))?;
        }
        std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    }
    sys::drop_bounding_set().map_err(|e| format!("dropping the bounding set: {e}"))?;
    Ok(())
}

/// Relays signal requests until the command exits; returns its status. If
/// the runtime goes away, the command is killed.
fn supervise(sfd: &SignalFd, sock: &mut UnixStream, pid: i32) -> ExitStatus {
    let Some(child) = Pid::from_raw(pid) else {
        return ExitStatus::exited(127);
    };
    let mut runtime_open = true;
    loop {
        if let Ok(Some((_, st))) = rustix::process::waitpid(Some(child), WaitOptions::NOHANG) {
            return if let Some(sig) = st.terminating_signal() {
                ExitStatus::signaled(sig)
            } else {
                ExitStatus::exited(st.exit_status().unwrap_or(0))
            };
        }
        let mut fds = vec![PollFd::new(sfd, PollFlags::IN)];
        if runtime_open {
            fds.push(PollFd::new(sock, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        while let Ok(Some(_)) = sfd.read_signal() {}
        if runtime_open && !fds[1].revents().is_empty() {
            match read_frame::<ExecCommand>(sock) {
                Ok(Some((ExecCommand::Signal { signal }, _))) => {
                    // The child leads its own session and process group
                    // (setsid): a signal goes to the group, as a
                    // terminal's does, so `sh -c 'sleep 99'` ends whole.
                    if let Some(sig) = rustix::process::Signal::from_named_raw(signal) {
                        let _ = rustix::process::kill_process_group(child, sig);
                    }
                }
                _ => {
                    // The runtime (agent) is gone: nobody can see the
                    // output or the status any more.
                    runtime_open = false;
                    let _ =
                        rustix::process::kill_process_group(child, rustix::process::Signal::KILL);
                }
            }
        }
    }
}
