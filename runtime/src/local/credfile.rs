//! The workload credential file: where it lives and how it is replaced.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use crate::spec::RunAs;

/// Where a pod's workload finds its credential (a private tmpfs).
pub(crate) const CREDENTIAL_DIR: &str = "/run/warden";
/// The credential file's name in its directory.
pub(crate) const CREDENTIAL_FILE: &str = "credential";

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Refuses a directory that is not in memory: credentials never touch disk.
pub(crate) fn check_tmpfs(dir: &OwnedFd) -> Result<(), String> {
    let st = rustix::fs::fstatfs(dir).map_err(|e| format!("statfs: {e}"))?;
    // f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64;
    if t == TMPFS_MAGIC || t == RAMFS_MAGIC {
        Ok(())
    } else {
        Err("not a tmpfs: credentials are never written to disk".into())
    }
}

/// Opens a credential directory without following a final symlink.
pub(crate) fn open_dir(path: &std::path::Path) -> Result<OwnedFd, String> {
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("credential directory: {e}"))?;
    check_tmpfs(&dir)?;
    Ok(dir)
}

/// Atomically replaces `CREDENTIAL_FILE` in `dir` with `bytes`: a new file
/// created exclusively under a random name (never through a symlink the
/// workload may have planted), owned by the pod's user, mode 0400, renamed
/// over the old one.
pub(crate) fn replace(dir: &OwnedFd, bytes: &[u8], owner: Option<RunAs>) -> Result<(), String> {
    let tmp = format!(".{CREDENTIAL_FILE}.{:016x}", crate::local::random_u64());
    let file = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o400),
    )
    .map_err(|e| format!("credential file: {e}"))?;
    let result = (|| {
        if let Some(r) = owner
            && rustix::process::geteuid().is_root()
        {
            rustix::fs::fchown(
                &file,
                Some(rustix::process::Uid::from_raw(r.uid)),
                Some(rustix::process::Gid::from_raw(r.gid)),
            )
            .map_err(|e| format!("chown credential: {e}"))?;
        }
        let mut off = 0;
        while off < bytes.len() {
            off += rustix::io::write(&file, &bytes[off..])
                .map_err(|e| format!("write credential: {e}"))?;
        }
        drop(file);
        rustix::fs::renameat(dir, tmp.as_str(), dir, CREDENTIAL_FILE)
            .map_err(|e| format!("rename credential: {e}"))
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    result
}
