//! Delivery: how the secrets reach the command.
//!
//! - `env`: as environment variables of the command (the default).
//! - `fd`: as one JSON object in a sealed memfd the command inherits, its
//!   number in `$WARDEN_SECRETS_FD`; no value is in `/proc/PID/environ`.
//! - `none`: neither (templates only).
//!
//! Templates (`--template SRC:DEST`) are rendered in every mode, onto tmpfs
//! or ramfs only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, MemfdFlags, Mode, OFlags, SealFlags};
use zeroize::Zeroizing;

use crate::Error;
use crate::secrets::Secrets;
use crate::template::{MAX_TEMPLATE_BYTES, Template};

/// Environment variable naming the secrets descriptor in `fd` mode.
pub const SECRETS_FD_ENV: &str = "WARDEN_SECRETS_FD";

/// `statfs` magic numbers of the filesystems a template may be written to
/// (linux/magic.h).
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// How the secrets reach the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Environment variables of the command.
    Env,
    /// A sealed memfd inherited by the command, its number in $WARDEN_SECRETS_FD.
    Fd,
    /// Neither: templates only.
    None,
}

/// A sealed, read-only memfd holding `secrets` as one JSON object
/// (`{"NAME":"value",...}`, names sorted, UTF-8, no trailing newline), its
/// offset at 0, inheritable across exec.
///
/// `memfd_secret(2)` is not used: its memory can only be mapped, not read
/// (`read`/`pread` fail, and so does opening `/proc/self/fd/N`), so a
/// command could not simply read the descriptor (docs/injector.md).
pub fn secrets_memfd(secrets: &Secrets) -> Result<OwnedFd, Error> {
    let internal = |what: &str, e: std::io::Error| Error::Internal(format!("{what}: {e}"));
    // An upper bound of the JSON's size (a byte escapes to at most six), so
    // the buffer is allocated once and no copy is left in freed memory.
    let bound = 2 + secrets
        .values()
        .iter()
        .map(|(k, v)| k.len() + 6 + v.len().saturating_mul(6))
        .fold(0usize, usize::saturating_add);
    let mut json = Zeroizing::new(Vec::with_capacity(bound));
    let map: BTreeMap<&str, &str> = secrets
        .values()
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    serde_json::to_writer(&mut *json, &map)
        .map_err(|e| Error::Internal(format!("encoding the secrets: {e}")))?;
    drop(map);

    let fd = rustix::fs::memfd_create(
        "warden-secrets",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| internal("memfd_create", e.into()))?;
    let mut file = File::from(fd);
    file.write_all(&json)
        .map_err(|e| internal("writing the secrets memfd", e))?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )
    .map_err(|e| internal("sealing the secrets memfd", e.into()))?;
    file.rewind()
        .map_err(|e| internal("rewinding the secrets memfd", e))?;
    let fd = OwnedFd::from(file);
    // Inherited by the command: it is the point.
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())
        .map_err(|e| internal("clearing close-on-exec", e.into()))?;
    Ok(fd)
}

/// A `--template SRC:DEST`, read, parsed and checked before any network
/// call: the source within its size limit and well formed, the
/// destination's directory open and on tmpfs or ramfs.
#[derive(Debug)]
pub struct TemplateTarget {
    src: PathBuf,
    dest: PathBuf,
    template: Template,
    /// The destination's directory, opened once: the filesystem checked is
    /// the one written to, even if a path component is replaced later.
    dir: OwnedFd,
    file_name: OsString,
}

/// Parses `SRC:DEST` (exactly one `:`; no `..` component in either path;
/// DEST absolute).
pub fn parse_template_spec(spec: &str) -> Result<(PathBuf, PathBuf), Error> {
    let usage = |why: &str| Error::Usage(format!("--template {spec:?}: {why}"));
    let mut parts = spec.split(':');
    let (Some(src), Some(dest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage("expected SRC:DEST with exactly one ':'"));
    };
    if src.is_empty() || dest.is_empty() {
        return Err(usage("expected SRC:DEST, both non-empty"));
    }
    let (src, dest) = (PathBuf::from(src), PathBuf::from(dest));
    for p in [&src, &dest] {
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(usage("paths may not contain '..'"));
        }
    }
    if !dest.is_absolute() {
        return Err(usage("DEST must be an absolute path"));
    }
    if dest.file_name().is_none() || spec.ends_with('/') {
        return Err(usage("DEST must name a file"));
    }
    Ok((src, dest))
}

