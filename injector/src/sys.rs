//! The only module of this crate allowed to use `unsafe`: taking ownership
//! of a file descriptor this process inherited by number
//! (`--credential-fd N`), which std and rustix can only do unsafely (I/O
//! safety: the caller vouches that nothing else owns the number); and, for
//! `--parent`, code run in the child between `fork` and `exec`
//! ([`kill_with_parent`]), which std only takes unsafely.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the tidy test in
//! `lib.rs` fails if `unsafe` appears in any other file.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::Signal;

/// Takes ownership of `fd`, inherited from whoever started this process, so
/// that it is closed when the result drops (the command never inherits it).
///
/// Call it before anything else in the process opens a file or a socket:
/// the number must be one this process was started with, not one it has
/// opened since (which some other value would own).
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file descriptors 0, 1 and 2 are the standard streams",
        ));
    }
    // The borrow lives only for one `fcntl(F_GETFD)` call, which checks
    // whether `fd` is open and changes nothing; if it is not open, no
    // object uses the number and the call fails with EBADF.
    // SAFETY: nothing is read, written or closed through the borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed)?;
    // `fd` is open (checked just above) and was inherited across exec: the
    // caller takes it before this process opens any file or socket of its
    // own (the first thing `run` does after parsing the command line).
    // SAFETY: so no `File`, `OwnedFd` or runtime object owns this number;
    // the returned `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the process `cmd` starts receive `SIGKILL` when this process's
/// thread that starts it dies (`PR_SET_PDEATHSIG`), so that a wrapper
/// killed by `SIGKILL`, which it can neither catch nor forward, leaves no
/// command running without its parent. The signal is tied to the thread
/// calling `spawn`: call it from the main thread, which lives as long as the
/// process (`--parent` spawns from the main thread's single-threaded
/// runtime).
pub(crate) fn kill_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // The closure runs in the forked child before `exec`, where only
    // async-signal-safe operations are allowed (the child of a process with
    // other threads may find any lock held, the allocator's included). It
    // makes two raw system calls through rustix (`prctl(PR_SET_PDEATHSIG)`,
    // `getppid`), compares two `Copy` values, and on failure builds an
    // `io::Error` from an OS error number; it captures only `parent`.
    // SAFETY: so it takes no lock, allocates nothing and shares no state.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The wrapper died between fork and the prctl: no death signal
            // will come, so do not start the command at all.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
}
