//! Who may touch the data directory: its owner only.
//!
//! The SQLite database holds password hashes, wrapped keys and the audit
//! log, and its lock file decides which process may open it (another local
//! user who can open `<db>.lock` can `flock` it and keep Warden from
//! starting). So the directory holding the database is created 0700 and
//! every file in it 0600, and Warden refuses to start on a directory, or a
//! database, WAL, shared-memory or lock file, that group or others can
//! read, write or enter, saying which `chmod` fixes it.
//!
//! SQLite creates `-wal` and `-shm` with the database file's permission
//! bits, so creating the database 0600 before SQLite opens it covers them;
//! their modes are also set explicitly once open. [`restrict_umask`] makes
//! the process's other files private too.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Permission bits group and others must not have.
const SHARED_BITS: u32 = 0o077;

/// The files next to a SQLite database at `db` that hold its data or its
/// lock: the database, `-wal`, `-shm` and `.lock`.
pub fn sqlite_files(db: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_owned(), with("-wal"), with("-shm"), with(".lock")]
}

/// The file path of a `sqlite:` URL, or `None` for an in-memory database.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

/// The directory holding `file` (`.` for a bare file name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Insecure(format!("{}: {e}", path.display()))
}

/// Sets the process's file-creation mask to 077, so whatever else it
/// creates (logs, temporary files) is private as well. Call once at the
/// start of a server process.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(SHARED_BITS));
}

/// Creates `dir` (and missing parents) 0700 if it does not exist; refuses
/// a directory that group or others may read, write or enter.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, e))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| io_error(dir, e))?
        .permissions()
        .mode();
    if mode & SHARED_BITS != 0 {
        return Err(StoreError::Insecure(format!(
            "the data directory {dir} is open to other users (mode {mode:04o}); \
             Warden keeps it private: run `chmod 700 {dir}` and start again",
            dir = dir.display(),
            mode = mode & 0o7777,
        )));
    }
    Ok(())
}

/// Refuses any of `files` that exists and that group or others may read or
/// write, naming all of them in one `chmod` command.
pub fn refuse_shared_files(files: &[PathBuf]) -> Result<(), StoreError> {
    let mut shared = Vec::new();
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) if m.permissions().mode() & SHARED_BITS != 0 => {
                shared.push((f, m.permissions().mode() & 0o7777));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(f, e)),
        }
    }
    if shared.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = shared
        .iter()
        .map(|(f, mode)| format!("{} (mode {mode:04o})", f.display()))
        .collect();
    let paths: Vec<String> = shared
        .iter()
        .map(|(f, _)| f.display().to_string())
        .collect();
    Err(StoreError::Insecure(format!(
        "{} open to other users: {}; Warden keeps its files private: run `chmod 600 {}` and start again",
        if shared.len() == 1 {
            "a file is"
        } else {
            "files are"
        },
        listed.join(", "),
        paths.join(" ")
    )))
}

/// Before SQLite opens `db`: its directory exists and is private, none of
/// its files is shared, and the database file exists 0600 (so SQLite's
/// `-wal` and `-shm` inherit that mode).
pub(crate) fn prepare_sqlite(db: &Path) -> Result<(), StoreError> {
    ensure_private_dir(&parent_dir(db))?;
    refuse_shared_files(&sqlite_files(db))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(db)
        .map_err(|e| io_error(db, e))?;
    Ok(())
}

/// Once SQLite has the database open: every file of it 0600, explicitly.
pub(crate) fn restrict_sqlite_files(db: &Path) -> Result<(), StoreError> {
    for f in sqlite_files(db) {
        match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&f, e)),
        }
    }
    Ok(())
}

/// Opens (creating it 0600) a lock file.
pub(crate) fn open_lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_directory_and_database_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("a/b/warden.db");
        prepare_sqlite(&db).unwrap();
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&db), 0o600);
    }

    #[test]
    fn shared_directories_and_files_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let db = dir.join("warden.db");
        prepare_sqlite(&db).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_sqlite(&db).unwrap_err().to_string();
        assert!(
            e.contains(&format!("run `chmod 700 {}`", dir.display())) && e.contains("0755"),
            "{e}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let wal = dir.join("warden.db-wal");
        std::fs::write(&wal, b"").unwrap();
        for f in [&db, &wal] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let e = prepare_sqlite(&db).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "run `chmod 600 {} {}`",
                db.display(),
                wal.display()
            )),
            "{e}"
        );
        for f in [&db, &wal] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        prepare_sqlite(&db).unwrap();
    }

    #[test]
    fn urls_name_their_files() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/warden/warden.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/warden/warden.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(parent_dir(Path::new("w.db")), PathBuf::from("."));
        let [db, wal, shm, lock] = sqlite_files(Path::new("/d/w.db"));
        assert_eq!(
            [db, wal, shm, lock].map(|p| p.display().to_string()),
            ["/d/w.db", "/d/w.db-wal", "/d/w.db-shm", "/d/w.db.lock"]
        );
    }
}