impl TemplateTarget {
    /// Reads and parses the template at `src` and opens `dest`'s directory,
    /// refusing any filesystem but tmpfs and ramfs.
    pub fn prepare(src: PathBuf, dest: PathBuf) -> Result<Self, Error> {
        let origin = src.display().to_string();
        let file = File::open(&src)
            .map_err(|e| Error::Usage(format!("cannot read template {origin}: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_TEMPLATE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Usage(format!("cannot read template {origin}: {e}")))?;
        if bytes.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::Usage(format!(
                "template {origin} is larger than the limit of {MAX_TEMPLATE_BYTES} bytes"
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Usage(format!("template {origin} is not UTF-8")))?;
        let template = Template::parse(&text, &origin)?;

        let shown = dest.display().to_string();
        let (Some(parent), Some(file_name)) = (dest.parent(), dest.file_name()) else {
            return Err(Error::Usage(format!(
                "template destination {shown} must name a file"
            )));
        };
        let file_name = file_name.to_owned();
        let dir = rustix::fs::open(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::Destination(format!(
                "template destination {shown}: cannot open directory {}: {e}",
                parent.display()
            ))
        })?;
        let fs = rustix::fs::fstatfs(&dir).map_err(|e| {
            Error::Destination(format!("template destination {shown}: statfs: {e}"))
        })?;
        #[allow(clippy::unnecessary_cast)] // the field's type differs by target
        let magic = (fs.f_type as u64) & 0xffff_ffff;
        if magic != TMPFS_MAGIC && magic != RAMFS_MAGIC {
            return Err(Error::Destination(format!(
                "template destination {shown} is not on tmpfs or ramfs (filesystem type \
                 {magic:#x}): rendered secrets are written to memory-backed filesystems only, \
                 e.g. /dev/shm or an emptyDir with medium: Memory"
            )));
        }
        Ok(Self {
            src,
            dest,
            template,
            dir,
            file_name,
        })
    }

    /// The parsed template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The template's source, as given (for messages).
    pub fn origin(&self) -> String {
        self.src.display().to_string()
    }

    /// Writes `rendered` to a new file beside the destination, mode 0400,
    /// owned by this process's user (the command's), under a random name
    /// (`.NAME.warden-<16 hex>.tmp`, created with `O_EXCL`, a few tries):
    /// [`Staged::commit`] renames it over the destination, so a reader sees
    /// the old file or the new one, never a part; dropped uncommitted, it is
    /// removed. A name another user could guess (the PID is 1 in a
    /// container) would let them create it first and stop every start.
    pub fn stage(&self, rendered: &str) -> Result<Staged<'_>, Error> {
        let shown = self.dest.display();
        let err = |what: &str, e: std::io::Error| {
            Error::Destination(format!("template destination {shown}: {what}: {e}"))
        };
        let mut tries = 0;
        let (fd, tmp) = loop {
            tries += 1;
            let mut random = [0u8; 8];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| err("random name", e.into()))?;
            let mut tmp = OsString::from(".");
            tmp.push(&self.file_name);
            tmp.push(format!(".warden-{:016x}.tmp", u64::from_le_bytes(random)));
            match rustix::fs::openat(
                &self.dir,
                Path::new(&tmp),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR,
            ) {
                Ok(fd) => break (fd, tmp),
                Err(rustix::io::Errno::EXIST) if tries < STAGE_TRIES => {}
                Err(e) => return Err(err("create", e.into())),
            }
        };
        // From here on, dropping it removes the file.
        let staged = Staged {
            target: self,
            tmp,
            committed: false,
        };
        let mut file = File::from(fd);
        file.write_all(rendered.as_bytes())
            .map_err(|e| err("write", e))?;
        // The umask cannot widen 0400, but a restrictive one could have
        // narrowed it: set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(0o400))
            .map_err(|e| err("chmod", e))?;
        Ok(staged)
    }
}

/// Tries at a fresh random temporary name before giving up.
const STAGE_TRIES: u32 = 8;

/// A rendered template in its temporary file, not yet over its destination.
#[derive(Debug)]
pub struct Staged<'a> {
    target: &'a TemplateTarget,
    tmp: OsString,
    committed: bool,
}

impl Staged<'_> {
    /// The temporary file's name, in the destination's directory.
    pub fn temporary_name(&self) -> &std::ffi::OsStr {
        &self.tmp
    }

    /// Renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<(), Error> {
        let t = self.target;
        rustix::fs::renameat(
            &t.dir,
            Path::new(&self.tmp),
            &t.dir,
            t.file_name.as_os_str(),
        )
        .map_err(|e| {
            Error::Destination(format!(
                "template destination {}: rename: {}",
                t.dest.display(),
                std::io::Error::from(e)
            ))
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&self.target.dir, Path::new(&self.tmp), AtFlags::empty());
        }
    }
}

