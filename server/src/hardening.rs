//! Process hardening at start: no core dumps (a core file would hold key
//! material), and not ptrace-attachable by other processes of the same user
//! (`PR_SET_DUMPABLE=0`). Both through `rustix`'s safe wrappers.
//!
//! Not done: mlock of key pages. Key material lives in allocations owned by
//! `ring` and our `Zeroizing` buffers; locking them individually needs
//! `unsafe` address arithmetic we do not take on yet, and `mlockall` would
//! make allocations fail under a low RLIMIT_MEMLOCK. With core dumps off and
//! swap encrypted or disabled (see SECURITY.md), the remaining exposure is
//! swap on hosts that have it.

use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Applies what the OS allows; logs what it refuses.
pub fn harden_process() {
    // Files the server creates are private to its user (the data
    // directory's own checks refuse anything shared).
    warden_store::files::restrict_umask();
    match setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        Ok(()) => tracing::debug!("core dumps disabled"),
        Err(e) => tracing::warn!(error = %e, "could not disable core dumps"),
    }
    match set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        Ok(()) => tracing::debug!("process marked not dumpable"),
        Err(e) => tracing::warn!(error = %e, "could not mark the process not dumpable"),
    }
}
