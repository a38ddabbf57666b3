//! The only module of this crate allowed to use `unsafe`: the handful of
//! system calls with no safe wrapper in rustix or nix, and the `pre_exec`
//! hooks of `std::process::Command`.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the tidy test in
//! `lib.rs` fails if `unsafe` appears in any other file.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Namespaces a new pod's init process is created in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewNamespaces {
    /// PID, mount, UTS and IPC namespaces.
    pub isolate: bool,
}

/// A program to execute in a freshly cloned child, prepared before the
/// clone so that the child allocates nothing.
pub(crate) struct ExecPlan {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl ExecPlan {
    pub(crate) fn new(
        program: &std::path::Path,
        argv: &[&std::ffi::OsStr],
        envp: &[String],
    ) -> io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let c = |b: &[u8]| {
            CString::new(b)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
        };
        Ok(Self {
            program: c(program.as_os_str().as_bytes())?,
            argv: argv
                .iter()
                .map(|a| c(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            envp: envp
                .iter()
                .map(|e| c(e.as_bytes()))
                .collect::<io::Result<_>>()?,
        })
    }
}

/// `struct clone_args` up to `tls` (CLONE_ARGS_SIZE_VER0, 64 bytes); the
/// kernel ABI is the same on every architecture.
#[repr(C, align(8))]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

const CLONE_PIDFD: u64 = 0x1000;

/// Clones a child (in new PID, mount, UTS and IPC namespaces when asked),
/// with `fds[i].0` as its file descriptor `fds[i].1` (targets 0 to 3), and
/// executes `plan` in it. Returns the child's PID (in our namespace) and a
/// pidfd for it, obtained atomically with the clone.
///
/// The caller must be single-threaded (the pod shim is): the child runs
/// only `dup2`, `execve` and `_exit` before the new program replaces it, so
/// it is also safe after a fork of a threaded process, but the namespaces
/// are created for this one child only.
pub(crate) fn clone_exec(
    plan: &ExecPlan,
    ns: NewNamespaces,
    fds: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<(i32, OwnedFd)> {
    // Copy every source above the targets so no dup2 can clobber a source.
    let sources: Vec<(OwnedFd, RawFd)> = fds
        .iter()
        .map(|(fd, target)| Ok((rustix::io::fcntl_dupfd_cloexec(fd, 16)?, *target)))
        .collect::<io::Result<_>>()?;
    let pairs: Vec<(RawFd, RawFd)> = sources.iter().map(|(s, t)| (s.as_raw_fd(), *t)).collect();
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut flags = CLONE_PIDFD;
    if ns.isolate {
        flags |= (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
            as u64;
    }
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: clone3 without CLONE_VM gives the child a copy-on-write copy of
    // our memory, like fork. `args` is a valid VER0 clone_args that lives
    // across the call, and `pidfd` is a valid place for the kernel to write.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        // In the child. Only async-signal-safe calls on memory prepared
        // before the clone: no allocation, no locks, no unwinding.
        // SAFETY: the raw fds in `pairs` are open (owned by `sources`, which
        // the child's copy of memory still holds); `plan`'s C strings and the
        // null-terminated pointer arrays are valid; `_exit` never returns.
        unsafe {
            for (src, dst) in &pairs {
                if libc::dup2(*src, *dst) < 0 {
                    libc::_exit(126);
                }
            }
            libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    drop(sources);
    // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd that nothing
    // else owns; we take ownership exactly once.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The return value is the child's PID, which fits an i32.
    let pid = i32::try_from(ret).map_err(|_| io::Error::other("clone3 returned a bad pid"))?;
    Ok((pid, pidfd))
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount at `path` and every mount below it read-only
/// (`mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`, Linux 5.12+).
pub(crate) fn make_tree_readonly(path: &CStr) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a valid C string and `attr` a valid, initialized
    // mount_attr of the size passed; the kernel only reads both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What the child does between fork and exec, after std has switched
/// user and group (so capabilities set by root are gone for non-root pods,
/// and cleared here for root ones).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hardening {
    /// Start a new session (so the process can take a controlling TTY).
    pub setsid: bool,
    /// Make stdin (a terminal) the controlling TTY.
    pub controlling_tty: bool,
}

/// Installs the hardening hook on `cmd`: an empty signal mask and default
/// dispositions, optional `setsid` + `TIOCSCTTY`, then `no_new_privs`, no ambient capabilities, and empty effective,
/// permitted and inheritable sets. The bounding set must already be empty
/// (see `drop_bounding_set`): it is inherited and needs a capability to
/// change, which a non-root child no longer has here.
pub(crate) fn harden(cmd: &mut std::process::Command, h: Hardening) {
    use std::os::unix::process::CommandExt;
    let hook = move || -> io::Result<()> {
        // The parent (a pod's init, the exec helper) takes its signals
        // through a signalfd with all of them blocked; the child starts
        // clean: nothing blocked, nothing ignored.
        nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        )?;
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // SAFETY: installing SIG_DFL runs no code of ours; errors
                // (for the libc-reserved real-time signals) are ignored.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
        }
        if h.setsid {
            rustix::process::setsid()?;
        }
        if h.controlling_tty {
            // SAFETY: fd 0 is open in the child (std set up its stdio before
            // running this hook) and stays open for the borrow.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            rustix::process::ioctl_tiocsctty(stdin)?;
        }
        rustix::thread::set_no_new_privs(true)?;
        // Kernels without ambient capabilities (before 4.3) have none to clear.
        let _ = rustix::thread::clear_ambient_capability_set();
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
            },
        )?;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec. It makes only
    // system calls (sigprocmask, signal, setsid, ioctl, prctl, capset) and
    // allocates nothing, so it is sound even if the parent is multithreaded.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Gives the child of `cmd` `fd` as its file descriptor 3. `fd` moves into
/// the command and is closed when the command is dropped.
pub(crate) fn pass_fd3(cmd: &mut tokio::process::Command, fd: OwnedFd) {
    let hook = move || -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if raw == 3 {
            // dup2 onto itself would keep close-on-exec; clear it instead.
            rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::empty())?;
        } else {
            // SAFETY: `raw` is open (owned by the hook) and 3 is a valid
            // target; dup2 is async-signal-safe.
            if unsafe { libc::dup2(raw, 3) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls dup2/fcntl in the forked child, which is
    // async-signal-safe even when the parent (the agent) is multithreaded.
    unsafe {
        cmd.pre_exec(hook);
    }
}

static FD3_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of file descriptor 3, which a helper process inherits
/// from its parent (`pass_fd3` or `clone_exec`), and marks it close-on-exec
/// so the workload does not inherit it. Fails if fd 3 is not open or was
/// already taken.
pub(crate) fn take_fd3() -> io::Result<OwnedFd> {
    if FD3_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("fd 3 was already taken"));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(3, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd 3 is open (checked above), was inherited across exec, and
    // nothing else in this process owns it (the flag above makes this the
    // only place that takes it).
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

/// Empties this process's capability bounding set, so nothing it executes
/// can regain a capability (its own effective set is unchanged). Without
/// CAP_SETPCAP (a runtime that is not root) there is nothing to drop that
/// matters: the process has no capabilities and `no_new_privs` stops exec
/// from granting any.
pub(crate) fn drop_bounding_set() -> io::Result<()> {
    let mine = rustix::thread::capabilities(None)?;
    if !mine.effective.contains(CapabilitySet::SETPCAP) {
        return Ok(());
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63);
    for cap in 0..=last {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1u64 << cap,
        )) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Registers an owned descriptor with tokio's reactor.
pub(crate) fn async_fd(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that it alone closes,
    // and `as_raw_fd` returns that same descriptor for its whole life; the
    // `AsyncFd` owns it from here on.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(io::Error::from)
}
