//! A pod's PID 1 (`helper init`): sets up the sandbox inside the new
//! namespaces, starts the workload when the shim says so, forwards signals
//! to it, reaps every zombie, and exits with the workload's status.
//!
//! It runs single-threaded and talks to its shim on fd 3. It dies with the
//! shim (parent-death signal), so a pod never outlives its supervisor.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{CWD, Mode};
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, mount, mount_bind,
    mount_change, mount_remount, move_mount, open_tree,
};
use rustix::process::{Pid, WaitOptions};

use crate::api::ExitStatus;
use crate::local::credfile::{self, CREDENTIAL_DIR};
use crate::local::proto::INJECTOR_IN_POD;
use crate::local::proto::{InitConfig, InitEvent, read_frame, write_frame};
use crate::sys;

/// Read-only in every pod (Docker's list).
const PROC_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Hidden in every pod.
const PROC_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Device nodes a pod gets in its private `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn send(sock: &mut UnixStream, ev: &InitEvent) {
    // If the shim is gone the parent-death signal ends us anyway.
    let _ = write_frame(sock, ev, b"");
}

fn fail(sock: &mut UnixStream, message: String) -> ! {
    send(sock, &InitEvent::Failed { message });
    std::process::exit(125)
}

/// The init's entry point.
pub(crate) fn main() -> ! {
    let Ok(fd) = sys::take_fd3() else {
        std::process::exit(125)
    };
    let mut sock = UnixStream::from(fd);
    // Die with the shim. If it is already gone, the config read below fails.
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .is_err()
    {
        fail(&mut sock, "cannot set the parent-death signal".into());
    }
    // Every signal is taken through a signalfd: as PID 1 of a namespace the
    // kernel would drop unhandled ones, and the workload gets them instead.
    let all = SigSet::all();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None) {
        fail(&mut sock, format!("sigprocmask: {e}"));
    }
    let sfd = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => fail(&mut sock, format!("signalfd: {e}")),
    };
    let (cfg, credential): (InitConfig, _) = match read_frame(&mut sock) {
        Ok(Some(c)) => c,
        _ => std::process::exit(125),
    };
    if cfg.isolate {
        if let Err(e) = setup_sandbox(&cfg) {
            fail(&mut sock, format!("pod sandbox setup: {e}"));
        }
    } else {
        // Without a PID namespace, orphans come to us rather than to the
        // host's init, so they are still reaped and killed with the pod.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    // Nothing in the pod may ptrace or read the init's memory.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    if let Err(e) = sys::drop_bounding_set() {
        fail(
            &mut sock,
            format!("dropping the capability bounding set: {e}"),
        );
    }
    // The credential goes in before the workload exists.
    let dir = match &cfg.credential_dir {
        Some(d) => credfile::open_dir(d),
        None => credfile::open_dir(Path::new(CREDENTIAL_DIR)),
    };
    if let Err(e) = dir.and_then(|d| credfile::replace(&d, &credential, cfg.run_as)) {
        fail(&mut sock, format!("writing the credential: {e}"));
    }
    drop(credential);

    let Some((program, args)) = cfg.argv.split_first() else {
        fail(&mut sock, "empty command".into());
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(cfg.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit());
    if let Some(r) = cfg.run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    sys::harden(
        &mut cmd,
        sys::Hardening {
            setsid: true,
            controlling_tty: false,
        },
    );
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => fail(&mut sock, format!("cannot start {program:?}: {e}")),
    };
    let workload = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // We reap with waitpid(-1); the handle is not needed.
    drop(child);
    send(&mut sock, &InitEvent::Started { pid: workload });

    let status = supervise(&sfd, &mut sock, workload);
    if !cfg.isolate {
        // No namespace teardown will kill what the workload left behind:
        // kill its process group (it is a session leader) and reap.
        if let Some(pgid) = Pid::from_raw(workload) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        while let Ok(Some(_)) = rustix::process::wait(WaitOptions::empty()) {}
    }
    send(&mut sock, &InitEvent::Exited { status });
    let _ = sock.flush();
    std::process::exit(status.code.clamp(0, 255))
}

/// Forwards signals to the workload and reaps children until the workload
/// exits; returns its status.
fn supervise(sfd: &SignalFd, sock: &mut UnixStream, workload: i32) -> ExitStatus {
    let mut shim_open = true;
    loop {
        let mut fds = vec![PollFd::new(sfd, PollFlags::IN)];
        if shim_open {
            fds.push(PollFd::new(sock, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let shim_ready = shim_open && !fds[1].revents().is_empty();
        if shim_ready {
            // The shim sends nothing after Go; readable means it closed.
            let mut b = [0u8; 64];
            match std::io::Read::read(sock, &mut b) {
                Ok(0) | Err(_) => shim_open = false,
                Ok(_) => {}
            }
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
            if signo == libc::SIGCHLD {
                if let Some(status) = reap(workload) {
                    return status;
                }
            } else if let (Some(pid), Some(sig)) = (
                Pid::from_raw(workload),
                rustix::process::Signal::from_named_raw(signo),
            ) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    }
}

/// Reaps every exited child; the workload's status if it was among them.
fn reap(workload: i32) -> Option<ExitStatus> {
    let mut result = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, st))) => {
                if pid.as_raw_nonzero().get() == workload {
                    result = Some(if let Some(sig) = st.terminating_signal() {
                        ExitStatus::signaled(sig)
                    } else {
                        ExitStatus::exited(st.exit_status().unwrap_or(0))
                    });
                }
            }
            Ok(None) | Err(_) => return result,
        }
    }
}

fn cstr(s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::other("NUL in mount option"))
}

fn ctx<T>(r: rustix::io::Result<T>, what: &str, path: &str) -> std::io::Result<T> {
    r.map_err(|e| std::io::Error::other(format!("{what} {path}: {e}")))
}

fn mount_tmpfs(target: &str, flags: MountFlags, options: &str) -> std::io::Result<()> {
    let data = cstr(options)?;
    ctx(
        mount("tmpfs", target, "tmpfs", flags, Some(data.as_c_str())),
        "mount tmpfs on",
        target,
    )
}

/// Hides `path`: an empty read-only tmpfs over a directory, `/dev/null`
/// over a file. Paths that do not exist are skipped.
fn mask(path: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let p = path.to_string_lossy();
    if meta.is_dir() {
        mount_tmpfs(
            &p,
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            "size=4k,nr_inodes=1,mode=0555",
        )
    } else if meta.file_type().is_symlink() {
        // A symlink cannot be a mount point; its target is masked if listed.
        Ok(())
    } else {
        ctx(mount_bind("/dev/null", path), "mask", &p)?;
        ctx(
            mount_remount(
                path,
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC,
                "",
            ),
            "mask",
            &p,
        )
    }
}

fn readonly_bind(path: &str) -> std::io::Result<()> {
    if !Path::new(path).exists() {
        return Ok(());
    }
    ctx(mount_bind(path, path), "bind", path)?;
    ctx(
        mount_remount(
            path,
            MountFlags::BIND
                | MountFlags::RDONLY
                | MountFlags::NOSUID
                | MountFlags::NODEV
                | MountFlags::NOEXEC,
            "",
        ),
        "read-only",
        path,
    )
}

/// Binds the host's `warden-injector` at [`INJECTOR_IN_POD`], read-only and
/// executable (the tmpfs under it is not), so the pod's user runs it
/// wherever the host keeps it.
fn bind_injector(host: &Path) -> std::io::Result<()> {
    let target = Path::new(INJECTOR_IN_POD);
    std::fs::File::create(target)?;
    ctx(mount_bind(host, target), "bind", INJECTOR_IN_POD)?;
    ctx(
        mount_remount(
            target,
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            "",
        ),
        "read-only",
        INJECTOR_IN_POD,
    )
}

/// Builds the pod's view of the machine, in its own mount namespace: the
/// host's tree read-only with the configured paths masked, a new `/proc`,
/// a private `/dev`, `/tmp`, `/dev/shm` and `/run/warden`, and the hostname.
fn setup_sandbox(cfg: &InitConfig) -> std::io::Result<()> {
    // Nothing mounted here propagates back to the host.
    ctx(
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        ),
        "make private",
        "/",
    )?;
    for p in &cfg.masked_paths {
        mask(p)?;
    }
    // Detached copies of the host's device nodes, attached below once the
    // private /dev hides the host's.
    let mut devices = Vec::new();
    for d in DEVICES {
        let path = format!("/dev/{d}");
        if let Ok(fd) = open_tree(
            CWD,
            path.as_str(),
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ) {
            devices.push((*d, fd));
        }
    }
    // The whole host tree becomes read-only in the pod.
    sys::make_tree_readonly(c"/")
        .map_err(|e| std::io::Error::other(format!("read-only /: {e}")))?;

    ctx(
        mount(
            "proc",
            "/proc",
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        ),
        "mount",
        "/proc",
    )?;
    for p in PROC_READONLY {
        readonly_bind(p)?;
    }
    for p in PROC_MASKED {
        mask(Path::new(p))?;
    }

    mount_tmpfs(
        "/dev",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "mode=0755,size=64k",
    )?;
    for (name, fd) in &devices {
        let target = format!("/dev/{name}");
        std::fs::File::create(&target)?;
        ctx(
            move_mount(
                fd.as_fd(),
                "",
                CWD,
                target.as_str(),
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            ),
            "attach",
            &target,
        )?;
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, link)?;
    }
    for dir in ["/dev/pts", "/dev/shm"] {
        rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755))
            .map_err(|e| std::io::Error::other(format!("mkdir {dir}: {e}")))?;
    }
    let devpts = cstr("newinstance,ptmxmode=0666,mode=0620")?;
    ctx(
        mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(devpts.as_c_str()),
        ),
        "mount",
        "/dev/pts",
    )?;
    mount_tmpfs(
        "/dev/shm",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        &format!("mode=1777,size={}", cfg.tmp_bytes),
    )?;
    ctx(
        mount_remount(
            "/dev",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC,
            "",
        ),
        "read-only",
        "/dev",
    )?;

    mount_tmpfs(
        "/tmp",
        MountFlags::NOSUID | MountFlags::NODEV,
        &format!("mode=1777,size={}", cfg.tmp_bytes),
    )?;
    mount_tmpfs(
        CREDENTIAL_DIR,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "mode=0755,size=1m",
    )?;
    if let Some(host) = &cfg.injector {
        bind_injector(host)?;
    }
    rustix::system::sethostname(cfg.hostname.as_bytes())
        .map_err(|e| std::io::Error::other(format!("sethostname: {e}")))?;
    std::env::set_current_dir("/")?;
    Ok(())
}