/// Writes every rendered template (in `targets`' order): first each to its
/// temporary file, then, once all are written, each renamed over its
/// destination. A failure while writing leaves no file (the temporary ones
/// are removed); only a failed rename after earlier ones succeeded leaves
/// those earlier destinations replaced.
pub fn write_templates(
    targets: &[TemplateTarget],
    rendered: &[Zeroizing<String>],
) -> Result<(), Error> {
    let staged = targets
        .iter()
        .zip(rendered)
        .map(|(t, text)| t.stage(text))
        .collect::<Result<Vec<_>, _>>()?;
    for s in staged {
        s.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// A fresh directory on tmpfs (/dev/shm), removed on drop.
    fn shm_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("warden-injector-unit-")
            .tempdir_in("/dev/shm")
            .unwrap()
    }

    /// The names in `dir`, sorted.
    fn names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn target(dir: &tempfile::TempDir, src_dir: &tempfile::TempDir, name: &str) -> TemplateTarget {
        let src = src_dir.path().join(format!("{name}.tpl"));
        std::fs::write(&src, "x").unwrap();
        TemplateTarget::prepare(src, dir.path().join(name)).unwrap()
    }

    #[test]
    fn staged_files_have_unguessable_exclusive_names_and_go_unless_committed() {
        let dir = shm_dir();
        let t = target(&dir, &dir, "app.conf");
        // The old name, predictable from the PID (1 in a container), taken
        // by someone else first: no longer in the way.
        let old = format!(".app.conf.warden-{}.tmp", std::process::id());
        std::fs::write(dir.path().join(&old), "squatter").unwrap();
        let a = t.stage("one").unwrap();
        let b = t.stage("two").unwrap();
        let (na, nb) = (
            a.temporary_name().to_string_lossy().into_owned(),
            b.temporary_name().to_string_lossy().into_owned(),
        );
        assert_ne!(na, nb);
        for n in [&na, &nb] {
            let hex = n
                .strip_prefix(".app.conf.warden-")
                .and_then(|r| r.strip_suffix(".tmp"))
                .unwrap_or_else(|| panic!("{n}"));
            assert_eq!(hex.len(), 16, "{n}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{n}");
            let meta = std::fs::metadata(dir.path().join(n)).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o400, "{n}");
        }
        drop(b);
        assert!(
            !dir.path().join(&nb).exists(),
            "an uncommitted file was left"
        );
        a.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app.conf")).unwrap(),
            "one"
        );
        assert_eq!(names(&dir), [old.as_str(), "app.conf", "app.conf.tpl"]);
    }

    #[test]
    fn a_failed_write_leaves_no_template_written() {
        let (first, second) = (shm_dir(), shm_dir());
        let targets = [
            target(&first, &first, "a.conf"),
            target(&second, &first, "b.conf"),
        ];
        // The second destination's directory disappears after the checks:
        // its file cannot be created.
        std::fs::remove_dir(second.path()).unwrap();
        let rendered = [
            Zeroizing::new("a".to_owned()),
            Zeroizing::new("b".to_owned()),
        ];
        let err = write_templates(&targets, &rendered).unwrap_err();
        assert!(matches!(err, Error::Destination(_)), "{err}");
        assert!(err.to_string().contains("b.conf: create"), "{err}");
        // Neither the first destination nor its temporary file is there.
        assert_eq!(names(&first), ["a.conf.tpl", "b.conf.tpl"]);
    }

    #[test]
    fn template_specs_refuse_dot_dot_relative_dests_and_extra_colons() {
        assert_eq!(
            parse_template_spec("app.tpl:/dev/shm/app.conf").unwrap(),
            (PathBuf::from("app.tpl"), PathBuf::from("/dev/shm/app.conf"))
        );
        for (spec, why) in [
            ("../etc/t:/dev/shm/x", "'..'"),
            ("t:/dev/shm/../../var/tmp/x", "'..'"),
            ("t:/dev/shm/a/..", "'..'"),
            ("t:relative/x", "absolute"),
            ("t:/dev/shm/", "name a file"),
            ("t", "exactly one ':'"),
            ("a:b:c", "exactly one ':'"),
            (":/dev/shm/x", "non-empty"),
        ] {
            let err = parse_template_spec(spec).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{spec}");
            assert!(err.to_string().contains(why), "{spec}: {err}");
        }
        // "..b" is a name, not the parent directory.
        assert!(parse_template_spec("t:/dev/shm/..b").is_ok());
    }
}
