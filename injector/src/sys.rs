//! The only module of this crate allowed to use `unsafe`: taking ownership
//! of a file descriptor this process inherited by number
//! (`--credential-fd N`), which std and rustix can only do unsafely (I/O
//! safety: the caller vouches that nothing else owns the number).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the tidy test in
//! `lib.rs` fails if `unsafe` appears in any other file.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
    // SAFETY: the borrow lives only for this one `fcntl(F_GETFD)` call,
    // which checks whether `fd` is open (EBADF otherwise) and changes
    // nothing. If it is not open, no object uses the number and the call
    // simply fails.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed)?;
    // SAFETY: `fd` is open (checked just above) and was inherited across
    // exec: the caller takes it before this process opens any file or
    // socket of its own (the first thing `run` does after parsing the
    // command line), so no `File`, `OwnedFd` or runtime object owns this
    // number, and the returned `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
